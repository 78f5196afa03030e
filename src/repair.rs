//! Rebuild the index from the self-describing packs and the snapshot files.
//!
//! What can be recovered: every chunk whose stored bytes still decode to its
//! blake3 (a damaged pack is salvaged chunk by chunk; an object stays indexed
//! when all its chunks are intact and its content hashes to its git id), and
//! every snapshot from its JSON file. What cannot: damaged chunks (and the
//! deltas built on them, and the objects using them), packs whose trailer is
//! unreadable, snapshots whose file is gone (the old index's are named), the
//! repositories' last-sync status and error text (rebuilt empty), and the
//! `checked_at` times of unchanged syncs (each snapshot's file keeps the time
//! it was taken).

use crate::chunk::ChunkId;
use crate::index::{self, Index};
use crate::lock::{self, WriteLock};
use crate::pack::{self, PackContents};
use crate::snapshot::{self, Snapshot};
use crate::store::{self, codec, lag, INDEX_FILE, LOCK_FILE, PACKS_DIR, SNAPSHOTS_DIR};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors of repair.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is not a store.
    #[error(
        "{path} is not a repovault store (no {}): give the store's directory",
        store::CONFIG_FILE
    )]
    NotAStore {
        /// The path.
        path: PathBuf,
    },
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The lock.
    #[error(transparent)]
    Lock(#[from] lock::Error),
    /// The new index.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// Comparing the index with the files failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// What repair did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairReport {
    /// Where the old index was moved, if there was one.
    pub old_index: Option<PathBuf>,
    /// Packs indexed.
    pub packs: u64,
    /// Packs left out (damaged), with the reason.
    pub skipped_packs: Vec<String>,
    /// Chunks indexed.
    pub chunks: u64,
    /// Chunks dropped because their delta base is in no pack.
    pub dropped_chunks: u64,
    /// Objects indexed.
    pub objects: u64,
    /// Snapshots restored from their files.
    pub snapshots: u64,
    /// Snapshot files that could not be read.
    pub skipped_snapshots: Vec<String>,
    /// Damaged packs whose intact chunks were kept, with what was lost.
    pub salvaged_packs: Vec<String>,
    /// Chunks of damaged packs left out: their bytes no longer match their blake3.
    pub damaged_chunks: u64,
    /// Objects whose record lies in a damaged pack and that were left out
    /// (a chunk is damaged, or the content does not hash to the id).
    pub damaged_objects: Vec<String>,
    /// Snapshots the old index had whose file is gone: not recovered.
    pub lost_snapshots: Vec<String>,
}

impl RepairReport {
    /// True when something could not be recovered.
    pub fn lost_something(&self) -> bool {
        !self.skipped_packs.is_empty()
            || !self.skipped_snapshots.is_empty()
            || !self.salvaged_packs.is_empty()
            || !self.lost_snapshots.is_empty()
    }
}

/// Rebuilds `root/index.sqlite`; the old one (if any) is kept beside it.
pub fn repair_index(root: &Path, lock_wait: Duration) -> Result<RepairReport, Error> {
    if !root.join(store::CONFIG_FILE).is_file() {
        return Err(Error::NotAStore {
            path: root.to_owned(),
        });
    }
    let _lock = WriteLock::acquire(&root.join(LOCK_FILE), lock_wait, "repair-index")?;
    rebuild(root)
}

/// Before a writer (sync, forget, prune) opens the store: when the index
/// lags the store's files (see [`lag::FileState::lags`]), rebuilds it under
/// the write lock. Returns why and what the rebuild did, or `None` when the
/// index is current (or cannot be opened: the command then reports that).
pub fn catch_up(root: &Path, lock_wait: Duration) -> Result<Option<(String, RepairReport)>, Error> {
    let idx_path = root.join(INDEX_FILE);
    if !root.join(store::CONFIG_FILE).is_file() || !idx_path.is_file() {
        return Ok(None);
    }
    let lagging = || -> Result<Option<String>, Error> {
        let idx = Index::open(&idx_path)?;
        let state = lag::check(root, &idx)?;
        Ok(state.lags().then(|| state.describe()))
    };
    // Cheap and lock-free first: readers take no lock either.
    if !matches!(lagging(), Ok(Some(_))) {
        return Ok(None);
    }
    let _lock = WriteLock::acquire(&root.join(LOCK_FILE), lock_wait, "repair-index")?;
    let Some(reason) = lagging()? else {
        return Ok(None);
    };
    tracing::warn!("the index lags the store's files ({reason}): rebuilding it");
    Ok(Some((reason, rebuild(root)?)))
}

