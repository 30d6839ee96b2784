//! Evaluations kept in kiln's cache (`resolutions/`), so a rebuild of the
//! same app does not start the Nix evaluator again: evaluating even a small
//! nixpkgs costs more than the rest of a warm build.
//!
//! An entry is keyed by everything the evaluation read: the nixpkgs source
//! (a commit's archive by its URL, which names the commit and the mirror,
//! or a local folder's file names, sizes and mtimes), the overlays (a local
//! file's bytes), the attributes and the system. Overlays
//! named by URL can change behind the same name, so, like Nix's own
//! `tarball-ttl`, an entry that used one is trusted for an hour only.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::eval::NixpkgsSource;
use super::lock::LockEntry;
use crate::layer::digest::KeyHasher;

/// How long an evaluation that fetched a URL overlay stays trusted; Nix's
/// default `tarball-ttl`.
const URL_TTL: Duration = Duration::from_secs(3600);

/// Bumped when the key or entry format changes, so old entries miss
/// (2: archives keyed by URL, entries with the archives' sha256).
const FORMAT: &str = "kiln-eval-cache-2";

/// The evaluation cache under a kiln cache root.
#[derive(Debug, Clone)]
pub struct EvalCache {
    dir: PathBuf,
}

/// What one evaluation read, as the cache keys it.
pub struct EvalInputs<'a> {
    /// Where nixpkgs came from.
    pub source: &'a NixpkgsSource,
    /// Overlays, in order.
    pub overlays: &'a [String],
    /// The attributes evaluated, sorted.
    pub attributes: &'a [String],
    /// The Nix system.
    pub system: &'a str,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Seconds since the epoch after which the entry is stale, if ever.
    expires: Option<u64>,
    entry: LockEntry,
}

impl EvalCache {
    /// The cache folder under `cache_root`; created on the first write.
    pub fn open(cache_root: &Path) -> EvalCache {
        EvalCache {
            dir: cache_root.join("resolutions"),
        }
    }

    /// The recorded evaluation of `inputs`, if one is there and still
    /// fresh. An unreadable entry is a miss: the evaluator is the truth.
    pub fn get(&self, inputs: &EvalInputs<'_>) -> Option<LockEntry> {
        let file = self.dir.join(format!("{}.json", key(inputs).ok()?));
        if !crate::cache::records::use_entry(&file) {
            return None;
        }
        let stored: Stored = serde_json::from_slice(&fs::read(&file).ok()?)
            .inspect_err(|err| tracing::debug!("ignoring {}: {err}", file.display()))
            .ok()?;
        if stored.expires.is_some_and(|expires| now() >= expires) {
            return None;
        }
        Some(stored.entry)
    }

    /// Records the evaluation of `inputs`. Failing to record only costs a
    /// later evaluation, so it is logged, not returned.
    pub fn put(&self, inputs: &EvalInputs<'_>, entry: &LockEntry) {
        if let Err(err) = self.try_put(inputs, entry) {
            tracing::debug!(
                "could not record the evaluation in {}: {err}",
                self.dir.display()
            );
        }
    }

