//! `requirements.txt`: the lines that pin a package with `==`, which are
//! what pip installs exactly. Written here because pip's format has no
//! maintained Rust parser, and kiln needs only its pinned lines: options
//! (`-r`, `--index-url`), ranges and URLs are no pins and are skipped.

use super::{package, prefixed_hash, pypi_name, Problem};
use crate::sbom::AppPackage;

/// The packages `lock` pins, each with the strongest `--hash` its line
/// gives, if any.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let text = super::text(lock)?;
    let mut found = Vec::new();
    for (number, line) in logical_lines(text) {
        let (requirement, hashes) = split_hashes(&line);
        let requirement = requirement.split(';').next().unwrap_or_default().trim();
        if requirement.is_empty() || requirement.starts_with('-') {
            continue;
        }
        let Some((name, version)) = requirement.split_once("==") else {
            continue;
        };
        // `===` is arbitrary equality and `==1.*` a range: neither names
        // one release.
        let version = version.trim();
        if version.starts_with('=') || version.contains('*') || version.is_empty() {
            continue;
        }
        let name = name.split('[').next().unwrap_or_default().trim();
        if !valid_name(name) {
            return Err(Problem::at(
                number,
                format!("pins `{name}`, which is no Python package name"),
            ));
        }
        if version.contains(char::is_whitespace) || version.contains(',') {
            // `a==1.0,<2` or `a==1 b`: not one exact pin.
            continue;
        }
        let checksum = hashes
            .iter()
            .filter_map(|h| prefixed_hash(h))
            .max_by_key(|c| c.hex.len());
        found.push(package("pypi", None, &pypi_name(name), version, checksum));
    }
    Ok(super::unique(found))
}

/// The lines of `text` with comments cut and `\` continuations joined,
/// each with the number of its first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        // A comment starts at `#` at the line start or after whitespace;
        // a `#` inside a URL fragment is not one.
        let cut = raw
            .char_indices()
            .find(|&(i, c)| c == '#' && (i == 0 || raw[..i].ends_with(char::is_whitespace)))
            .map_or(raw, |(i, _)| &raw[..i]);
        let (body, continues) = match cut.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (cut, false),
        };
        let entry = current.get_or_insert_with(|| (index + 1, String::new()));
        entry.1.push_str(body);
        entry.1.push(' ');
        if !continues {
            lines.extend(current.take());
        }
    }
    lines.extend(current);
    lines
}

/// The requirement part of `line` and the values of its `--hash` options.
fn split_hashes(line: &str) -> (String, Vec<String>) {
    let mut requirement = Vec::new();
    let mut hashes = Vec::new();
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if let Some(value) = word.strip_prefix("--hash=") {
            hashes.push(value.to_string());
        } else if word == "--hash" {
            hashes.extend(words.next().map(str::to_string));
        } else {
            requirement.push(word);
        }
    }
    (requirement.join(" "), hashes)
}

/// PEP 508's rule for a distribution name: letters, digits, `-`, `_` and
/// `.`, starting and ending with a letter or digit.
fn valid_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    #[test]
    fn lists_exact_pins_only() {
        let sha = "ab".repeat(32);
        let lock = format!(
            "# pinned\n-r other.txt\n--index-url https://x/simple\nsix==1.16.0\nFlask[async] == 3.0.0 ; python_version > '3'  # web\n\
             requests>=2\nexact===1.0\nwild==1.*\nrange==1.0,<2\n\
             hashed==2.0 \\\n    --hash=sha256:{sha}\ngit+https://h/r.git#egg=x\n"
        );
        let found = packages(lock.as_bytes()).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:pypi/flask@3.0.0",
                "pkg:pypi/hashed@2.0",
                "pkg:pypi/six@1.16.0"
            ]
        );
        assert_eq!(found[1].checksum.as_ref().unwrap().hex, sha);
    }

    #[test]
    fn versions_with_purl_special_characters_are_encoded() {
        let found = packages(b"a==1.0+local/x@y?z\n").unwrap();
        assert_eq!(found[0].purl, "pkg:pypi/a@1.0+local%2Fx%40y%3Fz");
    }

    #[test]
    fn hostile_lines_are_refused_with_their_number() {
        let bad = b"six==1.0\n\nbad name!==1.0\n";
        let err = packages(bad).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.reason.contains("bad name!"), "{err:?}");
        assert!(survives(packages, &[bad, b"==1.0\n", b"\\\n\\\n\\"]) >= 3);
    }
}
