//! The general output-hit feature fault model that derived (hardware-rate)
//! models produce.
//!
//! An output element is hit with probability `p_out` (independently per
//! element, resampled at every call). A hit corrupts `k` bits, `k` drawn
//! from `multiplicity` (`multiplicity[i]` = probability of `i+1` bits; the
//! default `[1.0]` is a single bit), each bit position drawn independently
//! from `bit_weights` (`bit_weights[b]` = probability of bit `b`, LSB = 0).
//! What a bit does depends on `sign`:
//! - [`HitSign::Random`]: add `s * 2^b` codes, `s = +-1` equiprobable, then
//!   saturate (an additive error in the datapath, as MiBB).
//! - [`HitSign::Flip`]: invert bit `b` of the two's-complement code (a
//!   flipped register bit; the result is a valid code, no saturation).
//!
//! MiBB is the special case `p_out = 1-(1-p)^n`, uniform `bit_weights`,
//! `sign = random`, `multiplicity = [1.0]`. A bit position at or beyond the
//! code width (a `bit_weights` longer than the layer's bits) changes
//! nothing; [`super::FaultModel::check_bits`] rejects such a mismatch up
//! front.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::skip::Skipper;
use super::twos::flip_bit;
use super::twos::supported_width;
use super::{FeatureInjector, LayerSite};

/// How a hit bit changes the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitSign {
    /// Add `+-2^b` (equiprobable) and saturate.
    Random,
    /// Invert bit `b` (two's complement, sign-extended back).
    Flip,
}

impl HitSign {
    /// The name used in fault-model files.
    pub fn name(self) -> &'static str {
        match self {
            HitSign::Random => "random",
            HitSign::Flip => "flip",
        }
    }
}

/// Output-hit model parameters (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputHit {
    pub p_out: f64,
    pub bit_weights: Vec<f64>,
    pub sign: HitSign,
    pub multiplicity: Vec<f64>,
}

impl OutputHit {
    /// Check the rules: probabilities in [0, 1], weights non-negative and
    /// summing to 1 (within 1e-6). Returns the offending key and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        check_prob("p_out", self.p_out)?;
        check_distribution("bit_weights", &self.bit_weights)?;
        check_distribution("multiplicity", &self.multiplicity)?;
        Ok(())
    }

    /// Inject into `codes` (signed `bits`-bit codes).
    pub fn apply<R: Rng + ?Sized>(&self, bits: u8, codes: &mut [i32], rng: &mut R) {
        if !supported_width(bits) {
            return;
        }
        let lo = -(1i64 << (bits - 1));
        let hi = (1i64 << (bits - 1)) - 1;
        Skipper::new(self.p_out).for_each_hit(codes.len(), rng, |i, rng| {
            let k = if self.multiplicity.len() <= 1 {
                1
            } else {
                sample_index(&self.multiplicity, rng) + 1
            };
            for _ in 0..k {
                let b = sample_index(&self.bit_weights, rng) as u32;
                if b >= bits as u32 {
                    continue;
                }
                codes[i] = match self.sign {
                    HitSign::Random => {
                        let delta = 1i64 << b;
                        let v = if rng.random_bool(0.5) {
                            codes[i] as i64 + delta
                        } else {
                            codes[i] as i64 - delta
                        };
                        v.clamp(lo, hi) as i32
                    }
                    HitSign::Flip => flip_bit(codes[i], b, bits),
                };
            }
        });
    }
}

impl FeatureInjector for OutputHit {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.apply(site.format.bits, codes, rng);
    }
}

/// Draw an index with probability proportional to `weights` (one uniform).
pub(crate) fn sample_index<R: Rng + ?Sized>(weights: &[f64], rng: &mut R) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            if u < w {
                return i;
            }
            u -= w;
            last = i;
        }
    }
    // Rounding left `u` just above the total: the last possible index.
    last
}

/// Rule: a probability is a finite number in [0, 1].
pub(crate) fn check_prob(key: &'static str, p: f64) -> Result<(), (&'static str, String)> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err((key, format!("must be a probability in [0, 1], found {p}")))
    }
}

/// Rule: a non-empty list of probabilities summing to 1.
pub(crate) fn check_distribution(
    key: &'static str,
    w: &[f64],
) -> Result<(), (&'static str, String)> {
    if w.is_empty() {
        return Err((key, "must not be empty".into()));
    }
    if let Some((i, v)) = w
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && (0.0..=1.0).contains(*v)))
    {
        return Err((
            key,
            format!("entry {i} must be a probability in [0, 1], found {v}"),
        ));
    }
    let s: f64 = w.iter().sum();
    if (s - 1.0).abs() > 1e-6 {
        return Err((key, format!("entries must sum to 1, found sum {s}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn flip_on_the_sign_bit_needs_no_saturation() {
        let m = OutputHit {
            p_out: 1.0,
            bit_weights: vec![0.0, 0.0, 0.0, 1.0],
            sign: HitSign::Flip,
            multiplicity: vec![1.0],
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut codes = vec![0, 7, -8, -1];
        m.apply(4, &mut codes, &mut rng);
        assert_eq!(codes, vec![-8, -1, 0, 7]);
    }

    #[test]
    fn multiplicity_two_flips_twice() {
        // Two flips of the same (only) bit cancel out.
        let m = OutputHit {
            p_out: 1.0,
            bit_weights: vec![0.0, 1.0],
            sign: HitSign::Flip,
            multiplicity: vec![0.0, 1.0],
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut codes = vec![0, 1, -1, -2];
        m.apply(2, &mut codes, &mut rng);
        assert_eq!(codes, vec![0, 1, -1, -2]);
    }

    #[test]
    fn validation_rules() {
        let ok = OutputHit {
            p_out: 0.5,
            bit_weights: vec![0.5, 0.5],
            sign: HitSign::Random,
            multiplicity: vec![1.0],
        };
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.p_out = 1.5;
        assert_eq!(bad.validate().unwrap_err().0, "p_out");
        let mut bad = ok.clone();
        bad.bit_weights = vec![0.5, 0.6];
        assert_eq!(bad.validate().unwrap_err().0, "bit_weights");
        let mut bad = ok;
        bad.multiplicity = vec![];
        assert_eq!(bad.validate().unwrap_err().0, "multiplicity");
    }
}
