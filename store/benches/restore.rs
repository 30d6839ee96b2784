//! The NAR restore hot path: hash, decode and write a NAR held in memory
//! (uncompressed, so decompression does not hide the restore), for a tree
//! of many small files like a `node_modules` and for one large file.
//!
//! Run: `cargo bench -p kiln-store --bench restore`.

use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_store::nar::{remove_tree, restore_verified, Expected};
use nix_archive::nar::{encode_path, CaseHack};
use nix_derivation::{HashAlgorithm, NixHash};
use nix_narinfo::Compression;
use sha2::{Digest, Sha256};

/// The NAR of a tree built by `fill`.
fn nar_of(fill: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    fs::create_dir(&root).unwrap();
    fill(&root);
    let mut nar = Vec::new();
    encode_path(&mut nar, &root, CaseHack::Disabled).unwrap();
    nar
}

fn bench_restore(c: &mut Criterion, name: &str, nar: &[u8]) {
    let hash =
        NixHash::from_algorithm_and_digest(HashAlgorithm::Sha256, &Sha256::digest(nar)).unwrap();
    let expected = Expected {
        nar_hash: &hash,
        nar_size: nar.len() as u64,
        compression: &Compression::None,
    };
    let target = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Bytes(nar.len() as u64));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter(|| {
            let destination = target.path().join("out");
            restore_verified(nar, &expected, &destination).unwrap();
            remove_tree(&destination).unwrap();
        })
    });
    group.finish();
}

fn restore(c: &mut Criterion) {
    let small_files = nar_of(|root| {
        for package in 0..40 {
            let dir = root.join(format!("package-{package}")).join("lib");
            fs::create_dir_all(&dir).unwrap();
            for file in 0..50 {
                fs::write(
                    dir.join(format!("module-{file}.js")),
                    vec![b'x'; 4000 + file * 10],
                )
                .unwrap();
            }
        }
    });
    bench_restore(c, "2000 small files", &small_files);

    let large_file = nar_of(|root| {
        fs::write(root.join("binary"), vec![7u8; 64 * 1024 * 1024]).unwrap();
    });
    bench_restore(c, "one 64 MiB file", &large_file);
}

criterion_group!(benches, restore);
criterion_main!(benches);
