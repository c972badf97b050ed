//! Sixteen-lane dot products of a stationary code sequence with a stream
//! operand held as i16 pairs of consecutive rows: the inner loop of
//! rebuilding, output by output, the partial sums of a WS/IS PE column with
//! stuck `psum_reg` bits ([`super::engine_stuck`]).
//!
//! Such an output is `sum_k y[k] * s[k][t]` over a stretch of reduction
//! indices, for 16 streamed indices `t` at a time, with the accumulators in
//! registers for the whole reduction. Taking the reduction two rows at a
//! time, `y[2j] * s[2j][t] + y[2j+1] * s[2j+1][t]` is one `vpmaddwd` lane
//! when `s` is stored as interleaved i16 pairs ([`PairedRows`]) and the two
//! `y` codes are broadcast as one i32 ([`pack`]); the products of 8-bit
//! codes and their pairwise sums fit i16 and i32, so this is exact, and the
//! accumulation wraps mod 2^32 like the engine's.
//!
//! As in the engine's GEMM: a portable reference kernel beside AVX2
//! (`vpmaddwd`) and AVX-512 VNNI (`vpdpwssd`) ones, the best picked at run
//! time, and one test battery over every kernel the CPU runs.

/// Streamed indices per kernel call.
pub(crate) const LANES: usize = 16;

/// `acc[l] += sum_j lo(ys[j]) * pairs[j*stride + 2l] + hi(ys[j]) *
/// pairs[j*stride + 2l + 1]`, `lo`/`hi` the i16 halves of `ys[j]`.
pub(crate) type MaddPairs = fn(&mut [i32; LANES], &[i32], &[i16], usize);

/// Two 8-bit codes as the i32 a kernel broadcasts: `lo` multiplies the
/// even row of a pair, `hi` the odd one.
#[inline(always)]
pub(crate) fn pack(lo: i8, hi: i8) -> i32 {
    (u32::from(lo as i16 as u16) | (u32::from(hi as i16 as u16) << 16)) as i32
}

/// A stream operand of `K` rows of `T` i8 codes, as i16 pairs of rows
/// `(2j, 2j+1)`: `pairs[(j * t_pad + t) * 2 + h] = s[2j + h][t]`, with `T`
/// padded to a multiple of [`LANES`] and an odd `K` to even, by zeros.
pub(crate) struct PairedRows {
    pairs: Vec<i16>,
    t_pad: usize,
}

impl PairedRows {
    pub(crate) fn new<'a>(k_len: usize, t_len: usize, row: impl Fn(usize) -> &'a [i8]) -> Self {
        let t_pad = t_len.div_ceil(LANES) * LANES;
        let mut pairs = vec![0i16; k_len.div_ceil(2) * t_pad * 2];
        for k in 0..k_len {
            let (j, h) = (k / 2, k % 2);
            let dst = &mut pairs[j * t_pad * 2..(j + 1) * t_pad * 2];
            for (t, &v) in row(k)[..t_len].iter().enumerate() {
                dst[2 * t + h] = i16::from(v);
            }
        }
        PairedRows { pairs, t_pad }
    }

    /// Distance between consecutive pairs in [`PairedRows::from`]'s slice.
    pub(crate) fn stride(&self) -> usize {
        2 * self.t_pad
    }

    /// The pairs from pair `j` on, at streamed index `t0` (a multiple of
    /// [`LANES`] below `T`).
    pub(crate) fn from(&self, j: usize, t0: usize) -> &[i16] {
        &self.pairs[j * self.stride() + 2 * t0..]
    }
}

