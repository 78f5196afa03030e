//! Azure DevOps (Services and Server), REST api-version 7.1.
//!
//! 1. `GET {collection}/_apis/projects?$top=100&api-version=7.1`, then again
//!    with `continuationToken=<x-ms-continuationtoken>` until the response has
//!    no such header.
//! 2. Per project: `GET {collection}/{project id}/_apis/git/repositories?includeHidden=true&api-version=7.1`
//!    (one response, no paging; hidden repositories are the project wikis).
//!
//! Every request sends `X-TFS-FedAuthRedirect: Suppress`, so a bad token gets a
//! 401 instead of a sign-in page; a sign-in page (2xx, not JSON) is still
//! an authentication error. A PAT goes as `Basic base64(":" + PAT)`, an Entra
//! ID token as `Bearer`.
//!
//! A project whose repositories cannot be listed (404: deleted meanwhile, or
//! a server error after retries) makes the listing incomplete, with a warning.

use super::filter::Collector;
use super::http::{plain_header, secret_header, HttpClient};
use super::paging::{MAX_PAGES, PAGE_SIZE};
use super::record::{bool_field, pick, short_branch, str_field, BadRecord};
use super::urls::{clean_clone_url, host_and_path, join_segments, parse_base};
use super::Job;
use super::{Ctx, DiscoveredRepo, Error, Provider, ProviderSource, Scope, TokenKind};
use reqwest::header::HeaderMap;
use std::collections::HashSet;
use url::Url;

/// The api-version tried first, then older ones for older Azure DevOps
/// Server releases (2022 → 7.0, 2020 → 6.0, 2019 → 5.0).
const API_VERSIONS: &[&str] = &["7.1", "7.0", "6.0", "5.0"];

/// Fields of a `GitRepository` kept in [`DiscoveredRepo::record`].
const RECORD_FIELDS: &[&str] = &[
    "id",
    "name",
    "project.id",
    "project.name",
    "project.state",
    "project.visibility",
    "defaultBranch",
    "size",
    "remoteUrl",
    "sshUrl",
    "webUrl",
    "isDisabled",
    "isInMaintenance",
    "isFork",
    "parentRepository",
];

struct Project {
    id: String,
    name: String,
}

pub(super) async fn list(job: Job<'_>) -> Result<(), Error> {
    let (src, http, ctx, out) = (job.src, job.http, job.ctx, job.out);
    let org = match &src.scope {
        Scope::Org(o) | Scope::Group(o) if !o.trim().trim_matches('/').is_empty() => {
            o.trim().trim_matches('/')
        }
        _ => {
            return Err(ctx.bad_source(
                "Azure DevOps needs an organisation (Services) or collection (Server) as scope",
            ))
        }
    };
    let base = parse_base(ctx, &src.base_url)?;
    let coll = collection_url(&base, org);
    let names = Names::new(&coll, org);
    let headers = request_headers(src, ctx)?;

    let (projects, api_version) = list_projects(http, ctx, out, &coll, &headers).await?;
    tracing::debug!(source = %ctx.label, projects = projects.len(), api_version, "listed projects");

    for p in &projects {
        let mut url = join_segments(&coll, &[&p.id, "_apis", "git", "repositories"]);
        url.query_pairs_mut()
            .append_pair("includeHidden", "true")
            .append_pair("api-version", api_version);
        let resp = match http.get_json(ctx, &url, &headers).await {
            Ok(r) => r,
            Err(e @ Error::Auth { .. }) => return Err(e),
            Err(e @ Error::RateLimited { .. }) => {
                out.incomplete(
                    ctx,
                    format!(
                        "{e}; the repositories of project {:?} and those after it are not listed",
                        p.name
                    ),
                );
                break;
            }
            Err(e) => {
                out.incomplete(
                    ctx,
                    format!("project {:?}: cannot list its repositories: {e}", p.name),
                );
                continue;
            }
        };
        let Some(items) = resp.body.get("value").and_then(|v| v.as_array()) else {
            out.incomplete(
                ctx,
                format!(
                    "project {:?}: the repository list has no \"value\" array",
                    p.name
                ),
            );
            continue;
        };
        if let Some(why) = count_mismatch(&resp.body, items.len()) {
            out.incomplete(
                ctx,
                format!("project {:?}: the repository list {why}", p.name),
            );
        }
        for item in items {
            match repo(item, &coll, &names, &p.name) {
                Ok(r) => out.push(r),
                Err(why) => out.incomplete(
                    ctx,
                    format!("project {:?}: skipped a repository: {why}", p.name),
                ),
            }
        }
    }
    Ok(())
}

/// Azure collections are `{"count": N, "value": [...]}`: a `count` that is
/// not the number of entries (`{"count":2,"value":[]}`) means a truncated or
/// inconsistent answer, so the listing must not be trusted as complete.
fn count_mismatch(body: &serde_json::Value, len: usize) -> Option<String> {
    let count = body.get("count")?;
    match count.as_u64() {
        Some(n) if n == len as u64 => None,
        Some(n) => Some(format!(
            "says \"count\": {n} but holds {len} entries: not trusted as complete"
        )),
        None => Some(format!(
            "has a \"count\" that is not a number ({count}): not trusted as complete"
        )),
    }
}

