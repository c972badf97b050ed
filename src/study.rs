//! The study: the pipeline an accelerator architect comes to ftnas for, in
//! one run (`ftnas study`).
//!
//! For one accelerator description, one hardware fault specification and a
//! set of trained models, each model gets:
//!
//! 1. **Timing** on the accelerator ([`crate::accel::time_graph`]). Bit-serial
//!    designs are timed with the model's real per-layer precisions
//!    ([`mac_precisions`]: the bits its quantized activation and weight codes
//!    actually use), systolic arrays are bit-parallel.
//! 2. **The derived fault model** ([`crate::derive`]): the per-layer feature
//!    faults the spec's register transient rates imply on this hardware.
//! 3. **Accuracy**: clean and under the derived model on the fixed-point
//!    engine (many images, several chips), and a short **hardware-level
//!    cross-check** — the whole spec (every site, SRAM and stuck-at
//!    included) injected into the functional accelerator model on fewer
//!    images — with the derived model run on the same images beside it.
//! 4. **A sweep of the raw rate**: the spec's transient site mix (registers
//!    and SRAM buffers) scaled so that the strongest site flips at each rate,
//!    hardware-level injection against the derived model, from no visible
//!    effect to heavy degradation.
//!
//! This module computes ([`study_model`]) and renders ([`Report`]); the CLI
//! (`cli::study`) finds the files, shows progress and writes the report.
//! Systolic arrays (PE register sites) and bit-serial designs (SIP
//! register sites; with run-time precision detection, the steps' widths
//! measured on real images) get all four parts.

use std::fmt::Write as _;

use crate::accel::network::TimingError;
use crate::accel::{time_graph, Accelerator, NetworkTiming};
use crate::derive::buffers::BufferRates;
use crate::derive::calibrate::{agrees, derived_accuracy, hardware_accuracy};
use crate::derive::hardware::{Hardware, TransientRates};
use crate::derive::layer::GemmLayer;
use crate::derive::network::{derive_bitserial_from_spec, derive_from_spec, NetworkDerivation};
use crate::engine::{EngineError, FastEngine};
use crate::eval::pipeline::TestSet;
use crate::eval::stats::pct;
use crate::eval::{accuracy, Summary};
use crate::fault::FeatureBuffer;
use crate::fixed::Datapath;
use crate::hwsim::spec::FaultTarget;
use crate::hwsim::{HwFaultSpec, HwNetError};
use crate::model::Graph;
use crate::quant::QModel;
use crate::report::{Csv, Plot, ReportError, Series, Style, Table};

/// Errors of a study.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("model `{model}`: timing: {source}")]
    Timing { model: String, source: TimingError },
    #[error("model `{model}`: hardware model: {source}")]
    Hardware { model: String, source: HwNetError },
    #[error("model `{model}`: engine: {source}")]
    Engine { model: String, source: EngineError },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    Invalid(String),
}

/// How much of each measurement to run.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyConfig {
    /// Raw rates of the sweep (per bit per cycle of the strongest register site).
    pub rates: Vec<f64>,
    /// Simulated chips (fault samples) per accuracy figure.
    pub chips: u64,
    pub seed: u64,
}

/// Accuracy at one raw rate of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub rate: f64,
    /// Expected PE register flips per image on the hardware model.
    pub flips_per_image: f64,
    pub hardware: Summary,
    pub derived: Summary,
}

impl SweepPoint {
    pub fn agrees(&self) -> bool {
        agrees(&self.hardware, &self.derived)
    }
}

/// The fault part of a model's study (systolic arrays only).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStudy {
    /// The derived model at the spec's PE rates.
    pub derivation: NetworkDerivation,
    /// Parts of the spec the derived feature model does not cover (they are
    /// in the hardware-level cross-check).
    pub left_out: Vec<String>,
    /// Expected transient flips per image over every site of the spec.
    pub expected_flips: f64,
    /// Engine under the derived model, on the large image set.
    pub derived: Summary,
    /// Hardware model under the whole spec, on the cross-check images.
    pub hardware: Summary,
    /// Engine under the derived model, on the cross-check images.
    pub derived_cross: Summary,
    pub sweep: Vec<SweepPoint>,
}

