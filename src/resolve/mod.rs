//! The package stage: the plan's Nix attribute names resolved to store
//! paths ([`resolve`]), then fetched with their closure ([`realize`], by
//! `kiln-store`). `kiln build`, `pack`, `shell`, `realize` and `lock` all
//! get their packages here.
//!
//! Sources, in order: the app's `kiln.lock`; kiln's evaluation cache; else
//! a Nix evaluator run in the sandbox (the host's `nix-instantiate`, else a
//! Nix kiln fetches from the binary caches). Packages are grouped by
//! nixpkgs archive the way upstream Nixpacks groups them. kiln downloads
//! the nixpkgs archive and URL overlays itself ([`archive`]) and has the
//! evaluator read the unpacked folders, so evaluation fetches nothing.

pub mod archive;
mod eval;
mod eval_cache;
mod evaluator;
pub mod lock;
mod packages;
pub mod sandboxed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use archive::{ArchiveError, Archives};
pub use eval::{expression, NixpkgsSource};
pub use eval_cache::{EvalCache, EvalInputs};
pub use evaluator::{Evaluator, StoreEvaluator};
pub use lock::{Lock, LockEntry, LockError, LockedPackage, LOCK_FILE};
pub use packages::{
    build_groups, lock_plan, read_closure, realize, resolve_names, resolve_plan, ImagePackages,
    PackageSources, Packages, Wanted, BASE_PACKAGES,
};

/// Upstream Nixpacks' default nixpkgs archive (a nixpkgs commit), used for
/// phases that name none.
pub const DEFAULT_NIXPKGS_ARCHIVE: &str = "5148520bfab61f99fd25fb9ff7bfbb50dad3c9db";

/// The packages of one phase (or of several sharing an archive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageGroup {
    /// `nixpkgsArchive`; `None` means [`DEFAULT_NIXPKGS_ARCHIVE`].
    pub nixpkgs_archive: Option<String>,
    /// `nixOverlays`: overlay tarball URLs (or local files), in order.
    pub overlays: Vec<String>,
    /// `nixPkgs`: attribute names whose outputs go on `PATH`.
    pub pkgs: Vec<String>,
    /// `nixLibs`: attribute names whose `lib` folders go on
    /// `LD_LIBRARY_PATH`.
    pub libs: Vec<String>,
}

/// How to resolve.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The lock file (`<app>/kiln.lock`), read when present.
    pub lock_file: PathBuf,
    /// Evaluate against this nixpkgs folder instead of the archive tarball.
    pub nixpkgs: Option<PathBuf>,
    /// Evaluate even when the lock has every attribute (`kiln lock`).
    pub refresh: bool,
    /// Write what was evaluated into the lock file.
    pub write_lock: bool,
    /// Which `nix-instantiate` to use.
    pub evaluator: Evaluator,
    /// Earlier evaluations to reuse and record, when set. `refresh` skips
    /// reading it.
    pub eval_cache: Option<EvalCache>,
    /// Where the evaluation sandbox keeps its scratch folders (in kiln's
    /// cache, whose filesystem has the user xattrs overlays need).
    pub work: PathBuf,
    /// Where nixpkgs archives and URL overlays are downloaded from and
    /// kept.
    pub archives: Archives,
}

impl ResolveOptions {
    /// Options for the app in `app_dir`: its `kiln.lock`, evaluating (and
    /// writing the lock) only for attributes the lock lacks, with the
    /// host's evaluator; scratch folders and archives in the kiln cache at
    /// `cache_root`.
    pub fn for_app(app_dir: &Path, cache_root: &Path) -> ResolveOptions {
        ResolveOptions {
            lock_file: app_dir.join(LOCK_FILE),
            nixpkgs: None,
            refresh: false,
            write_lock: true,
            evaluator: Evaluator::Auto(None),
            eval_cache: None,
            work: eval_work(cache_root),
            archives: Archives::open(cache_root),
        }
    }
}

/// The evaluation sandboxes' scratch folder in kiln's cache.
pub fn eval_work(cache_root: &Path) -> PathBuf {
    cache_root.join("eval-work")
}

/// Where a resolution's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Every attribute was in the lock.
    Lock,
    /// At least one group was evaluated.
    Evaluated,
    /// Every group the lock lacked was an earlier evaluation kiln's cache
    /// recorded.
    Cached,
}

