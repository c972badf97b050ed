//! `ftnas infer`: fixed-point inference of a model on a dataset's test split,
//! clean and under algorithmic fault models (one trial = one simulated chip
//! for weight faults, one independent draw of feature faults).
//!
//! Pipeline ([`crate::eval::pipeline`], shared with `ftnas eval`): model
//! file + dataset shape -> graph; safetensors -> f32 weights; calibration on
//! the first `--calib` training images -> `QModel`; engine runs ->
//! accuracy; `--json` writes the numbers atomically. The flag groups
//! ([`FaultArgs`], [`DatapathArgs`], [`EngineChoice`]) are shared with
//! `ftnas eval`.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{self, Dataset, Split};
use crate::engine::{self, Engine};
use crate::eval::{self, Summary};
use crate::fault::FaultModel;
use crate::fixed::{Datapath, Overflow};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model description (TOML), e.g. models/resnet20.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Trained f32 weights (safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// The fault model (at most one of the three ways to give it).
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
    /// Number of fault trials.
    #[arg(long, default_value_t = 10)]
    pub trials: u64,
    /// Seed of the fault streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the results as JSON to this file (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineChoice::Fast)]
    pub engine: EngineChoice,
    #[command(flatten)]
    pub datapath: DatapathArgs,
}

/// The dataset flags: where the images are, how many test images to
/// evaluate and how many training images calibrate activation formats.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate on the first N test images (default: all).
    #[arg(long)]
    pub images: Option<usize>,
    /// Number of training images used to calibrate activation formats.
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
}

impl DataArgs {
    /// The (test, train) splits.
    pub fn load(&self) -> anyhow::Result<(Dataset, Dataset)> {
        let test = data::load(self.data.as_deref(), Split::Test)?;
        let train = data::load(self.data.as_deref(), Split::Train)?;
        Ok((test, train))
    }
}

/// How the fault model is given (boxed in [`Args`] to keep it small).
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// Feature fault shorthand, e.g. `mibb:1e-4`.
    #[arg(long, conflicts_with_all = ["weight_fault", "fault_model"])]
    pub feature_fault: Option<String>,
    /// Weight fault shorthand, e.g. `sa:1e-3`.
    #[arg(long, conflicts_with = "fault_model")]
    pub weight_fault: Option<String>,
    /// Fault model file (TOML).
    #[arg(long)]
    pub fault_model: Option<PathBuf>,
}

impl FaultArgs {
    /// The fault model and how it was given (the shorthand or the file),
    /// or None when no fault flag was given.
    pub fn load(&self) -> anyhow::Result<Option<(String, FaultModel)>> {
        Ok(
            match (&self.feature_fault, &self.weight_fault, &self.fault_model) {
                (Some(s), _, _) => Some((s.clone(), FaultModel::parse_feature_flag(s)?)),
                (_, Some(s), _) => Some((s.clone(), FaultModel::parse_weight_flag(s)?)),
                (_, _, Some(p)) => Some((p.display().to_string(), FaultModel::load(p)?)),
                _ => None,
            },
        )
    }
}

/// The datapath flags.
#[derive(Debug, clap::Args)]
pub struct DatapathArgs {
    /// Take the datapath (operand and accumulator bits, overflow rule) from
    /// this accelerator description, e.g. to evaluate a fault model derived
    /// for it (instead of the four flags below).
    #[arg(long, conflicts_with_all = ["act_bits", "weight_bits", "psum_bits", "overflow"])]
    pub accel: Option<std::path::PathBuf>,
    /// Activation code bits.
    #[arg(long, default_value_t = 8)]
    pub act_bits: u8,
    /// Weight code bits.
    #[arg(long, default_value_t = 8)]
    pub weight_bits: u8,
    /// Accumulator bits.
    #[arg(long, default_value_t = 32)]
    pub psum_bits: u8,
    /// Accumulator overflow.
    #[arg(long, value_enum, default_value_t = OverflowChoice::Wrap)]
    pub overflow: OverflowChoice,
}

impl DatapathArgs {
    /// The datapath, checked.
    pub fn datapath(&self) -> anyhow::Result<Datapath> {
        if let Some(path) = &self.accel {
            return Ok(crate::accel::Accelerator::load(path)?.datapath);
        }
        let datapath = Datapath {
            act_bits: self.act_bits,
            weight_bits: self.weight_bits,
            psum_bits: self.psum_bits,
            overflow: match self.overflow {
                OverflowChoice::Wrap => Overflow::Wrap,
                OverflowChoice::Saturate => Overflow::Saturate,
            },
        };
        datapath
            .validate()
            .map_err(|e| anyhow::anyhow!("datapath flags: {e}"))?;
        Ok(datapath)
    }
}

