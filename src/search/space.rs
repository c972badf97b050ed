//! The cell search space: which genotypes exist, how they are encoded as a
//! sequence of decisions (for the LSTM controller), sampled and mutated
//! (for regularized evolution), and turned into a model file.
//!
//! A genotype of the space has, for the normal and the reduce cell, `steps`
//! intermediate nodes (2..2+steps); node `n` has exactly two incoming edges
//! (slot 0 and slot 1, in that order in the edge list), each an op from the
//! space's op set applied to an earlier node `from` in `0..n`. The decision
//! sequence is, for each cell (normal, then reduce), for each node, for each
//! slot: `from` (n choices), then `op` (|ops| choices).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::SearchError;
use crate::model::{CellNetConfig, CellOp, Edge, Genotype, ModelSpec};

/// Incoming edges per intermediate node (DARTS/ENAS: 2).
pub const INPUTS_PER_NODE: usize = 2;

/// The op set of a search: the paper's feature-fault set (8 ops) or the
/// weight-fault set (adds relu_conv_bn_3x3/5x5 and conv_1x1, 11 ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpSet {
    Feature,
    Weight,
}

impl OpSet {
    pub fn ops(self) -> Vec<CellOp> {
        match self {
            OpSet::Feature => CellOp::FEATURE_FAULT_SEARCH.to_vec(),
            OpSet::Weight => CellOp::WEIGHT_FAULT_SEARCH.to_vec(),
        }
    }
}

/// Hyper-parameters of the searched network family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    pub ops: Vec<CellOp>,
    /// Intermediate nodes per cell (4 in the paper).
    pub steps: usize,
    /// C of the first cells (20 in the paper).
    pub init_channels: usize,
    /// Number of cells (8 in the paper).
    pub layers: usize,
    pub stem_multiplier: usize,
    pub num_classes: usize,
}

/// What one decision chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// The input node of an edge.
    From,
    /// The op of an edge.
    Op,
}

/// One decision of the sequence: its kind and number of choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub kind: DecisionKind,
    pub choices: usize,
}

impl SearchSpace {
    /// The paper's space (8 cells, 4 nodes, C = 20) for `set`.
    pub fn paper(set: OpSet) -> SearchSpace {
        SearchSpace {
            ops: set.ops(),
            steps: 4,
            init_channels: 20,
            layers: 8,
            stem_multiplier: 3,
            num_classes: 10,
        }
    }

    /// Check the parameters.
    pub fn validate(&self) -> Result<(), SearchError> {
        let bad = |m: String| Err(SearchError::Config(m));
        if self.ops.is_empty() {
            return bad("the search space needs at least one op".into());
        }
        for (i, op) in self.ops.iter().enumerate() {
            if self.ops[..i].contains(op) {
                return bad(format!("op {op} is listed twice"));
            }
        }
        if !(1..=16).contains(&self.steps) {
            return bad(format!(
                "nodes per cell must be in 1..=16, got {}",
                self.steps
            ));
        }
        if self.init_channels == 0 || !self.init_channels.is_multiple_of(2) {
            return bad(format!(
                "init channels must be even and >= 2 (factorized reduce halves them), got {}",
                self.init_channels
            ));
        }
        if !(1..=64).contains(&self.layers) {
            return bad(format!("cells must be in 1..=64, got {}", self.layers));
        }
        if self.stem_multiplier == 0 || self.num_classes < 2 {
            return bad("stem multiplier must be >= 1 and classes >= 2".into());
        }
        Ok(())
    }

    /// The decision sequence of one genotype (both cells).
    pub fn decisions(&self) -> Vec<Decision> {
        let mut d = Vec::with_capacity(self.num_decisions());
        for _cell in 0..2 {
            for node in 2..2 + self.steps {
                for _slot in 0..INPUTS_PER_NODE {
                    d.push(Decision {
                        kind: DecisionKind::From,
                        choices: node,
                    });
                    d.push(Decision {
                        kind: DecisionKind::Op,
                        choices: self.ops.len(),
                    });
                }
            }
        }
        d
    }

    pub fn num_decisions(&self) -> usize {
        2 * self.steps * INPUTS_PER_NODE * 2
    }

    /// Most choices of a `From` decision (the last node's inputs).
    pub fn max_from(&self) -> usize {
        self.steps + 1
    }

    /// The genotype of a decision sequence (each action below its
    /// decision's number of choices).
    pub fn decode(&self, actions: &[usize]) -> Result<Genotype, SearchError> {
        let decisions = self.decisions();
        if actions.len() != decisions.len() {
            return Err(SearchError::Config(format!(
                "{} decisions given, the space has {}",
                actions.len(),
                decisions.len()
            )));
        }
        if let Some((i, (a, d))) = actions
            .iter()
            .zip(&decisions)
            .enumerate()
            .find(|(_, (a, d))| **a >= d.choices)
        {
            return Err(SearchError::Config(format!(
                "decision {i}: choice {a} out of range 0..{}",
                d.choices
            )));
        }
        let mut cells = [Vec::new(), Vec::new()];
        let mut k = 0;
        for cell in &mut cells {
            for node in 2..2 + self.steps {
                for _slot in 0..INPUTS_PER_NODE {
                    cell.push(Edge::new(self.ops[actions[k + 1]], actions[k], node));
                    k += 2;
                }
            }
        }
        let [normal, reduce] = cells;
        Ok(Genotype { normal, reduce })
    }

