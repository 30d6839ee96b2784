//! Splitting a store path's name into package name and version the way Nix
//! does (`builtins.parseDrvName`).

/// `name` split at its first `-` that is followed by something other than a
/// letter: `nodejs-20.11.1` is `nodejs` version `20.11.1`, `gcc-lib` has no
/// version. The same rule as Nix's `DrvName`, so an SBOM names packages as
/// `nix-env` and nixpkgs do.
pub fn split_name(name: &str) -> (&str, Option<&str>) {
    let bytes = name.as_bytes();
    for (i, byte) in bytes.iter().enumerate() {
        if *byte == b'-'
            && bytes
                .get(i + 1)
                .is_some_and(|next| !next.is_ascii_alphabetic())
        {
            return (&name[..i], Some(&name[i + 1..]));
        }
    }
    (name, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_parse_drv_name_does() {
        assert_eq!(split_name("nodejs-20.11.1"), ("nodejs", Some("20.11.1")));
        assert_eq!(split_name("gcc-lib"), ("gcc-lib", None));
        assert_eq!(
            split_name("python3-3.11.2-env"),
            ("python3", Some("3.11.2-env"))
        );
        assert_eq!(split_name("hello-world-2"), ("hello-world", Some("2")));
        assert_eq!(split_name("x-"), ("x-", None));
        assert_eq!(split_name("-1"), ("", Some("1")));
        assert_eq!(split_name(""), ("", None));
    }
}
