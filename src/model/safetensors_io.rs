//! Weights in safetensors files (`models/*.safetensors`), keyed by the
//! graph's parameter names (`"{node}.{suffix}"`).
//!
//! Loading is driven by the graph: every parameter it needs must be present
//! as a tensor of exactly the expected shape, otherwise the error names
//! the file, the tensor, the expected and the found shape or dtype. F32,
//! F16, BF16 and F64 tensors load (everything computes in f32: half
//! precision widens exactly, F64 rounds once); F16 halves the file, which
//! is how large shipped models stay small ([`WeightDtype`]). Tensors
//! the graph does not use (optimizer state, BN `num_batches_tracked`, an
//! auxiliary head) are ignored: checkpoints exported from PyTorch routinely
//! carry them. [`load_weights_with_extras`] returns their names so a caller
//! can warn. Saving writes a temp file beside the target and renames it, so
//! an interrupted save never leaves a truncated weights file.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::weights::weights_error;
use super::{Graph, ModelError, Tensor, Weights};

/// Load the parameters of `graph` from a safetensors file. Extra tensors
/// are ignored.
pub fn load_weights(path: &Path, graph: &Graph) -> Result<Weights, ModelError> {
    load_weights_with_extras(path, graph).map(|(w, _)| w)
}

/// Like [`load_weights`], also returning the names of the tensors in the file
/// that the graph does not use (sorted).
pub fn load_weights_with_extras(
    path: &Path,
    graph: &Graph,
) -> Result<(Weights, Vec<String>), ModelError> {
    let bytes = std::fs::read(path)
        .map_err(|e| weights_error(path, format!("cannot read weights file: {e}")))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| {
        weights_error(
            path,
            format!("not a valid safetensors file (corrupt or truncated?): {e}"),
        )
    })?;
    let mut weights = Weights::default();
    for (name, shape) in graph.all_params() {
        let view = file.tensor(&name).map_err(|_| {
            weights_error(
                path,
                format!("missing tensor `{name}` (expected f32 of shape {shape:?})"),
            )
        })?;
        if view.shape() != shape.as_slice() {
            return Err(weights_error(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(weights_error(
                    path,
                    format!("tensor `{name}` has dtype {other:?}, expected F32, F16, BF16 or F64"),
                ))
            }
        };
        weights.insert(name, Tensor::new(shape, data));
    }
    let mut extras: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !weights.tensors.contains_key(*n))
        .map(str::to_string)
        .collect();
    extras.sort();
    Ok((weights, extras))
}

/// Element type of a written weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WeightDtype {
    /// 4 bytes per value, exact.
    #[default]
    F32,
    /// 2 bytes per value, round to nearest (11 significant bits). Every
    /// 8-bit weight code times a power-of-two scale in f16's range is
    /// exact, so a QAT-trained conv weight keeps its code unless the
    /// rounding moves it across a quantization step boundary; BN statistics
    /// move by at most 2^-11 relative.
    F16,
}

/// Write all tensors of `weights` as f32 to a safetensors file, atomically.
pub fn save_weights(path: &Path, weights: &Weights) -> Result<(), ModelError> {
    save_weights_as(path, weights, WeightDtype::F32)
}

