//! Empirical per-layer fault statistics by hardware-level injection — what
//! calibration compares the derivation with.
//!
//! Each MAC layer is measured in isolation: its GEMMs are built from the
//! layer's real input codes (one per image), transient flips are sampled at
//! the raw rates over every register bit-cycle of the layer (Bernoulli per
//! bit-cycle, visited by geometric skipping), the GEMMs run on a
//! [`GemmExecutor`] (cycle-level, or any executor proven equal to it), and
//! the requantized pre-activation output codes are compared with the
//! fault-free ones. Layer isolation matters: in a whole-network run the
//! errors of earlier layers propagate, which is the network-level
//! comparison's business, not the per-layer statistic's.

use rand::Rng;
use rayon::prelude::*;

use crate::fixed::Datapath;
use crate::hwsim::layer::{run_mac_layer_requantized, GemmExecutor, LayerGemm};
use crate::hwsim::spec::for_each_transient;
use crate::hwsim::{FaultSite, HwFault, HwSimError, SystolicArray};
use crate::quant::MacLayer;

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

/// Requantized pre-activation output codes of `layer` (CHW) for one image.
pub fn layer_outputs(
    exec: &dyn GemmExecutor,
    array: &SystolicArray,
    layer: &MacLayer,
    dp: &Datapath,
    input: &[i32],
    faults: &[HwFault],
) -> Result<Vec<i32>, HwSimError> {
    let mut out = vec![0i32; layer.out_shape.numel()];
    run_mac_layer_requantized(
        exec,
        array,
        layer,
        dp,
        input,
        &layer.weights,
        faults,
        &mut out,
    )?;
    Ok(out)
}

/// Sample the transient flips of one layer run: every bit of every PE
/// register site in every cycle of the layer flips with its site's rate
/// (the sampling of hardware fault specs, [`for_each_transient`]).
pub fn sample_layer_flips<R: Rng>(
    array: &SystolicArray,
    dp: &Datapath,
    shape: &LayerGemm,
    rates: &SiteRates,
    rng: &mut R,
) -> Vec<HwFault> {
    let mut faults = Vec::new();
    let pes = (array.rows * array.cols) as u64;
    for site in FaultSite::ALL {
        let p = rates.of(site);
        if p <= 0.0 {
            continue;
        }
        for_each_transient(
            p,
            pes,
            site.width(dp),
            shape.cycles,
            rng,
            |cycle, pe, bit| {
                let pe = pe as usize;
                faults.push(HwFault::flip(
                    site,
                    pe / array.cols,
                    pe % array.cols,
                    bit,
                    cycle,
                ));
            },
        );
    }
    faults
}

/// Measure `layer` on `inputs` (one input-code tensor per image), `trials`
/// fault samples per image, streams from `crate::fault::stream(seed, trial,
/// image, layer.node)`.
#[allow(clippy::too_many_arguments)]
pub fn measure_layer(
    exec: &dyn GemmExecutor,
    array: &SystolicArray,
    layer: &MacLayer,
    dp: &Datapath,
    inputs: &[Vec<i32>],
    rates: &SiteRates,
    trials: u64,
    seed: u64,
) -> Result<LayerMeasurement, HwSimError> {
    let shape = LayerGemm::new(array, layer);
    let top = layer.out_format.bits as usize - 1;
    let clean: Vec<Vec<i32>> = inputs
        .par_iter()
        .map(|x| layer_outputs(exec, array, layer, dp, x, &[]))
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
            let faults = sample_layer_flips(array, dp, &shape, rates, &mut rng);
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
            let out = layer_outputs(exec, array, layer, dp, &inputs[img], &faults)?;
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
        .collect::<Result<_, HwSimError>>()?;
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
