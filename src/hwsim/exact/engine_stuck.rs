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
//!   outputs of the PE cycle by cycle; WS/IS replay every output of the PE
//!   column in hardware order, all outputs of one stationary column at once
//!   (a vector over the stream).
//!
//! The rules (fault order, live/non-live products, masks) are those of
//! `stuck.rs`, which the per-output path cross-checks; the proptests compare
//! whole networks against the cycle-level executor.

use super::super::{Dataflow, FaultKind, HwFault, HwSimError, Mapping, SystolicArray};
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
    /// `w` packed for the engine's default kernel, if the caller has it.
    pub packed: Option<&'a PackedA>,
    pub e: usize,
    pub k: usize,
    pub m: usize,
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
            if pes.iter().any(|p| p.first.is_some() && p.second.is_some()) {
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

thread_local! {
    static MASKS: std::cell::RefCell<Option<(MaskKey, std::rc::Rc<Vec<PeMasks>>)>> =
        const { std::cell::RefCell::new(None) };
}

/// [`pe_masks`] of stuck-only `faults`, remembered per thread for the last
/// fault list (every layer of a chip's images asks for the same).
fn cached_pe_masks(
    dp: &Datapath,
    mapping: &Mapping,
    faults: &[HwFault],
) -> std::rc::Rc<Vec<PeMasks>> {
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
        let pes = std::rc::Rc::new(pe_masks(dp, mapping, &events));
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

#[inline(always)]
fn masked(m: StuckMask, v: i8) -> i8 {
    m.apply(v as i32) as i8
}

/// Output stationary: output `(e, m)` in PE `(e % rows, m % cols)`.
fn os(ops: &EngineOperands, mapping: &Mapping, pes: &[PeMasks], acc: &mut [i32], shift: u32) {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let mut b: Vec<i8> = Vec::new();
    let mut out: Vec<i32> = Vec::new();
    // Activation bits of PE row i: recompute outputs e = i mod rows.
    for i in 0..rows.min(e_len) {
        let segs = runs((0..cols).map(|j| pes[i * cols + j].first));
        if segs.iter().all(|s| s.2.is_none()) {
            continue;
        }
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
    for j in 0..cols.min(m_len) {
        let segs = runs((0..rows).map(|i| pes[i * cols + j].second));
        if segs.iter().all(|s| s.2.is_none()) {
            continue;
        }
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
    // Multiplier and psum bits: the outputs of the PE, a block at a time.
    let mut xg: Vec<i32> = Vec::new();
    let mut v: Vec<i32> = Vec::new();
    for (pe, masks) in pes.iter().enumerate() {
        if masks.mult.is_none() && masks.psum.is_none() {
            continue;
        }
        let (i, j) = (pe / cols, pe % cols);
        if i >= e_len || j >= m_len {
            continue;
        }
        let (first, second, mult) = (id(masks.first), id(masks.second), id(masks.mult));
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
            match masks.psum {
                // acc holds the sum of first*second products already
                None => os_mult_delta(mult, second, wrow, &xg, &mut v),
                // The accumulator adds term k in cycle k + i + j; the other
                // cycles add 0 and only apply the (idempotent) psum mask,
                // as does the read-out.
                Some(psum) => os_psum_replay(psum, mult, second, wrow, &xg, &mut v, shift),
            }
            let dst = &mut acc[m * e_len..(m + 1) * e_len];
            for (x, &e) in es.iter().enumerate() {
                dst[e] = match masks.psum {
                    None => dst[e].wrapping_add(v[x]),
                    Some(_) => v[x],
                };
            }
        }
    }
}

/// `out[e] += sum_k dw[k] * col[k][e]` over the `k` with `dw[k] != 0`
/// (`col` is `K x out.len()`).
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

/// `v[x]`: the OS accumulation of the products `xg[k][x] * second(w[k])`
/// with the psum mask before every add and at the read-out.
#[inline(always)]
fn os_psum_replay_inner(
    psum: StuckMask,
    mult: StuckMask,
    second: StuckMask,
    w: &[i8],
    xg: &[i32],
    v: &mut [i32],
    shift: u32,
) {
    let n = v.len();
    for (k, &wk) in w.iter().enumerate() {
        let ws = second.apply(wk as i32);
        for (a, &x) in v.iter_mut().zip(&xg[k * n..(k + 1) * n]) {
            let p = mult.apply(x.wrapping_mul(ws));
            *a = (psum.apply(*a).wrapping_add(p) << shift) >> shift;
        }
    }
    for a in v.iter_mut() {
        *a = psum.apply(*a);
    }
}

simd_dispatch!(fn os_psum_replay => os_psum_replay_inner(psum: StuckMask, mult: StuckMask, second: StuckMask, w: &[i8], xg: &[i32], v: &mut [i32], shift: u32) -> ());

/// WS (`is = false`) and IS (`is = true`): position `fr*rows + r` of an
/// output is the product formed in PE `(r, c)` of row fold `fr`, reduction
/// index `k = fr*rows + r` (padding past `K`). WS: output `(e, m)` in PE
/// column `m % cols`, streamed `A[e][k]`, stationary `W[k][m]`; IS: PE
/// column `e % cols`, streamed `W[k][m]`, stationary `A[e][k]`.
fn stationary(
    is: bool,
    ops: &EngineOperands,
    mapping: &Mapping,
    pes: &[PeMasks],
    acc: &mut [i32],
    shift: u32,
) {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (ops.e, ops.k, ops.m);
    let (col, w) = (ops.col, ops.w);
    let positions = mapping.row_folds * rows;
    let column_has_psum: Vec<bool> = (0..cols)
        .map(|c| (0..rows).any(|r| pes[r * cols + c].psum.is_some()))
        .collect();
    let mut xr: Vec<i8> = Vec::new();
    let mut wr: Vec<i8> = Vec::new();
    let mut xs: Vec<i8> = Vec::new();
    let mut ws: Vec<i8> = Vec::new();
    let mut out0: Vec<i32> = Vec::new();
    let mut out1: Vec<i32> = Vec::new();
    let mut sel: Vec<i32> = Vec::new();
    let mut stat_masks: Vec<StuckMask> = Vec::new();
    for r in 0..rows {
        let row_pes = &pes[r * cols..(r + 1) * cols];
        if !row_pes.iter().any(PeMasks::any) {
            continue;
        }
        let ks: Vec<usize> = (r..k_len).step_by(rows).collect();
        let n_r = ks.len();
        let operand_faults = row_pes
            .iter()
            .any(|p| p.first.is_some() || p.second.is_some());
        if n_r > 0 && operand_faults {
            // clean partial sums of the row's reduction indices
            xr.clear();
            for &k in &ks {
                xr.extend_from_slice(&col[k * e_len..(k + 1) * e_len]);
            }
            wr.clear();
            for m in 0..m_len {
                wr.extend(ks.iter().map(|&k| w[m * k_len + k]));
            }
            gemm(m_len, e_len, n_r, &wr, &xr, &mut out0);
            // the stationary operand masked per PE
            if is {
                stat_masks.clear();
                stat_masks.extend((0..e_len).map(|e| id(row_pes[e % cols].second)));
                xs.clear();
                for x in xr.chunks_exact(e_len) {
                    xs.extend(x.iter().zip(&stat_masks).map(|(&v, &mk)| masked(mk, v)));
                }
            } else {
                ws.clear();
                for m in 0..m_len {
                    let mask = id(row_pes[m % cols].second);
                    ws.extend(wr[m * n_r..(m + 1) * n_r].iter().map(|&v| masked(mask, v)));
                }
            }
            for (c0, c1, first) in runs(row_pes.iter().map(|p| p.first)) {
                let seconds = row_pes[c0..c1].iter().any(|p| p.second.is_some());
                if first.is_none() && !seconds {
                    continue;
                }
                let f = id(first);
                if is {
                    // streamed weights masked by the run's mask
                    ws.clear();
                    ws.extend(wr.iter().map(|&v| masked(f, v)));
                    gemm(m_len, e_len, n_r, &ws, &xs, &mut out1);
                } else {
                    xs.clear();
                    xs.extend(xr.iter().map(|&v| masked(f, v)));
                    gemm(m_len, e_len, n_r, &ws, &xs, &mut out1);
                }
                let chosen = |c: usize| (c0..c1).contains(&c) && !column_has_psum[c];
                if is {
                    sel.clear();
                    sel.extend((0..e_len).map(|e| -i32::from(chosen(e % cols))));
                    for ((a, (o1, o0)), _) in acc[..m_len * e_len]
                        .chunks_exact_mut(e_len)
                        .zip(out1.chunks_exact(e_len).zip(out0.chunks_exact(e_len)))
                        .zip(0..m_len)
                    {
                        add_masked_diff(a, o1, o0, &sel);
                    }
                } else {
                    for m in (0..m_len).filter(|m| chosen(m % cols)) {
                        let span = m * e_len..(m + 1) * e_len;
                        add_diff(&mut acc[span.clone()], &out1[span.clone()], &out0[span]);
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
        // Multiplier bits: the PE's live products.
        for (c, p) in row_pes.iter().enumerate() {
            let Some(mult) = p.mult else { continue };
            if column_has_psum[c] {
                continue;
            }
            let (first, second) = (id(p.first), id(p.second));
            for o in column_outputs(is, c, cols, e_len, m_len) {
                let (m, e) = (o / e_len, o % e_len);
                {
                    let mut d = 0i32;
                    for &k in &ks {
                        let (a, wv) = (col[k * e_len + e] as i32, w[m * k_len + k] as i32);
                        let pr = if is {
                            first.apply(wv).wrapping_mul(second.apply(a))
                        } else {
                            first.apply(a).wrapping_mul(second.apply(wv))
                        };
                        d = d.wrapping_add(mult.apply(pr).wrapping_sub(pr));
                    }
                    acc[o] = acc[o].wrapping_add(d);
                }
            }
        }
    }
    // Columns with psum bits: every output replayed in hardware order.
    if !column_has_psum.iter().any(|&b| b) {
        return;
    }
    let mut wt: Vec<i8> = Vec::new();
    if is {
        // the streamed weights row by row: W^T, K x M
        wt = vec![0; k_len * m_len];
        for (k, row) in wt.chunks_exact_mut(m_len.max(1)).enumerate().take(k_len) {
            for (m, d) in row.iter_mut().enumerate() {
                *d = w[m * k_len + k];
            }
        }
    }
    let mut block: Vec<i32> = Vec::new();
    for c in (0..cols).filter(|&c| column_has_psum[c]) {
        let column: Vec<PeMasks> = (0..rows).map(|r| pes[r * cols + c]).collect();
        // stationary columns of this PE column: WS filters m, IS pixels e
        let (sc_len, t_len) = if is { (e_len, m_len) } else { (m_len, e_len) };
        let scs: Vec<usize> = (c..sc_len).step_by(cols).collect();
        block.clear();
        block.resize(scs.len() * t_len, 0);
        let replay = Replay {
            is,
            col,
            w,
            wt: &wt,
            e_len,
            k_len,
            positions,
            shift,
        };
        replay_column(&replay, &column, &scs, &mut block);
        for (&sc, v) in scs.iter().zip(block.chunks_exact(t_len.max(1))) {
            for (t, &a) in v.iter().enumerate() {
                let o = if is { t * e_len + sc } else { sc * e_len + t };
                acc[o] = a;
            }
        }
    }
}

/// What the replay of a WS/IS PE column reads.
struct Replay<'a> {
    is: bool,
    col: &'a [i8],
    w: &'a [i8],
    /// IS: `W^T` (`K x M`), the streamed rows.
    wt: &'a [i8],
    e_len: usize,
    k_len: usize,
    positions: usize,
    shift: u32,
}

/// Every output of the stationary columns `scs` of one PE column (masks
/// `column`, by PE row), position by position in hardware order; `block`
/// (`scs.len() x T`, zeroed) receives the sums.
#[inline(always)]
fn replay_column_inner(rp: &Replay, column: &[PeMasks], scs: &[usize], block: &mut [i32]) {
    let rows = column.len();
    let t_len = block.len() / scs.len().max(1);
    let shift = rp.shift;
    let mut xs = vec![0i32; t_len];
    for kr in 0..rp.positions {
        let p = &column[kr % rows];
        if let Some(psum) = p.psum {
            for a in block.iter_mut() {
                *a = psum.apply(*a);
            }
        }
        let (first, second) = (id(p.first), id(p.second));
        let live = kr < rp.k_len;
        if !live {
            // padding: zero operands, no multiplier fault
            let pr = first.apply(0).wrapping_mul(second.apply(0));
            if pr != 0 {
                for a in block.iter_mut() {
                    *a = (a.wrapping_add(pr) << shift) >> shift;
                }
            }
            continue;
        }
        let stream: &[i8] = if rp.is {
            &rp.wt[kr * t_len..(kr + 1) * t_len]
        } else {
            &rp.col[kr * rp.e_len..(kr + 1) * rp.e_len]
        };
        if shift == 0 && p.first.is_none() && p.mult.is_none() {
            // plain products and a 32-bit wrapping accumulator: a multiply-add
            for (&sc, v) in scs.iter().zip(block.chunks_exact_mut(t_len.max(1))) {
                let y = if rp.is {
                    rp.col[kr * rp.e_len + sc]
                } else {
                    rp.w[sc * rp.k_len + kr]
                };
                let ys = second.apply(y as i32);
                if ys == 0 {
                    continue;
                }
                for (a, &x) in v.iter_mut().zip(stream) {
                    *a = a.wrapping_add((x as i32).wrapping_mul(ys));
                }
            }
            continue;
        }
        for (x, &v) in xs.iter_mut().zip(stream) {
            *x = first.apply(v as i32);
        }
        let mult = id(p.mult);
        for (&sc, v) in scs.iter().zip(block.chunks_exact_mut(t_len.max(1))) {
            let y = if rp.is {
                rp.col[kr * rp.e_len + sc]
            } else {
                rp.w[sc * rp.k_len + kr]
            };
            let ys = second.apply(y as i32);
            for (a, &x) in v.iter_mut().zip(&xs) {
                let pr = mult.apply(x.wrapping_mul(ys));
                *a = (a.wrapping_add(pr) << shift) >> shift;
            }
        }
    }
}

simd_dispatch!(fn replay_column => replay_column_inner(rp: &Replay, column: &[PeMasks], scs: &[usize], block: &mut [i32]) -> ());

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

#[inline(always)]
fn add_diff_inner(acc: &mut [i32], a: &[i32], b: &[i32]) {
    for ((s, &x), &y) in acc.iter_mut().zip(a).zip(b) {
        *s = s.wrapping_add(x.wrapping_sub(y));
    }
}

simd_dispatch!(fn add_diff => add_diff_inner(acc: &mut [i32], a: &[i32], b: &[i32]) -> ());

#[inline(always)]
fn add_masked_diff_inner(acc: &mut [i32], a: &[i32], b: &[i32], sel: &[i32]) {
    for (((s, &x), &y), &k) in acc.iter_mut().zip(a).zip(b).zip(sel) {
        *s = s.wrapping_add(x.wrapping_sub(y) & k);
    }
}

simd_dispatch!(fn add_masked_diff => add_masked_diff_inner(acc: &mut [i32], a: &[i32], b: &[i32], sel: &[i32]) -> ());
