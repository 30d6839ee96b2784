//! cosign's encrypted private key format, which `cosign generate-key-pair`
//! writes and `cosign sign --key` reads: PEM labelled `ENCRYPTED SIGSTORE
//! PRIVATE KEY` (`ENCRYPTED COSIGN PRIVATE KEY` before cosign 2), whose
//! body is JSON naming a key derivation (scrypt, N=32768, r=8, p=1, a
//! random salt) and a cipher (NaCl secretbox, a random nonce), with the
//! PKCS#8 DER of the key as the ciphertext. The password is
//! `KILN_SIGN_PASSWORD`, empty when unset, as cosign's `COSIGN_PASSWORD`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The PEM label cosign 2 writes.
pub const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";

/// The PEM label cosign 1 wrote, still read.
pub const OLD_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// scrypt's cost as cosign sets it: N = 2^15, r = 8, p = 1.
const LOG_N: u8 = 15;

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[allow(non_snake_case)] // cosign's field names.
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// `der` (a PKCS#8 private key) encrypted with `password`, as a PEM file.
pub fn encrypt(der: &[u8], password: &[u8]) -> String {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let key = derive(password, &salt, LOG_N, 8, 1).expect("cosign's scrypt parameters are valid");
    let ciphertext = XSalsa20Poly1305::new(&key.into())
        .encrypt(&nonce.into(), der)
        .expect("secretbox encrypts any length");
    let envelope = json!({
        "kdf": {"name": "scrypt", "params": {"N": 1u64 << LOG_N, "r": 8, "p": 1}, "salt": STANDARD.encode(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": STANDARD.encode(nonce)},
        "ciphertext": STANDARD.encode(ciphertext),
    });
    pem(LABEL, envelope.to_string().as_bytes())
}

/// The PKCS#8 DER in the encrypted key `text`, decrypted with `password`;
/// `Err` says what is wrong as a phrase after the file name.
pub fn decrypt(text: &str, password: &[u8]) -> Result<Vec<u8>, String> {
    let body = pem_body(text).ok_or("is not a PEM block")?;
    let envelope: Envelope = serde_json::from_slice(&body)
        .map_err(|e| format!("holds no cosign encrypted key ({e})"))?;
    if envelope.kdf.name != "scrypt" || envelope.cipher.name != "nacl/secretbox" {
        return Err(format!(
            "uses {} and {}; kiln reads cosign's scrypt and nacl/secretbox",
            envelope.kdf.name, envelope.cipher.name
        ));
    }
    let params = &envelope.kdf.params;
    let log_n = params.N.checked_ilog2().filter(|l| 1u64 << l == params.N);
    // Bounded so a hostile file cannot demand gigabytes of scrypt memory.
    let log_n = log_n
        .filter(|l| (1..=20).contains(l) && params.r <= 32 && params.p <= 16)
        .ok_or("has scrypt parameters cosign never writes")? as u8;
    let decode = |field: &str, value: &str| {
        STANDARD
            .decode(value)
            .map_err(|e| format!("has a {field} that is not base64 ({e})"))
    };
    let salt = decode("salt", &envelope.kdf.salt)?;
    let nonce: [u8; 24] = decode("nonce", &envelope.cipher.nonce)?
        .try_into()
        .map_err(|_| "has a nonce that is not 24 bytes")?;
    let ciphertext = decode("ciphertext", &envelope.ciphertext)?;
    let key = derive(password, &salt, log_n, params.r, params.p)?;
    XSalsa20Poly1305::new(&key.into())
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map_err(|_| {
            "cannot be decrypted with the password in KILN_SIGN_PASSWORD (empty when unset); set it to the key's password".to_string()
        })
}

fn derive(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<[u8; 32], String> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| format!("has bad scrypt parameters ({e})"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|e| format!("scrypt failed ({e})"))?;
    Ok(key)
}

fn pem(label: &str, body: &[u8]) -> String {
    let encoded = STANDARD.encode(body);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The bytes of the first PEM block of `text`, whatever its label.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN ")?;
    let after = &text[start..];
    let body_start = after.find('\n')? + 1;
    let body_end = after.find("-----END ")?;
    let body: String = after
        .get(body_start..body_end)?
        .split_whitespace()
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_right_password_only() {
        let pem = encrypt(b"der bytes", b"pw");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert_eq!(decrypt(&pem, b"pw").unwrap(), b"der bytes");
        let err = decrypt(&pem, b"other").unwrap_err();
        assert!(err.contains("KILN_SIGN_PASSWORD"), "{err}");
        let old = pem.replace(LABEL, OLD_LABEL);
        assert_eq!(decrypt(&old, b"pw").unwrap(), b"der bytes");
    }

    #[test]
    fn hostile_files_are_refused_without_panicking() {
        let wrap = |json: &str| pem(LABEL, json.as_bytes());
        let good = r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"AAAA"},"cipher":{"name":"nacl/secretbox","nonce":"AAAA"},"ciphertext":"AAAA"}"#;
        for (text, reason) in [
            ("no pem".to_string(), "not a PEM"),
            (wrap("[]"), "no cosign encrypted key"),
            (
                wrap(&good.replace("32768", "1099511627776")),
                "never writes",
            ),
            (wrap(&good.replace("32768", "1000")), "never writes"),
            (wrap(&good.replace("\"r\":8", "\"r\":4096")), "never writes"),
            (wrap(&good.replace("scrypt", "argon2")), "kiln reads"),
            (wrap(good), "not 24 bytes"),
            (
                wrap(&good.replace("\"salt\":\"AAAA\"", "\"salt\":\"!!\"")),
                "not base64",
            ),
        ] {
            let err = decrypt(&text, b"").unwrap_err();
            assert!(err.contains(reason), "{reason}: {err}");
        }
    }
}
