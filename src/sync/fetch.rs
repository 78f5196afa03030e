//! The mirror cache: a bare repository per source, fetched with gix.
//!
//! Every ref of the remote is taken (`+refs/*:refs/*`), HEAD's target is
//! mirrored, and refs the remote no longer has are deleted from the mirror.
//! A token is sent as an HTTP `Authorization` header set in the repository's
//! in-memory configuration only: nothing is written to the mirror's config.

use super::Error;
use crate::secret::Auth;
use crate::snapshot::{RefEntry, SkippedRef};
use gix::bstr::ByteSlice;
use gix::remote::Direction;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Why a fetch (or a listing of a remote's refs) failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The remote, or the way to it, failed as gix reports it.
    #[error("{detail}")]
    Remote {
        /// gix's error and its causes as one line ([`describe`]).
        detail: String,
        /// What kind of failure it was, read from gix's typed error.
        transport: Transport,
    },
    /// The in-memory configuration of the mirror refused the auth header.
    #[error("cannot set the auth header: {0}")]
    AuthHeader(String),
    /// The server sent a ref that cannot be mirrored although it was not asked for.
    #[error("the server sent ref {name} although it was not asked for ({reason}): it cannot be left out")]
    UnaskedRef {
        /// The ref, as shown.
        name: String,
        /// Why it cannot be mirrored.
        reason: String,
    },
    /// A ref shares every prefix with a ref that cannot be mirrored.
    #[error("ref {name} cannot be fetched without refs that cannot be mirrored ({skipped}): rename one of them in the source")]
    Inseparable {
        /// The ref that cannot be asked for alone.
        name: String,
        /// The refs that cannot be mirrored, comma-separated.
        skipped: String,
    },
    /// A ref prefix cannot be written as a refspec.
    #[error("cannot ask for refs starting with {prefix}")]
    BadPrefix {
        /// The prefix.
        prefix: String,
    },
    /// A redirect of the remote is not followed.
    #[error("{url} redirects to {to}{why}")]
    Redirect {
        /// The remote.
        url: String,
        /// Where it redirects to (no user info or query).
        to: String,
        /// Why it is not followed, and the fix.
        why: String,
    },
}

/// What kind of transport failure a gix error is: decided from its types
/// (gix's error classes, the HTTP status of reqwest's error, I/O error
/// kinds), never from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Worth trying again: the connection was refused, reset or aborted, timed
    /// out, or the server answered 5xx or 429.
    Transient,
    /// The server rejected the credentials (HTTP 401 or 403).
    Rejected,
    /// gix refused to follow a redirect (it follows none once the token is a
    /// configured header).
    RedirectRefused,
    /// Anything else: a protocol error, a missing repository, a local failure.
    Other,
}

impl Transport {
    /// Reads what kind of failure `e` is from its types.
    pub fn of(e: &gix::Error) -> Transport {
        use gix::protocol::transport::client::AuthenticationRequired;
        use std::io::ErrorKind as K;
        let http = e.downcast_any_ref::<reqwest::Error>();
        let status = http.and_then(reqwest::Error::status);
        // A 401 during the handshake: gix asks for credentials (repovault has
        // none to give beyond the configured header) and reports the refusal
        // as its `Unauthenticated` class; a 401 later keeps the transport's
        // `AuthenticationRequired`; a 403 is reqwest's status.
        if e.is_unauthenticated()
            || e.downcast_any_ref::<AuthenticationRequired>().is_some()
            || status.is_some_and(|s| {
                s == reqwest::StatusCode::UNAUTHORIZED || s == reqwest::StatusCode::FORBIDDEN
            })
        {
            return Transport::Rejected;
        }
        if http.is_some_and(reqwest::Error::is_redirect) {
            return Transport::RedirectRefused;
        }
        if status.is_some_and(|s| {
            s.is_server_error() && s != reqwest::StatusCode::NOT_IMPLEMENTED
                || s == reqwest::StatusCode::TOO_MANY_REQUESTS
        }) || http.is_some_and(|h| h.is_timeout() || h.is_connect())
        {
            return Transport::Transient;
        }
        let io_transient = e.iter_errors().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    K::ConnectionRefused
                        | K::ConnectionReset
                        | K::ConnectionAborted
                        | K::TimedOut
                        | K::UnexpectedEof
                        | K::BrokenPipe
                )
            })
        });
        if io_transient || e.is_retryable() {
            Transport::Transient
        } else {
            Transport::Other
        }
    }
}

impl FetchError {
    /// Whether trying again may succeed (a transient transport failure).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FetchError::Remote {
                transport: Transport::Transient,
                ..
            }
        )
    }
}

