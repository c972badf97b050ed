//! [`EngineChip`]: a chip simulated by the fixed-point fast engine under an
//! algorithmic [`FaultModel`].
//!
//! Chip `c` of seed `s` is exactly trial `c` of `ftnas infer --seed s`:
//! weight faults are drawn once per chip ([`QModel::with_weight_faults`]
//! with trial `c`, whatever the model file's `persistent` says), feature
//! faults per image at every hook point from `fault::stream(s, c, image,
//! node)`.
//!
//! What counts as a fault: a code the injector changed. Site class
//! `weight`: each weight code that differs from the fault-free code, for
//! the whole chip. Site class `feature`: each requantized output code an
//! injector changed, for its image. Draws that leave a code as it was (a
//! stuck-at bit equal to the stored bit, `+2^b` on a saturated code) are
//! invisible through the injector traits and not counted.
//!
//! Input-buffer flips (`input_flip` of a fault-model file) are site class
//! `feature` too: each input code of a layer's own copy of its input that
//! a flip changed, for its image. The engine draws them itself
//! ([`crate::engine::layer_input`]), not through the injector; a bit flip
//! always changes its code and which codes are hit depends only on the
//! layer's stream, so they are counted by replaying the draws.
//! Filter-buffer flips (`filter_flip`) are counted by replaying too, as
//! site class `weight` with the image's scope: each weight code of the
//! layer that a flip changed for that image
//! ([`crate::engine::filter_flips`]).
//!
//! Stuck cells of the feature-map buffers (`[stuck_cells]`) are site class
//! `feature` with the image's scope: each code they changed in a layer's
//! copy of its input (after its flips; a code both flipped and stuck counts
//! twice) or in its stored output, for that image (the engine tells the
//! injector the image of these calls). Stuck MAC-unit bits
//! (`[stuck_macs]`) likewise: each pre-activation output code of a layer
//! they changed for that image.
//!
//! The feature injector is wrapped to see what it changes; the engine does
//! not tell an injector which image it is working on, but it seeds each
//! call's rng from the image index, so the wrapper recognises the image by
//! the first output of that rng (a table built per chip from the same
//! streams; a collision or unknown stream is an error, never a guess).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{CampaignError, ChipOutcome, ChipSimulator, FaultRecord, FaultScope};
use crate::engine::{Engine, FastEngine, FeatureFaults};
use crate::fault::{
    BitFlip, FaultModel, FeatureBuffer, FeatureFault, FeatureInjector, LayerSite, SparseCodes,
};
use crate::quant::{QModel, QOp};

/// Site class index of feature faults.
const FEATURE: usize = 0;
/// Site class index of weight faults.
const WEIGHT: usize = 1;

/// The fast engine running a quantized model under an algorithmic fault
/// model, one chip per campaign chip.
pub struct EngineChip {
    model: QModel,
    faults: FaultModel,
    /// MAC layer names, in node order (the campaign's layers).
    layer_names: Vec<String>,
    /// Node id -> index into `layer_names`.
    layer_of_node: HashMap<usize, usize>,
}

impl EngineChip {
    pub fn new(model: QModel, faults: FaultModel) -> EngineChip {
        let mut layer_names = Vec::new();
        let mut layer_of_node = HashMap::new();
        for l in model.mac_layers() {
            layer_of_node.insert(l.node, layer_names.len());
            layer_names.push(l.name.clone());
        }
        EngineChip {
            model,
            faults,
            layer_names,
            layer_of_node,
        }
    }

    pub fn model(&self) -> &QModel {
        &self.model
    }

    fn run(
        &self,
        model: &QModel,
        images: &[f32],
        faults: Option<FeatureFaults<'_>>,
        chip: Option<u64>,
    ) -> Result<Vec<Vec<i32>>, CampaignError> {
        FastEngine
            .run(model, images, 0, faults)
            .map_err(|e| CampaignError::Simulator {
                chip,
                message: e.to_string(),
            })
    }
}

/// Feature injector that records which codes the wrapped one changed.
struct Recorder<'a> {
    inner: &'a dyn FeatureInjector,
    /// (node, first output of the call's rng) -> image index.
    image_of: HashMap<(usize, u64), usize>,
    /// Nodes with a feature model (every call there must be in `image_of`).
    modeled: HashSet<usize>,
    /// (node, image, changed codes).
    hits: Mutex<Vec<(usize, usize, u64)>>,
    /// A call whose stream is not in `image_of`.
    unknown: Mutex<Option<String>>,
}

