//! TOML model files (`models/*.toml`): a network named by family and
//! parameters, or a cell genotype. The input shape is not part of the file;
//! [`load_model`] builds the graph for the data's shape.
//!
//! ```toml
//! family = "resnet"        # or "mobilenetv2", "vgg", "cells"
//! depth = 20               # resnet: 6n+2
//! num_classes = 10         # optional, every family, default 10
//! ```
//! `mobilenetv2`: `width` (default 1.0). `vgg`: `channels`, a list of
//! stages, each a list of 3x3 conv channel counts followed by a 2x2 max
//! pool. `cells`: `init_channels`, `layers`, `stem_multiplier` (default 3),
//! `normal` and `reduce`, lists of `[op, from, to]` edges.
//!
//! Unknown keys are errors (a misspelt key must not silently fall back to a
//! default). Every error names the file, and the line and key when the
//! problem is in one place of the file.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::genotype::{cell_network, check_cell, CellNetConfig, CellOp, Edge, Genotype};
use super::mobilenetv2::mobilenetv2;
use super::resnet::{blocks_per_stage, resnet};
use super::vgg::vgg;
use super::{Graph, ModelError, Shape};

/// The network families a model file can name.
pub const FAMILIES: [&str; 4] = ["resnet", "mobilenetv2", "vgg", "cells"];

/// Default number of classes (CIFAR-10, MNIST, Fashion-MNIST).
pub const DEFAULT_NUM_CLASSES: usize = 10;

/// What a model file describes, independent of the input shape.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    Resnet {
        depth: usize,
        num_classes: usize,
    },
    MobileNetV2 {
        width: f64,
        num_classes: usize,
    },
    Vgg {
        channels: Vec<Vec<usize>>,
        num_classes: usize,
    },
    Cells(CellNetConfig),
}

impl ModelSpec {
    /// Build the graph for inputs of `input`.
    pub fn build(&self, input: Shape) -> Result<Graph, ModelError> {
        match self {
            ModelSpec::Resnet { depth, num_classes } => resnet(*depth, *num_classes, input),
            ModelSpec::MobileNetV2 { width, num_classes } => {
                mobilenetv2(*width, *num_classes, input)
            }
            ModelSpec::Vgg {
                channels,
                num_classes,
            } => vgg(channels, *num_classes, input),
            ModelSpec::Cells(cfg) => cell_network(cfg, input),
        }
    }

    /// The model file text for this spec (what [`parse_model`] reads back).
    /// The NAS writes its final genotype with this.
    pub fn to_toml(&self) -> String {
        let classes = |n: usize| format!("num_classes = {n}\n");
        match self {
            ModelSpec::Resnet { depth, num_classes } => format!(
                "family = \"resnet\"\ndepth = {depth}\n{}",
                classes(*num_classes)
            ),
            ModelSpec::MobileNetV2 { width, num_classes } => format!(
                "family = \"mobilenetv2\"\nwidth = {width:?}\n{}",
                classes(*num_classes)
            ),
            ModelSpec::Vgg {
                channels,
                num_classes,
            } => format!(
                "family = \"vgg\"\nchannels = {channels:?}\n{}",
                classes(*num_classes)
            ),
            ModelSpec::Cells(cfg) => {
                let edges = |es: &[Edge]| {
                    es.iter()
                        .map(|e| format!("  [\"{}\", {}, {}],\n", e.op, e.from, e.to))
                        .collect::<String>()
                };
                format!(
                    "family = \"cells\"\ninit_channels = {}\nlayers = {}\nstem_multiplier = {}\n{}\
                     # [op, from, to]; nodes 0 and 1 are the cell inputs\nnormal = [\n{}]\nreduce = [\n{}]\n",
                    cfg.init_channels,
                    cfg.layers,
                    cfg.stem_multiplier,
                    classes(cfg.num_classes),
                    edges(&cfg.genotype.normal),
                    edges(&cfg.genotype.reduce),
                )
            }
        }
    }
}

/// Read a model file and build its graph for inputs of `input` shape
/// (1x28x28 or 3x32x32, taken from the dataset). The graph is named after
/// the file stem.
pub fn load_model(path: &Path, input: Shape) -> Result<Graph, ModelError> {
    let spec = read_model(path)?;
    let mut graph = spec.build(input).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        msg: format!("cannot build the network for input {input}: {e}"),
    })?;
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        graph.name = stem.to_string();
    }
    Ok(graph)
}

/// Read and check a model file without building it.
pub fn read_model(path: &Path) -> Result<ModelSpec, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        msg: format!("cannot read model file: {e}"),
    })?;
    parse_model(&text).map_err(|msg| ModelError::File {
        path: path.to_path_buf(),
        msg,
    })
}

