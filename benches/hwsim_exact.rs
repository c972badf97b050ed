//! Fast exact fault path vs the cycle-level model on ResNet-20-sized layers
//! (32x32 array, INT8, wrapping 32-bit accumulator), all three dataflows.
//!
//! Per layer and dataflow: the cycle-level run with a handful of faults
//! (`cycle_level`), the exact path with the same faults (`exact_flips`: four
//! transient flips, one per site), the exact path with two stuck-at bits
//! (`exact_stuck`: every fold affected), and the fault-free GEMM the exact
//! path starts from (`clean_gemm`), and the flips applied to a clean result
//! the caller already has (`exact_flips_from_clean`: the fault cost alone,
//! what a network executor running the fast engine pays). Speedup = cycle_level /
//! exact_*; a campaign's cost over the clean engine = exact_* / clean_gemm.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ftnas::fixed::Datapath;
use ftnas::hwsim::exact::{clean_gemm, run_exact, run_exact_from_clean};
use ftnas::hwsim::{Dataflow, FaultSite, Gemm, HwFault, SystolicArray};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn codes(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<i32> {
    (0..n).map(|_| rng.random_range(-128..=127)).collect()
}

/// One transient flip per site, spread over the run.
fn flips(cycles: u64) -> Vec<HwFault> {
    vec![
        HwFault::flip(FaultSite::ActReg, 3, 4, 6, cycles / 5),
        HwFault::flip(FaultSite::WeightReg, 10, 2, 7, 2 * cycles / 5),
        HwFault::flip(FaultSite::PsumReg, 7, 9, 20, 3 * cycles / 5),
        HwFault::flip(FaultSite::MultOut, 1, 0, 12, 4 * cycles / 5),
    ]
}

fn stuck() -> Vec<HwFault> {
    vec![
        HwFault::stuck(FaultSite::WeightReg, 5, 7, 3, true),
        HwFault::stuck(FaultSite::ActReg, 12, 20, 6, false),
    ]
}

fn bench_exact(c: &mut Criterion) {
    let mut group = c.benchmark_group("hwsim_exact_32x32");
    group.sample_size(10);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(44);
    let dp = Datapath::INT8;
    for (e, k, m) in [(784usize, 144usize, 16usize), (196, 576, 64)] {
        let a = codes(e * k, &mut rng);
        let w = codes(k * m, &mut rng);
        let gemm = Gemm {
            a: &a,
            w: &w,
            e,
            k,
            m,
        };
        let shape = format!("E{e}_K{k}_M{m}");
        group.bench_function(BenchmarkId::new("clean_gemm", &shape), |b| {
            b.iter(|| clean_gemm(&gemm, &dp))
        });
        for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
            let array = SystolicArray::new(32, 32, df).unwrap();
            let cycles = array.mapping(e, k, m).cycles;
            let flips = flips(cycles);
            let stuck = stuck();
            // Same answer, or the comparison is meaningless.
            for faults in [&flips, &stuck] {
                assert_eq!(
                    run_exact(&array, &gemm, &dp, faults).unwrap().out,
                    array.run(&gemm, &dp, faults).unwrap().out
                );
            }
            group.bench_function(
                BenchmarkId::new(format!("{df:?}_cycle_level"), &shape),
                |b| b.iter(|| array.run(&gemm, &dp, &flips).unwrap().stats.stepped_cycles),
            );
            group.bench_function(
                BenchmarkId::new(format!("{df:?}_exact_flips"), &shape),
                |b| b.iter(|| run_exact(&array, &gemm, &dp, &flips).unwrap().out[0]),
            );
            let clean = clean_gemm(&gemm, &dp);
            group.bench_function(
                BenchmarkId::new(format!("{df:?}_exact_flips_from_clean"), &shape),
                |b| {
                    b.iter(|| {
                        run_exact_from_clean(&array, &gemm, &dp, &flips, clean.clone())
                            .unwrap()
                            .out[0]
                    })
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("{df:?}_exact_stuck"), &shape),
                |b| b.iter(|| run_exact(&array, &gemm, &dp, &stuck).unwrap().out[0]),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_exact);
criterion_main!(benches);
