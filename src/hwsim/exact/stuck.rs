//! Stuck-at bits in operand registers and multiplier outputs, applied PE
//! by PE instead of output by output.
//!
//! A stuck bit acts the same way in every fold and every cycle, so every
//! output computed in PE `(i, j)` sees the same composition of masks on
//! its operands: for OS the activation passed the act registers of PEs
//! `(i, 0..=j)`, the weight the weight registers of PEs `(0..=i, j)`; for
//! WS/IS the streamed value of row `r` passed the streaming registers of
//! PEs `(r, 0..=c)` and the stationary one sits in PE `(r, c)` (its stuck
//! bits act from the latch on); multiplier stuck bits act on live products
//! of the PE. The masks compose in the order the stepping loops apply them
//! (by PE along the value's path, then fault-list order; see
//! [`StuckMask`]). With a wrapping accumulator, or one that provably never
//! saturates, the output is then `clean + sum of product changes`, which is
//! computed here in tight loops over the outputs of each affected PE.
//!
//! Not handled (the caller falls back to the per-output evaluation): a
//! saturating accumulator that could clamp, and in OS a PE whose outputs see
//! corrupted activations *and* corrupted weights (corrupted skew bubbles
//! then meet, and when they do depends on the cycle).

use super::super::is::InputStationary;
use super::super::stationary::StationaryRoles;
use super::super::ws::WeightStationary;
use super::super::Operands;
use super::{Arith, Event, StuckMask};
use crate::fixed::{Datapath, Overflow};
use crate::hwsim::{Dataflow, FaultSite, Gemm, Mapping};

/// Masks of one PE: on the activation/streamed operand, the weight /
/// stationary operand, the product (`None` = untouched).
#[derive(Clone, Copy, Default)]
struct PeMasks {
    first: Option<StuckMask>,
    second: Option<StuckMask>,
    mult: Option<StuckMask>,
}

impl PeMasks {
    fn any(&self) -> bool {
        self.first.is_some() || self.second.is_some() || self.mult.is_some()
    }
}

fn mask_of(events: &[Event], width: u32) -> Option<StuckMask> {
    if events.is_empty() {
        return None;
    }
    StuckMask::of(events, width)
}

#[inline(always)]
fn ap(m: Option<StuckMask>, v: i32) -> i32 {
    m.map_or(v, |m| m.apply(v))
}

/// The change of every output the permanent faults `events` (operand and
/// multiplier sites only) reach, or `None` if this path cannot compute it
/// exactly (see the module doc).
pub(super) fn changes(
    gemm: &Gemm,
    dp: &Datapath,
    mapping: &Mapping,
    events: &[Event],
) -> Option<Vec<(usize, i64)>> {
    let positions = match mapping.dataflow {
        Dataflow::Os => mapping.cycles_per_fold as usize,
        Dataflow::Ws | Dataflow::Is => mapping.row_folds * mapping.rows,
    };
    if dp.overflow != Overflow::Wrap && !Arith::new(dp, positions).never_saturates {
        return None;
    }
    let (act_w, weight_w) = (u32::from(dp.act_bits), u32::from(dp.weight_bits));
    let mult_w = act_w + weight_w;
    let (rows, cols) = (mapping.rows, mapping.cols);
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.index);
    let at = |site: FaultSite, keep: &dyn Fn(&Event) -> bool, by_row: bool| -> Vec<Event> {
        let mut v: Vec<Event> = sorted
            .iter()
            .filter(|e| e.site == site && keep(e))
            .copied()
            .collect();
        // along the value's path (by PE), then list order (stable sort)
        if by_row {
            v.sort_by_key(|e| e.row);
        } else {
            v.sort_by_key(|e| e.col);
        }
        v
    };
    let mut pes = vec![PeMasks::default(); rows * cols];
    let (first_site, second_site, first_w, second_w) = match mapping.dataflow {
        Dataflow::Os | Dataflow::Ws => (FaultSite::ActReg, FaultSite::WeightReg, act_w, weight_w),
        Dataflow::Is => (FaultSite::WeightReg, FaultSite::ActReg, weight_w, act_w),
    };
    for i in 0..rows {
        for j in 0..cols {
            // first operand: moving right along row i, PEs 0..=j
            let first = at(first_site, &|e| e.row == i && e.col <= j, false);
            let second = match mapping.dataflow {
                // OS weights move down column j, PEs 0..=i
                Dataflow::Os => at(second_site, &|e| e.col == j && e.row <= i, true),
                // WS/IS: the stationary register of the PE itself
                _ => at(second_site, &|e| e.row == i && e.col == j, true),
            };
            let mult = at(FaultSite::MultOut, &|e| e.row == i && e.col == j, true);
            let m = PeMasks {
                first: mask_of(&first, first_w),
                second: mask_of(&second, second_w),
                mult: mask_of(&mult, mult_w),
            };
            if mapping.dataflow == Dataflow::Os && m.first.is_some() && m.second.is_some() {
                return None;
            }
            pes[i * cols + j] = m;
        }
    }
    let ops = Operands {
        a: gemm.a,
        w: gemm.w,
        e: gemm.e,
        k: gemm.k,
        m: gemm.m,
    };
    Some(match mapping.dataflow {
        Dataflow::Os => os_changes(&ops, mapping, &pes),
        Dataflow::Ws => stationary_changes::<WeightStationary>(&ops, mapping, &pes),
        Dataflow::Is => stationary_changes::<InputStationary>(&ops, mapping, &pes),
    })
}

