use ftnas::accel::memory::{simulate, Interface, MemoryInput};
use ftnas::accel::{Dataflow, ScaleSimLayer};

#[test]
fn parity_dump() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/scalesim_v2.csv"
    ))
    .unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let u = |n: &str| f[col(n)].parse::<usize>().unwrap();
        let df = match f[col("dataflow")] {
            "os" => Dataflow::Os,
            "ws" => Dataflow::Ws,
            _ => Dataflow::Is,
        };
        let input = MemoryInput {
            dataflow: df,
            rows: u("array_h"),
            cols: u("array_w"),
            layer: ScaleSimLayer {
                name: f[col("layer_name")].into(),
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
            interface: if f[col("interface_bw_mode")] == "CALC" {
                Interface::Calc
            } else {
                Interface::User {
                    words_per_cycle: u("bandwidth"),
                }
            },
        };
        let r = simulate(&input);
        println!(
            "{:40} stall {:>7}/{:>7} if {:>8}/{:>8} fi {:>8}/{:>8} of {:>7}/{:>7}",
            f[0],
            r.stall_cycles,
            f[col("stall_cycles")],
            r.dram_ifmap_reads,
            f[col("dram_ifmap_reads")],
            r.dram_filter_reads,
            f[col("dram_filter_reads")],
            r.dram_ofmap_writes,
            f[col("dram_ofmap_writes")]
        );
    }
}
