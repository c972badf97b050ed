//! Whole networks on bit-serial designs (Stripes, Loom) through the
//! bit-serial functional model: fault-free logits bit-identical to the
//! reference engine (wrapping accumulators) for random small models and
//! random organisations, cycles per layer equal to the timing model's
//! (per-layer precision; at most it with per-group precision), the exact
//! executor equal to the cycle-level one under sampled SIP and SRAM faults
//! (wrap and saturate), and fault specs checked against the hardware.

mod engine_common;

use std::path::Path;

use engine_common::{datapath, images, random_graph};
use ftnas::accel::description::{
    Accelerator, BandwidthMode, BitSerial, Buffers, Dram, Kind, Precision, Serial,
};
use ftnas::accel::time_graph;
use ftnas::engine::{Engine, ReferenceEngine};
use ftnas::fixed::Datapath;
use ftnas::hwsim::{BitSerialNetwork, BsExecutor, HwFaultSpec, HwNetwork, ImageFaults, Site};
use ftnas::model::{load_model, Shape, Weights};
use ftnas::quant;
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn design(
    tiles: usize,
    windows: usize,
    filters: usize,
    lanes: usize,
    both: bool,
    bits: u8,
    per_group: bool,
) -> BitSerial {
    BitSerial {
        tiles,
        windows,
        filters,
        lanes,
        serial: if both {
            Serial::Both
        } else {
            Serial::Activations
        },
        bits_per_cycle: bits,
        precision: if per_group {
            Precision::PerGroup
        } else {
            Precision::PerLayer
        },
        group_size: per_group.then_some(lanes),
    }
}

fn accelerator(b: BitSerial, dp: Datapath) -> Accelerator {
    Accelerator {
        name: "test-bitserial".into(),
        clock_mhz: 500.0,
        kind: Kind::BitSerial,
        systolic: None,
        bitserial: Some(b),
        datapath: dp,
        buffers: Buffers {
            ifmap_kib: 1,
            filter_kib: 1,
            ofmap_kib: 1,
            word_bytes: 1,
            banks: 1,
            double_buffered: true,
        },
        dram: Dram {
            bandwidth: BandwidthMode::Calc,
            words_per_cycle: None,
        },
    }
}

