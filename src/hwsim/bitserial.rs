//! Cycle-level functional model of the bit-serial designs (Stripes, Loom),
//! as DNNsim organises them and `accel::bitserial` times them.
//!
//! This file owns the register-level execution of one conv/linear layer (one
//! group: a dense GEMM) on a bit-serial accelerator: activation codes shifted
//! out `bits_per_cycle` bits at a time, weights held in parallel registers
//! (Stripes) or also consumed one bit per cycle (Loom), serial inner-product
//! units (SIPs) that sum their lanes and shift-add into an accumulator, and
//! hardware faults in those registers.
//!
//! # Organisation and step order
//!
//! A design has `tiles` tiles; each tile has `windows x filters` SIPs, and a
//! SIP reduces `lanes` input channels of one kernel tap per step. All tiles
//! see the same windows (activations are broadcast to the tiles) and hold
//! different filters. Steps run in the order
//! `filter set > window set > tap > lane set` (outer to inner), exactly the
//! `filter_sets * window_sets * taps * lane_sets` steps of
//! [`crate::accel::bitserial::steps`]. In step `(fs, ws, tap, ls)`:
//!
//! - SIP `(t, w, f)` computes output pixel `e = ws*windows + w` of filter
//!   `m = fs*filters*tiles + t*filters + f`;
//! - lane `l` carries input channel `c = ls*lanes + l` of kernel tap `tap`,
//!   which is reduction index `k = c*taps + tap` of the GEMM — the engine's
//!   im2col order (`k = ci*kh*kw + ky*kw + kx`);
//! - indices beyond `E`, `M` or `C` are idle (a valid bit gates them: zero
//!   operands, no accumulation).
//!
//! A SIP's accumulator is cleared when a new `(fs, ws)` block starts and
//! holds its output through the block's `taps * lane_sets` steps; the value
//! is then written to the ofmap buffer.
//!
//! # Arithmetic
//!
//! An activation code `a` at precision `Pa` (two's complement, `Pa` bits,
//! the top bit weighing `-2^(Pa-1)`) is split into `n = ceil(Pa/b)` bit
//! groups of `b = bits_per_cycle` bits, least significant first; group `i`
//! has the signed value `g_i` (the group holding the sign bit counts it
//! negatively), so `a = sum_i g_i * 2^(i*b)`.
//!
//! - **Stripes** (activations serial): cycle `i` of a step adds
//!   `(sum_l g_i(a_l) * w_l) << (i*b)` to the accumulator: `n` cycles.
//! - **Loom** (both serial): weight bit `j` (`Pw` bits, top bit negative) is
//!   the outer loop, activation group `i` the inner one; each cycle adds
//!   `(sum_l g_i(a_l) * bit_j(w_l)) << (i*b + j)`, negated for `j = Pw-1`:
//!   `n * Pw` cycles.
//!
//! The lane sum is formed by an adder tree wide enough to be exact; the
//! accumulator (`psum_bits`) applies the datapath's rule (wrap or saturate)
//! after every addition, i.e. once per cycle. In wrap mode the result is the
//! exact sum modulo `2^psum_bits`, which is the engine's result bit for bit.
//! In saturate mode the engine clamps after every term in reduction order,
//! which no bit-serial datapath does: its partial sums are different
//! numbers (bit-plane partial products, the negative sign plane last). The
//! two agree whenever neither ever leaves the accumulator's range — a
//! datapath whose accumulator is wide enough for its layers — and can
//! differ only when an intermediate sum saturates. [`BsRun::saturated`]
//! reports whether that happened.
//!
//! # Precision and cycles
//!
//! Per-layer precision: every step takes `ceil(min(Pa,16)/b)` (Stripes) or
//! `ceil(Pa/b) * Pw` (Loom) cycles, exactly `accel::bitserial::cycles_per_step`,
//! so the cycles stepped equal the timing model's compute cycles. Per-group
//! precision (dynamic precision detection): a step takes as long as the
//! widest activation the step feeds (groups of a step run in lockstep, so
//! the slowest group sets the pace), never more than the layer precision —
//! the timing model's figure is the upper bound, reached when some group
//! needs the full width.
//!
//! # Fault sites
//!
//! Coordinates are `(row, col)` as for the systolic PEs:
//!
//! | site | register | `(row, col)` | width | shared by |
//! |---|---|---|---|---|
//! | `sip.act_reg` | activation of one window and lane, shifted out over the step | `(window, lane)` | `act_bits` | every filter of every tile |
//! | `sip.weight_reg` | weight of one filter and lane, held for the step | `(tile*filters + f, lane)` | `weight_bits` | every window |
//! | `sip.psum_reg` | a SIP's accumulator | `(window, tile*filters + f)` | `psum_bits` | one output |
//!
//! A register fault acts on the value the register holds during its cycle,
//! before the SIP uses it. Operand registers are loaded at the start of each
//! step: a transient flip changes the value read in this and the remaining
//! cycles of the step (a flip in a bit group already shifted out is masked)
//! and is gone at the next load; a stuck bit corrupts every value the
//! register holds. A flip in `sip.psum_reg` changes the accumulator before
//! this cycle's addition (the read-out sees a stuck bit too). A fault on an
//! idle register (no live window, filter or channel there) is masked.
//! Cycles are numbered from 0 over the whole run, steps back to back.

