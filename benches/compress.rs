//! Throughput of the block compressor (gzip 6, zstd 3) and of the
//! deterministic tar writer plus compression over a generated tree.
//! `cargo bench --bench compress`.

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln::layer::compress::BlockCompressor;
use kiln::layer::{Compression, Format, LayerCache, PackSettings, Tree};

fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if i % 4 == 0 {
                state as u8
            } else {
                b"kiln layer "[(state % 11) as usize]
            }
        })
        .collect()
}

fn block_compressor(c: &mut Criterion) {
    let data = sample(32 << 20);
    let mut group = c.benchmark_group("block_compressor");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for format in [Format::Gzip, Format::Zstd] {
        let compression = Compression::new(format, None).unwrap();
        group.bench_function(format!("{format:?}"), |b| {
            b.iter(|| {
                let mut writer = BlockCompressor::new(compression, std::io::sink());
                writer.write_all(&data).unwrap();
                writer.finish().unwrap();
            })
        });
    }
    group.finish();
}

fn pack_tree(c: &mut Criterion) {
    let mut tree = Tree::new();
    let file = sample(64 << 10);
    for i in 0..256 {
        tree.add_file(format!("lib/{}/file{i}", i % 16), 0o644, file.clone());
    }
    let settings = PackSettings {
        compression: Compression::new(Format::Gzip, None).unwrap(),
        source_date_epoch: 1,
    };
    let mut group = c.benchmark_group("pack_tree");
    group.throughput(Throughput::Bytes(256 * file.len() as u64));
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let cache = LayerCache::open(dir.path()).unwrap();
            cache.pack_tree(&tree, &settings, "bench").unwrap();
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(dir.path()).unwrap();
    cache.pack_tree(&tree, &settings, "bench").unwrap();
    group.bench_function("warm", |b| {
        b.iter(|| cache.pack_tree(&tree, &settings, "bench").unwrap())
    });
    group.finish();
}

criterion_group!(benches, block_compressor, pack_tree);
criterion_main!(benches);
