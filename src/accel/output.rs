//! Writing timing results: atomic file writes (temp file + rename, so a
//! crash never leaves a half-written result), the per-layer stdout table,
//! and ftnas' own CSV and JSON forms of a [`NetworkTiming`].

use super::network::NetworkTiming;

/// Python's `repr` of a float (what SCALE-Sim prints): shortest round-trip
/// digits, `.0` on integral values, exponent form below 1e-4 and from 1e16.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust: "1e-5" / "1.5e16"; Python: "1e-05" / "1.5e+16".
        let s = format!("{x:e}");
        let (mant, exp) = s.split_once('e').expect("exponent form");
        let e: i32 = exp.parse().expect("integer exponent");
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", e.abs());
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The per-layer table and totals, for a terminal.
pub fn table(t: &NetworkTiming) -> String {
    let mut s = format!(
        "{} on {} ({} MAC units, {} MHz)\n",
        t.model, t.accelerator, t.mac_units, t.clock_mhz
    );
    s += &format!(
        "{:<22} {:<8} {:>5} {:>12} {:>10} {:>12} {:>7} {:>7} {:>7} {:>12} {:>12} {:>12} {:>11} {:>11} {:>11} {:>11}\n",
        "layer", "kind", "rep", "compute", "stall", "total", "util%", "map%", "comp%",
        "sram_ifmap", "sram_filt", "sram_ofmap", "dram_ifmap", "dram_filt", "dram_ofmap", "time_us"
    );
    for l in &t.layers {
        s += &format!(
            "{:<22} {:<8} {:>5} {:>12} {:>10} {:>12} {:>7.2} {:>7.2} {:>7.2} {:>12} {:>12} {:>12} {:>11} {:>11} {:>11} {:>11.3}\n",
            truncate(&l.name, 22),
            l.kind,
            l.repeats,
            l.compute_cycles,
            l.stall_cycles,
            l.total_cycles,
            l.overall_util_pct,
            l.mapping_eff_pct,
            l.compute_util_pct,
            l.sram_ifmap_reads,
            l.sram_filter_reads,
            l.sram_ofmap_writes,
            l.dram_ifmap_reads,
            l.dram_filter_reads,
            l.dram_ofmap_writes,
            l.time_us
        );
    }
    let x = &t.totals;
    s += &format!(
        "{:<22} {:<8} {:>5} {:>12} {:>10} {:>12} {:>7.2} {:>7} {:>7} {:>12} {:>12} {:>12} {:>11} {:>11} {:>11} {:>11.3}\n",
        "TOTAL",
        format!("{} lyr", x.layers),
        "",
        x.compute_cycles,
        x.stall_cycles,
        x.total_cycles,
        x.overall_util_pct,
        "",
        "",
        x.sram_ifmap_reads,
        x.sram_filter_reads,
        x.sram_ofmap_writes,
        x.dram_ifmap_reads,
        x.dram_filter_reads,
        x.dram_ofmap_writes,
        x.time_us
    );
    s += &format!("MACs: {}   time: {:.3} ms\n", x.macs, x.time_us / 1000.0);
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('~')).collect()
    }
}

/// Header of ftnas' per-layer CSV.
pub const CSV_HEADER: &str = "layer,kind,repeats,pixels,window,filters,macs,compute_cycles,stall_cycles,total_cycles,overall_util_pct,mapping_eff_pct,compute_util_pct,sram_ifmap_reads,sram_filter_reads,sram_ofmap_writes,dram_ifmap_reads,dram_filter_reads,dram_ofmap_writes,time_us";

/// ftnas' per-layer CSV, one row per layer and a final `TOTAL` row.
pub fn csv(t: &NetworkTiming) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for l in &t.layers {
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&l.name),
            l.kind,
            l.repeats,
            l.gemm.pixels,
            l.gemm.window,
            l.gemm.filters,
            l.macs,
            l.compute_cycles,
            l.stall_cycles,
            l.total_cycles,
            py_float(l.overall_util_pct),
            py_float(l.mapping_eff_pct),
            py_float(l.compute_util_pct),
            l.sram_ifmap_reads,
            l.sram_filter_reads,
            l.sram_ofmap_writes,
            l.dram_ifmap_reads,
            l.dram_filter_reads,
            l.dram_ofmap_writes,
            py_float(l.time_us)
        );
    }
    let x = &t.totals;
    s += &format!(
        "TOTAL,,,,,,{},{},{},{},{},,,{},{},{},{},{},{},{}\n",
        x.macs,
        x.compute_cycles,
        x.stall_cycles,
        x.total_cycles,
        py_float(x.overall_util_pct),
        x.sram_ifmap_reads,
        x.sram_filter_reads,
        x.sram_ofmap_writes,
        x.dram_ifmap_reads,
        x.dram_filter_reads,
        x.dram_ofmap_writes,
        py_float(x.time_us)
    );
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The whole timing as pretty JSON.
pub fn json(t: &NetworkTiming) -> String {
    serde_json::to_string_pretty(t).expect("timing serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        assert_eq!(py_float(100.0), "100.0");
        assert_eq!(py_float(65.85993330157218), "65.85993330157218");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(2.5e-7), "2.5e-07");
        assert_eq!(py_float(1.5e16), "1.5e+16");
        assert_eq!(py_float(0.00012), "0.00012");
    }
}
