//! The package stage every subcommand shares: names (a plan's packages and
//! kiln's base packages, or names given on the command line) resolved to
//! store paths, then realized with their closure by `kiln-store`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_providers::Phase;
use kiln_store::{
    parse_store_path, Closure, ClosurePath, FetchOptions, RealizeProgress, Store, StoreError,
    StorePath, Substituters,
};

use super::eval::is_package_expression;
use super::{
    Archives, EvalCache, Evaluator, PackageGroup, ResolveOptions, Resolved,
    DEFAULT_NIXPKGS_ARCHIVE, LOCK_FILE,
};
use crate::layer::StorePathSource;
use crate::resolve;
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
    /// The packages on the profile, first wins, each once: the plan's,
    /// then the base packages (or those named on the command line).
    pub roots: Vec<StorePathSource>,
    /// Library folders of the plan's `nixLibs`.
    pub library_dirs: Vec<String>,
    /// Store paths of [`BASE_PACKAGES`] and of the plan's `nixLibs`: what
    /// an app started in a separate run image keeps.
    pub runtime_roots: Vec<String>,
}

/// The packages that go into one image: the profile's packages and every
/// store path to pack.
pub struct ImagePackages {
    /// Named in the profile, first wins.
    pub roots: Vec<StorePathSource>,
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
                .filter(|root| wanted.contains(&root.store_path))
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
            .filter(|root| root.local.join("bin").is_dir())
            .map(|root| format!("{}/bin", root.store_path))
            .collect()
    }

    /// The packages' bash, as seen inside the sandbox.
    pub fn bash(&self) -> Option<PathBuf> {
        self.roots
            .iter()
            .find(|root| root.local.join("bin/bash").is_file())
            .map(|root| Path::new(&root.store_path).join("bin/bash"))
    }
}

/// Where packages come from: the nixpkgs to evaluate against, the binary
/// caches and their keys, and whether the host's `/nix/store` may serve.
#[derive(Debug, Clone)]
pub struct PackageSources {
    /// A local nixpkgs folder (absolute) standing in for the plan's archive.
    pub nixpkgs: Option<PathBuf>,
    /// Binary cache URLs, in order; empty for the public NixOS cache.
    pub substituters: Vec<String>,
    /// `name:base64` keys narinfo signatures are checked against.
    pub trusted_public_keys: Vec<String>,
    /// How many downloads run at once.
    pub jobs: usize,
    /// Whether narinfo signatures are checked (off only for `kiln realize
    /// --no-verify`).
    pub verify_signatures: bool,
    /// Whether paths valid in the host's `/nix/store` are used in place.
    pub use_host_store: bool,
    /// The Nix that evaluates package names, by store path (`--evaluator`);
    /// `None`: the host's, else kiln's pinned release.
    pub evaluator: Option<String>,
}

impl PackageSources {
    /// The substituters, with `KILN_NETRC` (else `~/.netrc`) credentials.
    pub fn substituters(&self) -> anyhow::Result<Substituters> {
        let options = FetchOptions {
            jobs: self.jobs.max(1),
            verify_signatures: self.verify_signatures,
            ..FetchOptions::default()
        };
        let substituters =
            Substituters::new(&self.substituters, &self.trusted_public_keys, options)?;
        Ok(match netrc_text()? {
            Some(text) => substituters.with_netrc(&text),
            None => substituters,
        })
    }

    /// kiln's store in `cache_root`, consulting the host store if allowed.
    pub fn store(&self, cache_root: &Path) -> anyhow::Result<Store> {
        let host = self
            .use_host_store
            .then(|| PathBuf::from(kiln_store::HOST_STORE));
        Ok(Store::open(cache_root)?.with_host_store(host))
    }

    fn resolve_options(&self, lock_file: PathBuf, cache_root: &Path) -> ResolveOptions {
        ResolveOptions {
            lock_file,
            nixpkgs: self.nixpkgs.clone(),
            refresh: false,
            // Resolving reads the lock, never writes it; `kiln lock` does.
            write_lock: false,
            evaluator: Evaluator::for_sources(self, cache_root),
            eval_cache: Some(EvalCache::open(cache_root)),
            work: super::eval_work(cache_root),
            archives: Archives::open(cache_root),
        }
    }
}

/// Credentials for private caches: `KILN_NETRC`, else `~/.netrc`.
fn netrc_text() -> anyhow::Result<Option<String>> {
    if let Some(path) = std::env::var_os("KILN_NETRC") {
        let path = Path::new(&path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read KILN_NETRC file {}", path.display()))?;
        return Ok(Some(text));
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(None);
    };
    Ok(std::fs::read_to_string(Path::new(&home).join(".netrc")).ok())
}

/// Resolved store paths, before they are fetched.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The packages on the profile, in the order that wins name
    /// collisions, each once.
    pub profile: Vec<String>,
    /// Every path to realize with its closure: the profile's and the
    /// libraries'.
    pub roots: Vec<String>,
    /// Output path to the derivation that builds it, where known.
    pub derivations: BTreeMap<String, String>,
    /// Library folders of the plan's `nixLibs`.
    pub library_dirs: Vec<String>,
    /// What an app started in a separate run image keeps.
    pub runtime_roots: Vec<String>,
    /// Root path to the package name the plan gave it, so a root no cache
    /// holds is reported by that name.
    pub names: BTreeMap<String, String>,
}

