//! The entries of one layer before they become a tar: collected from store
//! paths, app or overlay folders and generated files, kept sorted by name.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LayerError;

/// Mode of directories kiln adds as parents (`nix/`, `etc/`, ...).
pub const PARENT_DIR_MODE: u32 = 0o755;

/// Prefix of OCI whiteout names.
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// Name of the OCI marker that makes a directory opaque.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Extended attributes overlayfs sets on an opaque directory (rootless
/// overlays use the `user.` one).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// One tar entry: its name inside the image (relative, no trailing slash),
/// permission bits and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, without a leading `/`.
    pub name: Vec<u8>,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// What the entry is.
    pub kind: Kind,
}

/// The kinds of entries a layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Length in bytes, checked again while streaming.
        size: u64,
        /// Where the bytes come from.
        content: Content,
    },
    /// A symbolic link to `target`, stored byte for byte.
    Symlink {
        /// The link target, not resolved.
        target: Vec<u8>,
    },
    /// A hard link to an earlier entry of the same layer.
    HardLink {
        /// Name of the earlier entry.
        target: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
}

/// The bytes of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Read from this file while the tar is written.
    Disk(PathBuf),
    /// Small generated files (base files), held in memory.
    Bytes(Arc<[u8]>),
}

/// Something skipped while collecting a folder, to be shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file on disk.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: &'static str,
}

/// Whether hard links on disk become tar hard links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HardLinks {
    /// Keep them: app files and phase diffs.
    Preserve,
    /// Write every name as a file: a store path's content is its NAR, which
    /// has no hard links; links on disk come from store optimisation and
    /// differ between hosts, so keeping them would change digests.
    Ignore,
}

/// The entries of one layer, sorted by name bytes; parents always present.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: BTreeMap<Vec<u8>, Entry>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// The entries in tar order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the tree holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps only the entries `keep` accepts. A caller that drops a
    /// directory must drop what is under it too, or parents go missing.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        self.entries.retain(|_, entry| keep(entry));
    }

    /// Adds a directory at `name` (with parents).
    pub fn add_dir(&mut self, name: impl AsRef<[u8]>, mode: u32) {
        self.insert(Entry {
            name: name.as_ref().to_vec(),
            mode,
            kind: Kind::Dir,
        });
    }

    /// Adds a generated file at `name` (with parents).
    pub fn add_file(&mut self, name: impl AsRef<[u8]>, mode: u32, bytes: impl Into<Arc<[u8]>>) {
        let bytes = bytes.into();
        self.insert(Entry {
            name: name.as_ref().to_vec(),
            mode,
            kind: Kind::File {
                size: bytes.len() as u64,
                content: Content::Bytes(bytes),
            },
        });
    }

    /// Adds a symlink at `name` pointing to `target` (with parents).
    pub fn add_symlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) {
        self.insert(Entry {
            name: name.as_ref().to_vec(),
            mode: 0o777,
            kind: Kind::Symlink {
                target: target.as_ref().to_vec(),
            },
        });
    }

    /// Adds the store path whose image path is `store_path`
    /// (`/nix/store/<hash>-<name>`) and whose files are in `local` (kiln's
    /// store folder or `/nix/store`). Modes are the NAR's (0444/0555 files,
    /// 0555 directories) whatever the local copy has.
    pub fn add_store_path(&mut self, store_path: &str, local: &Path) -> Result<(), LayerError> {
        let name = store_path_name(store_path)?;
        self.add_walk(name.as_bytes().to_vec(), local, Walk::StorePath)
            .map(|_| ())
    }

    /// Adds the folder `dir` at `prefix` (empty: the image root). Overlay
    /// whiteouts (character devices 0:0) become `.wh.<name>` entries and
    /// opaque directories get `.wh..wh..opq`; hard links stay links; sockets
    /// are skipped and returned. A real file named `.wh.*` is an error.
    pub fn add_folder(&mut self, prefix: &str, dir: &Path) -> Result<Vec<Skipped>, LayerError> {
        let prefix = prefix.trim_matches('/').as_bytes().to_vec();
        self.add_walk(prefix, dir, Walk::Folder)
    }

    fn add_walk(
        &mut self,
        name: Vec<u8>,
        path: &Path,
        walk: Walk,
    ) -> Result<Vec<Skipped>, LayerError> {
        let mut collector = Collector {
            tree: self,
            walk,
            skipped: Vec::new(),
            links: HashMap::new(),
        };
        let meta = fs::symlink_metadata(path).map_err(|e| LayerError::io(path, e))?;
        collector.visit(name, path, &meta)?;
        let Collector { skipped, links, .. } = collector;
        self.link_hard_links(links);
        Ok(skipped)
    }

    // The first name of each inode in tar order carries the bytes; the
    // others become links to it, as a tar reader expects.
    fn link_hard_links(&mut self, links: HashMap<(u64, u64), Vec<Vec<u8>>>) {
        for mut names in links.into_values() {
            names.sort();
            let mut names = names.into_iter();
            let Some(first) = names.next() else { continue };
            for name in names {
                if let Some(entry) = self.entries.get_mut(&name) {
                    entry.kind = Kind::HardLink {
                        target: first.clone(),
                    };
                }
            }
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.add_parents(&entry.name);
        self.entries.insert(entry.name.clone(), entry);
    }

    fn add_parents(&mut self, name: &[u8]) {
        let mut end = 0;
        while let Some(slash) = name[end..].iter().position(|&b| b == b'/') {
            end += slash;
            let parent = &name[..end];
            if !parent.is_empty() && !self.entries.contains_key(parent) {
                self.entries.insert(
                    parent.to_vec(),
                    Entry {
                        name: parent.to_vec(),
                        mode: PARENT_DIR_MODE,
                        kind: Kind::Dir,
                    },
                );
            }
            end += 1;
        }
    }
}

