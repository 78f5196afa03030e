//! Reading the store: pack handles, the decoded-chunk cache, read sessions,
//! and the one path from a chunk's stored bytes to its checked plain bytes
//! ([`Store::chunk_plain`], which [`Store::get`] and [`Store::get_with_delta`]
//! build on).

use super::codec;
use super::{Error, Object, ObjectWithDelta, Store, INDEX_FILE, READERS_FILE};
use crate::index::{self, ChunkRow};
use crate::{delta, git_oid, lock, pack, ObjectKind};
use gix::ObjectId;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Decoded chunks kept in memory for reuse as delta bases.
const CHUNK_CACHE_BYTES: usize = 256 << 20;

pub(super) struct PackHandle {
    file: File,
    path: PathBuf,
    name: String,
}

pub(super) struct ChunkCache {
    lru: lru::LruCache<i64, Arc<Vec<u8>>>,
    bytes: usize,
}

impl ChunkCache {
    pub(super) fn new() -> Self {
        ChunkCache {
            lru: lru::LruCache::new(std::num::NonZeroUsize::new(1 << 16).expect("non-zero")),
            bytes: 0,
        }
    }
    fn get(&mut self, k: i64) -> Option<Arc<Vec<u8>>> {
        self.lru.get(&k).cloned()
    }
    fn put(&mut self, k: i64, v: Arc<Vec<u8>>) {
        if v.len() > CHUNK_CACHE_BYTES / 8 {
            return;
        }
        self.bytes += v.len();
        if let Some(old) = self.lru.put(k, v) {
            self.bytes -= old.len();
        }
        while self.bytes > CHUNK_CACHE_BYTES {
            match self.lru.pop_lru() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// A read transaction on the store's index; see [`Store::read_session`].
pub struct ReadSession<'s> {
    store: &'s Store,
    active: bool,
    // Dropped after the read transaction ends (fields drop after `drop`).
    _readers: Option<lock::ReadLock>,
}

impl Drop for ReadSession<'_> {
    fn drop(&mut self) {
        if self.active {
            self.store.with_index(|i| i.end_read());
        }
    }
}

/// Checks that `data` of `kind` hashes to `oid`.
fn check_git_oid(oid: &ObjectId, kind: ObjectKind, data: &[u8]) -> Result<(), Error> {
    let actual = git_oid(kind, data);
    if actual != *oid {
        return Err(Error::ObjectDamaged {
            oid: *oid,
            reason: format!("content hashes to {actual}"),
        });
    }
    Ok(())
}

impl Store {
    /// True when the object is in the store.
    pub fn contains(&self, oid: &ObjectId) -> Result<bool, Error> {
        Ok(self.with_index(|i| i.has_object(oid))?)
    }

