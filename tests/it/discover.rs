//! Repository discovery against fake Azure DevOps, GitLab and GitHub servers.
//!
//! Each fake is a tiny HTTP/1.1 server on `127.0.0.1:0` (one thread per
//! connection) that serves the provider fixtures of `tests/fixtures/`
//! (copied from `shared/providers/fixtures`) as their `routes.json` manifests
//! describe, with the real host names rewritten to the fake's address. The
//! fakes check the credentials the way the real services do and record every
//! request, so the tests can assert what the client sent (paging parameters,
//! headers), how often (no retry of a rejected token) and when (waits).

use repovault::discover::{
    discover, discover_blocking, DiscoveredRepo, Error, HttpClient, HttpOptions, Listing, Provider,
    ProviderSource, Scope, TokenKind,
};
use repovault::secret::Secret;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{basic_auth_header, Ctx, HttpFake, Req, Resp};

const TOKEN: &str = "s3cr3t-T0KEN-value-42";
const WRONG: &str = "wrong-T0KEN-value-99";

// ---------------------------------------------------------------------------
// Fixtures and the routes.json manifests
// ---------------------------------------------------------------------------

fn fixture_dir(provider: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
}

fn fixture(provider: &str, name: &str) -> String {
    let p = fixture_dir(provider).join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read fixture {}: {e}", p.display()))
}