impl FaultStudy {
    /// The derived model agrees with the hardware cross-check at the spec.
    pub fn agrees(&self) -> bool {
        agrees(&self.hardware, &self.derived_cross)
    }
}

/// One model's study.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStudy {
    pub name: String,
    pub params: u64,
    pub timing: NetworkTiming,
    /// Clean fixed-point accuracy on the large image set.
    pub clean: f64,
    /// Images behind `clean` and the derived-model figure.
    pub images: usize,
    /// Images behind the hardware-level figures.
    pub hw_images: usize,
    pub faults: Option<FaultStudy>,
    /// What was not done, and why.
    pub notes: Vec<String>,
}

/// The bits each MAC layer's operands use (in node order, as
/// [`time_graph`] takes them): one sign bit plus the bit length of the
/// largest activation (input codes seen on real images) and weight code,
/// at most the datapath's widths. This is the per-layer precision profile a
/// Stripes/Loom design would be configured with.
pub fn mac_precisions(layers: &[GemmLayer], dp: &Datapath) -> Vec<(u8, u8)> {
    let bits = |counts: &[u64], cap: u8| -> u8 {
        let max = counts.iter().rposition(|&c| c > 0).unwrap_or(0) as u64;
        let len = (64 - max.leading_zeros()) as u8;
        (len + 1).clamp(2, cap.max(2))
    };
    layers
        .iter()
        .map(|l| {
            (
                bits(&l.inputs.counts, dp.act_bits),
                bits(&l.weights.counts, dp.weight_bits),
            )
        })
        .collect()
}

/// Work units [`study_model`] reports (images run) for a model.
pub fn work(cfg: &StudyConfig, images: usize, hw_images: usize, derived: bool) -> u64 {
    let mut w = images as u64;
    if derived {
        w += cfg.chips * images as u64 + 2 * cfg.chips * hw_images as u64;
        w += cfg.rates.len() as u64 * 2 * cfg.chips * hw_images as u64;
    }
    w
}

/// Everything [`study_model`] needs about one model.
pub struct ModelInputs<'a> {
    pub name: &'a str,
    pub graph: &'a Graph,
    pub qmodel: &'a QModel,
    /// GEMM views of the MAC layers with operand statistics
    /// ([`crate::derive::network::gemm_layers`]).
    pub layers: &'a [GemmLayer],
    /// The model on the accelerator's functional model (`None` for designs
    /// the derivation does not cover).
    pub net: Option<Hardware<'a>>,
}

