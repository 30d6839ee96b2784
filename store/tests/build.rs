//! A path no cache has but whose derivation is known is built by the host's
//! real Nix and used from the host store.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use kiln_harness::nixpkgs::nix_command;
use kiln_harness::FixtureNixpkgs;
use kiln_store::{parse_store_path, Origin, Store, StoreError, Substituters};

#[test]
fn a_path_in_no_cache_is_built_from_its_derivation() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    // kiln runs nix-store as the user's Nix would run; here that is the
    // suite's single-user, unsandboxed root setup. This test file holds one
    // test, so its process has no other thread reading the environment.
    let config = nix_command("nix-store")
        .get_envs()
        .find(|(key, _)| *key == "NIX_CONFIG")
        .and_then(|(_, value)| value.map(ToOwned::to_owned))
        .unwrap();
    std::env::set_var("NIX_CONFIG", config);

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let expression = format!(
        "derivation {{ name = \"kiln-build-test-{nanos}\"; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"echo built by nix > $out\" ]; }}"
    );
    let drv = output_of(nix_command("nix-instantiate").args(["-E", &expression]));
    let drv = parse_store_path(drv.trim()).unwrap();
    let out = output_of(nix_command("nix-store").args(["--query", "--outputs", &drv.to_string()]));
    let out = parse_store_path(out.trim()).unwrap();

    let empty = tempfile::tempdir().unwrap();
    let caches = Substituters::new(
        &[format!("file://{}", empty.path().display())],
        &[fixture.public_key().to_string()],
        quick_options(),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();

    let err = store
        .realize(&caches, std::slice::from_ref(&out))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotInAnyCache { .. }), "{err}");

    let derivations = BTreeMap::from([(out.clone(), drv.clone())]);
    let closure = store
        .realize_with_derivations(&caches, std::slice::from_ref(&out), &derivations)
        .unwrap();
    assert_eq!(closure.paths.len(), 1);
    let built = &closure.paths[0];
    assert_eq!(built.origin, Origin::HostStore);
    assert_eq!(built.location, std::path::Path::new(&out.to_string()));
    assert_eq!(
        std::fs::read_to_string(&built.location).unwrap(),
        "built by nix\n"
    );
    drop(closure);

    let _ = nix_command("nix-store")
        .args(["--delete", &out.to_string(), &drv.to_string()])
        .output();
}