/// Rewrites the real host names of a fixture to the fake's.
type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Clone)]
struct Route {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    when: Option<String>,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn routes(provider: &str) -> Vec<Route> {
    let v: Value =
        serde_json::from_str(&fixture(provider, "routes.json")).expect("routes.json is JSON");
    v["routes"]
        .as_array()
        .expect("routes array")
        .iter()
        .filter_map(|r| {
            // Routes whose query is prose rather than an object are documentation only.
            let query = match r.get("query") {
                None => Vec::new(),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
                Some(_) => return None,
            };
            Some(Route {
                method: r["method"].as_str().unwrap_or("GET").to_owned(),
                path: r["path"].as_str().unwrap_or_default().to_owned(),
                query,
                when: r.get("when").and_then(|w| w.as_str()).map(str::to_owned),
                status: r["status"].as_u64().unwrap_or(200) as u16,
                headers: r
                    .get("headers")
                    .and_then(|h| h.as_object())
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                body: r["body"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Query keys that select a page: a request carrying one only matches a
/// route that names it.
const PAGING_KEYS: &[&str] = &["page", "continuationToken", "id_after"];

/// The route for `path` and the request's query, ignoring `ignore`d keys
/// (page sizes and orderings the client chooses itself, asserted separately).
fn find_route<'a>(
    routes: &'a [Route],
    path: &str,
    req: &Req,
    ignore: &[&str],
) -> Option<&'a Route> {
    routes.iter().find(|r| {
        r.when.is_none()
            && (r.method == "GET" || r.method == "*")
            && r.path == path
            && r.query
                .iter()
                .filter(|(k, _)| !ignore.contains(&k.as_str()))
                .all(|(k, v)| req.q(k) == Some(v.as_str()))
            && PAGING_KEYS
                .iter()
                .filter(|k| req.q(k).is_some())
                .all(|k| r.query.iter().any(|(rk, _)| rk == k))
    })
}

/// A scenario route (`"when"` contains `needle`).
fn scenario(provider: &str, needle: &str) -> Route {
    routes(provider)
        .into_iter()
        .find(|r| r.when.as_deref().is_some_and(|w| w.contains(needle)))
        .unwrap_or_else(|| panic!("{provider} routes.json has no scenario {needle:?}"))
}

fn serve_route(provider: &str, r: &Route, rewrite: &Rewrite) -> Resp {
    let body = if r.body.ends_with(".json") || r.body.ends_with(".html") {
        rewrite(&fixture(provider, &r.body))
    } else {
        r.body.clone()
    };
    Resp {
        status: r.status,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), rewrite(v)))
            .collect(),
        body: body.into_bytes(),
    }
}

// ---------------------------------------------------------------------------
// The fake providers
// ---------------------------------------------------------------------------

/// A faithful fake Azure DevOps: collection at `coll` (`/fabrikam` or
/// `/tfs/DefaultCollection`), accepting `expected_auth`; a bad credential
/// gets 401 when `X-TFS-FedAuthRedirect: Suppress` was sent, else the 203
/// sign-in page. Projects come from the manifest's two pages; a project's
/// repositories are the org-wide fixture's entries of that project (hidden
/// wiki repositories only with `includeHidden=true`).
fn azure_handler(coll: &'static str, expected_auth: String) -> impl Fn(&Req, &Ctx) -> Resp {
    let routes = routes("azure");
    move |req: &Req, env: &Ctx| {
        let rewrite = azure_rewrite(&env.base, coll);
        if req.h("authorization") != Some(expected_auth.as_str()) {
            let r = if req.h("x-tfs-fedauthredirect") == Some("Suppress") {
                scenario("azure", "'X-TFS-FedAuthRedirect: Suppress' present")
            } else {
                scenario("azure", "no 'X-TFS-FedAuthRedirect: Suppress'")
            };
            return serve_route("azure", &r, &rewrite);
        }
        let Some(rest) = req.path.strip_prefix(coll) else {
            return Resp::json(404, r#"{"message":"no such collection"}"#);
        };
        if rest == "/_apis/projects" {
            let manifest_path = format!("/fabrikam{rest}");
            return match find_route(&routes, &manifest_path, req, &["$top"]) {
                Some(r) => serve_route("azure", r, &rewrite),
                None => Resp::json(400, r#"{"message":"no route"}"#),
            };
        }
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        if let [project, "_apis", "git", "repositories"] = parts.as_slice() {
            if req.q("api-version") != Some("7.1") {
                return Resp::json(400, r#"{"message":"api-version missing"}"#);
            }
            let all: Value = serde_json::from_str(&rewrite(&fixture(
                "azure",
                "repositories_org_includeHidden.json",
            )))
            .expect("fixture JSON");
            let hidden = req.q("includeHidden") == Some("true");
            let known = all["value"]
                .as_array()
                .expect("value")
                .iter()
                .any(|r| r["project"]["id"] == *project || r["project"]["name"] == *project);
            let projects: Value = serde_json::from_str(&fixture("azure", "projects_page1.json"))
                .expect("fixture JSON");
            let known = known
                || projects["value"]
                    .as_array()
                    .expect("value")
                    .iter()
                    .any(|p| p["id"] == *project);
            if !known {
                return serve_route(
                    "azure",
                    &Route {
                        method: "GET".into(),
                        path: String::new(),
                        query: Vec::new(),
                        when: None,
                        status: 404,
                        headers: vec![(
                            "Content-Type".into(),
                            "application/json; charset=utf-8; api-version=7.1".into(),
                        )],
                        body: "error_404_TF200016.json".into(),
                    },
                    &rewrite,
                );
            }
            let value: Vec<Value> = all["value"]
                .as_array()
                .expect("value")
                .iter()
                .filter(|r| r["project"]["id"] == *project || r["project"]["name"] == *project)
                .filter(|r| hidden || !r["name"].as_str().unwrap_or("").ends_with(".wiki"))
                .cloned()
                .collect();
            let body = serde_json::json!({"count": value.len(), "value": value});
            return Resp::new(
                200,
                "application/json; charset=utf-8; api-version=7.1",
                body.to_string(),
            );
        }
        Resp::json(404, r#"{"message":"unknown route"}"#)
    }
}

fn azure_rewrite(base: &str, coll: &'static str) -> Rewrite {
    let host = base.trim_start_matches("http://").to_owned();
    Arc::new(move |s: &str| {
        s.replace(
            "https://fabrikam@dev.azure.com/fabrikam",
            &format!("http://fabrikam@{host}{coll}"),
        )
        .replace(
            "https://dev.azure.com/fabrikam",
            &format!("http://{host}{coll}"),
        )
    })
}

/// A faithful fake GitLab: `PRIVATE-TOKEN` must be `TOKEN`, else 401.
fn gitlab_handler() -> impl Fn(&Req, &Ctx) -> Resp {
    let routes = routes("gitlab");
    move |req: &Req, env: &Ctx| {
        let base = env.base.clone();
        let rewrite: Rewrite =
            Arc::new(move |s: &str| s.replace("https://gitlab.example.com", &base));
        if req.h("private-token") != Some(TOKEN) {
            return serve_route(
                "gitlab",
                &scenario("gitlab", "missing/invalid token"),
                &rewrite,
            );
        }
        match find_route(&routes, &req.path, req, &["per_page"]) {
            Some(r) => serve_route("gitlab", r, &rewrite),
            None => Resp::json(404, r#"{"error":"404 Not Found"}"#),
        }
    }
}

/// A faithful fake GitHub Enterprise Server at `/api/v3`: `Authorization:
/// Bearer TOKEN`, the media type, the API version and a user agent are all
/// required.
fn github_handler() -> impl Fn(&Req, &Ctx) -> Resp {
    let routes = routes("github");
    move |req: &Req, env: &Ctx| {
        let rewrite = github_rewrite(&env.base);
        if req.h("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return serve_route("github", &scenario("github", "bad token"), &rewrite);
        }
        if req.h("accept") != Some("application/vnd.github+json")
            || req.h("x-github-api-version") != Some("2022-11-28")
            || !req
                .h("user-agent")
                .is_some_and(|ua| ua.starts_with("repovault/"))
        {
            return Resp::json(400, r#"{"message":"bad headers"}"#);
        }
        let Some(path) = req.path.strip_prefix("/api/v3") else {
            return Resp::json(404, r#"{"message":"Not Found"}"#);
        };
        match find_route(&routes, path, req, &["per_page", "sort", "direction"]) {
            Some(r) => serve_route("github", r, &rewrite),
            None => Resp::json(404, r#"{"message":"Not Found"}"#),
        }
    }
}

fn github_rewrite(base: &str) -> Rewrite {
    let base = base.to_owned();
    Arc::new(move |s: &str| {
        s.replace("https://api.github.com", &format!("{base}/api/v3"))
            .replace("https://github.com", &base)
    })
}

/// Wraps a handler: requests for which `fault` returns a response get it
/// instead of the normal one.
fn with_faults(
    inner: impl Fn(&Req, &Ctx) -> Resp + Send + Sync + 'static,
    fault: impl Fn(&Req, &Ctx) -> Option<Resp> + Send + Sync + 'static,
) -> impl Fn(&Req, &Ctx) -> Resp + Send + Sync + 'static {
    move |req, env| fault(req, env).unwrap_or_else(|| inner(req, env))
}

// ---------------------------------------------------------------------------
// Sources and helpers
// ---------------------------------------------------------------------------

fn opts() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_retries: 3,
        base_backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(10),
        secondary_rate_limit_wait: Duration::from_millis(200),
    }
}

fn azure_source(base: &str, token: &str) -> ProviderSource {
    let mut s = ProviderSource::new(Provider::AzureDevOps, base, Scope::Org("fabrikam".into()));
    s.token = Some(Secret::new(token.to_owned()));
    s.token_hint = "token_env AZDO_PAT".into();
    s
}

fn gitlab_source(base: &str, token: &str) -> ProviderSource {
    let mut s = ProviderSource::new(Provider::GitLab, base, Scope::Group("acme".into()));
    s.token = Some(Secret::new(token.to_owned()));
    s.token_hint = "token_env GITLAB_TOKEN".into();
    s
}

fn github_source(base: &str, token: &str) -> ProviderSource {
    let mut s = ProviderSource::new(
        Provider::GitHub,
        format!("{base}/api/v3"),
        Scope::Org("octo-org".into()),
    );
    s.token = Some(Secret::new(token.to_owned()));
    s.token_hint = "token_env GITHUB_TOKEN".into();
    s
}

fn by_path<'a>(l: &'a Listing, path: &str) -> &'a DiscoveredRepo {
    l.repos
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no repository {path:?} in {:#?}", names(l)))
}

fn names(l: &Listing) -> Vec<&str> {
    l.repos.iter().map(|r| r.path.as_str()).collect()
}

/// The error's Display and Debug never contain a token.
fn assert_no_token(e: &dyn std::fmt::Debug, shown: &str) {
    let dbg = format!("{e:?}");
    for t in [TOKEN, WRONG] {
        assert!(!shown.contains(t), "token in Display: {shown}");
        assert!(!dbg.contains(t), "token in Debug: {dbg}");
        let b64 = basic_auth_header("", t);
        assert!(!shown.contains(&b64[6..]) && !dbg.contains(&b64[6..]));
    }
}

fn assert_complete(l: &Listing) {
    assert!(l.complete, "listing incomplete: {:?}", l.warnings);
    assert!(l.warnings.is_empty(), "warnings: {:?}", l.warnings);
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------
// Azure DevOps
// ---------------------------------------------------------------------------

#[test]
fn azure_org_two_project_pages_wiki_disabled_fork_empty() {
    let fake = HttpFake::start(azure_handler("/fabrikam", basic_auth_header("", TOKEN)));
    let listing = discover_blocking(&azure_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&listing);
    assert_eq!(
        names(&listing),
        vec![
            "Fabrikam-Fiber-Git/AnotherRepository",
            "Fabrikam-Fiber-Git/EmptyRepo",
            "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git",
            "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git.wiki",
            "Fabrikam-Fiber-Git/forkRepository",
            "TestGit/TestGit",
        ]
    );

    let reqs = fake.requests();
    // Two project pages: $top on both, the continuation token from the header on the second.
    let projects: Vec<&Req> = reqs
        .iter()
        .filter(|r| r.path == "/fabrikam/_apis/projects")
        .collect();
    assert_eq!(projects.len(), 2);
    assert!(projects.iter().all(|r| r.q("$top") == Some("100")));
    assert!(
        projects[0].raw_query.starts_with("$top=100&"),
        "{}",
        projects[0].raw_query
    );
    assert_eq!(projects[0].q("continuationToken"), None);
    assert_eq!(projects[1].q("continuationToken"), Some("2"));
    // One repository listing per project (by id), hidden repositories included.
    let repo_reqs: Vec<&Req> = reqs
        .iter()
        .filter(|r| r.path.ends_with("/_apis/git/repositories"))
        .collect();
    assert_eq!(repo_reqs.len(), 3, "{reqs:#?}");
    assert!(repo_reqs
        .iter()
        .all(|r| r.q("includeHidden") == Some("true")));
    assert!(
        repo_reqs
            .iter()
            .any(|r| r.path
                == "/fabrikam/281f9a5b-af0d-49b4-a1df-fe6f5e5f84d0/_apis/git/repositories")
    );
    assert_eq!(reqs.len(), 5);
    for r in &reqs {
        assert_eq!(r.q("api-version"), Some("7.1"));
        assert_eq!(r.h("x-tfs-fedauthredirect"), Some("Suppress"));
        assert_eq!(
            r.h("authorization"),
            Some(basic_auth_header("", TOKEN).as_str())
        );
        assert!(r
            .h("user-agent")
            .is_some_and(|ua| ua.starts_with("repovault/")));
    }

    let host = fake.host();
    let main = by_path(&listing, "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git");
    assert_eq!(main.provider, Provider::AzureDevOps);
    assert_eq!(
        main.key,
        format!("azure:{host}/fabrikam:278d5cd2-584d-4b63-824a-2ba458937249")
    );
    assert_eq!(
        main.name,
        format!("{host}/fabrikam/Fabrikam-Fiber-Git/Fabrikam-Fiber-Git")
    );
    // remoteUrl carries "fabrikam@": the clone URL has no user info.
    assert_eq!(
        main.clone_url,
        format!("http://{host}/fabrikam/Fabrikam-Fiber-Git/_git/Fabrikam-Fiber-Git")
    );
    assert_eq!(main.default_branch.as_deref(), Some("main"));
    assert!(!main.disabled && !main.empty && !main.is_fork && !main.archived);
    assert_eq!(main.git_user, "pat");
    assert_eq!(main.record["id"], "278d5cd2-584d-4b63-824a-2ba458937249");
    assert_eq!(main.record["project"]["name"], "Fabrikam-Fiber-Git");
    assert_eq!(main.record["project"]["visibility"], "private");
    assert_eq!(main.record["size"], 10485760);
    assert_eq!(main.record["isDisabled"], false);
    assert!(main.record["remoteUrl"].as_str().is_some());
    assert!(main.record.get("url").is_none(), "only the listed fields");

    let wiki = by_path(&listing, "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git.wiki");
    assert_eq!(wiki.default_branch.as_deref(), Some("wikiMaster"));
    assert!(wiki.clone_url.ends_with("/_git/Fabrikam-Fiber-Git.wiki"));

    let disabled = by_path(&listing, "Fabrikam-Fiber-Git/AnotherRepository");
    assert!(disabled.disabled, "isDisabled is flagged");
    let fork = by_path(&listing, "Fabrikam-Fiber-Git/forkRepository");
    assert!(fork.is_fork && !fork.disabled);
    let empty = by_path(&listing, "Fabrikam-Fiber-Git/EmptyRepo");
    assert!(empty.empty);
    assert_eq!(empty.default_branch, None);

    assert!(!format!("{listing:?}").contains(TOKEN));
    assert!(!serde_json::to_string(&listing)
        .expect("serialize")
        .contains(TOKEN));
}

#[test]
fn azure_devops_server_collection_base_url_and_bearer_token() {
    let fake = HttpFake::start(azure_handler(
        "/tfs/DefaultCollection",
        format!("Bearer {TOKEN}"),
    ));
    let host = fake.host().to_owned();
    let mut listings = Vec::new();
    // The collection given in the base URL, or appended from the scope.
    for base in [
        format!("{}/tfs/DefaultCollection", fake.base()),
        format!("{}/tfs/", fake.base()),
    ] {
        let mut src = ProviderSource::new(
            Provider::AzureDevOps,
            base,
            Scope::Org("DefaultCollection".into()),
        );
        src.token = Some(Secret::new(TOKEN.into()));
        src.token_kind = TokenKind::Bearer;
        let l = discover_blocking(&src, &opts()).expect("discover");
        assert_complete(&l);
        assert_eq!(l.repos.len(), 6);
        let t = by_path(&l, "TestGit/TestGit");
        assert_eq!(
            t.name,
            format!("{host}/tfs/DefaultCollection/TestGit/TestGit")
        );
        assert_eq!(
            t.clone_url,
            format!("http://{host}/tfs/DefaultCollection/TestGit/_git/TestGit")
        );
        assert_eq!(
            t.key,
            format!("azure:{host}/tfs/defaultcollection:66efb083-777a-4cac-a350-a24b046be6be")
        );
        listings.push(l);
    }
    assert_eq!(listings[0], listings[1]);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 10);
    assert!(reqs
        .iter()
        .all(|r| r.path.starts_with("/tfs/DefaultCollection/")));
    assert!(reqs
        .iter()
        .all(|r| r.h("authorization") == Some(format!("Bearer {TOKEN}").as_str())));
}

#[test]
fn azure_failed_project_makes_listing_incomplete() {
    let inner = azure_handler("/fabrikam", basic_auth_header("", TOKEN));
    let fake = HttpFake::start(with_faults(inner, |req, _| {
        req.path
            .contains("281f9a5b-af0d-49b4-a1df-fe6f5e5f84d0")
            .then(|| Resp::json(404, fixture("azure", "error_404_TF200016.json")))
    }));
    let l = discover_blocking(&azure_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert!(
        !l.complete,
        "a failed project must make the listing incomplete"
    );
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("TestGit"), "{:?}", l.warnings);
    assert_eq!(l.repos.len(), 5, "the other projects are still listed");
    // 404 is not retried.
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("281f9a5b"))
            .count(),
        1
    );
}

#[test]
fn azure_429_retry_after_twice_then_success() {
    let inner = azure_handler("/fabrikam", basic_auth_header("", TOKEN));
    let fake = HttpFake::start(with_faults(inner, |_, env| {
        (env.n < 2).then(|| {
            let rewrite = azure_rewrite(&env.base, "/fabrikam");
            serve_route(
                "azure",
                &scenario("azure", "throttle scenario: blocked"),
                &rewrite,
            )
        })
    }));
    let started = Instant::now();
    let l = discover_blocking(&azure_source(fake.base(), TOKEN), &opts()).expect("discover");
    let elapsed = started.elapsed();
    assert_complete(&l);
    assert_eq!(l.repos.len(), 6);
    assert!(
        elapsed >= Duration::from_millis(1950),
        "waited only {elapsed:?}"
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 7, "2 throttled + 2 project pages + 3 projects");
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(950));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(950));
    assert_eq!(reqs[0].path, reqs[2].path);
}

#[test]
fn azure_retry_after_on_200_delays_the_next_request() {
    let inner = azure_handler("/fabrikam", basic_auth_header("", TOKEN));
    let fake = HttpFake::start(move |req: &Req, env: &Ctx| {
        let resp = inner(req, env);
        if env.n == 0 {
            // The "delayed" variant: a normal body, plus Retry-After.
            let d = scenario("azure", "throttle scenario: delayed");
            let mut resp = resp;
            for (k, v) in d.headers.iter().filter(|(k, _)| k != "Content-Type") {
                resp = resp.header(k, v);
            }
            resp
        } else {
            resp
        }
    });
    let l = discover_blocking(&azure_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    let reqs = fake.requests();
    assert_eq!(
        reqs.len(),
        5,
        "a Retry-After on a 200 is a delay, not an error"
    );
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "next request after only {gap:?}"
    );
}

#[test]
fn azure_203_sign_in_page_is_an_auth_error() {
    // An on-premises server or proxy that answers the sign-in page even
    // though the redirect was suppressed: first for everything, then only
    // for the repository listings after the projects succeeded.
    for after_projects in [false, true] {
        let inner = azure_handler("/fabrikam", basic_auth_header("", TOKEN));
        let fake = HttpFake::start(with_faults(inner, move |req, env| {
            let hit = !after_projects || req.path.ends_with("/_apis/git/repositories");
            hit.then(|| {
                let rewrite = azure_rewrite(&env.base, "/fabrikam");
                serve_route(
                    "azure",
                    &scenario("azure", "no 'X-TFS-FedAuthRedirect"),
                    &rewrite,
                )
            })
        }));
        let mut src = azure_source(fake.base(), TOKEN);
        src.label = "azure-devops fabrikam".into();
        let err = discover_blocking(&src, &opts()).expect_err("a sign-in page is no listing");
        let shown = err.to_string();
        assert!(matches!(err, Error::Auth { status: 203, .. }), "{err:?}");
        assert!(shown.starts_with("azure-devops fabrikam: "), "{shown}");
        assert!(
            shown.contains("HTML") && shown.contains("token_env AZDO_PAT"),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "one line: {shown}");
        assert_no_token(&err, &shown);
        let expected = if after_projects { 3 } else { 1 };
        assert_eq!(fake.requests().len(), expected, "not retried");
    }
}

#[test]
fn azure_401_is_an_auth_error_without_retry() {
    let fake = HttpFake::start(azure_handler("/fabrikam", basic_auth_header("", TOKEN)));
    let mut src = azure_source(fake.base(), WRONG);
    src.label = "azure-devops fabrikam".into();
    let err = discover_blocking(&src, &opts()).expect_err("wrong token");
    let shown = err.to_string();
    assert!(matches!(err, Error::Auth { status: 401, .. }), "{err:?}");
    assert!(
        shown.starts_with(
            "azure-devops fabrikam: the token was rejected (HTTP 401): check token_env AZDO_PAT"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("TF400813"),
        "the server's message is kept: {shown}"
    );
    assert_no_token(&err, &shown);
    assert_eq!(
        fake.requests().len(),
        1,
        "a rejected token is never retried"
    );
}

#[test]
fn rate_limit_longer_than_max_wait_fails_fast() {
    let fake = HttpFake::start(|_: &Req, _: &Ctx| {
        Resp::json(429, fixture("azure", "error_429_TF400733.json")).header("Retry-After", "3600")
    });
    let started = Instant::now();
    let err = discover_blocking(&azure_source(fake.base(), TOKEN), &opts()).expect_err("limited");
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.requests().len(), 1);
}

// ---------------------------------------------------------------------------
// GitLab
// ---------------------------------------------------------------------------

#[test]
fn gitlab_group_with_subgroups_over_two_link_pages() {
    let fake = HttpFake::start(gitlab_handler());
    let host = fake.host().to_owned();
    let l = discover_blocking(&gitlab_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    assert_eq!(
        names(&l),
        vec![
            "backend",
            "empty-service",
            "platform/legacy-api",
            "sandbox/backend-fork"
        ]
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let first = &reqs[0];
    assert_eq!(first.path, "/api/v4/groups/acme/projects");
    assert_eq!(first.q("include_subgroups"), Some("true"));
    assert_eq!(first.q("with_shared"), Some("false"));
    assert_eq!(first.q("per_page"), Some("100"));
    assert_eq!(first.q("page"), None);
    // The second request is the Link rel="next" URL, verbatim.
    assert_eq!(reqs[1].q("page"), Some("2"));
    assert_eq!(reqs[1].q("per_page"), Some("2"));
    assert!(reqs.iter().all(|r| r.h("private-token") == Some(TOKEN)));
    assert!(reqs.iter().all(|r| r.h("authorization").is_none()));

    let legacy = by_path(&l, "platform/legacy-api");
    assert!(
        legacy.archived && !legacy.disabled,
        "archived is not disabled"
    );
    assert_eq!(legacy.name, format!("{host}/acme/platform/legacy-api"));
    assert_eq!(legacy.key, format!("gitlab:{host}:102"));
    let fork = by_path(&l, "sandbox/backend-fork");
    assert!(fork.is_fork);
    let empty = by_path(&l, "empty-service");
    assert!(empty.empty);
    assert_eq!(empty.default_branch, None);
    let backend = by_path(&l, "backend");
    assert_eq!(backend.clone_url, format!("http://{host}/acme/backend.git"));
    assert_eq!(backend.default_branch.as_deref(), Some("main"));
    assert_eq!(backend.git_user, "oauth2");
    assert_eq!(backend.record["path_with_namespace"], "acme/backend");
    assert_eq!(backend.record["namespace"]["full_path"], "acme");
    assert!(backend.record.get("_links").is_none());

    // include/exclude globs on the path within the group.
    let mut src = gitlab_source(fake.base(), TOKEN);
    src.include = vec!["platform/*".into(), "sandbox/**".into(), "BACKEND".into()];
    src.exclude = vec!["sandbox/*-fork".into()];
    let l = discover_blocking(&src, &opts()).expect("discover");
    assert_complete(&l);
    assert_eq!(names(&l), vec!["backend", "platform/legacy-api"]);
}

#[test]
fn gitlab_subgroup_path_is_url_encoded() {
    let fake = HttpFake::start(|_: &Req, _: &Ctx| Resp::json(200, "[]"));
    let mut src = gitlab_source(fake.base(), TOKEN);
    src.scope = Scope::Group("acme/platform".into());
    let l = discover_blocking(&src, &opts()).expect("discover");
    assert_complete(&l);
    assert!(l.repos.is_empty());
    let reqs = fake.requests();
    assert_eq!(reqs[0].raw_path, "/api/v4/groups/acme%2Fplatform/projects");
}

#[test]
fn gitlab_5xx_once_then_success_is_retried() {
    let fake = HttpFake::start(with_faults(gitlab_handler(), |_, env| {
        (env.n == 0).then(|| Resp::new(502, "text/html", "<html>502 Bad Gateway</html>"))
    }));
    let l = discover_blocking(&gitlab_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    assert_eq!(l.repos.len(), 4);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, reqs[1].path);
    assert_eq!(reqs[0].query, reqs[1].query);
}

#[test]
fn gitlab_403_that_is_not_a_rate_limit_is_not_retried() {
    // GitLab blocks an IP after repeated failed logins: 403, no headers.
    let fake = HttpFake::start(|_: &Req, _: &Ctx| Resp::new(403, "text/plain", "Forbidden"));
    let err = discover_blocking(&gitlab_source(fake.base(), TOKEN), &opts()).expect_err("403");
    assert!(matches!(err, Error::Auth { status: 403, .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("token_env GITLAB_TOKEN"), "{shown}");
    assert_no_token(&err, &shown);
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn gitlab_429_with_retry_after_is_retried() {
    let fake = HttpFake::start(with_faults(gitlab_handler(), |_, env| {
        (env.n == 0).then(|| {
            let base = env.base.clone();
            let rw: Rewrite =
                Arc::new(move |s: &str| s.replace("https://gitlab.example.com", &base));
            serve_route("gitlab", &scenario("gitlab", "throttle scenario"), &rw)
        })
    }));
    let started = Instant::now();
    let l = discover_blocking(&gitlab_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn async_api_with_a_shared_client() {
    let fake = HttpFake::start(gitlab_handler());
    let http = HttpClient::new(opts()).expect("client");
    let src = gitlab_source(fake.base(), TOKEN);
    let a = discover(&src, &http).await.expect("discover");
    let b = discover(&src, &http).await.expect("discover again");
    assert_complete(&a);
    assert_eq!(a, b);
    assert_eq!(fake.requests().len(), 4);
    assert!(!format!("{http:?}").contains(TOKEN));
}

// ---------------------------------------------------------------------------
// GitHub
// ---------------------------------------------------------------------------

#[test]
fn github_enterprise_org_over_two_link_pages() {
    let fake = HttpFake::start(github_handler());
    let host = fake.host().to_owned();
    let l = discover_blocking(&github_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    assert_eq!(
        names(&l),
        vec!["empty-repo", "hello-world", "legacy-tool", "spoon-knife"]
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/api/v3/orgs/octo-org/repos");
    assert_eq!(reqs[0].q("type"), Some("all"));
    assert_eq!(reqs[0].q("per_page"), Some("100"));
    assert_eq!(reqs[1].q("page"), Some("2"));

    let hello = by_path(&l, "hello-world");
    assert_eq!(hello.provider, Provider::GitHub);
    assert_eq!(hello.key, format!("github:{host}:1000"));
    assert_eq!(hello.name, format!("{host}/octo-org/hello-world"));
    assert_eq!(
        hello.clone_url,
        format!("http://{host}/octo-org/hello-world.git")
    );
    assert_eq!(hello.default_branch.as_deref(), Some("main"));
    assert_eq!(hello.git_user, "x-access-token");
    assert_eq!(hello.record["full_name"], "octo-org/hello-world");
    assert_eq!(hello.record["owner"]["login"], "octo-org");
    assert!(hello.record.get("permissions").is_none());
    assert!(by_path(&l, "spoon-knife").is_fork);
    let legacy = by_path(&l, "legacy-tool");
    assert!(legacy.archived && !legacy.disabled);
    assert!(by_path(&l, "empty-repo").empty);
}

#[test]
fn github_secondary_rate_limit_403_with_retry_after_is_retried() {
    let fake = HttpFake::start(with_faults(github_handler(), |_, env| {
        (env.n == 0).then(|| {
            Resp::json(403, fixture("github", "rate_limit_secondary_403.json"))
                .header("retry-after", "1")
                .header("x-ratelimit-remaining", "4998")
        })
    }));
    let started = Instant::now();
    let l = discover_blocking(&github_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    assert!(started.elapsed() >= Duration::from_millis(950));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(950));
}

#[test]
fn github_primary_and_headerless_secondary_rate_limits_are_waited_out() {
    // Primary: 403 + x-ratelimit-remaining 0, wait until x-ratelimit-reset.
    let fake = HttpFake::start(with_faults(github_handler(), |_, env| {
        (env.n == 0).then(|| {
            Resp::json(403, fixture("github", "rate_limit_primary_403.json"))
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &(now_epoch() + 1).to_string())
        })
    }));
    let l = discover_blocking(&github_source(fake.base(), TOKEN), &opts()).expect("primary");
    assert_complete(&l);
    assert_eq!(fake.requests().len(), 3);

    // Secondary without retry-after: the message alone marks it; wait the configured minimum.
    let fake = HttpFake::start(with_faults(github_handler(), |_, env| {
        (env.n == 0).then(|| Resp::json(403, fixture("github", "rate_limit_secondary_403.json")))
    }));
    let l = discover_blocking(&github_source(fake.base(), TOKEN), &opts()).expect("secondary");
    assert_complete(&l);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(190));
}

#[test]
fn github_failed_later_page_makes_listing_incomplete() {
    let fake = HttpFake::start(with_faults(github_handler(), |req, _| {
        (req.q("page") == Some("2")).then(|| Resp::json(500, r#"{"message":"Server Error"}"#))
    }));
    let l = discover_blocking(&github_source(fake.base(), TOKEN), &opts()).expect("partial");
    assert!(!l.complete);
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("500"), "{:?}", l.warnings);
    assert_eq!(names(&l), vec!["hello-world", "spoon-knife"]);
    let page2 = fake
        .requests()
        .iter()
        .filter(|r| r.q("page") == Some("2"))
        .count();
    assert_eq!(page2, 4, "1 attempt + max_retries (3)");
}

#[test]
fn github_next_link_to_another_host_is_not_followed() {
    let fake = HttpFake::start(move |req: &Req, env: &Ctx| {
        let resp = github_handler()(req, env);
        // Same port, different host name: another origin.
        let other = env.base.replace("127.0.0.1", "localhost");
        Resp {
            headers: resp
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.replace(&env.base, &other)))
                .collect(),
            ..resp
        }
    });
    let l = discover_blocking(&github_source(fake.base(), TOKEN), &opts()).expect("partial");
    assert!(!l.complete);
    assert!(l.warnings[0].contains("another host"), "{:?}", l.warnings);
    assert_eq!(fake.requests().len(), 1, "the token is not sent elsewhere");
}

// ---------------------------------------------------------------------------
// Errors of every provider
// ---------------------------------------------------------------------------

#[test]
fn wrong_token_401_everywhere_no_retry_no_token_in_errors() {
    let cases: Vec<(HttpFake, ProviderSource, &str)> = vec![
        {
            let f = HttpFake::start(gitlab_handler());
            let s = gitlab_source(f.base(), WRONG);
            (
                f,
                s,
                "gitlab acme: the token was rejected (HTTP 401): check token_env GITLAB_TOKEN",
            )
        },
        {
            let f = HttpFake::start(github_handler());
            let s = github_source(f.base(), WRONG);
            (
                f,
                s,
                "github octo-org: the token was rejected (HTTP 401): check token_env GITHUB_TOKEN",
            )
        },
        {
            let f = HttpFake::start(azure_handler("/fabrikam", basic_auth_header("", TOKEN)));
            let s = azure_source(f.base(), WRONG);
            (f, s, "azure-devops fabrikam: the token was rejected (HTTP 401): check token_env AZDO_PAT")
        },
    ];
    for (fake, src, prefix) in cases {
        let err = discover_blocking(&src, &opts()).expect_err("wrong token");
        let shown = err.to_string();
        assert!(matches!(err, Error::Auth { status: 401, .. }), "{err:?}");
        assert!(shown.starts_with(prefix), "{shown}");
        assert_no_token(&err, &shown);
        assert_eq!(fake.requests().len(), 1, "{prefix}: never retried");
        assert!(
            !format!("{src:?}").contains(WRONG),
            "Debug of the source hides the token"
        );
    }
}

#[test]
fn token_echoed_by_a_server_is_scrubbed_from_errors() {
    // A misbehaving server that repeats the credentials it received.
    let fake = HttpFake::start(|req: &Req, _: &Ctx| {
        let got = req
            .h("private-token")
            .or(req.h("authorization"))
            .unwrap_or_default()
            .to_owned();
        if req.path.contains("missing") {
            Resp::json(404, format!(r#"{{"message":"no such group for {got}"}}"#))
        } else if req.path.contains("broken") {
            Resp::json(500, format!(r#"{{"message":"crash with {got}"}}"#))
        } else {
            Resp::json(401, format!(r#"{{"message":"401 Unauthorized: {got}"}}"#))
        }
    });
    let mut errors = Vec::new();
    for group in ["acme", "missing", "broken"] {
        let mut src = gitlab_source(fake.base(), TOKEN);
        src.scope = Scope::Group(group.into());
        errors.push(discover_blocking(&src, &opts()).expect_err("fails"));
    }
    let src = azure_source(fake.base(), TOKEN);
    errors.push(discover_blocking(&src, &opts()).expect_err("fails"));
    assert!(matches!(errors[0], Error::Auth { .. }));
    assert!(matches!(errors[1], Error::NotFound { .. }));
    assert!(matches!(errors[2], Error::Http { status: 500, .. }));
    for e in &errors {
        let shown = e.to_string();
        assert!(shown.contains("***"), "scrubbed, not dropped: {shown}");
        assert_no_token(e, &shown);
    }
}

#[test]
fn unreachable_host_and_bad_configuration() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let src = gitlab_source(&format!("http://127.0.0.1:{port}"), TOKEN);
    let err = discover_blocking(&src, &opts()).expect_err("nothing listens");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_no_token(&err, &err.to_string());

    let mut src = gitlab_source("http://127.0.0.1:1", TOKEN);
    src.include = vec!["[oops".into()];
    assert!(matches!(
        discover_blocking(&src, &opts()),
        Err(Error::BadSource { .. })
    ));
    let src = ProviderSource::new(
        Provider::AzureDevOps,
        "https://dev.azure.com",
        Scope::User("me".into()),
    );
    assert!(matches!(
        discover_blocking(&src, &opts()),
        Err(Error::BadSource { .. })
    ));
    let src = gitlab_source(&format!("https://user:{TOKEN}@gitlab.example.com"), TOKEN);
    let err = discover_blocking(&src, &opts()).expect_err("credentials in the URL");
    assert!(matches!(err, Error::BadSource { .. }));
    assert_no_token(&err, &err.to_string());
}

#[test]
fn azure_older_server_api_version_fallback() {
    // A server that predates 7.1/7.0 rejects them with 400 (message wording
    // unverified); the client falls back and keeps the accepted version.
    let inner = azure_handler("/fabrikam", basic_auth_header("", TOKEN));
    let fake = HttpFake::start(move |req: &Req, env: &Ctx| match req.q("api-version") {
        Some("7.1") | Some("7.0") => Resp::json(
            400,
            r#"{"message":"The requested REST API version of 7.1 is out of range for this server. The latest REST API version this server supports is 6.0.","typeKey":"VssVersionOutOfRangeException"}"#,
        ),
        Some("6.0") => {
            let mut req = req.clone();
            for (k, v) in &mut req.query {
                if k == "api-version" {
                    *v = "7.1".into();
                }
            }
            inner(&req, env)
        }
        _ => Resp::json(400, r#"{"message":"bad version"}"#),
    });
    let l = discover_blocking(&azure_source(fake.base(), TOKEN), &opts()).expect("discover");
    assert_complete(&l);
    assert_eq!(l.repos.len(), 6);
    let versions: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.q("api-version").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        versions,
        vec!["7.1", "7.0", "6.0", "6.0", "6.0", "6.0", "6.0"]
    );
}

#[test]
fn user_scopes_use_the_documented_endpoints() {
    let fake = HttpFake::start(|_: &Req, _: &Ctx| Resp::json(200, "[]"));
    let base = fake.base().to_owned();
    let mut gh_user = github_source(&base, TOKEN);
    gh_user.scope = Scope::User("octocat".into());
    let mut gh_me = github_source(&base, TOKEN);
    gh_me.scope = Scope::AuthenticatedUser;
    let mut gl_user = gitlab_source(&base, TOKEN);
    gl_user.scope = Scope::User("alice".into());
    for src in [&gh_user, &gh_me, &gl_user] {
        let l = discover_blocking(src, &opts()).expect("discover");
        assert_complete(&l);
    }
    let reqs = fake.requests();
    assert_eq!(reqs[0].path, "/api/v3/users/octocat/repos");
    assert_eq!(reqs[1].path, "/api/v3/user/repos");
    assert_eq!(reqs[1].q("affiliation"), Some("owner"));
    assert_eq!(reqs[1].q("type"), None, "type with affiliation is a 422");
    assert_eq!(reqs[2].path, "/api/v4/users/alice/projects");
    assert!(reqs.iter().all(|r| r.q("per_page") == Some("100")));
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_api_inside_a_runtime_is_an_error_not_a_panic() {
    let src = gitlab_source("http://127.0.0.1:1", TOKEN);
    let err = discover_blocking(&src, &opts()).expect_err("inside a runtime");
    assert!(matches!(err, Error::Runtime(_)), "{err:?}");
}
