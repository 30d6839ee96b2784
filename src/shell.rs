//! `kiln shell`: a command or an interactive bash in the build sandbox.
//!
//! Planning is not wired in yet, so the packages come as store paths on the
//! command line; the sandbox part is the one `kiln build` will use.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::signal::{signal, SigHandler, Signal};

use crate::cli::ShellCommand;
use crate::sandbox::{self, Output, PhaseEnvironment, Sandbox, StoreBind};
use crate::NotYetAvailable;

/// A command line `kiln shell` cannot act on; ends kiln with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Runs `kiln shell`.
pub fn run(args: &ShellCommand) -> anyhow::Result<()> {
    let plan = &args.plan;
    let plans = !plan.pkgs.is_empty()
        || !plan.apt.is_empty()
        || !plan.libs.is_empty()
        || plan.install_cmd.is_some()
        || plan.build_cmd.is_some()
        || plan.start_cmd.is_some()
        || plan.config.is_some()
        || plan.json_plan.is_some();
    if plans {
        return Err(NotYetAvailable {
            command: "shell with plan options",
            arrives_with: "the plan engine",
        }
        .into());
    }
    if args.store_paths.is_empty() {
        return Err(UsageError(
            "planning the app's packages in `kiln shell` is not available in this version of kiln yet; pass every store path of the packages' closure with --store-path (e.g. from `nix-store -qR`); nothing was done".into(),
        )
        .into());
    }
    let app = plan
        .dir
        .canonicalize()
        .with_context(|| format!("app folder {}", plan.dir.display()))?;
    let store_paths = store_binds(&args.store_paths)?;
    let bash = store_paths
        .iter()
        .map(|s| Path::new("/nix/store").join(&s.name).join("bin/bash"))
        .find(|bash| bash.is_file())
        .ok_or_else(|| UsageError("no store path given with --store-path has bin/bash; add the bash package and its closure".into()))?;
    let profile: Vec<String> = store_paths
        .iter()
        .map(|s| Path::new("/nix/store").join(&s.name).join("bin"))
        .filter(|bin| bin.is_dir())
        .map(|bin| bin.display().to_string())
        .collect();
    let overrides = env_overrides(&plan.env)?;
    let env = sandbox::phase_environment(&PhaseEnvironment {
        overrides: &overrides,
        profile: &profile,
        ..PhaseEnvironment::default()
    });

    let scratch;
    let upper = match &args.upper {
        Some(upper) => {
            std::fs::create_dir_all(upper)
                .with_context(|| format!("could not create {}", upper.display()))?;
            upper
                .canonicalize()
                .with_context(|| format!("upper folder {}", upper.display()))?
        }
        None => {
            scratch = tempfile::Builder::new()
                .prefix("kiln-shell-")
                .tempdir()
                .context("could not create a temporary folder for the shell's writes")?;
            let upper = scratch.path().join("upper");
            std::fs::create_dir(&upper).context("could not create the shell's upper folder")?;
            upper
        }
    };
    let command = if args.command.is_empty() {
        format!("exec {} -i", bash.display())
    } else {
        args.command
            .iter()
            .map(|arg| shell_quote(arg))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lowers = args
        .base
        .iter()
        .map(|base| {
            base.canonicalize()
                .with_context(|| format!("base folder {}", base.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut shell = Sandbox::new("shell", bash, upper, vec![command]);
    shell.lowers = lowers;
    shell.store_paths = store_paths;
    shell.app_source = Some(app);
    shell.env = env;
    shell.network = args.network.into();
    shell.timeout = args.phase_timeout.map(std::time::Duration::from_secs);
    shell.output = Output::Inherit;
    // The terminal's Ctrl-C goes to the command in the sandbox, which
    // shares kiln's process group; kiln waits for it, as `system` does.
    // SAFETY: ignoring a signal installs no handler.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGQUIT, SigHandler::SigIgn);
    }
    shell.run()?;
    Ok(())
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

/// `--env` values: `KEY=VALUE`, or `KEY` to pass kiln's own value on.
pub(crate) fn env_overrides(values: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            Some(_) => Err(UsageError(format!("--env {item:?} has no name before `=`")).into()),
            None => std::env::var(item)
                .map(|value| (item.clone(), value))
                .map_err(|_| {
                    UsageError(format!(
                        "--env {item} names a variable kiln's environment does not have; use {item}=VALUE"
                    ))
                    .into()
                }),
        })
        .collect()
}

/// `arg` quoted for bash, so `kiln shell -- CMD ARGS` runs exactly CMD ARGS.
pub(crate) fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_arguments_whole() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn env_values_and_bad_names() {
        let parsed = env_overrides(&["A=1=2".to_string()]).unwrap();
        assert_eq!(parsed, [("A".to_string(), "1=2".to_string())]);
        assert!(env_overrides(&["=x".to_string()]).is_err());
        assert!(env_overrides(&["KILN_SURELY_UNSET_VARIABLE".to_string()]).is_err());
    }

    #[test]
    fn store_paths_must_be_directly_in_the_store() {
        for bad in ["/etc", "/nix/store/a/b", "/nix/store", "relative"] {
            assert!(store_binds(&[PathBuf::from(bad)]).is_err(), "{bad}");
        }
    }
}
