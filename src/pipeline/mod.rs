//! The build pipeline: wires the stages one way, plan → packages
//! (`crate::resolve`, `kiln-store`) → phases in the sandbox → pack
//! (`crate::layer`, `crate::image`) → output (writers, `crate::registry`).
//!
//! [`build`] turns a planned app into a delivered image; [`pack()`] turns
//! realized packages into one. Both take plain option structs: nothing here
//! knows the command line, and what they report goes through a
//! [`Progress`].

mod app_files;
mod app_view;
mod assemble;
mod base_image;
mod deliver;
pub mod global_prefix;
mod pack;
mod phase_cache;
mod phases;
mod root_folder;
mod run_image;
mod sbom;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kiln_providers::{GeneratedPlan, Phase};

use crate::cache::records::WorkDir;
use crate::image::Image;
use crate::layer::LayerCache;
use crate::registry::RegistryConfig;
use crate::report::{human_size, Progress};
use crate::resolve::{self, PackageSources, Packages};
use crate::sandbox::{HostTrust, Network};

pub use assemble::{image_path, ImageOptions};
pub use deliver::{deliver, push_image, Delivered, Delivery, Target};
pub use pack::{pack, PackOptions};
pub use phases::{apt_packages, image_paths, phase_environment, RanPhase};
pub use sbom::attach_sbom;

/// What a build needs besides the plan.
pub struct BuildOptions {
    /// The image's name (summary, default output file).
    pub name: String,
    /// Where the packages come from.
    pub sources: PackageSources,
    /// How layers are packed and the config labels.
    pub image: ImageOptions,
    /// Image to build on instead of kiln's own base (`--base-image`); the
    /// plan's `buildImage` otherwise.
    pub base_image: Option<String>,
    /// How the phases run.
    pub phases: PhaseOptions,
    /// How registries are reached, for pulls and pushes.
    pub registry: RegistryConfig,
    /// Where the image goes.
    pub delivery: Delivery,
    /// kiln's cache folder.
    pub cache_root: PathBuf,
    /// Attach an SBOM to the image (`--no-sbom` turns it off).
    pub sbom: bool,
}

/// How a build's phases run.
#[derive(Debug, Clone)]
pub struct PhaseOptions {
    /// `--env` variables, over the plan's.
    pub env: Vec<(String, String)>,
    /// Network for build commands.
    pub network: Network,
    /// Which `cacheDirectories` to share (`None`: the app's own, keyed by
    /// its folder; see [`crate::sandbox::app_cache_key`]).
    pub cache_key: Option<String>,
    /// No phase cache and no `cacheDirectories`.
    pub no_cache: bool,
    /// The host's CA bundle and proxy variables, given to every phase but
    /// kept out of cache keys and the image.
    pub trust: HostTrust,
}

/// A finished build.
pub struct Built {
    /// The image.
    pub image: Image,
    /// Every phase (and the apt step), in order.
    pub phases: Vec<RanPhase>,
    /// Where it went.
    pub delivered: Delivered,
    /// What each layer packed anew holds; layers from the cache are not in it.
    pub packed: Vec<String>,
}

