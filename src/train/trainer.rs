//! The training loop: epochs of shuffled, augmented mini-batches; SGD with a
//! schedule; quantization-aware forward after a float warm-up; the FTT loss
//! `L = (1 - alpha) CE(clean) + alpha CE(faulty)`; validation; a per-epoch
//! CSV log; a checkpoint after every epoch and an exact resume from it.
//!
//! Determinism: the data order and augmentation of epoch `e` come from
//! `fault::stream(seed, e, DATA_STREAM, 0)`, the fault samples of step `s`
//! from `fault::stream(seed ^ FAULT_SALT, s, image, layer)`, and every
//! reduction has a fixed order, so the run is a function of (config, seed)
//! and a resumed run is bit-identical to an uninterrupted one. The
//! checkpoint therefore holds parameters, BN statistics, momentum, the
//! epoch and the step; the random state is re-derived from (seed, epoch).
//!
//! Activation formats: the engine calibrates max|x| of every node on the
//! first training images with the float model (running BN statistics); the
//! trainer does the same with its float eval forward at the end of the
//! warm-up, at the start of each epoch and every `recalib_every` steps.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::network::{Faults, Mode, Network, Qat};
use super::optim::{cross_entropy, Schedule, Sgd};
use super::params::Params;
use crate::data::{Augment, Dataset};
use crate::fault::FaultModel;
use crate::fixed::{Datapath, Format};
use crate::model::{Graph, ModelError, Tensor};
use crate::report::{Csv, ReportError};

/// Stream index of the data order / augmentation randomness.
const DATA_STREAM: u64 = 0xDA7A;
/// Salt separating fault streams from data streams.
const FAULT_SALT: u64 = 0xF7_F7_F7_F7;
/// BN running-statistics momentum (PyTorch default).
const BN_MOMENTUM: f32 = 0.1;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training config: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{path}: checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
}

/// Fault-tolerant training: the fault model sampled afresh at every step
/// and the weight of the faulty loss.
#[derive(Debug, Clone)]
pub struct Ftt {
    pub model: FaultModel,
    pub alpha: f32,
}

/// Everything a run needs besides model and data.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: Schedule,
    /// Global gradient-norm clip (0 = off).
    pub clip: f32,
    pub augment: Augment,
    pub seed: u64,
    pub datapath: Datapath,
    /// Fake quantization after the warm-up (off = float training).
    pub qat: bool,
    /// Float steps before fake quantization starts (BN statistics settle).
    pub qat_warmup_steps: usize,
    /// Recalibrate activation formats every this many steps.
    pub recalib_every: usize,
    pub ftt: Option<Ftt>,
    /// Stop after this many epochs of this run (the schedule still spans
    /// `epochs`): a run in slices, resumed from the checkpoint.
    pub stop_after: Option<usize>,
    pub progress: bool,
    /// Per-epoch CSV log.
    pub log: Option<PathBuf>,
    /// Checkpoint written after every epoch.
    pub checkpoint: Option<PathBuf>,
}

impl TrainConfig {
    /// Defaults of `ftnas train`.
    pub fn new(epochs: usize, batch: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine,
            clip: 5.0,
            augment: Augment {
                pad: 2,
                flip: false,
            },
            seed: 0,
            datapath: Datapath::INT8,
            qat: true,
            qat_warmup_steps: 100,
            recalib_every: 100,
            ftt: None,
            stop_after: None,
            progress: false,
            log: None,
            checkpoint: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.batch < 2 {
            return bad("batch must be at least 2 (batch norm needs batch statistics)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum must be in [0, 1)");
        }
        if self.weight_decay < 0.0 || self.clip < 0.0 {
            return bad("weight decay and clip must be >= 0");
        }
        if let Some(f) = &self.ftt {
            if !(0.0..=1.0).contains(&f.alpha) {
                return bad("alpha must be in [0, 1]");
            }
            if !self.qat {
                return bad("FTT injects faults on fake-quantized codes: it needs QAT");
            }
            f.model
                .check_bits(self.datapath.act_bits, self.datapath.weight_bits)
                .map_err(|e| TrainError::Config(e.to_string()))?;
        }
        self.datapath.validate().map_err(TrainError::Config)?;
        Ok(())
    }
}

