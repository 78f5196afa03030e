//! The command line as a user meets it, through the real binary: one time
//! format in JSON, errors as JSON under `--json`, help that keeps a verb's
//! own options apart from the global ones, a README that documents every
//! flag, shell completions, the man page, `sync --dry-run`, `stats --repo`
//! and `verify --repo`.

use crate::support;

use support::{tempdir, Vault};

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{describe, parse_json, TestRepo};

use support::{rv_args, rv_cmd, RUN_TIMEOUT};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p, bytes);
            }
        }
    }
    out
}

fn pack_files(store: &Path) -> BTreeSet<PathBuf> {
    tree(store)
        .into_keys()
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}

/// A small history: two commits on main, a branch, a lightweight and an annotated tag.
fn small_repo(seed: &str) -> TestRepo {
    let r = TestRepo::new();
    r.commit_file("README", format!("{seed} readme\n"), "first");
    r.commit_file(
        "src/lib.rs",
        format!("// {seed}\n{}", "fn f() {}\n".repeat(50)),
        "second",
    );
    r.branch("dev");
    r.tag_lightweight("v0.1", "HEAD~1");
    r.tag_annotated("v0.2", "HEAD", "release 0.2");
    r
}

fn assert_rfc3339(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(s.ends_with('Z'), "{what} = {s:?} is not in UTC");
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{what} = {s:?} is not RFC 3339: {e}"));
}

// ---------------------------------------------------------------------------
// JSON: times and errors
// ---------------------------------------------------------------------------

#[test]
fn json_times_are_rfc3339_utc_strings() {
    let v = Vault::new();
    let r = small_repo("times");
    v.sync_as(&r.path, "times");
    // A second, unchanged sync sets last_checked and checked_at again.
    v.sync_as(&r.path, "times");

    let repos = v.json(&["repos", "--json"]);
    let repo = &repos.as_array().expect("repos is an array")[0];
    for key in ["created", "last_checked", "last_snapshot"] {
        assert_rfc3339(&repo[key], &format!("repos --json: {key}"));
    }

    let snaps = v.json(&["snapshots", "--json"]);
    let snap = &snaps.as_array().expect("snapshots is an array")[0];
    for key in ["time", "checked_at"] {
        assert_rfc3339(&snap[key], &format!("snapshots --json: {key}"));
    }

    let list = v.json(&["restore", "--repo", "times", "--latest", "--list", "--json"]);
    assert_rfc3339(&list["time"], "restore --list --json: time");
    assert_rfc3339(&list["checked_at"], "restore --list --json: checked_at");

    let dest = tempdir("repovault-cli-dest-");
    let dest = dest.path().join("r.git");
    let restored = v.json(&[
        "restore",
        "--repo",
        "times",
        "--latest",
        dest.to_str().unwrap(),
        "--json",
    ]);
    assert_rfc3339(&restored["time"], "restore --json: time");

    let forget = v.json(&["forget", "--keep-last", "1", "--dry-run", "--json"]);
    assert_rfc3339(&forget["snapshots"][0]["time"], "forget --json: time");
}

/// The keys of `doc`'s object at `path` (a JSON pointer) in the order the
/// document's text has them.
fn keys_in_text_order(text: &str, pointer: &str) -> Vec<String> {
    // Parsed with serde_json's `preserve_order` (the crate's feature, which the
    // test binary shares), so the map keeps the text's order.
    let doc: Value = serde_json::from_str(text).expect("JSON document");
    doc.pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no object at {pointer} in {text}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn json_keys_keep_the_order_the_code_writes_them() {
    let v = Vault::new();
    let r = small_repo("order");
    let cache = v.cache.to_str().unwrap().to_owned();
    let out = v.ok(&[
        "sync",
        r.path.to_str().unwrap(),
        "--name",
        "order",
        "--cache",
        &cache,
        "--json",
    ]);
    let text = stdout(&out);
    // Sorted keys would put "discovery" first and "changed" before "repos".
    assert_eq!(
        keys_in_text_order(&text, ""),
        ["repos", "discovery", "totals", "stale"],
        "{text}"
    );
    let totals = keys_in_text_order(&text, "/totals");
    assert_eq!(&totals[..3], ["repos", "synced", "new"], "{text}");
    // The same document twice: the same text, key for key.
    let again = stdout(&v.ok(&["snapshots", "--json"]));
    assert_eq!(again, stdout(&v.ok(&["snapshots", "--json"])));
}

#[test]
fn errors_under_json_are_json_objects_with_the_exit_code() {
    let dir = tempdir("repovault-cli-err-");
    let missing = dir.path().join("no-store");
    let out = rv_args(&["--store", missing.to_str().unwrap(), "repos", "--json"]);
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    let doc = parse_json(&out);
    assert_eq!(doc["error"]["exit_code"], 10, "{doc}");
    let msg = doc["error"]["message"].as_str().expect("message");
    assert!(msg.contains("does not exist"), "{msg}");
    // The one-line error stays on stderr.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("repovault: error: "), "{err}");
    assert!(err.contains(msg), "{err}");

    // A command line clap rejects: exit 2, as JSON too.
    let out = rv_args(&["snapshots", "--json", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let doc = parse_json(&out);
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{doc}"
    );

    // Without --json, stdout stays empty.
    let out = rv_args(&["--store", missing.to_str().unwrap(), "repos"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// Help, README, completions, man page
// ---------------------------------------------------------------------------

fn help(path: &[&str]) -> String {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let out = rv_args(&args);
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
    stdout(&out)
}

/// The verbs a help text lists under `Commands:`.
fn verbs(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            let verb = line.split_whitespace().next().unwrap_or_default();
            if !verb.is_empty() && verb != "help" {
                out.push(verb.to_owned());
            }
        }
    }
    out
}

/// The long flags (`--name`) a help text lists, with the heading each is under.
fn flags(help: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut heading = String::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_owned();
            continue;
        }
        let t = line.trim_start();
        let t = if t.starts_with('-') && !t.starts_with("--") {
            // "-j, --jobs <JOBS>"
            t.split_once(", ").map_or("", |(_, rest)| rest)
        } else {
            t
        };
        if let Some(rest) = t.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            out.push((format!("--{name}"), heading.clone()));
        }
    }
    out
}

