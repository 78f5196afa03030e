//! Git pack delta encoding and decoding.
//!
//! This is the "delta data" of `OFS_DELTA` / `REF_DELTA` pack entries, as
//! described in git's `Documentation/gitformat-pack.txt`:
//!
//! ```text
//! delta  = base-size result-size instruction*
//! size   = varint: 7 bits per byte, least significant group first,
//!          MSB set = another byte follows
//! copy   = 1xxxxxxx [offset bytes] [size bytes]
//!          bits 0-3 say which of the 4 little-endian offset bytes follow,
//!          bits 4-6 which of the 3 little-endian size bytes follow
//!          (absent bytes are 0; a size of 0 means 0x10000)
//! insert = 0nnnnnnn (n = 1..=127), then n literal bytes
//! 0x00   = reserved, invalid
//! ```
//!
//! [`encode`] works like git's `diff-delta.c`: every 16-byte-aligned 16-byte
//! block of the base goes into a hash table (runs of identical blocks once,
//! at most 64 entries per bucket), the target is scanned with a rolling hash
//! over a 16-byte window, and each hit is verified and extended forwards and
//! backwards (into pending literals) to become a copy. As in git, the window
//! after a copy still overlaps its last 15 bytes, so the next match is found
//! at once. All other bytes become inserts. Time is linear in
//! `base.len() + target.len()`, memory about 13 bytes per 16 bytes of base.

/// Errors decoding a delta.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The delta ends inside its header or inside an instruction.
    #[error("delta is truncated")]
    Truncated,
    /// A size in the delta header does not fit in 64 bits.
    #[error("delta header size does not fit in 64 bits")]
    SizeOverflow,
    /// The base's length differs from the base size in the delta header.
    #[error("delta expects a base of {expected} bytes, but the base has {actual} bytes")]
    BaseSizeMismatch {
        /// Size the header declares.
        expected: u64,
        /// Size of the base given.
        actual: u64,
    },
    /// A copy instruction reads beyond the end of the base.
    #[error("delta copies {size} bytes at offset {offset}, beyond the {base_len}-byte base")]
    CopyOutOfRange {
        /// Offset of the copy.
        offset: u64,
        /// Length of the copy.
        size: u64,
        /// Length of the base.
        base_len: u64,
    },
    /// The instructions produce more or fewer bytes than the header declares
    /// (`actual` is the size reached when stopping at the first excess).
    #[error("delta declares a {expected}-byte result, but produces {actual} bytes")]
    ResultSizeMismatch {
        /// Size the header declares.
        expected: u64,
        /// Size produced.
        actual: u64,
    },
    /// The delta contains the reserved instruction byte `0x00`.
    #[error("delta contains the reserved instruction 0x00")]
    ReservedInstruction,
}

/// Size of the indexed base blocks and of the rolling hash window.
const BLOCK: usize = 16;
/// Most literal bytes one insert instruction carries.
const MAX_INSERT: usize = 127;
/// Most bytes one copy instruction copies (3 size bytes).
const MAX_COPY: usize = 0xff_ffff;
/// Most base blocks kept per hash bucket (keeps repetitive input linear).
const BUCKET_LIMIT: usize = 64;
/// A match this long ends the search among a bucket's candidates.
const GOOD_ENOUGH: usize = 4096;

/// Read (base_size, result_size) from a delta header without applying it.
pub fn header(delta: &[u8]) -> Result<(u64, u64), Error> {
    let mut pos = 0;
    Ok((read_varint(delta, &mut pos)?, read_varint(delta, &mut pos)?))
}

/// Apply `delta` to `base`, appending the result to `out` (cleared first).
/// Checks base size, every copy range, and the final size.
///
/// On error `out` is left empty. Memory reserved up front is capped by the
/// input sizes, so a lying header cannot force a huge allocation.
pub fn apply(base: &[u8], delta: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    apply_inner(base, delta, out).inspect_err(|_| out.clear())
}

