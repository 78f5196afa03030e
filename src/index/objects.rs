//! Chunks, git objects and packs: the rows a read or a sync looks up, and
//! the one transaction that records finished packs.

use super::sql::{Row, Sql};
use super::{to_i64, Error, Index};
use crate::chunk::ChunkId;
use crate::pack::{FinishedPack, ObjectRecord, PackKind};
use crate::ObjectKind;
use gix::ObjectId;
use rusqlite::params;

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

/// A query of chunk rows as [`ChunkRow::read`] expects them, ending in `$tail`.
macro_rules! select_chunks {
    ($tail:literal) => {
        concat!(
            "SELECT id, hash, pack, offset, stored_len, raw_len, base, depth FROM chunks ",
            $tail
        )
    };
}
pub(super) use select_chunks;

impl ChunkRow {
    /// Reads a row selected by [`select_chunks`] (or the same columns in that order).
    pub(super) fn read(r: &Row<'_, '_>) -> Result<Self, Error> {
        Ok(ChunkRow {
            rowid: r.get(0)?,
            id: r.chunk_id(1)?,
            pack: r.get(2)?,
            offset: r.num(3)?,
            stored_len: r.num(4)?,
            raw_len: r.num(5)?,
            base: r.get(6)?,
            depth: r.num(7)?,
        })
    }
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

impl PackRow {
    /// Reads a row selected as `id, name, kind, size`.
    fn read(r: &Row<'_, '_>) -> Result<Self, Error> {
        Ok(PackRow {
            rowid: r.get(0)?,
            name: r.get(1)?,
            kind: r.kind(2, PackKind::from_code)?,
            size: r.num(3)?,
        })
    }
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

impl Index {
    /// The chunk named `id`, if indexed.
    pub fn chunk_by_hash(&self, id: &ChunkId) -> Result<Option<ChunkRow>, Error> {
        self.sql().row(
            "chunks",
            select_chunks!("WHERE hash = ?1"),
            [&id.0[..]],
            ChunkRow::read,
        )
    }

    /// The chunk with row id `rowid`.
    pub fn chunk(&self, rowid: i64) -> Result<Option<ChunkRow>, Error> {
        self.sql().row(
            "chunks",
            select_chunks!("WHERE id = ?1"),
            [rowid],
            ChunkRow::read,
        )
    }

    /// The object `oid`, if indexed.
    pub fn object(&self, oid: &ObjectId) -> Result<Option<ObjectRow>, Error> {
        self.sql().row(
            "objects",
            "SELECT kind, size, nchunks, chunk FROM objects WHERE oid = ?1",
            [oid.as_bytes()],
            |r| {
                Ok(ObjectRow {
                    oid: *oid,
                    kind: r.kind(0, ObjectKind::from_code)?,
                    size: r.num(1)?,
                    nchunks: r.num(2)?,
                    chunk: r.get(3)?,
                })
            },
        )
    }

