//! Whole-network fixed-point inference throughput (images/s), clean, for a
//! ResNet-20-shaped graph on 1x28x28 inputs at batch 1 and 128, with the
//! fast and (batch 1 only) reference engines.
//!
//! Run: `cargo bench --bench inference`. The graph is built here with
//! `GraphBuilder` (MERGE NOTE: can switch to `ftnas::model::load_model` on
//! `models/resnet20.toml`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::engine::{Engine, FastEngine, ReferenceEngine};
use ftnas::fixed::Datapath;
use ftnas::model::{Graph, GraphBuilder, NodeId, Op, Shape, Weights};
use ftnas::quant;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn conv(out: usize, k: usize, stride: usize) -> Op {
    Op::Conv2d {
        out_channels: out,
        kernel: (k, k),
        stride: (stride, stride),
        padding: (k / 2, k / 2),
        dilation: (1, 1),
        groups: 1,
        bias: false,
    }
}

/// ResNet-20 (3 stages x 3 basic blocks, 16/32/64 channels, 1x1 conv + BN
/// projection shortcuts when downsampling).
fn resnet20(input: Shape) -> Graph {
    let mut b = GraphBuilder::new("resnet20", input);
    let conv_bn = |b: &mut GraphBuilder, name: &str, x: NodeId, out, k, s| {
        let c = b
            .add(format!("{name}.conv"), conv(out, k, s), &[x])
            .unwrap();
        b.add(format!("{name}.bn"), Op::BatchNorm { eps: 1e-5 }, &[c])
            .unwrap()
    };
    let s = conv_bn(&mut b, "stem", 0, 16, 3, 1);
    let mut x = b.add("stem.relu", Op::Relu, &[s]).unwrap();
    let mut cin = 16;
    for (stage, cout) in [16usize, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let n = format!("s{stage}b{block}");
            let a = conv_bn(&mut b, &format!("{n}.a"), x, cout, 3, stride);
            let a = b.add(format!("{n}.a.relu"), Op::Relu, &[a]).unwrap();
            let c = conv_bn(&mut b, &format!("{n}.b"), a, cout, 3, 1);
            let short = if stride != 1 || cin != cout {
                conv_bn(&mut b, &format!("{n}.short"), x, cout, 1, stride)
            } else {
                x
            };
            let sum = b.add(format!("{n}.add"), Op::Add, &[c, short]).unwrap();
            x = b.add(format!("{n}.relu"), Op::Relu, &[sum]).unwrap();
            cin = cout;
        }
    }
    let g = b.add("gap", Op::GlobalAvgPool, &[x]).unwrap();
    let f = b.add("flatten", Op::Flatten, &[g]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 10,
            bias: true,
        },
        &[f],
    )
    .unwrap();
    b.finish()
}

fn images(shape: Shape, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n * shape.numel())
        .map(|_| rng.random::<f32>())
        .collect()
}

fn bench_inference(c: &mut Criterion) {
    let shape = Shape::new(1, 28, 28);
    let g = resnet20(shape);
    let w = Weights::random(&g, 1);
    let q = quant::quantize(&g, &w, Datapath::INT8, &images(shape, 16, 2)).unwrap();
    let mut group = c.benchmark_group("resnet20_1x28x28_int8");
    group.sample_size(10);
    for batch in [1usize, 128] {
        let imgs = images(shape, batch, 3);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("fast/batch{batch}"), |b| {
            b.iter(|| FastEngine.run(&q, &imgs, 0, None).unwrap())
        });
    }
    let one = images(shape, 1, 4);
    group.throughput(Throughput::Elements(1));
    group.bench_function("reference/batch1", |b| {
        b.iter(|| ReferenceEngine.run(&q, &one, 0, None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_inference);
criterion_main!(benches);
