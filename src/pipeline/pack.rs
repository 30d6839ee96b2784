//! `kiln pack`'s pipeline: realized packages straight to an image, with no
//! app and no phases: base files, one layer per store path of the closure
//! (grouped beyond the layer cap), the profile, and the config.

use anyhow::{bail, Context};

use super::assemble::{package_layer_jobs, with_base_env, ImageOptions};
use super::cache_repo::RemoteCache;
use super::store_layers;
use crate::image::{Image, ImageBuilder};
use crate::layer::{
    base_files, pack_all_with_progress, profile, Layer, LayerCache, StorePathSource,
};
use crate::report::Progress;
use crate::resolve::Packages;

/// What the image runs, and its environment.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Command run through the packages' shell (`--cmd`).
    pub cmd: Option<String>,
    /// Entrypoint, exec form (`--entrypoint`).
    pub entrypoint: Vec<String>,
    /// Environment of the image (`--env`).
    pub env: Vec<(String, String)>,
}

/// Packs the image of `packages`, taking layers `remote` (a registry
/// build cache) has from it. Also returns the layers it lacks, with their
/// keys, for [`RemoteCache::publish`].
pub fn pack(
    packages: &Packages,
    run: &PackOptions,
    options: &ImageOptions,
    cache: &LayerCache,
    remote: Option<&RemoteCache>,
    progress: &Progress,
) -> anyhow::Result<(Image, Vec<(String, Layer)>)> {
    let roots = packages.roots.clone();
    let closure = &packages.closure.paths;
    let everything: Vec<StorePathSource> = closure.iter().map(StorePathSource::from).collect();
    let base = base_files(&roots, &everything);
    let (profile_tree, collisions) = profile(&roots)?;
    let mut jobs = package_layer_jobs(&base, profile_tree, closure, options.max_layers, 0);
    let settled = store_layers::settle(&mut jobs, cache, &options.settings, remote, None)?;
    for collision in collisions {
        tracing::warn!("{collision}: more than one package has it; the one named first wins");
    }
    let bar = progress.pack_bar(jobs.len());
    let layers = pack_all_with_progress(cache, &jobs, &options.settings, &bar)
        .context("could not pack the image's layers")?;
    drop(bar);
    let new_layers = settled
        .into_iter()
        .map(|(index, key)| (key, layers[index].clone()))
        .collect();

    let builder = ImageBuilder::new(options.settings.source_date_epoch).layers(layers);
    let mut builder = with_base_env(builder, &base, &[], &options.labels);
    for (key, value) in &run.env {
        builder = builder.env(key, value);
    }
    if !run.entrypoint.is_empty() {
        builder = builder.entrypoint(run.entrypoint.clone());
    }
    if let Some(cmd) = &run.cmd {
        builder = if !run.entrypoint.is_empty() {
            builder.cmd(vec![cmd.clone()])
        } else if base.has_bash {
            builder.start_command(cmd)
        } else if base.has_sh {
            builder
                .entrypoint(vec!["/bin/sh".into(), "-c".into()])
                .cmd(vec![cmd.clone()])
        } else {
            bail!("--cmd runs through a shell, and no package in the closure has bin/bash or bin/sh; add bash (or busybox) to the packages, or use --entrypoint");
        };
    }
    Ok((builder.build()?, new_layers))
}
