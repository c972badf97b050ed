//! Derived per-layer statistics against layer-isolated hardware injection on
//! a quantized model and real Fashion-MNIST inputs, on every dataflow.

mod common;

use ftnas::accel::Dataflow;
use ftnas::derive::hardware::Hardware;
use ftnas::derive::layer::{derive_layer, GemmLayer, Magnitudes, SiteRates};
use ftnas::derive::measure::measure_layer;
use ftnas::derive::network::add_im2col_magnitudes;
use ftnas::derive::psum_sign::{layer_psum_signs, sum_signs, PsumSigns};
use ftnas::fault::output_hit::{HitSign, OutputHit};
use ftnas::fixed::Overflow;
use ftnas::hwsim::layer::run_mac_layer_requantized;
use ftnas::hwsim::layer::{CycleLevel, LayerGemm};
use ftnas::hwsim::{HwNetwork, SystolicArray};
use ftnas::quant::Activation;
use ftnas::quant::QOp;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// `q` on an 8x8 array of dataflow `df` (its datapath), stepped cycle by
/// cycle.
fn network(q: &ftnas::quant::QModel, df: Dataflow) -> HwNetwork {
    HwNetwork::new(&common::systolic_accelerator(8, 8, df, q.datapath, 64), q).unwrap()
}

/// Index of the layer named `name` among `q`'s conv/linear layers.
fn mac_index(q: &ftnas::quant::QModel, name: &str) -> usize {
    q.nodes
        .iter()
        .filter_map(|n| match &n.op {
            QOp::Mac(l) => Some(l.name.as_str()),
            _ => None,
        })
        .position(|n| n == name)
        .unwrap()
}

#[test]
fn derived_layer_statistics_match_layer_injection() {
    let (q, outs) = common::random_vgg_on_fashion("[[4], [8]]", 5, Overflow::Wrap, 3);
    let mut checked = 0;
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let arr = SystolicArray::new(8, 8, df).unwrap();
        for node in &q.nodes {
            let QOp::Mac(layer) = &node.op else { continue };
            let inputs: Vec<Vec<i32>> = outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
            let (mut mags, mut negative) = (Magnitudes::default(), Magnitudes::default());
            for x in &inputs {
                add_im2col_magnitudes(layer, x, &mut mags, &mut negative);
            }
            let gl = GemmLayer::of(layer, mags, negative);
            let shape = LayerGemm::new(&arr, layer);
            // About four flips per layer run, spread over all four sites.
            let bits_per_cycle = 64.0 * (8.0 + 8.0 + 24.0 + 16.0);
            let lambda = 4.0 / (bits_per_cycle * shape.cycles as f64);
            let rates = SiteRates {
                act_reg: lambda,
                weight_reg: lambda,
                psum_reg: lambda,
                mult_out: lambda,
            };
            let d = derive_layer(&arr, (8, 8, 24), &gl, &rates);
            let net = network(&q, df);
            let li = mac_index(&q, &layer.name);
            let m = measure_layer(
                &Hardware::Systolic(&net),
                li,
                layer,
                &inputs,
                &rates,
                60,
                11,
            )
            .unwrap();
            let tol = 4.0 * m.p_out_se + 0.15 * d.p_out;
            eprintln!(
                "{df:?} {}: p_out measured {:.4e} (se {:.1e}) derived {:.4e}; flips {}",
                layer.name, m.p_out, m.p_out_se, d.p_out, m.flips
            );
            // The histogram files every changed output at its error's bit,
            // not all at the top.
            let top = layer.out_format.bits as usize - 1;
            assert_eq!(m.bit_hist.iter().sum::<u64>(), m.hits);
            assert!(
                m.bit_hist[..top].iter().sum::<u64>() > 0,
                "{:?}",
                m.bit_hist
            );
            assert!(
                (m.p_out - d.p_out).abs() <= tol,
                "{df:?} {}: measured {:.4e} derived {:.4e} tol {tol:.2e}",
                layer.name,
                m.p_out,
                d.p_out
            );
            checked += 1;
        }
    }
    assert!(checked >= 6);
}

/// Psum-register flips move an output the way its partial sum points, so
/// what survives ReLU depends on the direction. The derived model with the
/// measured directions (`up`) matches the hardware's mean post-ReLU
/// error per hit; a random sign over-states it.
#[test]
fn psum_flip_directions_match_layer_injection() {
    let (q, outs) = common::random_vgg_on_fashion("[[8], [16]]", 3, Overflow::Saturate, 4);
    let dp = q.datapath;
    let arr = SystolicArray::new(8, 8, Dataflow::Os).unwrap();
    let mut checked = 0;
    for node in &q.nodes {
        let QOp::Mac(layer) = &node.op else { continue };
        if layer.activation != Activation::Relu {
            continue;
        }
        let inputs: Vec<Vec<i32>> = outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
        let (mut mags, mut negative) = (Magnitudes::default(), Magnitudes::default());
        for x in &inputs {
            add_im2col_magnitudes(layer, x, &mut mags, &mut negative);
        }
        let (e, k, m) = (
            layer.out_shape.h * layer.out_shape.w,
            layer.macs_per_output(),
            layer.cout_per_group(),
        );
        let mp = arr.mapping(e, k, m);
        let signs: Vec<PsumSigns> = inputs
            .iter()
            .map(|x| layer_psum_signs(&mp, &dp, layer, x))
            .collect();
        let mut gl = GemmLayer::of(layer, mags, negative);
        gl.psum_signs = sum_signs(&signs);
        let shape = LayerGemm::new(&arr, layer);
        let lambda = 4.0 / (64.0 * 24.0 * shape.cycles as f64);
        let rates = SiteRates {
            psum_reg: lambda,
            ..SiteRates::default()
        };
        let d = derive_layer(&arr, (8, 8, 24), &gl, &rates);
        let net = network(&q, Dataflow::Os);
        let li = mac_index(&q, &layer.name);
        let measured = measure_layer(
            &Hardware::Systolic(&net),
            li,
            layer,
            &inputs,
            &rates,
            200,
            5,
        )
        .unwrap();
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
                let mut clean = vec![0i32; layer.out_shape.numel()];
                run_mac_layer_requantized(
                    &CycleLevel,
                    &arr,
                    layer,
                    &dp,
                    x,
                    &layer.weights,
                    &[],
                    &mut clean,
                )
                .unwrap();
                for _ in 0..20 {
                    let mut hit = clean.clone();
                    h.apply(layer.out_format.bits, &mut hit, &mut rng);
                    for (a, b) in hit.iter().zip(&clean) {
                        if a != b {
                            hits += 1;
                            err += i64::from((a.max(&0) - b.max(&0)).abs());
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
            (with_signs - measured.mean_act_error).abs() <= 0.1 * measured.mean_act_error,
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