/// Statistics of one training step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    pub correct: usize,
    pub faulty_loss: f64,
    pub faulty_correct: usize,
    pub images: usize,
    pub grad_norm: f32,
}

/// One row of the per-epoch log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub faulty_loss: f64,
    pub faulty_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub qat: bool,
    pub seconds: f64,
}

/// Checkpoint metadata (the tensors live in the safetensors file).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    model: String,
    epochs_done: usize,
    step: usize,
    seed: u64,
    log: Vec<EpochLog>,
}

/// A training run in progress.
pub struct Trainer<'g> {
    pub net: Network<'g>,
    pub sgd: Sgd,
    pub cfg: TrainConfig,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Activation formats of the QAT forward (None before the warm-up ends).
    pub formats: Option<Vec<Format>>,
    pub log: Vec<EpochLog>,
    /// Optimizer steps per epoch (set by [`Trainer::run`]; the cosine
    /// schedule spans `steps_per_epoch * epochs`).
    pub steps_per_epoch: usize,
}

impl<'g> Trainer<'g> {
    /// A fresh run from initial parameters.
    pub fn new(
        graph: &'g Graph,
        cfg: TrainConfig,
        params: Params,
    ) -> Result<Trainer<'g>, TrainError> {
        cfg.validate()?;
        let sgd = Sgd::new(&params, cfg.momentum, cfg.weight_decay, cfg.clip);
        Ok(Trainer {
            net: Network::new(graph, params),
            sgd,
            cfg,
            epoch: 0,
            step: 0,
            formats: None,
            log: vec![],
            steps_per_epoch: 1,
        })
    }

    /// Continue the run saved in `path` (see [`Trainer::save_checkpoint`]).
    pub fn resume(
        graph: &'g Graph,
        cfg: TrainConfig,
        path: &Path,
    ) -> Result<Trainer<'g>, TrainError> {
        let err = |msg: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let meta_path = meta_path(path);
        let text = std::fs::read_to_string(&meta_path)
            .map_err(|e| err(format!("cannot read {}: {e}", meta_path.display())))?;
        let meta: CheckpointMeta = serde_json::from_str(&text)
            .map_err(|e| err(format!("{}: malformed: {e}", meta_path.display())))?;
        if meta.model != graph.name {
            return Err(err(format!(
                "saved for model `{}`, not `{}`",
                meta.model, graph.name
            )));
        }
        if meta.seed != cfg.seed {
            return Err(err(format!(
                "saved with seed {}, resumed with seed {} (an exact resume needs the same seed)",
                meta.seed, cfg.seed
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let file =
            SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not safetensors: {e}")))?;
        let read = |name: &str, len: usize| -> Result<Vec<f32>, TrainError> {
            let v = file
                .tensor(name)
                .map_err(|_| err(format!("missing tensor `{name}`")))?;
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if data.len() != len {
                return Err(err(format!(
                    "tensor `{name}` has {} values, expected {len}",
                    data.len()
                )));
            }
            Ok(data)
        };
        let mut trainer = Trainer::new(graph, cfg, Params::init(graph, 0))?;
        let p = &mut trainer.net.params;
        for i in 0..p.names.len() {
            p.data[i] = read(&p.names[i], p.data[i].len())?;
            trainer.sgd.velocity[i] = read(&format!("momentum.{}", p.names[i]), p.data[i].len())?;
        }
        trainer.epoch = meta.epochs_done;
        trainer.step = meta.step;
        trainer.log = meta.log;
        Ok(trainer)
    }

    /// Save parameters, momentum, epoch, step and log: `path` (safetensors)
    /// and `path` + `.json`.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        let mut w = self.net.params.to_weights();
        let p = &self.net.params;
        for i in 0..p.names.len() {
            w.insert(
                format!("momentum.{}", p.names[i]),
                Tensor::new(p.shapes[i].clone(), self.sgd.velocity[i].clone()),
            );
        }
        crate::model::save_weights(path, &w)?;
        let meta = CheckpointMeta {
            model: self.net.graph.name.clone(),
            epochs_done: self.epoch,
            step: self.step,
            seed: self.cfg.seed,
            log: self.log.clone(),
        };
        crate::report::write_json(&meta_path(path), &meta)?;
        Ok(())
    }

    /// True once fake quantization is on (QAT enabled and the warm-up over).
    pub fn qat_active(&self) -> bool {
        self.cfg.qat && self.step >= self.cfg.qat_warmup_steps
    }

    /// Set the activation formats from max|x| of every node over `calib`
    /// (float forward, running statistics), as the quantizer calibrates.
    pub fn calibrate(&mut self, calib: &[f32]) {
        let ranges = activation_ranges(&self.net, calib);
        self.formats = Some(self.net.plan.formats(&ranges, self.cfg.datapath.act_bits));
    }

    /// One optimizer step on a batch (already augmented).
    pub fn train_step(&mut self, images: &[f32], labels: &[u8]) -> StepStats {
        let n = labels.len();
        let total = self.total_steps();
        let lr = self
            .cfg
            .schedule
            .lr(self.cfg.lr, self.step, total, self.epoch, self.cfg.epochs) as f32;
        let formats = if self.qat_active() {
            self.formats.clone()
        } else {
            None
        };
        let qat = formats.as_deref().map(|f| Qat {
            formats: f,
            datapath: self.cfg.datapath,
        });
        let ftt = self.cfg.ftt.as_ref().filter(|_| qat.is_some());
        let alpha = ftt.map_or(0.0, |f| f.alpha);
        let net = &self.net;
        let faults = ftt.and(self.step_faults());
        // The clean and the faulty half of an FTT step depend only on the
        // parameters, so they run side by side: one half's parallel loops
        // leave cores idle between and inside layers (a QAT step keeps 1.80
        // of 2 cores busy), the other half fills them (1.98), at the price
        // of both tapes alive at once (ResNet-20 batch 128: 0.6 GB peak,
        // MobileNet-V2 4.2 GB). Each half has its own gradient buffers,
        // summed clean + faulty afterwards: the same floating-point sums as
        // accumulating one after the other into one buffer.
        //
        // One half: forward (clean without faults), cross entropy scaled by
        // its weight in the loss, backward into its own gradients, and the
        // batch's BN statistics (the clean half's update the running
        // estimates after both halves: the faulty half's weight
        // quantization reads the running statistics).
        //
        // The faulty forward normalises with its own batch statistics and
        // its gradient flows through them. Reusing the clean statistics as
        // constants (`Mode::Frozen`, what the folded engine does at
        // inference) made fine-tuning diverge: the frozen-normalisation
        // gradient keeps rescaling pre-BN activations against the fixed
        // fault step (ResNet-20 from the shipped weights, MiBB 1e-4, lr 0.01,
        // 180 steps: validation 93.7% with own statistics, 63.7% frozen;
        // README, FTT).
        let half = |faults: Option<Faults>, scale: f32| {
            let mut tape = net.forward(images, n, Mode::Train, qat, faults);
            let (loss, dlogits, correct) = cross_entropy(tape.logits(), labels, scale);
            let mut grads = net.params.zeros_like();
            net.backward(&tape, &dlogits, &mut grads);
            (loss, correct, grads, std::mem::take(&mut tape.bn))
        };
        let ((loss, correct, mut grads, bn_stats), faulty) = match ftt.zip(faults) {
            Some((f, faults)) => {
                let (c, fl) =
                    rayon::join(|| half(None, 1.0 - alpha), || half(Some(faults), f.alpha));
                (c, Some(fl))
            }
            _ => (half(None, 1.0 - alpha), None),
        };
        let mut stats = StepStats {
            loss,
            correct,
            images: n,
            ..StepStats::default()
        };
        if let Some((floss, fcorrect, fgrads, _)) = faulty {
            for (g, fg) in grads.iter_mut().zip(&fgrads) {
                for (a, b) in g.iter_mut().zip(fg) {
                    *a += b;
                }
            }
            stats.faulty_loss = floss;
            stats.faulty_correct = fcorrect;
        }
        for (id, st) in bn_stats.iter().enumerate() {
            if let Some(st) = st {
                let idx = self.net.params.of_node[id].clone();
                let p = &mut self.net.params.data;
                for (r, &m) in p[idx[2]].iter_mut().zip(&st.mean) {
                    *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * m;
                }
                for (r, &v) in p[idx[3]].iter_mut().zip(&st.var_unbiased) {
                    *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * v;
                }
            }
        }
        stats.grad_norm = self.sgd.step(&mut self.net.params, &grads, lr);
        self.step += 1;
        stats
    }

    /// The fault sample of the current step's faulty forward (FTT runs
    /// only): `fault::stream(seed ^ FAULT_SALT, step, image, layer)`.
    pub fn step_faults(&self) -> Option<Faults<'_>> {
        let f = self.cfg.ftt.as_ref()?;
        Some(Faults {
            feature: f.model.feature(),
            weight: f.model.weight(),
            seed: self.cfg.seed ^ FAULT_SALT,
            trial: self.step as u64,
            first_index: 0,
        })
    }

    fn total_steps(&self) -> usize {
        self.steps_per_epoch * self.cfg.epochs
    }

    /// Accuracy and mean loss on `data`: the QAT forward in evaluation form
    /// (BN folded, the engine's codes) once fake quantization is active,
    /// the float forward before.
    pub fn evaluate(&self, data: &Dataset) -> (f64, f64) {
        let qat = self.formats.as_deref().filter(|_| self.qat_active());
        evaluate(
            &self.net,
            data,
            qat.map(|f| Qat {
                formats: f,
                datapath: self.cfg.datapath,
            }),
        )
    }

    /// Train until `cfg.epochs` (or `cfg.stop_after` more epochs): `train`
    /// is shuffled and augmented every epoch, `val` evaluated after each,
    /// `calib` (images) sets the activation formats.
    pub fn run(&mut self, train: &Dataset, val: &Dataset, calib: &[f32]) -> Result<(), TrainError> {
        if train.len() < self.cfg.batch {
            return Err(TrainError::Config(format!(
                "the training set has {} images, fewer than one batch of {}",
                train.len(),
                self.cfg.batch
            )));
        }
        self.steps_per_epoch = train.len() / self.cfg.batch;
        let numel = train.shape.numel();
        let last = match self.cfg.stop_after {
            Some(k) => (self.epoch + k).min(self.cfg.epochs),
            None => self.cfg.epochs,
        };
        while self.epoch < last {
            let t0 = Instant::now();
            let epoch = self.epoch;
            let mut rng = crate::fault::stream(self.cfg.seed, epoch as u64, DATA_STREAM, 0);
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut rng);
            if self.qat_active() {
                self.calibrate(calib);
            }
            let bar = if self.cfg.progress {
                ProgressBar::new(self.steps_per_epoch as u64)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} {bar:30} {pos}/{len} steps {per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, self.cfg.epochs));
            let mut sum = StepStats::default();
            let lr = self.cfg.schedule.lr(
                self.cfg.lr,
                self.step,
                self.total_steps(),
                epoch,
                self.cfg.epochs,
            );
            let mut images = vec![0.0f32; self.cfg.batch * numel];
            let mut labels = vec![0u8; self.cfg.batch];
            for batch in order.chunks_exact(self.cfg.batch) {
                for (k, &i) in batch.iter().enumerate() {
                    let img = &mut images[k * numel..(k + 1) * numel];
                    img.copy_from_slice(train.image(i));
                    self.cfg.augment.apply(img, train.shape, &mut rng);
                    labels[k] = train.labels[i];
                }
                let warm_up_ends = self.cfg.qat && self.step == self.cfg.qat_warmup_steps;
                let periodic = self.qat_active()
                    && self.cfg.recalib_every > 0
                    && self.step.is_multiple_of(self.cfg.recalib_every);
                if warm_up_ends || periodic {
                    self.calibrate(calib);
                }
                let st = self.train_step(&images, &labels);
                sum.loss += st.loss * st.images as f64;
                sum.faulty_loss += st.faulty_loss * st.images as f64;
                sum.correct += st.correct;
                sum.faulty_correct += st.faulty_correct;
                sum.images += st.images;
                bar.set_message(format!("loss {:.3}", st.loss));
                bar.inc(1);
                // Without a terminal (background runs, logs) the bar does
                // not draw: print a line every tenth of the epoch instead.
                let done = bar.position() as usize;
                let every = self.steps_per_epoch.div_ceil(10).max(1);
                if self.cfg.progress && bar.is_hidden() && done.is_multiple_of(every) {
                    let secs = t0.elapsed().as_secs_f64();
                    let left = self.steps_per_epoch.saturating_sub(done);
                    eprintln!(
                        "epoch {}/{}: step {done}/{}, loss {:.4}, acc {:.4}, {:.0} s, eta {:.0} s",
                        epoch + 1,
                        self.cfg.epochs,
                        self.steps_per_epoch,
                        sum.loss / sum.images.max(1) as f64,
                        sum.correct as f64 / sum.images.max(1) as f64,
                        secs,
                        secs / done as f64 * left as f64
                    );
                }
            }
            bar.finish_and_clear();
            let (val_loss, val_acc) = if val.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                self.evaluate(val)
            };
            let m = sum.images.max(1) as f64;
            let row = EpochLog {
                epoch: epoch + 1,
                lr,
                train_loss: sum.loss / m,
                train_acc: sum.correct as f64 / m,
                faulty_loss: sum.faulty_loss / m,
                faulty_acc: sum.faulty_correct as f64 / m,
                val_loss,
                val_acc,
                qat: self.qat_active(),
                seconds: t0.elapsed().as_secs_f64(),
            };
            if self.cfg.progress {
                eprintln!(
                    "epoch {}/{}: loss {:.4} acc {:.4}{} | val loss {:.4} acc {:.4} | {:.1} s",
                    row.epoch,
                    self.cfg.epochs,
                    row.train_loss,
                    row.train_acc,
                    if self.cfg.ftt.is_some() {
                        format!(
                            " faulty loss {:.4} acc {:.4}",
                            row.faulty_loss, row.faulty_acc
                        )
                    } else {
                        String::new()
                    },
                    row.val_loss,
                    row.val_acc,
                    row.seconds
                );
            }
            self.log.push(row);
            self.epoch += 1;
            if let Some(path) = &self.cfg.log {
                log_csv(&self.log).write(path)?;
            }
            if let Some(path) = self.cfg.checkpoint.clone() {
                self.save_checkpoint(&path)?;
            }
        }
        Ok(())
    }
}

