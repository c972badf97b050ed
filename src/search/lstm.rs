//! The paper's controller: a one-layer LSTM that emits the decision
//! sequence of a genotype ([`SearchSpace::decisions`]), trained by
//! REINFORCE with an exponential-moving-average baseline and an entropy
//! bonus, optimised by Adam.
//!
//! At decision `t` the LSTM reads `x_t` (a learned start vector at `t = 0`,
//! otherwise the embedding of the previous decision's choice, one embedding
//! table for input nodes and one for ops), updates `(h, c)` with the usual
//! gates `[i, f, g, o] = [s, s, tanh, s](Wx x + Wh h + b)`,
//! `c' = f c + i g`, `h' = o tanh(c')`, and a linear head per decision kind
//! gives logits `(W h + b) / T` (temperature `T`, paper 5) over the
//! decision's valid choices (an input node must be earlier than the node).
//!
//! Loss of one sampled sequence with advantage `A = R - baseline`:
//! `L = -A sum_t log p_t(a_t) - e sum_t H(p_t)`. Backward is written by
//! hand (back-propagation through time) and checked against central
//! differences in the tests. Everything is f64 (the controller is small).
//!
//! Baseline: the first reward, then `b <- d b + (1 - d) R` before computing
//! the advantage (d = 0.99), as ENAS updates it.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::space::{Decision, DecisionKind, SearchSpace};
use super::SearchError;

/// Shapes of the controller network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LstmShape {
    /// Hidden (and embedding) size.
    pub hidden: usize,
    /// Choices of the largest input-node decision.
    pub n_from: usize,
    pub n_op: usize,
}

/// Offsets of the parameter blocks in the flat vector.
#[derive(Debug, Clone, Copy)]
struct Layout {
    wx: usize,
    wh: usize,
    b: usize,
    start: usize,
    emb_from: usize,
    emb_op: usize,
    w_from: usize,
    b_from: usize,
    w_op: usize,
    b_op: usize,
    len: usize,
}

