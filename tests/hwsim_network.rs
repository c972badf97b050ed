//! Whole networks through the cycle-level systolic model: fault-free logits
//! bit-identical to the reference engine for random small models (all op
//! kinds, strides, groups, depthwise), random array sizes, all three
//! dataflows and random datapaths (wrap and saturate); cycles stepped per
//! conv/linear layer equal to the accelerator timing model's; SRAM faults
//! with the documented layout and residency; PE faults confined to their
//! layer and group.

mod engine_common;

mod common;

use common::systolic_accelerator as accelerator;
use engine_common::{datapath, images, random_graph};
use ftnas::accel::description::{Accelerator, Kind};
use ftnas::accel::{time_graph, Dataflow};
use ftnas::engine::{Engine, ReferenceEngine};
use ftnas::fixed::Datapath;
use ftnas::hwsim::{
    ChipFault, ChipFaults, FaultKind, FaultSite, HwFault, HwNetwork, ImageFaults, LayerFault,
    SramBuffer, SramFault,
};
use ftnas::model::{Graph, GraphBuilder, Op, Shape, Weights};
use ftnas::quant::{self, QModel, QOp};
use proptest::prelude::*;

fn dataflow(i: u8) -> Dataflow {
    [Dataflow::Os, Dataflow::Ws, Dataflow::Is][i as usize % 3]
}

/// Fault-free logits equal the reference engine's, and each layer's
/// stepped cycles equal the timing model's compute cycles + 1.
fn check_clean(g: &Graph, q: &QModel, acc: &Accelerator, imgs: &[f32]) {
    let net = HwNetwork::new(acc, q).unwrap();
    let want = ReferenceEngine.run(q, imgs, 0, None).unwrap();
    let timing = time_graph(acc, g, None).unwrap();
    let n = q.input_shape().numel();
    for (i, img) in imgs.chunks(n).enumerate() {
        let mut codes = vec![0; n];
        q.quantize_input(img, &mut codes);
        let run = net.run_codes(&codes, &ImageFaults::default()).unwrap();
        assert_eq!(run.logits, want[i], "image {i} on {}", acc.name);
        assert_eq!(
            net.run_image(img, i as u64, &ChipFaults::none()).unwrap(),
            want[i]
        );
        assert_eq!(run.layers.len(), net.layers().len());
        for (hl, stats) in net.layers().iter().zip(&run.layers) {
            let t = timing
                .layers
                .iter()
                .find(|t| t.name == hl.name)
                .expect("timed layer");
            assert_eq!(stats.stepped_cycles, hl.gemm.cycles, "{}", hl.name);
            assert_eq!(
                stats.stepped_cycles,
                t.compute_cycles + 1,
                "layer {} on {}",
                hl.name,
                acc.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_networks_match_the_reference_engine(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        rows in 1usize..=6,
        cols in 1usize..=6,
        df in 0u8..3,
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, saturate);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 3, seed ^ 2)).unwrap();
        let acc = accelerator(rows, cols, dataflow(df), dp, 4);
        check_clean(&g, &q, &acc, &images(g.input_shape(), 2, seed ^ 3));
    }

    #[test]
    fn random_conv_layers_match(
        c in 1usize..=4,
        h in 1usize..=7,
        w in 1usize..=7,
        k in 1usize..=3,
        s in 1usize..=3,
        p in 0usize..=1,
        gsel in 0usize..3,
        mult in 1usize..=2,
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        rows in 1usize..=5,
        cols in 1usize..=5,
        df in 0u8..3,
    ) {
        let groups = [1, c, if c % 2 == 0 { 2 } else { 1 }][gsel];
        let mut b = GraphBuilder::new("layer", Shape::new(c, h, w));
        let conv = Op::Conv2d {
            out_channels: groups * mult,
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            dilation: (1, 1),
            groups,
            bias: seed % 2 == 0,
        };
        prop_assume!(b.add("conv", conv, &[0]).is_ok());
        b.add("relu", Op::Relu, &[1]).unwrap();
        let f = b.add("flat", Op::Flatten, &[2]).unwrap();
        b.add("fc", Op::Linear { out_features: 3, bias: true }, &[f]).unwrap();
        let g = b.finish();
        let wts = Weights::random(&g, seed);
        let dp = datapath(act, weight, psum, saturate);
        let q = quant::quantize(&g, &wts, dp, &images(g.input_shape(), 2, seed ^ 5)).unwrap();
        let acc = accelerator(rows, cols, dataflow(df), dp, 1);
        check_clean(&g, &q, &acc, &images(g.input_shape(), 2, seed ^ 6));
    }
}

