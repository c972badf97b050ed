//! The `FaultModel`: which algorithmic fault models apply to which layers,
//! with their parameters; read from a TOML file or from CLI shorthands,
//! written back atomically (derivation writes its results this way).
//!
//! # File format
//!
//! A `[feature]` and/or `[weight]` section give the default model of each
//! part and the layers it applies to; `[[layer]]` entries replace the
//! default for one node (by graph node name) — the place where models
//! derived from hardware rates put their per-layer parameters. Unknown keys,
//! keys that are not parameters of the chosen `kind`, and broken rules
//! (probabilities in [0, 1], distributions summing to 1, `p0 + p1 <= 1`,
//! per-bit lists of equal length, unique layer names) are errors that name
//! the file, the line and the key.
//!
//! ```toml
//! description = "free text: where this model came from"   # optional
//!
//! [feature]               # faults on requantized conv/linear outputs
//! kind = "mibb"           # "mibb" | "bitflip" | "output_hit" | "none"
//! p = 1e-4                # mibb: per-MAC fault prob (p_out = 1-(1-p)^n)
//!                         # bitflip: per-bit flip prob
//! layers = "conv"         # "conv" (default) | "all" | ["name", ...]
//!
//! [weight]                # faults on weight codes
//! kind = "stuck_at"       # "stuck_at" | "adsaf" | "none"
//! p0 = 5e-4               # stuck_at: prob a bit is stuck at 0, one value
//! p1 = 5e-4               #   for all bits or a list, one per bit (LSB first)
//! layers = "all"          # default "all" for stuck_at, "conv" for adsaf
//! persistent = true       # true: once per chip; false: every forward
//! # adsaf: p = 0.08, sa1_fraction = 0.163 (default), sa1_sign = "random" | "own"
//!
//! [stuck_cells.ifmap]     # optional: stuck cells of the input feature-map
//! words = 16384           #   buffer (`ftnas derive` writes it for stuck
//! p0 = 2e-5               #   `sram.ifmap` cells): every bit of every word
//! p1 = 2e-5               #   stuck at 0 / 1 per chip; code i of every
//!                         #   layer's input at word i mod words
//! # [stuck_cells.ofmap]: the same for each layer's stored output
//!
//! [stuck_macs]            # optional: stuck bits of the MAC units of a
//! dataflow = "os"         #   systolic grid (`ftnas derive` writes it for
//! rows = 16               #   stuck PE register bits): "os": output (e, m)
//! cols = 16               #   of each group's GEMM on unit (e mod rows,
//!                         #   m mod cols); "ws" / "is": term k of output
//!                         #   (e, m) on unit (k mod rows, m / e mod cols);
//!                         #   per register kind every bit stuck at 0 / 1
//!                         #   per chip (`fault::stuck_macs`);
//!                         #   "bit-serial" (SIPs; rows = windows,
//!                         #   cols = lanes, and the keys filter_rows =
//!                         #   tiles * filters, bits_per_cycle, optional
//!                         #   serial = "activations" (Stripes, default)
//!                         #   or "both" (Loom), precision = "per-layer"
//!                         #   (default) or "per-group" (run-time
//!                         #   detection)): act and accumulator only
//! act = { p0 = 1e-5, p1 = 1e-5 }          # activation register
//! weight = { p0 = 5e-5, p1 = 5e-5 }       # weight register
//! product = { p0 = 0.0, p1 = 1e-5 }       # multiplier output
//! accumulator = { p0 = 0.0, p1 = 2e-5 }   # partial-sum register
//!
//! [[layer]]               # per-layer replacement of the defaults
//! name = "cells.3.op1.conv"
//! # optional, what `ftnas derive` writes for ifmap/filter/ofmap SRAM upsets:
//! # the probability that each bit of each input code is flipped as this
//! # layer reads it (this layer only; other readers see the clean tensor),
//! # that each bit of each weight code is flipped for one image's pass
//! # through the layer (resampled per image), and that each bit of each
//! # stored output code is flipped after the fused activation (every later
//! # node reads it).
//! input_flip = 2.0e-7
//! filter_flip = 3.0e-7
//! stored_flip = 1.5e-7
//!
//! [layer.feature]         # this layer's feature model
//! kind = "output_hit"
//! p_out = 2.5e-3          # hit probability of one output element
//! bit_weights = [0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125]
//! sign = "random"         # "random" (+-2^b, saturate) | "flip" (XOR bit b)
//! multiplicity = [1.0]    # P(1 bit), P(2 bits), ... per hit
//! # optional, sign = "random" only: up[b][c] = probability that a bit-b
//! # hit on a code of class c adds +2^b (else -2^b); c = bit length of y
//! # for y >= 0 (0..bits-1), bits-1 + bit length of |y| for y < 0; one row
//! # per bit, 2*bits classes each. `ftnas derive` writes it for the psum
//! # registers' flips, which go the way the held partial sum points.
//! # e.g. up = [[0.5, ... (16 entries)], ..., [0.9, 0.8, ..., 0.3, 0.2]]
//! # optional: upsets of a stationary operand register (WS weights, IS
//! # activations) as runs of same-sign errors along a stream (see
//! # `fault::stream_hit`); `ftnas derive` writes it for WS and IS arrays.
//! # axis "pixels": a channel's pixels, "channels": a pixel's channels;
//! # events per stream per image; from_start: P(run starts at output 0);
//! # up[j]: P(flip of register bit j raises the held value); operand[l]:
//! # P(moving operand has bit length l), l = 0 a zero; optional: gains,
//! # per reduction row its operand magnitude relative to the layer's;
//! # up_by_stream, `up` per stream (streams x bits, stream-major);
//! # negatives, per row P(non-zero operand < 0) (else operand_negative);
//! # profile, per stream position (`length` entries) the magnitude there
//! # relative to the layer's.
//! stream = { axis = "pixels", length = 4, events = 0.0018, from_start = 0.022, shift = 16, up = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], operand = [0.5, 0.0, 0.25, 0.25], operand_negative = 0.1, gains = [1.2, 0.8], negatives = [0.0, 0.9], profile = [0.5, 1.5, 1.5, 0.5] }
//!
//! [layer.weight]          # this layer's weight model: per-bit stuck-at
//! kind = "stuck_at"
//! p0 = [0, 0, 0, 0, 0, 0, 1e-3, 1e-3]
//! p1 = [0, 0, 0, 0, 0, 0, 0, 1e-3]
//! # optional: stuck bits of registers that each hold many weights (what
//! # `ftnas derive` writes for WS arrays and bit-serial designs): register
//! # (m mod filters, u mod reduction), u = k ("term") or k / taps
//! # ("channel"), each bit stuck with p0 / p1, applied after the above
//! shared = { p0 = 5e-4, p1 = 5e-4, filters = 256, reduction = 16, per = "channel" }
//!
//! [[layer]]
//! name = "classifier"
//! feature = { kind = "none" }   # no feature faults on this layer
//! ```
//!
//! `output_hit` (the general form derivation produces): each output element
//! is hit with `p_out`; a hit corrupts `k` bits (`multiplicity = [P(k=1),
//! P(k=2), ..]`, default `[1.0]`), each at a position drawn from
//! `bit_weights` (one probability per bit of the output format, summing
//! to 1); `sign = "random"` adds `+-2^b` and saturates (MiBB's arithmetic),
//! `sign = "flip"` inverts the bit. MiBB equals `output_hit` with
//! `p_out = 1-(1-p)^n`, uniform `bit_weights` and `sign = "random"`.
//!
//! # CLI shorthands
//!
//! `--feature-fault`: `mibb:P`, `bitflip:P`, `output_hit` has no shorthand;
//! `none`. `--weight-fault`: `sa:P` (each bit faulty with prob `P`, half
//! stuck-at-0 and half stuck-at-1: `p0 = p1 = P/2`), `sa0:P`, `sa1:P`,
//! `adsaf:P` (stuck-at-1 share 0.163, random sign); `none`. Options may
//! follow as `:OPT`: `conv` or `all` (layer selection), and for weights
//! `persistent` (default) or `per-forward`; e.g. `adsaf:0.08:per-forward`,
//! `mibb:1e-4:all`.
//!
//! # Use
//!
//! Build the model ([`FaultModel::load`], the flag parsers, [`FaultModel::merge`]
//! to combine a feature and a weight part), then, once the network and the
//! datapath are known, call [`FaultModel::check_bits`] and
//! [`FaultModel::check_layer_names`] so a mismatch is reported up front. At
//! the hook points call [`FaultModel::feature`] / [`FaultModel::weight`]
//! with an rng from [`super::stream`]; [`FaultModel::weight_persistent`]
//! says whether weight faults are drawn once per chip or every forward.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::adsaf::{AdSaf, Sa1Sign};
use super::bitflip::BitFlip;
use super::layered::{LayeredFeature, LayeredWeight};
use super::mibb::Mibb;
use super::output_hit::{HitSign, OutputHit};
use super::spec::{
    FaultSpec, FeatureFault, FeatureSection, LayerOverride, LayerSelection, WeightFault,
    WeightSection,
};
use super::stream_hit::{StreamAxis, StreamHits};
use super::stuck_at::{PerBit, ShareUnit, SharedStuck, StuckAt};
use super::stuck_cells::{FeatureBuffer, StuckBuffers, StuckCells};
use super::stuck_macs::{MacGrid, MacRegister, StuckDensity, StuckMacs};
use super::{FeatureInjector, LayerSite, WeightInjector};

