//! Per-layer precisions for bit-serial timing, read from a small CSV
//! (`layer,act_bits,weight_bits`, one row per conv/linear layer of the
//! model, matched by node name), e.g. the precisions a quantized model
//! actually needs.

use std::path::{Path, PathBuf};

use crate::model::Graph;

/// Errors reading a precision file; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Missing { path: PathBuf, msg: String },
}

/// Read `path` and return one `(act_bits, weight_bits)` per MAC layer of
/// `graph`, in node order.
pub fn load_precisions(path: &Path, graph: &Graph) -> Result<Vec<(u8, u8)>, PrecisionError> {
    let text = std::fs::read_to_string(path).map_err(|source| PrecisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_precisions(&text, path, graph)
}

/// Parse precision CSV text (a `layer,act_bits,weight_bits` header line is
/// optional; blank lines and `#` comments are skipped).
pub fn parse_precisions(
    text: &str,
    path: &Path,
    graph: &Graph,
) -> Result<Vec<(u8, u8)>, PrecisionError> {
    let mac = graph.mac_layers();
    let mut found: Vec<Option<(u8, u8)>> = vec![None; mac.len()];
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: String| PrecisionError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let f: Vec<&str> = line.split(',').map(|s| s.trim()).collect();
        if f.len() != 3 {
            return Err(err(format!(
                "expected `layer,act_bits,weight_bits`, found {} field(s)",
                f.len()
            )));
        }
        if f[1] == "act_bits" {
            continue; // header
        }
        let bits = |s: &str, what: &str| -> Result<u8, PrecisionError> {
            s.parse::<u8>()
                .ok()
                .filter(|b| (1..=16).contains(b))
                .ok_or_else(|| err(format!("{what} `{s}`: expected an integer in 1..=16")))
        };
        let (a, w) = (bits(f[1], "act_bits")?, bits(f[2], "weight_bits")?);
        let slot = mac
            .iter()
            .position(|&id| graph.nodes[id].name == f[0])
            .ok_or_else(|| {
                err(format!(
                    "`{}` is not a conv/linear layer of model `{}`",
                    f[0], graph.name
                ))
            })?;
        if found[slot].replace((a, w)).is_some() {
            return Err(err(format!("layer `{}` listed twice", f[0])));
        }
    }
    found
        .iter()
        .zip(&mac)
        .map(|(p, &id)| {
            p.ok_or_else(|| PrecisionError::Missing {
                path: path.to_path_buf(),
                msg: format!("no precision for layer `{}`", graph.nodes[id].name),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GraphBuilder, Op, Shape};

    fn g() -> Graph {
        let mut b = GraphBuilder::new("m", Shape::new(1, 8, 8));
        let c = b
            .add(
                "c1",
                Op::Conv2d {
                    out_channels: 4,
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: (1, 1),
                    dilation: (1, 1),
                    groups: 1,
                    bias: false,
                },
                &[0],
            )
            .unwrap();
        let f = b.add("flat", Op::Flatten, &[c]).unwrap();
        b.add(
            "fc",
            Op::Linear {
                out_features: 10,
                bias: true,
            },
            &[f],
        )
        .unwrap();
        b.finish()
    }

    #[test]
    fn parses_by_name_in_node_order() {
        let p = parse_precisions(
            "layer,act_bits,weight_bits\nfc, 6, 4\nc1,8,8\n",
            Path::new("p.csv"),
            &g(),
        )
        .unwrap();
        assert_eq!(p, vec![(8, 8), (6, 4)]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_precisions("c1,8,8\nfc,0,4\n", Path::new("p.csv"), &g())
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.csv:2") && e.contains("act_bits"), "{e}");
        let e = parse_precisions("c1,8,8\n", Path::new("p.csv"), &g())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no precision for layer `fc`"), "{e}");
        let e = parse_precisions("c9,8,8\n", Path::new("p.csv"), &g())
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.csv:1") && e.contains("c9"), "{e}");
    }
}
