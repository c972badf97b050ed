//! Closed-form compute timing of one layer on a systolic array, at parity
//! with SCALE-Sim v2: operand matrices after im2col, the (Sr, Sc, T)
//! mapping of each dataflow, folds, cycles per fold, the three utilization
//! figures, the SRAM access counts and the SRAM start/stop cycles of its
//! traces. Stalls and DRAM traffic come from [`super::memory::simulate`];
//! [`time_layer`] combines both into a [`LayerTiming`].
//!
//! Everything here is O(1) per layer: SCALE-Sim builds the demand matrices
//! cycle by cycle, but every figure it reports from them is a sum over folds
//! of identical-shape blocks, so it has a closed form.

use serde::Serialize;

use super::memory::{simulate, Interface, MemoryInput, MemoryReport};
use super::{Dataflow, ScaleSimLayer};

/// A systolic array as the timing model needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrayConfig {
    pub rows: usize,
    pub cols: usize,
    pub dataflow: Dataflow,
    pub ifmap_sram_words: usize,
    pub filter_sram_words: usize,
    pub ofmap_sram_words: usize,
    pub interface: Interface,
}

/// The GEMM a layer becomes after im2col (SCALE-Sim's operand matrices):
/// ifmap `pixels x window`, filter `window x filters`, ofmap `pixels x filters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gemm {
    /// Output pixels per filter (Eh*Ew).
    pub pixels: usize,
    /// Reduction length (R*S*C).
    pub window: usize,
    /// Number of filters (M).
    pub filters: usize,
}

impl Gemm {
    /// SCALE-Sim's operand shapes of a topology layer. Output size follows
    /// SCALE-Sim: `Eh = ceil((H - R + s) / s)`, which is one more than a
    /// real convolution's when `(H - R) % s != 0`. Returns `None` when the
    /// filter does not fit the ifmap or a dimension is zero.
    pub fn of_scalesim_layer(l: &ScaleSimLayer) -> Option<Gemm> {
        if l.stride == 0
            || l.filter_h == 0
            || l.filter_w == 0
            || l.channels == 0
            || l.num_filters == 0
            || l.ifmap_h < l.filter_h
            || l.ifmap_w < l.filter_w
        {
            return None;
        }
        let eh = (l.ifmap_h - l.filter_h + l.stride).div_ceil(l.stride);
        let ew = (l.ifmap_w - l.filter_w + l.stride).div_ceil(l.stride);
        Some(Gemm {
            pixels: eh * ew,
            window: l.filter_h * l.filter_w * l.channels,
            filters: l.num_filters,
        })
    }

    /// Multiply-accumulates of the GEMM.
    pub fn macs(&self) -> u64 {
        self.pixels as u64 * self.window as u64 * self.filters as u64
    }

    /// (Sr, Sc, T): the operand dimension spread over the array rows, the
    /// one over the columns, and the one streamed in time.
    pub fn mapping(&self, df: Dataflow) -> (usize, usize, usize) {
        match df {
            Dataflow::Os => (self.pixels, self.filters, self.window),
            Dataflow::Ws => (self.window, self.filters, self.pixels),
            Dataflow::Is => (self.window, self.pixels, self.filters),
        }
    }
}

/// Compute-side figures of one layer (no memory model involved).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ComputeTiming {
    pub sr: usize,
    pub sc: usize,
    pub t: usize,
    pub row_folds: usize,
    pub col_folds: usize,
    pub cycles_per_fold: u64,
    /// `folds * cycles_per_fold - 1`: SCALE-Sim's cycle count with no stall.
    pub compute_cycles: u64,
    pub mapping_eff_pct: f64,
    pub compute_util_pct: f64,
    pub sram_ifmap_reads: u64,
    pub sram_filter_reads: u64,
    pub sram_ofmap_writes: u64,
    /// Rows of the SRAM demand traces holding the first/last real address
    /// (cycle numbers in a run without stalls, before the read hit latency).
    pub ifmap_demand_first: u64,
    pub ifmap_demand_last: u64,
    pub filter_demand_first: u64,
    pub filter_demand_last: u64,
    pub ofmap_demand_first: u64,
    pub ofmap_demand_last: u64,
}

/// The SRAM read buffers answer one cycle after the request (SCALE-Sim's
/// read-buffer hit latency); writes are recorded in the cycle they happen.
pub const READ_HIT_LATENCY: u64 = 1;

/// Largest fold count for which the per-fold means are summed fold by fold
/// (SCALE-Sim's float summation order, so reports agree to the last digit);
/// beyond it the exact closed form is used.
const MAX_SUMMED_FOLDS: usize = 1 << 20;

