//! The one walk over a snapshot's closure: from its ref targets (tips) down
//! every parent, tree entry and tag target, through an object source (the
//! store, or a git mirror), with a seen-set and a callback per object.
//!
//! The walk is depth-first over an explicit stack (no recursion): an object is
//! popped, recorded in the seen-set (already seen: skipped), looked up, and
//! reported as [`Event::Found`], [`Event::Missing`] or [`Event::Damaged`]. A
//! found commit, tree or tag is read and parsed and its references are pushed,
//! unless the callback answered [`Flow::Skip`]; blobs are only looked up.
//! What to do with each event (collect, keep the first, abort, stop) is the
//! caller's policy: restore, verify, prune, `stats --repo` and sync each keep
//! theirs as a short callback.
//!
//! The rule for objects a snapshot was taken without lives here too: an object
//! that is not in the source is [`Event::Missing`] with `listed` telling
//! whether the snapshot's `missing` list names it (the source lacked it when
//! the snapshot was taken), so no policy re-derives it. There is no cap on the
//! number of objects: a walk ends when the closure is walked, the callback
//! stops it, or `interrupt` is set.

use crate::index::ObjectRow;
use crate::snapshot::Snapshot;
use crate::store::{self, Store};
use gix::ObjectId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the walk finds objects.
pub trait ObjectSource {
    /// What a lookup returns for an object that is there.
    type Row;
    /// A failed lookup or read.
    type Error;
    /// Looks `oid` up: `None` when the source does not have it.
    ///
    /// # Errors
    /// When the source cannot answer.
    fn lookup(&self, oid: &ObjectId) -> Result<Option<Self::Row>, Self::Error>;
    /// Whether an object with this row refers to others (commit, tree, tag),
    /// so it is read and parsed.
    fn has_references(row: &Self::Row) -> bool;
    /// Reads `oid` and returns the ids it refers to.
    ///
    /// # Errors
    /// [`Damage::Read`] when it cannot be read, [`Damage::Parse`] when it cannot be parsed.
    fn references(&self, oid: &ObjectId) -> Result<Vec<ObjectId>, Damage<Self::Error>>;
    /// Like [`ObjectSource::references`], each with its kind where the
    /// referring object says it (a tree entry's mode, a commit's tree and
    /// parents), so [`needing`] need not look it up.
    ///
    /// # Errors
    /// As [`ObjectSource::references`].
    fn typed_references(
        &self,
        oid: &ObjectId,
    ) -> Result<Vec<(ObjectId, Option<crate::ObjectKind>)>, Damage<Self::Error>> {
        Ok(self
            .references(oid)?
            .into_iter()
            .map(|r| (r, None))
            .collect())
    }
    /// Whether the source has `oid`, without reading it.
    ///
    /// # Errors
    /// When the source cannot answer.
    fn contains(&self, oid: &ObjectId) -> Result<bool, Self::Error> {
        Ok(self.lookup(oid)?.is_some())
    }
}

/// Why an object that the source has could not be walked.
#[derive(Debug)]
pub enum Damage<E> {
    /// Looking it up failed (the source's own failure, e.g. SQLite).
    Lookup(E),
    /// Reading it failed (a damaged chunk, a pack that cannot be read).
    Read(E),
    /// It was read but is not a valid commit, tree or tag.
    Parse(String),
}

/// The walk's seen-set: an object is walked once per set.
pub trait Seen<E> {
    /// Records `oid`; false when it was already recorded (its closure is
    /// walked, or being walked, so it is skipped).
    ///
    /// # Errors
    /// When the set cannot record it (a set kept in SQLite).
    fn insert(&mut self, oid: ObjectId) -> Result<bool, E>;
    /// A cheap pre-check before pushing a reference: true when `oid` is known
    /// to be recorded (a set that cannot tell cheaply answers false; the
    /// object is then skipped when popped).
    fn known(&self, oid: &ObjectId) -> bool {
        let _ = oid;
        false
    }
    /// `oid` is not in the source. By default it stays recorded (reported once
    /// per set); a set shared by several snapshots may forget it, so each
    /// snapshot that reaches it decides whether that is expected.
    fn not_found(&mut self, oid: &ObjectId) {
        let _ = oid;
    }
}

