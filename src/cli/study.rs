//! `ftnas study`: the main job — timing, derived fault model and accuracy
//! under faults (with a hardware-level cross-check and a rate sweep) of the
//! trained models on one accelerator, as one report. See [`crate::study`].
//!
//! Defaults are the shipped files, so `ftnas study` alone runs: the edge
//! 16x16 output-stationary array, PE-register upsets
//! (`accelerators/faults/pe_registers.toml`; SIP-register upsets,
//! `sip_registers.toml`, on a bit-serial design), and every `models/*.toml`
//! that has trained weights (`.safetensors`) beside it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::derive::derivation_table;
use super::hwrun::ExecutorChoice;
use super::infer::image_progress;
use crate::accel::Accelerator;
use crate::data::{self, Split};
use crate::derive::hardware::Hardware;
use crate::derive::network::{bitserial_layers, gemm_layers, with_psum_signs};
use crate::eval;
use crate::fault::FaultModel;
use crate::hwsim::bsnet::BitSerialNetwork;
use crate::hwsim::{HwFaultSpec, HwNetwork};
use crate::report::write_atomic;
use crate::study::{self, ModelInputs, ReportContext, StudyConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Accelerator description.
    #[arg(long, default_value = "accelerators/edge_16x16_os.toml")]
    pub accel: PathBuf,
    /// Hardware fault specification [default: accelerators/faults/pe_registers.toml
    /// on a systolic array, accelerators/faults/sip_registers.toml on a
    /// bit-serial design].
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// Model files, comma separated; each needs its weights beside it
    /// (same name, `.safetensors`). Default: every models/*.toml that has.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<PathBuf>,
    /// Folder searched for trained models when --models is not given.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test images for the clean and derived-model accuracy.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// Test images for the hardware-level cross-check and the sweep.
    #[arg(long, default_value_t = 200)]
    pub hw_images: usize,
    /// Simulated chips per accuracy figure.
    #[arg(long, default_value_t = 8)]
    pub chips: u64,
    /// Raw rates of the sweep (flip probability per bit per cycle of the
    /// spec's most upset-prone register site (PE or SIP)), comma separated; `--rates ''` for none.
    #[arg(long, default_value = "1e-9,1e-8,1e-7,1e-6,1e-5")]
    pub rates: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training images used to calibrate activation formats.
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
    /// Training images whose layer inputs give the operand statistics.
    #[arg(long, default_value_t = 16)]
    pub stats_images: usize,
    /// GEMM executor of the hardware model (same results either way).
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Exact)]
    pub executor: ExecutorChoice,
    /// Output directory (created if missing).
    #[arg(long, default_value = "study")]
    pub out: PathBuf,
}

