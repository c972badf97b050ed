//! `ftnas calibrate`: the derived algorithmic fault model against
//! hardware-level injection on a systolic array or a bit-serial design —
//! per-layer hit rates
//! and network accuracy across a sweep of raw rates, with 95% confidence
//! intervals. Writes `calibration.md`, `calibration.csv`, `layers.csv` and
//! `calibration.svg` to `--out`. See [`crate::derive::calibrate`].

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::derive::{pe_transient_rates, HwModelArgs};
use super::hwrun::ExecutorChoice;
use super::infer::image_progress;
use crate::accel::description::Accelerator;
use crate::data::{self, Split};
use crate::derive::buffers::BufferRates;
use crate::derive::calibrate::{calibrate, work, Calibration, CalibrationConfig};
use crate::derive::hardware::Hardware;
use crate::derive::hardware::TransientRates;
use crate::derive::network::{bitserial_layers, sip_transient_rates};
use crate::derive::network::{gemm_layers, with_psum_signs};
use crate::derive::permanent::{stuck_rates, WeightHolder};
use crate::eval;
use crate::hwsim::bsnet::BitSerialNetwork;
use crate::hwsim::network::HwNetwork;
use crate::hwsim::spec::{HwFaultSpec, Site};
use crate::hwsim::sram::SramBuffer;
use crate::report::{write_atomic, Csv, Plot, Series, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub inputs: HwModelArgs,
    /// Raw rates of the sweep (flip probability per bit per cycle of the
    /// most upset-prone register site, PE or SIP), comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub rates: Vec<f64>,
    /// Test images per chip.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// Simulated chips per rate.
    #[arg(long, default_value_t = 8)]
    pub chips: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images whose layer inputs are used in the per-layer measurement.
    #[arg(long, default_value_t = 4)]
    pub layer_images: usize,
    /// Fault samples per image and layer in the per-layer measurement.
    #[arg(long, default_value_t = 40)]
    pub layer_trials: u64,
    /// GEMM executor of the hardware model (same results either way).
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Exact)]
    pub executor: ExecutorChoice,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

use crate::eval::stats::pct;

fn ci(s: &crate::eval::Summary) -> String {
    s.ci_pct()
}

