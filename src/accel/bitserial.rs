//! Analytical timing of bit-serial designs (DNNsim's Stripes and Loom
//! models) for one lowered layer.
//!
//! The bit-parallel baseline (DaDianNao) does one *step* per cycle: per tile,
//! `windows` output windows x `filters` filters x `lanes` input channels.
//! A layer needs `ceil(M/(filters*tiles)) * ceil(pixels/windows) *
//! kh*kw*ceil(C/lanes)` steps (filters spread over tiles, windows over the
//! window lanes, the reduction over channel lanes and kernel taps).
//! Bit-serial designs spend several cycles per step:
//! - Stripes (activations serial): `ceil(min(Pa, 16) / bits_per_cycle)`;
//! - Loom (both serial): `ceil(Pa / bits_per_cycle) * Pw`.
//!
//! `Pa`/`Pw` are the layer's activation/weight precisions: those of the
//! quantized model when given, else the datapath widths. In per-group mode
//! the hardware detects a precision per group of activations at run time and
//! a step takes as long as its slowest group; without activation data the
//! model uses the layer precision for every group, which is the upper bound
//! of per-group timing (equal to it when any group needs full precision).
//! Memory is assumed to keep up (no stalls): operands are read from DRAM
//! once and SRAM traffic is counted per useful operand use.

use super::description::{Accelerator, BitSerial, Serial};
use super::lower::LoweredLayer;
use super::timing::{Gemm, LayerTiming};

/// Cycles one step takes at activation/weight precisions `pa`, `pw`.
pub fn cycles_per_step(b: &BitSerial, pa: u8, pw: u8) -> u64 {
    let bits = b.bits_per_cycle.max(1) as u64;
    match b.serial {
        Serial::Activations => (pa.min(16) as u64).div_ceil(bits),
        Serial::Both => (pa as u64).div_ceil(bits) * pw as u64,
    }
}

/// Baseline steps of one group of a lowered layer.
pub fn steps(b: &BitSerial, l: &LoweredLayer, g: &Gemm) -> u64 {
    let filter_sets = l.layer.num_filters.div_ceil(b.filters * b.tiles) as u64;
    let window_sets = g.pixels.div_ceil(b.windows) as u64;
    let taps = (l.layer.filter_h * l.layer.filter_w) as u64;
    let lane_sets = l.layer.channels.div_ceil(b.lanes) as u64;
    filter_sets * window_sets * taps * lane_sets
}

/// Time one lowered layer on a bit-serial accelerator at precisions
/// `(pa, pw)`. Returns `None` if `acc` is not bit-serial or the layer is
/// degenerate.
pub fn time_layer(acc: &Accelerator, l: &LoweredLayer, pa: u8, pw: u8) -> Option<LayerTiming> {
    let b = acc.bitserial.as_ref()?;
    let gemm = Gemm::of_scalesim_layer(&l.layer)?;
    let groups = l.groups.max(1) as u64;
    let n_steps = steps(b, l, &gemm) * groups;
    let cps = cycles_per_step(b, pa, pw);
    let total = n_steps * cps;
    let units = (b.tiles * b.windows * b.filters * b.lanes) as f64;
    let macs = gemm.macs() * groups;
    let mapping_eff = macs as f64 / (n_steps as f64 * units);
    // Nominal throughput is at full datapath precision; a layer at lower
    // precision can beat it (overall util > mapping efficiency).
    let full_cps = cycles_per_step(b, acc.datapath.act_bits, acc.datapath.weight_bits);
    let overall = macs as f64 * full_cps as f64 / (total.max(1) as f64 * units);
    let filter_sets = l.layer.num_filters.div_ceil(b.filters * b.tiles) as u64;
    let window_sets = gemm.pixels.div_ceil(b.windows) as u64;
    let window = gemm.window as u64;
    let ifmap_words = (l.layer.ifmap_h * l.layer.ifmap_w * l.layer.channels) as u64 * groups;
    let filter_words = window * gemm.filters as u64 * groups;
    let ofmap_words = (gemm.pixels * gemm.filters) as u64 * groups;
    let last = total.saturating_sub(1);
    Some(LayerTiming {
        name: l.layer.name.clone(),
        kind: l.kind.to_string(),
        repeats: groups as usize,
        gemm,
        macs,
        compute_cycles: total,
        stall_cycles: 0,
        total_cycles: total,
        overall_util_pct: 100.0 * overall,
        mapping_eff_pct: 100.0 * mapping_eff,
        compute_util_pct: 100.0 * mapping_eff,
        sram_ifmap_reads: filter_sets * gemm.pixels as u64 * window * groups,
        sram_filter_reads: window_sets * window * gemm.filters as u64 * groups,
        sram_ofmap_writes: ofmap_words,
        dram_ifmap_reads: ifmap_words,
        dram_filter_reads: filter_words,
        dram_ofmap_writes: ofmap_words,
        sram_ifmap_start: 0,
        sram_ifmap_stop: last,
        sram_filter_start: 0,
        sram_filter_stop: last,
        sram_ofmap_start: cps.saturating_sub(1),
        sram_ofmap_stop: last,
        dram_ifmap_start: 0,
        dram_ifmap_stop: last,
        dram_filter_start: 0,
        dram_filter_stop: last,
        dram_ofmap_start: cps.saturating_sub(1),
        dram_ofmap_stop: last,
        time_us: total as f64 / acc.clock_mhz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::description::Precision;

    fn design(serial: Serial, bits: u8) -> BitSerial {
        BitSerial {
            tiles: 4,
            windows: 16,
            filters: 16,
            lanes: 16,
            serial,
            bits_per_cycle: bits,
            precision: Precision::PerLayer,
            group_size: None,
        }
    }

    #[test]
    fn stripes_and_loom_cycles_per_step() {
        let s = design(Serial::Activations, 1);
        assert_eq!(cycles_per_step(&s, 8, 8), 8);
        assert_eq!(cycles_per_step(&s, 20, 8), 16, "Stripes caps Pa at 16");
        let l = design(Serial::Both, 2);
        assert_eq!(cycles_per_step(&l, 7, 5), 4 * 5);
        assert_eq!(cycles_per_step(&design(Serial::Both, 1), 8, 8), 64);
    }
}
