//! Weight- and input-stationary fault effects: which outputs each fault
//! reaches, and the exact accumulation of one output under the faults that
//! reach it.
//!
//! Output `(t, sc)` (stream index `t`, stationary column `sc`) is summed by
//! PE column `c = sc % cols` of the folds `(fr, sc / cols)`, row fold after
//! row fold; its partial sum passes PE `(r, c)` in stream cycle
//! `s = t + r + c`, where the PE adds the product of streamed value
//! `(r, t)` and its stationary register (positions are `fr*rows + r`, the
//! reduction index; rows past `K` are padding with zero operands).
//!
//! - The streamed value `(r, t)` passed PE `(r, c')` in stream cycle
//!   `t + r + c'`: a flip there (same fold) or a stuck bit corrupts it for
//!   every PE `c >= c'`. Preload cycles carry no streamed value.
//! - The stationary register of PE `(r, c)` is latched in preload cycle `r`
//!   (a stuck bit shows from the latch on), a flip in a later preload cycle
//!   or in a stream cycle `<= s` persists until the next fold's preload; a
//!   flip in preload cycles `<= r` is overwritten.
//! - `psum_reg` faults of PE `(r, c)` act on the partial sum before the PE
//!   adds to it (stream cycles only); `mult_out` faults on live products.

use super::super::is::InputStationary;
use super::super::stationary::StationaryRoles;
use super::super::ws::WeightStationary;
use super::super::Operands;
use super::{settle, Arith, Event, OutputTrace, Special, Touched};
use crate::fixed::Datapath;
use crate::hwsim::{Dataflow, FaultSite, Gemm, Mapping};

/// Where an output of the `E x M` result sits in the stream/column view.
trait OutputCoords: StationaryRoles {
    /// `(t, sc)` of output index `o`.
    fn coords(ops: &Operands, o: usize) -> (usize, usize);
}

impl OutputCoords for WeightStationary {
    #[inline]
    fn coords(ops: &Operands, o: usize) -> (usize, usize) {
        (o / ops.m, o % ops.m)
    }
}

impl OutputCoords for InputStationary {
    #[inline]
    fn coords(ops: &Operands, o: usize) -> (usize, usize) {
        (o % ops.m, o / ops.m)
    }
}

/// Faults bucketed by the PE columns they reach.
struct Index {
    /// Streamed-register faults sorted by (column, cycle order): the prefix
    /// with `col <= c` reaches column `c`.
    streaming: Vec<Event>,
    /// Stationary, `psum_reg` and `mult_out` faults per PE column.
    by_col: Vec<Vec<Event>>,
}

/// The faults acting on one output.
#[derive(Default)]
pub(super) struct Scratch {
    streaming: Vec<Event>,
    /// Transients first, by (fold, cycle), then stuck bits in list order.
    stationary: Vec<Event>,
    psum: Vec<Event>,
    mult: Vec<Event>,
    sparse: Vec<usize>,
}

/// One WS/IS output under its faults.
struct Trace<'a, R> {
    ops: Operands<'a>,
    rows: usize,
    row_folds: usize,
    t: usize,
    sc: usize,
    c: usize,
    s: &'a Scratch,
    roles: std::marker::PhantomData<R>,
}

impl<R: StationaryRoles> Trace<'_, R> {
    /// Row fold of a transient fault (the column fold already matches).
    #[inline]
    fn row_fold(&self, ev: &Event) -> Option<usize> {
        ev.at.map(|(f, _)| f % self.row_folds)
    }

    #[inline]
    fn acts_in(&self, ev: &Event, fr: usize, r: usize) -> bool {
        ev.row == r && self.row_fold(ev).is_none_or(|f| f == fr)
    }

    fn stationary_value(&self, fr: usize, r: usize, base: i32) -> i32 {
        let stuck = |mut v: i32| {
            for ev in self.s.stationary.iter().filter(|ev| ev.permanent()) {
                if ev.row == r {
                    v = ev.apply(v);
                }
            }
            v
        };
        let mut v = stuck(base);
        let s = (self.t + r + self.c) as i64;
        let rows = self.rows as i64;
        for ev in &self.s.stationary {
            let Some((f, local)) = ev.at else { break };
            if ev.row != r || f % self.row_folds != fr {
                continue;
            }
            let applies = if local < rows {
                (r as i64) < local
            } else {
                local - rows <= s
            };
            if applies {
                v = stuck(ev.apply(v));
            }
        }
        v
    }
}

