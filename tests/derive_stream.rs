//! Stationary-register upsets on WS and IS arrays against layer-isolated
//! hardware injection on real Fashion-MNIST inputs: one flipped held value
//! corrupts the rest of its stream with errors of one sign, so the errors
//! of a stream add up coherently. The derived runs
//! (`ftnas::fault::stream_hit`) must reproduce that coherent error energy;
//! the same hit rate spread as independent hits must not.

mod common;

use ftnas::accel::Dataflow;
use ftnas::derive::hardware::Hardware;
use ftnas::derive::layer::{derive_layer, GemmLayer, Magnitudes, SiteRates};
use ftnas::derive::network::{add_im2col_magnitudes, im2col_rows};
use ftnas::fault::output_hit::{HitSign, OutputHit};
use ftnas::fault::stream_hit::StreamAxis;
use ftnas::fixed::Overflow;
use ftnas::hwsim::layer::LayerGemm;
use ftnas::hwsim::{HwNetwork, SystolicArray};
use ftnas::quant::{MacLayer, QModel, QOp};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fn network(q: &QModel, df: Dataflow) -> HwNetwork {
    HwNetwork::new(&common::systolic_accelerator(6, 5, df, q.datapath, 64), q).unwrap()
}

/// Per output stream (WS: an output channel's pixels; IS: a pixel's
/// channels), the summed error of one corrupted output tensor; returns
/// `sum over streams of |summed error|` (coherent errors add up in it,
/// independent ones of random sign partly cancel) and the number of
/// changed codes.
fn coherent_energy(layer: &MacLayer, axis: StreamAxis, clean: &[i32], hit: &[i32]) -> (f64, u64) {
    let pixels = layer.out_shape.h * layer.out_shape.w;
    let channels = layer.out_shape.c;
    let mut energy = 0.0;
    let changed = hit.iter().zip(clean).filter(|(a, b)| a != b).count() as u64;
    let err = |c: usize, p: usize| f64::from(hit[c * pixels + p] - clean[c * pixels + p]);
    match axis {
        StreamAxis::Pixels => {
            for c in 0..channels {
                let s: f64 = (0..pixels).map(|p| err(c, p)).sum();
                energy += s.abs();
            }
        }
        StreamAxis::Channels => {
            for p in 0..pixels {
                let s: f64 = (0..channels).map(|c| err(c, p)).sum();
                energy += s.abs();
            }
        }
    }
    (energy, changed)
}

#[test]
fn stationary_runs_match_the_coherent_error_of_injection() {
    let (q, outs) = common::random_vgg_on_fashion("[[8], [12]]", 21, Overflow::Wrap, 4);
    let trials = 400u64;
    let mut checked = 0;
    for df in [Dataflow::Ws, Dataflow::Is] {
        let arr = SystolicArray::new(6, 5, df).unwrap();
        let net = network(&q, df);
        let hw = Hardware::Systolic(&net);
        let mut li = 0;
        for node in &q.nodes {
            let QOp::Mac(layer) = &node.op else { continue };
            let this = li;
            li += 1;
            if !layer.is_conv {
                continue;
            }
            let inputs: Vec<Vec<i32>> = outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
            let (mut mags, mut negative) = (Magnitudes::default(), Magnitudes::default());
            for x in &inputs {
                add_im2col_magnitudes(layer, x, &mut mags, &mut negative);
            }
            let mut gl = GemmLayer::of(layer, mags, negative);
            gl.input_rows = im2col_rows(layer, &inputs);
            let shape = LayerGemm::new(&arr, layer);
            // About two stationary-register flips per layer run.
            let lambda = 2.0 / (30.0 * 8.0 * shape.cycles as f64);
            let rates = match df {
                Dataflow::Ws => SiteRates {
                    weight_reg: lambda,
                    ..SiteRates::default()
                },
                _ => SiteRates {
                    act_reg: lambda,
                    ..SiteRates::default()
                },
            };
            let d = derive_layer(&arr, (8, 8, 24), &gl, &rates);
            let part = d.stream.as_ref().expect("a stationary site has runs");
            assert!(part.p_out < 1e-12, "no other site is faulty");
            let axis = part.runs.axis;
            let runs = OutputHit {
                p_out: 0.0,
                bit_weights: vec![1.0],
                sign: HitSign::Random,
                multiplicity: vec![1.0],
                up: Vec::new(),
                stream: Some(Box::new(part.runs.clone())),
            };
            let independent = OutputHit {
                p_out: d.p_out,
                bit_weights: d.bit_weights.clone(),
                sign: HitSign::Random,
                multiplicity: vec![1.0],
                up: Vec::new(),
                stream: None,
            };
            let site = layer.feature_site();
            let (mut hw_energy, mut hw_hits) = (0.0, 0u64);
            let (mut run_energy, mut run_hits) = (0.0, 0u64);
            let (mut ind_energy, mut ind_hits) = (0.0, 0u64);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
            for (img, x) in inputs.iter().enumerate() {
                let clean = hw.layer_outputs(this, layer, x, &hw.no_flips()).unwrap();
                for trial in 0..trials {
                    let mut frng = ftnas::fault::stream(3, trial, img as u64, layer.node as u64);
                    let flips = hw.sample_layer_flips(this, layer, &rates, &mut frng);
                    let out = hw.layer_outputs(this, layer, x, &flips).unwrap();
                    let (e, h) = coherent_energy(layer, axis, &clean, &out);
                    hw_energy += e;
                    hw_hits += h;
                    for (model, energy, hits) in [
                        (&runs, &mut run_energy, &mut run_hits),
                        (&independent, &mut ind_energy, &mut ind_hits),
                    ] {
                        let mut hit = clean.clone();
                        model.apply_at(&site, &mut hit, &mut rng);
                        let (e, h) = coherent_energy(layer, axis, &clean, &hit);
                        *energy += e;
                        *hits += h;
                    }
                }
            }
            eprintln!(
                "{df:?} {}: changed codes hw {hw_hits} runs {run_hits} independent {ind_hits}; \
                 coherent energy hw {hw_energy:.3e} runs {run_energy:.3e} independent {ind_energy:.3e}",
                layer.name
            );
            let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b;
            assert!(
                // 0.25: the row gain times the pixel profile can ask for a
                // non-zero chance above 1 where busy rows meet busy pixels;
                // the excess goes into magnitudes, so runs change a few
                // percent fewer codes than they carry error (0.81-0.9x on
                // stage 2).
                close(run_hits as f64, hw_hits as f64, 0.25),
                "{df:?} {}: runs change {run_hits} codes, hardware {hw_hits}",
                layer.name
            );
            // IS streams are a pixel's few channels, and weights of either
            // sign ride them: fewer, shorter runs, a noisier statistic. And
            // the moving weights of a row are one fixed sequence that the
            // runs draw independently: their sums spread more than the
            // hardware's (1.0x and 1.5x of injection over 1000 trials; WS
            // 1.00x and 1.02x).
            let tol = if df == Dataflow::Ws { 0.2 } else { 0.6 };
            assert!(
                close(run_energy, hw_energy, tol),
                "{df:?} {}: coherent energy runs {run_energy:.3e} vs hardware {hw_energy:.3e}",
                layer.name
            );
            assert!(
                (ind_energy - hw_energy).abs() > 2.0 * (run_energy - hw_energy).abs(),
                "{df:?} {}: independent hits {ind_energy:.3e} should miss hardware {hw_energy:.3e} \
                 by more than runs {run_energy:.3e}",
                layer.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 4);
}
