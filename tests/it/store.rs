//! Integration tests of the store library API and of the `repovault` binary's
//! handling of bad input, locking and `stats --json`.
//!
//! The crash test re-executes this test binary: the `#[ignore]`d test
//! `crash_child` is the child that writes until it is killed.

use crate::support;

use proptest::prelude::*;
use repovault::chunk::{ChunkId, ChunkerParams};
use repovault::store::{DeltaBase, Error, InitOptions, NewObject, Store, Writer};
use repovault::{git_oid, ObjectId, ObjectKind};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{random_bytes, text_bytes, Rng, Vault};

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Data generators (deterministic, fast even in debug builds)
// ---------------------------------------------------------------------------

/// A small edit of a text file: a new line inserted, and a few bytes of
/// another line deleted.
fn edit_text(prev: &[u8], seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let line_start = |pos: usize| {
        prev[..pos]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
    };
    let at = line_start(r.below(prev.len().max(1) as u64) as usize);
    let mut line = Vec::new();
    r.text_line(&mut line);
    let mut out = Vec::with_capacity(prev.len() + line.len());
    out.extend_from_slice(&prev[..at]);
    out.extend_from_slice(&line);
    out.extend_from_slice(&prev[at..]);
    let del = r.below(out.len().saturating_sub(20).max(1) as u64) as usize;
    out.drain(del..del + 5.min(out.len() - del));
    out
}

/// Content for the property test: random, text-like or highly repetitive.
fn content(style: u8, seed: u64, len: usize) -> Vec<u8> {
    match style {
        0 => random_bytes(seed, len),
        1 => text_bytes(seed, len),
        _ => {
            let unit = random_bytes(seed, 1 + (seed % 5000) as usize);
            unit.iter().copied().cycle().take(len).collect()
        }
    }
}

/// The git id of an object. Large objects are hashed by `git hash-object`:
/// SHA-1 in an unoptimised test build runs at a few MB/s, git's at hundreds, and
/// it doubles as an independent check of [`git_oid`] (the store hashes every
/// object it is given with `git_oid` and refuses a mismatch).
fn oid_of(kind: ObjectKind, data: &[u8]) -> ObjectId {
    if data.len() < LARGE {
        git_oid(kind, data)
    } else {
        git_hash_object(kind, data)
    }
}

/// `git hash-object --literally -t <kind> --stdin`.
fn git_hash_object(kind: ObjectKind, data: &[u8]) -> ObjectId {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["hash-object", "--literally", "--stdin", "-t", kind.as_str()])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git hash-object");
    let mut stdin = child.stdin.take().unwrap();
    let out = std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(data).unwrap());
        child.wait_with_output().unwrap()
    });
    assert!(
        out.status.success(),
        "git hash-object: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ObjectId::from_hex(String::from_utf8(out.stdout).unwrap().trim().as_bytes()).unwrap()
}

/// From this size on, [`oid_of`] asks git.
const LARGE: usize = 32 << 10;

fn object(kind: ObjectKind, data: Vec<u8>) -> NewObject {
    NewObject {
        oid: oid_of(kind, &data),
        kind,
        data,
        base: None,
    }
}

fn blob(data: Vec<u8>) -> NewObject {
    object(ObjectKind::Blob, data)
}

fn delta_blob(data: Vec<u8>, base: ObjectId) -> NewObject {
    NewObject {
        base: Some(DeltaBase {
            oid: base,
            delta: None,
        }),
        ..blob(data)
    }
}

