//! The super-net: one store of shared parameters (ENAS-style weight
//! sharing) from which every sampled genotype's network takes its weights,
//! and into which a training step on that network writes them back.
//!
//! A sampled genotype is built through the ordinary model IR
//! ([`SearchSpace::spec`] -> [`crate::model::ModelSpec::build`]), so its
//! parameter names are those of [`crate::model::genotype`]:
//! `cells.3.node2.op0.dw1.weight` is a tensor of the op on edge 0 (slot 0)
//! into node 2 of cell 3. The store keys such a tensor by what the edge *is*,
//! adding its input node and op to the name:
//! `cells.3.node2.op0.from1.sep_conv_3x3.dw1.weight`. Every other tensor
//! (stem, the cells' preprocessing, classifier) has a single shape in the
//! whole space and keeps its name. So two genotypes that share an edge
//! (same cell, node, slot, input and op) share its weights, and the store
//! holds one copy of every (cell, node, slot, input, op) ever sampled.
//!
//! Each stored tensor carries its SGD momentum buffer. Missing tensors are
//! initialised on first use from a seed and the key alone (Kaiming-normal
//! conv/linear weights as [`crate::train::Params::init`]), so a tensor's
//! initial value does not depend on which genotype used it first.
//!
//! Training uses [`crate::train::Trainer`] unchanged: a trainer per step
//! over the sampled network, its step counter set to the super-net's global
//! step (learning-rate schedule and fault streams), its momentum loaded
//! from the store. Activation formats and batch-norm statistics come from
//! the training batch itself (see [`batch_formats`]): shared BN running
//! statistics mix many architectures and are not used.

use std::collections::BTreeMap;
use std::path::Path;

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use safetensors::SafeTensors;

use super::space::SearchSpace;
use super::SearchError;
use crate::fixed::Format;
use crate::model::genotype::reduce_positions;
use crate::model::{Genotype, Graph, Tensor, Weights};
use crate::train::{Mode, Network, Params, StepStats, TrainConfig, Trainer};

/// One shared tensor and its momentum.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    shape: Vec<usize>,
    data: Vec<f32>,
    velocity: Vec<f32>,
}

/// The shared parameters of the whole search space.
#[derive(Debug, Clone, PartialEq)]
pub struct SuperNet {
    /// Seed of the lazy initialisation.
    pub seed: u64,
    tensors: BTreeMap<String, Slot>,
}

/// Stream index of parameter initialisation.
const INIT_STREAM: u64 = 0x1417;

impl SuperNet {
    pub fn new(seed: u64) -> SuperNet {
        SuperNet {
            seed,
            tensors: BTreeMap::new(),
        }
    }

    /// Number of stored tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Number of stored parameter values.
    pub fn num_values(&self) -> usize {
        self.tensors.values().map(|s| s.data.len()).sum()
    }

    /// The store key of every parameter tensor of `graph` (built from `g`
    /// with `layers` cells), in [`Params`] order.
    pub fn keys(graph: &Graph, g: &Genotype, layers: usize) -> Vec<String> {
        let reduce = reduce_positions(layers);
        graph
            .all_params()
            .into_iter()
            .map(|(name, _)| shared_key(&name, g, &reduce).unwrap_or(name))
            .collect()
    }

    /// The parameters of `graph` (the network of `g`) and their momentum,
    /// initialising tensors that are not stored yet.
    pub fn params(
        &mut self,
        graph: &Graph,
        g: &Genotype,
        layers: usize,
    ) -> Result<(Params, Vec<Vec<f32>>), SearchError> {
        let keys = Self::keys(graph, g, layers);
        let mut w = Weights::default();
        let mut velocity = Vec::with_capacity(keys.len());
        for ((name, shape), key) in graph.all_params().into_iter().zip(&keys) {
            let seed = self.seed;
            let slot = self
                .tensors
                .entry(key.clone())
                .or_insert_with(|| init_slot(seed, key, &shape));
            if slot.shape != shape {
                return Err(SearchError::Internal(format!(
                    "shared tensor `{key}` has shape {:?}, network `{name}` needs {shape:?}",
                    slot.shape
                )));
            }
            w.insert(name, Tensor::new(shape, slot.data.clone()));
            velocity.push(slot.velocity.clone());
        }
        let params = Params::from_weights(graph, &w).map_err(SearchError::Internal)?;
        Ok((params, velocity))
    }

    /// Write trained parameters and momentum back (the inverse of
    /// [`SuperNet::params`] for the same graph and genotype).
    pub fn write_back(
        &mut self,
        graph: &Graph,
        g: &Genotype,
        layers: usize,
        params: &Params,
        velocity: &[Vec<f32>],
    ) {
        let keys = Self::keys(graph, g, layers);
        for (i, key) in keys.iter().enumerate() {
            if let Some(slot) = self.tensors.get_mut(key) {
                slot.data.clone_from(&params.data[i]);
                slot.velocity.clone_from(&velocity[i]);
            }
        }
    }

