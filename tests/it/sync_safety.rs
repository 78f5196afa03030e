//! Sync safety, through the binary: a mirror cache left broken by a killed
//! sync (or a full disk) is recovered instead of failing every later night or
//! being silently bypassed; a local source is never backed up by a fallback
//! that hides refs, drops peeled tag targets or stores without deltas; refs
//! that cannot be mirrored are skipped, named and recorded (exit 3) while
//! every other ref is backed up; and kill -9 at random points of a sync over
//! http never stops the next sync.

use crate::support;

use support::{tempdir, Vault};

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{describe, git, parse_json, path_str, HttpGitServer, Rng, TestRepo};

const RUN_TIMEOUT: Duration = Duration::from_secs(300);

impl Vault {
    fn sync_cmd(&self, source: &str, name: &str) -> Command {
        let mut cmd = self.cmd(&["sync", "--json", "--name", name, "--cache"]);
        cmd.arg(&self.cache).arg(source);
        cmd
    }

    /// One sync; returns the output and the repository's report.
    fn sync_out(&self, source: &str, name: &str) -> (Output, Value) {
        let out = support::run_with_timeout(&mut self.sync_cmd(source, name), RUN_TIMEOUT);
        let doc = parse_json(&out);
        let report = doc["repos"][0].clone();
        (out, report)
    }

    /// One sync that must succeed (exit 0, not failed).
    fn sync_ok(&self, source: &str, name: &str) -> Value {
        let (out, report) = self.sync_out(source, name);
        assert!(
            out.status.success() && report["status"] != "failed",
            "sync of {source} failed:\n{}",
            describe(&out)
        );
        report
    }

    fn verify_read_data_clean(&self) {
        let out = self.run(&["verify", "--read-data", "--json"]);
        let doc = parse_json(&out);
        assert!(
            out.status.success() && doc["clean"] == true,
            "verify --read-data is not clean:\n{}",
            describe(&out)
        );
    }

    fn mirror(&self, name: &str) -> PathBuf {
        self.cache.join(format!("{name}.git"))
    }
}

/// Every file below `dir` whose name ends in `.lock`.
fn lock_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                out.push(p);
            }
        }
    }
    out
}

/// The source's refs as `(name, target, peeled)` (`git for-each-ref`), HEAD excluded.
fn source_refs(repo: &Path) -> Vec<(String, String, Option<String>)> {
    let out = git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname) %(*objectname)",
        ],
    );
    let mut v: Vec<_> = out
        .lines()
        .map(|l| {
            let mut it = l.split(' ');
            let name = it.next().unwrap().to_owned();
            let target = it.next().unwrap().to_owned();
            let peeled = it.next().filter(|p| !p.is_empty()).map(str::to_owned);
            (name, target, peeled)
        })
        .collect();
    v.sort();
    v
}

/// A snapshot's refs in the same form, HEAD excluded.
fn snapshot_refs(snap: &Value) -> Vec<(String, String, Option<String>)> {
    let mut v: Vec<_> = support::snapshot_ref_entries(snap)
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap_or_default().to_owned(),
                r["peeled"].as_str().map(str::to_owned),
            )
        })
        .collect();
    v.sort();
    v
}

/// A small repository with history worth delta-compressing (one 24 KiB file
/// edited in 30 commits), 3 branches, 2 lightweight and 3 annotated tags.
fn tagged_repo() -> TestRepo {
    let r = TestRepo::new();
    let mut text: Vec<String> = (0..600)
        .map(|i| format!("line {i} of a file that changes a little in every commit\n"))
        .collect();
    for c in 0..30 {
        text[(c * 37) % 600] = format!("line changed in commit {c}\n");
        r.commit_file("big.txt", text.concat(), &format!("commit {c}"));
        if c == 10 {
            r.branch("old");
            r.tag_annotated("v0.1", "HEAD", "first release");
        }
        if c == 20 {
            r.branch("feature");
            r.tag_lightweight("light-20", "HEAD");
            r.tag_annotated("v0.2", "HEAD", "second release");
        }
    }
    r.tag_lightweight("light-last", "HEAD");
    r.tag_annotated("v1.0", "HEAD", "the release");
    r
}

