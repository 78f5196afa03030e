//! Fixture worlds: [`sample_repo`], the small repository many tests start
//! from, and the directories of the stores that take long to build, built
//! once per test process in a directory named after the process below
//! `CARGO_TARGET_TMPDIR`, and directories left by earlier processes that are
//! gone are swept away.

use std::path::{Path, PathBuf};

use super::git::TestRepo;

/// A small repository: `main` with three commits, a `feature` branch, an
/// annotated tag and a lightweight tag (deterministic: built twice, the
/// commits are equal).
pub fn sample_repo() -> TestRepo {
    let r = TestRepo::new();
    r.commit_file("README.md", "hello\n", "first");
    r.commit_file("src/lib.rs", "pub fn answer() -> u32 { 42 }\n", "second");
    r.tag_annotated("v1.0", "HEAD", "release 1.0");
    r.branch("feature");
    r.commit_file("README.md", "hello again\n", "third");
    r.tag_lightweight("light", "HEAD~1");
    r.checkout("feature");
    r.commit_file("feature.txt", "feature work\n", "feature");
    r.checkout("main");
    r
}

/// A fresh directory `CARGO_TARGET_TMPDIR/<name>-<pid>` for this process's
/// fixture `name`, after removing every `<name>-<pid>` of a process that no
/// longer runs.
pub fn fixture_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("create CARGO_TARGET_TMPDIR");
    remove_stale(&base, &format!("{name}-"));
    let root = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create fixture dir");
    root
}

/// Removes the entries `<prefix><pid>` of `base` whose process is gone.
fn remove_stale(base: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(prefix) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
