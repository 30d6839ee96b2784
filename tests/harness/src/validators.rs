//! Independent checks of what kiln writes, by the tools users trust:
//! skopeo, umoci, oci-image-tool and runc.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::process::{run, ChildGuard};

/// `skopeo inspect [extra] <reference>` as JSON (`oci:DIR:TAG`,
/// `docker://HOST/NAME:TAG`, `oci-archive:FILE`, ...).
pub fn skopeo_inspect(reference: &str, extra: &[&str]) -> Value {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(reference));
    serde_json::from_str(&out).expect("skopeo inspect printed JSON")
}

/// `skopeo copy [extra] <from> <to>`.
pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .args(extra)
        .args([from, to]));
}

/// Copies `reference` out of a plain-HTTP registry into the OCI layout
/// `dir/copy` (tag `c`) with skopeo, which checks every blob's digest on
/// the way, and returns that copy's layer digests.
pub fn layers_copied_by_skopeo(reference: &str, dir: &Path) -> Vec<String> {
    let copy = dir.join("copy");
    skopeo_copy(
        reference,
        &format!("oci:{}:c", copy.display()),
        &["--src-tls-verify=false"],
    );
    crate::images::layout_layer_digests(&copy, "c")
}

/// `oci-image-tool validate --type image --ref name=<tag> <layout>`: the
/// layout, the manifest tagged `tag`, its config and every layer.
pub fn oci_image_tool_validate(layout: &Path, tag: &str) {
    run(Command::new("oci-image-tool")
        .args([
            "validate",
            "--type",
            "image",
            "--ref",
            &format!("name={tag}"),
        ])
        .arg(layout));
}

/// The capabilities container engines grant a container by default.
const CONTAINER_CAPABILITIES: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// An image unpacked by umoci into a runtime bundle (`rootfs/` and
/// `config.json`), ready for runc. Removed on drop.
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// `umoci unpack --image <layout>:<tag>` into a new temporary bundle.
    pub fn unpack(layout: &Path, tag: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("kiln-bundle-")
            .tempdir()
            .expect("bundle temp dir");
        let image = format!("{}:{tag}", layout.display());
        let mut umoci = Command::new("umoci");
        umoci.arg("unpack");
        if !crate::require::is_root() {
            umoci.arg("--rootless");
        }
        run(umoci.args(["--image", &image]).arg(dir.path().join("b")));
        Bundle { dir }
    }

    /// The bundle folder.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("b")
    }

    /// The unpacked root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// The runtime config umoci generated from the image config.
    pub fn config(&self) -> Value {
        let text = std::fs::read(self.path().join("config.json")).expect("read config.json");
        serde_json::from_slice(&text).expect("parse config.json")
    }

    /// Makes the config runnable on this machine and reachable from the test:
    /// drops `linux.resources` and `cgroupsPath` (cgroups here are hybrid),
    /// shares the host network so the app answers on loopback, grants the
    /// capabilities container engines grant, turns the terminal off, and
    /// applies `edit` for test-specific changes.
    pub fn prepare(&self, edit: impl FnOnce(&mut Value)) {
        let mut config = self.config();
        let linux = config["linux"].as_object_mut().expect("config has linux");
        linux.remove("resources");
        linux.remove("cgroupsPath");
        if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            namespaces.retain(|ns| ns["type"] != "network");
        }
        config["process"]["terminal"] = Value::Bool(false);
        // runc's default spec grants three capabilities; Docker, Podman and
        // Kubernetes grant these, and images (nginx chowning its temp
        // folders) expect them.
        let capabilities = Value::from(CONTAINER_CAPABILITIES.to_vec());
        for set in ["bounding", "effective", "permitted"] {
            config["process"]["capabilities"][set] = capabilities.clone();
        }
        edit(&mut config);
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&config).expect("serialize config.json"),
        )
        .expect("write config.json");
    }

    /// Runs the bundle's process to completion with runc and returns its output.
    pub fn run_to_completion(&self, id: &str) -> Output {
        let state = self.dir.path().join("runc-state");
        let output = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(self.path())
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .expect("run runc");
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force", id])
            .output();
        output
    }

    /// Starts the bundle's process with runc in the background; it is killed
    /// and deleted when the returned guard drops.
    pub fn start(&self, id: &str) -> Container {
        let state = self.dir.path().join("runc-state");
        let process = ChildGuard::spawn(
            "runc",
            Command::new("runc")
                .arg("--root")
                .arg(&state)
                .args(["run", "--bundle"])
                .arg(self.path())
                .arg(id),
            &self.dir.path().join(format!("{id}.log")),
        );
        Container {
            process,
            state,
            id: id.to_string(),
        }
    }
}

