//! One quantized conv/linear layer ([`MacLayer`]) executed on the systolic
//! array: the layer's GEMMs, how they are built from the layer's codes, the
//! pluggable GEMM executor, and the finishing arithmetic shared with the
//! engines.
//!
//! # Lowering (as [`crate::accel::lower`] maps the layer for timing)
//!
//! A layer with `g` groups runs `g` GEMMs back to back, group 0 first. Group
//! `gi`'s GEMM is `E x K` by `K x M` with
//! - `E = out_h * out_w` output pixels, `e = oy * out_w + ox`;
//! - `K = C/g * kh * kw`, `k = (ci * kh + ky) * kw + kx` — the engines'
//!   reduction order `(c, kh, kw)`, so a saturating accumulator clamps the
//!   same partial sums in both;
//! - `M = out_c / g` filters, `m` the output channel within the group.
//!
//! The ifmap operand is the im2col of the input codes (padded taps are code 0,
//! as SCALE-Sim streams the materialised padding; dilation only spreads the
//! tap addresses), the filter operand is the weight codes of the group's
//! filters (`W[k][m] = weights[(gi*M + m) * K + k]`). A linear layer is a
//! 1x1 conv on `in x 1 x 1`: `E = 1`, `K = in`. Depthwise convs are groups
//! of `M = 1`. Grouped convs never pack groups side by side (see
//! `accel::lower` for why), so a grouped layer's GEMMs are exactly the
//! timing model's repeats.
//!
//! # Cycle numbering of a layer
//!
//! Every group's GEMM has the same mapping and takes
//! [`LayerGemm::group_cycles`] cycles; group `gi` occupies the layer cycles
//! `gi * group_cycles .. (gi + 1) * group_cycles`, and a fault's cycle in the
//! layer numbering is translated into the group GEMM's own numbering (the
//! one [`SystolicArray::run`] documents) by subtracting the group's start.
//! Permanent faults act in every group.
//!
//! # Finishing
//!
//! The accumulator of output `(oc, e)` is what the executor returns (after
//! the datapath's psum rule); then, exactly as the engines do, the bias is
//! added with the accumulator rule, the sum is requantized to the output
//! format, and [`crate::engine::finish_mac_output`] saturates and applies the
//! fused activation.

use crate::fixed::{requantize, Datapath};
use crate::quant::MacLayer;

use super::{FaultKind, Gemm, HwFault, HwRun, HwSimError, Mapping, SystolicArray};

/// Runs one integer GEMM on a systolic array, with hardware faults.
///
/// Contract (what [`CycleLevel`] does and any other executor must match bit
/// for bit): the result is [`SystolicArray::run`]'s — `out` holds the `E x M`
/// accumulator values after the datapath's psum rule, `mapping` is
/// `array.mapping(e, k, m)` and `stats.stepped_cycles` is `mapping.cycles`
/// (the cycles the hardware takes, whether or not they were stepped one by
/// one). Faults use the GEMM's own cycle numbering; invalid faults are
/// reported as [`HwSimError::Fault`].
pub trait GemmExecutor: Send + Sync {
    /// Short name for reports (`cycle-level`, ...).
    fn name(&self) -> &'static str;

    fn run(
        &self,
        array: &SystolicArray,
        gemm: &Gemm,
        dp: &Datapath,
        faults: &[HwFault],
    ) -> Result<HwRun, HwSimError>;

    /// Whether the executor is the exact path that starts from a clean
    /// result: a whole network then runs its fault-free layers and images
    /// through the fast engine and only corrects the faulty layers
    /// ([`super::fastnet`]), with the same results.
    fn exact_from_clean(&self) -> bool {
        false
    }
}

/// The register-level model: [`SystolicArray::run`], every cycle stepped.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleLevel;

impl GemmExecutor for CycleLevel {
    fn name(&self) -> &'static str {
        "cycle-level"
    }

    fn run(
        &self,
        array: &SystolicArray,
        gemm: &Gemm,
        dp: &Datapath,
        faults: &[HwFault],
    ) -> Result<HwRun, HwSimError> {
        array.run(gemm, dp, faults)
    }
}

/// The fast exact path ([`super::exact::run_exact`]): the fault-free
/// result computed fast and only the outputs the faults touch replayed,
/// proven bit-identical to [`CycleLevel`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Exact;

impl GemmExecutor for Exact {
    fn name(&self) -> &'static str {
        "exact"
    }

    fn exact_from_clean(&self) -> bool {
        true
    }

    fn run(
        &self,
        array: &SystolicArray,
        gemm: &Gemm,
        dp: &Datapath,
        faults: &[HwFault],
    ) -> Result<HwRun, HwSimError> {
        super::exact::run_exact(array, gemm, dp, faults)
    }
}

/// The GEMM shape of one layer on one array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerGemm {
    /// GEMMs run back to back (the layer's groups).
    pub groups: usize,
    /// Output pixels per group GEMM.
    pub e: usize,
    /// Reduction length per group GEMM.
    pub k: usize,
    /// Filters per group GEMM.
    pub m: usize,
    /// The mapping of one group's GEMM.
    pub mapping: Mapping,
    /// Cycles of one group's GEMM (`mapping.cycles`).
    pub group_cycles: u64,
    /// Cycles of the whole layer: `groups * group_cycles`.
    pub cycles: u64,
}

impl LayerGemm {
    pub fn new(array: &SystolicArray, layer: &MacLayer) -> LayerGemm {
        let o = layer.out_shape;
        let e = o.h * o.w;
        let k = layer.macs_per_output();
        let m = layer.cout_per_group();
        let mapping = array.mapping(e, k, m);
        LayerGemm {
            groups: layer.groups,
            e,
            k,
            m,
            mapping,
            group_cycles: mapping.cycles,
            cycles: mapping.cycles * layer.groups as u64,
        }
    }

