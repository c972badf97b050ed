//! Stuck-at PE bits applied in the fast engine's layout with the engine's
//! GEMM kernels (the whole-network path's case of a chip with permanent PE
//! faults and no transient ones in the layer).
//!
//! The fault-free raw sums come from the engine (`M x E`, wrapping i32, the
//! engine's layout, [`crate::engine::fast::LayerKit::raw_sums_col`]), and so
//! does the ifmap operand (the engine's im2col buffer, `K x E` i8). With a
//! wrapping accumulator every sum is linear (modulo `2^psum_bits`), so what
//! a stuck operand bit changes is a sum of masked products over a set of
//! outputs and reduction indices, computed as a small integer GEMM on masked
//! copies of the operands (masked codes are valid codes of the operand's
//! width, so i8):
//!
//! - OS, activation bits of PE row `i` (composed along the row, so constant
//!   on runs of PE columns): outputs `e = i mod rows` are recomputed as
//!   `W x mask(A[:, e])` and replace the columns `m mod cols` in the run;
//!   weight bits of PE column `j` likewise: `mask(W[m = j mod cols]) x A`,
//!   replacing the rows `e mod rows` in the run. A PE whose outputs see
//!   both kinds is not handled (corrupted skew bubbles meet there).
//! - WS/IS, PE row `r` adds the products of reduction indices `k = r mod
//!   rows`: their sum is recomputed with the streamed operand masked per run
//!   of PE columns and the stationary one masked per PE, and the difference
//!   to the clean partial sum (a GEMM of depth `K / rows`) is added to the
//!   outputs of the run. Padding rows of the last row fold add
//!   `first(0) * second(0)` to every output of their PE column.
//! - Multiplier bits act on the products of one PE: scalar corrections over
//!   its `~E*M*K/(rows*cols)` products.
//! - `psum_reg` bits make the accumulation non-linear: OS replays the
//!   outputs of the PE cycle by cycle; WS/IS rebuild every output of the
//!   PE columns concerned in hardware order, with the linear stretches
//!   between faulty PE rows as partial GEMMs shared by those columns (WS)
//!   or, for IS's short streams, output row by output row with 16
//!   accumulators in registers and two reduction indices per multiply-add
//!   (`pair_dot`), and the faulty positions applied one by one.
//! - An operand correction that changes one side only (a stuck bit moves
//!   a code by 0 or +-2^b) is one GEMM of the change scaled to i8 codes,
//!   not the GEMMs of the new and the old operands (`gemm_diff`).
//! - WS/IS operand corrections touch only the stationary indices of the
//!   faulty PE columns (a GEMM of `n x K/rows` by `K/rows x T` per run, `n`
//!   the run's filters (WS) or pixels (IS)).
//!
//! The rules (fault order, live/non-live products, masks) are those of
//! `stuck.rs`, which the per-output path cross-checks; the proptests compare
//! whole networks against the cycle-level executor.

use std::sync::OnceLock;

use super::super::{Dataflow, FaultKind, HwFault, HwSimError, Mapping, SystolicArray};
use super::pair_dot::{self, PairedRows, LANES};
use super::stuck::{pe_masks, PeMasks};
use super::{Event, StuckMask};
use crate::engine::gemm::{default_kernel, gemm_i8_with, gemm_packed_i8, PackedA, Parallelism};
use crate::fixed::{Datapath, Overflow};
use crate::hwsim::kernel::simd_dispatch;

/// One group's GEMM operands in the engine's layout.
pub(crate) struct EngineOperands<'a> {
    /// The im2col operand, `K x E` row-major (`A` transposed).
    pub col: &'a [i8],
    /// The filter operand, `M x K` row-major (`W` transposed).
    pub w: &'a [i8],
    /// What the IS corrections derive from `w`, if the caller keeps it
    /// across calls (filled on first use).
    pub cache: Option<&'a FilterCache>,
    /// `w` packed for the engine's default kernel, if the caller has it.
    pub packed: Option<&'a PackedA>,
    pub e: usize,
    pub k: usize,
    pub m: usize,
}

/// What the IS corrections derive from a group's filter operand, made on
/// first use and kept by the caller for as long as the operand stays (a
/// chip's layer): the IS array streams the weights, so these are the same
/// for every image.
#[derive(Default)]
pub(crate) struct FilterCache {
    /// `w` transposed (`K x M`): the streamed weights row by row.
    wt: OnceLock<Vec<i8>>,
    /// The same as i16 pairs of rows, for [`replay_direct`].
    pairs: OnceLock<PairedRows>,
}

/// Whether [`apply`] may handle a layer with these faults on this datapath:
/// a wrapping accumulator, i8 operands and only stuck-at faults.
pub(crate) fn supported(dp: &Datapath, faults: &[HwFault]) -> bool {
    dp.overflow == Overflow::Wrap
        && dp.act_bits <= 8
        && dp.weight_bits <= 8
        && dp.psum_bits <= 32
        && faults
            .iter()
            .all(|f| !matches!(f.kind, FaultKind::Flip { .. }))
}

/// Apply the stuck-at `faults` (already checked against the array and the
/// GEMM's cycles) to the raw sums `acc` (`M x E`). `Ok(false)`: a case this
/// path does not handle, `acc` untouched.
pub(crate) fn apply(
    array: &SystolicArray,
    dp: &Datapath,
    faults: &[HwFault],
    ops: &EngineOperands,
    acc: &mut [i32],
) -> Result<bool, HwSimError> {
    if !supported(dp, faults) {
        return Ok(false);
    }
    let mapping = array.mapping(ops.e, ops.k, ops.m);
    array.check_faults(dp, &mapping, faults)?;
    if faults.is_empty() {
        return Ok(true);
    }
    let pes = cached_pe_masks(dp, &mapping, faults);
    let shift = 32 - u32::from(dp.psum_bits);
    match mapping.dataflow {
        Dataflow::Os => {
            let both = |&p: &usize| pes.masks[p].first.is_some() && pes.masks[p].second.is_some();
            if pes.faulty.iter().any(both) {
                return Ok(false);
            }
            os(ops, &mapping, &pes, acc, shift);
        }
        Dataflow::Ws => stationary(false, ops, &mapping, &pes, acc, shift),
        Dataflow::Is => stationary(true, ops, &mapping, &pes, acc, shift),
    }
    Ok(true)
}

/// Cache key of [`cached_pe_masks`]: the masks depend only on these (a
/// chip's stuck bits are the same in every layer and image).
type MaskKey = (Vec<HwFault>, usize, usize, Dataflow, Datapath);

/// A chip's PE masks (row-major over the array) and the indices of the PEs
/// that have any: the corrections visit only those instead of scanning the
/// whole array (1,024 PEs) for every layer of every image (with the other
/// changes of that commit, an aged chip's campaign on OS went from 46% to
/// 56% of the clean engine's throughput).
struct PeSet {
    masks: Vec<PeMasks>,
    faulty: Vec<usize>,
}

