//! Finding the files of a split in a directory, and reading a file's bytes
//! whether it is stored raw or gzip-compressed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{DataError, Split};

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Subdirectory name of the CIFAR-10 binary archive.
const CIFAR_SUBDIR: &str = "cifar-10-batches-bin";

/// Decompressed data larger than this is refused (a gzip bomb or a wrong
/// file; the largest supported file, MNIST train images, is 47 MB).
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// The files of one split, by format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// MNIST-style IDX: one image file and one label file.
    Idx { images: PathBuf, labels: PathBuf },
    /// CIFAR-10 binary batches (five for train, one for test).
    Cifar10 { files: Vec<PathBuf> },
}

/// The IDX base names of a split, in the two spellings found in the wild
/// (`train-images-idx3-ubyte` from the original site, `train-images.idx3-ubyte`
/// from some mirrors).
fn idx_names(split: Split) -> [[String; 2]; 2] {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    [
        [
            format!("{prefix}-images-idx3-ubyte"),
            format!("{prefix}-images.idx3-ubyte"),
        ],
        [
            format!("{prefix}-labels-idx1-ubyte"),
            format!("{prefix}-labels.idx1-ubyte"),
        ],
    ]
}

fn cifar_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    }
}

/// First existing file among `names` and `names + ".gz"` in `dir`.
fn find_any(dir: &Path, names: &[String]) -> Option<PathBuf> {
    names
        .iter()
        .flat_map(|n| [n.clone(), format!("{n}.gz")])
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Which format `dir` holds for `split`, and the files to read.
///
/// IDX is looked for first; CIFAR-10 batches are looked for in `dir` and in
/// `dir/cifar-10-batches-bin/`. A partial set (an image file without its
/// label file, four of the five CIFAR-10 train batches) is an error naming
/// the missing file rather than a silently smaller dataset.
pub fn detect(dir: &Path, split: Split) -> Result<Format, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            dir: dir.to_path_buf(),
            expected: "an existing directory".into(),
        });
    }
    let [image_names, label_names] = idx_names(split);
    let images = find_any(dir, &image_names);
    let labels = find_any(dir, &label_names);
    match (images, labels) {
        (Some(images), Some(labels)) => return Ok(Format::Idx { images, labels }),
        (Some(images), None) => {
            return Err(DataError::Missing {
                dir: dir.to_path_buf(),
                expected: format!(
                    "the label file {}[.gz] to go with {}",
                    label_names[0],
                    images.display()
                ),
            })
        }
        (None, Some(labels)) => {
            return Err(DataError::Missing {
                dir: dir.to_path_buf(),
                expected: format!(
                    "the image file {}[.gz] to go with {}",
                    image_names[0],
                    labels.display()
                ),
            })
        }
        (None, None) => {}
    }
    let names = cifar_names(split);
    for base in [dir.to_path_buf(), dir.join(CIFAR_SUBDIR)] {
        let present: Vec<bool> = names.iter().map(|n| base.join(n).is_file()).collect();
        if present.iter().all(|&p| p) {
            return Ok(Format::Cifar10 {
                files: names.iter().map(|n| base.join(n)).collect(),
            });
        }
        if present.iter().any(|&p| p) {
            let missing: Vec<&str> = names
                .iter()
                .zip(&present)
                .filter(|(_, &p)| !p)
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(DataError::Missing {
                dir: base,
                expected: format!(
                    "the CIFAR-10 {split} batches; missing {}",
                    missing.join(", ")
                ),
            });
        }
    }
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        expected: format!(
            "for the {split} split either IDX files {}[.gz] and {}[.gz] (MNIST, Fashion-MNIST) \
             or CIFAR-10 binary batches {} (optionally in {CIFAR_SUBDIR}/)",
            image_names[0],
            label_names[0],
            names.join(", ")
        ),
    })
}

/// The bytes of `path`, gunzipped if the file starts with the gzip magic.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(&raw).map_err(|msg| DataError::file(path, msg))
    } else {
        Ok(raw)
    }
}

fn gunzip(raw: &[u8]) -> Result<Vec<u8>, String> {
    // Uncompressed IDX images compress about 2x; start with a guess to avoid
    // most reallocations.
    let mut out = Vec::with_capacity(raw.len().saturating_mul(2));
    let mut decoder = MultiGzDecoder::new(raw).take(MAX_DECOMPRESSED + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip data: {e}"))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(format!(
            "gzip data decompresses to more than {MAX_DECOMPRESSED} bytes; not a dataset file"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_roundtrip_and_truncation() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = gz(&data);
        assert_eq!(gunzip(&z).unwrap(), data);
        // A truncated stream is an error (or at worst a shorter output, which
        // the format parsers reject), never a panic.
        for cut in [3, 10, z.len() / 2, z.len() - 4] {
            match gunzip(&z[..cut]) {
                Ok(out) => assert!(out.len() < data.len()),
                Err(msg) => assert!(msg.contains("gzip"), "{msg}"),
            }
        }
    }

    #[test]
    fn idx_names_cover_both_spellings() {
        let [img, lab] = idx_names(Split::Test);
        assert_eq!(img[0], "t10k-images-idx3-ubyte");
        assert_eq!(lab[1], "t10k-labels.idx1-ubyte");
    }
}
