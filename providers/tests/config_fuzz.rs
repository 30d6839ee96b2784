//! Fuzz-style checks, bounded by proptest's case count: the config parser
//! and the whole planner never panic, whatever the bytes. Every input either
//! parses or gives an error that names the file with a line and column.

use kiln_providers::config::{parse, ConfigFormat};
use kiln_providers::{generate_plan, GeneratePlanOptions};
use proptest::prelude::*;

/// Pieces of real config files, so random input reaches deep into the parser.
fn config_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[phases.setup]\n".to_string()),
        Just("[phases.build]\n".to_string()),
        Just("[start]\n".to_string()),
        Just("[variables]\n".to_string()),
        Just("nixPkgs = [\"...\", \"go\"]\n".to_string()),
        Just("cmds = [\"make\"]\n".to_string()),
        Just("dependsOn = [\"build\"]\n".to_string()),
        Just("providers = [\"...\", \"node\"]\n".to_string()),
        Just("cmd = \"run\"\n".to_string()),
        Just("cmd = 5\n".to_string()),
        Just("{\"phases\": {\"setup\": {\"nixPkgs\": [".to_string()),
        Just("]}}, \"start\": {\"cmd\": null}}".to_string()),
        "[a-zA-Z.=\\[\\]{}\"', \n\\\\é0-9]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn config_parser_never_panics_on_text(text in any::<String>()) {
        for format in [ConfigFormat::Toml, ConfigFormat::Json] {
            if let Err(err) = parse(&text, format, "nixpacks.cfg") {
                prop_assert!(err.line >= 1 && err.column >= 1);
                prop_assert!(err.to_string().starts_with("nixpacks.cfg:"));
            }
        }
    }

    #[test]
    fn config_parser_never_panics_on_config_like_text(parts in prop::collection::vec(config_fragment(), 0..12)) {
        let text = parts.concat();
        for format in [ConfigFormat::Toml, ConfigFormat::Json] {
            if let Err(err) = parse(&text, format, "nixpacks.cfg") {
                let lines = text.split('\n').count();
                prop_assert!(err.line <= lines.max(1), "line {} of {lines}: {err}", err.line);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Hostile app files (manifests, lock files, Procfile, config) make
    /// planning fail with an error or succeed; they never panic it.
    #[test]
    fn planner_never_panics_on_hostile_app_files(
        file in prop::sample::select(vec![
            "package.json", "nixpacks.toml", "nixpacks.json", "Procfile", "Staticfile",
            "Cargo.toml", "go.mod", "composer.json", "Gemfile", ".nvmrc", "deno.jsonc",
            "pyproject.toml", "requirements.txt", ".python-version", "turbo.json",
        ]),
        marker in prop::sample::select(vec![
            "package.json", "requirements.txt", "Cargo.toml", "go.mod", "Gemfile", "composer.json",
            "index.html", "deno.json", "pom.xml",
        ]),
        body in prop::collection::vec(config_fragment(), 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(marker), "{}").unwrap();
        std::fs::write(dir.path().join(file), body.concat()).unwrap();
        let _ = generate_plan(dir.path(), &GeneratePlanOptions::default());
    }
}
