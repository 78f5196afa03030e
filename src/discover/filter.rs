//! Which discovered repositories are kept: the include/exclude globs of a
//! source ([`Filter`]) and the [`Collector`] that gathers the kept
//! repositories (each key once) and the warnings of an incomplete listing.

use super::{Ctx, DiscoveredRepo, Error, Listing, ProviderSource};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashSet;

/// The include/exclude globs.
pub(super) struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    pub(super) fn new(src: &ProviderSource, ctx: &Ctx) -> Result<Self, Error> {
        let build = |pats: &[String], what: &str| -> Result<Option<GlobSet>, Error> {
            if pats.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for p in pats {
                let g = GlobBuilder::new(p.trim_matches('/'))
                    .literal_separator(true)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| ctx.bad_source(format!("bad {what} glob {p:?}: {e}")))?;
                b.add(g);
            }
            b.build()
                .map(Some)
                .map_err(|e| ctx.bad_source(format!("bad {what} globs: {e}")))
        };
        Ok(Self {
            include: build(&src.include, "include")?,
            exclude: build(&src.exclude, "exclude")?,
        })
    }

    fn wants(&self, path: &str) -> bool {
        let included = self.include.as_ref().is_none_or(|g| g.is_match(path));
        let excluded = self.exclude.as_ref().is_some_and(|g| g.is_match(path));
        included && !excluded
    }
}

/// Gathers repositories (filtered, each key once) and warnings.
pub(crate) struct Collector {
    filter: Filter,
    repos: Vec<DiscoveredRepo>,
    keys: HashSet<String>,
    complete: bool,
    warnings: Vec<String>,
}

impl Collector {
    pub(super) fn new(filter: Filter) -> Self {
        Self {
            filter,
            repos: Vec::new(),
            keys: HashSet::new(),
            complete: true,
            warnings: Vec::new(),
        }
    }

    /// Adds a repository unless filtered out or already seen.
    pub(crate) fn push(&mut self, repo: DiscoveredRepo) {
        if !self.filter.wants(&repo.path) {
            tracing::debug!(repo = %repo.name, "excluded by the include/exclude globs");
            return;
        }
        if self.keys.insert(repo.key.clone()) {
            self.repos.push(repo);
        }
    }

    /// Records that part of the listing failed: the listing is incomplete.
    pub(crate) fn incomplete(&mut self, ctx: &Ctx, warning: impl Into<String>) {
        let w = ctx.scrub(&warning.into());
        tracing::warn!(source = %ctx.label, "{w}");
        self.complete = false;
        self.warnings.push(w);
    }

    pub(super) fn finish(mut self) -> Listing {
        self.repos
            .sort_by(|a, b| a.name.cmp(&b.name).then(a.key.cmp(&b.key)));
        Listing {
            repos: self.repos,
            complete: self.complete,
            warnings: self.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::src;

    #[test]
    fn filter_globs() {
        let s = src(&[], &[]);
        let ctx = Ctx::new(&s);
        let f = Filter::new(&s, &ctx).expect("filter");
        assert!(f.wants("anything/at/all"));

        let s = src(&["platform/*", "Backend"], &["platform/legacy-*"]);
        let f = Filter::new(&s, &ctx).expect("filter");
        assert!(f.wants("platform/api"));
        assert!(f.wants("backend"), "case-insensitive");
        assert!(!f.wants("platform/sub/api"), "* does not cross /");
        assert!(!f.wants("platform/legacy-api"), "exclude wins");
        assert!(!f.wants("sandbox/x"));

        let s = src(&["platform/**"], &[]);
        let f = Filter::new(&s, &ctx).expect("filter");
        assert!(f.wants("platform/sub/api"));

        let s = src(&["[bad"], &[]);
        assert!(matches!(
            Filter::new(&s, &ctx),
            Err(Error::BadSource { .. })
        ));
    }
}
