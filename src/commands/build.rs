//! `kiln build`: an app folder to an image, through the build pipeline.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::args::{CacheRepoArgs, LayerArgs, Network, OutputArgs, PlanArgs, StoreArgs, TrustArgs};
use super::cache::{pruned_json, pruned_line};
use super::GlobalArgs;
use crate::cache::{self, Limits, Pruned};
use crate::pipeline::{self, BuildOptions, Built, PhaseOptions};
use crate::report::{human_size, outln, PhaseLine, Progress, Summary};

/// `kiln build`.
#[derive(Debug, Args)]
pub struct BuildCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub layers: LayerArgs,

    #[command(flatten)]
    pub trust: TrustArgs,

    #[command(flatten)]
    pub cache_repo: CacheRepoArgs,

    /// Image to build on instead of kiln's minimal base, pulled from its
    /// registry; its layers stay the image's first. Needed for `aptPkgs`
    /// (a Debian or Ubuntu image). Overrides the plan's `buildImage`.
    #[arg(long, value_name = "REFERENCE")]
    pub base_image: Option<String>,

    /// Key that selects which build caches (`cacheDirectories`) to share.
    /// Without it each app folder has caches of its own (keyed by its
    /// path), so an app never sees what another left there; builds given
    /// the same key share them, whatever the app: only share a key among
    /// apps you trust alike.
    #[arg(long, value_name = "KEY")]
    pub cache_key: Option<String>,

    /// Start with empty build caches and save none.
    #[arg(long)]
    pub no_cache: bool,

    /// Network for build commands: the host's, or none at all. Default: the
    /// app's `[kiln] network` in `nixpacks.toml`, else `host`. On the host's
    /// network a build also reaches services listening on the host's
    /// loopback; give untrusted apps that need no downloads `none`.
    #[arg(long, value_enum)]
    pub network: Option<Network>,

    /// When the build is done, prune kiln's cache down to SIZE (`5G`,
    /// `800M`; K, M, G, T are powers of 1024), least recently used entries
    /// first, and say what was removed. What this build used stays. Off
    /// unless set.
    #[arg(long, value_name = "SIZE", env = "KILN_CACHE_MAX_SIZE", value_parser = cache::parse_size)]
    pub cache_max_size: Option<u64>,

    /// Attach no provenance. By default the image gets an in-toto statement
    /// with a SLSA provenance v1 predicate (artifact type
    /// `application/vnd.in-toto+json`): the source folder and its git
    /// commit, the plan and its digest, `kiln.lock`, the phase commands,
    /// base image digests and the substituters (without credentials),
    /// attached, pushed and signed like the SBOM.
    #[arg(long)]
    pub no_provenance: bool,
}

/// Plans the app, builds it and prints the result.
pub fn run(global: &GlobalArgs, command: &BuildCommand) -> anyhow::Result<()> {
    let progress = Progress::new(global.quiet);
    let generated = command.plan.generate()?;
    let name = image_name(command.output.name.as_deref(), &generated.app_dir);
    let delivery = command.output.delivery(&name)?;
    let options = BuildOptions {
        delivery,
        name,
        sources: command.store.sources()?,
        image: command.layers.options(&command.output.label)?,
        base_image: command.base_image.clone(),
        phases: PhaseOptions {
            env: command.plan.env.pairs()?,
            network: Network::choose(command.network, &generated.kiln).into(),
            cache_key: command.cache_key.clone(),
            no_cache: command.no_cache,
            trust: command.trust.trust()?,
        },
        registry: command.output.registry_config(),
        cache_root: global.cache_root()?,
        sbom: command.output.sbom(),
        provenance: !command.no_provenance,
        cache_repo: command.cache_repo.options(),
    };
    let built = pipeline::build(&generated, &options, &progress)?;
    let pruned = command
        .cache_max_size
        .map(|max_size| prune_after(&options.cache_root, max_size, &progress))
        .transpose()?;
    if global.json {
        let mut result = result_json(&options.name, &built, &progress);
        if let Some(pruned) = &pruned {
            result["cachePruned"] = pruned_json(pruned);
        }
        outln!("{result}");
    } else {
        progress.summary(&Summary {
            name: &options.name,
            digest: &built.image.manifest_digest,
            layers: built.image.layers.len(),
            compressed: built.image.compressed_size(),
            uncompressed: built.image.uncompressed_size(),
            phases: built
                .phases
                .iter()
                .map(|p| PhaseLine {
                    name: p.name.clone(),
                    cached: p.cached,
                    seconds: p.seconds,
                })
                .collect(),
        });
        outln!("{}", built.image.manifest_digest);
    }
    Ok(())
}

/// Prunes the cache down to `max_size` once the build is done: what the
/// build used is still held by this process, so it stays.
fn prune_after(cache_root: &Path, max_size: u64, progress: &Progress) -> anyhow::Result<Pruned> {
    let limits = Limits {
        max_size: Some(max_size),
        ..Limits::default()
    };
    let pruned = cache::prune(cache_root, &limits).with_context(|| {
        format!(
            "the image is built, but pruning the cache at {} down to KILN_CACHE_MAX_SIZE failed",
            cache_root.display()
        )
    })?;
    progress.stage(
        "cache",
        format!("{} (limit {})", pruned_line(&pruned), human_size(max_size)),
    );
    for removed in &pruned.removed {
        progress.note(format!(
            "cache: removed {} ({})",
            removed.name,
            human_size(removed.bytes)
        ));
    }
    Ok(pruned)
}

/// `--name`, else the app folder's name in lower case.
fn image_name(name: Option<&str>, app_dir: &Path) -> String {
    name.map(str::to_string).unwrap_or_else(|| {
        app_dir
            .canonicalize()
            .ok()
            .and_then(|dir| dir.file_name().map(|n| n.to_string_lossy().to_lowercase()))
            .unwrap_or_else(|| "app".to_string())
    })
}

/// What `--json` prints: the digest, where the image went, its layers,
/// sizes, phases and the time of each stage.
fn result_json(name: &str, built: &Built, progress: &Progress) -> serde_json::Value {
    let phases: Vec<_> = built
        .phases
        .iter()
        .map(|p| json!({"name": p.name, "cached": p.cached, "seconds": p.seconds}))
        .collect();
    json!({
        "name": name,
        "digest": built.image.manifest_digest,
        "output": built.delivered.written.first(),
        "pushed": built.delivered.pushed.first(),
        "layers": built
            .image
            .layers
            .iter()
            .map(|l| json!({"digest": l.digest, "size": l.size, "holds": l.description}))
            .collect::<Vec<_>>(),
        "compressedSize": built.image.compressed_size(),
        "uncompressedSize": built.image.uncompressed_size(),
        "phases": phases,
        "packed": built.packed,
        "stages": progress.stages_json(),
    })
}