    /// The decision sequence of a genotype of this space.
    pub fn encode(&self, g: &Genotype) -> Result<Vec<usize>, SearchError> {
        let mut actions = Vec::with_capacity(self.num_decisions());
        for (name, cell) in [("normal", &g.normal), ("reduce", &g.reduce)] {
            if cell.len() != self.steps * INPUTS_PER_NODE {
                return Err(SearchError::Config(format!(
                    "{name} cell has {} edges, the space has {} ({} nodes x {INPUTS_PER_NODE})",
                    cell.len(),
                    self.steps * INPUTS_PER_NODE,
                    self.steps
                )));
            }
            for (i, e) in cell.iter().enumerate() {
                let node = 2 + i / INPUTS_PER_NODE;
                let op = self.ops.iter().position(|o| *o == e.op);
                match op {
                    Some(op) if e.to == node && e.from < node => {
                        actions.push(e.from);
                        actions.push(op);
                    }
                    _ => {
                        return Err(SearchError::Config(format!(
                            "{name} cell edge {i} ({}, {}, {}) is not in the search space",
                            e.op, e.from, e.to
                        )))
                    }
                }
            }
        }
        Ok(actions)
    }

    /// A genotype with every decision uniform at random.
    pub fn random<R: Rng + ?Sized>(&self, rng: &mut R) -> Genotype {
        let actions: Vec<usize> = self
            .decisions()
            .iter()
            .map(|d| rng.random_range(0..d.choices))
            .collect();
        self.decode(&actions).expect("sampled actions are in range")
    }

    /// One decision changed to a different choice (a decision with a
    /// single choice is never picked). `g` must be of this space.
    pub fn mutate<R: Rng + ?Sized>(
        &self,
        g: &Genotype,
        rng: &mut R,
    ) -> Result<Genotype, SearchError> {
        let mut actions = self.encode(g)?;
        let decisions = self.decisions();
        let open: Vec<usize> = (0..decisions.len())
            .filter(|&i| decisions[i].choices > 1)
            .collect();
        if open.is_empty() {
            return Ok(g.clone());
        }
        let i = open[rng.random_range(0..open.len())];
        let shift = rng.random_range(1..decisions[i].choices);
        actions[i] = (actions[i] + shift) % decisions[i].choices;
        self.decode(&actions)
    }

    /// The model description of a genotype of this space.
    pub fn spec(&self, g: &Genotype) -> ModelSpec {
        ModelSpec::Cells(CellNetConfig {
            init_channels: self.init_channels,
            layers: self.layers,
            stem_multiplier: self.stem_multiplier,
            genotype: g.clone(),
            num_classes: self.num_classes,
        })
    }
}

/// A one-line form of a genotype for logs:
/// `normal: op(from->to) ... | reduce: ...`.
pub fn genotype_line(g: &Genotype) -> String {
    let cell = |es: &[Edge]| {
        es.iter()
            .map(|e| format!("{}({}->{})", e.op, e.from, e.to))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!("normal: {} | reduce: {}", cell(&g.normal), cell(&g.reduce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn decisions_and_round_trip() {
        let s = SearchSpace::paper(OpSet::Weight);
        assert_eq!(s.num_decisions(), 32);
        assert_eq!(s.decisions().len(), 32);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..50 {
            let g = s.random(&mut rng);
            crate::model::genotype::check_cell(&g.normal).unwrap();
            crate::model::genotype::check_cell(&g.reduce).unwrap();
            assert_eq!(s.decode(&s.encode(&g).unwrap()).unwrap(), g);
        }
        // the published W-FTT-Net is a point of the weight-fault space
        let w = Genotype::w_ftt_net();
        assert_eq!(s.decode(&s.encode(&w).unwrap()).unwrap(), w);
        // but not of the feature-fault one (relu_conv_bn ops)
        assert!(SearchSpace::paper(OpSet::Feature).encode(&w).is_err());
    }

    #[test]
    fn mutation_changes_exactly_one_decision() {
        let s = SearchSpace::paper(OpSet::Feature);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        for _ in 0..100 {
            let g = s.random(&mut rng);
            let m = s.mutate(&g, &mut rng).unwrap();
            let (a, b) = (s.encode(&g).unwrap(), s.encode(&m).unwrap());
            let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert_eq!(diff, 1);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let s = SearchSpace::paper(OpSet::Feature);
        assert!(s.decode(&[0; 3]).is_err());
        let mut a = vec![0; 32];
        a[0] = 2; // node 2 has inputs 0 and 1 only
        assert!(s.decode(&a).is_err());
        let mut bad = s.clone();
        bad.init_channels = 3;
        assert!(bad.validate().is_err());
        bad.init_channels = 4;
        bad.ops.push(CellOp::None);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn spec_builds_and_round_trips_through_a_model_file() {
        let mut s = SearchSpace::paper(OpSet::Weight);
        s.init_channels = 4;
        s.layers = 3;
        let g = s.random(&mut Xoshiro256PlusPlus::seed_from_u64(3));
        let spec = s.spec(&g);
        let back = crate::model::file::parse_model(&spec.to_toml()).unwrap();
        assert_eq!(back, spec);
        spec.build(crate::model::Shape::new(1, 28, 28)).unwrap();
        assert!(genotype_line(&g).starts_with("normal: "));
    }
}
