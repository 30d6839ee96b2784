//! Fuzz-style checks of what a binary cache sends, bounded by proptest's
//! case count: narinfo text and NAR bytes, arbitrary or mutated from a valid
//! seed built here. Every input either parses (restores) or gives an error;
//! none panics, and no NAR writes anything outside its destination.

use std::path::Path;

use kiln_harness::mutate::mutated;
use kiln_store::nar::{remove_tree, restore_verified, Expected};
use kiln_store::{check_signature, parse_narinfo, parse_public_keys, parse_store_path};
use nix_narinfo::Compression;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const STORE_PATH: &str = "/nix/store/0z3h1mvmhwc6xfsd4xd2ks5cd9q3irrn-hello-2.12.1";

/// A narinfo as cache.nixos.org writes them (the signature does not verify:
/// the check must still answer with an error, never panic).
fn narinfo_seed() -> String {
    format!(
        "StorePath: {STORE_PATH}\n\
         URL: nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz\n\
         Compression: xz\n\
         FileHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3\n\
         FileSize: 50264\n\
         NarHash: sha256:0v1c6b8xzmg1s0z1gb5r1xqvll0h7w3ifskywqn2pz1f2bkvlxmc\n\
         NarSize: 226560\n\
         References: 0z3h1mvmhwc6xfsd4xd2ks5cd9q3irrn-hello-2.12.1 \
         9v5d40jyvmwgnq1nj8f19ji2rcc5dksf-glibc-2.40-36\n\
         Deriver: qn1gz2kzz5vqhsdb3yvxq3qdgg0ml5k8-hello-2.12.1.drv\n\
         Sig: cache.nixos.org-1:bHmgS0BG4B4XUmNhOZlfaUc7ZBpN9HUDsIEWMGSLZg0lmwhzVZVKuPqiP9TOvvA5ZedRGJH0wrgJ1vy+e/ZiCw==\n"
    )
}

const CACHE_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

/// Parses `text` as the narinfo of the seed's path and checks its signature;
/// either step may refuse it, neither may panic.
fn parse_and_check(text: &[u8]) {
    let expected = parse_store_path(STORE_PATH).unwrap();
    let keys = parse_public_keys(&[CACHE_KEY.to_string()]).unwrap();
    let url = "https://cache.example/0z3h1mvmhwc6xfsd4xd2ks5cd9q3irrn.narinfo";
    if let Ok(info) = parse_narinfo(text, url, &expected) {
        let _ = check_signature(&info, &keys, url);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary text as a narinfo: refused with an error, never a panic.
    #[test]
    fn narinfo_parser_never_panics_on_text(text in any::<String>()) {
        parse_and_check(text.as_bytes());
    }

    /// A valid narinfo with a few bytes changed, added or cut: parsed or
    /// refused, never a panic.
    #[test]
    fn narinfo_parser_never_panics_on_mutated_narinfo(text in mutated(narinfo_seed().into_bytes())) {
        parse_and_check(&text);
    }
}

#[test]
fn the_narinfo_seed_parses() {
    let expected = parse_store_path(STORE_PATH).unwrap();
    parse_narinfo(narinfo_seed().as_bytes(), "seed", &expected).unwrap();
}

/// Builds a NAR by hand, a token at a time.
struct NarWriter(Vec<u8>);

impl NarWriter {
    fn token(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self.0
            .extend(std::iter::repeat_n(0, (8 - bytes.len() % 8) % 8));
        self
    }
    fn tokens(&mut self, tokens: &[&str]) -> &mut Self {
        for t in tokens {
            self.token(t.as_bytes());
        }
        self
    }
}

/// A small NAR with every kind of node: a file, a folder holding an
/// executable, and a symlink whose target leaves the tree (allowed: the
/// restore creates the link, it never follows it).
fn nar_seed() -> Vec<u8> {
    let mut w = NarWriter(Vec::new());
    w.tokens(&["nix-archive-1", "(", "type", "directory"]);
    w.tokens(&["entry", "(", "name", "a", "node"]);
    w.tokens(&["(", "type", "regular", "contents", "hello\n", ")", ")"]);
    w.tokens(&[
        "entry",
        "(",
        "name",
        "bin",
        "node",
        "(",
        "type",
        "directory",
    ]);
    w.tokens(&["entry", "(", "name", "tool", "node"]);
    w.tokens(&["(", "type", "regular", "executable", "", "contents"]);
    w.tokens(&["#!/bin/sh\n", ")", ")", ")", ")"]);
    w.tokens(&["entry", "(", "name", "link", "node"]);
    w.tokens(&["(", "type", "symlink", "target", "../../escaped", ")", ")"]);
    w.tokens(&[")"]);
    w.0
}

/// Restores `nar` (uncompressed, its own hash and size as the narinfo's, so
/// every check but the decoder's passes) into a fresh temp folder, then
/// checks the folder holds nothing but the destination, and removes it.
fn restore_in_fresh_folder(nar: &[u8]) -> Result<(), TestCaseError> {
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().join("out");
    let hash = nix_derivation::NixHash::from_algorithm_and_digest(
        nix_derivation::HashAlgorithm::Sha256,
        &Sha256::digest(nar),
    )
    .unwrap();
    let expected = Expected {
        nar_hash: &hash,
        nar_size: nar.len() as u64,
        compression: &Compression::None,
    };
    let _ = restore_verified(nar, &expected, &destination);
    let names: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    prop_assert!(
        names.iter().all(|name| name == "out"),
        "the NAR wrote {names:?} beside its destination"
    );
    // Restored trees are read-only; a plain TempDir drop would leave them.
    remove_tree(&destination).unwrap();
    prop_assert!(!Path::new(&destination).exists());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes as a NAR: refused, never a panic or a write outside.
    #[test]
    fn nar_restore_never_escapes_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        restore_in_fresh_folder(&bytes)?;
    }

    /// The seed NAR with a few bytes changed, added or cut (names, lengths,
    /// node types, padding): restored or refused, never a panic or a write
    /// outside the destination.
    #[test]
    fn nar_restore_never_escapes_on_mutated_nar(bytes in mutated(nar_seed())) {
        restore_in_fresh_folder(&bytes)?;
    }
}

#[test]
fn the_nar_seed_restores() {
    let folder = tempfile::tempdir().unwrap();
    let nar = nar_seed();
    let hash = nix_derivation::NixHash::from_algorithm_and_digest(
        nix_derivation::HashAlgorithm::Sha256,
        &Sha256::digest(&nar),
    )
    .unwrap();
    let expected = Expected {
        nar_hash: &hash,
        nar_size: nar.len() as u64,
        compression: &Compression::None,
    };
    let destination = folder.path().join("out");
    restore_verified(&nar[..], &expected, &destination).unwrap();
    assert!(destination.join("bin/tool").is_file());
    assert!(destination.join("link").is_symlink());
    remove_tree(&destination).unwrap();
}
