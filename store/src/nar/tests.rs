//! Restores of hand-made NARs: modes and times, big files, hostile and
//! malformed archives, hash and size checks, compressions.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix_narinfo::Compression;
use sha2::{Digest, Sha256};

use super::pipeline::CHUNK_BYTES;
use super::write::WRITEBACK_BYTES;
use super::{decompress, remove_tree, restore_verified, Expected, NarError};

/// Builds a NAR by hand: hostile archives cannot come from a real tool.
struct NarWriter(Vec<u8>);

impl NarWriter {
    fn new() -> Self {
        let mut w = NarWriter(Vec::new());
        w.s(b"nix-archive-1");
        w
    }
    fn s(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        let pad = (8 - bytes.len() % 8) % 8;
        self.0.extend(std::iter::repeat_n(0, pad));
        self
    }
    fn tokens(&mut self, tokens: &[&str]) -> &mut Self {
        for t in tokens {
            self.s(t.as_bytes());
        }
        self
    }
    fn file(&mut self, name: &str, contents: &[u8]) -> &mut Self {
        self.tokens(&[
            "entry", "(", "name", name, "node", "(", "type", "regular", "contents",
        ]);
        self.s(contents);
        self.tokens(&[")", ")"])
    }
}

fn sha256_of(bytes: &[u8]) -> nix_derivation::NixHash {
    nix_derivation::NixHash::from_algorithm_and_digest(
        nix_derivation::HashAlgorithm::Sha256,
        &Sha256::digest(bytes),
    )
    .unwrap()
}

fn directory_nar(build: impl FnOnce(&mut NarWriter)) -> Vec<u8> {
    let mut w = NarWriter::new();
    w.tokens(&["(", "type", "directory"]);
    build(&mut w);
    w.tokens(&[")"]);
    w.0
}

fn restore_plain(nar: &[u8], dest: &Path) -> Result<(), NarError> {
    let hash = sha256_of(nar);
    let expected = Expected {
        nar_hash: &hash,
        nar_size: nar.len() as u64,
        compression: &Compression::None,
    };
    restore_verified(nar, &expected, dest)
}

#[test]
fn restores_with_nix_modes_and_mtime_one() {
    let nar = directory_nar(|w| {
        w.tokens(&[
            "entry",
            "(",
            "name",
            "bin",
            "node",
            "(",
            "type",
            "directory",
        ]);
        w.tokens(&[
            "entry",
            "(",
            "name",
            "tool",
            "node",
            "(",
            "type",
            "regular",
            "executable",
            "",
            "contents",
        ]);
        w.s(b"#!/bin/sh\n");
        w.tokens(&[")", ")", ")", ")"]);
        w.file("data", b"hello");
        w.tokens(&[
            "entry", "(", "name", "link", "node", "(", "type", "symlink", "target", "data", ")",
            ")",
        ]);
    });
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    restore_plain(&nar, &dest).unwrap();
    let mode = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode(""), 0o555);
    assert_eq!(mode("bin"), 0o555);
    assert_eq!(mode("bin/tool"), 0o555);
    assert_eq!(mode("data"), 0o444);
    assert_eq!(fs::read(dest.join("data")).unwrap(), b"hello");
    assert_eq!(fs::read_link(dest.join("link")).unwrap(), Path::new("data"));
    for p in ["", "bin", "bin/tool", "data", "link"] {
        assert_eq!(
            fs::symlink_metadata(dest.join(p)).unwrap().mtime(),
            1,
            "{p}"
        );
    }
    remove_tree(&dest).unwrap();
    assert!(!dest.exists());
}

#[test]
fn big_files_are_written_whole() {
    // Past SMALL_FILE_BYTES the file streams on the decoding thread, and
    // past WRITEBACK_BYTES it also starts writeback on the way.
    let big: Vec<u8> = (0..WRITEBACK_BYTES + 3 * CHUNK_BYTES + 5)
        .map(|i| (i % 251) as u8)
        .collect();
    let nar = directory_nar(|w| {
        w.file("big", &big).file("small", b"s");
    });
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    restore_plain(&nar, &dest).unwrap();
    assert!(fs::read(dest.join("big")).unwrap() == big);
    assert_eq!(fs::read(dest.join("small")).unwrap(), b"s");
    let meta = fs::metadata(dest.join("big")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o444, 1));
}

