//! Evaluating package names with the real Nix evaluator, in the sandbox:
//! `nix-instantiate --eval --strict --json` of an expression like the one
//! upstream Nixpacks generates (import nixpkgs, apply the overlays),
//! returning each package's `outPath` and `drvPath`. A name is an attribute
//! path (`stdenv.cc.cc.lib`) or, as upstream's plans write for PHP and
//! Rust, a parenthesised Nix expression over the package set
//! (`(php81.withExtensions (pe: pe.enabled))`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::lock::{LockEntry, LockedPackage};
use super::sandboxed::{self, EvaluationFiles, NixEvaluator, EXPRESSIONS_INSIDE, NIXPKGS_INSIDE};
use super::ResolveError;

/// Where nixpkgs comes from for an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NixpkgsSource {
    /// A nixpkgs commit's archive, by URL (`{base}/{commit}.tar.gz`). kiln
    /// downloads archives itself (`resolve::archive`) and evaluates the
    /// unpacked folder; this names the archive in cache keys and messages.
    Archive(String),
    /// A local nixpkgs folder (`--nixpkgs`, `KILN_NIXPKGS`).
    Folder(PathBuf),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Evaluated {
    system: String,
    packages: BTreeMap<String, EvaluatedPackage>,
}

/// Named `out`/`drv` rather than `outPath`/`drvPath`: Nix's JSON output
/// turns any set with an `outPath` into that string.
#[derive(Deserialize)]
struct EvaluatedPackage {
    out: String,
    drv: Option<String>,
}

