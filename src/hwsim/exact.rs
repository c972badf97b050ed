//! Fast exact fault path (issue 4): the result of [`SystolicArray::run`]
//! with hardware faults, bit for bit, without stepping the array.
//!
//! This module owns the fault-effect analysis. It computes the fault-free
//! GEMM once with the engine's integer kernels (`clean.rs`), works out from
//! the [`Mapping`] which outputs every fault can reach (its *reach*), and
//! recomputes only those outputs, each from the faults that reach it, in the
//! order the hardware accumulates it (`os.rs` for output stationary,
//! `stationary.rs` for WS and IS). Nothing else is touched, so the cost is
//! the clean GEMM plus `O(touched outputs * K)`. A caller that already has
//! the fault-free accumulator values (a network executor running the fast
//! engine) passes them to [`run_exact_from_clean`] and pays only the second
//! term.
//!
//! # How one output is recomputed
//!
//! An output's accumulation is a sequence of *positions*, one per adder
//! step in hardware order: the fold's local cycles for OS (the product of
//! reduction index `k = c - i - j` is added in cycle `c`; the other cycles
//! add a product of non-live operands, which is zero unless both operand
//! registers are corrupted), and the PE rows of every row fold for WS/IS
//! (position `fr*rows + r` adds term `k = fr*rows + r`; rows past `K` are
//! padding). Each dataflow module gives, per position, the clean product,
//! the exact product (operand values after every fault that touched them on
//! their way, multiplier faults, in cycle order and, within a cycle,
//! transient flips in fault-list order before stuck-at bits, exactly as the
//! stepping loops apply them) and the `psum_reg` faults acting before the
//! add. Positions whose product can differ from the clean one are listed
//! (*special* positions). Then:
//!
//! - no `psum_reg` fault on the output, and the accumulator wraps or can
//!   provably never saturate (`positions * 2^(act_bits+weight_bits-1) <=
//!   max psum`): the result is the clean output plus the product changes at
//!   the special positions, wrapped (addition is associative modulo
//!   `2^psum_bits`): `O(special positions)`;
//! - otherwise the output is replayed position by position with the
//!   accumulator rule after every add and the psum faults at their point of
//!   the sum: `O(positions) = O(K + rows + cols)`.
//!
//! Several faults on one output are exact because the per-position
//! evaluation applies all of them, in hardware order; the reach only decides
//! which outputs are looked at, and it includes every output a fault's
//! register value passes through even when the value is not live (two
//! corrupted non-live operands can meet in a PE).

pub(crate) mod clean;
pub(crate) mod engine_stuck;
mod os;
mod pair_dot;
mod stationary;
mod stuck;

use std::ops::Range;

use rayon::prelude::*;

use super::kernel::{BitOp, PsumRule};
use super::{
    Dataflow, FaultKind, FaultSite, Gemm, HwFault, HwRun, HwSimError, Mapping, RunStats,
    SystolicArray,
};
use crate::fixed::{max_code, Datapath, Overflow};

pub use clean::clean_gemm;

/// A validated fault as the analysis sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    /// Position in the caller's fault list: ties between faults acting on
    /// one register in one cycle are applied in list order.
    pub index: usize,
    pub site: FaultSite,
    pub row: usize,
    pub col: usize,
    pub op: BitOp,
    pub width: u32,
    /// Transient: `(fold, local cycle)`; permanent: `None`.
    pub at: Option<(usize, i64)>,
}

impl Event {
    fn new(index: usize, f: &HwFault, dp: &Datapath, mapping: &Mapping) -> Event {
        let at = match f.kind {
            FaultKind::Flip { cycle } => Some((
                (cycle / mapping.cycles_per_fold) as usize,
                (cycle % mapping.cycles_per_fold) as i64,
            )),
            FaultKind::StuckAt0 | FaultKind::StuckAt1 => None,
        };
        Event {
            index,
            site: f.site,
            row: f.row,
            col: f.col,
            op: f.op(),
            width: f.site.width(dp),
            at,
        }
    }

