//! The fault-free GEMM the exact path starts from, computed fast but with
//! the accumulator rule of the hardware.
//!
//! A wrapping accumulator is addition modulo `2^psum_bits`, so any summation
//! order gives the hardware's result: the engine's blocked integer kernels
//! (i8 or i16 operands, wrapping i32 sums) followed by a wrap to
//! `psum_bits`. A saturating accumulator clamps after every addition in
//! reduction order; when `K * 2^(act_bits+weight_bits-2)` fits the
//! accumulator no partial sum can reach the clamp and the plain sum is
//! exact, otherwise the sums are accumulated in reduction order, a whole
//! output row at a time (vectorized over the filters).

use rayon::prelude::*;

use super::super::kernel::{simd_dispatch, PsumRule};
use super::super::Gemm;
use crate::engine::gemm::{gemm_i16, gemm_i8};
use crate::fixed::{max_code, Datapath, Overflow};

/// `out[e][m] = sum_k A[e][k] * W[k][m]` with the datapath's accumulator
/// rule, bit-identical to [`crate::hwsim::reference_gemm`]. Operands must be
/// valid codes of the datapath (as `SystolicArray::run` checks).
pub fn clean_gemm(gemm: &Gemm, dp: &Datapath) -> Vec<i64> {
    let (e, k, m) = (gemm.e, gemm.k, gemm.m);
    if !plain_sum_exact(dp, k) {
        return saturating_in_order(gemm, dp);
    }
    let mut c = vec![0i32; e * m];
    if dp.act_bits <= 8 && dp.weight_bits <= 8 {
        let a: Vec<i8> = gemm.a.iter().map(|&v| v as i8).collect();
        let w: Vec<i8> = gemm.w.iter().map(|&v| v as i8).collect();
        gemm_i8(e, m, k, &a, &w, &mut c);
    } else {
        let a: Vec<i16> = gemm.a.iter().map(|&v| v as i16).collect();
        let w: Vec<i16> = gemm.w.iter().map(|&v| v as i16).collect();
        gemm_i16(e, m, k, &a, &w, &mut c);
    }
    c.into_iter().map(|v| dp.acc_limit(v as i64)).collect()
}

/// Whether the plain (wrapping i32) sum of `k` products followed by the
/// accumulator rule is the hardware's result: always for a wrapping
/// accumulator, and for a saturating one when no partial sum can reach the
/// clamp (`k * 2^(act_bits+weight_bits-2)` fits the accumulator).
pub(crate) fn plain_sum_exact(dp: &Datapath, k: usize) -> bool {
    let largest_product = 1u128 << (u32::from(dp.act_bits) + u32::from(dp.weight_bits) - 2);
    dp.overflow == Overflow::Wrap || k as u128 * largest_product <= max_code(dp.psum_bits) as u128
}

/// Saturating sums in reduction order, one output row per task.
fn saturating_in_order(gemm: &Gemm, dp: &Datapath) -> Vec<i64> {
    let rule = PsumRule::new(dp);
    let (k, m) = (gemm.k, gemm.m);
    let mut out = vec![0i64; gemm.e * m];
    out.par_chunks_mut(m)
        .with_min_len(8)
        .enumerate()
        .for_each_init(
            || vec![0i32; m],
            |acc, (e, row)| {
                acc.fill(0);
                accumulate_row(rule, acc, &gemm.a[e * k..(e + 1) * k], gemm.w, m);
                for (o, &v) in row.iter_mut().zip(acc.iter()) {
                    *o = v as i64;
                }
            },
        );
    out
}

/// `acc[m] = rule(acc[m] + a[k] * w[k][m])` for `k` in order.
#[inline(always)]
fn accumulate_row_inner(rule: PsumRule, acc: &mut [i32], a: &[i32], w: &[i32], m: usize) {
    for (kk, &av) in a.iter().enumerate() {
        let wrow = &w[kk * m..(kk + 1) * m];
        match rule {
            PsumRule::Saturate { min, max } => {
                for (s, &wv) in acc.iter_mut().zip(wrow) {
                    *s = s.saturating_add(av * wv).max(min).min(max);
                }
            }
            PsumRule::Wrap { .. } => {
                for (s, &wv) in acc.iter_mut().zip(wrow) {
                    *s = rule.add(*s, av * wv);
                }
            }
        }
    }
}

simd_dispatch!(fn accumulate_row => accumulate_row_inner(rule: PsumRule, acc: &mut [i32], a: &[i32], w: &[i32], m: usize) -> ());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwsim::reference_gemm;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn check(dp: Datapath, (e, k, m): (usize, usize, usize), seed: u64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let lo = |b: u8| crate::fixed::min_code(b) as i32;
        let hi = |b: u8| max_code(b) as i32;
        let a: Vec<i32> = (0..e * k)
            .map(|_| rng.random_range(lo(dp.act_bits)..=hi(dp.act_bits)))
            .collect();
        let w: Vec<i32> = (0..k * m)
            .map(|_| rng.random_range(lo(dp.weight_bits)..=hi(dp.weight_bits)))
            .collect();
        let g = Gemm {
            a: &a,
            w: &w,
            e,
            k,
            m,
        };
        assert_eq!(clean_gemm(&g, &dp), reference_gemm(&g, &dp), "{dp:?}");
    }

    #[test]
    fn matches_the_in_order_reference() {
        for (i, (ab, wb, pb, ov)) in [
            (8u8, 8u8, 32u8, Overflow::Wrap),
            (8, 8, 16, Overflow::Wrap),
            (8, 8, 32, Overflow::Saturate),
            (8, 8, 16, Overflow::Saturate),
            (16, 16, 32, Overflow::Saturate),
            (12, 5, 18, Overflow::Wrap),
            (3, 16, 17, Overflow::Saturate),
        ]
        .into_iter()
        .enumerate()
        {
            let dp = Datapath {
                act_bits: ab,
                weight_bits: wb,
                psum_bits: pb,
                overflow: ov,
            };
            check(dp, (17, 40, 9), i as u64);
            check(dp, (1, 1, 1), i as u64 + 100);
        }
    }
}