/// The snapshot holds exactly the source's refs, peeled targets included.
fn assert_snapshot_is_source(snap: &Value, source: &Path) {
    assert_eq!(
        snapshot_refs(snap),
        source_refs(source),
        "the snapshot must hold every ref of the source, with peeled tag targets"
    );
    assert_eq!(snap["complete"], true, "{snap:#}");
}

// ---------------------------------------------------------------------------
// Item 4: no silent fallback for a local source
// ---------------------------------------------------------------------------

/// A local source whose fetch into the cache fails because of the cache (a
/// stale `packed-refs.lock`, or a mirror whose `objects/pack` is not a
/// directory, as a full or broken disk leaves it) is not backed up by reading
/// its object database instead: the cache is recovered, every ref is in the
/// snapshot with its peeled target, objects are stored as deltas, and the next
/// sync finds nothing changed.
#[test]
fn local_source_with_a_broken_cache_is_backed_up_in_full() {
    let r = tagged_repo();
    let base = tempdir("repovault-src-");
    let bare = base.path().join("local.git");
    r.bare_clone_to(&bare);
    let src = path_str(&bare);

    // What a clean sync stores, for comparison.
    let clean = Vault::new();
    clean.sync_ok(src, "local");
    let clean_bytes = clean.stats()["stored_bytes"].as_u64().unwrap();

    for breakage in ["stale packed-refs.lock", "objects/pack is a file"] {
        let v = Vault::new();
        // The cache already holds this repository's mirror, broken.
        let mirror = v.mirror("local");
        std::fs::create_dir_all(&mirror).unwrap();
        git(&mirror, &["init", "-q", "--bare"]);
        match breakage {
            "stale packed-refs.lock" => {
                std::fs::write(mirror.join("packed-refs.lock"), b"").unwrap();
            }
            _ => {
                let packs = mirror.join("objects/pack");
                std::fs::remove_dir_all(&packs).unwrap();
                std::fs::write(&packs, b"not a directory").unwrap();
            }
        }
        let before = v.stats()["stored_bytes"].as_u64().unwrap();
        let report = v.sync_ok(src, "local");
        assert_eq!(report["status"], "new", "{breakage}: {report:#}");
        assert_eq!(report["incomplete"], false, "{breakage}: {report:#}");
        let snap = v.latest("local");
        assert_snapshot_is_source(&snap, &bare);
        let added = v.stats()["stored_bytes"].as_u64().unwrap() - before;
        assert!(
            added <= clean_bytes * 3 / 2,
            "{breakage}: {added} bytes stored against {clean_bytes} by a clean sync: objects were stored without deltas"
        );
        assert!(
            v.stats()["delta_chunks"].as_u64().unwrap() > 0,
            "{breakage}: no delta stored"
        );
        let again = v.sync_ok(src, "local");
        assert_eq!(
            again["status"], "unchanged",
            "{breakage}: nothing changed, so no new snapshot: {again:#}"
        );
        assert!(lock_files(&mirror).is_empty(), "{breakage}");
        v.verify_read_data_clean();
    }
}

// ---------------------------------------------------------------------------
// Item 5: a killed sync's lock files do not block later syncs
// ---------------------------------------------------------------------------

