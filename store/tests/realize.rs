//! Realizing the fixture nixpkgs' closures from its real, Nix-written caches
//! (file xz, file zstd, HTTP), checked against real Nix.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use kiln_harness::FixtureNixpkgs;
use kiln_store::{Origin, Substituters};

fn realize_nodejs_from(url: &str, fixture: &FixtureNixpkgs) {
    let (_cache, store) = empty_store();
    let caches = Substituters::new(
        &[url.to_string()],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let node = fixture_path(fixture, "nodejs_20");
    let closure = store.realize(&caches, std::slice::from_ref(&node)).unwrap();

    let realized: BTreeSet<String> = closure.paths.iter().map(|p| p.path.to_string()).collect();
    assert_eq!(realized, nix_closure(fixture, "nodejs_20"), "from {url}");
    assert_eq!(closure.paths.last().unwrap().path, node, "roots come last");
    assert_eq!(closure.downloaded(), closure.paths.len());

    let cache_copy = CacheCopy::of_xz(fixture);
    for path in &closure.paths {
        assert_eq!(path.location, store.location(&path.path));
        assert!(
            path.origin
                == Origin::Downloaded {
                    cache: url.trim_end_matches('/').to_string()
                }
        );
        let narinfo = cache_copy.narinfo(&path.path);
        assert_eq!(
            nix_hash_path(&path.location),
            narinfo.nar_hash().to_nix_nixbase32_string(),
            "{} restored from {url} does not hash like its narinfo",
            path.path
        );
        assert_eq!(path.nar_size, narinfo.nar_size());
    }
    let index =
        |p: &kiln_store::StorePath| closure.paths.iter().position(|c| &c.path == p).unwrap();
    for path in &closure.paths {
        for reference in &path.references {
            assert!(
                index(reference) < index(&path.path),
                "{reference} after {}",
                path.path
            );
        }
    }
    drop(closure);

    // A second run asks no cache at all: these substituters do not exist.
    let gone = Substituters::new(
        &["file:///nonexistent/kiln-cache".to_string()],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let again = store.realize(&gone, &[node]).unwrap();
    assert_eq!(again.downloaded(), 0);
    assert!(again
        .paths
        .iter()
        .all(|p| p.origin == Origin::AlreadyInStore));
    assert_eq!(again.paths.len(), realized.len());
}

#[test]
fn nodejs_closure_from_the_xz_file_cache_hashes_like_nix() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    realize_nodejs_from(&fixture.xz_cache_url(), fixture);
}

#[test]
fn nodejs_closure_from_the_zstd_file_cache_hashes_like_nix() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    realize_nodejs_from(&fixture.zstd_cache_url(), fixture);
}

#[test]
fn nodejs_closure_over_http_hashes_like_nix() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let http = fixture.serve_http();
    realize_nodejs_from(&http.url(), fixture);
}

#[test]
fn a_cache_without_the_path_passes_to_the_next() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    let (_cache, store) = empty_store();
    let caches = Substituters::new(
        &[
            format!("file://{}", empty.path().display()),
            fixture.xz_cache_url(),
        ],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let zlib = fixture_path(fixture, "zlib");
    let closure = store.realize(&caches, &[zlib]).unwrap();
    assert!(closure.paths.iter().all(|p| p.origin
        == Origin::Downloaded {
            cache: fixture.xz_cache_url()
        }));
}

/// Counts what a realization reports.
#[derive(Default)]
struct Counted {
    started: std::sync::Mutex<Option<(usize, usize)>>,
    bytes: std::sync::atomic::AtomicU64,
    finished: std::sync::atomic::AtomicUsize,
}

impl kiln_store::RealizeProgress for Counted {
    fn started(&self, paths: usize, to_download: usize) {
        *self.started.lock().unwrap() = Some((paths, to_download));
    }

