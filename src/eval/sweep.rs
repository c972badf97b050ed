//! Accuracy versus fault rate for one quantized model: the clean accuracy,
//! and for every rate the accuracy of each of `chips` simulated chips
//! (the fault model put at that rate by a [`RateScaler`]), summarized over
//! chips.
//!
//! Work is split across (rate, chip) jobs with rayon, and each job's engine
//! run is itself parallel over images; every random draw comes from a stream
//! fixed by (seed, chip, image, layer), so the numbers do not depend on the
//! thread count or on the order jobs finish in.

use rayon::prelude::*;
use serde::Serialize;

use super::pipeline::{accuracy, chip_accuracy, run_chunked, TestSet};
use super::rate::RateScaler;
use super::stats::Summary;
use super::EvalError;
use crate::engine::Engine;
use crate::quant::QModel;

/// What to sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepConfig {
    /// Rates, ascending, distinct.
    pub rates: Vec<f64>,
    /// Simulated chips per rate.
    pub chips: u64,
    /// Seed of every fault stream.
    pub seed: u64,
}

impl SweepConfig {
    /// Check and sort `rates` (each valid for `scaler`, no duplicates) and
    /// require at least one chip.
    pub fn new(
        mut rates: Vec<f64>,
        chips: u64,
        seed: u64,
        scaler: &RateScaler,
    ) -> Result<SweepConfig, EvalError> {
        if rates.is_empty() {
            return Err(EvalError::Invalid("no rates given".into()));
        }
        for &r in &rates {
            scaler.check_rate(r)?;
        }
        rates.sort_by(f64::total_cmp);
        if let Some(w) = rates.windows(2).find(|w| w[0] == w[1]) {
            return Err(EvalError::Invalid(format!("rate {} is given twice", w[0])));
        }
        if chips == 0 {
            return Err(EvalError::Invalid("at least one chip is needed".into()));
        }
        Ok(SweepConfig { rates, chips, seed })
    }

    /// Images processed by [`sweep`] for `images` test images (for a
    /// progress bar): one clean pass plus one pass per rate and chip.
    pub fn work(&self, images: usize) -> u64 {
        images as u64 * (1 + self.rates.len() as u64 * self.chips)
    }
}

/// The accuracies at one rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatePoint {
    pub rate: f64,
    /// The fault model at this rate, in words.
    pub fault: String,
    /// Accuracy of chip 0, 1, ...
    pub accuracies: Vec<f64>,
    pub summary: Summary,
}

/// Clean accuracy and one point per rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub clean: f64,
    pub points: Vec<RatePoint>,
}

/// Evaluate `model` on `images`/`labels` clean and at every rate of `cfg`.
/// `progress` is called with the number of images done as work finishes
/// (from several threads).
pub fn sweep(
    engine: &dyn Engine,
    model: &QModel,
    test: TestSet<'_>,
    scaler: &RateScaler,
    cfg: &SweepConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Curve, EvalError> {
    if test.is_empty() {
        return Err(EvalError::Invalid("no test images".into()));
    }
    let clean = accuracy(
        &run_chunked(engine, model, test.images, None, progress)?,
        test.labels,
    );
    let faults = cfg
        .rates
        .iter()
        .map(|&r| scaler.at(r))
        .collect::<Result<Vec<_>, _>>()?;
    let chips = cfg.chips;
    let accs = (0..cfg.rates.len() as u64 * chips)
        .into_par_iter()
        .map(|job| {
            let (r, chip) = ((job / chips) as usize, job % chips);
            chip_accuracy(engine, model, &faults[r], cfg.seed, chip, test, progress)
        })
        .collect::<Result<Vec<f64>, _>>()?;
    let points = cfg
        .rates
        .iter()
        .zip(&faults)
        .zip(accs.chunks(chips as usize))
        .map(|((&rate, fm), a)| RatePoint {
            rate,
            fault: fm.describe(),
            accuracies: a.to_vec(),
            summary: Summary::of(a),
        })
        .collect();
    Ok(Curve { clean, points })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FastEngine;
    use crate::eval::pipeline::tests::self_labelled;
    use crate::eval::rate::RateMode;
    use crate::fault::FaultModel;

    fn run(threads: usize, spec: &str, rates: &[f64]) -> Curve {
        let (q, images, labels) = self_labelled();
        let fm = FaultModel::parse_weight_flag(spec)
            .or_else(|_| FaultModel::parse_feature_flag(spec))
            .unwrap();
        let scaler = RateScaler::new(&fm, RateMode::Absolute, 8).unwrap();
        let cfg = SweepConfig::new(rates.to_vec(), 5, 42, &scaler).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let test = TestSet {
            images: &images,
            labels: &labels,
        };
        pool.install(|| sweep(&FastEngine, &q, test, &scaler, &cfg, &|_| {}))
            .unwrap()
    }

    #[test]
    fn same_seed_same_numbers_for_any_thread_count() {
        for spec in ["sa:1e-3:all", "mibb:1e-4:all"] {
            let one = run(1, spec, &[1e-2, 1e-1]);
            assert_eq!(one, run(3, spec, &[1e-2, 1e-1]), "{spec}");
            assert_eq!(one.clean, 1.0);
            assert_eq!(one.points.len(), 2);
            assert_eq!(one.points[0].accuracies.len(), 5);
        }
    }

    #[test]
    fn accuracy_falls_with_the_rate_and_rate_zero_is_clean() {
        let c = run(2, "sa:1e-3:all", &[0.5, 0.0, 1e-3]);
        let rates: Vec<f64> = c.points.iter().map(|p| p.rate).collect();
        assert_eq!(rates, [0.0, 1e-3, 0.5]);
        assert_eq!(c.points[0].accuracies, vec![1.0; 5]);
        assert!(c.points[2].summary.mean < 0.5, "{:?}", c.points[2]);
        assert!(c.points[1].summary.mean >= c.points[2].summary.mean);
    }

    #[test]
    fn bad_configs_are_named() {
        let fm = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
        let s = RateScaler::new(&fm, RateMode::Absolute, 8).unwrap();
        let err = |rates: Vec<f64>, chips| {
            SweepConfig::new(rates, chips, 0, &s)
                .unwrap_err()
                .to_string()
        };
        assert!(err(vec![], 3).contains("no rates"));
        assert!(err(vec![1e-3, 1e-3], 3).contains("twice"));
        assert!(err(vec![1e-3], 0).contains("chip"));
        assert!(err(vec![1.5], 3).contains("above 1"));
        let cfg = SweepConfig::new(vec![1e-3, 1e-4], 4, 0, &s).unwrap();
        assert_eq!(cfg.rates, [1e-4, 1e-3]);
        assert_eq!(cfg.work(10), 10 * (1 + 2 * 4));
    }
}
