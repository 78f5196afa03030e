//! The Prometheus text files (node_exporter's textfile collector) of `sync`,
//! `verify` and `prune`: each run writes its whole file crash-safely
//! ([`write()`]: temporary file, fsync, rename), failed runs included, so a
//! scrape sees the last run's file complete or the one before.
//!
//! Every series is a gauge without a timestamp (the collector refuses
//! them). The last success is carried over from the file the previous run
//! left ([`previous_value`]): a run that fails keeps the time of the last one
//! that did not.

use super::{Error, Stale};
use crate::index::{RepoRow, RepoState};

/// The store's size, for a sync's metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreSize {
    /// Bytes of the pack files.
    pub pack_bytes: u64,
    /// Snapshots in the store.
    pub snapshots: u64,
}
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How one run went, for its `*_last_run_*`, `*_duration_*`, `*_exit_code`
/// and `*_last_success_*` series.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// When it began (unix microseconds).
    pub started: i64,
    /// When it ended (unix microseconds).
    pub ended: i64,
    /// Its exit code.
    pub exit_code: u8,
    /// When the last successful run ended (unix microseconds): this one when
    /// `exit_code` is 0, else the previous file's, `None`: never.
    pub last_success: Option<i64>,
}

impl Run {
    /// The run from `started` to `ended` ending with `exit_code`, whose last
    /// success is its end when it succeeded, else what `previous` (the file
    /// the last run wrote) says under `name`.
    pub fn new(started: i64, ended: i64, exit_code: u8, previous: &Path, name: &str) -> Run {
        let last_success = if exit_code == 0 {
            Some(ended)
        } else {
            previous_value(previous, name)
                .filter(|v| *v > 0.0)
                .map(|v| (v * 1e6) as i64)
        };
        Run {
            started,
            ended,
            exit_code,
            last_success,
        }
    }
}

/// What a sync run counted (absent when it failed before syncing anything).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncCounts {
    /// Repositories with a new snapshot (first or changed).
    pub ok: usize,
    /// Repositories whose refs were unchanged (the last snapshot confirmed).
    pub unchanged: usize,
    /// Repositories that failed.
    pub failed: usize,
    /// Repositories interrupted or never started.
    pub interrupted: usize,
    /// Bytes received from the remotes (the packs fetched).
    pub fetched_bytes: u64,
    /// Bytes the store grew by (every file of the store, before and after the run).
    pub stored_bytes: u64,
}

/// A Prometheus text-format document of gauges, written family by family.
#[derive(Debug, Default)]
pub struct Textfile {
    out: String,
}

