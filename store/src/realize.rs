//! Realizing a closure: narinfo breadth-first from `References`, then every
//! path's NAR, both with bounded parallelism, each path under its lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kiln_io::retry::Failure;
use nix_archive::nar::{hash_path, CaseHack};
use nix_derivation::StorePath;
use nix_narinfo::NarInfo;

use crate::error::{IoContext, StoreError};
use crate::host;
use crate::local::Store;
use crate::nar::{remove_tree, restore_verified, Expected, NarError};
use crate::progress::{NoProgress, RealizeProgress, ReportingReader};
use crate::substituter::{FoundNarInfo, Substituters};

/// Where a realized path's files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Downloaded now from this cache.
    Downloaded {
        /// The cache's URL.
        cache: String,
    },
    /// Already valid in kiln's store.
    AlreadyInStore,
    /// Valid in the host's Nix store, used in place.
    HostStore,
    /// Not realized: only its narinfo was read ([`Store::read_closure`]);
    /// its location is where a realization would put it.
    NotRealized,
}

/// One path of a realized closure.
#[derive(Debug, Clone)]
pub struct ClosurePath {
    /// The store path.
    pub path: StorePath,
    /// The paths it references (itself excluded).
    pub references: Vec<StorePath>,
    /// Size of its NAR: about the size of its files.
    pub nar_size: u64,
    /// Hash of its NAR as its narinfo states it (checked against the
    /// download), in Nix's base-16 form: `sha256:<hex>`. SBOMs list it.
    pub nar_hash: String,
    /// Size of the compressed download, when the narinfo says.
    pub file_size: Option<u64>,
    /// The folder (or file) holding its contents, to bind-mount at
    /// `/nix/store/<hash>-<name>` or pack into a layer.
    pub location: PathBuf,
    /// Where its files came from.
    pub origin: Origin,
}

/// A realized closure, dependencies before dependents. While it lives, its
/// paths in kiln's store are held against `prune`.
#[derive(Debug)]
pub struct Closure {
    /// Every path, in topological order (references first).
    pub paths: Vec<ClosurePath>,
    _holds: Vec<File>,
}

impl Closure {
    /// Sum of the paths' NAR sizes.
    pub fn total_nar_size(&self) -> u64 {
        self.paths.iter().map(|p| p.nar_size).sum()
    }

    /// A closure read from narinfo alone ([`Store::read_closure`]): its
    /// paths hold no files yet, so nothing is held against `prune`.
    pub fn unrealized(paths: Vec<ClosurePath>) -> Closure {
        Closure {
            paths,
            _holds: Vec::new(),
        }
    }

    /// How many paths were downloaded by this realization.
    pub fn downloaded(&self) -> usize {
        self.paths
            .iter()
            .filter(|p| matches!(p.origin, Origin::Downloaded { .. }))
            .count()
    }
}

/// A closure member's narinfo and where it was found.
struct Known {
    info: NarInfo,
    source: Source,
}

/// Where a narinfo came from.
#[derive(Clone, Copy)]
enum Source {
    /// This cache of the substituters.
    Cache(usize),
    /// The copy kept beside kiln's store for a valid path.
    Kept,
    /// The host Nix's database: the path is valid in the host store.
    HostNix,
}

impl Store {
    /// Realizes `roots` and everything they reference into this store, and
    /// returns the closure.
    pub fn realize(
        &self,
        substituters: &Substituters,
        roots: &[StorePath],
    ) -> Result<Closure, StoreError> {
        self.realize_with_derivations(substituters, roots, &BTreeMap::new())
    }

    /// [`Store::realize`], where a path no cache has but whose derivation
    /// `derivations` names is built by the host's Nix (`nix-store
    /// --realise`), when installed, and used from the host store.
    pub fn realize_with_derivations(
        &self,
        substituters: &Substituters,
        roots: &[StorePath],
        derivations: &BTreeMap<StorePath, StorePath>,
    ) -> Result<Closure, StoreError> {
        self.realize_with_progress(substituters, roots, derivations, &NoProgress)
    }

