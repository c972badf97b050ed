//! `ftnas train`: quantization-aware (and optionally fault-tolerant)
//! training of a model file on a dataset, exporting f32 weights that
//! `ftnas infer` loads unchanged.
//!
//! Pipeline: model file + dataset shape -> graph; training split (optionally
//! its first `--train-subset` images) -> stratified validation hold-out;
//! `train::Trainer` runs the epochs (checkpoint `OUT.ckpt` + `OUT.ckpt.json`
//! and log `OUT.csv` after each); the weights go to `--out`; finally the test
//! split is scored by the QAT forward and by the fixed-point FastEngine.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::data::{self, Augment, Split};
use crate::engine::{Engine, FastEngine};
use crate::fault::FaultModel;
use crate::fixed::Datapath;
use crate::model;
use crate::quant;
use crate::train::{Ftt, Params, Schedule, TrainConfig, Trainer};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model description (TOML), e.g. models/resnet20.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay.
    #[arg(long, default_value_t = 5e-4)]
    pub wd: f32,
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Cosine)]
    pub schedule: ScheduleChoice,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Output weights (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from OUT.ckpt (same flags and seed).
    #[arg(long)]
    pub resume: bool,
    /// Start from these trained weights (safetensors of the same model)
    /// instead of a random initialisation, e.g. FTT fine-tuning of a
    /// normally trained model (use with `--qat-warmup 0`).
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Fault-tolerant training: `feature:SPEC` or `weight:SPEC` with the
    /// `--feature-fault` / `--weight-fault` shorthands, e.g. `feature:mibb:1e-4`.
    #[arg(long, conflicts_with = "fault_model")]
    pub ftt: Option<String>,
    /// FTT with a fault-model file (TOML).
    #[arg(long)]
    pub fault_model: Option<PathBuf>,
    /// Weight of the faulty loss: L = (1-alpha) CE(clean) + alpha CE(faulty).
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_subset: Option<usize>,
    /// Fraction of the training images held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_frac: f64,
    /// Random-crop padding (0 = no crop).
    #[arg(long, default_value_t = 2)]
    pub pad: usize,
    /// Random horizontal flips.
    #[arg(long)]
    pub flip: bool,
    /// Train in float (no fake quantization; no FTT).
    #[arg(long)]
    pub no_qat: bool,
    /// Float steps before fake quantization starts.
    #[arg(long, default_value_t = 100)]
    pub qat_warmup: usize,
    /// Training images that calibrate activation formats (as `infer --calib`).
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many epochs of this invocation (resume later).
    #[arg(long)]
    pub stop_after: Option<usize>,
    #[arg(long, default_value_t = 8)]
    pub act_bits: u8,
    #[arg(long, default_value_t = 8)]
    pub weight_bits: u8,
    #[arg(long, default_value_t = 32)]
    pub psum_bits: u8,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScheduleChoice {
    Cosine,
    Step,
}

/// Parse `--ftt kind:spec`.
fn parse_ftt(s: &str) -> anyhow::Result<FaultModel> {
    match s.split_once(':') {
        Some(("feature", spec)) => Ok(FaultModel::parse_feature_flag(spec)?),
        Some(("weight", spec)) => Ok(FaultModel::parse_weight_flag(spec)?),
        _ => bail!("--ftt {s}: expected `feature:SPEC` (e.g. feature:mibb:1e-4) or `weight:SPEC` (e.g. weight:sa:1e-3)"),
    }
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let datapath = Datapath {
        act_bits: args.act_bits,
        weight_bits: args.weight_bits,
        psum_bits: args.psum_bits,
        ..Datapath::INT8
    };
    let fault_model = match (&args.ftt, &args.fault_model) {
        (Some(s), _) => Some(parse_ftt(s)?),
        (_, Some(p)) => Some(FaultModel::load(p)?),
        _ => None,
    };
    let full = data::load(args.data.as_deref(), Split::Train)?;
    let test = data::load(args.data.as_deref(), Split::Test)?;
    let graph = model::load_model(&args.model, full.shape)?;
    if graph.output_shape().numel() < full.num_classes {
        bail!(
            "{}: the model has {} outputs but the dataset has {} classes",
            args.model.display(),
            graph.output_shape().numel(),
            full.num_classes
        );
    }
    if let Some(fm) = &fault_model {
        let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
        fm.check_layer_names(&names)?;
    }
    let subset = match args.train_subset {
        Some(n) => full.take(n.min(full.len())),
        None => full.clone(),
    };
    let (train_set, val_set) = subset.split_off_validation(args.val_frac, args.seed)?;
    let numel = full.shape.numel();
    let calib = &full.images[..args.calib.clamp(1, full.len()) * numel];

    let mut cfg = TrainConfig::new(args.epochs, args.batch);
    cfg.lr = args.lr;
    cfg.momentum = args.momentum;
    cfg.weight_decay = args.wd;
    cfg.schedule = match args.schedule {
        ScheduleChoice::Cosine => Schedule::Cosine,
        ScheduleChoice::Step => Schedule::Step,
    };
    cfg.clip = args.clip;
    cfg.augment = Augment {
        pad: args.pad,
        flip: args.flip,
    };
    cfg.seed = args.seed;
    cfg.datapath = datapath;
    cfg.qat = !args.no_qat;
    cfg.qat_warmup_steps = args.qat_warmup;
    cfg.ftt = fault_model.map(|model| Ftt {
        model,
        alpha: args.alpha,
    });
    cfg.stop_after = args.stop_after;
    cfg.progress = true;
    cfg.log = Some(args.out.with_extension("csv"));
    let ckpt = with_suffix(&args.out, ".ckpt");
    cfg.checkpoint = Some(ckpt.clone());

    let mut trainer = if args.resume {
        Trainer::resume(&graph, cfg, &ckpt)?
    } else if let Some(init) = &args.init {
        let weights = model::load_weights(init, &graph)
            .with_context(|| format!("--init {}", init.display()))?;
        let params = Params::from_weights(&graph, &weights)
            .map_err(|e| anyhow::anyhow!("--init {}: {e}", init.display()))?;
        Trainer::new(&graph, cfg, params)?
    } else {
        Trainer::new(&graph, cfg, Params::init(&graph, args.seed))?
    };
    eprintln!(
        "training {} ({} params) on {} images ({} held out), {} epochs from epoch {}",
        graph.name,
        graph.total_params(),
        train_set.len(),
        val_set.len(),
        trainer.cfg.epochs,
        trainer.epoch
    );
    trainer.run(&train_set, &val_set, calib)?;
    let weights = trainer.net.params.to_weights();
    model::save_weights(&args.out, &weights)?;
    println!("weights: {}", args.out.display());

    // the test split through the QAT forward and the fixed-point engine
    trainer.calibrate(calib);
    let (_, qat_acc) = trainer.evaluate(&test);
    let qmodel = quant::quantize(&graph, &weights, datapath, calib)
        .with_context(|| format!("quantizing {}", args.model.display()))?;
    let logits = FastEngine.run(&qmodel, &test.images, 0, None)?;
    let hits = logits
        .iter()
        .zip(&test.labels)
        .filter(|(l, &y)| quant::argmax(l) == y as usize)
        .count();
    let engine_acc = hits as f64 / test.len().max(1) as f64;
    println!(
        "test accuracy: {} forward {:.2}%, fixed-point engine {:.2}% ({} images)",
        if trainer.qat_active() { "QAT" } else { "float" },
        100.0 * qat_acc,
        100.0 * engine_acc,
        test.len()
    );
    Ok(())
}