impl<E> Seen<E> for HashSet<ObjectId> {
    fn insert(&mut self, oid: ObjectId) -> Result<bool, E> {
        Ok(HashSet::insert(self, oid))
    }
    fn known(&self, oid: &ObjectId) -> bool {
        self.contains(oid)
    }
}

/// The seen-set of one walk that also skips the objects in `done`: objects
/// whose closure an earlier walk went through completely (and found as it
/// wanted), so a walk of many snapshots or refs sharing history does not
/// walk that history again.
#[derive(Debug)]
pub struct Visited<'a> {
    /// What this walk visited.
    pub seen: HashSet<ObjectId>,
    /// What earlier walks closed.
    pub done: Option<&'a HashSet<ObjectId>>,
}

impl<'a> Visited<'a> {
    /// An empty set skipping `done`.
    pub fn new(done: Option<&'a HashSet<ObjectId>>) -> Self {
        Self {
            seen: HashSet::new(),
            done,
        }
    }
}

impl<E> Seen<E> for Visited<'_> {
    fn insert(&mut self, oid: ObjectId) -> Result<bool, E> {
        Ok(self.seen.insert(oid) && !self.done.is_some_and(|c| c.contains(&oid)))
    }
    fn known(&self, oid: &ObjectId) -> bool {
        self.seen.contains(oid) || self.done.is_some_and(|c| c.contains(oid))
    }
}

/// A seen-set that records nothing: every object popped is looked up again,
/// and the callback keeps its own record of what it walked (prune marks live
/// objects in SQLite, and answers [`Flow::Skip`] for one marked already).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordedByCallback;

impl<E> Seen<E> for RecordedByCallback {
    fn insert(&mut self, _: ObjectId) -> Result<bool, E> {
        Ok(true)
    }
}

/// What the walk reports for one object.
#[derive(Debug)]
pub enum Event<R, E> {
    /// The source has it. Answer [`Flow::Skip`] to not read it nor walk below it.
    Found {
        /// The object.
        oid: ObjectId,
        /// What the source knows of it.
        row: R,
    },
    /// The source does not have it.
    Missing {
        /// The object.
        oid: ObjectId,
        /// The snapshot's `missing` list names it: the source lacked it when
        /// the snapshot was taken, so its absence is recorded, not damage.
        listed: bool,
    },
    /// It could not be looked up, or (after [`Event::Found`]) read or parsed;
    /// nothing below it is walked.
    Damaged {
        /// The object.
        oid: ObjectId,
        /// What went wrong.
        damage: Damage<E>,
    },
}

/// What the callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on (for a found object: read it and walk below it).
    Continue,
    /// Do not read this object nor walk below it; go on with the rest.
    Skip,
    /// End the walk now.
    Stop,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every reachable object was visited.
    Complete,
    /// The callback answered [`Flow::Stop`].
    Stopped,
    /// `interrupt` was set.
    Interrupted,
}

