//! `sync`: SOURCE arguments, `--config` (the nightly run) and `--dry-run`,
//! run by the library (`repovault::sync::run`, `repovault::sync::nightly`)
//! with bars drawn here; the typed summaries rendered as text or JSON, and
//! the run's exit code.

use super::args::SyncArgs;
use super::exit;
use super::monitoring::{now_micros, SyncDone, Watch};
use super::output::{self, human_bytes, Report};
use super::{create_private_dir, default_store, open_for_sync, open_store, usage};
use anyhow::{bail, Context, Result};
use repovault::monitor::DEFAULT_STALE_AFTER;
use repovault::secret::{Auth, Secret};
use repovault::snapshot::short_id;
use repovault::store::Store;
use repovault::sync::run::{RunOptions, RunProgress, SyncSummary};
use repovault::sync::{self, nightly, Source, Status, SyncOptions};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The bars of a run of syncs: one per repository, and a top bar counting
/// the repositories done when there are several.
#[derive(Default)]
pub(crate) struct SyncBars(std::sync::OnceLock<Option<crate::ui::Bars>>);

impl RunProgress for SyncBars {
    fn begin(&self, repos: usize) {
        let _ = self.0.set(crate::ui::Bars::new(repos));
    }

    fn repo(
        &self,
        index: usize,
        total: usize,
        name: &str,
    ) -> Box<dyn repovault::progress::Progress + '_> {
        Box::new(crate::ui::Task::new(
            self.0.get().and_then(Option::as_ref),
            format!("[{}/{}] {}", index + 1, total, name),
        ))
    }

    fn repo_done(&self) {
        if let Some(b) = self.0.get().and_then(Option::as_ref) {
            b.item_done();
        }
    }
}

/// How a run of `sync` goes: `jobs` at once; failures are logged as they
/// happen unless a summary naming them is printed at the end.
pub(crate) fn run_options(jobs: usize, json: bool) -> RunOptions {
    let summary_shown = !json && !crate::ui::quiet();
    RunOptions {
        jobs,
        retry: false,
        log_failures: !summary_shown,
    }
}

pub(crate) fn exit_for(total: usize, failed: usize, interrupted: bool) -> u8 {
    if interrupted {
        exit::INTERRUPTED
    } else if failed == 0 {
        exit::OK
    } else if failed >= total {
        exit::ERROR
    } else {
        exit::PARTIAL
    }
}

/// The exit code of a run: a run whose repositories all synced but left refs
/// out, or that found stale repositories, is partial (exit 3).
pub(crate) fn exit_of_run(s: &SyncSummary, interrupted: bool) -> u8 {
    let code = exit_for(s.total(), s.failed_or_skipped(), interrupted);
    if code == exit::OK && (s.refs_skipped() || !s.stale.is_empty()) {
        exit::PARTIAL
    } else {
        code
    }
}

/// The credentials of `--token-env VAR` (`None` without it); an empty
/// variable is refused unless `allow_empty` (a dry run sends nothing).
pub(crate) fn token_auth(a: &SyncArgs, allow_empty: bool) -> Result<Option<Auth>> {
    token_from_env(a.token_env.as_deref(), &a.token_user, allow_empty)
}

/// The credentials in environment variable `var` (`None` without one), sent
/// with user name `user`: `--token-env` of sync and `restore --push`.
pub(crate) fn token_from_env(
    var: Option<&str>,
    user: &str,
    allow_empty: bool,
) -> Result<Option<Auth>> {
    let Some(var) = var else {
        return Ok(None);
    };
    let token = std::env::var(var).map_err(|_| {
        anyhow::anyhow!("--token-env {var}: the environment variable {var} is not set")
    })?;
    if !allow_empty && token.trim().is_empty() {
        bail!("--token-env {var}: the environment variable {var} is empty");
    }
    Ok(Some(Auth {
        user: user.to_owned(),
        token: Secret::new(token.trim().to_owned()),
        bearer: false,
    }))
}

