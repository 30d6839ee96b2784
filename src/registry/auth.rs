//! Finding credentials for a registry, in the order users expect from
//! podman, skopeo and docker: explicit flags or environment, then
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), then
//! anonymous. Secrets never reach a log: [`Credentials`] redacts itself.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::RegistryError;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token; never printed.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the credentials kiln used came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--registry-username`/`--registry-password` or their environment.
    Explicit,
    /// An `auths` entry of an auth file.
    AuthFile(PathBuf),
    /// A `docker-credential-<helper>` named in an auth file.
    Helper { helper: String, config: PathBuf },
    /// No credentials found anywhere.
    Anonymous,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Explicit => f.write_str(
                "--registry-username/--registry-password (or KILN_REGISTRY_USERNAME/KILN_REGISTRY_PASSWORD)",
            ),
            CredentialSource::AuthFile(path) => write!(f, "auth file {}", path.display()),
            CredentialSource::Helper { helper, config } => write!(
                f,
                "credential helper docker-credential-{helper} (named in {})",
                config.display()
            ),
            CredentialSource::Anonymous => {
                f.write_str("none (anonymous: no flags, auth file or docker config entry)")
            }
        }
    }
}

/// The environment credential lookup reads, captured so tests can point it
/// at their own files without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$DOCKER_CONFIG`.
    pub docker_config: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$PATH`, where `docker-credential-*` helpers are found.
    pub path: Option<std::ffi::OsString>,
}

impl AuthEnv {
    /// Reads the variables from this process's environment.
    pub fn from_process() -> AuthEnv {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        AuthEnv {
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME"),
            path: std::env::var_os("PATH"),
        }
    }

    /// The auth files to read, in order of precedence.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        files.extend(self.registry_auth_file.clone());
        if let Some(dir) = &self.xdg_runtime_dir {
            files.push(dir.join("containers/auth.json"));
        }
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => files.push(dir.join("config.json")),
            (None, Some(home)) => files.push(home.join(".docker/config.json")),
            (None, None) => {}
        }
        files
    }
}

/// Credentials for `registry` (`host[:port]`) and where they came from.
pub(crate) fn resolve(
    registry: &str,
    explicit: Option<&Credentials>,
    env: &AuthEnv,
) -> Result<(RegistryAuth, CredentialSource), RegistryError> {
    if let Some(c) = explicit {
        return Ok((basic(c), CredentialSource::Explicit));
    }
    for file in env.files() {
        let text = match std::fs::read(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(RegistryError::io("could not read auth file", &file, e)),
        };
        if let Some(found) = lookup_in_file(registry, &file, &text, env)? {
            return Ok(found);
        }
    }
    Ok((RegistryAuth::Anonymous, CredentialSource::Anonymous))
}

fn basic(c: &Credentials) -> RegistryAuth {
    RegistryAuth::Basic(c.username.clone(), c.password.clone())
}

/// The parts of docker's `config.json` and containers' `auth.json` kiln reads.
#[derive(Debug, Default)]
struct AuthFile {
    auths: BTreeMap<String, AuthEntry>,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Parses an auth file by hand rather than with serde's derive, whose
/// type errors quote the offending value: in an auth file that value may
/// be a password. Errors name the file and the key, never the value.
fn parse_auth_file(text: &[u8], file: &Path) -> Result<AuthFile, RegistryError> {
    let bad = |reason: String| RegistryError::AuthFile {
        path: file.to_path_buf(),
        reason,
    };
    // serde_json's syntax errors give a position, not the text there.
    let value: Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let top = object(&value, "the top level").map_err(&bad)?;
    let mut parsed = AuthFile::default();
    if let Some(auths) = present(top.get("auths")) {
        for (registry, entry) in object(auths, "auths").map_err(&bad)? {
            let key = format!("auths.{registry}");
            let fields = object(entry, &key).map_err(&bad)?;
            let field = |name: &str| string(fields.get(name), &format!("{key}.{name}"));
            let entry = AuthEntry {
                auth: field("auth").map_err(&bad)?,
                username: field("username").map_err(&bad)?,
                password: field("password").map_err(&bad)?,
            };
            parsed.auths.insert(registry.clone(), entry);
        }
    }
    if let Some(helpers) = present(top.get("credHelpers")) {
        for (registry, helper) in object(helpers, "credHelpers").map_err(&bad)? {
            let key = format!("credHelpers.{registry}");
            if let Some(helper) = string(Some(helper), &key).map_err(&bad)? {
                parsed.cred_helpers.insert(registry.clone(), helper);
            }
        }
    }
    parsed.creds_store = string(top.get("credsStore"), "credsStore").map_err(&bad)?;
    Ok(parsed)
}

/// `value` unless it is missing or `null`, which count as absent.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{key} is not a JSON object (its value is not shown)"))
}

fn string(value: Option<&Value>, key: &str) -> Result<Option<String>, String> {
    match present(value) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("`{key}` is not a string (its value is not shown)")),
    }
}

/// Looks `registry` up in one auth file: its `credHelpers` entry, then its
/// `auths` entry, then its `credsStore`.
fn lookup_in_file(
    registry: &str,
    file: &Path,
    text: &[u8],
    env: &AuthEnv,
) -> Result<Option<(RegistryAuth, CredentialSource)>, RegistryError> {
    let parsed = parse_auth_file(text, file)?;
    if let Some(helper) = parsed
        .cred_helpers
        .iter()
        .find(|(key, _)| same_registry(key, registry))
        .map(|(_, helper)| helper)
    {
        return run_helper(helper, registry, file, env);
    }
    if let Some((_, entry)) = parsed
        .auths
        .iter()
        .find(|(key, _)| same_registry(key, registry))
    {
        if let Some(c) = decode_entry(entry, registry, file)? {
            return Ok(Some((
                basic(&c),
                CredentialSource::AuthFile(file.to_path_buf()),
            )));
        }
    }
    match &parsed.creds_store {
        Some(helper) if !helper.is_empty() => run_helper(helper, registry, file, env),
        _ => Ok(None),
    }
}

/// Whether an auth file key (`host`, `https://host/v1/`, ...) names `registry`.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    canonical_host(host) == canonical_host(registry)
}