/// The collection (organisation) URL: `base/org`, or `base` itself when its
/// last path segment already is `org` (an Azure DevOps Server URL given with
/// its collection).
fn collection_url(base: &Url, org: &str) -> Url {
    let already = base
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        .map(|last| {
            percent_decode(last).eq_ignore_ascii_case(org) || last.eq_ignore_ascii_case(org)
        })
        .unwrap_or(false);
    if already {
        base.clone()
    } else {
        join_segments(base, &[org])
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// Prefixes of keys and names.
struct Names {
    /// `azure:<ns>:` — the organisation on Azure DevOps Services, else
    /// `host/collection path`.
    key_prefix: String,
    /// `dev.azure.com/fabrikam` or `host/tfs/Collection`.
    name_prefix: String,
}

impl Names {
    fn new(coll: &Url, org: &str) -> Self {
        let name_prefix = host_and_path(coll);
        let services = coll
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("dev.azure.com"));
        let ns = if services {
            org.to_ascii_lowercase()
        } else {
            name_prefix.to_ascii_lowercase()
        };
        Self {
            key_prefix: format!("azure:{ns}:"),
            name_prefix,
        }
    }
}

fn request_headers(src: &ProviderSource, ctx: &Ctx) -> Result<HeaderMap, Error> {
    let mut h = HeaderMap::new();
    let (k, v) = plain_header("accept", "application/json");
    h.insert(k, v);
    let (k, v) = plain_header("x-tfs-fedauthredirect", "Suppress");
    h.insert(k, v);
    if let Some(token) = &src.token {
        let value = match src.token_kind {
            TokenKind::Pat => {
                use base64::Engine;
                let enc = base64::engine::general_purpose::STANDARD
                    .encode(format!(":{}", token.expose()));
                format!("Basic {enc}")
            }
            TokenKind::Bearer => format!("Bearer {}", token.expose()),
        };
        let (k, v) = secret_header(ctx, "authorization", &value)?;
        h.insert(k, v);
    }
    Ok(h)
}

/// All projects, following the continuation header. Returns the projects and
/// the api-version the server accepted.
async fn list_projects(
    http: &HttpClient,
    ctx: &Ctx,
    out: &mut Collector,
    coll: &Url,
    headers: &HeaderMap,
) -> Result<(Vec<Project>, &'static str), Error> {
    let mut projects = Vec::new();
    let mut ids = HashSet::new();
    let mut seen_tokens = HashSet::new();
    let mut token: Option<String> = None;
    let mut version_idx = 0;
    let mut page = 0usize;
    loop {
        let version = API_VERSIONS[version_idx];
        // `$top` is sent literally, as in the API's documentation (a
        // form-encoder would send `%24top`, which the service also decodes).
        let mut url = join_segments(coll, &["_apis", "projects"]);
        let mut query = format!("$top={PAGE_SIZE}");
        if let Some(t) = &token {
            query.push_str("&continuationToken=");
            query.extend(url::form_urlencoded::byte_serialize(t.as_bytes()));
        }
        query.push_str("&api-version=");
        query.push_str(version);
        url.set_query(Some(&query));
        let resp = match http.get_json(ctx, &url, headers).await {
            Ok(r) => r,
            Err(Error::Http {
                status: 400,
                message,
                ..
            }) if page == 0
                && version_idx + 1 < API_VERSIONS.len()
                && message.to_ascii_lowercase().contains("version") =>
            {
                tracing::info!(source = %ctx.label, version, "api-version not supported; trying an older one");
                version_idx += 1;
                continue;
            }
            Err(e) if page == 0 => return Err(e),
            Err(e @ Error::Auth { .. }) => return Err(e),
            Err(e) => {
                out.incomplete(
                    ctx,
                    format!(
                        "project list page {}: {e}; later projects are missing",
                        page + 1
                    ),
                );
                break;
            }
        };
        page += 1;
        let Some(items) = resp.body.get("value").and_then(|v| v.as_array()) else {
            let e = ctx.bad_response(&url, "the project list has no \"value\" array");
            if page == 1 {
                return Err(e);
            }
            out.incomplete(ctx, e.to_string());
            break;
        };
        if let Some(why) = count_mismatch(&resp.body, items.len()) {
            out.incomplete(ctx, format!("project list page {page}: {why}"));
        }
        for item in items {
            match (str_field(item, "id"), str_field(item, "name")) {
                (Some(id), Some(name)) => {
                    if ids.insert(id.to_ascii_lowercase()) {
                        projects.push(Project {
                            id: id.to_owned(),
                            name: name.to_owned(),
                        });
                    }
                }
                _ => out.incomplete(ctx, "skipped a project without id or name"),
            }
        }
        match resp
            .header("x-ms-continuationtoken")
            .filter(|t| !t.is_empty())
        {
            None => break,
            Some(t) => {
                if !seen_tokens.insert(t.to_owned()) || page >= MAX_PAGES {
                    out.incomplete(
                        ctx,
                        format!("the project list repeats continuation token {t:?}; stopped"),
                    );
                    break;
                }
                token = Some(t.to_owned());
            }
        }
    }
    Ok((projects, API_VERSIONS[version_idx]))
}

/// A `GitRepository` record as a [`DiscoveredRepo`].
fn repo(
    v: &serde_json::Value,
    coll: &Url,
    names: &Names,
    project_name: &str,
) -> Result<DiscoveredRepo, BadRecord> {
    let id = str_field(v, "id").ok_or(BadRecord::NoId { what: "id" })?;
    let name = str_field(v, "name").ok_or_else(|| BadRecord::Missing {
        record: id.to_owned(),
        field: "name",
    })?;
    let project = v
        .get("project")
        .and_then(|p| str_field(p, "name"))
        .unwrap_or(project_name);
    let clone_url = match str_field(v, "remoteUrl") {
        Some(u) => clean_clone_url(u).ok_or_else(|| BadRecord::CloneUrl {
            record: name.to_owned(),
            field: "remoteUrl",
        })?,
        None => join_segments(coll, &[project, "_git", name]).to_string(),
    };
    let default_branch = str_field(v, "defaultBranch").map(short_branch);
    Ok(DiscoveredRepo {
        provider: Provider::AzureDevOps,
        key: format!("{}{}", names.key_prefix, id.to_ascii_lowercase()),
        name: format!("{}/{project}/{name}", names.name_prefix),
        path: format!("{project}/{name}"),
        clone_url,
        empty: default_branch.is_none(),
        default_branch,
        disabled: bool_field(v, "isDisabled") || bool_field(v, "isInMaintenance"),
        archived: false,
        is_fork: bool_field(v, "isFork"),
        record: pick(v, RECORD_FIELDS),
        git_user: "pat".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::url;

    #[test]
    fn collection_urls() {
        assert_eq!(
            collection_url(&url("https://dev.azure.com"), "fabrikam").as_str(),
            "https://dev.azure.com/fabrikam"
        );
        assert_eq!(
            collection_url(&url("https://tfs.example.com/tfs"), "DefaultCollection").as_str(),
            "https://tfs.example.com/tfs/DefaultCollection"
        );
        assert_eq!(
            collection_url(
                &url("https://tfs.example.com/tfs/DefaultCollection"),
                "defaultcollection"
            )
            .as_str(),
            "https://tfs.example.com/tfs/DefaultCollection"
        );
        assert_eq!(
            collection_url(&url("https://tfs.example.com/My%20Coll"), "My Coll").as_str(),
            "https://tfs.example.com/My%20Coll"
        );
    }

    #[test]
    fn names_and_keys() {
        let c = url("https://dev.azure.com/Fabrikam");
        let n = Names::new(&c, "Fabrikam");
        assert_eq!(n.key_prefix, "azure:fabrikam:");
        assert_eq!(n.name_prefix, "dev.azure.com/Fabrikam");
        let c = url("https://tfs.example.com:8443/tfs/Coll");
        let n = Names::new(&c, "Coll");
        assert_eq!(n.key_prefix, "azure:tfs.example.com:8443/tfs/coll:");
        assert_eq!(n.name_prefix, "tfs.example.com:8443/tfs/Coll");
    }

    #[test]
    fn repo_record() {
        let v = serde_json::json!({
            "id": "0B9E3C1D-2f47-4a6e-8d55-6c1f0e7a9b21",
            "name": "EmptyRepo",
            "url": "https://dev.azure.com/fabrikam/x/_apis/git/repositories/0b9e",
            "project": {"id": "p1", "name": "Proj", "state": "wellFormed", "visibility": "private", "revision": 1},
            "size": 0,
            "remoteUrl": "https://fabrikam@dev.azure.com/fabrikam/Proj/_git/EmptyRepo",
            "isDisabled": false,
            "isInMaintenance": true,
            "_links": {}
        });
        let c = url("https://dev.azure.com/fabrikam");
        let r = repo(&v, &c, &Names::new(&c, "fabrikam"), "Proj").expect("repo");
        assert_eq!(r.key, "azure:fabrikam:0b9e3c1d-2f47-4a6e-8d55-6c1f0e7a9b21");
        assert_eq!(r.name, "dev.azure.com/fabrikam/Proj/EmptyRepo");
        assert_eq!(r.path, "Proj/EmptyRepo");
        assert_eq!(
            r.clone_url,
            "https://dev.azure.com/fabrikam/Proj/_git/EmptyRepo"
        );
        assert!(r.empty);
        assert!(r.disabled, "in maintenance counts as disabled");
        assert_eq!(r.default_branch, None);
        assert!(r.record.get("url").is_none());
        assert!(r.record.get("_links").is_none());
        assert_eq!(
            r.record["project"],
            serde_json::json!({"id": "p1", "name": "Proj", "state": "wellFormed", "visibility": "private"})
        );
    }
}