impl PeSet {
    fn new(masks: Vec<PeMasks>) -> PeSet {
        let faulty = (0..masks.len()).filter(|&i| masks[i].any()).collect();
        PeSet { masks, faulty }
    }

    /// The sorted distinct array rows (`axis = 0`) or columns (`axis = 1`)
    /// of the faulty PEs for which `pick` holds.
    fn lines(&self, cols: usize, axis: usize, pick: impl Fn(&PeMasks) -> bool) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .faulty
            .iter()
            .filter(|&&p| pick(&self.masks[p]))
            .map(|&p| if axis == 0 { p / cols } else { p % cols })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

thread_local! {
    static MASKS: std::cell::RefCell<Option<(MaskKey, std::rc::Rc<PeSet>)>> =
        const { std::cell::RefCell::new(None) };
}

/// [`pe_masks`] of stuck-only `faults`, remembered per thread for the last
/// fault list (every layer of a chip's images asks for the same).
fn cached_pe_masks(dp: &Datapath, mapping: &Mapping, faults: &[HwFault]) -> std::rc::Rc<PeSet> {
    MASKS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some((key, pes)) = slot.as_ref() {
            if key.0 == faults
                && (key.1, key.2, key.3, key.4)
                    == (mapping.rows, mapping.cols, mapping.dataflow, *dp)
            {
                return pes.clone();
            }
        }
        let events: Vec<Event> = faults
            .iter()
            .enumerate()
            .map(|(i, f)| Event::new(i, f, dp, mapping))
            .collect();
        let pes = std::rc::Rc::new(PeSet::new(pe_masks(dp, mapping, &events)));
        let key = (
            faults.to_vec(),
            mapping.rows,
            mapping.cols,
            mapping.dataflow,
            *dp,
        );
        *slot = Some((key, pes.clone()));
        pes
    })
}

/// A mask that changes nothing, for branch-free loops.
const IDENTITY: StuckMask = StuckMask {
    and: -1,
    or: 0,
    shift: 0,
};

#[inline(always)]
fn id(m: Option<StuckMask>) -> StuckMask {
    m.unwrap_or(IDENTITY)
}

/// Runs of equal keys: `(start, end, key)`.
fn runs(keys: impl Iterator<Item = Option<StuckMask>>) -> Vec<(usize, usize, Option<StuckMask>)> {
    let mut out: Vec<(usize, usize, Option<StuckMask>)> = Vec::new();
    for (i, key) in keys.enumerate() {
        match out.last_mut() {
            Some(last) if last.2 == key => last.1 = i + 1,
            _ => out.push((i, i + 1, key)),
        }
    }
    out
}

/// Sorted distinct indices as stretches of consecutive values: `(first,
/// length, position of the first in the list)`.
fn runs_of_consecutive(idx: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for (at, &v) in idx.iter().enumerate() {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == v => last.1 += 1,
            _ => out.push((v, 1, at)),
        }
    }
    out
}

/// `c (m x n) = a (m x k) * b (k x n)` with the engine's i8 kernel, on this
/// thread (the caller runs images in parallel).
fn gemm(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], c: &mut Vec<i32>) {
    c.clear();
    c.resize(m * n, 0);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    gemm_i8_with(default_kernel(), Parallelism::Sequential, m, n, k, a, b, c);
}

/// `diff = x1 * y1 - x0 * y0` for `m x k` by `k x n` i8 operands, where
/// `x1`/`y1` are `None` when unchanged (`x0`/`y0`). With one operand
/// changed this is one GEMM of the change, when the change, divided by
/// the power of two all its entries share, fits i8 codes (a stuck bit
/// changes a code by 0 or +-2^b, so it does); else two GEMMs. `change`
/// and `tmp` are scratch.
fn gemm_diff(
    m: usize,
    n: usize,
    k: usize,
    (x0, x1): (&[i8], Option<&[i8]>),
    (y0, y1): (&[i8], Option<&[i8]>),
    diff: &mut Vec<i32>,
    (change, tmp): (&mut Vec<i8>, &mut Vec<i32>),
) {
    let one_changed = match (x1, y1) {
        (Some(x1), None) => Some((true, x1)),
        (None, Some(y1)) => Some((false, y1)),
        (None, None) => {
            diff.clear();
            diff.resize(m * n, 0);
            return;
        }
        (Some(_), Some(_)) => None,
    };
    if let Some((is_x, new)) = one_changed {
        let old = if is_x { x0 } else { y0 };
        if let Some(s) = scaled_change(old, new, change) {
            if is_x {
                gemm(m, n, k, change, y0, diff);
            } else {
                gemm(m, n, k, x0, change, diff);
            }
            for v in diff.iter_mut() {
                *v = v.wrapping_shl(s);
            }
            return;
        }
    }
    gemm(m, n, k, x1.unwrap_or(x0), y1.unwrap_or(y0), diff);
    gemm(m, n, k, x0, y0, tmp);
    for (d, &t) in diff.iter_mut().zip(tmp.iter()) {
        *d = d.wrapping_sub(t);
    }
}

/// `d = (new - old) / 2^s` as i8, `s` the largest power of two dividing
/// every difference (0 when none changed); `None` if one does not fit.
fn scaled_change(old: &[i8], new: &[i8], d: &mut Vec<i8>) -> Option<u32> {
    let common = old
        .iter()
        .zip(new)
        .fold(0i32, |acc, (&o, &n)| acc | (i32::from(n) - i32::from(o)));
    let s = if common == 0 {
        0
    } else {
        common.trailing_zeros()
    };
    d.clear();
    for (&o, &n) in old.iter().zip(new) {
        let v = (i32::from(n) - i32::from(o)) >> s;
        d.push(i8::try_from(v).ok()?);
    }
    Some(s)
}

#[inline(always)]
fn masked(m: StuckMask, v: i8) -> i8 {
    m.apply(v as i32) as i8
}