fn apply_inner(base: &[u8], delta: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut pos = 0;
    let (expected, actual) = (read_varint(delta, &mut pos)?, base.len() as u64);
    if expected != actual {
        return Err(Error::BaseSizeMismatch { expected, actual });
    }
    let (base_len, result_size) = (actual, read_varint(delta, &mut pos)?);
    // Trust the header only as far as plausible; `out` grows if needed.
    out.reserve(result_size.min((base.len() + delta.len()) as u64) as usize);
    while let Some(&op) = delta.get(pos) {
        pos += 1;
        let chunk = if op & 0x80 != 0 {
            // Bit i of `op` says that byte i of `fields` follows: bytes 0-3
            // are the offset, bytes 4-6 the size.
            let mut fields = 0u64;
            for i in (0..7).filter(|i| op & (1 << i) != 0) {
                fields |= u64::from(take(delta, &mut pos, 1)?[0]) << (8 * i);
            }
            let (offset, size) = (fields & 0xffff_ffff, fields >> 32);
            let size = if size == 0 { 0x10000 } else { size };
            if offset + size > base_len {
                return Err(Error::CopyOutOfRange {
                    offset,
                    size,
                    base_len,
                });
            }
            &base[offset as usize..(offset + size) as usize] // in range, so fits usize
        } else if op != 0 {
            take(delta, &mut pos, usize::from(op))?
        } else {
            return Err(Error::ReservedInstruction);
        };
        let (expected, actual) = (result_size, (out.len() + chunk.len()) as u64);
        if actual > expected {
            return Err(Error::ResultSizeMismatch { expected, actual });
        }
        out.extend_from_slice(chunk);
    }
    let (expected, actual) = (result_size, out.len() as u64);
    if actual != expected {
        return Err(Error::ResultSizeMismatch { expected, actual });
    }
    Ok(())
}

/// Compute a delta that turns `base` into `target`.
///
/// Always produces a valid delta that round-trips through [`apply`], even for
/// an empty base or target (the latter padded to git's 4-byte minimum).
pub fn encode(base: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + target.len() / 64);
    // git's patch_delta() rejects deltas shorter than 4 bytes, so pad the
    // header of an empty target with redundant continuation bytes.
    let min_len = if target.is_empty() { 2 } else { 1 };
    push_varint(&mut out, base.len() as u64, min_len);
    push_varint(&mut out, target.len() as u64, min_len);
    let mut pending = 0; // start of the target bytes not yet emitted
    if target.len() >= BLOCK {
        let index = Index::new(base);
        // Start of the rolling hash window. After a copy, the window ends at
        // the first byte not yet emitted: a match found there may begin in
        // the copied bytes; its rest is used if it has at least BLOCK bytes.
        let mut pos = 0;
        let mut hash = window_hash(&target[..BLOCK]);
        while !index.entries.is_empty() && pos + BLOCK <= target.len() {
            let start = pos.max(pending);
            match index.best_match(hash, target, pos) {
                Some((offset, len)) if pos + len >= start + BLOCK => {
                    let offset = offset + (start - pos);
                    let back = common_suffix(&index.base[..offset], &target[pending..start]);
                    push_inserts(&mut out, &target[pending..start - back]);
                    push_copies(&mut out, offset - back, pos + len - start + back);
                    pending = pos + len;
                    pos = pending - (BLOCK - 1);
                    if pos + BLOCK <= target.len() {
                        hash = window_hash(&target[pos..pos + BLOCK]);
                    }
                }
                _ if pos + BLOCK < target.len() => {
                    hash = roll(hash, target[pos], target[pos + BLOCK]);
                    pos += 1;
                }
                _ => break,
            }
        }
    }
    push_inserts(&mut out, &target[pending..]);
    out
}

/// The next `len` bytes of `data` at `*pos`, advancing `*pos`.
fn take<'d>(data: &'d [u8], pos: &mut usize, len: usize) -> Result<&'d [u8], Error> {
    let bytes = data.get(*pos..*pos + len).ok_or(Error::Truncated)?;
    *pos += len;
    Ok(bytes)
}

