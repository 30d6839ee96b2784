//! Registries: push an OCI image layout to a registry and pull base images
//! from one, with no daemon in between.
//!
//! The wire protocol is `oci-client`'s (async, tokio). The runtime lives
//! inside this module: [`push_layout`] and [`pull_image`] are plain blocking
//! calls for the rest of kiln, which is synchronous;
//! [`push_layout_with_progress`] reports to a [`PushProgress`] as it goes. [`unpack_layers`] turns
//! pulled layers into a root filesystem folder.

mod artifact;
mod artifact_admin;
mod auth;
mod blob_stream;
mod connect;
mod error;
mod layout;
mod manifest;
mod progress;
mod pull;
mod push;
mod raw;
mod referrers;
mod retry;
mod unpack;

pub use artifact::{Artifact, ArtifactBlob, ArtifactRepo, CREATED_ANNOTATION};
pub use artifact_admin::RawManifest;
pub use auth::{AuthEnv, CredentialSource, Credentials};
pub use error::RegistryError;
pub use layout::{layout_referrer, referrer_in};
pub use layout::{LayoutBlob, LayoutImage};
pub use manifest::{check_manifest, parse_image_config, Platform};
pub use progress::{BlobFate, NoPushProgress, PushProgress};
pub use pull::{pull_image, PulledImage, PulledLayer};
pub use push::{
    push_image_with_progress, push_layout, push_layout_with_progress, PushOutcome, PushRequest,
    PushTarget,
};
pub use referrers::{add_referrers, fetch_referrer, referrers_tag};
pub use unpack::{
    max_unpacked_bytes, unpack_layers, unpack_layers_within, UnpackError,
    DEFAULT_MAX_UNPACKED_BYTES,
};

use std::path::PathBuf;

/// How kiln talks to registries: credentials, trust and concurrency,
/// shared by pushes and pulls.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// User name and password given on the command line or in
    /// `KILN_REGISTRY_USERNAME`/`KILN_REGISTRY_PASSWORD`; they win over every
    /// auth file.
    pub credentials: Option<Credentials>,
    /// Where auth files and credential helpers are looked up.
    pub auth_env: AuthEnv,
    /// `HOST[:PORT]` entries allowed over plain HTTP or unverified TLS.
    pub insecure_hosts: Vec<String>,
    /// Extra PEM certificates trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// How many blobs move at once.
    pub jobs: usize,
}

impl RegistryConfig {
    /// Default blob concurrency (`--push-jobs`).
    pub const DEFAULT_JOBS: usize = 4;
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            credentials: None,
            auth_env: AuthEnv::from_process(),
            insecure_hosts: Vec::new(),
            ca_files: Vec::new(),
            jobs: Self::DEFAULT_JOBS,
        }
    }
}

/// The tokio runtime a registry call runs on; kiln outside this module is
/// synchronous.
fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}
