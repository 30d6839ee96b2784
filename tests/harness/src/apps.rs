//! The fixture apps under `tests/fixtures/apps/`, written for kiln's tests.
//! Each answers [`FixtureApp::body`] over HTTP on the port in `$PORT`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::free_port;
use crate::validators::Bundle;
use crate::FixtureNixpkgs;

/// One fixture app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureApp {
    /// Node HTTP server with an `npm ci`-able lockfile and a start script.
    Node,
    /// Python HTTP server, stdlib only, with a `requirements.txt`.
    Python,
    /// A static site (`Staticfile`) served by nginx.
    StaticSite,
    /// A shell script app started from its `Procfile`.
    Shell,
    /// An app configured entirely by its `nixpacks.toml`.
    Configured,
    /// An app with `aptPkgs`, built on a Debian base image; not in
    /// [`FixtureApp::ALL`], which builds on kiln's own base.
    Apt,
    /// An app whose start phase has a `runImage` and `onlyIncludeFiles`.
    RunImage,
    /// A Node server whose dependency `npm ci` fetches from the package
    /// registry (network needed; not in [`FixtureApp::ALL`]).
    NodeRegistryDeps,
    /// A Python server whose `requirements.txt` pip fetches from the package
    /// index (network needed; not in [`FixtureApp::ALL`]).
    PythonIndexDeps,
    /// A flit project whose install phase runs `pip install .` (network
    /// needed for its build backend; not in [`FixtureApp::ALL`]).
    PythonFlitProject,
    /// A Poetry project whose `poetry install` installs the project itself
    /// (network needed for Poetry; not in [`FixtureApp::ALL`]).
    PythonPoetryProject,
    /// A Node server whose config installs a CLI with `npm install -g` and
    /// whose start command runs it (network needed; not in
    /// [`FixtureApp::ALL`]).
    NodeGlobalCli,
    /// A pnpm project whose `packageManager` pins a pnpm other than the
    /// fixture's; corepack fetches it (network needed; not in
    /// [`FixtureApp::ALL`]).
    NodePnpmCorepack,
    /// A Go module of the standard library only, built by the Go provider's
    /// plan and run as a static binary in the slim run image (not in
    /// [`FixtureApp::ALL`]: it compiles the standard library).
    GoServer,
    /// A Vite single-page app, built by `npm run build` and served by Caddy
    /// (network needed for `npm ci`; not in [`FixtureApp::ALL`]).
    NodeViteSpa,
    /// A PHP app autoloaded by Composer (no dependencies), served by nginx
    /// and php-fpm as the PHP provider plans it (not in
    /// [`FixtureApp::ALL`]: it needs the fixture's PHP).
    PhpApp,
    /// A Rust server of the standard library only, built by the Rust
    /// provider's plan for glibc (not in [`FixtureApp::ALL`]: it needs the
    /// fixture's Rust).
    RustServer,
    /// A Ruby server of the standard library with an empty bundle: Bundler
    /// installs and runs it, Ruby and OpenSSL from the fixture (not in
    /// [`FixtureApp::ALL`]: it needs the fixture's Ruby).
    RubyApp,
    /// A Deno server run as the Deno provider plans it (not in
    /// [`FixtureApp::ALL`]: it needs the fixture's Deno).
    DenoApp,
    /// A Bun server with no dependencies, installed and started by Bun as
    /// the Node provider plans Bun apps (not in [`FixtureApp::ALL`]: it
    /// needs the fixture's Bun).
    BunApp,
    /// A Java server of the JDK only, packaged by Maven from Debian's
    /// plugins into a runnable jar as the Java provider plans it (not in
    /// [`FixtureApp::ALL`]: it needs the fixture's JDK and Maven).
    JavaServer,
}

impl FixtureApp {
    /// Every fixture app.
    pub const ALL: [FixtureApp; 5] = [
        FixtureApp::Node,
        FixtureApp::Python,
        FixtureApp::StaticSite,
        FixtureApp::Shell,
        FixtureApp::Configured,
    ];

