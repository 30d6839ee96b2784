//! The pack stage: the image's layers (base files, the packages' closure,
//! the profile, the app files, one layer per phase diff) and its config.

use std::path::Path;

use anyhow::{bail, Context};
use kiln_providers::BuildPlan;

use super::base_image::BaseImage;
use super::packages::ImagePackages;
use super::phases::{image_paths, RanPhase};
use super::progress::Progress;
use super::root_folder::Base;
use crate::cli::BuildCommand;
use crate::image::{Image, ImageBuilder};
use crate::layer::{pack_all_with_progress, ClosurePath, LayerCache, LayerJob, PackSettings};
use crate::pack::{package_layer_jobs, with_base_env};

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
    /// Where layers are packed.
    pub cache: &'a LayerCache,
    /// Compression and mtime.
    pub settings: &'a PackSettings,
    /// The command line (`--max-layers`, `--label`).
    pub command: &'a BuildCommand,
    /// Where the pack bar is drawn.
    pub progress: &'a Progress,
}

/// The built image and its sizes.
pub struct Built {
    /// Config, manifest and layers.
    pub image: Image,
}

impl Built {
    /// Sum of the compressed layer sizes.
    pub fn compressed_size(&self) -> u64 {
        self.image.layers.iter().map(|l| l.size).sum()
    }

    /// Sum of the layers' tar sizes.
    pub fn uncompressed_size(&self) -> u64 {
        self.image.layers.iter().map(|l| l.uncompressed_size).sum()
    }
}

/// Packs every layer (in parallel) and builds the image config.
pub fn image(inputs: &ImageInputs<'_>) -> anyhow::Result<Built> {
    let closure: Vec<ClosurePath> = inputs
        .packages
        .paths
        .iter()
        .zip(&inputs.base.closure)
        .map(|(path, source)| ClosurePath {
            source: source.clone(),
            references: path.references.iter().map(ToString::to_string).collect(),
            nar_size: path.nar_size,
        })
        .collect();
    let (mut jobs, collisions) = package_layer_jobs(
        &inputs.base.files,
        &inputs.base.packages,
        &closure,
        inputs.command.layers.max_layers,
        1 + inputs.phases.len() + inputs.base_image.map_or(0, |image| image.layers.len()),
    )?;
    // kiln's base packages (coreutils, bash) often share names with the
    // plan's; the plan's packages come first and win, as intended.
    for collision in collisions {
        tracing::debug!("{collision}: more than one package has it; the plan's wins");
    }
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
    let layers = pack_all_with_progress(inputs.cache, &jobs, inputs.settings, &bar)
        .context("could not pack the image's layers")?;
    drop(bar);

    let phases: Vec<&kiln_providers::Phase> = inputs.plan.phases_in_order()?;
    let mut builder = ImageBuilder::new(inputs.settings.source_date_epoch);
    if let Some(image) = inputs.base_image {
        if let Some(config) = &image.config {
            builder = builder.inherit(config);
        }
        builder = builder.layers(image.layers.iter().cloned());
    }
    let builder = builder.layers(layers);
    let mut builder = with_base_env(builder, &inputs.base.files, &image_paths(&phases));
    if !inputs.library_dirs.is_empty() {
        builder = builder.env("LD_LIBRARY_PATH", &inputs.library_dirs.join(":"));
    }
    for (key, value) in inputs.plan.variables.iter().flatten() {
        builder = builder.env(key, value);
    }
    for pair in &inputs.command.output.label {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--label {pair}: expected KEY=VALUE"))?;
        builder = builder.label(key, value);
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
    Ok(Built {
        image: builder.build()?,
    })
}
