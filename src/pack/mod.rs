//! `kiln pack`: an image straight from Nix packages, with no app and no
//! build: base files, one layer per store path of the closure (grouped
//! beyond `--max-layers`), the profile, and the config.

mod host_nix;

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;

use crate::bars::Bars;
use crate::cli::{self, PackCommand};
use crate::image::{self, Destination, ImageBuilder};
use crate::layer::{
    base_files, group_by_popularity, pack_all_with_progress, profile, BaseFiles, ClosurePath,
    Compression, Format, LayerCache, LayerJob, PackSettings, StorePathSource, PROFILE_DIR,
};
use crate::output::outln;

pub use host_nix::{host_closure, parse_dump_db, resolve_packages};

/// Layers besides the closure's: base files and profile.
const OTHER_LAYERS: usize = 2;

/// `PATH` of every packed image: the profile first.
pub fn image_path() -> String {
    format!("{PROFILE_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// The layers of an image of `packages` (closure `closure`): the base
/// files, the closure's store paths grouped so that with the profile and
/// `other_layers` more the image has at most `max_layers`, and the profile.
/// Also returns the profile paths more than one package has (the package
/// named first wins them).
pub fn package_layer_jobs(
    base: &BaseFiles,
    packages: &[StorePathSource],
    closure: &[ClosurePath],
    max_layers: usize,
    other_layers: usize,
) -> anyhow::Result<(Vec<LayerJob>, Vec<String>)> {
    let (profile_tree, collisions) = profile(packages)?;
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
    Ok((jobs, collisions))
}

/// `PATH` (`first_paths`, then the profile and the usual folders) and the
/// CA bundle variables of an image on `base`.
pub fn with_base_env(
    builder: ImageBuilder,
    base: &BaseFiles,
    first_paths: &[String],
) -> ImageBuilder {
    let mut path: Vec<String> = first_paths.to_vec();
    path.push(image_path());
    let mut builder = builder.env("PATH", &path.join(":"));
    if let Some(cert_file) = base.cert_file {
        builder = builder
            .env("SSL_CERT_FILE", cert_file)
            .env("NIX_SSL_CERT_FILE", cert_file);
    }
    builder
}

/// Carries out `kiln pack`; a bar shows the packing on a terminal unless
/// `quiet`.
pub fn run(
    command: &PackCommand,
    cache_dir: Option<&Path>,
    json_output: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if let Some(reference) = &command.output.push {
        bail!("kiln pack cannot push to {reference} yet; write with --output oci:DIR and push that with skopeo copy");
    }
    let destination: Destination = match &command.output.output {
        Some(text) => text.parse()?,
        None => {
            let name = command.output.name.as_deref().unwrap_or("image");
            format!("oci-archive:{name}.oci.tar").parse()?
        }
    };
    let format = match command.layers.compression {
        cli::Compression::Gzip => Format::Gzip,
        cli::Compression::Zstd => Format::Zstd,
    };
    let settings = PackSettings {
        compression: Compression::new(format, command.layers.compression_level)?,
        source_date_epoch: PackSettings::source_date_epoch_from_env()?,
    };
    let cache_root = crate::cache::cache_dir(cache_dir)?;
    let cache = LayerCache::open(&cache_root)
        .with_context(|| format!("could not open the layer cache in {}", cache_root.display()))?;

    let mut roots = resolve_packages(&command.packages, command.store.nixpkgs.as_deref())?;
    // Two names for one package (nodejs, nodejs_20) must not collide with
    // themselves in the profile.
    let mut seen = std::collections::HashSet::new();
    roots.retain(|root| seen.insert(root.clone()));
    let closure = match &command.closure {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("could not read the closure file {}", file.display()))?;
            parse_dump_db(&text, &file.display().to_string())?
        }
        None => host_closure(&roots)?,
    };
    for root in &roots {
        if !closure.iter().any(|p| &p.source.store_path == root) {
            bail!("{root} is not in the closure; the closure must include every package given");
        }
    }
    let packages: Vec<StorePathSource> =
        roots.iter().map(|r| StorePathSource::in_place(r)).collect();
    let everything: Vec<StorePathSource> = closure.iter().map(|p| p.source.clone()).collect();

    let base = base_files(&packages, &everything);
    let (jobs, collisions) =
        package_layer_jobs(&base, &packages, &closure, command.layers.max_layers, 0)?;
    for collision in collisions {
        tracing::warn!("{collision}: more than one package has it; the one named first wins");
    }
    let bar = Bars::on_stderr(quiet).pack(jobs.len());
    let layers = pack_all_with_progress(&cache, &jobs, &settings, &bar)?;
    drop(bar);

    let builder = ImageBuilder::new(settings.source_date_epoch).layers(layers.clone());
    let mut builder = with_base_env(builder, &base, &[]);
    for pair in &command.env {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair}: expected KEY=VALUE"))?;
        builder = builder.env(key, value);
    }
    for pair in &command.output.label {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--label {pair}: expected KEY=VALUE"))?;
        builder = builder.label(key, value);
    }
    if !command.entrypoint.is_empty() {
        builder = builder.entrypoint(command.entrypoint.clone());
    }
    if let Some(cmd) = &command.cmd {
        builder = if !command.entrypoint.is_empty() {
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
    let image = builder.build()?;
    image::write(&image, &destination, &command.output.tag).with_context(|| {
        format!(
            "could not write the image to {}",
            command
                .output
                .output
                .as_deref()
                .unwrap_or("the default output")
        )
    })?;

    if json_output {
        let layers: Vec<_> = layers
            .iter()
            .map(|l| json!({"digest": l.digest, "diffId": l.diff_id, "size": l.size, "mediaType": l.media_type(), "holds": l.description}))
            .collect();
        outln!(
            "{}",
            json!({"digest": image.manifest_digest, "config": image.config_digest, "layers": layers})
        );
    } else {
        outln!("{}", image.manifest_digest);
    }
    Ok(())
}