    fn downloaded(&self, bytes: u64) {
        self.bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn finished(&self, _path: &kiln_store::StorePath, _origin: &Origin) {
        self.finished
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The progress hook hears of every path and of every compressed byte the
/// cache sent; a second realization downloads nothing.
#[test]
fn progress_sees_every_path_and_downloaded_byte() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let (_cache, store) = empty_store();
    let caches = Substituters::new(
        &[fixture.xz_cache_url()],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let node = fixture_path(fixture, "nodejs_20");
    let realize = || {
        let counted = Counted::default();
        let closure = store
            .realize_with_progress(
                &caches,
                std::slice::from_ref(&node),
                &Default::default(),
                &counted,
            )
            .unwrap();
        (closure, counted)
    };
    let (closure, counted) = realize();
    let paths = closure.paths.len();
    assert_eq!(*counted.started.lock().unwrap(), Some((paths, paths)));
    assert_eq!(counted.finished.into_inner(), paths);
    let file_sizes: u64 = closure.paths.iter().map(|p| p.file_size.unwrap()).sum();
    assert_eq!(counted.bytes.into_inner(), file_sizes);

    let (_, again) = realize();
    assert_eq!(*again.started.lock().unwrap(), Some((paths, 0)));
    assert_eq!(again.bytes.into_inner(), 0);
}

/// A host path is hashed once and then trusted while it stays the same
/// folder (same inode and change time), even when a file deep inside it
/// changes: that is the promise, with its known limit. A folder put in its
/// place is hashed again, and a changed one is not used.
#[test]
fn host_store_checks_are_remembered_until_the_folder_changes() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let zlib = fixture_path(fixture, "zlib");
    let copy = host.path().join(zlib.to_basename());
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(zlib.to_string())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let store = kiln_store::Store::open(cache.path())
        .unwrap()
        .with_host_store(Some(host.path().to_path_buf()));
    let caches = Substituters::new(
        &[fixture.xz_cache_url()],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let origin = |store: &kiln_store::Store| {
        let closure = store.realize(&caches, std::slice::from_ref(&zlib)).unwrap();
        closure
            .paths
            .iter()
            .find(|p| p.path == zlib)
            .unwrap()
            .origin
            .clone()
    };
    assert_eq!(origin(&store), Origin::HostStore);
    let record = cache.path().join("store/.host-verified");
    assert_eq!(std::fs::read_dir(&record).unwrap().count(), 1);

    // A library's bytes changed in place leave the top folder's inode and
    // change time alone, so the earlier check still counts: hashing again
    // would find the change and download the path instead.
    let identity = |folder: &Path| {
        let meta = std::fs::symlink_metadata(folder).unwrap();
        (meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    let before = identity(&copy);
    tamper_with_a_library(&copy);
    assert_eq!(identity(&copy), before, "the top folder changed");
    assert_eq!(origin(&store), Origin::HostStore, "not remembered");

    // Another folder in its place, with that file changed: hashed again and
    // refused, so the path comes from the cache.
    let replaced = host.path().join("replaced");
    std::fs::rename(&copy, &replaced).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&replaced)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(matches!(origin(&store), Origin::Downloaded { .. }));
}

/// Overwrites the first regular file in `store_path/lib` with other bytes.
fn tamper_with_a_library(store_path: &Path) {
    let lib = std::fs::read_dir(store_path.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file() && !p.is_symlink())
        .unwrap();
    let mut permissions = std::fs::metadata(&lib).unwrap().permissions();
    permissions.set_mode(0o644);
    std::fs::set_permissions(&lib, permissions).unwrap();
    std::fs::write(&lib, b"tampered").unwrap();
}

#[test]
fn host_store_paths_are_used_in_place_when_their_hash_matches() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let store = kiln_store::Store::open(cache.path()).unwrap();
    let caches = Substituters::new(
        &[fixture.xz_cache_url()],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let bash = fixture_path(fixture, "bash");
    let closure = store.realize(&caches, &[bash]).unwrap();
    for path in &closure.paths {
        assert_eq!(path.origin, Origin::HostStore);
        assert_eq!(path.location, std::path::Path::new(&path.path.to_string()));
    }
    assert!(store_entries(&store).is_empty());
}
