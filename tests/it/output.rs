//! What the command line says while and after it works (issue 13, items 4, 5,
//! 6, 9 and 10): summaries that report what was written, short errors with
//! the full lists in `--json`, what `-q` means, Ctrl-C, and progress bars on a
//! pseudo-terminal (tmux) with totals, bytes, rate and ETA.
//!
//! Every test runs the real binary against real git repositories; the
//! terminal tests run it inside a private tmux server.

use crate::support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{describe, parse_json, path_str, HttpGitServer, Vault};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_repovault");
const TIMEOUT: Duration = Duration::from_secs(600);

fn tempdir() -> TempDir {
    support::tempdir("repovault-output-")
}

impl Vault {
    /// `sync --cache CACHE <args>` with extra environment variables.
    fn sync_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let cache = path_str(&self.cache);
        let mut a = vec!["sync", "--cache", cache];
        a.extend_from_slice(args);
        self.run_env(&a, env)
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bare repository at `dir/name` whose `main` holds one commit of `n`
/// distinct small blobs (made with `git fast-import`): `n + 2` objects.
pub(crate) fn many_blobs(dir: &Path, name: &str, n: usize) -> PathBuf {
    let bare = dir.join(name);
    support::git(dir, &["init", "-q", "--bare", bare.to_str().unwrap()]);
    let mut stream = Vec::new();
    for i in 0..n {
        let data = format!("blob number {i} of {name}\n");
        write!(
            stream,
            "blob\nmark :{}\ndata {}\n{data}\n",
            i + 1,
            data.len()
        )
        .unwrap();
    }
    support::fast_import_commit(&mut stream, "refs/heads/main", None, "many\n");
    for i in 0..n {
        writeln!(stream, "M 100644 :{} d{}/f{i}.txt", i + 1, i % 50).unwrap();
    }
    stream.extend_from_slice(b"\n");
    support::fast_import(&bare, &stream);
    support::git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    bare
}

/// A bare repository whose `main` and `branches` other branches all need a
/// blob that was deleted from it (a corrupt source), with `files` more blobs
/// that are present.
fn source_missing_a_blob(dir: &Path, branches: usize, files: usize) -> (PathBuf, String) {
    let src = dir.join("broken.git");
    support::git(dir, &["init", "-q", "--bare", src.to_str().unwrap()]);
    let work = support::TestRepo::new();
    for i in 0..files {
        work.write(&format!("keep/f{i}.txt"), format!("present {i}\n"));
    }
    work.commit_file("lost.txt", "this blob will be lost\n", "c1");
    for i in 0..branches {
        work.git(&[
            "branch",
            &format!("topic-with-a-long-descriptive-name-{i:04}"),
        ]);
    }
    // A pushed pack is unpacked into loose objects, so one can be deleted.
    support::git(&src, &["config", "receive.unpackLimit", "100000"]);
    work.git(&[
        "push",
        "-q",
        src.to_str().unwrap(),
        "refs/heads/*:refs/heads/*",
    ]);
    let blob = work.rev_parse("HEAD:lost.txt");
    let loose = src.join("objects").join(&blob[..2]).join(&blob[2..]);
    std::fs::remove_file(&loose).expect("the blob is a loose object");
    support::git(&src, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    (src, blob)
}

fn no_debug_text(s: &str) {
    for bad in ["Message {", "class:", "Cancelled", "message: \""] {
        assert!(
            !s.contains(bad),
            "Rust debug text {bad:?} in the output:\n{s}"
        );
    }
}

// ---------------------------------------------------------------------------
// Item 4 and 9: interrupted and refused syncs report what they wrote
// ---------------------------------------------------------------------------

/// Ctrl-C (a real SIGINT, sent by the process to itself through the test hook
/// right after the first batch of 4096 objects was stored) ends the sync with
/// exit 130, the repository counted as interrupted (not failed), no Rust debug
/// text, and the objects it stored reported, in the human and the JSON summary.
#[test]
fn interrupted_sync_reports_what_it_stored() {
    let tmp = tempdir();
    let src = many_blobs(tmp.path(), "big.git", 6000);
    let url = format!("file://{}", src.display());
    for json in [false, true] {
        let v = Vault::new();
        let mut args = vec![url.as_str(), "--name", "big"];
        if json {
            args.push("--json");
        }
        let out = v.sync_env(&args, &[("REPOVAULT_INTERRUPT_AT", "ingest-batch")]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
        no_debug_text(&all);
        let stored = v.stats()["objects"].as_u64().unwrap();
        assert!(stored >= 4096, "the first batch is stored: {stored}");
        if json {
            let doc = parse_json(&out);
            let r = &doc["repos"][0];
            assert_eq!(r["status"], "interrupted", "{doc:#}");
            assert_eq!(r["new_objects"].as_u64(), Some(stored), "{doc:#}");
            assert!(r["new_pack_bytes"].as_u64().unwrap() > 0, "{doc:#}");
            assert_eq!(doc["totals"]["interrupted"], 1, "{doc:#}");
            assert_eq!(doc["totals"]["failed"], 0, "{doc:#}");
            assert_eq!(doc["totals"]["new_objects"].as_u64(), Some(stored));
        } else {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!(
                    "interrupted big  snapshot -  refs 0  objects +{stored}  packs +"
                )),
                "{stdout}"
            );
            assert!(stdout.contains("0 failed, 1 interrupted"), "{stdout}");
            assert!(stdout.contains(&format!("+{stored} objects")), "{stdout}");
            assert!(!stdout.contains("+0 B in packs"), "{stdout}");
        }
        // And the next sync completes from there.
        let out = v.sync_env(&[url.as_str(), "--name", "big", "--json"], &[]);
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(parse_json(&out)["repos"][0]["status"], "new");
    }
}

/// Ctrl-C while fetching over http (SIGINT through the test hook just before
/// the fetch, which gix then abandons): exit 130, "interrupted", and none of
/// gix's `Message { message: "Interrupted", class: Cancelled }`.
#[test]
fn interrupted_fetch_over_http_says_interrupted() {
    let tmp = tempdir();
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base).unwrap();
    many_blobs(&base, "r.git", 300);
    let server = HttpGitServer::start(&base, None);
    let v = Vault::new();
    let url = server.url("r.git");
    let out = v.sync_env(
        &[url.as_str(), "--json"],
        &[("REPOVAULT_INTERRUPT_AT", "fetching")],
    );
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    no_debug_text(&text(&out));
    let doc = parse_json(&out);
    assert_eq!(doc["repos"][0]["status"], "interrupted", "{doc:#}");
    assert_eq!(doc["repos"][0]["error"], "interrupted", "{doc:#}");
    assert_eq!(doc["totals"]["failed"], 0, "{doc:#}");

