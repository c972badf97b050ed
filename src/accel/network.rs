//! Timing of a whole network on an accelerator: lowers the graph, times each
//! layer with the systolic or bit-serial model, and sums the totals.

use rayon::prelude::*;
use serde::Serialize;

use super::description::{Accelerator, Kind};
use super::lower::{lower, LoweredLayer};
use super::timing::{time_layer, ArrayConfig, LayerTiming};
use super::{bitserial, ScaleSimLayer};
use crate::model::Graph;

/// Errors of timing a network.
#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    /// A per-layer precision list does not match the model's MAC layers.
    #[error("{0}")]
    Precisions(String),
    /// A layer cannot be mapped (degenerate shape).
    #[error("layer `{0}`: cannot be mapped (zero-sized operand or filter larger than ifmap)")]
    Unmappable(String),
}

/// Sums over the layers of a network.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub layers: usize,
    pub macs: u64,
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    pub total_cycles: u64,
    /// MAC-weighted utilization of the whole run.
    pub overall_util_pct: f64,
    pub sram_ifmap_reads: u64,
    pub sram_filter_reads: u64,
    pub sram_ofmap_writes: u64,
    pub dram_ifmap_reads: u64,
    pub dram_filter_reads: u64,
    pub dram_ofmap_writes: u64,
    pub time_us: f64,
}

/// Per-layer timings and totals of one network on one accelerator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkTiming {
    pub accelerator: String,
    pub model: String,
    pub clock_mhz: f64,
    /// MAC units of the accelerator (for utilization of the totals).
    pub mac_units: usize,
    pub layers: Vec<LayerTiming>,
    pub totals: Totals,
}

impl NetworkTiming {
    /// Build from layer timings, computing the totals.
    pub fn new(
        accelerator: &str,
        model: &str,
        clock_mhz: f64,
        mac_units: usize,
        layers: Vec<LayerTiming>,
    ) -> NetworkTiming {
        let mut t = Totals {
            layers: layers.len(),
            ..Totals::default()
        };
        for l in &layers {
            t.macs += l.macs;
            t.compute_cycles += l.compute_cycles;
            t.stall_cycles += l.stall_cycles;
            t.total_cycles += l.total_cycles;
            t.sram_ifmap_reads += l.sram_ifmap_reads;
            t.sram_filter_reads += l.sram_filter_reads;
            t.sram_ofmap_writes += l.sram_ofmap_writes;
            t.dram_ifmap_reads += l.dram_ifmap_reads;
            t.dram_filter_reads += l.dram_filter_reads;
            t.dram_ofmap_writes += l.dram_ofmap_writes;
            t.time_us += l.time_us;
        }
        // Overall utilization of the run: a MAC-weighted mean of the layers'
        // (for bit-serial designs each layer's figure is against its nominal
        // full-precision peak, so weight by the layers' own figures).
        t.overall_util_pct = if t.total_cycles == 0 {
            0.0
        } else {
            layers
                .iter()
                .map(|l| l.overall_util_pct * l.total_cycles as f64)
                .sum::<f64>()
                / t.total_cycles as f64
        };
        NetworkTiming {
            accelerator: accelerator.to_string(),
            model: model.to_string(),
            clock_mhz,
            mac_units,
            layers,
            totals: t,
        }
    }
}

/// The systolic array of a (valid, systolic) description.
pub fn array_config(acc: &Accelerator) -> Option<ArrayConfig> {
    let s = acc.systolic.as_ref()?;
    let d = acc.derived();
    Some(ArrayConfig {
        rows: s.rows,
        cols: s.cols,
        dataflow: s.dataflow,
        ifmap_sram_words: d.ifmap_sram_words,
        filter_sram_words: d.filter_sram_words,
        ofmap_sram_words: d.ofmap_sram_words,
        interface: acc.interface(),
    })
}

/// Time every conv/linear/pooling layer of `graph` on `acc`.
///
/// `precisions`, if given, holds one `(act_bits, weight_bits)` per MAC layer
/// (conv/linear, in node order): the real per-layer precisions of a
/// quantized model, used by bit-serial designs. Pooling layers and absent
/// precisions use the datapath widths. Systolic arrays are bit-parallel, so
/// precisions do not change their timing.
pub fn time_graph(
    acc: &Accelerator,
    graph: &Graph,
    precisions: Option<&[(u8, u8)]>,
) -> Result<NetworkTiming, TimingError> {
    let lowered = lower(graph);
    let n_mac = lowered.iter().filter(|l| l.is_mac).count();
    if let Some(p) = precisions {
        if p.len() != n_mac {
            return Err(TimingError::Precisions(format!(
                "{} per-layer precisions given, model `{}` has {n_mac} conv/linear layers",
                p.len(),
                graph.name
            )));
        }
        if let Some((i, (a, w))) = p
            .iter()
            .enumerate()
            .find(|(_, (a, w))| !(1..=16).contains(a) || !(1..=16).contains(w))
        {
            return Err(TimingError::Precisions(format!(
                "precision #{i} ({a}, {w}): bits must be in 1..=16"
            )));
        }
    }
    let dp = acc.datapath;
    let mut mac_i = 0;
    let mut jobs = Vec::with_capacity(lowered.len());
    for l in &lowered {
        let (pa, pw) = if l.is_mac {
            let p = precisions.map(|p| p[mac_i]);
            mac_i += 1;
            p.unwrap_or((dp.act_bits, dp.weight_bits))
        } else {
            (dp.act_bits, dp.weight_bits)
        };
        jobs.push((l, pa, pw));
    }
    // Layers are independent; the memory model dominates, so spread them
    // over the cores (collect keeps node order).
    let layers = jobs
        .par_iter()
        .map(|&(l, pa, pw)| time_lowered(acc, l, pa, pw))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkTiming::new(
        &acc.name,
        &graph.name,
        acc.clock_mhz,
        acc.derived().mac_units,
        layers,
    ))
}

/// Time one lowered layer on `acc` at precisions `(pa, pw)`.
pub fn time_lowered(
    acc: &Accelerator,
    l: &LoweredLayer,
    pa: u8,
    pw: u8,
) -> Result<LayerTiming, TimingError> {
    let t = match acc.kind {
        Kind::Systolic => array_config(acc)
            .and_then(|arr| time_layer(&l.layer, l.kind, l.groups, &arr, acc.clock_mhz)),
        Kind::BitSerial => bitserial::time_layer(acc, l, pa, pw),
    };
    t.ok_or_else(|| TimingError::Unmappable(l.layer.name.clone()))
}

/// Time SCALE-Sim topology layers on an array (the layers are taken as
/// given: padded dims, SCALE-Sim's output-size rule). SCALE-Sim configs have
/// no clock; `clock_mhz` only converts cycles to time.
pub fn time_topology(
    arr: &ArrayConfig,
    clock_mhz: f64,
    accelerator: &str,
    model: &str,
    layers: &[ScaleSimLayer],
) -> Result<NetworkTiming, TimingError> {
    let timed = layers
        .par_iter()
        .map(|l| {
            time_layer(l, "conv", 1, arr, clock_mhz)
                .ok_or_else(|| TimingError::Unmappable(l.name.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkTiming::new(
        accelerator,
        model,
        clock_mhz,
        arr.rows * arr.cols,
        timed,
    ))
}
