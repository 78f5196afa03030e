//! A run of many syncs: the sources of one `sync` command (or of a config's
//! nightly run, see [`super::nightly`]) synced on a few threads under one
//! store writer, each failure worth retrying retried once when asked, and
//! the run's typed summary ([`SyncSummary`]); also `sync --dry-run` ([`plan_all`], [`DryRun`]).
//!
//! Nothing here prints: failures are logged with `tracing` (unless the
//! caller shows a summary naming them) and everything else is in the returned
//! reports, which the CLI renders as text or JSON.

use super::{plan, sync_repo, Error as SyncError, RepoReport, Source, Status, SyncOptions};
use crate::progress::Progress;
use crate::store::{self, Store, WriteStats, Writer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors of a run as a whole (a single repository's failure is in its report).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed (committing the run's writes, or taking its writer).
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The index failed (reading the known repositories, registering a listing).
    #[error(transparent)]
    Index(#[from] crate::index::Error),
    /// Naming or planning a source failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Repositories synced at once (clamped to 1..=64 and to the number of sources).
    pub jobs: usize,
    /// Retry a failed repository once.
    pub retry: bool,
    /// Log each failure on stderr as it happens (off when a summary naming
    /// every failure is shown at the end, so each is printed once).
    pub log_failures: bool,
}

/// The progress of a run: one [`Progress`] per repository.
pub trait RunProgress: Sync {
    /// The run begins, over `repos` repositories.
    fn begin(&self, repos: usize) {
        let _ = repos;
    }

    /// The progress of repository `index` (0-based) of `total`, named `name`;
    /// dropped when that repository is done.
    fn repo(&self, index: usize, total: usize, name: &str) -> Box<dyn Progress + '_>;

    /// One more repository is done (after its progress was dropped).
    fn repo_done(&self) {}
}

/// Shows nothing.
impl RunProgress for crate::progress::NoProgress {
    fn repo(&self, _: usize, _: usize, _: &str) -> Box<dyn Progress + '_> {
        Box::new(crate::progress::NoProgress)
    }
}

/// Passes progress on and adds up what a repository's sync wrote over all
/// its attempts (reported also when it failed or was interrupted).
struct Counting<'a> {
    inner: &'a dyn Progress,
    written: Mutex<WriteStats>,
}

impl Progress for Counting<'_> {
    fn begin(&self, what: &str, total: Option<u64>) {
        self.inner.begin(what, total);
    }

    fn update(&self, done: u64, bytes: u64) {
        self.inner.update(done, bytes);
    }

    fn written(&self, s: &WriteStats) {
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        w.objects += s.objects;
        w.chunks += s.chunks;
        w.delta_chunks += s.delta_chunks;
        w.raw_bytes += s.raw_bytes;
        w.stored_bytes += s.stored_bytes;
        w.packs += s.packs;
        w.pack_bytes += s.pack_bytes;
        drop(w);
        self.inner.written(s);
    }
}

/// An error message on one line: its lines trimmed and joined with `; `.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The report of a repository that failed with `msg` after `millis`.
pub fn failed_report(src: &Source, millis: u64, msg: String) -> RepoReport {
    RepoReport {
        millis,
        error: Some(msg),
        ..RepoReport::new(src, Status::Failed)
    }
}

/// Syncs `sources` on `run.jobs` threads; a failed repository is retried once
/// when `run.retry` and the failure is worth retrying. Reports come back in
/// the order of `sources`; sources not started because of an interrupt have
/// none.
pub fn run_jobs(
    store: &Store,
    writer: &Mutex<Writer<'_>>,
    sources: &[Source],
    opts: &SyncOptions,
    run: RunOptions,
    interrupt: &AtomicBool,
    progress: &dyn RunProgress,
) -> Vec<RepoReport> {
    progress.begin(sources.len());
    let queue = Mutex::new(sources.iter().enumerate().collect::<Vec<_>>().into_iter());
    let reports: Mutex<Vec<(usize, RepoReport)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..run.jobs.clamp(1, 64).min(sources.len().max(1)) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((i, src)) = next else { break };
                if interrupt.load(Ordering::SeqCst) {
                    break;
                }
                let report = {
                    let shown = progress.repo(i, sources.len(), &src.name);
                    let counting = Counting {
                        inner: shown.as_ref(),
                        written: Mutex::new(WriteStats::default()),
                    };
                    sync_with_retry(store, writer, src, opts, run, interrupt, &counting)
                };
                progress.repo_done();
                reports
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, report));
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

