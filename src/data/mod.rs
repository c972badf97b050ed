//! Datasets. SKELETON: the data work fills this in (IDX, CIFAR-10 loaders).

use std::path::{Path, PathBuf};

use crate::model::Shape;

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Images as f32 in [0, 1], N x C x H x W row-major, with their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub shape: Shape,
    pub num_classes: usize,
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.shape.numel();
        &self.images[i * n..(i + 1) * n]
    }
}

/// Errors reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
}

/// Load `split` from `dir` (IDX or CIFAR-10 binary), or from the default
/// Fashion-MNIST location when `dir` is None.
pub fn load(dir: Option<&Path>, split: Split) -> Result<Dataset, DataError> {
    let _ = split;
    Err(DataError::File {
        path: dir.map(Path::to_path_buf).unwrap_or_default(),
        msg: "dataset loading is not built yet".into(),
    })
}
