//! `ftnas derive`: the algorithmic fault model a systolic accelerator's raw
//! hardware fault rates imply for a quantized network — per layer, the
//! probability that an output element is hit and the distribution of the
//! hit bit (`output_hit`) from PE transient rates, and the per-bit weight
//! stuck-at probabilities from stuck filter-SRAM cells and (on WS arrays)
//! stuck weight registers, SRAM-buffer upsets and stuck feature-buffer
//! cells, and the other stuck PE register bits as stuck MAC-unit bits —
//! written as a fault-model file that `infer`, `eval`, `inject
//! --fault-model` and (all but the stuck MAC-unit bits) `train` and
//! `search` read. See [`crate::derive`] for the formulas.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::accel::description::Accelerator;
use crate::data::{self, Split};
use crate::derive::buffers::BufferRates;
use crate::derive::network::{
    bitserial_layers, derive_bitserial_from_spec, derive_from_spec, gemm_layers,
    sip_transient_rates, with_psum_signs, NetworkDerivation,
};
use crate::eval;
use crate::fault::{FaultModel, FeatureBuffer, MacGrid, MacRegister, StuckMacs};
use crate::fixed::Datapath;
use crate::hwsim::bitserial::SipSite;
use crate::hwsim::spec::{HwFaultSpec, Site};
use crate::hwsim::AnyHwNetwork;
use crate::hwsim::{FaultSite, SystolicArray};
use crate::report::{Csv, Table};

/// The inputs every derivation-style command takes: a systolic
/// accelerator, a trained model and a hardware fault specification.
#[derive(Debug, clap::Args)]
pub struct HwModelArgs {
    /// Accelerator description (systolic array or bit-serial design).
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
    /// Write stuck weight-register bits as independent per-weight faults
    /// (the same per-bit rates, without the register sharing): the paper's
    /// i.i.d. kind of model, optimistic where one register holds many
    /// weights.
    #[arg(long)]
    pub independent_weights: bool,
}

pub use crate::derive::network::pe_transient_rates;

