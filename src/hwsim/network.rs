//! A whole quantized network on the systolic array: image by image, node by
//! node, every conv/linear layer's GEMMs through a [`GemmExecutor`] (the
//! cycle-level model by default), every other op through the engines'
//! integer code, with PE and SRAM faults addressed per layer.
//!
//! # What runs where
//!
//! - Conv/linear nodes ([`QOp::Mac`]) run on the array ([`run_mac_layer`]):
//!   one GEMM per group, bias, requantization and fused activation with the
//!   engines' arithmetic. Fault-free, the logits are bit-identical to
//!   [`crate::engine::ReferenceEngine`]'s.
//! - With an executor that starts from a clean result
//!   ([`GemmExecutor::exact_from_clean`], the exact path), fault-free images
//!   and fault-free layers run through the fast engine instead and only
//!   layers with PE faults are corrected, with the same results
//!   ([`super::fastnet`]).
//! - Every other node (pooling, add, concat, standalone BN, ReLU, ...) runs
//!   through [`crate::engine`]'s integer ops, fault-free. The timing model
//!   times pooling on the array as a depthwise reduction; the functional
//!   model does not step those cycles, so they have no fault sites.
//!
//! # Layers and cycle numbering
//!
//! "Layer `L`" is the `L`-th conv/linear node of the model
//! ([`QModel::mac_layers`] order, `0..`). Layer `L` takes
//! [`LayerGemm::cycles`] `= groups * group_cycles` cycles (group after
//! group, each group's GEMM numbered as [`SystolicArray::run`] documents).
//! A fault is addressed by `(layer, cycle within the layer)`. The layers run
//! back to back in model order, so the global cycle of an inference is
//! `HwLayer::start_cycle + cycle`, with `start_cycle` the sum of the cycles
//! of the layers before; every image's inference starts again at cycle 0.
//! Per layer the cycles stepped equal the timing model's compute cycles plus
//! one ([`crate::accel::timing`] reports the index of the last cycle, see
//! [`super`]'s cycle accounting), also for grouped layers whose repeats the
//! timing model separates by one cycle each.
//!
//! # Faults of one inference ([`ImageFaults`])
//!
//! `permanent` faults (stuck-at PE bits and SRAM cells) act in every layer;
//! `transient` ones ([`LayerFault`]) act in their layer only: a PE flip at
//! its cycle, an SRAM flip at its word as [`super::sram`] defines, and a
//! stuck-at given for one layer during that layer only.

use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::accel::description::Kind;
use crate::accel::Accelerator;
use crate::engine::exec_non_mac;
use crate::fixed::Datapath;
use crate::quant::{QModel, QOp};

use super::bitserial::SipFault;
use super::fastnet::{self, ChipKit};
use super::layer::{run_mac_layer, CycleLevel, GemmExecutor, LayerGemm, LayerStats};
use super::spec::ChipFaults;
use super::spec::{FaultTarget, Site};
use super::sram::{SramBuffer, SramFault};
use super::{FaultKind, HwFault, HwSimError, SystolicArray};

/// Errors of building or running a network on the array.
#[derive(Debug, thiserror::Error)]
pub enum HwNetError {
    #[error("accelerator `{0}` is not a systolic array; the cycle-level model needs one")]
    NotSystolic(String),
    #[error("accelerator `{0}` is not a bit-serial design")]
    NotBitSerial(String),
    #[error(
        "accelerator `{accel}` computes with {accel_dp:?} but the model was quantized for {model_dp:?}"
    )]
    DatapathMismatch {
        accel: String,
        accel_dp: Datapath,
        model_dp: Datapath,
    },
    #[error("systolic array: {0}")]
    Array(HwSimError),
    #[error("layer {layer} (`{name}`): {source}")]
    Layer {
        layer: usize,
        name: String,
        #[source]
        source: HwSimError,
    },
    #[error("fault {what}: {reason}")]
    Fault { what: String, reason: String },
    #[error("input: {got} codes, the model takes {expected}")]
    InputSize { got: usize, expected: usize },
    #[error("fast engine: {0}")]
    Engine(String),
}

