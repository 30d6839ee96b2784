//! Downloads trust the system's CA store: a server whose certificate only a
//! CA in the system bundle vouches for (as a TLS-intercepting proxy's CA
//! is, on machines that have one) is accepted without flags, and refused
//! once that CA is gone from the bundle.

use kiln_harness::{require, Registry, RegistryKind};
use kiln_store::{open_url, FetchOptions};

#[test]
fn https_downloads_trust_the_system_ca_bundle() {
    if !require(&["docker-registry", "openssl"]) {
        return;
    }
    let registry = Registry::start(RegistryKind::Tls);
    let url = format!("{}/v2/", registry.url());
    let options = FetchOptions {
        retries: 0,
        ..FetchOptions::default()
    };
    let empty = tempfile::tempdir().unwrap();
    // The system bundle is read where OpenSSL reads it; these variables
    // point it elsewhere. This binary holds only this test, so nothing
    // else reads them meanwhile.
    std::env::set_var("SSL_CERT_FILE", registry.ca_cert().unwrap());
    std::env::set_var("SSL_CERT_DIR", empty.path());
    let body = open_url(&url, &options).unwrap();
    assert!(body.is_some(), "{url} answered 404");

    std::env::set_var("SSL_CERT_FILE", empty.path().join("none.pem"));
    let err = open_url(&url, &options)
        .err()
        .expect("an unknown CA is refused");
    assert!(err.to_string().contains(&url), "{err}");
}
