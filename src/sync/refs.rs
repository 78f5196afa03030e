//! Refs that cannot be mirrored: a name git itself ignores (`refs/heads/with
//! space` in a packed-refs file, which git advertises with a null id), or one
//! the mirror's file system refuses (a 2000-character branch). One such ref
//! must not fail the whole repository: every other ref is backed up, and the
//! skipped ones are named and recorded in the snapshot (incomplete).
//!
//! gix refuses a whole ref listing when one line does not parse, so the
//! listing is read a second, tolerant way ([`list_tolerant`]) to learn which
//! refs are bad, and the fetch then asks the server only for ref prefixes
//! that cover every good ref and no bad one ([`prefix_cover`]).

use super::fetch::refs_from_remote;
use crate::snapshot::{RefEntry, SkippedRef};
use gix::bstr::{BStr, ByteSlice};
use gix::protocol::handshake::Ref;

/// The longest file name most file systems take (255) less `.lock`.
const MAX_COMPONENT: usize = 250;

/// Why a mirror cannot hold the ref `name` pointing at `target`, if it cannot.
pub fn unmirrorable(name: &[u8], target: Option<gix::ObjectId>) -> Option<String> {
    if name != b"HEAD" {
        if let Err(e) = gix::refs::FullName::try_from(BStr::new(name)) {
            return Some(format!("not a valid ref name, git itself ignores it ({e})"));
        }
        if name.split(|b| *b == b'/').any(|c| c.len() > MAX_COMPONENT) {
            return Some(format!(
                "the name is too long for a file system ({} bytes, a path component over {MAX_COMPONENT})",
                name.len()
            ));
        }
    }
    if target.is_some_and(|t| t.is_null()) {
        return Some("the source advertises it without an object".into());
    }
    None
}

/// Splits refs into those a mirror can hold and the skipped ones.
pub fn partition(refs: Vec<RefEntry>) -> (Vec<RefEntry>, Vec<SkippedRef>) {
    let mut good = Vec::with_capacity(refs.len());
    let mut skipped = Vec::new();
    for r in refs {
        let why = unmirrorable(&r.name, r.target).or_else(|| {
            r.symref
                .as_deref()
                .and_then(|s| unmirrorable(s, None))
                .map(|w| format!("it points to a ref that cannot be mirrored: {w}"))
        });
        match why {
            Some(reason) => skipped.push(SkippedRef {
                name: r.name,
                target: r.target,
                reason,
            }),
            None => good.push(r),
        }
    }
    skipped.sort();
    (good, skipped)
}

/// Parses one ls-refs (protocol v2) line the way gix does, or, when gix
/// cannot, returns the ref it names as skipped: the name is what follows the
/// id up to any trailing `peeled:`/`symref-target:` attributes.
fn parse_v2_line(line: &BStr) -> Result<Ref, SkippedRef> {
    let trimmed = line.trim_end();
    if let Some(r) = strict_v2(trimmed.as_bstr()) {
        return Ok(r);
    }
    let (id, rest) = match trimmed.find_byte(b' ') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, &b""[..]),
    };
    let mut name = rest;
    while let Some(i) = name.rfind_byte(b' ') {
        let attr = &name[i + 1..];
        if attr.starts_with(b"peeled:") || attr.starts_with(b"symref-target:") {
            name = &name[..i];
        } else {
            break;
        }
    }
    let target = gix::ObjectId::from_hex(id).ok();
    Err(SkippedRef {
        name: name.to_vec(),
        target: target.filter(|t| !t.is_null()),
        reason: unmirrorable(name, target)
            .unwrap_or_else(|| "the source advertises it in a form that cannot be read".into()),
    })
}

/// The strict v2 grammar: `<id|unborn> <name>[ symref-target:<t>][ peeled:<id>]`.
fn strict_v2(line: &BStr) -> Option<Ref> {
    let mut tokens = line.splitn(4, |b| *b == b' ');
    let id = tokens.next()?;
    let name = tokens.next().filter(|n| !n.is_empty())?;
    let id = if id == b"unborn" {
        None
    } else {
        Some(gix::ObjectId::from_hex(id).ok()?)
    };
    let (mut symref, mut peeled) = (None, None);
    for attr in tokens {
        if let Some(v) = attr.strip_prefix(b"symref-target:") {
            symref = Some(v);
        } else if let Some(v) = attr.strip_prefix(b"peeled:") {
            peeled = Some(gix::ObjectId::from_hex(v).ok()?);
        } else {
            return None;
        }
    }
    let full_ref_name = name.as_bstr().to_owned();
    Some(match (symref, id, peeled) {
        (Some(t), None, _) => Ref::Unborn {
            full_ref_name,
            target: t.as_bstr().to_owned(),
        },
        (Some(t), Some(id), peeled) if t != b"(null)" => Ref::Symbolic {
            full_ref_name,
            tag: peeled.map(|_| id),
            object: peeled.unwrap_or(id),
            target: t.as_bstr().to_owned(),
        },
        (_, Some(tag), Some(object)) => Ref::Peeled {
            full_ref_name,
            tag,
            object,
        },
        (_, Some(object), None) => Ref::Direct {
            full_ref_name,
            object,
        },
        (None, None, _) => return None,
    })
}