/// `--name` names one repository: refused with several SOURCEs.
pub(crate) fn check_name(a: &SyncArgs) -> Result<()> {
    if a.name.is_some() && a.sources.len() > 1 {
        return Err(usage(anyhow::anyhow!(
            "--name names one repository, but {} sources were given: sync them one by one",
            a.sources.len()
        )));
    }
    Ok(())
}

/// The SOURCE arguments as sources.
pub(crate) fn sources_of(a: &SyncArgs, auth: Option<Auth>) -> Result<Vec<Source>> {
    a.sources
        .iter()
        .map(|s| Source::parse(s, a.name.as_deref(), auth.clone()))
        .collect::<Result<_, _>>()
        .map_err(usage)
}

pub(crate) fn cmd_sync(
    store_arg: &Option<PathBuf>,
    a: SyncArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    if a.dry_run {
        return cmd_sync_dry_run(store_arg, &a, interrupt);
    }
    // The config first: it names the metrics file and the ping URL too (a
    // config that cannot be read still ends a watched run, with flags only).
    let config = a.config.as_deref().map(repovault::config::Config::load);
    let loaded = config.as_ref().and_then(|c| c.as_ref().ok());
    let watch = Watch::begin(
        a.metrics_textfile
            .clone()
            .or_else(|| loaded.and_then(|c| c.metrics_textfile.clone())),
        a.ping_url
            .as_deref()
            .or_else(|| loaded.and_then(|c| c.ping_url.as_deref())),
    );
    let mut done = SyncDone::default();
    let result = match (&a.config, config) {
        (Some(path), Some(Ok(config))) => {
            cmd_sync_config(store_arg, path, config, &a, interrupt, &mut done)
        }
        (_, Some(Err(e))) => Err(e.into()),
        _ => cmd_sync_sources(store_arg, &a, interrupt, &mut done),
    };
    let code = match &result {
        Ok(c) => *c,
        Err(e) => super::exit_code_of(e, interrupt.load(Ordering::SeqCst)),
    };
    watch.finish_sync(code, &done, result.as_ref().err());
    result
}

/// `sync SOURCE...`.
fn cmd_sync_sources(
    store_arg: &Option<PathBuf>,
    a: &SyncArgs,
    interrupt: &AtomicBool,
    done: &mut SyncDone,
) -> Result<u8> {
    if a.sources.is_empty() {
        bail!("nothing to sync: give SOURCE URLs or paths, or --config FILE");
    }
    check_name(a)?;
    let store = open_for_sync(store_arg, None)?;
    let auth = token_auth(a, false)?;
    let mut sources = sources_of(a, auth)?;
    if a.name.is_none() {
        sync::run::keep_existing_names(&store, &mut sources)?;
    }
    let cache = a
        .cache
        .clone()
        .unwrap_or_else(|| sync::default_cache(&store));
    create_private_dir(&cache)?;
    let opts = SyncOptions {
        cache,
        allow_incomplete: a.allow_incomplete,
    };
    let writer = store.writer_for(Duration::from_secs(a.lock_wait), "sync")?;
    let bars = SyncBars::default();
    let summary = sync::run::sync_all(
        &store,
        writer,
        &sources,
        &opts,
        run_options(a.jobs.unwrap_or(4), a.json),
        interrupt,
        &bars,
    );
    drop(bars);
    // Only the run's own repositories can be stale here: a plain sync of one
    // repository says nothing about the others of the store.
    conclude(
        &store,
        summary?,
        DEFAULT_STALE_AFTER,
        false,
        a,
        interrupt,
        done,
    )
}

/// A run's end: the stale repositories found (among the run's own, or every
/// repository of the store when `whole_store`), the summary shown, what the
/// metrics need kept in `done`; the run's exit code.
fn conclude(
    store: &Store,
    summary: SyncSummary,
    stale_after: Duration,
    whole_store: bool,
    a: &SyncArgs,
    interrupt: &AtomicBool,
    done: &mut SyncDone,
) -> Result<u8> {
    let mut rows = store.with_index(|i| i.repos())?;
    if !whole_store {
        let names: HashSet<&str> = summary.repos.iter().map(|r| r.name.as_str()).collect();
        rows.retain(|r| names.contains(r.name.as_str()));
    }
    let s = done.summary.insert(summary);
    s.stale = repovault::monitor::stale(&rows, now_micros(), stale_after);
    done.rows = rows;
    done.totals = store
        .with_index(|i| i.size())
        .ok()
        .map(
            |(pack_bytes, snapshots)| repovault::monitor::metrics::StoreSize {
                pack_bytes,
                snapshots,
            },
        );
    emit_summary(s, a.json, a.report.as_deref())?;
    Ok(exit_of_run(s, interrupt.load(Ordering::SeqCst)))
}