/// conv(3x3, 2 groups) -> relu -> conv(1x1) -> flatten -> fc, int8.
fn small_model() -> (Graph, QModel) {
    let mut b = GraphBuilder::new("small", Shape::new(2, 5, 5));
    let c1 = b
        .add(
            "c1",
            Op::Conv2d {
                out_channels: 4,
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
                dilation: (1, 1),
                groups: 2,
                bias: true,
            },
            &[0],
        )
        .unwrap();
    let r = b.add("r1", Op::Relu, &[c1]).unwrap();
    let c2 = b
        .add(
            "c2",
            Op::Conv2d {
                out_channels: 3,
                kernel: (1, 1),
                stride: (1, 1),
                padding: (0, 0),
                dilation: (1, 1),
                groups: 1,
                bias: false,
            },
            &[r],
        )
        .unwrap();
    let f = b.add("flat", Op::Flatten, &[c2]).unwrap();
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
    let w = Weights::random(&g, 9);
    let q = quant::quantize(&g, &w, Datapath::INT8, &images(g.input_shape(), 4, 1)).unwrap();
    (g, q)
}

fn input_codes(q: &QModel, seed: u64) -> Vec<i32> {
    let img = images(q.input_shape(), 1, seed);
    let mut codes = vec![0; img.len()];
    q.quantize_input(&img, &mut codes);
    codes
}

fn sram(buffer: SramBuffer, address: usize, bit: u8, kind: FaultKind) -> ChipFault {
    ChipFault::Sram(SramFault {
        buffer,
        address,
        bit,
        kind,
    })
}

fn flip_bit(code: i32, bit: u8, width: u32) -> i32 {
    let sh = 32 - width;
    ((code ^ (1 << bit)) << sh) >> sh
}

#[test]
fn ifmap_faults_of_the_first_layer_corrupt_the_input_codes() {
    let (_, q) = small_model();
    let acc = accelerator(4, 4, Dataflow::Ws, Datapath::INT8, 1);
    let net = HwNetwork::new(&acc, &q).unwrap();
    let codes = input_codes(&q, 3);
    for (address, bit) in [(0usize, 7u8), (13, 2), (49, 6)] {
        let faults = ImageFaults {
            permanent: vec![],
            transient: vec![LayerFault {
                layer: 0,
                fault: sram(
                    SramBuffer::Ifmap,
                    address,
                    bit,
                    FaultKind::Flip { cycle: 5 },
                ),
            }],
        };
        let got = net.run_codes(&codes, &faults).unwrap().logits;
        let mut corrupted = codes.clone();
        corrupted[address] = flip_bit(corrupted[address], bit, 8);
        let want = net
            .run_codes(&corrupted, &ImageFaults::default())
            .unwrap()
            .logits;
        assert_eq!(got, want, "address {address} bit {bit}");
    }
    // An address past the 50 input codes holds nothing in layer 0.
    let faults = ImageFaults {
        permanent: vec![],
        transient: vec![LayerFault {
            layer: 0,
            fault: sram(SramBuffer::Ifmap, 50, 7, FaultKind::Flip { cycle: 0 }),
        }],
    };
    let clean = net.run_codes(&codes, &ImageFaults::default()).unwrap();
    assert_eq!(net.run_codes(&codes, &faults).unwrap(), clean);
}