impl Textfile {
    /// Starts the family `name` (its `# HELP` and `# TYPE gauge` lines).
    pub fn family(&mut self, name: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} gauge");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family of one sample without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help).sample(name, &[], value)
    }

    /// The document.
    pub fn text(&self) -> &str {
        &self.out
    }

    /// The series every verb writes for its run, named `{prefix}last_run_*`.
    fn run(&mut self, prefix: &str, what: &str, run: &Run) -> &mut Self {
        let secs = |t: i64| t as f64 / 1e6;
        self.gauge(
            &format!("{prefix}last_run_start_timestamp_seconds"),
            &format!("When the last {what} began (unix seconds)."),
            secs(run.started),
        )
        .gauge(
            &format!("{prefix}last_run_timestamp_seconds"),
            &format!("When the last {what} ended (unix seconds)."),
            secs(run.ended),
        )
        .gauge(
            &format!("{prefix}run_duration_seconds"),
            &format!("How long the last {what} took."),
            secs(run.ended.saturating_sub(run.started)),
        )
        .gauge(
            &format!("{prefix}run_exit_code"),
            &format!("The exit code of the last {what} (0 ok, 3 partial or stale, 12 damage)."),
            f64::from(run.exit_code),
        )
        .gauge(
            &format!("{prefix}last_success_timestamp_seconds"),
            &format!("When the last {what} that exited 0 ended (unix seconds; 0: never)."),
            run.last_success.map_or(0.0, secs),
        )
    }
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of the unlabelled sample `name` in the text file at `path`
/// (`None` when the file or the sample is absent).
pub fn previous_value(path: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

/// The text file of a sync run: the run, the counts, the store's size,
/// and per repository of `repos` (deleted ones left out) its last success,
/// last status and whether it is stale (one of `stale`).
pub fn sync_textfile(
    run: &Run,
    counts: Option<&SyncCounts>,
    repos: &[RepoRow],
    stale: &[Stale],
    totals: Option<&StoreSize>,
) -> String {
    let mut t = Textfile::default();
    t.run("repovault_", "sync", run);
    let c = counts.copied().unwrap_or_default();
    let in_state = |s: RepoState| repos.iter().filter(|r| r.state == s).count();
    let name = "repovault_repositories";
    t.family(
        name,
        "Repositories by the outcome of the last sync (ok: new snapshot), their state upstream, and stale.",
    );
    for (state, n) in [
        ("ok", c.ok),
        ("unchanged", c.unchanged),
        ("failed", c.failed),
        ("interrupted", c.interrupted),
        ("disabled", in_state(RepoState::Disabled)),
        ("deleted", in_state(RepoState::Deleted)),
        ("stale", stale.len()),
    ] {
        t.sample(name, &[("state", state)], n as f64);
    }
    t.gauge(
        "repovault_fetched_bytes",
        "Bytes fetched from the remotes by the last sync.",
        c.fetched_bytes as f64,
    )
    .gauge(
        "repovault_store_added_bytes",
        "Bytes the store grew by in the last sync (every file of the store: packs, index, snapshots).",
        c.stored_bytes as f64,
    );
    if let Some(tot) = totals {
        t.gauge(
            "repovault_store_bytes",
            "Bytes of the store's pack files.",
            tot.pack_bytes as f64,
        )
        .gauge(
            "repovault_snapshots",
            "Snapshots in the store.",
            tot.snapshots as f64,
        );
    }
    let live: Vec<&RepoRow> = repos
        .iter()
        .filter(|r| r.state != RepoState::Deleted)
        .collect();
    let labels = |r: &RepoRow| (r.origin.clone().unwrap_or_default(), r.name.clone());
    let name = "repovault_repository_last_success_timestamp_seconds";
    t.family(
        name,
        "When the repository was last backed up successfully (unix seconds; 0: never).",
    );
    for r in &live {
        let (source, repo) = labels(r);
        let v = r.last_success.map_or(0.0, |m| m as f64 / 1e6);
        t.sample(name, &[("source", &source), ("repository", &repo)], v);
    }
    let name = "repovault_repository_last_status";
    t.family(
        name,
        "The outcome of the repository's last sync attempt (1 for its status).",
    );
    for r in &live {
        let (source, repo) = labels(r);
        let status = r.last_status.map_or("none", |s| s.as_str());
        t.sample(
            name,
            &[
                ("source", &source),
                ("repository", &repo),
                ("status", status),
            ],
            1.0,
        );
    }
    let name = "repovault_repository_stale";
    t.family(
        name,
        "1 when the repository's last successful backup is older than stale_after.",
    );
    for r in &live {
        let (source, repo) = labels(r);
        let v = f64::from(u8::from(stale.iter().any(|s| s.name == r.name)));
        t.sample(name, &[("source", &source), ("repository", &repo)], v);
    }
    t.out
}

/// The text file of a verify run: the run, and the problems found
/// (`None`: it did not get that far).
pub fn verify_textfile(run: &Run, read_data: bool, problems: Option<usize>) -> String {
    let mut t = Textfile::default();
    t.run("repovault_verify_", "verify", run).gauge(
        "repovault_verify_read_data",
        "1 when the last verify read every pack (--read-data).",
        f64::from(u8::from(read_data)),
    );
    if let Some(n) = problems {
        t.gauge(
            "repovault_verify_damage_found",
            "Problems the last verify found (0: the store is intact).",
            n as f64,
        );
    }
    t.out
}

/// The text file of a prune run: the run, and the bytes and packs it freed
/// (`None`: it failed).
pub fn prune_textfile(run: &Run, freed: Option<(u64, u64)>) -> String {
    let mut t = Textfile::default();
    t.run("repovault_prune_", "prune", run);
    if let Some((bytes, packs)) = freed {
        t.gauge(
            "repovault_prune_freed_bytes",
            "Bytes of pack files the last prune freed.",
            bytes as f64,
        )
        .gauge(
            "repovault_prune_packs_deleted",
            "Pack files the last prune deleted.",
            packs as f64,
        );
    }
    t.out
}

/// Writes `text` to `path` crash-safely (temporary file beside it, fsync,
/// rename: `crate::durable`), mode 0644 whatever the umask: the collector
/// usually runs as another user, and the file holds no secret (names and
/// numbers only).
///
/// # Errors
/// [`Error::Write`] naming the file.
pub fn write(path: &Path, text: &str) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The temporary name does not end in `.prom`: the collector never reads it.
    let mut tmp =
        crate::durable::TempFile::new_in(dir, ".tmp", crate::durable::USER).map_err(err)?;
    tmp.file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    tmp.persist(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_previous_values_read() {
        let mut t = Textfile::default();
        t.family("x", "help")
            .sample("x", &[("repository", "a\"b\\c\nd")], 1.5);
        assert!(
            t.text()
                .ends_with("x{repository=\"a\\\"b\\\\c\\nd\"} 1.5\n"),
            "{}",
            t.text()
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.prom");
        write(&f, "# HELP y h\ny_total{a=\"1\"} 7\ny 1700000000.5\n").unwrap();
        assert_eq!(previous_value(&f, "y"), Some(1_700_000_000.5));
        assert_eq!(previous_value(&f, "z"), None);
        let run = Run::new(1, 2_000_001, 1, &f, "y");
        assert_eq!(run.last_success, Some(1_700_000_000_500_000));
        assert_eq!(Run::new(1, 2, 0, &f, "y").last_success, Some(2));
    }
}
