//! Realizing the fixture nixpkgs' closures from its real, Nix-written caches
//! (file xz, file zstd, HTTP), checked against real Nix.

mod common;

use std::collections::BTreeSet;

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
