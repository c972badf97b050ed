//! `ftnas infer`: fixed-point inference of a model on a dataset's test split,
//! clean and under algorithmic fault models (one trial = one simulated chip
//! for weight faults, one independent draw of feature faults).
//!
//! Pipeline: model file + dataset shape -> graph; safetensors -> f32 weights;
//! calibration on the first `--calib` training images -> `QModel`; engine
//! runs -> accuracy; `--json` writes the numbers atomically.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{self, Split};
use crate::engine::{self, Engine, FeatureFaults};
use crate::fault::FaultModel;
use crate::fixed::{Datapath, Overflow};
use crate::model::{self, Graph, ModelError, Weights};
use crate::quant::{self, QModel};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model description (TOML), e.g. models/resnet20.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Trained f32 weights (safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate on the first N test images (default: all).
    #[arg(long)]
    pub images: Option<usize>,
    /// The fault model (at most one of the three ways to give it).
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
    /// Number of fault trials.
    #[arg(long, default_value_t = 10)]
    pub trials: u64,
    /// Seed of the fault streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of training images used to calibrate activation formats.
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
    /// Write the results as JSON to this file (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineChoice::Fast)]
    pub engine: EngineChoice,
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

/// Engine choice.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EngineChoice {
    Fast,
    Reference,
}

/// Accumulator overflow choice.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OverflowChoice {
    Wrap,
    Saturate,
}

/// Read the trained weights of `graph`.
///
/// MERGE NOTE: this reads safetensors itself so the branch works on its own;
/// at merge replace the body with
/// `crate::model::safetensors_io::load_weights(path, graph)`.
fn read_weights(path: &Path, graph: &Graph) -> Result<Weights, ModelError> {
    model::load_weights(path, graph)
}

