//! Verify: prove that what the store holds can be restored.
//!
//! Quick mode reads no pack contents: SQLite's integrity check, every pack the
//! index names exists and covers every chunk placed in it, every object's
//! chunk list resolves, every snapshot's ref targets exist, no orphaned rows.
//! `read_data` additionally reads every pack once, sequentially and in
//! parallel over packs, checks its checksum, decodes every chunk and checks
//! its blake3, checks the git id of every object, and walks every snapshot's
//! reachable closure. Every problem names what is damaged and which
//! snapshots it makes unrestorable.

use crate::chunk::ChunkId;
use crate::closure;
use crate::git_oid;
use crate::index::{self, Finding};
use crate::pack;
use crate::snapshot::Snapshot;
use crate::store::{codec, Store};
use gix::ObjectId;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Errors that stop a verification (as opposed to damage, which is reported).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// Interrupted.
    #[error("interrupted")]
    Interrupted,
    /// Listing the store's files failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A bad `--read-data-subset`.
    #[error("--read-data-subset {0:?}: give N/M (1 <= N <= M) or P% (0 < P <= 100)")]
    BadSubset(String),
}

/// Which packs `read_data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Part `n` (1-based) of `m`: packs whose position in name order is `n-1` modulo `m`.
    Part {
        /// Which part.
        n: u32,
        /// Of how many.
        m: u32,
    },
    /// A random `p` percent of the packs.
    Percent(f64),
}

impl std::str::FromStr for Subset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadSubset(s.to_owned());
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Subset::Percent(p));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset::Part { n, m })
    }
}

/// Options of a verification.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Read and check all data, not only the structure.
    pub read_data: bool,
    /// Read only this part of the packs.
    pub subset: Option<Subset>,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// `index`, `pack`, `chunk`, `object` or `snapshot`.
    pub kind: String,
    /// The pack concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// Offset in the pack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The chunk concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// The object concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// What is wrong.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(p) = &self.pack {
            write!(f, " pack {p}")?;
        }
        if let Some(o) = self.offset {
            write!(f, " offset {o}")?;
        }
        if let Some(c) = &self.chunk {
            write!(f, " chunk {c}")?;
        }
        if let Some(o) = &self.object {
            write!(f, " object {o}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

fn problem(kind: &str, detail: impl Into<String>) -> Problem {
    Problem {
        kind: kind.into(),
        pack: None,
        offset: None,
        chunk: None,
        object: None,
        detail: detail.into(),
    }
}

/// A snapshot that cannot be restored (fully).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Affected {
    /// The repository.
    pub repo: String,
    /// The snapshot id.
    pub snapshot: String,
    /// Why: the first damaged or missing object it needs.
    pub reason: String,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// `quick` or `read-data`.
    pub mode: String,
    /// Packs checked (read in read-data mode).
    pub packs_checked: u64,
    /// Chunks checked.
    pub chunks_checked: u64,
    /// Objects whose git id was checked.
    pub objects_checked: u64,
    /// Snapshots checked.
    pub snapshots_checked: u64,
    /// Bytes read from packs.
    pub bytes_read: u64,
    /// Wall time.
    pub seconds: f64,
    /// Bytes read per second (MB/s, 10^6).
    pub mb_per_second: f64,
    /// Objects checked per second.
    pub objects_per_second: f64,
    /// Damage found.
    pub problems: Vec<Problem>,
    /// Snapshots the damage makes unrestorable.
    pub affected: Vec<Affected>,
    /// Harmless observations (unindexed packs, snapshot files the index lacks).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.affected.is_empty()
    }
}

#[derive(Default)]
struct Damage {
    chunks: HashSet<i64>,
    objects: HashMap<ObjectId, String>,
}

/// Verifies the store. `progress` is called with the bytes read from packs.
pub fn verify(
    store: &Store,
    opts: VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
    interrupt: &AtomicBool,
) -> Result<VerifyReport, Error> {
    verify_scoped(store, opts, None, progress, interrupt)
}

