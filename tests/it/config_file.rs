//! Errors in a config file (`repovault config check FILE`, `repovault sync
//! --config FILE`): the typed source settings (`token_kind`, exactly one of
//! `group`/`org` or `user`, at most one of `token_env` or `token_file`) are
//! refused with one line that names the file, the line or source, the key and
//! the fix, exit code 1, and nothing is created.

use crate::support::{self, describe, run_with_timeout, tempdir};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// `repovault config check FILE` or `repovault sync --config FILE`.
fn run(sync: bool, config: &Path) -> Output {
    let mut cmd = support::rv_cmd(&[]);
    cmd.env("REPOVAULT_TEST_CONFIG_TOKEN", "a-token-for-the-config-test");
    if sync {
        cmd.args(["sync", "--config"]);
    } else {
        cmd.args(["config", "check"]);
    }
    run_with_timeout(cmd.arg(config), Duration::from_secs(120))
}

#[test]
fn typed_source_settings_are_refused_with_one_clear_line() {
    let dir = tempdir("repovault-config-file-");
    let store = dir.path().join("store");
    let head = format!("store = '{}'\n\n[[sources]]\n", store.display());
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token-in-a-file\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cases = [
        (
            "token-kind",
            "kind = \"azure-devops\"\norganization = \"fabrikam\"\ntoken_kind = \"oauth\"\n"
                .to_owned(),
            "line 6 (token_kind = \"oauth\"): token_kind \"oauth\" is unknown, expected `pat` or `bearer`",
        ),
        (
            "group-and-user",
            "kind = \"gitlab\"\ngroup = \"platform\"\nuser = \"ann\"\n".to_owned(),
            "line 3 ([[sources]]): gitlab source: give exactly one of `group` or `user`",
        ),
        (
            "no-org",
            "kind = \"github\"\ntoken_env = \"REPOVAULT_TEST_CONFIG_TOKEN\"\n".to_owned(),
            "line 3 ([[sources]]): github source: give exactly one of `org` or `user`",
        ),
        (
            "two-tokens",
            format!(
                "kind = \"git\"\nurls = [\"https://example.com/a.git\"]\ntoken_env = \"REPOVAULT_TEST_CONFIG_TOKEN\"\ntoken_file = '{}'\n",
                token.display()
            ),
            "source 1: give `token_env` or `token_file`, not both",
        ),
    ];
    for (name, source, want) in cases {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("{head}{source}")).unwrap();
        for sync in [false, true] {
            let out = run(sync, &file);
            assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            assert_eq!(
                stderr,
                format!("repovault: error: config {}: {want}", file.display()),
                "{name} (sync: {sync})"
            );
            assert!(out.stdout.is_empty(), "{name}: {}", describe(&out));
        }
    }
    assert!(!store.exists(), "nothing was created");
}

#[test]
fn token_settings_are_read_for_a_git_source() {
    let dir = tempdir("repovault-config-file-");
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token-in-a-file\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = dir.path().join("git.toml");
    std::fs::write(
        &file,
        format!(
            "[[sources]]\nkind = \"git\"\nurls = [\"https://example.com/a.git\"]\ntoken_file = '{}'\n",
            token.display()
        ),
    )
    .unwrap();
    // A token file others can read is refused for a git source too.
    let out = run(false, &file);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("chmod 600 {}", token.display())),
        "{}",
        describe(&out)
    );
    assert!(!stderr.contains("a-token-in-a-file"), "{}", describe(&out));

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(false, &file);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("git: 1 repositories\n  example.com/a  https://example.com/a.git\n"),
        "{}",
        describe(&out)
    );
    assert!(!stdout.contains("a-token-in-a-file"), "{}", describe(&out));
}
