//! Output-stationary fault effects: which outputs each fault reaches, and
//! the exact accumulation of one output under the faults that reach it.
//!
//! Output `(e, m)` lives in PE `(i, j) = (e % rows, m % cols)` of fold
//! `(e / rows, m / cols)`; its adder runs in every local cycle `c` of that
//! fold and adds the product of activation value `(i, k)` and weight value
//! `(j, k)` with `k = c - i - j` (positions are the cycles). Activation value
//! `(i, k)` passed PE `(i, j')` in cycle `k + i + j'`, weight value `(j, k)`
//! passed PE `(i', j)` in cycle `k + i' + j`; each fault of those PEs acting
//! in that cycle corrupted it on the way (a stuck bit in every cycle of the
//! fold, a flip in its one cycle). Values with `k` outside `0..K` are zero
//! bubbles: corrupting one matters only if the other operand of the same
//! cycle is corrupted too, so when an output has faults on both operands
//! every cycle is examined. `psum_reg` faults act on the accumulator before
//! the add of their cycle, a stuck bit also on the read-out; `mult_out`
//! faults on live products only.

use super::{settle, Arith, Event, OutputTrace, Special, StuckMask, Touched};
use crate::fixed::Datapath;
use crate::fixed::Overflow;
use crate::hwsim::{FaultSite, Gemm, Mapping};

/// Faults bucketed by the outputs they can reach.
struct Index {
    /// Activation faults per PE row, sorted by (column, cycle order).
    act_by_row: Vec<Vec<Event>>,
    /// Weight faults per PE column, sorted by (row, cycle order).
    weight_by_col: Vec<Vec<Event>>,
    /// `psum_reg` and `mult_out` faults per PE, in cycle order.
    by_pe: Vec<Vec<Event>>,
}

impl Index {
    fn new(mapping: &Mapping, events: &[Event]) -> Index {
        let (rows, cols) = (mapping.rows, mapping.cols);
        let mut ix = Index {
            act_by_row: vec![Vec::new(); rows],
            weight_by_col: vec![Vec::new(); cols],
            by_pe: vec![Vec::new(); rows * cols],
        };
        for ev in events {
            match ev.site {
                FaultSite::ActReg => ix.act_by_row[ev.row].push(*ev),
                FaultSite::WeightReg => ix.weight_by_col[ev.col].push(*ev),
                FaultSite::PsumReg | FaultSite::MultOut => {
                    ix.by_pe[ev.row * cols + ev.col].push(*ev)
                }
            }
        }
        for v in &mut ix.act_by_row {
            v.sort_by_key(|e| (e.col, e.cycle_order()));
        }
        for v in &mut ix.weight_by_col {
            v.sort_by_key(|e| (e.row, e.cycle_order()));
        }
        for v in &mut ix.by_pe {
            v.sort_by_key(|e| e.cycle_order());
        }
        ix
    }
}

/// The faults acting on one output, filtered to its fold.
#[derive(Default)]
pub(super) struct Scratch {
    act: Vec<Event>,
    weight: Vec<Event>,
    psum: Vec<Event>,
    mult: Vec<Event>,
    sparse: Vec<usize>,
}

/// One OS output under its faults.
struct Trace<'a> {
    a: &'a [i32],
    w: &'a [i32],
    k_len: i64,
    m_len: usize,
    e: usize,
    m: usize,
    /// `i + j`: the cycle of term `k` is `k + i + j`.
    skew: i64,
    i: i64,
    j: i64,
    cycles: usize,
    s: &'a Scratch,
}

impl Trace<'_> {
    /// With only stuck-at operand and multiplier bits: the change of the
    /// live terms' sum, each corrupted operand being a mask of the clean one
    /// (every live value passes the faulty PEs inside the fold).
    fn stuck_live_change(&self, dp: &Datapath) -> Option<i64> {
        let act = StuckMask::of(&self.s.act, u32::from(dp.act_bits))?;
        let weight = StuckMask::of(&self.s.weight, u32::from(dp.weight_bits))?;
        let mult = StuckMask::of(
            &self.s.mult,
            u32::from(dp.act_bits) + u32::from(dp.weight_bits),
        )?;
        let k_len = self.k_len as usize;
        let a = &self.a[self.e * k_len..(self.e + 1) * k_len];
        let mut change = 0i64;
        for (k, &av) in a.iter().enumerate() {
            let wv = self.w[k * self.m_len + self.m];
            let p = mult.apply(act.apply(av) * weight.apply(wv));
            change += p as i64 - (av * wv) as i64;
        }
        Some(change)
    }

    #[inline]
    fn live(&self, k: i64) -> bool {
        (0..self.k_len).contains(&k)
    }

    fn act_value(&self, k: i64) -> i32 {
        let mut v = if self.live(k) {
            self.a[self.e * self.k_len as usize + k as usize]
        } else {
            0
        };
        for ev in &self.s.act {
            let cycle = k + self.i + ev.col as i64;
            if cycle < 0 {
                continue; // the value had not entered the array yet
            }
            if ev.at.is_none_or(|(_, c)| c == cycle) {
                v = ev.apply(v);
            }
        }
        v
    }

    fn weight_value(&self, k: i64) -> i32 {
        let mut v = if self.live(k) {
            self.w[k as usize * self.m_len + self.m]
        } else {
            0
        };
        for ev in &self.s.weight {
            let cycle = k + ev.row as i64 + self.j;
            if cycle < 0 {
                continue;
            }
            if ev.at.is_none_or(|(_, c)| c == cycle) {
                v = ev.apply(v);
            }
        }
        v
    }
}