/// One resolved group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedGroup {
    /// The archive the attributes came from.
    pub nixpkgs_archive: String,
    /// The overlays applied.
    pub overlays: Vec<String>,
    /// `nixPkgs` attribute to its output path.
    pub pkgs: BTreeMap<String, String>,
    /// `nixLibs` attribute to its output path.
    pub libs: BTreeMap<String, String>,
    /// Output path to the derivation that builds it, where known.
    pub derivations: BTreeMap<String, String>,
}

impl ResolvedGroup {
    /// `<path>/lib` of each library, for `LD_LIBRARY_PATH`.
    pub fn library_dirs(&self) -> Vec<String> {
        self.libs
            .values()
            .map(|path| format!("{path}/lib"))
            .collect()
    }
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// One per archive, sorted by archive.
    pub groups: Vec<ResolvedGroup>,
    /// Lock or evaluator.
    pub answer: Answer,
}

impl Resolved {
    /// Every output path named, sorted, without repeats: the roots to
    /// realize.
    pub fn store_paths(&self) -> Vec<String> {
        let paths: BTreeSet<&String> = self
            .groups
            .iter()
            .flat_map(|g| g.pkgs.values().chain(g.libs.values()))
            .collect();
        paths.into_iter().cloned().collect()
    }

    /// Output path to derivation, for every named path whose derivation is
    /// known.
    pub fn derivations(&self) -> BTreeMap<String, String> {
        self.groups
            .iter()
            .flat_map(|g| g.derivations.clone())
            .collect()
    }

    /// `<path>/lib` of every library, in group order.
    pub fn library_dirs(&self) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(ResolvedGroup::library_dirs)
            .collect()
    }

    /// Every output path named to the package name that gave it (the
    /// first, where two names give one path).
    pub fn package_names(&self) -> BTreeMap<String, String> {
        let mut names = BTreeMap::new();
        for group in &self.groups {
            for (name, path) in group.pkgs.iter().chain(&group.libs) {
                names.entry(path.clone()).or_insert_with(|| name.clone());
            }
        }
        names
    }
}

/// Why resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The lock file could not be read or written.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Neither the lock nor an evaluator can answer.
    #[error("{packages} not in {lock}, and {why}: commit a kiln.lock (`kiln lock` where an evaluator runs), name a Nix your caches have with --evaluator, or install nix")]
    NoEvaluator {
        /// The attributes missing, comma separated.
        packages: String,
        /// The lock file consulted.
        lock: String,
        /// Why no evaluator runs.
        why: String,
    },
    /// The nixpkgs archive or an overlay could not be downloaded.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Nix refused the expression (unknown attribute, no network, ...).
    #[error("evaluating the packages with {source_name} failed:\n{message}")]
    Evaluation {
        /// The nixpkgs evaluated.
        source_name: String,
        /// Nix's own error.
        message: String,
    },
    /// A name that cannot go into a Nix expression.
    #[error("`{name}` is not a valid {what}")]
    BadName {
        /// What kind of name.
        what: &'static str,
        /// The name.
        name: String,
    },
}

/// Merges groups with the same archive, as upstream Nixpacks does; names
/// are sorted and deduplicated.
pub fn group_by_archive(groups: &[PackageGroup]) -> Vec<PackageGroup> {
    let mut merged: BTreeMap<String, PackageGroup> = BTreeMap::new();
    for group in groups {
        let archive = group
            .nixpkgs_archive
            .clone()
            .unwrap_or_else(|| DEFAULT_NIXPKGS_ARCHIVE.to_string());
        let entry = merged
            .entry(archive.clone())
            .or_insert_with(|| PackageGroup {
                nixpkgs_archive: Some(archive),
                ..PackageGroup::default()
            });
        for overlay in &group.overlays {
            if !entry.overlays.contains(overlay) {
                entry.overlays.push(overlay.clone());
            }
        }
        entry.pkgs.extend(group.pkgs.iter().cloned());
        entry.libs.extend(group.libs.iter().cloned());
    }
    merged
        .into_values()
        .filter(|g| !g.pkgs.is_empty() || !g.libs.is_empty())
        .map(|mut g| {
            for names in [&mut g.pkgs, &mut g.libs] {
                names.sort();
                names.dedup();
            }
            g
        })
        .collect()
}

