//! sha256 digests as OCI spells them, and cache keys over many fields. The
//! streaming hash of layers is `kiln_io::HashingWriter`.

use sha2::{Digest as _, Sha256};

/// sha256 over fields, each prefixed by its length so that neighbouring
/// fields cannot run into each other: the key of a cache entry whose
/// inputs are many strings.
#[derive(Default)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    /// An empty key.
    pub fn new() -> Self {
        KeyHasher::default()
    }

    /// Adds one field.
    pub fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// The key, as lowercase hex.
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// `sha256:<hex>` of a byte string.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, if it is one.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_and_whole_digests_agree() {
        let mut writer = kiln_io::HashingWriter::new(std::io::sink());
        std::io::Write::write_all(&mut writer, b"abc").unwrap();
        assert_eq!(writer.finish().1, sha256_digest(b"abc"));
    }

    #[test]
    fn sha256_digest_of_known_bytes() {
        assert_eq!(
            sha256_digest(b"foo"),
            "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
    }

    #[test]
    fn sha256_hex_refuses_other_strings() {
        assert!(sha256_hex("sha256:../../etc/passwd").is_none());
        assert!(sha256_hex("md5:abc").is_none());
        let digest = sha256_digest(b"");
        assert_eq!(sha256_hex(&digest).unwrap().len(), 64);
    }
}
