//! `kiln build --push` of the Node fixture app to a loopback
//! `docker-registry`, three ways side by side in one run: cold (empty kiln
//! cache, empty cache repo), warm (the same kiln cache again) and a fresh
//! machine (empty kiln cache, the cache repo the cold build filled). The
//! packages come from the fixture's binary cache over HTTP and never from
//! the host's store, as on a CI runner. Prints each build's stages and the
//! ratios to cold.
//!
//! Run: `cargo bench --bench cache_repo` (as root, with nix, nginx and
//! docker-registry; tests/run installs them). Target: the fresh machine
//! under 20% of cold.

use std::path::Path;

use kiln_harness::{require, FixtureNixpkgs, Registry, RegistryKind};

mod support;

use support::{node_app_copy, node_build, stages, timed, Build};

const ROUNDS: usize = 3;

struct Setup<'a> {
    fixture: &'a FixtureNixpkgs,
    substituter: String,
    registry: &'a Registry,
    app: &'a Path,
}

fn build(setup: &Setup<'_>, cache: &Path, cache_repo: &str, tag: &str) -> Build {
    let host = setup.registry.host();
    timed(
        node_build(setup.fixture, setup.app, cache, &setup.substituter)
            .arg("--ignore-host-store")
            .args(["--insecure-registry", &host])
            .args(["--push", &format!("{host}/app:{tag}")])
            .args(["--cache-repo", &format!("{host}/{cache_repo}")])
            .env_remove("KILN_CACHE_REPO"),
    )
}

fn main() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        eprintln!("skipped: the fixture nixpkgs needs nix and root");
        return;
    };
    if !require(&["docker-registry", "nginx"]) {
        return;
    }
    let registry = Registry::start(RegistryKind::Plain);
    let http = fixture.serve_http();
    let mut ratios = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let work = tempfile::tempdir().unwrap();
        let app = node_app_copy(work.path());
        let setup = Setup {
            fixture,
            substituter: http.url(),
            registry: &registry,
            app: &app,
        };
        let repo = format!("cache-{round}");
        let cold = build(&setup, &work.path().join("a"), &repo, "cold");
        let warm = build(&setup, &work.path().join("a"), &repo, "warm");
        let fresh = build(&setup, &work.path().join("b"), &repo, "fresh");
        assert_eq!(fresh.summary["digest"], cold.summary["digest"]);
        println!("round {round}");
        for (name, run) in [("cold", &cold), ("warm", &warm), ("fresh", &fresh)] {
            println!(
                "  {name:<5} {:>7.2}s  {}",
                run.wall.as_secs_f64(),
                stages(&run.summary)
            );
        }
        let cold_s = cold.wall.as_secs_f64();
        let (warm_r, fresh_r) = (
            warm.wall.as_secs_f64() / cold_s,
            fresh.wall.as_secs_f64() / cold_s,
        );
        println!("  warm/cold {warm_r:.3}  fresh/cold {fresh_r:.3}");
        ratios.0.push(warm_r);
        ratios.1.push(fresh_r);
    }
    for list in [&mut ratios.0, &mut ratios.1] {
        list.sort_by(f64::total_cmp);
    }
    println!(
        "median warm/cold {:.3}, fresh machine/cold {:.3} (target under 0.200)",
        ratios.0[ROUNDS / 2],
        ratios.1[ROUNDS / 2]
    );
}
