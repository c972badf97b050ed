//! Per-element finishing loops of the fast engine, in i32 so they vectorise:
//! requantizing a row of raw wrapping GEMM sums (bias, accumulator wrap,
//! rounding shift, clamp to the output format merged with the activation)
//! and the two-input residual add.
//!
//! Each loop body is written once as plain Rust and compiled twice: as is
//! (the portable reference, SSE2 on x86_64) and inside an
//! `#[target_feature(enable = "avx2")]` wrapper so LLVM emits 8-lane AVX2
//! code; the AVX2 copy runs when the default GEMM kernel is not
//! `portable` (so `FTNAS_GEMM_KERNEL=portable` exercises the reference).
//!
//! Why i32 is exact (the reference computes in i64):
//! - `wrap(v + bias, psum_bits)` with `psum_bits <= 32` only depends on the
//!   sum mod 2^32, so a wrapping i32 add then a sign-extending shift pair
//!   gives the same value.
//! - `round_shift(t, s) = (t + 2^(s-1)) >> s` equals `(t >> s) + ((t >>
//!   (s-1)) & 1)` (write `t = q*2^s + r`): no overflow for any i32 `t`. For
//!   `s >= 32` it is 0 for every i32 `t`.
//! - The add rescales codes of at most 16 bits by at most 14 bits left, so
//!   every intermediate stays below 2^31 (callers check the condition).

use super::gemm::{default_kernel, Kernel};

/// Requantization of one output channel in `Wrap` mode: `clamp(round_shift(
/// wrap(raw + bias, psum_bits), shift), lo, hi)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WrapRequant {
    pub bias: i32,
    pub psum_bits: u8,
    pub shift: i32,
    pub lo: i32,
    pub hi: i32,
}

/// Whether to run the AVX2-compiled copies (decided once per process).
fn use_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *USE.get_or_init(|| default_kernel() != Kernel::Portable && Kernel::Avx2.is_available())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline(always)]
fn wrap_requant_body(src: &[i32], dst: &mut [i32], p: WrapRequant) {
    let sl = 32 - p.psum_bits.clamp(1, 32) as u32;
    let wrap = |v: i32| -> i32 { (v.wrapping_add(p.bias) << sl) >> sl };
    match p.shift {
        1..=31 => {
            let s = p.shift as u32;
            for (d, &v) in dst.iter_mut().zip(src) {
                let t = wrap(v);
                *d = ((t >> s) + ((t >> (s - 1)) & 1)).clamp(p.lo, p.hi);
            }
        }
        0 => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = wrap(v).clamp(p.lo, p.hi);
            }
        }
        s if s >= 32 => {
            for d in dst.iter_mut().take(src.len()) {
                *d = 0i32.clamp(p.lo, p.hi);
            }
        }
        s => {
            let l = (-s).min(62) as u32;
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = ((wrap(v) as i64) << l).clamp(p.lo as i64, p.hi as i64) as i32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn wrap_requant_avx2(src: &[i32], dst: &mut [i32], p: WrapRequant) {
    wrap_requant_body(src, dst, p);
}

/// `dst[j] = requantized src[j]` for `j < min(len)` (see [`WrapRequant`]).
pub(crate) fn wrap_requant(src: &[i32], dst: &mut [i32], p: WrapRequant) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 availability checked by `use_avx2`.
        unsafe { wrap_requant_avx2(src, dst, p) };
        return;
    }
    wrap_requant_body(src, dst, p);
}

/// Rescale of one add operand: `((x << l) + half) >> r` (one of `l`, `r`
/// is zero), as `int_ops::add` does in i64.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddRescale {
    l: u32,
    r: u32,
    half: i32,
}

impl AddRescale {
    /// The rescale from `frac_in` to `frac_out` for codes of at most
    /// `bits <= 16` bits, if it is exact in i32 (left shifts up to 14).
    pub(crate) fn new(frac_in: i32, frac_out: i32, bits: u8) -> Option<AddRescale> {
        let shift = frac_in - frac_out;
        if bits > 16 || !(-14..=30).contains(&shift) {
            return None;
        }
        let l = (-shift).max(0) as u32;
        let r = shift.max(0) as u32;
        let half = if r > 0 { 1i32 << (r - 1) } else { 0 };
        Some(AddRescale { l, r, half })
    }
}

