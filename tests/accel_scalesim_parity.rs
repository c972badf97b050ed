//! Parity with SCALE-Sim v2 on the reference vectors (`tests/data/
//! scalesim_v2.csv`, SCALE-Sim's own results; see `scalesim_v2.md`).
//!
//! For every row: compute cycles (= total - stall), mapping efficiency,
//! compute utilization and the three SRAM access counts. For CALC rows (no
//! stall): total cycles and overall utilization too. For USER rows, the
//! stall cycles and overall utilization depend on the memory model
//! (`accel::memory::simulate`) and are checked in `usera_rows_with_memory_model`.
//! Every check goes through the same public entry point the CLI uses
//! (`timing::time_layer` with the memory model).

use ftnas::accel::memory::Interface;
use ftnas::accel::network::NetworkTiming;
use ftnas::accel::scalesim_report::{compute_report, detailed_access_report};
use ftnas::accel::timing::{time_layer, ArrayConfig, LayerTiming};
use ftnas::accel::{Dataflow, ScaleSimLayer};

struct Row {
    case: String,
    arr: ArrayConfig,
    layer: ScaleSimLayer,
    user: bool,
    total: u64,
    stall: u64,
    overall: f64,
    mapping: f64,
    compute: f64,
    sram: [u64; 3],
    dram: [u64; 3],
}

fn rows() -> Vec<Row> {
    let text = include_str!("data/scalesim_v2.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let u = |name: &str| -> u64 { f[col(name)].parse().unwrap() };
        let x = |name: &str| -> f64 { f[col(name)].parse().unwrap() };
        let user = f[col("interface_bw_mode")] == "USER";
        let dataflow = match f[col("dataflow")] {
            "os" => Dataflow::Os,
            "ws" => Dataflow::Ws,
            "is" => Dataflow::Is,
            d => panic!("dataflow {d}"),
        };
        let arr = ArrayConfig {
            rows: u("array_h") as usize,
            cols: u("array_w") as usize,
            dataflow,
            ifmap_sram_words: u("ifmap_sram_kb") as usize * 1024,
            filter_sram_words: u("filter_sram_kb") as usize * 1024,
            ofmap_sram_words: u("ofmap_sram_kb") as usize * 1024,
            interface: if user {
                Interface::User {
                    words_per_cycle: u("bandwidth") as usize,
                }
            } else {
                Interface::Calc
            },
        };
        let layer = ScaleSimLayer {
            name: f[col("layer_name")].to_string(),
            ifmap_h: u("ifmap_h") as usize,
            ifmap_w: u("ifmap_w") as usize,
            filter_h: u("filter_h") as usize,
            filter_w: u("filter_w") as usize,
            channels: u("channels") as usize,
            num_filters: u("num_filters") as usize,
            stride: u("stride") as usize,
        };
        out.push(Row {
            case: f[col("case_id")].to_string(),
            arr,
            layer,
            user,
            total: u("total_cycles"),
            stall: u("stall_cycles"),
            overall: x("overall_util_pct"),
            mapping: x("mapping_eff_pct"),
            compute: x("compute_util_pct"),
            sram: [
                u("sram_ifmap_reads"),
                u("sram_filter_reads"),
                u("sram_ofmap_writes"),
            ],
            dram: [
                u("dram_ifmap_reads"),
                u("dram_filter_reads"),
                u("dram_ofmap_writes"),
            ],
        });
    }
    out
}

fn timed(r: &Row) -> LayerTiming {
    time_layer(&r.layer, "scalesim", 1, &r.arr, 1000.0).expect("mappable")
}

