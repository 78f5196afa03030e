//! Verify's step 5 (read-data mode): every selected pack is read once,
//! sequentially, in parallel over packs; its checksum and trailer are checked,
//! every chunk is decoded and its blake3 checked, and every object's git id.

use super::{index, pack, problem, Error, Packs, Problem, Run, Subset};
use crate::chunk::ChunkId;
use crate::git_oid;
use crate::store::{codec, Store};
use gix::ObjectId;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

impl Run<'_> {
    /// Step 5: Reads every selected pack (and checks the multi-chunk objects).
    pub(super) fn read_packs(&mut self, packs: &Packs) -> Result<(), Error> {
        let (store, scope, opts, interrupt) = (self.store, self.scope, self.opts, self.interrupt);
        let progress = self.progress;
        let (extents, bad_packs) = (&packs.extents, &packs.missing);
        let pack_dir = store.packs_dir();
        let report = &mut self.report;
        let damage = &mut self.damage;
        let mut selected: Vec<&index::PackExtent> = extents
            .iter()
            .filter(|e| !bad_packs.contains(&e.pack.rowid))
            .collect();
        selected.sort_by(|a, b| a.pack.name.cmp(&b.pack.name));
        match opts.subset {
            Some(Subset::Part { n, m }) => {
                selected = selected
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| *i as u32 % m == n - 1)
                    .map(|(_, e)| e)
                    .collect();
            }
            Some(Subset::Percent(p)) => {
                selected.retain(|_| rand::random::<f64>() * 100.0 < p);
            }
            None => {}
        }
        // Tree packs first: they are small and hold what the walk needs.
        selected.sort_by_key(|e| (e.pack.kind.code(), e.pack.name.clone()));
        report.packs_checked = selected.len() as u64;
        let bytes = AtomicU64::new(0);
        let chunks = AtomicU64::new(0);
        let objects = AtomicU64::new(0);
        let found: Mutex<(Vec<Problem>, HashSet<i64>, HashMap<ObjectId, String>)> =
            Mutex::default();
        // Which objects each chunk is (one scan for all packs), to check their git ids.
        let users = store.with_index(|i| i.single_chunk_objects_by_pack())?;
        let total: usize = selected
            .iter()
            .map(|e| users.get(&e.pack.rowid).map_or(0, Vec::len))
            .sum();
        self.progress.begin("reading packs", Some(total as u64));
        selected.par_iter().try_for_each(|e| -> Result<(), Error> {
            if interrupt.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let r = read_pack(store, e, &pack_dir, &users)?;
            chunks.fetch_add(r.chunks, Ordering::Relaxed);
            let done_bytes = bytes.fetch_add(r.bytes, Ordering::Relaxed) + r.bytes;
            let done = objects.fetch_add(r.objects, Ordering::Relaxed) + r.objects;
            progress.update(done, done_bytes);
            let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
            f.0.extend(r.problems);
            f.1.extend(r.bad_chunks);
            f.2.extend(r.bad_objects);
            Ok(())
        })?;
        let (problems, bad_chunks, bad_objects) =
            found.into_inner().unwrap_or_else(|p| p.into_inner());
        report.problems.extend(problems);
        damage.chunks.extend(bad_chunks);
        damage.objects.extend(bad_objects);
        report.bytes_read = bytes.into_inner();
        report.chunks_checked = chunks.into_inner();
        report.objects_checked = objects.into_inner();
        if opts.subset.is_none() {
            for oid in store
                .with_index(|i| i.multi_chunk_objects())?
                .into_iter()
                .filter(|o| scope.is_none_or(|s| s.objects.contains(o)))
            {
                match store.get(&oid) {
                    Ok(_) => report.objects_checked += 1,
                    Err(e) => {
                        let mut p = problem("object", e.to_string());
                        p.object = Some(oid.to_string());
                        report.problems.push(p);
                        damage.objects.insert(oid, e.to_string());
                    }
                }
            }
        }
        Ok(())
    }
}

struct PackResult {
    bytes: u64,
    chunks: u64,
    objects: u64,
    problems: Vec<Problem>,
    bad_chunks: Vec<i64>,
    bad_objects: Vec<(ObjectId, String)>,
}

