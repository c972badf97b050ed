//! Fixed-point arithmetic shared by every part of ftnas.
//!
//! This module owns the number formats: the [`Datapath`] (bit widths of
//! activations, weights and the accumulator, and what the accumulator does on
//! overflow), the power-of-two [`Format`] of a tensor, and the three integer
//! primitives every engine and hardware model must share bit for bit:
//! [`saturate`], [`wrap`] and [`round_shift`]. Keeping them in one place is what
//! makes "one arithmetic" (DESIGN.md) enforceable.
//!
//! Rules (documented here once, referenced elsewhere):
//! - Codes are two's-complement signed integers of `bits` bits; the largest
//!   code is `2^(bits-1)-1`, the smallest `-2^(bits-1)` (hardware saturation,
//!   not the `+2^scale` clamp of the paper's reference code).
//! - A tensor with `max|x| = m` gets `scale = ceil(log2(m))` and
//!   `step = 2^(scale-(bits-1))`; its fraction length is `frac = bits-1-scale`.
//! - Requantization from fraction length `f_in` to `f_out < f_in` is a
//!   rounding arithmetic right shift by `s = f_in - f_out`: add `2^(s-1)` then
//!   shift (round half up, towards +inf), then saturate to the output bits.
//!   A negative shift (`f_out > f_in`) is an exact left shift, then saturate.
//! - The accumulator has `psum_bits` bits; `Overflow::Wrap` keeps the low bits
//!   (two's complement), `Overflow::Saturate` clamps after every addition, in
//!   the order of the reduction index.

use serde::{Deserialize, Serialize};

/// What the accumulator does when a sum leaves its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Keep the low `psum_bits` bits (two's complement), as a plain adder does.
    #[default]
    Wrap,
    /// Clamp to the representable range after every addition.
    Saturate,
}

/// Bit widths of the datapath: what the accelerator computes with, and what
/// the quantizer produces. Supplied by the accelerator description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datapath {
    /// Bits of an activation (feature map) code, 2..=16.
    pub act_bits: u8,
    /// Bits of a weight code, 2..=16.
    pub weight_bits: u8,
    /// Bits of the accumulator (partial sum register), up to 32.
    pub psum_bits: u8,
    /// Accumulator overflow behaviour.
    #[serde(default)]
    pub overflow: Overflow,
}

impl Default for Datapath {
    fn default() -> Self {
        Datapath::INT8
    }
}

impl Datapath {
    /// The paper's setting: 8-bit activations and weights, 32-bit wrapping accumulator.
    pub const INT8: Datapath = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 32,
        overflow: Overflow::Wrap,
    };

    /// Check the widths are in the supported range. Returns a description of
    /// the first violated rule.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=16).contains(&self.act_bits) {
            return Err(format!(
                "act_bits must be in 2..=16, found {}",
                self.act_bits
            ));
        }
        if !(2..=16).contains(&self.weight_bits) {
            return Err(format!(
                "weight_bits must be in 2..=16, found {}",
                self.weight_bits
            ));
        }
        if !(2..=32).contains(&self.psum_bits) {
            return Err(format!(
                "psum_bits must be in 2..=32, found {}",
                self.psum_bits
            ));
        }
        if self.psum_bits < self.act_bits.max(self.weight_bits) {
            return Err(format!(
                "psum_bits ({}) must be at least max(act_bits, weight_bits) ({})",
                self.psum_bits,
                self.act_bits.max(self.weight_bits)
            ));
        }
        Ok(())
    }

    /// Apply this accumulator's overflow rule to a value (final or partial).
    #[inline]
    pub fn acc_limit(&self, v: i64) -> i64 {
        match self.overflow {
            Overflow::Wrap => wrap(v, self.psum_bits),
            Overflow::Saturate => saturate(v, self.psum_bits),
        }
    }
}

/// Largest code of a signed `bits`-bit integer.
#[inline]
pub const fn max_code(bits: u8) -> i64 {
    (1i64 << (bits - 1)) - 1
}

/// Smallest code of a signed `bits`-bit integer.
#[inline]
pub const fn min_code(bits: u8) -> i64 {
    -(1i64 << (bits - 1))
}

