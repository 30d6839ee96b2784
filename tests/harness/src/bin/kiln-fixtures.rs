//! Builds (or reuses) the fixture nixpkgs ahead of the test suite, so
//! `tests/run` can time that stage on its own, and checks that its store
//! paths are intact (run again after the suite, it catches a test that wrote
//! into one).

use std::time::Instant;

use kiln_harness::nixpkgs::Provenance;
use kiln_harness::FixtureNixpkgs;

fn main() {
    let start = Instant::now();
    let (fixture, provenance) = FixtureNixpkgs::build_or_reuse();
    let verb = match provenance {
        Provenance::Built => "built",
        Provenance::Reused => "reused",
    };
    println!(
        "fixture nixpkgs {verb} in {:.1}s: {} attributes, cache {}",
        start.elapsed().as_secs_f64(),
        fixture.attributes().len(),
        fixture.xz_cache_url()
    );
    let modified = fixture.modified_store_paths();
    if !modified.is_empty() {
        eprintln!(
            "fixture store paths changed after Nix registered them:\n  {}\n\
             Something wrote into the store. Remove them (nix-store --delete) and \
             target/kiln-fixtures, then run tests/run again.",
            modified.join("\n  ")
        );
        std::process::exit(1);
    }
    println!("fixture store paths intact");
}
