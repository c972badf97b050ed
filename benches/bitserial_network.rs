//! Whole-network throughput of the bit-serial functional model: ResNet-20
//! (random weights, 1x28x28 input) on the shipped Stripes design with 8-bit
//! datapath (`accelerators/stripes_a8.toml`), one image per iteration:
//! clean, and under SIP-register flips at 1e-7 per bit per cycle (about
//! 700 flips per image) through the exact executor (only the blocks and
//! SIPs a flip reaches are stepped) and the cycle-level one (every cycle of
//! every faulty group). Also the float forward pass that calibrates the
//! quantizer (every CLI command runs it on `--calib` images first).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::accel::Accelerator;
use ftnas::hwsim::bitserial::SipSite;
use ftnas::hwsim::bsnet::{BitSerialNetwork, BsExecutor};
use ftnas::hwsim::spec::Site;
use ftnas::hwsim::ChipFaults;
use ftnas::model::{load_model, Shape, Weights};
use ftnas::quant;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn bench_bitserial(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let accel = Accelerator::load(&root.join("accelerators/stripes_a8.toml")).unwrap();
    let graph = load_model(&root.join("models/resnet20.toml"), Shape::new(1, 28, 28)).unwrap();
    let weights = Weights::random(&graph, 3);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let images: Vec<f32> = (0..32 * 28 * 28).map(|_| rng.random::<f32>()).collect();
    let image = &images[..28 * 28];

    let mut group = c.benchmark_group("float_calibration_resnet20");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32));
    group.bench_function("32_images", |b| {
        b.iter(|| quant::build::calibrate(&graph, &weights, &images).unwrap())
    });
    group.finish();

    let q = quant::quantize(&graph, &weights, accel.datapath, &images).unwrap();
    let flips = ChipFaults {
        seed: 0,
        chip: 0,
        transient_rates: SipSite::ALL.iter().map(|&s| (Site::Sip(s), 1e-7)).collect(),
        ..ChipFaults::default()
    };
    let mut group = c.benchmark_group("bitserial_network_resnet20_stripes_a8");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for (name, executor, chip) in [
        ("clean_exact", BsExecutor::Exact, ChipFaults::none()),
        ("sip_flips_1e-7_exact", BsExecutor::Exact, flips.clone()),
        ("sip_flips_1e-7_cycle_level", BsExecutor::CycleLevel, flips),
    ] {
        let net = BitSerialNetwork::new(&accel, &q)
            .unwrap()
            .with_executor(executor);
        group.bench_function(name, |b| b.iter(|| net.run_image(image, 0, &chip).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench_bitserial);
criterion_main!(benches);
