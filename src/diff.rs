//! `diff`: what changed between two snapshots (refs added, removed and
//! moved; commits gained and lost).
//!
//! A symbolic ref (`HEAD -> refs/heads/main`) counts as changed when what it
//! points to changes (another ref, or it stops or starts being symbolic), not
//! when the branch it names moves: that branch is listed itself.
//!
//! Commits gained are those reachable from a ref of the newer snapshot and
//! from none of the older one's (`git rev-list --count NEW --not OLD`); lost
//! the other way round. Refs that point at tags count with the commit the
//! tag points to; refs to trees or blobs count no commits.

use crate::commits::{self, CommitGraph};
use crate::snapshot::{RefEntry, Snapshot};
use crate::store::Store;
use gix::ObjectId;
use serde::Serialize;
use std::collections::BTreeMap;

/// Errors of `diff` (and of naming snapshots by id).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot, or several, match an id prefix.
    #[error("{0}")]
    NoSnapshot(String),
    /// What was given as a snapshot id is not hex digits.
    #[error("{0:?} is not a snapshot id: give the id (or a unique prefix of it) that `repovault snapshots` shows")]
    BadId(String),
    /// Walking the commits failed.
    #[error(transparent)]
    Commits(#[from] commits::Error),
}

/// The snapshot with this id or unique id prefix, among `snaps`.
pub fn select_by_id<'a>(snaps: &'a [Snapshot], prefix: &str) -> Result<&'a Snapshot, Error> {
    let p = prefix.trim().to_lowercase();
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadId(prefix.to_owned()));
    }
    let hits: Vec<&Snapshot> = snaps.iter().filter(|s| s.id.starts_with(&p)).collect();
    match hits.len() {
        1 => Ok(hits[0]),
        0 => Err(Error::NoSnapshot(format!(
            "no snapshot has id {prefix}: see `repovault snapshots`"
        ))),
        n => Err(Error::NoSnapshot(format!(
            "snapshot id {prefix} is ambiguous ({n} snapshots match): give more digits"
        ))),
    }
}

/// Which snapshot, in a report.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRef {
    /// Its id.
    pub id: String,
    /// Its repository.
    pub repo: String,
    /// When it was taken.
    pub time: jiff::Timestamp,
}

impl From<&Snapshot> for SnapshotRef {
    fn from(s: &Snapshot) -> Self {
        SnapshotRef {
            id: s.id.clone(),
            repo: s.repo.clone(),
            time: s.time,
        }
    }
}

/// A ref present in both snapshots with another target.
#[derive(Debug, Clone, Serialize)]
pub struct MovedRef {
    /// The ref as the older snapshot has it.
    pub old: RefEntry,
    /// The ref as the newer snapshot has it.
    pub new: RefEntry,
}

impl MovedRef {
    /// The ref's name, lossily as UTF-8.
    pub fn name_lossy(&self) -> String {
        self.new.name_lossy()
    }
}

/// Commits reachable from one snapshot's refs and not from the other's.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CommitCounts {
    /// Reachable from the newer snapshot only.
    pub gained: u64,
    /// Reachable from the older snapshot only.
    pub lost: u64,
}

/// What changed from one snapshot to another.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The older snapshot (the first one given).
    pub from: SnapshotRef,
    /// The newer snapshot (the second one given).
    pub to: SnapshotRef,
    /// Refs only the newer snapshot has.
    pub added: Vec<RefEntry>,
    /// Refs only the older snapshot has.
    pub removed: Vec<RefEntry>,
    /// Refs both have, pointing elsewhere.
    pub moved: Vec<MovedRef>,
    /// Commits gained and lost.
    pub commits: CommitCounts,
    /// Commits read from the store to count them.
    pub commits_read: u64,
    /// Objects the walk met that the store lacks (counted as having no
    /// parents: the counts are then lower bounds).
    #[serde(with = "crate::snapshot::oid_hex::vec")]
    pub missing: Vec<ObjectId>,
}

/// Whether two entries of one ref name differ.
fn changed(old: &RefEntry, new: &RefEntry) -> bool {
    match (&old.symref, &new.symref) {
        (Some(a), Some(b)) => a != b,
        (None, None) => old.target != new.target,
        _ => true,
    }
}

/// Compares `from` (the older) with `to` (the newer), reading at most
/// `max_commits` commits from `store`.
pub fn diff(
    store: &Store,
    from: &Snapshot,
    to: &Snapshot,
    max_commits: u64,
) -> Result<Diff, Error> {
    let old: BTreeMap<&[u8], &RefEntry> = from.refs.iter().map(|r| (&r.name[..], r)).collect();
    let new: BTreeMap<&[u8], &RefEntry> = to.refs.iter().map(|r| (&r.name[..], r)).collect();
    let added = new
        .iter()
        .filter(|(n, _)| !old.contains_key(*n))
        .map(|(_, r)| (*r).clone())
        .collect();
    let removed = old
        .iter()
        .filter(|(n, _)| !new.contains_key(*n))
        .map(|(_, r)| (*r).clone())
        .collect();
    let moved = old
        .iter()
        .filter_map(|(n, o)| {
            let n = new.get(n)?;
            changed(o, n).then(|| MovedRef {
                old: (*o).clone(),
                new: (*n).clone(),
            })
        })
        .collect();

    let mut graph = CommitGraph::new(store, max_commits);
    let old_tips = graph.snapshot_tips(from)?;
    let new_tips = graph.snapshot_tips(to)?;
    let old_set = graph.closure(&old_tips)?;
    let new_set = graph.closure(&new_tips)?;
    let commits = CommitCounts {
        gained: new_set.iter().filter(|c| !old_set.contains(*c)).count() as u64,
        lost: old_set.iter().filter(|c| !new_set.contains(*c)).count() as u64,
    };
    Ok(Diff {
        from: from.into(),
        to: to.into(),
        added,
        removed,
        moved,
        commits,
        commits_read: graph.commits_read(),
        missing: graph.missing(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str) -> Snapshot {
        let time = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        Snapshot {
            id: id.into(),
            repo: "r".into(),
            url: "/r".into(),
            time,
            checked_at: time,
            refs: vec![],
            complete: true,
            missing: vec![],
        }
    }

    #[test]
    fn ids_are_named_by_unique_prefixes() {
        let snaps = [snap("abc123"), snap("abd456"), snap("ff0000")];
        assert_eq!(select_by_id(&snaps, "abc").unwrap().id, "abc123");
        assert_eq!(select_by_id(&snaps, "FF").unwrap().id, "ff0000");
        let amb = select_by_id(&snaps, "ab").unwrap_err().to_string();
        assert!(amb.contains("ambiguous (2 snapshots match)"), "{amb}");
        let none = select_by_id(&snaps, "0").unwrap_err().to_string();
        assert!(none.contains("no snapshot has id 0"), "{none}");
        assert!(select_by_id(&snaps, "").is_err());
        assert!(select_by_id(&snaps, "xyz").is_err());
    }
}