fn design_strategy() -> impl Strategy<Value = BitSerial> {
    (
        1usize..=2,
        1usize..=4,
        1usize..=3,
        1usize..=5,
        any::<bool>(),
        1u8..=3,
        any::<bool>(),
    )
        .prop_map(|(t, w, f, l, both, bits, pg)| design(t, w, f, l, both, bits, pg))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Fault-free, wrapping accumulator: logits equal the reference engine's
    /// on both executors; cycles and steps per layer equal the timing model's.
    #[test]
    fn fault_free_networks_match_the_engine_and_the_timing(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        b in design_strategy(),
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, false);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 3, seed ^ 2)).unwrap();
        let acc = accelerator(b.clone(), dp);
        let net = BitSerialNetwork::new(&acc, &q).unwrap();
        let exact = net.clone().with_executor(BsExecutor::Exact);
        let timing = time_graph(&acc, &g, None).unwrap();
        let imgs = images(g.input_shape(), 2, seed ^ 3);
        let want = ReferenceEngine.run(&q, &imgs, 0, None).unwrap();
        let n = q.input_shape().numel();
        for (i, img) in imgs.chunks(n).enumerate() {
            let mut codes = vec![0; n];
            q.quantize_input(img, &mut codes);
            let run = net.run_codes(&codes, &ImageFaults::default()).unwrap();
            prop_assert_eq!(&run.logits, &want[i]);
            let fast = exact.run_codes(&codes, &ImageFaults::default()).unwrap();
            prop_assert_eq!(&fast.logits, &want[i]);
            prop_assert_eq!(run.layers.len(), net.layers().len());
            for (bl, st) in net.layers().iter().zip(&run.layers) {
                let t = timing.layers.iter().find(|t| t.name == bl.name).expect("timed layer");
                prop_assert_eq!(bl.cycles, t.compute_cycles, "layer {}", &bl.name);
                prop_assert_eq!(st.steps, bl.steps);
                prop_assert_eq!(st.stepped_groups, bl.groups);
                if b.precision == Precision::PerLayer {
                    prop_assert_eq!(st.cycles, t.compute_cycles, "layer {}", &bl.name);
                } else {
                    prop_assert!(st.cycles <= t.compute_cycles, "layer {}", &bl.name);
                }
            }
            for (f, s) in fast.layers.iter().zip(&run.layers) {
                prop_assert_eq!((f.steps, f.cycles), (s.steps, s.cycles));
                prop_assert_eq!(f.stepped_groups, 0);
            }
        }
        prop_assert_eq!(exact.run_images(&imgs, 0, &Default::default()).unwrap(), want);
    }

    /// Under sampled SIP and SRAM faults (stuck-at and transient, every
    /// site), the exact executor (faulty groups stepped, others through the
    /// engine's GEMM) gives the cycle-level executor's logits, wrap and
    /// saturate.
    #[test]
    fn exact_executor_matches_cycle_level_under_chip_faults(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        b in design_strategy(),
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, saturate);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let acc = accelerator(b, dp);
        let cycle = BitSerialNetwork::new(&acc, &q).unwrap();
        let exact = cycle.clone().with_executor(BsExecutor::Exact);
        let mut text = String::new();
        for (i, site) in Site::BITSERIAL.into_iter().enumerate() {
            let stuck = if (seed >> i) & 1 == 0 { 1e-2 } else { 0.0 };
            text += &format!(
                "[sites.\"{}\"]\nstuck_at_0 = {stuck:e}\nstuck_at_1 = {stuck:e}\ntransient_per_bit_cycle = 1e-4\n",
                site.name()
            );
        }
        let spec = HwFaultSpec::parse(&text, Path::new("t.toml")).unwrap();
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
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Chips with only stuck activation/weight SIP register bits (and stuck
    /// SRAM cells): the exact executor computes those groups with the
    /// engine's GEMM on corrupted operand copies (per-layer precision, wrap)
    /// and still gives the cycle-level logits; with run-time precision
    /// (per group) it steps them.
    #[test]
    fn stuck_operand_registers_on_the_exact_path_match_cycle_level(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        b in design_strategy(),
        density in prop_oneof![Just(3e-3), Just(3e-2)],
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let dp = datapath(act, weight, psum, false);
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        let per_layer = b.precision == Precision::PerLayer;
        let acc = accelerator(b, dp);
        let cycle = BitSerialNetwork::new(&acc, &q).unwrap();
        let exact = cycle.clone().with_executor(BsExecutor::Exact);
        let mut text = String::new();
        for site in ["sip.act_reg", "sip.weight_reg", "sram.filter", "sram.ifmap"] {
            text += &format!(
                "[sites.\"{site}\"]\nstuck_at_0 = {density:e}\nstuck_at_1 = {density:e}\n"
            );
        }
        let spec = HwFaultSpec::parse(&text, Path::new("t.toml")).unwrap();
        let imgs = images(g.input_shape(), 2, seed ^ 3);
        let n = q.input_shape().numel();
        for chip in 0..3 {
            let faults = spec.sample_chip(seed, chip, &cycle).unwrap();
            let image = faults.for_image(0, &cycle);
            let mut codes = vec![0; n];
            q.quantize_input(&imgs[..n], &mut codes);
            let fast = exact.run_codes(&codes, &image).unwrap();
            let slow = cycle.run_codes(&codes, &image).unwrap();
            prop_assert_eq!(&fast.logits, &slow.logits);
            let stuck: usize = fast.layers.iter().map(|l| l.stuck_groups).sum();
            let stepped: usize = fast.layers.iter().map(|l| l.stepped_groups).sum();
            if per_layer {
                prop_assert_eq!(stepped, 0, "stuck operand bits need no stepping");
            } else {
                prop_assert_eq!(stuck, 0);
            }
            prop_assert_eq!(
                exact.run_images(&imgs, 0, &faults).unwrap(),
                cycle.run_images(&imgs, 0, &faults).unwrap()
            );
        }
    }
}

