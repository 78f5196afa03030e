//! Push-restore: a snapshot's refs pushed into a (new, empty) repository on a
//! git host, for disaster recovery to a host instead of to a disk.
//!
//! The snapshot is first restored with [`super::restore`] into a temporary
//! bare repository (the same walk and checked reads as any restore), then
//! pushed from there with the `git` binary: gix 0.90 has no push, and
//! `git push` brings the whole protocol (receive-pack over http, ssh, file;
//! negotiation of what the remote already has; thin packs; the remote's
//! per-ref answers in `--porcelain`). The token goes to git only through
//! the child's environment (`GIT_CONFIG_COUNT` / `http.extraHeader`),
//! never in argv, a URL, a file or git's config.
//!
//! Refs are pushed with an explicit refspec list (never `--mirror`, which
//! deletes what the remote has and the snapshot lacks). Hidden refs the
//! hosts refuse (`refs/pull/*`, `refs/merge-requests/*`,
//! `refs/keep-around/*`) are left out unless asked for. Large histories go
//! in steps, oldest first: each ref's first-parent history is cut so that
//! every push sends at most `max_push_bytes` (estimated from the objects'
//! size on disk in the temporary repository, `git rev-list --disk-usage`,
//! against what the remote already has). A run that stopped half-way is run
//! again and continues: the remote's refs are then ancestors of the
//! snapshot's, which is not "not empty", and git sends only what it lacks.

use super::{restore, RestoreOptions};
use crate::secret::Auth;
use crate::snapshot::Snapshot;
use crate::store::Store;
use git::{ls_remote, Git, Local};
use gix::ObjectId;
use plan::Planner;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

mod git;
mod plan;

/// Refs hosts refuse to take in a push ("deny updating a hidden ref").
pub const HIDDEN_PREFIXES: [&str; 3] = ["refs/pull/", "refs/merge-requests/", "refs/keep-around/"];

/// The default push limit: GitHub's 2 GiB per push (Azure DevOps allows 5 GB).
pub const DEFAULT_MAX_PUSH_BYTES: u64 = 2 << 30;

/// The branch the intermediate steps of a ref that is not a branch (a tag
/// over a long history of its own) are pushed to; deleted at the end.
pub const STEP_REF: &str = "refs/heads/repovault-restore-in-progress";

/// How many refs a list shows before "and N more".
const SHOWN: usize = 5;

/// At most this many refspecs per `git push` (argv stays small).
const REFSPECS_PER_PUSH: usize = 500;

/// Errors of a push-restore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Restoring the snapshot into the temporary repository failed.
    #[error(transparent)]
    Restore(#[from] super::Error),
    /// The target has refs of its own.
    #[error("{url} is not empty: it has {count} ref(s) this snapshot does not have or that are not ancestors of the snapshot's ({refs}): push into an empty repository, or pass --force to overwrite them (refs the snapshot lacks are left as they are)")]
    NotEmpty {
        /// The target (without credentials).
        url: String,
        /// How many refs.
        count: usize,
        /// The first few.
        refs: String,
    },
    /// The host refused the credentials.
    #[error("{url}: authentication failed (check the token of --token-env, and that it may push)")]
    Auth {
        /// The target.
        url: String,
    },
    /// The target URL cannot be used.
    #[error("push target {url}: {reason}")]
    Url {
        /// The target as given (credentials removed).
        url: String,
        /// Why not.
        reason: String,
    },
    /// A git command failed.
    #[error("git {what} failed: {message}")]
    Git {
        /// Which command (`push`, `ls-remote`, `rev-list`).
        what: String,
        /// Its last line of error output.
        message: String,
    },
    /// A temporary directory could not be made.
    #[error("temporary repository: {0}")]
    Temp(std::io::Error),
    /// Interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

/// Options of a push-restore.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Overwrite refs the target has (refs the snapshot lacks are kept).
    pub force: bool,
    /// Push hidden refs too (`refs/pull/*`, ...).
    pub all_refs: bool,
    /// The most one push may send (estimated), in bytes.
    pub max_push_bytes: u64,
    /// Credentials for an http(s) target.
    pub auth: Option<Auth>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            force: false,
            all_refs: false,
            max_push_bytes: DEFAULT_MAX_PUSH_BYTES,
            auth: None,
        }
    }
}

/// A ref pushed (or found already there).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushedRef {
    /// Its name.
    pub name: String,
    /// Its target.
    pub target: String,
    /// `new`, `updated`, `forced` or `up to date`.
    pub status: String,
}

/// A ref of the snapshot not pushed, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SkippedRef {
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// A ref the target had and the push replaced (only with `force`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OverwrittenRef {
    /// Its name.
    pub name: String,
    /// What it pointed to on the target.
    pub old: String,
    /// What it points to now (the snapshot's).
    pub new: String,
}

/// One `git push` of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushStep {
    /// The refspecs pushed (`<id>:<ref>`).
    pub refspecs: Vec<String>,
    /// What it sends, estimated (objects' size on disk, before git's deltas).
    pub estimated_bytes: u64,
    /// One commit alone was larger than the limit: pushed anyway.
    pub over_limit: bool,
}

