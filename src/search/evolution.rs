//! Regularized evolution (Real et al., AAAI 2019) over the cell space: a
//! population of the most recent `population` candidates; until it is full
//! each proposal is a uniform random genotype, afterwards a tournament of
//! `sample` members drawn without replacement picks the best (first on
//! ties) and its child differs in one decision ([`SearchSpace::mutate`]).
//! Every evaluated child joins the population and the oldest member leaves
//! (ageing, the "regularized" part).

use std::collections::VecDeque;

use rand::seq::index;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::space::SearchSpace;
use super::SearchError;
use crate::model::Genotype;

/// One population member (reward stored as f64 bits: exact resume).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub genotype: Genotype,
    reward_bits: u64,
}

impl Member {
    pub fn reward(&self) -> f64 {
        f64::from_bits(self.reward_bits)
    }
}

/// The evolution controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evolution {
    pub population_size: usize,
    pub sample_size: usize,
    pub population: VecDeque<Member>,
}

impl Evolution {
    pub fn new(population_size: usize, sample_size: usize) -> Result<Evolution, SearchError> {
        if population_size < 2 || sample_size < 1 || sample_size > population_size {
            return Err(SearchError::Config(format!(
                "evolution: need population >= 2 and 1 <= sample <= population (got population {population_size}, sample {sample_size})"
            )));
        }
        Ok(Evolution {
            population_size,
            sample_size,
            population: VecDeque::new(),
        })
    }

    /// The next candidate to evaluate.
    pub fn propose(
        &self,
        space: &SearchSpace,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Genotype, SearchError> {
        if self.population.len() < self.population_size {
            return Ok(space.random(rng));
        }
        let picks = index::sample(rng, self.population.len(), self.sample_size);
        let mut best: Option<&Member> = None;
        for i in picks.iter() {
            let m = &self.population[i];
            if best.is_none_or(|b| m.reward() > b.reward()) {
                best = Some(m);
            }
        }
        let parent = best.expect("sample size >= 1");
        space.mutate(&parent.genotype, rng)
    }

    /// Record an evaluated candidate.
    pub fn record(&mut self, genotype: Genotype, reward: f64) {
        self.population.push_back(Member {
            genotype,
            reward_bits: reward.to_bits(),
        });
        while self.population.len() > self.population_size {
            self.population.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CellOp;
    use crate::search::space::{DecisionKind, OpSet};
    use rand::SeedableRng;

    #[test]
    fn evolution_climbs_a_toy_fitness() {
        // fitness: fraction of edges that are sep_conv_3x3
        let space = SearchSpace::paper(OpSet::Feature);
        let fit = |g: &Genotype| {
            g.normal
                .iter()
                .chain(&g.reduce)
                .filter(|e| e.op == CellOp::SepConv3x3)
                .count() as f64
                / 16.0
        };
        let mut evo = Evolution::new(20, 5).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut best: f64 = 0.0;
        for _ in 0..400 {
            let g = evo.propose(&space, &mut rng).unwrap();
            let f = fit(&g);
            best = best.max(f);
            evo.record(g, f);
        }
        assert!(best >= 0.75, "best {best}");
        assert_eq!(evo.population.len(), 20);
        assert!(space.decisions().iter().any(|d| d.kind == DecisionKind::Op));
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Evolution::new(1, 1).is_err());
        assert!(Evolution::new(10, 11).is_err());
        assert!(Evolution::new(10, 0).is_err());
    }
}
