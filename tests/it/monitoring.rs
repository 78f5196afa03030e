//! Monitoring a nightly run (issue 22): the Prometheus text file of `sync`
//! (parsed with a real text-format parser, `prometheus-parse`) after a
//! successful, a partial and a failed run; the health-check ping sequence
//! against a local HTTP server (start then success, start then the exit
//! code, a hanging server costing at most the ping timeout); and stale
//! repositories over several "nights" of a config run against a fake GitHub
//! organisation served from 127.0.0.1.

use crate::support::{self, describe, parse_json, HttpFake, HttpGitServer, Resp, TestRepo, Vault};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn s(p: &Path) -> &str {
    support::path_str(p)
}

/// The text file parsed by `prometheus-parse`; every non-comment line must
/// be one of its samples (nothing it could not read).
fn scrape(path: &Path) -> prometheus_parse::Scrape {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let m = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("a valid text file");
    assert_eq!(m.samples.len(), samples, "every sample parsed:\n{text}");
    for sample in &m.samples {
        assert!(
            matches!(sample.value, prometheus_parse::Value::Gauge(_)),
            "{} is a gauge:\n{text}",
            sample.metric
        );
    }
    m
}

/// The value of the sample `name` whose labels include `labels`.
fn value(m: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let hit = m
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)));
    match hit.map(|x| &x.value) {
        Some(prometheus_parse::Value::Gauge(v)) => *v,
        _ => panic!("no sample {name}{labels:?} in {:#?}", m.samples),
    }
}

