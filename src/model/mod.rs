//! Networks: the graph IR ([`ir`]), the family builders (ResNet, MobileNet-V2,
//! VGG, cell genotypes), the TOML model files under `models/` and the f32
//! safetensors weights.
//!
//! Everything downstream (quantizer, engines, accelerator mapping, fault
//! models, training, search) consumes a [`Graph`]; nothing else in the crate
//! knows how a network was described.

pub mod ir;

pub use ir::{Graph, GraphBuilder, Node, NodeId, Op, Shape};

use std::path::PathBuf;

/// Errors from building, reading or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The graph is inconsistent (shape mismatch, bad parameters).
    #[error("invalid graph: {0}")]
    Graph(String),
    /// A model file could not be read or is malformed.
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    /// Weights are missing, of the wrong shape or malformed.
    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },
    /// A result file could not be written.
    #[error(transparent)]
    Write(#[from] crate::report::ReportError),
}

pub mod file;
pub mod float;
pub mod weights;

pub use file::load_model;
pub use weights::{Tensor, Weights};
pub mod blocks;
pub mod genotype;
pub mod mobilenetv2;
pub mod resnet;
pub mod safetensors_io;
pub mod vgg;

pub use file::{read_model, ModelSpec};
pub use genotype::{CellNetConfig, CellOp, Edge, Genotype};
pub use safetensors_io::{load_weights, save_weights, save_weights_as, WeightDtype};
