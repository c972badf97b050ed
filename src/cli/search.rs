//! `ftnas search`: the FTT-NAS loop (see [`crate::search`]) on a dataset,
//! optionally hardware-aware (`--accel`), writing the best genotypes as
//! model files, the candidate log, plots and checkpoints into `--out`.
//!
//! Data: the training split (its first `--train-subset` images) is split,
//! stratified, into the super-net's weights split and the reward split
//! (`--reward-frac`, paper 20%); candidates are scored on the first
//! `--reward-images` images of the reward split.

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::accel::Accelerator;
use crate::data::{self, Augment, Split};
use crate::fault::FaultModel;
use crate::fixed::Datapath;
use crate::search::driver::{SearchData, CHECKPOINT_DIR};
use crate::search::lstm::RlConfig;
use crate::search::{CyclePenalty, OpSet, Search, SearchConfig, SearchSpace, Strategy};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Accelerator description (TOML): cycles of every candidate, its
    /// datapath bit widths, and the optional cycle budget.
    #[arg(long)]
    pub accel: Option<PathBuf>,
    /// Fault model of FTT and reward: `feature:SPEC` or `weight:SPEC`, e.g.
    /// `feature:mibb:1e-4`, `weight:adsaf:0.08`.
    #[arg(long, conflicts_with = "fault_model")]
    pub ftt: Option<String>,
    /// Fault model file (TOML), e.g. one written by `ftnas derive`.
    #[arg(long)]
    pub fault_model: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Candidates to evaluate (controller steps).
    #[arg(long, visible_alias = "budget", default_value_t = 300)]
    pub steps: usize,
    #[arg(long, value_enum, default_value_t = StrategyChoice::Evolution)]
    pub strategy: StrategyChoice,
    /// Weight of the faulty accuracy in the reward (default: 0.5 for
    /// feature faults, 0.2 for weight faults, as in the paper).
    #[arg(long)]
    pub beta: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the search checkpointed in OUT (same flags).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps of this invocation (resume later).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use the first N training images.
    #[arg(long, default_value_t = 10000)]
    pub train_subset: usize,
    /// Fraction of them held out for the reward.
    #[arg(long, default_value_t = 0.2)]
    pub reward_frac: f64,
    /// Reward images scored per candidate.
    #[arg(long, default_value_t = 500)]
    pub reward_images: usize,
    /// Fault trials (simulated chips) averaged into each candidate's faulty
    /// accuracy. Weight faults are drawn once per chip, and a trained net's
    /// accuracy varies by tens of points between chips: use 4 or more for
    /// weight-fault searches.
    #[arg(long, default_value_t = 1)]
    pub reward_chips: usize,
    /// Images that calibrate the activation formats of reward forwards.
    #[arg(long, default_value_t = 128)]
    pub calib: usize,
    /// Op set: `feature` (8 ops) or `weight` (11 ops); default from the
    /// fault model (weight faults -> weight).
    #[arg(long, value_enum)]
    pub ops: Option<OpsChoice>,
    /// Cells of the searched networks (paper 8).
    #[arg(long, default_value_t = 5)]
    pub cells: usize,
    /// Intermediate nodes per cell (paper 4).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Channels of the first cells (paper 20).
    #[arg(long, default_value_t = 8)]
    pub init_channels: usize,
    #[arg(long, default_value_t = 3)]
    pub stem_multiplier: usize,
    /// Super-net training batches per controller step.
    #[arg(long, default_value_t = 2)]
    pub train_batches: usize,
    /// Super-net batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Super-net SGD peak learning rate (cosine).
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 1e-4)]
    pub wd: f32,
    /// Weight of the faulty loss in super-net training.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Float super-net steps before fake quantization and FTT start.
    #[arg(long, default_value_t = 50)]
    pub qat_warmup: usize,
    /// Random-crop padding of super-net batches.
    #[arg(long, default_value_t = 2)]
    pub pad: usize,
    /// Evolution: population size.
    #[arg(long, default_value_t = 20)]
    pub population: usize,
    /// Evolution: tournament size.
    #[arg(long, default_value_t = 5)]
    pub sample: usize,
    /// RL: LSTM hidden size.
    #[arg(long, default_value_t = 100)]
    pub hidden: usize,
    /// RL: softmax temperature.
    #[arg(long, default_value_t = 5.0)]
    pub temperature: f64,
    /// RL: Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub controller_lr: f64,
    /// RL: entropy bonus coefficient.
    #[arg(long, default_value_t = 0.01)]
    pub entropy: f64,
    /// RL: EMA baseline decay.
    #[arg(long, default_value_t = 0.99)]
    pub baseline_decay: f64,
    /// Cycle budget per image on --accel: reward R - lambda*max(0, cycles/target - 1).
    #[arg(long, requires = "accel")]
    pub target_cycles: Option<u64>,
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
    /// Make the cycle budget a hard constraint (reward 0 above it).
    #[arg(long, requires = "target_cycles")]
    pub hard: bool,
    /// Checkpoint and outputs every N steps.
    #[arg(long, default_value_t = 25)]
    pub checkpoint_every: usize,
    /// Best distinct genotypes written as DIR/best-N.toml.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StrategyChoice {
    Evolution,
    Rl,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OpsChoice {
    Feature,
    Weight,
}

