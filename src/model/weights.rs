//! f32 parameter tensors of a network, by name (`"{node}.{suffix}"`, see
//! [`crate::model::ir::Op::param_shapes`]). Reading/writing safetensors files
//! lives in `safetensors_io`; this file owns the in-memory form.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Graph, ModelError, Op};

/// One dense f32 tensor (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }
    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }
}

/// All parameters of a model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Tensor by full name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Insert or replace a tensor.
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.insert(name.into(), t);
    }

    /// Check that every parameter the graph needs is present with the right
    /// shape. The error names the tensor and the expected and found shapes.
    pub fn check_against(&self, graph: &Graph) -> Result<(), String> {
        for (name, shape) in graph.all_params() {
            match self.tensors.get(&name) {
                None => {
                    return Err(format!(
                        "missing tensor `{name}` (expected shape {shape:?})"
                    ))
                }
                Some(t) if t.shape != shape => {
                    return Err(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.shape
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Random weights for tests and untrained runs: Kaiming-uniform
    /// conv/linear weights, small biases, BN statistics near identity.
    pub fn random(graph: &Graph, seed: u64) -> Weights {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut w = Weights::default();
        for id in 0..graph.nodes.len() {
            let node = &graph.nodes[id];
            for (name, shape) in graph.params_of(id) {
                let n: usize = shape.iter().product();
                let fan_in: usize = if shape.len() > 1 {
                    shape[1..].iter().product()
                } else {
                    1
                };
                let bound = (6.0 / fan_in.max(1) as f32).sqrt();
                let data: Vec<f32> = match (&node.op, name.rsplit('.').next().unwrap_or("")) {
                    (Op::BatchNorm { .. }, "weight") => {
                        (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
                    }
                    (Op::BatchNorm { .. }, "bias") => {
                        (0..n).map(|_| rng.random_range(-0.1..0.1)).collect()
                    }
                    (Op::BatchNorm { .. }, "running_mean") => {
                        (0..n).map(|_| rng.random_range(-0.1..0.1)).collect()
                    }
                    (Op::BatchNorm { .. }, "running_var") => {
                        (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
                    }
                    (_, "bias") => (0..n).map(|_| rng.random_range(-0.05..0.05)).collect(),
                    _ => (0..n).map(|_| rng.random_range(-bound..bound)).collect(),
                };
                w.insert(name, Tensor::new(shape, data));
            }
        }
        w
    }
}

/// Wrap a shape/presence problem as a [`ModelError::Weights`] for a file.
pub fn weights_error(path: &std::path::Path, msg: impl Into<String>) -> ModelError {
    ModelError::Weights {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}