/// A fault anywhere on the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChipFault {
    Pe(HwFault),
    Sram(SramFault),
    /// A SIP register of a bit-serial design.
    Sip(SipFault),
}

impl ChipFault {
    pub fn kind(&self) -> FaultKind {
        match self {
            ChipFault::Pe(f) => f.kind,
            ChipFault::Sram(f) => f.kind,
            ChipFault::Sip(f) => f.kind,
        }
    }

    /// The site's name (`pe.psum_reg`, `sram.ifmap`, ...).
    pub fn site_name(&self) -> &'static str {
        match self {
            ChipFault::Pe(f) => f.site.name(),
            ChipFault::Sram(f) => f.buffer.name(),
            ChipFault::Sip(f) => f.site.name(),
        }
    }
}

/// A fault acting during one layer; a flip's cycle is in that layer's
/// numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerFault {
    pub layer: usize,
    pub fault: ChipFault,
}

/// The faults acting during one image's inference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFaults {
    /// Stuck-at faults acting in every layer.
    pub permanent: Vec<ChipFault>,
    /// Faults acting in one layer.
    pub transient: Vec<LayerFault>,
}

impl ImageFaults {
    pub fn is_empty(&self) -> bool {
        self.permanent.is_empty() && self.transient.is_empty()
    }
}

/// One conv/linear layer as the array runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HwLayer {
    /// Index of the node in [`QModel::nodes`].
    pub node: usize,
    /// Graph node name of the conv/linear.
    pub name: String,
    pub gemm: LayerGemm,
    /// Global cycle of the layer's first cycle in an inference.
    pub start_cycle: u64,
    /// Codes the layer keeps in each buffer (ifmap, filter, ofmap).
    pub ifmap_len: usize,
    pub filter_len: usize,
    pub ofmap_len: usize,
}

impl HwLayer {
    /// Codes the layer keeps in `buffer`.
    pub fn buffer_len(&self, buffer: SramBuffer) -> usize {
        match buffer {
            SramBuffer::Ifmap => self.ifmap_len,
            SramBuffer::Filter => self.filter_len,
            SramBuffer::Ofmap => self.ofmap_len,
        }
    }
}

/// True when an ifmap/filter flip lands after the last read of the code it
/// hits: the code belongs to a group whose GEMM ended before the flip's
/// cycle (each group reads only its own input channels and filters).
fn read_before(
    lb: &LayerBuffers,
    layer: &crate::quant::MacLayer,
    f: &SramFault,
    len: usize,
    words: usize,
) -> bool {
    let FaultKind::Flip { cycle } = f.kind else {
        return false;
    };
    let Some(i) = super::sram::resident_index(f.address, cycle, len, words, lb.cycles) else {
        return false;
    };
    let group = match f.buffer {
        SramBuffer::Ifmap if layer.is_conv => {
            i / (layer.in_shape.h * layer.in_shape.w) / layer.cin_per_group()
        }
        SramBuffer::Filter => i / layer.macs_per_output() / layer.cout_per_group(),
        SramBuffer::Ifmap | SramBuffer::Ofmap => return false,
    };
    (group as u64) < cycle / lb.group_cycles.max(1)
}

/// What the SRAM fault rules need to know of one layer on its hardware:
/// its cycles (all groups, and per group) and the buffers' words and code
/// widths (indexed by [`SramBuffer`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerBuffers {
    pub cycles: u64,
    pub group_cycles: u64,
    pub words: [usize; 3],
    pub widths: [u32; 3],
}

