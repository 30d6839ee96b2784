//! Where an image goes, written the way skopeo names transports.

use std::path::PathBuf;
use std::str::FromStr;

/// An output for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `oci:DIR[:TAG]`: an OCI image layout folder.
    OciLayout {
        /// The layout folder.
        dir: PathBuf,
        /// Tag for `index.json` (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: an OCI image layout in a tar file.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// Tag for `index.json`.
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`: a tar `docker load` and
    /// `podman load` read.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// `NAME:TAG` for `RepoTags`.
        reference: Option<String>,
    },
}

impl std::fmt::Display for Destination {
    /// The destination as it is written on the command line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (transport, path, tag) = match self {
            Destination::OciLayout { dir, tag } => ("oci", dir, tag),
            Destination::OciArchive { file, tag } => ("oci-archive", file, tag),
            Destination::DockerArchive { file, reference } => ("docker-archive", file, reference),
        };
        write!(f, "{transport}:{}", path.display())?;
        match tag {
            Some(tag) => write!(f, ":{tag}"),
            None => Ok(()),
        }
    }
}

/// A destination kiln cannot parse.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// No known transport prefix.
    #[error("`{0}` is not an output kiln can write; use oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG] or docker://REGISTRY/NAME[:TAG]")]
    UnknownTransport(String),
    /// The path part is empty.
    #[error("`{0}` names no file or folder")]
    NoPath(String),
    /// A tag with characters a tag cannot have.
    #[error("`{tag}` in `{destination}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128, not starting with `.` or `-`)")]
    BadTag {
        /// The whole destination.
        destination: String,
        /// The tag.
        tag: String,
    },
}

impl FromStr for Destination {
    type Err = DestinationError;

    fn from_str(text: &str) -> Result<Destination, DestinationError> {
        let (transport, rest) = text
            .split_once(':')
            .ok_or_else(|| DestinationError::UnknownTransport(text.to_string()))?;
        // As in skopeo, the path ends at the first colon.
        let (path, suffix) = match rest.split_once(':') {
            Some((path, suffix)) => (path, Some(suffix)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(DestinationError::NoPath(text.to_string()));
        }
        let path = PathBuf::from(path);
        let tag = |suffix: Option<&str>| -> Result<Option<String>, DestinationError> {
            match suffix {
                None => Ok(None),
                Some(tag) if valid_tag(tag) => Ok(Some(tag.to_string())),
                Some(tag) => Err(DestinationError::BadTag {
                    destination: text.to_string(),
                    tag: tag.to_string(),
                }),
            }
        };
        match transport {
            "oci" => Ok(Destination::OciLayout {
                dir: path,
                tag: tag(suffix)?,
            }),
            "oci-archive" => Ok(Destination::OciArchive {
                file: path,
                tag: tag(suffix)?,
            }),
            "docker-archive" => Ok(Destination::DockerArchive {
                file: path,
                reference: suffix.map(with_tag).transpose().map_err(|tag| {
                    DestinationError::BadTag {
                        destination: text.to_string(),
                        tag,
                    }
                })?,
            }),
            _ => Err(DestinationError::UnknownTransport(text.to_string())),
        }
    }
}

/// `NAME:TAG`, with `:latest` added when the reference has no tag.
fn with_tag(reference: &str) -> Result<String, String> {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.rsplit_once(':') {
        Some((_, tag)) if valid_tag(tag) => Ok(reference.to_string()),
        Some((_, tag)) => Err(tag.to_string()),
        None => Ok(format!("{reference}:latest")),
    }
}

/// A Docker/OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport() {
        assert_eq!(
            "oci:out:v1".parse::<Destination>().unwrap(),
            Destination::OciLayout {
                dir: "out".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci-archive:/tmp/a.tar".parse::<Destination>().unwrap(),
            Destination::OciArchive {
                file: "/tmp/a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:a.tar:localhost:5000/app"
                .parse::<Destination>()
                .unwrap(),
            Destination::DockerArchive {
                file: "a.tar".into(),
                reference: Some("localhost:5000/app:latest".into())
            }
        );
        assert_eq!(
            "docker-archive:a.tar:app:1.0"
                .parse::<Destination>()
                .unwrap(),
            Destination::DockerArchive {
                file: "a.tar".into(),
                reference: Some("app:1.0".into())
            }
        );
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        for bad in [
            "out",
            "docker://x/y",
            "oci:",
            "oci:dir:bad tag",
            "oci:d:../x",
            "docker-archive:f:app:-x",
        ] {
            assert!(bad.parse::<Destination>().is_err(), "{bad}");
        }
    }
}
