//! `repos` (list, `--remove`) and `stats` (the store, or one repository's
//! share of it), and finding a repository by name or suffix.

use super::args::{ReposArgs, StatsArgs};
use super::exit;
use super::open_store;
use super::output::{self, human_bytes, Report};
use anyhow::{bail, Result};
use repovault::store::Store;
use repovault::sync;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) fn cmd_stats(store: &Option<PathBuf>, a: StatsArgs) -> Result<u8> {
    let s = open_store(store)?;
    if let Some(name) = &a.repo {
        let repo = resolve_repo(&s, name)?;
        let u = repovault::usage::repo_usage(&s, &repo)?;
        return output::show(&u, a.json).map(|()| exit::OK);
    }
    let t = s.totals()?;
    let ratio = if t.stored_bytes > 0 {
        t.raw_bytes as f64 / t.stored_bytes as f64
    } else {
        0.0
    };
    output::show(
        &StoreStats {
            totals: t,
            dedup_ratio: ratio,
            store: s.root(),
        },
        a.json,
    )?;
    Ok(exit::OK)
}

/// What `stats` shows of the whole store.
#[derive(serde::Serialize)]
pub(crate) struct StoreStats<'a> {
    #[serde(flatten)]
    totals: repovault::index::Totals,
    dedup_ratio: f64,
    store: &'a Path,
}

impl Report for StoreStats<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let t = &self.totals;
        writeln!(out, "store        {}", self.store.display())?;
        writeln!(out, "repos        {}", t.repos)?;
        writeln!(out, "snapshots    {}", t.snapshots)?;
        writeln!(out, "objects      {}", t.objects)?;
        writeln!(out, "chunks       {} ({} deltas)", t.chunks, t.delta_chunks)?;
        writeln!(out, "packs        {}", t.packs)?;
        writeln!(
            out,
            "raw bytes    {} ({})",
            t.raw_bytes,
            human_bytes(t.raw_bytes)
        )?;
        writeln!(
            out,
            "stored bytes {} ({})",
            t.stored_bytes,
            human_bytes(t.stored_bytes)
        )?;
        writeln!(out, "ratio        {:.2}x (raw / stored)", self.dedup_ratio)
    }
}

impl Report for repovault::usage::RepoUsage {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let u = self;
        writeln!(out, "repository   {} ({} snapshots)", u.repo, u.snapshots)?;
        writeln!(
            out,
            "{:<12} {:>10} {:>14} {:>10} {:>14}",
            "", "objects", "raw bytes", "chunks", "stored bytes"
        )?;
        for (label, x) in [
            ("total", &u.total),
            ("only here", &u.only),
            ("shared", &u.shared),
        ] {
            writeln!(
                out,
                "{:<12} {:>10} {:>14} {:>10} {:>14}",
                label,
                x.objects,
                human_bytes(x.raw_bytes),
                x.chunks,
                human_bytes(x.stored_bytes)
            )?;
        }
        writeln!(
            out,
            "(only here: what no other repository's snapshot needs; shared: also needed by others)"
        )
    }
}

/// Resolves a repository name or a unique suffix of one.
pub(crate) fn resolve_repo(s: &Store, name: &str) -> Result<repovault::index::RepoRow> {
    let repos = s.with_index(|i| i.repos())?;
    if let Some(r) = repos.iter().find(|r| r.name == name) {
        return Ok(r.clone());
    }
    // The path or URL that was synced.
    match sync::repos_synced_from(&repos, name).as_slice() {
        [one] => return Ok((*one).clone()),
        [] => {}
        many => bail!(
            "{name:?} was synced as several repositories ({}): give the name",
            many.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    let suffix = format!("/{}", name.trim_matches('/'));
    let mut hits: Vec<_> = repos.iter().filter(|r| r.name.ends_with(&suffix)).collect();
    if hits.is_empty() {
        // A renamed repository stays findable under its old names.
        hits = repos
            .iter()
            .filter(|r| {
                r.previous_names
                    .iter()
                    .any(|p| p == name || p.ends_with(&suffix))
            })
            .collect();
    }
    match hits.len() {
        1 => Ok(hits[0].clone()),
        0 => bail!("no repository named {name:?} in the store: see `repovault repos`"),
        _ => bail!(
            "{name:?} matches several repositories ({}): give more of the name",
            hits.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `repos --remove`: drops repositories that have no snapshot, under the write lock.
pub(crate) fn remove_repos(s: &Store, names: &[String], json: bool) -> Result<u8> {
    let targets = names
        .iter()
        .map(|n| resolve_repo(s, n))
        .collect::<Result<Vec<_>>>()?;
    if let Some(r) = targets.iter().find(|r| r.snapshots > 0) {
        bail!(
            "repository {} has {} snapshot(s); `repos --remove` only removes a repository without snapshots: forget them first (repovault forget --repo {} SNAPSHOT-ID...)",
            r.name,
            r.snapshots,
            r.name
        );
    }
    let mut w = s.writer_for(Duration::from_secs(60), "repos --remove")?;
    let mut removed = Vec::new();
    for r in &targets {
        if !w.index().remove_empty_repo(r.id)? {
            bail!(
                "repository {} got a snapshot meanwhile: not removed",
                r.name
            );
        }
        removed.push(r.name.clone());
    }
    drop(w);
    output::show(&RemovedRepos { removed }, json)?;
    Ok(exit::OK)
}

/// What `repos --remove` removed.
#[derive(serde::Serialize)]
pub(crate) struct RemovedRepos {
    removed: Vec<String>,
}

impl Report for RemovedRepos {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for n in &self.removed {
            writeln!(out, "removed repository {n} (it had no snapshot)")?;
        }
        Ok(())
    }
}

/// The repositories `repos` lists.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct RepoList(Vec<repovault::index::RepoRow>);

impl Report for RepoList {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<10}  {:<20}  {:>9}  repository",
            "status", "last checked (UTC)", "snapshots"
        )?;
        for r in &self.0 {
            let when = r
                .last_checked
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{:<10}  {:<20}  {:>9}  {}",
                r.last_status.map_or("-", |s| s.as_str()),
                when,
                r.snapshots,
                r.name
            )?;
            if let Some(e) = &r.last_error {
                writeln!(out, "            last error: {e}")?;
            }
        }
        Ok(())
    }
}

/// What `repos --stale` lists.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct StaleList(Vec<repovault::monitor::Stale>);

impl Report for StaleList {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<20}  {:<11}  {:<8}  repository",
            "last success (UTC)", "last status", "state"
        )?;
        for r in &self.0 {
            let when = r
                .last_success
                .and_then(|t| jiff::Timestamp::from_microsecond(t).ok())
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "never".into());
            writeln!(
                out,
                "{:<20}  {:<11}  {:<8}  {}",
                when,
                r.last_status.map_or("-", |s| s.as_str()),
                r.state.as_str(),
                r.name
            )?;
        }
        Ok(())
    }
}

pub(crate) fn cmd_repos(store: &Option<PathBuf>, a: ReposArgs) -> Result<u8> {
    let s = open_store(store)?;
    if !a.remove.is_empty() {
        return remove_repos(&s, &a.remove, a.json);
    }
    let repos = s.with_index(|i| i.repos())?;
    if a.stale {
        let after = repovault::monitor::parse_duration(&a.stale_after)?;
        let stale = repovault::monitor::stale(&repos, super::monitoring::now_micros(), after);
        output::show(&StaleList(stale), a.json)?;
        return Ok(exit::OK);
    }
    output::show(&RepoList(repos), a.json)?;
    Ok(exit::OK)
}
