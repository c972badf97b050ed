//! The data of a fault model: which algorithmic model applies to which
//! layer, with which parameters. [`FaultSpec`] is what a fault-model file
//! holds (see [`super::model_file`] for the TOML form) and what derivation
//! from hardware rates produces; [`super::FaultModel`] turns it into
//! injectors.

use rand::Rng;

use super::adsaf::AdSaf;
use super::bitflip::BitFlip;
use super::mibb::Mibb;
use super::output_hit::OutputHit;
use super::stuck_at::StuckAt;
use super::stuck_cells::{FeatureBuffer, StuckBuffers};
use super::stuck_macs::StuckMacs;
use super::LayerSite;

/// A feature (layer output) fault model.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureFault {
    /// No feature faults (disables a layer in an override).
    Off,
    Mibb(Mibb),
    BitFlip(BitFlip),
    OutputHit(OutputHit),
}

impl FeatureFault {
    /// The `kind` name in fault-model files.
    pub fn kind(&self) -> &'static str {
        match self {
            FeatureFault::Off => "none",
            FeatureFault::Mibb(_) => "mibb",
            FeatureFault::BitFlip(_) => "bitflip",
            FeatureFault::OutputHit(_) => "output_hit",
        }
    }

    /// Check the parameter rules; returns the offending key and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self {
            FeatureFault::Off => Ok(()),
            FeatureFault::Mibb(m) => super::output_hit::check_prob("p", m.p),
            FeatureFault::BitFlip(m) => super::output_hit::check_prob("p", m.p),
            FeatureFault::OutputHit(m) => m.validate(),
        }
    }

    /// Apply to one layer's output codes.
    pub fn apply<R: Rng + ?Sized>(&self, site: &LayerSite, codes: &mut [i32], rng: &mut R) {
        let bits = site.format.bits;
        match self {
            FeatureFault::Off => {}
            FeatureFault::Mibb(m) => m.apply(site.macs_per_output, bits, codes, rng),
            FeatureFault::BitFlip(m) => m.apply(bits, codes, rng),
            FeatureFault::OutputHit(m) => m.apply_at(site, codes, rng),
        }
    }

    /// [`apply`](Self::apply) on codes read on demand (the same draws and
    /// changes; the skip-sampled models read only the codes they hit).
    pub fn apply_sparse<R: Rng + ?Sized>(
        &self,
        site: &LayerSite,
        codes: &mut super::SparseCodes,
        rng: &mut R,
    ) {
        let bits = site.format.bits;
        match self {
            FeatureFault::Off => {}
            FeatureFault::Mibb(m) => m.apply(site.macs_per_output, bits, codes, rng),
            FeatureFault::BitFlip(m) => m.apply(bits, codes, rng),
            FeatureFault::OutputHit(m) => {
                super::sparse::inject_dense(codes, |v| m.apply_at(site, v, rng))
            }
        }
    }
}

/// A weight fault model.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightFault {
    /// No weight faults (disables a layer in an override).
    Off,
    StuckAt(StuckAt),
    AdSaf(AdSaf),
}

impl WeightFault {
    /// The `kind` name in fault-model files.
    pub fn kind(&self) -> &'static str {
        match self {
            WeightFault::Off => "none",
            WeightFault::StuckAt(_) => "stuck_at",
            WeightFault::AdSaf(_) => "adsaf",
        }
    }

    /// Check the parameter rules; returns the offending key and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self {
            WeightFault::Off => Ok(()),
            WeightFault::StuckAt(m) => m.validate(),
            WeightFault::AdSaf(m) => m.validate(),
        }
    }

    /// Apply to one layer's weight codes.
    pub fn apply<R: Rng + ?Sized>(&self, site: &LayerSite, codes: &mut [i32], rng: &mut R) {
        let bits = site.format.bits;
        match self {
            WeightFault::Off => {}
            WeightFault::StuckAt(m) => m.apply_layer(site, codes, rng),
            WeightFault::AdSaf(m) => m.apply(bits, codes, rng),
        }
    }
}

/// Which layers the default model of a section applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSelection {
    /// Conv layers only (not the linear classifier) — the paper's choice.
    Conv,
    /// Every conv and linear layer.
    All,
    /// The named layers only.
    Names(Vec<String>),
}

impl LayerSelection {
    /// Does the selection include this site?
    pub fn selects(&self, site: &LayerSite) -> bool {
        match self {
            LayerSelection::Conv => site.is_conv,
            LayerSelection::All => true,
            LayerSelection::Names(v) => v.iter().any(|n| n == site.name),
        }
    }
}

/// The default feature model and the layers it applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSection {
    pub fault: FeatureFault,
    pub layers: LayerSelection,
}

/// The default weight model, the layers it applies to, and how long a
/// sample lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSection {
    pub fault: WeightFault,
    pub layers: LayerSelection,
    /// True: sampled once per simulated chip (inference). False: resampled
    /// at every forward (fault-tolerant training).
    pub persistent: bool,
}

