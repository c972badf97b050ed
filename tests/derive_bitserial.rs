//! Derived per-layer statistics of a bit-serial design against
//! layer-isolated injection into its SIP registers, on a quantized model and
//! real Fashion-MNIST inputs: hit rates at every site together, and with
//! psum flips alone the post-ReLU error per hit, which only comes out right
//! when the flips go the way the held partial sums point.

mod common;

use ftnas::accel::description::{
    Accelerator, BandwidthMode, BitSerial, Buffers, Dram, Kind, Precision, Serial,
};
use ftnas::derive::bitserial::{
    bitserial_psum_signs, derive_bitserial_layer, step_profile, StepProfile,
};
use ftnas::derive::hardware::Hardware;
use ftnas::derive::layer::{GemmLayer, Magnitudes, SiteRates};
use ftnas::derive::measure::measure_layer;
use ftnas::derive::network::add_im2col_magnitudes;
use ftnas::derive::psum_sign::sum_signs;
use ftnas::fault::output_hit::{HitSign, OutputHit};
use ftnas::fixed::{Datapath, Overflow};
use ftnas::hwsim::bsnet::BitSerialNetwork;
use ftnas::hwsim::layer::{filter_operand, ifmap_operand};
use ftnas::quant::{Activation, QModel, QOp};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fn design(serial: Serial, bits: u8, precision: Precision) -> BitSerial {
    BitSerial {
        tiles: 2,
        windows: 4,
        filters: 4,
        lanes: 4,
        serial,
        bits_per_cycle: bits,
        precision,
        group_size: (precision == Precision::PerGroup).then_some(4),
    }
}

fn network(q: &QModel, b: BitSerial) -> BitSerialNetwork {
    let acc = Accelerator {
        name: "test-bitserial".into(),
        clock_mhz: 500.0,
        kind: Kind::BitSerial,
        systolic: None,
        bitserial: Some(b),
        datapath: q.datapath,
        buffers: Buffers {
            ifmap_kib: 64,
            filter_kib: 64,
            ofmap_kib: 64,
            word_bytes: 1,
            banks: 1,
            double_buffered: true,
        },
        dram: Dram {
            bandwidth: BandwidthMode::Calc,
            words_per_cycle: None,
        },
    };
    BitSerialNetwork::new(&acc, q).unwrap()
}

struct Setup {
    q: QModel,
    /// Per image, every node's output codes.
    outs: Vec<Vec<Vec<i32>>>,
}

fn setup(overflow: Overflow, images: usize) -> Setup {
    let (q, outs) = common::random_vgg_on_fashion("[[4], [8]]", 5, overflow, images);
    Setup { q, outs }
}

/// The GEMM view of `layer` with the input statistics of `inputs`, the
/// psum directions on `b` and (run-time precision detection) the steps'
/// widths.
fn gemm_layer(
    layer: &ftnas::quant::MacLayer,
    inputs: &[Vec<i32>],
    b: &BitSerial,
    dp: &Datapath,
) -> GemmLayer {
    let (mut mags, mut negative) = (Magnitudes::default(), Magnitudes::default());
    for x in inputs {
        add_im2col_magnitudes(layer, x, &mut mags, &mut negative);
    }
    let signs: Vec<_> = inputs
        .iter()
        .map(|x| bitserial_psum_signs(b, dp, layer, x))
        .collect();
    let mut gl = GemmLayer::of(layer, mags, negative);
    gl.psum_signs = sum_signs(&signs);
    if b.precision == Precision::PerGroup {
        let mut profile = StepProfile::default();
        let (mut a, mut w) = (Vec::new(), Vec::new());
        let dims = (gl.e, gl.k, gl.m);
        for x in inputs {
            for gi in 0..layer.groups {
                ifmap_operand(layer, x, gi, &mut a);
                filter_operand(layer, &layer.weights, gi, &mut w);
                step_profile(b, dp, gl.taps, &a, &w, dims, &mut profile);
            }
        }
        gl.step_profile = Some(profile);
    }
    gl
}

