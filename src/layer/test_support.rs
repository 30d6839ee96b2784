//! Helpers shared by the layer module's unit tests.

use super::StorePathSource;
use std::fs;
use std::path::Path;

/// A fake store path `name` under `root` holding `files`, each containing the
/// package name.
pub(crate) fn package(root: &Path, name: &str, files: &[&str]) -> StorePathSource {
    let store_path = format!("/nix/store/{:0<32}-{name}", name.len());
    let local = root.join(&store_path[11..]);
    for file in files {
        fs::create_dir_all(local.join(file).parent().unwrap()).unwrap();
        fs::write(local.join(file), name).unwrap();
    }
    StorePathSource { store_path, local }
}
