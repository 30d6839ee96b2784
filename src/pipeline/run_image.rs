//! `start.runImage`: the app runs in an image of its own that holds only
//! kiln's base packages, the plan's libraries and `start.onlyIncludeFiles`
//! from the built `/app`, as upstream's slim images do. The files are
//! copied out of the last phase's view by one more sandbox run, so the
//! phases' diffs (deletions included) are applied the way the phases saw
//! them.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

use super::assemble::{self, ImageOptions};
use super::base_image::BaseImage;
use super::phases::{self, PhaseInputs, RanPhase};
use super::root_folder;
use crate::image::Image;
use crate::layer::{profile, LayerCache};
use crate::sandbox::{self, shell_quote, Network, PhaseEnvironment, Sandbox};

/// Folder of the export run's diff that holds what the run image keeps.
const EXPORT_DIR: &str = "kiln-export";

/// The run image: the pulled `run_image` (or kiln's own base for `None`),
/// the runtime packages, and `start.onlyIncludeFiles` of the app the
/// phases in `ran` built.
pub fn image(
    inputs: &PhaseInputs<'_>,
    ran: &[RanPhase],
    run_image: Option<&BaseImage>,
    first_paths: &[String],
    cache: &LayerCache,
    options: &ImageOptions,
) -> anyhow::Result<Image> {
    let files = inputs
        .plan
        .start_phase
        .as_ref()
        .and_then(|start| start.only_include_files.as_deref())
        .filter(|files| !files.is_empty());
    let kept = export_files(inputs, ran, files)?;
    let packages = inputs.packages.files()?;
    let runtime = packages.runtime();
    let (profile_tree, _) = profile(&runtime.roots)?;
    let run_base = root_folder::base(
        &runtime,
        &inputs.work.join("run-base"),
        run_image.map(|image| root_folder::OnImage {
            root: &image.root,
            first_paths,
        }),
    )?;
    inputs.progress.stage(
        "run image",
        format!(
            "{} store paths and {} of /app",
            runtime.paths.len(),
            files.map_or("all".to_string(), |f| f.join(", "))
        ),
    );
    let (image, _) = assemble::image(&assemble::ImageInputs {
        plan: inputs.plan,
        packages: &runtime,
        library_dirs: &packages.library_dirs,
        base_image: run_image,
        base: &run_base,
        app_root: &kept,
        phases: &[],
        profile: &profile_tree,
        files: None,
        remote: None,
        cache,
        options,
        progress: inputs.progress,
    })?;
    Ok(image)
}

/// Copies `files` (relative to `/app`; `None` for all of it) out of the
/// built app. Returns a folder holding `app/` with those files.
fn export_files(
    inputs: &PhaseInputs<'_>,
    ran: &[RanPhase],
    files: Option<&[String]>,
) -> anyhow::Result<PathBuf> {
    let packages = inputs.packages.files()?;
    let bash = packages
        .bash()
        .context("no package of the build has bin/bash, which copies the run image's files")?;
    let upper = inputs.work.join("run-image-files");
    std::fs::create_dir(&upper).with_context(|| format!("could not create {}", upper.display()))?;
    let uppers: Vec<PathBuf> = ran.iter().map(|phase| phase.upper.clone()).collect();
    let mut sandbox = Sandbox::new(
        "run image files",
        bash,
        upper.clone(),
        vec![copy_command(files)?],
    );
    sandbox.lowers = phases::lowers(inputs, inputs.app_root, &uppers);
    sandbox.store_paths = packages.store_binds();
    sandbox.env = sandbox::phase_environment(&PhaseEnvironment {
        profile: &packages.bin_dirs(),
        ..PhaseEnvironment::default()
    });
    sandbox.network = Network::None;
    sandbox
        .run()
        .context("could not copy start.onlyIncludeFiles out of the built app")?;
    Ok(upper.join(EXPORT_DIR))
}

/// The shell command that copies `files` from `/app` to the export folder,
/// keeping their paths. It runs inside the sandbox, so a symlink in the
/// built app resolves against the sandbox's own root, never the host's:
/// the host files there are read-only binds the build phases can read
/// anyway, and `cp -a` copies links as links and FIFOs as FIFOs without
/// reading them.
fn copy_command(files: Option<&[String]>) -> anyhow::Result<String> {
    let target = format!("/{EXPORT_DIR}/app");
    let mut steps = vec![format!("mkdir -p {target}")];
    match files {
        None => steps.push(format!("cp -a /app/. {target}/")),
        Some(files) => {
            for file in files {
                let relative = relative_to_app(file)?;
                if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
                    steps.push(format!(
                        "mkdir -p {}",
                        shell_quote(&format!("{target}/{}", parent.display()))
                    ));
                }
                steps.push(format!(
                    "cp -a {} {}",
                    shell_quote(&format!("/app/{}", relative.display())),
                    shell_quote(&format!("{target}/{}", relative.display()))
                ));
            }
        }
    }
    Ok(steps.join(" && "))
}

/// `file` as a path inside `/app` (`./out`, `/app/out` and `out` alike).
fn relative_to_app(file: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(file);
    let path = path.strip_prefix("/app").unwrap_or(path);
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            _ => bail!("start.onlyIncludeFiles: `{file}` is not a path inside /app"),
        }
    }
    if relative.as_os_str().is_empty() {
        bail!("start.onlyIncludeFiles: `{file}` names no file inside /app");
    }
    Ok(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_their_paths_and_cannot_leave_app() {
        let files = ["out".to_string(), "/app/static/site dir".to_string()];
        let command = copy_command(Some(&files)).unwrap();
        assert!(
            command.contains("cp -a /app/out /kiln-export/app/out"),
            "{command}"
        );
        assert!(
            command.contains("mkdir -p /kiln-export/app/static && cp -a '/app/static/site dir' '/kiln-export/app/static/site dir'"),
            "{command}"
        );
        assert!(copy_command(None)
            .unwrap()
            .contains("cp -a /app/. /kiln-export/app/"));
        for bad in ["../etc/passwd", "/etc/passwd", ".", "a/../../b"] {
            assert!(copy_command(Some(&[bad.to_string()])).is_err(), "{bad}");
        }
    }
}
