//! The queries verify asks: structural checks of the rows, where packs end
//! according to the index, and which chunks and objects damage reaches.

use super::objects::{select_chunks, ChunkRow, PackRow};
use super::{Error, Index};
use crate::chunk::ChunkId;
use crate::ObjectKind;
use gix::ObjectId;
use std::collections::{HashMap, HashSet};

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
        let sql = self.sql();
        let mut out = sql.rows(
            "objects",
            "SELECT o.oid, o.nchunks, (SELECT count(*) FROM object_chunks c WHERE c.oid = o.oid)
             FROM objects o WHERE o.nchunks > 1
               AND (SELECT count(*) FROM object_chunks c WHERE c.oid = o.oid) != o.nchunks",
            [],
            |r| {
                Ok(Finding::ObjectChunks {
                    oid: r.oid(0)?,
                    reason: format!(
                        "lists {} of its {} chunks",
                        r.num::<u64>(2)?,
                        r.get::<i64>(1)?
                    ),
                })
            },
        )?;
        for (sql_text, reason) in [
            (
                "SELECT o.oid FROM objects o LEFT JOIN chunks c ON c.id = o.chunk WHERE c.id IS NULL",
                "its chunk row is missing",
            ),
            (
                "SELECT DISTINCT oc.oid FROM object_chunks oc LEFT JOIN chunks c ON c.id = oc.chunk WHERE c.id IS NULL",
                "one of its chunk rows is missing",
            ),
        ] {
            sql.each("objects", sql_text, [], |r| {
                out.push(Finding::ObjectChunks {
                    oid: r.oid(0)?,
                    reason: reason.into(),
                });
                Ok(())
            })?;
        }
        for (sql_text, reason) in [
            (
                "SELECT c.hash FROM chunks c LEFT JOIN chunks b ON b.id = c.base WHERE c.base IS NOT NULL AND b.id IS NULL",
                "its delta base row is missing",
            ),
            (
                "SELECT c.hash FROM chunks c LEFT JOIN packs p ON p.id = c.pack WHERE p.id IS NULL",
                "its pack row is missing",
            ),
        ] {
            sql.each("chunks", sql_text, [], |r| {
                out.push(Finding::Chunk {
                    id: r.chunk_id(0)?,
                    reason: reason.into(),
                });
                Ok(())
            })?;
        }
        let refs = sql.rows(
            "snapshot_refs",
            "SELECT s.sid, p.name, r.name, r.target, s.missing FROM snapshot_refs r
             JOIN snapshots s ON s.id = r.snapshot JOIN repos p ON p.id = s.repo
             LEFT JOIN objects o ON o.oid = r.target
             WHERE r.target IS NOT NULL AND o.oid IS NULL
             UNION ALL
             SELECT d.sid, p.name, r.name, r.target, d.missing FROM snapshots d
             JOIN snapshot_refs r ON r.snapshot = d.base JOIN repos p ON p.id = d.repo
             LEFT JOIN objects o ON o.oid = r.target
             WHERE r.target IS NOT NULL AND o.oid IS NULL AND NOT EXISTS
               (SELECT 1 FROM snapshot_refs x WHERE x.snapshot = d.id AND x.name = r.name)",
            [],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.oid(3)?,
                    r.get::<Option<String>>(4)?,
                ))
            },
        )?;
        for (snapshot, repo, name, target, missing) in refs {
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
        for (table, sql_text, what) in [
            (
                "object_chunks",
                "SELECT count(*) FROM object_chunks oc LEFT JOIN objects o ON o.oid = oc.oid WHERE o.oid IS NULL",
                "object_chunks rows without their object",
            ),
            (
                "snapshot_refs",
                "SELECT count(*) FROM snapshot_refs r LEFT JOIN snapshots s ON s.id = r.snapshot WHERE s.id IS NULL",
                "snapshot_refs rows without their snapshot",
            ),
            (
                "snapshots",
                "SELECT count(*) FROM snapshots s LEFT JOIN repos r ON r.id = s.repo WHERE r.id IS NULL",
                "snapshots without their repository",
            ),
            (
                "snapshots",
                "SELECT count(*) FROM snapshots s LEFT JOIN snapshots b ON b.id = s.base
                 WHERE s.base IS NOT NULL AND (b.id IS NULL OR b.base IS NOT NULL OR b.repo != s.repo)",
                "snapshots recorded as a change to a snapshot that is missing, of another repository, or itself a change",
            ),
            (
                "snapshot_refs",
                "SELECT count(*) FROM snapshot_refs r JOIN snapshots s ON s.id = r.snapshot
                 WHERE r.removed != 0 AND s.base IS NULL",
                "removed-ref markers of snapshots recorded in full",
            ),
            (
                "objects",
                "SELECT count(*) FROM objects o LEFT JOIN packs p ON p.id = o.pack WHERE p.id IS NULL",
                "objects whose record pack row is missing",
            ),
        ] {
            let n = sql.count(table, sql_text, [])?;
            if n > 0 {
                out.push(Finding::Orphan {
                    what: format!("{n} {what}"),
                });
            }
        }
        Ok(out)
    }

    /// For every pack: how many chunks the index places in it and where the last one ends.
    pub fn pack_extents(&self) -> Result<Vec<PackExtent>, Error> {
        let packs = self.packs()?;
        let m: HashMap<i64, (u64, u64)> = self
            .sql()
            .rows(
                "chunks",
                "SELECT pack, count(*), max(offset + stored_len) AS \"offset + stored_len\",
                        min(offset) AS offset, min(stored_len) AS stored_len, max(stored_len) AS stored_len
                 FROM chunks GROUP BY pack",
                [],
                |r| {
                    // A negative offset or length would hide behind a sum that is in range.
                    r.num::<u64>(3)?;
                    r.num::<u32>(4)?;
                    r.num::<u32>(5)?;
                    Ok((r.get(0)?, (r.num(1)?, r.num::<Option<u64>>(2)?.unwrap_or(0))))
                },
            )?
            .into_iter()
            .collect();
        Ok(packs
            .into_iter()
            .map(|p| {
                let (chunks, end) = m.get(&p.rowid).copied().unwrap_or((0, 0));
                PackExtent {
                    pack: p,
                    chunks,
                    end,
                }
            })
            .collect())
    }

    /// Every chunk the index places in pack `pack`, by offset.
    pub fn chunks_in_pack(&self, pack: i64) -> Result<Vec<ChunkRow>, Error> {
        self.sql().rows(
            "chunks",
            select_chunks!("WHERE pack = ?1 ORDER BY offset"),
            [pack],
            ChunkRow::read,
        )
    }

    /// Every object made of one chunk, as `(chunk row id, oid, kind)`, grouped
    /// by the pack its chunk lies in and sorted by chunk: one scan of the
    /// objects for all packs (about 32 bytes an object in memory).
    pub fn single_chunk_objects_by_pack(
        &self,
    ) -> Result<HashMap<i64, Vec<(i64, ObjectId, ObjectKind)>>, Error> {
        let mut out: HashMap<i64, Vec<(i64, ObjectId, ObjectKind)>> = HashMap::new();
        self.sql().each(
            "objects",
            "SELECT c.pack, o.chunk, o.oid, o.kind FROM objects o JOIN chunks c ON c.id = o.chunk \
             WHERE o.nchunks = 1",
            [],
            |r| {
                out.entry(r.get(0)?).or_default().push((
                    r.get(1)?,
                    r.oid(2)?,
                    r.kind(3, ObjectKind::from_code)?,
                ));
                Ok(())
            },
        )?;
        for v in out.values_mut() {
            v.sort_unstable_by_key(|e| e.0);
        }
        Ok(out)
    }

    /// Objects made of more than one chunk.
    pub fn multi_chunk_objects(&self) -> Result<Vec<ObjectId>, Error> {
        self.sql().rows(
            "objects",
            "SELECT oid FROM objects WHERE nchunks > 1",
            [],
            |r| r.oid(0),
        )
    }

    /// Chunks stored as deltas against `chunk`.
    pub fn dependents(&self, chunk: i64) -> Result<Vec<i64>, Error> {
        self.sql().rows(
            "chunks",
            "SELECT id FROM chunks WHERE base = ?1",
            [chunk],
            |r| r.get(0),
        )
    }

    /// The objects that use any of `chunks` (as their only or first chunk,
    /// or in their chunk list), each with one such chunk: one scan of the
    /// objects, whatever the number of chunks.
    pub fn objects_using(&self, chunks: &HashSet<i64>) -> Result<Vec<(ObjectId, i64)>, Error> {
        let mut out = Vec::new();
        if chunks.is_empty() {
            return Ok(out);
        }
        for (table, sql_text) in [
            ("objects", "SELECT oid, chunk FROM objects"),
            ("object_chunks", "SELECT oid, chunk FROM object_chunks"),
        ] {
            self.sql().each(table, sql_text, [], |r| {
                let chunk: i64 = r.get(1)?;
                if chunks.contains(&chunk) {
                    out.push((r.oid(0)?, chunk));
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}
