//! Every engine computes the same codes as the scalar reference engine, for
//! random small graphs (all op kinds), random conv geometries and random
//! datapaths (2..16-bit codes, 8..32-bit accumulators, wrap and saturate),
//! clean and under feature and weight faults. One battery, every engine.

mod engine_common;

use engine_common::{datapath, images, random_graph, RandomBitFlips};
use ftnas::engine::{self, Engine, FeatureFaults, ReferenceEngine};
use ftnas::model::{GraphBuilder, Op, Shape, Weights};
use ftnas::quant::{self, QModel};
use proptest::prelude::*;

/// Every engine under test (the reference is the oracle).
fn engines() -> Vec<Box<dyn Engine>> {
    vec![engine::by_name("fast").unwrap()]
}

fn assert_all_engines_agree(q: &QModel, imgs: &[f32], faults: Option<FeatureFaults<'_>>) {
    let want = ReferenceEngine.run(q, imgs, 7, faults).unwrap();
    // one thread: the fast engine puts all images into one GEMM group
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for e in engines() {
        let got = e.run(q, imgs, 7, faults).unwrap();
        assert_eq!(got, want, "engine {} differs from the reference", e.name());
        let got = single.install(|| e.run(q, imgs, 7, faults).unwrap());
        assert_eq!(
            got,
            want,
            "engine {} (1 thread) differs from the reference",
            e.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_bit_identical(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, saturate);
        let calib = images(g.input_shape(), 3, seed ^ 2);
        let q = quant::quantize(&g, &w, dp, &calib).unwrap();
        let imgs = images(g.input_shape(), 5, seed ^ 3);
        assert_all_engines_agree(&q, &imgs, None);
        let flips = RandomBitFlips { p: 0.05 };
        let faults = FeatureFaults { injector: &flips, seed, trial: 3 };
        assert_all_engines_agree(&q, &imgs, Some(faults));
        let chip = q.with_weight_faults(&flips, seed, 1);
        assert_all_engines_agree(&chip, &imgs, None);
    }

    #[test]
    fn random_conv_layers_bit_identical(
        c in 1usize..=4,
        h in 1usize..=8,
        w in 1usize..=8,
        kh in 1usize..=4,
        kw in 1usize..=4,
        sh in 1usize..=3,
        sw in 1usize..=3,
        ph in 0usize..=2,
        pw in 0usize..=2,
        dh in 1usize..=2,
        dw in 1usize..=2,
        gsel in 0usize..3,
        mult in 1usize..=3,
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        relu in 0u8..3,
    ) {
        let groups = [1, c, if c % 2 == 0 { 2 } else { 1 }][gsel];
        let mut b = GraphBuilder::new("layer", Shape::new(c, h, w));
        let conv = Op::Conv2d {
            out_channels: groups * mult,
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
            dilation: (dh, dw),
            groups,
            bias: seed % 2 == 0,
        };
        // geometries that do not fit the input are not layers
        prop_assume!(b.add("conv", conv, &[0]).is_ok());
        let conv_id = 1;
        match relu {
            1 => { b.add("relu", Op::Relu, &[conv_id]).unwrap(); }
            2 => { b.add("relu6", Op::Relu6, &[conv_id]).unwrap(); }
            _ => {}
        }
        let g = b.finish();
        let wts = Weights::random(&g, seed);
        let dp = datapath(act, weight, psum, saturate);
        let calib = images(g.input_shape(), 2, seed ^ 5);
        let q = quant::quantize(&g, &wts, dp, &calib).unwrap();
        let imgs = images(g.input_shape(), 3, seed ^ 6);
        assert_all_engines_agree(&q, &imgs, None);
    }
}

/// Saturating accumulators that really saturate, with both the GEMM path
/// (small codes) and the in-order fallback (large codes) in one model.
#[test]
fn saturating_accumulator_fallback_matches() {
    for (act, weight) in [(16u8, 16u8), (8, 8), (12, 4), (3, 3)] {
        let mut b = GraphBuilder::new("sat", Shape::new(8, 6, 6));
        let c = b
            .add(
                "conv",
                Op::Conv2d {
                    out_channels: 6,
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: (1, 1),
                    dilation: (1, 1),
                    groups: 1,
                    bias: true,
                },
                &[0],
            )
            .unwrap();
        let f = b.add("flat", Op::Flatten, &[c]).unwrap();
        b.add(
            "fc",
            Op::Linear {
                out_features: 4,
                bias: true,
            },
            &[f],
        )
        .unwrap();
        let g = b.finish();
        let w = Weights::random(&g, 11);
        let dp = ftnas::fixed::Datapath {
            act_bits: act,
            weight_bits: weight,
            psum_bits: act.max(weight).max(16),
            overflow: ftnas::fixed::Overflow::Saturate,
        };
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, 1)).unwrap();
        assert_all_engines_agree(&q, &images(g.input_shape(), 3, 2), None);
    }
}

/// The shipped ResNet-20 and MobileNet-V2 files (every layer kind the fast
/// engine specialises: strided and 1x1 GEMMs, depthwise planes of several
/// geometries sharing one scratch, residual adds), INT8, clean and under
/// feature faults, against the reference.
#[test]
fn shipped_models_bit_identical() {
    let shape = Shape::new(1, 28, 28);
    for name in ["resnet20", "mobilenetv2"] {
        let path = format!("{}/models/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let g = ftnas::model::load_model(std::path::Path::new(&path), shape).unwrap();
        let w = Weights::random(&g, 5);
        let q =
            quant::quantize(&g, &w, ftnas::fixed::Datapath::INT8, &images(shape, 2, 1)).unwrap();
        let imgs = images(shape, 3, 2);
        assert_all_engines_agree(&q, &imgs, None);
        let flips = RandomBitFlips { p: 0.01 };
        let faults = FeatureFaults {
            injector: &flips,
            seed: 9,
            trial: 1,
        };
        assert_all_engines_agree(&q, &imgs, Some(faults));
    }
}