/// Output stationary: output `(e, m)` in PE `(e % rows, m % cols)`.
fn os(ops: &EngineOperands, mapping: &Mapping, set: &PeSet, acc: &mut [i32], shift: u32) {
    let pes = &set.masks[..];
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let mut b: Vec<i8> = Vec::new();
    let mut out: Vec<i32> = Vec::new();
    // Activation bits of PE row i: recompute outputs e = i mod rows.
    for i in set.lines(cols, 0, |p| p.first.is_some()) {
        if i >= e_len {
            continue;
        }
        let segs = runs((0..cols).map(|j| pes[i * cols + j].first));
        let es: Vec<usize> = (i..e_len).step_by(rows).collect();
        let n = es.len();
        for (j0, j1, mask) in segs {
            let Some(mask) = mask else { continue };
            if j0 >= m_len {
                continue;
            }
            b.clear();
            for k in 0..k_len {
                let row = &col[k * e_len..(k + 1) * e_len];
                b.extend(es.iter().map(|&e| masked(mask, row[e])));
            }
            match ops.packed {
                Some(p) => {
                    out.clear();
                    out.resize(m_len * n, 0);
                    gemm_packed_i8(Parallelism::Sequential, p, n, &b, &mut out);
                }
                None => gemm(m_len, n, k_len, w, &b, &mut out),
            }
            for m in (0..m_len).filter(|m| (j0..j1).contains(&(m % cols))) {
                let dst = &mut acc[m * e_len..(m + 1) * e_len];
                for (x, &e) in es.iter().enumerate() {
                    dst[e] = out[m * n + x];
                }
            }
        }
    }
    // Weight bits of PE column j: filters m = j mod cols change by
    // (mask(W) - W) x A, one filter at a time (a few rows: a GEMV over the
    // reduction indices whose code the mask changes).
    let mut dw: Vec<i32> = Vec::new();
    let mut delta: Vec<i32> = Vec::new();
    for j in set.lines(cols, 1, |p| p.second.is_some()) {
        if j >= m_len {
            continue;
        }
        let segs = runs((0..rows).map(|i| pes[i * cols + j].second));
        for (i0, i1, mask) in segs {
            let Some(mask) = mask else { continue };
            if i0 >= e_len {
                continue;
            }
            for m in (j..m_len).step_by(cols) {
                let row = &w[m * k_len..(m + 1) * k_len];
                dw.clear();
                dw.extend(row.iter().map(|&v| mask.apply(v as i32) - v as i32));
                delta.clear();
                delta.resize(e_len, 0);
                weighted_rows(&dw, col, &mut delta);
                let dst = &mut acc[m * e_len..(m + 1) * e_len];
                for i in i0..i1.min(e_len) {
                    for e in (i..e_len).step_by(rows) {
                        dst[e] = dst[e].wrapping_add(delta[e]);
                    }
                }
            }
        }
    }
    // Multiplier bits alone: a linear correction of the PE's outputs.
    let mut xg: Vec<i32> = Vec::new();
    let mut v: Vec<i32> = Vec::new();
    for &pe in &set.faulty {
        let masks = &pes[pe];
        let Some(mult) = masks.mult else { continue };
        let (i, j) = (pe / cols, pe % cols);
        if masks.psum.is_some() || i >= e_len || j >= m_len {
            continue;
        }
        let (first, second) = (id(masks.first), id(masks.second));
        // the PE's activations, masked, gathered row by row: K x n
        let es: Vec<usize> = (i..e_len).step_by(rows).collect();
        let n = es.len();
        xg.clear();
        for k in 0..k_len {
            let row = &col[k * e_len..(k + 1) * e_len];
            xg.extend(es.iter().map(|&e| first.apply(row[e] as i32)));
        }
        for m in (j..m_len).step_by(cols) {
            let wrow = &w[m * k_len..(m + 1) * k_len];
            v.clear();
            v.resize(n, 0);
            // acc holds the sum of first*second products already
            os_mult_delta(mult, second, wrow, &xg, &mut v);
            let dst = &mut acc[m * e_len..(m + 1) * e_len];
            for (x, &e) in es.iter().enumerate() {
                dst[e] = dst[e].wrapping_add(v[x]);
            }
        }
    }
    os_psum_outputs(ops, mapping, set, acc, shift);
}

/// Every output of the OS PEs with stuck `psum_reg` bits, rebuilt: the
/// accumulator adds term `k` in cycle `k + i + j`; the other cycles add 0
/// and only apply the (idempotent) psum mask, as does the read-out. The
/// mask acts before every add, so each output is a scan over `K`; the scans
/// of all such outputs of the layer run side by side as lanes (per-lane
/// masks), which keeps the vectors full when a PE has only a few outputs.
fn os_psum_outputs(
    ops: &EngineOperands,
    mapping: &Mapping,
    set: &PeSet,
    acc: &mut [i32],
    shift: u32,
) {
    let pes = &set.masks[..];
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let mut lanes = OsLanes::default();
    // Lanes come in groups, one per (PE, filter): the outputs e = i, i +
    // rows, ... of filter m. Per group: first lane, PE row i, m, masks.
    let mut groups: Vec<(usize, usize, usize, Option<StuckMask>, StuckMask)> = Vec::new();
    let mut outs: Vec<usize> = Vec::new();
    for &pe in &set.faulty {
        let masks = &pes[pe];
        let Some(psum) = masks.psum else { continue };
        let (i, j) = (pe / cols, pe % cols);
        if i >= e_len || j >= m_len {
            continue;
        }
        let mult = id(masks.mult);
        for m in (j..m_len).step_by(cols) {
            groups.push((outs.len(), i, m, masks.first, id(masks.second)));
            for e in (i..e_len).step_by(rows) {
                lanes.push(psum, mult);
                outs.push(m * e_len + e);
            }
        }
    }
    let n = outs.len();
    if n == 0 {
        return;
    }
    // the product entering the multiplier register per cycle, lane-major
    // within a cycle: K x n (a group's weight is one value per cycle, so
    // the operands are multiplied here rather than stored twice)
    let mut ps: Vec<i32> = Vec::with_capacity(k_len * n);
    for k in 0..k_len {
        let row = &col[k * e_len..(k + 1) * e_len];
        for (g, &(start, i, m, first, second)) in groups.iter().enumerate() {
            let end = groups.get(g + 1).map_or(n, |next| next.0);
            let y = second.apply(i32::from(w[m * k_len + k]));
            // the group's pixels e = i, i + rows, ... (inside the row)
            let px = &row[i..i + (end - start - 1) * rows + 1];
            let f = id(first);
            ps.extend((0..end - start).map(|l| f.apply(i32::from(px[l * rows])).wrapping_mul(y)));
        }
    }
    let mut a = vec![0i32; n];
    os_psum_scan(&lanes, &ps, &mut a, shift);
    for (&o, &v) in outs.iter().zip(&a) {
        acc[o] = v;
    }
}

/// Per-lane psum and multiplier masks (struct of arrays, for vectors).
#[derive(Default)]
struct OsLanes {
    psum_and: Vec<i32>,
    psum_or: Vec<i32>,
    psum_shift: Vec<u32>,
    mult_and: Vec<i32>,
    mult_or: Vec<i32>,
    mult_shift: Vec<u32>,
}

impl OsLanes {
    fn push(&mut self, psum: StuckMask, mult: StuckMask) {
        self.psum_and.push(psum.and);
        self.psum_or.push(psum.or);
        self.psum_shift.push(psum.shift);
        self.mult_and.push(mult.and);
        self.mult_or.push(mult.or);
        self.mult_shift.push(mult.shift);
    }
}

