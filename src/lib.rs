//! `kiln`: builds OCI container images from application source with no
//! Docker daemon and no root.
//!
//! The library holds the command line (`cli`), the orchestration of a build
//! and the parts that are neither plans (`kiln-providers`) nor Nix store
//! work (`kiln-store`): the cache layout, the sandbox, layers, images and
//! registries. The `kiln` binary only parses arguments and calls [`run`].

pub mod bars;
pub mod build;
pub mod cache;
pub mod cli;
pub mod image;
pub mod layer;
pub mod logging;
pub mod output;
pub mod pack;
pub mod plan;
pub mod registry;
pub mod resolve;
pub mod sandbox;
pub mod shell;
mod store_commands;

use anyhow::Context;

use output::outln;

use cli::{CacheAction, Cli, Command};

/// A subcommand this version of kiln does not carry out yet. It ends kiln
/// with the usage exit code, never with a pretend success.
#[derive(Debug, thiserror::Error)]
#[error("`kiln {command}` is not available in this version of kiln yet ({arrives_with} is still being built); nothing was done")]
pub struct NotYetAvailable {
    /// The subcommand as typed.
    pub command: &'static str,
    /// The part of kiln that will bring it.
    pub arrives_with: &'static str,
}

/// Exit code for a finished run: 0 ok, 1 the work failed, 2 usage.
pub fn exit_code(result: &anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(err) if err.is::<NotYetAvailable>() || err.is::<shell::UsageError>() => 2,
        Err(_) => 1,
    }
}

/// Carries out one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan(command) => plan::plan(&command),
        Command::Detect(command) => plan::detect(&command),
        Command::Build(build) => build::run(&cli.global, &build),
        Command::Pack(pack) => pack::run(
            &pack,
            cli.global.cache_dir.as_deref(),
            cli.global.json,
            cli.global.quiet,
        ),
        Command::Shell(shell) => shell::run(&shell),
        Command::Realize(realize) => store_commands::realize(&cli.global, &realize),
        Command::Lock(lock) => store_commands::lock(&cli.global, &lock),
        Command::Cache(cache) => match cache.action {
            CacheAction::Info => cache_info(cli.global.cache_dir.as_deref(), cli.global.json),
            CacheAction::Prune { older_than } => store_commands::prune(&cli.global, older_than),
        },
    }
}

fn cache_info(explicit: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
    let root = cache::cache_dir(explicit)?;
    tracing::debug!(cache = %root.display(), "measuring the cache");
    let parts = cache::usage(&root)
        .with_context(|| format!("could not measure the cache at {}", root.display()))?;
    if json {
        outln!("{}", cache::usage_json(&root, &parts));
        return Ok(());
    }
    outln!("cache: {}", root.display());
    for part in &parts {
        outln!(
            "  {:<12} {:>12} bytes {:>8} files  {}",
            part.name,
            part.bytes,
            part.files,
            part.about
        );
    }
    Ok(())
}
