//! Fault-injection campaigns: many simulated faulty chips classifying the
//! same images, summarized as accuracy under faults, silent-data-corruption
//! rate and a vulnerability table.
//!
//! This module owns the campaign machinery and nothing about how a chip is
//! simulated. A simulator implements [`ChipSimulator`] (fault-free logits,
//! and the logits plus the list of injected faults of one chip); the
//! campaign runs chips in parallel, classifies every image of every chip
//! against the fault-free run, journals finished chips, and reports.
//!
//! - `simulator`: the [`ChipSimulator`] trait and what a chip returns.
//! - `engine_chip`: [`EngineChip`], the fixed-point fast engine under an
//!   algorithmic [`crate::fault::FaultModel`] (weight faults persistent per
//!   chip, feature faults drawn per image).
//! - `hw_chip`: [`HwChip`], the cycle-level systolic model
//!   ([`crate::hwsim::HwNetwork`]) under a hardware fault specification.
//! - `config`: [`CampaignConfig`], what identifies a campaign (input file
//!   contents, images, chips, seed, parameters) and its hash.
//! - `shard`: [`Shard`], `i/n`; chip `c` belongs to shard `c % n`.
//! - `classify`: one chip's outcome -> its [`ChipRecord`] (per-image
//!   outcome masked / SDC / other, per-(site, layer) vulnerability counts).
//! - `journal`: the append-only JSONL journal of finished chips and the
//!   manifest (`campaign.json`) of an output directory.
//! - `stats`: mean, std, quantiles, confidence interval over chips.
//! - `results`: [`CampaignResult`] from chip records; stdout tables, CSV and
//!   JSON files.
//! - `runner`: [`run_campaign`], resumable and shardable.
//! - `merge`: [`merge_shards`], shard directories -> the unsharded result.
//!
//! # Determinism
//!
//! Chip `c` draws all its randomness from `fault::stream(seed, c, ..)`, and
//! every number in the results is computed from integer per-chip counts
//! taken in chip order. So the result does not depend on the thread count,
//! on how chips are split into shards, or on interruptions: a campaign run
//! in one piece, in shards merged with `ftnas merge`, or resumed after a
//! kill writes byte-identical result files.

mod classify;
mod config;
mod engine_chip;
mod hw_chip;
mod journal;
mod merge;
mod results;
mod runner;
mod shard;
mod simulator;
mod stats;

use std::path::PathBuf;

pub use classify::{classify_chip, CleanRun, ImageOutcome};
pub use config::{fnv1a64, CampaignConfig, InputFile};
pub use engine_chip::EngineChip;
pub use hw_chip::{HwChip, EVERY_LAYER};
pub use journal::{ChipRecord, Manifest, VulnCounts, VulnRow};
pub use merge::merge_shards;
pub use results::{AccuracyStats, CampaignResult, VulnTableRow};
pub use runner::{run_campaign, Campaign, RunOptions};
pub use shard::Shard;
pub use simulator::{ChipOutcome, ChipSimulator, FaultRecord, FaultScope};
pub use stats::{mean_std, quantile};

/// Errors of a campaign: bad setup, a simulator failure, an output
/// directory that belongs to another campaign, a broken journal, shards that
/// do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// A setup value is out of range (`--chips 0`, no images, ...).
    #[error("{0}")]
    Invalid(String),
    /// `--shard` text that is not `i/n` with `i < n`.
    #[error("shard `{text}`: {message}")]
    Shard { text: String, message: String },
    /// The simulator failed on a chip (or on the fault-free run: `chip`
    /// is `None`).
    #[error("{}: {message}", chip.map_or("fault-free run".to_string(), |c| format!("chip {c}")))]
    Simulator { chip: Option<u64>, message: String },
    /// Reading or creating a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file in an output directory is not what this campaign wrote.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A journal line is broken.
    #[error("{path}:{line}: {message}")]
    Journal {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The output directory holds a different campaign or shard.
    #[error("{dir}: {message}")]
    Mismatch { dir: PathBuf, message: String },
    /// Shards given to merge do not form one whole campaign.
    #[error("merge: {0}")]
    Merge(String),
    /// Writing a result failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

impl CampaignError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> CampaignError {
        CampaignError::Io {
            path: path.into(),
            source,
        }
    }
}
