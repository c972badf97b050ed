//! The fold engine shared by the two stationary dataflows (WS and IS): one
//! operand is preloaded into the PEs, the other streams in from the left
//! edge and moves right, partial sums flow down the columns.
//!
//! In SCALE-Sim's terms the stationary operand matrix is `Sr x Sc` (PE row
//! `r` <- reduction index `kr = fr*rows + r`, PE column `c` <- operand
//! column `sc = fc*cols + c`) and the streamed operand is `T x Sr`. A fold
//! has two phases:
//!
//! - **Preload**, `rows` cycles: in cycle `p` the column buses carry row `p`
//!   of the stationary tile, which PE row `p` latches at the end of the cycle.
//!   A stationary register therefore holds stale data in preload cycles
//!   `<= r` and its fold's value from cycle `r + 1` to the end of the fold.
//! - **Stream**, `T + rows + cols - 2` cycles: the streamed value `X[t][kr]`
//!   enters the left edge of row `r` in stream cycle `t + r` and reaches PE
//!   `(r, c)` in cycle `t + r + c`; in that cycle the partial sum of output
//!   `(t, sc)` arrives in the PE's `psum_reg` from the PE above (row 0's
//!   `psum_reg` is loaded from the ofmap buffer: the running sum of the
//!   previous row folds), and the PE passes `psum + X*S` on to the row below.
//!   The bottom row writes its sum into the ofmap buffer in the same cycle;
//!   the last write is by PE `(rows-1, cols-1)` in stream cycle
//!   `T + rows + cols - 3`.
//!
//! Because row 0 starts from the running sum, every output is accumulated in
//! reduction order with the psum rule applied after each addition, even when
//! `K` is split over several row folds.
//!
//! Storage: the psum register of PE `(r, c)` in stream cycle `s` is cell
//! `(s - r, c)` of a skewed table in which the sum for output `t` of column
//! `c` lives in row `t + c`; the streamed registers of PE row `r` are a delay
//! line indexed by `c - s`. Both make a PE row contiguous in memory.

use super::fault::{FaultSite, FoldFaults, PeFault};
use super::kernel::{mac_row, simd_dispatch, PsumRule};
use super::{Geometry, Operands};

/// Which operand a stationary dataflow keeps in the PEs and which it streams.
pub(crate) trait StationaryRoles {
    /// Site of the register holding the stationary operand.
    const STATIONARY_SITE: FaultSite;
    /// Site of the register holding the streamed operand.
    const STREAMING_SITE: FaultSite;
    /// Stationary operand `S[kr][sc]`.
    fn stationary(ops: &Operands, kr: usize, sc: usize) -> i32;
    /// Streamed operand `X[t][kr]`.
    fn streamed(ops: &Operands, t: usize, kr: usize) -> i32;
    /// Index in the `E x M` output of output `(t, sc)`.
    fn out_index(ops: &Operands, t: usize, sc: usize) -> usize;
}

/// The registers of one stationary-dataflow fold.
pub(crate) struct StationaryFold {
    rows: usize,
    cols: usize,
    /// Stream length `T`.
    t: usize,
    /// Stream-phase cycles `T + rows + cols - 2`.
    stream_cycles: usize,
    live_rows: usize,
    live_cols: usize,
    stationary_site: FaultSite,
    streaming_site: FaultSite,
    /// Tile the preload latches, row by row: `tile[r*cols + c]`.
    tile: Vec<i32>,
    /// `stat[r*cols + c]`: the stationary register of PE `(r, c)`.
    stat: Vec<i32>,
    /// `stream_line[r*line_len + (stream_cycles-1) - s + c]`: the streamed
    /// register of PE `(r, c)` in stream cycle `s`.
    stream_line: Vec<i32>,
    line_len: usize,
    /// `psum[(s - r + rows-1)*cols + c]`: the `psum_reg` of PE `(r, c)` in
    /// stream cycle `s`.
    psum: Vec<i32>,
}

impl StationaryFold {
    /// Set up fold `(fr, fc)`; `running` is the ofmap buffer's running sum of
    /// this column fold (`T x cols`, `running[t*cols + c]`), or `None` for 0.
    pub(crate) fn new<R: StationaryRoles>(
        g: &Geometry,
        ops: &Operands,
        fr: usize,
        fc: usize,
        running: Option<&[i32]>,
    ) -> StationaryFold {
        let (rows, cols, t) = (g.rows, g.cols, g.t);
        let stream_cycles = t + rows + cols - 2;
        let live_rows = g.sr.saturating_sub(fr * rows).min(rows);
        let live_cols = g.sc.saturating_sub(fc * cols).min(cols);
        let mut tile = vec![0i32; rows * cols];
        for r in 0..live_rows {
            for c in 0..live_cols {
                tile[r * cols + c] = R::stationary(ops, fr * rows + r, fc * cols + c);
            }
        }
        let line_len = stream_cycles + cols - 1;
        let mut stream_line = vec![0i32; rows * line_len];
        for r in 0..live_rows {
            let kr = fr * rows + r;
            let line = &mut stream_line[r * line_len..(r + 1) * line_len];
            // X[t][kr] enters the left edge of row r in stream cycle t + r.
            for ti in 0..t {
                line[stream_cycles - 1 - ti - r] = R::streamed(ops, ti, kr);
            }
        }
        let mut psum = vec![0i32; (stream_cycles + rows - 1) * cols];
        if let Some(run) = running {
            for ti in 0..t {
                for c in 0..cols {
                    psum[(ti + c + rows - 1) * cols + c] = run[ti * cols + c];
                }
            }
        }
        StationaryFold {
            rows,
            cols,
            t,
            stream_cycles,
            live_rows,
            live_cols,
            stationary_site: R::STATIONARY_SITE,
            streaming_site: R::STREAMING_SITE,
            tile,
            stat: vec![0; rows * cols],
            stream_line,
            line_len,
            psum,
        }
    }

