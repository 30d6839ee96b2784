//! skopeo, umoci, oci-image-tool and runc each work here, on a tiny busybox
//! image that umoci itself makes, so later failures point at kiln.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln_harness::process::{free_port, run};
use kiln_harness::validators::{oci_image_tool_validate, skopeo_copy, skopeo_inspect, Bundle};
use kiln_harness::{http, require, require_root, Registry, RegistryKind};

const TOOLS: [&str; 6] = [
    "umoci",
    "skopeo",
    "oci-image-tool",
    "runc",
    "busybox",
    "docker-registry",
];

/// An OCI layout at `layout` with tag `t`: busybox at /bin, `cmd` as its command.
fn busybox_image(layout: &Path, cmd: &[&str]) {
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = layout.with_extension("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = kiln_harness::require::find_program("busybox").unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    let mut config = Command::new("umoci");
    config.args(["config", "--image", &image]);
    for arg in cmd {
        config.args(["--config.cmd", arg]);
    }
    run(&mut config);
}

#[test]
fn validators_accept_an_image_umoci_made_and_runc_runs_it() {
    if !require(&TOOLS) || !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_image(&layout, &["/bin/busybox", "echo", "hello from runc"]);

    oci_image_tool_validate(&layout, "t");
    let inspected = skopeo_inspect(&format!("oci:{}:t", layout.display()), &[]);
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);

    let registry = Registry::start(RegistryKind::Plain);
    let remote = format!("docker://{}/harness/busybox:t", registry.host());
    skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &remote,
        &["--dest-tls-verify=false"],
    );
    let pushed = skopeo_inspect(&remote, &["--tls-verify=false"]);
    assert_eq!(pushed["Layers"], inspected["Layers"]);

    let bundle = Bundle::unpack(&layout, "t");
    assert!(bundle.rootfs().join("bin/busybox").exists());
    bundle.prepare(|_| {});
    let output = bundle.run_to_completion("kiln-harness-echo");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from runc\n");
}

#[test]
fn a_container_serves_on_loopback_and_stops_on_drop() {
    if !require(&TOOLS) || !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_image(&layout, &["/bin/busybox", "sh", "-c", "mkdir /www && echo up > /www/index.html && exec /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www"]);
    let port = free_port();
    let bundle = Bundle::unpack(&layout, "t");
    bundle.prepare(|config| {
        let env = config["process"]["env"].as_array_mut().unwrap();
        env.push(format!("PORT={port}").into());
    });
    let url = format!("http://127.0.0.1:{port}/");
    {
        let mut container = bundle.start("kiln-harness-httpd");
        container.wait_ready(Duration::from_secs(20), || http::get(&url).is_some());
        assert_eq!(
            http::get(&url).as_deref(),
            Some("up\n"),
            "{}",
            container.log()
        );
    }
    assert_eq!(
        http::get(&url),
        None,
        "the container still answers after drop"
    );
}