fn state(m: &prometheus_parse::Scrape, st: &str) -> f64 {
    value(m, "repovault_repositories", &[("state", st)])
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn two_repos() -> (TestRepo, TestRepo) {
    let a = support::sample_repo();
    let b = TestRepo::new();
    b.commit_file("b.txt", "bee\n", "b");
    (a, b)
}

#[test]
fn the_textfile_after_a_successful_a_partial_and_a_failed_run() {
    let v = Vault::new();
    let (a, b) = two_repos();
    let dir = v.dir().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let prom = dir.join("repovault.prom");
    let not_git = v.dir().join("not-a-repository");
    std::fs::create_dir(&not_git).unwrap();
    let cache = s(&v.cache).to_owned();
    let sync = |sources: &[&Path]| {
        let mut args = vec![
            "sync",
            "--cache",
            &cache,
            "--json",
            "--metrics-textfile",
            s(&prom),
        ];
        args.extend(sources.iter().map(|p| s(p)));
        v.run(&args)
    };

    // A successful run.
    let t0 = now_secs();
    let out = sync(&[&a.path, &b.path]);
    let t1 = now_secs();
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let doc = parse_json(&out);
    let m = scrape(&prom);
    let (start, end) = (
        value(&m, "repovault_last_run_start_timestamp_seconds", &[]),
        value(&m, "repovault_last_run_timestamp_seconds", &[]),
    );
    assert!(
        t0 - 1.0 <= start && start <= end && end <= t1 + 1.0,
        "{t0} {start} {end} {t1}"
    );
    let duration = value(&m, "repovault_run_duration_seconds", &[]);
    assert!((duration - (end - start)).abs() < 0.01, "{duration}");
    assert_eq!(value(&m, "repovault_run_exit_code", &[]), 0.0);
    let first_success = value(&m, "repovault_last_success_timestamp_seconds", &[]);
    assert_eq!(first_success, end);
    assert_eq!(state(&m, "ok"), 2.0);
    for st in [
        "unchanged",
        "failed",
        "interrupted",
        "disabled",
        "deleted",
        "stale",
    ] {
        assert_eq!(state(&m, st), 0.0, "{st}");
    }
    assert_eq!(value(&m, "repovault_snapshots", &[]), 2.0);
    let stats = v.stats();
    assert_eq!(
        value(&m, "repovault_store_bytes", &[]),
        stats["stored_bytes"].as_f64().unwrap()
    );
    assert_eq!(
        value(&m, "repovault_store_added_bytes", &[]),
        doc["totals"]["new_store_bytes"].as_f64().unwrap()
    );
    let fetched: u64 = doc["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bytes_received"].as_u64().unwrap())
        .sum();
    assert!(fetched > 0);
    assert_eq!(value(&m, "repovault_fetched_bytes", &[]), fetched as f64);
    let names: Vec<String> = doc["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    for n in &names {
        let at = value(
            &m,
            "repovault_repository_last_success_timestamp_seconds",
            &[("repository", n)],
        );
        assert!(start <= at && at <= end, "{n}: {at}");
        assert_eq!(
            value(
                &m,
                "repovault_repository_last_status",
                &[("repository", n), ("status", "new")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &m,
                "repovault_repository_stale",
                &[("repository", n), ("source", "")]
            ),
            0.0
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the collector (another user) can read it");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("repovault.prom")],
        "no temporary file left"
    );

    // A partial run: one repository unchanged, one source that fails.
    let out = sync(&[&a.path, &not_git]);
    assert_eq!(code(&out), 3, "{}", describe(&out));
    let m = scrape(&prom);
    assert_eq!(value(&m, "repovault_run_exit_code", &[]), 3.0);
    assert!(value(&m, "repovault_last_run_timestamp_seconds", &[]) > end);
    assert_eq!(
        value(&m, "repovault_last_success_timestamp_seconds", &[]),
        first_success,
        "carried over"
    );
    assert_eq!(
        (state(&m, "ok"), state(&m, "unchanged"), state(&m, "failed")),
        (0.0, 1.0, 1.0)
    );
    assert_eq!(value(&m, "repovault_fetched_bytes", &[]), 0.0);
    assert_eq!(value(&m, "repovault_store_added_bytes", &[]), 0.0);
    let a_name = &names[0];
    assert_eq!(
        value(
            &m,
            "repovault_repository_last_status",
            &[("repository", a_name), ("status", "unchanged")]
        ),
        1.0
    );
    let a_success = value(
        &m,
        "repovault_repository_last_success_timestamp_seconds",
        &[("repository", a_name)],
    );
    assert!(
        a_success > end,
        "the unchanged snapshot was confirmed: {a_success}"
    );

    // A failed run: every repository failed (exit 1).
    let out = sync(&[&not_git]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let m = scrape(&prom);
    assert_eq!(value(&m, "repovault_run_exit_code", &[]), 1.0);
    assert_eq!((state(&m, "ok"), state(&m, "failed")), (0.0, 1.0));
    assert_eq!(
        value(&m, "repovault_last_success_timestamp_seconds", &[]),
        first_success
    );

    // A run that fails before syncing anything (not a store: exit 10) still
    // writes its file.
    let elsewhere = v.dir().join("no-store-here");
    let out = support::run_with_timeout(
        &mut v.cmd_at(
            &elsewhere,
            &["sync", s(&a.path), "--metrics-textfile", s(&prom)],
        ),
        support::RUN_TIMEOUT,
    );
    let m = scrape(&prom);
    assert_eq!(
        value(&m, "repovault_run_exit_code", &[]),
        f64::from(code(&out)),
        "{}",
        describe(&out)
    );
    assert_ne!(code(&out), 0);
    assert_eq!(
        value(&m, "repovault_last_success_timestamp_seconds", &[]),
        first_success
    );
}

/// A ping server answering 200 (after `delay`), recording every request.
fn ping_server(delay: Duration) -> HttpFake {
    HttpFake::start(move |_, _| {
        std::thread::sleep(delay);
        Resp::new(200, "text/plain", "OK")
    })
}

/// The pings `fake` received, asserted to be `GET /ping/0f1e2d3c/start` then
/// `POST last`.
fn start_then(fake: &HttpFake, last: &str) -> Vec<(String, String, String)> {
    let p = pings(fake);
    let got: Vec<(&str, &str)> = p.iter().map(|x| (x.0.as_str(), x.1.as_str())).collect();
    assert_eq!(
        got,
        [("GET", "/ping/0f1e2d3c/start"), ("POST", last)],
        "{p:#?}"
    );
    p
}

fn pings(fake: &HttpFake) -> Vec<(String, String, String)> {
    fake.requests()
        .into_iter()
        .map(|r| {
            (
                r.method,
                r.path,
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect()
}

const TOKEN: &str = "tok-3f9a1c77e2d54b08";

#[test]
fn pings_start_then_success_or_the_exit_code_and_never_carry_the_token() {
    let v = Vault::new();
    let (a, _) = two_repos();
    let fake = ping_server(Duration::ZERO);
    let url = format!("{}/ping/0f1e2d3c", fake.base());
    let prom = v.dir().join("m.prom");
    let cache = s(&v.cache).to_owned();
    let env = [("RV_PING_TOKEN", TOKEN)];
    let run = |source: &Path| {
        v.run_env(
            &[
                "sync",
                s(source),
                "--cache",
                &cache,
                "--ping-url",
                &url,
                "--token-env",
                "RV_PING_TOKEN",
                "--metrics-textfile",
                s(&prom),
                "-vv",
            ],
            &env,
        )
    };
    let out = run(&a.path);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let p = start_then(&fake, "/ping/0f1e2d3c");
    assert!(
        p[1].2.contains("1 repositories: 1 synced"),
        "the summary is the body: {}",
        p[1].2
    );
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();

    fake.clear_requests();
    let not_git = v.dir().join("not-a-repository");
    std::fs::create_dir(&not_git).unwrap();
    let out = run(&not_git);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let p = start_then(&fake, "/ping/0f1e2d3c/1");
    assert!(
        p[1].2.contains("failed") && p[1].2.len() <= 10 * 1024,
        "{}",
        p[1].2
    );

    let written =
        logs + &String::from_utf8_lossy(&out.stderr) + &std::fs::read_to_string(&prom).unwrap();
    assert!(
        !written.contains("0f1e2d3c"),
        "the ping URL's path (its secret) is not logged or written:\n{written}"
    );
    let mut seen = written;
    for r in fake.requests() {
        seen += &format!(
            "{} {:?} {}",
            r.raw_path,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
    }
    assert!(!seen.contains(TOKEN), "the token leaked:\n{seen}");
}

#[test]
fn a_hanging_ping_server_costs_at_most_the_ping_timeout() {
    let v = Vault::new();
    let (a, _) = two_repos();
    let fake = ping_server(Duration::from_secs(60));
    let url = format!("{}/hang", fake.base());
    let t = Instant::now();
    let out = v.run(&[
        "sync",
        s(&a.path),
        "--cache",
        s(&v.cache),
        "--ping-url",
        &url,
    ]);
    let took = t.elapsed();
    assert_eq!(
        code(&out),
        0,
        "the backup does not fail: {}",
        describe(&out)
    );
    // Two pings (start, end) of at most 5 s each, and the sync itself.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        took >= Duration::from_secs(9),
        "both pings waited for their timeout: {took:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ping to http://127.0.0.1") && !err.contains("/hang"),
        "{err}"
    );
    assert_eq!(pings(&fake).len(), 2);
}

/// A fake GitHub organisation `acme` whose repositories are served over
/// smart HTTP from `git`; `repos` is what the listing says: (id, name, disabled).
struct Org {
    api: HttpFake,
    git: HttpGitServer,
    repos: Arc<Mutex<Vec<(u64, &'static str, bool)>>>,
}

impl Org {
    fn new(base: &Path) -> Org {
        let git = HttpGitServer::start(base, None);
        let repos: Arc<Mutex<Vec<(u64, &'static str, bool)>>> = Arc::default();
        let (list, git_url) = (repos.clone(), git.url("acme"));
        let api = HttpFake::start(move |req, _| {
            if req.path != "/api/v3/orgs/acme/repos" {
                return Resp::json(404, r#"{"message": "Not Found"}"#);
            }
            let body: Vec<Value> = list
                .lock()
                .unwrap()
                .iter()
                .map(|(id, name, disabled)| {
                    json!({
                        "id": id, "name": name, "full_name": format!("acme/{name}"),
                        "clone_url": format!("{git_url}/{name}.git"), "disabled": disabled,
                        "archived": false, "fork": false, "size": 1, "default_branch": "main",
                    })
                })
                .collect();
            Resp::json(200, serde_json::to_vec(&body).unwrap())
        });
        Org { api, git, repos }
    }

    fn set(&self, repos: &[(u64, &'static str, bool)]) {
        *self.repos.lock().unwrap() = repos.to_vec();
    }
}

/// One night: `sync --config` with `--json`; its exit code and summary.
fn night(v: &Vault, config: &Path) -> (i32, Value) {
    let out = v.run(&[
        "sync",
        "--config",
        s(config),
        "--cache",
        s(&v.cache),
        "--json",
    ]);
    let doc = parse_json(&out);
    (code(&out), doc)
}

fn stale_names(doc: &Value) -> Vec<String> {
    doc["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_repository_failing_night_after_night_goes_stale_and_a_deleted_one_does_not() {
    let v = Vault::new();
    let served = v.dir().join("served");
    let (a, b) = two_repos();
    a.bare_clone_to(&served.join("acme/alpha.git"));
    b.bare_clone_to(&served.join("acme/beta.git"));
    let org = Org::new(&served);
    org.set(&[(1, "alpha", false), (2, "beta", false)]);
    let prom = v.dir().join("nightly.prom");
    let config = v.dir().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "metrics_textfile = {:?}\nstale_after = \"4s\"\n\n[[sources]]\nkind = \"github\"\norg = \"acme\"\nurl = \"{}/api/v3\"\n",
            s(&prom),
            org.api.base()
        ),
    )
    .unwrap();
    let alpha = format!("{}/acme/alpha", org.api.host());
    let beta = format!("{}/acme/beta", org.api.host());

    // Night 1: both backed up.
    let (c, doc) = night(&v, &config);
    assert_eq!(c, 0, "{doc:#}");
    assert_eq!(stale_names(&doc), Vec::<String>::new());
    let first = Instant::now();

    // Nights 2 to 4: alpha's repository is gone from its server (the
    // listing still has it), so its sync fails every night.
    std::fs::rename(served.join("acme/alpha.git"), served.join("alpha.moved")).unwrap();
    for n in 2..=4 {
        std::thread::sleep(Duration::from_millis(1500));
        let since = first.elapsed();
        let (c, doc) = night(&v, &config);
        assert_eq!(c, 3, "night {n}: {doc:#}");
        assert_eq!(doc["totals"]["failed"], 1, "night {n}: {doc:#}");
        let stale = stale_names(&doc);
        if since < Duration::from_secs(3) {
            assert!(
                stale.is_empty(),
                "night {n}, {since:?} after the last success: {doc:#}"
            );
        }
        if n == 4 {
            assert_eq!(stale, vec![alpha.clone()], "night {n}: {doc:#}");
            let m = scrape(&prom);
            assert_eq!(state(&m, "stale"), 1.0);
            assert_eq!(state(&m, "failed"), 1.0);
            let label = "github acme";
            let src_of = |name: &str| {
                m.samples
                    .iter()
                    .find(|x| {
                        x.metric == "repovault_repository_stale"
                            && x.labels.get("repository") == Some(name)
                    })
                    .and_then(|x| x.labels.get("source").map(str::to_owned))
            };
            assert!(
                src_of(&alpha).is_some_and(|l| l.contains("acme")),
                "{label}: {:?}",
                src_of(&alpha)
            );
            assert_eq!(
                value(&m, "repovault_repository_stale", &[("repository", &alpha)]),
                1.0
            );
            assert_eq!(
                value(&m, "repovault_repository_stale", &[("repository", &beta)]),
                0.0
            );
            assert_eq!(
                value(
                    &m,
                    "repovault_repository_last_status",
                    &[("repository", &alpha), ("status", "failed")]
                ),
                1.0
            );
        }
    }

    // Night 5: alpha is disabled upstream, so nothing is attempted for it
    // and nothing fails, but it is still stale: exit 3.
    org.set(&[(1, "alpha", true), (2, "beta", false)]);
    let (c, doc) = night(&v, &config);
    assert_eq!(doc["totals"]["failed"], 0, "{doc:#}");
    assert_eq!(stale_names(&doc), vec![alpha.clone()], "{doc:#}");
    assert_eq!(c, 3, "stale alone makes the run partial: {doc:#}");
    let listed = v.json(&["repos", "--stale", "--stale-after", "4s", "--json"]);
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![alpha.as_str()]);
    let text = String::from_utf8_lossy(&v.ok(&["repos", "--stale", "--stale-after", "4s"]).stdout)
        .into_owned();
    assert!(text.contains(&alpha) && !text.contains(&beta), "{text}");

    // Night 6: alpha is deleted upstream: not stale any more, exit 0.
    org.set(&[(2, "beta", false)]);
    let (c, doc) = night(&v, &config);
    assert_eq!(doc["discovery"]["deleted"], json!([alpha]), "{doc:#}");
    assert_eq!(stale_names(&doc), Vec::<String>::new(), "{doc:#}");
    assert_eq!(c, 0, "{doc:#}");
    let m = scrape(&prom);
    assert_eq!(state(&m, "deleted"), 1.0);
    assert_eq!(state(&m, "stale"), 0.0);
    assert!(
        !m.samples
            .iter()
            .any(|x| x.labels.get("repository") == Some(alpha.as_str())),
        "deleted: no series"
    );
    let listed = v.json(&["repos", "--stale", "--stale-after", "4s", "--json"]);
    assert_eq!(listed, json!([]));
    drop(org.git);
}

#[test]
fn verify_and_prune_write_their_own_textfiles() {
    let v = Vault::new();
    let (a, _) = two_repos();
    v.sync_as(&a.path, "h/a");
    let dir = v.dir().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let (vp, pp) = (
        dir.join("repovault-verify.prom"),
        dir.join("repovault-prune.prom"),
    );
    v.ok(&["verify", "--read-data", "--metrics-textfile", s(&vp)]);
    let m = scrape(&vp);
    assert_eq!(value(&m, "repovault_verify_run_exit_code", &[]), 0.0);
    assert_eq!(value(&m, "repovault_verify_damage_found", &[]), 0.0);
    assert_eq!(value(&m, "repovault_verify_read_data", &[]), 1.0);
    let ok_at = value(&m, "repovault_verify_last_success_timestamp_seconds", &[]);
    assert_eq!(
        ok_at,
        value(&m, "repovault_verify_last_run_timestamp_seconds", &[])
    );

    // Damage: a pack file cut short.
    let mut files = Vec::new();
    support::files_below(&v.store.join("packs"), &mut files);
    let pack = files
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .expect("a pack");
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = v.run(&["verify", "--metrics-textfile", s(&vp)]);
    assert_eq!(code(&out), 12, "{}", describe(&out));
    let m = scrape(&vp);
    assert_eq!(value(&m, "repovault_verify_run_exit_code", &[]), 12.0);
    assert!(value(&m, "repovault_verify_damage_found", &[]) >= 1.0);
    assert_eq!(
        value(&m, "repovault_verify_last_success_timestamp_seconds", &[]),
        ok_at,
        "carried over"
    );

    // Prune: a branch with a large blob backed up, deleted, its snapshot forgotten.
    let v2 = Vault::new();
    let r = TestRepo::new();
    r.commit_file("a.txt", "a\n", "a");
    v2.sync_as(&r.path, "h/r");
    r.branch("tmp");
    r.checkout("tmp");
    r.commit_file("big.bin", support::random_bytes(7, 300_000), "big");
    r.checkout("main");
    v2.sync_as(&r.path, "h/r");
    r.git(&["branch", "-D", "tmp"]);
    v2.sync_as(&r.path, "h/r");
    v2.ok(&["forget", "--keep-last", "1"]);
    let report = parse_json(&v2.ok(&["prune", "--json", "--metrics-textfile", s(&pp)]));
    let m = scrape(&pp);
    assert_eq!(value(&m, "repovault_prune_run_exit_code", &[]), 0.0);
    let freed = report["bytes_before"].as_f64().unwrap() - report["bytes_after"].as_f64().unwrap();
    assert!(freed > 250_000.0, "{report:#}");
    assert_eq!(value(&m, "repovault_prune_freed_bytes", &[]), freed);
    assert!(value(&m, "repovault_prune_last_success_timestamp_seconds", &[]) > 0.0);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "two files side by side"
    );
}

#[test]
fn a_config_that_cannot_be_read_names_the_key_and_still_writes_the_textfile() {
    let v = Vault::new();
    let prom = v.dir().join("m.prom");
    let config = v.dir().join("config.toml");
    for (text, key) in [
        ("stale_after = \"2x\"\n", "stale_after"),
        ("stale_after = 0\n", "stale_after"),
        ("ping_url = \"ftp://example.invalid/x\"\n", "ping_url"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = v.run(&[
            "sync",
            "--config",
            s(&config),
            "--metrics-textfile",
            s(&prom),
        ]);
        assert_eq!(code(&out), 1, "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{text}: {err}");
        let m = scrape(&prom);
        assert_eq!(value(&m, "repovault_run_exit_code", &[]), 1.0);
        assert_eq!(
            value(&m, "repovault_last_success_timestamp_seconds", &[]),
            0.0
        );
    }
}
