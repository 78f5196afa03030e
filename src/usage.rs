//! What a repository holds: the objects its snapshots reach, and the chunks
//! and packs they are stored in (`stats --repo`, `verify --repo`).
//!
//! The index does not record which snapshot needs which object, so the
//! closure is walked: every commit, tree and tag a snapshot reaches is read
//! (blobs are not), like prune's liveness walk.

use crate::index;
use crate::snapshot::Snapshot;
use crate::store::{self, Store};
use gix::ObjectId;
use std::collections::{HashMap, HashSet};

/// Errors of the walk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
}

/// The objects a set of snapshots reaches.
#[derive(Debug, Default, Clone)]
pub struct Closure {
    /// Stored objects reached, with their rows.
    pub objects: HashMap<ObjectId, index::ObjectRow>,
    /// Metadata objects that could not be read (their ancestors are not walked).
    pub unreadable: Vec<(ObjectId, String)>,
}

/// Walks the closure of `snaps`. Objects that are not stored are skipped;
/// unreadable ones are listed (verify reports the damage itself).
pub fn closure(store: &Store, snaps: &[Snapshot]) -> Result<Closure, Error> {
    use crate::closure::{self, Damage, Event, Flow};
    let mut c = Closure::default();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let source = closure::StoreSource::new(store);
    let never = std::sync::atomic::AtomicBool::new(false);
    for snap in snaps {
        closure::walk(
            snap.tips(),
            &snap.missing,
            &source,
            &mut seen,
            &never,
            |e| {
                match e {
                    Event::Found { oid, row } => {
                        c.objects.insert(oid, row);
                    }
                    Event::Missing { .. } => {}
                    Event::Damaged {
                        damage: Damage::Lookup(e),
                        ..
                    } => return Err(Error::from(e)),
                    Event::Damaged {
                        oid,
                        damage: Damage::Read(e),
                    } => c.unreadable.push((oid, e.to_string())),
                    Event::Damaged {
                        oid,
                        damage: Damage::Parse(e),
                    } => c.unreadable.push((oid, e)),
                }
                Ok(Flow::Continue)
            },
        )?;
    }
    Ok(c)
}

/// A chunk's row id, stored length and pack row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkUse {
    /// Stored bytes.
    pub stored_len: u32,
    /// Row id of its pack.
    pub pack: i64,
}

/// The chunks the objects of `closure` need (with their delta bases), by row id.
pub fn chunks(store: &Store, closure: &Closure) -> Result<HashMap<i64, ChunkUse>, Error> {
    let mut out: HashMap<i64, ChunkUse> = HashMap::new();
    store.with_index(|i| -> Result<(), Error> {
        for row in closure.objects.values() {
            // A damaged chunk list is verify's to report; the chunks found still count.
            let Ok(list) = i.object_chunks(row) else {
                continue;
            };
            for mut rowid in list {
                while !out.contains_key(&rowid) {
                    let Some(c) = i.chunk(rowid)? else { break };
                    out.insert(
                        rowid,
                        ChunkUse {
                            stored_len: c.stored_len,
                            pack: c.pack,
                        },
                    );
                    match c.base {
                        Some(b) => rowid = b,
                        None => break,
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Counts of a set of objects and chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Git objects.
    pub objects: u64,
    /// Their plain sizes.
    pub raw_bytes: u64,
    /// Chunks they are stored in (delta bases included).
    pub chunks: u64,
    /// The chunks' stored (compressed) bytes.
    pub stored_bytes: u64,
}

/// What one repository holds, alone and shared with the others.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoUsage {
    /// The repository.
    pub repo: String,
    /// Its snapshots.
    pub snapshots: u64,
    /// Everything its snapshots need.
    pub total: Usage,
    /// What no other repository's snapshot needs (what forgetting all its
    /// snapshots and pruning would free, pack overhead aside).
    pub only: Usage,
    /// What it shares with other repositories.
    pub shared: Usage,
}

/// Computes [`RepoUsage`] for the repository with row id `repo`.
pub fn repo_usage(store: &Store, repo: &index::RepoRow) -> Result<RepoUsage, Error> {
    let all = store.with_index(|i| i.snapshots(None))?;
    let (mine, others): (Vec<Snapshot>, Vec<Snapshot>) =
        all.into_iter().partition(|s| s.repo == repo.name);
    let c_mine = closure(store, &mine)?;
    let c_others = closure(store, &others)?;
    let k_mine = chunks(store, &c_mine)?;
    let k_others = chunks(store, &c_others)?;
    let mut u = RepoUsage {
        repo: repo.name.clone(),
        snapshots: mine.len() as u64,
        total: Usage::default(),
        only: Usage::default(),
        shared: Usage::default(),
    };
    for (oid, row) in &c_mine.objects {
        let part = if c_others.objects.contains_key(oid) {
            &mut u.shared
        } else {
            &mut u.only
        };
        for x in [part, &mut u.total] {
            x.objects += 1;
            x.raw_bytes += row.size;
        }
    }
    for (rowid, c) in &k_mine {
        let part = if k_others.contains_key(rowid) {
            &mut u.shared
        } else {
            &mut u.only
        };
        for x in [part, &mut u.total] {
            x.chunks += 1;
            x.stored_bytes += u64::from(c.stored_len);
        }
    }
    Ok(u)
}