    /// Folder name under `tests/fixtures/apps/`.
    pub fn name(self) -> &'static str {
        match self {
            FixtureApp::Node => "node-server",
            FixtureApp::Python => "python-server",
            FixtureApp::StaticSite => "static-site",
            FixtureApp::Shell => "shell-app",
            FixtureApp::Configured => "configured-app",
            FixtureApp::Apt => "apt-app",
            FixtureApp::RunImage => "run-image-app",
            FixtureApp::NodeRegistryDeps => "node-registry-deps",
            FixtureApp::PythonIndexDeps => "python-index-deps",
            FixtureApp::PythonFlitProject => "python-flit-project",
            FixtureApp::PythonPoetryProject => "python-poetry-project",
            FixtureApp::NodeGlobalCli => "node-global-cli",
            FixtureApp::NodePnpmCorepack => "node-pnpm-corepack",
            FixtureApp::GoServer => "go-server",
            FixtureApp::NodeViteSpa => "node-vite-spa",
            FixtureApp::PhpApp => "php-app",
            FixtureApp::RustServer => "rust-server",
            FixtureApp::RubyApp => "ruby-app",
            FixtureApp::DenoApp => "deno-app",
            FixtureApp::BunApp => "bun-app",
            FixtureApp::JavaServer => "java-server",
        }
    }

    /// The app's folder.
    pub fn dir(self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/apps")
            .join(self.name())
    }

    /// What the app answers on `GET /`.
    pub fn body(self) -> String {
        format!("hello from kiln fixture {}\n", self.name())
    }

    /// `kiln build` of the app with the fixture's packages into
    /// `oci:<layout>:latest`, with its cache in `cache`, for the caller to
    /// add to and run; `kiln` is the binary under test.
    pub fn build_command(
        self,
        kiln: &str,
        fixture: &FixtureNixpkgs,
        cache: &Path,
        layout: &Path,
    ) -> Command {
        let mut command = Command::new(kiln);
        command
            .env_remove("RUST_LOG")
            .arg("--cache-dir")
            .arg(cache)
            .arg("build")
            .arg(self.dir())
            .args(fixture.kiln_source_args())
            .arg("--output")
            .arg(format!("oci:{}:latest", layout.display()));
        command
    }

    /// Runs [`FixtureApp::build_command`] with its cache in `work` and the
    /// image into `oci:<work>/layout:latest`; returns kiln's output and the
    /// layout.
    pub fn build_in(self, kiln: &str, fixture: &FixtureNixpkgs, work: &Path) -> (Output, PathBuf) {
        let layout = work.join("layout");
        let output = self
            .build_command(kiln, fixture, &work.join("cache"), &layout)
            .output()
            .expect("run kiln build");
        (output, layout)
    }

    /// What `kiln plan` (the binary `kiln`) prints for the app.
    pub fn plan(self, kiln: &str) -> serde_json::Value {
        let output = Command::new(kiln)
            .arg("plan")
            .arg(self.dir())
            .output()
            .expect("run kiln plan");
        assert!(
            output.status.success(),
            "kiln plan {}: {}",
            self.name(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("kiln plan prints JSON")
    }

    /// Runs the image `tag` of the OCI layout `layout` with runc and checks
    /// that it answers [`FixtureApp::body`] on `$PORT` over loopback.
    pub fn answers_from(self, layout: &Path, tag: &str) {
        let bundle = Bundle::unpack(layout, tag);
        let port = free_port();
        bundle.prepare(|config| {
            let env = config["process"]["env"]
                .as_array_mut()
                .expect("config has process.env");
            // The plan's own PORT (PHP's is 80) gives way to the test's.
            env.retain(|entry| !entry.as_str().is_some_and(|e| e.starts_with("PORT=")));
            env.push(format!("PORT={port}").into());
        });
        let mut container = bundle.start(&format!("kiln-build-{}-{port}", self.name()));
        let url = format!("http://127.0.0.1:{port}/");
        container.wait_ready(Duration::from_secs(30), || crate::http::get(&url).is_some());
        assert_eq!(
            crate::http::get(&url),
            Some(self.body()),
            "{}",
            container.log()
        );
    }
}
