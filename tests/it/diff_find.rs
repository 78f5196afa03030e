//! `diff`, `find`, `snapshots --latest / --refs` and quiet closed pipes,
//! through the binary, on real git repositories synced into a real store.
//!
//! The history: snapshot 1 of a repository with `main`, a branch `topic`,
//! a lightweight tag `0.1.0` and an annotated tag `v0.2`; then `topic` is
//! force-pushed (its two commits replaced by one), `0.1.0` is deleted and a
//! branch `newbranch` with two new commits is added; snapshot 2.

use crate::support;

use support::Vault;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{describe, git, parse_json, TestRepo};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_repovault");
const TIMEOUT: Duration = Duration::from_secs(300);

impl Vault {
    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    /// Syncs a bare repository as `name`; returns the new snapshot's id.
    fn sync_id(&self, bare: &Path, name: &str) -> String {
        let cache = self.cache.to_str().unwrap();
        let doc = self.json(&[
            "sync",
            bare.to_str().unwrap(),
            "--name",
            name,
            "--cache",
            cache,
            "--json",
        ]);
        doc["repos"][0]["snapshot"]
            .as_str()
            .unwrap_or_else(|| panic!("no snapshot in {doc:#}"))
            .to_owned()
    }
}

/// The history of the module doc, with everything a test needs to know about it.
struct History {
    repo: TestRepo,
    _base: TempDir,
    bare: PathBuf,
    v: Vault,
    snap1: String,
    snap2: String,
    /// `topic` before the force-push.
    old_topic: String,
    /// `topic` after it.
    new_topic: String,
    /// What `0.1.0` pointed to.
    tag_target: String,
    newbranch: String,
    /// Every ref target of the source before and after (for `git rev-list`).
    old_tips: Vec<String>,
    new_tips: Vec<String>,
}

