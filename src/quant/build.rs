//! Calibration and quantization: float graph + weights + calibration images
//! -> [`QModel`]. The rules (fusion, BN folding, formats) are stated in the
//! [`crate::quant`] module doc.

use rayon::prelude::*;

use crate::fixed::{Datapath, Format};
use crate::model::{float, Graph, ModelError, NodeId, Op, Weights};

use super::{Activation, ChannelAffine, MacLayer, PoolGeom, QModel, QNode, QOp};

/// Errors from calibrating or quantizing a model.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("datapath: {0}")]
    Datapath(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("calibration: {0}")]
    Calibration(String),
}

/// max|x| of every graph node's float output over the calibration `images`
/// (N x c*h*w, row-major), one value per graph node.
pub fn calibrate(graph: &Graph, weights: &Weights, images: &[f32]) -> Result<Vec<f32>, QuantError> {
    weights.check_against(graph).map_err(ModelError::Graph)?;
    let n = graph.input_shape().numel();
    if images.is_empty() || !images.len().is_multiple_of(n) {
        return Err(QuantError::Calibration(format!(
            "need a non-empty set of {} images, got {} values",
            graph.input_shape(),
            images.len()
        )));
    }
    let per_image = |img: &[f32]| -> Result<Vec<f32>, QuantError> {
        let outs = float::forward_all(graph, weights, img)?;
        Ok(outs
            .iter()
            .map(|o| o.iter().fold(0.0f32, |m, &x| m.max(x.abs())))
            .collect())
    };
    images.par_chunks(n).map(per_image).try_reduce(
        || vec![0.0; graph.nodes.len()],
        |a, b| Ok(a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect()),
    )
}

/// Calibrate on `calib_images` and quantize (see [`quantize_with_ranges`]).
pub fn quantize(
    graph: &Graph,
    weights: &Weights,
    datapath: Datapath,
    calib_images: &[f32],
) -> Result<QModel, QuantError> {
    let ranges = calibrate(graph, weights, calib_images)?;
    quantize_with_ranges(graph, weights, datapath, &ranges)
}

