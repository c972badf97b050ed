//! Accuracy evaluation of quantized models, clean and under algorithmic
//! fault models: the pipeline `ftnas infer` and `ftnas eval` share, and the
//! accuracy-vs-fault-rate sweep.
//!
//! - `pipeline`: model file + weights + calibration images -> [`QModel`]
//!   ([`load_quantized`]), engine runs in chunks with progress, accuracy,
//!   one faulty chip ([`chip_accuracy`]).
//! - `rate`: what a fault *rate* means for each fault-model kind
//!   ([`RateScaler`] turns one fault model into the model at rate r).
//! - `stats`: mean, sample std and 95% confidence interval over chips.
//! - `sweep`: clean accuracy plus, per rate, the accuracy of every chip
//!   (rayon across chips and rates, deterministic for any thread count).
//! - `report`: the sweep of one or several models as a stdout table, CSV,
//!   JSON and an SVG plot (through [`crate::report`]).
//!
//! Randomness: chip `c` draws its weight faults from
//! `fault::stream(seed, c, u64::MAX, layer)` once (a persistent chip) and its
//! feature faults from `fault::stream(seed, c, image, layer)`; the same chip
//! indices are used at every rate and for every model (common random
//! numbers), so curves are smooth and comparisons between models are paired.
//!
//! [`QModel`]: crate::quant::QModel

pub mod pipeline;
pub mod rate;
pub mod report;
pub mod stats;
pub mod sweep;

pub use pipeline::{
    accuracy, check_fault_model, chip_accuracy, first_images, load_quantized, run_chunked,
    Quantized,
};
pub use rate::{RateMode, RateScaler};
pub use report::{EvalReport, ModelResult};
pub use stats::{t_quantile_975, Summary};
pub use sweep::{sweep, Curve, RatePoint, SweepConfig};

use std::path::PathBuf;

/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Fault(#[from] crate::fault::FaultError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Quantization (calibration, datapath) of a model file failed.
    #[error("quantizing {path}: {source}")]
    Quant {
        path: PathBuf,
        source: crate::quant::QuantError,
    },
    /// The model does not fit the dataset.
    #[error("{path}: {msg}")]
    ModelData { path: PathBuf, msg: String },
    /// A setting (rates, chips, images, fault model) is unusable.
    #[error("{0}")]
    Invalid(String),
}
