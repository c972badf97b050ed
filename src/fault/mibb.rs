//! The FTT-NAS feature fault model "MiBB" (multiple independent bit bias).
//!
//! Each of the `n` MACs that produce an output element fails independently
//! with probability `p`, so the element is hit with
//! `p_out = 1 - (1-p)^n`. A hit adds `s * 2^b` codes (i.e. `s * 2^b * step`
//! in real terms) with `s = +-1` equiprobable and `b` uniform in
//! `[0, bits)`, then saturates to the code range. At most one hit per
//! element per forward (the paper's model). Resampled at every call.
//!
//! Applied as a [`FeatureInjector`] it hits every site it is called on;
//! choosing which layers are hit (the paper: conv outputs only) is the job
//! of the per-layer dispatch in [`super::layered`].

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::skip::Skipper;
use super::sparse::{CodeAccess, SparseCodes};
use super::twos::supported_width;
use super::{FeatureInjector, LayerSite};

/// MiBB with per-MAC fault probability `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mibb {
    pub p: f64,
}

impl Mibb {
    /// Probability that an output element computed from `n` MACs is hit:
    /// `1 - (1-p)^n`, computed without cancellation for small `p`.
    pub fn p_out(&self, n: usize) -> f64 {
        if n == 0 || self.p.is_nan() || self.p <= 0.0 {
            return 0.0;
        }
        if self.p >= 1.0 {
            return 1.0;
        }
        -((n as f64) * (-self.p).ln_1p()).exp_m1()
    }

    /// Inject into `codes` (signed `bits`-bit codes, each from `n` MACs).
    pub fn apply<R: Rng + ?Sized, C: CodeAccess + ?Sized>(
        &self,
        n: usize,
        bits: u8,
        codes: &mut C,
        rng: &mut R,
    ) {
        if !supported_width(bits) {
            return;
        }
        let lo = -(1i64 << (bits - 1));
        let hi = (1i64 << (bits - 1)) - 1;
        let two_bits = 2 * bits as u32;
        Skipper::new(self.p_out(n)).for_each_hit(codes.len(), rng, |i, rng| {
            // One draw picks both the sign (low bit) and the bit position.
            let r = rng.random_range(0..two_bits);
            let b = r >> 1;
            let delta = 1i64 << b;
            let v = if r & 1 == 0 {
                codes.get(i) as i64 + delta
            } else {
                codes.get(i) as i64 - delta
            };
            codes.set(i, v.clamp(lo, hi) as i32);
        });
    }
}

impl FeatureInjector for Mibb {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.apply(site.macs_per_output, site.format.bits, codes, rng);
    }

    fn inject_sparse(
        &self,
        site: &LayerSite,
        codes: &mut SparseCodes,
        rng: &mut Xoshiro256PlusPlus,
    ) {
        self.apply(site.macs_per_output, site.format.bits, codes, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn p_out_formula() {
        let m = Mibb { p: 1e-4 };
        let expect = 1.0 - (1.0f64 - 1e-4).powi(576);
        assert!((m.p_out(576) - expect).abs() < 1e-12);
        assert_eq!(m.p_out(0), 0.0);
        assert_eq!(Mibb { p: 1.0 }.p_out(3), 1.0);
        assert_eq!(Mibb { p: 0.0 }.p_out(3), 0.0);
        // Small p: p_out ~ n p, no cancellation to 0.
        let tiny = Mibb { p: 1e-15 }.p_out(10);
        assert!((tiny / 1e-14 - 1.0).abs() < 1e-6, "{tiny}");
    }

    #[test]
    fn every_change_is_a_power_of_two_or_saturated() {
        let m = Mibb { p: 0.05 };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let clean: Vec<i32> = (0..4096).map(|i| (i % 256) - 128).collect();
        let mut codes = clean.clone();
        m.apply(9, 8, &mut codes, &mut rng);
        let mut changed = 0;
        for (&a, &b) in clean.iter().zip(&codes) {
            assert!((-128..=127).contains(&b));
            if a != b {
                changed += 1;
                let d = (b - a).abs();
                let saturated = b == 127 || b == -128;
                assert!(d.count_ones() == 1 || saturated, "{a} -> {b}");
            }
        }
        assert!(changed > 0);
    }
}