/// Lists the refs of `remote` reading each ls-refs line on its own: the refs
/// a mirror can hold, and the skipped ones (lines gix cannot parse included).
pub fn list_tolerant(
    repo: &gix::Repository,
    remote: &gix::Remote<'_>,
    url: &str,
) -> Result<(Vec<RefEntry>, Vec<SkippedRef>), String> {
    use gix::protocol::transport::client::blocking_io::TransportV2Ext;
    use gix::protocol::transport::client::TransportWithoutIO;
    use gix::remote::Direction;
    let d = |e: gix::Error| super::fetch::describe(&e);
    let mut conn = remote.connect(Direction::Fetch).map_err(d)?;
    if let Some(opts) = repo.transport_options(url, None).map_err(d)? {
        conn.transport_mut()
            .configure(&*opts)
            .map_err(|e| format!("cannot configure the transport: {e}"))?;
    }
    let handshake = gix::protocol::handshake(
        &mut *conn.transport_mut(),
        gix::protocol::transport::Service::UploadPack,
        |_| Ok(None),
        Vec::new(),
        &mut gix::progress::Discard,
    )
    .map_err(d)?;
    let mut parsed = Vec::new();
    let mut bad = Vec::new();
    if let Some(refs) = handshake.refs {
        parsed = refs;
    } else {
        let caps = &handshake.capabilities;
        let cmd = gix::protocol::Command::LsRefs;
        let version = gix::protocol::transport::Protocol::V2;
        let mut features = cmd.default_features(version, caps);
        features.push((
            "agent",
            Some(concat!("repovault/", env!("CARGO_PKG_VERSION")).into()),
        ));
        let mut args = cmd.initial_v2_arguments(&features);
        if caps
            .capability("ls-refs")
            .and_then(|c| c.supports("unborn"))
            .unwrap_or_default()
        {
            args.push("unborn".into());
        }
        let mut reader = conn
            .transport_mut()
            .invoke(
                cmd.as_str(),
                features.into_iter(),
                Some(args.into_iter()),
                false,
            )
            .map_err(|e| format!("listing refs: {e}"))?;
        while let Some(line) = reader.readline() {
            let line = line.map_err(|e| format!("reading the ref listing: {e}"))?;
            let line = line.map_err(|e| format!("decoding the ref listing: {e}"))?;
            let Some(text) = line.as_bstr() else {
                continue;
            };
            match parse_v2_line(text) {
                Ok(r) => parsed.push(r),
                Err(s) => bad.push(s),
            }
        }
    }
    let (good, mut skipped) = partition(refs_from_remote(&parsed));
    skipped.extend(bad);
    skipped.sort();
    skipped.dedup_by(|a, b| a.name == b.name);
    Ok((good, skipped))
}

/// Ref prefixes that together match every name of `good` and none of `bad`
/// (`HEAD` left out: ask for it on its own). Each is the shortest prefix of a
/// good name that is not a prefix of a bad one.
///
/// # Errors
/// The good name that is itself a prefix of a bad one: no prefix separates them.
pub fn prefix_cover(good: &[&[u8]], bad: &[&[u8]]) -> Result<Vec<Vec<u8>>, Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for g in good.iter().filter(|g| **g != b"HEAD") {
        let lcp = bad
            .iter()
            .map(|b| g.iter().zip(b.iter()).take_while(|(x, y)| x == y).count())
            .max()
            .unwrap_or(0);
        if lcp >= g.len() {
            return Err(g.to_vec());
        }
        // A prefix within "refs/" is sent as a one-sided glob refspec `<prefix>*`,
        // which must parse; a longer prefix (at most the whole name) always does.
        let mut len = (lcp + 1).max(6).min(g.len());
        while len < g.len() && glob_spec(&g[..len]).is_none() {
            len += 1;
        }
        out.push(g[..len].to_vec());
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(out.len());
    for p in out {
        if !kept.last().is_some_and(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// The fetch refspec asking for the refs starting with `prefix`.
pub fn glob_spec(prefix: &[u8]) -> Option<gix::refspec::RefSpec> {
    let mut spec = prefix.to_vec();
    spec.push(b'*');
    let parsed = gix::refspec::parse(spec.as_bstr(), gix::refspec::parse::Operation::Fetch).ok()?;
    parsed
        .prefix()
        .is_some_and(|p| p == prefix)
        .then(|| parsed.to_owned())
}

/// The fetch refspec asking for exactly `name`.
pub fn exact_spec(name: &[u8]) -> Option<gix::refspec::RefSpec> {
    gix::refspec::parse(name.as_bstr(), gix::refspec::parse::Operation::Fetch)
        .ok()
        .map(|s| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_separates_good_from_bad() {
        let good: Vec<&[u8]> = vec![
            b"refs/heads/main",
            b"refs/heads/wiz",
            b"refs/tags/v1",
            b"HEAD",
        ];
        let bad: Vec<&[u8]> = vec![b"refs/heads/with space"];
        let cover = prefix_cover(&good, &bad).unwrap();
        for g in &good[..3] {
            assert!(cover.iter().any(|p| g.starts_with(p)), "{cover:?}");
        }
        for b in &bad {
            assert!(!cover.iter().any(|p| b.starts_with(p)), "{cover:?}");
        }
        let good: Vec<&[u8]> = vec![b"refs/heads/with"];
        assert!(prefix_cover(&good, &bad).is_err());
    }

    #[test]
    fn unparsable_lines_become_skipped_refs() {
        let line = BStr::new(b"0000000000000000000000000000000000000000 refs/heads/with space");
        let s = parse_v2_line(line).unwrap_err();
        assert_eq!(s.name, b"refs/heads/with space");
        assert!(s.target.is_none());
        let ok = parse_v2_line(BStr::new(
            b"a8dd12687eda0054082815552320193a98f70879 refs/tags/v1 peeled:6899172a956bf1ab4a4f3036b019ea67a0578645",
        ))
        .unwrap();
        assert!(matches!(ok, Ref::Peeled { .. }));
    }
}
