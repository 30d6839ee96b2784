//! `kiln cache prune --cache-repo`: prints what the prune of a registry
//! build cache found and did, a line a record and a summary, or `--json`.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::json;

use super::super::GlobalArgs;
use crate::pipeline::cache_repo::prune::{self, Action, Entry, Pruned};
use crate::registry::{ArtifactRepo, RegistryConfig};
use crate::report::{human_size, outln};

/// What the summary says about blobs, which a prune never deletes.
const BLOBS_NOTE: &str = "blobs are not deleted: the registry's garbage collector frees those no manifest uses (docker-registry: `registry garbage-collect --delete-untagged CONFIG`)";

/// Prunes the records of `repository` written more than `older_than` ago.
pub fn prune(
    global: &GlobalArgs,
    config: &RegistryConfig,
    repository: &str,
    older_than: Duration,
    dry_run: bool,
) -> anyhow::Result<()> {
    let repository = repository.strip_prefix("docker://").unwrap_or(repository);
    let context = || format!("could not prune the cache repo {repository}");
    let repo = ArtifactRepo::connect(config, repository, !dry_run).with_context(context)?;
    let pruned =
        prune::prune(&repo, older_than, SystemTime::now(), dry_run).with_context(|| {
            format!(
                "{}; no record was removed after the first failure",
                context()
            )
        })?;
    if global.json {
        outln!("{}", pruned_json(repository, older_than, &pruned));
        return Ok(());
    }
    for (tag, why) in &pruned.unreadable {
        tracing::warn!("cache repo {repository}: tag {tag} left alone: {why}");
    }
    if global.quiet {
        return Ok(());
    }
    for entry in &pruned.records {
        outln!("{}", entry_line(entry, pruned.removed));
    }
    outln!("{}", summary(repository, older_than, &pruned));
    Ok(())
}

fn verb(action: &Action, removed: bool) -> String {
    match action {
        Action::Remove if removed => "removed".into(),
        Action::Remove => "would remove".into(),
        Action::Younger => "keep (younger)".into(),
        Action::Referenced(by) => format!("keep (used by {by})"),
    }
}

fn age(age: Option<Duration>) -> String {
    match age {
        Some(age) => format!("{:.1} days", age.as_secs_f64() / 86_400.0),
        None => "no time".into(),
    }
}

fn entry_line(entry: &Entry, removed: bool) -> String {
    format!(
        "{:<8} {} {:>10} {:>10}  {}",
        entry.kind,
        entry.key,
        age(entry.age),
        human_size(entry.bytes),
        verb(&entry.action, removed)
    )
}

fn summary(repository: &str, older_than: Duration, pruned: &Pruned) -> String {
    let to_remove: Vec<&Entry> = pruned
        .records
        .iter()
        .filter(|e| e.action == Action::Remove)
        .collect();
    let bytes: u64 = to_remove.iter().map(|e| e.bytes).sum();
    let referenced = pruned
        .records
        .iter()
        .filter(|e| matches!(e.action, Action::Referenced(_)))
        .count();
    let done = match pruned.removed {
        true => "removed",
        false => "would remove (--dry-run)",
    };
    format!(
        "{repository}: {done} {} of {} records ({}) older than {}; kept {referenced} used by other manifests; left alone {} other manifests{}; {BLOBS_NOTE}",
        to_remove.len(),
        pruned.records.len(),
        human_size(bytes),
        age(Some(older_than)),
        pruned.others,
        match pruned.unreadable.len() {
            0 => String::new(),
            n => format!(" and {n} unreadable ones"),
        },
    )
}

fn pruned_json(repository: &str, older_than: Duration, pruned: &Pruned) -> serde_json::Value {
    json!({
        "repository": repository,
        "olderThanSeconds": older_than.as_secs(),
        "dryRun": !pruned.removed,
        "records": pruned.records.iter().map(|e| json!({
            "kind": e.kind,
            "key": e.key,
            "tag": e.tag,
            "digest": e.digest,
            "ageSeconds": e.age.map(|a| a.as_secs()),
            "bytes": e.bytes,
            "action": match &e.action {
                Action::Remove => "remove",
                Action::Younger => "keep-younger",
                Action::Referenced(_) => "keep-referenced",
            },
            "referencedBy": match &e.action {
                Action::Referenced(by) => Some(by),
                _ => None,
            },
        })).collect::<Vec<_>>(),
        "otherManifests": pruned.others,
        "unreadable": pruned.unreadable.iter().map(|(tag, why)| json!({"tag": tag, "reason": why})).collect::<Vec<_>>(),
        "blobs": BLOBS_NOTE,
    })
}
