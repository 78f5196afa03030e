//! Git fixtures: the `git` CLI in a hermetic environment (no system or global
//! config, fixed identity, no prompts), [`TestRepo`] (a working repository with
//! a deterministic history that can be mirrored into bare repositories) and
//! inspectors of any repository ([`refs_of`], [`head_of`], [`object_count`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::OnceLock;

use tempfile::TempDir;

/// Author and committer name used for every commit and tag.
pub const GIT_NAME: &str = "RepoVault Test";
/// Author and committer e-mail used for every commit and tag.
pub const GIT_EMAIL: &str = "test@repovault.invalid";
/// Commit time (unix seconds) of the first commit of a fresh [`TestRepo`].
pub const DEFAULT_TIME: i64 = 1_700_000_000;

/// `-c` settings passed to every git invocation.
const GIT_CONFIG: &[&str] = &[
    "init.defaultBranch=main",
    "protocol.file.allow=always",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "credential.helper=",
    "advice.detachedHead=false",
];

/// An empty directory used as `HOME` and `XDG_CONFIG_HOME` for git.
fn fake_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let p = std::env::temp_dir().join("repovault-test-home");
        std::fs::create_dir_all(&p).expect("create fake HOME for git");
        p
    })
}

/// Applies the hermetic git environment to any command (git or not): removes
/// every inherited `GIT_*` and `*_proxy` variable and sets a fixed identity, an
/// empty `HOME`, no system/global config, `LC_ALL=C` and no interactive prompts.
pub fn hermetic(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy().to_ascii_uppercase();
        if k.starts_with("GIT_") || k.ends_with("_PROXY") {
            cmd.env_remove(&key);
        }
    }
    let home: OsString = fake_home().into();
    cmd.env_remove("SSH_ASKPASS")
        .env_remove("EMAIL")
        .env_remove("LANGUAGE")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", GIT_NAME)
        .env("GIT_AUTHOR_EMAIL", GIT_EMAIL)
        .env("GIT_COMMITTER_NAME", GIT_NAME)
        .env("GIT_COMMITTER_EMAIL", GIT_EMAIL)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
}

/// A hermetic `git -c ... <args>` command running in `dir`, ready to be
/// customised (extra env, stdin, ...) before spawning.
pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    hermetic(&mut cmd).current_dir(dir);
    for kv in GIT_CONFIG {
        cmd.arg("-c").arg(kv);
    }
    cmd.args(args);
    cmd
}

fn git_output(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = git_command(dir, args);
    cmd.stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run git");
    let err = String::from_utf8_lossy(&out.stderr);
    let (dir, status) = (dir.display(), out.status);
    assert!(
        status.success(),
        "git {args:?} in {dir} failed ({status}):\n{err}"
    );
    out
}

/// Detaches stdin, stdout and stderr of `cmd`.
pub(crate) fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Runs git in `dir`; panics (showing stderr) on failure, returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args, &[]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git in `dir` and reports whether it exited successfully (output discarded).
pub fn git_ok(dir: &Path, args: &[&str]) -> bool {
    let status = quiet(&mut git_command(dir, args)).status();
    status.expect("cannot run git").success()
}

/// Runs git in `dir`; panics (showing stderr) on failure, returns raw stdout.
pub fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    git_output(dir, args, &[]).stdout
}

/// Appends to a `git fast-import` stream the header of a commit on `refname`
/// (with `mark :<mark>` when given), committed by the test identity at
/// [`DEFAULT_TIME`] with `message`; its file lines (`M ...`) follow.
pub fn fast_import_commit(stream: &mut Vec<u8>, refname: &str, mark: Option<usize>, message: &str) {
    use std::io::Write;
    writeln!(stream, "commit {refname}").unwrap();
    if let Some(mark) = mark {
        writeln!(stream, "mark :{mark}").unwrap();
    }
    write!(
        stream,
        "committer {GIT_NAME} <{GIT_EMAIL}> {DEFAULT_TIME} +0000\ndata {}\n{message}",
        message.len()
    )
    .unwrap();
}