impl<R: StationaryRoles> OutputTrace for Trace<'_, R> {
    fn positions(&self) -> usize {
        self.row_folds * self.rows
    }

    #[inline]
    fn clean_product(&self, kr: usize) -> i32 {
        if kr < self.ops.k {
            R::streamed(&self.ops, self.t, kr) * R::stationary(&self.ops, kr, self.sc)
        } else {
            0
        }
    }

    fn exact_product(&self, pos: usize) -> i32 {
        let (fr, r) = (pos / self.rows, pos % self.rows);
        let live = pos < self.ops.k;
        let mut x = if live {
            R::streamed(&self.ops, self.t, pos)
        } else {
            0
        };
        for ev in &self.s.streaming {
            if self.acts_in(ev, fr, r) {
                x = ev.apply(x);
            }
        }
        let base = if live {
            R::stationary(&self.ops, pos, self.sc)
        } else {
            0
        };
        let mut p = x.wrapping_mul(self.stationary_value(fr, r, base));
        if live {
            for ev in &self.s.mult {
                if self.acts_in(ev, fr, r) {
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
        let (fr, r) = (pos / self.rows, pos % self.rows);
        for ev in &self.s.psum {
            if self.acts_in(ev, fr, r) {
                acc = ev.apply(acc);
            }
        }
        acc
    }

    fn psum_at_end(&self, acc: i32) -> i32 {
        acc
    }
}

/// Mark every output a fault's register values pass through.
fn mark_reach<R: StationaryRoles>(
    mapping: &Mapping,
    ops: &Operands,
    ev: &Event,
    touched: &mut Touched,
) {
    let (rows, cols, t_len) = (mapping.rows, mapping.cols, mapping.t);
    let col_folds = match ev.at {
        Some((f, _)) => f / mapping.row_folds..f / mapping.row_folds + 1,
        None => 0..mapping.col_folds,
    };
    // Stream index whose value / partial sum is at this PE in a stream cycle.
    let in_flight = |local: i64| {
        let t = local - (rows + ev.row + ev.col) as i64;
        (local >= rows as i64 && t >= 0 && (t as usize) < t_len).then_some(t as usize)
    };
    for fc in col_folds {
        let live_cols = (mapping.sc - fc * cols).min(cols);
        let (ts, cs) = if ev.site == R::STREAMING_SITE {
            let ts = match ev.at {
                Some((_, local)) => match in_flight(local) {
                    Some(t) => t..t + 1,
                    None => continue,
                },
                None => 0..t_len,
            };
            (ts, ev.col..live_cols)
        } else {
            let ts = match (ev.at, ev.site == R::STATIONARY_SITE) {
                (None, _) => 0..t_len,
                (Some((_, local)), true) if local < rows as i64 => {
                    if (ev.row as i64) < local {
                        0..t_len
                    } else {
                        continue;
                    }
                }
                (Some((_, local)), true) => {
                    let first = local - (rows + ev.row + ev.col) as i64;
                    (first.max(0) as usize).min(t_len)..t_len
                }
                (Some((_, local)), false) => match in_flight(local) {
                    Some(t) => t..t + 1,
                    None => continue,
                },
            };
            (ts, ev.col..(ev.col + 1).min(live_cols))
        };
        for c in cs {
            for t in ts.clone() {
                touched.mark(R::out_index(ops, t, fc * cols + c));
            }
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
    match mapping.dataflow {
        Dataflow::Ws => faulty::<WeightStationary>(gemm, dp, mapping, events, mark, extra, clean),
        Dataflow::Is => faulty::<InputStationary>(gemm, dp, mapping, events, mark, extra, clean),
        Dataflow::Os => unreachable!("output stationary has its own analysis"),
    }
}

fn faulty<R: OutputCoords + Sync>(
    gemm: &Gemm,
    dp: &Datapath,
    mapping: &Mapping,
    events: &[Event],
    mark: &[Event],
    extra: &[usize],
    clean: &[i64],
) -> Vec<(usize, i64)> {
    let ops = Operands::from(gemm);
    let (rows, cols, row_folds) = (mapping.rows, mapping.cols, mapping.row_folds);
    let mut ix = Index {
        streaming: Vec::new(),
        by_col: vec![Vec::new(); cols],
    };
    for ev in events {
        if ev.site == R::STREAMING_SITE {
            ix.streaming.push(*ev);
        } else {
            ix.by_col[ev.col].push(*ev);
        }
    }
    ix.streaming.sort_by_key(|e| (e.col, e.cycle_order()));
    for v in &mut ix.by_col {
        v.sort_by_key(|e| (e.permanent(), e.at, e.index));
    }
    let arith = Arith::new(dp, row_folds * rows);
    let mut touched = Touched::new(gemm.e * gemm.m);
    for ev in mark {
        mark_reach::<R>(mapping, &ops, ev, &mut touched);
    }
    for &o in extra {
        touched.mark(o);
    }
    touched.evaluate(|s: &mut Scratch, o: usize| {
        let (t, sc) = R::coords(&ops, o);
        let (fc, c) = (sc / cols, sc % cols);
        let in_col_fold = |ev: &Event| ev.at.is_none_or(|(f, _)| f / row_folds == fc);
        // A streamed value or partial sum is at PE (r, c') in stream cycle t + r + c'.
        let in_flight = |ev: &Event| {
            ev.at.is_none_or(|(_, local)| {
                local == (rows + t + ev.row + ev.col) as i64 && in_col_fold(ev)
            })
        };
        s.streaming.clear();
        s.streaming.extend(
            ix.streaming
                .iter()
                .take_while(|ev| ev.col <= c)
                .filter(|ev| in_flight(ev)),
        );
        s.stationary.clear();
        s.psum.clear();
        s.mult.clear();
        for ev in &ix.by_col[c] {
            match ev.site {
                FaultSite::PsumReg if in_flight(ev) => s.psum.push(*ev),
                FaultSite::MultOut if in_flight(ev) => s.mult.push(*ev),
                site if site == R::STATIONARY_SITE && in_col_fold(ev) => s.stationary.push(*ev),
                _ => {}
            }
        }
        s.sparse.clear();
        for ev in s.streaming.iter().chain(&s.stationary).chain(&s.mult) {
            match ev.at {
                Some((f, _)) => s.sparse.push((f % row_folds) * rows + ev.row),
                None => s.sparse.extend((0..row_folds).map(|fr| fr * rows + ev.row)),
            }
        }
        s.sparse.sort_unstable();
        s.sparse.dedup();
        let trace = Trace::<R> {
            ops,
            rows,
            row_folds,
            t,
            sc,
            c,
            s: &*s,
            roles: std::marker::PhantomData,
        };
        settle(&trace, &Special::Sparse(&s.sparse), clean[o], &arith)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwsim::{FaultSite, HwFault, SystolicArray};

    /// Outputs reached in WS, `E=4, K=5, M=3` on a 2x2 array: row folds 3,
    /// column folds 2, `2*2 + 2 + 4 - 2 = 8` cycles per fold.
    fn reach(f: HwFault) -> Vec<usize> {
        let (a, w) = (vec![0i32; 4 * 5], vec![0i32; 5 * 3]);
        let ops = Operands {
            a: &a,
            w: &w,
            e: 4,
            k: 5,
            m: 3,
        };
        let mapping = SystolicArray::new(2, 2, Dataflow::Ws)
            .unwrap()
            .mapping(4, 5, 3);
        let mut touched = Touched::new(4 * 3);
        let ev = Event::new(0, &f, &Datapath::INT8, &mapping);
        mark_reach::<WeightStationary>(&mapping, &ops, &ev, &mut touched);
        let mut list = touched.list;
        list.sort_unstable();
        list
    }

    #[test]
    fn stationary_flips_persist_after_the_latch_only() {
        // Preload cycle 1: row 0 has latched (kept), row 1 not yet (masked).
        let kept = HwFault::flip(FaultSite::WeightReg, 0, 1, 0, 1);
        assert_eq!(reach(kept), vec![1, 4, 7, 10]);
        let masked = HwFault::flip(FaultSite::WeightReg, 1, 1, 0, 1);
        assert!(reach(masked).is_empty());
        // Stream cycle 3 (local 5) in PE (1, 0): outputs t >= 3 - 1 - 0 = 2.
        let late = HwFault::flip(FaultSite::WeightReg, 1, 0, 0, 5);
        assert_eq!(reach(late), vec![6, 9]);
    }

    #[test]
    fn streamed_values_and_psums_reach_one_stream_index() {
        // Stream cycle 2 in PE (0, 0) of fold 0: t = 2, columns 0 and 1.
        let act = HwFault::flip(FaultSite::ActReg, 0, 0, 0, 4);
        assert_eq!(reach(act), vec![6, 7]);
        // The same cycle in column fold 1 (fold 3): column 2 only (1 is padding).
        let act = HwFault::flip(FaultSite::ActReg, 0, 0, 0, 3 * 8 + 4);
        assert_eq!(reach(act), vec![8]);
        // Local cycle rows + t + r + c: t = 1, output (1, 1).
        let psum = HwFault::flip(FaultSite::PsumReg, 1, 1, 0, 2 + 1 + 1 + 1);
        assert_eq!(reach(psum), vec![3 + 1]);
        // Preload cycles carry no partial sum.
        assert!(reach(HwFault::flip(FaultSite::PsumReg, 1, 1, 0, 1)).is_empty());
    }
}
