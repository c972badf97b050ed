//! Accelerator description files (`accelerators/*.toml`): the serde types,
//! loading, validation with messages that name the file, the key and the
//! rule, and the figures derived from a valid description (peak MAC/s, SRAM
//! sizes in words).
//!
//! A description is either a systolic array (SCALE-Sim's model) or a
//! bit-serial design organised as DNNsim does (tiles x windows x filters x
//! lanes). The `[datapath]` table is the `crate::fixed::Datapath` the engine
//! quantizes with, so what is timed is what is computed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::memory::Interface;
use super::Dataflow;
use crate::fixed::Datapath;

/// Why a description was rejected. Every message names the file, the key
/// and the rule that was broken.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Malformed TOML, a missing key, an unknown key or a value of the wrong type.
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    /// A well-formed value that breaks a rule.
    #[error("{path}: key `{key}`: {rule}")]
    Invalid {
        path: PathBuf,
        key: String,
        rule: String,
    },
}

/// Which kind of datapath the accelerator has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Systolic,
    BitSerial,
}

/// `[systolic]`: a rows x cols array of MAC units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Systolic {
    pub rows: usize,
    pub cols: usize,
    pub dataflow: Dataflow,
}

/// Which operands a bit-serial design processes one bit group at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serial {
    /// Stripes: activations bit-serial, weights bit-parallel.
    Activations,
    /// Loom: activations and weights both bit-serial.
    Both,
}

/// Where the activation precision of a bit-serial design comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// One precision per layer (from the quantized model or the datapath).
    PerLayer,
    /// Detected per group of concurrently processed activations at run time
    /// (dynamic precision reduction).
    PerGroup,
}

/// `[bitserial]`: a DNNsim-style organisation. Per cycle and tile, the
/// bit-parallel baseline multiplies `windows` windows by `filters` filters
/// over `lanes` input channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitSerial {
    pub tiles: usize,
    pub windows: usize,
    pub filters: usize,
    pub lanes: usize,
    pub serial: Serial,
    /// Bits of the serial operand(s) processed per cycle.
    pub bits_per_cycle: u8,
    pub precision: Precision,
    /// Activations sharing one detected precision (per-group mode only).
    #[serde(default)]
    pub group_size: Option<usize>,
}

/// `[buffers]`: the on-chip SRAMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buffers {
    pub ifmap_kib: usize,
    pub filter_kib: usize,
    pub ofmap_kib: usize,
    /// Bytes per SRAM word.
    pub word_bytes: usize,
    #[serde(default = "one")]
    pub banks: usize,
    #[serde(default = "yes")]
    pub double_buffered: bool,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// How the DRAM interface bandwidth is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BandwidthMode {
    /// Computed so that the array never waits (SCALE-Sim CALC).
    Calc,
    /// A fixed number of words per cycle per operand (SCALE-Sim USER).
    User,
}

/// `[dram]`: the off-chip interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dram {
    pub bandwidth: BandwidthMode,
    /// Words per cycle per operand; required for `user`, forbidden for `calc`.
    #[serde(default)]
    pub words_per_cycle: Option<usize>,
}

/// A whole accelerator description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accelerator {
    pub name: String,
    pub clock_mhz: f64,
    pub kind: Kind,
    #[serde(default)]
    pub systolic: Option<Systolic>,
    #[serde(default)]
    pub bitserial: Option<BitSerial>,
    pub datapath: Datapath,
    pub buffers: Buffers,
    pub dram: Dram,
}

/// ` (key `table.key`)` for the `key = value` on 1-based `line` of `text`,
/// or ` (table [t])` for a table header; empty when neither.
fn key_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(this) = lines.get(line - 1).map(|l| l.trim()) else {
        return String::new();
    };
    if this.starts_with('[') {
        return format!(" (table {this})");
    }
    let Some((key, _)) = this.split_once('=') else {
        return String::new();
    };
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| format!("{}.", l.trim_matches(|c| c == '[' || c == ']').trim()))
        .unwrap_or_default();
    format!(" (key `{table}{}`)", key.trim())
}

/// Largest array side / organisation dimension accepted (beyond this the
/// value is almost certainly a typo).
pub const MAX_DIM: usize = 4096;
/// Largest SRAM accepted, in KiB (1 GiB).
pub const MAX_SRAM_KIB: usize = 1 << 20;
/// Accepted clock range in MHz.
pub const CLOCK_RANGE_MHZ: (f64, f64) = (1e-3, 1e5);