/// Reads one pack sequentially and checks everything in it.
fn read_pack(
    store: &Store,
    e: &index::PackExtent,
    dir: &std::path::Path,
    users: &HashMap<i64, Vec<(i64, ObjectId, crate::ObjectKind)>>,
) -> Result<PackResult, Error> {
    let path = pack::pack_path(dir, &e.pack.name);
    let mut r = PackResult {
        bytes: 0,
        chunks: 0,
        objects: 0,
        problems: Vec::new(),
        bad_chunks: Vec::new(),
        bad_objects: Vec::new(),
    };
    let rows = store.with_index(|i| i.chunks_in_pack(e.pack.rowid))?;
    let pack_problem = |detail: String, offset: Option<u64>, chunk: Option<&ChunkId>| Problem {
        kind: if chunk.is_some() { "chunk" } else { "pack" }.into(),
        pack: Some(e.pack.name.clone()),
        offset,
        chunk: chunk.map(|c| c.to_hex()),
        object: None,
        detail,
    };
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(err) => {
            r.problems
                .push(pack_problem(format!("cannot be read: {err}"), None, None));
            r.bad_chunks.extend(rows.iter().map(|c| c.rowid));
            return Ok(r);
        }
    };
    r.bytes = buf.len() as u64;
    if buf.len() < 32 || blake3::hash(&buf[..buf.len() - 32]).as_bytes() != &buf[buf.len() - 32..] {
        r.problems.push(pack_problem(
            "checksum mismatch: the file was changed after it was written".into(),
            None,
            None,
        ));
    }
    // The trailer must agree with the index.
    match pack::read_contents(&path) {
        Ok(contents) => {
            let by_offset: HashMap<u64, &pack::EntryRecord> =
                contents.entries.iter().map(|x| (x.offset, x)).collect();
            for c in &rows {
                match by_offset.get(&c.offset) {
                    Some(t) if t.id == c.id && t.stored_len == c.stored_len => {}
                    _ => r.problems.push(pack_problem(
                        "the pack's trailer does not list this chunk where the index places it"
                            .into(),
                        Some(c.offset),
                        Some(&c.id),
                    )),
                }
            }
        }
        Err(err) => r.problems.push(pack_problem(
            format!("trailer unreadable: {err}"),
            None,
            None,
        )),
    }
    let users: &[(i64, ObjectId, crate::ObjectKind)] =
        users.get(&e.pack.rowid).map_or(&[], |v| &v[..]);
    // Chunks are decoded and checked in parallel; a delta whose base was not
    // decoded yet decodes it through the store (and its cache).
    struct ChunkOutcome {
        objects: u64,
        problems: Vec<Problem>,
        bad_chunk: Option<i64>,
        bad_objects: Vec<(ObjectId, String)>,
    }
    let outcomes: Vec<ChunkOutcome> = rows
        .par_iter()
        .map(|c| {
            let mut out = ChunkOutcome {
                objects: 0,
                problems: Vec::new(),
                bad_chunk: None,
                bad_objects: Vec::new(),
            };
            let end = c.offset as usize + c.stored_len as usize;
            let result = (|| -> Result<Vec<u8>, String> {
                let stored = buf
                    .get(c.offset as usize..end)
                    .ok_or("beyond the end of the file")?;
                let base = match c.base {
                    Some(b) => Some(
                        store
                            .chunk_plain(b)
                            .map_err(|e| format!("its delta base cannot be read: {e}"))?,
                    ),
                    None => None,
                };
                let plain = codec::decode(stored, c.raw_len, base.as_deref().map(|b| &b[..]))
                    .map_err(|e| e.to_string())?;
                codec::check(&plain, &c.id, c.raw_len).map_err(|e| e.to_string())?;
                Ok(plain)
            })();
            match result {
                Ok(plain) => {
                    let first = users.partition_point(|u| u.0 < c.rowid);
                    for &(_, oid, kind) in users[first..].iter().take_while(|u| u.0 == c.rowid) {
                        out.objects += 1;
                        let actual = git_oid(kind, &plain);
                        if actual != oid {
                            let mut p = pack_problem(
                                format!("object hashes to {actual}"),
                                Some(c.offset),
                                Some(&c.id),
                            );
                            p.kind = "object".into();
                            p.object = Some(oid.to_string());
                            out.problems.push(p);
                            out.bad_objects
                                .push((oid, format!("object {oid} hashes to {actual}")));
                        }
                    }
                    if plain.len() < (4 << 20) && (c.depth < 40 || kind_is_meta(e)) {
                        store.cache_chunk(c.rowid, Arc::new(plain));
                    }
                }
                Err(detail) => {
                    out.problems
                        .push(pack_problem(detail, Some(c.offset), Some(&c.id)));
                    out.bad_chunk = Some(c.rowid);
                }
            }
            out
        })
        .collect();
    for o in outcomes {
        r.chunks += 1;
        r.objects += o.objects;
        r.problems.extend(o.problems);
        r.bad_chunks.extend(o.bad_chunk);
        r.bad_objects.extend(o.bad_objects);
    }
    Ok(r)
}

fn kind_is_meta(e: &index::PackExtent) -> bool {
    e.pack.kind == pack::PackKind::Tree
}
