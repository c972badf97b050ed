//! Calibration: the derived algorithmic model against hardware-level
//! injection, per layer and for the whole network across a sweep of raw
//! rates.
//!
//! 1. **Per-layer statistics.** Each MAC layer is measured in isolation
//!    ([`super::measure`]) at a rate giving a few flips per layer run, and
//!    its hit rate compared with the derivation's; the ratio is the layer's
//!    fitted correction (`p_fit = 1 - (1 - p_derived)^c`).
//! 2. **Network accuracy.** At every rate of the sweep, `chips` simulated
//!    chips run the test images on the hardware model (transient flips in
//!    the PE or SIP registers, sampled per image and layer; [`Hardware`]) and on the fixed-point
//!    engine with the derived model and with the fitted model (feature
//!    faults drawn per image, the chip as trial). Each gives a mean accuracy
//!    over chips with a 95% confidence interval; the derived model *agrees*
//!    at a rate when its mean is inside the hardware interval or within one
//!    percentage point of the hardware mean.
//!
//! Rates: a sweep rate `r` is the raw flip probability per bit per cycle of
//! the spec's most upset-prone transient site (register or SRAM buffer);
//! the other sites keep their ratio to it. The SRAM buffers' upsets are
//! part of the network sweep (hardware: flips in the buffers; derived: the
//! layers' input/filter/stored code flips, [`super::buffers`]); the
//! per-layer statistics are the registers'. Permanent faults are left out
//! of both sides here (`ftnas derive` covers them; a sweep scales
//! transient rates).

use rayon::prelude::*;

use crate::engine::{Engine, FastEngine};
use crate::eval::pipeline::TestSet;
use crate::eval::{chip_accuracy, Summary};
use crate::fault::FaultModel;
use crate::hwsim::network::HwNetError;
use crate::hwsim::spec::ChipFaults;
use crate::quant::{argmax, QModel, QOp};

use super::hardware::{Hardware, TransientRates};
use super::layer::GemmLayer;
use super::measure::measure_layer;
use super::network::NetworkDerivation;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationConfig {
    /// Raw rates of the sweep (per bit per cycle of the strongest site).
    pub rates: Vec<f64>,
    pub chips: u64,
    pub seed: u64,
    /// Fault samples per image in the per-layer measurement.
    pub layer_trials: u64,
    /// Images (of the test set's first ones) whose layer inputs are used in
    /// the per-layer measurement.
    pub layer_images: usize,
}

/// One layer's derived and measured hit rate.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCheck {
    pub name: String,
    /// Rate (strongest site, per bit per cycle) the layer was measured at.
    pub rate: f64,
    pub derived: f64,
    pub measured: f64,
    /// Standard error of `measured`.
    pub se: f64,
    /// Fitted correction `measured / derived` (1 when either is 0).
    pub correction: f64,
    /// Mean |error| of a changed output (requantized pre-activation code,
    /// output steps): measured, its standard error (over the
    /// measurement's runs), and the derived model's on the same clean
    /// codes (Monte Carlo, as `derived_act_error`).
    pub measured_error: f64,
    pub measured_error_se: f64,
    pub derived_error: f64,
    /// Mean |error| after the layer's activation per hit: measured, and
    /// the derived model's on the same clean codes (Monte Carlo).
    pub measured_act_error: f64,
    pub derived_act_error: f64,
    /// Share of output elements changed with `floor(log2 |error|) = b`
    /// (LSB first): measured, and derived (`p_out` times the realized
    /// outcome of the derived hits on the same clean codes).
    pub derived_bits: Vec<f64>,
    pub measured_bits: Vec<f64>,
}

/// Accuracy at one rate.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePoint {
    pub rate: f64,
    pub hardware: Summary,
    pub derived: Summary,
    pub fitted: Summary,
    /// Expected flips per image in the hardware model.
    pub flips_per_image: f64,
}

impl RatePoint {
    fn agrees(&self, s: &Summary) -> bool {
        agrees(&self.hardware, s)
    }
    /// The derived model's mean is inside the hardware CI or within 1 pp.
    pub fn derived_agrees(&self) -> bool {
        self.agrees(&self.derived)
    }
    pub fn fitted_agrees(&self) -> bool {
        self.agrees(&self.fitted)
    }
}

/// Whether an algorithmic model's accuracy `model` agrees with
/// hardware-level injection `hardware`: its mean inside the hardware 95%
/// confidence interval, or within one percentage point of the hardware mean.
pub fn agrees(hardware: &Summary, model: &Summary) -> bool {
    let inside = hardware
        .ci95
        .is_some_and(|(lo, hi)| model.mean >= lo && model.mean <= hi);
    inside || (model.mean - hardware.mean).abs() <= 0.01
}

/// The whole calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Site rates at `r = 1` (the spec's ratios).
    pub shape: TransientRates,
    pub clean_accuracy: f64,
    pub layers: Vec<LayerCheck>,
    pub points: Vec<RatePoint>,
}

