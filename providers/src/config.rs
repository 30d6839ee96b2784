//! Config files (`nixpacks.toml`, `nixpacks.json`, `--json-plan`): parsed
//! into a plan, with errors at `file:line:column` and warnings for keys
//! Nixpacks does not know.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::plan::BuildPlan;

/// A config file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file (or `--json-plan`).
    pub file: String,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column of the problem.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A key in a config file that Nixpacks would ignore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: unknown key `{key}` is ignored{}", match .suggestion { Some(s) => format!("; did you mean `{s}`?"), None => String::new() })]
pub struct ConfigWarning {
    /// The file.
    pub file: String,
    /// Dotted path of the key, e.g. `phases.setup.nixPkg`.
    pub key: String,
    /// The closest known key at that place.
    pub suggestion: Option<String>,
}

/// The format of a config file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `.toml`
    Toml,
    /// `.json`
    Json,
}

const TOP_KEYS: &[&str] = &[
    "providers",
    "buildImage",
    "variables",
    "staticAssets",
    "phases",
    "start",
    "kiln",
];
const PHASE_KEYS: &[&str] = &[
    "name",
    "dependsOn",
    "nixPkgs",
    "nixPackages",
    "nixLibs",
    "nixLibraries",
    "nixOverlays",
    "nixpkgsArchive",
    "aptPkgs",
    "aptPackages",
    "cmds",
    "commands",
    "onlyIncludeFiles",
    "cacheDirectories",
    "paths",
    "envPaths",
];
const START_KEYS: &[&str] = &["cmd", "runImage", "onlyIncludeFiles", "user"];

/// Parses a config file's text. `file` names it in messages.
pub fn parse(
    text: &str,
    format: ConfigFormat,
    file: &str,
) -> Result<(BuildPlan, Vec<ConfigWarning>), ConfigError> {
    let mut plan: BuildPlan = from_text(text, format, file)?;
    let tree: Value = from_text(text, format, file)?;
    plan.name_phases();
    Ok((plan, unknown_keys(&tree, file)))
}

/// How kiln's build phases reach the network (`[kiln] network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildNetwork {
    /// The host's network, so builds can download dependencies.
    Host,
    /// No network at all.
    None,
}

/// The `[kiln]` table of a config file: kiln's own settings, which
/// Nixpacks does not have and which never enter the plan (so `kiln plan`
/// prints what `nixpacks plan` does). Unknown keys in it are errors, not
/// warnings: a mistyped lock-down must not pass unnoticed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KilnSettings {
    /// `network = "host" | "none"`; unset leaves the choice to the caller.
    pub network: Option<BuildNetwork>,
}

/// Parses the `[kiln]` table of a config file's text (empty when absent).
pub fn parse_kiln_settings(
    text: &str,
    format: ConfigFormat,
    file: &str,
) -> Result<KilnSettings, ConfigError> {
    #[derive(Deserialize)]
    struct WithKiln {
        #[serde(default)]
        kiln: KilnSettings,
    }
    Ok(from_text::<WithKiln>(text, format, file)?.kiln)
}

fn from_text<T: DeserializeOwned>(
    text: &str,
    format: ConfigFormat,
    file: &str,
) -> Result<T, ConfigError> {
    match format {
        ConfigFormat::Toml => from_toml(text, file),
        ConfigFormat::Json => from_json(text, file),
    }
}

fn from_toml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    let error = |e: toml::de::Error| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_and_column(text, span.start));
        ConfigError {
            file: file.into(),
            line,
            column,
            message: e.message().trim_end().replace('\n', "; "),
        }
    };
    toml::from_str(text).map_err(error)
}

fn from_json<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    let error = |e: serde_json::Error| ConfigError {
        file: file.into(),
        line: e.line().max(1),
        column: e.column().max(1),
        message: strip_json_position(&e.to_string()),
    };
    serde_json::from_str(text).map_err(error)
}

/// serde_json ends its messages with " at line L column C"; the position
/// is already at the front of ours.
fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn unknown_keys(tree: &Value, file: &str) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    let Value::Object(top) = tree else {
        return warnings;
    };
    check_keys(top.keys(), TOP_KEYS, "", file, &mut warnings);
    if let Some(Value::Object(phases)) = top.get("phases") {
        for (name, phase) in phases {
            if let Value::Object(phase) = phase {
                check_keys(
                    phase.keys(),
                    PHASE_KEYS,
                    &format!("phases.{name}."),
                    file,
                    &mut warnings,
                );
            }
        }
    }
    if let Some(Value::Object(start)) = top.get("start") {
        check_keys(start.keys(), START_KEYS, "start.", file, &mut warnings);
    }
    warnings
}

fn check_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    known: &[&str],
    prefix: &str,
    file: &str,
    warnings: &mut Vec<ConfigWarning>,
) {
    for key in keys.filter(|k| !known.contains(&k.as_str())) {
        warnings.push(ConfigWarning {
            file: file.into(),
            key: format!("{prefix}{key}"),
            suggestion: closest(key, known).map(|s| format!("{prefix}{s}")),
        });
    }
}

