//! The SQLite index: the only module that writes SQL.
//!
//! Tables (schema version [`SCHEMA_VERSION`], see docs/FORMAT.md for the
//! column meanings): `meta`, `packs`, `chunks`, `objects`, `object_chunks`,
//! `repos`, `repo_records`, `snapshots`, `snapshot_refs`. The database runs in
//! WAL mode with `synchronous=FULL`; every batch of packs is committed in one
//! transaction, after the packs themselves are durable.
//!
//! One file per noun: `schema` (tables and migrations), `objects` (chunks,
//! objects, packs), `repos` (repositories and discovery), `snapshots`,
//! `checks` (verify's queries), `live` (forget and prune), `rebuild` (the
//! SQL of repair-index); `sql` is the one helper every query goes through.

mod checks;
mod live;
mod objects;
mod rebuild;
mod repos;
mod schema;
mod snapshots;
mod sql;

pub use checks::{Finding, PackExtent};
pub use live::{MovedChunk, PackLiveness, PruneCommit};
pub use objects::{ChunkRow, NewChunk, ObjectRow, PackRow, Totals};
pub use rebuild::{ChunkPlace, Rebuild};
pub use repos::{Registration, RegistryChanges, RepoRow, RepoState, SyncStatus};
pub use schema::SCHEMA_VERSION;

use rusqlite::{Connection, OpenFlags};
use sql::Sql;
use std::path::{Path, PathBuf};

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed.
    #[error("index {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database was written by a newer repovault.
    #[error("index {path} has schema version {found}, newer than {SCHEMA_VERSION} which this repovault understands: upgrade repovault")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The index file is not there.
    #[error("index {path} is missing: rebuild it from the packs and snapshot files with `repovault repair-index`")]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// A value in the database is not what the schema allows.
    #[error("index {path} is damaged: {reason} (run `repovault verify`)")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A column holds a value its type does not allow (a negative offset, an
    /// unknown kind, a malformed id).
    #[error("index {path} is damaged: {table}.{column} {what}: rebuild it from the packs and snapshot files with `repovault repair-index`")]
    CorruptValue {
        /// The database file.
        path: PathBuf,
        /// The table the value was read from.
        table: &'static str,
        /// The column, as the query names it.
        column: String,
        /// What is wrong with the value.
        what: String,
    },
}

impl Error {
    /// True when the database holds values it must not (damage, not a
    /// failure to read it).
    pub fn is_damage(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::CorruptValue { .. })
    }
}

/// A connection to the index.
pub struct Index {
    conn: Connection,
    path: PathBuf,
}

/// Converts a count or size for storing (SQLite integers are signed).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Index {
    /// Creates a new index at `path` (which must not exist).
    pub fn create(path: &Path) -> Result<Self, Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut idx = Self::open_with(path, flags)?;
        idx.migrate()?;
        Ok(idx)
    }

    /// Opens an existing index, migrating an older schema.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if !path.is_file() {
            return Err(Error::Missing {
                path: path.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut idx = Self::open_with(path, flags)?;
        idx.migrate()?;
        Ok(idx)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self, Error> {
        let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        // Every query is a cached statement: room for all of them.
        conn.set_prepared_statement_cache_capacity(128);
        let idx = Self {
            conn,
            path: path.to_owned(),
        };
        idx.sql().batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=60000;",
        )?;
        Ok(idx)
    }

    /// Queries outside a transaction.
    fn sql(&self) -> Sql<'_> {
        Sql::new(&self.conn, &self.path)
    }

    /// Runs `f` in one transaction, committed when it returns `Ok` (rolled
    /// back otherwise).
    fn transaction<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(Sql<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let path = &self.path;
        let err = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let out = f(Sql::new(&tx, path))?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Moves the write-ahead log into the database and truncates it, so the
    /// store on disk is the database file alone (best effort: readers may hold it).
    pub fn checkpoint(&self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::debug!("wal checkpoint: {e}");
        }
    }

    /// Starts a read transaction unless one (or a write) is open: until
    /// [`Index::end_read`], every query sees the same state of the index and
    /// SQLite does not lock and unlock the WAL around each statement (which
    /// costs more than a lookup by key). Returns whether it started one.
    pub fn begin_read(&self) -> Result<bool, Error> {
        if !self.conn.is_autocommit() {
            return Ok(false);
        }
        // Readers walk the whole index: a page cache of up to 64 MiB instead
        // of SQLite's 2 MiB keeps a large index from being re-read page by page.
        self.sql()
            .batch("PRAGMA cache_size=-65536; BEGIN DEFERRED")?;
        Ok(true)
    }

    /// Ends the read transaction [`Index::begin_read`] started.
    pub fn end_read(&self) {
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            tracing::debug!("ending a read transaction: {e}");
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `integrity_check`; returns its complaints (empty when healthy).
    pub fn integrity_check(&self) -> Result<Vec<String>, Error> {
        let all = self
            .sql()
            .rows("database", "PRAGMA integrity_check", [], |r| {
                r.get::<String>(0)
            })?;
        Ok(all.into_iter().filter(|r| r != "ok").collect())
    }
}
