//! Fake quantization: the engine's fixed-point scheme ([`crate::quant`])
//! expressed on f32 values that lie on the codes' grid, so that training
//! sees exactly the numbers the engine computes and gradients pass straight
//! through the rounding.
//!
//! A value on the grid of a [`Format`] is `code * 2^-frac`; scaling by a
//! power of two is exact in f32, so `value / step` recovers the integer code
//! bit for bit (this is how FTT hands codes to the fault injectors). Sums of
//! products of 8-bit codes stay exact in f32 while the accumulator magnitude
//! is below 2^24 (every shipped model's layers: `n * 127 * 128 < 2^24` for
//! `n <= 1024` MACs per output).
//!
//! [`QuantPlan`] mirrors the quantizer's fusion rules (`quant::build`): which
//! graph node's output is requantized, with which node's calibrated format,
//! which conv/linear absorbs which batch norm, and where the feature-fault
//! hook of each conv/linear sits.

use crate::fixed::{max_code, min_code, Format};
use crate::model::{Graph, NodeId, Op};

/// The grid of one format, in f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub format: Format,
    pub step: f32,
    inv: f32,
    lo: f32,
    hi: f32,
}

impl Grid {
    pub fn new(format: Format) -> Grid {
        Grid {
            format,
            step: (2.0f64).powi(-format.frac) as f32,
            inv: (2.0f64).powi(format.frac) as f32,
            lo: min_code(format.bits) as f32,
            hi: max_code(format.bits) as f32,
        }
    }
    /// Requantize: round to the grid with ties towards +inf, then saturate
    /// (the engine's `requantize`, for an `x` that is exact in a finer grid).
    #[inline]
    pub fn requant(&self, x: f32) -> f32 {
        floor(x * self.inv + 0.5).clamp(self.lo, self.hi) * self.step
    }
    /// Round to the grid with ties towards +inf, no saturation (the
    /// rescaling of each input of an add).
    #[inline]
    pub fn round(&self, x: f32) -> f32 {
        floor(x * self.inv + 0.5) * self.step
    }
    /// Saturate a value already on the grid.
    #[inline]
    pub fn saturate(&self, x: f32) -> f32 {
        x.clamp(self.lo * self.step, self.hi * self.step)
    }
    /// The integer code of a value on the grid.
    #[inline]
    pub fn code(&self, x: f32) -> i32 {
        (x * self.inv) as i32
    }
    /// The value of a code.
    #[inline]
    pub fn value(&self, code: i32) -> f32 {
        code as f32 * self.step
    }
    /// True if `x` (on the grid) is the largest or smallest code: the
    /// straight-through gradient is blocked there (the clamp was active).
    #[inline]
    pub fn at_limit(&self, x: f32) -> bool {
        let c = x * self.inv;
        c <= self.lo || c >= self.hi
    }
}

/// `x.floor()` without the libm call (`f32::floor` is a function call
/// unless SSE4.1 is enabled at compile time, and requantization runs on
/// every activation). Exact for |x| < 2^31; larger values saturate, which
/// the callers' clamps to the code range make harmless.
#[inline]
pub fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// Where the engine quantizes, per graph node (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantPlan {
    /// For a conv/linear: the batch norm folded into it (its sole consumer).
    pub folded_bn: Vec<Option<NodeId>>,
    /// For a batch norm folded into a conv/linear: that conv/linear.
    pub folded_into: Vec<Option<NodeId>>,
    /// The node's output is requantized (to its own calibrated format):
    /// the pre-activation of a MAC layer, add, concat, standalone BN, input.
    pub requantized: Vec<bool>,
    /// For the pre-activation node of a MAC layer (the conv/linear itself or
    /// its folded BN): the conv/linear whose feature-fault hook this is.
    pub fault_site: Vec<Option<NodeId>>,
    /// The node whose calibrated range sets this node's output format.
    pub format_of: Vec<NodeId>,
    /// For the node whose output the engine keeps as a MAC layer's stored
    /// codes (its fused ReLU/ReLU6, else its pre-activation node): that
    /// conv/linear (the hook point of its output-buffer flips).
    pub stored_of: Vec<Option<NodeId>>,
}

