//! `ftnas sim`: time a model on an accelerator description (per-layer table
//! and totals, optional CSV/JSON), or run a SCALE-Sim job (cfg + topology ->
//! SCALE-Sim's three report files).

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::accel::network::{array_config, time_topology, NetworkTiming};
use crate::accel::output::{csv, json, table};
use crate::accel::precisions::load_precisions;
use crate::accel::scalesim::load_topology;
use crate::accel::scalesim_report::{run_job, write_reports};
use crate::accel::{time_graph, Accelerator};
use crate::model::{load_model, Shape};
use crate::report::write_atomic;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Accelerator description (accelerators/*.toml).
    #[arg(long)]
    pub accel: Option<PathBuf>,
    /// Model file (models/*.toml) to time on --accel.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Input shape CxHxW of the model (e.g. 1x28x28, 3x32x32).
    #[arg(long, default_value = "1x28x28")]
    pub input: String,
    /// Per-layer precisions for bit-serial designs: CSV rows
    /// `layer,act_bits,weight_bits` for every conv/linear layer of --model.
    #[arg(long)]
    pub precisions: Option<PathBuf>,
    /// SCALE-Sim configuration file (.cfg): run a SCALE-Sim job.
    #[arg(long = "scalesim-cfg")]
    pub scalesim_cfg: Option<PathBuf>,
    /// SCALE-Sim topology CSV (conv or GEMM mode); with --scalesim-cfg, or
    /// with --accel to time a topology on an ftnas description.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Output directory of a SCALE-Sim job (reports go to OUTDIR/<run_name>/).
    #[arg(long)]
    pub outdir: Option<PathBuf>,
    /// Write timing.csv and SCALE-Sim-format reports into this directory.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the whole timing as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Parse `CxHxW`.
pub fn parse_shape(s: &str) -> anyhow::Result<Shape> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    let dims: Vec<usize> = parts
        .iter()
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|d: &Vec<usize>| d.len() == 3 && d.iter().all(|&x| x > 0))
        .with_context(|| {
            format!("--input `{s}`: expected CxHxW with positive integers, e.g. 1x28x28")
        })?;
    Ok(Shape::new(dims[0], dims[1], dims[2]))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (timing, array) = if let Some(cfg) = &args.scalesim_cfg {
        if args.accel.is_some() || args.model.is_some() {
            bail!("--scalesim-cfg runs a SCALE-Sim job; do not combine it with --accel/--model");
        }
        let topo = args
            .topology
            .as_ref()
            .context("--scalesim-cfg needs --topology T.csv")?;
        let outdir = args
            .outdir
            .as_ref()
            .context("--scalesim-cfg needs --outdir D")?;
        let (t, array, dir) = run_job(cfg, topo, outdir)?;
        println!("{}", table(&t));
        println!("SCALE-Sim reports written to {}", dir.display());
        (t, Some(array))
    } else {
        let accel_path = args
            .accel
            .as_ref()
            .context("give --accel X.toml with --model M.toml (or --topology T.csv), or --scalesim-cfg C.cfg --topology T.csv --outdir D")?;
        let acc = Accelerator::load(accel_path)?;
        let t: NetworkTiming = match (&args.model, &args.topology) {
            (Some(model), None) => {
                let shape = parse_shape(&args.input)?;
                let graph = load_model(model, shape)?;
                let precisions = match &args.precisions {
                    Some(p) => Some(load_precisions(p, &graph)?),
                    None => None,
                };
                time_graph(&acc, &graph, precisions.as_deref())
                    .with_context(|| format!("timing {} on {}", model.display(), acc.name))?
            }
            (None, Some(topo)) => {
                if args.precisions.is_some() {
                    bail!(
                        "--precisions applies to --model (bit-serial designs), not to topologies"
                    );
                }
                let arr = array_config(&acc).with_context(|| {
                    format!(
                        "{}: SCALE-Sim topologies need a systolic accelerator",
                        accel_path.display()
                    )
                })?;
                let layers = load_topology(topo)?;
                let name = topo
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                time_topology(&arr, acc.clock_mhz, &acc.name, &name, &layers)?
            }
            (Some(_), Some(_)) => bail!("give either --model or --topology, not both"),
            (None, None) => bail!("--accel needs --model M.toml or --topology T.csv"),
        };
        println!("{}", table(&t));
        (t, array_config(&acc))
    };
    if let Some(dir) = &args.csv {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let path = dir.join("timing.csv");
        write_atomic(&path, csv(&timing).as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        write_reports(&timing, array.as_ref(), dir)?;
        println!("CSV written to {}", dir.display());
    }
    if let Some(path) = &args.json {
        write_atomic(path, json(&timing).as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}