    #[inline]
    pub(crate) fn permanent(&self) -> bool {
        self.at.is_none()
    }

    /// The bit operation on a value of this site.
    #[inline]
    pub(crate) fn apply(&self, v: i32) -> i32 {
        self.op.apply(v, self.width)
    }

    /// Order of faults acting on one register in one cycle: transient flips
    /// (in list order) before the stuck-at bits (in list order).
    #[inline]
    pub(crate) fn cycle_order(&self) -> (bool, usize) {
        (self.permanent(), self.index)
    }
}

/// The stuck-at bits of one register, in the order they act, folded into
/// one mask pair: `v -> sign_extend((v & and) | or)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StuckMask {
    and: i32,
    or: i32,
    shift: u32,
}

impl StuckMask {
    /// `None` if any of the faults is a transient flip.
    pub(crate) fn of(events: &[Event], width: u32) -> Option<StuckMask> {
        let mut mask = StuckMask {
            and: -1,
            or: 0,
            shift: 32 - width,
        };
        for ev in events {
            match ev.op {
                _ if !ev.permanent() => return None,
                BitOp::Stuck0(b) => {
                    mask.and &= !(1i32 << b);
                    mask.or &= !(1i32 << b);
                }
                BitOp::Stuck1(b) => mask.or |= 1i32 << b,
                BitOp::Flip(_) => return None,
            }
        }
        Some(mask)
    }

    #[inline(always)]
    pub(crate) fn apply(self, v: i32) -> i32 {
        (((v & self.and) | self.or) << self.shift) >> self.shift
    }
}

/// Positions whose product may differ from the fault-free one.
pub(crate) enum Special<'a> {
    /// Every position in the range.
    Range(Range<usize>),
    /// These positions, sorted and distinct.
    Sparse(&'a [usize]),
}

/// One output's accumulation in hardware order, as a dataflow sees it.
pub(crate) trait OutputTrace {
    /// Adder steps of the output, over all the folds that accumulate it.
    fn positions(&self) -> usize;
    /// Product added at `pos` without faults (zero where nothing is live).
    fn clean_product(&self, pos: usize) -> i32;
    /// Product added at `pos` with every fault of the output applied.
    fn exact_product(&self, pos: usize) -> i32;
    /// Whether any `psum_reg` fault acts on the output.
    fn has_psum_faults(&self) -> bool;
    /// The accumulator after the `psum_reg` faults acting before the add at `pos`.
    fn psum_before(&self, pos: usize, acc: i32) -> i32;
    /// The value read out after the last add.
    fn psum_at_end(&self, acc: i32) -> i32;
}

/// Datapath facts every output evaluation needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arith {
    dp: Datapath,
    rule: PsumRule,
    /// Without psum faults, no partial sum of `positions` products can
    /// leave the accumulator range (so saturation never acts).
    never_saturates: bool,
}

impl Arith {
    fn new(dp: &Datapath, positions: usize) -> Arith {
        // Largest product magnitude: a corrupted multiplier output of
        // act_bits + weight_bits bits.
        let max_product = 1u128 << (u32::from(dp.act_bits) + u32::from(dp.weight_bits) - 1);
        Arith {
            dp: *dp,
            rule: PsumRule::new(dp),
            never_saturates: positions as u128 * max_product <= max_code(dp.psum_bits) as u128,
        }
    }
}

