//! Per-layer dispatch: the injectors the engine calls. For each hook point
//! they pick the layer's model — its `[[layer]]` override if there is one,
//! else the section default if the section's layer selection includes the
//! layer, else nothing — and apply it.

use std::collections::HashMap;

use rand_xoshiro::Xoshiro256PlusPlus;

use super::spec::{FaultSpec, FeatureFault, LayerSelection, WeightFault};
use super::stuck_cells::{FeatureBuffer, StuckBuffers};
use super::stuck_macs::StuckMacs;
use super::{FeatureInjector, LayerSite, WeightInjector};

/// Feature faults of a [`FaultSpec`], per layer.
#[derive(Debug, Clone)]
pub struct LayeredFeature {
    default: FeatureFault,
    selection: LayerSelection,
    overrides: HashMap<String, FeatureFault>,
    /// Per layer: [input_flip, filter_flip, stored_flip] of its SRAM
    /// buffers.
    buffer_flips: HashMap<String, [f64; 3]>,
    /// Stuck cells of the feature-map buffers.
    stuck_cells: StuckBuffers,
    /// Stuck bits of the MAC units.
    stuck_macs: Option<StuckMacs>,
}

impl LayeredFeature {
    pub fn from_spec(spec: &FaultSpec) -> LayeredFeature {
        let (default, selection) = match &spec.feature {
            Some(s) => (s.fault.clone(), s.layers.clone()),
            None => (FeatureFault::Off, LayerSelection::Conv),
        };
        let overrides = spec
            .layers
            .iter()
            .filter_map(|l| l.feature.clone().map(|f| (l.name.clone(), f)))
            .collect();
        let buffer_flips = spec
            .layers
            .iter()
            .filter(|l| l.has_buffer_flips())
            .map(|l| (l.name.clone(), l.buffer_flips().map(|(_, p)| p)))
            .collect();
        LayeredFeature {
            default,
            selection,
            overrides,
            buffer_flips,
            stuck_cells: spec.stuck_cells,
            stuck_macs: spec.stuck_macs.filter(|m| !m.is_empty()),
        }
    }

    /// The model that applies at `site` (`Off` when none).
    pub fn model_for(&self, site: &LayerSite) -> &FeatureFault {
        match self.overrides.get(site.name) {
            Some(f) => f,
            None if self.selection.selects(site) => &self.default,
            None => &FeatureFault::Off,
        }
    }
}

impl FeatureInjector for LayeredFeature {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.model_for(site).apply(site, codes, rng);
    }

    fn inject_sparse(
        &self,
        site: &LayerSite,
        codes: &mut super::SparseCodes,
        rng: &mut Xoshiro256PlusPlus,
    ) {
        self.model_for(site).apply_sparse(site, codes, rng);
    }

    fn stored_flip(&self, site: &LayerSite) -> f64 {
        self.buffer_flips.get(site.name).map_or(0.0, |f| f[2])
    }

    fn input_flip(&self, site: &LayerSite) -> f64 {
        self.buffer_flips.get(site.name).map_or(0.0, |f| f[0])
    }

    fn filter_flip(&self, site: &LayerSite) -> f64 {
        self.buffer_flips.get(site.name).map_or(0.0, |f| f[1])
    }

    fn has_stuck_cells(&self, buffer: FeatureBuffer) -> bool {
        self.stuck_cells.get(buffer).is_some()
    }

    fn inject_stuck(
        &self,
        site: &LayerSite,
        buffer: FeatureBuffer,
        _image: u64,
        codes: &mut [i32],
    ) {
        self.stuck_cells
            .apply(buffer, site.draw, site.format.bits, codes);
    }

    fn has_stuck_macs(&self) -> bool {
        self.stuck_macs.is_some()
    }

    #[allow(clippy::too_many_arguments)]
    fn inject_macs(
        &self,
        site: &LayerSite,
        layer: &crate::quant::MacLayer,
        input: &[i32],
        dp: &crate::fixed::Datapath,
        _image: u64,
        clean_acc: Option<&[i32]>,
        codes: &mut [i32],
    ) {
        if let Some(m) = &self.stuck_macs {
            m.apply(site.draw, layer, input, dp, clean_acc, codes);
        }
    }
}

/// Weight faults of a [`FaultSpec`], per layer.
#[derive(Debug, Clone)]
pub struct LayeredWeight {
    default: WeightFault,
    selection: LayerSelection,
    overrides: HashMap<String, WeightFault>,
}

impl LayeredWeight {
    pub fn from_spec(spec: &FaultSpec) -> LayeredWeight {
        let (default, selection) = match &spec.weight {
            Some(s) => (s.fault.clone(), s.layers.clone()),
            None => (WeightFault::Off, LayerSelection::All),
        };
        let overrides = spec
            .layers
            .iter()
            .filter_map(|l| l.weight.clone().map(|w| (l.name.clone(), w)))
            .collect();
        LayeredWeight {
            default,
            selection,
            overrides,
        }
    }

    /// The model that applies at `site` (`Off` when none).
    pub fn model_for(&self, site: &LayerSite) -> &WeightFault {
        match self.overrides.get(site.name) {
            Some(w) => w,
            None if self.selection.selects(site) => &self.default,
            None => &WeightFault::Off,
        }
    }
}

impl WeightInjector for LayeredWeight {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.model_for(site).apply(site, codes, rng);
    }
}
