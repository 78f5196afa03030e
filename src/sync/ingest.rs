//! Ingest: decode the mirror's packs (in parallel, with gix) and put every
//! object into the store with git's own delta base, checking on the way that
//! everything the objects refer to is present.

use super::Error;
use crate::store::{DeltaBase, NewObject, Writer};
use crate::ObjectKind;
use gix::odb::pack;
use gix::ObjectId;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// File in the mirror listing the packs whose objects are in the store
/// (one name per line), named after the store's id.
fn ingested_list(mirror: &Path, store_id: &str) -> PathBuf {
    mirror.join(format!("repovault-ingested-{store_id}"))
}

/// Packs of the mirror that are not yet known to be in the store.
pub fn packs_to_ingest(mirror: &Path, store_id: &str) -> Result<Vec<PathBuf>, Error> {
    let done: HashSet<String> = std::fs::read_to_string(ingested_list(mirror, store_id))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let dir = mirror.join("objects/pack");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::Mirror {
                path: dir,
                reason: e.to_string(),
            })
        }
    };
    for e in rd {
        let e = e.map_err(|e| Error::Mirror {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".idx")
            && !done.contains(&name)
            && e.path().with_extension("pack").is_file()
        {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Records that `packs` are in the store (after the snapshot that needed them).
pub fn mark_ingested(mirror: &Path, store_id: &str, packs: &[PathBuf]) -> Result<(), Error> {
    use std::io::Write;
    let path = ingested_list(mirror, store_id);
    // Appended to, not replaced through `durable`: a line lost or torn by a
    // crash only makes the next sync ingest that pack again (the store
    // deduplicates), and every earlier line stays.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::Mirror {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    for p in packs {
        if let Some(n) = p.file_name() {
            writeln!(f, "{}", n.to_string_lossy()).map_err(|e| Error::Mirror {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

struct Item {
    oid: ObjectId,
    kind: ObjectKind,
    data: Vec<u8>,
    base: Option<(ObjectId, Vec<u8>)>,
    /// The objects it refers to that are not in its own pack.
    external: Vec<ObjectId>,
}

/// What ingesting some packs found.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Objects decoded from the packs.
    pub objects_seen: u64,
    /// Every object the decoded objects refer to that is neither in the packs
    /// nor in the store.
    pub missing: Vec<ObjectId>,
}

const BATCH_BYTES: usize = 16 << 20;
const BATCH_OBJECTS: usize = 4096;
/// Objects between two progress updates.
const PROGRESS_EVERY: u64 = 64;

/// Decodes every object of `packs` and puts it into the store through `writer`.
pub fn ingest_packs(
    writer: &mut Writer<'_>,
    packs: &[PathBuf],
    verified: Option<&Path>,
    interrupt: &AtomicBool,
    progress: &dyn super::Progress,
) -> Result<Ingested, Error> {
    // Memory stays proportional to what one pack's objects refer to outside
    // that pack (usually few), not to the objects: a million-object pack
    // must not need a set of a million ids.
    let mut seen = 0u64;
    let mut needed: HashSet<ObjectId> = HashSet::new();
    let total: u64 = packs
        .iter()
        .filter_map(|p| pack::index::File::at(p, gix::hash::Kind::Sha1).ok())
        .map(|i| u64::from(i.num_objects()))
        .sum();
    progress.begin("storing", Some(total));
    let mut bytes = 0u64;
    for idx in packs {
        // A pack gix indexed in this very fetch had every object hashed from its
        // content; packs left from earlier runs are hashed again on the way in.
        let trusted = verified.is_some_and(|v| v.file_name() == idx.file_name());
        ingest_one(
            writer,
            idx,
            trusted,
            interrupt,
            &mut seen,
            &mut bytes,
            &mut needed,
            progress,
        )?;
    }
    let mut missing = Vec::new();
    for oid in needed {
        if !writer.contains(&oid)? {
            missing.push(oid);
        }
    }
    missing.sort();
    Ok(Ingested {
        objects_seen: seen,
        missing,
    })
}

#[allow(clippy::too_many_arguments)]
fn ingest_one(
    writer: &mut Writer<'_>,
    idx_path: &Path,
    trusted: bool,
    interrupt: &AtomicBool,
    seen: &mut u64,
    bytes: &mut u64,
    needed: &mut HashSet<ObjectId>,
    progress: &dyn super::Progress,
) -> Result<(), Error> {
    let perr = |e: &dyn std::fmt::Display| Error::Mirror {
        path: idx_path.to_owned(),
        reason: format!("{e:#}"),
    };
    let bundle = pack::Bundle::at(idx_path, gix::hash::Kind::Sha1).map_err(|e| perr(&e))?;
    // A second view of the index (traversal consumes the bundle's): which
    // referenced objects are in this pack, and offset -> id for OFS_DELTA
    // bases through a permutation of the entries by offset (4 bytes an object).
    let lookup = pack::index::File::at(idx_path, gix::hash::Kind::Sha1).map_err(|e| perr(&e))?;
    let index = &lookup;
    let mut by_offset: Vec<u32> = (0..lookup.num_objects()).collect();
    by_offset.sort_unstable_by_key(|&i| lookup.pack_offset_at_index(i));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Item, String>>(1024);
    let pack_file = &bundle.pack;
    let by_offset = &by_offset;
    std::thread::scope(|scope| -> Result<(), Error> {
        let producer = scope.spawn(move || {
            let tx_err = tx.clone();
            let processor = move |kind: gix::objs::Kind,
                                  data: &[u8],
                                  entry: &pack::index::Entry,
                                  _p: &dyn gix::progress::Progress|
                  -> Result<(), gix::Error> {
                let kind = ObjectKind::from(kind);
                let item = (|| -> Result<Item, String> {
                    let pe = pack_file
                        .entry(entry.pack_offset)
                        .map_err(|e| format!("{e:#}"))?;
                    use pack::data::entry::Header;
                    let base = match pe.header {
                        Header::OfsDelta { base_distance } => {
                            let at = entry.pack_offset - base_distance;
                            by_offset
                                .binary_search_by_key(&at, |&i| index.pack_offset_at_index(i))
                                .ok()
                                .map(|p| index.oid_at_index(by_offset[p]).to_owned())
                        }
                        Header::RefDelta { base_id } => Some(base_id),
                        _ => None,
                    };
                    let base = match base {
                        Some(b) => {
                            let mut buf = vec![0u8; pe.decompressed_size as usize];
                            let mut inflate = gix::zlib::Inflate::default();
                            pack_file
                                .decompress_entry(&pe, &mut inflate, &mut buf)
                                .map_err(|e| format!("{e:#}"))?;
                            Some((b, buf))
                        }
                        None => None,
                    };
                    let mut external = crate::object::references(kind, data).map_err(|e| {
                        format!("object {} ({kind}) is malformed: {e:#}", entry.oid)
                    })?;
                    external.retain(|r| index.lookup(r).is_none());
                    Ok(Item {
                        oid: entry.oid,
                        kind,
                        data: data.to_vec(),
                        base,
                        external,
                    })
                })();
                // A closed channel means the consumer failed; it reports why.
                let _ = tx.send(item);
                Ok(())
            };
            let outcome = bundle.index.traverse_with_index(
                pack_file,
                processor,
                &mut gix::progress::Discard,
                interrupt,
                pack::index::traverse::with_index::Options {
                    check: if trusted {
                        pack::index::traverse::SafetyCheck::SkipFileAndObjectChecksumVerification
                    } else {
                        pack::index::traverse::SafetyCheck::SkipFileChecksumVerification
                    },
                    thread_limit: None,
                    alloc_limit_bytes: None,
                },
            );
            if let Err(e) = outcome {
                let _ = tx_err.send(Err(format!("{e:#}")));
            }
        });
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut failure = None;
        for item in rx {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    failure = Some(perr(&e));
                    break;
                }
            };
            *seen += 1;
            *bytes += item.data.len() as u64;
            if seen.is_multiple_of(PROGRESS_EVERY) {
                progress.update(*seen, *bytes);
            }
            needed.extend(item.external);
            batch_bytes += item.data.len();
            batch.push(NewObject {
                oid: item.oid,
                kind: item.kind,
                data: item.data,
                base: item.base.map(|(oid, delta)| DeltaBase {
                    oid,
                    delta: Some(delta),
                }),
            });
            if batch.len() >= BATCH_OBJECTS || batch_bytes >= BATCH_BYTES {
                if let Err(e) = writer.put_verified(std::mem::take(&mut batch)) {
                    failure = Some(Error::Store(e));
                    break;
                }
                crate::crash_point("ingest-batch");
                crate::interrupt_point("ingest-batch", interrupt);
                batch_bytes = 0;
            }
        }
        // Dropping the receiver (on failure) makes the producer's sends fail fast.
        producer
            .join()
            .map_err(|_| perr(&"pack decoding thread panicked"))?;
        if let Some(f) = failure {
            return Err(f);
        }
        if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        writer.put_verified(batch).map_err(Error::Store)?;
        progress.update(*seen, *bytes);
        Ok(())
    })
}
