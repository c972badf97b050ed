//! Fixed-point inference engines: they execute a [`QModel`] on images with
//! the integer semantics of [`crate::quant`], optionally under feature faults.
//!
//! One trait ([`Engine`]), several implementations, one test battery over all
//! of them (as tract does): [`reference::ReferenceEngine`] (scalar, obviously
//! correct, the oracle) and [`fast::FastEngine`] (im2col + integer GEMM,
//! parallel over images). Both must give bit-identical codes for every op,
//! shape and datapath; `tests/engine_equivalence.rs` holds them to it.
//!
//! Fault hook points (identical in every engine, see [`finish_mac_output`]):
//! per image and per conv/linear layer, the layer's input codes and weight
//! codes go through the buffer faults ([`layer_input`],
//! [`layer_with_filter_flips`]), the outputs stuck MAC-unit bits reach are
//! recomputed from them ([`stuck_mac_outputs`]), then the requantized
//! pre-activation codes (CHW) go through `FeatureInjector::inject` with the
//! stream `fault::stream(seed, trial, image_index, node)`, are saturated
//! to `act_bits`, then the fused activation clamps them. Weight faults are
//! applied to the model ([`QModel::with_weight_faults`]) before an engine
//! runs it, so every engine sees the same corrupted weights. Random streams
//! depend only on (seed, trial, image index, layer): results do not depend on
//! batching or thread count.

pub mod depthwise;
mod elementwise;
pub mod fast;
pub mod gemm;
pub mod reference;

use crate::fault::{FeatureBuffer, FeatureInjector, LayerSite};
use crate::fixed::{max_code, min_code, saturate, Datapath, Format};
use crate::quant::{int_ops, Activation, MacLayer, QModel, QOp};

pub use fast::FastEngine;
pub use reference::ReferenceEngine;

/// Feature faults for one run: the injector and the (seed, trial) of its
/// random streams.
#[derive(Clone, Copy)]
pub struct FeatureFaults<'a> {
    pub injector: &'a dyn FeatureInjector,
    pub seed: u64,
    pub trial: u64,
}

/// Errors from running an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("images: {got} values is not a whole number of {shape} images")]
    ImageSize { got: usize, shape: String },
}

/// A fixed-point inference engine.
pub trait Engine: Send + Sync {
    /// Short name (`reference`, `fast`).
    fn name(&self) -> &'static str;

    /// Logit codes (format [`QModel::output_format`]) of each image.
    /// `images` holds N images of `model.input_shape()` as f32, row-major;
    /// image `i` has dataset index `first_index + i` (used for its fault
    /// streams).
    fn run(
        &self,
        model: &QModel,
        images: &[f32],
        first_index: u64,
        faults: Option<FeatureFaults<'_>>,
    ) -> Result<Vec<Vec<i32>>, EngineError>;
}

/// The engine called `name` (`fast` or `reference`).
pub fn by_name(name: &str) -> Option<Box<dyn Engine>> {
    match name {
        "fast" => Some(Box::new(FastEngine)),
        "reference" => Some(Box::new(ReferenceEngine)),
        _ => None,
    }
}

/// Check that `images` is a whole number of model input images; returns N.
pub(crate) fn image_count(model: &QModel, images: &[f32]) -> Result<usize, EngineError> {
    let n = model.input_shape().numel();
    if !images.len().is_multiple_of(n) {
        return Err(EngineError::ImageSize {
            got: images.len(),
            shape: model.input_shape().to_string(),
        });
    }
    Ok(images.len() / n)
}

/// The hook point, shared by every engine: `codes` are the requantized
/// pre-activation outputs of `layer` for one image. Injects feature faults,
/// saturates to `act_bits`, applies the fused activation, then injects the
/// flips of the stored codes (the output buffer's, what later nodes read).
pub fn finish_mac_output(
    layer: &MacLayer,
    codes: &mut [i32],
    image_index: u64,
    faults: Option<FeatureFaults<'_>>,
) {
    let Some(f) = faults else {
        saturate_and_activate(layer, codes);
        return;
    };
    let site = layer.feature_site();
    let mut rng = crate::fault::stream(f.seed, f.trial, image_index, layer.node as u64);
    f.injector.inject(&site, codes, &mut rng);
    saturate_and_activate(layer, codes);
    f.injector.inject_stored(&site, codes, &mut rng);
    if f.injector.has_stuck_cells(FeatureBuffer::Ofmap) {
        let site = LayerSite {
            draw: crate::fault::draw_key(f.seed, f.trial),
            ..site
        };
        f.injector
            .inject_stuck(&site, FeatureBuffer::Ofmap, image_index, codes);
    }
}