/// [`StuckMask::apply`] with the mask's fields given.
#[inline(always)]
fn mask_with(v: i32, and: i32, or: i32, sh: u32) -> i32 {
    ((v & and) | or).wrapping_shl(sh).wrapping_shr(sh)
}

/// The scans of [`os_psum_outputs`]: `a[l]` accumulates `mult(ps[k][l])`
/// (the products) over `k` with the lane's psum mask before every add and
/// at the read-out, wrapping at the accumulator width.
#[inline(always)]
fn os_psum_scan_inner(lanes: &OsLanes, ps: &[i32], a: &mut [i32], shift: u32) {
    let n = a.len();
    let l = lanes;
    let (pa, po, psh) = (&l.psum_and[..n], &l.psum_or[..n], &l.psum_shift[..n]);
    let (ma, mo, msh) = (&l.mult_and[..n], &l.mult_or[..n], &l.mult_shift[..n]);
    for pk in ps.chunks_exact(n) {
        for i in 0..n {
            let p = mask_with(pk[i], ma[i], mo[i], msh[i]);
            let v = mask_with(a[i], pa[i], po[i], psh[i]).wrapping_add(p);
            a[i] = (v << shift) >> shift;
        }
    }
    for i in 0..n {
        a[i] = mask_with(a[i], pa[i], po[i], psh[i]);
    }
}

simd_dispatch!(fn os_psum_scan => os_psum_scan_inner(lanes: &OsLanes, ps: &[i32], a: &mut [i32], shift: u32) -> ());

/// `out[e] += sum_k dw[k] * col[k][e]` over the `k` with `dw[k] != 0`
/// (`col` is `K x out.len()`). Whole rows even when only the outputs of
/// some PE rows are wanted: on ResNet-20 at 32x32 restricting the loop to
/// those stretches of pixels made the aged chip's campaign slower (61% ->
/// 52% of the clean engine).
#[inline(always)]
fn weighted_rows_inner(dw: &[i32], col: &[i8], out: &mut [i32]) {
    let n = out.len();
    for (k, &d) in dw.iter().enumerate() {
        if d == 0 {
            continue;
        }
        for (o, &x) in out.iter_mut().zip(&col[k * n..(k + 1) * n]) {
            *o = o.wrapping_add(d.wrapping_mul(x as i32));
        }
    }
}

simd_dispatch!(fn weighted_rows => weighted_rows_inner(dw: &[i32], col: &[i8], out: &mut [i32]) -> ());

/// `acc[m][e0..e0+len] += diff[m][at..at+len]` for every stretch
/// `(e0, len, at)` of every row `m` (`diff`: rows of `n`, `acc`: rows of
/// `e_len`). Vectorised apart: the IS stretches are short (a PE row's
/// pixels right of a faulty PE), and the baseline-x86 loop was a sixth of
/// a stuck-PE campaign's samples.
#[inline(always)]
fn add_stretches_inner(
    diff: &[i32],
    n: usize,
    stretches: &[(usize, usize, usize)],
    acc: &mut [i32],
    e_len: usize,
) {
    for (dst, d) in acc.chunks_exact_mut(e_len).zip(diff.chunks_exact(n)) {
        for &(e0, len, at) in stretches {
            for (s, &x) in dst[e0..e0 + len].iter_mut().zip(&d[at..at + len]) {
                *s = s.wrapping_add(x);
            }
        }
    }
}

simd_dispatch!(fn add_stretches => add_stretches_inner(diff: &[i32], n: usize, stretches: &[(usize, usize, usize)], acc: &mut [i32], e_len: usize) -> ());

/// `v[x] = sum_k mult(p) - p`, `p = xg[k][x] * second(w[k])`.
#[inline(always)]
fn os_mult_delta_inner(mult: StuckMask, second: StuckMask, w: &[i8], xg: &[i32], v: &mut [i32]) {
    let n = v.len();
    for (k, &wk) in w.iter().enumerate() {
        let ws = second.apply(wk as i32);
        for (d, &x) in v.iter_mut().zip(&xg[k * n..(k + 1) * n]) {
            let p = x.wrapping_mul(ws);
            *d = d.wrapping_add(mult.apply(p).wrapping_sub(p));
        }
    }
}

simd_dispatch!(fn os_mult_delta => os_mult_delta_inner(mult: StuckMask, second: StuckMask, w: &[i8], xg: &[i32], v: &mut [i32]) -> ());