/// The snapshots an index knows, if it can be read at all.
fn old_snapshots(path: &Path) -> Vec<Snapshot> {
    match Index::open(path).and_then(|i| i.snapshots(None)) {
        Ok(v) => v,
        Err(e) => {
            tracing::info!("the old index cannot be read ({e}): its snapshots are not compared");
            Vec::new()
        }
    }
}

/// Rebuilds the index; the caller holds the write lock.
fn rebuild(root: &Path) -> Result<RepairReport, Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let mut report = RepairReport::default();
    let idx_path = root.join(INDEX_FILE);
    let stamp = jiff::Timestamp::now().as_second();
    let mut before = Vec::new();
    if idx_path.exists() {
        before = old_snapshots(&idx_path);
        let old = root.join(format!("{INDEX_FILE}.broken-{stamp}"));
        std::fs::rename(&idx_path, &old).map_err(io(&idx_path))?;
        for ext in ["-wal", "-shm"] {
            let side = root.join(format!("{INDEX_FILE}{ext}"));
            if side.exists() {
                std::fs::rename(
                    &side,
                    root.join(format!("{INDEX_FILE}.broken-{stamp}{ext}")),
                )
                .map_err(io(&side))?;
            }
        }
        report.old_index = Some(old);
    }
    let tmp = root.join(format!("{INDEX_FILE}.rebuilding"));
    let _ = std::fs::remove_file(&tmp);
    let mut index = Index::create(&tmp)?;

    let dir = root.join(PACKS_DIR);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack") && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut packs = Vec::new();
    let mut damaged: Vec<(usize, String)> = Vec::new();
    for n in names {
        let path = dir.join(&n);
        let stem = n.trim_end_matches(".pack").to_owned();
        let checked = pack::verify_checksum(&path)
            .and_then(|size| pack::read_contents(&path).map(|c| (size, c)));
        let reason = match checked {
            Ok((size, c)) if hex::encode(c.checksum) == stem => {
                packs.push((stem, size, c));
                continue;
            }
            Ok(_) => "its name does not match its checksum".to_owned(),
            Err(e) => e.to_string(),
        };
        // Damaged somewhere: keep what its trailer locates and still checks out.
        match pack::read_contents(&path) {
            Ok(c) => {
                damaged.push((packs.len(), reason));
                packs.push((stem, c.size, c));
            }
            Err(e) => report.skipped_packs.push(format!("{n}: {e}")),
        }
    }
    if !damaged.is_empty() {
        salvage(&dir, &mut packs, &damaged, &mut report);
    }
    report.packs = packs.len() as u64;
    report.chunks = packs.iter().map(|p| p.2.entries.len() as u64).sum();
    report.dropped_chunks = rebuild_from_packs(&mut index, &packs, stamp)?;
    report.chunks -= report.dropped_chunks.min(report.chunks);

    let sdir = root.join(SNAPSHOTS_DIR);
    let ids = snapshot::list_files(&sdir).map_err(|e| Error::Io {
        path: e.path().to_owned(),
        source: e.into_io(),
    })?;
    let mut snaps: Vec<Snapshot> = Vec::new();
    for id in ids {
        match snapshot::read_file(&sdir, &id) {
            Ok(s) => snaps.push(s),
            Err(e) => report.skipped_snapshots.push(e.to_string()),
        }
    }
    snaps.sort_by_key(|s| s.time);
    for s in &snaps {
        let repo = index.upsert_repo(&s.repo, &s.url, s.time.as_second())?;
        index.insert_snapshot(repo, s)?;
        report.snapshots += 1;
    }
    let now: HashSet<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
    for s in before.iter().filter(|s| !now.contains(s.id.as_str())) {
        report.lost_snapshots.push(format!(
            "snapshot {} of {} taken {}: the old index had it, but its file snapshots/{}.json is gone",
            s.short_id(),
            s.repo,
            s.time,
            s.id
        ));
    }
    report.objects = index.totals()?.objects;
    drop(index);
    std::fs::rename(&tmp, &idx_path).map_err(io(&idx_path))?;
    for ext in ["-wal", "-shm"] {
        let side = root.join(format!("{INDEX_FILE}.rebuilding{ext}"));
        let _ = std::fs::remove_file(side);
    }
    // SQLite synced the new index's commits; the renames need the directory synced.
    crate::durable::sync_dir(root).map_err(io(root))?;
    Ok(report)
}

/// Where a chunk can be read: (index into the packs, index of the entry).
type Locator = HashMap<ChunkId, (usize, usize)>;

