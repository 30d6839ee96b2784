//! The registry the harness starts is a real registry in all three variants.

use kiln_harness::hash::sha256_digest;
use kiln_harness::process::run;
use kiln_harness::{require, Registry, RegistryKind};

const COMPONENTS: [&str; 4] = ["docker-registry", "curl", "htpasswd", "openssl"];

fn blob_round_trip(kind: RegistryKind) {
    let registry = Registry::start(kind);
    let blob = format!("kiln harness blob for {kind:?}\n").into_bytes();
    let digest = sha256_digest(&blob);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, &blob).unwrap();

    // Monolithic upload: POST opens a session, PUT with the digest closes it.
    let headers = run(registry.curl().args([
        "--fail",
        "--request",
        "POST",
        "--dump-header",
        "-",
        "--output",
        "/dev/null",
        &format!("{}/v2/harness/test/blobs/uploads/", registry.url()),
    ]));
    let location = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or(l.strip_prefix("location: "))
        })
        .expect("upload session Location header")
        .trim()
        .to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    run(registry
        .curl()
        .args(["--fail", "--request", "PUT", "--upload-file"])
        .arg(&file)
        .args(["--header", "Content-Type: application/octet-stream"])
        .arg(format!("{location}{separator}digest={digest}")));

    let served = run(registry.curl().args([
        "--fail",
        &format!("{}/v2/harness/test/blobs/{digest}", registry.url()),
    ]));
    assert_eq!(served.as_bytes(), blob.as_slice());
}

#[test]
fn plain_registry_stores_and_serves_a_blob() {
    if require(&COMPONENTS) {
        blob_round_trip(RegistryKind::Plain);
    }
}

#[test]
fn basic_auth_registry_stores_a_blob_and_refuses_anonymous_requests() {
    if !require(&COMPONENTS) {
        return;
    }
    blob_round_trip(RegistryKind::BasicAuth);
    let registry = Registry::start(RegistryKind::BasicAuth);
    let status = run(std::process::Command::new("curl").args([
        "--silent",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        &format!("{}/v2/", registry.url()),
    ]));
    assert_eq!(status, "401");
}

#[test]
fn tls_registry_stores_a_blob_and_rejects_untrusting_clients() {
    if !require(&COMPONENTS) {
        return;
    }
    blob_round_trip(RegistryKind::Tls);
    let registry = Registry::start(RegistryKind::Tls);
    let untrusting = std::process::Command::new("curl")
        .args(["--silent", &format!("{}/v2/", registry.url())])
        .status()
        .unwrap();
    // curl's exit code 60: the peer certificate cannot be verified.
    assert_eq!(untrusting.code(), Some(60));
}
