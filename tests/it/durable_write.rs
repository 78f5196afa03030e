//! Crash-safe file writes (`repovault::durable`) through the binary: a sync
//! killed with SIGKILL after a new file's bytes are written and fsynced under
//! a temporary name, but before the rename, leaves every file of the store as
//! it was, a temporary file that neither verify nor any listing counts, and a
//! store the next sync cleans up and writes to.

use crate::support::{self, describe, parse_json, TestRepo, Vault};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

impl Vault {
    /// `sync --json --name repo --cache CACHE SOURCE`, with `REPOVAULT_CRASH_AT=crash_at` if given.
    fn sync_crashing_at(&self, source: &Path, crash_at: Option<&str>) -> Output {
        let mut cmd = self.cmd(&["sync", "--json", "--name", "repo", "--cache"]);
        cmd.arg(&self.cache).arg(source);
        if let Some(point) = crash_at {
            cmd.env("REPOVAULT_CRASH_AT", point);
        }
        support::run_with_timeout(&mut cmd, Duration::from_secs(300))
    }

    fn snapshot_count(&self) -> usize {
        self.json(&["snapshots", "--json"])
            .as_array()
            .expect("snapshots is an array")
            .len()
    }

    fn assert_verify_clean(&self, what: &str) {
        let out = self.run(&["verify", "--read-data", "--json"]);
        assert!(
            out.status.success() && parse_json(&out)["clean"] == true,
            "{what}: verify --read-data is not clean:\n{}",
            describe(&out)
        );
    }
}

/// (name, content) of every file in `dir`, sorted by name.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

fn temporaries(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// For a new pack and for a new snapshot file: kill the second sync at the
/// point between the temporary file's fsync and its rename.
#[test]
fn sync_killed_before_a_rename_leaves_the_store_as_it_was() {
    for (point, dir, ext) in [
        ("before-rename-pack", "packs", ".pack"),
        ("before-rename-json", "snapshots", ".tmp"),
    ] {
        let v = Vault::new();
        let repo = TestRepo::new();
        repo.commit_file("a.txt", "first\n", "first");
        let out = v.sync_crashing_at(&repo.path, None);
        assert!(out.status.success(), "first sync:\n{}", describe(&out));
        let before = files_in(&v.store.join(dir));
        assert!(temporaries(&before).is_empty());
        let stats_before = v.json(&["stats", "--json"]);

        repo.commit_file("b.txt", "second\n".repeat(1000), "second");
        let out = v.sync_crashing_at(&repo.path, Some(point));
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: the sync should die by SIGKILL:\n{}",
            describe(&out)
        );

        // Every named file is exactly as before; the new one is only a temporary.
        let after = files_in(&v.store.join(dir));
        let named = |f: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
            f.iter()
                .filter(|(n, _)| !n.starts_with('.'))
                .cloned()
                .collect()
        };
        assert_eq!(named(&after), named(&before), "{point}: {dir}/ changed");
        // (The sync has a pack of each kind open: the other may still be empty.)
        let tmp = temporaries(&after);
        assert!(
            !tmp.is_empty() && tmp.iter().all(|n| n.ends_with(ext)),
            "{point}: {dir}/ holds {:?}",
            after.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        // The bytes were written and fsynced before the crash: only the name is missing.
        assert!(
            after
                .iter()
                .any(|(n, c)| tmp.contains(&n.as_str()) && !c.is_empty()),
            "{point}: every temporary file is empty"
        );

        // Nothing counts the temporary files: no snapshot is added, and
        // before the pack is named, the index holds what the first sync wrote.
        // (A snapshot file comes after its packs are committed: those count.)
        v.assert_verify_clean(point);
        assert_eq!(v.snapshot_count(), 1, "{point}");
        if ext == ".pack" {
            let stats = v.json(&["stats", "--json"]);
            assert_eq!(stats["packs"], stats_before["packs"], "{point}: {stats:#}");
            assert_eq!(
                stats["objects"], stats_before["objects"],
                "{point}: {stats:#}"
            );
        }

        // The next sync removes the leftover and records the new state.
        let out = v.sync_crashing_at(&repo.path, None);
        assert!(
            out.status.success(),
            "{point}: sync after the crash:\n{}",
            describe(&out)
        );
        assert_eq!(v.snapshot_count(), 2, "{point}");
        for d in ["packs", "snapshots"] {
            let files = files_in(&v.store.join(d));
            assert!(
                temporaries(&files).is_empty(),
                "{point}: {d}/ still holds a temporary file"
            );
        }
        v.assert_verify_clean(point);
    }
}