use super::fault::FaultKind;
use super::kernel::BitOp;
use super::{check_gemm_codes, Gemm, HwSimError};
use crate::accel::description::{BitSerial, Precision, Serial};
use crate::fixed::Datapath;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A fault site of a bit-serial datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SipSite {
    /// The activation register of one window and lane (shifted out serially).
    #[serde(rename = "sip.act_reg")]
    ActReg,
    /// The weight register of one filter and lane.
    #[serde(rename = "sip.weight_reg")]
    WeightReg,
    /// The accumulator of one SIP (window x filter).
    #[serde(rename = "sip.psum_reg")]
    PsumReg,
}

impl SipSite {
    pub const ALL: [SipSite; 3] = [SipSite::ActReg, SipSite::WeightReg, SipSite::PsumReg];

    /// The site's name as used in fault files and reports.
    pub fn name(self) -> &'static str {
        match self {
            SipSite::ActReg => "sip.act_reg",
            SipSite::WeightReg => "sip.weight_reg",
            SipSite::PsumReg => "sip.psum_reg",
        }
    }

    /// Width in bits of the register.
    pub fn width(self, dp: &Datapath) -> u32 {
        match self {
            SipSite::ActReg => u32::from(dp.act_bits),
            SipSite::WeightReg => u32::from(dp.weight_bits),
            SipSite::PsumReg => u32::from(dp.psum_bits),
        }
    }

    /// `(rows, cols)` of the site's coordinate grid on design `b`.
    pub fn grid(self, b: &BitSerial) -> (usize, usize) {
        match self {
            SipSite::ActReg => (b.windows, b.lanes),
            SipSite::WeightReg => (b.tiles * b.filters, b.lanes),
            SipSite::PsumReg => (b.windows, b.tiles * b.filters),
        }
    }
}

impl fmt::Display for SipSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SipSite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SipSite::ALL
            .into_iter()
            .find(|site| site.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown bit-serial fault site '{s}', expected one of sip.act_reg, sip.weight_reg, sip.psum_reg"
                )
            })
    }
}

/// One hardware fault in a bit-serial datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SipFault {
    pub site: SipSite,
    pub row: usize,
    pub col: usize,
    /// Bit of the register, `0` = least significant.
    pub bit: u8,
    pub kind: FaultKind,
}

impl SipFault {
    /// A transient flip at `cycle`.
    pub fn flip(site: SipSite, row: usize, col: usize, bit: u8, cycle: u64) -> SipFault {
        SipFault {
            site,
            row,
            col,
            bit,
            kind: FaultKind::Flip { cycle },
        }
    }

    /// A permanent stuck-at-`value` bit.
    pub fn stuck(site: SipSite, row: usize, col: usize, bit: u8, value: bool) -> SipFault {
        SipFault {
            site,
            row,
            col,
            bit,
            kind: if value {
                FaultKind::StuckAt1
            } else {
                FaultKind::StuckAt0
            },
        }
    }

    fn op(&self) -> BitOp {
        match self.kind {
            FaultKind::Flip { .. } => BitOp::Flip(self.bit),
            FaultKind::StuckAt0 => BitOp::Stuck0(self.bit),
            FaultKind::StuckAt1 => BitOp::Stuck1(self.bit),
        }
    }
}

/// The operands of one layer group as the SIPs see them under stuck-at
/// activation/weight register bits: the register at `(window, lane)`
/// holds `A[e][c*taps+tap]` for every `e = window (mod windows)`,
/// `c = lane (mod lanes)`, the one at `(filter row, lane)` holds
/// `W[c*taps+tap][m]` for every `m = row (mod tiles*filters)`, and a stuck
/// bit is that bit stuck in every value the register holds (proven against
/// the stepping loop in `tests/hwsim_bitserial.rs`). Faults apply in list
/// order, as the stepping loop applies them. Exact only when the layer runs
/// at the registers' full width (per-layer precision at the datapath's
/// widths): with run-time precision detection a stuck bit above a step's
/// detected width is never shifted out. `None` if `faults` holds anything
/// else (flips, accumulator bits), which needs the stepping loop.
pub fn stuck_operand_copies(
    design: &BitSerial,
    gemm: &Gemm,
    taps: usize,
    dp: &Datapath,
    faults: &[SipFault],
) -> Option<(Vec<i32>, Vec<i32>)> {
    if faults
        .iter()
        .any(|f| f.site == SipSite::PsumReg || matches!(f.kind, FaultKind::Flip { .. }))
        || taps == 0
    {
        return None;
    }
    let (e, k, m) = (gemm.e, gemm.k, gemm.m);
    let channels = k / taps;
    let filter_rows = design.tiles * design.filters;
    let (mut a, mut w) = (gemm.a.to_vec(), gemm.w.to_vec());
    let (aw, ww) = (u32::from(dp.act_bits), u32::from(dp.weight_bits));
    for f in faults {
        let op = f.op();
        for c in (f.col..channels).step_by(design.lanes) {
            let ks = c * taps..(c + 1) * taps;
            match f.site {
                SipSite::ActReg => {
                    for ei in (f.row..e).step_by(design.windows) {
                        for v in &mut a[ei * k + ks.start..ei * k + ks.end] {
                            *v = op.apply(*v, aw);
                        }
                    }
                }
                SipSite::WeightReg => {
                    for kk in ks.clone() {
                        for mi in (f.row..m).step_by(filter_rows) {
                            let v = &mut w[kk * m + mi];
                            *v = op.apply(*v, ww);
                        }
                    }
                }
                SipSite::PsumReg => unreachable!("excluded above"),
            }
        }
    }
    Some((a, w))
}

