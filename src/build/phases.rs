//! The phases stage: each phase with commands runs in the sandbox, in plan
//! order, on the base, the app files and the diffs of the phases before it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use kiln_providers::{BuildPlan, Phase};

use super::packages::Packages;
use super::phase_cache::{self, PhaseCache, PhaseKey};
use super::progress::Progress;
use super::{app_files, app_view};
use crate::cli::BuildCommand;
use crate::sandbox::{self, PhaseEnvironment, Sandbox};

/// Cache key of `cacheDirectories` when `--cache-key` is not given.
const DEFAULT_CACHE_KEY: &str = "default";

/// What the phases need.
pub struct PhaseInputs<'a> {
    /// The plan (its `variables`).
    pub plan: &'a BuildPlan,
    /// Its phases in order.
    pub phases: &'a [&'a Phase],
    /// The realized packages.
    pub packages: &'a Packages,
    /// The base files folder, the lowest layer.
    pub base: &'a Path,
    /// The staged app: `app/` and `assets/`.
    pub app_root: &'a Path,
    /// Folder for the phases' upper folders.
    pub work: &'a Path,
    /// kiln's cache folder (phase cache, `cacheDirectories`).
    pub cache_root: &'a Path,
    /// The command line (`--env`, `--network`, `--cache-key`, `--no-cache`).
    pub command: &'a BuildCommand,
    /// Where progress lines go.
    pub progress: &'a Progress,
}

/// A phase that ran.
pub struct RanPhase {
    /// Its name.
    pub name: String,
    /// Its diff, in overlay format.
    pub upper: PathBuf,
    /// How long it took (looking it up, when cached).
    pub seconds: f64,
    /// Whether its diff came from the phase cache.
    pub cached: bool,
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

    let phase_cache = if inputs.command.no_cache {
        None
    } else {
        Some(PhaseCache::open(inputs.cache_root)?)
    };
    let mut closure_paths: Vec<String> = store_paths.iter().map(|s| s.name.clone()).collect();
    closure_paths.sort();

    let mut uppers: Vec<PathBuf> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut ran = Vec::new();
    for (index, phase) in inputs.phases.iter().enumerate() {
        let paths = image_paths(&inputs.phases[..=index]);
        let commands = phase.cmds.clone().unwrap_or_default();
        if commands.is_empty() {
            continue;
        }
        let started = Instant::now();
        let name = phase.name();
        let view = match app_view::phase_files(phase, &inputs.app_root.join("app")) {
            Some(files) => {
                let view = inputs.work.join(format!("view-{index}"));
                app_files::stage_selected(inputs.app_root, &view, &files)
                    .with_context(|| format!("phase {name}: could not stage its files"))?;
                inputs.progress.note(format!(
                    "phase {name}: sees only {} of the app",
                    files.join(", ")
                ));
                view
            }
            None => inputs.app_root.to_path_buf(),
        };
        let env = sandbox::phase_environment(&PhaseEnvironment {
            variables: &variables,
            overrides: &overrides,
            paths: &paths,
            profile: &profile,
            libraries: &packages.library_dirs,
            metadata: None,
        });
        let directories = phase.cache_directories.clone().unwrap_or_default();
        let key = PhaseKey {
            name,
            commands: &commands,
            env: &env,
            store_paths: &closure_paths,
            cache_directories: &directories,
            app_files: &phase_cache::hash_folder(&view)?,
            earlier: &keys,
        }
        .digest();
        let mut lowers = vec![inputs.base.to_path_buf(), view];
        lowers.extend(uppers.iter().cloned());

        if let Some(upper) = phase_cache.as_ref().and_then(|c| c.lookup(&key)) {
            let seconds = started.elapsed().as_secs_f64();
            inputs
                .progress
                .note(format!("phase {name}: cached (phase cache {})", &key[..12]));
            uppers.push(upper.clone());
            keys.push(key);
            ran.push(RanPhase {
                name: name.to_string(),
                upper,
                seconds,
                cached: true,
            });
            continue;
        }

        let upper = inputs.work.join(format!("phase-{index}"));
        std::fs::create_dir(&upper)
            .with_context(|| format!("could not create {}", upper.display()))?;
        let mut sandbox = Sandbox::new(name, bash.clone(), upper.clone(), commands);
        sandbox.lowers = lowers;
        sandbox.store_paths = store_paths.clone();
        sandbox.env = env;
        sandbox.cancel = Some(cancel.clone());
        sandbox.network = inputs.command.network.into();
        if !inputs.command.no_cache && !directories.is_empty() {
            let build_cache = inputs.cache_root.join("build-cache");
            sandbox.caches = sandbox::cache_binds(&build_cache, &cache_key, &directories)
                .with_context(|| {
                    format!("phase {name}: could not prepare its cache directories")
                })?;
        }
        let diff = sandbox
            .run()
            .with_context(|| format!("phase {name} failed"))?;
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted during phase {name}");
        }
        let upper = match &phase_cache {
            Some(cache) => cache.record(&key, name, &diff.upper)?,
            None => diff.upper,
        };
        let seconds = started.elapsed().as_secs_f64();
        inputs
            .progress
            .note(format!("phase {name}: ran in {seconds:.1}s"));
        uppers.push(upper.clone());
        keys.push(key);
        ran.push(RanPhase {
            name: name.to_string(),
            upper,
            seconds,
            cached: false,
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
