//! The CIFAR-10 binary format: files of 3073-byte records, each a label byte
//! (0..10) followed by the 32x32 red plane, the green plane and the blue
//! plane, row-major. That is already C x H x W order, so a record's pixels
//! map straight onto one image of the dataset.

use std::path::{Path, PathBuf};

use super::{pixels_to_f32, DataError, Dataset};
use crate::model::Shape;

/// Bytes of one record: one label byte and 3 x 32 x 32 pixels.
pub const CIFAR10_RECORD_BYTES: usize = 1 + 3 * 32 * 32;

const CIFAR10_CLASSES: usize = 10;

/// Append the records of one CIFAR-10 binary file to `images` (f32 in
/// [0, 1]) and `labels`; `path` only names the file in errors.
pub fn parse_cifar10(
    path: &Path,
    bytes: &[u8],
    images: &mut Vec<f32>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    if bytes.is_empty() {
        return Err(DataError::file(path, "empty CIFAR-10 batch file"));
    }
    if !bytes.len().is_multiple_of(CIFAR10_RECORD_BYTES) {
        return Err(DataError::file(
            path,
            format!(
                "size {} bytes is not a multiple of the {CIFAR10_RECORD_BYTES}-byte CIFAR-10 \
                 record (label + 3x32x32 pixels): truncated, or not a CIFAR-10 binary batch \
                 ({} whole records and {} bytes left over)",
                bytes.len(),
                bytes.len() / CIFAR10_RECORD_BYTES,
                bytes.len() % CIFAR10_RECORD_BYTES
            ),
        ));
    }
    let records = bytes.chunks_exact(CIFAR10_RECORD_BYTES);
    // Validate every label before converting anything, so a bad file leaves
    // the output vectors untouched.
    for (i, rec) in records.clone().enumerate() {
        if usize::from(rec[0]) >= CIFAR10_CLASSES {
            return Err(DataError::file(
                path,
                format!(
                    "record {i} (byte offset {}) has label {}; expected 0..{CIFAR10_CLASSES}",
                    i * CIFAR10_RECORD_BYTES,
                    rec[0]
                ),
            ));
        }
    }
    images.reserve(bytes.len());
    labels.reserve(bytes.len() / CIFAR10_RECORD_BYTES);
    for rec in records {
        labels.push(rec[0]);
        pixels_to_f32(&rec[1..], images);
    }
    Ok(())
}

/// Load and concatenate CIFAR-10 binary batch files, in the order given.
pub fn load_cifar10(files: &[PathBuf]) -> Result<Dataset, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        // CIFAR-10 batches are distributed raw; accept gzip anyway.
        let bytes = super::source::read_bytes(f)?;
        parse_cifar10(f, &bytes, &mut images, &mut labels)?;
    }
    Ok(Dataset {
        name: "cifar-10".into(),
        shape: Shape::new(3, 32, 32),
        num_classes: CIFAR10_CLASSES,
        images,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_map_to_channels() {
        let mut rec = vec![0u8; CIFAR10_RECORD_BYTES];
        rec[0] = 7;
        rec[1] = 255; // red (0, 0)
        rec[1 + 1024 + 33] = 255; // green (1, 1)
        rec[1 + 2048 + 1023] = 255; // blue (31, 31)
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        parse_cifar10(Path::new("b"), &rec, &mut im, &mut lb).unwrap();
        assert_eq!(lb, vec![7]);
        assert_eq!(im.len(), 3072);
        assert_eq!(im[0], 1.0);
        assert_eq!(im[1024 + 32 + 1], 1.0);
        assert_eq!(im[3 * 1024 - 1], 1.0);
        assert_eq!(im.iter().filter(|&&x| x != 0.0).count(), 3);
    }

    #[test]
    fn bad_label_leaves_outputs_untouched() {
        let mut bytes = vec![0u8; 2 * CIFAR10_RECORD_BYTES];
        bytes[CIFAR10_RECORD_BYTES] = 10;
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        let e = parse_cifar10(Path::new("b"), &bytes, &mut im, &mut lb).unwrap_err();
        assert!(e.to_string().contains("record 1"), "{e}");
        assert!(im.is_empty() && lb.is_empty());
    }
}
