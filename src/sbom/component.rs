//! What both SBOM formats say about a store path and about the image: its
//! name and version as Nix splits them, its purl, its NAR hash. One place,
//! so SPDX and CycloneDX documents of the same image always agree.

use kiln_store::ClosurePath;

use super::nix_name::split_name;
use super::purl::purl;

/// A store path as an SBOM package.
pub struct NixComponent<'a> {
    /// The package name (`nodejs`), or the whole store name when Nix's
    /// rule finds no name part.
    pub name: &'a str,
    /// The version (`20.11.1`), when the store name has one.
    pub version: Option<&'a str>,
    /// `pkg:nix/NAME[@VERSION]`.
    pub purl: String,
    /// The NAR hash's algorithm as the narinfo names it (`sha256`).
    pub hash_algorithm: &'a str,
    /// The NAR hash, lower-case hexadecimal.
    pub hash_hex: &'a str,
}

/// `path` as an SBOM package.
pub fn nix_component(path: &ClosurePath) -> NixComponent<'_> {
    let (name, version) = split_name(path.path.name());
    let (hash_algorithm, hash_hex) = path
        .nar_hash
        .split_once(':')
        .unwrap_or(("sha256", &path.nar_hash));
    NixComponent {
        name: if name.is_empty() {
            path.path.name()
        } else {
            name
        },
        version,
        purl: purl("nix", None, name, version),
        hash_algorithm,
        hash_hex,
    }
}

/// `pkg:oci/NAME@sha256:...`: the image by the last part of its name and
/// its manifest digest, as the purl spec's `oci` type asks.
pub fn image_purl(name: &str, digest: &str) -> String {
    purl(
        "oci",
        None,
        name.rsplit('/').next().unwrap_or(name),
        Some(digest),
    )
}
