//! Liveness for forget and prune: which objects and chunks the kept
//! snapshots need, what each pack holds of them, and the one transaction
//! that applies a prune.

use super::objects::{insert_pack, ChunkRow};
use super::{to_i64, Error, Index};
use crate::chunk::ChunkId;
use crate::pack::{FinishedPack, ObjectRecord, PackKind};
use crate::ObjectKind;
use gix::ObjectId;
use rusqlite::params;

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
    /// Starts a liveness computation: an empty temporary set of live objects.
    pub fn begin_live(&mut self) -> Result<(), Error> {
        self.sql().batch(
            "CREATE TEMP TABLE IF NOT EXISTS live_objects (oid BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TEMP TABLE IF NOT EXISTS live_chunks (id INTEGER PRIMARY KEY);
             DELETE FROM live_objects; DELETE FROM live_chunks;",
        )
    }

    /// Marks an object live; false when it already was.
    pub fn mark_live(&mut self, oid: &ObjectId) -> Result<bool, Error> {
        let n = self.sql().exec(
            "INSERT OR IGNORE INTO live_objects (oid) VALUES (?1)",
            [oid.as_bytes()],
        )?;
        Ok(n == 1)
    }

    /// From the live objects, computes the live chunks (their chunks and,
    /// recursively, the delta bases of those) and returns per-pack liveness.
    pub fn compute_live_chunks(&mut self) -> Result<Vec<PackLiveness>, Error> {
        let sql = self.sql();
        sql.batch(
            "INSERT OR IGNORE INTO live_chunks SELECT o.chunk FROM objects o JOIN live_objects l ON l.oid = o.oid;
             INSERT OR IGNORE INTO live_chunks SELECT oc.chunk FROM object_chunks oc JOIN live_objects l ON l.oid = oc.oid;
             INSERT OR IGNORE INTO live_chunks
               WITH RECURSIVE b(id) AS (
                 SELECT c.base FROM chunks c JOIN live_chunks l ON l.id = c.id WHERE c.base IS NOT NULL
                 UNION SELECT c.base FROM chunks c JOIN b ON b.id = c.id WHERE c.base IS NOT NULL)
               SELECT id FROM b;",
        )?;
        sql.rows(
            "packs",
            "SELECT p.id, p.name, p.kind, p.size, count(c.id), count(l.id),
                    coalesce(sum(c.stored_len), 0),
                    coalesce(sum(CASE WHEN l.id IS NOT NULL THEN c.stored_len ELSE 0 END), 0)
             FROM packs p LEFT JOIN chunks c ON c.pack = p.id LEFT JOIN live_chunks l ON l.id = c.id
             GROUP BY p.id ORDER BY p.id",
            [],
            |r| {
                Ok(PackLiveness {
                    rowid: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.kind(2, PackKind::from_code)?,
                    size: r.num(3)?,
                    chunks: r.num(4)?,
                    live_chunks: r.num(5)?,
                    bytes: r.num(6)?,
                    live_bytes: r.num(7)?,
                })
            },
        )
    }

    /// Objects that are not live.
    pub fn dead_object_count(&self) -> Result<u64, Error> {
        self.sql().count(
            "objects",
            "SELECT count(*) FROM objects o LEFT JOIN live_objects l ON l.oid = o.oid WHERE l.oid IS NULL",
            [],
        )
    }

    /// Live chunks of a pack, by offset, with their base ids.
    pub fn live_chunks_in_pack(&self, pack: i64) -> Result<Vec<MovedChunk>, Error> {
        self.sql().rows(
            "chunks",
            "SELECT c.id, c.hash, c.pack, c.offset, c.stored_len, c.raw_len, c.base, c.depth, b.hash
             FROM chunks c JOIN live_chunks l ON l.id = c.id LEFT JOIN chunks b ON b.id = c.base
             WHERE c.pack = ?1 ORDER BY c.offset",
            [pack],
            |r| {
                let c = ChunkRow::read(r)?;
                Ok(MovedChunk {
                    rowid: c.rowid,
                    id: c.id,
                    offset: c.offset,
                    stored_len: c.stored_len,
                    raw_len: c.raw_len,
                    base: r.opt_chunk_id(8)?,
                })
            },
        )
    }

    /// Live objects whose record lies in pack `pack`, with their chunk ids.
    pub fn live_object_records_in_pack(&self, pack: i64) -> Result<Vec<ObjectRecord>, Error> {
        let sql = self.sql();
        let rows = sql.rows(
            "objects",
            "SELECT o.oid, o.kind, o.size, o.nchunks, c.hash FROM objects o
             JOIN live_objects l ON l.oid = o.oid JOIN chunks c ON c.id = o.chunk WHERE o.pack = ?1",
            [pack],
            |r| {
                Ok((
                    ObjectRecord {
                        oid: r.oid(0)?,
                        kind: r.kind(1, ObjectKind::from_code)?,
                        size: r.num(2)?,
                        chunks: vec![r.chunk_id(4)?],
                    },
                    r.num::<u32>(3)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(mut o, n)| {
                if n > 1 {
                    o.chunks = sql.rows(
                        "object_chunks",
                        "SELECT c.hash FROM object_chunks oc JOIN chunks c ON c.id = oc.chunk WHERE oc.oid = ?1 ORDER BY oc.seq",
                        [o.oid.as_bytes()],
                        |r| r.chunk_id(0),
                    )?;
                }
                Ok(o)
            })
            .collect()
    }

    /// Applies a prune in one transaction: new packs, moved chunks and object
    /// records, dead objects and chunks deleted, dropped packs' rows deleted.
    pub fn commit_prune(&mut self, c: &PruneCommit, now: i64) -> Result<(), Error> {
        self.transaction(|tx| {
            let mut ids = Vec::with_capacity(c.new_packs.len());
            for p in &c.new_packs {
                ids.push(insert_pack(tx, &p.name, p.kind, p.size, now)?);
            }
            for (rowid, p, off) in &c.moved_chunks {
                tx.exec(
                    "UPDATE chunks SET pack = ?2, offset = ?3 WHERE id = ?1",
                    params![rowid, ids[*p], to_i64(*off)],
                )?;
            }
            for (oid, p) in &c.moved_objects {
                tx.exec(
                    "UPDATE objects SET pack = ?2 WHERE oid = ?1",
                    params![oid.as_bytes(), ids[*p]],
                )?;
            }
            tx.batch(
                "DELETE FROM object_chunks WHERE oid NOT IN (SELECT oid FROM live_objects);
                 DELETE FROM objects WHERE oid NOT IN (SELECT oid FROM live_objects);
                 DELETE FROM chunks WHERE id NOT IN (SELECT id FROM live_chunks);",
            )?;
            for p in &c.dropped_packs {
                tx.exec("DELETE FROM packs WHERE id = ?1", [p])?;
            }
            Ok(())
        })
    }
}