/// Resolves the packages of `phases` plus [`BASE_PACKAGES`] for the app in
/// `app_dir`: from its `kiln.lock`, kiln's evaluation cache, or an
/// evaluation.
pub fn resolve_plan(
    phases: &[&Phase],
    sources: &PackageSources,
    app_dir: &Path,
    cache_root: &Path,
) -> anyhow::Result<Wanted> {
    let groups = build_groups(phases, sources.nixpkgs.is_some());
    let options = sources.resolve_options(app_dir.join(LOCK_FILE), cache_root);
    let resolved =
        resolve::resolve(&groups, &options).context("could not resolve the plan's Nix packages")?;
    let mut profile: Vec<String> = Vec::new();
    for group in &resolved.groups {
        for attribute in group_order(&groups, &group.nixpkgs_archive) {
            if let Some(path) = group.pkgs.get(&attribute) {
                if !profile.contains(path) {
                    profile.push(path.clone());
                }
            }
        }
    }
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
    Ok(Wanted {
        profile,
        roots: resolved.store_paths(),
        derivations: resolved.derivations(),
        library_dirs: resolved.library_dirs(),
        runtime_roots,
        names: resolved.package_names(),
    })
}

/// Resolves `names`, each a store path (`/nix/store/...`) or a nixpkgs
/// attribute, keeping their order; attributes are answered by `lock_file`,
/// kiln's evaluation cache, or an evaluation.
pub fn resolve_names(
    names: &[String],
    sources: &PackageSources,
    lock_file: &Path,
    cache_root: &Path,
) -> anyhow::Result<Wanted> {
    let attributes: Vec<String> = names
        .iter()
        .filter(|name| !name.starts_with('/'))
        .cloned()
        .collect();
    let resolved = if attributes.is_empty() {
        None
    } else {
        let group = PackageGroup {
            pkgs: attributes,
            ..PackageGroup::default()
        };
        let options = sources.resolve_options(lock_file.to_path_buf(), cache_root);
        Some(resolve::resolve(&[group], &options).context("could not resolve the packages")?)
    };
    let mut profile: Vec<String> = Vec::new();
    for name in names {
        let path = if name.starts_with('/') {
            parse_store_path(name)?.to_string()
        } else {
            resolved
                .iter()
                .flat_map(|resolved| &resolved.groups)
                .find_map(|group| group.pkgs.get(name))
                .cloned()
                .with_context(|| format!("nixpkgs has no attribute {name}"))?
        };
        // Two names for one package (nodejs, nodejs_20) must not collide
        // with themselves in the profile.
        if !profile.contains(&path) {
            profile.push(path);
        }
    }
    Ok(Wanted {
        roots: profile.clone(),
        derivations: resolved
            .as_ref()
            .map(|r| r.derivations())
            .unwrap_or_default(),
        runtime_roots: profile.clone(),
        profile,
        library_dirs: Vec::new(),
        names: resolved.map(|r| r.package_names()).unwrap_or_default(),
    })
}

/// Fetches `wanted` with its closure into kiln's store (or finds it in the
/// host's), telling `progress` how it goes.
pub fn realize(
    wanted: &Wanted,
    sources: &PackageSources,
    cache_root: &Path,
    progress: &dyn RealizeProgress,
) -> anyhow::Result<Packages> {
    let (roots, derivations) = parse_wanted(wanted)?;
    let substituters = sources.substituters()?;
    let closure = sources
        .store(cache_root)?
        .realize_with_progress(&substituters, &roots, &derivations, progress)
        .map_err(|error| name_missing_package(error, wanted))
        .context("could not fetch the Nix packages")?;
    Ok(packages_of(wanted, closure))
}

/// Says which of the plan's packages no cache holds. A package expression
/// (`(php81.withExtensions ...)`) is a new derivation public caches rarely
/// have, and kiln builds nothing, so that error says where it must come
/// from.
fn name_missing_package(error: StoreError, wanted: &Wanted) -> anyhow::Error {
    let name = match &error {
        StoreError::NotInAnyCache { path, .. } => wanted.names.get(path),
        _ => None,
    };
    let Some(name) = name.cloned() else {
        return error.into();
    };
    let message = if is_package_expression(&name) {
        format!(
            "the package expression `{name}` gives a derivation that none of the caches holds, and kiln builds nothing: build it once with Nix and copy it to one of your caches (`nix copy --to <cache> <path>`), or name packages the caches have"
        )
    } else {
        format!("the package `{name}` is in none of the caches")
    };
    anyhow::Error::new(error).context(message)
}

