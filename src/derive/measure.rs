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
        mean_error: runs.iter().map(|r| r.err).sum::<f64>() / hits.max(1) as f64,
        mean_act_error: runs.iter().map(|r| r.act_err).sum::<f64>() / hits.max(1) as f64,
        bit_hist,
        flips: runs.iter().map(|r| r.flips).sum(),
    })
}