    /// Save every tensor (`p.KEY`) and momentum (`v.KEY`) as safetensors.
    pub fn save(&self, path: &Path) -> Result<(), SearchError> {
        let mut w = Weights::default();
        for (k, s) in &self.tensors {
            w.insert(
                format!("p.{k}"),
                Tensor::new(s.shape.clone(), s.data.clone()),
            );
            w.insert(
                format!("v.{k}"),
                Tensor::new(s.shape.clone(), s.velocity.clone()),
            );
        }
        crate::model::save_weights(path, &w)?;
        Ok(())
    }

    /// Read a store written by [`SuperNet::save`].
    pub fn load(path: &Path, seed: u64) -> Result<SuperNet, SearchError> {
        let err = |msg: String| SearchError::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let file =
            SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not safetensors: {e}")))?;
        let mut net = SuperNet::new(seed);
        let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
        names.sort();
        for name in &names {
            let Some(key) = name.strip_prefix("p.") else {
                continue;
            };
            let read = |n: &str| -> Result<(Vec<usize>, Vec<f32>), SearchError> {
                let v = file
                    .tensor(n)
                    .map_err(|_| err(format!("missing tensor `{n}`")))?;
                let data = v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Ok((v.shape().to_vec(), data))
            };
            let (shape, data) = read(name)?;
            let (vshape, velocity) = read(&format!("v.{key}"))?;
            let n: usize = shape.iter().product();
            if vshape != shape || data.len() != n || velocity.len() != n {
                return Err(err(format!("tensor `{key}`: inconsistent shapes")));
            }
            net.tensors.insert(
                key.to_string(),
                Slot {
                    shape,
                    data,
                    velocity,
                },
            );
        }
        Ok(net)
    }

    /// One FTT training step of the network of `g` on a batch; the updated
    /// parameters and momentum go back to the store. `step` is the
    /// super-net's global step (schedule position, fault stream, QAT
    /// warm-up); `cfg` is the super-net's training configuration with
    /// `epochs = 1` (see [`super_train_config`]) and `total_steps` the
    /// length of the cosine schedule.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        space: &SearchSpace,
        graph: &Graph,
        g: &Genotype,
        cfg: &TrainConfig,
        step: usize,
        total_steps: usize,
        images: &[f32],
        labels: &[u8],
    ) -> Result<StepStats, SearchError> {
        let (params, velocity) = self.params(graph, g, space.layers)?;
        let mut trainer = Trainer::new(graph, cfg.clone(), params)?;
        trainer.sgd.velocity = velocity;
        trainer.step = step;
        trainer.steps_per_epoch = total_steps;
        if trainer.qat_active() {
            trainer.formats = Some(batch_formats(&trainer.net, images, cfg.datapath.act_bits));
        }
        let stats = trainer.train_step(images, labels);
        self.write_back(
            graph,
            g,
            space.layers,
            &trainer.net.params,
            &trainer.sgd.velocity,
        );
        Ok(stats)
    }
}

/// The training configuration of super-net steps: `base` with one epoch
/// (the schedule spans the search's total super-net steps), no log, no
/// checkpoint, no progress bar.
pub fn super_train_config(base: &TrainConfig) -> TrainConfig {
    let mut cfg = base.clone();
    cfg.epochs = 1;
    cfg.stop_after = None;
    cfg.progress = false;
    cfg.log = None;
    cfg.checkpoint = None;
    cfg
}

/// Activation formats from max|x| of every node over `images`, by a float
/// forward with batch statistics (the running statistics of shared batch
/// norms belong to no single architecture).
pub fn batch_formats(net: &Network, images: &[f32], act_bits: u8) -> Vec<Format> {
    let numel = net.graph.input_shape().numel();
    let n = images.len() / numel.max(1);
    let tape = net.forward(images, n, Mode::Train, None, None);
    let ranges: Vec<f32> = tape
        .outs
        .iter()
        .map(|o| o.iter().fold(0.0f32, |m, &x| m.max(x.abs())))
        .collect();
    net.plan.formats(&ranges, act_bits)
}

