//! Rebuild the index from the self-describing packs and the snapshot files.
//!
//! What can be recovered: every pack whose checksum is intact (its chunks and
//! the object records it carries), and every snapshot from its JSON file.
//! What cannot: packs whose checksum fails are left out (and reported), the
//! repositories' last-sync status and error text (rebuilt empty), and the
//! `checked_at` times of unchanged syncs (each snapshot's file keeps the time
//! it was taken).

use crate::index::{self, Index};
use crate::lock::{self, WriteLock};
use crate::pack;
use crate::snapshot::Snapshot;
use crate::store::{self, INDEX_FILE, LOCK_FILE, PACKS_DIR, SNAPSHOTS_DIR};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of repair.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is not a store.
    #[error(
        "{path} is not a repovault store (no {}): give the store's directory",
        store::CONFIG_FILE
    )]
    NotAStore {
        /// The path.
        path: PathBuf,
    },
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The lock.
    #[error(transparent)]
    Lock(#[from] lock::Error),
    /// The new index.
    #[error(transparent)]
    Index(#[from] index::Error),
}

/// What repair did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairReport {
    /// Where the old index was moved, if there was one.
    pub old_index: Option<PathBuf>,
    /// Packs indexed.
    pub packs: u64,
    /// Packs left out (damaged), with the reason.
    pub skipped_packs: Vec<String>,
    /// Chunks indexed.
    pub chunks: u64,
    /// Chunks dropped because their delta base is in no pack.
    pub dropped_chunks: u64,
    /// Objects indexed.
    pub objects: u64,
    /// Snapshots restored from their files.
    pub snapshots: u64,
    /// Snapshot files that could not be read.
    pub skipped_snapshots: Vec<String>,
}

/// Rebuilds `root/index.sqlite`; the old one (if any) is kept beside it.
pub fn repair_index(root: &Path, lock_wait: Duration) -> Result<RepairReport, Error> {
    if !root.join(store::CONFIG_FILE).is_file() {
        return Err(Error::NotAStore {
            path: root.to_owned(),
        });
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let _lock = WriteLock::acquire(&root.join(LOCK_FILE), lock_wait, "repair-index")?;
    let mut report = RepairReport::default();
    let idx_path = root.join(INDEX_FILE);
    let stamp = jiff::Timestamp::now().as_second();
    if idx_path.exists() {
        let old = root.join(format!("{INDEX_FILE}.broken-{stamp}"));
        std::fs::rename(&idx_path, &old).map_err(io(&idx_path))?;
        for ext in ["-wal", "-shm"] {
            let side = root.join(format!("{INDEX_FILE}{ext}"));
            if side.exists() {
                std::fs::rename(
                    &side,
                    root.join(format!("{INDEX_FILE}.broken-{stamp}{ext}")),
                )
                .map_err(io(&side))?;
            }
        }
        report.old_index = Some(old);
    }
    let tmp = root.join(format!("{INDEX_FILE}.rebuilding"));
    let _ = std::fs::remove_file(&tmp);
    let mut index = Index::create(&tmp)?;

    let dir = root.join(PACKS_DIR);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack") && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut packs = Vec::new();
    for n in names {
        let path = dir.join(&n);
        let stem = n.trim_end_matches(".pack").to_owned();
        let checked = pack::verify_checksum(&path)
            .and_then(|size| pack::read_contents(&path).map(|c| (size, c)));
        match checked {
            Ok((size, c)) if hex::encode(c.checksum) == stem => {
                report.chunks += c.entries.len() as u64;
                packs.push((stem, size, c));
            }
            Ok(_) => report
                .skipped_packs
                .push(format!("{n}: its name does not match its checksum")),
            Err(e) => report.skipped_packs.push(format!("{n}: {e}")),
        }
    }
    report.packs = packs.len() as u64;
    report.dropped_chunks = index.rebuild_from_packs(&packs, stamp)?;
    report.chunks -= report.dropped_chunks.min(report.chunks);

    let sdir = root.join(SNAPSHOTS_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sdir)
        .map_err(io(&sdir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    let mut snaps: Vec<Snapshot> = Vec::new();
    for f in files {
        match std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Snapshot>(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => snaps.push(s),
            Err(e) => report
                .skipped_snapshots
                .push(format!("{}: {e}", f.display())),
        }
    }
    snaps.sort_by_key(|s| s.time);
    for s in &snaps {
        let repo = index.upsert_repo(&s.repo, &s.url, s.time.as_second())?;
        index.insert_snapshot(repo, s)?;
        report.snapshots += 1;
    }
    report.objects = index.totals()?.objects;
    drop(index);
    std::fs::rename(&tmp, &idx_path).map_err(io(&idx_path))?;
    for ext in ["-wal", "-shm"] {
        let side = root.join(format!("{INDEX_FILE}.rebuilding{ext}"));
        let _ = std::fs::remove_file(side);
    }
    pack::sync_dir(root).map_err(io(root))?;
    Ok(report)
}
