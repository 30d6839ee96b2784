//! `go.sum`: the Go modules the app's build checks. Written here because
//! its format is one line per module (`PATH VERSION h1:HASH`), which needs
//! no crate. go.sum may list modules the final build does not link (it
//! keeps sums for the whole module graph); without running Go, that
//! superset is the most exact list available.

use super::{package, Problem};
use crate::sbom::AppPackage;

/// The modules `lock` holds sums for. The `h1:` sum hashes the module's
/// file tree, not an archive, so it is no SBOM checksum and is left out.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let text = super::text(lock)?;
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (path, version) = match fields.as_slice() {
            [] => continue,
            [path, version, sum] if sum.contains(':') => (*path, *version),
            _ => {
                return Err(Problem::at(
                    index + 1,
                    "is not `MODULE VERSION HASH` (is this a go.sum?)",
                ))
            }
        };
        // `VERSION/go.mod` sums cover only the module's go.mod file.
        if version.ends_with("/go.mod") {
            continue;
        }
        if !version.starts_with('v') || path.split('/').any(str::is_empty) {
            return Err(Problem::at(
                index + 1,
                format!("names `{path} {version}`, which is no Go module version"),
            ));
        }
        // The purl of a Go module: its path's last element is the name and
        // the rest the namespace.
        let (namespace, name) = match path.rsplit_once('/') {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, path),
        };
        let mut module = package("golang", namespace, name, version, None);
        module.name = path.to_string();
        found.push(module);
    }
    Ok(super::unique(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    #[test]
    fn lists_modules_once_without_go_mod_lines() {
        let lock = b"github.com/pkg/errors v0.9.1 h1:FEBL=\n\
github.com/pkg/errors v0.9.1/go.mod h1:bwaw=\n\
golang.org/x/text v0.3.8-0.20211004+incompatible h1:x=\n\
\n\
rsc.io/Quote v1.5.2 h1:w5f=\n";
        let found = packages(lock).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:golang/github.com/pkg/errors@v0.9.1",
                "pkg:golang/golang.org/x/text@v0.3.8-0.20211004+incompatible",
                "pkg:golang/rsc.io/Quote@v1.5.2",
            ]
        );
        assert_eq!(found[0].name, "github.com/pkg/errors");
    }

    #[test]
    fn hostile_lines_are_refused_with_their_number() {
        let err = packages(b"a v1 h1:x\nnot a sum line at all\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        let err = packages(b"a//b v1 h1:x\n").unwrap_err();
        assert!(err.reason.contains("no Go module"), "{err:?}");
        let err = packages(b"a 1.0 h1:x\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(survives(packages, &[b"x@y/%2F v1.0 h1:z\n"]) >= 5);
    }
}
