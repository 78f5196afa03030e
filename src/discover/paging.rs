//! Paged listings: following `Link: rel="next"` (GitLab, GitHub) with the
//! safety stops every paged listing shares ([`MAX_PAGES`], no other origin,
//! no page read twice).

use super::filter::Collector;
use super::http::HttpClient;
use super::record::BadRecord;
use super::{Ctx, DiscoveredRepo, Error};
use std::collections::HashSet;

/// Entries asked for per page: the most GitHub and GitLab return, and Azure's
/// `$top` for projects.
pub(super) const PAGE_SIZE: u32 = 100;

/// Safety stop for a server whose `next` links (or Azure's continuation
/// tokens) never end: the most pages one listing reads.
pub(super) const MAX_PAGES: usize = 10_000;

/// Lists a JSON array of repositories over pages, following `Link:
/// rel="next"` verbatim until it is absent: every element becomes a
/// repository through `repo`, or is skipped with a warning calling it a
/// `what` (incomplete listing). Links to another origin or back to a page
/// already read are not followed (incomplete listing).
///
/// # Errors
/// Any failure of the first page, and a rejected token on any page; other
/// failures of later pages only make the listing incomplete.
pub(crate) async fn follow_pages<F>(
    http: &HttpClient,
    ctx: &Ctx,
    out: &mut Collector,
    first: url::Url,
    headers: &reqwest::header::HeaderMap,
    what: &str,
    repo: F,
) -> Result<(), Error>
where
    F: Fn(&serde_json::Value) -> Result<DiscoveredRepo, BadRecord>,
{
    let origin = first.origin();
    let mut seen = HashSet::new();
    let mut url = first;
    let mut page = 0usize;
    loop {
        seen.insert(url.to_string());
        let resp = match http.get_json(ctx, &url, headers).await {
            Ok(r) => r,
            Err(e) if page == 0 => return Err(e),
            Err(e @ Error::Auth { .. }) => return Err(e),
            Err(e) => {
                out.incomplete(
                    ctx,
                    format!("page {}: {e}; later pages are missing", page + 1),
                );
                return Ok(());
            }
        };
        page += 1;
        let Some(items) = resp.body.as_array() else {
            let e = ctx.bad_response(&url, "the list is not a JSON array");
            if page == 1 {
                return Err(e);
            }
            out.incomplete(ctx, format!("page {page}: {e}; later pages are missing"));
            return Ok(());
        };
        tracing::debug!(source = %ctx.label, page, items = items.len(), "page");
        for item in items {
            match repo(item) {
                Ok(r) => out.push(r),
                Err(why) => out.incomplete(ctx, format!("skipped a {what}: {why}")),
            }
        }
        let Some(next) = resp.next_link() else {
            return Ok(());
        };
        let next = match url.join(&next) {
            Ok(u) => u,
            Err(e) => {
                out.incomplete(ctx, format!("page {page}: unusable next link: {e}"));
                return Ok(());
            }
        };
        if next.origin() != origin {
            out.incomplete(
                ctx,
                format!(
                    "page {page}: the next-page link points to another host ({}); not followed",
                    next.host_str().unwrap_or("?")
                ),
            );
            return Ok(());
        }
        if seen.contains(next.as_str()) || page >= MAX_PAGES {
            out.incomplete(
                ctx,
                format!("page {page}: the next-page link repeats a page already read; stopped"),
            );
            return Ok(());
        }
        url = next;
    }
}
