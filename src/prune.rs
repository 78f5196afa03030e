//! Forget and prune: drop snapshots by policy, then reclaim the data that no
//! remaining snapshot needs.
//!
//! Prune walks every remaining snapshot's closure (commits and trees are read
//! from the tree packs; blobs are only looked up) into a temporary SQLite
//! table, so memory does not grow with the store. A chunk is live when a live
//! object uses it or a live chunk is a delta against it. Packs with no live
//! chunk are deleted; packs whose live fraction is under the threshold (and
//! small packs) are repacked: their live chunks are copied, stored bytes as
//! they are, into new packs, which are fsynced and renamed into place before
//! one index transaction moves the rows; only then are the old files deleted.
//! A prune killed at any point leaves a consistent store; the next prune
//! deletes what the killed one left behind.

use crate::index::{self, PackLiveness, PruneCommit};
use crate::pack::{self, PackKind, PackWriter};
use crate::progress::Progress;
use crate::retention::{self, Policy};
use crate::snapshot::Snapshot;
use crate::store::{self, Store, Writer};
use gix::ObjectId;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors of forget and prune.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// A pack failed.
    #[error(transparent)]
    Pack(#[from] pack::Error),
    /// A snapshot file could not be removed.
    #[error("snapshot file {path}: {source}")]
    SnapshotFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An object a snapshot needs is missing or damaged: pruning now could lose data.
    #[error("snapshot {snapshot} of {repo} needs object {oid}, which is {reason}: run `repovault verify --read-data`; prune refuses to run on a damaged store")]
    Damaged {
        /// The snapshot.
        snapshot: String,
        /// Its repository.
        repo: String,
        /// The object.
        oid: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot file on disk that the index does not know: what it needs is unknown.
    #[error("snapshot file {path} is not in the index, so prune cannot tell what it needs; nothing was deleted: run `repovault repair-index` (or move the file away if it is damaged)")]
    UnknownSnapshotFile {
        /// The file.
        path: std::path::PathBuf,
    },
    /// No keep rule was given (forget never removes snapshots without one,
    /// except those named by id).
    #[error(
        "no keep rule given: pass at least one --keep-* option (or set [retention] in the config), or name the snapshots to remove: repovault forget SNAPSHOT-ID..."
    )]
    EmptyPolicy,
    /// A snapshot named by `forget SNAPSHOT-ID` matches none or several snapshots.
    #[error("snapshot id {id}: {reason}; nothing was removed")]
    NoSuchSnapshot {
        /// The id or prefix as given.
        id: String,
        /// No match, or how many.
        reason: String,
    },
    /// Interrupted.
    #[error("interrupted")]
    Interrupted,
}

/// What forget decided for one snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetDecision {
    /// Repository.
    pub repo: String,
    /// Snapshot id.
    pub snapshot: String,
    /// Its time.
    pub time: jiff::Timestamp,
    /// Kept?
    pub keep: bool,
    /// Why kept (rule names).
    pub reasons: Vec<String>,
}

/// Decides which snapshots to keep, per repository. The newest snapshot of a
/// repository is always kept unless `allow_empty`.
pub fn plan_forget(
    snapshots: &[Snapshot],
    policy: &Policy,
    allow_empty: bool,
) -> Vec<ForgetDecision> {
    let mut by_repo: std::collections::BTreeMap<&str, Vec<&Snapshot>> = Default::default();
    for s in snapshots {
        by_repo.entry(&s.repo).or_default().push(s);
    }
    let mut out = Vec::new();
    for (repo, snaps) in by_repo {
        let times: Vec<jiff::Timestamp> = snaps.iter().map(|s| s.time).collect();
        let mut d = retention::apply(policy, &times);
        if !allow_empty {
            if let Some((newest, _)) = times.iter().enumerate().max_by_key(|(i, t)| (**t, *i)) {
                if !d[newest].keep {
                    d[newest].keep = true;
                    d[newest].reasons.push("newest".into());
                }
            }
        }
        for (s, d) in snaps.iter().zip(d) {
            out.push(ForgetDecision {
                repo: repo.to_owned(),
                snapshot: s.id.clone(),
                time: s.time,
                keep: d.keep,
                reasons: d.reasons,
            });
        }
    }
    out.sort_by(|a, b| a.repo.cmp(&b.repo).then(b.time.cmp(&a.time)));
    out
}

