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
//! With `sign = random`, `up[b][c]` (optional) replaces the fair coin:
//! the probability that a bit-`b` hit on a code of class `c` adds `+2^b`
//! (else `-2^b`). The class is the code's sign and magnitude: `c = len(y)`
//! for `y >= 0` (`0 ..= bits-1`), `c = bits - 1 + len(|y|)` for `y < 0`
//! (`bits ..= 2 bits - 1`), `len` the bit length. Flipped bits of a wide
//! accumulator move the value the way the partial sum it held points: a
//! flip above its magnitude pushes it away from zero, so a clearly
//! negative pre-activation is pushed further down (and ReLU masks it)
//! rather than up to the positive rail, while outputs whose partial sums
//! sat at zero (zero inputs) are pushed up whatever their bias. The class
//! carries how sure that direction is. Derivation measures it from the
//! partial sums the psum registers really hold (`crate::derive::psum_sign`).
//!
//! `stream` (optional) adds the runs of same-sign errors that upsets of a
//! stationary operand register cause ([`super::stream_hit`]).
//!
//! MiBB is the special case `p_out = 1-(1-p)^n`, uniform `bit_weights`,
//! `sign = random`, `multiplicity = [1.0]`. A bit position at or beyond the
//! code width (a `bit_weights` longer than the layer's bits) changes
//! nothing; [`super::FaultModel::check_bits`] rejects such a mismatch up
//! front.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::skip::Skipper;
use super::stream_hit::StreamHits;
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
    /// `up[b][c]`: probability that a bit-`b` hit on a code of class `c`
    /// ([`sign_class`]) is `+2^b`; empty: a fair coin.
    pub up: Vec<Vec<f64>>,
    /// Upsets of stationary operand registers, as runs of same-sign errors
    /// along a stream ([`super::stream_hit`]); applied after the
    /// independent hits.
    pub stream: Option<Box<StreamHits>>,
}

