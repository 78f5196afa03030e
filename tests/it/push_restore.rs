//! `repovault restore --push URL` (issue 21, first slice): a snapshot pushed
//! into a repository on a git host, here a real `git http-backend` with
//! receive-pack enabled and the token checked, or a local bare repository.
//!
//! What is checked: the pushed repository equals the snapshot (refs, and
//! `git fsck --full` on the server side); a non-empty target is refused
//! naming its refs, `--force` overwrites only what the snapshot has; hidden
//! refs are left out and listed unless `--all-refs`; a history larger than
//! `--max-push-bytes` goes in several pushes, each pack under the limit, and
//! a push that stopped half-way continues; a wrong token is one line and
//! exit 1; the token is in no child's argv, no output and no repository's config.

use crate::support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{
    describe, git, parse_json, path_str, random_bytes, refs_of, tempdir, HttpGitServer, TestRepo,
    Vault,
};

const TOKEN: &str = "tok-push-3f9a77c1d2";
const BLOB: usize = 20_000;

/// A repository with branches `main` (8 commits of a 20 KB random blob
/// each) and `feature`, a lightweight and an annotated tag, a note and a
/// pull-request ref; synced into a new vault as `proj`.
struct Fixture {
    vault: Vault,
    source: TestRepo,
    bare: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let source = TestRepo::new();
        for i in 0..8u64 {
            source.commit_file(
                &format!("f{i}.bin"),
                random_bytes(i + 1, BLOB),
                &format!("c{i}"),
            );
            if i == 2 {
                source.tag_lightweight("v0.1", "HEAD");
            }
        }
        source.branch("feature");
        source.checkout("feature");
        source.commit_file("feature.txt", "feature\n", "feature");
        source.checkout("main");
        source.tag_annotated("v1.0", "main", "release");
        source.git(&["notes", "add", "-m", "a note", "main~1"]);
        source.git(&["update-ref", "refs/pull/1/head", "main~3"]);
        let bare = source.bare_clone();
        let vault = Vault::new();
        vault.sync_as(&bare, "proj");
        Fixture {
            vault,
            source,
            bare,
        }
    }

    /// The source's refs without the hidden ones.
    fn visible_refs(&self) -> Vec<(String, String)> {
        let mut r = refs_of(&self.bare);
        r.retain(|(n, _)| !n.starts_with("refs/pull/"));
        r
    }

    fn push(&self, target: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec!["restore", "--repo", "proj", "--latest", "--push", target];
        args.extend_from_slice(extra);
        self.vault.run_env(&args, env)
    }
}

/// An empty bare repository `NAME.git` below `base` that accepts pushes over http.
fn empty_target(base: &Path, name: &str) -> PathBuf {
    let path = base.join(format!("{name}.git"));
    git(base, &["init", "-q", "--bare", path_str(&path)]);
    git(&path, &["config", "http.receivepack", "true"]);
    path
}

