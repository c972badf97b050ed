//! The fast exact fault path (`hwsim::exact::run_exact`) against the
//! cycle-level model (`SystolicArray::run`): every output, the mapping and
//! the statistics must be identical for single and multiple faults of every
//! site and kind, on every dataflow, array size, shape (partial folds,
//! multi-fold reductions), bit width and accumulator rule; invalid input
//! must give the same error.

use ftnas::fixed::{max_code, min_code, Datapath, Overflow};
use ftnas::hwsim::exact::{clean_gemm, run_exact, run_exact_from_clean};
use ftnas::hwsim::{
    reference_gemm, Dataflow, FaultKind, FaultSite, Gemm, HwFault, HwSimError, SystolicArray,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Codes of `bits` bits, a quarter at the extremes so sums overflow often.
fn codes(n: usize, bits: u8, rng: &mut Xoshiro256PlusPlus) -> Vec<i32> {
    let (lo, hi) = (min_code(bits), max_code(bits));
    (0..n)
        .map(|_| match rng.random_range(0..8u8) {
            0 => lo as i32,
            1 => hi as i32,
            _ => rng.random_range(lo..=hi) as i32,
        })
        .collect()
}

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
        rng: &mut Xoshiro256PlusPlus,
    ) -> Case {
        let a = codes(e * k, dp.act_bits, rng);
        let w = codes(k * m, dp.weight_bits, rng);
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

    fn cycles(&self) -> u64 {
        self.array.mapping(self.e, self.k, self.m).cycles
    }

    /// Both paths agree on everything they return.
    fn check(&self, faults: &[HwFault]) -> Result<(), TestCaseError> {
        let slow = self.array.run(&self.gemm(), &self.dp, faults).unwrap();
        let fast = run_exact(&self.array, &self.gemm(), &self.dp, faults).unwrap();
        let given = run_exact_from_clean(
            &self.array,
            &self.gemm(),
            &self.dp,
            faults,
            clean_gemm(&self.gemm(), &self.dp),
        )
        .unwrap();
        prop_assert_eq!(&given, &fast);
        prop_assert_eq!(fast.mapping, slow.mapping);
        prop_assert_eq!(fast.stats, slow.stats);
        if fast.out != slow.out {
            let diffs: Vec<(usize, i64, i64)> = (0..slow.out.len())
                .filter(|&o| fast.out[o] != slow.out[o])
                .map(|o| (o, fast.out[o], slow.out[o]))
                .take(8)
                .collect();
            return Err(TestCaseError::fail(format!(
                "outputs differ (index, fast, cycle-level): {diffs:?}\nfaults: {faults:?}"
            )));
        }
        Ok(())
    }
}

fn random_site(rng: &mut Xoshiro256PlusPlus) -> FaultSite {
    FaultSite::ALL[rng.random_range(0..4)]
}

fn random_bit(site: FaultSite, dp: &Datapath, rng: &mut Xoshiro256PlusPlus) -> u8 {
    let width = site.width(dp);
    // The sign bit often: it exercises the sign extension of every site.
    if rng.random_range(0..4) == 0 {
        (width - 1) as u8
    } else {
        rng.random_range(0..width) as u8
    }
}

fn random_kind(cycles: u64, rng: &mut Xoshiro256PlusPlus) -> FaultKind {
    match rng.random_range(0..4) {
        0 => FaultKind::StuckAt0,
        1 => FaultKind::StuckAt1,
        _ => FaultKind::Flip {
            cycle: rng.random_range(0..cycles),
        },
    }
}

/// `n` faults; after the first, most land near an earlier one (same PE, row
/// or column, a few cycles apart, often the same bit) so that faults meet in
/// one register, one value, one output.
fn random_faults(case: &Case, n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<HwFault> {
    let (rows, cols, cycles) = (case.array.rows, case.array.cols, case.cycles());
    let mut faults: Vec<HwFault> = Vec::new();
    for _ in 0..n {
        let mut f = HwFault {
            site: random_site(rng),
            row: rng.random_range(0..rows),
            col: rng.random_range(0..cols),
            bit: 0,
            kind: random_kind(cycles, rng),
        };
        f.bit = random_bit(f.site, &case.dp, rng);
        if let (false, Some(near)) = (rng.random_range(0..10) < 3, faults.last().copied()) {
            match rng.random_range(0..3) {
                0 => (f.row, f.col) = (near.row, near.col),
                1 => f.row = near.row,
                _ => f.col = near.col,
            }
            if rng.random_range(0..2) == 0 {
                f.site = near.site;
                if u32::from(near.bit) < f.site.width(&case.dp) {
                    f.bit = near.bit;
                }
            }
            if let (FaultKind::Flip { .. }, FaultKind::Flip { cycle }) = (f.kind, near.kind) {
                let span = (rows + cols) as i64;
                let c = cycle as i64 + rng.random_range(-span..=span);
                f.kind = FaultKind::Flip {
                    cycle: c.clamp(0, cycles as i64 - 1) as u64,
                };
            }
        }
        faults.push(f);
    }
    faults
}

fn dataflow() -> impl Strategy<Value = Dataflow> {
    prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)]
}

