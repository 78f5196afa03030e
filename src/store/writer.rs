//! Writing the store: [`Writer`] holds the write lock, chunks, hashes and
//! compresses objects in parallel, appends them to open packs, and commits
//! the packs to the index in one transaction once they are durable.

use super::{codec, Error, NewObject, Store, WriteStats};
use crate::chunk::ChunkId;
use crate::index::{self, Index, NewChunk};
use crate::lock::WriteLock;
use crate::pack::{ObjectRecord, PackKind, PackWriter};
use crate::{delta, git_oid};
use gix::ObjectId;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

struct Pending {
    depth: u32,
    kind: PackKind,
    offset: u64,
    stored_len: u32,
    raw_len: u32,
    base: Option<ChunkId>,
}

/// A pack also closes at this many chunk and object records, whatever its
/// size: what the writer remembers until a pack is committed grows with the
/// records (about 0.8 KiB each), and packs of small deltas (trees, commits,
/// about 100 bytes each) would otherwise hold 300,000 of them.
const PACK_MAX_RECORDS: usize = 100_000;

/// Adds objects to the store. Holds the write lock until dropped.
///
/// Objects become visible to readers when [`Writer::commit`] returns (or
/// earlier, whenever a pack fills up). A writer dropped without `commit`
/// discards what it had not yet committed.
pub struct Writer<'s> {
    store: &'s Store,
    _lock: WriteLock,
    index: Index,
    open: [Option<PackWriter>; 2],
    pending_chunks: HashMap<ChunkId, Pending>,
    pending_order: Vec<(PackKind, NewChunk)>,
    /// Pending objects and, for single-chunk ones, their chunk.
    pending_objects: HashMap<ObjectId, Option<ChunkId>>,
    stats: WriteStats,
}

struct Prepared {
    obj: NewObject,
    ranges: Vec<std::ops::Range<usize>>,
    ids: Vec<ChunkId>,
}

struct Job {
    obj: usize,
    chunk: usize,
    base: Option<(ChunkId, u32)>,
    base_plain: Option<Arc<Vec<u8>>>,
}

fn slot(kind: PackKind) -> usize {
    match kind {
        PackKind::Tree => 0,
        PackKind::Data => 1,
    }
}

impl<'s> Writer<'s> {
    pub(super) fn new(store: &'s Store, lock: WriteLock, index: Index) -> Self {
        Writer {
            store,
            _lock: lock,
            index,
            open: [None, None],
            pending_chunks: HashMap::new(),
            pending_order: Vec::new(),
            pending_objects: HashMap::new(),
            stats: WriteStats::default(),
        }
    }

    /// The store this writer writes to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// What this writer has added so far.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// True when the object is stored or pending in this writer.
    pub fn contains(&self, oid: &ObjectId) -> Result<bool, Error> {
        Ok(self.pending_objects.contains_key(oid) || self.index.has_object(oid)?)
    }

    /// The chunk id and delta depth of `oid` when it is a single-chunk object
    /// that is stored, pending, or earlier in the current batch.
    fn resolve_base(
        &self,
        oid: &ObjectId,
        batch: &HashMap<ObjectId, (ChunkId, u32, usize)>,
    ) -> Result<Option<(ChunkId, u32)>, Error> {
        if let Some(&(id, depth, _)) = batch.get(oid) {
            return Ok(Some((id, depth)));
        }
        let chunk = match self.pending_objects.get(oid) {
            Some(None) => return Ok(None),
            Some(Some(id)) => Some(*id),
            None => None,
        };
        if let Some(id) = chunk {
            if let Some(p) = self.pending_chunks.get(&id) {
                return Ok(Some((id, p.depth)));
            }
            return Ok(self.index.chunk_by_hash(&id)?.map(|r| (id, r.depth)));
        }
        match self.index.object(oid)? {
            Some(o) if o.nchunks == 1 => Ok(self.index.chunk(o.chunk)?.map(|r| (r.id, r.depth))),
            _ => Ok(None),
        }
    }