fn fsck_clean(repo: &Path) {
    let out = support::git_command(repo, &["fsck", "--full", "--strict"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "fsck: {}", describe(&out));
}

fn all_output(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn names(list: &Value) -> Vec<String> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"));
    items
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every process's argv (`/proc/*/cmdline`) holding `needle`, read over and
/// over until `done`; also whether a `git push` was seen at all.
fn watch_argv(
    needle: &'static str,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, bool)> {
    std::thread::spawn(move || {
        let (mut hits, mut saw_push) = (Vec::new(), false);
        while !done.load(Ordering::SeqCst) {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                let argv = String::from_utf8_lossy(&raw).replace('\0', " ");
                if argv.contains(needle) {
                    hits.push(argv.clone());
                }
                if argv.contains("git") && argv.contains("push --porcelain") {
                    saw_push = true;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (hits, saw_push)
    })
}

#[test]
fn a_snapshot_pushed_over_http_equals_the_snapshot_and_the_token_stays_secret() {
    let f = Fixture::new();
    let base = tempdir("repovault-push-http-");
    let target = empty_target(base.path(), "org/proj");
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let url = server.url("org/proj.git");

    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch_argv(TOKEN, Arc::clone(&done));
    let out = f.push(
        &url,
        &["--token-env", "PUSH_TOKEN", "--json", "-vv"],
        &[("PUSH_TOKEN", TOKEN)],
    );
    done.store(true, Ordering::SeqCst);
    let (hits, saw_push) = watcher.join().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        hits.is_empty(),
        "the token is in a process's argv: {hits:?}"
    );
    eprintln!("a git push was seen in /proc while the token was watched for: {saw_push}");
    assert!(
        !all_output(&out).contains(TOKEN),
        "the token is in the output"
    );
    let config = std::fs::read_to_string(target.join("config")).unwrap();
    assert!(!config.contains(TOKEN));

    // The server's repository is the snapshot, hidden refs aside.
    assert_eq!(refs_of(&target), f.visible_refs());
    fsck_clean(&target);
    let report = parse_json(&out);
    assert_eq!(report["url"], url.as_str());
    assert_eq!(names(&report["skipped"]), ["refs/pull/1/head"]);
    assert_eq!(report["head"], "refs/heads/main");
    assert_eq!(report["refused"].as_array().unwrap().len(), 0);
    let pushed = names(&report["pushed"]);
    let want: Vec<String> = f.visible_refs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(pushed, want);
    assert!(report["pushed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "new"));
    assert_eq!(server.pushes().len(), 1, "one push under the default limit");

    // Run again: nothing to send, every ref up to date.
    let again = f.push(
        &url,
        &["--token-env", "PUSH_TOKEN", "--json"],
        &[("PUSH_TOKEN", TOKEN)],
    );
    assert!(again.status.success(), "{}", describe(&again));
    let report = parse_json(&again);
    assert_eq!(report["resumed"], true);
    assert_eq!(report["steps"].as_array().unwrap().len(), 0);
    assert_eq!(server.pushes().len(), 1);
}

#[test]
fn a_wrong_token_fails_with_one_authentication_line() {
    let f = Fixture::new();
    let base = tempdir("repovault-push-auth-");
    let target = empty_target(base.path(), "proj");
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let wrong = "wrong-token-5d1c0e";
    let out = f.push(
        &server.url("proj.git"),
        &["--token-env", "PUSH_TOKEN"],
        &[("PUSH_TOKEN", wrong)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("authentication failed"), "{stderr}");
    assert!(!all_output(&out).contains(wrong));
    assert!(refs_of(&target).is_empty());

    // Without a token at all: the same answer.
    let out = f.push(&server.url("proj.git"), &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication failed"));
}

#[test]
fn a_target_with_refs_is_refused_naming_them_and_force_overwrites_only_those() {
    let f = Fixture::new();
    let dir = tempdir("repovault-push-force-");
    let target = empty_target(dir.path(), "busy");
    // The target has its own history: main elsewhere, and a branch of its own.
    let other = TestRepo::new();
    other.commit_file("x", "other\n", "other");
    other.branch("mine");
    other.publish(&target);
    let before = refs_of(&target);

    let out = f.push(path_str(&target), &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(
        stderr.contains("refs/heads/mine") && stderr.contains("1 ref(s)"),
        "{stderr}"
    );
    assert_eq!(refs_of(&target), before, "a refused push changes nothing");

    let out = f.push(path_str(&target), &["--force", "--json"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let report = parse_json(&out);
    assert_eq!(names(&report["overwritten"]), ["refs/heads/main"]);
    assert_eq!(report["kept"], serde_json::json!(["refs/heads/mine"]));
    let mine = before.iter().find(|(n, _)| n == "refs/heads/mine").unwrap();
    let mut want = f.visible_refs();
    want.push(mine.clone());
    want.sort();
    assert_eq!(
        refs_of(&target),
        want,
        "the snapshot's refs, and the target's own kept"
    );
    fsck_clean(&target);

    // The text report says what it overwrote.
    let target2 = empty_target(dir.path(), "busy2");
    other.publish(&target2);
    let out = f.push(path_str(&target2), &["--force"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("overwritten: refs/heads/main"), "{text}");
    assert!(
        text.contains("kept (the snapshot lacks it): refs/heads/mine"),
        "{text}"
    );
}

#[test]
fn hidden_refs_are_left_out_and_listed_unless_all_refs() {
    let f = Fixture::new();
    let dir = tempdir("repovault-push-hidden-");
    let target = empty_target(dir.path(), "plain");
    let out = f.push(&format!("file://{}", target.display()), &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not pushed: refs/pull/1/head"), "{text}");
    assert_eq!(refs_of(&target), f.visible_refs());

    let all = empty_target(dir.path(), "all");
    let out = f.push(path_str(&all), &["--all-refs", "--json"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse_json(&out)["skipped"], serde_json::json!([]));
    assert_eq!(refs_of(&all), refs_of(&f.bare), "with --all-refs every ref");
    fsck_clean(&all);
}

#[test]
fn a_large_history_goes_in_steps_under_the_limit_and_a_stopped_push_continues() {
    let f = Fixture::new();
    let base = tempdir("repovault-push-steps-");
    let target = empty_target(base.path(), "big");
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let url = server.url("big.git");
    let limit = 2 * BLOB + BLOB / 2; // two commits' blobs per push at most
    let limit_arg = limit.to_string();
    let env = [("PUSH_TOKEN", TOKEN)];

    // A push that stopped after main~5 (as a killed run leaves it).
    let partial = f.source.rev_parse("main~5");
    let out = Command::new("git")
        .current_dir(&f.bare)
        .args([
            "push",
            "-q",
            path_str(&target),
            &format!("{partial}:refs/heads/main"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    let args = [
        "--token-env",
        "PUSH_TOKEN",
        "--max-push-bytes",
        &limit_arg,
        "--json",
    ];
    let out = f.push(&url, &args, &env);
    assert!(out.status.success(), "{}", describe(&out));
    let report = parse_json(&out);
    assert_eq!(
        report["resumed"], true,
        "the earlier push's main is an ancestor"
    );
    let pushes = server.pushes();
    assert!(pushes.len() >= 3, "several pushes: {pushes:?}");
    for (body, pack) in &pushes {
        assert!(
            *pack > 0 && *pack <= limit,
            "a pack over the limit: {pushes:?}"
        );
        assert!(*body >= *pack);
    }
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), pushes.len());
    assert!(steps.iter().all(|s| s["over_limit"] == false), "{report}");
    // What the target had (main~5 and before: 3 blobs) was not sent again.
    let sent: usize = pushes.iter().map(|(_, p)| p).sum();
    assert!(sent < 6 * BLOB, "sent {sent} bytes for 5 new blobs");
    assert_eq!(refs_of(&target), f.visible_refs());
    fsck_clean(&target);
}

#[test]
fn a_push_killed_after_its_first_step_is_run_again_and_completes() {
    let f = Fixture::new();
    let base = tempdir("repovault-push-kill-");
    let target = empty_target(base.path(), "k");
    let server = HttpGitServer::start_token(base.path(), TOKEN);
    let url = server.url("k.git");
    let tmp = tempdir("repovault-push-tmp-");
    let limit = (2 * BLOB + BLOB / 2).to_string();
    let args = [
        "--token-env",
        "PUSH_TOKEN",
        "--max-push-bytes",
        &limit,
        "--json",
    ];
    let tmpdir = path_str(tmp.path());

    let killed = f.push(
        &url,
        &args,
        &[
            ("PUSH_TOKEN", TOKEN),
            ("REPOVAULT_CRASH_AT", "push-step"),
            ("TMPDIR", tmpdir),
        ],
    );
    assert_eq!(killed.status.code(), None, "killed: {}", describe(&killed));
    assert_eq!(server.pushes().len(), 1);
    let main = refs_of(&target);
    assert_eq!(main.len(), 1, "the first step's branch only: {main:?}");
    assert_ne!(main[0].1, f.source.rev_parse("main"));
    // The killed run left its temporary repository behind: no token in any of its files.
    let mut left = Vec::new();
    support::files_below(tmp.path(), &mut left);
    assert!(left.iter().any(|p| p.ends_with("config")), "{left:?}");
    for p in &left {
        let bytes = std::fs::read(p).unwrap_or_default();
        assert!(
            !support::contains(&bytes, TOKEN.as_bytes()),
            "the token is in {}",
            p.display()
        );
    }

    let out = f.push(&url, &args, &[("PUSH_TOKEN", TOKEN), ("TMPDIR", tmpdir)]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse_json(&out)["resumed"], true);
    assert_eq!(refs_of(&target), f.visible_refs());
    fsck_clean(&target);
    let sent: usize = server.pushes().iter().map(|(_, p)| p).sum();
    assert!(
        sent < 9 * BLOB,
        "sent {sent} bytes for 8 blobs: nothing twice"
    );
}

#[test]
fn one_commit_larger_than_the_limit_is_pushed_alone_and_named() {
    let f = Fixture::new();
    let dir = tempdir("repovault-push-over-");
    let target = empty_target(dir.path(), "over");
    let out = f.push(path_str(&target), &["--max-push-bytes", "5000"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("over the push limit"), "{text}");
    assert_eq!(refs_of(&target), f.visible_refs());
}

#[test]
fn a_tag_over_a_long_history_of_its_own_goes_in_steps_through_a_temporary_branch() {
    let source = TestRepo::new();
    source.commit_file("readme", "main\n", "main");
    source.branch("side");
    source.checkout("side");
    for i in 0..5u64 {
        source.commit_file(
            &format!("s{i}.bin"),
            random_bytes(100 + i, BLOB),
            &format!("s{i}"),
        );
    }
    source.tag_annotated("old", "side", "an old release");
    source.checkout("main");
    source.git(&["branch", "-D", "side"]);
    let bare = source.bare_clone();
    let vault = Vault::new();
    vault.sync_as(&bare, "tagged");

    let dir = tempdir("repovault-push-tag-");
    let target = empty_target(dir.path(), "t");
    let limit = (2 * BLOB + BLOB / 2).to_string();
    let args = [
        "restore",
        "--repo",
        "tagged",
        "--latest",
        "--push",
        path_str(&target),
        "--max-push-bytes",
        &limit,
        "--json",
    ];
    let out = vault.run(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let report = parse_json(&out);
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() >= 3, "{report}");
    let via_temp = steps
        .iter()
        .filter(|s| {
            s["refspecs"]
                .to_string()
                .contains("repovault-restore-in-progress")
        })
        .count();
    assert!(
        via_temp >= 2,
        "intermediate steps through the temporary branch: {report}"
    );
    assert_eq!(
        refs_of(&target),
        refs_of(&bare),
        "the temporary branch is gone"
    );
    fsck_clean(&target);
}
