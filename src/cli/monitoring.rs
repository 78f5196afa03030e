//! The monitoring of a run (issue 22): its health-check pings and its
//! Prometheus text file, for `sync`, `verify` and `prune`. A [`Watch`] is
//! begun before anything else (pinging `URL/start`) and finished with the
//! run's exit code whatever happened, failures included: the metrics file is
//! written (a failure to write it is logged, it does not change the exit
//! code) and the end is pinged (a failing ping is logged by the library and
//! never fails the run).

use super::output::Report;
use repovault::index::RepoRow;
use repovault::monitor::metrics::StoreSize;
use repovault::monitor::metrics::{self, Run, SyncCounts};
use repovault::monitor::ping::{Pinger, MAX_BODY};
use repovault::sync::run::SyncSummary;
use std::path::PathBuf;

/// Unix microseconds now.
pub(crate) fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// The monitoring of one run.
pub(crate) struct Watch {
    metrics: Option<PathBuf>,
    pinger: Option<Pinger>,
    started: i64,
}

/// What a sync run leaves for its metrics and its ping: the summary, and the
/// store's repositories (those the metrics name) and totals, when it got
/// that far.
#[derive(Default)]
pub(crate) struct SyncDone {
    pub(crate) summary: Option<SyncSummary>,
    pub(crate) rows: Vec<RepoRow>,
    pub(crate) totals: Option<StoreSize>,
}

impl Watch {
    /// Begins watching a run: pings `URL/start` when there is a ping URL.
    pub(crate) fn begin(metrics: Option<PathBuf>, ping_url: Option<&str>) -> Watch {
        let pinger = ping_url.and_then(|u| match Pinger::new(u) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("no pings: {e}");
                None
            }
        });
        if let Some(p) = &pinger {
            p.start();
        }
        Watch {
            metrics,
            pinger,
            started: now_micros(),
        }
    }

    /// The run of `what` ended with `code`; `text` makes its metrics from the
    /// run; `summary` is the ping's body.
    fn finish(
        &self,
        code: u8,
        success_name: &str,
        text: impl FnOnce(&Run) -> String,
        summary: &str,
    ) {
        if let Some(path) = &self.metrics {
            let run = Run::new(self.started, now_micros(), code, path, success_name);
            if let Err(e) = metrics::write(path, &text(&run)) {
                tracing::error!("{e}");
            }
        }
        if let Some(p) = &self.pinger {
            p.finish(code, summary);
        }
    }

    /// A sync ended with `code` (`err`: the error that ended it).
    pub(crate) fn finish_sync(&self, code: u8, done: &SyncDone, err: Option<&anyhow::Error>) {
        let counts = done.summary.as_ref().map(|s| SyncCounts {
            ok: s.totals.synced,
            unchanged: s.totals.unchanged,
            failed: s.totals.failed,
            interrupted: s.totals.interrupted + s.planned.saturating_sub(s.repos.len()),
            fetched_bytes: s.repos.iter().map(|r| r.bytes_received).sum(),
            stored_bytes: s.totals.new_store_bytes,
        });
        let stale = done.summary.as_ref().map_or(&[][..], |s| &s.stale[..]);
        let body = match (err, &done.summary) {
            (Some(e), _) => format!("repovault sync failed (exit {code}): {e:#}\n"),
            (None, Some(s)) => ping_body(s),
            (None, None) => format!("repovault sync ended (exit {code})\n"),
        };
        self.finish(
            code,
            "repovault_last_success_timestamp_seconds",
            |run| {
                metrics::sync_textfile(
                    run,
                    counts.as_ref(),
                    &done.rows,
                    stale,
                    done.totals.as_ref(),
                )
            },
            &body,
        );
    }

    /// A verify ended with `code`, having found `problems` (`None`: it did
    /// not get that far).
    pub(crate) fn finish_verify(&self, code: u8, read_data: bool, problems: Option<usize>) {
        let body = match problems {
            Some(0) => "repovault verify: no problems found\n".to_owned(),
            Some(n) => format!("repovault verify: {n} problems found (exit {code})\n"),
            None => format!("repovault verify failed (exit {code})\n"),
        };
        self.finish(
            code,
            "repovault_verify_last_success_timestamp_seconds",
            |run| metrics::verify_textfile(run, read_data, problems),
            &body,
        );
    }

    /// A prune ended with `code`, having freed `freed` (bytes, packs).
    pub(crate) fn finish_prune(&self, code: u8, freed: Option<(u64, u64)>) {
        self.finish(
            code,
            "repovault_prune_last_success_timestamp_seconds",
            |run| metrics::prune_textfile(run, freed),
            &format!("repovault prune ended (exit {code})\n"),
        );
    }
}

/// A sync summary as a ping's body: the text summary; when that is longer
/// than a ping carries, the repositories that synced fine are left out first.
fn ping_body(s: &SyncSummary) -> String {
    let mut buf = Vec::new();
    let _ = s.human(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if text.len() <= MAX_BODY {
        return text;
    }
    text.lines()
        .filter(|l| {
            !["new ", "changed ", "unchanged "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}
