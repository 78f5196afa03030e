//! Fault-injection tests of `repovault verify` and `repovault repair-index`,
//! run through the real binary against a store built from real git
//! repositories.
//!
//! The fixture (built once per test process, copied with `cp -a` for every
//! test): three repositories synced twice each, so six snapshots:
//!
//! * `alpha`: ~30 commits editing three text files (git deltas), a branch,
//!   a lightweight and annotated tags;
//! * `beta`: text files plus a 6 MiB pseudo-random binary (split into several
//!   chunks by FastCDC), changed in the middle between the two syncs so the
//!   two versions share most chunks;
//! * `fork`: a clone of `alpha` (as of its first sync) plus three commits,
//!   so most of its objects are shared with `alpha`.
//!
//! Every test damages a copy of the store and checks that the right verify
//! mode finds the damage (exit 12, `clean: false` in `--json`), that the
//! problems name the damaged pack, chunk or object, and that `affected`
//! names exactly the snapshots that need the damaged data. The expected set
//! is computed independently of verify: from a model of the clean store
//! (the objects each snapshot needs, by `git rev-list --objects` of its refs
//! in the source repository, mapped to chunks and their delta bases through
//! the clean index) and by restoring snapshots of the damaged store (a
//! snapshot restores iff it is not listed). A successful restore of a `beta`
//! snapshot takes many seconds in a debug build (two 6 MiB objects are
//! hashed, compressed and indexed), so beta snapshots are only restored where
//! they are expected to fail (fast) and in the lost-index test.
//!

use crate::support;

use support::cp_a;

use rusqlite::Connection;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Instant;
use support::{git, random_bytes, refs_of, text, Rng, TestRepo};
use tempfile::TempDir;

use support::{describe, parse_json, path_str, rv, rv_ok};

/// Exit code of verify when it finds damage.
const DAMAGED: i32 = 12;

// ---------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------

/// One snapshot as `snapshots --json` lists it.
#[derive(Debug, Clone)]
struct Snap {
    id: String,
    repo: String,
    /// Refs other than `HEAD`: name -> target.
    refs: BTreeMap<String, String>,
}

/// A chunk row of the clean store's index.
#[derive(Debug, Clone)]
struct ChunkInfo {
    hash: String,
    pack: i64,
    offset: u64,
    stored_len: u64,
    base: Option<i64>,
}

/// A pack row of the clean store's index.
#[derive(Debug, Clone)]
struct PackInfo {
    rowid: i64,
    name: String,
    /// 1 tree, 2 data.
    kind: i64,
    size: u64,
}

struct Fixture {
    /// Holds `store/`, the source repositories `src/<repo>.git` and the mirror cache.
    root: PathBuf,
    /// Every snapshot, oldest first.
    snaps: Vec<Snap>,
    /// Snapshot id -> every object reachable from its refs (`git rev-list --objects` in the source).
    reach: HashMap<String, HashSet<String>>,
    /// Snapshot id -> every chunk row it needs (its objects' chunks and their delta bases).
    needs: HashMap<String, HashSet<i64>>,
    packs: Vec<PackInfo>,
    chunks: HashMap<i64, ChunkInfo>,
    /// Object id -> kind code (1 commit, 2 tree, 3 blob, 4 tag).
    kinds: HashMap<String, i64>,
    /// Object id -> its chunk rows, in order.
    obj_chunks: HashMap<String, Vec<i64>>,
}

impl Fixture {
    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The source (bare) repository of `repo`, holding the objects of both its snapshots.
    fn source(&self, repo: &str) -> PathBuf {
        self.root.join("src").join(format!("{repo}.git"))
    }

    fn snap(&self, id: &str) -> &Snap {
        self.snaps
            .iter()
            .find(|s| s.id == id)
            .expect("known snapshot")
    }

    /// The ids of every snapshot not of `repo`.
    fn ids_except(&self, repo: &str) -> BTreeSet<String> {
        let others = self.snaps.iter().filter(|s| s.repo != repo);
        others.map(|s| s.id.clone()).collect()
    }

    /// Snapshot `n` (0 or 1) of `repo`.
    fn nth(&self, repo: &str, n: usize) -> &Snap {
        self.snaps
            .iter()
            .filter(|s| s.repo == repo)
            .nth(n)
            .expect("two snapshots per repository")
    }

    /// `repo:shortid` labels, for messages.
    fn labels(&self, ids: &BTreeSet<String>) -> Vec<String> {
        ids.iter()
            .map(|id| format!("{}:{}", self.snap(id).repo, &id[..8]))
            .collect()
    }

    /// Snapshots that need any of `chunks`.
    fn needing_chunks(&self, chunks: &HashSet<i64>) -> BTreeSet<String> {
        self.snaps
            .iter()
            .filter(|s| !self.needs[&s.id].is_disjoint(chunks))
            .map(|s| s.id.clone())
            .collect()
    }

