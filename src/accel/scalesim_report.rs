//! SCALE-Sim v2's output files — `COMPUTE_REPORT.csv`,
//! `BANDWIDTH_REPORT.csv` and `DETAILED_ACCESS_REPORT.csv` — with its exact
//! column names and number formatting (`", "` separators, a trailing comma,
//! Python float reprs), so users can diff ftnas against SCALE-Sim runs; and
//! [`run_job`], which runs a cfg + topology job into `outdir/<run_name>/`
//! as SCALE-Sim does.

use std::path::{Path, PathBuf};

use super::network::{time_topology, NetworkTiming, TimingError};
use super::output::py_float;
use super::scalesim::{load_topology, ScaleSimConfig, ScaleSimError};

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

/// `DETAILED_ACCESS_REPORT.csv` text.
pub fn detailed_access_report(t: &NetworkTiming) -> String {
    let mut s = String::from(
        "LayerID, SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,\n",
    );
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
        let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        s += &format!("{i}, {},\n", v.join(", "));
    }
    s
}

/// Write the three reports into `dir` (created if needed), atomically.
pub fn write_reports(t: &NetworkTiming, dir: &Path) -> Result<(), JobError> {
    std::fs::create_dir_all(dir).map_err(|source| JobError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, text) in [
        ("COMPUTE_REPORT.csv", compute_report(t)),
        ("BANDWIDTH_REPORT.csv", bandwidth_report(t)),
        ("DETAILED_ACCESS_REPORT.csv", detailed_access_report(t)),
    ] {
        crate::report::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// SCALE-Sim has no clock; times in ftnas' own outputs of a SCALE-Sim job
/// are at this nominal clock.
pub const SCALESIM_NOMINAL_CLOCK_MHZ: f64 = 1000.0;

/// Run a SCALE-Sim job: read `cfg` and `topology`, time every layer, write
/// the three reports into `outdir/<run_name>/`. Returns the timing and the
/// report directory.
pub fn run_job(
    cfg: &Path,
    topology: &Path,
    outdir: &Path,
) -> Result<(NetworkTiming, PathBuf), JobError> {
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
    write_reports(&t, &dir)?;
    Ok((t, dir))
}