fn tips(bare: &Path) -> Vec<String> {
    git(bare, &["for-each-ref", "--format=%(objectname)"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn history() -> History {
    let r = TestRepo::new();
    r.commit_file("a.txt", "1\n", "c1");
    let c2 = r.commit_file("a.txt", "2\n", "c2");
    r.tag_lightweight("0.1.0", &c2);
    r.commit_file("a.txt", "3\n", "c3");
    r.branch("topic");
    r.commit_file("a.txt", "4\n", "c4");
    r.tag_annotated("v0.2", "HEAD", "release 0.2");
    r.commit_file("a.txt", "5\n", "c5");
    r.checkout("topic");
    r.commit_file("t.txt", "t1\n", "t1");
    let old_topic = r.commit_file("t.txt", "t2\n", "t2");
    r.checkout("main");
    let base = tempfile::Builder::new()
        .prefix("repovault-diff-src-")
        .tempdir()
        .unwrap();
    let bare = base.path().join("proj.git");
    r.bare_clone_to(&bare);
    let v = Vault::new();
    let snap1 = v.sync_id(&bare, "proj");
    let old_tips = tips(&bare);

    // Force-push topic: its two commits replaced by one.
    r.checkout("topic");
    r.git(&["reset", "-q", "--hard", "HEAD~2"]);
    let new_topic = r.commit_file("t.txt", "t1 rewritten\n", "t1'");
    // A new branch with two new commits.
    r.checkout("main");
    r.git(&["checkout", "-q", "-b", "newbranch"]);
    r.commit_file("n.txt", "n1\n", "n1");
    let newbranch = r.commit_file("n.txt", "n2\n", "n2");
    r.checkout("main");
    // Delete the tag.
    r.git(&["tag", "-d", "0.1.0"]);
    r.publish(&bare);
    let snap2 = v.sync_id(&bare, "proj");
    assert_ne!(snap1, snap2);
    let new_tips = tips(&bare);
    History {
        repo: r,
        _base: base,
        bare,
        v,
        snap1,
        snap2,
        old_topic,
        new_topic,
        tag_target: c2,
        newbranch,
        old_tips,
        new_tips,
    }
}

/// `git rev-list --count A --not B` in the work repository (which still has every commit).
fn rev_list_count(r: &TestRepo, tips: &[String], not: &[String]) -> u64 {
    let mut args = vec!["rev-list", "--count"];
    args.extend(tips.iter().map(String::as_str));
    args.push("--not");
    args.extend(not.iter().map(String::as_str));
    git(&r.path, &args).parse().unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

fn snapshot_ids(hits: &Value) -> Vec<String> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| h["snapshot"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn diff_lists_the_force_push_the_deleted_tag_and_the_new_branch() {
    let h = history();
    let (p1, p2) = (&h.snap1[..8], &h.snap2[..8]);
    let d = h.v.json(&["diff", p1, p2, "--json"]);
    assert_eq!(d["from"]["id"], h.snap1.as_str(), "{d:#}");
    assert_eq!(d["to"]["id"], h.snap2.as_str(), "{d:#}");
    assert_eq!(names(&d["added"]), ["refs/heads/newbranch"], "{d:#}");
    assert_eq!(d["added"][0]["target"], h.newbranch.as_str());
    assert_eq!(names(&d["removed"]), ["refs/tags/0.1.0"], "{d:#}");
    assert_eq!(d["removed"][0]["target"], h.tag_target.as_str());
    let moved = d["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 1, "{d:#}");
    assert_eq!(moved[0]["old"]["name"], "refs/heads/topic");
    assert_eq!(moved[0]["old"]["target"], h.old_topic.as_str());
    assert_eq!(moved[0]["new"]["target"], h.new_topic.as_str());

    let gained = rev_list_count(&h.repo, &h.new_tips, &h.old_tips);
    let lost = rev_list_count(&h.repo, &h.old_tips, &h.new_tips);
    assert_eq!(
        (gained, lost),
        (3, 2),
        "the history is what this test means"
    );
    assert_eq!(d["commits"]["gained"], gained, "{d:#}");
    assert_eq!(d["commits"]["lost"], lost, "{d:#}");
    assert_eq!(d["missing"].as_array().unwrap().len(), 0);

    // The other way round: gained and lost swap, added and removed too.
    let r = h.v.json(&["diff", p2, p1, "--json"]);
    assert_eq!(names(&r["added"]), ["refs/tags/0.1.0"]);
    assert_eq!(names(&r["removed"]), ["refs/heads/newbranch"]);
    assert_eq!(r["commits"]["gained"], lost);
    assert_eq!(r["commits"]["lost"], gained);

    // A snapshot against itself: nothing.
    let same = h.v.json(&["diff", p1, &h.snap1, "--json"]);
    for k in ["added", "removed", "moved"] {
        assert!(same[k].as_array().unwrap().is_empty(), "{same:#}");
    }
    assert_eq!(same["commits"]["gained"], 0);
    assert_eq!(same["commits"]["lost"], 0);

    // Human output: one line per change, with the old and new ids.
    let text = h.v.stdout(&["diff", p1, p2]);
    assert!(
        text.contains(&format!("added    refs/heads/newbranch  {}", h.newbranch)),
        "{text}"
    );
    assert!(
        text.contains(&format!("removed  refs/tags/0.1.0       {}", h.tag_target)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "moved    refs/heads/topic      {} => {}",
            h.old_topic, h.new_topic
        )),
        "{text}"
    );
    assert!(
        text.contains("refs: 1 added, 1 removed, 1 moved; commits: 3 gained, 2 lost"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 6, "{text}");
}

#[test]
fn find_names_the_snapshots_that_hold_a_ref_or_a_commit() {
    let h = history();
    // A fork synced as another repository still has the tag.
    let fork = h._base.path().join("fork.git");
    git(
        h._base.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            h.bare.to_str().unwrap(),
            fork.to_str().unwrap(),
        ],
    );
    git(&fork, &["tag", "0.1.0", &h.tag_target]);
    let fork_snap = h.v.sync_id(&fork, "fork");

    // The deleted tag: snapshot 1 (and the fork), with --repo snapshot 1 only.
    let f = h.v.json(&["find", "0.1.0", "--repo", "proj", "--json"]);
    assert_eq!(snapshot_ids(&f["refs"]), [h.snap1.as_str()], "{f:#}");
    assert_eq!(f["refs"][0]["ref"]["name"], "refs/tags/0.1.0");
    assert_eq!(f["refs"][0]["ref"]["target"], h.tag_target.as_str());
    assert_eq!(f["commit"], Value::Null, "{f:#}");
    assert_eq!(f["snapshots_searched"], 2);
    let all = h.v.json(&["find", "refs/tags/0.1.0", "--json"]);
    assert_eq!(
        snapshot_ids(&all["refs"]),
        [h.snap1.as_str(), fork_snap.as_str()],
        "{all:#}"
    );

    // The commit force-pushed away: reachable in snapshot 1 only (and in the
    // fork, which was cloned after the force-push: not there).
    for q in [&h.old_topic[..], &h.old_topic[..10]] {
        let f = h.v.json(&["find", q, "--json"]);
        assert_eq!(f["commit"], h.old_topic.as_str(), "{f:#}");
        assert_eq!(
            snapshot_ids(&f["commit_snapshots"]),
            [h.snap1.as_str()],
            "{f:#}"
        );
        assert_eq!(f["commit_snapshots"][0]["refs"][0], "refs/heads/topic");
        assert!(f["refs"].as_array().unwrap().is_empty());
    }
    // Its parent t1 is reachable only through topic too (not a ref target itself).
    let t1 = h.repo.rev_parse(&format!("{}~1", h.old_topic));
    let f = h.v.json(&["find", &t1, "--repo", "proj", "--json"]);
    assert_eq!(snapshot_ids(&f["commit_snapshots"]), [h.snap1.as_str()]);

    // The commit the deleted tag pointed to is still reachable from main.
    let f =
        h.v.json(&["find", &h.tag_target, "--repo", "proj", "--json"]);
    assert_eq!(
        snapshot_ids(&f["commit_snapshots"]),
        [h.snap1.as_str(), h.snap2.as_str()],
        "{f:#}"
    );
    let refs2 = f["commit_snapshots"][1]["refs"].as_array().unwrap();
    let refs2: Vec<&str> = refs2.iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(
        refs2,
        [
            "HEAD",
            "refs/heads/main",
            "refs/heads/newbranch",
            "refs/heads/topic",
            "refs/tags/v0.2"
        ],
        "{f:#}"
    );

    // The new branch, by name and by its commit: snapshot 2 (and the fork).
    let f = h.v.json(&["find", "newbranch", "--repo", "proj", "--json"]);
    assert_eq!(snapshot_ids(&f["refs"]), [h.snap2.as_str()], "{f:#}");
    let f = h.v.json(&["find", &h.newbranch, "--json"]);
    assert_eq!(
        snapshot_ids(&f["commit_snapshots"]),
        [h.snap2.as_str(), fork_snap.as_str()],
        "{f:#}"
    );

    // Human output.
    let text = h.v.stdout(&["find", "0.1.0", "--repo", "proj"]);
    assert!(text.contains("ref 0.1.0:"), "{text}");
    assert!(text.contains(&format!("  {}  ", &h.snap1[..8])), "{text}");
    assert!(!text.contains(&h.snap2[..8]), "{text}");
    let text = h.v.stdout(&["find", &h.old_topic]);
    assert!(text.contains(&format!("commit {}:", h.old_topic)), "{text}");
    assert!(text.contains("reachable from refs/heads/topic"), "{text}");
    assert!(!text.contains(&h.snap2[..8]), "{text}");

    // Nothing found: exit 0 and say so.
    let text = h.v.stdout(&["find", "no-such-ref"]);
    assert!(text.contains("no ref named \"no-such-ref\""), "{text}");
    let f = h.v.json(&["find", "no-such-ref", "--json"]);
    assert!(f["refs"].as_array().unwrap().is_empty());
    // A tree id is not a commit: a one-line error, exit 1.
    let tree = h.repo.rev_parse("main^{tree}");
    let out = h.v.run(&["find", &tree]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a tree, not a commit"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn snapshot_ids_are_named_by_unique_prefixes() {
    let h = history();
    let out = h.v.run(&["diff", "ffffffffffff", &h.snap2]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshot has id ffffffffffff"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Not an id at all: a bad command line (exit 2), as a JSON error under --json.
    let out = h.v.run(&["diff", "not-hex", &h.snap2]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a snapshot id"));
    let out = h.v.run(&["diff", "not-hex", &h.snap2, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(parse_json(&out)["error"]["exit_code"], 2);
    let out = h.v.run(&["find", " "]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Any unique prefix works, and case does not matter.
    let d = h.v.json(&[
        "diff",
        &h.snap1[..5].to_uppercase(),
        &h.snap2[..6],
        "--json",
    ]);
    assert_eq!(d["from"]["id"], h.snap1.as_str());
    assert_eq!(d["to"]["id"], h.snap2.as_str());
}

#[test]
fn snapshots_latest_and_refs() {
    let h = history();
    let other = TestRepo::new();
    other.commit_file("x", "x\n", "x");
    let obare = h._base.path().join("other.git");
    other.bare_clone_to(&obare);
    let other_snap = h.v.sync_id(&obare, "other");

    let all = h.v.json(&["snapshots", "--json"]);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&h.snap1[..], &h.snap2, &other_snap]);
    for s in all.as_array().unwrap() {
        assert!(s.get("refs").is_none(), "refs only with --refs: {s:#}");
        assert!(s["ref_count"].as_u64().unwrap() > 0, "{s:#}");
    }
    assert_eq!(
        all[1]["ref_count"],
        h.new_tips.len() + 1,
        "the refs and HEAD"
    );

    let latest = h.v.json(&["snapshots", "--latest", "--json"]);
    let ids: Vec<&str> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&h.snap2[..], &other_snap]);
    let one =
        h.v.json(&["snapshots", "--latest", "--repo", "proj", "--json"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["id"], h.snap2.as_str());
    let text = h.v.stdout(&["snapshots", "--latest"]);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains(&h.snap1[..8]), "{text}");

    // --refs: every ref with its target, as the source has them.
    let with =
        h.v.json(&["snapshots", "--refs", "--repo", "proj", "--json"]);
    assert_eq!(
        support::snapshot_ref_pairs(&with[1]),
        support::refs_of(&h.bare)
    );
    let text = h.v.stdout(&["snapshots", "--refs", "--repo", "proj"]);
    assert!(
        text.contains(&format!("{}  refs/heads/newbranch", h.newbranch)),
        "{text}"
    );
}

/// Runs `repovault ARGS` with stdout a pipe whose reading end is already
/// closed: every write fails with EPIPE.
fn run_into_closed_pipe(v: &Vault, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = v.cmd(args);
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let h = history();
    let (p1, p2) = (&h.snap1[..8], &h.snap2[..8]);
    let commands: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["snapshots", "--json", "--refs"],
        vec!["diff", p1, p2],
        vec!["diff", p1, p2, "--json"],
        vec!["find", "main"],
        vec!["find", "main", "--json"],
        vec!["find", &h.old_topic, "--json"],
        vec!["restore", "--repo", "proj", "--latest", "--list"],
        vec!["restore", "--repo", "proj", "--latest", "--list", "--json"],
    ];
    for args in &commands {
        let out = run_into_closed_pipe(&h.v, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.is_empty(),
            "repovault {args:?} into a closed pipe wrote to stderr:\n{err}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked");
        assert!(out.status.code().is_some(), "{args:?}: killed by a signal");
    }

    // And as a shell pipeline, with more output than a pipe holds (many refs).
    let mut input = String::new();
    for i in 0..3000 {
        input.push_str(&format!("create refs/tags/many-{i:04} {}\n", h.newbranch));
    }
    let mut up = support::git_command(&h.bare, &["update-ref", "--stdin"]);
    up.stdin(Stdio::piped());
    let mut child = up.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    h.v.sync_id(&h.bare, "proj");
    let script = format!(
        "'{BIN}' --store '{}' snapshots --json --refs | head -c 10 >/dev/null; echo \"exit=${{PIPESTATUS[0]}}\" >&2",
        h.v.store.display()
    );
    let mut sh = Command::new("bash");
    support::hermetic(&mut sh);
    let out = support::run_with_timeout(sh.arg("-c").arg(&script), TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    let code = err
        .trim()
        .strip_prefix("exit=")
        .unwrap_or_else(|| panic!("{err}"));
    assert_ne!(code, "101", "{err}");
    assert_eq!(
        err.lines().count(),
        1,
        "nothing but the exit code on stderr: {err}"
    );
}
