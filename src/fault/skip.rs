//! Sampling a sparse Bernoulli process by geometric skipping.
//!
//! Every fault model here asks the same question: which of `len` independent
//! trials, each succeeding with probability `p`, succeed? Fault rates are
//! small (1e-4 and below), so drawing one uniform per trial wastes almost
//! all of the time. The gap before the next success of a Bernoulli(p)
//! sequence is geometric, `P(gap = k) = (1-p)^k p`, and inversion sampling
//! gives it from one uniform `U` in (0, 1]: `gap = floor(ln U / ln(1-p))`.
//! Summing gaps visits exactly the successes with the same joint law as the
//! per-trial coin flips (up to the resolution of an `f64`), at one RNG draw
//! per success plus one to run off the end.

use rand::Rng;

/// Gap sampler for a Bernoulli(p) process.
#[derive(Debug, Clone, Copy)]
pub struct Skipper {
    /// `1 / ln(1-p)`; `-0` for `p >= 1` (always); unused when `never`.
    inv_log_q: f64,
    never: bool,
}

impl Skipper {
    /// A sampler for success probability `p` (clamped to [0, 1]; NaN counts
    /// as 0 so that a corrupt rate cannot inject faults everywhere).
    pub fn new(p: f64) -> Skipper {
        // Below ~1e-308, 1/ln(1-p) overflows: the mean gap exceeds any
        // tensor, so such a rate never hits.
        if p.is_nan() || p <= 0.0 || !(1.0 / (-p).ln_1p()).is_finite() {
            Skipper {
                inv_log_q: 0.0,
                never: true,
            }
        } else if p >= 1.0 {
            Skipper {
                inv_log_q: -0.0,
                never: false,
            }
        } else {
            Skipper {
                inv_log_q: 1.0 / (-p).ln_1p(),
                never: false,
            }
        }
    }

    /// True when no trial can ever succeed.
    pub fn never(&self) -> bool {
        self.never
    }

    /// Number of failures before the next success (`u64::MAX` if none ever
    /// comes). Draws one `u64` from `rng` unless `p` is 0 or 1.
    #[inline]
    pub fn gap<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        if self.never {
            return u64::MAX;
        }
        if self.inv_log_q == 0.0 {
            return 0;
        }
        // U in (0, 1]: 53 random bits, shifted off zero.
        let u = ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let g = (u.ln() * self.inv_log_q).floor();
        // `as` saturates: a gap beyond u64 range means "no more successes".
        g as u64
    }

    /// Call `hit(i)` for every successful trial `i` in `0..len`, in
    /// increasing order.
    #[inline]
    pub fn for_each_hit<R: Rng + ?Sized>(
        &self,
        len: usize,
        rng: &mut R,
        mut hit: impl FnMut(usize, &mut R),
    ) {
        if self.never || len == 0 {
            return;
        }
        let len = len as u64;
        let mut pos: u64 = 0;
        loop {
            let g = self.gap(rng);
            pos = match pos.checked_add(g) {
                Some(v) if v < len => v,
                _ => return,
            };
            hit(pos as usize, rng);
            pos += 1;
            if pos >= len {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn extremes() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut n = 0;
        Skipper::new(0.0).for_each_hit(1000, &mut rng, |_, _| n += 1);
        assert_eq!(n, 0);
        Skipper::new(f64::NAN).for_each_hit(1000, &mut rng, |_, _| n += 1);
        assert_eq!(n, 0);
        let mut seen = Vec::new();
        Skipper::new(1.0).for_each_hit(100, &mut rng, |i, _| seen.push(i));
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn hits_are_increasing_and_in_range() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mut last = None;
        let mut count = 0usize;
        Skipper::new(0.3).for_each_hit(10_000, &mut rng, |i, _| {
            assert!(i < 10_000);
            if let Some(l) = last {
                assert!(i > l);
            }
            last = Some(i);
            count += 1;
        });
        // Mean 3000, sd ~46: 4 sigma bound.
        assert!((count as f64 - 3000.0).abs() < 4.0 * 46.0, "count {count}");
    }

    #[test]
    fn gap_mean_matches_geometric() {
        // E[gap] = (1-p)/p, Var = (1-p)/p^2.
        let p = 0.01;
        let s = Skipper::new(p);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| s.gap(&mut rng) as f64).sum();
        let mean = sum / n as f64;
        let expect = (1.0 - p) / p;
        let sd = ((1.0 - p) / (p * p) / n as f64).sqrt();
        assert!((mean - expect).abs() < 4.0 * sd, "mean {mean} vs {expect}");
    }
}