/// OS: output `(e, m)` in PE `(e % rows, m % cols)`; live terms only (one
/// operand side is untouched, so bubbles add zero).
fn os_changes(ops: &Operands, mapping: &Mapping, pes: &[PeMasks]) -> Vec<(usize, i64)> {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (k_len, m_len) = (ops.k, ops.m);
    let mut out = Vec::new();
    for (pe, masks) in pes.iter().enumerate() {
        if !masks.any() {
            continue;
        }
        let (i, j) = (pe / cols, pe % cols);
        for e in (i..ops.e).step_by(rows) {
            let a = &ops.a[e * k_len..(e + 1) * k_len];
            for m in (j..m_len).step_by(cols) {
                let mut d = 0i64;
                for (k, &av) in a.iter().enumerate() {
                    let wv = ops.w[k * m_len + m];
                    let p = ap(masks.mult, ap(masks.first, av).wrapping_mul(ap(masks.second, wv)));
                    d += p as i64 - (av * wv) as i64;
                }
                if d != 0 {
                    out.push((e * m_len + m, d));
                }
            }
        }
    }
    out
}

/// WS/IS: output `(t, sc)` summed down PE column `sc % cols`; position
/// `fr*rows + r` is the product formed in PE `(r, c)` of row fold `fr`
/// (padding rows past `K` carry zero operands, which stuck bits may turn
/// into values; their product is added, with no multiplier fault).
fn stationary_changes<R: StationaryRoles>(
    ops: &Operands,
    mapping: &Mapping,
    pes: &[PeMasks],
) -> Vec<(usize, i64)> {
    let (rows, cols, t_len) = (mapping.rows, mapping.cols, mapping.t);
    let mut change = vec![0i64; ops.e * ops.m];
    let mut col_delta = vec![0i64; t_len];
    for c in 0..cols {
        let column: Vec<(usize, PeMasks)> = (0..rows)
            .map(|r| (r, pes[r * cols + c]))
            .filter(|(_, m)| m.any())
            .collect();
        if column.is_empty() {
            continue;
        }
        for sc in (c..mapping.sc).step_by(cols) {
            col_delta.fill(0);
            for &(r, masks) in &column {
                for fr in 0..mapping.row_folds {
                    let kr = fr * rows + r;
                    let live = kr < ops.k;
                    let y = if live { R::stationary(ops, kr, sc) } else { 0 };
                    let ys = ap(masks.second, y);
                    for (t, d) in col_delta.iter_mut().enumerate() {
                        let x = if live { R::streamed(ops, t, kr) } else { 0 };
                        let mut p = ap(masks.first, x).wrapping_mul(ys);
                        if live {
                            p = ap(masks.mult, p);
                        }
                        *d += p as i64 - (x * y) as i64;
                    }
                }
            }
            for (t, &d) in col_delta.iter().enumerate() {
                change[R::out_index(ops, t, sc)] += d;
            }
        }
    }
    change
        .into_iter()
        .enumerate()
        .filter(|&(_, d)| d != 0)
        .collect()
}
