//! Hardware faults in the cycle-level systolic model, checked against the
//! in-order reference GEMM with the terms the fault should corrupt replaced
//! (worked out here from the mapping and the skew, independently of the
//! model's storage), for every dataflow and site.

use std::collections::HashMap;

use ftnas::fixed::{max_code, min_code, wrap, Datapath, Overflow};
use ftnas::hwsim::{
    reference_gemm, reference_gemm_with, Dataflow, FaultSite, Gemm, HwFault, HwSimError, Mapping,
    SystolicArray,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A GEMM on an array, with its operands.
#[derive(Debug)]
struct Case {
    array: SystolicArray,
    dp: Datapath,
    e: usize,
    k: usize,
    m: usize,
    a: Vec<i32>,
    w: Vec<i32>,
}

impl Case {
    fn new(
        df: Dataflow,
        (rows, cols): (usize, usize),
        (e, k, m): (usize, usize, usize),
        dp: Datapath,
        seed: u64,
    ) -> Case {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut codes = |n: usize, bits: u8| -> Vec<i32> {
            (0..n)
                .map(|_| rng.random_range(min_code(bits)..=max_code(bits)) as i32)
                .collect()
        };
        let a = codes(e * k, dp.act_bits);
        let w = codes(k * m, dp.weight_bits);
        Case {
            array: SystolicArray::new(rows, cols, df).unwrap(),
            dp,
            e,
            k,
            m,
            a,
            w,
        }
    }

    fn gemm(&self) -> Gemm<'_> {
        Gemm {
            a: &self.a,
            w: &self.w,
            e: self.e,
            k: self.k,
            m: self.m,
        }
    }

    fn mapping(&self) -> Mapping {
        self.array.mapping(self.e, self.k, self.m)
    }

    fn run(&self, faults: &[HwFault]) -> Vec<i64> {
        self.array.run(&self.gemm(), &self.dp, faults).unwrap().out
    }

    fn reference(&self) -> Vec<i64> {
        reference_gemm(&self.gemm(), &self.dp)
    }

    fn act(&self, e: usize, k: usize) -> i64 {
        self.a[e * self.k + k] as i64
    }

    fn weight(&self, k: usize, m: usize) -> i64 {
        self.w[k * self.m + m] as i64
    }

    /// Reference with some terms `(e, k, m)` replaced.
    fn reference_with(&self, terms: &HashMap<(usize, usize, usize), i64>) -> Vec<i64> {
        reference_gemm_with(self.e, self.k, self.m, &self.dp, |e, k, m| {
            terms
                .get(&(e, k, m))
                .copied()
                .unwrap_or(self.act(e, k) * self.weight(k, m))
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Bit {
    Flip(u8),
    Stuck(u8, bool),
}

/// The bit operation on a `width`-bit two's-complement value.
fn corrupt(v: i64, bit: Bit, width: u32) -> i64 {
    let raw = match bit {
        Bit::Flip(b) => v ^ (1 << b),
        Bit::Stuck(b, false) => v & !(1 << b),
        Bit::Stuck(b, true) => v | (1 << b),
    };
    wrap(raw, width as u8)
}

/// Fold `(fr, fc)` and local cycle of a cycle of the run.
fn locate(mp: &Mapping, cycle: u64) -> (usize, usize, i64) {
    let fold = (cycle / mp.cycles_per_fold) as usize;
    (
        fold % mp.row_folds,
        fold / mp.row_folds,
        (cycle % mp.cycles_per_fold) as i64,
    )
}

/// Expected output of a transient flip at an operand register or multiplier.
fn expected_flip(
    case: &Case,
    site: FaultSite,
    row: usize,
    col: usize,
    b: u8,
    cycle: u64,
) -> Vec<i64> {
    let mp = case.mapping();
    let (rows, cols) = (mp.rows, mp.cols);
    let (fr, fc, lc) = locate(&mp, cycle);
    let (ri, ci) = (row as i64, col as i64);
    let (ab, wb) = (u32::from(case.dp.act_bits), u32::from(case.dp.weight_bits));
    let mut terms = HashMap::new();
    let in_range = |v: i64, n: usize| v >= 0 && (v as usize) < n;
    match mp.dataflow {
        Dataflow::Os => {
            let e = fr * rows + row;
            let k = lc - ri - ci;
            if e < case.e && in_range(k, case.k) {
                let k = k as usize;
                match site {
                    FaultSite::ActReg => {
                        let a = corrupt(case.act(e, k), Bit::Flip(b), ab);
                        for j in col..cols {
                            let m = fc * cols + j;
                            if m < case.m {
                                terms.insert((e, k, m), a * case.weight(k, m));
                            }
                        }
                    }
                    FaultSite::MultOut => {
                        let m = fc * cols + col;
                        if m < case.m {
                            let p = case.act(e, k) * case.weight(k, m);
                            terms.insert((e, k, m), corrupt(p, Bit::Flip(b), ab + wb));
                        }
                    }
                    _ => {}
                }
            }
            if site == FaultSite::WeightReg {
                let m = fc * cols + col;
                if m < case.m && in_range(k, case.k) {
                    let k = k as usize;
                    let w = corrupt(case.weight(k, m), Bit::Flip(b), wb);
                    for i in row..rows {
                        let e = fr * rows + i;
                        if e < case.e {
                            terms.insert((e, k, m), case.act(e, k) * w);
                        }
                    }
                }
            }
        }
        Dataflow::Ws | Dataflow::Is => {
            let ws = mp.dataflow == Dataflow::Ws;
            // (e, m) of stream index t in column c of this fold.
            let out_of = |t: usize, c: usize| {
                if ws {
                    (t, fc * cols + c)
                } else {
                    (fc * cols + c, t)
                }
            };
            let kr = fr * rows + row;
            let stationary = if ws {
                FaultSite::WeightReg
            } else {
                FaultSite::ActReg
            };
            let r = rows as i64;
            if kr < case.k && fc * cols + col < mp.sc && site == stationary {
                {
                    // Which stream indices see the corrupted stationary value.
                    let first_t = if lc < r {
                        if ri < lc {
                            Some(0)
                        } else {
                            None
                        }
                    } else {
                        Some((lc - r - ri - ci).max(0) as usize)
                    };
                    if let Some(t0) = first_t {
                        for t in t0..mp.t {
                            let (e, m) = out_of(t, col);
                            let p = if ws {
                                case.act(e, kr) * corrupt(case.weight(kr, m), Bit::Flip(b), wb)
                            } else {
                                corrupt(case.act(e, kr), Bit::Flip(b), ab) * case.weight(kr, m)
                            };
                            terms.insert((e, kr, m), p);
                        }
                    }
                }
            }
            let t = lc - r - ri - ci;
            if lc >= r && kr < case.k && in_range(t, mp.t) {
                let t = t as usize;
                if site == FaultSite::MultOut && fc * cols + col < mp.sc {
                    let (e, m) = out_of(t, col);
                    let p = case.act(e, kr) * case.weight(kr, m);
                    terms.insert((e, kr, m), corrupt(p, Bit::Flip(b), ab + wb));
                } else if site != stationary && site != FaultSite::MultOut {
                    for c in col..cols {
                        if fc * cols + c < mp.sc {
                            let (e, m) = out_of(t, c);
                            let p = if ws {
                                corrupt(case.act(e, kr), Bit::Flip(b), ab) * case.weight(kr, m)
                            } else {
                                case.act(e, kr) * corrupt(case.weight(kr, m), Bit::Flip(b), wb)
                            };
                            terms.insert((e, kr, m), p);
                        }
                    }
                }
            }
        }
    }
    case.reference_with(&terms)
}

/// Expected output of a permanent stuck-at at an operand register or
/// multiplier: which terms pass the faulty PE follows from the mapping.
fn expected_stuck(case: &Case, site: FaultSite, row: usize, col: usize, bit: Bit) -> Vec<i64> {
    let mp = case.mapping();
    let (rows, cols) = (mp.rows, mp.cols);
    let (ab, wb) = (u32::from(case.dp.act_bits), u32::from(case.dp.weight_bits));
    reference_gemm_with(case.e, case.k, case.m, &case.dp, |e, k, m| {
        let (mut a, mut w) = (case.act(e, k), case.weight(k, m));
        // PE row/column the term is computed in, and whether the moving
        // operand passed the faulty PE before reaching it.
        let (pr, pc) = match mp.dataflow {
            Dataflow::Os => (e % rows, m % cols),
            Dataflow::Ws => (k % rows, m % cols),
            Dataflow::Is => (k % rows, e % cols),
        };
        let here = pr == row && pc == col;
        match (mp.dataflow, site) {
            (_, FaultSite::MultOut) if here => return corrupt(a * w, bit, ab + wb),
            (Dataflow::Os, FaultSite::ActReg) if pr == row && pc >= col => a = corrupt(a, bit, ab),
            (Dataflow::Os, FaultSite::WeightReg) if pc == col && pr >= row => {
                w = corrupt(w, bit, wb)
            }
            (Dataflow::Ws, FaultSite::WeightReg) if here => w = corrupt(w, bit, wb),
            (Dataflow::Ws, FaultSite::ActReg) if pr == row && pc >= col => a = corrupt(a, bit, ab),
            (Dataflow::Is, FaultSite::ActReg) if here => a = corrupt(a, bit, ab),
            (Dataflow::Is, FaultSite::WeightReg) if pr == row && pc >= col => {
                w = corrupt(w, bit, wb)
            }
            _ => {}
        }
        a * w
    })
}

/// Output `(e, m)` whose partial sum is in `psum_reg` of PE `(row, col)` at
/// `cycle`, if any.
fn psum_in_flight(case: &Case, row: usize, col: usize, cycle: u64) -> Option<(usize, usize)> {
    let mp = case.mapping();
    let (fr, fc, lc) = locate(&mp, cycle);
    let (rows, cols) = (mp.rows, mp.cols);
    let (e, m) = match mp.dataflow {
        Dataflow::Os => (fr * rows + row, fc * cols + col),
        Dataflow::Ws | Dataflow::Is => {
            let t = lc - (rows + row + col) as i64;
            if lc < rows as i64 || t < 0 || t as usize >= mp.t {
                return None;
            }
            let sc = fc * cols + col;
            if mp.dataflow == Dataflow::Ws {
                (t as usize, sc)
            } else {
                (sc, t as usize)
            }
        }
    };
    (e < case.e && m < case.m).then_some((e, m))
}

fn dataflow() -> impl Strategy<Value = Dataflow> {
    prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)]
}

fn datapath() -> impl Strategy<Value = Datapath> {
    (2u8..=16, 2u8..=16, any::<bool>(), 0u8..=32).prop_map(|(a, w, sat, p)| {
        let min = a.max(w).max(8);
        Datapath {
            act_bits: a,
            weight_bits: w,
            psum_bits: min + p % (33 - min),
            overflow: if sat {
                Overflow::Saturate
            } else {
                Overflow::Wrap
            },
        }
    })
}

/// Shapes and arrays small enough for many cases, with partial folds.
fn case() -> impl Strategy<Value = Case> {
    (
        dataflow(),
        1usize..=6,
        1usize..=6,
        1usize..=14,
        1usize..=14,
        1usize..=14,
        datapath(),
        any::<u64>(),
    )
        .prop_map(|(df, rows, cols, e, k, m, dp, seed)| {
            Case::new(df, (rows, cols), (e, k, m), dp, seed)
        })
}

/// A fault's coordinates drawn from unit fractions (scaled to the case).
fn scaled(x: f64, n: u64) -> u64 {
    ((x * n as f64) as u64).min(n - 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn operand_and_multiplier_flips_corrupt_the_terms_they_reach(
        c in case(),
        site in prop_oneof![Just(FaultSite::ActReg), Just(FaultSite::WeightReg), Just(FaultSite::MultOut)],
        fr in 0.0f64..1.0, fc in 0.0f64..1.0, fb in 0.0f64..1.0, fcyc in 0.0f64..1.0,
    ) {
        let mp = c.mapping();
        let (row, col) = (scaled(fr, mp.rows as u64) as usize, scaled(fc, mp.cols as u64) as usize);
        let bit = scaled(fb, u64::from(site.width(&c.dp))) as u8;
        let cycle = scaled(fcyc, mp.cycles);
        let got = c.run(&[HwFault::flip(site, row, col, bit, cycle)]);
        prop_assert_eq!(got, expected_flip(&c, site, row, col, bit, cycle));
    }

    #[test]
    fn stuck_operand_and_multiplier_bits_corrupt_every_term_through_the_pe(
        c in case(),
        site in prop_oneof![Just(FaultSite::ActReg), Just(FaultSite::WeightReg), Just(FaultSite::MultOut)],
        fr in 0.0f64..1.0, fc in 0.0f64..1.0, fb in 0.0f64..1.0, value in any::<bool>(),
    ) {
        let mp = c.mapping();
        let (row, col) = (scaled(fr, mp.rows as u64) as usize, scaled(fc, mp.cols as u64) as usize);
        let bit = scaled(fb, u64::from(site.width(&c.dp))) as u8;
        let got = c.run(&[HwFault::stuck(site, row, col, bit, value)]);
        prop_assert_eq!(got, expected_stuck(&c, site, row, col, Bit::Stuck(bit, value)));
    }

    #[test]
    fn psum_flip_changes_only_the_output_in_flight(
        c in case(), fr in 0.0f64..1.0, fc in 0.0f64..1.0, fb in 0.0f64..1.0, fcyc in 0.0f64..1.0,
    ) {
        let mp = c.mapping();
        let (row, col) = (scaled(fr, mp.rows as u64) as usize, scaled(fc, mp.cols as u64) as usize);
        let bit = scaled(fb, u64::from(c.dp.psum_bits)) as u8;
        let cycle = scaled(fcyc, mp.cycles);
        let got = c.run(&[HwFault::flip(FaultSite::PsumReg, row, col, bit, cycle)]);
        let want = c.reference();
        let hit = psum_in_flight(&c, row, col, cycle);
        for e in 0..c.e {
            for m in 0..c.m {
                let (g, w) = (got[e * c.m + m], want[e * c.m + m]);
                if hit == Some((e, m)) {
                    if c.dp.overflow == Overflow::Wrap {
                        // A flip adds or removes 2^bit; later additions are
                        // linear modulo 2^psum_bits.
                        let d = wrap(g - w, c.dp.psum_bits);
                        prop_assert!(d == wrap(1 << bit, c.dp.psum_bits) || d == -(1i64 << bit), "diff {}", d);
                    }
                } else {
                    prop_assert_eq!(g, w, "output ({}, {}) changed", e, m);
                }
            }
        }
    }

    #[test]
    fn stuck_psum_bit_changes_only_outputs_through_the_pe(
        c in case(), fr in 0.0f64..1.0, fc in 0.0f64..1.0, fb in 0.0f64..1.0, value in any::<bool>(),
    ) {
        let mp = c.mapping();
        let (rows, cols) = (mp.rows, mp.cols);
        let (row, col) = (scaled(fr, rows as u64) as usize, scaled(fc, cols as u64) as usize);
        let bit = scaled(fb, u64::from(c.dp.psum_bits)) as u8;
        let got = c.run(&[HwFault::stuck(FaultSite::PsumReg, row, col, bit, value)]);
        let want = c.reference();
        for e in 0..c.e {
            for m in 0..c.m {
                let through = match mp.dataflow {
                    Dataflow::Os => e % rows == row && m % cols == col,
                    Dataflow::Ws => m % cols == col,
                    Dataflow::Is => e % cols == col,
                };
                if !through {
                    prop_assert_eq!(got[e * c.m + m], want[e * c.m + m]);
                } else if mp.dataflow == Dataflow::Os {
                    // The accumulator's output always shows the stuck bit.
                    let v = got[e * c.m + m];
                    prop_assert_eq!((v >> bit) & 1, i64::from(value));
                }
            }
        }
    }
}

fn int8_wrap() -> Datapath {
    Datapath::INT8
}

/// Codes without zeros so that every corrupted term shows in the output.
fn nonzero_case(df: Dataflow, rows: usize, cols: usize, e: usize, k: usize, m: usize) -> Case {
    let mut c = Case::new(df, (rows, cols), (e, k, m), int8_wrap(), 11);
    for v in c.a.iter_mut().chain(c.w.iter_mut()) {
        if *v == 0 {
            *v = 3;
        }
    }
    c
}

fn changed(a: &[i64], b: &[i64]) -> Vec<usize> {
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

#[test]
fn os_psum_flip_changes_exactly_one_output() {
    let c = nonzero_case(Dataflow::Os, 4, 4, 10, 12, 9);
    let mp = c.mapping();
    // Fold (fr=1, fc=1): outputs e = 4.., m = 4..; PE (2, 3) holds (6, 7).
    let cycle = mp.fold_start(mp.fold_index(1, 1)) + 9;
    let got = c.run(&[HwFault::flip(FaultSite::PsumReg, 2, 3, 5, cycle)]);
    let want = c.reference();
    assert_eq!(changed(&got, &want), vec![6 * 9 + 7]);
    assert_eq!((got[6 * 9 + 7] - want[6 * 9 + 7]).abs(), 32);
}

#[test]
fn ws_stuck_weight_register_corrupts_that_weight_in_every_fold() {
    // K = 10 over 4 PE rows (3 row folds), M = 9 over 4 columns (3 col folds):
    // PE (1, 2) holds W[1][2], W[1][6], W[5][2], ... W[9][6].
    let c = nonzero_case(Dataflow::Ws, 4, 4, 7, 10, 9);
    let fault = HwFault::stuck(FaultSite::WeightReg, 1, 2, 6, true);
    let got = c.run(&[fault]);
    let mut w2 = c.w.clone();
    for k in (1..c.k).step_by(4) {
        for m in (2..c.m).step_by(4) {
            w2[k * c.m + m] = wrap(i64::from(w2[k * c.m + m]) | 64, 8) as i32;
        }
    }
    let gemm = Gemm {
        a: &c.a,
        w: &w2,
        e: c.e,
        k: c.k,
        m: c.m,
    };
    assert_eq!(got, reference_gemm(&gemm, &c.dp));
    assert_ne!(got, c.reference());
}

#[test]
fn moving_act_flip_corrupts_every_pe_it_still_passes() {
    // OS: A[e][k] enters PE row i and passes PEs (i, j..cols).
    let c = nonzero_case(Dataflow::Os, 4, 5, 8, 6, 5);
    let mp = c.mapping();
    // Fold (1, 0), PE (2, 1), local cycle 5: k = 5 - 2 - 1 = 2, e = 6.
    let cycle = mp.fold_start(mp.fold_index(1, 0)) + 5;
    let got = c.run(&[HwFault::flip(FaultSite::ActReg, 2, 1, 4, cycle)]);
    let want = expected_flip(&c, FaultSite::ActReg, 2, 1, 4, cycle);
    assert_eq!(got, want);
    assert_eq!(
        changed(&got, &c.reference()),
        (1..5).map(|m| 6 * 5 + m).collect::<Vec<_>>()
    );

    // WS: A[e][k] streams along PE row r = k % rows, passing columns c..cols.
    let c = nonzero_case(Dataflow::Ws, 3, 4, 6, 5, 4);
    let mp = c.mapping();
    // Fold (1, 0) (k = 3..5), PE (1, 1), stream cycle 4: e = 4 - 1 - 1 = 2, k = 4.
    let cycle = mp.fold_start(mp.fold_index(1, 0)) + 3 + 4;
    let got = c.run(&[HwFault::flip(FaultSite::ActReg, 1, 1, 2, cycle)]);
    assert_eq!(got, expected_flip(&c, FaultSite::ActReg, 1, 1, 2, cycle));
    assert_eq!(
        changed(&got, &c.reference()),
        vec![2 * 4 + 1, 2 * 4 + 2, 2 * 4 + 3]
    );
}

#[test]
fn faults_where_no_live_data_is_held_are_masked() {
    let c = nonzero_case(Dataflow::Os, 4, 4, 6, 5, 6);
    let want = c.reference();
    let mp = c.mapping();
    let last = mp.cycles - 1;
    let masked = [
        // OS skew bubble: PE (3, 3) sees its first operands in cycle 6.
        HwFault::flip(FaultSite::ActReg, 3, 3, 1, 2),
        HwFault::flip(FaultSite::WeightReg, 3, 3, 1, 5),
        HwFault::flip(FaultSite::MultOut, 3, 3, 9, 0),
        // Padding: fold (1, 1) maps e = 4..6 to PE rows 0..2, m = 4..6 to columns 0..2.
        HwFault::flip(FaultSite::PsumReg, 3, 1, 3, last),
        HwFault::flip(FaultSite::PsumReg, 0, 2, 3, last),
        // After PE (0, 0)'s last product, its operand registers hold bubbles.
        HwFault::flip(FaultSite::ActReg, 0, 0, 7, mp.fold_start(1) - 1),
    ];
    for f in masked {
        assert_eq!(c.run(&[f]), want, "{f:?}");
    }

    let c = nonzero_case(Dataflow::Ws, 4, 4, 6, 5, 6);
    let want = c.reference();
    let masked = [
        // Preload: row 2 latches at the end of cycle 2, so cycles 0..=2 are stale.
        HwFault::flip(FaultSite::WeightReg, 2, 1, 7, 2),
        // Nothing streams during preload.
        HwFault::flip(FaultSite::ActReg, 0, 0, 7, 1),
        HwFault::flip(FaultSite::PsumReg, 0, 0, 7, 3),
        HwFault::flip(FaultSite::MultOut, 0, 0, 7, 0),
        // Stream cycle 0: PE (1, 1) holds skew bubbles.
        HwFault::flip(FaultSite::ActReg, 1, 1, 3, 4),
        HwFault::flip(FaultSite::PsumReg, 1, 1, 3, 4),
    ];
    for f in masked {
        assert_eq!(c.run(&[f]), want, "{f:?}");
    }
    // The same weight register after it latched is live.
    assert_ne!(
        c.run(&[HwFault::flip(FaultSite::WeightReg, 2, 1, 7, 3)]),
        want
    );
}

#[test]
fn bad_faults_are_errors() {
    let c = nonzero_case(Dataflow::Is, 4, 4, 6, 5, 6);
    let cycles = c.mapping().cycles;
    let err = c
        .array
        .run(
            &c.gemm(),
            &c.dp,
            &[
                HwFault::flip(FaultSite::ActReg, 0, 0, 1, 0),
                HwFault::flip(FaultSite::PsumReg, 0, 4, 1, 0),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, HwSimError::Fault { index: 1, .. }), "{err}");
    let err = c
        .array
        .run(
            &c.gemm(),
            &c.dp,
            &[HwFault::flip(FaultSite::ActReg, 0, 0, 1, cycles)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("past the end"), "{err}");
    let err = c
        .array
        .run(
            &c.gemm(),
            &c.dp,
            &[HwFault::stuck(FaultSite::WeightReg, 0, 0, 8, true)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("pe.weight_reg"), "{err}");
}
