//! The store's files are the truth, not the index (issue 12, items 1-3),
//! through the real binary with real git repositories and real SQLite:
//!
//! * an index that lags the files (an older copy put back, or truncated to
//!   0 bytes) is damage for verify, is rebuilt before sync and prune write
//!   with it, and prune deletes nothing a snapshot file needs: every snapshot
//!   ever recorded restores bit for bit;
//! * a deleted snapshot file is damage, is written back from the index by the
//!   next writer, and repair-index names it when it cannot recover it;
//! * repair-index salvages a pack with one flipped byte chunk by chunk.

use crate::support;

use support::cp_a;

use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{describe, git, parse_json, random_bytes, refs_of, TestRepo};

const DAMAGED: i32 = 12;
const PARTIAL: i32 = 3;

use support::{path_str, rv, rv_ok};

/// `sync SOURCE --name NAME --json`; returns the repository's status.
fn sync(store: &Path, cache: &Path, source: &Path, name: &str) -> (String, Output) {
    let out = support::rv_sync(store, cache, source, name);
    let doc = parse_json(&out);
    let status = doc["repos"][0]["status"].as_str().unwrap().to_owned();
    (status, out)
}

/// A small repository with a branch, tags and several files.
fn repo(seed: u64) -> TestRepo {
    let r = TestRepo::new();
    for i in 0..6u64 {
        r.write(
            "a.txt",
            format!("{seed} line {i}\n").repeat(40 + i as usize),
        );
        r.write(&format!("bin/{i}.dat"), random_bytes(seed * 100 + i, 3000));
        r.commit(&format!("commit {i} of {seed}"));
        if i == 2 {
            r.tag_annotated("v1", "HEAD", "release 1");
            r.branch("dev");
        }
    }
    r
}

/// A temporary directory with an initialised store, a mirror cache path and
/// the bare repository `a.git`: `repo(seed)` published and synced once as `a`.
struct One {
    base: tempfile::TempDir,
    store: PathBuf,
    cache: PathBuf,
    a: TestRepo,
    bare: PathBuf,
}

fn one_synced(seed: u64) -> One {
    let base = tempfile::tempdir().unwrap();
    let (store, cache) = (base.path().join("store"), base.path().join("cache"));
    rv_ok(&store, &["init"]);
    let a = repo(seed);
    let bare = base.path().join("a.git");
    git(base.path(), &["init", "-q", "--bare", path_str(&bare)]);
    a.publish(&bare);
    sync(&store, &cache, &bare, "a");
    One {
        base,
        store,
        cache,
        a,
        bare,
    }
}

