//! Parity of the memory model with SCALE-Sim v2 (scalesim-project/scale-sim-v2
//! @ 22f88b17): every row of `tests/data/scalesim_v2.csv` (one single-layer
//! run per row, CALC and USER interface modes) must give SCALE-Sim's stall
//! cycles and DRAM ifmap/filter/ofmap counts exactly.

use ftnas::accel::memory::{simulate, Interface, MemoryInput, MemoryReport};
use ftnas::accel::{Dataflow, ScaleSimLayer};

struct Row {
    case: String,
    input: MemoryInput,
    stall_cycles: u64,
    dram_ifmap_reads: u64,
    dram_filter_reads: u64,
    dram_ofmap_writes: u64,
}

fn load_rows() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scalesim_v2.csv");
    let text = std::fs::read_to_string(path).expect("tests/data/scalesim_v2.csv is readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("CSV has a header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("CSV column {name} missing"))
    };
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let u = |n: &str| -> usize {
                f[col(n)]
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: column {n} is not an integer", f[0]))
            };
            let dataflow = match f[col("dataflow")] {
                "os" => Dataflow::Os,
                "ws" => Dataflow::Ws,
                "is" => Dataflow::Is,
                other => panic!("{}: unknown dataflow {other}", f[0]),
            };
            let interface = match f[col("interface_bw_mode")] {
                "CALC" => Interface::Calc,
                "USER" => Interface::User {
                    words_per_cycle: u("bandwidth"),
                },
                other => panic!("{}: unknown interface mode {other}", f[0]),
            };
            Row {
                case: f[0].to_string(),
                input: MemoryInput {
                    dataflow,
                    rows: u("array_h"),
                    cols: u("array_w"),
                    layer: ScaleSimLayer {
                        name: f[col("layer_name")].to_string(),
                        ifmap_h: u("ifmap_h"),
                        ifmap_w: u("ifmap_w"),
                        filter_h: u("filter_h"),
                        filter_w: u("filter_w"),
                        channels: u("channels"),
                        num_filters: u("num_filters"),
                        stride: u("stride"),
                    },
                    ifmap_sram_words: u("ifmap_sram_kb") * 1024,
                    filter_sram_words: u("filter_sram_kb") * 1024,
                    ofmap_sram_words: u("ofmap_sram_kb") * 1024,
                    interface,
                },
                stall_cycles: u("stall_cycles") as u64,
                dram_ifmap_reads: u("dram_ifmap_reads") as u64,
                dram_filter_reads: u("dram_filter_reads") as u64,
                dram_ofmap_writes: u("dram_ofmap_writes") as u64,
            }
        })
        .collect()
}

fn summary(r: &MemoryReport) -> (u64, u64, u64, u64) {
    (
        r.stall_cycles,
        r.dram_ifmap_reads,
        r.dram_filter_reads,
        r.dram_ofmap_writes,
    )
}

#[test]
fn every_vector_row_matches_scalesim_exactly() {
    let rows = load_rows();
    assert!(rows.len() >= 21, "expected the 21 committed vector rows");
    let mut mismatches = Vec::new();
    for row in &rows {
        let got = summary(&simulate(&row.input));
        let want = (
            row.stall_cycles,
            row.dram_ifmap_reads,
            row.dram_filter_reads,
            row.dram_ofmap_writes,
        );
        if got != want {
            mismatches.push(format!(
                "{}: (stall, dram ifmap, filter, ofmap) got {got:?}, SCALE-Sim {want:?}",
                row.case
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn calc_rows_never_stall_and_user_rows_do() {
    for row in load_rows() {
        let r = simulate(&row.input);
        match row.input.interface {
            Interface::Calc => assert_eq!(r.stall_cycles, 0, "{}", row.case),
            Interface::User { .. } => assert!(r.stall_cycles > 0, "{}", row.case),
        }
    }
}

#[test]
fn dram_windows_are_ordered() {
    for row in load_rows() {
        let r = simulate(&row.input);
        assert!(r.dram_ifmap_start <= r.dram_ifmap_stop, "{}", row.case);
        assert!(r.dram_filter_start <= r.dram_filter_stop, "{}", row.case);
        assert!(r.dram_ofmap_start <= r.dram_ofmap_stop, "{}", row.case);
    }
}
