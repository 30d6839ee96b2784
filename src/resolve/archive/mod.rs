//! The nixpkgs archive and URL overlays, downloaded by kiln itself so the
//! Nix evaluator never fetches anything (it runs with the network off).
//!
//! A download is streamed: its bytes are hashed (sha256) as they are
//! gunzipped and unpacked into a temporary folder, checked against the
//! sha256 `kiln.lock` pins, and the folder is renamed into kiln's cache
//! under that sha256. Under `<cache>/nixpkgs/`:
//!
//! - `<sha256>/source/`: the unpacked archive, its single top-level folder
//!   stripped as Nix's `fetchTarball` does;
//! - `<sha256>/complete.json`: written before the rename, with a
//!   fingerprint of `source/` (names, kinds, sizes, modes, mtimes), so a
//!   copy edited or partly deleted since is noticed and fetched again;
//! - `urls/<sha256 of the URL>.json`: the sha256 a URL gave, so a later
//!   run downloads nothing.
//!
//! Concurrent kilns may unpack the same archive; the first rename wins and
//! the others use it.

mod unpack;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_io::retry::Failure;
use kiln_io::HashingReader;
use kiln_store::FetchOptions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::eval_cache::folder_fingerprint;
use unpack::{unpack, UnpackError};

/// Where nixpkgs archives come from unless [`NIXPKGS_URL_ENV`] says
/// otherwise: `{base}/{commit}.tar.gz`.
pub const DEFAULT_NIXPKGS_URL: &str = "https://github.com/NixOS/nixpkgs/archive";

/// The environment variable naming a mirror of [`DEFAULT_NIXPKGS_URL`]
/// (`https://`, `http://` or `file://`).
pub const NIXPKGS_URL_ENV: &str = "KILN_NIXPKGS_URL";

/// The environment variable naming mirrors of URL overlays: space
/// separated `PREFIX=REPLACEMENT` pairs; an overlay URL starting with a
/// prefix is downloaded from the replacement instead (the first that
/// matches). `kiln.lock` keeps the plan's URL and the sha256 that any
/// mirror must serve.
pub const OVERLAY_MIRRORS_ENV: &str = "KILN_OVERLAY_MIRRORS";

/// How long the sha256 a URL overlay gave is trusted before it is
/// downloaded again (an overlay URL may name a branch); Nix's default
/// `tarball-ttl`. A commit's nixpkgs archive never changes.
const OVERLAY_TTL: Duration = Duration::from_secs(3600);

/// The archives kept in a kiln cache, and where nixpkgs archives are
/// downloaded from.
#[derive(Debug, Clone)]
pub struct Archives {
    dir: PathBuf,
    base: String,
    mirrors: Vec<(String, String)>,
    options: FetchOptions,
}

/// An archive unpacked in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Hex sha256 of the downloaded `.tar.gz`.
    pub sha256: String,
    /// The unpacked folder, read-only by convention: the cache checks it
    /// against its fingerprint before each use.
    pub dir: PathBuf,
}

