//! Cycle-level functional model of a systolic array (issue 4).
//!
//! This module owns the register-level execution of one integer GEMM on a
//! `rows x cols` array of processing elements (PEs), fold after fold, with
//! the real codes in the PE registers, the datapath's accumulator rule, and
//! hardware faults injected where the hardware holds the value. It is
//! self-contained: it takes GEMM operands (codes after im2col) and a
//! [`Datapath`], and returns accumulator values and the cycles it stepped.
//!
//! # Operands and mapping
//!
//! The GEMM is `out[e][m] = sum_k A[e][k] * W[k][m]` with `A` the ifmap
//! operand matrix (`E x K`: output pixels x `R*S*C` reduction) and `W` the
//! filter operand matrix (`K x M`). As in SCALE-Sim v2 each dataflow maps a
//! `Sr x Sc` operand onto the array and streams `T` values through it:
//!
//! | dataflow | `(Sr, Sc, T)` | stays in the PEs | moves right | moves down |
//! |---|---|---|---|---|
//! | OS | `(E, M, K)` | `psum_reg` (one output per PE) | `act_reg` | `weight_reg` |
//! | WS | `(K, M, E)` | `weight_reg` (one weight per PE) | `act_reg` | `psum_reg` |
//! | IS | `(K, E, M)` | `act_reg` (one activation per PE) | `weight_reg` | `psum_reg` |
//!
//! `folds = ceil(Sr/rows) * ceil(Sc/cols)`; fold `(fr, fc)` covers PE rows
//! `fr*rows..` of `Sr` and PE columns `fc*cols..` of `Sc`. Folds run back to
//! back with the column fold outer and the row fold inner (fold index
//! `fc*row_folds + fr`), so for WS/IS the row folds that split one output's
//! reduction are consecutive. PEs beyond `Sr`/`Sc` in a partial fold see
//! zero operands and their sums are discarded, so padding never changes a
//! result.
//!
//! # Register-level model
//!
//! Every PE has an `act_reg` (`act_bits`), a `weight_reg` (`weight_bits`), a
//! multiplier whose output `mult_out` is `act_bits + weight_bits` wide, and a
//! `psum_reg` (`psum_bits`) feeding an adder that applies the datapath's
//! rule after every addition (wrap keeps the low bits, saturate clamps).
//!
//! - **Skew.** Moving operands enter at the array edges one cycle later per
//!   row (left edge) or per column (top edge) and advance one PE per cycle,
//!   so the operands of one multiply-accumulate meet in PE `(i, j)` exactly
//!   `i + j` cycles after they would meet in PE `(0, 0)`.
//! - **OS** (`os.rs`): in local cycle `c`, PE `(i, j)` holds `A[e][k]` and
//!   `W[k][m]` with `k = c - i - j`; its `psum_reg` holds the sum of the
//!   products `0..k`. A fold takes `K + rows + cols - 2` cycles (the last
//!   product is formed by PE `(rows-1, cols-1)` in cycle `K+rows+cols-3`);
//!   the `psum_reg`s are then copied to the ofmap buffer.
//! - **WS / IS** (`stationary.rs`, `ws.rs`, `is.rs`): `rows` preload cycles
//!   (PE row `p` latches its stationary operands from the column buses at the
//!   end of cycle `p`), then `T + rows + cols - 2` stream cycles in which the
//!   streamed operand of output `t` is in PE `(r, c)` in stream cycle
//!   `t + r + c` together with that output's partial sum, which arrived in
//!   the PE's `psum_reg` from the PE above. Row 0's `psum_reg` is loaded from
//!   the ofmap buffer (the running sum of the previous row folds), the bottom
//!   row writes back into it, so a reduction split over row folds is still
//!   accumulated in reduction order with the rule after every addition.
//!
//! Without faults the result is bit-identical to [`reference_gemm`], the
//! plain in-order loop with the same accumulator rule.
//!
//! # Cycle accounting
//!
//! Cycles per fold: OS `T + rows + cols - 2`, WS/IS `2*rows + cols + T - 2`
//! (preload + stream), exactly SCALE-Sim v2's. The model steps
//! `folds * cycles_per_fold` cycles, numbered `0..` over the whole GEMM
//! ([`Mapping::cycles`], counted again by the stepping loops in
//! [`RunStats::stepped_cycles`]). SCALE-Sim's "Total Cycles" is
//! `folds * cycles_per_fold - 1` because it is a timestamp, not a count:
//! SCALE-Sim v2's memory system walks the demand matrices one row per cycle
//! (row `i` is cycle `i`, plus stalls) and reports the service cycle of the
//! last ofmap demand row, the 0-based index of the last cycle. So
//! [`Mapping::scalesim_total_cycles`] is the index of the last cycle this
//! model steps, and `stepped_cycles == scalesim_total_cycles + 1` exactly. Fault cycles use the same numbering.
//!
//! # Fault sites
//!
//! A [`HwFault`] is a transient flip of one bit in one cycle, or a permanent
//! stuck-at-0/1 bit, at one site of one PE. A register fault acts on the
//! value the register holds during the cycle, before the PE uses it:
//!
//! - `pe.act_reg` / `pe.weight_reg`, **moving** (OS both, WS act, IS
//!   weight): the corrupted value is used by this PE and carried on to every
//!   PE it still passes in its row (or column), so one flip corrupts the
//!   terms of one operand value with every PE downstream. A stuck bit
//!   corrupts every value that passes the PE.
//! - `pe.weight_reg` (WS) / `pe.act_reg` (IS), **stationary**: a flip during
//!   the stream persists until the next preload and corrupts that operand's
//!   terms for every later output of the fold; a flip in a preload cycle
//!   before the row latched is overwritten (masked). A stuck bit corrupts the
//!   operand mapped to that PE in every fold.
//! - `pe.psum_reg`: in OS the PE's accumulator (a flip changes exactly one
//!   output, unless saturation later hides it; the read-out sees a stuck bit
//!   too); in WS/IS the register holding the partial sum passing down the
//!   column, so a flip changes the one output in flight through that PE.
//! - `pe.mult_out`: the product of a live multiply-accumulate; the
//!   multiplier's output register is only written for live operands (a
//!   valid bit travels with them), so a `mult_out` fault in a cycle without
//!   a live product is masked.
//!
//! The adder itself adds `act_reg * weight_reg` in every cycle; in a skew
//! bubble or a padding row one of the two is the zero the bubble carries,
//! so the sum is unchanged. Hence a single fault at a cycle where its site
//! holds no live value (skew bubbles, padding PEs, preload cycles of moving
//! registers) leaves every output unchanged — but two faults that corrupt
//! *both* operands of one bubble do add their product (e.g. stuck bits in
//! the act and weight registers of one PE, in the skew cycles before the
//! first or after the last term). The exact path (`exact.rs`) reproduces
//! this, and the exposure counts of `crate::derive` are for single flips.
//!
//! # Speed
//!
//! A register row that shifts one PE per cycle is stored as a delay line
//! (shifting costs nothing, and a corrupted cell is seen by every PE it still
//! passes), each cycle updates a whole PE row in one vectorized loop
//! (`i32` registers, AVX2 chosen at run time), folds run in parallel with
//! rayon and their results are merged in fold order, and the per-cycle fault
//! schedule is only consulted in folds that have faults.

