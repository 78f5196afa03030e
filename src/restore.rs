//! Restore: rebuild a bare git repository exactly as a snapshot recorded it.
//!
//! The snapshot's reachable closure is walked through the store (commits,
//! trees and tags are read and parsed; blobs only looked up). Objects are
//! read back with every chunk's blake3 and every object's git id checked
//! (in parallel), and written as one pack: an object stored as a git delta
//! against another object of the set is written as that delta (REF_DELTA),
//! the rest in full. Since every id is known and checked, the pack's index is
//! written directly (as git's pack-objects does), without re-reading the pack.
//! The refs are written as `packed-refs` plus `HEAD`. All of it happens in a
//! temporary directory beside the destination, renamed into place at the end,
//! so a failed restore leaves nothing at the destination.

pub mod push;

use crate::durable::{self, TempFile};
use crate::snapshot::Snapshot;
use crate::store::{self, Store};
use crate::{gitpack, index, ObjectKind};
use gix::ObjectId;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Errors of restore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot matches.
    #[error("{0}")]
    NoSnapshot(String),
    /// The destination cannot be used.
    #[error("destination {path}: {reason}")]
    Destination {
        /// The destination.
        path: PathBuf,
        /// Why not, and what to do.
        reason: String,
    },
    /// Objects the snapshot needs are missing or damaged.
    #[error("snapshot {snapshot} cannot be restored: {count} object(s) missing or damaged: {first} (use --partial to restore what is intact)")]
    Damaged {
        /// The snapshot.
        snapshot: String,
        /// How many objects.
        count: usize,
        /// The first problem, fully described.
        first: String,
    },
    /// Writing the repository failed.
    #[error("writing the restored repository failed: {0}")]
    Write(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// Interrupted (Ctrl-C) before the repository was complete.
    #[error("interrupted")]
    Interrupted,
}

/// Which snapshot to restore.
#[derive(Debug, Clone)]
pub enum Selector {
    /// By id or a unique prefix of it.
    Id(String),
    /// The newest taken at or before this time.
    At(jiff::Timestamp),
    /// The newest.
    Latest,
}

/// Parses `--at`: a time with a zone (`2026-12-02T21:09:21Z`,
/// `2026-12-02T22:09:21+01:00`, `2026-12-02T22:09:21[Europe/Paris]`), a date and
/// time without one (`2026-12-02 21:09:21.123456`: UTC, with its fraction of a
/// second), or a date alone (`2026-12-02`: the end of that day, UTC). Anything
/// else is an error naming the accepted forms.
///
/// # Errors
/// A one-line message for text that is not one of these forms.
pub fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    use jiff::fmt::temporal::Pieces;
    use jiff::tz::TimeZone;
    const FORMS: &str = "give an RFC 3339 time (2026-12-02T21:09:21Z, 2026-12-02T22:09:21+01:00), a date and time without a zone (UTC: 2026-12-02 21:09:21.123456, as `snapshots` prints it) or a date (2026-12-02: the end of that day, UTC)";
    let text = s.trim();
    let bad = |e: &dyn std::fmt::Display| format!("{s:?} is not a time ({e}): {FORMS}");
    let pieces = Pieces::parse(text).map_err(|e| bad(&e))?;
    if pieces.time_zone_annotation().is_some() {
        return text
            .parse::<jiff::Zoned>()
            .map(|z| z.timestamp())
            .map_err(|e| bad(&e));
    }
    if pieces.offset().is_some() {
        return text.parse::<jiff::Timestamp>().map_err(|e| bad(&e));
    }
    let civil = match pieces.time() {
        Some(t) => pieces.date().to_datetime(t),
        None => pieces.date().at(23, 59, 59, 999_999_999),
    };
    civil
        .to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| bad(&e))
}