/// The precisions a layer runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPrecision {
    /// Activation precision `Pa` (every activation code must fit it).
    pub act: u8,
    /// Weight precision `Pw` (every weight code must fit it; Loom only
    /// spends cycles on it).
    pub weight: u8,
}

/// The result of one layer run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BsRun {
    /// Accumulator values, `e x m` row-major.
    pub out: Vec<i64>,
    /// Steps of the run.
    pub steps: u64,
    /// Cycles stepped.
    pub cycles: u64,
    /// True if the accumulator rule clamped some intermediate sum (saturate
    /// mode only; see the module doc).
    pub saturated: bool,
}

/// A bit-serial accelerator's compute fabric.
#[derive(Debug, Clone)]
pub struct BitSerialArray {
    pub design: BitSerial,
}

/// Signed bits needed to hold `v` in two's complement (at least 1).
pub fn signed_bits(v: i64) -> u8 {
    let mag = if v < 0 { !v } else { v };
    (65 - mag.leading_zeros()) as u8
}

/// The signed value of bit group `i` (`b` bits) of code `a` at precision
/// `p`: bits above `p` are ignored, bit `p-1` counts negatively.
#[inline]
pub(crate) fn bit_group(a: i64, i: u32, b: u32, p: u32) -> i64 {
    let lo = i * b;
    let hi = (lo + b).min(p);
    let mut g = 0i64;
    for bit in lo..hi {
        if (a >> bit) & 1 == 1 {
            let w = 1i64 << (bit - lo);
            g += if bit == p - 1 { -w } else { w };
        }
    }
    g
}

/// Apply `op` to a `width`-bit register holding `v` (every register here is
/// at most 32 bits wide, so the PE's [`BitOp::apply`] does it).
#[inline]
fn corrupt(v: i64, op: BitOp, width: u32) -> i64 {
    i64::from(op.apply(v as i32, width))
}

/// Validated faults, grouped for the stepping loop.
struct Faults {
    /// Transient flips sorted by cycle: `(cycle, fault)`.
    transient: Vec<(u64, SipFault)>,
    permanent: Vec<SipFault>,
}

impl BitSerialArray {
    pub fn new(design: BitSerial) -> Result<Self, HwSimError> {
        if design.tiles == 0
            || design.windows == 0
            || design.filters == 0
            || design.lanes == 0
            || design.bits_per_cycle == 0
        {
            return Err(HwSimError::Datapath(format!(
                "bit-serial design needs at least one tile, window, filter, lane and bit per cycle, found {}x{}x{}x{} at {} bits/cycle",
                design.tiles, design.windows, design.filters, design.lanes, design.bits_per_cycle
            )));
        }
        Ok(BitSerialArray { design })
    }

    /// Cycles of one step whose widest activation needs `pa` bits.
    fn step_cycles(&self, pa: u8, pw: u8) -> u64 {
        crate::accel::bitserial::cycles_per_step(&self.design, pa, pw)
    }

    /// Steps of a layer of `e` pixels, `m` filters, `taps` kernel taps and
    /// `channels` input channels.
    pub fn steps(&self, e: usize, m: usize, taps: usize, channels: usize) -> u64 {
        let b = &self.design;
        (m.div_ceil(b.filters * b.tiles)
            * e.div_ceil(b.windows)
            * taps
            * channels.div_ceil(b.lanes)) as u64
    }

    /// Run one layer group: `gemm.k` must equal `taps * channels`, with
    /// reduction index `k = c*taps + tap` (the engine's im2col order).
    pub fn run(
        &self,
        gemm: &Gemm,
        taps: usize,
        dp: &Datapath,
        prec: LayerPrecision,
        faults: &[SipFault],
    ) -> Result<BsRun, HwSimError> {
        self.run_blocks(gemm, taps, dp, prec, faults, None)
    }

    /// [`BitSerialArray::run`] given the fault-free accumulators `clean`
    /// (`e x m`, e.g. the engine's GEMM in wrap mode): a block (filter set x
    /// window set) is stepped only if a transient flip lands on one of its
    /// live windows' or filters' registers during its cycles or a stuck bit
    /// exists; the others are copied from `clean`. Exact: a block's
    /// accumulators start from zero, its operand registers are reloaded
    /// every step, and a transient flip lives only in its step (tested
    /// against stepping every block).
    pub fn run_with_clean(
        &self,
        gemm: &Gemm,
        taps: usize,
        dp: &Datapath,
        prec: LayerPrecision,
        faults: &[SipFault],
        clean: &[i64],
    ) -> Result<BsRun, HwSimError> {
        if clean.len() != gemm.e * gemm.m {
            return Err(HwSimError::Datapath(format!(
                "{} clean accumulators for a {}x{} output",
                clean.len(),
                gemm.e,
                gemm.m
            )));
        }
        self.run_blocks(gemm, taps, dp, prec, faults, Some(clean))
    }