struct Salvager<'a> {
    dir: &'a Path,
    packs: &'a [(String, u64, PackContents)],
    locate: Locator,
    damaged: HashSet<usize>,
    files: HashMap<usize, File>,
    /// Entries of damaged packs already checked: (pack, entry) -> plain bytes.
    checked: HashMap<(usize, usize), Option<Arc<Vec<u8>>>>,
}

impl Salvager<'_> {
    /// The plain bytes of entry `e` of pack `p`, if they decode to its blake3.
    fn entry_plain(&mut self, p: usize, e: usize, depth: u32) -> Option<Arc<Vec<u8>>> {
        if let Some(v) = self.checked.get(&(p, e)) {
            return v.clone();
        }
        // No store's delta chain is deeper: deeper is a damaged cycle.
        if depth > store::DELTA_DEPTH_LIMIT {
            return None;
        }
        let x = self.packs[p].2.entries[e].clone();
        let base = match x.base {
            Some(b) => Some(self.chunk_plain(&b, depth + 1)?),
            None => None,
        };
        let path = pack::pack_path(self.dir, &self.packs[p].0);
        if let std::collections::hash_map::Entry::Vacant(v) = self.files.entry(p) {
            v.insert(File::open(&path).ok()?);
        }
        let f = self.files.get(&p)?;
        let plain = pack::read_at(f, &path, x.offset, x.stored_len)
            .ok()
            .and_then(|stored| {
                codec::decode(&stored, x.raw_len, base.as_deref().map(|b| &b[..])).ok()
            })
            .filter(|plain| codec::check(plain, &x.id, x.raw_len).is_ok())
            .map(Arc::new);
        // Entries of intact packs are not remembered: their checksum vouches for them.
        if self.damaged.contains(&p) || plain.is_none() {
            self.checked.insert((p, e), plain.clone());
        }
        plain
    }

    /// The plain bytes of chunk `id` from wherever it lies.
    fn chunk_plain(&mut self, id: &ChunkId, depth: u32) -> Option<Arc<Vec<u8>>> {
        let (p, e) = *self.locate.get(id)?;
        self.entry_plain(p, e, depth)
    }
}

/// Keeps, of each damaged pack, the entries whose bytes decode to their
/// blake3 and the object records whose chunks all do and whose content hashes
/// to the object's id; records what was left out in `report`.
fn salvage(
    dir: &Path,
    packs: &mut [(String, u64, PackContents)],
    damaged: &[(usize, String)],
    report: &mut RepairReport,
) {
    let bad: HashSet<usize> = damaged.iter().map(|d| d.0).collect();
    // Intact copies first: a chunk is read from a damaged pack only when no intact one has it.
    let mut locate: Locator = HashMap::new();
    for pass in [false, true] {
        for (p, (_, _, c)) in packs.iter().enumerate() {
            if bad.contains(&p) != pass {
                continue;
            }
            for (e, x) in c.entries.iter().enumerate() {
                locate.entry(x.id).or_insert((p, e));
            }
        }
    }
    let mut keep: Vec<(usize, Vec<bool>, Vec<bool>)> = Vec::new();
    {
        let mut s = Salvager {
            dir,
            packs,
            locate,
            damaged: bad.clone(),
            files: HashMap::new(),
            checked: HashMap::new(),
        };
        for (p, _) in damaged {
            let entries: Vec<bool> = (0..s.packs[*p].2.entries.len())
                .map(|e| s.entry_plain(*p, e, 0).is_some())
                .collect();
            let objects: Vec<bool> = s.packs[*p]
                .2
                .objects
                .clone()
                .iter()
                .map(|o| {
                    let mut data = Vec::with_capacity(o.size as usize);
                    for c in &o.chunks {
                        match s.chunk_plain(c, 0) {
                            Some(plain) => data.extend_from_slice(&plain),
                            None => return false,
                        }
                    }
                    data.len() as u64 == o.size && crate::git_oid(o.kind, &data) == o.oid
                })
                .collect();
            keep.push((*p, entries, objects));
            // Plain bytes of this pack are not needed for the next one.
            s.checked.retain(|_, v| v.is_none());
        }
    }
    for ((p, entries, objects), (_, reason)) in keep.into_iter().zip(damaged) {
        let (name, _, c) = &mut packs[p];
        let (n_entries, n_objects) = (c.entries.len(), c.objects.len());
        let mut it = entries.iter();
        c.entries.retain(|_| *it.next().expect("one flag an entry"));
        let mut it = objects.iter();
        let mut lost = Vec::new();
        c.objects.retain(|o| {
            let k = *it.next().expect("one flag an object");
            if !k {
                lost.push(o.oid.to_string());
            }
            k
        });
        report.damaged_chunks += (n_entries - c.entries.len()) as u64;
        report.salvaged_packs.push(format!(
            "{name}.pack: {reason}: kept {} of its {n_entries} chunks and {} of its {n_objects} object records",
            c.entries.len(),
            c.objects.len()
        ));
        report.damaged_objects.extend(lost);
    }
}