/// The leftovers of a sync killed during a fetch over http (git's
/// `packed-refs.lock`, ref `.lock` files, a half-written pack) are removed by
/// the next sync, which then backs up the new state.
#[test]
fn stale_locks_in_the_mirror_are_recovered_over_http() {
    let r = tagged_repo();
    let base = tempdir("repovault-src-");
    let bare = base.path().join("org/locks.git");
    r.bare_clone_to(&bare);
    let server = HttpGitServer::start(base.path(), None);
    let url = server.url("org/locks.git");
    let v = Vault::new();
    v.sync_ok(&url, "locks");
    let mirror = v.mirror("locks");

    // What a kill -9 during the next fetch leaves behind.
    std::fs::write(mirror.join("packed-refs.lock"), b"").unwrap();
    std::fs::create_dir_all(mirror.join("refs/heads")).unwrap();
    for b in ["main", "feature", "old"] {
        std::fs::write(mirror.join(format!("refs/heads/{b}.lock")), b"").unwrap();
    }
    std::fs::create_dir_all(mirror.join("refs/tags")).unwrap();
    std::fs::write(mirror.join("refs/tags/v9.lock"), b"").unwrap();
    std::fs::write(mirror.join("HEAD.lock"), b"").unwrap();
    std::fs::write(mirror.join("objects/pack/.tmpAbCdEf"), b"half a pack").unwrap();

    let c = r.commit_file("new.txt", "new\n", "after the kill");
    r.tag_annotated("v2.0", "HEAD", "after the kill");
    git(&r.path, &["push", "-q", "--mirror", path_str(&bare)]);
    let report = v.sync_ok(&url, "locks");
    assert_eq!(report["status"], "changed", "{report:#}");
    let snap = v.latest("locks");
    assert_snapshot_is_source(&snap, &bare);
    assert!(snapshot_refs(&snap).iter().any(|(_, t, _)| *t == c));
    assert!(lock_files(&mirror).is_empty(), "{:?}", lock_files(&mirror));
    assert!(!mirror.join("objects/pack/.tmpAbCdEf").exists());
    v.verify_read_data_clean();
}

// ---------------------------------------------------------------------------
// kill -9 at random points of a sync over http
// ---------------------------------------------------------------------------

/// Writes a `git fast-import` stream of `commits` commits on `branch`
/// (continuing from its tip when `continue_from` is set), each changing one
/// of 40 files; marks `:1..=commits`.
fn history_stream(branch: &str, commits: usize, seed: u64, continue_from: bool) -> Vec<u8> {
    let mut s = Vec::new();
    let mut rng = Rng(seed);
    for i in 1..=commits {
        let msg = format!("commit {i} of run {seed}\n");
        let body: String = (0..60)
            .map(|l| format!("line {l}: {}\n", rng.below(1000)))
            .collect();
        write!(
            s,
            "commit {branch}\nmark :{i}\ncommitter T <t@example.invalid> {} +0000\ndata {}\n{msg}",
            1_700_000_000 + seed * 100_000 + i as u64,
            msg.len()
        )
        .unwrap();
        if i == 1 && continue_from {
            writeln!(s, "from {branch}^0").unwrap();
        } else if i > 1 {
            writeln!(s, "from :{}", i - 1).unwrap();
        }
        write!(
            s,
            "M 100644 inline dir{}/file{}.txt\ndata {}\n{body}\n",
            i % 4,
            i % 40,
            body.len()
        )
        .unwrap();
    }
    s
}

use support::fast_import;

/// Moves `refs` refs (branches `b0000..`, starting at `first`, wrapping) to
/// marks of the last import, and adds `tags` annotated tags.
fn ref_stream(
    first: usize,
    refs: usize,
    total: usize,
    marks: usize,
    run: u64,
    tags: usize,
) -> Vec<u8> {
    let mut s = Vec::new();
    for k in 0..refs {
        let b = (first + k) % total;
        writeln!(
            s,
            "reset refs/heads/b{b:04}\nfrom :{}\n",
            1 + (k * 7) % marks
        )
        .unwrap();
    }
    for t in 0..tags {
        let msg = format!("tag {t} of run {run}\n");
        write!(
            s,
            "tag run{run}-t{t}\nfrom :{}\ntagger T <t@example.invalid> {} +0000\ndata {}\n{msg}\n",
            1 + t % marks,
            1_700_000_000 + run * 100_000,
            msg.len()
        )
        .unwrap();
    }
    s
}

