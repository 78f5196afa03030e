//! The index's tables: the schema this code writes and the migrations that
//! bring an older database up to it.

use super::{Error, Index};

/// The schema version this code writes; older databases are migrated.
pub const SCHEMA_VERSION: u32 = 5;

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
    // A snapshot whose refs are mostly those of an earlier one of its
    // repository (its `base`, itself stored in full) keeps rows only for the
    // refs that differ: changed or new ones, and `removed` markers for the
    // base's refs it does not have. NULL: every ref has its row, as before.
    // (No foreign key: delete_snapshots gives dependents their full rows
    // first, and the quick check reports a base that is missing.)
    r#"
ALTER TABLE snapshots ADD COLUMN base INTEGER;
ALTER TABLE snapshot_refs ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX snapshots_base ON snapshots(base) WHERE base IS NOT NULL;
"#,
];

impl Index {
    /// Brings the schema up to [`SCHEMA_VERSION`], one transaction per step.
    pub(super) fn migrate(&mut self) -> Result<(), Error> {
        let found = self
            .sql()
            .row("database", "PRAGMA user_version", [], |r| r.num::<u32>(0))?
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                path: self.path.clone(),
                found,
            });
        }
        for (v, sql) in (found..).zip(
            MIGRATIONS
                .iter()
                .skip(usize::try_from(found).unwrap_or(usize::MAX)),
        ) {
            self.transaction(|tx| {
                tx.batch(sql)?;
                tx.batch(&format!("PRAGMA user_version = {}", v + 1))
            })?;
        }
        Ok(())
    }
}