/// Mean over folds of the mapping efficiency and of the compute utilization
/// (fractions). Folds run column fold outer, row fold inner; only the last
/// row fold and the last column fold are partly used.
#[allow(clippy::too_many_arguments)]
fn fold_means(
    sr: usize,
    sc: usize,
    rows: usize,
    cols: usize,
    row_folds: usize,
    col_folds: usize,
    t: u64,
    den: u64,
) -> (f64, f64) {
    let pes = (rows * cols) as u64;
    let folds = row_folds * col_folds;
    if folds > MAX_SUMMED_FOLDS {
        let mapping = (sr * sc) as f64 / (folds as f64 * pes as f64);
        return (mapping, mapping * t as f64 / den as f64);
    }
    let (mut map_sum, mut util_sum) = (0.0f64, 0.0f64);
    for fc in 0..col_folds {
        let c_used = (sc - fc * cols).min(cols) as u64;
        for fr in 0..row_folds {
            let r_used = (sr - fr * rows).min(rows) as u64;
            let used = r_used * c_used;
            map_sum += used as f64 / pes as f64;
            util_sum += (used * t) as f64 / (pes * den) as f64;
        }
    }
    (map_sum / folds as f64, util_sum / folds as f64)
}

/// Folds, cycles and SRAM counts of a GEMM on a `rows x cols` array.
pub fn compute(g: &Gemm, rows: usize, cols: usize, df: Dataflow) -> ComputeTiming {
    let (sr, sc, t) = g.mapping(df);
    let row_folds = sr.div_ceil(rows);
    let col_folds = sc.div_ceil(cols);
    let folds = (row_folds * col_folds) as u64;
    let (r, c, tt) = (rows as u64, cols as u64, t as u64);
    // Cycles per fold: OS streams T operand pairs plus the skew of both
    // edges; WS/IS first load the stationary operand (R rows), then stream T
    // plus skew and drain.
    let cpf = match df {
        Dataflow::Os => tt + r + c - 2,
        Dataflow::Ws | Dataflow::Is => 2 * r + c + tt - 2,
    };
    // SCALE-Sim's compute utilisation divides by the fold length of its
    // filter/ofmap demand matrix, which for WS/IS is one (C-1) longer than
    // the real fold (a documented quirk kept for parity).
    let util_den = match df {
        Dataflow::Os => cpf,
        Dataflow::Ws | Dataflow::Is => 2 * r + 2 * c + tt - 3,
    };
    let (mapping_eff, compute_util) =
        fold_means(sr, sc, rows, cols, row_folds, col_folds, tt, util_den);
    let (sr64, sc64) = (sr as u64, sc as u64);
    let (rf, cf) = (row_folds as u64, col_folds as u64);
    let (ifmap, filter, ofmap) = match df {
        // Each fold drains R+C words of skew padding into the ofmap count.
        Dataflow::Os => (
            cf * sr64 * tt,
            rf * sc64 * tt,
            sr64 * sc64 + folds * (r + c),
        ),
        // Partial sums are written once per row fold.
        Dataflow::Ws => (cf * sr64 * tt, sr64 * sc64, rf * sc64 * tt),
        Dataflow::Is => (sr64 * sc64, cf * sr64 * tt, rf * sc64 * tt),
    };
    // Rows used in the first fold and in the last fold (folds run column
    // fold outer, row fold inner, so the last fold is the last of both).
    let r_first = sr.min(rows) as u64;
    let r_last = (sr - (row_folds - 1) * rows) as u64;
    let c_last = (sc - (col_folds - 1) * cols) as u64;
    let last_fold = (folds - 1) * cpf;
    // Layout of one fold's demand rows (see SCALE-Sim's compute models):
    // OS: operands skewed over T + edge; ofmap after T-1 idle rows, flipped.
    // WS: stationary operand loaded in R rows (flipped), then the streamed
    // operand after R idle rows, skewed; ofmap after 2R-1 idle rows, skewed.
    // IS: as WS with ifmap and filter exchanging roles.
    let (i_first, i_last, f_first, f_last, o_first, o_last) = match df {
        Dataflow::Os => (
            0,
            last_fold + tt - 1 + r_last - 1,
            0,
            last_fold + tt - 1 + c_last - 1,
            tt - 1 + (r - r_first),
            last_fold + tt - 1 + r - 1 + c_last - 1,
        ),
        Dataflow::Ws => (
            r,
            last_fold + r + tt - 1 + r_last - 1,
            r - r_first,
            last_fold + r - 1,
            2 * r - 1,
            last_fold + 2 * r - 1 + tt - 1 + c_last - 1,
        ),
        Dataflow::Is => (
            r - r_first,
            last_fold + r - 1,
            r,
            last_fold + r + tt - 1 + r_last - 1,
            2 * r - 1,
            last_fold + 2 * r - 1 + tt - 1 + c_last - 1,
        ),
    };
    ComputeTiming {
        sr,
        sc,
        t,
        row_folds,
        col_folds,
        cycles_per_fold: cpf,
        compute_cycles: folds * cpf - 1,
        mapping_eff_pct: mapping_eff * 100.0,
        compute_util_pct: compute_util * 100.0,
        sram_ifmap_reads: ifmap,
        sram_filter_reads: filter,
        sram_ofmap_writes: ofmap,
        ifmap_demand_first: i_first,
        ifmap_demand_last: i_last,
        filter_demand_first: f_first,
        filter_demand_last: f_last,
        ofmap_demand_first: o_first,
        ofmap_demand_last: o_last,
    }
}

