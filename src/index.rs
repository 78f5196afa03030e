//! The SQLite index: the only module that writes SQL.
//!
//! Tables (schema version 1, see docs/FORMAT.md for the column meanings):
//! `meta`, `packs`, `chunks`, `objects`, `object_chunks`, `repos`,
//! `snapshots`, `snapshot_refs`. The database runs in WAL mode with
//! `synchronous=FULL`; every batch of packs is committed in one transaction,
//! after the packs themselves are durable.

use crate::chunk::ChunkId;
use crate::pack::{FinishedPack, PackKind};
use crate::snapshot::{RefEntry, Snapshot};
use crate::ObjectKind;
use gix::ObjectId;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The schema version this code writes; older databases are migrated.
pub const SCHEMA_VERSION: u32 = 4;

/// Migrations: entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE packs (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    kind    INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE chunks (
    id         INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    pack       INTEGER NOT NULL REFERENCES packs(id),
    offset     INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len    INTEGER NOT NULL,
    base       INTEGER REFERENCES chunks(id),
    depth      INTEGER NOT NULL
);
CREATE INDEX chunks_pack ON chunks(pack);
CREATE INDEX chunks_base ON chunks(base) WHERE base IS NOT NULL;
CREATE TABLE objects (
    oid     BLOB PRIMARY KEY,
    kind    INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    nchunks INTEGER NOT NULL,
    chunk   INTEGER NOT NULL REFERENCES chunks(id),
    pack    INTEGER NOT NULL REFERENCES packs(id)
) WITHOUT ROWID;
CREATE INDEX objects_chunk ON objects(chunk);
CREATE TABLE object_chunks (
    oid   BLOB NOT NULL,
    seq   INTEGER NOT NULL,
    chunk INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (oid, seq)
) WITHOUT ROWID;
CREATE TABLE repos (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    url          TEXT NOT NULL,
    created      INTEGER NOT NULL,
    last_checked INTEGER,
    last_status  TEXT,
    last_error   TEXT
);
CREATE TABLE snapshots (
    id         INTEGER PRIMARY KEY,
    sid        TEXT NOT NULL UNIQUE,
    repo       INTEGER NOT NULL REFERENCES repos(id),
    time       INTEGER NOT NULL,
    checked_at INTEGER NOT NULL,
    complete   INTEGER NOT NULL,
    missing    TEXT
);
CREATE INDEX snapshots_repo_time ON snapshots(repo, time);
CREATE TABLE snapshot_refs (
    snapshot INTEGER NOT NULL REFERENCES snapshots(id),
    name     BLOB NOT NULL,
    target   BLOB,
    symref   BLOB,
    peeled   BLOB,
    PRIMARY KEY (snapshot, name)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE repos ADD COLUMN key TEXT;
CREATE UNIQUE INDEX repos_key ON repos(key);
ALTER TABLE repos ADD COLUMN state TEXT NOT NULL DEFAULT 'active';
ALTER TABLE repos ADD COLUMN origin TEXT;
ALTER TABLE repos ADD COLUMN previous_names TEXT NOT NULL DEFAULT '';
CREATE TABLE repo_records (
    repo   INTEGER NOT NULL REFERENCES repos(id),
    time   INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (repo, time)
) WITHOUT ROWID;
"#,
    // Which objects use a chunk is only asked when verify finds damage (one
    // scan then) and per pack by verify --read-data (a join SQLite plans as
    // one scan of `objects`): not worth an index of ~32 bytes an object.
    r#"
DROP INDEX IF EXISTS objects_chunk;
"#,
    // Refs a sync could not back up (a JSON array of {name, target, reason}),
    // as in the snapshot file; NULL for snapshots without.
    r#"
ALTER TABLE snapshots ADD COLUMN skipped TEXT;
"#,
];

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
}

/// A chunk's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    /// Row id (stable within one index, not across `repair-index`).
    pub rowid: i64,
    /// blake3 of the plain bytes.
    pub id: ChunkId,
    /// Row id of the pack.
    pub pack: i64,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub stored_len: u32,
    /// Plain length.
    pub raw_len: u32,
    /// Row id of the base chunk for a delta.
    pub base: Option<i64>,
    /// Length of the delta chain down to a full chunk (0 for a full chunk).
    pub depth: u32,
}

/// An object's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// Git object id.
    pub oid: ObjectId,
    /// Kind.
    pub kind: ObjectKind,
    /// Content size.
    pub size: u64,
    /// Number of chunks.
    pub nchunks: u32,
    /// Row id of the first (for single-chunk objects: the only) chunk.
    pub chunk: i64,
}

/// A pack's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRow {
    /// Row id.
    pub rowid: i64,
    /// File name without `.pack`.
    pub name: String,
    /// Kind.
    pub kind: PackKind,
    /// Size in bytes.
    pub size: u64,
}

/// A chunk to insert, with its base by id.
#[derive(Debug, Clone)]
pub struct NewChunk {
    /// Index of the pack in the committed batch.
    pub pack: usize,
    /// Chunk id.
    pub id: ChunkId,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub stored_len: u32,
    /// Plain length.
    pub raw_len: u32,
    /// Base chunk.
    pub base: Option<ChunkId>,
    /// Delta depth.
    pub depth: u32,
}

/// Totals for `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Distinct git objects.
    pub objects: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Chunks stored as deltas.
    pub delta_chunks: u64,
    /// Pack files.
    pub packs: u64,
    /// Sum of the sizes of all distinct objects.
    pub raw_bytes: u64,
    /// Sum of the plain lengths of all distinct chunks.
    pub chunk_bytes: u64,
    /// Sum of the sizes of all pack files.
    pub stored_bytes: u64,
    /// Repositories.
    pub repos: u64,
    /// Snapshots.
    pub snapshots: u64,
}

