//! The search loop: super-net training, candidate proposal and reward,
//! controller feedback; the candidate log; checkpoints and exact resume;
//! output files (best genotypes as model files, CSV log, SVG plots).
//!
//! Random streams (all `fault::stream(seed, index, PURPOSE, k)`):
//! super-net step `s` draws its batch and augmentation from
//! `(s, DATA)`, its training genotype from `(s, TRAIN_ARCH)` and its faults
//! from the trainer's own `(seed ^ salt, s)` streams; search step `k` draws
//! its candidate from `(k, PROPOSE)` and the reward's faults from
//! `(seed ^ REWARD_SALT, k)`. Nothing else is random, so the state saved in
//! a checkpoint (super-net, controller, log, step) determines the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::index;
use serde::{Deserialize, Serialize};

use super::evolution::Evolution;
use super::lstm::{RlConfig, RlController, RlState};
use super::reward::{accuracies, RewardConfig};
use super::space::{genotype_line, SearchSpace};
use super::supernet::{super_train_config, SuperNet};
use super::SearchError;
use crate::accel::{time_graph, Accelerator};
use crate::data::Dataset;
use crate::fault::FaultModel;
use crate::model::{Genotype, Graph};
use crate::report::{Csv, Plot, Series};
use crate::train::{Ftt, Network, TrainConfig};

const DATA: u64 = 0x0DA7_A5EA;
const TRAIN_ARCH: u64 = 0xA4C4;
const PROPOSE: u64 = 0x0960_905E;
const REWARD_SALT: u64 = 0x4E3A_4D00;
const INIT: u64 = 0x0014_17C7;

/// How candidates are proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Evolution,
    Rl,
}

/// Everything a search needs besides data and accelerator.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub space: SearchSpace,
    pub strategy: Strategy,
    /// Candidates to evaluate (controller steps).
    pub steps: usize,
    /// Super-net training batches per controller step.
    pub train_batches: usize,
    /// Super-net SGD settings (batch, lr, momentum, wd, schedule, QAT,
    /// datapath, augmentation, seed); `ftt` is set from `faults`/`alpha`.
    pub train: TrainConfig,
    /// The fault model of FTT and of the reward.
    pub faults: FaultModel,
    /// Weight of the faulty loss in super-net training.
    pub alpha: f32,
    pub reward: RewardConfig,
    /// Fault trials (simulated chips) averaged into each candidate's
    /// faulty accuracy; candidate `k` uses trials `k * chips ..
    /// (k + 1) * chips`, so `1` keeps one chip per candidate.
    pub reward_chips: usize,
    /// Evolution: population and tournament sizes.
    pub population: usize,
    pub sample: usize,
    pub rl: RlConfig,
    pub seed: u64,
    /// Write a checkpoint (and the outputs) every this many steps (0: only
    /// at the end / stop).
    pub checkpoint_every: usize,
    /// Best distinct genotypes written as model files.
    pub top_k: usize,
    /// Stop after this many steps of this invocation (resume later).
    pub stop_after: Option<usize>,
}

impl SearchConfig {
    /// The paper's settings for `space` (super-net SGD lr 0.05, momentum
    /// 0.9, wd 1e-4, cosine, batch 64; beta 0.5; LSTM hidden 100, T = 5,
    /// Adam 1e-3, baseline 0.99, entropy 0.01).
    pub fn new(space: SearchSpace, faults: FaultModel, steps: usize) -> SearchConfig {
        let mut train = TrainConfig::new(1, 64);
        train.lr = 0.05;
        train.momentum = 0.9;
        train.weight_decay = 1e-4;
        train.qat_warmup_steps = 50;
        SearchConfig {
            space,
            strategy: Strategy::Evolution,
            steps,
            train_batches: 1,
            train,
            faults,
            alpha: 0.5,
            reward: RewardConfig {
                beta: 0.5,
                penalty: None,
            },
            reward_chips: 1,
            population: 20,
            sample: 5,
            rl: RlConfig::paper(),
            seed: 0,
            checkpoint_every: 50,
            top_k: 3,
            stop_after: None,
        }
    }

