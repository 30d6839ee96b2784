//! kiln's cache: where it lives, what it holds, and keeping it bounded.
//!
//! The layout is fixed by DESIGN.md. The parts that write entries (store,
//! layers, phases, evaluations, archives, base images) own their folders;
//! this module records when entries are used ([`records`]), reads what the
//! cache holds ([`scan`], [`usage()`]) and removes what is not needed
//! ([`prune()`]: by age, by size, and leftovers of interrupted runs).

mod entries;
mod limits;
mod prune;
pub mod records;
mod select;
mod usage;

pub use entries::{scan, Entry, Kind};
pub use limits::{parse_age, parse_size, LimitError};
pub use prune::{prune, unused_since, Pruned, Removed};
pub use select::Limits;
pub use usage::{usage, usage_json, KindUsage, Usage};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The cache folder: `explicit` (from `--cache-dir` or `KILN_CACHE_DIR`),
/// else `$XDG_CACHE_HOME/kiln`, else `$HOME/.cache/kiln`.
pub fn cache_dir(explicit: Option<&Path>) -> Result<PathBuf, CacheDirError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(xdg).join("kiln"));
    }
    non_empty("HOME")
        .map(|home| PathBuf::from(home).join(".cache").join("kiln"))
        .ok_or(CacheDirError::NoHome)
}

/// Creates `dir` and any missing parents with mode 0700, so files kiln
/// keeps there (base images unpacked as the builder, build caches) are not
/// reachable by other users. An existing `dir` is set to 0700 too: it is
/// kiln's own folder. Use [`create_private_root`] for the cache root, which
/// the user may have chosen.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Creates the cache root `dir` (and missing parents) with mode 0700 when it
/// does not exist yet; an existing folder keeps the modes its owner gave it.
pub fn create_private_root(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// No cache folder could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// Neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("no cache folder: set --cache-dir or KILN_CACHE_DIR (neither XDG_CACHE_HOME nor HOME is set)")]
    NoHome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_folders_are_0700_and_a_chosen_root_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/kiln");
        create_private_root(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
        create_private_root(&root).unwrap();
        assert_eq!(mode(&root), 0o750, "an existing root is the user's choice");
        fs::create_dir(root.join("bases")).unwrap();
        fs::set_permissions(root.join("bases"), fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&root.join("bases")).unwrap();
        assert_eq!(mode(&root.join("bases")), 0o700);
    }

    #[test]
    fn explicit_dir_wins() {
        let dir = cache_dir(Some(Path::new("/somewhere"))).unwrap();
        assert_eq!(dir, PathBuf::from("/somewhere"));
    }
}
