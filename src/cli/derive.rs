//! `ftnas derive`: the algorithmic fault model a systolic accelerator's raw
//! hardware fault rates imply for a quantized network — per layer, the
//! probability that an output element is hit and the distribution of the
//! hit bit (`output_hit`), written as a fault-model file that `infer`,
//! `eval`, `train` and `search` read. See [`crate::derive`] for the
//! formulas.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::accel::description::Accelerator;
use crate::data::{self, Split};
use crate::derive::network::{derive_network, gemm_layers, NetworkDerivation};
use crate::eval;
use crate::fault::FaultModel;
use crate::hwsim::spec::HwFaultSpec;
use crate::hwsim::{FaultSite, SystolicArray};
use crate::report::{Csv, Table};

/// The inputs every derivation-style command takes: a systolic
/// accelerator, a trained model and a hardware fault specification.
#[derive(Debug, clap::Args)]
pub struct HwModelArgs {
    /// Accelerator description (systolic).
    #[arg(long)]
    pub accel: PathBuf,
    /// Model description (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// f32 weights (safetensors): the requantization shifts and the operand
    /// magnitudes the derivation needs come from the quantized model.
    #[arg(long)]
    pub weights: PathBuf,
    /// Hardware fault specification (TOML, see accelerators/faults/).
    #[arg(long)]
    pub faults: PathBuf,
    /// Dataset directory (IDX or CIFAR-10 binary); default: Fashion-MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training images used to calibrate activation formats.
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub inputs: HwModelArgs,
    /// Training images whose layer inputs give the operand statistics.
    #[arg(long, default_value_t = 16)]
    pub images: usize,
    /// Output fault-model file (TOML); a per-layer CSV is written beside it
    /// with the extension `.csv`.
    #[arg(long)]
    pub out: PathBuf,
}

pub use crate::derive::network::pe_transient_rates;

pub fn run(args: Args) -> anyhow::Result<()> {
    let inp = &args.inputs;
    let acc = Accelerator::load(&inp.accel)?;
    let Some(sys) = acc.systolic.as_ref() else {
        bail!(
            "{}: derivation needs a systolic accelerator (kind = \"systolic\"); bit-serial designs are simulated by `ftnas inject` but not derived yet",
            inp.accel.display()
        );
    };
    let array = SystolicArray::new(sys.rows, sys.cols, sys.dataflow)?;
    let spec = HwFaultSpec::load(&inp.faults)?;
    let (rates, skipped) = pe_transient_rates(&spec, acc.clock_mhz);
    if !skipped.is_empty() {
        eprintln!(
            "note: {}: not part of the derived feature model (use `ftnas inject` for them): {}",
            inp.faults.display(),
            skipped.join(", ")
        );
    }
    if args.images == 0 {
        bail!("--images must be at least 1 (operand statistics need real layer inputs)");
    }
    let train = data::load(inp.data.as_deref(), Split::Train)?;
    let q = eval::load_quantized(&inp.model, &inp.weights, &train, inp.calib, acc.datapath)?;
    let n = args.images.min(train.len());
    let per = train.shape.numel();
    let layers = gemm_layers(&q.qmodel, &train.images[..n * per]);
    let d = derive_network(&array, &q.qmodel, &layers, &rates);

    let desc = format!(
        "derived by ftnas derive: accel {}, model {}, weights {}, faults {}; PE transient rates per bit per cycle: act {:e}, weight {:e}, psum {:e}, mult {:e}",
        inp.accel.display(),
        inp.model.display(),
        inp.weights.display(),
        inp.faults.display(),
        rates.act_reg,
        rates.weight_reg,
        rates.psum_reg,
        rates.mult_out
    );
    let model = FaultModel::from_spec(d.fault_spec(desc))?;
    model.save(&args.out)?;

    let (table, csv) = derivation_table(&d)?;
    print!("{table}");
    let csv_path = args.out.with_extension("csv");
    csv.write(&csv_path)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    println!("wrote {} and {}", args.out.display(), csv_path.display());
    Ok(())
}

/// The per-layer derivation as a table for stdout and a CSV (same rows).
pub fn derivation_table(d: &NetworkDerivation) -> anyhow::Result<(Table, Csv)> {
    let header = [
        "layer",
        "E",
        "K",
        "M",
        "groups",
        "p_out",
        "p_min",
        "p_max",
        "mu_act",
        "mu_weight",
        "mu_psum",
        "mu_mult",
        "mult_act",
        "mult_weight",
        "top_bit",
    ];
    let mut table = Table::new(header);
    let mut csv = Csv::new(header);
    for l in &d.layers {
        let mu = |s: FaultSite| l.sites.iter().find(|x| x.site == s).map_or(0.0, |x| x.mu);
        let mult = |s: FaultSite| {
            l.sites
                .iter()
                .find(|x| x.site == s)
                .map_or(0.0, |x| x.multiplicity)
        };
        let top = l
            .bit_weights
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(b, _)| b);
        let row = vec![
            l.name.clone(),
            l.gemm.0.to_string(),
            l.gemm.1.to_string(),
            l.gemm.2.to_string(),
            l.groups.to_string(),
            format!("{:.3e}", l.p_out),
            format!("{:.3e}", l.p_min),
            format!("{:.3e}", l.p_max),
            format!("{:.3e}", mu(FaultSite::ActReg)),
            format!("{:.3e}", mu(FaultSite::WeightReg)),
            format!("{:.3e}", mu(FaultSite::PsumReg)),
            format!("{:.3e}", mu(FaultSite::MultOut)),
            format!("{:.2}", mult(FaultSite::ActReg)),
            format!("{:.2}", mult(FaultSite::WeightReg)),
            top.to_string(),
        ];
        table.push(row.clone());
        csv.push(row)?;
    }
    Ok((table, csv))
}