/// The relative name (`nix/store/<hash>-<name>`) of an absolute store path,
/// refusing anything that is not exactly one entry under `/nix/store`.
pub fn store_path_name(store_path: &str) -> Result<String, LayerError> {
    let base = store_path
        .strip_prefix("/nix/store/")
        .filter(|base| {
            !base.is_empty() && !base.contains('/') && !base.starts_with('.') && base.len() > 33
        })
        .ok_or_else(|| LayerError::NotAStorePath {
            path: store_path.to_string(),
        })?;
    Ok(format!("nix/store/{base}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    StorePath,
    Folder,
}

impl Walk {
    fn hard_links(self) -> HardLinks {
        match self {
            Walk::StorePath => HardLinks::Ignore,
            Walk::Folder => HardLinks::Preserve,
        }
    }
}

struct Collector<'a> {
    tree: &'a mut Tree,
    walk: Walk,
    skipped: Vec<Skipped>,
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
}

impl Collector<'_> {
    /// Adds `path` as the entry `name` (the root itself when `name` is
    /// empty) and, for a folder, everything below it.
    fn visit(&mut self, name: Vec<u8>, path: &Path, meta: &Metadata) -> Result<(), LayerError> {
        let base = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let is_whiteout =
            self.walk == Walk::Folder && meta.file_type().is_char_device() && meta.rdev() == 0;
        if is_whiteout {
            let whiteout = sibling(&name, &[WHITEOUT_PREFIX, base].concat());
            self.tree.insert(empty_file(whiteout));
            return Ok(());
        }
        if self.walk == Walk::Folder && base.starts_with(WHITEOUT_PREFIX) && !name.is_empty() {
            return Err(LayerError::WhiteoutName {
                path: path.to_path_buf(),
            });
        }
        let mode = match self.walk {
            Walk::StorePath => nar_mode(meta),
            Walk::Folder => meta.mode() & 0o7777,
        };
        let Some(kind) = self.kind(&name, path, meta)? else {
            return Ok(());
        };
        let is_dir = kind == Kind::Dir;
        if !name.is_empty() {
            self.tree.insert(Entry {
                name: name.clone(),
                mode,
                kind,
            });
        }
        if is_dir {
            self.visit_children(&name, path)?;
        }
        Ok(())
    }

    /// What `path` becomes in the layer; `None` for what is skipped.
    /// Remembers files with other hard links when links are preserved.
    fn kind(
        &mut self,
        name: &[u8],
        path: &Path,
        meta: &Metadata,
    ) -> Result<Option<Kind>, LayerError> {
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            if self.walk.hard_links() == HardLinks::Preserve && meta.nlink() > 1 {
                self.links
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(name.to_vec());
            }
            Kind::File {
                size: meta.len(),
                content: Content::Disk(path.to_path_buf()),
            }
        } else if file_type.is_symlink() {
            let target = fs::read_link(path).map_err(|e| LayerError::io(path, e))?;
            Kind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if file_type.is_socket() {
            self.skipped.push(Skipped {
                path: path.to_path_buf(),
                reason: "sockets cannot be stored in an image layer",
            });
            return Ok(None);
        } else if file_type.is_fifo() && self.walk == Walk::Folder {
            Kind::Fifo
        } else {
            return Err(LayerError::UnsupportedFile {
                path: path.to_path_buf(),
                what: describe(meta),
            });
        };
        Ok(Some(kind))
    }

    /// The opaque marker of an opaque overlay folder, then every entry of
    /// the folder `path` named `name`.
    fn visit_children(&mut self, name: &[u8], path: &Path) -> Result<(), LayerError> {
        if self.walk == Walk::Folder && is_opaque(path)? {
            self.tree.insert(empty_file(child(name, OPAQUE_MARKER)));
        }
        let entries = fs::read_dir(path).map_err(|e| LayerError::io(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LayerError::io(path, e))?;
            let child_path = entry.path();
            let meta =
                fs::symlink_metadata(&child_path).map_err(|e| LayerError::io(&child_path, e))?;
            let child_name = child(name, entry.file_name().as_bytes());
            self.visit(child_name, &child_path, &meta)?;
        }
        Ok(())
    }
}

