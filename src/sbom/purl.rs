//! Package URLs (purl, <https://github.com/package-url/purl-spec>): the
//! identifier scanners and policy engines match SBOM packages on.

/// `pkg:TYPE/[NAMESPACE/]NAME[@VERSION]`, each part percent-encoded as the
/// purl spec asks. The npm scope (`@types`) is the namespace, so its `@`
/// is written `%40`; a namespace of several segments (a Go module's
/// `github.com/pkg`) keeps its `/` between them.
pub fn purl(kind: &str, namespace: Option<&str>, name: &str, version: Option<&str>) -> String {
    let mut text = format!("pkg:{kind}/");
    if let Some(namespace) = namespace {
        for segment in namespace.split('/') {
            text.push_str(&encode(segment));
            text.push('/');
        }
    }
    text.push_str(&encode(name));
    if let Some(version) = version {
        text.push('@');
        text.push_str(&encode(version));
    }
    text
}

/// Percent-encodes everything but the characters a purl part may hold as
/// they are. Written here because it is one short rule, and the purl crates
/// pull in far more than it.
pub fn encode(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        if byte.is_ascii_alphanumeric() || b".-_~+".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_scopes_and_odd_versions() {
        assert_eq!(
            purl("npm", Some("@types"), "node", Some("20.1.0")),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(purl("nix", None, "gcc-lib", None), "pkg:nix/gcc-lib");
        assert_eq!(
            purl("golang", Some("github.com/a b"), "c/d", Some("v1")),
            "pkg:golang/github.com/a%20b/c%2Fd@v1"
        );
        assert_eq!(
            purl("npm", None, "x", Some("git+ssh://h/r.git#a b")),
            "pkg:npm/x@git+ssh%3A%2F%2Fh%2Fr.git%23a%20b"
        );
    }
}
