//! `config check`: a config file validated and each source's listing shown
//! (discovery only), as text or as a typed JSON document.

use super::exit;
use super::output::{self, Report};
use anyhow::Result;
use repovault::sync::nightly;
use std::io::Write;
use std::path::Path;

/// One source as `config check --json` lists it.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum SourceCheck<'a> {
    Listed {
        source: &'a str,
        complete: bool,
        warnings: &'a [String],
        refused: Vec<RefusedRepo<'a>>,
        repos: Vec<ListedRepo<'a>>,
    },
    Failed {
        source: &'a str,
        error: &'a str,
    },
}

/// A repository `config check` would not sync, and why.
#[derive(serde::Serialize)]
pub(crate) struct RefusedRepo<'a> {
    name: &'a str,
    url: &'a str,
    reason: &'a str,
}

/// A repository `config check` lists.
#[derive(serde::Serialize)]
pub(crate) struct ListedRepo<'a> {
    name: &'a str,
    url: &'a str,
    key: &'a str,
    disabled: bool,
}

impl<'a> SourceCheck<'a> {
    fn of(l: &'a nightly::SourceListing) -> Self {
        match &l.result {
            Ok(f) => SourceCheck::Listed {
                source: &l.label,
                complete: f.complete,
                warnings: &f.warnings,
                refused: f
                    .refused
                    .iter()
                    .map(|(s, why)| RefusedRepo {
                        name: &s.name,
                        url: &s.url,
                        reason: why,
                    })
                    .collect(),
                repos: f
                    .repos
                    .iter()
                    .map(|(s, r)| ListedRepo {
                        name: &s.name,
                        url: &s.url,
                        key: &r.key,
                        disabled: r.disabled,
                    })
                    .collect(),
            },
            Err(e) => SourceCheck::Failed {
                source: &l.label,
                error: e,
            },
        }
    }
}

pub(crate) fn cmd_config_check(path: &Path, json: bool) -> Result<u8> {
    let config = repovault::config::Config::load(path)?;
    let resolved = config.resolve(path)?;
    let listed = nightly::discover_all(&resolved);
    let failed = listed.iter().filter(|l| l.result.is_err()).count();
    let check = ConfigCheck {
        path,
        store: config.store.as_deref(),
        listed: &listed,
    };
    output::show(&check, json)?;
    Ok(if failed == 0 { exit::OK } else { exit::ERROR })
}

/// What `config check` shows: the file, its store, each source's listing
/// (the JSON is the list of [`SourceCheck`]s).
pub(crate) struct ConfigCheck<'a> {
    path: &'a Path,
    store: Option<&'a Path>,
    listed: &'a [nightly::SourceListing],
}

impl serde::Serialize for ConfigCheck<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.collect_seq(self.listed.iter().map(SourceCheck::of))
    }
}

impl Report for ConfigCheck<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{}: valid; {} source(s)",
            self.path.display(),
            self.listed.len()
        )?;
        if let Some(s) = self.store {
            writeln!(out, "store: {}", s.display())?;
        }
        for l in self.listed {
            print_source_check(out, l)?;
        }
        Ok(())
    }
}

fn print_source_check(out: &mut dyn Write, l: &nightly::SourceListing) -> std::io::Result<()> {
    let label = &l.label;
    let f = match &l.result {
        Ok(f) => f,
        Err(e) if e.starts_with(label.as_str()) => {
            writeln!(out, "error: {e}")?;
            return Ok(());
        }
        Err(e) => {
            writeln!(out, "{label}: error: {e}")?;
            return Ok(());
        }
    };
    writeln!(
        out,
        "{label}: {} repositories{}",
        f.repos.len(),
        if f.complete {
            ""
        } else {
            " (listing incomplete)"
        }
    )?;
    for (s, r) in &f.repos {
        writeln!(
            out,
            "  {}{}  {}",
            s.name,
            if r.disabled {
                " (disabled: not fetched)"
            } else {
                ""
            },
            s.url
        )?;
    }
    for w in &f.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    for (s, why) in &f.refused {
        writeln!(out, "  refused: {}: {why}", s.name)?;
    }
    Ok(())
}