impl FeatureInjector for Recorder<'_> {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        let found = self.image_of.get(&(site.node, rng.clone().next_u64()));
        LAST_IMAGE.with(|c| c.set(found.map(|&i| (site.node, i))));
        let Some(&image) = found else {
            // Layers without a feature model are not in the table.
            if self.modeled.contains(&site.node) {
                self.note_unknown(format!(
                    "layer {}: a feature-fault stream that is not one of this chip's images",
                    site.name
                ));
            }
            self.inner.inject(site, codes, rng);
            return;
        };
        let before = codes.to_vec();
        self.inner.inject(site, codes, rng);
        self.record(site.node, image, &before, codes);
    }

    fn inject_stored(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        match LAST_IMAGE.with(|c| c.take()) {
            Some((node, image)) if node == site.node => {
                let before = codes.to_vec();
                self.inner.inject_stored(site, codes, rng);
                self.record(site.node, image, &before, codes);
            }
            _ => self.inner.inject_stored(site, codes, rng),
        }
    }

    fn stored_flip(&self, site: &LayerSite) -> f64 {
        self.inner.stored_flip(site)
    }

    // Input- and filter-buffer flips are drawn by the engine on its copies
    // of the layer's input and weights; `EngineChip::buffer_flip_hits`
    // counts them.
    fn input_flip(&self, site: &LayerSite) -> f64 {
        self.inner.input_flip(site)
    }

    fn filter_flip(&self, site: &LayerSite) -> f64 {
        self.inner.filter_flip(site)
    }

    fn has_stuck_cells(&self, buffer: FeatureBuffer) -> bool {
        self.inner.has_stuck_cells(buffer)
    }

    // The engine passes the image index (the campaign runs from image 0).
    fn inject_stuck(&self, site: &LayerSite, buffer: FeatureBuffer, image: u64, codes: &mut [i32]) {
        let before = codes.to_vec();
        self.inner.inject_stuck(site, buffer, image, codes);
        self.record(site.node, image as usize, &before, codes);
    }

    fn has_stuck_macs(&self) -> bool {
        self.inner.has_stuck_macs()
    }

    #[allow(clippy::too_many_arguments)]
    fn inject_macs(
        &self,
        site: &LayerSite,
        layer: &crate::quant::MacLayer,
        input: &[i32],
        dp: &crate::fixed::Datapath,
        image: u64,
        clean_acc: Option<&[i32]>,
        codes: &mut [i32],
    ) {
        let before = codes.to_vec();
        self.inner
            .inject_macs(site, layer, input, dp, image, clean_acc, codes);
        self.record(site.node, image as usize, &before, codes);
    }
}

thread_local! {
    /// (node, image) of the last [`Recorder::inject`] call on this thread:
    /// the engine calls `inject_stored` right after it, on the same thread,
    /// with the stream advanced past a fingerprint.
    static LAST_IMAGE: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

impl Recorder<'_> {
    fn record(&self, node: usize, image: usize, before: &[i32], after: &[i32]) {
        let changed = before.iter().zip(after).filter(|(a, b)| a != b).count() as u64;
        if changed > 0 {
            self.hits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((node, image, changed));
        }
    }

    fn note_unknown(&self, message: String) {
        let mut u = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        u.get_or_insert(message);
    }
}

impl EngineChip {
    /// `(site class, node, image, changed codes)` of the input- and
    /// filter-buffer flips the engine draws for chip `chip` (trial) of seed
    /// `seed`: the draws of [`crate::engine::layer_input`] and
    /// [`crate::engine::filter_flips`] replayed on the layer's streams.
    fn buffer_flip_hits(
        &self,
        injector: &dyn FeatureInjector,
        seed: u64,
        chip: u64,
        n_images: usize,
    ) -> Vec<(usize, usize, usize, u64)> {
        let mut hits = Vec::new();
        let faults = FeatureFaults {
            injector,
            seed,
            trial: chip,
        };
        for l in self.model.mac_layers() {
            let p = injector.input_flip(&l.feature_site());
            let unchanged = |_: usize| 0;
            for image in 0..n_images {
                if p > 0.0 {
                    let mut rng = crate::fault::input_stream(seed, chip, image as u64, l.node);
                    let mut codes = SparseCodes::new(l.in_shape.numel(), &unchanged);
                    BitFlip { p }.apply(l.in_format.bits, &mut codes, &mut rng);
                    let changed = codes.hits().len() as u64;
                    if changed > 0 {
                        hits.push((FEATURE, l.node, image, changed));
                    }
                }
                let changed = crate::engine::filter_flips(l, image as u64, Some(faults)).len();
                if changed > 0 {
                    hits.push((WEIGHT, l.node, image, changed as u64));
                }
            }
        }
        hits
    }
}

