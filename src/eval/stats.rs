//! Summary statistics of per-chip accuracies: mean, sample standard
//! deviation, extremes and the 95% confidence interval of the mean
//! (Student's t, `mean +- t(0.975, n-1) * s / sqrt(n)`), which treats chips
//! as independent draws of the fault process.

use serde::Serialize;

/// Summary of `n` samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (divisor `n - 1`; 0 for one sample).
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// 95% confidence interval of the mean; `None` below two samples.
    pub ci95: Option<(f64, f64)>,
}

impl Summary {
    /// Summarize `v` (an empty slice gives NaN mean and extremes).
    pub fn of(v: &[f64]) -> Summary {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let (min, max) = if n == 0 {
            (f64::NAN, f64::NAN)
        } else {
            v.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                })
        };
        let ci95 = (n > 1).then(|| {
            let half = t_quantile_975(n - 1) * std / (n as f64).sqrt();
            (mean - half, mean + half)
        });
        Summary {
            n,
            mean,
            std,
            min,
            max,
            ci95,
        }
    }
}

/// A fraction as a percentage with two decimals (`0.8732` -> `87.32`).
pub fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

impl Summary {
    /// The 95% confidence interval in percent, `lo..hi` (`-` below two samples).
    pub fn ci_pct(&self) -> String {
        match self.ci95 {
            Some((lo, hi)) => format!("{}..{}", pct(lo), pct(hi)),
            None => "-".into(),
        }
    }
}

/// t(0.975, df) for df = 1..=30 (standard tables, 4 decimals).
const T975: [f64; 30] = [
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
    2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687,
    2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
];

/// The 97.5% quantile of Student's t with `df` degrees of freedom (the
/// two-sided 95% factor). Table up to 30, beyond that the Cornish-Fisher
/// expansion around the normal quantile (error < 1e-4 there).
pub fn t_quantile_975(df: usize) -> f64 {
    assert!(df >= 1, "t quantile needs at least one degree of freedom");
    if df <= T975.len() {
        return T975[df - 1];
    }
    let z: f64 = 1.959_963_984_540_054;
    let d = df as f64;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * d)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * d * d)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * d * d * d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_samples() {
        let s = Summary::of(&[0.5, 0.7]);
        assert!((s.mean - 0.6).abs() < 1e-12);
        assert!((s.std - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max, s.n), (0.5, 0.7, 2));
        let (lo, hi) = s.ci95.unwrap();
        // 12.7062 * 0.1414 / sqrt(2) = 1.27062
        assert!((hi - 0.6 - 1.27062).abs() < 1e-6 && (0.6 - lo - 1.27062).abs() < 1e-6);
    }

    #[test]
    fn one_sample_has_no_interval() {
        let s = Summary::of(&[0.3]);
        assert_eq!((s.mean, s.std, s.ci95), (0.3, 0.0, None));
    }

    #[test]
    fn expansion_meets_the_table_and_the_normal_limit() {
        let at30 = {
            let z: f64 = 1.959_963_984_540_054;
            let d = 30.0;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
                + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z)
                    / (384.0 * d * d * d)
        };
        assert!((at30 - 2.0423).abs() < 1e-4, "{at30}");
        // t(0.975, 60) = 2.0003, t(0.975, 120) = 1.9799 (tables)
        assert!((t_quantile_975(60) - 2.0003).abs() < 1e-4);
        assert!((t_quantile_975(120) - 1.9799).abs() < 1e-4);
        assert!((t_quantile_975(1_000_000) - 1.95996).abs() < 1e-4);
    }

    proptest! {
        #[test]
        fn interval_contains_the_mean_and_extremes_bound_it(
            v in proptest::collection::vec(0.0f64..1.0, 1..40)
        ) {
            let s = Summary::of(&v);
            prop_assert!(s.min <= s.mean + 1e-12 && s.mean <= s.max + 1e-12);
            prop_assert!(s.std >= 0.0);
            if let Some((lo, hi)) = s.ci95 {
                prop_assert!(lo <= s.mean && s.mean <= hi);
            }
        }

        #[test]
        fn t_quantiles_decrease_with_df(df in 1usize..200) {
            prop_assert!(t_quantile_975(df + 1) <= t_quantile_975(df));
        }
    }
}