    fn run_blocks(
        &self,
        gemm: &Gemm,
        taps: usize,
        dp: &Datapath,
        prec: LayerPrecision,
        faults: &[SipFault],
        clean: Option<&[i64]>,
    ) -> Result<BsRun, HwSimError> {
        dp.validate().map_err(HwSimError::Datapath)?;
        let (e, k, m) = (gemm.e, gemm.k, gemm.m);
        check_gemm_codes(gemm, dp.act_bits, dp.weight_bits)?;
        if taps == 0 || k % taps != 0 {
            return Err(HwSimError::Datapath(format!(
                "reduction length {k} is not a whole number of {taps} kernel taps"
            )));
        }
        if prec.act == 0
            || prec.act > dp.act_bits
            || prec.weight == 0
            || prec.weight > dp.weight_bits
        {
            return Err(HwSimError::Datapath(format!(
                "layer precision {}b activations / {}b weights must be within the datapath's {}b / {}b",
                prec.act, prec.weight, dp.act_bits, dp.weight_bits
            )));
        }
        if b_serial_caps(&self.design) && prec.act > 16 {
            return Err(HwSimError::Datapath(format!(
                "Stripes processes at most 16 activation bits, layer precision is {}",
                prec.act
            )));
        }
        check_gemm_codes(gemm, prec.act, prec.weight)?;
        let channels = k / taps;
        let b = &self.design;
        let steps = self.steps(e, m, taps, channels);
        let per_layer = b.precision == Precision::PerLayer;
        let step_len = |ws, tap, ls| self.step_len(gemm, taps, prec, ws, tap, ls);
        let total_cycles = self.cycles(gemm, taps, prec);
        let faults = self.check_faults(faults, dp, total_cycles)?;

        let nf = b.tiles * b.filters;
        let mut out = vec![0i64; e * m];
        let mut saturated = false;
        let mut cycle = 0u64;
        let mut cursor = 0usize;
        let bpc = u32::from(b.bits_per_cycle);
        let pa = u32::from(prec.act);
        let pw = u32::from(prec.weight);
        let (act_w, w_w, psum_w) = (
            u32::from(dp.act_bits),
            u32::from(dp.weight_bits),
            u32::from(dp.psum_bits),
        );
        // Registers of one step (live entries only matter).
        let mut act = vec![0i64; b.windows * b.lanes];
        let mut wgt = vec![0i64; nf * b.lanes];
        let mut acc = vec![0i64; b.windows * nf];
        let mut flips: Vec<SipFault> = Vec::new();
        let mut mask = vec![false; b.windows * nf];
        let mut sips: Vec<(usize, usize)> = Vec::with_capacity(b.windows * nf);
        let mut groups_now = vec![0i64; b.windows * b.lanes];
        let mut plan: Vec<(u32, Option<u32>)> = Vec::new();
        for fs in 0..m.div_ceil(nf) {
            for ws in 0..e.div_ceil(b.windows) {
                acc.fill(0);
                let live_w = |w: usize| ws * b.windows + w < e;
                let live_f = |f: usize| fs * nf + f < m;
                let live_windows = (e - ws * b.windows).min(b.windows);
                let live_filters = (m - fs * nf).min(nf);
                // Stepping only the SIPs in `mask` (the others are clean).
                let mut masked = false;
                if let Some(clean) = clean.filter(|_| faults.permanent.is_empty()) {
                    let lane_sets = channels.div_ceil(b.lanes);
                    let len: u64 = (0..taps)
                        .flat_map(|tap| (0..lane_sets).map(move |ls| (tap, ls)))
                        .map(|(tap, ls)| step_len(ws, tap, ls))
                        .sum();
                    let end = cycle + len;
                    while cursor < faults.transient.len() && faults.transient[cursor].0 < cycle {
                        cursor += 1;
                    }
                    // The SIPs a flip of this block can reach: a psum flip
                    // its own, an activation flip its window's row, a
                    // weight flip its filter's column.
                    mask.fill(false);
                    let mut hit = false;
                    for (_, f) in faults.transient[cursor..]
                        .iter()
                        .take_while(|(c, _)| *c < end)
                    {
                        match f.site {
                            SipSite::ActReg if live_w(f.row) => {
                                mask[f.row * nf..(f.row + 1) * nf].fill(true);
                                hit = true;
                            }
                            SipSite::WeightReg if live_f(f.row) => {
                                for w in 0..b.windows {
                                    mask[w * nf + f.row] = true;
                                }
                                hit = true;
                            }
                            SipSite::PsumReg if live_w(f.row) && live_f(f.col) => {
                                mask[f.row * nf + f.col] = true;
                                hit = true;
                            }
                            _ => {}
                        }
                    }
                    if !hit {
                        for w in (0..b.windows).filter(|&w| live_w(w)) {
                            for f in (0..nf).filter(|&f| live_f(f)) {
                                let o = (ws * b.windows + w) * m + fs * nf + f;
                                out[o] = clean[o];
                            }
                        }
                        cycle = end;
                        continue;
                    }
                    masked = true;
                }
                // The SIPs stepped: every live one, or the masked ones.
                sips.clear();
                for w in (0..b.windows).filter(|&w| live_w(w)) {
                    for f in (0..nf).filter(|&f| live_f(f)) {
                        if !masked || mask[w * nf + f] {
                            sips.push((w, f));
                        }
                    }
                }
                for tap in 0..taps {
                    for ls in 0..channels.div_ceil(b.lanes) {
                        let live_l = |l: usize| ls * b.lanes + l < channels;
                        // Load the step's operand registers (the live
                        // windows' and filters' only: no SIP reads the
                        // others, so what they hold never matters).
                        for w in 0..live_windows {
                            for l in 0..b.lanes {
                                act[w * b.lanes + l] = if live_l(l) {
                                    let (ei, c) = (ws * b.windows + w, ls * b.lanes + l);
                                    i64::from(gemm.a[ei * k + c * taps + tap])
                                } else {
                                    0
                                };
                            }
                        }
                        for f in 0..live_filters {
                            for l in 0..b.lanes {
                                wgt[f * b.lanes + l] = if live_l(l) {
                                    let (mi, c) = (fs * nf + f, ls * b.lanes + l);
                                    i64::from(gemm.w[(c * taps + tap) * m + mi])
                                } else {
                                    0
                                };
                            }
                        }
                        let len = step_len(ws, tap, ls);
                        let groups = if per_layer {
                            pa.div_ceil(bpc)
                        } else {
                            // The step runs ceil(pa_step/b) groups; the
                            // activations still have precision `pa`, so
                            // the groups beyond are pure sign extension
                            // and the top group carries the sign.
                            match b.serial {
                                Serial::Activations => len as u32,
                                Serial::Both => (len / u64::from(pw)) as u32,
                            }
                        };
                        // Precision the groups interpret: per-group mode
                        // reads `groups*b` bits, enough for every
                        // activation of the step (sign-extended codes).
                        let p_eff = if per_layer {
                            pa
                        } else {
                            (groups * bpc).min(pa)
                        };
                        plan.clear();
                        match b.serial {
                            Serial::Activations => plan.extend((0..groups).map(|i| (i, None))),
                            Serial::Both => plan.extend(
                                (0..pw).flat_map(|j| (0..groups).map(move |i| (i, Some(j)))),
                            ),
                        }
                        debug_assert_eq!(plan.len() as u64, len);
                        for &(i, j) in &plan {
                            // Faults acting in this cycle.
                            flips.clear();
                            while cursor < faults.transient.len()
                                && faults.transient[cursor].0 < cycle
                            {
                                cursor += 1;
                            }
                            let mut t = cursor;
                            while t < faults.transient.len() && faults.transient[t].0 == cycle {
                                flips.push(faults.transient[t].1);
                                t += 1;
                            }
                            // Transient operand flips persist in the
                            // register for the rest of the step; stuck bits
                            // act on every read.
                            for fl in &flips {
                                match fl.site {
                                    SipSite::ActReg => {
                                        let r = &mut act[fl.row * b.lanes + fl.col];
                                        *r = corrupt(*r, fl.op(), act_w);
                                    }
                                    SipSite::WeightReg => {
                                        let r = &mut wgt[fl.row * b.lanes + fl.col];
                                        *r = corrupt(*r, fl.op(), w_w);
                                    }
                                    SipSite::PsumReg => {}
                                }
                            }
                            for p in &faults.permanent {
                                match p.site {
                                    SipSite::ActReg => {
                                        let r = &mut act[p.row * b.lanes + p.col];
                                        *r = corrupt(*r, p.op(), act_w);
                                    }
                                    SipSite::WeightReg => {
                                        let r = &mut wgt[p.row * b.lanes + p.col];
                                        *r = corrupt(*r, p.op(), w_w);
                                    }
                                    SipSite::PsumReg => {}
                                }
                            }
                            // Each live lane's bit group once per cycle.
                            for w in 0..live_windows {
                                for l in 0..b.lanes {
                                    groups_now[w * b.lanes + l] = if live_l(l) {
                                        bit_group(act[w * b.lanes + l], i, bpc, p_eff)
                                    } else {
                                        0
                                    };
                                }
                            }
                            for &(w, f) in &sips {
                                let gs = &groups_now[w * b.lanes..(w + 1) * b.lanes];
                                let ws_ = &wgt[f * b.lanes..(f + 1) * b.lanes];
                                let sum: i64 = match j {
                                    None => gs.iter().zip(ws_).map(|(g, wv)| g * wv).sum(),
                                    Some(j) => {
                                        gs.iter().zip(ws_).map(|(g, wv)| g * ((wv >> j) & 1)).sum()
                                    }
                                };
                                let term = match j {
                                    None => sum << (i * bpc),
                                    Some(j) if j == pw - 1 => -(sum << (i * bpc + j)),
                                    Some(j) => sum << (i * bpc + j),
                                };
                                let a = &mut acc[w * nf + f];
                                for fl in flips.iter().chain(faults.permanent.iter()) {
                                    if fl.site == SipSite::PsumReg && fl.row == w && fl.col == f {
                                        *a = corrupt(*a, fl.op(), psum_w);
                                    }
                                }
                                let raw = *a + term;
                                let lim = dp.acc_limit(raw);
                                if lim != raw && dp.overflow == crate::fixed::Overflow::Saturate {
                                    saturated = true;
                                }
                                *a = lim;
                            }
                            cycle += 1;
                        }
                    }
                }
                // Read-out: a stuck accumulator bit is seen by the ofmap write.
                for w in 0..b.windows {
                    if !live_w(w) {
                        continue;
                    }
                    for f in 0..nf {
                        if !live_f(f) {
                            continue;
                        }
                        let mut v = acc[w * nf + f];
                        for p in &faults.permanent {
                            if p.site == SipSite::PsumReg && p.row == w && p.col == f {
                                v = corrupt(v, p.op(), psum_w);
                            }
                        }
                        let o = (ws * b.windows + w) * m + fs * nf + f;
                        out[o] = match clean {
                            Some(clean) if masked && !mask[w * nf + f] => clean[o],
                            _ => v,
                        };
                    }
                }
            }
        }
        debug_assert_eq!(cycle, total_cycles);
        Ok(BsRun {
            out,
            steps,
            cycles: total_cycles,
            saturated,
        })
    }