pub mod bitserial;
pub mod bsnet;
pub mod exact;
pub(crate) mod fastnet;
pub mod fault;
pub(crate) mod is;
pub(crate) mod kernel;
pub mod layer;
pub mod network;
pub(crate) mod os;
pub mod spec;
pub mod sram;
pub(crate) mod stationary;
pub(crate) mod ws;

use rayon::prelude::*;

pub use crate::accel::Dataflow;
pub use bsnet::{AnyHwNetwork, BitSerialNetwork, BsExecutor};
pub use fault::{FaultKind, FaultSite, HwFault};
pub use layer::{CycleLevel, GemmExecutor, LayerGemm};
pub use network::{ChipFault, HwNetError, HwNetwork, ImageFaults, LayerFault};
pub use spec::{ChipFaults, FaultTarget, HwFaultSpec, HwSpecError, Site};
pub use sram::{SramBuffer, SramFault};

use crate::fixed::{max_code, min_code, Datapath, Overflow};
use fault::{schedule, FoldFaults};
use kernel::PsumRule;
use stationary::{StationaryFold, StationaryRoles};

/// Errors of the cycle-level model: bad array, datapath, operands or faults.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HwSimError {
    #[error("systolic array must have at least 1 row and 1 column, found {rows}x{cols}")]
    EmptyArray { rows: usize, cols: usize },
    #[error("invalid datapath: {0}")]
    Datapath(String),
    #[error("GEMM dimensions must be at least 1, found E={e}, K={k}, M={m}")]
    EmptyGemm { e: usize, k: usize, m: usize },
    #[error("operand {operand} has {found} codes, expected {expected} ({rows}x{cols})")]
    OperandSize {
        operand: &'static str,
        found: usize,
        expected: usize,
        rows: usize,
        cols: usize,
    },
    #[error("operand {operand}[{row}][{col}] = {value} does not fit a signed {bits}-bit code")]
    CodeOutOfRange {
        operand: &'static str,
        row: usize,
        col: usize,
        value: i32,
        bits: u8,
    },
    #[error("fault #{index} ({site} at PE ({row}, {col})): {reason}")]
    Fault {
        index: usize,
        site: FaultSite,
        row: usize,
        col: usize,
        reason: String,
    },
    #[error("bit-serial fault #{index} ({site} at ({row}, {col})): {reason}")]
    SipFault {
        index: usize,
        site: bitserial::SipSite,
        row: usize,
        col: usize,
        reason: String,
    },
}

