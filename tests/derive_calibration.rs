//! Derived per-layer statistics against layer-isolated hardware injection on
//! a quantized model and real Fashion-MNIST inputs, on every dataflow.

use ftnas::accel::Dataflow;
use ftnas::data::{self, Split};
use ftnas::derive::layer::{derive_layer, GemmLayer, Magnitudes, SiteRates};
use ftnas::derive::measure::measure_layer;
use ftnas::derive::network::add_im2col_magnitudes;
use ftnas::engine::reference::run_image_all;
use ftnas::fixed::{Datapath, Overflow};
use ftnas::hwsim::layer::{CycleLevel, LayerGemm};
use ftnas::hwsim::SystolicArray;
use ftnas::model::{file::parse_model, Weights};
use ftnas::quant::{quantize, QOp};

#[test]
fn derived_layer_statistics_match_layer_injection() {
    let train = data::load(None, Split::Train).unwrap();
    let spec = parse_model("family = \"vgg\"\nchannels = [[4], [8]]\n").unwrap();
    let graph = spec.build(train.shape).unwrap();
    let weights = Weights::random(&graph, 5);
    let per = train.shape.numel();
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 24,
        overflow: Overflow::Wrap,
    };
    let q = quantize(&graph, &weights, dp, &train.images[..32 * per]).unwrap();
    let images = 3;
    let outs: Vec<Vec<Vec<i32>>> = (0..images)
        .map(|i| run_image_all(&q, &train.images[i * per..(i + 1) * per], i as u64, None))
        .collect();
    let mut checked = 0;
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let arr = SystolicArray::new(8, 8, df).unwrap();
        for node in &q.nodes {
            let QOp::Mac(layer) = &node.op else { continue };
            let inputs: Vec<Vec<i32>> = outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
            let mut mags = Magnitudes::default();
            for x in &inputs {
                add_im2col_magnitudes(layer, x, &mut mags);
            }
            let gl = GemmLayer::of(layer, mags);
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
            let m = measure_layer(&CycleLevel, &arr, layer, &dp, &inputs, &rates, 60, 11).unwrap();
            let tol = 4.0 * m.p_out_se + 0.15 * d.p_out;
            eprintln!(
                "{df:?} {}: p_out measured {:.4e} (se {:.1e}) derived {:.4e}; flips {}",
                layer.name, m.p_out, m.p_out_se, d.p_out, m.flips
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
