//! The phases stage: each phase with commands runs in the sandbox, in plan
//! order, on the base, the app files and the diffs of the phases before it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use kiln_providers::{BuildPlan, Phase};

use super::base_image::BaseImage;
use super::build_packages::BuildPackages;
use super::cache_repo::RemoteCache;
use super::phase_cache::{self, PhaseCache, PhaseKey};
use super::{app_files, app_view, global_prefix, PhaseOptions};
use crate::layer::LayerCache;
use crate::report::Progress;
use crate::sandbox::{self, PhaseEnvironment, Sandbox};

/// What the phases need.
pub struct PhaseInputs<'a> {
    /// The plan (its `variables`).
    pub plan: &'a BuildPlan,
    /// Its phases in order.
    pub phases: &'a [&'a Phase],
    /// The packages: their view, realized when a phase runs.
    pub packages: &'a BuildPackages<'a>,
    /// The registry build cache, asked for a phase the local one lacks.
    pub remote: Option<&'a RemoteCache>,
    /// The layer cache, where a phase diff from the registry leaves its
    /// layer.
    pub layers: &'a LayerCache,
    /// The pulled base image beneath everything, if any.
    pub base_image: Option<&'a BaseImage>,
    /// The base files folder, the lowest layer after the base image.
    pub base: &'a Path,
    /// The app's own folder, whose identity keys its `cacheDirectories`
    /// when no cache key is given.
    pub app_dir: &'a Path,
    /// The staged app: `app/` and `assets/`.
    pub app_root: &'a Path,
    /// Folder for the phases' upper folders.
    pub work: &'a Path,
    /// kiln's cache folder (phase cache, `cacheDirectories`).
    pub cache_root: &'a Path,
    /// `--env`, network, cache key, phase cache on or off.
    pub options: &'a PhaseOptions,
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
    /// Whether its diff came from the phase cache (local or registry).
    pub cached: bool,
    /// Whether its diff came from the registry build cache.
    pub from_repo: bool,
    /// Its phase cache key (empty with `--no-cache`).
    pub key: String,
}

/// Name of the step that installs the plan's `aptPkgs`.
pub const APT_STEP: &str = "apt";

/// One sandbox run: the apt step, or a phase with commands.
struct Step<'a> {
    name: &'a str,
    commands: Vec<String>,
    /// The phase, and its place in the plan; `None` for the apt step.
    phase: Option<(usize, &'a Phase)>,
}

/// Every apt package of the plan, in phase order, each once.
pub fn apt_packages(phases: &[&Phase]) -> Vec<String> {
    let mut packages: Vec<String> = Vec::new();
    for name in phases.iter().flat_map(|p| p.apt_pkgs.iter().flatten()) {
        if !packages.contains(name) {
            packages.push(name.clone());
        }
    }
    packages
}

/// Installs `packages` as upstream's images do (all at once, before the
/// phases), with what a rootless sandbox needs: apt's download sandbox user
/// off (only root is mapped), no terminal, and dpkg's fsyncs per file
/// skipped (the phase cache syncs the whole diff once). Package lists and logs are removed:
/// they hold download times and would make every image differ.
fn apt_command(packages: &[String]) -> String {
    const APT: &str = "apt-get -q -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0";
    format!(
        "export DEBIAN_FRONTEND=noninteractive && {APT} update && \
         {APT} -o Dpkg::Options::=--force-unsafe-io install -y --no-install-recommends {} && \
         rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/ldconfig/aux-cache \
         /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log",
        packages.join(" ")
    )
}

/// Runs the apt step (when the plan has `aptPkgs`) and every phase that has
/// commands, in order; returns their diffs.
pub fn run_all(inputs: &PhaseInputs<'_>) -> anyhow::Result<Vec<RanPhase>> {
    let runner = Runner::new(inputs)?;
    let mut done = Done::default();
    for (number, step) in steps(inputs.phases).into_iter().enumerate() {
        let ran = runner.run(number, step, &done)?;
        done.uppers.push(ran.0.upper.clone());
        done.keys.push(ran.1);
        done.ran.push(ran.0);
    }
    Ok(done.ran)
}

/// The steps in order: the apt step when the plan has `aptPkgs`, then
/// every phase with commands.
fn steps<'a>(phases: &[&'a Phase]) -> Vec<Step<'a>> {
    let apt = apt_packages(phases);
    let mut steps: Vec<Step<'a>> = Vec::new();
    if !apt.is_empty() {
        steps.push(Step {
            name: APT_STEP,
            commands: vec![apt_command(&apt)],
            phase: None,
        });
    }
    for (index, phase) in phases.iter().copied().enumerate() {
        let commands = phase.cmds.clone().unwrap_or_default();
        if !commands.is_empty() {
            steps.push(Step {
                name: phase.name(),
                commands,
                phase: Some((index, phase)),
            });
        }
    }
    steps
}