    let out = v.sync_env(&[url.as_str()], &[("REPOVAULT_INTERRUPT_AT", "fetching")]);
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let all = text(&out);
    no_debug_text(&all);
    assert!(all.contains("interrupted 127.0.0.1"), "{all}");
    assert!(all.contains("0 failed, 1 interrupted"), "{all}");
}

/// Bytes of every file below `dir` (what `du -b` adds up), and the names of
/// the files below `packs/` and `snapshots/`.
fn store_size(dir: &Path) -> (u64, Vec<PathBuf>) {
    let mut files = Vec::new();
    support::files_below(dir, &mut files);
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let mut data: Vec<PathBuf> = files
        .into_iter()
        .filter_map(|f| f.strip_prefix(dir).ok().map(Path::to_owned))
        .filter(|f| f.starts_with("packs") || f.starts_with("snapshots"))
        .collect();
    data.sort();
    (bytes, data)
}

/// A sync refused because the source lacks an object finds that out before it
/// stores anything: the store does not grow by a byte (no pack, no snapshot
/// file, the same total size), and the summary says +0, in the human and the
/// JSON summary.
#[test]
fn refused_sync_leaves_the_store_as_it_was() {
    let tmp = tempdir();
    let (src, _blob) = source_missing_a_blob(tmp.path(), 1, 400);
    let url = format!("file://{}", src.display());
    let v = Vault::new();
    let before = v.stats();
    let size_before = store_size(&v.store);
    let out = v.sync_env(&[url.as_str(), "--name", "broken", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = parse_json(&out);
    let r = &doc["repos"][0];
    assert_eq!(r["status"], "failed", "{doc:#}");
    assert_eq!(
        store_size(&v.store),
        size_before,
        "the store did not change"
    );
    assert_eq!(v.stats()["objects"], before["objects"]);
    assert_eq!(r["new_objects"].as_u64(), Some(0), "{doc:#}");
    assert_eq!(r["new_pack_bytes"].as_u64(), Some(0), "{doc:#}");
    assert_eq!(doc["totals"]["new_objects"].as_u64(), Some(0), "{doc:#}");

    let out = v.sync_env(&[url.as_str(), "--name", "broken"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("objects +0  packs +0 B"), "{stdout}");
    assert_eq!(
        store_size(&v.store),
        size_before,
        "the store did not change"
    );
}

/// A source that lacks a blob the store already holds (from an earlier sync
/// of the repository it was copied from) is backed up complete: the fetch
/// fails, the connectivity check finds nothing missing that the store lacks,
/// and the snapshot restores to a repository that `git fsck` passes.
#[test]
fn a_source_lacking_only_what_the_store_holds_is_backed_up_complete() {
    let tmp = tempdir();
    let src = tmp.path().join("src.git");
    support::git(tmp.path(), &["init", "-q", "--bare", src.to_str().unwrap()]);
    support::git(&src, &["config", "receive.unpackLimit", "100000"]);
    let work = support::TestRepo::new();
    work.commit_file("a.txt", "kept\n", "a");
    work.commit_file("lost.txt", "held by the store only\n", "b");
    work.git(&["push", "-q", src.to_str().unwrap(), "HEAD:refs/heads/main"]);
    support::git(&src, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let v = Vault::new();
    let out = v.sync_env(&[src.to_str().unwrap(), "--name", "first"], &[]);
    assert!(out.status.success(), "{}", describe(&out));

    let blob = work.rev_parse("HEAD:lost.txt");
    std::fs::remove_file(src.join("objects").join(&blob[..2]).join(&blob[2..])).unwrap();
    let out = v.sync_env(&[src.to_str().unwrap(), "--name", "copy", "--json"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let doc = parse_json(&out);
    assert_eq!(doc["repos"][0]["status"], "new", "{doc:#}");
    assert_eq!(doc["repos"][0]["incomplete"], false, "{doc:#}");
    let dest = tmp.path().join("restored.git");
    let out = v.run(&[
        "restore",
        "--repo",
        "copy",
        "--latest",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    support::git(&dest, &["fsck", "--full"]);
    assert_eq!(
        support::git(&dest, &["cat-file", "-p", &blob]),
        "held by the store only"
    );
}

/// With `--allow-incomplete`, what a source of loose objects has is stored
/// with deltas, as a sync of the same repository intact stores it (that one
/// goes through git's upload-pack, which sends deltas): a file edited in 60
/// commits does not cost 60 compressed copies.
#[test]
fn allow_incomplete_stores_loose_objects_with_deltas() {
    let tmp = tempdir();
    let src = tmp.path().join("loose.git");
    support::git(tmp.path(), &["init", "-q", "--bare", src.to_str().unwrap()]);
    support::git(&src, &["config", "receive.unpackLimit", "100000"]);
    let work = support::TestRepo::new();
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "line {i} of a file that grows a little in every commit {}\n",
            i * 7919 % 1009
        ));
    }
    for c in 0..60 {
        text.push_str(&format!("commit {c} appends this line\n"));
        work.commit_file("big.txt", text.clone(), &format!("c{c}"));
    }
    work.commit_file("lost.txt", "this blob will be lost\n", "lost");
    work.git(&["push", "-q", src.to_str().unwrap(), "HEAD:refs/heads/main"]);
    support::git(&src, &["symbolic-ref", "HEAD", "refs/heads/main"]);

    // The same repository intact, synced the usual way.
    let intact = Vault::new();
    let out = intact.sync_env(&[src.to_str().unwrap(), "--name", "r", "--json"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let intact_bytes = parse_json(&out)["repos"][0]["new_pack_bytes"]
        .as_u64()
        .unwrap();

    let blob = work.rev_parse("HEAD:lost.txt");
    std::fs::remove_file(src.join("objects").join(&blob[..2]).join(&blob[2..]))
        .expect("the blob is a loose object");
    let v = Vault::new();
    let out = v.sync_env(
        &[
            src.to_str().unwrap(),
            "--name",
            "r",
            "--allow-incomplete",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let doc = parse_json(&out);
    let r = &doc["repos"][0];
    assert_eq!(r["incomplete"], true, "{doc:#}");
    let bytes = r["new_pack_bytes"].as_u64().unwrap();
    assert!(
        bytes <= intact_bytes + intact_bytes / 2,
        "{bytes} bytes stored from the loose objects, {intact_bytes} from the intact repository"
    );
    let out = v.run(&["verify", "--read-data"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// The sync summary's byte counts: the bytes of the pack files written
/// (chunks, records and trailers: what the store grew by in packs/), and
/// what the whole store grew by on disk (index and snapshot files too).
#[test]
fn summary_counts_pack_bytes() {
    let tmp = tempdir();
    let src = many_blobs(tmp.path(), "r.git", 500);
    let v = Vault::new();
    let (before, _) = store_size(&v.store);
    let out = v.sync_env(&[src.to_str().unwrap(), "--name", "r", "--json"], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let doc = parse_json(&out);
    // What the store grew by: every file, the index and snapshot files too.
    let (after, _) = store_size(&v.store);
    assert_eq!(
        doc["totals"]["store_bytes"].as_u64(),
        Some(after),
        "{doc:#}"
    );
    assert_eq!(
        doc["totals"]["new_store_bytes"].as_u64(),
        Some(after - before),
        "{doc:#}"
    );
    let mut on_disk = 0;
    for e in std::fs::read_dir(v.store.join("packs")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(e.path()).unwrap() {
                on_disk += f.unwrap().metadata().unwrap().len();
            }
        } else {
            on_disk += e.metadata().unwrap().len();
        }
    }
    assert_eq!(
        doc["repos"][0]["new_pack_bytes"].as_u64(),
        Some(on_disk),
        "{doc:#}"
    );
    assert_eq!(doc["totals"]["new_pack_bytes"].as_u64(), Some(on_disk));
}

// ---------------------------------------------------------------------------
// Item 5: short errors, full lists in --json
// ---------------------------------------------------------------------------

/// A source missing an object that 301 refs need: the error is one short line,
/// the fix first, the first five refs and "and N more", printed once; the
/// full lists are in `--json`.
#[test]
fn missing_objects_error_is_short_with_full_lists_in_json() {
    let tmp = tempdir();
    let (src, blob) = source_missing_a_blob(tmp.path(), 300, 0);
    let url = format!("file://{}", src.display());
    let v = Vault::new();
    let out = v.sync_env(&[url.as_str(), "--name", "broken"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = text(&out);
    let lines: Vec<&str> = all.lines().filter(|l| l.contains(&blob)).collect();
    assert_eq!(lines.len(), 1, "the error is printed once:\n{all}");
    let line = lines[0];
    assert!(line.len() < 600, "{} characters: {line}", line.len());
    assert!(line.contains("301 ref(s)"), "{line}");
    assert!(line.contains("and 296 more"), "{line}");
    let fix = line.find("--allow-incomplete").expect("names the fix");
    let names = line.find("refs/heads/").expect("names refs");
    assert!(fix < names, "the fix comes before the lists: {line}");

    let out = v.sync_env(&[url.as_str(), "--name", "broken", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = parse_json(&out);
    let r = &doc["repos"][0];
    assert_eq!(r["missing_objects"], serde_json::json!([blob]), "{doc:#}");
    let refs = r["missing_needed_by"].as_array().unwrap();
    assert_eq!(refs.len(), 301, "{doc:#}");
    assert!(refs.iter().any(|x| x == "refs/heads/main"));
    assert!(r["error"].as_str().unwrap().len() < 600);
}

// ---------------------------------------------------------------------------
// Item 6: -q
// ---------------------------------------------------------------------------

fn assert_silent(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", describe(out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{what} -q printed something:\n{}",
        describe(out)
    );
}

/// `-q` prints nothing on success (init, sync, a config sync, restore,
/// verify, forget, prune, repair-index), still writes `--json` and
/// `--report`, and still prints errors on stderr.
#[test]
fn quiet_prints_nothing_on_success() {
    let tmp = tempdir();
    let src = many_blobs(tmp.path(), "q.git", 50);
    let src_s = src.to_str().unwrap();
    let dir = tempdir();
    let store = dir.path().join("store");
    let rv = |args: &[&str]| {
        let mut quiet = vec!["-q"];
        quiet.extend_from_slice(args);
        support::rv(&store, &quiet)
    };
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    assert_silent(&rv(&["init"]), "init");
    assert_silent(
        &rv(&["sync", "--cache", cache_s, src_s, "--name", "q"]),
        "sync",
    );
    assert_silent(
        &rv(&["sync", "--cache", cache_s, src_s, "--name", "q"]),
        "sync again",
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[sources]]\nkind = \"git\"\nurls = [\"{src_s}\"]\n"),
    )
    .unwrap();
    let report = dir.path().join("last.json");
    assert_silent(
        &rv(&[
            "sync",
            "--cache",
            cache_s,
            "--config",
            config.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]),
        "sync --config --report",
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(doc["totals"]["repos"], 1, "--report is written: {doc:#}");
    let dest = dir.path().join("restored.git");
    assert_silent(
        &rv(&["restore", "--repo", "q", "--latest", dest.to_str().unwrap()]),
        "restore",
    );
    assert!(dest.join("HEAD").is_file());
    assert_silent(&rv(&["verify"]), "verify");
    assert_silent(&rv(&["verify", "--read-data"]), "verify --read-data");
    assert_silent(
        &rv(&["forget", "--keep-last", "1", "--prune"]),
        "forget --prune",
    );
    assert_silent(&rv(&["prune"]), "prune");
    assert_silent(&rv(&["repair-index"]), "repair-index");

    // --json is still written.
    let out = rv(&["sync", "--cache", cache_s, src_s, "--name", "q", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse_json(&out)["repos"][0]["status"], "unchanged");
    assert!(out.stderr.is_empty(), "{}", describe(&out));

    // A failure still says so, on stderr, once.
    let out = rv(&["sync", "--cache", cache_s, "/nonexistent/repo.git"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such local repository"),
        "{}",
        describe(&out)
    );
    let (broken, blob) = source_missing_a_blob(tmp.path(), 0, 0);
    let out = rv(&[
        "sync",
        "--cache",
        cache_s,
        broken.to_str().unwrap(),
        "--name",
        "b",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches(&blob).count(), 1, "{stderr}");
}

// ---------------------------------------------------------------------------
// Item 10 (and 6, 9 on a terminal): tmux
// ---------------------------------------------------------------------------

/// A private tmux server running one command on a 200x50 pseudo-terminal,
/// its raw output captured from the first byte (`pipe-pane`).
pub(crate) struct Tmux {
    dir: TempDir,
    socket: PathBuf,
}

impl Tmux {
    /// Starts `script` (a shell script body) in a new session; the script
    /// waits until the output is being captured, and ends by printing
    /// `END-<exit code of the last command>`.
    pub(crate) fn start(script: &str) -> Tmux {
        let dir = tempdir();
        let socket = dir.path().join("sock");
        let go = dir.path().join("go");
        let body = format!(
            "trap : INT\nwhile [ ! -e '{}' ]; do sleep 0.02; done\nprintf 'BEGIN\\n'\n{script}\nprintf 'END-%s\\n' \"$?\"\nsleep 600\n",
            go.display()
        );
        let file = dir.path().join("run.sh");
        std::fs::write(&file, body).unwrap();
        let t = Tmux { dir, socket };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            &format!("sh {}", file.display()),
        ]);
        let raw = t.dir.path().join("raw");
        t.tmux(&[
            "pipe-pane",
            "-t",
            "t",
            &format!("cat >> '{}'", raw.display()),
        ]);
        std::fs::write(&go, "").unwrap();
        t
    }

    pub(crate) fn tmux(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", describe(&out));
        out
    }

    /// Everything the command wrote to the terminal so far (escape sequences included).
    pub(crate) fn raw(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.path().join("raw")).unwrap_or_default())
            .into_owned()
    }

    /// Waits for `END-<code>`; returns the code and the raw output.
    pub(crate) fn wait(&self) -> (i32, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let raw = self.raw();
            if let Some(at) = raw.find("END-") {
                let code: String = raw[at + 4..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if !code.is_empty() && raw[at + 4 + code.len()..].contains('\n') {
                    return (code.parse().unwrap(), raw);
                }
            }
            assert!(Instant::now() < deadline, "no END in:\n{raw}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the command has drawn `text` (and has not ended).
    pub(crate) fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.raw().contains(text) {
            assert!(
                Instant::now() < deadline && !self.raw().contains("END-"),
                "no {text:?} in:\n{}",
                self.raw()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The screen as it is now (what a user sees at the end).
    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The hermetic environment of `support::hermetic`, as shell exports.
pub(crate) fn exports() -> String {
    let mut cmd = Command::new("true");
    support::hermetic(&mut cmd);
    let mut s = String::from("unset GIT_DIR GIT_WORK_TREE\n");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!(
                "export {}='{}'\n",
                k.to_string_lossy(),
                v.to_string_lossy()
            ));
        }
    }
    s
}

/// The totals drawn in `raw`: N of every `D/N objects` (N may have commas).
pub(crate) fn totals_drawn(raw: &str) -> Vec<u64> {
    totals_drawn_of(raw, "objects")
}

/// The totals drawn in `raw`: N of every `D/N <unit>` (N may have commas).
pub(crate) fn totals_drawn_of(raw: &str, unit: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for (at, _) in raw.match_indices(&format!(" {unit}")) {
        let before = &raw[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_digit() || c == ','))
            .map_or(0, |i| i + 1);
        if before[..start].ends_with('/') {
            if let Ok(n) = before[start..].replace(',', "").parse() {
                out.push(n);
            }
        }
    }
    out
}

/// A shell script (hermetic environment first) that syncs `a` and `b` into
/// `v` and then restores the latest snapshot of `a` to `dest`; `flags` (empty
/// or ending in a space) go before `--store` in both commands.
fn sync_and_restore_script(flags: &str, v: &Vault, a: &Path, b: &Path, dest: &Path) -> String {
    format!(
        "{}'{BIN}' {flags}--store '{}' sync --cache '{}' '{}' '{}' && '{BIN}' {flags}--store '{}' restore --repo a --latest '{}'",
        exports(),
        v.store.display(),
        v.cache.display(),
        a.display(),
        b.display(),
        v.store.display(),
        dest.display()
    )
}

/// On a terminal, sync (two repositories) and restore draw bars with the
/// total number of objects, bytes, a rate and an ETA, and "[i/N]"; the bars
/// are gone from the final screen, which shows the result rows. With `-q`
/// nothing at all is drawn.
#[test]
fn progress_bars_on_a_terminal_and_nothing_with_quiet() {
    let tmp = tempdir();
    let a = many_blobs(tmp.path(), "a.git", 20_000);
    let b = many_blobs(tmp.path(), "b.git", 300);
    let v = Vault::new();
    let dest = tmp.path().join("restored.git");
    let t = Tmux::start(&sync_and_restore_script("", &v, &a, &b, &dest));
    let (code, raw) = t.wait();
    let screen = t.screen();
    assert_eq!(code, 0, "raw:\n{raw}\nscreen:\n{screen}");
    let objects = support::object_count(&a) as u64;
    let totals = totals_drawn(&raw);
    assert!(
        totals.contains(&objects),
        "a bar with the total of a.git's {objects} objects: {totals:?}\n{raw}"
    );
    assert!(raw.contains("storing"), "{raw}");
    assert!(raw.contains("restoring"), "{raw}");
    assert!(raw.contains("[1/2] ") && raw.contains("[2/2] "), "{raw}");
    assert!(raw.contains("/2 repositories"), "{raw}");
    assert!(raw.contains("KiB") || raw.contains("MiB"), "bytes: {raw}");
    assert!(
        raw.contains("/s") && raw.contains("eta "),
        "rate and ETA: {raw}"
    );
    // The restore's bar counts the objects it writes.
    let restore_part = &raw[raw.find("restore ").expect("a restore bar")..];
    assert!(
        totals_drawn(restore_part).contains(&objects),
        "restore bar total: {restore_part}"
    );
    // No stale bar above the results.
    assert!(!screen.contains("eta "), "a bar stayed:\n{screen}");
    assert!(!screen.contains("waiting"), "a bar stayed:\n{screen}");
    assert!(
        screen.contains(&format!("objects +{objects}  packs +")),
        "{screen}"
    );
    assert!(screen.contains("restored "), "{screen}");
    drop(t);

    // The same with -q: nothing is drawn or printed.
    let v = Vault::new();
    let dest = tmp.path().join("restored-quiet.git");
    let script = format!(
        "{} && '{BIN}' -q --store '{}' verify --read-data",
        sync_and_restore_script("-q ", &v, &a, &b, &dest),
        v.store.display(),
    );
    let t = Tmux::start(&script);
    let (code, raw) = t.wait();
    assert_eq!(code, 0, "{raw}");
    let between = &raw[raw.find("BEGIN").unwrap() + 5..raw.find("END-").unwrap()];
    assert!(
        between.trim().is_empty(),
        "-q drew or printed on a terminal: {between:?}"
    );
    assert!(dest.join("HEAD").is_file());
}

/// A real Ctrl-C on a terminal (tmux send-keys C-c) during a sync over http:
/// the summary row says interrupted, the exit code is 130, and there is no
/// Rust debug text.
#[test]
fn ctrl_c_on_a_terminal() {
    let tmp = tempdir();
    let base = tmp.path().join("srv");
    std::fs::create_dir_all(&base).unwrap();
    many_blobs(&base, "big.git", 60_000);
    let server = HttpGitServer::start(&base, None);
    let v = Vault::new();
    let script = format!(
        "{}'{BIN}' --store '{}' sync --cache '{}' '{}'",
        exports(),
        v.store.display(),
        v.cache.display(),
        server.url("big.git")
    );
    let t = Tmux::start(&script);
    // Wait until the sync is visibly working (its bar names the repository),
    // let it fetch for a moment (the whole sync takes seconds), then press Ctrl-C.
    t.wait_for("/big");
    std::thread::sleep(Duration::from_millis(500));
    t.tmux(&["send-keys", "-t", "t", "C-c"]);
    let (code, raw) = t.wait();
    let screen = t.screen();
    assert_eq!(code, 130, "raw:\n{raw}\nscreen:\n{screen}");
    no_debug_text(&raw);
    assert!(screen.contains("interrupted 127.0.0.1"), "{screen}");
    assert!(screen.contains("0 failed, 1 interrupted"), "{screen}");
}
