//! The AVX-512 VNNI kernel family (i8 only), built on `vpdpbusd`.
//!
//! `vpdpbusd` adds, per i32 lane, the sum of four `u8 x i8` products. One
//! operand must therefore be unsigned: A is packed as `a + 128` (flipping
//! the sign bit turns an i8 into that u8), which adds `128 * sum_p b[p][j]`
//! to every element of column j. The B packer computes these column sums
//! and hands the micro-kernel `-128 * colsum` as the accumulators' start
//! value, so the correction costs nothing in the inner loop. All of it is
//! exact mod 2^32: `vpdpbusd` (unlike `vpdpbusds`) wraps.
//!
//! Layouts (k is taken in groups of four, zero-padded):
//! - A panel, per group: for each of 8 rows, the 4 bytes `a'[r][p..p+4]`.
//! - B panel, per group: for each of 32 columns, the 4 bytes
//!   `b[p..p+4][j]`, i.e. exactly one i32 lane per column.
//!
//! The reference packers use only SSE2 (baseline on x86_64), so the layout
//! and the correction are unit-tested on any x86_64 machine through an
//! emulated micro-kernel. On VNNI hardware, full 32-column B panels go
//! through `pack_b_full` (same layout, column sums by `vpdpbusd`), which
//! like `kernel_8x32` is covered by `tests/gemm_battery.rs` there.

use std::arch::x86_64::*;

use super::driver::Family;

/// Marker type of the AVX-512 VNNI family.
pub(crate) struct Avx512Vnni;

const MR: usize = 8;
const NR: usize = 32;
/// Bytes per packed k-group of an A panel.
const A_GROUP: usize = 4 * MR;
/// Bytes per packed k-group of a B panel.
const B_GROUP: usize = 4 * NR;

/// Whether this CPU can run the VNNI family.
pub(crate) fn is_available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Packs an A panel as `a + 128` bytes (see module docs).
fn pack_a(a: &[i8], lda: usize, rows: usize, k0: usize, k1: usize, out: &mut [u8]) {
    let slots = out.len() / A_GROUP * 4;
    for r in 0..MR {
        let row: &[i8] = if r < rows {
            &a[r * lda + k0..r * lda + k1]
        } else {
            &[]
        };
        for (q, &v) in row.iter().enumerate() {
            out[(q / 4) * A_GROUP + 4 * r + q % 4] = (v as u8) ^ 0x80;
        }
        // Padding is a zero code (0x80 after the shift); it meets zero B
        // padding, so it adds nothing. The workspace holds stale data.
        for q in row.len()..slots {
            out[(q / 4) * A_GROUP + 4 * r + q % 4] = 0x80;
        }
    }
}

