//! Running the binary under test: [`Vault`] (a store, a mirror cache and a
//! private HOME in one temporary directory, with `cmd`/`run`/`ok`/`json`),
//! [`rv`]/[`rv_ok`]/[`rv_json`] for a store at any path, and the process
//! helpers every test uses ([`run_with_timeout`], [`describe`], [`parse_json`],
//! [`tempdir`], [`cp_a`], [`path_str`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::git::hermetic;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_repovault");

/// No single run of the binary in these tests should take longer.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Exit status, stdout and stderr of a finished process, for assertion messages.
pub fn describe(out: &std::process::Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to completion, capturing stdout and stderr (read on their own
/// threads so a full pipe never blocks the child), killing it and failing the
/// test when it runs longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: std::time::Duration) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {timeout:?}: killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// stdout parsed as one JSON document (the test fails with the whole output otherwise).
pub fn parse_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", describe(out)))
}

/// A temporary directory named `<prefix>XXXXXX`.
pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

/// A test path as `&str` (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Applies the environment every run of the binary gets: the hermetic git
/// environment (see [`hermetic`]), no `REPOVAULT_STORE`, `RUST_LOG` or
/// `REPOVAULT_CRASH_AT` from the caller, and when `home` is given, `HOME`,
/// `XDG_DATA_HOME` and `XDG_CACHE_HOME` inside it.
pub fn test_env<'a>(cmd: &'a mut Command, home: Option<&Path>) -> &'a mut Command {
    hermetic(cmd)
        .env_remove("REPOVAULT_STORE")
        .env_remove("RUST_LOG")
        .env_remove("REPOVAULT_CRASH_AT");
    if let Some(home) = home {
        cmd.env("HOME", home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CACHE_HOME", home.join("xdg-cache"));
    }
    cmd
}

/// `repovault ARGS...` (no `--store`) in the test environment.
pub fn rv_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    test_env(&mut cmd, None).args(args);
    cmd
}

/// Runs `repovault ARGS...` (no `--store`) with [`RUN_TIMEOUT`].
pub fn rv_args(args: &[&str]) -> Output {
    run_with_timeout(&mut rv_cmd(args), RUN_TIMEOUT)
}

/// `repovault --store STORE ARGS...` in the test environment.
pub fn rv_store_cmd(store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    test_env(&mut cmd, None)
        .arg("--store")
        .arg(store)
        .args(args);
    cmd
}

/// Runs `repovault --store STORE ARGS...` with [`RUN_TIMEOUT`].
pub fn rv(store: &Path, args: &[&str]) -> Output {
    run_with_timeout(&mut rv_store_cmd(store, args), RUN_TIMEOUT)
}

/// Asserts that `out` succeeded (showing it otherwise) and returns it.
pub fn assert_ok(out: Output, args: &[&str]) -> Output {
    assert!(
        out.status.success(),
        "repovault {args:?} failed:\n{}",
        describe(&out)
    );
    out
}

/// [`rv`], asserted to succeed.
pub fn rv_ok(store: &Path, args: &[&str]) -> Output {
    assert_ok(rv(store, args), args)
}

/// [`rv_ok`] with stdout parsed as JSON.
pub fn rv_json(store: &Path, args: &[&str]) -> serde_json::Value {
    parse_json(&rv_ok(store, args))
}

/// The refs of one snapshot of `snapshots --json --refs`, `HEAD` left out, in
/// the order listed.
pub fn snapshot_ref_entries(snap: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    snap["refs"]
        .as_array()
        .expect("refs array")
        .iter()
        .filter(|r| r["name"] != "HEAD")
}