/// What a push-restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushReport {
    /// The snapshot pushed.
    pub snapshot: String,
    /// Its time.
    pub time: jiff::Timestamp,
    /// Repository name.
    pub repo: String,
    /// The target (without credentials).
    pub url: String,
    /// The target already had part of the snapshot (an earlier run stopped).
    pub resumed: bool,
    /// The limit per push, in bytes.
    pub max_push_bytes: u64,
    /// Refs pushed, or already there.
    pub pushed: Vec<PushedRef>,
    /// Refs of the snapshot left out (hidden refs, HEAD, names git refuses).
    pub skipped: Vec<SkippedRef>,
    /// Refs the host refused, with its reason.
    pub refused: Vec<SkippedRef>,
    /// Refs of the target replaced (with `force`).
    pub overwritten: Vec<OverwrittenRef>,
    /// Refs of the target the snapshot lacks, left as they were.
    pub kept: Vec<String>,
    /// The ref the snapshot's HEAD names: not set on the host by this
    /// version (the host's default branch is its first branch, or set it).
    pub head: Option<String>,
    /// The pushes, in order.
    pub steps: Vec<PushStep>,
}

/// Whether hosts refuse `name` in a push.
pub fn is_hidden(name: &str) -> bool {
    HIDDEN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `a, b, c and N more`.
fn first_few(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// The target as git gets it: an http(s), ssh, git or file URL as given, a
/// local path made absolute (git runs in the temporary repository). A
/// password in the URL is refused: the token goes in `--token-env`.
///
/// # Errors
/// [`Error::Url`] for a URL with a password or a path that cannot be made absolute.
pub fn target_url(url: &str) -> Result<String, Error> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Err(Error::Url {
                    url: format!("{scheme}://***@{host}/..."),
                    reason: "a password in the URL is refused: give the token with --token-env VAR"
                        .into(),
                });
            }
        }
        return Ok(url.to_owned());
    }
    let path = Path::new(url);
    if !path.exists() && url.contains(':') {
        return Ok(url.to_owned()); // scp-like ssh: git@host:path
    }
    std::path::absolute(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| Error::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })
}