    /// The faults acting in group `gi`, in that GEMM's cycle numbering:
    /// flips whose layer cycle falls in the group, shifted to its start, and
    /// every permanent fault.
    pub fn group_faults(&self, gi: usize, faults: &[HwFault]) -> Vec<HwFault> {
        let start = gi as u64 * self.group_cycles;
        let end = start + self.group_cycles;
        faults
            .iter()
            .filter_map(|f| match f.kind {
                FaultKind::Flip { cycle } if (start..end).contains(&cycle) => Some(HwFault {
                    kind: FaultKind::Flip {
                        cycle: cycle - start,
                    },
                    ..*f
                }),
                FaultKind::Flip { .. } => None,
                FaultKind::StuckAt0 | FaultKind::StuckAt1 => Some(*f),
            })
            .collect()
    }
}

/// The ifmap operand of group `gi` (`E x K`, row-major) from the layer's
/// input codes (CHW).
pub fn ifmap_operand(layer: &MacLayer, input: &[i32], gi: usize, a: &mut Vec<i32>) {
    let o = layer.out_shape;
    let k_len = layer.macs_per_output();
    a.clear();
    a.resize(o.h * o.w * k_len, 0);
    if k_len == 0 {
        return;
    }
    for (e, row) in a.chunks_exact_mut(k_len).enumerate() {
        crate::quant::int_ops::im2col_row(layer, input, gi, e, row);
    }
}

/// The filter operand of group `gi` (`K x M`, row-major) from weight codes
/// in the layout `[out, in/groups, kh, kw]`.
pub fn filter_operand(layer: &MacLayer, weights: &[i32], gi: usize, w: &mut Vec<i32>) {
    let k_len = layer.macs_per_output();
    let m_len = layer.cout_per_group();
    w.clear();
    w.resize(k_len * m_len, 0);
    for m in 0..m_len {
        let filter = &weights[(gi * m_len + m) * k_len..][..k_len];
        for (k, &code) in filter.iter().enumerate() {
            w[k * m_len + m] = code;
        }
    }
}

/// What running one layer measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Cycles the executor reported, summed over the groups.
    pub stepped_cycles: u64,
    /// PE updates, summed over the groups.
    pub pe_cycle_updates: u64,
}

/// Run layer `layer` on the array: `input` are its input codes (CHW),
/// `weights` its weight codes (possibly a corrupted copy), `faults` PE faults
/// in the layer's cycle numbering. Writes the finished output codes (CHW,
/// after bias, requantization, saturation and the fused activation) to
/// `out`, exactly as the engines would for the same GEMM accumulators.
#[allow(clippy::too_many_arguments)]
pub fn run_mac_layer(
    exec: &dyn GemmExecutor,
    array: &SystolicArray,
    layer: &MacLayer,
    dp: &Datapath,
    input: &[i32],
    weights: &[i32],
    faults: &[HwFault],
    out: &mut [i32],
) -> Result<LayerStats, HwSimError> {
    let stats = run_mac_layer_requantized(exec, array, layer, dp, input, weights, faults, out)?;
    crate::engine::finish_mac_output(layer, out, 0, None);
    Ok(stats)
}

/// [`run_mac_layer`] up to the requantized pre-activation codes (bias added,
/// requantized to the output format; no saturation hook, no activation):
/// where the engines' feature faults act, and what derivation measures.
#[allow(clippy::too_many_arguments)]
pub fn run_mac_layer_requantized(
    exec: &dyn GemmExecutor,
    array: &SystolicArray,
    layer: &MacLayer,
    dp: &Datapath,
    input: &[i32],
    weights: &[i32],
    faults: &[HwFault],
    out: &mut [i32],
) -> Result<LayerStats, HwSimError> {
    let shape = LayerGemm::new(array, layer);
    let mut stats = LayerStats::default();
    let (mut a, mut w) = (Vec::new(), Vec::new());
    for gi in 0..shape.groups {
        ifmap_operand(layer, input, gi, &mut a);
        filter_operand(layer, weights, gi, &mut w);
        let gemm = Gemm {
            a: &a,
            w: &w,
            e: shape.e,
            k: shape.k,
            m: shape.m,
        };
        let run = exec.run(array, &gemm, dp, &shape.group_faults(gi, faults))?;
        stats.stepped_cycles += run.stats.stepped_cycles;
        stats.pe_cycle_updates += run.stats.pe_cycle_updates;
        finish_group(layer, dp, shape.e, shape.m, gi, &run.out, out);
    }
    Ok(stats)
}

/// Group `gi`'s accumulators `acc` (`E x M` = `e_len x m_len`, after the psum rule) to the
/// layer's requantized pre-activation codes in `out` (CHW): bias added with
/// the accumulator rule, then requantized to the output format.
pub(crate) fn finish_group(
    layer: &MacLayer,
    dp: &Datapath,
    e_len: usize,
    m_len: usize,
    gi: usize,
    acc: &[i64],
    out: &mut [i32],
) {
    for m in 0..m_len {
        let oc = gi * m_len + m;
        let bias = layer.bias[oc] as i64;
        for e in 0..e_len {
            let acc = dp.acc_limit(acc[e * m_len + m] + bias);
            out[oc * e_len + e] = requantize(
                acc,
                layer.acc_frac,
                layer.out_format.frac,
                layer.out_format.bits,
            ) as i32;
        }
    }
}
