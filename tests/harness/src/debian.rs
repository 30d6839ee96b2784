//! A Debian base image for `buildImage` tests: a `debootstrap --variant=minbase`
//! root filesystem, made once per checkout and kept as a tarball under
//! `target/kiln-fixtures`, then packed into an OCI layout by umoci.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nixpkgs::target_dir;
use crate::process::run;
use crate::require::{require, require_root, skip_or_fail};

/// The Debian release the base image holds (this machine's own).
pub const SUITE: &str = "bookworm";

/// The base root filesystem tarball, built on first use. `None` when the
/// test should be skipped (never under CI).
pub fn rootfs_tarball() -> Option<PathBuf> {
    if !require(&["debootstrap", "tar", "umoci"]) || !require_root() {
        return None;
    }
    let parent = target_dir().join("kiln-fixtures");
    fs::create_dir_all(&parent).expect("create target/kiln-fixtures");
    let lock = File::create(parent.join("debian.lock")).expect("create debian lock");
    lock.lock().expect("lock the debian fixture");
    let tarball = parent.join(format!("debian-{SUITE}-minbase.tar"));
    if tarball.exists() {
        return Some(tarball);
    }
    let Some(mirror) = mirror() else {
        skip_or_fail("no Debian mirror: set KILN_DEBIAN_MIRROR or configure apt");
        return None;
    };
    let work = tempfile::Builder::new()
        .prefix("kiln-debootstrap-")
        .tempdir_in(&parent)
        .expect("debootstrap temp dir");
    let rootfs = work.path().join("rootfs");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&rootfs)
        .arg(&mirror));
    // debootstrap leaves its download cache behind; an image does not need it.
    let _ = fs::remove_dir_all(rootfs.join("var/cache/apt/archives"));
    fs::create_dir_all(rootfs.join("var/cache/apt/archives/partial")).expect("recreate apt cache");
    let partial = work.path().join("rootfs.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .args(["-cf"])
        .arg(&partial)
        .arg("."));
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .expect("sync rootfs tarball");
    fs::rename(&partial, &tarball).expect("move rootfs tarball into place");
    Some(tarball)
}

/// The Debian mirror to bootstrap from: `$KILN_DEBIAN_MIRROR`, else the
/// first Debian archive apt on this machine uses.
fn mirror() -> Option<String> {
    if let Some(mirror) = std::env::var("KILN_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return Some(mirror);
    }
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let from_deb822 = deb822
        .lines()
        .filter_map(|line| line.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|uri| uri.trim_end_matches('/').ends_with("/debian"));
    let classic = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    let from_classic = classic
        .lines()
        .filter(|line| line.starts_with("deb "))
        .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("http")))
        .find(|uri| uri.trim_end_matches('/').ends_with("/debian"));
    from_deb822.or(from_classic).map(str::to_string)
}

/// Makes an OCI layout at `layout` with image `tag`: the Debian root
/// filesystem as one layer. `None` when the test should be skipped.
pub fn debian_image(layout: &Path, tag: &str) -> Option<()> {
    let tarball = rootfs_tarball()?;
    let staging = tempfile::tempdir().expect("staging dir");
    run(Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(staging.path())
        .arg("-xf")
        .arg(&tarball));
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    crate::images::insert(layout, tag, staging.path(), "/");
    Some(())
}