/// The Nix system kiln runs on, as Nix names it.
pub fn current_system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Resolves every group's attributes to store paths.
pub fn resolve(
    groups: &[PackageGroup],
    options: &ResolveOptions,
) -> Result<Resolved, ResolveError> {
    let groups = group_by_archive(groups);
    let mut lock = Lock::read(&options.lock_file)?;
    let system = current_system();
    let mut answer = Answer::Lock;
    let mut resolved = Vec::with_capacity(groups.len());
    for group in &groups {
        let archive = group.nixpkgs_archive.clone().unwrap_or_default();
        let attributes: Vec<String> = group
            .pkgs
            .iter()
            .chain(&group.libs)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let locked = lock
            .entry(&archive, &group.overlays, &system)
            .filter(|entry| attributes.iter().all(|a| entry.packages.contains_key(a)));
        let entry = match locked {
            Some(entry) if !options.refresh => entry.clone(),
            _ => {
                let (entry, from) = unlocked_entry(group, &attributes, &lock, options)?;
                answer = match (answer, from) {
                    (_, Answer::Evaluated) | (Answer::Evaluated, _) => Answer::Evaluated,
                    _ => Answer::Cached,
                };
                lock.merge(entry.clone());
                entry
            }
        };
        let pick = |names: &[String]| -> BTreeMap<String, String> {
            names
                .iter()
                .filter_map(|n| {
                    entry
                        .packages
                        .get(n)
                        .map(|p| (n.clone(), p.out_path.clone()))
                })
                .collect()
        };
        resolved.push(ResolvedGroup {
            nixpkgs_archive: archive,
            overlays: group.overlays.clone(),
            pkgs: pick(&group.pkgs),
            libs: pick(&group.libs),
            derivations: entry
                .packages
                .iter()
                .filter(|(name, _)| attributes.contains(name))
                .filter_map(|(_, p)| Some((p.out_path.clone(), p.drv_path.clone()?)))
                .collect(),
        });
    }
    if answer != Answer::Lock && options.write_lock {
        lock.version = lock::LOCK_VERSION;
        lock.write(&options.lock_file)?;
    }
    Ok(Resolved {
        groups: resolved,
        answer,
    })
}

/// The lock entry of `group` when the lock lacks it: an earlier
/// evaluation from kiln's cache ([`Answer::Cached`]), else a new one
/// ([`Answer::Evaluated`], recorded in the cache).
fn unlocked_entry(
    group: &PackageGroup,
    attributes: &[String],
    lock: &Lock,
    options: &ResolveOptions,
) -> Result<(LockEntry, Answer), ResolveError> {
    let archive = group.nixpkgs_archive.clone().unwrap_or_default();
    let system = current_system();
    let source = match &options.nixpkgs {
        Some(dir) => NixpkgsSource::Folder(dir.clone()),
        None => NixpkgsSource::Archive(options.archives.nixpkgs_url(&archive)?),
    };
    let inputs = EvalInputs {
        source: &source,
        overlays: &group.overlays,
        attributes,
        system: &system,
    };
    let cached = options
        .eval_cache
        .as_ref()
        .filter(|_| !options.refresh)
        .and_then(|cache| cache.get(&inputs))
        .filter(|entry| agrees_with_lock(entry, lock));
    if let Some(entry) = cached {
        return Ok((entry, Answer::Cached));
    }
    let no_evaluator = |why: String| ResolveError::NoEvaluator {
        packages: missing(lock, &archive, &group.overlays, &system, attributes),
        lock: options.lock_file.display().to_string(),
        why,
    };
    let evaluator = match options.evaluator.find() {
        Ok(Some(evaluator)) => evaluator,
        Ok(None) => return Err(no_evaluator("no Nix evaluator is available".into())),
        Err(err) => return Err(no_evaluator(err.to_string())),
    };
    let fetched = fetch_sources(group, &archive, lock, options)?;
    let mut entry = eval::evaluate(
        &evaluator,
        &options.work,
        &fetched.source,
        &archive,
        &fetched.overlays,
        attributes,
    )
    .map_err(|err| match err {
        // The folders are kiln's unpacked copies: name what the plan
        // named, the packages asked for and the overlays applied.
        ResolveError::Evaluation {
            source_name,
            message,
        } => ResolveError::Evaluation {
            source_name: format!(
                "{} (packages {}{})",
                match &source {
                    NixpkgsSource::Archive(url) => format!("nixpkgs archive {url}"),
                    NixpkgsSource::Folder(_) => source_name,
                },
                attributes.join(", "),
                match group.overlays.is_empty() {
                    true => String::new(),
                    false => format!("; overlays {}", group.overlays.join(", ")),
                }
            ),
            message,
        },
        other => other,
    })?;
    // Locks are looked up by kiln's idea of the system and the plan's
    // overlays, not the folders they were unpacked to.
    entry.system = system.clone();
    entry.overlays = group.overlays.clone();
    entry.nixpkgs_sha256 = fetched.nixpkgs_sha256;
    entry.overlay_sha256 = fetched.overlay_sha256;
    if let Some(cache) = &options.eval_cache {
        cache.put(&inputs, &entry);
    }
    Ok((entry, Answer::Evaluated))
}