/// Fraction of images whose argmax logit is the label.
fn accuracy(logits: &[Vec<i32>], labels: &[u8]) -> f64 {
    let hits = logits
        .iter()
        .zip(labels)
        .filter(|(l, &y)| quant::argmax(l) == y as usize)
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// Run `engine` over `images` in chunks, advancing the progress bar.
fn run_all(
    engine: &dyn Engine,
    model: &QModel,
    images: &[f32],
    faults: Option<FeatureFaults<'_>>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Vec<i32>>> {
    const CHUNK: usize = 512;
    let n = model.input_shape().numel();
    let mut out = Vec::with_capacity(images.len() / n);
    for (k, chunk) in images.chunks(CHUNK * n).enumerate() {
        out.extend(engine.run(model, chunk, (k * CHUNK) as u64, faults)?);
        bar.inc((chunk.len() / n) as u64);
    }
    Ok(out)
}

/// Mean, population standard deviation and minimum.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    (mean, var.sqrt(), min)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let datapath = Datapath {
        act_bits: args.act_bits,
        weight_bits: args.weight_bits,
        psum_bits: args.psum_bits,
        overflow: match args.overflow {
            OverflowChoice::Wrap => Overflow::Wrap,
            OverflowChoice::Saturate => Overflow::Saturate,
        },
    };
    datapath
        .validate()
        .map_err(|e| anyhow::anyhow!("datapath flags: {e}"))?;
    let engine: Box<dyn Engine> = match args.engine {
        EngineChoice::Fast => Box::new(engine::FastEngine),
        EngineChoice::Reference => Box::new(engine::ReferenceEngine),
    };
    let f = &args.faults;
    let faults = match (&f.feature_fault, &f.weight_fault, &f.fault_model) {
        (Some(s), _, _) => Some((s.clone(), FaultModel::parse_feature_flag(s)?)),
        (_, Some(s), _) => Some((s.clone(), FaultModel::parse_weight_flag(s)?)),
        (_, _, Some(p)) => Some((p.display().to_string(), FaultModel::load(p)?)),
        _ => None,
    };

    let test = data::load(args.data.as_deref(), Split::Test)?;
    let train = data::load(args.data.as_deref(), Split::Train)?;
    let graph = model::load_model(&args.model, test.shape)?;
    let classes = graph.output_shape().numel();
    if classes < test.num_classes {
        bail!(
            "{}: the model has {classes} outputs but the dataset has {} classes",
            args.model.display(),
            test.num_classes
        );
    }
    let weights = read_weights(&args.weights, &graph)?;
    let n_calib = args.calib.clamp(1, train.len().max(1));
    let numel = test.shape.numel();
    let calib_images = &train.images[..(n_calib * numel).min(train.images.len())];
    let qmodel = quant::quantize(&graph, &weights, datapath, calib_images)
        .with_context(|| format!("quantizing {}", args.model.display()))?;

    let n_test = args.images.unwrap_or(test.len()).min(test.len());
    if n_test == 0 {
        bail!("the test split is empty");
    }
    let images = &test.images[..n_test * numel];
    let labels = &test.labels[..n_test];
    let trials = if faults.is_some() { args.trials } else { 0 };
    let bar = ProgressBar::new(n_test as u64 * (1 + trials));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let clean = accuracy(
        &run_all(engine.as_ref(), &qmodel, images, None, &bar)?,
        labels,
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
            // One trial = one chip: weight faults sampled once per trial.
            let chip = match fm.weight() {
                Some(w) => qmodel.with_weight_faults(w, args.seed, trial),
                None => qmodel.clone(),
            };
            let feature = fm.feature().map(|injector| FeatureFaults {
                injector,
                seed: args.seed,
                trial,
            });
            let logits = run_all(engine.as_ref(), &chip, images, feature, &bar)?;
            fault_acc.push(accuracy(&logits, labels));
        }
    }
    bar.finish_and_clear();

    println!(
        "{} on {} ({} test images, {} engine, a{}w{}p{} {:?}): clean accuracy {:.2}%",
        graph.name,
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
        "calib_images": n_calib,
        "engine": engine.name(),
        "datapath": datapath,
        "clean_accuracy": clean,
    });
    if let Some((spec, _)) = &faults {
        let (mean, std, min) = stats(&fault_acc);
        println!(
            "under {spec}: {} trials (seed {}): mean {:.2}%, std {:.2}%, min {:.2}%",
            trials,
            args.seed,
            100.0 * mean,
            100.0 * std,
            100.0 * min
        );
        json["fault"] = serde_json::json!({
            "spec": spec,
            "trials": trials,
            "seed": args.seed,
            "accuracies": fault_acc,
            "mean": mean,
            "std": std,
            "min": min,
        });
    }
    if let Some(out) = &args.json {
        crate::report::write_atomic(out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GraphBuilder, Op, Shape};

    fn tiny_graph() -> Graph {
        let mut b = GraphBuilder::new("t", Shape::new(1, 2, 2));
        let f = b.add("f", Op::Flatten, &[0]).unwrap();
        b.add(
            "fc",
            Op::Linear {
                out_features: 3,
                bias: true,
            },
            &[f],
        )
        .unwrap();
        b.finish()
    }

    #[test]
    fn reads_safetensors_and_names_bad_tensors() {
        let g = tiny_graph();
        let w = Weights::random(&g, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = w
            .tensors
            .iter()
            .map(|(n, t)| {
                let b = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
                (n.clone(), b, t.shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, b, s)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &path).unwrap();
        assert_eq!(read_weights(&path, &g).unwrap(), w);

        let mut b = GraphBuilder::new("t", Shape::new(1, 2, 2));
        let f = b.add("f", Op::Flatten, &[0]).unwrap();
        b.add(
            "fc",
            Op::Linear {
                out_features: 4,
                bias: true,
            },
            &[f],
        )
        .unwrap();
        let e = read_weights(&path, &b.finish()).unwrap_err().to_string();
        assert!(e.contains("fc.") && e.contains("expected"), "{e}");
        std::fs::write(&path, b"junk").unwrap();
        let e = read_weights(&path, &g).unwrap_err().to_string();
        assert!(e.contains("w.safetensors"), "{e}");
    }

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

    #[test]
    fn stats_of_trials() {
        let (m, s, min) = stats(&[0.5, 0.7]);
        assert!((m - 0.6).abs() < 1e-12 && (s - 0.1).abs() < 1e-12 && min == 0.5);
    }
}
