//! Verify, restore and repair-index on an index whose values the schema does
//! not allow, planted with SQLite: a shortened snapshot id (alone, and with a
//! ref target whose object row is gone, the path that sliced the id), and
//! negative pack offsets, lengths and sizes. Verify (quick and --read-data)
//! (and `verify --repo`) reports the damage with exit 12 and a line naming the table and column,
//! restore fails with that line, nothing panics, and repair-index brings the
//! store back (issue 14).

use crate::support::{self, describe, refs_of, TestRepo, Vault};
use rusqlite::Connection;
use std::process::Output;

/// A store with one repository of a few commits, tags and a branch synced.
struct World {
    vault: Vault,
    repo: TestRepo,
    bare: std::path::PathBuf,
}

impl World {
    fn new() -> World {
        let repo = TestRepo::new();
        for i in 0..4 {
            repo.commit_file(
                &format!("f{i}.txt"),
                format!("line {i}\n").repeat(50 + i),
                &format!("c{i}"),
            );
        }
        repo.tag_annotated("v1", "HEAD", "release");
        repo.branch("side");
        let bare = repo.bare_clone();
        let vault = Vault::new();
        vault.sync_as(&bare, "r");
        World { vault, repo, bare }
    }

    /// Runs `sql` on the store's index (foreign keys off, as damage is).
    fn plant(&self, sql: &str) {
        let db = Connection::open(self.vault.store.join("index.sqlite")).expect("open the index");
        db.execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn restore(&self, dest: &std::path::Path) -> Output {
        self.vault
            .run(&["restore", "--repo", "r", "--latest", dest.to_str().unwrap()])
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_panic(what: &str, out: &Output) {
    assert_ne!(
        out.status.code(),
        Some(101),
        "{what} panicked:\n{}",
        describe(out)
    );
    assert!(
        !text(out).contains("panicked"),
        "{what} panicked:\n{}",
        describe(out)
    );
}

/// Plants `sql`, then checks verify, restore and repair-index as the module says.
fn damaged_then_repaired(case: &str, sql: &str, names: &str) {
    let w = World::new();
    w.plant(sql);
    for mode in [
        &["verify"][..],
        &["verify", "--read-data"][..],
        &["verify", "--repo", "r"][..],
    ] {
        let out = w.vault.run(mode);
        let what = format!("{case}: {mode:?}");
        assert_no_panic(&what, &out);
        assert_eq!(out.status.code(), Some(12), "{what}:\n{}", describe(&out));
        let t = text(&out);
        assert!(
            t.lines()
                .any(|l| l.contains("damaged") && l.contains(names)),
            "{what} names no damage in {names}:\n{t}"
        );
        let json = support::parse_json(&w.vault.run(&[mode, &["--json"]].concat()));
        assert_eq!(json["clean"], false, "{what}: {json:#}");
    }

    let dest = w.vault.store.parent().unwrap().join("restored.git");
    let out = w.restore(&dest);
    assert_no_panic(&format!("{case}: restore"), &out);
    assert!(
        !out.status.success(),
        "{case}: restore succeeded:\n{}",
        describe(&out)
    );
    assert!(
        text(&out).contains(names),
        "{case}: restore does not name {names}:\n{}",
        describe(&out)
    );

    let out = w.vault.run(&["repair-index"]);
    assert_no_panic(&format!("{case}: repair-index"), &out);
    assert!(
        out.status.success(),
        "{case}: repair-index:\n{}",
        describe(&out)
    );
    for mode in [&["verify"][..], &["verify", "--read-data"][..]] {
        let out = w.vault.run(mode);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{case}: {mode:?} after repair:\n{}",
            describe(&out)
        );
    }
    let _ = std::fs::remove_dir_all(&dest);
    let out = w.restore(&dest);
    assert!(
        out.status.success(),
        "{case}: restore after repair:\n{}",
        describe(&out)
    );
    assert_eq!(refs_of(&dest), refs_of(&w.bare), "{case}: restored refs");
    assert_eq!(
        support::git(&dest, &["rev-parse", "side^{tree}"]),
        w.repo.rev_parse("side^{tree}"),
        "{case}: restored tree"
    );
}

#[test]
fn a_shortened_snapshot_id_is_damage() {
    damaged_then_repaired(
        "short sid",
        "UPDATE snapshots SET sid = substr(sid, 1, 5);",
        "snapshots.sid",
    );
}

#[test]
fn a_shortened_snapshot_id_with_a_missing_ref_target_is_damage() {
    // The quick check reports the ref whose target is gone, naming the snapshot by its id.
    damaged_then_repaired(
        "short sid, ref target gone",
        "PRAGMA foreign_keys=OFF;
         UPDATE snapshots SET sid = 'ab';
         DELETE FROM objects WHERE oid = (SELECT target FROM snapshot_refs WHERE name = CAST('refs/heads/side' AS BLOB));",
        "snapshots.sid",
    );
}

#[test]
fn a_negative_chunk_offset_is_damage() {
    damaged_then_repaired(
        "negative offset",
        "UPDATE chunks SET offset = -4096 WHERE id = (SELECT max(id) FROM chunks);",
        "chunks.offset",
    );
}

#[test]
fn a_negative_chunk_length_is_damage() {
    damaged_then_repaired(
        "negative stored_len",
        "UPDATE chunks SET stored_len = -1 WHERE id = (SELECT min(id) FROM chunks);",
        "chunks.stored_len",
    );
}

#[test]
fn a_negative_pack_size_is_damage() {
    damaged_then_repaired(
        "negative pack size",
        "UPDATE packs SET size = -1 WHERE id = (SELECT min(id) FROM packs);",
        "packs.size",
    );
}
