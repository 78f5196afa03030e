//! Reading a pack: its header, footer and trailer ([`read_contents`]), its
//! checksum ([`verify_checksum`]) and a chunk's stored bytes ([`read_at`]).

use super::{
    io, EntryRecord, Error, ObjectRecord, PackContents, PackKind, ENTRY_RECORD_LEN, FOOTER_LEN,
    FOOTER_MAGIC, HEADER_LEN, MAGIC, VERSION,
};
use crate::chunk::ChunkId;
use crate::ObjectKind;
use gix::ObjectId;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A trailer's entries and objects, in their order.
type Records = (Vec<EntryRecord>, Vec<ObjectRecord>);

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The trailer's version: 1 writes integers in fixed width and chunk ids
    /// in full, 2 writes varints and chunk references.
    version: u32,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], version: u32) -> Self {
        Self {
            buf,
            pos: 0,
            version,
        }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn chunk_id(&mut self) -> Option<ChunkId> {
        ChunkId::from_slice(self.take(32)?)
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A chunk reference of a version 2 trailer: `None` for "no chunk".
    fn chunk_ref(&mut self, in_pack: &[ChunkId]) -> Option<Option<ChunkId>> {
        match self.varint()? {
            0 => Some(None),
            1 => Some(Some(self.chunk_id()?)),
            i => Some(Some(*in_pack.get(usize::try_from(i - 2).ok()?)?)),
        }
    }
    /// A count: a u32 (version 1) or a varint (version 2).
    fn count(&mut self) -> Option<usize> {
        if self.version == 1 {
            Some(self.u32()? as usize)
        } else {
            usize::try_from(self.varint()?).ok()
        }
    }
    /// An object's size: a u64 (version 1) or a varint (version 2).
    fn size(&mut self) -> Option<u64> {
        if self.version == 1 {
            self.u64()
        } else {
            self.varint()
        }
    }
    /// One of an object's chunks: its id (version 1) or a chunk reference
    /// into `in_pack` (version 2, where "no chunk" is malformed).
    fn object_chunk(&mut self, in_pack: &[ChunkId]) -> Option<ChunkId> {
        if self.version == 1 {
            self.chunk_id()
        } else {
            self.chunk_ref(in_pack)?
        }
    }
}

/// The object records that end a trailer of either version, after its
/// `entries`: both, when nothing follows the objects.
fn objects_to_end(
    mut c: Cursor<'_>,
    entries: Vec<EntryRecord>,
    in_pack: &[ChunkId],
) -> Option<Records> {
    // The fewest bytes an object record and one of its chunks take.
    let (min_object, min_chunk) = if c.version == 1 { (33, 32) } else { (23, 1) };
    let n = c.count()?;
    let mut objects = Vec::with_capacity(n.min(c.buf.len() / min_object));
    for _ in 0..n {
        let oid = ObjectId::try_from(c.take(20)?).ok()?;
        let kind = ObjectKind::from_code(c.u8()?)?;
        let size = c.size()?;
        let k = c.count()?;
        let mut chunks = Vec::with_capacity(k.min(c.buf.len() / min_chunk));
        for _ in 0..k {
            chunks.push(c.object_chunk(in_pack)?);
        }
        objects.push(ObjectRecord {
            oid,
            kind,
            size,
            chunks,
        });
    }
    (c.pos == c.buf.len()).then_some((entries, objects))
}

pub(super) fn decode_trailer_v2(buf: &[u8], trailer_offset: u64) -> Option<Records> {
    let mut c = Cursor::new(buf, 2);
    let n = c.count()?;
    // Ids first (a base may name a later entry), then the rest.
    struct Raw {
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        base: u64,
        external: Option<ChunkId>,
    }
    let mut ids = Vec::with_capacity(n.min(buf.len() / 36));
    let mut raws = Vec::with_capacity(n.min(buf.len() / 36));
    let mut expected = HEADER_LEN;
    for _ in 0..n {
        ids.push(c.chunk_id()?);
        let z = c.varint()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let offset = expected.checked_add_signed(d)?;
        let stored_len = u32::try_from(c.varint()?).ok()?;
        let raw_len = u32::try_from(c.varint()?).ok()?;
        let base = c.varint()?;
        let external = if base == 1 { Some(c.chunk_id()?) } else { None };
        if offset < HEADER_LEN || offset.checked_add(u64::from(stored_len))? > trailer_offset {
            return None;
        }
        expected = offset + u64::from(stored_len);
        raws.push(Raw {
            offset,
            stored_len,
            raw_len,
            base,
            external,
        });
    }
    let mut entries = Vec::with_capacity(n);
    for (id, r) in ids.iter().zip(raws) {
        let base = match r.base {
            0 => None,
            1 => r.external,
            i => Some(*ids.get(usize::try_from(i - 2).ok()?)?),
        };
        entries.push(EntryRecord {
            id: *id,
            offset: r.offset,
            stored_len: r.stored_len,
            raw_len: r.raw_len,
            base,
        });
    }
    objects_to_end(c, entries, &ids)
}

/// Reads and parses the header, footer and trailer of the pack at `path`.
/// Does not verify the checksum (see [`verify_checksum`]).
pub fn read_contents(path: &Path) -> Result<PackContents, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut f = File::open(path).map_err(io(path))?;
    let size = f.metadata().map_err(io(path))?.len();
    if size < HEADER_LEN + FOOTER_LEN {
        return Err(corrupt(format!("{size} bytes is too short for a pack")));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    f.read_exact(&mut header).map_err(io(path))?;
    if &header[..8] != MAGIC {
        return Err(corrupt("bad magic: not a repovault pack".into()));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if !(1..=VERSION).contains(&version) {
        return Err(corrupt(format!("unsupported pack version {version}")));
    }
    let kind = PackKind::from_code(header[12])
        .ok_or_else(|| corrupt(format!("unknown pack kind {}", header[12])))?;
    let mut footer = [0u8; FOOTER_LEN as usize];
    f.seek(SeekFrom::Start(size - FOOTER_LEN))
        .map_err(io(path))?;
    f.read_exact(&mut footer).map_err(io(path))?;
    let trailer_offset = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
    let trailer_len = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
    if &footer[16..24] != FOOTER_MAGIC {
        return Err(corrupt(
            "bad footer magic (truncated or damaged pack)".into(),
        ));
    }
    let checksum: [u8; 32] = footer[24..56].try_into().expect("32 bytes");
    if trailer_offset < HEADER_LEN
        || trailer_offset.checked_add(trailer_len) != Some(size - FOOTER_LEN)
    {
        return Err(corrupt(format!(
            "trailer at {trailer_offset}+{trailer_len} does not fit a {size}-byte pack"
        )));
    }
    let mut trailer = vec![0u8; trailer_len as usize];
    f.read_exact_at(&mut trailer, trailer_offset)
        .map_err(io(path))?;
    let decoded = if version == 1 {
        decode_trailer_v1(&trailer, trailer_offset)
    } else {
        decode_trailer_v2(&trailer, trailer_offset)
    };
    let (entries, objects) = decoded.ok_or_else(|| corrupt("malformed trailer".into()))?;
    Ok(PackContents {
        kind,
        entries,
        objects,
        trailer_offset,
        size,
        checksum,
    })
}

fn decode_trailer_v1(buf: &[u8], trailer_offset: u64) -> Option<Records> {
    let mut c = Cursor::new(buf, 1);
    let n = c.count()?;
    let mut entries = Vec::with_capacity(n.min(buf.len() / ENTRY_RECORD_LEN));
    for _ in 0..n {
        let id = c.chunk_id()?;
        let offset = c.u64()?;
        let stored_len = c.u32()?;
        let raw_len = c.u32()?;
        let enc = c.u8()?;
        let base = c.chunk_id()?;
        let base = match enc {
            0 => None,
            1 => Some(base),
            _ => return None,
        };
        if offset < HEADER_LEN || offset.checked_add(u64::from(stored_len))? > trailer_offset {
            return None;
        }
        entries.push(EntryRecord {
            id,
            offset,
            stored_len,
            raw_len,
            base,
        });
    }
    objects_to_end(c, entries, &[])
}

/// Reads the whole file once and checks the footer checksum. Returns the
/// number of bytes read.
pub fn verify_checksum(path: &Path) -> Result<u64, Error> {
    let mut f = File::open(path).map_err(io(path))?;
    let size = f.metadata().map_err(io(path))?.len();
    if size < 32 {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            reason: "shorter than a checksum".into(),
        });
    }
    let mut hasher = blake3::Hasher::new();
    let mut remaining = size - 32;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let n = remaining.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).map_err(io(path))?;
        hasher.update(&buf[..n]);
        remaining -= n as u64;
    }
    let mut stored = [0u8; 32];
    f.read_exact(&mut stored).map_err(io(path))?;
    if hasher.finalize().as_bytes() != &stored {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            reason: "checksum mismatch".into(),
        });
    }
    Ok(size)
}

/// Reads `len` stored bytes at `offset` of an open pack.
pub fn read_at(file: &File, path: &Path, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Corrupt {
                path: path.to_owned(),
                reason: format!("truncated: {len} bytes at offset {offset} are missing"),
            }
        } else {
            Error::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })?;
    Ok(buf)
}