/// The closure of `wanted` read from narinfo alone, nothing downloaded:
/// packages whose files are not here (see [`kiln_store::Store::read_closure`]).
pub fn read_closure(
    wanted: &Wanted,
    sources: &PackageSources,
    cache_root: &Path,
) -> anyhow::Result<Packages> {
    let (roots, derivations) = parse_wanted(wanted)?;
    let substituters = sources.substituters()?;
    let paths = sources
        .store(cache_root)?
        .read_closure(&substituters, &roots, &derivations)
        .context("could not read the Nix packages' narinfo")?;
    Ok(packages_of(wanted, Closure::unrealized(paths)))
}

type Roots = (Vec<StorePath>, BTreeMap<StorePath, StorePath>);

fn parse_wanted(wanted: &Wanted) -> anyhow::Result<Roots> {
    let roots: Vec<StorePath> = wanted
        .roots
        .iter()
        .map(|path| parse_store_path(path))
        .collect::<Result<_, _>>()?;
    let mut derivations = BTreeMap::new();
    for (out, drv) in &wanted.derivations {
        derivations.insert(parse_store_path(out)?, parse_store_path(drv)?);
    }
    Ok((roots, derivations))
}

fn packages_of(wanted: &Wanted, closure: Closure) -> Packages {
    let roots = wanted
        .profile
        .iter()
        .filter_map(|path| {
            closure
                .paths
                .iter()
                .find(|p| &p.path.to_string() == path)
                .map(StorePathSource::from)
        })
        .collect();
    Packages {
        roots,
        library_dirs: wanted.library_dirs.clone(),
        runtime_roots: wanted.runtime_roots.clone(),
        closure,
    }
}

/// Resolves the packages a build of the app in `app_dir` needs, always by
/// evaluation, and writes them to its `kiln.lock`; archives are kept in
/// the kiln cache at `cache_root`.
pub fn lock_plan(
    phases: &[&Phase],
    sources: &PackageSources,
    app_dir: &Path,
    cache_root: &Path,
) -> anyhow::Result<(PathBuf, Resolved)> {
    let groups = build_groups(phases, sources.nixpkgs.is_some());
    let options = ResolveOptions {
        lock_file: app_dir.join(LOCK_FILE),
        nixpkgs: sources.nixpkgs.clone(),
        refresh: true,
        write_lock: true,
        evaluator: Evaluator::for_sources(sources, cache_root),
        eval_cache: None,
        work: super::eval_work(cache_root),
        archives: Archives::open(cache_root),
    };
    let resolved = resolve::resolve(&groups, &options)?;
    Ok((options.lock_file, resolved))
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

/// The attribute names of the groups with `archive` (a group naming none
/// has the default one), in plan order, so the profile's first package
/// wins a name collision as the plan intends.
fn group_order(groups: &[PackageGroup], archive: &str) -> Vec<String> {
    groups
        .iter()
        .filter(|g| {
            g.nixpkgs_archive
                .as_deref()
                .unwrap_or(DEFAULT_NIXPKGS_ARCHIVE)
                == archive
        })
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
    fn a_group_without_an_archive_orders_the_default_archive() {
        let groups = build_groups(&[], false);
        assert_eq!(
            group_order(&groups, DEFAULT_NIXPKGS_ARCHIVE),
            BASE_PACKAGES.map(String::from)
        );
        assert!(group_order(&groups, "other").is_empty());
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

    #[test]
    fn a_root_no_cache_holds_is_named_by_its_package_and_an_expression_says_why() {
        let php = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-php-with-extensions-8.2";
        let node = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-nodejs-20";
        let wanted = Wanted {
            names: BTreeMap::from([
                (
                    php.to_string(),
                    "(php.withExtensions (pe: pe.enabled))".to_string(),
                ),
                (node.to_string(), "nodejs_20".to_string()),
            ]),
            ..Wanted::default()
        };
        let missing = |path: &str| StoreError::NotInAnyCache {
            path: path.into(),
            tried: "https://cache.example".into(),
        };

        let expression = format!("{:#}", name_missing_package(missing(php), &wanted));
        assert!(
            expression
                .starts_with("the package expression `(php.withExtensions (pe: pe.enabled))`"),
            "{expression}"
        );
        assert!(expression.contains("kiln builds nothing"), "{expression}");
        assert!(expression.contains(php), "{expression}");

        let attribute = format!("{:#}", name_missing_package(missing(node), &wanted));
        assert!(
            attribute.starts_with("the package `nodejs_20` is in none of the caches: "),
            "{attribute}"
        );

        let dependency = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-glibc-2.36";
        let other = format!("{:#}", name_missing_package(missing(dependency), &wanted));
        assert!(other.starts_with(dependency), "{other}");
    }
}
