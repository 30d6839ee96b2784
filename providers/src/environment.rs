//! The build environment: `--env` values and the `NIXPACKS_*` settings in
//! them.

use crate::plan::Variables;

/// Variables given for the build, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    variables: Variables,
}

impl Environment {
    /// An environment holding exactly these variables.
    pub fn new(variables: Variables) -> Self {
        Self { variables }
    }

    /// Parses `--env` arguments: `KEY=VALUE`, or `KEY` to take the value
    /// from `lookup` (the caller's environment); a `KEY` not found there is
    /// left out, as upstream does.
    pub fn from_args<S: AsRef<str>>(args: &[S], lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut variables = Variables::new();
        for arg in args {
            let arg = arg.as_ref();
            match arg.split_once('=') {
                Some((name, value)) if !value.is_empty() => {
                    variables.insert(name.to_string(), value.to_string());
                }
                Some((name, _)) => {
                    if let Some(value) = lookup(name) {
                        variables.insert(name.to_string(), value);
                    }
                }
                None => {
                    if let Some(value) = lookup(arg) {
                        variables.insert(arg.to_string(), value);
                    }
                }
            }
        }
        Self { variables }
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables.get(name).map(String::as_str)
    }

    /// `NIXPACKS_<name>`, with newlines removed as upstream does.
    pub fn config(&self, name: &str) -> Option<String> {
        self.get(&format!("NIXPACKS_{name}"))
            .map(|v| v.replace('\n', ""))
    }

    /// Whether `NIXPACKS_<name>` is `1` or `true`.
    pub fn config_is_truthy(&self, name: &str) -> bool {
        matches!(self.config(name).as_deref(), Some("1" | "true"))
    }

    /// Sets a variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.variables.insert(name.into(), value.into());
    }

    /// All variables.
    pub fn variables(&self) -> &Variables {
        &self.variables
    }

    /// This environment with more variables laid over it.
    pub fn with(&self, more: &Variables) -> Self {
        let mut variables = self.variables.clone();
        variables.extend(more.clone());
        Self { variables }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_lookups_and_values_with_equals() {
        let env = Environment::from_args(
            &[
                "A=1",
                "FROM_HOST",
                "MISSING",
                "EQ=a=b",
                "NIXPACKS_X=line\nbreak",
            ],
            |name| (name == "FROM_HOST").then(|| "host".to_string()),
        );
        assert_eq!(env.get("A"), Some("1"));
        assert_eq!(env.get("FROM_HOST"), Some("host"));
        assert_eq!(env.get("MISSING"), None);
        assert_eq!(env.get("EQ"), Some("a=b"));
        assert_eq!(env.config("X").as_deref(), Some("linebreak"));
    }

    #[test]
    fn truthy_is_one_or_true_only() {
        let env = Environment::from_args(
            &["NIXPACKS_A=1", "NIXPACKS_B=true", "NIXPACKS_C=yes"],
            |_| None,
        );
        assert!(env.config_is_truthy("A"));
        assert!(env.config_is_truthy("B"));
        assert!(!env.config_is_truthy("C"));
        assert!(!env.config_is_truthy("D"));
    }
}