/// Per-layer models that replace the defaults for one node (by name).
/// `None` keeps the default; `Some(Off)` disables faults on the layer. An
/// override applies whatever the section's layer selection says.
///
/// `input_flip`, `filter_flip` and `stored_flip` are the three SRAM-buffer
/// hook points (derived from `sram.ifmap` / `sram.filter` / `sram.ofmap`
/// transients): the probability that each bit of each input code is
/// flipped as this layer reads it (the flip is seen by this layer only;
/// other readers of the same tensor see the clean code), that each bit of
/// each weight code is flipped for one image's pass through the layer
/// (resampled per image), and that each bit of each output code is
/// flipped after the fused activation, as every later node reads it.
/// 0 = none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerOverride {
    pub name: String,
    pub feature: Option<FeatureFault>,
    pub weight: Option<WeightFault>,
    pub input_flip: f64,
    pub filter_flip: f64,
    pub stored_flip: f64,
}

impl LayerOverride {
    /// True when the entry has SRAM-buffer flips.
    pub fn has_buffer_flips(&self) -> bool {
        self.input_flip > 0.0 || self.filter_flip > 0.0 || self.stored_flip > 0.0
    }

    /// The entry's three buffer-flip probabilities, with their file keys.
    pub fn buffer_flips(&self) -> [(&'static str, f64); 3] {
        [
            ("input_flip", self.input_flip),
            ("filter_flip", self.filter_flip),
            ("stored_flip", self.stored_flip),
        ]
    }
}

/// A complete algorithmic fault model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    /// Free text: where the model came from (e.g. derivation inputs).
    pub description: Option<String>,
    pub feature: Option<FeatureSection>,
    pub weight: Option<WeightSection>,
    pub layers: Vec<LayerOverride>,
    /// Stuck cells of the feature-map buffers (every layer, per chip).
    pub stuck_cells: StuckBuffers,
    /// Stuck bits of the MAC units of an output-stationary grid (every
    /// layer, per chip).
    pub stuck_macs: Option<StuckMacs>,
}

impl FaultSpec {
    /// Check every parameter rule and that layer names are unique. The
    /// error names the place (`feature.p`, `layer[2].weight.p0`, ...).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(f) = &self.feature {
            f.fault
                .validate()
                .map_err(|(k, m)| format!("feature.{k}: {m}"))?;
        }
        if let Some(w) = &self.weight {
            w.fault
                .validate()
                .map_err(|(k, m)| format!("weight.{k}: {m}"))?;
        }
        for b in [FeatureBuffer::Ifmap, FeatureBuffer::Ofmap] {
            if let Some(m) = self.stuck_cells.get(b) {
                m.validate()
                    .map_err(|(k, msg)| format!("stuck_cells.{}.{k}: {msg}", b.key()))?;
            }
        }
        if let Some(m) = &self.stuck_macs {
            m.validate()
                .map_err(|(k, msg)| format!("stuck_macs.{k}: {msg}"))?;
        }
        for (i, l) in self.layers.iter().enumerate() {
            if self.layers[..i].iter().any(|o| o.name == l.name) {
                return Err(format!("layer[{i}].name: duplicate layer `{}`", l.name));
            }
            if let Some(f) = &l.feature {
                f.validate()
                    .map_err(|(k, m)| format!("layer[{i}].feature.{k}: {m}"))?;
            }
            if let Some(w) = &l.weight {
                w.validate()
                    .map_err(|(k, m)| format!("layer[{i}].weight.{k}: {m}"))?;
            }
            for (key, p) in l.buffer_flips() {
                super::output_hit::check_prob(key, p)
                    .map_err(|(k, m)| format!("layer[{i}].{k}: {m}"))?;
            }
        }
        Ok(())
    }

    /// True when some layer can get feature faults.
    pub fn has_feature_faults(&self) -> bool {
        self.feature
            .as_ref()
            .is_some_and(|f| f.fault != FeatureFault::Off)
            || !self.stuck_cells.is_empty()
            || self.stuck_macs.is_some_and(|m| !m.is_empty())
            || self.layers.iter().any(|l| {
                l.feature.as_ref().is_some_and(|f| *f != FeatureFault::Off) || l.has_buffer_flips()
            })
    }

    /// True when some layer has SRAM-buffer flips (`input_flip`,
    /// `filter_flip`, `stored_flip`).
    pub fn has_buffer_flips(&self) -> bool {
        self.layers.iter().any(LayerOverride::has_buffer_flips)
    }

    /// True when some layer can get weight faults.
    pub fn has_weight_faults(&self) -> bool {
        self.weight
            .as_ref()
            .is_some_and(|w| w.fault != WeightFault::Off)
            || self
                .layers
                .iter()
                .any(|l| l.weight.as_ref().is_some_and(|w| *w != WeightFault::Off))
    }

    /// Whether weight samples last a chip (default true without a section).
    pub fn weight_persistent(&self) -> bool {
        self.weight.as_ref().is_none_or(|w| w.persistent)
    }
}
