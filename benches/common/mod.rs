//! Deterministic test data shared by the benchmarks (each bench includes
//! this module with `mod common;`; not every bench uses every item).
#![allow(dead_code)]

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn random_bytes(r: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn text_line(r: &mut Rng, out: &mut Vec<u8>) {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "gu", "xe", "bo", "fi", "ch",
        "st",
    ];
    for w in 0..4 + r.below(10) {
        if w > 0 {
            out.push(b' ');
        }
        for _ in 0..1 + r.below(4) {
            out.extend_from_slice(SYL[r.below(SYL.len())].as_bytes());
        }
    }
    out.push(b'\n');
}

pub fn text_bytes(r: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 100);
    while v.len() < len {
        text_line(r, &mut v);
    }
    v.truncate(len);
    v
}