/// Clamp `v` to the signed `bits`-bit range.
#[inline]
pub fn saturate(v: i64, bits: u8) -> i64 {
    v.clamp(min_code(bits), max_code(bits))
}

/// Keep the low `bits` bits of `v`, sign-extended (two's-complement wrap).
#[inline]
pub fn wrap(v: i64, bits: u8) -> i64 {
    let sh = 64 - bits as u32;
    (v << sh) >> sh
}

/// Rounding arithmetic shift: `round(v / 2^shift)` with ties towards +inf for
/// `shift > 0`; exact `v * 2^-shift` for `shift <= 0`. No saturation.
#[inline]
pub fn round_shift(v: i64, shift: i32) -> i64 {
    if shift > 0 {
        let s = shift.min(62) as u32;
        (v + (1i64 << (s - 1))) >> s
    } else {
        v << ((-shift).min(62) as u32)
    }
}

/// Requantize an accumulator value with fraction length `f_in` into a
/// `bits`-bit code with fraction length `f_out`: rounding shift, then saturate.
#[inline]
pub fn requantize(v: i64, f_in: i32, f_out: i32, bits: u8) -> i64 {
    saturate(round_shift(v, f_in - f_out), bits)
}

/// Power-of-two fixed-point format of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Format {
    /// Code width in bits.
    pub bits: u8,
    /// Fraction length: real value = code * 2^-frac.
    pub frac: i32,
}

impl Format {
    /// Format for a tensor whose largest magnitude is `max_abs`
    /// (`scale = ceil(log2(max_abs))`, `frac = bits-1-scale`). A zero tensor
    /// gets `scale = 0`.
    pub fn for_max_abs(max_abs: f32, bits: u8) -> Format {
        let scale = if max_abs > 0.0 && max_abs.is_finite() {
            (max_abs as f64).log2().ceil() as i32
        } else {
            0
        };
        Format {
            bits,
            frac: bits as i32 - 1 - scale,
        }
    }

    /// Real value of one code step.
    pub fn step(&self) -> f32 {
        (2.0f64).powi(-self.frac) as f32
    }

    /// Quantize a real value: round to nearest (ties away from zero), saturate.
    pub fn quantize(&self, x: f32) -> i32 {
        let q = (x as f64 * (2.0f64).powi(self.frac)).round();
        q.clamp(min_code(self.bits) as f64, max_code(self.bits) as f64) as i32
    }

    /// Real value of a code.
    pub fn dequantize(&self, code: i32) -> f32 {
        (code as f64 * (2.0f64).powi(-self.frac)) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_saturate() {
        assert_eq!(wrap(128, 8), -128);
        assert_eq!(wrap(-129, 8), 127);
        assert_eq!(wrap(5, 8), 5);
        assert_eq!(saturate(300, 8), 127);
        assert_eq!(saturate(-300, 8), -128);
        assert_eq!(wrap(i32::MAX as i64 + 1, 32), i32::MIN as i64);
    }

    #[test]
    fn rounding_shift_ties_up() {
        assert_eq!(round_shift(3, 1), 2); // 1.5 -> 2
        assert_eq!(round_shift(-3, 1), -1); // -1.5 -> -1
        assert_eq!(round_shift(5, 2), 1); // 1.25 -> 1
        assert_eq!(round_shift(6, 2), 2); // 1.5 -> 2
        assert_eq!(round_shift(3, -2), 12);
        assert_eq!(requantize(1000, 8, 0, 8), 4);
        assert_eq!(requantize(100_000, 4, 0, 8), 127);
    }

    #[test]
    fn format_from_max() {
        let f = Format::for_max_abs(1.0, 8);
        assert_eq!(f.frac, 7);
        let f = Format::for_max_abs(3.2, 8);
        assert_eq!(f.frac, 5); // scale 2
        assert_eq!(f.quantize(3.2), 102);
        assert_eq!(f.quantize(100.0), 127);
        assert_eq!(Format::for_max_abs(0.0, 8).frac, 7);
    }

    #[test]
    fn datapath_validation() {
        assert!(Datapath::INT8.validate().is_ok());
        let mut d = Datapath::INT8;
        d.psum_bits = 40;
        assert!(d.validate().is_err());
        d.psum_bits = 4;
        assert!(d.validate().is_err());
    }
}
