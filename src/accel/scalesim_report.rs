//! SCALE-Sim v2's output files — `COMPUTE_REPORT.csv`,
//! `BANDWIDTH_REPORT.csv` and `DETAILED_ACCESS_REPORT.csv` — with its exact
//! column names and number formatting (`", "` separators, a trailing comma,
//! Python float reprs), so users can diff ftnas against SCALE-Sim runs; and
//! [`run_job`], which runs a cfg + topology job into `outdir/<run_name>/`
//! as SCALE-Sim does.
//!
//! The detailed report ends with SCALE-Sim v2's six PE action counts
//! (`IFMAP Write Count` .. `OFMAP Read Count`, from
//! `systolic_compute_{os,ws,is}.get_pe_action_count`, scale-sim-v2 @
//! 1f53104f): per fold, how often the PEs' operand and partial-sum
//! registers are written and read while the array fills, computes and
//! drains. They are closed forms of each fold's used rows and columns
//! ([`pe_actions`]); the counts whose formula halves `(1 + n) * n` are
//! Python floats there and are printed as such (`1234.0`).

use std::path::{Path, PathBuf};

use super::network::{time_topology, NetworkTiming, TimingError};
use super::output::py_float;
use super::scalesim::{load_topology, ScaleSimConfig, ScaleSimError};
use super::timing::{ArrayConfig, Gemm};
use super::Dataflow;

/// Errors of a SCALE-Sim job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Input(#[from] ScaleSimError),
    #[error(transparent)]
    Timing(#[from] TimingError),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

/// `COMPUTE_REPORT.csv` text.
pub fn compute_report(t: &NetworkTiming) -> String {
    let mut s = String::from(
        "LayerID, Total Cycles, Stall Cycles, Overall Util %, Mapping Efficiency %, Compute Util %,\n",
    );
    for (i, l) in t.layers.iter().enumerate() {
        s += &format!(
            "{i}, {}, {}, {}, {}, {},\n",
            l.total_cycles,
            l.stall_cycles,
            py_float(l.overall_util_pct),
            py_float(l.mapping_eff_pct),
            py_float(l.compute_util_pct)
        );
    }
    s
}

/// `BANDWIDTH_REPORT.csv` text (average words per cycle).
pub fn bandwidth_report(t: &NetworkTiming) -> String {
    let mut s = String::from(
        "LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, Avg IFMAP DRAM BW, Avg FILTER DRAM BW, Avg OFMAP DRAM BW,\n",
    );
    for (i, l) in t.layers.iter().enumerate() {
        let bw: Vec<String> = l.bandwidths().iter().map(|&x| py_float(x)).collect();
        s += &format!("{i}, {},\n", bw.join(", "));
    }
    s
}

/// A count as SCALE-Sim prints it: a Python int, or a Python float when
/// its formula multiplies by 0.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PyCount {
    Int(u64),
    Float(f64),
}

impl PyCount {
    fn text(self) -> String {
        match self {
            PyCount::Int(n) => n.to_string(),
            PyCount::Float(x) => py_float(x),
        }
    }

    fn times(self, n: u64) -> PyCount {
        match self {
            PyCount::Int(v) => PyCount::Int(v * n),
            PyCount::Float(v) => PyCount::Float(v * n as f64),
        }
    }
}

/// SCALE-Sim v2's PE action counts of one layer, in report order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeActions {
    pub ifmap_write: PyCount,
    pub ifmap_read: PyCount,
    pub filter_write: PyCount,
    pub filter_read: PyCount,
    pub ofmap_write: PyCount,
    pub ofmap_read: PyCount,
}

impl PeActions {
    fn fields(&self) -> [PyCount; 6] {
        [
            self.ifmap_write,
            self.ifmap_read,
            self.filter_write,
            self.filter_read,
            self.ofmap_write,
            self.ofmap_read,
        ]
    }
}

