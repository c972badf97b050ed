//! Trainable state of a network in the layout the graph walker uses: one
//! f32 vector per parameter tensor, indexed per node in the order of
//! [`Op::param_shapes`](crate::model::Op::param_shapes), convertible to and
//! from [`Weights`] (the names and shapes `ftnas infer` loads).

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::model::{Graph, Op, Tensor, Weights};

/// All parameter tensors of a graph (BN running statistics included; they
/// are not trained by gradient, see [`Params::trainable`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub data: Vec<Vec<f32>>,
    /// False for BN `running_mean` / `running_var`.
    pub trainable: Vec<bool>,
    /// Per graph node, the indices of its tensors.
    pub of_node: Vec<Vec<usize>>,
}

impl Params {
    /// Fresh parameters: Kaiming-normal conv/linear weights (fan-in, ReLU
    /// gain), zero biases, BN weight 1, bias 0, mean 0, variance 1.
    pub fn init(graph: &Graph, seed: u64) -> Params {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut p = Params::empty(graph);
        for (i, name) in p.names.iter().enumerate() {
            let shape = &p.shapes[i];
            let n: usize = shape.iter().product();
            let suffix = name.rsplit('.').next().unwrap_or("");
            p.data[i] = match suffix {
                "weight" if shape.len() > 1 => {
                    let fan_in: usize = shape[1..].iter().product();
                    let std = (2.0 / fan_in.max(1) as f64).sqrt();
                    (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
                }
                "weight" | "running_var" => vec![1.0; n],
                _ => vec![0.0; n],
            };
        }
        p
    }

    fn empty(graph: &Graph) -> Params {
        let mut p = Params {
            names: vec![],
            shapes: vec![],
            data: vec![],
            trainable: vec![],
            of_node: vec![vec![]; graph.nodes.len()],
        };
        for id in 0..graph.nodes.len() {
            for (name, shape) in graph.params_of(id) {
                let running = matches!(graph.nodes[id].op, Op::BatchNorm { .. })
                    && name.contains(".running_");
                p.of_node[id].push(p.names.len());
                p.data.push(vec![0.0; shape.iter().product()]);
                p.names.push(name);
                p.shapes.push(shape);
                p.trainable.push(!running);
            }
        }
        p
    }

    /// From weights (checked against the graph by the caller).
    pub fn from_weights(graph: &Graph, w: &Weights) -> Result<Params, String> {
        w.check_against(graph)?;
        let mut p = Params::empty(graph);
        for (i, name) in p.names.iter().enumerate() {
            p.data[i] = w.tensors[name].data.clone();
        }
        Ok(p)
    }

    /// As weights, with the graph's tensor names.
    pub fn to_weights(&self) -> Weights {
        let mut w = Weights::default();
        for i in 0..self.names.len() {
            w.insert(
                self.names[i].clone(),
                Tensor::new(self.shapes[i].clone(), self.data[i].clone()),
            );
        }
        w
    }

    /// Tensor `k` (in `param_shapes` order) of node `id`.
    pub fn node(&self, id: usize, k: usize) -> &[f32] {
        &self.data[self.of_node[id][k]]
    }

    /// Zero-filled buffers shaped like every tensor (gradients, momentum).
    pub fn zeros_like(&self) -> Vec<Vec<f32>> {
        self.data.iter().map(|d| vec![0.0; d.len()]).collect()
    }
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
