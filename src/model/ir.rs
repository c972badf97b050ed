//! The network IR: a directed acyclic graph of [`Node`]s in topological
//! order, each holding one [`Op`], the ids of its inputs and its inferred
//! output [`Shape`] (per image, channels x height x width).
//!
//! Everything that runs or analyses a network (quantizer, engines, timing,
//! fault models, training) walks `Graph::nodes` in order. Parameters are
//! named `"{node.name}.{tensor}"` (see [`Op::param_shapes`]).

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// Per-image tensor shape (channels, height, width). Linear layers use
/// `h = w = 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(c: usize, h: usize, w: usize) -> Shape {
        Shape { c, h, w }
    }
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// One operation. Spatial parameters are (height, width) pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The network input (exactly one, node 0).
    Input,
    /// 2-D convolution, zero padding. Weight `[out, in/groups, kh, kw]`,
    /// optional bias `[out]`.
    Conv2d {
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        bias: bool,
    },
    /// Batch normalisation (inference form, folded into the preceding conv by
    /// the quantizer). Tensors `weight`, `bias`, `running_mean`, `running_var`.
    BatchNorm {
        eps: f32,
    },
    Relu,
    /// min(max(x, 0), 6)
    Relu6,
    /// Max pooling; padded positions never win.
    MaxPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    /// Average pooling over the valid (non-padded) positions only
    /// (count_include_pad = false, as DARTS cells use it).
    AvgPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    /// Mean over height and width -> c x 1 x 1.
    GlobalAvgPool,
    /// Element-wise sum of two or more inputs of equal shape.
    Add,
    /// Channel concatenation of the inputs (equal h, w).
    Concat,
    /// c x h x w -> (c*h*w) x 1 x 1 (channel-major, as PyTorch flattens NCHW).
    Flatten,
    /// Fully connected. Weight `[out, in]`, optional bias `[out]`; input must
    /// be c x 1 x 1.
    Linear {
        out_features: usize,
        bias: bool,
    },
    /// Drop the first `top` rows and `left` columns (the shifted branch of
    /// DARTS' factorized reduce: `x[:, :, 1:, 1:]`).
    Crop {
        top: usize,
        left: usize,
    },
    /// The `none` op of the cell search space: zeros of the input's channel
    /// count, spatially subsampled by `stride`.
    Zero {
        stride: usize,
    },
}

impl Op {
    /// Short lowercase op name for tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv2d {
                groups,
                out_channels,
                ..
            } => {
                if *groups > 1 && *groups == *out_channels {
                    "dwconv"
                } else {
                    "conv"
                }
            }
            Op::BatchNorm { .. } => "bn",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::GlobalAvgPool => "gap",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::Crop { .. } => "crop",
            Op::Zero { .. } => "zero",
        }
    }

    /// True for the layers that multiply by weights (conv, linear): the
    /// layers accelerators map and fault models target.
    pub fn is_mac_layer(&self) -> bool {
        matches!(self, Op::Conv2d { .. } | Op::Linear { .. })
    }

    /// Parameter tensors of this op given its (first) input shape, as
    /// `(suffix, shape)`; the full name is `"{node}.{suffix}"`.
    pub fn param_shapes(&self, input: Shape) -> Vec<(&'static str, Vec<usize>)> {
        match self {
            Op::Conv2d {
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let mut v = vec![(
                    "weight",
                    vec![*out_channels, input.c / groups, kernel.0, kernel.1],
                )];
                if *bias {
                    v.push(("bias", vec![*out_channels]));
                }
                v
            }
            Op::Linear { out_features, bias } => {
                let mut v = vec![("weight", vec![*out_features, input.numel()])];
                if *bias {
                    v.push(("bias", vec![*out_features]));
                }
                v
            }
            Op::BatchNorm { .. } => vec![
                ("weight", vec![input.c]),
                ("bias", vec![input.c]),
                ("running_mean", vec![input.c]),
                ("running_var", vec![input.c]),
            ],
            _ => vec![],
        }
    }
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique, stable name; parameter tensors are prefixed with it.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Output shape per image (filled by shape inference).
    pub shape: Shape,
}

/// A network: nodes in topological order, node 0 is the input, the last
/// node is the output (logits, `num_classes x 1 x 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
}

fn conv_out(size: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    let padded = size + 2 * p;
    if padded < eff || s == 0 {
        return None;
    }
    Some((padded - eff) / s + 1)
}

