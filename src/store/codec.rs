//! Encoding of a chunk's stored bytes: zstd, optionally of a git delta.

use crate::chunk::ChunkId;
use crate::delta;
use std::cell::RefCell;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` with zstd at `level` (a compressor per thread is reused).
pub fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>, String> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((
                level,
                zstd::bulk::Compressor::new(level).map_err(|e| e.to_string())?,
            ));
        }
        c.as_mut()
            .expect("set above")
            .1
            .compress(data)
            .map_err(|e| format!("zstd: {e}"))
    })
}

/// Decompresses one zstd frame whose content is at most `max` bytes.
pub(crate) fn decompress(stored: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n as usize <= max => n as usize,
        Ok(Some(n)) => {
            return Err(format!(
                "zstd frame claims {n} bytes, more than the {max} possible"
            ))
        }
        Ok(None) | Err(_) => return Err("not a zstd frame with a content size".into()),
    };
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let out = d
            .as_mut()
            .expect("set above")
            .decompress(stored, size)
            .map_err(|e| format!("zstd: {e}"))?;
        if out.len() != size {
            return Err(format!(
                "zstd frame gave {} bytes instead of {size}",
                out.len()
            ));
        }
        Ok(out)
    })
}

/// Decompresses the stored bytes of a delta chunk into the git delta that
/// gives its `raw_len` plain bytes.
pub(crate) fn decompress_delta(stored: &[u8], raw_len: u32) -> Result<Vec<u8>, String> {
    // A git delta is at most a few bytes per 127 literal bytes larger than its result.
    decompress(stored, raw_len as usize + raw_len as usize / 64 + 64)
}

/// Decodes stored bytes into plain bytes (`base` is the plain base for a delta).
pub fn decode(stored: &[u8], raw_len: u32, base: Option<&[u8]>) -> Result<Vec<u8>, String> {
    match base {
        None => decompress(stored, raw_len as usize),
        Some(base) => {
            let d = decompress_delta(stored, raw_len)?;
            let mut out = Vec::with_capacity(raw_len as usize);
            delta::apply(base, &d, &mut out).map_err(|e| format!("delta: {e}"))?;
            Ok(out)
        }
    }
}

/// Checks plain bytes against their chunk id and length.
pub(crate) fn check(plain: &[u8], id: &ChunkId, raw_len: u32) -> Result<(), String> {
    if plain.len() != raw_len as usize {
        return Err(format!("{} plain bytes instead of {raw_len}", plain.len()));
    }
    let actual = ChunkId::of(plain);
    if actual != *id {
        return Err(format!("content hashes to {actual}"));
    }
    Ok(())
}