impl LstmShape {
    fn layout(&self) -> Layout {
        let h = self.hidden;
        let mut at = 0;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let wx = take(4 * h * h);
        let wh = take(4 * h * h);
        let b = take(4 * h);
        let start = take(h);
        let emb_from = take(self.n_from * h);
        let emb_op = take(self.n_op * h);
        let w_from = take(self.n_from * h);
        let b_from = take(self.n_from);
        let w_op = take(self.n_op * h);
        let b_op = take(self.n_op);
        Layout {
            wx,
            wh,
            b,
            start,
            emb_from,
            emb_op,
            w_from,
            b_from,
            w_op,
            b_op,
            len: at,
        }
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.layout().len
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// What the forward keeps per decision.
struct StepCache {
    x: Vec<f64>,
    h_prev: Vec<f64>,
    c_prev: Vec<f64>,
    /// Gate activations i, f, g, o (each hidden long).
    gates: Vec<f64>,
    c: Vec<f64>,
    h: Vec<f64>,
    probs: Vec<f64>,
}

/// The controller network (parameters only).
#[derive(Debug, Clone, PartialEq)]
pub struct Lstm {
    pub shape: LstmShape,
    pub theta: Vec<f64>,
    pub temperature: f64,
}

impl Lstm {
    /// Parameters uniform in [-0.1, 0.1].
    pub fn new(shape: LstmShape, temperature: f64, rng: &mut Xoshiro256PlusPlus) -> Lstm {
        let theta = (0..shape.num_params())
            .map(|_| rng.random_range(-0.1..0.1))
            .collect();
        Lstm {
            shape,
            theta,
            temperature,
        }
    }

    /// Run the sequence: with `actions` given, score them; otherwise sample
    /// each decision from `rng`. Returns the actions and the caches.
    fn forward(
        &self,
        decisions: &[Decision],
        actions: Option<&[usize]>,
        mut rng: Option<&mut Xoshiro256PlusPlus>,
    ) -> (Vec<usize>, Vec<StepCache>) {
        let hd = self.shape.hidden;
        let l = self.shape.layout();
        let th = &self.theta;
        let mut h = vec![0.0; hd];
        let mut c = vec![0.0; hd];
        let mut taken: Vec<usize> = Vec::with_capacity(decisions.len());
        let mut caches = Vec::with_capacity(decisions.len());
        for (t, d) in decisions.iter().enumerate() {
            let x: Vec<f64> = if t == 0 {
                th[l.start..l.start + hd].to_vec()
            } else {
                let base = match decisions[t - 1].kind {
                    DecisionKind::From => l.emb_from,
                    DecisionKind::Op => l.emb_op,
                };
                let o = base + taken[t - 1] * hd;
                th[o..o + hd].to_vec()
            };
            let mut gates = vec![0.0; 4 * hd];
            for (r, gv) in gates.iter_mut().enumerate() {
                let wx = &th[l.wx + r * hd..l.wx + (r + 1) * hd];
                let wh = &th[l.wh + r * hd..l.wh + (r + 1) * hd];
                let mut z = th[l.b + r];
                for k in 0..hd {
                    z += wx[k] * x[k] + wh[k] * h[k];
                }
                *gv = if r / hd == 2 { z.tanh() } else { sigmoid(z) };
            }
            let mut c_new = vec![0.0; hd];
            let mut h_new = vec![0.0; hd];
            for k in 0..hd {
                let (i, f, g, o) = (
                    gates[k],
                    gates[hd + k],
                    gates[2 * hd + k],
                    gates[3 * hd + k],
                );
                c_new[k] = f * c[k] + i * g;
                h_new[k] = o * c_new[k].tanh();
            }
            let (w, b) = match d.kind {
                DecisionKind::From => (l.w_from, l.b_from),
                DecisionKind::Op => (l.w_op, l.b_op),
            };
            let logits: Vec<f64> = (0..d.choices)
                .map(|j| {
                    let row = &th[w + j * hd..w + (j + 1) * hd];
                    let u: f64 =
                        th[b + j] + row.iter().zip(&h_new).map(|(a, b)| a * b).sum::<f64>();
                    u / self.temperature
                })
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            let probs: Vec<f64> = e.iter().map(|v| v / s).collect();
            let a = match (actions, rng.as_deref_mut()) {
                (Some(acts), _) => acts[t],
                (None, Some(r)) => sample(&probs, r),
                (None, None) => argmax(&probs),
            };
            taken.push(a);
            caches.push(StepCache {
                x,
                h_prev: std::mem::replace(&mut h, h_new.clone()),
                c_prev: std::mem::replace(&mut c, c_new.clone()),
                gates,
                c: c_new,
                h: h_new,
                probs,
            });
        }
        (taken, caches)
    }

    /// Sample a decision sequence.
    pub fn sample(&self, decisions: &[Decision], rng: &mut Xoshiro256PlusPlus) -> Vec<usize> {
        self.forward(decisions, None, Some(rng)).0
    }

    /// The most likely choice at every step (greedy decoding).
    pub fn greedy(&self, decisions: &[Decision]) -> Vec<usize> {
        self.forward(decisions, None, None).0
    }

    /// Sum of log-probabilities and of entropies of `actions`.
    pub fn log_prob_entropy(&self, decisions: &[Decision], actions: &[usize]) -> (f64, f64) {
        let (_, caches) = self.forward(decisions, Some(actions), None);
        let mut lp = 0.0;
        let mut ent = 0.0;
        for (cache, &a) in caches.iter().zip(actions) {
            lp += cache.probs[a].max(1e-300).ln();
            ent += entropy(&cache.probs);
        }
        (lp, ent)
    }

    /// REINFORCE loss `-adv sum log p - ent_coef sum H` of `actions` and its
    /// gradient with respect to `theta`.
    pub fn loss_and_grad(
        &self,
        decisions: &[Decision],
        actions: &[usize],
        adv: f64,
        ent_coef: f64,
    ) -> (f64, Vec<f64>) {
        let hd = self.shape.hidden;
        let l = self.shape.layout();
        let th = &self.theta;
        let (_, caches) = self.forward(decisions, Some(actions), None);
        let mut grad = vec![0.0; th.len()];
        let mut loss = 0.0;
        let mut dh_next = vec![0.0; hd];
        let mut dc_next = vec![0.0; hd];
        for t in (0..decisions.len()).rev() {
            let cache = &caches[t];
            let d = decisions[t];
            let a = actions[t];
            let p = &cache.probs;
            let hent = entropy(p);
            loss += -adv * p[a].max(1e-300).ln() - ent_coef * hent;
            let (w, b) = match d.kind {
                DecisionKind::From => (l.w_from, l.b_from),
                DecisionKind::Op => (l.w_op, l.b_op),
            };
            let mut dh = dh_next.clone();
            for j in 0..d.choices {
                let onehot = if j == a { 1.0 } else { 0.0 };
                let plogp = if p[j] > 0.0 {
                    p[j] * (p[j].ln() + hent)
                } else {
                    0.0
                };
                let dl = -adv * (onehot - p[j]) + ent_coef * plogp;
                let du = dl / self.temperature;
                grad[b + j] += du;
                for k in 0..hd {
                    grad[w + j * hd + k] += du * cache.h[k];
                    dh[k] += du * th[w + j * hd + k];
                }
            }
            let mut dz = vec![0.0; 4 * hd];
            let mut dc_prev = vec![0.0; hd];
            for k in 0..hd {
                let (i, f, g, o) = (
                    cache.gates[k],
                    cache.gates[hd + k],
                    cache.gates[2 * hd + k],
                    cache.gates[3 * hd + k],
                );
                let tc = cache.c[k].tanh();
                let d_o = dh[k] * tc;
                let dc = dh[k] * o * (1.0 - tc * tc) + dc_next[k];
                let di = dc * g;
                let dg = dc * i;
                let df = dc * cache.c_prev[k];
                dc_prev[k] = dc * f;
                dz[k] = di * i * (1.0 - i);
                dz[hd + k] = df * f * (1.0 - f);
                dz[2 * hd + k] = dg * (1.0 - g * g);
                dz[3 * hd + k] = d_o * o * (1.0 - o);
            }
            let mut dx = vec![0.0; hd];
            let mut dh_prev = vec![0.0; hd];
            for (r, &dzr) in dz.iter().enumerate() {
                grad[l.b + r] += dzr;
                for k in 0..hd {
                    grad[l.wx + r * hd + k] += dzr * cache.x[k];
                    grad[l.wh + r * hd + k] += dzr * cache.h_prev[k];
                    dx[k] += dzr * th[l.wx + r * hd + k];
                    dh_prev[k] += dzr * th[l.wh + r * hd + k];
                }
            }
            let x_at = if t == 0 {
                l.start
            } else {
                let base = match decisions[t - 1].kind {
                    DecisionKind::From => l.emb_from,
                    DecisionKind::Op => l.emb_op,
                };
                base + actions[t - 1] * hd
            };
            for k in 0..hd {
                grad[x_at + k] += dx[k];
            }
            dh_next = dh_prev;
            dc_next = dc_prev;
        }
        (loss, grad)
    }
}

fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| v * v.ln())
        .sum::<f64>()
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

fn sample(p: &[f64], rng: &mut Xoshiro256PlusPlus) -> usize {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, &v) in p.iter().enumerate() {
        acc += v;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

/// Adam state.
#[derive(Debug, Clone, PartialEq)]
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: u64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// Hyper-parameters of the RL controller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RlConfig {
    /// LSTM hidden size (paper 100).
    pub hidden: usize,
    /// Softmax temperature (paper 5).
    pub temperature: f64,
    /// Adam learning rate (paper 1e-3).
    pub lr: f64,
    /// EMA baseline decay (paper 0.99).
    pub baseline_decay: f64,
    /// Entropy bonus coefficient (paper 0.01).
    pub entropy: f64,
}

impl RlConfig {
    pub fn paper() -> RlConfig {
        RlConfig {
            hidden: 100,
            temperature: 5.0,
            lr: 1e-3,
            baseline_decay: 0.99,
            entropy: 0.01,
        }
    }

