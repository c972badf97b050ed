//! Builders against the well-known layer counts, parameter counts and MACs.

use ftnas::cli::model::trainable_params;
use ftnas::model::genotype::{cell_network, CellNetConfig, CellOp, Edge, Genotype};
use ftnas::model::mobilenetv2::mobilenetv2;
use ftnas::model::resnet::resnet;
use ftnas::model::{Graph, Op, Shape};

const CIFAR: Shape = Shape::new(3, 32, 32);
const MNIST: Shape = Shape::new(1, 28, 28);

/// Parameters of the 1x1 projection shortcuts (conv + BN weight/bias).
fn projection_params(g: &Graph) -> u64 {
    g.all_params()
        .iter()
        .filter(|(n, _)| n.contains(".downsample.") && !n.contains("running_"))
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum()
}

#[test]
fn resnet20_cifar_matches_the_published_counts() {
    let g = resnet(20, 10, CIFAR).unwrap();
    // 19 convs + 2 projections + fc
    assert_eq!(g.mac_layers().len(), 22);
    assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
    // The paper's option-A ResNet-20 has 269,722 trainable parameters
    // ("0.27M"); the two projection shortcuts add 16*32 + 2*32 and
    // 32*64 + 2*64.
    let proj = projection_params(&g);
    assert_eq!(proj, (16 * 32 + 64) + (32 * 64 + 128));
    assert_eq!(trainable_params(&g), 269_722 + proj);
    // BN running statistics: 2 per BN channel (19 BNs on the main path +
    // 2 on projections: 7*16 + 7*32 + 7*64 channels).
    assert_eq!(
        g.total_params(),
        trainable_params(&g) + 2 * (7 * 16 + 7 * 32 + 7 * 64)
    );
    // The published 40.55 M MACs (option A) plus the projections
    // (16*16*32*16 + 8*8*64*32).
    let proj_macs: u64 = ["layer2.0.downsample.0", "layer3.0.downsample.0"]
        .iter()
        .map(|n| g.macs(g.find(n).unwrap()))
        .sum();
    assert_eq!(proj_macs, 131_072 * 2);
    assert_eq!(g.total_macs(), 40_551_040 + proj_macs);
    let shape = |n: &str| g.nodes[g.find(n).unwrap()].shape;
    assert_eq!(shape("layer1.2.relu2"), Shape::new(16, 32, 32));
    assert_eq!(shape("layer2.0.conv1"), Shape::new(32, 16, 16));
    assert_eq!(shape("layer3.2.relu2"), Shape::new(64, 8, 8));
}

#[test]
fn resnet_depths_scale_as_6n_plus_2() {
    for depth in [8, 14, 20, 32, 56] {
        let g = resnet(depth, 10, MNIST).unwrap();
        // each conv except the stem has a BN, the fc does not
        let convs = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2d { .. }))
            .count();
        assert_eq!(convs, depth - 1 + 2, "depth {depth}");
        assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
    }
}

#[test]
fn mobilenetv2_cifar_has_the_torchvision_parameter_count() {
    // torchvision mobilenet_v2: 3,504,872 parameters with 1000 classes; the
    // classifier is 1280*1000+1000, so 10 classes give 2,236,682. The CIFAR
    // variant changes strides only.
    let g = mobilenetv2(1.0, 10, CIFAR).unwrap();
    assert_eq!(trainable_params(&g), 3_504_872 - 1_281_000 + 12_810);
    // 52 convs + classifier
    assert_eq!(g.mac_layers().len(), 53);
    let dw = g.find("blocks.3.dw.conv").unwrap();
    assert_eq!(g.nodes[dw].op.kind(), "dwconv");
    assert_eq!(g.nodes[dw].shape, Shape::new(144, 16, 16));
    // stem MACs: 32 x 32x32 x 3*3*3
    assert_eq!(g.macs(g.find("stem.conv").unwrap()), 32 * 1024 * 27);
}

#[test]
fn mobilenetv2_width_rounds_channels_to_multiples_of_8() {
    let g = mobilenetv2(0.5, 10, MNIST).unwrap();
    for n in &g.nodes {
        if let Op::Conv2d { out_channels, .. } = n.op {
            assert_eq!(out_channels % 8, 0, "{}", n.name);
        }
    }
    let stem = g.find("stem.conv").unwrap();
    assert_eq!(g.nodes[stem].shape.c, 16);
    // the head keeps 1280 channels for width < 1
    let head = g.find("head.conv").unwrap();
    assert_eq!(g.nodes[head].shape.c, 1280);
    let wide = mobilenetv2(1.4, 10, CIFAR).unwrap();
    assert_eq!(wide.nodes[wide.find("head.conv").unwrap()].shape.c, 1792);
}

fn w_ftt_net() -> CellNetConfig {
    CellNetConfig {
        init_channels: 20,
        layers: 8,
        stem_multiplier: 3,
        genotype: Genotype::w_ftt_net(),
        num_classes: 10,
    }
}

