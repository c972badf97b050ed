//! f32 weights in safetensors files (`models/*.safetensors`), keyed by the
//! graph's parameter names (`"{node}.{suffix}"`).
//!
//! Loading is driven by the graph: every parameter it needs must be present
//! as an f32 tensor of exactly the expected shape, otherwise the error names
//! the file, the tensor, the expected and the found shape or dtype. Tensors
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
        if view.dtype() != Dtype::F32 {
            return Err(weights_error(
                path,
                format!(
                    "tensor `{name}` has dtype {:?}, expected F32 (convert the checkpoint to float32)",
                    view.dtype()
                ),
            ));
        }
        if view.shape() != shape.as_slice() {
            return Err(weights_error(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
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

/// Write all tensors of `weights` as f32 to a safetensors file, atomically.
pub fn save_weights(path: &Path, weights: &Weights) -> Result<(), ModelError> {
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
        bytes.insert(name, t.data.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    let views = weights
        .tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(Dtype::F32, t.shape.clone(), &bytes[name.as_str()])
                .map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| weights_error(path, format!("cannot encode tensors: {e}")))?;
    let metadata = HashMap::from([("producer".to_string(), "ftnas".to_string())]);
    let encoded = safetensors::serialize(views, Some(metadata))
        .map_err(|e| weights_error(path, format!("cannot encode tensors: {e}")))?;
    Ok(crate::report::write_atomic(path, &encoded)?)
}