    pub fn validate(&self) -> Result<(), SearchError> {
        let ok = (1..=1024).contains(&self.hidden)
            && self.temperature > 0.0
            && self.temperature.is_finite()
            && self.lr > 0.0
            && self.lr.is_finite()
            && (0.0..1.0).contains(&self.baseline_decay)
            && self.entropy >= 0.0
            && self.entropy.is_finite();
        if ok {
            Ok(())
        } else {
            Err(SearchError::Config(format!(
                "RL controller: need hidden in 1..=1024, temperature > 0, lr > 0, baseline decay in [0, 1), entropy >= 0 (got {self:?})"
            )))
        }
    }
}

/// The LSTM controller with its optimizer and baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct RlController {
    pub cfg: RlConfig,
    pub lstm: Lstm,
    adam: Adam,
    pub baseline: Option<f64>,
}

/// Serializable state (floats as bit patterns: an exact resume).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RlState {
    pub cfg: RlConfig,
    pub shape: LstmShape,
    theta: Vec<u64>,
    m: Vec<u64>,
    v: Vec<u64>,
    t: u64,
    baseline: Option<u64>,
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn unbits(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&x| f64::from_bits(x)).collect()
}

/// What one controller update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RlUpdate {
    pub advantage: f64,
    pub loss: f64,
    pub entropy: f64,
}