fn report(cal: &Calibration, title: &str) -> anyhow::Result<(Table, Csv, Table, Csv, Plot)> {
    let header = [
        "rate",
        "flips_per_image",
        "hw_mean",
        "hw_ci95",
        "derived_mean",
        "derived_ci95",
        "derived_agrees",
        "fitted_mean",
        "fitted_agrees",
    ];
    let mut t = Table::new(header);
    let mut c = Csv::new(header);
    for p in &cal.points {
        let row = vec![
            format!("{:e}", p.rate),
            format!("{:.3}", p.flips_per_image),
            pct(p.hardware.mean),
            ci(&p.hardware),
            pct(p.derived.mean),
            ci(&p.derived),
            if p.derived_agrees() { "yes" } else { "no" }.to_string(),
            pct(p.fitted.mean),
            if p.fitted_agrees() { "yes" } else { "no" }.to_string(),
        ];
        t.push(row.clone());
        c.push(row)?;
    }
    let lheader = [
        "layer",
        "rate",
        "p_derived",
        "p_measured",
        "se",
        "correction",
        "err_derived",
        "err_measured",
        "err_se",
        "act_err_derived",
        "act_err_measured",
        "bits_derived",
        "bits_measured",
    ];
    // Per-bit hit shares, LSB first, `;`-separated (one CSV cell).
    let bit_list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2e}"))
            .collect::<Vec<_>>()
            .join(";")
    };
    // The bit histograms go to the CSV only: too wide for a terminal.
    let shown = lheader.len() - 2;
    let mut lt = Table::new(lheader[..shown].to_vec());
    let mut lc = Csv::new(lheader);
    for l in &cal.layers {
        let row = vec![
            l.name.clone(),
            format!("{:.3e}", l.rate),
            format!("{:.4e}", l.derived),
            format!("{:.4e}", l.measured),
            format!("{:.1e}", l.se),
            format!("{:.3}", l.correction),
            format!("{:.2}", l.derived_error),
            format!("{:.2}", l.measured_error),
            format!("{:.1}", l.measured_error_se),
            format!("{:.2}", l.derived_act_error),
            format!("{:.2}", l.measured_act_error),
            bit_list(&l.derived_bits),
            bit_list(&l.measured_bits),
        ];
        lt.push(row[..shown].to_vec());
        lc.push(row)?;
    }
    let mut plot = Plot::new(
        title.to_string(),
        "raw flip rate per bit per cycle (strongest register site)",
        "accuracy (%)",
    )
    .y_range(0.0, 100.0);
    if cal.points.iter().all(|p| p.rate > 0.0) {
        plot = plot.log_x();
    }
    let series =
        |name: &str, f: &dyn Fn(&crate::derive::calibrate::RatePoint) -> &crate::eval::Summary| {
            let pts = cal
                .points
                .iter()
                .map(|p| (p.rate, 100.0 * f(p).mean))
                .collect();
            let band = cal
                .points
                .iter()
                .map(|p| {
                    let s = f(p);
                    let (lo, hi) = s.ci95.unwrap_or((s.mean, s.mean));
                    (100.0 * lo, 100.0 * hi)
                })
                .collect();
            Series::line(name.to_string(), pts).band(band)
        };
    plot.push(series("hardware-level injection", &|p| &p.hardware));
    plot.push(series("derived model (engine)", &|p| &p.derived));
    plot.push(series("fitted model (engine)", &|p| &p.fitted));
    Ok((t, c, lt, lc, plot))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let inp = &args.inputs;
    if args.rates.is_empty() || args.rates.iter().any(|&r| !(0.0..=0.5).contains(&r)) {
        bail!("--rates: every rate must be a probability per bit per cycle in [0, 0.5]");
    }
    if args.images == 0 || args.chips == 0 || args.layer_images == 0 || args.layer_trials == 0 {
        bail!("--images, --chips, --layer-images and --layer-trials must be at least 1");
    }
    let acc = Accelerator::load(&inp.accel)?;
    let spec = HwFaultSpec::load(&inp.faults)?;
    let (base, mut skipped) = match (&acc.systolic, &acc.bitserial) {
        (Some(_), _) => pe_transient_rates(&spec, acc.clock_mhz),
        (None, Some(_)) => sip_transient_rates(&spec, acc.clock_mhz),
        (None, None) => bail!(
            "{}: neither a [systolic] nor a [bitserial] section",
            inp.accel.display()
        ),
    };
    let holder = WeightHolder::of(&acc)
        .with_context(|| format!("{}: no systolic or bit-serial section", inp.accel.display()))?;
    let (stuck, not_weights) = stuck_rates(&spec, &holder);
    if stuck.weight_bit().any() {
        skipped.push(
            "stuck-at weight cells (derived by `ftnas derive`; calibration sweeps transient rates)"
                .into(),
        );
    }
    skipped.extend(not_weights);
    // Stuck MAC-unit / SIP register bits that `derive` turns into
    // [stuck_macs] (the others are in `not_weights` already).
    if spec
        .rates
        .iter()
        .any(|(s, r)| holder.derives_as_units(s) && r.stuck_at_0 + r.stuck_at_1 > 0.0)
    {
        let kind = if acc.systolic.is_some() { "PE" } else { "SIP" };
        skipped.push(format!(
            "stuck {kind} register bits (derived by `ftnas derive` as [stuck_macs]; calibration sweeps transient rates)"
        ));
    }
    for b in [SramBuffer::Ifmap, SramBuffer::Ofmap] {
        if spec
            .rates
            .get(&Site::Sram(b))
            .is_some_and(|r| r.stuck_at_0 + r.stuck_at_1 > 0.0)
        {
            skipped.push(format!(
                "{} stuck cells (derived by `ftnas derive`; calibration sweeps transient rates)",
                b.name()
            ));
        }
    }
    let kind = if acc.systolic.is_some() { "PE" } else { "SIP" };
    if base.act_reg + base.weight_reg + base.psum_reg + base.mult_out <= 0.0 {
        bail!(
            "{}: no {kind} transient rate (sites.\"{}.*\".transient_per_bit_cycle or fit_per_mbit); calibration sweeps register upsets",
            inp.faults.display(),
            kind.to_lowercase()
        );
    }
    if !skipped.is_empty() {
        eprintln!("note: left out of the calibration: {}", skipped.join(", "));
    }
    let train = data::load(inp.data.as_deref(), Split::Train)?;
    let test_data = data::load(inp.data.as_deref(), Split::Test)?;
    let test = eval::first_images(&test_data, Some(args.images))?;
    let q = eval::load_quantized(&inp.model, &inp.weights, &train, inp.calib, acc.datapath)?;
    let per = train.shape.numel();
    let n_stats = 16.min(train.len());
    let stats_images = &train.images[..n_stats * per];
    let layers = gemm_layers(&q.qmodel, stats_images);
    let (systolic, bitserial_net, layers) = match &acc.bitserial {
        None => {
            let net =
                HwNetwork::new(&acc, &q.qmodel).with_context(|| inp.accel.display().to_string())?;
            let net = args.executor.apply(net);
            let layers = with_psum_signs(layers, net.array(), &q.qmodel, stats_images);
            (Some(net), None, layers)
        }
        Some(bs) => {
            let net = BitSerialNetwork::new(&acc, &q.qmodel)
                .with_context(|| inp.accel.display().to_string())?
                .with_executor(args.executor.bitserial());
            let layers = bitserial_layers(layers, bs, &q.qmodel, stats_images, true);
            (None, Some(net), layers)
        }
    };
    let (hw, path) = match (&systolic, &bitserial_net) {
        (Some(n), _) => (Hardware::Systolic(n), n.executor().name()),
        (None, Some(n)) => (Hardware::BitSerial(n), n.executor().name()),
        (None, None) => unreachable!("one of the two was built"),
    };
    let cfg = CalibrationConfig {
        rates: args.rates.clone(),
        chips: args.chips,
        seed: args.seed,
        layer_trials: args.layer_trials,
        layer_images: args.layer_images,
    };
    let bar = image_progress(work(&cfg, test.len(), layers.len()));
    let base = TransientRates {
        regs: base,
        sram: BufferRates::of_spec(&spec, acc.clock_mhz),
    };
    let cal = calibrate(&hw, &layers, &base, test, &cfg, &|k| bar.inc(k))?;
    bar.finish_and_clear();

    let title = format!(
        "{} on {} ({} path): accuracy vs raw rate, {} images, {} chips",
        inp.model.display(),
        acc.name,
        path,
        test.len(),
        args.chips
    );
    let (t, c, lt, lc, plot) = report(&cal, &title)?;
    println!("clean accuracy: {}%", pct(cal.clean_accuracy));
    println!("{lt}");
    println!("{t}");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    c.write(&args.out.join("calibration.csv"))?;
    lc.write(&args.out.join("layers.csv"))?;
    plot.write(&args.out.join("calibration.svg"))?;
    let agree = cal.points.iter().filter(|p| p.derived_agrees()).count();
    let mut md = String::new();
    writeln!(md, "# Calibration: {title}\n")?;
    writeln!(
        md,
        "Accelerator `{}`, model `{}`, weights `{}`, fault spec `{}` ({kind} site ratios: act {:.3}, weight {:.3}, psum {:.3}, mult {:.3}; SRAM ifmap {:.3}, filter {:.3}, ofmap {:.3}); seed {}.\n",
        inp.accel.display(),
        inp.model.display(),
        inp.weights.display(),
        inp.faults.display(),
        cal.shape.regs.act_reg,
        cal.shape.regs.weight_reg,
        cal.shape.regs.psum_reg,
        cal.shape.regs.mult_out,
        cal.shape.sram.ifmap,
        cal.shape.sram.filter,
        cal.shape.sram.ofmap,
        args.seed
    )?;
    writeln!(md, "Clean accuracy {}%. The derived model agrees with hardware-level injection (mean inside the 95% CI or within 1 pp) at {agree} of {} rates.\n", pct(cal.clean_accuracy), cal.points.len())?;
    writeln!(md, "## Accuracy vs raw rate\n\n```\n{t}```\n")?;
    writeln!(
        md,
        "## Per-layer hit rate (layer-isolated injection)\n\n```\n{lt}```\n"
    )?;
    writeln!(md, "![accuracy vs rate](calibration.svg)")?;
    write_atomic(&args.out.join("calibration.md"), md.as_bytes())?;
    println!(
        "derived model agrees at {agree} of {} rates; wrote {}",
        cal.points.len(),
        args.out.display()
    );
    Ok(())
}