/// Write a model file atomically (temp file + rename).
pub fn save_model(path: &Path, spec: &ModelSpec) -> Result<(), ModelError> {
    Ok(crate::report::write_atomic(
        path,
        spec.to_toml().as_bytes(),
    )?)
}

/// Parse model file text. The error message says where (line, key) and
/// what was expected; the caller prefixes the file name.
pub fn parse_model(text: &str) -> Result<ModelSpec, String> {
    #[derive(Deserialize)]
    struct FamilyOnly {
        family: Option<Spanned<String>>,
    }
    let head: FamilyOnly = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let Some(family) = head.family else {
        return Err(format!(
            "missing key `family` (expected one of {})",
            quoted(&FAMILIES)
        ));
    };
    match family.get_ref().as_str() {
        "resnet" => {
            let f: ResnetFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
            let num_classes = num_classes(text, f.num_classes)?;
            in_range(text, &f.depth, 1, MAX_RESNET_DEPTH)?;
            blocks_per_stage(*f.depth.get_ref())
                .map_err(|e| format!("{}: {}", at(text, f.depth.span()), graph_msg(e)))?;
            Ok(ModelSpec::Resnet {
                depth: f.depth.into_inner(),
                num_classes,
            })
        }
        "mobilenetv2" => {
            let f: MobileNetV2File = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
            let num_classes = num_classes(text, f.num_classes)?;
            let width = match f.width {
                None => 1.0,
                Some(w) => {
                    let v = *w.get_ref();
                    if !(v.is_finite() && v > 0.0 && v <= 16.0) {
                        return Err(format!(
                            "{}: expected a width multiplier in (0, 16], got {v}",
                            at(text, w.span())
                        ));
                    }
                    v
                }
            };
            Ok(ModelSpec::MobileNetV2 { width, num_classes })
        }
        "vgg" => {
            let f: VggFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
            let num_classes = num_classes(text, f.num_classes)?;
            let span = f.channels.span();
            let channels = f.channels.into_inner();
            let bad_stage = |s: &Vec<usize>| {
                s.is_empty()
                    || s.len() > MAX_VGG_LAYERS
                    || s.iter().any(|&c| c == 0 || c > MAX_CHANNELS)
            };
            if channels.is_empty()
                || channels.len() > MAX_VGG_LAYERS
                || channels.iter().any(bad_stage)
            {
                return Err(format!(
                    "{}: expected a list of 1..={MAX_VGG_LAYERS} stages, each a list of 1..={MAX_VGG_LAYERS} channel counts in 1..={MAX_CHANNELS}, e.g. [[64, 64], [128, 128]]",
                    at(text, span)
                ));
            }
            Ok(ModelSpec::Vgg {
                channels,
                num_classes,
            })
        }
        "cells" => {
            let f: CellsFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
            let num_classes = num_classes(text, f.num_classes)?;
            in_range(text, &f.init_channels, 1, MAX_CHANNELS)?;
            in_range(text, &f.layers, 1, MAX_CELLS)?;
            if let Some(m) = &f.stem_multiplier {
                in_range(text, m, 1, MAX_STEM_MULTIPLIER)?;
            }
            let normal = cell_edges(text, f.normal)?;
            let reduce = cell_edges(text, f.reduce)?;
            Ok(ModelSpec::Cells(CellNetConfig {
                init_channels: f.init_channels.into_inner(),
                layers: f.layers.into_inner(),
                stem_multiplier: f.stem_multiplier.map_or(3, Spanned::into_inner),
                genotype: Genotype { normal, reduce },
                num_classes,
            }))
        }
        other => Err(format!(
            "{}: unknown family \"{other}\", expected one of {}",
            at(text, family.span()),
            quoted(&FAMILIES)
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResnetFile {
    #[allow(dead_code)]
    family: String,
    depth: Spanned<usize>,
    num_classes: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MobileNetV2File {
    #[allow(dead_code)]
    family: String,
    width: Option<Spanned<f64>>,
    num_classes: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VggFile {
    #[allow(dead_code)]
    family: String,
    channels: Spanned<Vec<Vec<usize>>>,
    num_classes: Option<Spanned<usize>>,
}

type EdgeRow = Spanned<(CellOp, usize, usize)>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CellsFile {
    #[allow(dead_code)]
    family: String,
    init_channels: Spanned<usize>,
    layers: Spanned<usize>,
    stem_multiplier: Option<Spanned<usize>>,
    normal: Spanned<Vec<EdgeRow>>,
    reduce: Spanned<Vec<EdgeRow>>,
    num_classes: Option<Spanned<usize>>,
}

// Upper bounds on sizes. They are far above any network these studies use
// and catch typos (an extra zero) that would otherwise build a graph of
// millions of nodes or parameter tensors of many gigabytes.
const MAX_RESNET_DEPTH: usize = 1202;
const MAX_CHANNELS: usize = 8192;
const MAX_CELLS: usize = 64;
const MAX_STEM_MULTIPLIER: usize = 16;
const MAX_VGG_LAYERS: usize = 32;
const MAX_CLASSES: usize = 100_000;

fn num_classes(text: &str, v: Option<Spanned<usize>>) -> Result<usize, String> {
    match v {
        None => Ok(DEFAULT_NUM_CLASSES),
        Some(v) => in_range(text, &v, 1, MAX_CLASSES),
    }
}

/// The value of an integer key if it lies in `lo..=hi`.
fn in_range(text: &str, v: &Spanned<usize>, lo: usize, hi: usize) -> Result<usize, String> {
    let x = *v.get_ref();
    if (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        Err(format!(
            "{}: expected an integer in {lo}..={hi}, got {x}",
            at(text, v.span())
        ))
    }
}

/// Convert and check one cell's edge list, pointing at the bad edge.
fn cell_edges(text: &str, rows: Spanned<Vec<EdgeRow>>) -> Result<Vec<Edge>, String> {
    let list_span = rows.span();
    let rows = rows.into_inner();
    let edges: Vec<Edge> = rows
        .iter()
        .map(|r| {
            let (op, from, to) = *r.get_ref();
            Edge { op, from, to }
        })
        .collect();
    check_cell(&edges).map_err(|e| {
        let span = e.edge.map_or(list_span, |i| rows[i].span());
        format!("{}: {}", at(text, span), e.msg)
    })?;
    Ok(edges)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message of a builder error without its "invalid graph: " prefix.
fn graph_msg(e: ModelError) -> String {
    match e {
        ModelError::Graph(m) => m,
        other => other.to_string(),
    }
}

/// Render a toml error as `line L, key `k`: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    match e.span() {
        // serde reports a missing field at the whole table; a line would
        // mislead.
        Some(span) if !msg.starts_with("missing field") => format!("{}: {msg}", at(text, span)),
        _ => msg.replacen("missing field", "missing key", 1),
    }
}

/// `line L, key `k`` for a byte span of the file. The key is the nearest
/// `key = ` at or above the span's line: model files are flat, so that is
/// the top-level key whose value contains the span.
fn at(text: &str, span: Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_end = text[start..].find('\n').map_or(text.len(), |e| start + e);
    // the current line first, then the lines above it
    let key = text[..line_end].rsplit('\n').find_map(key_of_line);
    match key {
        Some(k) => format!("line {line_no}, key `{k}`"),
        None => format!("line {line_no}"),
    }
}

/// The key of a `key = value` line, or the name of a `[table]` header.
fn key_of_line(line: &str) -> Option<&str> {
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    };
    let line = line.trim();
    if let Some(header) = line.strip_prefix('[') {
        // `[table]` or `[[array-of-tables]]`; an edge row like
        // `["none", 0, 2]` is not a valid name and falls through.
        let name = header.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or("").trim();
        return is_key(name).then_some(name);
    }
    let eq = line.find('=')?;
    let key = line[..eq].trim();
    is_key(key).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_heuristic_finds_enclosing_key() {
        let text = "family = \"cells\"\nnormal = [\n  [\"x\", 0, 2],\n]\n";
        let off = text.find("\"x\"").unwrap();
        assert_eq!(at(text, off..off + 3), "line 3, key `normal`");
        let off = text.find("\"cells\"").unwrap();
        assert_eq!(at(text, off..off + 7), "line 1, key `family`");
        assert_eq!(key_of_line("# comment = 3"), None);
        assert_eq!(key_of_line("[extra]"), Some("extra"));
        assert_eq!(key_of_line("  [\"none\", 0, 2],"), None);
        let text = "family = \"resnet\"\ndepth = 20\n[extra]\nx = 1\n";
        let e = parse_model(text).unwrap_err();
        assert!(e.starts_with("line 3, key `extra`"), "{e}");
    }

    #[test]
    fn spec_round_trips_through_toml() {
        let specs = [
            ModelSpec::Resnet {
                depth: 32,
                num_classes: 100,
            },
            ModelSpec::MobileNetV2 {
                width: 0.5,
                num_classes: 10,
            },
            ModelSpec::Vgg {
                channels: vec![vec![16], vec![32, 32]],
                num_classes: 10,
            },
            ModelSpec::Cells(CellNetConfig {
                init_channels: 20,
                layers: 8,
                stem_multiplier: 3,
                genotype: Genotype::w_ftt_net(),
                num_classes: 10,
            }),
        ];
        for s in specs {
            assert_eq!(parse_model(&s.to_toml()).unwrap(), s);
        }
    }
}
