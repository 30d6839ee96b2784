//! Inputs the SBOM writers' unit tests share: a small closure with a
//! reference and one scoped npm package.

use kiln_store::{ClosurePath, Origin};

use super::{AppPackage, SbomFormat, SbomInputs};

/// `glibc-2.37` and `nodejs-20.11.1`, which refers to it.
pub fn closure() -> Vec<ClosurePath> {
    let path = |hash: char, name: &str, refs: Vec<kiln_store::StorePath>| {
        let path = kiln_store::parse_store_path(&format!(
            "/nix/store/{}-{name}",
            hash.to_string().repeat(32)
        ))
        .unwrap();
        ClosurePath {
            location: path.to_string().into(),
            path,
            references: refs,
            nar_size: 1,
            nar_hash: format!("sha256:{}", "ab".repeat(32)),
            file_size: None,
            origin: Origin::HostStore,
        }
    };
    let glibc = path('a', "glibc-2.37", vec![]);
    let node = path('b', "nodejs-20.11.1", vec![glibc.path.clone()]);
    vec![glibc, node]
}

/// `@s/x` 1.0.0 from a package-lock.json, with a SHA-512 integrity.
pub fn npm_packages() -> Vec<AppPackage> {
    let lock = format!(
        r#"{{"packages":{{"node_modules/@s/x":{{"version":"1.0.0","integrity":"sha512-{}=="}}}}}}"#,
        "A".repeat(86)
    );
    super::lockfile::npm::packages(lock.as_bytes()).unwrap()
}

/// The document `format` writes for image `team/app` of [`closure`] and
/// [`npm_packages`], parsed.
pub fn document(format: SbomFormat) -> serde_json::Value {
    let app = npm_packages();
    let bytes = format
        .document(&SbomInputs {
            name: "team/app",
            image_digest: &format!("sha256:{}", "cd".repeat(32)),
            store_paths: &closure(),
            app: &app,
            source_date_epoch: 1,
        })
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