#[test]
fn filter_faults_equal_a_model_with_corrupted_weights() {
    let (_, q) = small_model();
    // 1 KiB filter buffer = 1024 words; layer 1 (c2) has 12 weights.
    let acc = accelerator(3, 2, Dataflow::Is, Datapath::INT8, 1);
    let net = HwNetwork::new(&acc, &q).unwrap();
    let codes = input_codes(&q, 4);
    let stuck = sram(SramBuffer::Filter, 5, 3, FaultKind::StuckAt1);
    let flip = LayerFault {
        layer: 1,
        fault: sram(SramBuffer::Filter, 7, 7, FaultKind::Flip { cycle: 2 }),
    };
    let got = net
        .run_codes(
            &codes,
            &ImageFaults {
                permanent: vec![stuck],
                transient: vec![flip],
            },
        )
        .unwrap()
        .logits;
    // The same faults applied to the model's weights: the stuck cell in every
    // layer's filter, the flip in layer 1's only.
    let mut chip = q.clone();
    let mut li = 0;
    for node in &mut chip.nodes {
        if let QOp::Mac(l) = &mut node.op {
            if l.weights.len() > 5 {
                l.weights[5] |= 1 << 3;
                l.weights[5] = (l.weights[5] << 24) >> 24;
            }
            if li == 1 {
                l.weights[7] = flip_bit(l.weights[7], 7, 8);
            }
            li += 1;
        }
    }
    let chip_net = HwNetwork::new(&acc, &chip).unwrap();
    let want = chip_net
        .run_codes(&codes, &ImageFaults::default())
        .unwrap()
        .logits;
    assert_eq!(got, want);
    assert_ne!(chip, q, "the faults changed some weight");
}

#[test]
fn ofmap_faults_of_the_last_layer_flip_a_logit() {
    let (_, q) = small_model();
    let acc = accelerator(2, 3, Dataflow::Os, Datapath::INT8, 1);
    let net = HwNetwork::new(&acc, &q).unwrap();
    let codes = input_codes(&q, 5);
    let clean = net
        .run_codes(&codes, &ImageFaults::default())
        .unwrap()
        .logits;
    let last = net.layers().len() - 1;
    let faults = ImageFaults {
        permanent: vec![],
        transient: vec![LayerFault {
            layer: last,
            fault: sram(SramBuffer::Ofmap, 2, 6, FaultKind::Flip { cycle: 1 }),
        }],
    };
    let got = net.run_codes(&codes, &faults).unwrap().logits;
    let mut want = clean.clone();
    want[2] = flip_bit(want[2], 6, 8);
    assert_eq!(got, want);
}

#[test]
fn pe_faults_stay_in_their_layer_and_group() {
    // A single grouped conv: its output codes are the "logits", so a psum
    // flip during group 1's GEMM may change group 1's channels only.
    let acc = accelerator(4, 4, Dataflow::Os, Datapath::INT8, 1);
    let mut b = GraphBuilder::new("one", Shape::new(2, 5, 5));
    b.add(
        "c1",
        Op::Conv2d {
            out_channels: 4,
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
            dilation: (1, 1),
            groups: 2,
            bias: true,
        },
        &[0],
    )
    .unwrap();
    let g = b.finish();
    let w = Weights::random(&g, 3);
    let q1 = quant::quantize(&g, &w, Datapath::INT8, &images(g.input_shape(), 2, 1)).unwrap();
    let net1 = HwNetwork::new(&acc, &q1).unwrap();
    let codes = input_codes(&q1, 8);
    let clean = net1
        .run_codes(&codes, &ImageFaults::default())
        .unwrap()
        .logits;
    let gc = net1.layers()[0].gemm.group_cycles;
    let mut changed_any = false;
    for cycle in (gc..2 * gc).step_by(3) {
        let faults = ImageFaults {
            permanent: vec![],
            transient: vec![LayerFault {
                layer: 0,
                fault: ChipFault::Pe(HwFault::flip(FaultSite::PsumReg, 1, 1, 12, cycle)),
            }],
        };
        let got = net1.run_codes(&codes, &faults).unwrap().logits;
        // group 0 = output channels 0..2 = codes 0..50
        assert_eq!(got[..50], clean[..50], "cycle {cycle}");
        changed_any |= got != clean;
    }
    assert!(changed_any, "some psum flip in group 1 is visible");
    // A cycle past the layer is rejected with the layer named.
    let faults = ImageFaults {
        permanent: vec![],
        transient: vec![LayerFault {
            layer: 0,
            fault: ChipFault::Pe(HwFault::flip(FaultSite::PsumReg, 0, 0, 0, 2 * gc)),
        }],
    };
    let e = net1.run_codes(&codes, &faults).unwrap_err().to_string();
    assert!(e.contains("past the end of the layer"), "{e}");
    let faults = ImageFaults {
        permanent: vec![ChipFault::Pe(HwFault::stuck(
            FaultSite::ActReg,
            9,
            0,
            0,
            true,
        ))],
        transient: vec![],
    };
    let e = net1.run_codes(&codes, &faults).unwrap_err().to_string();
    assert!(e.contains("outside the 4x4 array"), "{e}");
}