impl OutputTrace for Trace<'_> {
    fn positions(&self) -> usize {
        self.cycles
    }

    #[inline]
    fn clean_product(&self, pos: usize) -> i32 {
        let k = pos as i64 - self.skew;
        if self.live(k) {
            let k = k as usize;
            self.a[self.e * self.k_len as usize + k] * self.w[k * self.m_len + self.m]
        } else {
            0
        }
    }

    fn exact_product(&self, pos: usize) -> i32 {
        let k = pos as i64 - self.skew;
        let mut p = self.act_value(k).wrapping_mul(self.weight_value(k));
        if self.live(k) {
            for ev in &self.s.mult {
                if ev.at.is_none_or(|(_, c)| c == pos as i64) {
                    p = ev.apply(p);
                }
            }
        }
        p
    }

    fn has_psum_faults(&self) -> bool {
        !self.s.psum.is_empty()
    }

    fn psum_before(&self, pos: usize, mut acc: i32) -> i32 {
        for ev in &self.s.psum {
            if ev.at.is_none_or(|(_, c)| c == pos as i64) {
                acc = ev.apply(acc);
            }
        }
        acc
    }

    fn psum_at_end(&self, mut acc: i32) -> i32 {
        // The read-out sees a stuck bit of the register's output.
        for ev in self.s.psum.iter().filter(|ev| ev.permanent()) {
            acc = ev.apply(acc);
        }
        acc
    }
}

/// Mark every output a fault's register values pass through.
fn mark_reach(mapping: &Mapping, e_len: usize, m_len: usize, ev: &Event, touched: &mut Touched) {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let folds = match ev.at {
        Some((f, _)) => f..f + 1,
        None => 0..mapping.folds,
    };
    for f in folds {
        let (fr, fc) = (f % mapping.row_folds, f / mapping.row_folds);
        let live_rows = (e_len - fr * rows).min(rows);
        let live_cols = (m_len - fc * cols).min(cols);
        let mut mark = |i: usize, j: usize| touched.mark((fr * rows + i) * m_len + fc * cols + j);
        match ev.site {
            FaultSite::ActReg if ev.row < live_rows => {
                (ev.col..live_cols).for_each(|j| mark(ev.row, j))
            }
            FaultSite::WeightReg if ev.col < live_cols => {
                (ev.row..live_rows).for_each(|i| mark(i, ev.col))
            }
            FaultSite::PsumReg | FaultSite::MultOut if ev.row < live_rows && ev.col < live_cols => {
                mark(ev.row, ev.col)
            }
            _ => {}
        }
    }
}

