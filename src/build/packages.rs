//! The packages stage: the plan's Nix packages (and kiln's base packages)
//! resolved to store paths and realized with their closure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_providers::Phase;
use kiln_store::{parse_store_path, Closure, ClosurePath, RealizeProgress, Store, StorePath};

use crate::cli::StoreArgs;
use crate::resolve::{self, EvalCache, Evaluator, PackageGroup, ResolveOptions, LOCK_FILE};
use crate::sandbox::StoreBind;

/// What every image holds besides the plan's packages: a shell, the core
/// tools, sed and grep (start commands such as the static-site provider's
/// edit files with sed) and CA certificates, as upstream's base image has
/// them.
pub const BASE_PACKAGES: [&str; 5] = ["bash", "coreutils", "gnused", "gnugrep", "cacert"];

/// The realized packages of a build.
pub struct Packages {
    /// The whole closure; holds its paths against `prune` while alive.
    pub closure: Closure,
    /// The packages named by the plan, then the base packages, each once:
    /// `/nix/store/...` and where its files are.
    pub roots: Vec<(String, PathBuf)>,
    /// Library folders of the plan's `nixLibs`.
    pub library_dirs: Vec<String>,
    /// Store paths of [`BASE_PACKAGES`] and of the plan's `nixLibs`: what
    /// an app started in a separate run image keeps.
    pub runtime_roots: Vec<String>,
}

/// The packages that go into one image: the profile's packages and every
/// store path to pack.
pub struct ImagePackages {
    /// Named in the profile, first wins: `/nix/store/...` and its files.
    pub roots: Vec<(String, PathBuf)>,
    /// The closure of the roots (and libraries), references first.
    pub paths: Vec<ClosurePath>,
}

impl Packages {
    /// Everything the build realized: the built image's packages.
    pub fn everything(&self) -> ImagePackages {
        ImagePackages {
            roots: self.roots.clone(),
            paths: self.closure.paths.clone(),
        }
    }

    /// Only [`Packages::runtime_roots`] and their closure: a run image's
    /// packages, without the build's tools.
    pub fn runtime(&self) -> ImagePackages {
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let mut pending: Vec<String> = self.runtime_roots.clone();
        while let Some(path) = pending.pop() {
            if !wanted.insert(path.clone()) {
                continue;
            }
            if let Some(member) = self
                .closure
                .paths
                .iter()
                .find(|p| p.path.to_string() == path)
            {
                pending.extend(member.references.iter().map(ToString::to_string));
            }
        }
        ImagePackages {
            roots: self
                .roots
                .iter()
                .filter(|(path, _)| wanted.contains(path))
                .cloned()
                .collect(),
            paths: self
                .closure
                .paths
                .iter()
                .filter(|p| wanted.contains(&p.path.to_string()))
                .cloned()
                .collect(),
        }
    }

    /// Every closure path as a sandbox bind.
    pub fn store_binds(&self) -> Vec<StoreBind> {
        self.closure
            .paths
            .iter()
            .map(|p| StoreBind {
                host: p.location.clone(),
                name: p
                    .path
                    .to_string()
                    .trim_start_matches("/nix/store/")
                    .to_string(),
            })
            .collect()
    }

    /// `bin` folders of the packages, as seen inside the sandbox.
    pub fn bin_dirs(&self) -> Vec<String> {
        self.roots
            .iter()
            .filter(|(_, local)| local.join("bin").is_dir())
            .map(|(path, _)| format!("{path}/bin"))
            .collect()
    }

    /// The packages' bash, as seen inside the sandbox.
    pub fn bash(&self) -> Option<PathBuf> {
        self.roots
            .iter()
            .find(|(_, local)| local.join("bin/bash").is_file())
            .map(|(path, _)| Path::new(path).join("bin/bash"))
    }
}