/// kill -9 at 20 random points of syncs over http of a repository with 1,200
/// refs and some history (each run moves 400 refs and adds commits and tags):
/// every run's next sync completes, its snapshot equals the source, and
/// `verify --read-data` is clean.
#[test]
fn kill_9_at_random_points_of_http_syncs() {
    const BRANCHES: usize = 1_100;
    const RUNS: u64 = 20;
    let base = tempdir("repovault-src-");
    let bare = base.path().join("org/many.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    let mut stream = history_stream("refs/heads/main", 400, 0, false);
    stream.extend(ref_stream(0, BRANCHES, BRANCHES, 400, 0, 100));
    fast_import(&bare, &stream);
    assert!(source_refs(&bare).len() >= 1_200);
    let server = HttpGitServer::start(base.path(), None);
    let url = server.url("org/many.git");

    let v = Vault::new();
    let t = Instant::now();
    v.sync_ok(&url, "many");
    let full = t.elapsed();
    // Each run fetches a small pack and updates 400 refs; measure one such
    // sync to spread the kills over its whole length.
    let mutate = |run: u64| {
        let mut s = history_stream("refs/heads/main", 30, run, true);
        s.extend(ref_stream(
            (run as usize * 400) % BRANCHES,
            400,
            BRANCHES,
            30,
            run,
            5,
        ));
        fast_import(&bare, &s);
    };
    mutate(100);
    let t = Instant::now();
    v.sync_ok(&url, "many");
    let incremental = t.elapsed();
    let span = incremental.as_millis().max(200) as u64;
    eprintln!("full sync {full:?}, incremental sync {incremental:?}: kills within 0..{span} ms");

    let mut rng = Rng(0x5eed_0012);
    let mut locks_seen = 0;
    for run in 1..=RUNS {
        mutate(run);
        let delay = rng.below(span);
        let mut child = v
            .sync_cmd(&url, "many")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let left = lock_files(&v.mirror("many")).len();
        locks_seen += usize::from(left > 0);
        eprintln!("run {run}: kill -9 after {delay} ms ({status}), {left} lock file(s) left");
        let report = v.sync_ok(&url, "many");
        assert!(
            ["changed", "unchanged"].contains(&report["status"].as_str().unwrap()),
            "run {run}: {report:#}"
        );
        assert_snapshot_is_source(&v.latest("many"), &bare);
        v.verify_read_data_clean();
    }
    eprintln!("{locks_seen} of {RUNS} kills left lock files; every next sync completed");
}

// ---------------------------------------------------------------------------
// Item 7: refs that cannot be mirrored are skipped, named and recorded
// ---------------------------------------------------------------------------

/// A source whose packed-refs holds `refs/heads/with space` (git ignores it
/// and advertises it with a null id) and a 2000-character branch: over http
/// and from a local path, every other ref is backed up, the two are named in
/// the report and recorded in the snapshot (incomplete), the sync exits 3
/// (also when nothing changed since), and snapshots, verify and restore show
/// the snapshot as incomplete.
#[test]
fn refs_that_cannot_be_mirrored_are_skipped_and_recorded() {
    let r = tagged_repo();
    let base = tempdir("repovault-src-");
    let bare = base.path().join("org/odd.git");
    r.bare_clone_to(&bare);
    let expected = source_refs(&bare);
    let head = r.rev_parse("HEAD");
    let long = format!("refs/heads/{}", "x".repeat(2000));
    let mut packed = std::fs::OpenOptions::new()
        .append(true)
        .open(bare.join("packed-refs"))
        .unwrap();
    write!(packed, "{head} refs/heads/with space\n{head} {long}\n").unwrap();
    drop(packed);
    let server = HttpGitServer::start(base.path(), None);
    let url = server.url("org/odd.git");

    for (source, name) in [(url.as_str(), "odd-http"), (path_str(&bare), "odd-local")] {
        let v = Vault::new();
        let (out, report) = v.sync_out(source, name);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{source}: refs were left out, so the run is partial:\n{}",
            describe(&out)
        );
        assert!(
            !text.contains("[48, 48"),
            "{source}: an error printed as a byte array:\n{text}"
        );
        assert_eq!(report["status"], "new", "{report:#}");
        assert_eq!(report["incomplete"], true, "{report:#}");
        let skipped: Vec<&str> = report["skipped_refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            skipped,
            vec!["refs/heads/with space", long.as_str()],
            "{report:#}"
        );

        let snap = v.latest(name);
        assert_eq!(snap["complete"], false, "{snap:#}");
        let recorded: Vec<&str> = snap["skipped"]
            .as_array()
            .expect("the snapshot records the skipped refs")
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(recorded, skipped);
        let want: Vec<_> = expected
            .iter()
            .filter(|(n, _, _)| *n != long)
            .cloned()
            .collect();
        assert_eq!(
            snapshot_refs(&snap),
            want,
            "{source}: every other ref is backed up"
        );
        // The snapshot file carries them too (repair-index rebuilds from it).
        let file = v
            .store
            .join("snapshots")
            .join(format!("{}.json", snap["id"].as_str().unwrap()));
        let on_disk: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(on_disk["skipped"], snap["skipped"]);

        // Nothing changed: unchanged, still partial.
        let (out, again) = v.sync_out(source, name);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        assert_eq!(again["status"], "unchanged", "{again:#}");
        assert_eq!(again["skipped_refs"], report["skipped_refs"]);

        let listing = String::from_utf8_lossy(&v.ok(&["snapshots"]).stdout).into_owned();
        assert!(
            listing.contains("incomplete: 2 ref(s) not backed up"),
            "{listing}"
        );
        let out = v.run(&["verify", "--json"]);
        let doc = parse_json(&out);
        assert!(out.status.success(), "{}", describe(&out));
        let notes = doc["notes"].to_string();
        assert!(
            notes.contains("not backed up") && notes.contains("with space"),
            "{notes}"
        );
        let dir = tempdir("repovault-restore-");
        let dest = dir.path().join("r.git");
        let out = v.run(&["restore", "--repo", name, "--latest", path_str(&dest)]);
        assert!(out.status.success(), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("incomplete") && err.contains("with space"),
            "{err}"
        );
        assert_eq!(source_refs(&dest), want);
        v.verify_read_data_clean();
    }
}

