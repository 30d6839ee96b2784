//! The environment of a phase's commands, as upstream Nixpacks sets it.

/// Where programs are looked up after the phase's own paths and the profile.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parts a phase's environment is made of.
#[derive(Debug, Clone, Default)]
pub struct PhaseEnvironment<'a> {
    /// The plan's `variables`.
    pub variables: &'a [(String, String)],
    /// `--env` values; they win over `variables`.
    pub overrides: &'a [(String, String)],
    /// The phase's `paths`, searched first.
    pub paths: &'a [String],
    /// `bin` folders of the packages' profile (or of each store path).
    pub profile: &'a [String],
    /// Library folders of the phase's `nixLibs`.
    pub libraries: &'a [String],
    /// The value of `NIXPACKS_METADATA`, when the plan has one.
    pub metadata: Option<&'a str>,
}

/// The whole environment: `HOME=/root`, `PATH` = paths, profile, defaults;
/// `LD_LIBRARY_PATH` from the libraries; `NIXPACKS_METADATA`; then the
/// variables and the overrides, later ones replacing earlier ones. Sorted by
/// name so the same inputs give the same environment.
pub fn phase_environment(parts: &PhaseEnvironment<'_>) -> Vec<(String, String)> {
    let mut path: Vec<&str> = parts.paths.iter().map(String::as_str).collect();
    path.extend(parts.profile.iter().map(String::as_str));
    path.push(DEFAULT_PATH);
    let mut env = std::collections::BTreeMap::new();
    env.insert("HOME".to_string(), "/root".to_string());
    env.insert("PATH".to_string(), path.join(":"));
    if !parts.libraries.is_empty() {
        env.insert("LD_LIBRARY_PATH".to_string(), parts.libraries.join(":"));
    }
    if let Some(metadata) = parts.metadata {
        env.insert("NIXPACKS_METADATA".to_string(), metadata.to_string());
    }
    for (key, value) in parts.variables.iter().chain(parts.overrides) {
        env.insert(key.clone(), value.clone());
    }
    env.into_iter().collect()
}

/// Adds each of `defaults` whose name `env` does not set already (the
/// value the plan or `--env` gave wins), keeping `env` sorted by name.
pub fn add_unset(
    env: &mut Vec<(String, String)>,
    defaults: impl IntoIterator<Item = (String, String)>,
) {
    for (name, value) in defaults {
        if env.iter().all(|(set, _)| *set != name) {
            env.push((name, value));
        }
    }
    env.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_order_and_override_precedence() {
        let variables = [("NODE_ENV".to_string(), "production".to_string())];
        let overrides = [("NODE_ENV".to_string(), "test".to_string())];
        let paths = ["/app/node_modules/.bin".to_string()];
        let profile = ["/nix/store/abc-node/bin".to_string()];
        let libraries = ["/nix/store/def-zlib/lib".to_string()];
        let env = phase_environment(&PhaseEnvironment {
            variables: &variables,
            overrides: &overrides,
            paths: &paths,
            profile: &profile,
            libraries: &libraries,
            metadata: Some("node"),
        });
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(
            get("PATH"),
            Some(format!("/app/node_modules/.bin:/nix/store/abc-node/bin:{DEFAULT_PATH}").as_str())
        );
        assert_eq!(get("NODE_ENV"), Some("test"));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(get("LD_LIBRARY_PATH"), Some("/nix/store/def-zlib/lib"));
        assert_eq!(get("NIXPACKS_METADATA"), Some("node"));
    }

    #[test]
    fn defaults_fill_only_unset_names_and_keep_the_order() {
        let mut env = vec![
            ("HOME".to_string(), "/root".to_string()),
            ("PIP_CERT".to_string(), "/mine".to_string()),
        ];
        add_unset(
            &mut env,
            [
                ("PIP_CERT".to_string(), "/theirs".to_string()),
                ("AB".to_string(), "1".to_string()),
            ],
        );
        assert_eq!(
            env,
            vec![
                ("AB".to_string(), "1".to_string()),
                ("HOME".to_string(), "/root".to_string()),
                ("PIP_CERT".to_string(), "/mine".to_string()),
            ]
        );
    }

    #[test]
    fn no_libraries_means_no_library_path() {
        let env = phase_environment(&PhaseEnvironment::default());
        assert!(env.iter().all(|(k, _)| k != "LD_LIBRARY_PATH"));
    }
}
