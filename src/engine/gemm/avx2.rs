//! The AVX2 kernel family, built on `vpmaddwd`.
//!
//! Both operands are widened to i16 and k is taken in pairs: a packed B
//! group holds, for each of 16 columns, the two i16 values `b[p][j],
//! b[p+1][j]`; the matching A pair of one row is broadcast as one i32, and
//! `vpmaddwd` yields `a0*b0 + a1*b1` per column as i32. The i16 x i16
//! products and their pairwise sum are exact mod 2^32 (the single overflow,
//! `(-32768)^2 * 2`, wraps to `i32::MIN` exactly as wrapping arithmetic
//! does), so the same micro-kernel serves i8 and i16 operands bit-exactly.
//! `vpmaddubsw` is deliberately not used: it saturates to i16.

use std::arch::x86_64::*;

use super::driver::{Code, Family};

/// Marker type of the AVX2 family.
pub(crate) struct Avx2;

const MR: usize = 6;
const NR: usize = 16;
/// i16 values per packed k-pair group of a B panel.
const B_GROUP: usize = 2 * NR;
/// i16 values per packed k-pair group of an A panel.
const A_GROUP: usize = 2 * MR;

/// Operand types the AVX2 packer can load eight of at once as i16.
pub(crate) trait Avx2Code: Code {
    /// Loads 8 consecutive values, widened to i16 lanes.
    ///
    /// # Safety
    /// SSE4.1 available; `p` valid for reading 8 values.
    unsafe fn load8(p: *const Self) -> __m128i;
}

impl Avx2Code for i8 {
    #[inline]
    #[target_feature(enable = "sse4.1")]
    unsafe fn load8(p: *const i8) -> __m128i {
        // SAFETY: the caller guarantees 8 readable bytes.
        _mm_cvtepi8_epi16(unsafe { _mm_loadl_epi64(p.cast()) })
    }
}

impl Avx2Code for i16 {
    #[inline]
    #[target_feature(enable = "sse4.1")]
    unsafe fn load8(p: *const i16) -> __m128i {
        // SAFETY: the caller guarantees 8 readable values.
        unsafe { _mm_loadu_si128(p.cast()) }
    }
}

/// Whether this CPU can run the AVX2 family.
pub(crate) fn is_available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("sse4.1")
}

impl<T: Avx2Code> Family<T> for Avx2 {
    const MR: usize = MR;
    const NR: usize = NR;
    const KG: usize = 2;
    const KC: usize = 768;
    const MC: usize = 16 * MR;
    const NC: usize = 8 * NR;
    type Elem = i16;

    unsafe fn pack_a(a: &[T], lda: usize, rows: usize, k0: usize, k1: usize, out: &mut [i16]) {
        // A is O(m*k) work per call against O(m*n*k) multiplies: scalar,
        // row by row (contiguous reads), is enough.
        let len = k1 - k0;
        for r in 0..MR {
            let row: &[T] = if r < rows {
                &a[r * lda + k0..r * lda + k1]
            } else {
                &[]
            };
            for (q, &v) in row.iter().enumerate() {
                out[(q / 2) * A_GROUP + 2 * r + q % 2] = v.to_i16();
            }
            // Zero the padding (rows past `rows`, odd k tail): the
            // workspace holds stale data.
            for q in row.len()..out.len() / A_GROUP * 2 {
                out[(q / 2) * A_GROUP + 2 * r + q % 2] = 0;
            }
        }
        debug_assert!(len.div_ceil(2) * A_GROUP == out.len());
    }

    unsafe fn pack_b(
        b: &[T],
        ldb: usize,
        j0: usize,
        cols: usize,
        k0: usize,
        k1: usize,
        out: &mut [i16],
        init: &mut [i32],
    ) {
        init.fill(0);
        if cols == NR {
            // SAFETY: AVX2 (and so SSE4.1) checked by the caller.
            unsafe { pack_b_full(b, ldb, j0, k0, k1, out) };
            return;
        }
        for (g, group) in out.chunks_exact_mut(B_GROUP).enumerate() {
            let p = k0 + 2 * g;
            for j in 0..NR {
                let at = |q: usize| {
                    if j < cols && q < k1 {
                        b[q * ldb + j0 + j].to_i16()
                    } else {
                        0
                    }
                };
                group[2 * j] = at(p);
                group[2 * j + 1] = at(p + 1);
            }
        }
    }

    unsafe fn kernel(
        groups: usize,
        a: &[i16],
        b: &[i16],
        init: &[i32],
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        assert!(a.len() >= groups * A_GROUP && b.len() >= groups * B_GROUP && init.len() >= NR);
        // SAFETY: lengths checked above; C validity guaranteed by the caller.
        unsafe {
            kernel_6x16(
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

/// Packs a full 16-column B panel: rows p, p+1 are interleaved as i16 pairs
/// with `punpck{l,h}wd`.
#[target_feature(enable = "avx2")]
unsafe fn pack_b_full<T: Avx2Code>(
    b: &[T],
    ldb: usize,
    j0: usize,
    k0: usize,
    k1: usize,
    out: &mut [i16],
) {
    for (g, group) in out.chunks_exact_mut(B_GROUP).enumerate() {
        let p = k0 + 2 * g;
        for half in 0..2 {
            let col = j0 + 8 * half;
            let row = |q: usize| {
                if q < k1 {
                    let start = q * ldb + col;
                    let src = &b[start..start + 8];
                    // SAFETY: `src` holds 8 values; SSE4.1 implied by AVX2.
                    unsafe { T::load8(src.as_ptr()) }
                } else {
                    _mm_setzero_si128()
                }
            };
            let (x, y) = (row(p), row(p + 1));
            let dst = &mut group[16 * half..16 * half + 16];
            // SAFETY: `dst` holds 16 i16 = two 128-bit stores.
            unsafe {
                _mm_storeu_si128(dst.as_mut_ptr().cast(), _mm_unpacklo_epi16(x, y));
                _mm_storeu_si128(dst.as_mut_ptr().add(8).cast(), _mm_unpackhi_epi16(x, y));
            }
        }
    }
}

/// The 6 x 16 micro-kernel: 12 ymm accumulators, 2 B loads and 6 A
/// broadcasts per k-pair.
#[target_feature(enable = "avx2")]
unsafe fn kernel_6x16(
    groups: usize,
    a: *const i16,
    b: *const i16,
    init: *const i32,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY (whole body): the caller guarantees `groups` packed groups in
    // `a` and `b`, NR values in `init` and an MR x NR tile at `c`.
    unsafe {
        let init0 = _mm256_loadu_si256(init.cast());
        let init1 = _mm256_loadu_si256(init.add(8).cast());
        let mut lo = [init0; MR];
        let mut hi = [init1; MR];
        for g in 0..groups {
            let bp = b.add(g * B_GROUP);
            let b0 = _mm256_loadu_si256(bp.cast());
            let b1 = _mm256_loadu_si256(bp.add(16).cast());
            let ap = a.add(g * A_GROUP);
            for r in 0..MR {
                let pair = ap.add(2 * r).cast::<i32>().read_unaligned();
                let av = _mm256_set1_epi32(pair);
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
            }
        }
        for r in 0..MR {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (lo[r], hi[r]);
            if accumulate {
                v0 = _mm256_add_epi32(v0, _mm256_loadu_si256(row.cast()));
                v1 = _mm256_add_epi32(v1, _mm256_loadu_si256(row.add(8).cast()));
            }
            _mm256_storeu_si256(row.cast(), v0);
            _mm256_storeu_si256(row.add(8).cast(), v1);
        }
    }
}