/// The exact value of one output given its trace, its special positions and
/// its fault-free value.
pub(crate) fn settle<T: OutputTrace>(
    trace: &T,
    special: &Special,
    clean: i64,
    arith: &Arith,
) -> i64 {
    let linear = arith.dp.overflow == Overflow::Wrap || arith.never_saturates;
    if !trace.has_psum_faults() && linear {
        let delta = |pos: usize| trace.exact_product(pos) as i64 - trace.clean_product(pos) as i64;
        let change: i64 = match special {
            Special::Range(r) => r.clone().map(delta).sum(),
            Special::Sparse(list) => list.iter().map(|&p| delta(p)).sum(),
        };
        return arith.dp.acc_limit(clean + change);
    }
    let rule = arith.rule;
    let mut acc = 0i32;
    let mut next_sparse = 0usize;
    for pos in 0..trace.positions() {
        acc = trace.psum_before(pos, acc);
        let is_special = match special {
            Special::Range(r) => r.contains(&pos),
            Special::Sparse(list) => {
                if list.get(next_sparse) == Some(&pos) {
                    next_sparse += 1;
                    true
                } else {
                    false
                }
            }
        };
        let p = if is_special {
            trace.exact_product(pos)
        } else {
            trace.clean_product(pos)
        };
        acc = rule.add(acc, p);
    }
    trace.psum_at_end(acc) as i64
}

/// Run one GEMM on the array with faults, computing only what the faults
/// change: the same outputs, errors and statistics as [`SystolicArray::run`].
pub fn run_exact(
    array: &SystolicArray,
    gemm: &Gemm,
    dp: &Datapath,
    faults: &[HwFault],
) -> Result<HwRun, HwSimError> {
    let mapping = validate(array, gemm, dp, faults)?;
    Ok(correct(
        array,
        gemm,
        dp,
        faults,
        mapping,
        clean_gemm(gemm, dp),
    ))
}

/// [`run_exact`] starting from a fault-free result the caller already has
/// (e.g. the fast engine's accumulator values of this layer, before
/// requantization): only the fault corrections are computed. `clean` must
/// be `E x M` accumulator values of this GEMM under this datapath's rule
/// (what [`clean_gemm`] returns); its length is checked, its values are
/// trusted.
pub fn run_exact_from_clean(
    array: &SystolicArray,
    gemm: &Gemm,
    dp: &Datapath,
    faults: &[HwFault],
    clean: Vec<i64>,
) -> Result<HwRun, HwSimError> {
    let mapping = validate(array, gemm, dp, faults)?;
    if clean.len() != gemm.e * gemm.m {
        return Err(HwSimError::OperandSize {
            operand: "clean output",
            found: clean.len(),
            expected: gemm.e * gemm.m,
            rows: gemm.e,
            cols: gemm.m,
        });
    }
    Ok(correct(array, gemm, dp, faults, mapping, clean))
}

/// [`run_exact_from_clean`] for a caller that built the operands from
/// valid codes itself (the network's fast path): only the faults are
/// checked, not every operand code.
pub(crate) fn run_exact_from_clean_trusted(
    array: &SystolicArray,
    gemm: &Gemm,
    dp: &Datapath,
    faults: &[HwFault],
    clean: Vec<i64>,
) -> Result<HwRun, HwSimError> {
    let mapping = array.mapping(gemm.e, gemm.k, gemm.m);
    array.check_faults(dp, &mapping, faults)?;
    Ok(correct(array, gemm, dp, faults, mapping, clean))
}

/// The checks of [`SystolicArray::run`], in its order, with its errors.
fn validate(
    array: &SystolicArray,
    gemm: &Gemm,
    dp: &Datapath,
    faults: &[HwFault],
) -> Result<Mapping, HwSimError> {
    array.validate_run(gemm, dp, faults)
}

