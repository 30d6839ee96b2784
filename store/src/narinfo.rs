//! Store paths, narinfo records and their signatures.
//!
//! Parsing and the signature fingerprint are `nix-narinfo`'s and
//! `nix-derivation`'s; this module adds what a client needs on top: the
//! narinfo must describe the path that was asked for, and be signed by a
//! trusted key, with an error that says which of the two failed.

use nix_derivation::{StoreDir, StorePath};
use nix_narinfo::{NarInfo, TrustedPublicKey};

use crate::error::StoreError;

/// Parses `/nix/store/<hash>-<name>`, refusing anything else.
pub fn parse_store_path(input: &str) -> Result<StorePath, StoreError> {
    let trimmed = input.trim_end_matches('/');
    // A path inside a store path (`.../bin/node`) names its store path.
    let basename_end = trimmed
        .strip_prefix("/nix/store/")
        .map(|rest| "/nix/store/".len() + rest.find('/').unwrap_or(rest.len()))
        .unwrap_or(trimmed.len());
    StorePath::from_absolute_path(&trimmed.as_bytes()[..basename_end]).map_err(|err| {
        StoreError::BadStorePath {
            input: input.to_string(),
            reason: err.to_string(),
        }
    })
}

/// The 32-character hash part of a store path: its name in caches and in
/// kiln's store markers.
pub fn hash_part(path: &StorePath) -> String {
    let basename = path.to_basename();
    basename[..32].to_string()
}

/// Parses a narinfo that must describe `expected`.
pub fn parse_narinfo(text: &[u8], url: &str, expected: &StorePath) -> Result<NarInfo, StoreError> {
    let info =
        NarInfo::parse_in(&StoreDir::default(), text).map_err(|err| StoreError::BadNarInfo {
            url: url.to_string(),
            reason: err.to_string(),
        })?;
    if info.store_path() != expected {
        return Err(StoreError::BadNarInfo {
            url: url.to_string(),
            reason: format!(
                "it describes {}, not the {} it was fetched for",
                info.store_path(),
                expected
            ),
        });
    }
    Ok(info)
}

/// Parses `name:base64` public keys.
pub fn parse_public_keys(keys: &[String]) -> Result<Vec<TrustedPublicKey>, StoreError> {
    keys.iter()
        .map(|key| {
            TrustedPublicKey::parse(key.trim()).map_err(|err| StoreError::BadPublicKey {
                key: key.clone(),
                reason: err.to_string(),
            })
        })
        .collect()
}

/// Succeeds when a signature of `info` verifies with one of `keys`.
pub fn check_signature(
    info: &NarInfo,
    keys: &[TrustedPublicKey],
    url: &str,
) -> Result<(), StoreError> {
    let store_dir = StoreDir::default();
    if info.has_valid_signature(&store_dir, keys) {
        return Ok(());
    }
    let signers: Vec<&str> = info
        .signatures()
        .iter()
        .map(|s| s.key_name.as_str())
        .collect();
    let trusted: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let reason = if signers.is_empty() {
        "it carries no signature".to_string()
    } else if signers.iter().any(|s| trusted.contains(s)) {
        format!(
            "its signature by {} does not verify (the narinfo was changed after signing, or the key is wrong)",
            signers.join(", ")
        )
    } else {
        format!(
            "it is signed only by {}, which is not among the trusted keys ({})",
            signers.join(", "),
            if trusted.is_empty() {
                "none".to_string()
            } else {
                trusted.join(", ")
            }
        )
    };
    Err(StoreError::Untrusted {
        url: url.to_string(),
        path: info.store_path().to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-hello-2.12";

    fn narinfo(extra: &str) -> String {
        format!(
            "StorePath: {PATH}\nURL: nar/abc.nar.xz\nCompression: xz\n\
             NarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n\
             NarSize: 120\nReferences: 0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-hello-2.12\n{extra}"
        )
    }

    #[test]
    fn store_paths_are_validated() {
        let path = parse_store_path(PATH).unwrap();
        assert_eq!(path.name(), "hello-2.12");
        assert_eq!(hash_part(&path), "0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb");
        assert_eq!(
            parse_store_path(&format!("{PATH}/bin/hello")).unwrap(),
            path
        );
        for bad in [
            "/nix/store/short-hello",
            "/usr/bin/env",
            "/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb",
            "/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyE-hello",
            "/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-..",
            "hello",
        ] {
            let err = parse_store_path(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn narinfo_must_describe_the_requested_path() {
        let other =
            parse_store_path("/nix/store/1c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-hello-2.12").unwrap();
        let err = parse_narinfo(narinfo("").as_bytes(), "file:///c/x.narinfo", &other).unwrap_err();
        assert!(err.to_string().contains("not the /nix/store/1c5j"), "{err}");
    }

    #[test]
    fn narinfo_missing_or_broken_fields_are_named() {
        let path = parse_store_path(PATH).unwrap();
        let without_hash = narinfo("").replace("NarHash", "Nope");
        let err = parse_narinfo(without_hash.as_bytes(), "u", &path).unwrap_err();
        assert!(err.to_string().contains("missing NarHash"), "{err}");
        for (broken, field) in [
            (
                narinfo("").replace("NarSize: 120", "NarSize: -1"),
                "NarSize",
            ),
            (
                narinfo("").replace("References: 0c5", "References: ../0c5"),
                "References",
            ),
            ("\u{0}\u{1}".to_string(), "line"),
            (narinfo("StorePath: /nix/store/x\n"), "StorePath"),
        ] {
            let err = parse_narinfo(broken.as_bytes(), "u", &path).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let huge = "X: y\n".repeat(300_000);
        assert!(parse_narinfo(huge.as_bytes(), "u", &path).is_err());
    }

    #[test]
    fn unsigned_and_foreign_signatures_are_explained() {
        let path = parse_store_path(PATH).unwrap();
        let keys =
            parse_public_keys(&["test-1:BDSuFEwNUk0R1S9RaKcCtTBnJuCtU236bQM2JtTs418=".to_string()])
                .unwrap();
        let unsigned = parse_narinfo(narinfo("").as_bytes(), "u", &path).unwrap();
        let err = check_signature(&unsigned, &keys, "u").unwrap_err();
        assert!(err.to_string().contains("no signature"), "{err}");

        let sig = "Sig: other-1:".to_string() + &"A".repeat(86) + "==\n";
        let foreign = parse_narinfo(narinfo(&sig).as_bytes(), "u", &path).unwrap();
        let err = check_signature(&foreign, &keys, "u").unwrap_err();
        assert!(err.to_string().contains("signed only by other-1"), "{err}");

        let sig = "Sig: test-1:".to_string() + &"A".repeat(86) + "==\n";
        let forged = parse_narinfo(narinfo(&sig).as_bytes(), "u", &path).unwrap();
        let err = check_signature(&forged, &keys, "u").unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn bad_public_keys_are_refused_with_the_key() {
        for bad in ["nokey", "name:not-base64!", "name:AAAA"] {
            let err = parse_public_keys(&[bad.to_string()]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
