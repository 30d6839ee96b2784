//! The fixture nixpkgs is real Nix: its caches are signed, its closures come
//! from Nix's own reference scanning, and its programs run from /nix/store.

use std::process::Command;

use kiln_harness::nixpkgs::nix_command;
use kiln_harness::process::run;
use kiln_harness::{http, FixtureNixpkgs};

/// Copies `attribute`'s closure from `cache_url` into a fresh chroot store
/// with real `nix copy`, trusting `key`; returns whether nix accepted it.
fn nix_copy_into_temp_store(cache_url: &str, key: &str, path: &str) -> (bool, String) {
    let store = tempfile::tempdir().unwrap();
    let output = nix_command("nix")
        .args(["copy", "--from", cache_url])
        .arg("--store")
        .arg(store.path())
        .args(["--option", "trusted-public-keys", key, path])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        let copied = store.path().join(path.trim_start_matches('/'));
        assert!(
            copied.exists(),
            "nix copy succeeded but {copied:?} is missing"
        );
    }
    (output.status.success(), stderr)
}

#[test]
fn nix_accepts_the_signed_xz_and_zstd_caches() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let python = fixture.store_path("python3");
    for url in [fixture.xz_cache_url(), fixture.zstd_cache_url()] {
        let (ok, stderr) = nix_copy_into_temp_store(&url, fixture.public_key(), python);
        assert!(ok, "nix copy from {url} failed:\n{stderr}");
    }
}

#[test]
fn nix_refuses_the_cache_under_another_key() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = (dir.path().join("sk"), dir.path().join("pk"));
    run(nix_command("nix-store")
        .args(["--generate-binary-cache-key", "kiln-fixture-1"])
        .args([&secret, &public]));
    let other_key = std::fs::read_to_string(public).unwrap();
    let (ok, stderr) = nix_copy_into_temp_store(
        &fixture.xz_cache_url(),
        other_key.trim(),
        fixture.store_path("zlib"),
    );
    assert!(
        !ok,
        "nix accepted the cache under a key that did not sign it"
    );
    assert!(
        stderr.contains("signature"),
        "unexpected refusal:\n{stderr}"
    );
}

#[test]
fn http_cache_serves_what_nix_can_substitute() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = fixture.serve_http();
    let info = http::get(&format!("{}/nix-cache-info", cache.url())).expect("nix-cache-info");
    assert!(info.contains("StoreDir: /nix/store"), "{info}");
    let hash = &fixture.store_path("bash")["/nix/store/".len()..][..32];
    let narinfo = http::get(&format!("{}/{hash}.narinfo", cache.url())).expect("narinfo");
    assert!(narinfo.contains("Sig: kiln-fixture-1:"), "{narinfo}");

    let (ok, stderr) = nix_copy_into_temp_store(
        &cache.url(),
        fixture.public_key(),
        fixture.store_path("bash"),
    );
    assert!(
        ok,
        "nix copy over HTTP failed:\n{stderr}\nnginx:\n{}",
        cache.log()
    );
}

#[test]
fn nodejs_closure_holds_glibc_and_gcc_lib_and_node_runs_from_the_store() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let node = fixture.store_path("nodejs_20");
    let closure = run(nix_command("nix-store").args(["-qR", node]));
    for dependency in ["glibc", "stdenv.cc.cc.lib"] {
        let path = fixture.store_path(dependency);
        assert!(
            closure.lines().any(|l| l == path),
            "{path} not in\n{closure}"
        );
    }
    let binary = format!("{node}/bin/node");
    let interpreter = run(Command::new("patchelf").args(["--print-interpreter", &binary]));
    assert!(
        interpreter.starts_with(fixture.store_path("glibc")),
        "node's interpreter is {interpreter}"
    );
    let rpath = run(Command::new("patchelf").args(["--print-rpath", &binary]));
    assert!(
        rpath.split(':').all(|p| p.starts_with("/nix/store/")),
        "{rpath}"
    );
    let version = run(Command::new(&binary).arg("--version").env_clear());
    assert!(version.starts_with('v'), "node --version printed {version}");
    let npm = run(Command::new(format!("{node}/bin/npm"))
        .arg("--version")
        .env_clear()
        .env("HOME", "/tmp"));
    assert!(
        npm.trim().split('.').count() == 3,
        "npm --version printed {npm}"
    );
}

