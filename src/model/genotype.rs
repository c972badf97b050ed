//! The FTT-NAS cell search space (DARTS/ENAS style) and the network built
//! from a genotype.
//!
//! A genotype names, for a normal cell and a reduce cell, a list of edges
//! `(op, from, to)`. Nodes 0 and 1 are the cell's two inputs (the outputs of
//! the previous two cells, preprocessed to C channels); nodes 2.. are the
//! intermediate nodes, each the sum of the ops on its incoming edges; the
//! cell's output is the channel concatenation of all intermediate nodes
//! (4 in the published search space, so 4C channels). In a reduce cell every
//! op reading a cell input (node 0 or 1) has stride 2 and C doubles.
//!
//! The network (DARTS' `NetworkCIFAR` without auxiliary head or drop-path):
//! 3x3 stem conv to `stem_multiplier * C` + BN, `layers` cells with reduce
//! cells at `layers / 3` and `2 * layers / 3`, global average pooling,
//! flatten, linear classifier.
//!
//! Op definitions follow DARTS' `operations.py` (ReLU first, conv without
//! bias, BN last). `conv_1x1` (a weight-fault-search op not in DARTS) is
//! ReLU, 1x1 conv (with the edge's stride), BN: the same ReLU-conv-BN form
//! as `relu_conv_bn_kxk`, so that every parametrised op has one conv that a
//! fault model can reach before its BN.
//!
//! `none` is an [`Op::Zero`] node (zeros with the input's channels,
//! subsampled by the edge's stride, so its shape equals the other ops'
//! outputs) summed like any other op: a node whose edges are all `none`
//! outputs zeros of the right shape. A node with a single edge is that op's
//! output (no one-input `Add`), and `skip_connect` at stride 1 adds no node.
//!
//! Names (parameters are keyed by them): `stem.conv`, `stem.bn`,
//! `cells.3.preprocess0.conv`, `cells.3.node2.op0.dw1` (edge 0 into node 2),
//! `cells.3.node2` (the sum), `cells.3.concat`, `global_pooling`,
//! `classifier`. Edges into a node are numbered `op0`, `op1`, ... in genotype
//! order.

use serde::{Deserialize, Serialize};

use super::blocks::{bn, check_num_classes, conv, depthwise, gap_classifier};
use super::{Graph, GraphBuilder, ModelError, NodeId, Op, Shape};

/// One candidate operation on a cell edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CellOp {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "max_pool_3x3")]
    MaxPool3x3,
    #[serde(rename = "avg_pool_3x3")]
    AvgPool3x3,
    #[serde(rename = "skip_connect")]
    SkipConnect,
    #[serde(rename = "sep_conv_3x3")]
    SepConv3x3,
    #[serde(rename = "sep_conv_5x5")]
    SepConv5x5,
    #[serde(rename = "dil_conv_3x3")]
    DilConv3x3,
    #[serde(rename = "dil_conv_5x5")]
    DilConv5x5,
    #[serde(rename = "relu_conv_bn_3x3")]
    ReluConvBn3x3,
    #[serde(rename = "relu_conv_bn_5x5")]
    ReluConvBn5x5,
    #[serde(rename = "conv_1x1")]
    Conv1x1,
}

impl CellOp {
    /// Every op, in search-space order.
    pub const ALL: [CellOp; 11] = [
        CellOp::None,
        CellOp::MaxPool3x3,
        CellOp::AvgPool3x3,
        CellOp::SkipConnect,
        CellOp::SepConv3x3,
        CellOp::SepConv5x5,
        CellOp::DilConv3x3,
        CellOp::DilConv5x5,
        CellOp::ReluConvBn3x3,
        CellOp::ReluConvBn5x5,
        CellOp::Conv1x1,
    ];

    /// The ops of the feature-fault search (FTT-NAS section 5).
    pub const FEATURE_FAULT_SEARCH: [CellOp; 8] = [
        CellOp::None,
        CellOp::MaxPool3x3,
        CellOp::AvgPool3x3,
        CellOp::SkipConnect,
        CellOp::SepConv3x3,
        CellOp::SepConv5x5,
        CellOp::DilConv3x3,
        CellOp::DilConv5x5,
    ];