/// Opens the mirror at `dir`, creating an empty bare repository if needed.
pub fn open_mirror(dir: &Path) -> Result<gix::Repository, Error> {
    let r = if dir.join("HEAD").is_file() {
        gix::open(dir)
    } else {
        gix::init_bare(dir)
    };
    r.map_err(|e| Error::Mirror {
        path: dir.to_owned(),
        reason: format!("{e:#}"),
    })
}

/// gix follows no redirect once the token is a configured header. When it
/// refuses one, this is where the same-host redirects of `url` lead
/// (`redirect.rs`; another host is an error): `None` when `result` is not
/// such a refusal, or the redirects lead nowhere new.
fn redirected<T>(
    result: &Result<T, Error>,
    url: &str,
    auth: Option<&Auth>,
) -> Result<Option<String>, Error> {
    let (
        Err(Error::Fetch(FetchError::Remote {
            transport: Transport::RedirectRefused,
            ..
        })),
        Some(a),
    ) = (result, auth)
    else {
        return Ok(None);
    };
    let resolved = super::redirect::resolve(url, &a.header_value())?;
    Ok((resolved != url).then_some(resolved))
}

fn with_auth(mut repo: gix::Repository, auth: Option<&Auth>) -> Result<gix::Repository, Error> {
    if let Some(a) = auth {
        let header = format!("Authorization: {}", a.header_value());
        let mut cfg = repo.config_snapshot_mut();
        cfg.set_value(&gix::config::tree::Http::EXTRA_HEADER, header.as_str())
            .map_err(|e| Error::Fetch(FetchError::AuthHeader(e.to_string())))?;
        // Only the in-memory configuration changes; the mirror's config file is untouched.
        cfg.commit()
            .map_err(|e| Error::Fetch(FetchError::AuthHeader(e.to_string())))?;
    }
    Ok(repo)
}

/// The refs a remote advertises, as snapshot entries sorted by name.
pub fn refs_from_remote(remote_refs: &[gix::protocol::handshake::Ref]) -> Vec<RefEntry> {
    use gix::protocol::handshake::Ref;
    let mut out: Vec<RefEntry> = remote_refs
        .iter()
        .map(|r| match r {
            Ref::Direct {
                full_ref_name,
                object,
            } => RefEntry {
                name: full_ref_name.to_vec(),
                target: Some(*object),
                symref: None,
                peeled: None,
            },
            Ref::Peeled {
                full_ref_name,
                tag,
                object,
            } => RefEntry {
                name: full_ref_name.to_vec(),
                target: Some(*tag),
                symref: None,
                peeled: Some(*object),
            },
            Ref::Symbolic {
                full_ref_name,
                target,
                tag,
                object,
            } => RefEntry {
                name: full_ref_name.to_vec(),
                target: Some(tag.unwrap_or(*object)),
                symref: Some(target.to_vec()),
                peeled: tag.map(|_| *object),
            },
            Ref::Unborn {
                full_ref_name,
                target,
            } => RefEntry {
                name: full_ref_name.to_vec(),
                target: None,
                symref: Some(target.to_vec()),
                peeled: None,
            },
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.name == b.name);
    out
}

fn ref_map_options() -> gix::remote::ref_map::Options {
    // `refs/*` as a prefix filter would match nothing on the server: ask for everything.
    gix::remote::ref_map::Options {
        prefix_from_spec_as_filter_on_remote: false,
        ..Default::default()
    }
}

fn remote<'r>(repo: &'r gix::Repository, url: &str) -> Result<gix::Remote<'r>, Error> {
    let fetch_err = |e: gix::Error| {
        Error::Fetch(FetchError::Remote {
            detail: format!("{e:#}"),
            transport: Transport::Other,
        })
    };
    repo.remote_at(url)
        .map_err(fetch_err)?
        .with_refspecs(Some("+refs/*:refs/*"), Direction::Fetch)
        .map_err(fetch_err)
        .map(|r| r.with_fetch_tags(gix::remote::fetch::Tags::None))
}

/// The refs a remote advertises: those a mirror can hold, and those skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The refs to back up, sorted by name.
    pub refs: Vec<RefEntry>,
    /// Refs that cannot be mirrored (see `sync::refs`), sorted.
    pub skipped: Vec<SkippedRef>,
}

/// Lists the remote's refs (handshake and ls-refs only, no pack).
pub fn list_remote(
    mirror: gix::Repository,
    url: &str,
    auth: Option<&Auth>,
) -> Result<Listing, Error> {
    let result = list_remote_at(mirror.clone(), url, url, auth);
    match redirected(&result, url, auth)? {
        Some(at) => list_remote_at(mirror, &at, url, auth),
        None => result,
    }
}

