//! End-to-end tests of the config-driven nightly run: `repovault sync
//! --config FILE` against a fake Azure DevOps organisation whose repositories
//! are real git repositories served over smart HTTP.
//!
//! * The fake Azure DevOps REST API (std `TcpListener` on 127.0.0.1, one thread
//!   per connection, HTTP/1.1, `Connection: close`) serves projects in pages
//!   (`x-ms-continuationtoken`) and each project's repositories (hidden wiki
//!   repositories only with `includeHidden=true`), built from the fixtures in
//!   `tests/fixtures/azure/`. It checks `Authorization: Basic base64(":" + PAT)`
//!   and `X-TFS-FedAuthRedirect: Suppress`, records every request, and can be
//!   switched to rate limiting (429 + `Retry-After`), a 203 sign-in page or 401.
//! * The repositories' `remoteUrl`s point at an [`HttpGitServer`] that checks
//!   the same token as the HTTP password.
//!
//! The benchmark `bench_200_repositories` is `#[ignore]`d; run it with
//! `cargo test --release --test nightly -- --ignored --nocapture`.

use crate::support;

use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{base64_encode, git, refs_of, Ctx, HttpFake, HttpGitServer, Req, Resp, TestRepo};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_repovault");
const ORG: &str = "fabrikam";
const PAT_VAR: &str = "AZDO_PAT_TEST";
/// The label repovault gives the configured source.
const LABEL: &str = "azure-devops fabrikam";
/// No single repovault or git run of these tests should take longer.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs `cmd` with this file's time limit (see `support::run_with_timeout`).
fn run(cmd: &mut Command) -> Output {
    support::run_with_timeout(cmd, RUN_TIMEOUT)
}

use support::{describe, parse_json};

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A JSON reply as Azure DevOps sends it.
fn reply(status: u16, body: &Value) -> Resp {
    let body = serde_json::to_vec(body).expect("JSON");
    Resp::new(
        status,
        "application/json; charset=utf-8; api-version=7.1",
        body,
    )
}

// ---------------------------------------------------------------------------
// The fake Azure DevOps organisation
// ---------------------------------------------------------------------------

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/azure")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read fixture {}: {e}", p.display()))
}

fn fixture_json(name: &str) -> &'static Value {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static Value>>> = OnceLock::new();
    let mut m = CACHE.get_or_init(Default::default).lock().unwrap();
    m.entry(name.to_owned()).or_insert_with(|| {
        let v: Value = serde_json::from_str(&fixture(name)).expect("fixture JSON");
        Box::leak(Box::new(v))
    })
}

/// What the fake answers besides the normal listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// The next N project-list requests get 429 + `Retry-After: 1`.
    Throttle(u32),
    /// Every request gets 203 and an HTML sign-in page.
    SignIn203,
    /// Every request gets 401 (TF400813).
    Unauthorized401,
}

#[derive(Debug, Clone)]
struct AzProject {
    id: String,
    name: String,
}

#[derive(Debug, Clone)]
struct AzRepo {
    id: String,
    name: String,
    /// The project's name.
    project: String,
    /// Path of the repository below the git server's base.
    git_path: String,
    /// The git server (default: the organisation's).
    git_port: Option<u16>,
    default_branch: Option<String>,
    disabled: bool,
    /// Id of the parent when a fork.
    fork_of: Option<String>,
    /// A project wiki's backing repository (listed only with includeHidden=true).
    hidden: bool,
    /// The listing's `remoteUrl` when not the git server's (another host).
    remote: Option<String>,
}

struct AzState {
    projects: Vec<AzProject>,
    repos: Vec<AzRepo>,
    mode: Mode,
    /// Projects per page at most (the client's `$top` may lower it).
    page_size: usize,
    git_port: u16,
    /// A project whose repositories answer 404 (deleted meanwhile).
    gone_project: Option<String>,
    /// The project-list page (1-based) that answers 500 (`Retry-After: 0`).
    failing_page: Option<usize>,
    /// A project whose repository list says its true count but lists none
    /// (`{"count":N,"value":[]}`).
    emptied_project: Option<String>,
    /// Project-list requests are redirected (302) to this base, once.
    redirect_projects_to: Option<String>,
}

struct FakeAzure {
    http: HttpFake,
    state: Arc<Mutex<AzState>>,
}

impl FakeAzure {
    fn start(pat: &str, git_port: u16, page_size: usize) -> FakeAzure {
        let state = Arc::new(Mutex::new(AzState {
            projects: Vec::new(),
            repos: Vec::new(),
            mode: Mode::Normal,
            gone_project: None,
            failing_page: None,
            emptied_project: None,
            redirect_projects_to: None,
            page_size,
            git_port,
        }));
        let expected = format!("Basic {}", base64_encode(format!(":{pat}").as_bytes()));
        let st = state.clone();
        let http = HttpFake::start(move |seen: &Req, ctx: &Ctx| {
            let mut st = st.lock().unwrap();
            azure_reply(&mut st, seen, &ctx.base, &expected)
        });
        FakeAzure { http, state }
    }

    fn base(&self) -> String {
        self.http.base().to_owned()
    }

