//! SCALE-Sim v2 inputs: the `.cfg` file (INI) and topology CSVs in conv and
//! GEMM mode, parsed into an [`ArrayConfig`] and [`ScaleSimLayer`]s so that
//! existing SCALE-Sim jobs run unchanged (see [`super::scalesim_report`] for
//! the outputs).
//!
//! Like Python's configparser (which SCALE-Sim uses), keys are
//! case-insensitive and `:` or `=` separate key and value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::memory::Interface;
use super::timing::ArrayConfig;
use super::{Dataflow, ScaleSimLayer};

/// Errors reading SCALE-Sim inputs; each names the file and line or key.
#[derive(Debug, thiserror::Error)]
pub enum ScaleSimError {
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
    #[error("{path}: [{section}] {key}: {msg}")]
    Key {
        path: PathBuf,
        section: String,
        key: String,
        msg: String,
    },
}

/// A SCALE-Sim run configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSimConfig {
    pub run_name: String,
    pub rows: usize,
    pub cols: usize,
    pub ifmap_sram_kb: usize,
    pub filter_sram_kb: usize,
    pub ofmap_sram_kb: usize,
    pub dataflow: Dataflow,
    /// `Bandwidth` (first value if a list); used in USER mode only.
    pub bandwidth: Option<usize>,
    pub memory_banks: usize,
    pub interface: Interface,
}

impl ScaleSimConfig {
    /// The array the timing model runs (1-byte words, as SCALE-Sim).
    pub fn array(&self) -> ArrayConfig {
        ArrayConfig {
            rows: self.rows,
            cols: self.cols,
            dataflow: self.dataflow,
            ifmap_sram_words: self.ifmap_sram_kb * 1024,
            filter_sram_words: self.filter_sram_kb * 1024,
            ofmap_sram_words: self.ofmap_sram_kb * 1024,
            interface: self.interface,
        }
    }

    /// Read a `.cfg` file.
    pub fn load(path: &Path) -> Result<ScaleSimConfig, ScaleSimError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScaleSimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ScaleSimConfig::parse(&text, path)
    }

    /// Parse `.cfg` text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<ScaleSimConfig, ScaleSimError> {
        let ini = parse_ini(text, path)?;
        let key_err = |section: &str, key: &str, msg: String| ScaleSimError::Key {
            path: path.to_path_buf(),
            section: section.into(),
            key: key.into(),
            msg,
        };
        let get = |section: &str, key: &str| -> Option<&str> {
            ini.get(section)
                .and_then(|s| s.get(&key.to_ascii_lowercase()))
                .map(|v| v.as_str())
        };
        let arch = "architecture_presets";
        let num = |key: &str, min: usize| -> Result<usize, ScaleSimError> {
            let v = get(arch, key)
                .ok_or_else(|| key_err(arch, key, "missing (an integer is expected)".into()))?;
            let n: usize = v.trim().parse().map_err(|_| {
                key_err(
                    arch,
                    key,
                    format!("expected a non-negative integer, found `{v}`"),
                )
            })?;
            if n < min || n > 1 << 24 {
                return Err(key_err(
                    arch,
                    key,
                    format!("must be in {min}..=16777216, found {n}"),
                ));
            }
            Ok(n)
        };
        let dataflow = match get(arch, "Dataflow").map(|s| s.trim().to_ascii_lowercase()) {
            Some(d) if d == "os" => Dataflow::Os,
            Some(d) if d == "ws" => Dataflow::Ws,
            Some(d) if d == "is" => Dataflow::Is,
            Some(d) => {
                return Err(key_err(
                    arch,
                    "Dataflow",
                    format!("expected os, ws or is, found `{d}`"),
                ))
            }
            None => return Err(key_err(arch, "Dataflow", "missing (os, ws or is)".into())),
        };
        let bandwidth = match get(arch, "Bandwidth") {
            None => None,
            Some(v) => {
                let first = v.split(',').next().unwrap_or("").trim();
                let n: usize = first.parse().map_err(|_| {
                    key_err(
                        arch,
                        "Bandwidth",
                        format!("expected words per cycle, found `{v}`"),
                    )
                })?;
                Some(n)
            }
        };
        let mode = get("run_presets", "InterfaceBandwidth")
            .map(|s| s.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "CALC".into());
        let interface = match mode.as_str() {
            "CALC" => Interface::Calc,
            "USER" => match bandwidth {
                Some(w) if w > 0 => Interface::User { words_per_cycle: w },
                _ => {
                    return Err(key_err(
                        arch,
                        "Bandwidth",
                        "InterfaceBandwidth = USER needs a Bandwidth >= 1".into(),
                    ))
                }
            },
            other => {
                return Err(key_err(
                    "run_presets",
                    "InterfaceBandwidth",
                    format!("expected CALC or USER, found `{other}`"),
                ))
            }
        };
        let memory_banks = match get(arch, "MemoryBanks") {
            Some(_) => num("MemoryBanks", 1)?,
            None => 1,
        };
        Ok(ScaleSimConfig {
            run_name: get("general", "run_name")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "scalesim_run".into()),
            rows: num("ArrayHeight", 1)?,
            cols: num("ArrayWidth", 1)?,
            ifmap_sram_kb: num("IfmapSramSzkB", 1)?,
            filter_sram_kb: num("FilterSramSzkB", 1)?,
            ofmap_sram_kb: num("OfmapSramSzkB", 1)?,
            dataflow,
            bandwidth,
            memory_banks,
            interface,
        })
    }
}