/// Every object reachable from the refs of `repo`.
fn objects_of(repo: &Path) -> BTreeSet<String> {
    git(repo, &["rev-list", "--objects", "--all"])
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// Restores snapshot `id` of `name` and compares refs, HEAD and objects with
/// `source` (a copy of the source as it was when the snapshot was taken).
fn assert_restores(store: &Path, dir: &Path, name: &str, id: &str, source: &Path) {
    let dest = dir.join(format!("restored-{}", &id[..12]));
    let _ = std::fs::remove_dir_all(&dest);
    rv_ok(
        store,
        &["restore", "--repo", name, "--snapshot", id, path_str(&dest)],
    );
    assert_eq!(refs_of(&dest), refs_of(source), "refs of {name} {id}");
    assert_eq!(
        objects_of(&dest),
        objects_of(source),
        "objects of {name} {id}"
    );
    git(&dest, &["fsck", "--full", "--strict"]);
}

/// Every snapshot in the index: (id, repo).
fn snapshot_list(store: &Path) -> Vec<(String, String)> {
    let doc = parse_json(&rv_ok(store, &["snapshots", "--json"]));
    doc.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["repo"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `verify --json [--read-data]`: exit code and document.
fn verify(store: &Path, read_data: bool) -> (i32, Value, String) {
    let mut args = vec!["verify", "--json"];
    if read_data {
        args.push("--read-data");
    }
    let out = rv(store, &args);
    let code = out.status.code().expect("not killed");
    (code, parse_json(&out), describe(&out))
}

fn assert_lag_reported(store: &Path, what: &str) {
    for read_data in [false, true] {
        let (code, doc, text) = verify(store, read_data);
        assert_eq!(code, DAMAGED, "{what} (read_data {read_data}): {text}");
        let problems = doc["problems"].as_array().unwrap();
        assert!(
            problems.iter().any(|p| {
                let d = p["detail"].as_str().unwrap();
                d.contains("is not in the index") && d.contains("repair-index")
            }),
            "{what}: a problem names the unknown snapshot files and the fix: {text}"
        );
    }
}

fn index_files(store: &Path) -> [PathBuf; 3] {
    ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"].map(|f| store.join(f))
}

/// Item 1, with the exact sequence of the issue: sync A, copy the index
/// aside, force-push A, add B, sync, put the old index back, verify, sync,
/// forget --prune, repair-index: every snapshot restores bit for bit.
#[test]
fn an_older_index_put_back_loses_nothing() {
    let base = tempfile::tempdir().unwrap();
    let (store, cache) = (base.path().join("store"), base.path().join("cache"));
    rv_ok(&store, &["init"]);
    let a = repo(1);
    let bare_a = base.path().join("a.git");
    git(base.path(), &["init", "-q", "--bare", path_str(&bare_a)]);
    a.publish(&bare_a);
    assert_eq!(sync(&store, &cache, &bare_a, "a").0, "new");
    let a_then = base.path().join("a-then.git");
    cp_a(&bare_a, &a_then);

    // Yesterday's disk image of the index.
    let aside = base.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    for f in index_files(&store) {
        if f.exists() {
            std::fs::copy(&f, aside.join(f.file_name().unwrap())).unwrap();
        }
    }

    // A force-push drops A's tip (only the store keeps it); B is new.
    let dropped = a.rev_parse("HEAD");
    a.git(&["reset", "-q", "--hard", "HEAD~2"]);
    a.commit_file("a.txt", "rewritten\n", "rewritten history");
    a.git(&["tag", "-d", "v1"]);
    a.publish(&bare_a);
    assert!(!git(&bare_a, &["rev-list", "--all"]).contains(&dropped));
    let b = repo(2);
    let bare_b = base.path().join("b.git");
    git(base.path(), &["init", "-q", "--bare", path_str(&bare_b)]);
    b.publish(&bare_b);
    assert_eq!(sync(&store, &cache, &bare_a, "a").0, "changed");
    assert_eq!(sync(&store, &cache, &bare_b, "b").0, "new");
    let recorded = snapshot_list(&store);
    assert_eq!(recorded.len(), 3, "{recorded:?}");

    // The old index is put back.
    for f in index_files(&store) {
        let _ = std::fs::remove_file(&f);
        let old = aside.join(f.file_name().unwrap());
        if old.exists() {
            std::fs::copy(&old, &f).unwrap();
        }
    }
    assert_eq!(snapshot_list(&store).len(), 1);
    assert_lag_reported(&store, "the old index put back");

    // sync rebuilds the index first and says so; nothing changed upstream.
    let (status, out) = sync(&store, &cache, &bare_a, "a");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the index lagged") && err.contains("rebuilt"),
        "sync says it rebuilt the index: {}",
        describe(&out)
    );
    assert_eq!(status, "unchanged", "{}", describe(&out));
    assert_eq!(sync(&store, &cache, &bare_b, "b").0, "unchanged");

    let out = rv_ok(
        &store,
        &["forget", "--keep-last", "10", "--prune", "--json"],
    );
    let doc = parse_json(&out);
    assert_eq!(doc["removed"], 0, "{doc:#}");
    assert_eq!(doc["prune"]["packs_deleted"], 0, "{doc:#}");
    assert_eq!(doc["prune"]["unindexed_packs_deleted"], 0, "{doc:#}");

    let out = rv(&store, &["repair-index", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut now = snapshot_list(&store);
    let mut want = recorded.clone();
    now.sort();
    want.sort();
    assert_eq!(now, want, "every snapshot ever recorded is there");
    let (code, _, text) = verify(&store, true);
    assert_eq!(code, 0, "{text}");
    let a_first = &recorded.iter().find(|s| s.1 == "a").unwrap().0;
    let a_second = &recorded.iter().rfind(|s| s.1 == "a").unwrap().0;
    let b_only = &recorded.iter().find(|s| s.1 == "b").unwrap().0;
    assert_restores(&store, base.path(), "a", a_first, &a_then);
    assert_restores(&store, base.path(), "a", a_second, &bare_a);
    assert_restores(&store, base.path(), "b", b_only, &bare_b);
}

/// Item 1: an index truncated to 0 bytes is damage, and the next sync,
/// forget and prune lose nothing.
#[test]
fn an_index_truncated_to_zero_bytes_loses_nothing() {
    let One {
        base,
        store,
        cache,
        a,
        bare,
    } = one_synced(3);
    let then = base.path().join("a-then.git");
    cp_a(&bare, &then);
    a.git(&["reset", "-q", "--hard", "HEAD~3"]);
    a.commit_file("new.txt", "new\n", "forced");
    a.publish(&bare);
    assert_eq!(sync(&store, &cache, &bare, "a").0, "changed");
    let recorded = snapshot_list(&store);

    let [idx, wal, shm] = index_files(&store);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(0)
        .unwrap();
    let _ = std::fs::remove_file(wal);
    let _ = std::fs::remove_file(shm);
    assert_lag_reported(&store, "an index truncated to 0 bytes");

    let (status, out) = sync(&store, &cache, &bare, "a");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the index lagged"),
        "{}",
        describe(&out)
    );
    assert_eq!(status, "unchanged", "{}", describe(&out));
    let doc = parse_json(&rv_ok(
        &store,
        &["forget", "--keep-last", "5", "--prune", "--json"],
    ));
    assert_eq!(doc["prune"]["packs_deleted"], 0, "{doc:#}");
    assert_eq!(doc["prune"]["unindexed_packs_deleted"], 0, "{doc:#}");
    assert_eq!(snapshot_list(&store), recorded);
    let (code, _, text) = verify(&store, true);
    assert_eq!(code, 0, "{text}");
    assert_restores(&store, base.path(), "a", &recorded[0].0, &then);
    assert_restores(&store, base.path(), "a", &recorded[1].0, &bare);
}

/// Item 1, the index file deleted: writers refuse with one fix
/// (`repair-index`), delete nothing, and the rebuild brings every snapshot back.
#[test]
fn a_deleted_index_is_refused_with_one_fix_and_loses_nothing() {
    let One {
        base,
        store,
        cache,
        a: _a,
        bare,
    } = one_synced(3);
    let recorded = snapshot_list(&store);
    let packs = |s: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(s.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = packs(&store);

    for f in index_files(&store) {
        let _ = std::fs::remove_file(f);
    }
    let (source, cache) = (path_str(&bare).to_owned(), path_str(&cache).to_owned());
    for args in [
        vec![
            "sync",
            source.as_str(),
            "--name",
            "a",
            "--cache",
            cache.as_str(),
        ],
        vec!["forget", "--keep-last", "1", "--prune"],
    ] {
        let out = rv(&store, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("error:"))
            .unwrap_or_else(|| panic!("{args:?}: {}", describe(&out)));
        assert!(
            line.contains("is missing") && line.contains("`repovault repair-index`"),
            "{line}"
        );
        assert!(
            !line.contains("repovault verify"),
            "one fix, not two: {line}"
        );
        assert_eq!(packs(&store), before, "{args:?} changed the packs");
    }
    rv_ok(&store, &["repair-index"]);
    assert_eq!(snapshot_list(&store), recorded);
    assert_eq!(verify(&store, true).0, 0);
    assert_restores(&store, base.path(), "a", &recorded[0].0, &bare);
}

/// Item 1: prune refuses to delete anything while a snapshot file is one the
/// index does not know (here: one it cannot read).
#[test]
fn prune_refuses_while_a_snapshot_file_is_unknown() {
    let One {
        base: _base,
        store,
        a: _a,
        ..
    } = one_synced(4);
    let bogus = store
        .join("snapshots")
        .join(format!("{}.json", "ab".repeat(32)));
    std::fs::write(&bogus, b"{ not json").unwrap();
    let packs_before = std::fs::read_dir(store.join("packs")).unwrap().count();
    let out = rv(&store, &["prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not in the index") && err.contains("nothing was deleted"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        std::fs::read_dir(store.join("packs")).unwrap().count(),
        packs_before
    );
    let (code, doc, text) = verify(&store, false);
    assert_eq!(code, DAMAGED, "{text}");
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["detail"].as_str().unwrap().contains("cannot be read")),
        "{text}"
    );
}

/// Item 2: a deleted snapshot file is damage; the next writer writes it back
/// from the index; repair-index names a snapshot it cannot recover.
#[test]
fn a_deleted_snapshot_file_is_damage_and_is_not_dropped_silently() {
    let One {
        base,
        store,
        cache,
        a,
        bare,
    } = one_synced(5);
    let then = base.path().join("a-then.git");
    cp_a(&bare, &then);
    a.commit_file("more.txt", "more\n", "more");
    a.publish(&bare);
    sync(&store, &cache, &bare, "a");
    let snaps = snapshot_list(&store);
    let first = snaps[0].0.clone();
    let file = store.join("snapshots").join(format!("{first}.json"));
    let original = std::fs::read(&file).unwrap();

    std::fs::remove_file(&file).unwrap();
    let (code, doc, text) = verify(&store, false);
    assert_eq!(code, DAMAGED, "{text}");
    assert!(
        doc["problems"].as_array().unwrap().iter().any(|p| {
            let d = p["detail"].as_str().unwrap();
            d.contains(&format!("snapshots/{first}.json is missing")) && d.contains("repair-index")
        }),
        "{text}"
    );
    // The next sync writes it back from the index (whose times are whole
    // microseconds): the same snapshot.
    assert_eq!(sync(&store, &cache, &bare, "a").0, "unchanged");
    let back: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let original: Value = serde_json::from_slice(&original).unwrap();
    for key in ["id", "repo", "url", "refs", "complete"] {
        assert_eq!(back[key], original[key], "{key}");
    }
    // Compared as instants: the text drops trailing zeros ("…22.54417Z").
    let micros = |v: &Value| {
        let t: jiff::Timestamp = v["time"].as_str().unwrap().parse().unwrap();
        t.as_microsecond()
    };
    assert_eq!(micros(&back), micros(&original));
    assert_eq!(verify(&store, true).0, 0);

    // Deleted again, repair-index cannot recover it: it says so.
    std::fs::remove_file(&file).unwrap();
    let out = rv(&store, &["repair-index"]);
    assert_eq!(out.status.code(), Some(PARTIAL), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("not recovered:")
            && l.contains(&first[..8])
            && l.contains("its file")),
        "{}",
        describe(&out)
    );
    assert_eq!(snapshot_list(&store).len(), 1);
    assert_restores(&store, base.path(), "a", &snaps[1].0, &bare);
    let _ = then;
}

/// Item 3: one flipped byte in one chunk costs that chunk only: repair-index
/// keeps every other chunk and object of the pack, and verify then names the
/// damaged pack and the one lost object (not "repair-index indexes it").
#[test]
fn repair_salvages_a_pack_with_one_flipped_byte() {
    let base = tempfile::tempdir().unwrap();
    let (store, cache) = (base.path().join("store"), base.path().join("cache"));
    rv_ok(&store, &["init"]);
    let r = TestRepo::new();
    for i in 0..120u64 {
        r.write(&format!("f/{i}.bin"), random_bytes(1000 + i, 2500));
    }
    r.commit("many blobs");
    let bare = base.path().join("s.git");
    git(base.path(), &["init", "-q", "--bare", path_str(&bare)]);
    r.publish(&bare);
    sync(&store, &cache, &bare, "s");
    let total = parse_json(&rv_ok(&store, &["stats", "--json"]))["objects"]
        .as_u64()
        .unwrap();

    // A full chunk of a data pack that only one object uses and no delta builds on.
    let db = Connection::open(store.join("index.sqlite")).unwrap();
    let (pack, offset, len, oid): (String, i64, i64, Vec<u8>) = db
        .query_row(
            "SELECT p.name, c.offset, c.stored_len, o.oid FROM chunks c
             JOIN packs p ON p.id = c.pack JOIN objects o ON o.chunk = c.id
             WHERE p.kind = 2 AND c.base IS NULL AND o.nchunks = 1 AND c.stored_len > 100
               AND NOT EXISTS (SELECT 1 FROM chunks d WHERE d.base = c.id)
             ORDER BY c.offset LIMIT 1 OFFSET 10",
            [],
            |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?)),
        )
        .unwrap();
    drop(db);
    let oid: String = oid.iter().map(|b| format!("{b:02x}")).collect();
    let path = store.join("packs").join(format!("{pack}.pack"));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let at = (offset + len / 2) as u64;
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x10;
        f.write_all_at(&b, at).unwrap();
    }

    let out = rv(&store, &["repair-index", "--json"]);
    assert_eq!(out.status.code(), Some(PARTIAL), "{}", describe(&out));
    let rep = parse_json(&out);
    assert_eq!(rep["skipped_packs"], serde_json::json!([]), "{rep:#}");
    assert_eq!(
        rep["salvaged_packs"].as_array().unwrap().len(),
        1,
        "{rep:#}"
    );
    assert!(
        rep["salvaged_packs"][0].as_str().unwrap().contains(&pack),
        "{rep:#}"
    );
    assert_eq!(rep["damaged_chunks"], 1, "{rep:#}");
    assert_eq!(rep["damaged_objects"], serde_json::json!([oid]), "{rep:#}");
    assert_eq!(rep["objects"].as_u64().unwrap(), total - 1, "{rep:#}");

    let (code, doc, text) = verify(&store, true);
    assert_eq!(code, DAMAGED, "{text}");
    let problems = doc["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["pack"] == pack.as_str()
            && p["detail"].as_str().unwrap().contains("checksum mismatch")),
        "the damaged pack is named: {text}"
    );
    assert!(
        problems.iter().any(|p| p["object"] == oid.as_str()),
        "the lost object is named: {text}"
    );
    assert!(
        !doc["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains(&pack)),
        "no note claims the damaged pack is merely unindexed: {text}"
    );
    assert_eq!(doc["affected"].as_array().unwrap().len(), 1, "{text}");
}
