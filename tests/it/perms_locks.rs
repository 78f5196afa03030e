//! File modes of the store and the mirror cache, readers against prune, the
//! store lock's wait and holder, exit codes and a closed stdout; every test
//! runs the real binary (issue 12 items 9, 10, 12; issue 13 items 11, 12).

use crate::support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{describe, parse_json, path_str, random_bytes, run_with_timeout, TestRepo, Vault};

const TIMEOUT: Duration = Duration::from_secs(600);

impl Vault {
    /// `sync SOURCE --cache CACHE`, asserted.
    fn sync_path(&self, source: &Path) -> Output {
        self.ok(&["sync", path_str(source), "--cache", path_str(&self.cache)])
    }
}

/// Forces every branch of `r` into `bare` (tags and deletions untouched).
fn fetch_heads(r: &TestRepo, bare: &Path) {
    let src = path_str(&r.path);
    support::git(
        bare,
        &["fetch", "-q", "--force", src, "+refs/heads/*:refs/heads/*"],
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// 12.9: the store and the cache are private whatever the umask
// ---------------------------------------------------------------------------

/// Every file and directory under `root` (and `root`) whose mode lets group or others in.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_owned()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        seen += 1;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bad.push(format!("{:o} {}", mode, p.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    assert!(seen > 3, "{} holds almost nothing", root.display());
    bad
}

/// Runs every command that creates files (init, sync twice, forget, prune,
/// verify, repair-index, restore) under `umask` and checks the modes.
fn private_under_umask(umask: &str) {
    let env = Vault::uninit();
    let r = TestRepo::new();
    r.commit_file("a.bin", random_bytes(1, 200_000), "a");
    r.commit_file("b.txt", b"hello\n", "b");
    r.tag_annotated("v1", "HEAD", "v1");
    let bare = r.bare_clone();
    let sh = |args: &str| -> Output {
        // The binary's own umask is what is tested: set the shell's, then exec it.
        let script = format!("umask {umask}; exec \"$0\" \"$@\"");
        let c = env.cmd(&[]);
        let prog = c.get_program().to_owned();
        let inner: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
        let mut s = Command::new("sh");
        s.arg("-c").arg(script).arg(prog).args(inner);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        s.args(args.split_whitespace());
        let out = run_with_timeout(&mut s, TIMEOUT);
        assert!(
            out.status.success(),
            "umask {umask}: {args}: {}",
            describe(&out)
        );
        out
    };
    let cache = env.cache.clone();
    let (b, c) = (bare.to_str().unwrap(), cache.to_str().unwrap());
    sh("init");
    sh(&format!("sync {b} --cache {c}"));
    r.commit_file("a.bin", random_bytes(2, 200_000), "a2");
    support::git(
        &bare,
        &[
            "fetch",
            "-q",
            r.path.to_str().unwrap(),
            "+refs/heads/*:refs/heads/*",
        ],
    );
    sh(&format!("sync {b} --cache {c}"));
    sh("forget --keep-last 1 --prune");
    sh("verify --read-data");
    sh("repair-index");
    sh("verify");
    let dest = env.dir().join("restored.git");
    sh(&format!(
        "restore --repo mirror-0 --latest {}",
        dest.display()
    ));
    let bad: Vec<String> = open_to_others(&env.store)
        .into_iter()
        .chain(open_to_others(&cache))
        .collect();
    assert!(
        bad.is_empty(),
        "umask {umask}: open to group or others:\n{}",
        bad.join("\n")
    );
    // The restored repository is the user's: it follows their umask.
    let mode = std::fs::metadata(dest.join("HEAD"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let want = 0o666 & !u32::from_str_radix(umask, 8).unwrap();
    assert_eq!(mode, want, "umask {umask}: restored HEAD has mode {mode:o}");
}

#[test]
fn store_and_cache_are_private_under_umask_000() {
    private_under_umask("000");
}

#[test]
fn store_and_cache_are_private_under_umask_022() {
    private_under_umask("022");
}

// ---------------------------------------------------------------------------
// 12.10: a restore that overlaps a prune never loses a pack
// ---------------------------------------------------------------------------

/// A store with two snapshots of one repository: the first holds blobs `a`
/// and `b` in one data pack, the second (a force-push) only `b`. Forgetting
/// the first leaves that pack half live, so prune repacks `b` and deletes it.
fn store_for_prune(env: &Vault) -> (TestRepo, PathBuf) {
    let r = TestRepo::new();
    r.commit_file("a.bin", random_bytes(10, 300_000), "a");
    r.commit_file("b.bin", random_bytes(11, 300_000), "b");
    let bare = r.bare_clone();
    env.ok(&["init"]);
    env.sync_path(&bare);
    // An orphan history holding b only: a is needed by the first snapshot alone.
    r.git(&["checkout", "-q", "--orphan", "only-b"]);
    r.git(&["rm", "-q", "--cached", "a.bin"]);
    std::fs::remove_file(r.path.join("a.bin")).unwrap();
    r.commit("b alone");
    r.git(&["branch", "-f", "main", "only-b"]);
    r.git(&["checkout", "-q", "main"]);
    r.git(&["branch", "-D", "only-b"]);
    fetch_heads(&r, &bare);
    env.sync_path(&bare);
    (r, bare)
}

fn wait_for(path: &Path, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{what} ended ({st}) before reaching its pause point");
        }
        assert!(
            Instant::now() < deadline,
            "{what} never reached its pause point"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(mut child: Child) -> Output {
    let mut out = Vec::new();
    let mut err = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut out).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut err).unwrap();
    }
    Output {
        status: child.wait().unwrap(),
        stdout: out,
        stderr: err,
    }
}

/// A restore that has read the index (its view: the old packs) and is about to
/// read the packs, then a forget --prune that repacks and deletes those packs:
/// prune waits for the restore, which succeeds, and then deletes them.
#[test]
fn restore_overlapping_a_prune_reads_every_pack() {
    let env = Vault::uninit();
    let (_r, bare) = store_for_prune(&env);
    let packs_before: Vec<_> = std::fs::read_dir(env.store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let gate = env.dir().join("gate");
    let reached = env.dir().join("gate.reached");
    let dest = env.dir().join("restored.git");
    let mut restore = env
        .cmd(&[])
        .args(["restore", "--repo", "mirror-0", "--latest"])
        .arg(&dest)
        .env("REPOVAULT_PAUSE_AT", "restore-walked")
        .env("REPOVAULT_PAUSE_GATE", &gate)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&reached, &mut restore, "restore");

    let prune_err = env.dir().join("prune.stderr");
    let mut prune = env
        .cmd(&[])
        .args(["forget", "--keep-last", "1", "--prune", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&prune_err).unwrap())
        .spawn()
        .unwrap();
    // Prune either finishes (deleting the packs under the restore: the bug)
    // or says it waits for the reader.
    let deadline = Instant::now() + Duration::from_secs(120);
    let waited = loop {
        if prune.try_wait().unwrap().is_some() {
            break false;
        }
        if std::fs::read_to_string(&prune_err)
            .unwrap_or_default()
            .contains("waiting up to")
        {
            break true;
        }
        assert!(Instant::now() < deadline, "prune neither ended nor waited");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::fs::write(&gate, b"").unwrap();
    let restored = finish(restore);
    let pruned = finish(prune);
    let prune_stderr = std::fs::read_to_string(&prune_err).unwrap();
    assert!(
        restored.status.success(),
        "the restore overlapping the prune failed (prune waited: {waited}):\n{}\nprune: {prune_stderr}",
        describe(&restored)
    );
    assert!(
        pruned.status.success(),
        "prune: {}\n{prune_stderr}",
        describe(&pruned)
    );
    assert!(
        waited,
        "prune did not wait for the running restore: {prune_stderr}"
    );
    assert_eq!(
        prune_stderr.matches("waiting up to").count(),
        1,
        "said once: {prune_stderr}"
    );
    // Prune did its work once the restore ended: the old data pack is gone.
    let v = parse_json(&pruned);
    assert!(
        v["prune"]["packs_repacked"].as_u64().unwrap()
            + v["prune"]["packs_deleted"].as_u64().unwrap()
            > 0,
        "prune freed nothing, so the test proves nothing: {v}"
    );
    assert_eq!(v["prune"]["packs_left_for_next_prune"], 0, "{v}");
    let packs_after: Vec<_> = std::fs::read_dir(env.store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        packs_before.iter().any(|p| !packs_after.contains(p)),
        "no pack was deleted: {packs_before:?} -> {packs_after:?}"
    );
    assert_eq!(
        support::refs_of(&dest),
        support::refs_of(&bare),
        "restored refs differ from the source"
    );
    let fsck = support::git_command(&dest, &["fsck", "--full"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    env.ok(&["verify", "--read-data"]);
}

/// Restores in a loop while forget --prune repacks and deletes packs, over
/// several rounds: every restore succeeds.
#[test]
fn restores_in_a_loop_while_prune_deletes_packs() {
    let env = Vault::uninit();
    let (r, bare) = store_for_prune(&env);
    let b = "mirror-0".to_owned();
    for round in 0..3u64 {
        // A new snapshot with a new blob, then prune the older ones away while restoring.
        r.commit_file("c.bin", random_bytes(100 + round, 300_000), "c");
        fetch_heads(&r, &bare);
        env.sync_path(&bare);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let failures = std::sync::Mutex::new(Vec::new());
        let restores = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || i == 0 {
                    i += 1;
                    let dest = env.dir().join(format!("r{round}-{i}.git"));
                    let out = run_with_timeout(
                        env.cmd(&[])
                            .args(["restore", "--repo", &b, "--latest"])
                            .arg(&dest),
                        TIMEOUT,
                    );
                    restores.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if !out.status.success() {
                        failures.lock().unwrap().push(describe(&out));
                    }
                    let _ = std::fs::remove_dir_all(&dest);
                }
            });
            std::thread::sleep(Duration::from_millis(200));
            let out = env.run(&["forget", "--keep-last", "1", "--prune"]);
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(out.status.success(), "round {round}: {}", describe(&out));
        });
        let failures = failures.into_inner().unwrap();
        assert!(
            failures.is_empty(),
            "round {round}: {} of {} restores failed:\n{}",
            failures.len(),
            restores.into_inner(),
            failures.join("\n")
        );
    }
    env.ok(&["verify", "--read-data"]);
}

