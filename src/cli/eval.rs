//! `ftnas eval`: accuracy versus fault rate for one or several models side
//! by side. Each `--model` is paired with the `--weights` at the same
//! position; the fault model (a shorthand or a file) is put at every rate of
//! `--rates` (see [`crate::eval::rate`] for what a rate means per fault
//! kind) and evaluated on `--chips` simulated chips. Prints a table and,
//! with `--out DIR`, writes `eval.csv`, `eval.json` and `eval.svg` there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::infer::{image_progress, DataArgs, DatapathArgs, EngineChoice, FaultArgs};
use crate::eval::{self, EvalReport, ModelResult, RateMode, RateScaler, SweepConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model description (TOML); repeat for several models.
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// Trained f32 weights (safetensors) of the `--model` at the same
    /// position; one per model.
    #[arg(long = "weights", required = true)]
    pub weights: Vec<PathBuf>,
    /// The fault model (exactly one of the three ways to give it).
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
    /// Fault rates, comma separated, e.g. `1e-5,1e-4,1e-3`.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        allow_hyphen_values = true
    )]
    pub rates: Vec<f64>,
    /// Rates are factors on the fault model as given (1 = as given) instead
    /// of the fault model's nominal rate.
    #[arg(long)]
    pub relative: bool,
    /// Simulated chips per rate.
    #[arg(long, default_value_t = 10)]
    pub chips: u64,
    #[command(flatten)]
    pub data: DataArgs,
    /// Seed of the fault streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for eval.csv, eval.json and eval.svg (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineChoice::Fast)]
    pub engine: EngineChoice,
    #[command(flatten)]
    pub datapath: DatapathArgs,
}

/// Legend names: the weights file stems, or the whole paths when two stems
/// are the same.
fn legend_labels(weights: &[PathBuf]) -> Vec<String> {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into())
    };
    let stems: Vec<String> = weights.iter().map(|p| stem(p)).collect();
    let unique: HashSet<&String> = stems.iter().collect();
    if unique.len() == stems.len() {
        stems
    } else {
        weights.iter().map(|p| p.display().to_string()).collect()
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.models.len() != args.weights.len() {
        bail!(
            "--model is given {} time(s) but --weights {} time(s); give one --weights per \
             --model, in the same order",
            args.models.len(),
            args.weights.len()
        );
    }
    let Some((fault_spec, fault)) = args.faults.load()? else {
        bail!("no fault model: give --feature-fault, --weight-fault or --fault-model");
    };
    let datapath = args.datapath.datapath()?;
    let engine = args.engine.engine();
    let mode = if args.relative {
        RateMode::Relative
    } else {
        RateMode::Absolute
    };
    let scaler = RateScaler::new(&fault, mode, datapath.weight_bits)
        .with_context(|| format!("fault model {fault_spec}"))?;
    let cfg = SweepConfig::new(args.rates.clone(), args.chips, args.seed, &scaler)
        .context("--rates/--chips")?;
    if fault.weight().is_some() && !fault.weight_persistent() {
        eprintln!(
            "note: {fault_spec} resamples weight faults every forward (training form); \
             eval samples them once per chip"
        );
    }

    let (test, train) = args.data.load()?;
    let test_set = eval::first_images(&test, args.data.images)?;
    let mut quantized = Vec::with_capacity(args.models.len());
    for (m, w) in args.models.iter().zip(&args.weights) {
        let q = eval::load_quantized(m, w, &train, args.data.calib, datapath)?;
        eval::check_fault_model(&fault, &q.qmodel)
            .with_context(|| format!("fault model {fault_spec} on {}", m.display()))?;
        quantized.push(q);
    }

    let bar = image_progress(cfg.work(test_set.len()) * quantized.len() as u64);
    let progress = |k: u64| bar.inc(k);
    let mut models = Vec::with_capacity(quantized.len());
    for (((q, m), w), label) in quantized
        .iter()
        .zip(&args.models)
        .zip(&args.weights)
        .zip(legend_labels(&args.weights))
    {
        let curve = eval::sweep(
            engine.as_ref(),
            &q.qmodel,
            test_set,
            &scaler,
            &cfg,
            &progress,
        )?;
        models.push(ModelResult {
            label,
            model: m.display().to_string(),
            weights: w.display().to_string(),
            network: q.graph.name.clone(),
            calib_images: q.calib_images,
            curve,
        });
    }
    bar.finish_and_clear();

    let report = EvalReport {
        dataset: test.name.clone(),
        images: test_set.len(),
        num_classes: test.num_classes,
        engine: engine.name().into(),
        datapath,
        fault: fault_spec,
        fault_model: fault.describe(),
        rate_mode: mode,
        rates: cfg.rates.clone(),
        chips: cfg.chips,
        seed: cfg.seed,
        models,
    };
    println!(
        "accuracy (%) on {} ({} test images, {} engine), {} chips per rate, seed {}",
        report.dataset, report.images, report.engine, report.chips, report.seed
    );
    println!(
        "fault model {} ({}), {} rates: {}",
        report.fault,
        report.fault_model,
        mode,
        mode_meaning(mode)
    );
    print!("{}", report.table());
    if let Some(dir) = &args.out {
        for p in report.write(dir)? {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn mode_meaning(mode: RateMode) -> &'static str {
    match mode {
        RateMode::Absolute => "each rate is the fault model's nominal rate",
        RateMode::Relative => "each rate multiplies the fault model's probabilities",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn test_labelsare_stems_unless_they_clash() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            legend_labels(&[p("a/r20.safetensors"), p("b/ftt.safetensors")]),
            ["r20", "ftt"]
        );
        assert_eq!(
            legend_labels(&[p("a/w.safetensors"), p("b/w.safetensors")]),
            ["a/w.safetensors", "b/w.safetensors"]
        );
    }

    #[test]
    fn repeated_models_and_comma_rates_parse() {
        let line = "ftnas eval --model a.toml --weights a.st --model b.toml --weights b.st \
                    --weight-fault sa:1e-3 --rates 1e-4,1e-3";
        let cli = crate::cli::Cli::try_parse_from(line.split_whitespace()).unwrap();
        let crate::cli::Command::Eval(a) = cli.command else {
            panic!("eval expected")
        };
        assert_eq!(a.models.len(), 2);
        assert_eq!(a.weights, [PathBuf::from("a.st"), PathBuf::from("b.st")]);
        assert_eq!(a.rates, [1e-4, 1e-3]);
    }
}
