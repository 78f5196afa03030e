//! End-to-end tests of `repovault sync` and `repovault restore`, run through
//! the real binary against real git repositories served over every transport
//! (local path, `file://`, `git://` and smart HTTP with a token).
//!
//! The central check: a restored repository equals its source (fsck clean,
//! the same refs with the same targets, the same HEAD, the same reachable
//! objects), and a snapshot records exactly the source's refs.

use crate::support;

use serde_json::Value;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{
    git, git_command, head_of, object_count, refs_of, GitDaemon, HttpGitServer, TestRepo,
};
use tempfile::TempDir;

/// No single repovault or git run of these tests should take longer.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs `cmd` with this file's time limit (see `support::run_with_timeout`).
fn run(cmd: &mut Command) -> Output {
    support::run_with_timeout(cmd, RUN_TIMEOUT)
}

use support::{describe, parse_json, path_str, random_bytes, tempdir, Vault};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

/// stdout and stderr together, for searching error messages.
fn all_output(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Vault {
    /// `repovault sync --cache CACHE <sources> <extra>` with extra environment variables.
    fn sync_sources_cmd(&self, sources: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = self.cmd(&["sync"]);
        cmd.arg("--cache")
            .arg(&self.cache)
            .args(sources)
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn sync_sources(&self, sources: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Output {
        run(&mut self.sync_sources_cmd(sources, extra, env))
    }

    /// Syncs one source as `name` (`--json`), asserts success and returns the repository's report.
    fn sync(&self, source: &str, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
        let mut args = vec!["--name", name, "--json"];
        args.extend_from_slice(extra);
        let out = self.sync_sources(&[source], &args, env);
        assert!(
            out.status.success(),
            "sync of {source} failed:\n{}",
            describe(&out)
        );
        let doc = parse_json(&out);
        let repos = doc["repos"]
            .as_array()
            .expect("repos array in the sync summary");
        assert_eq!(repos.len(), 1, "{doc:#}");
        let report = repos[0].clone();
        assert_eq!(report["name"], name, "{doc:#}");
        assert_ne!(report["status"], "failed", "{doc:#}");
        assert!(report["error"].is_null(), "{doc:#}");
        report
    }

    fn all_snapshots(&self) -> Vec<Value> {
        let v = self.json(&["snapshots", "--json", "--refs"]);
        v.as_array()
            .expect("snapshots --json gives an array")
            .clone()
    }

    /// `repovault restore --repo REPO <which> DEST <extra>`.
    fn restore_to(&self, repo: &str, which: &[&str], dest: &Path, extra: &[&str]) -> Output {
        let mut cmd = self.cmd(&["restore", "--repo", repo]);
        cmd.args(which).arg(dest).args(extra);
        run(&mut cmd)
    }

    /// Restores into a new temporary directory; returns it and the repository's path.
    fn restore_new(&self, repo: &str, which: &[&str]) -> (TempDir, PathBuf) {
        let dir = tempdir("repovault-restore-");
        let dest = dir.path().join("restored.git");
        let out = self.restore_to(repo, which, &dest, &[]);
        assert!(
            out.status.success(),
            "restore --repo {repo} {which:?} failed:\n{}",
            describe(&out)
        );
        assert!(
            dest.join("HEAD").is_file(),
            "restore reported success but {} has no HEAD",
            dest.display()
        );
        (dir, dest)
    }
}

// ---------------------------------------------------------------------------
// Comparing repositories and snapshots
// ---------------------------------------------------------------------------

/// The target of a symbolic HEAD (`git symbolic-ref HEAD`), `None` when detached.
fn symbolic_head(repo: &Path) -> Option<String> {
    let out = run(&mut git_command(repo, &["symbolic-ref", "-q", "HEAD"]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git fsck --full --strict` exits 0 and reports nothing but notices
/// (e.g. about an unborn HEAD): no errors, no missing and no dangling objects.
fn assert_fsck_clean(repo: &Path) {
    let out = run(&mut git_command(
        repo,
        &["fsck", "--full", "--strict", "--no-progress"],
    ));
    let text = all_output(&out);
    let bad: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("notice:"))
        .collect();
    assert!(
        out.status.success() && bad.is_empty(),
        "git fsck of {} is not clean:\n{}",
        repo.display(),
        describe(&out)
    );
}

/// The repositories are equal: `restored` passes fsck, and both have the same
/// refs (name and target), the same HEAD and the same number of reachable objects.
fn assert_same_repo(source: &Path, restored: &Path) {
    assert_fsck_clean(restored);
    assert_eq!(
        refs_of(restored),
        refs_of(source),
        "refs of {} differ from the source {}",
        restored.display(),
        source.display()
    );
    assert_eq!(
        symbolic_head(restored),
        symbolic_head(source),
        "symbolic HEAD differs"
    );
    if symbolic_head(source).is_none() {
        assert_eq!(head_of(restored), head_of(source), "detached HEAD differs");
    }
    assert_eq!(
        object_count(restored),
        object_count(source),
        "reachable object counts differ"
    );
}

fn find_ref<'a>(snap: &'a Value, name: &str) -> Option<&'a Value> {
    snap["refs"]
        .as_array()
        .expect("refs array")
        .iter()
        .find(|r| r["name"] == name)
}

/// A snapshot ref's name as [`refs_of`] shows it: the JSON writes a name that
/// is not UTF-8 as `hex:<hex digits>`, [`refs_of`] decodes it lossily.
fn ref_name(entry: &Value) -> String {
    let name = entry["name"].as_str().expect("ref name");
    match name.strip_prefix("hex:") {
        Some(h) => {
            let bytes: Vec<u8> = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex ref name"))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => name.to_string(),
    }
}

/// The snapshot's refs other than HEAD as sorted `(name, target)` pairs, like [`refs_of`].
fn snapshot_refs(snap: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = support::snapshot_ref_entries(snap)
        .map(|r| {
            let name = ref_name(r);
            let target = r["target"]
                .as_str()
                .unwrap_or_else(|| panic!("ref {name} has no target: {r}"))
                .to_string();
            (name, target)
        })
        .collect();
    v.sort();
    v
}

/// The snapshot records the source's refs and its HEAD (symbolic, unborn or detached).
fn assert_snapshot_matches(snap: &Value, source: &Path) {
    assert_eq!(
        snapshot_refs(snap),
        refs_of(source),
        "snapshot refs differ from {}:\n{snap:#}",
        source.display()
    );
    let head =
        find_ref(snap, "HEAD").unwrap_or_else(|| panic!("snapshot has no HEAD entry:\n{snap:#}"));
    match symbolic_head(source) {
        Some(target) => {
            assert_eq!(head["symref"], target.as_str(), "snapshot HEAD:\n{snap:#}");
            match refs_of(source).into_iter().find(|(n, _)| *n == target) {
                Some((_, oid)) => assert_eq!(
                    head["target"],
                    oid.as_str(),
                    "snapshot HEAD target:\n{snap:#}"
                ),
                None => assert!(
                    head["target"].is_null(),
                    "unborn HEAD must have no target:\n{snap:#}"
                ),
            }
        }
        None => {
            assert!(
                head["symref"].is_null(),
                "detached HEAD recorded as symbolic:\n{snap:#}"
            );
            assert_eq!(
                head["target"],
                head_of(source).as_str(),
                "detached HEAD target:\n{snap:#}"
            );
        }
    }
}

/// The restored repository's refs and HEAD equal the snapshot's.
fn assert_restore_matches_snapshot(restored: &Path, snap: &Value) {
    assert_fsck_clean(restored);
    assert_eq!(
        refs_of(restored),
        snapshot_refs(snap),
        "restored refs differ from the snapshot:\n{snap:#}"
    );
    let head = find_ref(snap, "HEAD").expect("HEAD entry");
    match head["symref"].as_str() {
        Some(t) => assert_eq!(symbolic_head(restored).as_deref(), Some(t)),
        None => assert_eq!(
            head_of(restored),
            head["target"].as_str().expect("detached HEAD target")
        ),
    }
}

/// Syncs `source` as `name`; checks the recorded snapshot against the bare
/// repository `bare`, restores the latest snapshot and compares it with `bare`.
/// Returns the sync report.
fn sync_and_check_with(
    v: &Vault,
    source: &str,
    name: &str,
    bare: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Value {
    let report = v.sync(source, name, extra, env);
    let snap = v.latest(name);
    assert_eq!(
        report["snapshot"], snap["id"],
        "the report names the latest snapshot"
    );
    assert_eq!(
        report["refs"].as_u64(),
        Some(snap["refs"].as_array().unwrap().len() as u64)
    );
    assert_eq!(snap["complete"], true, "{snap:#}");
    assert_snapshot_matches(&snap, bare);
    let (_dir, restored) = v.restore_new(name, &["--latest"]);
    assert_same_repo(bare, &restored);
    report
}

fn sync_and_check(v: &Vault, source: &str, name: &str, bare: &Path) -> Value {
    sync_and_check_with(v, source, name, bare, &[], &[])
}

// ---------------------------------------------------------------------------
// Building sources
// ---------------------------------------------------------------------------

/// A frozen copy of a repository (`cp -a`), to compare old snapshots with.
fn freeze(repo: &Path, into: &Path) -> PathBuf {
    let dest = into.join(format!(
        "frozen-{}",
        repo.file_name().unwrap().to_string_lossy()
    ));
    support::cp_a(repo, &dest);
    dest
}

/// Adds a root commit on `refs/heads/<branch>` of the work repository (built
/// with `git fast-import`) holding `tiny` pseudo-random 32-byte blobs in 50
/// directories and `medium` pseudo-random 64 KiB blobs.
fn add_payload(r: &TestRepo, branch: &str, tiny: usize, medium: usize, seed: u64) {
    let mut stream = Vec::with_capacity(tiny * 80 + medium * (65 << 10));
    let blobs = (0..tiny).map(|_| 32).chain((0..medium).map(|_| 64 << 10));
    for (i, size) in blobs.enumerate() {
        write!(stream, "blob\nmark :{}\ndata {size}\n", i + 1).unwrap();
        let data = random_bytes(seed.wrapping_mul(1_000_003).wrapping_add(i as u64), size);
        stream.extend_from_slice(&data);
        stream.push(b'\n');
    }
    support::fast_import_commit(
        &mut stream,
        &format!("refs/heads/{branch}"),
        Some(tiny + medium + 1),
        "payload\n",
    );
    for i in 0..tiny {
        writeln!(stream, "M 100644 :{} t{:02}/f{i:05}.bin", i + 1, i % 50).unwrap();
    }
    for i in 0..medium {
        writeln!(stream, "M 100644 :{} m/f{i:03}.bin", tiny + i + 1).unwrap();
    }
    stream.push(b'\n');
    support::fast_import(&r.path, &stream);
}

// ---------------------------------------------------------------------------
// 1. Transports
// ---------------------------------------------------------------------------

/// Three rounds over one transport: a first sync (new), a sync after a new
/// commit, a new tag and a deleted branch (changed), and a sync without
/// changes (unchanged); each snapshot is checked and restored.
fn transport_round_trip(
    url: &str,
    bare: &Path,
    r: &TestRepo,
    extra: &[&str],
    env: &[(&str, &str)],
) {
    let v = Vault::new();
    let name = "transport/repo";
    let first = sync_and_check_with(&v, url, name, bare, extra, env);
    assert_eq!(first["status"], "new", "{first:#}");
    assert!(first["new_objects"].as_u64().unwrap() > 0, "{first:#}");

    r.commit_file("after.txt", "after the first sync\n", "after");
    r.tag_annotated("v2.0", "HEAD", "release 2.0");
    r.git(&["branch", "-D", "feature"]);
    r.publish(bare);
    let second = sync_and_check_with(&v, url, name, bare, extra, env);
    assert_eq!(second["status"], "changed", "{second:#}");
    assert!(find_ref(&v.latest(name), "refs/heads/feature").is_none());

    let third = v.sync(url, name, extra, env);
    assert_eq!(third["status"], "unchanged", "{third:#}");
    assert_eq!(third["snapshot"], second["snapshot"], "{third:#}");
    assert_eq!(v.snapshots(name).len(), 2);
}

#[test]
fn transport_local_path() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("src.git");
    transport_round_trip(path_str(&bare), &bare, &r, &[], &[]);
}

#[test]
fn transport_file_url() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("src.git");
    let url = format!("file://{}", path_str(&bare));
    transport_round_trip(&url, &bare, &r, &[], &[]);
}

#[test]
fn transport_git_daemon() {
    let r = support::sample_repo();
    let (base, bare) = r.mirror_in_tempdir("org/src.git");
    let daemon = GitDaemon::start(base.path());
    transport_round_trip(&daemon.url("org/src.git"), &bare, &r, &[], &[]);
}

#[test]
fn transport_http_with_token() {
    const TOKEN: &str = "tok-transport-777";
    let r = support::sample_repo();
    let (base, bare) = r.mirror_in_tempdir("org/src.git");
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let url = server.url("org/src.git");

    // Without the token the server answers 401: the sync fails and says why.
    let v = Vault::new();
    let out = v.sync_sources(&[&url], &["--name", "web"], &[]);
    assert!(
        !out.status.success(),
        "sync without a token must fail:\n{}",
        describe(&out)
    );
    assert!(
        all_output(&out).to_lowercase().contains("authentication"),
        "the error should mention authentication:\n{}",
        describe(&out)
    );
    assert!(v.all_snapshots().is_empty());

    // A wrong token fails the same way.
    let out = v.sync_sources(
        &[&url],
        &["--name", "web", "--token-env", "RV_WRONG_TOKEN"],
        &[("RV_WRONG_TOKEN", "not-the-token")],
    );
    assert!(
        !out.status.success(),
        "sync with a wrong token must fail:\n{}",
        describe(&out)
    );
    assert!(
        all_output(&out).to_lowercase().contains("authentication"),
        "{}",
        describe(&out)
    );

    let requests_before = server.request_count();
    transport_round_trip(
        &url,
        &bare,
        &r,
        &["--token-env", "RV_HTTP_TOKEN"],
        &[("RV_HTTP_TOKEN", TOKEN)],
    );
    assert!(
        server.request_count() > requests_before,
        "the syncs went through the HTTP server"
    );
}

// ---------------------------------------------------------------------------
// 2. Edge cases
// ---------------------------------------------------------------------------

/// A new temporary directory with an empty bare repository `empty.git`
/// whose unborn HEAD is `refs/heads/develop`.
fn empty_develop() -> (TempDir, PathBuf) {
    let base = tempdir("repovault-src-");
    let bare = base.path().join("empty.git");
    let args = ["init", "-q", "--bare", "--initial-branch=develop"];
    git(base.path(), &[&args[..], &[path_str(&bare)]].concat());
    (base, bare)
}

#[test]
fn empty_repository_over_every_transport() {
    const TOKEN: &str = "tok-empty-1";
    let (base, bare) = empty_develop();
    let daemon = GitDaemon::start(base.path());
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let file_url = format!("file://{}", path_str(&bare));
    let sources = [
        (path_str(&bare).to_string(), "path"),
        (file_url, "file"),
        (daemon.url("empty.git"), "git"),
        (server.url("empty.git"), "http"),
    ];
    let v = Vault::new();
    for (url, name) in &sources {
        let report = sync_and_check_with(
            &v,
            url,
            name,
            &bare,
            &["--token-env", "RV_EMPTY_TOKEN"],
            &[("RV_EMPTY_TOKEN", TOKEN)],
        );
        assert_eq!(report["status"], "new", "{name}: {report:#}");
        let snap = v.latest(name);
        let head = find_ref(&snap, "HEAD").expect("HEAD entry");
        assert_eq!(head["symref"], "refs/heads/develop", "{name}: {snap:#}");
        assert!(head["target"].is_null(), "{name}: unborn HEAD: {snap:#}");
        assert_eq!(
            snap["refs"].as_array().unwrap().len(),
            1,
            "{name}: {snap:#}"
        );
    }
}

#[test]
fn empty_repository_then_first_commit() {
    let (base, bare) = empty_develop();
    let v = Vault::new();
    let report = sync_and_check(&v, path_str(&bare), "empty", &bare);
    assert_eq!(report["status"], "new", "{report:#}");
    let snap = v.latest("empty");
    let head = find_ref(&snap, "HEAD").expect("HEAD entry");
    assert_eq!(head["symref"], "refs/heads/develop", "{snap:#}");
    assert!(head["target"].is_null(), "unborn HEAD: {snap:#}");
    let (_d, restored) = v.restore_new("empty", &["--latest"]);
    assert_eq!(
        symbolic_head(&restored).as_deref(),
        Some("refs/heads/develop")
    );
    assert!(refs_of(&restored).is_empty());
    assert_eq!(object_count(&restored), 0);

    // The first commit arrives later.
    let work = base.path().join("work");
    git(
        base.path(),
        &["clone", "-q", path_str(&bare), path_str(&work)],
    );
    std::fs::write(work.join("a.txt"), "first\n").unwrap();
    git(&work, &["add", "a.txt"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/develop"]);
    let report = sync_and_check(&v, path_str(&bare), "empty", &bare);
    assert_eq!(report["status"], "changed", "{report:#}");
}

#[test]
fn default_branch_trunk() {
    let r = TestRepo::new();
    r.commit_file("a.txt", "a\n", "a");
    r.commit_file("b.txt", "b\n", "b");
    r.git(&["branch", "-m", "main", "trunk"]);
    let (_base, bare) = r.mirror_in_tempdir("trunk.git");
    assert_eq!(symbolic_head(&bare).as_deref(), Some("refs/heads/trunk"));
    assert!(refs_of(&bare)
        .iter()
        .all(|(n, _)| n != "refs/heads/main" && n != "refs/heads/master"));
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "trunk", &bare);
    let (_d, restored) = v.restore_new("trunk", &["--latest"]);
    assert_eq!(
        symbolic_head(&restored).as_deref(),
        Some("refs/heads/trunk")
    );
}

#[test]
fn tags_of_every_kind() {
    let r = support::sample_repo();
    let tree = r.rev_parse("HEAD^{tree}");
    let blob = r.rev_parse("HEAD:README.md");
    r.tag_annotated("t-tree", &tree, "a tag on a tree");
    r.tag_lightweight("t-blob", &blob);
    r.tag_annotated("t-blob-annotated", &blob, "an annotated tag on a blob");
    r.tag_annotated("t-nested", "v1.0", "a tag on a tag");
    r.tag_lightweight("light-on-annotated", "v1.0");
    let (_base, bare) = r.mirror_in_tempdir("tags.git");
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "tags", &bare);

    let snap = v.latest("tags");
    for (tag, annotated) in [
        ("v1.0", true),
        ("t-tree", true),
        ("t-blob-annotated", true),
        ("t-nested", true),
        ("light", false),
        ("t-blob", false),
        ("light-on-annotated", false),
    ] {
        let full = format!("refs/tags/{tag}");
        let entry =
            find_ref(&snap, &full).unwrap_or_else(|| panic!("{full} missing from {snap:#}"));
        assert_eq!(entry["target"], r.rev_parse(&full).as_str(), "{full}");
        if annotated {
            assert_eq!(
                entry["peeled"],
                r.rev_parse(&format!("{full}^{{}}")).as_str(),
                "peeled target of {full}"
            );
        }
    }
    let (_d, restored) = v.restore_new("tags", &["--latest"]);
    assert_eq!(git(&restored, &["cat-file", "-t", "t-tree^{}"]), "tree");
    assert_eq!(git(&restored, &["cat-file", "-t", "t-blob"]), "blob");
    assert_eq!(git(&restored, &["cat-file", "-p", "t-blob"]), "hello again");
}

#[test]
fn deleted_branch_stays_in_the_older_snapshot() {
    let r = support::sample_repo();
    let (base, bare) = r.mirror_in_tempdir("del.git");
    let feature = r.rev_parse("refs/heads/feature");
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "del", &bare);
    let first = v.latest("del");
    let frozen = freeze(&bare, base.path());

    git(&bare, &["branch", "-D", "feature"]);
    let report = sync_and_check(&v, path_str(&bare), "del", &bare);
    assert_eq!(report["status"], "changed");
    let snaps = v.snapshots("del");
    assert_eq!(snaps.len(), 2);
    assert!(
        find_ref(&snaps[1], "refs/heads/feature").is_none(),
        "{:#}",
        snaps[1]
    );
    assert_eq!(
        find_ref(&snaps[0], "refs/heads/feature").unwrap()["target"],
        feature.as_str()
    );

    let (_d, old) = v.restore_new("del", &["--snapshot", first["id"].as_str().unwrap()]);
    assert_same_repo(&frozen, &old);
    assert_eq!(git(&old, &["rev-parse", "refs/heads/feature"]), feature);
}

#[test]
fn force_push_keeps_the_old_history_restorable() {
    let r = support::sample_repo();
    let (base, bare) = r.mirror_in_tempdir("force.git");
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "force", &bare);
    let first = v.latest("force");
    let frozen = freeze(&bare, base.path());
    let old_tip = r.rev_parse("main");
    let old_parent = r.rev_parse("main~1");
    let old_feature = r.rev_parse("feature");

    // Rewrite main (drop two commits, new ones, amend) and feature.
    r.git(&["reset", "-q", "--hard", "HEAD~2"]);
    r.commit_file("rewritten.txt", "new history\n", "rewritten 1");
    r.commit_file("rewritten.txt", "new history, again\n", "rewritten 2");
    r.git(&["commit", "-q", "--amend", "-m", "rewritten 2 (amended)"]);
    r.checkout("feature");
    r.git(&["commit", "-q", "--amend", "-m", "feature (amended)"]);
    r.checkout("main");
    r.git(&["tag", "-d", "light"]);
    r.publish(&bare);
    assert!(
        !support::git_ok(&bare, &["merge-base", "--is-ancestor", &old_tip, "main"]),
        "main was rewritten"
    );

    let report = sync_and_check(&v, path_str(&bare), "force", &bare);
    assert_eq!(report["status"], "changed");

    let prefix = &first["id"].as_str().unwrap()[..8];
    let (_d, old) = v.restore_new("force", &["--snapshot", prefix]);
    assert_same_repo(&frozen, &old);
    for oid in [&old_tip, &old_parent, &old_feature] {
        assert!(
            support::git_ok(&old, &["cat-file", "-e", oid]),
            "{oid} (removed by the force-push) is missing from the restore"
        );
    }
    assert_eq!(git(&old, &["rev-parse", "refs/heads/main"]), old_tip);
}

/// A `size`-byte pseudo-random file, then three commits with one small edit
/// each (100 bytes overwritten, 10 bytes inserted, one byte flipped): the
/// second sync must store far less than the three new versions' size.
fn big_file_with_small_edits(size: usize, max_growth: u64) {
    let r = TestRepo::new();
    let mut data = random_bytes(0x0005_eed0_fb16_f11e, size);
    r.write("big.bin", &data);
    r.commit_file("README.md", "a big file\n", "big file");
    let (_base, bare) = r.mirror_in_tempdir("big.git");
    let v = Vault::new();
    v.sync(path_str(&bare), "big", &[], &[]);
    let before = v.stats()["stored_bytes"].as_u64().unwrap();
    assert!(
        before >= size as u64 * 9 / 10,
        "{size} bytes of random data cannot be stored in {before} bytes"
    );

    let mut rng = random_bytes(99, 64).into_iter();
    let mut pick = |range: usize| {
        let b: [u8; 4] = std::array::from_fn(|_| rng.next().unwrap());
        u32::from_le_bytes(b) as usize % range
    };
    let at = pick(size - 100);
    data[at..at + 100].copy_from_slice(&[0xAB; 100]);
    r.write("big.bin", &data);
    r.commit("edit 1: overwrite 100 bytes");
    let at = pick(data.len());
    data.splice(at..at, *b"inserted!!");
    r.write("big.bin", &data);
    r.commit("edit 2: insert 10 bytes");
    let at = pick(data.len());
    data[at] ^= 0xFF;
    r.write("big.bin", &data);
    r.commit("edit 3: flip a byte");
    r.publish(&bare);

    let report = sync_and_check(&v, path_str(&bare), "big", &bare);
    assert_eq!(report["status"], "changed");
    let after = v.stats()["stored_bytes"].as_u64().unwrap();
    let grown = after - before;
    eprintln!("{size}-byte file, 3 small edits: stored {before} -> {after} bytes (+{grown})");
    assert!(
        grown < max_growth,
        "3 small edits of a {size}-byte file grew the store by {grown} bytes (limit {max_growth}; 3 full copies: {})",
        3 * size
    );
}

/// The 50 MiB case. A debug build needs about 8 CPU-minutes for it (zlib and
/// SHA-1 of 200 MiB unoptimised, in sync and again in restore), so it only
/// runs by default in release builds (`cargo test --release`).
#[test]
fn large_binary_file_50mib_with_small_edits_is_deduplicated() {
    big_file_with_small_edits(50 << 20, 24 * MIB);
}

/// The same at 8 MiB (about eight content-defined chunks), cheap enough for every run.
#[test]
fn binary_file_8mib_with_small_edits_is_deduplicated() {
    big_file_with_small_edits(8 << 20, 8 * MIB);
}

#[test]
fn non_utf8_file_names() {
    let r = TestRepo::new();
    r.commit_file("plain.txt", "plain\n", "plain");
    let names: [&[u8]; 3] = [
        b"caf\xe9-latin1.txt",
        b"raw-\xff\xfe.bin",
        b"dir-\xff/inner-\xc3\x28.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        let p = r.path.join(OsStr::from_bytes(name));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("file {i}\n")).unwrap();
    }
    r.commit("non-UTF-8 names");
    // And one added straight to the index.
    let blob = git(&r.path, &["hash-object", "-w", "plain.txt"]);
    let mut cmd = git_command(&r.path, &["update-index", "--add", "--cacheinfo"]);
    let mut cacheinfo = format!("100644,{blob},").into_bytes();
    cacheinfo.extend_from_slice(b"index-only-\xfe\xff");
    cmd.arg(OsStr::from_bytes(&cacheinfo));
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", describe(&out));
    r.git(&["commit", "-q", "-m", "index-only entry"]);

    let (_base, bare) = r.mirror_in_tempdir("names.git");
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "names", &bare);
    let (_d, restored) = v.restore_new("names", &["--latest"]);
    let listing = support::git_bytes(&restored, &["ls-tree", "-r", "-z", "--name-only", "HEAD"]);
    let files: Vec<&[u8]> = listing
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    for name in names.iter().copied().chain([&b"index-only-\xfe\xff"[..]]) {
        assert!(
            files.contains(&name),
            "{:?} missing from the restored tree",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn unusual_ref_names() {
    let r = support::sample_repo();
    let second = r.rev_parse("main~1");
    // `feature/...` cannot coexist with a branch `feature`.
    r.git(&["branch", "-m", "feature", "topic"]);
    r.git(&["update-ref", "refs/heads/feature/a.b-c_d", "HEAD"]);
    r.git(&["update-ref", "refs/heads/ünïcode", &second]);
    r.git(&["update-ref", "refs/custom/x", "topic"]);
    r.git(&["update-ref", "refs/pull/1/head", &second]);
    r.git(&["notes", "add", "-m", "a note on main", "HEAD"]);
    let (_base, bare) = r.mirror_in_tempdir("refs.git");
    let names: Vec<String> = refs_of(&bare).into_iter().map(|(n, _)| n).collect();
    for want in [
        "refs/heads/feature/a.b-c_d",
        "refs/heads/ünïcode",
        "refs/notes/commits",
        "refs/custom/x",
        "refs/pull/1/head",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not in the source: {names:?}"
        );
    }
    // Also a symbolic ref besides HEAD, and a ref name that is not UTF-8.
    git(
        &bare,
        &["symbolic-ref", "refs/heads/alias", "refs/heads/main"],
    );
    let mut cmd = git_command(&bare, &["update-ref"]);
    let out = run(cmd
        .arg(OsStr::from_bytes(b"refs/heads/caf\xe9-latin1"))
        .arg(&second));
    assert!(out.status.success(), "{}", describe(&out));
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "refs", &bare);
    let snap = v.latest("refs");
    let alias = find_ref(&snap, "refs/heads/alias").expect("refs/heads/alias");
    assert_eq!(alias["symref"], "refs/heads/main", "{snap:#}");
    let hex: String = b"refs/heads/caf\xe9-latin1"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let latin1 = find_ref(&snap, &format!("hex:{hex}"));
    assert_eq!(
        latin1.expect("non-UTF-8 name as hex:")["target"],
        second.as_str()
    );
    let (_d, restored) = v.restore_new("refs", &["--latest"]);
    assert_eq!(git(&restored, &["notes", "show", "main"]), "a note on main");
    assert_eq!(
        git(&restored, &["symbolic-ref", "refs/heads/alias"]),
        "refs/heads/main"
    );
    let names = support::git_bytes(&restored, &["for-each-ref", "--format=%(refname)"]);
    assert!(
        names
            .split(|b| *b == b'\n')
            .any(|n| n == b"refs/heads/caf\xe9-latin1"),
        "the non-UTF-8 ref name must come back byte for byte: {}",
        String::from_utf8_lossy(&names)
    );
}

#[test]
fn submodule_gitlink_entries() {
    // A tree entry of mode 160000 names a commit of another repository: it is
    // not an object of this one and must not be required.
    let r = TestRepo::new();
    r.commit_file("README.md", "with a submodule\n", "first");
    r.write(
        ".gitmodules",
        "[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.invalid/lib.git\n",
    );
    r.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,1111111111111111111111111111111111111111,lib",
    ]);
    r.commit("add a submodule");
    let (_base, bare) = r.mirror_in_tempdir("sub.git");
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "sub", &bare);
}

#[test]
fn detached_head_in_a_bare_source() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("detached.git");
    let oid = r.rev_parse("main~1");
    std::fs::write(bare.join("HEAD"), format!("{oid}\n")).unwrap();
    assert_eq!(symbolic_head(&bare), None);
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "detached", &bare);
    let snap = v.latest("detached");
    let head = find_ref(&snap, "HEAD").unwrap();
    assert_eq!(head["target"], oid.as_str());
    assert!(head["symref"].is_null());
    let (_d, restored) = v.restore_new("detached", &["--latest"]);
    assert_eq!(symbolic_head(&restored), None);
    assert_eq!(head_of(&restored), oid);
}

#[test]
fn mirror_cache_deleted_between_syncs() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("cache.git");
    let v = Vault::new();
    sync_and_check(&v, path_str(&bare), "cache", &bare);
    let objects = v.stats()["objects"].as_u64().unwrap();

    std::fs::remove_dir_all(&v.cache).unwrap();
    let report = sync_and_check(&v, path_str(&bare), "cache", &bare);
    assert!(
        ["unchanged", "changed"].contains(&report["status"].as_str().unwrap()),
        "{report:#}"
    );
    assert_eq!(
        v.stats()["objects"].as_u64().unwrap(),
        objects,
        "no object is stored twice"
    );

    // A change, with the cache gone again: a full fetch into a fresh mirror.
    r.commit_file("more.txt", "more\n", "more");
    r.publish(&bare);
    std::fs::remove_dir_all(&v.cache).unwrap();
    let report = sync_and_check(&v, path_str(&bare), "cache", &bare);
    assert_eq!(report["status"], "changed", "{report:#}");
    assert_eq!(
        report["new_objects"], 3,
        "a commit, a tree and a blob are new: {report:#}"
    );
}

// ---------------------------------------------------------------------------
// 3. Incremental syncs
// ---------------------------------------------------------------------------

#[test]
fn incremental_sync_stores_only_new_objects() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("inc.git");
    let v = Vault::new();
    let first = sync_and_check(&v, path_str(&bare), "inc", &bare);
    assert_eq!(
        first["new_objects"].as_u64().unwrap(),
        object_count(&bare) as u64,
        "{first:#}"
    );
    let stats1 = v.stats();

    let again = v.sync(path_str(&bare), "inc", &[], &[]);
    assert_eq!(again["status"], "unchanged", "{again:#}");
    assert_eq!(again["new_objects"], 0, "{again:#}");
    assert_eq!(again["snapshot"], first["snapshot"]);
    let stats2 = v.stats();
    for key in ["chunks", "stored_bytes", "objects", "packs", "snapshots"] {
        assert_eq!(
            stats2[key], stats1[key],
            "{key} changed by an unchanged sync: {stats1:#} -> {stats2:#}"
        );
    }

    let old_refs: Vec<String> = refs_of(&bare).into_iter().map(|(_, o)| o).collect();
    for i in 0..10 {
        r.commit_file(
            "counter.txt",
            format!("counter {i}\n"),
            &format!("count {i}"),
        );
    }
    r.publish(&bare);
    let mut args = vec!["rev-list", "--objects", "main", "--not"];
    args.extend(old_refs.iter().map(String::as_str));
    let expected = git(&bare, &args).lines().count() as u64;
    assert_eq!(
        expected, 30,
        "10 commits with a new root tree and a new blob each"
    );

    let report = sync_and_check(&v, path_str(&bare), "inc", &bare);
    assert_eq!(report["status"], "changed", "{report:#}");
    assert_eq!(report["new_objects"].as_u64(), Some(expected), "{report:#}");
    let stats3 = v.stats();
    assert_eq!(
        stats3["objects"].as_u64().unwrap() - stats2["objects"].as_u64().unwrap(),
        expected
    );
    assert_eq!(stats3["snapshots"], 2);
}

// ---------------------------------------------------------------------------
// 4. Choosing a snapshot, and where restore writes
// ---------------------------------------------------------------------------

#[test]
fn restore_selection_and_destination_rules() {
    let r = support::sample_repo();
    let (base, bare) = r.mirror_in_tempdir("sel.git");
    let v = Vault::new();
    let src = path_str(&bare);
    sync_and_check(&v, src, "sel", &bare);
    let frozen = freeze(&bare, base.path());
    r.commit_file("second.txt", "second\n", "second snapshot");
    r.publish(&bare);
    sync_and_check(&v, src, "sel", &bare);
    let snaps = v.snapshots("sel");
    assert_eq!(snaps.len(), 2);
    let t1: jiff::Timestamp = snaps[0]["time"].as_str().unwrap().parse().unwrap();
    let t2: jiff::Timestamp = snaps[1]["time"].as_str().unwrap().parse().unwrap();
    assert!(t1 < t2, "{t1} < {t2}");
    let between =
        jiff::Timestamp::from_microsecond((t1.as_microsecond() + t2.as_microsecond()) / 2)
            .unwrap()
            .to_string();

    // --at
    let (_d1, at_between) = v.restore_new("sel", &["--at", &between]);
    assert_same_repo(&frozen, &at_between);
    let (_d2, at_future) = v.restore_new("sel", &["--at", "2999-01-01"]);
    assert_same_repo(&bare, &at_future);
    let out_dir = tempdir("repovault-restore-");
    let dest = out_dir.path().join("none.git");
    let out = v.restore_to("sel", &["--at", "1999-01-01"], &dest, &[]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        all_output(&out).contains("no snapshot taken at or before"),
        "{}",
        describe(&out)
    );
    assert!(!dest.exists());
    let out = v.restore_to("sel", &["--at", "yesterday-ish"], &dest, &[]);
    assert!(
        !out.status.success() && all_output(&out).contains("RFC 3339"),
        "{}",
        describe(&out)
    );
    assert!(!dest.exists());

    // --snapshot: unknown and ambiguous prefixes. More snapshots until two share a first digit.
    let unknown = {
        let id = snaps[0]["id"].as_str().unwrap();
        let last = if id.as_bytes()[11] == b'0' { '1' } else { '0' };
        format!("{}{last}", &id[..11])
    };
    let out = v.restore_to("sel", &["--snapshot", &unknown], &dest, &[]);
    assert!(
        !out.status.success() && all_output(&out).contains("no snapshot with id"),
        "{}",
        describe(&out)
    );
    assert!(!dest.exists());
    let mut n = 0;
    let shared_digit = loop {
        let ids: Vec<String> = v
            .snapshots("sel")
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        let firsts: Vec<char> = ids.iter().map(|i| i.chars().next().unwrap()).collect();
        if let Some(c) = firsts
            .iter()
            .find(|c| firsts.iter().filter(|d| d == c).count() > 1)
        {
            break c.to_string();
        }
        assert!(
            ids.len() <= 16,
            "17 ids cannot have distinct first hex digits: {ids:?}"
        );
        n += 1;
        r.commit_file("more.txt", format!("more {n}\n"), "another snapshot");
        r.publish(&bare);
        v.sync(src, "sel", &[], &[]);
    };
    let out = v.restore_to("sel", &["--snapshot", &shared_digit], &dest, &[]);
    assert!(
        !out.status.success() && all_output(&out).contains("ambiguous"),
        "{}",
        describe(&out)
    );
    assert!(!dest.exists());

    // An existing file is never replaced.
    let file = out_dir.path().join("a-file");
    std::fs::write(&file, "not a repository").unwrap();
    let out = v.restore_to("sel", &["--latest"], &file, &["--force"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a repository");

    // An existing, non-empty directory is never written to.
    let full = out_dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "precious").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let out = v.restore_to("sel", &["--latest"], &full, extra);
        assert!(
            !out.status.success(),
            "restore into a non-empty directory {extra:?}:\n{}",
            describe(&out)
        );
        assert!(all_output(&out).contains("not empty"), "{}", describe(&out));
        let entries: Vec<_> = std::fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("keep.txt")]);
        assert_eq!(
            std::fs::read_to_string(full.join("keep.txt")).unwrap(),
            "precious"
        );
    }

    // An existing empty directory needs --force.
    let empty = out_dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = v.restore_to("sel", &["--latest"], &empty, &[]);
    assert!(
        !out.status.success() && all_output(&out).contains("--force"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    let out = v.restore_to("sel", &["--latest"], &empty, &["--force"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_repo(&bare, &empty);

    // --list prints the refs and creates nothing.
    let listed = out_dir.path().join("listed.git");
    let out = v.restore_to("sel", &["--latest", "--list"], &listed, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !listed.exists(),
        "restore --list created {}",
        listed.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, oid) in refs_of(&bare) {
        assert!(
            text.lines().any(|l| l.trim() == format!("{oid} {name}")),
            "{name} missing from --list:\n{text}"
        );
    }
    assert!(text.contains("HEAD -> refs/heads/main"), "{text}");
    let out = v.run(&[
        "restore",
        "--repo",
        "sel",
        "--snapshot",
        snaps[0]["id"].as_str().unwrap(),
        "--list",
        "--json",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse_json(&out)["id"], snaps[0]["id"]);
}

// ---------------------------------------------------------------------------
// 5. Crash safety
// ---------------------------------------------------------------------------

/// The store answers, and every snapshot it lists restores cleanly and as recorded.
fn assert_store_consistent(v: &Vault) {
    v.stats();
    v.json(&["repos", "--json"]);
    for snap in v.all_snapshots() {
        let repo = snap["repo"].as_str().unwrap();
        let (_d, restored) = v.restore_new(repo, &["--snapshot", snap["id"].as_str().unwrap()]);
        assert_restore_matches_snapshot(&restored, &snap);
    }
}

/// Runs one sync of `src` that must die by SIGKILL at `point`, then checks the store.
fn sync_killed_at(v: &Vault, src: &str, point: &str) {
    let out = v.sync_sources(
        &[src],
        &["--name", "crash", "--json"],
        &[("REPOVAULT_CRASH_AT", point)],
    );
    assert_eq!(
        out.status.signal(),
        Some(9),
        "REPOVAULT_CRASH_AT={point}: sync should die by SIGKILL:\n{}",
        describe(&out)
    );
    assert_store_consistent(v);
}

/// Crash at `point` twice: in the first sync of a small repository (unless
/// the point needs a large one), then in a sync that adds a payload to an
/// existing snapshot. After each crash the store must be consistent and a
/// sync without the hook must succeed and restore equal to the source.
///
/// `big`: the payload has more than 4096 objects, so the ingest runs in
/// several batches; otherwise it is 1.5 MiB of incompressible blobs, which
/// the store (1 MiB packs) writes as several packs.
fn crash_at(point: &str, big: bool) {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("crash.git");
    let src = path_str(&bare);
    let v = Vault::with_init_args(&["--pack-size-mib", "1"]);

    if !big {
        sync_killed_at(&v, src, point);
        let report = sync_and_check(&v, src, "crash", &bare);
        assert_status_after_crash(point, &report, "new");
    } else {
        sync_and_check(&v, src, "crash", &bare);
    }
    let before = v.snapshots("crash");

    let (tiny, medium) = if big { (4200, 0) } else { (0, 24) };
    add_payload(&r, "payload", tiny, medium, 7);
    r.publish(&bare);
    if big {
        assert!(object_count(&bare) > 4096 + 10);
    }
    sync_killed_at(&v, src, point);
    let after = v.snapshots("crash");
    assert!(after.len() >= before.len(), "a crash lost snapshots");
    assert_eq!(
        after[..before.len()],
        before[..],
        "a crash changed existing snapshots"
    );
    let report = sync_and_check(&v, src, "crash", &bare);
    assert_status_after_crash(point, &report, "changed");
}

/// A crash before the snapshot file was written leaves no snapshot of the
/// source's state: the next sync records it (`expected`). After
/// `snapshot-file-written` the state is recorded, so any success will do.
fn assert_status_after_crash(point: &str, report: &Value, expected: &str) {
    // Once its file is written the snapshot exists (the files are the truth):
    // the next writer records it, and the sync finds the refs unchanged.
    if point == "snapshot-committed" || point == "snapshot-file-written" {
        assert_ne!(report["status"], "failed", "{report:#}");
    } else {
        assert_eq!(report["status"], expected, "{report:#}");
    }
}

#[test]
fn crash_after_fetch() {
    crash_at("fetched", false);
}

#[test]
fn crash_after_first_ingest_batch() {
    crash_at("ingest-batch", true);
}

#[test]
fn crash_after_packs_written() {
    crash_at("packs-written", false);
}

#[test]
fn crash_after_index_committed() {
    crash_at("index-committed", false);
}

#[test]
fn crash_before_snapshot() {
    crash_at("before-snapshot", false);
}

#[test]
fn crash_after_snapshot_file_written() {
    crash_at("snapshot-file-written", false);
}

#[test]
fn crash_after_snapshot_committed() {
    crash_at("snapshot-committed", false);
}

/// A crash after the snapshot was committed but before the mirror's packs
/// were recorded as ingested: the source did not change, so the next sync
/// should find the refs equal to the last snapshot's and only record the
/// check (`unchanged`), as `sync/mod.rs` documents.
#[test]
fn resync_after_crash_at_snapshot_committed_is_unchanged() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("crash.git");
    let src = path_str(&bare);
    let v = Vault::new();
    sync_killed_at(&v, src, "snapshot-committed");
    let snaps = v.snapshots("crash");
    assert_eq!(
        snaps.len(),
        1,
        "the snapshot was committed before the crash"
    );
    assert_snapshot_matches(&snaps[0], &bare);
    let report = v.sync(src, "crash", &[], &[]);
    assert_eq!(report["status"], "unchanged", "{report:#}");
    assert_eq!(report["snapshot"], snaps[0]["id"], "{report:#}");
    let after = v.snapshots("crash");
    assert_eq!(
        after.len(),
        1,
        "a duplicate snapshot was recorded: {after:#?}"
    );
}

#[test]
fn crash_by_kill_after_300ms() {
    let r = support::sample_repo();
    let (_base, bare) = r.mirror_in_tempdir("crash.git");
    let src = path_str(&bare);
    let v = Vault::with_init_args(&["--pack-size-mib", "1"]);
    sync_and_check(&v, src, "crash", &bare);
    let first = v.snapshots("crash");

    // A second sync with a few thousand new objects, killed after 300 ms.
    add_payload(&r, "payload", 3000, 16, 8);
    r.publish(&bare);
    let mut child = v
        .sync_sources_cmd(&[src], &["--name", "crash"], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    eprintln!("killed sync: {status:?}");
    assert_store_consistent(&v);
    let after_kill = v.snapshots("crash");
    assert_eq!(after_kill[..1], first[..], "the first snapshot survives");
    let report = sync_and_check(&v, src, "crash", &bare);
    // The kill may land after the killed sync recorded its snapshot (a fast machine
    // finishes within 300 ms): then the source is unchanged since that snapshot.
    let expected = if after_kill.len() == first.len() {
        "changed"
    } else {
        "unchanged"
    };
    assert_eq!(report["status"], expected, "{report:#}");
}

// ---------------------------------------------------------------------------
// 6. Tokens never reach the disk or the output
// ---------------------------------------------------------------------------

use support::{contains, files_below};

#[test]
fn token_never_leaks() {
    const TOKEN: &str = "tok-SECRET-12345";
    const WRONG: &str = "tok-WRONG-67890";
    let r = support::sample_repo();
    let (base, bare) = r.mirror_in_tempdir("org/secret.git");
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let url = server.url("org/secret.git");
    let v = Vault::new();
    let env = [("RV_TOKEN", TOKEN), ("RV_OTHER_TOKEN", WRONG)];
    let mut outputs = Vec::new();

    let sync = |url: &str, var: &str| {
        let mut cmd = v.sync_sources_cmd(
            &[url],
            &["--name", "secret", "--token-env", var, "--json"],
            &env,
        );
        cmd.arg("-vv");
        run(&mut cmd)
    };
    let out = sync(&url, "RV_TOKEN");
    assert!(out.status.success(), "{}", describe(&out));
    outputs.push(out);
    r.commit_file("later.txt", "later\n", "later");
    r.publish(&bare);
    let out = sync(&url, "RV_TOKEN");
    assert!(out.status.success(), "{}", describe(&out));
    outputs.push(out);

    let out = sync(&url, "RV_OTHER_TOKEN");
    assert!(
        !out.status.success(),
        "a wrong token must fail:\n{}",
        describe(&out)
    );
    assert!(
        all_output(&out).to_lowercase().contains("authentication"),
        "{}",
        describe(&out)
    );
    outputs.push(out);
    let out = sync(&server.url("org/missing.git"), "RV_TOKEN");
    assert!(
        !out.status.success(),
        "a missing repository must fail:\n{}",
        describe(&out)
    );
    outputs.push(out);

    let restore_dir = tempdir("repovault-restore-");
    let dest = restore_dir.path().join("secret.git");
    let out = v.restore_to("secret", &["--latest"], &dest, &["-vv", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_repo(&bare, &dest);
    outputs.push(out);
    outputs.push(v.ok(&["-vv", "snapshots", "--json"]));
    outputs.push(v.ok(&["-vv", "repos", "--json"]));

    let needles: Vec<Vec<u8>> = [TOKEN, WRONG]
        .iter()
        .flat_map(|t| {
            [
                t.as_bytes().to_vec(),
                support::base64_encode(format!("git:{t}").as_bytes()).into_bytes(),
            ]
        })
        .collect();
    let mut files = Vec::new();
    for dir in [&v.store, &v.cache, &dest] {
        files_below(dir, &mut files);
    }
    assert!(
        files.len() > 10,
        "the walk found the store and the cache: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(
                !contains(&bytes, n),
                "{} contains the secret {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    for out in &outputs {
        for n in &needles {
            assert!(
                !contains(&out.stdout, n) && !contains(&out.stderr, n),
                "output contains a secret:\n{}",
                describe(out)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 7. Several sources in one run
// ---------------------------------------------------------------------------

#[test]
fn several_sources_with_one_failure() {
    let r = support::sample_repo();
    let base = tempdir("repovault-src-");
    let bares: Vec<PathBuf> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| base.path().join(format!("{n}.git")))
        .collect();
    for (i, b) in bares.iter().enumerate() {
        r.commit_file("which.txt", format!("repo {i}\n"), "distinct tip");
        r.bare_clone_to(b);
    }
    const BAD: &str = "file:///nonexistent/x.git";
    let v = Vault::new();
    let mut sources: Vec<&str> = bares.iter().map(|b| path_str(b)).collect();
    sources.insert(1, BAD);
    let out = v.sync_sources(&sources, &["--jobs", "2", "--json"], &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "one failure of four is a partial success:\n{}",
        describe(&out)
    );
    let doc = parse_json(&out);
    let totals = &doc["totals"];
    assert_eq!(
        (
            totals["repos"].as_u64(),
            totals["new"].as_u64(),
            totals["failed"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "{doc:#}"
    );
    let reports = doc["repos"].as_array().unwrap();
    assert_eq!(reports.len(), 4);
    for rep in reports {
        if rep["url"] == BAD {
            assert_eq!(rep["status"], "failed", "{rep:#}");
            assert!(
                rep["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{rep:#}"
            );
            assert!(rep["snapshot"].is_null(), "{rep:#}");
        } else {
            assert_eq!(rep["status"], "new", "{rep:#}");
            assert!(rep["error"].is_null(), "{rep:#}");
        }
    }

    // The failed source never had a snapshot: it leaves no repository behind.
    let repos = v.json(&["repos", "--json"]);
    let repos = repos.as_array().unwrap();
    assert_eq!(repos.len(), 3, "{repos:#?}");
    assert!(!repos.iter().any(|r| r["url"] == BAD), "{repos:#?}");

    for bare in &bares {
        let url = std::fs::canonicalize(bare).unwrap();
        let rep = reports
            .iter()
            .find(|r| r["url"] == path_str(&url))
            .unwrap_or_else(|| panic!("no report for {}", url.display()));
        let name = rep["name"].as_str().unwrap();
        let row = repos.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(row["last_status"], "new", "{row:#}");
        assert_eq!(row["snapshots"], 1, "{row:#}");
        assert_snapshot_matches(&v.latest(name), bare);
        let (_d, restored) = v.restore_new(name, &["--latest"]);
        assert_same_repo(bare, &restored);
    }
}

/// A local source that lacks an object (a corrupt repository): the sync fails
/// naming the object and the ref that needs it and records nothing; with
/// `--allow-incomplete` it backs up what is there and records an incomplete
/// snapshot, which verify notes and restore reports (`--partial` restores the rest).
#[test]
fn source_missing_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.git");
    support::git(tmp.path(), &["init", "-q", "--bare", src.to_str().unwrap()]);
    support::git(&src, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let work = support::TestRepo::new();
    for i in 1..=3 {
        work.commit_file(&format!("f{i}.txt"), format!("v{i}\n"), &format!("c{i}"));
    }
    // A small push is unpacked into loose objects, so one can be deleted.
    work.git(&["push", "-q", src.to_str().unwrap(), "HEAD:refs/heads/main"]);
    let blob = work.rev_parse("HEAD:f2.txt");
    let loose = src.join("objects").join(&blob[..2]).join(&blob[2..]);
    assert!(
        loose.is_file(),
        "expected a loose object at {}",
        loose.display()
    );
    std::fs::remove_file(&loose).unwrap();

    let store = tmp.path().join("store");
    let cache = tmp.path().join("cache");
    let rv = |args: &[&str]| support::rv(&store, args);
    assert!(rv(&["init"]).status.success());
    let url = format!("file://{}", src.display());
    let cache_s = cache.to_str().unwrap();
    let out = rv(&[
        "sync", &url, "--name", "broken", "--cache", cache_s, "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = doc["repos"][0]["error"].as_str().unwrap();
    assert!(
        err.contains(&blob) && err.contains("refs/heads/main"),
        "{err}"
    );
    let snaps: serde_json::Value =
        serde_json::from_slice(&rv(&["snapshots", "--json"]).stdout).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        0,
        "nothing half-done becomes a snapshot"
    );

    let out = rv(&[
        "sync",
        &url,
        "--name",
        "broken",
        "--cache",
        cache_s,
        "--allow-incomplete",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["repos"][0]["incomplete"], true);
    let snaps: serde_json::Value =
        serde_json::from_slice(&rv(&["snapshots", "--json"]).stdout).unwrap();
    let snap = &snaps[0];
    assert_eq!(snap["complete"], false);
    assert_eq!(snap["missing"][0], blob.as_str());

    let out = rv(&["verify", "--read-data", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["notes"].to_string().contains("incomplete"), "{v}");

    let dest = tmp.path().join("restore.git");
    let out = rv(&[
        "restore",
        "--repo",
        "broken",
        "--latest",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&blob) && stderr.contains("missing in the source"),
        "{stderr}"
    );
    assert!(
        !dest.exists(),
        "a failed restore leaves nothing at the destination"
    );
    let out = rv(&[
        "restore",
        "--repo",
        "broken",
        "--latest",
        "--partial",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&blob));
    assert!(dest.join("HEAD").is_file());
}

/// Restore from a damaged store, one failure mode at a time (a flipped byte in
/// a pack, a truncated pack, a deleted pack): the plain restore fails with one
/// clear line naming the damage and the snapshot and leaves nothing behind;
/// `--partial` restores what is intact, lists what is missing and exits 3.
#[test]
fn restore_from_a_damaged_store() {
    let tmp = tempfile::tempdir().unwrap();
    let work = support::TestRepo::new();
    for i in 0..12 {
        let body: String = (0..400)
            .map(|l| format!("file {i} line {l} {}\n", l * 7919 % 1013))
            .collect();
        work.commit_file(&format!("dir/f{i}.txt"), body, &format!("c{i}"));
    }
    let bare = work.bare_clone();
    // As a server keeps it: one deltified pack.
    support::git(&bare, &["repack", "-adq"]);
    let clean = tmp.path().join("clean-store");
    let cache = tmp.path().join("cache");
    let rv = support::rv;
    assert!(rv(&clean, &["init"]).status.success());
    let out = rv(
        &clean,
        &[
            "sync",
            bare.to_str().unwrap(),
            "--name",
            "r",
            "--cache",
            cache.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    // A clean restore is a pack (with reused deltas) no larger than 1.2x the source's pack.
    let whole = tmp.path().join("whole.git");
    let out = rv(
        &clean,
        &[
            "restore",
            "--repo",
            "r",
            "--latest",
            whole.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let pack_bytes = |repo: &Path| -> u64 {
        std::fs::read_dir(repo.join("objects/pack"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let (restored, source) = (pack_bytes(&whole), pack_bytes(&bare));
    eprintln!("restored pack {restored} bytes, source pack {source} bytes");
    assert!(
        restored as f64 <= 1.2 * source as f64,
        "restored pack {restored} > 1.2 x source pack {source}"
    );
    // The largest data chunk, and the pack it lies in.
    let (pack, offset, len): (String, i64, i64) =
        rusqlite::Connection::open(clean.join("index.sqlite"))
            .unwrap()
            .query_row(
                "SELECT p.name, c.offset, c.stored_len FROM chunks c JOIN packs p ON p.id = c.pack
             WHERE p.kind = 2 ORDER BY c.stored_len DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
    let copy = |name: &str| {
        let dst = tmp.path().join(name);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&clean)
            .arg(&dst)
            .status()
            .unwrap()
            .success());
        dst
    };
    let pack_file = |store: &Path| store.join("packs").join(format!("{pack}.pack"));

    let flipped = copy("flipped");
    let mut bytes = std::fs::read(pack_file(&flipped)).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    std::fs::write(pack_file(&flipped), &bytes).unwrap();

    let truncated = copy("truncated");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(pack_file(&truncated))
        .unwrap();
    f.set_len((offset + len / 2) as u64).unwrap();

    let deleted = copy("deleted");
    std::fs::remove_file(pack_file(&deleted)).unwrap();

    for (store, mode) in [
        (&flipped, "flipped byte"),
        (&truncated, "truncated pack"),
        (&deleted, "deleted pack"),
    ] {
        let dest = tmp
            .path()
            .join(format!("restore-{}", mode.replace(' ', "-")));
        let out = rv(
            store,
            &["restore", "--repo", "r", "--latest", dest.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("repovault: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{mode}: one error line\n{stderr}");
        assert!(
            errors[0].contains("cannot be restored") && errors[0].contains(&pack[..16]),
            "{mode}: {}",
            errors[0]
        );
        assert!(errors[0].contains("--partial"), "{mode}: {}", errors[0]);
        assert!(
            !dest.exists(),
            "{mode}: a failed restore leaves nothing at the destination"
        );

        let out = rv(
            store,
            &[
                "restore",
                "--repo",
                "r",
                "--latest",
                "--partial",
                "--json",
                dest.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(3), "{mode}: {}", describe(&out));
        let report = parse_json(&out);
        let problems = report["problems"].as_array().unwrap();
        assert!(
            !problems.is_empty(),
            "{mode}: --partial lists what is missing"
        );
        assert!(
            report["objects"].as_u64().unwrap() > 0,
            "{mode}: what is intact is restored"
        );
        // The commits and trees are intact (they live in the tree pack): the refs are there,
        // and git sees exactly the missing blobs.
        assert_eq!(support::refs_of(&dest), support::refs_of(&bare), "{mode}");
        let fsck = Command::new("git")
            .arg("-C")
            .arg(&dest)
            .args(["fsck", "--full"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&fsck.stdout).to_string()
            + &String::from_utf8_lossy(&fsck.stderr);
        assert!(text.contains("missing blob"), "{mode}: {text}");
        for p in problems {
            let oid = p
                .as_str()
                .unwrap()
                .split_whitespace()
                .find(|w| w.len() == 40)
                .unwrap_or("");
            if !oid.is_empty() {
                assert!(text.contains(oid), "{mode}: git should miss {oid}\n{text}");
            }
        }
    }
}
