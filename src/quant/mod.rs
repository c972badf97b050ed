//! Float model -> quantized model ([`QModel`]): the integer program every
//! fixed-point engine, the accelerator models and the fault models execute.
//!
//! This module owns the quantized network and its exact integer semantics;
//! [`build`] turns a float [`Graph`](crate::model::Graph) + weights + a
//! calibration set into a `QModel`, [`int_ops`] holds the integer kernels of
//! the non-MAC ops shared by all engines. Number formats and the three
//! primitives (`saturate`, `wrap`, `round_shift`) come from [`crate::fixed`].
//!
//! # Building (see [`build::quantize`])
//! - **Fusion.** A conv/linear whose only consumer is a BatchNorm gets the BN
//!   folded in (`w' = w*g/sqrt(v+eps)`, `b' = (b-mean)*g/sqrt(v+eps)+beta`);
//!   the result (conv or conv+BN) whose only consumer is a ReLU/ReLU6 gets the
//!   activation fused. Fusion never changes results: a fused activation uses
//!   exactly the codes and format a standalone one would.
//! - **A BN that does not follow a conv** (e.g. after the concat of DARTS'
//!   factorized reduce, or after a conv with several consumers) becomes a
//!   per-channel affine in fixed point ([`ChannelAffine`]): a 1-MAC layer
//!   with scale codes in the weight format and shift codes in the
//!   accumulator domain.
//! - **Formats.** Power-of-two per tensor ([`Format::for_max_abs`]).
//!   Weights (after folding): from max|w| of the tensor, `weight_bits`.
//!   Activations: max|x| of each node's float output over the calibration
//!   images; the input format from the input images' range. The output of a
//!   MAC layer has the format of its pre-activation tensor (conv or BN
//!   output); ReLU/ReLU6, max/avg pool, global average pool, crop, flatten and
//!   zero keep their input's format; add, concat and standalone BN get their
//!   calibrated format.
//!
//! # Integer semantics (all engines, bit for bit)
//! - **Input**: `code = Format::quantize(x)` (round to nearest, ties away
//!   from zero, saturate to `act_bits`).
//! - **Conv/linear**: reduction over `(c, kh, kw)` in that order of
//!   `x*w` (codes; padded taps contribute nothing), the accumulator rule
//!   ([`Datapath::acc_limit`]: wrap to the low `psum_bits` bits, or saturate)
//!   applied after every addition; then the bias (accumulator domain,
//!   `frac = f_in + f_w`, saturated to `psum_bits` when quantized) is added
//!   with the same rule; then `requantize(acc, f_in + f_w, f_out, act_bits)`
//!   (rounding right shift, ties towards +inf, then saturation). Feature
//!   faults are injected here, on the pre-activation codes; the codes are
//!   then saturated to `act_bits` again (a no-op for well-behaved injectors)
//!   and the fused activation is applied on codes.
//! - **ReLU**: `max(c, 0)`. **ReLU6**: `clamp(c, 0, six)` with
//!   `six = saturate(round_shift(6, -frac), bits)` (6 in the tensor's format).
//! - **Standalone BN**: `acc = limit(x*a)`, `acc = limit(acc + b)`, then
//!   `requantize(acc, f_in + f_a, f_out, act_bits)`.
//! - **Max pool**: maximum code over the valid window positions.
//! - **Avg pool / global average pool**: `s` = exact sum (i64) of the codes at
//!   the `n` valid positions; output `floor((2s + n) / 2n)` = `s/n` rounded to
//!   nearest with ties towards +inf (the same rounding as `round_shift`);
//!   the result is within the input range, so the format is unchanged.
//! - **Add**: each input is rescaled to the output format with
//!   `round_shift(c, f_in - f_out)` (no intermediate saturation), the
//!   rescaled codes are summed exactly in i64, then saturated to `act_bits`.
//! - **Concat**: every input is requantized to the output format
//!   (`requantize(c, f_in, f_out, act_bits)`), then stacked along channels.
//! - **Crop / flatten**: data movement only. **Zero**: all codes 0.
//! - **Prediction**: the argmax of the logit codes, ties to the lowest index.

pub mod build;
pub mod int_ops;

