//! The store: a directory of packs, an index and snapshot records.
//!
//! ```text
//! <store>/config.json     format version, store id, chunker, compression
//! <store>/index.sqlite    the index (see `index`)
//! <store>/packs/*.pack    immutable pack files (see `pack`)
//! <store>/snapshots/      one JSON record per snapshot (a copy outside the index)
//! <store>/lock            the write lock (see `lock`)
//! ```
//!
//! Reads ([`Store::get`]) need no lock. Writes go through a [`Writer`], which
//! holds the write lock, appends chunks to open packs and commits them to the
//! index in one transaction once the packs are durable.

pub(crate) mod codec;
mod config;
mod error;
pub mod lag;
mod read;
mod writer;

pub use config::{
    Compression, CompressionAlgorithm, StoreConfig, DELTA_DEPTH_LIMIT, FORMAT_VERSION,
};
pub use error::Error;
pub use read::ReadSession;
pub use writer::Writer;

use crate::chunk::ChunkerParams;
use crate::durable;
use crate::index::{Index, Totals};
use crate::lock::WriteLock;
use crate::ObjectKind;
use gix::ObjectId;
use read::{ChunkCache, PackHandle};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// File name of the store configuration.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the index.
pub const INDEX_FILE: &str = "index.sqlite";
/// Directory of the packs.
pub const PACKS_DIR: &str = "packs";
/// Directory of the snapshot records.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// File name of the lock.
pub const LOCK_FILE: &str = "lock";
/// File name of the readers lock (see [`crate::lock::ReadLock`]).
pub const READERS_FILE: &str = "readers";

/// Parameters for [`Store::init`].
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// Chunking.
    pub chunker: ChunkerParams,
    /// Compression.
    pub compression: Compression,
    /// Pack target size in bytes.
    pub pack_target_size: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            chunker: ChunkerParams::default(),
            compression: Compression::default(),
            pack_target_size: 32 << 20,
        }
    }
}

/// A git object to put into the store.
#[derive(Debug, Clone)]
pub struct NewObject {
    /// Its git id; the content is checked against it.
    pub oid: ObjectId,
    /// Its kind.
    pub kind: ObjectKind,
    /// Its content (without git's `"<kind> <len>\0"` header).
    pub data: Vec<u8>,
    /// A similar object to store it as a delta against.
    pub base: Option<DeltaBase>,
}

/// A delta base for [`NewObject`].
#[derive(Debug, Clone)]
pub struct DeltaBase {
    /// The base object's git id. It must be in the store or earlier in the same batch;
    /// otherwise the object is stored in full.
    pub oid: ObjectId,
    /// A git delta from the base's content to this object's content, when known
    /// (git's own delta from the source pack). Computed by the store otherwise.
    pub delta: Option<Vec<u8>>,
}

/// An object read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its content.
    pub data: Vec<u8>,
}

/// An object read back with the git delta it is stored as, if any (for restore).
#[derive(Debug, Clone)]
pub struct ObjectWithDelta {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its content (checked).
    pub data: Vec<u8>,
    /// When its single chunk is stored as a delta: the base chunk's row id and
    /// the git delta from the base's plain bytes to `data`.
    pub delta: Option<(i64, Vec<u8>)>,
}

/// What a writer added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    /// New objects.
    pub objects: u64,
    /// New chunks.
    pub chunks: u64,
    /// New chunks stored as deltas.
    pub delta_chunks: u64,
    /// Total size of the new objects.
    pub raw_bytes: u64,
    /// Stored bytes of the new chunks.
    pub stored_bytes: u64,
    /// Packs written.
    pub packs: u64,
    /// Bytes of the pack files written (chunks, records and trailers).
    pub pack_bytes: u64,
}

/// An open store.
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
    index: Mutex<Index>,
    packs: Mutex<HashMap<i64, Arc<PackHandle>>>,
    cache: Mutex<ChunkCache>,
}

fn read_config(root: &Path) -> Result<StoreConfig, Error> {
    let path = root.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let bad = |reason: String| Error::BadConfig {
        path: path.clone(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("no format_version".into()))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(Error::NewerFormat {
            path: root.to_owned(),
            found: version,
        });
    }
    let config: StoreConfig = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    config.validate().map_err(|e| bad(e.to_string()))?;
    Ok(config)
}

