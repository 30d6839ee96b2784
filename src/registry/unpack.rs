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

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
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
    /// Writing into the root failed.
    #[error("layer {layer}: could not write {path}: {source}")]
    Write {
        layer: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Applies `layers` in order into `root` (created if missing), checking
/// each layer's uncompressed bytes against its diff ID on the way. Returns
/// each layer's uncompressed size.
pub fn unpack_layers(layers: &[PulledLayer], root: &Path) -> Result<Vec<u64>, UnpackError> {
    std::fs::create_dir_all(root).map_err(|source| UnpackError::Write {
        layer: "(none)".into(),
        path: root.to_path_buf(),
        source,
    })?;
    let mut sizes = Vec::with_capacity(layers.len());
    for layer in layers {
        let file = File::open(&layer.path).map_err(|e| UnpackError::Corrupt {
            layer: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            reason: format!("cannot open {}: {e}", layer.path.display()),
        })?;
        let reader = decompress(BufReader::new(file), &layer.media_type).map_err(|reason| {
            UnpackError::Corrupt {
                layer: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                reason,
            }
        })?;
        let mut hashed = HashingReader::new(reader);
        apply_layer(&mut hashed, root, &layer.digest, &layer.media_type)?;
        // Whatever follows the end-of-archive marker is part of the diff ID.
        std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| UnpackError::Corrupt {
            layer: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            reason: format!("cannot read to the end: {e}"),
        })?;
        let (_, actual, bytes) = hashed.finish();
        if actual != layer.diff_id {
            return Err(UnpackError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        sizes.push(bytes);
    }
    Ok(sizes)
}

fn decompress<'a>(reader: BufReader<File>, media_type: &str) -> Result<Box<dyn Read + 'a>, String> {
    if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
        let decoder = zstd::Decoder::with_buffer(reader).map_err(|e| format!("zstd: {e}"))?;
        Ok(Box::new(decoder))
    } else if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
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
            remove_any(&parent.join(hidden)).map_err(|e| write_err(&parent.join(hidden), e))?;
            continue;
        }
        let target = parent.join(&name);
        written.insert(relative.clone());
        match entry.header().entry_type() {
            EntryType::Directory => {
                if !target.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    remove_any(&target).map_err(|e| write_err(&target, e))?;
                }
                entry.unpack(&target).map_err(|e| write_err(&target, e))?;
            }
            EntryType::Link => {
                let link_name = entry
                    .link_name()
                    .map_err(|e| corrupt(format!("bad link name: {e}")))?
                    .ok_or_else(|| corrupt(format!("hard link `{}` has no target", raw.display())))?
                    .into_owned();
                let source_rel = clean(&link_name).ok_or_else(escape)?;
                let source =
                    resolve(root, &source_rel, false).map_err(|e| write_err(&target, e))?;
                remove_any(&target).map_err(|e| write_err(&target, e))?;
                std::fs::hard_link(&source, &target).map_err(|e| write_err(&target, e))?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::Symlink => {
                remove_any(&target).map_err(|e| write_err(&target, e))?;
                entry.unpack(&target).map_err(|e| write_err(&target, e))?;
            }
            // Device nodes and fifos cannot be made without privilege, and
            // the sandbox brings its own /dev; pax and GNU extension headers
            // are consumed by the tar crate.
            _ => {}
        }
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
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A tar built by the test: `(name, kind)` pairs.
    enum Item<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    fn tar(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(1);
            // `set_path` refuses `..`; hostile names go in raw.
            let set_name = |header: &mut tar::Header, name: &str| {
                let bytes = name.as_bytes();
                header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            };
            match item {
                Item::File(name, data, mode) => {
                    set_name(&mut header, name);
                    header.set_size(data.len() as u64);
                    header.set_mode(*mode);
                    header.set_entry_type(EntryType::Regular);
                    header.set_cksum();
                    builder.append(&header, *data).unwrap();
                }
                Item::Dir(name) => {
                    set_name(&mut header, name);
                    header.set_mode(0o755);
                    header.set_entry_type(EntryType::Directory);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
                Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                    set_name(&mut header, name);
                    header.set_mode(0o777);
                    header.set_entry_type(if matches!(item, Item::Symlink(..)) {
                        EntryType::Symlink
                    } else {
                        EntryType::Link
                    });
                    header.set_size(0);
                    let t = target.as_bytes();
                    header.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn apply(root: &Path, items: &[Item]) -> Result<(), UnpackError> {
        apply_layer(
            &tar(items)[..],
            root,
            "sha256:test",
            "application/vnd.oci.image.layer.v1.tar",
        )
    }

    #[test]
    fn later_layers_replace_and_whiteouts_delete() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        apply(
            &root,
            &[
                Item::Dir("etc/"),
                Item::File("etc/a", b"one", 0o644),
                Item::File("etc/gone", b"x", 0o644),
                Item::File("bin/tool", b"#!", 0o755),
                Item::Hardlink("bin/tool2", "bin/tool"),
            ],
        )
        .unwrap();
        apply(
            &root,
            &[
                Item::File("etc/a", b"two", 0o600),
                Item::File("etc/.wh.gone", b"", 0o644),
            ],
        )
        .unwrap();
        assert_eq!(std::fs::read(root.join("etc/a")).unwrap(), b"two");
        assert_eq!(
            root.join("etc/a").metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!root.join("etc/gone").exists());
        assert_eq!(
            root.join("bin/tool")
                .metadata()
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            root.join("bin/tool").metadata().unwrap().ino(),
            root.join("bin/tool2").metadata().unwrap().ino()
        );
    }

    #[test]
    fn an_opaque_folder_hides_only_lower_layers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        apply(
            root,
            &[
                Item::File("var/lib/old", b"x", 0o644),
                Item::File("var/lib/sub/deep", b"x", 0o644),
            ],
        )
        .unwrap();
        apply(
            root,
            &[
                Item::File("var/lib/new", b"y", 0o644),
                Item::File("var/lib/.wh..wh..opq", b"", 0o644),
            ],
        )
        .unwrap();
        assert!(root.join("var/lib/new").exists());
        assert!(!root.join("var/lib/old").exists());
        assert!(!root.join("var/lib/sub").exists());
    }

    #[test]
    fn names_that_climb_out_are_refused() {
        for name in ["../outside", "a/../../outside", "/../outside"] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            std::fs::create_dir_all(&root).unwrap();
            let err = apply(&root, &[Item::File(name, b"x", 0o644)]).unwrap_err();
            assert!(matches!(err, UnpackError::Escape { .. }), "{name}: {err}");
            assert!(!dir.path().join("outside").exists());
        }
        let dir = tempfile::tempdir().unwrap();
        let err = apply(dir.path(), &[Item::Hardlink("x", "../../etc/passwd")]).unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
    }

    #[test]
    fn a_layer_without_final_padding_and_trailer_unpacks() {
        let dir = tempfile::tempdir().unwrap();
        let full = tar(&[
            Item::File("a", b"x", 0o644),
            Item::File("b", b"hi\n", 0o644),
        ]);
        // Header of `a`, its block, header of `b`, then only b's 3 bytes.
        let cut = &full[..512 * 3 + 3];
        apply_layer(
            cut,
            dir.path(),
            "sha256:cut",
            "application/vnd.oci.image.layer.v1.tar",
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"hi\n");
        let bigger = tar(&[Item::File("c", &[7u8; 4096], 0o644)]);
        assert!(apply_layer(&bigger[..512 + 100], dir.path(), "sha256:short", "t").is_err());
    }

    #[test]
    fn absolute_names_land_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        apply(
            &root,
            &[Item::Dir("/"), Item::File("/etc/inside", b"x", 0o644)],
        )
        .unwrap();
        assert_eq!(std::fs::read(root.join("etc/inside")).unwrap(), b"x");
        assert!(!dir.path().join("etc").exists());
    }

    #[test]
    fn symlinked_parents_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        apply(
            &root,
            &[
                Item::Symlink("abs", "/"),
                Item::Symlink("rel", "../../.."),
                Item::Symlink("out", outside.to_str().unwrap()),
                Item::Dir("usr/bin/"),
                Item::Symlink("bin", "usr/bin"),
            ],
        )
        .unwrap();
        apply(
            &root,
            &[
                Item::File("abs/etc/x", b"1", 0o644),
                Item::File("rel/y", b"2", 0o644),
                Item::File("out/z", b"3", 0o644),
                Item::File("bin/sh", b"4", 0o755),
            ],
        )
        .unwrap();
        assert_eq!(std::fs::read(root.join("etc/x")).unwrap(), b"1");
        assert_eq!(std::fs::read(root.join("y")).unwrap(), b"2");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        assert_eq!(
            std::fs::read(root.join(outside.strip_prefix("/").unwrap()).join("z")).unwrap(),
            b"3"
        );
        assert_eq!(std::fs::read(root.join("usr/bin/sh")).unwrap(), b"4");
        assert!(!dir.path().join("etc").exists());
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let err = apply(
            dir.path(),
            &[
                Item::Symlink("a", "b"),
                Item::Symlink("b", "a"),
                Item::File("a/x", b"", 0o644),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
    }

    #[test]
    fn a_layer_must_match_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar(&[Item::File("f", b"x", 0o644)]);
        let blob = dir.path().join("blob");
        std::fs::write(&blob, &bytes).unwrap();
        let mut layer = PulledLayer {
            digest: "sha256:blob".into(),
            diff_id: crate::layer::digest::sha256_digest(&bytes),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: bytes.len() as u64,
            path: blob,
        };
        unpack_layers(std::slice::from_ref(&layer), &dir.path().join("ok")).unwrap();
        layer.diff_id = format!("sha256:{}", "0".repeat(64));
        let err = unpack_layers(&[layer], &dir.path().join("bad")).unwrap_err();
        assert!(matches!(err, UnpackError::DiffIdMismatch { .. }), "{err}");
    }

    #[test]
    fn garbage_is_a_corrupt_layer_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"this is not gzip at all").unwrap();
        let layer = PulledLayer {
            digest: "sha256:abc".into(),
            diff_id: "sha256:def".into(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 23,
            path: blob,
        };
        let err = unpack_layers(&[layer], &dir.path().join("root")).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("sha256:abc"), "{err}");
    }
}
