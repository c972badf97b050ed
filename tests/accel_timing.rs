//! Properties of layer lowering and systolic timing on random layers:
//! the lowered GEMMs do exactly the graph's MACs over its real output grid,
//! a grouped conv costs its groups run back to back, and the fold-level
//! figures agree with their definitions.

use std::path::Path;

use ftnas::accel::description::Accelerator;
use ftnas::accel::lower::lower;
use ftnas::accel::timing::{compute, Gemm};
use ftnas::accel::{time_graph, Dataflow};
use ftnas::model::{Graph, GraphBuilder, Op, Shape};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct ConvCase {
    cin: usize,
    cout: usize,
    hw: (usize, usize),
    k: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1usize..5,
        1usize..5,
        1usize..4,
        (6usize..20, 6usize..20),
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        (0usize..2, 0usize..2),
        (1usize..3, 1usize..3),
    )
        .prop_map(|(g, ci, co, hw, k, stride, pad, dil)| ConvCase {
            cin: g * ci,
            cout: g * co,
            hw,
            k,
            stride,
            pad,
            dil,
            groups: g,
        })
}

fn graph(c: &ConvCase, groups: usize, cin: usize, cout: usize) -> Option<Graph> {
    let mut b = GraphBuilder::new("p", Shape::new(cin, c.hw.0, c.hw.1));
    b.add(
        "conv",
        Op::Conv2d {
            out_channels: cout,
            kernel: c.k,
            stride: c.stride,
            padding: c.pad,
            dilation: c.dil,
            groups,
            bias: false,
        },
        &[0],
    )
    .ok()?;
    Some(b.finish())
}

fn array(rows: usize, cols: usize, df: &str) -> Accelerator {
    let text = format!(
        "name = \"p\"\nclock_mhz = 100.0\nkind = \"systolic\"\n[systolic]\nrows = {rows}\ncols = {cols}\ndataflow = \"{df}\"\n[datapath]\nact_bits = 8\nweight_bits = 8\npsum_bits = 32\n[buffers]\nifmap_kib = 64\nfilter_kib = 64\nofmap_kib = 64\nword_bytes = 1\n[dram]\nbandwidth = \"calc\"\n"
    );
    Accelerator::parse(&text, Path::new("p.toml")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn lowering_keeps_macs_and_output_grid(c in conv_case()) {
        let Some(g) = graph(&c, c.groups, c.cin, c.cout) else { return Ok(()) };
        let l = &lower(&g)[0];
        let gemm = Gemm::of_scalesim_layer(&l.layer).unwrap();
        let out = g.nodes[1].shape;
        prop_assert_eq!(gemm.pixels, out.h * out.w);
        prop_assert_eq!(gemm.macs() * l.groups as u64, g.macs(1));
        prop_assert_eq!(gemm.filters * l.groups, c.cout);
    }

    #[test]
    fn grouped_conv_is_its_groups_back_to_back(
        c in conv_case(),
        rows in 2usize..12,
        cols in 2usize..12,
        df in prop::sample::select(vec!["os", "ws", "is"]),
    ) {
        let Some(g) = graph(&c, c.groups, c.cin, c.cout) else { return Ok(()) };
        let one = graph(&c, 1, c.cin / c.groups, c.cout / c.groups).unwrap();
        let acc = array(rows, cols, df);
        let all = &time_graph(&acc, &g, None).unwrap().layers[0];
        let single = &time_graph(&acc, &one, None).unwrap().layers[0];
        let n = c.groups as u64;
        prop_assert_eq!(all.total_cycles, n * single.total_cycles + n - 1);
        prop_assert_eq!(all.sram_ifmap_reads, n * single.sram_ifmap_reads);
        prop_assert_eq!(all.macs, n * single.macs);
        prop_assert!((all.mapping_eff_pct - single.mapping_eff_pct).abs() < 1e-12);
        prop_assert!(all.overall_util_pct <= 100.0 + 1e-9);
    }

    #[test]
    fn fold_figures_follow_their_definitions(
        pixels in 1usize..300,
        window in 1usize..300,
        filters in 1usize..300,
        rows in 1usize..40,
        cols in 1usize..40,
        df in prop::sample::select(vec![Dataflow::Os, Dataflow::Ws, Dataflow::Is]),
    ) {
        let g = Gemm { pixels, window, filters };
        let t = compute(&g, rows, cols, df);
        let folds = (t.sr.div_ceil(rows) * t.sc.div_ceil(cols)) as u64;
        prop_assert_eq!(t.compute_cycles + 1, folds * t.cycles_per_fold);
        // Mean fold occupancy = useful PE slots over offered PE slots.
        let exact = (t.sr * t.sc) as f64 / (folds as f64 * (rows * cols) as f64) * 100.0;
        prop_assert!((t.mapping_eff_pct - exact).abs() < 1e-9 * exact.max(1.0));
        prop_assert!(t.compute_util_pct <= t.mapping_eff_pct);
        // Every operand element is read at least once.
        prop_assert!(t.sram_ifmap_reads >= (pixels * window) as u64);
        prop_assert!(t.sram_filter_reads >= (window * filters) as u64);
        prop_assert!(t.sram_ofmap_writes >= (pixels * filters) as u64);
        // Demand windows lie inside the layer's cycles.
        for (a, b) in [
            (t.ifmap_demand_first, t.ifmap_demand_last),
            (t.filter_demand_first, t.filter_demand_last),
            (t.ofmap_demand_first, t.ofmap_demand_last),
        ] {
            prop_assert!(a <= b && b <= t.compute_cycles, "{a} {b} {}", t.compute_cycles);
        }
    }
}