/// Replace the outputs the faults change in the fault-free result `out`.
fn correct(
    array: &SystolicArray,
    gemm: &Gemm,
    dp: &Datapath,
    faults: &[HwFault],
    mapping: Mapping,
    mut out: Vec<i64>,
) -> HwRun {
    if !faults.is_empty() {
        let events: Vec<Event> = faults
            .iter()
            .enumerate()
            .map(|(i, f)| Event::new(i, f, dp, &mapping))
            .collect();
        // Stuck bits are applied PE by PE (`stuck.rs`) wherever no flip
        // reaches; the outputs flips reach (and the few the PE-wise path
        // leaves out) are evaluated one by one with every fault.
        let (permanent, transient): (Vec<Event>, Vec<Event>) =
            events.iter().partition(|ev| ev.permanent());
        let stuck = (!permanent.is_empty()).then(|| stuck::changes(gemm, dp, &mapping, &permanent));
        let (mark, extra): (&[Event], &[usize]) = match &stuck {
            Some(s) => (&transient, &s.excluded),
            None => (&events, &[]),
        };
        let changed = match mapping.dataflow {
            Dataflow::Os => os::faulty_outputs(gemm, dp, &mapping, &events, mark, extra, &out),
            Dataflow::Ws | Dataflow::Is => {
                stationary::faulty_outputs(gemm, dp, &mapping, &events, mark, extra, &out)
            }
        };
        if let Some(stuck) = stuck {
            for (o, fix) in stuck.fixes {
                out[o] = match fix {
                    stuck::Fix::Delta(d) => dp.acc_limit(out[o] + d),
                    stuck::Fix::Value(v) => v,
                };
            }
        }
        for (o, v) in changed {
            out[o] = v;
        }
    }
    HwRun {
        out,
        mapping,
        stats: RunStats {
            stepped_cycles: mapping.cycles,
            pe_cycle_updates: mapping.cycles * (array.rows * array.cols) as u64,
        },
    }
}

/// Outputs marked at most once, in marking order.
pub(crate) struct Touched {
    marked: Vec<bool>,
    list: Vec<usize>,
}

impl Touched {
    pub(crate) fn new(outputs: usize) -> Touched {
        Touched {
            marked: vec![false; outputs],
            list: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn mark(&mut self, o: usize) {
        if !self.marked[o] {
            self.marked[o] = true;
            self.list.push(o);
        }
    }

    /// Evaluate every marked output with a per-thread scratch; in parallel
    /// only when there are enough of them to pay for waking the pool.
    pub(crate) fn evaluate<S: Default + Send>(
        self,
        eval: impl Fn(&mut S, usize) -> i64 + Sync + Send,
    ) -> Vec<(usize, i64)> {
        if self.list.len() < 1024 {
            let mut scratch = S::default();
            return self
                .list
                .iter()
                .map(|&o| (o, eval(&mut scratch, o)))
                .collect();
        }
        self.list
            .par_iter()
            .with_min_len(64)
            .map_init(S::default, |scratch, &o| (o, eval(scratch, o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_order_puts_flips_before_stuck_bits() {
        let dp = Datapath::INT8;
        let array = SystolicArray::new(2, 2, Dataflow::Os).unwrap();
        let mapping = array.mapping(2, 3, 2);
        let stuck = Event::new(
            0,
            &HwFault::stuck(FaultSite::ActReg, 0, 0, 1, true),
            &dp,
            &mapping,
        );
        let flip = Event::new(
            1,
            &HwFault::flip(FaultSite::ActReg, 0, 0, 1, 2),
            &dp,
            &mapping,
        );
        assert!(flip.cycle_order() < stuck.cycle_order());
        assert_eq!(flip.at, Some((0, 2)));
        // Fold 1 starts at cycles_per_fold = 3 + 2 + 2 - 2 = 5.
        let late = Event::new(
            2,
            &HwFault::flip(FaultSite::ActReg, 0, 0, 1, 7),
            &dp,
            &mapping,
        );
        assert_eq!(late.at, Some((1, 2)));
    }

    #[test]
    fn never_saturates_bound() {
        // 8x8-bit corrupted products reach 2^15; 2^16 of them fit 2^31 - 1 only just not.
        let dp = Datapath {
            overflow: Overflow::Saturate,
            ..Datapath::INT8
        };
        assert!(Arith::new(&dp, (1 << 16) - 1).never_saturates);
        assert!(!Arith::new(&dp, 1 << 16).never_saturates);
        let narrow = Datapath {
            psum_bits: 16,
            ..dp
        };
        assert!(!Arith::new(&narrow, 1).never_saturates);
    }
}
