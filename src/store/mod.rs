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
pub mod lag;

pub use config::{Compression, CompressionAlgorithm, StoreConfig, FORMAT_VERSION};

use crate::chunk::{ChunkId, ChunkerParams};
use crate::index::{self, Index, NewChunk, Totals};
use crate::lock::{self, WriteLock};
use crate::pack::{self, ObjectRecord, PackKind, PackWriter};
use crate::{delta, git_oid, ObjectKind};
use gix::ObjectId;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
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
/// File name of the readers lock (see [`lock::ReadLock`]).
pub const READERS_FILE: &str = "readers";

/// Decoded chunks kept in memory for reuse as delta bases.
const CHUNK_CACHE_BYTES: usize = 256 << 20;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store directory does not exist.
    #[error("store {path} does not exist: create it with `repovault init --store {path}`, or check the path")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a file.
    #[error("store path {path} is a file, not a directory: give the store's directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The directory holds no store.
    #[error("{path} is not a repovault store (it has no {CONFIG_FILE}): give a store's directory, or create one with `repovault init --store DIR`")]
    NotAStore {
        /// The path given.
        path: PathBuf,
    },
    /// The store was written by a newer repovault.
    #[error("store {path} has format version {found}, but this repovault reads version {FORMAT_VERSION}: upgrade repovault")]
    NewerFormat {
        /// The store.
        path: PathBuf,
        /// Its version.
        found: u64,
    },
    /// `init` on an existing store.
    #[error("{path} is already a repovault store: use it as it is, or choose another directory")]
    AlreadyExists {
        /// The path given.
        path: PathBuf,
    },
    /// `init` cannot write where the store should go.
    #[error("cannot create store {path}: {source}: choose a directory you can write to (or create it with the right owner)")]
    CannotCreate {
        /// The store path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `init` on a non-empty directory.
    #[error("{path} exists and is not empty: choose a new or empty directory for the store")]
    NotEmpty {
        /// The path given.
        path: PathBuf,
    },
    /// `config.json` cannot be read.
    #[error("store config {path} is invalid: {reason}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on a path of the store.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// A pack failed.
    #[error(transparent)]
    Pack(#[from] pack::Error),
    /// The write lock could not be taken.
    #[error(transparent)]
    Lock(#[from] lock::Error),
    /// The index is older than the store's files: writing with it could lose data.
    #[error("the index {path} lags the store's files: {reason}; nothing was changed: run `repovault repair-index` to rebuild it from the packs and snapshot files")]
    IndexLags {
        /// The index.
        path: PathBuf,
        /// What the files have that the index lacks.
        reason: String,
    },
    /// The object is not in the store.
    #[error("object {oid} is not in the store")]
    ObjectNotFound {
        /// The object.
        oid: ObjectId,
    },
    /// Content given for an object does not hash to its id.
    #[error(
        "object {oid} ({kind}) was given content that hashes to {actual}: the source is corrupt"
    )]
    OidMismatch {
        /// The id given.
        oid: ObjectId,
        /// The kind given.
        kind: ObjectKind,
        /// The id of the content.
        actual: ObjectId,
    },
    /// A chunk cannot be read back intact.
    #[error("chunk {chunk} in pack {pack} at offset {offset} is damaged: {reason}")]
    ChunkDamaged {
        /// The chunk.
        chunk: ChunkId,
        /// The pack's name.
        pack: String,
        /// Offset in the pack.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An object cannot be reassembled.
    #[error("object {oid} is damaged: {reason}")]
    ObjectDamaged {
        /// The object.
        oid: ObjectId,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

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

struct PackHandle {
    file: File,
    path: PathBuf,
    name: String,
}

struct ChunkCache {
    lru: lru::LruCache<i64, Arc<Vec<u8>>>,
    bytes: usize,
}

impl ChunkCache {
    fn get(&mut self, k: i64) -> Option<Arc<Vec<u8>>> {
        self.lru.get(&k).cloned()
    }
    fn put(&mut self, k: i64, v: Arc<Vec<u8>>) {
        if v.len() > CHUNK_CACHE_BYTES / 8 {
            return;
        }
        self.bytes += v.len();
        if let Some(old) = self.lru.put(k, v) {
            self.bytes -= old.len();
        }
        while self.bytes > CHUNK_CACHE_BYTES {
            match self.lru.pop_lru() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// A read transaction on the store's index; see [`Store::read_session`].
pub struct ReadSession<'s> {
    store: &'s Store,
    active: bool,
    // Dropped after the read transaction ends (fields drop after `drop`).
    _readers: Option<lock::ReadLock>,
}

impl Drop for ReadSession<'_> {
    fn drop(&mut self) {
        if self.active {
            self.store.with_index(|i| i.end_read());
        }
    }
}

/// An open store.
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
    index: Mutex<Index>,
    packs: Mutex<HashMap<i64, Arc<PackHandle>>>,
    cache: Mutex<ChunkCache>,
}

/// Checks that `data` of `kind` hashes to `oid`.
fn check_git_oid(oid: &ObjectId, kind: ObjectKind, data: &[u8]) -> Result<(), Error> {
    let actual = git_oid(kind, data);
    if actual != *oid {
        return Err(Error::ObjectDamaged {
            oid: *oid,
            reason: format!("content hashes to {actual}"),
        });
    }
    Ok(())
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
    config.validate().map_err(bad)?;
    Ok(config)
}

fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::io(&tmp))?;
    f.write_all(bytes).map_err(Error::io(&tmp))?;
    f.sync_all().map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    Ok(())
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
            reason,
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
        write_file_durably(&t.join(CONFIG_FILE), json.as_bytes())?;
        pack::sync_dir(t).map_err(Error::io(t))?;
        // rename(2) replaces an empty directory atomically.
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &abs) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(Error::Io {
                path: path.to_owned(),
                source: e,
            });
        }
        pack::sync_dir(parent).map_err(Error::io(parent))?;
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
            cache: Mutex::new(ChunkCache {
                lru: lru::LruCache::new(std::num::NonZeroUsize::new(1 << 16).expect("non-zero")),
                bytes: 0,
            }),
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
        // Temporary packs left by a killed writer are garbage: no index row points into them.
        let dir = self.packs_dir();
        for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(pack::TMP_PREFIX)
            {
                tracing::info!(file = %entry.path().display(), "removing a temporary pack left by an interrupted writer");
                let _ = std::fs::remove_file(entry.path());
            }
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
        Ok(Writer {
            store: self,
            _lock: lock,
            index,
            open: [None, None],
            pending_chunks: HashMap::new(),
            pending_order: Vec::new(),
            pending_objects: HashMap::new(),
            stats: WriteStats::default(),
        })
    }

    /// Totals over the whole store.
    pub fn totals(&self) -> Result<Totals, Error> {
        Ok(self.with_index(|i| i.totals())?)
    }

    /// True when the object is in the store.
    pub fn contains(&self, oid: &ObjectId) -> Result<bool, Error> {
        Ok(self.with_index(|i| i.has_object(oid))?)
    }

    fn pack_handle(&self, rowid: i64) -> Result<Arc<PackHandle>, Error> {
        if let Some(h) = self
            .packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rowid)
        {
            return Ok(h.clone());
        }
        let row = self
            .with_index(|i| i.pack(rowid))?
            .ok_or_else(|| index::Error::Corrupt {
                path: self.root.join(INDEX_FILE),
                reason: format!("pack row {rowid} is missing"),
            })?;
        let path = pack::pack_path(&self.packs_dir(), &row.name);
        let file = File::open(&path).map_err(|source| pack::Error::Io {
            path: path.clone(),
            source,
        })?;
        let h = Arc::new(PackHandle {
            file,
            path,
            name: row.name,
        });
        self.packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rowid, h.clone());
        Ok(h)
    }

    /// Opens a read session: until it is dropped, every index lookup of this
    /// store sees one consistent state of the index and is cheaper (see
    /// [`Index::begin_read`]). For long read-only walks (restore, verify).
    /// Must not be held while writing through this store.
    ///
    /// It also holds the readers lock shared (taken before the read
    /// transaction starts), so prune does not delete a pack this view of the
    /// index still names until the session ends.
    pub fn read_session(&self) -> Result<ReadSession<'_>, index::Error> {
        let readers = lock::ReadLock::acquire(&self.root.join(READERS_FILE));
        let active = self.with_index(|i| i.begin_read())?;
        Ok(ReadSession {
            store: self,
            active,
            _readers: readers,
        })
    }

    /// Waits at most `wait` until no reader (restore, verify) runs and returns
    /// the readers lock held exclusively (`None` if readers still run): prune
    /// deletes pack files only while holding it.
    ///
    /// # Errors
    /// [`Error::Lock`] when the lock file cannot be opened.
    pub fn exclude_readers(&self, wait: Duration) -> Result<Option<lock::NoReaders>, Error> {
        Ok(lock::NoReaders::acquire(
            &self.root.join(READERS_FILE),
            wait,
        )?)
    }

    /// The plain bytes of the chunk with row id `rowid`, checked against its blake3.
    pub fn chunk_plain(&self, rowid: i64) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(rowid)
        {
            return Ok(c);
        }
        let row = self
            .with_index(|i| i.chunk(rowid))?
            .ok_or_else(|| index::Error::Corrupt {
                path: self.root.join(INDEX_FILE),
                reason: format!("chunk row {rowid} is missing"),
            })?;
        let h = self.pack_handle(row.pack)?;
        let damaged = |reason: String| Error::ChunkDamaged {
            chunk: row.id,
            pack: h.name.clone(),
            offset: row.offset,
            reason,
        };
        let stored = pack::read_at(&h.file, &h.path, row.offset, row.stored_len)
            .map_err(|e| damaged(e.to_string()))?;
        let base = match row.base {
            None => None,
            Some(b) if row.depth as usize <= 1000 => Some(self.chunk_plain(b)?),
            Some(_) => return Err(damaged(format!("delta depth {} is impossible", row.depth))),
        };
        let plain = codec::decode(&stored, row.raw_len, base.as_deref().map(|b| &b[..]))
            .map_err(damaged)?;
        codec::check(&plain, &row.id, row.raw_len).map_err(damaged)?;
        let plain = Arc::new(plain);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(rowid, plain.clone());
        Ok(plain)
    }

    /// The index row of an object, if stored.
    pub fn object_row(&self, oid: &ObjectId) -> Result<Option<index::ObjectRow>, Error> {
        Ok(self.with_index(|i| i.object(oid))?)
    }

    /// Like [`Store::get`], and also returns the git delta the object is stored as.
    /// Every chunk's blake3 is checked, and the object's git id when `check_oid`
    /// (restore leaves that to the pack index it writes, which hashes every object).
    pub fn get_with_delta(
        &self,
        oid: &ObjectId,
        check_oid: bool,
    ) -> Result<ObjectWithDelta, Error> {
        let row = self
            .object_row(oid)?
            .ok_or(Error::ObjectNotFound { oid: *oid })?;
        if row.nchunks == 1 {
            let c =
                self.with_index(|i| i.chunk(row.chunk))?
                    .ok_or_else(|| index::Error::Corrupt {
                        path: self.root.join(INDEX_FILE),
                        reason: format!("chunk row {} of object {oid} is missing", row.chunk),
                    })?;
            if let Some(base) = c.base {
                let h = self.pack_handle(c.pack)?;
                let damaged = |reason: String| Error::ChunkDamaged {
                    chunk: c.id,
                    pack: h.name.clone(),
                    offset: c.offset,
                    reason,
                };
                let stored = pack::read_at(&h.file, &h.path, c.offset, c.stored_len)
                    .map_err(|e| damaged(e.to_string()))?;
                let delta =
                    codec::decompress(&stored, c.raw_len as usize + c.raw_len as usize / 64 + 64)
                        .map_err(damaged)?;
                let cached = self
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(c.rowid);
                if let Some(plain) = cached {
                    // Decoded and blake3-checked earlier in this process: its
                    // base chain need not be decoded again.
                    if check_oid {
                        check_git_oid(oid, row.kind, &plain)?;
                    }
                    return Ok(ObjectWithDelta {
                        kind: row.kind,
                        data: plain.to_vec(),
                        delta: Some((base, delta)),
                    });
                }
                let base_plain = self.chunk_plain(base)?;
                let mut data = Vec::with_capacity(c.raw_len as usize);
                delta::apply(&base_plain, &delta, &mut data)
                    .map_err(|e| damaged(format!("delta: {e}")))?;
                codec::check(&data, &c.id, c.raw_len).map_err(damaged)?;
                if check_oid {
                    check_git_oid(oid, row.kind, &data)?;
                }
                if data.len() <= CHUNK_CACHE_BYTES / 8 {
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .put(c.rowid, Arc::new(data.clone()));
                }
                return Ok(ObjectWithDelta {
                    kind: row.kind,
                    data,
                    delta: Some((base, delta)),
                });
            }
        }
        let o = self.get_inner(oid, check_oid)?;
        Ok(ObjectWithDelta {
            kind: o.kind,
            data: o.data,
            delta: None,
        })
    }

    /// Remembers a verified chunk's plain bytes (so deltas against it decode without a re-read).
    pub(crate) fn cache_chunk(&self, rowid: i64, plain: Arc<Vec<u8>>) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(rowid, plain);
    }

    /// Reads an object back: reassembles its chunks, checking every chunk's
    /// blake3 and the object's git id.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`], [`Error::ChunkDamaged`], [`Error::ObjectDamaged`].
    pub fn get(&self, oid: &ObjectId) -> Result<Object, Error> {
        self.get_inner(oid, true)
    }

    /// Like [`Store::get`] but checks only each chunk's blake3, not the
    /// object's git id: for walks over objects whose ids were checked already
    /// in the same run, or whose ids a later step checks (restore's pack index).
    pub fn get_chunks_checked(&self, oid: &ObjectId) -> Result<Object, Error> {
        self.get_inner(oid, false)
    }

    fn get_inner(&self, oid: &ObjectId, check_oid: bool) -> Result<Object, Error> {
        let (row, chunks) = self
            .with_index(|i| -> Result<_, index::Error> {
                let Some(row) = i.object(oid)? else {
                    return Ok(None);
                };
                let chunks = i.object_chunks(&row)?;
                Ok(Some((row, chunks)))
            })?
            .ok_or(Error::ObjectNotFound { oid: *oid })?;
        let mut data = Vec::with_capacity(row.size as usize);
        for c in chunks {
            data.extend_from_slice(&self.chunk_plain(c)?);
        }
        if data.len() as u64 != row.size {
            return Err(Error::ObjectDamaged {
                oid: *oid,
                reason: format!("{} bytes instead of {}", data.len(), row.size),
            });
        }
        if check_oid {
            check_git_oid(oid, row.kind, &data)?;
        }
        Ok(Object {
            kind: row.kind,
            data,
        })
    }
}