/// The store key of a cell-edge tensor `cells.I.nodeN.opK.REST`:
/// `cells.I.nodeN.opK.fromF.OP.REST`; None for any other tensor.
fn shared_key(name: &str, g: &Genotype, reduce: &[usize; 2]) -> Option<String> {
    let mut parts = name.splitn(5, '.');
    let (cells, i, node, op, rest) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if cells != "cells" {
        return None;
    }
    let cell: usize = i.parse().ok()?;
    let n: usize = node.strip_prefix("node")?.parse().ok()?;
    let k: usize = op.strip_prefix("op")?.parse().ok()?;
    let edges = if reduce.contains(&cell) {
        &g.reduce
    } else {
        &g.normal
    };
    let e = edges.iter().filter(|e| e.to == n).nth(k)?;
    Some(format!(
        "cells.{cell}.node{n}.op{k}.from{}.{}.{rest}",
        e.from, e.op
    ))
}

/// A fresh tensor: the rules of [`Params::init`], from a stream of
/// (seed, key).
fn init_slot(seed: u64, key: &str, shape: &[usize]) -> Slot {
    let n: usize = shape.iter().product();
    let suffix = key.rsplit('.').next().unwrap_or("");
    let data = match suffix {
        "weight" if shape.len() > 1 => {
            let mut rng = crate::fault::stream(seed, fnv1a(key), INIT_STREAM, 0);
            let fan_in: usize = shape[1..].iter().product();
            let std = (2.0 / fan_in.max(1) as f64).sqrt();
            (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
        }
        "weight" | "running_var" => vec![1.0; n],
        _ => vec![0.0; n],
    };
    Slot {
        shape: shape.to_vec(),
        data,
        velocity: vec![0.0; n],
    }
}

/// A standard normal sample (Box-Muller).
pub(crate) fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// FNV-1a hash of a key (stable across runs and platforms).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CellOp, Edge, Shape};
    use crate::search::space::OpSet;
    use rand::SeedableRng;

    fn tiny() -> SearchSpace {
        let mut s = SearchSpace::paper(OpSet::Weight);
        s.init_channels = 4;
        s.layers = 3;
        s.steps = 2;
        s
    }

    #[test]
    fn shared_edges_share_weights() {
        let s = tiny();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let a = s.random(&mut rng);
        let mut b = a.clone();
        // change the op of the last normal edge only
        let last = b.normal.len() - 1;
        let e = b.normal[last];
        let other = if e.op == CellOp::SepConv3x3 {
            CellOp::DilConv5x5
        } else {
            CellOp::SepConv3x3
        };
        b.normal[last] = Edge::new(other, e.from, e.to);
        let shape = Shape::new(1, 28, 28);
        let ga = s.spec(&a).build(shape).unwrap();
        let gb = s.spec(&b).build(shape).unwrap();
        let mut net = SuperNet::new(9);
        let (pa, _) = net.params(&ga, &a, s.layers).unwrap();
        let (pb, _) = net.params(&gb, &b, s.layers).unwrap();
        let ka = SuperNet::keys(&ga, &a, s.layers);
        let kb = SuperNet::keys(&gb, &b, s.layers);
        let mut shared = 0;
        for (i, k) in ka.iter().enumerate() {
            if let Some(j) = kb.iter().position(|x| x == k) {
                assert_eq!(pa.data[i], pb.data[j], "{k}");
                shared += 1;
            }
        }
        assert!(shared > 0 && shared < ka.len().max(kb.len()) + 1);
        assert!(ka.iter().any(|k| k.contains(".from")));
        // the stem is shared under its own name
        assert!(ka.iter().any(|k| k == "stem.conv.weight"));
    }

    #[test]
    fn init_does_not_depend_on_order() {
        let s = tiny();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let (a, b) = (s.random(&mut rng), s.random(&mut rng));
        let shape = Shape::new(1, 28, 28);
        let (ga, gb) = (
            s.spec(&a).build(shape).unwrap(),
            s.spec(&b).build(shape).unwrap(),
        );
        let mut n1 = SuperNet::new(1);
        n1.params(&ga, &a, s.layers).unwrap();
        n1.params(&gb, &b, s.layers).unwrap();
        let mut n2 = SuperNet::new(1);
        n2.params(&gb, &b, s.layers).unwrap();
        n2.params(&ga, &a, s.layers).unwrap();
        assert_eq!(n1, n2);
    }

    #[test]
    fn save_load_round_trip() {
        let s = tiny();
        let g = s.random(&mut Xoshiro256PlusPlus::seed_from_u64(6));
        let graph = s.spec(&g).build(Shape::new(1, 28, 28)).unwrap();
        let mut net = SuperNet::new(3);
        let (mut p, mut v) = net.params(&graph, &g, s.layers).unwrap();
        p.data[0][0] = 0.125;
        v[0][0] = -2.5;
        net.write_back(&graph, &g, s.layers, &p, &v);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        net.save(&path).unwrap();
        let back = SuperNet::load(&path, 3).unwrap();
        assert_eq!(back, net);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(SuperNet::load(&path, 3).is_err());
    }
}