/// WS (`is = false`) and IS (`is = true`): position `fr*rows + r` of an
/// output is the product formed in PE `(r, c)` of row fold `fr`, reduction
/// index `k = fr*rows + r` (padding past `K`). WS: output `(e, m)` in PE
/// column `m % cols`, streamed `A[e][k]`, stationary `W[k][m]`; IS: PE
/// column `e % cols`, streamed `W[k][m]`, stationary `A[e][k]`.
///
/// Below, `sc` is an output's stationary index (WS `m`, IS `e`, the one
/// that names its PE column) and `t` its streamed index (WS `e`, IS `m`).
/// Only the stationary indices of faulty PE columns are recomputed.
fn stationary(
    is: bool,
    ops: &EngineOperands,
    mapping: &Mapping,
    set: &PeSet,
    acc: &mut [i32],
    shift: u32,
) {
    let pes = &set.masks[..];
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let sc_len = if is { e_len } else { m_len };
    let mut column_has_psum = vec![false; cols];
    for c in set.lines(cols, 1, |p| p.psum.is_some()) {
        column_has_psum[c] = true;
    }
    let mut xr: Vec<i8> = Vec::new();
    let mut wr: Vec<i8> = Vec::new();
    let mut a_new: Vec<i8> = Vec::new();
    let mut a_old: Vec<i8> = Vec::new();
    let mut b_new: Vec<i8> = Vec::new();
    let mut b_old: Vec<i8> = Vec::new();
    let mut diff: Vec<i32> = Vec::new();
    let mut out1: Vec<i32> = Vec::new();
    let mut change: Vec<i8> = Vec::new();
    let mut scs: Vec<usize> = Vec::new();
    // IS multiplier corrections read the streamed weights row by row
    let mut own_wt = Vec::new();
    let wt: &[i8] = if is && set.faulty.iter().any(|&p| pes[p].mult.is_some()) {
        transposed(ops, &mut own_wt)
    } else {
        &[]
    };
    for r in set.lines(cols, 0, |_| true) {
        let row_pes = &pes[r * cols..(r + 1) * cols];
        let ks: Vec<usize> = (r..k_len).step_by(rows).collect();
        let n_r = ks.len();
        let operand_faults = row_pes
            .iter()
            .any(|p| p.first.is_some() || p.second.is_some());
        if n_r > 0 && operand_faults {
            // The row's streamed operand, clean: WS the im2col rows `ks`
            // (`n_r x E`), IS the filters' columns `ks` (`M x n_r`).
            if is {
                wr.clear();
                for m in 0..m_len {
                    wr.extend(ks.iter().map(|&k| w[m * k_len + k]));
                }
            } else {
                xr.clear();
                for &k in &ks {
                    xr.extend_from_slice(&col[k * e_len..(k + 1) * e_len]);
                }
            }
            for (c0, c1, first) in runs(row_pes.iter().map(|p| p.first)) {
                // the run's stationary indices whose products change
                scs.clear();
                for base in (0..sc_len).step_by(cols) {
                    for c in c0..c1 {
                        let sc = base + c;
                        if sc < sc_len
                            && !column_has_psum[c]
                            && (first.is_some() || row_pes[c].second.is_some())
                        {
                            scs.push(sc);
                        }
                    }
                }
                let n = scs.len();
                if n == 0 {
                    continue;
                }
                let f = id(first);
                if is {
                    // (M x n_r) x (n_r x n): streamed weights masked by the
                    // run, stationary pixels masked per PE. The run's pixels
                    // come in stretches of consecutive indices: copied and
                    // corrected a stretch at a time.
                    let stretches = runs_of_consecutive(&scs);
                    b_old.clear();
                    for &k in &ks {
                        let row = &col[k * e_len..(k + 1) * e_len];
                        for &(e0, len, _) in &stretches {
                            b_old.extend_from_slice(&row[e0..e0 + len]);
                        }
                    }
                    let seconds = scs.iter().any(|&e| row_pes[e % cols].second.is_some());
                    let b: &[i8] = if seconds {
                        b_new.clear();
                        b_new.extend(b_old.chunks_exact(n).flat_map(|row| {
                            row.iter()
                                .zip(&scs)
                                .map(|(&v, &e)| masked(id(row_pes[e % cols].second), v))
                        }));
                        &b_new
                    } else {
                        &b_old
                    };
                    let a: &[i8] = if first.is_some() {
                        a_new.clear();
                        a_new.extend(wr.iter().map(|&v| masked(f, v)));
                        &a_new
                    } else {
                        &wr
                    };
                    let (a1, b1) = (first.is_some().then_some(a), seconds.then_some(b));
                    gemm_diff(
                        m_len,
                        n,
                        n_r,
                        (&wr, a1),
                        (&b_old, b1),
                        &mut diff,
                        (&mut change, &mut out1),
                    );
                    add_stretches(&diff, n, &stretches, acc, e_len);
                } else {
                    // (n x n_r) x (n_r x E): stationary filters masked per
                    // PE, streamed pixels masked by the run
                    a_old.clear();
                    for &m in &scs {
                        a_old.extend(ks.iter().map(|&k| w[m * k_len + k]));
                    }
                    a_new.clear();
                    for (row, &m) in a_old.chunks_exact(n_r).zip(&scs) {
                        let mask = id(row_pes[m % cols].second);
                        a_new.extend(row.iter().map(|&v| masked(mask, v)));
                    }
                    let b: &[i8] = if first.is_some() {
                        b_new.clear();
                        b_new.extend(xr.iter().map(|&v| masked(f, v)));
                        &b_new
                    } else {
                        &xr
                    };
                    let seconds = scs.iter().any(|&m| row_pes[m % cols].second.is_some());
                    let (a1, b1) = (seconds.then_some(&a_new[..]), first.is_some().then_some(b));
                    gemm_diff(
                        n,
                        e_len,
                        n_r,
                        (&a_old, a1),
                        (&xr, b1),
                        &mut diff,
                        (&mut change, &mut out1),
                    );
                    for (i, &m) in scs.iter().enumerate() {
                        add_wrapping(
                            &mut acc[m * e_len..(m + 1) * e_len],
                            &diff[i * e_len..(i + 1) * e_len],
                        );
                    }
                }
            }
        }
        // Padding position of this row in the last row fold.
        if (mapping.row_folds - 1) * rows + r >= k_len {
            for (c, p) in row_pes.iter().enumerate() {
                let v = id(p.first).apply(0).wrapping_mul(id(p.second).apply(0));
                if v == 0 || column_has_psum[c] {
                    continue;
                }
                for o in column_outputs(is, c, cols, e_len, m_len) {
                    acc[o] = acc[o].wrapping_add(v);
                }
            }
        }
        // Multiplier bits: the PE's live products, a vector over the
        // streamed index at a time.
        let mut d: Vec<i32> = Vec::new();
        for (c, p) in row_pes.iter().enumerate() {
            let Some(mult) = p.mult else { continue };
            if column_has_psum[c] {
                continue;
            }
            let (first, second) = (id(p.first), id(p.second));
            for sc in (c..sc_len).step_by(cols) {
                let t_len = if is { m_len } else { e_len };
                d.clear();
                d.resize(t_len, 0);
                for &k in &ks {
                    // IS gathers the weights of index k; WS reads the im2col row
                    let (xs, y): (&[i8], i8) = if is {
                        (&wt[k * m_len..(k + 1) * m_len], col[k * e_len + sc])
                    } else {
                        (&col[k * e_len..(k + 1) * e_len], w[sc * k_len + k])
                    };
                    mult_fix(first, mult, xs, second.apply(y as i32), &mut d);
                }
                if is {
                    for (m, &x) in d.iter().enumerate() {
                        let o = m * e_len + sc;
                        acc[o] = acc[o].wrapping_add(x);
                    }
                } else {
                    add_wrapping(&mut acc[sc * e_len..(sc + 1) * e_len], &d);
                }
            }
        }
    }
    if column_has_psum.iter().any(|&b| b) {
        replay_psum_columns(
            is,
            ops,
            mapping,
            pes,
            &column_has_psum,
            acc,
            shift,
            is && ops.m <= DIRECT_STREAM,
        );
    }
}

/// The filter operand transposed (`W^T`, `K x M`: the IS array's streamed
/// weights row by row): made once per chip and layer in the caller's cell
/// when it keeps one, else into `own`.
fn transposed<'a>(ops: &EngineOperands<'a>, own: &'a mut Vec<i8>) -> &'a [i8] {
    let (w, k_len, m_len) = (ops.w, ops.k, ops.m);
    let transpose = || {
        let mut wt = vec![0i8; k_len * m_len];
        for m in 0..m_len {
            for (k, &v) in w[m * k_len..(m + 1) * k_len].iter().enumerate() {
                wt[k * m_len + m] = v;
            }
        }
        wt
    };
    match ops.cache {
        Some(cache) => cache.wt.get_or_init(transpose),
        None => {
            *own = transpose();
            own
        }
    }
}