fn parse_ftt(s: &str) -> anyhow::Result<FaultModel> {
    match s.split_once(':') {
        Some(("feature", spec)) => Ok(FaultModel::parse_feature_flag(spec)?),
        Some(("weight", spec)) => Ok(FaultModel::parse_weight_flag(spec)?),
        _ => bail!("--ftt {s}: expected `feature:SPEC` (e.g. feature:mibb:1e-4) or `weight:SPEC` (e.g. weight:adsaf:0.08)"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let faults = match (&args.ftt, &args.fault_model) {
        (Some(s), _) => parse_ftt(s)?,
        (_, Some(p)) => FaultModel::load(p)?,
        _ => bail!("give the fault model of the search: --ftt feature:mibb:1e-4 (or weight:SPEC) or --fault-model FM.toml"),
    };
    let weight_only = faults.weight().is_some() && faults.feature().is_none();
    let accel = match &args.accel {
        Some(p) => Some(Accelerator::load(p)?),
        None => None,
    };
    let datapath = accel.as_ref().map_or(Datapath::INT8, |a| a.datapath);
    let ops = match args.ops {
        Some(OpsChoice::Feature) => OpSet::Feature,
        Some(OpsChoice::Weight) => OpSet::Weight,
        None if weight_only => OpSet::Weight,
        None => OpSet::Feature,
    };

    let full = data::load(args.data.as_deref(), Split::Train)?;
    if args.train_subset < 20 {
        bail!(
            "--train-subset {}: need at least 20 images",
            args.train_subset
        );
    }
    let subset = full.take(args.train_subset.min(full.len()));
    if !(args.reward_frac > 0.0 && args.reward_frac < 1.0) {
        bail!("--reward-frac {}: must be in (0, 1)", args.reward_frac);
    }
    let (train, reward) = subset.split_off_validation(args.reward_frac, args.seed)?;
    if train.len() < 2 || reward.is_empty() {
        bail!(
            "--train-subset {} with --reward-frac {} leaves {} weights images and {} reward images; need at least 2 and 1",
            args.train_subset,
            args.reward_frac,
            train.len(),
            reward.len()
        );
    }
    let reward = reward.take(args.reward_images.clamp(1, reward.len()));
    let numel = train.shape.numel();
    let calib = train.images[..args.calib.clamp(1, train.len()) * numel].to_vec();
    let space = SearchSpace {
        ops: ops.ops(),
        steps: args.nodes,
        init_channels: args.init_channels,
        layers: args.cells,
        stem_multiplier: args.stem_multiplier,
        num_classes: full.num_classes.max(2),
    };
    let mut cfg = SearchConfig::new(space, faults, args.steps);
    cfg.strategy = match args.strategy {
        StrategyChoice::Evolution => Strategy::Evolution,
        StrategyChoice::Rl => Strategy::Rl,
    };
    cfg.train_batches = args.train_batches;
    if args.reward_chips == 0 {
        bail!("--reward-chips 0: must be at least 1 (simulated chips per candidate)");
    }
    cfg.reward_chips = args.reward_chips;
    cfg.train.batch = args.batch;
    cfg.train.lr = args.lr;
    cfg.train.momentum = args.momentum;
    cfg.train.weight_decay = args.wd;
    cfg.train.qat_warmup_steps = args.qat_warmup;
    cfg.train.datapath = datapath;
    cfg.train.augment = Augment {
        pad: args.pad,
        flip: false,
    };
    cfg.alpha = args.alpha;
    cfg.reward.beta = args.beta.unwrap_or(if weight_only { 0.2 } else { 0.5 });
    cfg.reward.penalty = args.target_cycles.map(|target| CyclePenalty {
        target,
        lambda: args.lambda,
        hard: args.hard,
    });
    cfg.population = args.population;
    cfg.sample = args.sample;
    cfg.rl = RlConfig {
        hidden: args.hidden,
        temperature: args.temperature,
        lr: args.controller_lr,
        baseline_decay: args.baseline_decay,
        entropy: args.entropy,
    };
    cfg.seed = args.seed;
    cfg.checkpoint_every = args.checkpoint_every;
    cfg.top_k = args.top_k;
    cfg.stop_after = args.stop_after;
    let fault_text = cfg.faults.describe();

    let sdata = SearchData {
        train,
        reward,
        calib,
    };
    let mut search = if args.resume {
        Search::resume(cfg, &sdata, accel.as_ref(), &args.out.join(CHECKPOINT_DIR))
            .with_context(|| format!("resuming the search in {}", args.out.display()))?
    } else {
        Search::new(cfg, &sdata, accel.as_ref())?
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if search.finished() {
        eprintln!(
            "the search in {} already ran its {} steps",
            args.out.display(),
            search.cfg.steps
        );
    } else {
        eprintln!(
            "FTT-NAS search ({:?}, {} ops, {} cells x {} nodes, C = {}) on {} + {} images; faults: {}; step {} of {}",
            search.cfg.strategy,
            search.cfg.space.ops.len(),
            search.cfg.space.layers,
            search.cfg.space.steps,
            search.cfg.space.init_channels,
            sdata.train.len(),
            sdata.reward.len(),
            fault_text.lines().next().unwrap_or(""),
            search.step,
            search.cfg.steps
        );
    }
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(search.cfg.steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("search {bar:30} {pos}/{len} steps {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(search.step as u64);
    let out = args.out.clone();
    search.run(&out, |s, c| {
        let best = s.best(1).first().map_or(0.0, |b| b.reward);
        bar.set_message(format!(
            "reward {:.3} (clean {:.3}, fault {:.3}) best {:.3}",
            c.reward, c.clean_acc, c.fault_acc, best
        ));
        bar.inc(1);
    })?;
    bar.finish_and_clear();

    let t = search.timing;
    for (i, c) in search.best(search.cfg.top_k).iter().enumerate() {
        println!(
            "best-{}.toml: reward {:.4}, clean {:.4}, fault {:.4}, {} MACs, {} params{} (step {})",
            i + 1,
            c.reward,
            c.clean_acc,
            c.fault_acc,
            c.macs,
            c.params,
            c.cycles
                .map(|y| format!(", {y} cycles"))
                .unwrap_or_default(),
            c.step
        );
    }
    if t.steps > 0 {
        println!(
            "speed: super-net training {:.1} images/s, reward {:.1} images/s (clean + faulty), {:.2} controller steps/min ({} steps in {:.1} s)",
            t.supernet_images as f64 / t.supernet_seconds.max(1e-9),
            t.reward_images as f64 / t.reward_seconds.max(1e-9),
            t.steps as f64 * 60.0 / t.seconds.max(1e-9),
            t.steps,
            t.seconds
        );
    }
    println!("outputs: {}", out.display());
    Ok(())
}