/// Quantize with given activation ranges (max|x| per graph node, as
/// returned by [`calibrate`]).
pub fn quantize_with_ranges(
    graph: &Graph,
    weights: &Weights,
    dp: Datapath,
    ranges: &[f32],
) -> Result<QModel, QuantError> {
    dp.validate().map_err(QuantError::Datapath)?;
    weights.check_against(graph).map_err(ModelError::Graph)?;
    if ranges.len() != graph.nodes.len() {
        return Err(QuantError::Calibration(format!(
            "{} ranges for {} graph nodes",
            ranges.len(),
            graph.nodes.len()
        )));
    }
    let param = |id: NodeId, suffix: &str| -> &[f32] {
        &weights.tensors[&format!("{}.{suffix}", graph.nodes[id].name)].data
    };
    let act = |id: NodeId| Format::for_max_abs(ranges[id], dp.act_bits);
    let bn_affine = |id: NodeId| -> (Vec<f32>, Vec<f32>) {
        let eps = match graph.nodes[id].op {
            Op::BatchNorm { eps } => eps,
            _ => 0.0,
        };
        let (g, b, m, v) = (
            param(id, "weight"),
            param(id, "bias"),
            param(id, "running_mean"),
            param(id, "running_var"),
        );
        let a: Vec<f32> = (0..g.len()).map(|c| g[c] / (v[c] + eps).sqrt()).collect();
        let shift = (0..g.len()).map(|c| b[c] - m[c] * a[c]).collect();
        (a, shift)
    };

    let mut consumers: Vec<Vec<NodeId>> = vec![vec![]; graph.nodes.len()];
    for (id, n) in graph.nodes.iter().enumerate() {
        for &i in &n.inputs {
            consumers[i].push(id);
        }
    }
    let sole_consumer = |id: NodeId| -> Option<NodeId> {
        match consumers[id].as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    };

    // qid[graph node] = the quantized node producing that graph node's value
    // (for fused nodes, the node that absorbed them).
    let mut qid: Vec<Option<usize>> = vec![None; graph.nodes.len()];
    let mut nodes: Vec<QNode> = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if qid[id].is_some() {
            continue; // absorbed into an earlier MAC layer
        }
        let inputs: Vec<usize> = node
            .inputs
            .iter()
            .map(|&i| qid[i].expect("inputs precede their consumers"))
            .collect();
        let in_fmt = |k: usize| nodes[inputs[k]].format;
        let (op, format, last) = match &node.op {
            Op::Input => (QOp::Input, act(id), id),
            Op::Conv2d { .. } | Op::Linear { .. } => {
                let mut last = id;
                let mut bn = None;
                if let Some(next) = sole_consumer(id) {
                    if matches!(graph.nodes[next].op, Op::BatchNorm { .. }) {
                        bn = Some(next);
                        last = next;
                    }
                }
                let mut activation = Activation::None;
                if let Some(next) = sole_consumer(last) {
                    match graph.nodes[next].op {
                        Op::Relu => activation = Activation::Relu,
                        Op::Relu6 => activation = Activation::Relu6,
                        _ => {}
                    }
                    if activation != Activation::None {
                        qid[last] = Some(nodes.len());
                        last = next;
                    }
                }
                let pre = bn.unwrap_or(id);
                let out_format = act(pre);
                let layer = mac_layer(
                    graph,
                    weights,
                    id,
                    bn.map(bn_affine),
                    in_fmt(0),
                    out_format,
                    activation,
                    &dp,
                );
                (QOp::Mac(Box::new(layer)), out_format, last)
            }
            Op::BatchNorm { .. } => {
                let (a, b) = bn_affine(id);
                let scale_format = Format::for_max_abs(max_abs(&a), dp.weight_bits);
                let acc_frac = in_fmt(0).frac + scale_format.frac;
                let acc_format = Format {
                    bits: dp.psum_bits,
                    frac: acc_frac,
                };
                let affine = ChannelAffine {
                    scale: a.iter().map(|&x| scale_format.quantize(x)).collect(),
                    scale_format,
                    shift: b.iter().map(|&x| acc_format.quantize(x)).collect(),
                    acc_frac,
                };
                (QOp::Affine(affine), act(id), id)
            }
            Op::Relu => (QOp::Relu, in_fmt(0), id),
            Op::Relu6 => (QOp::Relu6, in_fmt(0), id),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => (
                QOp::MaxPool(PoolGeom {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                }),
                in_fmt(0),
                id,
            ),
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => (
                QOp::AvgPool(PoolGeom {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                }),
                in_fmt(0),
                id,
            ),
            Op::GlobalAvgPool => (QOp::GlobalAvgPool, in_fmt(0), id),
            Op::Add => (QOp::Add, act(id), id),
            Op::Concat => (QOp::Concat, act(id), id),
            Op::Flatten => (QOp::Flatten, in_fmt(0), id),
            Op::Crop { top, left } => (
                QOp::Crop {
                    top: *top,
                    left: *left,
                },
                in_fmt(0),
                id,
            ),
            Op::Zero { .. } => (QOp::Zero, in_fmt(0), id),
        };
        let q = nodes.len();
        qid[id] = Some(q);
        qid[last] = Some(q);
        if let QOp::Mac(l) = &op {
            if l.node != last {
                // the conv itself (and a folded BN) map to the fused node too
                qid[l.node] = Some(q);
            }
        }
        nodes.push(QNode {
            graph_node: last,
            name: graph.nodes[last].name.clone(),
            op,
            inputs,
            shape: graph.nodes[last].shape,
            format,
        });
    }
    Ok(QModel {
        name: graph.name.clone(),
        datapath: dp,
        nodes,
    })
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, &x| m.max(x.abs()))
}