/// Every verb path (`["sync"]`, `["config", "check"]`, ...).
fn all_verbs() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut stack: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = stack.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for v in verbs(&help(&args)) {
            let mut p = path.clone();
            p.push(v);
            stack.push(p.clone());
            out.push(p);
        }
    }
    out
}

#[test]
fn verb_help_lists_its_own_options_apart_from_the_global_ones() {
    let globals = ["--store", "--verbose", "--quiet"];
    for path in all_verbs() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let listed = flags(&text);
        for g in globals {
            let headings: Vec<&str> = listed
                .iter()
                .filter(|(f, _)| f == g)
                .map(|(_, h)| h.as_str())
                .collect();
            assert_eq!(
                headings,
                ["Global options"],
                "{path:?} --help: {g} should be listed once, under \"Global options\":\n{text}"
            );
        }
        // The verb's own options come first, the global ones after them.
        let first_global = text
            .find("Global options:")
            .expect("a Global options heading");
        for (f, h) in &listed {
            if !globals.contains(&f.as_str()) {
                assert_ne!(h, "Global options", "{path:?}: {f} is not global:\n{text}");
                let at = text
                    .find(&format!("{f} "))
                    .or_else(|| text.find(f.as_str()));
                assert!(
                    at.unwrap() < first_global,
                    "{path:?}: {f} after the globals:\n{text}"
                );
            }
        }
    }
    let sync = flags(&help(&["sync"]));
    assert!(
        sync.iter()
            .any(|(f, h)| f == "--lock-wait" && h == "Options"),
        "{sync:?}"
    );
}