/// Top-1 accuracy of `chips` simulated chips (chip `c` has the faults
/// `chip_faults(c)`) running `test` on the hardware model, one value per
/// chip. Images run in parallel; `progress` gets one unit per image.
pub fn hardware_accuracy(
    net: &Hardware<'_>,
    test: TestSet<'_>,
    chips: u64,
    chip_faults: &(dyn Fn(u64) -> Result<ChipFaults, HwNetError> + Sync),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<f64>, HwNetError> {
    let per = net.model().input_shape().numel();
    let n = test.len();
    (0..chips)
        .map(|chip| {
            let cf = chip_faults(chip)?;
            let correct = (0..n)
                .into_par_iter()
                .map(|i| {
                    let logits =
                        net.run_image(&test.images[i * per..(i + 1) * per], i as u64, &cf)?;
                    progress(1);
                    Ok(u64::from(argmax(&logits) == test.labels[i] as usize))
                })
                .collect::<Result<Vec<u64>, HwNetError>>()?;
            Ok(correct.iter().sum::<u64>() as f64 / n.max(1) as f64)
        })
        .collect()
}

/// Top-1 accuracy of `model` on the fixed-point engine under the feature
/// faults of derivation `d`, one value per chip (`chip` is the trial index
/// of the per-image fault draws). `progress` gets one unit per image.
pub fn derived_accuracy(
    model: &QModel,
    d: &NetworkDerivation,
    test: TestSet<'_>,
    chips: u64,
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<f64>, HwNetError> {
    let fm =
        FaultModel::from_spec(d.fault_spec("derived".into())).map_err(|e| HwNetError::Fault {
            what: "derived model".into(),
            reason: e.to_string(),
        })?;
    (0..chips)
        .map(|chip| {
            chip_accuracy(&FastEngine, model, &fm, seed, chip, test, progress).map_err(|e| {
                HwNetError::Fault {
                    what: "engine run".into(),
                    reason: e.to_string(),
                }
            })
        })
        .collect()
}

/// Fitted fault model: each layer's `p_out` corrected by its factor.
fn fitted(d: &NetworkDerivation, layers: &[LayerCheck]) -> NetworkDerivation {
    let mut f = d.clone();
    for (l, c) in f.layers.iter_mut().zip(layers) {
        *l = l.corrected(c.correction);
    }
    f
}

/// Run the calibration of `net` (its model quantized for the accelerator),
/// with `layers` the GEMM views of its MAC layers (operand statistics),
/// `base` the spec's register and SRAM transient rates, on `test`. `progress` is called
/// with work units done (images run).
pub fn calibrate(
    net: &Hardware<'_>,
    layers: &[GemmLayer],
    base: &TransientRates,
    test: TestSet<'_>,
    cfg: &CalibrationConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Calibration, HwNetError> {
    let model = net.model();
    let shape = base.shape();
    let per = model.input_shape().numel();
    let engine = FastEngine;
    let clean_logits = engine
        .run(model, test.images, 0, None)
        .map_err(|e| HwNetError::Fault {
            what: "clean run".into(),
            reason: e.to_string(),
        })?;
    let clean_accuracy = crate::eval::accuracy(&clean_logits, test.labels);

    // 1. Per-layer statistics.
    let n_img = cfg.layer_images.min(test.len()).max(1);
    let outs: Vec<Vec<Vec<i32>>> = (0..n_img)
        .into_par_iter()
        .map(|i| {
            crate::engine::reference::run_image_all(
                model,
                &test.images[i * per..(i + 1) * per],
                i as u64,
                None,
            )
        })
        .collect();
    // Expected flips per cycle over the whole array at `r = 1`.
    let unit_flips_per_cycle = net.flips_per_cycle(&shape.regs);
    if unit_flips_per_cycle == 0.0 {
        return Err(HwNetError::Fault {
            what: "calibration".into(),
            reason: "no register site has a transient rate".into(),
        });
    }
    let mut checks = Vec::new();
    let mut li = 0;
    for node in &model.nodes {
        let QOp::Mac(layer) = &node.op else { continue };
        let gl = &layers[li];
        li += 1;
        // A rate giving about four flips per layer run.
        let rate = 4.0 / (unit_flips_per_cycle * net.layer_cycles(li - 1, layer) as f64);
        let rates = shape.regs.scaled(rate);
        let d = net.derive_layer(gl, &rates);
        let inputs: Vec<Vec<i32>> = outs.iter().map(|o| o[node.inputs[0]].clone()).collect();
        let m = measure_layer(
            net,
            li - 1,
            layer,
            &inputs,
            &rates,
            cfg.layer_trials,
            cfg.seed,
        )?;
        let realized = derived_realized(net, li - 1, layer, &inputs, &d, cfg.seed)?;
        checks.push(LayerCheck {
            name: layer.name.clone(),
            rate,
            derived: d.p_out,
            measured: m.p_out,
            se: m.p_out_se,
            correction: if d.p_out > 0.0 && m.hits > 0 {
                m.p_out / d.p_out
            } else {
                1.0
            },
            measured_error: m.mean_error,
            measured_error_se: m.mean_error_se,
            derived_error: realized.error,
            measured_act_error: m.mean_act_error,
            derived_bits: realized.bits.iter().map(|w| w * d.p_out).collect(),
            measured_bits: m
                .bit_hist
                .iter()
                .map(|&h| h as f64 / m.outputs.max(1) as f64)
                .collect(),
            derived_act_error: realized.act_error,
        });
        progress((n_img as u64) * cfg.layer_trials / 8);
    }

    // 2. Network accuracy across the sweep.
    let mut points = Vec::new();
    for &r in &cfg.rates {
        let rates = shape.scaled(r);
        let flips_per_image = r * net.transient_flips_per_cycle(&shape) * net.cycles() as f64;
        let hw = hardware_accuracy(
            net,
            test,
            cfg.chips,
            &|chip| Ok(net.chip_at(&rates, cfg.seed, chip)),
            progress,
        )?;
        let derived = net.derive_transients(layers, &rates);
        let fit = fitted(&derived, &checks);
        points.push(RatePoint {
            rate: r,
            hardware: Summary::of(&hw),
            derived: Summary::of(&derived_accuracy(
                model, &derived, test, cfg.chips, cfg.seed, progress,
            )?),
            fitted: Summary::of(&derived_accuracy(
                model, &fit, test, cfg.chips, cfg.seed, progress,
            )?),
            flips_per_image,
        });
    }
    Ok(Calibration {
        shape,
        clean_accuracy,
        layers: checks,
        points,
    })
}

/// What `d`'s derived model does to real codes: one hit on every clean
/// pre-activation code of `inputs` (bit, sign and `up` as derived; 8
/// draws per code), the outcome measured as [`super::measure`] measures
/// the hardware's.
struct Realized {
    /// Mean |error| per changed output (pre-activation codes, in output
    /// steps): what the hits do to real codes, saturation at the rails
    /// shortening or cancelling some, not the bit weights' mean `sum_b
    /// p_b 2^b` (which over-states it on a layer whose codes sit near the
    /// rails).
    error: f64,
    /// Mean |error| after the activation per changed output.
    act_error: f64,
    /// Per hit, the chance that it changes the code with `floor(log2
    /// |error|) = b` (saturation can leave a hit unchanged, or shorten it).
    bits: Vec<f64>,
}

fn derived_realized(
    net: &Hardware<'_>,
    li: usize,
    layer: &crate::quant::MacLayer,
    inputs: &[Vec<i32>],
    d: &super::layer::LayerDerivation,
    seed: u64,
) -> Result<Realized, HwNetError> {
    use crate::fault::output_hit::{HitSign, OutputHit};
    use rand::SeedableRng;
    let model = OutputHit {
        p_out: 1.0,
        bit_weights: d.bit_weights.clone(),
        sign: HitSign::Random,
        multiplicity: vec![1.0],
        up: d.up.clone(),
        stream: None,
    };
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed ^ layer.node as u64);
    let top = layer.out_format.bits as usize - 1;
    let (mut draws, mut hits, mut err, mut act_err) = (0u64, 0u64, 0.0f64, 0.0f64);
    let mut hist = vec![0u64; top + 1];
    for x in inputs {
        let clean = net.layer_outputs(li, layer, x, &net.no_flips())?;
        let act = |v: i32| layer.activation.apply(v, layer.out_format);
        for _ in 0..8 {
            let mut hit = clean.clone();
            model.apply(layer.out_format.bits, &mut hit, &mut rng);
            draws += hit.len() as u64;
            for (h, c) in hit.iter().zip(&clean) {
                if h != c {
                    hits += 1;
                    act_err += f64::from((act(*h) - act(*c)).abs());
                    let e = (h - c).unsigned_abs();
                    err += f64::from(e);
                    hist[((u32::BITS - 1 - e.leading_zeros()) as usize).min(top)] += 1;
                }
            }
        }
    }
    Ok(Realized {
        error: err / hits.max(1) as f64,
        act_error: act_err / hits.max(1) as f64,
        bits: hist
            .iter()
            .map(|&h| h as f64 / draws.max(1) as f64)
            .collect(),
    })
}

/// Work units [`calibrate`] reports for a test set of `n` images.
pub fn work(cfg: &CalibrationConfig, n: usize, layers: usize) -> u64 {
    let per_rate = cfg.chips * n as u64 * 3;
    per_rate * cfg.rates.len() as u64
        + layers as u64 * (cfg.layer_images as u64 * cfg.layer_trials / 8)
}
