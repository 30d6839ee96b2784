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
mod build_packages;
pub mod cache_repo;
mod deliver;
pub mod global_prefix;
mod pack;
mod phase_cache;
mod phases;
mod provenance;
mod root_folder;
mod run_image;
mod sbom;
mod store_layers;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kiln_providers::{GeneratedPlan, Phase};

use crate::cache::records::WorkDir;
use crate::image::Image;
use crate::layer::{Layer, LayerCache};
use crate::registry::RegistryConfig;
use crate::report::{human_size, Progress};
use crate::resolve::{self, PackageSources, Packages};
use crate::sandbox::{HostTrust, Network};
use build_packages::{BuildPackages, PackageView};
use cache_repo::{Published, RemoteCache};

pub use assemble::{image_path, ImageOptions};
pub use cache_repo::CacheRepoOptions;
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
    /// The SBOM to attach to the image, in this format (`None` with
    /// `--no-sbom`).
    pub sbom: Option<crate::sbom::SbomFormat>,
    /// Attach build provenance to the image (`--no-provenance` turns it
    /// off).
    pub provenance: bool,
    /// The registry build cache (`--cache-repo`), if any.
    pub cache_repo: Option<CacheRepoOptions>,
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
    let remote = match &options.cache_repo {
        Some(repo) if !options.phases.no_cache => RemoteCache::open(
            repo,
            &options.registry,
            &options.delivery,
            options.image.settings,
        )?,
        _ => None,
    };
    let base_image = base_reference
        .map(|reference| pull_base(&reference, "base image", options, progress))
        .transpose()?;
    refuse_apt_without_apt(&ordered, base_image.as_ref())?;
    let (packages, view_key) =
        build_packages(&ordered, app_dir, options, remote.as_ref(), progress)?;

    let scratch = work_folder(cache_root)?;
    let first_paths = phases::image_paths(&ordered);
    let base = root_folder::base_with(
        packages.view.base_files(),
        &scratch.path().join("base"),
        base_image.as_ref().map(|image| root_folder::OnImage {
            root: &image.root,
            first_paths: &first_paths,
        }),
    )?;
    let app_root = scratch.path().join("app");
    let copied = app_files::stage(app_dir, &app_root, plan.static_assets.as_ref())?;
    progress.stage("app", format!("{copied} files copied to /app"));

    let cache = LayerCache::open(cache_root)
        .with_context(|| format!("could not open the layer cache in {}", cache_root.display()))?;
    let phase_inputs = phases::PhaseInputs {
        plan,
        phases: &ordered,
        packages: &packages,
        remote: remote.as_ref(),
        layers: &cache,
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

    let (mut image, store_layers) =
        pack_image(&phase_inputs, &ran, &base, &first_paths, &cache, options)?;
    if let Some(format) = options.sbom {
        let store_paths = match base_image::run_base(plan) {
            None => packages.planned_packages().everything().paths,
            Some(_) => packages.planned_packages().runtime().paths,
        };
        attach_sbom(
            &mut image,
            format,
            &options.name,
            &store_paths,
            Some(app_dir),
            progress,
        )?;
    }
    if options.provenance {
        provenance::attach_provenance(
            &mut image,
            generated,
            &ordered,
            base_image.as_ref(),
            options,
            progress,
        )?;
    }
    let mount_from = remote
        .as_ref()
        .map(RemoteCache::mount_sources)
        .unwrap_or_default();
    let delivered = deliver(
        &image,
        &options.delivery,
        &options.registry,
        &cache,
        &mount_from,
        progress,
    )?;
    if let Some(remote) = &remote {
        let new_phases: Vec<(String, String)> = ran
            .iter()
            .filter(|p| !p.from_repo)
            .map(|p| (p.name.clone(), p.key.clone()))
            .collect();
        remote.publish(
            &Published {
                view: view_key.as_deref().map(|key| (key, &packages.view)),
                phases: &new_phases,
                store_layers: &store_layers,
            },
            &image,
            &cache,
        );
    }
    Ok(Built {
        image,
        phases: ran,
        delivered,
        packed: cache.packed(),
    })
}

/// The pack stage of a build: the image the app was built in, or a run
/// image of its own when the plan asks for one (`start.runImage`). Also
/// the store path layers the registry build cache lacks, with their keys.
fn pack_image(
    inputs: &phases::PhaseInputs<'_>,
    ran: &[RanPhase],
    base: &root_folder::Base,
    first_paths: &[String],
    cache: &LayerCache,
    options: &BuildOptions,
) -> anyhow::Result<(Image, Vec<(String, Layer)>)> {
    let packed = match base_image::run_base(inputs.plan) {
        None => {
            let planned = inputs.packages.planned_packages();
            assemble::image(&assemble::ImageInputs {
                plan: inputs.plan,
                packages: &planned.everything(),
                library_dirs: &planned.library_dirs,
                base_image: inputs.base_image,
                base,
                app_root: inputs.app_root,
                phases: ran,
                profile: &inputs.packages.view.profile,
                files: Some(inputs.packages),
                remote: inputs.remote,
                cache,
                options: &options.image,
                progress: inputs.progress,
            })?
        }
        Some(run_reference) => {
            let run_image = run_reference
                .map(|reference| pull_base(&reference, "run image", options, inputs.progress))
                .transpose()?;
            let image = run_image::image(
                inputs,
                ran,
                run_image.as_ref(),
                first_paths,
                cache,
                &options.image,
            )?;
            (image, Vec::new())
        }
    };
    let image = &packed.0;
    inputs.progress.stage(
        "pack",
        format!(
            "{} layers ({} packed, the rest from the layer cache), {} compressed",
            image.layers.len(),
            cache.packed().len(),
            human_size(image.compressed_size())
        ),
    );
    Ok(packed)
}

/// kiln's base files for `packages`, written into the new folder `dir`:
/// the lowest folder of a sandbox outside a build (`kiln shell`).
pub fn base_folder(packages: &Packages, dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(root_folder::base(&packages.everything(), dir, None)?.dir)
}

/// Resolves the packages of `phases` and kiln's base packages, and
/// realizes them unless the registry build cache holds their view (then
/// only their narinfo is read, and they are realized when needed). Also
/// returns the view's key when the cache should record it.
fn build_packages<'a>(
    phases: &[&Phase],
    app_dir: &Path,
    options: &'a BuildOptions,
    remote: Option<&RemoteCache>,
    progress: &'a Progress,
) -> anyhow::Result<(BuildPackages<'a>, Option<String>)> {
    let (sources, cache_root) = (&options.sources, options.cache_root.as_path());
    let spinner = progress.spinner("packages: evaluating package names");
    let wanted = resolve::resolve_plan(phases, sources, app_dir, cache_root)?;
    drop(spinner);
    let Some(remote) = remote else {
        let packages = build_packages::realize(&wanted, sources, cache_root, progress)?;
        let packages = BuildPackages::realized(wanted, packages, sources, cache_root, progress)?;
        return Ok((packages, None));
    };
    let planned = resolve::read_closure(&wanted, sources, cache_root)?;
    let key = PackageView::key(&planned);
    if let Some(view) = remote.view(&key) {
        let how = "not fetched: the cache repo knows their files";
        build_packages::report(&planned, how, progress);
        let packages = BuildPackages::planned(wanted, planned, view, sources, cache_root, progress);
        return Ok((packages, None));
    }
    let packages = build_packages::realize(&wanted, sources, cache_root, progress)?;
    let packages = BuildPackages::realized(wanted, packages, sources, cache_root, progress)?;
    Ok((packages, Some(key)))
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