/// [`snapshot_ref_entries`] as sorted `(name, target)` pairs, the form of
/// [`refs_of`](super::git::refs_of).
pub fn snapshot_ref_pairs(snap: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = snapshot_ref_entries(snap)
        .map(|r| {
            (
                r["name"].as_str().expect("ref name").to_owned(),
                r["target"].as_str().expect("ref target").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `repovault --store STORE sync SOURCE --cache CACHE --name NAME --json`,
/// asserted to succeed.
pub fn rv_sync(store: &Path, cache: &Path, source: &Path, name: &str) -> Output {
    let (source, cache) = (path_str(source), path_str(cache));
    let args = ["sync", source, "--cache", cache, "--name", name, "--json"];
    rv_ok(store, &args)
}

/// A store, a mirror cache path and a private HOME in one temporary
/// directory; test modules add their own verbs in `impl Vault` blocks.
pub struct Vault {
    dir: TempDir,
    /// The store (`DIR/store`).
    pub store: PathBuf,
    /// The mirror cache (`DIR/cache`, made by the first sync).
    pub cache: PathBuf,
}

impl Default for Vault {
    fn default() -> Self {
        Self::new()
    }
}

impl Vault {
    /// A new store (`repovault init`), the cache not created yet.
    pub fn new() -> Vault {
        Self::with_init_args(&[])
    }

    /// A new store made by `repovault init INIT_ARGS...`.
    pub fn with_init_args(init_args: &[&str]) -> Vault {
        let v = Self::uninit();
        let mut args = vec!["init"];
        args.extend_from_slice(init_args);
        v.ok(&args);
        v
    }

    /// The paths only: no store made yet.
    pub fn uninit() -> Vault {
        let dir = tempdir("repovault-vault-");
        Vault {
            store: dir.path().join("store"),
            cache: dir.path().join("cache"),
            dir,
        }
    }

    /// The temporary directory (the binary's HOME).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `COMMAND` with the test environment and this vault's HOME (for
    /// running the binary through another program, e.g. `setpriv`).
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        test_env(cmd, Some(self.dir.path()))
    }

    /// `repovault ARGS...` (no `--store`).
    pub fn bare_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        self.env(&mut cmd).args(args);
        cmd
    }

    /// `repovault --store STORE ARGS...` for another store path.
    pub fn cmd_at(&self, store: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        self.env(&mut cmd).arg("--store").arg(store).args(args);
        cmd
    }

    /// `repovault --store STORE ARGS...`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_at(&self.store, args)
    }

    /// [`Vault::cmd`] with extra environment variables.
    pub fn cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = self.cmd(args);
        cmd.envs(env.iter().copied());
        cmd
    }

    /// Runs `cmd(args)` with [`RUN_TIMEOUT`].
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(&mut self.cmd(args), RUN_TIMEOUT)
    }

    /// Runs `cmd_env(args, env)` with [`RUN_TIMEOUT`].
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_with_timeout(&mut self.cmd_env(args, env), RUN_TIMEOUT)
    }

    /// Runs `cmd(args)` and asserts it succeeded.
    pub fn ok(&self, args: &[&str]) -> Output {
        assert_ok(self.run(args), args)
    }

    /// Runs `cmd(args)`, asserts it succeeded and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        parse_json(&self.ok(args))
    }

    /// `snapshots --repo REPO --json --refs`: the repository's snapshots, oldest first.
    pub fn snapshots(&self, repo: &str) -> Vec<serde_json::Value> {
        let v = self.json(&["snapshots", "--repo", repo, "--json", "--refs"]);
        v.as_array()
            .expect("snapshots --json gives an array")
            .clone()
    }

    /// The newest snapshot of `repo`.
    pub fn latest(&self, repo: &str) -> serde_json::Value {
        self.snapshots(repo)
            .pop()
            .unwrap_or_else(|| panic!("{repo} has no snapshot"))
    }

    /// `sync SOURCE --cache CACHE --name NAME --json`, asserted to succeed;
    /// its JSON summary.
    pub fn sync_as(&self, source: &Path, name: &str) -> serde_json::Value {
        let (source, cache) = (path_str(source), path_str(&self.cache));
        self.json(&["sync", source, "--cache", cache, "--name", name, "--json"])
    }

    /// `stats --json`.
    pub fn stats(&self) -> serde_json::Value {
        self.json(&["stats", "--json"])
    }
}

/// `cp -a FROM TO` (a repository or a store copied with its modes), asserted.
pub fn cp_a(from: &Path, to: &Path) {
    let out = run_with_timeout(
        Command::new("cp").arg("-a").arg(from).arg(to),
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "cp -a failed:\n{}", describe(&out));
}
