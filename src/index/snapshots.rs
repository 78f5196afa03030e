//! Snapshot rows and their refs: recorded after a sync, listed for restore,
//! diff and retention, deleted by forget.

use super::sql::Row;
use super::{Error, Index};
use crate::snapshot::{RefEntry, Snapshot};
use gix::ObjectId;
use rusqlite::params;

impl Index {
    /// Records a snapshot (row and refs) in one transaction.
    pub fn insert_snapshot(&mut self, repo: i64, snap: &Snapshot) -> Result<(), Error> {
        let missing = (!snap.missing.is_empty()).then(|| {
            snap.missing
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let skipped = (!snap.skipped.is_empty())
            .then(|| serde_json::to_string(&snap.skipped).expect("skipped refs serialize"));
        self.transaction(|tx| {
            let sid = tx.insert(
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
            )?;
            for r in &snap.refs {
                tx.exec(
                    "INSERT INTO snapshot_refs (snapshot, name, target, symref, peeled) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        sid,
                        r.name,
                        r.target.map(|o| o.as_bytes().to_vec()),
                        r.symref,
                        r.peeled.map(|o| o.as_bytes().to_vec())
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The ids of every snapshot.
    pub fn snapshot_ids(&self) -> Result<Vec<String>, Error> {
        self.sql()
            .rows("snapshots", "SELECT sid FROM snapshots", [], |r| r.get(0))
    }

    /// Sets a snapshot's `checked_at` (an unchanged repository was checked again).
    pub fn touch_snapshot(&mut self, sid: &str, checked_at: i64) -> Result<(), Error> {
        self.sql().exec(
            "UPDATE snapshots SET checked_at = ?2 WHERE sid = ?1",
            params![sid, checked_at],
        )?;
        Ok(())
    }

    /// Snapshots, oldest first; of one repository when `repo` is given.
    pub fn snapshots(&self, repo: Option<i64>) -> Result<Vec<Snapshot>, Error> {
        let rows = self.sql().rows(
            "snapshots",
            "SELECT s.id, s.sid, r.name, r.url, s.time, s.checked_at, s.complete, s.missing, s.skipped
             FROM snapshots s JOIN repos r ON r.id = s.repo
             WHERE ?1 IS NULL OR s.repo = ?1 ORDER BY s.time, s.id",
            [repo],
            |r| Ok((r.get::<i64>(0)?, read_snapshot(r)?)),
        )?;
        rows.into_iter()
            .map(|(rowid, mut snap)| {
                snap.refs = self.snapshot_refs(rowid)?;
                Ok(snap)
            })
            .collect()
    }

    fn snapshot_refs(&self, rowid: i64) -> Result<Vec<RefEntry>, Error> {
        self.sql().rows(
            "snapshot_refs",
            "SELECT name, target, symref, peeled FROM snapshot_refs WHERE snapshot = ?1 ORDER BY name",
            [rowid],
            |r| {
                Ok(RefEntry {
                    name: r.get(0)?,
                    target: r.opt_oid(1)?,
                    symref: r.get(2)?,
                    peeled: r.opt_oid(3)?,
                })
            },
        )
    }

    /// Deletes snapshots (rows and refs) by id, in one transaction.
    pub fn delete_snapshots(&mut self, sids: &[String]) -> Result<(), Error> {
        self.transaction(|tx| {
            for s in sids {
                tx.exec(
                    "DELETE FROM snapshot_refs WHERE snapshot = (SELECT id FROM snapshots WHERE sid = ?1)",
                    [s],
                )?;
                tx.exec("DELETE FROM snapshots WHERE sid = ?1", [s])?;
            }
            Ok(())
        })
    }
}

/// Reads a snapshot (without its refs) from a row selected as `id, sid,
/// repo name, url, time, checked_at, complete, missing, skipped`.
fn read_snapshot(r: &Row<'_, '_>) -> Result<Snapshot, Error> {
    let time = |i: usize| {
        let v: i64 = r.get(i)?;
        jiff::Timestamp::from_microsecond(v).map_err(|_| r.bad(i, format!("holds {v}, not a time")))
    };
    let missing = r
        .get::<Option<String>>(7)?
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| {
            ObjectId::from_hex(s.as_bytes())
                .map_err(|_| r.bad(7, format!("names {s:?}, not an object id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let skipped = match r.get::<Option<String>>(8)? {
        Some(j) => serde_json::from_str(&j)
            .map_err(|e| r.bad(8, format!("holds unreadable skipped refs ({e})")))?,
        None => Vec::new(),
    };
    let id: String = r.get(1)?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(r.bad(
            1,
            format!("holds {id:?}, not a snapshot id (64 hex digits)"),
        ));
    }
    Ok(Snapshot {
        id,
        repo: r.get(2)?,
        url: r.get(3)?,
        time: time(4)?,
        checked_at: time(5)?,
        complete: r.get(6)?,
        missing,
        skipped,
        refs: Vec::new(),
    })
}
