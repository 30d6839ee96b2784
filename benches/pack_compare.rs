//! kiln's layer packing side by side with the standard tools, in one run:
//! `tar --sort=name -c | gzip -6` and `tar --sort=name -c | pigz -6`, on the
//! fixture `nodejs` closure and on a synthetic store path (1 GiB by
//! default, `KILN_BENCH_SYNTHETIC_MB` to change). Prints throughput in MB/s
//! of uncompressed tar, the ratios, warm re-pack vs cold, and kiln's peak
//! memory. `cargo bench --bench pack_compare`.
//!
//! The three run in turn for `KILN_BENCH_ROUNDS` rounds (default 3) after
//! one read of every file into the page cache, and the median of each
//! round's ratios is reported: on a machine shared with other work, load
//! changes between one tool's run and the next, and a ratio of runs made
//! seconds apart is far steadier than one of runs made minutes apart.
//!
//! Targets (issue 5): kiln >= 1.0x pigz and >= 1.8x gzip on 2 cores, warm
//! re-pack >= 20x faster than cold, peak memory < 150 MB.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln::layer::{Compression, Format, LayerCache, PackSettings, StorePathSource};
use nix::sys::resource::{getrusage, UsageWho};

/// Set in the child that packs, so its peak memory is kiln's alone.
const CHILD_ENV: &str = "KILN_BENCH_PACK_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_pack(&spec);
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir()
        .unwrap();
    println!("threads: {}", rayon::current_num_threads());

    match fixture_closure() {
        Some(paths) => compare("fixture nodejs closure", &paths, work.path()),
        None => println!("fixture nodejs closure: skipped (build it with `cargo run -p kiln-harness --bin kiln-fixtures`)"),
    }
    let megabytes: u64 = std::env::var("KILN_BENCH_SYNTHETIC_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let synthetic = synthetic_path(work.path(), megabytes);
    compare(
        &format!("synthetic {megabytes} MiB path"),
        &[synthetic],
        work.path(),
    );
}

fn settings() -> PackSettings {
    PackSettings {
        compression: Compression::new(Format::Gzip, Some(6)).unwrap(),
        source_date_epoch: 1,
    }
}

/// Packs every path given as `store_path=local` (`;`-separated) into the
/// cache folder named first; prints the tar bytes.
fn child_pack(spec: &str) {
    let mut parts = spec.split(';');
    let cache = LayerCache::open(Path::new(parts.next().unwrap())).unwrap();
    let mut bytes = 0;
    for part in parts {
        let (store_path, local) = part.split_once('=').unwrap();
        let source = StorePathSource {
            store_path: store_path.to_string(),
            local: PathBuf::from(local),
        };
        let layer = cache.pack_store_paths(&[source], &settings()).unwrap();
        bytes += layer.uncompressed_size;
    }
    println!("{bytes}");
}

struct Run {
    elapsed: Duration,
    tar_bytes: u64,
    peak_rss_kb: i64,
}

fn kiln_pack(paths: &[StorePathSource], cache: &Path) -> Run {
    let mut spec = cache.display().to_string();
    for path in paths {
        spec.push_str(&format!(";{}={}", path.store_path, path.local.display()));
    }
    let start = Instant::now();
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, spec)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Run {
        elapsed,
        tar_bytes: String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap(),
        peak_rss_kb: getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss(),
    }
}

fn shell_pipeline(paths: &[StorePathSource], filter: &str) -> Duration {
    let start = Instant::now();
    for path in paths {
        let parent = path.local.parent().unwrap();
        let name = path.local.file_name().unwrap();
        let script = format!(
            "tar --sort=name -c -C '{}' '{}' | {filter} > /dev/null",
            parent.display(),
            name.to_string_lossy()
        );
        let status = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }
    start.elapsed()
}

