//! Errors of the store: one enum whose messages name the path and the fix.

use super::{CONFIG_FILE, FORMAT_VERSION};
use crate::chunk::ChunkId;
use crate::{index, lock, pack, ObjectKind};
use gix::ObjectId;
use std::path::{Path, PathBuf};

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
    /// Compressing a chunk for a pack failed.
    #[error("compressing a chunk: {0}")]
    Compress(super::codec::Error),
}

impl Error {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}
