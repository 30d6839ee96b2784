//! What the cache holds, entry by entry: each with its kind, size, last
//! use, the entries it needs, and how it is removed. Read from the layout
//! DESIGN.md fixes; nothing here writes.
//!
//! A name starting with `.` in an entry folder is what an interrupted run
//! left (a temporary file or folder, a folder being removed), as is an
//! entry without its record (a phase diff without `<key>.json`) and every
//! folder under `build-work/` and `eval-work/`. Leftovers a running kiln is
//! still writing are held, like entries in use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_store::{Store, StorePath};

/// The kinds of entry, in the order `kiln cache info` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Realized store paths with their narinfo copies.
    Store,
    /// Evaluations of package names.
    Resolutions,
    /// Unpacked nixpkgs and overlay archives, and the URLs they came from.
    Nixpkgs,
    /// Compressed layer blobs, image configs and pulled base image blobs.
    Blobs,
    /// Layer index entries.
    Layers,
    /// Phase records with their diffs.
    Phases,
    /// `cacheDirectories` contents.
    BuildCache,
    /// Base images unpacked for the sandbox.
    Bases,
    /// Work folders of builds and evaluations.
    Work,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::Store,
        Kind::Resolutions,
        Kind::Nixpkgs,
        Kind::Blobs,
        Kind::Layers,
        Kind::Phases,
        Kind::BuildCache,
        Kind::Bases,
        Kind::Work,
    ];

    /// Its name in `kiln cache info` and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Store => "store",
            Kind::Resolutions => "resolutions",
            Kind::Nixpkgs => "nixpkgs",
            Kind::Blobs => "blobs",
            Kind::Layers => "layers",
            Kind::Phases => "phases",
            Kind::BuildCache => "build-cache",
            Kind::Bases => "bases",
            Kind::Work => "work",
        }
    }

    /// What it holds, for people.
    pub fn about(self) -> &'static str {
        match self {
            Kind::Store => "realized Nix store paths and their narinfo copies",
            Kind::Resolutions => "package names evaluated to store paths",
            Kind::Nixpkgs => "nixpkgs archives and overlays, unpacked",
            Kind::Blobs => "compressed layer blobs, image configs, pulled base image blobs",
            Kind::Layers => "layer index entries",
            Kind::Phases => "cached build phase results (record and diff)",
            Kind::BuildCache => "cacheDirectories kept between builds",
            Kind::Bases => "base images unpacked for the sandbox",
            Kind::Work => "work folders of builds and evaluations (none once they end)",
        }
    }
}

/// One entry of the cache.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// Its name: a store path, else its path under the cache folder.
    pub name: String,
    /// Bytes in its files.
    pub bytes: u64,
    /// Its files (and symlinks).
    pub files: u64,
    /// When a build last used it; the epoch when never recorded.
    pub last_used: SystemTime,
    /// Names of the entries it cannot be used without.
    pub needs: Vec<String>,
    /// What an interrupted run left, useless to any build.
    pub leftover: bool,
    /// How to remove it.
    pub(super) removal: Removal,
}

/// How an entry is removed, and what a prune locks first.
#[derive(Debug, Clone)]
pub(super) enum Removal {
    /// By the store, under the path's own lock.
    StorePath(StorePath),
    /// A file, locked by its users.
    File(PathBuf),
    /// A folder, locked by its users; its `record` (what makes it count as
    /// complete) goes first, so a prune cut short leaves a leftover, never a
    /// half-removed entry that reads as whole.
    Folder {
        dir: PathBuf,
        record: Option<PathBuf>,
    },
}

/// Every entry under the cache folder `root`; missing folders hold none.
pub fn scan(root: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    if root.join("store").is_dir() {
        store_entries(root, &mut entries)?;
    }
    for name in names(&root.join("resolutions"))? {
        let path = root.join("resolutions").join(&name);
        entries.extend(file_entry(root, Kind::Resolutions, &path, is_temp(&name))?);
    }
    nixpkgs_entries(root, &mut entries)?;
    for name in names(&root.join("blobs/sha256"))? {
        let path = root.join("blobs/sha256").join(&name);
        entries.extend(file_entry(root, Kind::Blobs, &path, is_temp(&name))?);
    }
    for name in names(&root.join("layers"))? {
        let path = root.join("layers").join(&name);
        if let Some(mut entry) = file_entry(root, Kind::Layers, &path, is_temp(&name))? {
            entry.needs.extend(index_blob(&path));
            entries.push(entry);
        }
    }
    phase_entries(root, &mut entries)?;
    for key in names(&root.join("build-cache"))? {
        let parent = root.join("build-cache").join(&key);
        for name in names(&parent)? {
            let dir = parent.join(&name);
            let leftover = is_temp(&key) || is_temp(&name);
            entries.extend(folder_entry(root, Kind::BuildCache, &dir, None, leftover)?);
        }
    }
    for name in names(&root.join("bases"))? {
        let dir = root.join("bases").join(&name);
        let record = dir.join("sizes.json");
        let leftover = is_temp(&name) || !record.is_file();
        if let Some(mut entry) = folder_entry(root, Kind::Bases, &dir, Some(record), leftover)? {
            entry.needs.extend(base_blobs(&dir));
            entries.push(entry);
        }
    }
    for work in ["build-work", "eval-work"] {
        for name in names(&root.join(work))? {
            let dir = root.join(work).join(&name);
            entries.extend(folder_entry(root, Kind::Work, &dir, None, true)?);
        }
    }
    Ok(entries)
}

