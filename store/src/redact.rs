//! URLs made fit to show: `user:pass@` in a substituter URL is a secret,
//! and URLs end up in errors, logs and `--json` output.

/// `url` with any userinfo (`user:pass@`, `token@`) in its authority
/// replaced by `***@`; other URLs unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The last `@` ends the userinfo: a password may itself contain `@`.
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{tail}", &authority[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_replaced_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://alice:p@ss@cache.example:8443/x?y=a@b"),
            "https://***@cache.example:8443/x?y=a@b"
        );
        assert_eq!(redact_url("http://token@host/path"), "http://***@host/path");
        for plain in ["https://cache.nixos.org", "file:///a@b/c", "not a url"] {
            assert_eq!(redact_url(plain), plain);
        }
    }
}
