//! Speed of the timing model: all of ResNet-50's layers (SCALE-Sim's
//! topology, `accelerators/topologies/resnet50.csv`) on SCALE-Sim's 32x32
//! array, memory model (stalls, DRAM) included, in CALC and USER modes and
//! for the three dataflows. SCALE-Sim v2 takes ~20 s for one ResNet-18 layer.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ftnas::accel::memory::Interface;
use ftnas::accel::network::time_topology;
use ftnas::accel::scalesim::load_topology;
use ftnas::accel::timing::{compute, ArrayConfig, Gemm};
use ftnas::accel::Dataflow;

fn array(dataflow: Dataflow, interface: Interface) -> ArrayConfig {
    ArrayConfig {
        rows: 32,
        cols: 32,
        dataflow,
        ifmap_sram_words: 64 * 1024,
        filter_sram_words: 64 * 1024,
        ofmap_sram_words: 64 * 1024,
        interface,
    }
}

fn resnet50(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/topologies/resnet50.csv");
    let layers = load_topology(&path).expect("resnet50 topology");
    let mut g = c.benchmark_group("resnet50_32x32");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(2));
    for (label, df, iface) in [
        ("os_calc", Dataflow::Os, Interface::Calc),
        (
            "ws_user10",
            Dataflow::Ws,
            Interface::User {
                words_per_cycle: 10,
            },
        ),
    ] {
        let arr = array(df, iface);
        g.bench_function(label, |b| {
            b.iter(|| {
                let t = time_topology(&arr, 1000.0, "scalesim-32x32", "resnet50", &layers)
                    .expect("timed");
                std::hint::black_box(t.totals.total_cycles)
            })
        });
    }
    g.finish();
}

/// The compute side alone (closed-form folds, cycles, utilizations, SRAM
/// counts): what this module adds on top of the memory model.
fn resnet50_compute_only(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/topologies/resnet50.csv");
    let layers = load_topology(&path).expect("resnet50 topology");
    let gemms: Vec<Gemm> = layers
        .iter()
        .map(|l| Gemm::of_scalesim_layer(l).expect("mappable"))
        .collect();
    c.bench_function("resnet50_32x32_compute_only_3_dataflows", |b| {
        b.iter(|| {
            let mut cycles = 0u64;
            for g in &gemms {
                for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
                    cycles += compute(g, 32, 32, df).compute_cycles;
                }
            }
            std::hint::black_box(cycles)
        })
    });
}

criterion_group!(benches, resnet50_compute_only, resnet50);
criterion_main!(benches);
