//! Shared by the sandbox tests: phases over fixture store paths, small base
//! trees written by the tests, and an independent check of a diff with umoci.

// Each sandbox test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use kiln::sandbox::{phase_environment, Output, PhaseEnvironment, Sandbox, StoreBind};
use kiln_harness::nixpkgs::nix_command;
use kiln_harness::process::run;
use kiln_harness::validators::Bundle;
use kiln_harness::FixtureNixpkgs;

/// The store paths of the closure of `attributes`, as binds.
pub fn closure(fixture: &FixtureNixpkgs, attributes: &[&str]) -> Vec<StoreBind> {
    let paths: Vec<&str> = attributes.iter().map(|a| fixture.store_path(a)).collect();
    run(nix_command("nix-store")
        .arg("--query")
        .arg("--requisites")
        .args(paths))
    .lines()
    .map(|path| StoreBind {
        host: PathBuf::from(path),
        name: path.trim_start_matches("/nix/store/").to_string(),
    })
    .collect()
}

/// `--store-path` arguments for `kiln shell` with the closure of `attributes`.
pub fn store_path_args(fixture: &FixtureNixpkgs, attributes: &[&str]) -> Vec<String> {
    closure(fixture, attributes)
        .into_iter()
        .map(|bind| format!("--store-path={}", bind.host.display()))
        .collect()
}

/// Lines a phase printed, shared with its output sink.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// An output that records every line here.
    pub fn output(&self) -> Output {
        let lines = self.0.clone();
        Output::Lines(Box::new(move |line| {
            eprintln!("[sandbox] {line}");
            lines.lock().unwrap().push(line.to_string());
        }))
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Whether a line equals `line`.
    pub fn has(&self, line: &str) -> bool {
        self.all().iter().any(|l| l == line)
    }
}

/// A phase over the closure of `attributes` (bash and coreutils always),
/// with their `bin` folders on PATH, its output recorded in `lines`.
pub fn phase(
    fixture: &FixtureNixpkgs,
    attributes: &[&str],
    upper: &Path,
    commands: &[&str],
    lines: &Lines,
) -> Sandbox {
    let mut all = vec!["bash", "coreutils", "busybox"];
    all.extend_from_slice(attributes);
    let profile: Vec<String> = all
        .iter()
        .map(|a| format!("{}/bin", fixture.store_path(a)))
        .collect();
    let bash = PathBuf::from(fixture.store_path("bash")).join("bin/bash");
    let mut sandbox = Sandbox::new(
        "test",
        bash,
        upper.to_path_buf(),
        commands.iter().map(|c| c.to_string()).collect(),
    );
    sandbox.store_paths = closure(fixture, &all);
    sandbox.env = phase_environment(&PhaseEnvironment {
        profile: &profile,
        ..PhaseEnvironment::default()
    });
    sandbox.output = lines.output();
    sandbox
}

/// A new empty folder `name` under `parent`, as a phase's upper folder.
pub fn empty_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap();
    dir
}

/// Puts `name`=this test process's id in the environment of `sandbox`'s
/// commands and returns that `NAME=value`, for [`processes_with`] to find
/// any of them left running.
pub fn mark(sandbox: &mut Sandbox, name: &str) -> String {
    let id = std::process::id().to_string();
    let marker = format!("{name}={id}");
    sandbox.env.push((name.to_string(), id));
    marker
}