/// The PE columns with stuck `psum_reg` bits: their outputs are rebuilt
/// in hardware order. The psum mask makes the accumulation non-linear only
/// where it acts, so between the positions of faulty PE rows (any fault of
/// any of these columns) the sum is linear: a depth-`rows`-or-less partial
/// GEMM per stretch, shared by all the columns, and the faulty positions
/// handled one by one (psum mask before the add, masked operands,
/// multiplier, padding). Sums wrap at `psum_bits` after every stretch,
/// which equals wrapping after every add.
#[allow(clippy::too_many_arguments)]
fn replay_psum_columns(
    is: bool,
    ops: &EngineOperands,
    mapping: &Mapping,
    pes: &[PeMasks],
    column_has_psum: &[bool],
    acc: &mut [i32],
    shift: u32,
    direct: bool,
) {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let (sc_len, t_len) = if is { (e_len, m_len) } else { (m_len, e_len) };
    let pcols: Vec<usize> = (0..cols).filter(|&c| column_has_psum[c]).collect();
    // the columns' stationary indices, column after column: part (c, s0, s1)
    let mut scs: Vec<usize> = Vec::new();
    let mut parts: Vec<(usize, usize, usize)> = Vec::new();
    for &c in &pcols {
        let s0 = scs.len();
        scs.extend((c..sc_len).step_by(cols));
        if scs.len() > s0 {
            parts.push((c, s0, scs.len()));
        }
    }
    let n = scs.len();
    if n == 0 || t_len == 0 {
        return;
    }
    if direct {
        replay_direct(is, ops, mapping, pes, (&parts, &scs), acc, shift);
        return;
    }
    // Stretch starts: position 0 and every position of a faulty PE row.
    let faulty_rows: Vec<usize> = (0..rows)
        .filter(|&r| pcols.iter().any(|&c| pes[r * cols + c].any()))
        .collect();
    let positions = mapping.row_folds * rows;
    let mut starts: Vec<usize> = vec![0];
    for fr in 0..mapping.row_folds {
        starts.extend(
            faulty_rows
                .iter()
                .map(|&r| fr * rows + r)
                .filter(|&p| p != 0),
        );
    }
    // IS: the streamed weights row by row
    let mut own = Vec::new();
    let wt: &[i8] = if is { transposed(ops, &mut own) } else { &[] };
    // `n x T`, the part of column c is the rows s0..s1.
    let mut block = vec![0i32; n * t_len];
    let mut seg: Vec<i32> = Vec::new();
    let mut a: Vec<i8> = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(positions);
        let (ka, kb) = (start.min(k_len), end.min(k_len));
        let linear = kb > ka;
        if linear {
            // (n x l) x (l x T): the stationary operand of the stretch, row
            // by row, times the streamed rows as they are
            let l = kb - ka;
            a.clear();
            if is {
                for &e in &scs {
                    a.extend((ka..kb).map(|k| col[k * e_len + e]));
                }
                gemm(n, m_len, l, &a, &wt[ka * m_len..kb * m_len], &mut seg);
            } else {
                for &m in &scs {
                    a.extend_from_slice(&w[m * k_len + ka..m * k_len + kb]);
                }
                gemm(n, e_len, l, &a, &col[ka * e_len..kb * e_len], &mut seg);
            }
        }
        let r = start % rows;
        for &(c, s0, s1) in &parts {
            let p = pes[r * cols + c];
            let part = &mut block[s0 * t_len..s1 * t_len];
            if let Some(psum) = p.psum {
                mask_all(psum, part);
            }
            if linear {
                add_wrapping(part, &seg[s0 * t_len..s1 * t_len]);
            }
            if p.first.is_some() || p.second.is_some() || p.mult.is_some() {
                let (first, second, mult) = (id(p.first), id(p.second), id(p.mult));
                if start < k_len {
                    // the position's product, masked, in place of the plain one
                    let k = start;
                    let stream: &[i8] = if is {
                        &wt[k * m_len..(k + 1) * m_len]
                    } else {
                        &col[k * e_len..(k + 1) * e_len]
                    };
                    for (v, &sc) in part.chunks_exact_mut(t_len).zip(&scs[s0..s1]) {
                        let y = if is {
                            col[k * e_len + sc]
                        } else {
                            w[sc * k_len + k]
                        } as i32;
                        let ys = second.apply(y);
                        for (o, &x) in v.iter_mut().zip(stream) {
                            let x = x as i32;
                            let d = mult
                                .apply(first.apply(x).wrapping_mul(ys))
                                .wrapping_sub(x.wrapping_mul(y));
                            *o = o.wrapping_add(d);
                        }
                    }
                } else {
                    // padding: zero operands, no multiplier fault
                    let pr = first.apply(0).wrapping_mul(second.apply(0));
                    if pr != 0 {
                        for v in part.iter_mut() {
                            *v = v.wrapping_add(pr);
                        }
                    }
                }
            }
            if shift != 0 {
                for v in part.iter_mut() {
                    *v = (*v << shift) >> shift;
                }
            }
        }
    }
    for (v, &sc) in block.chunks_exact(t_len).zip(&scs) {
        if is {
            for (t, &x) in v.iter().enumerate() {
                acc[t * e_len + sc] = x;
            }
        } else {
            acc[sc * e_len..(sc + 1) * e_len].copy_from_slice(v);
        }
    }
}

/// `d[i] += mult(p) - p`, `p = first(xs[i]) * ys`: what a multiplier's
/// stuck bits change in the products of one operand row.
#[inline(always)]
fn mult_fix_inner(first: StuckMask, mult: StuckMask, xs: &[i8], ys: i32, d: &mut [i32]) {
    for (o, &x) in d.iter_mut().zip(xs) {
        let p = first.apply(x as i32).wrapping_mul(ys);
        *o = o.wrapping_add(mult.apply(p).wrapping_sub(p));
    }
}

simd_dispatch!(fn mult_fix => mult_fix_inner(first: StuckMask, mult: StuckMask, xs: &[i8], ys: i32, d: &mut [i32]) -> ());

/// IS streams up to this long take [`replay_direct`] in
/// [`replay_psum_columns`]: below it a GEMM call per stretch costs more in
/// packing and setup than it saves (IS streams are `M`, 16-64 in
/// ResNet-20). WS keeps the stretch GEMMs: its stream is the image's
/// im2col operand, which would be paired afresh per layer and image for
/// the one or two filters a PE column holds (on ResNet-20 at 32x32 the
/// pairing made a stuck-PE campaign slower, 50% -> 40% of the clean
/// engine, while the old rank-one updates gave 48%).
const DIRECT_STREAM: usize = 256;

