//! `ftnas inject`: a fault-injection campaign. Many simulated faulty chips
//! classify the first `--images` test images; the results (accuracy under
//! faults over chips, SDC rate, vulnerability per fault site class and
//! layer) go to stdout and to `--out` (summary.json, chips.csv,
//! vulnerability.csv), see [`crate::campaign`].
//!
//! Simulator: the fast fixed-point engine under an algorithmic fault model
//! (`--fault-model FM.toml` and/or `--feature-fault` / `--weight-fault`
//! shorthands, merged); the datapath comes from `--accel` when given, else from the
//! datapath flags. With `--faults F.toml` (a hardware fault specification)
//! each chip instead runs on `--accel`'s systolic array or bit-serial
//! design through the hardware model ([`crate::campaign::HwChip`]). `--shard i/n` runs chips `c % n == i`; `ftnas merge`
//! combines shard directories. Running again with the same `--out` resumes.

use super::hwrun::ExecutorChoice;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::accel::Accelerator;
use crate::campaign::{
    run_campaign, Campaign, ChipSimulator, EngineChip, HwChip, InputFile, RunOptions, Shard,
};
use crate::cli::infer::OverflowChoice;
use crate::data::{self, Split};
use crate::fault::FaultModel;
use crate::fixed::{Datapath, Overflow};
use crate::hwsim::{AnyHwNetwork, HwFaultSpec};
use crate::model;
use crate::quant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model description (TOML), e.g. models/resnet20.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Trained f32 weights (safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Accelerator description: its datapath (bits, overflow) is used.
    #[arg(long, conflicts_with_all = ["act_bits", "weight_bits", "psum_bits", "overflow"])]
    pub accel: Option<PathBuf>,
    /// Hardware fault specification (accelerators/faults/*.toml): run every
    /// chip on --accel's systolic array through the cycle-level model.
    #[arg(long, requires = "accel", conflicts_with_all = ["fault_model", "feature_fault", "weight_fault"])]
    pub faults: Option<PathBuf>,
    /// GEMM executor of the hardware model (with --faults): every cycle
    /// stepped, or the fast exact path (same results, tested).
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Exact, requires = "faults")]
    pub executor: ExecutorChoice,
    /// Algorithmic fault model file (TOML); may be combined with the
    /// shorthands when they define different parts.
    #[arg(long)]
    pub fault_model: Option<PathBuf>,
    /// Feature fault shorthand, e.g. `mibb:1e-4`.
    #[arg(long)]
    pub feature_fault: Option<String>,
    /// Weight fault shorthand, e.g. `sa:1e-3`.
    #[arg(long)]
    pub weight_fault: Option<String>,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Classify the first N test images on every chip.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    /// Number of simulated chips (chip ids 0..C).
    #[arg(long, default_value_t = 100)]
    pub chips: u64,
    /// Seed of every fault stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run only shard i of n (chips c with c % n == i), e.g. 0/4.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Output directory (journal + results); rerun with it to resume.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of training images used to calibrate activation formats.
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
    /// Activation code bits (without --accel).
    #[arg(long)]
    pub act_bits: Option<u8>,
    /// Weight code bits (without --accel).
    #[arg(long)]
    pub weight_bits: Option<u8>,
    /// Accumulator bits (without --accel).
    #[arg(long)]
    pub psum_bits: Option<u8>,
    /// Accumulator overflow (without --accel).
    #[arg(long, value_enum)]
    pub overflow: Option<OverflowChoice>,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The datapath: from `--accel`, else from the flags (defaults a8 w8 p32
/// wrap, as `ftnas infer`).
fn datapath(args: &Args) -> anyhow::Result<(Datapath, Option<InputFile>)> {
    if let Some(path) = &args.accel {
        let accel = Accelerator::load(path)?;
        return Ok((accel.datapath, Some(InputFile::read("accel", path)?)));
    }
    let dp = Datapath {
        act_bits: args.act_bits.unwrap_or(8),
        weight_bits: args.weight_bits.unwrap_or(8),
        psum_bits: args.psum_bits.unwrap_or(32),
        overflow: match args.overflow.unwrap_or(OverflowChoice::Wrap) {
            OverflowChoice::Wrap => Overflow::Wrap,
            OverflowChoice::Saturate => Overflow::Saturate,
        },
    };
    dp.validate()
        .map_err(|e| anyhow::anyhow!("datapath flags: {e}"))?;
    Ok((dp, None))
}

/// The fault model (file and shorthands merged) and how it was given
/// (file name and flag texts, joined by ` + `).
fn fault_model(args: &Args) -> anyhow::Result<(String, FaultModel)> {
    let mut parts: Vec<(String, FaultModel)> = Vec::new();
    if let Some(p) = &args.fault_model {
        let name = p
            .file_name()
            .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into());
        parts.push((name, FaultModel::load(p)?));
    }
    if let Some(s) = &args.feature_fault {
        parts.push((s.clone(), FaultModel::parse_feature_flag(s)?));
    }
    if let Some(s) = &args.weight_fault {
        parts.push((s.clone(), FaultModel::parse_weight_flag(s)?));
    }
    let mut parts = parts.into_iter();
    let Some((mut name, mut model)) = parts.next() else {
        bail!(
            "inject needs a fault model: --fault-model FM.toml and/or --feature-fault SPEC / \
             --weight-fault SPEC"
        );
    };
    for (n, m) in parts {
        model = model
            .merge(m)
            .with_context(|| format!("combining {name} with {n}"))?;
        name = format!("{name} + {n}");
    }
    Ok((name, model))
}