/// PE action counts of `gemm` run `repeats` times on a `rows` x `cols`
/// array, as SCALE-Sim v2 sums them over folds (column fold outer), with
/// `ru`/`cu` the used rows/columns of a fold, `R` the array rows and `T`
/// the streamed dimension:
///
/// * a streaming operand (OS ifmap and filter, WS ifmap, IS filter) is
///   written `ru*cu*T` times and read `ru*(cu-1)*T + ru*cu*T` (ifmap, passed
///   along rows) or `(ru-1)*cu*T + ru*cu*T` (OS filter, passed down columns);
/// * a stationary operand (WS filter, IS ifmap) is shifted in, written
///   `(1+ru)*ru/2*cu` and read that minus `ru*cu`, plus `ru*cu*T` reads;
/// * OS partial sums: `ru*cu*T` writes and `ru*cu*(T-1)` reads while
///   computing, plus the drain down the columns,
///   `((1+R)*R - (1+R-ru)*(R-ru))/2*cu` reads and that minus `ru*cu` writes;
///   WS/IS: `R*cu*T` writes and `(R-1)*cu*T` reads.
pub fn pe_actions(
    gemm: &Gemm,
    rows: usize,
    cols: usize,
    df: Dataflow,
    repeats: usize,
) -> PeActions {
    let (sr, sc, t) = gemm.mapping(df);
    let (r, c) = (rows as u64, cols as u64);
    let t = t as u64;
    let (mut stream_w, mut stream_r) = (0u64, 0u64); // the ifmap-like operand
    let (mut other_w, mut other_r) = (0u64, 0u64); // OS filter
    let (mut stat_w, mut stat_r) = (0f64, 0f64); // stationary operand
    let (mut psum_wi, mut psum_ri) = (0u64, 0u64); // WS/IS partial sums
    let (mut psum_wf, mut psum_rf) = (0f64, 0f64); // OS partial sums
    for fc in 0..sc.div_ceil(cols) as u64 {
        for fr in 0..sr.div_ceil(rows) as u64 {
            let ru = (sr as u64 - fr * r).min(r);
            let cu = (sc as u64 - fc * c).min(c);
            let half = |n: u64| (((1 + n) * n) as f64) * 0.5 * cu as f64;
            stream_w += ru * cu * t;
            stream_r += ru * (cu - 1) * t + ru * cu * t;
            other_w += ru * cu * t;
            other_r += (ru - 1) * cu * t + ru * cu * t;
            stat_w += half(ru);
            stat_r += (half(ru) - (ru * cu) as f64) + (ru * cu * t) as f64;
            psum_wi += ru * cu * t + (r - ru) * cu * t;
            psum_ri += (ru - 1) * cu * t + (r - ru) * cu * t;
            let drain_r = half(r) - half(r - ru);
            psum_wf += (ru * cu * t) as f64 + (drain_r - (ru * cu) as f64);
            psum_rf += (ru * cu * (t - 1)) as f64 + drain_r;
        }
    }
    use PyCount::{Float, Int};
    let one = match df {
        Dataflow::Os => PeActions {
            ifmap_write: Int(stream_w),
            ifmap_read: Int(stream_r),
            filter_write: Int(other_w),
            filter_read: Int(other_r),
            ofmap_write: Float(psum_wf),
            ofmap_read: Float(psum_rf),
        },
        Dataflow::Ws => PeActions {
            ifmap_write: Int(stream_w),
            ifmap_read: Int(stream_r),
            filter_write: Float(stat_w),
            filter_read: Float(stat_r),
            ofmap_write: Int(psum_wi),
            ofmap_read: Int(psum_ri),
        },
        Dataflow::Is => PeActions {
            ifmap_write: Float(stat_w),
            ifmap_read: Float(stat_r),
            filter_write: Int(stream_w),
            filter_read: Int(stream_r),
            ofmap_write: Int(psum_wi),
            ofmap_read: Int(psum_ri),
        },
    };
    let n = repeats.max(1) as u64;
    let f = one.fields().map(|x| x.times(n));
    PeActions {
        ifmap_write: f[0],
        ifmap_read: f[1],
        filter_write: f[2],
        filter_read: f[3],
        ofmap_write: f[4],
        ofmap_read: f[5],
    }
}

