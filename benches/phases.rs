//! Throughput of each phase of the sync and restore pipelines, one criterion
//! group per phase:
//!
//! 1. `chunk`: the store's chunker (FastCDC with the default parameters) over a
//!    16 MiB buffer (256 KiB blocks, each text-like or pseudo-random), and
//!    blake3 of the chunks;
//! 2. `codec`: a 256 KiB text-like object stored in full (zstd) vs as a git
//!    delta against its previous version (a few edited lines), and decoding both;
//! 3. `pack_write`: 10,000 small zstd entries (and their object records)
//!    appended to a pack, trailer, fsync, rename;
//! 4. `index_insert`: 10,000 chunk rows and 10,000 object rows inserted into a
//!    fresh SQLite index in one transaction;
//! 5. `ingest`: `sync::ingest::ingest_packs` of a real git pack into a store
//!    that already holds every object (the shipped decode: gix's traversal,
//!    delta bytes, references, and the index look-ups that skip known objects;
//!    with the pack trusted as a fresh fetch's, and hashed again as a left-over
//!    pack's) and into a fresh store (decode and store everything);
//! 6. `restore`: `restore::restore` of a snapshot of that repository into a
//!    fresh destination.
//!
//! The git repository of phases 5 and 6 is generated in the setup with
//! `git fast-import` (a few hundred commits over 40 text files in 4
//! directories, each commit editing a few lines of 1-3 files, one annotated
//! tag) and `git repack -adf`, so its pack is deltified the way a server's is.
//! Every input is deterministic; setup and teardown are not timed.
//!
//! Run: `cargo bench --bench phases` (or `-- --quick` for a short run).

// The test suite's data generator and hermetic git, not copies of them.
#[allow(dead_code)]
#[path = "../tests/it/support/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../tests/it/support/git.rs"]
mod git;

use criterion::{BatchSize, Criterion, Throughput};
use data::Rng;
use repovault::chunk::{ChunkId, ChunkerParams};
use repovault::index::{Index, NewChunk};
use repovault::pack::{EntryRecord, FinishedPack, ObjectRecord, PackKind, PackWriter};
use repovault::restore::RestoreOptions;
use repovault::store::{Compression, InitOptions, Store};
use repovault::sync::{Source, SyncOptions};
use repovault::{codec_compress, codec_decode, delta, git_oid, ObjectId, ObjectKind};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g
}

// ---------------------------------------------------------------- 1. chunk