/// Errors reading, parsing or writing a fault model.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A rule broken outside a file (a spec built in code, a combination).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not have the expected structure
    /// (the message carries toml's line, column and the key).
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// A value breaks a rule of the fault-model format.
    #[error("{origin}:{line}:{column}: `{key}`: {message}")]
    Rule {
        origin: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    /// A CLI shorthand could not be parsed.
    #[error("fault flag `{flag}`: {message}")]
    Flag { flag: String, message: String },
}

/// A complete algorithmic fault model (feature and/or weight part).
pub struct FaultModel {
    spec: FaultSpec,
    feature: Option<LayeredFeature>,
    weight: Option<LayeredWeight>,
    weight_persistent: bool,
}

impl Clone for FaultModel {
    fn clone(&self) -> Self {
        FaultModel::from_validated(self.spec.clone())
    }
}

impl std::fmt::Debug for FaultModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultModel")
            .field("spec", &self.spec)
            .finish()
    }
}

impl FaultModel {
    /// No faults.
    pub fn none() -> FaultModel {
        FaultModel::from_validated(FaultSpec::default())
    }

    /// A model from a spec (checked with [`FaultSpec::validate`]).
    pub fn from_spec(spec: FaultSpec) -> Result<FaultModel, FaultError> {
        spec.validate().map_err(FaultError::Invalid)?;
        Ok(FaultModel::from_validated(spec))
    }

    fn from_validated(spec: FaultSpec) -> FaultModel {
        let feature = spec
            .has_feature_faults()
            .then(|| LayeredFeature::from_spec(&spec));
        let weight = spec
            .has_weight_faults()
            .then(|| LayeredWeight::from_spec(&spec));
        let weight_persistent = spec.weight_persistent();
        FaultModel {
            spec,
            feature,
            weight,
            weight_persistent,
        }
    }

    /// Parse `--feature-fault` shorthands such as `mibb:1e-4`, `bitflip:1e-5`
    /// (see the module doc).
    pub fn parse_feature_flag(s: &str) -> Result<FaultModel, FaultError> {
        let Some(flag) = Shorthand::parse(s)? else {
            return Ok(FaultModel::none());
        };
        let p = flag.p;
        let fault = match flag.kind.as_str() {
            "mibb" => FeatureFault::Mibb(Mibb { p }),
            "bitflip" => FeatureFault::BitFlip(BitFlip { p }),
            kind => {
                return Err(flag.err(format!(
                    "unknown feature fault `{kind}`; expected `mibb:P`, `bitflip:P` or `none`"
                )))
            }
        };
        let mut layers = LayerSelection::Conv;
        for &opt in &flag.options {
            layers = layer_option(opt).ok_or_else(|| {
                flag.err(format!("unknown option `{opt}`; expected `conv` or `all`"))
            })?;
        }
        flag.model(FaultSpec {
            feature: Some(FeatureSection { fault, layers }),
            ..FaultSpec::default()
        })
    }

    /// Parse `--weight-fault` shorthands such as `sa:1e-3`, `adsaf:0.08`
    /// (see the module doc).
    pub fn parse_weight_flag(s: &str) -> Result<FaultModel, FaultError> {
        let Some(flag) = Shorthand::parse(s)? else {
            return Ok(FaultModel::none());
        };
        let p = flag.p;
        let stuck = |p0: f64, p1: f64| {
            WeightFault::StuckAt(StuckAt {
                p0: PerBit::Uniform(p0),
                p1: PerBit::Uniform(p1),
                shared: None,
            })
        };
        let (fault, mut layers) = match flag.kind.as_str() {
            "sa" => (stuck(p / 2.0, p / 2.0), LayerSelection::All),
            "sa0" => (stuck(p, 0.0), LayerSelection::All),
            "sa1" => (stuck(0.0, p), LayerSelection::All),
            "adsaf" => (
                WeightFault::AdSaf(AdSaf {
                    p,
                    sa1_fraction: AdSaf::PAPER_SA1_FRACTION,
                    sa1_sign: Sa1Sign::Random,
                }),
                LayerSelection::Conv,
            ),
            kind => {
                return Err(flag.err(format!(
                    "unknown weight fault `{kind}`; expected `sa:P`, `sa0:P`, `sa1:P`, \
                     `adsaf:P` or `none`"
                )))
            }
        };
        let mut persistent = true;
        for &opt in &flag.options {
            match (layer_option(opt), opt) {
                (Some(l), _) => layers = l,
                (None, "persistent") => persistent = true,
                (None, "per-forward") => persistent = false,
                _ => {
                    return Err(flag.err(format!(
                        "unknown option `{opt}`; expected `conv`, `all`, `persistent` or \
                         `per-forward`"
                    )))
                }
            }
        }
        flag.model(FaultSpec {
            weight: Some(WeightSection {
                fault,
                layers,
                persistent,
            }),
            ..FaultSpec::default()
        })
    }