/// `sync --dry-run`: lists each source's refs and compares them with its last
/// snapshot. Opens the store read-only (never creates it), takes no lock,
/// creates no mirror, fetches and writes nothing.
pub(crate) fn cmd_sync_dry_run(
    store_arg: &Option<PathBuf>,
    a: &SyncArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    let (store, sources, sources_failed, warnings) = match &a.config {
        Some(path) => {
            let config = repovault::config::Config::load(path)?;
            let resolved = config.resolve(path)?;
            let store = match (store_arg, config.store.as_deref()) {
                (Some(p), _) => Store::open(p)?,
                (None, Some(p)) => Store::open(p)?,
                (None, None) => Store::open(&default_store()?)?,
            };
            let listed = nightly::discover_all(&resolved);
            let (sources, failed, warnings) = nightly::dry_run_sources(&store, listed)?;
            (store, sources, failed, warnings)
        }
        None => {
            check_name(a)?;
            let auth = token_auth(a, true)?;
            let mut sources = sources_of(a, auth)?;
            let store = open_store(store_arg)?;
            // Names from before ports were part of them, as a sync would use them.
            sync::run::keep_existing_names(&store, &mut sources)?;
            (store, sources, Vec::new(), Vec::new())
        }
    };
    let d = sync::run::plan_all(&store, &sources, sources_failed, warnings, interrupt)?;
    output::show(&d, a.json)?;
    Ok(exit_for(
        d.total(),
        d.failed(),
        interrupt.load(Ordering::SeqCst),
    ))
}

impl Report for sync::run::DryRun {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let d = self;
        for p in &d.repos {
            let last = p.last_snapshot.as_deref().map(short_id).unwrap_or("-");
            write!(
                out,
                "{:<9} {}  last snapshot {}  refs {}",
                p.status, p.name, last, p.refs
            )?;
            if p.status == "changed" {
                write!(
                    out,
                    "  ({} added, {} removed, {} moved)",
                    p.added.len(),
                    p.removed.len(),
                    p.moved.len()
                )?;
            }
            if let Some(e) = &p.error {
                write!(out, "  error: {e}")?;
            }
            writeln!(out)?;
            let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            for c in &p.added {
                writeln!(out, "  + {}  {}", c.name, show(&c.new))?;
            }
            for c in &p.removed {
                writeln!(out, "  - {}  {}", c.name, show(&c.old))?;
            }
            for c in &p.moved {
                writeln!(out, "  ~ {}  {} -> {}", c.name, show(&c.old), show(&c.new))?;
            }
        }
        for f in &d.sources_failed {
            writeln!(out, "error: source {f}")?;
        }
        for w in &d.warnings {
            writeln!(out, "warning: {w}")?;
        }
        let t = &d.totals;
        writeln!(
            out,
            "dry run: {} repositories: {} new, {} changed, {} unchanged, {} failed; nothing was fetched or written",
            t.repos, t.new, t.changed, t.unchanged, t.failed
        )?;
        Ok(())
    }
}

