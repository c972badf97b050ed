//! Stuck SIP activation and partial-sum register bits of a bit-serial
//! design (Stripes and Loom, per-layer and run-time precision): the
//! derived `[stuck_macs]` model (`dataflow = "bit-serial"`) against the
//! bit-serial functional model with the same stuck bits. The model is the
//! SIPs' own rule, so the engines give the hardware's logits bit for bit —
//! on random networks (all op kinds, groups, depthwise), random
//! organisations (tiles, windows, filters, lanes, bits per cycle, serial
//! kind, precision mode) and datapaths.

mod campaign_common;
mod common;
mod engine_common;
mod stuck_common;

use common::bitserial_accelerator;
use engine_common::{datapath, images, random_graph};
use ftnas::accel::description::{BitSerial, Precision, Serial};
use ftnas::derive::layer::GemmLayer;
use ftnas::derive::network::{derive_bitserial_from_spec, gemm_layers, NetworkDerivation};
use ftnas::derive::stuck_macs::stuck_macs_of_bitserial;
use ftnas::engine::{Engine, FastEngine, ReferenceEngine};
use ftnas::fault::stuck_macs::StuckMacBit;
use ftnas::fault::{MacGrid, MacRegister, StuckMacs};
use ftnas::hwsim::bitserial::{SipFault, SipSite};
use ftnas::hwsim::{BitSerialNetwork, BsExecutor, ChipFault, HwFaultSpec};
use ftnas::model::Weights;
use ftnas::quant::{self, QModel};
use proptest::prelude::*;

fn stripes(tiles: usize, windows: usize, filters: usize, lanes: usize, bits: u8) -> BitSerial {
    BitSerial {
        tiles,
        windows,
        filters,
        lanes,
        serial: Serial::Activations,
        bits_per_cycle: bits,
        precision: Precision::PerLayer,
        group_size: None,
    }
}

/// `design` with serial weights (Loom) and/or run-time precision.
fn variant(mut design: BitSerial, loom: bool, run_time: bool) -> BitSerial {
    if loom {
        design.serial = Serial::Both;
    }
    if run_time {
        design.precision = Precision::PerGroup;
        design.group_size = Some(design.lanes);
    }
    design
}

/// `ftnas derive`'s derivation of `spec` for `q` on `design` (buffers of
/// 64 KiB).
fn derive_on(
    design: &BitSerial,
    q: &QModel,
    layers: &[GemmLayer],
    spec: &HwFaultSpec,
) -> (NetworkDerivation, Vec<String>) {
    let acc = bitserial_accelerator(design.clone(), q.datapath, 64);
    let net = BitSerialNetwork::new(&acc, q).unwrap();
    derive_bitserial_from_spec(
        design,
        &net.buffer_geometry(),
        acc.clock_mhz,
        q,
        layers,
        spec,
    )
}

/// The hardware faults that are the model's stuck bits.
fn as_hardware(bits: &[StuckMacBit]) -> Vec<ChipFault> {
    bits.iter()
        .map(|b| {
            let site = match b.register {
                MacRegister::Act => SipSite::ActReg,
                MacRegister::Accumulator => SipSite::PsumReg,
                r => panic!("no {r:?} register on a SIP grid"),
            };
            ChipFault::Sip(SipFault::stuck(site, b.row, b.col, b.bit as u8, b.one))
        })
        .collect()
}

/// A spec with stuck bits at the SIP sites of `mask` (bit 0 act, 1 psum),
/// each bit stuck at 0 and at 1 with `density`.
fn sip_spec(mask: u8, density: f64) -> HwFaultSpec {
    let mut text = String::new();
    for (i, site) in ["sip.act_reg", "sip.psum_reg"].iter().enumerate() {
        if mask >> i & 1 == 1 {
            text += &format!(
                "[sites.\"{site}\"]\nstuck_at_0 = {density:e}\nstuck_at_1 = {density:e}\n"
            );
        }
    }
    HwFaultSpec::parse(&text, std::path::Path::new("sip.toml")).unwrap()
}

