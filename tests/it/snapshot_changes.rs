//! Store format 3 records a snapshot that differs from an earlier one of its
//! repository in a few refs as a change to it, in its file and in the index
//! (issue 15). Through the real binary, on a real repository with many refs:
//!
//! * the second and third snapshot files name the first as their base and
//!   hold only the refs that moved; every snapshot restores with all its refs;
//! * forgetting the base rewrites the snapshots that stay with all their refs
//!   first, also when the forget is killed at any point;
//! * repair-index rebuilds the same snapshots from such files;
//! * a base file that is gone or altered is damage of every snapshot that
//!   needs it, named by verify.

use crate::support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::{describe, git, parse_json, path_str, refs_of, rv, rv_ok, TestRepo};

const DAMAGED: i32 = 12;

struct World {
    _base: tempfile::TempDir,
    store: PathBuf,
    cache: PathBuf,
    repo: TestRepo,
    bare: PathBuf,
}

impl World {
    /// A repository with 30 tags synced once.
    fn new() -> World {
        let base = tempfile::tempdir().unwrap();
        let (store, cache) = (base.path().join("store"), base.path().join("cache"));
        rv_ok(&store, &["init"]);
        let repo = TestRepo::new();
        repo.write("a.txt", "first\n");
        repo.commit("first");
        for i in 0..30 {
            repo.tag_lightweight(&format!("t{i:02}"), "HEAD");
        }
        let bare = base.path().join("r.git");
        git(base.path(), &["init", "-q", "--bare", path_str(&bare)]);
        let w = World {
            _base: base,
            store,
            cache,
            repo,
            bare,
        };
        w.commit_and_sync(0);
        w
    }

    /// A new commit on the branch, published and synced.
    fn commit_and_sync(&self, i: u32) {
        if i > 0 {
            self.repo.write("a.txt", format!("version {i}\n"));
            self.repo.commit(&format!("commit {i}"));
        }
        self.repo.publish(&self.bare);
        let out = support::rv_sync(&self.store, &self.cache, &self.bare, "r");
        assert!(out.status.success(), "{}", describe(&out));
    }

    /// Snapshot ids, oldest first.
    fn snapshot_ids(&self) -> Vec<String> {
        let out = rv_ok(&self.store, &["snapshots", "--json"]);
        parse_json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn file(&self, id: &str) -> PathBuf {
        self.store.join("snapshots").join(format!("{id}.json"))
    }

    fn record(&self, id: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.file(id)).unwrap()).unwrap()
    }

    fn verify(&self) -> Output {
        rv(&self.store, &["verify", "--json"])
    }

    fn assert_clean(&self, what: &str) {
        let out = self.verify();
        assert!(
            out.status.success() && parse_json(&out)["clean"] == true,
            "{what}: {}",
            describe(&out)
        );
    }

    /// Restores snapshot `id` and returns its refs as git sees them.
    fn restore(&self, id: &str, to: &str) -> Vec<(String, String)> {
        let dest = self.store.parent().unwrap().join(to);
        rv_ok(
            &self.store,
            &["restore", "--repo", "r", "--snapshot", id, path_str(&dest)],
        );
        git(&dest, &["fsck", "--connectivity-only"]);
        refs_of(&dest)
    }
}

/// The refs of the source as they were, for comparing with a restore.
fn source_refs(bare: &Path) -> Vec<(String, String)> {
    refs_of(bare)
}

#[test]
fn snapshots_are_changes_to_a_base_and_restore_whole() {
    let w = World::new();
    let first_refs = source_refs(&w.bare);
    w.commit_and_sync(1);
    w.commit_and_sync(2);
    let ids = w.snapshot_ids();
    assert_eq!(ids.len(), 3);
    let first = w.record(&ids[0]);
    assert!(first.get("base").is_none());
    assert_eq!(
        first["refs"].as_array().unwrap().len(),
        32,
        "HEAD, main, 30 tags"
    );
    for id in &ids[1..] {
        let r = w.record(id);
        assert_eq!(r["base"], ids[0].as_str(), "{r:#}");
        let names: Vec<&str> = r["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "only HEAD and the branch moved: {names:?}");
        assert!(names.contains(&"HEAD"), "{names:?}");
    }
    // The listing shows every ref of each snapshot.
    let out = rv_ok(&w.store, &["snapshots", "--json", "--refs"]);
    for s in parse_json(&out).as_array().unwrap() {
        assert_eq!(s["refs"].as_array().unwrap().len(), 32, "{s:#}");
    }
    w.assert_clean("after three syncs");
    assert_eq!(w.restore(&ids[0], "r0"), first_refs);
    assert_eq!(w.restore(&ids[2], "r2"), source_refs(&w.bare));

    // repair-index rebuilds the same snapshots from the files.
    let before = rv_ok(&w.store, &["snapshots", "--json", "--refs"]);
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(w.store.join(f));
    }
    rv_ok(&w.store, &["repair-index"]);
    let after = rv_ok(&w.store, &["snapshots", "--json", "--refs"]);
    assert_eq!(parse_json(&after), parse_json(&before));
    w.assert_clean("after repair-index");
}

