//! The verbs over snapshots: `snapshots`, `diff`, `find` and `restore`, and
//! their reports as text or JSON.

use super::args::{DiffArgs, FindArgs, RestoreArgs, SnapshotsArgs};
use super::exit;
use super::output::{self, human_bytes, print_json, ref_target, utc_micros, Report};
use super::repos::resolve_repo;
use super::{open_store, usage, USER_UMASK};
use anyhow::Result;
use repovault::snapshot::short_id;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

pub(crate) fn cmd_restore(
    store: &Option<PathBuf>,
    a: RestoreArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    use repovault::restore::{self, Selector};
    let s = open_store(store)?;
    let repo = resolve_repo(&s, &a.repo)?;
    let sel = match (&a.snapshot, &a.at) {
        (Some(id), _) => Selector::Id(id.clone()),
        (None, Some(t)) => Selector::At(*t),
        (None, None) => Selector::Latest,
    };
    let snaps = s.with_index(|i| i.snapshots(Some(repo.id)))?;
    let snap = restore::select(&snaps, &repo.name, &sel)?;
    if a.list {
        if a.json {
            print_json(&snap)?;
            return Ok(exit::OK);
        }
        let mut out = output::stdout();
        writeln!(
            out,
            "# snapshot {} of {} taken {}",
            snap.short_id(),
            snap.repo,
            snap.time
        )?;
        for r in &snap.refs {
            match (&r.symref, r.target) {
                (Some(t), _) => writeln!(
                    out,
                    "{:<40} {} -> {}",
                    "",
                    r.name_lossy(),
                    String::from_utf8_lossy(t)
                )?,
                (None, Some(t)) => writeln!(out, "{t} {}", r.name_lossy())?,
                (None, None) => writeln!(out, "{:<40} {}", "(unborn)", r.name_lossy())?,
            }
        }
        return Ok(exit::OK);
    }
    if let Some(url) = &a.push {
        return super::push::cmd_push(&s, &snap, url, &a, interrupt);
    }
    let dest = a.dest.expect("clap requires DEST without --list or --push");
    let start = Instant::now();
    let opts = restore::RestoreOptions {
        force: a.force,
        partial: a.partial,
    };
    // The restored repository is the user's: it follows their umask (store
    // files the reader may create, the index's -wal/-shm and the readers lock,
    // get their modes from the store's own files or explicitly).
    if let Some(m) = USER_UMASK.get() {
        nix::sys::stat::umask(*m);
    }
    let progress = crate::ui::Task::single(
        format!("restore {} of {}", snap.short_id(), snap.repo),
        a.json,
    );
    let report = restore::restore_with_progress(&s, &snap, &dest, opts, interrupt, &progress);
    drop(progress);
    let report = report?;
    for sk in &snap.skipped {
        tracing::warn!(
            "snapshot {} is incomplete: ref {} of the source was not backed up ({})",
            snap.short_id(),
            sk.display_name(),
            sk.reason
        );
    }
    if a.json || !crate::ui::quiet() || !report.problems.is_empty() {
        let doc = RestoreDoc {
            report: &report,
            millis: start.elapsed().as_millis() as u64,
            refs_not_backed_up: &snap.skipped,
            seconds: start.elapsed().as_secs_f64(),
        };
        output::show(&doc, a.json)?;
    }
    Ok(if report.problems.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// What `restore` shows: the report, its time, and the refs the snapshot lacks.
#[derive(serde::Serialize)]
pub(crate) struct RestoreDoc<'a> {
    #[serde(flatten)]
    report: &'a repovault::restore::RestoreReport,
    millis: u64,
    refs_not_backed_up: &'a [repovault::snapshot::SkippedRef],
    #[serde(skip)]
    seconds: f64,
}

impl Report for RestoreDoc<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = self.report;
        writeln!(
            out,
            "restored {} ({} refs, {} objects, {} as deltas, pack {}) to {} in {:.1}s",
            short_id(&r.snapshot),
            r.refs,
            r.objects,
            r.deltas,
            human_bytes(r.pack_bytes),
            r.destination.display(),
            self.seconds
        )?;
        for p in &r.problems {
            writeln!(out, "missing or damaged: {p}")?;
        }
        for sk in &r.skipped_refs {
            writeln!(out, "ref not restored (its target is missing): {sk}")?;
        }
        Ok(())
    }
}

/// One snapshot as `snapshots --json` lists it (its refs only with `--refs`).
#[derive(serde::Serialize)]
pub(crate) struct SnapshotListing<'a> {
    id: &'a str,
    repo: &'a str,
    url: &'a str,
    time: jiff::Timestamp,
    checked_at: jiff::Timestamp,
    ref_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    refs: Option<&'a [repovault::snapshot::RefEntry]>,
    complete: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    skipped: &'a [repovault::snapshot::SkippedRef],
}

pub(crate) fn cmd_snapshots(store: &Option<PathBuf>, a: SnapshotsArgs) -> Result<u8> {
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let mut snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    if a.latest {
        // Oldest first: the last of each repository is its newest.
        let mut seen = std::collections::HashSet::new();
        snaps.reverse();
        snaps.retain(|sn| seen.insert(sn.repo.clone()));
        snaps.reverse();
    }
    let list = SnapshotList {
        snaps: &snaps,
        refs: a.refs,
    };
    output::show(&list, a.json)?;
    Ok(exit::OK)
}

/// The snapshots `snapshots` lists (each with its refs with `--refs`).
pub(crate) struct SnapshotList<'a> {
    snaps: &'a [repovault::snapshot::Snapshot],
    refs: bool,
}