pub use build::{calibrate, quantize, QuantError};

use rand_xoshiro::Xoshiro256PlusPlus;

use crate::fault::{LayerSite, WeightInjector};
use crate::fixed::{saturate, Datapath, Format};
use crate::model::{NodeId, Shape};

/// Activation applied on codes after requantization (and fault injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

impl Activation {
    /// Apply to one code of `format`.
    #[inline]
    pub fn apply(self, code: i32, format: Format) -> i32 {
        match self {
            Activation::None => code,
            Activation::Relu => code.max(0),
            Activation::Relu6 => code.clamp(0, int_ops::six_code(format)),
        }
    }
}

/// A conv or linear layer (with BN folded in and its activation fused):
/// everything needed to execute it bit-exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct MacLayer {
    /// Graph node id of the conv/linear: the fault site and the random
    /// stream's layer index.
    pub node: NodeId,
    /// Graph node name of the conv/linear.
    pub name: String,
    /// True for conv, false for linear (a linear is a 1x1 conv on `in x 1 x 1`).
    pub is_conv: bool,
    pub in_shape: Shape,
    pub out_shape: Shape,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    /// Weight codes in the float layout `[out, in/groups, kh, kw]`.
    pub weights: Vec<i32>,
    pub weight_format: Format,
    /// Bias codes in the accumulator domain (`frac = acc_frac`), one per
    /// output channel (zeros when the layer has neither bias nor BN).
    pub bias: Vec<i32>,
    pub in_format: Format,
    /// Fraction length of the accumulator: `in_format.frac + weight_format.frac`.
    pub acc_frac: i32,
    /// Format of the (pre- and post-activation) output codes.
    pub out_format: Format,
    pub activation: Activation,
}

impl MacLayer {
    /// Input channels per group.
    pub fn cin_per_group(&self) -> usize {
        self.in_shape.c / self.groups
    }
    /// Output channels per group.
    pub fn cout_per_group(&self) -> usize {
        self.out_shape.c / self.groups
    }
    /// Weights per output channel: `C_in/groups * kh * kw` (the MiBB `n`).
    pub fn macs_per_output(&self) -> usize {
        self.cin_per_group() * self.kernel.0 * self.kernel.1
    }
    /// The hook-point description for feature faults (output codes).
    pub fn feature_site(&self) -> LayerSite<'_> {
        LayerSite {
            node: self.node,
            name: &self.name,
            is_conv: self.is_conv,
            macs_per_output: self.macs_per_output(),
            taps: self.kernel.0 * self.kernel.1,
            groups: self.groups,
            draw: 0,
            format: self.out_format,
        }
    }
    /// The hook-point description for weight faults (weight codes).
    pub fn weight_site(&self) -> LayerSite<'_> {
        LayerSite {
            format: self.weight_format,
            ..self.feature_site()
        }
    }

    /// Conv/linear `id` of `graph` with weight codes `weights` whose
    /// "outputs" are its accumulators: no bias, and the output format is
    /// the accumulator's own (`psum_bits` wide, fraction `acc_frac`), so
    /// requantizing an accumulator leaves it as it is. This is how the
    /// training forward, which has no integer pipeline of its own, asks a
    /// fault model that recomputes outputs from codes
    /// ([`crate::fault::FeatureInjector::inject_macs`]) for the accumulators
    /// it changes.
    pub fn accumulators(
        graph: &crate::model::Graph,
        id: NodeId,
        weights: Vec<i32>,
        weight_format: Format,
        in_format: Format,
        dp: &Datapath,
    ) -> MacLayer {
        let g = build::MacGeometry::of(graph, id);
        let acc_frac = in_format.frac + weight_format.frac;
        MacLayer {
            node: id,
            name: graph.nodes[id].name.clone(),
            is_conv: g.is_conv,
            in_shape: g.in_shape,
            out_shape: g.out_shape,
            kernel: g.kernel,
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
            groups: g.groups,
            weights,
            weight_format,
            bias: vec![0; g.out_shape.c],
            in_format,
            acc_frac,
            out_format: Format {
                bits: dp.psum_bits,
                frac: acc_frac,
            },
            activation: Activation::None,
        }
    }
}