/// One repository of [`run_jobs`], retried once when `run.retry` and the
/// failure is worth retrying ([`SyncError::is_retryable`]: a
/// transient network failure, not rejected credentials).
fn sync_with_retry(
    store: &Store,
    writer: &Mutex<Writer<'_>>,
    src: &Source,
    opts: &SyncOptions,
    run: RunOptions,
    interrupt: &AtomicBool,
    progress: &Counting<'_>,
) -> RepoReport {
    let t = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match sync_repo(store, writer, src, opts, interrupt, progress) {
            Ok(r) => return r,
            Err(e) => e,
        };
        let millis = t.elapsed().as_millis() as u64;
        let written = *progress.written.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(e, SyncError::Interrupted) || interrupt.load(Ordering::SeqCst) {
            return with_written(
                RepoReport {
                    millis,
                    error: Some("interrupted".into()),
                    ..RepoReport::new(src, Status::Interrupted)
                },
                &written,
            );
        }
        let msg = one_line(&format!("{e}"));
        let again = run.retry && attempt == 1 && e.is_retryable();
        if again {
            tracing::warn!(repo = %src.name, "{msg}; retrying once");
            continue;
        }
        if run.log_failures {
            tracing::error!(repo = %src.name, "{msg}");
        }
        super::record_failure(writer, src, &msg);
        let mut r = failed_report(src, millis, msg);
        if let SyncError::MissingObjects { objects, refs } = &e {
            r.missing_objects = objects.iter().map(|o| o.to_string()).collect();
            r.missing_needed_by = refs.clone();
        }
        return with_written(r, &written);
    }
}

/// A failed or interrupted repository's report, counting what it wrote to the store.
fn with_written(mut r: RepoReport, w: &WriteStats) -> RepoReport {
    r.new_objects = w.objects;
    r.new_chunks = w.chunks;
    r.new_bytes_stored = w.stored_bytes;
    r.new_pack_bytes = w.pack_bytes;
    r
}

/// Syncs `sources` under `writer` and commits it: the run of a plain `sync
/// SOURCE...` (no retry).
pub fn sync_all(
    store: &Store,
    writer: Writer<'_>,
    sources: &[Source],
    opts: &SyncOptions,
    run: RunOptions,
    interrupt: &AtomicBool,
    progress: &dyn RunProgress,
) -> Result<SyncSummary, Error> {
    let start = Instant::now();
    let before = store.bytes_on_disk()?;
    let writer = Mutex::new(writer);
    let reports = run_jobs(store, &writer, sources, opts, run, interrupt, progress);
    commit_run(store, before, writer, reports, None, sources.len(), start)
}

/// Commits the run's writer (poisoned or not: what the finished jobs wrote
/// is kept), then sums up the run of `planned` repositories begun at
/// `started`, when the store held `before` bytes.
pub(super) fn commit_run(
    store: &Store,
    before: u64,
    writer: Mutex<Writer<'_>>,
    reports: Vec<RepoReport>,
    discovery: Option<super::nightly::DiscoverySummary>,
    planned: usize,
    started: Instant,
) -> Result<SyncSummary, Error> {
    writer
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .commit()?;
    let mut summary = SyncSummary::new(reports, discovery, planned, started.elapsed());
    let after = store.bytes_on_disk()?;
    summary.totals.store_bytes = after;
    summary.totals.new_store_bytes = after.saturating_sub(before);
    Ok(summary)
}

/// Sources already in the store under a name from before ports were part of
/// names keep that name (see [`super::existing_name`]).
pub fn keep_existing_names(store: &Store, sources: &mut [Source]) -> Result<(), Error> {
    let known = store.with_index(|i| i.repos())?;
    for src in sources {
        if let Some(n) = super::existing_name(&known, src)? {
            src.name = n;
        }
    }
    Ok(())
}

/// The summary of a run, as `sync --json` and `--report` write it.
#[derive(Debug, serde::Serialize)]
pub struct SyncSummary {
    /// One report per repository, in the order of the sources (refused ones last).
    pub repos: Vec<RepoReport>,
    /// What a config run discovered (`null` for `sync SOURCE...`).
    pub discovery: Option<super::nightly::DiscoverySummary>,
    /// The counts.
    pub totals: SyncTotals,
    /// Repositories whose last successful backup is older than `stale_after`
    /// (or never happened after a failed attempt): set by the caller, which
    /// knows `stale_after` ([`crate::monitor::stale`]).
    pub stale: Vec<crate::monitor::Stale>,
    /// Repositories the run meant to sync (some may have no report: interrupted).
    #[serde(skip)]
    pub planned: usize,
}

/// The counts of a [`SyncSummary`].
#[derive(Debug, serde::Serialize)]
pub struct SyncTotals {
    /// Repositories reported.
    pub repos: usize,
    /// New or changed.
    pub synced: usize,
    /// First snapshots.
    pub new: usize,
    /// New snapshots.
    pub changed: usize,
    /// Nothing fetched, the last snapshot confirmed.
    pub unchanged: usize,
    /// Failed.
    pub failed: usize,
    /// Interrupted.
    pub interrupted: usize,
    /// Objects added to the store.
    pub new_objects: u64,
    /// Stored bytes of the chunks added.
    pub new_bytes_stored: u64,
    /// Bytes of the pack files written.
    pub new_pack_bytes: u64,
    /// What the store grew by on disk in this run: packs, index, snapshot
    /// files (every file of the store, measured before and after the run).
    pub new_store_bytes: u64,
    /// The store's size on disk after the run.
    pub store_bytes: u64,
    /// Wall time of the run.
    pub millis: u64,
}

