//! How plans from several sources merge: the higher plan wins, and
//! [`HOLE`] in its lists stands for the lower plan's items.

use std::collections::BTreeMap;

use super::{BuildPlan, Phase, Phases, StartPhase, HOLE};

/// Upstream's older spelling of [`HOLE`], still accepted in config files.
const AUTO: &str = "@auto";

impl Phase {
    /// Merges `over` onto `self`: lists of `over` replace ours except where
    /// they hold [`HOLE`], scalars of `over` win when set.
    pub fn merge(&self, over: &Phase) -> Phase {
        let mut phase = self.clone();
        phase.nixpkgs_archive = over
            .nixpkgs_archive
            .clone()
            .or(phase.nixpkgs_archive.take());
        fill_hole(&mut phase.cmds, &over.cmds);
        fill_hole(&mut phase.depends_on, &over.depends_on);
        fill_hole(&mut phase.nix_pkgs, &over.nix_pkgs);
        fill_hole(&mut phase.nix_libs, &over.nix_libs);
        fill_hole(&mut phase.apt_pkgs, &over.apt_pkgs);
        fill_hole(&mut phase.nix_overlays, &over.nix_overlays);
        fill_hole(&mut phase.only_include_files, &over.only_include_files);
        fill_hole(&mut phase.cache_directories, &over.cache_directories);
        fill_hole(&mut phase.paths, &over.paths);
        phase
    }

    fn prefix_names(&mut self, prefix: &str) {
        self.name = Some(format!("{prefix}:{}", self.name()));
        if let Some(deps) = &mut self.depends_on {
            for dep in deps {
                *dep = format!("{prefix}:{dep}");
            }
        }
    }
}

impl StartPhase {
    /// Merges `over` onto `self` the way [`Phase::merge`] does.
    pub fn merge(&self, over: &StartPhase) -> StartPhase {
        let mut start = self.clone();
        start.cmd = over.cmd.clone().or(start.cmd.take());
        start.run_image = over.run_image.clone().or(start.run_image.take());
        fill_hole(&mut start.only_include_files, &over.only_include_files);
        start.user = over.user.clone().or(start.user.take());
        start
    }
}

impl BuildPlan {
    /// Merges `over` onto `self`: `over` wins, with [`HOLE`] in its lists
    /// standing for ours.
    pub fn merge(&self, over: &BuildPlan) -> BuildPlan {
        let mut plan = self.clone();
        fill_hole(&mut plan.providers, &over.providers);
        plan.build_image = over.build_image.clone().or(plan.build_image.take());
        merge_maps(&mut plan.static_assets, &over.static_assets);
        merge_maps(&mut plan.variables, &over.variables);
        match (&mut plan.phases, &over.phases) {
            (None, phases) => plan.phases = phases.clone(),
            (Some(ours), Some(theirs)) => {
                for (name, their_phase) in theirs {
                    let base = ours.remove(name).unwrap_or_else(|| {
                        let mut phase = Phase::new(name.clone());
                        match name.as_str() {
                            "install" => phase.depends_on_phase("setup"),
                            "build" => phase.depends_on_phase("install"),
                            _ => {}
                        }
                        phase
                    });
                    ours.insert(name.clone(), base.merge(their_phase));
                }
            }
            (Some(_), None) => {}
        }
        plan.start_phase = match (plan.start_phase.take(), &over.start_phase) {
            (None, start) => start.clone(),
            (start, None) => start,
            (Some(ours), Some(theirs)) => Some(ours.merge(theirs)),
        };
        plan.name_phases();
        plan
    }

    /// Merges plans from lowest to highest priority.
    pub fn merge_all<'a>(plans: impl IntoIterator<Item = &'a BuildPlan>) -> BuildPlan {
        plans
            .into_iter()
            .fold(BuildPlan::default(), |acc, plan| acc.merge(plan))
    }

    /// Gives every phase the name it has in the map. Like upstream, this
    /// makes an unset phase map empty, so that later merges give new
    /// `install` and `build` phases their default dependencies.
    pub(crate) fn name_phases(&mut self) {
        for (name, phase) in self.phases.get_or_insert_with(Phases::new) {
            phase.name = Some(name.clone());
        }
    }

    /// Prefixes every phase name and dependency, for the second and later
    /// providers of a plan.
    pub(crate) fn prefix_phases(&mut self, prefix: &str) {
        if let Some(phases) = self.phases.take() {
            let phases = phases
                .into_iter()
                .map(|(name, mut phase)| {
                    phase.name = Some(name);
                    phase.prefix_names(prefix);
                    (phase.name().to_string(), phase)
                })
                .collect();
            self.phases = Some(phases);
        }
    }
}

/// Replaces `lower` by `upper` when `upper` is set, with each [`HOLE`] (or
/// `@auto`) in `upper` kept and followed by the items of `lower`.
pub fn fill_hole(lower: &mut Option<Vec<String>>, upper: &Option<Vec<String>>) {
    let Some(upper) = upper else { return };
    let below = lower.take().unwrap_or_default();
    let mut merged = Vec::with_capacity(upper.len() + below.len());
    for item in upper {
        merged.push(item.clone());
        if is_hole(item) {
            merged.extend(below.iter().cloned());
        }
    }
    *lower = Some(merged);
}

/// Drops every [`HOLE`] and `@auto` from a list.
pub fn remove_holes(list: &mut Option<Vec<String>>) {
    if let Some(items) = list {
        items.retain(|item| !is_hole(item));
    }
}

fn is_hole(item: &str) -> bool {
    item == HOLE || item == AUTO
}

fn merge_maps(
    lower: &mut Option<BTreeMap<String, String>>,
    upper: &Option<BTreeMap<String, String>>,
) {
    match (lower.as_mut(), upper) {
        (_, None) => {}
        (None, Some(upper)) => *lower = Some(upper.clone()),
        (Some(lower), Some(upper)) => lower.extend(upper.clone()),
    }
}
