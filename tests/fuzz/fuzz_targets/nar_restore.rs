//! NAR bytes as a binary cache sends them (uncompressed, with their own
//! hash and size as the narinfo's, so every check but the decoder's can
//! pass), restored into a fresh folder and removed again with kiln-store's
//! own code. A NAR may restore or be refused; it never panics, hangs, or
//! writes anything outside its destination.
#![no_main]

use kiln_fuzz::beside_sentinel;
use kiln_store::nar::{remove_tree, restore_verified, Expected};
use libfuzzer_sys::fuzz_target;
use nix_derivation::{HashAlgorithm, NixHash};
use nix_narinfo::Compression;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let hash = NixHash::from_algorithm_and_digest(HashAlgorithm::Sha256, &Sha256::digest(data))
        .expect("a sha256 digest");
    let expected = Expected {
        nar_hash: &hash,
        nar_size: data.len() as u64,
        compression: &Compression::None,
    };
    beside_sentinel(false, |destination| {
        let _ = restore_verified(data, &expected, destination);
        if destination.symlink_metadata().is_ok() {
            remove_tree(destination).expect("a restored tree can be removed");
        }
    });
});