    /// Cycles of step `(ws, tap, ls)` of a layer group (any filter set):
    /// fixed per layer, or set by the widest activation of the step
    /// (per-group precision).
    fn step_len(
        &self,
        gemm: &Gemm,
        taps: usize,
        prec: LayerPrecision,
        ws: usize,
        tap: usize,
        ls: usize,
    ) -> u64 {
        let b = &self.design;
        if b.precision == Precision::PerLayer {
            return self.step_cycles(prec.act, prec.weight);
        }
        let (e, k) = (gemm.e, gemm.k);
        let channels = k / taps;
        let mut pa = 1u8;
        for w in 0..b.windows {
            let ei = ws * b.windows + w;
            if ei >= e {
                break;
            }
            for l in 0..b.lanes {
                let c = ls * b.lanes + l;
                if c >= channels {
                    break;
                }
                pa = pa.max(signed_bits(i64::from(gemm.a[ei * k + c * taps + tap])));
            }
        }
        self.step_cycles(pa, prec.weight)
    }

    /// Cycles [`BitSerialArray::run`] steps for a layer group (operands as
    /// `run` takes them, `taps` dividing `gemm.k`): `steps * cycles per
    /// step` with per-layer precision, the sum of the data-dependent step
    /// lengths with per-group precision.
    pub fn cycles(&self, gemm: &Gemm, taps: usize, prec: LayerPrecision) -> u64 {
        let b = &self.design;
        let (e, m) = (gemm.e, gemm.m);
        let channels = gemm.k / taps.max(1);
        if b.precision == Precision::PerLayer {
            return self.steps(e, m, taps, channels) * self.step_cycles(prec.act, prec.weight);
        }
        let mut per_filter_set = 0;
        for ws in 0..e.div_ceil(b.windows) {
            for tap in 0..taps {
                for ls in 0..channels.div_ceil(b.lanes) {
                    per_filter_set += self.step_len(gemm, taps, prec, ws, tap, ls);
                }
            }
        }
        per_filter_set * m.div_ceil(b.filters * b.tiles) as u64
    }

