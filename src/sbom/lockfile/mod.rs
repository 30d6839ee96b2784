//! The app's own dependencies, from the lockfiles of its package managers:
//! one module per format, each turning a lockfile's bytes into packages
//! with purls. A lockfile kiln cannot read is never a reason to fail a
//! build: it gives a warning naming the file and line, and the SBOM is
//! written without it.

mod cargo;
mod composer;
mod gemfile;
mod gosum;
pub(super) mod npm;
mod pnpm;
mod poetry;
mod requirements;
mod uv;
mod yarn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{AppPackage, Checksum};

/// Biggest lockfile read: real ones are a few megabytes.
const MAX_LOCKFILE_BYTES: u64 = 64 << 20;

/// A lockfile's parser: its packages, or what is wrong with it.
type Parser = fn(&[u8]) -> Result<Vec<AppPackage>, Problem>;

/// The lockfiles read, by their name in the app folder.
const LOCKFILES: [(&str, Parser); 10] = [
    ("Cargo.lock", cargo::packages),
    ("Gemfile.lock", gemfile::packages),
    ("composer.lock", composer::packages),
    ("go.sum", gosum::packages),
    ("package-lock.json", npm::packages),
    ("pnpm-lock.yaml", pnpm::packages),
    ("poetry.lock", poetry::packages),
    ("requirements.txt", requirements::packages),
    ("uv.lock", uv::packages),
    ("yarn.lock", yarn::packages),
];

/// What is wrong with a lockfile: the line, when known, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the fault.
    pub line: Option<usize>,
    /// What is wrong, as a phrase after the file name.
    pub reason: String,
}

impl Problem {
    /// A fault on `line`.
    pub fn at(line: usize, reason: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            reason: reason.into(),
        }
    }

    /// A fault of the whole file, or somewhere the parser cannot say.
    pub fn whole(reason: impl Into<String>) -> Problem {
        Problem {
            line: None,
            reason: reason.into(),
        }
    }
}

impl From<String> for Problem {
    fn from(reason: String) -> Problem {
        Problem::whole(reason)
    }
}

impl From<&str> for Problem {
    fn from(reason: &str) -> Problem {
        Problem::whole(reason)
    }
}

/// A lockfile of the app that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {reason}; the SBOM leaves its packages out (fix the lockfile to list them)",
    path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct LockfileError {
    /// The lockfile.
    pub path: PathBuf,
    /// 1-based line of the fault, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

/// The app's dependencies and the lockfiles that could not be read.
#[derive(Debug, Default)]
pub struct AppDependencies {
    /// Every package the readable lockfiles name, ordered by purl, once.
    pub packages: Vec<AppPackage>,
    /// The lockfiles left out, and why.
    pub unreadable: Vec<LockfileError>,
}

/// The dependencies the lockfiles in `app_dir` name (see [`LOCKFILES`]).
pub fn app_packages(app_dir: &Path) -> AppDependencies {
    let mut found = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (name, parse) in LOCKFILES {
        let path = app_dir.join(name);
        match read(&path).and_then(|bytes| bytes.map(|b| parse(&b)).transpose()) {
            Ok(packages) => {
                for package in packages.into_iter().flatten() {
                    found.entry(package.purl.clone()).or_insert(package);
                }
            }
            Err(problem) => unreadable.push(LockfileError {
                path,
                line: problem.line,
                reason: problem.reason,
            }),
        }
    }
    AppDependencies {
        packages: found.into_values().collect(),
        unreadable,
    }
}

/// The bytes of `path`, `None` when there is no such file.
fn read(path: &Path) -> Result<Option<Vec<u8>>, Problem> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Problem::whole(e.to_string())),
        Ok(meta) if !meta.is_file() => Err(Problem::whole("is not a file")),
        Ok(meta) if meta.len() > MAX_LOCKFILE_BYTES => Err(Problem::whole(format!(
            "is {} bytes, more than the {MAX_LOCKFILE_BYTES} kiln reads",
            meta.len()
        ))),
        Ok(_) => std::fs::read(path)
            .map(Some)
            .map_err(|e| Problem::whole(e.to_string())),
    }
}

/// An app package of purl type `ecosystem`.
fn package(
    ecosystem: &'static str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    checksum: Option<Checksum>,
) -> AppPackage {
    let full = match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    };
    AppPackage {
        ecosystem,
        purl: super::purl::purl(ecosystem, namespace, name, Some(version)),
        name: full,
        version: version.to_string(),
        checksum,
    }
}

/// `packages` ordered by purl, each once.
fn unique(packages: impl IntoIterator<Item = AppPackage>) -> Vec<AppPackage> {
    let mut found = BTreeMap::new();
    for package in packages {
        found.entry(package.purl.clone()).or_insert(package);
    }
    found.into_values().collect()
}

/// `bytes` as text; a lockfile that is not UTF-8 is refused at the line
/// of its first bad byte.
fn text(bytes: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(bytes).map_err(|e| {
        Problem::at(
            line_of(bytes, e.valid_up_to()),
            "is not UTF-8 text".to_string(),
        )
    })
}

/// The 1-based line of byte `offset` of `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// The `[[package]]` tables of a TOML lockfile (Cargo.lock, poetry.lock,
/// uv.lock all list their packages so), each read as `P`; a parse error is
/// a problem at its line.
fn toml_packages<P: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Vec<P>, Problem> {
    #[derive(serde::Deserialize)]
    struct Lock<P> {
        #[serde(default = "Vec::new")]
        package: Vec<P>,
    }
    let lock: Lock<P> = toml::from_str(text(bytes)?).map_err(|error| {
        let reason = format!("is not valid TOML ({})", error.message());
        match error.span() {
            Some(span) => Problem::at(line_of(bytes, span.start), reason),
            None => Problem::whole(reason),
        }
    })?;
    Ok(lock.package)
}

