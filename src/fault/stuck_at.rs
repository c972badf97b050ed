//! Weight stuck-at bits: each bit `b` of each weight code (two's
//! complement, `bits` wide) is stuck at 0 with probability `p0[b]` and at 1
//! with probability `p1[b]` (disjoint events, so `p0[b] + p1[b] <= 1`). A
//! stuck bit forces its value into the code; a bit already at the stuck
//! value is unchanged. Whether a sample lasts for a chip (inference) or one
//! forward (training) is the caller's choice
//! ([`super::FaultModel::weight_persistent`]).
//!
//! Sampling: for each bit position, geometric skipping over the weights
//! with `q = p0[b] + p1[b]`; a hit is stuck-at-0 with probability `p0/q`.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::output_hit::check_prob;
use super::skip::Skipper;
use super::twos::force_bit;
use super::twos::supported_width;
use super::{LayerSite, WeightInjector};

/// A probability for every bit position: one value for all bits, or one
/// per bit (index 0 = LSB; positions beyond the list have probability 0).
#[derive(Debug, Clone, PartialEq)]
pub enum PerBit {
    Uniform(f64),
    Bits(Vec<f64>),
}

impl PerBit {
    /// The probability of bit `b`.
    #[inline]
    pub fn at(&self, b: usize) -> f64 {
        match self {
            PerBit::Uniform(p) => *p,
            PerBit::Bits(v) => v.get(b).copied().unwrap_or(0.0),
        }
    }

    /// Number of listed bit positions (`None` for a uniform value).
    pub fn listed_bits(&self) -> Option<usize> {
        match self {
            PerBit::Uniform(_) => None,
            PerBit::Bits(v) => Some(v.len()),
        }
    }

    fn validate(&self, key: &'static str) -> Result<(), (&'static str, String)> {
        match self {
            PerBit::Uniform(p) => check_prob(key, *p),
            PerBit::Bits(v) => {
                if v.is_empty() {
                    return Err((key, "per-bit list must not be empty".into()));
                }
                for (i, p) in v.iter().enumerate() {
                    check_prob(key, *p).map_err(|(k, m)| (k, format!("bit {i}: {m}")))?;
                }
                Ok(())
            }
        }
    }
}

/// Stuck-at-0 / stuck-at-1 probabilities per bit.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckAt {
    pub p0: PerBit,
    pub p1: PerBit,
}

impl StuckAt {
    /// Check the rules: probabilities in [0, 1], `p0 + p1 <= 1` per bit,
    /// per-bit lists of equal length.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.p0.validate("p0")?;
        self.p1.validate("p1")?;
        if let (Some(a), Some(b)) = (self.p0.listed_bits(), self.p1.listed_bits()) {
            if a != b {
                return Err((
                    "p1",
                    format!("per-bit p1 has {b} entries but p0 has {a}; they must match"),
                ));
            }
        }
        let n = self.p0.listed_bits().or(self.p1.listed_bits()).unwrap_or(1);
        for b in 0..n {
            let s = self.p0.at(b) + self.p1.at(b);
            if s > 1.0 + 1e-12 {
                return Err((
                    "p1",
                    format!("p0 + p1 must be <= 1 (disjoint events), found {s} at bit {b}"),
                ));
            }
        }
        Ok(())
    }

    /// Stick bits of `codes` (signed `bits`-bit codes).
    pub fn apply<R: Rng + ?Sized>(&self, bits: u8, codes: &mut [i32], rng: &mut R) {
        if !supported_width(bits) {
            return;
        }
        for b in 0..bits as usize {
            let p0 = self.p0.at(b);
            let q = p0 + self.p1.at(b);
            let zero_given_hit = if q > 0.0 { p0 / q } else { 0.0 };
            Skipper::new(q).for_each_hit(codes.len(), rng, |i, rng| {
                let one = rng.random::<f64>() >= zero_given_hit;
                codes[i] = force_bit(codes[i], b as u32, one, bits);
            });
        }
    }
}

impl WeightInjector for StuckAt {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.apply(site.format.bits, codes, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn certain_stuck_bits() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        // Bit 0 always stuck at 1, bit 7 always stuck at 0.
        let m = StuckAt {
            p0: PerBit::Bits(vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            p1: PerBit::Bits(vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        };
        let mut codes = vec![0, 1, -1, -128, 127];
        m.apply(8, &mut codes, &mut rng);
        assert_eq!(codes, vec![1, 1, 127, 1, 127]);
    }

    #[test]
    fn validation_rules() {
        let ok = StuckAt {
            p0: PerBit::Uniform(0.4),
            p1: PerBit::Uniform(0.6),
        };
        assert!(ok.validate().is_ok());
        let over = StuckAt {
            p0: PerBit::Uniform(0.5),
            p1: PerBit::Uniform(0.6),
        };
        assert!(over.validate().unwrap_err().1.contains("p0 + p1"));
        let lens = StuckAt {
            p0: PerBit::Bits(vec![0.1; 8]),
            p1: PerBit::Bits(vec![0.1; 4]),
        };
        assert_eq!(lens.validate().unwrap_err().0, "p1");
        let neg = StuckAt {
            p0: PerBit::Uniform(-0.1),
            p1: PerBit::Uniform(0.0),
        };
        assert_eq!(neg.validate().unwrap_err().0, "p0");
    }
}