/// `DETAILED_ACCESS_REPORT.csv` text. With the systolic `array` the layers
/// ran on, the six PE action columns follow the access columns (as in
/// SCALE-Sim v2); without one (bit-serial designs) they are left out.
pub fn detailed_access_report(t: &NetworkTiming, array: Option<&ArrayConfig>) -> String {
    let mut s = String::from(
        "LayerID, SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,",
    );
    if array.is_some() {
        s += " IFMAP Write Count, IFMAP Read Count, Filter Write Count, Filter Read Count, OFMAP Write Count, OFMAP Read Count,";
    }
    s += "\n";
    for (i, l) in t.layers.iter().enumerate() {
        let v = [
            l.sram_ifmap_start,
            l.sram_ifmap_stop,
            l.sram_ifmap_reads,
            l.sram_filter_start,
            l.sram_filter_stop,
            l.sram_filter_reads,
            l.sram_ofmap_start,
            l.sram_ofmap_stop,
            l.sram_ofmap_writes,
            l.dram_ifmap_start,
            l.dram_ifmap_stop,
            l.dram_ifmap_reads,
            l.dram_filter_start,
            l.dram_filter_stop,
            l.dram_filter_reads,
            l.dram_ofmap_start,
            l.dram_ofmap_stop,
            l.dram_ofmap_writes,
        ];
        let mut v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        if let Some(a) = array {
            let actions = pe_actions(&l.gemm, a.rows, a.cols, a.dataflow, l.repeats);
            v.extend(actions.fields().iter().map(|x| x.text()));
        }
        s += &format!("{i}, {},\n", v.join(", "));
    }
    s
}

