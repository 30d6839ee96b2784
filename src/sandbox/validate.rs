//! Refusing sandbox inputs the sandbox cannot use, before anything is
//! created, with a reason that names the fix.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::{Sandbox, SandboxError};

/// Refuses inputs the sandbox cannot use, naming the fix.
pub(super) fn validate(sandbox: &Sandbox) -> Result<(), SandboxError> {
    first_problem(sandbox).map_err(|reason| SandboxError::InvalidInput {
        phase: sandbox.name.clone(),
        reason,
    })
}

/// The reason the first unusable input is refused.
fn first_problem(sandbox: &Sandbox) -> Result<(), String> {
    check_lowers(sandbox)?;
    check_upper(&sandbox.upper)?;
    check_store_paths(sandbox)?;
    check_caches(sandbox)?;
    check_read_only(sandbox)?;
    if !is_plain_absolute(&sandbox.workdir) {
        return Err(format!(
            "working directory {} must be absolute without `..`",
            sandbox.workdir.display()
        ));
    }
    check_program(sandbox)?;
    if sandbox.argvs().is_empty() {
        return Err("no commands to run".into());
    }
    Ok(())
}

/// The overlay mount options separate folders with `:` and options with
/// `,`; kiln does not escape them, so such folders are refused.
fn overlay_safe(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    path.is_absolute() && !bytes.iter().any(|b| matches!(b, b':' | b',' | b'\\'))
}

/// An absolute path inside the sandbox with no `.` or `..` in it.
fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn check_lowers(sandbox: &Sandbox) -> Result<(), String> {
    for lower in sandbox.lowers.iter().chain(&sandbox.app_source) {
        if !overlay_safe(lower) || !lower.is_dir() {
            return Err(format!(
                "lower folder {} must be an existing folder given by an absolute path without `:`, `,` or `\\`",
                lower.display()
            ));
        }
    }
    Ok(())
}

fn check_upper(upper: &Path) -> Result<(), String> {
    if !overlay_safe(upper) {
        return Err(format!(
            "upper folder {} must be an absolute path without `:`, `,` or `\\`",
            upper.display()
        ));
    }
    match fs::read_dir(upper).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "upper folder {} is not empty; give each phase a fresh folder",
            upper.display()
        )),
        Err(e) => Err(format!(
            "upper folder {} cannot be read ({e}); create it first",
            upper.display()
        )),
    }
}

fn check_store_paths(sandbox: &Sandbox) -> Result<(), String> {
    for store in &sandbox.store_paths {
        let name_ok = !store.name.is_empty()
            && !store.name.starts_with('.')
            && !store.name.contains(['/', '\0']);
        // A link is shown as a link, so it need not point anywhere here.
        if !name_ok || fs::symlink_metadata(&store.host).is_err() {
            return Err(format!(
                "store path {} (from {}) must be an existing path with a plain name",
                store.name,
                store.host.display()
            ));
        }
    }
    Ok(())
}

fn check_caches(sandbox: &Sandbox) -> Result<(), String> {
    for cache in &sandbox.caches {
        if !is_plain_absolute(&cache.inside) || !cache.host.is_dir() {
            return Err(format!(
                "cache folder {} must exist and its place inside, {}, must be absolute without `..`",
                cache.host.display(),
                cache.inside.display()
            ));
        }
    }
    Ok(())
}

/// bash runs every command (or the one program runs), so it must be in a
/// store path or read-only folder the sandbox binds.
fn check_program(sandbox: &Sandbox) -> Result<(), String> {
    let program = &sandbox.bash;
    let in_store = sandbox
        .store_paths
        .iter()
        .any(|store| program.starts_with(Path::new("/nix/store").join(&store.name)));
    let in_folder = sandbox
        .read_only
        .iter()
        .any(|bind| program.starts_with(&bind.inside));
    let bound = match sandbox.argv {
        Some(_) => in_store || in_folder,
        None => in_store,
    };
    if !bound || !is_plain_absolute(program) {
        return Err(format!(
            "{} {} is not inside a store path of the closure; add the bash package to the phase",
            if sandbox.argv.is_some() {
                "the program"
            } else {
                "bash"
            },
            program.display()
        ));
    }
    Ok(())
}

fn check_read_only(sandbox: &Sandbox) -> Result<(), String> {
    for bind in &sandbox.read_only {
        if !is_plain_absolute(&bind.inside) || !bind.host.exists() {
            return Err(format!(
                "read-only folder {} must exist and its place inside, {}, must be absolute without `..`",
                bind.host.display(),
                bind.inside.display()
            ));
        }
    }
    Ok(())
}
