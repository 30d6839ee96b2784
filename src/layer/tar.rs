//! Writes a [`Tree`] as a deterministic tar stream.
//!
//! Entries in name order, uid/gid 0, empty user and group names, every
//! mtime the same (`SOURCE_DATE_EPOCH`), no atime/ctime, no xattrs, ustar
//! headers; a PAX extended header only when a name or link target does not
//! fit ustar's fields. File bytes are streamed from disk.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{Builder, EntryType, Header};

use super::tree::{Content, Entry, Kind, Tree};
use super::LayerError;

/// ustar's link name field length.
const LINK_NAME_FIELD: usize = 100;

/// Name of the PAX extended header entries; fixed so it never varies.
const PAX_HEADER_NAME: &str = "PaxHeader";

/// tar's record size: every header and body is padded to a multiple.
const TAR_BLOCK: u64 = 512;

/// Bytes read from a file per `read` call. The tar crate copies bodies
/// through an 8 KiB buffer, which costs a syscall per 8 KiB on gigabyte
/// store paths.
const FILE_COPY_BUFFER: usize = 256 << 10;

/// Writes `tree` as a tar into `out`, every entry with mtime `mtime`, and
/// returns `out`.
pub fn write_tree<W: Write>(tree: &Tree, mtime: u64, out: W) -> Result<W, LayerError> {
    let mut builder = Builder::new(out);
    let mut buffer = vec![0; FILE_COPY_BUFFER];
    for entry in tree.entries() {
        append_entry(&mut builder, entry, mtime, &mut buffer)?;
    }
    builder
        .into_inner()
        .map_err(|e| LayerError::Write { source: e })
}

fn append_entry<W: Write>(
    builder: &mut Builder<W>,
    entry: &Entry,
    mtime: u64,
    buffer: &mut [u8],
) -> Result<(), LayerError> {
    let mut header = Header::new_ustar();
    header.set_mode(entry.mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(0);
    let mut pax: Vec<(&str, &[u8])> = Vec::new();

    let (entry_type, link) = match &entry.kind {
        Kind::Dir => (EntryType::Directory, None),
        Kind::File { size, .. } => {
            header.set_size(*size);
            (EntryType::Regular, None)
        }
        Kind::Symlink { target } => (EntryType::Symlink, Some(target.as_slice())),
        Kind::HardLink { target } => (EntryType::Link, Some(target.as_slice())),
        Kind::Fifo => (EntryType::Fifo, None),
    };
    header.set_entry_type(entry_type);

    let mut name = entry.name.clone();
    if entry.kind == Kind::Dir {
        name.push(b'/');
    }
    if header
        .set_path(Path::new(OsStr::from_bytes(&name)))
        .is_err()
    {
        // Too long for ustar's name and prefix fields: the full name goes in
        // a PAX record and the header keeps a truncated copy for old readers.
        clear_name_fields(&mut header);
        let keep = name.len().min(LINK_NAME_FIELD);
        header.as_old_mut().name[..keep].copy_from_slice(&name[..keep]);
        pax.push(("path", &name));
    }
    if let Some(target) = link {
        if target.len() <= LINK_NAME_FIELD {
            // Literal: the link target must not be normalised.
            header
                .set_link_name_literal(target)
                .map_err(|e| LayerError::Write { source: e })?;
        } else {
            pax.push(("linkpath", target));
        }
    }
    header.set_cksum();

    let write_err = |source| LayerError::Write { source };
    if !pax.is_empty() {
        append_pax(builder, &pax, mtime).map_err(write_err)?;
    }
    match &entry.kind {
        Kind::File {
            size,
            content: Content::Disk(path),
        } => append_file(builder.get_mut(), &header, path, *size, buffer),
        Kind::File {
            content: Content::Bytes(bytes),
            ..
        } => builder.append(&header, &bytes[..]).map_err(write_err),
        _ => builder.append(&header, io::empty()).map_err(write_err),
    }
}

fn clear_name_fields(header: &mut Header) {
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.name.fill(0);
        ustar.prefix.fill(0);
    }
}

// Written here rather than with `Builder::append` (the same header, body
// and zero padding) so the body is copied in `FILE_COPY_BUFFER` reads.
fn append_file<W: Write>(
    out: &mut W,
    header: &Header,
    path: &Path,
    size: u64,
    buffer: &mut [u8],
) -> Result<(), LayerError> {
    let io_err = |e| LayerError::io(path, e);
    let mut file = File::open(path).map_err(io_err)?.take(size);
    out.write_all(header.as_bytes()).map_err(io_err)?;
    let mut copied = 0;
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        out.write_all(&buffer[..read]).map_err(io_err)?;
        copied += read as u64;
    }
    if copied != size {
        // The header promised `size` bytes; a shorter body would corrupt
        // every entry after it, so the whole layer is abandoned.
        return Err(LayerError::ChangedWhilePacking {
            path: path.to_path_buf(),
        });
    }
    let padding = (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
    out.write_all(&[0; TAR_BLOCK as usize][..padding as usize])
        .map_err(io_err)
}

