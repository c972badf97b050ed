//! Whole-network campaign speed of the fast exact path against the clean
//! fast engine, on the same images in the same process: ResNet-20 (random
//! weights, 1x28x28 inputs) on the shipped 32x32 array (`scalesim_32x32`,
//! INT8, wrapping 32-bit accumulator) with each dataflow, 64 images per
//! iteration, images in parallel.
//!
//! Cases per dataflow: `engine` (FastEngine, no faults), `exact_clean` (a
//! fault-free chip through the exact path), `exact_flips` (transient flips
//! in every PE register at a rate giving ~2 flips per inference, so nearly
//! every image has faults), `exact_aged` (a chip sampled from
//! `accelerators/faults/aged_chip.toml`: stuck-at cells in the SRAMs and PE
//! registers, every image and layer faulty), `exact_stuck_pe` (stuck-at
//! bits only in the PE registers, ~2 per chip: the worst case of the exact
//! corrections). Throughput is images/s; besides criterion's figures the
//! bench prints the ratio exact/engine from interleaved timed runs, since
//! the machine may be shared (absolute figures then move, ratios less).
//! `FASTNET_CASE=Is_exact_stuck` runs only the cases whose name contains
//! the text (for profiling one case).

use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::accel::{Accelerator, Dataflow};
use ftnas::engine::{Engine, FastEngine};
use ftnas::hwsim::layer::Exact;
use ftnas::hwsim::{ChipFaults, HwFaultSpec, HwNetwork, Site};
use ftnas::model::{load_model, Shape, Weights};
use ftnas::quant;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const IMAGES: usize = 64;

fn spec_text(sites: &[Site], line: &str) -> String {
    sites
        .iter()
        .map(|s| format!("[sites.\"{}\"]\n{line}\n", s.name()))
        .collect()
}

fn pe_sites() -> Vec<Site> {
    Site::ALL
        .into_iter()
        .filter(|s| matches!(s, Site::Pe(_)))
        .collect()
}

/// Median seconds of `f` over `reps` runs.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn bench_fastnet(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = Accelerator::load(&root.join("accelerators/scalesim_32x32.toml")).unwrap();
    let graph = load_model(&root.join("models/resnet20.toml"), Shape::new(1, 28, 28)).unwrap();
    let weights = Weights::random(&graph, 3);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let images: Vec<f32> = (0..IMAGES * 28 * 28).map(|_| rng.random::<f32>()).collect();
    let q = quant::quantize(&graph, &weights, base.datapath, &images).unwrap();
    let aged = HwFaultSpec::load(&root.join("accelerators/faults/aged_chip.toml")).unwrap();
    let mut group = c.benchmark_group("hwsim_fastnet_resnet20_32x32");
    group.sample_size(10);
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("engine", |b| {
        b.iter(|| FastEngine.run(&q, &images, 0, None).unwrap())
    });
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let mut accel = base.clone();
        accel.systolic.as_mut().unwrap().dataflow = df;
        let net = HwNetwork::new(&accel, &q)
            .unwrap()
            .with_executor(std::sync::Arc::new(Exact));
        // ~2 transient flips per inference spread over the PE registers.
        let unit = HwFaultSpec::parse(
            &spec_text(&pe_sites(), "transient_per_bit_cycle = 1e-12"),
            Path::new("flips.toml"),
        )
        .unwrap();
        let p = 2.0 * 1e-12 / unit.expected_transients_per_image(&net);
        let flips = HwFaultSpec::parse(
            &spec_text(&pe_sites(), &format!("transient_per_bit_cycle = {p:e}")),
            Path::new("flips.toml"),
        )
        .unwrap();
        let stuck = HwFaultSpec::parse(
            &spec_text(&pe_sites(), "stuck_at_0 = 5e-5\nstuck_at_1 = 5e-5"),
            Path::new("stuck.toml"),
        )
        .unwrap();
        let chips = [
            ("exact_clean", ChipFaults::none()),
            ("exact_flips", flips.sample_chip(7, 0, &net).unwrap()),
            ("exact_aged", aged.sample_chip(7, 0, &net).unwrap()),
            ("exact_stuck_pe", stuck.sample_chip(7, 1, &net).unwrap()),
        ];
        for (name, chip) in &chips {
            // FASTNET_CASE=<substring of "Os_exact_aged" etc.>: only those
            // cases, e.g. for a profile of one.
            if let Ok(only) = std::env::var("FASTNET_CASE") {
                if !format!("{df:?}_{name}").contains(&only) {
                    continue;
                }
            }
            group.bench_function(format!("{df:?}_{name}"), |b| {
                b.iter(|| net.run_images(&images, 0, chip).unwrap())
            });
            // Interleaved timing for the ratio on the same images.
            let mut ratios: Vec<f64> = (0..5)
                .map(|_| {
                    let engine = median_secs(3, || {
                        FastEngine.run(&q, &images, 0, None).unwrap();
                    });
                    let exact = median_secs(3, || {
                        net.run_images(&images, 0, chip).unwrap();
                    });
                    engine / exact
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            eprintln!(
                "ratio {df:?} {name}: exact path at {:.0}% of the clean engine's throughput (median of 5; {} permanent faults)",
                100.0 * ratios[2],
                chip.permanent.len()
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_fastnet);
criterion_main!(benches);
