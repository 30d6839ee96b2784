//! `kiln cache`: where the cache is, what it holds, and pruning it (or a
//! registry build cache, see [`cache_repo`]).

mod cache_repo;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::args::RegistryArgs;
use super::GlobalArgs;
use crate::cache::{self, Limits, Pruned};
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
    /// Show where the cache is, how much each kind of entry takes, and
    /// what interrupted runs left.
    Info,
    /// Remove entries of every kind (store paths, layers and their blobs,
    /// phase results, evaluations, archives, base images,
    /// cacheDirectories) no build used lately, and everything interrupted
    /// runs left. Entries a running kiln holds, and what they need, are
    /// kept.
    ///
    /// With --cache-repo, prune a registry build cache instead: remove the
    /// kiln records written longer ago than --older-than (a record with no
    /// time, from an older kiln, counts as old). Records are known by
    /// their manifest, not their tag; images and other manifests in the
    /// repository, and records they point at, are never removed. Only
    /// manifests are deleted: the registry's garbage collector frees the
    /// blobs no manifest uses any more.
    Prune {
        /// Remove entries not used for this long (with --cache-repo:
        /// records written this long ago): a number of days, or a number
        /// with a unit s, m, h, d or w (`0`: every unused entry). Without
        /// it or --max-size, 30 days.
        #[arg(long, value_name = "AGE", value_parser = cache::parse_age)]
        older_than: Option<std::time::Duration>,
        /// Then remove the least recently used entries until the cache
        /// takes at most SIZE (`500M`, `10G`; K, M, G, T are powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = cache::parse_size, conflicts_with = "cache_repo")]
        max_size: Option<u64>,
        /// Prune this registry build cache (`REGISTRY/NAME`, as given to
        /// `--cache-repo` of build and pack) instead of the local cache.
        /// The registry must allow deletes. KILN_CACHE_REPO is not read
        /// here: name the repository to prune.
        #[arg(long, value_name = "REGISTRY/NAME")]
        cache_repo: Option<String>,
        /// List the records --cache-repo would remove; remove nothing.
        #[arg(long, requires = "cache_repo")]
        dry_run: bool,
        /// Registry host allowed over plain HTTP or unverified TLS. Repeat for more.
        #[arg(long, value_name = "HOST[:PORT]", requires = "cache_repo")]
        insecure_registry: Vec<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// What `kiln cache prune` removes without --older-than or --max-size.
const DEFAULT_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Carries out the cache action.
pub fn run(global: &GlobalArgs, command: &CacheCommand) -> anyhow::Result<()> {
    match &command.action {
        CacheAction::Info => info(global),
        CacheAction::Prune {
            older_than,
            cache_repo: Some(repository),
            dry_run,
            insecure_registry,
            registry,
            ..
        } => {
            let config = registry.config(insecure_registry);
            let older_than = older_than.unwrap_or(DEFAULT_AGE);
            cache_repo::prune(global, &config, repository, older_than, *dry_run)
        }
        CacheAction::Prune {
            older_than,
            max_size,
            ..
        } => {
            let (older_than, max_size) = (*older_than, *max_size);
            let older_than = match (older_than, max_size) {
                (None, None) => Some(DEFAULT_AGE),
                (age, _) => age,
            };
            let limits = Limits {
                unused_since: older_than.map(cache::unused_since),
                max_size,
            };
            prune(global, &limits)
        }
    }
}

fn info(global: &GlobalArgs) -> anyhow::Result<()> {
    let root = global.cache_root()?;
    tracing::debug!(cache = %root.display(), "measuring the cache");
    let measured = cache::scan(&root).and_then(|entries| cache::usage(&root, &entries));
    let usage =
        measured.with_context(|| format!("could not measure the cache at {}", root.display()))?;
    if global.json {
        outln!("{}", cache::usage_json(&root, &usage));
        return Ok(());
    }
    outln!("cache: {}", root.display());
    for kind in &usage.kinds {
        let leftovers = match kind.leftovers {
            0 => String::new(),
            n => format!(
                "  ({n} left by interrupted runs, {})",
                human_size(kind.leftover_bytes)
            ),
        };
        outln!(
            "  {:<12} {:>10} {:>7} entries {:>8} files  {}{leftovers}",
            kind.kind.name(),
            human_size(kind.bytes),
            kind.entries,
            kind.files,
            kind.kind.about(),
        );
    }
    outln!(
        "  {:<12} {:>10}  locks and records",
        "other",
        human_size(usage.other_bytes)
    );
    outln!("  {:<12} {:>10}", "total", human_size(usage.total_bytes()));
    if !usage.leftovers.is_empty() {
        outln!("left by interrupted runs (`kiln cache prune` removes them):");
        for (_, name, bytes) in &usage.leftovers {
            outln!("  {name} ({})", human_size(*bytes));
        }
    }
    Ok(())
}

fn prune(global: &GlobalArgs, limits: &Limits) -> anyhow::Result<()> {
    let root = global.cache_root()?;
    let pruned = cache::prune(&root, limits)
        .with_context(|| format!("could not prune the cache at {}", root.display()))?;
    if global.json {
        outln!("{}", pruned_json(&pruned));
    } else if !global.quiet {
        outln!("{}", pruned_line(&pruned));
    }
    Ok(())
}

/// What a prune did, as `--json` prints it (for `kiln cache prune` and a
/// build's own prune).
pub fn pruned_json(pruned: &Pruned) -> serde_json::Value {
    json!({
        "removed": pruned.removed.iter().map(|r| json!({
            "kind": r.kind.name(),
            "name": r.name,
            "bytes": r.bytes,
            "leftover": r.leftover,
        })).collect::<Vec<_>>(),
        "bytes": pruned.freed(),
        "held": pruned.held,
        "remainingBytes": pruned.remaining,
    })
}

/// What a prune did, in one line for people.
pub fn pruned_line(pruned: &Pruned) -> String {
    let leftovers = pruned.removed.iter().filter(|r| r.leftover).count();
    format!(
        "removed {} entries ({leftovers} left by interrupted runs), {}; {} remain; kept {} in use by running kilns",
        pruned.removed.len(),
        human_size(pruned.freed()),
        human_size(pruned.remaining),
        pruned.held.len()
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Cli;

    #[test]
    fn cache_repo_prune_flags_go_together() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["kiln", "cache", "prune"].iter().chain(args)).map(drop)
        };
        parse(&[
            "--cache-repo",
            "r.example/c",
            "--older-than",
            "7",
            "--dry-run",
        ])
        .unwrap();
        parse(&[
            "--cache-repo",
            "r.example/c",
            "--insecure-registry",
            "r.example",
        ])
        .unwrap();
        // Listing and registry flags mean nothing to the local cache, and
        // a size bound means nothing to a registry.
        parse(&["--dry-run"]).unwrap_err();
        parse(&["--insecure-registry", "r.example"]).unwrap_err();
        parse(&["--cache-repo", "r.example/c", "--max-size", "1G"]).unwrap_err();
    }
}
