//! The config-driven (nightly) run: every source of a config is listed
//! ([`discover_all`], without the store lock), each listing is registered in
//! the index (new, renamed, deleted, disabled repositories), the repositories
//! of a source whose listing failed or was incomplete are still backed up as
//! earlier runs knew them, and everything is synced with one retry per failure
//! ([`run_config`]). Also what `config check` and `sync --config --dry-run`
//! list ([`SourceListing`]).
//!
//! Nothing here prints: see [`super::run`].

use super::run::{failed_report, run_jobs, Error, RunOptions, RunProgress, SyncSummary};
use super::{Source, SyncOptions};
use crate::config::Resolved;
use crate::discover::{self, CredentialHosts};
use crate::index::{Index, Registration};
use crate::secret::{Auth, Secret};
use crate::store::{Store, Writer};
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Instant;

/// Discovery results of a config run, for the summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct DiscoverySummary {
    /// Sources in the config.
    pub sources: usize,
    /// Sources whose listing failed (`label: why`).
    pub sources_failed: Vec<String>,
    /// Sources whose listing was incomplete (`label: first problem`).
    pub sources_incomplete: Vec<String>,
    /// Repositories synced although this run's listing missed them: known
    /// from earlier runs of a source whose listing failed or was incomplete.
    pub from_earlier_runs: Vec<String>,
    /// Repositories listed.
    pub discovered: usize,
    /// Repositories registered for the first time.
    pub new: Vec<String>,
    /// Repositories renamed upstream, `(old, new)`.
    pub renamed: Vec<(String, String)>,
    /// Repositories deleted upstream.
    pub deleted: Vec<String>,
    /// Repositories disabled upstream.
    pub disabled: Vec<String>,
    /// Listing warnings, `label: warning`.
    pub warnings: Vec<String>,
}

/// What one source of a config listed.
pub struct SourceListing {
    /// The source's label in the config.
    pub label: String,
    /// The listing, or why it failed.
    pub result: Result<Found, String>,
    /// How to sync the source's repositories known from earlier runs when
    /// its listing failed or was incomplete; `None` after a rejected token
    /// (they would only fail the same way) and for `git` sources.
    known: Option<KnownAccess>,
}

impl SourceListing {
    /// Why the listing failed, naming the source once.
    fn failure(label: &str, e: String) -> String {
        if e.starts_with(label) {
            e
        } else {
            format!("{label}: {e}")
        }
    }
}

/// A listing that worked (maybe only in part).
pub struct Found {
    /// Every listed repository, refused ones included (all are registered).
    pub repos: Vec<(Source, Registration)>,
    /// Whether the listing is complete.
    pub complete: bool,
    /// What the listing warned about.
    pub warnings: Vec<String>,
    /// Listed repositories not synced because their clone URL leaves the
    /// source's hosts, with the message saying so.
    pub refused: Vec<(Source, String)>,
}

impl Found {
    /// The repositories to sync: not disabled upstream, not refused.
    fn to_sync(&self) -> impl Iterator<Item = &Source> {
        let refused: HashSet<&str> = self.refused.iter().map(|(s, _)| s.name.as_str()).collect();
        self.repos
            .iter()
            .filter(move |(s, r)| !r.disabled && !refused.contains(s.name.as_str()))
            .map(|(s, _)| s)
    }
}

/// Credentials and hosts of a provider source.
struct KnownAccess {
    token: Option<Secret>,
    bearer: bool,
    git_user: &'static str,
    hosts: CredentialHosts,
}

impl KnownAccess {
    /// The source for `name` at `url` with the token, or the refusal
    /// message when `url` leaves the source's hosts.
    fn source(&self, label: &str, name: &str, url: &str) -> Result<Source, String> {
        if self.token.is_some() && !self.hosts.allows(url) {
            let host = discover::host_of(url);
            return Err(format!(
                "not synced: its clone URL {url} is on {host}, not a host of source {label} ({}), and the token is only sent there; if {host} is yours, add \"{host}\" to git_hosts of the source",
                self.hosts.describe()
            ));
        }
        Ok(Source {
            url: url.to_owned(),
            name: name.to_owned(),
            auth: self.token.clone().map(|t| Auth {
                user: self.git_user.to_owned(),
                token: t,
                bearer: self.bearer,
            }),
        })
    }
}

/// Lists every source of a config (no store involved).
pub fn discover_all(resolved: &[Resolved]) -> Vec<SourceListing> {
    resolved
        .iter()
        .map(|r| match r {
            Resolved::Provider {
                source,
                token,
                bearer,
            } => list_provider(r.label(), source, token, *bearer),
            Resolved::Git { urls, auth, .. } => list_git(r.label(), urls, auth),
        })
        .collect()
}