/// Figures derived from a valid description.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    /// MAC units (systolic PEs, or bit-parallel-equivalent MACs per cycle of
    /// the bit-serial baseline).
    pub mac_units: usize,
    /// Peak MAC/s at the clock (bit-serial: at full datapath precision).
    pub peak_macs_per_s: f64,
    pub ifmap_sram_words: usize,
    pub filter_sram_words: usize,
    pub ofmap_sram_words: usize,
    /// DRAM words per cycle per operand; `None` when computed (calc).
    pub dram_words_per_cycle: Option<usize>,
}

impl Accelerator {
    /// Read, parse and validate a description file.
    pub fn load(path: &Path) -> Result<Accelerator, DescriptionError> {
        let text = std::fs::read_to_string(path).map_err(|source| DescriptionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Accelerator::parse(&text, path)
    }

    /// Parse and validate description text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Accelerator, DescriptionError> {
        let acc: Accelerator = toml::from_str(text).map_err(|e| {
            // "line L, column C: message" (toml's own rendering spans lines).
            let at = e
                .span()
                .map(|sp| {
                    let before = &text[..sp.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {col}{}: ", key_at(text, line))
                })
                .unwrap_or_default();
            DescriptionError::Parse {
                path: path.to_path_buf(),
                msg: format!("{at}{}", e.message().trim_end()),
            }
        })?;
        acc.validate(path)?;
        Ok(acc)
    }

    /// Check every rule; the first broken one is reported.
    pub fn validate(&self, path: &Path) -> Result<(), DescriptionError> {
        let bad = |key: &str, rule: String| DescriptionError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            rule,
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        let (lo, hi) = CLOCK_RANGE_MHZ;
        if !(self.clock_mhz.is_finite() && self.clock_mhz >= lo && self.clock_mhz <= hi) {
            return Err(bad(
                "clock_mhz",
                format!("must be in {lo}..={hi} MHz, found {}", self.clock_mhz),
            ));
        }
        let dim = |key: &str, v: usize| -> Result<(), DescriptionError> {
            if v == 0 || v > MAX_DIM {
                Err(bad(key, format!("must be in 1..={MAX_DIM}, found {v}")))
            } else {
                Ok(())
            }
        };
        match self.kind {
            Kind::Systolic => {
                if self.bitserial.is_some() {
                    return Err(bad(
                        "bitserial",
                        "a `systolic` accelerator must not have a [bitserial] table".into(),
                    ));
                }
                let s = self.systolic.as_ref().ok_or_else(|| {
                    bad(
                        "systolic",
                        "kind = \"systolic\" needs a [systolic] table (rows, cols, dataflow)"
                            .into(),
                    )
                })?;
                dim("systolic.rows", s.rows)?;
                dim("systolic.cols", s.cols)?;
            }
            Kind::BitSerial => {
                if self.systolic.is_some() {
                    return Err(bad(
                        "systolic",
                        "a `bit-serial` accelerator must not have a [systolic] table".into(),
                    ));
                }
                let b = self.bitserial.as_ref().ok_or_else(|| {
                    bad(
                        "bitserial",
                        "kind = \"bit-serial\" needs a [bitserial] table (tiles, windows, filters, lanes, serial, bits_per_cycle, precision)".into(),
                    )
                })?;
                dim("bitserial.tiles", b.tiles)?;
                dim("bitserial.windows", b.windows)?;
                dim("bitserial.filters", b.filters)?;
                dim("bitserial.lanes", b.lanes)?;
                let serial_max = match b.serial {
                    Serial::Activations => self.datapath.act_bits,
                    Serial::Both => self.datapath.act_bits.min(self.datapath.weight_bits),
                };
                if b.bits_per_cycle == 0 || b.bits_per_cycle > serial_max {
                    return Err(bad(
                        "bitserial.bits_per_cycle",
                        format!(
                            "must be in 1..={serial_max} (the serial operand's width), found {}",
                            b.bits_per_cycle
                        ),
                    ));
                }
                match (b.precision, b.group_size) {
                    (Precision::PerGroup, None) => {
                        return Err(bad(
                            "bitserial.group_size",
                            "precision = \"per-group\" needs group_size (activations per detected group)".into(),
                        ))
                    }
                    (Precision::PerGroup, Some(g)) => dim("bitserial.group_size", g)?,
                    (Precision::PerLayer, Some(_)) => {
                        return Err(bad(
                            "bitserial.group_size",
                            "only meaningful with precision = \"per-group\"".into(),
                        ))
                    }
                    (Precision::PerLayer, None) => {}
                }
            }
        }
        self.datapath
            .validate()
            .map_err(|rule| bad("datapath", rule))?;
        let b = &self.buffers;
        if ![1, 2, 4, 8].contains(&b.word_bytes) {
            return Err(bad(
                "buffers.word_bytes",
                format!("must be 1, 2, 4 or 8, found {}", b.word_bytes),
            ));
        }
        let widest = self.datapath.act_bits.max(self.datapath.weight_bits) as usize;
        if b.word_bytes * 8 < widest {
            return Err(bad(
                "buffers.word_bytes",
                format!(
                    "a {}-byte word cannot hold a {widest}-bit activation/weight code",
                    b.word_bytes
                ),
            ));
        }
        for (key, kib) in [
            ("buffers.ifmap_kib", b.ifmap_kib),
            ("buffers.filter_kib", b.filter_kib),
            ("buffers.ofmap_kib", b.ofmap_kib),
        ] {
            if kib == 0 || kib > MAX_SRAM_KIB {
                return Err(bad(
                    key,
                    format!("must be in 1..={MAX_SRAM_KIB} KiB, found {kib}"),
                ));
            }
        }
        if b.banks == 0 || b.banks > 1024 {
            return Err(bad(
                "buffers.banks",
                format!("must be in 1..=1024, found {}", b.banks),
            ));
        }
        if !b.double_buffered {
            return Err(bad(
                "buffers.double_buffered",
                "the memory model is SCALE-Sim's double-buffered scratchpad; false is not supported"
                    .into(),
            ));
        }
        match (self.dram.bandwidth, self.dram.words_per_cycle) {
            (BandwidthMode::User, None) => {
                return Err(bad(
                    "dram.words_per_cycle",
                    "bandwidth = \"user\" needs words_per_cycle".into(),
                ))
            }
            (BandwidthMode::User, Some(w)) if w == 0 || w > 1 << 16 => {
                return Err(bad(
                    "dram.words_per_cycle",
                    format!("must be in 1..=65536, found {w}"),
                ))
            }
            (BandwidthMode::Calc, Some(_)) => {
                return Err(bad(
                    "dram.words_per_cycle",
                    "bandwidth = \"calc\" computes the bandwidth; remove words_per_cycle or use bandwidth = \"user\"".into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// SRAM capacity in words of one buffer of `kib` KiB.
    fn words(&self, kib: usize) -> usize {
        kib * 1024 / self.buffers.word_bytes
    }

    /// The DRAM interface as the memory model takes it.
    pub fn interface(&self) -> Interface {
        match (self.dram.bandwidth, self.dram.words_per_cycle) {
            (BandwidthMode::User, Some(w)) => Interface::User { words_per_cycle: w },
            _ => Interface::Calc,
        }
    }

    /// Figures derived from the description (assumes it is valid).
    pub fn derived(&self) -> Derived {
        let mac_units = match (&self.systolic, &self.bitserial) {
            (Some(s), _) => s.rows * s.cols,
            (None, Some(b)) => b.tiles * b.windows * b.filters * b.lanes,
            (None, None) => 0,
        };
        // Bit-serial designs spend ceil(P/bits_per_cycle) cycles per
        // serial operand, so peak throughput is at full datapath precision.
        let slowdown = match &self.bitserial {
            Some(b) => {
                let a = (self.datapath.act_bits as usize).div_ceil(b.bits_per_cycle as usize);
                match b.serial {
                    Serial::Activations => a,
                    Serial::Both => a * self.datapath.weight_bits as usize,
                }
            }
            None => 1,
        };
        Derived {
            mac_units,
            peak_macs_per_s: mac_units as f64 * self.clock_mhz * 1e6 / slowdown as f64,
            ifmap_sram_words: self.words(self.buffers.ifmap_kib),
            filter_sram_words: self.words(self.buffers.filter_kib),
            ofmap_sram_words: self.words(self.buffers.ofmap_kib),
            dram_words_per_cycle: self.dram.words_per_cycle,
        }
    }
}
