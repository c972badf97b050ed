//! Loading Fashion-MNIST (gzipped IDX from the Debian package) into f32
//! images: the start-up cost of every training, inference and fault
//! campaign run. Target: well under 1 s for the 60k training images.

use criterion::{criterion_group, criterion_main, Criterion};
use ftnas::data::{self, Split};

fn load(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_load");
    g.sample_size(10);
    g.bench_function("fashion_mnist_train_60k", |b| {
        b.iter(|| data::load(None, Split::Train).expect("apt-get install -y dataset-fashion-mnist"))
    });
    g.bench_function("fashion_mnist_test_10k", |b| {
        b.iter(|| data::load(None, Split::Test).unwrap())
    });
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