/// The outputs the faults change, with their exact values (`clean` is the
/// fault-free result).
pub(super) fn faulty_outputs(
    gemm: &Gemm,
    dp: &Datapath,
    mapping: &Mapping,
    events: &[Event],
    mark: &[Event],
    extra: &[usize],
    clean: &[i64],
) -> Vec<(usize, i64)> {
    let (rows, cols) = (mapping.rows, mapping.cols);
    let (e_len, k_len, m_len) = (gemm.e, gemm.k, gemm.m);
    let cycles = mapping.cycles_per_fold as usize;
    let ix = Index::new(mapping, events);
    let arith = Arith::new(dp, cycles);
    let mut touched = Touched::new(e_len * m_len);
    for ev in mark {
        mark_reach(mapping, e_len, m_len, ev, &mut touched);
    }
    for &o in extra {
        touched.mark(o);
    }
    touched.evaluate(|s: &mut Scratch, o: usize| {
        let (e, m) = (o / m_len, o % m_len);
        let (i, j) = (e % rows, m % cols);
        let fold = mapping.fold_index(e / rows, m / cols);
        let in_fold = |ev: &&Event| ev.at.is_none_or(|(f, _)| f == fold);
        s.act.clear();
        s.act.extend(
            ix.act_by_row[i]
                .iter()
                .take_while(|ev| ev.col <= j)
                .filter(in_fold),
        );
        s.weight.clear();
        s.weight.extend(
            ix.weight_by_col[j]
                .iter()
                .take_while(|ev| ev.row <= i)
                .filter(in_fold),
        );
        s.psum.clear();
        s.mult.clear();
        for ev in ix.by_pe[i * cols + j].iter().filter(in_fold) {
            match ev.site {
                FaultSite::PsumReg => s.psum.push(*ev),
                _ => s.mult.push(*ev),
            }
        }
        let skew = i + j;
        let live = skew..skew + k_len;
        let special_range = if !s.act.is_empty() && !s.weight.is_empty() {
            Some(0..cycles)
        } else if s
            .act
            .iter()
            .chain(&s.weight)
            .chain(&s.mult)
            .any(|ev| ev.permanent())
        {
            Some(live.clone())
        } else {
            // Only flips: each corrupts the one term whose value it hit.
            s.sparse.clear();
            let hit = |ev: &Event, pe_skew: usize| {
                let (_, c) = ev.at.expect("only transient faults here");
                c - pe_skew as i64 + skew as i64
            };
            let positions = s
                .act
                .iter()
                .map(|ev| hit(ev, i + ev.col))
                .chain(s.weight.iter().map(|ev| hit(ev, ev.row + j)))
                .chain(s.mult.iter().map(|ev| hit(ev, skew)));
            for pos in positions {
                if pos >= live.start as i64 && pos < live.end as i64 {
                    s.sparse.push(pos as usize);
                }
            }
            s.sparse.sort_unstable();
            s.sparse.dedup();
            None
        };
        let trace = Trace {
            a: gemm.a,
            w: gemm.w,
            k_len: k_len as i64,
            m_len,
            e,
            m,
            skew: skew as i64,
            i: i as i64,
            j: j as i64,
            cycles,
            s: &*s,
        };
        let linear = dp.overflow == Overflow::Wrap || arith.never_saturates;
        if linear && s.psum.is_empty() && special_range.is_some() {
            if let Some(mut change) = trace.stuck_live_change(dp) {
                // Bubbles matter only where both operands are corrupted.
                if !s.act.is_empty() && !s.weight.is_empty() {
                    let bubbles = (0..skew).chain(skew + k_len..cycles);
                    change += bubbles.map(|p| trace.exact_product(p) as i64).sum::<i64>();
                }
                return dp.acc_limit(clean[o] + change);
            }
        }
        let special = match special_range {
            Some(r) => Special::Range(r),
            None => Special::Sparse(&s.sparse),
        };
        settle(&trace, &special, clean[o], &arith)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwsim::{Dataflow, FaultSite, HwFault, SystolicArray};

    fn reach(faults: &[HwFault], (e, k, m): (usize, usize, usize)) -> Vec<usize> {
        let array = SystolicArray::new(3, 4, Dataflow::Os).unwrap();
        let mapping = array.mapping(e, k, m);
        let mut touched = Touched::new(e * m);
        for (i, f) in faults.iter().enumerate() {
            let ev = Event::new(i, f, &Datapath::INT8, &mapping);
            mark_reach(&mapping, e, m, &ev, &mut touched);
        }
        let mut list = touched.list;
        list.sort_unstable();
        list
    }

    #[test]
    fn moving_operands_reach_the_pes_downstream() {
        // E=5, M=6 on 3x4: folds (fr, fc) = 2 x 2, 7 + 3 + 4 - 2 = 12 cycles each.
        let shape = (5, 7, 6);
        // Activation flip in PE (1, 2) of fold 0: output row 1, columns 2..4.
        let act = HwFault::flip(FaultSite::ActReg, 1, 2, 0, 5);
        assert_eq!(reach(&[act], shape), vec![6 + 2, 6 + 3]);
        // Weight flip in PE (1, 1) of fold 3 = (fr 1, fc 1): rows 1..2 of
        // the partial row fold (output row 4 only), column 4 + 1.
        let w = HwFault::flip(FaultSite::WeightReg, 1, 1, 0, 3 * 12 + 4);
        assert_eq!(reach(&[w], shape), vec![4 * 6 + 5]);
        // A stuck psum bit in a padding PE of every fold but the first.
        let p = HwFault::stuck(FaultSite::PsumReg, 2, 3, 0, true);
        assert_eq!(reach(&[p], shape), vec![2 * 6 + 3]);
    }
}