/// `sync --config FILE`: the nightly run.
fn cmd_sync_config(
    store_arg: &Option<PathBuf>,
    path: &Path,
    config: repovault::config::Config,
    a: &SyncArgs,
    interrupt: &AtomicBool,
    done: &mut SyncDone,
) -> Result<u8> {
    let resolved = config.resolve(path)?;
    let store = open_for_sync(store_arg, config.store.as_deref())?;
    let cache = a
        .cache
        .clone()
        .or(config.cache.clone())
        .unwrap_or_else(|| sync::default_cache(&store));
    create_private_dir(&cache)?;
    let opts = SyncOptions {
        cache,
        allow_incomplete: a.allow_incomplete,
    };
    let start = Instant::now();
    // Discovery first, without the store lock: a slow or stalled API must not
    // keep other writers out (each source has its own deadline).
    let listed = nightly::discover_all(&resolved);
    let writer = store.writer_for(Duration::from_secs(a.lock_wait), "sync")?;
    let bars = SyncBars::default();
    let jobs = a.jobs.or(config.jobs).unwrap_or(4);
    let summary = nightly::run_config(
        &store,
        writer,
        listed,
        resolved.len(),
        &opts,
        run_options(jobs, a.json),
        interrupt,
        &bars,
        start,
    );
    drop(bars);
    let code = conclude(
        &store,
        summary?,
        config.stale_after(),
        true,
        a,
        interrupt,
        done,
    )?;
    if let (false, Some(d)) = (
        a.json,
        done.summary.as_ref().and_then(|s| s.discovery.as_ref()),
    ) {
        for f in d.sources_failed.iter().chain(&d.sources_incomplete) {
            eprintln!("repovault: error: source {f}");
        }
    }
    Ok(code)
}

pub(crate) fn emit_summary(s: &SyncSummary, json: bool, report_file: Option<&Path>) -> Result<()> {
    if let Some(f) = report_file {
        repovault::durable::write_atomic(
            f,
            serde_json::to_string_pretty(s)?.as_bytes(),
            repovault::durable::USER,
        )
        .with_context(|| format!("cannot write --report {}", f.display()))?;
    }
    if !json && crate::ui::quiet() {
        // Failures were logged on stderr as they happened; success says nothing.
        return Ok(());
    }
    output::show(s, json)
}

impl Report for SyncSummary {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = self;
        for r in &s.repos {
            let snap = r.snapshot.as_deref().map(short_id).unwrap_or("-");
            write!(
                out,
                "{:<11} {}  snapshot {}  refs {}  objects +{}  packs +{}  {:.1}s",
                r.status.as_str(),
                r.name,
                snap,
                r.refs,
                r.new_objects,
                human_bytes(r.new_pack_bytes),
                r.millis as f64 / 1000.0
            )?;
            if r.incomplete {
                write!(out, "  (incomplete)")?;
            }
            match &r.error {
                Some(e) if r.status == Status::Failed => write!(out, "  error: {e}")?,
                _ => {}
            }
            writeln!(out)?;
            for sk in &r.skipped_refs {
                writeln!(
                    out,
                    "  ref not backed up: {}: {}",
                    sk.display_name(),
                    sk.reason
                )?;
            }
        }
        if let Some(d) = &s.discovery {
            writeln!(
                out,
                "discovery: {} sources ({} failed), {} repositories: {} new, {} renamed, {} deleted, {} disabled",
                d.sources,
                d.sources_failed.len(),
                d.discovered,
                d.new.len(),
                d.renamed.len(),
                d.deleted.len(),
                d.disabled.len()
            )?;
            for w in &d.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
        for st in &s.stale {
            let when = st
                .last_success
                .and_then(|t| jiff::Timestamp::from_microsecond(t).ok())
                .map(|t| {
                    format!(
                        "last successful backup {}",
                        t.strftime("%Y-%m-%d %H:%M:%S UTC")
                    )
                })
                .unwrap_or_else(|| "never backed up successfully".into());
            writeln!(out, "stale       {}  {when}", st.name)?;
        }
        let t = &s.totals;
        writeln!(
            out,
            "{} repositories: {} synced ({} new, {} changed), {} unchanged, {} failed, {} interrupted; +{} objects, +{} in packs, store +{} in {:.1}s",
            t.repos,
            t.synced,
            t.new,
            t.changed,
            t.unchanged,
            t.failed,
            t.interrupted,
            t.new_objects,
            human_bytes(t.new_pack_bytes),
            human_bytes(t.new_store_bytes),
            t.millis as f64 / 1000.0
        )?;
        Ok(())
    }
}