    /// True when `oid` is indexed.
    pub fn has_object(&self, oid: &ObjectId) -> Result<bool, Error> {
        Ok(self
            .sql()
            .row(
                "objects",
                "SELECT 1 FROM objects WHERE oid = ?1",
                [oid.as_bytes()],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// Row ids of an object's chunks, in order.
    pub fn object_chunks(&self, obj: &ObjectRow) -> Result<Vec<i64>, Error> {
        if obj.nchunks <= 1 {
            return Ok(vec![obj.chunk]);
        }
        let v: Vec<i64> = self.sql().rows(
            "object_chunks",
            "SELECT chunk FROM object_chunks WHERE oid = ?1 ORDER BY seq",
            [obj.oid.as_bytes()],
            |r| r.get(0),
        )?;
        if u32::try_from(v.len()).ok() != Some(obj.nchunks) {
            return Err(self.sql().corrupt(format!(
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
        self.sql().row(
            "packs",
            "SELECT id, name, kind, size FROM packs WHERE id = ?1",
            [rowid],
            PackRow::read,
        )
    }

    /// Every pack.
    pub fn packs(&self) -> Result<Vec<PackRow>, Error> {
        self.sql().rows(
            "packs",
            "SELECT id, name, kind, size FROM packs ORDER BY id",
            [],
            PackRow::read,
        )
    }

    /// Records finished packs, their chunks (in `chunks` order: a base before
    /// its deltas) and their object records, in one transaction.
    pub fn commit_packs(
        &mut self,
        packs: &[FinishedPack],
        chunks: &[NewChunk],
        now: i64,
    ) -> Result<(), Error> {
        self.transaction(|tx| {
            let mut pack_ids = Vec::with_capacity(packs.len());
            for p in packs {
                pack_ids.push(insert_pack(tx, &p.name, p.kind, p.size, now)?);
            }
            for c in chunks {
                tx.exec(
                    "INSERT INTO chunks (hash, pack, offset, stored_len, raw_len, base, depth)
                     VALUES (?1, ?2, ?3, ?4, ?5, (SELECT id FROM chunks WHERE hash = ?6), ?7)",
                    params![
                        &c.id.0[..],
                        pack_ids[c.pack],
                        to_i64(c.offset),
                        c.stored_len,
                        c.raw_len,
                        c.base.map(|b| b.0.to_vec()),
                        c.depth
                    ],
                )?;
            }
            for (p, pid) in packs.iter().zip(&pack_ids) {
                insert_object_records(tx, &p.objects, *pid)?;
            }
            Ok(())
        })
    }

    /// Totals over the whole index.
    pub fn totals(&self) -> Result<Totals, Error> {
        let sql = self.sql();
        Ok(Totals {
            objects: sql.count("objects", "SELECT count(*) FROM objects", [])?,
            chunks: sql.count("chunks", "SELECT count(*) FROM chunks", [])?,
            delta_chunks: sql.count(
                "chunks",
                "SELECT count(*) FROM chunks WHERE base IS NOT NULL",
                [],
            )?,
            packs: sql.count("packs", "SELECT count(*) FROM packs", [])?,
            raw_bytes: sql.count("objects", "SELECT sum(size) FROM objects", [])?,
            chunk_bytes: sql.count("chunks", "SELECT sum(raw_len) FROM chunks", [])?,
            stored_bytes: sql.count("packs", "SELECT sum(size) FROM packs", [])?,
            repos: sql.count("repos", "SELECT count(*) FROM repos", [])?,
            snapshots: sql.count("snapshots", "SELECT count(*) FROM snapshots", [])?,
        })
    }

    /// The bytes of the pack files and the number of snapshots: the two
    /// totals that cost no scan of the object and chunk rows (a sync's
    /// metrics ask them on every run).
    pub fn size(&self) -> Result<(u64, u64), Error> {
        let sql = self.sql();
        Ok((
            sql.count("packs", "SELECT sum(size) FROM packs", [])?,
            sql.count("snapshots", "SELECT count(*) FROM snapshots", [])?,
        ))
    }

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
        self.sql().rows(
            "objects",
            "SELECT oid, kind FROM objects WHERE oid BETWEEN ?1 AND ?2 ORDER BY oid LIMIT ?3",
            params![lo, hi, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.oid(0)?, r.kind(1, ObjectKind::from_code)?)),
        )
    }
}

/// Inserts a pack's row; returns its row id.
pub(super) fn insert_pack(
    tx: Sql<'_>,
    name: &str,
    kind: PackKind,
    size: u64,
    now: i64,
) -> Result<i64, Error> {
    tx.insert(
        "INSERT INTO packs (name, kind, size, created) VALUES (?1, ?2, ?3, ?4)",
        params![name, kind.code(), to_i64(size), now],
    )
}

/// Inserts object records (from pack `pack`) and, for multi-chunk objects,
/// their chunk lists; chunks are resolved by hash, so they must be inserted
/// first. An object already indexed, or whose chunk is not indexed, is skipped.
pub(super) fn insert_object_records(
    tx: Sql<'_>,
    objects: &[ObjectRecord],
    pack: i64,
) -> Result<(), Error> {
    for o in objects {
        let Some(first) = o.chunks.first() else {
            continue;
        };
        tx.exec(
            "INSERT OR IGNORE INTO objects (oid, kind, size, nchunks, chunk, pack)
             VALUES (?1, ?2, ?3, ?4, (SELECT id FROM chunks WHERE hash = ?5), ?6)",
            params![
                o.oid.as_bytes(),
                o.kind.code(),
                to_i64(o.size),
                o.chunks.len() as i64,
                &first.0[..],
                pack
            ],
        )?;
        if o.chunks.len() > 1 {
            for (seq, c) in o.chunks.iter().enumerate() {
                tx.exec(
                    "INSERT OR IGNORE INTO object_chunks (oid, seq, chunk) VALUES (?1, ?2, (SELECT id FROM chunks WHERE hash = ?3))",
                    params![o.oid.as_bytes(), seq as i64, &c.0[..]],
                )?;
            }
        }
    }
    Ok(())
}
