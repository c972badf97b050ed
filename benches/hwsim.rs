//! Cycle-level systolic model throughput on a 32x32 array, ResNet-20-like
//! layers, all three dataflows. Criterion reports time per GEMM; the PE-cycle
//! update rate (rows*cols*cycles / time) is reported as throughput
//! ("elements" = PE-cycle updates).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ftnas::fixed::{Datapath, Overflow};
use ftnas::hwsim::{Dataflow, FaultSite, Gemm, HwFault, SystolicArray};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn codes(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<i32> {
    (0..n).map(|_| rng.random_range(-128..=127)).collect()
}

fn bench_layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("hwsim_32x32");
    group.sample_size(20);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    let saturating = Datapath {
        overflow: Overflow::Saturate,
        ..Datapath::INT8
    };
    for (e, k, m) in [(784usize, 144usize, 16usize), (196, 288, 32)] {
        let a = codes(e * k, &mut rng);
        let w = codes(k * m, &mut rng);
        let gemm = Gemm {
            a: &a,
            w: &w,
            e,
            k,
            m,
        };
        for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
            let array = SystolicArray::new(32, 32, df).unwrap();
            let updates = array.mapping(e, k, m).cycles * 32 * 32;
            group.throughput(Throughput::Elements(updates));
            for (name, dp) in [("wrap", Datapath::INT8), ("sat", saturating)] {
                let id = BenchmarkId::new(format!("{df:?}_{name}"), format!("E{e}_K{k}_M{m}"));
                group.bench_function(id, |b| {
                    b.iter(|| array.run(&gemm, &dp, &[]).unwrap().stats.stepped_cycles)
                });
            }
        }
    }
    group.finish();
}

/// The same layer with faults: a transient flip slows only the fold it
/// falls in; a stuck-at puts every fold on the fault-checking loop.
fn bench_faulty(c: &mut Criterion) {
    let mut group = c.benchmark_group("hwsim_32x32_faults");
    group.sample_size(20);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(43);
    let (e, k, m) = (784usize, 144usize, 16usize);
    let a = codes(e * k, &mut rng);
    let w = codes(k * m, &mut rng);
    let gemm = Gemm {
        a: &a,
        w: &w,
        e,
        k,
        m,
    };
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let array = SystolicArray::new(32, 32, df).unwrap();
        let cycles = array.mapping(e, k, m).cycles;
        group.throughput(Throughput::Elements(cycles * 32 * 32));
        for (name, fault) in [
            (
                "flip",
                HwFault::flip(FaultSite::ActReg, 5, 7, 3, cycles / 2),
            ),
            ("stuck", HwFault::stuck(FaultSite::WeightReg, 5, 7, 3, true)),
        ] {
            let id = BenchmarkId::new(format!("{df:?}_{name}"), format!("E{e}_K{k}_M{m}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    array
                        .run(&gemm, &Datapath::INT8, &[fault])
                        .unwrap()
                        .stats
                        .stepped_cycles
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_layers, bench_faulty);
criterion_main!(benches);
