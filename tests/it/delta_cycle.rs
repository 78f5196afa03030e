//! A delta chain that never ends (an index whose chunk rows name themselves
//! as their delta base, as damage can) is read as damaged, within the
//! store's `max_delta_depth`: restore fails with a line naming the limit,
//! instead of recursing until the stack overflows (issue 14: one read cap).

use crate::support::{describe, TestRepo, Vault};
use rusqlite::Connection;

#[test]
fn restore_on_a_delta_base_cycle_reports_damage_instead_of_overflowing() {
    let repo = TestRepo::new();
    repo.commit_file("a.txt", "some text\n".repeat(20), "first");
    let bare = repo.bare_clone();
    let v = Vault::new();
    v.sync_as(&bare, "r");
    let db = Connection::open(v.store.join("index.sqlite")).expect("open the index");
    let n = db
        .execute("UPDATE chunks SET base = id, depth = 1", [])
        .expect("plant the cycle");
    assert!(n > 0);
    drop(db);

    let dest = v.store.parent().unwrap().join("restored.git");
    let out = v.run(&["restore", "--repo", "r", "--latest", dest.to_str().unwrap()]);
    let code = out.status.code();
    assert!(
        code.is_some() && code != Some(0) && code != Some(101),
        "restore should fail cleanly (not crash, not panic):\n{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deeper than the store's max_delta_depth 50"),
        "restore should name the limit:\n{}",
        describe(&out)
    );
    assert!(!dest.exists(), "nothing restored");
}