    fn pack_handle(&self, rowid: i64) -> Result<Arc<PackHandle>, Error> {
        if let Some(h) = self
            .packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rowid)
        {
            return Ok(h.clone());
        }
        let row = self
            .with_index(|i| i.pack(rowid))?
            .ok_or_else(|| index::Error::Corrupt {
                path: self.root.join(INDEX_FILE),
                reason: format!("pack row {rowid} is missing"),
            })?;
        let path = pack::pack_path(&self.packs_dir(), &row.name);
        let file = File::open(&path).map_err(|source| pack::Error::Io {
            path: path.clone(),
            source,
        })?;
        let h = Arc::new(PackHandle {
            file,
            path,
            name: row.name,
        });
        self.packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rowid, h.clone());
        Ok(h)
    }

    /// Opens a read session: until it is dropped, every index lookup of this
    /// store sees one consistent state of the index and is cheaper (see
    /// [`crate::index::Index::begin_read`]). For long read-only walks (restore, verify).
    /// Must not be held while writing through this store.
    ///
    /// It also holds the readers lock shared (taken before the read
    /// transaction starts), so prune does not delete a pack this view of the
    /// index still names until the session ends.
    pub fn read_session(&self) -> Result<ReadSession<'_>, index::Error> {
        let readers = lock::ReadLock::acquire(&self.root.join(READERS_FILE));
        let active = self.with_index(|i| i.begin_read())?;
        Ok(ReadSession {
            store: self,
            active,
            _readers: readers,
        })
    }

    /// Waits at most `wait` until no reader (restore, verify) runs and returns
    /// the readers lock held exclusively (`None` if readers still run): prune
    /// deletes pack files only while holding it.
    ///
    /// # Errors
    /// [`Error::Lock`] when the lock file cannot be opened.
    pub fn exclude_readers(&self, wait: Duration) -> Result<Option<lock::NoReaders>, Error> {
        Ok(lock::NoReaders::acquire(
            &self.root.join(READERS_FILE),
            wait,
        )?)
    }

    fn cached(&self, rowid: i64) -> Option<Arc<Vec<u8>>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(rowid)
    }

    fn chunk_row(&self, rowid: i64, of: impl FnOnce() -> String) -> Result<ChunkRow, Error> {
        Ok(self
            .with_index(|i| i.chunk(rowid))?
            .ok_or_else(|| index::Error::Corrupt {
                path: self.root.join(INDEX_FILE),
                reason: format!("chunk row {rowid}{} is missing", of()),
            })?)
    }

    /// The plain bytes of the chunk with row id `rowid`, checked against its blake3.
    pub fn chunk_plain(&self, rowid: i64) -> Result<Arc<Vec<u8>>, Error> {
        self.plain_within(rowid, self.config.max_delta_depth)
    }

    /// [`Store::chunk_plain`] for a chunk at most `hops` deltas above a full chunk.
    fn plain_within(&self, rowid: i64, hops: u32) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(c) = self.cached(rowid) {
            return Ok(c);
        }
        let row = self.chunk_row(rowid, String::new)?;
        Ok(self.read_chunk(&row, hops)?.0)
    }

    /// Reads and decodes the chunk of `row` (its base chain first, at most
    /// `hops` deep: the writer never builds a chain longer than the store's
    /// `max_delta_depth`, so a longer one is a damaged index, perhaps a
    /// cycle), checks it against its blake3 and caches it. Also returns the
    /// git delta a delta chunk is stored as.
    fn read_chunk(
        &self,
        row: &ChunkRow,
        hops: u32,
    ) -> Result<(Arc<Vec<u8>>, Option<(i64, Vec<u8>)>), Error> {
        let h = self.pack_handle(row.pack)?;
        let damaged = |reason: String| Error::ChunkDamaged {
            chunk: row.id,
            pack: h.name.clone(),
            offset: row.offset,
            reason,
        };
        let stored = pack::read_at(&h.file, &h.path, row.offset, row.stored_len)
            .map_err(|e| damaged(e.to_string()))?;
        let (plain, delta) = match row.base {
            None => (
                codec::decode(&stored, row.raw_len, None).map_err(|e| damaged(e.to_string()))?,
                None,
            ),
            Some(_) if row.depth > hops || hops == 0 => {
                return Err(damaged(format!(
                    "its delta chain is deeper than the store's max_delta_depth {} (the index records depth {})",
                    self.config.max_delta_depth, row.depth
                )))
            }
            Some(base) => {
                let d = codec::decompress_delta(&stored, row.raw_len).map_err(|e| damaged(e.to_string()))?;
                if let Some(plain) = self.cached(row.rowid) {
                    // Decoded and blake3-checked earlier in this process: its
                    // base chain need not be decoded again.
                    return Ok((plain, Some((base, d))));
                }
                let base_plain = self.plain_within(base, hops - 1)?;
                let mut out = Vec::with_capacity(row.raw_len as usize);
                delta::apply(&base_plain, &d, &mut out)
                    .map_err(|e| damaged(codec::Error::Delta(e).to_string()))?;
                (out, Some((base, d)))
            }
        };
        codec::check(&plain, &row.id, row.raw_len).map_err(|e| damaged(e.to_string()))?;
        let plain = Arc::new(plain);
        self.cache_chunk(row.rowid, plain.clone());
        Ok((plain, delta))
    }

    /// The index row of an object, if stored.
    pub fn object_row(&self, oid: &ObjectId) -> Result<Option<index::ObjectRow>, Error> {
        Ok(self.with_index(|i| i.object(oid))?)
    }

    /// Like [`Store::get`], and also returns the git delta the object is stored as.
    /// Every chunk's blake3 is checked, and the object's git id when `check_oid`
    /// (restore leaves that to the pack index it writes, which hashes every object).
    pub fn get_with_delta(
        &self,
        oid: &ObjectId,
        check_oid: bool,
    ) -> Result<ObjectWithDelta, Error> {
        let row = self
            .object_row(oid)?
            .ok_or(Error::ObjectNotFound { oid: *oid })?;
        if row.nchunks == 1 {
            let c = self.chunk_row(row.chunk, || format!(" of object {oid}"))?;
            if c.base.is_some() {
                let (plain, delta) = self.read_chunk(&c, self.config.max_delta_depth)?;
                if check_oid {
                    check_git_oid(oid, row.kind, &plain)?;
                }
                return Ok(ObjectWithDelta {
                    kind: row.kind,
                    data: Arc::unwrap_or_clone(plain),
                    delta,
                });
            }
        }
        let o = self.get_inner(oid, check_oid)?;
        Ok(ObjectWithDelta {
            kind: o.kind,
            data: o.data,
            delta: None,
        })
    }

    /// Remembers a verified chunk's plain bytes (so deltas against it decode without a re-read).
    pub(crate) fn cache_chunk(&self, rowid: i64, plain: Arc<Vec<u8>>) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(rowid, plain);
    }

    /// Reads an object back: reassembles its chunks, checking every chunk's
    /// blake3 and the object's git id.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`], [`Error::ChunkDamaged`], [`Error::ObjectDamaged`].
    pub fn get(&self, oid: &ObjectId) -> Result<Object, Error> {
        self.get_inner(oid, true)
    }

    /// Like [`Store::get`] but checks only each chunk's blake3, not the
    /// object's git id: for walks over objects whose ids were checked already
    /// in the same run, or whose ids a later step checks (restore's pack index).
    pub fn get_chunks_checked(&self, oid: &ObjectId) -> Result<Object, Error> {
        self.get_inner(oid, false)
    }

    fn get_inner(&self, oid: &ObjectId, check_oid: bool) -> Result<Object, Error> {
        let (row, chunks) = self
            .with_index(|i| -> Result<_, index::Error> {
                let Some(row) = i.object(oid)? else {
                    return Ok(None);
                };
                let chunks = i.object_chunks(&row)?;
                Ok(Some((row, chunks)))
            })?
            .ok_or(Error::ObjectNotFound { oid: *oid })?;
        let mut data = Vec::with_capacity(row.size as usize);
        for c in chunks {
            data.extend_from_slice(&self.chunk_plain(c)?);
        }
        if data.len() as u64 != row.size {
            return Err(Error::ObjectDamaged {
                oid: *oid,
                reason: format!("{} bytes instead of {}", data.len(), row.size),
            });
        }
        if check_oid {
            check_git_oid(oid, row.kind, &data)?;
        }
        Ok(Object {
            kind: row.kind,
            data,
        })
    }
}