/// Lists a provider source.
fn list_provider(
    label: String,
    source: &discover::ProviderSource,
    token: &Option<Secret>,
    bearer: bool,
) -> SourceListing {
    let access = match CredentialHosts::for_source(source) {
        Ok(hosts) => KnownAccess {
            token: token.clone(),
            bearer,
            git_user: discover::git_user(source.provider),
            hosts,
        },
        Err(e) => {
            return SourceListing {
                label,
                result: Err(e.to_string()),
                known: None,
            }
        }
    };
    let listing = match discover::discover_blocking(source, &discover::HttpOptions::default()) {
        Ok(l) => l,
        Err(e) => {
            return SourceListing {
                label,
                known: (!e.is_auth()).then_some(access),
                result: Err(e.to_string()),
            }
        }
    };
    let mut repos = Vec::new();
    let mut refused = Vec::new();
    for d in listing.repos {
        let reg = Registration {
            key: d.key.clone(),
            name: d.name.clone(),
            url: d.clone_url.clone(),
            disabled: d.disabled,
            record: d.record.clone(),
        };
        let src = match access.source(&label, &d.name, &d.clone_url) {
            Ok(s) => s,
            Err(why) => {
                let bare = Source {
                    url: d.clone_url.clone(),
                    name: d.name.clone(),
                    auth: None,
                };
                if !d.disabled {
                    refused.push((bare.clone(), why));
                }
                bare
            }
        };
        repos.push((src, reg));
    }
    SourceListing {
        label,
        result: Ok(Found {
            repos,
            complete: listing.complete,
            warnings: listing.warnings,
            refused,
        }),
        known: Some(access),
    }
}

/// Lists a `git` source: its URLs as they are.
fn list_git(label: String, urls: &[String], auth: &Option<Auth>) -> SourceListing {
    let mut repos = Vec::new();
    let mut err = None;
    for u in urls {
        match Source::parse(u, None, auth.clone()) {
            Ok(s) => {
                let reg = Registration {
                    key: format!("git:{}", s.name),
                    name: s.name.clone(),
                    url: s.url.clone(),
                    disabled: false,
                    record: serde_json::json!({ "url": s.url }),
                };
                repos.push((s, reg));
            }
            Err(e) => err = Some(e.to_string()),
        }
    }
    SourceListing {
        label,
        result: match err {
            Some(e) => Err(e),
            None => Ok(Found {
                repos,
                complete: true,
                warnings: Vec::new(),
                refused: Vec::new(),
            }),
        },
        known: None,
    }
}

/// What `sync --config --dry-run` plans: the repositories to sync (named as
/// a sync would name them), the sources whose listing failed and the warnings
/// (refused repositories).
pub fn dry_run_sources(
    store: &Store,
    listed: Vec<SourceListing>,
) -> Result<(Vec<Source>, Vec<String>, Vec<String>), Error> {
    let mut sources = Vec::new();
    let mut failed = Vec::new();
    let mut warnings = Vec::new();
    for SourceListing { label, result, .. } in listed {
        match result {
            Ok(found) => {
                sources.extend(found.to_sync().cloned());
                warnings.extend(found.refused.into_iter().map(|(_, why)| why));
            }
            Err(e) => failed.push(SourceListing::failure(&label, e)),
        }
    }
    // Names from before ports were part of them, as a sync would use them.
    let known = store.with_index(|i| i.repos())?;
    for src in &mut sources {
        if let Ok(Some(n)) = super::existing_name(&known, src) {
            src.name = n;
        }
    }
    Ok((sources, failed, warnings))
}

/// [`super::run::keep_existing_names`] for the `git` sources of a config
/// (whose key is their name); a source whose name a different repository
/// holds is left out and reported as failed.
fn keep_existing_git_names(
    writer: &Mutex<Writer<'_>>,
    label: &str,
    repos: Vec<(Source, Registration)>,
    summary: &mut DiscoverySummary,
) -> Result<Vec<(Source, Registration)>, Error> {
    let known = writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .index()
        .repos()?;
    let mut out = Vec::with_capacity(repos.len());
    for (mut src, mut reg) in repos {
        if reg.key != format!("git:{}", src.name) {
            out.push((src, reg));
            continue;
        }
        match super::existing_name(&known, &src) {
            Ok(Some(n)) => {
                reg.key = format!("git:{n}");
                reg.name = n.clone();
                src.name = n;
                out.push((src, reg));
            }
            Ok(None) => out.push((src, reg)),
            Err(e) => summary.sources_failed.push(format!("{label}: {e}")),
        }
    }
    Ok(out)
}

/// The repositories of `label` known from earlier runs (active, not disabled
/// or deleted upstream) that this run's listing lacks, as sources; those
/// whose URL leaves the source's hosts come back refused.
fn known_from_earlier_runs(
    index: &Index,
    label: &str,
    listed: &HashSet<String>,
    access: &KnownAccess,
) -> Result<(Vec<Source>, Vec<(Source, String)>), Error> {
    let mut sources = Vec::new();
    let mut refused = Vec::new();
    for row in index.repos()? {
        let key = match &row.key {
            Some(k)
                if row.origin.as_deref() == Some(label)
                    && row.state == crate::index::RepoState::Active =>
            {
                k
            }
            _ => continue,
        };
        if listed.contains(key) {
            continue;
        }
        match access.source(label, &row.name, &row.url) {
            Ok(s) => sources.push(s),
            Err(why) => refused.push((
                Source {
                    url: row.url.clone(),
                    name: row.name.clone(),
                    auth: None,
                },
                why,
            )),
        }
    }
    Ok((sources, refused))
}

