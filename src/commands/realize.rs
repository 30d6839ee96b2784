//! `kiln realize`: store paths (or attributes) fetched with their closure
//! into kiln's store, and the closure printed.

use std::path::PathBuf;

use clap::Args;
use kiln_store::{Closure, NoProgress, Origin};
use serde_json::json;

use super::args::StoreArgs;
use super::GlobalArgs;
use crate::report::{human_size, outln};
use crate::resolve;

/// `kiln realize`.
#[derive(Debug, Args)]
pub struct RealizeCommand {
    /// Store paths (`/nix/store/<hash>-<name>`) or nixpkgs attribute names
    /// (`nodejs_18`, `stdenv.cc.cc.lib`) to fetch with their closure.
    /// Attributes are resolved with `--lock`, else with nix-instantiate.
    #[arg(required = true, value_name = "PATH_OR_ATTRIBUTE")]
    pub paths: Vec<String>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Lock file that resolves attribute names (read only; `kiln lock`
    /// writes it).
    #[arg(long, default_value = "kiln.lock", value_name = "FILE")]
    pub lock: PathBuf,

    /// Accept narinfo files no trusted key signed. Dangerous: a cache (or
    /// anyone between you and it) can then serve any files it likes.
    /// Paths fetched so are fetched again by the next verified realize or
    /// build that needs them.
    #[arg(long)]
    pub no_verify: bool,
}

/// Fetches the paths and prints their closure.
pub fn run(global: &GlobalArgs, command: &RealizeCommand) -> anyhow::Result<()> {
    let cache_root = global.cache_root()?;
    let mut sources = command.store.sources()?;
    if command.no_verify {
        eprintln!(
            "warning: --no-verify: narinfo signatures are NOT checked; any cache can serve any files"
        );
        sources.verify_signatures = false;
    }
    let wanted = resolve::resolve_names(&command.paths, &sources, &command.lock, &cache_root)?;
    let packages = resolve::realize(&wanted, &sources, &cache_root, &NoProgress)?;
    if global.json {
        outln!("{}", closure_json(&packages.closure));
    } else if !global.quiet {
        print_closure(&packages.closure)?;
    }
    Ok(())
}

fn origin_word(origin: &Origin) -> &'static str {
    match origin {
        Origin::Downloaded { .. } => "downloaded",
        Origin::AlreadyInStore => "cached",
        Origin::HostStore => "host",
        Origin::NotRealized => "not realized",
    }
}

fn print_closure(closure: &Closure) -> anyhow::Result<()> {
    for path in &closure.paths {
        outln!(
            "{}  {:>10}  {}",
            path.path,
            human_size(path.nar_size),
            origin_word(&path.origin)
        );
    }
    outln!(
        "{} paths, {} ({} downloaded)",
        closure.paths.len(),
        human_size(closure.total_nar_size()),
        closure.downloaded()
    );
    Ok(())
}

fn closure_json(closure: &Closure) -> serde_json::Value {
    let paths: Vec<_> = closure
        .paths
        .iter()
        .map(|p| {
            json!({
                "path": p.path.to_string(),
                "narSize": p.nar_size,
                "fileSize": p.file_size,
                "location": p.location,
                "origin": origin_word(&p.origin),
                "cache": match &p.origin {
                    Origin::Downloaded { cache } => Some(cache.as_str()),
                    _ => None,
                },
                "references": p.references.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "paths": paths,
        "totalNarSize": closure.total_nar_size(),
        "downloaded": closure.downloaded(),
    })
}