pub fn run(args: Args) -> anyhow::Result<()> {
    let inp = &args.inputs;
    let acc = Accelerator::load(&inp.accel)?;
    let spec = HwFaultSpec::load(&inp.faults)?;
    if args.images == 0 {
        bail!("--images must be at least 1 (operand statistics need real layer inputs)");
    }
    let train = data::load(inp.data.as_deref(), Split::Train)?;
    let q = eval::load_quantized(&inp.model, &inp.weights, &train, inp.calib, acc.datapath)?;
    let n = args.images.min(train.len());
    let per = train.shape.numel();
    // The spec's sites must exist on this hardware (the same check as
    // `inject`'s, on the model mapped onto it).
    let net = AnyHwNetwork::new(&acc, &q.qmodel, true).with_context(|| {
        format!(
            "mapping {} onto {}",
            inp.model.display(),
            inp.accel.display()
        )
    })?;
    let kind = if acc.systolic.is_some() {
        "systolic"
    } else {
        "bit-serial"
    };
    spec.check(&net)
        .with_context(|| format!("{} is a {kind} design", inp.accel.display()))?;
    let layers = gemm_layers(&q.qmodel, &train.images[..n * per]);
    let shapes: Vec<_> = layers
        .iter()
        .map(|l| (l.name.clone(), (l.e, l.k, l.m), l.taps, l.groups))
        .collect();
    let geometry = net.buffer_geometry();
    let (d, skipped) = match (&acc.systolic, &acc.bitserial) {
        (Some(sys), _) => {
            let array = SystolicArray::new(sys.rows, sys.cols, sys.dataflow)?;
            let layers = with_psum_signs(layers, &array, &q.qmodel, &train.images[..n * per]);
            derive_from_spec(&array, &geometry, acc.clock_mhz, &q.qmodel, &layers, &spec)
        }
        (None, Some(bs)) => {
            // Psum flip directions only matter when psum flips are derived.
            let (rates, _) = sip_transient_rates(&spec, acc.clock_mhz);
            let images = &train.images[..n * per];
            let layers = bitserial_layers(layers, bs, &q.qmodel, images, rates.psum_reg > 0.0);
            derive_bitserial_from_spec(bs, &geometry, acc.clock_mhz, &q.qmodel, &layers, &spec)
        }
        (None, None) => bail!(
            "{}: neither a [systolic] nor a [bitserial] section",
            inp.accel.display()
        ),
    };
    if !skipped.is_empty() {
        eprintln!(
            "note: {}: not part of the derived fault model (use `ftnas inject` for them): {}",
            inp.faults.display(),
            skipped.join(", ")
        );
    }
    let d = if args.independent_weights {
        d.without_register_sharing()
    } else {
        d
    };
    let rates = d.rates;

    let desc = format!(
        "derived by ftnas derive: accel {}, model {}, weights {}, faults {}; {} transient rates per bit per cycle: act {:e}, weight {:e}, psum {:e}, mult {:e}; stuck-at per bit: filter SRAM {:e}/{:e}, weight register {:e}/{:e} ({})",
        inp.accel.display(),
        inp.model.display(),
        inp.weights.display(),
        inp.faults.display(),
        if acc.systolic.is_some() { "PE" } else { "SIP register" },
        rates.act_reg,
        rates.weight_reg,
        rates.psum_reg,
        rates.mult_out,
        d.stuck.sram_filter.p0,
        d.stuck.sram_filter.p1,
        if d.stuck.weight_stationary { d.stuck.weight_reg.p0 } else { 0.0 },
        if d.stuck.weight_stationary { d.stuck.weight_reg.p1 } else { 0.0 },
        if args.independent_weights {
            "drawn independently per weight"
        } else {
            "shared by the weights each register holds"
        },
    );
    let desc = if d.buffers.is_empty() {
        desc
    } else {
        let r = BufferRates::of_spec(&spec, acc.clock_mhz);
        format!(
            "{desc}; SRAM upsets per bit per cycle: ifmap {:e}, filter {:e}, ofmap {:e} \
             (input_flip / filter_flip / stored_flip per layer)",
            r.ifmap, r.filter, r.ofmap
        )
    };
    let desc = if d.stuck_cells.is_empty() {
        desc
    } else {
        format!("{desc}; stuck feature-buffer cells ([stuck_cells], per chip)")
    };
    let desc = match &d.stuck_macs {
        None => desc,
        Some(m) => format!(
            "{desc}; stuck {} register bits of the {} ([stuck_macs], per chip)",
            if acc.systolic.is_some() { "PE" } else { "SIP" },
            m.grid_text()
        ),
    };
    let model = FaultModel::from_spec(d.fault_spec(desc))?;
    model.save(&args.out)?;

    let mut written = vec![args.out.display().to_string()];
    if !d.layers.is_empty() {
        let (table, csv) = derivation_table(&d)?;
        print!("{table}");
        let path = args.out.with_extension("csv");
        csv.write(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    if let Some((table, csv)) = weight_table(&d)? {
        if !d.layers.is_empty() {
            println!();
        }
        println!("weight faults (stuck-at, per bit of every weight code, drawn once per chip):");
        print!("{table}");
        let path = weights_csv_path(&args.out);
        csv.write(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    if !d.buffers.is_empty() {
        if !d.layers.is_empty() || !d.weights.is_empty() {
            println!();
        }
        println!(
            "SRAM-buffer upsets (per bit of every code: input as the layer reads it, \
             weight for one image, stored output after the activation):"
        );
        let mut t = Table::new(["layer", "input_flip", "filter_flip", "stored_flip"]);
        for b in &d.buffers {
            t.push([
                b.name.clone(),
                format!("{:.4e}", b.input_flip),
                format!("{:.4e}", b.filter_flip),
                format!("{:.4e}", b.stored_flip),
            ]);
        }
        print!("{t}");
    }
    for buffer in [FeatureBuffer::Ifmap, FeatureBuffer::Ofmap] {
        if let Some(m) = d.stuck_cells.get(buffer) {
            println!(
                "stuck {} cells (per chip, every layer): {} words, per bit stuck at 0 {:e}, at 1 {:e}; \
                 expected {:.2} stuck bits per chip",
                buffer.key(),
                m.words,
                m.p0,
                m.p1,
                m.words as f64 * f64::from(acc.datapath.act_bits) * (m.p0 + m.p1)
            );
        }
    }
    if let Some(m) = &d.stuck_macs {
        let (table, csv) = stuck_macs_table(m, &shapes, &acc.datapath)?;
        print!("{table}");
        let path = args.out.with_extension("macs.csv");
        csv.write(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    println!("wrote {}", written.join(", "));
    Ok(())
}

/// A layer of [`stuck_macs_table`]: name, GEMM `(E, K, M)` (pixels,
/// reduction, filters per group), taps, groups.
pub type ReachLayer = (String, (usize, usize, usize), usize, usize);

/// The stuck MAC-unit model's summary line and per-layer reach table.
pub fn stuck_macs_table(
    m: &StuckMacs,
    layers: &[ReachLayer],
    dp: &Datapath,
) -> anyhow::Result<(String, Csv)> {
    let mut out = String::new();
    let expected: f64 = MacRegister::ALL
        .iter()
        .map(|&r| {
            let d = m.of(r);
            let (rows, cols) = m.units(r);
            (rows * cols) as f64 * f64::from(r.width(dp)) * (d.p0 + d.p1)
        })
        .sum();
    let unit = if let MacGrid::BitSerial { .. } = m.grid {
        "SIP"
    } else {
        "PE"
    };
    out += &format!(
        "stuck {unit} register bits ({}, per chip, every layer; per bit stuck at 0 / 1: {}); \
         expected {expected:.2} stuck bits per chip\n",
        m.grid_text(),
        m.densities_text(),
    );
    out += &format!("outputs one stuck bit reaches (mean over the {unit}s it can sit in):\n");
    let header = [
        "layer",
        "outputs",
        "act_bit",
        "weight_bit",
        "product_bit",
        "psum_bit",
    ];
    let mut t = Table::new(header);
    let mut csv = Csv::new(header);
    for (name, (e, k, f), taps, g) in layers {
        let r =
            crate::derive::stuck_macs::mean_reach(m.grid, m.rows, m.cols, (*e, *k, *f), *taps, *g);
        let row = [
            name.clone(),
            (e * f * g).to_string(),
            format!("{:.1}", r[0]),
            format!("{:.1}", r[1]),
            format!("{:.1}", r[2]),
            format!("{:.1}", r[3]),
        ];
        csv.push(row.clone())?;
        t.push(row);
    }
    out += &t.to_string();
    Ok((out, csv))
}

/// Where `derive --out FM.toml` writes the weight-fault CSV: `FM.weights.csv`.
pub fn weights_csv_path(out: &std::path::Path) -> PathBuf {
    out.with_extension("weights.csv")
}

/// The per-layer weight faults as a table and CSV, when any were derived.
pub fn weight_table(d: &NetworkDerivation) -> anyhow::Result<Option<(Table, Csv)>> {
    if d.weights.is_empty() {
        return Ok(None);
    }
    let header = [
        "layer",
        "weights",
        "bits",
        "p_stuck0",
        "p_stuck1",
        "stuck_bits_per_chip",
        "weights_per_sram_word",
        "weights_per_pe_reg",
    ];
    let mut table = Table::new(header);
    let mut csv = Csv::new(header);
    for w in &d.weights {
        let row = vec![
            w.name.clone(),
            w.weights.to_string(),
            w.bits.to_string(),
            format!("{:.3e}", w.bit.p0),
            format!("{:.3e}", w.bit.p1),
            format!("{:.3}", w.expected_stuck_bits),
            format!("{:.2}", w.sram_share),
            w.reg_share.map_or("-".into(), |r| format!("{r:.2}")),
        ];
        table.push(row.clone());
        csv.push(row)?;
    }
    Ok(Some((table, csv)))
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
        "runs",
    ];
    let mut table = Table::new(header);
    let mut csv = Csv::new(header);
    for l in &d.layers {
        // A SIP register plays the same role as the PE register of its
        // name (bit-serial designs have no separate multiplier register).
        let find = |s: FaultSite| {
            let sip = match s {
                FaultSite::ActReg => Some(SipSite::ActReg),
                FaultSite::WeightReg => Some(SipSite::WeightReg),
                FaultSite::PsumReg => Some(SipSite::PsumReg),
                FaultSite::MultOut => None,
            };
            l.sites
                .iter()
                .find(|x| x.site == Site::Pe(s) || sip.is_some_and(|p| x.site == Site::Sip(p)))
        };
        let mu = |s: FaultSite| find(s).map_or(0.0, |x| x.mu);
        let mult = |s: FaultSite| find(s).map_or(0.0, |x| x.multiplicity);
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
            // Stationary-register upsets per stream per image (WS/IS).
            l.stream
                .as_ref()
                .map_or("-".into(), |s| format!("{:.3e}", s.runs.events)),
        ];
        table.push(row.clone());
        csv.push(row)?;
    }
    Ok((table, csv))
}
