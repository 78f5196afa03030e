//! Snapshot rows and their refs: recorded after a sync, listed for restore,
//! diff and retention, deleted by forget.

use super::sql::{Row, Sql};
use super::{Error, Index};
use crate::snapshot::{self, RefEntry, Snapshot};
use gix::ObjectId;
use rusqlite::params;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// A snapshot's rows are a change to its base under the same rule as its
/// file's ([`snapshot::DELTA_SHARE`]).
use snapshot::DELTA_SHARE;

/// One `snapshot_refs` row: a ref, or (`removed`) a marker that the base's
/// ref of that name is not in the snapshot.
struct RefRow {
    entry: RefEntry,
    removed: bool,
}

impl Index {
    /// Records a snapshot (row and refs) in one transaction. When most of
    /// its refs are those of the newest full snapshot of the repository (the
    /// newest snapshot, or the base it is recorded against), only the refs
    /// that differ get rows, against that base.
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
        let (base, rows) = match self.delta_base(repo)? {
            Some((base, base_refs)) => {
                let rows = changes(&base_refs, &snap.refs);
                if rows.len() * DELTA_SHARE <= base_refs.len() {
                    (Some(base), rows)
                } else {
                    (None, full_rows(&snap.refs))
                }
            }
            None => (None, full_rows(&snap.refs)),
        };
        self.transaction(|tx| {
            let sid = tx.insert(
                "INSERT INTO snapshots (sid, repo, time, checked_at, complete, missing, skipped, base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    snap.id,
                    repo,
                    snap.time.as_microsecond(),
                    snap.checked_at.as_microsecond(),
                    snap.complete,
                    missing,
                    skipped,
                    base
                ],
            )?;
            insert_rows(tx, sid, &rows)
        })
    }

    /// The base a new snapshot of `repo` would be recorded against, with its
    /// refs: the newest snapshot's base, or the newest snapshot itself when it
    /// has full rows.
    fn delta_base(&self, repo: i64) -> Result<Option<(i64, Vec<RefEntry>)>, Error> {
        let sql = self.sql();
        let newest = sql.row(
            "snapshots",
            "SELECT id, base FROM snapshots WHERE repo = ?1 ORDER BY time DESC, id DESC LIMIT 1",
            [repo],
            |r| Ok((r.get::<i64>(0)?, r.get::<Option<i64>>(1)?)),
        )?;
        let Some((id, base)) = newest else {
            return Ok(None);
        };
        let base = base.unwrap_or(id);
        let full: Option<Option<i64>> = sql.row(
            "snapshots",
            "SELECT base FROM snapshots WHERE id = ?1",
            [base],
            |r| r.get(0),
        )?;
        if full != Some(None) {
            // A base that is itself a change (a damaged index): no delta.
            return Ok(None);
        }
        let refs = resolve(&[], ref_rows(sql, base)?);
        Ok((!refs.is_empty()).then_some((base, refs)))
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

    /// Snapshots, oldest first, each with its full ref set; of one repository
    /// when `repo` is given.
    pub fn snapshots(&self, repo: Option<i64>) -> Result<Vec<Snapshot>, Error> {
        self.select_snapshots(repo, None)
    }

    /// The newest snapshot of repository `repo` (what a sync compares the
    /// remote's refs with), without reading the others.
    pub fn latest_snapshot(&self, repo: i64) -> Result<Option<Snapshot>, Error> {
        let newest: Option<i64> = self.sql().value(
            "SELECT id FROM snapshots WHERE repo = ?1 ORDER BY time DESC, id DESC LIMIT 1",
            [repo],
        )?;
        match newest {
            Some(id) => Ok(self.select_snapshots(Some(repo), Some(id))?.pop()),
            None => Ok(None),
        }
    }

    fn select_snapshots(
        &self,
        repo: Option<i64>,
        only: Option<i64>,
    ) -> Result<Vec<Snapshot>, Error> {
        let sql = self.sql();
        let rows = sql.rows(
            "snapshots",
            "SELECT s.id, s.sid, r.name, r.url, s.time, s.checked_at, s.complete, s.missing, s.skipped, s.base
             FROM snapshots s JOIN repos r ON r.id = s.repo
             WHERE (?1 IS NULL OR s.repo = ?1) AND (?2 IS NULL OR s.id = ?2) ORDER BY s.time, s.id",
            params![repo, only],
            |r| Ok((r.get::<i64>(0)?, r.get::<Option<i64>>(9)?, read_snapshot(r)?)),
        )?;
        let mut bases: HashMap<i64, Vec<RefEntry>> = HashMap::new();
        rows.into_iter()
            .map(|(rowid, base, mut snap)| {
                snap.refs = match base {
                    None => resolve(&[], ref_rows(sql, rowid)?),
                    Some(b) => {
                        let base_refs = match bases.entry(b) {
                            Entry::Occupied(e) => e.into_mut(),
                            Entry::Vacant(e) => e.insert(resolve(&[], ref_rows(sql, b)?)),
                        };
                        resolve(base_refs, ref_rows(sql, rowid)?)
                    }
                };
                Ok(snap)
            })
            .collect()
    }

    /// Deletes snapshots (rows and refs) by id, in one transaction. A
    /// snapshot that stays and was recorded against one that goes gets its
    /// full ref set first.
    pub fn delete_snapshots(&mut self, sids: &[String]) -> Result<(), Error> {
        self.transaction(|tx| {
            let gone: HashSet<&str> = sids.iter().map(String::as_str).collect();
            for s in sids {
                let dependents = tx.rows(
                    "snapshots",
                    "SELECT d.id, d.sid, b.id FROM snapshots d JOIN snapshots b ON b.id = d.base WHERE b.sid = ?1",
                    [s],
                    |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?)),
                )?;
                for (id, sid, base) in dependents {
                    if gone.contains(sid.as_str()) {
                        continue;
                    }
                    let refs = resolve(&resolve(&[], ref_rows(tx, base)?), ref_rows(tx, id)?);
                    tx.exec("DELETE FROM snapshot_refs WHERE snapshot = ?1", [id])?;
                    insert_rows(tx, id, &full_rows(&refs))?;
                    tx.exec("UPDATE snapshots SET base = NULL WHERE id = ?1", [id])?;
                }
            }
            for s in sids {
                tx.exec(
                    "DELETE FROM snapshot_refs WHERE snapshot = (SELECT id FROM snapshots WHERE sid = ?1)",
                    [s],
                )?;
                tx.exec("UPDATE snapshots SET base = NULL WHERE sid = ?1", [s])?;
            }
            for s in sids {
                tx.exec("DELETE FROM snapshots WHERE sid = ?1", [s])?;
            }
            Ok(())
        })
    }
}

