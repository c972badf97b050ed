//! Memory-model speed: all ResNet-50 layers (SCALE-Sim's Resnet50.csv
//! topology, 224x224 input) on a 32x32 array in USER interface mode
//! (10 words/cycle, 64 kB SRAMs), per dataflow.

use criterion::{criterion_group, criterion_main, Criterion};
use ftnas::accel::memory::{simulate, Interface, MemoryInput};
use ftnas::accel::{Dataflow, ScaleSimLayer};

#[path = "support/resnet50_shapes.rs"]
mod resnet50_shapes;
use resnet50_shapes::RESNET50;

fn resnet50_inputs(dataflow: Dataflow) -> Vec<MemoryInput> {
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
            interface: Interface::User {
                words_per_cycle: 10,
            },
        })
        .collect()
}

fn bench_resnet50(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_resnet50_32x32_user_bw10");
    group.sample_size(10);
    for (label, dataflow) in [
        ("os", Dataflow::Os),
        ("ws", Dataflow::Ws),
        ("is", Dataflow::Is),
    ] {
        let inputs = resnet50_inputs(dataflow);
        group.bench_function(label, |b| {
            b.iter(|| {
                inputs
                    .iter()
                    .map(|i| simulate(std::hint::black_box(i)).stall_cycles)
                    .sum::<u64>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_resnet50);
criterion_main!(benches);
