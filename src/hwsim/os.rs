//! Output-stationary fold: each PE owns one output and accumulates its whole
//! reduction in its `psum_reg`; activations move right, weights move down.
//!
//! Fold `(fr, fc)` maps output pixel `e = fr*rows + i` to PE row `i` and
//! filter `m = fc*cols + j` to PE column `j`. In local cycle `c` PE `(i, j)`
//! holds `A[e][k]` in its `act_reg` and `W[k][m]` in its `weight_reg` with
//! `k = c - i - j` (the systolic skew: row `i` of the ifmap enters the left
//! edge `i` cycles late, column `j` of the filter enters the top edge `j`
//! cycles late), multiplies them and adds the product to its `psum_reg`. The
//! last product is formed by PE `(rows-1, cols-1)` in cycle `K+rows+cols-3`,
//! so a fold takes `K + rows + cols - 2` cycles; at the end of its last cycle
//! every `psum_reg` is copied to the ofmap buffer (read-out overlaps the next
//! fold, as in SCALE-Sim).
//!
//! Storage: a register row that shifts one PE per cycle is a delay line, so
//! the act registers of PE row `i` are one array indexed by
//! `j - c` (reversed, so a row is contiguous in `j`), and the weight
//! registers of all columns one time-major table indexed by `c - i`. A value
//! changed in a cell (a fault) is seen by every PE the cell still passes.

use super::fault::{FaultSite, FoldFaults, PeFault};
use super::kernel::{mac_row, simd_dispatch, PsumRule};
use super::{Geometry, Operands};

/// The registers of one output-stationary fold.
pub(crate) struct OsFold {
    rows: usize,
    cols: usize,
    /// Reduction length `K`.
    t: usize,
    cycles: usize,
    /// Valid PE rows / columns of this fold (the rest are zero padding).
    live_rows: usize,
    live_cols: usize,
    /// `act_line[i*act_len + (cycles-1) - c + j]` = `act_reg` of PE `(i, j)` in cycle `c`.
    act_line: Vec<i32>,
    act_len: usize,
    /// `weight_line[(c - i + rows-1)*cols + j]` = `weight_reg` of PE `(i, j)` in cycle `c`.
    weight_line: Vec<i32>,
    /// `psum[i*cols + j]` = `psum_reg` of PE `(i, j)`.
    psum: Vec<i32>,
}

impl OsFold {
    /// Load the skewed edge streams of fold `(fr, fc)` and clear the psums.
    pub(crate) fn new(g: &Geometry, ops: &Operands, fr: usize, fc: usize) -> OsFold {
        let (rows, cols, t) = (g.rows, g.cols, ops.k);
        let cycles = g.cycles_per_fold as usize;
        let act_len = cycles + cols - 1;
        let mut act_line = vec![0i32; rows * act_len];
        let live_rows = ops.e.saturating_sub(fr * rows).min(rows);
        let live_cols = ops.m.saturating_sub(fc * cols).min(cols);
        for i in 0..live_rows {
            let e = fr * rows + i;
            let a_row = &ops.a[e * ops.k..(e + 1) * ops.k];
            let line = &mut act_line[i * act_len..(i + 1) * act_len];
            // A[e][k] enters the left edge in cycle k + i.
            for (k, &v) in a_row.iter().enumerate() {
                line[cycles - 1 - i - k] = v;
            }
        }
        let mut weight_line = vec![0i32; (cycles + rows - 1) * cols];
        for j in 0..live_cols {
            let m = fc * cols + j;
            // W[k][m] enters the top edge in cycle k + j.
            for k in 0..t {
                weight_line[(k + j + rows - 1) * cols + j] = ops.w[k * ops.m + m];
            }
        }
        OsFold {
            rows,
            cols,
            t,
            cycles,
            live_rows,
            live_cols,
            act_line,
            act_len,
            weight_line,
            psum: vec![0; rows * cols],
        }
    }

    /// Whether PE `(i, j)` multiplies live operands in cycle `c`.
    fn live(&self, i: usize, j: usize, c: usize) -> bool {
        i < self.live_rows && j < self.live_cols && c >= i + j && c - i - j < self.t
    }

    /// The accumulator values of the fold, `psum[i*cols + j]`.
    pub(crate) fn psums(&self) -> &[i32] {
        &self.psum
    }

    pub(crate) fn live_rows(&self) -> usize {
        self.live_rows
    }

    pub(crate) fn live_cols(&self) -> usize {
        self.live_cols
    }

    /// Apply a register fault acting in cycle `c`; multiplier faults are
    /// returned to the caller, which applies them inside the row update.
    fn apply_register_fault(&mut self, f: &PeFault, c: usize) -> bool {
        let cell = match f.site {
            FaultSite::ActReg => {
                &mut self.act_line[f.row * self.act_len + self.cycles - 1 - c + f.col]
            }
            FaultSite::WeightReg => {
                &mut self.weight_line[(c + self.rows - 1 - f.row) * self.cols + f.col]
            }
            FaultSite::PsumReg => &mut self.psum[f.row * self.cols + f.col],
            FaultSite::MultOut => return false,
        };
        *cell = f.op.apply(*cell, f.width);
        true
    }
}

/// Step every cycle of the fold; returns the number of cycles stepped.
#[inline(always)]
fn step_fold(st: &mut OsFold, rule: PsumRule, faults: &FoldFaults) -> u64 {
    let (rows, cols, cycles, act_len) = (st.rows, st.cols, st.cycles, st.act_len);
    let mut stepped = 0u64;
    if faults.is_empty() {
        for c in 0..cycles {
            for i in 0..rows {
                let a = &st.act_line[i * act_len + cycles - 1 - c..][..cols];
                let w = &st.weight_line[(c + rows - 1 - i) * cols..][..cols];
                mac_row(rule, &mut st.psum[i * cols..(i + 1) * cols], a, w);
            }
            stepped += 1;
        }
        return stepped;
    }
    let mut cursor = 0usize;
    let mut active: Vec<PeFault> = Vec::new();
    let mut mult: Vec<PeFault> = Vec::new();
    for c in 0..cycles {
        faults.active_at(c as u64, &mut cursor, &mut active);
        mult.clear();
        for f in &active {
            if !st.apply_register_fault(f, c) {
                mult.push(*f);
            }
        }
        for i in 0..rows {
            let a0 = i * act_len + cycles - 1 - c;
            let w0 = (c + rows - 1 - i) * cols;
            if mult.iter().any(|f| f.row == i) {
                for j in 0..cols {
                    let mut p = st.act_line[a0 + j].wrapping_mul(st.weight_line[w0 + j]);
                    if st.live(i, j, c) {
                        for f in mult.iter().filter(|f| f.row == i && f.col == j) {
                            p = f.op.apply(p, f.width);
                        }
                    }
                    let acc = &mut st.psum[i * cols + j];
                    *acc = rule.add(*acc, p);
                }
            } else {
                let a = &st.act_line[a0..][..cols];
                let w = &st.weight_line[w0..][..cols];
                mac_row(rule, &mut st.psum[i * cols..(i + 1) * cols], a, w);
            }
        }
        stepped += 1;
    }
    // The read-out takes the registers' outputs: a stuck psum bit shows there too.
    for f in faults
        .permanent
        .iter()
        .filter(|f| f.site == FaultSite::PsumReg)
    {
        let cell = &mut st.psum[f.row * cols + f.col];
        *cell = f.op.apply(*cell, f.width);
    }
    stepped
}

simd_dispatch!(pub(crate) fn run_fold => step_fold(st: &mut OsFold, rule: PsumRule, faults: &FoldFaults) -> u64);