/// [`list_remote`] of `url`, connecting to `at`.
fn list_remote_at(
    mirror: gix::Repository,
    at: &str,
    url: &str,
    auth: Option<&Auth>,
) -> Result<Listing, Error> {
    let repo = with_auth(mirror, auth)?;
    let remote = remote(&repo, at)?;
    let listed = remote.connect(Direction::Fetch).and_then(|conn| {
        conn.with_credentials(|_| Ok(None))
            .ref_map(gix::progress::Discard, ref_map_options())
    });
    match listed {
        Ok((ref_map, _handshake)) => {
            let (refs, skipped) = super::refs::partition(refs_from_remote(&ref_map.remote_refs));
            Ok(Listing { refs, skipped })
        }
        Err(e) => match may_be_refs(classify(e, url)) {
            Ok(e) => match tolerant_listing(&repo, &remote, at) {
                Some(listing) => Ok(listing),
                None => Err(e),
            },
            Err(e) => Err(e),
        },
    }
}

/// `Ok(e)` when the failure `e` may be gix refusing a listing with refs that
/// cannot be mirrored (worth reading it line by line); `Err(e)` when it is
/// the credentials, the connection or a redirect, which another request
/// would only repeat.
fn may_be_refs(e: Error) -> Result<Error, Error> {
    match e {
        Error::Fetch(FetchError::Remote {
            transport: Transport::Other,
            ..
        }) => Ok(e),
        e => Err(e),
    }
}

/// The listing read line by line, when gix refused it because of refs that
/// cannot be mirrored (`None` when there are none: the failure was something else).
fn tolerant_listing(
    repo: &gix::Repository,
    remote: &gix::Remote<'_>,
    url: &str,
) -> Option<Listing> {
    match super::refs::list_tolerant(repo, remote, url) {
        Ok((refs, skipped)) if !skipped.is_empty() => Some(Listing { refs, skipped }),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("tolerant ref listing failed too: {e}");
            None
        }
    }
}

/// What a fetch brought.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The remote's refs at the time of the fetch.
    pub refs: Vec<RefEntry>,
    /// Refs of the remote that were not fetched because a mirror cannot hold them.
    pub skipped: Vec<SkippedRef>,
    /// Objects in the pack received (0 when nothing was new).
    pub objects_received: u64,
    /// Bytes of the pack received.
    pub bytes_received: u64,
    /// The index of the pack received: gix computed every object's id from its
    /// content while writing it, so ingest need not hash them again.
    pub verified_pack: Option<std::path::PathBuf>,
}

/// Fetches every ref of `url` into the mirror and makes the mirror's refs and
/// HEAD equal to the remote's. Refs a mirror cannot hold are left out (the
/// server is asked only for ref prefixes that avoid them) and reported.
pub fn fetch(
    mirror: gix::Repository,
    url: &str,
    auth: Option<&Auth>,
    interrupt: &AtomicBool,
    progress: &dyn crate::progress::Progress,
) -> Result<Fetched, Error> {
    let result = fetch_at(mirror.clone(), url, url, auth, interrupt, progress);
    match redirected(&result, url, auth)? {
        Some(at) => fetch_at(mirror, &at, url, auth, interrupt, progress),
        None => result,
    }
}

