//! The steps that build a sandbox's root: the scratch tmpfs, the skeleton of
//! mount points, the overlay root, the `/app` overlay, store paths, caches
//! and host files, then the special filesystems and the switch into the root.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::special::special_filesystems;
use super::step::{beneath, c_path, mount_step, read_only_bind, relative, under};
use super::{Action, Kind, Layout, Step};
use crate::sandbox::{Sandbox, StoreBind};

/// Longest option string `mount(2)` passes on: one page, less its NUL.
const MAX_MOUNT_OPTIONS: usize = 4095;

/// Host files bound read-only so name resolution works as on the host.
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// Every step that builds the root of `sandbox` in `layout`.
pub(in crate::sandbox) fn plan(sandbox: &Sandbox, layout: &Layout) -> io::Result<Vec<Step>> {
    let root = &layout.root();
    let mut steps = scratch_steps(layout)?;
    steps.extend(skeleton_steps(sandbox, &layout.skeleton())?);
    steps.push(overlay_root(sandbox, layout)?);
    if let Some(app) = &sandbox.app_source {
        steps.extend(app_overlay(app, layout)?);
    }
    steps.extend(store_path_binds(sandbox, root)?);
    steps.extend(cache_binds(sandbox, root)?);
    steps.extend(read_only_binds(sandbox, root)?);
    steps.extend(host_file_binds(root)?);
    steps.extend(special_filesystems(root)?);
    steps.push(Step {
        what: format!("make {} the root (pivot_root)", root.display()),
        action: Action::PivotRoot(c_path(root)?),
    });
    steps.push(Step {
        what: format!("enter the working directory {}", sandbox.workdir.display()),
        action: Action::ChangeDir(c_path(&sandbox.workdir)?),
    });
    Ok(steps)
}

/// Private mounts, the scratch tmpfs and the folders kiln needs in it.
fn scratch_steps(layout: &Layout) -> io::Result<Vec<Step>> {
    let mut steps = vec![
        Step {
            what: "make the sandbox's mounts private".into(),
            action: Action::MakeRootPrivate,
        },
        mount_step(
            format!("mount a tmpfs at {}", layout.scratch.display()),
            Some("tmpfs"),
            &layout.scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )?,
    ];
    for dir in [
        layout.root(),
        layout.skeleton(),
        layout.app_upper(),
        layout.app_work(),
    ] {
        steps.push(Step {
            what: format!("create {}", dir.display()),
            action: Action::MakeDir(c_path(&dir)?, 0o755),
        });
    }
    Ok(steps)
}

/// Creates every mount point of `sandbox` in the skeleton layer, and the
/// store paths that are symlinks as the same links.
fn skeleton_steps(sandbox: &Sandbox, skeleton: &Path) -> io::Result<Vec<Step>> {
    let mut steps = mount_points(sandbox)
        .into_iter()
        .map(|(rel, (kind, mode))| {
            let path = c_path(&skeleton.join(&rel))?;
            Ok(Step {
                what: format!("create the mount point /{}", rel.display()),
                action: match kind {
                    Kind::Dir => Action::MakeDir(path, mode),
                    Kind::File => Action::CreateFile(path, mode),
                },
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    for store in sandbox.store_paths.iter().filter(|s| is_link(s)) {
        let target = std::fs::read_link(&store.host)?;
        let link = skeleton.join("nix/store").join(&store.name);
        steps.push(Step {
            what: format!(
                "link /nix/store/{} to {} (the store path is a symlink)",
                store.name,
                target.display()
            ),
            action: Action::Symlink {
                target: c_path(&target)?,
                link: c_path(&link)?,
            },
        });
    }
    Ok(steps)
}

/// Whether the store path is a symlink on the host. Such a path is shown as
/// a link in the skeleton, resolved inside the sandbox like any link there,
/// because `mount(2)` would follow it to its target on the host.
fn is_link(store: &StoreBind) -> bool {
    std::fs::symlink_metadata(&store.host).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// Every mount point of `sandbox` as a path below the root, with its kind
/// and mode, parents before children.
fn mount_points(sandbox: &Sandbox) -> BTreeMap<PathBuf, (Kind, u32)> {
    let mut points = BTreeMap::new();
    let mut add = |rel: PathBuf, kind: Kind, mode: u32| {
        for parent in rel
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
        {
            points
                .entry(parent.to_path_buf())
                .or_insert((Kind::Dir, 0o755));
        }
        points.insert(rel, (kind, mode));
    };
    for (rel, mode) in [
        ("proc", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ] {
        add(PathBuf::from(rel), Kind::Dir, mode);
    }
    add(relative(&sandbox.workdir), Kind::Dir, 0o755);
    for host_file in HOST_FILES {
        add(relative(Path::new(host_file)), Kind::File, 0o644);
    }
    for store in &sandbox.store_paths {
        let rel = Path::new("nix/store").join(&store.name);
        if is_link(store) {
            // The link itself is made by `skeleton_steps`; only its folder
            // is a mount point's parent here.
            add(PathBuf::from("nix/store"), Kind::Dir, 0o755);
            continue;
        }
        if store.host.is_dir() {
            add(rel, Kind::Dir, 0o555);
        } else {
            add(rel, Kind::File, 0o444);
        }
    }
    for cache in &sandbox.caches {
        add(relative(&cache.inside), Kind::Dir, 0o755);
    }
    for bind in &sandbox.read_only {
        let kind = if bind.host.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        add(relative(&bind.inside), kind, 0o755);
    }
    points
}

/// The overlay of the lower folders, the skeleton and the upper folder,
/// refused before mounting when its options are too long for the kernel.
fn overlay_root(sandbox: &Sandbox, layout: &Layout) -> io::Result<Step> {
    let skeleton = layout.skeleton();
    let mut lowers: Vec<&Path> = sandbox.lowers.iter().rev().map(PathBuf::as_path).collect();
    lowers.push(&skeleton);
    let lowerdir = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},userxattr",
        sandbox.upper.display(),
        layout.work.display()
    );
    if options.len() > MAX_MOUNT_OPTIONS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the overlay options name {} lower folders in {} bytes, more than the kernel's {MAX_MOUNT_OPTIONS}; use shorter folder paths or fewer lower folders",
                lowers.len(),
                options.len()
            ),
        ));
    }
    mount_step(
        format!("mount the overlay root (upper {})", sandbox.upper.display()),
        Some("overlay"),
        &layout.root(),
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )
}