/// An empty regular file, as OCI whiteouts and opaque markers are.
fn empty_file(name: Vec<u8>) -> Entry {
    Entry {
        name,
        mode: 0o644,
        kind: Kind::File {
            size: 0,
            content: Content::Bytes(Arc::from(&[][..])),
        },
    }
}

fn child(parent: &[u8], base: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        base.to_vec()
    } else {
        [parent, b"/", base].concat()
    }
}

fn sibling(name: &[u8], base: &[u8]) -> Vec<u8> {
    match name.iter().rposition(|&b| b == b'/') {
        Some(slash) => child(&name[..slash], base),
        None => base.to_vec(),
    }
}

// A NAR records only "executable or not", so that is all a store path's
// layer may depend on.
fn nar_mode(meta: &Metadata) -> u32 {
    if meta.is_dir() {
        0o555
    } else if meta.file_type().is_symlink() {
        0o777
    } else if meta.mode() & 0o100 != 0 {
        0o555
    } else {
        0o444
    }
}

fn is_opaque(dir: &Path) -> Result<bool, LayerError> {
    for name in OPAQUE_XATTRS {
        match xattr::get(dir, name) {
            Ok(Some(value)) if value == b"y" => return Ok(true),
            Ok(_) => {}
            // Filesystems without xattrs, or trusted.* read by a non-root
            // user: that attribute cannot be set there, so it is absent.
            Err(e)
                if e.kind() == io::ErrorKind::Unsupported
                    || e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(LayerError::io(dir, e)),
        }
    }
    Ok(false)
}

fn describe(meta: &Metadata) -> &'static str {
    let file_type = meta.file_type();
    if file_type.is_char_device() {
        "a character device (only 0:0 overlay whiteouts are allowed)"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a named pipe (a store path cannot hold one)"
    } else {
        "of an unknown file type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn names(tree: &Tree) -> Vec<String> {
        tree.entries()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect()
    }

    #[test]
    fn parents_come_first_and_sorted_by_bytes() {
        let mut tree = Tree::new();
        tree.add_file("etc/passwd", 0o644, b"root".to_vec());
        tree.add_symlink("bin/sh", "/nix/store/x/bin/sh");
        tree.add_file("etc.d", 0o644, b"".to_vec());
        assert_eq!(
            names(&tree),
            ["bin", "bin/sh", "etc", "etc.d", "etc/passwd"]
        );
    }

    #[test]
    fn store_path_names_are_checked() {
        let good = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello";
        assert_eq!(store_path_name(good).unwrap(), &good[1..]);
        for bad in [
            "/nix/store/../etc",
            "/nix/store/x/y",
            "/etc/passwd",
            "/nix/store/",
            "/nix/store/short",
        ] {
            assert!(store_path_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_path_modes_follow_the_nar() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/tool"), "x").unwrap();
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(root.join("data"), "y").unwrap();
        fs::set_permissions(root.join("data"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::hard_link(root.join("data"), root.join("data2")).unwrap();
        let mut tree = Tree::new();
        let path = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-p";
        tree.add_store_path(path, &root).unwrap();
        let modes: Vec<(String, u32)> = tree
            .entries()
            .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.mode))
            .collect();
        let p = &path[1..];
        assert_eq!(
            modes,
            [
                ("nix".to_string(), 0o755),
                ("nix/store".to_string(), 0o755),
                (p.to_string(), 0o555),
                (format!("{p}/bin"), 0o555),
                (format!("{p}/bin/tool"), 0o555),
                (format!("{p}/data"), 0o444),
                (format!("{p}/data2"), 0o444),
            ]
        );
        assert!(tree
            .entries()
            .all(|e| !matches!(e.kind, Kind::HardLink { .. })));
    }

    #[test]
    fn folders_keep_hard_links_and_skip_sockets() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b"), "x").unwrap();
        fs::hard_link(dir.path().join("b"), dir.path().join("a")).unwrap();
        symlink("../../etc", dir.path().join("up")).unwrap();
        let socket = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let mut tree = Tree::new();
        let skipped = tree.add_folder("app", dir.path()).unwrap();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].path, socket);
        let entries: Vec<&Entry> = tree.entries().collect();
        assert_eq!(names(&tree), ["app", "app/a", "app/b", "app/up"]);
        assert!(matches!(entries[1].kind, Kind::File { .. }));
        assert_eq!(
            entries[2].kind,
            Kind::HardLink {
                target: b"app/a".to_vec()
            }
        );
        assert_eq!(
            entries[3].kind,
            Kind::Symlink {
                target: b"../../etc".to_vec()
            }
        );
    }

    #[test]
    fn whiteout_named_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/.wh.secret"), "x").unwrap();
        let err = Tree::new().add_folder("", dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("sub/.wh.secret"),
            "error does not name the file: {err}"
        );
    }
}
