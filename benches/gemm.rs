//! GEMM throughput of every kernel available on this CPU.
//!
//! Throughput is counted as `2*m*n*k` operations, so criterion's
//! "Gelem/s" reads directly as GOPS. Shapes: 256x576x1024 (a 3x3 conv with
//! 64 input channels on a 32x32 map, batched) on one thread and on the whole
//! rayon pool, plus two conv-layer shapes as the engine calls them per image
//! (single-threaded, since the engine parallelises over images):
//! 16x144x784 (16 3x3x16 filters on 28x28) and 64x576x49 (64 3x3x64 on 7x7).
//! The two conv shapes also run with the weights pre-packed once
//! (`gemm_i8_prepacked`, as the fast engine calls them), and the depthwise
//! plane kernels run on MobileNet-V2 planes (`depthwise`, 3x3, stride 1
//! and 2; "elem/s" counts multiply-adds).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ftnas::engine::depthwise::{depthwise_plane_with, DepthwiseScratch, PlaneGeometry};
use ftnas::engine::gemm::{
    gemm_i16_with, gemm_i8_with, gemm_packed_i8, kernels, PackedA, Parallelism,
};
use std::hint::black_box;
use std::time::Duration;

fn operands<T: From<i8>>(len: usize, seed: u32) -> Vec<T> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            T::from((s >> 8) as i8)
        })
        .collect()
}

fn bench_gemm(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    let cases = [
        (256, 576, 1024, Parallelism::Sequential, "1t".to_string()),
        (256, 576, 1024, Parallelism::Parallel, format!("{threads}t")),
        (16, 144, 784, Parallelism::Sequential, "1t".to_string()),
        (64, 576, 49, Parallelism::Sequential, "1t".to_string()),
    ];
    let mut group = c.benchmark_group("gemm_i8");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for kernel in kernels() {
        for (m, k, n, mode, label) in &cases {
            let (m, k, n) = (*m, *k, *n);
            let a: Vec<i8> = operands(m * k, 1);
            let b: Vec<i8> = operands(k * n, 2);
            let mut out = vec![0i32; m * n];
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            let id = BenchmarkId::new(kernel.name(), format!("{m}x{k}x{n}/{label}"));
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    gemm_i8_with(
                        kernel,
                        *mode,
                        m,
                        n,
                        k,
                        black_box(&a),
                        black_box(&b),
                        &mut out,
                    )
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("gemm_i16");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for kernel in kernels() {
        for (m, k, n, mode, label) in &cases[..2] {
            let (m, k, n) = (*m, *k, *n);
            let a: Vec<i16> = operands(m * k, 3);
            let b: Vec<i16> = operands(k * n, 4);
            let mut out = vec![0i32; m * n];
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            let id = BenchmarkId::new(kernel.name(), format!("{m}x{k}x{n}/{label}"));
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    gemm_i16_with(
                        kernel,
                        *mode,
                        m,
                        n,
                        k,
                        black_box(&a),
                        black_box(&b),
                        &mut out,
                    )
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("gemm_i8_prepacked");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for kernel in kernels() {
        for (m, k, n, mode, label) in &cases[2..] {
            let (m, k, n) = (*m, *k, *n);
            let a: Vec<i8> = operands(m * k, 1);
            let packed = PackedA::new_i8(kernel, m, k, &a);
            let b: Vec<i8> = operands(k * n, 2);
            let mut out = vec![0i32; m * n];
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            let id = BenchmarkId::new(kernel.name(), format!("{m}x{k}x{n}/{label}"));
            group.bench_function(id, |bench| {
                bench.iter(|| gemm_packed_i8(*mode, &packed, n, black_box(&b), &mut out))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("depthwise");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for kernel in kernels() {
        for (h, stride) in [(28, 1), (28, 2), (7, 1)] {
            let g = PlaneGeometry::new((h, h), (3, 3), (stride, stride), (1, 1), (1, 1)).unwrap();
            let input: Vec<i32> = operands::<i16>(h * h, 5)
                .into_iter()
                .map(i32::from)
                .collect();
            let w: Vec<i32> = operands::<i16>(9, 6).into_iter().map(i32::from).collect();
            let mut out = vec![0i32; g.out_h * g.out_w];
            let mut scratch = DepthwiseScratch::default();
            group.throughput(Throughput::Elements((9 * g.out_h * g.out_w) as u64));
            let id = BenchmarkId::new(kernel.name(), format!("{h}x{h}/stride{stride}"));
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    depthwise_plane_with(kernel, &g, black_box(&input), &w, &mut out, &mut scratch)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_gemm);
criterion_main!(benches);