/// Picks a snapshot of `repo` (whose snapshots are given oldest first).
pub fn select(snapshots: &[Snapshot], repo: &str, sel: &Selector) -> Result<Snapshot, Error> {
    match sel {
        Selector::Latest => snapshots.last().cloned().ok_or_else(|| Error::NoSnapshot(format!("{repo} has no snapshot"))),
        Selector::At(t) => snapshots
            .iter()
            .rev()
            .find(|s| s.time <= *t)
            .cloned()
            .ok_or_else(|| Error::NoSnapshot(format!("{repo} has no snapshot taken at or before {t}: see `repovault snapshots --repo {repo}`"))),
        Selector::Id(prefix) => {
            let p = prefix.to_lowercase();
            let hits: Vec<_> = snapshots.iter().filter(|s| s.id.starts_with(&p)).collect();
            match hits.len() {
                1 => Ok(hits[0].clone()),
                0 => Err(Error::NoSnapshot(format!("{repo} has no snapshot with id {prefix}: see `repovault snapshots --repo {repo}`"))),
                n => Err(Error::NoSnapshot(format!("snapshot id {prefix} is ambiguous ({n} snapshots match): give more digits"))),
            }
        }
    }
}

/// Options of a restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Allow an existing empty destination directory.
    pub force: bool,
    /// Restore what is intact instead of failing on missing or damaged objects.
    pub partial: bool,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: String,
    /// Its time.
    pub time: jiff::Timestamp,
    /// Repository name.
    pub repo: String,
    /// Where.
    pub destination: PathBuf,
    /// Objects written.
    pub objects: u64,
    /// Objects written as deltas.
    pub deltas: u64,
    /// Refs written.
    pub refs: u64,
    /// Bytes of the pack written.
    pub pack_bytes: u64,
    /// Objects missing or damaged (only with `partial`), with the reason.
    pub problems: Vec<String>,
    /// Refs not written because their target is missing (only with `partial`).
    pub skipped_refs: Vec<String>,
}

struct Node {
    oid: ObjectId,
    kind: ObjectKind,
    chunk: i64,
    single: bool,
}

/// Walks the snapshot's closure through the store (first tip first). Returns
/// the objects found (in walk order) and the problems (missing or damaged
/// objects); `None` when interrupted.
fn walk(
    store: &Store,
    snap: &Snapshot,
    interrupt: &AtomicBool,
) -> Result<Option<(Vec<Node>, Vec<(ObjectId, String)>)>, Error> {
    use crate::closure::{self, Damage, Event, Flow};
    let mut nodes = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut tips = snap.tips();
    tips.reverse();
    // Chunks are blake3-checked here; every object's git id is checked when
    // the written pack is indexed.
    let source = closure::StoreSource::new(store);
    let end = closure::walk(tips, &snap.missing, &source, &mut seen, interrupt, |e| {
        match e {
            Event::Found { oid, row } => nodes.push(Node {
                oid,
                kind: row.kind,
                chunk: row.chunk,
                single: row.nchunks == 1,
            }),
            Event::Missing { oid, listed } => {
                let why = if listed {
                    "was missing in the source when this (incomplete) snapshot was taken"
                } else {
                    "is not in the store"
                };
                problems.push((oid, format!("object {oid} {why}")));
            }
            Event::Damaged { oid, damage } => {
                let problem = match damage {
                    Damage::Parse(e) => format!("object {oid} cannot be parsed: {e}"),
                    Damage::Read(
                        e @ (store::Error::ChunkDamaged { .. }
                        | store::Error::ObjectDamaged { .. }
                        | store::Error::Pack(_)),
                    ) => e.to_string(),
                    Damage::Read(e) | Damage::Lookup(e) => return Err(Error::from(e)),
                };
                // Reading a found object failed: it is not restored after all.
                nodes.pop();
                problems.push((oid, problem));
            }
        }
        Ok(Flow::Continue)
    })?;
    Ok((end != closure::End::Interrupted).then_some((nodes, problems)))
}