/// An index of schema version 3 (before skipped refs were recorded, and
/// before snapshots were recorded as changes) is migrated on open: its
/// snapshots stay readable and new ones record skipped refs.
#[test]
fn index_of_schema_3_is_migrated() {
    let r = tagged_repo();
    let base = tempdir("repovault-src-");
    let bare = base.path().join("m.git");
    r.bare_clone_to(&bare);
    let v = Vault::new();
    v.sync_ok(path_str(&bare), "m");
    {
        let db = rusqlite::Connection::open(v.store.join("index.sqlite")).unwrap();
        db.execute_batch(
            "DROP INDEX snapshots_base; ALTER TABLE snapshots DROP COLUMN base;
             ALTER TABLE snapshot_refs DROP COLUMN removed;
             ALTER TABLE snapshots DROP COLUMN skipped; PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    assert_snapshot_is_source(&v.latest("m"), &bare);
    let head = r.rev_parse("HEAD");
    let mut packed = std::fs::OpenOptions::new()
        .append(true)
        .open(bare.join("packed-refs"))
        .unwrap();
    writeln!(packed, "{head} refs/heads/with space").unwrap();
    drop(packed);
    let (out, report) = v.sync_out(path_str(&bare), "m");
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(report["status"], "changed", "{report:#}");
    let snaps = v.snapshots("m");
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1]["skipped"][0]["name"], "refs/heads/with space");
    let db = rusqlite::Connection::open(v.store.join("index.sqlite")).unwrap();
    let version: u32 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 5, "{version}");
}
