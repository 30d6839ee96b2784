//! A build's packages, realized only when something needs their files.
//!
//! Before it runs a phase or packs a store path, a build reads little from
//! its packages' files: which packages have `bin`, where bash, `sh`, `env`
//! and the CA bundle are, and the profile's links. That is the
//! [`PackageView`]. Read from the files, or from a record in a registry
//! build cache, it lets a build whose phases and layers are all cached
//! elsewhere finish without downloading a NAR; the closure itself always
//! comes from narinfo.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;

use crate::layer::digest::KeyHasher;
use crate::layer::{
    find_base, profile, BaseFiles, BaseFinds, Kind, StorePathSource, Tree, PROFILE_DIR,
};
use crate::report::{human_size, Progress};
use crate::resolve::{self, PackageSources, Packages, Wanted};

/// Bumped when what a view holds, or how it is read, changes.
const VIEW_VERSION: &str = "kiln-package-view-1";

/// What a build reads from its packages' files.
#[derive(Debug, Clone)]
pub struct PackageView {
    /// `bin` folders of the profile's packages, as in the image.
    pub bin_dirs: Vec<String>,
    /// The packages' bash, as in the image.
    pub bash: Option<String>,
    /// What the base files link to.
    pub base: BaseFinds,
    /// The profile as a tree.
    pub profile: Tree,
}

impl PackageView {
    /// Reads the view from the realized `packages`' files.
    pub fn read(packages: &Packages) -> anyhow::Result<PackageView> {
        let everything = packages.everything();
        let closure: Vec<StorePathSource> =
            everything.paths.iter().map(StorePathSource::from).collect();
        let (profile, collisions) =
            profile(&packages.roots).context("could not read the packages for the profile")?;
        // kiln's base packages (coreutils, bash) often share names with the
        // plan's; the plan's packages come first and win, as intended.
        for collision in collisions {
            tracing::debug!("{collision}: more than one package has it; the plan's wins");
        }
        Ok(PackageView {
            bin_dirs: packages.bin_dirs(),
            bash: packages.bash().map(|p| p.display().to_string()),
            base: find_base(&packages.roots, &closure),
            profile,
        })
    }

    /// The key of the view of `packages`: the profile's packages in order
    /// and every closure path, whose files never change.
    pub fn key(packages: &Packages) -> String {
        let mut hasher = KeyHasher::new();
        hasher.field(VIEW_VERSION.as_bytes());
        hasher.field(&(packages.roots.len() as u64).to_le_bytes());
        for root in &packages.roots {
            hasher.field(root.store_path.as_bytes());
        }
        let mut closure: Vec<String> = packages
            .closure
            .paths
            .iter()
            .map(|p| p.path.to_string())
            .collect();
        closure.sort();
        for path in closure {
            hasher.field(path.as_bytes());
        }
        hasher.hex()
    }

    /// The base files linking into the packages.
    pub fn base_files(&self) -> BaseFiles {
        self.base.files()
    }

