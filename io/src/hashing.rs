//! sha256 and byte count of a stream while it passes through, so a blob is
//! verified or named by its digest without a second read.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// The running sha256 and count shared by the reader and the writer.
struct Tally {
    hasher: Sha256,
    bytes: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    // Called for every write of layer packing from generic code in other
    // crates, which cannot inline it otherwise without LTO.
    #[inline]
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
    }

    fn finish(self) -> (String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (digest, self.bytes)
    }
}

/// A writer that hashes and counts every byte its inner writer accepts.
pub struct HashingWriter<W> {
    inner: W,
    tally: Tally,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            tally: Tally::new(),
        }
    }

    /// Returns the writer, the `sha256:<hex>` digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let (digest, bytes) = self.tally.finish();
        (self.inner, digest, bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        // Only what the inner writer took: the rest comes again.
        self.tally.add(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    tally: Tally,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            tally: Tally::new(),
        }
    }

    /// Returns the reader, the `sha256:<hex>` digest and the byte count.
    pub fn finish(self) -> (R, String, u64) {
        let (digest, bytes) = self.tally.finish();
        (self.inner, digest, bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.tally.add(&buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Takes at most one byte a call, then fails after `limit` bytes.
    struct Trickle {
        taken: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() == self.limit {
                return Err(io::Error::other("disk full"));
            }
            self.taken.extend_from_slice(&buf[..buf.len().min(1)]);
            Ok(buf.len().min(1))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hashes_what_passes_through() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        let (inner, digest, bytes) = writer.finish();
        assert_eq!(inner, b"abc");
        assert_eq!((digest.as_str(), bytes), (ABC, 3));
    }

    #[test]
    fn nothing_written_is_the_empty_digest() {
        let (_, digest, bytes) = HashingWriter::new(io::sink()).finish();
        assert_eq!((digest.as_str(), bytes), (EMPTY, 0));
    }

    #[test]
    fn short_writes_hash_only_what_was_taken() {
        let mut writer = HashingWriter::new(Trickle {
            taken: Vec::new(),
            limit: 2,
        });
        assert!(writer.write_all(b"abc").is_err());
        let (inner, digest, bytes) = writer.finish();
        assert_eq!(inner.taken, b"ab");
        assert_eq!(bytes, 2);
        assert_ne!(digest, ABC);

        let mut writer = HashingWriter::new(Trickle {
            taken: Vec::new(),
            limit: 10,
        });
        writer.write_all(b"abc").unwrap();
        assert_eq!(writer.finish().1, ABC);
    }

    #[test]
    fn reads_are_hashed_whatever_their_size() {
        let mut reader = HashingReader::new(io::Read::chain(&b"a"[..], &b"bc"[..]));
        let mut first = [0u8; 1];
        reader.read_exact(&mut first).unwrap();
        io::copy(&mut reader, &mut io::sink()).unwrap();
        let (_, digest, bytes) = reader.finish();
        assert_eq!((digest.as_str(), bytes), (ABC, 3));
    }

    #[test]
    fn a_failing_reader_counts_nothing_it_did_not_give() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::ConnectionReset.into())
            }
        }
        let mut reader = HashingReader::new(Broken);
        assert!(reader.read(&mut [0; 8]).is_err());
        let (_, digest, bytes) = reader.finish();
        assert_eq!((digest.as_str(), bytes), (EMPTY, 0));
    }
}