/// Builds a graph node by node, inferring shapes as it goes.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    /// Start a graph whose input has `shape`.
    pub fn new(name: &str, input: Shape) -> GraphBuilder {
        GraphBuilder {
            graph: Graph {
                name: name.to_string(),
                nodes: vec![Node {
                    name: "input".into(),
                    op: Op::Input,
                    inputs: vec![],
                    shape: input,
                }],
            },
        }
    }

    /// The input node.
    pub fn input(&self) -> NodeId {
        0
    }

    /// Shape of an existing node.
    pub fn shape(&self, id: NodeId) -> Shape {
        self.graph.nodes[id].shape
    }

    /// Append a node; returns its id, or an error naming the node if the op
    /// does not fit its inputs.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
    ) -> Result<NodeId, ModelError> {
        let name = name.into();
        if self.graph.nodes.iter().any(|n| n.name == name) {
            return Err(ModelError::Graph(format!("duplicate node name `{name}`")));
        }
        let shapes: Vec<Shape> = inputs
            .iter()
            .map(|&i| {
                self.graph.nodes.get(i).map(|n| n.shape).ok_or_else(|| {
                    ModelError::Graph(format!("node `{name}`: input id {i} does not exist"))
                })
            })
            .collect::<Result<_, _>>()?;
        let shape = infer_shape(&name, &op, &shapes)?;
        self.graph.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            shape,
        });
        Ok(self.graph.nodes.len() - 1)
    }

    /// Finish: the last node added is the output.
    pub fn finish(self) -> Graph {
        self.graph
    }
}

/// Output shape of `op` applied to inputs of `shapes`.
pub fn infer_shape(name: &str, op: &Op, shapes: &[Shape]) -> Result<Shape, ModelError> {
    let err = |msg: String| ModelError::Graph(format!("node `{name}` ({}): {msg}", op.kind()));
    let arity = |n: usize| -> Result<Shape, ModelError> {
        if shapes.len() != n {
            Err(err(format!("expects {n} input(s), got {}", shapes.len())))
        } else {
            Ok(shapes[0])
        }
    };
    match op {
        Op::Input => Err(err("only node 0 may be the input".into())),
        Op::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            ..
        } => {
            let s = arity(1)?;
            if *groups == 0 || s.c % groups != 0 || out_channels % groups != 0 {
                return Err(err(format!(
                    "groups {groups} must divide in_channels {} and out_channels {out_channels}",
                    s.c
                )));
            }
            if kernel.0 == 0
                || kernel.1 == 0
                || dilation.0 == 0
                || dilation.1 == 0
                || *out_channels == 0
            {
                return Err(err("kernel, dilation and out_channels must be >= 1".into()));
            }
            let h = conv_out(s.h, kernel.0, stride.0, padding.0, dilation.0);
            let w = conv_out(s.w, kernel.1, stride.1, padding.1, dilation.1);
            match (h, w) {
                (Some(h), Some(w)) => Ok(Shape::new(*out_channels, h, w)),
                _ => Err(err(format!("kernel does not fit input {s}"))),
            }
        }
        Op::BatchNorm { .. } | Op::Relu | Op::Relu6 => arity(1),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool {
            kernel,
            stride,
            padding,
        } => {
            let s = arity(1)?;
            if padding.0 * 2 > kernel.0 || padding.1 * 2 > kernel.1 {
                return Err(err("padding must be at most half the kernel".into()));
            }
            let h = conv_out(s.h, kernel.0, stride.0, padding.0, 1);
            let w = conv_out(s.w, kernel.1, stride.1, padding.1, 1);
            match (h, w) {
                (Some(h), Some(w)) => Ok(Shape::new(s.c, h, w)),
                _ => Err(err(format!("pooling window does not fit input {s}"))),
            }
        }
        Op::GlobalAvgPool => Ok(Shape::new(arity(1)?.c, 1, 1)),
        Op::Add => {
            if shapes.len() < 2 {
                return Err(err("expects at least 2 inputs".into()));
            }
            if shapes.iter().any(|s| *s != shapes[0]) {
                return Err(err(format!("input shapes differ: {shapes:?}")));
            }
            Ok(shapes[0])
        }
        Op::Concat => {
            if shapes.is_empty() {
                return Err(err("expects at least 1 input".into()));
            }
            if shapes
                .iter()
                .any(|s| s.h != shapes[0].h || s.w != shapes[0].w)
            {
                return Err(err(format!("spatial sizes differ: {shapes:?}")));
            }
            Ok(Shape::new(
                shapes.iter().map(|s| s.c).sum(),
                shapes[0].h,
                shapes[0].w,
            ))
        }
        Op::Flatten => Ok(Shape::new(arity(1)?.numel(), 1, 1)),
        Op::Linear { out_features, .. } => {
            let s = arity(1)?;
            if s.h != 1 || s.w != 1 {
                return Err(err(format!("input must be Cx1x1 (flatten first), got {s}")));
            }
            Ok(Shape::new(*out_features, 1, 1))
        }
        Op::Crop { top, left } => {
            let s = arity(1)?;
            if *top >= s.h || *left >= s.w {
                return Err(err(format!("crop {top},{left} removes all of {s}")));
            }
            Ok(Shape::new(s.c, s.h - top, s.w - left))
        }
        Op::Zero { stride } => {
            let s = arity(1)?;
            if *stride == 0 {
                return Err(err("stride must be >= 1".into()));
            }
            Ok(Shape::new(
                s.c,
                s.h.div_ceil(*stride),
                s.w.div_ceil(*stride),
            ))
        }
    }
}

