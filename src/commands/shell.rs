//! `kiln shell`: a command or an interactive bash in the build sandbox of
//! an app, with the packages and environment its plan gives the phases.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::args::{existing_dir, Network, PlanArgs, StoreArgs, TrustArgs};
use super::{GlobalArgs, UsageError};
use crate::pipeline;
use crate::report::Progress;
use crate::resolve::{self, Packages};
use crate::sandbox::{self, shell_quote, Output, Sandbox, StoreBind};

/// `kiln shell`.
///
/// The app is planned as `kiln build` plans it: its packages are fetched
/// and mounted, its phases' variables, `paths` and libraries are set, and
/// kiln's base files are beneath it. The app folder appears at `/app`,
/// copy-on-write, and what the commands write is thrown away unless
/// `--upper` keeps it.
#[derive(Debug, Args)]
pub struct ShellCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub trust: TrustArgs,

    /// One more store path to mount read-only at its place in `/nix/store`,
    /// besides the plan's packages; its `bin` folder goes first on PATH.
    /// Repeat for more (name every path of its closure).
    #[arg(long = "store-path", value_name = "STORE_PATH")]
    pub store_paths: Vec<PathBuf>,

    /// A root folder under the app (an earlier phase's upper folder, say),
    /// above kiln's base files. Repeat, lowest first.
    #[arg(long, value_name = "DIR")]
    pub base: Vec<PathBuf>,

    /// Keep what the commands write (the overlay's upper folder: new and
    /// changed files, whiteouts for deletions) in this empty folder instead
    /// of throwing it away; writes under `/app`, the app folder shown
    /// copy-on-write, are not kept. It never goes into an image.
    #[arg(long, value_name = "DIR")]
    pub upper: Option<PathBuf>,

    /// Network for the commands: the host's, or none at all. Default: the
    /// app's `[kiln] network`, else `host`.
    #[arg(long, value_enum)]
    pub network: Option<Network>,

    /// Kill the shell and everything it started after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub phase_timeout: Option<u64>,

    /// Command to run instead of an interactive bash (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Plans the app, fetches its packages and runs the shell.
pub fn run(global: &GlobalArgs, args: &ShellCommand) -> anyhow::Result<()> {
    let extra = store_binds(&args.store_paths)?;
    let lowers = args
        .base
        .iter()
        .map(|base| existing_dir("--base", base))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Before fetching anything: can this machine run the sandbox at all?
    sandbox::preflight::check()?;
    let generated = args.plan.generate()?;
    let phases = generated
        .plan
        .phases_in_order()
        .with_context(|| format!("the plan of {} cannot be built", args.plan.dir.display()))?;
    let cache_root = global.cache_root()?;
    let sources = args.store.sources()?;
    let wanted = resolve::resolve_plan(&phases, &sources, &generated.app_dir, &cache_root)?;
    let progress = Progress::new(global.quiet);
    let packages = resolve::realize(&wanted, &sources, &cache_root, &progress.fetch_bar())?;

    let work = tempfile::Builder::new()
        .prefix("kiln-shell-")
        .tempdir()
        .context("could not create a temporary folder for the shell")?;
    let base = pipeline::base_folder(&packages, &work.path().join("base"))?;
    let upper = upper_folder(args.upper.as_deref(), work.path())?;
    let bash = packages
        .bash()
        .context("no package of the plan has bin/bash, which runs the shell")?;
    let mut env = pipeline::phase_environment(
        &generated.plan,
        &phases,
        &packages.bin_dirs(),
        &packages.library_dirs,
        &args.plan.env.pairs()?,
    );
    pipeline::global_prefix::apply(&mut env, pipeline::image_paths(&phases).len());
    prepend_bins(&mut env, &extra);
    let command = if args.command.is_empty() {
        format!("exec {} -i", bash.display())
    } else {
        args.command
            .iter()
            .map(|arg| shell_quote(arg))
            .collect::<Vec<_>>()
            .join(" ")
    };

    let mut shell = Sandbox::new("shell", bash, upper, vec![command]);
    shell.lowers = std::iter::once(base).chain(lowers).collect();
    shell.store_paths = store_paths(&packages, extra);
    shell.app_source = Some(
        generated
            .app_dir
            .canonicalize()
            .with_context(|| format!("app folder {}", generated.app_dir.display()))?,
    );
    shell.env = env;
    args.trust.trust()?.apply(&mut shell);
    shell.network = Network::choose(args.network, &generated.kiln).into();
    shell.timeout = args.phase_timeout.map(std::time::Duration::from_secs);
    shell.output = Output::Inherit;
    // The terminal's Ctrl-C reaches kiln alone (the shell has a session of
    // its own, without the terminal as its controlling one); kiln passes it
    // on to the shell's processes and waits for them, as `system` does.
    sandbox::forward_interrupts().context("could not pass Ctrl-C on to the shell")?;
    shell.run()?;
    Ok(())
}