/// The stuck MAC-unit bits of the fault model
/// ([`crate::fault::stuck_macs`]) on one image's pass through `layer`:
/// recomputes the requantized pre-activation `codes` they reach from the
/// codes the layer read (`input`, from [`layer_input`]) and its weights
/// (`layer` from [`layer_with_filter_flips`] when those changed). Called
/// between the MAC and [`finish_mac_output`]; nothing without such bits.
/// `raw_sums`: the layer's raw wrapping i32 sums (CHW, no bias) when the
/// engine has them; the model then adds only the terms a stuck operand bit
/// changes to the outputs whose accumulation stays linear, instead of
/// recomputing them.
pub fn stuck_mac_outputs(
    layer: &MacLayer,
    input: &[i32],
    dp: &Datapath,
    image_index: u64,
    faults: Option<FeatureFaults<'_>>,
    raw_sums: Option<&mut [i32]>,
    codes: &mut [i32],
) {
    let Some(f) = faults else {
        return;
    };
    if !f.injector.has_stuck_macs() {
        return;
    }
    let site = LayerSite {
        draw: crate::fault::draw_key(f.seed, f.trial),
        ..layer.feature_site()
    };
    // the raw wrapping i32 sums as accumulators under the datapath's rule,
    // in place: wrapped at `psum_bits`; a saturating accumulator's are
    // used only where its sums cannot saturate, and are exact there
    let clean = raw_sums.filter(|_| dp.psum_bits <= 32).map(|raw| {
        if dp.overflow == crate::fixed::Overflow::Wrap {
            let sh = 32 - u32::from(dp.psum_bits);
            for v in raw.iter_mut() {
                *v = (*v << sh) >> sh;
            }
        }
        &*raw
    });
    f.injector
        .inject_macs(&site, layer, input, dp, image_index, clean, codes);
}

/// The input codes `layer` computes on for one image: `input` itself, or,
/// when the fault model flips bits of the layer's input buffer
/// ([`crate::fault::FeatureInjector::input_flip`]) or has stuck cells in
/// it, a corrupted copy in `scratch` that this layer alone reads (flips
/// first: a stuck cell reads its stuck value whatever was written).
pub fn layer_input<'a>(
    layer: &MacLayer,
    input: &'a [i32],
    image_index: u64,
    faults: Option<FeatureFaults<'_>>,
    scratch: &'a mut Vec<i32>,
) -> &'a [i32] {
    let Some(f) = faults else {
        return input;
    };
    let p = f.injector.input_flip(&layer.feature_site());
    let stuck = f.injector.has_stuck_cells(FeatureBuffer::Ifmap);
    if p <= 0.0 && !stuck {
        return input;
    }
    scratch.clear();
    scratch.extend_from_slice(input);
    if p > 0.0 {
        let mut rng = crate::fault::input_stream(f.seed, f.trial, image_index, layer.node);
        crate::fault::BitFlip { p }.apply(layer.in_format.bits, scratch.as_mut_slice(), &mut rng);
    }
    if stuck {
        let site = LayerSite {
            draw: crate::fault::draw_key(f.seed, f.trial),
            format: layer.in_format,
            ..layer.feature_site()
        };
        f.injector
            .inject_stuck(&site, FeatureBuffer::Ifmap, image_index, scratch);
    }
    scratch
}