#[test]
fn stuck_pe_bits_act_in_every_layer() {
    let (_, q) = small_model();
    let acc = accelerator(2, 2, Dataflow::Ws, Datapath::INT8, 1);
    let net = HwNetwork::new(&acc, &q).unwrap();
    let codes = input_codes(&q, 6);
    let clean = net.run_codes(&codes, &ImageFaults::default()).unwrap();
    let stuck = ImageFaults {
        permanent: vec![ChipFault::Pe(HwFault::stuck(
            FaultSite::WeightReg,
            0,
            0,
            6,
            true,
        ))],
        transient: vec![],
    };
    let got = net.run_codes(&codes, &stuck).unwrap();
    assert_ne!(got.logits, clean.logits);
    assert_eq!(
        got.layers, clean.layers,
        "faults do not change cycle counts"
    );
}

#[test]
fn bad_accelerators_are_rejected() {
    let (_, q) = small_model();
    let mut acc = accelerator(2, 2, Dataflow::Os, Datapath::INT8, 1);
    acc.datapath.psum_bits = 24;
    let e = HwNetwork::new(&acc, &q).unwrap_err().to_string();
    assert!(e.contains("quantized for"), "{e}");
    let mut acc = accelerator(2, 2, Dataflow::Os, Datapath::INT8, 1);
    acc.systolic = None;
    acc.kind = Kind::BitSerial;
    let e = HwNetwork::new(&acc, &q).unwrap_err().to_string();
    assert!(e.contains("not a systolic array"), "{e}");
}

#[test]
fn sram_flips_after_their_groups_gemm_are_masked() {
    // small_model's c1 has 2 groups: group 0 reads input channel 0 (codes
    // 0..25) and filters 0..2 (weights 0..18), group 1 the rest.
    let (_, q) = small_model();
    let acc = accelerator(4, 4, Dataflow::Os, Datapath::INT8, 1);
    let net = HwNetwork::new(&acc, &q).unwrap();
    let gc = net.layers()[0].gemm.group_cycles;
    let codes = input_codes(&q, 7);
    let run = |buffer, address, cycle| {
        let faults = ImageFaults {
            permanent: vec![],
            transient: vec![LayerFault {
                layer: 0,
                fault: sram(buffer, address, 6, FaultKind::Flip { cycle }),
            }],
        };
        net.run_codes(&codes, &faults).unwrap().logits
    };
    let clean = net
        .run_codes(&codes, &ImageFaults::default())
        .unwrap()
        .logits;
    let with_input = |i: usize| {
        let mut c = codes.clone();
        c[i] = flip_bit(c[i], 6, 8);
        net.run_codes(&c, &ImageFaults::default()).unwrap().logits
    };
    // Group 0's code flipped during group 1: never read again.
    assert_eq!(run(SramBuffer::Ifmap, 3, gc + 1), clean);
    assert_eq!(run(SramBuffer::Filter, 3, gc + 1), clean);
    // Flipped during its own group, or before a later group reads it.
    assert_eq!(run(SramBuffer::Ifmap, 3, gc - 1), with_input(3));
    assert_eq!(run(SramBuffer::Ifmap, 30, 0), with_input(30));
    assert_eq!(run(SramBuffer::Ifmap, 30, gc + 1), with_input(30));
    let mut chip = q.clone();
    if let QOp::Mac(l) = &mut chip.nodes[1].op {
        l.weights[20] = flip_bit(l.weights[20], 6, 8);
    }
    let want = HwNetwork::new(&acc, &chip)
        .unwrap()
        .run_codes(&codes, &ImageFaults::default())
        .unwrap()
        .logits;
    assert_eq!(run(SramBuffer::Filter, 20, 2), want);
    assert_ne!(chip, q);
}

/// An executor built on the plain in-order GEMM: plugs into the network
/// and gives the same logits (fault-free), as any exact executor must.
struct InOrder;