struct Pending {
    depth: u32,
    kind: PackKind,
    offset: u64,
    stored_len: u32,
    raw_len: u32,
    base: Option<ChunkId>,
}

/// A pack also closes at this many chunk and object records, whatever its
/// size: what the writer remembers until a pack is committed grows with the
/// records (about 0.8 KiB each), and packs of small deltas (trees, commits,
/// about 100 bytes each) would otherwise hold 300,000 of them.
const PACK_MAX_RECORDS: usize = 100_000;

/// Adds objects to the store. Holds the write lock until dropped.
///
/// Objects become visible to readers when [`Writer::commit`] returns (or
/// earlier, whenever a pack fills up). A writer dropped without `commit`
/// discards what it had not yet committed.
pub struct Writer<'s> {
    store: &'s Store,
    _lock: WriteLock,
    index: Index,
    open: [Option<PackWriter>; 2],
    pending_chunks: HashMap<ChunkId, Pending>,
    pending_order: Vec<(PackKind, NewChunk)>,
    /// Pending objects and, for single-chunk ones, their chunk.
    pending_objects: HashMap<ObjectId, Option<ChunkId>>,
    stats: WriteStats,
}

struct Prepared {
    obj: NewObject,
    ranges: Vec<std::ops::Range<usize>>,
    ids: Vec<ChunkId>,
}