#[inline(always)]
fn add2_body(
    a: &[i32],
    b: &[i32],
    (ra, rb): (AddRescale, AddRescale),
    (lo, hi): (i32, i32),
    out: &mut [i32],
) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let xs = ((x << ra.l) + ra.half) >> ra.r;
        let ys = ((y << rb.l) + rb.half) >> rb.r;
        *o = (xs + ys).clamp(lo, hi);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add2_avx2(
    a: &[i32],
    b: &[i32],
    rescale: (AddRescale, AddRescale),
    range: (i32, i32),
    out: &mut [i32],
) {
    add2_body(a, b, rescale, range, out);
}

/// `out = clamp(rescale_a(a) + rescale_b(b), lo, hi)` elementwise.
pub(crate) fn add2(
    a: &[i32],
    b: &[i32],
    rescale: (AddRescale, AddRescale),
    range: (i32, i32),
    out: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 availability checked by `use_avx2`.
        unsafe { add2_avx2(a, b, rescale, range, out) };
        return;
    }
    add2_body(a, b, rescale, range, out);
}

#[inline(always)]
fn clamp_body(codes: &mut [i32], lo: i32, hi: i32) {
    for c in codes.iter_mut() {
        *c = (*c).clamp(lo, hi);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn clamp_avx2(codes: &mut [i32], lo: i32, hi: i32) {
    clamp_body(codes, lo, hi);
}

/// `codes[j] = clamp(codes[j], lo, hi)`; requires `lo <= hi`.
pub(crate) fn clamp_codes(codes: &mut [i32], lo: i32, hi: i32) {
    assert!(lo <= hi, "empty clamp range {lo}..={hi}");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 availability checked by `use_avx2`.
        unsafe { clamp_avx2(codes, lo, hi) };
        return;
    }
    clamp_body(codes, lo, hi);
}

#[inline(always)]
fn clamp_into_body(src: &[i32], dst: &mut [i32], lo: i32, hi: i32) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v.clamp(lo, hi);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn clamp_into_avx2(src: &[i32], dst: &mut [i32], lo: i32, hi: i32) {
    clamp_into_body(src, dst, lo, hi);
}

/// `dst[j] = clamp(src[j], lo, hi)` (ReLU, ReLU6 nodes); requires `lo <= hi`.
pub(crate) fn clamp_into(src: &[i32], dst: &mut [i32], lo: i32, hi: i32) {
    assert!(lo <= hi, "empty clamp range {lo}..={hi}");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 availability checked by `use_avx2`.
        unsafe { clamp_into_avx2(src, dst, lo, hi) };
        return;
    }
    clamp_into_body(src, dst, lo, hi);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::{round_shift, wrap};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn wrap_requant_matches_i64_formula(
            raw in proptest::collection::vec(any::<i32>(), 0..40),
            bias in any::<i32>(),
            psum in 2u8..=32,
            shift in -4i32..40,
            bits in 2u8..=16,
        ) {
            let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
            let p = WrapRequant { bias, psum_bits: psum, shift, lo, hi };
            let want: Vec<i32> = raw
                .iter()
                .map(|&v| {
                    let acc = wrap(v as i64 + bias as i64, psum);
                    round_shift(acc, shift).clamp(lo as i64, hi as i64) as i32
                })
                .collect();
            let mut got = vec![0; raw.len()];
            wrap_requant_body(&raw, &mut got, p);
            prop_assert_eq!(&got, &want);
            wrap_requant(&raw, &mut got, p);
            prop_assert_eq!(&got, &want);
        }

        #[test]
        fn add2_matches_i64_formula(
            pairs in proptest::collection::vec((-32768i32..32768, -32768i32..32768), 0..40),
            fa in -8i32..20,
            fb in -8i32..20,
            fo in -8i32..20,
            bits in 2u8..=16,
        ) {
            let (Some(ra), Some(rb)) = (AddRescale::new(fa, fo, 16), AddRescale::new(fb, fo, 16))
            else {
                return Ok(());
            };
            let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
            let (a, b): (Vec<i32>, Vec<i32>) = pairs.into_iter().unzip();
            let want: Vec<i32> = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| {
                    let s = round_shift(x as i64, fa - fo) + round_shift(y as i64, fb - fo);
                    s.clamp(lo as i64, hi as i64) as i32
                })
                .collect();
            let mut got = vec![0; a.len()];
            add2(&a, &b, (ra, rb), (lo, hi), &mut got);
            prop_assert_eq!(&got, &want);
            add2_body(&a, &b, (ra, rb), (lo, hi), &mut got);
            prop_assert_eq!(&got, &want);
        }
    }
}