/// A group's nixpkgs and overlays as local folders the evaluator reads.
struct Fetched {
    /// Always [`NixpkgsSource::Folder`].
    source: NixpkgsSource,
    /// Local paths, in the plan's order.
    overlays: Vec<String>,
    nixpkgs_sha256: Option<String>,
    overlay_sha256: BTreeMap<String, String>,
}

/// Downloads (or finds in kiln's cache) `group`'s nixpkgs archive, unless
/// a `--nixpkgs` folder stands in for it, and its URL overlays, each
/// checked against the sha256 the lock records.
fn fetch_sources(
    group: &PackageGroup,
    archive: &str,
    lock: &Lock,
    options: &ResolveOptions,
) -> Result<Fetched, ResolveError> {
    let local = |unpacked: archive::Unpacked| {
        let dir = unpacked.dir.into_os_string().into_string();
        let dir = dir.map_err(|dir| ResolveError::BadName {
            what: "cache folder (set KILN_CACHE_DIR to a UTF-8 path)",
            name: dir.to_string_lossy().into_owned(),
        })?;
        Ok::<_, ResolveError>((dir, unpacked.sha256))
    };
    let (source, nixpkgs_sha256) = match &options.nixpkgs {
        Some(dir) => (NixpkgsSource::Folder(dir.clone()), None),
        None => {
            let (dir, sha256) = local(
                options
                    .archives
                    .nixpkgs(archive, lock.archive_sha256(archive))?,
            )?;
            (NixpkgsSource::Folder(dir.into()), Some(sha256))
        }
    };
    let mut overlays = Vec::with_capacity(group.overlays.len());
    let mut overlay_sha256 = BTreeMap::new();
    for overlay in &group.overlays {
        if overlay.starts_with('/') {
            overlays.push(overlay.clone());
            continue;
        }
        let (dir, sha256) = local(
            options
                .archives
                .overlay(overlay, lock.overlay_sha256(overlay))?,
        )?;
        overlays.push(dir);
        overlay_sha256.insert(overlay.clone(), sha256);
    }
    Ok(Fetched {
        source,
        overlays,
        nixpkgs_sha256,
        overlay_sha256,
    })
}

/// Whether a cached evaluation used the archives the lock pins: one made
/// from other bytes behind the same URLs must not answer.
fn agrees_with_lock(entry: &LockEntry, lock: &Lock) -> bool {
    let same = |locked: Option<&str>, cached: &str| locked.is_none_or(|l| l == cached);
    entry
        .nixpkgs_sha256
        .as_deref()
        .is_none_or(|cached| same(lock.archive_sha256(&entry.nixpkgs_archive), cached))
        && entry
            .overlay_sha256
            .iter()
            .all(|(url, cached)| same(lock.overlay_sha256(url), cached))
}

fn missing(
    lock: &Lock,
    archive: &str,
    overlays: &[String],
    system: &str,
    attributes: &[String],
) -> String {
    let entry = lock.entry(archive, overlays, system);
    attributes
        .iter()
        .filter(|a| entry.is_none_or(|e| !e.packages.contains_key(*a)))
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