/// [`fetch`] of `url`, connecting to `at`.
fn fetch_at(
    mirror: gix::Repository,
    at: &str,
    url: &str,
    auth: Option<&Auth>,
    interrupt: &AtomicBool,
    progress: &dyn crate::progress::Progress,
) -> Result<Fetched, Error> {
    let repo = with_auth(mirror, auth)?;
    let remote = remote(&repo, at)?;
    let prepared = remote.connect(Direction::Fetch).and_then(|conn| {
        conn.with_credentials(|_| Ok(None))
            .prepare_fetch(gix::progress::Discard, ref_map_options())
    });
    let (prepare, skipped) = match prepared {
        Ok(prepare) => {
            let (good, skipped) =
                super::refs::partition(refs_from_remote(&prepare.ref_map().remote_refs));
            if skipped.is_empty() {
                (prepare, skipped)
            } else {
                drop(prepare);
                let good: Vec<Vec<u8>> = good.into_iter().map(|r| r.name).collect();
                (prepare_excluding(&remote, url, &good, &skipped)?, skipped)
            }
        }
        Err(e) => {
            let e = may_be_refs(classify(e, url))?;
            match tolerant_listing(&repo, &remote, at) {
                Some(listing) => {
                    let good: Vec<Vec<u8>> = listing.refs.iter().map(|r| r.name.clone()).collect();
                    (
                        prepare_excluding(&remote, url, &good, &listing.skipped)?,
                        listing.skipped,
                    )
                }
                None => return Err(e),
            }
        }
    };
    for s in &skipped {
        tracing::warn!(reference = %s.display_name(), "not backed up: {}", s.reason);
    }
    let (refs, still_bad) =
        super::refs::partition(refs_from_remote(&prepare.ref_map().remote_refs));
    if let Some(bad) = still_bad.first() {
        return Err(Error::Fetch(FetchError::UnaskedRef {
            name: bad.display_name(),
            reason: bad.reason.to_string(),
        }));
    }
    let has_objects = refs.iter().any(|r| r.target.is_some());
    let (mut objects_received, mut bytes_received) = (0, 0);
    let mut verified_pack = None;
    if has_objects {
        let root = gix::progress::prodash::tree::Root::new();
        let done = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            scope.spawn(|| report_fetch_progress(&root, &done, progress));
            let outcome = prepare
                .with_write_packed_refs_only(true)
                .receive(root.add_child("fetch"), interrupt);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            outcome
        })
        .map_err(|e| {
            if interrupt.load(std::sync::atomic::Ordering::SeqCst) {
                Error::Interrupted
            } else {
                classify_receive(e, url, repo.path())
            }
        })?;
        if let gix::remote::fetch::Status::Change {
            write_pack_bundle, ..
        } = &outcome.status
        {
            objects_received = write_pack_bundle.index.num_objects as u64;
            verified_pack = write_pack_bundle.index_path.clone();
            if let Some(p) = &write_pack_bundle.data_path {
                bytes_received = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    mirror_refs(&repo, &refs)?;
    Ok(Fetched {
        verified_pack,
        refs,
        skipped,
        objects_received,
        bytes_received,
    })
}

/// Prepares a fetch that asks the server only for ref prefixes covering the
/// `good` refs and none of the `skipped` ones.
fn prepare_excluding<'a, 'r>(
    remote: &'a gix::Remote<'r>,
    url: &str,
    good: &[Vec<u8>],
    skipped: &[SkippedRef],
) -> Result<
    gix::remote::fetch::Prepare<
        'a,
        'r,
        Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
    >,
    Error,
> {
    let good_names: Vec<&[u8]> = good.iter().map(|n| &n[..]).collect();
    let bad_names: Vec<&[u8]> = skipped.iter().map(|s| &s.name[..]).collect();
    let cover = super::refs::prefix_cover(&good_names, &bad_names).map_err(|g| {
        Error::Fetch(FetchError::Inseparable {
            name: String::from_utf8_lossy(&g).into_owned(),
            skipped: skipped
                .iter()
                .map(|s| s.display_name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    })?;
    let mut extra: Vec<gix::refspec::RefSpec> = Vec::with_capacity(cover.len() + 1);
    for p in &cover {
        let spec = super::refs::glob_spec(p)
            .or_else(|| super::refs::exact_spec(p))
            .ok_or_else(|| {
                Error::Fetch(FetchError::BadPrefix {
                    prefix: String::from_utf8_lossy(p).into_owned(),
                })
            })?;
        extra.push(spec);
    }
    extra.extend(super::refs::exact_spec(b"HEAD"));
    let opts = gix::remote::ref_map::Options {
        prefix_from_spec_as_filter_on_remote: true,
        extra_refspecs: extra,
        ..Default::default()
    };
    remote
        .connect(Direction::Fetch)
        .and_then(|conn| {
            conn.with_credentials(|_| Ok(None))
                .prepare_fetch(gix::progress::Discard, opts)
        })
        .map_err(|e| classify(e, url))
}

/// Polls gix's progress tree during a fetch and reports the pack's objects
/// as they are received ("receiving": objects indexed of the pack's count,
/// bytes read) and then resolved ("resolving"), until `done`.
fn report_fetch_progress(
    root: &gix::progress::prodash::tree::Root,
    done: &AtomicBool,
    progress: &dyn crate::progress::Progress,
) {
    let mut tasks = Vec::new();
    let mut step = "";
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        root.sorted_snapshot(&mut tasks);
        let value = |name: &str| {
            tasks
                .iter()
                .find(|(_, t)| t.name == name)
                .and_then(|(_, t)| t.progress.as_ref())
                .map(|v| {
                    (
                        v.step.load(std::sync::atomic::Ordering::Relaxed) as u64,
                        v.done_at.map(|m| m as u64),
                    )
                })
        };
        let bytes = value("read pack").map_or(0, |v| v.0);
        let (now, counts) = match (value("Resolving"), value("indexing")) {
            (Some(r), _) if r.1.is_some() => ("resolving", r),
            (_, Some(i)) => ("receiving", i),
            _ => continue,
        };
        if now != step {
            step = now;
            progress.begin(now, counts.1);
        }
        progress.update(counts.0, bytes);
    }
}

/// Deletes mirror refs the remote does not have, and points HEAD where the remote's does.
fn mirror_refs(repo: &gix::Repository, remote_refs: &[RefEntry]) -> Result<(), Error> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
    let merr = |e: &dyn std::fmt::Display| Error::Mirror {
        path: repo.path().to_owned(),
        reason: e.to_string(),
    };
    let wanted: std::collections::HashSet<&[u8]> =
        remote_refs.iter().map(|r| &r.name[..]).collect();
    let mut edits = Vec::new();
    let platform = repo.references().map_err(|e| merr(&e))?;
    for r in platform.all().map_err(|e| merr(&e))? {
        let r = r.map_err(|e| merr(&e))?;
        let name = r.name().as_bstr();
        let bytes: &[u8] = name.as_ref();
        if name != "HEAD" && !wanted.contains(bytes) {
            edits.push(RefEdit {
                change: Change::Delete {
                    expected: PreviousValue::Any,
                    log: RefLog::AndReference,
                },
                name: r.name().to_owned(),
                deref: false,
            });
        }
    }
    if let Some(head) = remote_refs.iter().find(|r| r.name == b"HEAD") {
        let target = match (&head.symref, head.target) {
            (Some(s), _) => gix::refs::Target::Symbolic(
                gix::refs::FullName::try_from(s.as_bstr()).map_err(|e| merr(&e))?,
            ),
            (None, Some(oid)) => gix::refs::Target::Object(oid),
            (None, None) => return Err(merr(&"remote HEAD has neither a target nor an object")),
        };
        edits.push(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "repovault: mirror HEAD".into(),
                },
                expected: PreviousValue::Any,
                new: target,
            },
            name: "HEAD".try_into().map_err(|e| merr(&e))?,
            deref: false,
        });
    }
    if !edits.is_empty() {
        repo.edit_references(edits).map_err(|e| merr(&e))?;
    }
    Ok(())
}

