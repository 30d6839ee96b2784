//! Small tar writing shared by the archive outputs: fixed owner, mode and
//! mtime for every entry, and the file replaced atomically.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use kiln_io::AtomicFile;
use tar::{Builder, EntryType, Header};

use super::ImageError;

/// Entries of an archive being written.
pub struct ArchiveWriter<W: Write> {
    builder: Builder<W>,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes into `out`, every entry with mtime `mtime`.
    pub fn new(out: W, mtime: u64) -> Self {
        ArchiveWriter {
            builder: Builder::new(out),
            mtime,
        }
    }

    fn header(
        &self,
        name: &str,
        entry_type: EntryType,
        mode: u32,
        size: u64,
    ) -> io::Result<Header> {
        let mut header = Header::new_ustar();
        header.set_path(name)?;
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header.set_size(size);
        header.set_cksum();
        Ok(header)
    }

    /// A folder entry.
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        let header = self.header(name, EntryType::Directory, 0o755, 0)?;
        self.builder.append(&header, io::empty())
    }

    /// A file entry holding `bytes`.
    pub fn bytes(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let header = self.header(name, EntryType::Regular, 0o644, bytes.len() as u64)?;
        self.builder.append(&header, bytes)
    }

    /// A file entry of `size` bytes streamed from `reader`; fewer or more
    /// bytes than promised is an error.
    pub fn stream(&mut self, name: &str, size: u64, reader: impl Read) -> io::Result<()> {
        let header = self.header(name, EntryType::Regular, 0o644, size)?;
        let mut counted = Counted {
            inner: reader.take(size + 1),
            count: 0,
        };
        self.builder.append(&header, &mut counted)?;
        if counted.count != size {
            return Err(io::Error::other(format!(
                "{name}: expected {size} bytes, read {}",
                counted.count
            )));
        }
        Ok(())
    }

    /// Ends the archive and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count += read as u64;
        Ok(read)
    }
}

/// Writes the tar archive at `path` through `fill`, every entry with mtime
/// `mtime`, atomically as [`write_file_atomically`] does.
pub fn write_archive_atomically(
    path: &Path,
    mtime: u64,
    fill: impl FnOnce(&mut ArchiveWriter<&mut BufWriter<&File>>) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    write_file_atomically(path, |out| {
        let mut archive = ArchiveWriter::new(out, mtime);
        fill(&mut archive)?;
        archive.finish().map_err(|e| ImageError::io(path, e))?;
        Ok(())
    })
}

/// Writes the file at `path` through `fill`: to a temporary name in the
/// same folder, fsynced, then renamed, so `path` is never half written.
fn write_file_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let io_err = |e: io::Error| ImageError::io(path, e);
    let temp = AtomicFile::beside(path).map_err(io_err)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, temp.as_file());
        fill(&mut out)?;
        out.flush().map_err(io_err)?;
    }
    temp.commit(path).map_err(io_err)
}