impl Graph {
    /// Input shape (node 0).
    pub fn input_shape(&self) -> Shape {
        self.nodes[0].shape
    }

    /// Output shape (last node).
    pub fn output_shape(&self) -> Shape {
        self.nodes.last().expect("graph has an input node").shape
    }

    /// Shape of the first input of node `id` (the operand of a conv/linear).
    pub fn input_shape_of(&self, id: NodeId) -> Shape {
        self.nodes[self.nodes[id].inputs[0]].shape
    }

    /// Multiply-accumulates per image of node `id` (0 for non-MAC layers).
    pub fn macs(&self, id: NodeId) -> u64 {
        let n = &self.nodes[id];
        match &n.op {
            Op::Conv2d { kernel, groups, .. } => {
                let cin = self.input_shape_of(id).c / groups;
                (n.shape.numel() * cin * kernel.0 * kernel.1) as u64
            }
            Op::Linear { out_features, .. } => {
                (self.input_shape_of(id).numel() * out_features) as u64
            }
            _ => 0,
        }
    }

    /// MACs per output element of a conv/linear node: `C_in/groups*kh*kw`
    /// (the `n` of the MiBB model).
    pub fn macs_per_output(&self, id: NodeId) -> usize {
        let n = &self.nodes[id];
        match &n.op {
            Op::Conv2d { kernel, groups, .. } => {
                self.input_shape_of(id).c / groups * kernel.0 * kernel.1
            }
            Op::Linear { .. } => self.input_shape_of(id).numel(),
            _ => 0,
        }
    }

    /// Kernel taps `kh*kw` of conv `id` (1 for linear and other nodes).
    pub fn mac_taps(&self, id: NodeId) -> usize {
        match &self.nodes[id].op {
            Op::Conv2d { kernel, .. } => kernel.0 * kernel.1,
            _ => 1,
        }
    }

    /// Groups of conv `id` (1 for linear and other nodes).
    pub fn mac_groups(&self, id: NodeId) -> usize {
        match &self.nodes[id].op {
            Op::Conv2d { groups, .. } => *groups,
            _ => 1,
        }
    }

    /// Parameter tensors of node `id`: `(full name, shape)`.
    pub fn params_of(&self, id: NodeId) -> Vec<(String, Vec<usize>)> {
        let n = &self.nodes[id];
        if n.inputs.is_empty() {
            return vec![];
        }
        n.op.param_shapes(self.input_shape_of(id))
            .into_iter()
            .map(|(s, shape)| (format!("{}.{}", n.name, s), shape))
            .collect()
    }

    /// All parameter tensors in node order.
    pub fn all_params(&self) -> Vec<(String, Vec<usize>)> {
        (0..self.nodes.len())
            .flat_map(|i| self.params_of(i))
            .collect()
    }

    /// Total MACs per image.
    pub fn total_macs(&self) -> u64 {
        (0..self.nodes.len()).map(|i| self.macs(i)).sum()
    }

    /// Total number of parameters.
    pub fn total_params(&self) -> u64 {
        self.all_params()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum()
    }

    /// Ids of the conv/linear nodes, in order.
    pub fn mac_layers(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].op.is_mac_layer())
            .collect()
    }

    /// Find a node by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(out: usize, k: usize, s: usize, p: usize, g: usize) -> Op {
        Op::Conv2d {
            out_channels: out,
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            dilation: (1, 1),
            groups: g,
            bias: false,
        }
    }

    #[test]
    fn shapes_and_macs() {
        let mut b = GraphBuilder::new("t", Shape::new(1, 28, 28));
        let c1 = b.add("c1", conv(16, 3, 1, 1, 1), &[0]).unwrap();
        let c2 = b.add("c2", conv(16, 3, 2, 1, 16), &[c1]).unwrap();
        let g = b.add("gap", Op::GlobalAvgPool, &[c2]).unwrap();
        let f = b.add("flat", Op::Flatten, &[g]).unwrap();
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
        assert_eq!(g.nodes[c2].shape, Shape::new(16, 14, 14));
        assert_eq!(g.macs(c1), 16 * 28 * 28 * 9);
        assert_eq!(g.macs_per_output(c2), 9);
        assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
        assert_eq!(g.total_params(), 16 * 9 + 16 * 9 + 160 + 10);
    }

    #[test]
    fn bad_groups_is_an_error() {
        let mut b = GraphBuilder::new("t", Shape::new(3, 8, 8));
        let e = b.add("c", conv(16, 3, 1, 1, 2), &[0]).unwrap_err();
        assert!(e.to_string().contains("groups"), "{e}");
    }
}
