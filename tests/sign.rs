//! Signed pushes: the cosign signature kiln pushes is fetched with skopeo
//! and checked with openssl against the public key `kiln keygen` wrote
//! (and refused with another key), and a `sigstoreSigned` policy run by
//! Debian 13's skopeo (Debian 12's has sigstore verification patched out;
//! tests/setup.sh installs the newer one under the target folder) accepts
//! a signed image and refuses an unsigned one and one signed with another
//! key.

use std::path::Path;
use std::process::Command;

use kiln_harness::process::run;
use kiln_harness::{FixtureNixpkgs, Registry, RegistryKind};

/// The built `kiln` with `args` in `dir`.
fn kiln(dir: &Path, args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).current_dir(dir).env_remove("RUST_LOG");
    command
}

/// `kiln keygen --output-key-prefix NAME` in `dir`.
fn keygen(dir: &Path, name: &str) {
    run(&mut kiln(
        dir,
        &["keygen".into(), "--output-key-prefix".into(), name.into()],
    ));
}

/// `kiln pack bash --push DESTINATION`, signed with `key` when given.
fn push(fixture: &FixtureNixpkgs, dir: &Path, host: &str, destination: &str, key: Option<&str>) {
    let mut args = vec![
        "--cache-dir".to_string(),
        dir.join("cache").display().to_string(),
        "pack".into(),
        "bash".into(),
    ];
    args.extend(fixture.kiln_source_args());
    args.extend([
        "--push".into(),
        destination.into(),
        "--insecure-registry".into(),
        host.into(),
    ]);
    if let Some(key) = key {
        args.extend(["--sign-key".into(), key.into()]);
    }
    run(&mut kiln(dir, &args));
}

/// The signature kiln pushed for `digest` in `repository`, fetched with
/// skopeo (which checks every digest on the way): its payload and its
/// DER signature, or `None` when the registry has no signature tag.
fn fetch_signature(dir: &Path, repository: &str, digest: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let tag = format!("{}.sig", digest.replacen(':', "-", 1));
    let copy = dir.join(format!("sig-{}", &digest[7..19]));
    let copied = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{repository}:{tag}"))
        .arg(format!("oci:{}:s", copy.display()))
        .output()
        .expect("run skopeo");
    if !copied.status.success() {
        return None;
    }
    let manifest = kiln_harness::images::layout_manifest(&copy, "s");
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = std::fs::read(
        copy.join("blobs/sha256")
            .join(&layer["digest"].as_str().unwrap()[7..]),
    )
    .unwrap();
    let encoded = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    let file = dir.join("signature.b64");
    std::fs::write(&file, encoded).unwrap();
    let der = Command::new("base64")
        .arg("-d")
        .arg(&file)
        .output()
        .unwrap()
        .stdout;
    Some((payload, der))
}

/// Whether `openssl dgst -sha256 -verify PUBLIC` accepts `signature` of
/// `payload`: ECDSA P-256 over SHA-256, as cosign checks it.
fn openssl_verifies(dir: &Path, public_key: &Path, payload: &[u8], signature: &[u8]) -> bool {
    std::fs::write(dir.join("payload"), payload).unwrap();
    std::fs::write(dir.join("signature"), signature).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(dir.join("signature"))
        .arg(dir.join("payload"))
        .output()
        .expect("run openssl")
        .status
        .success()
}

/// The digest skopeo reads for `reference`.
fn digest_of(reference: &str) -> String {
    let inspected = kiln_harness::validators::skopeo_inspect(
        &format!("docker://{reference}"),
        &["--tls-verify=false"],
    );
    inspected["Digest"].as_str().unwrap().to_string()
}