    /// Read a fault-model TOML file.
    pub fn load(path: &Path) -> Result<FaultModel, FaultError> {
        let text = std::fs::read_to_string(path).map_err(|source| FaultError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        FaultModel::parse_str(&text, &path.display().to_string())
    }

    /// Parse fault-model TOML text; `origin` names it in errors (a path).
    pub fn parse_str(text: &str, origin: &str) -> Result<FaultModel, FaultError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| FaultError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let ctx = Ctx { text, origin };
        let spec = ctx.spec(raw)?;
        // Everything was checked with spans above; this catches any rule
        // added to the spec types later without a file-level check.
        FaultModel::from_spec(spec).map_err(|e| FaultError::Syntax {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// The data of this model.
    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// The model as fault-model TOML text (what [`FaultModel::save`] writes).
    /// Keys come in reading order: `kind` first, then its parameters.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::from("# ftnas algorithmic fault model\n");
        if let Some(d) = &self.spec.description {
            push_kv(&mut out, "description", &toml::Value::String(d.clone()));
        }
        if let Some(f) = &self.spec.feature {
            out.push_str("\n[feature]\n");
            let mut kv = feature_table(&f.fault);
            kv.push(("layers", selection_value(&f.layers)));
            push_all(&mut out, &kv);
        }
        if let Some(w) = &self.spec.weight {
            out.push_str("\n[weight]\n");
            let mut kv = weight_table(&w.fault);
            kv.push(("layers", selection_value(&w.layers)));
            kv.push(("persistent", toml::Value::Boolean(w.persistent)));
            push_all(&mut out, &kv);
        }
        for b in [FeatureBuffer::Ifmap, FeatureBuffer::Ofmap] {
            if let Some(m) = self.spec.stuck_cells.get(b) {
                out.push_str(&format!("\n[stuck_cells.{}]\n", b.key()));
                let kv: KeyValues = vec![
                    ("words", toml::Value::Integer(m.words as i64)),
                    ("p0", toml::Value::Float(m.p0)),
                    ("p1", toml::Value::Float(m.p1)),
                ];
                push_all(&mut out, &kv);
            }
        }
        if let Some(m) = &self.spec.stuck_macs {
            out.push_str("\n[stuck_macs]\n");
            let mut kv: KeyValues = vec![
                ("dataflow", toml::Value::String(m.grid.key().into())),
                ("rows", toml::Value::Integer(m.rows as i64)),
                ("cols", toml::Value::Integer(m.cols as i64)),
            ];
            if let MacGrid::BitSerial {
                filter_rows,
                bits_per_cycle,
                serial_weights,
                run_time_precision,
            } = m.grid
            {
                kv.push(("filter_rows", toml::Value::Integer(filter_rows as i64)));
                kv.push((
                    "bits_per_cycle",
                    toml::Value::Integer(i64::from(bits_per_cycle)),
                ));
                let serial = if serial_weights {
                    "both"
                } else {
                    "activations"
                };
                kv.push(("serial", toml::Value::String(serial.into())));
                let precision = if run_time_precision {
                    "per-group"
                } else {
                    "per-layer"
                };
                kv.push(("precision", toml::Value::String(precision.into())));
            }
            for r in MacRegister::ALL {
                let d = m.of(r);
                if d.p0 > 0.0 || d.p1 > 0.0 {
                    let mut t = toml::map::Map::new();
                    t.insert("p0".into(), toml::Value::Float(d.p0));
                    t.insert("p1".into(), toml::Value::Float(d.p1));
                    kv.push((r.key(), toml::Value::Table(t)));
                }
            }
            push_all(&mut out, &kv);
        }
        for l in &self.spec.layers {
            out.push_str("\n[[layer]]\n");
            push_kv(&mut out, "name", &toml::Value::String(l.name.clone()));
            for (key, p) in l.buffer_flips() {
                if p > 0.0 {
                    push_kv(&mut out, key, &toml::Value::Float(p));
                }
            }
            if let Some(f) = &l.feature {
                out.push_str("\n[layer.feature]\n");
                push_all(&mut out, &feature_table(f));
            }
            if let Some(w) = &l.weight {
                out.push_str("\n[layer.weight]\n");
                push_all(&mut out, &weight_table(w));
            }
        }
        out
    }

    /// Write the model as TOML, atomically (temp file in the same folder,
    /// then rename), so a reader never sees a half-written model.
    pub fn save(&self, path: &Path) -> Result<(), FaultError> {
        crate::report::write_atomic(path, self.to_toml_string().as_bytes())
            .map_err(|e| FaultError::Invalid(e.to_string()))
    }

    /// `[input_flip, filter_flip, stored_flip]` of the layer called `name`
    /// (0 = none).
    pub fn buffer_flips_at(&self, name: &str) -> [f64; 3] {
        self.spec
            .layers
            .iter()
            .find(|l| l.name == name)
            .map_or([0.0; 3], |l| l.buffer_flips().map(|(_, p)| p))
    }

    /// The feature-fault part, if any.
    pub fn feature(&self) -> Option<&dyn FeatureInjector> {
        self.feature.as_ref().map(|f| f as &dyn FeatureInjector)
    }
    /// The weight-fault part, if any.
    pub fn weight(&self) -> Option<&dyn WeightInjector> {
        self.weight.as_ref().map(|w| w as &dyn WeightInjector)
    }
    /// The feature model that applies at `site` (`Off` when none): lets a
    /// caller skip a hook, or report per-layer parameters.
    pub fn feature_at(&self, site: &LayerSite) -> &FeatureFault {
        self.feature
            .as_ref()
            .map_or(&FeatureFault::Off, |f| f.model_for(site))
    }
    /// The weight model that applies at `site` (`Off` when none).
    pub fn weight_at(&self, site: &LayerSite) -> &WeightFault {
        self.weight
            .as_ref()
            .map_or(&WeightFault::Off, |w| w.model_for(site))
    }
    /// True when weight faults are sampled once per chip (inference), false
    /// when resampled every forward (training).
    pub fn weight_persistent(&self) -> bool {
        self.weight_persistent
    }

    /// The same model with weight samples lasting a chip (`true`) or one
    /// forward (`false`): the paper resamples adSAF every forward in
    /// training and keeps it per chip in inference.
    pub fn with_weight_persistent(mut self, persistent: bool) -> FaultModel {
        match &mut self.spec.weight {
            Some(w) => w.persistent = persistent,
            None => {
                self.spec.weight = Some(WeightSection {
                    fault: WeightFault::Off,
                    layers: LayerSelection::All,
                    persistent,
                })
            }
        }
        FaultModel::from_validated(self.spec)
    }

    /// One model from two: e.g. `--feature-fault` and `--weight-fault`, or
    /// a file plus a flag. Errors when both define the same section, or the
    /// same part of the same layer.
    pub fn merge(self, other: FaultModel) -> Result<FaultModel, FaultError> {
        let mut a = self.spec;
        let b = other.spec;
        if a.feature.is_some() && b.feature.is_some() {
            return Err(FaultError::Invalid(
                "two feature-fault models given; use one".into(),
            ));
        }
        if a.weight.is_some() && b.weight.is_some() {
            return Err(FaultError::Invalid(
                "two weight-fault models given; use one".into(),
            ));
        }
        if (a.stuck_cells.ifmap.is_some() && b.stuck_cells.ifmap.is_some())
            || (a.stuck_cells.ofmap.is_some() && b.stuck_cells.ofmap.is_some())
        {
            return Err(FaultError::Invalid(
                "two models give stuck cells of the same buffer; use one".into(),
            ));
        }
        a.feature = a.feature.or(b.feature);
        a.weight = a.weight.or(b.weight);
        a.stuck_cells.ifmap = a.stuck_cells.ifmap.or(b.stuck_cells.ifmap);
        a.stuck_cells.ofmap = a.stuck_cells.ofmap.or(b.stuck_cells.ofmap);
        if a.stuck_macs.is_some() && b.stuck_macs.is_some() {
            return Err(FaultError::Invalid(
                "two models give stuck MAC-unit bits; use one".into(),
            ));
        }
        a.stuck_macs = a.stuck_macs.or(b.stuck_macs);
        a.description = match (a.description, b.description) {
            (Some(x), Some(y)) => Some(format!("{x}; {y}")),
            (x, y) => x.or(y),
        };
        for l in b.layers {
            match a.layers.iter_mut().find(|o| o.name == l.name) {
                None => a.layers.push(l),
                Some(o) => {
                    if (o.feature.is_some() && l.feature.is_some())
                        || (o.weight.is_some() && l.weight.is_some())
                        || (o.has_buffer_flips() && l.has_buffer_flips())
                    {
                        return Err(FaultError::Invalid(format!(
                            "layer `{}` has the same fault part in both models",
                            l.name
                        )));
                    }
                    o.feature = o.feature.take().or(l.feature);
                    o.weight = o.weight.take().or(l.weight);
                    o.input_flip += l.input_flip;
                    o.filter_flip += l.filter_flip;
                    o.stored_flip += l.stored_flip;
                }
            }
        }
        FaultModel::from_spec(a)
    }

    /// Check that per-bit parameters fit the datapath: `bit_weights` of
    /// feature models have `act_bits` entries and per-bit stuck-at lists
    /// have `weight_bits` entries. Call once the datapath is known (a
    /// mismatch is not an error at injection time: missing bits have
    /// probability 0, extra ones do nothing).
    pub fn check_bits(&self, act_bits: u8, weight_bits: u8) -> Result<(), FaultError> {
        let mut features: Vec<(String, &FeatureFault)> = Vec::new();
        let mut weights: Vec<(String, &WeightFault)> = Vec::new();
        if let Some(f) = &self.spec.feature {
            features.push(("feature".into(), &f.fault));
        }
        if let Some(w) = &self.spec.weight {
            weights.push(("weight".into(), &w.fault));
        }
        for l in &self.spec.layers {
            if let Some(f) = &l.feature {
                features.push((format!("layer `{}` feature", l.name), f));
            }
            if let Some(w) = &l.weight {
                weights.push((format!("layer `{}` weight", l.name), w));
            }
        }
        for (place, f) in features {
            if let FeatureFault::OutputHit(h) = f {
                if h.bit_weights.len() != act_bits as usize {
                    return Err(FaultError::Invalid(format!(
                        "{place}: bit_weights has {} entries but activations have {act_bits} bits",
                        h.bit_weights.len()
                    )));
                }
            }
        }
        for (place, w) in weights {
            if let WeightFault::StuckAt(s) = w {
                for (key, pb) in [("p0", &s.p0), ("p1", &s.p1)] {
                    if let Some(n) = pb.listed_bits() {
                        if n != weight_bits as usize {
                            return Err(FaultError::Invalid(format!(
                                "{place}: {key} has {n} entries but weights have {weight_bits} bits"
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Check that every layer name the model mentions (`[[layer]]` entries
    /// and `layers = [..]` lists) is one of `known` (the graph's conv/linear
    /// node names): a misspelt name would otherwise silently match nothing.
    pub fn check_layer_names(&self, known: &[&str]) -> Result<(), FaultError> {
        let mut named: Vec<(&str, &str)> = Vec::new();
        for (section, sel) in [
            (
                "feature.layers",
                self.spec.feature.as_ref().map(|f| &f.layers),
            ),
            (
                "weight.layers",
                self.spec.weight.as_ref().map(|w| &w.layers),
            ),
        ] {
            if let Some(LayerSelection::Names(v)) = sel {
                named.extend(v.iter().map(|n| (section, n.as_str())));
            }
        }
        named.extend(
            self.spec
                .layers
                .iter()
                .map(|l| ("[[layer]]", l.name.as_str())),
        );
        let unknown: Vec<String> = named
            .iter()
            .filter(|(_, n)| !known.contains(n))
            .map(|(place, n)| format!("`{n}` ({place})"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(FaultError::Invalid(format!(
                "fault model names layers the network does not have: {}; its conv/linear layers are: {}",
                unknown.join(", "),
                known.join(", ")
            )))
        }
    }

    /// A one-line human summary (for logs and report headers).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        match &self.spec.feature {
            Some(f) => {
                let _ = write!(
                    s,
                    "feature {} on {}",
                    fault_summary_feature(&f.fault),
                    selection_summary(&f.layers)
                );
            }
            None => s.push_str("feature none"),
        }
        match &self.spec.weight {
            Some(w) => {
                let _ = write!(
                    s,
                    "; weight {} on {} ({})",
                    fault_summary_weight(&w.fault),
                    selection_summary(&w.layers),
                    if w.persistent {
                        "per chip"
                    } else {
                        "per forward"
                    }
                );
            }
            None => s.push_str("; weight none"),
        }
        if !self.spec.layers.is_empty() {
            let _ = write!(s, "; {} layer overrides", self.spec.layers.len());
        }
        if !self.spec.stuck_cells.is_empty() {
            s.push_str("; stuck feature-buffer cells");
        }
        if let Some(m) = &self.spec.stuck_macs {
            let _ = write!(s, "; stuck MAC-unit bits ({})", m.grid_text());
        }
        s
    }
}

/// A CLI fault shorthand `KIND:P[:OPTION]...` split into its parts; every
/// error names the flag as given.
struct Shorthand<'a> {
    flag: &'a str,
    /// Lower-cased kind.
    kind: String,
    /// The probability, checked to be in [0, 1].
    p: f64,
    /// Trimmed options after the probability.
    options: Vec<&'a str>,
}

impl<'a> Shorthand<'a> {
    /// Split `flag`; `Ok(None)` for `none` (which takes no parameters).
    fn parse(flag: &'a str) -> Result<Option<Shorthand<'a>>, FaultError> {
        let err = |message: String| flag_error(flag, message);
        let mut parts = flag.trim().split(':');
        let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if kind == "none" {
            if parts.next().is_some() {
                return Err(err("`none` takes no parameters".into()));
            }
            return Ok(None);
        }
        let tok = parts.next().map(str::trim).unwrap_or("");
        if tok.is_empty() {
            return Err(err("missing probability after `:`".into()));
        }
        let p: f64 = tok
            .parse()
            .map_err(|_| err(format!("`{tok}` is not a number")))?;
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            return Err(err(format!("probability must be in [0, 1], found {tok}")));
        }
        Ok(Some(Shorthand {
            flag,
            kind,
            p,
            options: parts.map(str::trim).collect(),
        }))
    }

    fn err(&self, message: String) -> FaultError {
        flag_error(self.flag, message)
    }

    /// The model of `spec`, a broken rule reported against the flag.
    fn model(&self, spec: FaultSpec) -> Result<FaultModel, FaultError> {
        FaultModel::from_spec(spec).map_err(|e| self.err(e.to_string()))
    }
}

fn flag_error(flag: &str, message: String) -> FaultError {
    FaultError::Flag {
        flag: flag.to_string(),
        message,
    }
}

/// The layer selection a shorthand option names (`conv`, `all`).
fn layer_option(opt: &str) -> Option<LayerSelection> {
    match opt {
        "conv" => Some(LayerSelection::Conv),
        "all" => Some(LayerSelection::All),
        _ => None,
    }
}

fn fault_summary_feature(f: &FeatureFault) -> String {
    match f {
        FeatureFault::Off => "none".into(),
        FeatureFault::Mibb(m) => format!("mibb p={}", m.p),
        FeatureFault::BitFlip(m) => format!("bitflip p={}", m.p),
        FeatureFault::OutputHit(m) => format!("output_hit p_out={}", m.p_out),
    }
}

fn fault_summary_weight(w: &WeightFault) -> String {
    let pb = |p: &PerBit| match p {
        PerBit::Uniform(v) => format!("{v}"),
        PerBit::Bits(_) => "per-bit".into(),
    };
    match w {
        WeightFault::Off => "none".into(),
        WeightFault::StuckAt(s) => {
            let mut t = format!("stuck_at p0={} p1={}", pb(&s.p0), pb(&s.p1));
            if let Some(sh) = &s.shared {
                let _ = write!(
                    t,
                    " + shared p0={} p1={} over {}x{} registers per {}",
                    sh.p0,
                    sh.p1,
                    sh.filters,
                    sh.reduction,
                    sh.per.name()
                );
            }
            t
        }
        WeightFault::AdSaf(a) => format!("adsaf p={} sa1={}", a.p, a.sa1_fraction),
    }
}

fn selection_summary(l: &LayerSelection) -> String {
    match l {
        LayerSelection::Conv => "conv layers".into(),
        LayerSelection::All => "all layers".into(),
        LayerSelection::Names(v) => format!("{} named layers", v.len()),
    }
}

// ---- writing ----

fn floats(v: &[f64]) -> toml::Value {
    toml::Value::Array(v.iter().map(|&x| toml::Value::Float(x)).collect())
}

fn per_bit_value(p: &PerBit) -> toml::Value {
    match p {
        PerBit::Uniform(v) => toml::Value::Float(*v),
        PerBit::Bits(v) => floats(v),
    }
}

fn selection_value(l: &LayerSelection) -> toml::Value {
    match l {
        LayerSelection::Conv => toml::Value::String("conv".into()),
        LayerSelection::All => toml::Value::String("all".into()),
        LayerSelection::Names(v) => {
            toml::Value::Array(v.iter().map(|n| toml::Value::String(n.clone())).collect())
        }
    }
}

type KeyValues = Vec<(&'static str, toml::Value)>;

fn push_kv(out: &mut String, key: &str, v: &toml::Value) {
    // `Value`'s Display is its TOML form (quoted strings, exact floats).
    let _ = writeln!(out, "{key} = {v}");
}

fn push_all(out: &mut String, kv: &KeyValues) {
    for (k, v) in kv {
        push_kv(out, k, v);
    }
}

fn feature_table(f: &FeatureFault) -> KeyValues {
    let mut t: KeyValues = vec![("kind", toml::Value::String(f.kind().into()))];
    match f {
        FeatureFault::Off => {}
        FeatureFault::Mibb(m) => t.push(("p", toml::Value::Float(m.p))),
        FeatureFault::BitFlip(m) => t.push(("p", toml::Value::Float(m.p))),
        FeatureFault::OutputHit(h) => {
            t.push(("p_out", toml::Value::Float(h.p_out)));
            t.push(("bit_weights", floats(&h.bit_weights)));
            t.push(("sign", toml::Value::String(h.sign.name().into())));
            t.push(("multiplicity", floats(&h.multiplicity)));
            if !h.up.is_empty() {
                t.push((
                    "up",
                    toml::Value::Array(h.up.iter().map(|r| floats(r)).collect()),
                ));
            }
            if let Some(s) = &h.stream {
                let mut tab = toml::map::Map::new();
                tab.insert("axis".into(), toml::Value::String(s.axis.name().into()));
                tab.insert("length".into(), toml::Value::Integer(s.length as i64));
                tab.insert("events".into(), toml::Value::Float(s.events));
                tab.insert("from_start".into(), toml::Value::Float(s.from_start));
                tab.insert("shift".into(), toml::Value::Integer(i64::from(s.shift)));
                tab.insert("up".into(), floats(&s.up));
                if !s.up_by_stream.is_empty() {
                    tab.insert("up_by_stream".into(), floats(&s.up_by_stream));
                }
                tab.insert("operand".into(), floats(&s.operand));
                tab.insert(
                    "operand_negative".into(),
                    toml::Value::Float(s.operand_negative),
                );
                if !s.gains.is_empty() {
                    tab.insert("gains".into(), floats(&s.gains));
                }
                if !s.negatives.is_empty() {
                    tab.insert("negatives".into(), floats(&s.negatives));
                }
                if !s.profile.is_empty() {
                    tab.insert("profile".into(), floats(&s.profile));
                }
                t.push(("stream", toml::Value::Table(tab)));
            }
        }
    }
    t
}

fn weight_table(w: &WeightFault) -> KeyValues {
    let mut t: KeyValues = vec![("kind", toml::Value::String(w.kind().into()))];
    match w {
        WeightFault::Off => {}
        WeightFault::StuckAt(s) => {
            t.push(("p0", per_bit_value(&s.p0)));
            t.push(("p1", per_bit_value(&s.p1)));
            if let Some(sh) = &s.shared {
                let mut tab = toml::map::Map::new();
                tab.insert("p0".into(), toml::Value::Float(sh.p0));
                tab.insert("p1".into(), toml::Value::Float(sh.p1));
                tab.insert("filters".into(), toml::Value::Integer(sh.filters as i64));
                tab.insert(
                    "reduction".into(),
                    toml::Value::Integer(sh.reduction as i64),
                );
                tab.insert("per".into(), toml::Value::String(sh.per.name().into()));
                t.push(("shared", toml::Value::Table(tab)));
            }
        }
        WeightFault::AdSaf(a) => {
            t.push(("p", toml::Value::Float(a.p)));
            t.push(("sa1_fraction", toml::Value::Float(a.sa1_fraction)));
            t.push(("sa1_sign", toml::Value::String(a.sa1_sign.name().into())));
        }
    }
    t
}

// ---- reading ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: Option<String>,
    feature: Option<Spanned<RawFeature>>,
    weight: Option<Spanned<RawWeight>>,
    #[serde(default)]
    layer: Vec<Spanned<RawLayer>>,
    stuck_cells: Option<RawStuckBuffers>,
    stuck_macs: Option<Spanned<RawStuckMacs>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStuckMacs {
    dataflow: Spanned<String>,
    rows: Spanned<i64>,
    cols: Spanned<i64>,
    filter_rows: Option<Spanned<i64>>,
    bits_per_cycle: Option<Spanned<i64>>,
    serial: Option<Spanned<String>>,
    precision: Option<Spanned<String>>,
    act: Option<RawDensity>,
    weight: Option<RawDensity>,
    product: Option<RawDensity>,
    accumulator: Option<RawDensity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDensity {
    #[serde(default)]
    p0: f64,
    #[serde(default)]
    p1: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStuckBuffers {
    ifmap: Option<Spanned<RawStuckCells>>,
    ofmap: Option<Spanned<RawStuckCells>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStuckCells {
    words: Spanned<i64>,
    #[serde(default)]
    p0: f64,
    #[serde(default)]
    p1: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    kind: Spanned<String>,
    p: Option<Spanned<f64>>,
    p_out: Option<Spanned<f64>>,
    bit_weights: Option<Spanned<Vec<f64>>>,
    sign: Option<Spanned<String>>,
    multiplicity: Option<Spanned<Vec<f64>>>,
    up: Option<Spanned<Vec<Vec<f64>>>>,
    stream: Option<Spanned<RawStream>>,
    layers: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    axis: Spanned<String>,
    length: usize,
    events: f64,
    from_start: f64,
    shift: i32,
    up: Vec<f64>,
    #[serde(default)]
    up_by_stream: Vec<f64>,
    operand: Vec<f64>,
    #[serde(default)]
    operand_negative: f64,
    #[serde(default)]
    gains: Vec<f64>,
    #[serde(default)]
    negatives: Vec<f64>,
    #[serde(default)]
    profile: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeight {
    kind: Spanned<String>,
    p: Option<Spanned<f64>>,
    p0: Option<Spanned<toml::Value>>,
    p1: Option<Spanned<toml::Value>>,
    sa1_fraction: Option<Spanned<f64>>,
    sa1_sign: Option<Spanned<String>>,
    shared: Option<Spanned<RawShared>>,
    layers: Option<Spanned<toml::Value>>,
    persistent: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShared {
    #[serde(default)]
    p0: f64,
    #[serde(default)]
    p1: f64,
    filters: usize,
    reduction: usize,
    per: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    name: Spanned<String>,
    feature: Option<Spanned<RawFeature>>,
    weight: Option<Spanned<RawWeight>>,
    input_flip: Option<Spanned<f64>>,
    filter_flip: Option<Spanned<f64>>,
    stored_flip: Option<Spanned<f64>>,
}

/// The source text and its name, to turn spans into `file:line:col`.
struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> FaultError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        FaultError::Rule {
            origin: self.origin.to_string(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn spec(&self, raw: RawFile) -> Result<FaultSpec, FaultError> {
        let feature = match raw.feature {
            Some(f) => {
                let f = f.into_inner();
                let fault = self.feature_fault(&f, "feature")?;
                let layers = match &f.layers {
                    Some(l) => self.selection(l, "feature.layers")?,
                    None => LayerSelection::Conv,
                };
                Some(FeatureSection { fault, layers })
            }
            None => None,
        };
        let weight = match raw.weight {
            Some(w) => {
                let w = w.into_inner();
                let fault = self.weight_fault(&w, "weight")?;
                let layers = match &w.layers {
                    Some(l) => self.selection(l, "weight.layers")?,
                    None => match fault {
                        WeightFault::AdSaf(_) => LayerSelection::Conv,
                        _ => LayerSelection::All,
                    },
                };
                let persistent = w.persistent.as_ref().is_none_or(|p| *p.get_ref());
                Some(WeightSection {
                    fault,
                    layers,
                    persistent,
                })
            }
            None => None,
        };
        let mut layers: Vec<LayerOverride> = Vec::new();
        for (i, l) in raw.layer.into_iter().enumerate() {
            let span = l.span();
            let l = l.into_inner();
            let name = l.name.get_ref().trim().to_string();
            let here = format!("layer[{i}]");
            if name.is_empty() {
                return Err(self.err(l.name.span(), &format!("{here}.name"), "must not be empty"));
            }
            if layers.iter().any(|o| o.name == name) {
                return Err(self.err(
                    l.name.span(),
                    &format!("{here}.name"),
                    format!("duplicate layer `{name}`; give each layer one entry"),
                ));
            }
            if l.feature.is_none()
                && l.weight.is_none()
                && l.input_flip.is_none()
                && l.filter_flip.is_none()
                && l.stored_flip.is_none()
            {
                return Err(self.err(
                    span,
                    &here,
                    format!(
                        "layer `{name}` needs a `feature` and/or a `weight` table, or \
                         `input_flip` / `filter_flip` / `stored_flip`"
                    ),
                ));
            }
            let mut flips = [0.0; 3];
            for (slot, (key, v)) in flips.iter_mut().zip([
                ("input_flip", &l.input_flip),
                ("filter_flip", &l.filter_flip),
                ("stored_flip", &l.stored_flip),
            ]) {
                if let Some(v) = v {
                    let p = *v.get_ref();
                    super::output_hit::check_prob(key, p)
                        .map_err(|(k, m)| self.err(v.span(), &format!("{here}.{k}"), m))?;
                    *slot = p;
                }
            }
            let feature = match &l.feature {
                Some(f) => {
                    let key = format!("{here}.feature");
                    if let Some(s) = &f.get_ref().layers {
                        return Err(self.err(
                            s.span(),
                            &format!("{key}.layers"),
                            "not allowed in a [[layer]] entry (it names one layer)",
                        ));
                    }
                    Some(self.feature_fault(f.get_ref(), &key)?)
                }
                None => None,
            };
            let weight = match &l.weight {
                Some(w) => {
                    let key = format!("{here}.weight");
                    let r = w.get_ref();
                    if let Some(s) = &r.layers {
                        return Err(self.err(
                            s.span(),
                            &format!("{key}.layers"),
                            "not allowed in a [[layer]] entry (it names one layer)",
                        ));
                    }
                    if let Some(s) = &r.persistent {
                        return Err(self.err(
                            s.span(),
                            &format!("{key}.persistent"),
                            "not allowed in a [[layer]] entry; set it in [weight]",
                        ));
                    }
                    Some(self.weight_fault(r, &key)?)
                }
                None => None,
            };
            layers.push(LayerOverride {
                name,
                feature,
                weight,
                input_flip: flips[0],
                filter_flip: flips[1],
                stored_flip: flips[2],
            });
        }
        let mut stuck_cells = StuckBuffers::default();
        if let Some(sb) = &raw.stuck_cells {
            for (buffer, r) in [
                (FeatureBuffer::Ifmap, &sb.ifmap),
                (FeatureBuffer::Ofmap, &sb.ofmap),
            ] {
                let Some(r) = r else { continue };
                let key = format!("stuck_cells.{}", buffer.key());
                let raw_cells = r.get_ref();
                let words = *raw_cells.words.get_ref();
                if words < 1 {
                    return Err(self.err(
                        raw_cells.words.span(),
                        &format!("{key}.words"),
                        "must be at least 1 (the buffer's size in codes)",
                    ));
                }
                let m = StuckCells {
                    words: words as usize,
                    p0: raw_cells.p0,
                    p1: raw_cells.p1,
                };
                m.validate()
                    .map_err(|(k, msg)| self.err(r.span(), &format!("{key}.{k}"), msg))?;
                match buffer {
                    FeatureBuffer::Ifmap => stuck_cells.ifmap = Some(m),
                    FeatureBuffer::Ofmap => stuck_cells.ofmap = Some(m),
                }
            }
        }
        let stuck_macs = match &raw.stuck_macs {
            None => None,
            Some(r) => {
                let raw_m = r.get_ref();
                let mut dims = [0usize; 2];
                for (d, (key, v)) in dims
                    .iter_mut()
                    .zip([("rows", &raw_m.rows), ("cols", &raw_m.cols)])
                {
                    if *v.get_ref() < 1 {
                        return Err(self.err(
                            v.span(),
                            &format!("stuck_macs.{key}"),
                            "must be at least 1 (the grid's MAC units)",
                        ));
                    }
                    *d = *v.get_ref() as usize;
                }
                let density = |d: &Option<RawDensity>| {
                    d.as_ref()
                        .map_or(StuckDensity::default(), |d| StuckDensity {
                            p0: d.p0,
                            p1: d.p1,
                        })
                };
                let key = raw_m.dataflow.get_ref();
                let serial_keys = [
                    ("filter_rows", &raw_m.filter_rows),
                    ("bits_per_cycle", &raw_m.bits_per_cycle),
                ];
                let grid = if key == "bit-serial" {
                    let mut vals = [0i64; 2];
                    for (v, (name, raw)) in vals.iter_mut().zip(serial_keys) {
                        let Some(raw) = raw else {
                            return Err(self.err(
                                r.span(),
                                &format!("stuck_macs.{name}"),
                                "missing: a bit-serial grid needs filter_rows and bits_per_cycle",
                            ));
                        };
                        if !(1..=i64::from(u16::MAX)).contains(raw.get_ref()) {
                            return Err(self.err(
                                raw.span(),
                                &format!("stuck_macs.{name}"),
                                "must be a positive count",
                            ));
                        }
                        *v = *raw.get_ref();
                    }
                    let choice = |raw: &Option<Spanned<String>>,
                                  name: &str,
                                  [off, on]: [&str; 2]|
                     -> Result<bool, FaultError> {
                        match raw {
                            None => Ok(false),
                            Some(v) if v.get_ref() == off => Ok(false),
                            Some(v) if v.get_ref() == on => Ok(true),
                            Some(v) => Err(self.err(
                                v.span(),
                                &format!("stuck_macs.{name}"),
                                format!("expected \"{off}\" (default) or \"{on}\""),
                            )),
                        }
                    };
                    MacGrid::BitSerial {
                        filter_rows: vals[0] as usize,
                        bits_per_cycle: u8::try_from(vals[1]).unwrap_or(u8::MAX),
                        serial_weights: choice(&raw_m.serial, "serial", ["activations", "both"])?,
                        run_time_precision: choice(
                            &raw_m.precision,
                            "precision",
                            ["per-layer", "per-group"],
                        )?,
                    }
                } else {
                    if let Some((name, Some(raw))) =
                        serial_keys.into_iter().find(|(_, v)| v.is_some())
                    {
                        return Err(self.err(
                            raw.span(),
                            &format!("stuck_macs.{name}"),
                            "only for dataflow = \"bit-serial\"",
                        ));
                    }
                    if let Some((name, Some(raw))) =
                        [("serial", &raw_m.serial), ("precision", &raw_m.precision)]
                            .into_iter()
                            .find(|(_, v)| v.is_some())
                    {
                        return Err(self.err(
                            raw.span(),
                            &format!("stuck_macs.{name}"),
                            "only for dataflow = \"bit-serial\"",
                        ));
                    }
                    MacGrid::from_key(key).ok_or_else(|| {
                        self.err(
                            raw_m.dataflow.span(),
                            "stuck_macs.dataflow",
                            "expected \"os\", \"ws\", \"is\" or \"bit-serial\"",
                        )
                    })?
                };
                let m = StuckMacs {
                    grid,
                    rows: dims[0],
                    cols: dims[1],
                    density: [
                        density(&raw_m.act),
                        density(&raw_m.weight),
                        density(&raw_m.product),
                        density(&raw_m.accumulator),
                    ],
                };
                m.validate()
                    .map_err(|(k, msg)| self.err(r.span(), &format!("stuck_macs.{k}"), &msg))?;
                Some(m)
            }
        };
        Ok(FaultSpec {
            description: raw.description,
            feature,
            weight,
            layers,
            stuck_cells,
            stuck_macs,
        })
    }

    fn selection(&self, v: &Spanned<toml::Value>, key: &str) -> Result<LayerSelection, FaultError> {
        let expected = "expected \"conv\", \"all\" or a list of layer names";
        match v.get_ref() {
            toml::Value::String(s) if s == "conv" => Ok(LayerSelection::Conv),
            toml::Value::String(s) if s == "all" => Ok(LayerSelection::All),
            toml::Value::String(s) => Err(self.err(v.span(), key, format!("`{s}`: {expected}"))),
            toml::Value::Array(a) => {
                let mut names = Vec::new();
                for x in a {
                    match x.as_str() {
                        Some(s) if !s.trim().is_empty() => names.push(s.trim().to_string()),
                        _ => {
                            return Err(self.err(
                                v.span(),
                                key,
                                "layer names must be non-empty strings",
                            ))
                        }
                    }
                }
                if names.is_empty() {
                    return Err(self.err(v.span(), key, "the list of layer names is empty"));
                }
                Ok(LayerSelection::Names(names))
            }
            other => Err(self.err(
                v.span(),
                key,
                format!("found a {}: {expected}", other.type_str()),
            )),
        }
    }

    /// Error if a key is present that is not a parameter of `kind`.
    fn only(
        &self,
        present: &[(&str, Option<Range<usize>>)],
        allowed: &[&str],
        kind: &str,
        prefix: &str,
    ) -> Result<(), FaultError> {
        for (k, span) in present {
            if let Some(span) = span {
                if !allowed.contains(k) {
                    let params = if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    };
                    return Err(self.err(
                        span.clone(),
                        &format!("{prefix}.{k}"),
                        format!("not a parameter of kind `{kind}` (its parameters: {params})"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn feature_fault(&self, f: &RawFeature, prefix: &str) -> Result<FeatureFault, FaultError> {
        let kind = f.kind.get_ref().as_str();
        let present = [
            ("p", f.p.as_ref().map(Spanned::span)),
            ("p_out", f.p_out.as_ref().map(Spanned::span)),
            ("bit_weights", f.bit_weights.as_ref().map(Spanned::span)),
            ("sign", f.sign.as_ref().map(Spanned::span)),
            ("multiplicity", f.multiplicity.as_ref().map(Spanned::span)),
            ("up", f.up.as_ref().map(Spanned::span)),
            ("stream", f.stream.as_ref().map(Spanned::span)),
        ];
        let need_p = |what: &str| -> Result<f64, FaultError> {
            f.p.as_ref().map(|p| *p.get_ref()).ok_or_else(|| {
                self.err(
                    f.kind.span(),
                    &format!("{prefix}.p"),
                    format!("kind `{kind}` needs `p` ({what})"),
                )
            })
        };
        let fault = match kind {
            "none" => {
                self.only(&present, &[], kind, prefix)?;
                FeatureFault::Off
            }
            "mibb" => {
                self.only(&present, &["p"], kind, prefix)?;
                FeatureFault::Mibb(Mibb {
                    p: need_p("per-MAC fault probability")?,
                })
            }
            "bitflip" => {
                self.only(&present, &["p"], kind, prefix)?;
                FeatureFault::BitFlip(BitFlip {
                    p: need_p("per-bit flip probability")?,
                })
            }
            "output_hit" => {
                self.only(
                    &present,
                    &[
                        "p_out",
                        "bit_weights",
                        "sign",
                        "multiplicity",
                        "up",
                        "stream",
                    ],
                    kind,
                    prefix,
                )?;
                let missing = |k: &str| {
                    self.err(
                        f.kind.span(),
                        &format!("{prefix}.{k}"),
                        format!("kind `output_hit` needs `{k}`"),
                    )
                };
                let p_out = *f.p_out.as_ref().ok_or_else(|| missing("p_out"))?.get_ref();
                let bit_weights = f
                    .bit_weights
                    .as_ref()
                    .ok_or_else(|| missing("bit_weights"))?
                    .get_ref()
                    .clone();
                let sign = match &f.sign {
                    None => HitSign::Random,
                    Some(s) => match s.get_ref().as_str() {
                        "random" => HitSign::Random,
                        "flip" => HitSign::Flip,
                        o => {
                            return Err(self.err(
                                s.span(),
                                &format!("{prefix}.sign"),
                                format!("`{o}`: expected \"random\" or \"flip\""),
                            ))
                        }
                    },
                };
                let multiplicity = f
                    .multiplicity
                    .as_ref()
                    .map_or_else(|| vec![1.0], |m| m.get_ref().clone());
                let up = f.up.as_ref().map_or_else(Vec::new, |v| v.get_ref().clone());
                let stream = match &f.stream {
                    None => None,
                    Some(s) => {
                        let r = s.get_ref();
                        let axis = StreamAxis::parse(r.axis.get_ref()).ok_or_else(|| {
                            self.err(
                                r.axis.span(),
                                &format!("{prefix}.stream.axis"),
                                format!(
                                    "`{}`: expected \"pixels\" or \"channels\"",
                                    r.axis.get_ref()
                                ),
                            )
                        })?;
                        Some(Box::new(StreamHits {
                            axis,
                            length: r.length,
                            events: r.events,
                            from_start: r.from_start,
                            shift: r.shift,
                            up: r.up.clone(),
                            up_by_stream: r.up_by_stream.clone(),
                            operand: r.operand.clone(),
                            operand_negative: r.operand_negative,
                            gains: r.gains.clone(),
                            negatives: r.negatives.clone(),
                            profile: r.profile.clone(),
                        }))
                    }
                };
                FeatureFault::OutputHit(OutputHit {
                    p_out,
                    bit_weights,
                    sign,
                    multiplicity,
                    up,
                    stream,
                })
            }
            o => {
                return Err(self.err(
                    f.kind.span(),
                    &format!("{prefix}.kind"),
                    format!(
                        "unknown feature fault `{o}`; expected \"mibb\", \"bitflip\", \
                         \"output_hit\" or \"none\""
                    ),
                ))
            }
        };
        if let Err((k, m)) = fault.validate() {
            // `stream.events` is reported at the `stream` table.
            let span = present
                .iter()
                .find(|(name, _)| *name == k.split('.').next().unwrap_or(k))
                .and_then(|(_, s)| s.clone())
                .unwrap_or_else(|| f.kind.span());
            return Err(self.err(span, &format!("{prefix}.{k}"), m));
        }
        Ok(fault)
    }

    fn per_bit(&self, v: &Spanned<toml::Value>, key: &str) -> Result<PerBit, FaultError> {
        let num = |x: &toml::Value| match x {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        match v.get_ref() {
            toml::Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    out.push(num(x).ok_or_else(|| {
                        self.err(
                            v.span(),
                            key,
                            format!("entry {i} is a {}, expected a number", x.type_str()),
                        )
                    })?);
                }
                Ok(PerBit::Bits(out))
            }
            x => num(x).map(PerBit::Uniform).ok_or_else(|| {
                self.err(
                    v.span(),
                    key,
                    format!(
                        "found a {}, expected a probability or a list of per-bit probabilities",
                        x.type_str()
                    ),
                )
            }),
        }
    }

    fn weight_fault(&self, w: &RawWeight, prefix: &str) -> Result<WeightFault, FaultError> {
        let kind = w.kind.get_ref().as_str();
        let present = [
            ("p", w.p.as_ref().map(Spanned::span)),
            ("p0", w.p0.as_ref().map(Spanned::span)),
            ("p1", w.p1.as_ref().map(Spanned::span)),
            ("sa1_fraction", w.sa1_fraction.as_ref().map(Spanned::span)),
            ("sa1_sign", w.sa1_sign.as_ref().map(Spanned::span)),
            ("shared", w.shared.as_ref().map(Spanned::span)),
        ];
        let fault = match kind {
            "none" => {
                self.only(&present, &[], kind, prefix)?;
                WeightFault::Off
            }
            "stuck_at" => {
                self.only(&present, &["p0", "p1", "shared"], kind, prefix)?;
                if w.p0.is_none() && w.p1.is_none() && w.shared.is_none() {
                    return Err(self.err(
                        w.kind.span(),
                        &format!("{prefix}.p0"),
                        "kind `stuck_at` needs `p0`, `p1` and/or `shared`",
                    ));
                }
                let shared = match &w.shared {
                    None => None,
                    Some(sh) => {
                        let r = sh.get_ref();
                        let per = match r.per.get_ref().as_str() {
                            "term" => ShareUnit::Term,
                            "channel" => ShareUnit::Channel,
                            o => {
                                return Err(self.err(
                                    r.per.span(),
                                    &format!("{prefix}.shared.per"),
                                    format!("`{o}`: expected \"term\" or \"channel\""),
                                ))
                            }
                        };
                        Some(SharedStuck {
                            p0: r.p0,
                            p1: r.p1,
                            filters: r.filters,
                            reduction: r.reduction,
                            per,
                        })
                    }
                };
                let get = |v: &Option<Spanned<toml::Value>>, k: &str| match v {
                    Some(v) => self.per_bit(v, &format!("{prefix}.{k}")),
                    None => Ok(PerBit::Uniform(0.0)),
                };
                WeightFault::StuckAt(StuckAt {
                    p0: get(&w.p0, "p0")?,
                    p1: get(&w.p1, "p1")?,
                    shared,
                })
            }
            "adsaf" => {
                self.only(&present, &["p", "sa1_fraction", "sa1_sign"], kind, prefix)?;
                let p =
                    *w.p.as_ref()
                        .ok_or_else(|| {
                            self.err(
                                w.kind.span(),
                                &format!("{prefix}.p"),
                                "kind `adsaf` needs `p` (per-weight fault probability)",
                            )
                        })?
                        .get_ref();
                let sa1_sign = match &w.sa1_sign {
                    None => Sa1Sign::Random,
                    Some(s) => match s.get_ref().as_str() {
                        "random" => Sa1Sign::Random,
                        "own" => Sa1Sign::Own,
                        o => {
                            return Err(self.err(
                                s.span(),
                                &format!("{prefix}.sa1_sign"),
                                format!("`{o}`: expected \"random\" or \"own\""),
                            ))
                        }
                    },
                };
                WeightFault::AdSaf(AdSaf {
                    p,
                    sa1_fraction: w
                        .sa1_fraction
                        .as_ref()
                        .map_or(AdSaf::PAPER_SA1_FRACTION, |s| *s.get_ref()),
                    sa1_sign,
                })
            }
            o => {
                return Err(self.err(
                    w.kind.span(),
                    &format!("{prefix}.kind"),
                    format!(
                        "unknown weight fault `{o}`; expected \"stuck_at\", \"adsaf\" or \"none\""
                    ),
                ))
            }
        };
        if let Err((k, m)) = fault.validate() {
            let head = k.split('.').next().unwrap_or(k);
            let span = present
                .iter()
                .find(|(name, _)| *name == head)
                .and_then(|(_, s)| s.clone())
                .unwrap_or_else(|| w.kind.span());
            return Err(self.err(span, &format!("{prefix}.{k}"), m));
        }
        Ok(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented example in the module doc is a valid fault model.
    #[test]
    fn module_doc_example_parses() {
        let src = include_str!("model_file.rs");
        let mut inside = false;
        let mut text = String::new();
        for line in src.lines() {
            let Some(doc) = line.strip_prefix("//!") else {
                continue;
            };
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            match (inside, doc.trim()) {
                (false, "```toml") => inside = true,
                (true, "```") => break,
                (true, _) => {
                    text.push_str(doc);
                    text.push('\n');
                }
                _ => {}
            }
        }
        assert!(text.contains("[[layer]]"), "example not found");
        let m = FaultModel::parse_str(&text, "module doc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.spec().layers.len(), 2);
        assert!(m.check_bits(8, 8).is_ok());
        assert!(m.spec().description.is_some());
    }
}