/// The decisions of `forget SNAPSHOT-ID...`: exactly the snapshots named (by
/// id or unique prefix, among `snapshots`) are removed, whatever any rule or
/// the newest-snapshot guard would say. Every id must name exactly one snapshot.
///
/// # Errors
/// [`Error::NoSuchSnapshot`] for an id that matches no snapshot or several.
pub fn plan_forget_ids(
    snapshots: &[Snapshot],
    ids: &[String],
) -> Result<Vec<ForgetDecision>, Error> {
    let mut named: Vec<&Snapshot> = Vec::new();
    for id in ids {
        let p = id.trim().to_lowercase();
        let hits: Vec<&Snapshot> = if p.is_empty() {
            Vec::new()
        } else {
            snapshots.iter().filter(|s| s.id.starts_with(&p)).collect()
        };
        match hits.as_slice() {
            [one] => {
                if !named.iter().any(|s| s.id == one.id) {
                    named.push(one);
                }
            }
            [] => {
                return Err(Error::NoSuchSnapshot {
                    id: id.clone(),
                    reason: "no such snapshot (see `repovault snapshots`)".into(),
                })
            }
            many => {
                return Err(Error::NoSuchSnapshot {
                    id: id.clone(),
                    reason: format!("{} snapshots match: give more digits", many.len()),
                })
            }
        }
    }
    let mut out: Vec<ForgetDecision> = named
        .into_iter()
        .map(|s| ForgetDecision {
            repo: s.repo.clone(),
            snapshot: s.id.clone(),
            time: s.time,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    out.sort_by(|a, b| a.repo.cmp(&b.repo).then(b.time.cmp(&a.time)));
    Ok(out)
}

/// Removes the snapshots that `decisions` do not keep: files first, then rows.
pub fn apply_forget(writer: &mut Writer<'_>, decisions: &[ForgetDecision]) -> Result<u64, Error> {
    let gone: Vec<String> = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.snapshot.clone())
        .collect();
    let dir = writer.store().root().join(store::SNAPSHOTS_DIR);
    let rebased = crate::snapshot::rebase_files(&dir, &gone).map_err(snapshot_file_error)?;
    if !rebased.is_empty() {
        tracing::debug!(
            files = rebased.len(),
            "snapshot files that were changes to forgotten ones now have all their refs"
        );
        crate::crash_point("forget-files-rebased");
    }
    crate::snapshot::remove_files(&dir, &gone).map_err(snapshot_file_error)?;
    writer.index().delete_snapshots(&gone)?;
    Ok(gone.len() as u64)
}

/// Prune parameters.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Repack packs whose live fraction (of stored bytes) is below this.
    pub repack_below: f64,
    /// Only compute and report.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            repack_below: 0.8,
            dry_run: false,
        }
    }
}

/// What prune found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Snapshots walked.
    pub snapshots: u64,
    /// Live objects.
    pub live_objects: u64,
    /// Objects no snapshot needs (deleted).
    pub dead_objects: u64,
    /// Packs before.
    pub packs_before: u64,
    /// Packs deleted outright (nothing live).
    pub packs_deleted: u64,
    /// Packs repacked.
    pub packs_repacked: u64,
    /// New packs written.
    pub packs_written: u64,
    /// Pack files not in the index (left by killed writers or prunes), deleted.
    pub unindexed_packs_deleted: u64,
    /// Stored bytes of live chunks copied.
    pub bytes_copied: u64,
    /// Bytes of pack files before.
    pub bytes_before: u64,
    /// Bytes of pack files after (estimated for a dry run).
    pub bytes_after: u64,
    /// True for a dry run.
    pub dry_run: bool,
    /// Pack files no longer needed but not deleted because readers (restore,
    /// verify) still ran after [`READERS_WAIT`]: the next prune deletes them.
    pub packs_left_for_next_prune: u64,
}