fn compare(label: &str, paths: &[StorePathSource], work: &Path) {
    let rounds: usize = std::env::var("KILN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(3);
    let has_pigz = which("pigz");
    // Whoever reads first would otherwise also pay for the disk.
    shell_pipeline(paths, "cat");

    println!("\n{label}:");
    let mut gzip_ratios = Vec::new();
    let mut pigz_ratios = Vec::new();
    let mut warm_speedups = Vec::new();
    let mut peak_rss_kb = 0;
    let mut mb = 0.0;
    for round in 1..=rounds {
        let cache = work.join(format!("cache-{}-{round}", label.replace(' ', "-")));
        let cold = kiln_pack(paths, &cache);
        let warm = kiln_pack(paths, &cache);
        fs::remove_dir_all(&cache).unwrap();
        let gzip = shell_pipeline(paths, "gzip -6");
        let pigz = has_pigz.then(|| shell_pipeline(paths, "pigz -6"));

        mb = cold.tar_bytes as f64 / 1e6;
        peak_rss_kb = peak_rss_kb.max(cold.peak_rss_kb).max(warm.peak_rss_kb);
        let rate = |d: Duration| mb / d.as_secs_f64();
        let kiln = cold.elapsed.as_secs_f64();
        gzip_ratios.push(gzip.as_secs_f64() / kiln);
        warm_speedups.push(kiln / warm.elapsed.as_secs_f64());
        let pigz_part = match pigz {
            Some(pigz) => {
                pigz_ratios.push(pigz.as_secs_f64() / kiln);
                format!(
                    "pigz -6 {:6.1} MB/s ({:.2}x)",
                    rate(pigz),
                    pigz.as_secs_f64() / kiln
                )
            }
            None => "pigz not installed".to_string(),
        };
        println!(
            "  round {round}: kiln {:6.1} MB/s | gzip -6 {:6.1} MB/s ({:.2}x) | {pigz_part} | warm {:.3} s",
            rate(cold.elapsed),
            rate(gzip),
            gzip.as_secs_f64() / kiln,
            warm.elapsed.as_secs_f64()
        );
    }
    println!("  {mb:.1} MB of tar, medians of {rounds} rounds:");
    println!("    kiln/gzip -6 = {:.2}x", median(&mut gzip_ratios));
    if has_pigz {
        println!("    kiln/pigz -6 = {:.2}x", median(&mut pigz_ratios));
    }
    println!(
        "    warm re-pack {:.0}x faster than cold",
        median(&mut warm_speedups)
    );
    println!(
        "    kiln peak memory (max RSS of pack children so far): {:.1} MB",
        peak_rss_kb as f64 / 1024.0
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn fixture_closure() -> Option<Vec<StorePathSource>> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = fs::read_dir(manifest.join("target/kiln-fixtures")).ok()?;
    let attributes = fixtures
        .filter_map(Result::ok)
        .map(|e| e.path().join("attributes.json"))
        .find(|p| p.exists())?;
    let attributes: serde_json::Value = serde_json::from_slice(&fs::read(attributes).ok()?).ok()?;
    let nodejs = attributes["nodejs"].as_str()?;
    let output = Command::new("nix-store")
        .args(["--query", "--requisites", nodejs])
        .output()
        .ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(StorePathSource::in_place)
            .collect()
    })
}

/// A store path of `megabytes` MiB in 16 MiB files of text-like data that
/// compresses about as well as binaries and libraries do.
fn synthetic_path(work: &Path, megabytes: u64) -> StorePathSource {
    let store_path = "/nix/store/0000000000000000000000000000bnch-synthetic".to_string();
    let local = work.join("0000000000000000000000000000bnch-synthetic");
    fs::create_dir_all(local.join("lib")).unwrap();
    let words: Vec<&[u8]> = [
        &b"main"[..],
        b"\x00\x00\x00\x00",
        b"libc.so.6",
        b"GLIBC_2.34",
        b"\x7fELF",
        b"_ZNSt6vector",
        b"node::Environment",
        b"\xff\xfe\x01",
        b"printf",
        b"malloc",
        b"v8::internal",
        b"\n",
    ]
    .to_vec();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let file_size = 16 << 20;
    let files = (megabytes * (1 << 20)).div_ceil(file_size);
    for i in 0..files {
        let mut out = std::io::BufWriter::new(
            fs::File::create(local.join(format!("lib/part{i:04}.so"))).unwrap(),
        );
        let mut written = 0;
        while written < file_size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let chunk: &[u8] = if state.is_multiple_of(4) {
                &state.to_le_bytes()
            } else {
                words[(state >> 8) as usize % words.len()]
            };
            out.write_all(chunk).unwrap();
            written += chunk.len() as u64;
        }
    }
    StorePathSource { store_path, local }
}