/// Everything reported for one layer (SCALE-Sim's three reports plus time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerTiming {
    pub name: String,
    /// Layer kind (`conv`, `dwconv`, `linear`, `maxpool`, `avgpool`, `gap`; SCALE-Sim topology rows are `conv`).
    pub kind: String,
    /// Times the GEMM is run back to back (groups of a grouped conv).
    pub repeats: usize,
    pub gemm: Gemm,
    pub macs: u64,
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    pub total_cycles: u64,
    pub overall_util_pct: f64,
    pub mapping_eff_pct: f64,
    pub compute_util_pct: f64,
    pub sram_ifmap_reads: u64,
    pub sram_filter_reads: u64,
    pub sram_ofmap_writes: u64,
    pub dram_ifmap_reads: u64,
    pub dram_filter_reads: u64,
    pub dram_ofmap_writes: u64,
    pub sram_ifmap_start: u64,
    pub sram_ifmap_stop: u64,
    pub sram_filter_start: u64,
    pub sram_filter_stop: u64,
    pub sram_ofmap_start: u64,
    pub sram_ofmap_stop: u64,
    pub dram_ifmap_start: u64,
    pub dram_ifmap_stop: u64,
    pub dram_filter_start: u64,
    pub dram_filter_stop: u64,
    pub dram_ofmap_start: u64,
    pub dram_ofmap_stop: u64,
    /// Wall time at the accelerator clock, microseconds.
    pub time_us: f64,
}

impl LayerTiming {
    /// SCALE-Sim's average bandwidths (words/cycle): SRAM over the whole
    /// layer, DRAM over each operand's own start..stop window.
    pub fn bandwidths(&self) -> [f64; 6] {
        let total = self.total_cycles.max(1) as f64;
        let dram = |n: u64, a: u64, b: u64| n as f64 / (b.saturating_sub(a) + 1) as f64;
        [
            self.sram_ifmap_reads as f64 / total,
            self.sram_filter_reads as f64 / total,
            self.sram_ofmap_writes as f64 / total,
            dram(
                self.dram_ifmap_reads,
                self.dram_ifmap_start,
                self.dram_ifmap_stop,
            ),
            dram(
                self.dram_filter_reads,
                self.dram_filter_start,
                self.dram_filter_stop,
            ),
            dram(
                self.dram_ofmap_writes,
                self.dram_ofmap_start,
                self.dram_ofmap_stop,
            ),
        ]
    }
}

