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

use crate::closure;
use crate::index::{self, Finding};
use crate::pack;
use crate::progress::Progress;
use crate::snapshot::Snapshot;
use crate::store::Store;
use gix::ObjectId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod files;
mod read;

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

/// Verifies the store, reporting progress while it reads packs ("reading
/// packs": objects checked of the total, and the bytes read).
pub fn verify(
    store: &Store,
    opts: VerifyOptions,
    progress: &dyn Progress,
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
    progress: &dyn Progress,
    interrupt: &AtomicBool,
) -> Result<VerifyReport, Error> {
    let start = Instant::now();
    let mut run = Run {
        store,
        opts,
        scope,
        progress,
        interrupt,
        report: VerifyReport {
            mode: if opts.read_data { "read-data" } else { "quick" }.into(),
            ..Default::default()
        },
        damage: Damage::default(),
    };
    // One consistent view of the index for the whole run (and no per-query locking).
    let _read = store.read_session()?;
    run.check_database()?;
    let packs = run.check_pack_files()?;
    run.check_rows()?;
    let snapshots = run.check_files()?;
    if opts.read_data {
        run.read_packs(&packs)?;
    } else {
        run.report.chunks_checked = packs.extents.iter().map(|e| e.chunks).sum();
    }
    run.spread_damage()?;
    run.walk_snapshots(&snapshots)?;
    run.note_incomplete(&snapshots);
    Ok(run.finish(start))
}

/// One verification under way: what it checks, and what it found so far.
struct Run<'a> {
    store: &'a Store,
    opts: VerifyOptions,
    scope: Option<&'a Scope>,
    progress: &'a dyn Progress,
    interrupt: &'a AtomicBool,
    report: VerifyReport,
    damage: Damage,
}

/// The packs in scope (step 2), and those whose file is gone.
struct Packs {
    extents: Vec<index::PackExtent>,
    missing: HashSet<i64>,
}

impl Run<'_> {
    /// Step 1: The database itself.
    fn check_database(&mut self) -> Result<(), Error> {
        for complaint in self.store.with_index(|i| i.integrity_check())? {
            self.report.problems.push(problem(
                "index",
                format!("SQLite integrity check: {complaint}"),
            ));
        }
        Ok(())
    }

    /// Step 2: Packs named by the index exist and cover their chunks.
    fn check_pack_files(&mut self) -> Result<Packs, Error> {
        let (store, scope) = (self.store, self.scope);
        let report = &mut self.report;
        let damage = &mut self.damage;
        let pack_dir = store.packs_dir();
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
        Ok(Packs {
            extents,
            missing: bad_packs,
        })
    }

    /// Step 3: Rows resolve.
    fn check_rows(&mut self) -> Result<(), Error> {
        let (store, scope) = (self.store, self.scope);
        let report = &mut self.report;
        let damage = &mut self.damage;
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
                            snapshot.get(..8).unwrap_or(&snapshot)
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
        Ok(())
    }

    /// Step 6: Damaged chunks make the chunks built on them and the objects using them damaged.
    fn spread_damage(&mut self) -> Result<(), Error> {
        let (store, damage) = (self.store, &mut self.damage);
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
        Ok(())
    }

    /// Step 7: Snapshot closures: in read-data mode always; otherwise only to attribute damage.
    fn walk_snapshots(&mut self, snapshots: &[Snapshot]) -> Result<(), Error> {
        let store = self.store;
        let report = &mut self.report;
        let damage = &mut self.damage;
        let opts = self.opts;
        let walk_all = opts.read_data && opts.subset.is_none();
        if walk_all || !damage.objects.is_empty() {
            let already: HashSet<String> =
                report.affected.iter().map(|a| a.snapshot.clone()).collect();
            let mut closed: HashSet<ObjectId> = HashSet::new();
            self.progress.begin_counting(
                "walking snapshots",
                Some(snapshots.len() as u64),
                "snapshots",
            );
            for (done, snap) in snapshots.iter().enumerate() {
                self.progress.update(done as u64, 0);
                if self.interrupt.load(Ordering::Relaxed) {
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
                    self.interrupt,
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
                let reason = first_bad
                    .or_else(|| missing.first().map(|m| format!("object {m} is not stored")));
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
        Ok(())
    }

    /// Notes on snapshots that were taken incomplete.
    fn note_incomplete(&mut self, snapshots: &[Snapshot]) {
        let report = &mut self.report;
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
    }

    /// Deduplicates and times the report.
    fn finish(self, start: Instant) -> VerifyReport {
        let mut report = self.report;
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
        report
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
