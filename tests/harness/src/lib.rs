//! `kiln-harness`: the real components kiln's tests run against.
//!
//! Every helper here starts or calls a real program (docker-registry, nix,
//! nginx, skopeo, umoci, oci-image-tool, runc) on this machine, or, for the
//! downloads kiln makes itself, a small HTTP server of its own
//! ([`archive_server`]), on loopback ports picked at run time, and stops what
//! it started when dropped, also when a test fails. Under `CI=true` a
//! missing component fails the test; elsewhere the test is skipped with a
//! printed reason (see [`require`]).
//!
//! Beside them, [`mutate`] holds the seed mutations that the bounded
//! proptest fuzz targets of `kiln` and `kiln-store` share.

pub mod apps;
pub mod archive_server;
pub mod as_user;
pub mod connect_proxy;
pub mod debian;
pub mod fault_proxy;
pub mod hash;
pub mod http;
pub mod images;
pub mod loopback;
pub mod mutate;
pub mod nixpkgs;
pub mod process;
pub mod registry;
pub mod require;
pub mod summary;
pub mod validators;

pub use archive_server::ArchiveServer;
pub use as_user::AsUser;
pub use connect_proxy::ConnectProxy;
pub use fault_proxy::{Fault, FaultProxy};
pub use nixpkgs::{FixtureNixpkgs, HttpCache};
pub use registry::{Registry, RegistryKind, Request};
pub use require::{require, require_root};