/// Feeds `stream` to `git fast-import --quiet --force` in `repo` (a
/// fast-import stream builds big histories far faster than commits do);
/// panics when it fails.
pub fn fast_import(repo: &Path, stream: &[u8]) {
    use std::io::Write;
    let mut cmd = git_command(repo, &["fast-import", "--quiet", "--force"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn git fast-import");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(stream).expect("feed git fast-import");
    drop(stdin);
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

/// All refs of `repo` as sorted `(refname, objectname)` pairs (annotated tags
/// map to the tag object, not the commit). `HEAD` is not included.
pub fn refs_of(repo: &Path) -> Vec<(String, String)> {
    let out = git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let mut refs: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect();
    refs.sort();
    refs
}

/// Where `HEAD` of `repo` points: the ref name (e.g. `refs/heads/main`) or, when
/// detached, the commit id.
pub fn head_of(repo: &Path) -> String {
    let mut cmd = git_command(repo, &["symbolic-ref", "-q", "HEAD"]);
    let out = cmd.stdin(Stdio::null()).output().expect("run git");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        git(repo, &["rev-parse", "HEAD"])
    }
}

/// Number of objects reachable from any ref (`git rev-list --all --objects | wc -l`).
pub fn object_count(repo: &Path) -> usize {
    git_bytes(repo, &["rev-list", "--all", "--objects"])
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

/// A non-bare working repository (`<tempdir>/work`) with helpers to build a
/// deterministic history. Commit and tag dates start at [`DEFAULT_TIME`] and
/// advance by 60 s per commit unless set with [`TestRepo::set_time`].
pub struct TestRepo {
    /// Temporary directory holding the work tree and any bare clones; removed on drop.
    pub dir: TempDir,
    /// Path of the working repository (`dir/work`).
    pub path: PathBuf,
    time: AtomicI64,
    clones: AtomicU32,
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRepo {
    /// Creates an empty repository (`git init`, branch `main`).
    pub fn new() -> TestRepo {
        let dir = tempfile::Builder::new().prefix("repovault-repo-").tempdir();
        let dir = dir.expect("create temp dir");
        git(dir.path(), &["init", "-q", "work"]);
        let path = dir.path().join("work");
        TestRepo {
            dir,
            path,
            time: AtomicI64::new(DEFAULT_TIME),
            clones: AtomicU32::new(0),
        }
    }

    /// Runs git inside the work tree with the repository's current commit date.
    pub fn git(&self, args: &[&str]) -> String {
        let date = format!("@{} +0000", self.time.load(Ordering::SeqCst));
        let env = [
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_DATE", date),
        ];
        let out = git_output(&self.path, args, &env);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Sets the author/committer/tagger date (unix seconds) of subsequent commits and tags.
    pub fn set_time(&self, unix_secs: i64) {
        self.time.store(unix_secs, Ordering::SeqCst);
    }

    /// Writes `bytes` to `rel_path` in the work tree, creating parent directories.
    pub fn write(&self, rel_path: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path.join(rel_path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Stages everything (`add -A`) and commits (empty commits allowed); returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.time.fetch_add(60, Ordering::SeqCst);
        self.rev_parse("HEAD")
    }

    /// Writes one file and commits it; returns the commit id.
    pub fn commit_file(&self, rel_path: &str, contents: impl AsRef<[u8]>, msg: &str) -> String {
        self.write(rel_path, contents);
        self.commit(msg)
    }

    /// Creates branch `name` at `HEAD` (without switching to it).
    pub fn branch(&self, name: &str) {
        self.git(&["branch", name]);
    }

    /// Checks out a branch, tag or commit.
    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "-q", name]);
    }

    /// Creates lightweight tag `name` pointing at `target` (any revision).
    pub fn tag_lightweight(&self, name: &str, target: &str) {
        self.git(&["tag", name, target]);
    }

    /// Creates annotated tag `name` on `target` with message `msg`; returns the tag object id.
    pub fn tag_annotated(&self, name: &str, target: &str, msg: &str) -> String {
        self.git(&["tag", "-a", "-m", msg, name, target]);
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Resolves a revision to a full object id.
    pub fn rev_parse(&self, rev: &str) -> String {
        git(&self.path, &["rev-parse", "--verify", rev])
    }

    /// Makes the bare repository `bare` equal to the work repository (refs and
    /// objects, forced; its HEAD untouched).
    pub fn publish(&self, bare: &Path) {
        let bare = bare.to_str().expect("test paths are UTF-8");
        self.git(&["push", "-q", "--mirror", "--force", bare]);
    }

    /// Mirrors the repository (`git clone --mirror`) into a new bare repository
    /// `mirror-N.git` next to the work tree inside [`TestRepo::dir`]; returns its path.
    pub fn bare_clone(&self) -> PathBuf {
        let n = self.clones.fetch_add(1, Ordering::SeqCst);
        let dest = self.dir.path().join(format!("mirror-{n}.git"));
        self.bare_clone_to(&dest);
        dest
    }

    /// Mirrors the repository into a bare repository at `rel` inside a new
    /// temporary directory (a server's base); returns both.
    pub fn mirror_in_tempdir(&self, rel: &str) -> (TempDir, PathBuf) {
        let base = tempfile::Builder::new().prefix("repovault-src-").tempdir();
        let base = base.expect("create temp dir");
        let bare = base.path().join(rel);
        self.bare_clone_to(&bare);
        (base, bare)
    }

    /// Mirrors the repository into the bare repository `dest` (which must not
    /// exist), e.g. `<server base>/org/name.git`.
    pub fn bare_clone_to(&self, dest: &Path) {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        let (src, dst) = (self.path.to_str().unwrap(), dest.to_str().unwrap());
        git(self.dir.path(), &["clone", "-q", "--mirror", src, dst]);
    }
}