impl QuantPlan {
    pub fn new(graph: &Graph) -> QuantPlan {
        let n = graph.nodes.len();
        let mut consumers: Vec<Vec<NodeId>> = vec![vec![]; n];
        for (id, node) in graph.nodes.iter().enumerate() {
            for &i in &node.inputs {
                consumers[i].push(id);
            }
        }
        let mut plan = QuantPlan {
            folded_bn: vec![None; n],
            folded_into: vec![None; n],
            requantized: vec![false; n],
            fault_site: vec![None; n],
            format_of: (0..n).collect(),
            stored_of: vec![None; n],
        };
        for (id, node) in graph.nodes.iter().enumerate() {
            match &node.op {
                Op::Input | Op::Add | Op::Concat => plan.requantized[id] = true,
                Op::Conv2d { .. } | Op::Linear { .. } => {
                    let mut pre = id;
                    if let [only] = consumers[id].as_slice() {
                        if matches!(graph.nodes[*only].op, Op::BatchNorm { .. }) {
                            plan.folded_bn[id] = Some(*only);
                            plan.folded_into[*only] = Some(id);
                            pre = *only;
                        }
                    }
                    plan.requantized[pre] = true;
                    plan.fault_site[pre] = Some(id);
                    plan.format_of[id] = pre;
                    // the engine fuses a ReLU/ReLU6 that is the sole consumer
                    let stored = match consumers[pre].as_slice() {
                        [only] if matches!(graph.nodes[*only].op, Op::Relu | Op::Relu6) => *only,
                        _ => pre,
                    };
                    plan.stored_of[stored] = Some(id);
                }
                Op::BatchNorm { .. } => {
                    // folded BNs were marked by their conv; a standalone BN
                    // is requantized to its own format
                    if plan.folded_into[id].is_none() {
                        plan.requantized[id] = true;
                    }
                }
                _ => plan.format_of[id] = plan.format_of[node.inputs[0]],
            }
        }
        plan
    }

    /// Output format of every node from the calibrated ranges (max|x| per
    /// graph node), as `quant::build` assigns them.
    pub fn formats(&self, ranges: &[f32], act_bits: u8) -> Vec<Format> {
        self.format_of
            .iter()
            .map(|&src| Format::for_max_abs(ranges[src], act_bits))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_matches_std() {
        for x in [
            -3.5f32, -3.0, -0.5, -0.0, 0.0, 0.25, 1.0, 2.75, 1e9, -1e9, 8388607.5,
        ] {
            assert_eq!(floor(x), x.floor(), "{x}");
        }
    }

    #[test]
    fn requant_ties_up_and_saturates() {
        let g = Grid::new(Format { bits: 8, frac: 1 });
        assert_eq!(g.requant(0.25), 0.5); // 0.5 code -> 1
        assert_eq!(g.requant(-0.25), 0.0); // -0.5 code -> 0
        assert_eq!(g.requant(-0.75), -0.5); // -1.5 -> -1
        assert_eq!(g.requant(1000.0), 63.5);
        assert_eq!(g.requant(-1000.0), -64.0);
        assert_eq!(g.code(-64.0), -128);
        assert!(g.at_limit(63.5) && !g.at_limit(63.0));
        for c in -300i64..300 {
            for s in 1..4 {
                let fine = Grid::new(Format {
                    bits: 16,
                    frac: 1 + s,
                });
                let x = fine.value(c as i32);
                assert_eq!(
                    g.code(g.requant(x)) as i64,
                    crate::fixed::requantize(c, 1 + s, 1, 8),
                    "{c} >> {s}"
                );
            }
        }
    }
}