#[test]
fn w_ftt_net_builds_for_both_input_shapes() {
    for (input, final_hw) in [(MNIST, 7), (CIFAR, 8)] {
        let g = cell_network(&w_ftt_net(), input).unwrap();
        let last = g.find("cells.7.concat").unwrap();
        assert_eq!(g.nodes[last].shape, Shape::new(4 * 80, final_hw, final_hw));
        assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
        let stem = g.find("stem.conv").unwrap();
        assert_eq!(g.nodes[stem].shape.c, 60);
        // every parameter name is unique and prefixed by its node
        let params = g.all_params();
        let mut names: Vec<_> = params.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), params.len());
    }
}

#[test]
fn cell_ops_expand_to_the_darts_layers() {
    let g = cell_network(&w_ftt_net(), CIFAR).unwrap();
    let op = |n: &str| {
        g.nodes[g.find(n).unwrap_or_else(|| panic!("no node {n}"))]
            .op
            .clone()
    };
    // normal cell 0, node 4 edge 0: sep_conv_3x3 from node 1
    for (suffix, kind) in [
        ("relu1", "relu"),
        ("dw1", "dwconv"),
        ("pw1", "conv"),
        ("bn1", "bn"),
        ("relu2", "relu"),
        ("dw2", "dwconv"),
        ("pw2", "conv"),
        ("bn2", "bn"),
    ] {
        assert_eq!(op(&format!("cells.0.node4.op0.{suffix}")).kind(), kind);
    }
    // dil_conv_3x3: dilation 2, padding 2
    match op("cells.0.node3.op1.dw") {
        Op::Conv2d {
            dilation, padding, ..
        } => assert_eq!((dilation, padding), ((2, 2), (2, 2))),
        other => panic!("{other:?}"),
    }
    // conv_1x1 at stride 2 in the reduce cell reads node 3: stride 1
    match op("cells.2.node4.op1.conv") {
        Op::Conv2d { kernel, stride, .. } => assert_eq!((kernel, stride), ((1, 1), (1, 1))),
        other => panic!("{other:?}"),
    }
    // reduce-cell max pool on an input has stride 2
    assert_eq!(
        op("cells.5.node4.op0"),
        Op::MaxPool {
            kernel: (3, 3),
            stride: (2, 2),
            padding: (1, 1)
        }
    );
    // factorized reduce of the reduce cell's skip_connect
    assert_eq!(op("cells.2.node2.op0.crop"), Op::Crop { top: 1, left: 1 });
    assert_eq!(op("cells.2.node2.op0.concat"), Op::Concat);
    // the cell after a reduce cell factorizes s0
    assert_eq!(op("cells.3.preprocess0.crop"), Op::Crop { top: 1, left: 1 });
    assert_eq!(op("cells.4.preprocess0.conv").kind(), "conv");
}

#[test]
fn all_none_cells_still_build() {
    let cell: Vec<Edge> = (2..6)
        .flat_map(|to| {
            [
                Edge::new(CellOp::None, to - 2, to),
                Edge::new(CellOp::None, to - 1, to),
            ]
        })
        .collect();
    let cfg = CellNetConfig {
        init_channels: 4,
        layers: 3,
        stem_multiplier: 1,
        genotype: Genotype {
            normal: cell.clone(),
            reduce: cell,
        },
        num_classes: 2,
    };
    let g = cell_network(&cfg, MNIST).unwrap();
    assert_eq!(g.output_shape(), Shape::new(2, 1, 1));
    let zeros = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Zero { .. }))
        .count();
    assert_eq!(zeros, 3 * 8);
}

mod random_genotypes {
    use super::*;
    use ftnas::model::file::parse_model;
    use ftnas::model::ModelSpec;
    use proptest::prelude::*;

    /// A valid cell: 4 intermediate nodes, 2 edges each from earlier nodes.
    fn cell() -> impl Strategy<Value = Vec<Edge>> {
        let edge = |to: usize| {
            (0..CellOp::ALL.len(), 0..to)
                .prop_map(move |(op, from)| Edge::new(CellOp::ALL[op], from, to))
        };
        (
            proptest::collection::vec(edge(2), 2),
            proptest::collection::vec(edge(3), 2),
            proptest::collection::vec(edge(4), 2),
            proptest::collection::vec(edge(5), 2),
        )
            .prop_map(|(a, b, c, d)| [a, b, c, d].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any genotype of the search space builds for both data shapes,
        /// every cell ends with 4C channels, and the model file written for
        /// it reads back to the same network.
        #[test]
        fn any_genotype_builds_and_round_trips(normal in cell(), reduce in cell(), layers in 1usize..6) {
            let cfg = CellNetConfig {
                init_channels: 4,
                layers,
                stem_multiplier: 3,
                genotype: Genotype { normal, reduce },
                num_classes: 10,
            };
            for input in [MNIST, CIFAR] {
                let g = cell_network(&cfg, input).unwrap();
                prop_assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
                let mut c = 4;
                for i in 0..layers {
                    if ftnas::model::genotype::reduce_positions(layers).contains(&i) {
                        c *= 2;
                    }
                    let cat = g.find(&format!("cells.{i}.concat")).unwrap();
                    prop_assert_eq!(g.nodes[cat].shape.c, 4 * c);
                }
            }
            let spec = ModelSpec::Cells(cfg);
            prop_assert_eq!(parse_model(&spec.to_toml()).unwrap(), spec);
        }
    }
}