/// Delta chains longer than this are cut (their depth counts from there):
/// only a damaged trailer makes one (no store allows a deeper chain), and
/// the walk must end.
const MAX_CHAIN: usize = store::DELTA_DEPTH_LIMIT as usize;

/// Fills an empty index from pack trailers, in one transaction. Chunks found
/// in several packs keep their first place; a delta whose base is in no pack
/// is dropped, and so are the deltas on it and the objects that need any of
/// them. Returns the number of chunks dropped that way.
fn rebuild_from_packs(
    index: &mut Index,
    packs: &[(String, u64, PackContents)],
    now: i64,
) -> Result<u64, index::Error> {
    index.rebuild(|tx| {
        let mut pack_ids = Vec::with_capacity(packs.len());
        for (name, size, c) in packs {
            let pid = tx.insert_pack(name, c.kind, *size, now)?;
            for x in &c.entries {
                tx.insert_chunk(pid, x)?;
            }
            pack_ids.push(pid);
        }
        // Bases: link every delta to its base, then compute depths.
        let is_delta: HashMap<(i64, u64), bool> = packs
            .iter()
            .zip(&pack_ids)
            .flat_map(|((_, _, c), pid)| {
                c.entries
                    .iter()
                    .map(|x| ((*pid, x.offset), x.base.is_some()))
            })
            .collect();
        for ((_, _, c), pid) in packs.iter().zip(&pack_ids) {
            for x in &c.entries {
                tx.link_base(*pid, x)?;
            }
        }
        // A delta entry whose base is nowhere cannot be decoded: drop it.
        let mut base_of: HashMap<i64, Option<i64>> = HashMap::new();
        let mut doomed: Vec<i64> = Vec::new();
        for c in tx.chunk_places()? {
            if is_delta.get(&(c.pack, c.offset)).copied().unwrap_or(false) && c.base.is_none() {
                doomed.push(c.rowid);
            } else {
                base_of.insert(c.rowid, c.base);
            }
        }
        // Deltas on dropped chunks are dropped too (repeat until stable).
        loop {
            let gone: HashSet<i64> = doomed.iter().copied().collect();
            let more: Vec<i64> = base_of
                .iter()
                .filter(|(_, b)| b.is_some_and(|b| gone.contains(&b)))
                .map(|(id, _)| *id)
                .collect();
            if more.is_empty() {
                break;
            }
            for id in more {
                base_of.remove(&id);
                doomed.push(id);
            }
        }
        // Delete dependents before their bases.
        for id in doomed.iter().rev() {
            tx.delete_chunk(*id)?;
        }
        for (id, d) in chain_depths(&base_of) {
            tx.set_depth(id, d)?;
        }
        for ((_, _, c), pid) in packs.iter().zip(&pack_ids) {
            tx.insert_object_records(&c.objects, *pid)?;
        }
        // An object with a chunk that is in no pack (or was dropped) cannot be read.
        tx.drop_unreadable_objects()?;
        Ok(doomed.len() as u64)
    })
}

/// The delta depth of every chunk that is a delta (a full chunk is 0 and not
/// listed), from each chunk's base; a chain is followed at most [`MAX_CHAIN`] links.
fn chain_depths(base_of: &HashMap<i64, Option<i64>>) -> Vec<(i64, u32)> {
    let mut depth: HashMap<i64, u32> = HashMap::new();
    let mut out = Vec::new();
    for &id in base_of.keys() {
        let mut chain = vec![id];
        let mut cur = id;
        let d0 = loop {
            if let Some(d) = depth.get(&cur) {
                break *d;
            }
            match base_of.get(&cur).copied().flatten() {
                Some(b) if chain.len() < MAX_CHAIN => {
                    chain.push(b);
                    cur = b;
                }
                _ => {
                    depth.insert(cur, 0);
                    chain.pop();
                    break 0;
                }
            }
        };
        let mut d = d0;
        while let Some(c) = chain.pop() {
            d += 1;
            depth.insert(c, d);
            out.push((c, d));
        }
    }
    out
}