/// The blob a layer index entry names, as a blob entry's name.
fn index_blob(path: &Path) -> Option<String> {
    let entry: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    blob_name(entry["digest"].as_str()?)
}

/// The blobs a base image's layers are (`digests.json` in its folder).
fn base_blobs(dir: &Path) -> Vec<String> {
    fs::read(dir.join("digests.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Vec<String>>(&bytes).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|digest| blob_name(digest))
        .collect()
}

/// `blobs/sha256/<hex>` for a `sha256:<hex>` digest; `None` for anything
/// else, which no blob file is named by.
fn blob_name(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("blobs/sha256/{hex}"))
}

fn store_entries(root: &Path, entries: &mut Vec<Entry>) -> io::Result<()> {
    let store = Store::open(root).map_err(io::Error::other)?;
    for found in store.entries().map_err(io::Error::other)? {
        let (bytes, files) = found.files.iter().try_fold((0, 0), |total, path| {
            measure(path).map(|(b, f)| (total.0 + b, total.1 + f))
        })?;
        entries.push(Entry {
            kind: Kind::Store,
            name: found.path.to_string(),
            bytes,
            files,
            last_used: found.last_used,
            needs: found.references.iter().map(|r| r.to_string()).collect(),
            leftover: found.leftover,
            removal: Removal::StorePath(found.path),
        });
    }
    Ok(())
}

fn nixpkgs_entries(root: &Path, entries: &mut Vec<Entry>) -> io::Result<()> {
    let dir = root.join("nixpkgs");
    for name in names(&dir)? {
        let path = dir.join(&name);
        if name == "urls" {
            for record in names(&path)? {
                let file = path.join(&record);
                if let Some(mut entry) = file_entry(root, Kind::Nixpkgs, &file, is_temp(&record))? {
                    entry.needs.extend(url_archive(&file));
                    entries.push(entry);
                }
            }
            continue;
        }
        if metadata(&path)?.is_some_and(|meta| meta.is_dir()) {
            let record = path.join("complete.json");
            let leftover = is_temp(&name) || !record.is_file();
            entries.extend(folder_entry(
                root,
                Kind::Nixpkgs,
                &path,
                Some(record),
                leftover,
            )?);
        } else {
            entries.extend(file_entry(root, Kind::Nixpkgs, &path, true)?);
        }
    }
    Ok(())
}

/// The unpacked archive a URL record points to.
fn url_archive(record: &Path) -> Option<String> {
    let record: serde_json::Value = serde_json::from_slice(&fs::read(record).ok()?).ok()?;
    let sha256 = record["sha256"].as_str()?;
    (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("nixpkgs/{sha256}"))
}

fn phase_entries(root: &Path, entries: &mut Vec<Entry>) -> io::Result<()> {
    let dir = root.join("phases");
    let all = names(&dir)?;
    for name in &all {
        let path = dir.join(name);
        match name.strip_suffix(".json") {
            // A record goes with its diff; alone it is a leftover.
            Some(key) if !is_temp(name) => {
                if !all.iter().any(|n| n == key) {
                    entries.extend(file_entry(root, Kind::Phases, &path, true)?);
                }
            }
            Some(_) => entries.extend(file_entry(root, Kind::Phases, &path, true)?),
            None => {
                let record = dir.join(format!("{name}.json"));
                let leftover = is_temp(name) || !record.is_file();
                entries.extend(folder_entry(
                    root,
                    Kind::Phases,
                    &path,
                    Some(record),
                    leftover,
                )?);
            }
        }
    }
    Ok(())
}

fn file_entry(root: &Path, kind: Kind, path: &Path, leftover: bool) -> io::Result<Option<Entry>> {
    let Some(meta) = metadata(path)? else {
        return Ok(None);
    };
    Ok(Some(Entry {
        kind,
        name: relative(root, path),
        bytes: meta.len(),
        files: 1,
        last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        needs: Vec::new(),
        leftover,
        removal: Removal::File(path.to_path_buf()),
    }))
}

fn folder_entry(
    root: &Path,
    kind: Kind,
    dir: &Path,
    record: Option<PathBuf>,
    leftover: bool,
) -> io::Result<Option<Entry>> {
    let Some(meta) = metadata(dir)? else {
        return Ok(None);
    };
    let (bytes, files) = measure(dir)?;
    let record_bytes = match &record {
        // Inside the folder it is measured already.
        Some(record) if !record.starts_with(dir) => measure(record)?,
        _ => (0, 0),
    };
    Ok(Some(Entry {
        kind,
        name: relative(root, dir),
        bytes: bytes + record_bytes.0,
        files: files + record_bytes.1,
        last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        needs: Vec::new(),
        leftover,
        removal: Removal::Folder {
            dir: dir.to_path_buf(),
            record,
        },
    }))
}

/// The metadata of `path`; `None` when a running kiln removed or renamed
/// it since its folder was listed (a temporary file committed, a work
/// folder removed): it is gone, or counted under its new name.
fn metadata(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match path.symlink_metadata() {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// What a run writes under a temporary name starts with a dot.
fn is_temp(name: &str) -> bool {
    name.starts_with('.')
}

/// The names in `dir`, sorted; none when it does not exist. Names that are
/// not UTF-8 are never kiln's, and are left alone.
fn names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Bytes and files (and symlinks) under `path`, a file or a folder,
/// without following symlinks: a store path that links elsewhere is never
/// counted outside the cache. Missing counts as empty (a running build may
/// remove its work folder while it is measured); a folder a killed sandbox
/// left without permissions counts as what can be read of it.
pub fn measure(path: &Path) -> io::Result<(u64, u64)> {
    let Some(meta) = metadata(path)? else {
        return Ok((0, 0));
    };
    if !meta.is_dir() {
        return Ok((meta.len(), 1));
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e)
            if [io::ErrorKind::PermissionDenied, io::ErrorKind::NotFound].contains(&e.kind()) =>
        {
            return Ok((0, 0))
        }
        Err(e) => return Err(e),
    };
    let mut total = (0, 0);
    for entry in entries {
        let (bytes, files) = measure(&entry?.path())?;
        total.0 += bytes;
        total.1 += files;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no entry {name}"))
    }

    #[test]
    fn entries_name_what_they_need_and_leftovers_are_told_apart() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let hex = "ab".repeat(32);
        let write = |path: &str, bytes: &[u8]| {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        };
        write(&format!("blobs/sha256/{hex}"), &[0; 10]);
        write("blobs/sha256/.tmp-x", &[0; 3]);
        write(
            "layers/k.json",
            format!(r#"{{"digest":"sha256:{hex}"}}"#).as_bytes(),
        );
        write("layers/bad.json", br#"{"digest":"sha256:../../etc"}"#);
        write("phases/p/app/f", &[0; 7]);
        write("phases/p.json", b"{}");
        write("phases/q/app/f", b"");
        write("phases/r.json", b"{}");
        write("build-cache/app-1/0011/npm", &[0; 4]);
        write("build-work/build-abc/app/server.js", &[0; 5]);
        write("bases/.unpack-1/root/x", b"");

        let entries = scan(root).unwrap();
        let layer = find(&entries, "layers/k.json");
        assert_eq!(layer.needs, [format!("blobs/sha256/{hex}")]);
        assert!(find(&entries, "layers/bad.json").needs.is_empty());
        let phase = find(&entries, "phases/p");
        assert_eq!((phase.bytes, phase.files), (9, 2), "diff and record");
        assert!(!phase.leftover);
        for leftover in [
            "blobs/sha256/.tmp-x",
            "phases/q",
            "phases/r.json",
            "build-work/build-abc",
            "bases/.unpack-1",
        ] {
            assert!(find(&entries, leftover).leftover, "{leftover}");
        }
        let npm = find(&entries, "build-cache/app-1/0011");
        assert_eq!(
            (npm.kind, npm.bytes, npm.leftover),
            (Kind::BuildCache, 4, false)
        );
        assert!(!entries.iter().any(|e| e.name == "phases/p.json"));
    }

    #[test]
    fn measuring_never_follows_links() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("a/b")).unwrap();
        fs::write(root.path().join("a/b/f"), [0u8; 10]).unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("a/etc")).unwrap();
        assert_eq!(measure(&root.path().join("a")).unwrap(), (14, 2));
        assert_eq!(measure(&root.path().join("none")).unwrap(), (0, 0));
    }
}
