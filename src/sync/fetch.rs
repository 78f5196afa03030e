//! The mirror cache: a bare repository per source, fetched with gix.
//!
//! Every ref of the remote is taken (`+refs/*:refs/*`), HEAD's target is
//! mirrored, and refs the remote no longer has are deleted from the mirror.
//! A token is sent as an HTTP `Authorization` header set in the repository's
//! in-memory configuration only: nothing is written to the mirror's config.

use super::Error;
use crate::snapshot::RefEntry;
use gix::bstr::ByteSlice;
use gix::remote::Direction;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The secret itself (only to put it on the wire).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to authenticate to an https remote.
#[derive(Debug, Clone)]
pub struct Auth {
    /// User name for HTTP basic auth (ignored by most hosts for tokens).
    pub user: String,
    /// The token.
    pub token: Secret,
    /// Send `Authorization: Bearer <token>` instead of basic auth (Entra ID tokens).
    pub bearer: bool,
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

/// The `Authorization` header's value for `a`.
fn authorization(a: &Auth) -> String {
    use base64::Engine;
    if a.bearer {
        format!("Bearer {}", a.token.expose())
    } else {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            a.user,
            a.token.expose()
        ));
        format!("Basic {cred}")
    }
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
    let (Err(Error::Fetch { reason }), Some(a)) = (result, auth) else {
        return Ok(None);
    };
    if !reason.contains("refusing to follow redirect") {
        return Ok(None);
    }
    let resolved = super::redirect::resolve(url, &authorization(a))?;
    Ok((resolved != url).then_some(resolved))
}

fn with_auth(mut repo: gix::Repository, auth: Option<&Auth>) -> Result<gix::Repository, Error> {
    if let Some(a) = auth {
        let header = format!("Authorization: {}", authorization(a));
        let mut cfg = repo.config_snapshot_mut();
        cfg.set_value(&gix::config::tree::Http::EXTRA_HEADER, header.as_str())
            .map_err(|e| Error::Fetch {
                reason: format!("cannot set the auth header: {e}"),
            })?;
        // Only the in-memory configuration changes; the mirror's config file is untouched.
        cfg.commit().map_err(|e| Error::Fetch {
            reason: format!("cannot set the auth header: {e}"),
        })?;
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
    let fetch_err = |e: gix::Error| Error::Fetch {
        reason: format!("{e:#}"),
    };
    repo.remote_at(url)
        .map_err(fetch_err)?
        .with_refspecs(Some("+refs/*:refs/*"), Direction::Fetch)
        .map_err(fetch_err)
        .map(|r| r.with_fetch_tags(gix::remote::fetch::Tags::None))
}

/// Lists the remote's refs (handshake and ls-refs only, no pack).
pub fn list_remote(
    mirror: gix::Repository,
    url: &str,
    auth: Option<&Auth>,
) -> Result<Vec<RefEntry>, Error> {
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
) -> Result<Vec<RefEntry>, Error> {
    let repo = with_auth(mirror, auth)?;
    let remote = remote(&repo, at)?;
    let conn = remote
        .connect(Direction::Fetch)
        .map_err(|e| classify(e, url))?;
    let (ref_map, _handshake) = conn
        .with_credentials(|_| Ok(None))
        .ref_map(gix::progress::Discard, ref_map_options())
        .map_err(|e| classify(e, url))?;
    Ok(refs_from_remote(&ref_map.remote_refs))
}

/// What a fetch brought.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The remote's refs at the time of the fetch.
    pub refs: Vec<RefEntry>,
    /// Objects in the pack received (0 when nothing was new).
    pub objects_received: u64,
    /// Bytes of the pack received.
    pub bytes_received: u64,
    /// The index of the pack received: gix computed every object's id from its
    /// content while writing it, so ingest need not hash them again.
    pub verified_pack: Option<std::path::PathBuf>,
}

/// Fetches every ref of `url` into the mirror and makes the mirror's refs and
/// HEAD equal to the remote's.
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
    let conn = remote
        .connect(Direction::Fetch)
        .map_err(|e| classify(e, url))?;
    let conn = conn.with_credentials(|_| Ok(None));
    let prepare = conn
        .prepare_fetch(gix::progress::Discard, ref_map_options())
        .map_err(|e| classify(e, url))?;
    let refs = refs_from_remote(&prepare.ref_map().remote_refs);
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
                classify(e, url)
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
        objects_received,
        bytes_received,
    })
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

/// Turns a gix error into ours, telling auth failures apart.
fn classify(e: gix::Error, url: &str) -> Error {
    let msg = describe(&e);
    let lower = msg.to_lowercase();
    if lower.contains("401")
        || lower.contains("403")
        || lower.contains("unauthenticated")
        || lower.contains("credentials")
    {
        Error::Auth {
            url: url.to_owned(),
            reason: first_line(&msg),
        }
    } else {
        Error::Fetch { reason: msg }
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
        let t = t.lines().next().unwrap_or("").trim().to_owned();
        if !t.is_empty() && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}
