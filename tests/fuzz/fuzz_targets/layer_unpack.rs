//! A base image layer as a registry sends it (plain tar, or gzip or zstd
//! when the bytes start with their magic), unpacked with kiln's own code
//! over a fixed lower layer so its whiteouts and opaque markers have files
//! to hide. It may be applied or refused; it never panics, hangs, or creates
//! or changes anything outside the unpack root.
#![no_main]

use std::fs;
use std::path::Path;

use kiln::registry::{unpack_layers_within, PulledLayer};
use kiln_fuzz::beside_sentinel;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// Uncompressed bytes the two layers may add up to: enough for any input
/// libFuzzer makes, small enough that a bomb is cut off quickly.
const LIMIT: u64 = 64 << 20;

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The lower layer: folders, files, an executable, a symlink to a folder
/// and a hard link.
fn lower_layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, link: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(1);
        header.set_size(data.len() as u64);
        if !link.is_empty() {
            header.set_link_name(link).expect("a link name");
        }
        builder
            .append_data(&mut header, name, data)
            .expect("a tar entry");
    };
    add("etc/", tar::EntryType::Directory, 0o755, "", b"");
    add("etc/a", tar::EntryType::Regular, 0o644, "", b"one");
    add("etc/b", tar::EntryType::Regular, 0o600, "", b"two");
    add("etc/sub/", tar::EntryType::Directory, 0o755, "", b"");
    add("etc/sub/c", tar::EntryType::Regular, 0o644, "", b"three");
    add("etc/hard", tar::EntryType::Link, 0o644, "etc/a", b"");
    add(
        "usr/bin/tool",
        tar::EntryType::Regular,
        0o755,
        "",
        b"#!/bin/sh\n",
    );
    add("lib", tar::EntryType::Symlink, 0o777, "usr/bin", b"");
    builder.into_inner().expect("a tar")
}

fn media_type(data: &[u8]) -> &'static str {
    if data.starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    }
}

/// A pulled layer of `bytes`, its blob written to `dir/name`. The diff ID
/// is the bytes' own hash, right for a plain tar, so its unpack can succeed.
fn layer(dir: &Path, name: &str, bytes: &[u8], media_type: &str) -> PulledLayer {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("a blob file");
    PulledLayer {
        digest: sha256(bytes),
        diff_id: sha256(bytes),
        media_type: media_type.to_string(),
        size: bytes.len() as u64,
        path,
    }
}

fuzz_target!(|data: &[u8]| {
    let blobs = tempfile::tempdir().expect("a temp folder");
    let layers = [
        layer(
            blobs.path(),
            "lower",
            &lower_layer(),
            "application/vnd.oci.image.layer.v1.tar",
        ),
        layer(blobs.path(), "upper", data, media_type(data)),
    ];
    beside_sentinel(false, |root| {
        let _ = unpack_layers_within(&layers, root, LIMIT);
    });
});