/// The shape of conv/linear `id`'s computation as a [`MacLayer`] holds it
/// (a linear is a 1x1 conv on `in x 1 x 1`).
pub(crate) struct MacGeometry {
    pub is_conv: bool,
    pub in_shape: crate::model::Shape,
    pub out_shape: crate::model::Shape,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl MacGeometry {
    pub(crate) fn of(graph: &Graph, id: NodeId) -> MacGeometry {
        let node = &graph.nodes[id];
        let in_shape = graph.input_shape_of(id);
        match &node.op {
            Op::Conv2d {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => MacGeometry {
                is_conv: true,
                in_shape,
                out_shape: node.shape,
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
                dilation: *dilation,
                groups: *groups,
            },
            _ => MacGeometry {
                is_conv: false,
                in_shape: crate::model::Shape::new(in_shape.numel(), 1, 1),
                out_shape: node.shape,
                kernel: (1, 1),
                stride: (1, 1),
                padding: (0, 0),
                dilation: (1, 1),
                groups: 1,
            },
        }
    }
}

/// Fold the BN (per-channel scale `a`, shift `b`) into conv/linear `id` and
/// quantize its weights and bias.
#[allow(clippy::too_many_arguments)]
fn mac_layer(
    graph: &Graph,
    weights: &Weights,
    id: NodeId,
    bn: Option<(Vec<f32>, Vec<f32>)>,
    in_format: Format,
    out_format: Format,
    activation: Activation,
    dp: &Datapath,
) -> MacLayer {
    let node = &graph.nodes[id];
    let name = &node.name;
    let geom = MacGeometry::of(graph, id);
    let (in_shape, out_shape) = (geom.in_shape, geom.out_shape);
    let (is_conv, kernel, stride, padding, dilation, groups) = (
        geom.is_conv,
        geom.kernel,
        geom.stride,
        geom.padding,
        geom.dilation,
        geom.groups,
    );
    let has_bias = match &node.op {
        Op::Conv2d { bias, .. } | Op::Linear { bias, .. } => *bias,
        _ => false,
    };
    let mut w = weights.tensors[&format!("{name}.weight")].data.clone();
    let mut b: Vec<f32> = if has_bias {
        weights.tensors[&format!("{name}.bias")].data.clone()
    } else {
        vec![0.0; out_shape.c]
    };
    if let Some((a, shift)) = bn {
        let per_out = w.len() / out_shape.c;
        for oc in 0..out_shape.c {
            for x in &mut w[oc * per_out..(oc + 1) * per_out] {
                *x *= a[oc];
            }
            b[oc] = b[oc] * a[oc] + shift[oc];
        }
    }
    let weight_format = Format::for_max_abs(max_abs(&w), dp.weight_bits);
    let acc_frac = in_format.frac + weight_format.frac;
    let acc_format = Format {
        bits: dp.psum_bits,
        frac: acc_frac,
    };
    MacLayer {
        node: id,
        name: name.clone(),
        is_conv,
        in_shape,
        out_shape,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        weights: w.iter().map(|&x| weight_format.quantize(x)).collect(),
        weight_format,
        bias: b.iter().map(|&x| acc_format.quantize(x)).collect(),
        in_format,
        acc_frac,
        out_format,
        activation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GraphBuilder, Shape, Tensor};

    fn conv(out: usize, bias: bool) -> Op {
        Op::Conv2d {
            out_channels: out,
            kernel: (1, 1),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            bias,
        }
    }

    #[test]
    fn folds_bn_fuses_relu_and_keeps_unfoldable_bn() {
        let mut b = GraphBuilder::new("t", Shape::new(1, 2, 2));
        let c1 = b.add("c1", conv(2, true), &[0]).unwrap();
        let bn1 = b.add("bn1", Op::BatchNorm { eps: 0.0 }, &[c1]).unwrap();
        let r = b.add("r", Op::Relu, &[bn1]).unwrap();
        let c2 = b.add("c2", conv(2, false), &[r]).unwrap();
        let cat = b.add("cat", Op::Concat, &[r, c2]).unwrap();
        b.add("bn2", Op::BatchNorm { eps: 0.0 }, &[cat]).unwrap();
        let g = b.finish();
        let mut w = Weights::random(&g, 1);
        w.insert("c1.weight", Tensor::new(vec![2, 1, 1, 1], vec![0.5, -0.25]));
        w.insert("c1.bias", Tensor::new(vec![2], vec![0.1, 0.2]));
        w.insert("bn1.weight", Tensor::new(vec![2], vec![2.0, 1.0]));
        w.insert("bn1.bias", Tensor::new(vec![2], vec![0.0, 1.0]));
        w.insert("bn1.running_mean", Tensor::new(vec![2], vec![0.1, 0.0]));
        w.insert("bn1.running_var", Tensor::new(vec![2], vec![1.0, 4.0]));
        let imgs: Vec<f32> = (0..8).map(|i| i as f32 / 8.0).collect();
        let q = quantize(&g, &w, Datapath::INT8, &imgs).unwrap();
        let kinds: Vec<&str> = q
            .nodes
            .iter()
            .map(|n| match n.op {
                QOp::Input => "input",
                QOp::Mac(_) => "mac",
                QOp::Affine(_) => "affine",
                QOp::Concat => "concat",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["input", "mac", "mac", "concat", "affine"]);
        let QOp::Mac(l1) = &q.nodes[1].op else {
            unreachable!()
        };
        assert_eq!(l1.activation, Activation::Relu);
        assert_eq!(q.nodes[1].graph_node, r);
        assert_eq!(l1.node, c1);
        // folded weights 1.0 and -0.125: max 1.0 -> scale 0, frac 7, and
        // 1.0 itself saturates to the largest code (hardware saturation)
        assert_eq!(l1.weight_format.frac, 7);
        assert_eq!(l1.weights, vec![127, -16]);
        // folded bias: (0.1-0.1)*2+0 = 0, 0.2*0.5+1 = 1.1
        let acc = Format {
            bits: 32,
            frac: l1.acc_frac,
        };
        assert_eq!(l1.bias, vec![0, acc.quantize(1.1)]);
        // concat consumes the relu output and c2
        assert_eq!(q.nodes[3].inputs, vec![1, 2]);
    }
}
