//! Builds (or reuses) the fixture nixpkgs ahead of the test suite, so
//! `tests/run` can time that stage on its own.

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
}
