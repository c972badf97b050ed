//! Whole-network throughput of the cycle-level path: ResNet-20 (random
//! weights, Fashion-MNIST-shaped 1x28x28 input) on the shipped 32x32 OS
//! array, one image per iteration (the GEMMs' folds run in parallel), clean
//! and on a chip sampled from the aged-chip example. Throughput
//! "elements" are PE-cycle updates (`rows * cols * cycles` per inference).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::accel::Accelerator;
use ftnas::hwsim::{ChipFaults, HwFaultSpec, HwNetwork};
use ftnas::model::{load_model, Shape, Weights};
use ftnas::quant;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn bench_network(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let accel = Accelerator::load(&root.join("accelerators/scalesim_32x32.toml")).unwrap();
    let graph = load_model(&root.join("models/resnet20.toml"), Shape::new(1, 28, 28)).unwrap();
    let weights = Weights::random(&graph, 3);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let image: Vec<f32> = (0..28 * 28).map(|_| rng.random::<f32>()).collect();
    let q = quant::quantize(&graph, &weights, accel.datapath, &image).unwrap();
    let net = HwNetwork::new(&accel, &q).unwrap();
    let spec = HwFaultSpec::load(&root.join("accelerators/faults/aged_chip.toml")).unwrap();
    let aged = spec.sample_chip(0, 0, &net).unwrap();
    let updates = net.cycles() * (net.array().rows * net.array().cols) as u64;
    let mut group = c.benchmark_group("hwsim_network_resnet20_32x32_os");
    group.sample_size(10);
    group.throughput(Throughput::Elements(updates));
    for (name, chip) in [("clean", ChipFaults::none()), ("aged_chip", aged)] {
        group.bench_function(name, |b| {
            b.iter(|| net.run_image(&image, 0, &chip).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_network);
criterion_main!(benches);
