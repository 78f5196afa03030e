//! Writing a pack: [`PackWriter`] appends chunks to a temporary file and, in
//! [`PackWriter::finish`], writes the trailer and footer and puts the file in
//! place under its checksum's name (through [`crate::durable`]).

use super::{
    io, pack_path, Encoding, EntryRecord, Error, FinishedPack, ObjectRecord, PackKind,
    ENTRY_RECORD_LEN, FOOTER_MAGIC, HEADER_LEN, MAGIC, VERSION,
};
use crate::chunk::ChunkId;
use crate::durable::TempFile;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Writes one pack file.
pub struct PackWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    /// The temporary file (removed when the writer is dropped before `finish`).
    file: Option<BufWriter<TempFile>>,
    hasher: blake3::Hasher,
    len: u64,
    kind: PackKind,
    version: u32,
    entries: Vec<EntryRecord>,
    objects: Vec<ObjectRecord>,
}

impl PackWriter {
    /// Starts a new pack of `kind` and format `version` (1 or 2: see
    /// docs/FORMAT.md) in `dir` (as a temporary file).
    pub fn create(dir: &Path, kind: PackKind, version: u32) -> Result<Self, Error> {
        if !(1..=VERSION).contains(&version) {
            return Err(Error::Corrupt {
                path: dir.to_owned(),
                reason: format!("cannot write pack version {version}"),
            });
        }
        let file = TempFile::new_in(dir, ".pack", crate::durable::PRIVATE).map_err(io(dir))?;
        let tmp_path = file.path().to_owned();
        let mut w = Self {
            dir: dir.to_owned(),
            tmp_path,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: blake3::Hasher::new(),
            len: 0,
            kind,
            version,
            entries: Vec::new(),
            objects: Vec::new(),
        };
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&version.to_le_bytes());
        header.extend_from_slice(&[kind.code(), 0, 0, 0]);
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let f = self.file.as_mut().expect("file is present until finish");
        f.write_all(bytes).map_err(io(&self.tmp_path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The temporary file being written.
    pub fn path(&self) -> &Path {
        &self.tmp_path
    }

    /// The pack's kind.
    pub fn kind(&self) -> PackKind {
        self.kind
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Chunks and object records added so far.
    pub fn records(&self) -> usize {
        self.entries.len() + self.objects.len()
    }

    /// True when no chunk and no object record was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.objects.is_empty()
    }

    /// Appends a chunk's stored bytes; returns its offset.
    pub fn append(
        &mut self,
        id: ChunkId,
        raw_len: u32,
        base: Option<ChunkId>,
        stored: &[u8],
    ) -> Result<u64, Error> {
        let offset = self.len;
        let stored_len = u32::try_from(stored.len()).map_err(|_| Error::Corrupt {
            path: self.tmp_path.clone(),
            reason: format!("chunk {id} is larger than 4 GiB"),
        })?;
        self.write(stored)?;
        self.entries.push(EntryRecord {
            id,
            offset,
            stored_len,
            raw_len,
            base,
        });
        Ok(offset)
    }

    /// Adds an object record to the trailer.
    pub fn add_object(&mut self, rec: ObjectRecord) {
        self.objects.push(rec);
    }

    /// Reads back stored bytes written earlier to this (unfinished) pack.
    pub fn read_back(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
        let f = self.file.as_mut().expect("file is present until finish");
        f.flush().map_err(io(&self.tmp_path))?;
        let mut buf = vec![0; len as usize];
        f.get_ref()
            .file()
            .read_exact_at(&mut buf, offset)
            .map_err(io(&self.tmp_path))?;
        Ok(buf)
    }

    /// Writes the trailer and footer, fsyncs the file, renames it to
    /// `<checksum>.pack` and fsyncs the directory.
    pub fn finish(mut self) -> Result<FinishedPack, Error> {
        let trailer = if self.version == 1 {
            encode_trailer_v1(&self.entries, &self.objects)
        } else {
            encode_trailer_v2(&self.entries, &self.objects)
        };
        let trailer_offset = self.len;
        self.write(&trailer)?;
        let mut footer = Vec::with_capacity(24);
        footer.extend_from_slice(&trailer_offset.to_le_bytes());
        footer.extend_from_slice(&(trailer.len() as u64).to_le_bytes());
        footer.extend_from_slice(FOOTER_MAGIC);
        self.write(&footer)?;
        let checksum = *self.hasher.finalize().as_bytes();
        let mut f = self.file.take().expect("file is present until finish");
        f.write_all(&checksum).map_err(io(&self.tmp_path))?;
        let file = f.into_inner().map_err(|e| Error::Io {
            path: self.tmp_path.clone(),
            source: e.into_error(),
        })?;
        let name = hex::encode(checksum);
        let path = pack_path(&self.dir, &name);
        file.persist(&path).map_err(io(&path))?;
        Ok(FinishedPack {
            name,
            kind: self.kind,
            size: self.len + 32,
            entries: std::mem::take(&mut self.entries),
            objects: std::mem::take(&mut self.objects),
        })
    }
}

fn encode_trailer_v1(entries: &[EntryRecord], objects: &[ObjectRecord]) -> Vec<u8> {
    let mut t = Vec::with_capacity(8 + entries.len() * ENTRY_RECORD_LEN + objects.len() * 70);
    t.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        t.extend_from_slice(e.id.as_bytes());
        t.extend_from_slice(&e.offset.to_le_bytes());
        t.extend_from_slice(&e.stored_len.to_le_bytes());
        t.extend_from_slice(&e.raw_len.to_le_bytes());
        match e.base {
            None => {
                t.push(Encoding::Zstd as u8);
                t.extend_from_slice(&[0; 32]);
            }
            Some(b) => {
                t.push(Encoding::ZstdDelta as u8);
                t.extend_from_slice(b.as_bytes());
            }
        }
    }
    t.extend_from_slice(&(objects.len() as u32).to_le_bytes());
    for o in objects {
        t.extend_from_slice(o.oid.as_bytes());
        t.push(o.kind.code());
        t.extend_from_slice(&o.size.to_le_bytes());
        t.extend_from_slice(&(o.chunks.len() as u32).to_le_bytes());
        for c in &o.chunks {
            t.extend_from_slice(c.as_bytes());
        }
    }
    t
}

fn put_varint(t: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        t.push((v as u8) | 0x80);
        v >>= 7;
    }
    t.push(v as u8);
}

