//! `kiln pack`: an image straight from Nix packages, with no app and no
//! build. The packages come through the same package stage as `kiln
//! build`'s (lock, evaluation cache, substituters, trusted keys).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::args::{key_values, CacheRepoArgs, LayerArgs, OutputArgs, StoreArgs};
use super::GlobalArgs;
use crate::layer::LayerCache;
use crate::pipeline::cache_repo::{Published, RemoteCache};
use crate::pipeline::{self, PackOptions};
use crate::report::{outln, Progress};
use crate::resolve;

/// `kiln pack`.
#[derive(Debug, Args)]
pub struct PackCommand {
    /// Nix packages to put in the image: store paths (`/nix/store/...`), or
    /// attribute names resolved with `--lock`, kiln's evaluation cache, or
    /// an evaluation of `--nixpkgs`.
    #[arg(required = true, value_name = "PATH_OR_ATTRIBUTE")]
    pub packages: Vec<String>,

    /// Command the image runs, through `/bin/bash -l -c` as Nixpacks images
    /// do (`/bin/sh -c` when the packages have no bash).
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,

    /// Entrypoint, one argument per flag (`--entrypoint node --entrypoint
    /// server.js`); with it, `--cmd` is passed as its one argument.
    #[arg(long, value_name = "ARG")]
    pub entrypoint: Vec<String>,

    /// Environment of the image: `KEY=VALUE`. Repeat for more.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Lock file that resolves attribute names (read only; `kiln lock`
    /// writes it).
    #[arg(long, default_value = "kiln.lock", value_name = "FILE")]
    pub lock: PathBuf,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub layers: LayerArgs,

    #[command(flatten)]
    pub cache_repo: CacheRepoArgs,
}

/// Resolves and fetches the packages, packs them and delivers the image.
pub fn run(global: &GlobalArgs, command: &PackCommand) -> anyhow::Result<()> {
    let progress = Progress::new(global.quiet);
    let name = command.output.name.as_deref().unwrap_or("image");
    let delivery = command.output.delivery(name)?;
    let image_options = command.layers.options(&command.output.label)?;
    let run = PackOptions {
        cmd: command.cmd.clone(),
        entrypoint: command.entrypoint.clone(),
        env: key_values("--env", &command.env)?,
    };
    let cache_root = global.cache_root()?;
    let sources = command.store.sources()?;

    let wanted = resolve::resolve_names(&command.packages, &sources, &command.lock, &cache_root)?;
    let fetch_bar = progress.fetch_bar();
    let packages = resolve::realize(&wanted, &sources, &cache_root, &fetch_bar)?;
    drop(fetch_bar);
    let cache = LayerCache::open(&cache_root)
        .with_context(|| format!("could not open the layer cache in {}", cache_root.display()))?;
    let registry = command.output.registry_config();
    let remote = match command.cache_repo.options() {
        Some(repo) => RemoteCache::open(&repo, &registry, &delivery, image_options.settings)?,
        None => None,
    };
    let (mut image, new_layers) = pipeline::pack(
        &packages,
        &run,
        &image_options,
        &cache,
        remote.as_ref(),
        &progress,
    )?;
    if let Some(format) = command.output.sbom() {
        pipeline::attach_sbom(
            &mut image,
            format,
            name,
            &packages.closure.paths,
            None,
            &progress,
        )?;
    }
    let mount_from = remote
        .as_ref()
        .map(RemoteCache::mount_sources)
        .unwrap_or_default();
    let delivered =
        pipeline::deliver(&image, &delivery, &registry, &cache, &mount_from, &progress)?;
    if let Some(remote) = &remote {
        let published = Published {
            view: None,
            phases: &[],
            store_layers: &new_layers,
        };
        remote.publish(&published, &image, &cache);
    }

    if global.json {
        let layers: Vec<_> = image
            .layers
            .iter()
            .map(|l| json!({"digest": l.digest, "diffId": l.diff_id, "size": l.size, "mediaType": l.media_type(), "holds": l.description}))
            .collect();
        outln!(
            "{}",
            json!({
                "digest": image.manifest_digest,
                "config": image.config_digest,
                "layers": layers,
                "pushed": delivered.pushed.first(),
            })
        );
    } else {
        outln!("{}", image.manifest_digest);
    }
    Ok(())
}