fn bench_chunk(c: &mut Criterion) {
    let mut r = Rng(11);
    let mut data = Vec::with_capacity(16 * MIB);
    while data.len() < 16 * MIB {
        if r.index(2) == 0 {
            data.extend_from_slice(&r.text_bytes(256 * KIB));
        } else {
            data.extend_from_slice(&r.bytes(256 * KIB));
        }
    }
    let params = ChunkerParams::default();
    let ranges = params.split(&data);
    eprintln!(
        "chunk: {} bytes -> {} chunks (FastCDC min {} avg {} max {})",
        data.len(),
        ranges.len(),
        params.min_size,
        params.avg_size,
        params.max_size
    );

    let mut g = group(c, "chunk");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc/16MiB", |b| {
        b.iter(|| black_box(params.split(black_box(&data))))
    });
    g.bench_function("blake3/16MiB", |b| {
        b.iter(|| {
            ranges
                .iter()
                .map(|r| ChunkId::of(&data[r.clone()]))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("fastcdc+blake3/16MiB", |b| {
        b.iter(|| {
            params
                .split(black_box(&data))
                .into_iter()
                .map(|r| ChunkId::of(&data[r]))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- 2. codec

fn bench_codec(c: &mut Criterion) {
    let level = Compression::default().level;
    let mut r = Rng(12);
    let old = r.text_bytes(256 * KIB);
    // The new version: 5 lines replaced by new ones.
    let mut lines: Vec<Vec<u8>> = old
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    for _ in 0..5 {
        let at = r.index(lines.len());
        let mut line = Vec::new();
        r.text_line(&mut line);
        lines[at] = line;
    }
    let new: Vec<u8> = lines.concat();
    let raw_len = new.len() as u32;
    let full = codec_compress(level, &new).expect("compress");
    let d = delta::encode(&old, &new);
    let deltified = codec_compress(level, &d).expect("compress delta");
    assert_eq!(codec_decode(&full, raw_len, None).expect("decode"), new);
    assert_eq!(
        codec_decode(&deltified, raw_len, Some(&old)).expect("decode delta"),
        new
    );
    eprintln!(
        "codec: {} plain bytes, zstd-{level} {} bytes, delta {} bytes, zstd(delta) {} bytes",
        new.len(),
        full.len(),
        d.len(),
        deltified.len()
    );

    let mut g = group(c, "codec");
    g.throughput(Throughput::Bytes(new.len() as u64));
    g.bench_function("compress/full/256KiB", |b| {
        b.iter(|| codec_compress(level, black_box(&new)).expect("compress"))
    });
    g.bench_function("compress/delta/256KiB", |b| {
        b.iter(|| {
            let d = delta::encode(black_box(&old), black_box(&new));
            codec_compress(level, &d).expect("compress")
        })
    });
    g.bench_function("delta_encode_only/256KiB", |b| {
        b.iter(|| delta::encode(black_box(&old), black_box(&new)))
    });
    g.bench_function("decode/full/256KiB", |b| {
        b.iter(|| codec_decode(black_box(&full), raw_len, None).expect("decode"))
    });
    g.bench_function("decode/delta/256KiB", |b| {
        b.iter(|| codec_decode(black_box(&deltified), raw_len, Some(&old)).expect("decode"))
    });
    g.finish();
}

// ------------------------------------------------- 3. pack write, 4. index

/// A small encoded chunk: what a put of a small blob appends to a pack.
struct Entry {
    id: ChunkId,
    oid: ObjectId,
    raw_len: u32,
    stored: Vec<u8>,
}

fn small_entries(n: usize) -> Vec<Entry> {
    let level = Compression::default().level;
    let mut r = Rng(13);
    (0..n)
        .map(|i| {
            let len = 200 + r.index(4 * KIB);
            let data = if i % 2 == 0 {
                r.text_bytes(len)
            } else {
                r.bytes(len)
            };
            Entry {
                id: ChunkId::of(&data),
                oid: git_oid(ObjectKind::Blob, &data),
                raw_len: data.len() as u32,
                stored: codec_compress(level, &data).expect("compress"),
            }
        })
        .collect()
}

fn bench_pack_write(c: &mut Criterion, entries: &[Entry]) {
    let stored: u64 = entries.iter().map(|e| e.stored.len() as u64).sum();
    let mut g = group(c, "pack_write");
    g.throughput(Throughput::Bytes(stored));
    g.bench_function(format!("{}_entries+trailer+fsync", entries.len()), |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("tempdir"),
            |dir| {
                let mut w =
                    PackWriter::create(dir.path(), PackKind::Data, repovault::pack::VERSION)
                        .expect("create");
                for e in entries {
                    w.append(e.id, e.raw_len, None, &e.stored).expect("append");
                    w.add_object(ObjectRecord {
                        oid: e.oid,
                        kind: ObjectKind::Blob,
                        size: u64::from(e.raw_len),
                        chunks: vec![e.id],
                    });
                }
                let finished = w.finish().expect("finish");
                (dir, finished)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn bench_index_insert(c: &mut Criterion, entries: &[Entry]) {
    // One pack whose every fourth chunk is a delta against the chunk before it
    // (the base lookup is a subquery of the insert).
    let mut offset = 16;
    let mut records = Vec::with_capacity(entries.len());
    let mut chunks = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let base = (i % 4 == 3).then(|| entries[i - 1].id);
        records.push(EntryRecord {
            id: e.id,
            offset,
            stored_len: e.stored.len() as u32,
            raw_len: e.raw_len,
            base,
        });
        chunks.push(NewChunk {
            pack: 0,
            id: e.id,
            offset,
            stored_len: e.stored.len() as u32,
            raw_len: e.raw_len,
            base,
            depth: u32::from(base.is_some()),
        });
        offset += e.stored.len() as u64;
    }
    let packs = [FinishedPack {
        name: hex_name(b"index_insert"),
        kind: PackKind::Data,
        size: offset + 56,
        entries: records,
        objects: entries
            .iter()
            .map(|e| ObjectRecord {
                oid: e.oid,
                kind: ObjectKind::Blob,
                size: u64::from(e.raw_len),
                chunks: vec![e.id],
            })
            .collect(),
    }];

    let mut g = group(c, "index_insert");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function(format!("{}_objects+chunks", entries.len()), |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let index = Index::create(&dir.path().join("index.sqlite")).expect("index");
                (dir, index)
            },
            |(dir, mut index)| {
                index
                    .commit_packs(&packs, &chunks, 1_700_000_000)
                    .expect("commit_packs");
                (dir, index)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn hex_name(seed: &[u8]) -> String {
    ChunkId::of(seed).to_hex()
}

// ------------------------------------------------- the generated repository

const FILES: usize = 40;
const COMMITS: usize = 400;

/// A hermetic `git` command in `dir`: no user or system configuration.
fn data_cmd(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("data {}\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.push(b'\n');
}

/// The `git fast-import` stream of the generated history.
fn history_stream() -> Vec<u8> {
    const DIRS: [&str; 4] = ["src", "docs", "lib", "tests"];
    let mut r = Rng(14);
    let mut files: Vec<(String, Vec<Vec<u8>>)> = (0..FILES)
        .map(|i| {
            let lines = (0..100 + r.index(500))
                .map(|_| {
                    let mut l = Vec::new();
                    r.text_line(&mut l);
                    l
                })
                .collect();
            (format!("{}/file{i:02}.txt", DIRS[i % DIRS.len()]), lines)
        })
        .collect();
    let mut out = Vec::new();
    for c in 0..COMMITS {
        let changed: Vec<usize> = if c == 0 {
            (0..FILES).collect()
        } else {
            // 1-3 files, a few line edits each: replace, insert or delete.
            let picked: Vec<usize> = (0..1 + r.index(3)).map(|_| r.index(FILES)).collect();
            for &f in &picked {
                let lines = &mut files[f].1;
                for _ in 0..1 + r.index(4) {
                    let at = r.index(lines.len());
                    let mut l = Vec::new();
                    r.text_line(&mut l);
                    match r.index(3) {
                        0 => lines[at] = l,
                        1 => lines.insert(at, l),
                        _ if lines.len() > 10 => {
                            lines.remove(at);
                        }
                        _ => lines.push(l),
                    }
                }
            }
            picked
        };
        out.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{}\ncommitter Bench <bench@example.com> {} +0000\n",
                c + 1,
                1_600_000_000 + c * 3600
            )
            .as_bytes(),
        );
        data_cmd(&mut out, format!("change {c}\n").as_bytes());
        for f in changed {
            let (path, lines) = &files[f];
            out.extend_from_slice(format!("M 100644 inline {path}\n").as_bytes());
            data_cmd(&mut out, &lines.concat());
        }
        out.push(b'\n');
    }
    out.extend_from_slice(
        format!(
            "tag v1\nfrom :{}\ntagger Bench <bench@example.com> 1700000000 +0000\n",
            COMMITS / 2
        )
        .as_bytes(),
    );
    data_cmd(&mut out, b"release 1\n");
    out
}

/// Generates the bare repository `dir/source.git`; returns its path and the
/// path of its one pack's `.idx`.
fn generate_repo(dir: &Path) -> (PathBuf, PathBuf) {
    let repo = dir.join("source.git");
    let path = repo.to_str().expect("utf-8");
    git::git(dir, &["init", "-q", "--bare", "-b", "main", path]);
    git::fast_import(&repo, &history_stream());
    git::git(&repo, &["repack", "-adfq"]);
    let packs: Vec<PathBuf> = std::fs::read_dir(repo.join("objects/pack"))
        .expect("pack dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert_eq!(packs.len(), 1, "one pack after repack: {packs:?}");
    let idx = packs.into_iter().next().expect("one pack");
    (repo, idx)
}

// ---------------------------------------------------------------- 5. ingest

/// What the generated pack holds, as git counts it (setup, not timed).
#[derive(Debug, Default, Clone, Copy)]
struct PackStats {
    objects: u64,
    bytes: u64,
    deltas: u64,
}

fn pack_stats(repo: &Path) -> PackStats {
    let out = git::git(
        repo,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectsize) %(deltabase)",
        ],
    );
    let mut st = PackStats::default();
    for line in out.lines() {
        let (size, base) = line.split_once(' ').expect("size and delta base");
        st.objects += 1;
        st.bytes += size.parse::<u64>().expect("object size");
        st.deltas += u64::from(base.bytes().any(|b| b != b'0'));
    }
    st
}

/// `sync::ingest::ingest_packs` of `packs` through a writer of `store`
/// (`trusted`: the pack counts as verified by this fetch), then the index
/// commit when `commit`; returns the objects decoded.
fn ingest(store: &Store, packs: &[PathBuf], trusted: bool, commit: bool) -> u64 {
    let mut w = store.writer(Duration::from_secs(10)).expect("writer");
    let verified = trusted.then(|| packs[0].as_path());
    let got = repovault::sync::ingest::ingest_packs(
        &mut w,
        packs,
        verified,
        &AtomicBool::new(false),
        &repovault::progress::NoProgress,
    )
    .expect("ingest");
    if commit {
        w.commit().expect("commit");
    }
    got.objects_seen
}

fn bench_ingest(c: &mut Criterion, idx: &Path, stats: PackStats) {
    let mut g = group(c, "ingest");
    g.throughput(Throughput::Bytes(stats.bytes));
    let n = stats.objects;
    let packs = [idx.to_owned()];
    // Decoding as sync does it, every object already known: a re-fetched or
    // left-over pack.
    let dir = tempfile::tempdir().expect("tempdir");
    let known = Store::init(&dir.path().join("store"), InitOptions::default()).expect("init");
    assert_eq!(ingest(&known, &packs, true, true), n);
    for (name, trusted) in [("trusted", true), ("checked", false)] {
        g.bench_function(format!("ingest_packs/known/{name}/{n}_objects"), |b| {
            b.iter(|| assert_eq!(ingest(&known, &packs, trusted, false), n))
        });
    }
    // The whole ingest of a freshly fetched pack: decode, put_verified
    // (chunk, blake3, zstd of git's deltas, packs, fsync), index commit.
    g.bench_function(format!("ingest_packs/fresh_store/{n}_objects"), |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store =
                    Store::init(&dir.path().join("store"), InitOptions::default()).expect("init");
                (dir, store)
            },
            |(dir, store)| {
                assert_eq!(ingest(&store, &packs, true, true), n);
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

// --------------------------------------------------------------- 6. restore

fn bench_restore(c: &mut Criterion, repo: &Path, decoded: PackStats) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::init(&root, InitOptions::default()).expect("init");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let source =
        Source::parse(repo.to_str().expect("utf-8"), Some("bench/phases"), None).expect("source");
    let writer = Mutex::new(store.writer(Duration::from_secs(10)).expect("writer"));
    let report = repovault::sync::sync_repo(
        &store,
        &writer,
        &source,
        &SyncOptions {
            cache,
            allow_incomplete: false,
        },
        &AtomicBool::new(false),
        &repovault::progress::NoProgress,
    )
    .expect("sync");
    writer
        .into_inner()
        .expect("writer lock")
        .commit()
        .expect("commit");
    let snap = store
        .with_index(|i| i.snapshots(None))
        .expect("snapshots")
        .pop()
        .expect("a snapshot");
    drop(store);
    let check = tempfile::tempdir().expect("tempdir");
    let restored = repovault::restore::restore(
        &Store::open(&root).expect("open"),
        &snap,
        &check.path().join("restored.git"),
        RestoreOptions::default(),
        &AtomicBool::new(false),
    )
    .expect("restore");
    eprintln!(
        "restore: snapshot {} of {} refs, {} objects synced; restore writes {} objects ({} deltas), pack {} bytes",
        &snap.id[..12],
        report.refs,
        report.new_objects,
        restored.objects,
        restored.deltas,
        restored.pack_bytes
    );

    let mut g = group(c, "restore");
    g.throughput(Throughput::Bytes(decoded.bytes));
    g.bench_function(format!("fresh_dest/{}_objects", decoded.objects), |b| {
        b.iter_batched(
            || {
                let dest = tempfile::tempdir().expect("tempdir");
                // A fresh handle: no warm chunk cache from earlier iterations.
                (dest, Store::open(&root).expect("open"))
            },
            |(dest, store)| {
                let r = repovault::restore::restore(
                    &store,
                    &snap,
                    &dest.path().join("restored.git"),
                    RestoreOptions::default(),
                    &AtomicBool::new(false),
                )
                .expect("restore");
                (dest, store, r)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_chunk(&mut c);
    bench_codec(&mut c);
    let entries = small_entries(10_000);
    bench_pack_write(&mut c, &entries);
    bench_index_insert(&mut c, &entries);
    drop(entries);

    let start = Instant::now();
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let (repo, idx) = generate_repo(repo_dir.path());
    let decoded = pack_stats(&repo);
    eprintln!(
        "generated repository: {} commits, {} objects ({} deltas in the pack), {} bytes, pack {} bytes, in {:.1?}",
        COMMITS,
        decoded.objects,
        decoded.deltas,
        decoded.bytes,
        std::fs::metadata(idx.with_extension("pack"))
            .map(|m| m.len())
            .unwrap_or(0),
        start.elapsed()
    );
    bench_ingest(&mut c, &idx, decoded);
    bench_restore(&mut c, &repo, decoded);
    c.final_summary();
}