// ---------------------------------------------------------------------------
// 13.11: waiting for the store lock says so, once, naming the holder
// ---------------------------------------------------------------------------

/// A repovault holder: a sync stuck listing the refs of a server that never answers.
#[test]
fn lock_wait_is_announced_once_naming_a_repovault_holder() {
    let env = Vault::uninit();
    env.ok(&["init"]);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("git://{}/stuck.git", silent.local_addr().unwrap());
    let mut holder = env
        .cmd(&[])
        .args(["sync", &url, "--cache", env.cache.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The holder has the lock once it has connected.
    let (_conn, _) = silent.accept().unwrap();
    let repo = TestRepo::new();
    repo.commit_file("f", b"x\n", "x");
    let start = Instant::now();
    let out = env.run(&[
        "sync",
        repo.path.to_str().unwrap(),
        "--lock-wait",
        "2",
        "--cache",
        env.cache.to_str().unwrap(),
    ]);
    let waited = start.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(11), "{}", describe(&out));
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    let err = stderr(&out);
    let store = env.store.display().to_string();
    let who = format!("pid {} on ", holder.id());
    let waiting: Vec<&str> = err.lines().filter(|l| l.contains("waiting")).collect();
    assert_eq!(waiting.len(), 1, "the wait is said exactly once: {err}");
    for needle in [
        store.as_str(),
        who.as_str(),
        "repovault sync",
        "since 20",
        "up to 2s",
    ] {
        assert!(
            waiting[0].contains(needle),
            "{needle:?} not in {:?}",
            waiting[0]
        );
    }
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("repovault: error: store is locked by "),
        "{last}"
    );
    assert!(
        last.contains(&who) && last.contains("repovault sync"),
        "{last}"
    );
    assert!(!err.contains("pid 0") && !err.contains("unknown"), "{err}");
}

