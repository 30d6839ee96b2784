//! The registry calls oci-client has no method for: a page of a tag list
//! with its `Link` header, and deleting a manifest. Plain HTTP with the
//! session's trust settings and credentials; a `Bearer` challenge is
//! answered with a token for exactly the scope the call needs.

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{HeaderMap, AUTHORIZATION, LINK, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::connect::Session;

/// A tag list page is a list of short names; more than this is refused
/// unread.
pub(crate) const MAX_PAGE_BYTES: usize = 8 << 20;

/// An answer: status, headers and body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends `method url` for `actions` (`pull`, `delete`) on the session's
/// repository, answering a `Bearer` challenge once. Bodies longer than
/// [`MAX_PAGE_BYTES`] are an error.
pub(crate) async fn send(
    session: &Session,
    method: Method,
    url: &str,
    actions: &str,
) -> Result<Answer, OciDistributionError> {
    let first = request(session, method.clone(), url, preset_auth(&session.auth)).await?;
    if first.status != StatusCode::UNAUTHORIZED {
        return Ok(first);
    }
    let Some(challenge) = first
        .headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(first);
    };
    let scope = format!("repository:{}:{actions}", session.reference.repository());
    let token = token(session, challenge, &scope).await?;
    request(session, method, url, Some(format!("Bearer {token}"))).await
}

async fn request(
    session: &Session,
    method: Method,
    url: &str,
    authorization: Option<String>,
) -> Result<Answer, OciDistributionError> {
    let mut builder = session.raw.request(method, url);
    if let Some(value) = authorization {
        builder = builder.header(AUTHORIZATION, value);
    }
    let response = builder.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
    {
        return Err(too_big(url));
    }
    let body = response.bytes().await?;
    if body.len() > MAX_PAGE_BYTES {
        return Err(too_big(url));
    }
    Ok(Answer {
        status,
        headers,
        body: body.to_vec(),
    })
}

fn too_big(url: &str) -> OciDistributionError {
    OciDistributionError::GenericError(Some(format!(
        "{url} answered more than {MAX_PAGE_BYTES} bytes"
    )))
}

/// The `Authorization` value sent before any challenge: basic credentials
/// or a token the user gave.
fn preset_auth(auth: &RegistryAuth) -> Option<String> {
    use base64::Engine as _;
    match auth {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic(user, password) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )),
        RegistryAuth::Bearer(token) => Some(format!("Bearer {token}")),
    }
}

/// A token for `scope` from the realm a `Bearer` challenge names.
async fn token(
    session: &Session,
    challenge: &str,
    scope: &str,
) -> Result<String, OciDistributionError> {
    let parameters = challenge_parameters(challenge);
    let get = |name: &str| {
        parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let realm = get("realm").ok_or_else(|| {
        OciDistributionError::AuthenticationFailure(format!(
            "the registry's challenge names no realm: {challenge}"
        ))
    })?;
    let mut query = vec![("scope", scope.to_string())];
    if let Some(service) = get("service") {
        query.push(("service", service));
    }
    let mut builder = session.raw.get(&realm).query(&query);
    if let RegistryAuth::Basic(user, password) = &session.auth {
        builder = builder.basic_auth(user, Some(password));
    }
    let response = builder.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(OciDistributionError::AuthenticationFailure(format!(
            "{realm} answered {status} for scope {scope}"
        )));
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    answer["token"]
        .as_str()
        .or_else(|| answer["access_token"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            OciDistributionError::AuthenticationFailure(format!("{realm} sent no token"))
        })
}

/// `key="value"` pairs of a challenge, in order.
fn challenge_parameters(challenge: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = challenge.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, tail)) => (value.to_string(), tail),
                None => (quoted.to_string(), ""),
            },
            None => match after.split_once(',') {
                Some((value, tail)) => (value.trim().to_string(), tail),
                None => (after.trim().to_string(), ""),
            },
        };
        pairs.push((key, value));
        rest = tail.trim_start_matches(',');
    }
    pairs
}

/// The `rel="next"` target of a `Link` header, resolved against the
/// registry's base URL; `None` without one. A link to another host is
/// refused: the next request carries the credentials.
pub(crate) fn next_link(headers: &HeaderMap, base_url: &str) -> Result<Option<String>, String> {
    let Some(link) = headers.get(LINK).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    for part in link.split(',') {
        let Some((target, params)) = part.split_once(';') else {
            continue;
        };
        if !params.replace(' ', "").contains("rel=\"next\"") {
            continue;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        if target.starts_with('/') {
            return Ok(Some(format!("{base_url}{target}")));
        }
        if target
            .strip_prefix(base_url)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return Ok(Some(target.to_string()));
        }
        return Err(format!(
            "the tag list's next page is on another host ({target})"
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn challenges_give_realm_service_and_scope() {
        let pairs = challenge_parameters(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        assert_eq!(
            pairs[0],
            ("realm".into(), "https://auth.example/token".into())
        );
        assert_eq!(pairs[1], ("service".into(), "registry.example".into()));
        assert_eq!(pairs[2].1, "repository:a:pull");
    }

    #[test]
    fn next_links_stay_on_the_registry() {
        let base = "http://127.0.0.1:5000";
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(LINK, HeaderValue::from_str(value).unwrap());
            headers
        };
        let relative = headers(r#"</v2/c/tags/list?last=b&n=2>; rel="next""#);
        assert_eq!(
            next_link(&relative, base).unwrap().unwrap(),
            "http://127.0.0.1:5000/v2/c/tags/list?last=b&n=2"
        );
        let absolute = headers(r#"<http://127.0.0.1:5000/v2/c/tags/list?n=2>; rel="next""#);
        assert!(next_link(&absolute, base).unwrap().is_some());
        assert!(next_link(&HeaderMap::new(), base).unwrap().is_none());
        for elsewhere in [
            r#"<http://evil.example/v2/c/tags/list>; rel="next""#,
            r#"<http://127.0.0.1:50000/v2/c/tags/list>; rel="next""#,
        ] {
            assert!(next_link(&headers(elsewhere), base).is_err(), "{elsewhere}");
        }
    }
}