    fn with<R>(&self, f: impl FnOnce(&mut AzState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn set_mode(&self, m: Mode) {
        self.with(|s| s.mode = m);
    }

    fn log(&self) -> Vec<Req> {
        self.http.requests()
    }

    fn clear_log(&self) {
        self.http.clear_requests();
    }
}

fn not_found(message: &str) -> Resp {
    let mut v = fixture_json("error_404_TF200016.json").clone();
    v["message"] = json!(message);
    reply(404, &v)
}

fn azure_reply(st: &mut AzState, seen: &Req, base: &str, expected_auth: &str) -> Resp {
    let unauthorized = || {
        reply(401, fixture_json("error_401_TF400813.json")).header(
            "WWW-Authenticate",
            "Basic realm=\"https://tfsprodweu2.visualstudio.com/\"",
        )
    };
    let sign_in = || Resp {
        status: 203,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: fixture("signin_203.html").into_bytes(),
    };
    if seen.h("authorization") != Some(expected_auth) {
        // As the service: a sign-in page unless the redirect is suppressed.
        return if seen.h("x-tfs-fedauthredirect") == Some("Suppress") {
            unauthorized()
        } else {
            sign_in()
        };
    }
    if seen.h("x-tfs-fedauthredirect") != Some("Suppress") {
        return reply(
            400,
            &json!({"message": "the fake wants X-TFS-FedAuthRedirect: Suppress"}),
        );
    }
    match st.mode {
        Mode::SignIn203 => return sign_in(),
        Mode::Unauthorized401 => return unauthorized(),
        Mode::Normal | Mode::Throttle(_) => {}
    }
    if seen.q("api-version") != Some("7.1") {
        return reply(
            400,
            &json!({"message": "The requested REST API version is not supported (the fake wants 7.1)"}),
        );
    }
    let rest = match seen.path.strip_prefix(&format!("/{ORG}/")) {
        Some(r) => r,
        None => return not_found("no such organisation"),
    };
    if rest == "_apis/projects" {
        if let (Some(to), None) = (&st.redirect_projects_to, seen.q("redirected")) {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &seen.query {
                q.append_pair(k, v);
            }
            q.append_pair("redirected", "1");
            let location = format!("{to}{}?{}", seen.path, q.finish());
            return Resp {
                status: 302,
                headers: vec![("Location".into(), location)],
                body: Vec::new(),
            };
        }
        if let Mode::Throttle(n) = st.mode {
            if n > 0 {
                st.mode = Mode::Throttle(n - 1);
                return reply(429, fixture_json("error_429_TF400733.json"))
                    .header("Retry-After", "1")
                    .header("X-RateLimit-Resource", "Core")
                    .header("X-RateLimit-Limit", "200")
                    .header("X-RateLimit-Remaining", "0");
            }
        }
        let skip = match seen.q("continuationToken").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return reply(400, &json!({"message": "bad continuationToken"})),
        };
        if st
            .failing_page
            .is_some_and(|n| skip == (n - 1) * st.page_size)
        {
            return reply(
                500,
                &json!({"message": "TF246017: the fake's page is broken"}),
            )
            .header("Retry-After", "0");
        }
        let top = seen
            .q("$top")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(100);
        let size = top.min(st.page_size).max(1);
        let end = (skip + size).min(st.projects.len());
        let page: Vec<Value> = st.projects[skip.min(end)..end]
            .iter()
            .map(|p| project_json(p, base))
            .collect();
        let mut reply = reply(200, &json!({"count": page.len(), "value": page}));
        if end < st.projects.len() {
            reply = reply.header("x-ms-continuationtoken", &end.to_string());
        }
        return reply;
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if let [project, "_apis", "git", "repositories"] = parts.as_slice() {
        let Some(p) = st
            .projects
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(project) || p.name.eq_ignore_ascii_case(project))
        else {
            return not_found(&format!(
                "TF200016: The following project does not exist: {project}."
            ));
        };
        if st.gone_project.as_deref() == Some(p.name.as_str()) {
            return not_found(&format!(
                "TF200016: The following project does not exist: {}.",
                p.name
            ));
        }
        let hidden = seen.q("includeHidden") == Some("true");
        if st.emptied_project.as_deref() == Some(p.name.as_str()) {
            let n = st.repos.iter().filter(|r| r.project == p.name).count();
            return reply(200, &json!({"count": n, "value": []}));
        }
        let value: Vec<Value> = st
            .repos
            .iter()
            .filter(|r| r.project == p.name && (hidden || !r.hidden))
            .map(|r| repo_json(r, st, base))
            .collect();
        return reply(200, &json!({"count": value.len(), "value": value}));
    }
    not_found("no such route in the fake")
}

fn project_json(p: &AzProject, base: &str) -> Value {
    let mut v = fixture_json("projects_page1.json")["value"][0].clone();
    v["id"] = json!(p.id);
    v["name"] = json!(p.name);
    v["description"] = json!(format!("The {} project", p.name));
    v["url"] = json!(format!("{base}/{ORG}/_apis/projects/{}", p.id));
    v
}

fn repo_json(r: &AzRepo, st: &AzState, base: &str) -> Value {
    let template = &fixture_json("repositories_org_includeHidden.json")["value"][0];
    let p = st
        .projects
        .iter()
        .find(|p| p.name == r.project)
        .expect("the repository's project");
    let mut v = template.clone();
    v["id"] = json!(r.id);
    v["name"] = json!(r.name);
    v["url"] = json!(format!(
        "{base}/{ORG}/{}/_apis/git/repositories/{}",
        p.id, r.id
    ));
    let mut project = template["project"].clone();
    project["id"] = json!(p.id);
    project["name"] = json!(p.name);
    project["url"] = json!(format!("{base}/{ORG}/_apis/projects/{}", p.id));
    v["project"] = project.clone();
    let obj = v.as_object_mut().expect("object");
    match &r.default_branch {
        Some(b) => {
            obj.insert("defaultBranch".into(), json!(format!("refs/heads/{b}")));
        }
        None => {
            obj.remove("defaultBranch");
            obj.insert("size".into(), json!(0));
        }
    }
    let git_port = r.git_port.unwrap_or(st.git_port);
    // Like the service: the organisation as user name in the clone URL.
    let remote = r
        .remote
        .clone()
        .unwrap_or_else(|| format!("http://{ORG}@127.0.0.1:{git_port}/{}", r.git_path));
    v["remoteUrl"] = json!(remote);
    v["sshUrl"] = json!(format!(
        "git@ssh.dev.azure.com:v3/{ORG}/{}/{}",
        p.name, r.name
    ));
    v["webUrl"] = json!(format!("{base}/{ORG}/{}/_git/{}", p.name, r.name));
    v["isDisabled"] = json!(r.disabled);
    v["isInMaintenance"] = json!(false);
    if let Some(parent) = &r.fork_of {
        let pr = st
            .repos
            .iter()
            .find(|x| &x.id == parent)
            .expect("the fork's parent");
        v["isFork"] = json!(true);
        v["parentRepository"] = json!({
            "id": pr.id,
            "name": pr.name,
            "url": format!("{base}/{ORG}/_apis/git/repositories/{}", pr.id),
            "project": project,
            "isFork": false,
            "remoteUrl": format!("http://{ORG}@127.0.0.1:{git_port}/{}", pr.git_path),
        });
    }
    v
}

fn guid(n: u32) -> String {
    format!("{n:08x}-7c1e-4d2a-9b3f-{:012x}", u64::from(n) * 7919)
}

// ---------------------------------------------------------------------------
// The world: git server, fake Azure DevOps, source repositories, a vault
// ---------------------------------------------------------------------------

/// Where a listed repository's git data comes from.
enum Git {
    /// A work repository, mirrored to the git server.
    Work(TestRepo),
    /// An empty bare repository (no commits).
    Empty,
    /// Nothing at the path (fetching it fails).
    Missing,
}

struct World {
    dir: TempDir,
    /// The git server's base directory.
    root: PathBuf,
    git: HttpGitServer,
    az: FakeAzure,
    token: String,
    /// Work repositories by Azure repository id.
    works: HashMap<String, TestRepo>,
    next_id: u32,
}

/// A store with its cache and config file.
struct Vault {
    store: PathBuf,
    cache: PathBuf,
    config: PathBuf,
}

impl World {
    fn new(token: &str, page_size: usize) -> World {
        let dir = tempdir("repovault-nightly-");
        let root = dir.path().join("git");
        std::fs::create_dir_all(&root).unwrap();
        let git = HttpGitServer::start_token(&root, token);
        let az = FakeAzure::start(token, git.port, page_size);
        World {
            dir,
            root,
            git,
            az,
            token: token.to_owned(),
            works: HashMap::new(),
            next_id: 1,
        }
    }

    fn add_project(&mut self, name: &str) -> String {
        let id = guid(0xa000 + self.next_id);
        self.next_id += 1;
        self.az.with(|s| {
            s.projects.push(AzProject {
                id: id.clone(),
                name: name.to_owned(),
            })
        });
        id
    }

    /// The listing entry of a new repository `project/name`, its git data at
    /// `<org>/<project>/_git/<name>` on the git server.
    fn entry(&mut self, project: &str, name: &str) -> AzRepo {
        let id = guid(self.next_id);
        self.next_id += 1;
        AzRepo {
            id,
            name: name.to_owned(),
            project: project.to_owned(),
            git_path: format!("{ORG}/{project}/_git/{name}"),
            git_port: None,
            default_branch: Some("main".into()),
            disabled: false,
            fork_of: None,
            hidden: false,
            remote: None,
        }
    }

    /// Publishes the git data and lists the repository; returns its id.
    fn add(&mut self, mut r: AzRepo, data: Git) -> String {
        let bare = self.root.join(&r.git_path);
        match data {
            Git::Work(w) => {
                w.bare_clone_to(&bare);
                self.works.insert(r.id.clone(), w);
            }
            Git::Empty => {
                std::fs::create_dir_all(&bare).unwrap();
                git(&bare, &["init", "-q", "--bare"]);
                r.default_branch = None;
            }
            Git::Missing => {}
        }
        let id = r.id.clone();
        self.az.with(|s| s.repos.push(r));
        id
    }

    fn listed(&self, id: &str) -> AzRepo {
        self.az.with(|s| {
            s.repos
                .iter()
                .find(|r| r.id == id)
                .cloned()
                .expect("listed repository")
        })
    }

    fn unlist(&self, id: &str) {
        self.az.with(|s| s.repos.retain(|r| r.id != id));
    }

    /// The bare repository the git server serves for `id`.
    fn bare(&self, id: &str) -> PathBuf {
        self.root.join(self.listed(id).git_path)
    }

    fn work(&self, id: &str) -> &TestRepo {
        &self.works[id]
    }

    /// Pushes every ref of the work repository to the served bare one.
    fn publish(&self, id: &str, bare: &Path) {
        let w = self.work(id);
        w.publish(bare);
    }

    /// The name repovault gives `project/repo`.
    fn name(&self, project: &str, repo: &str) -> String {
        format!("127.0.0.1:{}/{ORG}/{project}/{repo}", self.az.http.port())
    }

    fn name_of(&self, r: &AzRepo) -> String {
        self.name(&r.project, &r.name)
    }

    fn key_of(&self, id: &str) -> String {
        format!("azure:127.0.0.1:{}/{ORG}:{id}", self.az.http.port())
    }

    /// A new store (`repovault init`), a cache path (not created) and a config.
    fn vault(&self, name: &str, jobs: Option<usize>) -> Vault {
        let base = self.dir.path().join(name);
        std::fs::create_dir_all(&base).unwrap();
        let v = Vault {
            store: base.join("store"),
            cache: base.join("cache"),
            config: base.join("repovault.toml"),
        };
        let jobs = jobs.map(|j| format!("jobs = {j}\n")).unwrap_or_default();
        let text = format!(
            "# nightly test config\nstore = '{}'\ncache = '{}'\n{jobs}\n[[sources]]\nkind = \"azure-devops\"\norganization = \"{ORG}\"\nurl = \"{}\"\ntoken_env = \"{PAT_VAR}\"\ngit_hosts = [\"127.0.0.1:{}\"]\n\n[retention]\nkeep_daily = 7\n",
            v.store.display(),
            v.cache.display(),
            self.az.base(),
            self.git.port
        );
        std::fs::write(&v.config, text).unwrap();
        let out = self.run(&v, &["init"]);
        assert!(out.status.success(), "init: {}", describe(&out));
        v
    }