/// A holder that is not repovault (`flock(1)` on the lock file): its pid and
/// command line, not "pid 0 on unknown".
#[test]
fn lock_held_by_another_program_names_it() {
    let env = Vault::uninit();
    env.ok(&["init"]);
    let lock = env.store.join("lock");
    let mut flock = Command::new("flock")
        .arg(&lock)
        // A credential in the holder's command line must not be repeated.
        .args([
            "sh",
            "-c",
            "sleep 60",
            "https://u:s3cret@example.invalid/r.git",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("flock(1) from util-linux");
    // flock(1) holds the lock once /proc/locks lists it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&flock.id().to_string()))
    {
        assert!(Instant::now() < deadline, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let repo = TestRepo::new();
    repo.commit_file("f", b"x\n", "x");
    let out = env.run(&[
        "sync",
        repo.path.to_str().unwrap(),
        "--lock-wait",
        "1",
        "--cache",
        env.cache.to_str().unwrap(),
    ]);
    let out_json = env.run(&[
        "sync",
        repo.path.to_str().unwrap(),
        "--lock-wait",
        "1",
        "--json",
        "--cache",
        env.cache.to_str().unwrap(),
    ]);
    let _ = flock.kill();
    let _ = flock.wait();
    assert_eq!(out.status.code(), Some(11), "{}", describe(&out));
    let err = stderr(&out);
    let who = format!(
        "pid {} (`flock {} sh -c sleep 60 https://***@example.invalid/r.git`, not repovault)",
        flock.id(),
        lock.display()
    );
    assert!(err.contains(&who), "{who:?} not in {err}");
    assert!(!err.contains("pid 0") && !err.contains("unknown"), "{err}");
    assert!(
        !err.contains("s3cret") && !String::from_utf8_lossy(&out_json.stdout).contains("s3cret"),
        "{err}"
    );
    // 12.12: sync --json that fails on the lock still prints one JSON document.
    assert_eq!(out_json.status.code(), Some(11), "{}", describe(&out_json));
    let v = parse_json(&out_json);
    assert_eq!(v["error"]["exit_code"], 11, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&who),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// 12.12 and 13.12: exit codes follow the README's table
// ---------------------------------------------------------------------------

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: {}", describe(out));
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn a_store_this_repovault_cannot_read_exits_10() {
    let env = Vault::uninit();
    env.ok(&["init"]);
    let cfg = env.store.join("config.json");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["format_version"] = serde_json::json!(99);
    let newer = serde_json::to_string(&v).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["surprise"] = serde_json::json!(1);
    let unknown_key = serde_json::to_string(&v).unwrap();
    for (what, text, needle) in [
        ("invalid JSON", "{ not json".to_owned(), "config.json"),
        ("an unknown key", unknown_key, "surprise"),
        ("a newer format_version", newer, "upgrade repovault"),
    ] {
        std::fs::write(&cfg, &text).unwrap();
        for args in [&["stats"][..], &["snapshots"], &["verify"], &["prune"]] {
            let out = env.run(args);
            assert_code(&out, 10, &format!("{args:?} on a store with {what}"));
            assert!(stderr(&out).contains(needle), "{what}: {}", stderr(&out));
        }
    }
}

#[test]
fn bad_values_on_the_command_line_exit_2() {
    let env = Vault::uninit();
    env.ok(&["init"]);
    let r = TestRepo::new();
    r.commit_file("f", b"x\n", "x");
    let src = r.path.to_str().unwrap().to_owned();
    let cache = env.cache.clone();
    env.sync_path(Path::new(&src));
    let name = "work";
    for (args, needle) in [
        (vec!["forget", "--keep-within", "3x"], "3x"),
        (vec!["verify", "--read-data-subset", "garbage"], "garbage"),
        (vec!["prune", "--repack-below", "150"], "150"),
        (vec!["init", "--compression-level", "99"], "99"),
        (
            vec![
                "restore",
                "--repo",
                name,
                "--at",
                "garbage",
                "/nonexistent/x",
            ],
            "garbage",
        ),
        (
            vec![
                "sync",
                &src,
                &src,
                "--name",
                "one",
                "--cache",
                cache.to_str().unwrap(),
            ],
            "--name",
        ),
        (
            vec!["sync", "/no/such/repo", "--cache", cache.to_str().unwrap()],
            "/no/such/repo",
        ),
        (
            vec![
                "sync",
                "https://u:secret@example.invalid/r.git",
                "--cache",
                cache.to_str().unwrap(),
            ],
            "password",
        ),
    ] {
        let out = env.run(&args);
        assert_code(&out, 2, &format!("{args:?}"));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn init_where_something_is_in_the_way_exits_1() {
    let env = Vault::uninit();
    env.ok(&["init"]);
    let out = env.run(&["init"]);
    assert_code(&out, 1, "init on an existing store");
    let file = env.dir().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_with_timeout(env.cmd_at(&file, &[]).arg("init"), TIMEOUT);
    assert_code(&out, 1, "init on a plain file");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

// ---------------------------------------------------------------------------
// 13.12: a closed stdout ends the output quietly
// ---------------------------------------------------------------------------

/// Runs `args` with a stdout whose reader is gone before anything is written.
fn run_into_closed_pipe(env: &Vault, args: &[&str]) -> Output {
    let mut child = env
        .cmd(&[])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    finish(child)
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_exit_code() {
    let env = Vault::uninit();
    env.ok(&["init"]);
    let r = TestRepo::new();
    for i in 0..30 {
        r.commit_file("f", format!("{i}\n"), &format!("c{i}"));
        r.tag_lightweight(&format!("t{i}"), "HEAD");
    }
    env.sync_path(&r.path);
    let src = "work";
    for args in [
        &["snapshots", "--json"][..],
        &["snapshots"],
        &["repos", "--json"],
        &["stats"],
        &["stats", "--json"],
        &["restore", "--repo", src, "--latest", "--list"],
        &["restore", "--repo", src, "--latest", "--list", "--json"],
        &["verify"],
        &["verify", "--json"],
    ] {
        let out = run_into_closed_pipe(&env, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        assert_eq!(stderr(&out), "", "{args:?}: nothing on stderr");
    }
    // The exit code stays the command's own: damage found is 12 even when
    // nobody reads the report.
    let packs = env.store.join("packs");
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let out = run_into_closed_pipe(&env, &["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(12), "{}", describe(&out));
}