/// A spec is checked against the hardware: PE sites on a bit-serial design
/// and SIP sites on a systolic array are errors naming the key and the
/// sites the accelerator has; SIP coordinates and bits are checked against
/// the design's grid.
#[test]
fn specs_name_the_sites_the_hardware_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g = load_model(&root.join("models/resnet20.toml"), Shape::new(1, 28, 28)).unwrap();
    let w = Weights::random(&g, 1);
    let stripes = Accelerator::load(&root.join("accelerators/stripes.toml")).unwrap();
    let q = quant::quantize(&g, &w, stripes.datapath, &images(g.input_shape(), 1, 2)).unwrap();
    let bs = BitSerialNetwork::new(&stripes, &q).unwrap();
    let pe = HwFaultSpec::parse(
        "[sites.\"pe.act_reg\"]\nstuck_at_0 = 1e-3\n",
        Path::new("pe.toml"),
    )
    .unwrap();
    let e = pe.sample_chip(0, 0, &bs).unwrap_err().to_string();
    assert!(
        e.contains("pe.toml") && e.contains("sites.\"pe.act_reg\""),
        "{e}"
    );
    assert!(e.contains("sip.act_reg"), "{e}");
    assert_eq!(
        e.matches("sram.filter").count(),
        1,
        "each site named once: {e}"
    );
    let sip = "[[fault]]\nsite = \"sip.psum_reg\"\nrow = 16\ncol = 0\nbit = 3\nstuck_at = 1\n";
    let e = HwFaultSpec::parse(sip, Path::new("sip.toml"))
        .unwrap()
        .check(&bs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fault[0]") && e.contains("16x256"), "{e}");
    let edge = Accelerator::load(&root.join("accelerators/edge_16x16_os.toml")).unwrap();
    let q8 = quant::quantize(&g, &w, edge.datapath, &images(g.input_shape(), 1, 2)).unwrap();
    let sys = HwNetwork::new(&edge, &q8).unwrap();
    let s = HwFaultSpec::parse(
        "[sites.\"sip.act_reg\"]\nstuck_at_1 = 1e-3\n",
        Path::new("s.toml"),
    )
    .unwrap();
    let e = s.check(&sys).unwrap_err().to_string();
    assert!(
        e.contains("pe.act_reg") && e.contains("sites.\"sip.act_reg\""),
        "{e}"
    );
    // A valid SIP fault on Stripes: stuck accumulator bit of SIP (0, 0).
    let ok = "[[fault]]\nsite = \"sip.psum_reg\"\nrow = 0\ncol = 0\nbit = 20\nstuck_at = 1\n";
    let chip = HwFaultSpec::parse(ok, Path::new("ok.toml"))
        .unwrap()
        .sample_chip(0, 0, &bs)
        .unwrap();
    assert_eq!(chip.permanent.len(), 1);
    assert_eq!(chip.permanent[0].site_name(), "sip.psum_reg");
}

/// The shipped Stripes and Loom descriptions run a whole small network
/// (a 2-conv CNN on 1x8x8 inputs) fault-free bit-identically to the engine,
/// and a stuck accumulator bit of a SIP changes some logits.
#[test]
fn shipped_designs_run_whole_networks() {
    use ftnas::model::{GraphBuilder, Op};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut b = GraphBuilder::new("tiny", Shape::new(1, 8, 8));
    let conv = |out| Op::Conv2d {
        out_channels: out,
        kernel: (3, 3),
        stride: (1, 1),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 1,
        bias: true,
    };
    b.add("c1", conv(4), &[0]).unwrap();
    b.add("r1", Op::Relu, &[1]).unwrap();
    b.add("c2", conv(6), &[2]).unwrap();
    let f = b.add("flat", Op::Flatten, &[3]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[f],
    )
    .unwrap();
    let g = b.finish();
    let w = Weights::random(&g, 9);
    for name in ["stripes", "loom"] {
        let acc = Accelerator::load(&root.join(format!("accelerators/{name}.toml"))).unwrap();
        let imgs = images(g.input_shape(), 2, 4);
        let q = quant::quantize(&g, &w, acc.datapath, &imgs).unwrap();
        let net = BitSerialNetwork::new(&acc, &q).unwrap();
        let want = ReferenceEngine.run(&q, &imgs, 0, None).unwrap();
        assert_eq!(
            net.run_images(&imgs, 0, &Default::default()).unwrap(),
            want,
            "{name}"
        );
        let spec = HwFaultSpec::parse(
            "[[fault]]\nsite = \"sip.psum_reg\"\nrow = 0\ncol = 0\nbit = 30\nstuck_at = 1\n",
            Path::new("f.toml"),
        )
        .unwrap();
        let chip = spec.sample_chip(0, 0, &net).unwrap();
        let got = net.run_images(&imgs, 0, &chip).unwrap();
        assert_ne!(got, want, "{name}: a stuck accumulator MSB must show");
        let exact = net.clone().with_executor(BsExecutor::Exact);
        assert_eq!(exact.run_images(&imgs, 0, &chip).unwrap(), got, "{name}");
        // The shipped SIP example spec samples and runs on both executors.
        let shipped =
            HwFaultSpec::load(&root.join("accelerators/faults/sip_registers.toml")).unwrap();
        for c in 0..3 {
            let chip = shipped.sample_chip(5, c, &net).unwrap();
            assert_eq!(
                exact.run_images(&imgs, 0, &chip).unwrap(),
                net.run_images(&imgs, 0, &chip).unwrap(),
                "{name} chip {c}"
            );
        }
    }
}