impl Store {
    /// Creates a store at `path`: a new directory, or an existing empty one.
    ///
    /// The store is built in a temporary directory beside `path` and renamed
    /// into place, so a failed `init` leaves nothing behind.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::NotEmpty`], [`Error::NotADirectory`], or I/O errors
    /// (for example a read-only parent directory).
    pub fn init(path: &Path, opts: InitOptions) -> Result<Store, Error> {
        if path.exists() {
            if !path.is_dir() {
                return Err(Error::NotADirectory {
                    path: path.to_owned(),
                });
            }
            if path.join(CONFIG_FILE).exists() {
                return Err(Error::AlreadyExists {
                    path: path.to_owned(),
                });
            }
            if std::fs::read_dir(path)
                .map_err(Error::io(path))?
                .next()
                .is_some()
            {
                return Err(Error::NotEmpty {
                    path: path.to_owned(),
                });
            }
        }
        let config = StoreConfig::new(opts.chunker, opts.compression, opts.pack_target_size);
        config.validate().map_err(|reason| Error::BadConfig {
            path: path.to_owned(),
            reason: reason.to_string(),
        })?;
        let abs = std::path::absolute(path).map_err(Error::io(path))?;
        let parent = abs.parent().ok_or_else(|| Error::NotADirectory {
            path: path.to_owned(),
        })?;
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(".repovault-init-")
            .tempdir_in(parent)
            .map_err(|source| Error::CannotCreate {
                path: path.to_owned(),
                source,
            })?;
        let t = tmp.path();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o700))
                .map_err(Error::io(t))?;
        }
        // Private whatever the umask (the directory itself is made 0700 above).
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            let mut dirs = std::fs::DirBuilder::new();
            dirs.mode(0o700);
            dirs.create(t.join(PACKS_DIR)).map_err(Error::io(t))?;
            dirs.create(t.join(SNAPSHOTS_DIR)).map_err(Error::io(t))?;
            for f in [LOCK_FILE, READERS_FILE] {
                File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(t.join(f))
                    .map_err(Error::io(t))?;
            }
        }
        drop(Index::create(&t.join(INDEX_FILE))?);
        let json = serde_json::to_string_pretty(&config).expect("config serializes");
        let config_path = t.join(CONFIG_FILE);
        durable::write_atomic(&config_path, json.as_bytes(), durable::PRIVATE)
            .map_err(Error::io(&config_path))?;
        // rename(2) replaces an empty directory atomically.
        let tmp_path = tmp.keep();
        if let Err(e) = durable::rename(&tmp_path, &abs) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(Error::Io {
                path: path.to_owned(),
                source: e,
            });
        }
        Self::open(path)
    }

    /// Opens an existing store.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotADirectory`], [`Error::NotAStore`],
    /// [`Error::NewerFormat`], [`Error::BadConfig`], or index errors.
    pub fn open(path: &Path) -> Result<Store, Error> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    path: path.to_owned(),
                })
            }
            Err(e) => {
                return Err(Error::Io {
                    path: path.to_owned(),
                    source: e,
                })
            }
            Ok(m) if !m.is_dir() => {
                return Err(Error::NotADirectory {
                    path: path.to_owned(),
                })
            }
            Ok(_) => {}
        }
        if !path.join(CONFIG_FILE).is_file() {
            return Err(Error::NotAStore {
                path: path.to_owned(),
            });
        }
        let config = read_config(path)?;
        let index = Index::open(&path.join(INDEX_FILE))?;
        Ok(Store {
            root: path.to_owned(),
            config,
            index: Mutex::new(index),
            packs: Mutex::new(HashMap::new()),
            cache: Mutex::new(ChunkCache::new()),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The directory of the packs.
    pub fn packs_dir(&self) -> PathBuf {
        self.root.join(PACKS_DIR)
    }

    /// Bytes of every file of the store (packs, index and its WAL, snapshot
    /// files, config; not the lock files nor SQLite's `-shm`, which exist
    /// only while the index is open): what `du -b` counts, so what a
    /// sync really grew the store by is the difference of two calls.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory of the store cannot be read.
    pub fn bytes_on_disk(&self) -> Result<u64, Error> {
        fn below(dir: &Path, top: bool) -> std::io::Result<u64> {
            let mut n = 0;
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                if top
                    && [LOCK_FILE, READERS_FILE]
                        .iter()
                        .any(|f| e.file_name() == *f)
                {
                    continue;
                }
                let meta = match e.metadata() {
                    Ok(m) => m,
                    // Gone meanwhile (a temporary file renamed): not counted.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                };
                if meta.is_dir() {
                    n += below(&e.path(), false)?;
                } else if meta.is_file() && !e.file_name().to_string_lossy().ends_with("-shm") {
                    n += meta.len();
                }
            }
            Ok(n)
        }
        below(&self.root, true).map_err(Error::io(&self.root))
    }

    /// Runs `f` with the index (under its mutex).
    pub fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> T {
        let mut guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Takes the write lock (waiting at most `wait`) and returns a writer.
    ///
    /// # Errors
    /// [`Error::Lock`] when another writer holds the lock for longer than `wait`.
    pub fn writer(&self, wait: Duration) -> Result<Writer<'_>, Error> {
        self.writer_for(wait, "write")
    }

    /// Like [`Store::writer`], naming the command in the lock file.
    pub fn writer_for(&self, wait: Duration, command: &str) -> Result<Writer<'_>, Error> {
        let lock = WriteLock::acquire(&self.root.join(LOCK_FILE), wait, command)?;
        // Temporary files left by a killed writer are garbage: no index row
        // points into a temporary pack, and a snapshot file counts only once
        // it has its name.
        for dir in [self.packs_dir(), self.root.join(SNAPSHOTS_DIR)] {
            durable::remove_leftovers(&dir).map_err(Error::io(&dir))?;
        }
        let mut index = Index::open(&self.root.join(INDEX_FILE))?;
        // The files are the truth: refuse an index older than them, and
        // record what an interrupted writer left (see `lag`).
        let state = lag::check(&self.root, &index)?;
        if state.lags() {
            return Err(Error::IndexLags {
                path: self.root.join(INDEX_FILE),
                reason: state.describe(),
            });
        }
        lag::settle(&self.root, &mut index, &state)?;
        Ok(Writer::new(self, lock, index))
    }

    /// Totals over the whole store.
    pub fn totals(&self) -> Result<Totals, Error> {
        Ok(self.with_index(|i| i.totals())?)
    }
}