struct Job {
    obj: usize,
    chunk: usize,
    base: Option<(ChunkId, u32)>,
    base_plain: Option<Arc<Vec<u8>>>,
}

fn slot(kind: PackKind) -> usize {
    match kind {
        PackKind::Tree => 0,
        PackKind::Data => 1,
    }
}

impl<'s> Writer<'s> {
    /// The store this writer writes to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// What this writer has added so far.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// True when the object is stored or pending in this writer.
    pub fn contains(&self, oid: &ObjectId) -> Result<bool, Error> {
        Ok(self.pending_objects.contains_key(oid) || self.index.has_object(oid)?)
    }

    /// The chunk id and delta depth of `oid` when it is a single-chunk object
    /// that is stored, pending, or earlier in the current batch.
    fn resolve_base(
        &self,
        oid: &ObjectId,
        batch: &HashMap<ObjectId, (ChunkId, u32, usize)>,
    ) -> Result<Option<(ChunkId, u32)>, Error> {
        if let Some(&(id, depth, _)) = batch.get(oid) {
            return Ok(Some((id, depth)));
        }
        let chunk = match self.pending_objects.get(oid) {
            Some(None) => return Ok(None),
            Some(Some(id)) => Some(*id),
            None => None,
        };
        if let Some(id) = chunk {
            if let Some(p) = self.pending_chunks.get(&id) {
                return Ok(Some((id, p.depth)));
            }
            return Ok(self.index.chunk_by_hash(&id)?.map(|r| (id, r.depth)));
        }
        match self.index.object(oid)? {
            Some(o) if o.nchunks == 1 => Ok(self.index.chunk(o.chunk)?.map(|r| (r.id, r.depth))),
            _ => Ok(None),
        }
    }