/// Engine choice.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EngineChoice {
    Fast,
    Reference,
}

impl EngineChoice {
    pub fn engine(self) -> Box<dyn Engine> {
        match self {
            EngineChoice::Fast => Box::new(engine::FastEngine),
            EngineChoice::Reference => Box::new(engine::ReferenceEngine),
        }
    }
}

/// Accumulator overflow choice.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OverflowChoice {
    Wrap,
    Saturate,
}

/// A progress bar counting images (hidden when stderr is not a terminal).
pub fn image_progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let datapath = args.datapath.datapath()?;
    let engine = args.engine.engine();
    let faults = args.faults.load()?;

    let (test, train) = args.data.load()?;
    let q = eval::load_quantized(
        &args.model,
        &args.weights,
        &train,
        args.data.calib,
        datapath,
    )?;
    let test_set = eval::first_images(&test, args.data.images)?;
    let n_test = test_set.len();
    if let Some((spec, fm)) = &faults {
        eval::check_fault_model(fm, &q.qmodel).with_context(|| format!("fault model {spec}"))?;
    }
    let trials = if faults.is_some() { args.trials } else { 0 };
    let bar = image_progress(n_test as u64 * (1 + trials));
    let progress = |k: u64| bar.inc(k);

    let clean = eval::accuracy(
        &eval::run_chunked(engine.as_ref(), &q.qmodel, test_set.images, None, &progress)?,
        test_set.labels,
    );
    let mut fault_acc = Vec::new();
    if let Some((spec, fm)) = &faults {
        if fm.weight().is_some() && !fm.weight_persistent() {
            eprintln!(
                "note: {spec} resamples weight faults every forward (training form); \
                 infer samples them once per trial, as one chip"
            );
        }
        for trial in 0..trials {
            fault_acc.push(eval::chip_accuracy(
                engine.as_ref(),
                &q.qmodel,
                fm,
                args.seed,
                trial,
                test_set,
                &progress,
            )?);
        }
    }
    bar.finish_and_clear();

    println!(
        "{} on {} ({} test images, {} engine, a{}w{}p{} {:?}): clean accuracy {:.2}%",
        q.graph.name,
        test.name,
        n_test,
        engine.name(),
        datapath.act_bits,
        datapath.weight_bits,
        datapath.psum_bits,
        datapath.overflow,
        100.0 * clean
    );
    let mut json = serde_json::json!({
        "model": args.model.display().to_string(),
        "weights": args.weights.display().to_string(),
        "dataset": test.name,
        "images": n_test,
        "calib_images": q.calib_images,
        "engine": engine.name(),
        "datapath": datapath,
        "clean_accuracy": clean,
    });
    if let Some((spec, _)) = &faults {
        let s = Summary::of(&fault_acc);
        println!(
            "under {spec}: {} trials (seed {}): mean {:.2}%, std {:.2}%, min {:.2}%",
            trials,
            args.seed,
            100.0 * s.mean,
            100.0 * s.std,
            100.0 * s.min
        );
        json["fault"] = serde_json::json!({
            "spec": spec,
            "trials": trials,
            "seed": args.seed,
            "accuracies": fault_acc,
            "mean": s.mean,
            "std": s.std,
            "min": s.min,
        });
    }
    if let Some(out) = &args.json {
        crate::report::write_json(out, &json)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_fault_sources_conflict() {
        use clap::Parser;
        let base = ["ftnas", "infer", "--model", "m.toml", "--weights", "w.st"];
        let ok = crate::cli::Cli::try_parse_from(base.iter().chain(&[
            "--feature-fault",
            "mibb:1e-4",
            "--engine",
            "reference",
        ]))
        .unwrap();
        let crate::cli::Command::Infer(a) = ok.command else {
            panic!("infer expected")
        };
        assert_eq!(a.faults.feature_fault.as_deref(), Some("mibb:1e-4"));
        assert!(matches!(a.engine, EngineChoice::Reference));
        let both =
            base.iter()
                .chain(&["--feature-fault", "mibb:1e-4", "--weight-fault", "sa:1e-3"]);
        assert!(crate::cli::Cli::try_parse_from(both).is_err());
        let bad = base.iter().chain(&["--overflow", "clamp"]);
        assert!(crate::cli::Cli::try_parse_from(bad).is_err());
    }
}