/// Packs a B panel (column-quads of bytes) and writes `-128 * colsum`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "sse2")]
fn pack_b(
    b: &[i8],
    ldb: usize,
    j0: usize,
    cols: usize,
    k0: usize,
    k1: usize,
    out: &mut [u8],
    init: &mut [i32],
) {
    let mut colsum = [0i32; NR];
    for p in k0..k1 {
        let row = &b[p * ldb + j0..p * ldb + j0 + cols];
        for (s, &v) in colsum.iter_mut().zip(row) {
            *s += v as i32;
        }
    }
    for (dst, s) in init.iter_mut().zip(colsum) {
        *dst = s.wrapping_mul(-128);
    }
    for (g, group) in out.chunks_exact_mut(B_GROUP).enumerate() {
        let p = k0 + 4 * g;
        if cols == NR {
            for half in 0..2 {
                let col = j0 + 16 * half;
                let row = |q: usize| {
                    if q < k1 {
                        let src = &b[q * ldb + col..q * ldb + col + 16];
                        // SAFETY: `src` holds 16 bytes.
                        unsafe { _mm_loadu_si128(src.as_ptr().cast()) }
                    } else {
                        _mm_setzero_si128()
                    }
                };
                let (x0, x1, x2, x3) = (row(p), row(p + 1), row(p + 2), row(p + 3));
                let t0 = _mm_unpacklo_epi8(x0, x1);
                let t1 = _mm_unpackhi_epi8(x0, x1);
                let u0 = _mm_unpacklo_epi8(x2, x3);
                let u1 = _mm_unpackhi_epi8(x2, x3);
                let dst = &mut group[64 * half..64 * half + 64];
                let quads = [
                    _mm_unpacklo_epi16(t0, u0),
                    _mm_unpackhi_epi16(t0, u0),
                    _mm_unpacklo_epi16(t1, u1),
                    _mm_unpackhi_epi16(t1, u1),
                ];
                for (chunk, v) in dst.chunks_exact_mut(16).zip(quads) {
                    // SAFETY: `chunk` holds 16 bytes.
                    unsafe { _mm_storeu_si128(chunk.as_mut_ptr().cast(), v) };
                }
            }
        } else {
            for j in 0..NR {
                for q in 0..4 {
                    group[4 * j + q] = if j < cols && p + q < k1 {
                        b[(p + q) * ldb + j0 + j] as u8
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// [`pack_b`] for a full 32-column panel on VNNI hardware: the same
/// interleave, with the column sums taken from the packed quads by
/// `vpdpbusd` against ones (one instruction per four columns and k-quad)
/// instead of a second pass over B. The layout is checked against the
/// portable packer by the test battery on VNNI machines.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn pack_b_full(
    b: &[i8],
    ldb: usize,
    j0: usize,
    k0: usize,
    k1: usize,
    out: &mut [u8],
    init: &mut [i32],
) {
    assert!(k1 > k0 && (k1 - 1) * ldb + j0 + NR <= b.len());
    assert!(out.len().is_multiple_of(B_GROUP) && out.len() / B_GROUP * 4 >= k1 - k0);
    assert!(init.len() >= NR);
    let ones = _mm_set1_epi8(1);
    let mut sums = [_mm_setzero_si128(); NR / 4];
    let src = b.as_ptr();
    for (g, group) in out.chunks_exact_mut(B_GROUP).enumerate() {
        let p = k0 + 4 * g;
        for half in 0..2 {
            let col = j0 + 16 * half;
            let row = |q: usize| {
                if q < k1 {
                    // SAFETY: q < k1, so 16 bytes at q*ldb + col are inside
                    // b (asserted above).
                    unsafe { _mm_loadu_si128(src.add(q * ldb + col).cast()) }
                } else {
                    _mm_setzero_si128()
                }
            };
            let (x0, x1, x2, x3) = (row(p), row(p + 1), row(p + 2), row(p + 3));
            let t0 = _mm_unpacklo_epi8(x0, x1);
            let t1 = _mm_unpackhi_epi8(x0, x1);
            let u0 = _mm_unpacklo_epi8(x2, x3);
            let u1 = _mm_unpackhi_epi8(x2, x3);
            let quads = [
                _mm_unpacklo_epi16(t0, u0),
                _mm_unpackhi_epi16(t0, u0),
                _mm_unpacklo_epi16(t1, u1),
                _mm_unpackhi_epi16(t1, u1),
            ];
            for (i, v) in quads.into_iter().enumerate() {
                // SAFETY: the group holds B_GROUP = 128 bytes; this writes
                // bytes 64*half + 16*i .. +16.
                unsafe { _mm_storeu_si128(group.as_mut_ptr().add(64 * half + 16 * i).cast(), v) };
                let s = &mut sums[4 * half + i];
                *s = _mm_dpbusd_epi32(*s, ones, v);
            }
        }
    }
    let minus_128 = _mm_set1_epi32(-128);
    for (i, s) in sums.into_iter().enumerate() {
        // SAFETY: init holds NR = 32 values; this writes 4*i .. 4*i + 4.
        unsafe {
            _mm_storeu_si128(
                init.as_mut_ptr().add(4 * i).cast(),
                _mm_mullo_epi32(s, minus_128),
            )
        };
    }
}

impl Family<i8> for Avx512Vnni {
    const MR: usize = MR;
    const NR: usize = NR;
    const KG: usize = 4;
    const KC: usize = 1024;
    const MC: usize = 8 * MR;
    const NC: usize = 8 * NR;
    type Elem = u8;

    unsafe fn pack_a(a: &[i8], lda: usize, rows: usize, k0: usize, k1: usize, out: &mut [u8]) {
        pack_a(a, lda, rows, k0, k1, out);
    }

    unsafe fn pack_b(
        b: &[i8],
        ldb: usize,
        j0: usize,
        cols: usize,
        k0: usize,
        k1: usize,
        out: &mut [u8],
        init: &mut [i32],
    ) {
        if cols == NR {
            // SAFETY: the caller checked this family's features.
            unsafe { pack_b_full(b, ldb, j0, k0, k1, out, init) };
            return;
        }
        // SAFETY: SSE2 is baseline on x86_64.
        unsafe { pack_b(b, ldb, j0, cols, k0, k1, out, init) };
    }

    unsafe fn kernel(
        groups: usize,
        a: &[u8],
        b: &[u8],
        init: &[i32],
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        assert!(a.len() >= groups * A_GROUP && b.len() >= groups * B_GROUP && init.len() >= NR);
        // SAFETY: lengths checked above; C validity and VNNI availability
        // guaranteed by the caller.
        unsafe {
            kernel_8x32(
                groups,
                a.as_ptr(),
                b.as_ptr(),
                init.as_ptr(),
                c,
                ldc,
                accumulate,
            )
        }
    }
}

/// The 8 x 32 micro-kernel: 16 zmm accumulators, 2 B loads and 8 A
/// broadcasts per k-quad.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel_8x32(
    groups: usize,
    a: *const u8,
    b: *const u8,
    init: *const i32,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY (whole body): the caller guarantees `groups` packed groups in
    // `a` and `b`, NR values in `init` and an MR x NR tile at `c`.
    unsafe {
        let init0 = _mm512_loadu_si512(init.cast());
        let init1 = _mm512_loadu_si512(init.add(16).cast());
        let mut lo = [init0; MR];
        let mut hi = [init1; MR];
        for g in 0..groups {
            let bp = b.add(g * B_GROUP);
            let b0 = _mm512_loadu_si512(bp.cast());
            let b1 = _mm512_loadu_si512(bp.add(64).cast());
            let ap = a.add(g * A_GROUP);
            for r in 0..MR {
                let quad = ap.add(4 * r).cast::<i32>().read_unaligned();
                let av = _mm512_set1_epi32(quad);
                lo[r] = _mm512_dpbusd_epi32(lo[r], av, b0);
                hi[r] = _mm512_dpbusd_epi32(hi[r], av, b1);
            }
        }
        for r in 0..MR {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (lo[r], hi[r]);
            if accumulate {
                v0 = _mm512_add_epi32(v0, _mm512_loadu_si512(row.cast()));
                v1 = _mm512_add_epi32(v1, _mm512_loadu_si512(row.add(16).cast()));
            }
            _mm512_storeu_si512(row.cast(), v0);
            _mm512_storeu_si512(row.add(16).cast(), v1);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Checks the VNNI packing layout and the `+128` correction on any
    //! x86_64 machine: the same packers feed a scalar emulation of
    //! `vpdpbusd` through the shared driver.
    use super::*;
    use crate::engine::gemm::driver::{run, AOperand::Raw};

    struct EmulatedVnni;

    impl Family<i8> for EmulatedVnni {
        const MR: usize = MR;
        const NR: usize = NR;
        const KG: usize = 4;
        // Small k blocks so the multi-block accumulate path is exercised.
        const KC: usize = 8;
        const MC: usize = 2 * MR;
        const NC: usize = 2 * NR;
        type Elem = u8;

        unsafe fn pack_a(a: &[i8], lda: usize, rows: usize, k0: usize, k1: usize, out: &mut [u8]) {
            pack_a(a, lda, rows, k0, k1, out);
        }

        unsafe fn pack_b(
            b: &[i8],
            ldb: usize,
            j0: usize,
            cols: usize,
            k0: usize,
            k1: usize,
            out: &mut [u8],
            init: &mut [i32],
        ) {
            // SAFETY: SSE2 is baseline on x86_64.
            unsafe { pack_b(b, ldb, j0, cols, k0, k1, out, init) };
        }

        unsafe fn kernel(
            groups: usize,
            a: &[u8],
            b: &[u8],
            init: &[i32],
            c: *mut i32,
            ldc: usize,
            accumulate: bool,
        ) {
            for r in 0..MR {
                for j in 0..NR {
                    let mut lane = init[j];
                    for g in 0..groups {
                        // vpdpbusd: one i32 lane = sum of 4 u8 x i8 products.
                        let dot: i32 = (0..4)
                            .map(|q| {
                                a[g * A_GROUP + 4 * r + q] as i32
                                    * b[g * B_GROUP + 4 * j + q] as i8 as i32
                            })
                            .sum();
                        lane = lane.wrapping_add(dot);
                    }
                    // SAFETY: the driver hands a full MR x NR tile.
                    unsafe {
                        let dst = c.add(r * ldc + j);
                        *dst = if accumulate {
                            dst.read().wrapping_add(lane)
                        } else {
                            lane
                        };
                    }
                }
            }
        }
    }

    fn naive(m: usize, n: usize, k: usize, a: &[i8], b: &[i8]) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as i64 * b[p * n + j] as i64)
                    .sum::<i64>() as i32;
            }
        }
        c
    }

    fn check(m: usize, n: usize, k: usize, seed: u64) {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 8 {
                0 => -128,
                1 => 127,
                _ => (state >> 8) as i8,
            }
        };
        let a: Vec<i8> = (0..m * k).map(|_| next()).collect();
        let b: Vec<i8> = (0..k * n).map(|_| next()).collect();
        for parallel in [false, true] {
            let mut c = vec![0x5555_5555i32; m * n];
            // SAFETY: the emulated family needs only SSE2 (baseline).
            unsafe { run::<i8, EmulatedVnni>(parallel, m, n, k, Raw(&a), &b, &mut c) };
            assert_eq!(
                c,
                naive(m, n, k, &a, &b),
                "m={m} n={n} k={k} parallel={parallel}"
            );
        }
    }

    #[test]
    fn emulated_vnni_matches_naive_on_ragged_shapes() {
        let shapes = [
            (1, 1, 1),
            (8, 32, 4),
            (9, 33, 5),
            (7, 31, 3),
            (16, 64, 8),
            (17, 65, 23),
            (3, 100, 37),
            (40, 70, 2),
        ];
        for (seed, &(m, n, k)) in shapes.iter().enumerate() {
            check(m, n, k, seed as u64 + 1);
        }
    }

    #[test]
    fn emulated_vnni_all_minimum_values() {
        let (m, n, k) = (9, 35, 13);
        let a = vec![-128i8; m * k];
        let b = vec![-128i8; k * n];
        let mut c = vec![0; m * n];
        // SAFETY: the emulated family needs only SSE2 (baseline).
        unsafe { run::<i8, EmulatedVnni>(false, m, n, k, Raw(&a), &b, &mut c) };
        assert!(c.iter().all(|&v| v == 16384 * 13));
    }
}
