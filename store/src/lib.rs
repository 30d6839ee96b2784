//! `kiln-store`: gets Nix store paths onto disk without a Nix daemon.
//!
//! This crate owns store path parsing, narinfo fetching and signature checks,
//! NAR decompression and restore, substituters (`file://`, `http(s)://`),
//! closure computation from narinfo `References`, and kiln's own store folder
//! with its validity markers and locks. It knows nothing of OCI images, the
//! sandbox or the command line.