    /// What each super-net step trains with: the training settings, the
    /// search's seed, FTT with the search's fault model.
    fn supernet_train_config(&self) -> TrainConfig {
        let mut t = super_train_config(&self.train);
        t.seed = self.seed;
        t.ftt = Some(Ftt {
            model: self.faults.clone(),
            alpha: self.alpha,
        });
        t
    }

    fn validate(&self) -> Result<(), SearchError> {
        self.space.validate()?;
        if self.steps == 0 || self.train_batches == 0 || self.top_k == 0 || self.reward_chips == 0 {
            return Err(SearchError::Config(
                "steps, train batches per step, top-k and reward chips must be >= 1".into(),
            ));
        }
        // the super-net's training rules (FTT model, alpha, ...) up front
        self.supernet_train_config().validate()?;
        if !(0.0..=1.0).contains(&self.reward.beta) {
            return Err(SearchError::Config(format!(
                "beta must be in [0, 1], got {}",
                self.reward.beta
            )));
        }
        if let Some(p) = self.reward.penalty {
            if p.target == 0 || !(p.lambda >= 0.0 && p.lambda.is_finite()) {
                return Err(SearchError::Config(
                    "cycle target must be >= 1 and lambda >= 0".into(),
                ));
            }
        }
        match self.strategy {
            Strategy::Evolution => {
                Evolution::new(self.population, self.sample)?;
            }
            Strategy::Rl => self.rl.validate()?,
        }
        Ok(())
    }

    /// The settings a resume must match (everything that changes results).
    fn fingerprint(&self) -> String {
        let t = &self.train;
        format!(
            "{:?}|{:?}|{}|{}|{},{},{},{},{:?},{},{:?},{},{:?}|{}|{}|{:?}|{},{}|{:?}|{}{}",
            self.space,
            self.strategy,
            self.steps,
            self.train_batches,
            t.batch,
            t.lr,
            t.momentum,
            t.weight_decay,
            t.schedule,
            t.clip,
            t.augment,
            t.qat_warmup_steps,
            t.datapath,
            self.faults.describe(),
            self.alpha,
            self.reward,
            self.population,
            self.sample,
            self.rl,
            self.seed,
            // one chip (the old default) keeps old checkpoints' fingerprint
            if self.reward_chips == 1 {
                String::new()
            } else {
                format!("|chips {}", self.reward_chips)
            }
        )
    }
}

/// One evaluated candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Search step (0-based).
    pub step: usize,
    pub genotype: Genotype,
    pub clean_acc: f64,
    pub fault_acc: f64,
    pub reward: f64,
    pub macs: u64,
    pub params: u64,
    /// Cycles per image on the accelerator, when one is given.
    pub cycles: Option<u64>,
}

/// A candidate with floats as bit patterns (checkpoint form).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CandidateBits {
    step: usize,
    genotype: Genotype,
    clean: u64,
    fault: u64,
    reward: u64,
    macs: u64,
    params: u64,
    cycles: Option<u64>,
}

impl From<&Candidate> for CandidateBits {
    fn from(c: &Candidate) -> Self {
        CandidateBits {
            step: c.step,
            genotype: c.genotype.clone(),
            clean: c.clean_acc.to_bits(),
            fault: c.fault_acc.to_bits(),
            reward: c.reward.to_bits(),
            macs: c.macs,
            params: c.params,
            cycles: c.cycles,
        }
    }
}

impl From<CandidateBits> for Candidate {
    fn from(c: CandidateBits) -> Self {
        Candidate {
            step: c.step,
            genotype: c.genotype,
            clean_acc: f64::from_bits(c.clean),
            fault_acc: f64::from_bits(c.fault),
            reward: f64::from_bits(c.reward),
            macs: c.macs,
            params: c.params,
            cycles: c.cycles,
        }
    }
}

