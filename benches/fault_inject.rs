//! Cost of the algorithmic fault models at the engine's hook points, and of
//! geometric skipping against one coin flip per element.
//!
//! Sizes: a 64x32x32 conv output (65,536 codes) with n = 576 MACs per output
//! (64 channels, 3x3), and that conv's 36,864 8-bit weights.

use criterion::{criterion_group, criterion_main, Criterion};
use ftnas::fault::{
    AdSaf, BitFlip, LayerSite, Mibb, PerBit, Sa1Sign, ShareUnit, SharedStuck, StuckAt,
};
use ftnas::fixed::Format;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let out: Vec<i32> = (0..65_536).map(|i| (i % 256) - 128).collect();
    let weights: Vec<i32> = (0..36_864).map(|i| (i % 255) - 127).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut g = c.benchmark_group("fault_inject");
    g.sample_size(30);

    let mibb = Mibb { p: 1e-4 };
    g.bench_function("mibb_1e-4_n576_65k", |b| {
        b.iter(|| {
            let mut codes = out.clone();
            mibb.apply(576, 8, &mut codes, &mut rng);
            black_box(codes)
        })
    });
    // The same model with one uniform per element (what skipping avoids).
    let p_out = mibb.p_out(576);
    g.bench_function("mibb_1e-4_n576_65k_per_element", |b| {
        b.iter(|| {
            let mut codes = out.clone();
            for c in codes.iter_mut() {
                if rng.random::<f64>() < p_out {
                    let r = rng.random_range(0..16u32);
                    let d = 1i32 << (r >> 1);
                    *c = (if r & 1 == 0 { *c + d } else { *c - d }).clamp(-128, 127);
                }
            }
            black_box(codes)
        })
    });
    g.bench_function("clone_only_65k", |b| b.iter(|| black_box(out.clone())));
    let flip = BitFlip { p: 1e-5 };
    g.bench_function("bitflip_1e-5_65k", |b| {
        b.iter(|| {
            let mut codes = out.clone();
            flip.apply(8, &mut codes, &mut rng);
            black_box(codes)
        })
    });
    let sa = StuckAt {
        p0: PerBit::Uniform(5e-4),
        p1: PerBit::Uniform(5e-4),
        shared: None,
    };
    g.bench_function("stuck_at_1e-3_37k_weights", |b| {
        b.iter(|| {
            let mut codes = weights.clone();
            sa.apply(8, &mut codes, &mut rng);
            black_box(codes)
        })
    });
    // The derived model of a TPU-like WS array: the SRAM's bits per weight
    // and a 256x256 register file's shared bits, drawn whole for every
    // layer (so all layers of a chip agree) and forced into every weight a
    // register holds.
    let shared = StuckAt {
        shared: Some(SharedStuck {
            p0: 5e-4,
            p1: 5e-4,
            filters: 256,
            reduction: 256,
            per: ShareUnit::Term,
        }),
        ..sa.clone()
    };
    let site = LayerSite {
        node: 0,
        name: "conv",
        is_conv: true,
        macs_per_output: 576,
        taps: 9,
        groups: 1,
        draw: 7,
        format: Format { bits: 8, frac: 6 },
    };
    g.bench_function("stuck_at_1e-3_shared_256x256_37k_weights", |b| {
        b.iter(|| {
            let mut codes = weights.clone();
            shared.apply_layer(&site, &mut codes, &mut rng);
            black_box(codes)
        })
    });
    let adsaf = AdSaf {
        p: 0.08,
        sa1_fraction: 0.163,
        sa1_sign: Sa1Sign::Random,
    };
    g.bench_function("adsaf_0.08_37k_weights", |b| {
        b.iter(|| {
            let mut codes = weights.clone();
            adsaf.apply(8, &mut codes, &mut rng);
            black_box(codes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
