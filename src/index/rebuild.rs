//! The SQL of `repair-index`: the rows a rebuild writes into an empty index,
//! in one transaction. The rebuild's rules (which place of a chunk is kept,
//! which deltas are dropped, the depth of each chain) are repair's
//! (`crate::repair`); this file only reads and writes the rows.

use super::objects::{insert_object_records, insert_pack};
use super::sql::Sql;
use super::{to_i64, Error, Index};
use crate::pack::{EntryRecord, ObjectRecord, PackKind};
use rusqlite::params;

/// An open rebuild transaction (see [`Index::rebuild`]).
pub struct Rebuild<'t> {
    tx: Sql<'t>,
}

/// Where a chunk was indexed, and its base once linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Row id.
    pub rowid: i64,
    /// Row id of its pack.
    pub pack: i64,
    /// Offset in the pack.
    pub offset: u64,
    /// Row id of its delta base, when it is a delta whose base is indexed.
    pub base: Option<i64>,
}

impl Index {
    /// Runs `f` on a rebuild transaction, committed when it returns `Ok`.
    pub fn rebuild<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Rebuild<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction(|tx| f(&Rebuild { tx }))
    }
}

impl Rebuild<'_> {
    /// Records a pack; returns its row id.
    pub fn insert_pack(
        &self,
        name: &str,
        kind: PackKind,
        size: u64,
        now: i64,
    ) -> Result<i64, Error> {
        insert_pack(self.tx, name, kind, size, now)
    }

    /// Records a chunk at its place in pack `pack`, as a full chunk (no base,
    /// depth 0), unless a chunk with its id is already indexed.
    pub fn insert_chunk(&self, pack: i64, e: &EntryRecord) -> Result<(), Error> {
        self.tx.exec(
            "INSERT OR IGNORE INTO chunks (hash, pack, offset, stored_len, raw_len, base, depth) VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0)",
            params![&e.id.0[..], pack, to_i64(e.offset), e.stored_len, e.raw_len],
        )?;
        Ok(())
    }

    /// Points the chunk indexed at `e`'s place in pack `pack` to its base by
    /// id (NULL when no chunk with that id is indexed).
    pub fn link_base(&self, pack: i64, e: &EntryRecord) -> Result<(), Error> {
        let Some(base) = e.base else {
            return Ok(());
        };
        self.tx.exec(
            "UPDATE chunks SET base = (SELECT id FROM chunks WHERE hash = ?2) WHERE hash = ?1 AND pack = ?3 AND offset = ?4",
            params![&e.id.0[..], &base.0[..], pack, to_i64(e.offset)],
        )?;
        Ok(())
    }

    /// Every indexed chunk's place and base.
    pub fn chunk_places(&self) -> Result<Vec<ChunkPlace>, Error> {
        self.tx.rows(
            "chunks",
            "SELECT id, pack, offset, base FROM chunks",
            [],
            |r| {
                Ok(ChunkPlace {
                    rowid: r.get(0)?,
                    pack: r.get(1)?,
                    offset: r.num(2)?,
                    base: r.get(3)?,
                })
            },
        )
    }

    /// Removes a chunk (delete a delta before its base).
    pub fn delete_chunk(&self, rowid: i64) -> Result<(), Error> {
        self.tx.exec("DELETE FROM chunks WHERE id = ?1", [rowid])?;
        Ok(())
    }

    /// Sets a chunk's delta depth.
    pub fn set_depth(&self, rowid: i64, depth: u32) -> Result<(), Error> {
        self.tx.exec(
            "UPDATE chunks SET depth = ?2 WHERE id = ?1",
            params![rowid, depth],
        )?;
        Ok(())
    }

    /// Records a pack's object records (its chunks must be indexed first);
    /// an object already indexed, or whose first chunk is not, is skipped.
    pub fn insert_object_records(&self, objects: &[ObjectRecord], pack: i64) -> Result<(), Error> {
        insert_object_records(self.tx, objects, pack)
    }

    /// Removes the objects one of whose chunks is not indexed (they cannot be read).
    pub fn drop_unreadable_objects(&self) -> Result<(), Error> {
        self.tx.batch(
            "DELETE FROM objects WHERE nchunks > 1
               AND nchunks != (SELECT count(*) FROM object_chunks c WHERE c.oid = objects.oid);
             DELETE FROM object_chunks WHERE oid NOT IN (SELECT oid FROM objects);",
        )
    }
}
