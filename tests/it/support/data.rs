//! Deterministic test data: one pseudo-random generator ([`Rng`], splitmix64)
//! and what the tests and benchmarks build from it: incompressible bytes
//! ([`random_bytes`]), text-like bytes ([`text_bytes`], [`Rng::text_line`])
//! and versioned text files ([`text`]).
//!
//! Self-contained (std only) so that the benchmarks include this very file
//! (`#[path = "../tests/it/support/data.rs"]`) instead of keeping a copy.

/// splitmix64: deterministic pseudo-random numbers for test data.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
    }

    /// `len` pseudo-random (incompressible) bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Appends one line of pseudo-text (4-13 words of 1-4 syllables).
    pub fn text_line(&mut self, out: &mut Vec<u8>) {
        const SYL: [&str; 16] = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "gu", "xe", "bo", "fi",
            "ch", "st",
        ];
        for w in 0..4 + self.below(10) {
            if w > 0 {
                out.push(b' ');
            }
            for _ in 0..1 + self.below(4) {
                out.extend_from_slice(SYL[self.index(SYL.len())].as_bytes());
            }
        }
        out.push(b'\n');
    }

    /// `len` bytes of pseudo-text.
    pub fn text_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 100);
        while v.len() < len {
            self.text_line(&mut v);
        }
        v.truncate(len);
        v
    }
}

/// `len` pseudo-random (incompressible) bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng(seed).bytes(len)
}

/// `len` bytes of pseudo-text from `seed`.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng(seed).text_bytes(len)
}

/// Words of the text files [`text`] writes.
const WORDS: &[&str] = &[
    "store", "pack", "chunk", "delta", "index", "snapshot", "restore", "verify", "commit", "tree",
    "blob", "tag", "branch", "mirror", "fetch", "object", "damage", "repair", "backup", "vault",
    "prune", "forget", "keep",
];

/// A text file of `lines` numbered lines from `seed`; each `version` changes
/// about one line in six of version 0 (the others stay as they are), so the
/// versions of one file deltify and share chunks the way edited files do.
pub fn text(seed: u64, lines: usize, version: u64) -> String {
    let mut out = String::new();
    for i in 0..lines {
        let mut r = Rng(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let v = if r.below(6) == 0 { version } else { 0 };
        let mut r = Rng(r.next() ^ v.wrapping_mul(0x1234_5678_9abc));
        out.push_str(&format!("{i:04}"));
        for _ in 0..(3 + r.below(6)) {
            out.push(' ');
            out.push_str(WORDS[r.index(WORDS.len())]);
        }
        out.push('\n');
    }
    out
}