/// `bytes` parsed as YAML, or the problem at its line.
fn yaml(bytes: &[u8]) -> Result<serde_yaml::Value, Problem> {
    check_flow_depth(bytes)?;
    serde_yaml::from_slice(bytes).map_err(|error| {
        let reason = format!("is not valid YAML ({error})");
        match error.location() {
            Some(location) => Problem::at(location.line(), reason),
            None => Problem::whole(reason),
        }
    })
}

/// Deepest nesting of YAML flow collections (`{`, `[`) a lockfile may
/// have; real ones nest two or three deep.
const MAX_FLOW_DEPTH: usize = 32;

/// Refuses YAML whose flow collections nest deeper than [`MAX_FLOW_DEPTH`].
/// serde_yaml stops at 128 levels, but only after its scanner has read the
/// whole document, which takes minutes on a few hundred kilobytes of `{"a":`
/// nesting; this pass is linear. It counts brackets outside quoted scalars
/// (a quote opens one only where a scalar can start), so odd brackets in
/// plain text can only make it stricter, never let deep nesting through.
fn check_flow_depth(bytes: &[u8]) -> Result<(), Problem> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut previous = b'\n';
    let mut escaped = false;
    let mut line = 1;
    for &byte in bytes {
        if byte == b'\n' {
            line += 1;
        }
        match quote {
            Some(b'"') if escaped => escaped = false,
            Some(b'"') if byte == b'\\' => escaped = true,
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None => match byte {
                b'"' | b'\'' if b" \t\n[{,:-".contains(&previous) => quote = Some(byte),
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(Problem::at(
                            line,
                            format!("nests more than {MAX_FLOW_DEPTH} levels deep"),
                        ));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        previous = byte;
    }
    Ok(())
}

/// A Python package name normalized as PEP 503 and the purl spec's
/// `pypi` type ask: lower case, each run of `-`, `_` and `.` one `-`.
fn pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if "-_.".contains(c) {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A `sha256:<hex>` (or `sha512:...`) hash as a checksum, when well formed.
fn prefixed_hash(text: &str) -> Option<Checksum> {
    let (algorithm, hex) = text.split_once(':')?;
    let algorithm = match algorithm {
        "sha256" => "SHA256",
        "sha384" => "SHA384",
        "sha512" => "SHA512",
        _ => return None,
    };
    hex_checksum(algorithm, hex)
}

/// `hex` as a checksum by `algorithm` (SPDX's name: `SHA256`), when it is
/// a whole digest of that algorithm; SBOM validators refuse anything else.
fn hex_checksum(algorithm: &str, hex: &str) -> Option<Checksum> {
    let bytes = match algorithm {
        "SHA1" => 20,
        "SHA256" => 32,
        "SHA384" => 48,
        "SHA512" => 64,
        _ => return None,
    };
    let whole = hex.len() == bytes * 2 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    whole.then(|| Checksum {
        algorithm: algorithm.to_string(),
        hex: hex.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_lockfile_is_named_with_its_line_and_left_out() {
        let dir = tempfile::tempdir().unwrap();
        assert!(app_packages(dir.path()).packages.is_empty());
        std::fs::write(dir.path().join("package-lock.json"), "{").unwrap();
        std::fs::write(dir.path().join("Cargo.lock"), "[[package]]\nname = 3\n").unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
        let found = app_packages(dir.path());
        let purls: Vec<&str> = found.packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(purls, ["pkg:pypi/six@1.16.0"]);
        let errors: Vec<String> = found.unreadable.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("Cargo.lock:2: "), "{errors:?}");
        assert!(errors[1].contains("package-lock.json"), "{errors:?}");
        assert!(errors[1].contains("the SBOM leaves"), "{errors:?}");
    }

    #[test]
    fn a_folder_named_like_a_lockfile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("go.sum")).unwrap();
        let found = app_packages(dir.path());
        assert!(found.unreadable[0].to_string().contains("not a file"));
    }

    #[test]
    fn python_names_are_normalized() {
        assert_eq!(pypi_name("Flask_SQL.alchemy"), "flask-sql-alchemy");
        assert_eq!(pypi_name("a__-.b"), "a-b");
    }

    #[test]
    fn only_whole_digests_are_checksums() {
        let sha256 = "Ab".repeat(32);
        assert_eq!(
            prefixed_hash(&format!("sha256:{sha256}")).unwrap().hex,
            "ab".repeat(32)
        );
        assert!(prefixed_hash("sha256:abc").is_none());
        assert!(prefixed_hash(&format!("md5:{sha256}")).is_none());
        assert!(hex_checksum("SHA512", &sha256).is_none());
        assert!(hex_checksum("SHA256", &"zz".repeat(32)).is_none());
    }

    #[test]
    fn deep_yaml_is_refused_before_it_is_parsed() {
        let deep = "{\"a\":".repeat(100_000);
        let err = yaml(deep.as_bytes()).unwrap_err();
        assert!(err.reason.contains("levels deep"), "{err:?}");
        let quoted = format!(
            "a: '{}'\nb: \"{}\\\"\"\nc: x[{{\n",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(yaml(quoted.as_bytes()).is_ok(), "{quoted}");
        let on_line_3 = format!("a: 1\nb: 2\nc: {}", "[".repeat(40));
        assert_eq!(yaml(on_line_3.as_bytes()).unwrap_err().line, Some(3));
    }

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of(b"a\nb\nc", 0), 1);
        assert_eq!(line_of(b"a\nb\nc", 2), 2);
        assert_eq!(line_of(b"a\nb\nc", 99), 3);
        let problem = text(b"ok\n\xff").unwrap_err();
        assert_eq!(problem.line, Some(2));
    }
}
