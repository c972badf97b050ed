//! Stuck-at bits (every PE site), applied PE by PE instead of output by
//! output.
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
//! [`StuckMask`]); stuck `psum_reg` bits of a PE act on the running sum
//! before each of its adds (OS: every cycle of the fold and the read-out;
//! WS/IS: the partial sum passing the PE, in every row fold). With a
//! wrapping accumulator, or one that provably never saturates, and no stuck
//! psum bit, an output is `clean + sum of product changes`; otherwise its
//! accumulation is replayed in hardware order with the accumulator rule.
//! Both are tight loops over the outputs of each affected PE (WS/IS: over
//! the whole stream of a PE column at once).
//!
//! Not handled here (returned as `excluded`, the caller evaluates those
//! outputs one by one): in OS a PE whose outputs see corrupted activations
//! *and* corrupted weights (corrupted skew bubbles then meet, and when they
//! do depends on the cycle).

use super::super::is::InputStationary;
use super::super::kernel::PsumRule;
use super::super::stationary::StationaryRoles;
use super::super::ws::WeightStationary;
use super::super::Operands;
use super::{Arith, Event, StuckMask};
use crate::fixed::{Datapath, Overflow};
use crate::hwsim::{Dataflow, FaultSite, Gemm, Mapping};

/// Masks of one PE: on the activation/streamed operand, the weight /
/// stationary operand, the product (`None` = untouched).
#[derive(Clone, Copy, Default)]
pub(super) struct PeMasks {
    pub first: Option<StuckMask>,
    pub second: Option<StuckMask>,
    pub mult: Option<StuckMask>,
    pub psum: Option<StuckMask>,
}

impl PeMasks {
    pub(super) fn any(&self) -> bool {
        self.first.is_some() || self.second.is_some() || self.mult.is_some() || self.psum.is_some()
    }
}

/// The new value of an output.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fix {
    /// `acc_limit(clean + d)`.
    Delta(i64),
    /// This value.
    Value(i64),
}

/// What the stuck bits do: fixed outputs, and the outputs left to the
/// per-output evaluation.
pub(super) struct Stuck {
    pub fixes: Vec<(usize, Fix)>,
    pub excluded: Vec<usize>,
}

fn mask_of(events: &[Event], width: u32) -> Option<StuckMask> {
    if events.is_empty() {
        return None;
    }
    StuckMask::of(events, width)
}

#[inline(always)]
pub(super) fn ap(m: Option<StuckMask>, v: i32) -> i32 {
    m.map_or(v, |m| m.apply(v))
}

/// What the permanent faults `events` do to every output they reach.
pub(super) fn changes(gemm: &Gemm, dp: &Datapath, mapping: &Mapping, events: &[Event]) -> Stuck {
    let positions = match mapping.dataflow {
        Dataflow::Os => mapping.cycles_per_fold as usize,
        Dataflow::Ws | Dataflow::Is => mapping.row_folds * mapping.rows,
    };
    let linear = dp.overflow == Overflow::Wrap || Arith::new(dp, positions).never_saturates;
    let pes = pe_masks(dp, mapping, events);
    let ops = Operands::from(gemm);
    let rule = PsumRule::new(dp);
    match mapping.dataflow {
        Dataflow::Os => os_changes(&ops, mapping, &pes, linear, rule),
        Dataflow::Ws => stationary_changes::<WeightStationary>(&ops, mapping, &pes, linear, rule),
        Dataflow::Is => stationary_changes::<InputStationary>(&ops, mapping, &pes, linear, rule),
    }
}

