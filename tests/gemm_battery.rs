//! The shared kernel test battery: every GEMM kernel available on this CPU,
//! single- and multi-threaded, with A packed per call and pre-packed once
//! ([`PackedA`]), against a naive i64 triple loop wrapped to i32; and every
//! depthwise plane kernel against a naive direct convolution.

use ftnas::engine::depthwise::{depthwise_plane_with, DepthwiseScratch, PlaneGeometry};
use ftnas::engine::gemm::{
    gemm_i16, gemm_i16_with, gemm_i8, gemm_i8_with, gemm_packed_i16, gemm_packed_i8, kernels,
    Kernel, PackedA, Parallelism,
};
use proptest::collection::vec;
use proptest::prelude::*;

const MODES: [Parallelism; 3] = [
    Parallelism::Sequential,
    Parallelism::Parallel,
    Parallelism::Auto,
];

fn naive<T: Copy + Into<i64>>(m: usize, n: usize, k: usize, a: &[T], b: &[T]) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: i64 = (0..k)
                .map(|p| a[i * k + p].into() * b[p * n + j].into())
                .sum();
            // Wrapping to i32 is exactly the mod-2^32 accumulator semantics.
            c[i * n + j] = s as i32;
        }
    }
    c
}

/// Runs every kernel in every threading mode and compares with `expected`.
fn check_i8(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], expected: &[i32]) {
    for kernel in kernels() {
        for mode in MODES {
            // Pre-fill with garbage: kernels must overwrite, not accumulate.
            let mut c = vec![0x3C3C_3C3Ci32; m * n];
            gemm_i8_with(kernel, mode, m, n, k, a, b, &mut c);
            assert!(
                c == expected,
                "i8 kernel {kernel} {mode:?} differs from naive for m={m} n={n} k={k}"
            );
        }
        let packed = PackedA::new_i8(kernel, m, k, a);
        assert_eq!((packed.kernel(), packed.m(), packed.k()), (kernel, m, k));
        for mode in MODES {
            let mut c = vec![0x3C3C_3C3Ci32; m * n];
            gemm_packed_i8(mode, &packed, n, b, &mut c);
            assert!(
                c == expected,
                "i8 kernel {kernel} {mode:?} with pre-packed A differs for m={m} n={n} k={k}"
            );
        }
    }
}

fn check_i16(m: usize, n: usize, k: usize, a: &[i16], b: &[i16], expected: &[i32]) {
    for kernel in kernels() {
        for mode in MODES {
            let mut c = vec![0x3C3C_3C3Ci32; m * n];
            gemm_i16_with(kernel, mode, m, n, k, a, b, &mut c);
            assert!(
                c == expected,
                "i16 kernel {kernel} {mode:?} differs from naive for m={m} n={n} k={k}"
            );
        }
        let packed = PackedA::new_i16(kernel, m, k, a);
        for mode in MODES {
            let mut c = vec![0x3C3C_3C3Ci32; m * n];
            gemm_packed_i16(mode, &packed, n, b, &mut c);
            assert!(
                c == expected,
                "i16 kernel {kernel} {mode:?} with pre-packed A differs for m={m} n={n} k={k}"
            );
        }
    }
}

/// Naive depthwise plane: direct loop with bounds tests, i64 sums wrapped.
fn naive_depthwise(g: &PlaneGeometry, input: &[i32], w: &[i32]) -> Vec<i32> {
    let (kh, kw) = g.kernel;
    let mut out = vec![0i32; g.out_h * g.out_w];
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let mut s = 0i64;
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                    let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w {
                        // i32 x i32 products of the wide case can overflow
                        // an i64 sum; only the value mod 2^32 matters
                        s = s.wrapping_add(
                            input[iy as usize * g.in_w + ix as usize] as i64
                                * w[ky * kw + kx] as i64,
                        );
                    }
                }
            }
            out[oy * g.out_w + ox] = s as i32;
        }
    }
    out
}

/// Every depthwise kernel, twice with one scratch (reuse must not leak
/// stale values), against the naive loop.
fn check_depthwise(g: &PlaneGeometry, input: &[i32], w: &[i32]) {
    let want = naive_depthwise(g, input, w);
    let mut scratch = DepthwiseScratch::default();
    for kernel in kernels() {
        for _ in 0..2 {
            let mut out = vec![0x3C3C_3C3Ci32; want.len()];
            depthwise_plane_with(kernel, g, input, w, &mut out, &mut scratch);
            assert!(
                out == want,
                "depthwise kernel {kernel} differs from naive for {g:?}"
            );
        }
    }
}

