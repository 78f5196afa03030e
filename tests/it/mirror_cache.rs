//! The mirror cache's states, through the binary (docs/ARCHITECTURE.md,
//! "Mirror cache"): the list of ingested packs is per store, so stores
//! sharing one cache each get every object; a lost list costs a re-decode,
//! never a duplicate; objects the store lost but the mirror still holds are
//! put back from the mirror before a snapshot is recorded.

use crate::support::{self, refs_of, tempdir, TestRepo, Vault};
use serde_json::Value;
use std::path::{Path, PathBuf};

impl Vault {
    /// `sync --json --name NAME --cache CACHE SOURCE`, asserted; the repository's report.
    fn sync_into(&self, cache: &Path, source: &Path, name: &str) -> Value {
        let mut cmd = self.cmd(&["sync", "--json", "--name", name, "--cache"]);
        cmd.arg(cache).arg(source);
        let out = support::run_with_timeout(&mut cmd, support::RUN_TIMEOUT);
        support::parse_json(&support::assert_ok(out, &["sync"]))["repos"][0].clone()
    }

    fn objects(&self) -> u64 {
        self.stats()["objects"].as_u64().expect("stats has objects")
    }

    fn store_id(&self) -> String {
        let text = std::fs::read_to_string(self.store.join("config.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["store_id"].as_str().unwrap().to_owned()
    }

    /// Restores the latest snapshot of `name` and returns its refs.
    fn restored_refs(&self, name: &str) -> Vec<(String, String)> {
        let dir = tempdir("repovault-restored-");
        let dest = dir.path().join("r.git");
        self.ok(&[
            "restore",
            "--repo",
            name,
            "--latest",
            dest.to_str().unwrap(),
        ]);
        refs_of(&dest)
    }
}

/// The repository's mirror in `cache` (its name has no character to replace).
fn mirror_of(cache: &Path, name: &str) -> PathBuf {
    cache.join(format!("{name}.git"))
}

#[test]
fn stores_sharing_a_cache_each_get_every_object() {
    let r = TestRepo::new();
    r.commit_file("a.txt", "a\n", "first");
    r.commit_file("b.txt", "b\n", "second");
    let src = tempdir("repovault-src-");
    let bare = src.path().join("shared.git");
    r.bare_clone_to(&bare);
    let (one, two) = (Vault::new(), Vault::new());
    let cache = one.cache.clone();

    one.sync_into(&cache, &bare, "shared");
    let report = two.sync_into(&cache, &bare, "shared");
    assert_eq!(report["status"], "new", "{report:#}");
    let total = support::object_count(&bare) as u64;
    assert_eq!(one.objects(), total);
    assert_eq!(
        two.objects(),
        total,
        "the second store got the packs the first one ingested"
    );
    let mirror = mirror_of(&cache, "shared");
    for v in [&one, &two] {
        let list = mirror.join(format!("repovault-ingested-{}", v.store_id()));
        assert!(list.is_file(), "{} is missing", list.display());
    }
    assert_eq!(two.restored_refs("shared"), refs_of(&bare));
}

#[test]
fn a_lost_ingested_list_stores_nothing_twice() {
    let r = TestRepo::new();
    r.commit_file("a.txt", "a\n", "first");
    let src = tempdir("repovault-src-");
    let bare = src.path().join("list.git");
    r.bare_clone_to(&bare);
    let v = Vault::new();
    v.sync_into(&v.cache, &bare, "list");
    let before = v.objects();
    let list = mirror_of(&v.cache, "list").join(format!("repovault-ingested-{}", v.store_id()));
    std::fs::remove_file(&list).expect("the ingested list exists after a sync");

    r.commit_file("b.txt", "b\n", "second");
    r.publish(&bare);
    let report = v.sync_into(&v.cache, &bare, "list");
    assert_eq!(report["status"], "changed", "{report:#}");
    assert_eq!(
        report["new_objects"], 3,
        "only the new commit, tree and blob are stored: {report:#}"
    );
    assert_eq!(v.objects(), before + 3);
    assert!(list.is_file(), "the list is written again");
    assert_eq!(v.restored_refs("list"), refs_of(&bare));
}

#[test]
fn objects_the_store_lost_are_put_back_from_the_mirror() {
    let r = TestRepo::new();
    r.commit_file("a.txt", "a\n", "first");
    r.branch("side");
    r.checkout("side");
    r.commit_file("side.txt", "only on side\n", "side work");
    r.checkout("main");
    let src = tempdir("repovault-src-");
    let bare = src.path().join("back.git");
    r.bare_clone_to(&bare);
    let with_side = refs_of(&bare);
    let side_tip = r.rev_parse("side");
    let v = Vault::new();
    let first = v.sync_into(&v.cache, &bare, "back");
    let all = v.objects();

    // The branch goes, its snapshot is forgotten and pruned: the store loses
    // side's commit, tree and blob; the mirror's pack still holds them.
    r.git(&["branch", "-D", "side"]);
    r.publish(&bare);
    v.sync_into(&v.cache, &bare, "back");
    let first_id = first["snapshot"].as_str().unwrap();
    v.ok(&["forget", first_id, "--prune"]);
    assert_eq!(v.objects(), all - 3, "prune dropped side's objects");

    // The same branch comes back.
    r.git(&["branch", "side", &side_tip]);
    r.publish(&bare);
    let report = v.sync_into(&v.cache, &bare, "back");
    assert_eq!(report["status"], "changed", "{report:#}");
    assert_eq!(report["incomplete"], false, "{report:#}");
    assert_eq!(v.objects(), all, "side's objects are stored again");
    assert_eq!(v.restored_refs("back"), with_side);
    let verify = v.run(&["verify", "--read-data"]);
    assert!(verify.status.success(), "{}", support::describe(&verify));
}
