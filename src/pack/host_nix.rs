//! Package names and closures from the host's Nix, until the store crate
//! does this without Nix: attributes are evaluated with `nix-instantiate`,
//! closures come from `nix-store --query --requisites` and
//! `nix-store --dump-db`, and files are read in place from `/nix/store`.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use crate::layer::{ClosurePath, StorePathSource};

/// Store paths for `packages`: store paths as given (a path inside one is
/// cut to the store path), attribute names evaluated against `nixpkgs`.
pub fn resolve_packages(
    packages: &[String],
    nixpkgs: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    packages
        .iter()
        .map(|package| match package.strip_prefix("/nix/store/") {
            Some(rest) => {
                let base = rest.split('/').next().unwrap_or_default();
                Ok(format!("/nix/store/{base}"))
            }
            None => evaluate_attribute(package, nixpkgs),
        })
        .collect()
}

fn evaluate_attribute(attribute: &str, nixpkgs: Option<&Path>) -> anyhow::Result<String> {
    let Some(nixpkgs) = nixpkgs else {
        bail!("`{attribute}` is not a store path; pass --nixpkgs DIR (or KILN_NIXPKGS) to look attribute names up, or give /nix/store/... paths");
    };
    if !attribute.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-'".contains(c))
    }) {
        bail!("`{attribute}` is not a Nix attribute path (letters, digits, `_`, `-`, `'`, separated by `.`)");
    }
    let selector: String = attribute
        .split('.')
        .map(|part| format!(".\"{part}\""))
        .collect();
    let expression = format!("(import {} {{}}){selector}.outPath", nix_path(nixpkgs)?);
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--json", "--expr", &expression])
        .output()
        .context("could not run nix-instantiate to look package names up; install Nix or give /nix/store/... paths")?;
    if !output.status.success() {
        bail!(
            "nix-instantiate could not find `{attribute}` in {}: {}",
            nixpkgs.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let path: String = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("nix-instantiate printed no store path for `{attribute}`"))?;
    if !Path::new(&path).exists() {
        bail!("`{attribute}` is {path}, which is not in this machine's /nix/store; build it first (nix-build {} -A {attribute})", nixpkgs.display());
    }
    Ok(path)
}

fn nix_path(dir: &Path) -> anyhow::Result<String> {
    let absolute = dir
        .canonicalize()
        .with_context(|| format!("nixpkgs folder {} not found", dir.display()))?;
    let text = absolute
        .to_str()
        .context("the nixpkgs folder's path is not UTF-8")?;
    if text
        .chars()
        .any(|c| c.is_whitespace() || "\"'$;{}".contains(c))
    {
        bail!("the nixpkgs folder's path {text} has characters kiln will not put in a Nix expression; move or link it");
    }
    Ok(text.to_string())
}

/// The closure of `roots` from the host's Nix database.
pub fn host_closure(roots: &[String]) -> anyhow::Result<Vec<ClosurePath>> {
    let requisites = nix_store(&[&["--query", "--requisites"], &as_strs(roots)[..]].concat())?;
    let paths: Vec<String> = requisites.lines().map(str::to_string).collect();
    let dump = nix_store(&[&["--dump-db"], &as_strs(&paths)[..]].concat())?;
    parse_dump_db(&dump, "nix-store --dump-db")
}

fn as_strs(items: &[String]) -> Vec<&str> {
    items.iter().map(String::as_str).collect()
}

fn nix_store(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("nix-store").args(args).output().context(
        "could not run nix-store to read the closure; install Nix, or pass --closure FILE",
    )?;
    if !output.status.success() {
        bail!(
            "nix-store {} failed: {} (without access to the Nix database, pass --closure FILE written by `nix-store --dump-db`)",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("nix-store printed non-UTF-8 output")
}

/// Parses `nix-store --dump-db` output (per path: path, NAR hash, NAR size,
/// deriver, reference count, references). `origin` names the source in
/// errors.
pub fn parse_dump_db(text: &str, origin: &str) -> anyhow::Result<Vec<ClosurePath>> {
    let mut lines = text.lines().enumerate().peekable();
    let mut closure = Vec::new();
    let mut next = |what: &str| -> anyhow::Result<(usize, &str)> {
        lines
            .next()
            .map(|(i, line)| (i + 1, line))
            .with_context(|| format!("{origin}: ends where {what} should be"))
    };
    loop {
        let (line, path) = match next("a store path") {
            Ok(found) => found,
            Err(_) => break,
        };
        if path.is_empty() {
            continue;
        }
        crate::layer::store_path_name(path).with_context(|| format!("{origin} line {line}"))?;
        next("a NAR hash")?;
        let (line, size) = next("a NAR size")?;
        let nar_size: u64 = size
            .parse()
            .with_context(|| format!("{origin} line {line}: `{size}` is not a NAR size"))?;
        next("a deriver")?;
        let (line, count) = next("a reference count")?;
        let count: usize = count
            .parse()
            .with_context(|| format!("{origin} line {line}: `{count}` is not a reference count"))?;
        let mut references = Vec::new();
        for _ in 0..count.min(100_000) {
            let (line, reference) = next("a reference")?;
            crate::layer::store_path_name(reference)
                .with_context(|| format!("{origin} line {line}"))?;
            references.push(reference.to_string());
        }
        if closure
            .iter()
            .any(|p: &ClosurePath| p.source.store_path == path)
        {
            continue;
        }
        closure.push(ClosurePath {
            source: StorePathSource::in_place(path),
            references,
            nar_size,
        });
    }
    Ok(closure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a";
    const B: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxy0-b";

    #[test]
    fn parses_dump_db() {
        let b = format!("{B}\ndef\n50\n/nix/store/x.drv\n0\n");
        let text = format!("{A}\nabc\n100\n\n2\n{A}\n{B}\n{b}{b}");
        let closure = parse_dump_db(&text, "test").unwrap();
        assert_eq!(closure.len(), 2);
        assert_eq!(closure[0].references, [A, B]);
        assert_eq!(closure[1].nar_size, 50);
    }

    #[test]
    fn hostile_dump_db_is_refused_with_the_line() {
        for (text, needle) in [
            (format!("{A}\nabc\nbig\n\n0\n"), "line 3"),
            (
                format!("{A}\nabc\n1\n\n1\n/nix/store/../../etc\n"),
                "line 6",
            ),
            ("/etc/passwd\nx\n1\n\n0\n".to_string(), "line 1"),
            (format!("{A}\nabc\n1\n\n3\n{B}\n"), "reference"),
        ] {
            let err = format!("{:#}", parse_dump_db(&text, "test").unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn store_paths_pass_and_inner_paths_are_cut() {
        let resolved = resolve_packages(&[format!("{A}/bin/a")], None).unwrap();
        assert_eq!(resolved, [A]);
        let err = resolve_packages(&["nodejs".into()], None).unwrap_err();
        assert!(err.to_string().contains("--nixpkgs"));
    }
}
