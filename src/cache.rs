//! Where kiln's cache lives and what it holds.
//!
//! The layout is fixed by DESIGN.md; this module only names it and measures
//! it. The parts that write entries (store, layers, phases) own their folders.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::json;

/// The cache's top-level folders, with what each holds.
pub const PARTS: [(&str, &str); 9] = [
    ("store", "realized Nix store paths"),
    ("narinfo", "verified narinfo copies"),
    ("resolutions", "package names evaluated to store paths"),
    ("nixpkgs", "nixpkgs archives and overlays, unpacked"),
    ("blobs", "compressed layer blobs"),
    ("layers", "layer index entries"),
    ("phases", "cached build phase results"),
    ("build-cache", "cacheDirectories kept between builds"),
    ("bases", "base images unpacked for the sandbox"),
];

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

/// Size and file count of one part of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartUsage {
    /// Folder name under the cache root.
    pub name: &'static str,
    /// What the folder holds, for people.
    pub about: &'static str,
    /// Bytes in regular files (symlinks count as their own size).
    pub bytes: u64,
    /// Number of files and symlinks.
    pub files: u64,
}

/// Measures every part of the cache at `root`; missing parts count as empty.
pub fn usage(root: &Path) -> io::Result<Vec<PartUsage>> {
    PARTS
        .iter()
        .map(|&(name, about)| {
            let (bytes, files) = folder_usage(&root.join(name))?;
            Ok(PartUsage {
                name,
                about,
                bytes,
                files,
            })
        })
        .collect()
}

/// The cache usage as the JSON `kiln cache info --json` prints.
pub fn usage_json(root: &Path, parts: &[PartUsage]) -> serde_json::Value {
    json!({
        "cacheDir": root,
        "parts": parts.iter().map(|p| json!({
            "name": p.name,
            "bytes": p.bytes,
            "files": p.files,
        })).collect::<Vec<_>>(),
        "totalBytes": parts.iter().map(|p| p.bytes).sum::<u64>(),
    })
}

// Walks without following symlinks, so a store path that links elsewhere is
// never counted twice or outside the cache.
fn folder_usage(dir: &Path) -> io::Result<(u64, u64)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let mut total = (0, 0);
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        let (bytes, files) = if meta.is_dir() {
            folder_usage(&entry.path())?
        } else {
            (meta.len(), 1)
        };
        total.0 += bytes;
        total.1 += files;
    }
    Ok(total)
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

    #[test]
    fn usage_counts_files_and_bytes_per_part() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("blobs/sha256")).unwrap();
        fs::write(root.path().join("blobs/sha256/aa"), [0u8; 10]).unwrap();
        fs::write(root.path().join("blobs/sha256/bb"), [0u8; 5]).unwrap();
        fs::create_dir_all(root.path().join("layers")).unwrap();
        fs::write(root.path().join("layers/k.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("layers/link")).unwrap();

        let parts = usage(root.path()).unwrap();
        let blobs = parts.iter().find(|p| p.name == "blobs").unwrap();
        assert_eq!((blobs.bytes, blobs.files), (15, 2));
        let layers = parts.iter().find(|p| p.name == "layers").unwrap();
        assert_eq!(layers.files, 2);
        let store = parts.iter().find(|p| p.name == "store").unwrap();
        assert_eq!((store.bytes, store.files), (0, 0));

        let json = usage_json(root.path(), &parts);
        assert_eq!(json["totalBytes"], 15 + layers.bytes);
    }
}
