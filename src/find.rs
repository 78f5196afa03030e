//! `find`: which snapshots hold a ref (by name) or a commit.
//!
//! A query matches a ref named exactly so, or `refs/<q>`, `refs/tags/<q>`,
//! `refs/heads/<q>`, `refs/remotes/<q>` or `refs/remotes/<q>/HEAD` (git's
//! rules for a short ref name). A query of 4 to 40 hex digits also names the
//! stored commit with that id or unique id prefix (a tag's id names the
//! commit it points to); a snapshot holds that commit when it is reachable
//! from one of the snapshot's refs (the ref's target, or an ancestor of it).
//! Reachability is answered by walking the commits stored for the
//! snapshots (each commit read once, whatever the number of snapshots and
//! refs), up to a cap on the commits read.

use crate::commits::{self, CommitGraph};
use crate::diff::SnapshotRef;
use crate::snapshot::{encode_name, RefEntry, Snapshot};
use crate::store::{self, Store};
use crate::ObjectKind;
use gix::ObjectId;
use serde::Serialize;
use std::collections::HashMap;

/// Errors of `find`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is an id prefix that several stored objects share, and no ref has that name.
    #[error("{query} is ambiguous: several objects of the store have ids starting with it (give more digits)")]
    Ambiguous {
        /// The query.
        query: String,
    },
    /// The query names a tree or a blob, and no ref has that name.
    #[error("{oid} is a {kind}, not a commit: find takes a ref name or a commit id")]
    NotACommit {
        /// The object.
        oid: ObjectId,
        /// Its kind.
        kind: ObjectKind,
    },
    /// The query is empty.
    #[error("nothing to find: give a ref name (main, v1.0, refs/heads/main) or a commit id")]
    Empty,
    /// Walking the commits failed.
    #[error(transparent)]
    Commits(#[from] commits::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A snapshot holding a ref of the name asked for.
#[derive(Debug, Clone, Serialize)]
pub struct RefHit {
    /// The snapshot.
    pub snapshot: SnapshotRef,
    /// The ref.
    #[serde(rename = "ref")]
    pub entry: RefEntry,
}

/// A snapshot holding the commit asked for.
#[derive(Debug, Clone, Serialize)]
pub struct CommitHit {
    /// The snapshot.
    pub snapshot: SnapshotRef,
    /// Its refs from which the commit is reachable, sorted (`hex:<hex>`
    /// for a name that is not UTF-8).
    pub refs: Vec<String>,
}

/// The answer of `find`.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    /// The query as given.
    pub query: String,
    /// How many snapshots were searched.
    pub snapshots_searched: usize,
    /// Snapshots holding a ref of that name (oldest first; one entry per ref).
    pub refs: Vec<RefHit>,
    /// The commit the query names, if it is a commit id (or a unique prefix
    /// of a stored object's id) and the store holds it.
    #[serde(with = "crate::snapshot::oid_hex::opt")]
    pub commit: Option<ObjectId>,
    /// Snapshots in which that commit is reachable from a ref (oldest first).
    pub commit_snapshots: Vec<CommitHit>,
    /// Commits read from the store to answer.
    pub commits_read: u64,
    /// Objects the walk met that the store lacks (incomplete snapshots):
    /// history behind them was not searched.
    #[serde(with = "crate::snapshot::oid_hex::vec")]
    pub missing: Vec<ObjectId>,
}

/// Whether ref `name` is what the short or full name `q` means.
fn ref_matches(name: &[u8], q: &str) -> bool {
    let q = q.as_bytes();
    if name == q {
        return true;
    }
    let Some(rest) = name.strip_prefix(b"refs/") else {
        return false;
    };
    if rest == q {
        return true;
    }
    for dir in [&b"tags/"[..], b"heads/", b"remotes/"] {
        if rest.strip_prefix(dir) == Some(q) {
            return true;
        }
    }
    rest.strip_prefix(&b"remotes/"[..])
        .and_then(|r| r.strip_prefix(q))
        .is_some_and(|r| r == b"/HEAD")
}

