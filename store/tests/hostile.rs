//! Caches that lie, break or hang: each gives a clear error and leaves no
//! trace of the path in kiln's store.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kiln_harness::nixpkgs::nix_command;
use kiln_harness::FixtureNixpkgs;
use kiln_store::{FetchOptions, StoreError, StorePath, Substituters};
use sha2::{Digest, Sha256};

fn caches(url: &str, key: &str, options: FetchOptions) -> Substituters {
    Substituters::new(&[url.to_string()], &[key.to_string()], options).unwrap()
}

/// Realizes `path` from `url` into an empty store, expecting failure; checks
/// the store keeps nothing of it and returns the message.
fn realize_fails(url: &str, key: &str, path: &StorePath) -> String {
    let (_cache, store) = empty_store();
    let err = store
        .realize(
            &caches(url, key, quick_options()),
            std::slice::from_ref(path),
        )
        .expect_err("realize succeeded against a hostile cache");
    assert_no_trace(&store, path);
    err.to_string()
}

#[test]
fn a_changed_narinfo_fails_its_signature() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let copy = CacheCopy::of_xz(fixture);
    let zlib = fixture_path(fixture, "zlib");
    copy.edit_narinfo(&zlib, |text| {
        let size = copy.narinfo(&zlib).nar_size();
        text.replace(
            &format!("NarSize: {size}"),
            &format!("NarSize: {}", size + 8),
        )
    });
    let message = realize_fails(&copy.url(), fixture.public_key(), &zlib);
    assert!(message.contains("does not verify"), "{message}");
    assert!(message.contains(&zlib.to_string()), "{message}");
    assert!(message.contains(&copy.url()), "{message}");
}

#[test]
fn a_key_that_did_not_sign_is_refused() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = (keys.path().join("sk"), keys.path().join("pk"));
    output_of(
        nix_command("nix-store")
            .args(["--generate-binary-cache-key", "someone-else-1"])
            .args([&secret, &public]),
    );
    let other = std::fs::read_to_string(public).unwrap();
    let zlib = fixture_path(fixture, "zlib");
    let message = realize_fails(&fixture.xz_cache_url(), other.trim(), &zlib);
    assert!(
        message.contains("signed only by kiln-fixture-1") && message.contains("someone-else-1"),
        "{message}"
    );
}

#[test]
fn a_nar_hash_mismatch_is_caught_after_download() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let copy = CacheCopy::of_xz(fixture);
    let zlib = fixture_path(fixture, "zlib");
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000";
    copy.edit_and_resign(&zlib, |text| {
        let hash = copy.narinfo(&zlib).nar_hash().to_nix_nixbase32_string();
        text.replace(&hash, wrong)
    });
    let message = realize_fails(&copy.url(), fixture.public_key(), &zlib);
    assert!(message.contains("narinfo says sha256:0000"), "{message}");
    assert!(message.contains("nothing kept"), "{message}");
}

#[test]
fn a_truncated_nar_is_refused() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let copy = CacheCopy::of_xz(fixture);
    let zlib = fixture_path(fixture, "zlib");
    let nar = copy.nar_bytes(&zlib);
    copy.replace_nar(&zlib, &nar[..nar.len() / 2]);
    let message = realize_fails(&copy.url(), fixture.public_key(), &zlib);
    assert!(
        message.contains("NAR of") && message.contains("rejected"),
        "{message}"
    );
}

