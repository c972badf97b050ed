//! Empirical per-layer fault statistics by hardware-level injection — what
//! calibration compares the derivation with.
//!
//! Each MAC layer is measured in isolation: its GEMMs are built from the
//! layer's real input codes (one per image), transient flips are sampled at
//! the raw rates over every register bit-cycle of the layer (Bernoulli per
//! bit-cycle, visited by geometric skipping), the layer runs on the
//! hardware model ([`Hardware`]: a systolic array's GEMM executor, or a
//! bit-serial design's SIPs), and
//! the requantized pre-activation output codes are compared with the
//! fault-free ones. Layer isolation matters: in a whole-network run the
//! errors of earlier layers propagate, which is the network-level
//! comparison's business, not the per-layer statistic's.

use rayon::prelude::*;

use crate::hwsim::network::HwNetError;
use crate::quant::MacLayer;

use super::hardware::Hardware;
use super::layer::SiteRates;

/// Measured statistics of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMeasurement {
    pub name: String,
    /// Output elements observed (images x trials x outputs).
    pub outputs: u64,
    /// Of those, how many changed.
    pub hits: u64,
    /// `hits / outputs`.
    pub p_out: f64,
    /// Standard error of `p_out` over the (image, trial) runs.
    pub p_out_se: f64,
    /// Mean |error| of a changed output, in output steps.
    pub mean_error: f64,
    /// Standard error of `mean_error` over the (image, trial) runs: the
    /// outputs one run changes share its upsets (a stationary register's
    /// run, a saturated psum), so they are not independent samples, and a
    /// handful of saturating errors can move the mean by a fifth.
    pub mean_error_se: f64,
    /// Mean |error| after the layer's activation per changed output: what
    /// survives ReLU, so it sees the errors' direction, not only size.
    pub mean_act_error: f64,
    /// Histogram of `floor(log2 |error|)` of changed outputs (capped at the
    /// top bit), LSB first.
    pub bit_hist: Vec<u64>,
    /// Flips injected.
    pub flips: u64,
}

