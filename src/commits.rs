//! The commit graph of snapshots, read from the store's own objects (for
//! `diff` and `find`).
//!
//! Only commits (and the tags refs point at) are read, never trees or blobs.
//! Each commit is read from the store at most once per [`CommitGraph`]: its
//! parents are remembered, so walking the histories of many snapshots of one
//! repository (which share almost all of their commits) costs about one read
//! of each distinct commit. The number of commits read is capped
//! ([`CommitGraph::new`]); a walk that would read more stops with
//! [`Error::TooManyCommits`].

use crate::snapshot::{RefEntry, Snapshot};
use crate::store::{self, Store};
use crate::ObjectKind;
use gix::ObjectId;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The default cap on the commits one command reads from the store.
pub const DEFAULT_MAX_COMMITS: u64 = 2_000_000;

/// Errors of walking commits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The walk would read more commits than allowed.
    #[error("the histories involved have more than {limit} commits: give a higher --max-commits to walk them all")]
    TooManyCommits {
        /// The cap.
        limit: u64,
    },
    /// A stored commit or tag cannot be parsed.
    #[error(
        "{kind} {oid} in the store cannot be parsed: {reason} (run `repovault verify --read-data`)"
    )]
    Parse {
        /// The object.
        oid: ObjectId,
        /// Its kind.
        kind: ObjectKind,
        /// The parser's message.
        reason: String,
    },
    /// Reading from the store failed (a damaged chunk, the index).
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Commits read from a store, with their parents remembered.
pub struct CommitGraph<'s> {
    store: &'s Store,
    /// Parents of each commit read; a commit the store lacks has none (and is in `missing`).
    parents: HashMap<ObjectId, Vec<ObjectId>>,
    /// What each ref target peels to (a commit, or `None`).
    peeled: HashMap<ObjectId, Option<ObjectId>>,
    missing: BTreeSet<ObjectId>,
    read: u64,
    limit: u64,
}

impl<'s> CommitGraph<'s> {
    /// A graph that reads at most `max_commits` commits from `store`.
    pub fn new(store: &'s Store, max_commits: u64) -> Self {
        CommitGraph {
            store,
            parents: HashMap::new(),
            peeled: HashMap::new(),
            missing: BTreeSet::new(),
            read: 0,
            limit: max_commits,
        }
    }

    /// Commits read from the store so far.
    pub fn commits_read(&self) -> u64 {
        self.read
    }

    /// Objects met in walks that the store does not hold (an incomplete
    /// snapshot's missing objects, or damage `verify` reports): walks treat
    /// them as having no parents.
    pub fn missing(&self) -> Vec<ObjectId> {
        self.missing.iter().copied().collect()
    }

    /// The parents of commit `oid` (none if the store lacks it).
    fn parents_of(&mut self, oid: ObjectId) -> Result<&[ObjectId], Error> {
        if !self.parents.contains_key(&oid) {
            let parents = match self.store.get_chunks_checked(&oid) {
                Ok(o) if o.kind == ObjectKind::Commit => {
                    self.read += 1;
                    if self.read > self.limit {
                        return Err(Error::TooManyCommits { limit: self.limit });
                    }
                    let c = gix::objs::CommitRef::from_bytes(&o.data, gix::hash::Kind::Sha1)
                        .map_err(|e| Error::Parse {
                            oid,
                            kind: o.kind,
                            reason: format!("{e:#}"),
                        })?;
                    c.parents().collect()
                }
                // A parent that is not a commit: nothing to follow.
                Ok(_) => Vec::new(),
                Err(store::Error::ObjectNotFound { .. }) => {
                    self.missing.insert(oid);
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            };
            self.parents.insert(oid, parents);
        }
        Ok(&self.parents[&oid])
    }

    /// The commit `oid` finally points to, following tags; `None` when it
    /// is a tree or a blob, or the store lacks it.
    pub fn peel_to_commit(&mut self, oid: ObjectId) -> Result<Option<ObjectId>, Error> {
        if let Some(p) = self.peeled.get(&oid) {
            return Ok(*p);
        }
        let mut cur = oid;
        let mut result = None;
        // Tags of tags are rare; 64 levels is far more than any real chain.
        for _ in 0..64 {
            let Some(row) = self.store.object_row(&cur)? else {
                self.missing.insert(cur);
                break;
            };
            match row.kind {
                ObjectKind::Commit => {
                    result = Some(cur);
                    break;
                }
                ObjectKind::Tag => {
                    let o = self.store.get_chunks_checked(&cur)?;
                    cur = gix::objs::TagRefIter::from_bytes(&o.data, gix::hash::Kind::Sha1)
                        .target_id()
                        .map_err(|e| Error::Parse {
                            oid: cur,
                            kind: ObjectKind::Tag,
                            reason: format!("{e:#}"),
                        })?;
                }
                ObjectKind::Tree | ObjectKind::Blob => break,
            }
        }
        self.peeled.insert(oid, result);
        Ok(result)
    }

    /// The commit a ref points to (through tags), if any.
    pub fn ref_commit(&mut self, r: &RefEntry) -> Result<Option<ObjectId>, Error> {
        match r.target {
            Some(t) => self.peel_to_commit(t),
            None => Ok(None),
        }
    }

    /// The distinct commits a snapshot's refs point to (through tags).
    pub fn snapshot_tips(&mut self, snap: &Snapshot) -> Result<Vec<ObjectId>, Error> {
        let mut tips = Vec::new();
        for t in snap.tips() {
            if let Some(c) = self.peel_to_commit(t)? {
                tips.push(c);
            }
        }
        tips.sort();
        tips.dedup();
        Ok(tips)
    }

    /// Every commit reachable from `tips` (the tips included).
    pub fn closure(&mut self, tips: &[ObjectId]) -> Result<HashSet<ObjectId>, Error> {
        let mut seen: HashSet<ObjectId> = HashSet::new();
        let mut stack: Vec<ObjectId> = tips.to_vec();
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            for p in self.parents_of(c)? {
                if !seen.contains(p) {
                    stack.push(*p);
                }
            }
        }
        Ok(seen)
    }

    /// Whether `target` is reachable from commit `from` (is `from` or one
    /// of its ancestors). `memo` remembers the answer for every commit
    /// visited; pass the same one for the same `target` so that each commit
    /// is visited once however many tips are asked about.
    pub fn reaches(
        &mut self,
        from: ObjectId,
        target: ObjectId,
        memo: &mut HashMap<ObjectId, bool>,
    ) -> Result<bool, Error> {
        // Iterative post-order walk: (commit, parents already pushed).
        let mut stack = vec![(from, false)];
        let mut open: HashSet<ObjectId> = HashSet::new();
        while let Some((c, expanded)) = stack.pop() {
            if memo.contains_key(&c) {
                continue;
            }
            if c == target {
                memo.insert(c, true);
                continue;
            }
            if expanded {
                let hit = self
                    .parents_of(c)?
                    .iter()
                    .any(|p| memo.get(p) == Some(&true));
                memo.insert(c, hit);
                open.remove(&c);
                continue;
            }
            if !open.insert(c) {
                // Only a cycle (impossible for real git objects) gets here.
                continue;
            }
            stack.push((c, true));
            let parents: Vec<ObjectId> = self
                .parents_of(c)?
                .iter()
                .filter(|p| !memo.contains_key(*p))
                .copied()
                .collect();
            stack.extend(parents.into_iter().map(|p| (p, false)));
        }
        Ok(memo.get(&from) == Some(&true))
    }
}