#[test]
fn the_signature_names_the_image_and_verifies_with_its_key_only() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&["skopeo", "docker-registry", "openssl"])
    else {
        return;
    };
    let registry = Registry::start(RegistryKind::Plain);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    keygen(dir, "mine");
    keygen(dir, "other");

    let repository = format!("{host}/signed/bash");
    push(
        fixture,
        dir,
        &host,
        &format!("{repository}:1"),
        Some("mine.key"),
    );
    let digest = digest_of(&format!("{repository}:1"));
    let (payload, signature) = fetch_signature(dir, &repository, &digest).expect("a signature");
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        repository.as_str()
    );
    assert_eq!(
        claims["critical"]["type"],
        "cosign container image signature"
    );
    assert!(openssl_verifies(
        dir,
        &dir.join("mine.pub"),
        &payload,
        &signature
    ));
    assert!(!openssl_verifies(
        dir,
        &dir.join("other.pub"),
        &payload,
        &signature
    ));
    // The SBOM is signed too.
    let index = kiln_harness::validators::skopeo_inspect(
        &format!("docker://{repository}:{}", digest.replacen(':', "-", 1)),
        &["--tls-verify=false", "--raw"],
    );
    let sbom = index["manifests"][0]["digest"].as_str().unwrap();
    let (payload, signature) = fetch_signature(dir, &repository, sbom).expect("an SBOM signature");
    assert!(openssl_verifies(
        dir,
        &dir.join("mine.pub"),
        &payload,
        &signature
    ));

    // Unsigned: no signature tag at all.
    let unsigned = format!("{host}/unsigned/bash");
    push(fixture, dir, &host, &format!("{unsigned}:1"), None);
    let digest = digest_of(&format!("{unsigned}:1"));
    assert!(fetch_signature(dir, &unsigned, &digest).is_none());
}

#[test]
fn a_key_file_that_is_no_key_is_refused_before_anything_is_pushed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("bad.key"), "not a key").unwrap();
    keygen(dir, "k");
    let again = kiln(
        dir,
        &["keygen".into(), "--output-key-prefix".into(), "k".into()],
    )
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    let output = kiln(
        dir,
        &[
            "pack".into(),
            "bash".into(),
            "--push".into(),
            "127.0.0.1:1/x:1".into(),
            "--sign-key".into(),
            "bad.key".into(),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.key") && stderr.contains("kiln keygen"),
        "{stderr}"
    );
}

/// Whether `skopeo copy` of `reference` passes a policy that demands a
/// sigstore signature by `public_key` (cosign's key-pair mode, as an
/// admission policy would), with sigstore attachments read from the
/// registry; skopeo's own words when it refuses.
fn policy_accepts(
    skopeo: &Path,
    dir: &Path,
    public_key: &Path,
    reference: &str,
) -> Result<(), String> {
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {"": [{
            "type": "sigstoreSigned",
            "keyPath": public_key,
            "signedIdentity": {"type": "matchRepository"},
        }]}},
    });
    std::fs::write(dir.join("policy.json"), policy.to_string()).unwrap();
    let registries = dir.join("registries.d");
    std::fs::create_dir_all(&registries).unwrap();
    std::fs::write(
        registries.join("default.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();
    let copy = dir.join("policy-copy");
    let _ = std::fs::remove_dir_all(&copy);
    let output = Command::new(skopeo)
        // The policy is checked on reading the source; the oci: copy
        // cannot hold sigstore attachments, so they are not copied.
        .args([
            "copy",
            "--quiet",
            "--remove-signatures",
            "--src-tls-verify=false",
        ])
        .arg("--policy")
        .arg(dir.join("policy.json"))
        .arg("--registries.d")
        .arg(&registries)
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:p", copy.display()))
        .output()
        .expect("run skopeo");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn a_sigstore_signed_policy_accepts_the_signed_image_only() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&["docker-registry"]) else {
        return;
    };
    let Some(skopeo) = kiln_harness::validators::sigstore_skopeo() else {
        return;
    };
    let registry = Registry::start(RegistryKind::Plain);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    keygen(dir, "mine");
    keygen(dir, "other");
    let signed = format!("{host}/signed/bash:1");
    push(fixture, dir, &host, &signed, Some("mine.key"));
    let unsigned = format!("{host}/unsigned/bash:1");
    push(fixture, dir, &host, &unsigned, None);
    let other = format!("{host}/other/bash:1");
    push(fixture, dir, &host, &other, Some("other.key"));

    let mine = dir.join("mine.pub");
    policy_accepts(&skopeo, dir, &mine, &signed).expect("the signed image passes");
    let refused = policy_accepts(&skopeo, dir, &mine, &unsigned).expect_err("unsigned passed");
    assert!(refused.contains("no signature exists"), "{refused}");
    let refused = policy_accepts(&skopeo, dir, &mine, &other).expect_err("other key passed");
    assert!(
        refused.contains("signature verification failed"),
        "{refused}"
    );
    // The policy is what refuses: the same key accepts the other image.
    policy_accepts(&skopeo, dir, &dir.join("other.pub"), &other).expect("other key's image");
}