    /// Plain bytes of a stored or pending chunk (to compute a delta against it).
    fn plain_of(&mut self, id: &ChunkId) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(p) = self.pending_chunks.get(id) {
            let (kind, offset, stored_len, raw_len, base) =
                (p.kind, p.offset, p.stored_len, p.raw_len, p.base);
            let w = self.open[slot(kind)]
                .as_mut()
                .expect("pending chunks live in an open pack");
            let stored = w.read_back(offset, stored_len)?;
            let base_plain = match base {
                Some(b) => Some(self.plain_of(&b)?),
                None => None,
            };
            let plain = codec::decode(&stored, raw_len, base_plain.as_deref().map(|b| &b[..]))
                .map_err(|reason| Error::ObjectDamaged {
                    oid: ObjectId::null(gix::hash::Kind::Sha1),
                    reason,
                })?;
            return Ok(Arc::new(plain));
        }
        let row = self
            .index
            .chunk_by_hash(id)?
            .ok_or_else(|| index::Error::Corrupt {
                path: self.index.path().to_owned(),
                reason: format!("chunk {id} vanished"),
            })?;
        self.store.chunk_plain(row.rowid)
    }

    /// Puts a batch of objects. Objects already stored are skipped; the others
    /// are checked against their ids, chunked, hashed and compressed in
    /// parallel, then appended to the open packs.
    ///
    /// # Errors
    /// [`Error::OidMismatch`] when an object's content does not match its id (nothing of
    /// the batch is stored then), I/O and index errors.
    pub fn put(&mut self, objects: Vec<NewObject>) -> Result<(), Error> {
        self.put_inner(objects, true)
    }

    /// Like [`Writer::put`] for objects whose content the caller has already
    /// checked against their ids (sync decodes packs with gix, which hashes
    /// every object against the pack index): saves a second SHA-1 of every object.
    pub fn put_verified(&mut self, objects: Vec<NewObject>) -> Result<(), Error> {
        self.put_inner(objects, false)
    }

    fn put_inner(&mut self, objects: Vec<NewObject>, check_oids: bool) -> Result<(), Error> {
        let mut seen = HashSet::new();
        let mut fresh = Vec::with_capacity(objects.len());
        for o in objects {
            if !seen.insert(o.oid)
                || self.pending_objects.contains_key(&o.oid)
                || self.index.has_object(&o.oid)?
            {
                continue;
            }
            fresh.push(o);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let chunker = self.store.config.chunker;
        let mut prepared: Vec<Prepared> = fresh
            .into_par_iter()
            .map(|obj| {
                if check_oids {
                    let actual = git_oid(obj.kind, &obj.data);
                    if actual != obj.oid {
                        return Err(Error::OidMismatch {
                            oid: obj.oid,
                            kind: obj.kind,
                            actual,
                        });
                    }
                }
                let ranges = chunker.split(&obj.data);
                let ids = ranges
                    .iter()
                    .map(|r| ChunkId::of(&obj.data[r.clone()]))
                    .collect();
                Ok(Prepared { obj, ranges, ids })
            })
            .collect::<Result<_, _>>()?;

        // Decide, in order, which chunks are new and what they are a delta against.
        let max_depth = self.store.config.max_delta_depth;
        let mut planned: HashSet<ChunkId> = HashSet::new();
        let mut batch: HashMap<ObjectId, (ChunkId, u32, usize)> = HashMap::new();
        let mut jobs = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            let mut depth_of_single = 0;
            for (j, id) in p.ids.iter().enumerate() {
                if planned.contains(id)
                    || self.pending_chunks.contains_key(id)
                    || self.index.chunk_by_hash(id)?.is_some()
                {
                    continue;
                }
                planned.insert(*id);
                let mut job = Job {
                    obj: i,
                    chunk: j,
                    base: None,
                    base_plain: None,
                };
                if let (1, Some(b)) = (p.ids.len(), &p.obj.base) {
                    if let Some((bid, depth)) = self.resolve_base(&b.oid, &batch)? {
                        if depth < max_depth && bid != *id {
                            job.base = Some((bid, depth + 1));
                            depth_of_single = depth + 1;
                            // Without a delta we compute one; an untrusted caller's delta is checked.
                            if b.delta.is_none() || check_oids {
                                job.base_plain = Some(match batch.get(&b.oid) {
                                    Some(&(_, _, k)) => Arc::new(prepared[k].obj.data.clone()),
                                    None => self.plain_of(&bid)?,
                                });
                            }
                        }
                    }
                }
                jobs.push(job);
            }
            if p.ids.len() == 1 {
                batch.insert(p.obj.oid, (p.ids[0], depth_of_single, i));
            }
        }

        // Encode (delta + zstd) in parallel.
        let level = self.store.config.compression.level;
        let encoded: Vec<(Vec<u8>, Option<(ChunkId, u32)>)> = jobs
            .par_iter()
            .map(|job| {
                let p = &prepared[job.obj];
                let plain = &p.obj.data[p.ranges[job.chunk].clone()];
                if let Some(base) = job.base {
                    let computed;
                    let delta: &[u8] = match (
                        &p.obj.base.as_ref().and_then(|b| b.delta.as_deref()),
                        &job.base_plain,
                    ) {
                        (Some(d), Some(bp)) => {
                            let mut out = Vec::with_capacity(plain.len());
                            if delta::apply(bp, d, &mut out).is_ok() && out == plain {
                                d
                            } else {
                                tracing::warn!(oid = %p.obj.oid, "the delta given does not produce the object: computing one");
                                computed = delta::encode(bp, plain);
                                &computed
                            }
                        }
                        (Some(d), None) => {
                            // Trusted source (gix checked the object): a cheap size sanity check.
                            if delta::header(d).map(|(_, r)| r as usize == plain.len()).unwrap_or(false) {
                                d
                            } else {
                                return codec::compress(level, plain).map(|s| (s, None));
                            }
                        }
                        (None, Some(bp)) => {
                            computed = delta::encode(bp, plain);
                            &computed
                        }
                        (None, None) => unreachable!("a delta job has a delta or a base"),
                    };
                    if delta.len() < plain.len() {
                        return codec::compress(level, delta).map(|s| (s, Some(base)));
                    }
                }
                codec::compress(level, plain).map(|s| (s, None))
            })
            .collect::<Result<_, String>>()
            .map_err(|reason| Error::Io {
                path: self.store.packs_dir(),
                source: std::io::Error::other(reason),
            })?;

        // Append object by object; packs are closed only between objects.
        let mut jobs = jobs.into_iter().zip(encoded).peekable();
        for (i, p) in prepared.iter_mut().enumerate() {
            let kind = PackKind::for_object(p.obj.kind);
            while let Some((job, _)) = jobs.peek() {
                if job.obj != i {
                    break;
                }
                let (job, (stored, base)) = jobs.next().expect("peeked");
                let id = p.ids[job.chunk];
                let raw_len = p.ranges[job.chunk].len() as u32;
                let s = slot(kind);
                if self.open[s].is_none() {
                    self.open[s] = Some(PackWriter::create(
                        &self.store.packs_dir(),
                        kind,
                        self.store.config.pack_version(),
                    )?);
                }
                let w = self.open[s].as_mut().expect("just opened");
                let offset = w.append(id, raw_len, base.map(|b| b.0), &stored)?;
                let depth = base.map_or(0, |b| b.1);
                self.pending_chunks.insert(
                    id,
                    Pending {
                        depth,
                        kind,
                        offset,
                        stored_len: stored.len() as u32,
                        raw_len,
                        base: base.map(|b| b.0),
                    },
                );
                self.pending_order.push((
                    kind,
                    NewChunk {
                        pack: 0,
                        id,
                        offset,
                        stored_len: stored.len() as u32,
                        raw_len,
                        base: base.map(|b| b.0),
                        depth,
                    },
                ));
                self.stats.chunks += 1;
                self.stats.delta_chunks += u64::from(base.is_some());
                self.stats.stored_bytes += stored.len() as u64;
            }
            let s = slot(kind);
            if self.open[s].is_none() {
                self.open[s] = Some(PackWriter::create(
                    &self.store.packs_dir(),
                    kind,
                    self.store.config.pack_version(),
                )?);
            }
            let size = p.obj.data.len() as u64;
            self.open[s]
                .as_mut()
                .expect("just opened")
                .add_object(ObjectRecord {
                    oid: p.obj.oid,
                    kind: p.obj.kind,
                    size,
                    chunks: p.ids.clone(),
                });
            self.pending_objects
                .insert(p.obj.oid, (p.ids.len() == 1).then(|| p.ids[0]));
            self.stats.objects += 1;
            self.stats.raw_bytes += size;
            let target = self.store.config.pack_target_size;
            if self
                .open
                .iter()
                .flatten()
                .any(|w| w.len() >= target || w.records() >= PACK_MAX_RECORDS)
            {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the open packs (fsync, rename) and commits them to the index in
    /// one transaction. Objects put so far are durable afterwards.
    pub fn flush(&mut self) -> Result<(), Error> {
        let mut finished = Vec::new();
        let mut pack_of_kind = [usize::MAX; 2];
        for (s, w) in self.open.iter_mut().enumerate() {
            if let Some(w) = w.take() {
                if !w.is_empty() {
                    pack_of_kind[s] = finished.len();
                    finished.push(w.finish()?);
                }
            }
        }
        if finished.is_empty() {
            return Ok(());
        }
        crate::crash_point("packs-written");
        let chunks: Vec<NewChunk> = self
            .pending_order
            .drain(..)
            .map(|(kind, mut c)| {
                c.pack = pack_of_kind[slot(kind)];
                c
            })
            .collect();
        self.index
            .commit_packs(&finished, &chunks, jiff::Timestamp::now().as_second())?;
        crate::crash_point("index-committed");
        for p in &finished {
            tracing::debug!(pack = %p.name, bytes = p.size, chunks = p.entries.len(), objects = p.objects.len(), "pack committed");
        }
        self.stats.packs += finished.len() as u64;
        self.stats.pack_bytes += finished.iter().map(|p| p.size).sum::<u64>();
        self.pending_chunks.clear();
        self.pending_objects.clear();
        Ok(())
    }

    /// Flushes and returns what this writer added. The lock is released when
    /// the writer is dropped.
    pub fn commit(&mut self) -> Result<WriteStats, Error> {
        self.flush()?;
        self.index.checkpoint();
        Ok(self.stats)
    }

    /// The writer's own index connection (for snapshot records written under the lock).
    pub fn index(&mut self) -> &mut Index {
        &mut self.index
    }
}