    /// Plain bytes of a stored or pending chunk (to compute a delta against it).
    fn plain_of(&mut self, id: &ChunkId) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(p) = self.pending_chunks.get(id) {
            let (kind, offset, stored_len, raw_len, base) =
                (p.kind, p.offset, p.stored_len, p.raw_len, p.base);
            let w = self.open[slot(kind)]
                .as_mut()
                .expect("pending chunks live in an open pack");
            let stored = w.read_back(offset, stored_len)?;
            let w_path = w.path().to_owned();
            let base_plain = match base {
                Some(b) => Some(self.plain_of(&b)?),
                None => None,
            };
            let plain = codec::decode(&stored, raw_len, base_plain.as_deref().map(|b| &b[..]))
                .map_err(|reason| Error::ChunkDamaged {
                    chunk: *id,
                    pack: w_path.display().to_string(),
                    offset,
                    reason: reason.to_string(),
                })?;
            return Ok(Arc::new(plain));
        }
        let row = self
            .index
            .chunk_by_hash(id)?
            .ok_or_else(|| index::Error::Corrupt {
                path: self.index.path().to_owned(),
                reason: format!("chunk {id} vanished"),
            })?;
        self.store.chunk_plain(row.rowid)
    }

    /// Puts a batch of objects. Objects already stored are skipped; the others
    /// are checked against their ids, chunked, hashed and compressed in
    /// parallel, then appended to the open packs.
    ///
    /// # Errors
    /// [`Error::OidMismatch`] when an object's content does not match its id (nothing of
    /// the batch is stored then), I/O and index errors.
    pub fn put(&mut self, objects: Vec<NewObject>) -> Result<(), Error> {
        self.put_inner(objects, true)
    }

    /// Like [`Writer::put`] for objects whose content the caller has already
    /// checked against their ids (sync decodes packs with gix, which hashes
    /// every object against the pack index): saves a second SHA-1 of every object.
    pub fn put_verified(&mut self, objects: Vec<NewObject>) -> Result<(), Error> {
        self.put_inner(objects, false)
    }

    fn put_inner(&mut self, objects: Vec<NewObject>, check_oids: bool) -> Result<(), Error> {
        let mut seen = HashSet::new();
        let mut fresh = Vec::with_capacity(objects.len());
        for o in objects {
            if !seen.insert(o.oid)
                || self.pending_objects.contains_key(&o.oid)
                || self.index.has_object(&o.oid)?
            {
                continue;
            }
            fresh.push(o);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let chunker = self.store.config.chunker;
        let mut prepared: Vec<Prepared> = fresh
            .into_par_iter()
            .map(|obj| {
                if check_oids {
                    let actual = git_oid(obj.kind, &obj.data);
                    if actual != obj.oid {
                        return Err(Error::OidMismatch {
                            oid: obj.oid,
                            kind: obj.kind,
                            actual,
                        });
                    }
                }
                let ranges = chunker.split(&obj.data);
                let ids = ranges
                    .iter()
                    .map(|r| ChunkId::of(&obj.data[r.clone()]))
                    .collect();
                Ok(Prepared { obj, ranges, ids })
            })
            .collect::<Result<_, _>>()?;

        // Decide, in order, which chunks are new and what they are a delta against.
        let max_depth = self.store.config.max_delta_depth;
        let mut planned: HashSet<ChunkId> = HashSet::new();
        let mut batch: HashMap<ObjectId, (ChunkId, u32, usize)> = HashMap::new();
        let mut jobs = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            let mut depth_of_single = 0;
            for (j, id) in p.ids.iter().enumerate() {
                if planned.contains(id)
                    || self.pending_chunks.contains_key(id)
                    || self.index.chunk_by_hash(id)?.is_some()
                {
                    continue;
                }
                planned.insert(*id);
                let mut job = Job {
                    obj: i,
                    chunk: j,
                    base: None,
                    base_plain: None,
                };
                if let (1, Some(b)) = (p.ids.len(), &p.obj.base) {
                    if let Some((bid, depth)) = self.resolve_base(&b.oid, &batch)? {
                        if depth < max_depth && bid != *id {
                            job.base = Some((bid, depth + 1));
                            depth_of_single = depth + 1;
                            // Without a delta we compute one; an untrusted caller's delta is checked.
                            if b.delta.is_none() || check_oids {
                                job.base_plain = Some(match batch.get(&b.oid) {
                                    Some(&(_, _, k)) => Arc::new(prepared[k].obj.data.clone()),
                                    None => self.plain_of(&bid)?,
                                });
                            }
                        }
                    }
                }
                jobs.push(job);
            }
            if p.ids.len() == 1 {
                batch.insert(p.obj.oid, (p.ids[0], depth_of_single, i));
            }
        }

        // Encode (delta + zstd) in parallel.
        let level = self.store.config.compression.level;
        let encoded: Vec<(Vec<u8>, Option<(ChunkId, u32)>)> = jobs
            .par_iter()
            .map(|job| {
                let p = &prepared[job.obj];
                let plain = &p.obj.data[p.ranges[job.chunk].clone()];
                if let Some(base) = job.base {
                    let computed;
                    let delta: &[u8] = match (
                        &p.obj.base.as_ref().and_then(|b| b.delta.as_deref()),
                        &job.base_plain,
                    ) {
                        (Some(d), Some(bp)) => {
                            let mut out = Vec::with_capacity(plain.len());
                            if delta::apply(bp, d, &mut out).is_ok() && out == plain {
                                d
                            } else {
                                tracing::warn!(oid = %p.obj.oid, "the delta given does not produce the object: computing one");
                                computed = delta::encode(bp, plain);
                                &computed
                            }
                        }
                        (Some(d), None) => {
                            // Trusted source (gix checked the object): a cheap size sanity check.
                            if delta::header(d).map(|(_, r)| r as usize == plain.len()).unwrap_or(false) {
                                d
                            } else {
                                return codec::compress(level, plain).map(|s| (s, None));
                            }
                        }
                        (None, Some(bp)) => {
                            computed = delta::encode(bp, plain);
                            &computed
                        }
                        (None, None) => unreachable!("a delta job has a delta or a base"),
                    };
                    if delta.len() < plain.len() {
                        return codec::compress(level, delta).map(|s| (s, Some(base)));
                    }
                }
                codec::compress(level, plain).map(|s| (s, None))
            })
            .collect::<Result<_, codec::Error>>()
            .map_err(Error::Compress)?;

        // Append object by object; packs are closed only between objects.
        let mut jobs = jobs.into_iter().zip(encoded).peekable();
        for (i, p) in prepared.iter_mut().enumerate() {
            let kind = PackKind::for_object(p.obj.kind);
            while let Some((job, _)) = jobs.peek() {
                if job.obj != i {
                    break;
                }
                let (job, (stored, base)) = jobs.next().expect("peeked");
                let id = p.ids[job.chunk];
                let raw_len = p.ranges[job.chunk].len() as u32;
                let offset =
                    self.open_pack(kind)?
                        .append(id, raw_len, base.map(|b| b.0), &stored)?;
                let depth = base.map_or(0, |b| b.1);
                self.pending_chunks.insert(
                    id,
                    Pending {
                        depth,
                        kind,
                        offset,
                        stored_len: stored.len() as u32,
                        raw_len,
                        base: base.map(|b| b.0),
                    },
                );
                self.pending_order.push((
                    kind,
                    NewChunk {
                        pack: 0,
                        id,
                        offset,
                        stored_len: stored.len() as u32,
                        raw_len,
                        base: base.map(|b| b.0),
                        depth,
                    },
                ));
                self.stats.chunks += 1;
                self.stats.delta_chunks += u64::from(base.is_some());
                self.stats.stored_bytes += stored.len() as u64;
            }
            let size = p.obj.data.len() as u64;
            self.open_pack(kind)?.add_object(ObjectRecord {
                oid: p.obj.oid,
                kind: p.obj.kind,
                size,
                chunks: p.ids.clone(),
            });
            self.pending_objects
                .insert(p.obj.oid, (p.ids.len() == 1).then(|| p.ids[0]));
            self.stats.objects += 1;
            self.stats.raw_bytes += size;
            let target = self.store.config.pack_target_size;
            if self
                .open
                .iter()
                .flatten()
                .any(|w| w.len() >= target || w.records() >= PACK_MAX_RECORDS)
            {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// The open pack for chunks and records of `kind`, started if there is none.
    fn open_pack(&mut self, kind: PackKind) -> Result<&mut PackWriter, Error> {
        let w = &mut self.open[slot(kind)];
        if w.is_none() {
            *w = Some(PackWriter::create(
                &self.store.packs_dir(),
                kind,
                self.store.config.pack_version(),
            )?);
        }
        Ok(w.as_mut().expect("just opened"))
    }

    /// Closes the open packs (fsync, rename) and commits them to the index in
    /// one transaction. Objects put so far are durable afterwards.
    pub fn flush(&mut self) -> Result<(), Error> {
        let mut finished = Vec::new();
        let mut pack_of_kind = [usize::MAX; 2];
        for (s, w) in self.open.iter_mut().enumerate() {
            if let Some(w) = w.take() {
                if !w.is_empty() {
                    pack_of_kind[s] = finished.len();
                    finished.push(w.finish()?);
                }
            }
        }
        if finished.is_empty() {
            return Ok(());
        }
        crate::crash_point("packs-written");
        let chunks: Vec<NewChunk> = self
            .pending_order
            .drain(..)
            .map(|(kind, mut c)| {
                c.pack = pack_of_kind[slot(kind)];
                c
            })
            .collect();
        self.index
            .commit_packs(&finished, &chunks, jiff::Timestamp::now().as_second())?;
        crate::crash_point("index-committed");
        for p in &finished {
            tracing::debug!(pack = %p.name, bytes = p.size, chunks = p.entries.len(), objects = p.objects.len(), "pack committed");
        }
        self.stats.packs += finished.len() as u64;
        self.stats.pack_bytes += finished.iter().map(|p| p.size).sum::<u64>();
        self.pending_chunks.clear();
        self.pending_objects.clear();
        Ok(())
    }

    /// Flushes and returns what this writer added. The lock is released when
    /// the writer is dropped.
    pub fn commit(&mut self) -> Result<WriteStats, Error> {
        self.flush()?;
        self.index.checkpoint();
        Ok(self.stats)
    }

    /// The writer's own index connection (for snapshot records written under the lock).
    pub fn index(&mut self) -> &mut Index {
        &mut self.index
    }
}