/// A connection to the index.
pub struct Index {
    conn: Connection,
    path: PathBuf,
}

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
        let idx = Self {
            conn,
            path: path.to_owned(),
        };
        idx.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=60000;",
            )
            .map_err(|e| idx.err(e))?;
        Ok(idx)
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let version: u32 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                path: self.path.clone(),
                found: version,
            });
        }
        for (v, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|source| Error::Sqlite {
                path: self.path.clone(),
                source,
            })?;
            tx.execute_batch(sql).map_err(|source| Error::Sqlite {
                path: self.path.clone(),
                source,
            })?;
            tx.pragma_update(None, "user_version", (v + 1) as u32)
                .map_err(|source| Error::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
            tx.commit().map_err(|source| Error::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
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
        self.conn
            .execute_batch("PRAGMA cache_size=-65536; BEGIN DEFERRED")
            .map_err(|e| self.err(e))?;
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
        let mut st = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let r = r.map_err(|e| self.err(e))?;
            if r != "ok" {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn chunk_from_row(
        &self,
        r: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<(i64, Vec<u8>, i64, i64, i64, i64, Option<i64>, i64)> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    }

    fn to_chunk(
        &self,
        t: (i64, Vec<u8>, i64, i64, i64, i64, Option<i64>, i64),
    ) -> Result<ChunkRow, Error> {
        let id = ChunkId::from_slice(&t.1)
            .ok_or_else(|| self.corrupt(format!("chunk row {} has a malformed hash", t.0)))?;
        Ok(ChunkRow {
            rowid: t.0,
            id,
            pack: t.2,
            offset: t.3 as u64,
            stored_len: t.4 as u32,
            raw_len: t.5 as u32,
            base: t.6,
            depth: t.7 as u32,
        })
    }

    /// The chunk named `id`, if indexed.
    pub fn chunk_by_hash(&self, id: &ChunkId) -> Result<Option<ChunkRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, hash, pack, offset, stored_len, raw_len, base, depth FROM chunks WHERE hash = ?1")
            .map_err(|e| self.err(e))?;
        let t = st
            .query_row([&id.0[..]], |r| self.chunk_from_row(r))
            .optional()
            .map_err(|e| self.err(e))?;
        t.map(|t| self.to_chunk(t)).transpose()
    }

    /// The chunk with row id `rowid`.
    pub fn chunk(&self, rowid: i64) -> Result<Option<ChunkRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, hash, pack, offset, stored_len, raw_len, base, depth FROM chunks WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        let t = st
            .query_row([rowid], |r| self.chunk_from_row(r))
            .optional()
            .map_err(|e| self.err(e))?;
        t.map(|t| self.to_chunk(t)).transpose()
    }

    /// The object `oid`, if indexed.
    pub fn object(&self, oid: &ObjectId) -> Result<Option<ObjectRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT kind, size, nchunks, chunk FROM objects WHERE oid = ?1")
            .map_err(|e| self.err(e))?;
        let t: Option<(u8, i64, i64, i64)> = st
            .query_row([oid.as_bytes()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((kind, size, nchunks, chunk)) = t else {
            return Ok(None);
        };
        let kind = ObjectKind::from_code(kind)
            .ok_or_else(|| self.corrupt(format!("object {oid} has unknown kind {kind}")))?;
        Ok(Some(ObjectRow {
            oid: *oid,
            kind,
            size: size as u64,
            nchunks: nchunks as u32,
            chunk,
        }))
    }

    /// True when `oid` is indexed.
    pub fn has_object(&self, oid: &ObjectId) -> Result<bool, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM objects WHERE oid = ?1")
            .map_err(|e| self.err(e))?;
        st.exists([oid.as_bytes()]).map_err(|e| self.err(e))
    }

    /// Row ids of an object's chunks, in order.
    pub fn object_chunks(&self, obj: &ObjectRow) -> Result<Vec<i64>, Error> {
        if obj.nchunks <= 1 {
            return Ok(vec![obj.chunk]);
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT chunk FROM object_chunks WHERE oid = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([obj.oid.as_bytes()], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))?;
        let v = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        if v.len() != obj.nchunks as usize {
            return Err(self.corrupt(format!(
                "object {} lists {} of its {} chunks",
                obj.oid,
                v.len(),
                obj.nchunks
            )));
        }
        Ok(v)
    }

    /// The pack with row id `rowid`.
    pub fn pack(&self, rowid: i64) -> Result<Option<PackRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, kind, size FROM packs WHERE id = ?1")
            .map_err(|e| self.err(e))?;
        let t: Option<(String, u8, i64)> = st
            .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((name, kind, size)) = t else {
            return Ok(None);
        };
        let kind = PackKind::from_code(kind)
            .ok_or_else(|| self.corrupt(format!("pack {name} has unknown kind {kind}")))?;
        Ok(Some(PackRow {
            rowid,
            name,
            kind,
            size: size as u64,
        }))
    }

    /// Every pack.
    pub fn packs(&self) -> Result<Vec<PackRow>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT id, name, kind, size FROM packs ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u8>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let (rowid, name, kind, size) = r.map_err(|e| self.err(e))?;
            let kind = PackKind::from_code(kind)
                .ok_or_else(|| self.corrupt(format!("pack {name} has unknown kind {kind}")))?;
            out.push(PackRow {
                rowid,
                name,
                kind,
                size: size as u64,
            });
        }
        Ok(out)
    }

    /// Records finished packs, their chunks (in `chunks` order: a base before
    /// its deltas) and their object records, in one transaction.
    pub fn commit_packs(
        &mut self,
        packs: &[FinishedPack],
        chunks: &[NewChunk],
        now: i64,
    ) -> Result<(), Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let mut pack_ids = Vec::with_capacity(packs.len());
        {
            let mut ins_pack = tx
                .prepare_cached(
                    "INSERT INTO packs (name, kind, size, created) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(e)?;
            for p in packs {
                ins_pack
                    .execute(params![p.name, p.kind.code(), to_i64(p.size), now])
                    .map_err(e)?;
                pack_ids.push(tx.last_insert_rowid());
            }
            let mut ins_chunk = tx
                .prepare_cached(
                    "INSERT INTO chunks (hash, pack, offset, stored_len, raw_len, base, depth)
                     VALUES (?1, ?2, ?3, ?4, ?5, (SELECT id FROM chunks WHERE hash = ?6), ?7)",
                )
                .map_err(e)?;
            for c in chunks {
                let base = c.base.map(|b| b.0.to_vec());
                ins_chunk
                    .execute(params![
                        &c.id.0[..],
                        pack_ids[c.pack],
                        to_i64(c.offset),
                        c.stored_len,
                        c.raw_len,
                        base,
                        c.depth
                    ])
                    .map_err(e)?;
            }
            for (p, pid) in packs.iter().zip(&pack_ids) {
                insert_object_records(&tx, &p.objects, *pid).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Totals over the whole index.
    pub fn totals(&self) -> Result<Totals, Error> {
        let q = |sql: &str| -> Result<u64, Error> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.unwrap_or(0) as u64)
                .map_err(|e| self.err(e))
        };
        Ok(Totals {
            objects: q("SELECT count(*) FROM objects")?,
            chunks: q("SELECT count(*) FROM chunks")?,
            delta_chunks: q("SELECT count(*) FROM chunks WHERE base IS NOT NULL")?,
            packs: q("SELECT count(*) FROM packs")?,
            raw_bytes: q("SELECT sum(size) FROM objects")?,
            chunk_bytes: q("SELECT sum(raw_len) FROM chunks")?,
            stored_bytes: q("SELECT sum(size) FROM packs")?,
            repos: q("SELECT count(*) FROM repos")?,
            snapshots: q("SELECT count(*) FROM snapshots")?,
        })
    }

    /// The repository named `name`, created with `url` if new; returns its row id.
    pub fn upsert_repo(&mut self, name: &str, url: &str, now: i64) -> Result<i64, Error> {
        self.conn
            .execute(
                "INSERT INTO repos (name, url, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET url = excluded.url",
                params![name, url, now],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .query_row("SELECT id FROM repos WHERE name = ?1", [name], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Records the outcome of a sync attempt of a repository.
    pub fn set_repo_status(
        &mut self,
        repo: i64,
        checked: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE repos SET last_checked = ?2, last_status = ?3, last_error = ?4 WHERE id = ?1",
                params![repo, checked, status, error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every repository.
    pub fn repos(&self) -> Result<Vec<RepoRow>, Error> {
        let mut st = self
            .conn
            .prepare(
                "SELECT r.id, r.name, r.url, r.created, r.last_checked, r.last_status, r.last_error,
                        (SELECT count(*) FROM snapshots s WHERE s.repo = r.id),
                        (SELECT max(time) FROM snapshots s WHERE s.repo = r.id),
                        r.key, r.state, r.origin, r.previous_names,
                        (SELECT record FROM repo_records x WHERE x.repo = r.id ORDER BY time DESC LIMIT 1)
                 FROM repos r ORDER BY r.name",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(RepoRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    url: r.get(2)?,
                    created: r.get(3)?,
                    last_checked: r.get(4)?,
                    last_status: r.get(5)?,
                    last_error: r.get(6)?,
                    snapshots: r.get::<_, i64>(7)? as u64,
                    last_snapshot: r.get(8)?,
                    key: r.get(9)?,
                    state: r.get(10)?,
                    origin: r.get(11)?,
                    previous_names: r
                        .get::<_, String>(12)?
                        .split('\n')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    record: r
                        .get::<_, Option<String>>(13)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records a snapshot (row and refs) in one transaction.
    pub fn insert_snapshot(&mut self, repo: i64, snap: &Snapshot) -> Result<(), Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let missing = (!snap.missing.is_empty()).then(|| {
            snap.missing
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let skipped = (!snap.skipped.is_empty())
            .then(|| serde_json::to_string(&snap.skipped).expect("skipped refs serialize"));
        tx.execute(
            "INSERT INTO snapshots (sid, repo, time, checked_at, complete, missing, skipped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                snap.id,
                repo,
                snap.time.as_microsecond(),
                snap.checked_at.as_microsecond(),
                snap.complete,
                missing,
                skipped
            ],
        )
        .map_err(e)?;
        let sid = tx.last_insert_rowid();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO snapshot_refs (snapshot, name, target, symref, peeled) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(e)?;
            for r in &snap.refs {
                st.execute(params![
                    sid,
                    r.name,
                    r.target.map(|o| o.as_bytes().to_vec()),
                    r.symref,
                    r.peeled.map(|o| o.as_bytes().to_vec())
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// The ids of every snapshot.
    pub fn snapshot_ids(&self) -> Result<Vec<String>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT sid FROM snapshots")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Sets a snapshot's `checked_at` (an unchanged repository was checked again).
    pub fn touch_snapshot(&mut self, sid: &str, checked_at: i64) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE snapshots SET checked_at = ?2 WHERE sid = ?1",
                params![sid, checked_at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Snapshots, oldest first; of one repository when `repo` is given.
    pub fn snapshots(&self, repo: Option<i64>) -> Result<Vec<Snapshot>, Error> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT s.id, s.sid, r.name, r.url, s.time, s.checked_at, s.complete, s.missing, s.skipped
                 FROM snapshots s JOIN repos r ON r.id = s.repo
                 WHERE ?1 IS NULL OR s.repo = ?1 ORDER BY s.time, s.id",
            )
            .map_err(|e| self.err(e))?;
        type Row = (
            i64,
            String,
            String,
            String,
            i64,
            i64,
            bool,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = st
            .query_map([repo], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (rowid, sid, name, url, time, checked, complete, missing, skipped) in rows {
            let skipped = match skipped {
                Some(j) => serde_json::from_str(&j)
                    .map_err(|_| self.corrupt(format!("snapshot {sid}: bad skipped refs")))?,
                None => Vec::new(),
            };
            let ts = |v: i64| {
                jiff::Timestamp::from_microsecond(v)
                    .map_err(|_| self.corrupt(format!("snapshot {sid} has a bad time")))
            };
            let missing = missing
                .unwrap_or_default()
                .split_whitespace()
                .map(|s| {
                    ObjectId::from_hex(s.as_bytes())
                        .map_err(|_| self.corrupt(format!("snapshot {sid}: bad missing id")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Snapshot {
                refs: self.snapshot_refs(rowid)?,
                id: sid.clone(),
                repo: name,
                url,
                time: ts(time)?,
                checked_at: ts(checked)?,
                complete,
                missing,
                skipped,
            });
        }
        Ok(out)
    }

    fn snapshot_refs(&self, rowid: i64) -> Result<Vec<RefEntry>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, target, symref, peeled FROM snapshot_refs WHERE snapshot = ?1 ORDER BY name")
            .map_err(|e| self.err(e))?;
        type Row = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);
        let rows: Vec<Row> = st
            .query_map([rowid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let oid = |b: Option<Vec<u8>>| -> Result<Option<ObjectId>, Error> {
            b.map(|b| ObjectId::try_from(&b[..]).map_err(|_| self.corrupt("malformed ref target")))
                .transpose()
        };
        rows.into_iter()
            .map(|(name, target, symref, peeled)| {
                Ok(RefEntry {
                    name,
                    target: oid(target)?,
                    symref,
                    peeled: oid(peeled)?,
                })
            })
            .collect()
    }
}

/// Something the quick check found in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An object whose chunk list does not resolve.
    ObjectChunks {
        /// The object.
        oid: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// A chunk whose base or pack row is missing.
    Chunk {
        /// The chunk.
        id: ChunkId,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot ref whose target is not stored.
    RefTarget {
        /// The snapshot id.
        snapshot: String,
        /// The repository.
        repo: String,
        /// The ref.
        name: String,
        /// The missing target.
        target: ObjectId,
    },
    /// Rows that belong to nothing.
    Orphan {
        /// Which rows.
        what: String,
    },
}

/// A pack's extent according to the index.
#[derive(Debug, Clone)]
pub struct PackExtent {
    /// The pack.
    pub pack: PackRow,
    /// Chunks the index places in it.
    pub chunks: u64,
    /// The end of the last chunk.
    pub end: u64,
}

impl Index {
    /// Structural checks of the index (no pack is read).
    pub fn quick_check(&self) -> Result<Vec<Finding>, Error> {
        let mut out = Vec::new();
        let oid = |b: Vec<u8>| {
            ObjectId::try_from(&b[..]).map_err(|_| self.corrupt("malformed object id"))
        };
        let mut st = self
            .conn
            .prepare(
                "SELECT o.oid, o.nchunks, (SELECT count(*) FROM object_chunks c WHERE c.oid = o.oid)
                 FROM objects o WHERE o.nchunks > 1
                   AND (SELECT count(*) FROM object_chunks c WHERE c.oid = o.oid) != o.nchunks",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(Vec<u8>, i64, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for (o, n, have) in rows {
            out.push(Finding::ObjectChunks {
                oid: oid(o)?,
                reason: format!("lists {have} of its {n} chunks"),
            });
        }
        for (sql, reason) in [
            ("SELECT o.oid FROM objects o LEFT JOIN chunks c ON c.id = o.chunk WHERE c.id IS NULL", "its chunk row is missing"),
            (
                "SELECT DISTINCT oc.oid FROM object_chunks oc LEFT JOIN chunks c ON c.id = oc.chunk WHERE c.id IS NULL",
                "one of its chunk rows is missing",
            ),
        ] {
            let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows: Vec<Vec<u8>> =
                st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
            for o in rows {
                out.push(Finding::ObjectChunks { oid: oid(o)?, reason: reason.into() });
            }
        }
        for (sql, reason) in [
            (
                "SELECT c.hash FROM chunks c LEFT JOIN chunks b ON b.id = c.base WHERE c.base IS NOT NULL AND b.id IS NULL",
                "its delta base row is missing",
            ),
            ("SELECT c.hash FROM chunks c LEFT JOIN packs p ON p.id = c.pack WHERE p.id IS NULL", "its pack row is missing"),
        ] {
            let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows: Vec<Vec<u8>> =
                st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
            for h in rows {
                let id = ChunkId::from_slice(&h).ok_or_else(|| self.corrupt("malformed chunk id"))?;
                out.push(Finding::Chunk { id, reason: reason.into() });
            }
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT s.sid, p.name, r.name, r.target, s.missing FROM snapshot_refs r
                 JOIN snapshots s ON s.id = r.snapshot JOIN repos p ON p.id = s.repo
                 LEFT JOIN objects o ON o.oid = r.target
                 WHERE r.target IS NOT NULL AND o.oid IS NULL",
            )
            .map_err(|e| self.err(e))?;
        type RefRow = (String, String, Vec<u8>, Vec<u8>, Option<String>);
        let rows: Vec<RefRow> = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for (snapshot, repo, name, target, missing) in rows {
            let target = oid(target)?;
            // An incomplete snapshot lists what it lacks; that is recorded, not damage.
            if missing.is_some_and(|m| m.contains(&target.to_string())) {
                continue;
            }
            out.push(Finding::RefTarget {
                snapshot,
                repo,
                name: String::from_utf8_lossy(&name).into_owned(),
                target,
            });
        }
        for (sql, what) in [
            (
                "SELECT count(*) FROM object_chunks oc LEFT JOIN objects o ON o.oid = oc.oid WHERE o.oid IS NULL",
                "object_chunks rows without their object",
            ),
            (
                "SELECT count(*) FROM snapshot_refs r LEFT JOIN snapshots s ON s.id = r.snapshot WHERE s.id IS NULL",
                "snapshot_refs rows without their snapshot",
            ),
            ("SELECT count(*) FROM snapshots s LEFT JOIN repos r ON r.id = s.repo WHERE r.id IS NULL", "snapshots without their repository"),
            ("SELECT count(*) FROM objects o LEFT JOIN packs p ON p.id = o.pack WHERE p.id IS NULL", "objects whose record pack row is missing"),
        ] {
            let n: i64 = self.conn.query_row(sql, [], |r| r.get(0)).map_err(|e| self.err(e))?;
            if n > 0 {
                out.push(Finding::Orphan { what: format!("{n} {what}") });
            }
        }
        Ok(out)
    }

    /// For every pack: how many chunks the index places in it and where the last one ends.
    pub fn pack_extents(&self) -> Result<Vec<PackExtent>, Error> {
        let packs = self.packs()?;
        let mut st = self
            .conn
            .prepare("SELECT pack, count(*), max(offset + stored_len) FROM chunks GROUP BY pack")
            .map_err(|e| self.err(e))?;
        let m: HashMap<i64, (i64, i64)> = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    (
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    ),
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(packs
            .into_iter()
            .map(|p| {
                let (n, end) = m.get(&p.rowid).copied().unwrap_or((0, 0));
                PackExtent {
                    pack: p,
                    chunks: n as u64,
                    end: end as u64,
                }
            })
            .collect())
    }

    /// Every chunk the index places in pack `pack`, by offset.
    pub fn chunks_in_pack(&self, pack: i64) -> Result<Vec<ChunkRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, hash, pack, offset, stored_len, raw_len, base, depth FROM chunks WHERE pack = ?1 ORDER BY offset")
            .map_err(|e| self.err(e))?;
        let rows: Vec<_> = st
            .query_map([pack], |r| self.chunk_from_row(r))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|t| self.to_chunk(t)).collect()
    }

    /// Every object made of one chunk, as `(chunk row id, oid, kind)`, grouped
    /// by the pack its chunk lies in and sorted by chunk: one scan of the
    /// objects for all packs (about 32 bytes an object in memory).
    pub fn single_chunk_objects_by_pack(
        &self,
    ) -> Result<HashMap<i64, Vec<(i64, ObjectId, ObjectKind)>>, Error> {
        let mut st = self
            .conn
            .prepare(
                "SELECT c.pack, o.chunk, o.oid, o.kind FROM objects o JOIN chunks c ON c.id = o.chunk \
                 WHERE o.nchunks = 1",
            )
            .map_err(|e| self.err(e))?;
        let mut out: HashMap<i64, Vec<(i64, ObjectId, ObjectKind)>> = HashMap::new();
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let pack: i64 = r.get(0).map_err(|e| self.err(e))?;
            let chunk: i64 = r.get(1).map_err(|e| self.err(e))?;
            let oid: Vec<u8> = r.get(2).map_err(|e| self.err(e))?;
            let kind: u8 = r.get(3).map_err(|e| self.err(e))?;
            let oid =
                ObjectId::try_from(&oid[..]).map_err(|_| self.corrupt("malformed object id"))?;
            let kind = ObjectKind::from_code(kind)
                .ok_or_else(|| self.corrupt(format!("object {oid} has unknown kind {kind}")))?;
            out.entry(pack).or_default().push((chunk, oid, kind));
        }
        for v in out.values_mut() {
            v.sort_unstable_by_key(|e| e.0);
        }
        Ok(out)
    }

    /// Objects made of more than one chunk.
    pub fn multi_chunk_objects(&self) -> Result<Vec<ObjectId>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT oid FROM objects WHERE nchunks > 1")
            .map_err(|e| self.err(e))?;
        let rows: Vec<Vec<u8>> = st
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|o| ObjectId::try_from(&o[..]).map_err(|_| self.corrupt("malformed object id")))
            .collect()
    }

    /// Chunks stored as deltas against `chunk`.
    pub fn dependents(&self, chunk: i64) -> Result<Vec<i64>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM chunks WHERE base = ?1")
            .map_err(|e| self.err(e))?;
        let v = st
            .query_map([chunk], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(v)
    }

    /// The objects that use any of `chunks` (as their only or first chunk,
    /// or in their chunk list), each with one such chunk: one scan of the
    /// objects, whatever the number of chunks.
    pub fn objects_using(
        &self,
        chunks: &std::collections::HashSet<i64>,
    ) -> Result<Vec<(ObjectId, i64)>, Error> {
        let mut out = Vec::new();
        if chunks.is_empty() {
            return Ok(out);
        }
        for sql in [
            "SELECT oid, chunk FROM objects",
            "SELECT oid, chunk FROM object_chunks",
        ] {
            let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let mut rows = st.query([]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let chunk: i64 = r.get(1).map_err(|e| self.err(e))?;
                if chunks.contains(&chunk) {
                    let oid: Vec<u8> = r.get(0).map_err(|e| self.err(e))?;
                    let oid = ObjectId::try_from(&oid[..])
                        .map_err(|_| self.corrupt("malformed object id"))?;
                    out.push((oid, chunk));
                }
            }
        }
        Ok(out)
    }
}

impl Index {
    /// Fills an empty index from pack trailers (repair). Chunks found in
    /// several packs keep their first place; a delta whose base is in no pack
    /// is dropped, and so are the objects that need it. Returns the number of
    /// chunks dropped that way.
    pub fn rebuild_from_packs(
        &mut self,
        packs: &[(String, u64, crate::pack::PackContents)],
        now: i64,
    ) -> Result<u64, Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let mut dropped = 0u64;
        {
            let mut ins_pack = tx
                .prepare("INSERT INTO packs (name, kind, size, created) VALUES (?1, ?2, ?3, ?4)")
                .map_err(e)?;
            let mut ins_chunk = tx
                .prepare("INSERT OR IGNORE INTO chunks (hash, pack, offset, stored_len, raw_len, base, depth) VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0)")
                .map_err(e)?;
            let mut pack_ids = Vec::new();
            for (name, size, c) in packs {
                ins_pack
                    .execute(params![name, c.kind.code(), to_i64(*size), now])
                    .map_err(e)?;
                let pid = tx.last_insert_rowid();
                pack_ids.push(pid);
                for x in &c.entries {
                    ins_chunk
                        .execute(params![
                            &x.id.0[..],
                            pid,
                            to_i64(x.offset),
                            x.stored_len,
                            x.raw_len
                        ])
                        .map_err(e)?;
                }
            }
            // Bases: link every delta to its base, then compute depths.
            let mut set_base = tx
                .prepare("UPDATE chunks SET base = (SELECT id FROM chunks WHERE hash = ?2) WHERE hash = ?1 AND pack = ?3 AND offset = ?4")
                .map_err(e)?;
            for ((_, _, c), pid) in packs.iter().zip(&pack_ids) {
                for x in c.entries.iter().filter(|x| x.base.is_some()) {
                    let b = x.base.expect("filtered");
                    set_base
                        .execute(params![&x.id.0[..], &b.0[..], pid, to_i64(x.offset)])
                        .map_err(e)?;
                }
            }
            // A delta entry whose base is nowhere cannot be decoded: drop it.
            let mut is_delta: HashMap<(i64, i64), bool> = HashMap::new();
            for ((_, _, c), pid) in packs.iter().zip(&pack_ids) {
                for x in &c.entries {
                    is_delta.insert((*pid, to_i64(x.offset)), x.base.is_some());
                }
            }
            let mut st = tx
                .prepare("SELECT id, pack, offset, base FROM chunks")
                .map_err(e)?;
            let rows: Vec<(i64, i64, i64, Option<i64>)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(e)?
                .collect::<Result<_, _>>()
                .map_err(e)?;
            let mut base_of: HashMap<i64, Option<i64>> = HashMap::new();
            let mut del = tx.prepare("DELETE FROM chunks WHERE id = ?1").map_err(e)?;
            let mut doomed: Vec<i64> = Vec::new();
            for (id, pack, offset, base) in rows {
                if is_delta.get(&(pack, offset)).copied().unwrap_or(false) && base.is_none() {
                    doomed.push(id);
                } else {
                    base_of.insert(id, base);
                }
            }
            // Deltas on dropped chunks are dropped too (repeat until stable).
            loop {
                let before = doomed.len();
                let gone: std::collections::HashSet<i64> = doomed.iter().copied().collect();
                let more: Vec<i64> = base_of
                    .iter()
                    .filter(|(_, b)| b.is_some_and(|b| gone.contains(&b)))
                    .map(|(id, _)| *id)
                    .collect();
                for id in more {
                    base_of.remove(&id);
                    doomed.push(id);
                }
                if doomed.len() == before {
                    break;
                }
            }
            // Delete dependents before their bases.
            for id in doomed.iter().rev() {
                del.execute([id]).map_err(e)?;
                dropped += 1;
            }
            let mut depth: HashMap<i64, u32> = HashMap::new();
            let mut set_depth = tx
                .prepare("UPDATE chunks SET depth = ?2 WHERE id = ?1")
                .map_err(e)?;
            let ids: Vec<i64> = base_of.keys().copied().collect();
            for id in ids {
                let mut chain = vec![id];
                let mut cur = id;
                let d0 = loop {
                    if let Some(d) = depth.get(&cur) {
                        break *d;
                    }
                    match base_of.get(&cur).copied().flatten() {
                        Some(b) if chain.len() < 10_000 => {
                            chain.push(b);
                            cur = b;
                        }
                        _ => {
                            depth.insert(cur, 0);
                            chain.pop();
                            break 0;
                        }
                    }
                };
                let mut d = d0;
                while let Some(c) = chain.pop() {
                    d += 1;
                    depth.insert(c, d);
                    set_depth.execute(params![c, d]).map_err(e)?;
                }
            }
            for ((_, _, c), pid) in packs.iter().zip(&pack_ids) {
                insert_object_records(&tx, &c.objects, *pid).map_err(e)?;
            }
            // An object with a chunk that is in no pack (or was dropped) cannot be read.
            tx.execute_batch(
                "DELETE FROM objects WHERE nchunks > 1
                   AND nchunks != (SELECT count(*) FROM object_chunks c WHERE c.oid = objects.oid);
                 DELETE FROM object_chunks WHERE oid NOT IN (SELECT oid FROM objects);",
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(dropped)
    }
}

/// Inserts object records (from pack `pack`) and, for multi-chunk objects,
/// their chunk lists; chunks are resolved by hash, so they must be inserted
/// first. An object already indexed, or whose chunk is not indexed, is skipped.
fn insert_object_records(
    tx: &rusqlite::Transaction<'_>,
    objects: &[crate::pack::ObjectRecord],
    pack: i64,
) -> rusqlite::Result<()> {
    let mut ins_obj = tx.prepare_cached(
        "INSERT OR IGNORE INTO objects (oid, kind, size, nchunks, chunk, pack)
         VALUES (?1, ?2, ?3, ?4, (SELECT id FROM chunks WHERE hash = ?5), ?6)",
    )?;
    let mut ins_oc = tx.prepare_cached(
        "INSERT OR IGNORE INTO object_chunks (oid, seq, chunk) VALUES (?1, ?2, (SELECT id FROM chunks WHERE hash = ?3))",
    )?;
    for o in objects {
        let Some(first) = o.chunks.first() else {
            continue;
        };
        ins_obj.execute(params![
            o.oid.as_bytes(),
            o.kind.code(),
            to_i64(o.size),
            o.chunks.len() as i64,
            &first.0[..],
            pack
        ])?;
        if o.chunks.len() > 1 {
            for (seq, c) in o.chunks.iter().enumerate() {
                ins_oc.execute(params![o.oid.as_bytes(), seq as i64, &c.0[..]])?;
            }
        }
    }
    Ok(())
}

/// A repository's row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepoRow {
    /// Row id.
    #[serde(skip)]
    pub id: i64,
    /// Name (`host/path`).
    pub name: String,
    /// URL without credentials.
    pub url: String,
    /// When first seen (unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::seconds")]
    pub created: i64,
    /// Last sync attempt (unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::opt_seconds")]
    pub last_checked: Option<i64>,
    /// Outcome of the last sync attempt (`new`, `changed`, `unchanged`, `failed`).
    pub last_status: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Number of snapshots.
    pub snapshots: u64,
    /// Time of the newest snapshot (unix microseconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::opt_micros")]
    pub last_snapshot: Option<i64>,
    /// The provider's stable identity (`azure:<org>:<guid>`, ...), for discovered repositories.
    pub key: Option<String>,
    /// `active`, `disabled` or `deleted` (upstream).
    pub state: String,
    /// The configured source that discovered it.
    pub origin: Option<String>,
    /// Names it had before a rename.
    pub previous_names: Vec<String>,
    /// The provider's latest record of it.
    pub record: Option<serde_json::Value>,
}

/// A discovered repository to register.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Stable provider identity.
    pub key: String,
    /// Current name.
    pub name: String,
    /// Clone URL.
    pub url: String,
    /// Disabled upstream.
    pub disabled: bool,
    /// The provider's record (JSON).
    pub record: serde_json::Value,
}

/// What registering a listing changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RegistryChanges {
    /// Repositories seen for the first time.
    pub new: Vec<String>,
    /// Renamed repositories: (old name, new name).
    pub renamed: Vec<(String, String)>,
    /// Repositories missing from a complete listing.
    pub deleted: Vec<String>,
    /// Repositories disabled upstream.
    pub disabled: Vec<String>,
}

impl Index {
    /// Registers the repositories a source listed: matched by key (a rename
    /// keeps the history under the new name), records kept when they change,
    /// states updated. When the listing is `complete`, repositories of this
    /// `origin` that it lacks are marked deleted (their snapshots stay).
    pub fn register(
        &mut self,
        origin: &str,
        repos: &[Registration],
        complete: bool,
        now: i64,
    ) -> Result<RegistryChanges, Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let mut ch = RegistryChanges::default();
        for r in repos {
            let state = if r.disabled { "disabled" } else { "active" };
            let by_key: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT id, name, previous_names FROM repos WHERE key = ?1",
                    [&r.key],
                    |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)),
                )
                .optional()
                .map_err(e)?;
            let id = match by_key {
                Some((id, name, prev)) => {
                    if name != r.name {
                        // Free the name if a deleted or key-less repository holds it.
                        tx.execute(
                            "UPDATE repos SET name = name || '~' || id WHERE name = ?1 AND id != ?2",
                            params![r.name, id],
                        )
                        .map_err(e)?;
                        let prev = if prev.is_empty() {
                            name.clone()
                        } else {
                            format!("{prev}\n{name}")
                        };
                        tx.execute(
                            "UPDATE repos SET name = ?2, previous_names = ?3 WHERE id = ?1",
                            params![id, r.name, prev],
                        )
                        .map_err(e)?;
                        ch.renamed.push((name, r.name.clone()));
                    }
                    id
                }
                None => {
                    let by_name: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM repos WHERE name = ?1 AND key IS NULL",
                            [&r.name],
                            |x| x.get(0),
                        )
                        .optional()
                        .map_err(e)?;
                    match by_name {
                        Some(id) => {
                            tx.execute(
                                "UPDATE repos SET key = ?2 WHERE id = ?1",
                                params![id, r.key],
                            )
                            .map_err(e)?;
                            id
                        }
                        None => {
                            tx.execute(
                                "UPDATE repos SET name = name || '~' || id WHERE name = ?1",
                                params![r.name],
                            )
                            .map_err(e)?;
                            tx.execute(
                                "INSERT INTO repos (name, url, created, key, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
                                params![r.name, r.url, now, r.key, origin],
                            )
                            .map_err(e)?;
                            ch.new.push(r.name.clone());
                            tx.last_insert_rowid()
                        }
                    }
                }
            };
            let old_state: String = tx
                .query_row("SELECT state FROM repos WHERE id = ?1", [id], |x| x.get(0))
                .map_err(e)?;
            if r.disabled && old_state != "disabled" {
                ch.disabled.push(r.name.clone());
            }
            tx.execute(
                "UPDATE repos SET url = ?2, state = ?3, origin = ?4 WHERE id = ?1",
                params![id, r.url, state, origin],
            )
            .map_err(e)?;
            let record = serde_json::to_string(&r.record).expect("JSON value serializes");
            let last: Option<String> = tx
                .query_row(
                    "SELECT record FROM repo_records WHERE repo = ?1 ORDER BY time DESC LIMIT 1",
                    [id],
                    |x| x.get(0),
                )
                .optional()
                .map_err(e)?;
            // Compared as JSON values, not text: key order is not part of a
            // record (older stores wrote keys sorted, newer in the provider's order).
            let unchanged = last
                .as_deref()
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .is_some_and(|l| l == r.record);
            if !unchanged {
                tx.execute(
                    "INSERT OR REPLACE INTO repo_records (repo, time, record) VALUES (?1, ?2, ?3)",
                    params![id, now, record],
                )
                .map_err(e)?;
            }
        }
        if complete {
            let keys: std::collections::HashSet<&str> =
                repos.iter().map(|r| r.key.as_str()).collect();
            let mut st = tx
                .prepare("SELECT id, name, key FROM repos WHERE origin = ?1 AND key IS NOT NULL AND state != 'deleted'")
                .map_err(e)?;
            let rows: Vec<(i64, String, String)> = st
                .query_map([origin], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))
                .map_err(e)?
                .collect::<Result<_, _>>()
                .map_err(e)?;
            drop(st);
            for (id, name, key) in rows {
                if !keys.contains(key.as_str()) {
                    tx.execute("UPDATE repos SET state = 'deleted' WHERE id = ?1", [id])
                        .map_err(e)?;
                    ch.deleted.push(name);
                }
            }
        }
        tx.commit().map_err(e)?;
        Ok(ch)
    }

    /// The provider's record of a repository as it was at `time` (unix seconds).
    pub fn record_at(&self, repo: i64, time: i64) -> Result<Option<serde_json::Value>, Error> {
        let t: Option<String> = self
            .conn
            .query_row(
                "SELECT record FROM repo_records WHERE repo = ?1 AND time <= ?2 ORDER BY time DESC LIMIT 1",
                params![repo, time],
                |x| x.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(t.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

impl Index {
    /// The row id of the repository named `name`, if the store has it.
    pub fn repo_id(&self, name: &str) -> Result<Option<i64>, Error> {
        self.conn
            .query_row("SELECT id FROM repos WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Removes a repository that has no snapshot (its row and discovery
    /// records); returns false, removing nothing, when it has snapshots.
    pub fn remove_empty_repo(&mut self, repo: i64) -> Result<bool, Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let snapshots: i64 = tx
            .query_row(
                "SELECT count(*) FROM snapshots WHERE repo = ?1",
                [repo],
                |r| r.get(0),
            )
            .map_err(e)?;
        if snapshots > 0 {
            return Ok(false);
        }
        tx.execute("DELETE FROM repo_records WHERE repo = ?1", [repo])
            .map_err(e)?;
        tx.execute("DELETE FROM repos WHERE id = ?1", [repo])
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }
}

/// Per-pack liveness after [`Index::compute_live_chunks`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackLiveness {
    /// Row id.
    #[serde(skip)]
    pub rowid: i64,
    /// Pack name.
    pub name: String,
    /// Pack kind.
    #[serde(skip)]
    pub kind: PackKind,
    /// File size.
    pub size: u64,
    /// Chunks the index places in it.
    pub chunks: u64,
    /// Of which live.
    pub live_chunks: u64,
    /// Stored bytes of all its chunks.
    pub bytes: u64,
    /// Stored bytes of its live chunks.
    pub live_bytes: u64,
}

/// A live chunk to copy into a new pack.
#[derive(Debug, Clone)]
pub struct MovedChunk {
    /// Row id (kept).
    pub rowid: i64,
    /// Chunk id.
    pub id: ChunkId,
    /// Old offset.
    pub offset: u64,
    /// Stored length.
    pub stored_len: u32,
    /// Plain length.
    pub raw_len: u32,
    /// Base chunk id.
    pub base: Option<ChunkId>,
}

/// The index changes of a prune, applied in one transaction.
#[derive(Debug, Default)]
pub struct PruneCommit {
    /// New packs written.
    pub new_packs: Vec<FinishedPack>,
    /// Moved chunks: (row id, index into `new_packs`, new offset).
    pub moved_chunks: Vec<(i64, usize, u64)>,
    /// Re-homed object records: (oid, index into `new_packs`).
    pub moved_objects: Vec<(ObjectId, usize)>,
    /// Packs whose rows go (their files are deleted after the commit).
    pub dropped_packs: Vec<i64>,
}

impl Index {
    /// Deletes snapshots (rows and refs) by id, in one transaction.
    pub fn delete_snapshots(&mut self, sids: &[String]) -> Result<(), Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut refs = tx
                .prepare("DELETE FROM snapshot_refs WHERE snapshot = (SELECT id FROM snapshots WHERE sid = ?1)")
                .map_err(e)?;
            let mut snaps = tx
                .prepare("DELETE FROM snapshots WHERE sid = ?1")
                .map_err(e)?;
            for s in sids {
                refs.execute([s]).map_err(e)?;
                snaps.execute([s]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Starts a liveness computation: an empty temporary set of live objects.
    pub fn begin_live(&mut self) -> Result<(), Error> {
        self.conn
            .execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS live_objects (oid BLOB PRIMARY KEY) WITHOUT ROWID;
                 CREATE TEMP TABLE IF NOT EXISTS live_chunks (id INTEGER PRIMARY KEY);
                 DELETE FROM live_objects; DELETE FROM live_chunks;",
            )
            .map_err(|e| self.err(e))
    }

    /// Marks an object live; false when it already was.
    pub fn mark_live(&mut self, oid: &ObjectId) -> Result<bool, Error> {
        let mut st = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO live_objects (oid) VALUES (?1)")
            .map_err(|e| self.err(e))?;
        Ok(st.execute([oid.as_bytes()]).map_err(|e| self.err(e))? == 1)
    }

    /// From the live objects, computes the live chunks (their chunks and,
    /// recursively, the delta bases of those) and returns per-pack liveness.
    pub fn compute_live_chunks(&mut self) -> Result<Vec<PackLiveness>, Error> {
        self.conn
            .execute_batch(
                "INSERT OR IGNORE INTO live_chunks SELECT o.chunk FROM objects o JOIN live_objects l ON l.oid = o.oid;
                 INSERT OR IGNORE INTO live_chunks SELECT oc.chunk FROM object_chunks oc JOIN live_objects l ON l.oid = oc.oid;
                 INSERT OR IGNORE INTO live_chunks
                   WITH RECURSIVE b(id) AS (
                     SELECT c.base FROM chunks c JOIN live_chunks l ON l.id = c.id WHERE c.base IS NOT NULL
                     UNION SELECT c.base FROM chunks c JOIN b ON b.id = c.id WHERE c.base IS NOT NULL)
                   SELECT id FROM b;",
            )
            .map_err(|e| self.err(e))?;
        let mut st = self
            .conn
            .prepare(
                "SELECT p.id, p.name, p.kind, p.size, count(c.id), count(l.id),
                        coalesce(sum(c.stored_len), 0),
                        coalesce(sum(CASE WHEN l.id IS NOT NULL THEN c.stored_len ELSE 0 END), 0)
                 FROM packs p LEFT JOIN chunks c ON c.pack = p.id LEFT JOIN live_chunks l ON l.id = c.id
                 GROUP BY p.id ORDER BY p.id",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, String, u8, i64, i64, i64, i64, i64)> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(
                |(rowid, name, kind, size, chunks, live, bytes, live_bytes)| {
                    Ok(PackLiveness {
                        rowid,
                        kind: PackKind::from_code(kind)
                            .ok_or_else(|| self.corrupt(format!("pack {name} has unknown kind")))?,
                        name,
                        size: size as u64,
                        chunks: chunks as u64,
                        live_chunks: live as u64,
                        bytes: bytes as u64,
                        live_bytes: live_bytes as u64,
                    })
                },
            )
            .collect()
    }

    /// Objects that are not live.
    pub fn dead_object_count(&self) -> Result<u64, Error> {
        self.conn
            .query_row(
                "SELECT count(*) FROM objects o LEFT JOIN live_objects l ON l.oid = o.oid WHERE l.oid IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Live chunks of a pack, by offset, with their base ids.
    pub fn live_chunks_in_pack(&self, pack: i64) -> Result<Vec<MovedChunk>, Error> {
        let mut st = self
            .conn
            .prepare(
                "SELECT c.id, c.hash, c.offset, c.stored_len, c.raw_len, b.hash FROM chunks c
                 JOIN live_chunks l ON l.id = c.id LEFT JOIN chunks b ON b.id = c.base
                 WHERE c.pack = ?1 ORDER BY c.offset",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, Vec<u8>, i64, i64, i64, Option<Vec<u8>>)> = st
            .query_map([pack], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(rowid, h, off, sl, rl, b)| {
                Ok(MovedChunk {
                    rowid,
                    id: ChunkId::from_slice(&h)
                        .ok_or_else(|| self.corrupt("malformed chunk id"))?,
                    offset: off as u64,
                    stored_len: sl as u32,
                    raw_len: rl as u32,
                    base: b
                        .map(|b| {
                            ChunkId::from_slice(&b)
                                .ok_or_else(|| self.corrupt("malformed chunk id"))
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Live objects whose record lies in pack `pack`, with their chunk ids.
    pub fn live_object_records_in_pack(
        &self,
        pack: i64,
    ) -> Result<Vec<crate::pack::ObjectRecord>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT o.oid, o.kind, o.size, o.nchunks, c.hash FROM objects o JOIN live_objects l ON l.oid = o.oid JOIN chunks c ON c.id = o.chunk WHERE o.pack = ?1")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(Vec<u8>, u8, i64, i64, Vec<u8>)> = st
            .query_map([pack], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut multi = self
            .conn
            .prepare_cached("SELECT c.hash FROM object_chunks oc JOIN chunks c ON c.id = oc.chunk WHERE oc.oid = ?1 ORDER BY oc.seq")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (oid, kind, size, n, first) in rows {
            let chunks = if n > 1 {
                let hs: Vec<Vec<u8>> = multi
                    .query_map([&oid], |r| r.get(0))
                    .map_err(|e| self.err(e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| self.err(e))?;
                hs.iter()
                    .map(|h| {
                        ChunkId::from_slice(h).ok_or_else(|| self.corrupt("malformed chunk id"))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                vec![ChunkId::from_slice(&first)
                    .ok_or_else(|| self.corrupt("malformed chunk id"))?]
            };
            out.push(crate::pack::ObjectRecord {
                oid: ObjectId::try_from(&oid[..])
                    .map_err(|_| self.corrupt("malformed object id"))?,
                kind: ObjectKind::from_code(kind).ok_or_else(|| self.corrupt("unknown kind"))?,
                size: size as u64,
                chunks,
            });
        }
        Ok(out)
    }

    /// Applies a prune in one transaction: new packs, moved chunks and object
    /// records, dead objects and chunks deleted, dropped packs' rows deleted.
    pub fn commit_prune(&mut self, c: &PruneCommit, now: i64) -> Result<(), Error> {
        let path = self.path.clone();
        let e = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut ins = tx
                .prepare("INSERT INTO packs (name, kind, size, created) VALUES (?1, ?2, ?3, ?4)")
                .map_err(e)?;
            let mut ids = Vec::new();
            for p in &c.new_packs {
                ins.execute(params![p.name, p.kind.code(), to_i64(p.size), now])
                    .map_err(e)?;
                ids.push(tx.last_insert_rowid());
            }
            let mut mv = tx
                .prepare("UPDATE chunks SET pack = ?2, offset = ?3 WHERE id = ?1")
                .map_err(e)?;
            for (rowid, p, off) in &c.moved_chunks {
                mv.execute(params![rowid, ids[*p], to_i64(*off)])
                    .map_err(e)?;
            }
            let mut mo = tx
                .prepare("UPDATE objects SET pack = ?2 WHERE oid = ?1")
                .map_err(e)?;
            for (oid, p) in &c.moved_objects {
                mo.execute(params![oid.as_bytes(), ids[*p]]).map_err(e)?;
            }
            tx.execute_batch(
                "DELETE FROM object_chunks WHERE oid NOT IN (SELECT oid FROM live_objects);
                 DELETE FROM objects WHERE oid NOT IN (SELECT oid FROM live_objects);
                 DELETE FROM chunks WHERE id NOT IN (SELECT id FROM live_chunks);",
            )
            .map_err(e)?;
            let mut dp = tx.prepare("DELETE FROM packs WHERE id = ?1").map_err(e)?;
            for p in &c.dropped_packs {
                dp.execute([p]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}

impl Index {
    /// Up to `limit` objects whose id starts with the hex digits `prefix`
    /// (1 to 40 of them), with their kinds: for naming a commit by an
    /// abbreviated id.
    pub fn objects_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(ObjectId, ObjectKind)>, Error> {
        let bound = |fill: char| -> Option<Vec<u8>> {
            let mut h = prefix.to_ascii_lowercase();
            while h.len() < 40 {
                h.push(fill);
            }
            hex::decode(h).ok()
        };
        let (Some(lo), Some(hi)) = (bound('0'), bound('f')) else {
            return Ok(Vec::new());
        };
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT oid, kind FROM objects WHERE oid BETWEEN ?1 AND ?2 ORDER BY oid LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(Vec<u8>, u8)> = st
            .query_map(params![lo, hi, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(oid, kind)| {
                let oid = ObjectId::try_from(&oid[..])
                    .map_err(|_| self.corrupt("malformed object id"))?;
                let kind = ObjectKind::from_code(kind)
                    .ok_or_else(|| self.corrupt(format!("object {oid} has unknown kind {kind}")))?;
                Ok((oid, kind))
            })
            .collect()
    }
}
