//! Unpacking a downloaded `.tar.gz` into a new folder, refusing whatever
//! could reach outside it: `..` and absolute names, symlinks that lead out
//! or that later entries would be written through, hard links to anything
//! but a file already unpacked, device files, and names or extension
//! records longer than any real archive has.
//!
//! Entries are read raw, with GNU long names and pax records applied here,
//! so their size is checked before they are read: the tar crate would hold
//! a record of any size in memory, and a small gzip can inflate to a huge one.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::{EntryType, PaxExtensions};

/// Longest entry name or link target: Linux's `PATH_MAX`.
const MAX_NAME: usize = 4096;

/// Longest GNU long-name or pax record; real ones hold a name or two.
const MAX_RECORD: u64 = 64 * 1024;

/// Most bytes of files unpacked: many times nixpkgs' half a gigabyte, far
/// less than a gzip bomb would write.
const MAX_BYTES: u64 = 8 << 30;

/// Most entries: nixpkgs has about fifty thousand.
const MAX_ENTRIES: u64 = 2_000_000;

/// Most bytes after the tar's end (its zero padding, a trailing gzip
/// member): GitHub pads to 10 KiB.
const MAX_TRAILER: u64 = 1 << 20;

/// Why an archive was not unpacked.
#[derive(Debug)]
pub(super) enum UnpackError {
    /// The bytes are not an archive kiln accepts (or the read failed); why,
    /// for people.
    Refused(String),
    /// Writing the unpacked files failed.
    Local(PathBuf, io::Error),
}

/// Unpacks the gzip-compressed tar `reader` into `root`, which must not
/// exist, reading `reader` to its end so a hash of it covers every byte.
/// Returns the tree: `root`, or its only entry when that is a folder
/// (GitHub's `nixpkgs-<commit>/`), which Nix's `fetchTarball` takes too.
pub(super) fn unpack(reader: impl Read, root: &Path) -> Result<PathBuf, UnpackError> {
    fs::create_dir(root).map_err(|err| UnpackError::Local(root.to_path_buf(), err))?;
    let mut gzip = GzDecoder::new(reader);
    let mut unpacker = Unpacker {
        root,
        symlinks: HashSet::new(),
        bytes: 0,
        entries: 0,
        unpacked: 0,
    };
    unpacker.entries(&mut gzip)?;
    // The tar ends at its zero blocks; reading the gzip stream on to its
    // end checks its CRC and length, so a cut download is refused.
    drain(&mut gzip, "the archive's end")?;
    drain(&mut gzip.into_inner(), "the compressed archive")?;
    if unpacker.unpacked == 0 {
        return Err(UnpackError::Refused("the archive has no files".into()));
    }
    let tree = tree(root)?;
    unpacker.check_symlinks(&tree)?;
    Ok(tree)
}

fn tree(root: &Path) -> Result<PathBuf, UnpackError> {
    let local = |err| UnpackError::Local(root.to_path_buf(), err);
    let entries: Vec<fs::DirEntry> = fs::read_dir(root)
        .map_err(local)?
        .collect::<io::Result<_>>()
        .map_err(local)?;
    Ok(match &entries[..] {
        [only] if only.file_type().map_err(local)?.is_dir() => only.path(),
        _ => root.to_path_buf(),
    })
}

/// Reads what is left of `reader`, refusing more than [`MAX_TRAILER`].
fn drain(reader: &mut impl Read, what: &str) -> Result<(), UnpackError> {
    let left = io::copy(&mut reader.take(MAX_TRAILER + 1), &mut io::sink()).map_err(stream)?;
    if left > MAX_TRAILER {
        return Err(UnpackError::Refused(format!(
            "more than {MAX_TRAILER} bytes follow {what}"
        )));
    }
    Ok(())
}

/// A read of the download (or of its gzip or tar structure) failed.
fn stream(err: io::Error) -> UnpackError {
    UnpackError::Refused(format!("not a complete .tar.gz ({err})"))
}

fn refused(reason: String) -> UnpackError {
    UnpackError::Refused(reason)
}