#[test]
fn readme_mentions_every_flag_of_every_verb() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let mut missing = BTreeSet::new();
    let mut checked = 0;
    let mut paths = all_verbs();
    paths.push(Vec::new());
    for path in paths {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for (flag, _) in flags(&help(&args)) {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            checked += 1;
            let found = readme.match_indices(&flag).any(|(i, _)| {
                // The whole flag, not the prefix of a longer one (--keep vs --keep-daily).
                let next = readme[i + flag.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            if !found {
                missing.insert(format!("{} {flag}", path.join(" ")));
            }
        }
    }
    assert!(checked > 40, "only {checked} flags found in the help texts");
    assert!(
        missing.is_empty(),
        "README.md does not mention: {missing:?}"
    );
}

#[test]
fn completions_name_the_verbs_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = rv_args(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", describe(&out));
        let script = stdout(&out);
        assert!(script.len() > 500, "{shell}: short script:\n{script}");
        for verb in ["sync", "restore", "verify", "repair-index", "completions"] {
            assert!(script.contains(verb), "{shell} completion lacks {verb}");
        }
        assert!(script.contains("dry-run"), "{shell}: no --dry-run");
    }
    // bash loads it and registers the completion.
    let out = rv_args(&["completions", "bash"]);
    let dir = tempdir("repovault-cli-comp-");
    let file = dir.path().join("repovault.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p repovault",
            file.display()
        ))
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(check.status.success(), "{}", describe(&check));
    assert!(stdout(&check).contains("repovault"), "{}", describe(&check));

    let out = rv_args(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn man_page_is_generated_from_the_command_line_definition() {
    let out = rv_args(&["man"]);
    assert!(out.status.success(), "{}", describe(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH repovault 1"), "{page}");
    for verb in ["sync", "restore", "verify", "stats", "completions"] {
        assert!(page.contains(verb), "man page lacks {verb}");
    }
    assert!(page.contains("store"), "{page}");

    let dir = tempdir("repovault-cli-man-");
    let out = rv_args(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let sync = std::fs::read_to_string(dir.path().join("repovault-sync.1"))
        .expect("repovault-sync.1 written");
    assert!(sync.contains("dry\\-run"), "{sync}");
    assert!(sync.contains("lock\\-wait"), "{sync}");
    assert!(dir.path().join("repovault.1").is_file());
}

// ---------------------------------------------------------------------------
// sync --dry-run
// ---------------------------------------------------------------------------

#[test]
fn sync_dry_run_lists_the_changes_and_writes_nothing() {
    let v = Vault::new();
    let r = small_repo("dry");
    v.sync_as(&r.path, "dry");
    let old_main = r.rev_parse("main");
    let old_tag = r.rev_parse("refs/tags/v0.1");
    let new_main = r.commit_file("NEW", "new\n", "third");
    r.branch("feature");
    r.git(&["tag", "-d", "v0.1"]);

    let fresh_cache = v.store.parent().unwrap().join("fresh-cache");
    // Hold the store's write lock meanwhile: a dry run does not need it.
    let lock = v.store.join("lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .expect("run flock");
    std::thread::sleep(Duration::from_millis(300));
    let busy = v.run(&[
        "sync",
        r.path.to_str().unwrap(),
        "--name",
        "dry",
        "--lock-wait",
        "0",
    ]);
    assert_eq!(busy.status.code(), Some(11), "{}", describe(&busy));
    let before = tree(&v.store);

    let cache = fresh_cache.to_str().unwrap();
    let src = r.path.to_str().unwrap();
    let out = v.ok(&["sync", src, "--name", "dry", "--cache", cache, "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("changed"), "{text}");
    assert!(
        text.contains(&format!("+ refs/heads/feature  {new_main}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("- refs/tags/v0.1  {old_tag}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("~ refs/heads/main  {old_main} -> {new_main}")),
        "{text}"
    );

    let doc = v.json(&[
        "sync",
        src,
        "--name",
        "dry",
        "--cache",
        cache,
        "--dry-run",
        "--json",
    ]);
    let p = &doc["repos"][0];
    assert_eq!(doc["dry_run"], true);
    assert_eq!(p["status"], "changed", "{doc}");
    let names = |k: &str| -> Vec<String> {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("added"), ["refs/heads/feature"], "{doc}");
    assert_eq!(names("removed"), ["refs/tags/v0.1"], "{doc}");
    // HEAD is a symbolic ref to main: its target moves too.
    assert!(
        names("moved").contains(&"refs/heads/main".to_owned()),
        "{doc}"
    );

    // A repository never synced would be new, with every ref added.
    let other = small_repo("other");
    let doc = v.json(&[
        "sync",
        other.path.to_str().unwrap(),
        "--name",
        "other",
        "--cache",
        cache,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(doc["repos"][0]["status"], "new", "{doc}");
    assert!(
        doc["repos"][0]["added"].as_array().unwrap().len() >= 5,
        "{doc}"
    );

    // With --config: the repositories it would sync.
    let cfg = v.store.parent().unwrap().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = '{}'\ncache = '{}'\n\n[[sources]]\nkind = \"git\"\nurls = ['{}', '{}']\n",
            v.store.display(),
            fresh_cache.display(),
            r.path.display(),
            other.path.display()
        ),
    )
    .unwrap();
    let mut cmd = rv_cmd(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--dry-run",
        "--json",
    ]);
    let out = support::run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe(&out));
    let doc = parse_json(&out);
    assert_eq!(doc["repos"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(
        doc["totals"]["new"], 2,
        "config names the repositories by path: {doc}"
    );

    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!fresh_cache.exists(), "a dry run created the mirror cache");
    let after = tree(&v.store);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "a dry run added or removed store files"
    );
    for (p, bytes) in &before {
        assert!(after[p] == *bytes, "a dry run changed {}", p.display());
    }
    let snaps = v.json(&["snapshots", "--json"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
}

// ---------------------------------------------------------------------------
// stats --repo, verify --repo
// ---------------------------------------------------------------------------

#[test]
fn stats_repo_reports_what_a_fork_holds_alone_and_shares() {
    let v = Vault::new();
    let base = small_repo("base");
    for i in 0..5 {
        base.commit_file(
            &format!("f{i}.txt"),
            format!("{}\n", "base content line\n".repeat(40 + i)),
            "more",
        );
    }
    let fork = TestRepo::new();
    base.bare_clone_to(&fork.dir.path().join("seed.git"));
    std::fs::remove_dir_all(&fork.path).unwrap();
    support::git(
        fork.dir.path(),
        &[
            "clone",
            "-q",
            fork.dir.path().join("seed.git").to_str().unwrap(),
            "work",
        ],
    );
    fork.set_time(support::DEFAULT_TIME + 100_000);
    for i in 0..3 {
        fork.commit_file(
            &format!("fork{i}.txt"),
            format!("fork only {i}\n{}", "x".repeat(3000 + i * 100)),
            "fork commit",
        );
    }
    v.sync_as(&base.path, "base");
    v.sync_as(&fork.path, "fork");

    let total = v.json(&["stats", "--json"]);
    let f = v.json(&["stats", "--repo", "fork", "--json"]);
    assert_eq!(f["repo"], "fork");
    let fork_objects = support::object_count(&fork.path) as u64;
    assert_eq!(f["total"]["objects"], fork_objects, "{f}");
    let n = |v: &Value, a: &str, b: &str| v[a][b].as_u64().unwrap();
    assert!(n(&f, "only", "objects") > 0, "{f}");
    assert!(n(&f, "shared", "objects") > 0, "{f}");
    assert_eq!(
        n(&f, "only", "objects") + n(&f, "shared", "objects"),
        n(&f, "total", "objects")
    );
    assert!(
        n(&f, "only", "stored_bytes") < n(&f, "total", "stored_bytes"),
        "{f}"
    );
    assert!(n(&f, "shared", "stored_bytes") > 0, "{f}");
    assert!(n(&f, "total", "stored_bytes") <= total["stored_bytes"].as_u64().unwrap());
    // Three commits, their trees and three blobs are the fork's own.
    assert!(n(&f, "only", "objects") >= 9, "{f}");

    // Everything the base needs, the fork needs too.
    let b = v.json(&["stats", "--repo", "base", "--json"]);
    assert_eq!(n(&b, "only", "objects"), 0, "{b}");
    assert_eq!(n(&b, "shared", "objects"), n(&b, "total", "objects"), "{b}");

    let text = stdout(&v.ok(&["stats", "--repo", "fork"]));
    assert!(
        text.contains("only here") && text.contains("shared"),
        "{text}"
    );
    let out = v.run(&["stats", "--repo", "nope"]);
    assert!(!out.status.success());
}

#[test]
fn verify_repo_checks_only_that_repository() {
    let v = Vault::new();
    let alpha = small_repo("alpha");
    let beta = small_repo("beta-is-different");
    for i in 0..3 {
        beta.commit_file(
            &format!("b{i}"),
            format!("beta {i}\n{}", "y".repeat(2000)),
            "b",
        );
    }
    v.sync_as(&alpha.path, "alpha");
    let alpha_packs = pack_files(&v.store);
    v.sync_as(&beta.path, "beta");
    let beta_packs: Vec<PathBuf> = pack_files(&v.store)
        .difference(&alpha_packs)
        .cloned()
        .collect();
    assert!(!beta_packs.is_empty());
    v.ok(&["verify", "--read-data"]);

    // Flip a byte in the middle of each of beta's packs: read-data finds it.
    for p in &beta_packs {
        let mut bytes = std::fs::read(p).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x40;
        std::fs::write(p, bytes).unwrap();
    }
    let all = v.run(&["verify", "--read-data"]);
    assert_eq!(all.status.code(), Some(12), "{}", describe(&all));
    let a = v.run(&["verify", "--read-data", "--repo", "alpha", "--json"]);
    assert_eq!(a.status.code(), Some(0), "{}", describe(&a));
    let doc = parse_json(&a);
    assert_eq!(doc["clean"], true);
    assert_eq!(
        doc["packs_checked"].as_u64().unwrap(),
        alpha_packs.len() as u64,
        "{doc}"
    );
    let b = v.run(&["verify", "--read-data", "--repo", "beta"]);
    assert_eq!(b.status.code(), Some(12), "{}", describe(&b));

    // Delete one of beta's packs: quick mode finds it, but not for alpha.
    std::fs::remove_file(&beta_packs[0]).unwrap();
    let all = v.run(&["verify"]);
    assert_eq!(all.status.code(), Some(12), "{}", describe(&all));
    let a = v.run(&["verify", "--repo", "alpha"]);
    assert_eq!(a.status.code(), Some(0), "{}", describe(&a));
    let text = stdout(&a);
    assert!(text.contains("no damage found"), "{text}");
    assert!(!text.contains("is not in the index"), "{text}");
    let b = v.run(&["verify", "--repo", "beta"]);
    assert_eq!(b.status.code(), Some(12), "{}", describe(&b));
}
