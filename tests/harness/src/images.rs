//! Small OCI image layouts made by umoci, for tests and benchmarks that need
//! an image kiln did not write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::nixpkgs::nix_command;
use crate::process::run;
use crate::require::find_program;

/// Makes an OCI layout at `layout` holding image `tag`: busybox-static at
/// `/bin/busybox` with `/bin/sh` linking to it, one layer.
pub fn busybox_image(layout: &Path, tag: &str) {
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("index.json").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    run(Command::new("umoci").args(["new", "--image", &image]));
    let staging = tempfile::tempdir().expect("staging dir");
    let bin = staging.path().join("bin");
    std::fs::create_dir_all(&bin).expect("create bin");
    let busybox = find_program("busybox").expect("busybox installed");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", bin.join("sh")).expect("link sh");
    std::fs::write(staging.path().join("hello.txt"), b"hello from the base\n")
        .expect("write hello");
    // Fixed mtimes: two images made a second apart must share this layer's
    // digest, or tests of blob reuse fail at random.
    run(Command::new("find")
        .arg(staging.path())
        .args(["-exec", "touch", "-h", "-d", "@1", "{}", "+"]));
    insert(layout, tag, staging.path(), "/");
}

/// Adds one layer to image `tag` of `layout` with the folder or file
/// `source` at `target` inside the image (`umoci insert`).
pub fn insert(layout: &Path, tag: &str, source: &Path, target: &str) {
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(source)
        .arg(target));
}

/// Writes `size` bytes of incompressible but reproducible data to `path`.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(path).expect("create random file"));
    let mut state = seed | 1;
    let mut left = size;
    while left > 0 {
        // xorshift64: fast, and gzip cannot shrink it.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let block = state.to_le_bytes();
        let n = left.min(block.len());
        file.write_all(&block[..n]).expect("write random file");
        left -= n;
    }
    file.flush().expect("flush random file");
}

/// The descriptor `index.json` of `layout` has for image `tag` (media
/// type, digest, size), as JSON.
pub fn layout_entry(layout: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("parse index.json");
    index["manifests"]
        .as_array()
        .expect("index has manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))
        .clone()
}

/// The manifest of image `tag` in `layout`, as JSON.
pub fn layout_manifest(layout: &Path, tag: &str) -> Value {
    let entry = layout_entry(layout, tag);
    let digest = entry["digest"].as_str().expect("digest");
    let path = layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    serde_json::from_slice(&std::fs::read(path).expect("read manifest")).expect("parse manifest")
}

/// Layer digests of image `tag` in `layout`, in order.
pub fn layout_layer_digests(layout: &Path, tag: &str) -> Vec<String> {
    layout_manifest(layout, tag)["layers"]
        .as_array()
        .expect("manifest has layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect()
}

/// The Nix closure of `store_path` (`nix-store -qR`), sorted.
pub fn closure(store_path: &str) -> Vec<PathBuf> {
    let out = run(nix_command("nix-store").args(["-qR", store_path]));
    let mut paths: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    paths.sort();
    paths
}

/// Makes image `tag` in a new layout at `layout`: no base, one layer per
/// store path of `paths`, each at its own `/nix/store/...` place.
pub fn store_path_image(layout: &Path, tag: &str, paths: &[PathBuf]) {
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    for path in paths {
        insert(layout, tag, path, &path.display().to_string());
    }
}