/// The rows of a snapshot recorded in full.
fn full_rows(refs: &[RefEntry]) -> Vec<RefRow> {
    refs.iter()
        .map(|r| RefRow {
            entry: r.clone(),
            removed: false,
        })
        .collect()
}

/// The rows that turn `base`'s refs into `refs`: the refs that are new or
/// differ, and a removed marker for each of `base`'s names that `refs` lacks.
fn changes(base: &[RefEntry], refs: &[RefEntry]) -> Vec<RefRow> {
    let (changed, removed) = snapshot::changes(base, refs);
    let mut rows = full_rows(&changed);
    rows.extend(removed.into_iter().map(|name| RefRow {
        entry: RefEntry {
            name,
            target: None,
            symref: None,
            peeled: None,
        },
        removed: true,
    }));
    rows
}

/// `base`'s refs with `rows` applied, sorted by name.
fn resolve(base: &[RefEntry], rows: Vec<RefRow>) -> Vec<RefEntry> {
    let (removed, changed): (Vec<RefRow>, Vec<RefRow>) = rows.into_iter().partition(|r| r.removed);
    let removed: Vec<Vec<u8>> = removed.into_iter().map(|r| r.entry.name).collect();
    snapshot::apply_changes(
        base,
        changed.into_iter().map(|r| r.entry).collect(),
        &removed,
    )
}

fn insert_rows(tx: Sql<'_>, snapshot: i64, rows: &[RefRow]) -> Result<(), Error> {
    for row in rows {
        let r = &row.entry;
        tx.exec(
            "INSERT INTO snapshot_refs (snapshot, name, target, symref, peeled, removed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                snapshot,
                r.name,
                r.target.map(|o| o.as_bytes().to_vec()),
                r.symref,
                r.peeled.map(|o| o.as_bytes().to_vec()),
                row.removed
            ],
        )?;
    }
    Ok(())
}

