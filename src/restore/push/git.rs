//! The `git` commands of a push-restore, the token in the child's
//! environment only (`GIT_CONFIG_COUNT` / `http.extraHeader`), never in
//! argv, a URL, a file or git's config.

use super::Error;
use crate::secret::Auth;
use gix::ObjectId;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn is_http(url: &str) -> bool {
    let l = url.to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://")
}

/// Runs git with the credentials in its environment only.
pub(super) struct Git<'a> {
    pub(super) url: &'a str,
    pub(super) auth: Option<&'a Auth>,
}

impl Git<'_> {
    /// `git ARGS` in `dir`; the token (when the target is http(s)) is an
    /// `http.extraHeader` in `GIT_CONFIG_*` of the child's environment, and
    /// no credential helper or prompt can run.
    pub(super) fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.current_dir(dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null());
        let mut config = vec![("credential.helper".to_owned(), String::new())];
        if let (Some(a), true) = (self.auth, is_http(self.url)) {
            config.push((
                "http.extraHeader".to_owned(),
                format!("Authorization: {}", a.header_value()),
            ));
        }
        c.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.into_iter().enumerate() {
            c.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        c
    }

    /// Runs `cmd` (feeding `input` to its stdin); its stdout, or the error
    /// its stderr describes (a rejected token is [`Error::Auth`]).
    pub(super) fn run(
        &self,
        what: &str,
        mut cmd: Command,
        input: Option<&[u8]>,
    ) -> Result<(bool, String, String), Error> {
        let git_err = |e: std::io::Error| Error::Git {
            what: what.to_owned(),
            message: e.to_string(),
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| Error::Git {
            what: what.to_owned(),
            message: format!("cannot run git ({e}): restore --push needs git installed"),
        })?;
        // Fed from another thread, so a large input cannot block on a full stdout.
        let feeder = match (input, child.stdin.take()) {
            (Some(data), Some(mut stdin)) => {
                let data = data.to_vec();
                Some(std::thread::spawn(move || stdin.write_all(&data)))
            }
            _ => None,
        };
        let out = child.wait_with_output().map_err(git_err)?;
        if let Some(f) = feeder {
            // A git that failed early closed its stdin: its stderr says why.
            let _ = f.join();
        }
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() && is_auth_failure(&stderr) {
            return Err(Error::Auth {
                url: self.url.to_owned(),
            });
        }
        Ok((out.status.success(), stdout, stderr))
    }

    /// Like [`Git::run`], failing unless git succeeded.
    pub(super) fn output(
        &self,
        what: &str,
        cmd: Command,
        input: Option<&[u8]>,
    ) -> Result<String, Error> {
        let (ok, stdout, stderr) = self.run(what, cmd, input)?;
        if ok {
            Ok(stdout)
        } else {
            Err(Error::Git {
                what: what.to_owned(),
                message: last_line(&stderr),
            })
        }
    }
}

pub(super) fn last_line(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)");
    line.trim().to_owned()
}

fn is_auth_failure(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("authentication failed")
        || s.contains("terminal prompts disabled")
        || s.contains("could not read username")
        || s.contains("returned error: 401")
        || s.contains("returned error: 403")
}

/// The target's refs (`git ls-remote --refs`: no HEAD, no peeled tags).
pub(super) fn ls_remote(git: &Git<'_>, dir: &Path) -> Result<BTreeMap<String, ObjectId>, Error> {
    let cmd = git.command(dir, &["ls-remote", "--refs", git.url]);
    let out = git.output("ls-remote", cmd, None)?;
    let mut refs = BTreeMap::new();
    for line in out.lines() {
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        if let Ok(id) = ObjectId::from_hex(id.trim().as_bytes()) {
            refs.insert(name.trim().to_owned(), id);
        }
    }
    Ok(refs)
}

/// The temporary repository the snapshot was restored into.
pub(super) struct Local<'a> {
    pub(super) git: &'a Git<'a>,
    pub(super) repo: &'a PathBuf,
}