/// Like [`classify`], for receiving a pack into the mirror: a failure on the
/// local side (disk full, a stale lock, a path the file system refuses) is the
/// mirror cache's ([`Error::Mirror`]), not the remote's.
fn classify_receive(e: gix::Error, url: &str, mirror: &Path) -> Error {
    match super::mirror::is_local_io_failure(&e) {
        Some(kind) => Error::Mirror {
            path: mirror.to_owned(),
            reason: format!(
                "writing into the mirror cache failed ({kind}): {}",
                describe(&e)
            ),
        },
        None => classify(e, url),
    }
}

/// Turns a gix error into ours: rejected credentials are [`Error::Auth`],
/// anything else [`Error::Fetch`] with its [`Transport`] kind, both read
/// from the error's types ([`Transport::of`]).
fn classify(e: gix::Error, url: &str) -> Error {
    let msg = describe(&e);
    match Transport::of(&e) {
        Transport::Rejected => Error::Auth {
            url: url.to_owned(),
            reason: first_line(&msg),
        },
        transport => Error::Fetch(FetchError::Remote {
            detail: msg,
            transport,
        }),
    }
}

/// An error and its causes as readable text (gix wraps messages in `Message { message: .. }`).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let mut t = err.to_string();
        while let Some(start) = t.find("Message { message: \"") {
            let rest = &t[start + 20..];
            match rest.find("\" }") {
                Some(end) => t = format!("{}{}{}", &t[..start], &rest[..end], &rest[end + 3..]),
                None => break,
            }
        }
        let t = bytes_as_text(t.lines().next().unwrap_or("").trim());
        if !t.is_empty() && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// gix prints some byte strings with `{:?}` of a byte slice (`[48, 48, 32, ...]`):
/// shows such a list of 4 or more bytes as the quoted text it holds.
fn bytes_as_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let bytes = after.find(']').and_then(|close| {
            let list: Option<Vec<u8>> = after[..close]
                .split(", ")
                .map(|n| n.parse::<u8>().ok())
                .collect();
            list.filter(|l| l.len() >= 4).map(|l| (l, close))
        });
        match bytes {
            Some((b, close)) => {
                out.push_str(&format!("{:?}", String::from_utf8_lossy(&b)));
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_lists_in_messages_become_text() {
        assert_eq!(
            super::bytes_as_text("line [48, 48, 32, 114, 101, 102] could not be parsed [1]"),
            "line \"00 ref\" could not be parsed [1]"
        );
    }
}
