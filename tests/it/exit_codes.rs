//! The README's exit-code table, one row per code and verb, each a real case
//! through the binary: a store that works, one that is not a store, one whose
//! write lock another process holds, a damaged one, a bad command line, a
//! partial sync and an interrupted one.

use crate::support::{describe, free_port, run_with_timeout, tempdir, TestRepo, Vault};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A repository with a little history.
fn small_repo() -> TestRepo {
    let r = TestRepo::new();
    r.commit_file("README", "exit codes\n", "first");
    r.commit_file("src/lib.rs", "fn f() {}\n".repeat(40), "second");
    r
}

/// `flock(1)` holding the store's write lock (as another writer would) until dropped.
struct Held(Child);

impl Held {
    fn lock(store: &Path) -> Held {
        let child = Command::new("flock")
            .arg(store.join("lock"))
            .args(["sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("flock(1) from util-linux");
        // Held once /proc/locks lists it.
        let pid = child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(pid.as_str()))
        {
            assert!(Instant::now() < deadline, "flock never took the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        Held(child)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One row: what is run, and the code the README gives it.
struct Row {
    what: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    code: i32,
}

fn row(what: &'static str, code: i32, args: &[&str]) -> Row {
    Row {
        what,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        code,
    }
}

fn run(store: &Path, r: &Row) -> Output {
    let mut cmd = Command::new(crate::support::BIN);
    crate::support::hermetic(&mut cmd);
    cmd.env_remove("REPOVAULT_STORE")
        .arg("--store")
        .arg(store)
        .args(&r.args)
        .envs(r.env.iter().copied());
    run_with_timeout(&mut cmd, Duration::from_secs(300))
}

#[test]
fn every_exit_code_of_the_readme() {
    // A store with one snapshot of `repo`.
    let good = Vault::new();
    let repo = small_repo();
    let src = repo.path.to_str().unwrap().to_owned();
    let cache = good.cache.to_str().unwrap().to_owned();
    good.ok(&["sync", &src, "--name", "repo", "--cache", &cache]);

    // The same, with one of its packs deleted: damage for verify.
    let damaged = Vault::new();
    let dcache = damaged.cache.to_str().unwrap().to_owned();
    damaged.ok(&["sync", &src, "--name", "repo", "--cache", &dcache]);
    let packs: Vec<_> = std::fs::read_dir(damaged.store.join("packs"))
        .expect("the store's packs directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    assert!(!packs.is_empty());
    std::fs::remove_file(&packs[0]).unwrap();

    // A directory that is not a store.
    let scratch = tempdir("repovault-exit-codes-");
    let not_a_store = scratch.path().join("not-a-store");
    std::fs::create_dir(&not_a_store).unwrap();
    std::fs::write(not_a_store.join("notes.txt"), "not a store\n").unwrap();

    let dest = |name: &str| scratch.path().join(name).to_str().unwrap().to_owned();
    let unreachable = format!("git://127.0.0.1:{}/gone.git", free_port());
    let fresh_cache = dest("fresh-cache");

    let on_good = vec![
        row("verify on a clean store", 0, &["verify"]),
        row(
            "restore of a snapshot",
            0,
            &[
                "restore",
                "--repo",
                "repo",
                "--latest",
                &dest("restored.git"),
            ],
        ),
        row("init where a store is in the way", 1, &["init"]),
        row(
            "restore of a repository the store does not have",
            1,
            &["restore", "--repo", "nope", "--latest", &dest("nope.git")],
        ),
        row(
            "restore --at garbage",
            2,
            &[
                "restore",
                "--repo",
                "repo",
                "--at",
                "garbage",
                &dest("x.git"),
            ],
        ),
        row("an unknown option", 2, &["verify", "--no-such-option"]),
        row("forget without a keep rule", 2, &["forget"]),
        row(
            "sync of two sources, one unreachable",
            3,
            &["sync", &src, &unreachable, "--cache", &fresh_cache],
        ),
        Row {
            env: vec![("REPOVAULT_INTERRUPT_AT", "fetching")],
            ..row(
                "sync interrupted (SIGINT) while fetching",
                130,
                &[
                    "sync",
                    &src,
                    "--name",
                    "interrupted",
                    "--cache",
                    &dest("cache-130"),
                ],
            )
        },
    ];
    let on_damaged = vec![row("verify of a store missing a pack", 12, &["verify"])];
    let on_not_a_store = vec![
        row("verify", 10, &["verify"]),
        row("forget", 10, &["forget", "--keep-last", "1"]),
        row("prune", 10, &["prune"]),
        row(
            "restore",
            10,
            &["restore", "--repo", "repo", "--latest", &dest("r10.git")],
        ),
        row("repair-index", 10, &["repair-index"]),
        row("snapshots", 10, &["snapshots"]),
    ];

    let mut failures = Vec::new();
    let mut check = |store: &Path, rows: &[Row], on: &str| {
        for r in rows {
            let out = run(store, r);
            if out.status.code() != Some(r.code) {
                failures.push(format!(
                    "{} ({on}): want {}, got {:?}\n{}",
                    r.what,
                    r.code,
                    out.status.code(),
                    describe(&out)
                ));
            }
        }
    };
    check(&good.store, &on_good, "a store");
    check(&damaged.store, &on_damaged, "a damaged store");
    check(&not_a_store, &on_not_a_store, "not a store");

    // A store whose write lock another process holds. forget, prune and
    // repair-index wait 60 s for it, so those rows run side by side.
    let held = Held::lock(&good.store);
    let on_locked = [
        row(
            "sync",
            11,
            &[
                "sync",
                &src,
                "--name",
                "repo",
                "--lock-wait",
                "0",
                "--cache",
                &cache,
            ],
        ),
        row("forget", 11, &["forget", "--keep-last", "1"]),
        row("prune", 11, &["prune"]),
        row("repair-index", 11, &["repair-index"]),
        // Readers take no write lock: they run beside a writer (README, Files).
        row("verify (a reader)", 0, &["verify"]),
        row(
            "restore (a reader)",
            0,
            &["restore", "--repo", "repo", "--latest", &dest("beside.git")],
        ),
    ];
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = on_locked
            .iter()
            .map(|r| s.spawn(|| run(&good.store, r)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(held);
    for (r, out) in on_locked.iter().zip(outs) {
        if out.status.code() != Some(r.code) {
            failures.push(format!(
                "{} (a locked store): want {}, got {:?}\n{}",
                r.what,
                r.code,
                out.status.code(),
                describe(&out)
            ));
        } else if r.code == 11 {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("store is locked by"), "{}: {err}", r.what);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
