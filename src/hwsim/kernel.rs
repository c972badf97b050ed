//! The per-cycle arithmetic of one row of processing elements.
//!
//! Every dataflow reduces a clock cycle to "for each PE row: each PE adds the
//! product of its two operand registers to the partial sum it holds or
//! receives". This file owns that row update, the accumulator rule in the
//! 32-bit domain the registers live in, and the bit-level effect of a fault
//! on a register of a given width.
//!
//! Why 32-bit: activation and weight codes are at most 16 bits, so a product
//! (the multiplier output, `act_bits + weight_bits` wide) fits in an `i32`,
//! and the accumulator has at most 32 bits. Working in `i32` lets the row
//! update vectorize (8 PEs per AVX2 instruction).

use crate::fixed::{Datapath, Overflow};

/// The accumulator rule of the datapath, in the `i32` domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PsumRule {
    /// Keep the low `32 - shift` bits, sign-extended (two's-complement wrap).
    Wrap { shift: u32 },
    /// Clamp to `[min, max]` after every addition.
    Saturate { min: i32, max: i32 },
}

impl PsumRule {
    pub(crate) fn new(dp: &Datapath) -> PsumRule {
        let bits = u32::from(dp.psum_bits);
        match dp.overflow {
            Overflow::Wrap => PsumRule::Wrap { shift: 32 - bits },
            Overflow::Saturate => PsumRule::Saturate {
                min: (crate::fixed::min_code(dp.psum_bits)) as i32,
                max: (crate::fixed::max_code(dp.psum_bits)) as i32,
            },
        }
    }

    /// One accumulator addition. `acc` is in range; `p` is any product.
    /// For saturation, `saturating_add` is exact whenever the true sum lies
    /// in the `i32` range and saturates to beyond the psum range otherwise,
    /// so the clamp that follows gives the exact saturated result.
    #[inline(always)]
    pub(crate) fn add(self, acc: i32, p: i32) -> i32 {
        match self {
            PsumRule::Wrap { shift } => (acc.wrapping_add(p) << shift) >> shift,
            PsumRule::Saturate { min, max } => acc.saturating_add(p).max(min).min(max),
        }
    }
}

/// `acc[c] = rule(acc[c] + a[c] * w[c])` for every PE `c` of a row, where
/// `a` and `w` are the row's operand registers in PE order.
#[inline(always)]
pub(crate) fn mac_row(rule: PsumRule, acc: &mut [i32], a: &[i32], w: &[i32]) {
    let n = acc.len();
    let a = &a[..n];
    let w = &w[..n];
    match rule {
        PsumRule::Wrap { shift } => {
            for c in 0..n {
                let s = acc[c].wrapping_add(a[c].wrapping_mul(w[c]));
                acc[c] = (s << shift) >> shift;
            }
        }
        PsumRule::Saturate { min, max } => {
            for c in 0..n {
                acc[c] = acc[c]
                    .saturating_add(a[c].wrapping_mul(w[c]))
                    .max(min)
                    .min(max);
            }
        }
    }
}

/// Define `$name(args) -> ret` that runs the `#[inline(always)]` function
/// `$inner` compiled for AVX2 when the CPU has it (runtime check), and for the
/// baseline target otherwise. The stepping loops are written once; this is
/// what lets their row updates use 256-bit vectors without `-C target-cpu`.
macro_rules! simd_dispatch {
    ($vis:vis fn $name:ident => $inner:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty) => {
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn with_avx2($($arg: $ty),*) -> $ret {
                    $inner($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the running CPU supports AVX2 (checked just above).
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $inner($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// What a fault does to the bit it sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitOp {
    Flip(u8),
    Stuck0(u8),
    Stuck1(u8),
}

impl BitOp {
    /// Apply to a register value of `width` bits (two's complement, held
    /// sign-extended in an `i32`); the result is sign-extended again.
    #[inline]
    pub(crate) fn apply(self, v: i32, width: u32) -> i32 {
        let raw = match self {
            BitOp::Flip(b) => v ^ (1i32 << b),
            BitOp::Stuck0(b) => v & !(1i32 << b),
            BitOp::Stuck1(b) => v | (1i32 << b),
        };
        let sh = 32 - width;
        (raw << sh) >> sh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::{saturate, wrap};

    #[test]
    fn rule_matches_fixed_primitives() {
        for &(bits, ov) in &[
            (8u8, Overflow::Wrap),
            (8, Overflow::Saturate),
            (32, Overflow::Wrap),
            (32, Overflow::Saturate),
            (17, Overflow::Wrap),
        ] {
            let dp = Datapath {
                act_bits: 8,
                weight_bits: 8,
                psum_bits: bits,
                overflow: ov,
            };
            let rule = PsumRule::new(&dp);
            let lo = crate::fixed::min_code(bits);
            let hi = crate::fixed::max_code(bits);
            for acc in [lo, lo + 1, -1, 0, 1, hi - 1, hi] {
                for p in [-(1i64 << 30), -300, -1, 0, 1, 127, 300, 1 << 30] {
                    let want = match ov {
                        Overflow::Wrap => wrap(acc + p, bits),
                        Overflow::Saturate => saturate(acc + p, bits),
                    };
                    assert_eq!(
                        rule.add(acc as i32, p as i32) as i64,
                        want,
                        "{bits} {ov:?} {acc} {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn bit_ops_respect_width() {
        assert_eq!(BitOp::Flip(7).apply(1, 8), -127);
        assert_eq!(BitOp::Flip(0).apply(-1, 8), -2);
        assert_eq!(BitOp::Stuck1(3).apply(0, 4), -8);
        assert_eq!(BitOp::Stuck0(3).apply(-8, 4), 0);
        assert_eq!(BitOp::Stuck1(2).apply(4, 8), 4);
        assert_eq!(BitOp::Flip(31).apply(0, 32), i32::MIN);
    }
}