/// The reference kernel.
pub(crate) fn madd_pairs_portable(
    acc: &mut [i32; LANES],
    ys: &[i32],
    pairs: &[i16],
    stride: usize,
) {
    for (j, &y) in ys.iter().enumerate() {
        let (lo, hi) = (i32::from(y as i16), i32::from((y >> 16) as i16));
        let row = &pairs[j * stride..j * stride + 2 * LANES];
        for (a, p) in acc.iter_mut().zip(row.chunks_exact(2)) {
            *a = a.wrapping_add(i32::from(p[0]) * lo + i32::from(p[1]) * hi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::LANES;

    fn check(ys: &[i32], pairs: &[i16], stride: usize) {
        assert!(ys.is_empty() || (ys.len() - 1) * stride + 2 * LANES <= pairs.len());
    }

    #[target_feature(enable = "avx2")]
    fn avx2(acc: &mut [i32; LANES], ys: &[i32], pairs: &[i16], stride: usize) {
        check(ys, pairs, stride);
        let out = acc.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `acc` holds 16 i32, two unaligned 256-bit vectors.
        let (mut a0, mut a1) = unsafe { (_mm256_loadu_si256(out), _mm256_loadu_si256(out.add(1))) };
        for (j, &y) in ys.iter().enumerate() {
            let b = _mm256_set1_epi32(y);
            // SAFETY: 32 i16 from j*stride are inside `pairs` (checked).
            let (v0, v1) = unsafe {
                let p = pairs.as_ptr().add(j * stride).cast::<__m256i>();
                (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
            };
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(v0, b));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(v1, b));
        }
        // SAFETY: as for the loads.
        unsafe {
            _mm256_storeu_si256(out, a0);
            _mm256_storeu_si256(out.add(1), a1);
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn avx512_vnni(acc: &mut [i32; LANES], ys: &[i32], pairs: &[i16], stride: usize) {
        check(ys, pairs, stride);
        let out = acc.as_mut_ptr().cast::<__m512i>();
        // SAFETY: `acc` is 16 i32, one unaligned 512-bit vector.
        let mut a = unsafe { _mm512_loadu_si512(out) };
        for (j, &y) in ys.iter().enumerate() {
            // SAFETY: 32 i16 from j*stride are inside `pairs` (checked).
            let v = unsafe { _mm512_loadu_si512(pairs.as_ptr().add(j * stride).cast()) };
            a = _mm512_dpwssd_epi32(a, v, _mm512_set1_epi32(y));
        }
        // SAFETY: as for the load.
        unsafe { _mm512_storeu_si512(out, a) };
    }

    pub(super) fn avx2_safe(acc: &mut [i32; LANES], ys: &[i32], pairs: &[i16], stride: usize) {
        // SAFETY: only handed out by `kernels()` when the CPU has AVX2.
        unsafe { avx2(acc, ys, pairs, stride) }
    }

    pub(super) fn avx512_vnni_safe(
        acc: &mut [i32; LANES],
        ys: &[i32],
        pairs: &[i16],
        stride: usize,
    ) {
        // SAFETY: only handed out by `kernels()` when the CPU has these.
        unsafe { avx512_vnni(acc, ys, pairs, stride) }
    }

    pub(super) fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2")
    }

    pub(super) fn has_avx512_vnni() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
}

/// Every kernel this CPU runs, best last.
pub(crate) fn kernels() -> Vec<(&'static str, MaddPairs)> {
    let mut out: Vec<(&'static str, MaddPairs)> = vec![("portable", madd_pairs_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx2() {
            out.push(("avx2", x86::avx2_safe));
        }
        if x86::has_avx512_vnni() {
            out.push(("avx512vnni", x86::avx512_vnni_safe));
        }
    }
    out
}

/// The fastest kernel this CPU runs (chosen once per process).
pub(crate) fn best() -> MaddPairs {
    static BEST: std::sync::OnceLock<MaddPairs> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| kernels().last().expect("the portable kernel").1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Every kernel equals the plain sum over rows, for random codes
    /// including -128, odd `K`, `T` not a multiple of the lanes, partial
    /// pair ranges and accumulators that wrap.
    #[test]
    fn every_kernel_equals_the_plain_sum() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for case in 0..200 {
            let (k_len, t_len) = (rng.random_range(1..40), rng.random_range(1..70));
            let s: Vec<i8> = (0..k_len * t_len)
                .map(|i| if i % 13 == 0 { -128 } else { rng.random() })
                .collect();
            let y: Vec<i8> = (0..k_len).map(|_| rng.random()).collect();
            let rows = PairedRows::new(k_len, t_len, |k| &s[k * t_len..(k + 1) * t_len]);
            let ys: Vec<i32> = (0..k_len.div_ceil(2))
                .map(|j| pack(y[2 * j], y.get(2 * j + 1).copied().unwrap_or(0)))
                .collect();
            let j0 = rng.random_range(0..ys.len());
            let j1 = rng.random_range(j0..=ys.len());
            let start = if case % 5 == 0 {
                i32::MAX - 1000
            } else {
                rng.random()
            };
            for t0 in (0..t_len).step_by(LANES) {
                let mut want = [start; LANES];
                for (l, v) in want.iter_mut().enumerate() {
                    for k in 2 * j0..(2 * j1).min(k_len) {
                        if t0 + l < t_len {
                            let p = i32::from(y[k]) * i32::from(s[k * t_len + t0 + l]);
                            *v = v.wrapping_add(p);
                        }
                    }
                }
                for (name, kernel) in kernels() {
                    let mut got = [start; LANES];
                    kernel(&mut got, &ys[j0..j1], rows.from(j0, t0), rows.stride());
                    assert_eq!(got, want, "{name}, case {case}, t0 {t0}");
                }
            }
        }
    }

    #[test]
    fn pack_puts_the_even_row_low() {
        let v = pack(-3, 5);
        assert_eq!((v as i16, (v >> 16) as i16), (-3, 5));
        assert_eq!(pack(-128, -128), 0xff80_ff80u32 as i32);
    }
}