/// What `verify --repo` checks: one repository's snapshots, the packs its
/// objects are stored in and those objects (the index itself is checked whole).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The repository's name.
    pub repo: String,
    /// The objects its snapshots reach.
    pub objects: HashSet<ObjectId>,
    /// The chunks they need (row ids, delta bases included).
    pub chunks: HashSet<i64>,
    /// The packs holding those chunks (row ids).
    pub packs: HashSet<i64>,
}

impl Scope {
    /// Walks the closure of `repo`'s snapshots to find what it needs.
    pub fn of_repo(store: &Store, repo: &str) -> Result<Scope, Error> {
        let snaps: Vec<Snapshot> = store
            .with_index(|i| i.snapshots(None))?
            .into_iter()
            .filter(|s| s.repo == repo)
            .collect();
        let walked = |e: crate::usage::Error| match e {
            crate::usage::Error::Index(e) => Error::Index(e),
            crate::usage::Error::Store(crate::store::Error::Index(e)) => Error::Index(e),
            crate::usage::Error::Store(e) => Error::Store(e),
        };
        let closure = crate::usage::closure(store, &snaps).map_err(walked)?;
        let chunks = crate::usage::chunks(store, &closure).map_err(walked)?;
        Ok(Scope {
            repo: repo.to_owned(),
            objects: closure.objects.keys().copied().collect(),
            packs: chunks.values().map(|c| c.pack).collect(),
            chunks: chunks.into_keys().collect(),
        })
    }

    fn has_finding(&self, store: &Store, f: &Finding) -> bool {
        match f {
            Finding::ObjectChunks { oid, .. } => self.objects.contains(oid),
            Finding::Chunk { id, .. } => matches!(
                store.with_index(|i| i.chunk_by_hash(id)),
                Ok(Some(row)) if self.chunks.contains(&row.rowid)
            ),
            Finding::RefTarget { repo, .. } => *repo == self.repo,
            Finding::Orphan { .. } => true,
        }
    }
}