/// The controller of a search.
#[derive(Debug, Clone)]
enum Controller {
    Evolution(Evolution),
    Rl(Box<RlController>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ControllerState {
    Evolution(Evolution),
    Rl(RlState),
}

/// Checkpoint metadata (the super-net lives beside it in safetensors).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    fingerprint: String,
    step: usize,
    supernet_steps: usize,
    controller: ControllerState,
    log: Vec<CandidateBits>,
}

/// The data of a search: the weights split trains the super-net, the
/// reward split scores candidates, `calib` sets the activation formats of
/// reward forwards.
#[derive(Debug, Clone)]
pub struct SearchData {
    pub train: Dataset,
    pub reward: Dataset,
    pub calib: Vec<f32>,
}

/// Wall-clock counters of this invocation (not checkpointed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub supernet_images: usize,
    pub supernet_seconds: f64,
    pub reward_images: usize,
    pub reward_seconds: f64,
    pub steps: usize,
    pub seconds: f64,
}

/// A search in progress.
pub struct Search<'a> {
    pub cfg: SearchConfig,
    data: &'a SearchData,
    accel: Option<&'a Accelerator>,
    pub supernet: SuperNet,
    controller: Controller,
    /// Search steps done.
    pub step: usize,
    /// Super-net steps done.
    pub supernet_steps: usize,
    pub log: Vec<Candidate>,
    pub timing: Timing,
    cycles_cache: HashMap<Genotype, u64>,
}

