//! The hand-off from the decompressing thread to the restore: chunks of
//! the NAR, counted against `NarSize` on one side and hashed on the other.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;

use ring::digest::{Context, SHA256};

use super::restore::restore_tree;
use super::NarError;

/// Chunks the decompressing thread may run ahead of the restore.
pub(super) const PIPELINE_CHUNKS: usize = 8;

/// Size of one chunk handed from decompression to restore.
pub(super) const CHUNK_BYTES: usize = 256 * 1024;

/// Reads `nar` to its end in chunks sent to the restore. Stops quietly when
/// the restore has given up (the receiver is gone); read errors are sent on
/// and returned.
pub(super) fn produce(
    nar: &mut impl Read,
    sender: mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<()> {
    loop {
        let mut chunk = vec![0; CHUNK_BYTES];
        let mut filled = 0;
        while filled < CHUNK_BYTES {
            match nar.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let copy = io::Error::new(err.kind(), err.to_string());
                    let _ = sender.send(Err(copy));
                    return Err(err);
                }
            }
        }
        if filled == 0 {
            return Ok(());
        }
        chunk.truncate(filled);
        if sender.send(Ok(chunk)).is_err() {
            return Ok(());
        }
    }
}

/// Restores the NAR arriving as chunks, then reads what follows the
/// archive so a NAR longer than its end is noticed by the counting.
/// Returns the sha256 of every byte received.
pub(super) fn restore_from_chunks(
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    destination: &Path,
) -> Result<ring::digest::Digest, NarError> {
    let mut reader = ChunkReader {
        receiver,
        hasher: Context::new(&SHA256),
        current: Vec::new(),
        position: 0,
    };
    // Reading from a chunk is already a memory copy: no BufReader on top.
    restore_tree(&mut reader, destination)?;
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.hasher.finish())
}

/// `Read` over the chunks the decompressing thread sends, hashing each as
/// it arrives: here the hash shares a core with the restore, which waits on
/// the kernel, rather than with the decoder, which never waits.
struct ChunkReader {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    hasher: Context,
    current: Vec<u8>,
    position: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            match self.receiver.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.hasher.update(&self.current);
                    self.position = 0;
                }
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Counts the uncompressed NAR, and stops a NAR longer than its `NarSize`
/// before it fills the disk.
pub(super) struct CountingReader<R> {
    pub(super) inner: R,
    pub(super) read: u64,
    pub(super) limit: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(NarError::TooLong {
                expected: self.limit,
            }));
        }
        Ok(n)
    }
}
