//! The IDX format of MNIST and Fashion-MNIST: a 4-byte magic (two zero
//! bytes, an element type, the number of dimensions), one big-endian u32 per
//! dimension, then the elements row-major. Only unsigned bytes (type 0x08)
//! occur in these datasets, so only they are accepted.

use std::path::Path;

use super::source::read_bytes;
use super::{pixels_to_f32, DataError, Dataset};
use crate::model::Shape;

/// Element type code of unsigned bytes.
const UBYTE: u8 = 0x08;

/// Number of classes of MNIST and Fashion-MNIST.
const IDX_CLASSES: usize = 10;

/// A parsed IDX array of unsigned bytes, borrowing its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray<'a> {
    pub dims: Vec<usize>,
    pub data: &'a [u8],
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

/// Parse an IDX file's bytes; `path` only names the file in errors.
///
/// The payload must be exactly the size the header promises: fewer bytes is
/// a truncated file, more is a file of another kind.
pub fn parse_idx<'a>(path: &Path, bytes: &'a [u8]) -> Result<IdxArray<'a>, DataError> {
    let err = |msg: String| DataError::file(path, msg);
    if bytes.len() < 4 {
        return Err(err(format!(
            "truncated IDX header: {} bytes, need at least 4",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(format!(
            "bad magic 0x{magic:08x}: not an IDX file (expected 0x00000801 for labels \
             or 0x00000803 for images)"
        )));
    }
    let elem = bytes[2];
    if elem != UBYTE {
        return Err(err(format!(
            "IDX element type 0x{elem:02x} ({}) is not supported; expected 0x08 (unsigned byte)",
            type_name(elem)
        )));
    }
    let ndims = usize::from(bytes[3]);
    if ndims == 0 {
        return Err(err("IDX header declares 0 dimensions".into()));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(err(format!(
            "truncated IDX header: {ndims} dimensions need {header} header bytes, file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("IDX dimensions {dims:?} overflow")))?;
    let payload = &bytes[header..];
    if payload.len() < count {
        return Err(err(format!(
            "truncated: dimensions {dims:?} need {count} bytes of data, file has {}",
            payload.len()
        )));
    }
    if payload.len() > count {
        return Err(err(format!(
            "{} unexpected bytes after the {count} bytes of data promised by dimensions {dims:?}",
            payload.len() - count
        )));
    }
    Ok(IdxArray {
        dims,
        data: payload,
    })
}

/// Load an image IDX file and its label IDX file (raw or gzip) into a
/// dataset named `name`.
pub fn load_idx(images: &Path, labels: &Path, name: &str) -> Result<Dataset, DataError> {
    // Decompressing the image file dominates; read the two files on two
    // threads.
    let (image_bytes, label_bytes) = rayon::join(|| read_bytes(images), || read_bytes(labels));
    let (image_bytes, label_bytes) = (image_bytes?, label_bytes?);
    dataset_from_idx(images, &image_bytes, labels, &label_bytes, name)
}

/// Build a dataset from the bytes of an image and a label IDX file; paths
/// only name the files in errors.
pub(crate) fn dataset_from_idx(
    image_path: &Path,
    image_bytes: &[u8],
    label_path: &Path,
    label_bytes: &[u8],
    name: &str,
) -> Result<Dataset, DataError> {
    let img = parse_idx(image_path, image_bytes)?;
    let lab = parse_idx(label_path, label_bytes)?;
    if img.dims.len() != 3 {
        return Err(DataError::file(
            image_path,
            format!(
                "image file has {} dimensions {:?}; expected 3 (count, rows, columns)",
                img.dims.len(),
                img.dims
            ),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(DataError::file(
            label_path,
            format!(
                "label file has {} dimensions {:?}; expected 1 (count)",
                lab.dims.len(),
                lab.dims
            ),
        ));
    }
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    if n == 0 || h == 0 || w == 0 {
        return Err(DataError::file(
            image_path,
            format!("image file holds no pixels (dimensions {:?})", img.dims),
        ));
    }
    if lab.dims[0] != n {
        return Err(DataError::file(
            label_path,
            format!(
                "{} labels but the image file {} holds {n} images",
                lab.dims[0],
                image_path.display()
            ),
        ));
    }
    if let Some((i, &l)) = lab
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= IDX_CLASSES)
    {
        return Err(DataError::file(
            label_path,
            format!("label {l} of item {i} is out of range; expected 0..{IDX_CLASSES}"),
        ));
    }
    let mut images = Vec::with_capacity(img.data.len());
    pixels_to_f32(img.data, &mut images);
    Ok(Dataset {
        name: name.to_string(),
        shape: Shape::new(1, h, w),
        num_classes: IDX_CLASSES,
        images,
        labels: lab.data.to_vec(),
    })
}

/// Encode `dims` and `data` as an IDX file of unsigned bytes (for tests and
/// for exporting subsets).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("f")
    }

    #[test]
    fn roundtrip() {
        let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = parse_idx(p(), &bytes).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_header_problems() {
        let msg = |b: &[u8]| parse_idx(p(), b).unwrap_err().to_string();
        assert!(msg(&[0, 0]).contains("truncated IDX header"));
        assert!(msg(&[1, 2, 3, 4, 0, 0]).contains("bad magic 0x01020304"));
        assert!(msg(&[0, 0, 0x0D, 1, 0, 0, 0, 0]).contains("f32"));
        assert!(msg(&[0, 0, 8, 0]).contains("0 dimensions"));
        assert!(msg(&[0, 0, 8, 3, 0, 0, 0, 1]).contains("need 16 header bytes"));
        assert!(msg(&encode_idx(&[4], &[1, 2])).contains("truncated"));
        assert!(msg(&encode_idx(&[1], &[1, 2])).contains("1 unexpected bytes"));
        let huge = encode_idx(&[u32::MAX as usize; 3], &[]);
        let m = msg(&huge);
        assert!(m.contains("overflow") || m.contains("truncated"), "{m}");
    }
}