impl RlController {
    pub fn new(
        space: &SearchSpace,
        cfg: RlConfig,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<RlController, SearchError> {
        cfg.validate()?;
        let shape = LstmShape {
            hidden: cfg.hidden,
            n_from: space.max_from(),
            n_op: space.ops.len(),
        };
        let lstm = Lstm::new(shape, cfg.temperature, rng);
        let n = lstm.theta.len();
        Ok(RlController {
            cfg,
            lstm,
            adam: Adam {
                m: vec![0.0; n],
                v: vec![0.0; n],
                t: 0,
            },
            baseline: None,
        })
    }

    /// Sample a decision sequence from the policy.
    pub fn sample(&self, space: &SearchSpace, rng: &mut Xoshiro256PlusPlus) -> Vec<usize> {
        self.lstm.sample(&space.decisions(), rng)
    }

    /// REINFORCE update for `actions` that earned `reward`.
    pub fn update(&mut self, space: &SearchSpace, actions: &[usize], reward: f64) -> RlUpdate {
        let b = match self.baseline {
            None => reward,
            Some(b) => self.cfg.baseline_decay * b + (1.0 - self.cfg.baseline_decay) * reward,
        };
        self.baseline = Some(b);
        let adv = reward - b;
        let decisions = space.decisions();
        let (_, entropy) = self.lstm.log_prob_entropy(&decisions, actions);
        let (loss, grad) = self
            .lstm
            .loss_and_grad(&decisions, actions, adv, self.cfg.entropy);
        let a = &mut self.adam;
        a.t += 1;
        let (c1, c2) = (1.0 - BETA1.powi(a.t as i32), 1.0 - BETA2.powi(a.t as i32));
        for (i, g) in grad.iter().enumerate() {
            a.m[i] = BETA1 * a.m[i] + (1.0 - BETA1) * g;
            a.v[i] = BETA2 * a.v[i] + (1.0 - BETA2) * g * g;
            let mh = a.m[i] / c1;
            let vh = a.v[i] / c2;
            self.lstm.theta[i] -= self.cfg.lr * mh / (vh.sqrt() + ADAM_EPS);
        }
        RlUpdate {
            advantage: adv,
            loss,
            entropy,
        }
    }

    pub fn state(&self) -> RlState {
        RlState {
            cfg: self.cfg,
            shape: self.lstm.shape,
            theta: bits(&self.lstm.theta),
            m: bits(&self.adam.m),
            v: bits(&self.adam.v),
            t: self.adam.t,
            baseline: self.baseline.map(f64::to_bits),
        }
    }

    pub fn from_state(s: &RlState) -> Result<RlController, SearchError> {
        let n = s.shape.num_params();
        if s.theta.len() != n || s.m.len() != n || s.v.len() != n {
            return Err(SearchError::Config(format!(
                "controller state has {} parameters, its shape needs {n}",
                s.theta.len()
            )));
        }
        s.cfg.validate()?;
        Ok(RlController {
            cfg: s.cfg,
            lstm: Lstm {
                shape: s.shape,
                theta: unbits(&s.theta),
                temperature: s.cfg.temperature,
            },
            adam: Adam {
                m: unbits(&s.m),
                v: unbits(&s.v),
                t: s.t,
            },
            baseline: s.baseline.map(f64::from_bits),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CellOp;
    use crate::search::space::OpSet;
    use rand::SeedableRng;

    fn small_space() -> SearchSpace {
        let mut s = SearchSpace::paper(OpSet::Feature);
        s.steps = 2;
        s.ops = vec![CellOp::SkipConnect, CellOp::SepConv3x3, CellOp::MaxPool3x3];
        s
    }

    #[test]
    fn gradient_matches_central_differences() {
        let space = small_space();
        let decisions = space.decisions();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let shape = LstmShape {
            hidden: 5,
            n_from: space.max_from(),
            n_op: space.ops.len(),
        };
        let mut lstm = Lstm::new(shape, 1.7, &mut rng);
        // larger weights so that the gates are not all near-linear
        for v in &mut lstm.theta {
            *v *= 8.0;
        }
        let actions = lstm.sample(&decisions, &mut rng);
        let (adv, ent) = (0.73, 0.31);
        let (loss, grad) = lstm.loss_and_grad(&decisions, &actions, adv, ent);
        let (lp, h) = lstm.log_prob_entropy(&decisions, &actions);
        assert!((loss - (-adv * lp - ent * h)).abs() < 1e-9);
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for (i, &g) in grad.iter().enumerate() {
            let mut p = lstm.clone();
            p.theta[i] += eps;
            let up = p.loss_and_grad(&decisions, &actions, adv, ent).0;
            p.theta[i] -= 2.0 * eps;
            let down = p.loss_and_grad(&decisions, &actions, adv, ent).0;
            let num = (up - down) / (2.0 * eps);
            let err = (num - g).abs() / (1e-6 + num.abs().max(g.abs()));
            worst = worst.max(if num.abs().max(g.abs()) < 1e-7 {
                0.0
            } else {
                err
            });
        }
        assert!(worst < 1e-4, "worst relative error {worst}");
        // every block receives gradient
        assert!(grad.iter().filter(|g| g.abs() > 0.0).count() > grad.len() / 2);
    }

    #[test]
    fn reinforce_learns_a_rewarded_choice() {
        // reward = fraction of op decisions choosing op 1
        let space = small_space();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let cfg = RlConfig {
            hidden: 16,
            temperature: 1.0,
            lr: 0.02,
            baseline_decay: 0.9,
            entropy: 0.0,
        };
        let mut c = RlController::new(&space, cfg, &mut rng).unwrap();
        let decisions = space.decisions();
        let score = |a: &[usize]| {
            let ops: Vec<usize> = decisions
                .iter()
                .zip(a)
                .filter(|(d, _)| d.kind == DecisionKind::Op)
                .map(|(_, &x)| x)
                .collect();
            ops.iter().filter(|&&x| x == 1).count() as f64 / ops.len() as f64
        };
        let mut first = 0.0;
        let mut last = 0.0;
        for step in 0..300 {
            let a = c.sample(&space, &mut rng);
            let r = score(&a);
            if step < 30 {
                first += r;
            }
            if step >= 270 {
                last += r;
            }
            c.update(&space, &a, r);
        }
        assert!(last > first + 10.0, "first {first}, last {last}");
        assert_eq!(
            RlController::from_state(&c.state()).unwrap(),
            c,
            "state round trip"
        );
    }

    #[test]
    fn sampling_respects_the_decisions() {
        let space = SearchSpace::paper(OpSet::Weight);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let c = RlController::new(&space, RlConfig::paper(), &mut rng).unwrap();
        for _ in 0..20 {
            let a = c.sample(&space, &mut rng);
            space.decode(&a).unwrap();
        }
        space.decode(&c.lstm.greedy(&space.decisions())).unwrap();
    }
}