/// Writes `content` to `root/rel` with `mode`, creating parents.
pub fn write_file(root: &Path, rel: &str, content: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The base tree of the diff tests.
pub fn make_base(root: &Path) {
    write_file(root, "etc/config", "base\n", 0o644);
    write_file(root, "data/keep.txt", "keep\n", 0o644);
    write_file(root, "data/remove-me.txt", "remove\n", 0o600);
    write_file(root, "replaced/old1.txt", "old\n", 0o644);
    write_file(root, "replaced/sub/old2.txt", "old\n", 0o644);
    fs::create_dir_all(root.join("app")).unwrap();
}

/// The commands of the diff tests: write, delete, replace a folder, chmod.
pub const DIFF_COMMANDS: [&str; 5] = [
    "mkdir /srv && echo new > /srv/new.txt && chmod 0750 /srv/new.txt",
    "rm /data/remove-me.txt",
    "rm -rf /replaced && mkdir /replaced && echo fresh > /replaced/only.txt",
    "mkdir -p /opt/tool && printf x > /opt/tool/run && chmod 0755 /opt/tool/run",
    "echo changed >> /etc/config",
];

/// The tree the base with the diff applied must be.
pub fn expected_tree() -> Vec<String> {
    [
        "/app dir 755",
        "/data dir 755",
        "/data/keep.txt file 644 keep\n",
        "/etc dir 755",
        "/etc/config file 644 base\nchanged\n",
        "/opt dir 755",
        "/opt/tool dir 755",
        "/opt/tool/run file 755 x",
        "/replaced dir 755",
        "/replaced/only.txt file 644 fresh\n",
        "/srv dir 755",
        "/srv/new.txt file 750 new\n",
    ]
    .map(String::from)
    .to_vec()
}

/// Checks the upper folder holds the diff in overlay format and nothing of
/// the sandbox's own mount points.
pub fn assert_overlay_diff(upper: &Path) {
    let removed = fs::symlink_metadata(upper.join("data/remove-me.txt")).unwrap();
    assert!(
        removed.file_type().is_char_device() && removed.rdev() == 0,
        "a deletion is a 0:0 character device"
    );
    assert_eq!(
        xattr(&upper.join("replaced"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "a replaced folder is opaque"
    );
    let mut top: Vec<String> = fs::read_dir(upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["data", "etc", "opt", "replaced", "srv"],
        "upper: {top:?}"
    );
    let etc: Vec<_> = fs::read_dir(upper.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(etc, ["config"], "mount points must not reach the upper");
}

/// The value of extended attribute `name` of `path` (not following links).
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = CString::new(name).unwrap();
    let mut buffer = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and the buffer is as long as
    // the length passed.
    let len = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    (len >= 0).then(|| buffer[..len as usize].to_vec())
}

/// Applies `lowers` then `upper` (overlay whiteouts turned into OCI `.wh.`
/// entries) as image layers with umoci and returns the unpacked tree.
pub fn tree_applied_by_umoci(lowers: &[&Path], upper: &Path) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    let image = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    let layers: Vec<(&Path, bool)> = lowers
        .iter()
        .map(|l| (*l, false))
        .chain([(upper, true)])
        .collect();
    for (index, (dir, overlay)) in layers.into_iter().enumerate() {
        let tar = work.path().join(format!("layer{index}.tar"));
        fs::write(&tar, layer_tar(dir, overlay)).unwrap();
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(&tar));
    }
    let bundle = Bundle::unpack(&layout, "t");
    tree(&bundle.rootfs())
}

/// A layer tar of `dir`; with `overlay`, whiteout devices become `.wh.NAME`
/// and opaque folders get `.wh..wh..opq`.
fn layer_tar(dir: &Path, overlay: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut entries: Vec<PathBuf> = walk(dir);
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(dir).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1);
        header.set_mode(meta.permissions().mode() & 0o7777);
        if overlay && meta.file_type().is_char_device() && meta.rdev() == 0 {
            let name = format!(".wh.{}", rel.file_name().unwrap().to_str().unwrap());
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(0);
            builder
                .append_data(&mut header, rel.with_file_name(name), &[][..])
                .unwrap();
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, rel, &[][..]).unwrap();
            if overlay && xattr(&path, "user.overlay.opaque").as_deref() == Some(b"y") {
                let mut opaque = tar::Header::new_ustar();
                opaque.set_entry_type(tar::EntryType::Regular);
                opaque.set_size(0);
                opaque.set_mode(0o644);
                builder
                    .append_data(&mut opaque, rel.join(".wh..wh..opq"), &[][..])
                    .unwrap();
            }
        } else if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, rel, fs::read_link(&path).unwrap())
                .unwrap();
        } else {
            let data = fs::read(&path).unwrap();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, rel, &data[..]).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_dir = fs::symlink_metadata(&path).unwrap().is_dir();
        all.push(path.clone());
        if is_dir {
            all.extend(walk(&path));
        }
    }
    all
}