fn check_destination(dest: &Path, force: bool) -> Result<(), Error> {
    let bad = |reason: &str| Error::Destination {
        path: dest.to_owned(),
        reason: reason.to_owned(),
    };
    match std::fs::metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(bad(&e.to_string())),
        Ok(m) if !m.is_dir() => Err(bad("exists and is a file: choose a new directory")),
        Ok(_) => {
            let empty = std::fs::read_dir(dest)
                .map_err(|e| bad(&e.to_string()))?
                .next()
                .is_none();
            if !empty {
                Err(bad("exists and is not empty: restore never writes into existing data; choose a new directory"))
            } else if !force {
                Err(bad(
                    "exists (empty): pass --force to restore into it, or choose a new directory",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Objects at least this large are sampled before compressing: data that does
/// not shrink (already compressed or random) is stored (deflate level 0),
/// which is many times faster than level 6 and hardly any larger.
const SAMPLE_FROM: usize = 64 << 10;
const SAMPLE: usize = 16 << 10;

thread_local! {
    /// One compressor per thread and level, reset between objects: creating
    /// one zeroes several hundred KiB, more than compressing a small object costs.
    static DEFLATE: std::cell::RefCell<Vec<(i32, gix::zlib::stream::deflate::Compress)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn deflate_with(level: i32, data: &[u8]) -> Result<Vec<u8>, Error> {
    use gix::zlib::stream::deflate::{Compress, FlushCompress};
    use gix::zlib::Status;
    DEFLATE.with(|cell| {
        let mut all = cell.borrow_mut();
        let pos = match all.iter().position(|(l, _)| *l == level) {
            Some(p) => p,
            None => {
                let c = gix::zlib::Compression::new(level)
                    .ok_or_else(|| Error::Write(format!("zlib level {level}")))?;
                all.push((level, Compress::new(c)));
                all.len() - 1
            }
        };
        let z = &mut all[pos].1;
        z.reset();
        // zlib's bound for stored blocks: 5 bytes per 16 KiB block plus header and checksum.
        let mut out = vec![0u8; data.len() + data.len() / 16_000 * 5 + 64];
        loop {
            // Where the stream stands: input consumed, output written so far.
            let (fed, produced) = (z.total_in() as usize, z.total_out() as usize);
            if produced == out.len() {
                out.resize(out.len() * 2, 0);
            }
            let st = z
                .compress(&data[fed..], &mut out[produced..], FlushCompress::Finish)
                .map_err(|e| Error::Write(format!("zlib: {e:#}")))?;
            if st == Status::StreamEnd {
                out.truncate(z.total_out() as usize);
                return Ok(out);
            }
            if z.total_out() as usize == produced && z.total_in() as usize == fed {
                out.resize(out.len() * 2, 0);
            }
        }
    })
}

/// Inputs up to this size are written as one stored deflate block, built by
/// hand: deflating them saves a few bytes at the price of resetting and
/// running a compressor (tree deltas, mostly ids, hardly shrink at all).
const STORE_UP_TO: usize = 128;

/// A zlib stream holding `data` in one stored block (`data.len()` < 64 KiB).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    debug_assert!(data.len() <= 0xffff);
    let len = data.len() as u16;
    let mut out = Vec::with_capacity(data.len() + 11);
    out.extend_from_slice(&[0x78, 0x01, 0x01]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// zlib-compresses one object for the restored pack: level 6 (git's default),
/// stored when tiny, or stored when a sample of a large object does not compress.
fn zlib(data: &[u8]) -> Result<Vec<u8>, Error> {
    if data.len() <= STORE_UP_TO {
        return Ok(zlib_stored(data));
    }
    if data.len() >= SAMPLE_FROM {
        let sample = &data[data.len() / 2..data.len() / 2 + SAMPLE];
        if deflate_with(1, sample)?.len() * 100 >= sample.len() * 97 {
            return deflate_with(0, data);
        }
    }
    deflate_with(6, data)
}

/// Restores `snap` into a new bare repository at `dest`.
///
/// # Errors
/// [`Error::Destination`] when `dest` is not new (or empty with `force`),
/// [`Error::Damaged`] when objects are missing or damaged (without `partial`).
pub fn restore(
    store: &Store,
    snap: &Snapshot,
    dest: &Path,
    opts: RestoreOptions,
    interrupt: &AtomicBool,
) -> Result<RestoreReport, Error> {
    restore_with_progress(
        store,
        snap,
        dest,
        opts,
        interrupt,
        &crate::progress::NoProgress,
    )
}

/// [`restore`], reporting its progress: "reading snapshot" (the walk), then
/// "restoring" (objects written of the total, and the pack's bytes so far).
///
/// # Errors
/// As [`restore`].
pub fn restore_with_progress(
    store: &Store,
    snap: &Snapshot,
    dest: &Path,
    opts: RestoreOptions,
    interrupt: &AtomicBool,
    progress: &dyn crate::progress::Progress,
) -> Result<RestoreReport, Error> {
    check_destination(dest, opts.force)?;
    let abs = std::path::absolute(dest).map_err(|e| Error::Destination {
        path: dest.to_owned(),
        reason: e.to_string(),
    })?;
    let parent = abs.parent().ok_or_else(|| Error::Destination {
        path: dest.to_owned(),
        reason: "has no parent directory".into(),
    })?;
    std::fs::create_dir_all(parent).map_err(|e| Error::Destination {
        path: parent.to_owned(),
        reason: e.to_string(),
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".repovault-restore-")
        .tempdir_in(parent)
        .map_err(|e| Error::Destination {
            path: parent.to_owned(),
            reason: e.to_string(),
        })?;

    let _read = store.read_session()?;
    let started = std::time::Instant::now();
    progress.begin("reading snapshot", None);
    let Some((nodes, mut problems)) = walk(store, snap, interrupt)? else {
        return Err(Error::Write("interrupted".into()));
    };
    crate::pause_point("restore-walked");
    tracing::debug!(
        objects = nodes.len(),
        ms = started.elapsed().as_millis() as u64,
        "snapshot walked"
    );
    let werr = |e: &dyn std::fmt::Display| Error::Write(format!("{e:#}"));

    // Single-chunk objects of the set by (kind, chunk): the bases a delta can name.
    let base_of: HashMap<(ObjectKind, i64), ObjectId> = nodes
        .iter()
        .filter(|n| n.single)
        .map(|n| ((n.kind, n.chunk), n.oid))
        .collect();

    // Read, check and encode every object (in parallel, in slices to bound memory).
    struct Encoded {
        oid: ObjectId,
        kind: gitpack::EntryKind,
        size: u64,
        compressed: Vec<u8>,
    }
    let full = |oid: ObjectId, o: store::Object| -> Result<Encoded, Error> {
        Ok(Encoded {
            oid,
            kind: gitpack::EntryKind::Base(o.kind),
            size: o.data.len() as u64,
            compressed: zlib(&o.data)?,
        })
    };
    let build = |n: &Node, written: &HashSet<ObjectId>| -> Result<Encoded, Error> {
        // Every chunk's blake3 and the object's git id are checked here.
        let o = store
            .get_with_delta(&n.oid, true)
            .map_err(|e| Error::Damaged {
                snapshot: snap.id.clone(),
                count: 1,
                first: e.to_string(),
            })?;
        if let Some((base_chunk, delta)) = &o.delta {
            if let Some(base) = base_of.get(&(o.kind, *base_chunk)) {
                // A delta whose base is not written (damaged, with --partial)
                // would be unresolvable: such objects are written in full.
                if *base != n.oid && written.contains(base) {
                    return Ok(Encoded {
                        oid: n.oid,
                        kind: gitpack::EntryKind::RefDelta(*base),
                        size: delta.len() as u64,
                        compressed: zlib(delta)?,
                    });
                }
            }
        }
        full(
            n.oid,
            store::Object {
                kind: o.kind,
                data: o.data,
            },
        )
    };

    // With --partial, find the damaged objects first so the pack's object count is exact.
    let mut damaged: HashSet<ObjectId> = problems.iter().map(|p| p.0).collect();
    if opts.partial {
        let more: Vec<(ObjectId, String)> = nodes
            .par_iter()
            .filter_map(|n| {
                store
                    .get_with_delta(&n.oid, true)
                    .err()
                    .map(|e| (n.oid, e.to_string()))
            })
            .collect();
        damaged.extend(more.iter().map(|p| p.0));
        problems.extend(more);
    } else if let Some((_, first)) = problems.first() {
        return Err(Error::Damaged {
            snapshot: snap.id.clone(),
            count: problems.len(),
            first: first.clone(),
        });
    }
    let nodes: Vec<&Node> = nodes.iter().filter(|n| !damaged.contains(&n.oid)).collect();
    // A delta whose base was dropped would be unresolvable: write those objects in full.
    let written: HashSet<ObjectId> = nodes.iter().map(|n| n.oid).collect();

    let repo_dir = tmp.path().join("repo.git");
    let repo = gix::init_bare(&repo_dir).map_err(|e| werr(&e))?;
    drop(repo);
    let pack_dir = repo_dir.join("objects/pack");
    let mut deltas = 0u64;
    let mut pack_bytes = 0u64;
    if !nodes.is_empty() {
        let file = std::io::BufWriter::with_capacity(
            1 << 20,
            TempFile::new_in(&pack_dir, ".pack", durable::USER).map_err(|e| werr(&e))?,
        );
        let count = u32::try_from(nodes.len())
            .map_err(|_| Error::Write(format!("{} objects do not fit one pack", nodes.len())))?;
        let mut w = gitpack::GitPackWriter::new(file, count).map_err(|e| werr(&e))?;
        progress.begin("restoring", Some(u64::from(count)));
        let (mut done, mut bytes) = (0u64, 0u64);
        for slice in nodes.chunks(1024) {
            if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let encoded: Vec<Encoded> = slice
                .par_iter()
                .map(|n| build(n, &written))
                .collect::<Result<_, Error>>()?;
            for e in encoded {
                if let gitpack::EntryKind::RefDelta(_) = e.kind {
                    deltas += 1;
                }
                w.add(e.oid, e.kind, e.size, &e.compressed)
                    .map_err(|e| werr(&e))?;
                done += 1;
                bytes += e.compressed.len() as u64;
            }
            progress.update(done, bytes);
        }
        let (file, sum, mut entries) = w.finish().map_err(|e| werr(&e))?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "pack written");
        let stem = pack_dir.join(format!("pack-{sum}"));
        // The pack first, then its index: git ignores a pack without an index.
        file.into_inner()
            .map_err(|e| werr(&e.into_error()))?
            .persist(&stem.with_extension("pack"))
            .map_err(|e| werr(&e))?;
        let mut idx = std::io::BufWriter::new(
            TempFile::new_in(&pack_dir, ".idx", durable::USER).map_err(|e| werr(&e))?,
        );
        gitpack::write_index(&mut idx, &mut entries, &sum).map_err(|e| werr(&e))?;
        idx.into_inner()
            .map_err(|e| werr(&e.into_error()))?
            .persist(&stem.with_extension("idx"))
            .map_err(|e| werr(&e))?;
        pack_bytes = std::fs::metadata(stem.with_extension("pack")).map_or(0, |m| m.len());
    }

    // Refs: packed-refs for direct refs, loose files for symbolic ones, HEAD.
    let mut skipped_refs = Vec::new();
    let mut packed = b"# pack-refs with: peeled fully-peeled sorted \n".to_vec();
    let mut refs_written = 0u64;
    let mut refs: Vec<_> = snap.refs.iter().filter(|r| r.name != b"HEAD").collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    for r in refs {
        if let Some(sym) = &r.symref {
            use std::os::unix::ffi::OsStrExt;
            if r.name.starts_with(b"/")
                || r.name
                    .split(|b| *b == b'/')
                    .any(|c| c.is_empty() || c == b".." || c == b".")
            {
                skipped_refs.push(r.name_lossy());
                continue;
            }
            let path = repo_dir.join(std::ffi::OsStr::from_bytes(&r.name));
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| werr(&e))?;
            }
            let mut content = b"ref: ".to_vec();
            content.extend_from_slice(sym);
            content.push(b'\n');
            durable::write_atomic(&path, &content, durable::USER).map_err(|e| werr(&e))?;
            refs_written += 1;
            continue;
        }
        let Some(target) = r.target else { continue };
        if !written.contains(&target) {
            skipped_refs.push(r.name_lossy());
            continue;
        }
        packed.extend_from_slice(target.to_string().as_bytes());
        packed.push(b' ');
        packed.extend_from_slice(&r.name);
        packed.push(b'\n');
        if let Some(p) = r.peeled {
            packed.extend_from_slice(format!("^{p}\n").as_bytes());
        }
        refs_written += 1;
    }
    durable::write_atomic(&repo_dir.join("packed-refs"), &packed, durable::USER)
        .map_err(|e| werr(&e))?;
    let head = match snap.head() {
        Some(h) => match (&h.symref, h.target) {
            (Some(s), _) => {
                let mut c = b"ref: ".to_vec();
                c.extend_from_slice(s);
                c.push(b'\n');
                c
            }
            (None, Some(t)) => format!("{t}\n").into_bytes(),
            (None, None) => b"ref: refs/heads/main\n".to_vec(),
        },
        None => b"ref: refs/heads/main\n".to_vec(),
    };
    durable::write_atomic(&repo_dir.join("HEAD"), &head, durable::USER).map_err(|e| werr(&e))?;
    // What gix::init_bare wrote (config, description, hooks) is not synced yet.
    sync_tree(&repo_dir).map_err(|e| werr(&e))?;

    // Move into place: rename(2) also replaces an empty directory.
    std::fs::rename(&repo_dir, &abs).map_err(|e| Error::Destination {
        path: dest.to_owned(),
        reason: e.to_string(),
    })?;
    let _ = durable::sync_dir(parent);
    Ok(RestoreReport {
        snapshot: snap.id.clone(),
        time: snap.time,
        repo: snap.repo.clone(),
        destination: abs,
        objects: nodes.len() as u64,
        deltas,
        refs: refs_written,
        pack_bytes,
        problems: problems.into_iter().map(|p| p.1).collect(),
        skipped_refs,
    })
}

/// fsyncs every file and directory below `dir`.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            std::fs::File::open(e.path())?.sync_all()?;
        }
    }
    durable::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn at_times_keep_their_time_and_default_to_utc() {
        let t = |s: &str| parse_time(s).map(|t| t.to_string());
        let ok = |s: &str| t(s).unwrap();
        assert_eq!(ok("2026-12-02 21:09:21"), "2026-12-02T21:09:21Z");
        assert_eq!(ok("2026-12-02T21:09:21"), "2026-12-02T21:09:21Z");
        assert_eq!(ok("2026-12-02 00:00"), "2026-12-02T00:00:00Z");
        assert_eq!(
            ok("2026-12-02 21:09:21.123456"),
            "2026-12-02T21:09:21.123456Z"
        );
        assert_eq!(ok("2026-12-02T21:09:21Z"), "2026-12-02T21:09:21Z");
        assert_eq!(ok("2026-12-02T22:09:21+01:00"), "2026-12-02T21:09:21Z");
        assert_eq!(ok("2026-12-02 22:09:21+01:00"), "2026-12-02T21:09:21Z");
        assert_eq!(ok("2026-12-02"), "2026-12-02T23:59:59.999999999Z");
        for bad in [
            "garbage",
            "",
            "2026-13-02",
            "2026-12-02 21:09:21 x",
            "yesterday",
        ] {
            let e = t(bad).unwrap_err();
            assert!(
                e.contains("is not a time") && !e.contains('\n'),
                "{bad:?}: {e}"
            );
        }
    }

    fn inflate(z: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut inf = gix::zlib::Inflate::default();
        let (st, used, written) = inf.once(z, &mut out).expect("valid zlib");
        assert_eq!(st, gix::zlib::Status::StreamEnd);
        assert_eq!((used, written), (z.len(), len));
        out
    }

    #[test]
    fn zlib_round_trips_small_text_and_random_data_with_one_compressor_per_thread() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut random = vec![0u8; 3 << 20];
        rng.fill_bytes(&mut random);
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of some text\n", i % 977).into_bytes())
            .collect();
        for _ in 0..2 {
            let small: Vec<u8> = (0..=STORE_UP_TO as u32).map(|i| (i * 7) as u8).collect();
            for data in [&b""[..], b"x", b"tree 123\0abc", &small, &text, &random] {
                let z = zlib(data).unwrap();
                assert_eq!(inflate(&z, data.len()), data);
                if data.len() == random.len() {
                    // Stored, not compressed: only block headers and the checksum added.
                    assert!(z.len() <= data.len() + data.len() / 16_000 * 5 + 64);
                }
                if data.len() == text.len() {
                    assert!(z.len() * 5 < data.len(), "text compresses: {}", z.len());
                }
            }
        }
    }
}