/// Widths 2..=16, accumulators from the narrowest allowed to 32 bits.
fn datapath() -> impl Strategy<Value = Datapath> {
    (2u8..=16, 2u8..=16, any::<bool>(), 0u8..=32).prop_map(|(a, w, sat, p)| {
        let min = a.max(w);
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

/// Small arrays and shapes: partial folds and reductions over several row
/// folds are common.
fn case() -> impl Strategy<Value = (Case, u64)> {
    (
        dataflow(),
        (1usize..=5, 1usize..=5),
        (1usize..=11, 1usize..=13, 1usize..=11),
        datapath(),
        any::<u64>(),
    )
        .prop_map(|(df, array, shape, dp, seed)| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            (Case::new(df, array, shape, dp, &mut rng), seed)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, ..ProptestConfig::default() })]

    #[test]
    fn single_faults_match_the_cycle_level_model((c, seed) in case()) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed);
        let faults = random_faults(&c, 1, &mut rng);
        c.check(&faults)?;
    }

    #[test]
    fn multiple_faults_match_the_cycle_level_model((c, seed) in case(), n in 2usize..=6) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xfa17);
        let faults = random_faults(&c, n, &mut rng);
        c.check(&faults)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Every cycle of the run, one site and PE at a time: masked cycles
    /// (skew bubbles, preload, padding) included, no cycle skipped.
    #[test]
    fn every_cycle_of_a_flip_matches((c, seed) in case()) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let site = random_site(&mut rng);
        let (row, col) = (rng.random_range(0..c.array.rows), rng.random_range(0..c.array.cols));
        let bit = random_bit(site, &c.dp, &mut rng);
        for cycle in 0..c.cycles() {
            c.check(&[HwFault::flip(site, row, col, bit, cycle)])?;
        }
    }

    /// Many faults at once: outputs hit by several of them.
    #[test]
    fn fault_storms_match((c, seed) in case()) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x57);
        let n = rng.random_range(8..=40);
        let faults = random_faults(&c, n, &mut rng);
        c.check(&faults)?;
    }

    #[test]
    fn no_faults_give_the_reference((c, _seed) in case()) {
        let fast = run_exact(&c.array, &c.gemm(), &c.dp, &[]).unwrap();
        prop_assert_eq!(&fast.out, &reference_gemm(&c.gemm(), &c.dp));
        c.check(&[])?;
    }
}

fn fixed_case(
    df: Dataflow,
    rows: usize,
    cols: usize,
    shape: (usize, usize, usize),
    dp: Datapath,
) -> Case {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    Case::new(df, (rows, cols), shape, dp, &mut rng)
}

/// Two stuck operand bits whose corrupted bubbles meet: in OS an activation
/// and a weight register of one PE, in WS/IS a streamed and a stationary
/// register of a padding row (K is not a multiple of the rows).
#[test]
fn corrupted_bubbles_meeting_in_a_pe_match() {
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let c = fixed_case(df, 4, 3, (6, 9, 5), Datapath::INT8);
        for (row, col) in [(0, 0), (1, 2), (3, 1)] {
            let faults = [
                HwFault::stuck(FaultSite::ActReg, row, col, 2, true),
                HwFault::stuck(FaultSite::WeightReg, row, col, 5, true),
            ];
            c.check(&faults).unwrap();
        }
    }
}

/// Saturating narrow accumulators over several row folds, with psum faults
/// that only a replay in hardware order gets right.
#[test]
fn saturating_psum_faults_over_row_folds_match() {
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 16,
        overflow: Overflow::Saturate,
    };
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let c = fixed_case(df, 3, 2, (5, 11, 4), dp);
        let cycles = c.cycles();
        for cycle in (0..cycles).step_by(3) {
            c.check(&[
                HwFault::flip(FaultSite::PsumReg, 1, 1, 14, cycle),
                HwFault::stuck(FaultSite::PsumReg, 2, 1, 3, false),
            ])
            .unwrap();
        }
    }
}