    fn chunks_of_pack(&self, pack: i64) -> HashSet<i64> {
        self.chunks
            .iter()
            .filter(|(_, c)| c.pack == pack)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Snapshots that need any chunk of the pack with row id `pack`.
    fn needing_pack(&self, pack: i64) -> BTreeSet<String> {
        self.needing_chunks(&self.chunks_of_pack(pack))
    }

    /// Snapshots whose closure contains `oid`.
    fn needing_object(&self, oid: &str) -> BTreeSet<String> {
        self.snaps
            .iter()
            .filter(|s| self.reach[&s.id].contains(oid))
            .map(|s| s.id.clone())
            .collect()
    }

    /// The chunk whose stored bytes hold byte `offset` of pack `pack`.
    fn chunk_at(&self, pack: i64, offset: u64) -> Option<(i64, &ChunkInfo)> {
        self.chunks
            .iter()
            .find(|(_, c)| c.pack == pack && c.offset <= offset && offset < c.offset + c.stored_len)
            .map(|(id, c)| (*id, c))
    }

    /// The first pack (in name order) of `kind` whose loss affects exactly `want`.
    fn pack_needed_by(&self, kind: i64, want: &BTreeSet<String>) -> &PackInfo {
        self.packs
            .iter()
            .find(|p| p.kind == kind && &self.needing_pack(p.rowid) == want)
            .unwrap_or_else(|| {
                panic!(
                    "no pack of kind {kind} is needed by exactly {:?}; packs: {:?}",
                    self.labels(want),
                    self.packs
                        .iter()
                        .map(|p| (p.kind, self.labels(&self.needing_pack(p.rowid))))
                        .collect::<Vec<_>>()
                )
            })
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn sync(store: &Path, cache: &Path, source: &Path, name: &str) {
    let out = support::rv_sync(store, cache, source, name);
    let doc = parse_json(&out);
    let status = &doc["repos"][0]["status"];
    assert!(
        status == "new" || status == "changed",
        "sync of {name} did not record a snapshot: {doc:#}"
    );
}

/// The text history of `alpha` (and of the base of `fork`).
fn build_alpha() -> TestRepo {
    let r = TestRepo::new();
    for i in 0..30u64 {
        r.write("README.md", text(1, 60, i / 3));
        r.write("src/lib.txt", text(2, 200, i));
        if i % 2 == 0 {
            r.write("notes/log.txt", text(3, 120, i / 2));
        }
        r.commit(&format!("alpha commit {i}"));
        if i == 9 {
            r.tag_lightweight("v0.1", "HEAD");
        }
        if i == 19 {
            r.tag_annotated("v0.2", "HEAD", "release 0.2");
            r.branch("dev");
        }
    }
    r.checkout("dev");
    for i in 0..4u64 {
        r.write("notes/dev.txt", text(4, 80, i));
        r.commit(&format!("dev commit {i}"));
    }
    r.checkout("main");
    r.tag_annotated("v1.0", "HEAD", "release 1.0");
    r
}

/// Text files and a 6 MiB pseudo-random binary.
fn build_beta() -> TestRepo {
    let r = TestRepo::new();
    r.set_time(support::DEFAULT_TIME + 86_400);
    for i in 0..22u64 {
        r.write("doc/manual.txt", text(11, 150, i));
        if i % 3 == 0 {
            r.write("doc/changes.txt", text(12, 90, i / 3));
        }
        if i == 4 {
            r.write("data/blob.bin", random_bytes(0xB10B, 6 << 20));
        }
        r.commit(&format!("beta commit {i}"));
        if i == 12 {
            r.tag_annotated("beta-1", "HEAD", "beta one");
        }
    }
    r.tag_lightweight("beta-2", "HEAD");
    r
}

fn build_fixture() -> Fixture {
    let start = Instant::now();
    let root = support::fixture_dir("verify-fixture");
    std::fs::create_dir_all(root.join("src")).expect("create fixture dir");
    let store = root.join("store");
    let cache = root.join("cache");
    rv_ok(&store, &["init"]);

    let alpha = build_alpha();
    let beta = build_beta();
    // The fork: a clone of alpha as of its first sync, plus three commits.
    let fork = TestRepo::new();
    std::fs::remove_dir_all(&fork.path).expect("remove the fork's empty work tree");
    git(
        fork.dir.path(),
        &["clone", "-q", "--no-local", path_str(&alpha.path), "work"],
    );
    git(&fork.path, &["remote", "remove", "origin"]);
    git(&fork.path, &["branch", "-q", "dev", "refs/tags/v0.2"]);
    fork.set_time(support::DEFAULT_TIME + 2 * 86_400);
    for i in 0..3u64 {
        fork.write("FORK.md", text(21, 40, i));
        fork.write("src/lib.txt", text(2, 200, 100 + i));
        fork.commit(&format!("fork commit {i}"));
    }
    fork.tag_annotated("fork-1", "HEAD", "fork one");

    let a_bare = root.join("src/alpha.git");
    let b_bare = root.join("src/beta.git");
    let f_bare = root.join("src/fork.git");
    alpha.bare_clone_to(&a_bare);
    beta.bare_clone_to(&b_bare);
    fork.bare_clone_to(&f_bare);
    let mut source_refs: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (bare, name) in [(&a_bare, "alpha"), (&b_bare, "beta"), (&f_bare, "fork")] {
        sync(&store, &cache, bare, name);
        source_refs.push((name.to_owned(), refs_of(bare)));
    }

    // Changes between the two syncs.
    alpha.set_time(support::DEFAULT_TIME + 3 * 86_400);
    for i in 0..5u64 {
        alpha.write("src/lib.txt", text(2, 200, 30 + i));
        alpha.write("CHANGES.md", text(5, 30, i));
        alpha.commit(&format!("alpha round two {i}"));
    }
    alpha.tag_annotated("v1.1", "HEAD", "release 1.1");
    alpha.git(&["branch", "-D", "dev"]);
    alpha.publish(&a_bare);

    beta.set_time(support::DEFAULT_TIME + 3 * 86_400);
    let mut bin = random_bytes(0xB10B, 6 << 20);
    for b in &mut bin[(3 << 20)..(3 << 20) + 4096] {
        *b = !*b;
    }
    beta.write("data/blob.bin", &bin);
    beta.commit("beta: change the middle of the binary");
    for i in 0..3u64 {
        beta.write("doc/manual.txt", text(11, 150, 40 + i));
        beta.commit(&format!("beta round two {i}"));
    }
    beta.publish(&b_bare);

    fork.set_time(support::DEFAULT_TIME + 4 * 86_400);
    for i in 0..2u64 {
        fork.write("FORK.md", text(21, 40, 10 + i));
        fork.commit(&format!("fork round two {i}"));
    }
    fork.tag_lightweight("fork-2", "HEAD");
    fork.publish(&f_bare);
    for (bare, name) in [(&a_bare, "alpha"), (&b_bare, "beta"), (&f_bare, "fork")] {
        sync(&store, &cache, bare, name);
        source_refs.push((name.to_owned(), refs_of(bare)));
    }

    let snaps = snapshots(&store);
    assert_eq!(
        snaps.len(),
        6,
        "two snapshots of each of three repositories"
    );
    let mut reach = HashMap::new();
    for repo in ["alpha", "beta", "fork"] {
        let mine: Vec<&Snap> = snaps.iter().filter(|s| s.repo == repo).collect();
        assert_eq!(mine.len(), 2, "{repo}: {snaps:#?}");
        let want: Vec<_> = source_refs.iter().filter(|(n, _)| n == repo).collect();
        for (s, (_, refs)) in mine.iter().zip(want) {
            let got: Vec<(String, String)> =
                s.refs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(
                &got, refs,
                "snapshot {} of {repo} records the source's refs",
                s.id
            );
            // What the snapshot needs, computed by git from the source (which
            // still holds every object of the first state: gc is off).
            let tips: BTreeSet<&str> = s.refs.values().map(String::as_str).collect();
            let mut args = vec!["rev-list", "--objects"];
            args.extend(tips);
            let objs: HashSet<String> = git(&root.join(format!("src/{repo}.git")), &args)
                .lines()
                .filter_map(|l| l.split(' ').next())
                .map(str::to_owned)
                .collect();
            reach.insert(s.id.clone(), objs);
        }
    }

    let (packs, chunks, kinds, obj_chunks) = read_model(&store);
    let mut needs = HashMap::new();
    for s in &snaps {
        let mut set = HashSet::new();
        for oid in &reach[&s.id] {
            let cs = obj_chunks
                .get(oid)
                .unwrap_or_else(|| panic!("object {oid} of snapshot {} is not indexed", s.id));
            for &c in cs {
                let mut cur = Some(c);
                while let Some(id) = cur {
                    if !set.insert(id) {
                        break;
                    }
                    cur = chunks[&id].base;
                }
            }
        }
        needs.insert(s.id.clone(), set);
    }
    let fx = Fixture {
        root,
        snaps,
        reach,
        needs,
        packs,
        chunks,
        kinds,
        obj_chunks,
    };
    let multi = fx.obj_chunks.values().filter(|c| c.len() > 1).count();
    assert!(multi >= 2, "the 6 MiB binary is stored in several chunks");
    assert!(
        fx.chunks.values().any(|c| c.base.is_some()),
        "some chunks are git deltas"
    );
    eprintln!(
        "fixture: {} snapshots, {} packs, {} chunks ({} deltas), {} objects ({} multi-chunk), built in {:.1}s",
        fx.snaps.len(),
        fx.packs.len(),
        fx.chunks.len(),
        fx.chunks.values().filter(|c| c.base.is_some()).count(),
        fx.kinds.len(),
        multi,
        start.elapsed().as_secs_f64()
    );
    for p in &fx.packs {
        eprintln!(
            "  pack {} kind {} {} bytes, {} chunks, needed by {:?}",
            &p.name[..12],
            p.kind,
            p.size,
            fx.chunks_of_pack(p.rowid).len(),
            fx.labels(&fx.needing_pack(p.rowid))
        );
    }
    fx
}

/// Packs, chunks, object kinds and object chunk lists of the index of `store`.
fn read_model(
    store: &Path,
) -> (
    Vec<PackInfo>,
    HashMap<i64, ChunkInfo>,
    HashMap<String, i64>,
    HashMap<String, Vec<i64>>,
) {
    let db = Connection::open(store.join("index.sqlite")).expect("open the index");
    let mut st = db
        .prepare("SELECT id, name, kind, size FROM packs ORDER BY name")
        .unwrap();
    let packs: Vec<PackInfo> = st
        .query_map([], |r| {
            Ok(PackInfo {
                rowid: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut st = db
        .prepare("SELECT id, hash, pack, offset, stored_len, base FROM chunks")
        .unwrap();
    let chunks: HashMap<i64, ChunkInfo> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                ChunkInfo {
                    hash: hex(&r.get::<_, Vec<u8>>(1)?),
                    pack: r.get(2)?,
                    offset: r.get::<_, i64>(3)? as u64,
                    stored_len: r.get::<_, i64>(4)? as u64,
                    base: r.get(5)?,
                },
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut st = db
        .prepare("SELECT oid, kind, nchunks, chunk FROM objects")
        .unwrap();
    let rows: Vec<(Vec<u8>, i64, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut kinds = HashMap::new();
    let mut obj_chunks: HashMap<String, Vec<i64>> = HashMap::new();
    for (oid, kind, n, chunk) in rows {
        let oid = hex(&oid);
        kinds.insert(oid.clone(), kind);
        if n == 1 {
            obj_chunks.insert(oid, vec![chunk]);
        }
    }
    let mut st = db
        .prepare("SELECT oid, chunk FROM object_chunks ORDER BY oid, seq")
        .unwrap();
    let rows: Vec<(Vec<u8>, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (oid, chunk) in rows {
        obj_chunks.entry(hex(&oid)).or_default().push(chunk);
    }
    (packs, chunks, kinds, obj_chunks)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every snapshot of the store, oldest first.
fn snapshots(store: &Path) -> Vec<Snap> {
    let doc = parse_json(&rv_ok(store, &["snapshots", "--json", "--refs"]));
    doc.as_array()
        .expect("snapshots --json is an array")
        .iter()
        .map(|s| Snap {
            id: s["id"].as_str().unwrap().to_owned(),
            repo: s["repo"].as_str().unwrap().to_owned(),
            refs: support::snapshot_ref_pairs(s).into_iter().collect(),
        })
        .collect()
}

/// Restores snapshot `s` to `dest`; on success checks that the restored refs
/// are the snapshot's. `Err` carries repovault's output.
fn restore_and_compare(store: &Path, s: &Snap, dest: &Path) -> Result<(), String> {
    let out = rv(
        store,
        &[
            "restore",
            "--repo",
            &s.repo,
            "--snapshot",
            &s.id,
            path_str(dest),
        ],
    );
    if !out.status.success() {
        assert!(
            !dest.exists(),
            "a failed restore left {} behind:\n{}",
            dest.display(),
            describe(&out)
        );
        return Err(describe(&out));
    }
    let got: BTreeMap<String, String> = refs_of(dest).into_iter().collect();
    assert_eq!(
        got, s.refs,
        "restored refs of snapshot {} of {}",
        s.id, s.repo
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// A damaged copy of the fixture
// ---------------------------------------------------------------------------

/// What `verify --json` said.
#[derive(Debug)]
struct Report {
    code: i32,
    doc: Value,
    text: String,
}

impl Report {
    fn problems(&self) -> &[Value] {
        self.doc["problems"].as_array().expect("problems array")
    }

    fn affected(&self) -> BTreeSet<String> {
        self.doc["affected"]
            .as_array()
            .expect("affected array")
            .iter()
            .map(|a| a["snapshot"].as_str().unwrap().to_owned())
            .collect()
    }

    fn notes(&self) -> Vec<String> {
        self.doc["notes"]
            .as_array()
            .expect("notes array")
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    }

    fn count(&self, key: &str) -> u64 {
        self.doc[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {}", self.text))
    }

    fn detected(&self) -> bool {
        self.code == DAMAGED
    }

    /// Asserts a clean report with exit 0.
    fn assert_clean(&self, what: &str) {
        assert_eq!(self.code, 0, "{what}: exit code\n{}", self.text);
        assert_eq!(self.doc["clean"], true, "{what}\n{}", self.text);
        assert!(self.problems().is_empty(), "{what}\n{}", self.text);
        assert!(self.affected().is_empty(), "{what}\n{}", self.text);
    }

    /// Asserts that damage was reported (exit 12, `clean: false`, at least one problem).
    fn assert_damaged(&self, what: &str) {
        assert_eq!(self.code, DAMAGED, "{what}: exit code\n{}", self.text);
        assert_eq!(self.doc["clean"], false, "{what}\n{}", self.text);
        assert!(!self.problems().is_empty(), "{what}\n{}", self.text);
    }

    /// The first problem of `kind` whose `key` is `value`.
    fn find(&self, kind: &str, key: &str, value: &str) -> Option<&Value> {
        self.problems()
            .iter()
            .find(|p| p["kind"] == kind && p[key] == value)
    }

    fn assert_names(&self, kind: &str, key: &str, value: &str, what: &str) -> &Value {
        self.find(kind, key, value).unwrap_or_else(|| {
            panic!(
                "{what}: no problem of kind {kind} names {key} {value}\n{}",
                self.text
            )
        })
    }

    /// Asserts that `affected` lists no snapshot twice.
    fn assert_affected_once(&self, what: &str) {
        let list = self.doc["affected"].as_array().unwrap();
        assert_eq!(
            list.len(),
            self.affected().len(),
            "{what}: a snapshot is listed more than once in affected\n{}",
            self.text
        );
    }

    /// Asserts that `affected` lists exactly the snapshots `want`, each once.
    fn assert_affected(&self, fx: &Fixture, want: &BTreeSet<String>, what: &str) {
        self.assert_affected_set(fx, want, what);
        self.assert_affected_once(what);
    }

    /// Asserts that `affected` lists exactly the snapshots `want` (each
    /// with its repository and a reason), possibly some more than once.
    fn assert_affected_set(&self, fx: &Fixture, want: &BTreeSet<String>, what: &str) {
        assert_eq!(
            fx.labels(&self.affected()),
            fx.labels(want),
            "{what}: affected snapshots\n{}",
            self.text
        );
        for a in self.doc["affected"].as_array().unwrap() {
            let id = a["snapshot"].as_str().unwrap();
            assert_eq!(a["repo"], fx.snap(id).repo.as_str(), "{what}: {a}");
            assert!(
                !a["reason"].as_str().unwrap_or("").is_empty(),
                "{what}: affected without a reason: {a}"
            );
        }
    }
}

/// A copy of the fixture's store in its own temporary directory.
struct Case {
    dir: TempDir,
    store: PathBuf,
}

impl Case {
    fn new() -> Case {
        let fx = fixture();
        let dir = tempfile::Builder::new()
            .prefix("repovault-verify-")
            .tempdir()
            .expect("create temp dir");
        let store = dir.path().join("store");
        cp_a(&fx.store(), &store);
        Case { dir, store }
    }

    fn pack_path(&self, name: &str) -> PathBuf {
        self.store.join("packs").join(format!("{name}.pack"))
    }

    fn rv(&self, args: &[&str]) -> Output {
        rv(&self.store, args)
    }

    /// `verify --json <args>`; the exit code must be 0 or 12.
    fn verify(&self, args: &[&str]) -> Report {
        let mut all = vec!["verify", "--json"];
        all.extend_from_slice(args);
        let out = self.rv(&all);
        let code = out
            .status
            .code()
            .expect("verify was not killed by a signal");
        let text = format!("verify {args:?}: {}", describe(&out));
        assert!(code == 0 || code == DAMAGED, "unexpected exit code\n{text}");
        Report {
            code,
            doc: parse_json(&out),
            text,
        }
    }

    fn quick(&self) -> Report {
        let r = self.verify(&[]);
        assert_eq!(r.doc["mode"], "quick");
        r
    }

    fn read_data(&self) -> Report {
        let r = self.verify(&["--read-data"]);
        assert_eq!(r.doc["mode"], "read-data");
        r
    }

    /// Restores each of `ids`; returns those that failed. A failure must be
    /// a one-line error and leave nothing behind; a success must restore
    /// exactly the snapshot's refs.
    fn restore_fails(&self, ids: &BTreeSet<String>) -> BTreeSet<String> {
        let fx = fixture();
        let mut failed = BTreeSet::new();
        for id in ids {
            let s = fx.snap(id);
            let dest = self.dir.path().join(format!("restore-{}", &id[..12]));
            match restore_and_compare(&self.store, s, &dest) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&dest);
                }
                Err(text) => {
                    let errs: Vec<&str> = text
                        .lines()
                        .filter(|l| l.starts_with("repovault: error:"))
                        .collect();
                    assert_eq!(
                        errs.len(),
                        1,
                        "restore of {} failed without one clear error line:\n{text}",
                        s.repo
                    );
                    assert!(
                        errs[0].contains(&id[..8]) || errs[0].contains(id),
                        "the error names the snapshot:\n{text}"
                    );
                    failed.insert(id.clone());
                }
            }
        }
        failed
    }

    /// The index, for damaging rows (foreign keys off).
    fn db(&self) -> Connection {
        let db = Connection::open(self.store.join("index.sqlite")).expect("open the index");
        db.execute_batch("PRAGMA foreign_keys=OFF;").unwrap();
        db
    }
}

/// XORs byte `offset` of `path` with `mask`.
fn xor_byte(path: &Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, offset).unwrap();
}

fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

/// Where the trailer of a pack starts (from its footer).
fn trailer_offset(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap();
    let footer = &b[b.len() - 56..];
    u64::from_le_bytes(footer[..8].try_into().unwrap())
}

fn set(ids: &[&Snap]) -> BTreeSet<String> {
    ids.iter().map(|s| s.id.clone()).collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Test 1: A clean store is clean in both modes, and the counts cover everything.
#[test]
fn clean_store_verifies_clean() {
    let fx = fixture();
    let c = Case::new();
    let stats = parse_json(&c.rv(&["stats", "--json"]));
    let quick = c.quick();
    quick.assert_clean("quick verify of a clean store");
    let full = c.read_data();
    full.assert_clean("read-data verify of a clean store");
    for r in [&quick, &full] {
        assert_eq!(
            r.count("packs_checked"),
            fx.packs.len() as u64,
            "{}",
            r.text
        );
        assert_eq!(r.count("packs_checked"), stats["packs"].as_u64().unwrap());
        assert_eq!(
            r.count("chunks_checked"),
            fx.chunks.len() as u64,
            "{}",
            r.text
        );
        assert_eq!(r.count("snapshots_checked"), 6, "{}", r.text);
        assert!(r.notes().is_empty(), "{}", r.text);
    }
    // Every object's git id is checked: the single-chunk ones while reading
    // their chunk, the multi-chunk ones by reassembling them.
    assert_eq!(
        full.count("objects_checked"),
        fx.kinds.len() as u64,
        "{}",
        full.text
    );
    assert_eq!(
        full.count("bytes_read"),
        stats["stored_bytes"].as_u64().unwrap()
    );
    assert_eq!(
        full.count("bytes_read"),
        fx.packs.iter().map(|p| p.size).sum::<u64>()
    );
    // The human output says so too.
    let out = c.rv(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no damage found"),
        "{}",
        describe(&out)
    );
}

/// One byte flip of the random-flip test.
#[derive(Debug, Clone)]
struct Flip {
    i: usize,
    pack: PackInfo,
    offset: u64,
    mask: u8,
    /// `header`, `entries`, `trailer` or `footer`.
    region: &'static str,
}

struct FlipOutcome {
    flip: Flip,
    quick_detected: bool,
    /// The chunk the flip landed in, when verify named it.
    chunk_named: bool,
    affected: usize,
    failure: Option<String>,
}

/// Flips `f`, runs both verify modes (and restores for some flips), flips back.
fn run_flip(fx: &Fixture, c: &Case, f: &Flip, non_beta: &BTreeSet<String>) -> FlipOutcome {
    let path = c.pack_path(&f.pack.name);
    xor_byte(&path, f.offset, f.mask);
    let what = format!(
        "flip #{} (mask {:#04x}) at offset {} ({}) of {} pack {} ({} bytes)",
        f.i,
        f.mask,
        f.offset,
        f.region,
        if f.pack.kind == 1 { "tree" } else { "data" },
        f.pack.name,
        f.pack.size
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let quick = c.quick();
        if quick.detected() {
            quick.assert_names("pack", "pack", &f.pack.name, &what);
        } else {
            quick.assert_clean(&what);
        }
        let full = c.read_data();
        full.assert_damaged(&what);
        let p = full.assert_names("pack", "pack", &f.pack.name, &what);
        assert!(
            p["detail"].as_str().unwrap().contains("checksum"),
            "{what}: {p}"
        );
        let in_chunk = fx.chunk_at(f.pack.rowid, f.offset);
        let mut chunk_named = false;
        let mut oracle = None;
        let expected = match in_chunk {
            Some((id, ch)) => {
                let need = fx.needing_chunks(&HashSet::from([id]));
                match full.find("chunk", "chunk", &ch.hash) {
                    Some(p) => {
                        chunk_named = true;
                        assert_eq!(p["pack"], f.pack.name.as_str(), "{what}: {p}");
                        assert_eq!(p["offset"], ch.offset, "{what}: {p}");
                        need
                    }
                    None => {
                        // The flip left the decoded bytes intact (e.g. in a
                        // zstd header field): then every snapshot must restore.
                        oracle = Some(need);
                        BTreeSet::new()
                    }
                }
            }
            None => BTreeSet::new(),
        };
        full.assert_affected(fx, &expected, &what);
        if oracle.is_none() && f.i % 10 == 5 {
            // Restores that fail are cheap; successful beta restores are not.
            oracle = Some(non_beta.union(&expected).cloned().collect());
        }
        if let Some(tried) = oracle {
            let failed = c.restore_fails(&tried);
            let want: BTreeSet<String> = expected.intersection(&tried).cloned().collect();
            assert_eq!(
                fx.labels(&failed),
                fx.labels(&want),
                "{what}: the snapshots that fail to restore are the affected ones"
            );
        }
        (quick.detected(), chunk_named, expected.len())
    }));
    xor_byte(&path, f.offset, f.mask);
    let (quick_detected, chunk_named, affected, failure) = match result {
        Ok((q, n, a)) => (q, n, a, None),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (false, false, 0, Some(msg))
        }
    };
    FlipOutcome {
        flip: f.clone(),
        quick_detected,
        chunk_named,
        affected,
        failure,
    }
}

/// Test 2: Any single flipped byte of any pack is found by `verify --read-data`.
#[test]
fn random_byte_flips_are_found_by_read_data() {
    let fx = fixture();
    let mut rng = Rng(0x5EED_0000_F11B);
    // Pack names vary from build to build of the fixture; kinds and sizes do not.
    let mut packs = fx.packs.clone();
    packs.sort_by_key(|p| (p.kind, p.size));
    let flips: Vec<Flip> = (0..50)
        .map(|i| {
            let pack = packs[rng.below(packs.len() as u64) as usize].clone();
            let t = trailer_offset(&fx.store().join("packs").join(format!("{}.pack", pack.name)));
            let footer = pack.size - 56;
            // A tenth in the header, a tenth in the footer, a fifth in the
            // trailer, the rest anywhere in the file (mostly chunk data).
            let offset = match i % 10 {
                0 => rng.below(16),
                1 => footer + rng.below(56),
                2 | 3 => t + rng.below(footer - t),
                _ => rng.below(pack.size),
            };
            let region = match offset {
                o if o < 16 => "header",
                o if o < t => "entries",
                o if o < footer => "trailer",
                _ => "footer",
            };
            Flip {
                i,
                pack,
                offset,
                mask: 1 + rng.below(255) as u8,
                region,
            }
        })
        .collect();
    let non_beta = fx.ids_except("beta");
    // Two workers, each flipping and flipping back in its own copy.
    let outcomes: Vec<FlipOutcome> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (flips, non_beta) = (&flips, &non_beta);
                scope.spawn(move || {
                    let c = Case::new();
                    let out: Vec<FlipOutcome> = flips
                        .iter()
                        .filter(|f| f.i % 2 == w)
                        .map(|f| run_flip(fx, &c, f, non_beta))
                        .collect();
                    // Flipped back: the copy is clean again.
                    c.read_data().assert_clean("after flipping every byte back");
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().expect("flip worker"))
            .collect()
    });
    assert_eq!(outcomes.len(), 50);
    let mut by_region: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for o in &outcomes {
        let e = by_region.entry(o.flip.region).or_default();
        e.0 += 1;
        e.1 += usize::from(o.quick_detected);
    }
    let quick = outcomes.iter().filter(|o| o.quick_detected).count();
    let named = outcomes.iter().filter(|o| o.chunk_named).count();
    let with_affected = outcomes.iter().filter(|o| o.affected > 0).count();
    eprintln!(
        "byte flips: {} of 50 detected by --read-data; {quick} of 50 also by quick mode; \
         {named} named the damaged chunk; {with_affected} made snapshots unrestorable; \
         by region (flips, quick detections): {by_region:?}",
        outcomes.iter().filter(|o| o.failure.is_none()).count()
    );
    let failures: Vec<String> = outcomes.iter().filter_map(|o| o.failure.clone()).collect();
    assert!(
        failures.is_empty(),
        "{} of 50 flips were not handled right:\n{}",
        failures.len(),
        failures.join("\n----\n")
    );
}

/// Test 3: A truncated pack is found by both modes (its size no longer matches).
#[test]
fn truncated_packs_are_found_by_both_modes() {
    let fx = fixture();
    let (a1, a2) = (fx.nth("alpha", 0), fx.nth("alpha", 1));
    let (f1, f2) = (fx.nth("fork", 0), fx.nth("fork", 1));
    let (b1, b2) = (fx.nth("beta", 0), fx.nth("beta", 1));

    // The last 100 bytes (the footer and the end of the trailer) of the data
    // pack that alpha and the fork share.
    let shared = set(&[a1, a2, f1, f2]);
    let p = fx.pack_needed_by(2, &shared);
    let c = Case::new();
    truncate(&c.pack_path(&p.name), p.size - 100);
    for r in [c.quick(), c.read_data()] {
        let what = format!("{} verify, pack {} cut by 100 bytes", r.doc["mode"], p.name);
        r.assert_damaged(&what);
        let prob = r.assert_names("pack", "pack", &p.name, &what);
        assert!(
            prob["detail"].as_str().unwrap().contains("truncated"),
            "{what}: {prob}"
        );
        // Only the footer and trailer were cut: every chunk is intact, so the
        // pack is reported damaged but no snapshot is unrestorable.
        r.assert_affected(fx, &BTreeSet::new(), &what);
    }
    assert!(
        c.restore_fails(&set(&[a1])).is_empty(),
        "a snapshot whose chunks are intact must still restore"
    );

    // A cut in the middle of the big data pack of beta's first snapshot.
    let both = set(&[b1, b2]);
    let p = fx.pack_needed_by(2, &both);
    let c = Case::new();
    let cut = p.size / 2;
    truncate(&c.pack_path(&p.name), cut);
    // The snapshots that need a chunk beyond the cut fail to restore; the others restore.
    let beyond: HashSet<i64> = fx
        .chunks
        .iter()
        .filter(|(_, ch)| ch.pack == p.rowid && ch.offset + ch.stored_len > cut)
        .map(|(id, _)| *id)
        .collect();
    let lost = fx.needing_chunks(&beyond);
    assert!(!lost.is_empty());
    for r in [c.quick(), c.read_data()] {
        let what = format!("{} verify, pack {} cut in half", r.doc["mode"], p.name);
        r.assert_damaged(&what);
        let prob = r.assert_names("pack", "pack", &p.name, &what);
        assert!(
            prob["detail"].as_str().unwrap().contains("truncated"),
            "{what}: {prob}"
        );
        r.assert_affected(fx, &lost, &what);
    }
    let mut tried = lost.clone();
    tried.insert(a2.id.clone());
    assert_eq!(fx.labels(&c.restore_fails(&tried)), fx.labels(&lost));
}

/// Read-data mode still reads the chunks of a pack whose size is wrong, and
/// lists only the snapshots that really cannot be restored: after a cut of
/// the trailer every chunk is intact and those snapshots still restore.
#[test]
fn read_data_lists_only_snapshots_that_cannot_be_restored_after_a_tail_cut() {
    let fx = fixture();
    let (a1, a2) = (fx.nth("alpha", 0), fx.nth("alpha", 1));
    let (f1, f2) = (fx.nth("fork", 0), fx.nth("fork", 1));
    let shared = set(&[a1, a2, f1, f2]);
    let p = fx.pack_needed_by(2, &shared);
    let c = Case::new();
    truncate(&c.pack_path(&p.name), p.size - 100);
    let failed = c.restore_fails(&shared);
    let r = c.read_data();
    r.assert_damaged("read-data verify, pack cut by 100 bytes");
    r.assert_affected(fx, &failed, "read-data verify, pack cut by 100 bytes");
}

/// Test 4: A deleted pack is found by quick mode; exactly the snapshots that need
/// it are listed, and they (and only they) fail to restore.
#[test]
fn deleted_packs_are_found_by_quick_mode() {
    let fx = fixture();
    let (a1, a2) = (fx.nth("alpha", 0), fx.nth("alpha", 1));
    let (f1, f2) = (fx.nth("fork", 0), fx.nth("fork", 1));
    let (b1, b2) = (fx.nth("beta", 0), fx.nth("beta", 1));
    let non_beta = set(&[a1, a2, f1, f2]);
    let cases = [
        // alpha's second sync: its new commits and trees.
        (
            "tree pack of alpha's second snapshot",
            1,
            set(&[a2]),
            non_beta.clone(),
        ),
        // Blobs the fork added: both fork snapshots need them.
        ("data pack of the fork", 2, set(&[f1, f2]), non_beta.clone()),
        // beta's history: every beta snapshot needs it; alpha does not.
        ("tree pack of beta", 1, set(&[b1, b2]), set(&[b2, a1])),
    ];
    for (label, kind, want, tried) in cases {
        let p = fx.pack_needed_by(kind, &want);
        let c = Case::new();
        std::fs::remove_file(c.pack_path(&p.name)).unwrap();
        for r in [c.quick(), c.read_data()] {
            let what = format!("{} verify, deleted {label} {}", r.doc["mode"], p.name);
            r.assert_damaged(&what);
            let prob = r.assert_names("pack", "pack", &p.name, &what);
            assert!(
                prob["detail"].as_str().unwrap().contains("missing"),
                "{what}: {prob}"
            );
            r.assert_affected(fx, &want, &what);
        }
        let failed = c.restore_fails(&tried);
        let expect: BTreeSet<String> = want.intersection(&tried).cloned().collect();
        assert_eq!(
            fx.labels(&failed),
            fx.labels(&expect),
            "deleted {label}: the snapshots that fail to restore"
        );
        assert!(
            failed.len() < tried.len(),
            "an unaffected snapshot restores"
        );
    }
}

/// The error of a restore of snapshot `s` (which must fail).
fn restore_error(c: &Case, s: &Snap) -> String {
    let dest = c.dir.path().join("restore-error");
    let out = c.rv(&[
        "restore",
        "--repo",
        &s.repo,
        "--snapshot",
        &s.id,
        path_str(&dest),
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(!dest.exists());
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Test 4b: The restore error of a snapshot whose pack is gone is clear.
#[test]
fn restore_of_a_snapshot_with_a_deleted_pack_fails_clearly() {
    let fx = fixture();
    let a2 = fx.nth("alpha", 1);
    let p = fx.pack_needed_by(2, &set(&[a2]));
    let c = Case::new();
    std::fs::remove_file(c.pack_path(&p.name)).unwrap();
    let err = restore_error(&c, a2);
    let line = err
        .lines()
        .find(|l| l.starts_with("repovault: error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    eprintln!("restore error: {line}");
    assert!(line.contains("cannot be restored"), "{err}");
    assert!(
        line.contains(&p.name),
        "the error names the missing pack: {err}"
    );
    assert!(
        line.contains("--partial"),
        "the error says what to do: {err}"
    );
}

/// Refs of every snapshot, keyed by id, for comparisons across a repair.
fn snapshot_map(snaps: &[Snap]) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    snaps
        .iter()
        .map(|s| (s.id.clone(), (s.repo.clone(), s.refs.clone())))
        .collect()
}

/// `repair-index --json` must succeed and recover every pack, chunk,
/// object and snapshot of the fixture.
fn repair_recovers_everything(c: &Case, what: &str) -> Value {
    let fx = fixture();
    let out = c.rv(&["repair-index", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{what}: {}", describe(&out));
    let r = parse_json(&out);
    assert_eq!(r["packs"], fx.packs.len(), "{what}: {r:#}");
    assert_eq!(r["chunks"], fx.chunks.len(), "{what}: {r:#}");
    assert_eq!(r["objects"], fx.kinds.len(), "{what}: {r:#}");
    assert_eq!(r["snapshots"], fx.snaps.len(), "{what}: {r:#}");
    assert_eq!(r["dropped_chunks"], 0, "{what}: {r:#}");
    assert_eq!(r["skipped_packs"], serde_json::json!([]), "{what}: {r:#}");
    assert_eq!(
        r["skipped_snapshots"],
        serde_json::json!([]),
        "{what}: {r:#}"
    );
    assert_eq!(
        snapshot_map(&snapshots(&c.store)),
        snapshot_map(&fx.snaps),
        "{what}: the snapshots after repair-index"
    );
    let stats = parse_json(&c.rv(&["stats", "--json"]));
    assert_eq!(stats["packs"], fx.packs.len(), "{what}: {stats:#}");
    assert_eq!(stats["objects"], fx.kinds.len(), "{what}: {stats:#}");
    assert_eq!(stats["chunks"], fx.chunks.len(), "{what}: {stats:#}");
    assert_eq!(
        stats["delta_chunks"],
        fx.chunks.values().filter(|c| c.base.is_some()).count(),
        "{what}: {stats:#}"
    );
    c.read_data()
        .assert_clean(&format!("{what}: read-data verify after repair-index"));
    r
}

/// Test 5a: A lost index is damage of kind `index`; repair-index rebuilds it and
/// every snapshot restores to exactly its recorded refs.
#[test]
fn lost_index_is_reported_and_rebuilt() {
    let fx = fixture();
    let c = Case::new();
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(c.store.join(f));
    }
    for r in [c.quick(), c.read_data()] {
        let what = format!("{} verify without index.sqlite", r.doc["mode"]);
        r.assert_damaged(&what);
        assert_eq!(r.problems().len(), 1, "{what}\n{}", r.text);
        let p = &r.problems()[0];
        assert_eq!(p["kind"], "index", "{what}\n{}", r.text);
        assert!(
            p["detail"].as_str().unwrap().contains("repair-index"),
            "{what}: the problem says what to do\n{}",
            r.text
        );
    }
    let r = repair_recovers_everything(&c, "lost index");
    assert!(r["old_index"].is_null(), "{r:#}");
    let all: BTreeSet<String> = fx.snaps.iter().map(|s| s.id.clone()).collect();
    assert!(
        c.restore_fails(&all).is_empty(),
        "every snapshot restores after repair-index"
    );
}

/// Test 5b: A corrupt index is reported (as damage, or as a one-line error), and
/// repair-index recovers everything from the packs and snapshot files.
#[test]
fn corrupt_index_is_reported_and_rebuilt() {
    let fx = fixture();
    let non_beta = fx.ids_except("beta");
    for how in ["garbage", "truncated"] {
        let c = Case::new();
        let path = c.store.join("index.sqlite");
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len >= 16 * 4096, "index of {len} bytes");
        match how {
            "garbage" => {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                let at = (len / 2) / 4096 * 4096;
                f.write_all_at(&random_bytes(0x06A4_BA6E, 4096), at)
                    .unwrap();
            }
            _ => truncate(&path, len / 2),
        }
        for args in [&[][..], &["--read-data"][..]] {
            let mut all = vec!["verify", "--json"];
            all.extend_from_slice(args);
            let out = c.rv(&all);
            let what = format!("verify {args:?} of an index with {how}");
            let code = out.status.code().unwrap();
            assert_ne!(code, 0, "{what}: {}", describe(&out));
            if code == DAMAGED {
                let doc = parse_json(&out);
                assert_eq!(doc["clean"], false, "{what}: {doc:#}");
                let problems = doc["problems"].as_array().unwrap();
                assert!(
                    problems.iter().any(|p| p["kind"] == "index"),
                    "{what}: a problem of kind index: {doc:#}"
                );
                eprintln!("{what}: exit 12 with {} problem(s)", problems.len());
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let lines: Vec<&str> = err.lines().collect();
                assert_eq!(lines.len(), 1, "{what}: one line: {}", describe(&out));
                assert!(
                    lines[0].starts_with("repovault: error:") && lines[0].contains("index"),
                    "{what}: {}",
                    describe(&out)
                );
                eprintln!("{what}: exit {code}: {}", lines[0]);
            }
        }
        let r = repair_recovers_everything(&c, &format!("index with {how}"));
        let old = PathBuf::from(r["old_index"].as_str().expect("the old index was kept"));
        assert!(old.is_file(), "{r:#}");
        assert!(
            c.restore_fails(&non_beta).is_empty(),
            "index with {how}: snapshots restore after repair-index"
        );
    }
}

/// Removes the rows of object `oid` (foreign keys off, as damage would).
fn delete_object_rows(c: &Case, oid: &str) {
    let db = c.db();
    let bytes: Vec<u8> = (0..oid.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&oid[i..i + 2], 16).unwrap())
        .collect();
    let n = db
        .execute("DELETE FROM objects WHERE oid = ?1", [&bytes])
        .unwrap();
    assert_eq!(n, 1, "object {oid} had a row");
    db.execute("DELETE FROM object_chunks WHERE oid = ?1", [&bytes])
        .unwrap();
}

/// Test 6: Lost object rows (of objects no ref points at) are found by read-data,
/// which names the object and exactly the snapshots that need it.
#[test]
fn lost_object_rows_are_found_by_read_data() {
    let fx = fixture();
    let alpha = fx.source("alpha");
    let beta = fx.source("beta");
    let a_root = git(&alpha, &["rev-list", "--max-parents=0", "refs/heads/main"]);
    let b_root = git(&beta, &["rev-list", "--max-parents=0", "refs/heads/main"]);
    let b2 = fx.nth("beta", 1);
    let big_v2 = git(
        &beta,
        &[
            "rev-parse",
            &format!("{}:data/blob.bin", b2.refs["refs/heads/main"]),
        ],
    );
    let cases = [
        // A blob of alpha's first commit: every alpha and fork snapshot needs it.
        (
            "blob",
            git(&alpha, &["rev-parse", &format!("{a_root}:README.md")]),
        ),
        // The root tree of beta's first commit.
        (
            "tree",
            git(&beta, &["rev-parse", &format!("{b_root}^{{tree}}")]),
        ),
        // The second version of the 6 MiB binary (several chunks).
        ("multi-chunk blob", big_v2),
    ];
    for (label, oid) in cases {
        let want = fx.needing_object(&oid);
        assert!(!want.is_empty());
        assert!(
            fx.snaps.iter().all(|s| !s.refs.values().any(|t| *t == oid)),
            "{oid} is not a ref target"
        );
        if label == "multi-chunk blob" {
            assert!(fx.obj_chunks[&oid].len() > 1);
        }
        let c = Case::new();
        delete_object_rows(&c, &oid);
        let what = format!("read-data verify without the rows of {label} {oid}");
        let r = c.read_data();
        r.assert_damaged(&what);
        let p = r.assert_names("object", "object", &oid, &what);
        assert!(
            p["detail"].as_str().unwrap().contains("not stored"),
            "{what}: {p}"
        );
        r.assert_affected(fx, &want, &what);
        let q = c.quick();
        eprintln!(
            "lost rows of {label}: quick verify {}",
            if q.detected() {
                "detects it too"
            } else {
                "does not see it (as documented)"
            }
        );
        // Restore agrees (beta snapshots only where they are expected to
        // fail: a successful beta restore takes long in a debug build).
        let tried: BTreeSet<String> = fx
            .snaps
            .iter()
            .filter(|s| s.repo != "beta" || want.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        let expect: BTreeSet<String> = want.intersection(&tried).cloned().collect();
        assert_eq!(
            fx.labels(&c.restore_fails(&tried)),
            fx.labels(&expect),
            "{what}: the snapshots that fail to restore"
        );
    }
}

/// Test 7: A snapshot whose ref target is gone is found by quick mode, which
/// names the object and the snapshot.
#[test]
fn missing_ref_target_is_found_by_quick_mode() {
    let fx = fixture();
    let non_beta = fx.ids_except("beta");

    // The tip of alpha's main branch in its second snapshot: no other snapshot needs it.
    let a2 = fx.nth("alpha", 1);
    let tip = a2.refs["refs/heads/main"].clone();
    let want = fx.needing_object(&tip);
    assert_eq!(fx.labels(&want), fx.labels(&set(&[a2])));
    let c = Case::new();
    delete_object_rows(&c, &tip);
    for r in [c.quick(), c.read_data()] {
        let what = format!("{} verify without branch tip {tip}", r.doc["mode"]);
        r.assert_damaged(&what);
        assert!(
            r.problems().iter().any(|p| p["kind"] == "snapshot"
                && p["object"] == tip.as_str()
                && p["detail"].as_str().unwrap().contains("refs/heads/main")
                && p["detail"].as_str().unwrap().contains(&a2.id[..8])),
            "{what}: a problem names the ref, the snapshot and the object\n{}",
            r.text
        );
        // (Listed once per ref pointing there: see affected_lists_each_snapshot_once.)
        r.assert_affected_set(fx, &want, &what);
    }
    assert_eq!(fx.labels(&c.restore_fails(&non_beta)), fx.labels(&want));

    // The tip of the fork's main branch in its first snapshot, which the
    // second snapshot still needs as an ancestor.
    let (f1, f2) = (fx.nth("fork", 0), fx.nth("fork", 1));
    let tip = f1.refs["refs/heads/main"].clone();
    assert_ne!(f2.refs["refs/heads/main"], tip);
    let want = fx.needing_object(&tip);
    assert_eq!(fx.labels(&want), fx.labels(&set(&[f1, f2])));
    let c = Case::new();
    delete_object_rows(&c, &tip);
    assert_eq!(
        fx.labels(&c.restore_fails(&non_beta)),
        fx.labels(&want),
        "both fork snapshots fail to restore, alpha's restore"
    );
    let full = c.read_data();
    let what = "read-data verify without the fork's first tip";
    full.assert_damaged(what);
    full.assert_names("snapshot", "object", &tip, what);
    full.assert_names("object", "object", &tip, what);
    full.assert_affected_set(fx, &want, what);
    let quick = c.quick();
    let what = "quick verify without the fork's first tip";
    quick.assert_damaged(what);
    quick.assert_names("snapshot", "object", &tip, what);
    assert!(quick.affected().contains(&f1.id), "{what}\n{}", quick.text);
    // (That quick mode should list the second snapshot too: see
    // quick_verify_lists_every_snapshot_that_needs_a_missing_tip.)
}

/// Bug: a snapshot is listed once in `affected` per ref that points at a
/// missing object (HEAD and refs/heads/main), so the summary counts it twice.
#[test]
fn affected_lists_each_snapshot_once() {
    let fx = fixture();
    let a2 = fx.nth("alpha", 1);
    let c = Case::new();
    delete_object_rows(&c, &a2.refs["refs/heads/main"]);
    for r in [c.quick(), c.read_data()] {
        let what = format!("{} verify without alpha's second tip", r.doc["mode"]);
        r.assert_affected(fx, &set(&[a2]), &what);
        let out = c.rv(&["verify"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 snapshot(s) affected"),
            "{}",
            describe(&out)
        );
    }
}

/// Bug: when a snapshot's branch tip is gone, quick mode lists only that
/// snapshot, not the later ones that need the same commit as an ancestor
/// (and so cannot be restored either); read-data mode lists them.
#[test]
fn quick_verify_lists_every_snapshot_that_needs_a_missing_tip() {
    let fx = fixture();
    let (f1, f2) = (fx.nth("fork", 0), fx.nth("fork", 1));
    let tip = f1.refs["refs/heads/main"].clone();
    let c = Case::new();
    delete_object_rows(&c, &tip);
    c.quick().assert_affected_set(
        fx,
        &set(&[f1, f2]),
        "quick verify without the fork's first tip",
    );
}

/// Test 8: `--read-data-subset 1/2` and `2/2` read every pack exactly once, and a
/// part holding a damaged pack finds the damage.
#[test]
fn read_data_subsets_partition_the_packs() {
    let fx = fixture();
    let c = Case::new();
    let parts: Vec<Report> = ["1/2", "2/2"]
        .iter()
        .map(|s| c.verify(&["--read-data-subset", s]))
        .collect();
    for r in &parts {
        r.assert_clean("a part of a clean store");
        assert_eq!(r.doc["mode"], "read-data");
    }
    let sum = |key: &str| parts.iter().map(|r| r.count(key)).sum::<u64>();
    assert_eq!(sum("packs_checked"), fx.packs.len() as u64);
    assert_eq!(sum("chunks_checked"), fx.chunks.len() as u64);
    assert_eq!(
        sum("bytes_read"),
        fx.packs.iter().map(|p| p.size).sum::<u64>()
    );
    // Part n of m holds the packs whose position in name order is n-1 modulo m.
    let in_part = |n: usize, m: usize| -> Vec<&PackInfo> {
        fx.packs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % m == n - 1)
            .map(|(_, p)| p)
            .collect()
    };
    for (n, r) in parts.iter().enumerate() {
        let packs = in_part(n + 1, 2);
        assert_eq!(r.count("packs_checked"), packs.len() as u64, "{}", r.text);
        assert_eq!(
            r.count("bytes_read"),
            packs.iter().map(|p| p.size).sum::<u64>(),
            "{}",
            r.text
        );
    }
    let all = c.verify(&["--read-data-subset", "100%"]);
    all.assert_clean("100% of a clean store");
    assert_eq!(all.count("packs_checked"), fx.packs.len() as u64);
    for bad in ["0/2", "3/2", "2", "0%", "101%", "x/y"] {
        let out = c.rv(&["verify", "--read-data-subset", bad]);
        // A bad value is a bad command line (README's exit codes).
        assert_eq!(
            out.status.code(),
            Some(2),
            "--read-data-subset {bad}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--read-data-subset"),
            "{}",
            describe(&out)
        );
    }

    // Damage the largest chunk of the largest data pack, and read the part that
    // holds it (by `in_part`'s rule). Pack names are checksums, and the fixture's
    // packs are not byte-identical from run to run, so the part is looked up.
    let (at, p) = fx
        .packs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == 2)
        .max_by_key(|(_, p)| p.size)
        .expect("a data pack");
    let n = at % 2 + 1;
    let (damaged, clean) = (format!("{n}/2"), format!("{}/2", 3 - n));
    let (damaged, clean) = (damaged.as_str(), clean.as_str());
    let (id, ch) = fx
        .chunks
        .iter()
        .filter(|(_, ch)| ch.pack == p.rowid)
        .max_by_key(|(_, ch)| ch.stored_len)
        .unwrap();
    let want = fx.needing_chunks(&HashSet::from([*id]));
    xor_byte(&c.pack_path(&p.name), ch.offset + ch.stored_len / 2, 0x55);
    let part = c.verify(&["--read-data-subset", damaged]);
    let what = format!(
        "--read-data-subset {damaged} with a damaged chunk in pack {}",
        p.name
    );
    part.assert_damaged(&what);
    part.assert_names("chunk", "chunk", &ch.hash, &what);
    part.assert_names("pack", "pack", &p.name, &what);
    part.assert_affected(fx, &want, &what);
    let full = c.read_data();
    full.assert_affected(fx, &want, "read-data with the same damage");
    let other = c.verify(&["--read-data-subset", clean]);
    eprintln!(
        "subset {clean} with damage in {damaged}: exit {} ({} problems)",
        other.code,
        other.problems().len()
    );
}

/// Test 9: Leftovers of a killed writer: a temporary pack is ignored, an
/// unindexed complete pack is a note (and repair-index indexes it); a snapshot
/// file the index lacks is damage that repair-index fixes.
#[test]
fn leftovers_of_a_killed_writer_are_not_damage() {
    use repovault::chunk::ChunkId;
    use repovault::pack::{ObjectRecord, PackKind, PackWriter};
    use repovault::ObjectKind;
    let fx = fixture();
    let c = Case::new();
    let packs = c.store.join("packs");
    std::fs::write(
        packs.join(".tmp-00c0ffee00c0ffee.pack"),
        random_bytes(9, 5000),
    )
    .unwrap();
    let clean = c.quick();
    clean.assert_clean("quick verify with a temporary pack");
    assert!(clean.notes().is_empty(), "{}", clean.text);

    // A complete pack whose index rows were never committed.
    let data = b"a blob only the unindexed pack holds\n";
    let stored = zstd::bulk::compress(data, 3).unwrap();
    let mut w = PackWriter::create(&packs, PackKind::Data, repovault::pack::VERSION).unwrap();
    let id = ChunkId::of(data);
    w.append(id, data.len() as u32, None, &stored).unwrap();
    w.add_object(ObjectRecord {
        oid: repovault::git_oid(ObjectKind::Blob, data),
        kind: ObjectKind::Blob,
        size: data.len() as u64,
        chunks: vec![id],
    });
    let extra = w.finish().unwrap().name;
    for r in [c.quick(), c.read_data()] {
        let what = format!("{} verify with leftovers", r.doc["mode"]);
        r.assert_clean(&what);
        assert_eq!(
            r.count("packs_checked"),
            fx.packs.len() as u64,
            "{what}\n{}",
            r.text
        );
        let notes = r.notes();
        assert_eq!(notes.len(), 1, "{what}\n{}", r.text);
        assert!(
            notes[0].contains(&extra) && notes[0].contains("not in the index"),
            "{what}\n{}",
            r.text
        );
        assert!(!notes[0].contains(".tmp-"), "{what}\n{}", r.text);
    }

    // A snapshot file whose index rows were never committed.
    let a2 = fx.nth("alpha", 1);
    let db = c.db();
    db.execute(
        "DELETE FROM snapshot_refs WHERE snapshot = (SELECT id FROM snapshots WHERE sid = ?1)",
        [&a2.id],
    )
    .unwrap();
    assert_eq!(
        db.execute("DELETE FROM snapshots WHERE sid = ?1", [&a2.id])
            .unwrap(),
        1
    );
    drop(db);
    // The snapshot files are the truth: a file the index lacks is damage (the
    // index holds its objects here, so the fix is cheap) until it is recorded.
    let r = c.quick();
    r.assert_damaged("quick verify with a snapshot file the index lacks");
    assert_eq!(r.count("snapshots_checked"), 5);
    assert!(
        r.problems().iter().any(|p| {
            let d = p["detail"].as_str().unwrap();
            d.contains(&a2.id) && d.contains("not in the index") && d.contains("repair-index")
        }),
        "{}",
        r.text
    );

    // repair-index takes both in.
    let out = c.rv(&["repair-index", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let rep = parse_json(&out);
    assert_eq!(rep["packs"], fx.packs.len() + 1, "{rep:#}");
    assert_eq!(rep["objects"], fx.kinds.len() + 1, "{rep:#}");
    assert_eq!(rep["snapshots"], fx.snaps.len(), "{rep:#}");
    let r = c.read_data();
    r.assert_clean("read-data verify after repair-index");
    assert!(r.notes().is_empty(), "{}", r.text);
    assert_eq!(r.count("packs_checked"), fx.packs.len() as u64 + 1);
    assert_eq!(r.count("snapshots_checked"), 6);
    assert!(
        c.restore_fails(&set(&[a2])).is_empty(),
        "alpha's second snapshot restores"
    );
}

/// The pack format version in the header of every pack of `store`.
fn pack_versions(store: &Path) -> BTreeSet<u32> {
    std::fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(&bytes[..8], b"RVLTPACK", "{}", p.display());
            u32::from_le_bytes(bytes[8..12].try_into().unwrap())
        })
        .collect()
}

/// A store created by an older repovault (format 1: version 1 pack
/// trailers; format 2: snapshot files with every ref) keeps its format: new
/// packs are written as version 1 into a format 1 store, snapshot files of
/// format 1 and 2 stores have all their refs, and sync, verify, restore and
/// repair-index work on them exactly as on a new (format 3) store, whose
/// packs are version 2 and whose second snapshot is a change to the first.
#[test]
fn older_format_stores_keep_their_format_and_work_like_format_3() {
    let base = tempfile::tempdir().unwrap();
    let r = build_alpha();
    let bare = base.path().join("alpha.git");
    git(base.path(), &["init", "-q", "--bare", path_str(&bare)]);
    // Enough refs that the second sync (which moves two) is a small change.
    for i in 0..10 {
        r.tag_lightweight(&format!("t{i}"), "HEAD");
    }
    r.publish(&bare);
    for version in [1u32, 2, 3] {
        let store = base.path().join(format!("store{version}"));
        let cache = base.path().join(format!("cache{version}"));
        rv_ok(&store, &["init"]);
        let cfg_path = store.join("config.json");
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        assert_eq!(cfg["format_version"], 3, "new stores are format 3");
        if version < 3 {
            cfg["format_version"] = serde_json::json!(version);
            std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
        }
        sync(&store, &cache, &bare, "alpha");
        // A second sync adds packs whose deltas have bases in the first ones.
        for i in 0..3 {
            r.commit_file("src/lib.txt", text(2, 200, 100 + i), &format!("more {i}"));
        }
        r.publish(&bare);
        sync(&store, &cache, &bare, "alpha");
        assert_eq!(pack_versions(&store), BTreeSet::from([version.min(2)]));
        let bases: Vec<bool> = snapshot_files(&store)
            .iter()
            .map(|(_, v)| v.get("base").is_some())
            .collect();
        assert_eq!(bases.len(), 2);
        assert_eq!(
            bases.iter().filter(|b| **b).count(),
            usize::from(version >= 3),
            "format {version}: which snapshot files are changes to another"
        );

        let verify = |what: &str| {
            let out = rv(&store, &["verify", "--read-data", "--json"]);
            assert!(out.status.success(), "{what}: {}", describe(&out));
            assert_eq!(parse_json(&out)["clean"], true, "{what}");
        };
        verify("verify");
        let dest = base.path().join(format!("restored{version}"));
        rv_ok(
            &store,
            &["restore", "--repo", "alpha", "--latest", path_str(&dest)],
        );
        assert_eq!(refs_of(&dest), refs_of(&bare), "format {version}");
        git(&dest, &["fsck", "--full", "--strict"]);

        // The index rebuilt from the pack trailers is as good as the original.
        std::fs::remove_file(store.join("index.sqlite")).unwrap();
        for f in ["index.sqlite-wal", "index.sqlite-shm"] {
            let _ = std::fs::remove_file(store.join(f));
        }
        rv_ok(&store, &["repair-index"]);
        verify("verify after repair-index");
        let dest = base.path().join(format!("restored{version}b"));
        rv_ok(
            &store,
            &["restore", "--repo", "alpha", "--latest", path_str(&dest)],
        );
        assert_eq!(
            refs_of(&dest),
            refs_of(&bare),
            "format {version} after repair"
        );
    }
}

/// The snapshot files of a store: id and parsed JSON.
fn snapshot_files(store: &Path) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let id = p.file_stem().unwrap().to_string_lossy().into_owned();
            (
                id,
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