#[test]
fn a_nar_naming_dotdot_is_refused_and_writes_nothing_outside() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let copy = CacheCopy::of_xz(fixture);
    let zlib = fixture_path(fixture, "zlib");
    // The root folder's entry `..` is a folder holding `escaped`: restored
    // as named, that file would land in the folder the NAR is restored in,
    // kiln's store folder.
    let mut nar = NarWriter::new();
    nar.tokens(&["(", "type", "directory", "entry", "(", "name", "..", "node"]);
    nar.tokens(&[
        "(",
        "type",
        "directory",
        "entry",
        "(",
        "name",
        "escaped",
        "node",
    ]);
    nar.tokens(&["(", "type", "regular", "contents", "escaped", ")"]);
    nar.tokens(&[")", ")", ")", ")"]);
    let bytes = nar.0;
    let hash = nix_derivation::NixHash::from_algorithm_and_digest(
        nix_derivation::HashAlgorithm::Sha256,
        &Sha256::digest(&bytes),
    )
    .unwrap()
    .to_nix_nixbase32_string();
    copy.replace_nar(&zlib, &bytes);
    copy.edit_and_resign(&zlib, |text| {
        let old = copy.narinfo(&zlib);
        text.replace(&old.nar_hash().to_nix_nixbase32_string(), &hash)
            .replace(
                &format!("NarSize: {}", old.nar_size()),
                &format!("NarSize: {}", bytes.len()),
            )
            .replace("Compression: xz", "Compression: none")
            .lines()
            .filter(|l| !l.starts_with("FileHash") && !l.starts_with("FileSize"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let (_cache, store) = empty_store();
    let realized = store.realize(
        &caches(&copy.url(), fixture.public_key(), quick_options()),
        std::slice::from_ref(&zlib),
    );
    let outside = store.dir().join("escaped");
    assert!(!outside.exists(), "the NAR wrote {}", outside.display());
    let message = realized.unwrap_err().to_string();
    assert!(message.contains("invalid entry name \"..\""), "{message}");
    assert_no_trace(&store, &zlib);
}

#[test]
fn a_narinfo_missing_fields_is_named() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let copy = CacheCopy::of_xz(fixture);
    let zlib = fixture_path(fixture, "zlib");
    copy.edit_narinfo(&zlib, |text| {
        text.lines()
            .filter(|l| !l.starts_with("NarHash"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let message = realize_fails(&copy.url(), fixture.public_key(), &zlib);
    assert!(
        message.contains("invalid narinfo: narinfo is missing NarHash"),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}.narinfo", kiln_store::hash_part(&zlib))),
        "{message}"
    );
}

#[test]
fn a_server_answering_500_is_retried_until_it_succeeds() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = FlakyServer::serve(fixture.xz_cache(), 2);
    let (_cache, store) = empty_store();
    let zlib = fixture_path(fixture, "zlib");
    let closure = store
        .realize(
            &caches(&server.url(), fixture.public_key(), quick_options()),
            &[zlib],
        )
        .unwrap();
    assert_eq!(closure.downloaded(), closure.paths.len());
    // nix-cache-info, 2 narinfo and 2 NARs, each failing twice first.
    assert!(server.requests.load(std::sync::atomic::Ordering::Relaxed) >= 15);
}

#[test]
fn a_server_answering_500_for_good_gives_up_with_the_url() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = FlakyServer::serve(fixture.xz_cache(), usize::MAX);
    let zlib = fixture_path(fixture, "zlib");
    let message = realize_fails(&server.url(), fixture.public_key(), &zlib);
    assert!(
        message.contains(&server.url())
            && message.contains("500")
            && message.contains("gave up after 3 attempts"),
        "{message}"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = SilentServer::serve();
    let zlib = fixture_path(fixture, "zlib");
    let started = Instant::now();
    let message = realize_fails(&server.url(), fixture.public_key(), &zlib);
    let took = started.elapsed();
    assert!(
        message.contains(&server.url()) && message.contains("timeout"),
        "{message}"
    );
    // The first request never answered gives up after every attempt's
    // connect and read timeouts. The margin is generous: it covers the
    // waits between attempts and a loaded machine, and fails only a
    // timeout that is not applied (or is applied many times over).
    let options = quick_options();
    let attempts = options.retries + 1;
    let configured = (options.connect_timeout + options.read_timeout) * attempts;
    let margin = Duration::from_secs(30);
    assert!(
        took < configured + margin,
        "gave up after {took:?}; the timeouts allow {configured:?}"
    );
}

#[test]
fn a_path_in_no_cache_lists_the_caches_tried() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    let url = format!("file://{}", empty.path().display());
    let zlib = fixture_path(fixture, "zlib");
    let (_cache, store) = empty_store();
    let err = store
        .realize(
            &caches(&url, fixture.public_key(), quick_options()),
            std::slice::from_ref(&zlib),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotInAnyCache { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn a_private_cache_gets_the_netrc_credentials_and_refuses_without() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let header = "Basic a2lsbjpzM2NyZXQ=".to_string(); // kiln:s3cret
    let server = FlakyServer::serve_with_auth(fixture.xz_cache(), 0, Some(header));
    let zlib = fixture_path(fixture, "zlib");

    let message = realize_fails(&server.url(), fixture.public_key(), &zlib);
    assert!(
        message.contains("401") && message.contains("netrc"),
        "{message}"
    );

    let (_cache, store) = empty_store();
    let netrc = "machine 127.0.0.1 login kiln password s3cret\n";
    let with_credentials =
        caches(&server.url(), fixture.public_key(), quick_options()).with_netrc(netrc);
    let closure = store.realize(&with_credentials, &[zlib]).unwrap();
    assert_eq!(closure.downloaded(), 2);
}

/// `user:pass@` in a cache URL is a secret: it shows in no error and in no
/// realized path's origin.
#[test]
fn credentials_in_a_cache_url_are_never_shown() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let zlib = fixture_path(fixture, "zlib");
    let secret = "s3cret-in-url";
    let failing = FlakyServer::serve(fixture.xz_cache(), usize::MAX);
    let url = failing.url().replace("://", &format!("://kiln:{secret}@"));
    let message = realize_fails(&url, fixture.public_key(), &zlib);
    assert!(
        !message.contains(secret) && message.contains("500"),
        "{message}"
    );

    let bad = format!("ftp://kiln:{secret}@cache.example");
    let message = Substituters::new(&[bad], &[], quick_options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        !message.contains(secret) && message.contains("cache.example"),
        "{message}"
    );

    let working = FlakyServer::serve(fixture.xz_cache(), 0);
    let url = working.url().replace("://", &format!("://kiln:{secret}@"));
    let substituters = caches(&url, fixture.public_key(), quick_options());
    assert!(substituters.urls().iter().all(|u| !u.contains(secret)));
    let (_cache, store) = empty_store();
    let closure = store.realize(&substituters, &[zlib]).unwrap();
    for path in &closure.paths {
        assert!(!format!("{:?}", path.origin).contains(secret), "{path:?}");
    }
}

/// A path realized with signatures off (`--no-verify`) from a cache no
/// trusted key signed never satisfies a verified realization of the same
/// store: that one re-fetches it from a trusted cache, or fails.
#[test]
fn an_unverified_path_is_not_kept_for_a_verified_realization() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let copy = CacheCopy::of_xz(fixture);
    let zlib = fixture_path(fixture, "zlib");
    let mut nar = NarWriter::new();
    nar.tokens(&["(", "type", "directory", "entry", "(", "name", "planted"]);
    nar.tokens(&[
        "node", "(", "type", "regular", "contents", "evil", ")", ")", ")",
    ]);
    let bytes = nar.0;
    let hash = nix_derivation::NixHash::from_algorithm_and_digest(
        nix_derivation::HashAlgorithm::Sha256,
        &Sha256::digest(&bytes),
    )
    .unwrap()
    .to_nix_nixbase32_string();
    copy.replace_nar(&zlib, &bytes);
    let old = copy.narinfo(&zlib);
    copy.edit_narinfo(&zlib, |text| {
        text.replace(&old.nar_hash().to_nix_nixbase32_string(), &hash)
            .replace(
                &format!("NarSize: {}", old.nar_size()),
                &format!("NarSize: {}", bytes.len()),
            )
            .replace("Compression: xz", "Compression: none")
            .lines()
            .filter(|l| {
                !["FileHash", "FileSize", "Sig"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let (_cache, store) = empty_store();
    let unverified = FetchOptions {
        verify_signatures: false,
        ..quick_options()
    };
    let roots = std::slice::from_ref(&zlib);
    store
        .realize(
            &caches(&copy.url(), fixture.public_key(), unverified),
            roots,
        )
        .unwrap();
    assert!(store.location(&zlib).join("planted").exists());

    // Only the unsigned cache: the verified realization fails.
    let verified = caches(&copy.url(), fixture.public_key(), quick_options());
    let message = store.realize(&verified, roots).unwrap_err().to_string();
    assert!(message.contains("no signature"), "{message}");

    // A trusted cache has it: fetched again and verified, replacing the copy.
    let trusted = caches(
        &fixture.xz_cache_url(),
        fixture.public_key(),
        quick_options(),
    );
    let closure = store.realize(&trusted, roots).unwrap();
    let realized = closure.paths.iter().find(|p| p.path == zlib).unwrap();
    assert!(
        matches!(realized.origin, kiln_store::Origin::Downloaded { .. }),
        "{realized:?}"
    );
    assert!(!store.location(&zlib).join("planted").exists());
    assert_eq!(
        nix_hash_path(&store.location(&zlib)),
        old.nar_hash().to_nix_nixbase32_string()
    );
}
