//! `forget` (keep rules or ids) and `prune`, and their reports as text or JSON.

use super::args::ForgetArgs;
use super::exit;
use super::output::{self, human_bytes, Report};
use super::repos::resolve_repo;
use super::{catch_up_index, open_store, store_path, usage};
use anyhow::Result;
use repovault::prune::{self, PruneReport};
use repovault::snapshot::short_id;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub(crate) fn cmd_forget(
    store: &Option<PathBuf>,
    a: ForgetArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    use repovault::retention::Policy;
    let k = &a.keep;
    let mut policy = Policy {
        keep_last: k.keep_last,
        keep_hourly: k.keep_hourly,
        keep_daily: k.keep_daily,
        keep_weekly: k.keep_weekly,
        keep_monthly: k.keep_monthly,
        keep_yearly: k.keep_yearly,
        keep_within: k
            .keep_within
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
    };
    if policy.is_empty() {
        if let Some(path) = &a.config {
            let c = repovault::config::Config::load(path)?;
            policy = c.retention.unwrap_or_default();
        }
    }
    // Without a rule nothing is removed, whatever --allow-empty says: removing
    // snapshots on purpose is `forget SNAPSHOT-ID...`.
    if policy.is_empty() && a.snapshots.is_empty() {
        return Err(usage(prune::Error::EmptyPolicy));
    }
    if !a.dry_run {
        catch_up_index(&store_path(store)?)?;
    }
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    let decisions = if a.snapshots.is_empty() {
        prune::plan_forget(&snaps, &policy, a.allow_empty)
    } else {
        prune::plan_forget_ids(&snaps, &a.snapshots)?
    };
    let removed = decisions.iter().filter(|d| !d.keep).count();
    let mut prune_report = None;
    if !a.dry_run {
        let mut w = s.writer_for(Duration::from_secs(60), "forget")?;
        prune::apply_forget(&mut w, &decisions)?;
        if a.prune {
            let progress = crate::ui::Task::single("prune".into(), a.json);
            let r = prune::prune(&mut w, prune::PruneOptions::default(), interrupt, &progress);
            progress.finish();
            prune_report = Some(r?);
        }
    }
    if !a.json && crate::ui::quiet() {
        return Ok(exit::OK);
    }
    let doc = ForgetDoc {
        dry_run: a.dry_run,
        removed,
        snapshots: decisions,
        prune: prune_report,
        by_id: !a.snapshots.is_empty(),
    };
    output::show(&doc, a.json)?;
    Ok(exit::OK)
}

/// What `forget` shows: each snapshot's decision, and the prune after it.
#[derive(serde::Serialize)]
pub(crate) struct ForgetDoc {
    dry_run: bool,
    removed: usize,
    snapshots: Vec<prune::ForgetDecision>,
    prune: Option<PruneReport>,
    /// Snapshots were named by id (no keep rules: nothing "kept" to count).
    #[serde(skip)]
    by_id: bool,
}

impl Report for ForgetDoc {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut last_repo = "";
        for d in &self.snapshots {
            if d.repo != last_repo {
                writeln!(out, "{}:", d.repo)?;
                last_repo = &d.repo;
            }
            writeln!(
                out,
                "  {:<6} {}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                short_id(&d.snapshot),
                d.time.strftime("%Y-%m-%d %H:%M:%S"),
                d.reasons.join(", ")
            )?;
        }
        write!(
            out,
            "{} snapshots {}",
            self.removed,
            if self.dry_run {
                "would be removed"
            } else {
                "removed"
            }
        )?;
        if !self.by_id {
            write!(out, ", {} kept", self.snapshots.len() - self.removed)?;
        }
        writeln!(out)?;
        match &self.prune {
            Some(r) => r.human(out),
            None => Ok(()),
        }
    }
}

impl Report for PruneReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = self;
        writeln!(
            out,
            "prune{}: {} snapshots, {} live objects, {} unneeded objects; packs: {} before, {} deleted, {} repacked into {}, {} leftovers removed; {} copied; {} -> {}",
            if r.dry_run { " (dry run)" } else { "" },
            r.snapshots,
            r.live_objects,
            r.dead_objects,
            r.packs_before,
            r.packs_deleted,
            r.packs_repacked,
            r.packs_written,
            r.unindexed_packs_deleted,
            human_bytes(r.bytes_copied),
            human_bytes(r.bytes_before),
            human_bytes(r.bytes_after)
        )
    }
}

/// `prune`: first catches the index up (unless a dry run), then prunes under
/// the write lock.
pub(crate) fn cmd_prune(
    store: &Option<PathBuf>,
    a: super::args::PruneArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    let watch = super::monitoring::Watch::begin(a.metrics_textfile.clone(), None);
    let mut freed = None;
    let result = prune_run(store, a, interrupt, &mut freed);
    let code = match &result {
        Ok(c) => *c,
        Err(e) => super::exit_code_of(e, interrupt.load(std::sync::atomic::Ordering::SeqCst)),
    };
    watch.finish_prune(code, freed);
    result
}

/// `prune`, keeping what it freed (bytes, packs) in `freed`.
fn prune_run(
    store: &Option<PathBuf>,
    a: super::args::PruneArgs,
    interrupt: &AtomicBool,
    freed: &mut Option<(u64, u64)>,
) -> Result<u8> {
    if !a.dry_run {
        catch_up_index(&store_path(store)?)?;
    }
    let s = open_store(store)?;
    let mut w = s.writer_for(Duration::from_secs(60), "prune")?;
    let opts = repovault::prune::PruneOptions {
        repack_below: a.repack_below / 100.0,
        dry_run: a.dry_run,
    };
    let progress = crate::ui::Task::single("prune".into(), a.json);
    let r = repovault::prune::prune(&mut w, opts, interrupt, &progress);
    progress.finish();
    let r = r?;
    if !r.dry_run {
        *freed = Some((
            r.bytes_before.saturating_sub(r.bytes_after),
            r.packs_deleted + r.packs_repacked + r.unindexed_packs_deleted,
        ));
    }
    if a.json || !crate::ui::quiet() {
        output::show(&r, a.json)?;
    }
    Ok(exit::OK)
}