/// Study one model on `acc` under `spec`: `test` is the large image set
/// (clean and derived-model accuracy), `cross` the hardware-level one.
/// `progress` gets images run.
pub fn study_model(
    m: &ModelInputs<'_>,
    acc: &Accelerator,
    spec: &HwFaultSpec,
    test: TestSet<'_>,
    cross: TestSet<'_>,
    cfg: &StudyConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ModelStudy, StudyError> {
    let name = m.name.to_string();
    let precisions = acc
        .bitserial
        .is_some()
        .then(|| mac_precisions(m.layers, &acc.datapath));
    let timing =
        time_graph(acc, m.graph, precisions.as_deref()).map_err(|source| StudyError::Timing {
            model: name.clone(),
            source,
        })?;
    let engine_err = |source| StudyError::Engine {
        model: name.clone(),
        source,
    };
    let hw_err = |source| StudyError::Hardware {
        model: name.clone(),
        source,
    };
    let logits =
        crate::eval::pipeline::run_chunked(&FastEngine, m.qmodel, test.images, None, progress)
            .map_err(engine_err)?;
    let clean = accuracy(&logits, test.labels);
    let mut notes = Vec::new();
    if let Some(p) = &precisions {
        let widths: Vec<String> = p.iter().map(|(a, w)| format!("{a}/{w}")).collect();
        notes.push(format!(
            "timed with the model's per-layer precisions (act/weight bits): {}",
            widths.join(" ")
        ));
    }
    let faults = match m.net {
        None => {
            notes.push(format!(
                "`{}` has no functional model the fault derivation covers (timing only)",
                acc.name
            ));
            None
        }
        Some(net) => Some(fault_study(m, net, spec, test, cross, cfg, progress).map_err(hw_err)?),
    };
    Ok(ModelStudy {
        name,
        params: m.graph.total_params(),
        timing,
        clean,
        images: test.len(),
        hw_images: cross.len(),
        faults,
        notes,
    })
}

fn fault_study(
    m: &ModelInputs<'_>,
    hw: Hardware<'_>,
    spec: &HwFaultSpec,
    test: TestSet<'_>,
    cross: TestSet<'_>,
    cfg: &StudyConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FaultStudy, HwNetError> {
    let (derivation, left_out) = match hw {
        Hardware::Systolic(net) => derive_from_spec(
            net.array(),
            &net.buffer_geometry(),
            net.clock_mhz(),
            m.qmodel,
            m.layers,
            spec,
        ),
        Hardware::BitSerial(net) => derive_bitserial_from_spec(
            &net.array().design,
            &net.buffer_geometry(),
            net.clock_mhz(),
            m.qmodel,
            m.layers,
            spec,
        ),
    };
    let rates = derivation.rates;
    let derived = Summary::of(&derived_accuracy(
        m.qmodel,
        &derivation,
        test,
        cfg.chips,
        cfg.seed,
        progress,
    )?);
    let derived_cross = Summary::of(&derived_accuracy(
        m.qmodel,
        &derivation,
        cross,
        cfg.chips,
        cfg.seed,
        progress,
    )?);
    let hardware = Summary::of(&hardware_accuracy(
        &hw,
        cross,
        cfg.chips,
        &|chip| {
            hw.sample_chip(spec, cfg.seed, chip)
                .map_err(|e| HwNetError::Fault {
                    what: "fault spec".into(),
                    reason: e.to_string(),
                })
        },
        progress,
    )?);
    let expected_flips = hw.expected_transients_per_image(spec);
    let shape = TransientRates {
        regs: rates,
        sram: BufferRates::of_spec(spec, hw.clock_mhz()),
    }
    .shape();
    let unit = hw.transient_flips_per_cycle(&shape);
    let mut sweep = Vec::new();
    if unit > 0.0 {
        for &r in &cfg.rates {
            let rates = shape.scaled(r);
            let hw_acc = hardware_accuracy(
                &hw,
                cross,
                cfg.chips,
                &|chip| Ok(hw.chip_at(&rates, cfg.seed, chip)),
                progress,
            )?;
            let d = hw.derive_transients(m.layers, &rates);
            let alg = derived_accuracy(m.qmodel, &d, cross, cfg.chips, cfg.seed, progress)?;
            sweep.push(SweepPoint {
                rate: r,
                flips_per_image: r * unit * hw.cycles() as f64,
                hardware: Summary::of(&hw_acc),
                derived: Summary::of(&alg),
            });
        }
    } else {
        // Keep the progress total honest when no sweep is possible.
        progress(cfg.rates.len() as u64 * 2 * cfg.chips * cross.len() as u64);
    }
    Ok(FaultStudy {
        derivation,
        left_out,
        expected_flips,
        derived,
        hardware,
        derived_cross,
        sweep,
    })
}

fn mean_ci(s: &Summary) -> String {
    match s.ci95 {
        Some((lo, hi)) => format!("{} [{}, {}]", pct(s.mean), pct(lo), pct(hi)),
        None => pct(s.mean),
    }
}

/// The rendered study: tables for stdout, CSVs, the plot and the markdown.
pub struct Report {
    pub summary: Table,
    pub summary_csv: Csv,
    pub sweep: Table,
    pub sweep_csv: Csv,
    pub plot: Plot,
    pub markdown: String,
}

/// What the report says about the inputs (file names as the user gave them).
pub struct ReportContext<'a> {
    pub accel_path: &'a str,
    pub faults_path: &'a str,
    pub acc: &'a Accelerator,
    pub cfg: &'a StudyConfig,
    /// Per model: the model and weights file.
    pub files: &'a [(String, String)],
}

/// Render the studies of all models.
pub fn render(studies: &[ModelStudy], ctx: &ReportContext<'_>) -> Result<Report, StudyError> {
    let header = [
        "model",
        "params",
        "MACs",
        "cycles",
        "util_pct",
        "latency_ms",
        "dram_words",
        "clean_pct",
        "derived_pct",
        "hw_pct",
        "derived_same_images_pct",
        "flips_per_image",
        "agrees",
    ];
    let mut summary = Table::new(header);
    let mut summary_csv = Csv::new(header);
    for s in studies {
        let t = &s.timing.totals;
        let dram = t.dram_ifmap_reads + t.dram_filter_reads + t.dram_ofmap_writes;
        let (d, h, dc, flips, ok) = match &s.faults {
            Some(f) => (
                mean_ci(&f.derived),
                mean_ci(&f.hardware),
                mean_ci(&f.derived_cross),
                format!("{:.3e}", f.expected_flips),
                if f.agrees() { "yes" } else { "no" }.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let row = vec![
            s.name.clone(),
            s.params.to_string(),
            t.macs.to_string(),
            t.total_cycles.to_string(),
            format!("{:.1}", t.overall_util_pct),
            format!("{:.4}", t.time_us / 1000.0),
            dram.to_string(),
            pct(s.clean),
            d,
            h,
            dc,
            flips,
            ok,
        ];
        summary.push(row.clone());
        summary_csv.push(row)?;
    }

    let sheader = [
        "model",
        "rate",
        "flips_per_image",
        "hw_mean_pct",
        "hw_ci95_pct",
        "derived_mean_pct",
        "derived_ci95_pct",
        "agrees",
    ];
    let mut sweep = Table::new(sheader);
    let mut sweep_csv = Csv::new(sheader);
    let ci = Summary::ci_pct;
    let mut plot = Plot::new(
        format!("accuracy vs raw register flip rate on {}", ctx.acc.name),
        "raw flip rate per bit per cycle (strongest register site)",
        "top-1 accuracy (%)",
    )
    .y_range(0.0, 100.0);
    let mut any_points = false;
    for s in studies {
        let Some(f) = &s.faults else { continue };
        for p in &f.sweep {
            let row = vec![
                s.name.clone(),
                format!("{:e}", p.rate),
                format!("{:.3}", p.flips_per_image),
                pct(p.hardware.mean),
                ci(&p.hardware),
                pct(p.derived.mean),
                ci(&p.derived),
                if p.agrees() { "yes" } else { "no" }.to_string(),
            ];
            sweep.push(row.clone());
            sweep_csv.push(row)?;
        }
        let positive: Vec<&SweepPoint> = f.sweep.iter().filter(|p| p.rate > 0.0).collect();
        if positive.is_empty() {
            continue;
        }
        any_points = true;
        let band = |g: &dyn Fn(&SweepPoint) -> Summary| -> Vec<(f64, f64)> {
            positive
                .iter()
                .map(|p| {
                    let s = g(p);
                    let (lo, hi) = s.ci95.unwrap_or((s.mean, s.mean));
                    (100.0 * lo, 100.0 * hi)
                })
                .collect()
        };
        let line = |g: &dyn Fn(&SweepPoint) -> Summary| -> Vec<(f64, f64)> {
            positive
                .iter()
                .map(|p| (p.rate, 100.0 * g(p).mean))
                .collect()
        };
        plot.push(
            Series::line(format!("{} hardware-level", s.name), line(&|p| p.hardware))
                .style(Style::LineMarkers)
                .band(band(&|p| p.hardware)),
        );
        plot.push(Series::line(
            format!("{} derived model", s.name),
            line(&|p| p.derived),
        ));
    }
    if any_points {
        plot = plot.log_x();
    }

    let mut md = String::new();
    let w = |md: &mut String, s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    w(&mut md, format!("# ftnas study: {}\n", ctx.acc.name));
    w(
        &mut md,
        format!(
            "Accelerator `{}` ({}, {} MHz, datapath act/weight/psum {}/{}/{} bits), hardware fault spec `{}`; {} chips per figure, seed {}.\n",
            ctx.accel_path,
            match ctx.acc.kind {
                crate::accel::description::Kind::Systolic => "systolic",
                crate::accel::description::Kind::BitSerial => "bit-serial",
            },
            ctx.acc.clock_mhz,
            ctx.acc.datapath.act_bits,
            ctx.acc.datapath.weight_bits,
            ctx.acc.datapath.psum_bits,
            ctx.faults_path,
            ctx.cfg.chips,
            ctx.cfg.seed
        ),
    );
    w(
        &mut md,
        "| model | model file | weights |\n|---|---|---|".into(),
    );
    for (s, (model, weights)) in studies.iter().zip(ctx.files) {
        w(&mut md, format!("| {} | `{model}` | `{weights}` |", s.name));
    }
    w(&mut md, String::new());
    w(&mut md, "## Summary\n".into());
    w(&mut md, "Timing on the accelerator; top-1 accuracy in % (mean [95% CI] over chips): clean and under the derived model on the fixed-point engine, under the whole hardware spec on the functional accelerator model, and the derived model on the same images as the hardware run. `agrees`: the derived model's mean is inside the hardware CI or within 1 pp.\n".into());
    w(&mut md, format!("```\n{summary}```\n"));
    for s in studies {
        w(&mut md, format!("## {}\n", s.name));
        let t = &s.timing.totals;
        w(
            &mut md,
            format!(
                "{} MACs, {} parameters; {} cycles ({} compute, {} stall), {:.1}% utilization, {:.3} ms at {} MHz. Clean accuracy {}% on {} test images. Per-layer timing: `timing-{}.csv`.\n",
                t.macs,
                s.params,
                t.total_cycles,
                t.compute_cycles,
                t.stall_cycles,
                t.overall_util_pct,
                t.time_us / 1000.0,
                ctx.acc.clock_mhz,
                pct(s.clean),
                s.images,
                s.name
            ),
        );
        if let Some(f) = &s.faults {
            let r = &f.derivation.rates;
            w(
                &mut md,
                format!(
                    "Derived fault model (`{0}.fault-model.toml`, per layer in `{0}.derived.csv`) from PE transient rates per bit per cycle: act {1:e}, weight {2:e}, psum {3:e}, mult {4:e}. Expected transient flips per image over the whole spec: {5:.3e}.",
                    s.name, r.act_reg, r.weight_reg, r.psum_reg, r.mult_out, f.expected_flips
                ),
            );
            if !f.derivation.buffers.is_empty() {
                w(
                    &mut md,
                    format!(
                        " SRAM upsets of the ifmap/filter/ofmap buffers: `input_flip` / `filter_flip` / `stored_flip` on {} layers.",
                        f.derivation.buffers.len()
                    ),
                );
            }
            if !f.derivation.weights.is_empty() {
                let st = &f.derivation.stuck;
                w(
                    &mut md,
                    format!(
                        " Stuck cells that hold weights (per bit, stuck at 0 / 1: filter SRAM {:e} / {:e}, weight register {:e} / {:e}): per-layer `stuck_at` weight faults, drawn once per chip.",
                        st.sram_filter.p0, st.sram_filter.p1, st.weight_reg.p0, st.weight_reg.p1
                    ),
                );
            }
            for buffer in [FeatureBuffer::Ifmap, FeatureBuffer::Ofmap] {
                if let Some(m) = f.derivation.stuck_cells.get(buffer) {
                    w(
                        &mut md,
                        format!(
                            " Stuck {} cells ({} words, per bit stuck at 0 / 1: {:e} / {:e}): `[stuck_cells.{}]`, drawn once per chip.",
                            buffer.key(),
                            m.words,
                            m.p0,
                            m.p1,
                            buffer.key()
                        ),
                    );
                }
            }
            if let Some(m) = &f.derivation.stuck_macs {
                w(
                    &mut md,
                    format!(
                        " Stuck {} register bits of the {} (per bit stuck at 0 / 1: {}): `[stuck_macs]`, drawn once per chip; each acts on the outputs its unit computes or its operands reach.",
                        if matches!(m.grid, crate::fault::MacGrid::BitSerial { .. }) {
                            "SIP"
                        } else {
                            "PE"
                        },
                        m.grid_text(),
                        m.densities_text()
                    ),
                );
            }
            if !f.left_out.is_empty() {
                w(
                    &mut md,
                    format!(
                        " Not in the derived model (present in the hardware-level run): {}.",
                        f.left_out.join(", ")
                    ),
                );
            }
            w(
                &mut md,
                format!(
                    "\nAt the spec: derived model {}% ({} images); hardware-level {}% vs derived {}% on {} images — {}.\n",
                    mean_ci(&f.derived),
                    s.images,
                    mean_ci(&f.hardware),
                    mean_ci(&f.derived_cross),
                    s.hw_images,
                    if f.agrees() { "agree" } else { "differ" }
                ),
            );
            if !f.sweep.is_empty() {
                let n = f.sweep.iter().filter(|p| p.agrees()).count();
                w(
                    &mut md,
                    format!(
                        "Sweep of the raw rate (the spec's transient site mix scaled): the derived model agrees with hardware-level injection at {n} of {} rates.\n",
                        f.sweep.len()
                    ),
                );
            }
        }
        for n in &s.notes {
            w(&mut md, format!("- {n}"));
        }
        w(&mut md, String::new());
    }
    if !sweep_csv.is_empty() {
        w(&mut md, "## Sweep\n".into());
        w(&mut md, format!("```\n{sweep}```\n"));
        w(&mut md, "![accuracy vs raw rate](accuracy.svg)".into());
    }
    let _ = writeln!(md);
    Ok(Report {
        summary,
        summary_csv,
        sweep,
        sweep_csv,
        plot,
        markdown: md,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::layer::Magnitudes;

    fn layer(inputs: &[i32], weights: &[i32]) -> GemmLayer {
        GemmLayer {
            name: "l".into(),
            e: 1,
            k: 1,
            m: 1,
            groups: 1,
            taps: 1,
            shift: 0,
            out_bits: 8,
            weights: Magnitudes::from_codes(weights.iter().copied()),
            inputs: Magnitudes::from_codes(inputs.iter().copied()),
            negative_weights: Magnitudes::from_codes(weights.iter().copied().filter(|&c| c < 0)),
            negative_inputs: Magnitudes::from_codes(inputs.iter().copied().filter(|&c| c < 0)),
            input_rows: Default::default(),
            weight_rows: Default::default(),
            filters: Vec::new(),
            psum_signs: None,
            step_profile: None,
        }
    }

    #[test]
    fn precisions_are_sign_plus_bit_length_capped_by_the_datapath() {
        let dp = Datapath {
            act_bits: 8,
            weight_bits: 6,
            ..Datapath::default()
        };
        let layers = [
            // 5 needs 3 bits + sign; -1 needs 1 bit + sign.
            layer(&[0, 5, 3], &[-1, 1, 0]),
            // 127 needs 7 + 1 = 8; -100 would need 8 but weights cap at 6.
            layer(&[127], &[-100]),
            // All zero: still at least 2 bits (sign + one).
            layer(&[0], &[0]),
        ];
        assert_eq!(mac_precisions(&layers, &dp), vec![(4, 2), (8, 6), (2, 2)]);
    }

    #[test]
    fn work_counts_every_image_run() {
        let cfg = StudyConfig {
            rates: vec![1e-9, 1e-8],
            chips: 3,
            seed: 0,
        };
        // clean 100 + derived 3*100 + (hw + derived) 2*3*10 + sweep 2*2*3*10
        assert_eq!(work(&cfg, 100, 10, true), 100 + 300 + 60 + 120);
        assert_eq!(work(&cfg, 100, 10, false), 100);
    }
}
