//! Progress of restore, verify and prune (issue 14): on a terminal they draw a
//! bar with what they are doing and how far they got; piped (as under cron),
//! with `-q` or with `--json` they draw nothing.

use crate::output::{exports, many_blobs, totals_drawn, totals_drawn_of, Tmux};
use crate::support::{self, describe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_repovault");
const TIMEOUT: Duration = Duration::from_secs(600);

fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("repovault-progress-")
        .tempdir()
        .expect("temp dir")
}

fn rv(store: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    support::hermetic(&mut cmd);
    cmd.arg("--store").arg(store).args(args);
    support::run_with_timeout(&mut cmd, TIMEOUT)
}

fn rv_ok(store: &Path, args: &[&str]) -> Output {
    let out = rv(store, args);
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
    out
}

/// A store whose one repository had a branch `old` of 20,000 blobs and keeps
/// `main` (300 of the same blobs): after the snapshot with `old` is forgotten,
/// prune finds the live objects and repacks main's 300 blobs out of the big
/// pack. Returns the store.
fn store_to_prune(dir: &Path) -> PathBuf {
    let src = many_blobs(dir, "p.git", 20_000);
    support::git(&src, &["branch", "-m", "main", "old"]);
    many_blobs(dir, "p.git", 300);
    let store = dir.join("store");
    let cache = dir.join("cache");
    rv_ok(&store, &["init"]);
    let sync = |store: &Path| {
        rv_ok(
            store,
            &[
                "sync",
                "--cache",
                cache.to_str().unwrap(),
                src.to_str().unwrap(),
            ],
        )
    };
    sync(&store);
    support::git(&src, &["update-ref", "-d", "refs/heads/old"]);
    sync(&store);
    rv_ok(&store, &["forget", "--keep-last", "1"]);
    store
}

/// On a terminal, prune shows "finding live objects" with the count found and
/// a "repacking" bar counting the chunks copied; verify --read-data shows
/// "reading packs" counting the objects checked and "walking snapshots"; every
/// bar is gone from the final screen, which shows the results.
#[test]
fn prune_and_verify_draw_bars_on_a_terminal() {
    let tmp = tempdir();
    let store = store_to_prune(tmp.path());
    let gate = tmp.path().join("gate");
    let script = format!(
        "{}export REPOVAULT_PAUSE_AT=prune-walked REPOVAULT_PAUSE_GATE='{}'\n'{BIN}' --store '{}' prune && '{BIN}' --store '{}' verify --read-data",
        exports(),
        gate.display(),
        store.display(),
        store.display(),
    );
    let t = Tmux::start(&script);
    // Prune stops after its walk until the gate opens: its spinner is drawn meanwhile.
    t.wait_for("finding live objects 352 objects");
    std::fs::write(&gate, "").unwrap();
    let (code, raw) = t.wait();
    let screen = t.screen();
    assert_eq!(code, 0, "raw:\n{raw}\nscreen:\n{screen}");
    // main's 300 blobs, its tree(s) and commit are live.
    assert!(raw.contains("prune "), "{raw}");
    assert!(raw.contains("finding live objects 352 objects"), "{raw}");
    assert!(raw.contains("repacking"), "{raw}");
    let chunks = totals_drawn_of(&raw, "chunks");
    assert!(
        chunks.iter().any(|&n| n >= 300),
        "a repacking bar with the total of the live chunks copied: {chunks:?}\n{raw}"
    );
    let verify_part = &raw[raw.find("verify ").expect("a verify bar")..];
    assert!(verify_part.contains("reading packs"), "{verify_part}");
    assert!(
        totals_drawn(verify_part).iter().any(|&n| n >= 300),
        "verify counts the objects it checks: {verify_part}"
    );
    assert!(
        totals_drawn_of(verify_part, "snapshots").contains(&1),
        "verify walks the one snapshot: {verify_part}"
    );
    // No stale bar above the results.
    assert!(!screen.contains("eta "), "a bar stayed:\n{screen}");
    assert!(!screen.contains("finding live objects"), "{screen}");
    assert!(screen.contains("repacked"), "prune's summary: {screen}");
}

/// Piped (stderr not a terminal, as under cron), restore, prune and verify
/// draw nothing; on a terminal with --json neither.
#[test]
fn no_progress_when_piped_or_with_json() {
    let tmp = tempdir();
    let store = store_to_prune(tmp.path());
    let progress_words = [
        "finding live objects",
        "repacking",
        "reading packs",
        "walking snapshots",
        "restoring",
        "reading snapshot",
        "eta ",
        "\r",
    ];
    let silent = |out: &Output, what: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        for w in progress_words {
            assert!(!err.contains(w), "{what} drew {w:?} on a pipe: {err:?}");
        }
    };
    let prune = rv_ok(&store, &["prune"]);
    silent(&prune, "prune");
    let verify = rv_ok(&store, &["verify", "--read-data"]);
    silent(&verify, "verify");
    let dest = tmp.path().join("restored.git");
    let restore = rv_ok(
        &store,
        &["restore", "--repo", "p", "--latest", dest.to_str().unwrap()],
    );
    silent(&restore, "restore");
    assert!(dest.join("HEAD").is_file());

    // --json on a terminal: only the JSON document.
    let dest = tmp.path().join("restored-json.git");
    let script = format!(
        "{}'{BIN}' --store '{}' restore --json --repo p --latest '{}' && '{BIN}' --store '{}' verify --read-data --json && '{BIN}' --store '{}' prune --json",
        exports(),
        store.display(),
        dest.display(),
        store.display(),
        store.display(),
    );
    let t = Tmux::start(&script);
    let (code, raw) = t.wait();
    assert_eq!(code, 0, "{raw}");
    for w in &progress_words[..7] {
        assert!(!raw.contains(w), "--json drew {w:?} on a terminal: {raw}");
    }
}