/// Write all tensors of `weights` in `dtype` to a safetensors file,
/// atomically. F16 refuses values outside its finite range rather than
/// writing infinities.
pub fn save_weights_as(
    path: &Path,
    weights: &Weights,
    dtype: WeightDtype,
) -> Result<(), ModelError> {
    let mut bytes: HashMap<&str, Vec<u8>> = HashMap::new();
    for (name, t) in &weights.tensors {
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(weights_error(
                path,
                format!(
                    "tensor `{name}` has {} values but shape {:?} needs {n}",
                    t.data.len(),
                    t.shape
                ),
            ));
        }
        let encoded: Vec<u8> = match dtype {
            WeightDtype::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            WeightDtype::F16 => {
                if let Some(v) = t
                    .data
                    .iter()
                    .find(|v| v.is_finite() && !half::f16::from_f32(**v).is_finite())
                {
                    return Err(weights_error(
                        path,
                        format!(
                            "tensor `{name}` holds {v}, outside the f16 range (|x| <= 65504): write it as f32"
                        ),
                    ));
                }
                t.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect()
            }
        };
        bytes.insert(name, encoded);
    }
    let st_dtype = match dtype {
        WeightDtype::F32 => Dtype::F32,
        WeightDtype::F16 => Dtype::F16,
    };
    let views = weights
        .tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(st_dtype, t.shape.clone(), &bytes[name.as_str()])
                .map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| weights_error(path, format!("cannot encode tensors: {e}")))?;
    let metadata = HashMap::from([("producer".to_string(), "ftnas".to_string())]);
    let encoded = safetensors::serialize(views, Some(metadata))
        .map_err(|e| weights_error(path, format!("cannot encode tensors: {e}")))?;
    Ok(crate::report::write_atomic(path, &encoded)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::file::parse_model;
    use crate::model::Shape;

    fn tiny() -> Graph {
        parse_model("family = \"vgg\"\nchannels = [[4], [8]]\n")
            .expect("model")
            .build(Shape::new(1, 8, 8))
            .expect("graph")
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ftnas-st-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("w.safetensors")
    }

    #[test]
    fn f16_round_trip_is_within_half_an_ulp_and_half_the_size() {
        let g = tiny();
        let w = Weights::random(&g, 3);
        let (p32, p16) = (tmp("a32"), tmp("a16"));
        save_weights(&p32, &w).unwrap();
        save_weights_as(&p16, &w, WeightDtype::F16).unwrap();
        let back = load_weights(&p16, &g).unwrap();
        for (name, t) in &w.tensors {
            for (a, b) in t.data.iter().zip(&back.tensors[name].data) {
                assert_eq!(*b, half::f16::from_f32(*a).to_f32(), "{name}");
                assert!(
                    (a - b).abs() <= a.abs() * 2f32.powi(-11) + 6e-8,
                    "{name}: {a} {b}"
                );
            }
        }
        let (n32, n16) = (
            std::fs::metadata(&p32).unwrap().len(),
            std::fs::metadata(&p16).unwrap().len(),
        );
        let values: u64 = w.tensors.values().map(|t| t.data.len() as u64).sum();
        // Header sizes differ a little (offsets, alignment padding).
        assert!(n32 - n16 >= 2 * values - 64, "{n16} vs {n32}");
        let bytes = std::fs::read(&p16).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        for (name, t) in &w.tensors {
            let view = file.tensor(name).unwrap();
            assert_eq!(view.dtype(), Dtype::F16);
            assert_eq!(view.data().len(), 2 * t.data.len());
        }
        // Power-of-two-scaled 8-bit codes survive f16 exactly.
        let mut q = w.clone();
        for t in q.tensors.values_mut() {
            for (i, v) in t.data.iter_mut().enumerate() {
                *v = ((i % 255) as f32 - 127.0) * 2f32.powi(-9);
            }
        }
        save_weights_as(&p16, &q, WeightDtype::F16).unwrap();
        assert_eq!(load_weights(&p16, &g).unwrap().tensors, q.tensors);
    }

    #[test]
    fn bf16_and_f64_tensors_load_and_f16_refuses_out_of_range() {
        let g = tiny();
        let w = Weights::random(&g, 4);
        let mut raw: HashMap<String, (Dtype, Vec<u8>, Vec<usize>)> = HashMap::new();
        for (i, (name, t)) in w.tensors.iter().enumerate() {
            let (dt, bytes) = if i % 2 == 0 {
                let b = t
                    .data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes());
                (Dtype::BF16, b.collect())
            } else {
                let b = t.data.iter().flat_map(|v| (*v as f64).to_le_bytes());
                (Dtype::F64, b.collect())
            };
            raw.insert(name.clone(), (dt, bytes, t.shape.clone()));
        }
        let views: Vec<(&str, TensorView)> = raw
            .iter()
            .map(|(n, (dt, b, s))| (n.as_str(), TensorView::new(*dt, s.clone(), b).unwrap()))
            .collect();
        let path = tmp("mixed");
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let back = load_weights(&path, &g).unwrap();
        for (name, t) in &w.tensors {
            let wide = raw[name].0 == Dtype::F64;
            for (a, b) in t.data.iter().zip(&back.tensors[name].data) {
                let want = if wide {
                    *a
                } else {
                    half::bf16::from_f32(*a).to_f32()
                };
                assert_eq!(*b, want, "{name}");
            }
        }
        let mut big = w.clone();
        let name = big.tensors.keys().next().unwrap().clone();
        big.tensors.get_mut(&name).unwrap().data[0] = 1e6;
        let err = save_weights_as(&tmp("big"), &big, WeightDtype::F16).unwrap_err();
        assert!(err.to_string().contains("f16 range"), "{err}");
    }
}
