//! Training on the CPU: quantization-aware training (QAT) and fault-tolerant
//! training (FTT) of any network of the model IR.
//!
//! This module owns everything that computes gradients. Nothing outside it
//! (engine, hwsim, accel, quant) depends on it; it depends on the model IR,
//! the quantizer's rules, the fault injectors and the data sets.
//!
//! - `gemm`: f32 GEMM (`matrixmultiply::sgemm`) on strided views.
//! - `conv`, `layers`: forward/backward kernels of every op on N x C x H x W
//!   batches (im2col + GEMM convolutions, parallel over images).
//! - `fake_quant`: the engine's fixed-point scheme on f32 grids, and the
//!   quantization plan (which node is requantized, BN folding, fault hooks).
//! - `params`: parameter tensors, to and from [`crate::model::Weights`].
//! - `network`: the graph walker (forward with a tape, backward in reverse),
//!   with clean, faulty and exact-fold evaluation forwards.
//! - `optim`: cross-entropy, SGD with momentum and weight decay, schedules.
//! - `trainer`: the epoch loop (augmentation, validation split, FTT loss,
//!   calibration of activation formats, CSV log, checkpoints and resume).
//!
//! Why hand-written: burn 0.22 (`flex` backend) trained ResNet-20 at 103
//! images/s here and builds for minutes, while an im2col + f32 GEMM
//! convolution was 2x faster per layer; a per-op backward over the crate's
//! own IR is small (one rule per [`crate::model::Op`]) and lets the fault
//! injectors run on the exact integer codes of the fake-quantized forward.

pub mod conv;
pub mod fake_quant;
pub mod gemm;
pub mod layers;
pub mod network;
pub mod optim;
pub mod params;

pub use fake_quant::{Grid, QuantPlan};
pub use network::{Faults, HitCount, Mode, Network, Qat, Tape};
pub use optim::{cross_entropy, Schedule, Sgd};
pub use params::Params;
pub mod trainer;
pub use trainer::{Ftt, StepStats, TrainConfig, TrainError, Trainer};