#[test]
fn derived_hit_rates_match_sip_injection() {
    let s = setup(Overflow::Wrap, 3);
    let dp = s.q.datapath;
    let mut checked = 0;
    for (serial, bits, precision) in [
        (Serial::Activations, 1, Precision::PerLayer),
        (Serial::Both, 2, Precision::PerLayer),
        (Serial::Both, 2, Precision::PerGroup),
    ] {
        let b = design(serial, bits, precision);
        let net = network(&s.q, b.clone());
        let hw = Hardware::BitSerial(&net);
        let mut li = 0;
        for node in &s.q.nodes {
            let QOp::Mac(layer) = &node.op else { continue };
            let inputs: Vec<Vec<i32>> = s.outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
            let gl = gemm_layer(layer, &inputs, &b, &dp);
            // About four flips per layer run over the three sites.
            let unit = SiteRates {
                act_reg: 1.0,
                weight_reg: 1.0,
                psum_reg: 1.0,
                mult_out: 0.0,
            };
            let lambda = 4.0 / (hw.flips_per_cycle(&unit) * hw.layer_cycles(li, layer) as f64);
            let rates = unit.scaled(lambda);
            let d = derive_bitserial_layer(&b, &dp, &gl, &rates);
            let m = measure_layer(&hw, li, layer, &inputs, &rates, 60, 11).unwrap();
            let tol = 4.0 * m.p_out_se + 0.15 * d.p_out;
            eprintln!(
                "{serial:?} {precision:?} {}: p_out measured {:.4e} (se {:.1e}) derived {:.4e}; flips {}",
                layer.name, m.p_out, m.p_out_se, d.p_out, m.flips
            );
            assert!(m.flips > 0);
            assert!(
                (m.p_out - d.p_out).abs() <= tol,
                "{serial:?} {precision:?} {}: measured {:.4e} derived {:.4e} tol {tol:.2e}",
                layer.name,
                m.p_out,
                d.p_out
            );
            li += 1;
            checked += 1;
        }
    }
    assert!(checked >= 9);
}

#[test]
fn psum_flip_directions_match_sip_injection() {
    let s = setup(Overflow::Saturate, 4);
    let dp = s.q.datapath;
    let b = design(Serial::Activations, 1, Precision::PerLayer);
    let net = network(&s.q, b.clone());
    let hw = Hardware::BitSerial(&net);
    let mut checked = 0;
    let mut li = 0;
    for node in &s.q.nodes {
        let QOp::Mac(layer) = &node.op else { continue };
        let this = li;
        li += 1;
        if layer.activation != Activation::Relu {
            continue;
        }
        let inputs: Vec<Vec<i32>> = s.outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
        let gl = gemm_layer(layer, &inputs, &b, &dp);
        let unit = SiteRates {
            psum_reg: 1.0,
            ..SiteRates::default()
        };
        let lambda = 4.0 / (hw.flips_per_cycle(&unit) * hw.layer_cycles(this, layer) as f64);
        let rates = unit.scaled(lambda);
        let d = derive_bitserial_layer(&b, &dp, &gl, &rates);
        let measured = measure_layer(&hw, this, layer, &inputs, &rates, 200, 5).unwrap();
        let model = |up: Vec<Vec<f64>>| OutputHit {
            p_out: 1.0,
            bit_weights: d.bit_weights.clone(),
            sign: HitSign::Random,
            multiplicity: vec![1.0],
            up,
            stream: None,
        };
        let act_error = |h: &OutputHit| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
            let (mut hits, mut err) = (0u64, 0i64);
            for x in &inputs {
                let clean = hw.layer_outputs(this, layer, x, &hw.no_flips()).unwrap();
                for _ in 0..20 {
                    let mut hit = clean.clone();
                    h.apply(layer.out_format.bits, &mut hit, &mut rng);
                    for (a, c) in hit.iter().zip(&clean) {
                        if a != c {
                            hits += 1;
                            err += i64::from((a.max(&0) - c.max(&0)).abs());
                        }
                    }
                }
            }
            err as f64 / hits as f64
        };
        let with_signs = act_error(&model(d.up.clone()));
        let random = act_error(&model(Vec::new()));
        eprintln!(
            "{}: post-ReLU error per hit: measured {:.2} ({} hits), derived {:.2}, random sign {:.2}",
            layer.name, measured.mean_act_error, measured.hits, with_signs, random
        );
        assert!(
            (with_signs - measured.mean_act_error).abs() <= 0.15 * measured.mean_act_error,
            "{}: derived {with_signs:.2} vs measured {:.2}",
            layer.name,
            measured.mean_act_error
        );
        assert!(
            (random - measured.mean_act_error).abs() > (with_signs - measured.mean_act_error).abs(),
            "{}: random sign {random:.2} is no worse than the derived {with_signs:.2} (measured {:.2})",
            layer.name,
            measured.mean_act_error
        );
        checked += 1;
    }
    assert!(checked >= 2);
}