fn read_varint(data: &[u8], pos: &mut usize) -> Result<u64, Error> {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = take(data, pos, 1)?[0];
        let bits = u64::from(byte & 0x7f);
        if shift >= 64 || (bits << shift) >> shift != bits {
            return Err(Error::SizeOverflow);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// Append `value` as a varint of at least `min_len` bytes.
fn push_varint(out: &mut Vec<u8>, mut value: u64, min_len: usize) {
    for len in 1.. {
        if value < 0x80 && len >= min_len {
            return out.push(value as u8);
        }
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
}

fn push_inserts(out: &mut Vec<u8>, literal: &[u8]) {
    for chunk in literal.chunks(MAX_INSERT) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

/// Emit copies of `len` bytes at `offset` (below 2^32, see [`Index::new`]).
fn push_copies(out: &mut Vec<u8>, mut offset: usize, mut len: usize) {
    while len > 0 {
        let size = len.min(MAX_COPY);
        // Offset in bytes 0-3, size in bytes 4-6 (none for 0x10000); only
        // nonzero bytes are written, each flagged by its bit in the opcode.
        let fields = offset as u64 | (size as u64 * u64::from(size != 0x10000)) << 32;
        let at = out.len();
        out.push(0x80);
        for i in 0..7 {
            let byte = (fields >> (8 * i)) as u8;
            if byte != 0 {
                out[at] |= 1 << i;
                out.push(byte);
            }
        }
        offset += size;
        len -= size;
    }
}

/// Random table for the buzhash rolling hash (splitmix64 output).
const TABLE: [u64; 256] = {
    let (mut table, mut state, mut i) = ([0u64; 256], 0x243f_6a88_85a3_08d3u64, 0);
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
};

/// Buzhash of a `BLOCK`-byte window: XOR of `TABLE[byte]` rotated by the
/// byte's distance from the window's end.
fn window_hash(window: &[u8]) -> u64 {
    let term = |(i, &b): (usize, &u8)| TABLE[usize::from(b)].rotate_left((BLOCK - 1 - i) as u32);
    window.iter().enumerate().map(term).fold(0, |h, t| h ^ t)
}

/// Slide the window of `hash` by one byte: drop `old`, add `new`.
fn roll(hash: u64, old: u8, new: u8) -> u64 {
    let old = TABLE[usize::from(old)].rotate_left(BLOCK as u32);
    hash.rotate_left(1) ^ old ^ TABLE[usize::from(new)]
}

/// Number of equal leading bytes.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let (n, mut i) = (a.len().min(b.len()), 0);
    while i + 64 <= n && a[i..i + 64] == b[i..i + 64] {
        i += 64;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Number of equal trailing bytes.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let pairs = a.iter().rev().zip(b.iter().rev());
    pairs.take_while(|(x, y)| x == y).count()
}

#[derive(Clone, Copy, Default)]
struct Entry {
    /// High 32 bits of the block's hash, to skip most collisions cheaply.
    check: u32,
    /// Block number: the block starts at base offset `block * BLOCK`.
    block: u32,
}

/// Hash table of the base's aligned blocks.
struct Index<'a> {
    /// The base, cut to what 4-byte copy offsets can address.
    base: &'a [u8],
    /// Bit `hash & (8 * filter.len() - 1)` is set for each indexed block: most
    /// windows without a match are rejected with one cache-friendly lookup.
    filter: Vec<u8>,
    /// Bucket `hash & (starts.len() - 2)` is `entries[starts[b]..starts[b + 1]]`.
    starts: Vec<u32>,
    entries: Vec<Entry>,
}

impl<'a> Index<'a> {
    fn new(base: &'a [u8]) -> Self {
        let addressable = usize::try_from(1u64 << 32).unwrap_or(usize::MAX);
        let base = &base[..base.len().min(addressable)];
        let buckets = (base.len() / BLOCK).next_power_of_two();
        let bucket = |hash: u64| hash as usize & (buckets - 1);
        // Count per bucket, turn counts into bucket ends, then fill backwards.
        let mut starts = vec![0u32; buckets + 1];
        each_block(base, |_, hash| starts[bucket(hash)] += 1);
        let mut total = 0;
        for start in &mut starts {
            total += *start;
            *start = total;
        }
        let mut entries = vec![Entry::default(); total as usize];
        let mut filter = vec![0u8; buckets];
        each_block(base, |block, hash| {
            let bit = hash as usize & (8 * buckets - 1);
            filter[bit / 8] |= 1 << (bit % 8);
            let start = &mut starts[bucket(hash)];
            *start -= 1;
            let (check, block) = ((hash >> 32) as u32, block as u32);
            entries[*start as usize] = Entry { check, block };
        });
        // Thin out overfull buckets to BUCKET_LIMIT entries spread evenly.
        let mut kept = 0;
        for b in 0..buckets {
            let (start, len) = (starts[b] as usize, (starts[b + 1] - starts[b]) as usize);
            starts[b] = kept as u32;
            if len > BUCKET_LIMIT {
                for i in 0..BUCKET_LIMIT {
                    entries[kept + i] = entries[start + i * len / BUCKET_LIMIT];
                }
            } else if kept != start {
                entries.copy_within(start..start + len, kept);
            }
            kept += len.min(BUCKET_LIMIT);
        }
        starts[buckets] = kept as u32;
        entries.truncate(kept);
        entries.shrink_to_fit();
        Index {
            base,
            filter,
            starts,
            entries,
        }
    }

    /// Longest base match `(offset, len)` with `len >= BLOCK` for the target
    /// window at `pos`, whose hash is `hash`.
    fn best_match(&self, hash: u64, target: &[u8], pos: usize) -> Option<(usize, usize)> {
        let bit = hash as usize & (8 * self.filter.len() - 1);
        if self.filter[bit / 8] & (1 << (bit % 8)) == 0 {
            return None;
        }
        let b = hash as usize & (self.starts.len() - 2);
        let candidates = &self.entries[self.starts[b] as usize..self.starts[b + 1] as usize];
        let rest = &target[pos..];
        let (mut best, mut best_len) = (None, BLOCK - 1);
        for entry in candidates.iter().filter(|e| e.check == (hash >> 32) as u32) {
            let offset = entry.block as usize * BLOCK;
            let candidate = &self.base[offset..];
            // Only a candidate that also matches at `best_len` can do better.
            match (candidate.get(best_len), rest.get(best_len)) {
                (Some(a), Some(b)) if a == b => {}
                _ => continue,
            }
            let len = common_prefix(candidate, rest);
            if len > best_len {
                (best, best_len) = (Some((offset, len)), len);
                if len >= GOOD_ENOUGH || len == rest.len() {
                    break;
                }
            }
        }
        best
    }
}

/// Call `f(block, hash)` for the base blocks to index, last block first,
/// skipping each block whose hash equals its predecessor's (runs of identical
/// blocks are indexed once, at their start).
fn each_block(base: &[u8], mut f: impl FnMut(usize, u64)) {
    let hash = |block: usize| window_hash(&base[block * BLOCK..][..BLOCK]);
    let blocks = base.len() / BLOCK;
    let mut current = if blocks > 0 { hash(blocks - 1) } else { 0 };
    for block in (0..blocks).rev() {
        let previous = if block > 0 { hash(block - 1) } else { !current };
        if previous != current {
            f(block, current);
        }
        current = previous;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index as At;

    /// Deterministic pseudo-random bytes from an alphabet of `alphabet` symbols.
    fn bytes(seed: u64, len: usize, alphabet: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = move |_| {
            state = state.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(1);
            ((state >> 33) % alphabet) as u8
        };
        (0..len).map(&mut next).collect()
    }

    /// Encode, check the header, apply, and compare; returns the delta.
    fn round_trip(base: &[u8], target: &[u8]) -> Vec<u8> {
        let delta = encode(base, target);
        assert_eq!(header(&delta), Ok((base.len() as u64, target.len() as u64)));
        let mut out = vec![1, 2, 3];
        apply(base, &delta, &mut out).unwrap();
        assert!(out == target, "round trip differs");
        delta
    }

    /// Insert, delete, replace or rotate at a random place.
    fn edit(data: &mut Vec<u8>, (kind, at, len, seed): (u8, At, usize, u64)) {
        let at = at.index(data.len() + 1);
        let end = (at + len).min(data.len());
        match kind {
            0 => drop(data.splice(at..at, bytes(seed, len, 256))),
            1 => drop(data.drain(at..end)),
            2 => drop(data.splice(at..end, bytes(seed, len, 256))),
            _ => data.rotate_left(at),
        }
    }

    fn alphabet() -> impl Strategy<Value = u64> {
        prop::sample::select(vec![1u64, 2, 4, 256])
    }

    proptest! {
        #[test]
        fn edited_targets_round_trip(
            seed in any::<u64>(), len in 0usize..65536, alphabet in alphabet(),
            edits in prop::collection::vec((0u8..4, any::<At>(), 1usize..300, any::<u64>()), 0..8),
        ) {
            let base = bytes(seed, len, alphabet);
            let budget: usize = 16 + edits.iter().map(|e| 2 * e.2 + 64).sum::<usize>();
            let mut target = base.clone();
            edits.into_iter().for_each(|e| edit(&mut target, e));
            let delta = round_trip(&base, &target);
            // Random bases have no accidental matches; each edit costs little.
            prop_assert!(alphabet < 256 || delta.len() <= budget, "{} > {budget}", delta.len());
        }

        #[test]
        fn unrelated_targets_round_trip(
            seeds in any::<(u64, u64)>(), lens in (0usize..65536, 0usize..65536), alphabet in alphabet(),
        ) {
            round_trip(&bytes(seeds.0, lens.0, alphabet), &bytes(seeds.1, lens.1, alphabet));
        }

        #[test]
        fn apply_never_panics(base in prop::collection::vec(any::<u8>(), 0..64),
                              size in 0u64..200, rest in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut delta = Vec::new();
            push_varint(&mut delta, base.len() as u64, 1);
            push_varint(&mut delta, size, 1);
            delta.extend_from_slice(&rest);
            let mut out = Vec::new();
            match apply(&base, &delta, &mut out) {
                Ok(()) => prop_assert_eq!(out.len() as u64, size),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        assert_eq!(encode(&[], &[]), [0x80, 0x00, 0x80, 0x00]);
        assert_eq!(round_trip(b"abc", &[]), [0x83, 0x00, 0x80, 0x00]);
        round_trip(&[], b"hello");
        round_trip(b"short", b"short base, longer target: short short short");
        round_trip(&bytes(1, 1000, 256), &bytes(1, 15, 256));
        round_trip(&bytes(1, 1000, 256), &bytes(1, 16, 256));
    }

    #[test]
    fn header_reads_sizes() {
        assert_eq!(header(&[0x90, 0x01, 0x05, 0xff]), Ok((0x90, 5)));
        assert_eq!(header(&[0x90, 0x01]), Err(Error::Truncated));
        let mut max = [0xff; 11];
        (max[9], max[10]) = (0x01, 0x00);
        assert_eq!(header(&max), Ok((u64::MAX, 0)));
        max[9] = 0x02;
        assert_eq!(header(&max), Err(Error::SizeOverflow));
    }

    #[test]
    fn apply_rejects_malformed_deltas() {
        let base: Vec<u8> = (0..32).collect();
        let check = |delta: &[u8], expected: Error| {
            let mut out = vec![9];
            assert_eq!(apply(&base, delta, &mut out), Err(expected), "{delta:x?}");
            assert!(out.is_empty());
        };
        let base_len = 32;
        let range = |offset, size| Error::CopyOutOfRange {
            offset,
            size,
            base_len,
        };
        let result = |expected, actual| Error::ResultSizeMismatch { expected, actual };
        check(&[], Error::Truncated);
        check(&[32], Error::Truncated);
        check(&[32, 4, 0x91, 1], Error::Truncated); // size byte missing
        check(&[32, 4, 0x04, b'a', b'b'], Error::Truncated); // literal cut short
        let (expected, actual) = (31, 32);
        check(
            &[31, 1, 1, b'a'],
            Error::BaseSizeMismatch { expected, actual },
        );
        check(&[32, 8, 0x91, 30, 8], range(30, 8));
        check(&[32, 8, 0x80], range(0, 0x10000)); // no size bytes: 0x10000
        check(&[32, 4, 0x02, b'a', b'b', 0x00], Error::ReservedInstruction);
        check(&[32, 5, 0x04, b'a', b'b', b'c', b'd'], result(5, 4));
        check(&[32, 3, 0x04, b'a', b'b', b'c', b'd'], result(3, 4));
        check(&[32, 3, 0x90, 4], result(3, 4));
        let mut out = Vec::new();
        apply(&base, &[32, 5, 0x91, 30, 2, 0x03, 7, 8, 9], &mut out).unwrap();
        assert_eq!(out, [30, 31, 7, 8, 9]);
    }

    #[test]
    fn decodes_hand_built_delta() {
        let base = bytes(5, 0x30000, 256);
        let mut delta = vec![0x80, 0x80, 0x0c]; // base size 0x30000
        push_varint(&mut delta, 0x10000 + 3 + 0x105 + 7 + 0x200, 1);
        delta.extend([0x87, 0x45, 0x23, 0x01]); // offset 0x012345, no size bytes: 0x10000
        delta.extend([0x03, b'x', b'y', b'z']); // insert "xyz"
        delta.extend([0xbf, 0x10, 0x00, 0x02, 0x00, 0x05, 0x01]); // 4 offset and 2 size bytes
        delta.extend([0xf0, 0x07, 0x00, 0x00]); // offset 0, 3 size bytes
        delta.extend([0xa2, 0x01, 0x02]); // only offset byte 1 and size byte 1
        let mut out = Vec::new();
        apply(&base, &delta, &mut out).unwrap();
        let mut expected = base[0x12345..0x22345].to_vec();
        expected.extend(b"xyz".iter().chain(&base[0x20010..0x20115]));
        expected.extend(base[..7].iter().chain(&base[0x100..0x300]));
        assert!(out == expected);
    }

    #[test]
    fn encodes_copy_sizes_and_splits_long_copies() {
        let base = bytes(3, MAX_COPY + 1000, 256);
        // Size 0x10000 at offset 0 is the single byte 0x80.
        let delta = round_trip(&base[..0x20000], &base[..0x10000]);
        assert_eq!(delta[6..], [0x80]);
        let delta = round_trip(&base[..0x20000], &base[0x1234..0x1234 + 0x10203]);
        assert_eq!(delta[6..], [0xf3, 0x34, 0x12, 0x03, 0x02, 0x01]);
        // 0xffffff bytes at 0, then 1000 (0x3e8) bytes at 0xffffff.
        let copies = [0xf0, 0xff, 0xff, 0xff, 0xb7, 0xff, 0xff, 0xff, 0xe8, 0x03];
        assert_eq!(round_trip(&base, &base)[8..], copies);
    }

    #[test]
    fn small_edits_give_small_deltas() {
        let base = bytes(7, 1 << 20, 256);
        let mut target = base.clone();
        target.splice(900_000..900_002, *b"!?");
        target.insert(700_000, b'+');
        target.splice(500_000..500_004, *b"abcd");
        target.drain(300_000..300_005);
        target.splice(100_000..100_000, *b"xyz");
        assert!(round_trip(&base, &target).len() < 128);

        let line = |i: usize| format!("{i:5}: the quick brown fox {}\n", i * 7919 % 1000);
        let base: String = (0..3000).map(line).collect();
        let target: String = (0..3000)
            .map(|i| match i {
                10 => "changed line\n".to_string(),
                1500 => line(i).replace("fox", "cat") + "an inserted line\n",
                2000..=2009 => String::new(),
                _ => line(i),
            })
            .collect();
        let n = round_trip(base.as_bytes(), target.as_bytes()).len();
        assert!(n < 128, "{n}");

        let zeros = vec![0u8; 1 << 20];
        let mut target = zeros.clone();
        target[12_345] = 1;
        assert!(round_trip(&zeros, &target).len() < 64);
        let periodic: Vec<u8> = (0..1 << 20).map(|i| (i % 17) as u8).collect();
        let target = [&periodic[5..500_000], b"edit", &periodic[1000..]].concat();
        assert!(round_trip(&periodic, &target).len() < 64);
    }
}
