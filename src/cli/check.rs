//! `verify` and `repair-index`: the store's integrity checked, or its index
//! rebuilt, and the report shown as text or JSON.

use super::args::{JsonArg, VerifyArgs};
use super::exit;
use super::output::{self, human_bytes, Report};
use super::repos::resolve_repo;
use super::{repair_losses, store_path};
use anyhow::Result;
use repovault::snapshot::short_id;
use repovault::store::{self, Store};
use repovault::verify::VerifyReport;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub(crate) fn cmd_verify(
    store: &Option<PathBuf>,
    a: VerifyArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    let watch = super::monitoring::Watch::begin(a.metrics_textfile.clone(), None);
    let read_data = a.read_data || a.read_data_subset.is_some();
    let mut problems = None;
    let result = verify_run(store, a, interrupt, &mut problems);
    let code = match &result {
        Ok(c) => *c,
        Err(e) => super::exit_code_of(e, interrupt.load(std::sync::atomic::Ordering::SeqCst)),
    };
    watch.finish_verify(code, read_data, problems);
    result
}

/// `verify`, counting the problems it found into `problems`.
fn verify_run(
    store: &Option<PathBuf>,
    a: VerifyArgs,
    interrupt: &AtomicBool,
    problems: &mut Option<usize>,
) -> Result<u8> {
    use repovault::verify::{self, Subset, VerifyOptions};
    let subset = a
        .read_data_subset
        .as_deref()
        .map(str::parse::<Subset>)
        .transpose()?;
    let opts = VerifyOptions {
        read_data: a.read_data || subset.is_some(),
        subset,
    };
    let path = store_path(store)?;
    let s = match Store::open(&path) {
        Ok(s) => s,
        Err(store::Error::Index(e)) => {
            // A lost or unreadable index is damage to report, not a usage error.
            let report = index_damage(opts, format!("{e}; every snapshot is unrestorable until `repovault repair-index` rebuilds it"));
            *problems = Some(report.problems.len());
            print_verify(&report, a.json)?;
            return Ok(exit::DAMAGED);
        }
        Err(e) => return Err(e.into()),
    };
    // Quick mode takes moments: only reading data draws a bar.
    let progress = crate::ui::Task::single("verify".into(), a.json || !opts.read_data);
    // With --repo, the repository's closure is walked first: a damaged index
    // found there is damage too, as below.
    let scope = match &a.repo {
        Some(name) => Some(verify::Scope::of_repo(&s, &resolve_repo(&s, name)?.name)),
        None => None,
    };
    let run = scope
        .transpose()
        .and_then(|scope| verify::verify_scoped(&s, opts, scope.as_ref(), &progress, interrupt));
    let report = match run {
        Ok(r) => r,
        Err(verify::Error::Index(e)) => {
            // SQLite failing while reading the index is damage to report as well.
            let detail = if e.is_damage() {
                e.to_string()
            } else {
                format!("{e}; run `repovault repair-index` to rebuild it from the packs")
            };
            let report = index_damage(opts, detail);
            *problems = Some(report.problems.len());
            progress.finish();
            print_verify(&report, a.json)?;
            return Ok(exit::DAMAGED);
        }
        Err(e) => return Err(e.into()),
    };
    progress.finish();
    *problems = Some(report.problems.len());
    print_verify(&report, a.json)?;
    Ok(if report.is_clean() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

/// A verify report holding one problem: the index itself.
pub(crate) fn index_damage(
    opts: repovault::verify::VerifyOptions,
    detail: String,
) -> repovault::verify::VerifyReport {
    repovault::verify::VerifyReport {
        mode: if opts.read_data { "read-data" } else { "quick" }.into(),
        problems: vec![repovault::verify::Problem {
            kind: "index".into(),
            pack: None,
            offset: None,
            chunk: None,
            object: None,
            detail,
        }],
        ..Default::default()
    }
}

/// What `verify` shows: the report, and whether the store is clean.
#[derive(serde::Serialize)]
pub(crate) struct VerifyDoc<'a> {
    #[serde(flatten)]
    report: &'a VerifyReport,
    clean: bool,
}

pub(crate) fn print_verify(r: &VerifyReport, json: bool) -> Result<()> {
    if !json && crate::ui::quiet() && r.is_clean() {
        return Ok(());
    }
    output::show(
        &VerifyDoc {
            report: r,
            clean: r.is_clean(),
        },
        json,
    )
}

impl Report for VerifyDoc<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = self.report;
        writeln!(
            out,
            "verify ({}): {} packs, {} chunks, {} objects, {} snapshots checked; {} read in {:.1}s ({:.1} MB/s, {:.0} objects/s)",
            r.mode,
            r.packs_checked,
            r.chunks_checked,
            r.objects_checked,
            r.snapshots_checked,
            human_bytes(r.bytes_read),
            r.seconds,
            r.mb_per_second,
            r.objects_per_second
        )?;
        for p in &r.problems {
            writeln!(out, "DAMAGE: {p}")?;
        }
        for a in &r.affected {
            writeln!(
                out,
                "UNRESTORABLE: snapshot {} of {}: {}",
                short_id(&a.snapshot),
                a.repo,
                a.reason
            )?;
        }
        for n in &r.notes {
            writeln!(out, "note: {n}")?;
        }
        if self.clean {
            writeln!(out, "no damage found")
        } else {
            writeln!(
                out,
                "{} problem(s); {} snapshot(s) affected",
                r.problems.len(),
                r.affected.len()
            )
        }
    }
}

pub(crate) fn cmd_repair(store: &Option<PathBuf>, a: JsonArg) -> Result<u8> {
    let path = store_path(store)?;
    let r = repovault::repair::repair_index(&path, Duration::from_secs(60))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !crate::ui::quiet() {
        if let Some(old) = &r.old_index {
            println!("the old index was kept as {}", old.display());
        }
        println!(
            "rebuilt the index: {} packs, {} chunks, {} objects, {} snapshots",
            r.packs, r.chunks, r.objects, r.snapshots
        );
        for line in repair_losses(&r) {
            println!("{line}");
        }
    }
    Ok(if r.lost_something() {
        exit::PARTIAL
    } else {
        exit::OK
    })
}