/// A container started by [`Bundle::start`].
pub struct Container {
    process: ChildGuard,
    state: PathBuf,
    id: String,
}

impl Container {
    /// Waits until `ready` holds, failing with the container's output if it
    /// exits first.
    pub fn wait_ready(&mut self, timeout: Duration, ready: impl FnMut() -> bool) {
        self.process.wait_ready(timeout, ready);
    }

    /// What the container printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let runc = |args: &[&str]| {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(args)
                .output();
        };
        runc(&["kill", &self.id, "KILL"]);
        runc(&["delete", "--force", &self.id]);
    }
}

/// `pyspdxtools` of spdx-tools, from the venv tests/setup.sh's
/// `install_validators` makes under the target folder; `None` (after
/// skip_or_fail) when it is missing.
pub fn spdx_validator() -> Option<PathBuf> {
    installed_tool("kiln-validators/bin/pyspdxtools", "install_validators")
}

/// The program at `relative` under the target folder, which tests/setup.sh's
/// `installer` puts there; `None` (after skip_or_fail) when it is missing.
fn installed_tool(relative: &str, installer: &str) -> Option<PathBuf> {
    let program = crate::nixpkgs::target_dir().join(relative);
    if program.is_file() {
        return Some(program);
    }
    crate::require::skip_or_fail(&format!(
        "{} missing (tests/run installs it: {installer} in tests/setup.sh)",
        program.display()
    ));
    None
}

/// Validates the SPDX JSON document `file` with `validator` (spdx-tools'
/// `pyspdxtools -i FILE`); panics with its findings when it is invalid.
pub fn spdx_validate(validator: &Path, file: &Path) -> String {
    let output = Command::new(validator)
        .arg("--infile")
        .arg(file)
        .output()
        .expect("run pyspdxtools");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && !said.contains("validation error"),
        "pyspdxtools refused {}: {said}",
        file.display()
    );
    said
}

/// The skopeo that verifies sigstore signatures (Debian 13's, which lacks
/// Debian 12's "sigstore disabled" patch), from the wrapper tests/setup.sh's
/// `install_sigstore_skopeo` writes under the target folder; `None` (after
/// skip_or_fail) when it is missing.
pub fn sigstore_skopeo() -> Option<PathBuf> {
    installed_tool("kiln-skopeo/skopeo", "install_sigstore_skopeo")
}

/// The Python of the validators venv (tests/setup.sh's
/// `install_validators`), which has cyclonedx-python-lib and PyNaCl;
/// `None` (after skip_or_fail) when it is missing.
pub fn validators_python() -> Option<PathBuf> {
    installed_tool("kiln-validators/bin/python", "install_validators")
}

/// Validates the CycloneDX 1.5 JSON document `file` with
/// cyclonedx-python-lib's strict JSON schema validation, run by `python`
/// (from [`validators_python`]); panics with its findings when it is
/// invalid.
pub fn cyclonedx_validate(python: &Path, file: &Path) {
    const SCRIPT: &str = "
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
with open(sys.argv[1]) as f:
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(f.read())
if error is not None:
    sys.exit(str(error))
";
    let output = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(file)
        .output()
        .expect("run the validators' python");
    assert!(
        output.status.success(),
        "cyclonedx-python-lib refused {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