/// A batch norm that could not be folded: `y = x*a + b` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAffine {
    /// Scale codes per channel.
    pub scale: Vec<i32>,
    pub scale_format: Format,
    /// Shift codes per channel in the accumulator domain (`acc_frac`).
    pub shift: Vec<i32>,
    /// `in_format.frac + scale_format.frac`.
    pub acc_frac: i32,
}

/// Pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

/// One quantized operation.
#[derive(Debug, Clone, PartialEq)]
pub enum QOp {
    /// The input image, quantized with the node's format.
    Input,
    /// Conv/linear (+ folded BN, + fused activation).
    Mac(Box<MacLayer>),
    /// A batch norm that does not follow a conv.
    Affine(ChannelAffine),
    Relu,
    Relu6,
    MaxPool(PoolGeom),
    AvgPool(PoolGeom),
    GlobalAvgPool,
    Add,
    Concat,
    Flatten,
    Crop {
        top: usize,
        left: usize,
    },
    Zero,
}

/// One node of the quantized program.
#[derive(Debug, Clone, PartialEq)]
pub struct QNode {
    /// Graph node whose output this node produces (the last fused node).
    pub graph_node: NodeId,
    /// Name of that graph node.
    pub name: String,
    pub op: QOp,
    /// Ids of input nodes in [`QModel::nodes`].
    pub inputs: Vec<usize>,
    /// Output shape per image.
    pub shape: Shape,
    /// Format of the output codes.
    pub format: Format,
}

/// A quantized network: nodes in topological order, node 0 the input, the
/// last node the logits.
#[derive(Debug, Clone, PartialEq)]
pub struct QModel {
    pub name: String,
    pub datapath: Datapath,
    pub nodes: Vec<QNode>,
}

impl QModel {
    /// Input shape per image.
    pub fn input_shape(&self) -> Shape {
        self.nodes[0].shape
    }
    /// Format of the quantized input.
    pub fn input_format(&self) -> Format {
        self.nodes[0].format
    }
    /// Format of the logit codes.
    pub fn output_format(&self) -> Format {
        self.nodes[self.nodes.len() - 1].format
    }
    /// Number of classes (logits per image).
    pub fn num_outputs(&self) -> usize {
        self.nodes[self.nodes.len() - 1].shape.numel()
    }
    /// The conv/linear layers, in order.
    pub fn mac_layers(&self) -> impl Iterator<Item = &MacLayer> {
        self.nodes.iter().filter_map(|n| match &n.op {
            QOp::Mac(l) => Some(l.as_ref()),
            _ => None,
        })
    }
    /// Quantize one image (`c*h*w` floats) into input codes.
    pub fn quantize_input(&self, image: &[f32], out: &mut [i32]) {
        let f = self.input_format();
        for (o, &x) in out.iter_mut().zip(image) {
            *o = f.quantize(x);
        }
    }

    /// A copy of this model whose weight codes were corrupted by `injector`,
    /// as one simulated chip: each layer's codes are handed to the injector
    /// once with the stream `stream(seed, trial, u64::MAX, node)`, then
    /// saturated to `weight_bits`. Every engine then runs the same corrupted
    /// weights, so weight faults are identical across engines by construction.
    pub fn with_weight_faults(
        &self,
        injector: &dyn WeightInjector,
        seed: u64,
        trial: u64,
    ) -> QModel {
        let mut out = self.clone();
        for node in &mut out.nodes {
            if let QOp::Mac(layer) = &mut node.op {
                let mut codes = layer.weights.clone();
                let mut rng: Xoshiro256PlusPlus =
                    crate::fault::stream(seed, trial, u64::MAX, layer.node as u64);
                let site = LayerSite {
                    draw: crate::fault::draw_key(seed, trial),
                    ..layer.weight_site()
                };
                injector.corrupt(&site, &mut codes, &mut rng);
                for c in &mut codes {
                    *c = saturate(*c as i64, layer.weight_format.bits) as i32;
                }
                layer.weights = codes;
            }
        }
        out
    }
}

/// Index of the largest logit code, ties to the lowest index.
pub fn argmax(logits: &[i32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}
