//! The phases stage: each phase with commands runs in the sandbox, in plan
//! order, on the base, the app files and the diffs of the phases before it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use kiln_providers::{BuildPlan, Phase};

use super::packages::Packages;
use super::progress::Progress;
use crate::cli::{BuildCommand, Network as NetworkArg};
use crate::sandbox::{self, Network, PhaseEnvironment, Sandbox};

/// Cache key of `cacheDirectories` when `--cache-key` is not given.
const DEFAULT_CACHE_KEY: &str = "default";

/// What the phases need.
pub struct PhaseInputs<'a> {
    pub plan: &'a BuildPlan,
    pub phases: &'a [&'a Phase],
    pub packages: &'a Packages,
    /// Root folders under every phase, lowest first.
    pub lowers: Vec<PathBuf>,
    /// Folder for the phases' upper folders.
    pub work: &'a Path,
    pub cache_root: &'a Path,
    pub command: &'a BuildCommand,
    pub progress: &'a Progress,
}

/// A phase that ran.
pub struct RanPhase {
    /// Its name.
    pub name: String,
    /// Its diff, in overlay format.
    pub upper: PathBuf,
    /// How long it took.
    pub seconds: f64,
}

/// Runs every phase that has commands, in order; returns their diffs.
pub fn run_all(inputs: &PhaseInputs<'_>) -> anyhow::Result<Vec<RanPhase>> {
    let packages = inputs.packages;
    let bash = packages
        .bash()
        .context("no package of the build has bin/bash, which runs the phases' commands")?;
    let variables: Vec<(String, String)> = inputs
        .plan
        .variables
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let overrides = crate::shell::env_overrides(&inputs.command.plan.env)?;
    let profile = packages.bin_dirs();
    let store_paths = packages.store_binds();
    let cache_key = inputs
        .command
        .cache_key
        .clone()
        .unwrap_or_else(|| DEFAULT_CACHE_KEY.to_string());
    let cancel = sandbox::cancel_on_interrupt().context("could not watch for Ctrl-C")?;

    let mut lowers = inputs.lowers.clone();
    let mut ran = Vec::new();
    for (index, phase) in inputs.phases.iter().enumerate() {
        let paths = image_paths(&inputs.phases[..=index]);
        let commands = phase.cmds.clone().unwrap_or_default();
        if commands.is_empty() {
            continue;
        }
        let started = Instant::now();
        let upper = inputs.work.join(format!("phase-{}", ran.len()));
        std::fs::create_dir(&upper)
            .with_context(|| format!("could not create {}", upper.display()))?;
        let env = sandbox::phase_environment(&PhaseEnvironment {
            variables: &variables,
            overrides: &overrides,
            paths: &paths,
            profile: &profile,
            libraries: &packages.library_dirs,
            metadata: None,
        });
        let mut sandbox = Sandbox::new(phase.name(), bash.clone(), upper.clone(), commands);
        sandbox.lowers = lowers.clone();
        sandbox.store_paths = store_paths.clone();
        sandbox.env = env;
        sandbox.cancel = Some(cancel.clone());
        sandbox.network = match inputs.command.network {
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        };
        let directories = phase.cache_directories.clone().unwrap_or_default();
        if !inputs.command.no_cache && !directories.is_empty() {
            let build_cache = inputs.cache_root.join("build-cache");
            sandbox.caches = sandbox::cache_binds(&build_cache, &cache_key, &directories)
                .with_context(|| {
                    format!(
                        "phase {}: could not prepare its cache directories",
                        phase.name()
                    )
                })?;
        }
        let diff = sandbox
            .run()
            .with_context(|| format!("phase {} failed", phase.name()))?;
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted during phase {}", phase.name());
        }
        let seconds = started.elapsed().as_secs_f64();
        inputs
            .progress
            .note(format!("phase {}: ran in {seconds:.1}s", phase.name()));
        lowers.push(diff.upper.clone());
        ran.push(RanPhase {
            name: phase.name().to_string(),
            upper: diff.upper,
            seconds,
        });
    }
    Ok(ran)
}

/// PATH entries of `phases`, later phases first, as upstream's images
/// have them.
pub fn image_paths(phases: &[&Phase]) -> Vec<String> {
    let mut paths = Vec::new();
    for phase in phases {
        for path in phase.paths.iter().flatten().rev() {
            paths.insert(0, path.clone());
        }
    }
    paths
}