/// Names a pax record or GNU long-name entry gave the next entry.
#[derive(Default)]
struct Names {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

struct Unpacker<'a> {
    root: &'a Path,
    /// Symlinks made so far, relative to `root`: nothing is written
    /// through them, whatever they point at.
    symlinks: HashSet<PathBuf>,
    bytes: u64,
    /// Entries read, records included.
    entries: u64,
    /// Files, folders and links made.
    unpacked: u64,
}

impl Unpacker<'_> {
    fn entries(&mut self, gzip: &mut impl Read) -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(gzip);
        let mut names = Names::default();
        for entry in archive.entries().map_err(stream)?.raw(true) {
            let mut entry = entry.map_err(stream)?;
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Err(refused(format!("more than {MAX_ENTRIES} entries")));
            }
            match entry.header().entry_type() {
                EntryType::GNULongName => names.path = Some(record(&mut entry)?),
                EntryType::GNULongLink => names.link = Some(record(&mut entry)?),
                EntryType::XHeader => apply_pax(&record(&mut entry)?, &mut names)?,
                // GitHub's global record holds the commit id; nothing in
                // one changes how files are unpacked.
                EntryType::XGlobalHeader => drop(record(&mut entry)?),
                kind => {
                    self.entry(&mut entry, kind, std::mem::take(&mut names))?;
                    self.unpacked += 1;
                }
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        kind: EntryType,
        names: Names,
    ) -> Result<(), UnpackError> {
        let raw = names
            .path
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        let relative = self.relative(&raw)?;
        let path = self.root.join(&relative);
        let local = |err: io::Error| UnpackError::Local(path.clone(), err);
        match kind {
            EntryType::Directory => fs::create_dir_all(&path).map_err(local),
            _ if relative.as_os_str().is_empty() => {
                Err(refused("an entry that is not a folder has no name".into()))
            }
            EntryType::Regular | EntryType::Continuous => {
                self.parent(&path)?;
                let executable = entry.header().mode().map_err(stream)? & 0o111 != 0;
                self.file(entry, &path, &relative, executable)
            }
            EntryType::Symlink => {
                let target = link_target(names.link, entry)?;
                check_symlink(&relative, &target)?;
                self.parent(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|err| exists(err, &relative, &path))?;
                self.symlinks.insert(relative);
                Ok(())
            }
            EntryType::Link => {
                let target = self.relative(&link_target(names.link, entry)?)?;
                let source = self.root.join(&target);
                if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
                    return Err(refused(format!(
                        "the hard link `{}` names `{}`, not a file unpacked before it",
                        relative.display(),
                        target.display()
                    )));
                }
                self.parent(&path)?;
                fs::hard_link(&source, &path).map_err(|err| exists(err, &relative, &path))
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => Err(refused(format!(
                "`{}` is a device file or pipe",
                relative.display()
            ))),
            other => Err(refused(format!(
                "`{}` is a tar entry of kind {:?}, which nixpkgs archives never hold",
                relative.display(),
                other.as_byte() as char
            ))),
        }
    }

    /// `raw` as a path inside the root: no `..`, not absolute, not through
    /// a symlink the archive made. Empty for the root itself.
    fn relative(&self, raw: &[u8]) -> Result<PathBuf, UnpackError> {
        check_name(raw)?;
        let shown = String::from_utf8_lossy(raw);
        let mut relative = PathBuf::new();
        for component in Path::new(OsStr::from_bytes(raw)).components() {
            match component {
                Component::Normal(name) => relative.push(name),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(refused(format!("the entry `{shown}` climbs out with `..`")))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refused(format!("the entry `{shown}` is an absolute name")))
                }
            }
        }
        if let Some(link) = relative.ancestors().find(|a| self.symlinks.contains(*a)) {
            return Err(refused(format!(
                "the entry `{shown}` goes through the symlink `{}`",
                link.display()
            )));
        }
        Ok(relative)
    }

    fn parent(&self, path: &Path) -> Result<(), UnpackError> {
        let parent = path.parent().unwrap_or(self.root);
        fs::create_dir_all(parent).map_err(|err| UnpackError::Local(parent.to_path_buf(), err))
    }

    fn file(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        path: &Path,
        relative: &Path,
        executable: bool,
    ) -> Result<(), UnpackError> {
        self.bytes = self.bytes.saturating_add(entry.size());
        if self.bytes > MAX_BYTES {
            return Err(refused(format!("more than {MAX_BYTES} bytes of files")));
        }
        // `create_new` never follows a symlink already at `path`.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(path)
            .map_err(|err| exists(err, relative, path))?;
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = entry.read(&mut buffer).map_err(stream)?;
            if read == 0 {
                return Ok(());
            }
            file.write_all(&buffer[..read])
                .map_err(|err| UnpackError::Local(path.to_path_buf(), err))?;
        }
    }

    /// Every symlink must stay inside `tree`, the folder that is kept:
    /// its target read from the link's folder, and, since links that each
    /// stay inside can leave together (`a -> b/..` with `b -> ..`), where
    /// it resolves when it does.
    fn check_symlinks(&self, tree: &Path) -> Result<(), UnpackError> {
        let local = |err| UnpackError::Local(tree.to_path_buf(), err);
        let top = tree.strip_prefix(self.root).unwrap_or(Path::new(""));
        let canonical = fs::canonicalize(tree).map_err(local)?;
        for link in &self.symlinks {
            let path = self.root.join(link);
            let target = fs::read_link(&path).map_err(local)?;
            check_symlink(
                link.strip_prefix(top).unwrap_or(link),
                target.as_os_str().as_bytes(),
            )?;
            if let Ok(resolved) = fs::canonicalize(&path) {
                if !resolved.starts_with(&canonical) {
                    return Err(refused(format!(
                        "the symlink `{}` leads outside the archive",
                        link.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_name(raw: &[u8]) -> Result<(), UnpackError> {
    if raw.len() > MAX_NAME {
        return Err(refused(format!(
            "an entry name of {} bytes (at most {MAX_NAME})",
            raw.len()
        )));
    }
    if raw.contains(&0) {
        return Err(refused("an entry name with a NUL byte".into()));
    }
    Ok(())
}

/// A symlink's target must be relative and, read from the link's folder,
/// stay inside the root.
fn check_symlink(relative: &Path, target: &[u8]) -> Result<(), UnpackError> {
    check_name(target)?;
    let shown = String::from_utf8_lossy(target);
    let leaves = || {
        refused(format!(
            "the symlink `{}` points outside the archive, to `{shown}`",
            relative.display()
        ))
    };
    let target = Path::new(OsStr::from_bytes(target));
    if target.as_os_str().is_empty() || target.has_root() {
        return Err(leaves());
    }
    let mut depth = relative.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(leaves)?,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    Ok(())
}

fn link_target(
    record: Option<Vec<u8>>,
    entry: &tar::Entry<impl Read>,
) -> Result<Vec<u8>, UnpackError> {
    record
        .or_else(|| {
            entry
                .header()
                .link_name_bytes()
                .map(|name| name.into_owned())
        })
        .ok_or_else(|| refused("a link without a target".into()))
}

/// An entry whose name is already taken: archives kiln accepts name each
/// path once.
fn exists(err: io::Error, relative: &Path, path: &Path) -> UnpackError {
    if err.kind() == io::ErrorKind::AlreadyExists {
        refused(format!("`{}` appears twice", relative.display()))
    } else {
        UnpackError::Local(path.to_path_buf(), err)
    }
}

/// The body of a pax or GNU long-name entry, refused beyond [`MAX_RECORD`].
fn record(entry: &mut tar::Entry<impl Read>) -> Result<Vec<u8>, UnpackError> {
    if entry.size() > MAX_RECORD {
        return Err(refused(format!(
            "a name or pax record of {} bytes (at most {MAX_RECORD})",
            entry.size()
        )));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(stream)?;
    // GNU long names end in NUL.
    if bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(bytes)
}

fn apply_pax(record: &[u8], names: &mut Names) -> Result<(), UnpackError> {
    for extension in PaxExtensions::new(record) {
        let extension =
            extension.map_err(|err| refused(format!("a malformed pax record ({err})")))?;
        match extension.key_bytes() {
            b"path" => names.path = Some(extension.value_bytes().to_vec()),
            b"linkpath" => names.link = Some(extension.value_bytes().to_vec()),
            _ => {}
        }
    }
    Ok(())
}