impl SyncSummary {
    /// The summary of `reports` (of `planned` repositories) after `elapsed`.
    pub fn new(
        repos: Vec<RepoReport>,
        discovery: Option<super::nightly::DiscoverySummary>,
        planned: usize,
        elapsed: Duration,
    ) -> Self {
        let count = |s: Status| repos.iter().filter(|r| r.status == s).count();
        let totals = SyncTotals {
            repos: repos.len(),
            synced: count(Status::New) + count(Status::Changed),
            new: count(Status::New),
            changed: count(Status::Changed),
            unchanged: count(Status::Unchanged),
            failed: count(Status::Failed),
            interrupted: count(Status::Interrupted),
            new_objects: repos.iter().map(|r| r.new_objects).sum(),
            new_bytes_stored: repos.iter().map(|r| r.new_bytes_stored).sum(),
            new_pack_bytes: repos.iter().map(|r| r.new_pack_bytes).sum(),
            new_store_bytes: 0,
            store_bytes: 0,
            millis: elapsed.as_millis() as u64,
        };
        Self {
            repos,
            discovery,
            totals,
            stale: Vec::new(),
            planned,
        }
    }

    /// Repositories that failed, were interrupted, or were never started
    /// (interrupted), sources whose listing failed or was incomplete included.
    pub fn failed_or_skipped(&self) -> usize {
        self.repos
            .iter()
            .filter(|r| matches!(r.status, Status::Failed | Status::Interrupted))
            .count()
            + self.planned.saturating_sub(self.repos.len())
            + self.troubled_sources()
    }

    /// Everything the run was about (at least 1): the repositories planned and
    /// the sources whose listing failed or was incomplete.
    pub fn total(&self) -> usize {
        (self.planned + self.troubled_sources()).max(1)
    }

    /// Sources whose listing failed or was incomplete.
    pub fn troubled_sources(&self) -> usize {
        self.discovery
            .as_ref()
            .map_or(0, |d| d.sources_failed.len() + d.sources_incomplete.len())
    }

    /// Whether a repository left refs out of its snapshot.
    pub fn refs_skipped(&self) -> bool {
        self.repos.iter().any(|r| !r.skipped_refs.is_empty())
    }
}

/// What `sync --dry-run` found: each source's refs compared with its last snapshot.
#[derive(Debug, serde::Serialize)]
pub struct DryRun {
    /// Always `true` (the JSON says it was a dry run).
    pub dry_run: bool,
    /// One plan per source, in order (fewer when interrupted).
    pub repos: Vec<plan::Plan>,
    /// Config sources whose listing failed, `label: why`.
    pub sources_failed: Vec<String>,
    /// Listing warnings and refused repositories.
    pub warnings: Vec<String>,
    /// The counts.
    pub totals: DryRunTotals,
    /// Sources to plan (some may have no plan: interrupted).
    #[serde(skip)]
    pub planned: usize,
}

/// The counts of a [`DryRun`].
#[derive(Debug, serde::Serialize)]
pub struct DryRunTotals {
    /// Plans.
    pub repos: usize,
    /// Sources with no snapshot yet.
    pub new: usize,
    /// Sources whose refs changed.
    pub changed: usize,
    /// Sources whose refs equal the last snapshot's.
    pub unchanged: usize,
    /// Sources whose listing failed.
    pub failed: usize,
}

impl DryRun {
    /// Sources that failed (listing, or never planned because of an interrupt).
    pub fn failed(&self) -> usize {
        self.totals.failed
            + self.sources_failed.len()
            + self.planned.saturating_sub(self.repos.len())
    }

    /// Everything the dry run was about (at least 1).
    pub fn total(&self) -> usize {
        (self.planned + self.sources_failed.len()).max(1)
    }
}

/// `sync --dry-run`: plans every source (listing its refs, fetching and
/// writing nothing) until interrupted.
pub fn plan_all(
    store: &Store,
    sources: &[Source],
    sources_failed: Vec<String>,
    warnings: Vec<String>,
    interrupt: &AtomicBool,
) -> Result<DryRun, Error> {
    let mut plans = Vec::new();
    for src in sources {
        if interrupt.load(Ordering::SeqCst) {
            break;
        }
        plans.push(plan::plan(store, src)?);
    }
    let count = |st: &str| plans.iter().filter(|p| p.status == st).count();
    let totals = DryRunTotals {
        repos: plans.len(),
        new: count("new"),
        changed: count("changed"),
        unchanged: count("unchanged"),
        failed: count("failed"),
    };
    Ok(DryRun {
        dry_run: true,
        repos: plans,
        sources_failed,
        warnings,
        totals,
        planned: sources.len(),
    })
}