#[test]
fn invalid_input_gives_the_same_errors() {
    let c = fixed_case(Dataflow::Ws, 2, 2, (3, 4, 3), Datapath::INT8);
    let same = |array: &SystolicArray, g: &Gemm, dp: &Datapath, faults: &[HwFault]| {
        let slow = array.run(g, dp, faults).unwrap_err();
        let fast = run_exact(array, g, dp, faults).unwrap_err();
        assert_eq!(fast, slow);
        fast
    };
    let empty = SystolicArray {
        rows: 0,
        cols: 2,
        dataflow: Dataflow::Os,
    };
    assert!(matches!(
        same(&empty, &c.gemm(), &c.dp, &[]),
        HwSimError::EmptyArray { .. }
    ));
    let bad_dp = Datapath {
        psum_bits: 40,
        ..Datapath::INT8
    };
    assert!(matches!(
        same(&c.array, &c.gemm(), &bad_dp, &[]),
        HwSimError::Datapath(_)
    ));
    let short = Gemm {
        a: &c.a[1..],
        ..c.gemm()
    };
    assert!(matches!(
        same(&c.array, &short, &c.dp, &[]),
        HwSimError::OperandSize { .. }
    ));
    let mut big = c.a.clone();
    big[5] = 300;
    let out_of_range = Gemm {
        a: &big,
        ..c.gemm()
    };
    assert!(matches!(
        same(&c.array, &out_of_range, &c.dp, &[]),
        HwSimError::CodeOutOfRange { .. }
    ));
    let zero = Gemm {
        e: 0,
        a: &[],
        ..c.gemm()
    };
    assert!(matches!(
        same(&c.array, &zero, &c.dp, &[]),
        HwSimError::EmptyGemm { .. }
    ));
    let short_clean = run_exact_from_clean(&c.array, &c.gemm(), &c.dp, &[], vec![0; 8]);
    assert!(matches!(
        short_clean,
        Err(HwSimError::OperandSize {
            operand: "clean output",
            found: 8,
            expected: 9,
            ..
        })
    ));
    for f in [
        HwFault::flip(FaultSite::ActReg, 2, 0, 0, 0),
        HwFault::flip(FaultSite::ActReg, 0, 0, 8, 0),
        HwFault::flip(FaultSite::PsumReg, 0, 0, 0, c.cycles()),
    ] {
        let faults = [HwFault::stuck(FaultSite::MultOut, 1, 1, 3, true), f];
        assert!(matches!(
            same(&c.array, &c.gemm(), &c.dp, &faults),
            HwSimError::Fault { index: 1, .. }
        ));
    }
}

/// Enough touched outputs for the parallel evaluation (over a thousand).
#[test]
fn many_touched_outputs_match() {
    let dp = Datapath {
        psum_bits: 20,
        overflow: Overflow::Saturate,
        ..Datapath::INT8
    };
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        for dp in [Datapath::INT8, dp] {
            let c = fixed_case(df, 4, 4, (64, 21, 40), dp);
            let cycles = c.cycles();
            c.check(&[
                HwFault::stuck(FaultSite::ActReg, 0, 0, 3, true),
                HwFault::stuck(FaultSite::ActReg, 1, 0, 7, false),
                HwFault::stuck(FaultSite::WeightReg, 0, 0, 1, true),
                HwFault::stuck(FaultSite::WeightReg, 2, 1, 6, true),
                HwFault::flip(FaultSite::PsumReg, 3, 2, 12, cycles / 3),
                HwFault::stuck(FaultSite::MultOut, 1, 1, 9, true),
            ])
            .unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Many stuck-at bits in the operand registers and multiplier outputs
    /// (the per-PE path of the exact corrections), sometimes with flips and
    /// psum faults on top (outputs those reach are evaluated one by one).
    #[test]
    fn stuck_operand_bits_match((c, seed) in case(), extra in 0usize..3) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x57c4);
        let n = rng.random_range(1..=12);
        let mut faults: Vec<HwFault> = random_faults(&c, n, &mut rng)
            .into_iter()
            .map(|mut f| {
                if f.site == FaultSite::PsumReg {
                    f.site = FaultSite::MultOut;
                    f.bit = random_bit(f.site, &c.dp, &mut rng);
                }
                f.kind = if rng.random_range(0..2) == 0 {
                    FaultKind::StuckAt0
                } else {
                    FaultKind::StuckAt1
                };
                f
            })
            .collect();
        faults.extend(random_faults(&c, extra, &mut rng));
        c.check(&faults)?;
    }
}