/// One integer GEMM: `A` (`e x k`, row-major activation codes) times `W`
/// (`k x m`, row-major weight codes).
#[derive(Debug, Clone, Copy)]
pub struct Gemm<'a> {
    pub a: &'a [i32],
    pub w: &'a [i32],
    /// Output pixels `E` (rows of `A`).
    pub e: usize,
    /// Reduction length `K` (`R*S*C`).
    pub k: usize,
    /// Filters `M` (columns of `W`).
    pub m: usize,
}

/// How a GEMM maps onto the array, and the cycles that takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub dataflow: Dataflow,
    pub rows: usize,
    pub cols: usize,
    /// Operand rows mapped to PE rows.
    pub sr: usize,
    /// Operand columns mapped to PE columns.
    pub sc: usize,
    /// Values streamed through the array per fold.
    pub t: usize,
    pub row_folds: usize,
    pub col_folds: usize,
    pub folds: usize,
    pub cycles_per_fold: u64,
    /// Cycles of the whole GEMM: `folds * cycles_per_fold`.
    pub cycles: u64,
}

impl Mapping {
    /// SCALE-Sim v2's "Total Cycles": the index of the last cycle stepped.
    pub fn scalesim_total_cycles(&self) -> u64 {
        self.cycles - 1
    }

    /// Index of fold `(fr, fc)` in execution order.
    pub fn fold_index(&self, fr: usize, fc: usize) -> usize {
        fc * self.row_folds + fr
    }

    /// First cycle of a fold (by index).
    pub fn fold_start(&self, fold: usize) -> u64 {
        fold as u64 * self.cycles_per_fold
    }
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    /// Clock cycles the stepping loops executed, summed over folds.
    pub stepped_cycles: u64,
    /// PE updates: `rows * cols * stepped_cycles`.
    pub pe_cycle_updates: u64,
}

/// Result of a run: accumulator values `E x M` (row-major) and statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwRun {
    pub out: Vec<i64>,
    pub mapping: Mapping,
    pub stats: RunStats,
}

/// A systolic array of `rows x cols` PEs running one dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystolicArray {
    pub rows: usize,
    pub cols: usize,
    pub dataflow: Dataflow,
}

/// Fold geometry handed to the fold engines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub rows: usize,
    pub cols: usize,
    pub sr: usize,
    pub sc: usize,
    pub t: usize,
    pub cycles_per_fold: u64,
}

