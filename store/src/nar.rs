//! NAR download to files on disk, in one streaming pass: decompress, hash,
//! restore. Memory stays bounded by buffers and directory depth, whatever the
//! NAR's size.
//!
//! Decoding is `nix-archive`'s streaming reader (`decode_events_reader`),
//! which refuses entry names that are empty, `.`, `..` or contain `/`,
//! duplicates and unsorted entries, and trailing bytes. This module adds the
//! restore itself, the hash and size check against the narinfo and Nix's
//! canonical modes and mtimes.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, PoisonError};

use nix::libc;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix_archive::nar::{decode_events_reader, Event};
use nix_narinfo::Compression;
use ring::digest::{Context, SHA256};

/// Why a NAR could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum NarError {
    /// The narinfo names a compression kiln cannot read.
    #[error("unsupported compression `{0}`")]
    UnsupportedCompression(String),
    /// The NAR is malformed, truncated or hostile.
    #[error("{0}")]
    Malformed(#[from] nix_archive::nar::Error),
    /// The NAR is longer than its narinfo's `NarSize`.
    #[error("the NAR is longer than its NarSize of {expected} bytes")]
    TooLong {
        /// The narinfo's `NarSize`.
        expected: u64,
    },
    /// The NAR's size differs from `NarSize`.
    #[error("the NAR is {found} bytes, its narinfo says NarSize {expected}")]
    SizeMismatch {
        /// The narinfo's `NarSize`.
        expected: u64,
        /// Bytes read.
        found: u64,
    },
    /// The NAR's sha256 differs from `NarHash`.
    #[error("the NAR hashes to sha256:{found}, its narinfo says {expected}")]
    HashMismatch {
        /// The narinfo's `NarHash`, as written there.
        expected: String,
        /// What the bytes hash to, in Nix's base32.
        found: String,
    },
    /// The narinfo's `NarHash` is not sha256.
    #[error("NarHash {0} is not sha256, the only hash Nix writes for NARs")]
    NotSha256(String),
    /// Setting modes or times on the restored files failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What the narinfo promises about a NAR.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The `NarHash`.
    pub nar_hash: &'a nix_derivation::NixHash,
    /// The `NarSize`.
    pub nar_size: u64,
    /// The `Compression`.
    pub compression: &'a Compression,
}

/// Most memory one xz decoder may take. `xz -9` needs 65 MiB; a hostile
/// stream asking for more is refused instead of exhausting memory.
const XZ_MEMORY_LIMIT: u64 = 96 * 1024 * 1024;

/// Wraps a compressed download in the decompressor `compression` names.
pub fn decompress<'r>(
    compression: &Compression,
    reader: impl Read + Send + 'r,
) -> Result<Box<dyn Read + Send + 'r>, NarError> {
    // Decoders pull big chunks from the network or file.
    let buffered = BufReader::with_capacity(128 * 1024, reader);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        Compression::Xz => {
            // xz's own CRC64 would check again what NarHash checks anyway,
            // at a few percent of the decoding time.
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMORY_LIMIT,
                liblzma::stream::CONCATENATED | liblzma::stream::IGNORE_CHECK,
            )
            .map_err(io::Error::from)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(buffered, stream))
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        other => return Err(NarError::UnsupportedCompression(other.to_string())),
    })
}

