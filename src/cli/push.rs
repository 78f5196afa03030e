//! `restore --push URL`: a snapshot pushed into a repository on a git host
//! (repovault::restore::push), and its report as text or JSON.

use super::args::RestoreArgs;
use super::exit;
use super::output::{self, human_bytes, Report};
use anyhow::{bail, Result};
use repovault::restore::push::{self, PushOptions, PushReport};
use repovault::snapshot::{short_id, Snapshot};
use repovault::store::Store;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Pushes `snap` to `url`; exit 3 when the host refused some refs.
pub(crate) fn cmd_push(
    s: &Store,
    snap: &Snapshot,
    url: &str,
    a: &RestoreArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    let auth = super::sync::token_from_env(a.token_env.as_deref(), &a.token_user, false)?;
    let lower = url.to_ascii_lowercase();
    if auth.is_some() && !(lower.starts_with("https://") || lower.starts_with("http://")) {
        bail!("--token-env is sent to http(s) targets only, and {url} is not one");
    }
    let opts = PushOptions {
        force: a.force,
        all_refs: a.all_refs,
        max_push_bytes: a.max_push_bytes.max(1),
        auth,
    };
    let start = Instant::now();
    let progress =
        crate::ui::Task::single(format!("push {} of {}", snap.short_id(), snap.repo), a.json);
    let report = push::push(s, snap, url, &opts, interrupt, &progress);
    drop(progress);
    let report = report?;
    let doc = PushDoc {
        report: &report,
        millis: start.elapsed().as_millis() as u64,
        seconds: start.elapsed().as_secs_f64(),
    };
    if a.json || !crate::ui::quiet() || !report.refused.is_empty() {
        output::show(&doc, a.json)?;
    }
    Ok(if report.refused.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// What `restore --push` shows.
#[derive(serde::Serialize)]
pub(crate) struct PushDoc<'a> {
    #[serde(flatten)]
    report: &'a PushReport,
    millis: u64,
    #[serde(skip)]
    seconds: f64,
}

impl Report for PushDoc<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = self.report;
        let bytes: u64 = r.steps.iter().map(|s| s.estimated_bytes).sum();
        writeln!(
            out,
            "pushed {} of {} to {}: {} refs in {} push(es), about {}{} in {:.1}s",
            short_id(&r.snapshot),
            r.repo,
            r.url,
            r.pushed.len(),
            r.steps.len(),
            human_bytes(bytes),
            if r.resumed {
                " (continuing an earlier push)"
            } else {
                ""
            },
            self.seconds
        )?;
        for o in &r.overwritten {
            writeln!(
                out,
                "overwritten: {} (was {}, now {})",
                o.name, o.old, o.new
            )?;
        }
        for k in &r.kept {
            writeln!(out, "kept (the snapshot lacks it): {k}")?;
        }
        for sk in &r.skipped {
            writeln!(out, "not pushed: {} ({})", sk.name, sk.reason)?;
        }
        for f in &r.refused {
            writeln!(out, "refused by the host: {} ({})", f.name, f.reason)?;
        }
        for s in r.steps.iter().filter(|s| s.over_limit) {
            writeln!(
                out,
                "over the push limit ({}): {} ({})",
                human_bytes(r.max_push_bytes),
                s.refspecs.join(" "),
                human_bytes(s.estimated_bytes)
            )?;
        }
        if let Some(h) = &r.head {
            writeln!(
                out,
                "HEAD of the snapshot: {h} (set the host's default branch to it)"
            )?;
        }
        Ok(())
    }
}
