//! The order phases run in: topological by `dependsOn`.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::Phase;

/// Why phases cannot be put in an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A phase depends on a phase the plan does not have.
    #[error("phase `{phase}` depends on `{missing}`, which is not a phase of this plan (phases: {known}); remove it from `dependsOn` or add that phase")]
    MissingDependency {
        /// The phase naming the dependency.
        phase: String,
        /// The dependency that does not exist.
        missing: String,
        /// The phases the plan has, comma separated.
        known: String,
    },
    /// Phases depend on each other in a circle.
    #[error("phases depend on each other in a cycle: {}; remove one of these `dependsOn` entries", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// The phases every plan may name without having them: upstream adds
/// dependencies on them by convention (a Procfile's `release` depends on
/// `build` even for apps with no build step), so a missing one is skipped.
const CONVENTIONAL_PHASES: &[&str] = &["setup", "install", "build"];

/// Orders phases so each comes after everything it depends on; among
/// phases ready at the same time, the one with the smaller name first.
/// A dependency on a phase the plan lacks is an error, except on the
/// conventional `setup`, `install` and `build`, which are skipped.
pub fn topological<'a>(
    phases: impl IntoIterator<Item = &'a Phase>,
) -> Result<Vec<&'a Phase>, OrderError> {
    let by_name: BTreeMap<&str, &Phase> = phases.into_iter().map(|p| (p.name(), p)).collect();
    for phase in by_name.values() {
        if let Some(missing) = deps_of(phase)
            .into_iter()
            .find(|d| !by_name.contains_key(d) && !CONVENTIONAL_PHASES.contains(d))
        {
            return Err(OrderError::MissingDependency {
                phase: phase.name().into(),
                missing: missing.into(),
                known: by_name.keys().copied().collect::<Vec<_>>().join(", "),
            });
        }
    }

    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(by_name.len());
    while ordered.len() < by_name.len() {
        let ready: Vec<&str> = by_name
            .iter()
            .filter(|(name, phase)| {
                !done.contains(*name)
                    && deps_of(phase)
                        .iter()
                        .all(|d| done.contains(d) || !by_name.contains_key(d))
            })
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            let left: BTreeMap<&str, &Phase> = by_name
                .iter()
                .filter(|(name, _)| !done.contains(*name))
                .map(|(n, p)| (*n, *p))
                .collect();
            return Err(OrderError::Cycle(find_cycle(&left)));
        }
        for name in ready {
            done.insert(name);
            ordered.push(by_name[name]);
        }
    }
    Ok(ordered)
}

fn deps_of(phase: &Phase) -> BTreeSet<&str> {
    phase
        .depends_on
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Follows dependencies among phases that are all stuck until a name
/// repeats; that loop is the cycle.
fn find_cycle(stuck: &BTreeMap<&str, &Phase>) -> Vec<String> {
    let mut path: Vec<&str> = Vec::new();
    let mut current = *stuck.keys().next().expect("a stuck set is never empty");
    loop {
        if let Some(start) = path.iter().position(|n| *n == current) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(current.to_string());
            return cycle;
        }
        path.push(current);
        current = stuck[current]
            .depends_on
            .iter()
            .flatten()
            .map(String::as_str)
            .find(|d| stuck.contains_key(d))
            .expect("a stuck phase depends on another stuck phase");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, deps: &[&str]) -> Phase {
        let mut phase = Phase::new(name);
        for dep in deps {
            phase.depends_on_phase(*dep);
        }
        phase
    }

    fn names(phases: &[&Phase]) -> Vec<String> {
        phases.iter().map(|p| p.name().to_string()).collect()
    }

    #[test]
    fn dependencies_come_first_and_ties_sort_by_name() {
        let phases = [
            phase("build", &["install"]),
            phase("setup", &[]),
            phase("install", &["setup"]),
            phase("release", &["setup", "install", "build"]),
            phase("assets", &["setup"]),
        ];
        let ordered = topological(&phases).unwrap();
        assert_eq!(
            names(&ordered),
            ["setup", "assets", "install", "build", "release"]
        );
    }

    #[test]
    fn missing_dependency_names_both_phases() {
        let phases = [phase("build", &["compile"]), phase("setup", &[])];
        let err = topological(&phases).unwrap_err();
        assert_eq!(
            err,
            OrderError::MissingDependency {
                phase: "build".into(),
                missing: "compile".into(),
                known: "build, setup".into()
            }
        );
        assert!(err.to_string().contains("`compile`"));
    }

    #[test]
    fn missing_conventional_phase_is_skipped() {
        let phases = [
            phase("setup", &[]),
            phase("install", &["setup"]),
            phase("release", &["setup", "install", "build"]),
        ];
        let ordered = topological(&phases).unwrap();
        assert_eq!(names(&ordered), ["setup", "install", "release"]);
    }

    #[test]
    fn cycle_is_reported_with_its_phases() {
        let phases = [
            phase("setup", &[]),
            phase("a", &["setup", "c"]),
            phase("b", &["a"]),
            phase("c", &["b"]),
        ];
        let err = topological(&phases).unwrap_err();
        assert_eq!(
            err,
            OrderError::Cycle(vec!["a".into(), "c".into(), "b".into(), "a".into()])
        );
        assert_eq!(
            err.to_string(),
            "phases depend on each other in a cycle: a -> c -> b -> a; remove one of these `dependsOn` entries"
        );
    }

    #[test]
    fn phase_depending_on_itself_is_a_cycle() {
        let phases = [phase("loop", &["loop"])];
        assert_eq!(
            topological(&phases).unwrap_err(),
            OrderError::Cycle(vec!["loop".into(), "loop".into()])
        );
    }
}
