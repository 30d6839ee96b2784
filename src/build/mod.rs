//! `kiln build`: an app folder to an image. Plan, resolve and realize the
//! packages, run the phases in the sandbox, pack, then write or push.
//!
//! Each stage is a module with one job; this one wires them and reports.

mod app_files;
mod app_view;
mod assemble;
mod base_image;
pub mod packages;
mod phase_cache;
mod phases;
mod progress;
mod root_folder;
mod run_image;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::json;

use crate::cli::{self, BuildCommand, GlobalArgs};
use crate::image::{self, Destination};
use crate::layer::{Compression, Format, LayerCache, PackSettings};
use crate::output::outln;
use crate::registry::{self, PushRequest, RegistryConfig};
pub use progress::human_size;
use progress::Progress;

/// Carries out `kiln build`.
pub fn run(global: &GlobalArgs, command: &BuildCommand) -> anyhow::Result<()> {
    let progress = Progress::new(global.quiet);
    let args = &command.plan;
    let generated = kiln_providers::generate(&args.dir, &crate::plan::options(args)?)
        .with_context(|| format!("could not plan {}", args.dir.display()))?;
    for warning in &generated.warnings {
        tracing::warn!("{warning}");
    }
    let plan = generated.plan;
    let app_dir = generated.app_dir.clone();
    let ordered = plan
        .phases_in_order()
        .with_context(|| format!("the plan of {} cannot be built", app_dir.display()))?;
    refuse_unsupported(&plan, &ordered, command)?;
    let name = image_name(command, &app_dir);
    let destination = destination(command, &name)?;
    progress.stage(
        "plan",
        format!(
            "{} phases: {}",
            ordered.len(),
            ordered
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );

    let cache_root = crate::cache::cache_dir(global.cache_dir.as_deref())?;
    let base_image = base_image::build_base(&plan, command)
        .map(|reference| pull_base(&reference, "base image", command, &cache_root, &progress))
        .transpose()?;
    refuse_apt_without_apt(&ordered, base_image.as_ref())?;
    let fetch_bar = progress.fetch_bar();
    let packages = packages::realize(&ordered, &command.store, &cache_root, &app_dir, &fetch_bar)?;
    drop(fetch_bar);
    progress.stage(
        "packages",
        format!(
            "{} store paths, {} ({} downloaded)",
            packages.closure.paths.len(),
            progress::human_size(packages.closure.total_nar_size()),
            packages.closure.downloaded()
        ),
    );

    let scratch_parent = cache_root.join("build-work");
    std::fs::create_dir_all(&scratch_parent)
        .with_context(|| format!("could not create {}", scratch_parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&scratch_parent)
        .with_context(|| {
            format!(
                "could not create a work folder in {}",
                scratch_parent.display()
            )
        })?;
    let first_paths = phases::image_paths(&ordered);
    let base = root_folder::base(
        &packages.everything(),
        &scratch.path().join("base"),
        base_image.as_ref().map(|image| root_folder::OnImage {
            root: &image.root,
            first_paths: &first_paths,
        }),
    )?;
    let app_root = scratch.path().join("app");
    let copied = app_files::stage(&app_dir, &app_root, plan.static_assets.as_ref())?;
    progress.stage("app", format!("{copied} files copied to /app"));

    let settings = pack_settings(&command.layers)?;
    let cache = LayerCache::open(&cache_root)
        .with_context(|| format!("could not open the layer cache in {}", cache_root.display()))?;
    let phase_inputs = phases::PhaseInputs {
        plan: &plan,
        phases: &ordered,
        packages: &packages,
        base_image: base_image.as_ref(),
        base: &base.dir,
        app_root: &app_root,
        work: scratch.path(),
        cache_root: &cache_root,
        command,
        progress: &progress,
    };
    let ran = phases::run_all(&phase_inputs)?;

    let cached = ran.iter().filter(|p| p.cached).count();
    progress.stage(
        "phases",
        format!("{} ran, {cached} from the phase cache", ran.len() - cached),
    );

    let built = match base_image::run_base(&plan) {
        None => assemble::image(&assemble::ImageInputs {
            plan: &plan,
            packages: &packages.everything(),
            library_dirs: &packages.library_dirs,
            base_image: base_image.as_ref(),
            base: &base,
            app_root: &app_root,
            phases: &ran,
            cache: &cache,
            settings: &settings,
            command,
            progress: &progress,
        })?,
        Some(run_reference) => run_image::image(
            &phase_inputs,
            &ran,
            run_reference,
            &first_paths,
            &cache,
            &settings,
        )?,
    };
    progress.stage(
        "pack",
        format!(
            "{} layers, {} compressed",
            built.image.layers.len(),
            progress::human_size(built.compressed_size())
        ),
    );

    if let Some(destination) = &destination {
        let spinner = progress.spinner(&format!("output: writing {}", describe(destination)));
        image::write(&built.image, destination, &command.output.tag)
            .with_context(|| format!("could not write the image to {}", describe(destination)))?;
        drop(spinner);
        progress.stage("output", format!("wrote {}", describe(destination)));
    }
    let pushed = match &command.output.push {
        Some(reference) => Some(push(
            &built.image,
            reference,
            command,
            scratch.path(),
            &progress,
        )?),
        None => None,
    };
    if let Some(pushed) = &pushed {
        progress.stage("push", format!("pushed {pushed}"));
    }

    if global.json {
        let phases: Vec<_> = ran
            .iter()
            .map(|p| json!({"name": p.name, "cached": p.cached, "seconds": p.seconds}))
            .collect();
        outln!(
            "{}",
            json!({
                "name": name,
                "digest": built.image.manifest_digest,
                "output": destination.as_ref().map(describe),
                "pushed": pushed,
                "layers": built
                    .image
                    .layers
                    .iter()
                    .map(|l| json!({"digest": l.digest, "size": l.size, "holds": l.description}))
                    .collect::<Vec<_>>(),
                "compressedSize": built.compressed_size(),
                "uncompressedSize": built.uncompressed_size(),
                "phases": phases,
                "stages": progress.stages_json(),
            })
        );
    } else {
        progress.summary(&name, &built, &ran);
        outln!("{}", built.image.manifest_digest);
    }
    Ok(())
}

/// What this version refuses instead of building something else than asked.
fn refuse_unsupported(
    plan: &kiln_providers::BuildPlan,
    phases: &[&kiln_providers::Phase],
    command: &BuildCommand,
) -> anyhow::Result<()> {
    let apt = phases::apt_packages(phases);
    if !apt.is_empty() && base_image::build_base(plan, command).is_none() {
        bail!(
            "the plan asks for apt packages ({}), which need a Debian or Ubuntu base image; kiln's own base has no apt. Set one with --base-image (or `buildImage` in nixpacks.toml), or use Nix packages (`nixPkgs`) instead",
            apt.join(", ")
        );
    }
    if let Some(bad) = apt.iter().find(|name| !is_apt_package_name(name)) {
        bail!("`{bad}` in aptPkgs is not a Debian package name (letters, digits and + . - with an optional =version, :arch or /release)");
    }
    if let Some(platform) = &command.output.platform {
        let here = host_platform();
        if platform != &here {
            bail!("--platform {platform}: kiln builds only for the running machine's platform, {here}");
        }
    }
    Ok(())
}

/// The apt packages go into a shell command, so only names apt itself
/// accepts pass.
fn is_apt_package_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-=:~_/".contains(c))
}

/// `aptPkgs` on a base image that has no apt.
fn refuse_apt_without_apt(
    phases: &[&kiln_providers::Phase],
    base_image: Option<&base_image::BaseImage>,
) -> anyhow::Result<()> {
    match base_image {
        Some(image) if !phases::apt_packages(phases).is_empty() && !image.has_apt() => bail!(
            "the plan asks for apt packages, but the base image {} has no apt-get; build on a Debian or Ubuntu image",
            image.reference
        ),
        _ => Ok(()),
    }
}

/// Pulls the image `reference` serves as (`what`) and reports it.
fn pull_base(
    reference: &str,
    what: &str,
    command: &BuildCommand,
    cache_root: &Path,
    progress: &Progress,
) -> anyhow::Result<base_image::BaseImage> {
    let spinner = progress.spinner(&format!("{what}: pulling {reference}"));
    let image = base_image::pull(reference, command, cache_root)?;
    drop(spinner);
    progress.stage(
        what,
        format!(
            "{reference}: {} layers, {}",
            image.layers.len(),
            image.digest
        ),
    );
    Ok(image)
}

/// The running machine's platform as OCI names it (`linux/amd64`).
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

fn image_name(command: &BuildCommand, app_dir: &Path) -> String {
    command.output.name.clone().unwrap_or_else(|| {
        app_dir
            .canonicalize()
            .ok()
            .and_then(|dir| dir.file_name().map(|n| n.to_string_lossy().to_lowercase()))
            .unwrap_or_else(|| "app".to_string())
    })
}

/// Where the image is written: `--output`, else (without `--push`) an OCI
/// archive named after the image in the current folder.
fn destination(command: &BuildCommand, name: &str) -> anyhow::Result<Option<Destination>> {
    let text = match (&command.output.output, &command.output.push) {
        (Some(text), _) => text.clone(),
        (None, Some(_)) => return Ok(None),
        (None, None) => format!("oci-archive:{}.oci.tar", name.replace('/', "_")),
    };
    Ok(Some(text.parse().with_context(|| {
        format!("--output {text} is not a destination kiln can write")
    })?))
}

fn describe(destination: &Destination) -> String {
    match destination {
        Destination::OciLayout { dir, tag } => with_tag("oci", dir, tag.as_deref()),
        Destination::OciArchive { file, tag } => with_tag("oci-archive", file, tag.as_deref()),
        Destination::DockerArchive { file, reference } => {
            with_tag("docker-archive", file, reference.as_deref())
        }
    }
}

fn with_tag(transport: &str, path: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{transport}:{}:{tag}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

fn pack_settings(args: &cli::LayerArgs) -> anyhow::Result<PackSettings> {
    let format = match args.compression {
        cli::Compression::Gzip => Format::Gzip,
        cli::Compression::Zstd => Format::Zstd,
    };
    Ok(PackSettings {
        compression: Compression::new(format, args.compression_level)?,
        source_date_epoch: PackSettings::source_date_epoch_from_env()?,
    })
}

/// Pushes through an OCI layout in the work folder, which the registry
/// module streams blobs from.
fn push(
    image: &image::Image,
    reference: &str,
    command: &BuildCommand,
    work: &Path,
    progress: &Progress,
) -> anyhow::Result<String> {
    const LAYOUT_TAG: &str = "kiln-push";
    let layout: PathBuf = work.join("push-layout");
    let spinner = progress.spinner("push: staging the image");
    image::write(
        image,
        &Destination::OciLayout {
            dir: layout.clone(),
            tag: Some(LAYOUT_TAG.to_string()),
        },
        &[],
    )
    .context("could not stage the image for pushing")?;
    drop(spinner);
    let config =
        RegistryConfig::from_args(&command.output.registry, &command.output.insecure_registry);
    let outcome = registry::push_layout_with_progress(
        &config,
        &PushRequest {
            layout: &layout,
            layout_tag: Some(LAYOUT_TAG),
            destination: reference,
            extra_tags: &command.output.tag,
            mount_from: &[],
        },
        Arc::new(progress.push_bar()),
    )
    .with_context(|| format!("could not push the image to {reference}"))?;
    Ok(outcome.to_string())
}
