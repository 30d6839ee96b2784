//! Credentials for private HTTP caches from a netrc file, as Nix's
//! `netrc-file` setting reads them.
//!
//! Written by hand: the published Rust netrc crates are unmaintained, and the
//! part Nix uses (`machine`/`default`, `login`, `password`) is a few lines.

use base64::Engine as _;

/// A login and password for one host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    login: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_auth_header(&self) -> String {
        let pair = format!("{}:{}", self.login, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// The credentials a netrc text gives `host`: its `machine` entry, else the
/// `default` entry.
pub fn credentials_for(netrc: &str, host: &str) -> Option<Credentials> {
    let mut tokens = netrc.split_whitespace();
    let mut matched: Option<Credentials> = None;
    let mut fallback: Option<Credentials> = None;
    let mut current: Option<(Entry, Credentials)> = None;
    let mut finish = |entry: Option<(Entry, Credentials)>| match entry {
        Some((Entry::Host, credentials)) if matched.is_none() => matched = Some(credentials),
        Some((Entry::Default, credentials)) if fallback.is_none() => fallback = Some(credentials),
        _ => {}
    };
    let empty = || Credentials {
        login: String::new(),
        password: String::new(),
    };
    while let Some(token) = tokens.next() {
        match token {
            "machine" => {
                finish(current.take());
                let name = tokens.next().unwrap_or_default();
                let entry = if name == host {
                    Entry::Host
                } else {
                    Entry::OtherHost
                };
                current = Some((entry, empty()));
            }
            "default" => {
                finish(current.take());
                current = Some((Entry::Default, empty()));
            }
            "login" => {
                if let (Some((_, c)), Some(v)) = (current.as_mut(), tokens.next()) {
                    c.login = v.to_string();
                }
            }
            "password" => {
                if let (Some((_, c)), Some(v)) = (current.as_mut(), tokens.next()) {
                    c.password = v.to_string();
                }
            }
            _ => {}
        }
    }
    finish(current.take());
    matched.or(fallback)
}

/// Which entry of a netrc file is being read. Another host's entry must
/// never serve as a fallback.
enum Entry {
    Host,
    OtherHost,
    Default,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETRC: &str = "machine cache.one login alice password s3cret\n\
                         machine cache.two\n  login bob\n  password hunter2\n\
                         default login anon password none\n";

    #[test]
    fn picks_the_machine_entry_then_the_default() {
        let one = credentials_for(NETRC, "cache.one").unwrap();
        assert_eq!(one.basic_auth_header(), "Basic YWxpY2U6czNjcmV0");
        let two = credentials_for(NETRC, "cache.two").unwrap();
        assert_eq!(two.login, "bob");
        let other = credentials_for(NETRC, "cache.three").unwrap();
        assert_eq!(other.login, "anon");
    }

    #[test]
    fn another_hosts_entry_is_never_used() {
        assert_eq!(credentials_for("machine a login x password y", "b"), None);
        assert_eq!(credentials_for("", "b"), None);
        assert_eq!(credentials_for("machine", "b"), None);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let one = credentials_for(NETRC, "cache.one").unwrap();
        assert!(!format!("{one:?}").contains("s3cret"));
    }
}
