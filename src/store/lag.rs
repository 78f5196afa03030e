//! The index against the store's files, which are the truth.
//!
//! Snapshot files and pack files are written before the index rows that
//! describe them (docs/FORMAT.md, "Read and write ordering"), so a killed
//! writer can leave a file the index does not know: a pack (harmless, no
//! snapshot needs it) or a snapshot file whose objects are all indexed (the
//! sync was killed between the file and its rows). An index put back from a
//! backup, or truncated, is different: snapshot files need objects the index
//! does not have, and pruning with it would delete the packs holding them.
//! [`check`] tells these apart with two directory listings and a lookup of
//! each unknown snapshot's ref targets.

use super::{Error, PACKS_DIR, SNAPSHOTS_DIR};
use crate::index::Index;
use crate::snapshot::{self, Snapshot};
use gix::ObjectId;
use std::collections::HashSet;
use std::path::Path;

/// A snapshot file the index does not know.
#[derive(Debug, Clone)]
pub struct UnknownSnapshot {
    /// The snapshot, as its file records it.
    pub snapshot: Snapshot,
    /// Its ref targets that the index does not hold. Empty: the index has
    /// what it needs (a sync was killed after writing the file); otherwise
    /// the index is older than the file.
    pub unindexed_tips: Vec<ObjectId>,
}

/// How the index compares with the files of the store.
#[derive(Debug, Clone, Default)]
pub struct FileState {
    /// Snapshot files the index does not know.
    pub unknown_snapshots: Vec<UnknownSnapshot>,
    /// Snapshot files that cannot be read: (file name, reason).
    pub unreadable_snapshots: Vec<(String, String)>,
    /// Snapshots in the index whose file is missing (ids).
    pub missing_snapshot_files: Vec<String>,
    /// Pack files (names) the index does not know.
    pub unknown_packs: Vec<String>,
    /// Packs (names) the index names whose file is missing.
    pub missing_packs: Vec<String>,
}

impl FileState {
    /// True when the index is older than the files: a snapshot file needs
    /// objects the index lacks, or the index names packs that are gone while
    /// packs it does not know are there (an index from before a prune).
    pub fn lags(&self) -> bool {
        self.lagging_snapshots().next().is_some()
            || (!self.missing_packs.is_empty() && !self.unknown_packs.is_empty())
    }

    /// The unknown snapshot files whose objects the index lacks.
    pub fn lagging_snapshots(&self) -> impl Iterator<Item = &UnknownSnapshot> {
        self.unknown_snapshots
            .iter()
            .filter(|u| !u.unindexed_tips.is_empty())
    }

    /// One line saying why the index lags (for messages).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let lagging: Vec<&UnknownSnapshot> = self.lagging_snapshots().collect();
        if !lagging.is_empty() {
            parts.push(format!(
                "{} snapshot file(s) need objects it does not have (snapshot {} of {}, ...)",
                lagging.len(),
                lagging[0].snapshot.short_id(),
                lagging[0].snapshot.repo
            ));
        }
        if !self.missing_packs.is_empty() && !self.unknown_packs.is_empty() {
            parts.push(format!(
                "it names {} pack(s) that are gone while {} pack(s) it does not know are there",
                self.missing_packs.len(),
                self.unknown_packs.len()
            ));
        }
        parts.join("; ")
    }
}

fn names_in(dir: &Path, suffix: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(Error::io(dir))?;
    for e in rd {
        let e = e.map_err(Error::io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(suffix) {
            if !stem.starts_with('.') && !stem.is_empty() {
                out.push(stem.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Ids of the snapshot files in the store at `root`.
fn snapshot_file_ids(root: &Path) -> Result<Vec<String>, Error> {
    snapshot::list_files(&root.join(SNAPSHOTS_DIR)).map_err(file_error)
}

fn file_error(e: snapshot::FileError) -> Error {
    Error::Io {
        path: e.path().to_owned(),
        source: e.into_io(),
    }
}

/// Compares `index` with the files of the store at `root` (two directory
/// listings; only snapshot files the index does not know are read).
pub fn check(root: &Path, index: &Index) -> Result<FileState, Error> {
    let mut state = FileState::default();
    let pack_rows: HashSet<String> = index.packs()?.into_iter().map(|p| p.name).collect();
    let pack_files: HashSet<String> = names_in(&root.join(PACKS_DIR), ".pack")?
        .into_iter()
        .collect();
    state.unknown_packs = pack_files.difference(&pack_rows).cloned().collect();
    state.missing_packs = pack_rows.difference(&pack_files).cloned().collect();
    state.unknown_packs.sort();
    state.missing_packs.sort();

    let sdir = root.join(SNAPSHOTS_DIR);
    let known: HashSet<String> = index.snapshot_ids()?.into_iter().collect();
    let files = snapshot_file_ids(root)?;
    let on_disk: HashSet<&str> = files.iter().map(String::as_str).collect();
    for id in &files {
        if known.contains(id) {
            continue;
        }
        match snapshot::read_file(&sdir, id) {
            Ok(snapshot) => {
                let mut unindexed_tips = Vec::new();
                for t in snapshot.tips() {
                    if !snapshot.missing.contains(&t) && !index.has_object(&t)? {
                        unindexed_tips.push(t);
                    }
                }
                state.unknown_snapshots.push(UnknownSnapshot {
                    snapshot,
                    unindexed_tips,
                });
            }
            Err(e) => state
                .unreadable_snapshots
                .push((format!("{id}.json"), e.reason())),
        }
    }
    let mut missing: Vec<String> = known
        .into_iter()
        .filter(|id| !on_disk.contains(id.as_str()))
        .collect();
    missing.sort();
    state.missing_snapshot_files = missing;
    Ok(state)
}

/// Brings the index up to the files where that is safe (under the write
/// lock, on an index that does not lag): records the snapshot files of
/// interrupted syncs, and writes back snapshot files that are missing while
/// the index still holds the snapshot (unless a pack the index names is
/// gone: then the snapshot's data may be gone too, and verify reports it).
pub fn settle(root: &Path, index: &mut Index, state: &FileState) -> Result<(), Error> {
    for u in state
        .unknown_snapshots
        .iter()
        .filter(|u| u.unindexed_tips.is_empty())
    {
        let s = &u.snapshot;
        let repo = index.upsert_repo(&s.repo, &s.url, s.time.as_second())?;
        index.insert_snapshot(repo, s)?;
        tracing::warn!(
            snapshot = s.short_id(),
            repo = %s.repo,
            "recorded snapshot from its file (a sync was interrupted before recording it)"
        );
    }
    if state.missing_snapshot_files.is_empty() || !state.missing_packs.is_empty() {
        return Ok(());
    }
    let sdir = root.join(SNAPSHOTS_DIR);
    let missing: HashSet<&str> = state
        .missing_snapshot_files
        .iter()
        .map(String::as_str)
        .collect();
    for mut s in index.snapshots(None)? {
        if !missing.contains(s.id.as_str()) {
            continue;
        }
        // The file keeps the time the snapshot was taken (as sync wrote it).
        s.checked_at = s.time;
        snapshot::write_file(&sdir, &s).map_err(file_error)?;
        tracing::warn!(
            snapshot = s.short_id(),
            repo = %s.repo,
            "the snapshot's file was missing: wrote it back from the index"
        );
    }
    Ok(())
}
