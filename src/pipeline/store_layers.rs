//! Store path layers (and the generated base files and profile) before
//! packing: each is taken from the local layer cache, else from the
//! registry build cache's record, else packed, a store path from its
//! files, which are realized only then.

use crate::layer::{LayerCache, LayerJob, PackSettings};

use super::build_packages::BuildPackages;
use super::cache_repo::RemoteCache;

/// Turns the store path and generated tree jobs of `jobs` that `remote`
/// has a layer for into ready layers, and points the other store paths at
/// realized files (realizing them through `files` when they are only
/// planned). Returns the index and key of every such job the registry
/// build cache did not answer, for it to record once packed.
pub fn settle(
    jobs: &mut [LayerJob],
    cache: &LayerCache,
    settings: &PackSettings,
    remote: Option<&RemoteCache>,
    files: Option<&BuildPackages<'_>>,
) -> anyhow::Result<Vec<(usize, String)>> {
    let mut settled = Vec::new();
    for (index, job) in jobs.iter_mut().enumerate() {
        let (key, description) = match &*job {
            LayerJob::StorePaths(paths) => (
                cache.store_paths_key(paths, settings),
                LayerCache::store_paths_description(paths),
            ),
            LayerJob::Tree(tree, description) => {
                (cache.tree_layer_key(tree, settings)?, description.clone())
            }
            _ => continue,
        };
        if cache.cached(&key, &description)?.is_none() {
            if let Some(layer) = remote.and_then(|r| r.layer(&key, &description, cache)) {
                *job = LayerJob::Ready(layer);
                continue;
            }
            if let (LayerJob::StorePaths(paths), Some(files)) = (job, files) {
                files.locate(paths)?;
            }
        }
        settled.push((index, key));
    }
    Ok(settled)
}
