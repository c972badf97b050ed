//! The FTT-NAS weight fault model "adSAF": stuck-at faults of RRAM cells
//! in a differential pair (`w = G+ - G-`, the weight's magnitude on the cell
//! of its sign, the other cell at 0).
//!
//! Each weight is faulty with probability `p` (the paper: 0.08). A fraction
//! `sa1_fraction` (the paper: 16.3%) of faults are stuck-at-1 (a cell at
//! full conductance): the weight becomes `+-M`, where `M = max|w_q|` over the
//! layer's clean codes. The rest are stuck-at-0 on the cell carrying the
//! weight's sign: the weight becomes 0. Results stay within `[-M, M]`
//! (the paper's clamp) and, when `M = 2^(bits-1)`, `+M` saturates to the
//! largest code.
//!
//! Sign of a stuck-at-1 ([`Sa1Sign`]): the default `random` makes `+M` and
//! `-M` equiprobable, because the stuck cell is either of the pair whatever
//! the stored weight (a stuck `G+` gives `+M`, a stuck `G-` gives `-M`,
//! neglecting the other cell). `own` keeps the weight's own sign (zero
//! weights draw a random sign), the optimistic reading where only the
//! active cell fails.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::output_hit::check_prob;
use super::skip::Skipper;
use super::twos::supported_width;
use super::{LayerSite, WeightInjector};

/// Which sign a stuck-at-1 pushes the weight to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sa1Sign {
    /// `+M` or `-M`, equiprobable.
    Random,
    /// The weight's own sign (random for zero weights).
    Own,
}

impl Sa1Sign {
    /// The name used in fault-model files.
    pub fn name(self) -> &'static str {
        match self {
            Sa1Sign::Random => "random",
            Sa1Sign::Own => "own",
        }
    }
}

/// adSAF parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdSaf {
    /// Probability that a weight is faulty.
    pub p: f64,
    /// Fraction of faults that are stuck-at-1 (the rest are stuck-at-0).
    pub sa1_fraction: f64,
    pub sa1_sign: Sa1Sign,
}

impl AdSaf {
    /// The paper's stuck-at-1 share of cell faults.
    pub const PAPER_SA1_FRACTION: f64 = 0.163;

    /// Check the rules: `p` and `sa1_fraction` in [0, 1].
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        check_prob("p", self.p)?;
        check_prob("sa1_fraction", self.sa1_fraction)
    }

    /// Corrupt `codes` (signed `bits`-bit weight codes of one layer).
    pub fn apply<R: Rng + ?Sized>(&self, bits: u8, codes: &mut [i32], rng: &mut R) {
        if !supported_width(bits) {
            return;
        }
        let max_abs = codes.iter().map(|&c| (c as i64).abs()).max().unwrap_or(0);
        let hi = max_abs.min((1i64 << (bits - 1)) - 1) as i32;
        let lo = -(max_abs.min(1i64 << (bits - 1)) as i32);
        Skipper::new(self.p).for_each_hit(codes.len(), rng, |i, rng| {
            if rng.random::<f64>() < self.sa1_fraction {
                let positive = match self.sa1_sign {
                    Sa1Sign::Own if codes[i] != 0 => codes[i] > 0,
                    _ => rng.random_bool(0.5),
                };
                codes[i] = if positive { hi } else { lo };
            } else {
                codes[i] = 0;
            }
        });
    }
}

impl WeightInjector for AdSaf {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.apply(site.format.bits, codes, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn all_faulty_all_sa1_own_sign() {
        let m = AdSaf {
            p: 1.0,
            sa1_fraction: 1.0,
            sa1_sign: Sa1Sign::Own,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut codes = vec![3, -2, 50, -7];
        m.apply(8, &mut codes, &mut rng);
        assert_eq!(codes, vec![50, -50, 50, -50]);
    }

    #[test]
    fn most_negative_code_saturates_positive_push() {
        let m = AdSaf {
            p: 1.0,
            sa1_fraction: 1.0,
            sa1_sign: Sa1Sign::Own,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut codes = vec![-128, 5];
        m.apply(8, &mut codes, &mut rng);
        assert_eq!(codes, vec![-128, 127]);
    }

    #[test]
    fn all_sa0_zeroes() {
        let m = AdSaf {
            p: 1.0,
            sa1_fraction: 0.0,
            sa1_sign: Sa1Sign::Random,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut codes = vec![3, -2, 50, -7];
        m.apply(8, &mut codes, &mut rng);
        assert_eq!(codes, vec![0; 4]);
    }
}