/// GEMM operands handed to the fold engines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub a: &'a [i32],
    pub w: &'a [i32],
    pub e: usize,
    pub k: usize,
    pub m: usize,
}

impl<'a> From<&Gemm<'a>> for Operands<'a> {
    fn from(g: &Gemm<'a>) -> Self {
        Operands {
            a: g.a,
            w: g.w,
            e: g.e,
            k: g.k,
            m: g.m,
        }
    }
}

impl SystolicArray {
    pub fn new(rows: usize, cols: usize, dataflow: Dataflow) -> Result<Self, HwSimError> {
        if rows == 0 || cols == 0 {
            return Err(HwSimError::EmptyArray { rows, cols });
        }
        Ok(SystolicArray {
            rows,
            cols,
            dataflow,
        })
    }

    /// The SCALE-Sim mapping of an `E x K` by `K x M` GEMM and its cycles.
    pub fn mapping(&self, e: usize, k: usize, m: usize) -> Mapping {
        let (sr, sc, t) = match self.dataflow {
            Dataflow::Os => (e, m, k),
            Dataflow::Ws => (k, m, e),
            Dataflow::Is => (k, e, m),
        };
        let row_folds = sr.div_ceil(self.rows);
        let col_folds = sc.div_ceil(self.cols);
        let folds = row_folds * col_folds;
        let (r, c, t64) = (self.rows as u64, self.cols as u64, t as u64);
        let cycles_per_fold = match self.dataflow {
            Dataflow::Os => t64 + r + c - 2,
            Dataflow::Ws | Dataflow::Is => 2 * r + c + t64 - 2,
        };
        Mapping {
            dataflow: self.dataflow,
            rows: self.rows,
            cols: self.cols,
            sr,
            sc,
            t,
            row_folds,
            col_folds,
            folds,
            cycles_per_fold,
            cycles: folds as u64 * cycles_per_fold,
        }
    }

    /// The checks every executor of [`SystolicArray::run`]'s contract makes,
    /// in order (array, datapath, operands, faults), and the mapping.
    pub(crate) fn validate_run(
        &self,
        gemm: &Gemm,
        dp: &Datapath,
        faults: &[HwFault],
    ) -> Result<Mapping, HwSimError> {
        if self.rows == 0 || self.cols == 0 {
            return Err(HwSimError::EmptyArray {
                rows: self.rows,
                cols: self.cols,
            });
        }
        dp.validate().map_err(HwSimError::Datapath)?;
        check_gemm(gemm, dp)?;
        let mapping = self.mapping(gemm.e, gemm.k, gemm.m);
        self.check_faults(dp, &mapping, faults)?;
        Ok(mapping)
    }

    /// Every fault must name a PE of this array, a bit of the datapath and
    /// a cycle of the mapping; the first that does not is the error.
    pub(crate) fn check_faults(
        &self,
        dp: &Datapath,
        mapping: &Mapping,
        faults: &[HwFault],
    ) -> Result<(), HwSimError> {
        for (index, f) in faults.iter().enumerate() {
            f.check(self.rows, self.cols, dp, mapping.cycles)
                .map_err(|reason| HwSimError::Fault {
                    index,
                    site: f.site,
                    row: f.row,
                    col: f.col,
                    reason,
                })?;
        }
        Ok(())
    }