impl serde::Serialize for SnapshotList<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.collect_seq(self.snaps.iter().map(|sn| SnapshotListing {
            id: &sn.id,
            repo: &sn.repo,
            url: &sn.url,
            time: sn.time,
            checked_at: sn.checked_at,
            ref_count: sn.refs.len(),
            refs: self.refs.then_some(&sn.refs[..]),
            complete: sn.complete,
            missing: sn.missing.iter().map(|o| o.to_string()).collect(),
            skipped: &sn.skipped,
        }))
    }
}

impl Report for SnapshotList<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<8}  {:<26}  {:<26}  {:>5}  repository",
            "id", "time (UTC)", "checked at (UTC)", "refs"
        )?;
        for sn in self.snaps {
            writeln!(
                out,
                "{:<8}  {:<26}  {:<26}  {:>5}  {}{}",
                sn.short_id(),
                utc_micros(sn.time),
                utc_micros(sn.checked_at),
                sn.refs.len(),
                sn.repo,
                match (sn.complete, sn.skipped.len()) {
                    (true, _) => String::new(),
                    (false, 0) => "  (incomplete)".into(),
                    (false, n) => format!("  (incomplete: {n} ref(s) not backed up)"),
                }
            )?;
            if self.refs {
                for r in &sn.refs {
                    writeln!(out, "          {}  {}", ref_target(r), r.name_lossy())?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn cmd_diff(store: &Option<PathBuf>, a: DiffArgs) -> Result<u8> {
    use repovault::diff;
    let s = open_store(store)?;
    let snaps = s.with_index(|i| i.snapshots(None))?;
    let pick = |id: &str| {
        diff::select_by_id(&snaps, id).map_err(|e| match e {
            diff::Error::BadId(_) => usage(e),
            e => e.into(),
        })
    };
    let (from, to) = (pick(&a.from)?, pick(&a.to)?);
    let d = diff::diff(&s, from, to, a.max_commits)?;
    output::show(&d, a.json)?;
    Ok(exit::OK)
}

/// A snapshot as diff and find show it: short id, time, repository.
fn snapshot_columns(sn: &repovault::diff::SnapshotRef) -> String {
    format!("{}  {}  {}", short_id(&sn.id), utc_micros(sn.time), sn.repo)
}

impl Report for repovault::diff::Diff {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let d = self;
        for (label, sn) in [("from", &d.from), ("to", &d.to)] {
            writeln!(out, "{label:<4} {}", snapshot_columns(sn))?;
        }
        let width = d
            .added
            .iter()
            .chain(&d.removed)
            .map(|r| r.name_lossy().len())
            .chain(d.moved.iter().map(|m| m.name_lossy().len()))
            .max()
            .unwrap_or(0);
        for r in &d.added {
            writeln!(
                out,
                "added    {:<width$}  {}",
                r.name_lossy(),
                ref_target(r)
            )?;
        }
        for r in &d.removed {
            writeln!(
                out,
                "removed  {:<width$}  {}",
                r.name_lossy(),
                ref_target(r)
            )?;
        }
        for m in &d.moved {
            writeln!(
                out,
                "moved    {:<width$}  {} => {}",
                m.name_lossy(),
                ref_target(&m.old),
                ref_target(&m.new)
            )?;
        }
        writeln!(
            out,
            "refs: {} added, {} removed, {} moved; commits: {} gained, {} lost",
            d.added.len(),
            d.removed.len(),
            d.moved.len(),
            d.commits.gained,
            d.commits.lost
        )?;
        if !d.missing.is_empty() {
            writeln!(
                out,
                "note: {} object(s) the walk met are not in the store (incomplete snapshots): the commit counts stop there",
                d.missing.len()
            )?;
        }
        Ok(())
    }
}

pub(crate) fn cmd_find(store: &Option<PathBuf>, a: FindArgs) -> Result<u8> {
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    let r = repovault::find::find(&s, &snaps, &a.query, a.max_commits).map_err(|e| match e {
        repovault::find::Error::Empty => usage(e),
        e => e.into(),
    })?;
    output::show(&r, a.json)?;
    Ok(exit::OK)
}

impl Report for repovault::find::FindReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = self;
        if !r.refs.is_empty() {
            writeln!(out, "ref {}:", r.query)?;
            for h in &r.refs {
                writeln!(
                    out,
                    "  {}  {}  {}",
                    snapshot_columns(&h.snapshot),
                    h.entry.name_lossy(),
                    ref_target(&h.entry)
                )?;
            }
        }
        if let Some(c) = r.commit {
            writeln!(out, "commit {c}:")?;
            for h in &r.commit_snapshots {
                let more = h.refs.len().saturating_sub(3);
                writeln!(
                    out,
                    "  {}  reachable from {}{}",
                    snapshot_columns(&h.snapshot),
                    h.refs
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )?;
            }
        }
        let held = r.refs.len() + r.commit_snapshots.len();
        if held == 0 {
            writeln!(
                out,
                "no ref named {q:?}{} in any of {} snapshot(s)",
                if r.commit.is_some() {
                    " and no ref reaching that commit"
                } else {
                    ""
                },
                r.snapshots_searched,
                q = r.query
            )?;
        } else {
            writeln!(out, "searched {} snapshot(s)", r.snapshots_searched)?;
        }
        if !r.missing.is_empty() {
            writeln!(
                out,
                "note: {} object(s) the walk met are not in the store (incomplete snapshots): history behind them was not searched",
                r.missing.len()
            )?;
        }
        Ok(())
    }
}
