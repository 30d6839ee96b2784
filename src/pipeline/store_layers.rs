//! Store path layers before packing: each is taken from the local layer
//! cache, else from the registry build cache's record, else packed from
//! the store path's files, which are realized only then.

use crate::layer::{LayerCache, LayerJob, PackSettings};

use super::build_packages::BuildPackages;
use super::cache_repo::RemoteCache;

/// Turns the store path jobs of `jobs` that `remote` has a layer for into
/// ready layers, and points the rest at realized files (realizing them
/// through `files` when they are only planned). Returns the index and key
/// of every store path job the registry build cache did not answer, for
/// it to record once packed.
pub fn settle(
    jobs: &mut [LayerJob],
    cache: &LayerCache,
    settings: &PackSettings,
    remote: Option<&RemoteCache>,
    files: Option<&BuildPackages<'_>>,
) -> anyhow::Result<Vec<(usize, String)>> {
    let mut settled = Vec::new();
    for (index, job) in jobs.iter_mut().enumerate() {
        let LayerJob::StorePaths(paths) = job else {
            continue;
        };
        let key = cache.store_paths_key(paths, settings);
        if cache.cached_store_paths(paths, settings)?.is_none() {
            let description = LayerCache::store_paths_description(paths);
            if let Some(layer) = remote.and_then(|r| r.store_paths(&key, &description, cache)) {
                *job = LayerJob::Ready(layer);
                continue;
            }
            if let Some(files) = files {
                files.locate(paths)?;
            }
        }
        settled.push((index, key));
    }
    Ok(settled)
}
