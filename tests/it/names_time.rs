//! What a user trips over (issue 13, items 1, 2, 3 and 8), through the binary:
//! `restore --at` with the times `snapshots` prints, `forget` without a rule
//! and `forget SNAPSHOT-ID...`, repository names that keep the port (and
//! stores named before that keep their names), and failed first syncs that
//! leave no repository behind (`repos --remove`, `--repo PATH-OR-URL`).

use crate::support;

use support::{tempdir, Vault};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{describe, parse_json, refs_of, GitDaemon, TestRepo};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_repovault");

impl Vault {
    /// `sync --cache CACHE --json <args>`: the run's output.
    fn sync_raw(&self, args: &[&str]) -> Output {
        let mut a = vec!["sync", "--json", "--cache", self.cache.to_str().unwrap()];
        a.extend_from_slice(args);
        self.run(&a)
    }

    /// Syncs one source successfully; returns its report.
    fn sync_args(&self, args: &[&str]) -> Value {
        let out = self.sync_raw(args);
        assert!(out.status.success(), "sync {args:?}:\n{}", describe(&out));
        let doc = parse_json(&out);
        assert_eq!(doc["repos"].as_array().map(Vec::len), Some(1), "{doc:#}");
        doc["repos"][0].clone()
    }

    fn repos(&self) -> Vec<Value> {
        self.json(&["repos", "--json"]).as_array().unwrap().clone()
    }

