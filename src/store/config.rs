//! The store's `config.json`: format version, id, chunker and compression parameters.

use crate::chunk::ChunkerParams;
use serde::{Deserialize, Serialize};

/// The store format version this code writes into new stores. It reads
/// stores of every version from 1 up to this one, and writes into an older
/// store in that store's format (version 1 stores get version 1 packs).
pub const FORMAT_VERSION: u32 = 3;

/// The most a store's `max_delta_depth` may be: no store holds a longer
/// delta chain, so code that walks chains without a store's configuration
/// (repair) stops there, as at a damaged cycle.
pub const DELTA_DEPTH_LIMIT: u32 = 1000;

/// A store configuration this code refuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Invalid {
    /// There is no format version 0.
    #[error("format_version 0 does not exist")]
    FormatZero,
    /// The chunker's sizes.
    #[error(transparent)]
    Chunker(#[from] crate::chunk::BadSizes),
    /// zstd has levels 1 to 22.
    #[error("zstd level {0} is outside 1..=22")]
    Level(i32),
    /// Packs smaller than 64 KiB would be too many files.
    #[error("pack target size {0} is below 64 KiB")]
    PackSize(u64),
    /// Deeper than any store may be.
    #[error("max delta depth {0} is above {DELTA_DEPTH_LIMIT}")]
    DeltaDepth(u32),
}

/// Contents of `config.json`. Written once by `init`, never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Store format version.
    pub format_version: u32,
    /// Random id of this store (32 hex digits).
    pub store_id: String,
    /// When the store was created (RFC 3339, UTC).
    pub created: String,
    /// Content-defined chunking.
    pub chunker: ChunkerParams,
    /// Compression of chunks.
    pub compression: Compression,
    /// A pack is closed once it reaches this many bytes.
    pub pack_target_size: u64,
    /// Longest delta chain; a chunk whose base is this deep is stored in full.
    pub max_delta_depth: u32,
}

/// Compression parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    /// Always `"zstd"` in format version 1.
    pub algorithm: CompressionAlgorithm,
    /// zstd level (1..=22).
    pub level: i32,
}

/// The compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionAlgorithm {
    /// Zstandard.
    #[serde(rename = "zstd")]
    Zstd,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            algorithm: CompressionAlgorithm::Zstd,
            level: 3,
        }
    }
}

impl StoreConfig {
    /// A new configuration with a fresh random id.
    pub fn new(chunker: ChunkerParams, compression: Compression, pack_target_size: u64) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            store_id: format!("{:032x}", rand::random::<u128>()),
            created: jiff::Timestamp::now().to_string(),
            chunker,
            compression,
            pack_target_size,
            max_delta_depth: 50,
        }
    }

    /// The pack format version written into this store: the store's format
    /// version up to 2 (format 3 changed the snapshot files, not the packs).
    pub fn pack_version(&self) -> u32 {
        self.format_version.min(2)
    }

    /// True when snapshot files may be written as a change to a base
    /// (format 3 and later).
    pub fn snapshot_changes(&self) -> bool {
        self.format_version >= 3
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// An error naming the parameter.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.format_version == 0 {
            return Err(Invalid::FormatZero);
        }
        self.chunker.validate()?;
        if !(1..=22).contains(&self.compression.level) {
            return Err(Invalid::Level(self.compression.level));
        }
        if self.pack_target_size < 1 << 16 {
            return Err(Invalid::PackSize(self.pack_target_size));
        }
        if self.max_delta_depth > DELTA_DEPTH_LIMIT {
            return Err(Invalid::DeltaDepth(self.max_delta_depth));
        }
        Ok(())
    }
}
