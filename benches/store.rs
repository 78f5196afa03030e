//! Put and get throughput of the store.
//!
//! Data sets (all generated deterministically):
//! * `small`: 4000 objects of 1-8 KiB (half pseudo-random, half text-like);
//! * `large`: 4 x 16 MiB pseudo-random with repetition (every 4 MiB block
//!   appears twice across the set), so content-defined chunking deduplicates;
//! * `versions/delta` and `versions/full`: 100 versions of a 256 KiB text file,
//!   each a small edit of the previous, with and without delta bases.
//!
//! Every put iteration writes into a fresh store in a temporary directory
//! (setup and teardown are not timed). Every get iteration reads all objects
//! through a freshly opened store handle (no warm chunk cache).
//!
//! Run: `cargo bench --bench store` (or `-- --quick` for a short run).

// The test suite's data generator, not a copy of it.
#[allow(dead_code)]
#[path = "../tests/it/support/data.rs"]
mod data;

use criterion::{BatchSize, Criterion, Throughput};
use data::Rng;
use repovault::store::{DeltaBase, InitOptions, NewObject, Store};
use repovault::{git_oid, ObjectKind};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn blob(data: Vec<u8>) -> NewObject {
    NewObject {
        oid: git_oid(ObjectKind::Blob, &data),
        kind: ObjectKind::Blob,
        data,
        base: None,
    }
}

fn small_objects() -> Vec<NewObject> {
    let mut r = Rng(1);
    (0..4000)
        .map(|i| {
            let len = 1024 + r.index(7 << 10);
            blob(if i % 2 == 0 {
                r.bytes(len)
            } else {
                r.text_bytes(len)
            })
        })
        .collect()
}

fn large_objects() -> Vec<NewObject> {
    const MIB: usize = 1 << 20;
    let mut r = Rng(2);
    // 8 distinct 4 MiB blocks, each used twice across the 64 MiB (blocks are
    // as large as the biggest chunk, so most of the repetition deduplicates).
    let blocks: Vec<Vec<u8>> = (0..8).map(|_| r.bytes(4 * MIB)).collect();
    let mut order: Vec<usize> = (0..16).map(|i| i % 8).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, r.index(i + 1));
    }
    order
        .chunks(4)
        .map(|part| {
            let mut data = Vec::with_capacity(16 * MIB);
            for &b in part {
                data.extend_from_slice(&blocks[b]);
            }
            blob(data)
        })
        .collect()
}

/// 100 versions of a 256 KiB text file; `with_bases` names the previous version as delta base.
fn versions(with_bases: bool) -> Vec<NewObject> {
    let mut r = Rng(3);
    let mut text = r.text_bytes(256 << 10);
    let mut out: Vec<NewObject> = Vec::with_capacity(100);
    for _ in 0..100 {
        let mut o = blob(text.clone());
        if let (true, Some(prev)) = (with_bases, out.last()) {
            o.base = Some(DeltaBase {
                oid: prev.oid,
                delta: None,
            });
        }
        out.push(o);
        // Next version: a new line somewhere, a few bytes deleted elsewhere.
        let at = r.index(text.len());
        let at = text[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let mut line = Vec::new();
        r.text_line(&mut line);
        text.splice(at..at, line);
        let del = r.index(text.len() - 8);
        text.drain(del..del + 5);
    }
    out
}

fn put_all(root: &Path, objects: Vec<NewObject>) -> Store {
    let store = Store::init(root, InitOptions::default()).expect("init");
    let mut w = store.writer(Duration::from_secs(10)).expect("writer");
    w.put(objects).expect("put");
    w.commit().expect("commit");
    drop(w);
    store
}

fn bench_store(c: &mut Criterion) {
    let sets: Vec<(&str, Vec<NewObject>)> = vec![
        ("small_4000x1-8KiB", small_objects()),
        ("large_4x16MiB", large_objects()),
        ("versions_100x256KiB/delta", versions(true)),
        ("versions_100x256KiB/full", versions(false)),
    ];

    let mut put = c.benchmark_group("put");
    put.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, objects) in &sets {
        let bytes: u64 = objects.iter().map(|o| o.data.len() as u64).sum();
        put.throughput(Throughput::Bytes(bytes));
        put.bench_function(*name, |b| {
            b.iter_batched(
                || (tempfile::tempdir().expect("tempdir"), objects.clone()),
                |(dir, objects)| {
                    let store = put_all(&dir.path().join("store"), objects);
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    put.finish();

    let mut get = c.benchmark_group("get");
    get.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, objects) in &sets {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let stored = put_all(&root, objects.clone()).totals().expect("totals");
        let bytes: u64 = objects.iter().map(|o| o.data.len() as u64).sum();
        eprintln!(
            "{name}: {} objects, {} bytes, {} chunks ({} deltas), {} stored bytes ({:.2}x)",
            stored.objects,
            bytes,
            stored.chunks,
            stored.delta_chunks,
            stored.stored_bytes,
            bytes as f64 / stored.stored_bytes as f64
        );
        let oids: Vec<_> = objects.iter().map(|o| o.oid).collect();
        get.throughput(Throughput::Bytes(bytes));
        get.bench_function(*name, |b| {
            b.iter_batched(
                || Store::open(&root).expect("open"),
                |store| {
                    for oid in &oids {
                        black_box(store.get(oid).expect("get"));
                    }
                    store
                },
                BatchSize::PerIteration,
            )
        });
    }
    get.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_store(&mut c);
    c.final_summary();
}