    /// The profile's own entries (the folders above it are implied) as
    /// `(name, link target)`, a folder having none; `None` when a name is
    /// not UTF-8 and cannot be recorded.
    pub fn profile_entries(&self) -> Option<Vec<(String, Option<String>)>> {
        let profile = &PROFILE_DIR.as_bytes()[1..];
        self.profile
            .entries()
            .filter(|e| e.name.starts_with(profile))
            .map(|e| {
                let name = String::from_utf8(e.name.clone()).ok()?;
                match &e.kind {
                    Kind::Dir => Some((name, None)),
                    Kind::Symlink { target } => {
                        Some((name, Some(String::from_utf8(target.clone()).ok()?)))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The profile tree of recorded `entries` (see
    /// [`PackageView::profile_entries`]).
    pub fn profile_from(entries: &[(String, Option<String>)]) -> Tree {
        let mut tree = Tree::new();
        for (name, target) in entries {
            match target {
                Some(target) => tree.add_symlink(name, target),
                None => tree.add_dir(name, 0o755),
            }
        }
        tree
    }
}

/// A build's packages: the closure read from narinfo, realized when a
/// phase runs or a store path is packed, and their view.
pub struct BuildPackages<'a> {
    wanted: Wanted,
    sources: &'a PackageSources,
    cache_root: &'a Path,
    progress: &'a Progress,
    /// The closure, realized or not.
    planned: Packages,
    /// The realized packages, once fetched; the planned ones when they
    /// were realized from the start.
    realized: OnceLock<Packages>,
    planned_is_realized: bool,
    /// What the build reads from the packages' files.
    pub view: PackageView,
}

impl<'a> BuildPackages<'a> {
    /// Packages realized already, whose view is read from their files.
    pub fn realized(
        wanted: Wanted,
        packages: Packages,
        sources: &'a PackageSources,
        cache_root: &'a Path,
        progress: &'a Progress,
    ) -> anyhow::Result<BuildPackages<'a>> {
        let view = PackageView::read(&packages)?;
        Ok(BuildPackages {
            wanted,
            sources,
            cache_root,
            progress,
            planned: packages,
            realized: OnceLock::new(),
            planned_is_realized: true,
            view,
        })
    }

    /// Packages whose closure is only planned, with a view recorded
    /// earlier; realized on first need.
    pub fn planned(
        wanted: Wanted,
        planned: Packages,
        view: PackageView,
        sources: &'a PackageSources,
        cache_root: &'a Path,
        progress: &'a Progress,
    ) -> BuildPackages<'a> {
        BuildPackages {
            wanted,
            sources,
            cache_root,
            progress,
            planned,
            realized: OnceLock::new(),
            planned_is_realized: false,
            view,
        }
    }

    /// The packages, realized or not: store path names, roots, libraries.
    pub fn planned_packages(&self) -> &Packages {
        &self.planned
    }

    /// Points `paths` at their realized files, realizing the packages now
    /// when they are only planned.
    pub fn locate(&self, paths: &mut [StorePathSource]) -> anyhow::Result<()> {
        if self.planned_is_realized {
            return Ok(());
        }
        let closure = &self.files()?.closure.paths;
        for path in paths {
            if let Some(found) = closure
                .iter()
                .find(|p| p.path.to_string() == path.store_path)
            {
                path.local = found.location.clone();
            }
        }
        Ok(())
    }

    /// The realized packages, fetched now when they are not yet.
    pub fn files(&self) -> anyhow::Result<&Packages> {
        if self.planned_is_realized {
            return Ok(&self.planned);
        }
        if let Some(packages) = self.realized.get() {
            return Ok(packages);
        }
        let packages = realize(&self.wanted, self.sources, self.cache_root, self.progress)?;
        Ok(self.realized.get_or_init(|| packages))
    }
}

/// Fetches `wanted` with the packages bar and reports it.
pub fn realize(
    wanted: &Wanted,
    sources: &PackageSources,
    cache_root: &Path,
    progress: &Progress,
) -> anyhow::Result<Packages> {
    let fetch_bar = progress.fetch_bar();
    let packages = resolve::realize(wanted, sources, cache_root, &fetch_bar)
        .context("could not fetch the plan's Nix packages")?;
    drop(fetch_bar);
    let downloaded = format!("{} downloaded", packages.closure.downloaded());
    report(&packages, &downloaded, progress);
    Ok(packages)
}

/// The packages stage line: how many store paths, their size, and `how`
/// they were had.
pub fn report(packages: &Packages, how: &str, progress: &Progress) {
    progress.stage(
        "packages",
        format!(
            "{} store paths, {} ({how})",
            packages.closure.paths.len(),
            human_size(packages.closure.total_nar_size()),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::test_support::package;

    #[test]
    fn a_recorded_profile_is_the_same_tree() {
        let dir = tempfile::tempdir().unwrap();
        let node = package(dir.path(), "node", &["bin/node", "lib/node/x"]);
        let bash = package(dir.path(), "bash", &["bin/bash", "share/man/bash.1"]);
        let (tree, _) = profile(&[node, bash]).unwrap();
        let view = PackageView {
            bin_dirs: Vec::new(),
            bash: None,
            base: BaseFinds::default(),
            profile: tree.clone(),
        };
        let again = PackageView::profile_from(&view.profile_entries().unwrap());
        let entries: Vec<_> = tree.entries().collect();
        assert_eq!(entries, again.entries().collect::<Vec<_>>());
    }
}