/// The per-epoch log as CSV.
pub fn log_csv(rows: &[EpochLog]) -> Csv {
    let mut csv = Csv::new([
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "faulty_loss",
        "faulty_acc",
        "val_loss",
        "val_acc",
        "qat",
        "seconds",
    ]);
    for r in rows {
        csv.push([
            r.epoch.to_string(),
            r.lr.to_string(),
            r.train_loss.to_string(),
            r.train_acc.to_string(),
            r.faulty_loss.to_string(),
            r.faulty_acc.to_string(),
            r.val_loss.to_string(),
            r.val_acc.to_string(),
            r.qat.to_string(),
            format!("{:.3}", r.seconds),
        ])
        .expect("row width matches the header");
    }
    csv
}

/// The metadata file beside a checkpoint.
pub fn meta_path(checkpoint: &Path) -> PathBuf {
    let mut s = checkpoint.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Images per evaluation forward (bounds the tape's memory).
const EVAL_CHUNK: usize = 256;

/// max|x| of every node's output over `images`: float forward with running
/// BN statistics (the quantizer's calibration).
pub fn activation_ranges(net: &Network, images: &[f32]) -> Vec<f32> {
    let numel = net.graph.input_shape().numel();
    let mut ranges = vec![0.0f32; net.graph.nodes.len()];
    for chunk in images.chunks(EVAL_CHUNK * numel) {
        let tape = net.forward(chunk, chunk.len() / numel, Mode::Eval, None, None);
        for (r, out) in ranges.iter_mut().zip(&tape.outs) {
            *r = out.iter().fold(*r, |m, &x| m.max(x.abs()));
        }
    }
    ranges
}

/// Mean loss and accuracy of `net` on `data` (eval forward, QAT if given).
pub fn evaluate(net: &Network, data: &Dataset, qat: Option<Qat>) -> (f64, f64) {
    let numel = data.shape.numel();
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (k, chunk) in data.images.chunks(EVAL_CHUNK * numel).enumerate() {
        let n = chunk.len() / numel;
        let labels = &data.labels[k * EVAL_CHUNK..k * EVAL_CHUNK + n];
        let tape = net.forward(chunk, n, Mode::Eval, qat, None);
        let (l, _, c) = cross_entropy(tape.logits(), labels, 1.0);
        loss += l * n as f64;
        correct += c;
    }
    let m = data.len().max(1) as f64;
    (loss / m, correct as f64 / m)
}