impl LayerBuffers {
    /// The geometry derivation of buffer upsets needs: the buffers' words
    /// and every layer's timing.
    pub(crate) fn geometry(
        words: [usize; 3],
        layers: impl Iterator<Item = LayerBuffers>,
    ) -> crate::derive::buffers::BufferGeometry {
        crate::derive::buffers::BufferGeometry {
            ifmap_words: words[SramBuffer::Ifmap as usize],
            filter_words: words[SramBuffer::Filter as usize],
            ofmap_words: words[SramBuffer::Ofmap as usize],
            layers: layers
                .map(|lb| crate::derive::buffers::LayerTiming {
                    cycles: lb.cycles,
                    group_cycles: lb.group_cycles,
                })
                .collect(),
        }
    }
}

/// Logits and per-layer measurements of one inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwImageRun {
    /// Logit codes (format [`QModel::output_format`]).
    pub logits: Vec<i32>,
    /// One entry per conv/linear layer.
    pub layers: Vec<LayerStats>,
}

/// A quantized model mapped onto a systolic accelerator.
#[derive(Clone)]
pub struct HwNetwork {
    model: QModel,
    array: SystolicArray,
    /// Words of the ifmap, filter and ofmap buffers.
    sram_words: [usize; 3],
    clock_mhz: f64,
    layers: Vec<HwLayer>,
    executor: Arc<dyn GemmExecutor>,
    /// The fast exact path's prepared layers: fault-free, and the last
    /// chip's (built on first use).
    clean_kit: Arc<OnceLock<Arc<ChipKit>>>,
    chip_kit: Arc<Mutex<Option<Arc<ChipKit>>>>,
}

impl std::fmt::Debug for HwNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HwNetwork")
            .field("model", &self.model.name)
            .field("array", &self.array)
            .field("sram_words", &self.sram_words)
            .field("layers", &self.layers.len())
            .field("executor", &self.executor.name())
            .finish()
    }
}

impl HwNetwork {
    /// Map `model` onto `accel` (a valid systolic description whose datapath
    /// is the model's), with the cycle-level executor.
    pub fn new(accel: &Accelerator, model: &QModel) -> Result<HwNetwork, HwNetError> {
        let sys = match (accel.kind, &accel.systolic) {
            (Kind::Systolic, Some(s)) => s,
            _ => return Err(HwNetError::NotSystolic(accel.name.clone())),
        };
        if accel.datapath != model.datapath {
            return Err(HwNetError::DatapathMismatch {
                accel: accel.name.clone(),
                accel_dp: accel.datapath,
                model_dp: model.datapath,
            });
        }
        let array =
            SystolicArray::new(sys.rows, sys.cols, sys.dataflow).map_err(HwNetError::Array)?;
        let d = accel.derived();
        let mut layers = Vec::new();
        let mut start_cycle = 0;
        for (q, node) in model.nodes.iter().enumerate() {
            if let QOp::Mac(l) = &node.op {
                let gemm = LayerGemm::new(&array, l);
                layers.push(HwLayer {
                    node: q,
                    name: l.name.clone(),
                    gemm,
                    start_cycle,
                    ifmap_len: l.in_shape.numel(),
                    filter_len: l.weights.len(),
                    ofmap_len: l.out_shape.numel(),
                });
                start_cycle += gemm.cycles;
            }
        }
        Ok(HwNetwork {
            model: model.clone(),
            array,
            sram_words: [d.ifmap_sram_words, d.filter_sram_words, d.ofmap_sram_words],
            clock_mhz: accel.clock_mhz,
            layers,
            executor: Arc::new(CycleLevel),
            clean_kit: Arc::default(),
            chip_kit: Arc::default(),
        })
    }

    /// The same network with another GEMM executor.
    pub fn with_executor(mut self, executor: Arc<dyn GemmExecutor>) -> HwNetwork {
        self.executor = executor;
        self
    }

