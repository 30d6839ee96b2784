//! SBOMs end to end: a fixture Node app built with the fixture nixpkgs,
//! its SPDX document read back with `kiln sbom`, validated by spdx-tools
//! (and its CycloneDX document by cyclonedx-python-lib),
//! its store paths checked against what the image holds and against the
//! fixture cache's narinfo files (NAR hashes converted by Nix's own
//! `nix-hash`), its npm packages against `node_modules`; the same build
//! twice gives the same bytes; attaching changes no image digest; pushed to
//! docker-registry the SBOM is listed under the referrers tag, which
//! skopeo reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::images::busybox_image;
use kiln_harness::nixpkgs::nix_command;
use kiln_harness::process::run;
use kiln_harness::validators::{
    cyclonedx_validate, skopeo_copy, skopeo_inspect, spdx_validate, spdx_validator,
    validators_python, Bundle,
};
use kiln_harness::{require, FixtureNixpkgs, Registry, RegistryKind};
use serde_json::Value;

const TOOLS: [&str; 4] = ["umoci", "skopeo", "docker-registry", "nix-hash"];

/// The built `kiln` with `args`, without the caller's logging or epoch.
fn kiln(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH");
    command
}

/// What `kiln args` printed on stdout; panics with its output when it fails.
fn succeed(args: &[String]) -> String {
    run(&mut kiln(args))
}

/// `kiln args`, expected to fail.
fn fail(args: &[String]) -> Output {
    kiln(args).output().expect("run kiln")
}

/// The fixture, the image tools and the SPDX validator, or a skip (a
/// failure under CI).
fn setup() -> Option<(&'static FixtureNixpkgs, PathBuf)> {
    let fixture = FixtureNixpkgs::with_tools(&TOOLS)?;
    Some((fixture, spdx_validator()?))
}

/// The artifact types the index of `layout` lists, sorted.
fn artifact_types(layout: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut types: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["artifactType"].as_str().map(str::to_string))
        .collect();
    types.sort();
    types
}

/// The document of the artifact of type `artifact_type` in `layout`,
/// which must refer to the image `digest`.
fn layout_artifact(layout: &Path, artifact_type: &str, digest: &str) -> Vec<u8> {
    let blob =
        |digest: &str| std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == artifact_type)
        .unwrap_or_else(|| panic!("no {artifact_type} in {index}"));
    let manifest: Value = serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["subject"]["digest"], digest);
    blob(manifest["layers"][0]["digest"].as_str().unwrap())
}

/// Builds `app` with a cache in `cache` and `extra` flags; returns the
/// printed digest.
fn build(fixture: &FixtureNixpkgs, app: FixtureApp, cache: &Path, extra: &[String]) -> String {
    let mut args = vec![
        "--cache-dir".to_string(),
        cache.display().to_string(),
        "build".into(),
        app.dir().display().to_string(),
    ];
    args.extend(fixture.kiln_source_args());
    args.extend(extra.iter().cloned());
    succeed(&args).trim().to_string()
}

fn output(destination: String) -> Vec<String> {
    vec!["--output".into(), destination]
}