    /// Execute the GEMM cycle by cycle with the given faults (none for a
    /// fault-free run). Returns accumulator values after the psum rule.
    pub fn run(&self, gemm: &Gemm, dp: &Datapath, faults: &[HwFault]) -> Result<HwRun, HwSimError> {
        let mapping = self.validate_run(gemm, dp, faults)?;
        let per_fold = if faults.is_empty() {
            Vec::new()
        } else {
            schedule(faults, mapping.folds, mapping.cycles_per_fold, dp)
        };
        let no_faults = FoldFaults::default();
        let fold_faults = |fold: usize| per_fold.get(fold).unwrap_or(&no_faults);
        let g = Geometry {
            rows: self.rows,
            cols: self.cols,
            sr: mapping.sr,
            sc: mapping.sc,
            t: mapping.t,
            cycles_per_fold: mapping.cycles_per_fold,
        };
        let ops = Operands::from(gemm);
        let rule = PsumRule::new(dp);
        let mut out = vec![0i64; gemm.e * gemm.m];
        let stepped_cycles = match self.dataflow {
            Dataflow::Os => run_os(&g, &ops, &mapping, rule, &fold_faults, &mut out),
            Dataflow::Ws => run_stationary::<ws::WeightStationary>(
                &g,
                &ops,
                &mapping,
                dp,
                faults,
                &fold_faults,
                &mut out,
            ),
            Dataflow::Is => run_stationary::<is::InputStationary>(
                &g,
                &ops,
                &mapping,
                dp,
                faults,
                &fold_faults,
                &mut out,
            ),
        };
        Ok(HwRun {
            out,
            mapping,
            stats: RunStats {
                stepped_cycles,
                pe_cycle_updates: stepped_cycles * (self.rows * self.cols) as u64,
            },
        })
    }
}

fn check_gemm(gemm: &Gemm, dp: &Datapath) -> Result<(), HwSimError> {
    check_gemm_codes(gemm, dp.act_bits, dp.weight_bits)
}

/// Check a GEMM's shape, operand sizes and that every code fits its
/// signed width (`act_bits` for `A`, `weight_bits` for `W`).
pub(crate) fn check_gemm_codes(
    gemm: &Gemm,
    act_bits: u8,
    weight_bits: u8,
) -> Result<(), HwSimError> {
    let (e, k, m) = (gemm.e, gemm.k, gemm.m);
    if e == 0 || k == 0 || m == 0 {
        return Err(HwSimError::EmptyGemm { e, k, m });
    }
    for (operand, codes, rows, cols, bits) in [
        ("A", gemm.a, e, k, act_bits),
        ("W", gemm.w, k, m, weight_bits),
    ] {
        if codes.len() != rows * cols {
            return Err(HwSimError::OperandSize {
                operand,
                found: codes.len(),
                expected: rows * cols,
                rows,
                cols,
            });
        }
        let (lo, hi) = (min_code(bits), max_code(bits));
        if let Some(i) = codes
            .iter()
            .position(|&v| (v as i64) < lo || (v as i64) > hi)
        {
            return Err(HwSimError::CodeOutOfRange {
                operand,
                row: i / cols,
                col: i % cols,
                value: codes[i],
                bits,
            });
        }
    }
    Ok(())
}

/// OS: folds are independent (each holds whole reductions); outputs are
/// disjoint.
fn run_os<'f>(
    g: &Geometry,
    ops: &Operands,
    mapping: &Mapping,
    rule: PsumRule,
    fold_faults: &(dyn Fn(usize) -> &'f FoldFaults + Sync),
    out: &mut [i64],
) -> u64 {
    let folds: Vec<(usize, usize)> = (0..mapping.col_folds)
        .flat_map(|fc| (0..mapping.row_folds).map(move |fr| (fr, fc)))
        .collect();
    let results: Vec<(usize, usize, os::OsFold, u64)> = folds
        .par_iter()
        .map(|&(fr, fc)| {
            let mut st = os::OsFold::new(g, ops, fr, fc);
            let cycles = os::run_fold(&mut st, rule, fold_faults(mapping.fold_index(fr, fc)));
            (fr, fc, st, cycles)
        })
        .collect();
    let mut stepped = 0;
    for (fr, fc, st, cycles) in results {
        stepped += cycles;
        let psum = st.psums();
        for i in 0..st.live_rows() {
            let e = fr * g.rows + i;
            for j in 0..st.live_cols() {
                out[e * ops.m + fc * g.cols + j] = psum[i * g.cols + j] as i64;
            }
        }
    }
    stepped
}

