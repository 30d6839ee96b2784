//! `kiln`: builds OCI container images from application source with no
//! Docker daemon and no root.
//!
//! The modules follow the one-way pipeline, top to bottom:
//!
//! - [`commands`]: the command line, one file per subcommand; each parses
//!   its flags into plain option structs and calls the stages.
//! - [`report`]: everything printed (results, stage lines, bars, logs).
//! - [`pipeline`]: wires the stages of a build (and of `kiln pack`).
//! - the stages: [`resolve`] (package names to store paths, realized by
//!   `kiln-store`), [`sandbox`] (phases in namespaces), [`layer`] and
//!   [`image`] (packing), [`sbom`] (what an image holds) and
//!   [`provenance`] (how it was built), for supply chain tools, [`registry`] (pushes and pulls), and [`cache`] (the
//!   cache folder's layout).
//!
//! Plans come from `kiln-providers`, Nix store work from `kiln-store`.
//! Stages never reach up into `pipeline` or `commands`.

pub mod cache;
pub mod commands;
pub mod image;
pub mod layer;
pub mod pipeline;
pub mod provenance;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod sandbox;
pub mod sbom;
pub mod sign;