/// Measure `layer` on `inputs` (one input-code tensor per image), `trials`
/// fault samples per image, streams from `crate::fault::stream(seed, trial,
/// image, layer.node)`.
#[allow(clippy::too_many_arguments)]
pub fn measure_layer(
    hw: &Hardware<'_>,
    li: usize,
    layer: &MacLayer,
    inputs: &[Vec<i32>],
    rates: &SiteRates,
    trials: u64,
    seed: u64,
) -> Result<LayerMeasurement, HwNetError> {
    let top = layer.out_format.bits as usize - 1;
    let none = hw.no_flips();
    let clean: Vec<Vec<i32>> = inputs
        .par_iter()
        .map(|x| hw.layer_outputs(li, layer, x, &none))
        .collect::<Result<_, _>>()?;
    let jobs: Vec<(usize, u64)> = (0..inputs.len())
        .flat_map(|i| (0..trials).map(move |t| (i, t)))
        .collect();
    struct Run {
        hits: u64,
        err: f64,
        act_err: f64,
        hist: Vec<u64>,
        flips: u64,
    }
    let runs: Vec<Run> = jobs
        .par_iter()
        .map(|&(img, trial)| {
            let mut rng = crate::fault::stream(seed, trial, img as u64, layer.node as u64);
            let faults = hw.sample_layer_flips(li, layer, rates, &mut rng);
            let mut r = Run {
                hits: 0,
                err: 0.0,
                act_err: 0.0,
                hist: vec![0; top + 1],
                flips: faults.len() as u64,
            };
            if faults.is_empty() {
                return Ok(r);
            }
            let out = hw.layer_outputs(li, layer, &inputs[img], &faults)?;
            for (x, y) in out.iter().zip(&clean[img]) {
                if x != y {
                    let d = (x - y).unsigned_abs();
                    r.hits += 1;
                    r.err += d as f64;
                    let act = |v: i32| layer.activation.apply(v, layer.out_format);
                    r.act_err += f64::from((act(*x) - act(*y)).abs());
                    r.hist[((u32::BITS - 1 - d.leading_zeros()) as usize).min(top)] += 1;
                }
            }
            Ok(r)
        })
        .collect::<Result<_, HwNetError>>()?;
    let n_out = layer.out_shape.numel() as f64;
    let fractions: Vec<f64> = runs.iter().map(|r| r.hits as f64 / n_out).collect();
    let n = fractions.len().max(1) as f64;
    let mean = fractions.iter().sum::<f64>() / n;
    let var = if fractions.len() > 1 {
        fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let hits: u64 = runs.iter().map(|r| r.hits).sum();
    let per_run: Vec<(f64, f64)> = runs.iter().map(|r| (r.err, r.hits as f64)).collect();
    let (mean_error, mean_error_se) = ratio_mean_se(&per_run);
    let mut bit_hist = vec![0u64; top + 1];
    for r in &runs {
        for (h, x) in bit_hist.iter_mut().zip(&r.hist) {
            *h += x;
        }
    }
    Ok(LayerMeasurement {
        name: layer.name.clone(),
        outputs: (n_out * n) as u64,
        hits,
        p_out: mean,
        p_out_se: (var / n).sqrt(),
        mean_error,
        mean_error_se,
        mean_act_error: runs.iter().map(|r| r.act_err).sum::<f64>() / hits.max(1) as f64,
        bit_hist,
        flips: runs.iter().map(|r| r.flips).sum(),
    })
}

/// The ratio `sum(y) / sum(x)` over clusters `(y_i, x_i)` and its standard
/// error by linearization (the usual ratio-estimator variance with
/// clusters as the sampling unit): `se^2 = n/(n-1) * sum (y_i - R x_i)^2 /
/// (sum x_i)^2`. `(0, 0)` without any `x`; se 0 with a single cluster.
pub fn ratio_mean_se(clusters: &[(f64, f64)]) -> (f64, f64) {
    let sx: f64 = clusters.iter().map(|c| c.1).sum();
    if sx <= 0.0 {
        return (0.0, 0.0);
    }
    let r = clusters.iter().map(|c| c.0).sum::<f64>() / sx;
    let n = clusters.len() as f64;
    if clusters.len() < 2 {
        return (r, 0.0);
    }
    let ss: f64 = clusters.iter().map(|c| (c.0 - r * c.1).powi(2)).sum();
    (r, (n / (n - 1.0) * ss).sqrt() / sx)
}

#[cfg(test)]
mod tests {
    use super::ratio_mean_se;

    #[test]
    fn ratio_se_is_zero_when_every_cluster_has_the_same_mean() {
        let (r, se) = ratio_mean_se(&[(10.0, 2.0), (25.0, 5.0), (0.0, 0.0), (5.0, 1.0)]);
        assert_eq!(r, 5.0);
        assert_eq!(se, 0.0);
    }

    #[test]
    fn ratio_se_matches_a_hand_computation() {
        // R = (2 + 12) / (1 + 3) = 3.5; residuals 2 - 3.5 = -1.5 and
        // 12 - 10.5 = 1.5; se^2 = 2/1 * 4.5 / 16
        let (r, se) = ratio_mean_se(&[(2.0, 1.0), (12.0, 3.0)]);
        assert_eq!(r, 3.5);
        assert!((se - (9.0f64 / 16.0).sqrt()).abs() < 1e-12, "{se}");
        // one saturating cluster among quiet ones dominates the error bar
        let quiet: Vec<(f64, f64)> = (0..20).map(|_| (10.0, 10.0)).collect();
        let mut loud = quiet.clone();
        loud.push((3000.0, 1.0));
        assert!(ratio_mean_se(&loud).1 > 100.0 * ratio_mean_se(&quiet).1.max(1e-3));
        assert_eq!(ratio_mean_se(&[]), (0.0, 0.0));
        assert_eq!(ratio_mean_se(&[(4.0, 2.0)]), (2.0, 0.0));
    }
}
