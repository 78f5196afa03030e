//! Encoding of a chunk's stored bytes: zstd, optionally of a git delta.

use crate::chunk::ChunkId;
use crate::delta;
use std::cell::RefCell;

/// Why stored bytes do not decode to the chunk they claim to be.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// zstd itself failed (compressing, or a frame it cannot read).
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    /// The frame claims more bytes than the chunk can have.
    #[error("zstd frame claims {claims} bytes, more than the {max} possible")]
    FrameTooLarge {
        /// What the frame header says.
        claims: u64,
        /// The most the chunk can have.
        max: usize,
    },
    /// The bytes are not a zstd frame that records its content size.
    #[error("not a zstd frame with a content size")]
    NotAFrame,
    /// The frame decoded to another size than its header claims.
    #[error("zstd frame gave {got} bytes instead of {want}")]
    FrameSize {
        /// What it gave.
        got: usize,
        /// What its header said.
        want: usize,
    },
    /// The git delta does not apply to its base.
    #[error("delta: {0}")]
    Delta(#[from] delta::Error),
    /// The plain bytes have another length than the index records.
    #[error("{got} plain bytes instead of {want}")]
    Length {
        /// The length decoded.
        got: usize,
        /// The length recorded.
        want: u32,
    },
    /// The plain bytes hash to another chunk id.
    #[error("content hashes to {actual}")]
    Hash {
        /// The id of what was decoded.
        actual: ChunkId,
    },
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` with zstd at `level` (a compressor per thread is reused).
pub fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>, Error> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((
                level,
                zstd::bulk::Compressor::new(level).map_err(Error::Zstd)?,
            ));
        }
        c.as_mut()
            .expect("set above")
            .1
            .compress(data)
            .map_err(Error::Zstd)
    })
}

/// Decompresses one zstd frame whose content is at most `max` bytes.
pub(crate) fn decompress(stored: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n <= max as u64 => n as usize,
        Ok(Some(claims)) => return Err(Error::FrameTooLarge { claims, max }),
        Ok(None) | Err(_) => return Err(Error::NotAFrame),
    };
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(Error::Zstd)?);
        }
        let out = d
            .as_mut()
            .expect("set above")
            .decompress(stored, size)
            .map_err(Error::Zstd)?;
        if out.len() != size {
            return Err(Error::FrameSize {
                got: out.len(),
                want: size,
            });
        }
        Ok(out)
    })
}

/// Decompresses the stored bytes of a delta chunk into the git delta that
/// gives its `raw_len` plain bytes.
pub(crate) fn decompress_delta(stored: &[u8], raw_len: u32) -> Result<Vec<u8>, Error> {
    // A git delta is at most a few bytes per 127 literal bytes larger than its result.
    decompress(stored, raw_len as usize + raw_len as usize / 64 + 64)
}

/// Decodes stored bytes into plain bytes (`base` is the plain base for a delta).
pub fn decode(stored: &[u8], raw_len: u32, base: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    match base {
        None => decompress(stored, raw_len as usize),
        Some(base) => {
            let d = decompress_delta(stored, raw_len)?;
            let mut out = Vec::with_capacity(raw_len as usize);
            delta::apply(base, &d, &mut out)?;
            Ok(out)
        }
    }
}

/// Checks plain bytes against their chunk id and length.
pub(crate) fn check(plain: &[u8], id: &ChunkId, raw_len: u32) -> Result<(), Error> {
    if plain.len() != raw_len as usize {
        return Err(Error::Length {
            got: plain.len(),
            want: raw_len,
        });
    }
    let actual = ChunkId::of(plain);
    if actual != *id {
        return Err(Error::Hash { actual });
    }
    Ok(())
}
