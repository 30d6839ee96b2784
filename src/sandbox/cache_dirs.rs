//! `cacheDirectories`: persistent host folders bound into the sandbox.

use std::io;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::FolderBind;

/// The binds for a plan's `cacheDirectories` (absolute, or relative to
/// `/app`): `<build_cache>/<cache_key>/<hash of the path inside>/`, created
/// when missing. Builds with the same key share them.
pub fn cache_binds(
    build_cache: &Path,
    cache_key: &str,
    directories: &[String],
) -> io::Result<Vec<FolderBind>> {
    if cache_key.is_empty() || cache_key.starts_with('.') || cache_key.contains(['/', '\0']) {
        return Err(invalid(format!(
            "cache key {cache_key:?} must be a non-empty name without `/` that does not start with `.`"
        )));
    }
    let mut binds: Vec<FolderBind> = Vec::new();
    for directory in directories {
        let inside = inside_path(directory)?;
        if binds.iter().any(|bind| bind.inside == inside) {
            continue;
        }
        let digest = Sha256::digest(inside.as_os_str().as_encoded_bytes());
        let host = build_cache.join(cache_key).join(hex(&digest[..10]));
        hold_folder(&host)?;
        binds.push(FolderBind { host, inside });
    }
    Ok(binds)
}

/// Creates `host` when missing and holds it for the build, its use
/// recorded, so a prune keeps it. A prune may remove a folder just made,
/// before it is held: then it is made once more.
fn hold_folder(host: &Path) -> io::Result<()> {
    for _ in 0..2 {
        std::fs::create_dir_all(host)?;
        if crate::cache::records::use_entry(host) {
            return Ok(());
        }
    }
    Err(io::Error::other(format!(
        "{} is removed as soon as it is made (is a `kiln cache prune` looping?); build again",
        host.display()
    )))
}

/// The cache key of an app given no explicit one: `app-` and a hash of its
/// folder's canonical path. Rebuilds of one checkout share their caches;
/// two apps (two folders) never do, so one cannot poison the other's. Like
/// upstream Nixpacks, which keys caches by the app's identity.
pub fn app_cache_key(app_dir: &Path) -> io::Result<String> {
    let folder = app_dir.canonicalize()?;
    let digest = Sha256::digest(folder.as_os_str().as_encoded_bytes());
    Ok(format!("app-{}", hex(&digest[..10])))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The absolute, normalized path inside the sandbox of a cache directory.
fn inside_path(directory: &str) -> io::Result<PathBuf> {
    let mut inside = PathBuf::from("/");
    if !directory.starts_with('/') {
        inside.push("app");
    }
    for component in Path::new(directory).components() {
        match component {
            Component::Normal(part) => inside.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "cache directory {directory:?} must not contain `..`"
                )))
            }
        }
    }
    let reserved = ["/", "/proc", "/dev", "/tmp", "/nix", "/nix/store", "/app"];
    if reserved.iter().any(|r| inside == Path::new(r)) || directory.contains('\0') {
        return Err(invalid(format!(
            "cache directory {directory:?} would cover {}, which the sandbox needs",
            inside.display()
        )));
    }
    Ok(inside)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dirs_are_under_app_and_share_folders_by_key() {
        let cache = tempfile::tempdir().unwrap();
        let dirs = [
            "node_modules/.cache".to_string(),
            "/root/.npm".to_string(),
            "./node_modules/.cache/".to_string(),
        ];
        let binds = cache_binds(cache.path(), "app", &dirs).unwrap();
        assert_eq!(binds.len(), 2);
        assert_eq!(binds[0].inside, Path::new("/app/node_modules/.cache"));
        assert_eq!(binds[1].inside, Path::new("/root/.npm"));
        assert!(binds[0].host.starts_with(cache.path().join("app")));
        assert!(binds[0].host.is_dir());
        let again = cache_binds(cache.path(), "app", &dirs).unwrap();
        assert_eq!(binds, again);
        let other = cache_binds(cache.path(), "other", &dirs).unwrap();
        assert_ne!(binds[0].host, other[0].host);
    }

    #[test]
    fn each_app_folder_has_a_key_of_its_own() {
        let apps = tempfile::tempdir().unwrap();
        let (one, two) = (apps.path().join("one"), apps.path().join("two"));
        std::fs::create_dir(&one).unwrap();
        std::fs::create_dir(&two).unwrap();
        let key = app_cache_key(&one).unwrap();
        assert!(key.starts_with("app-") && key.len() == 24, "{key}");
        assert!(cache_binds(apps.path(), &key, &[]).is_ok());
        assert_eq!(key, app_cache_key(&one.join("../one")).unwrap());
        assert_ne!(key, app_cache_key(&two).unwrap());
    }

    #[test]
    fn hostile_dirs_and_keys_are_refused() {
        let cache = tempfile::tempdir().unwrap();
        for dir in ["../etc", "/", "/nix/store", ".", "a/../../b", "/proc"] {
            let err = cache_binds(cache.path(), "k", &[dir.to_string()]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{dir}");
        }
        for key in ["", "../x", "a/b", ".hidden"] {
            assert!(cache_binds(cache.path(), key, &[]).is_err(), "{key}");
        }
    }
}