// The tar crate (0.4) reads PAX headers but cannot write them, so the
// records ("<len> <key>=<value>\n", len counting itself) are built here.
fn append_pax<W: Write>(
    builder: &mut Builder<W>,
    records: &[(&str, &[u8])],
    mtime: u64,
) -> io::Result<()> {
    let mut body = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {key}=").as_bytes());
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_path(PAX_HEADER_NAME)?;
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(body.len() as u64);
    header.set_cksum();
    builder.append(&header, body.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// name, type, mode, link target, data
    type ReadEntry = (Vec<u8>, EntryType, u32, Option<Vec<u8>>, Vec<u8>);

    fn read_back(bytes: &[u8]) -> Vec<ReadEntry> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                assert_eq!(header.uid().unwrap(), 0);
                assert_eq!(header.gid().unwrap(), 0);
                assert_eq!(header.mtime().unwrap(), 7);
                assert_eq!(header.username_bytes(), Some(&b""[..]));
                let path = entry.path_bytes().into_owned();
                let link = entry.link_name_bytes().map(|l| l.into_owned());
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (
                    path,
                    header.entry_type(),
                    header.mode().unwrap(),
                    link,
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn long_and_strange_names_survive() {
        let dir = tempfile::tempdir().unwrap();
        let deep = "d".repeat(200);
        fs::create_dir_all(dir.path().join(&deep)).unwrap();
        let long_file = format!("{deep}/{}", "f".repeat(200));
        fs::write(dir.path().join(&long_file), "long").unwrap();
        fs::write(dir.path().join("new\nline"), "nl").unwrap();
        let odd = OsStr::from_bytes(b"bad-\xff-utf8");
        fs::write(dir.path().join(odd), "odd").unwrap();
        let long_target = format!("/{}", "t".repeat(150));
        symlink(&long_target, dir.path().join("far")).unwrap();
        symlink("a/./b//c", dir.path().join("literal")).unwrap();

        let mut tree = Tree::new();
        tree.add_folder("", dir.path()).unwrap();
        let bytes = write_tree(&tree, 7, Vec::new()).unwrap();
        let entries = read_back(&bytes);
        let find = |name: &[u8]| {
            entries
                .iter()
                .find(|e| e.0 == name)
                .unwrap_or_else(|| panic!("no entry {}", String::from_utf8_lossy(name)))
        };
        assert_eq!(find(long_file.as_bytes()).4, b"long");
        assert_eq!(find(format!("{deep}/").as_bytes()).1, EntryType::Directory);
        assert_eq!(find(b"new\nline").4, b"nl");
        assert_eq!(find(b"bad-\xff-utf8").4, b"odd");
        assert_eq!(find(b"far").3.as_deref(), Some(long_target.as_bytes()));
        assert_eq!(find(b"literal").3.as_deref(), Some(&b"a/./b//c"[..]));
    }

    #[test]
    fn pax_only_when_needed() {
        let mut tree = Tree::new();
        tree.add_file("short", 0o644, b"x".to_vec());
        let bytes = write_tree(&tree, 7, Vec::new()).unwrap();
        assert!(!bytes
            .windows(PAX_HEADER_NAME.len())
            .any(|w| w == PAX_HEADER_NAME.as_bytes()));
        // header, one data block, two end blocks
        assert_eq!(bytes.len(), 512 * 4);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        // A value that makes the length cross from 2 to 3 digits.
        for len in 80..120 {
            let mut tree = Tree::new();
            let name = format!("{}/{}", "p".repeat(160), "n".repeat(len));
            tree.add_file(&name, 0o644, b"".to_vec());
            let bytes = write_tree(&tree, 7, Vec::new()).unwrap();
            let entries = read_back(&bytes);
            assert_eq!(entries.last().unwrap().0, name.as_bytes());
        }
    }

    #[test]
    fn a_file_that_shrinks_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "12345").unwrap();
        let mut tree = Tree::new();
        tree.add_folder("", dir.path()).unwrap();
        fs::write(dir.path().join("f"), "1").unwrap();
        let err = write_tree(&tree, 7, Vec::new()).unwrap_err();
        assert!(
            matches!(err, LayerError::ChangedWhilePacking { .. }),
            "{err}"
        );
    }
}