    /// [`Store::realize_with_derivations`], telling `progress` how it goes.
    pub fn realize_with_progress(
        &self,
        substituters: &Substituters,
        roots: &[StorePath],
        derivations: &BTreeMap<StorePath, StorePath>,
        progress: &dyn RealizeProgress,
    ) -> Result<Closure, StoreError> {
        let jobs = substituters.options().jobs.max(1);
        let known = self.closure_narinfo(substituters, roots, derivations, jobs)?;
        let order = topological_order(&known);
        // Paths found valid in kiln's store while the closure was read.
        let missing = order
            .iter()
            .filter(|path| !matches!(known[*path].source, Source::Kept))
            .count();
        progress.started(order.len(), missing);
        let realized = parallel_map(&order, jobs, |path| {
            let result = self.realize_one(substituters, path, &known[path], progress);
            if let Ok((_, origin, _)) = &result {
                progress.finished(path, origin);
            }
            result
        });
        let mut paths = Vec::with_capacity(order.len());
        let mut holds = Vec::new();
        for (path, result) in order.iter().zip(realized) {
            let (location, origin, hold) = result?;
            holds.extend(hold);
            let info = &known[path].info;
            paths.push(ClosurePath {
                path: path.clone(),
                references: info
                    .references()
                    .iter()
                    .filter(|r| *r != path)
                    .cloned()
                    .collect(),
                nar_size: info.nar_size(),
                nar_hash: info.nar_hash().to_nix_base16_string(),
                file_size: info.file_size(),
                location,
                origin,
            });
        }
        Ok(Closure {
            paths,
            _holds: holds,
        })
    }

    /// The closure of `roots` from narinfo alone, in the order
    /// [`Store::realize`] gives, downloading no NAR: a build that finds
    /// every layer and phase elsewhere needs no more. Each path is
    /// [`Origin::NotRealized`], located where kiln's store would put it.
    pub fn read_closure(
        &self,
        substituters: &Substituters,
        roots: &[StorePath],
        derivations: &BTreeMap<StorePath, StorePath>,
    ) -> Result<Vec<ClosurePath>, StoreError> {
        let jobs = substituters.options().jobs.max(1);
        let known = self.closure_narinfo(substituters, roots, derivations, jobs)?;
        Ok(topological_order(&known)
            .into_iter()
            .map(|path| {
                let info = &known[&path].info;
                ClosurePath {
                    references: info
                        .references()
                        .iter()
                        .filter(|r| **r != path)
                        .cloned()
                        .collect(),
                    nar_size: info.nar_size(),
                    nar_hash: info.nar_hash().to_nix_base16_string(),
                    file_size: info.file_size(),
                    location: self.location(&path),
                    origin: Origin::NotRealized,
                    path,
                }
            })
            .collect())
    }

    /// Narinfo of every path in the closure, level by level.
    fn closure_narinfo(
        &self,
        substituters: &Substituters,
        roots: &[StorePath],
        derivations: &BTreeMap<StorePath, StorePath>,
        jobs: usize,
    ) -> Result<BTreeMap<StorePath, Known>, StoreError> {
        let mut known: BTreeMap<StorePath, Known> = BTreeMap::new();
        let mut frontier: Vec<StorePath> = roots
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        while !frontier.is_empty() {
            let found = parallel_map(&frontier, jobs, |path| {
                self.narinfo_of(substituters, path, derivations.get(path))
            });
            let mut next = BTreeSet::new();
            for (path, result) in frontier.iter().zip(found) {
                let entry = result?;
                for reference in entry.info.references() {
                    if !known.contains_key(reference) && !frontier.contains(reference) {
                        next.insert(reference.clone());
                    }
                }
                known.insert(path.clone(), entry);
            }
            frontier = next.into_iter().collect();
        }
        Ok(known)
    }

    fn narinfo_of(
        &self,
        substituters: &Substituters,
        path: &StorePath,
        derivation: Option<&StorePath>,
    ) -> Result<Known, StoreError> {
        if self.is_valid(path) {
            // A path realized with `--no-verify` is kept only for realizations
            // that do not verify either.
            if let Some(info) = self.cached_narinfo(path).filter(|i| substituters.trusts(i)) {
                return Ok(Known {
                    info,
                    source: Source::Kept,
                });
            }
        }
        match substituters.narinfo(path) {
            Ok(FoundNarInfo { info, cache }) => Ok(Known {
                info,
                source: Source::Cache(cache),
            }),
            // Only with the host store in use: what Nix builds lands there.
            Err(missing @ StoreError::NotInAnyCache { .. }) if self.host_store().is_some() => {
                let Some(nix_store) = host::nix_store_program() else {
                    return Err(missing);
                };
                if let Some(info) = host::host_narinfo(&nix_store, path) {
                    return Ok(Known {
                        info,
                        source: Source::HostNix,
                    });
                }
                let Some(derivation) = derivation else {
                    return Err(missing);
                };
                host::build(&nix_store, path, derivation)?;
                host::host_narinfo(&nix_store, path)
                    .map(|info| Known {
                        info,
                        source: Source::HostNix,
                    })
                    .ok_or(missing)
            }
            Err(other) => Err(other),
        }
    }

