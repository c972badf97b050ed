//! The scalar reference engine: the oracle every other engine and hardware
//! model is compared against. One image at a time, one output at a time,
//! i64 accumulation with the datapath's accumulator rule applied after every
//! addition in reduction order `(c, kh, kw)`, bias last. Images are spread
//! over rayon threads, which cannot change results (each image is
//! independent and has its own fault streams).

use rayon::prelude::*;

use crate::fixed::{requantize, Datapath};
use crate::quant::{int_ops, MacLayer, QModel, QOp};

use super::{
    exec_non_mac, finish_mac_output, image_count, layer_input, layer_with_filter_flips,
    stuck_mac_outputs, Engine, EngineError, FeatureFaults,
};

/// The scalar reference engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceEngine;

impl Engine for ReferenceEngine {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn run(
        &self,
        model: &QModel,
        images: &[f32],
        first_index: u64,
        faults: Option<FeatureFaults<'_>>,
    ) -> Result<Vec<Vec<i32>>, EngineError> {
        image_count(model, images)?;
        let n = model.input_shape().numel();
        Ok(images
            .par_chunks(n)
            .enumerate()
            .map(|(i, img)| {
                let mut all = run_image_all(model, img, first_index + i as u64, faults);
                all.pop().unwrap_or_default()
            })
            .collect())
    }
}

/// Every quantized node's output codes for one image (dataset index
/// `image_index`), in [`QModel::nodes`] order.
pub fn run_image_all(
    model: &QModel,
    image: &[f32],
    image_index: u64,
    faults: Option<FeatureFaults<'_>>,
) -> Vec<Vec<i32>> {
    let mut outs: Vec<Vec<i32>> = Vec::with_capacity(model.nodes.len());
    for (q, node) in model.nodes.iter().enumerate() {
        let mut out = vec![0i32; node.shape.numel()];
        match &node.op {
            QOp::Input => model.quantize_input(image, &mut out),
            QOp::Mac(layer) => {
                let mut scratch = Vec::new();
                let input = layer_input(
                    layer,
                    &outs[node.inputs[0]],
                    image_index,
                    faults,
                    &mut scratch,
                );
                let flipped = layer_with_filter_flips(layer, image_index, faults);
                let layer = flipped.as_ref().unwrap_or(layer);
                mac_layer_reference(layer, input, &model.datapath, &mut out);
                stuck_mac_outputs(
                    layer,
                    input,
                    &model.datapath,
                    image_index,
                    faults,
                    None,
                    &mut out,
                );
                finish_mac_output(layer, &mut out, image_index, faults);
            }
            _ => exec_non_mac(model, q, &outs, &mut out),
        }
        outs.push(out);
    }
    outs
}

/// The requantized pre-activation output codes (CHW) of one conv/linear
/// layer for one image's `input` codes: what a hardware model of the layer
/// must reproduce before faults and activation.
pub fn mac_layer_reference(layer: &MacLayer, input: &[i32], dp: &Datapath, out: &mut [i32]) {
    let o = layer.out_shape;
    for oc in 0..o.c {
        for oy in 0..o.h {
            for ox in 0..o.w {
                let acc =
                    int_ops::mac_output_in_order(layer, &layer.weights, input, dp, oc, oy, ox);
                out[(oc * o.h + oy) * o.w + ox] = requantize(
                    acc,
                    layer.acc_frac,
                    layer.out_format.frac,
                    layer.out_format.bits,
                ) as i32;
            }
        }
    }
}
