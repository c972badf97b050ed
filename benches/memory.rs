//! Memory-model speed: all ResNet-50 layers (SCALE-Sim's Resnet50.csv
//! topology, 224x224 input) on a 32x32 array with 64 kB SRAMs, per
//! dataflow, in USER interface mode (10 words/cycle) and in CALC mode
//! (bandwidth computed; most layers have an operand that does not fit, so
//! the read buffers slide).

use criterion::{criterion_group, criterion_main, Criterion};
use ftnas::accel::memory::{simulate, Interface, MemoryInput};
use ftnas::accel::{Dataflow, ScaleSimLayer};

#[path = "support/resnet50_shapes.rs"]
mod resnet50_shapes;
use resnet50_shapes::RESNET50;

fn resnet50_inputs(dataflow: Dataflow, interface: Interface) -> Vec<MemoryInput> {
    RESNET50
        .iter()
        .map(|&(name, h, w, fh, fw, c, m, s)| MemoryInput {
            dataflow,
            rows: 32,
            cols: 32,
            layer: ScaleSimLayer {
                name: name.to_string(),
                ifmap_h: h,
                ifmap_w: w,
                filter_h: fh,
                filter_w: fw,
                channels: c,
                num_filters: m,
                stride: s,
            },
            ifmap_sram_words: 64 * 1024,
            filter_sram_words: 64 * 1024,
            ofmap_sram_words: 64 * 1024,
            interface,
        })
        .collect()
}

fn bench_group(c: &mut Criterion, group_name: &str, interface: Interface) {
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    for (label, dataflow) in [
        ("os", Dataflow::Os),
        ("ws", Dataflow::Ws),
        ("is", Dataflow::Is),
    ] {
        let inputs = resnet50_inputs(dataflow, interface);
        group.bench_function(label, |b| {
            b.iter(|| {
                inputs
                    .iter()
                    .map(|i| simulate(std::hint::black_box(i)).dram_ifmap_reads)
                    .sum::<u64>()
            })
        });
    }
    group.finish();
}

fn bench_resnet50(c: &mut Criterion) {
    bench_group(
        c,
        "memory_resnet50_32x32_user_bw10",
        Interface::User {
            words_per_cycle: 10,
        },
    );
    bench_group(c, "memory_resnet50_32x32_calc", Interface::Calc);
}

criterion_group!(benches, bench_resnet50);
criterion_main!(benches);