/// [`replay_psum_columns`] for short streams: each output row of the psum
/// columns (one stationary index, the `T` streamed ones) rebuilt on its
/// own, [`LANES`] streamed indices at a time held in registers through the
/// whole reduction. Between the positions of the column's faulty PEs the
/// sum is linear and goes two reduction indices per multiply-add
/// ([`pair_dot`]); at those positions the psum mask acts on the wrapped
/// sum and the position's product is formed with its masks. Per column,
/// only its own faulty positions break the stretches.
#[inline(always)]
fn replay_direct_inner(
    is: bool,
    ops: &EngineOperands,
    mapping: &Mapping,
    pes: &[PeMasks],
    (parts, scs): (&[(usize, usize, usize)], &[usize]),
    acc: &mut [i32],
    shift: u32,
) {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let t_len = if is { m_len } else { e_len };
    let mut own_wt = Vec::new();
    let wt: &[i8] = if is {
        transposed(ops, &mut own_wt)
    } else {
        &[]
    };
    let stream = |k: usize| -> &[i8] {
        if is {
            &wt[k * m_len..(k + 1) * m_len]
        } else {
            &col[k * e_len..(k + 1) * e_len]
        }
    };
    // IS streams the filter: the same pairs for every image of the chip.
    let own_pairs;
    let pairs: &PairedRows = match ops.cache {
        Some(cache) if is => cache
            .pairs
            .get_or_init(|| PairedRows::new(k_len, t_len, stream)),
        _ => {
            own_pairs = PairedRows::new(k_len, t_len, stream);
            &own_pairs
        }
    };
    let madd = pair_dot::best();
    let stride = pairs.stride();
    // a row's stationary code at reduction index k
    let y_at = |k: usize, sc: usize| {
        if is {
            col[k * e_len + sc]
        } else {
            w[sc * k_len + k]
        }
    };
    // `a += sum over k in ka..kb of y[k] * s[k][t0..t0+16]`, `yp` the
    // row's codes as pairs
    let linear = |a: &mut [i32; LANES], sc: usize, yp: &[i32], t0: usize, ka: usize, kb: usize| {
        let mut ka = ka;
        if ka >= kb {
            return;
        }
        if ka % 2 == 1 {
            madd(
                a,
                &[pair_dot::pack(0, y_at(ka, sc))],
                pairs.from(ka / 2, t0),
                stride,
            );
            ka += 1;
        }
        let (j0, j1) = (ka / 2, kb / 2);
        if j1 > j0 {
            madd(a, &yp[j0..j1], pairs.from(j0, t0), stride);
        }
        if kb % 2 == 1 && kb > ka {
            madd(
                a,
                &[pair_dot::pack(y_at(kb - 1, sc), 0)],
                pairs.from(kb / 2, t0),
                stride,
            );
        }
    };
    let wrap = |a: &mut [i32; LANES]| {
        if shift != 0 {
            for v in a.iter_mut() {
                *v = (*v << shift) >> shift;
            }
        }
    };
    // Every row's stationary codes as pairs, `n x ceil(K/2)`, in one pass
    // over the operand (IS reads each pixel down the im2col columns).
    let kp = k_len.div_ceil(2);
    let mut yps: Vec<i32> = vec![0; scs.len() * kp];
    for j in 0..kp {
        let hi = 2 * j + 1 < k_len;
        for (i, &sc) in scs.iter().enumerate() {
            let h = if hi { y_at(2 * j + 1, sc) } else { 0 };
            yps[i * kp + j] = pair_dot::pack(y_at(2 * j, sc), h);
        }
    }
    let positions = mapping.row_folds * rows;
    let mut events: Vec<(usize, PeMasks)> = Vec::new();
    for &(c, s0, s1) in parts {
        // the column's faulty positions, in hardware order
        events.clear();
        for fr in 0..mapping.row_folds {
            for r in 0..rows {
                let p = pes[r * cols + c];
                if p.any() && fr * rows + r < positions {
                    events.push((fr * rows + r, p));
                }
            }
        }
        for (i, &sc) in scs.iter().enumerate().take(s1).skip(s0) {
            let yp = &yps[i * kp..(i + 1) * kp];
            for t0 in (0..t_len).step_by(LANES) {
                let lanes = (t_len - t0).min(LANES);
                let mut a = [0i32; LANES];
                let mut k = 0;
                for &(pos, p) in &events {
                    linear(&mut a, sc, yp, t0, k, pos.min(k_len));
                    if let Some(psum) = p.psum {
                        wrap(&mut a);
                        for v in a.iter_mut() {
                            *v = psum.apply(*v);
                        }
                    }
                    let (first, second) = (id(p.first), id(p.second));
                    if pos < k_len {
                        let (mult, y) = (id(p.mult), second.apply(i32::from(y_at(pos, sc))));
                        for (v, &x) in a.iter_mut().zip(&stream(pos)[t0..t0 + lanes]) {
                            let pr = mult.apply(first.apply(i32::from(x)).wrapping_mul(y));
                            *v = v.wrapping_add(pr);
                        }
                    } else {
                        // padding: zero operands, no multiplier fault
                        let pr = first.apply(0).wrapping_mul(second.apply(0));
                        for v in a.iter_mut() {
                            *v = v.wrapping_add(pr);
                        }
                    }
                    k = pos + 1;
                }
                linear(&mut a, sc, yp, t0, k.min(k_len), k_len);
                wrap(&mut a);
                if is {
                    for (l, &v) in a[..lanes].iter().enumerate() {
                        acc[(t0 + l) * e_len + sc] = v;
                    }
                } else {
                    acc[sc * e_len + t0..sc * e_len + t0 + lanes].copy_from_slice(&a[..lanes]);
                }
            }
        }
    }
}

simd_dispatch!(fn replay_direct => replay_direct_inner(is: bool, ops: &EngineOperands, mapping: &Mapping, pes: &[PeMasks], outputs: (&[(usize, usize, usize)], &[usize]), acc: &mut [i32], shift: u32) -> ());

#[inline(always)]
fn mask_all_inner(mask: StuckMask, v: &mut [i32]) {
    for x in v {
        *x = mask.apply(*x);
    }
}

simd_dispatch!(fn mask_all => mask_all_inner(mask: StuckMask, v: &mut [i32]) -> ());

#[inline(always)]
fn add_wrapping_inner(acc: &mut [i32], a: &[i32]) {
    for (s, &x) in acc.iter_mut().zip(a) {
        *s = s.wrapping_add(x);
    }
}

simd_dispatch!(fn add_wrapping => add_wrapping_inner(acc: &mut [i32], a: &[i32]) -> ());