/// WS/IS: the row folds of one column fold chain through the ofmap buffer.
/// With a wrapping accumulator, addition is associative modulo `2^psum_bits`,
/// so row folds may run independently from zero and be summed in fold order
/// afterwards with the same bits — unless a `psum_reg` fault needs the true
/// running value in flight, in which case they run in sequence.
fn run_stationary<'f, R: StationaryRoles>(
    g: &Geometry,
    ops: &Operands,
    mapping: &Mapping,
    dp: &Datapath,
    faults: &[HwFault],
    fold_faults: &(dyn Fn(usize) -> &'f FoldFaults + Sync),
    out: &mut [i64],
) -> u64 {
    let rule = PsumRule::new(dp);
    let cols = g.cols;
    let independent =
        dp.overflow == Overflow::Wrap && !faults.iter().any(|f| f.site == FaultSite::PsumReg);
    // Per column fold: (fc, running sums T x cols, live columns, cycles).
    let columns: Vec<(usize, Vec<i32>, usize, u64)> = if independent {
        let folds: Vec<(usize, usize)> = (0..mapping.col_folds)
            .flat_map(|fc| (0..mapping.row_folds).map(move |fr| (fr, fc)))
            .collect();
        let parts: Vec<(Vec<i32>, usize, u64)> = folds
            .par_iter()
            .map(|&(fr, fc)| {
                let mut st = StationaryFold::new::<R>(g, ops, fr, fc, None);
                let cycles =
                    stationary::run_fold(&mut st, rule, fold_faults(mapping.fold_index(fr, fc)));
                (st.outputs(), st.live_cols(), cycles)
            })
            .collect();
        // Merge in fold order (row folds of a column fold are consecutive).
        parts
            .chunks(mapping.row_folds)
            .enumerate()
            .map(|(fc, chunk)| {
                let mut running = vec![0i32; g.t * cols];
                let mut cycles = 0;
                for (part, _, c) in chunk {
                    for (acc, &v) in running.iter_mut().zip(part) {
                        *acc = rule.add(*acc, v);
                    }
                    cycles += c;
                }
                (fc, running, chunk[0].1, cycles)
            })
            .collect()
    } else {
        (0..mapping.col_folds)
            .into_par_iter()
            .map(|fc| {
                let mut running = vec![0i32; g.t * cols];
                let mut cycles = 0;
                let mut live_cols = 0;
                for fr in 0..mapping.row_folds {
                    let mut st = StationaryFold::new::<R>(g, ops, fr, fc, Some(&running));
                    cycles += stationary::run_fold(
                        &mut st,
                        rule,
                        fold_faults(mapping.fold_index(fr, fc)),
                    );
                    running = st.outputs();
                    live_cols = st.live_cols();
                }
                (fc, running, live_cols, cycles)
            })
            .collect()
    };
    let mut stepped = 0;
    for (fc, running, live_cols, cycles) in columns {
        stepped += cycles;
        for t in 0..g.t {
            for c in 0..live_cols {
                out[R::out_index(ops, t, fc * cols + c)] = running[t * cols + c] as i64;
            }
        }
    }
    stepped
}

/// The plain in-order GEMM with the datapath's accumulator rule applied
/// after every addition: the oracle the array must match without faults.
pub fn reference_gemm(gemm: &Gemm, dp: &Datapath) -> Vec<i64> {
    reference_gemm_with(gemm.e, gemm.k, gemm.m, dp, |e, k, m| {
        gemm.a[e * gemm.k + k] as i64 * gemm.w[k * gemm.m + m] as i64
    })
}

/// In-order GEMM whose term `(e, k, m)` is `product(e, k, m)`: the reference
/// for faults whose effect is known term by term (a corrupted operand or
/// product), accumulated in reduction order with the datapath's rule.
pub fn reference_gemm_with(
    e: usize,
    k: usize,
    m: usize,
    dp: &Datapath,
    product: impl Fn(usize, usize, usize) -> i64,
) -> Vec<i64> {
    let mut out = vec![0i64; e * m];
    for ei in 0..e {
        for mi in 0..m {
            let mut acc = 0i64;
            for ki in 0..k {
                acc = dp.acc_limit(acc + product(ei, ki, mi));
            }
            out[ei * m + mi] = acc;
        }
    }
    out
}