    fn realize_one(
        &self,
        substituters: &Substituters,
        path: &StorePath,
        known: &Known,
        progress: &dyn RealizeProgress,
    ) -> Result<(PathBuf, Origin, Option<File>), StoreError> {
        let lock = self.lock_file(path)?;
        lock.lock_shared().at(self.location(path))?;
        if self.is_valid_for(substituters, path) {
            self.touch(path);
            return Ok((self.location(path), Origin::AlreadyInStore, Some(lock)));
        }
        if let Source::HostNix = known.source {
            // Valid in the host store and in no cache: its only copy.
            let host = PathBuf::from(crate::HOST_STORE).join(path.to_basename());
            return Ok((host, Origin::HostStore, None));
        }
        if let Some(host) = self.host_in_place(path, &known.info) {
            return Ok((host, Origin::HostStore, None));
        }
        // Exclusive while writing; flock turns the shared lock into it.
        lock.lock().at(self.location(path))?;
        if !self.is_valid_for(substituters, path) {
            let found = match known.source {
                Source::Cache(cache) => FoundNarInfo {
                    info: known.info.clone(),
                    cache,
                },
                // Valid when the closure was read, pruned since.
                Source::Kept | Source::HostNix => substituters.narinfo(path)?,
            };
            let cache_url = self.download(substituters, path, &found, progress)?;
            lock.lock_shared().at(self.location(path))?;
            return Ok((
                self.location(path),
                Origin::Downloaded { cache: cache_url },
                Some(lock),
            ));
        }
        lock.lock_shared().at(self.location(path))?;
        Ok((self.location(path), Origin::AlreadyInStore, Some(lock)))
    }

    /// Whether `path` is valid and its kept narinfo passes `substituters`'
    /// signature check. The check, rather than a flag in the marker, is
    /// what keeps unverified paths from verified realizations: it also
    /// tells apart the paths earlier kiln versions realized unverified, and
    /// a path verified against keys no longer trusted is fetched again.
    fn is_valid_for(&self, substituters: &Substituters, path: &StorePath) -> bool {
        self.is_valid(path)
            && self
                .cached_narinfo(path)
                .is_some_and(|info| substituters.trusts(&info))
    }

    /// Downloads and restores `path` under the exclusive lock; returns the
    /// cache's URL. A download that breaks midway (reset, cut short, bytes
    /// that do not match) starts again from scratch while the cache's retry
    /// policy allows. On any failure nothing of it stays in the store.
    fn download(
        &self,
        substituters: &Substituters,
        path: &StorePath,
        found: &FoundNarInfo,
        progress: &dyn RealizeProgress,
    ) -> Result<String, StoreError> {
        let log = |err: &StoreError, attempt, wait| {
            tracing::warn!(path = %path, attempt, %err, "NAR download broke, retrying in {wait:?}");
        };
        substituters
            .nar_retry_policy(found.cache)
            .run_blocking(
                || self.download_once(substituters, path, found, progress),
                log,
            )
            .map_err(|stopped| {
                stopped.into_error(|error, attempts| match error {
                    StoreError::BadNar { url, path, reason } if attempts > 1 => {
                        StoreError::BadNar {
                            url,
                            path,
                            reason: format!("{reason} (gave up after {attempts} attempts)"),
                        }
                    }
                    other => other,
                })
            })?;
        let cache = substituters.urls()[found.cache].to_string();
        tracing::info!(path = %path, %cache, nar_size = found.info.nar_size(), "realized");
        Ok(cache)
    }

    /// One download of `path`'s NAR into place; on failure its leftovers
    /// are removed. Bytes that arrived cut short, broken or not the NAR the
    /// narinfo describes are a passing failure: another download may be
    /// whole.
    fn download_once(
        &self,
        substituters: &Substituters,
        path: &StorePath,
        found: &FoundNarInfo,
        progress: &dyn RealizeProgress,
    ) -> Result<(), Failure<StoreError, StoreError>> {
        self.clear_leftovers(path).map_err(Failure::Final)?;
        let (download, url) = substituters.open_nar(found).map_err(Failure::Final)?;
        let download = ReportingReader::new(download, progress);
        let temp = self.temp_location(path);
        let expected = Expected {
            nar_hash: found.info.nar_hash(),
            nar_size: found.info.nar_size(),
            compression: found.info.compression(),
        };
        let result = match restore_verified(download, &expected, &temp) {
            Ok(()) => self
                .commit(path, &temp, &found.info)
                .map_err(Failure::Final),
            Err(err @ (NarError::UnsupportedCompression(_) | NarError::NotSha256(_))) => {
                Err(Failure::Final(nar_error(err, &url, path)))
            }
            Err(err) => Err(Failure::passing(nar_error(err, &url, path))),
        };
        if result.is_err() {
            remove_tree(&temp).at(&temp).map_err(Failure::Final)?;
        }
        result
    }

