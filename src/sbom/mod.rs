//! SBOMs: what an image holds, as an SPDX 2.3 or CycloneDX 1.5 JSON
//! document, made offline from what kiln already knows. The Nix closure it
//! packed gives every store path with its NAR hash and references, exactly,
//! where scanners guess from files; the app's lockfiles give its own
//! dependencies.
//!
//! [`SbomFormat::document`] writes the document; [`app_packages`] reads the
//! lockfiles. The same inputs always give the same bytes.

mod component;
mod cyclonedx;
mod lockfile;
mod nix_name;
mod purl;
mod spdx;
#[cfg(test)]
mod test_support;

use kiln_store::ClosurePath;

pub use cyclonedx::{cyclonedx_json, CYCLONEDX_MEDIA_TYPE};
pub use lockfile::{app_packages, AppDependencies, LockfileError};
pub use nix_name::split_name;
pub use spdx::{spdx_json, SPDX_MEDIA_TYPE};

/// The SBOM formats kiln writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON, the default.
    Spdx,
    /// CycloneDX 1.5 JSON.
    CycloneDx,
}

impl SbomFormat {
    /// Every format, in the order help lists them.
    pub const ALL: [SbomFormat; 2] = [SbomFormat::Spdx, SbomFormat::CycloneDx];

    /// The media type its documents and referrer artifacts carry.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => SPDX_MEDIA_TYPE,
            SbomFormat::CycloneDx => CYCLONEDX_MEDIA_TYPE,
        }
    }

    /// Its name and version, as progress lines say it.
    pub fn title(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "SPDX 2.3",
            SbomFormat::CycloneDx => "CycloneDX 1.5",
        }
    }

    /// The document of `inputs` in this format.
    pub fn document(self, inputs: &SbomInputs<'_>) -> Result<Vec<u8>, crate::image::ImageError> {
        match self {
            SbomFormat::Spdx => spdx_json(inputs),
            SbomFormat::CycloneDx => cyclonedx_json(inputs),
        }
    }
}

impl std::str::FromStr for SbomFormat {
    type Err = String;

    /// `spdx` or `cyclonedx`, as `--sbom-format` takes them.
    fn from_str(text: &str) -> Result<SbomFormat, String> {
        match text {
            "spdx" => Ok(SbomFormat::Spdx),
            "cyclonedx" => Ok(SbomFormat::CycloneDx),
            _ => Err(format!(
                "unknown SBOM format `{text}`: use spdx or cyclonedx"
            )),
        }
    }
}

/// What an SBOM describes.
pub struct SbomInputs<'a> {
    /// The image's name.
    pub name: &'a str,
    /// `sha256:<hex>` of the image manifest.
    pub image_digest: &'a str,
    /// Every store path in the image, with references and NAR hashes.
    pub store_paths: &'a [ClosurePath],
    /// The app's dependencies, from its lockfiles.
    pub app: &'a [AppPackage],
    /// The SBOM's creation time, as the image's.
    pub source_date_epoch: u64,
}

/// One dependency of the app, as its lockfile names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPackage {
    /// The purl type of its package manager (`npm`, `pypi`, `cargo`,
    /// `golang`, `gem`, `composer`).
    pub ecosystem: &'static str,
    /// Its name (`@types/node`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its package URL.
    pub purl: String,
    /// A hash of its archive, when the lockfile records one.
    pub checksum: Option<Checksum>,
}

/// A hash as SPDX writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// `SHA256`, `SHA512`, ...
    pub algorithm: String,
    /// The digest, lower-case hexadecimal.
    pub hex: String,
}