/// Evaluates `attributes` with `evaluator`, in the sandbox, against the
/// nixpkgs folder of `source` and the local `overlays`; the entry is
/// recorded under `archive`. Scratch folders go under `work`.
pub fn evaluate(
    evaluator: &NixEvaluator,
    work: &Path,
    source: &NixpkgsSource,
    archive: &str,
    overlays: &[String],
    attributes: &[String],
) -> Result<LockEntry, ResolveError> {
    let failed = |message: String| ResolveError::Evaluation {
        source_name: describe(source),
        message,
    };
    let NixpkgsSource::Folder(nixpkgs) = source else {
        return Err(failed(
            "kiln evaluates a nixpkgs folder: fetch the archive first".into(),
        ));
    };
    let local_overlays = overlays
        .iter()
        .map(|overlay| match overlay.starts_with('/') {
            true => Ok(PathBuf::from(overlay)),
            false => Err(failed(format!(
                "overlay {overlay} must be fetched before the evaluation, which has no network"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let package_expressions = package_expressions(attributes);
    let files = EvaluationFiles {
        nixpkgs,
        overlays: &local_overlays,
        expressions: &package_expressions,
    };
    let inside = NixpkgsSource::Folder(PathBuf::from(NIXPKGS_INSIDE));
    let expression = expression(&inside, &files.overlays_inside(), attributes)?;
    tracing::debug!(%expression, "evaluating");
    let json = sandboxed::run(evaluator, &files, &expression, work)
        .map_err(|message| failed(name_expression_files(&message, attributes)))?;
    let evaluated: Evaluated = serde_json::from_str(&json)
        .map_err(|err| failed(format!("nix-instantiate printed unexpected JSON: {err}")))?;
    let mut packages = BTreeMap::new();
    for (attribute, package) in evaluated.packages {
        if kiln_store::parse_store_path(&package.out).is_err() {
            return Err(failed(format!(
                "{attribute} evaluated to `{}`, not a store path",
                package.out
            )));
        }
        packages.insert(
            attribute,
            LockedPackage {
                out_path: package.out,
                drv_path: package.drv,
            },
        );
    }
    Ok(LockEntry {
        nixpkgs_archive: archive.to_string(),
        overlays: overlays.to_vec(),
        system: evaluated.system,
        packages,
        nixpkgs_sha256: None,
        overlay_sha256: BTreeMap::new(),
    })
}

fn describe(source: &NixpkgsSource) -> String {
    match source {
        NixpkgsSource::Archive(url) => format!("nixpkgs archive {url}"),
        NixpkgsSource::Folder(dir) => format!("nixpkgs folder {}", dir.display()),
    }
}

/// The Nix expression evaluating `attributes` to their paths.
pub fn expression(
    source: &NixpkgsSource,
    overlays: &[String],
    attributes: &[String],
) -> Result<String, ResolveError> {
    let nixpkgs = match source {
        // What upstream Nixpacks writes: Nix downloads the archive.
        NixpkgsSource::Archive(url) => format!("(fetchTarball {})", nix_string(url)),
        NixpkgsSource::Folder(dir) => {
            let dir = dir.to_str().ok_or_else(|| ResolveError::BadName {
                what: "nixpkgs folder",
                name: dir.display().to_string(),
            })?;
            format!("(/. + {})", nix_string(dir))
        }
    };
    let overlays: Vec<String> = overlays
        .iter()
        .map(|overlay| {
            if overlay.starts_with('/') {
                format!("(import (/. + {}))", nix_string(overlay))
            } else {
                format!("(import (builtins.fetchTarball {}))", nix_string(overlay))
            }
        })
        .collect();
    let mut fields = Vec::with_capacity(attributes.len());
    let mut expressions = 0;
    for attribute in attributes {
        let package = match is_package_expression(attribute) {
            true => {
                expressions += 1;
                let file = expression_file(expressions - 1);
                format!("import (/. + {}) pkgs", nix_string(&file))
            }
            false => format!("pkgs.{}", attribute_selector(attribute)?),
        };
        fields.push(format!(
            "{} = let p = {package}; in {{ out = p.outPath; drv = p.drvPath or null; }};",
            nix_string(attribute)
        ));
    }
    Ok(format!(
        "let pkgs = import {nixpkgs} {{ overlays = [ {} ]; }}; in \
         {{ system = builtins.currentSystem; packages = {{ {} }}; }}",
        overlays.join(" "),
        fields.join(" ")
    ))
}

/// Whether a package name is a Nix expression rather than an attribute
/// path: upstream's plans parenthesise those, and Nixpacks pastes every
/// name into a `with pkgs;` list, where only a parenthesised expression is
/// one element.
pub(super) fn is_package_expression(name: &str) -> bool {
    name.starts_with('(') && name.ends_with(')')
}

/// The files of the package expressions among `names`, in order: each is a
/// function of the package set, in a file of its own so that no text of a
/// plan can reach past its own expression into the rest of the evaluation
/// (a file holds exactly one expression, or Nix refuses it). What it may
/// do inside is bounded by the sandbox, as an overlay's code is.
fn package_expressions(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|name| is_package_expression(name))
        .map(|name| format!("pkgs: with pkgs;\n{name}\n"))
        .collect()
}

/// Where the `index`th package expression's file is inside the sandbox.
fn expression_file(index: usize) -> String {
    format!("{EXPRESSIONS_INSIDE}/{index}.nix")
}

/// Nix's message with each package expression's file named by the
/// expression itself, which is what the user wrote.
fn name_expression_files(message: &str, names: &[String]) -> String {
    let expressions = names.iter().filter(|name| is_package_expression(name));
    let mut message = message.to_string();
    for (index, name) in expressions.enumerate() {
        message = message.replace(
            &expression_file(index),
            &format!("the package expression `{name}`"),
        );
    }
    message
}

/// `"a"."b"` for `a.b`, refusing names that are not Nix attribute paths, so
/// a plan can never inject Nix code.
fn attribute_selector(attribute: &str) -> Result<String, ResolveError> {
    let segments: Vec<&str> = attribute.split('.').collect();
    let valid = segments.iter().all(|s| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
    });
    if !valid {
        return Err(ResolveError::BadName {
            what: "Nix attribute",
            name: attribute.to_string(),
        });
    }
    Ok(segments
        .iter()
        .map(|s| nix_string(s))
        .collect::<Vec<_>>()
        .join("."))
}

/// A Nix string literal holding `text` verbatim.
fn nix_string(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_become_quoted_selectors() {
        assert_eq!(
            attribute_selector("stdenv.cc.cc.lib").unwrap(),
            r#""stdenv"."cc"."cc"."lib""#
        );
        assert_eq!(attribute_selector("npm-8_x").unwrap(), r#""npm-8_x""#);
    }

    #[test]
    fn names_that_could_inject_nix_are_refused() {
        for bad in ["a; b", "${x}", "a..b", "", "\"", "1abc", "a b"] {
            let err = attribute_selector(bad).unwrap_err().to_string();
            assert!(err.contains("Nix attribute"), "{bad}: {err}");
        }
        let text = expression(&NixpkgsSource::Archive("x\"; y".into()), &[], &[]).unwrap();
        assert!(text.contains(r#"(fetchTarball "x\"; y")"#), "{text}");
    }

    #[test]
    fn package_expressions_go_to_files_and_are_named_in_errors() {
        let names = [
            "nodejs_18".to_string(),
            "(php81.withExtensions (pe: pe.enabled))".to_string(),
            "(rust-bin.stable.latest.default)".to_string(),
        ];
        let text = expression(&NixpkgsSource::Folder("/nixpkgs".into()), &[], &names).unwrap();
        // The expression's text appears only as the name's string literal.
        let field = r#""(php81.withExtensions (pe: pe.enabled))" = let p = import (/. + "/expressions/0.nix") pkgs;"#;
        assert!(text.contains(field), "{text}");
        assert_eq!(text.matches("withExtensions").count(), 1, "{text}");
        assert!(
            text.contains(r#"import (/. + "/expressions/1.nix") pkgs"#),
            "{text}"
        );
        let files = package_expressions(&names);
        assert_eq!(
            files,
            [
                "pkgs: with pkgs;\n(php81.withExtensions (pe: pe.enabled))\n",
                "pkgs: with pkgs;\n(rust-bin.stable.latest.default)\n"
            ]
        );
        let message = name_expression_files("error: at /expressions/1.nix:2:1:", &names);
        assert_eq!(
            message,
            "error: at the package expression `(rust-bin.stable.latest.default)`:2:1:"
        );
    }

    #[test]
    fn only_whole_parenthesised_names_are_expressions() {
        for bad in ["(a) b", "a (b)", "(a", "a)"] {
            let err = expression(&NixpkgsSource::Folder("/n".into()), &[], &[bad.into()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("Nix attribute"), "{bad}: {err}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(nix_string(r#"a"b\c${d}"#), r#""a\"b\\c\${d}""#);
    }

    #[test]
    fn expression_imports_the_archive_with_overlays_like_upstream() {
        let text = expression(
            &NixpkgsSource::Archive(
                "https://github.com/NixOS/nixpkgs/archive/5148520bfab61f99fd25fb9ff7bfbb50dad3c9db.tar.gz"
                    .into(),
            ),
            &["https://example.invalid/overlay.tar.gz".to_string()],
            &["nodejs_18".to_string()],
        )
        .unwrap();
        assert!(text.contains(
            "import (fetchTarball \"https://github.com/NixOS/nixpkgs/archive/5148520bfab61f99fd25fb9ff7bfbb50dad3c9db.tar.gz\")"
        ));
        assert!(text.contains(
            "overlays = [ (import (builtins.fetchTarball \"https://example.invalid/overlay.tar.gz\")) ]"
        ));
        assert!(text.contains("\"nodejs_18\" = let p = pkgs.\"nodejs_18\";"));
    }
}
