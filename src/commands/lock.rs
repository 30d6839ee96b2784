//! `kiln lock`: the packages a build of the app needs, evaluated and
//! written to its `kiln.lock`.

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::args::{PlanArgs, StoreArgs};
use super::GlobalArgs;
use crate::report::outln;
use crate::resolve;

/// `kiln lock`.
#[derive(Debug, Args)]
pub struct LockCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// Plans the app, evaluates what its build resolves and writes the lock.
pub fn run(global: &GlobalArgs, command: &LockCommand) -> anyhow::Result<()> {
    let generated = command.plan.generate()?;
    let phases = generated
        .plan
        .phases_in_order()
        .with_context(|| format!("the plan of {} cannot be built", command.plan.dir.display()))?;
    let sources = command.store.sources()?;
    let cache_root = global.cache_root()?;
    let (lock_file, resolved) =
        resolve::lock_plan(&phases, &sources, &generated.app_dir, &cache_root)?;
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
        outln!("{}", json!({ "lockFile": lock_file, "groups": groups }));
    } else if !global.quiet {
        for group in &resolved.groups {
            for (attribute, path) in group.pkgs.iter().chain(&group.libs) {
                outln!("{attribute:<24} {path}");
            }
        }
        outln!("wrote {}", lock_file.display());
    }
    Ok(())
}
