//! Writing a git pack (version 2) and its index (version 2) from objects
//! whose ids are already known and checked: what restore writes.
//!
//! git's own `pack-objects` works the same way: it knows every object's id,
//! offset and CRC while writing, so it writes the `.idx` directly instead of
//! re-reading the pack (`index-pack` resolves every delta and hashes every
//! object again, which is what a receiving side must do, not the writer).
//! The formats are gitformat-pack(5).

use crate::ObjectKind;
use gix::ObjectId;
use std::io::{self, Write};

/// How one pack entry is stored.
#[derive(Debug, Clone, Copy)]
pub enum EntryKind {
    /// The object's full content.
    Base(ObjectKind),
    /// A git delta against the object with this id (which must be in the pack).
    RefDelta(ObjectId),
}

/// Where one object lies in the pack.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry {
    /// The object's id.
    pub oid: ObjectId,
    /// Offset of its entry header from the start of the pack.
    pub offset: u64,
    /// CRC-32 of its entry bytes (header, base id, compressed data).
    pub crc32: u32,
}

/// Writes a version 2 pack to `out`, remembering each entry for the index.
pub struct GitPackWriter<W: Write> {
    out: W,
    hasher: gix::hash::Hasher,
    offset: u64,
    expected: u32,
    entries: Vec<IndexEntry>,
}

impl<W: Write> GitPackWriter<W> {
    /// Starts a pack of exactly `count` objects.
    pub fn new(out: W, count: u32) -> io::Result<Self> {
        let mut w = Self {
            out,
            hasher: gix::hash::hasher(gix::hash::Kind::Sha1),
            offset: 0,
            expected: count,
            entries: Vec::with_capacity(count as usize),
        };
        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&count.to_be_bytes());
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Appends one entry: `compressed` is the zlib stream of the object's
    /// content (or of the delta), whose plain length is `size`.
    pub fn add(
        &mut self,
        oid: ObjectId,
        kind: EntryKind,
        size: u64,
        compressed: &[u8],
    ) -> io::Result<()> {
        let type_code = match kind {
            EntryKind::Base(k) => k.code(),
            EntryKind::RefDelta(_) => 7,
        };
        let mut head = Vec::with_capacity(32);
        let mut s = size;
        let mut byte = (type_code << 4) | (s & 0x0f) as u8;
        s >>= 4;
        while s != 0 {
            head.push(byte | 0x80);
            byte = (s & 0x7f) as u8;
            s >>= 7;
        }
        head.push(byte);
        if let EntryKind::RefDelta(base) = kind {
            head.extend_from_slice(base.as_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(compressed);
        self.entries.push(IndexEntry {
            oid,
            offset: self.offset,
            crc32: crc.finalize(),
        });
        self.write(&head)?;
        self.write(compressed)
    }

    /// Writes the trailing checksum; returns the output, the pack's checksum
    /// and the entries (in pack order).
    pub fn finish(mut self) -> io::Result<(W, ObjectId, Vec<IndexEntry>)> {
        if self.entries.len() != self.expected as usize {
            return Err(io::Error::other(format!(
                "pack announced {} objects but {} were written",
                self.expected,
                self.entries.len()
            )));
        }
        let sum = self
            .hasher
            .try_finalize()
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        self.out.write_all(sum.as_bytes())?;
        self.out.flush()?;
        Ok((self.out, sum, self.entries))
    }
}

/// Writes the version 2 index of a pack whose checksum is `pack_checksum`.
/// `entries` is sorted by id here; ids must be unique.
pub fn write_index(
    out: &mut impl Write,
    entries: &mut [IndexEntry],
    pack_checksum: &ObjectId,
) -> io::Result<()> {
    entries.sort_unstable_by_key(|e| e.oid);
    if let Some(w) = entries.windows(2).find(|w| w[0].oid == w[1].oid) {
        return Err(io::Error::other(format!(
            "object {} appears twice in the pack",
            w[0].oid
        )));
    }
    let mut buf = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    buf.extend_from_slice(&[0xff, b't', b'O', b'c']);
    buf.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for e in entries.iter() {
        fanout[e.oid.as_bytes()[0] as usize] += 1;
    }
    let mut total = 0u32;
    for f in fanout {
        total += f;
        buf.extend_from_slice(&total.to_be_bytes());
    }
    for e in entries.iter() {
        buf.extend_from_slice(e.oid.as_bytes());
    }
    for e in entries.iter() {
        buf.extend_from_slice(&e.crc32.to_be_bytes());
    }
    let mut large = Vec::new();
    for e in entries.iter() {
        let v = if e.offset < 0x8000_0000 {
            e.offset as u32
        } else {
            large.push(e.offset);
            0x8000_0000 | (large.len() as u32 - 1)
        };
        buf.extend_from_slice(&v.to_be_bytes());
    }
    for o in large {
        buf.extend_from_slice(&o.to_be_bytes());
    }
    buf.extend_from_slice(pack_checksum.as_bytes());
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(&buf);
    let sum = h
        .try_finalize()
        .map_err(|e| io::Error::other(format!("{e:#}")))?;
    buf.extend_from_slice(sum.as_bytes());
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git_oid;

    #[test]
    fn gix_reads_back_what_was_written_including_a_ref_delta() {
        let dir = tempfile::tempdir().unwrap();
        let base = b"hello world, hello world, hello world\n".repeat(50);
        let mut target = base.clone();
        target.extend_from_slice(b"one more line\n");
        let base_id = git_oid(ObjectKind::Blob, &base);
        let target_id = git_oid(ObjectKind::Blob, &target);
        // A git delta: copy all of base, insert the new line.
        let mut delta = Vec::new();
        for n in [base.len(), target.len()] {
            let mut n = n;
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    delta.push(b);
                    break;
                }
                delta.push(b | 0x80);
            }
        }
        delta.push(0x80 | 0x10 | 0x20); // copy, offset 0, two size bytes
        delta.extend_from_slice(&(base.len() as u16).to_le_bytes());
        delta.push(14);
        delta.extend_from_slice(b"one more line\n");
        let z = |d: &[u8]| {
            let mut w =
                gix::zlib::stream::deflate::Write::new(Vec::new(), gix::zlib::Compression::DEFAULT);
            w.write_all(d).unwrap();
            w.flush().unwrap();
            w.into_inner()
        };
        let pack_path = dir.path().join("p.pack");
        let mut w = GitPackWriter::new(std::fs::File::create(&pack_path).unwrap(), 2).unwrap();
        w.add(
            target_id,
            EntryKind::RefDelta(base_id),
            delta.len() as u64,
            &z(&delta),
        )
        .unwrap();
        w.add(
            base_id,
            EntryKind::Base(ObjectKind::Blob),
            base.len() as u64,
            &z(&base),
        )
        .unwrap();
        let (_, sum, mut entries) = w.finish().unwrap();
        let idx_path = dir.path().join("p.idx");
        let mut f = std::fs::File::create(&idx_path).unwrap();
        write_index(&mut f, &mut entries, &sum).unwrap();
        drop(f);

        // git checks the index against the pack, every object's id and the checksums.
        let out = std::process::Command::new("git")
            .args(["verify-pack", "-v"])
            .arg(&idx_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(&format!("{base_id} blob")), "{text}");
        assert!(text.contains(&format!("{target_id} blob")), "{text}");
        assert!(text.contains("chain length = 1: 1 object"), "{text}");
        // Duplicate ids are refused.
        let mut dup = vec![entries[0], entries[0]];
        assert!(write_index(&mut Vec::new(), &mut dup, &sum).is_err());
    }
}