/// Resolves and realizes the packages of `phases` plus [`BASE_PACKAGES`],
/// telling `progress` how the realization goes.
pub fn realize(
    phases: &[&Phase],
    store_args: &StoreArgs,
    cache_root: &Path,
    app_dir: &Path,
    progress: &dyn RealizeProgress,
) -> anyhow::Result<Packages> {
    let groups = build_groups(phases, store_args.nixpkgs.is_some());
    let nixpkgs = local_nixpkgs(store_args)?;
    let options = ResolveOptions {
        lock_file: app_dir.join(LOCK_FILE),
        nixpkgs,
        refresh: false,
        // A build reads the app folder, never writes it; `kiln lock` does.
        write_lock: false,
        evaluator: Evaluator::FromPath,
        eval_cache: Some(EvalCache::open(cache_root)),
    };
    let resolved =
        resolve::resolve(&groups, &options).context("could not resolve the plan's Nix packages")?;

    let mut root_names: Vec<String> = Vec::new();
    for group in &resolved.groups {
        for attribute in group_order(&groups, &group.nixpkgs_archive) {
            if let Some(path) = group.pkgs.get(&attribute) {
                if !root_names.contains(path) {
                    root_names.push(path.clone());
                }
            }
        }
    }
    let mut all_roots: Vec<StorePath> = Vec::new();
    for path in resolved.store_paths() {
        all_roots.push(parse_store_path(&path)?);
    }
    let mut derivations = BTreeMap::new();
    for (out, drv) in resolved.derivations() {
        derivations.insert(parse_store_path(&out)?, parse_store_path(&drv)?);
    }
    let substituters = crate::store_commands::substituters(store_args, true)?;
    let store = Store::open(cache_root)?;
    let closure = store
        .realize_with_progress(&substituters, &all_roots, &derivations, progress)
        .context("could not fetch the plan's Nix packages")?;
    let location = |path: &str| {
        closure
            .paths
            .iter()
            .find(|p| p.path.to_string() == path)
            .map(|p| p.location.clone())
    };
    let roots = root_names
        .iter()
        .filter_map(|path| location(path).map(|local| (path.clone(), local)))
        .collect();
    let runtime_roots = resolved
        .groups
        .iter()
        .flat_map(|group| {
            BASE_PACKAGES
                .iter()
                .filter_map(|name| group.pkgs.get(*name))
                .chain(group.libs.values())
        })
        .cloned()
        .collect();
    Ok(Packages {
        roots,
        library_dirs: resolved.library_dirs(),
        runtime_roots,
        closure,
    })
}

/// One group per phase that names Nix packages. With a local nixpkgs
/// folder, overlays given as URLs are not fetched: that folder stands in
/// for the plan's nixpkgs and its overlays, and builds stay offline.
/// The package groups a build resolves: each Nix phase's packages, with
/// [`BASE_PACKAGES`] added to the first group. `kiln lock` locks exactly
/// these, so a build from the lock needs no evaluator.
pub fn build_groups(phases: &[&Phase], local_nixpkgs: bool) -> Vec<PackageGroup> {
    let mut groups = package_groups(phases, local_nixpkgs);
    match groups.first_mut() {
        Some(first) => first.pkgs.extend(BASE_PACKAGES.map(String::from)),
        None => groups.push(PackageGroup {
            pkgs: BASE_PACKAGES.map(String::from).to_vec(),
            ..PackageGroup::default()
        }),
    }
    groups
}

/// `--nixpkgs` as an absolute folder (evaluation runs elsewhere), if given.
pub fn local_nixpkgs(store_args: &StoreArgs) -> anyhow::Result<Option<PathBuf>> {
    store_args
        .nixpkgs
        .as_ref()
        .map(|dir| {
            dir.canonicalize()
                .with_context(|| format!("--nixpkgs {}: no such folder", dir.display()))
        })
        .transpose()
}

fn package_groups(phases: &[&Phase], local_nixpkgs: bool) -> Vec<PackageGroup> {
    phases
        .iter()
        .filter(|phase| phase.uses_nix())
        .map(|phase| {
            let overlays: Vec<String> = phase
                .nix_overlays
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|overlay| {
                    let fetched = !overlay.starts_with('/');
                    if fetched && local_nixpkgs {
                        tracing::info!(
                            "phase {}: overlay {overlay} not fetched; --nixpkgs provides its packages",
                            phase.name()
                        );
                    }
                    !(fetched && local_nixpkgs)
                })
                .collect();
            PackageGroup {
                nixpkgs_archive: phase.nixpkgs_archive.clone(),
                overlays,
                pkgs: phase.nix_pkgs.clone().unwrap_or_default(),
                libs: phase.nix_libs.clone().unwrap_or_default(),
            }
        })
        .collect()
}

/// The attribute names of the groups with `archive`, in plan order, so the
/// profile's first package wins a name collision as the plan intends.
fn group_order(groups: &[PackageGroup], archive: &str) -> Vec<String> {
    groups
        .iter()
        .filter(|g| g.nixpkgs_archive.clone().unwrap_or_default() == archive)
        .flat_map(|g| g.pkgs.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_overlays_are_dropped_only_with_a_local_nixpkgs() {
        let phase = Phase {
            name: Some("setup".into()),
            nix_pkgs: Some(vec!["nodejs_18".into()]),
            nix_overlays: Some(vec![
                "https://example.invalid/overlay.tar.gz".into(),
                "/srv/overlay.nix".into(),
            ]),
            ..Phase::default()
        };
        let local = package_groups(&[&phase], true);
        assert_eq!(local[0].overlays, ["/srv/overlay.nix"]);
        let remote = package_groups(&[&phase], false);
        assert_eq!(remote[0].overlays.len(), 2);
        assert_eq!(remote[0].pkgs, ["nodejs_18"]);
    }

    #[test]
    fn phases_without_nix_packages_make_no_group() {
        let phase = Phase {
            name: Some("build".into()),
            cmds: Some(vec!["make".into()]),
            ..Phase::default()
        };
        assert!(package_groups(&[&phase], true).is_empty());
    }
}
