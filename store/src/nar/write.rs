//! Writing restored files to disk with Nix's canonical modes and mtime 1:
//! small files whole, big files in large writes with early writeback.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::libc;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Bytes of a big file written between two requests to start writeback.
pub(super) const WRITEBACK_BYTES: usize = 8 * 1024 * 1024;

/// Writes a big file's contents through `buffer` in large writes, and has
/// the kernel start writing each stretch to disk as soon as it is written,
/// so that the sync before the commit finds little left to write.
pub(super) fn copy_big_file(
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

pub(super) fn create_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

/// Nix's mode (0444, or 0555 when executable) and mtime 1 on a written file.
pub(super) fn finish_file(file: &fs::File, executable: bool) -> io::Result<()> {
    let mode = if executable { 0o555 } else { 0o444 };
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    let one = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1);
    file.set_times(fs::FileTimes::new().set_accessed(one).set_modified(one))
}

/// Sets atime and mtime 1 on `path` itself, not on what a symlink names.
pub(super) fn set_time_one(path: &Path) -> io::Result<()> {
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

pub(super) fn write_file(path: &Path, contents: &[u8], executable: bool) -> io::Result<()> {
    let mut file = create_file(path)?;
    file.write_all(contents)?;
    finish_file(&file, executable)
}