/// `kiln sbom IMAGE [extra]`: the document's bytes.
fn sbom(image: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["sbom".to_string(), image.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    succeed(&args).into_bytes()
}

/// The store paths the SBOM lists, with their SHA-256 checksums.
fn store_paths(document: &Value) -> Vec<(String, String)> {
    document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"].as_str().unwrap().starts_with("SPDXRef-nix-"))
        .map(|p| {
            assert_eq!(p["checksums"][0]["algorithm"], "SHA256", "{p}");
            (
                p["packageFileName"].as_str().unwrap().to_string(),
                p["checksums"][0]["checksumValue"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

/// The narinfo `field` of `store_path` in the fixture's file cache.
fn narinfo_field(fixture: &FixtureNixpkgs, store_path: &str, field: &str) -> String {
    let base = store_path.trim_start_matches("/nix/store/");
    let narinfo = fixture.xz_cache().join(format!("{}.narinfo", &base[..32]));
    let text =
        std::fs::read_to_string(&narinfo).unwrap_or_else(|e| panic!("{}: {e}", narinfo.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("{} has no {field}", narinfo.display()))
        .to_string()
}

/// A narinfo `NarHash` (`sha256:<nix base32>`) in hexadecimal, by Nix.
fn nar_hash_hex(nar_hash: &str) -> String {
    let (algorithm, hash) = nar_hash.split_once(':').unwrap();
    let out = nix_command("nix-hash")
        .args(["--type", algorithm, "--to-base16", hash])
        .output()
        .expect("run nix-hash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn node_sbom_is_valid_spdx_of_the_closure_and_npm_packages_and_the_same_twice() {
    let Some((fixture, validator)) = setup() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = FixtureApp::NodeRegistryDeps;
    let layout = work.path().join("layout");
    let cache = work.path().join("cache");
    let digest = build(
        fixture,
        app,
        &cache,
        &output(format!("oci:{}:latest", layout.display())),
    );
    let bytes = sbom(&format!("oci:{}:latest", layout.display()), &[]);
    let file = work.path().join("sbom.spdx.json");
    std::fs::write(&file, &bytes).unwrap();
    spdx_validate(&validator, &file);
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    eprintln!(
        "SBOM: {} bytes, {} packages, {} relationships",
        bytes.len(),
        document["packages"].as_array().unwrap().len(),
        document["relationships"].as_array().unwrap().len()
    );

    // Every store path in the image is listed, and nothing else, each with
    // the NAR hash its narinfo states.
    let listed = store_paths(&document);
    let bundle = Bundle::unpack(&layout, "latest");
    // kiln's profile, a folder of links it writes itself, is no package.
    let in_image: BTreeSet<String> = std::fs::read_dir(bundle.rootfs().join("nix/store"))
        .unwrap()
        .map(|e| format!("/nix/store/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|path| !path.ends_with("00000000000000000000000000000000-user-environment"))
        .collect();
    let names: BTreeSet<String> = listed.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(names, in_image);
    for (path, checksum) in &listed {
        let expected = nar_hash_hex(&narinfo_field(fixture, path, "NarHash"));
        assert_eq!(checksum, &expected, "{path}");
    }
    // References are DEPENDS_ON relationships, as the narinfo lists them.
    let node = listed
        .iter()
        .map(|(path, _)| path)
        .find(|path| path.contains("-nodejs-"))
        .expect("the closure has nodejs");
    let node_id = format!("SPDXRef-nix-{}", &node["/nix/store/".len()..][..32]);
    let depends: BTreeSet<String> = document["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spdxElementId"] == node_id.as_str() && r["relationshipType"] == "DEPENDS_ON")
        .map(|r| r["relatedSpdxElement"].as_str().unwrap().to_string())
        .collect();
    let references: BTreeSet<String> = narinfo_field(fixture, node, "References")
        .split_whitespace()
        .filter(|r| !node.ends_with(r))
        .map(|r| format!("SPDXRef-nix-{}", &r[..32]))
        .collect();
    assert_eq!(depends, references);

    // The app's npm package, as installed in node_modules.
    let installed: Value = serde_json::from_slice(
        &std::fs::read(
            bundle
                .rootfs()
                .join("app/node_modules/is-number/package.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let npm = document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "is-number")
        .expect("the SBOM lists is-number");
    assert_eq!(npm["versionInfo"], installed["version"]);
    assert_eq!(
        npm["externalRefs"][0]["referenceLocator"],
        format!(
            "pkg:npm/is-number@{}",
            installed["version"].as_str().unwrap()
        )
    );
    assert_eq!(npm["checksums"][0]["algorithm"], "SHA512");

    // A second build with a cache of its own, into an OCI archive: the same
    // image and the same SBOM bytes.
    let archive = work.path().join("again.oci.tar");
    let again = build(
        fixture,
        app,
        &work.path().join("cache-2"),
        &output(format!("oci-archive:{}", archive.display())),
    );
    assert_eq!(again, digest);
    assert_eq!(
        sbom(&format!("oci-archive:{}", archive.display()), &[]),
        bytes
    );
    // skopeo still reads the tagged image; the SBOM does not change its digest.
    let inspected = skopeo_inspect(&format!("oci-archive:{}:latest", archive.display()), &[]);
    assert_eq!(inspected["Digest"], digest.as_str());

    // Without the SBOM: the same digest, and only the provenance beside
    // the image; without both, a layout of one manifest.
    let bare = work.path().join("bare");
    let mut extra = output(format!("oci:{}:latest", bare.display()));
    extra.push("--no-sbom".into());
    assert_eq!(build(fixture, app, &cache, &extra), digest);
    assert_eq!(artifact_types(&bare), ["application/vnd.in-toto+json"]);
    let none = work.path().join("none");
    let mut extra = output(format!("oci:{}:latest", none.display()));
    extra.extend(["--no-sbom".into(), "--no-provenance".into()]);
    assert_eq!(build(fixture, app, &cache, &extra), digest);
    let index: Value =
        serde_json::from_slice(&std::fs::read(none.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let out = fail(&["sbom".into(), format!("oci:{}:latest", bare.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-sbom"));
}

/// The store paths (by `packageFileName`) and npm package purls of an SPDX
/// document, with their hashes.
fn spdx_contents(document: &Value) -> BTreeSet<(String, String)> {
    document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-image")
        .map(|p| {
            let name = p["packageFileName"]
                .as_str()
                .or(p["externalRefs"][0]["referenceLocator"].as_str())
                .unwrap();
            let hash = p["checksums"][0]["checksumValue"].as_str().unwrap_or("");
            (name.to_string(), hash.to_string())
        })
        .collect()
}

/// The same for a CycloneDX document: store paths by their bom-ref,
/// app packages by purl.
fn cyclonedx_contents(document: &Value) -> BTreeSet<(String, String)> {
    document["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["bom-ref"].as_str().unwrap();
            let hash = c["hashes"][0]["content"].as_str().unwrap_or("");
            (name.to_string(), hash.to_string())
        })
        .collect()
}

#[test]
fn node_sbom_as_cyclonedx_is_valid_and_lists_what_the_spdx_one_does() {
    let Some((fixture, _)) = setup() else {
        return;
    };
    let Some(python) = validators_python() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = FixtureApp::NodeRegistryDeps;
    let cache = work.path().join("cache");
    let cyclonedx = ["--sbom-format".to_string(), "cyclonedx".into()];
    let layout = work.path().join("cdx");
    let mut extra = output(format!("oci:{}:latest", layout.display()));
    extra.extend(cyclonedx.iter().cloned());
    let digest = build(fixture, app, &cache, &extra);
    let image = format!("oci:{}:latest", layout.display());
    let bytes = sbom(&image, &[]);
    assert_eq!(sbom(&image, &["--format", "cyclonedx"]), bytes);
    let file = work.path().join("sbom.cdx.json");
    std::fs::write(&file, &bytes).unwrap();
    cyclonedx_validate(&python, &file);
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document["bomFormat"], "CycloneDX");
    assert_eq!(
        document["metadata"]["component"]["version"],
        digest.as_str()
    );
    assert_eq!(
        artifact_types(&layout),
        [
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ]
    );
    // Asking for the format the image lacks names the way out.
    let out = fail(&[
        "sbom".into(),
        image.clone(),
        "--format".into(),
        "spdx".into(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("application/spdx+json"));

    // Built again, into an archive: the same image and the same bytes.
    let archive = work.path().join("again.oci.tar");
    let mut extra = output(format!("oci-archive:{}", archive.display()));
    extra.extend(cyclonedx.iter().cloned());
    assert_eq!(build(fixture, app, &cache, &extra), digest);
    assert_eq!(
        sbom(&format!("oci-archive:{}", archive.display()), &[]),
        bytes
    );

    // The SPDX SBOM of the same image lists the same store paths and npm
    // packages with the same hashes.
    let spdx_layout = work.path().join("spdx");
    let extra = output(format!("oci:{}:latest", spdx_layout.display()));
    assert_eq!(build(fixture, app, &cache, &extra), digest);
    let spdx: Value =
        serde_json::from_slice(&sbom(&format!("oci:{}:latest", spdx_layout.display()), &[]))
            .unwrap();
    let listed = cyclonedx_contents(&document);
    assert!(listed
        .iter()
        .any(|(name, _)| name.starts_with("pkg:npm/is-number@")));
    assert_eq!(listed, spdx_contents(&spdx));
}

/// Whether a folder named `name` is anywhere under `dir` (symlinks not
/// followed).
fn has_folder(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            is_dir && (entry.file_name() == name || has_folder(&entry.path(), name))
        })
}

#[test]
fn python_requirement_pins_are_listed_as_pypi_packages() {
    let Some((fixture, validator)) = setup() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    build(
        fixture,
        FixtureApp::PythonIndexDeps,
        &work.path().join("cache"),
        &output(format!("oci:{}:latest", layout.display())),
    );
    let bytes = sbom(&format!("oci:{}:latest", layout.display()), &[]);
    let file = work.path().join("python.spdx.json");
    std::fs::write(&file, &bytes).unwrap();
    spdx_validate(&validator, &file);
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    // requirements.txt pins six==1.16.0, and pip installed that release.
    let six = document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "six")
        .expect("the SBOM lists six");
    assert_eq!(
        six["externalRefs"][0]["referenceLocator"],
        "pkg:pypi/six@1.16.0"
    );
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(has_folder(&bundle.rootfs(), "six-1.16.0.dist-info"));
}

/// `kiln pack bash` arguments to push to `destination` with `extra` flags.
fn pack_push(
    fixture: &FixtureNixpkgs,
    cache: &Path,
    destination: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "--cache-dir".to_string(),
        cache.display().to_string(),
        "pack".into(),
        "bash".into(),
    ];
    args.extend(fixture.kiln_source_args());
    args.extend(["--push".into(), destination.to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn provenance_names_the_image_and_plan_without_credentials_and_is_the_same_twice() {
    let Some((fixture, _)) = setup() else {
        return;
    };
    let http = fixture.serve_http();
    let secret = "s3cr3t-kiln-token";
    let with_credentials = http
        .url()
        .replacen("://", &format!("://kiln-user:{secret}@"), 1);
    let work = tempfile::tempdir().unwrap();
    let app = FixtureApp::NodeRegistryDeps;
    let extra_for = |layout: &Path| {
        let mut extra = output(format!("oci:{}:latest", layout.display()));
        extra.extend(["--substituter".into(), with_credentials.clone()]);
        extra
    };
    let first = work.path().join("first");
    let digest = build(fixture, app, &work.path().join("cache"), &extra_for(&first));
    let bytes = layout_artifact(&first, "application/vnd.in-toto+json", &digest);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains(secret), "{text}");
    let statement: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], &digest[7..]);

    // The plan digest is that of what `kiln plan` prints.
    let printed = succeed(&["plan".to_string(), app.dir().display().to_string()]);
    let plan = printed.strip_suffix('\n').unwrap_or(&printed);
    let definition = &statement["predicate"]["buildDefinition"];
    let sha256 = kiln_harness::hash::sha256_digest(plan.as_bytes());
    assert_eq!(
        definition["externalParameters"]["planDigest"]["sha256"],
        sha256.trim_start_matches("sha256:")
    );
    // The fixture app sits in kiln's own git checkout.
    if let Ok(head) = Command::new("git")
        .arg("-C")
        .arg(app.dir())
        .args(["rev-parse", "HEAD"])
        .output()
    {
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(
            definition["externalParameters"]["source"]["gitCommit"],
            head.trim()
        );
    }
    assert_eq!(
        definition["externalParameters"]["plan"],
        serde_json::from_str::<Value>(plan).unwrap()
    );
    let phases = definition["internalParameters"]["phases"]
        .as_array()
        .unwrap();
    assert!(
        phases
            .iter()
            .any(|p| p["cmds"].to_string().contains("npm ci")),
        "{phases:?}"
    );
    let substituters = definition["internalParameters"]["substituters"].to_string();
    assert!(substituters.contains("***@127.0.0.1"), "{substituters}");
    // The SBOM beside it is named as a byproduct.
    let byproducts = &statement["predicate"]["runDetails"]["byproducts"];
    assert_eq!(byproducts[0]["mediaType"], "application/spdx+json");

    // A second build, with a cache of its own: the same bytes.
    let second = work.path().join("second");
    let again = build(
        fixture,
        app,
        &work.path().join("cache-2"),
        &extra_for(&second),
    );
    assert_eq!(again, digest);
    assert_eq!(
        layout_artifact(&second, "application/vnd.in-toto+json", &digest),
        bytes
    );
}

#[test]
fn pushed_sbom_is_listed_under_the_referrers_tag_and_skopeo_fetches_it() {
    let Some((fixture, validator)) = setup() else {
        return;
    };
    if !require(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryKind::Plain);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let destination = format!("{host}/kiln/bash:v1");
    let insecure = ["--insecure-registry", host.as_str()];
    let digest = succeed(&pack_push(fixture, &cache, &destination, &insecure))
        .trim()
        .to_string();

    // The image's digest is what kiln printed, with its SBOM beside it.
    let image = skopeo_inspect(&format!("docker://{destination}"), &["--tls-verify=false"]);
    assert_eq!(image["Digest"], digest.as_str());
    let tag = digest.replacen(':', "-", 1);
    let index = skopeo_inspect(
        &format!("docker://{host}/kiln/bash:{tag}"),
        &["--tls-verify=false", "--raw"],
    );
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let referrers = index["manifests"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{index}");
    assert_eq!(referrers[0]["artifactType"], "application/spdx+json");
    let artifact_digest = referrers[0]["digest"].as_str().unwrap();
    // (`kiln pack` has no plan or source, so it attaches no provenance.)
    let artifact = skopeo_inspect(
        &format!("docker://{host}/kiln/bash@{artifact_digest}"),
        &["--tls-verify=false", "--raw"],
    );
    assert_eq!(artifact["subject"]["digest"], digest.as_str());

    // skopeo copies the artifact out, checking every digest; its one layer
    // is the SBOM kiln sbom prints, which spdx-tools accepts.
    let copy = work.path().join("copy");
    skopeo_copy(
        &format!("docker://{host}/kiln/bash@{artifact_digest}"),
        &format!("oci:{}:sbom", copy.display()),
        &["--src-tls-verify=false"],
    );
    let copied = kiln_harness::images::layout_manifest(&copy, "sbom");
    let layer = copied["layers"][0]["digest"].as_str().unwrap();
    let from_skopeo = std::fs::read(copy.join("blobs/sha256").join(&layer[7..])).unwrap();
    let printed = sbom(&format!("docker://{destination}"), &insecure);
    assert_eq!(printed.trim_ascii_end(), from_skopeo.as_slice());
    let file = work.path().join("pushed.spdx.json");
    std::fs::write(&file, &from_skopeo).unwrap();
    spdx_validate(&validator, &file);

    // Pushing again (another tag) keeps one entry per artifact.
    succeed(&pack_push(
        fixture,
        &cache,
        &format!("{host}/kiln/bash:v2"),
        &insecure,
    ));
    let index = skopeo_inspect(
        &format!("docker://{host}/kiln/bash:{tag}"),
        &["--tls-verify=false", "--raw"],
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
}

#[test]
fn a_referrers_tag_holding_an_image_is_not_overwritten() {
    let Some((fixture, _)) = setup() else {
        return;
    };
    let registry = Registry::start(RegistryKind::Plain);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let insecure = ["--insecure-registry", host.as_str()];
    let digest = succeed(&pack_push(
        fixture,
        &cache,
        &format!("{host}/app:1"),
        &["--no-sbom", insecure[0], insecure[1]],
    ))
    .trim()
    .to_string();
    // Someone else's image under the tag kiln would list the SBOM in.
    let tag = digest.replacen(':', "-", 1);
    let other = work.path().join("other");
    busybox_image(&other, "b");
    skopeo_copy(
        &format!("oci:{}:b", other.display()),
        &format!("docker://{host}/app:{tag}"),
        &["--dest-tls-verify=false"],
    );
    let output = fail(&pack_push(
        fixture,
        &cache,
        &format!("{host}/app:2"),
        &insecure,
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&tag) && stderr.contains("remove the tag"),
        "{stderr}"
    );
    // The image itself went up; the tag still holds the other image.
    let image = skopeo_inspect(&format!("docker://{host}/app:2"), &["--tls-verify=false"]);
    assert_eq!(image["Digest"], digest.as_str());
    let kept = skopeo_inspect(
        &format!("docker://{host}/app:{tag}"),
        &["--tls-verify=false", "--raw"],
    );
    assert!(kept["layers"].is_array(), "{kept}");
}