    fn check_faults(
        &self,
        faults: &[SipFault],
        dp: &Datapath,
        cycles: u64,
    ) -> Result<Faults, HwSimError> {
        let mut transient = Vec::new();
        let mut permanent = Vec::new();
        for (index, f) in faults.iter().enumerate() {
            let err = |reason: String| HwSimError::SipFault {
                index,
                site: f.site,
                row: f.row,
                col: f.col,
                reason,
            };
            let (rows, cols) = f.site.grid(&self.design);
            if f.row >= rows || f.col >= cols {
                return Err(err(format!(
                    "({}, {}) is outside the {rows}x{cols} grid of {}",
                    f.row, f.col, f.site
                )));
            }
            let width = f.site.width(dp);
            if u32::from(f.bit) >= width {
                return Err(err(format!(
                    "bit {} does not exist in {} ({width} bits wide)",
                    f.bit, f.site
                )));
            }
            match f.kind {
                FaultKind::Flip { cycle } if cycle >= cycles => {
                    return Err(err(format!(
                        "cycle {cycle} is past the end of the run ({cycles} cycles)"
                    )))
                }
                FaultKind::Flip { cycle } => transient.push((cycle, *f)),
                _ => permanent.push(*f),
            }
        }
        transient.sort_by_key(|&(c, _)| c);
        Ok(Faults {
            transient,
            permanent,
        })
    }
}