/// Restores the NAR read (compressed) from `download` at `destination`,
/// which must not exist, then checks it against `expected` and gives it
/// Nix's canonical modes and mtime. On error `destination` may hold a
/// partial tree: the caller removes it.
pub fn restore_verified(
    download: impl Read + Send,
    expected: &Expected<'_>,
    destination: &Path,
) -> Result<(), NarError> {
    if expected.nar_hash.algorithm() != nix_derivation::HashAlgorithm::Sha256 {
        return Err(NarError::NotSha256(
            expected.nar_hash.to_nix_nixbase32_string(),
        ));
    }
    let nar = decompress(expected.compression, download)?;
    let mut counting = CountingReader {
        inner: nar,
        read: 0,
        limit: expected.nar_size,
    };
    // Decompressing runs on its own thread, ahead of the hashing and the
    // restore by at most PIPELINE_CHUNKS chunks: xz decoding alone takes
    // about as long as all the rest, so the two halves overlap.
    let (sender, receiver) = mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPELINE_CHUNKS);
    let (produced, restored) = std::thread::scope(|scope| {
        let nar = &mut counting;
        // The sender moves into the thread so the restore sees the end of
        // the stream when the thread finishes.
        let producer = scope.spawn(move || produce(nar, sender));
        let restored = restore_from_chunks(receiver, destination);
        (producer.join(), restored)
    });
    let digest = match produced {
        Ok(Ok(())) => restored?,
        Ok(Err(err)) => return Err(NarError::Io(err)),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if counting.read != expected.nar_size {
        return Err(NarError::SizeMismatch {
            expected: expected.nar_size,
            found: counting.read,
        });
    }
    if digest.as_ref() != expected.nar_hash.digest_as_bytes() {
        let found = nix_derivation::NixHash::from_algorithm_and_digest(
            nix_derivation::HashAlgorithm::Sha256,
            digest.as_ref(),
        )
        .map(|h| h.to_nix_nixbase32_string())
        .unwrap_or_default();
        return Err(NarError::HashMismatch {
            expected: expected.nar_hash.to_nix_nixbase32_string(),
            found: found.trim_start_matches("sha256:").to_string(),
        });
    }
    Ok(())
}

/// Chunks the decompressing thread may run ahead of the restore.
const PIPELINE_CHUNKS: usize = 8;

/// Size of one chunk handed from decompression to restore.
const CHUNK_BYTES: usize = 256 * 1024;

/// Reads `nar` to its end in chunks sent to the restore. Stops quietly when
/// the restore has given up (the receiver is gone); read errors are sent on
/// and returned.
fn produce(nar: &mut impl Read, sender: mpsc::SyncSender<io::Result<Vec<u8>>>) -> io::Result<()> {
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
fn restore_from_chunks(
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

/// Regular files up to this size are handed to writer threads; bigger ones
/// stream to disk on the decoding thread, so memory stays bounded.
const SMALL_FILE_BYTES: u64 = 256 * 1024;

/// Threads creating small files. File creation, not bandwidth, is what a
/// NAR of many small files waits on, and it overlaps well.
const FILE_WRITERS: usize = 8;

/// A small file waiting for a writer thread.
struct FileJob {
    path: PathBuf,
    contents: Vec<u8>,
    executable: bool,
}

/// Recreates the NAR's tree at `destination` (which must not exist).
///
/// Written here rather than with `nix-archive`'s `restore_reader`, whose
/// decoder it still uses (and so its checks of names, order and framing):
/// that restore creates every file on one thread, which leaves a NAR of
/// thousands of small files waiting on one file creation at a time.
/// Folders are created in order before anything inside them; every name
/// has passed the decoder's checks (no `/`, `.`, `..`, empty or repeated
/// names), so each path stays inside `destination`.
fn restore_tree(reader: &mut impl Read, destination: &Path) -> Result<(), NarError> {
    let (jobs, queue) = mpsc::sync_channel::<FileJob>(FILE_WRITERS * 8);
    // Folders (children first) and symlinks get their final mode and time
    // once every file is written.
    let mut finished_folders: Vec<PathBuf> = Vec::new();
    let mut links: Vec<PathBuf> = Vec::new();
    let queue = Mutex::new(queue);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);
    let mut big_file_buffer = vec![0; CHUNK_BYTES];
    let decoded = std::thread::scope(|scope| {
        for _ in 0..FILE_WRITERS {
            scope.spawn(|| loop {
                let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok(job) = job else { break };
                if let Err(err) = write_file(&job.path, &job.contents, job.executable) {
                    failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(err);
                }
            });
        }
        let mut folder = destination.to_path_buf();
        let place = |folder: &Path, name: Option<&[u8]>| match name {
            Some(name) => folder.join(OsStr::from_bytes(name)),
            None => destination.to_path_buf(),
        };
        let result = decode_events_reader(reader, |event| {
            match event {
                Event::DirectoryStart { name } => {
                    if let Some(name) = name {
                        folder.push(OsStr::from_bytes(name));
                    }
                    fs::create_dir(&folder)?;
                }
                Event::DirectoryEnd { name } => {
                    finished_folders.push(folder.clone());
                    if name.is_some() {
                        folder.pop();
                    }
                }
                Event::Regular {
                    name,
                    executable,
                    mut contents,
                } => {
                    let path = place(&folder, name);
                    if contents.size() <= SMALL_FILE_BYTES {
                        let mut bytes = Vec::with_capacity(contents.size() as usize);
                        contents.read_to_end(&mut bytes)?;
                        let job = FileJob {
                            path,
                            contents: bytes,
                            executable,
                        };
                        jobs.send(job)
                            .map_err(|_| io::Error::other("the file writers stopped"))?;
                    } else {
                        let mut file = create_file(&path)?;
                        copy_big_file(&mut contents, &mut file, &mut big_file_buffer)?;
                        finish_file(&file, executable)?;
                    }
                }
                Event::Symlink { name, target } => {
                    let path = place(&folder, name);
                    std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)?;
                    links.push(path);
                }
            }
            Ok(())
        });
        drop(jobs);
        result
    });
    decoded?;
    if let Some(err) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(NarError::Io(err));
    }
    for link in &links {
        set_time_one(link)?;
    }
    for folder in &finished_folders {
        fs::set_permissions(folder, fs::Permissions::from_mode(0o555))?;
        set_time_one(folder)?;
    }
    Ok(())
}