    /// The sums the bottom row wrote to the ofmap buffer: `(T x cols)`,
    /// `[t*cols + c]` (padding columns included).
    pub(crate) fn outputs(&self) -> Vec<i32> {
        let (rows, cols) = (self.rows, self.cols);
        let mut out = vec![0i32; self.t * cols];
        for ti in 0..self.t {
            for c in 0..cols {
                out[ti * cols + c] = self.psum[(ti + c + rows - 1) * cols + c];
            }
        }
        out
    }

    pub(crate) fn live_cols(&self) -> usize {
        self.live_cols
    }

    /// Whether PE `(r, c)` multiplies live operands in stream cycle `s`.
    fn live(&self, r: usize, c: usize, s: usize) -> bool {
        r < self.live_rows && c < self.live_cols && s >= r + c && s - r - c < self.t
    }

    /// Apply a register fault acting in stream cycle `s`; returns false for
    /// multiplier faults, which act inside the row update.
    fn apply_stream_fault(&mut self, f: &PeFault, s: usize) -> bool {
        let cell = if f.site == self.stationary_site {
            &mut self.stat[f.row * self.cols + f.col]
        } else if f.site == self.streaming_site {
            &mut self.stream_line[f.row * self.line_len + self.stream_cycles - 1 - s + f.col]
        } else if f.site == FaultSite::PsumReg {
            &mut self.psum[(s + self.rows - 1 - f.row) * self.cols + f.col]
        } else {
            return false;
        };
        *cell = f.op.apply(*cell, f.width);
        true
    }

    /// Preload cycle `p`: faults act on the registers that already hold this
    /// fold's value (rows `< p`), then row `p` latches its operands. Nothing
    /// is in flight on the streaming registers, psums or multipliers.
    fn preload_cycle(&mut self, p: usize, active: &[PeFault]) {
        let cols = self.cols;
        for f in active {
            if f.site == self.stationary_site && f.row < p {
                let cell = &mut self.stat[f.row * cols + f.col];
                *cell = f.op.apply(*cell, f.width);
            }
        }
        self.stat[p * cols..(p + 1) * cols].copy_from_slice(&self.tile[p * cols..(p + 1) * cols]);
        // A stuck bit shows in the register's output from the latch on.
        for f in active {
            if f.site == self.stationary_site
                && f.row == p
                && !matches!(f.op, super::kernel::BitOp::Flip(_))
            {
                let cell = &mut self.stat[f.row * cols + f.col];
                *cell = f.op.apply(*cell, f.width);
            }
        }
    }
}

/// Step every cycle of the fold (preload then stream); returns the number of
/// cycles stepped.
#[inline(always)]
fn step_fold(st: &mut StationaryFold, rule: PsumRule, faults: &FoldFaults) -> u64 {
    let (rows, cols, stream_cycles, line_len) = (st.rows, st.cols, st.stream_cycles, st.line_len);
    let mut stepped = 0u64;
    if faults.is_empty() {
        for p in 0..rows {
            st.preload_cycle(p, &[]);
            stepped += 1;
        }
        for s in 0..stream_cycles {
            for r in 0..rows {
                let a = &st.stream_line[r * line_len + stream_cycles - 1 - s..][..cols];
                let w = &st.stat[r * cols..(r + 1) * cols];
                let p0 = (s + rows - 1 - r) * cols;
                mac_row(rule, &mut st.psum[p0..p0 + cols], a, w);
            }
            stepped += 1;
        }
        return stepped;
    }
    let mut cursor = 0usize;
    let mut active: Vec<PeFault> = Vec::new();
    let mut mult: Vec<PeFault> = Vec::new();
    for p in 0..rows {
        faults.active_at(p as u64, &mut cursor, &mut active);
        st.preload_cycle(p, &active);
        stepped += 1;
    }
    for s in 0..stream_cycles {
        faults.active_at((rows + s) as u64, &mut cursor, &mut active);
        mult.clear();
        for f in &active {
            if !st.apply_stream_fault(f, s) {
                mult.push(*f);
            }
        }
        for r in 0..rows {
            let a0 = r * line_len + stream_cycles - 1 - s;
            let p0 = (s + rows - 1 - r) * cols;
            if mult.iter().any(|f| f.row == r) {
                for c in 0..cols {
                    let mut prod = st.stream_line[a0 + c].wrapping_mul(st.stat[r * cols + c]);
                    if st.live(r, c, s) {
                        for f in mult.iter().filter(|f| f.row == r && f.col == c) {
                            prod = f.op.apply(prod, f.width);
                        }
                    }
                    let acc = &mut st.psum[p0 + c];
                    *acc = rule.add(*acc, prod);
                }
            } else {
                let a = &st.stream_line[a0..][..cols];
                let w = &st.stat[r * cols..(r + 1) * cols];
                mac_row(rule, &mut st.psum[p0..p0 + cols], a, w);
            }
        }
        stepped += 1;
    }
    stepped
}

simd_dispatch!(pub(crate) fn run_fold => step_fold(st: &mut StationaryFold, rule: PsumRule, faults: &FoldFaults) -> u64);