#[test]
fn python_makes_a_venv_with_pip_and_links_the_fixture_zlib() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let python = format!("{}/bin/python3", fixture.store_path("python3"));
    let closure = run(nix_command("nix-store").args(["-qR", fixture.store_path("python3")]));
    assert!(
        closure.lines().any(|l| l == fixture.store_path("zlib")),
        "{closure}"
    );

    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    run(Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .env_clear());
    let pip = run(Command::new(venv.join("bin/pip"))
        .arg("--version")
        .env_clear());
    assert!(pip.starts_with("pip "), "pip --version printed {pip}");
    let zlib = run(Command::new(&python)
        .args([
            "-c",
            "import zlib, ssl; print(zlib.decompress(zlib.compress(b'ok')).decode())",
        ])
        .env_clear());
    assert_eq!(zlib.trim(), "ok");
}

#[test]
fn overlays_apply_like_nixpkgs() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let expression = format!(
        "let p = import {} {{ overlays = [ (final: prev: {{ hello-overlay = prev.bash; }}) ]; }}; \
         in p.hello-overlay.outPath",
        fixture.nixpkgs_dir().display()
    );
    let path = run(nix_command("nix-instantiate").args(["--eval", "--json", "-E", &expression]));
    assert_eq!(path.trim(), format!("\"{}\"", fixture.store_path("bash")));
}

#[test]
fn evaluator_closure_is_its_own_libraries_and_the_fixture_ones() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let nix = fixture.evaluator();
    let libraries = ["glibc", "stdenv.cc.cc.lib", "zlib"].map(|a| fixture.store_path(a));
    let closure = run(nix_command("nix-store").args(["-qR", nix]));
    let mut closure: Vec<&str> = closure.lines().collect();
    closure.sort();
    let mut expected: Vec<&str> = libraries.iter().copied().chain([nix]).collect();
    expected.sort();
    assert_eq!(closure, expected);

    // The signed cache states the same references, as kiln reads them.
    let hash = &nix["/nix/store/".len()..][..32];
    let narinfo =
        std::fs::read_to_string(fixture.xz_cache().join(format!("{hash}.narinfo"))).unwrap();
    let references = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("References: "))
        .unwrap_or_else(|| panic!("no References in\n{narinfo}"));
    for library in libraries {
        let name = library.trim_start_matches("/nix/store/");
        assert!(references.split(' ').any(|r| r == name), "{references}");
    }

    // Every ELF file loads from the store only.
    let binary = format!("{nix}/bin/nix");
    let interpreter = run(Command::new("patchelf").args(["--print-interpreter", &binary]));
    assert!(
        interpreter.starts_with(fixture.store_path("glibc")),
        "{interpreter}"
    );
    let lib = std::path::Path::new(nix).join("lib");
    let mut elf_files = vec![std::path::PathBuf::from(&binary)];
    elf_files.extend(std::fs::read_dir(&lib).unwrap().map(|e| e.unwrap().path()));
    for file in elf_files {
        let rpath = run(Command::new("patchelf").arg("--print-rpath").arg(&file));
        assert!(
            rpath
                .trim()
                .split(':')
                .all(|p| p.starts_with("/nix/store/")),
            "{}: {rpath}",
            file.display()
        );
    }
    let version = run(Command::new(format!("{nix}/bin/nix-instantiate"))
        .arg("--version")
        .env_clear());
    assert_eq!(version.trim(), "nix-instantiate (Nix) 2.8.0");
}

#[test]
fn served_archive_unpacks_to_a_nixpkgs_that_evaluates_like_the_folder() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = fixture.serve_archive();
    let commit = "a3a3dda3bacf61e8a39258a0ed9c924eeca8e293";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nixpkgs.tar.gz");
    run(Command::new("curl")
        .args(["--silent", "--fail", "--output"])
        .arg(&file)
        .arg(server.archive_url(commit)));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&file)
        .arg("-C")
        .arg(dir.path()));
    let unpacked = dir.path().join(format!("nixpkgs-{commit}"));
    let expression = format!("(import {} {{}}).bash.outPath", unpacked.display());
    let path = run(nix_command("nix-instantiate").args(["--eval", "--json", "-E", &expression]));
    assert_eq!(path.trim(), format!("\"{}\"", fixture.store_path("bash")));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, [format!("/{commit}.tar.gz")]);
}