/// Builds the planned app in `generated` into an image and delivers it.
pub fn build(
    generated: &GeneratedPlan,
    options: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<Built> {
    let plan = &generated.plan;
    let app_dir = &generated.app_dir;
    let ordered = plan
        .phases_in_order()
        .with_context(|| format!("the plan of {} cannot be built", app_dir.display()))?;
    let base_reference = base_image::build_base(plan, options.base_image.as_deref());
    refuse_unsupported(&ordered, base_reference.is_some())?;
    let names: Vec<&str> = ordered.iter().map(|p| p.name()).collect();
    progress.stage(
        "plan",
        format!("{} phases: {}", names.len(), names.join(", ")),
    );

    let cache_root = &options.cache_root;
    let base_image = base_reference
        .map(|reference| pull_base(&reference, "base image", options, progress))
        .transpose()?;
    refuse_apt_without_apt(&ordered, base_image.as_ref())?;
    let packages = realize_packages(&ordered, app_dir, options, progress)?;

    let scratch = work_folder(cache_root)?;
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
    let copied = app_files::stage(app_dir, &app_root, plan.static_assets.as_ref())?;
    progress.stage("app", format!("{copied} files copied to /app"));

    let phase_inputs = phases::PhaseInputs {
        plan,
        phases: &ordered,
        packages: &packages,
        base_image: base_image.as_ref(),
        base: &base.dir,
        app_dir,
        app_root: &app_root,
        work: scratch.path(),
        cache_root,
        options: &options.phases,
        progress,
    };
    let ran = phases::run_all(&phase_inputs)?;
    let cached = ran.iter().filter(|p| p.cached).count();
    progress.stage(
        "phases",
        format!("{} ran, {cached} from the phase cache", ran.len() - cached),
    );

    let cache = LayerCache::open(cache_root)
        .with_context(|| format!("could not open the layer cache in {}", cache_root.display()))?;
    let mut image = pack_image(&phase_inputs, &ran, &base, &first_paths, &cache, options)?;
    if options.sbom {
        let store_paths = match base_image::run_base(plan) {
            None => packages.everything().paths,
            Some(_) => packages.runtime().paths,
        };
        attach_sbom(
            &mut image,
            &options.name,
            &store_paths,
            Some(app_dir),
            progress,
        )?;
    }
    let delivered = deliver(
        &image,
        &options.delivery,
        &options.registry,
        &cache,
        progress,
    )?;
    Ok(Built {
        image,
        phases: ran,
        delivered,
        packed: cache.packed(),
    })
}

/// The pack stage of a build: the image the app was built in, or a run
/// image of its own when the plan asks for one (`start.runImage`).
fn pack_image(
    inputs: &phases::PhaseInputs<'_>,
    ran: &[RanPhase],
    base: &root_folder::Base,
    first_paths: &[String],
    cache: &LayerCache,
    options: &BuildOptions,
) -> anyhow::Result<Image> {
    let image = match base_image::run_base(inputs.plan) {
        None => assemble::image(&assemble::ImageInputs {
            plan: inputs.plan,
            packages: &inputs.packages.everything(),
            library_dirs: &inputs.packages.library_dirs,
            base_image: inputs.base_image,
            base,
            app_root: inputs.app_root,
            phases: ran,
            cache,
            options: &options.image,
            progress: inputs.progress,
        })?,
        Some(run_reference) => {
            let run_image = run_reference
                .map(|reference| pull_base(&reference, "run image", options, inputs.progress))
                .transpose()?;
            run_image::image(
                inputs,
                ran,
                run_image.as_ref(),
                first_paths,
                cache,
                &options.image,
            )?
        }
    };
    inputs.progress.stage(
        "pack",
        format!(
            "{} layers ({} packed, the rest from the layer cache), {} compressed",
            image.layers.len(),
            cache.packed().len(),
            human_size(image.compressed_size())
        ),
    );
    Ok(image)
}

/// kiln's base files for `packages`, written into the new folder `dir`:
/// the lowest folder of a sandbox outside a build (`kiln shell`).
pub fn base_folder(packages: &Packages, dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(root_folder::base(&packages.everything(), dir, None)?.dir)
}

/// Resolves and realizes the packages of `phases` and kiln's base packages,
/// with the packages bar.
fn realize_packages(
    phases: &[&Phase],
    app_dir: &Path,
    options: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<Packages> {
    let spinner = progress.spinner("packages: evaluating package names");
    let wanted = resolve::resolve_plan(phases, &options.sources, app_dir, &options.cache_root)?;
    drop(spinner);
    let fetch_bar = progress.fetch_bar();
    let packages = resolve::realize(&wanted, &options.sources, &options.cache_root, &fetch_bar)
        .context("could not fetch the plan's Nix packages")?;
    drop(fetch_bar);
    progress.stage(
        "packages",
        format!(
            "{} store paths, {} ({} downloaded)",
            packages.closure.paths.len(),
            human_size(packages.closure.total_nar_size()),
            packages.closure.downloaded()
        ),
    );
    Ok(packages)
}

/// A fresh folder under the cache for this build's staged files and
/// phase diffs; removed when dropped, and by the next prune when the build
/// is killed.
fn work_folder(cache_root: &Path) -> anyhow::Result<WorkDir> {
    let parent = cache_root.join("build-work");
    WorkDir::new(&parent, "build-")
        .with_context(|| format!("could not create a work folder in {}", parent.display()))
}

/// What this version refuses instead of building something else than asked.
fn refuse_unsupported(phases: &[&Phase], has_base_image: bool) -> anyhow::Result<()> {
    let apt = apt_packages(phases);
    if !apt.is_empty() && !has_base_image {
        bail!(
            "the plan asks for apt packages ({}), which need a Debian or Ubuntu base image; kiln's own base has no apt. Set one with --base-image (or `buildImage` in nixpacks.toml), or use Nix packages (`nixPkgs`) instead",
            apt.join(", ")
        );
    }
    if let Some(bad) = apt.iter().find(|name| !is_apt_package_name(name)) {
        bail!("`{bad}` in aptPkgs is not a Debian package name (letters, digits and + . - with an optional =version, :arch or /release)");
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
    phases: &[&Phase],
    base_image: Option<&base_image::BaseImage>,
) -> anyhow::Result<()> {
    match base_image {
        Some(image) if !apt_packages(phases).is_empty() && !image.has_apt() => bail!(
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
    options: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<base_image::BaseImage> {
    let spinner = progress.spinner(&format!("{what}: pulling {reference}"));
    let image = base_image::pull(reference, &options.registry, &options.cache_root)?;
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
