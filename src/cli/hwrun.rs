//! `ftnas hwrun`: a quantized model on a systolic or bit-serial accelerator
//! through the functional model ([`crate::hwsim::network`],
//! [`crate::hwsim::bsnet`]), fault-free and
//! under a hardware fault specification ([`crate::hwsim::spec`]): top-1
//! accuracy per simulated chip and the silent-data-corruption rate (top-1
//! changed against the fault-free run of the same image).
//!
//! Pipeline: accelerator + model file + dataset shape -> graph; weights
//! (safetensors, or random with `--random-weights`) -> calibration on the
//! first `--calib` training images with the accelerator's datapath ->
//! `QModel` -> `HwNetwork`; each chip's faults from `--seed` and the chip
//! index; images in parallel (results do not depend on the thread count).

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::accel::Accelerator;
use crate::data::{self, Split};
use crate::hwsim::layer::{CycleLevel, Exact};
use crate::hwsim::{AnyHwNetwork, ChipFaults, HwFaultSpec, HwNetwork};
use crate::model::{self, Weights};
use crate::quant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Accelerator description (a systolic array or a bit-serial design), e.g.
    /// accelerators/edge_16x16_os.toml, accelerators/stripes.toml.
    #[arg(long)]
    pub accel: PathBuf,
    /// Model description (TOML), e.g. models/vgg-small.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Trained f32 weights (safetensors).
    #[arg(long, required_unless_present = "random_weights")]
    pub weights: Option<PathBuf>,
    /// Use random weights drawn from this seed instead of --weights.
    #[arg(long, conflicts_with = "weights")]
    pub random_weights: Option<u64>,
    /// Hardware fault specification (accelerators/faults/*.toml).
    #[arg(long)]
    pub faults: PathBuf,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run the first N test images.
    #[arg(long, default_value_t = 10)]
    pub images: usize,
    /// Simulated chips (independent fault samples).
    #[arg(long, default_value_t = 1)]
    pub chips: u64,
    /// Seed of the fault sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of training images used to calibrate activation formats.
    #[arg(long, default_value_t = 64)]
    pub calib: usize,
    /// Write the results as JSON to this file (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// GEMM executor: every cycle stepped, or the fast exact path (same results).
    #[arg(long, value_enum, default_value_t = ExecutorChoice::CycleLevel)]
    pub executor: ExecutorChoice,
}

/// GEMM executor of the hardware model (`--executor`), shared by `hwrun`,
/// `inject` and `calibrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorChoice {
    /// Step every cycle of every layer.
    CycleLevel,
    /// Fault-free result fast, the faults' effects replayed exactly (same results).
    Exact,
}

impl ExecutorChoice {
    /// The same choice for a bit-serial network.
    pub fn bitserial(self) -> crate::hwsim::bsnet::BsExecutor {
        match self {
            ExecutorChoice::CycleLevel => crate::hwsim::bsnet::BsExecutor::CycleLevel,
            ExecutorChoice::Exact => crate::hwsim::bsnet::BsExecutor::Exact,
        }
    }

    /// Put this executor into `net`.
    pub fn apply(self, net: HwNetwork) -> HwNetwork {
        match self {
            ExecutorChoice::CycleLevel => net.with_executor(std::sync::Arc::new(CycleLevel)),
            ExecutorChoice::Exact => net.with_executor(std::sync::Arc::new(Exact)),
        }
    }
}

