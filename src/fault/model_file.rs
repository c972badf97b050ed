//! The `FaultModel`: which algorithmic fault models apply to which layers,
//! with their parameters; read from TOML or from CLI shorthands.
//! SKELETON: the fault work fills this in.

use std::path::Path;

use super::{FeatureInjector, WeightInjector};

/// Errors reading or parsing a fault model.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0}")]
    Invalid(String),
}

/// A complete algorithmic fault model (feature and/or weight part).
pub struct FaultModel {
    feature: Option<Box<dyn FeatureInjector>>,
    weight: Option<Box<dyn WeightInjector>>,
    weight_persistent: bool,
}

impl FaultModel {
    /// No faults.
    pub fn none() -> FaultModel {
        FaultModel {
            feature: None,
            weight: None,
            weight_persistent: true,
        }
    }
    /// Parse `--feature-fault` shorthands such as `mibb:1e-4`, `bitflip:1e-5`.
    pub fn parse_feature_flag(s: &str) -> Result<FaultModel, FaultError> {
        Err(FaultError::Invalid(format!(
            "feature fault `{s}`: not built yet"
        )))
    }
    /// Parse `--weight-fault` shorthands such as `sa:1e-3`, `adsaf:0.08`.
    pub fn parse_weight_flag(s: &str) -> Result<FaultModel, FaultError> {
        Err(FaultError::Invalid(format!(
            "weight fault `{s}`: not built yet"
        )))
    }
    /// Read a fault-model TOML file.
    pub fn load(path: &Path) -> Result<FaultModel, FaultError> {
        Err(FaultError::Invalid(format!(
            "{}: not built yet",
            path.display()
        )))
    }
    /// The feature-fault part, if any.
    pub fn feature(&self) -> Option<&dyn FeatureInjector> {
        self.feature.as_deref()
    }
    /// The weight-fault part, if any.
    pub fn weight(&self) -> Option<&dyn WeightInjector> {
        self.weight.as_deref()
    }
    /// True when weight faults are sampled once per chip (inference), false
    /// when resampled every forward (training).
    pub fn weight_persistent(&self) -> bool {
        self.weight_persistent
    }
}
