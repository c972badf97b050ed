//! Datasets: the images every other part trains, evaluates and injects faults
//! on.
//!
//! This module owns reading the two on-disk formats the project uses and
//! turning them into one in-memory [`Dataset`] (f32 pixels in [0, 1], N x C x
//! H x W, one `u8` label per image):
//!
//! - `source`: finding the files of a split in a directory and reading them
//!   (raw or gzip, detected from the gzip magic, not from the name).
//! - `idx`: the IDX format of MNIST and Fashion-MNIST.
//! - `cifar`: the CIFAR-10 binary format (3073-byte records).
//! - `subset`: sub-datasets (ranges, index lists, a deterministic stratified
//!   validation split).
//! - `batch`: iterating a dataset in mini-batches, in order or shuffled.
//! - `augment`: random crop with zero padding and horizontal flip.
//!
//! A corrupt or truncated file never panics: every check that can fail on
//! file content returns a [`DataError`] naming the file and what was wrong.

mod augment;
mod batch;
mod cifar;
mod idx;
mod source;
mod subset;

use std::path::{Path, PathBuf};

use crate::model::Shape;

pub use augment::{hflip, random_crop, random_hflip, Augment};
pub use batch::{Batch, BatchRef, Batches, ShuffledBatches};
pub use cifar::{load_cifar10, parse_cifar10, CIFAR10_RECORD_BYTES};
pub use idx::{encode_idx, load_idx, parse_idx, IdxArray};
pub use source::{detect, Format, DEFAULT_DIR};

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
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

    /// Number of images of each class (index = label).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Mean and standard deviation of the pixels of each channel (for input
    /// normalization by the training code).
    pub fn channel_mean_std(&self) -> Vec<(f32, f32)> {
        let plane = self.shape.h * self.shape.w;
        let mut sums = vec![(0.0f64, 0.0f64); self.shape.c];
        for img in self.images.chunks_exact(self.shape.numel().max(1)) {
            for (c, px) in img.chunks_exact(plane.max(1)).enumerate() {
                let (s, s2) = &mut sums[c];
                for &p in px {
                    *s += f64::from(p);
                    *s2 += f64::from(p) * f64::from(p);
                }
            }
        }
        let n = (self.len() * plane) as f64;
        sums.into_iter()
            .map(|(s, s2)| {
                if n == 0.0 {
                    return (0.0, 0.0);
                }
                let mean = s / n;
                let var = (s2 / n - mean * mean).max(0.0);
                (mean as f32, var.sqrt() as f32)
            })
            .collect()
    }
}

/// Errors reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A dataset file is corrupt, truncated or not of the expected kind.
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    /// A dataset file exists (or was expected) but could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No dataset of a known format in the directory.
    #[error("no dataset found in {dir}: expected {expected}")]
    Missing { dir: PathBuf, expected: String },
    /// The default Fashion-MNIST (Debian package) is not installed.
    #[error(
        "the default dataset Fashion-MNIST was not found in {dir} ({detail}); \
         install it with `apt-get install -y dataset-fashion-mnist`, \
         or pass a directory holding MNIST/Fashion-MNIST IDX files or CIFAR-10 binary batches"
    )]
    DefaultMissing { dir: PathBuf, detail: String },
    /// A helper was called with an argument outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DataError {
    pub(crate) fn file(path: &Path, msg: impl Into<String>) -> DataError {
        DataError::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Load `split` from `dir` (IDX or CIFAR-10 binary), or from the default
/// Fashion-MNIST location when `dir` is None.
///
/// The format is detected from the files present in `dir` (see [`detect`]):
/// MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-...`) or CIFAR-10 binary batches
/// (`data_batch_1.bin`..`data_batch_5.bin`, `test_batch.bin`, also inside a
/// `cifar-10-batches-bin/` subdirectory).
pub fn load(dir: Option<&Path>, split: Split) -> Result<Dataset, DataError> {
    match dir {
        Some(dir) => load_dir(dir, split),
        None => load_default(Path::new(DEFAULT_DIR), split),
    }
}

/// Fashion-MNIST from `dir`, where the Debian package puts it; a missing
/// package gets an error saying how to install it.
fn load_default(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    match detect(dir, split) {
        Ok(Format::Idx { images, labels }) => idx::load_idx(&images, &labels, "fashion-mnist"),
        Ok(Format::Cifar10 { .. }) => Err(DataError::DefaultMissing {
            dir: dir.to_path_buf(),
            detail: "it holds CIFAR-10 files instead of Fashion-MNIST".into(),
        }),
        Err(e) => Err(DataError::DefaultMissing {
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

fn load_dir(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    match detect(dir, split)? {
        Format::Idx { images, labels } => idx::load_idx(&images, &labels, &idx_name(dir)),
        Format::Cifar10 { files } => cifar::load_cifar10(&files),
    }
}

/// A name for an IDX dataset, from its directory (both MNIST and
/// Fashion-MNIST use the same file names).
fn idx_name(dir: &Path) -> String {
    let s = dir.to_string_lossy().to_ascii_lowercase();
    if s.contains("fashion") {
        "fashion-mnist".into()
    } else if s.contains("mnist") {
        "mnist".into()
    } else {
        "idx".into()
    }
}

/// Convert 8-bit pixels to f32 in [0, 1].
pub(crate) fn pixels_to_f32(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(bytes.iter().map(|&b| f32::from(b) / 255.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset {
            name: "t".into(),
            shape: Shape::new(2, 1, 2),
            num_classes: 3,
            images: vec![0.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.0, 0.0],
            labels: vec![2, 0],
        }
    }

    #[test]
    fn class_counts_and_stats() {
        let d = tiny();
        assert_eq!(d.class_counts(), vec![1, 0, 1]);
        let ms = d.channel_mean_std();
        assert_eq!(ms.len(), 2);
        // Channel 0 holds 0, 1, 1, 1; channel 1 holds 0.5, 0.5, 0, 0.
        assert!((ms[0].0 - 0.75).abs() < 1e-6);
        assert!((ms[0].1 - 0.1875f32.sqrt()).abs() < 1e-6);
        assert!((ms[1].1 - 0.25).abs() < 1e-6);
        assert!((ms[1].0 - 0.25).abs() < 1e-6);
    }

    #[test]
    fn missing_default_dataset_says_how_to_install() {
        let dir = std::env::temp_dir().join("ftnas-no-such-dataset-dir");
        let e = load_default(&dir, Split::Train).unwrap_err().to_string();
        assert!(
            e.contains("apt-get install -y dataset-fashion-mnist"),
            "{e}"
        );
        assert!(e.contains("ftnas-no-such-dataset-dir"), "{e}");
    }

    #[test]
    fn names_from_directory() {
        assert_eq!(idx_name(Path::new("/x/fashion-mnist")), "fashion-mnist");
        assert_eq!(idx_name(Path::new("/x/MNIST/raw")), "mnist");
        assert_eq!(idx_name(Path::new("/x/y")), "idx");
    }

    #[test]
    fn pixel_conversion_hits_both_ends() {
        let mut v = Vec::new();
        pixels_to_f32(&[0, 255, 51], &mut v);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[1], 1.0);
        assert!((v[2] - 0.2).abs() < 1e-7);
    }
}
