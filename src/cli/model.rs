//! `ftnas model`: inspect model files.
//!
//! `show` builds a model file for an input shape and prints one row per
//! node (name, op, output shape, MACs, parameters) and the totals;
//! `--json F` also writes them as JSON, `--weights W` checks a safetensors
//! file against the graph. `init` writes random weights (Kaiming-uniform,
//! seeded) for untrained runs and tests. `convert` checks a weights file
//! against the graph and rewrites it in another element type (F16 halves
//! a shipped file; BF16/F64 checkpoints become F32).

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use crate::model::safetensors_io::{
    load_weights_with_extras, save_weights, save_weights_as, WeightDtype,
};
use crate::model::{load_model, Graph, Op, Shape, Weights};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print the layer table (shapes, MACs, parameters) of a model file.
    Show(ShowArgs),
    /// Write random (seeded) weights for a model file.
    Init(InitArgs),
    /// Rewrite a weights file in another element type (only the model's
    /// tensors are kept).
    Convert(ConvertArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Model file (TOML) the weights belong to.
    pub model: PathBuf,
    /// Input weights (safetensors: F32, F16, BF16 or F64 tensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Input shape CxHxW.
    #[arg(long, default_value = "1x28x28", value_parser = parse_shape)]
    pub input: Shape,
    /// Element type to write.
    #[arg(long, value_enum)]
    pub dtype: WeightDtype,
    /// Output safetensors file.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Model file (TOML).
    pub model: PathBuf,
    /// Input shape CxHxW (the data set's: 1x28x28 or 3x32x32).
    #[arg(long, default_value = "1x28x28", value_parser = parse_shape)]
    pub input: Shape,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Check this safetensors weights file against the graph.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Model file (TOML).
    pub model: PathBuf,
    /// Input shape CxHxW.
    #[arg(long, default_value = "1x28x28", value_parser = parse_shape)]
    pub input: Shape,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output safetensors file.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Largest accepted input dimension (keeps MAC and parameter counts far
/// from overflow).
const MAX_INPUT_DIM: usize = 4096;

/// Parse `CxHxW` (e.g. `3x32x32`).
pub fn parse_shape(s: &str) -> Result<Shape, String> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected CxHxW like 3x32x32, got `{s}`"))?;
    match dims[..] {
        [c, h, w] if (1..=MAX_INPUT_DIM).contains(&c.max(h).max(w)) && c.min(h).min(w) > 0 => {
            Ok(Shape::new(c, h, w))
        }
        _ => Err(format!(
            "expected CxHxW with three sizes in 1..={MAX_INPUT_DIM} like 3x32x32, got `{s}`"
        )),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Show(a) => show(a),
        ModelCommand::Init(a) => init(a),
        ModelCommand::Convert(a) => convert(a),
    }
}

fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let graph = load_model(&args.model, args.input)?;
    let (weights, extras) = load_weights_with_extras(&args.weights, &graph)?;
    save_weights_as(&args.output, &weights, args.dtype)?;
    let bytes = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "wrote {} tensors ({} parameters) as {:?} to {} ({:.2} MB){}",
        weights.tensors.len(),
        graph.total_params(),
        args.dtype,
        args.output.display(),
        bytes as f64 / 1e6,
        if extras.is_empty() {
            String::new()
        } else {
            format!(", dropped {} unused tensor(s)", extras.len())
        }
    );
    Ok(())
}

/// One row of the layer table.
#[derive(Debug, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub op: String,
    pub inputs: Vec<String>,
    pub shape: [usize; 3],
    pub macs: u64,
    pub params: u64,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub input: [usize; 3],
    pub layers: Vec<LayerRow>,
    pub total_macs: u64,
    /// All parameter tensors, BN running statistics included.
    pub total_params: u64,
    /// Parameters a trainer updates (BN running statistics excluded): the
    /// count papers quote.
    pub trainable_params: u64,
}

/// Parameters excluding BN `running_mean`/`running_var`.
pub fn trainable_params(graph: &Graph) -> u64 {
    graph
        .all_params()
        .iter()
        .filter(|(n, _)| !n.ends_with(".running_mean") && !n.ends_with(".running_var"))
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum()
}