#[test]
fn hostile_names_are_rejected() {
    for name in ["..", ".", "", "a/b", "/etc"] {
        let nar = directory_nar(|w| {
            w.file(name, b"x");
        });
        let tmp = tempfile::tempdir().unwrap();
        let err = restore_plain(&nar, &tmp.path().join("out")).unwrap_err();
        assert!(
            err.to_string().contains("invalid entry name"),
            "{name:?}: {err}"
        );
    }
}

#[test]
fn duplicate_and_unsorted_entries_are_rejected() {
    for (a, b) in [("same", "same"), ("b", "a")] {
        let nar = directory_nar(|w| {
            w.file(a, b"1").file(b, b"2");
        });
        let tmp = tempfile::tempdir().unwrap();
        let err = restore_plain(&nar, &tmp.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("not sorted"), "{err}");
    }
}

#[test]
fn truncated_and_trailing_bytes_are_rejected() {
    let nar = directory_nar(|w| {
        w.file("f", b"contents");
    });
    let tmp = tempfile::tempdir().unwrap();
    let truncated = &nar[..nar.len() - 12];
    let hash = sha256_of(&nar);
    let expected = Expected {
        nar_hash: &hash,
        nar_size: nar.len() as u64,
        compression: &Compression::None,
    };
    let err = restore_verified(truncated, &expected, &tmp.path().join("a")).unwrap_err();
    assert!(err.to_string().contains("unexpected end"), "{err}");

    let mut longer = nar.clone();
    longer.extend_from_slice(&[0; 8]);
    let err = restore_verified(&longer[..], &expected, &tmp.path().join("b")).unwrap_err();
    assert!(err.to_string().contains("longer than its NarSize"), "{err}");
}

#[test]
fn hash_and_size_mismatches_are_named() {
    let nar = directory_nar(|w| {
        w.file("f", b"contents");
    });
    let tmp = tempfile::tempdir().unwrap();
    let wrong = sha256_of(b"something else");
    let expected = Expected {
        nar_hash: &wrong,
        nar_size: nar.len() as u64,
        compression: &Compression::None,
    };
    let err = restore_verified(&nar[..], &expected, &tmp.path().join("a")).unwrap_err();
    assert!(matches!(err, NarError::HashMismatch { .. }), "{err}");

    let right = sha256_of(&nar);
    let expected = Expected {
        nar_hash: &right,
        nar_size: nar.len() as u64 + 8,
        compression: &Compression::None,
    };
    let err = restore_verified(&nar[..], &expected, &tmp.path().join("b")).unwrap_err();
    assert!(err.to_string().contains("NarSize"), "{err}");
}

#[test]
fn xz_streams_needing_too_much_memory_are_refused() {
    if !kiln_harness::require(&["xz"]) {
        return;
    }
    let nar = directory_nar(|w| {
        w.file("f", b"contents");
    });
    let mut xz = std::process::Command::new("xz")
        .args(["--format=xz", "--lzma2=dict=1GiB", "--stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut xz.stdin.take().unwrap(), &nar).unwrap();
    let compressed = xz.wait_with_output().unwrap().stdout;
    let hash = sha256_of(&nar);
    let expected = Expected {
        nar_hash: &hash,
        nar_size: nar.len() as u64,
        compression: &Compression::Xz,
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = restore_verified(&compressed[..], &expected, &tmp.path().join("a")).unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");

    let mut xz = std::process::Command::new("xz")
        .args(["--format=xz", "--stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut xz.stdin.take().unwrap(), &nar).unwrap();
    let compressed = xz.wait_with_output().unwrap().stdout;
    restore_verified(&compressed[..], &expected, &tmp.path().join("b")).unwrap();
}

#[test]
fn unknown_compression_is_refused() {
    let err = decompress(&Compression::Other("lz4".into()), io::empty())
        .err()
        .unwrap();
    assert!(err.to_string().contains("lz4"), "{err}");
}