impl<'a> Search<'a> {
    /// A fresh search.
    pub fn new(
        cfg: SearchConfig,
        data: &'a SearchData,
        accel: Option<&'a Accelerator>,
    ) -> Result<Search<'a>, SearchError> {
        cfg.validate()?;
        check_data(&cfg, data)?;
        let controller = match cfg.strategy {
            Strategy::Evolution => {
                Controller::Evolution(Evolution::new(cfg.population, cfg.sample)?)
            }
            Strategy::Rl => {
                let mut rng = crate::fault::stream(cfg.seed, 0, INIT, 0);
                Controller::Rl(Box::new(RlController::new(&cfg.space, cfg.rl, &mut rng)?))
            }
        };
        Ok(Search {
            supernet: SuperNet::new(cfg.seed),
            cfg,
            data,
            accel,
            controller,
            step: 0,
            supernet_steps: 0,
            log: vec![],
            timing: Timing::default(),
            cycles_cache: HashMap::new(),
        })
    }

    /// Continue the search checkpointed in `dir` (see [`Search::save`]).
    pub fn resume(
        cfg: SearchConfig,
        data: &'a SearchData,
        accel: Option<&'a Accelerator>,
        dir: &Path,
    ) -> Result<Search<'a>, SearchError> {
        let mut s = Search::new(cfg, data, accel)?;
        let state_path = dir.join(STATE_FILE);
        let err = |msg: String| SearchError::Checkpoint {
            path: state_path.clone(),
            msg,
        };
        let text =
            std::fs::read_to_string(&state_path).map_err(|e| err(format!("cannot read: {e}")))?;
        let st: State = serde_json::from_str(&text).map_err(|e| err(format!("malformed: {e}")))?;
        if st.fingerprint != s.cfg.fingerprint() {
            return Err(err(
                "saved by a search with other settings (space, strategy, budget, training, faults, reward or seed); resume with the same flags".into(),
            ));
        }
        s.controller = match (st.controller, s.cfg.strategy) {
            (ControllerState::Evolution(e), Strategy::Evolution) => Controller::Evolution(e),
            (ControllerState::Rl(r), Strategy::Rl) => {
                Controller::Rl(Box::new(RlController::from_state(&r)?))
            }
            _ => return Err(err("saved with another strategy".into())),
        };
        s.supernet = SuperNet::load(&dir.join(SUPERNET_FILE), s.cfg.seed)?;
        s.step = st.step;
        s.supernet_steps = st.supernet_steps;
        s.log = st.log.into_iter().map(Candidate::from).collect();
        Ok(s)
    }

    /// True when every step is done.
    pub fn finished(&self) -> bool {
        self.step >= self.cfg.steps
    }

    /// Save the checkpoint into `dir` (created if needed): the super-net
    /// first, then the state that points at it, both atomically.
    pub fn save(&self, dir: &Path) -> Result<(), SearchError> {
        std::fs::create_dir_all(dir).map_err(|e| SearchError::Checkpoint {
            path: dir.to_path_buf(),
            msg: format!("cannot create: {e}"),
        })?;
        self.supernet.save(&dir.join(SUPERNET_FILE))?;
        let st = State {
            fingerprint: self.cfg.fingerprint(),
            step: self.step,
            supernet_steps: self.supernet_steps,
            controller: match &self.controller {
                Controller::Evolution(e) => ControllerState::Evolution(e.clone()),
                Controller::Rl(r) => ControllerState::Rl(r.state()),
            },
            log: self.log.iter().map(CandidateBits::from).collect(),
        };
        crate::report::write_json(&dir.join(STATE_FILE), &st)?;
        Ok(())
    }

    fn graph(&self, g: &Genotype) -> Result<Graph, SearchError> {
        let mut graph = self.cfg.space.spec(g).build(self.data.train.shape)?;
        graph.name = "candidate".into();
        Ok(graph)
    }

    fn train_config(&self) -> TrainConfig {
        self.cfg.supernet_train_config()
    }

    /// Total super-net steps of the whole search (the cosine schedule).
    pub fn total_supernet_steps(&self) -> usize {
        self.cfg.steps * self.cfg.train_batches
    }

    /// The genotype super-net step `s` trains.
    fn train_arch(&self, s: usize) -> Result<Genotype, SearchError> {
        let mut rng = crate::fault::stream(self.cfg.seed, s as u64, TRAIN_ARCH, 0);
        match &self.controller {
            Controller::Evolution(_) => Ok(self.cfg.space.random(&mut rng)),
            Controller::Rl(c) => self.cfg.space.decode(&c.sample(&self.cfg.space, &mut rng)),
        }
    }

    /// One super-net training step.
    fn supernet_step(&mut self, tcfg: &TrainConfig) -> Result<(), SearchError> {
        let t0 = Instant::now();
        let s = self.supernet_steps;
        let g = self.train_arch(s)?;
        let graph = self.graph(&g)?;
        let train = &self.data.train;
        let batch = tcfg.batch.min(train.len());
        let numel = train.shape.numel();
        let mut rng = crate::fault::stream(self.cfg.seed, s as u64, DATA, 0);
        let picks = index::sample(&mut rng, train.len(), batch);
        let mut images = vec![0.0f32; batch * numel];
        let mut labels = vec![0u8; batch];
        for (k, i) in picks.iter().enumerate() {
            let img = &mut images[k * numel..(k + 1) * numel];
            img.copy_from_slice(train.image(i));
            tcfg.augment.apply(img, train.shape, &mut rng);
            labels[k] = train.labels[i];
        }
        let total = self.total_supernet_steps();
        self.supernet.train_step(
            &self.cfg.space,
            &graph,
            &g,
            tcfg,
            s,
            total,
            &images,
            &labels,
        )?;
        self.supernet_steps += 1;
        self.timing.supernet_images += batch;
        self.timing.supernet_seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Cycles per image of `graph` on the accelerator (memoised).
    fn cycles(&mut self, g: &Genotype, graph: &Graph) -> Result<Option<u64>, SearchError> {
        let Some(acc) = self.accel else {
            return Ok(None);
        };
        if let Some(&c) = self.cycles_cache.get(g) {
            return Ok(Some(c));
        }
        let c = time_graph(acc, graph, None)?.totals.total_cycles;
        self.cycles_cache.insert(g.clone(), c);
        Ok(Some(c))
    }

    /// Score a genotype with the current super-net weights (does not
    /// change the search state apart from initialising unseen tensors).
    pub fn score(&mut self, g: &Genotype, trial: u64) -> Result<Candidate, SearchError> {
        let t0 = Instant::now();
        let graph = self.graph(g)?;
        let (params, _) = self.supernet.params(&graph, g, self.cfg.space.layers)?;
        let net = Network::new(&graph, params);
        let d = &self.data.reward;
        let (clean, fault) = accuracies(
            &net,
            &d.images,
            &d.labels,
            &self.data.calib,
            self.cfg.train.datapath,
            &self.cfg.faults,
            self.cfg.seed ^ REWARD_SALT,
            {
                let c = self.cfg.reward_chips as u64;
                trial * c..(trial + 1) * c
            },
        );
        let cycles = self.cycles(g, &graph)?;
        self.timing.reward_images += d.len();
        self.timing.reward_seconds += t0.elapsed().as_secs_f64();
        Ok(Candidate {
            step: self.step,
            genotype: g.clone(),
            clean_acc: clean,
            fault_acc: fault,
            reward: self.cfg.reward.reward(clean, fault, cycles),
            macs: graph.total_macs(),
            params: graph.total_params(),
            cycles,
        })
    }

    /// One search step: super-net training, then one candidate proposed,
    /// scored, logged and fed back to the controller.
    pub fn step(&mut self) -> Result<&Candidate, SearchError> {
        if self.finished() {
            return Err(SearchError::Config(format!(
                "the search already ran its {} steps",
                self.cfg.steps
            )));
        }
        let t0 = Instant::now();
        let tcfg = self.train_config();
        for _ in 0..self.cfg.train_batches {
            self.supernet_step(&tcfg)?;
        }
        let k = self.step as u64;
        let mut rng = crate::fault::stream(self.cfg.seed, k, PROPOSE, 0);
        let g = match &self.controller {
            Controller::Evolution(e) => e.propose(&self.cfg.space, &mut rng)?,
            Controller::Rl(c) => self
                .cfg
                .space
                .decode(&c.sample(&self.cfg.space, &mut rng))?,
        };
        let cand = self.score(&g, k)?;
        match &mut self.controller {
            Controller::Evolution(e) => e.record(g, cand.reward),
            Controller::Rl(c) => {
                let actions = self.cfg.space.encode(&g)?;
                c.update(&self.cfg.space, &actions, cand.reward);
            }
        }
        self.log.push(cand);
        self.step += 1;
        self.timing.steps += 1;
        self.timing.seconds += t0.elapsed().as_secs_f64();
        Ok(self.log.last().expect("just pushed"))
    }

    /// The best distinct genotypes of the log, best first (ties: earlier).
    pub fn best(&self, k: usize) -> Vec<&Candidate> {
        let mut order: Vec<&Candidate> = self.log.iter().collect();
        order.sort_by(|a, b| b.reward.total_cmp(&a.reward).then(a.step.cmp(&b.step)));
        let mut out: Vec<&Candidate> = Vec::new();
        for c in order {
            if out.len() == k {
                break;
            }
            if !out.iter().any(|o| o.genotype == c.genotype) {
                out.push(c);
            }
        }
        out
    }

    /// Run until done (or `stop_after` steps of this invocation), calling
    /// `on_step` after every step; checkpoints and outputs every
    /// `checkpoint_every` steps and at the end go to `out`.
    pub fn run(
        &mut self,
        out: &Path,
        mut on_step: impl FnMut(&Search, &Candidate),
    ) -> Result<(), SearchError> {
        let last = match self.cfg.stop_after {
            Some(n) => (self.step + n).min(self.cfg.steps),
            None => self.cfg.steps,
        };
        let ckpt = out.join(CHECKPOINT_DIR);
        while self.step < last {
            let cand = self.step()?.clone();
            on_step(self, &cand);
            let every = self.cfg.checkpoint_every;
            if every > 0 && self.step.is_multiple_of(every) && self.step < last {
                self.save(&ckpt)?;
                self.write_outputs(out)?;
            }
        }
        self.save(&ckpt)?;
        self.write_outputs(out)?;
        Ok(())
    }

    /// The outputs: `best-N.toml` model files, `log.csv`, `reward.svg`,
    /// `accuracy-vs-cost.svg` (cycles with an accelerator, MACs without).
    pub fn write_outputs(&self, out: &Path) -> Result<Vec<PathBuf>, SearchError> {
        let mut written = Vec::new();
        for (i, c) in self.best(self.cfg.top_k).iter().enumerate() {
            let path = out.join(format!("best-{}.toml", i + 1));
            let header = format!(
                "# FTT-NAS search result #{}: step {}, reward {:.4}, clean acc {:.4}, fault acc {:.4} \
                 (super-net weights, reward split), {} MACs{}\n# fault model: {}\n",
                i + 1,
                c.step,
                c.reward,
                c.clean_acc,
                c.fault_acc,
                c.macs,
                c.cycles.map(|y| format!(", {y} cycles")).unwrap_or_default(),
                self.cfg.faults.describe().replace('\n', " "),
            );
            let text = header + &self.cfg.space.spec(&c.genotype).to_toml();
            crate::report::write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
        let path = out.join("log.csv");
        log_csv(&self.log).write(&path)?;
        written.push(path);

        let mut best_so_far = Vec::new();
        let mut m = f64::NEG_INFINITY;
        for c in &self.log {
            m = m.max(c.reward);
            best_so_far.push((c.step as f64 + 1.0, m));
        }
        let pts = |f: &dyn Fn(&Candidate) -> f64| {
            self.log
                .iter()
                .map(|c| (c.step as f64 + 1.0, f(c)))
                .collect::<Vec<_>>()
        };
        let plot = Plot::new("FTT-NAS search: reward over time", "step", "reward")
            .series(Series::scatter("candidate reward", pts(&|c| c.reward)))
            .series(Series::line("best so far", best_so_far));
        let path = out.join("reward.svg");
        plot.write(&path)?;
        written.push(path);

        let with_cycles = self.accel.is_some();
        let xlabel = if with_cycles {
            "cycles per image"
        } else {
            "MACs per image"
        };
        let cost = |c: &Candidate| {
            if with_cycles {
                c.cycles.unwrap_or(0) as f64
            } else {
                c.macs as f64
            }
        };
        let clean: Vec<(f64, f64)> = self.log.iter().map(|c| (cost(c), c.clean_acc)).collect();
        let fault: Vec<(f64, f64)> = self.log.iter().map(|c| (cost(c), c.fault_acc)).collect();
        let plot = Plot::new(
            format!(
                "FTT-NAS candidates: accuracy vs {}",
                xlabel.split(' ').next().unwrap_or("")
            ),
            xlabel,
            "accuracy (reward split)",
        )
        .series(Series::scatter("clean", clean))
        .series(Series::scatter("under faults", fault));
        let path = out.join("accuracy-vs-cost.svg");
        plot.write(&path)?;
        written.push(path);
        Ok(written)
    }
}

/// Checkpoint folder inside the output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";
const SUPERNET_FILE: &str = "supernet.safetensors";

fn check_data(cfg: &SearchConfig, data: &SearchData) -> Result<(), SearchError> {
    let bad = |m: String| Err(SearchError::Config(m));
    if data.train.is_empty() || data.reward.is_empty() {
        return bad("the weights split and the reward split must both hold images".into());
    }
    if data.train.shape != data.reward.shape {
        return bad("the two splits have different image shapes".into());
    }
    if data.calib.is_empty() || !data.calib.len().is_multiple_of(data.train.shape.numel()) {
        return bad("calibration images missing or of the wrong size".into());
    }
    if cfg.train.batch < 2 {
        return bad("super-net batch must be >= 2".into());
    }
    if data.train.num_classes > cfg.space.num_classes {
        return bad(format!(
            "the data has {} classes, the searched networks {} outputs",
            data.train.num_classes, cfg.space.num_classes
        ));
    }
    // the space must build for this input (e.g. factorized reduce sizes)
    let g = cfg.space.random(&mut crate::fault::stream(0, 0, 0, 0));
    cfg.space.spec(&g).build(data.train.shape).map_err(|e| {
        SearchError::Config(format!(
            "the searched networks cannot take input {}: {e}",
            data.train.shape
        ))
    })?;
    Ok(())
}

/// The candidate log as CSV.
pub fn log_csv(log: &[Candidate]) -> Csv {
    let mut csv = Csv::new([
        "step",
        "genotype",
        "clean_acc",
        "fault_acc",
        "reward",
        "macs",
        "params",
        "cycles",
    ]);
    for c in log {
        csv.push([
            c.step.to_string(),
            genotype_line(&c.genotype),
            format!("{:.6}", c.clean_acc),
            format!("{:.6}", c.fault_acc),
            format!("{:.6}", c.reward),
            c.macs.to_string(),
            c.params.to_string(),
            c.cycles.map(|y| y.to_string()).unwrap_or_default(),
        ])
        .expect("row width matches the header");
    }
    csv
}
