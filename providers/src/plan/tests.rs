//! Merging, holes, pinning and printing of plans.

use super::*;

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

#[test]
fn hole_is_replaced_by_lower_items_in_place() {
    let mut lower = strings(&["a", "b"]);
    fill_hole(&mut lower, &strings(&["x", "...", "z"]));
    assert_eq!(lower, strings(&["x", "...", "a", "b", "z"]));
    remove_holes(&mut lower);
    assert_eq!(lower, strings(&["x", "a", "b", "z"]));
}

#[test]
fn list_without_hole_replaces_and_unset_keeps() {
    let mut lower = strings(&["a"]);
    fill_hole(&mut lower, &strings(&["b"]));
    assert_eq!(lower, strings(&["b"]));
    fill_hole(&mut lower, &None);
    assert_eq!(lower, strings(&["b"]));
    let mut none = None;
    fill_hole(&mut none, &strings(&["...", "c"]));
    assert_eq!(none, strings(&["...", "c"]));
}

#[test]
fn merge_higher_plan_wins_and_keeps_lower_phases() {
    let mut lower = BuildPlan::new(
        vec![
            Phase::setup(Some(vec![Pkg::new("nodejs")])),
            Phase::build(Some("b".into())),
        ],
        Some(StartPhase::new("low")),
    );
    lower.add_variables(Variables::from([
        ("A".into(), "1".into()),
        ("B".into(), "1".into()),
    ]));
    let mut upper = BuildPlan::default();
    let mut setup = Phase::new("setup");
    setup.nix_pkgs = strings(&["...", "cowsay"]);
    upper.add_phase(setup);
    upper.add_phase(Phase::new("install"));
    upper.add_variables(Variables::from([("B".into(), "2".into())]));
    upper.set_start_phase(StartPhase {
        user: Some("app".into()),
        ..StartPhase::default()
    });

    let merged = lower.merge(&upper);
    assert_eq!(
        merged.phase("setup").unwrap().nix_pkgs,
        strings(&["...", "nodejs", "cowsay"])
    );
    assert_eq!(merged.phase("build").unwrap().cmds, strings(&["b"]));
    assert_eq!(
        merged.phase("install").unwrap().depends_on,
        strings(&["setup"])
    );
    let start = merged.start_phase.unwrap();
    assert_eq!(start.cmd.as_deref(), Some("low"));
    assert_eq!(start.user.as_deref(), Some("app"));
    let vars = merged.variables.unwrap();
    assert_eq!(vars["A"], "1");
    assert_eq!(vars["B"], "2");
}

#[test]
fn new_install_and_build_phases_get_default_dependencies() {
    let lower = BuildPlan::new(vec![Phase::new("setup")], None);
    let mut upper = BuildPlan::default();
    upper.add_phase(Phase::new("install"));
    upper.add_phase(Phase::new("build"));
    let merged = lower.merge(&upper);
    assert_eq!(
        merged.phase("install").unwrap().depends_on,
        strings(&["setup"])
    );
    assert_eq!(
        merged.phase("build").unwrap().depends_on,
        strings(&["install"])
    );
}

#[test]
fn json_omits_unset_fields_and_phase_names() {
    let mut plan = BuildPlan::new(vec![Phase::install(Some("npm ci".into()))], None);
    plan.pin(false);
    let json = plan.to_json();
    assert_eq!(
        json,
        "{\n  \"providers\": [],\n  \"buildImage\": \"ghcr.io/railwayapp/nixpacks:ubuntu-1745885067\",\n  \"phases\": {\n    \"install\": {\n      \"dependsOn\": [\n        \"setup\"\n      ],\n      \"cmds\": [\n        \"npm ci\"\n      ]\n    }\n  }\n}"
    );
}

#[test]
fn pin_sets_archive_only_for_nix_phases() {
    let mut plan = BuildPlan::new(
        vec![
            Phase::setup(Some(vec![Pkg::new("go")])),
            Phase::install(None),
        ],
        None,
    );
    plan.pin(false);
    assert_eq!(
        plan.phase("setup").unwrap().nixpkgs_archive.as_deref(),
        Some(NIXPKGS_ARCHIVE)
    );
    assert_eq!(plan.phase("install").unwrap().nixpkgs_archive, None);
}

#[test]
fn override_renders_as_nix_expression() {
    let pkg = Pkg::new("python3").with_override("openssl", "openssl_1_1");
    assert_eq!(pkg.name, "(python3.override { openssl = openssl_1_1; })");
}