/// How long prune waits for running readers before it leaves the pack files
/// it would delete to the next prune.
pub const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Marks every object a snapshot needs live (in SQLite, so memory does not
/// grow with the store); returns how many. A needed object that is missing
/// (and not recorded missing by its snapshot) or damaged stops prune.
fn walk_live(
    store: &Store,
    writer: &mut Writer<'_>,
    snaps: &[Snapshot],
    interrupt: &AtomicBool,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    use crate::closure::{self, Damage, Event, Flow};
    writer.index().begin_live()?;
    progress.begin("finding live objects", None);
    let mut live = 0u64;
    let source = closure::StoreSource {
        store,
        check_oid: true,
    };
    for snap in snaps {
        let damaged = |oid: ObjectId, reason: String| Error::Damaged {
            snapshot: snap.id.clone(),
            repo: snap.repo.clone(),
            oid,
            reason,
        };
        let end = closure::walk_snapshot(
            snap,
            &source,
            &mut closure::RecordedByCallback,
            interrupt,
            |e| match e {
                Event::Found { oid, .. } => {
                    if !writer.index().mark_live(&oid)? {
                        return Ok(Flow::Skip);
                    }
                    live += 1;
                    if live.is_multiple_of(PROGRESS_EVERY) {
                        progress.update(live, 0);
                    }
                    Ok(Flow::Continue)
                }
                Event::Missing { listed: true, .. } => Ok(Flow::Continue),
                Event::Missing { oid, listed: false } => Err(damaged(oid, "not stored".into())),
                Event::Damaged {
                    damage: Damage::Lookup(e),
                    ..
                } => Err(e.into()),
                Event::Damaged {
                    oid,
                    damage: Damage::Read(e),
                } => Err(damaged(oid, e.to_string())),
                Event::Damaged {
                    oid,
                    damage: Damage::Parse(e),
                } => Err(damaged(oid, e)),
            },
        )?;
        if end == closure::End::Interrupted {
            return Err(Error::Interrupted);
        }
    }
    Ok(live)
}

/// Packs on disk that the index does not name (and temporary packs).
fn unindexed_packs(dir: &Path, known: &HashSet<String>) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".pack") {
                if stem.starts_with(crate::durable::TMP_PREFIX) || !known.contains(stem) {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// Every snapshot file on disk must be one of `walked` (the snapshots whose
/// needs prune computed): the files, not only the index, say what is needed.
fn check_snapshot_files(store: &Store, walked: &[Snapshot]) -> Result<(), Error> {
    let ids: HashSet<&str> = walked.iter().map(|s| s.id.as_str()).collect();
    let dir = store.root().join(store::SNAPSHOTS_DIR);
    for id in crate::snapshot::list_files(&dir).map_err(snapshot_file_error)? {
        if !ids.contains(id.as_str()) {
            return Err(Error::UnknownSnapshotFile {
                path: crate::snapshot::file_path(&dir, &id),
            });
        }
    }
    Ok(())
}

fn snapshot_file_error(e: crate::snapshot::FileError) -> Error {
    Error::SnapshotFile {
        path: e.path().to_owned(),
        source: e.into_io(),
    }
}

/// Objects (or chunks) between two progress updates.
const PROGRESS_EVERY: u64 = 4096;

/// Reclaims what no snapshot needs. Runs under the writer's lock. Reports its
/// progress: "finding live objects" (the walk), then "repacking" (live chunks
/// copied of the total, and their bytes).
pub fn prune(
    writer: &mut Writer<'_>,
    opts: PruneOptions,
    interrupt: &AtomicBool,
    progress: &dyn Progress,
) -> Result<PruneReport, Error> {
    let store = writer.store();
    let snaps = store.with_index(|i| i.snapshots(None))?;
    check_snapshot_files(store, &snaps)?;
    let mut report = PruneReport {
        snapshots: snaps.len() as u64,
        dry_run: opts.dry_run,
        ..Default::default()
    };
    report.live_objects = walk_live(store, writer, &snaps, interrupt, progress)?;
    progress.update(report.live_objects, 0);
    crate::pause_point("prune-walked");
    let packs: Vec<PackLiveness> = writer.index().compute_live_chunks()?;
    report.dead_objects = writer.index().dead_object_count()?;
    report.packs_before = packs.len() as u64;
    report.bytes_before = packs.iter().map(|p| p.size).sum();
    let target = store.config().pack_target_size;
    let small = target / 4;

    let mut delete: Vec<&PackLiveness> = Vec::new();
    let mut repack: Vec<&PackLiveness> = Vec::new();
    for p in &packs {
        if p.live_chunks == 0 {
            delete.push(p);
        } else if p.bytes > 0 && (p.live_bytes as f64) < opts.repack_below * p.bytes as f64 {
            repack.push(p);
        }
    }
    // Many small packs (nightly runs) are merged, once there are several of a kind.
    for kind in [PackKind::Tree, PackKind::Data] {
        let smalls: Vec<&PackLiveness> = packs
            .iter()
            .filter(|p| {
                p.kind == kind
                    && p.size < small
                    && p.live_chunks > 0
                    && !repack.iter().any(|r| r.rowid == p.rowid)
            })
            .collect();
        if smalls.len() + repack.iter().filter(|r| r.kind == kind).count() >= 4 {
            repack.extend(smalls);
        }
    }
    report.packs_deleted = delete.len() as u64;
    report.packs_repacked = repack.len() as u64;
    let known: HashSet<String> = packs.iter().map(|p| p.name.clone()).collect();
    let leftovers = unindexed_packs(&store.packs_dir(), &known);
    report.unindexed_packs_deleted = leftovers.len() as u64;
    let copied: u64 = repack.iter().map(|p| p.live_bytes).sum();
    report.bytes_copied = copied;
    let dropped: u64 = delete.iter().chain(&repack).map(|p| p.size).sum();
    if opts.dry_run {
        report.bytes_after = report.bytes_before - dropped + copied;
        return Ok(report);
    }

    // 1. Copy live chunks of the packs being repacked into new packs.
    let dir = store.packs_dir();
    let mut commit = PruneCommit::default();
    let mut open: [Option<PackWriter>; 2] = [None, None];
    let slot = |k: PackKind| if k == PackKind::Tree { 0 } else { 1 };
    let mut pending_chunks: [Vec<(i64, u64)>; 2] = [Vec::new(), Vec::new()];
    let mut pending_objects: [Vec<ObjectId>; 2] = [Vec::new(), Vec::new()];
    let finish = |w: PackWriter,
                  chunks: &mut Vec<(i64, u64)>,
                  objs: &mut Vec<ObjectId>,
                  commit: &mut PruneCommit|
     -> Result<(), Error> {
        let idx = commit.new_packs.len();
        commit.new_packs.push(w.finish()?);
        commit
            .moved_chunks
            .extend(chunks.drain(..).map(|(r, o)| (r, idx, o)));
        commit
            .moved_objects
            .extend(objs.drain(..).map(|o| (o, idx)));
        Ok(())
    };
    let live_chunks: u64 = repack.iter().map(|p| p.live_chunks).sum();
    progress.begin_counting("repacking", Some(live_chunks), "chunks");
    let (mut chunks_copied, mut bytes_copied) = (0u64, 0u64);
    for p in &repack {
        if interrupt.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let path = pack::pack_path(&dir, &p.name);
        let bytes = std::fs::read(&path).map_err(|source| pack::Error::Io {
            path: path.clone(),
            source,
        })?;
        let s = slot(p.kind);
        for c in writer.index().live_chunks_in_pack(p.rowid)? {
            let stored = bytes
                .get(c.offset as usize..(c.offset + u64::from(c.stored_len)) as usize)
                .ok_or_else(|| pack::Error::Corrupt {
                    path: path.clone(),
                    reason: format!("chunk {} lies beyond the end of the file", c.id),
                })?;
            if open[s].is_none() {
                open[s] = Some(PackWriter::create(
                    &dir,
                    p.kind,
                    store.config().pack_version(),
                )?);
            }
            let w = open[s].as_mut().expect("just opened");
            let off = w.append(c.id, c.raw_len, c.base, stored)?;
            pending_chunks[s].push((c.rowid, off));
            chunks_copied += 1;
            bytes_copied += u64::from(c.stored_len);
            if chunks_copied.is_multiple_of(PROGRESS_EVERY) {
                progress.update(chunks_copied, bytes_copied);
            }
            if w.len() >= target {
                let w = open[s].take().expect("open");
                finish(
                    w,
                    &mut pending_chunks[s],
                    &mut pending_objects[s],
                    &mut commit,
                )?;
            }
        }
    }
    progress.update(chunks_copied, bytes_copied);
    // Object records that lived in dropped packs move to the new packs.
    for p in delete.iter().chain(&repack) {
        for rec in writer.index().live_object_records_in_pack(p.rowid)? {
            let k = PackKind::for_object(rec.kind);
            let s = slot(k);
            if open[s].is_none() {
                open[s] = Some(PackWriter::create(&dir, k, store.config().pack_version())?);
            }
            pending_objects[s].push(rec.oid);
            open[s].as_mut().expect("just opened").add_object(rec);
        }
    }
    for s in 0..2 {
        if let Some(w) = open[s].take() {
            if w.is_empty() {
                continue;
            }
            finish(
                w,
                &mut pending_chunks[s],
                &mut pending_objects[s],
                &mut commit,
            )?;
        }
    }
    report.packs_written = commit.new_packs.len() as u64;
    crate::crash_point("prune-packs-written");

    // 2. One transaction moves the rows and drops the dead ones.
    commit.dropped_packs = delete.iter().chain(&repack).map(|p| p.rowid).collect();
    writer
        .index()
        .commit_prune(&commit, jiff::Timestamp::now().as_second())?;
    crate::crash_point("prune-index-committed");

    // 3. Only now delete files: dropped packs, then leftovers of killed runs
    // (none of which a snapshot file needs: every file was walked), and only
    // while no reader runs (a restore or verify that started before the
    // commit still reads the old packs). Readers that outlast the wait keep
    // them: they are leftovers (unindexed) that the next prune deletes.
    let Some(_no_readers) = store.exclude_readers(READERS_WAIT)? else {
        let n = delete.len() + repack.len() + leftovers.len();
        tracing::warn!(
            "a restore or verify is still reading the store: {n} pack file(s) no longer needed are left for the next prune"
        );
        report.packs_left_for_next_prune = n as u64;
        report.bytes_after = store
            .with_index(|i| i.packs())?
            .iter()
            .map(|p| p.size)
            .sum();
        return Ok(report);
    };
    check_snapshot_files(store, &snaps)?;
    let mut first = true;
    for p in delete.iter().chain(&repack) {
        let path = pack::pack_path(&dir, &p.name);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(pack::Error::Io { path, source: e }.into());
            }
        }
        if first {
            crate::crash_point("prune-deleting");
            first = false;
        }
    }
    // A leftover of a killed prune can have exactly the name of a pack this run
    // wrote (same content, same checksum): that one is indexed now and stays.
    let written: HashSet<String> = commit.new_packs.iter().map(|p| p.name.clone()).collect();
    for path in leftovers {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !written.contains(&stem) {
            let _ = std::fs::remove_file(path);
        }
    }
    crate::durable::sync_dir(&dir).map_err(|source| pack::Error::Io {
        path: dir.clone(),
        source,
    })?;
    report.bytes_after = store
        .with_index(|i| i.packs())?
        .iter()
        .map(|p| p.size)
        .sum();
    Ok(report)
}