/// Verifies the store, or only what `scope` names.
pub fn verify_scoped(
    store: &Store,
    opts: VerifyOptions,
    scope: Option<&Scope>,
    progress: &(dyn Fn(u64) + Sync),
    interrupt: &AtomicBool,
) -> Result<VerifyReport, Error> {
    let start = Instant::now();
    let mut report = VerifyReport {
        mode: if opts.read_data { "read-data" } else { "quick" }.into(),
        ..Default::default()
    };
    let mut damage = Damage::default();
    let pack_dir = store.packs_dir();
    // One consistent view of the index for the whole run (and no per-query locking).
    let _read = store.read_session()?;

    // 1. The database itself.
    for complaint in store.with_index(|i| i.integrity_check())? {
        report.problems.push(problem(
            "index",
            format!("SQLite integrity check: {complaint}"),
        ));
    }

    // 2. Packs named by the index exist and cover their chunks.
    let all_extents = store.with_index(|i| i.pack_extents())?;
    let extents: Vec<index::PackExtent> = all_extents
        .iter()
        .filter(|e| scope.is_none_or(|s| s.packs.contains(&e.pack.rowid)))
        .cloned()
        .collect();
    let mut bad_packs: HashSet<i64> = HashSet::new();
    // Packs whose file is shorter or longer than recorded: only chunks past the end are lost.
    let mut resized: HashMap<i64, u64> = HashMap::new();
    for e in &extents {
        let path = pack::pack_path(&pack_dir, &e.pack.name);
        let mut p = problem("pack", "");
        p.pack = Some(e.pack.name.clone());
        match std::fs::metadata(&path) {
            Err(_) => {
                p.detail = format!("missing: {} chunks are lost", e.chunks);
                report.problems.push(p);
                bad_packs.insert(e.pack.rowid);
            }
            Ok(m) if m.len() < e.end + pack::FOOTER_LEN || m.len() != e.pack.size => {
                p.detail = format!(
                    "truncated or resized: {} bytes, the index expects {} (chunks end at {})",
                    m.len(),
                    e.pack.size,
                    e.end
                );
                report.problems.push(p);
                resized.insert(e.pack.rowid, m.len());
            }
            Ok(_) => {}
        }
    }
    report.packs_checked = extents.len() as u64;
    for rowid in &bad_packs {
        for c in store.with_index(|i| i.chunks_in_pack(*rowid))? {
            damage.chunks.insert(c.rowid);
        }
    }
    for (rowid, len) in &resized {
        for c in store.with_index(|i| i.chunks_in_pack(*rowid))? {
            if c.offset + u64::from(c.stored_len) > *len {
                damage.chunks.insert(c.rowid);
            }
        }
    }

    // 3. Rows resolve.
    let findings = store.with_index(|i| i.quick_check())?;
    for f in findings
        .into_iter()
        .filter(|f| scope.is_none_or(|s| s.has_finding(store, f)))
    {
        match f {
            Finding::ObjectChunks { oid, reason } => {
                let mut p = problem("object", reason.clone());
                p.object = Some(oid.to_string());
                report.problems.push(p);
                damage
                    .objects
                    .insert(oid, format!("object {oid}: {reason}"));
            }
            Finding::Chunk { id, reason } => {
                let mut p = problem("chunk", reason);
                p.chunk = Some(id.to_hex());
                report.problems.push(p);
                if let Some(row) = store.with_index(|i| i.chunk_by_hash(&id))? {
                    damage.chunks.insert(row.rowid);
                }
            }
            Finding::RefTarget {
                snapshot,
                repo,
                name,
                target,
            } => {
                let mut p = problem(
                    "snapshot",
                    format!(
                        "ref {name} of snapshot {} points to {target}, which is not stored",
                        &snapshot[..8]
                    ),
                );
                p.object = Some(target.to_string());
                report.problems.push(p);
                let reason = format!("ref {name}: object {target} is not stored");
                // Later snapshots may need the same object as an ancestor: the walk below finds them.
                damage
                    .objects
                    .entry(target)
                    .or_insert_with(|| reason.clone());
                if !report.affected.iter().any(|a| a.snapshot == snapshot) {
                    report.affected.push(Affected {
                        repo,
                        snapshot,
                        reason,
                    });
                }
            }
            Finding::Orphan { what } => report
                .problems
                .push(problem("index", format!("orphaned rows: {what}"))),
        }
    }

    // 4. The files are the truth: the index must know every snapshot file and pack
    // (the index is checked whole, also for one repository).
    let all_snapshots = store.with_index(|i| i.snapshots(None))?;
    let files = store.with_index(|i| crate::store::lag::check(store.root(), i))?;
    compare_files(&files, &all_snapshots, &mut report);
    let snapshots: Vec<Snapshot> = all_snapshots
        .iter()
        .filter(|s| scope.is_none_or(|sc| s.repo == sc.repo))
        .cloned()
        .collect();

    // 5. Read every (selected) pack.
    if opts.read_data {
        let mut selected: Vec<&index::PackExtent> = extents
            .iter()
            .filter(|e| !bad_packs.contains(&e.pack.rowid))
            .collect();
        selected.sort_by(|a, b| a.pack.name.cmp(&b.pack.name));
        match opts.subset {
            Some(Subset::Part { n, m }) => {
                selected = selected
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| *i as u32 % m == n - 1)
                    .map(|(_, e)| e)
                    .collect();
            }
            Some(Subset::Percent(p)) => {
                selected.retain(|_| rand::random::<f64>() * 100.0 < p);
            }
            None => {}
        }
        // Tree packs first: they are small and hold what the walk needs.
        selected.sort_by_key(|e| (e.pack.kind.code(), e.pack.name.clone()));
        report.packs_checked = selected.len() as u64;
        let bytes = AtomicU64::new(0);
        let chunks = AtomicU64::new(0);
        let objects = AtomicU64::new(0);
        let found: Mutex<(Vec<Problem>, HashSet<i64>, HashMap<ObjectId, String>)> =
            Mutex::default();
        // Which objects each chunk is (one scan for all packs), to check their git ids.
        let users = store.with_index(|i| i.single_chunk_objects_by_pack())?;
        selected.par_iter().try_for_each(|e| -> Result<(), Error> {
            if interrupt.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let r = read_pack(store, e, &pack_dir, &users)?;
            bytes.fetch_add(r.bytes, Ordering::Relaxed);
            chunks.fetch_add(r.chunks, Ordering::Relaxed);
            objects.fetch_add(r.objects, Ordering::Relaxed);
            progress(r.bytes);
            let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
            f.0.extend(r.problems);
            f.1.extend(r.bad_chunks);
            f.2.extend(r.bad_objects);
            Ok(())
        })?;
        let (problems, bad_chunks, bad_objects) =
            found.into_inner().unwrap_or_else(|p| p.into_inner());
        report.problems.extend(problems);
        damage.chunks.extend(bad_chunks);
        damage.objects.extend(bad_objects);
        report.bytes_read = bytes.into_inner();
        report.chunks_checked = chunks.into_inner();
        report.objects_checked = objects.into_inner();
        if opts.subset.is_none() {
            for oid in store
                .with_index(|i| i.multi_chunk_objects())?
                .into_iter()
                .filter(|o| scope.is_none_or(|s| s.objects.contains(o)))
            {
                match store.get(&oid) {
                    Ok(_) => report.objects_checked += 1,
                    Err(e) => {
                        let mut p = problem("object", e.to_string());
                        p.object = Some(oid.to_string());
                        report.problems.push(p);
                        damage.objects.insert(oid, e.to_string());
                    }
                }
            }
        }
    } else {
        report.chunks_checked = extents.iter().map(|e| e.chunks).sum();
    }

    // 6. Damaged chunks make the chunks built on them and the objects using them damaged.
    let mut stack: Vec<i64> = damage.chunks.iter().copied().collect();
    let mut all_bad: HashSet<i64> = damage.chunks.clone();
    while let Some(c) = stack.pop() {
        for d in store.with_index(|i| i.dependents(c))? {
            if all_bad.insert(d) {
                stack.push(d);
            }
        }
    }
    for (oid, c) in store.with_index(|i| i.objects_using(&all_bad))? {
        damage
            .objects
            .entry(oid)
            .or_insert_with(|| format!("object {oid} uses damaged chunk row {c}"));
    }

    // 7. Snapshot closures: in read-data mode always; otherwise only to attribute damage.
    let walk_all = opts.read_data && opts.subset.is_none();
    if walk_all || !damage.objects.is_empty() {
        let already: HashSet<String> = report.affected.iter().map(|a| a.snapshot.clone()).collect();
        let mut closed: HashSet<ObjectId> = HashSet::new();
        for snap in &snapshots {
            if interrupt.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let (first_bad, missing) = walk(
                store,
                snap,
                &damage.objects,
                if damage.objects.is_empty() {
                    Some(&mut closed)
                } else {
                    None
                },
                interrupt,
            )?;
            for m in &missing {
                let mut p = problem(
                    "object",
                    format!(
                        "needed by snapshot {} of {} but not stored",
                        snap.short_id(),
                        snap.repo
                    ),
                );
                p.object = Some(m.to_string());
                report.problems.push(p);
            }
            let reason =
                first_bad.or_else(|| missing.first().map(|m| format!("object {m} is not stored")));
            if let Some(reason) = reason {
                if !already.contains(&snap.id) {
                    report.affected.push(Affected {
                        repo: snap.repo.clone(),
                        snapshot: snap.id.clone(),
                        reason,
                    });
                }
            }
        }
        report.snapshots_checked = snapshots.len() as u64;
    } else {
        report.snapshots_checked = snapshots.len() as u64;
    }

    for snap in snapshots.iter().filter(|s| !s.skipped.is_empty()) {
        report.notes.push(format!(
            "snapshot {} of {} is incomplete: {} ref(s) of the source were not backed up ({})",
            snap.short_id(),
            snap.repo,
            snap.skipped.len(),
            snap.skipped
                .iter()
                .take(3)
                .map(|s| format!("{}: {}", s.display_name(), s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for snap in snapshots
        .iter()
        .filter(|s| !s.complete && !s.missing.is_empty())
    {
        report.notes.push(format!(
            "snapshot {} of {} is incomplete: the source lacked {} object(s) when it was taken ({})",
            snap.short_id(),
            snap.repo,
            snap.missing.len(),
            snap.missing.iter().take(3).map(|o| o.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }

    report.problems.dedup();
    let mut seen_snaps = HashSet::new();
    report
        .affected
        .retain(|a| seen_snaps.insert(a.snapshot.clone()));
    report.seconds = start.elapsed().as_secs_f64();
    if report.seconds > 0.0 {
        report.mb_per_second = report.bytes_read as f64 / 1e6 / report.seconds;
        report.objects_per_second = report.objects_checked as f64 / report.seconds;
    }
    Ok(report)
}

/// Reports what the store's files have that the index lacks, and the reverse.
fn compare_files(
    files: &crate::store::lag::FileState,
    snapshots: &[Snapshot],
    report: &mut VerifyReport,
) {
    let fix = "run `repovault repair-index` to rebuild it from the packs and snapshot files (sync, forget and prune do that first)";
    if !files.missing_packs.is_empty() && !files.unknown_packs.is_empty() {
        report.problems.push(problem(
            "index",
            format!(
                "the index names {} pack(s) that are gone while {} pack(s) it does not know are there: it is older than the packs (put back from a backup, or a prune ran since); {fix}",
                files.missing_packs.len(),
                files.unknown_packs.len()
            ),
        ));
    }
    for name in &files.unknown_packs {
        report.notes.push(format!(
            "pack {name} is not in the index (left by an interrupted writer or prune, or the index is older than it): prune removes it when no snapshot file needs it; repair-index indexes what of it is intact"
        ));
    }
    for u in &files.unknown_snapshots {
        let s = &u.snapshot;
        let mut p = problem("snapshot", String::new());
        p.detail = if u.unindexed_tips.is_empty() {
            format!(
                "snapshot file {}.json of {} (taken {}) is not in the index, which holds the objects its refs point to (a sync was interrupted after writing the file): the next sync, forget or prune records it, or {fix}",
                s.id, s.repo, s.time
            )
        } else {
            p.object = Some(u.unindexed_tips[0].to_string());
            format!(
                "snapshot file {}.json of {} (taken {}) is not in the index, which lacks {} of the objects its refs point to: the index is older than the store's files; {fix}",
                s.id,
                s.repo,
                s.time,
                u.unindexed_tips.len()
            )
        };
        report.problems.push(p);
        report.affected.push(Affected {
            repo: s.repo.clone(),
            snapshot: s.id.clone(),
            reason: "its file is not in the index (restore cannot find it until repair-index)"
                .into(),
        });
    }
    for (file, reason) in &files.unreadable_snapshots {
        report.problems.push(problem(
            "snapshot",
            format!("snapshot file {file} cannot be read ({reason}): repair-index cannot use it either; put it back from a backup, or move it away to drop that snapshot"),
        ));
    }
    for id in &files.missing_snapshot_files {
        let repo = snapshots
            .iter()
            .find(|s| &s.id == id)
            .map_or("?", |s| s.repo.as_str());
        let p = problem(
            "snapshot",
            format!(
                "snapshot {} of {repo} is in the index but its file snapshots/{id}.json is missing (deleted?): repair-index would lose it; {}",
                &id[..8.min(id.len())],
                if files.missing_packs.is_empty() {
                    "the next sync, forget or prune writes it back from the index"
                } else {
                    "put the file back from a backup (packs are missing too, so it is not written back)"
                }
            ),
        );
        report.problems.push(p);
    }
}

/// Walks a snapshot's closure. Returns the first damaged object it needs (as
/// a reason) and the objects it needs that are not stored. `closed` (when
/// given) holds objects whose closure was already walked, to skip them.
fn walk(
    store: &Store,
    snap: &Snapshot,
    damaged: &HashMap<ObjectId, String>,
    closed: Option<&mut HashSet<ObjectId>>,
    interrupt: &AtomicBool,
) -> Result<(Option<String>, Vec<ObjectId>), Error> {
    use closure::{Damage, Event, Flow};
    let mut missing = Vec::new();
    let mut first_bad: Option<String> = None;
    let mut visit = closure::Visited::new(closed.as_deref());
    let source = closure::StoreSource::new(store);
    let end = closure::walk_snapshot(snap, &source, &mut visit, interrupt, |e| {
        let known = |oid: &ObjectId| damaged.get(oid).cloned();
        let (bad, flow) = match e {
            Event::Found { oid, .. } => match known(&oid) {
                Some(reason) => (Some(reason), Flow::Skip),
                None => (None, Flow::Continue),
            },
            Event::Missing { oid, listed } => {
                if !listed {
                    missing.push(oid);
                }
                (known(&oid), Flow::Continue)
            }
            Event::Damaged { oid, damage } => (
                Some(match (known(&oid), damage) {
                    (Some(reason), _) => reason,
                    (None, Damage::Lookup(e)) => e.to_string(),
                    (None, Damage::Read(e)) => format!("object {oid}: {e}"),
                    (None, Damage::Parse(e)) => format!("object {oid}: {e}"),
                }),
                Flow::Continue,
            ),
        };
        if let Some(reason) = bad {
            first_bad.get_or_insert(reason);
        }
        Ok::<_, Error>(flow)
    })?;
    if end == closure::End::Interrupted {
        return Err(Error::Interrupted);
    }
    let seen = visit.seen;
    if let Some(c) = closed {
        if missing.is_empty() && first_bad.is_none() {
            c.extend(seen);
        }
    }
    Ok((first_bad, missing))
}

struct PackResult {
    bytes: u64,
    chunks: u64,
    objects: u64,
    problems: Vec<Problem>,
    bad_chunks: Vec<i64>,
    bad_objects: Vec<(ObjectId, String)>,
}

/// Reads one pack sequentially and checks everything in it.
fn read_pack(
    store: &Store,
    e: &index::PackExtent,
    dir: &std::path::Path,
    users: &HashMap<i64, Vec<(i64, ObjectId, crate::ObjectKind)>>,
) -> Result<PackResult, Error> {
    let path = pack::pack_path(dir, &e.pack.name);
    let mut r = PackResult {
        bytes: 0,
        chunks: 0,
        objects: 0,
        problems: Vec::new(),
        bad_chunks: Vec::new(),
        bad_objects: Vec::new(),
    };
    let rows = store.with_index(|i| i.chunks_in_pack(e.pack.rowid))?;
    let pack_problem = |detail: String, offset: Option<u64>, chunk: Option<&ChunkId>| Problem {
        kind: if chunk.is_some() { "chunk" } else { "pack" }.into(),
        pack: Some(e.pack.name.clone()),
        offset,
        chunk: chunk.map(|c| c.to_hex()),
        object: None,
        detail,
    };
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(err) => {
            r.problems
                .push(pack_problem(format!("cannot be read: {err}"), None, None));
            r.bad_chunks.extend(rows.iter().map(|c| c.rowid));
            return Ok(r);
        }
    };
    r.bytes = buf.len() as u64;
    if buf.len() < 32 || blake3::hash(&buf[..buf.len() - 32]).as_bytes() != &buf[buf.len() - 32..] {
        r.problems.push(pack_problem(
            "checksum mismatch: the file was changed after it was written".into(),
            None,
            None,
        ));
    }
    // The trailer must agree with the index.
    match pack::read_contents(&path) {
        Ok(contents) => {
            let by_offset: HashMap<u64, &pack::EntryRecord> =
                contents.entries.iter().map(|x| (x.offset, x)).collect();
            for c in &rows {
                match by_offset.get(&c.offset) {
                    Some(t) if t.id == c.id && t.stored_len == c.stored_len => {}
                    _ => r.problems.push(pack_problem(
                        "the pack's trailer does not list this chunk where the index places it"
                            .into(),
                        Some(c.offset),
                        Some(&c.id),
                    )),
                }
            }
        }
        Err(err) => r.problems.push(pack_problem(
            format!("trailer unreadable: {err}"),
            None,
            None,
        )),
    }
    let users: &[(i64, ObjectId, crate::ObjectKind)] =
        users.get(&e.pack.rowid).map_or(&[], |v| &v[..]);
    // Chunks are decoded and checked in parallel; a delta whose base was not
    // decoded yet decodes it through the store (and its cache).
    struct ChunkOutcome {
        objects: u64,
        problems: Vec<Problem>,
        bad_chunk: Option<i64>,
        bad_objects: Vec<(ObjectId, String)>,
    }
    let outcomes: Vec<ChunkOutcome> = rows
        .par_iter()
        .map(|c| {
            let mut out = ChunkOutcome {
                objects: 0,
                problems: Vec::new(),
                bad_chunk: None,
                bad_objects: Vec::new(),
            };
            let end = c.offset as usize + c.stored_len as usize;
            let result = (|| -> Result<Vec<u8>, String> {
                let stored = buf
                    .get(c.offset as usize..end)
                    .ok_or("beyond the end of the file")?;
                let base = match c.base {
                    Some(b) => Some(
                        store
                            .chunk_plain(b)
                            .map_err(|e| format!("its delta base cannot be read: {e}"))?,
                    ),
                    None => None,
                };
                let plain = codec::decode(stored, c.raw_len, base.as_deref().map(|b| &b[..]))?;
                codec::check(&plain, &c.id, c.raw_len)?;
                Ok(plain)
            })();
            match result {
                Ok(plain) => {
                    let first = users.partition_point(|u| u.0 < c.rowid);
                    for &(_, oid, kind) in users[first..].iter().take_while(|u| u.0 == c.rowid) {
                        out.objects += 1;
                        let actual = git_oid(kind, &plain);
                        if actual != oid {
                            let mut p = pack_problem(
                                format!("object hashes to {actual}"),
                                Some(c.offset),
                                Some(&c.id),
                            );
                            p.kind = "object".into();
                            p.object = Some(oid.to_string());
                            out.problems.push(p);
                            out.bad_objects
                                .push((oid, format!("object {oid} hashes to {actual}")));
                        }
                    }
                    if plain.len() < (4 << 20) && (c.depth < 40 || kind_is_meta(e)) {
                        store.cache_chunk(c.rowid, Arc::new(plain));
                    }
                }
                Err(detail) => {
                    out.problems
                        .push(pack_problem(detail, Some(c.offset), Some(&c.id)));
                    out.bad_chunk = Some(c.rowid);
                }
            }
            out
        })
        .collect();
    for o in outcomes {
        r.chunks += 1;
        r.objects += o.objects;
        r.problems.extend(o.problems);
        r.bad_chunks.extend(o.bad_chunk);
        r.bad_objects.extend(o.bad_objects);
    }
    Ok(r)
}

fn kind_is_meta(e: &index::PackExtent) -> bool {
    e.pack.kind == pack::PackKind::Tree
}
