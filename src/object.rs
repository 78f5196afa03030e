//! Git object kinds and ids.

use gix::ObjectId;

/// The kind of a git object, numbered as in git's pack format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A commit.
    Commit = 1,
    /// A tree.
    Tree = 2,
    /// A blob (file content).
    Blob = 3,
    /// An annotated tag.
    Tag = 4,
}

impl ObjectKind {
    /// The pack-format number of this kind (1 commit, 2 tree, 3 blob, 4 tag).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind with pack-format number `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Commit,
            2 => Self::Tree,
            3 => Self::Blob,
            4 => Self::Tag,
            _ => return None,
        })
    }

    /// The name git uses (`commit`, `tree`, `blob`, `tag`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Tree => "tree",
            Self::Blob => "blob",
            Self::Tag => "tag",
        }
    }

    /// True for the objects that make up history (commits, trees, tags); they go to tree packs.
    pub fn is_metadata(self) -> bool {
        !matches!(self, Self::Blob)
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<gix::objs::Kind> for ObjectKind {
    fn from(k: gix::objs::Kind) -> Self {
        match k {
            gix::objs::Kind::Commit => Self::Commit,
            gix::objs::Kind::Tree => Self::Tree,
            gix::objs::Kind::Blob => Self::Blob,
            gix::objs::Kind::Tag => Self::Tag,
        }
    }
}

impl From<ObjectKind> for gix::objs::Kind {
    fn from(k: ObjectKind) -> Self {
        match k {
            ObjectKind::Commit => Self::Commit,
            ObjectKind::Tree => Self::Tree,
            ObjectKind::Blob => Self::Blob,
            ObjectKind::Tag => Self::Tag,
        }
    }
}

/// The git object id (SHA-1 of `"<kind> <len>\0" + data`) of an object.
pub fn git_oid(kind: ObjectKind, data: &[u8]) -> ObjectId {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, kind.into(), data)
        .expect("SHA-1 hashing of in-memory data cannot fail except on a collision attack")
}

/// The objects an object refers to (gitlinks excluded: they are commits of other repositories).
///
/// # Errors
/// gix's decode error for an object that does not parse as its kind.
pub fn references(kind: ObjectKind, data: &[u8]) -> Result<Vec<ObjectId>, gix::Error> {
    let h = gix::hash::Kind::Sha1;
    match kind {
        ObjectKind::Blob => Ok(Vec::new()),
        ObjectKind::Commit => {
            let c = gix::objs::CommitRef::from_bytes(data, h)?;
            let mut v = vec![c.tree()];
            v.extend(c.parents());
            Ok(v)
        }
        ObjectKind::Tree => {
            let mut v = Vec::new();
            for e in gix::objs::TreeRefIter::from_bytes(data, h) {
                let e = e?;
                if !e.mode.is_commit() {
                    v.push(e.oid.to_owned());
                }
            }
            Ok(v)
        }
        ObjectKind::Tag => {
            let t = gix::objs::TagRefIter::from_bytes(data, h).target_id()?;
            Ok(vec![t])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_of_empty_blob_matches_git() {
        assert_eq!(
            git_oid(ObjectKind::Blob, b"").to_string(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }
}