/// Bytes of a big file written between two requests to start writeback.
const WRITEBACK_BYTES: usize = 8 * 1024 * 1024;

/// Writes a big file's contents through `buffer` in large writes, and has
/// the kernel start writing each stretch to disk as soon as it is written,
/// so that the sync before the commit finds little left to write.
fn copy_big_file(
    contents: &mut impl Read,
    file: &mut fs::File,
    buffer: &mut [u8],
) -> io::Result<()> {
    let mut unflushed = 0;
    loop {
        let n = match contents.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        file.write_all(&buffer[..n])?;
        unflushed += n;
        if unflushed >= WRITEBACK_BYTES {
            start_writeback(file);
            unflushed = 0;
        }
    }
}

/// Starts writing `file`'s dirty pages to disk without waiting for them.
/// Only a head start for the sync that follows, so a failure is ignored.
fn start_writeback(file: &fs::File) {
    // SAFETY: sync_file_range reads nothing from memory; the descriptor
    // stays open for the call because `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn create_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

/// Nix's mode (0444, or 0555 when executable) and mtime 1 on a written file.
fn finish_file(file: &fs::File, executable: bool) -> io::Result<()> {
    let mode = if executable { 0o555 } else { 0o444 };
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    let one = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1);
    file.set_times(fs::FileTimes::new().set_accessed(one).set_modified(one))
}