impl ChipSimulator for EngineChip {
    fn name(&self) -> String {
        "fast-engine".into()
    }

    fn site_classes(&self) -> Vec<String> {
        vec!["feature".into(), "weight".into()]
    }

    fn layers(&self) -> Vec<String> {
        self.layer_names.clone()
    }

    fn clean_logits(&self, images: &[f32]) -> Result<Vec<Vec<i32>>, CampaignError> {
        self.run(&self.model, images, None, None)
    }

    fn run_chip(&self, chip: u64, seed: u64, images: &[f32]) -> Result<ChipOutcome, CampaignError> {
        let mut faults = Vec::new();
        let faulty_model = match self.faults.weight() {
            Some(w) => {
                let m = self.model.with_weight_faults(w, seed, chip);
                for (clean, faulty) in self.model.nodes.iter().zip(&m.nodes) {
                    if let (QOp::Mac(a), QOp::Mac(b)) = (&clean.op, &faulty.op) {
                        let changed = a
                            .weights
                            .iter()
                            .zip(&b.weights)
                            .filter(|(x, y)| x != y)
                            .count();
                        if changed > 0 {
                            faults.push(FaultRecord {
                                site: WEIGHT,
                                layer: self.layer_of_node[&a.node],
                                scope: FaultScope::Chip,
                                count: changed as u64,
                            });
                        }
                    }
                }
                Some(m)
            }
            None => None,
        };
        let model = faulty_model.as_ref().unwrap_or(&self.model);
        let n_images = images.len() / self.model.input_shape().numel().max(1);
        let logits = match self.faults.feature() {
            None => self.run(model, images, None, Some(chip))?,
            Some(inner) => {
                let mut image_of = HashMap::new();
                let mut modeled = HashSet::new();
                for l in self.model.mac_layers() {
                    if matches!(self.faults.feature_at(&l.feature_site()), FeatureFault::Off)
                        && self.faults.buffer_flips_at(&l.name)[2] == 0.0
                    {
                        continue;
                    }
                    modeled.insert(l.node);
                    for i in 0..n_images {
                        let key =
                            crate::fault::stream(seed, chip, i as u64, l.node as u64).next_u64();
                        if image_of.insert((l.node, key), i).is_some() {
                            return Err(CampaignError::Simulator {
                                chip: Some(chip),
                                message: format!(
                                    "two images of layer {} share a fault stream fingerprint; \
                                     their feature faults cannot be told apart",
                                    l.name
                                ),
                            });
                        }
                    }
                }
                let recorder = Recorder {
                    inner,
                    image_of,
                    modeled,
                    hits: Mutex::new(Vec::new()),
                    unknown: Mutex::new(None),
                };
                let logits = self.run(
                    model,
                    images,
                    Some(FeatureFaults {
                        injector: &recorder,
                        seed,
                        trial: chip,
                    }),
                    Some(chip),
                )?;
                if let Some(m) = recorder
                    .unknown
                    .into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                {
                    return Err(CampaignError::Simulator {
                        chip: Some(chip),
                        message: m,
                    });
                }
                let hits = recorder
                    .hits
                    .into_inner()
                    .unwrap_or_else(|p| p.into_inner());
                let mut hits: Vec<_> = hits
                    .into_iter()
                    .map(|(node, image, count)| (FEATURE, node, image, count))
                    .collect();
                hits.extend(self.buffer_flip_hits(inner, seed, chip, n_images));
                hits.sort_unstable();
                faults.extend(
                    hits.into_iter()
                        .map(|(site, node, image, count)| FaultRecord {
                            site,
                            layer: self.layer_of_node[&node],
                            scope: FaultScope::Image(image),
                            count,
                        }),
                );
                logits
            }
        };
        Ok(ChipOutcome { logits, faults })
    }
}