#[test]
fn git_oid_agrees_with_git() {
    for kind in [
        ObjectKind::Blob,
        ObjectKind::Tree,
        ObjectKind::Commit,
        ObjectKind::Tag,
    ] {
        for len in [0, 1, 1000, 70_000] {
            let data = random_bytes(len as u64, len);
            assert_eq!(
                git_oid(kind, &data),
                git_hash_object(kind, &data),
                "{kind} of {len} bytes"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Store helpers
// ---------------------------------------------------------------------------

/// Small chunks, so that content-defined chunking kicks in above 64 KiB.
fn small_chunker() -> ChunkerParams {
    ChunkerParams {
        threshold: 64 << 10,
        min_size: 8 << 10,
        avg_size: 16 << 10,
        max_size: 64 << 10,
        ..ChunkerParams::default()
    }
}

fn small_opts() -> InitOptions {
    InitOptions {
        chunker: small_chunker(),
        ..InitOptions::default()
    }
}

fn new_store(opts: InitOptions) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(&dir.path().join("store"), opts).unwrap();
    (dir, store)
}

fn put_commit(store: &Store, objects: Vec<NewObject>) -> repovault::store::WriteStats {
    let mut w: Writer<'_> = store.writer(WAIT).unwrap();
    w.put(objects).unwrap();
    w.commit().unwrap()
}

/// Names and sizes of the files in `<store>/packs`.
fn pack_files(root: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(root.join("packs"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

fn tmp_pack_files(root: &Path) -> Vec<String> {
    pack_files(root)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

fn assert_reads_back(store: &Store, o: &NewObject) {
    let got = store
        .get(&o.oid)
        .unwrap_or_else(|e| panic!("get {} ({} bytes): {e}", o.oid, o.data.len()));
    assert_eq!(got.kind, o.kind, "kind of {}", o.oid);
    assert!(
        got.data == o.data,
        "content of {} differs ({} bytes read, {} put)",
        o.oid,
        got.data.len(),
        o.data.len()
    );
}

/// What a set of objects must add to an empty store: distinct objects,
/// distinct chunks (by the store's own chunker parameters), raw bytes, chunk bytes.
fn expected_counts(store: &Store, objects: &[NewObject]) -> (u64, u64, u64, u64) {
    let chunker = store.config().chunker;
    let mut oids = HashSet::new();
    let mut chunks = HashSet::new();
    let (mut raw, mut chunk_bytes) = (0u64, 0u64);
    for o in objects {
        if oids.insert(o.oid) {
            raw += o.data.len() as u64;
        }
        for r in chunker.split(&o.data) {
            let len = r.len() as u64;
            if chunks.insert(ChunkId::of(&o.data[r])) {
                chunk_bytes += len;
            }
        }
    }
    (oids.len() as u64, chunks.len() as u64, raw, chunk_bytes)
}

/// Puts `objects` (with duplicates inside a batch, across batches of one
/// writer, and across writers), reads them back and checks every object is
/// stored exactly once.
fn check_round_trip(opts: InitOptions, objects: Vec<NewObject>, split: usize) {
    let (_dir, store) = new_store(opts);
    let root = store.root().to_owned();
    let split = split.min(objects.len());

    // One writer: batch 1 holds the first `split` objects twice, batch 2 all objects.
    let mut w = store.writer(WAIT).unwrap();
    let mut first: Vec<NewObject> = objects[..split].to_vec();
    first.extend(objects[..split].iter().cloned());
    w.put(first).unwrap();
    w.put(objects.clone()).unwrap();
    let ws = w.commit().unwrap();
    drop(w);

    let (n_objects, n_chunks, raw, chunk_bytes) = expected_counts(&store, &objects);
    let t = store.totals().unwrap();
    assert_eq!(ws.objects, n_objects, "writer stats: objects");
    assert_eq!(ws.chunks, n_chunks, "writer stats: chunks");
    assert_eq!(t.objects, n_objects, "totals: objects");
    assert_eq!(t.chunks, n_chunks, "totals: chunks");
    assert_eq!(t.delta_chunks, 0, "no delta bases were given");
    assert_eq!(t.raw_bytes, raw, "totals: raw bytes");
    assert_eq!(t.chunk_bytes, chunk_bytes, "totals: chunk bytes");
    let files = pack_files(&root);
    assert!(
        tmp_pack_files(&root).is_empty(),
        "temporary packs left after commit: {files:?}"
    );
    assert_eq!(
        t.packs,
        files.len() as u64,
        "every pack file is indexed: {files:?}"
    );
    assert_eq!(
        t.stored_bytes,
        files.iter().map(|f| f.1).sum::<u64>(),
        "stored bytes = size of the pack files"
    );

    // Again, in one batch with every object twice: nothing new.
    let mut twice = objects.clone();
    twice.extend(objects.iter().cloned());
    let again = put_commit(&store, twice);
    assert_eq!(
        again.objects, 0,
        "second put of the same objects added objects"
    );
    assert_eq!(again.stored_bytes, 0);
    assert_eq!(
        store.totals().unwrap(),
        t,
        "totals changed after putting the same objects again"
    );
    // Again, each object by its own writer.
    for o in objects.iter().take(20) {
        assert_eq!(put_commit(&store, vec![o.clone()]).objects, 0);
    }
    assert_eq!(
        store.totals().unwrap(),
        t,
        "totals changed after putting the same objects in separate writers"
    );
    assert_eq!(
        pack_files(&root),
        files,
        "pack files changed after putting the same objects again"
    );

    // Read back through a fresh handle (no chunk cache).
    drop(store);
    let store = Store::open(&root).unwrap();
    for o in &objects {
        assert_reads_back(&store, o);
    }
}

// ---------------------------------------------------------------------------
// Round trip and dedup
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Spec {
    len: usize,
    seed: u64,
    style: u8,
    kind: ObjectKind,
}

fn spec() -> impl Strategy<Value = Spec> {
    let len = prop_oneof![
        10 => 0usize..4096,
        4 => 4096usize..200_000,
        1 => 200_000usize..1_500_000,
    ];
    let kind = prop_oneof![
        6 => Just(ObjectKind::Blob),
        1 => Just(ObjectKind::Commit),
        1 => Just(ObjectKind::Tree),
        1 => Just(ObjectKind::Tag),
    ];
    (len, any::<u64>(), 0u8..3, kind).prop_map(|(len, seed, style, kind)| Spec {
        len,
        seed,
        style,
        kind,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, max_shrink_iters: 64, ..ProptestConfig::default() })]

    /// Random objects of random sizes (mostly small, some chunked by FastCDC,
    /// sometimes one of 4-6 MiB; the 20 MiB case is
    /// `big_objects_round_trip_and_share_chunks`) come back byte-identical with their kind,
    /// and are stored once however often they are put.
    #[test]
    fn put_get_round_trip_and_dedup(
        small in prop::bool::weighted(0.75),
        small_packs in any::<bool>(),
        specs in prop::collection::vec(spec(), 1..14),
        big in prop::option::weighted(0.25, (4_300_000usize..6_500_000, any::<u64>())),
        same_data_other_kind in any::<bool>(),
        split in 0usize..16,
    ) {
        let mut objects: Vec<NewObject> = specs.iter().map(|s| object(s.kind, content(s.style, s.seed, s.len))).collect();
        if let Some((len, seed)) = big {
            objects.push(blob(content((seed % 3) as u8, seed, len)));
        }
        if same_data_other_kind {
            // Same bytes as another kind: another object, no new chunk.
            let o = &objects[0];
            let kind = if o.kind == ObjectKind::Blob { ObjectKind::Tree } else { ObjectKind::Blob };
            objects.push(object(kind, o.data.clone()));
        }
        let mut opts = if small { small_opts() } else { InitOptions::default() };
        if small_packs {
            opts.pack_target_size = 64 << 10;
        }
        check_round_trip(opts, objects, split);
    }
}

/// With the default chunker (threshold 4 MiB, 1 MiB average chunks): a 20 MiB
/// pseudo-random blob round-trips and is stored once however often it is put;
/// a copy with a few bytes changed in the middle shares most of its chunks.
#[test]
fn big_objects_round_trip_and_share_chunks() {
    let (_dir, store) = new_store(InitOptions::default());
    let root = store.root().to_owned();
    let a = random_bytes(7, 20 << 20);
    let mut b = a.clone();
    for (i, x) in b[10 << 20..(10 << 20) + 8].iter_mut().enumerate() {
        *x ^= 0x5a ^ i as u8;
    }
    let (a, b) = (blob(a), blob(b));
    assert_ne!(a.oid, b.oid);
    let small = [blob(Vec::new()), blob(text_bytes(1, 5000))];

    let mut w = store.writer(WAIT).unwrap();
    w.put(vec![a.clone(), small[0].clone(), a.clone()]).unwrap();
    w.put(vec![small[1].clone(), a.clone()]).unwrap();
    let first = w.commit().unwrap();
    drop(w);
    let t1 = store.totals().unwrap();
    let (n_objects, n_chunks, raw, _) =
        expected_counts(&store, &[a.clone(), small[0].clone(), small[1].clone()]);
    assert_eq!(
        (t1.objects, t1.chunks, t1.raw_bytes),
        (n_objects, n_chunks, raw),
        "{t1:?}"
    );
    assert!(
        t1.chunks >= 2 + 5,
        "a 20 MiB object is split into chunks: {t1:?}"
    );
    assert_eq!(put_commit(&store, vec![a.clone(), a.clone()]).objects, 0);
    assert_eq!(
        store.totals().unwrap(),
        t1,
        "putting the 20 MiB object again changed the store"
    );

    let second = put_commit(&store, vec![b.clone()]);
    let t2 = store.totals().unwrap();
    assert_eq!(t2.objects, t1.objects + 1);
    let new_stored = t2.stored_bytes - t1.stored_bytes;
    assert!(
        new_stored * 4 < t1.stored_bytes,
        "the edited copy added {new_stored} stored bytes, not < 25% of {} ({} of {} chunks new)",
        t1.stored_bytes,
        second.chunks,
        first.chunks
    );
    assert!(
        second.chunks <= 3,
        "{} chunks of the edited copy are new",
        second.chunks
    );
    assert_eq!(
        pack_files(&root).iter().map(|f| f.1).sum::<u64>(),
        t2.stored_bytes
    );

    let store = Store::open(&root).unwrap();
    for o in [&a, &b, &small[0], &small[1]] {
        assert_reads_back(&store, o);
    }
}

// ---------------------------------------------------------------------------
// Deltas
// ---------------------------------------------------------------------------

/// `n` versions of a text file of about `len` bytes, each a small edit of the previous.
fn versions(seed: u64, len: usize, n: usize) -> Vec<Vec<u8>> {
    let mut v = vec![text_bytes(seed, len)];
    for i in 1..n {
        let next = edit_text(&v[i - 1], seed.wrapping_mul(1000).wrapping_add(i as u64));
        v.push(next);
    }
    v
}

/// Blobs of `versions`, each with the previous one as its delta base.
fn chain(versions: &[Vec<u8>]) -> Vec<NewObject> {
    let mut out: Vec<NewObject> = Vec::with_capacity(versions.len());
    for d in versions {
        let o = match out.last() {
            None => blob(d.clone()),
            Some(prev) => delta_blob(d.clone(), prev.oid),
        };
        out.push(o);
    }
    out
}

/// 30 versions of a ~200 KiB file put with delta bases (in one batch, in
/// separate batches of one writer, and in separate writers) come back intact
/// and take far less space than without bases.
#[test]
fn delta_chain_round_trip_saves_space() {
    let vs = versions(3, 200 << 10, 30);
    let objects = chain(&vs);

    let (_d1, with) = new_store(InitOptions::default());
    {
        // Versions 0..10 in one batch (base earlier in the batch).
        let mut w = with.writer(WAIT).unwrap();
        w.put(objects[..10].to_vec()).unwrap();
        // 10..20 one batch each (base pending in this writer).
        for o in &objects[10..20] {
            w.put(vec![o.clone()]).unwrap();
        }
        w.commit().unwrap();
    }
    // 20..30 one writer each (base in the index).
    for o in &objects[20..] {
        put_commit(&with, vec![o.clone()]);
    }

    let (_d2, without) = new_store(InitOptions::default());
    put_commit(
        &without,
        objects.iter().map(|o| blob(o.data.clone())).collect(),
    );

    let tw = with.totals().unwrap();
    let tn = without.totals().unwrap();
    assert_eq!(tw.objects, 30);
    assert_eq!(tn.objects, 30);
    assert_eq!(tn.delta_chunks, 0);
    assert_eq!(
        tw.delta_chunks, 29,
        "every version but the first is a delta"
    );
    let ratio = tw.stored_bytes as f64 / tn.stored_bytes as f64;
    assert!(
        ratio < 0.2,
        "with bases {} bytes, without {} bytes: ratio {ratio:.3}",
        tw.stored_bytes,
        tn.stored_bytes
    );
    eprintln!(
        "30 versions: {} stored bytes with bases, {} without (ratio {ratio:.3})",
        tw.stored_bytes, tn.stored_bytes
    );
    // Read back through a fresh handle (no chunk cache), newest first.
    let with = Store::open(with.root()).unwrap();
    for o in objects.iter().rev() {
        assert_reads_back(&with, o);
    }
    let last = objects.last().unwrap();
    let wd = with.get_with_delta(&last.oid, true).unwrap();
    assert!(wd.data == last.data);
    assert!(wd.delta.is_some(), "the last version is stored as a delta");
}

/// A chain of 120 versions is cut at `max_delta_depth` (50): some chunks are
/// stored in full, no chunk is deeper than 50, and all versions read back.
#[test]
fn delta_chain_is_cut_at_max_depth() {
    let (_d, store) = new_store(InitOptions::default());
    let max = store.config().max_delta_depth;
    assert_eq!(max, 50);
    let vs = versions(11, 48 << 10, 120);
    let objects = chain(&vs);
    // Half in one batch, the rest over several writers.
    put_commit(&store, objects[..60].to_vec());
    for part in objects[60..].chunks(15) {
        put_commit(&store, part.to_vec());
    }
    let t = store.totals().unwrap();
    assert_eq!(t.objects, 120);
    assert_eq!(t.chunks, 120);
    assert!(
        t.delta_chunks < t.objects,
        "some chunks must be full: {t:?}"
    );
    // 0 full, 1..=50 deltas, 51 full, ..., 102 full.
    assert_eq!(
        t.chunks - t.delta_chunks,
        3,
        "full chunks in a chain of 120 with depth limit 50: {t:?}"
    );
    let depths: Vec<u32> = store.with_index(|i| {
        objects
            .iter()
            .map(|o| {
                let row = i.object(&o.oid).unwrap().expect("object is indexed");
                assert_eq!(row.nchunks, 1);
                i.chunk(row.chunk).unwrap().expect("chunk is indexed").depth
            })
            .collect()
    });
    assert!(
        depths.iter().all(|&d| d <= max),
        "depths beyond {max}: {depths:?}"
    );
    assert_eq!(
        depths.iter().filter(|&&d| d == 0).count(),
        3,
        "depths: {depths:?}"
    );
    let store = Store::open(store.root()).unwrap();
    for o in objects.iter().rev() {
        assert_reads_back(&store, o);
    }
}

/// A delta given by the caller (as git's own delta from a source pack would be) is used.
#[test]
fn explicit_delta_round_trip() {
    let (_d, store) = new_store(InitOptions::default());
    let vs = versions(5, 100 << 10, 6);
    let mut objects = vec![blob(vs[0].clone())];
    for i in 1..vs.len() {
        let delta = repovault::delta::encode(&vs[i - 1], &vs[i]);
        let base = git_oid(ObjectKind::Blob, &vs[i - 1]);
        objects.push(NewObject {
            base: Some(DeltaBase {
                oid: base,
                delta: Some(delta),
            }),
            ..blob(vs[i].clone())
        });
    }
    put_commit(&store, objects[..3].to_vec());
    put_commit(&store, objects[3..].to_vec());
    let t = store.totals().unwrap();
    assert_eq!(t.objects, 6);
    assert_eq!(t.delta_chunks, 5);
    let store = Store::open(store.root()).unwrap();
    for o in &objects {
        assert_reads_back(&store, o);
        let wd = store.get_with_delta(&o.oid, true).unwrap();
        assert!(wd.data == o.data);
        assert_eq!(wd.delta.is_some(), o.base.is_some());
    }
}

/// A caller-supplied delta that does not turn the base into the content must
/// not be stored: either `put` refuses it, or the object is stored so that it
/// reads back (the content itself matches its oid).
#[test]
fn wrong_explicit_delta_is_not_stored_blindly() {
    let (_d, store) = new_store(InitOptions::default());
    let vs = versions(9, 50 << 10, 3);
    let base = blob(vs[0].clone());
    // A well-formed delta, but from the wrong base content (vs[1] -> vs[2]).
    let wrong = repovault::delta::encode(&vs[1], &vs[2]);
    let o = NewObject {
        base: Some(DeltaBase {
            oid: base.oid,
            delta: Some(wrong),
        }),
        ..blob(vs[2].clone())
    };
    put_commit(&store, vec![base.clone()]);
    let mut w = store.writer(WAIT).unwrap();
    let put = w.put(vec![o.clone()]).and_then(|()| w.commit().map(|_| ()));
    drop(w);
    match put {
        Err(e) => assert!(
            !store.contains(&o.oid).unwrap(),
            "put failed ({e}) but the object is indexed"
        ),
        Ok(()) => {
            let store = Store::open(store.root()).unwrap();
            assert_reads_back(&store, &o);
        }
    }
    assert_reads_back(&store, &base);
}

// ---------------------------------------------------------------------------
// Bad content
// ---------------------------------------------------------------------------

/// Content that does not hash to the given oid is refused, and nothing of the batch is stored.
#[test]
fn oid_mismatch_stores_nothing() {
    let (_d, store) = new_store(InitOptions::default());
    let root = store.root().to_owned();
    let good = blob(b"good content\n".to_vec());
    let other = blob(random_bytes(1, 300_000));
    let mut bad = blob(b"claimed content\n".to_vec());
    bad.data = b"actual content\n".to_vec();
    // The kind is part of the oid too.
    let wrong_kind = NewObject {
        kind: ObjectKind::Tree,
        ..blob(b"a blob\n".to_vec())
    };

    for culprit in [bad.clone(), wrong_kind.clone()] {
        let mut w = store.writer(WAIT).unwrap();
        let err = w
            .put(vec![good.clone(), culprit.clone(), other.clone()])
            .unwrap_err();
        match err {
            Error::OidMismatch { oid, kind, actual } => {
                assert_eq!(oid, culprit.oid);
                assert_eq!(kind, culprit.kind);
                assert_eq!(actual, git_oid(culprit.kind, &culprit.data));
            }
            e => panic!("expected OidMismatch, got {e}"),
        }
        let ws = w.commit().unwrap();
        assert_eq!(
            ws,
            Default::default(),
            "the failed batch added something: {ws:?}"
        );
        drop(w);
        let t = store.totals().unwrap();
        assert_eq!(
            (t.objects, t.chunks, t.packs, t.stored_bytes),
            (0, 0, 0, 0),
            "{t:?}"
        );
        assert!(
            pack_files(&root).is_empty(),
            "pack files: {:?}",
            pack_files(&root)
        );
        for o in [&good, &culprit, &other] {
            assert!(matches!(
                store.get(&o.oid),
                Err(Error::ObjectNotFound { .. })
            ));
        }
    }

    // Earlier batches of the same writer are kept; the failed batch is not.
    let mut w = store.writer(WAIT).unwrap();
    w.put(vec![good.clone()]).unwrap();
    assert!(matches!(
        w.put(vec![other.clone(), bad.clone()]),
        Err(Error::OidMismatch { .. })
    ));
    w.commit().unwrap();
    drop(w);
    assert_reads_back(&store, &good);
    assert!(!store.contains(&other.oid).unwrap());
    assert!(!store.contains(&bad.oid).unwrap());
    assert_eq!(store.totals().unwrap().objects, 1);
}

// ---------------------------------------------------------------------------
// Crash safety
// ---------------------------------------------------------------------------

const CRASH_STORE_ENV: &str = "REPOVAULT_TEST_CRASH_STORE";
const CRASH_SEED_ENV: &str = "REPOVAULT_TEST_CRASH_SEED";
const CRASH_PROGRESS_ENV: &str = "REPOVAULT_TEST_CRASH_PROGRESS";

/// Batch `round` of the crash child with `seed`: small blobs, metadata
/// objects, a delta chain continuing the previous round's, and a chunked blob.
fn crash_batch(seed: u64, round: u64) -> Vec<NewObject> {
    let mut r = Rng(seed.wrapping_mul(0x1_0000_0001).wrapping_add(round));
    let mut v = Vec::new();
    for i in 0..24 {
        let len = 1024 + r.below(15 << 10) as usize;
        let data = if i % 2 == 0 {
            random_bytes(r.next(), len)
        } else {
            text_bytes(r.next(), len)
        };
        let kind = if i % 6 == 5 {
            ObjectKind::Tree
        } else {
            ObjectKind::Blob
        };
        v.push(object(kind, data));
    }
    // A chain of versions that continues across rounds.
    let mut text = text_bytes(seed, 40 << 10);
    for k in 0..round * 3 {
        text = edit_text(&text, seed ^ k);
    }
    let mut base = git_oid(ObjectKind::Blob, &text);
    for k in round * 3..round * 3 + 3 {
        text = edit_text(&text, seed ^ k);
        let o = delta_blob(text.clone(), base);
        base = o.oid;
        v.push(o);
    }
    v.push(blob(random_bytes(r.next(), 200 << 10)));
    v
}

/// The writer killed by `crash_safety_under_sigkill` (runs only when asked).
#[test]
#[ignore = "child process of crash_safety_under_sigkill"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_STORE_ENV) else {
        eprintln!("crash_child: {CRASH_STORE_ENV} is not set; nothing to do");
        return;
    };
    let seed: u64 = std::env::var(CRASH_SEED_ENV).unwrap().parse().unwrap();
    let store = Store::open(Path::new(&dir)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let progress = std::env::var_os(CRASH_PROGRESS_ENV);
    let mut round = 0;
    while Instant::now() < deadline {
        let mut w = store.writer(WAIT).unwrap();
        w.put(crash_batch(seed, round)).unwrap();
        w.commit().unwrap();
        round += 1;
        if let Some(p) = &progress {
            std::fs::write(p, round.to_string()).unwrap();
        }
    }
}

/// Rounds the crash child reports as committed.
fn child_progress(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn spawn_crash_child(
    store: &Path,
    seed: u64,
    crash_at: Option<&str>,
    progress: &Path,
) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "store::crash_child",
        "--nocapture",
        "--ignored",
        "--test-threads",
        "1",
    ])
    .env(CRASH_STORE_ENV, store)
    .env(CRASH_SEED_ENV, seed.to_string())
    .env(CRASH_PROGRESS_ENV, progress)
    .env_remove("REPOVAULT_CRASH_AT")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    if let Some(p) = crash_at {
        cmd.env("REPOVAULT_CRASH_AT", p);
    }
    cmd.spawn().unwrap()
}

/// Every object and chunk the index lists, by way of the indexed packs' trailers.
fn indexed_contents(store: &Store) -> (Vec<ObjectId>, Vec<i64>) {
    let packs = store.with_index(|i| i.packs()).unwrap();
    let mut oids = HashSet::new();
    let mut chunks = HashSet::new();
    for p in &packs {
        assert!(
            !p.name.starts_with(".tmp"),
            "a temporary pack is indexed: {}",
            p.name
        );
        let path = repovault::pack::pack_path(&store.packs_dir(), &p.name);
        repovault::pack::verify_checksum(&path)
            .unwrap_or_else(|e| panic!("indexed pack {}: {e}", p.name));
        let c = repovault::pack::read_contents(&path).unwrap();
        for o in c.objects {
            assert!(
                store.contains(&o.oid).unwrap(),
                "object {} of indexed pack {} is not indexed",
                o.oid,
                p.name
            );
            oids.insert(o.oid);
        }
        for e in c.entries {
            let row = store.with_index(|i| i.chunk_by_hash(&e.id)).unwrap();
            let row = row.unwrap_or_else(|| {
                panic!("chunk {} of indexed pack {} is not indexed", e.id, p.name)
            });
            chunks.insert(row.rowid);
        }
    }
    (oids.into_iter().collect(), chunks.into_iter().collect())
}

/// After a crash: the store opens, everything indexed reads back intact,
/// temporary packs do not count and are removed by the next writer, and a new put works.
fn check_after_crash(root: &Path, what: &str, fresh_seed: u64) {
    let store = Store::open(root).unwrap_or_else(|e| panic!("{what}: store does not open: {e}"));
    let t = store.totals().unwrap();
    let (oids, chunks) = indexed_contents(&store);
    assert_eq!(
        oids.len() as u64,
        t.objects,
        "{what}: objects of indexed packs vs index"
    );
    assert_eq!(
        chunks.len() as u64,
        t.chunks,
        "{what}: chunks of indexed packs vs index"
    );
    for oid in &oids {
        let o = store
            .get(oid)
            .unwrap_or_else(|e| panic!("{what}: object {oid}: {e}"));
        assert_eq!(
            git_oid(o.kind, &o.data),
            *oid,
            "{what}: object {oid} does not hash to its id"
        );
    }
    for rowid in &chunks {
        store
            .chunk_plain(*rowid)
            .unwrap_or_else(|e| panic!("{what}: chunk row {rowid}: {e}"));
    }
    let indexed: HashSet<String> = store
        .with_index(|i| i.packs())
        .unwrap()
        .into_iter()
        .map(|p| format!("{}.pack", p.name))
        .collect();
    let stored: u64 = pack_files(root)
        .iter()
        .filter(|(n, _)| indexed.contains(n))
        .map(|(_, l)| l)
        .sum();
    assert_eq!(
        stored, t.stored_bytes,
        "{what}: stored bytes vs indexed pack files"
    );
    let tmp_before = tmp_pack_files(root).len();

    let fresh = blob(random_bytes(fresh_seed, 100_000));
    let mut w = store
        .writer(WAIT)
        .unwrap_or_else(|e| panic!("{what}: no writer after the crash: {e}"));
    assert!(
        tmp_pack_files(root).is_empty(),
        "{what}: temporary packs left after a writer opened: {:?}",
        tmp_pack_files(root)
    );
    w.put(vec![fresh.clone()]).unwrap();
    w.commit().unwrap();
    drop(w);
    assert_reads_back(&store, &fresh);
    let t2 = store.totals().unwrap();
    assert_eq!(t2.objects, t.objects + 1, "{what}");
    eprintln!(
        "{what}: {} objects, {} chunks, {} packs intact; {tmp_before} temporary pack(s) were left",
        t.objects, t.chunks, t.packs
    );
}

#[cfg(unix)]
fn killed_by_sigkill(status: std::process::ExitStatus) -> bool {
    status.signal() == Some(9)
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A writer killed with SIGKILL at arbitrary times and at the deterministic
/// crash points leaves a store that opens, reads back everything it lists,
/// and accepts new writes.
#[test]
fn crash_safety_under_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    drop(
        Store::init(
            &root,
            InitOptions {
                chunker: small_chunker(),
                pack_target_size: 64 << 10,
                ..InitOptions::default()
            },
        )
        .unwrap(),
    );

    let progress = dir.path().join("progress");
    let mut seed = 1000;
    // Kills at fixed times (on a loaded machine the child may not have committed anything yet).
    for delay in [50u64, 150, 400, 900] {
        let mut child = spawn_crash_child(&root, seed, None, &progress);
        std::thread::sleep(Duration::from_millis(delay));
        let early = child.try_wait().unwrap();
        assert!(
            early.is_none(),
            "the crash child ended by itself ({early:?}) before {delay} ms: does `crash_child` run?"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(killed_by_sigkill(status), "{status:?}");
        check_after_crash(&root, &format!("SIGKILL after {delay} ms"), seed + 500);
        seed += 1;
    }
    // Kills while the child is known to be writing: after it committed N rounds, plus a little.
    for (rounds, extra_ms) in [(1u64, 0u64), (2, 13)] {
        let _ = std::fs::remove_file(&progress);
        let before = Store::open(&root).unwrap().totals().unwrap();
        let mut child = spawn_crash_child(&root, seed, None, &progress);
        let start = Instant::now();
        while child_progress(&progress) < rounds {
            let ended = child.try_wait().unwrap();
            assert!(
                ended.is_none(),
                "the crash child ended by itself: {ended:?}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the crash child made no progress in 60 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(killed_by_sigkill(status), "{status:?}");
        let after = Store::open(&root).unwrap().totals().unwrap();
        assert!(
            after.objects >= before.objects + 28 * rounds,
            "{rounds} committed round(s) of 28 objects are not all in the store: {before:?} -> {after:?}"
        );
        check_after_crash(
            &root,
            &format!("SIGKILL after {rounds} round(s) + {extra_ms} ms"),
            seed + 500,
        );
        seed += 1;
    }

    // Deterministic points: packs renamed into place but not indexed; index committed.
    for point in ["packs-written", "index-committed"] {
        let before = Store::open(&root).unwrap().totals().unwrap();
        let mut child = spawn_crash_child(&root, seed, Some(point), &progress);
        let status = wait_with_timeout(&mut child, Duration::from_secs(60));
        assert!(
            killed_by_sigkill(status),
            "{point}: the child was not killed by the crash hook: {status:?}"
        );
        let after = Store::open(&root).unwrap().totals().unwrap();
        match point {
            "packs-written" => {
                assert_eq!(
                    after, before,
                    "{point}: the index changed although it was not committed"
                );
            }
            _ => assert!(
                after.objects > before.objects,
                "{point}: the committed objects are not in the index"
            ),
        }
        check_after_crash(&root, point, seed + 500);
        // The batch the child was writing can be written again and reads back.
        let store = Store::open(&root).unwrap();
        let batch = crash_batch(seed, 0);
        put_commit(&store, batch.clone());
        for o in &batch {
            assert_reads_back(&store, o);
        }
        seed += 1;
    }
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

impl Vault {
    /// The binary in this vault's environment, run through `setpriv` as the
    /// unprivileged uid/gid 65534 when `as_nobody`.
    fn command_via(&self, as_nobody: Option<()>) -> Command {
        let mut cmd = match as_nobody {
            None => Command::new(support::BIN),
            Some(()) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    support::BIN,
                ]);
                c
            }
        };
        self.env(&mut cmd);
        cmd
    }

    /// Runs the binary with `args` (any `OsStr`s).
    fn run_os<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        support::run_with_timeout(self.command_via(None).args(args), support::RUN_TIMEOUT)
    }
}

fn store_arg(p: &Path) -> [&OsStr; 2] {
    [OsStr::new("--store"), p.as_os_str()]
}

use support::listing;

/// Exactly one line on stderr, `repovault: error: ...`, containing `needles`; no panic.
fn assert_error_line(out: &Output, needles: &[&str], what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: succeeded; stderr: {stderr}");
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal: {:?}",
        out.status
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "{what}: exit code 101 (panic?); stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panic: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr, got: {stderr:?}"
    );
    let line = lines[0];
    assert!(line.starts_with("repovault: error: "), "{what}: {line:?}");
    for n in needles {
        assert!(line.contains(n), "{what}: {line:?} does not contain {n:?}");
    }
    line.to_owned()
}

/// Words that tell the user what to do.
const ADVICE: &[&str] = &[
    "repovault init",
    "give ",
    "choose ",
    "upgrade ",
    "check ",
    "use ",
    "create ",
    "make ",
    "writable",
];

fn assert_advises(line: &str, what: &str) {
    let after_prefix = &line["repovault: error: ".len()..];
    assert!(
        ADVICE.iter().any(|a| after_prefix.contains(a)),
        "{what}: the message does not say what to do: {line:?}"
    );
}

#[test]
fn cli_refuses_bad_store_paths() {
    let env = Vault::uninit();
    let base = tempfile::tempdir().unwrap();

    // A regular file.
    let file = base.path().join("a-file");
    std::fs::write(&file, b"not a store\n").unwrap();
    let before = listing(base.path());
    let out = env.run_os(store_arg(&file).into_iter().chain([OsStr::new("stats")]));
    let line = assert_error_line(
        &out,
        &[&file.display().to_string()],
        "stats on a regular file",
    );
    assert_advises(&line, "stats on a regular file");
    assert_eq!(
        out.status.code(),
        Some(10),
        "stats on a regular file: {line}"
    );
    assert_eq!(
        listing(base.path()),
        before,
        "stats on a regular file wrote something"
    );

    // A directory that is not a store (with something in it).
    let plain = base.path().join("plain-dir");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), b"hello\n").unwrap();
    let before = listing(base.path());
    for args in [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["repos"],
        vec!["snapshots"],
    ] {
        let out = env.run_os(
            store_arg(&plain)
                .into_iter()
                .chain(args.iter().map(OsStr::new)),
        );
        let what = format!("{args:?} on a directory that is not a store");
        let line = assert_error_line(&out, &[&plain.display().to_string()], &what);
        assert_advises(&line, &what);
        assert_eq!(out.status.code(), Some(10), "{what}: {line}");
        if args.contains(&"--json") {
            // Under --json the error is also one JSON document on stdout.
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{what}: stdout is not JSON: {e}"));
            assert_eq!(v["error"]["exit_code"], 10, "{what}: {v}");
        } else {
            assert!(out.stdout.is_empty(), "{what}: wrote to stdout");
        }
    }
    assert_eq!(
        listing(base.path()),
        before,
        "commands on a non-store directory wrote something"
    );

    // A path that does not exist.
    let missing = base.path().join("missing");
    let out = env.run_os(store_arg(&missing).into_iter().chain([OsStr::new("stats")]));
    let line = assert_error_line(
        &out,
        &[&missing.display().to_string()],
        "stats on a missing path",
    );
    assert_advises(&line, "stats on a missing path");
    assert_eq!(out.status.code(), Some(10));
    assert!(!missing.exists(), "stats created the missing store");
    assert_eq!(listing(base.path()), before);

    // A store written by a newer repovault.
    let newer = base.path().join("newer");
    drop(Store::init(&newer, InitOptions::default()).unwrap());
    let cfg_path = newer.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["format_version"] = serde_json::json!(99);
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let before = listing(base.path());
    let out = env.run_os(store_arg(&newer).into_iter().chain([OsStr::new("stats")]));
    let line = assert_error_line(
        &out,
        &[&newer.display().to_string(), "99"],
        "stats on a format-99 store",
    );
    assert_advises(&line, "stats on a format-99 store");
    assert_eq!(
        listing(base.path()),
        before,
        "stats on a format-99 store wrote something"
    );
}