    /// The ops of the weight-fault search: the feature-fault ops plus the
    /// plain ReLU-conv-BN ops.
    pub const WEIGHT_FAULT_SEARCH: [CellOp; 11] = CellOp::ALL;

    /// The name used in genotypes and model files.
    pub fn name(self) -> &'static str {
        match self {
            CellOp::None => "none",
            CellOp::MaxPool3x3 => "max_pool_3x3",
            CellOp::AvgPool3x3 => "avg_pool_3x3",
            CellOp::SkipConnect => "skip_connect",
            CellOp::SepConv3x3 => "sep_conv_3x3",
            CellOp::SepConv5x5 => "sep_conv_5x5",
            CellOp::DilConv3x3 => "dil_conv_3x3",
            CellOp::DilConv5x5 => "dil_conv_5x5",
            CellOp::ReluConvBn3x3 => "relu_conv_bn_3x3",
            CellOp::ReluConvBn5x5 => "relu_conv_bn_5x5",
            CellOp::Conv1x1 => "conv_1x1",
        }
    }

    /// Parse a genotype op name.
    pub fn from_name(name: &str) -> Option<CellOp> {
        CellOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl std::fmt::Display for CellOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One edge of a cell: `op` applied to node `from`, summed into node `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Edge {
    pub op: CellOp,
    pub from: usize,
    pub to: usize,
}

impl Edge {
    pub const fn new(op: CellOp, from: usize, to: usize) -> Edge {
        Edge { op, from, to }
    }
}

/// The two cell types of a network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Genotype {
    pub normal: Vec<Edge>,
    pub reduce: Vec<Edge>,
}

/// A structural problem in one cell's edge list. `edge` is the index of the
/// offending edge in the list, when one edge is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub edge: Option<usize>,
    pub msg: String,
}

/// Check one cell's edges and return its number of intermediate nodes.
///
/// Rules: at least one edge; every `to` is an intermediate node (>= 2);
/// every `from` is an earlier node (`from < to`); intermediate nodes are
/// numbered 2..=max(to) without gaps, each with at least one incoming edge.
pub fn check_cell(edges: &[Edge]) -> Result<usize, CellError> {
    if edges.is_empty() {
        return Err(CellError {
            edge: None,
            msg: "a cell needs at least one edge".into(),
        });
    }
    for (i, e) in edges.iter().enumerate() {
        if e.to < 2 {
            return Err(CellError {
                edge: Some(i),
                msg: format!(
                    "edge ({}, {}, {}): `to` must be an intermediate node (>= 2; nodes 0 and 1 are the cell inputs)",
                    e.op, e.from, e.to
                ),
            });
        }
        if e.from >= e.to {
            return Err(CellError {
                edge: Some(i),
                msg: format!(
                    "edge ({}, {}, {}): `from` must be an earlier node than `to` (0..={})",
                    e.op,
                    e.from,
                    e.to,
                    e.to - 1
                ),
            });
        }
    }
    let last = edges.iter().map(|e| e.to).max().unwrap_or(2);
    for node in 2..=last {
        if !edges.iter().any(|e| e.to == node) {
            return Err(CellError {
                edge: None,
                msg: format!(
                    "intermediate node {node} has no incoming edge (nodes 2..={last} are used, each needs at least one)"
                ),
            });
        }
    }
    Ok(last - 1)
}

impl Genotype {
    /// The published W-FTT-Net genotype (FTT-NAS, weight-fault search).
    pub fn w_ftt_net() -> Genotype {
        use CellOp::*;
        Genotype {
            normal: vec![
                Edge::new(ReluConvBn3x3, 0, 2),
                Edge::new(ReluConvBn5x5, 0, 2),
                Edge::new(Conv1x1, 1, 3),
                Edge::new(DilConv3x3, 1, 3),
                Edge::new(SepConv3x3, 1, 4),
                Edge::new(SepConv3x3, 0, 4),
                Edge::new(MaxPool3x3, 2, 5),
                Edge::new(ReluConvBn5x5, 1, 5),
            ],
            reduce: vec![
                Edge::new(SkipConnect, 0, 2),
                Edge::new(ReluConvBn5x5, 1, 2),
                Edge::new(DilConv3x3, 2, 3),
                Edge::new(SepConv3x3, 0, 3),
                Edge::new(MaxPool3x3, 1, 4),
                Edge::new(Conv1x1, 3, 4),
                Edge::new(DilConv3x3, 4, 5),
                Edge::new(SkipConnect, 2, 5),
            ],
        }
    }
}

/// Hyper-parameters of a cell network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellNetConfig {
    /// C of the first cells (doubled at each reduce cell).
    pub init_channels: usize,
    /// Number of cells.
    pub layers: usize,
    /// The stem outputs `stem_multiplier * init_channels` channels.
    pub stem_multiplier: usize,
    pub genotype: Genotype,
    pub num_classes: usize,
}

/// Positions of the reduce cells among `layers` cells.
pub fn reduce_positions(layers: usize) -> [usize; 2] {
    [layers / 3, 2 * layers / 3]
}

/// Build the cell network of `cfg` for inputs of `input`.
pub fn cell_network(cfg: &CellNetConfig, input: Shape) -> Result<Graph, ModelError> {
    check_num_classes(cfg.num_classes)?;
    for (key, v) in [
        ("init_channels", cfg.init_channels),
        ("layers", cfg.layers),
        ("stem_multiplier", cfg.stem_multiplier),
    ] {
        if v == 0 {
            return Err(ModelError::Graph(format!(
                "cell network: {key} must be >= 1"
            )));
        }
    }
    let cell_err = |kind: &str, e: CellError| {
        let at = e.edge.map(|i| format!(" edge {i}:")).unwrap_or_default();
        ModelError::Graph(format!("{kind} cell:{at} {}", e.msg))
    };
    let normal_steps = check_cell(&cfg.genotype.normal).map_err(|e| cell_err("normal", e))?;
    let reduce_steps = check_cell(&cfg.genotype.reduce).map_err(|e| cell_err("reduce", e))?;

    let mut b = GraphBuilder::new("cells", input);
    let mut c = cfg.init_channels;
    let x = b.input();
    let x = b.add("stem.conv", conv(cfg.stem_multiplier * c, 3, 1, 1), &[x])?;
    let stem = b.add("stem.bn", bn(), &[x])?;
    let (mut s0, mut s1) = (stem, stem);
    let reductions = reduce_positions(cfg.layers);
    let mut reduction_prev = false;
    for i in 0..cfg.layers {
        let reduction = reductions.contains(&i);
        if reduction {
            c *= 2;
        }
        let (edges, steps) = if reduction {
            (&cfg.genotype.reduce, reduce_steps)
        } else {
            (&cfg.genotype.normal, normal_steps)
        };
        let cell = CellSpec {
            prefix: format!("cells.{i}"),
            edges,
            steps,
            channels: c,
            reduction,
            reduction_prev,
        };
        let out = cell.build(&mut b, s0, s1)?;
        s0 = s1;
        s1 = out;
        reduction_prev = reduction;
    }
    gap_classifier(&mut b, s1, "global_pooling", "classifier", cfg.num_classes)?;
    Ok(b.finish())
}

/// One cell to add to the graph.
struct CellSpec<'a> {
    prefix: String,
    edges: &'a [Edge],
    steps: usize,
    channels: usize,
    reduction: bool,
    reduction_prev: bool,
}

impl CellSpec<'_> {
    fn build(&self, b: &mut GraphBuilder, s0: NodeId, s1: NodeId) -> Result<NodeId, ModelError> {
        let p = &self.prefix;
        let c = self.channels;
        let pre0 = if self.reduction_prev {
            factorized_reduce(b, &format!("{p}.preprocess0"), s0, c)?
        } else {
            relu_conv_bn(b, &format!("{p}.preprocess0"), s0, c, 1, 1)?
        };
        let pre1 = relu_conv_bn(b, &format!("{p}.preprocess1"), s1, c, 1, 1)?;
        let mut states = vec![pre0, pre1];
        for node in 2..2 + self.steps {
            let mut terms = Vec::new();
            for (k, e) in self.edges.iter().filter(|e| e.to == node).enumerate() {
                let stride = if self.reduction && e.from < 2 { 2 } else { 1 };
                let name = format!("{p}.node{node}.op{k}");
                terms.push(cell_op(b, &name, e.op, states[e.from], c, stride)?);
            }
            let out = if terms.len() == 1 {
                terms[0]
            } else {
                b.add(format!("{p}.node{node}"), Op::Add, &terms)?
            };
            states.push(out);
        }
        b.add(format!("{p}.concat"), Op::Concat, &states[2..])
    }
}

/// Add the nodes of `op` (C -> C channels) reading `x`; returns its output.
/// `skip_connect` at stride 1 adds no node and returns `x` itself.
fn cell_op(
    b: &mut GraphBuilder,
    name: &str,
    op: CellOp,
    x: NodeId,
    c: usize,
    stride: usize,
) -> Result<NodeId, ModelError> {
    let s = (stride, stride);
    match op {
        CellOp::None => b.add(name, Op::Zero { stride }, &[x]),
        CellOp::MaxPool3x3 => b.add(
            name,
            Op::MaxPool {
                kernel: (3, 3),
                stride: s,
                padding: (1, 1),
            },
            &[x],
        ),
        CellOp::AvgPool3x3 => b.add(
            name,
            Op::AvgPool {
                kernel: (3, 3),
                stride: s,
                padding: (1, 1),
            },
            &[x],
        ),
        CellOp::SkipConnect if stride == 1 => Ok(x),
        CellOp::SkipConnect => factorized_reduce(b, name, x, c),
        CellOp::SepConv3x3 => sep_conv(b, name, x, c, 3, stride),
        CellOp::SepConv5x5 => sep_conv(b, name, x, c, 5, stride),
        CellOp::DilConv3x3 => dil_conv(b, name, x, c, 3, stride),
        CellOp::DilConv5x5 => dil_conv(b, name, x, c, 5, stride),
        CellOp::ReluConvBn3x3 => relu_conv_bn(b, name, x, c, 3, stride),
        CellOp::ReluConvBn5x5 => relu_conv_bn(b, name, x, c, 5, stride),
        CellOp::Conv1x1 => relu_conv_bn(b, name, x, c, 1, stride),
    }
}

/// ReLU, k x k conv (padding k/2) to `c_out`, BN: `{p}.relu`, `{p}.conv`,
/// `{p}.bn`.
fn relu_conv_bn(
    b: &mut GraphBuilder,
    p: &str,
    x: NodeId,
    c_out: usize,
    k: usize,
    stride: usize,
) -> Result<NodeId, ModelError> {
    let y = b.add(format!("{p}.relu"), Op::Relu, &[x])?;
    let y = b.add(format!("{p}.conv"), conv(c_out, k, stride, k / 2), &[y])?;
    b.add(format!("{p}.bn"), bn(), &[y])
}

/// DARTS' SepConv: twice [ReLU, depthwise k x k, pointwise 1x1, BN]; only
/// the first depthwise conv has the stride.
fn sep_conv(
    b: &mut GraphBuilder,
    p: &str,
    x: NodeId,
    c: usize,
    k: usize,
    stride: usize,
) -> Result<NodeId, ModelError> {
    let mut y = x;
    for (i, s) in [(1, stride), (2, 1)] {
        let c_in = b.shape(y).c;
        y = b.add(format!("{p}.relu{i}"), Op::Relu, &[y])?;
        y = b.add(format!("{p}.dw{i}"), depthwise(c_in, k, s, k / 2, 1), &[y])?;
        y = b.add(format!("{p}.pw{i}"), conv(c, 1, 1, 0), &[y])?;
        y = b.add(format!("{p}.bn{i}"), bn(), &[y])?;
    }
    Ok(y)
}

/// DARTS' DilConv: ReLU, depthwise k x k with dilation 2 (padding k-1 keeps
/// the size), pointwise 1x1, BN.
fn dil_conv(
    b: &mut GraphBuilder,
    p: &str,
    x: NodeId,
    c: usize,
    k: usize,
    stride: usize,
) -> Result<NodeId, ModelError> {
    let c_in = b.shape(x).c;
    let y = b.add(format!("{p}.relu"), Op::Relu, &[x])?;
    let y = b.add(
        format!("{p}.dw"),
        depthwise(c_in, k, stride, k - 1, 2),
        &[y],
    )?;
    let y = b.add(format!("{p}.pw"), conv(c, 1, 1, 0), &[y])?;
    b.add(format!("{p}.bn"), bn(), &[y])
}

/// DARTS' FactorizedReduce (halves height and width): ReLU, then two 1x1
/// stride-2 convs of `c_out / 2` channels, the second on the input shifted
/// by one row and column (`x[:, :, 1:, 1:]`), concatenated, BN. Nodes
/// `{p}.relu`, `{p}.conv_1`, `{p}.crop`, `{p}.conv_2`, `{p}.concat`, `{p}.bn`.
fn factorized_reduce(
    b: &mut GraphBuilder,
    p: &str,
    x: NodeId,
    c_out: usize,
) -> Result<NodeId, ModelError> {
    let s = b.shape(x);
    if !c_out.is_multiple_of(2) {
        return Err(ModelError::Graph(format!(
            "`{p}`: factorized reduce needs an even channel count, got {c_out}"
        )));
    }
    if !s.h.is_multiple_of(2) || !s.w.is_multiple_of(2) || s.h < 2 || s.w < 2 {
        return Err(ModelError::Graph(format!(
            "`{p}`: factorized reduce needs an even height and width, got {s} \
             (the input is too small or not a multiple of 4 for this many reduce cells)"
        )));
    }
    let r = b.add(format!("{p}.relu"), Op::Relu, &[x])?;
    let a = b.add(format!("{p}.conv_1"), conv(c_out / 2, 1, 2, 0), &[r])?;
    let shifted = b.add(format!("{p}.crop"), Op::Crop { top: 1, left: 1 }, &[r])?;
    let d = b.add(format!("{p}.conv_2"), conv(c_out / 2, 1, 2, 0), &[shifted])?;
    let cat = b.add(format!("{p}.concat"), Op::Concat, &[a, d])?;
    b.add(format!("{p}.bn"), bn(), &[cat])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(genotype: Genotype, layers: usize) -> CellNetConfig {
        CellNetConfig {
            init_channels: 8,
            layers,
            stem_multiplier: 3,
            genotype,
            num_classes: 10,
        }
    }

    #[test]
    fn op_names_round_trip() {
        for op in CellOp::ALL {
            assert_eq!(CellOp::from_name(op.name()), Some(op));
        }
        assert_eq!(CellOp::from_name("sep_conv_7x7"), None);
    }

    #[test]
    fn check_cell_rules() {
        use CellOp::*;
        assert_eq!(check_cell(&Genotype::w_ftt_net().normal), Ok(4));
        let e = check_cell(&[Edge::new(SkipConnect, 2, 2)]).unwrap_err();
        assert_eq!(e.edge, Some(0));
        let e = check_cell(&[Edge::new(SkipConnect, 0, 1)]).unwrap_err();
        assert_eq!(e.edge, Some(0));
        let e =
            check_cell(&[Edge::new(SkipConnect, 0, 2), Edge::new(SkipConnect, 0, 4)]).unwrap_err();
        assert_eq!(e.edge, Option::None);
        assert!(e.msg.contains("node 3"), "{}", e.msg);
        assert!(check_cell(&[]).is_err());
    }

    #[test]
    fn reduce_positions_for_8_cells() {
        assert_eq!(reduce_positions(8), [2, 5]);
        assert_eq!(reduce_positions(20), [6, 13]);
    }

    #[test]
    fn w_ftt_net_shapes_and_names() {
        let g = cell_network(&net(Genotype::w_ftt_net(), 8), Shape::new(3, 32, 32)).unwrap();
        let shape = |n: &str| g.nodes[g.find(n).unwrap_or_else(|| panic!("{n}"))].shape;
        assert_eq!(shape("stem.bn"), Shape::new(24, 32, 32));
        assert_eq!(shape("cells.0.concat"), Shape::new(32, 32, 32));
        assert_eq!(shape("cells.2.concat"), Shape::new(64, 16, 16));
        // the cell after a reduce cell factorizes its s0 input
        assert_eq!(shape("cells.3.preprocess0.bn"), Shape::new(16, 16, 16));
        assert_eq!(shape("cells.5.concat"), Shape::new(128, 8, 8));
        assert_eq!(shape("cells.7.concat"), Shape::new(128, 8, 8));
        // reduce-cell skip from an input is a factorized reduce
        assert_eq!(shape("cells.2.node2.op0.bn"), Shape::new(16, 16, 16));
        assert_eq!(shape("cells.3.node4.op0.dw1"), Shape::new(16, 16, 16));
        assert_eq!(shape("cells.5.node3.op1.dw1"), Shape::new(32, 8, 8));
        // reduce node 5: dil_conv on node 4 + identity skip from node 2
        let n5 = g.find("cells.2.node5").unwrap();
        assert_eq!(g.nodes[n5].inputs.len(), 2);
        assert_eq!(g.nodes[n5].inputs[1], g.find("cells.2.node2").unwrap());
        assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
    }

    #[test]
    fn none_edges_keep_shapes() {
        use CellOp::*;
        let cell = vec![
            Edge::new(None, 0, 2),
            Edge::new(None, 1, 2),
            Edge::new(None, 2, 3),
            Edge::new(AvgPool3x3, 1, 3),
        ];
        let g = cell_network(
            &net(
                Genotype {
                    normal: cell.clone(),
                    reduce: cell,
                },
                3,
            ),
            Shape::new(1, 28, 28),
        )
        .unwrap();
        let n2 = g.find("cells.1.node2").unwrap();
        assert_eq!(g.nodes[n2].op, Op::Add);
        assert_eq!(g.nodes[n2].shape, Shape::new(16, 14, 14));
        let z = g.find("cells.1.node2.op0").unwrap();
        assert_eq!(g.nodes[z].op, Op::Zero { stride: 2 });
        let z = g.find("cells.1.node3.op0").unwrap();
        assert_eq!(g.nodes[z].op, Op::Zero { stride: 1 });
    }

    #[test]
    fn single_edge_node_has_no_sum() {
        use CellOp::*;
        let cell = vec![Edge::new(SepConv5x5, 0, 2), Edge::new(DilConv5x5, 2, 3)];
        let g = cell_network(
            &net(
                Genotype {
                    normal: cell.clone(),
                    reduce: cell,
                },
                1,
            ),
            Shape::new(3, 32, 32),
        )
        .unwrap();
        assert!(g.find("cells.0.node2").is_none());
        let cat = g.find("cells.0.concat").unwrap();
        assert_eq!(g.nodes[cat].shape, Shape::new(32, 16, 16));
    }

    #[test]
    fn odd_size_before_factorized_reduce_is_an_error() {
        // 12 -> 6 -> 3 works; 10 -> 5 cannot be halved by the factorized
        // reduce of the second reduce cell's skip_connect
        let e = cell_network(&net(Genotype::w_ftt_net(), 8), Shape::new(1, 12, 12));
        assert!(e.is_ok(), "{e:?}");
        let e = cell_network(&net(Genotype::w_ftt_net(), 8), Shape::new(1, 10, 10))
            .unwrap_err()
            .to_string();
        assert!(e.contains("even height and width"), "{e}");
    }
}