/// `--upper`, created when missing, else a folder in `work` thrown away
/// with it.
fn upper_folder(upper: Option<&Path>, work: &Path) -> anyhow::Result<PathBuf> {
    match upper {
        Some(upper) => {
            std::fs::create_dir_all(upper)
                .with_context(|| format!("could not create {}", upper.display()))?;
            existing_dir("--upper", upper)
        }
        None => {
            let upper = work.join("upper");
            std::fs::create_dir(&upper).context("could not create the shell's upper folder")?;
            Ok(upper)
        }
    }
}

/// The plan's closure and the `--store-path` additions, each once.
fn store_paths(packages: &Packages, extra: Vec<StoreBind>) -> Vec<StoreBind> {
    let mut binds = packages.store_binds();
    for bind in extra {
        if !binds.iter().any(|b| b.name == bind.name) {
            binds.push(bind);
        }
    }
    binds
}

/// Puts the `bin` folders of the `--store-path` additions first on `PATH`.
fn prepend_bins(env: &mut [(String, String)], extra: &[StoreBind]) {
    let bins: Vec<String> = extra
        .iter()
        .filter(|bind| bind.host.join("bin").is_dir())
        .map(|bind| format!("/nix/store/{}/bin", bind.name))
        .collect();
    if bins.is_empty() {
        return;
    }
    if let Some((_, path)) = env.iter_mut().find(|(key, _)| key == "PATH") {
        *path = format!("{}:{path}", bins.join(":"));
    }
}

fn store_binds(paths: &[PathBuf]) -> anyhow::Result<Vec<StoreBind>> {
    paths
        .iter()
        .map(|path| {
            let name = path
                .strip_prefix("/nix/store")
                .ok()
                .filter(|rest| rest.components().count() == 1)
                .and_then(|rest| rest.to_str())
                .ok_or_else(|| {
                    UsageError(format!(
                        "--store-path {} is not a path directly in /nix/store",
                        path.display()
                    ))
                })?;
            if !path.exists() {
                return Err(UsageError(format!(
                    "--store-path {} does not exist on this machine",
                    path.display()
                ))
                .into());
            }
            Ok(StoreBind {
                host: path.clone(),
                name: name.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_must_be_directly_in_the_store() {
        for bad in ["/etc", "/nix/store/a/b", "/nix/store", "relative"] {
            assert!(store_binds(&[PathBuf::from(bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn added_store_paths_go_first_on_path() {
        let store = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(store.path().join("bin")).unwrap();
        let extra = [StoreBind {
            host: store.path().to_path_buf(),
            name: "abc-tool".into(),
        }];
        let mut env = vec![("PATH".to_string(), "/bin".to_string())];
        prepend_bins(&mut env, &extra);
        assert_eq!(env[0].1, "/nix/store/abc-tool/bin:/bin");
    }
}