fn top1(logits: &[Vec<i32>]) -> Vec<usize> {
    logits.iter().map(|l| quant::argmax(l)).collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let accel = Accelerator::load(&args.accel)?;
    let spec = HwFaultSpec::load(&args.faults)?;
    let test = data::load(args.data.as_deref(), Split::Test)?;
    let train = data::load(args.data.as_deref(), Split::Train)?;
    let graph = model::load_model(&args.model, test.shape)?;
    let weights = match (&args.weights, args.random_weights) {
        (Some(p), _) => model::load_weights(p, &graph)?,
        (None, Some(seed)) => Weights::random(&graph, seed),
        (None, None) => bail!("give --weights FILE or --random-weights SEED"),
    };
    let numel = test.shape.numel();
    let n_calib = args.calib.clamp(1, train.len().max(1));
    let calib = &train.images[..(n_calib * numel).min(train.images.len())];
    let qmodel = quant::quantize(&graph, &weights, accel.datapath, calib)
        .with_context(|| format!("quantizing {}", args.model.display()))?;
    let exact = args.executor == ExecutorChoice::Exact;
    let net = AnyHwNetwork::new(&accel, &qmodel, exact)
        .with_context(|| format!("mapping {} onto {}", graph.name, args.accel.display()))?;
    spec.check(&net)?;

    let n = args.images.min(test.len());
    if n == 0 {
        bail!("no test images to run (--images 0 or an empty test split)");
    }
    let labels = &test.labels[..n];
    let bar = ProgressBar::new(n as u64 * (1 + args.chips));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} inferences {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Images in chunks (the progress bar moves per chunk); within a chunk
    // the network runs images in parallel (and, on the exact path, batches
    // the fault-free ones through the fast engine).
    let chunk = (4 * rayon::current_num_threads()).max(8);
    let run_chip = |chip: &ChipFaults| -> anyhow::Result<Vec<Vec<i32>>> {
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let imgs = &test.images[start * numel..end * numel];
            let logits = net
                .run_images(imgs, start as u64, chip)
                .with_context(|| format!("images {start}..{end}"))?;
            bar.inc((end - start) as u64);
            out.extend(logits);
        }
        Ok(out)
    };
    let accuracy = |pred: &[usize]| {
        pred.iter()
            .zip(labels)
            .filter(|(p, &y)| **p == y as usize)
            .count() as f64
            / n as f64
    };
    let started = std::time::Instant::now();
    let clean = top1(&run_chip(&ChipFaults::none())?);
    let clean_secs = started.elapsed().as_secs_f64();
    let clean_acc = accuracy(&clean);
    let mut per_chip = Vec::new();
    for c in 0..args.chips {
        let chip = spec.sample_chip(args.seed, c, &net)?;
        let pred = top1(&run_chip(&chip)?);
        let sdc = pred.iter().zip(&clean).filter(|(a, b)| a != b).count() as f64 / n as f64;
        per_chip.push(serde_json::json!({
            "chip": c,
            "permanent_faults": chip.permanent.len(),
            "accuracy": accuracy(&pred),
            "sdc_rate": sdc,
        }));
    }
    bar.finish_and_clear();

    let cycles = net.cycles();
    let pe_updates = cycles * net.units();
    let unit = match net {
        AnyHwNetwork::Systolic(_) => "PE",
        AnyHwNetwork::BitSerial(_) => "lane",
    };
    println!(
        "{} on {} ({}, {} conv/linear layers, {} cycles per inference, {} executor)",
        graph.name,
        accel.name,
        net.describe_fabric(),
        net.layer_names().len(),
        cycles,
        net.executor_name()
    );
    println!(
        "fault-free: accuracy {:.2}% on {n} {} test images ({:.2} s, {:.2e} {unit}-cycle updates/s)",
        100.0 * clean_acc,
        test.name,
        clean_secs,
        pe_updates as f64 * n as f64 / clean_secs.max(1e-9)
    );
    println!(
        "faults {}: {:.3e} expected transient flips per inference",
        args.faults.display(),
        spec.expected_transients_per_image(&net)
    );
    for c in &per_chip {
        println!(
            "  chip {}: {} permanent faults, accuracy {:.2}%, SDC {:.2}%",
            c["chip"],
            c["permanent_faults"],
            100.0 * c["accuracy"].as_f64().unwrap_or(0.0),
            100.0 * c["sdc_rate"].as_f64().unwrap_or(0.0)
        );
    }
    let mean = |k: &str| {
        per_chip
            .iter()
            .map(|c| c[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / per_chip.len().max(1) as f64
    };
    if !per_chip.is_empty() {
        println!(
            "mean over {} chips: accuracy {:.2}%, SDC {:.2}%",
            per_chip.len(),
            100.0 * mean("accuracy"),
            100.0 * mean("sdc_rate")
        );
    }
    if let Some(out) = &args.json {
        let json = serde_json::json!({
            "accelerator": accel.name,
            "model": args.model.display().to_string(),
            "faults": args.faults.display().to_string(),
            "dataset": test.name,
            "images": n,
            "seed": args.seed,
            "cycles_per_inference": cycles,
            "executor": net.executor_name(),
            "clean_accuracy": clean_acc,
            "chips": per_chip,
            "mean_accuracy": mean("accuracy"),
            "mean_sdc_rate": mean("sdc_rate"),
        });
        crate::report::write_atomic(out, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn flags_parse_and_weights_are_required() {
        let base = [
            "ftnas", "hwrun", "--accel", "a.toml", "--model", "m.toml", "--faults", "f.toml",
        ];
        assert!(crate::cli::Cli::try_parse_from(base).is_err());
        let ok =
            crate::cli::Cli::try_parse_from(base.iter().chain(&["--random-weights", "3"])).unwrap();
        let crate::cli::Command::Hwrun(a) = ok.command else {
            panic!("hwrun expected")
        };
        assert_eq!((a.random_weights, a.images, a.chips), (Some(3), 10, 1));
        let both = base
            .iter()
            .chain(&["--random-weights", "3", "--weights", "w.st"]);
        assert!(crate::cli::Cli::try_parse_from(both).is_err());
    }
}
