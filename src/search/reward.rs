//! The reward of a candidate: clean and faulty accuracy of its network
//! (weights from the super-net) on held-out images,
//! `R = (1 - beta) acc_clean + beta acc_fault`, optionally penalised by its
//! cycles on an accelerator: `R' = R - lambda max(0, cycles / target - 1)`,
//! or, as a hard constraint, `R' = 0` over the target.
//!
//! Both forwards are the fake-quantized forwards of FTT training
//! ([`crate::train::Network::forward`]): the clean one normalises with the
//! batch's own statistics (shared BN running statistics belong to no single
//! architecture, as in ENAS), the faulty one reuses those statistics and
//! injects with the same [`FaultModel`] injectors as the engine and the
//! trainer, on the streams `fault::stream(seed, trial, image, layer)`.

use serde::{Deserialize, Serialize};

use super::supernet::batch_formats;
use crate::fault::FaultModel;
use crate::fixed::Datapath;
use crate::train::{cross_entropy, Faults, Mode, Network, Qat};

/// Images per reward forward (bounds the tape's memory).
pub const REWARD_CHUNK: usize = 256;

/// A cycle budget on the accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CyclePenalty {
    /// Target cycles per image.
    pub target: u64,
    /// Penalty weight (soft constraint).
    pub lambda: f64,
    /// Hard constraint: a candidate over the target gets reward 0.
    pub hard: bool,
}

/// How accuracies become a reward.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// Weight of the faulty accuracy (paper: 0.5 feature, 0.2 weight).
    pub beta: f64,
    pub penalty: Option<CyclePenalty>,
}

impl RewardConfig {
    /// `R' ` from the accuracies and, when a penalty is set, the cycles.
    pub fn reward(&self, clean: f64, fault: f64, cycles: Option<u64>) -> f64 {
        let r = (1.0 - self.beta) * clean + self.beta * fault;
        match (self.penalty, cycles) {
            (Some(p), Some(c)) if p.target > 0 => {
                let over = c as f64 / p.target as f64 - 1.0;
                if p.hard {
                    if over > 0.0 {
                        0.0
                    } else {
                        r
                    }
                } else {
                    r - p.lambda * over.max(0.0)
                }
            }
            _ => r,
        }
    }
}

/// Clean and faulty accuracy of `net` on `images`/`labels`, activation
/// formats calibrated on `calib`. The faulty accuracy is the mean over
/// the fault trials `trials` (one simulated chip each): weight faults are
/// drawn once per trial, so one trial scores a candidate on one chip, and
/// trained networks differ by tens of points from chip to chip under
/// adSAF. Averaging several trials is what makes weight-fault rewards
/// rank architectures rather than chips.
#[allow(clippy::too_many_arguments)]
pub fn accuracies(
    net: &Network,
    images: &[f32],
    labels: &[u8],
    calib: &[f32],
    datapath: Datapath,
    faults: &FaultModel,
    seed: u64,
    trials: std::ops::Range<u64>,
) -> (f64, f64) {
    assert!(!trials.is_empty(), "at least one fault trial");
    let formats = batch_formats(net, calib, datapath.act_bits);
    let qat = Qat {
        formats: &formats,
        datapath,
    };
    let numel = net.graph.input_shape().numel();
    let (mut clean, mut fault) = (0usize, 0usize);
    for (k, chunk) in images.chunks(REWARD_CHUNK * numel).enumerate() {
        let n = chunk.len() / numel;
        let first = k * REWARD_CHUNK;
        let y = &labels[first..first + n];
        let tape = net.forward(chunk, n, Mode::Train, Some(qat), None);
        clean += cross_entropy(tape.logits(), y, 1.0).2;
        for trial in trials.clone() {
            let f = Faults {
                feature: faults.feature(),
                weight: faults.weight(),
                seed,
                trial,
                first_index: first as u64,
            };
            let ftape = net.forward(chunk, n, Mode::Frozen(&tape.bn), Some(qat), Some(f));
            fault += cross_entropy(ftape.logits(), y, 1.0).2;
        }
    }
    let m = labels.len().max(1) as f64;
    let chips = (trials.end - trials.start) as f64;
    (clean as f64 / m, fault as f64 / (m * chips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_formula_and_penalties() {
        let r = RewardConfig {
            beta: 0.2,
            penalty: None,
        };
        assert!((r.reward(0.9, 0.5, Some(10)) - (0.72 + 0.1)).abs() < 1e-12);
        let soft = RewardConfig {
            beta: 0.5,
            penalty: Some(CyclePenalty {
                target: 100,
                lambda: 0.5,
                hard: false,
            }),
        };
        assert!((soft.reward(0.8, 0.6, Some(100)) - 0.7).abs() < 1e-12);
        assert!((soft.reward(0.8, 0.6, Some(150)) - 0.45).abs() < 1e-12);
        assert!((soft.reward(0.8, 0.6, None) - 0.7).abs() < 1e-12);
        let hard = RewardConfig {
            beta: 0.5,
            penalty: Some(CyclePenalty {
                target: 100,
                lambda: 0.0,
                hard: true,
            }),
        };
        assert_eq!(hard.reward(0.8, 0.6, Some(101)), 0.0);
        assert!((hard.reward(0.8, 0.6, Some(99)) - 0.7).abs() < 1e-12);
    }
}
