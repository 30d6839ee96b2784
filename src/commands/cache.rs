//! `kiln cache`: where the cache is, what it holds, and pruning it.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use kiln_store::Store;
use serde_json::json;

use super::GlobalArgs;
use crate::cache;
use crate::report::{human_size, outln};

/// `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheCommand {
    #[command(subcommand)]
    pub action: CacheAction,
}

/// What to do with the cache.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Show where the cache is and how much each part of it holds.
    Info,
    /// Remove realized store paths no recent build used, and what
    /// interrupted runs left. Paths a running kiln holds are kept.
    Prune {
        /// Remove entries not used for this many days (0: every unused one).
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        older_than: u32,
    },
}

/// Carries out the cache action.
pub fn run(global: &GlobalArgs, command: &CacheCommand) -> anyhow::Result<()> {
    match command.action {
        CacheAction::Info => info(global),
        CacheAction::Prune { older_than } => prune(global, older_than),
    }
}

fn info(global: &GlobalArgs) -> anyhow::Result<()> {
    let root = global.cache_root()?;
    tracing::debug!(cache = %root.display(), "measuring the cache");
    let parts = cache::usage(&root)
        .with_context(|| format!("could not measure the cache at {}", root.display()))?;
    if global.json {
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

fn prune(global: &GlobalArgs, older_than_days: u32) -> anyhow::Result<()> {
    let store = Store::open(&global.cache_root()?)?;
    let age = Duration::from_secs(u64::from(older_than_days) * 24 * 60 * 60);
    let report = store
        .prune(age)
        .with_context(|| format!("could not prune {}", store.dir().display()))?;
    if global.json {
        outln!(
            "{}",
            json!({
                "removed": report.removed,
                "bytes": report.bytes,
                "held": report.held,
            })
        );
    } else if !global.quiet {
        outln!(
            "removed {} store paths ({}); kept {} in use by running builds",
            report.removed.len(),
            human_size(report.bytes),
            report.held.len()
        );
    }
    Ok(())
}