/// `app` shown at `/app` copy-on-write, its changes kept in the scratch
/// tmpfs and thrown away with it.
fn app_overlay(app: &Path, layout: &Layout) -> io::Result<Vec<Step>> {
    let root = &layout.root();
    let inside = Path::new("/app");
    Ok(vec![
        beneath(root, inside, Kind::Dir, "the app folder")?,
        mount_step(
            format!("show {} at /app (copy on write)", app.display()),
            Some("overlay"),
            &under(root, inside),
            Some("overlay"),
            MsFlags::empty(),
            Some(&format!(
                "lowerdir={},upperdir={},workdir={},userxattr",
                app.display(),
                layout.app_upper().display(),
                layout.app_work().display()
            )),
        )?,
    ])
}

/// Each store path of the closure, read-only at `/nix/store/<name>`.
fn store_path_binds(sandbox: &Sandbox, root: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for store in sandbox.store_paths.iter().filter(|s| !is_link(s)) {
        let inside = Path::new("/nix/store").join(&store.name);
        let kind = if store.host.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        steps.push(beneath(root, &inside, kind, "a store path")?);
        steps.extend(read_only_bind(&store.host, &under(root, &inside))?);
    }
    Ok(steps)
}

/// Each cache folder, read-write at its place inside.
fn cache_binds(sandbox: &Sandbox, root: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for cache in &sandbox.caches {
        steps.push(beneath(
            root,
            &cache.inside,
            Kind::Dir,
            "a cache directory",
        )?);
        steps.push(mount_step(
            format!(
                "bind the cache folder {} at {}",
                cache.host.display(),
                cache.inside.display()
            ),
            Some(&cache.host),
            &under(root, &cache.inside),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?);
    }
    Ok(steps)
}

/// Each read-only folder (or file) at its place inside.
fn read_only_binds(sandbox: &Sandbox, root: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for bind in &sandbox.read_only {
        let kind = if bind.host.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        steps.push(beneath(root, &bind.inside, kind, "a read-only folder")?);
        steps.extend(read_only_bind(&bind.host, &under(root, &bind.inside))?);
    }
    Ok(steps)
}

/// The host's name resolution files that exist, read-only.
fn host_file_binds(root: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
    // An image may make these symlinks (to a resolver it runs itself); then
    // its own file stays, rather than kiln mounting through the link.
    for host_file in HOST_FILES.map(Path::new).into_iter().filter(|p| p.exists()) {
        let binds = read_only_bind(host_file, &under(root, host_file))?;
        steps.push(Step {
            what: format!("check the mount point of {}", host_file.display()),
            action: Action::IfBeneath {
                root: c_path(root)?,
                rel: c_path(&relative(host_file))?,
                kind: Kind::File,
                skip: binds.len(),
            },
        });
        steps.extend(binds);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::FolderBind;

    #[test]
    fn mount_points_come_after_their_parents() {
        let store = tempfile::tempdir().unwrap();
        let mut sandbox = Sandbox::new(
            "t",
            PathBuf::from("/nix/store/b-bash/bin/bash"),
            PathBuf::from("/u"),
            vec![],
        );
        sandbox.store_paths.push(StoreBind {
            host: store.path().to_path_buf(),
            name: "b-bash".into(),
        });
        sandbox.caches.push(FolderBind {
            host: store.path().to_path_buf(),
            inside: PathBuf::from("/app/node_modules/.cache"),
        });
        let points: Vec<_> = mount_points(&sandbox).into_iter().collect();
        let position = |rel: &str| {
            points
                .iter()
                .position(|(p, _)| p == Path::new(rel))
                .unwrap()
        };
        assert!(position("nix") < position("nix/store"));
        assert!(position("nix/store") < position("nix/store/b-bash"));
        assert!(position("app/node_modules") < position("app/node_modules/.cache"));
        assert_eq!(points[position("tmp")].1, (Kind::Dir, 0o1777));
        assert_eq!(points[position("etc/hosts")].1 .0, Kind::File);
    }

    #[test]
    fn too_many_lowers_are_refused_before_mounting() {
        let mut sandbox = Sandbox::new(
            "t",
            PathBuf::from("/nix/store/b-bash/bin/bash"),
            PathBuf::from("/u"),
            vec![],
        );
        sandbox.lowers = (0..100)
            .map(|n| PathBuf::from(format!("/var/lib/kiln/phases/{n:060}")))
            .collect();
        let layout = Layout {
            scratch: PathBuf::from("/s"),
            work: PathBuf::from("/w"),
        };
        let err = plan(&sandbox, &layout).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("101 lower folders"), "{err}");
    }
}
