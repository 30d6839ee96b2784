//! Looking after an artifact repository as a whole: every tag (following
//! the registry's pages), any manifest as raw bytes, and deleting a
//! manifest. `kiln cache prune --cache-repo` is built on these.

use oci_client::errors::OciDistributionError;
use oci_spec::image::MediaType;
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use super::artifact::{is_not_found, ArtifactRepo};
use super::error::RegistryError;
use super::raw::{next_link, send};
use super::retry::with_retry;

/// Tags asked for in one page of the tag list.
const PAGE: usize = 1000;

/// A manifest read back by tag.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// Its bytes as the registry holds them.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of those bytes: what it is deleted by.
    pub digest: String,
}

impl ArtifactRepo {
    /// Every tag of the repository (none when it does not exist), page by
    /// page as the registry's `Link` headers lead; more than `max` tags is
    /// an error, before any is acted on.
    pub fn tags(&self, max: usize) -> Result<Vec<String>, RegistryError> {
        let session = &self.session;
        let bad = |reason: String| RegistryError::BadManifest {
            registry: session.site.registry.clone(),
            repository: session.site.repository.clone(),
            reason,
        };
        let mut url = format!(
            "{}/v2/{}/tags/list?n={PAGE}",
            session.base_url,
            session.reference.repository()
        );
        let mut tags = Vec::new();
        let mut visited = std::collections::HashSet::new();
        loop {
            if !visited.insert(url.clone()) {
                return Err(bad(format!("the tag list's pages loop back to {url}")));
            }
            let answer = self.runtime.block_on(with_retry(
                session.backoff,
                &session.site,
                "listing tags",
                || async {
                    let answer = send(session, Method::GET, &url, "pull").await?;
                    match answer.status {
                        StatusCode::NOT_FOUND => Ok(None),
                        status if status.is_success() => Ok(Some(answer)),
                        status => Err(server_error(status, &url, &answer.body)),
                    }
                },
            ))?;
            let Some(answer) = answer else {
                return Ok(tags);
            };
            add_page(&mut tags, &answer.body, max)
                .map_err(|why| bad(format!("tag list from {url}: {why}")))?;
            match next_link(&answer.headers, &session.base_url).map_err(bad)? {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    /// The manifest or index tagged `tag`, of any media type, as raw
    /// bytes; `None` when the tag is gone.
    pub fn manifest(&self, tag: &str) -> Result<Option<RawManifest>, RegistryError> {
        let session = &self.session;
        let reference = self.tagged(tag);
        let accepted = [
            MediaType::ImageManifest.to_string(),
            MediaType::ImageIndex.to_string(),
            "application/vnd.docker.distribution.manifest.v2+json".to_string(),
            "application/vnd.docker.distribution.manifest.list.v2+json".to_string(),
        ];
        let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
        let found = self.runtime.block_on(with_retry(
            session.backoff,
            &session.site,
            &format!("fetching manifest {tag}"),
            || async {
                match session
                    .client
                    .pull_manifest_raw(&reference, &session.auth, &accepted)
                    .await
                {
                    Ok((bytes, _)) => Ok(Some(bytes)),
                    Err(err) if is_not_found(&err) => Ok(None),
                    Err(err) => Err(err),
                }
            },
        ))?;
        Ok(found.map(|bytes| RawManifest {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            bytes: bytes.to_vec(),
        }))
    }

    /// Deletes the manifest `digest` (and so every tag on it); its blobs
    /// stay for the registry's garbage collector. `false` when it was
    /// already gone. A registry that does not allow deletes gives
    /// [`RegistryError::DeletesDisabled`].
    pub fn delete_manifest(&self, digest: &str) -> Result<bool, RegistryError> {
        let session = &self.session;
        let url = format!(
            "{}/v2/{}/manifests/{digest}",
            session.base_url,
            session.reference.repository()
        );
        let answer = self.runtime.block_on(with_retry(
            session.backoff,
            &session.site,
            &format!("deleting manifest {digest}"),
            || send(session, Method::DELETE, &url, "delete"),
        ))?;
        let body = String::from_utf8_lossy(&answer.body);
        match answer.status {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status if status == StatusCode::METHOD_NOT_ALLOWED || body.contains("UNSUPPORTED") => {
                Err(RegistryError::DeletesDisabled {
                    registry: session.site.registry.clone(),
                    repository: session.site.repository.clone(),
                    answer: format!("HTTP {status}: {}", super::error::one_line(&body)),
                })
            }
            status => Err(session
                .site
                .classify(
                    &format!("deleting manifest {digest}"),
                    server_error(status, &url, &answer.body),
                )
                .1),
        }
    }
}

/// One page of `GET /v2/<name>/tags/list`.
#[derive(serde::Deserialize)]
struct TagPage {
    tags: Option<Vec<String>>,
}

/// Adds the tags of the page `body` to `tags`, refusing an unreadable page
/// and more than `max` tags in all.
fn add_page(tags: &mut Vec<String>, body: &[u8], max: usize) -> Result<(), String> {
    let page: TagPage = serde_json::from_slice(body).map_err(|e| format!("unreadable ({e})"))?;
    tags.extend(page.tags.unwrap_or_default());
    match tags.len() > max {
        true => Err(format!(
            "the repository has more than {max} tags; kiln will not go through that many"
        )),
        false => Ok(()),
    }
}

fn server_error(status: StatusCode, url: &str, body: &[u8]) -> OciDistributionError {
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url: url.to_string(),
        message: String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_pages_are_read_or_refused() {
        let mut tags = Vec::new();
        add_page(&mut tags, br#"{"name":"c","tags":["a","b"]}"#, 10).unwrap();
        add_page(&mut tags, br#"{"name":"c","tags":null}"#, 10).unwrap();
        assert_eq!(tags, ["a", "b"]);
        for garbage in [&b"{"[..], b"[]", br#"{"tags":[1]}"#, b"\xff"] {
            assert!(add_page(&mut tags, garbage, 10).is_err());
        }
        let huge = serde_json::to_vec(&serde_json::json!({
            "tags": (0..11).map(|i| i.to_string()).collect::<Vec<_>>()
        }))
        .unwrap();
        let err = add_page(&mut Vec::new(), &huge, 10).unwrap_err();
        assert!(err.contains("more than 10 tags"), "{err}");
    }
}
