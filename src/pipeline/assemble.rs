//! The pack stage: the image's layers (base files, the packages' closure,
//! the profile, the app files, one layer per phase diff) and its config.
//! The package layers and base environment are shared with `kiln pack`.

use std::path::Path;

use anyhow::{bail, Context};
use kiln_providers::BuildPlan;

use super::base_image::BaseImage;
use super::build_packages::BuildPackages;
use super::cache_repo::RemoteCache;
use super::global_prefix;
use super::phases::{image_paths, RanPhase};
use super::root_folder::Base;
use super::store_layers;
use crate::image::{Image, ImageBuilder};
use kiln_store::ClosurePath;

use crate::layer::{
    group_by_popularity, pack_all_with_progress, BaseFiles, Layer, LayerCache, LayerJob,
    PackSettings, Tree, PROFILE_DIR,
};
use crate::report::Progress;
use crate::resolve::ImagePackages;

/// Layers of every image besides the closure's: base files and profile.
const OTHER_LAYERS: usize = 2;

/// How an image's layers are packed, and its labels.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Compression and mtime.
    pub settings: PackSettings,
    /// Most layers the image may have (`--max-layers`).
    pub max_layers: usize,
    /// Config labels (`--label`).
    pub labels: Vec<(String, String)>,
}

/// `PATH` of every packed image: the profile first.
pub fn image_path() -> String {
    format!("{PROFILE_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// The layers of an image whose profile is `profile_tree` and whose
/// closure is `closure`: the base files, the closure's store paths grouped
/// so that with the profile and `other_layers` more the image has at most
/// `max_layers`, and the profile.
pub fn package_layer_jobs(
    base: &BaseFiles,
    profile_tree: Tree,
    closure: &[ClosurePath],
    max_layers: usize,
    other_layers: usize,
) -> Vec<LayerJob> {
    let groups = group_by_popularity(
        closure,
        max_layers.saturating_sub(OTHER_LAYERS + other_layers),
    );
    let mut jobs = vec![LayerJob::Tree(base.tree.clone(), "base files".into())];
    jobs.extend(groups.into_iter().map(LayerJob::StorePaths));
    jobs.push(LayerJob::Tree(
        profile_tree,
        format!("profile {PROFILE_DIR}"),
    ));
    jobs
}

/// `PATH` (`first_paths`, then the profile and the usual folders), the CA
/// bundle variables and `labels` of an image on `base`.
pub fn with_base_env(
    builder: ImageBuilder,
    base: &BaseFiles,
    first_paths: &[String],
    labels: &[(String, String)],
) -> ImageBuilder {
    let mut path: Vec<String> = first_paths.to_vec();
    path.push(image_path());
    let mut builder = builder.env("PATH", &path.join(":"));
    if let Some(cert_file) = base.cert_file {
        builder = builder
            .env("SSL_CERT_FILE", cert_file)
            .env("NIX_SSL_CERT_FILE", cert_file);
    }
    for (key, value) in labels {
        builder = builder.label(key, value);
    }
    builder
}

/// What the pack stage needs.
pub struct ImageInputs<'a> {
    /// The plan (variables, start).
    pub plan: &'a BuildPlan,
    /// The packages the image holds.
    pub packages: &'a ImagePackages,
    /// Library folders for `LD_LIBRARY_PATH`.
    pub library_dirs: &'a [String],
    /// The pulled base image beneath everything, if any.
    pub base_image: Option<&'a BaseImage>,
    /// The base files.
    pub base: &'a Base,
    /// The folder holding `app/` (and `assets/`): the app as the phases saw
    /// it, or only the files a run image keeps.
    pub app_root: &'a Path,
    /// The phases' diffs, in order.
    pub phases: &'a [RanPhase],
    /// The profile of the image's packages.
    pub profile: &'a Tree,
    /// The build's packages, realized here when a store path layer has to
    /// be packed; `None` when `packages` are realized already.
    pub files: Option<&'a BuildPackages<'a>>,
    /// The registry build cache, consulted for store path layers.
    pub remote: Option<&'a RemoteCache>,
    /// Where layers are packed.
    pub cache: &'a LayerCache,
    /// Compression, mtime, layer count, labels.
    pub options: &'a ImageOptions,
    /// Where the pack bar is drawn.
    pub progress: &'a Progress,
}

/// Packs every layer (in parallel) and builds the image config. Also
/// returns the store path layers the registry build cache did not give,
/// with their keys, for it to record.
pub fn image(inputs: &ImageInputs<'_>) -> anyhow::Result<(Image, Vec<(String, Layer)>)> {
    let mut jobs = package_layer_jobs(
        &inputs.base.files,
        inputs.profile.clone(),
        &inputs.packages.paths,
        inputs.options.max_layers,
        1 + inputs.phases.len() + inputs.base_image.map_or(0, |image| image.layers.len()),
    );
    let settings = &inputs.options.settings;
    let settled = store_layers::settle(
        &mut jobs,
        inputs.cache,
        settings,
        inputs.remote,
        inputs.files,
    )?;
    jobs.push(LayerJob::Folder {
        prefix: String::new(),
        dir: inputs.app_root.to_path_buf(),
        description: "app files".into(),
    });
    jobs.extend(inputs.phases.iter().map(|phase| LayerJob::Folder {
        prefix: String::new(),
        dir: phase.upper.clone(),
        description: format!("phase {}", phase.name),
    }));
    let bar = inputs.progress.pack_bar(jobs.len());
    let layers = pack_all_with_progress(inputs.cache, &jobs, settings, &bar)
        .context("could not pack the image's layers")?;
    drop(bar);
    let new_store_layers = settled
        .into_iter()
        .map(|(index, key)| (key, layers[index].clone()))
        .collect();

    let phases: Vec<&kiln_providers::Phase> = inputs.plan.phases_in_order()?;
    let mut builder = ImageBuilder::new(settings.source_date_epoch);
    if let Some(image) = inputs.base_image {
        if let Some(config) = &image.config {
            builder = builder.inherit(config);
        }
        builder = builder.layers(image.layers.iter().cloned());
    }
    let builder = builder.layers(layers);
    let uppers: Vec<&Path> = inputs.phases.iter().map(|p| p.upper.as_path()).collect();
    let mut first_paths = image_paths(&phases);
    first_paths.extend(global_prefix::bin_folders_made(&uppers));
    let mut builder = with_base_env(
        builder,
        &inputs.base.files,
        &first_paths,
        &inputs.options.labels,
    );
    if !inputs.library_dirs.is_empty() {
        builder = builder.env("LD_LIBRARY_PATH", &inputs.library_dirs.join(":"));
    }
    for (key, value) in inputs.plan.variables.iter().flatten() {
        builder = builder.env(key, value);
    }
    let start = inputs.plan.start_phase.as_ref();
    if let Some(cmd) = start.and_then(|s| s.cmd.as_deref()) {
        if !inputs.base.files.has_bash {
            bail!("the start command runs through /bin/bash, and no package of the build has bin/bash");
        }
        builder = builder.start_command(cmd);
    }
    if let Some(user) = start.and_then(|s| s.user.as_deref()) {
        builder = builder.user(user);
    }
    Ok((builder.build()?, new_store_layers))
}
