//! Signing pushed images in cosign's key-pair format, which `cosign
//! verify --key` and containers/image (`skopeo`, `podman` with a
//! `sigstoreSigned` policy and `use-sigstore-attachments`) check: a
//! simple-signing payload naming the repository and manifest digest,
//! signed with ECDSA P-256 over SHA-256, stored as the one layer of a
//! manifest under the tag `sha256-<hex>.sig`.
//!
//! Private keys are cosign's encrypted format (`ENCRYPTED SIGSTORE
//! PRIVATE KEY`, see [`encrypted`]), as [`generate`] writes them with the
//! password from `KILN_SIGN_PASSWORD`, or plain PKCS#8 PEM (`PRIVATE
//! KEY`). Keyless signing (Fulcio, Rekor) needs the internet and is not
//! done.

pub mod encrypted;

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;

use crate::image::canonical_json;
use crate::layer::digest::sha256_digest;

/// Media type of a simple-signing payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// A private key read from a file, to sign with.
pub struct Key(SigningKey);

impl std::fmt::Debug for Key {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("signing key {path}: {reason}")]
pub struct KeyError {
    /// The file.
    pub path: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// The environment variable holding the private key's password.
pub const PASSWORD_VARIABLE: &str = "KILN_SIGN_PASSWORD";

/// The password in `KILN_SIGN_PASSWORD`, empty when unset (as cosign
/// allows).
pub fn password() -> Vec<u8> {
    std::env::var_os(PASSWORD_VARIABLE)
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
        .unwrap_or_default()
}

/// A new key pair: the private key encrypted with `password` in cosign's
/// format, the public key as SubjectPublicKeyInfo PEM (what cosign and
/// `sigstoreSigned` policies read).
pub fn generate(password: &[u8]) -> (String, String) {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let der = key.to_pkcs8_der().expect("a P-256 key encodes");
    let private = encrypted::encrypt(der.as_bytes(), password);
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("a P-256 key encodes");
    (private, public)
}

impl Key {
    /// Reads the private key in `text` (from the file `path`), decrypting
    /// a cosign encrypted key with `password`.
    pub fn parse(text: &str, path: &str, password: &[u8]) -> Result<Key, KeyError> {
        let error = |reason: &str| KeyError {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if text.contains(encrypted::LABEL) || text.contains(encrypted::OLD_LABEL) {
            let der = encrypted::decrypt(text, password).map_err(|reason| {
                // A wrong password is fixed by the password, not a new key.
                if reason.contains(PASSWORD_VARIABLE) {
                    error(&reason)
                } else {
                    error(&format!("{reason}; make a key pair with `kiln keygen`"))
                }
            })?;
            return SigningKey::from_pkcs8_der(&der).map(Key).map_err(|e| {
                error(&format!(
                    "holds no ECDSA P-256 PKCS#8 key ({e}); make a key pair with `kiln keygen`"
                ))
            });
        }
        if text.contains("ENCRYPTED PRIVATE KEY") {
            return Err(error("is an encrypted PKCS#8 key, which kiln does not read yet; make a key pair with `kiln keygen`"));
        }
        if !text.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(error("is not a PEM private key (`-----BEGIN PRIVATE KEY-----`); make a key pair with `kiln keygen`"));
        }
        SigningKey::from_pkcs8_pem(text).map(Key).map_err(|e| {
            error(&format!(
                "is not an ECDSA P-256 PKCS#8 key ({e}); make a key pair with `kiln keygen`"
            ))
        })
    }

    /// The signature manifest for the manifest `digest` pushed to
    /// `repository` (`registry/name`).
    pub fn sign(&self, repository: &str, digest: &str) -> Signature {
        let payload = canonical_json(&json!({
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        }));
        // RFC 6979 signatures: the same key and payload, the same bytes.
        let signature: DerSignature = self.0.sign(&payload);
        let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_bytes());
        let payload_digest = sha256_digest(&payload);
        let config = canonical_json(&json!({
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
        }));
        let manifest = canonical_json(&json!({
            "schemaVersion": 2,
            "mediaType": crate::image::referrer::MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": PAYLOAD_MEDIA_TYPE,
                "digest": payload_digest,
                "size": payload.len(),
                "annotations": {SIGNATURE_ANNOTATION: signature},
            }],
        }));
        Signature {
            tag: format!("{}.sig", digest.replacen(':', "-", 1)),
            manifest,
            config,
            payload,
        }
    }
}

/// A signature, ready to push.
#[derive(Debug, Clone)]
pub struct Signature {
    /// `sha256-<hex>.sig`: where cosign and containers/image look.
    pub tag: String,
    /// Its manifest.
    pub manifest: Vec<u8>,
    /// Its config blob.
    pub config: Vec<u8>,
    /// The simple-signing payload, its one layer.
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn a_signature_verifies_with_the_public_key_and_names_the_image() {
        let (private, public) = generate(b"pw");
        let key = Key::parse(&private, "k", b"pw").unwrap();
        // The same key as plain PKCS#8 PEM signs the same.
        let plain = key.0.to_pkcs8_pem(LineEnding::LF).unwrap();
        let again = Key::parse(&plain, "k", b"").unwrap();
        assert_eq!(again.0, key.0);
        let wrong = Key::parse(&private, "k.key", b"nope")
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("k.key") && wrong.contains("KILN_SIGN_PASSWORD"),
            "{wrong}"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let signature = key.sign("r:5000/app", &digest);
        assert_eq!(signature.tag, format!("sha256-{}.sig", "a".repeat(64)));
        let manifest: serde_json::Value = serde_json::from_slice(&signature.manifest).unwrap();
        let encoded = manifest["layers"][0]["annotations"][SIGNATURE_ANNOTATION]
            .as_str()
            .unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let verifying = VerifyingKey::from_public_key_pem(&public).unwrap();
        let parsed = p256::ecdsa::Signature::from_der(&der).unwrap();
        verifying.verify(&signature.payload, &parsed).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&signature.payload).unwrap();
        assert_eq!(
            payload["critical"]["image"]["docker-manifest-digest"],
            digest
        );
        assert_eq!(
            payload["critical"]["identity"]["docker-reference"],
            "r:5000/app"
        );
        assert_eq!(key.sign("r:5000/app", &digest).manifest, signature.manifest);
    }

    #[test]
    fn files_that_are_not_usable_keys_say_what_to_do() {
        let (_, public) = generate(b"");
        for (text, reason) in [
            ("hello".to_string(), "not a PEM private key"),
            (public, "not a PEM private key"),
            ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n".to_string(), "no cosign encrypted key"),
            (encrypted::encrypt(b"not der", b""), "no ECDSA P-256"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(), "not an ECDSA P-256"),
        ] {
            let err = Key::parse(&text, "key.pem", b"").unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains("key.pem") && err.contains("kiln keygen"), "{err}");
        }
    }
}