/// `first` and how many more there are, for a one-line message.
fn first_and_more(items: &[String]) -> String {
    match items {
        [] => "no details".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first}; and {} more", rest.len()),
    }
}

/// What to sync after registering every listing.
#[derive(Default)]
struct Planned {
    sources: Vec<Source>,
    refused: Vec<(Source, String)>,
    summary: DiscoverySummary,
}

/// Registers each listing in the index and collects what to sync: the
/// listed repositories, and for a source whose listing failed or was
/// incomplete, those earlier runs knew.
fn register_all(
    writer: &Mutex<Writer<'_>>,
    listed: Vec<SourceListing>,
    source_count: usize,
) -> Result<Planned, Error> {
    let mut p = Planned {
        summary: DiscoverySummary {
            sources: source_count,
            ..Default::default()
        },
        ..Default::default()
    };
    let now = jiff::Timestamp::now().as_second();
    for SourceListing {
        label,
        result,
        known,
    } in listed
    {
        let mut listed_keys = HashSet::new();
        let mut problem = None;
        let mut incomplete = false;
        match result {
            Ok(mut found) => {
                found.repos = keep_existing_git_names(writer, &label, found.repos, &mut p.summary)?;
                p.summary.discovered += found.repos.len();
                p.summary
                    .warnings
                    .extend(found.warnings.iter().map(|w| format!("{label}: {w}")));
                if !found.complete {
                    incomplete = true;
                    p.summary.warnings.push(format!(
                        "{label}: the listing was incomplete; no repository was marked deleted"
                    ));
                    problem = Some(format!(
                        "{label}: the listing is incomplete ({})",
                        first_and_more(&found.warnings)
                    ));
                }
                let regs: Vec<_> = found.repos.iter().map(|(_, r)| r.clone()).collect();
                let ch = writer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .index()
                    .register(&label, &regs, found.complete, now)?;
                p.summary.new.extend(ch.new);
                p.summary.renamed.extend(ch.renamed);
                p.summary.deleted.extend(ch.deleted);
                p.summary.disabled.extend(ch.disabled);
                listed_keys.extend(found.repos.iter().map(|(_, r)| r.key.clone()));
                p.sources.extend(found.to_sync().cloned());
                p.refused.extend(found.refused);
                if found.complete {
                    continue;
                }
            }
            Err(e) => {
                tracing::error!(source = %label, "{e}");
                problem = Some(SourceListing::failure(&label, e));
            }
        }
        // The listing failed or is incomplete: what earlier runs knew of this
        // source is still backed up tonight.
        let mut earlier = 0;
        if let Some(access) = &known {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            let (more, more_refused) =
                known_from_earlier_runs(w.index(), &label, &listed_keys, access)?;
            drop(w);
            earlier = more.len();
            p.summary
                .from_earlier_runs
                .extend(more.iter().map(|s| s.name.clone()));
            p.sources.extend(more);
            p.refused.extend(more_refused);
        }
        let mut line = problem.unwrap_or_default();
        if earlier > 0 {
            line.push_str(&format!(
                "; {earlier} repositories known from earlier runs are synced anyway"
            ));
        }
        if incomplete {
            p.summary.sources_incomplete.push(line);
        } else {
            p.summary.sources_failed.push(line);
        }
    }
    Ok(p)
}

/// The nightly run of a config: registers the listings `listed` (of
/// `source_count` sources, made by [`discover_all`] before `writer` was
/// taken), syncs every repository with one retry, reports the refused ones
/// as failed, and commits `writer`. `started` is when the run (its discovery)
/// began.
#[allow(clippy::too_many_arguments)]
pub fn run_config(
    store: &Store,
    writer: Writer<'_>,
    listed: Vec<SourceListing>,
    source_count: usize,
    opts: &SyncOptions,
    run: RunOptions,
    interrupt: &AtomicBool,
    progress: &dyn RunProgress,
    started: Instant,
) -> Result<SyncSummary, Error> {
    let before = store.bytes_on_disk()?;
    let writer = Mutex::new(writer);
    let p = register_all(&writer, listed, source_count)?;
    let run = RunOptions { retry: true, ..run };
    let mut reports = run_jobs(store, &writer, &p.sources, opts, run, interrupt, progress);
    for (src, why) in &p.refused {
        tracing::error!(repo = %src.name, "{why}");
        super::record_failure(&writer, src, why);
        reports.push(failed_report(src, 0, why.clone()));
    }
    let planned = p.sources.len() + p.refused.len();
    super::run::commit_run(
        store,
        before,
        writer,
        reports,
        Some(p.summary),
        planned,
        started,
    )
}