/// Pushes snapshot `snap` into the repository at `url` (see the module doc).
///
/// # Errors
/// [`Error::NotEmpty`] when the target has refs of its own (without
/// `force`), [`Error::Auth`] when the host refuses the token, the errors
/// of [`restore`], [`Error::Interrupted`].
pub fn push(
    store: &Store,
    snap: &Snapshot,
    url: &str,
    opts: &PushOptions,
    interrupt: &AtomicBool,
    progress: &dyn crate::progress::Progress,
) -> Result<PushReport, Error> {
    let target = target_url(url)?;
    let git = Git {
        url: &target,
        auth: opts.auth.as_ref(),
    };
    let mut report = PushReport {
        snapshot: snap.id.clone(),
        time: snap.time,
        repo: snap.repo.clone(),
        url: target.clone(),
        resumed: false,
        max_push_bytes: opts.max_push_bytes,
        pushed: Vec::new(),
        skipped: Vec::new(),
        refused: Vec::new(),
        overwritten: Vec::new(),
        kept: Vec::new(),
        head: None,
        steps: Vec::new(),
    };

    // What to push: every direct ref but HEAD, hidden refs only if asked.
    let mut wanted: BTreeMap<String, ObjectId> = BTreeMap::new();
    for r in &snap.refs {
        let name = r.name_lossy();
        if name == "HEAD" {
            report.head = r
                .symref
                .as_ref()
                .map(|s| String::from_utf8_lossy(s).into_owned());
            continue;
        }
        let Some(t) = r.target.filter(|_| r.symref.is_none()) else {
            report.skipped.push(SkippedRef {
                name,
                reason: "a symbolic or unborn ref (not pushed)".into(),
            });
            continue;
        };
        if std::str::from_utf8(&r.name).is_err() {
            report.skipped.push(SkippedRef {
                name,
                reason: "its name is not UTF-8".into(),
            });
        } else if is_hidden(&name) && !opts.all_refs {
            report.skipped.push(SkippedRef {
                name,
                reason: "a hidden ref hosts refuse (pass --all-refs to push it)".into(),
            });
        } else {
            wanted.insert(name, t);
        }
    }

    let scratch = tempfile::Builder::new()
        .prefix("repovault-push-")
        .tempdir()
        .map_err(Error::Temp)?;
    let remote = ls_remote(&git, scratch.path())?;
    // Refs the snapshot lacks: refused at once (before the restore's work).
    let foreign: Vec<String> = remote
        .keys()
        .filter(|n| !wanted.contains_key(*n) && n.as_str() != STEP_REF)
        .cloned()
        .collect();
    if !foreign.is_empty() && !opts.force {
        return Err(Error::NotEmpty {
            url: target,
            count: foreign.len(),
            refs: first_few(&foreign),
        });
    }
    report.kept = foreign;

    let repo = scratch.path().join("repo.git");
    let restored = restore(store, snap, &repo, RestoreOptions::default(), interrupt);
    if interrupt.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    restored?;
    let local = Local {
        git: &git,
        repo: &repo,
    };

    // The target's refs this snapshot has: an ancestor of the snapshot's is
    // an earlier run's step (continued); anything else is overwritten or refused.
    let mut base: Vec<ObjectId> = Vec::new();
    let mut conflicting = Vec::new();
    let mut forced: HashSet<String> = HashSet::new();
    for (name, old) in &remote {
        let present = local.has(old)?;
        if present {
            base.push(*old);
        }
        let Some(new) = wanted.get(name) else {
            continue;
        };
        if old == new || (present && local.is_ancestor(old, new)?) {
            report.resumed = true;
            continue;
        }
        conflicting.push(name.clone());
        forced.insert(name.clone());
        report.overwritten.push(OverwrittenRef {
            name: name.clone(),
            old: old.to_string(),
            new: new.to_string(),
        });
    }
    if !conflicting.is_empty() && !opts.force {
        return Err(Error::NotEmpty {
            url: target,
            count: conflicting.len(),
            refs: first_few(&conflicting),
        });
    }
    if remote.contains_key(STEP_REF) {
        forced.insert(STEP_REF.to_owned());
    }

    // Branches first (HEAD's first), then the rest, each oldest first.
    let mut order: Vec<(&String, &ObjectId)> = wanted.iter().collect();
    let head = report.head.clone();
    order.sort_by_key(|(n, _)| {
        let rank = if Some(n.as_str()) == head.as_deref() {
            0
        } else if n.starts_with("refs/heads/") {
            1
        } else {
            2
        };
        (rank, (*n).clone())
    });

    progress.begin_counting("pushing", None, "pushes");
    let mut plan = Planner {
        local: &local,
        limit: opts.max_push_bytes,
        base,
        batch: Vec::new(),
        forced,
        steps: Vec::new(),
        step_ref_used: remote.contains_key(STEP_REF),
    };
    let mut results: Vec<(String, String, String)> = Vec::new();
    let mut run_steps = |plan: &mut Planner, report: &mut PushReport| -> Result<(), Error> {
        for step in std::mem::take(&mut plan.steps) {
            if interrupt.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            // Ctrl-C reaches git too: its failure is the interrupt.
            let lines = local.push(&step.refspecs).map_err(|e| {
                if interrupt.load(Ordering::Relaxed) {
                    Error::Interrupted
                } else {
                    e
                }
            })?;
            results.extend(lines);
            report.steps.push(step);
            progress.update(report.steps.len() as u64, 0);
            crate::crash_point("push-step");
        }
        Ok(())
    };
    let mut todo = Vec::new();
    for (name, id) in order {
        if remote.get(name) == Some(id) {
            report.pushed.push(PushedRef {
                name: name.clone(),
                target: id.to_string(),
                status: "up to date".into(),
            });
        } else {
            todo.push((name.as_str(), *id));
        }
    }
    // Most repositories fit in one push: one walk decides it.
    if !plan.all_at_once(&todo)? {
        for (name, id) in todo {
            plan.add(name, id)?;
            run_steps(&mut plan, &mut report)?;
        }
        plan.flush()?;
    }
    if plan.step_ref_used {
        plan.steps.push(PushStep {
            refspecs: vec![format!(":{STEP_REF}")],
            estimated_bytes: 0,
            over_limit: false,
        });
    }
    run_steps(&mut plan, &mut report)?;

    // The host's answer for each ref: the last one counts.
    let mut last: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (flag, to, summary) in results {
        // A ref pushed in steps is "up to date" in its last push: keep the step's answer.
        let seen = last.get(&to).is_some_and(|(f, _)| f != "=");
        if to != STEP_REF && !(seen && flag == "=") {
            last.insert(to, (flag, summary));
        }
    }
    for (name, (flag, summary)) in last {
        let Some(id) = wanted.get(&name) else {
            continue;
        };
        let status = match flag.as_str() {
            "!" => {
                report.refused.push(SkippedRef {
                    name,
                    reason: summary,
                });
                continue;
            }
            "+" => "forced",
            "=" if remote.contains_key(&name) => "up to date",
            _ if !remote.contains_key(&name) => "new",
            _ => "updated",
        };
        report.pushed.push(PushedRef {
            name,
            target: id.to_string(),
            status: status.into(),
        });
    }
    report.pushed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_refs() {
        assert!(is_hidden("refs/pull/1/head"));
        assert!(is_hidden("refs/merge-requests/3/head"));
        assert!(is_hidden("refs/keep-around/abc"));
        assert!(!is_hidden("refs/heads/pull"));
        assert!(!is_hidden("refs/tags/v1"));
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let e = target_url("https://u:hunter2@example.com/x.git")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(target_url("https://u@example.com/x.git").is_ok());
        assert!(target_url("git@example.com:x.git").is_ok());
    }

    #[test]
    fn first_few_counts_the_rest() {
        let names: Vec<String> = (0..7).map(|i| format!("r{i}")).collect();
        assert_eq!(first_few(&names), "r0, r1, r2, r3, r4 and 2 more");
    }
}