/// Searches `snaps` (oldest first) for `query`, reading at most
/// `max_commits` commits from `store`.
pub fn find(
    store: &Store,
    snaps: &[Snapshot],
    query: &str,
    max_commits: u64,
) -> Result<FindReport, Error> {
    let q = query.trim();
    if q.is_empty() {
        return Err(Error::Empty);
    }
    let mut refs = Vec::new();
    for s in snaps {
        for r in &s.refs {
            if ref_matches(&r.name, q) {
                refs.push(RefHit {
                    snapshot: s.into(),
                    entry: r.clone(),
                });
            }
        }
    }
    let mut graph = CommitGraph::new(store, max_commits);
    let is_hex = (4..=40).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_hexdigit());
    let mut commit = None;
    // A full id the store lacks can still be a ref's target (an incomplete snapshot).
    let mut absent = None;
    if is_hex {
        let found = store
            .with_index(|i| i.objects_with_prefix(q, 2))
            .map_err(store::Error::from)?;
        match found[..] {
            [] if q.len() == 40 => absent = ObjectId::from_hex(q.as_bytes()).ok(),
            [] => {}
            [(oid, kind)] => match kind {
                ObjectKind::Commit => commit = Some(oid),
                ObjectKind::Tag => commit = graph.peel_to_commit(oid)?,
                ObjectKind::Tree | ObjectKind::Blob if refs.is_empty() => {
                    return Err(Error::NotACommit { oid, kind })
                }
                _ => {}
            },
            _ if refs.is_empty() => {
                return Err(Error::Ambiguous {
                    query: q.to_owned(),
                })
            }
            _ => {}
        }
    }
    let mut commit_snapshots = Vec::new();
    if let Some(target) = commit {
        let mut memo = HashMap::new();
        for s in snaps {
            let mut names = Vec::new();
            for r in &s.refs {
                if let Some(c) = graph.ref_commit(r)? {
                    if graph.reaches(c, target, &mut memo)? {
                        names.push(encode_name(&r.name));
                    }
                }
            }
            if !names.is_empty() {
                names.sort();
                commit_snapshots.push(CommitHit {
                    snapshot: s.into(),
                    refs: names,
                });
            }
        }
    } else if let Some(oid) = absent {
        for s in snaps {
            let names: Vec<String> = s
                .refs
                .iter()
                .filter(|r| r.target == Some(oid) || r.peeled == Some(oid))
                .map(|r| encode_name(&r.name))
                .collect();
            if !names.is_empty() {
                commit = Some(oid);
                commit_snapshots.push(CommitHit {
                    snapshot: s.into(),
                    refs: names,
                });
            }
        }
    }
    Ok(FindReport {
        query: query.to_owned(),
        snapshots_searched: snaps.len(),
        refs,
        commit,
        commit_snapshots,
        commits_read: graph.commits_read(),
        missing: graph.missing(),
    })
}

#[cfg(test)]
mod tests {
    use super::ref_matches;

    #[test]
    fn short_ref_names_follow_git() {
        assert!(ref_matches(b"refs/tags/0.1.0", "0.1.0"));
        assert!(ref_matches(b"refs/tags/0.1.0", "tags/0.1.0"));
        assert!(ref_matches(b"refs/tags/0.1.0", "refs/tags/0.1.0"));
        assert!(ref_matches(b"refs/heads/main", "main"));
        assert!(ref_matches(b"refs/remotes/origin/HEAD", "origin"));
        assert!(ref_matches(b"HEAD", "HEAD"));
        assert!(!ref_matches(b"refs/heads/main", "ain"));
        assert!(!ref_matches(b"refs/heads/feature/main", "main"));
        assert!(!ref_matches(b"refs/tags/v1", "refs/heads/v1"));
    }
}