/// The weight-code changes of `layer` for one image when the fault model
/// flips bits of the layer's filter buffer
/// ([`crate::fault::FeatureInjector::filter_flip`]): `(index, code)` of
/// every changed weight code, drawn from [`crate::fault::filter_stream`];
/// empty without such flips (the common case at low rates, where the
/// engines keep the prepared weights).
pub fn filter_flips(
    layer: &MacLayer,
    image_index: u64,
    faults: Option<FeatureFaults<'_>>,
) -> Vec<(usize, i32)> {
    let Some(f) = faults else {
        return Vec::new();
    };
    let p = f.injector.filter_flip(&layer.feature_site());
    if p <= 0.0 {
        return Vec::new();
    }
    let clean = |i: usize| layer.weights[i];
    let mut codes = crate::fault::SparseCodes::new(layer.weights.len(), &clean);
    let mut rng = crate::fault::filter_stream(f.seed, f.trial, image_index, layer.node);
    crate::fault::BitFlip { p }.apply(layer.weight_format.bits, &mut codes, &mut rng);
    codes.into_hits()
}

/// `layer` with the weight codes of [`filter_flips`] for one image, or
/// `None` when no code changed.
pub fn layer_with_filter_flips(
    layer: &MacLayer,
    image_index: u64,
    faults: Option<FeatureFaults<'_>>,
) -> Option<MacLayer> {
    let hits = filter_flips(layer, image_index, faults);
    if hits.is_empty() {
        return None;
    }
    let mut flipped = layer.clone();
    for (i, c) in hits {
        flipped.weights[i] = c;
    }
    Some(flipped)
}

/// Saturate requantized codes to the output format and apply the fused
/// activation.
fn saturate_and_activate(layer: &MacLayer, codes: &mut [i32]) {
    let fmt = layer.out_format;
    // saturate then activation are two clamps: one clamp to the
    // intersection of the ranges when they overlap
    let (lo, hi) = (min_code(fmt.bits) as i32, max_code(fmt.bits) as i32);
    let (act_lo, act_hi) = match layer.activation {
        Activation::None => (lo, hi),
        Activation::Relu => (0, hi),
        Activation::Relu6 => (0, int_ops::six_code(fmt)),
    };
    let (lo, hi) = (lo.max(act_lo), hi.min(act_hi));
    if lo <= hi {
        elementwise::clamp_codes(codes, lo, hi);
        return;
    }
    for c in codes.iter_mut() {
        *c = layer
            .activation
            .apply(saturate(*c as i64, fmt.bits) as i32, fmt);
    }
}

/// Execute a non-MAC node `q` (every op except `Input` and `Mac`), given the
/// outputs of all earlier nodes.
pub(crate) fn exec_non_mac(model: &QModel, q: usize, prev: &[Vec<i32>], out: &mut [i32]) {
    let node = &model.nodes[q];
    let input = |k: usize| prev[node.inputs[k]].as_slice();
    let in_shape = |k: usize| model.nodes[node.inputs[k]].shape;
    let with_formats = || -> Vec<(&[i32], Format)> {
        node.inputs
            .iter()
            .map(|&i| (prev[i].as_slice(), model.nodes[i].format))
            .collect()
    };
    let dp: &Datapath = &model.datapath;
    match &node.op {
        QOp::Input | QOp::Mac(_) => unreachable!("exec_non_mac called on {}", node.name),
        QOp::Affine(a) => int_ops::affine(a, input(0), node.shape, dp, node.format, out),
        QOp::Relu => {
            for (o, &x) in out.iter_mut().zip(input(0)) {
                *o = x.max(0);
            }
        }
        QOp::Relu6 => {
            let six = int_ops::six_code(node.format);
            for (o, &x) in out.iter_mut().zip(input(0)) {
                *o = x.clamp(0, six);
            }
        }
        QOp::MaxPool(g) => int_ops::pool(input(0), in_shape(0), node.shape, g, true, out),
        QOp::AvgPool(g) => int_ops::pool(input(0), in_shape(0), node.shape, g, false, out),
        QOp::GlobalAvgPool => int_ops::global_avg_pool(input(0), in_shape(0), out),
        QOp::Add => int_ops::add(&with_formats(), node.format, out),
        QOp::Concat => int_ops::concat(&with_formats(), node.format, out),
        QOp::Flatten => out.copy_from_slice(input(0)),
        QOp::Crop { top, left } => {
            int_ops::crop(input(0), in_shape(0), node.shape, *top, *left, out)
        }
        QOp::Zero => out.fill(0),
    }
}