/// A chunk reference: 0 none, 1 + 32-byte id (a chunk of another pack),
/// 2 + i (entry i of this pack).
fn put_chunk_ref(t: &mut Vec<u8>, id: Option<&ChunkId>, in_pack: &HashMap<ChunkId, usize>) {
    match id {
        None => t.push(0),
        Some(id) => match in_pack.get(id) {
            Some(i) => put_varint(t, *i as u64 + 2),
            None => {
                t.push(1);
                t.extend_from_slice(id.as_bytes());
            }
        },
    }
}

/// Version 2 trailer: varints, offsets implied by file order, chunks of the
/// same pack named by position (about 70 bytes an object instead of 146).
pub(super) fn encode_trailer_v2(entries: &[EntryRecord], objects: &[ObjectRecord]) -> Vec<u8> {
    let in_pack: HashMap<ChunkId, usize> =
        entries.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut t = Vec::with_capacity(8 + entries.len() * 44 + objects.len() * 28);
    put_varint(&mut t, entries.len() as u64);
    let mut expected = HEADER_LEN;
    for e in entries {
        t.extend_from_slice(e.id.as_bytes());
        // Zigzag: the offset relative to the end of the previous entry (0 when contiguous).
        let d = e.offset.wrapping_sub(expected) as i64;
        put_varint(&mut t, ((d << 1) ^ (d >> 63)) as u64);
        put_varint(&mut t, u64::from(e.stored_len));
        put_varint(&mut t, u64::from(e.raw_len));
        put_chunk_ref(&mut t, e.base.as_ref(), &in_pack);
        expected = e.offset + u64::from(e.stored_len);
    }
    put_varint(&mut t, objects.len() as u64);
    for o in objects {
        t.extend_from_slice(o.oid.as_bytes());
        t.push(o.kind.code());
        put_varint(&mut t, o.size);
        put_varint(&mut t, o.chunks.len() as u64);
        for c in &o.chunks {
            put_chunk_ref(&mut t, Some(c), &in_pack);
        }
    }
    t
}