/// The % figures are Python float reprs; the closed forms are evaluated in
/// a different order, so allow a few ulps of the percentage.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn every_row_compute_side_and_calc_rows_total() {
    let rows = rows();
    assert!(rows.len() >= 20, "vectors present: {}", rows.len());
    let mut failures = Vec::new();
    for r in &rows {
        let t = timed(r);
        let mut check = |what: &str, ok: bool, got: String, want: String| {
            if !ok {
                failures.push(format!("{} {what}: got {got}, want {want}", r.case));
            }
        };
        let want_compute = r.total - r.stall;
        check(
            "compute cycles",
            t.compute_cycles == want_compute,
            t.compute_cycles.to_string(),
            want_compute.to_string(),
        );
        check(
            "mapping eff",
            close(t.mapping_eff_pct, r.mapping),
            t.mapping_eff_pct.to_string(),
            r.mapping.to_string(),
        );
        check(
            "compute util",
            close(t.compute_util_pct, r.compute),
            t.compute_util_pct.to_string(),
            r.compute.to_string(),
        );
        let sram = [t.sram_ifmap_reads, t.sram_filter_reads, t.sram_ofmap_writes];
        check(
            "SRAM counts",
            sram == r.sram,
            format!("{sram:?}"),
            format!("{:?}", r.sram),
        );
        if !r.user {
            assert_eq!(r.stall, 0, "{}: CALC rows never stall", r.case);
            check(
                "total cycles",
                t.total_cycles == r.total,
                t.total_cycles.to_string(),
                r.total.to_string(),
            );
            check(
                "overall util",
                close(t.overall_util_pct, r.overall),
                t.overall_util_pct.to_string(),
                r.overall.to_string(),
            );
        }
        // Overall utilization from the reference's own total must agree with
        // the definition (MACs over total*PEs), stalls included.
        let from_ref_total =
            100.0 * t.macs as f64 / (r.total as f64 * (r.arr.rows * r.arr.cols) as f64);
        check(
            "overall util definition",
            close(from_ref_total, r.overall),
            from_ref_total.to_string(),
            r.overall.to_string(),
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Stall cycles and overall utilization of the USER (finite bandwidth)
/// rows, which come from the memory model; DRAM counts are reported.
#[test]
fn usera_rows_with_memory_model() {
    let rows = rows();
    let mut failures = Vec::new();
    for r in rows.iter() {
        let t = timed(r);
        let dram = [t.dram_ifmap_reads, t.dram_filter_reads, t.dram_ofmap_writes];
        if dram != r.dram {
            eprintln!(
                "{}: DRAM reads/writes {dram:?}, SCALE-Sim {:?}",
                r.case, r.dram
            );
        }
        if !r.user {
            continue;
        }
        if t.stall_cycles != r.stall {
            failures.push(format!(
                "{} stall: got {}, want {}",
                r.case, t.stall_cycles, r.stall
            ));
        }
        if t.total_cycles != r.total {
            failures.push(format!(
                "{} total: got {}, want {}",
                r.case, t.total_cycles, r.total
            ));
        }
        if !close(t.overall_util_pct, r.overall) {
            failures.push(format!(
                "{} overall util: got {}, want {}",
                r.case, t.overall_util_pct, r.overall
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The report writers print SCALE-Sim's columns in its format, and the
/// percentages are summed fold by fold in SCALE-Sim's order, so the
/// `COMPUTE_REPORT.csv` figures are the very digits SCALE-Sim prints.
#[test]
fn compute_report_digits_match_scalesim() {
    let text = include_str!("data/scalesim_v2.csv");
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut failures = Vec::new();
    for (r, line) in rows().iter().zip(text.lines().skip(1)) {
        let f: Vec<&str> = line.split(',').collect();
        let t = NetworkTiming::new("a", "m", 1000.0, 64, vec![timed(r)]);
        let report = compute_report(&t);
        let fields: Vec<&str> = report.lines().nth(1).unwrap().split(", ").collect();
        // LayerID, Total, Stall, Overall, Mapping, Compute (trailing comma).
        let mut want = vec![f[col("mapping_eff_pct")], f[col("compute_util_pct")]];
        let mut got = vec![fields[4], fields[5].trim_end_matches(',')];
        if !r.user {
            want.insert(0, f[col("overall_util_pct")]);
            got.insert(0, fields[3]);
            want.insert(0, f[col("total_cycles")]);
            got.insert(0, fields[1]);
        }
        if got != want {
            failures.push(format!("{}: {got:?} vs SCALE-Sim {want:?}", r.case));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let r = &rows()[0];
    let t = NetworkTiming::new("a", "m", 1000.0, 64, vec![timed(r)]);
    let detail = detailed_access_report(&t, None);
    assert!(detail
        .starts_with("LayerID, SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads,"));
    let fields: Vec<&str> = detail.lines().nth(1).unwrap().split(", ").collect();
    assert_eq!(
        (fields[3], fields[6], fields[9]),
        ("55296", "55296", "20480")
    );
}
