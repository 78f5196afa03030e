//! Unit tests of the config file's parsing and resolution.
use super::*;

const EXAMPLE: &str = r#"
store = "/var/backups/repovault"
cache = "/var/cache/repovault"
jobs = 4

[[sources]]
kind = "azure-devops"
organization = "fabrikam"
url = "https://dev.azure.com"
token_env = "AZDO_PAT"
include = ["*"]

[[sources]]
kind = "gitlab"
url = "https://gitlab.example.com"
group = "platform"
token_env = "GITLAB_TOKEN"

[[sources]]
kind = "github"
org = "acme"
token_env = "GITHUB_TOKEN"

[[sources]]
kind = "git"
urls = ["https://example.com/a.git", "/srv/git/b.git"]

[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
"#;

#[test]
fn the_documented_example_parses() {
    let c = Config::parse(Path::new("c.toml"), EXAMPLE).unwrap();
    assert_eq!(c.sources.len(), 4);
    assert_eq!(c.jobs, Some(4));
    let r = c.retention.unwrap();
    assert_eq!((r.keep_daily, r.keep_weekly, r.keep_monthly), (7, 4, 12));
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let text = "store = \"/x\"\n\n[[sources]]\nkind = \"git\"\nurls = [\"/a\"]\ntoken = \"oops\"\n";
    let e = Config::parse(Path::new("c.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token"), "{e}");
    assert!(e.contains("line 3") || e.contains("line 6"), "{e}");
    let e = Config::parse(Path::new("c.toml"), "stor = \"/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("stor") && e.contains("line 1"), "{e}");
}

/// A file `name` in `dir` holding `token` with permission bits `mode`.
fn token_file(dir: &Path, name: &str, token: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let f = dir.join(name);
    std::fs::write(&f, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

#[test]
fn token_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = token_file(dir.path(), "pat", "tok", 0o644);
    let text = format!(
        "[[sources]]\nkind = \"github\"\norg = \"acme\"\ntoken_file = \"{}\"\n",
        f.display()
    );
    let c = Config::parse(Path::new("c.toml"), &text).unwrap();
    let e = c.resolve(Path::new("c.toml")).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
    assert!(!e.contains("tok\n"));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = c.resolve(Path::new("c.toml")).unwrap();
    assert!(matches!(&r[0], Resolved::Provider { token: Some(_), .. }));
}

#[test]
fn a_missing_token_env_is_named() {
    let text = "[[sources]]\nkind = \"gitlab\"\ngroup = \"g\"\ntoken_env = \"REPOVAULT_TEST_SURELY_UNSET\"\n";
    let c = Config::parse(Path::new("c.toml"), text).unwrap();
    let e = c.resolve(Path::new("c.toml")).unwrap_err().to_string();
    assert!(e.contains("REPOVAULT_TEST_SURELY_UNSET"), "{e}");
}

fn parse_err(text: &str) -> String {
    Config::parse(Path::new("c.toml"), text)
        .expect_err(text)
        .to_string()
}

const AZURE: &str =
    "store = \"/x\"\n\n[[sources]]\nkind = \"azure-devops\"\norganization = \"fabrikam\"\n";

#[test]
fn token_kind_is_pat_or_bearer() {
    let c = Config::parse(Path::new("c.toml"), AZURE).unwrap();
    let r = c.resolve(Path::new("c.toml")).unwrap();
    let Resolved::Provider { source, bearer, .. } = &r[0] else {
        panic!("{r:?}")
    };
    assert_eq!((source.token_kind, *bearer), (TokenKind::Pat, false));

    let text = format!("{AZURE}token_kind = \"bearer\"\n");
    let c = Config::parse(Path::new("c.toml"), &text).unwrap();
    let r = c.resolve(Path::new("c.toml")).unwrap();
    let Resolved::Provider { source, bearer, .. } = &r[0] else {
        panic!("{r:?}")
    };
    assert_eq!((source.token_kind, *bearer), (TokenKind::Bearer, true));

    let e = parse_err(&format!("{AZURE}token_kind = \"oauth\"\n"));
    assert_eq!(
        e,
        "config c.toml: line 6 (token_kind = \"oauth\"): token_kind \"oauth\" is unknown, expected `pat` or `bearer`"
    );
    // Only Azure DevOps sources have a token kind.
    let e = parse_err("[[sources]]\nkind = \"gitlab\"\ngroup = \"g\"\ntoken_kind = \"pat\"\n");
    assert!(
        e.contains("line 4") && e.contains("unknown field `token_kind`"),
        "{e}"
    );
}

#[test]
fn group_or_user_exactly_one() {
    for (kind, key) in [("gitlab", "group"), ("github", "org")] {
        let head = format!("store = \"/x\"\n\n[[sources]]\nkind = \"{kind}\"\n");
        let want = format!(
            "config c.toml: line 3 ([[sources]]): {kind} source: give exactly one of `{key}` or `user`"
        );
        assert_eq!(parse_err(&head), want);
        assert_eq!(
            parse_err(&format!("{head}{key} = \"a\"\nuser = \"b\"\n")),
            want
        );
    }
    let text = "[[sources]]\nkind = \"gitlab\"\ngroup = \"platform\"\n\n\
                [[sources]]\nkind = \"gitlab\"\nuser = \"ann\"\n\n\
                [[sources]]\nkind = \"github\"\norg = \"acme\"\n\n\
                [[sources]]\nkind = \"github\"\nuser = \"bob\"\nurl = \"https://ghe.example.com/api/v3\"\n";
    let c = Config::parse(Path::new("c.toml"), text).unwrap();
    let r = c.resolve(Path::new("c.toml")).unwrap();
    let got: Vec<_> = r
        .iter()
        .map(|r| match r {
            Resolved::Provider { source, .. } => {
                format!("{}: {:?} at {}", r.label(), source.scope, source.base_url)
            }
            Resolved::Git { .. } => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            "gitlab platform: Group(\"platform\") at https://gitlab.com",
            "gitlab ann: User(\"ann\") at https://gitlab.com",
            "github acme: Org(\"acme\") at https://api.github.com",
            "github bob: User(\"bob\") at https://ghe.example.com/api/v3",
        ]
    );
}

#[test]
fn token_settings_are_shared_by_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let f = token_file(dir.path(), "tok", "a-token-from-a-file", 0o600);
    let file = format!("token_file = '{}'\n", f.display());
    for head in [
        "[[sources]]\nkind = \"azure-devops\"\norganization = \"o\"\n",
        "[[sources]]\nkind = \"gitlab\"\ngroup = \"g\"\n",
        "[[sources]]\nkind = \"github\"\norg = \"o\"\n",
        "[[sources]]\nkind = \"git\"\nurls = [\"https://example.com/a.git\"]\n",
    ] {
        let c = Config::parse(Path::new("c.toml"), &format!("{head}{file}")).unwrap();
        let r = c.resolve(Path::new("c.toml")).unwrap();
        let token = match &r[0] {
            Resolved::Provider { source, token, .. } => {
                assert_eq!(source.token_hint, format!("token_file {}", f.display()));
                token.clone()
            }
            Resolved::Git { auth, .. } => auth.as_ref().map(|a| a.token.clone()),
        };
        assert_eq!(token.expect(head).expose(), "a-token-from-a-file");
        let e = parse_err(&format!("{head}{file}token_env = \"X\"\n"));
        assert!(
            e.ends_with("source 1: give `token_env` or `token_file`, not both"),
            "{e}"
        );
    }
}

#[test]
fn a_bad_git_host_names_the_entry_and_source() {
    let text = format!("{AZURE}git_hosts = [\"https://git.example.com\"]\n");
    let c = Config::parse(Path::new("c.toml"), &text).unwrap();
    let e = c.resolve(Path::new("c.toml")).unwrap_err().to_string();
    assert_eq!(
        e,
        "config c.toml: source azure-devops fabrikam: git_hosts entry \"https://git.example.com\" is not `host` or `host:port`"
    );
}