impl Local<'_> {
    fn git(&self, args: &[&str]) -> Command {
        self.git.command(self.repo, args)
    }

    pub(super) fn has(&self, id: &ObjectId) -> Result<bool, Error> {
        let cmd = self.git(&["cat-file", "-e", &id.to_string()]);
        Ok(self.git.run("cat-file", cmd, None)?.0)
    }

    pub(super) fn is_ancestor(&self, old: &ObjectId, new: &ObjectId) -> Result<bool, Error> {
        let cmd = self.git(&[
            "merge-base",
            "--is-ancestor",
            &old.to_string(),
            &new.to_string(),
        ]);
        Ok(self.git.run("merge-base", cmd, None)?.0)
    }

    /// The commit `id` peels to, if any.
    pub(super) fn commit_of(&self, id: &ObjectId) -> Result<Option<ObjectId>, Error> {
        let cmd = self.git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{id}^{{commit}}"),
        ]);
        let (ok, out, _) = self.git.run("rev-parse", cmd, None)?;
        Ok(if ok {
            ObjectId::from_hex(out.trim().as_bytes()).ok()
        } else {
            None
        })
    }

    /// `git rev-list --stdin ARGS` over `tips` minus `base`.
    fn rev_list(
        &self,
        args: &[&str],
        tips: &[ObjectId],
        base: &[ObjectId],
    ) -> Result<String, Error> {
        let mut input = String::new();
        for t in tips {
            input.push_str(&format!("{t}\n"));
        }
        for b in base {
            input.push_str(&format!("^{b}\n"));
        }
        let mut all = vec!["rev-list"];
        all.extend_from_slice(args);
        all.push("--stdin");
        let cmd = self.git(&all);
        self.git.output("rev-list", cmd, Some(input.as_bytes()))
    }

    /// Bytes on disk of the objects reachable from `tips` and not from `base`.
    pub(super) fn disk_usage(&self, tips: &[ObjectId], base: &[ObjectId]) -> Result<u64, Error> {
        let out = self.rev_list(&["--objects", "--disk-usage"], tips, base)?;
        out.trim().parse().map_err(|_| Error::Git {
            what: "rev-list --disk-usage".into(),
            message: format!("unexpected output {:?}", out.trim()),
        })
    }

    /// The first-parent history of `tip` not in `base`, oldest first.
    pub(super) fn first_parent_chain(
        &self,
        tip: &ObjectId,
        base: &[ObjectId],
    ) -> Result<Vec<ObjectId>, Error> {
        let out = self.rev_list(&["--first-parent", "--reverse"], &[*tip], base)?;
        Ok(out
            .lines()
            .filter_map(|l| ObjectId::from_hex(l.trim().as_bytes()).ok())
            .collect())
    }

    /// `git push --porcelain URL REFSPECS`: per ref (flag, ref, summary).
    /// A push the host refused as a whole is an error.
    pub(super) fn push(&self, refspecs: &[String]) -> Result<Vec<(String, String, String)>, Error> {
        let mut args = vec!["push", "--porcelain", "--no-verify", self.git.url];
        args.extend(refspecs.iter().map(String::as_str));
        let cmd = self.git(&args);
        let (ok, stdout, stderr) = self.git.run("push", cmd, None)?;
        let mut lines = Vec::new();
        for line in stdout.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(flag), Some(spec), summary) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some((_, to)) = spec.split_once(':') else {
                continue;
            };
            lines.push((
                flag.trim().to_owned(),
                to.to_owned(),
                summary.unwrap_or("").trim().to_owned(),
            ));
        }
        if !ok && lines.is_empty() {
            return Err(Error::Git {
                what: "push".into(),
                message: last_line(&stderr),
            });
        }
        tracing::debug!(refs = refspecs.len(), ok, "pushed");
        Ok(lines)
    }
}
