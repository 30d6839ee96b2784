//! A read-only view of the app folder, the only thing providers look at.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where upstream puts static assets in the image.
pub const ASSETS_DIR: &str = "/assets/";

/// Why a file of the app could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The app folder itself cannot be read.
    #[error("cannot read the app folder {path}: {source}; check that it exists and is readable")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file, relative to the app folder.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file does not parse in its format.
    #[error("{path}: not valid {format}: {message}")]
    Parse {
        /// The file, relative to the app folder.
        path: String,
        /// JSON, JSONC, TOML or YAML.
        format: &'static str,
        /// What is wrong, with line and column where the parser knows them.
        message: String,
    },
    /// A glob pattern a provider asked for is malformed.
    #[error("bad file pattern `{pattern}`: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What the glob parser said.
        message: String,
    },
}

/// The app folder.
#[derive(Debug, Clone)]
pub struct App {
    /// Absolute, canonical path of the folder.
    pub source: PathBuf,
    /// Its direct entries.
    pub paths: Vec<PathBuf>,
}

impl App {
    /// Opens an app folder.
    pub fn new(dir: &Path) -> Result<Self, AppError> {
        let folder_error = |source| AppError::Folder {
            path: dir.to_path_buf(),
            source,
        };
        let source = dir.canonicalize().map_err(folder_error)?;
        let mut paths = std::fs::read_dir(&source)
            .map_err(folder_error)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(folder_error)?;
        paths.sort();
        Ok(Self { source, paths })
    }

    /// Whether a file (not a folder) exists at this relative path.
    pub fn includes_file(&self, name: &str) -> bool {
        self.source.join(name).is_file()
    }

    /// Whether a folder exists at this relative path.
    pub fn includes_directory(&self, name: &str) -> bool {
        self.source.join(name).is_dir()
    }

    /// Whether the file has any execute bit.
    pub fn is_file_executable(&self, name: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.source.join(name))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }

    /// Files matching a glob relative to the app folder, sorted, skipping
    /// what `.gitignore` files exclude, as upstream does.
    pub fn find_files(&self, pattern: &str) -> Result<Vec<PathBuf>, AppError> {
        Ok(self
            .find_glob(pattern)?
            .into_iter()
            .filter(|p| p.is_file())
            .collect())
    }

    /// Folders matching a glob relative to the app folder.
    pub fn find_directories(&self, pattern: &str) -> Result<Vec<PathBuf>, AppError> {
        Ok(self
            .find_glob(pattern)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect())
    }

    /// Whether any file matches the glob.
    pub fn has_match(&self, pattern: &str) -> bool {
        self.find_files(pattern).is_ok_and(|f| !f.is_empty())
    }

    /// Whether any file matching the glob has text the regex matches.
    pub fn find_match(&self, re: &regex::Regex, pattern: &str) -> Result<bool, AppError> {
        for file in self.find_files(pattern)? {
            if re.is_match(&self.read_file(&self.relative(&file))?) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn find_glob(&self, pattern: &str) -> Result<Vec<PathBuf>, AppError> {
        let full = self.source.join(pattern);
        let Some(full) = full.to_str() else {
            return Ok(Vec::new());
        };
        let matcher = globset::Glob::new(full)
            .map_err(|e| AppError::Pattern {
                pattern: pattern.into(),
                message: e.to_string(),
            })?
            .compile_matcher();
        Ok(ignore::WalkBuilder::new(&self.source)
            .hidden(false)
            .sort_by_file_name(std::ffi::OsStr::cmp)
            .build()
            .filter_map(Result::ok)
            .map(ignore::DirEntry::into_path)
            .filter(|p| matcher.is_match(p))
            .collect())
    }

    /// A text file, with CRLF line ends turned into LF.
    pub fn read_file(&self, name: &str) -> Result<String, AppError> {
        std::fs::read_to_string(self.source.join(name))
            .map(|text| text.replace("\r\n", "\n"))
            .map_err(|source| AppError::Read {
                path: self.relative(name),
                source,
            })
    }

    /// A JSON file.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, AppError> {
        let text = self.read_file(name)?;
        serde_json::from_str(&text).map_err(|e| self.parse_error(name, "JSON", e.to_string()))
    }

    /// A JSON file that may hold `//` and `/* */` comments.
    pub fn read_jsonc<T: DeserializeOwned>(&self, name: &str) -> Result<T, AppError> {
        let text = strip_json_comments(&self.read_file(name)?);
        serde_json::from_str(&text).map_err(|e| self.parse_error(name, "JSONC", e.to_string()))
    }

    /// A TOML file.
    pub fn read_toml<T: DeserializeOwned>(&self, name: &str) -> Result<T, AppError> {
        let text = self.read_file(name)?;
        toml::from_str(&text).map_err(|e| self.parse_error(name, "TOML", e.to_string()))
    }

    /// A YAML file.
    pub fn read_yaml<T: DeserializeOwned>(&self, name: &str) -> Result<T, AppError> {
        let text = self.read_file(name)?;
        serde_yaml::from_str(&text).map_err(|e| self.parse_error(name, "YAML", e.to_string()))
    }

    /// Where a static asset of this name lands in the image.
    pub fn asset_path(&self, name: &str) -> String {
        format!("{ASSETS_DIR}{name}")
    }

    /// A path of the app, relative to its folder where it is inside it.
    pub fn relative(&self, path: impl AsRef<Path>) -> String {
        let path = path.as_ref();
        path.strip_prefix(&self.source)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn parse_error(&self, name: &str, format: &'static str, message: String) -> AppError {
        AppError::Parse {
            path: self.relative(name),
            format,
            message,
        }
    }
}

/// Removes `//` line comments and `/* */` block comments, as upstream does
/// for `deno.jsonc`; comment markers inside strings are left alone.
fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                while let Some(next) = chars.next() {
                    if next == '*' && chars.peek() == Some(&'/') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_comments_are_removed_but_strings_kept() {
        let text = "{ // note\n \"a\": \"http://x\", /* b */ \"c\": 1 }";
        let value: serde_json::Value = serde_json::from_str(&strip_json_comments(text)).unwrap();
        assert_eq!(value["a"], "http://x");
        assert_eq!(value["c"], 1);
    }

    #[test]
    fn finds_files_and_reports_bad_json_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.csproj"), "").unwrap();
        std::fs::write(dir.path().join("package.json"), "{ nope").unwrap();
        let app = App::new(dir.path()).unwrap();
        assert!(app.has_match("**/*.csproj"));
        // As in upstream, `*` also crosses folders.
        assert!(app.has_match("*.csproj"));
        assert!(!app.has_match("*.fsproj"));
        let err = app
            .read_json::<serde_json::Value>("package.json")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("package.json: not valid JSON"), "{err}");
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let err = App::new(Path::new("/nonexistent/kiln-app")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kiln-app"));
    }
}
