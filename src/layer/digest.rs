//! sha256 over a stream while it passes through, for diffIDs and digests.

use std::io::{self, Write};

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

/// A writer that hashes and counts every byte it forwards.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The writer underneath, for writers stacked below this one.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the writer, the `sha256:<hex>` digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
    fn hashes_what_passes_through() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        let (inner, digest, bytes) = writer.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(bytes, 3);
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest, sha256_digest(b"abc"));
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