/// Docker Hub answers to several names; auth files use any of them.
fn canonical_host(host: &str) -> &str {
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    }
}

fn decode_entry(
    entry: &AuthEntry,
    registry: &str,
    file: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    let bad = |reason: String| RegistryError::AuthFile {
        path: file.to_path_buf(),
        reason,
    };
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad(format!("the `auth` of {registry} is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("the `auth` of {registry} is not UTF-8")))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("the `auth` of {registry} is not `user:password`")))?;
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) => Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        })),
        _ => Ok(None),
    }
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the registry on stdin, as
/// docker does. "Not found" from the helper means: keep looking.
fn run_helper(
    helper: &str,
    registry: &str,
    config: &Path,
    env: &AuthEnv,
) -> Result<Option<(RegistryAuth, CredentialSource)>, RegistryError> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        config: config.to_path_buf(),
        registry: registry.to_string(),
        reason,
    };
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    if let Some(path) = &env.path {
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "could not start {program} ({e}); install it or remove it from the config"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input closes the pipe:
        // its exit status, checked below, says more than the broken pipe.
        match stdin.write_all(registry.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(fail(format!("could not write to it: {e}")));
            }
            _ => {}
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("could not wait for it: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        // A helper may print the secret (or part of it) before failing.
        return Err(fail(format!(
            "it exited with {} (its output is withheld: it may hold secrets); run `{program} get` by hand to see it",
            output.status
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| fail("it did not print {\"Username\", \"Secret\"} JSON".to_string()))?;
    let credentials = Credentials {
        username: answer.username,
        password: answer.secret,
    };
    Ok(Some((
        basic(&credentials),
        CredentialSource::Helper {
            helper: helper.to_string(),
            config: config.to_path_buf(),
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(dir: &Path) -> AuthEnv {
        AuthEnv {
            home: Some(dir.join("home")),
            path: std::env::var_os("PATH"),
            ..AuthEnv::default()
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn explicit_credentials_win_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with(dir.path());
        write(
            &dir.path().join("home/.docker/config.json"),
            &format!(
                r#"{{"auths":{{"r:5000":{{"auth":"{}"}}}}}}"#,
                b64("file:pw")
            ),
        );
        let explicit = Credentials {
            username: "flag".into(),
            password: "pw".into(),
        };
        let (auth, source) = resolve("r:5000", Some(&explicit), &env).unwrap();
        assert_eq!(auth, RegistryAuth::Basic("flag".into(), "pw".into()));
        assert_eq!(source, CredentialSource::Explicit);
    }

    #[test]
    fn registry_auth_file_comes_before_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_with(dir.path());
        let auth_file = dir.path().join("auth.json");
        env.registry_auth_file = Some(auth_file.clone());
        write(
            &auth_file,
            &format!(
                r#"{{"auths":{{"r:5000":{{"auth":"{}"}}}}}}"#,
                b64("first:a")
            ),
        );
        write(
            &dir.path().join("home/.docker/config.json"),
            &format!(
                r#"{{"auths":{{"r:5000":{{"auth":"{}"}}}}}}"#,
                b64("second:b")
            ),
        );
        let (auth, source) = resolve("r:5000", None, &env).unwrap();
        assert_eq!(auth, RegistryAuth::Basic("first".into(), "a".into()));
        assert_eq!(source, CredentialSource::AuthFile(auth_file));
    }

    #[test]
    fn docker_config_dir_replaces_home_and_url_keys_match_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_with(dir.path());
        env.docker_config = Some(dir.path().join("dc"));
        write(
            &dir.path().join("dc/config.json"),
            &format!(
                r#"{{"auths":{{"https://r:5000/v1/":{{"auth":"{}"}}}}}}"#,
                b64("u:p:with:colons")
            ),
        );
        let (auth, _) = resolve("r:5000", None, &env).unwrap();
        assert_eq!(
            auth,
            RegistryAuth::Basic("u".into(), "p:with:colons".into())
        );
    }

    #[test]
    fn no_entry_anywhere_is_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with(dir.path());
        write(
            &dir.path().join("home/.docker/config.json"),
            &format!(r#"{{"auths":{{"other:1":{{"auth":"{}"}}}}}}"#, b64("u:p")),
        );
        let (auth, source) = resolve("r:5000", None, &env).unwrap();
        assert_eq!(auth, RegistryAuth::Anonymous);
        assert_eq!(source, CredentialSource::Anonymous);
    }

    #[test]
    fn hostile_auth_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with(dir.path());
        let config = dir.path().join("home/.docker/config.json");
        for text in [
            "{not json",
            r#"{"auths":{"r:5000":{"auth":"%%%not-base64"}}}"#,
            &format!(
                r#"{{"auths":{{"r:5000":{{"auth":"{}"}}}}}}"#,
                b64("no-colon")
            ),
            r#"{"auths":[1,2]}"#,
        ] {
            write(&config, text);
            let err = resolve("r:5000", None, &env).unwrap_err().to_string();
            assert!(err.contains(&config.display().to_string()), "{err}");
        }
    }

    #[test]
    fn wrongly_typed_entries_name_the_file_and_key_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with(dir.path());
        let config = dir.path().join("home/.docker/config.json");
        let secret = "hunter2-secret";
        for (text, key) in [
            (
                format!(r#"{{"auths":{{"r:5000":"{secret}"}}}}"#),
                "auths.r:5000",
            ),
            (
                format!(r#"{{"auths":{{"r:5000":{{"auth":["{secret}"]}}}}}}"#),
                "auths.r:5000.auth",
            ),
            (
                format!(r#"{{"auths":{{"r:5000":{{"password":{{"{secret}":1}}}}}}}}"#),
                "auths.r:5000.password",
            ),
            (
                format!(r#"{{"credHelpers":{{"r:5000":["{secret}"]}}}}"#),
                "credHelpers.r:5000",
            ),
            (
                format!(r#"{{"credsStore":{{"x":"{secret}"}}}}"#),
                "credsStore",
            ),
            (format!(r#"["{secret}"]"#), "the top level"),
        ] {
            write(&config, &text);
            let err = resolve("r:5000", None, &env).unwrap_err().to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(
                err.contains(&config.display().to_string()) && err.contains(key),
                "{err}"
            );
        }
    }

    #[test]
    fn a_failing_helper_s_output_is_not_quoted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let helper = bin.join("docker-credential-leaky");
        write(
            &helper,
            "#!/bin/sh\necho '{\"Username\":\"u\",\"Secret\":\"hunter2-secret\"}'\necho hunter2-secret >&2\nexit 3\n",
        );
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = AuthEnv {
            path: Some(bin.into_os_string()),
            ..env_with(dir.path())
        };
        write(
            &dir.path().join("home/.docker/config.json"),
            r#"{"credHelpers":{"r:5000":"leaky"}}"#,
        );
        let err = resolve("r:5000", None, &env).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.contains("docker-credential-leaky")
                && err.contains("3")
                && err.contains("withheld"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_credential_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with(dir.path());
        write(
            &dir.path().join("home/.docker/config.json"),
            r#"{"credHelpers":{"r:5000":"kiln-test-does-not-exist"}}"#,
        );
        let err = resolve("r:5000", None, &env).unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-kiln-test-does-not-exist"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