/// The known key most like `key`, when it is close enough to be a typo.
pub(crate) fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&key.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_config_becomes_a_plan_with_named_phases() {
        let (plan, warnings) = parse(
            "[phases.setup]\nnixPkgs = ['...', 'cowsay']\n[start]\ncmd = 'go'\n",
            ConfigFormat::Toml,
            "nixpacks.toml",
        )
        .unwrap();
        assert!(warnings.is_empty());
        let setup = plan.phase("setup").unwrap();
        assert_eq!(setup.name.as_deref(), Some("setup"));
        assert_eq!(setup.nix_pkgs.as_deref().unwrap(), ["...", "cowsay"]);
        assert_eq!(plan.start_phase.unwrap().cmd.as_deref(), Some("go"));
    }

    #[test]
    fn aliases_are_accepted() {
        let (plan, warnings) = parse(
            r#"{"phases": {"build": {"commands": ["make"], "aptPackages": ["git"]}}}"#,
            ConfigFormat::Json,
            "nixpacks.json",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let build = plan.phase("build").unwrap();
        assert_eq!(build.cmds.as_deref().unwrap(), ["make"]);
        assert_eq!(build.apt_pkgs.as_deref().unwrap(), ["git"]);
    }

    #[test]
    fn toml_syntax_error_names_file_line_and_column() {
        let err = parse(
            "[phases.setup]\nnixPkgs = [\"a\"\ncmds = 1\n",
            ConfigFormat::Toml,
            "nixpacks.toml",
        )
        .unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("nixpacks.toml", 3));
        assert!(err.to_string().starts_with("nixpacks.toml:3:"), "{err}");
    }

    #[test]
    fn toml_wrong_type_points_at_the_value() {
        let err = parse("[start]\ncmd = 5\n", ConfigFormat::Toml, "nixpacks.toml").unwrap_err();
        assert_eq!((err.line, err.column), (2, 7));
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn json_error_names_file_line_and_column() {
        let err = parse(
            "{\n  \"phases\": {\n    \"setup\": {\"nixPkgs\": \"go\"}\n  }\n}",
            ConfigFormat::Json,
            "cfg.json",
        )
        .unwrap_err();
        assert_eq!((err.line, err.file.as_str()), (3, "cfg.json"));
        assert!(err.to_string().starts_with("cfg.json:3:"), "{err}");
        assert!(!err.message.contains("at line"), "{}", err.message);
    }

    #[test]
    fn unknown_keys_warn_with_the_closest_known_key() {
        let (_, warnings) = parse(
            "varibles = {}\n[phases.setup]\nnixPkg = ['a']\n[start]\nusr = 'x'\nzzzz = 1\n",
            ConfigFormat::Toml,
            "nixpacks.toml",
        )
        .unwrap();
        let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "nixpacks.toml: unknown key `varibles` is ignored; did you mean `variables`?",
                "nixpacks.toml: unknown key `phases.setup.nixPkg` is ignored; did you mean `phases.setup.nixPkgs`?",
                "nixpacks.toml: unknown key `start.usr` is ignored; did you mean `start.user`?",
                "nixpacks.toml: unknown key `start.zzzz` is ignored",
            ]
        );
    }

    #[test]
    fn the_kiln_table_is_read_apart_from_the_plan() {
        let text = "[start]\ncmd = 'go'\n[kiln]\nnetwork = 'none'\n";
        let (plan, warnings) = parse(text, ConfigFormat::Toml, "nixpacks.toml").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (without, _) = parse("[start]\ncmd = 'go'\n", ConfigFormat::Toml, "f").unwrap();
        assert_eq!(plan, without);
        let settings = parse_kiln_settings(text, ConfigFormat::Toml, "nixpacks.toml").unwrap();
        assert_eq!(settings.network, Some(BuildNetwork::None));
        let json = parse_kiln_settings(r#"{"kiln": {"network": "host"}}"#, ConfigFormat::Json, "f");
        assert_eq!(json.unwrap().network, Some(BuildNetwork::Host));
        let none = parse_kiln_settings("", ConfigFormat::Toml, "f").unwrap();
        assert_eq!(none, KilnSettings::default());
        for bad in ["[kiln]\nnetwork = 'lan'\n", "[kiln]\nnetwrok = 'none'\n"] {
            let err = parse_kiln_settings(bad, ConfigFormat::Toml, "nixpacks.toml").unwrap_err();
            assert_eq!(err.line, 2, "{err}");
        }
    }

    #[test]
    fn error_position_is_safe_on_multibyte_text() {
        assert_eq!(line_and_column("é\nü=", 5), (2, 2));
        assert_eq!(line_and_column("é\nü=", 4), (2, 1));
        assert_eq!(line_and_column("é", 1), (1, 1));
    }
}