/// Write the three reports into `dir` (created if needed), atomically
/// (`array`: see [`detailed_access_report`]).
pub fn write_reports(
    t: &NetworkTiming,
    array: Option<&ArrayConfig>,
    dir: &Path,
) -> Result<(), JobError> {
    std::fs::create_dir_all(dir).map_err(|source| JobError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, text) in [
        ("COMPUTE_REPORT.csv", compute_report(t)),
        ("BANDWIDTH_REPORT.csv", bandwidth_report(t)),
        (
            "DETAILED_ACCESS_REPORT.csv",
            detailed_access_report(t, array),
        ),
    ] {
        crate::report::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// SCALE-Sim has no clock; times in ftnas' own outputs of a SCALE-Sim job
/// are at this nominal clock.
pub const SCALESIM_NOMINAL_CLOCK_MHZ: f64 = 1000.0;

/// Run a SCALE-Sim job: read `cfg` and `topology`, time every layer, write
/// the three reports into `outdir/<run_name>/`. Returns the timing, the
/// array it ran on and the report directory.
pub fn run_job(
    cfg: &Path,
    topology: &Path,
    outdir: &Path,
) -> Result<(NetworkTiming, ArrayConfig, PathBuf), JobError> {
    let config = ScaleSimConfig::load(cfg)?;
    let layers = load_topology(topology)?;
    let model = topology
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "topology".into());
    let t = time_topology(
        &config.array(),
        SCALESIM_NOMINAL_CLOCK_MHZ,
        &config.run_name,
        &model,
        &layers,
    )?;
    let dir = outdir.join(&config.run_name);
    let array = config.array();
    write_reports(&t, Some(&array), &dir)?;
    Ok((t, array, dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::memory::Interface;
    use crate::accel::timing::time_layer;
    use crate::accel::ScaleSimLayer;

    fn texts(a: PeActions) -> Vec<String> {
        a.fields().iter().map(|x| x.text()).collect()
    }

    fn gemm(pixels: usize, window: usize, filters: usize) -> Gemm {
        Gemm {
            pixels,
            window,
            filters,
        }
    }

    /// A 4x4 array and (Sr, Sc, T) = (6, 5, 3): folds (column fold outer)
    /// with (ru, cu) = (4,4), (2,4), (4,1), (2,1); sum ru*cu = 30.
    #[test]
    fn pe_actions_are_scalesims_per_fold_sums() {
        // OS: ifmap w = 30*3, r = sum ru*(2cu-1)*3 = (28+14+4+2)*3;
        // filter w = 90, r = sum (2ru-1)*cu*3 = (28+12+7+3)*3; drain
        // (10 - (5-ru)(4-ru)/2)*cu reads = 40+28+10+7 = 85, writes 85-30.
        let os = pe_actions(&gemm(6, 3, 5), 4, 4, Dataflow::Os, 1);
        assert_eq!(texts(os), ["90", "144", "90", "150", "145.0", "145.0"]);
        // WS: stationary filter w = sum (1+ru)ru/2*cu = 40+12+10+3,
        // r = 65 - 30 + 90; psums w = sum R*cu*T = 4*10*3, r = 3*10*3.
        let ws = pe_actions(&gemm(3, 6, 5), 4, 4, Dataflow::Ws, 1);
        assert_eq!(texts(ws), ["90", "144", "65.0", "125.0", "120", "90"]);
        // IS: the stationary operand is the ifmap, the filter streams.
        let is = pe_actions(&gemm(5, 6, 3), 4, 4, Dataflow::Is, 1);
        assert_eq!(texts(is), ["65.0", "125.0", "90", "144", "120", "90"]);
        // Groups run back to back: every count scales.
        let ws2 = pe_actions(&gemm(3, 6, 5), 4, 4, Dataflow::Ws, 2);
        assert_eq!(texts(ws2), ["180", "288", "130.0", "250.0", "240", "180"]);
    }

    #[test]
    fn single_row_and_column_arrays_do_not_underflow() {
        // ru = cu = 1 everywhere: the "- 1" terms are zero.
        let a = pe_actions(&gemm(2, 3, 2), 1, 1, Dataflow::Os, 1);
        // 4 folds of T=3: w 12, r = 4*(0+3); drain r = (1 - 0)*1 per fold.
        assert_eq!(texts(a), ["12", "12", "12", "12", "12.0", "12.0"]);
    }

    #[test]
    fn detailed_report_has_scalesims_pe_action_columns() {
        let array = ArrayConfig {
            rows: 4,
            cols: 4,
            dataflow: Dataflow::Ws,
            ifmap_sram_words: 1024,
            filter_sram_words: 1024,
            ofmap_sram_words: 1024,
            interface: Interface::Calc,
        };
        // 1x3 ifmap, 1x1 filter, 6 channels, 5 filters: (Sr, Sc, T) = (6, 5, 3).
        let layer = ScaleSimLayer {
            name: "l".into(),
            ifmap_h: 1,
            ifmap_w: 3,
            filter_h: 1,
            filter_w: 1,
            channels: 6,
            num_filters: 5,
            stride: 1,
        };
        let l = time_layer(&layer, "conv", 1, &array, 1000.0).unwrap();
        let t = NetworkTiming::new("a", "m", 1000.0, 16, vec![l]);
        let text = detailed_access_report(&t, Some(&array));
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.ends_with(
            ", DRAM OFMAP Writes, IFMAP Write Count, IFMAP Read Count, Filter Write Count, Filter Read Count, OFMAP Write Count, OFMAP Read Count,"
        ));
        let row: Vec<&str> = lines.next().unwrap().split(", ").collect();
        assert_eq!(row.len(), header.split(", ").count());
        assert_eq!(&row[19..], ["90", "144", "65.0", "125.0", "120", "90,"]);
        // Without an array (bit-serial designs) the access columns only.
        let plain = detailed_access_report(&t, None);
        assert!(plain
            .lines()
            .next()
            .unwrap()
            .ends_with(", DRAM OFMAP Writes,"));
        assert_eq!(plain.lines().nth(1).unwrap().split(", ").count(), 19);
    }
}
