//! The base files every kiln image starts with: users and groups, name
//! service config, `/tmp`, `/bin/sh` and `/usr/bin/env` links into the
//! closure, and CA certificates when `cacert` is in it.

use std::path::Path;

use super::tree::Tree;
use super::StorePathSource;

/// Where images find the CA bundle.
pub const CERT_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";

/// The base layer's files and what they found in the closure.
#[derive(Debug, Clone)]
pub struct BaseFiles {
    /// The entries of the base layer.
    pub tree: Tree,
    /// `/bin/bash` exists (a closure path has `bin/bash`): start commands
    /// can run the way Nixpacks runs them.
    pub has_bash: bool,
    /// `/bin/sh` exists.
    pub has_sh: bool,
    /// The CA bundle path, when `cacert` (or any path with
    /// `etc/ssl/certs/ca-bundle.crt`) is in the closure.
    pub cert_file: Option<&'static str>,
}

/// What the base files link to: each program or bundle the closure has,
/// as a path inside the image. Found on disk by [`find_base`], or read
/// back from a record of an earlier build.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseFinds {
    /// `<store path>/bin/bash`.
    pub bash: Option<String>,
    /// `<store path>/bin/sh`, else bash.
    pub sh: Option<String>,
    /// `<store path>/bin/env`.
    pub env: Option<String>,
    /// `<store path>/etc/ssl/certs/ca-bundle.crt`.
    pub ca_bundle: Option<String>,
}

/// Searches `packages` (first, in order) and then the whole `closure` (in
/// name order) for `bin/sh`, `bin/bash`, `bin/env` and the CA bundle.
pub fn find_base(packages: &[StorePathSource], closure: &[StorePathSource]) -> BaseFinds {
    let mut sorted: Vec<&StorePathSource> = closure.iter().collect();
    sorted.sort_by(|a, b| a.store_path.cmp(&b.store_path));
    let search: Vec<&StorePathSource> = packages.iter().chain(sorted).collect();
    let find = |relative: &str| {
        search
            .iter()
            .find(|p| exists(&p.local.join(relative)))
            .map(|p| format!("{}/{relative}", p.store_path))
    };
    let bash = find("bin/bash");
    BaseFinds {
        sh: find("bin/sh").or_else(|| bash.clone()),
        bash,
        env: find("bin/env"),
        ca_bundle: find("etc/ssl/certs/ca-bundle.crt"),
    }
}

/// The base files for an image whose packages are `packages` and whose
/// whole closure is `closure` (see [`find_base`]).
pub fn base_files(packages: &[StorePathSource], closure: &[StorePathSource]) -> BaseFiles {
    find_base(packages, closure).files()
}

impl BaseFinds {
    /// The base files linking to what was found.
    pub fn files(&self) -> BaseFiles {
        let mut tree = Tree::new();
        tree.add_file("etc/passwd", 0o644, PASSWD.as_bytes().to_vec());
        tree.add_file("etc/group", 0o644, GROUP.as_bytes().to_vec());
        tree.add_file("etc/nsswitch.conf", 0o644, NSSWITCH.as_bytes().to_vec());
        tree.add_dir("tmp", 0o1777);
        tree.add_dir("root", 0o700);
        tree.add_dir("app", 0o755);
        if let Some(bash) = &self.bash {
            tree.add_symlink("bin/bash", bash);
        }
        if let Some(sh) = &self.sh {
            tree.add_symlink("bin/sh", sh);
        }
        if let Some(env) = &self.env {
            tree.add_symlink("usr/bin/env", env);
        }
        let cert_file = self.ca_bundle.as_ref().map(|bundle| {
            tree.add_symlink(&CERT_FILE[1..], bundle);
            tree.add_symlink("etc/ssl/certs/ca-bundle.crt", bundle);
            CERT_FILE
        });
        BaseFiles {
            tree,
            has_bash: self.bash.is_some(),
            has_sh: self.sh.is_some(),
            cert_file,
        }
    }
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::test_support::package;
    use crate::layer::Kind;

    fn link(tree: &Tree, name: &str) -> Option<String> {
        tree.entries()
            .find(|e| e.name == name.as_bytes())
            .map(|e| match &e.kind {
                Kind::Symlink { target } => String::from_utf8(target.clone()).unwrap(),
                other => panic!("{name} is {other:?}"),
            })
    }

    #[test]
    fn links_point_into_the_closure_preferring_packages() {
        let dir = tempfile::tempdir().unwrap();
        let busybox = package(dir.path(), "busybox", &["bin/sh", "bin/env"]);
        let bash = package(dir.path(), "bash", &["bin/bash", "bin/sh"]);
        let cacert = package(dir.path(), "cacert", &["etc/ssl/certs/ca-bundle.crt"]);
        let closure = [busybox.clone(), bash.clone(), cacert.clone()];
        let base = base_files(std::slice::from_ref(&bash), &closure);
        assert!(base.has_bash && base.has_sh);
        assert_eq!(base.cert_file, Some(CERT_FILE));
        let tree = &base.tree;
        assert_eq!(
            link(tree, "bin/sh").unwrap(),
            format!("{}/bin/sh", bash.store_path)
        );
        assert_eq!(
            link(tree, "usr/bin/env").unwrap(),
            format!("{}/bin/env", busybox.store_path)
        );
        assert_eq!(
            link(tree, "etc/ssl/certs/ca-certificates.crt").unwrap(),
            format!("{}/etc/ssl/certs/ca-bundle.crt", cacert.store_path)
        );
        let tmp = tree.entries().find(|e| e.name == b"tmp").unwrap();
        assert_eq!(tmp.mode, 0o1777);
    }

    #[test]
    fn nothing_found_means_no_links() {
        let base = base_files(&[], &[]);
        assert!(!base.has_sh && !base.has_bash && base.cert_file.is_none());
        assert!(link(&base.tree, "bin/sh").is_none());
        assert!(base.tree.entries().any(|e| e.name == b"etc/passwd"));
    }
}