/// The composed masks of every PE (`rows * cols`, row-major) under the
/// permanent faults `events`.
pub(super) fn pe_masks(dp: &Datapath, mapping: &Mapping, events: &[Event]) -> Vec<PeMasks> {
    let (act_w, weight_w) = (u32::from(dp.act_bits), u32::from(dp.weight_bits));
    let mult_w = act_w + weight_w;
    let psum_w = u32::from(dp.psum_bits);
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (first_site, second_site, first_w, second_w) = match mapping.dataflow {
        Dataflow::Os | Dataflow::Ws => (FaultSite::ActReg, FaultSite::WeightReg, act_w, weight_w),
        Dataflow::Is => (FaultSite::WeightReg, FaultSite::ActReg, weight_w, act_w),
    };
    // Faults bucketed where they act: moving operands by PE row (first) or
    // column (OS weights), PE registers by PE; each bucket in list order.
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.index);
    let mut first_by_row: Vec<Vec<Event>> = vec![Vec::new(); rows];
    let mut second_by_col: Vec<Vec<Event>> = vec![Vec::new(); cols];
    let mut by_pe: std::collections::BTreeMap<(usize, usize, u8), Vec<Event>> =
        std::collections::BTreeMap::new();
    for ev in sorted {
        if ev.site == first_site {
            first_by_row[ev.row].push(ev);
        } else if ev.site == second_site && mapping.dataflow == Dataflow::Os {
            second_by_col[ev.col].push(ev);
        } else {
            let slot = match ev.site {
                FaultSite::MultOut => 2,
                FaultSite::PsumReg => 3,
                _ => 1,
            };
            by_pe.entry((ev.row, ev.col, slot)).or_default().push(ev);
        }
    }
    let mut pes = vec![PeMasks::default(); rows * cols];
    // A moving value passed PEs 0..=j of its row (0..=i of its column):
    // the prefix of the bucket sorted along the path (stable: list order
    // within a PE).
    for (i, list) in first_by_row.iter_mut().enumerate() {
        list.sort_by_key(|e| e.col);
        for j in 0..cols {
            let n = list.partition_point(|e| e.col <= j);
            pes[i * cols + j].first = mask_of(&list[..n], first_w);
        }
    }
    for (j, list) in second_by_col.iter_mut().enumerate() {
        list.sort_by_key(|e| e.row);
        for i in 0..rows {
            let n = list.partition_point(|e| e.row <= i);
            pes[i * cols + j].second = mask_of(&list[..n], second_w);
        }
    }
    for ((r, c, slot), list) in &by_pe {
        let pe = &mut pes[r * cols + c];
        match slot {
            1 => pe.second = mask_of(list, second_w),
            2 => pe.mult = mask_of(list, mult_w),
            _ => pe.psum = mask_of(list, psum_w),
        }
    }
    pes
}

/// OS: output `(e, m)` in PE `(e % rows, m % cols)`; one operand side is
/// untouched (else the PE is excluded), so skew bubbles add zero.
fn os_changes(
    ops: &Operands,
    mapping: &Mapping,
    pes: &[PeMasks],
    linear: bool,
    rule: PsumRule,
) -> Stuck {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (k_len, m_len) = (ops.k, ops.m);
    let cycles = mapping.cycles_per_fold as usize;
    let mut st = Stuck {
        fixes: Vec::new(),
        excluded: Vec::new(),
    };
    for (pe, masks) in pes.iter().enumerate() {
        if !masks.any() {
            continue;
        }
        let (i, j) = (pe / cols, pe % cols);
        let outputs = (i..ops.e)
            .step_by(rows)
            .flat_map(|e| (j..m_len).step_by(cols).map(move |m| (e, m)));
        if masks.first.is_some() && masks.second.is_some() {
            st.excluded.extend(outputs.map(|(e, m)| e * m_len + m));
            continue;
        }
        let product = |av: i32, wv: i32| {
            ap(
                masks.mult,
                ap(masks.first, av).wrapping_mul(ap(masks.second, wv)),
            )
        };
        for (e, m) in outputs {
            let a = &ops.a[e * k_len..(e + 1) * k_len];
            if linear && masks.psum.is_none() {
                let mut d = 0i64;
                for (k, &av) in a.iter().enumerate() {
                    let wv = ops.w[k * m_len + m];
                    d += product(av, wv) as i64 - (av * wv) as i64;
                }
                if d != 0 {
                    st.fixes.push((e * m_len + m, Fix::Delta(d)));
                }
                continue;
            }
            // Replay: the accumulator of cycle c adds term k = c - i - j.
            let skew = i + j;
            let mut acc = 0i32;
            for c in 0..cycles {
                acc = ap(masks.psum, acc);
                let p = match c.checked_sub(skew) {
                    Some(k) if k < k_len => product(a[k], ops.w[k * m_len + m]),
                    _ => 0,
                };
                acc = rule.add(acc, p);
            }
            acc = ap(masks.psum, acc);
            st.fixes.push((e * m_len + m, Fix::Value(acc as i64)));
        }
    }
    st
}