type Ini = BTreeMap<String, BTreeMap<String, String>>;

fn parse_ini(text: &str, path: &Path) -> Result<Ini, ScaleSimError> {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |msg: String| ScaleSimError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| err(format!("unterminated section header `{line}`")))?;
            let name = name.trim().to_string();
            ini.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        let sep = line.find([':', '=']).ok_or_else(|| {
            err(format!(
                "expected `key: value` or `key = value`, found `{line}`"
            ))
        })?;
        let sec = section
            .as_ref()
            .ok_or_else(|| err("key outside of any [section]".into()))?;
        let key = line[..sep].trim().to_ascii_lowercase();
        let value = line[sep + 1..].trim().to_string();
        ini.entry(sec.clone()).or_default().insert(key, value);
    }
    Ok(ini)
}

/// Read a topology CSV (conv or GEMM mode, detected from the header).
pub fn load_topology(path: &Path) -> Result<Vec<ScaleSimLayer>, ScaleSimError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScaleSimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_topology(&text, path)
}

/// Parse topology CSV text. Conv mode: `Layer name, IFMAP Height, IFMAP
/// Width, Filter Height, Filter Width, Channels, Num Filter, Strides,`.
/// GEMM mode (header `Layer Name, M, N, K,`): an `M x K` by `K x N` product,
/// run as a conv with an `M x K` ifmap, a `1 x K` filter, one channel and `N`
/// filters. Trailing commas and blank lines are accepted.
pub fn parse_topology(text: &str, path: &Path) -> Result<Vec<ScaleSimLayer>, ScaleSimError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let fields = |l: &str| -> Vec<String> {
        let mut v: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
        while v.last().is_some_and(|f| f.is_empty()) {
            v.pop();
        }
        v
    };
    let Some((_, header)) = lines.next() else {
        return Err(ScaleSimError::Line {
            path: path.to_path_buf(),
            line: 1,
            msg: "empty topology (a header line is expected)".into(),
        });
    };
    let head = fields(header);
    let gemm = head.len() >= 4
        && head[1].eq_ignore_ascii_case("M")
        && head[2].eq_ignore_ascii_case("N")
        && head[3].eq_ignore_ascii_case("K");
    let want = if gemm { 4 } else { 8 };
    let mut layers = Vec::new();
    for (i, line) in lines {
        let err = |msg: String| ScaleSimError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let f = fields(line);
        if f.len() < want {
            return Err(err(format!(
                "expected {want} fields ({}), found {}",
                if gemm {
                    "name, M, N, K"
                } else {
                    "name, IFMAP H, IFMAP W, filter H, filter W, channels, filters, stride"
                },
                f.len()
            )));
        }
        let mut n = Vec::with_capacity(want - 1);
        for (j, v) in f[1..want].iter().enumerate() {
            let x: usize = v.parse().map_err(|_| {
                err(format!(
                    "field {} (`{}`): expected a positive integer",
                    j + 2,
                    v
                ))
            })?;
            if x == 0 {
                return Err(err(format!("field {}: must be >= 1", j + 2)));
            }
            n.push(x);
        }
        let layer = if gemm {
            let (m, nn, k) = (n[0], n[1], n[2]);
            ScaleSimLayer {
                name: f[0].clone(),
                ifmap_h: m,
                ifmap_w: k,
                filter_h: 1,
                filter_w: k,
                channels: 1,
                num_filters: nn,
                stride: 1,
            }
        } else {
            ScaleSimLayer {
                name: f[0].clone(),
                ifmap_h: n[0],
                ifmap_w: n[1],
                filter_h: n[2],
                filter_w: n[3],
                channels: n[4],
                num_filters: n[5],
                stride: n[6],
            }
        };
        if layer.filter_h > layer.ifmap_h || layer.filter_w > layer.ifmap_w {
            return Err(err(format!(
                "filter {}x{} is larger than the ifmap {}x{} (SCALE-Sim does not pad)",
                layer.filter_h, layer.filter_w, layer.ifmap_h, layer.ifmap_w
            )));
        }
        layers.push(layer);
    }
    if layers.is_empty() {
        return Err(ScaleSimError::Line {
            path: path.to_path_buf(),
            line: 1,
            msg: "no layers after the header".into(),
        });
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_and_topologies_parse() {
        let cfg = "[general]\nrun_name = r\n\n[architecture_presets]\nArrayHeight:    8\nArrayWidth:     16\nIfmapSramSzkB:    64\nFilterSramSzkB:   64\nOfmapSramSzkB:    32\nIfmapOffset:    0\nBandwidth : 10\nDataflow : ws\nMemoryBanks:   1\n\n[run_presets]\nInterfaceBandwidth: USER\n";
        let c = ScaleSimConfig::parse(cfg, Path::new("x.cfg")).unwrap();
        assert_eq!((c.rows, c.cols, c.dataflow), (8, 16, Dataflow::Ws));
        assert_eq!(
            c.interface,
            Interface::User {
                words_per_cycle: 10
            }
        );
        assert_eq!(c.array().ofmap_sram_words, 32 * 1024);

        let conv = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\nConv1, 224, 224, 7, 7, 3, 64, 2,\n";
        let l = parse_topology(conv, Path::new("t.csv")).unwrap();
        assert_eq!(l[0].ifmap_h, 224);
        assert_eq!(l[0].stride, 2);
        let gemm = "Layer Name, M, N, K,\ng1, 128, 64, 256,\n";
        let l = parse_topology(gemm, Path::new("g.csv")).unwrap();
        assert_eq!(
            (l[0].ifmap_h, l[0].ifmap_w, l[0].filter_w, l[0].num_filters),
            (128, 256, 256, 64)
        );
    }

    #[test]
    fn bad_inputs_name_file_and_line() {
        let e = parse_topology("h,a,b,c,d,e,f,g,\nc1, 8, 8, 3,\n", Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.csv:2") && e.contains("expected 8 fields"),
            "{e}"
        );
        let e = ScaleSimConfig::parse(
            "[architecture_presets]\nDataflow: os\nArrayHeight: 8\nArrayWidth: x\n",
            Path::new("c.cfg"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.cfg") && e.contains("ArrayWidth"), "{e}");
    }
}