/// The outputs (`m * e_len + e`) of PE column `c`: WS filters `m = c mod
/// cols`, IS pixels `e = c mod cols`.
fn column_outputs(
    is: bool,
    c: usize,
    cols: usize,
    e_len: usize,
    m_len: usize,
) -> impl Iterator<Item = usize> {
    let (outer, inner) = if is {
        ((0..m_len).step_by(1), (c..e_len).step_by(cols))
    } else {
        ((c..m_len).step_by(cols), (0..e_len).step_by(1))
    };
    outer.flat_map(move |m| inner.clone().map(move |e| m * e_len + e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn random_mask(rng: &mut Xoshiro256PlusPlus, width: u32) -> StuckMask {
        let b = rng.random_range(0..width);
        let stuck1 = rng.random::<bool>();
        StuckMask {
            and: if stuck1 { -1 } else { !(1 << b) },
            or: if stuck1 { 1 << b } else { 0 },
            shift: 32 - width,
        }
    }

    /// The outputs of the psum-stuck PE columns, position by position in
    /// hardware order (the definition the stretches must reproduce).
    #[allow(clippy::too_many_arguments)]
    fn replay_reference(
        is: bool,
        ops: &EngineOperands,
        mapping: &Mapping,
        pes: &[PeMasks],
        column_has_psum: &[bool],
        acc: &mut [i32],
        shift: u32,
    ) {
        let (rows, cols) = (mapping.rows, mapping.cols);
        let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
        for m in 0..m_len {
            for e in 0..e_len {
                let c = if is { e % cols } else { m % cols };
                if !column_has_psum[c] {
                    continue;
                }
                let mut a = 0i32;
                for kr in 0..mapping.row_folds * rows {
                    let p = pes[(kr % rows) * cols + c];
                    if let Some(psum) = p.psum {
                        a = psum.apply(a);
                    }
                    let (first, second) = (id(p.first), id(p.second));
                    let pr = if kr < k_len {
                        let (x, wv) =
                            (ops.col[kr * e_len + e] as i32, ops.w[m * k_len + kr] as i32);
                        let (s, y) = if is { (wv, x) } else { (x, wv) };
                        id(p.mult).apply(first.apply(s).wrapping_mul(second.apply(y)))
                    } else {
                        first.apply(0).wrapping_mul(second.apply(0))
                    };
                    a = (a.wrapping_add(pr) << shift) >> shift;
                }
                acc[m * e_len + e] = a;
            }
        }
    }

    /// `gemm_diff` equals `x1*y1 - x0*y0` computed plainly: one side or
    /// both changed by stuck-bit masks (sign bit included, several bits,
    /// so both the scaled single GEMM and the two-GEMM fallback run) or
    /// neither.
    #[test]
    fn gemm_diff_equals_the_plain_difference() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let (mut diff, mut tmp, mut change) = (Vec::new(), Vec::new(), Vec::new());
        for case in 0..60 {
            let (m, n, k) = (
                rng.random_range(1..12),
                rng.random_range(1..40),
                rng.random_range(1..50),
            );
            let x0: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
            let y0: Vec<i8> = (0..k * n).map(|_| rng.random()).collect();
            let mask = |rng: &mut Xoshiro256PlusPlus| {
                let mut f = random_mask(rng, 8);
                if case % 3 == 0 {
                    // two bits: 0 and 7 give changes of 1 and 128 (no i8 scale)
                    let g = random_mask(rng, 8);
                    f.and &= g.and;
                    f.or = (f.or | g.or) & f.and | g.or;
                }
                f
            };
            let (fx, fy) = (mask(&mut rng), mask(&mut rng));
            let x1: Vec<i8> = x0.iter().map(|&v| masked(fx, v)).collect();
            let y1: Vec<i8> = y0.iter().map(|&v| masked(fy, v)).collect();
            let sides = [
                (Some(&x1[..]), None),
                (None, Some(&y1[..])),
                (Some(&x1[..]), Some(&y1[..])),
                (None, None),
            ];
            for (a1, b1) in sides {
                gemm_diff(
                    m,
                    n,
                    k,
                    (&x0, a1),
                    (&y0, b1),
                    &mut diff,
                    (&mut change, &mut tmp),
                );
                let (xa, yb) = (a1.unwrap_or(&x0), b1.unwrap_or(&y0));
                for i in 0..m {
                    for j in 0..n {
                        let want = (0..k).fold(0i32, |s, p| {
                            s.wrapping_add(i32::from(xa[i * k + p]) * i32::from(yb[p * n + j]))
                                .wrapping_sub(i32::from(x0[i * k + p]) * i32::from(y0[p * n + j]))
                        });
                        assert_eq!(diff[i * n + j], want, "case {case} ({i}, {j})");
                    }
                }
            }
        }
    }

    /// Both ways of summing the linear stretches (a GEMM per stretch shared
    /// by the columns, output rows in registers with paired multiply-adds)
    /// equal the position-by-position replay, with psum, operand and
    /// multiplier masks in the same columns, wrapping at 32 and 20 bits.
    #[test]
    fn psum_column_stretches_equal_the_position_replay() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for case in 0..64 {
            let is = case % 2 == 1;
            let (rows, cols) = (rng.random_range(2..7), rng.random_range(2..6));
            let (e_len, k_len, m_len) = (
                rng.random_range(1..40),
                rng.random_range(1..30),
                // streams of several 16-lane chunks and a partial one
                rng.random_range(1..40),
            );
            let col: Vec<i8> = (0..k_len * e_len).map(|_| rng.random()).collect();
            let w: Vec<i8> = (0..m_len * k_len).map(|_| rng.random()).collect();
            let df = if is { Dataflow::Is } else { Dataflow::Ws };
            let mapping = SystolicArray::new(rows, cols, df)
                .unwrap()
                .mapping(e_len, k_len, m_len);
            let mut pes = vec![
                PeMasks {
                    first: None,
                    second: None,
                    mult: None,
                    psum: None
                };
                rows * cols
            ];
            let psum_bits = if case % 4 < 2 { 32 } else { 20 };
            for _ in 0..rng.random_range(1..5) {
                let p = &mut pes[rng.random_range(0..rows * cols)];
                match rng.random_range(0..4) {
                    0 => p.first = Some(random_mask(&mut rng, 8)),
                    1 => p.second = Some(random_mask(&mut rng, 8)),
                    2 => p.mult = Some(random_mask(&mut rng, 16)),
                    _ => p.psum = Some(random_mask(&mut rng, psum_bits)),
                }
            }
            let c = rng.random_range(0..cols);
            pes[rng.random_range(0..rows) * cols + c].psum = Some(random_mask(&mut rng, psum_bits));
            let column_has_psum: Vec<bool> = (0..cols)
                .map(|c| (0..rows).any(|r| pes[r * cols + c].psum.is_some()))
                .collect();
            let ops = EngineOperands {
                col: &col,
                w: &w,
                cache: None,
                packed: None,
                e: e_len,
                k: k_len,
                m: m_len,
            };
            let shift = 32 - psum_bits;
            let mut want = vec![7i32; m_len * e_len];
            replay_reference(is, &ops, &mapping, &pes, &column_has_psum, &mut want, shift);
            for direct in [false, true] {
                let mut got = vec![7i32; m_len * e_len];
                replay_psum_columns(
                    is,
                    &ops,
                    &mapping,
                    &pes,
                    &column_has_psum,
                    &mut got,
                    shift,
                    direct,
                );
                assert_eq!(got, want, "case {case}, direct {direct}");
            }
        }
    }
}
