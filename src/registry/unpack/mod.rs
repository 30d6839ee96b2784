//! Applying image layers in order into a folder, the way an overlay
//! filesystem would see them: later layers replace earlier files, `.wh.`
//! whiteouts delete, `.wh..wh..opq` hides what lower layers had in a folder.
//!
//! Written by hand because the `tar` crate unpacks one archive into an
//! empty folder: it knows nothing of whiteouts, and its hard link handling
//! outside `unpack_in` trusts the link name. Every path is resolved inside
//! the root: names with `..` are refused, a leading `/` means the root (as
//! GNU tar and docker read it; umoci writes such names), and symlinks met on
//! the way are followed as if the root were `/`, so no entry can write
//! outside it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use kiln_io::HashingReader;
use tar::EntryType;

use super::pull::PulledLayer;
use crate::layer::compress::{self, Format};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The mode bits the unpacked copy never keeps.
const SETUID_SETGID: u32 = 0o6000;
/// More symlinks than this while resolving one path means a loop.
const MAX_SYMLINKS: usize = 40;

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A tar entry names a path outside the root.
    #[error("layer {layer}: entry `{entry}` points outside the root folder; the layer is refused")]
    Escape { layer: String, entry: String },
    /// The layer is not a readable tar in its declared compression.
    #[error("layer {layer} ({media_type}): {reason}")]
    Corrupt {
        layer: String,
        media_type: String,
        reason: String,
    },
    /// The uncompressed layer does not hash to the diff ID the config names.
    #[error("layer {layer}: its tar has digest {actual} but the image config says {expected}; the image is corrupt")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    /// The layers unpack to more bytes than the limit allows (a
    /// decompression bomb, or a base image far bigger than any sane one).
    #[error("layer {layer}: the image's layers unpack to more than {limit} bytes; refused (raise KILN_MAX_UNPACKED_BYTES if the base image really is that big)")]
    TooBig { layer: String, limit: u64 },
    /// Writing into the root failed.
    #[error("layer {layer}: could not write {path}: {source}")]
    Write {
        layer: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Uncompressed tar bytes an image's layers may add up to, unless
/// `KILN_MAX_UNPACKED_BYTES` says otherwise: far beyond any real base
/// image, yet it stops a gzip bomb (1000:1 for zeros) before the disk fills.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 64 << 30;

/// The unpack limit: `KILN_MAX_UNPACKED_BYTES` when set to a number of
/// bytes, else [`DEFAULT_MAX_UNPACKED_BYTES`].
pub fn max_unpacked_bytes() -> Result<u64, UnpackError> {
    match std::env::var("KILN_MAX_UNPACKED_BYTES") {
        Err(_) => Ok(DEFAULT_MAX_UNPACKED_BYTES),
        Ok(text) => text.trim().parse().map_err(|_| UnpackError::Corrupt {
            layer: "(none)".into(),
            media_type: "-".into(),
            reason: format!("KILN_MAX_UNPACKED_BYTES={text:?} is not a number of bytes"),
        }),
    }
}

/// Applies `layers` in order into `root` (created if missing), checking
/// each layer's uncompressed bytes against its diff ID on the way, within
/// [`max_unpacked_bytes`]. Returns each layer's uncompressed size. On an
/// error `root` holds a partial tree: unpack into a temporary folder.
pub fn unpack_layers(layers: &[PulledLayer], root: &Path) -> Result<Vec<u64>, UnpackError> {
    unpack_layers_within(layers, root, max_unpacked_bytes()?)
}

/// [`unpack_layers`], refusing once the layers' tars add up to more than
/// `limit` bytes.
pub fn unpack_layers_within(
    layers: &[PulledLayer],
    root: &Path,
    limit: u64,
) -> Result<Vec<u64>, UnpackError> {
    std::fs::create_dir_all(root).map_err(|source| UnpackError::Write {
        layer: "(none)".into(),
        path: root.to_path_buf(),
        source,
    })?;
    let mut sizes = Vec::with_capacity(layers.len());
    let mut left = limit;
    for layer in layers {
        let bytes = unpack_one(layer, root, left, limit)?;
        left -= bytes;
        sizes.push(bytes);
    }
    Ok(sizes)
}

/// Applies one layer within `left` of the image's `limit` uncompressed
/// bytes; returns its size.
fn unpack_one(layer: &PulledLayer, root: &Path, left: u64, limit: u64) -> Result<u64, UnpackError> {
    let corrupt = |reason: String| UnpackError::Corrupt {
        layer: layer.digest.clone(),
        media_type: layer.media_type.clone(),
        reason,
    };
    let file = File::open(&layer.path)
        .map_err(|e| corrupt(format!("cannot open {}: {e}", layer.path.display())))?;
    let reader = decompress(file, &layer.media_type).map_err(corrupt)?;
    let mut hashed = HashingReader::new(Limited {
        inner: reader,
        left,
        exceeded: false,
    });
    let applied = apply_layer(&mut hashed, root, &layer.digest, &layer.media_type).and_then(|()| {
        // Whatever follows the end-of-archive marker is part of the diff ID.
        std::io::copy(&mut hashed, &mut std::io::sink())
            .map(drop)
            .map_err(|e| corrupt(format!("cannot read to the end: {e}")))
    });
    let (limited, actual, bytes) = hashed.finish();
    // The limit's error surfaces wherever the tar reader was: say what it was.
    if limited.exceeded {
        return Err(UnpackError::TooBig {
            layer: layer.digest.clone(),
            limit,
        });
    }
    applied?;
    if actual != layer.diff_id {
        return Err(UnpackError::DiffIdMismatch {
            layer: layer.digest.clone(),
            expected: layer.diff_id.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// A reader that fails, and says so in `exceeded`, once more than `left`
/// bytes come through.
struct Limited<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte past the limit tells "exactly at it" from "beyond it".
        let room = self.left.saturating_add(1).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        if n as u64 > self.left {
            self.exceeded = true;
            return Err(std::io::Error::other("kiln's unpack limit reached"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn decompress<'a>(reader: File, media_type: &str) -> Result<Box<dyn Read + 'a>, String> {
    match Format::of_media_type(media_type) {
        Some(format) => {
            compress::decompress(format, reader).map_err(|e| format!("{format:?} stream: {e}"))
        }
        None => Ok(Box::new(BufReader::new(reader))),
    }
}

/// Applies one layer's tar stream onto `root`.
pub(crate) fn apply_layer(
    reader: impl Read,
    root: &Path,
    layer: &str,
    media_type: &str,
) -> Result<(), UnpackError> {
    let corrupt = |reason: String| UnpackError::Corrupt {
        layer: layer.to_string(),
        media_type: media_type.to_string(),
        reason,
    };
    let write_err = |path: &Path, source| UnpackError::Write {
        layer: layer.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(ZeroTail::new(reader));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    // The unpacked copy belongs to the builder, not root, and sits in the
    // cache: a setuid or setgid file there would run with the builder's ids
    // for anyone who can reach it. The image's own layers keep their modes.
    archive.set_mask(SETUID_SETGID);
    // Paths this layer wrote, so an opaque marker hides only lower layers.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| corrupt(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(format!("bad tar entry: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| corrupt(format!("bad entry name: {e}")))?
            .into_owned();
        let escape = || UnpackError::Escape {
            layer: layer.to_string(),
            entry: raw.display().to_string(),
        };
        let relative = clean(&raw).ok_or_else(escape)?;
        let Some(name) = relative.file_name().map(OsStr::to_owned) else {
            continue; // the root itself (`./`)
        };
        let parent_rel = relative.parent().unwrap_or(Path::new(""));
        let parent =
            resolve(root, parent_rel, true).map_err(|e| write_err(&root.join(parent_rel), e))?;
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE_MARKER {
            let folder_rel = parent_rel.to_path_buf();
            hide_lower(&parent, &folder_rel, &written).map_err(|e| write_err(&parent, e))?;
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            let hidden = whiteout_target(hidden).ok_or_else(|| {
                corrupt(format!(
                    "whiteout `{}` names no file (`.`, `..` or nothing); the layer is refused",
                    raw.display()
                ))
            })?;
            remove_any(&parent.join(hidden)).map_err(|e| write_err(&parent.join(hidden), e))?;
            continue;
        }
        let target = parent.join(&name);
        written.insert(relative.clone());
        write_entry(&mut entry, &raw, &target, root).map_err(|failure| match failure {
            EntryFailure::Corrupt(reason) => corrupt(reason),
            EntryFailure::Escape => escape(),
            EntryFailure::Write(path, source) => write_err(&path, source),
        })?;
    }
    Ok(())
}

/// Why one entry could not be written.
enum EntryFailure {
    Corrupt(String),
    Escape,
    Write(PathBuf, std::io::Error),
}

/// Writes `entry` (named `raw` in the tar) at `target` (inside `root`),
/// replacing what a lower layer had there.
fn write_entry(
    entry: &mut tar::Entry<'_, impl Read>,
    raw: &Path,
    target: &Path,
    root: &Path,
) -> Result<(), EntryFailure> {
    let write_err = |source| EntryFailure::Write(target.to_path_buf(), source);
    match entry.header().entry_type() {
        EntryType::Directory => {
            if !target.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                remove_any(target).map_err(write_err)?;
            }
            entry.unpack(target).map_err(write_err)?;
        }
        EntryType::Link => {
            let link_name = entry
                .link_name()
                .map_err(|e| EntryFailure::Corrupt(format!("bad link name: {e}")))?
                .ok_or_else(|| {
                    EntryFailure::Corrupt(format!("hard link `{}` has no target", raw.display()))
                })?
                .into_owned();
            let source_rel = clean(&link_name).ok_or(EntryFailure::Escape)?;
            let source = resolve(root, &source_rel, false).map_err(write_err)?;
            remove_any(target).map_err(write_err)?;
            std::fs::hard_link(&source, target).map_err(write_err)?;
        }
        EntryType::Regular | EntryType::Continuous | EntryType::Symlink => {
            remove_any(target).map_err(write_err)?;
            entry.unpack(target).map_err(write_err)?;
        }
        // Device nodes and fifos cannot be made without privilege, and
        // the sandbox brings its own /dev; pax and GNU extension headers
        // are consumed by the tar crate.
        _ => {}
    }
    Ok(())
}

/// A reader that, once `inner` ends, yields up to one block of padding plus
/// the two-block end-of-archive marker as zeros. Some writers (umoci 0.4's
/// `insert`) end a layer right after the last file's data; Go's tar reader,
/// which registries and runtimes use, accepts that, and so must kiln. Data
/// cut short by more than that still fails.
struct ZeroTail<R> {
    inner: R,
    zeros_left: usize,
    ended: bool,
}

impl<R> ZeroTail<R> {
    const TAIL: usize = 511 + 1024;

    fn new(inner: R) -> Self {
        ZeroTail {
            inner,
            zeros_left: Self::TAIL,
            ended: false,
        }
    }
}

impl<R: Read> Read for ZeroTail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.ended {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.ended = true;
        }
        let n = buf.len().min(self.zeros_left);
        buf[..n].fill(0);
        self.zeros_left -= n;
        Ok(n)
    }
}

/// The name a whiteout hides (what follows `.wh.`), or `None` when that is
/// no single name: empty, `.` or `..` would delete the folder itself or its
/// parent, and a `/` cannot be in one path component of a tar name.
fn whiteout_target(hidden: &str) -> Option<&str> {
    match hidden {
        "" | "." | ".." => None,
        _ if hidden.contains('/') => None,
        _ => Some(hidden),
    }
}

/// `path` made relative to the root (`.` and a leading `/` dropped), or
/// `None` when it climbs with `..`.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The real location of `relative` inside `root`, following symlinks as if
/// `root` were `/` (absolute targets start at `root`, `..` stops at it).
/// With `create`, missing folders on the way are made.
fn resolve(root: &Path, relative: &Path, create: bool) -> std::io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = relative
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut parts: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some(".") | Some("") => continue,
            Some("..") => {
                parts.pop();
                continue;
            }
            Some("/") => {
                parts.clear();
                continue;
            }
            _ => {}
        }
        let here: PathBuf = parts
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        match here.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(std::io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&here)?;
                for component in target.components().rev() {
                    pending.push(PathBuf::from(component.as_os_str()));
                }
            }
            Ok(_) => parts.push(part),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&here)?;
                parts.push(part);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => parts.push(part),
            Err(e) => return Err(e),
        }
    }
    Ok(parts.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Deletes whatever is at `path` (file, link or folder tree); nothing there
/// is fine.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes everything under `folder` (at `folder_rel` in the image) that
/// this layer did not write itself.
fn hide_lower(folder: &Path, folder_rel: &Path, written: &HashSet<PathBuf>) -> std::io::Result<()> {
    let Ok(children) = std::fs::read_dir(folder) else {
        return Ok(());
    };
    for child in children {
        let child = child?;
        let rel = folder_rel.join(child.file_name());
        let path = child.path();
        if !written.contains(&rel) {
            remove_any(&path)?;
        } else if child.file_type()?.is_dir() {
            hide_lower(&path, &rel, written)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