fn ref_rows(sql: Sql<'_>, snapshot: i64) -> Result<Vec<RefRow>, Error> {
    sql.rows(
        "snapshot_refs",
        "SELECT name, target, symref, peeled, removed FROM snapshot_refs WHERE snapshot = ?1 ORDER BY name",
        [snapshot],
        |r| {
            Ok(RefRow {
                entry: RefEntry {
                    name: r.get(0)?,
                    target: r.opt_oid(1)?,
                    symref: r.get(2)?,
                    peeled: r.opt_oid(3)?,
                },
                removed: r.get(4)?,
            })
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Finding;

    fn entry(name: &str, n: u32) -> RefEntry {
        RefEntry {
            name: name.as_bytes().to_vec(),
            target: Some(crate::git_oid(crate::ObjectKind::Blob, &n.to_le_bytes())),
            symref: None,
            peeled: None,
        }
    }

    fn snap(repo: &str, second: i64, refs: Vec<RefEntry>) -> Snapshot {
        let time = jiff::Timestamp::from_second(second).unwrap();
        let mut refs = refs;
        refs.sort();
        Snapshot {
            id: Snapshot::compute_id(repo, &time, &refs),
            repo: repo.into(),
            url: "/x".into(),
            time,
            checked_at: time,
            refs,
            complete: true,
            missing: vec![],
            skipped: vec![],
        }
    }

    /// What the quick check finds besides targets (no object is stored here).
    fn structural(index: &Index) -> Vec<Finding> {
        let mut f = index.quick_check().unwrap();
        f.retain(|f| !matches!(f, Finding::RefTarget { .. }));
        f
    }

    fn rows_of(index: &Index, sid: &str) -> (Option<i64>, u64) {
        let sql = index.sql();
        let base = sql
            .value("SELECT base FROM snapshots WHERE sid = ?1", [sid])
            .unwrap()
            .unwrap();
        let n = sql
            .count(
                "snapshot_refs",
                "SELECT count(*) FROM snapshot_refs r JOIN snapshots s ON s.id = r.snapshot WHERE s.sid = ?1",
                [sid],
            )
            .unwrap();
        (base, n)
    }

    /// A snapshot that differs from the last full one in a few refs gets rows
    /// for those only, reads back with its full ref set, and keeps it when
    /// its base is deleted; one that differs in many is recorded in full.
    #[test]
    fn snapshots_are_recorded_as_changes_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::create(&dir.path().join("index.sqlite")).unwrap();
        let repo = index.upsert_repo("example.com/r", "/x", 0).unwrap();
        let mut refs: Vec<RefEntry> = (0..100)
            .map(|i| entry(&format!("refs/heads/b{i:03}"), i))
            .collect();
        refs.push(RefEntry {
            name: b"HEAD".to_vec(),
            target: refs[0].target,
            symref: Some(b"refs/heads/b000".to_vec()),
            peeled: None,
        });
        let s1 = snap("example.com/r", 1_000, refs.clone());
        index.insert_snapshot(repo, &s1).unwrap();
        assert_eq!(rows_of(&index, &s1.id), (None, 101));

        // Two refs move, one is added, one deleted; HEAD follows its branch.
        refs[5] = entry("refs/heads/b005", 1005);
        refs[7] = entry("refs/heads/b007", 1007);
        refs.remove(9);
        refs.push(entry("refs/tags/v1", 2000));
        let s2 = snap("example.com/r", 2_000, refs.clone());
        index.insert_snapshot(repo, &s2).unwrap();
        let (base, n) = rows_of(&index, &s2.id);
        assert!(base.is_some());
        assert_eq!(n, 4, "two changed, one added, one removed marker");

        // The next one is recorded against the same full snapshot, not s2.
        refs[20] = entry("refs/heads/b021", 3021);
        let s3 = snap("example.com/r", 3_000, refs.clone());
        index.insert_snapshot(repo, &s3).unwrap();
        assert_eq!(rows_of(&index, &s3.id), (base, 5));

        // Every ref changed: recorded in full.
        let all: Vec<RefEntry> = (0..100)
            .map(|i| entry(&format!("refs/heads/c{i}"), i))
            .collect();
        let s4 = snap("example.com/r", 4_000, all);
        index.insert_snapshot(repo, &s4).unwrap();
        assert_eq!(rows_of(&index, &s4.id), (None, 100));

        let back = index.snapshots(Some(repo)).unwrap();
        assert_eq!(back, vec![s1.clone(), s2.clone(), s3.clone(), s4.clone()]);
        for s in &back {
            assert_eq!(Snapshot::compute_id(&s.repo, &s.time, &s.refs), s.id);
        }
        assert_eq!(structural(&index), Vec::<Finding>::new());

        // Forgetting the base (with s3) gives s2 its full rows first.
        index
            .delete_snapshots(&[s1.id.clone(), s3.id.clone()])
            .unwrap();
        assert_eq!(rows_of(&index, &s2.id), (None, s2.refs.len() as u64));
        assert_eq!(index.snapshots(Some(repo)).unwrap(), vec![s2, s4]);
        assert_eq!(structural(&index), Vec::<Finding>::new());
    }

    /// A target missing from the store is reported for the base and for
    /// every snapshot recorded against it that still has that ref.
    #[test]
    fn a_missing_target_of_a_base_names_the_snapshots_recorded_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::create(&dir.path().join("index.sqlite")).unwrap();
        let repo = index.upsert_repo("example.com/r", "/x", 0).unwrap();
        let mut refs: Vec<RefEntry> = (0..8)
            .map(|i| entry(&format!("refs/heads/b{i}"), i))
            .collect();
        let s1 = snap("example.com/r", 1_000, refs.clone());
        index.insert_snapshot(repo, &s1).unwrap();
        refs[0] = entry("refs/heads/b0", 100);
        let s2 = snap("example.com/r", 2_000, refs);
        index.insert_snapshot(repo, &s2).unwrap();
        assert!(rows_of(&index, &s2.id).0.is_some());
        // No object is stored at all: every target is missing.
        let mut hit: Vec<(String, String)> = index
            .quick_check()
            .unwrap()
            .into_iter()
            .filter_map(|f| match f {
                Finding::RefTarget { snapshot, name, .. } => Some((snapshot, name)),
                _ => None,
            })
            .collect();
        hit.sort();
        assert_eq!(hit.len(), 16, "8 refs of each snapshot: {hit:?}");
        assert_eq!(hit.iter().filter(|(s, _)| *s == s2.id).count(), 8);
    }
}
