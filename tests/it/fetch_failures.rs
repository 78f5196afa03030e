//! How a nightly run (`sync --config`) treats a failing fetch, decided from
//! gix's typed errors: a rejected credential (HTTP 401 from `git
//! http-backend` behind Basic auth) is an authentication failure and is not
//! retried; a connection reset is retried once and the repository synced; an
//! error whose text merely contains "401" or "credentials" is no
//! authentication failure.

use crate::support::{describe, parse_json, tempdir, GitDaemon, HttpGitServer, TestRepo, Vault};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const TOKEN_VAR: &str = "RV_FETCH_FAILURES_TOKEN";

/// A bare repository `name` below `base`, with a little history.
fn served_repo(base: &Path, name: &str) -> TestRepo {
    let r = TestRepo::new();
    r.commit_file("README", "fetch failures\n", "first");
    r.commit_file("data.txt", "x\n".repeat(100), "second");
    r.bare_clone_to(&base.join(name));
    r
}

/// A config naming `url` as a plain git source (with the token variable).
fn config(v: &Vault, dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "store = '{}'\ncache = '{}'\n\n[[sources]]\nkind = \"git\"\nurls = ['{url}']\ntoken_env = \"{TOKEN_VAR}\"\n",
            v.store.display(),
            v.cache.display()
        ),
    )
    .unwrap();
    path
}

fn nightly(v: &Vault, config: &Path, token: &str) -> Output {
    let mut cmd = v.cmd(&["sync", "--config", config.to_str().unwrap(), "--json"]);
    cmd.env(TOKEN_VAR, token);
    crate::support::run_with_timeout(&mut cmd, std::time::Duration::from_secs(300))
}

#[test]
fn a_rejected_token_is_an_authentication_failure_and_fetched_once() {
    let tmp = tempdir("repovault-fetch-401-");
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base).unwrap();
    served_repo(&base, "r.git");
    let server = HttpGitServer::start_token(&base, "the-right-token");
    let v = Vault::new();
    let cfg = config(&v, tmp.path(), &server.url("r.git"));

    let out = nightly(&v, &cfg, "a-wrong-token");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("authentication failed"),
        "an authentication failure: {}",
        describe(&out)
    );
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert_eq!(
        server.requests().len(),
        1,
        "a rejected credential is asked once, never retried: {:?}",
        server.requests()
    );
    let doc = parse_json(&out);
    let repo = &doc["repos"][0];
    assert_eq!(repo["status"], "failed", "{doc:#}");
    assert!(
        repo["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{doc:#}"
    );
    let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        !all.contains("a-wrong-token"),
        "the token never shows: {all}"
    );

    // The right token: one run, no failure.
    let out = nightly(&v, &cfg, "the-right-token");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(parse_json(&out)["repos"][0]["status"], "new");
}

/// A front proxy on 127.0.0.1 that resets its first connection (it reads one
/// byte of the request and closes with the rest unread, so the kernel answers
/// with a TCP RST) and passes every later one through to `backend`.
struct ResetFirst {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ResetFirst {
    fn start(backend: u16) -> ResetFirst {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (Arc::clone(&connections), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut client) = client else { continue };
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut one = [0u8; 1];
                    let _ = client.read_exact(&mut one);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    drop(client);
                    continue;
                }
                std::thread::spawn(move || pass_through(client, backend));
            }
        });
        ResetFirst {
            port,
            connections,
            stop,
            accept: Some(accept),
        }
    }
}

fn pass_through(client: TcpStream, backend: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    let (Ok(mut c_in), Ok(mut s_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_in, &mut s_out);
        let _ = s_out.shutdown(Shutdown::Write);
    });
    let (mut s_in, mut c_out) = (server, client);
    let _ = std::io::copy(&mut s_in, &mut c_out);
    let _ = c_out.flush();
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = up.join();
}

impl Drop for ResetFirst {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

#[test]
fn a_connection_reset_is_retried_and_the_repository_synced() {
    let tmp = tempdir("repovault-fetch-reset-");
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base).unwrap();
    let repo = served_repo(&base, "r.git");
    let server = HttpGitServer::start(&base, None);
    let proxy = ResetFirst::start(server.port);
    let v = Vault::new();
    let url = format!("http://127.0.0.1:{}/r.git", proxy.port);
    let cfg = config(&v, tmp.path(), &url);

    let out = nightly(&v, &cfg, "any-token");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("retrying once"), "{stderr}");
    let doc = parse_json(&out);
    assert_eq!(doc["repos"][0]["status"], "new", "{doc:#}");
    assert!(
        proxy.connections.load(Ordering::SeqCst) >= 2,
        "the reset connection and the retry"
    );
    assert!(server.request_count() >= 1, "the retry reached the server");

    // What was backed up is the repository.
    let dest = tmp.path().join("restored.git");
    let name = doc["repos"][0]["name"].as_str().unwrap().to_owned();
    v.ok(&[
        "restore",
        "--repo",
        &name,
        "--latest",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        crate::support::refs_of(&dest)
            .into_iter()
            .filter(|(n, _)| n.starts_with("refs/heads/"))
            .collect::<Vec<_>>(),
        vec![("refs/heads/main".to_owned(), repo.rev_parse("main"))]
    );
}

/// The old rule called any failure whose text had "401" or "credentials" in
/// it an authentication failure: a missing repository of that name is not one.
#[test]
fn an_error_text_with_401_in_it_is_no_authentication_failure() {
    let tmp = tempdir("repovault-fetch-text-");
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base).unwrap();
    let daemon = GitDaemon::start(&base);
    let v = Vault::new();
    let url = daemon.url("credentials-401.git");
    let cfg = config(&v, tmp.path(), &url);
    let out = nightly(&v, &cfg, "any-token");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = parse_json(&out);
    let error = doc["repos"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("credentials-401"), "{error}");
    assert!(!error.contains("authentication failed"), "{error}");
    assert!(error.contains("fetch failed"), "{error}");
}
