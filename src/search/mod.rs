//! FTT-NAS: the fault-tolerant neural architecture search loop.
//!
//! # ARCHITECTURE
//!
//! ```text
//!               +---------------- controller ----------------+
//!               |  evolution (population, tournament,        |
//!               |  mutation)  or  LSTM + REINFORCE           |
//!               +--------------------------------------------+
//!        genotype |  (sample for training)     ^ reward R'
//!                 v                            |
//!  space::SearchSpace --spec--> model IR Graph |
//!                 |                            |
//!                 v                            |
//!  supernet::SuperNet (shared weights, keyed   |
//!  by cell/node/slot/input/op) --Params--> train::Trainer
//!      ^   FTT step on a batch of the          |  (clean + faulty CE)
//!      |   weights split, weights written back |
//!      +---------------------------------------+
//!                 |
//!                 v
//!  reward::accuracies (held-out reward split, clean and faulty forward
//!  with the same fault::FaultModel) -> R = (1-beta) acc_clean + beta acc_fault
//!  [- lambda max(0, cycles/target - 1), cycles from accel::time_graph]
//! ```
//!
//! One search step ([`driver::Search::step`]) = `train_batches` super-net
//! steps, each on a genotype the controller samples for training (the
//! policy for RL, a uniform random genotype for evolution), then one
//! candidate proposed by the controller, scored and fed back. The log keeps
//! every candidate (genotype, clean and faulty accuracy, reward, MACs,
//! parameters, cycles).
//!
//! Modules:
//! - [`space`]: the cell search space (op sets, nodes, channels), decision
//!   encoding, random sampling and mutation, genotype -> model file.
//! - [`supernet`]: the shared-parameter store and its FTT training step.
//! - [`reward`]: clean/faulty accuracy and the (hardware-penalised) reward.
//! - [`evolution`]: regularized evolution.
//! - [`lstm`]: the LSTM controller with REINFORCE, EMA baseline, entropy
//!   bonus and Adam (hand-written backward, gradient-checked).
//! - [`driver`]: the loop, checkpoints and exact resume, output files.
//!
//! Determinism: every random draw comes from `fault::stream(seed, step,
//! purpose, k)`, so a run is a function of (config, seed); a checkpoint holds
//! the super-net (parameters and momentum, safetensors), the controller
//! state and the log with floats as bit patterns, and a resumed run is
//! identical to an uninterrupted one.

pub mod driver;
pub mod evolution;
pub mod lstm;
pub mod reward;
pub mod space;
pub mod supernet;

pub use driver::{Candidate, Search, SearchConfig, Strategy};
pub use reward::{CyclePenalty, RewardConfig};
pub use space::{OpSet, SearchSpace};
pub use supernet::SuperNet;

use std::path::PathBuf;

/// Errors of a search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A bad setting (search space, controller, budget).
    #[error("search config: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Timing(#[from] crate::accel::network::TimingError),
    #[error("{path}: checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A broken internal invariant (reported, never a panic).
    #[error("internal: {0}")]
    Internal(String),
}
