//! `kiln-store`: gets Nix store paths onto disk without a Nix daemon.
//!
//! This crate owns store path parsing, narinfo fetching and signature checks,
//! NAR decompression and restore, substituters (`file://`, `http(s)://`),
//! closure computation from narinfo `References`, and kiln's own store folder
//! with its validity markers and locks. It knows nothing of OCI images, the
//! sandbox or the command line.
//!
//! ```no_run
//! use kiln_store::{parse_store_path, FetchOptions, Store, Substituters};
//!
//! let store = Store::open("/home/me/.cache/kiln".as_ref())?;
//! let caches = Substituters::new(&[], &[], FetchOptions::default())?;
//! let node = parse_store_path("/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-nodejs-20")?;
//! for path in store.realize(&caches, &[node])?.paths {
//!     println!("{} at {}", path.path, path.location.display());
//! }
//! # Ok::<(), kiln_store::StoreError>(())
//! ```

mod error;
mod host;
mod local;
pub mod nar;
mod narinfo;
mod netrc;
mod progress;
mod realize;
mod redact;
mod substituter;

pub use error::StoreError;
pub use local::{Removal, Store, StoreEntry, HOST_STORE};
pub use narinfo::{check_signature, hash_part, parse_narinfo, parse_public_keys, parse_store_path};
pub use netrc::{credentials_for, Credentials};
pub use nix_derivation::StorePath;
pub use nix_narinfo::{NarInfo, TrustedPublicKey};
pub use progress::{NoProgress, RealizeProgress};
pub use realize::{Closure, ClosurePath, Origin};
pub use redact::redact_url;
pub use substituter::{
    open_url, Download, FetchOptions, FoundNarInfo, Substituter, Substituters, DEFAULT_PUBLIC_KEY,
    DEFAULT_SUBSTITUTER, STORE_DIR,
};