/// WS/IS: output `(t, sc)` summed down PE column `sc % cols`; position
/// `fr*rows + r` is the product formed in PE `(r, c)` of row fold `fr`
/// (padding rows past `K` carry zero operands, which stuck bits may turn
/// into values; their product is added, with no multiplier fault).
fn stationary_changes<R: StationaryRoles>(
    ops: &Operands,
    mapping: &Mapping,
    pes: &[PeMasks],
    linear: bool,
    rule: PsumRule,
) -> Stuck {
    let (rows, cols, t_len) = (mapping.rows, mapping.cols, mapping.t);
    let mut change = vec![0i64; ops.e * ops.m];
    let mut fixes = Vec::new();
    let mut lane = vec![0i64; t_len];
    let mut acc = vec![0i32; t_len];
    for c in 0..cols {
        let column: Vec<PeMasks> = (0..rows).map(|r| pes[r * cols + c]).collect();
        if !column.iter().any(PeMasks::any) {
            continue;
        }
        let replay = !linear || column.iter().any(|m| m.psum.is_some());
        for sc in (c..mapping.sc).step_by(cols) {
            if replay {
                // every position in order, the rule after every add
                acc.fill(0);
                for fr in 0..mapping.row_folds {
                    for (r, masks) in column.iter().enumerate() {
                        let kr = fr * rows + r;
                        let live = kr < ops.k;
                        let y = if live { R::stationary(ops, kr, sc) } else { 0 };
                        let ys = ap(masks.second, y);
                        for (t, a) in acc.iter_mut().enumerate() {
                            let x = if live { R::streamed(ops, t, kr) } else { 0 };
                            let mut p = ap(masks.first, x).wrapping_mul(ys);
                            if live {
                                p = ap(masks.mult, p);
                            }
                            *a = rule.add(ap(masks.psum, *a), p);
                        }
                    }
                }
                for (t, &a) in acc.iter().enumerate() {
                    fixes.push((R::out_index(ops, t, sc), Fix::Value(a as i64)));
                }
                continue;
            }
            lane.fill(0);
            for (r, masks) in column.iter().enumerate().filter(|(_, m)| m.any()) {
                for fr in 0..mapping.row_folds {
                    let kr = fr * rows + r;
                    let live = kr < ops.k;
                    let y = if live { R::stationary(ops, kr, sc) } else { 0 };
                    let ys = ap(masks.second, y);
                    for (t, d) in lane.iter_mut().enumerate() {
                        let x = if live { R::streamed(ops, t, kr) } else { 0 };
                        let mut p = ap(masks.first, x).wrapping_mul(ys);
                        if live {
                            p = ap(masks.mult, p);
                        }
                        *d += p as i64 - (x * y) as i64;
                    }
                }
            }
            for (t, &d) in lane.iter().enumerate() {
                change[R::out_index(ops, t, sc)] += d;
            }
        }
    }
    fixes.extend(
        change
            .into_iter()
            .enumerate()
            .filter(|&(_, d)| d != 0)
            .map(|(o, d)| (o, Fix::Delta(d))),
    );
    Stuck {
        fixes,
        excluded: Vec::new(),
    }
}
