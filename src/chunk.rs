//! Chunk ids and content-defined chunking.
//!
//! An object smaller than or equal to [`ChunkerParams::threshold`] is stored as
//! one chunk (its whole content), which may be a delta against a base chunk.
//! Larger objects are split with FastCDC (2020) so that an edit in the middle of
//! a large file changes only the chunks around the edit.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The name of a chunk: blake3 of its plain (uncompressed, un-deltified) bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// An id from a 32-byte slice.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self(b.try_into().ok()?))
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Parameters of the content-defined chunker, recorded in the store's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Always `"fastcdc-2020"` in format version 1.
    pub algorithm: ChunkAlgorithm,
    /// Objects of at most this many bytes are stored as a single chunk.
    pub threshold: u32,
    /// Smallest chunk FastCDC cuts (except the last one of an object).
    pub min_size: u32,
    /// Average chunk size FastCDC aims for.
    pub avg_size: u32,
    /// Largest chunk FastCDC cuts.
    pub max_size: u32,
}

/// The chunking algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkAlgorithm {
    /// `fastcdc::v2020::FastCDC` with normalization level 1 and seed 0.
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    /// See docs/FORMAT.md ("Chunking") for why these sizes.
    fn default() -> Self {
        Self {
            algorithm: ChunkAlgorithm::FastCdc2020,
            threshold: 4 << 20,
            min_size: 256 << 10,
            avg_size: 1 << 20,
            max_size: 4 << 20,
        }
    }
}

/// Chunker sizes FastCDC does not accept, or that contradict each other.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid chunker sizes min={} avg={} max={} threshold={}", .0.min_size, .0.avg_size, .0.max_size, .0.threshold)]
pub struct BadSizes(pub ChunkerParams);

impl ChunkerParams {
    /// Checks that the sizes are within what FastCDC accepts and consistent.
    ///
    /// # Errors
    /// [`BadSizes`] naming all four sizes.
    pub fn validate(&self) -> Result<(), BadSizes> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        if !(MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            || !(AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            || !(MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            || self.min_size > self.avg_size
            || self.avg_size > self.max_size
            || self.threshold < self.max_size
        {
            return Err(BadSizes(*self));
        }
        Ok(())
    }

    /// The byte ranges of `data`'s chunks, in order, covering it exactly.
    /// An empty object has one empty chunk.
    pub fn split(&self, data: &[u8]) -> Vec<Range<usize>> {
        if data.len() <= self.threshold as usize {
            #[allow(clippy::single_range_in_vec_init)] // one chunk: the whole object
            return vec![0..data.len()];
        }
        fastcdc::v2020::FastCDC::new(data, self.min_size, self.avg_size, self.max_size)
            .map(|c| c.offset..c.offset + c.length)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            threshold: 8192,
            min_size: 1024,
            avg_size: 4096,
            max_size: 8192,
            ..Default::default()
        }
    }

    #[test]
    fn default_params_are_valid() {
        ChunkerParams::default().validate().unwrap();
        small().validate().unwrap();
    }

    #[test]
    fn chunk_id_is_blake3() {
        assert_eq!(
            ChunkId::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    proptest! {
        #[test]
        fn chunks_cover_input_exactly(data in proptest::collection::vec(any::<u8>(), 0..60_000)) {
            let ranges = small().split(&data);
            let mut pos = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, pos);
                prop_assert!(r.end - r.start <= 8192);
                pos = r.end;
            }
            prop_assert_eq!(pos, data.len());
        }

        #[test]
        fn boundaries_resynchronise_after_an_insertion(
            seed in any::<u64>(), at in 0usize..40_000, ins in proptest::collection::vec(any::<u8>(), 1..50)
        ) {
            let mut rng = seed;
            let data: Vec<u8> = (0..240_000).map(|_| { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng as u8 }).collect();
            let mut edited = data.clone();
            edited.splice(at..at, ins.iter().copied());
            let a: std::collections::HashSet<_> = small().split(&data).into_iter().map(|r| ChunkId::of(&data[r])).collect();
            let b: Vec<_> = small().split(&edited).into_iter().map(|r| ChunkId::of(&edited[r])).collect();
            let shared = b.iter().filter(|c| a.contains(c)).count();
            // Only the chunks around the edit change: boundaries re-synchronise
            // within a few chunks, and the tail is shared.
            // (FastCDC's normalized masks can take several chunks to fall back in step.)
            prop_assert!(shared * 2 >= b.len(), "shared {} of {}", shared, b.len());
            prop_assert!(b[b.len() - 3..].iter().all(|c| a.contains(c)));
        }
    }
}