impl OutputHit {
    /// Check the rules: probabilities in [0, 1], weights non-negative and
    /// summing to 1 (within 1e-6). Returns the offending key and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        check_prob("p_out", self.p_out)?;
        check_distribution("bit_weights", &self.bit_weights)?;
        check_distribution("multiplicity", &self.multiplicity)?;
        if let Some(s) = &self.stream {
            s.validate()?;
        }
        if !self.up.is_empty() {
            if self.sign != HitSign::Random {
                return Err((
                    "up",
                    "applies only to sign = \"random\" (a flip has no sign to choose)".into(),
                ));
            }
            if self.up.len() != self.bit_weights.len() {
                return Err((
                    "up",
                    format!(
                        "needs one row per bit of `bit_weights` ({}), found {}",
                        self.bit_weights.len(),
                        self.up.len()
                    ),
                ));
            }
            let classes = 2 * self.bit_weights.len();
            for (b, row) in self.up.iter().enumerate() {
                if row.len() != classes {
                    return Err((
                        "up",
                        format!(
                            "row {b} needs one entry per code class 0..{classes} (sign and bit length), found {}",
                            row.len()
                        ),
                    ));
                }
                if let Some((c, v)) = row
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && (0.0..=1.0).contains(*v)))
                {
                    return Err((
                        "up",
                        format!("entry [{b}][{c}] must be a probability in [0, 1], found {v}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Inject into one image's output codes at `site`: the independent hits,
    /// then the stream runs.
    pub fn apply_at<R: Rng + ?Sized>(&self, site: &LayerSite, codes: &mut [i32], rng: &mut R) {
        self.apply(site.format.bits, codes, rng);
        if let Some(s) = &self.stream {
            s.apply(site.format.bits, site.groups, codes, rng);
        }
    }

    /// Inject the independent hits into `codes` (signed `bits`-bit codes).
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
                        // One uniform either way, so a model with `up`
                        // draws as many numbers as one without.
                        let up = match self.up.get(b as usize) {
                            Some(row) => {
                                rng.random::<f64>()
                                    < row[sign_class(codes[i], bits).min(row.len() - 1)]
                            }
                            None => rng.random_bool(0.5),
                        };
                        let v = if up {
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
        self.apply_at(site, codes, rng);
    }
}

/// The class of a `bits`-bit code for `up`: its bit length for `y >= 0`
/// (`0 ..= bits-1`), `bits - 1 +` the bit length of `|y|` for `y < 0`
/// (`bits ..= 2 bits - 1`).
pub fn sign_class(code: i32, bits: u8) -> usize {
    let len = (32 - code.unsigned_abs().leading_zeros()) as usize;
    if code >= 0 {
        len
    } else {
        bits as usize - 1 + len
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
            up: vec![],
            stream: None,
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
            up: vec![],
            stream: None,
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
            up: vec![],
            stream: None,
        };
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.p_out = 1.5;
        assert_eq!(bad.validate().unwrap_err().0, "p_out");
        let mut bad = ok.clone();
        bad.bit_weights = vec![0.5, 0.6];
        assert_eq!(bad.validate().unwrap_err().0, "bit_weights");
        let mut bad = ok.clone();
        bad.multiplicity = vec![];
        assert_eq!(bad.validate().unwrap_err().0, "multiplicity");
        let mut good = ok.clone();
        good.up = vec![vec![0.0, 1.0, 0.5, 0.5]; 2];
        assert!(good.validate().is_ok());
        let mut bad = ok.clone();
        bad.up = vec![vec![0.5; 4]];
        assert_eq!(bad.validate().unwrap_err().0, "up");
        let mut bad = ok.clone();
        bad.up = vec![vec![0.5; 3]; 2];
        assert_eq!(bad.validate().unwrap_err().0, "up");
        let mut bad = ok.clone();
        bad.up = vec![vec![0.5, 1.5, 0.0, 0.0]; 2];
        assert_eq!(bad.validate().unwrap_err().0, "up");
        let mut bad = ok;
        bad.sign = HitSign::Flip;
        bad.up = vec![vec![0.5; 4]; 2];
        assert_eq!(bad.validate().unwrap_err().0, "up");
    }

    #[test]
    fn sign_classes_split_sign_and_length() {
        let classes: Vec<usize> = [0, 1, 2, 3, 7, -1, -2, -3, -4, -8]
            .iter()
            .map(|&c| sign_class(c, 4))
            .collect();
        assert_eq!(classes, vec![0, 1, 2, 2, 3, 4, 5, 5, 6, 7]);
    }

    /// `up` picks the direction by class: here non-negative codes go up,
    /// negative ones down, so top-bit hits send each code to its own rail;
    /// a class at 0.5 tosses a coin.
    #[test]
    fn up_sets_the_direction_per_class() {
        let top = OutputHit {
            p_out: 1.0,
            bit_weights: vec![0.0, 0.0, 0.0, 1.0],
            sign: HitSign::Random,
            multiplicity: vec![1.0],
            up: vec![vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]; 4],
            stream: None,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for _ in 0..20 {
            let mut codes = vec![0, 3, 7, -1, -8, -5];
            top.apply(4, &mut codes, &mut rng);
            assert_eq!(codes, vec![7, 7, 7, -8, -8, -8]);
        }
        let coin = OutputHit {
            up: vec![vec![0.5; 8]; 4],
            ..top.clone()
        };
        let mut codes = vec![0; 200];
        coin.apply(4, &mut codes, &mut rng);
        assert!(codes.contains(&7) && codes.contains(&-8));
        // Only class 5 (-2, -3) goes up.
        let mut row = vec![0.0; 8];
        row[5] = 1.0;
        let one = OutputHit {
            bit_weights: vec![0.0, 1.0, 0.0, 0.0],
            up: vec![row; 4],
            ..top
        };
        let mut codes = vec![-3, -4, 2];
        one.apply(4, &mut codes, &mut rng);
        assert_eq!(codes, vec![-1, -6, 0]);
    }
}