    fn try_put(&self, inputs: &EvalInputs<'_>, entry: &LockEntry) -> io::Result<()> {
        let expires = inputs
            .overlays
            .iter()
            .any(|o| !is_local(o))
            .then(|| now() + URL_TTL.as_secs());
        let stored = Stored {
            expires,
            entry: entry.clone(),
        };
        fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        let path = self.dir.join(format!("{}.json", key(inputs)?));
        let held = kiln_io::write_atomically_held(&path, &bytes)?;
        crate::cache::records::keep(&path, held);
        Ok(())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_local(overlay: &str) -> bool {
    overlay.starts_with('/')
}

/// The hex sha256 of everything the evaluation read.
fn key(inputs: &EvalInputs<'_>) -> io::Result<String> {
    let mut hasher = KeyHasher::new();
    let mut field = |bytes: &[u8]| hasher.field(bytes);
    field(FORMAT.as_bytes());
    field(inputs.system.as_bytes());
    match inputs.source {
        NixpkgsSource::Archive(url) => {
            field(b"archive");
            field(url.as_bytes());
        }
        NixpkgsSource::Folder(dir) => {
            field(b"folder");
            field(dir.as_os_str().as_encoded_bytes());
            field(&folder_fingerprint(dir)?);
        }
    }
    for overlay in inputs.overlays {
        field(overlay.as_bytes());
        if is_local(overlay) {
            field(&folder_fingerprint(Path::new(overlay))?);
        }
    }
    for attribute in inputs.attributes {
        field(attribute.as_bytes());
    }
    Ok(hasher.hex())
}

/// Names, kinds, sizes, modes and mtimes of every entry under `root` (or of
/// `root` itself when it is a file), in name order. Any edit to a Nix file
/// changes its mtime, so this stands in for its bytes without reading
/// a whole nixpkgs checkout. `.git` is skipped: it is not evaluated.
pub(super) fn folder_fingerprint(root: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let path = root.join(&relative);
        let meta = fs::symlink_metadata(&path)?;
        out.extend_from_slice(relative.as_os_str().as_encoded_bytes());
        out.push(0);
        for number in [
            meta.mode().into(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
        ] {
            out.extend_from_slice(&number.to_le_bytes());
        }
        if meta.is_symlink() {
            out.extend_from_slice(fs::read_link(&path)?.as_os_str().as_encoded_bytes());
            out.push(0);
        } else if meta.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            names.retain(|name| name != ".git");
            // Popped from the end, so reversed to visit in name order.
            names.sort_by(|a, b| b.cmp(a));
            pending.extend(names.into_iter().map(|name| relative.join(name)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::lock::LockedPackage;

    fn entry(path: &str) -> LockEntry {
        LockEntry {
            nixpkgs_archive: "a".into(),
            overlays: vec![],
            system: "x86_64-linux".into(),
            packages: [(
                "hello".to_string(),
                LockedPackage {
                    out_path: path.into(),
                    drv_path: None,
                },
            )]
            .into(),
            nixpkgs_sha256: None,
            overlay_sha256: Default::default(),
        }
    }

    fn set_mtime(path: &Path, seconds: u64) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(seconds))
            .unwrap();
    }

    #[test]
    fn an_edit_to_the_nixpkgs_folder_misses_and_an_untouched_one_hits() {
        let cache_root = tempfile::tempdir().unwrap();
        let nixpkgs = tempfile::tempdir().unwrap();
        let default = nixpkgs.path().join("default.nix");
        fs::write(&default, "{ ... }: { }").unwrap();
        set_mtime(&default, 100);
        let cache = EvalCache::open(cache_root.path());
        let source = NixpkgsSource::Folder(nixpkgs.path().to_path_buf());
        let attributes = ["hello".to_string()];
        let inputs = EvalInputs {
            source: &source,
            overlays: &[],
            attributes: &attributes,
            system: "x86_64-linux",
        };
        assert_eq!(cache.get(&inputs), None);
        cache.put(&inputs, &entry("/nix/store/x-hello"));
        assert_eq!(cache.get(&inputs), Some(entry("/nix/store/x-hello")));

        fs::write(&default, "{ ... }: { } ").unwrap();
        set_mtime(&default, 100);
        assert_eq!(cache.get(&inputs), None, "a size change misses");
        fs::write(&default, "{ ... }: { }").unwrap();
        set_mtime(&default, 101);
        assert_eq!(cache.get(&inputs), None, "an mtime change misses");
        set_mtime(&default, 100);
        assert!(cache.get(&inputs).is_some(), "the original is back");
        fs::write(nixpkgs.path().join("new.nix"), "{}").unwrap();
        assert_eq!(cache.get(&inputs), None, "a new file misses");
    }

    #[test]
    fn keys_differ_by_attributes_archive_overlay_and_system() {
        let source = NixpkgsSource::Archive("a".into());
        let other_source = NixpkgsSource::Archive("b".into());
        let one = ["hello".to_string()];
        let two = ["hello".to_string(), "zlib".to_string()];
        let overlay = ["https://example.invalid/o.tar.gz".to_string()];
        let base = EvalInputs {
            source: &source,
            overlays: &[],
            attributes: &one,
            system: "x86_64-linux",
        };
        let variants = [
            EvalInputs {
                attributes: &two,
                ..base
            },
            EvalInputs {
                source: &other_source,
                ..base
            },
            EvalInputs {
                overlays: &overlay,
                ..base
            },
            EvalInputs {
                system: "aarch64-linux",
                ..base
            },
        ];
        let base_key = key(&base).unwrap();
        for variant in &variants {
            assert_ne!(key(variant).unwrap(), base_key);
        }
    }

    #[test]
    fn url_overlays_expire_and_garbage_entries_are_misses() {
        let cache_root = tempfile::tempdir().unwrap();
        let cache = EvalCache::open(cache_root.path());
        let source = NixpkgsSource::Archive("a".into());
        let attributes = ["hello".to_string()];
        let overlay = ["https://example.invalid/o.tar.gz".to_string()];
        let inputs = EvalInputs {
            source: &source,
            overlays: &overlay,
            attributes: &attributes,
            system: "x86_64-linux",
        };
        cache.put(&inputs, &entry("/nix/store/x-hello"));
        assert!(cache.get(&inputs).is_some());
        let file = cache_root
            .path()
            .join("resolutions")
            .join(format!("{}.json", key(&inputs).unwrap()));
        let mut stored: Stored = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert!(stored.expires.is_some());
        stored.expires = Some(now() - 1);
        fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();
        assert_eq!(cache.get(&inputs), None, "expired");
        fs::write(&file, b"{\"expires\": nul").unwrap();
        assert_eq!(cache.get(&inputs), None, "truncated");
    }
}