    /// The host store's copy of `path` when it is there and its NAR hash is
    /// the narinfo's (hashed once, then remembered while the copy stays).
    fn host_in_place(&self, path: &StorePath, info: &NarInfo) -> Option<PathBuf> {
        let candidate = self.host_store()?.join(path.to_basename());
        candidate.symlink_metadata().ok()?;
        let expected = format!(
            "{} {}",
            info.nar_hash().to_nix_nixbase32_string(),
            info.nar_size()
        );
        if self.host_verified(path, &candidate, &expected) {
            return Some(candidate);
        }
        let hash = hash_path(&candidate, CaseHack::Disabled).ok()?;
        let matches =
            hash.size == info.nar_size() && hash.sha256[..] == *info.nar_hash().digest_as_bytes();
        if matches {
            self.record_host_verified(path, &candidate, &expected);
        }
        matches.then_some(candidate)
    }
}

fn nar_error(err: NarError, url: &str, path: &StorePath) -> StoreError {
    match err {
        NarError::UnsupportedCompression(compression) => StoreError::UnsupportedCompression {
            url: url.to_string(),
            path: path.to_string(),
            compression,
        },
        other => StoreError::BadNar {
            url: url.to_string(),
            path: path.to_string(),
            reason: other.to_string(),
        },
    }
}

/// References before referrers; ties broken by path so the order is stable.
fn topological_order(known: &BTreeMap<StorePath, Known>) -> Vec<StorePath> {
    let mut order = Vec::with_capacity(known.len());
    let mut done = BTreeSet::new();
    for root in known.keys() {
        visit(root, known, &mut done, &mut BTreeSet::new(), &mut order);
    }
    order
}

fn visit(
    path: &StorePath,
    known: &BTreeMap<StorePath, Known>,
    done: &mut BTreeSet<StorePath>,
    in_progress: &mut BTreeSet<StorePath>,
    order: &mut Vec<StorePath>,
) {
    // Store path references cannot form cycles except self-references; the
    // in-progress set keeps a hostile cache's cycle from recursing forever.
    if done.contains(path) || !in_progress.insert(path.clone()) {
        return;
    }
    if let Some(entry) = known.get(path) {
        for reference in entry.info.references() {
            if reference != path {
                visit(reference, known, done, in_progress, order);
            }
        }
    }
    in_progress.remove(path);
    done.insert(path.clone());
    order.push(path.clone());
}

/// `f` over `items` on up to `jobs` threads, results in input order.
fn parallel_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(index) else { break };
                let result = f(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, references: &[&str]) -> (StorePath, Known) {
        let path =
            |n: &str| StorePath::from_basename(format!("{}-{n}", n.repeat(32)).as_bytes()).unwrap();
        let hash = nix_derivation::NixHash::from_algorithm_and_digest(
            nix_derivation::HashAlgorithm::Sha256,
            &[0; 32],
        )
        .unwrap();
        let info = NarInfo::builder(path(name), "nar/x.nar", hash, 1)
            .references(references.iter().map(|r| path(r)))
            .build()
            .unwrap();
        (
            path(name),
            Known {
                info,
                source: Source::Kept,
            },
        )
    }

    #[test]
    fn references_come_before_referrers_and_cycles_end() {
        // A chain a -> b -> c -> d whose referrers sort before their
        // references, a shortcut a -> c, a self-reference on b, and a
        // hostile cycle x <-> y entered from f and leaving to d.
        let edges: &[(&str, &[&str])] = &[
            ("a", &["b", "c"]),
            ("b", &["b", "c"]),
            ("c", &["d"]),
            ("d", &[]),
            ("f", &["x"]),
            ("x", &["y"]),
            ("y", &["x", "d"]),
        ];
        let cyclic = [("b", "b"), ("x", "y"), ("y", "x")];
        let graph: BTreeMap<StorePath, Known> = edges
            .iter()
            .map(|(name, references)| known(name, references))
            .collect();
        let order: Vec<String> = topological_order(&graph)
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c", "d", "f", "x", "y"], "{order:?}");
        let at = |n: &str| order.iter().position(|o| o == n).unwrap();
        let mut checked = 0;
        for (referrer, references) in edges {
            for reference in references.iter() {
                if !cyclic.contains(&(*referrer, *reference)) {
                    assert!(
                        at(reference) < at(referrer),
                        "{reference} after its referrer {referrer}: {order:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6);
    }

    #[test]
    fn parallel_map_keeps_input_order() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = parallel_map(&items, 7, |x| x * 2);
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(parallel_map(&[] as &[u32], 4, |x| *x).is_empty());
    }
}