/// Forgetting the base: the snapshots that stay get files with all their
/// refs before the base's file goes, whatever point a kill -9 hits.
#[test]
fn forgetting_the_base_keeps_the_snapshots_built_on_it_at_every_kill_point() {
    let w = World::new();
    w.commit_and_sync(1);
    w.commit_and_sync(2);
    let ids = w.snapshot_ids();
    let refs2 = source_refs(&w.bare);
    for point in ["forget-files-rebased", ""] {
        let mut cmd = support::rv_store_cmd(&w.store, &["forget", "--keep-last", "2"]);
        if !point.is_empty() {
            cmd.env("REPOVAULT_CRASH_AT", point);
        }
        let out = support::run_with_timeout(&mut cmd, Duration::from_secs(120));
        if point.is_empty() {
            assert!(out.status.success(), "{}", describe(&out));
        } else {
            assert!(!out.status.success(), "killed at {point}");
            // The snapshots that stay already have all their refs; the base is still there.
            for id in &ids[1..] {
                assert!(w.record(id).get("base").is_none(), "killed at {point}");
            }
            assert!(w.file(&ids[0]).exists());
        }
        w.assert_clean(&format!("forget killed at {point:?}"));
    }
    assert_eq!(w.snapshot_ids(), ids[1..].to_vec());
    assert!(!w.file(&ids[0]).exists());
    assert_eq!(w.record(&ids[1])["refs"].as_array().unwrap().len(), 32);
    assert_eq!(w.restore(&ids[2], "r2"), refs2);
    // The next snapshot is a change to the oldest one left with all its refs.
    w.commit_and_sync(3);
    let ids = w.snapshot_ids();
    assert_eq!(w.record(&ids[2])["base"], ids[1].as_str());
    w.assert_clean("after the next sync");
}

/// A base file that is gone or altered is damage of the snapshots built on it.
#[test]
fn a_damaged_base_file_is_damage_of_every_snapshot_built_on_it() {
    let w = World::new();
    w.commit_and_sync(1);
    let ids = w.snapshot_ids();
    let base_file = w.file(&ids[0]);
    let good = std::fs::read(&base_file).unwrap();

    // A tag of the base moved by hand: both snapshots' files are wrong now.
    let mut record: Value = serde_json::from_slice(&good).unwrap();
    let tag = record["refs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == "refs/tags/t05")
        .unwrap();
    assert_ne!(tag["target"], Value::Null);
    tag["target"] = Value::String("0".repeat(40));
    std::fs::write(&base_file, serde_json::to_vec(&record).unwrap()).unwrap();
    let out = w.verify();
    assert_eq!(out.status.code(), Some(DAMAGED), "{}", describe(&out));
    let report = parse_json(&out);
    let affected: Vec<&str> = report["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["snapshot"].as_str().unwrap())
        .collect();
    assert!(affected.contains(&ids[0].as_str()), "{report:#}");
    assert!(affected.contains(&ids[1].as_str()), "{report:#}");
    let text = report["problems"].to_string();
    assert!(text.contains("do not hash to this snapshot's id"), "{text}");

    // The base file gone: named as missing, and its dependent cannot be read.
    std::fs::remove_file(&base_file).unwrap();
    let out = w.verify();
    assert_eq!(out.status.code(), Some(DAMAGED), "{}", describe(&out));
    let report = parse_json(&out);
    let text = report["problems"].to_string();
    assert!(
        text.contains(&format!("snapshots/{}.json is missing", ids[0])),
        "{text}"
    );
    assert!(text.contains(&format!("{}.json", ids[1])), "{text}");
    assert!(
        text.contains("its refs are recorded as a change to snapshot"),
        "{text}"
    );

    // The next writer writes the base back from the index: clean again.
    w.commit_and_sync(2);
    let back = w.record(&ids[0]);
    let good: Value = serde_json::from_slice(&good).unwrap();
    assert_eq!(back["refs"], good["refs"]);
    assert!(back.get("base").is_none());
    w.assert_clean("after the base file was written back");
}
