//! The cycle-level systolic model without faults: bit-identical to the plain
//! in-order GEMM for every shape, array, dataflow and datapath, and the
//! cycles it steps equal SCALE-Sim v2's analytical count.

use ftnas::fixed::{max_code, min_code, Datapath, Overflow};
use ftnas::hwsim::{reference_gemm, Dataflow, Gemm, HwSimError, SystolicArray};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Codes of `bits` bits, a quarter of them at the extremes so that
/// accumulators overflow often.
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

/// SCALE-Sim v2's count, written out independently of the model.
fn scalesim_total(df: Dataflow, rows: usize, cols: usize, e: usize, k: usize, m: usize) -> u64 {
    let (sr, sc, t) = match df {
        Dataflow::Os => (e, m, k),
        Dataflow::Ws => (k, m, e),
        Dataflow::Is => (k, e, m),
    };
    let folds = sr.div_ceil(rows) * sc.div_ceil(cols);
    let per_fold = match df {
        Dataflow::Os => t + rows + cols - 2,
        _ => 2 * rows + cols + t - 2,
    };
    (folds * per_fold - 1) as u64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn fault_free_run_equals_reference_and_formula(
        e in 1usize..=40, k in 1usize..=40, m in 1usize..=40,
        rows in 1usize..=9, cols in 1usize..=9,
        df in dataflow(), dp in datapath(), seed in any::<u64>(),
    ) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let a = codes(e * k, dp.act_bits, &mut rng);
        let w = codes(k * m, dp.weight_bits, &mut rng);
        let gemm = Gemm { a: &a, w: &w, e, k, m };
        let array = SystolicArray::new(rows, cols, df).unwrap();
        let run = array.run(&gemm, &dp, &[]).unwrap();
        prop_assert_eq!(&run.out, &reference_gemm(&gemm, &dp));
        prop_assert_eq!(run.stats.stepped_cycles, run.mapping.cycles);
        prop_assert_eq!(run.mapping.scalesim_total_cycles(), scalesim_total(df, rows, cols, e, k, m));
        prop_assert_eq!(run.stats.pe_cycle_updates, run.stats.stepped_cycles * (rows * cols) as u64);
    }
}

#[test]
fn non_square_and_single_pe_arrays() {
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 16,
        overflow: Overflow::Saturate,
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let (e, k, m) = (37, 29, 23);
    let a = codes(e * k, 8, &mut rng);
    let w = codes(k * m, 8, &mut rng);
    let gemm = Gemm {
        a: &a,
        w: &w,
        e,
        k,
        m,
    };
    let want = reference_gemm(&gemm, &dp);
    for (rows, cols) in [(1, 1), (1, 16), (16, 1), (3, 11), (12, 5), (32, 8)] {
        for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
            let run = SystolicArray::new(rows, cols, df)
                .unwrap()
                .run(&gemm, &dp, &[])
                .unwrap();
            assert_eq!(run.out, want, "{rows}x{cols} {df:?}");
            assert_eq!(run.stats.stepped_cycles, run.mapping.cycles);
        }
    }
}

/// The checked SCALE-Sim v2 runs of REFERENCE.md, on a 32x32 array.
#[test]
fn matches_checked_scalesim_runs() {
    // 16x16x16 ifmap, 3x3 filter, 32 filters: E = 14*14, K = 3*3*16, M = 32.
    let (e, k, m) = (196, 144, 32);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let a = codes(e * k, 8, &mut rng);
    let w = codes(k * m, 8, &mut rng);
    let gemm = Gemm {
        a: &a,
        w: &w,
        e,
        k,
        m,
    };
    let want = reference_gemm(&gemm, &Datapath::INT8);
    for (df, total) in [
        (Dataflow::Os, 1441),
        (Dataflow::Ws, 1449),
        (Dataflow::Is, 4409),
    ] {
        let run = SystolicArray::new(32, 32, df)
            .unwrap()
            .run(&gemm, &Datapath::INT8, &[])
            .unwrap();
        assert_eq!(run.mapping.scalesim_total_cycles(), total, "{df:?}");
        assert_eq!(run.stats.stepped_cycles, total + 1, "{df:?}");
        assert_eq!(run.out, want, "{df:?}");
    }
    // 30x30x64 ifmap, 3x3, 64 filters: E = 28*28, K = 576, M = 64.
    for (df, total) in [
        (Dataflow::Os, 31899),
        (Dataflow::Ws, 31607),
        (Dataflow::Is, 71099),
    ] {
        let array = SystolicArray::new(32, 32, df).unwrap();
        assert_eq!(
            array.mapping(784, 576, 64).scalesim_total_cycles(),
            total,
            "{df:?}"
        );
    }
}

#[test]
fn bad_inputs_are_errors() {
    let dp = Datapath::INT8;
    assert_eq!(
        SystolicArray::new(0, 4, Dataflow::Os),
        Err(HwSimError::EmptyArray { rows: 0, cols: 4 })
    );
    let array = SystolicArray::new(4, 4, Dataflow::Ws).unwrap();
    let a = vec![1; 6];
    let w = vec![1; 6];
    let short = Gemm {
        a: &a,
        w: &w,
        e: 2,
        k: 3,
        m: 3,
    };
    assert!(matches!(
        array.run(&short, &dp, &[]),
        Err(HwSimError::OperandSize { operand: "W", .. })
    ));
    let big = vec![1, 2, 300, 4, 5, 6];
    let gemm = Gemm {
        a: &big,
        w: &w,
        e: 2,
        k: 3,
        m: 2,
    };
    let err = array.run(&gemm, &dp, &[]).unwrap_err();
    assert_eq!(
        err,
        HwSimError::CodeOutOfRange {
            operand: "A",
            row: 0,
            col: 2,
            value: 300,
            bits: 8
        }
    );
    assert!(err.to_string().contains("A[0][2] = 300"));
    let bad_dp = Datapath {
        psum_bits: 40,
        ..Datapath::INT8
    };
    let ok = Gemm {
        a: &a,
        w: &w,
        e: 2,
        k: 3,
        m: 2,
    };
    assert!(matches!(
        array.run(&ok, &bad_dp, &[]),
        Err(HwSimError::Datapath(_))
    ));
    let empty = Gemm {
        a: &[],
        w: &[],
        e: 0,
        k: 3,
        m: 2,
    };
    assert!(matches!(
        array.run(&empty, &dp, &[]),
        Err(HwSimError::EmptyGemm { .. })
    ));
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 20,
        overflow: Overflow::Saturate,
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let (e, k, m) = (50, 70, 30);
    let a = codes(e * k, 8, &mut rng);
    let w = codes(k * m, 8, &mut rng);
    let gemm = Gemm {
        a: &a,
        w: &w,
        e,
        k,
        m,
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let array = SystolicArray::new(8, 8, df).unwrap();
        let serial = one.install(|| array.run(&gemm, &dp, &[]).unwrap());
        let parallel = array.run(&gemm, &dp, &[]).unwrap();
        assert_eq!(serial, parallel, "{df:?}");
        assert_eq!(parallel.out, reference_gemm(&gemm, &dp));
    }
}
