//! Lowering of a model graph's layers to the GEMM workloads an accelerator
//! runs: each conv, linear and pooling node becomes a SCALE-Sim layer (a
//! padded, receptive-field-trimmed ifmap and an undilated filter) repeated
//! once per group.
//!
//! How the awkward layers are mapped, and why:
//! - **Padding** is materialised: the ifmap dims are the padded dims (the
//!   zeros are stored and streamed, as SCALE-Sim assumes), trimmed to the
//!   rows/columns some output window actually touches so that the output
//!   size is the real `floor` one, not SCALE-Sim's `ceil` quirk.
//! - **Dilation** does not change the GEMM: a window still has `C*kh*kw`
//!   taps, only their addresses are spread. It is lowered as the undilated
//!   kernel on an ifmap sized to give the same output grid, which keeps the
//!   operand matrix shapes (and so every cycle count) exact.
//! - **Grouped and depthwise** convs run one group after the other, each a
//!   dense GEMM of `C/g*kh*kw` by `M/g`. A systolic array shares one ifmap
//!   stream along a row (and one filter along a column); outputs of different
//!   groups need different input channels, so packing groups side by side
//!   would need block-diagonal (mostly zero) filter columns, which costs the
//!   same PE-cycles as running the groups in turn. Depthwise convs therefore
//!   use one array column (OS/WS) and show their real, low utilization.
//! - **Pooling** (max, average, global average) runs on the array as a
//!   depthwise reduction (one group per channel, window `kh*kw`): the PEs
//!   compare or add instead of multiplying, so the cycle model is that of a
//!   depthwise conv. Element-wise ops (add, ReLU, BN folded, concat) are
//!   not timed: they fuse into the ofmap drain.

use serde::Serialize;

use super::ScaleSimLayer;
use crate::model::{Graph, NodeId, Op};

/// One timed layer of a graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoweredLayer {
    pub node: NodeId,
    /// Node kind (`conv`, `dwconv`, `linear`, `maxpool`, `avgpool`, `gap`).
    pub kind: &'static str,
    /// One group's layer in SCALE-Sim's terms.
    pub layer: ScaleSimLayer,
    /// Number of groups run back to back.
    pub groups: usize,
    /// True for conv/linear (layers with weights and a precision).
    pub is_mac: bool,
    /// Real output grid (h, w) per group.
    pub out_hw: (usize, usize),
}

/// Extent of input an output grid of `out` positions needs with kernel `k`
/// and stride `s` (undilated): `(out-1)*s + k`.
fn needed(out: usize, k: usize, s: usize) -> usize {
    (out - 1) * s + k
}

/// Lower every conv, linear and pooling node of `g`, in node order.
///
/// The output grid is the graph's (already validated) inferred shape, so the
/// lowering only has to choose an ifmap extent that reproduces it. Strides
/// differing between height and width are not expressible in a SCALE-Sim
/// layer (one stride); such layers use the height stride and a width extent
/// that gives the right number of output columns, which keeps the GEMM shape
/// exact.
pub fn lower(g: &Graph) -> Vec<LoweredLayer> {
    let mut out = Vec::new();
    for (id, node) in g.nodes.iter().enumerate() {
        if node.inputs.is_empty() {
            continue;
        }
        let inp = g.input_shape_of(id);
        let o = node.shape;
        // (kh, kw, stride, channels per group, filters per group, groups)
        let spec = match &node.op {
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                groups,
                ..
            } => Some((
                kernel.0,
                kernel.1,
                *stride,
                inp.c / groups,
                out_channels / groups,
                *groups,
                true,
            )),
            Op::Linear { out_features, .. } => {
                Some((1, 1, (1, 1), inp.numel(), *out_features, 1, true))
            }
            Op::MaxPool { kernel, stride, .. } | Op::AvgPool { kernel, stride, .. } => {
                Some((kernel.0, kernel.1, *stride, 1, 1, inp.c, false))
            }
            Op::GlobalAvgPool => Some((inp.h, inp.w, (1, 1), 1, 1, inp.c, false)),
            _ => None,
        };
        let Some((kh, kw, (sh, _sw), cg, mg, groups, is_mac)) = spec else {
            continue;
        };
        let s = sh.max(1);
        // SCALE-Sim applies stride `s` to both dims; the width extent is
        // chosen to yield `o.w` columns with stride `s`.
        let layer = ScaleSimLayer {
            name: node.name.clone(),
            ifmap_h: needed(o.h, kh, s),
            ifmap_w: needed(o.w, kw, s),
            filter_h: kh,
            filter_w: kw,
            channels: cg,
            num_filters: mg,
            stride: s,
        };
        out.push(LoweredLayer {
            node: id,
            kind: node.op.kind(),
            layer,
            groups,
            is_mac,
            out_hw: (o.h, o.w),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::timing::Gemm;
    use crate::model::{GraphBuilder, Shape};

    fn conv(out: usize, k: usize, s: usize, p: usize, d: usize, g: usize) -> Op {
        Op::Conv2d {
            out_channels: out,
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            dilation: (d, d),
            groups: g,
            bias: false,
        }
    }

    #[test]
    fn gemm_shapes_match_the_graph() {
        let mut b = GraphBuilder::new("t", Shape::new(3, 32, 32));
        let c1 = b.add("c1", conv(16, 3, 1, 1, 1, 1), &[0]).unwrap();
        // Stride 2 with (H + 2p - k) odd: the real output is floor.
        let c2 = b.add("c2", conv(32, 3, 2, 1, 1, 1), &[c1]).unwrap();
        let c3 = b.add("c3", conv(32, 3, 1, 2, 2, 32), &[c2]).unwrap();
        let p = b
            .add(
                "pool",
                Op::MaxPool {
                    kernel: (2, 2),
                    stride: (2, 2),
                    padding: (0, 0),
                },
                &[c3],
            )
            .unwrap();
        let gap = b.add("gap", Op::GlobalAvgPool, &[p]).unwrap();
        let f = b.add("flat", Op::Flatten, &[gap]).unwrap();
        b.add(
            "fc",
            Op::Linear {
                out_features: 10,
                bias: true,
            },
            &[f],
        )
        .unwrap();
        let g = b.finish();
        let lowered = lower(&g);
        assert_eq!(lowered.len(), 6);
        for l in &lowered {
            let gemm = Gemm::of_scalesim_layer(&l.layer).unwrap();
            assert_eq!(gemm.pixels, l.out_hw.0 * l.out_hw.1, "{}", l.layer.name);
            if l.is_mac {
                assert_eq!(
                    gemm.macs() * l.groups as u64,
                    g.macs(l.node),
                    "{}",
                    l.layer.name
                );
            }
        }
        let c2l = &lowered[1];
        assert_eq!((c2l.out_hw, c2l.layer.ifmap_h), ((16, 16), 33));
        let dw = &lowered[2];
        assert_eq!(
            (dw.groups, dw.layer.channels, dw.layer.num_filters),
            (32, 1, 1)
        );
        assert_eq!(dw.kind, "dwconv");
        assert_eq!(lowered[4].layer.filter_h, 8);
    }
}