#[test]
fn cli_init_in_unwritable_places() {
    let env = Vault::uninit();
    let base = tempfile::tempdir().unwrap();

    // A read-only directory. Root ignores permissions: then the binary runs as
    // uid 65534 through `setpriv` if available, and the case is skipped otherwise.
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode(base.path(), 0o755);
    let ro = base.path().join("readonly");
    std::fs::create_dir(&ro).unwrap();
    mode(&ro, 0o555);
    let probe = ro.join("probe");
    let enforced = std::fs::write(&probe, b"").is_err();
    let _ = std::fs::remove_file(&probe);
    let setpriv = || {
        Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let via = if enforced {
        Some(None)
    } else if setpriv() {
        eprintln!("note: running as root, where a 0555 directory is writable: running `init` as uid 65534 through setpriv");
        Some(Some(()))
    } else {
        eprintln!("note: running as root without setpriv, so a 0555 directory is writable; skipping the read-only-directory assertions (the /proc case below still runs)");
        None
    };
    if let Some(via) = via {
        let target = ro.join("new");
        let before = listing(base.path());
        let out = env
            .command_via(via)
            .args(store_arg(&target))
            .arg("init")
            .output()
            .unwrap();
        let what = "init under a read-only directory";
        let line = assert_error_line(&out, &[&ro.display().to_string()], what);
        assert_advises(&line, what);
        assert_eq!(listing(base.path()), before, "{what} wrote something");
    }
    mode(&ro, 0o755);

    // A place that can never be created.
    let target = PathBuf::from(format!("/proc/self/repovault-test-{}", std::process::id()));
    let out = env.run_os(store_arg(&target).into_iter().chain([OsStr::new("init")]));
    let line = assert_error_line(&out, &["/proc/self"], "init under /proc/self");
    assert_advises(&line, "init under /proc/self");
    assert!(!target.exists());
}

#[test]
fn cli_init_refuses_existing_store_and_non_empty_directory() {
    let env = Vault::uninit();
    let base = tempfile::tempdir().unwrap();

    let existing = base.path().join("store");
    let out = env.run_os(store_arg(&existing).into_iter().chain([OsStr::new("init")]));
    assert!(
        out.status.success(),
        "init of a new store: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(existing.join("config.json").is_file());
    let before = listing(base.path());
    let out = env.run_os(store_arg(&existing).into_iter().chain([OsStr::new("init")]));
    let line = assert_error_line(
        &out,
        &[&existing.display().to_string()],
        "init on an existing store",
    );
    assert_advises(&line, "init on an existing store");
    assert_eq!(
        listing(base.path()),
        before,
        "init on an existing store changed it"
    );

    let full = base.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"precious\n").unwrap();
    let before = listing(base.path());
    let out = env.run_os(store_arg(&full).into_iter().chain([OsStr::new("init")]));
    let line = assert_error_line(
        &out,
        &[&full.display().to_string()],
        "init on a non-empty directory",
    );
    assert_advises(&line, "init on a non-empty directory");
    assert_eq!(
        listing(base.path()),
        before,
        "init on a non-empty directory changed it"
    );

    // An empty directory is fine.
    let empty = base.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = env.run_os(store_arg(&empty).into_iter().chain([OsStr::new("init")]));
    assert!(
        out.status.success(),
        "init in an empty directory: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Store::open(&empty).unwrap();
}

fn stats_json(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn cli_store_from_env_and_flag() {
    let env = Vault::uninit();
    let base = tempfile::tempdir().unwrap();
    let a = base.path().join("a");
    let b = base.path().join("b");
    let sa = Store::init(&a, InitOptions::default()).unwrap();
    put_commit(&sa, vec![blob(b"one\n".to_vec()), blob(b"two\n".to_vec())]);
    drop(sa);
    drop(Store::init(&b, InitOptions::default()).unwrap());

    let out = env
        .command_via(None)
        .env("REPOVAULT_STORE", &a)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let v = stats_json(&out, "REPOVAULT_STORE=a stats");
    assert_eq!(v["objects"], 2, "{v}");
    assert_eq!(v["store"].as_str(), Some(a.to_str().unwrap()), "{v}");

    let out = env
        .command_via(None)
        .env("REPOVAULT_STORE", &a)
        .args(store_arg(&b))
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let v = stats_json(&out, "REPOVAULT_STORE=a --store b stats");
    assert_eq!(
        v["objects"], 0,
        "--store must win over REPOVAULT_STORE: {v}"
    );
    assert_eq!(v["store"].as_str(), Some(b.to_str().unwrap()), "{v}");

    // The environment variable also names the store for errors.
    let missing = base.path().join("missing");
    let out = env
        .command_via(None)
        .env("REPOVAULT_STORE", &missing)
        .arg("stats")
        .output()
        .unwrap();
    assert_error_line(
        &out,
        &[&missing.display().to_string()],
        "REPOVAULT_STORE=missing stats",
    );
    assert_eq!(out.status.code(), Some(10));
}

#[test]
fn cli_stats_json_counts() {
    let env = Vault::uninit();
    let (_d, store) = new_store(small_opts());
    let root = store.root().to_owned();
    let objects = vec![
        blob(Vec::new()),
        blob(b"hello\n".to_vec()),
        blob(text_bytes(2, 10_000)),
        blob(random_bytes(3, 300_000)), // chunked
        object(
            ObjectKind::Commit,
            b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nfirst\n".to_vec(),
        ),
        object(ObjectKind::Tree, Vec::new()),
        object(ObjectKind::Blob, b"hello\n".to_vec()), // duplicate
    ];
    put_commit(&store, objects[..4].to_vec());
    put_commit(&store, objects[3..].to_vec());
    let (n_objects, n_chunks, raw, _) = expected_counts(&store, &objects);
    assert_eq!(n_objects, 6);
    drop(store);

    let files = pack_files(&root);
    let out = env.run_os(
        store_arg(&root)
            .into_iter()
            .chain(["stats", "--json"].map(OsStr::new)),
    );
    let v = stats_json(&out, "stats --json");
    assert_eq!(v["objects"], n_objects, "{v}");
    assert_eq!(v["chunks"], n_chunks, "{v}");
    assert_eq!(v["packs"], files.len() as u64, "{v}");
    // The first writer wrote one data pack; the second only new metadata objects: one tree pack.
    assert_eq!(v["packs"], 2, "{v}");
    assert_eq!(v["raw_bytes"], raw, "{v}");
    assert_eq!(
        v["stored_bytes"],
        files.iter().map(|f| f.1).sum::<u64>(),
        "{v}"
    );

    // The human form runs too.
    let out = env.run_os(store_arg(&root).into_iter().chain([OsStr::new("stats")]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("objects      {n_objects}")));
}

// ---------------------------------------------------------------------------
// The write lock
// ---------------------------------------------------------------------------

fn git(dir: &Path, args: &[&str]) {
    let home = dir.parent().unwrap();
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_sync_waits_for_the_lock_and_names_the_holder() {
    let env = Vault::uninit();
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), b"hello\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);

    let (_d, store) = new_store(InitOptions::default());
    let root = store.root().to_owned();
    let cache = base.path().join("cache");
    let sync_args = |root: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--store".into(),
            root.into(),
            "sync".into(),
            repo.clone().into(),
            "--lock-wait".into(),
            "1".into(),
            "--cache".into(),
            cache.clone().into(),
        ]
    };

    let writer = store.writer(WAIT).unwrap();
    let start = Instant::now();
    let out = env.run_os(sync_args(&root));
    let waited = start.elapsed();
    let pid = format!("pid {}", std::process::id());
    // Besides the error, one line says that it waits (tests/perms_locks.rs checks it).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let waiting = stderr
        .lines()
        .filter(|l| l.contains("waiting up to"))
        .count();
    assert_eq!(waiting, 1, "{stderr}");
    let out = Output {
        stderr: stderr
            .lines()
            .filter(|l| !l.contains("waiting up to"))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        ..out
    };
    let line = assert_error_line(&out, &[&pid], "sync while the store is locked");
    assert_eq!(out.status.code(), Some(11), "sync while locked: {line}");
    assert!(
        waited >= Duration::from_millis(900),
        "sync gave up after {waited:?}, not after --lock-wait 1"
    );
    assert_eq!(store.totals().unwrap().objects, 0);
    drop(writer);

    let out = env.run_os(sync_args(&root));
    assert!(
        out.status.success(),
        "sync after the lock was released: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = store.totals().unwrap();
    assert_eq!(t.objects, 3, "commit, tree and blob: {t:?}");
    assert_eq!(t.snapshots, 1, "{t:?}");
    assert_eq!(t.repos, 1, "{t:?}");
}

/// Two library writers exclude each other as well.
#[test]
fn second_writer_waits_for_the_first() {
    let (_d, store) = new_store(InitOptions::default());
    let other = Store::open(store.root()).unwrap();
    let w = store.writer(WAIT).unwrap();
    match other.writer(Duration::from_millis(200)) {
        Err(Error::Lock(repovault::lock::Error::Locked { holder, .. })) => {
            assert_eq!(holder.pid(), Some(std::process::id()))
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("two writers at once"),
    }
    drop(w);
    let mut w = other.writer(Duration::from_millis(200)).unwrap();
    w.put(vec![blob(b"x".to_vec())]).unwrap();
    w.commit().unwrap();
    assert_eq!(store.totals().unwrap().objects, 1);
}