/// Run `chips` chips of model `m` (written to a file and read back)
/// against the hardware with the same stuck bits; returns (chips with
/// stuck bits, logits changed against clean).
fn compare(
    q: &QModel,
    net: &BitSerialNetwork,
    m: &StuckMacs,
    imgs: &[f32],
    seed: u64,
    chips: u64,
    engine: &dyn Engine,
) -> (usize, usize) {
    let c = stuck_common::compare_chips(
        q,
        m,
        imgs,
        seed,
        chips,
        engine,
        |_| false,
        as_hardware,
        |faults| net.run_images(imgs, 0, faults).unwrap(),
    );
    (c.faulty, c.changed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Random networks, Stripes and Loom organisations at per-layer and
    /// run-time precision, bits per cycle and datapaths (wrapping
    /// accumulators of any width; saturating 32-bit ones with operands of
    /// at most 8 bits, whose sums never saturate); random mixes of the two
    /// SIP sites at random densities: the derived model is the hardware's
    /// rule, in both engines.
    #[test]
    fn derived_stuck_sips_are_the_hardware_rule(
        seed in any::<u64>(),
        act in any::<u8>(),
        weight in any::<u8>(),
        psum in any::<u8>(),
        saturate in any::<bool>(),
        (tiles, windows, filters, lanes) in (1usize..=2, 1usize..=4, 1usize..=3, 1usize..=5),
        bits in 1u8..=3,
        sites in 1u8..4,
        density in 1u32..=10,
        reference in any::<bool>(),
        loom in any::<bool>(),
        run_time in any::<bool>(),
    ) {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed ^ 1);
        let mut dp = datapath(act, weight, psum, saturate);
        if saturate {
            // operands of at most 8 bits into 32: no sum the bit-serial
            // datapath forms saturates (where one does, the fault-free
            // bit-plane order already differs from the engine's; see
            // `hwsim::bitserial`)
            dp.act_bits = dp.act_bits.min(8);
            dp.weight_bits = dp.weight_bits.min(8);
            dp.psum_bits = 32;
        }
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 2, seed ^ 2)).unwrap();
        if !loom {
            // Stripes processes at most 16 activation bits
            dp.act_bits = dp.act_bits.min(16);
        }
        let design = variant(stripes(tiles, windows, filters, lanes, bits), loom, run_time);
        let acc = bitserial_accelerator(design.clone(), dp, 1);
        let net = BitSerialNetwork::new(&acc, &q).unwrap().with_executor(BsExecutor::Exact);
        let imgs = images(g.input_shape(), 3, seed ^ 3);
        let spec = sip_spec(sites, 3e-3 * f64::from(density));
        let m = stuck_macs_of_bitserial(&spec, &design).expect("SIP bits are derived");
        prop_assert_eq!((m.rows, m.cols), (windows, lanes));
        prop_assert_eq!(
            m.grid,
            MacGrid::BitSerial {
                filter_rows: tiles * filters,
                bits_per_cycle: bits,
                serial_weights: loom,
                run_time_precision: run_time,
            }
        );
        let engine: &dyn Engine = if reference { &ReferenceEngine } else { &FastEngine };
        let (faulty, _) = compare(&q, &net, &m, &imgs, seed, 3, engine);
        prop_assume!(faulty > 0);
    }
}

/// The tiny VGG on Fashion-MNIST on small Stripes and Loom designs (the
/// latter with run-time precision, as the shipped `loom.toml`), both SIP
/// sites stuck, through `ftnas derive`'s code path: nothing left out, the
/// hardware's logits, and the stuck bits matter.
#[test]
fn stuck_sip_bits_on_a_real_network() {
    let q = campaign_common::tiny_model();
    let (px, _) = campaign_common::first_images(6);
    let layers = gemm_layers(&q, px);
    for design in [
        stripes(2, 4, 4, 8, 1),
        variant(stripes(1, 4, 4, 8, 2), true, true),
    ] {
        let acc = bitserial_accelerator(design.clone(), q.datapath, 64);
        let net = BitSerialNetwork::new(&acc, &q)
            .unwrap()
            .with_executor(BsExecutor::Exact);
        let (d, left_out) = derive_on(&design, &q, &layers, &sip_spec(0b11, 2e-3));
        assert!(left_out.is_empty(), "{left_out:?}");
        let m = d.stuck_macs.expect("derived");
        let (faulty, changed) = compare(&q, &net, &m, px, 11, 10, &FastEngine);
        eprintln!("{design:?}: {faulty} chips with stuck bits, {changed} logits changed");
        assert!(faulty >= 8, "{faulty} of 10 chips drew stuck bits");
        assert!(changed > 0, "the stuck bits change some logits");
    }
}

/// With run-time precision a stuck activation bit above a step's detected
/// precision is never shifted out: on the real network, the per-layer
/// rule applied to a run-time-precision design's stuck bits gives other
/// logits than the hardware on some chips, the run-time rule the
/// hardware's on all.
#[test]
fn run_time_precision_masks_high_stuck_bits() {
    use ftnas::engine::FeatureFaults;
    use ftnas::fault::{FaultModel, FaultSpec};
    use ftnas::hwsim::ChipFaults;
    let q = campaign_common::tiny_model();
    let (px, _) = campaign_common::first_images(3);
    let design = variant(stripes(1, 4, 4, 8, 1), false, true);
    let acc = bitserial_accelerator(design.clone(), q.datapath, 64);
    let net = BitSerialNetwork::new(&acc, &q)
        .unwrap()
        .with_executor(BsExecutor::Exact);
    let m = stuck_macs_of_bitserial(&sip_spec(0b01, 2e-2), &design).unwrap();
    let per_layer = StuckMacs {
        grid: MacGrid::BitSerial {
            filter_rows: 4,
            bits_per_cycle: 1,
            serial_weights: false,
            run_time_precision: false,
        },
        ..m
    };
    let model = |m: StuckMacs| {
        FaultModel::from_spec(FaultSpec {
            stuck_macs: Some(m),
            ..Default::default()
        })
        .unwrap()
    };
    let (run_time, per_layer) = (model(m), model(per_layer));
    let mut differs = 0;
    for chip in 0..6 {
        let bits = m.bits(ftnas::fault::draw_key(5, chip), &q.datapath);
        let faults = ChipFaults {
            seed: 5,
            chip,
            permanent: as_hardware(&bits),
            ..ChipFaults::none()
        };
        let hw = net.run_images(px, 0, &faults).unwrap();
        let run = |fm: &FaultModel| {
            let f = FeatureFaults {
                injector: fm.feature().unwrap(),
                seed: 5,
                trial: chip,
            };
            FastEngine.run(&q, px, 0, Some(f)).unwrap()
        };
        assert_eq!(run(&run_time), hw, "chip {chip}: {bits:?}");
        differs += usize::from(run(&per_layer) != hw);
    }
    assert!(
        differs > 0,
        "the per-layer rule matched the hardware on every chip"
    );
}