    /// `repovault --store STORE <args>` (hermetic, the PAT in the child's environment).
    fn cmd(&self, v: &Vault, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        support::hermetic(&mut cmd);
        cmd.env(PAT_VAR, &self.token)
            .env_remove("RUST_LOG")
            .env_remove("REPOVAULT_STORE")
            .arg("--store")
            .arg(&v.store)
            .args(args);
        cmd
    }

    fn run(&self, v: &Vault, args: &[&str]) -> Output {
        run(&mut self.cmd(v, args))
    }

    fn json(&self, v: &Vault, args: &[&str]) -> Value {
        let out = self.run(v, args);
        assert!(
            out.status.success(),
            "repovault {args:?}: {}",
            describe(&out)
        );
        parse_json(&out)
    }

    /// `repovault sync --config FILE <extra>` (the store comes from the file).
    fn sync(&self, v: &Vault, extra: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        support::hermetic(&mut cmd);
        cmd.env(PAT_VAR, &self.token)
            .env_remove("RUST_LOG")
            .env_remove("REPOVAULT_STORE")
            .arg("sync")
            .arg("--config")
            .arg(&v.config)
            .args(extra);
        run(&mut cmd)
    }

    /// A successful `sync --config --json --report R`: returns the summary
    /// (checked equal to the report file).
    fn sync_ok(&self, v: &Vault, report: &str) -> Value {
        let report = self.dir.path().join(report);
        let out = self.sync(v, &["--json", "--report", report.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sync --config: {}",
            describe(&out)
        );
        let doc = parse_json(&out);
        let file: Value =
            serde_json::from_slice(&std::fs::read(&report).expect("the report file")).unwrap();
        assert_eq!(file["discovery"], doc["discovery"], "report file vs stdout");
        assert_eq!(file["repos"], doc["repos"], "report file vs stdout");
        assert_eq!(doc["totals"]["failed"], 0, "{doc:#}");
        assert_eq!(doc["discovery"]["sources"], 1, "{doc:#}");
        assert_eq!(doc["discovery"]["sources_failed"], json!([]), "{doc:#}");
        doc
    }

    fn repos(&self, v: &Vault) -> Vec<Value> {
        self.json(v, &["repos", "--json"])
            .as_array()
            .expect("repos --json is an array")
            .clone()
    }

    fn repo_row(&self, v: &Vault, name: &str) -> Value {
        let repos = self.repos(v);
        repos
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in repos --json: {repos:#?}"))
    }

    fn snapshots(&self, v: &Vault, repo: &str) -> Vec<Value> {
        self.json(v, &["snapshots", "--repo", repo, "--json", "--refs"])
            .as_array()
            .expect("snapshots --json is an array")
            .clone()
    }

    /// `restore --repo REPO <which> DEST` into a new directory.
    fn restore(&self, v: &Vault, repo: &str, which: &[&str]) -> (TempDir, PathBuf) {
        let dir = tempdir("repovault-nightly-restore-");
        let dest = dir.path().join("restored.git");
        let mut args = vec!["restore", "--repo", repo];
        args.extend_from_slice(which);
        args.push(dest.to_str().unwrap());
        let out = self.run(v, &args);
        assert!(
            out.status.success(),
            "restore --repo {repo} {which:?}: {}",
            describe(&out)
        );
        (dir, dest)
    }

    /// The git server's requests for the repository at `git_path`.
    fn git_requests_for(&self, git_path: &str) -> Vec<String> {
        let needle = format!("/{git_path}/");
        self.git
            .requests()
            .into_iter()
            .filter(|r| r.contains(&needle))
            .collect()
    }
}

fn small_repo(what: &str) -> TestRepo {
    let r = TestRepo::new();
    r.commit_file("README.md", format!("{what}\n"), &format!("{what}: first"));
    r.commit_file(
        "data.txt",
        format!("{what} data\n"),
        &format!("{what}: second"),
    );
    r
}

fn wiki_repo() -> TestRepo {
    let r = TestRepo::new();
    r.commit_file("Home.md", "# Welcome\n", "wiki: home");
    r.commit_file(".order", "Home\n", "wiki: order");
    r.git(&["branch", "-m", "main", "wikiMaster"]);
    r
}

/// Every listed, not disabled repository's latest snapshot restores to the
/// source's refs.
fn assert_restores_equal(w: &World, v: &Vault, ids: &[&str]) {
    for id in ids {
        let r = w.listed(id);
        let name = w.name_of(&r);
        let (_d, dest) = w.restore(v, &name, &["--latest"]);
        assert_eq!(
            refs_of(&dest),
            refs_of(&w.bare(id)),
            "restored refs of {name} differ from the source"
        );
    }
}

// ---------------------------------------------------------------------------
// 1 + 2. The first nightly run, then adds, a rename, a deletion, a force push
// ---------------------------------------------------------------------------

#[test]
fn nightly_run_discovers_syncs_restores_and_tracks_changes() {
    let mut w = World::new("azdo-pat-Nightly-0001", 2);
    // Two pages of projects: Alpha and Beta, then Gamma.
    for p in ["Alpha", "Beta", "Gamma"] {
        w.add_project(p);
    }
    let e = w.entry("Alpha", "app");
    let app = w.add(e, Git::Work(support::sample_repo()));
    let mut e = w.entry("Alpha", "Alpha.wiki");
    e.hidden = true;
    e.default_branch = Some("wikiMaster".into());
    let wiki = w.add(e, Git::Work(wiki_repo()));
    let mut e = w.entry("Beta", "legacy");
    e.disabled = true;
    let legacy = w.add(e, Git::Work(small_repo("legacy")));
    let mut e = w.entry("Beta", "app-fork");
    e.fork_of = Some(app.clone());
    let fork = {
        let f = support::sample_repo();
        f.commit_file("fork.txt", "forked\n", "fork work");
        w.add(e, Git::Work(f))
    };
    let e = w.entry("Gamma", "empty");
    let empty = w.add(e, Git::Empty);
    let e = w.entry("Gamma", "tools");
    let tools = w.add(e, Git::Work(small_repo("tools")));
    let e = w.entry("Beta", "old-stuff");
    let old = w.add(e, Git::Work(small_repo("old stuff")));
    let v = w.vault("vault", None);

    // ---- run 1 -----------------------------------------------------------
    let doc = w.sync_ok(&v, "report-1.json");
    let d = &doc["discovery"];
    let all = [&app, &wiki, &legacy, &fork, &empty, &tools, &old];
    let names: BTreeSet<String> = all.iter().map(|id| w.name_of(&w.listed(id))).collect();
    assert_eq!(strs(&d["new"]), names, "discovery.new: {doc:#}");
    assert_eq!(
        strs(&d["disabled"]),
        set(&[&w.name("Beta", "legacy")]),
        "{doc:#}"
    );
    assert_eq!(d["discovered"], 7, "{doc:#}");
    assert_eq!(d["renamed"], json!([]), "{doc:#}");
    assert_eq!(d["deleted"], json!([]), "{doc:#}");
    assert_eq!(d["warnings"], json!([]), "{doc:#}");
    let t = &doc["totals"];
    assert_eq!(
        (t["repos"].as_u64(), t["new"].as_u64()),
        (Some(6), Some(6)),
        "{doc:#}"
    );
    let synced: BTreeSet<String> = doc["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "new", "{r:#}");
            r["name"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut expect_synced = names.clone();
    expect_synced.remove(&w.name("Beta", "legacy"));
    assert_eq!(synced, expect_synced);

    // The API calls: two project pages, each project's repositories with
    // includeHidden=true, every request authenticated and suppressing the
    // sign-in redirect.
    let log = w.az.log();
    let expected_auth = format!(
        "Basic {}",
        base64_encode(format!(":{}", w.token).as_bytes())
    );
    for s in &log {
        assert_eq!(s.h("authorization"), Some(expected_auth.as_str()), "{s:?}");
        assert_eq!(s.h("x-tfs-fedauthredirect"), Some("Suppress"), "{s:?}");
        assert_eq!(s.q("api-version"), Some("7.1"), "{s:?}");
    }
    let project_pages: Vec<&Req> = log
        .iter()
        .filter(|s| s.path == format!("/{ORG}/_apis/projects"))
        .collect();
    assert_eq!(project_pages.len(), 2, "{log:#?}");
    assert_eq!(project_pages[0].q("continuationToken"), None);
    assert_eq!(project_pages[1].q("continuationToken"), Some("2"));
    assert!(
        project_pages.iter().all(|s| s.q("$top").is_some()),
        "{log:#?}"
    );
    let repo_lists: Vec<&Req> = log
        .iter()
        .filter(|s| s.path.ends_with("/_apis/git/repositories"))
        .collect();
    assert_eq!(repo_lists.len(), 3, "{log:#?}");
    for s in &repo_lists {
        assert_eq!(s.q("includeHidden"), Some("true"), "{s:?}");
    }

    // The disabled repository was never fetched.
    let legacy_path = w.listed(&legacy).git_path;
    assert_eq!(w.git_requests_for(&legacy_path), Vec::<String>::new());
    assert!(!w.git_requests_for(&w.listed(&app).git_path).is_empty());

    // repos --json: keys, states, provider records.
    let repos = w.repos(&v);
    assert_eq!(repos.len(), 7, "{repos:#?}");
    for id in all {
        let r = w.listed(id);
        let name = w.name_of(&r);
        let row = repos
            .iter()
            .find(|x| x["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing: {repos:#?}"));
        assert_eq!(row["key"], w.key_of(id).as_str(), "{row:#}");
        assert!(row["key"].as_str().unwrap().starts_with("azure:"));
        assert_eq!(row["origin"], LABEL, "{row:#}");
        assert_eq!(
            row["url"],
            format!("http://127.0.0.1:{}/{}", w.git.port, r.git_path).as_str(),
            "the clone URL without the user name: {row:#}"
        );
        let rec = &row["record"];
        assert_eq!(rec["id"], id.as_str(), "{row:#}");
        assert_eq!(rec["name"], r.name.as_str(), "{row:#}");
        assert_eq!(rec["project"]["name"], r.project.as_str(), "{row:#}");
        assert!(rec["project"]["id"].is_string(), "{row:#}");
        assert_eq!(rec["isDisabled"], r.disabled, "{row:#}");
        assert_eq!(
            rec["isFork"].as_bool().unwrap_or(false),
            r.fork_of.is_some(),
            "{row:#}"
        );
        match &r.default_branch {
            Some(b) => assert_eq!(rec["defaultBranch"], format!("refs/heads/{b}").as_str()),
            None => assert!(rec.get("defaultBranch").is_none(), "{row:#}"),
        }
        assert_eq!(row["previous_names"], json!([]), "{row:#}");
        if r.disabled {
            assert_eq!(row["state"], "disabled", "{row:#}");
            assert_eq!(row["snapshots"], 0, "{row:#}");
        } else {
            assert_eq!(row["state"], "active", "{row:#}");
            assert_eq!(row["snapshots"], 1, "{row:#}");
            assert_eq!(row["last_status"], "new", "{row:#}");
        }
    }
    let fork_row = repos
        .iter()
        .find(|x| x["name"] == w.name("Beta", "app-fork").as_str())
        .unwrap();
    assert_eq!(fork_row["record"]["parentRepository"]["id"], app.as_str());

    // Every synced snapshot restores to the source's refs.
    assert_restores_equal(&w, &v, &[&app, &wiki, &fork, &empty, &tools, &old]);
    let (_d, wiki_restored) = w.restore(&v, &w.name("Alpha", "Alpha.wiki"), &["--latest"]);
    assert_eq!(
        git(&wiki_restored, &["symbolic-ref", "HEAD"]),
        "refs/heads/wikiMaster"
    );

    // ---- changes upstream ------------------------------------------------
    let app_bare = w.bare(&app);
    let app_refs_1 = refs_of(&app_bare);
    let old_tip = w.work(&app).rev_parse("main");
    let old_feature = w.work(&app).rev_parse("feature");
    // Force push: main rewritten, the feature branch and its commit gone.
    {
        let a = w.work(&app);
        a.git(&["reset", "-q", "--hard", "HEAD~1"]);
        a.commit_file("README.md", "rewritten history\n", "rewritten third");
        a.git(&["branch", "-D", "feature"]);
    }
    w.publish(&app, &app_bare);
    assert!(!refs_of(&app_bare)
        .iter()
        .any(|(_, o)| *o == old_tip || *o == old_feature));
    let app_refs_2 = refs_of(&app_bare);
    assert_ne!(app_refs_1, app_refs_2);

    // Rename: same id, new name and remoteUrl path; the old path keeps serving.
    let tools_old_name = w.name("Gamma", "tools");
    let tools_new_name = w.name("Gamma", "tooling");
    let tools_bare = w.bare(&tools);
    let new_path = format!("{ORG}/Gamma/_git/tooling");
    std::os::unix::fs::symlink(&tools_bare, w.root.join(&new_path)).unwrap();
    w.az.with(|s| {
        let r = s.repos.iter_mut().find(|r| r.id == tools).unwrap();
        r.name = "tooling".into();
        r.git_path = new_path.clone();
    });
    // ... and pushed to, so run 2 takes a second snapshot of it.
    w.work(&tools)
        .commit_file("CHANGES.md", "renamed\n", "after the rename");
    w.publish(&tools, &tools_bare);

    // Deleted upstream.
    let old_name = w.name("Beta", "old-stuff");
    let old_bare = w.bare(&old);
    w.unlist(&old);

    // Added.
    let e = w.entry("Gamma", "newcomer");
    let added = w.add(e, Git::Work(small_repo("newcomer")));
    let added_name = w.name("Gamma", "newcomer");

    // Provider records written with another key order (older versions sorted
    // the keys): the same record, so run 2 must not record it again.
    let index = rusqlite::Connection::open(v.store.join("index.sqlite")).unwrap();
    let reordered: Vec<(i64, i64, String)> = {
        let mut st = index
            .prepare("SELECT repo, time, record FROM repo_records")
            .unwrap();
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))
            .unwrap();
        rows.map(|r| {
            let (repo, time, text) = r.unwrap();
            let rec: Value = serde_json::from_str(&text).unwrap();
            let map = rec.as_object().unwrap();
            let mut out = String::from("{");
            for (i, (k, val)) in map.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{}:{}", json!(k), val));
            }
            out.push('}');
            assert_ne!(out, text, "reversing changes the text");
            (repo, time, out)
        })
        .collect()
    };
    for (repo, time, text) in &reordered {
        index
            .execute(
                "UPDATE repo_records SET record = ?3 WHERE repo = ?1 AND time = ?2",
                rusqlite::params![repo, time, text],
            )
            .unwrap();
    }
    drop(index);
    let records_of = |name: &str| -> i64 {
        let index = rusqlite::Connection::open(v.store.join("index.sqlite")).unwrap();
        index
            .query_row(
                "SELECT count(*) FROM repo_records x JOIN repos r ON r.id = x.repo WHERE r.name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap()
    };
    let wiki_name = w.name("Alpha", "Alpha.wiki");
    assert_eq!(records_of(&wiki_name), 1);

    // ---- run 2 -----------------------------------------------------------
    w.az.clear_log();
    let doc = w.sync_ok(&v, "report-2.json");
    assert_eq!(
        records_of(&wiki_name),
        1,
        "an unchanged record in another key order is no new record"
    );
    let d = &doc["discovery"];
    assert_eq!(d["new"], json!([added_name]), "{doc:#}");
    assert_eq!(
        d["renamed"],
        json!([[tools_old_name, tools_new_name]]),
        "{doc:#}"
    );
    assert_eq!(d["deleted"], json!([old_name]), "{doc:#}");
    assert_eq!(d["disabled"], json!([]), "already disabled: {doc:#}");
    assert_eq!(d["discovered"], 7, "{doc:#}");
    let status_of = |name: &str| {
        doc["repos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no report for {name}: {doc:#}"))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status_of(&added_name), "new");
    assert_eq!(status_of(&tools_new_name), "changed");
    assert_eq!(status_of(&w.name("Alpha", "app")), "changed");
    assert_eq!(status_of(&w.name("Alpha", "Alpha.wiki")), "unchanged");
    assert_eq!(doc["totals"]["repos"], 6, "{doc:#}");

    let repos = w.repos(&v);
    assert_eq!(repos.len(), 8, "{repos:#?}");
    assert!(
        !repos.iter().any(|r| r["name"] == tools_old_name.as_str()),
        "the old name is no separate repository: {repos:#?}"
    );
    let renamed = w.repo_row(&v, &tools_new_name);
    assert_eq!(renamed["key"], w.key_of(&tools).as_str());
    assert_eq!(renamed["state"], "active");
    assert_eq!(
        renamed["previous_names"],
        json!([tools_old_name]),
        "{renamed:#}"
    );
    assert_eq!(renamed["record"]["name"], "tooling", "{renamed:#}");
    assert_eq!(renamed["snapshots"], 2, "{renamed:#}");
    let snaps = w.snapshots(&v, &tools_new_name);
    assert_eq!(
        snaps.len(),
        2,
        "run 1's snapshot stays with the renamed repository"
    );
    let deleted = w.repo_row(&v, &old_name);
    assert_eq!(deleted["state"], "deleted", "{deleted:#}");
    assert_eq!(deleted["snapshots"], 1, "{deleted:#}");
    assert_eq!(w.snapshots(&v, &old_name).len(), 1);
    let (_d, old_restored) = w.restore(&v, &old_name, &["--latest"]);
    assert_eq!(refs_of(&old_restored), refs_of(&old_bare));
    assert_eq!(
        w.repo_row(&v, &w.name("Beta", "legacy"))["state"],
        "disabled"
    );
    assert_eq!(w.repo_row(&v, &added_name)["state"], "active");

    // The force-pushed repository: the first snapshot keeps the old history.
    let app_name = w.name("Alpha", "app");
    let snaps = w.snapshots(&v, &app_name);
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let first = snaps[0]["id"].as_str().unwrap();
    let (_d1, r1) = w.restore(&v, &app_name, &["--snapshot", first]);
    assert_eq!(refs_of(&r1), app_refs_1);
    for c in [&old_tip, &old_feature] {
        assert!(
            support::git_ok(&r1, &["cat-file", "-e", &format!("{c}^{{commit}}")]),
            "the first snapshot lost {c}"
        );
    }
    let (_d2, r2) = w.restore(&v, &app_name, &["--latest"]);
    assert_eq!(refs_of(&r2), app_refs_2);

    // Everything listed restores to its current source.
    assert_restores_equal(&w, &v, &[&app, &wiki, &fork, &empty, &tools, &added]);

    // The old name still finds the renamed repository.
    let (_d3, by_old) = w.restore(&v, &tools_old_name, &["--latest"]);
    assert_eq!(refs_of(&by_old), refs_of(&tools_bare));
    let by_old_snaps = w.snapshots(&v, &tools_old_name);
    assert_eq!(by_old_snaps.len(), 2);

    // ---- run 3: nothing changed -----------------------------------------
    let doc = w.sync_ok(&v, "report-3.json");
    let d = &doc["discovery"];
    for k in ["new", "renamed", "deleted", "disabled"] {
        assert_eq!(d[k], json!([]), "{k}: {doc:#}");
    }
    assert_eq!(doc["totals"]["unchanged"], 6, "{doc:#}");
    assert_eq!(w.repo_row(&v, &old_name)["state"], "deleted");
    assert_eq!(w.git_requests_for(&legacy_path), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 3. Rate limiting and rejected tokens
// ---------------------------------------------------------------------------

/// `(name, state, snapshots)` of every repository.
fn states(w: &World, v: &Vault) -> Vec<(String, String, u64)> {
    w.repos(v)
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
                r["snapshots"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Exactly one `repovault: error:` line, naming the source; returns it.
fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("repovault: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {}", describe(out));
    let line = lines[0].to_owned();
    assert!(line.contains(LABEL), "names the source: {line}");
    line
}

#[test]
fn rate_limits_are_waited_out_and_rejected_tokens_delete_nothing() {
    let mut w = World::new("azdo-pat-Limits-0002", 1);
    w.add_project("Alpha");
    w.add_project("Beta");
    let e = w.entry("Alpha", "app");
    w.add(e, Git::Work(small_repo("app")));
    let e = w.entry("Beta", "lib");
    w.add(e, Git::Work(small_repo("lib")));
    let v = w.vault("vault", Some(2));
    w.sync_ok(&v, "report-0.json");
    let before = states(&w, &v);
    assert_eq!(before.len(), 2);

    // 429 + Retry-After: 1, twice, then success.
    w.az.clear_log();
    w.az.set_mode(Mode::Throttle(2));
    let t = Instant::now();
    let doc = w.sync_ok(&v, "report-429.json");
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "took only {took:?}");
    assert_eq!(w.az.with(|s| s.mode), Mode::Throttle(0));
    let firsts: Vec<Instant> =
        w.az.log()
            .iter()
            .filter(|s| s.path.ends_with("/_apis/projects") && s.q("continuationToken").is_none())
            .map(|s| s.at)
            .collect();
    assert_eq!(firsts.len(), 3, "two refusals and the success");
    for pair in firsts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(950),
            "Retry-After not honoured: {gap:?}"
        );
    }
    assert_eq!(doc["totals"]["unchanged"], 2, "{doc:#}");
    assert_eq!(doc["discovery"]["deleted"], json!([]), "{doc:#}");
    assert_eq!(states(&w, &v), before);

    // A 203 sign-in page, then a 401: an auth error naming the source, and
    // nothing is marked deleted.
    for (mode, words) in [
        (Mode::SignIn203, ["203", "sign-in"]),
        (Mode::Unauthorized401, ["401", "rejected"]),
    ] {
        w.az.set_mode(mode);
        w.az.clear_log();
        let out = w.sync(&v, &[]);
        assert_ne!(out.status.code(), Some(0), "{mode:?}: {}", describe(&out));
        let line = one_error_line(&out);
        eprintln!("{mode:?}: {line}");
        for word in words {
            assert!(line.contains(word), "{mode:?}: {line}");
        }
        assert!(
            line.contains(PAT_VAR),
            "names where the token comes from: {line}"
        );
        assert_eq!(
            w.az.log().len(),
            1,
            "an auth failure is not retried: {:#?}",
            w.az.log()
        );
        assert_eq!(states(&w, &v), before, "{mode:?}");

        let report = w.dir.path().join("report-fail.json");
        let out = w.sync(&v, &["--json", "--report", report.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(0), "{mode:?}: {}", describe(&out));
        let doc = parse_json(&out);
        let failed = doc["discovery"]["sources_failed"].as_array().unwrap();
        assert_eq!(failed.len(), 1, "{doc:#}");
        assert!(!failed[0].as_str().unwrap().contains('\n'));
        assert_eq!(doc["discovery"]["deleted"], json!([]), "{doc:#}");
        assert_eq!(doc["totals"]["repos"], 0, "{doc:#}");
        assert_eq!(states(&w, &v), before, "{mode:?}");
    }

    // A project vanishing between the project list and its repository list
    // makes the listing incomplete: its repositories are not marked deleted,
    // they are still synced (known from earlier runs), and the run is partial.
    w.az.set_mode(Mode::Normal);
    w.az.with(|s| s.gone_project = Some("Beta".into()));
    let report = w.dir.path().join("report-incomplete.json");
    let out = w.sync(&v, &["--json", "--report", report.to_str().unwrap()]);
    let doc = parse_json(&out);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(doc["discovery"]["deleted"], json!([]), "{doc:#}");
    assert_eq!(doc["discovery"]["discovered"], 1, "{doc:#}");
    assert_eq!(
        strs(&doc["discovery"]["from_earlier_runs"]),
        set(&[&w.name("Beta", "lib")]),
        "{doc:#}"
    );
    assert_eq!(doc["totals"]["unchanged"], 2, "{doc:#}");
    let warnings = doc["discovery"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("incomplete")),
        "{doc:#}"
    );
    assert_eq!(states(&w, &v), before);
    w.az.with(|s| s.gone_project = None);

    // Back to normal: the same repositories, still active.
    w.az.set_mode(Mode::Normal);
    let doc = w.sync_ok(&v, "report-ok.json");
    assert_eq!(doc["discovery"]["deleted"], json!([]), "{doc:#}");
    assert_eq!(states(&w, &v), before);
}

#[test]
fn a_failed_source_is_named_once() {
    let mut w = World::new("azdo-pat-Once-0007", 1);
    w.add_project("Alpha");
    let v = w.vault("vault", None);
    w.az.set_mode(Mode::Unauthorized401);
    let out = w.sync(&v, &[]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let line = one_error_line(&out);
    assert_eq!(line.matches(LABEL).count(), 1, "{line}");
}

// ---------------------------------------------------------------------------
// 4. The token never leaks
// ---------------------------------------------------------------------------

use support::{contains, files_below};

#[test]
fn token_never_leaks_from_a_verbose_nightly_run() {
    const TOKEN: &str = "azdo-SECRET-98765";
    let mut w = World::new(TOKEN, 1);
    w.add_project("Alpha");
    w.add_project("Beta");
    let e = w.entry("Alpha", "app");
    let app = w.add(e, Git::Work(support::sample_repo()));
    let mut e = w.entry("Alpha", "Alpha.wiki");
    e.hidden = true;
    e.default_branch = Some("wikiMaster".into());
    w.add(e, Git::Work(wiki_repo()));
    let e = w.entry("Beta", "empty");
    w.add(e, Git::Empty);
    // Fails: nothing at its path on the git server.
    let e = w.entry("Beta", "gone-missing");
    w.add(e, Git::Missing);
    // Fails: served by another git server that wants another token.
    let other_root = w.dir.path().join("other-git");
    std::fs::create_dir_all(&other_root).unwrap();
    let other = HttpGitServer::start_token(&other_root, "a-different-token-000");
    let mut e = w.entry("Beta", "elsewhere");
    e.git_port = Some(other.port);
    e.git_path = "elsewhere.git".into();
    small_repo("elsewhere").bare_clone_to(&other_root.join("elsewhere.git"));
    w.add(e, Git::Missing);
    let v = w.vault("vault", Some(2));

    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut reports = Vec::new();
    for round in 1..=2 {
        let report = w.dir.path().join(format!("report-{round}.json"));
        let out = w.sync(&v, &["-vv", "--report", report.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "partial success: {}",
            describe(&out)
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(doc["totals"]["failed"], 2, "{doc:#}");
        assert_eq!(doc["totals"]["repos"], 5, "{doc:#}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("DEBUG"), "-vv logs debug lines: {stderr}");
        outputs.push((format!("sync round {round}"), out));
        reports.push(report);
        w.work(&app)
            .commit_file("more.txt", format!("round {round}\n"), "more");
        w.publish(&app, &w.bare(&app));
    }
    let out = w.sync(&v, &["-vv", "--json"]);
    outputs.push(("sync --json".into(), out));
    for args in [
        &["-vv", "repos", "--json"][..],
        &["-vv", "repos"],
        &["-vv", "snapshots", "--json"],
        &["-vv", "stats", "--json"],
    ] {
        outputs.push((format!("{args:?}"), w.run(&v, args)));
    }
    let dest_dir = tempdir("repovault-nightly-restore-");
    let dest = dest_dir.path().join("app.git");
    let out = w.run(
        &v,
        &[
            "-vv",
            "restore",
            "--repo",
            &w.name("Alpha", "app"),
            "--latest",
            dest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    outputs.push(("restore".into(), out));
    let mut check = Command::new(BIN);
    support::hermetic(&mut check);
    check
        .env(PAT_VAR, TOKEN)
        .args(["-vv", "config", "check"])
        .arg(&v.config);
    outputs.push(("config check".into(), run(&mut check)));

    let mut needles: Vec<(String, Vec<u8>)> = vec![("the token".into(), TOKEN.as_bytes().to_vec())];
    for user in ["", "pat", "git", "oauth2", "x-access-token", ORG] {
        let b64 = base64_encode(format!("{user}:{TOKEN}").as_bytes());
        // Without the padding, too (a prefix of any longer encoding).
        let trimmed = b64.trim_end_matches('=').to_owned();
        needles.push((format!("base64({user:?}:token)"), b64.into_bytes()));
        needles.push((
            format!("base64({user:?}:token) unpadded"),
            trimmed.into_bytes(),
        ));
    }
    let check_bytes = |what: &str, bytes: &[u8]| {
        for (n, needle) in &needles {
            assert!(!contains(bytes, needle), "{what} contains {n}");
        }
    };

    let mut files = Vec::new();
    files_below(&v.store, &mut files);
    files_below(&v.cache, &mut files);
    files_below(&dest, &mut files);
    assert!(
        files.len() > 20,
        "the walk found the store and the cache: {files:?}"
    );
    for f in &files {
        check_bytes(&f.display().to_string(), &std::fs::read(f).unwrap());
    }
    let mirror_configs: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.starts_with(&v.cache) && f.file_name().is_some_and(|n| n == "config"))
        .collect();
    // Four mirrors: "elsewhere" is refused (its host is not the source's)
    // before any mirror is made for it.
    assert!(mirror_configs.len() >= 4, "{mirror_configs:?}");
    for f in mirror_configs {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("extraheader"),
            "{}: {text}",
            f.display()
        );
        assert!(!text.contains(TOKEN), "{}", f.display());
    }
    for r in &reports {
        check_bytes(&r.display().to_string(), &std::fs::read(r).unwrap());
    }
    for (what, out) in &outputs {
        check_bytes(&format!("stdout of {what}"), &out.stdout);
        check_bytes(&format!("stderr of {what}"), &out.stderr);
    }
}

// ---------------------------------------------------------------------------
// 5. config check, and configuration errors
// ---------------------------------------------------------------------------

use support::listing;

fn config_check(w: &World, config: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    support::hermetic(&mut cmd);
    cmd.env(PAT_VAR, &w.token)
        .env_remove("REPOVAULT_STORE")
        .args(["config", "check"])
        .arg(config)
        .args(extra);
    run(&mut cmd)
}

#[test]
fn config_check_lists_everything_and_touches_nothing() {
    let mut w = World::new("azdo-pat-Check-0003", 1);
    w.add_project("Alpha");
    w.add_project("Beta");
    let e = w.entry("Alpha", "app");
    let app = w.add(e, Git::Work(small_repo("app")));
    let mut e = w.entry("Alpha", "Alpha.wiki");
    e.hidden = true;
    let wiki = w.add(e, Git::Work(small_repo("wiki")));
    let mut e = w.entry("Beta", "legacy");
    e.disabled = true;
    let legacy = w.add(e, Git::Work(small_repo("legacy")));
    let mut e = w.entry("Beta", "app-fork");
    e.fork_of = Some(app.clone());
    let fork = w.add(e, Git::Work(small_repo("fork")));
    let e = w.entry("Beta", "empty");
    let empty = w.add(e, Git::Empty);
    let v = w.vault("vault", None);
    let before = listing(&v.store);
    assert!(!before.is_empty());
    assert!(!v.cache.exists());

    let out = config_check(&w, &v.config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for id in [&app, &wiki, &legacy, &fork, &empty] {
        let name = w.name_of(&w.listed(id));
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "{name} not listed:\n{stdout}"
        );
    }
    let legacy_line = stdout
        .lines()
        .find(|l| l.contains(&w.name("Beta", "legacy")))
        .unwrap();
    assert!(legacy_line.contains("disabled"), "{legacy_line}");

    let out = config_check(&w, &v.config, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = parse_json(&out);
    let src = &doc[0];
    assert_eq!(src["source"], LABEL, "{doc:#}");
    assert_eq!(src["complete"], true, "{doc:#}");
    let keys: BTreeSet<String> = src["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = [&app, &wiki, &legacy, &fork, &empty]
        .iter()
        .map(|id| w.key_of(id))
        .collect();
    assert_eq!(keys, want, "{doc:#}");

    // Nothing was fetched, nothing written.
    assert_eq!(w.git.requests(), Vec::<String>::new());
    assert_eq!(listing(&v.store), before, "config check changed the store");
    assert!(!v.cache.exists(), "config check created the cache");
    assert!(!w.az.log().is_empty());
}

/// `repovault config check FILE` and `repovault sync --config FILE`, the PAT set.
fn config_cmd(sync: bool, config: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    support::hermetic(&mut cmd);
    cmd.env(PAT_VAR, "azdo-pat-Config-0004")
        .env_remove("REPOVAULT_STORE");
    if sync {
        cmd.args(["sync", "--config"]);
    } else {
        cmd.args(["config", "check"]);
    }
    run(cmd.arg(config))
}

/// stderr is exactly one line; returns it.
fn only_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {}", describe(out));
    stderr
}

/// The start of a config: a store and an Azure DevOps source (line 3 is
/// `[[sources]]`, the next key written goes on line 7).
fn config_head(store: &Path) -> String {
    format!(
        "store = '{}'\n\n[[sources]]\nkind = \"azure-devops\"\norganization = \"{ORG}\"\nurl = \"http://127.0.0.1:9\"\n",
        store.display()
    )
}

#[test]
fn config_errors_are_one_line_and_name_the_problem() {
    let dir = tempdir("repovault-nightly-config-");
    let store = dir.path().join("store");
    let head = config_head(&store);

    // An unknown top-level key, on line 2.
    let bad_top = dir.path().join("bad-top.toml");
    std::fs::write(
        &bad_top,
        format!("# config\njbos = 4\n{head}token_env = \"{PAT_VAR}\"\n"),
    )
    .unwrap();
    for sync in [false, true] {
        let out = config_cmd(sync, &bad_top);
        assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
        let line = only_line(&out);
        assert!(line.contains("jbos") && line.contains("line 2"), "{line}");
    }

    // An unknown key in a source: the key is named (its line: see
    // unknown_key_in_a_source_names_the_key_line).
    let bad_key = dir.path().join("bad-key.toml");
    std::fs::write(&bad_key, format!("{head}tokn_env = \"{PAT_VAR}\"\n")).unwrap();
    for sync in [false, true] {
        let out = config_cmd(sync, &bad_key);
        assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
        let line = only_line(&out);
        assert!(line.contains("tokn_env"), "names the key: {line}");
        assert!(line.contains("line "), "names a line: {line}");
    }

    // A token file readable by others is refused, by check and by sync.
    let pat = dir.path().join("azdo.pat");
    std::fs::write(&pat, "azdo-pat-in-a-FILE-0005\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pat, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = dir.path().join("loose.toml");
    std::fs::write(&loose, format!("{head}token_file = '{}'\n", pat.display())).unwrap();
    for sync in [false, true] {
        let out = config_cmd(sync, &loose);
        assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
        let line = only_line(&out);
        assert!(line.contains("chmod 600"), "{line}");
        assert!(
            line.contains(&pat.display().to_string()),
            "names the file: {line}"
        );
        assert!(!line.contains("azdo-pat-in-a-FILE-0005"), "{line}");
    }
    assert!(!store.exists(), "nothing was created");
}

#[test]
fn unknown_key_in_a_source_names_the_key_line() {
    let dir = tempdir("repovault-nightly-config-");
    let head = config_head(&dir.path().join("store"));
    let bad_key = dir.path().join("bad-key.toml");
    // Line 7; line 3 is the `[[sources]]` header.
    std::fs::write(&bad_key, format!("{head}tokn_env = \"{PAT_VAR}\"\n")).unwrap();
    let out = config_cmd(false, &bad_key);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let line = only_line(&out);
    assert!(line.contains("tokn_env"), "names the key: {line}");
    assert!(line.contains("line 7"), "names the key's line: {line}");
}

// ---------------------------------------------------------------------------
// 6. Benchmark: 200 repositories
// ---------------------------------------------------------------------------

#[test]
#[ignore = "benchmark: cargo test --release --test nightly -- --ignored --nocapture"]
fn bench_200_repositories() {
    const N: usize = 200;
    let mut w = World::new("azdo-pat-Bench-0006", 100);
    w.add_project("Bench");
    let t = Instant::now();
    let template = small_repo("bench");
    let tmpl = template.dir.path().join("template.git");
    template.bare_clone_to(&tmpl);
    for i in 0..N {
        let name = format!("repo-{i:03}");
        let e = w.entry("Bench", &name);
        let bare = w.root.join(&e.git_path);
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(&tmpl)
            .arg(&bare)
            .status()
            .unwrap();
        assert!(st.success());
        let c = git(
            &bare,
            &[
                "commit-tree",
                "main^{tree}",
                "-p",
                "main",
                "-m",
                &format!("{name}: own commit"),
            ],
        );
        git(&bare, &["update-ref", "refs/heads/main", &c]);
        w.az.with(|s| s.repos.push(e));
    }
    eprintln!(
        "bench: generated {N} repositories in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let timed = |v: &Vault, what: &str| -> Value {
        let t = Instant::now();
        let report = format!("bench-{what}.json").replace(' ', "-");
        let doc = w.sync_ok(v, &report);
        let secs = t.elapsed().as_secs_f64();
        let totals = &doc["totals"];
        eprintln!(
            "bench: {what:<32} {secs:>7.2}s  repos {} new {} unchanged {} failed {}",
            totals["repos"], totals["new"], totals["unchanged"], totals["failed"]
        );
        assert_eq!(totals["repos"], N, "{totals}");
        doc
    };
    let one = w.vault("jobs1", Some(1));
    let def = w.vault("default", None);
    let doc = timed(&one, "jobs = 1, fresh store");
    assert_eq!(doc["totals"]["new"], N);
    let doc = timed(&def, "default jobs, fresh store");
    assert_eq!(doc["totals"]["new"], N);
    let doc = timed(&one, "jobs = 1, unchanged");
    assert_eq!(doc["totals"]["unchanged"], N);
    let doc = timed(&def, "default jobs, unchanged");
    assert_eq!(doc["totals"]["unchanged"], N);
    eprintln!("bench: git server requests {}", w.git.request_count());
}

// ---------------------------------------------------------------------------
// 7. Part-way failures, credentials only for the source's hosts, deadlines
// ---------------------------------------------------------------------------

/// One request a [`Front`] received: its target and its whole head.
#[derive(Debug, Clone)]
struct FrontSeen {
    target: String,
    head: String,
}

impl FrontSeen {
    fn authorization(&self) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("authorization")
                .then_some(v.trim())
        })
    }
}

/// A TCP front on `ip` that records every request head and either answers a
/// redirect (a target starting with a `redirects` prefix: `301` to the
/// replacement + the rest of the target) or passes the connection through to
/// the git server on 127.0.0.1:`backend`.
struct Front {
    port: u16,
    ip: &'static str,
    log: Arc<Mutex<Vec<FrontSeen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Front {
    fn start(ip: &'static str, backend: u16, redirects: Vec<(String, String)>) -> Front {
        let listener = TcpListener::bind((ip, 0)).expect("bind the front");
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<FrontSeen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (lg, st) = (log.clone(), stop.clone());
        let redirects = Arc::new(redirects);
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (lg, redirects) = (lg.clone(), redirects.clone());
                std::thread::spawn(move || front_serve(stream, backend, &lg, &redirects));
            }
        });
        Front {
            port,
            ip,
            log,
            stop,
            accept: Some(accept),
        }
    }

    fn base(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    fn log(&self) -> Vec<FrontSeen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.ip, self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

fn front_serve(
    mut client: TcpStream,
    backend: u16,
    log: &Mutex<Vec<FrontSeen>>,
    redirects: &[(String, String)],
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
    log.lock().unwrap().push(FrontSeen {
        target: target.clone(),
        head,
    });
    if let Some((from, to)) = redirects.iter().find(|(from, _)| target.starts_with(from)) {
        let location = format!("{to}{}", &target[from.len()..]);
        let reply = format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = client.write_all(reply.as_bytes());
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    if server.write_all(&buf).is_err() {
        return;
    }
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

impl World {
    /// Replaces the config's `git_hosts` line.
    fn set_git_hosts(&self, v: &Vault, hosts: &[String]) {
        let text = std::fs::read_to_string(&v.config).unwrap();
        let list = hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let text: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("git_hosts") {
                    format!("git_hosts = [{list}]")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&v.config, text.join("\n") + "\n").unwrap();
    }
}

/// The `repos` entry of the summary named `name`.
fn report_of<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the summary: {doc:#}"))
}

/// The `repovault: error:` lines of stderr.
fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("repovault: error:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_listing_that_fails_part_way_still_backs_up_what_earlier_runs_knew() {
    let mut w = World::new("azdo-pat-PartWay-0008", 1);
    w.add_project("Alpha");
    w.add_project("Beta");
    let e = w.entry("Alpha", "app");
    let app = w.add(e, Git::Work(small_repo("app")));
    let e = w.entry("Alpha", "app2");
    let app2 = w.add(e, Git::Work(small_repo("app2")));
    let e = w.entry("Beta", "lib");
    let lib = w.add(e, Git::Work(small_repo("lib")));
    let v = w.vault("vault", Some(2));
    w.sync_ok(&v, "report-1.json");
    let before = states(&w, &v);
    assert_eq!(before.len(), 3, "{before:?}");
    let lib_name = w.name("Beta", "lib");

    // Page 2 of the project list (Beta) answers 500 on every attempt; lib,
    // known from run 1, got a new commit upstream.
    w.work(&lib).commit_file("new.txt", "news\n", "lib: news");
    w.publish(&lib, &w.bare(&lib));
    w.az.with(|s| s.failing_page = Some(2));
    let out = w.sync(&v, &["-q"]);
    assert_eq!(out.status.code(), Some(3), "partial: {}", describe(&out));
    let errors = error_lines(&out);
    assert_eq!(
        errors.len(),
        1,
        "one error line, even with -q: {}",
        describe(&out)
    );
    let line = &errors[0];
    for word in [LABEL, "incomplete", "page 2", "500", "earlier runs"] {
        assert!(line.contains(word), "{word:?} missing: {line}");
    }
    assert_eq!(states(&w, &v).len(), 3);
    assert!(
        states(&w, &v).iter().all(|(_, state, _)| state == "active"),
        "nothing marked deleted: {:?}",
        states(&w, &v)
    );
    let snaps = w.snapshots(&v, &lib_name);
    assert_eq!(
        snaps.len(),
        2,
        "lib was synced although unlisted: {snaps:#?}"
    );
    assert_restores_equal(&w, &v, &[&lib, &app]);

    // The same with --json: the summary names what came from earlier runs.
    let out = w.sync(&v, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let doc = parse_json(&out);
    let d = &doc["discovery"];
    assert_eq!(strs(&d["from_earlier_runs"]), set(&[&lib_name]), "{doc:#}");
    assert_eq!(d["deleted"], json!([]), "{doc:#}");
    assert_eq!(
        d["sources_incomplete"].as_array().unwrap().len(),
        1,
        "{doc:#}"
    );
    assert_eq!(report_of(&doc, &lib_name)["status"], "unchanged", "{doc:#}");
    w.az.with(|s| s.failing_page = None);

    // An inconsistent answer: Alpha's repository list says {"count":2,"value":[]}.
    w.az.with(|s| s.emptied_project = Some("Alpha".into()));
    w.work(&app2)
        .commit_file("more.txt", "more\n", "app2: more");
    w.publish(&app2, &w.bare(&app2));
    let report = w.dir.path().join("report-emptied.json");
    let out = w.sync(&v, &["-q", "--report", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", describe(&out));
    assert!(errors[0].contains("count"), "{}", errors[0]);
    let doc: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(doc["discovery"]["deleted"], json!([]), "{doc:#}");
    assert_eq!(
        strs(&doc["discovery"]["from_earlier_runs"]),
        set(&[&w.name("Alpha", "app"), &w.name("Alpha", "app2")]),
        "{doc:#}"
    );
    assert!(
        states(&w, &v).iter().all(|(_, state, _)| state == "active"),
        "nothing marked deleted: {:?}",
        states(&w, &v)
    );
    assert_eq!(w.snapshots(&v, &w.name("Alpha", "app2")).len(), 2);
    assert_restores_equal(&w, &v, &[&app2]);

    // Back to normal: exit 0 again.
    w.az.with(|s| s.emptied_project = None);
    let doc = w.sync_ok(&v, "report-ok.json");
    assert_eq!(doc["discovery"]["from_earlier_runs"], json!([]), "{doc:#}");
}

#[test]
fn the_token_goes_only_to_the_sources_hosts_and_same_host_redirects_are_followed() {
    const TOKEN: &str = "azdo-pat-Hosts-0009-secret";
    let mut w = World::new(TOKEN, 100);
    w.add_project("P");
    // Another host (127.0.0.2) and another port of this host: both serve the
    // same git data, and record what they receive.
    let stranger = Front::start("127.0.0.2", w.git.port, Vec::new());
    let other_port = Front::start("127.0.0.1", w.git.port, Vec::new());
    // A configured git host that redirects /old/... to /... on itself and
    // /bounce/... to the stranger.
    let front = Front::start(
        "127.0.0.1",
        w.git.port,
        vec![
            ("/old/".into(), "/".into()),
            ("/bounce/".into(), format!("{}/", stranger.base())),
        ],
    );
    let path = |name: &str| format!("{ORG}/P/_git/{name}");
    let e = w.entry("P", "home");
    let home = w.add(e, Git::Work(small_repo("home")));
    let mut e = w.entry("P", "moved");
    e.remote = Some(format!("{}/old/{}", front.base(), path("moved")));
    let moved = w.add(e, Git::Work(small_repo("moved")));
    let mut e = w.entry("P", "away");
    e.remote = Some(format!("{}/{}", stranger.base(), path("away")));
    w.add(e, Git::Work(small_repo("away")));
    let mut e = w.entry("P", "port");
    e.remote = Some(format!("{}/{}", other_port.base(), path("port")));
    w.add(e, Git::Work(small_repo("port")));
    let mut e = w.entry("P", "bounce");
    e.remote = Some(format!("{}/bounce/{}", front.base(), path("bounce")));
    w.add(e, Git::Work(small_repo("bounce")));
    let v = w.vault("vault", Some(2));
    w.set_git_hosts(
        &v,
        &[
            format!("127.0.0.1:{}", w.git.port),
            format!("127.0.0.1:{}", front.port),
        ],
    );

    let out = w.sync(&v, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    // First of all: neither the other host nor the other port ever saw the token.
    let b64 = base64_encode(format!("pat:{TOKEN}").as_bytes());
    for (what, f) in [("127.0.0.2", &stranger), ("the other port", &other_port)] {
        for seen in f.log() {
            assert_eq!(
                seen.authorization(),
                None,
                "{what} got credentials: {seen:?}"
            );
            assert!(
                !seen.head.contains(TOKEN) && !seen.head.contains(&b64),
                "{what} got the token: {seen:?}"
            );
        }
    }
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let doc = parse_json(&out);
    for name in ["home", "moved"] {
        let r = report_of(&doc, &w.name("P", name));
        assert_eq!(r["status"], "new", "{name}: {r:#}");
    }
    assert_restores_equal(&w, &v, &[&home, &moved]);
    for (name, host) in [
        ("away", format!("127.0.0.2:{}", stranger.port)),
        ("port", format!("127.0.0.1:{}", other_port.port)),
    ] {
        let r = report_of(&doc, &w.name("P", name));
        assert_eq!(r["status"], "failed", "{name}: {r:#}");
        let e = r["error"].as_str().unwrap();
        for word in ["not synced", host.as_str(), "git_hosts", LABEL] {
            assert!(e.contains(word), "{name}: {word:?} missing: {e}");
        }
    }
    let r = report_of(&doc, &w.name("P", "bounce"));
    assert_eq!(r["status"], "failed", "{r:#}");
    let e = r["error"].as_str().unwrap();
    assert!(
        e.contains("another host") && e.contains(&format!("127.0.0.2:{}", stranger.port)),
        "{e}"
    );
    assert_eq!(doc["totals"]["failed"], 3, "{doc:#}");

    // The API: a same-host redirect is followed (with the token), one to
    // another host is not (and the repositories earlier runs knew are synced).
    w.az.with(|s| s.redirect_projects_to = Some(w.az.base()));
    w.az.clear_log();
    let out = w.sync(&v, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let doc = parse_json(&out);
    assert_eq!(doc["discovery"]["sources_failed"], json!([]), "{doc:#}");
    assert_eq!(doc["totals"]["unchanged"], 2, "{doc:#}");
    assert!(
        w.az.log()
            .iter()
            .any(|s| s.q("redirected") == Some("1") && s.h("authorization").is_some()),
        "{:#?}",
        w.az.log()
    );
    w.az.with(|s| s.redirect_projects_to = Some(stranger.base()));
    let out = w.sync(&v, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let doc = parse_json(&out);
    assert_eq!(
        doc["discovery"]["sources_failed"].as_array().unwrap().len(),
        1,
        "{doc:#}"
    );
    assert_eq!(doc["totals"]["unchanged"], 2, "{doc:#}");
    assert_eq!(stranger.log().len(), 0, "{:#?}", stranger.log());

    // The front redirected /old/ to itself, and served the repository there.
    let log = front.log();
    assert!(
        log.iter().any(|s| s.target.starts_with("/old/")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|s| s.target.starts_with(&format!("/{}/", path("moved")))
                && s.authorization().is_some()),
        "the redirect was followed: {log:#?}"
    );
}

/// A TCP listener that accepts connections and never answers.
struct Stall {
    port: u16,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl Stall {
    fn start() -> Stall {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let accepted: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let acc = accepted.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                acc.lock().unwrap().push(s);
            }
        });
        Stall { port, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

#[test]
fn a_stalled_api_gives_up_at_its_deadline_without_holding_the_store_lock() {
    let dir = tempdir("repovault-nightly-stall-");
    let stall = Stall::start();
    let store = dir.path().join("store");
    let config = dir.path().join("repovault.toml");
    std::fs::write(
        &config,
        format!(
            "store = '{}'\ncache = '{}'\ndiscovery_timeout = 4\n\n[[sources]]\nkind = \"azure-devops\"\norganization = \"{ORG}\"\nurl = \"http://127.0.0.1:{}\"\ntoken_env = \"{PAT_VAR}\"\n",
            store.display(),
            dir.path().join("cache").display(),
            stall.port
        ),
    )
    .unwrap();
    let bin = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        support::hermetic(&mut cmd);
        cmd.env(PAT_VAR, "azdo-pat-Stall-0010")
            .env_remove("RUST_LOG")
            .env_remove("REPOVAULT_STORE")
            .args(args);
        cmd
    };
    let out = run(bin(&["--store", store.to_str().unwrap(), "init"]).arg("-q"));
    assert!(out.status.success(), "{}", describe(&out));

    let t = Instant::now();
    let mut nightly = bin(&["sync", "--config", config.to_str().unwrap()]);
    nightly
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = nightly.spawn().expect("spawn the nightly run");
    while stall.connections() == 0 {
        if t.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("discovery never reached the API: {}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // While discovery hangs, another writer gets the store at once.
    let local = small_repo("local");
    let out = run(&mut bin(&[
        "--store",
        store.to_str().unwrap(),
        "sync",
        local.path.to_str().unwrap(),
        "--lock-wait",
        "0",
    ]));
    let still_running = child.try_wait().unwrap().is_none();
    if !out.status.success() || !still_running {
        let _ = child.kill();
    }
    assert!(
        out.status.success(),
        "a writer was blocked while discovery stalled: {}",
        describe(&out)
    );
    assert!(still_running, "the sync should have overlapped the stall");

    // The nightly run gives up at the deadline, naming it.
    let mut status = None;
    while t.elapsed() < Duration::from_secs(60) {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let took = t.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(
        status.is_some(),
        "no deadline: still running after {took:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(took >= Duration::from_secs(4), "took {took:?}");
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", describe(&out));
    assert!(
        errors[0].contains("deadline") && errors[0].contains("4s"),
        "{}",
        errors[0]
    );
}
