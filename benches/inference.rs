//! Whole-network fixed-point inference throughput (images/s) for the shipped
//! ResNet-20 and MobileNet-V2 model files on 1x28x28 inputs: fast engine at
//! batch 1 and 128, clean and under MiBB p=1e-4 feature faults, and the
//! reference engine at batch 1 for scale. Real Fashion-MNIST test images
//! when the Debian package is installed, seeded random pixels otherwise
//! (throughput does not depend on pixel values).
//!
//! Run: `cargo bench --bench inference`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::data::{self, Split};
use ftnas::engine::{Engine, FastEngine, FeatureFaults, ReferenceEngine};
use ftnas::fault::FaultModel;
use ftnas::fixed::Datapath;
use ftnas::model::{load_model, Shape, Weights};
use ftnas::quant;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn images(shape: Shape, n: usize) -> Vec<f32> {
    match data::load(None, Split::Test) {
        Ok(d) if d.shape == shape && d.len() >= n => d.images[..n * shape.numel()].to_vec(),
        _ => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(n as u64);
            (0..n * shape.numel())
                .map(|_| rng.random::<f32>())
                .collect()
        }
    }
}

fn bench_inference(c: &mut Criterion) {
    let shape = Shape::new(1, 28, 28);
    let mibb = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
    let faults = FeatureFaults {
        injector: mibb.feature().unwrap(),
        seed: 1,
        trial: 0,
    };
    for name in ["resnet20", "mobilenetv2"] {
        let path = format!("{}/models/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let g = load_model(std::path::Path::new(&path), shape).unwrap();
        let w = Weights::random(&g, 1);
        let q = quant::quantize(&g, &w, Datapath::INT8, &images(shape, 16)).unwrap();
        let mut group = c.benchmark_group(format!("{name}_1x28x28_int8"));
        group.sample_size(10);
        for batch in [1usize, 128] {
            let imgs = images(shape, batch);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("fast/batch{batch}/clean"), |b| {
                b.iter(|| FastEngine.run(&q, &imgs, 0, None).unwrap())
            });
            group.bench_function(format!("fast/batch{batch}/mibb1e-4"), |b| {
                b.iter(|| FastEngine.run(&q, &imgs, 0, Some(faults)).unwrap())
            });
        }
        if name == "resnet20" {
            let one = images(shape, 1);
            group.throughput(Throughput::Elements(1));
            group.bench_function("reference/batch1/clean", |b| {
                b.iter(|| ReferenceEngine.run(&q, &one, 0, None).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_inference);
criterion_main!(benches);