fn i8_value() -> impl Strategy<Value = i8> {
    prop_oneof![1 => Just(i8::MIN), 1 => Just(i8::MAX), 4 => any::<i8>()]
}

fn i16_value() -> impl Strategy<Value = i16> {
    prop_oneof![1 => Just(i16::MIN), 1 => Just(i16::MAX), 4 => any::<i16>()]
}

/// Deterministic pseudo-random operands for the larger fixed shapes.
fn fill_i8(len: usize, seed: u64) -> Vec<i8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 16 {
                0 => i8::MIN,
                1 => i8::MAX,
                _ => (s >> 24) as i8,
            }
        })
        .collect()
}

fn fill_i16(len: usize, seed: u64) -> Vec<i16> {
    let hi = fill_i8(len, seed);
    let lo = fill_i8(len, seed ^ 0xABCD);
    hi.iter()
        .zip(&lo)
        .map(|(&h, &l)| i16::from_be_bytes([h as u8, l as u8]))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn i8_random_shapes_match_naive(
        (m, n, k, a, b) in (1usize..80, 1usize..80, 1usize..80).prop_flat_map(|(m, n, k)| {
            (Just(m), Just(n), Just(k), vec(i8_value(), m * k), vec(i8_value(), k * n))
        })
    ) {
        check_i8(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
    }

    #[test]
    fn i16_random_shapes_match_naive(
        (m, n, k, a, b) in (1usize..80, 1usize..80, 1usize..80).prop_flat_map(|(m, n, k)| {
            (Just(m), Just(n), Just(k), vec(i16_value(), m * k), vec(i16_value(), k * n))
        })
    ) {
        check_i16(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn depthwise_random_geometries_match_naive(
        (h, w) in (1usize..=20, 1usize..=20),
        kernel in (1usize..=5, 1usize..=5),
        stride in (1usize..=3, 1usize..=3),
        padding in (0usize..=2, 0usize..=2),
        dilation in (1usize..=2, 1usize..=2),
        seed in any::<u64>(),
        wide in any::<bool>(),
    ) {
        let Some(g) = PlaneGeometry::new((h, w), kernel, stride, padding, dilation) else {
            return Ok(());
        };
        // 16-bit codes (the widest datapath) or full i32 (wrapping products)
        let values = |len: usize, salt: u64| -> Vec<i32> {
            let raw = fill_i16(2 * len, seed ^ salt);
            raw.chunks(2)
                .map(|p| if wide { (p[0] as i32) << 16 | (p[1] as u16 as i32) } else { p[0] as i32 })
                .collect()
        };
        check_depthwise(&g, &values(h * w, 1), &values(kernel.0 * kernel.1, 2));
    }
}

#[test]
fn depthwise_mobilenet_shapes_match_naive() {
    for (h, stride) in [(28, 1), (28, 2), (14, 1), (14, 2), (7, 1), (4, 1), (2, 2)] {
        let g = PlaneGeometry::new((h, h), (3, 3), (stride, stride), (1, 1), (1, 1)).unwrap();
        let input: Vec<i32> = fill_i8(h * h, h as u64).iter().map(|&v| v as i32).collect();
        let w: Vec<i32> = fill_i8(9, 7).iter().map(|&v| v as i32).collect();
        check_depthwise(&g, &input, &w);
    }
}

#[test]
fn i8_larger_shapes_match_naive() {
    // 64x300x577: odd k; 97x1029x1537: several k blocks for every family
    // and ragged tiles on both sides; 256x576x1024-like conv is covered by
    // the bench shapes 16x144x784 and 64x576x49 here.
    for (seed, &(m, n, k)) in [
        (64, 300, 577),
        (97, 1029, 1537),
        (16, 784, 144),
        (64, 49, 576),
    ]
    .iter()
    .enumerate()
    {
        let a = fill_i8(m * k, 2 * seed as u64 + 1);
        let b = fill_i8(k * n, 2 * seed as u64 + 2);
        check_i8(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
    }
}

#[test]
fn i16_larger_shapes_match_naive() {
    for (seed, &(m, n, k)) in [(64, 300, 577), (33, 517, 1601)].iter().enumerate() {
        let a = fill_i16(m * k, 2 * seed as u64 + 11);
        let b = fill_i16(k * n, 2 * seed as u64 + 12);
        check_i16(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
    }
}

#[test]
fn degenerate_dimensions_match_naive() {
    let shapes = [
        (1, 1, 1),
        (1, 1, 1000),
        (1, 1000, 1),
        (1000, 1, 1),
        (1, 77, 33),
        (77, 1, 33),
        (33, 77, 1),
        (5, 3, 2),
        (7, 17, 3),
    ];
    for (seed, &(m, n, k)) in shapes.iter().enumerate() {
        let a = fill_i8(m * k, 100 + seed as u64);
        let b = fill_i8(k * n, 200 + seed as u64);
        check_i8(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
        let a = fill_i16(m * k, 300 + seed as u64);
        let b = fill_i16(k * n, 400 + seed as u64);
        check_i16(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
    }
}

#[test]
fn all_minimum_i8_values() {
    // (-128)^2 = 16384 per product: the largest magnitude an i8 GEMM sees.
    for &(m, n, k) in &[(1, 1, 1), (9, 33, 5), (13, 70, 577)] {
        let a = vec![i8::MIN; m * k];
        let b = vec![i8::MIN; k * n];
        let expected = vec![16384 * k as i32; m * n];
        assert_eq!(naive(m, n, k, &a, &b), expected);
        check_i8(m, n, k, &a, &b, &expected);
        // Mixed extremes: -128 * 127 per product.
        let b = vec![i8::MAX; k * n];
        check_i8(m, n, k, &a, &b, &vec![-16256 * k as i32; m * n]);
    }
}

#[test]
fn i16_products_wrap_mod_2_pow_32() {
    // -32768 * -32768 + -32768 * -32768 = 2^31: one pair already overflows
    // i32 (vpmaddwd's single wrapping case) and must wrap to i32::MIN; four
    // products sum to 2^32 = 0 mod 2^32.
    for (k, expected) in [
        (1, 1 << 30),
        (2, i32::MIN),
        (3, i32::MIN + (1 << 30)),
        (4, 0),
    ] {
        for &(m, n) in &[(1, 1), (7, 19), (13, 40)] {
            let a = vec![i16::MIN; m * k];
            let b = vec![i16::MIN; k * n];
            let expected = vec![expected; m * n];
            assert_eq!(naive(m, n, k, &a, &b), expected);
            check_i16(m, n, k, &a, &b, &expected);
        }
    }
    // Accumulated wrap over many products of 32767 * 32767.
    let (m, n, k) = (6, 18, 1001);
    let a = vec![i16::MAX; m * k];
    let b = vec![i16::MAX; k * n];
    check_i16(m, n, k, &a, &b, &naive(m, n, k, &a, &b));
}

#[test]
fn threaded_and_single_threaded_results_are_identical() {
    let (m, n, k) = (130, 700, 300);
    let a = fill_i8(m * k, 77);
    let b = fill_i8(k * n, 78);
    for kernel in kernels() {
        let mut single = vec![0; m * n];
        let mut threaded = vec![1; m * n];
        gemm_i8_with(
            kernel,
            Parallelism::Sequential,
            m,
            n,
            k,
            &a,
            &b,
            &mut single,
        );
        gemm_i8_with(
            kernel,
            Parallelism::Parallel,
            m,
            n,
            k,
            &a,
            &b,
            &mut threaded,
        );
        assert_eq!(single, threaded, "kernel {kernel}");
    }
}

#[test]
fn default_entry_points_agree_with_every_kernel() {
    let (m, n, k) = (40, 130, 200);
    let a = fill_i8(m * k, 5);
    let b = fill_i8(k * n, 6);
    let mut c = vec![0; m * n];
    gemm_i8(m, n, k, &a, &b, &mut c);
    assert_eq!(c, naive(m, n, k, &a, &b));
    let a = fill_i16(m * k, 7);
    let b = fill_i16(k * n, 8);
    gemm_i16(m, n, k, &a, &b, &mut c);
    assert_eq!(c, naive(m, n, k, &a, &b));
}

#[test]
fn kernel_listing_is_consistent() {
    let available = kernels();
    assert_eq!(available.first(), Some(&Kernel::Portable));
    for kernel in Kernel::ALL {
        assert_eq!(available.contains(&kernel), kernel.is_available());
    }
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        Kernel::Avx2.is_available(),
        std::arch::is_x86_feature_detected!("avx2")
    );
}

#[test]
fn unavailable_kernels_are_refused() {
    // On a CPU that runs every kernel there is nothing to refuse.
    for kernel in Kernel::ALL.into_iter().filter(|k| !k.is_available()) {
        let refused = std::panic::catch_unwind(|| {
            let mut c = [0; 1];
            gemm_i8_with(kernel, Parallelism::Sequential, 1, 1, 1, &[1], &[1], &mut c);
        });
        assert!(refused.is_err(), "kernel {kernel} ran although unavailable");
    }
}