/// Writes `name.key`, an ECDSA P-256 key openssl made, encrypted with
/// `password` the way cosign does (scrypt N=32768 r=8 p=1, NaCl
/// secretbox, PEM `ENCRYPTED SIGSTORE PRIVATE KEY`) by Python's hashlib
/// and PyNaCl, and `name.pub`, its public key by openssl.
fn cosign_style_key(python: &Path, dir: &Path, name: &str, password: &str) {
    let plain = dir.join(format!("{name}.plain.pem"));
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&plain));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&plain)
        .arg("-out")
        .arg(dir.join(format!("{name}.pub"))));
    run(Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(&plain)
        .arg("-out")
        .arg(dir.join(format!("{name}.der"))));
    const SCRIPT: &str = "
import base64, hashlib, json, os, sys
import nacl.secret, nacl.utils
der, out, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
salt = os.urandom(32)
key = hashlib.scrypt(password, salt=salt, n=32768, r=8, p=1, maxmem=64 << 20, dklen=32)
nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
box = nacl.secret.SecretBox(key).encrypt(open(der, 'rb').read(), nonce)
envelope = {
    'kdf': {'name': 'scrypt', 'params': {'N': 32768, 'r': 8, 'p': 1},
            'salt': base64.b64encode(salt).decode()},
    'cipher': {'name': 'nacl/secretbox', 'nonce': base64.b64encode(nonce).decode()},
    'ciphertext': base64.b64encode(box.ciphertext).decode(),
}
body = base64.b64encode(json.dumps(envelope).encode()).decode()
lines = [body[i:i + 64] for i in range(0, len(body), 64)]
with open(out, 'w') as f:
    f.write('-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\\n')
    f.write('\\n'.join(lines) + '\\n')
    f.write('-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\\n')
";
    run(Command::new(python)
        .args(["-c", SCRIPT])
        .arg(dir.join(format!("{name}.der")))
        .arg(dir.join(format!("{name}.key")))
        .arg(password));
}

#[test]
fn a_key_encrypted_the_way_cosign_does_signs_with_its_password_only() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&["skopeo", "docker-registry", "openssl"])
    else {
        return;
    };
    let Some(python) = kiln_harness::validators::validators_python() else {
        return;
    };
    let registry = Registry::start(RegistryKind::Plain);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    cosign_style_key(&python, dir, "cosign", "correct horse");

    // The wrong password: refused before anything is pushed, naming the
    // key file and the variable to set.
    let repository = format!("{host}/encrypted/bash");
    let mut args = vec!["pack".to_string(), "bash".into()];
    args.extend(fixture.kiln_source_args());
    args.extend([
        "--push".into(),
        format!("{repository}:1"),
        "--insecure-registry".into(),
        host.clone(),
        "--sign-key".into(),
        "cosign.key".into(),
    ]);
    let wrong = kiln(dir, &args)
        .env("KILN_SIGN_PASSWORD", "wrong")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cosign.key") && stderr.contains("KILN_SIGN_PASSWORD"),
        "{stderr}"
    );

    run(kiln(dir, &args).env("KILN_SIGN_PASSWORD", "correct horse"));
    let digest = digest_of(&format!("{repository}:1"));
    let (payload, signature) = fetch_signature(dir, &repository, &digest).expect("a signature");
    assert!(openssl_verifies(
        dir,
        &dir.join("cosign.pub"),
        &payload,
        &signature
    ));
}

#[test]
fn keygen_encrypts_the_key_with_the_password_given() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    run(kiln(
        dir,
        &["keygen".into(), "--output-key-prefix".into(), "p".into()],
    )
    .env("KILN_SIGN_PASSWORD", "s3cret"));
    let key = std::fs::read_to_string(dir.join("p.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{key}"
    );
    assert!(!key.contains("s3cret"));
    let sign = |password: &str| {
        kiln(
            dir,
            &[
                "pack".into(),
                "bash".into(),
                "--push".into(),
                "127.0.0.1:1/x:1".into(),
                "--sign-key".into(),
                "p.key".into(),
            ],
        )
        .env("KILN_SIGN_PASSWORD", password)
        .output()
        .unwrap()
    };
    // With no password the key is refused, and says which variable to set.
    let refused = sign("");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("KILN_SIGN_PASSWORD"));
}