/// Walks the closure of `tips` (popped last first) through `source`,
/// skipping what `seen` already holds, reporting each object to `on`.
/// `missing` is the snapshot's list of objects its source lacked (see
/// [`Event::Missing`]).
///
/// # Errors
/// What `seen` or `on` return.
pub fn walk<S, X>(
    tips: impl IntoIterator<Item = ObjectId>,
    missing: &[ObjectId],
    source: &S,
    seen: &mut impl Seen<X>,
    interrupt: &AtomicBool,
    mut on: impl FnMut(Event<S::Row, S::Error>) -> Result<Flow, X>,
) -> Result<End, X>
where
    S: ObjectSource,
{
    let mut stack: Vec<ObjectId> = tips.into_iter().collect();
    while let Some(oid) = stack.pop() {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(End::Interrupted);
        }
        if !seen.insert(oid)? {
            continue;
        }
        let flow = match source.lookup(&oid) {
            Ok(None) => {
                seen.not_found(&oid);
                on(Event::Missing {
                    oid,
                    listed: missing.contains(&oid),
                })?
            }
            Err(e) => on(Event::Damaged {
                oid,
                damage: Damage::Lookup(e),
            })?,
            Ok(Some(row)) => {
                let read = S::has_references(&row);
                match on(Event::Found { oid, row })? {
                    Flow::Continue if read => match source.references(&oid) {
                        Ok(refs) => {
                            stack.extend(refs.into_iter().filter(|r| !seen.known(r)));
                            Flow::Continue
                        }
                        Err(damage) => on(Event::Damaged { oid, damage })?,
                    },
                    flow => flow,
                }
            }
        };
        if flow == Flow::Stop {
            return Ok(End::Stopped);
        }
    }
    Ok(End::Complete)
}

/// Walks `snap`'s closure: its tips, except those its `missing` list names
/// (their absence is recorded in the snapshot), the last tip walked first.
///
/// # Errors
/// As [`walk`].
pub fn walk_snapshot<S, X>(
    snap: &Snapshot,
    source: &S,
    seen: &mut impl Seen<X>,
    interrupt: &AtomicBool,
    on: impl FnMut(Event<S::Row, S::Error>) -> Result<Flow, X>,
) -> Result<End, X>
where
    S: ObjectSource,
{
    let tips = snap
        .tips()
        .into_iter()
        .filter(|t| !snap.missing.contains(t));
    walk(tips, &snap.missing, source, seen, interrupt, on)
}

/// The store as an object source: rows from the index; commits, trees and tags
/// read with every chunk's blake3 checked, and their git id too when `check_oid`.
#[derive(Clone, Copy)]
pub struct StoreSource<'a> {
    /// The store.
    pub store: &'a Store,
    /// Also check each read object's git id (prune), not only its chunks.
    pub check_oid: bool,
}

impl<'a> StoreSource<'a> {
    /// Reads with chunks checked (the git ids are checked elsewhere, or later).
    pub fn new(store: &'a Store) -> Self {
        Self {
            store,
            check_oid: false,
        }
    }
}

impl ObjectSource for StoreSource<'_> {
    type Row = ObjectRow;
    type Error = store::Error;

    fn lookup(&self, oid: &ObjectId) -> Result<Option<ObjectRow>, store::Error> {
        self.store.object_row(oid)
    }

    fn has_references(row: &ObjectRow) -> bool {
        row.kind.is_metadata()
    }

    fn references(&self, oid: &ObjectId) -> Result<Vec<ObjectId>, Damage<store::Error>> {
        let o = if self.check_oid {
            self.store.get(oid)
        } else {
            self.store.get_chunks_checked(oid)
        }
        .map_err(Damage::Read)?;
        crate::object::references(o.kind, &o.data).map_err(|e| Damage::Parse(format!("{e:#}")))
    }
}

/// What [`needing`] found: the objects of the closure that are nowhere, and
/// which tips need one of them.
#[derive(Debug, Default)]
pub struct Needs {
    /// Objects reachable from the tips that the source lacks (or cannot
    /// read) and that are not `elsewhere`, sorted.
    pub absent: Vec<ObjectId>,
    /// The tips whose closure reaches one of `absent`.
    pub tips: HashSet<ObjectId>,
    /// How many objects the source lacks that are `elsewhere`.
    pub elsewhere: usize,
}