impl ftnas::hwsim::GemmExecutor for InOrder {
    fn name(&self) -> &'static str {
        "in-order"
    }
    fn run(
        &self,
        array: &ftnas::hwsim::SystolicArray,
        gemm: &ftnas::hwsim::Gemm,
        dp: &Datapath,
        faults: &[HwFault],
    ) -> Result<ftnas::hwsim::HwRun, ftnas::hwsim::HwSimError> {
        assert!(faults.is_empty(), "fault-free executor");
        let mapping = array.mapping(gemm.e, gemm.k, gemm.m);
        Ok(ftnas::hwsim::HwRun {
            out: ftnas::hwsim::reference_gemm(gemm, dp),
            mapping,
            stats: ftnas::hwsim::RunStats {
                stepped_cycles: mapping.cycles,
                pe_cycle_updates: mapping.cycles * (array.rows * array.cols) as u64,
            },
        })
    }
}

#[test]
fn executors_plug_in_and_images_run_in_parallel() {
    let (_, q) = small_model();
    let acc = accelerator(3, 5, Dataflow::Is, Datapath::INT8, 1);
    let cycle_level = HwNetwork::new(&acc, &q).unwrap();
    let in_order = cycle_level
        .clone()
        .with_executor(std::sync::Arc::new(InOrder));
    assert_eq!(in_order.executor().name(), "in-order");
    let imgs = images(q.input_shape(), 5, 12);
    let want = ReferenceEngine.run(&q, &imgs, 0, None).unwrap();
    for net in [&cycle_level, &in_order] {
        assert_eq!(net.run_images(&imgs, 0, &ChipFaults::none()).unwrap(), want);
    }
    assert!(cycle_level
        .run_images(&imgs[1..], 0, &ChipFaults::none())
        .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A stuck filter-buffer cell equals, in every layer, the weight codes
    /// at `i % words == address` having that bit stuck: checked against the
    /// reference engine on the corrupted model, with buffers small enough
    /// that layers are tiled.
    #[test]
    fn stuck_filter_cells_equal_corrupted_weights(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        rows in 1usize..=4,
        cols in 1usize..=4,
        df in 0u8..3,
        word_bytes in prop::sample::select(vec![16usize, 64, 128]),
        address in 0usize..64,
        bit in 0u8..16,
        one in any::<bool>(),
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, saturate);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let mut acc = accelerator(rows, cols, dataflow(df), dp, 1);
        acc.buffers.word_bytes = word_bytes;
        let net = HwNetwork::new(&acc, &q).unwrap();
        let words = net.sram_words(SramBuffer::Filter);
        let (address, bit) = (address % words, bit % dp.weight_bits);
        let kind = if one { FaultKind::StuckAt1 } else { FaultKind::StuckAt0 };
        let faults = ImageFaults {
            permanent: vec![sram(SramBuffer::Filter, address, bit, kind)],
            transient: vec![],
        };
        let mut chip = q.clone();
        let width = u32::from(dp.weight_bits);
        for node in &mut chip.nodes {
            if let QOp::Mac(l) = &mut node.op {
                for (i, c) in l.weights.iter_mut().enumerate() {
                    if i % words == address {
                        let v = if one { *c | (1 << bit) } else { *c & !(1 << bit) };
                        *c = (v << (32 - width)) >> (32 - width);
                    }
                }
            }
        }
        let imgs = images(g.input_shape(), 2, seed ^ 3);
        let want = ReferenceEngine.run(&chip, &imgs, 0, None).unwrap();
        let n = q.input_shape().numel();
        for (i, img) in imgs.chunks(n).enumerate() {
            let mut codes = vec![0; n];
            q.quantize_input(img, &mut codes);
            prop_assert_eq!(&net.run_codes(&codes, &faults).unwrap().logits, &want[i]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whole networks under sampled chip faults (every PE and SRAM site,
    /// stuck-at and transient): the fast exact executor gives the
    /// cycle-level executor's logits.
    #[test]
    fn exact_executor_matches_cycle_level_under_chip_faults(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        rows in 1usize..=4,
        cols in 1usize..=4,
        df in 0u8..3,
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, saturate);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let acc = accelerator(rows, cols, dataflow(df), dp, 1);
        let cycle = HwNetwork::new(&acc, &q).unwrap();
        let exact = cycle.clone().with_executor(std::sync::Arc::new(ftnas::hwsim::layer::Exact));
        let mut text = String::new();
        for site in ftnas::hwsim::Site::ALL {
            text += &format!(
                "[sites.\"{}\"]\nstuck_at_0 = 2e-3\nstuck_at_1 = 2e-3\ntransient_per_bit_cycle = 2e-5\n",
                site.name()
            );
        }
        let spec = ftnas::hwsim::HwFaultSpec::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let imgs = images(g.input_shape(), 2, seed ^ 3);
        for chip in 0..2 {
            let faults = spec.sample_chip(seed, chip, &cycle).unwrap();
            prop_assert_eq!(
                exact.run_images(&imgs, 0, &faults).unwrap(),
                cycle.run_images(&imgs, 0, &faults).unwrap()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// The whole-network fast exact path (fault-free images batched through
    /// the fast engine, clean layers through the engine's layer code, PE
    /// faults corrected from the engine's accumulators, permanent filter
    /// cells baked per chip) against the cycle-level executor, image by
    /// image: batches mixing fault-free and faulty images, high rates of
    /// every site and kind, explicit layer-scoped stuck cells and flips.
    #[test]
    fn fast_network_path_matches_cycle_level(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        rows in 1usize..=4,
        cols in 1usize..=4,
        df in 0u8..3,
        rate_exp in 3i32..6,
    ) {
        use ftnas::hwsim::{HwFaultSpec, Site};
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, saturate);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let acc = accelerator(rows, cols, dataflow(df), dp, 1);
        let cycle = HwNetwork::new(&acc, &q).unwrap();
        let exact = cycle.clone().with_executor(std::sync::Arc::new(ftnas::hwsim::layer::Exact));
        let mut text = String::new();
        for (i, site) in Site::ALL.into_iter().enumerate() {
            // a different mix per site: some only stuck, some only flips
            let stuck = if (seed >> i) & 1 == 0 { 3e-3 } else { 0.0 };
            let flip = 10f64.powi(-rate_exp) * if (seed >> (i + 8)) & 1 == 0 { 1.0 } else { 0.0 };
            if stuck == 0.0 && flip == 0.0 {
                continue;
            }
            text += &format!(
                "[sites.\"{}\"]\nstuck_at_0 = {stuck:e}\nstuck_at_1 = {stuck:e}\ntransient_per_bit_cycle = {flip:e}\n",
                site.name()
            );
        }
        text += "[[fault]]\nsite = \"sram.filter\"\naddress = 1\nbit = 0\nlayer = 0\nstuck_at = 1\n";
        text += "[[fault]]\nsite = \"sram.filter\"\naddress = 0\nbit = 1\nlayer = 1\ncycle = 0\nimage = 1\n";
        let spec = HwFaultSpec::parse(&text, std::path::Path::new("t.toml"));
        prop_assume!(spec.is_ok());
        let spec = spec.unwrap();
        prop_assume!(spec.check(&cycle).is_ok());
        let imgs = images(g.input_shape(), 4, seed ^ 3);
        for chip in 0..2 {
            let faults = spec.sample_chip(seed, chip, &cycle).unwrap();
            // images 0 and 2 fault-free, 1 and 3 under the chip's faults
            let per: Vec<ImageFaults> = (0..4u64)
                .map(|i| if i % 2 == 0 { ImageFaults::default() } else { faults.for_image(i, &cycle) })
                .collect();
            prop_assert_eq!(
                exact.run_images_with(&imgs, &per).unwrap(),
                cycle.run_images_with(&imgs, &per).unwrap()
            );
            prop_assert_eq!(
                exact.run_images(&imgs, 0, &faults).unwrap(),
                cycle.run_images(&imgs, 0, &faults).unwrap()
            );
            let n = q.input_shape().numel();
            let mut codes = vec![0; n];
            q.quantize_input(&imgs[n..2 * n], &mut codes);
            prop_assert_eq!(
                exact.run_codes(&codes, &per[1]).unwrap(),
                cycle.run_codes(&codes, &per[1]).unwrap()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Chips with stuck-at PE register bits only (every PE site, random
    /// mixes and densities, several bits per chip) on datapaths of at most
    /// 8-bit operands, mostly wrapping: the whole-network fast path, whose
    /// stuck corrections run in the engine's layout with its GEMM kernels,
    /// gives the cycle-level executor's logits on all three dataflows.
    #[test]
    fn fast_network_path_stuck_pe_chips_match_cycle_level(
        seed in any::<u64>(),
        act in 0u8..7,
        weight in 0u8..7,
        psum in any::<u8>(),
        saturate in 0u8..4,
        rows in 1usize..=6,
        cols in 1usize..=6,
        df in 0u8..3,
        density in 1u32..=10,
    ) {
        use ftnas::hwsim::{HwFaultSpec, Site};
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let mut dp = datapath(act, weight, psum, saturate == 0);
        if psum % 2 == 0 {
            // the usual 32-bit accumulator half of the time
            dp.psum_bits = 32;
        }
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let acc = accelerator(rows, cols, dataflow(df), dp, 1);
        let cycle = HwNetwork::new(&acc, &q).unwrap();
        let exact = cycle.clone().with_executor(std::sync::Arc::new(ftnas::hwsim::layer::Exact));
        let mut text = String::new();
        for (i, site) in Site::ALL.into_iter().filter(|s| matches!(s, Site::Pe(_))).enumerate() {
            // some sites clean, the others at a random density
            if (seed >> (i + 16)) & 3 == 0 {
                continue;
            }
            let rate = 1e-3 * f64::from(density);
            text += &format!(
                "[sites.\"{}\"]\nstuck_at_0 = {rate:e}\nstuck_at_1 = {rate:e}\n",
                site.name()
            );
        }
        prop_assume!(!text.is_empty());
        let spec = HwFaultSpec::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let imgs = images(g.input_shape(), 3, seed ^ 3);
        for chip in 0..3 {
            let faults = spec.sample_chip(seed, chip, &cycle).unwrap();
            prop_assert_eq!(
                exact.run_images(&imgs, 0, &faults).unwrap(),
                cycle.run_images(&imgs, 0, &faults).unwrap()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A PE column or row with a stuck `psum_reg` bit whose streamed operand
    /// is also forced upstream (a stuck bit in the register of a PE to its
    /// left in the same row: OS and WS activations, IS weights), plus a
    /// stuck multiplier bit: the rebuilt outputs must apply the operand's
    /// forcing too. The random-density chips above rarely draw this alone
    /// (on OS a chip with forced activations *and* weights falls back to
    /// another path), so it is placed here by hand.
    #[test]
    fn stuck_psum_pes_with_forced_operands_match_cycle_level(
        seed in any::<u64>(),
        act in 0u8..7,
        weight in 0u8..7,
        psum in any::<u8>(),
        rows in 2usize..=6,
        cols in 2usize..=6,
        df in 0u8..3,
        bits in any::<(u8, u8, u8)>(),
        ones in any::<(bool, bool, bool)>(),
        at in any::<(u8, u8, u8)>(),
    ) {
        use ftnas::hwsim::HwFaultSpec;
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let mut dp = datapath(act, weight, psum, false);
        if psum % 2 == 0 {
            dp.psum_bits = 32;
        }
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let flow = dataflow(df);
        let acc = accelerator(rows, cols, flow, dp, 1);
        let cycle = HwNetwork::new(&acc, &q).unwrap();
        let exact = cycle.clone().with_executor(std::sync::Arc::new(ftnas::hwsim::layer::Exact));
        let (operand, width) = match flow {
            Dataflow::Is => ("pe.weight_reg", dp.weight_bits),
            _ => ("pe.act_reg", dp.act_bits),
        };
        let row = at.0 as usize % rows;
        let (c0, c1) = (at.1 as usize % cols, at.2 as usize % cols);
        let (left, right) = (c0.min(c1), c0.max(c1));
        let fault = |site: &str, col: usize, bit: u32, one: bool| {
            format!(
                "[[fault]]\nsite = \"{site}\"\nrow = {row}\ncol = {col}\nbit = {bit}\nstuck_at = {}\n",
                one as u8
            )
        };
        let mut text = fault(operand, left, u32::from(bits.0) % u32::from(width), ones.0);
        text += &fault("pe.psum_reg", right, u32::from(bits.1) % u32::from(dp.psum_bits), ones.1);
        if bits.2 % 2 == 0 {
            let product = u32::from(dp.act_bits + dp.weight_bits);
            text += &fault("pe.mult_out", right, u32::from(bits.2) % product, ones.2);
        }
        let spec = HwFaultSpec::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let imgs = images(g.input_shape(), 3, seed ^ 3);
        let faults = spec.sample_chip(seed, 0, &cycle).unwrap();
        prop_assert_eq!(
            exact.run_images(&imgs, 0, &faults).unwrap(),
            cycle.run_images(&imgs, 0, &faults).unwrap()
        );
    }
}