/// The layer table of a graph.
pub fn summarize(graph: &Graph) -> ModelSummary {
    let dims = |s: Shape| [s.c, s.h, s.w];
    let layers = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| LayerRow {
            name: n.name.clone(),
            op: describe(&n.op),
            inputs: n
                .inputs
                .iter()
                .map(|&j| graph.nodes[j].name.clone())
                .collect(),
            shape: dims(n.shape),
            macs: graph.macs(i),
            params: graph
                .params_of(i)
                .iter()
                .map(|(_, s)| s.iter().product::<usize>() as u64)
                .sum(),
        })
        .collect();
    ModelSummary {
        model: graph.name.clone(),
        input: dims(graph.input_shape()),
        layers,
        total_macs: graph.total_macs(),
        total_params: graph.total_params(),
        trainable_params: trainable_params(graph),
    }
}

/// Op kind with its geometry, e.g. `conv 3x3/2`, `dwconv 3x3 d2`.
fn describe(op: &Op) -> String {
    let geometry = |k: (usize, usize), s: (usize, usize)| {
        let mut t = format!("{}x{}", k.0, k.1);
        if s != (1, 1) {
            t += &format!("/{}", s.0);
        }
        t
    };
    match op {
        Op::Conv2d {
            kernel,
            stride,
            dilation,
            groups,
            out_channels,
            ..
        } => {
            let mut t = format!("{} {}", op.kind(), geometry(*kernel, *stride));
            if *dilation != (1, 1) {
                t += &format!(" d{}", dilation.0);
            }
            if *groups > 1 && groups != out_channels {
                t += &format!(" g{groups}");
            }
            t
        }
        Op::MaxPool { kernel, stride, .. } | Op::AvgPool { kernel, stride, .. } => {
            format!("{} {}", op.kind(), geometry(*kernel, *stride))
        }
        Op::Zero { stride } if *stride > 1 => format!("zero /{stride}"),
        _ => op.kind().to_string(),
    }
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let graph = load_model(&args.model, args.input)?;
    let summary = summarize(&graph);
    print!("{}", render_table(&summary));
    if let Some(path) = &args.weights {
        let (weights, extras) = load_weights_with_extras(path, &graph)?;
        println!(
            "weights {}: all {} tensors present with the right shapes",
            path.display(),
            weights.tensors.len()
        );
        if !extras.is_empty() {
            eprintln!(
                "warning: {}: {} tensor(s) not used by the model: {}",
                path.display(),
                extras.len(),
                extras.join(", ")
            );
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary)?;
        crate::report::write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let graph = load_model(&args.model, args.input)?;
    let weights = Weights::random(&graph, args.seed);
    save_weights(&args.output, &weights)?;
    println!(
        "wrote {} tensors ({} parameters) to {}",
        weights.tensors.len(),
        graph.total_params(),
        args.output.display()
    );
    Ok(())
}

/// The text table printed by `show`.
pub fn render_table(s: &ModelSummary) -> String {
    let name_w = s
        .layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let op_w = s
        .layers
        .iter()
        .map(|l| l.op.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let mut out = format!(
        "model {} (input {}x{}x{})\n",
        s.model, s.input[0], s.input[1], s.input[2]
    );
    out += &format!(
        "{:<name_w$}  {:<op_w$}  {:>12}  {:>14}  {:>10}\n",
        "node", "op", "output", "MACs", "params"
    );
    for l in &s.layers {
        let shape = format!("{}x{}x{}", l.shape[0], l.shape[1], l.shape[2]);
        out += &format!(
            "{:<name_w$}  {:<op_w$}  {:>12}  {:>14}  {:>10}\n",
            l.name, l.op, shape, l.macs, l.params
        );
    }
    out += &format!(
        "total: {} MACs ({:.2} M), {} parameters ({:.3} M; {} trainable, without BN running statistics)\n",
        s.total_macs,
        s.total_macs as f64 / 1e6,
        s.total_params,
        s.total_params as f64 / 1e6,
        s.trainable_params
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("1x28x28"), Ok(Shape::new(1, 28, 28)));
        for bad in [
            "",
            "3x32",
            "3x32x32x1",
            "0x4x4",
            "ax4x4",
            "3*32*32",
            "3x5000x5000",
        ] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
    }
}