/// f32 pixels and labels as bytes, to fingerprint the images a campaign uses.
fn image_bytes(pixels: &[f32], labels: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
    b.extend_from_slice(labels);
    b
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (datapath, accel_file) = datapath(&args)?;
    let algorithmic = match &args.faults {
        Some(_) => None,
        None => Some(fault_model(&args)?),
    };
    if let Some((fault_name, faults)) = &algorithmic {
        if faults.weight().is_some() && !faults.weight_persistent() {
            eprintln!(
                "note: {fault_name} resamples weight faults every forward (training form); \
             a campaign samples them once per chip"
            );
        }
    }

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
    let weights = model::load_weights(&args.weights, &graph)?;
    let numel = test.shape.numel();
    let n_calib = args.calib.clamp(1, train.len().max(1));
    let calib_images = &train.images[..(n_calib * numel).min(train.images.len())];
    let qmodel = quant::quantize(&graph, &weights, datapath, calib_images)
        .with_context(|| format!("quantizing {}", args.model.display()))?;
    if let Some((fault_name, faults)) = &algorithmic {
        let mac_names: Vec<&str> = qmodel.mac_layers().map(|l| l.name.as_str()).collect();
        faults
            .check_layer_names(&mac_names)
            .and_then(|()| faults.check_bits(datapath.act_bits, datapath.weight_bits))
            .with_context(|| format!("fault model {fault_name}"))?;
    }

    if args.images == 0 || args.images > test.len() {
        bail!(
            "--images {}: expected 1..={} (the test split of {})",
            args.images,
            test.len(),
            test.name
        );
    }
    let images = &test.images[..args.images * numel];
    let labels = &test.labels[..args.images];

    let mut inputs = vec![
        InputFile::read("model", &args.model)?,
        InputFile::read("weights", &args.weights)?,
    ];
    inputs.extend(accel_file);
    let simulator: Box<dyn ChipSimulator> = match (&algorithmic, &args.faults) {
        (Some((fault_name, faults)), _) => {
            inputs.push(InputFile::from_bytes(
                "fault_model",
                fault_name,
                faults.to_toml_string().as_bytes(),
            ));
            Box::new(EngineChip::new(qmodel, faults.clone()))
        }
        (None, Some(spec_path)) => {
            let accel_path = args.accel.as_ref().context("--faults needs --accel")?;
            let accel = Accelerator::load(accel_path)?;
            let exact = args.executor == ExecutorChoice::Exact;
            let net = AnyHwNetwork::new(&accel, &qmodel, exact).with_context(|| {
                format!(
                    "mapping {} onto {}",
                    args.model.display(),
                    accel_path.display()
                )
            })?;
            let spec = HwFaultSpec::load(spec_path)?;
            inputs.push(InputFile::read("faults", spec_path)?);
            Box::new(HwChip::new(net, spec).with_context(|| format!("{}", spec_path.display()))?)
        }
        (None, None) => unreachable!("a fault source is always given"),
    };
    let mut campaign = Campaign::new(
        simulator.as_ref(),
        images,
        labels,
        &test.name,
        args.chips,
        args.seed,
    );
    let cfg = &mut campaign.config;
    cfg.inputs = inputs;
    cfg.inputs.push(InputFile::from_bytes(
        "test_images",
        &test.name,
        &image_bytes(images, labels),
    ));
    cfg.inputs.push(InputFile::from_bytes(
        "calib_images",
        &train.name,
        &image_bytes(calib_images, &[]),
    ));
    cfg.params
        .insert("datapath".into(), serde_json::to_string(&datapath)?);
    cfg.params.insert("calib".into(), n_calib.to_string());

    let opts = RunOptions {
        shard: args.shard,
        progress: !args.quiet,
    };
    let result = run_campaign(&campaign, &opts, &args.out)?;
    print!("{}", result.render());
    println!(
        "wrote {}",
        ["summary.json", "chips.csv", "vulnerability.csv"]
            .iter()
            .map(|f| args.out.join(f).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