/// Every entry under `root` as `/path type mode [content or target]`.
pub fn tree(root: &Path) -> Vec<String> {
    let mut lines = BTreeMap::new();
    for path in walk(root) {
        let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let line = if meta.is_dir() {
            format!("{rel} dir {mode:o}")
        } else if meta.file_type().is_symlink() {
            format!("{rel} link {}", fs::read_link(&path).unwrap().display())
        } else {
            let content = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            format!("{rel} file {mode:o} {content}")
        };
        lines.insert(rel, line);
    }
    lines.into_values().collect()
}

/// A bash script that tries to leave the sandbox in every way the issue
/// lists; each success prints a line starting with `ESCAPED`. Control lines
/// show the probes would notice success.
pub fn escape_script(fixture: &FixtureNixpkgs, host_file: &Path) -> String {
    let bash_path = fixture.store_path("bash");
    let glibc = fixture.store_path("glibc");
    let outside = fixture.store_path("python3");
    let secret = host_file.display();
    format!(
        r#"
cat {bash_path}/bin/bash > /dev/null && echo control-store-readable
echo probe > /tmp/probe && cat /tmp/probe > /dev/null && echo control-tmp-writable
cat {secret} && echo ESCAPED read-host-file
cat /proc/1/root{secret} && echo ESCAPED proc-1-root
cat /proc/$$/root{secret} && echo ESCAPED proc-self-root
ls /proc/$$/root/nix/store > /dev/null && echo control-proc-root-is-the-sandbox
touch {bash_path}/pwned && echo ESCAPED write-store-path
: >> {glibc}/lib/libanl.so.1 && echo ESCAPED open-store-file-for-writing
ls {outside} && echo ESCAPED store-path-outside-closure
mount -t tmpfs none /tmp && echo ESCAPED mount-tmpfs
mount -o remount,rw {bash_path} && echo ESCAPED remount-store-rw
mount --bind / /tmp && echo ESCAPED bind-mount
unshare -rm sh -c "echo control-nested-namespace"
unshare -rm sh -c "mount -o remount,bind,rw {bash_path} && touch {bash_path}/pwned" && echo ESCAPED nested-namespace-remount
echo h > /proc/sysrq-trigger && echo ESCAPED sysrq-trigger
echo 1 > /proc/sys/vm/drop_caches && echo ESCAPED write-kernel-setting
ls -l /proc/$$/fd > /tmp/fds
grep -q ' 2 -> ' /tmp/fds && echo control-descriptors-listed
grep -v -E ' (0|1|2|255) -> ' /tmp/fds | grep -e '->' && echo ESCAPED open-descriptor
test -r /proc/1/cmdline && echo control-proc-1-visible
cat /proc/1/environ > /dev/null && echo ESCAPED caller-environment
tr -d '\0' < /proc/1/cmdline | grep . && echo ESCAPED caller-command-line
echo probes-done
"#
    )
}

/// Checks the escape script ran to its end and nothing escaped.
pub fn assert_no_escape(lines: &[String]) {
    for control in [
        "control-store-readable",
        "control-tmp-writable",
        "control-proc-root-is-the-sandbox",
        "control-nested-namespace",
        "control-descriptors-listed",
        "control-proc-1-visible",
        "probes-done",
    ] {
        assert!(
            lines.iter().any(|l| l == control),
            "{control} missing: {lines:?}"
        );
    }
    let escaped: Vec<&String> = lines.iter().filter(|l| l.starts_with("ESCAPED")).collect();
    assert!(escaped.is_empty(), "escapes: {escaped:?}");
}

/// A host file anyone may read, so only the sandbox keeps commands from it.
pub fn world_readable_secret(dir: &Path) -> PathBuf {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.join("host-secret");
    write_file(dir, "host-secret", "host only\n", 0o644);
    secret
}

/// Processes whose environment holds `marker` (`NAME=value`).
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let environ = entry.path().join("environ");
        if let Ok(bytes) = fs::read(&environ) {
            if bytes.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}