/// Time one SCALE-Sim layer on an array: compute side in closed form, stalls
/// and DRAM traffic from the memory model. `repeats` runs the same GEMM that
/// many times back to back (the groups of a grouped convolution), which
/// multiplies every count; `clock_mhz` converts cycles to time.
pub fn time_layer(
    layer: &ScaleSimLayer,
    kind: &str,
    repeats: usize,
    arr: &ArrayConfig,
    clock_mhz: f64,
) -> Option<LayerTiming> {
    let gemm = Gemm::of_scalesim_layer(layer)?;
    let ct = compute(&gemm, arr.rows, arr.cols, arr.dataflow);
    let mem: MemoryReport = simulate(&MemoryInput {
        dataflow: arr.dataflow,
        rows: arr.rows,
        cols: arr.cols,
        layer: layer.clone(),
        ifmap_sram_words: arr.ifmap_sram_words,
        filter_sram_words: arr.filter_sram_words,
        ofmap_sram_words: arr.ofmap_sram_words,
        interface: arr.interface,
    });
    let n = repeats.max(1) as u64;
    let one_total = ct.compute_cycles + mem.stall_cycles;
    // Back-to-back repeats: each starts one cycle after the previous ends.
    let total = n * one_total + (n - 1);
    let macs = gemm.macs() * n;
    let pes = (arr.rows * arr.cols) as u64;
    // SRAM start/stop: the stalls shift the later rows of the trace; the
    // model places them all before the last demand row (exact for CALC, an
    // upper bound on the stop cycle in USER mode).
    let last_shift = (n - 1) * (one_total + 1) + mem.stall_cycles;
    Some(LayerTiming {
        name: layer.name.clone(),
        kind: kind.to_string(),
        repeats: n as usize,
        gemm,
        macs,
        compute_cycles: n * ct.compute_cycles + (n - 1),
        stall_cycles: n * mem.stall_cycles,
        total_cycles: total,
        // One rounding, as SCALE-Sim: (MACs*100) / (total*PEs).
        overall_util_pct: (macs as u128 * 100) as f64 / (total as u128 * pes as u128) as f64,
        mapping_eff_pct: ct.mapping_eff_pct,
        compute_util_pct: ct.compute_util_pct,
        sram_ifmap_reads: n * ct.sram_ifmap_reads,
        sram_filter_reads: n * ct.sram_filter_reads,
        sram_ofmap_writes: n * ct.sram_ofmap_writes,
        dram_ifmap_reads: n * mem.dram_ifmap_reads,
        dram_filter_reads: n * mem.dram_filter_reads,
        dram_ofmap_writes: n * mem.dram_ofmap_writes,
        sram_ifmap_start: ct.ifmap_demand_first + READ_HIT_LATENCY,
        sram_ifmap_stop: ct.ifmap_demand_last + READ_HIT_LATENCY + last_shift,
        sram_filter_start: ct.filter_demand_first + READ_HIT_LATENCY,
        sram_filter_stop: ct.filter_demand_last + READ_HIT_LATENCY + last_shift,
        sram_ofmap_start: ct.ofmap_demand_first,
        sram_ofmap_stop: ct.ofmap_demand_last + last_shift,
        dram_ifmap_start: mem.dram_ifmap_start,
        dram_ifmap_stop: mem.dram_ifmap_stop + (n - 1) * (one_total + 1),
        dram_filter_start: mem.dram_filter_start,
        dram_filter_stop: mem.dram_filter_stop + (n - 1) * (one_total + 1),
        dram_ofmap_start: mem.dram_ofmap_start,
        dram_ofmap_stop: mem.dram_ofmap_stop + (n - 1) * (one_total + 1),
        time_us: total as f64 / clock_mhz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(
        h: usize,
        w: usize,
        r: usize,
        s: usize,
        c: usize,
        m: usize,
        st: usize,
    ) -> ScaleSimLayer {
        ScaleSimLayer {
            name: "t".into(),
            ifmap_h: h,
            ifmap_w: w,
            filter_h: r,
            filter_w: s,
            channels: c,
            num_filters: m,
            stride: st,
        }
    }

    /// REFERENCE.md's checked runs of SCALE-Sim v2 (32x32 array).
    #[test]
    fn reference_runs() {
        let cases = [
            (layer(16, 16, 3, 3, 16, 32, 1), Dataflow::Os, 1441),
            (layer(16, 16, 3, 3, 16, 32, 1), Dataflow::Ws, 1449),
            (layer(16, 16, 3, 3, 16, 32, 1), Dataflow::Is, 4409),
            (layer(30, 30, 3, 3, 64, 64, 1), Dataflow::Os, 31899),
            (layer(30, 30, 3, 3, 64, 64, 1), Dataflow::Ws, 31607),
            (layer(30, 30, 3, 3, 64, 64, 1), Dataflow::Is, 71099),
            (layer(224, 224, 7, 7, 3, 64, 2), Dataflow::Os, 158421),
        ];
        for (l, df, want) in cases {
            let g = Gemm::of_scalesim_layer(&l).unwrap();
            assert_eq!(compute(&g, 32, 32, df).compute_cycles, want, "{l:?} {df:?}");
        }
        let conv1 = layer(224, 224, 7, 7, 3, 64, 2);
        let g = Gemm::of_scalesim_layer(&conv1).unwrap();
        assert_eq!(compute(&g, 256, 256, Dataflow::Ws).compute_cycles, 12865);
    }

    #[test]
    fn filter_larger_than_ifmap_is_rejected() {
        assert!(Gemm::of_scalesim_layer(&layer(2, 8, 3, 3, 1, 1, 1)).is_none());
        assert!(Gemm::of_scalesim_layer(&layer(8, 8, 3, 3, 1, 1, 0)).is_none());
    }
}