/// The steps done so far: their diffs and phase-cache keys, in order.
#[derive(Default)]
struct Done {
    uppers: Vec<PathBuf>,
    keys: Vec<String>,
    ran: Vec<RanPhase>,
}

/// What every step of a build shares.
struct Runner<'a> {
    inputs: &'a PhaseInputs<'a>,
    bash: PathBuf,
    /// Names of every visible store path, sorted: part of each key.
    closure_paths: Vec<String>,
    cache_key: String,
    cancel: Arc<AtomicBool>,
    phase_cache: Option<PhaseCache>,
    /// What the steps stand on (the base image and the base files), for
    /// the keys.
    base_key: String,
}

impl<'a> Runner<'a> {
    fn new(inputs: &'a PhaseInputs<'a>) -> anyhow::Result<Runner<'a>> {
        let bash = inputs
            .packages
            .view
            .bash
            .clone()
            .map(PathBuf::from)
            .context("no package of the build has bin/bash, which runs the phases' commands")?;
        let planned = inputs.packages.planned_packages().store_binds();
        let mut closure_paths: Vec<String> = planned.iter().map(|s| s.name.clone()).collect();
        closure_paths.sort();
        // Without an explicit key each app has caches of its own, so a
        // hostile app cannot poison the npm cache of the next one.
        let cache_key = match &inputs.options.cache_key {
            Some(key) => key.clone(),
            None => sandbox::app_cache_key(inputs.app_dir).with_context(|| {
                format!(
                    "could not name the build caches of {}",
                    inputs.app_dir.display()
                )
            })?,
        };
        let cancel = sandbox::cancel_on_interrupt().context("could not watch for Ctrl-C")?;
        let phase_cache = match inputs.options.no_cache {
            true => None,
            false => Some(PhaseCache::open(inputs.cache_root)?),
        };
        let base_key = match &phase_cache {
            Some(_) => format!(
                "{} {}",
                inputs.base_image.map_or("", |image| image.digest.as_str()),
                phase_cache::hash_folder(inputs.base)?
            ),
            None => String::new(),
        };
        Ok(Runner {
            inputs,
            bash,
            closure_paths,
            cache_key,
            cancel,
            phase_cache,
            base_key,
        })
    }

    /// Runs step `number` (or takes its diff from the phase cache) on the
    /// steps `done`; returns it and its key.
    fn run(
        &self,
        number: usize,
        step: Step<'_>,
        done: &Done,
    ) -> anyhow::Result<(RanPhase, String)> {
        let inputs = self.inputs;
        let started = Instant::now();
        let name = step.name;
        let view = self.view(number, &step)?;
        let env = match step.phase {
            Some((index, _)) => phase_environment(
                inputs.plan,
                &inputs.phases[..=index],
                &inputs.packages.view.bin_dirs,
                &inputs.packages.planned_packages().library_dirs,
                &inputs.options.env,
            ),
            // The base image's own programs, unmixed with Nix's: its
            // maintainer scripts expect its tools and libraries.
            None => sandbox::phase_environment(&PhaseEnvironment::default()),
        };
        let directories = step
            .phase
            .and_then(|(_, phase)| phase.cache_directories.clone())
            .unwrap_or_default();
        let key = match &self.phase_cache {
            Some(_) => PhaseKey {
                name,
                commands: &step.commands,
                env: &env,
                store_paths: &self.closure_paths,
                cache_directories: &directories,
                app_files: &phase_cache::hash_folder(&view)?,
                earlier: &done.keys,
                base: &self.base_key,
            }
            .digest(),
            None => String::new(),
        };
        if let Some(cache) = &self.phase_cache {
            let local = cache.lookup(&key);
            let from_repo = local.is_none();
            let found = local.or_else(|| {
                inputs
                    .remote
                    .and_then(|remote| remote.phase(&key, name, cache, inputs.layers, inputs.work))
            });
            if let Some(upper) = found {
                let place = match from_repo {
                    true => "the cache repo",
                    false => "phase cache",
                };
                inputs
                    .progress
                    .note(format!("phase {name}: cached ({place} {})", &key[..12]));
                let ran = RanPhase {
                    name: name.to_string(),
                    upper,
                    seconds: started.elapsed().as_secs_f64(),
                    cached: true,
                    from_repo,
                    key: key.clone(),
                };
                return Ok((ran, key));
            }
        }

        let upper = self.execute(number, step, &view, env, &directories, done)?;
        let upper = match &self.phase_cache {
            Some(cache) => cache.record(&key, name, &upper)?,
            None => upper,
        };
        let seconds = started.elapsed().as_secs_f64();
        inputs
            .progress
            .note(format!("phase {name}: ran in {seconds:.1}s"));
        let ran = RanPhase {
            name: name.to_string(),
            upper,
            seconds,
            cached: false,
            from_repo: false,
            key: key.clone(),
        };
        Ok((ran, key))
    }

    /// Runs `step`'s commands in the sandbox over the steps `done`; returns
    /// its diff.
    fn execute(
        &self,
        number: usize,
        step: Step<'_>,
        view: &Path,
        env: Vec<(String, String)>,
        directories: &[String],
        done: &Done,
    ) -> anyhow::Result<PathBuf> {
        let inputs = self.inputs;
        let name = step.name;
        let upper = inputs.work.join(format!("phase-{number}"));
        std::fs::create_dir(&upper)
            .with_context(|| format!("could not create {}", upper.display()))?;
        let mut sandbox = Sandbox::new(name, self.bash.clone(), upper, step.commands);
        sandbox.lowers = lowers(inputs, view, &done.uppers);
        sandbox.store_paths = inputs.packages.files()?.store_binds();
        sandbox.env = env;
        // The apt step runs the base image's own programs, which install
        // into the image's folders as they always do.
        if let Some((index, _)) = step.phase {
            let own_paths = image_paths(&inputs.phases[..=index]).len();
            global_prefix::apply(&mut sandbox.env, own_paths);
        }
        inputs.options.trust.apply(&mut sandbox);
        sandbox.cancel = Some(self.cancel.clone());
        sandbox.network = inputs.options.network;
        sandbox.output = inputs.progress.phase_output(name);
        if !inputs.options.no_cache && !directories.is_empty() {
            let build_cache = inputs.cache_root.join("build-cache");
            sandbox.caches = sandbox::cache_binds(&build_cache, &self.cache_key, directories)
                .with_context(|| {
                    format!("phase {name}: could not prepare its cache directories")
                })?;
        }
        let _spinner = inputs.progress.spinner(&format!("phase {name}"));
        let diff = sandbox.run().map_err(|err| {
            let hint = match &err {
                sandbox::SandboxError::CommandFailed { last_lines, .. } => {
                    global_prefix::store_write_hint(last_lines)
                }
                _ => None,
            };
            let err = anyhow::Error::new(err);
            match hint {
                Some(hint) => err.context(format!("phase {name} failed: {hint}")),
                None => err.context(format!("phase {name} failed")),
            }
        })?;
        if self.cancel.load(Ordering::SeqCst) {
            bail!("interrupted during phase {name}");
        }
        Ok(diff.upper)
    }

    /// The app as step `number` sees it: only the files a phase's commands
    /// read when that is known, nothing for the apt step (upstream installs
    /// apt packages before it copies the app in), else all of it.
    fn view(&self, number: usize, step: &Step<'_>) -> anyhow::Result<PathBuf> {
        let inputs = self.inputs;
        let name = step.name;
        let Some((_, phase)) = step.phase else {
            let view = inputs.work.join(format!("view-{number}"));
            std::fs::create_dir_all(view.join("app"))
                .with_context(|| format!("could not create {}", view.display()))?;
            return Ok(view);
        };
        let app = inputs.app_root.join("app");
        let Some(files) = app_view::phase_files(phase, &app) else {
            let commands = phase.cmds.as_deref().unwrap_or_default();
            if let (Some(_), Some(part)) = (
                &phase.only_include_files,
                app_view::installs_the_project(commands, &app),
            ) {
                inputs.progress.note(format!(
                    "phase {name}: sees the whole app, not only its onlyIncludeFiles: `{part}` installs the project itself"
                ));
            }
            return Ok(inputs.app_root.to_path_buf());
        };
        let view = inputs.work.join(format!("view-{number}"));
        app_files::stage_selected(inputs.app_root, &view, &files)
            .with_context(|| format!("phase {name}: could not stage its files"))?;
        inputs.progress.note(format!(
            "phase {name}: sees only {} of the app",
            files.join(", ")
        ));
        Ok(view)
    }
}

/// The environment commands run with after `phases` (the last one's):
/// the plan's `variables`, `overrides` (`--env`) over them, the phases'
/// `paths` and the packages' `bin_dirs` on `PATH`, their `library_dirs`.
pub fn phase_environment(
    plan: &BuildPlan,
    phases: &[&Phase],
    bin_dirs: &[String],
    library_dirs: &[String],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let variables: Vec<(String, String)> = plan
        .variables
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sandbox::phase_environment(&PhaseEnvironment {
        variables: &variables,
        overrides,
        paths: &image_paths(phases),
        profile: bin_dirs,
        libraries: library_dirs,
        metadata: None,
    })
}

/// A sandbox's lower folders, lowest first: the base image's files, the
/// base files, `view` (the app as the step sees it), then the diffs of the
/// steps before.
pub fn lowers(inputs: &PhaseInputs<'_>, view: &Path, uppers: &[PathBuf]) -> Vec<PathBuf> {
    let mut lowers: Vec<PathBuf> = inputs
        .base_image
        .map(|image| image.root.clone())
        .into_iter()
        .collect();
    lowers.push(inputs.base.to_path_buf());
    lowers.push(view.to_path_buf());
    lowers.extend(uppers.iter().cloned());
    lowers
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