/// Sets atime and mtime 1 on `path` itself, not on what a symlink names.
fn set_time_one(path: &Path) -> io::Result<()> {
    let one = TimeSpec::new(1, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &one,
        &one,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

fn write_file(path: &Path, contents: &[u8], executable: bool) -> io::Result<()> {
    let mut file = create_file(path)?;
    file.write_all(contents)?;
    finish_file(&file, executable)
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
struct CountingReader<R> {
    inner: R,
    read: u64,
    limit: u64,
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

/// Removes a tree kiln restored, including its read-only folders. A missing
/// tree is fine.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(root) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if meta.is_dir() {
        make_folders_writable(root)?;
        fs::remove_dir_all(root)
    } else {
        fs::remove_file(root)
    }
}

fn make_folders_writable(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_folders_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;

    /// Builds a NAR by hand: hostile archives cannot come from a real tool.
    struct NarWriter(Vec<u8>);

    impl NarWriter {
        fn new() -> Self {
            let mut w = NarWriter(Vec::new());
            w.s(b"nix-archive-1");
            w
        }
        fn s(&mut self, bytes: &[u8]) -> &mut Self {
            self.0
                .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            self.0.extend_from_slice(bytes);
            let pad = (8 - bytes.len() % 8) % 8;
            self.0.extend(std::iter::repeat_n(0, pad));
            self
        }
        fn tokens(&mut self, tokens: &[&str]) -> &mut Self {
            for t in tokens {
                self.s(t.as_bytes());
            }
            self
        }
        fn file(&mut self, name: &str, contents: &[u8]) -> &mut Self {
            self.tokens(&[
                "entry", "(", "name", name, "node", "(", "type", "regular", "contents",
            ]);
            self.s(contents);
            self.tokens(&[")", ")"])
        }
    }

    fn sha256_of(bytes: &[u8]) -> nix_derivation::NixHash {
        nix_derivation::NixHash::from_algorithm_and_digest(
            nix_derivation::HashAlgorithm::Sha256,
            &Sha256::digest(bytes),
        )
        .unwrap()
    }

    fn directory_nar(build: impl FnOnce(&mut NarWriter)) -> Vec<u8> {
        let mut w = NarWriter::new();
        w.tokens(&["(", "type", "directory"]);
        build(&mut w);
        w.tokens(&[")"]);
        w.0
    }

    fn restore_plain(nar: &[u8], dest: &Path) -> Result<(), NarError> {
        let hash = sha256_of(nar);
        let expected = Expected {
            nar_hash: &hash,
            nar_size: nar.len() as u64,
            compression: &Compression::None,
        };
        restore_verified(nar, &expected, dest)
    }

    #[test]
    fn restores_with_nix_modes_and_mtime_one() {
        let nar = directory_nar(|w| {
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
            w.tokens(&[
                "entry",
                "(",
                "name",
                "tool",
                "node",
                "(",
                "type",
                "regular",
                "executable",
                "",
                "contents",
            ]);
            w.s(b"#!/bin/sh\n");
            w.tokens(&[")", ")", ")", ")"]);
            w.file("data", b"hello");
            w.tokens(&[
                "entry", "(", "name", "link", "node", "(", "type", "symlink", "target", "data",
                ")", ")",
            ]);
        });
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        restore_plain(&nar, &dest).unwrap();
        let mode = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode(""), 0o555);
        assert_eq!(mode("bin"), 0o555);
        assert_eq!(mode("bin/tool"), 0o555);
        assert_eq!(mode("data"), 0o444);
        assert_eq!(fs::read(dest.join("data")).unwrap(), b"hello");
        assert_eq!(fs::read_link(dest.join("link")).unwrap(), Path::new("data"));
        for p in ["", "bin", "bin/tool", "data", "link"] {
            assert_eq!(
                fs::symlink_metadata(dest.join(p)).unwrap().mtime(),
                1,
                "{p}"
            );
        }
        remove_tree(&dest).unwrap();
        assert!(!dest.exists());
    }

    #[test]
    fn big_files_are_written_whole() {
        // Past SMALL_FILE_BYTES the file streams on the decoding thread, and
        // past WRITEBACK_BYTES it also starts writeback on the way.
        let big: Vec<u8> = (0..WRITEBACK_BYTES + 3 * CHUNK_BYTES + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let nar = directory_nar(|w| {
            w.file("big", &big).file("small", b"s");
        });
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        restore_plain(&nar, &dest).unwrap();
        assert!(fs::read(dest.join("big")).unwrap() == big);
        assert_eq!(fs::read(dest.join("small")).unwrap(), b"s");
        let meta = fs::metadata(dest.join("big")).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o444, 1));
    }

    #[test]
    fn hostile_names_are_rejected() {
        for name in ["..", ".", "", "a/b", "/etc"] {
            let nar = directory_nar(|w| {
                w.file(name, b"x");
            });
            let tmp = tempfile::tempdir().unwrap();
            let err = restore_plain(&nar, &tmp.path().join("out")).unwrap_err();
            assert!(
                err.to_string().contains("invalid entry name"),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn duplicate_and_unsorted_entries_are_rejected() {
        for (a, b) in [("same", "same"), ("b", "a")] {
            let nar = directory_nar(|w| {
                w.file(a, b"1").file(b, b"2");
            });
            let tmp = tempfile::tempdir().unwrap();
            let err = restore_plain(&nar, &tmp.path().join("out")).unwrap_err();
            assert!(err.to_string().contains("not sorted"), "{err}");
        }
    }

    #[test]
    fn truncated_and_trailing_bytes_are_rejected() {
        let nar = directory_nar(|w| {
            w.file("f", b"contents");
        });
        let tmp = tempfile::tempdir().unwrap();
        let truncated = &nar[..nar.len() - 12];
        let hash = sha256_of(&nar);
        let expected = Expected {
            nar_hash: &hash,
            nar_size: nar.len() as u64,
            compression: &Compression::None,
        };
        let err = restore_verified(truncated, &expected, &tmp.path().join("a")).unwrap_err();
        assert!(err.to_string().contains("unexpected end"), "{err}");

        let mut longer = nar.clone();
        longer.extend_from_slice(&[0; 8]);
        let err = restore_verified(&longer[..], &expected, &tmp.path().join("b")).unwrap_err();
        assert!(err.to_string().contains("longer than its NarSize"), "{err}");
    }

    #[test]
    fn hash_and_size_mismatches_are_named() {
        let nar = directory_nar(|w| {
            w.file("f", b"contents");
        });
        let tmp = tempfile::tempdir().unwrap();
        let wrong = sha256_of(b"something else");
        let expected = Expected {
            nar_hash: &wrong,
            nar_size: nar.len() as u64,
            compression: &Compression::None,
        };
        let err = restore_verified(&nar[..], &expected, &tmp.path().join("a")).unwrap_err();
        assert!(matches!(err, NarError::HashMismatch { .. }), "{err}");

        let right = sha256_of(&nar);
        let expected = Expected {
            nar_hash: &right,
            nar_size: nar.len() as u64 + 8,
            compression: &Compression::None,
        };
        let err = restore_verified(&nar[..], &expected, &tmp.path().join("b")).unwrap_err();
        assert!(err.to_string().contains("NarSize"), "{err}");
    }

    #[test]
    fn xz_streams_needing_too_much_memory_are_refused() {
        if !kiln_harness::require(&["xz"]) {
            return;
        }
        let nar = directory_nar(|w| {
            w.file("f", b"contents");
        });
        let mut xz = std::process::Command::new("xz")
            .args(["--format=xz", "--lzma2=dict=1GiB", "--stdout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut xz.stdin.take().unwrap(), &nar).unwrap();
        let compressed = xz.wait_with_output().unwrap().stdout;
        let hash = sha256_of(&nar);
        let expected = Expected {
            nar_hash: &hash,
            nar_size: nar.len() as u64,
            compression: &Compression::Xz,
        };
        let tmp = tempfile::tempdir().unwrap();
        let err = restore_verified(&compressed[..], &expected, &tmp.path().join("a")).unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");

        let mut xz = std::process::Command::new("xz")
            .args(["--format=xz", "--stdout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut xz.stdin.take().unwrap(), &nar).unwrap();
        let compressed = xz.wait_with_output().unwrap().stdout;
        restore_verified(&compressed[..], &expected, &tmp.path().join("b")).unwrap();
    }

    #[test]
    fn unknown_compression_is_refused() {
        let err = decompress(&Compression::Other("lz4".into()), io::empty())
            .err()
            .unwrap();
        assert!(err.to_string().contains("lz4"), "{err}");
    }
}
