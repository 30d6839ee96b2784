//! `kiln realize`, `kiln lock` and `kiln cache prune`: the command-line face
//! of package resolution (`crate::resolve`) and the store (`kiln-store`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kiln_store::{parse_store_path, Closure, FetchOptions, Origin, Store, StorePath, Substituters};
use serde_json::json;

use crate::build::{human_size, packages};
use crate::cache;
use crate::cli::{GlobalArgs, LockCommand, RealizeCommand, StoreArgs};
use crate::output::outln;
use crate::resolve::{self, EvalCache, Evaluator, PackageGroup, ResolveOptions, LOCK_FILE};

/// `kiln realize PATH_OR_ATTRIBUTE...`.
pub fn realize(global: &GlobalArgs, command: &RealizeCommand) -> anyhow::Result<()> {
    let (paths, attributes): (Vec<&String>, Vec<&String>) =
        command.paths.iter().partition(|p| p.starts_with('/'));
    let mut roots: Vec<StorePath> = paths
        .into_iter()
        .map(|p| parse_store_path(p))
        .collect::<Result<_, _>>()?;
    let mut derivations = BTreeMap::new();
    let cache_dir = cache::cache_dir(global.cache_dir.as_deref())?;
    if !attributes.is_empty() {
        let options = ResolveOptions {
            lock_file: command.lock.clone(),
            nixpkgs: command.store.nixpkgs.clone(),
            refresh: false,
            write_lock: false,
            evaluator: Evaluator::FromPath,
            eval_cache: Some(EvalCache::open(&cache_dir)),
        };
        let group = PackageGroup {
            pkgs: attributes.into_iter().cloned().collect(),
            ..PackageGroup::default()
        };
        let resolved = resolve::resolve(&[group], &options)?;
        for path in resolved.store_paths() {
            roots.push(parse_store_path(&path)?);
        }
        for (out, drv) in resolved.derivations() {
            derivations.insert(parse_store_path(&out)?, parse_store_path(&drv)?);
        }
    }
    if command.no_verify {
        eprintln!(
            "warning: --no-verify: narinfo signatures are NOT checked; any cache can serve any files"
        );
    }
    let substituters = substituters(&command.store, !command.no_verify)?;
    let host_store = (!command.ignore_host_store).then(|| PathBuf::from(kiln_store::HOST_STORE));
    let store = Store::open(&cache_dir)?.with_host_store(host_store);
    let closure = store.realize_with_derivations(&substituters, &roots, &derivations)?;
    if global.json {
        outln!("{}", closure_json(&closure));
    } else if !global.quiet {
        print_closure(&closure)?;
    }
    Ok(())
}

/// `kiln lock DIR`: plans the app, evaluates the packages a build of it
/// needs and writes `DIR/kiln.lock`.
pub fn lock(global: &GlobalArgs, command: &LockCommand) -> anyhow::Result<()> {
    let args = &command.plan;
    let generated = kiln_providers::generate(&args.dir, &crate::plan::options(args)?)
        .with_context(|| format!("could not plan {}", args.dir.display()))?;
    let phases = generated
        .plan
        .phases_in_order()
        .with_context(|| format!("the plan of {} cannot be built", args.dir.display()))?;
    let groups = packages::build_groups(&phases, command.store.nixpkgs.is_some());
    let options = ResolveOptions {
        lock_file: generated.app_dir.join(LOCK_FILE),
        nixpkgs: packages::local_nixpkgs(&command.store)?,
        refresh: true,
        write_lock: true,
        evaluator: Evaluator::FromPath,
        eval_cache: None,
    };
    let resolved = resolve::resolve(&groups, &options)?;
    if global.json {
        let groups: Vec<_> = resolved
            .groups
            .iter()
            .map(|g| {
                json!({
                    "nixpkgsArchive": g.nixpkgs_archive,
                    "overlays": g.overlays,
                    "pkgs": g.pkgs,
                    "libs": g.libs,
                    "libraryDirs": g.library_dirs(),
                })
            })
            .collect();
        outln!(
            "{}",
            json!({ "lockFile": options.lock_file, "groups": groups })
        );
    } else if !global.quiet {
        for group in &resolved.groups {
            for (attribute, path) in group.pkgs.iter().chain(&group.libs) {
                outln!("{attribute:<24} {path}");
            }
        }
        outln!("wrote {}", options.lock_file.display());
    }
    Ok(())
}

/// `kiln cache prune --older-than DAYS`.
pub fn prune(global: &GlobalArgs, older_than_days: u32) -> anyhow::Result<()> {
    let cache_dir = cache::cache_dir(global.cache_dir.as_deref())?;
    let store = Store::open(&cache_dir)?;
    let age = Duration::from_secs(u64::from(older_than_days) * 24 * 60 * 60);
    let report = store
        .prune(age)
        .with_context(|| format!("could not prune {}", store.dir().display()))?;
    if global.json {
        outln!(
            "{}",
            json!({
                "removed": report.removed,
                "bytes": report.bytes,
                "held": report.held,
            })
        );
    } else if !global.quiet {
        outln!(
            "removed {} store paths ({}); kept {} in use by running builds",
            report.removed.len(),
            human_size(report.bytes),
            report.held.len()
        );
    }
    Ok(())
}

/// The substituters and keys `args` name, with `KILN_NETRC` credentials.
pub(crate) fn substituters(args: &StoreArgs, verify: bool) -> anyhow::Result<Substituters> {
    let non_empty = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let options = FetchOptions {
        jobs: args.jobs.max(1),
        verify_signatures: verify,
        ..FetchOptions::default()
    };
    let substituters = Substituters::new(
        &non_empty(&args.substituter),
        &non_empty(&args.trusted_public_key),
        options,
    )?;
    Ok(match netrc_text()? {
        Some(text) => substituters.with_netrc(&text),
        None => substituters,
    })
}

/// Credentials for private caches: `KILN_NETRC`, else `~/.netrc`.
fn netrc_text() -> anyhow::Result<Option<String>> {
    if let Some(path) = std::env::var_os("KILN_NETRC") {
        let path = Path::new(&path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read KILN_NETRC file {}", path.display()))?;
        return Ok(Some(text));
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(None);
    };
    Ok(std::fs::read_to_string(Path::new(&home).join(".netrc")).ok())
}

fn origin_word(origin: &Origin) -> &'static str {
    match origin {
        Origin::Downloaded { .. } => "downloaded",
        Origin::AlreadyInStore => "cached",
        Origin::HostStore => "host",
    }
}

fn print_closure(closure: &Closure) -> std::io::Result<()> {
    for path in &closure.paths {
        outln!(
            "{}  {:>10}  {}",
            path.path,
            human_size(path.nar_size),
            origin_word(&path.origin)
        );
    }
    outln!(
        "{} paths, {} ({} downloaded)",
        closure.paths.len(),
        human_size(closure.total_nar_size()),
        closure.downloaded()
    );
    Ok(())
}

fn closure_json(closure: &Closure) -> serde_json::Value {
    let paths: Vec<_> = closure
        .paths
        .iter()
        .map(|p| {
            json!({
                "path": p.path.to_string(),
                "narSize": p.nar_size,
                "fileSize": p.file_size,
                "location": p.location,
                "origin": origin_word(&p.origin),
                "cache": match &p.origin {
                    Origin::Downloaded { cache } => Some(cache.as_str()),
                    _ => None,
                },
                "references": p.references.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "paths": paths,
        "totalNarSize": closure.total_nar_size(),
        "downloaded": closure.downloaded(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(30 * 1024 * 1024), "30.0 MiB");
    }
}