/// Stripes caps the serial activation precision at 16 bits.
fn b_serial_caps(b: &BitSerial) -> bool {
    b.serial == Serial::Activations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::Overflow;
    use crate::hwsim::reference_gemm;
    use proptest::prelude::*;

    fn design(serial: Serial, bits: u8, precision: Precision) -> BitSerial {
        BitSerial {
            tiles: 2,
            windows: 3,
            filters: 2,
            lanes: 4,
            serial,
            bits_per_cycle: bits,
            precision,
            group_size: match precision {
                Precision::PerGroup => Some(4),
                Precision::PerLayer => None,
            },
        }
    }

    #[test]
    fn bit_groups_rebuild_the_code() {
        for p in 1u32..=9 {
            for b in 1u32..=4 {
                let lo = -(1i64 << (p - 1));
                let hi = (1i64 << (p - 1)) - 1;
                for a in lo..=hi {
                    let s: i64 = (0..p.div_ceil(b))
                        .map(|i| bit_group(a, i, b, p) << (i * b))
                        .sum();
                    assert_eq!(s, a, "a={a} p={p} b={b}");
                }
            }
        }
    }

    #[test]
    fn signed_bits_is_minimal() {
        assert_eq!(signed_bits(0), 1);
        assert_eq!(signed_bits(-1), 1);
        assert_eq!(signed_bits(1), 2);
        assert_eq!(signed_bits(127), 8);
        assert_eq!(signed_bits(-128), 8);
        assert_eq!(signed_bits(128), 9);
    }

    fn layer() -> impl Strategy<Value = (usize, usize, usize, usize, Vec<i32>, Vec<i32>)> {
        (1usize..9, 1usize..10, 1usize..4, 1usize..4).prop_flat_map(|(e, c, taps, m)| {
            let k = c * taps;
            (
                Just(e),
                Just(c),
                Just(taps),
                Just(m),
                proptest::collection::vec(-128i32..128, e * k),
                proptest::collection::vec(-128i32..128, k * m),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Fault-free, wrap mode: bit-identical to the in-order reference
        /// for every organisation, serial mode, bits per cycle and precision
        /// mode; cycles equal the timing model's in per-layer mode.
        #[test]
        fn fault_free_matches_reference(
            (e, c, taps, m, a, w) in layer(),
            both in any::<bool>(),
            bits in 1u8..4,
            per_group in any::<bool>(),
            psum in 12u8..33,
        ) {
            let serial = if both { Serial::Both } else { Serial::Activations };
            let precision = if per_group { Precision::PerGroup } else { Precision::PerLayer };
            let arr = BitSerialArray::new(design(serial, bits, precision)).unwrap();
            let dp = Datapath { act_bits: 8, weight_bits: 8, psum_bits: psum, overflow: Overflow::Wrap };
            let g = Gemm { a: &a, w: &w, e, k: c * taps, m };
            let run = arr.run(&g, taps, &dp, LayerPrecision { act: 8, weight: 8 }, &[]).unwrap();
            prop_assert_eq!(&run.out, &reference_gemm(&g, &dp));
            let full = arr.steps(e, m, taps, c)
                * crate::accel::bitserial::cycles_per_step(&arr.design, 8, 8);
            if per_group {
                prop_assert!(run.cycles <= full);
            } else {
                prop_assert_eq!(run.cycles, full);
            }
        }

        /// Saturate mode agrees whenever no intermediate sum saturated.
        #[test]
        fn saturate_agrees_without_intermediate_saturation(
            (e, c, taps, m, a, w) in layer(),
            both in any::<bool>(),
            psum in 14u8..20,
        ) {
            let serial = if both { Serial::Both } else { Serial::Activations };
            let arr = BitSerialArray::new(design(serial, 1, Precision::PerLayer)).unwrap();
            let dp = Datapath { act_bits: 8, weight_bits: 8, psum_bits: psum, overflow: Overflow::Saturate };
            let g = Gemm { a: &a, w: &w, e, k: c * taps, m };
            let run = arr.run(&g, taps, &dp, LayerPrecision { act: 8, weight: 8 }, &[]).unwrap();
            let reference = reference_gemm(&g, &dp);
            let wide = Datapath { psum_bits: 40, ..dp };
            let exact = reference_gemm(&g, &wide);
            if !run.saturated && reference == exact {
                prop_assert_eq!(run.out, reference);
            }
        }
    }

    /// A small layer (4 pixels, 5 channels, 2 taps, 5 filters) on a
    /// 2-tile 3-window 2-filter 4-lane design, 8-bit datapath.
    struct Small {
        a: Vec<i32>,
        w: Vec<i32>,
        arr: BitSerialArray,
    }

    const PREC8: LayerPrecision = LayerPrecision { act: 8, weight: 8 };

    impl Small {
        fn new(serial: Serial, bits: u8) -> Small {
            Small {
                a: (0..4 * 10).map(|i| (i * 37 % 200) - 100).collect(),
                w: (0..10 * 5).map(|i| (i * 53 % 250) - 125).collect(),
                arr: BitSerialArray::new(design(serial, bits, Precision::PerLayer)).unwrap(),
            }
        }
        fn gemm(&self) -> Gemm<'_> {
            Gemm {
                a: &self.a,
                w: &self.w,
                e: 4,
                k: 10,
                m: 5,
            }
        }
        fn run_with(&self, prec: LayerPrecision, faults: &[SipFault]) -> Result<BsRun, HwSimError> {
            self.arr.run(&self.gemm(), 2, &Datapath::INT8, prec, faults)
        }
        fn run(&self, faults: &[SipFault]) -> BsRun {
            self.run_with(PREC8, faults).unwrap()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Stepping only the blocks a flip reaches, with the others from
        /// the fault-free result, equals stepping every block.
        #[test]
        fn blockwise_run_equals_full_stepping(
            (e, c, taps, m, a, w) in layer(),
            serial in prop_oneof![Just(Serial::Activations), Just(Serial::Both)],
            bits in 1u8..=3,
            per_group in any::<bool>(),
            flips in proptest::collection::vec((0usize..3, 0usize..16, 0usize..16, 0u8..32, any::<u64>()), 0..6),
        ) {
            let precision = if per_group { Precision::PerGroup } else { Precision::PerLayer };
            let arr = BitSerialArray::new(design(serial, bits, precision)).unwrap();
            let gemm = Gemm { a: &a, w: &w, e, k: c * taps, m };
            let dp = Datapath::INT8;
            let clean = arr.run(&gemm, taps, &dp, PREC8, &[]).unwrap();
            let faults: Vec<SipFault> = flips
                .iter()
                .map(|&(s, r, c, bit, cy)| {
                    let site = SipSite::ALL[s];
                    let (rows, cols) = site.grid(&arr.design);
                    let width = site.width(&dp) as u8;
                    SipFault::flip(site, r % rows, c % cols, bit % width, cy % clean.cycles)
                })
                .collect();
            let full = arr.run(&gemm, taps, &dp, PREC8, &faults).unwrap();
            let blocks = arr.run_with_clean(&gemm, taps, &dp, PREC8, &faults, &clean.out).unwrap();
            prop_assert_eq!(&blocks.out, &full.out);
            prop_assert_eq!(blocks.cycles, full.cycles);
        }
    }

    #[test]
    fn cycles_match_stripes_formula() {
        let run = Small::new(Serial::Activations, 1).run(&[]);
        // filter sets ceil(5/4)=2, window sets ceil(4/3)=2, 2 taps, lane sets ceil(5/4)=2.
        assert_eq!(run.steps, 16);
        assert_eq!(run.cycles, 16 * 8);
    }

    #[test]
    fn psum_flip_changes_one_output_by_its_bit() {
        let s = Small::new(Serial::Activations, 1);
        let clean = s.run(&[]);
        // SIP (window 1, filter col 2) = pixel 1, filter 2 in filter set 0;
        // cycle 3 is inside the first step of block (fs 0, ws 0).
        let run = s.run(&[SipFault::flip(SipSite::PsumReg, 1, 2, 20, 3)]);
        let diff: Vec<usize> = (0..clean.out.len())
            .filter(|&i| clean.out[i] != run.out[i])
            .collect();
        assert_eq!(diff, vec![m_index(1, 2, 5)]);
        assert_eq!((run.out[diff[0]] - clean.out[diff[0]]).abs(), 1 << 20);
    }

    fn m_index(e: usize, m: usize, cols: usize) -> usize {
        e * cols + m
    }

    #[test]
    fn weight_reg_flip_hits_every_window_of_its_filter_for_the_rest_of_the_step() {
        let s = Small::new(Serial::Activations, 1);
        let (a, w) = (&s.a, &s.w);
        let clean = s.run(&[]);
        // weight reg of filter 0 lane 0, bit 6, at cycle 0 (first step: tap 0,
        // channels 0..4, windows 0..3): every live window of filter 0 changes
        // by a(window, c=0) * 64 in full (flip before the first bit group).
        let run = s.run(&[SipFault::flip(SipSite::WeightReg, 0, 0, 6, 0)]);
        let delta_w = i64::from((w[0] ^ 64) - w[0]);
        for px in 0..3 {
            let expect = clean.out[px * 5] + i64::from(a[px * 10]) * delta_w;
            assert_eq!(run.out[px * 5], expect, "pixel {px}");
        }
        for i in 0..run.out.len() {
            if i % 5 != 0 || i / 5 >= 3 {
                assert_eq!(run.out[i], clean.out[i], "output {i} must be untouched");
            }
        }
        // The same flip in the last cycle of the step only affects the sign
        // bit group's product.
        let run = s.run(&[SipFault::flip(SipSite::WeightReg, 0, 0, 6, 7)]);
        for px in 0..3 {
            let sign = -i64::from((a[px * 10] >> 7) & 1) * 128;
            assert_eq!(run.out[px * 5], clean.out[px * 5] + sign * delta_w);
        }
    }

    #[test]
    fn stuck_act_bit_matches_corrupted_operand() {
        // A stuck bit in the activation register of (window 0, lane 1) is the
        // same as that bit stuck in every activation of channel 1 of windows
        // 0, 3, ... (every window set's window 0).
        let s = Small::new(Serial::Both, 2);
        let run = s.run(&[SipFault::stuck(SipSite::ActReg, 0, 1, 2, true)]);
        let mut a2 = s.a.clone();
        for px in [0usize, 3] {
            for tap in 0..2 {
                // channel 1, tap `tap`: k = 1*taps + tap
                let i = px * 10 + 2 + tap;
                a2[i] |= 4;
            }
        }
        let g2 = Gemm { a: &a2, ..s.gemm() };
        assert_eq!(run.out, reference_gemm(&g2, &Datapath::INT8));
    }

    #[test]
    fn bad_faults_and_precisions_are_errors() {
        let s = Small::new(Serial::Activations, 1);
        let outside = SipFault::flip(SipSite::ActReg, 3, 0, 0, 0);
        assert!(s.run_with(PREC8, &[outside]).is_err());
        let late = SipFault::flip(SipSite::ActReg, 0, 0, 0, 10_000);
        let e = s.run_with(PREC8, &[late]).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
        let low = LayerPrecision { act: 4, weight: 8 };
        let e = s.run_with(low, &[]).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        let g = s.gemm();
        assert!(
            s.arr.run(&g, 3, &Datapath::INT8, PREC8, &[]).is_err(),
            "10 is not 3 taps"
        );
    }
}