/// One walk of the closure of `tips` through `source` that finds what is
/// absent and which tips need it: each object is looked up once, and each
/// commit, tree and tag read once, whatever the number of tips (a
/// post-order walk remembering, per object, whether its closure reaches an
/// absent object). A commit, tree or tag that `skip` answers true for (held
/// with its closure elsewhere: the store) is not walked below; an object the
/// source lacks (or has but cannot read or parse) is absent unless
/// `elsewhere` answers true for it. Blobs are only looked up, so the walk
/// costs about what `git fsck --connectivity-only` does.
///
/// # Errors
/// [`Interrupted`] when `interrupt` is set.
pub fn needing<S: ObjectSource>(
    tips: &[ObjectId],
    source: &S,
    skip: impl Fn(&ObjectId) -> bool,
    elsewhere: impl Fn(&ObjectId) -> bool,
    interrupt: &AtomicBool,
) -> Result<Needs, Interrupted> {
    use std::collections::HashMap;
    struct Frame {
        oid: ObjectId,
        children: Vec<(ObjectId, Option<crate::ObjectKind>)>,
        next: usize,
        bad: bool,
    }
    enum Entered {
        Done(bool),
        Walk(Frame),
    }
    let mut absent = Vec::new();
    let mut elsewhere_count = 0usize;
    let mut enter = |oid: ObjectId, kind: Option<crate::ObjectKind>| -> Entered {
        let mut lacking = || {
            if elsewhere(&oid) {
                elsewhere_count += 1;
                Entered::Done(false)
            } else {
                absent.push(oid);
                Entered::Done(true)
            }
        };
        // A blob named by a tree is only checked for presence, and a commit
        // or tree named as one is read at once (as git's connectivity check
        // does); an object of unknown kind (a tip, a tag's target) is looked up.
        let metadata = match kind {
            Some(k) if !k.is_metadata() => {
                return match source.contains(&oid) {
                    Ok(true) => Entered::Done(false),
                    _ => lacking(),
                }
            }
            Some(_) => true,
            None => match source.lookup(&oid) {
                Ok(Some(row)) => S::has_references(&row),
                Ok(None) | Err(_) => return lacking(),
            },
        };
        if !metadata || skip(&oid) {
            return Entered::Done(false);
        }
        match source.typed_references(&oid) {
            Ok(children) => Entered::Walk(Frame {
                oid,
                children,
                next: 0,
                bad: false,
            }),
            Err(_) => lacking(),
        }
    };
    // Whether an object's closure reaches an absent object; an object is in
    // it from the moment it is entered (false until its walk ends: git's
    // object graph has no cycles, and a damaged one cannot loop here).
    let mut bad: HashMap<ObjectId, bool> = HashMap::new();
    let mut steps = 0u64;
    for &tip in tips {
        if bad.contains_key(&tip) {
            continue;
        }
        let mut stack = match enter(tip, None) {
            Entered::Done(v) => {
                bad.insert(tip, v);
                continue;
            }
            Entered::Walk(f) => {
                bad.insert(tip, false);
                vec![f]
            }
        };
        while let Some(top) = stack.last_mut() {
            steps += 1;
            if steps.is_multiple_of(4096) && interrupt.load(Ordering::Relaxed) {
                return Err(Interrupted);
            }
            if top.next < top.children.len() {
                let (child, kind) = top.children[top.next];
                top.next += 1;
                if let Some(&v) = bad.get(&child) {
                    top.bad |= v;
                    continue;
                }
                match enter(child, kind) {
                    Entered::Done(v) => {
                        bad.insert(child, v);
                        top.bad |= v;
                    }
                    Entered::Walk(f) => {
                        bad.insert(child, false);
                        stack.push(f);
                    }
                }
            } else {
                let done = stack.pop().expect("the loop's top");
                bad.insert(done.oid, done.bad);
                if let Some(parent) = stack.last_mut() {
                    parent.bad |= done.bad;
                }
            }
        }
    }
    absent.sort();
    absent.dedup();
    let tips = tips
        .iter()
        .filter(|t| bad.get(*t).copied().unwrap_or(false))
        .copied()
        .collect();
    Ok(Needs {
        absent,
        tips,
        elsewhere: elsewhere_count,
    })
}