/// An archive that could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A `nixpkgsArchive` that cannot be part of a URL.
    #[error("`{0}` is not a nixpkgs commit (letters, digits, `.`, `-` and `_` only); fix the plan's nixpkgsArchive")]
    BadCommit(String),
    /// The server (or folder) does not have it.
    #[error("{url} was not found (404): {hint}")]
    NotFound {
        /// What was asked for.
        url: String,
        /// What to check.
        hint: String,
    },
    /// The download failed, after retries where they apply.
    #[error("could not download {url}: {reason}")]
    Download {
        /// What was asked for.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The bytes are not an archive kiln unpacks.
    #[error("{url} is not a usable .tar.gz archive: {reason}")]
    Refused {
        /// What was downloaded.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The download differs from what `kiln.lock` pins.
    #[error("{url} changed: it has sha256 {found} but kiln.lock records {locked}; check the URL (and KILN_NIXPKGS_URL), and if the new archive is expected remove its entry from kiln.lock and run `kiln lock`")]
    Changed {
        /// What was downloaded.
        url: String,
        /// The sha256 in the lock.
        locked: String,
        /// The sha256 of the download.
        found: String,
    },
    /// kiln's cache could not be written.
    #[error("could not keep {url} in kiln's cache at {}: {source}", path.display())]
    Cache {
        /// What was being kept.
        url: String,
        /// The file or folder that failed.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

/// `complete.json`: what an unpacked archive looked like when it was made.
#[derive(Serialize, Deserialize)]
struct Marker {
    url: String,
    sha256: String,
    fingerprint: String,
}

/// `urls/<key>.json`: the sha256 a URL gave, and when.
#[derive(Serialize, Deserialize)]
struct UrlRecord {
    url: String,
    sha256: String,
    fetched: u64,
}

impl Archives {
    /// The archives in `cache_root`, nixpkgs downloaded from
    /// `KILN_NIXPKGS_URL` when set, else [`DEFAULT_NIXPKGS_URL`].
    pub fn open(cache_root: &Path) -> Archives {
        let base = std::env::var(NIXPKGS_URL_ENV)
            .ok()
            .filter(|base| !base.is_empty())
            .unwrap_or_else(|| DEFAULT_NIXPKGS_URL.to_string());
        let mirrors = std::env::var(OVERLAY_MIRRORS_ENV)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .filter(|(prefix, _)| !prefix.is_empty())
            .map(|(prefix, replacement)| (prefix.to_string(), replacement.to_string()))
            .collect();
        Archives {
            dir: cache_root.join("nixpkgs"),
            base: base.trim_end_matches('/').to_string(),
            mirrors,
            options: FetchOptions::default(),
        }
    }

    /// Downloads nixpkgs archives from `base` instead.
    pub fn with_base(mut self, base: &str) -> Archives {
        self.base = base.trim_end_matches('/').to_string();
        self
    }

    /// Uses `options` for downloads (timeouts, retries).
    pub fn with_options(mut self, options: FetchOptions) -> Archives {
        self.options = options;
        self
    }

    /// The URL of nixpkgs commit `commit`'s archive.
    pub fn nixpkgs_url(&self, commit: &str) -> Result<String, ArchiveError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if commit.is_empty() || commit.starts_with('.') || !commit.chars().all(plain) {
            return Err(ArchiveError::BadCommit(commit.to_string()));
        }
        Ok(format!("{}/{commit}.tar.gz", self.base))
    }

    /// nixpkgs commit `commit`, unpacked; `pinned` is the sha256
    /// `kiln.lock` records for it.
    pub fn nixpkgs(&self, commit: &str, pinned: Option<&str>) -> Result<Unpacked, ArchiveError> {
        let url = self.nixpkgs_url(commit)?;
        let hint = format!(
            "check the nixpkgs commit `{commit}` (the plan's nixpkgsArchive) and {NIXPKGS_URL_ENV} (now {})",
            self.base
        );
        self.fetch(&url, pinned, None, &hint)
    }

    /// The overlay archive at `url`, unpacked; `pinned` is the sha256
    /// `kiln.lock` records for it.
    pub fn overlay(&self, url: &str, pinned: Option<&str>) -> Result<Unpacked, ArchiveError> {
        let hint = format!("check the URL in the plan's nixOverlays and {OVERLAY_MIRRORS_ENV}");
        self.fetch(&self.mirrored(url), pinned, Some(OVERLAY_TTL), &hint)
    }

    /// `url` with the first mirror prefix that matches replaced.
    fn mirrored(&self, url: &str) -> String {
        self.mirrors
            .iter()
            .find_map(|(prefix, replacement)| {
                url.strip_prefix(prefix.as_str())
                    .map(|rest| format!("{replacement}{rest}"))
            })
            .unwrap_or_else(|| url.to_string())
    }

    /// The unpacked archive of `url`: the cached copy of the pinned or
    /// recorded sha256 when it is intact, else a new download.
    fn fetch(
        &self,
        url: &str,
        pinned: Option<&str>,
        max_age: Option<Duration>,
        hint: &str,
    ) -> Result<Unpacked, ArchiveError> {
        let cache_error = |path: &Path| {
            let (url, path) = (url.to_string(), path.to_path_buf());
            move |source| ArchiveError::Cache { url, path, source }
        };
        let urls = self.dir.join("urls");
        fs::create_dir_all(&urls).map_err(cache_error(&urls))?;
        let known = match pinned {
            Some(sha256) => Some(sha256.to_string()),
            None => self.recorded(url, max_age),
        };
        if let Some(unpacked) = known.and_then(|sha256| self.intact(&sha256)) {
            return Ok(unpacked);
        }
        let sha256 = self.download(url, pinned, hint)?;
        let record = UrlRecord {
            url: url.to_string(),
            sha256: sha256.clone(),
            fetched: now(),
        };
        let path = urls.join(format!("{}.json", hex_sha256(url.as_bytes())));
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other);
        bytes
            .and_then(|bytes| kiln_io::write_atomically(&path, &bytes))
            .map_err(cache_error(&path))?;
        Ok(Unpacked {
            dir: self.dir.join(&sha256).join("source"),
            sha256,
        })
    }

    /// The sha256 `url` gave when it was last downloaded, if that is at
    /// most `max_age` ago.
    fn recorded(&self, url: &str, max_age: Option<Duration>) -> Option<String> {
        let path = self
            .dir
            .join("urls")
            .join(format!("{}.json", hex_sha256(url.as_bytes())));
        let record: UrlRecord = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
        let fresh = max_age.is_none_or(|age| now() < record.fetched.saturating_add(age.as_secs()));
        (record.url == url && is_sha256(&record.sha256) && fresh).then_some(record.sha256)
    }

    /// The unpacked archive with `sha256` when it is there and unchanged
    /// since it was unpacked. A copy that is not is moved away and removed.
    fn intact(&self, sha256: &str) -> Option<Unpacked> {
        if !is_sha256(sha256) {
            return None;
        }
        let entry = self.dir.join(sha256);
        let source = entry.join("source");
        // Held before it is checked, so no prune removes it after.
        let held = crate::cache::records::use_entry(&entry);
        let marker: Option<Marker> = fs::read(entry.join("complete.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let intact = held
            && marker.is_some_and(|marker| {
                marker.sha256 == sha256
                    && folder_fingerprint(&source)
                        .is_ok_and(|found| hex_sha256(&found) == marker.fingerprint)
            });
        if intact {
            return Some(Unpacked {
                sha256: sha256.to_string(),
                dir: source,
            });
        }
        if entry.exists() {
            tracing::warn!(
                "{} was changed or is incomplete; fetching it again",
                entry.display()
            );
            self.discard(&entry);
        }
        None
    }

    /// Moves `entry` to a temporary name, then removes it: readers never
    /// see a half-removed folder under the real name. Another kiln may
    /// have done it first, which is as good.
    fn discard(&self, entry: &Path) {
        let Ok(aside) = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
        else {
            return;
        };
        // A folder may be renamed over an empty one; the TempDir then
        // removes the moved copy when dropped.
        if let Err(err) = fs::rename(entry, aside.path()) {
            tracing::debug!("could not move {} aside: {err}", entry.display());
        }
    }

    /// Downloads and unpacks `url` into the cache; returns its sha256.
    /// A download cut short is tried again per the shared retry policy.
    fn download(
        &self,
        url: &str,
        pinned: Option<&str>,
        hint: &str,
    ) -> Result<String, ArchiveError> {
        let log = |reason: &String, attempt, wait| {
            tracing::warn!(%url, attempt, %reason, "download cut short, retrying in {wait:?}");
        };
        self.options
            .retry_policy()
            .run_blocking(|| self.try_download(url, pinned, hint), log)
            .map_err(|stopped| {
                stopped.into_error(|error, attempts| ArchiveError::Download {
                    url: url.to_string(),
                    reason: format!("{error} (gave up after {attempts} attempts)"),
                })
            })
    }

    /// One download. A read that fails midway is a passing failure: another
    /// try may get the whole archive.
    fn try_download(
        &self,
        url: &str,
        pinned: Option<&str>,
        hint: &str,
    ) -> Result<String, Failure<String, ArchiveError>> {
        let failed = |reason: String| {
            Failure::Final(ArchiveError::Refused {
                url: url.to_string(),
                reason,
            })
        };
        let cache_error = |path: &Path, source| {
            Failure::Final(ArchiveError::Cache {
                url: url.to_string(),
                path: path.to_path_buf(),
                source,
            })
        };
        let reader = kiln_store::open_url(url, &self.options)
            .map_err(|err| {
                Failure::Final(ArchiveError::Download {
                    url: url.to_string(),
                    reason: err.to_string(),
                })
            })?
            .ok_or_else(|| {
                Failure::Final(ArchiveError::NotFound {
                    url: url.to_string(),
                    hint: hint.to_string(),
                })
            })?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .map_err(|err| cache_error(&self.dir, err))?;
        // Held from now on, so a prune leaves the download alone, and the
        // entry it becomes once renamed.
        if !crate::cache::records::use_entry(temp.path()) {
            return Err(Failure::passing(
                "a prune removed the new download folder".into(),
            ));
        }
        let mut body = Body {
            inner: HashingReader::new(reader),
            failure: None,
        };
        let raw = temp.path().join("raw");
        let unpacked = unpack(&mut body, &raw);
        if let Some(reason) = body.failure.take() {
            return Err(Failure::passing(reason));
        }
        let tree = match unpacked {
            Err(UnpackError::Refused(reason)) => return Err(failed(reason)),
            Err(UnpackError::Local(path, err)) => return Err(cache_error(&path, err)),
            Ok(tree) => tree,
        };
        let (_, digest, _) = body.inner.finish();
        let sha256 = digest.trim_start_matches("sha256:").to_string();
        if let Some(locked) = pinned.filter(|locked| *locked != sha256) {
            return Err(Failure::Final(ArchiveError::Changed {
                url: url.to_string(),
                locked: locked.to_string(),
                found: sha256,
            }));
        }
        self.keep(url, &sha256, &tree, temp.path())
            .map_err(|(path, err)| cache_error(&path, err))?;
        Ok(sha256)
    }

    /// Makes `tree`, unpacked in `temp`, the cache's copy of `sha256`,
    /// unless another kiln's intact copy got there first.
    fn keep(
        &self,
        url: &str,
        sha256: &str,
        tree: &Path,
        temp: &Path,
    ) -> Result<(), (PathBuf, io::Error)> {
        let source = temp.join("source");
        fs::rename(tree, &source).map_err(|err| (tree.to_path_buf(), err))?;
        let raw = temp.join("raw");
        if raw.exists() {
            fs::remove_dir(&raw).map_err(|err| (raw, err))?;
        }
        let fingerprint = folder_fingerprint(&source).map_err(|err| (source.clone(), err))?;
        let marker = Marker {
            url: url.to_string(),
            sha256: sha256.to_string(),
            fingerprint: hex_sha256(&fingerprint),
        };
        let path = temp.join("complete.json");
        let bytes =
            serde_json::to_vec(&marker).map_err(|err| (path.clone(), io::Error::other(err)))?;
        kiln_io::write_atomically(&path, &bytes).map_err(|err| (path, err))?;
        let target = self.dir.join(sha256);
        if kiln_io::commit_dir(temp, &target).is_ok() || self.intact(sha256).is_some() {
            return Ok(());
        }
        // `intact` removed a broken copy in the way; this one replaces it.
        kiln_io::commit_dir(temp, &target).map_err(|err| (target, err))
    }
}

/// The download as the unpacker reads it: hashed, and a failed read kept
/// apart from a malformed archive, since only the first is worth a retry.
struct Body<R> {
    inner: HashingReader<R>,
    failure: Option<String>,
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|err| {
            self.failure = Some(err.to_string());
        })
    }
}

/// Whether `text` is a hex sha256, as lock files and records must hold.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