/// The trained models in `dir`: every `*.toml` with a `.safetensors`
/// beside it, sorted by name.
pub fn trained_models(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    let mut found = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .path();
        if path.extension().is_some_and(|x| x == "toml")
            && path.with_extension("safetensors").is_file()
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.images == 0 || args.hw_images == 0 || args.chips == 0 || args.stats_images == 0 {
        bail!("--images, --hw-images, --chips and --stats-images must be at least 1");
    }
    let rates = rate_list(&args.rates)?;
    if let Some(r) = rates.iter().find(|r| !(0.0..=0.5).contains(*r)) {
        bail!("--rates: {r} is not a probability per bit per cycle in [0, 0.5]");
    }
    let acc = Accelerator::load(&args.accel)?;
    let faults = args.faults.clone().unwrap_or_else(|| {
        PathBuf::from(if acc.bitserial.is_some() {
            "accelerators/faults/sip_registers.toml"
        } else {
            "accelerators/faults/pe_registers.toml"
        })
    });
    let spec = HwFaultSpec::load(&faults)?;
    let models = if args.models.is_empty() {
        let found = trained_models(&args.models_dir)?;
        if found.is_empty() {
            bail!(
                "{}: no trained model (a .toml with a .safetensors beside it); give --models M.toml",
                args.models_dir.display()
            );
        }
        found
    } else {
        args.models.clone()
    };
    let mut files = Vec::new();
    for m in &models {
        let w = m.with_extension("safetensors");
        if !w.is_file() {
            bail!(
                "{}: no trained weights at {} (train them with `ftnas train --model {} --out {}`)",
                m.display(),
                w.display(),
                m.display(),
                w.display()
            );
        }
        files.push((m.clone(), w));
    }
    let mut names: Vec<String> = files.iter().map(|(m, _)| stem(m)).collect();
    names.dedup();
    if names.len() != files.len() {
        bail!("--models: two models have the same file name; the report names them by it");
    }

    let train = data::load(args.data.as_deref(), Split::Train)?;
    let test_data = data::load(args.data.as_deref(), Split::Test)?;
    let test = eval::first_images(&test_data, Some(args.images))?;
    let cross = eval::first_images(&test_data, Some(args.hw_images))?;
    let cfg = StudyConfig {
        rates,
        chips: args.chips,
        seed: args.seed,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // The fault part needs a functional model the derivation covers.
    let derived = acc.systolic.is_some() || acc.bitserial.is_some();
    let total: u64 = files
        .iter()
        .map(|_| study::work(&cfg, test.len(), cross.len(), derived))
        .sum();
    let bar = image_progress(total);
    let mut studies = Vec::new();
    let per = train.shape.numel();
    for ((model, weights), name) in files.iter().zip(&names) {
        bar.set_message(name.clone());
        let q = eval::load_quantized(model, weights, &train, args.calib, acc.datapath)?;
        let n_stats = args.stats_images.min(train.len());
        let mut layers = gemm_layers(&q.qmodel, &train.images[..n_stats * per]);
        let stats_images = &train.images[..n_stats * per];
        let on = || format!("{} on {}", model.display(), args.accel.display());
        let (mut sys_net, mut bs_net) = (None, None);
        match &acc.bitserial {
            None => {
                let net = HwNetwork::new(&acc, &q.qmodel).with_context(on)?;
                spec.check(&net).with_context(on)?;
                layers = with_psum_signs(layers, net.array(), &q.qmodel, stats_images);
                sys_net = Some(args.executor.apply(net));
            }
            Some(bs) => {
                let net = BitSerialNetwork::new(&acc, &q.qmodel)
                    .with_context(on)?
                    .with_executor(args.executor.bitserial());
                spec.check(&net).with_context(on)?;
                layers = bitserial_layers(layers, bs, &q.qmodel, stats_images, true);
                bs_net = Some(net);
            }
        }
        let net = match (&sys_net, &bs_net) {
            (Some(n), _) => Some(Hardware::Systolic(n)),
            (None, Some(n)) => Some(Hardware::BitSerial(n)),
            (None, None) => None,
        };
        let inputs = ModelInputs {
            name,
            graph: &q.graph,
            qmodel: &q.qmodel,
            layers: &layers,
            net,
        };
        let s = study::study_model(&inputs, &acc, &spec, test, cross, &cfg, &|k| bar.inc(k))?;
        // Per-model files.
        let tpath = args.out.join(format!("timing-{name}.csv"));
        write_atomic(&tpath, crate::accel::output::csv(&s.timing).as_bytes())?;
        if let Some(f) = &s.faults {
            let desc = format!(
                "derived by ftnas study: accel {}, model {}, weights {}, faults {}",
                args.accel.display(),
                model.display(),
                weights.display(),
                faults.display()
            );
            FaultModel::from_spec(f.derivation.fault_spec(desc))?
                .save(&args.out.join(format!("{name}.fault-model.toml")))?;
            let (_, csv) = derivation_table(&f.derivation)?;
            csv.write(&args.out.join(format!("{name}.derived.csv")))?;
        }
        studies.push(s);
    }
    bar.finish_and_clear();

    let shown: Vec<(String, String)> = files
        .iter()
        .map(|(m, w)| (m.display().to_string(), w.display().to_string()))
        .collect();
    let accel_path = args.accel.display().to_string();
    let faults_path = faults.display().to_string();
    let ctx = ReportContext {
        accel_path: &accel_path,
        faults_path: &faults_path,
        acc: &acc,
        cfg: &cfg,
        files: &shown,
    };
    let report = study::render(&studies, &ctx)?;
    report.summary_csv.write(&args.out.join("summary.csv"))?;
    report.sweep_csv.write(&args.out.join("sweep.csv"))?;
    report.plot.write(&args.out.join("accuracy.svg"))?;
    write_atomic(&args.out.join("study.md"), report.markdown.as_bytes())?;

    println!(
        "{} on {} under {} ({} chips; clean/derived on {} images, hardware-level on {})",
        names.join(", "),
        acc.name,
        faults.display(),
        args.chips,
        test.len(),
        cross.len()
    );
    print!("{}", report.summary);
    if !report.sweep_csv.is_empty() {
        println!("\nsweep of the raw register flip rate:");
        print!("{}", report.sweep);
    }
    for s in &studies {
        for n in &s.notes {
            println!("note ({}): {n}", s.name);
        }
    }
    println!("wrote {}/study.md (+ summary.csv, sweep.csv, accuracy.svg, per-model timing, derived fault models)", args.out.display());
    Ok(())
}

/// The `--rates` list: comma-separated numbers, or nothing (`''`) for no
/// sweep.
fn rate_list(text: &str) -> anyhow::Result<Vec<f64>> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>().map_err(|_| {
                anyhow::anyhow!("--rates: `{t}` is not a number (expected e.g. 1e-9,1e-8)")
            })
        })
        .collect()
}