/// [`needing`] was interrupted.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// A git repository (sync's mirror) as an object source: kinds from the
/// objects' headers; commits, trees and tags read and parsed.
pub struct MirrorSource<'a> {
    repo: &'a gix::Repository,
    buf: std::cell::RefCell<Vec<u8>>,
}

impl<'a> MirrorSource<'a> {
    /// Objects of `repo`.
    pub fn new(repo: &'a gix::Repository) -> Self {
        Self {
            repo,
            buf: std::cell::RefCell::new(Vec::new()),
        }
    }
}

/// A failed read from a git repository.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MirrorError(String);

impl ObjectSource for MirrorSource<'_> {
    type Row = crate::ObjectKind;
    type Error = MirrorError;

    fn lookup(&self, oid: &ObjectId) -> Result<Option<crate::ObjectKind>, MirrorError> {
        use gix::objs::FindHeader;
        match self.repo.objects.try_header(oid) {
            Ok(h) => Ok(h.map(|h| h.kind.into())),
            Err(e) => Err(MirrorError(e.to_string())),
        }
    }

    fn has_references(kind: &crate::ObjectKind) -> bool {
        kind.is_metadata()
    }

    fn references(&self, oid: &ObjectId) -> Result<Vec<ObjectId>, Damage<MirrorError>> {
        use gix::prelude::Find;
        let mut buf = self.buf.borrow_mut();
        match self.repo.objects.try_find(oid, &mut buf) {
            Ok(Some(o)) => crate::object::references(o.kind.into(), o.data)
                .map_err(|e| Damage::Parse(format!("{e:#}"))),
            Ok(None) => Err(Damage::Read(MirrorError(format!(
                "object {oid} vanished while it was read"
            )))),
            Err(e) => Err(Damage::Read(MirrorError(e.to_string()))),
        }
    }

    fn typed_references(
        &self,
        oid: &ObjectId,
    ) -> Result<Vec<(ObjectId, Option<crate::ObjectKind>)>, Damage<MirrorError>> {
        use crate::ObjectKind as K;
        use gix::prelude::Find;
        let h = gix::hash::Kind::Sha1;
        let parse = |e: gix::Error| Damage::Parse(format!("{e:#}"));
        let mut buf = self.buf.borrow_mut();
        let o = match self.repo.objects.try_find(oid, &mut buf) {
            Ok(Some(o)) => o,
            Ok(None) => {
                return Err(Damage::Read(MirrorError(format!(
                    "object {oid} vanished while it was read"
                ))))
            }
            Err(e) => return Err(Damage::Read(MirrorError(e.to_string()))),
        };
        match K::from(o.kind) {
            K::Commit => {
                let c = gix::objs::CommitRef::from_bytes(o.data, h).map_err(parse)?;
                let mut v = vec![(c.tree(), Some(K::Tree))];
                v.extend(c.parents().map(|p| (p, Some(K::Commit))));
                Ok(v)
            }
            K::Tree => {
                let mut v = Vec::new();
                for e in gix::objs::TreeRefIter::from_bytes(o.data, h) {
                    let e = e.map_err(parse)?;
                    if e.mode.is_commit() {
                        continue;
                    }
                    let kind = if e.mode.is_tree() { K::Tree } else { K::Blob };
                    v.push((e.oid.to_owned(), Some(kind)));
                }
                Ok(v)
            }
            kind => crate::object::references(kind, o.data)
                .map(|v| v.into_iter().map(|r| (r, None)).collect())
                .map_err(parse),
        }
    }

    fn contains(&self, oid: &ObjectId) -> Result<bool, MirrorError> {
        use gix::objs::Exists;
        Ok(self.repo.objects.exists(oid))
    }
}