    pub fn model(&self) -> &QModel {
        &self.model
    }
    pub fn array(&self) -> &SystolicArray {
        &self.array
    }
    pub fn datapath(&self) -> &Datapath {
        &self.model.datapath
    }
    pub fn clock_mhz(&self) -> f64 {
        self.clock_mhz
    }
    pub fn executor(&self) -> &dyn GemmExecutor {
        self.executor.as_ref()
    }
    /// The conv/linear layers, in order ("layer `L`" is `layers()[L]`).
    pub fn layers(&self) -> &[HwLayer] {
        &self.layers
    }
    /// Cycles of one inference (all conv/linear layers).
    pub fn cycles(&self) -> u64 {
        self.layers.iter().map(|l| l.gemm.cycles).sum()
    }
    /// Words of an SRAM buffer.
    pub fn sram_words(&self, buffer: SramBuffer) -> usize {
        self.sram_words[buffer as usize]
    }
    /// Bits of the code an SRAM buffer word holds.
    pub fn sram_width(&self, buffer: SramBuffer) -> u32 {
        let dp = self.datapath();
        u32::from(match buffer {
            SramBuffer::Ifmap | SramBuffer::Ofmap => dp.act_bits,
            SramBuffer::Filter => dp.weight_bits,
        })
    }

    /// The buffers and every layer's timing, as derivation of SRAM-buffer
    /// upsets needs them.
    pub fn buffer_geometry(&self) -> crate::derive::buffers::BufferGeometry {
        let layers = (0..self.layers.len()).map(|li| self.layer_buffers(li));
        LayerBuffers::geometry(self.sram_words, layers)
    }

    /// The SRAM fault rules' view of layer `li`.
    pub(crate) fn layer_buffers(&self, li: usize) -> LayerBuffers {
        let g = &self.layers[li].gemm;
        LayerBuffers {
            cycles: g.cycles,
            group_cycles: g.group_cycles,
            words: self.sram_words,
            widths: SramBuffer::ALL.map(|b| self.sram_width(b)),
        }
    }