    fn repo_names(&self) -> Vec<String> {
        self.repos()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn snapshot_ids(&self) -> Vec<String> {
        self.json(&["snapshots", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Restores with `sel` (`--repo X --at T`...) into a new directory; returns it.
    fn restore(&self, sel: &[&str]) -> (TempDir, PathBuf) {
        let d = tempdir("repovault-h5-restore-");
        let dest = d.path().join("r.git");
        let mut a = vec!["restore"];
        a.extend_from_slice(sel);
        a.push(dest.to_str().unwrap());
        self.ok(&a);
        (d, dest)
    }

    /// The id of the snapshot `restore <sel> --list --json` picks.
    fn picks(&self, sel: &[&str]) -> String {
        let mut a = vec!["restore"];
        a.extend_from_slice(sel);
        a.extend_from_slice(&["--list", "--json"]);
        self.json(&a)["id"].as_str().unwrap().to_owned()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bare repository at `bare` with a few commits whose contents depend on `seed`.
fn repo_at(bare: &Path, seed: &str) -> TestRepo {
    let w = TestRepo::new();
    w.commit_file("README.md", format!("{seed}\n"), "first");
    w.commit_file("src.txt", format!("{seed} source\n"), "second");
    w.tag_lightweight(&format!("{seed}-tag"), "HEAD");
    w.bare_clone_to(bare);
    w
}

/// The rows `snapshots` prints: (short id, time as printed), oldest first.
fn printed_snapshots(v: &Vault, repo: &str) -> Vec<(String, String)> {
    let out = v.ok(&["snapshots", "--repo", repo]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() >= 3, "a snapshot row: {line:?}\n{text}");
        rows.push((f[0].to_owned(), format!("{} {}", f[1], f[2])));
    }
    rows
}

// ---------------------------------------------------------------------------
// 1. --at with the times `snapshots` prints
// ---------------------------------------------------------------------------

#[test]
fn at_with_the_time_snapshots_prints_restores_that_snapshot() {
    let base = tempdir("repovault-h5-src-");
    let bare = base.path().join("at.git");
    let w = repo_at(&bare, "before");
    let v = Vault::new();
    let src = bare.to_str().unwrap();
    let first = v.sync_args(&[src]);
    let before_refs = refs_of(&bare);
    // A force-push: main rewritten, the tag moved; synced right away.
    w.git(&["reset", "-q", "--hard", "HEAD~1"]);
    w.commit_file("src.txt", "rewritten\n", "rewritten second");
    w.git(&["tag", "-f", "before-tag", "HEAD"]);
    w.publish(&bare);
    let second = v.sync_args(&[src]);
    assert_eq!(second["status"], "changed", "{second:#}");
    let after_refs = refs_of(&bare);
    assert_ne!(before_refs, after_refs);

    let rows = printed_snapshots(&v, "at");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (id1, t1) = (&rows[0].0, rows[0].1.as_str());
    let (id2, t2) = (&rows[1].0, rows[1].1.as_str());
    assert!(first["snapshot"]
        .as_str()
        .unwrap()
        .starts_with(id1.as_str()));
    assert!(second["snapshot"]
        .as_str()
        .unwrap()
        .starts_with(id2.as_str()));
    assert_ne!(t1, t2, "the printed times tell the snapshots apart");
    eprintln!("snapshots printed at {t1:?} and {t2:?}");

    // The exact text printed: each picks its own snapshot.
    assert!(v
        .picks(&["--repo", "at", "--at", t1])
        .starts_with(id1.as_str()));
    assert!(v
        .picks(&["--repo", "at", "--at", t2])
        .starts_with(id2.as_str()));
    // ... and the restore of the first has the refs from before the force-push.
    let (_d, restored) = v.restore(&["--repo", "at", "--at", t1]);
    assert_eq!(refs_of(&restored), before_refs);
    let (_d, restored) = v.restore(&["--repo", "at", "--at", t2]);
    assert_eq!(refs_of(&restored), after_refs);

    // The same time with a T, and cut to the second: still no later than the first.
    let t1_t = t1.replacen(' ', "T", 1);
    assert!(v
        .picks(&["--repo", "at", "--at", &t1_t])
        .starts_with(id1.as_str()));
    let ts1: jiff::Timestamp = format!("{t1_t}Z").parse().unwrap();
    let ts2: jiff::Timestamp = format!("{}Z", t2.replacen(' ', "T", 1)).parse().unwrap();

    // A zone offset: the first snapshot's time written in +05:30 picks it; the
    // second's in -03:00 picks the second.
    let in_offset = |t: jiff::Timestamp, hours: i8, minutes: i8| {
        let off = jiff::tz::Offset::from_seconds(i32::from(hours) * 3600 + i32::from(minutes) * 60)
            .unwrap();
        t.to_zoned(jiff::tz::TimeZone::fixed(off))
            .strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")
            .to_string()
    };
    let t1_ist = in_offset(ts1, 5, 30);
    assert!(t1_ist.ends_with("+05:30"), "{t1_ist}");
    assert!(v
        .picks(&["--repo", "at", "--at", &t1_ist])
        .starts_with(id1.as_str()));
    let t2_brt = in_offset(ts2, -3, 0);
    assert!(v
        .picks(&["--repo", "at", "--at", &t2_brt])
        .starts_with(id2.as_str()));
    // One microsecond before the first snapshot (with an offset): nothing.
    let early = in_offset(ts1 - jiff::SignedDuration::from_micros(1), 1, 0);
    let out = v.run(&["restore", "--repo", "at", "--at", &early, "--list"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no snapshot taken at or before"),
        "{}",
        describe(&out)
    );

    // A date alone: the end of that day, UTC.
    let day = ts2.strftime("%Y-%m-%d").to_string();
    assert!(v
        .picks(&["--repo", "at", "--at", &day])
        .starts_with(id2.as_str()));
    let day_before = (ts1 - jiff::SignedDuration::from_hours(24))
        .strftime("%Y-%m-%d")
        .to_string();
    let out = v.run(&["restore", "--repo", "at", "--at", &day_before, "--list"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // Garbage: exit 2, a one-line error naming --at and the accepted forms; nothing written.
    let d = tempdir("repovault-h5-restore-");
    let dest = d.path().join("none.git");
    for bad in [
        "garbage",
        "2026-13-02",
        "2026-12-02 21:09:21 UTC+1",
        "yesterday",
    ] {
        let out = v.run(&[
            "restore",
            "--repo",
            "at",
            "--at",
            bad,
            dest.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", describe(&out));
        let err = stderr(&out);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {bad:?}: {err}");
        assert!(
            lines[0].contains("--at")
                && lines[0].contains(bad)
                && lines[0].contains("2026-12-02T21:09:21Z"),
            "{err}"
        );
        assert!(!dest.exists());
    }
}

// ---------------------------------------------------------------------------
// 2. forget: a rule, or the ids of the snapshots to remove
// ---------------------------------------------------------------------------

#[test]
fn forget_without_a_rule_is_refused_and_ids_remove_exactly_those() {
    let base = tempdir("repovault-h5-src-");
    let bare = base.path().join("fg.git");
    let w = repo_at(&bare, "fg");
    let v = Vault::new();
    let src = bare.to_str().unwrap();
    let mut states = Vec::new();
    for i in 0..3 {
        if i > 0 {
            w.commit_file("n.txt", format!("{i}\n"), &format!("commit {i}"));
            w.publish(&bare);
        }
        v.sync_args(&[src]);
        states.push(refs_of(&bare));
    }
    let ids = v.snapshot_ids();
    assert_eq!(ids.len(), 3);
    let before = v.ok(&["snapshots", "--json"]).stdout;

    for args in [
        vec!["forget"],
        vec!["forget", "--allow-empty"],
        vec!["forget", "--allow-empty", "--prune"],
        vec!["forget", "--repo", "fg", "--allow-empty", "--json"],
        vec!["forget", "--keep-last", "0", "--allow-empty"],
    ] {
        let out = v.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(stderr(&out).contains("no keep rule"), "{}", describe(&out));
        assert!(
            stderr(&out).contains("forget SNAPSHOT-ID"),
            "{}",
            describe(&out)
        );
        assert_eq!(
            v.ok(&["snapshots", "--json"]).stdout,
            before,
            "{args:?} changed nothing"
        );
    }
    // Ids and rules do not mix; an unknown id removes nothing.
    let out = v.run(&["forget", &ids[0], "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = v.run(&["forget", &ids[0][..12], "ffffffffffffffff0000"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no such snapshot"),
        "{}",
        describe(&out)
    );
    assert_eq!(v.ok(&["snapshots", "--json"]).stdout, before);

    // A dry run names them and removes nothing.
    let dry = v.json(&["forget", "--dry-run", "--json", &ids[0][..10], &ids[2]]);
    assert_eq!(dry["removed"], 2, "{dry:#}");
    assert_eq!(v.ok(&["snapshots", "--json"]).stdout, before);

    // The oldest (by prefix) and the newest (by full id): exactly those go.
    let doc = v.json(&["forget", "--json", "--prune", &ids[0][..10], &ids[2]]);
    assert_eq!(doc["removed"], 2, "{doc:#}");
    let gone: Vec<&str> = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(gone.len(), 2, "{doc:#}");
    assert!(gone.contains(&ids[0].as_str()) && gone.contains(&ids[2].as_str()));
    assert_eq!(v.snapshot_ids(), vec![ids[1].clone()]);
    for id in [&ids[0], &ids[2]] {
        assert!(!v
            .store
            .join("snapshots")
            .join(format!("{id}.json"))
            .exists());
    }
    let (_d, restored) = v.restore(&["--repo", "fg", "--latest"]);
    assert_eq!(refs_of(&restored), states[1]);
    let report = v.json(&["verify", "--read-data", "--json"]);
    assert_eq!(report["clean"], true, "{report:#}");
}

// ---------------------------------------------------------------------------
// 3. Names keep the port; stores named before keep their names
// ---------------------------------------------------------------------------

#[test]
fn two_servers_with_the_same_path_are_two_repositories() {
    let (b1, b2) = (tempdir("repovault-h5-s1-"), tempdir("repovault-h5-s2-"));
    let _w1 = repo_at(&b1.path().join("rg.git"), "one");
    let _w2 = repo_at(&b2.path().join("rg.git"), "two");
    let (d1, d2) = (GitDaemon::start(b1.path()), GitDaemon::start(b2.path()));
    let (u1, u2) = (d1.url("rg.git"), d2.url("rg.git"));
    let v = Vault::new();

    let r1 = v.sync_args(&[&u1]);
    let r2 = v.sync_args(&[&u2]);
    let n1 = format!("127.0.0.1:{}/rg", d1.port);
    let n2 = format!("127.0.0.1:{}/rg", d2.port);
    assert_eq!(r1["name"], n1.as_str(), "{r1:#}");
    assert_eq!(r2["name"], n2.as_str(), "{r2:#}");
    assert_eq!(
        r2["status"], "new",
        "the second server is a new repository: {r2:#}"
    );
    let mut names = v.repo_names();
    names.sort();
    let mut want = vec![n1.clone(), n2.clone()];
    want.sort();
    assert_eq!(names, want);
    // Again: both unchanged, neither replaced by the other.
    assert_eq!(v.sync_args(&[&u1])["status"], "unchanged");
    assert_eq!(v.sync_args(&[&u2])["status"], "unchanged");
    assert_eq!(v.snapshot_ids().len(), 2);

    // Each restores to its own server's refs (named, or by the URL it was synced from).
    for (name, url, base) in [(&n1, &u1, &b1), (&n2, &u2, &b2)] {
        let src_refs = refs_of(&base.path().join("rg.git"));
        let (_d, r) = v.restore(&["--repo", name, "--latest"]);
        assert_eq!(refs_of(&r), src_refs, "{name}");
        let (_d, r) = v.restore(&["--repo", url, "--latest"]);
        assert_eq!(refs_of(&r), src_refs, "{url}");
    }
    // The short name is now ambiguous, and says so.
    let out = v.run(&["snapshots", "--repo", "rg"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("matches several"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_store_named_before_ports_were_in_names_keeps_its_names() {
    let b1 = tempdir("repovault-h5-s1-");
    let bare = b1.path().join("rg.git");
    let w = repo_at(&bare, "legacy");
    let local = b1.path().join("local.git");
    let _wl = repo_at(&local, "local");
    let d1 = GitDaemon::start(b1.path());
    let url = d1.url("rg.git");
    let v = Vault::new();

    // The store as repovault named it before: the git:// repository as
    // `127.0.0.1/rg` (its URL recorded with the port), the local one by its path.
    let old = v.sync_args(&[&url, "--name", "127.0.0.1/rg"]);
    assert_eq!(old["name"], "127.0.0.1/rg");
    let local_name = local
        .canonicalize()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .trim_end_matches(".git")
        .to_owned();
    assert_eq!(
        v.sync_args(&[local.to_str().unwrap()])["name"],
        local_name.as_str()
    );

    // Synced again by URL alone: found under the old name, nothing new.
    let again = v.sync_args(&[&url]);
    assert_eq!(again["name"], "127.0.0.1/rg", "{again:#}");
    assert_eq!(again["status"], "unchanged", "{again:#}");
    w.commit_file("later.txt", "later\n", "later");
    w.publish(&bare);
    let changed = v.sync_args(&[&url]);
    assert_eq!(changed["name"], "127.0.0.1/rg", "{changed:#}");
    assert_eq!(changed["status"], "changed", "{changed:#}");
    // The local path keeps its name (no port, nothing changes).
    let l = v.sync_args(&[local.to_str().unwrap()]);
    assert_eq!(
        (l["name"].as_str(), l["status"].as_str()),
        (Some(local_name.as_str()), Some("unchanged"))
    );
    let mut names = v.repo_names();
    names.sort();
    assert_eq!(names, vec!["127.0.0.1/rg".to_owned(), local_name.clone()]);
    let (_d, r) = v.restore(&["--repo", &url, "--latest"]);
    assert_eq!(refs_of(&r), refs_of(&bare));

    // A nightly run with `kind = "git"` finds it too: same name, same snapshots,
    // nothing marked deleted, first and second run.
    let config = b1.path().join("rv.toml");
    std::fs::write(
        &config,
        format!(
            "store = '{}'\ncache = '{}'\n\n[[sources]]\nkind = \"git\"\nurls = ['{url}']\n",
            v.store.display(),
            v.cache.display()
        ),
    )
    .unwrap();
    for run in 0..2 {
        let out = v.run(&["sync", "--config", config.to_str().unwrap(), "--json"]);
        assert!(
            out.status.success(),
            "config run {run}:\n{}",
            describe(&out)
        );
        let doc = parse_json(&out);
        assert_eq!(doc["repos"][0]["name"], "127.0.0.1/rg", "{doc:#}");
        assert_eq!(doc["repos"][0]["status"], "unchanged", "{doc:#}");
        assert_eq!(doc["discovery"]["new"], serde_json::json!([]), "{doc:#}");
        assert_eq!(
            doc["discovery"]["deleted"],
            serde_json::json!([]),
            "{doc:#}"
        );
    }
    let repos = v.repos();
    let row = repos.iter().find(|r| r["name"] == "127.0.0.1/rg").unwrap();
    assert_eq!(row["key"], "git:127.0.0.1/rg", "{row:#}");
    assert_eq!(row["state"], "active", "{row:#}");
    assert_eq!(row["snapshots"], 2, "{row:#}");
    assert_eq!(repos.len(), 2, "{repos:#?}");

    // Another server with the same path is another repository, not the old one.
    let b2 = tempdir("repovault-h5-s2-");
    let _w2 = repo_at(&b2.path().join("rg.git"), "other");
    let d2 = GitDaemon::start(b2.path());
    let other = v.sync_args(&[&d2.url("rg.git")]);
    assert_eq!(other["name"], format!("127.0.0.1:{}/rg", d2.port).as_str());
    assert_eq!(other["status"], "new");
    // A URL whose new name is the old name but is another repository (the
    // default port): refused before anything is fetched, naming the way out.
    let out = v.sync_raw(&["git://127.0.0.1/rg.git"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("a different repository") && stderr(&out).contains("--name"),
        "{}",
        describe(&out)
    );
    assert_eq!(v.snapshot_ids().len(), 4);
}

// ---------------------------------------------------------------------------
// 8. Failed first syncs leave nothing; repos --remove; --repo PATH-OR-URL
// ---------------------------------------------------------------------------

#[test]
fn a_failed_first_sync_leaves_no_repository() {
    let base = tempdir("repovault-h5-src-");
    let bare = base.path().join("team/widget.git");
    let _w = repo_at(&bare, "widget");
    let d = GitDaemon::start(base.path());
    let v = Vault::new();
    let good = v.sync_args(&[&d.url("team/widget.git")]);
    let name = good["name"].as_str().unwrap().to_owned();

    // A typo'd URL, twice: fails, and leaves no repository.
    for _ in 0..2 {
        let out = v.sync_raw(&[&d.url("tema/widget.git")]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert_eq!(parse_json(&out)["repos"][0]["status"], "failed");
    }
    assert_eq!(v.repo_names(), vec![name.clone()]);
    // So the short name stays unique.
    let (_r, restored) = v.restore(&["--repo", "widget", "--latest"]);
    assert_eq!(refs_of(&restored), refs_of(&bare));
    // A failing sync of a repository the store has is recorded on it.
    let moved = base.path().join("team/moved.git");
    std::fs::rename(&bare, &moved).unwrap();
    let out = v.sync_raw(&[&d.url("team/widget.git")]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let repos = v.repos();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["last_status"], "failed", "{:#}", repos[0]);
    std::fs::rename(&moved, &bare).unwrap();

    // --repo takes the URL or the path that was synced.
    let ids = |sel: &str| -> Vec<String> {
        v.json(&["snapshots", "--json", "--repo", sel])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["repo"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&d.url("team/widget.git")), vec![name.clone()]);
    assert_eq!(
        ids(&d.url("team/widget")),
        vec![name.clone()],
        "without .git"
    );
    let link = base.path().join("link-to-team");
    std::os::unix::fs::symlink(base.path().join("team"), &link).unwrap();
    let lname = v.sync_args(&[link.join("widget.git").to_str().unwrap()])["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut rel = Command::new(BIN);
    support::hermetic(&mut rel);
    rel.current_dir(base.path())
        .args([
            "--store",
            v.store.to_str().unwrap(),
            "snapshots",
            "--json",
            "--repo",
        ])
        .arg("link-to-team/widget.git");
    let out = support::run_with_timeout(&mut rel, Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        parse_json(&out)[0]["repo"],
        lname.as_str(),
        "{}",
        describe(&out)
    );
}

#[test]
fn repos_remove_drops_a_repository_without_snapshots_only() {
    let base = tempdir("repovault-h5-src-");
    let bare = base.path().join("team/widget.git");
    let _w = repo_at(&bare, "widget");
    let other = base.path().join("team/gadget.git");
    let _g = repo_at(&other, "gadget");
    let d = GitDaemon::start(base.path());
    let v = Vault::new();
    let name = v.sync_args(&[&d.url("team/widget.git")])["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let gadget = v.sync_args(&[&d.url("team/gadget.git")])["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // A store written before: a failed sync of a typo'd URL left a row (as
    // record_failure wrote it), and short names became ambiguous.
    let typo = format!("127.0.0.1:{}/tema/widget", d.port);
    {
        let db = rusqlite::Connection::open(v.store.join("index.sqlite")).unwrap();
        db.execute(
            "INSERT INTO repos (name, url, created, last_checked, last_status, last_error)
             VALUES (?1, ?2, 1, 1, 'failed', 'fetch failed: repository not found')",
            [typo.as_str(), d.url("tema/widget.git").as_str()],
        )
        .unwrap();
    }
    let out = v.run(&["snapshots", "--repo", "widget"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("matches several"),
        "{}",
        describe(&out)
    );

    // A repository with snapshots is not removed.
    let out = v.run(&["repos", "--remove", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("forget"), "{}", describe(&out));
    assert_eq!(v.repos().len(), 3);

    // The row without snapshots is, by its URL.
    let doc = v.json(&["repos", "--remove", &d.url("tema/widget.git"), "--json"]);
    assert_eq!(doc["removed"], serde_json::json!([typo]), "{doc:#}");
    let mut names = v.repo_names();
    names.sort();
    let mut want = vec![name.clone(), gadget.clone()];
    want.sort();
    assert_eq!(names, want);
    let (_r, restored) = v.restore(&["--repo", "widget", "--latest"]);
    assert_eq!(refs_of(&restored), refs_of(&bare));

    // Once its snapshots are forgotten (by id), a repository can be removed too.
    let snaps = v.json(&["snapshots", "--json", "--repo", "gadget"]);
    let id = snaps[0]["id"].as_str().unwrap().to_owned();
    v.ok(&["forget", &id]);
    v.ok(&["repos", "--remove", "gadget"]);
    assert_eq!(v.repo_names(), vec![name.clone()]);
    let report = v.json(&["verify", "--json"]);
    assert_eq!(report["clean"], true, "{report:#}");
}