    /// Check one fault against the array, the buffers and the layers
    /// (`layer` is `None` for a permanent fault). Returns the reason it
    /// cannot exist.
    pub fn check_fault(&self, layer: Option<usize>, fault: &ChipFault) -> Result<(), String> {
        let cycles = match layer {
            Some(l) => match self.layers.get(l) {
                Some(hl) => Some(hl.gemm.cycles),
                None => {
                    return Err(format!(
                        "layer {l} does not exist (the model has {} conv/linear layers)",
                        self.layers.len()
                    ))
                }
            },
            None => None,
        };
        if let (FaultKind::Flip { cycle }, Some(c)) = (fault.kind(), cycles) {
            if cycle >= c {
                return Err(format!(
                    "cycle {cycle} is past the end of the layer ({c} cycles)"
                ));
            }
        }
        if layer.is_none() && matches!(fault.kind(), FaultKind::Flip { .. }) {
            return Err("a transient flip needs a layer".into());
        }
        match fault {
            ChipFault::Pe(f) => {
                let (rows, cols) = (self.array.rows, self.array.cols);
                if f.row >= rows || f.col >= cols {
                    return Err(format!(
                        "PE ({}, {}) is outside the {rows}x{cols} array",
                        f.row, f.col
                    ));
                }
                let width = f.site.width(self.datapath());
                if u32::from(f.bit) >= width {
                    return Err(format!(
                        "bit {} does not exist in {} ({width} bits wide)",
                        f.bit, f.site
                    ));
                }
            }
            ChipFault::Sip(f) => {
                return Err(format!(
                    "{} is a bit-serial site; this accelerator is a systolic array (sites pe.*, sram.*)",
                    f.site
                ))
            }
            ChipFault::Sram(f) => {
                let words = self.sram_words(f.buffer);
                if f.address >= words {
                    return Err(format!(
                        "address {} is outside {} ({words} words)",
                        f.address, f.buffer
                    ));
                }
                let width = self.sram_width(f.buffer);
                if u32::from(f.bit) >= width {
                    return Err(format!(
                        "bit {} does not exist in a {} word ({width}-bit codes)",
                        f.bit, f.buffer
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_faults(&self, faults: &ImageFaults) -> Result<(), HwNetError> {
        for (i, f) in faults.permanent.iter().enumerate() {
            self.check_fault(None, f)
                .map_err(|reason| HwNetError::Fault {
                    what: format!("permanent #{i} ({})", f.site_name()),
                    reason,
                })?;
        }
        for (i, f) in faults.transient.iter().enumerate() {
            self.check_fault(Some(f.layer), &f.fault)
                .map_err(|reason| HwNetError::Fault {
                    what: format!(
                        "transient #{i} ({} in layer {})",
                        f.fault.site_name(),
                        f.layer
                    ),
                    reason,
                })?;
        }
        Ok(())
    }

    /// Run one image (`c*h*w` floats, dataset index `image_index`) on the
    /// chip `chip`: the logit codes.
    pub fn run_image(
        &self,
        image: &[f32],
        image_index: u64,
        chip: &ChipFaults,
    ) -> Result<Vec<i32>, HwNetError> {
        let codes = image_codes(&self.model, image)?;
        let faults = chip.for_image(image_index, self);
        Ok(self.run_codes(&codes, &faults)?.logits)
    }

    /// Run `images` (whole images of `c*h*w` floats; image `i` has dataset
    /// index `first_index + i`) on `chip`, images in parallel: the logit
    /// codes of each. Results do not depend on the thread count.
    pub fn run_images(
        &self,
        images: &[f32],
        first_index: u64,
        chip: &ChipFaults,
    ) -> Result<Vec<Vec<i32>>, HwNetError> {
        use rayon::prelude::*;
        let n = self.model.input_shape().numel();
        if !images.len().is_multiple_of(n) {
            return Err(HwNetError::InputSize {
                got: images.len(),
                expected: n,
            });
        }
        if self.executor.exact_from_clean() {
            let faults: Vec<ImageFaults> = (0..images.len() / n)
                .into_par_iter()
                .map(|i| chip.for_image(first_index + i as u64, self))
                .collect();
            return self.run_images_with(images, &faults);
        }
        images
            .par_chunks(n)
            .enumerate()
            .map(|(i, img)| self.run_image(img, first_index + i as u64, chip))
            .collect()
    }

    /// Run `images` (whole images of `c*h*w` floats), image `i` under
    /// `faults[i]`: the logit codes of each. With an executor that starts
    /// from a clean result ([`GemmExecutor::exact_from_clean`], the exact
    /// path) fault-free images run batched through the fast engine and the
    /// others through [`fastnet`]; otherwise image by image in parallel.
    pub fn run_images_with(
        &self,
        images: &[f32],
        faults: &[ImageFaults],
    ) -> Result<Vec<Vec<i32>>, HwNetError> {
        self.run_images_indexed(images, faults).map_err(|(_, e)| e)
    }

    /// [`HwNetwork::run_images_with`], naming the image of an error.
    pub fn run_images_indexed(
        &self,
        images: &[f32],
        faults: &[ImageFaults],
    ) -> Result<Vec<Vec<i32>>, (usize, HwNetError)> {
        use rayon::prelude::*;
        let n = self.model.input_shape().numel();
        if !images.len().is_multiple_of(n) || images.len() / n != faults.len() {
            return Err((
                0,
                HwNetError::InputSize {
                    got: images.len(),
                    expected: n * faults.len(),
                },
            ));
        }
        if self.executor.exact_from_clean() {
            return fastnet::run_images(self, images, faults);
        }
        images
            .par_chunks(n)
            .zip(faults)
            .enumerate()
            .map(|(i, (img, f))| {
                let mut codes = vec![0i32; n];
                self.model.quantize_input(img, &mut codes);
                self.run_codes(&codes, f)
                    .map(|r| r.logits)
                    .map_err(|e| (i, e))
            })
            .collect()
    }

    /// The fast exact path's prepared layers for a chip whose permanent
    /// filter-buffer faults are `filter_faults` (the clean ones are built
    /// once, a chip's are kept until another chip's are asked for).
    pub(crate) fn chip_kit(&self, filter_faults: &[SramFault]) -> Arc<ChipKit> {
        if filter_faults.is_empty() {
            return self
                .clean_kit
                .get_or_init(|| Arc::new(ChipKit::clean(self)))
                .clone();
        }
        let mut slot = self.chip_kit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = slot.as_ref().filter(|k| k.bakes(filter_faults)) {
            return k.clone();
        }
        let k = Arc::new(ChipKit::new(self, filter_faults.to_vec()));
        *slot = Some(k.clone());
        k
    }

    pub(crate) fn check_image_faults(&self, faults: &ImageFaults) -> Result<(), HwNetError> {
        self.check_faults(faults)
    }

    /// Run one image given as input codes, under `faults`.
    pub fn run_codes(&self, input: &[i32], faults: &ImageFaults) -> Result<HwImageRun, HwNetError> {
        let model = &self.model;
        let expected = model.input_shape().numel();
        if input.len() != expected {
            return Err(HwNetError::InputSize {
                got: input.len(),
                expected,
            });
        }
        self.check_faults(faults)?;
        if self.executor.exact_from_clean() {
            let kit = self.chip_kit(&ChipKit::filter_faults(&faults.permanent));
            let mut scratch = fastnet::Scratch::default();
            return fastnet::run_codes(self, &kit, input, faults, &mut scratch);
        }
        let dp = model.datapath;
        let mut outs: Vec<Vec<i32>> = Vec::with_capacity(model.nodes.len());
        let mut stats = Vec::with_capacity(self.layers.len());
        let mut acting_all = ActingFaults::all(faults, self.layers.len());
        let mut li = 0;
        for (q, node) in model.nodes.iter().enumerate() {
            let mut out = vec![0i32; node.shape.numel()];
            match &node.op {
                QOp::Input => out.copy_from_slice(input),
                QOp::Mac(layer) => {
                    let hl = &self.layers[li];
                    let acting = std::mem::take(&mut acting_all[li]);
                    let lb = self.layer_buffers(li);
                    let src = &outs[node.inputs[0]];
                    let mut ifmap;
                    let input_codes: &[i32] = if acting.has_sram(SramBuffer::Ifmap) {
                        ifmap = src.clone();
                        acting.corrupt(&lb, layer, SramBuffer::Ifmap, &mut ifmap);
                        &ifmap
                    } else {
                        src
                    };
                    let mut filter;
                    let weights: &[i32] = if acting.has_sram(SramBuffer::Filter) {
                        filter = layer.weights.clone();
                        acting.corrupt(&lb, layer, SramBuffer::Filter, &mut filter);
                        &filter
                    } else {
                        &layer.weights
                    };
                    let s = run_mac_layer(
                        self.executor.as_ref(),
                        &self.array,
                        layer,
                        &dp,
                        input_codes,
                        weights,
                        &acting.pe,
                        &mut out,
                    )
                    .map_err(|source| HwNetError::Layer {
                        layer: li,
                        name: hl.name.clone(),
                        source,
                    })?;
                    acting.corrupt(&lb, layer, SramBuffer::Ofmap, &mut out);
                    stats.push(s);
                    li += 1;
                }
                _ => exec_non_mac(model, q, &outs, &mut out),
            }
            outs.push(out);
        }
        Ok(HwImageRun {
            logits: outs.pop().unwrap_or_default(),
            layers: stats,
        })
    }
}

/// The input codes of one image (`c*h*w` floats) for `model`; an image of
/// the wrong size is an error.
pub(crate) fn image_codes(model: &QModel, image: &[f32]) -> Result<Vec<i32>, HwNetError> {
    let n = model.input_shape().numel();
    if image.len() != n {
        return Err(HwNetError::InputSize {
            got: image.len(),
            expected: n,
        });
    }
    let mut codes = vec![0i32; n];
    model.quantize_input(image, &mut codes);
    Ok(codes)
}

/// The faults acting during layer `L` of one image: PE faults (permanent
/// first, then the layer's own, in list order) and SRAM faults with
/// whether they are the layer's own (`true`) or the chip's permanent cells.
#[derive(Default)]
pub(crate) struct ActingFaults {
    pub pe: Vec<HwFault>,
    pub sip: Vec<SipFault>,
    sram: Vec<(bool, SramFault)>,
}

impl ActingFaults {
    /// The acting faults of every one of `layers` layers, in one pass over
    /// the image's faults (per layer: permanent first, then the layer's own
    /// in list order).
    pub(crate) fn all(faults: &ImageFaults, layers: usize) -> Vec<ActingFaults> {
        let mut all: Vec<ActingFaults> = (0..layers).map(|_| ActingFaults::default()).collect();
        for a in &mut all {
            for f in &faults.permanent {
                a.push(false, *f);
            }
        }
        for f in &faults.transient {
            if let Some(a) = all.get_mut(f.layer) {
                a.push(true, f.fault);
            }
        }
        all
    }

    fn push(&mut self, own: bool, f: ChipFault) {
        match f {
            ChipFault::Pe(p) => self.pe.push(p),
            ChipFault::Sram(s) => self.sram.push((own, s)),
            ChipFault::Sip(s) => self.sip.push(s),
        }
    }

    pub(crate) fn has_sram(&self, b: SramBuffer) -> bool {
        self.sram.iter().any(|(_, f)| f.buffer == b)
    }

    pub(crate) fn has_sram_transient(&self, b: SramBuffer) -> bool {
        self.sram.iter().any(|(own, f)| *own && f.buffer == b)
    }

    /// Apply the buffer's faults to the codes the layer keeps in it (see
    /// [`super::sram`]): flips after the last read of their code are masked.
    pub(crate) fn corrupt(
        &self,
        lb: &LayerBuffers,
        layer: &crate::quant::MacLayer,
        b: SramBuffer,
        codes: &mut [i32],
    ) {
        self.corrupt_where(lb, layer, b, codes, |_| true)
    }

    /// [`ActingFaults::corrupt`] with the layer's own faults only.
    pub(crate) fn corrupt_transient(
        &self,
        lb: &LayerBuffers,
        layer: &crate::quant::MacLayer,
        b: SramBuffer,
        codes: &mut [i32],
    ) {
        self.corrupt_where(lb, layer, b, codes, |own| own)
    }

    fn corrupt_where(
        &self,
        lb: &LayerBuffers,
        layer: &crate::quant::MacLayer,
        b: SramBuffer,
        codes: &mut [i32],
        keep: impl Fn(bool) -> bool,
    ) {
        let (words, width) = (lb.words[b as usize], lb.widths[b as usize]);
        for (own, f) in &self.sram {
            if f.buffer != b || !keep(*own) || read_before(lb, layer, f, codes.len(), words) {
                continue;
            }
            f.apply(codes, width, words, lb.cycles);
        }
    }
}

impl FaultTarget for HwNetwork {
    fn site_grid(&self, site: Site) -> Option<(u64, u64, u32)> {
        match site {
            Site::Pe(s) => Some((
                self.array.rows as u64,
                self.array.cols as u64,
                s.width(self.datapath()),
            )),
            Site::Sram(b) => Some((self.sram_words(b) as u64, 1, self.sram_width(b))),
            Site::Sip(_) => None,
        }
    }

    fn clock_mhz(&self) -> f64 {
        self.clock_mhz
    }

    fn layer_cycles(&self) -> Vec<u64> {
        self.layers.iter().map(|l| l.gemm.cycles).collect()
    }

    fn check_fault(&self, layer: Option<usize>, fault: &ChipFault) -> Result<(), String> {
        HwNetwork::check_fault(self, layer, fault)
    }
}
