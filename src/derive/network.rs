//! Derivation for a whole quantized network on one systolic accelerator:
//! the operand statistics each layer needs (its weight codes, and its input
//! codes as the GEMM sees them, measured on real images), the per-layer
//! parameters of [`super::layer`], and the algorithmic fault model they make
//! (`output_hit` per layer), ready for `infer`, `eval`, `train` and `search`;
//! with stuck-at densities in the spec, also per-layer weight stuck-at
//! faults ([`super::permanent`]).

use rayon::prelude::*;

use crate::accel::description::BitSerial;
use crate::engine::reference::run_image_all;
use crate::fault::output_hit::{HitSign, OutputHit};
use crate::fault::spec::{FaultSpec, FeatureFault, LayerOverride};
use crate::hwsim::bitserial::SipSite;
use crate::hwsim::layer::{filter_operand, ifmap_operand};
use crate::hwsim::spec::{HwFaultSpec, Site};
use crate::hwsim::sram::SramBuffer;
use crate::hwsim::{FaultSite, SystolicArray};
use crate::quant::{MacLayer, QModel, QOp};

use crate::fault::{
    PerBit, SharedStuck, StuckAt, StuckBuffers, StuckCells, StuckMacs, WeightFault,
};

use super::bitserial::{self, derive_bitserial_layer, sip_rate, step_profile, StepProfile};
use super::buffers::{derive_buffer_flips, BufferFlips, BufferGeometry, BufferRates};
use super::layer::{
    derive_layer, GemmLayer, LayerDerivation, Magnitudes, OperandRowSums, OperandRows, SiteRates,
};
use super::permanent::{
    derive_weight_faults, stuck_rates, StuckRates, WeightDerivation, WeightHolder,
};
use super::psum_sign::{layer_psum_signs, sum_signs, PsumSigns};

/// Magnitudes of the im2col operand of `layer` for one image's input codes
/// (CHW): every (output pixel, tap, channel) entry of every group's GEMM,
/// zeros for padding — exactly the operand the array streams; the negative
/// entries' magnitudes also go to `negative`.
pub fn add_im2col_magnitudes(
    layer: &MacLayer,
    input: &[i32],
    mags: &mut Magnitudes,
    negative: &mut Magnitudes,
) {
    for_each_group_operand(layer, input, |_, a| {
        add_operand_magnitudes(a, mags, negative)
    });
}

/// Call `f(g, A_g)` with group `g`'s im2col operand (`E x K`, row-major)
/// of `layer` for one image's input codes (CHW), group by group.
fn for_each_group_operand(layer: &MacLayer, input: &[i32], mut f: impl FnMut(usize, &[i32])) {
    let mut a = Vec::new();
    for gi in 0..layer.groups {
        ifmap_operand(layer, input, gi, &mut a);
        f(gi, &a);
    }
}

fn add_operand_magnitudes(a: &[i32], mags: &mut Magnitudes, negative: &mut Magnitudes) {
    for &v in a {
        mags.add(v.unsigned_abs() as usize, 1);
        if v < 0 {
            negative.add(v.unsigned_abs() as usize, 1);
        }
    }
}

/// Add one group's operand `a` (`E x K`, group `gi`) to `sums`: column
/// `k` is reduction row `gi*K + k`, row `e` stream position (output pixel)
/// `e`.
fn add_operand_rows(a: &[i32], gi: usize, k: usize, sums: &mut OperandRowSums) {
    for (e, chunk) in a.chunks_exact(k.max(1)).enumerate() {
        for (r, &v) in chunk.iter().enumerate() {
            sums.add(gi * k + r, e, v);
        }
    }
}

fn row_sums_for(layer: &MacLayer) -> OperandRowSums {
    OperandRowSums::new(
        layer.groups * layer.macs_per_output(),
        layer.out_shape.h * layer.out_shape.w,
    )
}

/// Add to `sums` the entries of `layer`'s im2col operand for one image's
/// input codes (CHW): per column `(g, k)` what the moving activations of a
/// weight-stationary row carry, per output pixel what every row carries
/// there.
pub fn add_im2col_rows(layer: &MacLayer, input: &[i32], sums: &mut OperandRowSums) {
    let k = layer.macs_per_output();
    for_each_group_operand(layer, input, |gi, a| add_operand_rows(a, gi, k, sums));
}

/// The im2col operand of `layer` over `inputs` (one CHW input-code tensor
/// per image), per column `(g, k)` and per output pixel.
pub fn im2col_rows(layer: &MacLayer, inputs: &[Vec<i32>]) -> OperandRows {
    let mut sums = row_sums_for(layer);
    for x in inputs {
        add_im2col_rows(layer, x, &mut sums);
    }
    sums.finish((inputs.len() * layer.out_shape.h * layer.out_shape.w) as u64)
}

/// A network's derived feature faults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkDerivation {
    pub rates: SiteRates,
    pub layers: Vec<LayerDerivation>,
    /// Stuck-at densities behind `weights`.
    pub stuck: StuckRates,
    /// Weight faults per layer (same order as `layers`; empty when the
    /// spec has no stuck cell that holds weights).
    pub weights: Vec<WeightDerivation>,
    /// The weight-register file whose stuck bits the weight model carries
    /// as shared bits (`stuck.weight_reg` on the hardware's register
    /// mapping); `None`: no register holds weights, or its bits are folded
    /// into the per-weight rates ([`NetworkDerivation::without_register_sharing`]).
    pub shared: Option<SharedStuck>,
    /// Per layer, the flips of its input and stored output codes that
    /// ifmap/ofmap SRAM upsets make ([`super::buffers`]; empty without
    /// such rates).
    pub buffers: Vec<BufferFlips>,
    /// Stuck cells of the feature-map buffers (`sram.ifmap` /
    /// `sram.ofmap` stuck-at densities with the buffers' word counts).
    pub stuck_cells: StuckBuffers,
    /// Stuck PE register bits of an output-stationary array
    /// ([`super::stuck_macs`]).
    pub stuck_macs: Option<StuckMacs>,
}

/// Every MAC layer of `model` with the node id of its input, in graph order
/// (the order of [`gemm_layers`]).
fn mac_layers_with_inputs(model: &QModel) -> Vec<(usize, &MacLayer)> {
    model
        .nodes
        .iter()
        .filter_map(|node| match &node.op {
            QOp::Mac(l) => Some((node.inputs[0], l.as_ref())),
            _ => None,
        })
        .collect()
}

/// The GEMM view of every MAC layer of `model`, with input magnitudes
/// measured on `images` (`n * input numel` floats) by the reference engine.
pub fn gemm_layers(model: &QModel, images: &[f32]) -> Vec<GemmLayer> {
    let n = model.input_shape().numel();
    let count = images.len() / n.max(1);
    let macs = mac_layers_with_inputs(model);
    let per_image: Vec<Vec<(Magnitudes, Magnitudes, OperandRowSums)>> = (0..count)
        .into_par_iter()
        .map(|i| {
            let outs = run_image_all(model, &images[i * n..(i + 1) * n], i as u64, None);
            macs.iter()
                .map(|(input, l)| {
                    // One im2col pass for both statistics.
                    let (mut m, mut neg) = (Magnitudes::default(), Magnitudes::default());
                    let k = l.macs_per_output();
                    let mut rows = row_sums_for(l);
                    for_each_group_operand(l, &outs[*input], |gi, a| {
                        add_operand_magnitudes(a, &mut m, &mut neg);
                        add_operand_rows(a, gi, k, &mut rows);
                    });
                    (m, neg, rows)
                })
                .collect()
        })
        .collect();
    macs.iter()
        .enumerate()
        .map(|(j, (_, l))| {
            let (mut inputs, mut negative) = (Magnitudes::default(), Magnitudes::default());
            let mut rows = row_sums_for(l);
            for img in &per_image {
                inputs.merge(&img[j].0);
                negative.merge(&img[j].1);
                rows.merge(&img[j].2);
            }
            let mut g = GemmLayer::of(l, inputs, negative);
            g.input_rows = rows.finish((count * l.out_shape.h * l.out_shape.w) as u64);
            g
        })
        .collect()
}

/// Images whose partial sums [`with_psum_signs`] counts: the statistic
/// sums over every output and slot of a layer, so a few images settle it.
pub const PSUM_SIGN_IMAGES: usize = 16;

/// `layers` (from [`gemm_layers`] on the same `model`) with the flip
/// directions of their psum registers on `array` ([`super::psum_sign`]),
/// counted on the first [`PSUM_SIGN_IMAGES`] of `images`: derivation on
/// that array then gives psum hits the sign they really have.
pub fn with_psum_signs(
    layers: Vec<GemmLayer>,
    array: &SystolicArray,
    model: &QModel,
    images: &[f32],
) -> Vec<GemmLayer> {
    let dp = model.datapath;
    with_layer_signs(layers, model, images, &|l, input| {
        let mp = array.mapping(
            l.out_shape.h * l.out_shape.w,
            l.macs_per_output(),
            l.cout_per_group(),
        );
        layer_psum_signs(&mp, &dp, l, input)
    })
}

/// [`with_psum_signs`] for a bit-serial `design`
/// ([`bitserial::bitserial_psum_signs`]: one slot per cycle of an output's
/// block).
pub fn with_bitserial_psum_signs(
    layers: Vec<GemmLayer>,
    design: &BitSerial,
    model: &QModel,
    images: &[f32],
) -> Vec<GemmLayer> {
    let dp = model.datapath;
    with_layer_signs(layers, model, images, &|l, input| {
        bitserial::bitserial_psum_signs(design, &dp, l, input)
    })
}

/// `layers` with the psum signs `signs` counts for each MAC layer on one
/// image's layer input, summed over the first [`PSUM_SIGN_IMAGES`] images.
fn with_layer_signs(
    mut layers: Vec<GemmLayer>,
    model: &QModel,
    images: &[f32],
    signs: &(dyn Fn(&MacLayer, &[i32]) -> PsumSigns + Sync),
) -> Vec<GemmLayer> {
    let n = model.input_shape().numel();
    let count = (images.len() / n.max(1)).min(PSUM_SIGN_IMAGES);
    let macs = mac_layers_with_inputs(model);
    let per_image: Vec<Vec<PsumSigns>> = (0..count)
        .into_par_iter()
        .map(|i| {
            let outs = run_image_all(model, &images[i * n..(i + 1) * n], i as u64, None);
            macs.par_iter()
                .map(|(input, l)| signs(l, &outs[*input]))
                .collect()
        })
        .collect();
    for (j, layer) in layers.iter_mut().enumerate() {
        layer.psum_signs = sum_signs(per_image.iter().map(|img| &img[j]));
    }
    layers
}

/// `layers` (from [`gemm_layers`] on the same `model`) made ready for
/// derivation on bit-serial `design`: with run-time precision detection
/// each layer's [`StepProfile`] (how its steps split by detected width),
/// and when psum flips are derived (`psum`) the flip directions of the
/// accumulators ([`bitserial::bitserial_psum_signs`]), both counted on the
/// first [`PSUM_SIGN_IMAGES`] of `images`.
pub fn bitserial_layers(
    layers: Vec<GemmLayer>,
    design: &BitSerial,
    model: &QModel,
    images: &[f32],
    psum: bool,
) -> Vec<GemmLayer> {
    let mut layers = if psum {
        with_bitserial_psum_signs(layers, design, model, images)
    } else {
        layers
    };
    if !bitserial::needs_step_profiles(design) {
        return layers;
    }
    let n = model.input_shape().numel();
    let count = (images.len() / n.max(1)).min(PSUM_SIGN_IMAGES);
    let macs = mac_layers_with_inputs(model);
    let dp = model.datapath;
    let per_image: Vec<Vec<StepProfile>> = (0..count)
        .into_par_iter()
        .map(|i| {
            let outs = run_image_all(model, &images[i * n..(i + 1) * n], i as u64, None);
            macs.par_iter()
                .map(|(input, l)| {
                    let (mut a, mut w) = (Vec::new(), Vec::new());
                    let mut profile = StepProfile::default();
                    let dims = (
                        l.out_shape.h * l.out_shape.w,
                        l.macs_per_output(),
                        l.cout_per_group(),
                    );
                    for gi in 0..l.groups {
                        ifmap_operand(l, &outs[*input], gi, &mut a);
                        filter_operand(l, &l.weights, gi, &mut w);
                        step_profile(
                            design,
                            &dp,
                            l.kernel.0 * l.kernel.1,
                            &a,
                            &w,
                            dims,
                            &mut profile,
                        );
                    }
                    profile
                })
                .collect()
        })
        .collect();
    for (j, layer) in layers.iter_mut().enumerate() {
        let mut total = StepProfile::default();
        for img in &per_image {
            total.merge(&img[j]);
        }
        layer.step_profile = Some(total);
    }
    layers
}

/// Derive every layer of `layers` on `array` (datapath widths from `model`).
pub fn derive_network(
    array: &SystolicArray,
    model: &QModel,
    layers: &[GemmLayer],
    rates: &SiteRates,
) -> NetworkDerivation {
    let dp = model.datapath;
    let widths = (dp.act_bits, dp.weight_bits, dp.psum_bits);
    NetworkDerivation {
        rates: *rates,
        layers: layers
            .par_iter()
            .map(|l| derive_layer(array, widths, l, rates))
            .collect(),
        stuck: StuckRates::default(),
        weights: Vec::new(),
        shared: None,
        buffers: Vec::new(),
        stuck_cells: StuckBuffers::default(),
        stuck_macs: None,
    }
}

/// Derive every layer of `layers` on bit-serial `design` (datapath from
/// `model`; `layers` from [`bitserial_layers`]).
pub fn derive_bitserial_network(
    design: &BitSerial,
    model: &QModel,
    layers: &[GemmLayer],
    rates: &SiteRates,
) -> NetworkDerivation {
    let dp = model.datapath;
    NetworkDerivation {
        rates: *rates,
        layers: layers
            .par_iter()
            .map(|l| derive_bitserial_layer(design, &dp, l, rates))
            .collect(),
        ..NetworkDerivation::default()
    }
}

/// Everything derivation covers of a hardware spec on `array` (with the
/// buffers and layer timing of `geometry`, at `clock_mhz`): feature faults
/// from the PE transient rates, input/stored code flips from the ifmap/ofmap
/// SRAM transient rates, weight faults from the stuck cells that hold
/// weights, stuck feature-buffer cells, and stuck MAC-unit bits from the
/// other stuck PE register bits ([`super::stuck_macs`]). Also returns what
/// the spec has that is not derived (by name).
pub fn derive_from_spec(
    array: &SystolicArray,
    geometry: &BufferGeometry,
    clock_mhz: f64,
    model: &QModel,
    layers: &[GemmLayer],
    spec: &HwFaultSpec,
) -> (NetworkDerivation, Vec<String>) {
    let (rates, mut left_out) = pe_transient_rates(spec, clock_mhz);
    let holder = WeightHolder::Systolic {
        rows: array.rows,
        cols: array.cols,
        dataflow: array.dataflow,
    };
    let (stuck, not_weights) = stuck_rates(spec, &holder);
    left_out.extend(not_weights);
    let any = rates.act_reg + rates.weight_reg + rates.psum_reg + rates.mult_out > 0.0;
    let derived = if any {
        derive_network(array, model, layers, &rates)
    } else {
        NetworkDerivation {
            rates,
            ..NetworkDerivation::default()
        }
    };
    let mut d = derived
        .with_weight_faults(&holder, geometry.filter_words, model, layers, &stuck)
        .with_buffer_flips(model, geometry, spec, clock_mhz);
    d.stuck_macs = super::stuck_macs::stuck_macs_of_spec(spec, array);
    (d, left_out)
}

impl NetworkDerivation {
    /// Add the input/filter/stored code flips of the spec's `sram.ifmap`,
    /// `sram.filter` and `sram.ofmap` transient rates and the stuck cells of
    /// its `sram.ifmap` / `sram.ofmap` stuck-at densities (nothing when none
    /// is set).
    pub fn with_buffer_flips(
        mut self,
        model: &QModel,
        geometry: &BufferGeometry,
        spec: &HwFaultSpec,
        clock_mhz: f64,
    ) -> NetworkDerivation {
        self.stuck_cells = stuck_feature_cells(spec, geometry);
        self.with_buffer_rates(model, geometry, BufferRates::of_spec(spec, clock_mhz))
    }

    /// Set the input/filter/stored code flips to those of SRAM transient
    /// rates `rates` (per bit per cycle).
    pub fn with_buffer_rates(
        mut self,
        model: &QModel,
        geometry: &BufferGeometry,
        rates: BufferRates,
    ) -> NetworkDerivation {
        self.buffers = derive_buffer_flips(model, geometry, rates);
        self
    }

    /// Add the weight faults of stuck densities `stuck` (nothing when no
    /// density is set).
    pub fn with_weight_faults(
        mut self,
        holder: &WeightHolder,
        filter_words: usize,
        model: &QModel,
        layers: &[GemmLayer],
        stuck: &StuckRates,
    ) -> NetworkDerivation {
        self.stuck = *stuck;
        self.shared = holder.shared_stuck(stuck.weight_reg);
        self.weights = if stuck.weight_bit().any() {
            derive_weight_faults(
                holder,
                filter_words,
                u32::from(model.datapath.weight_bits),
                layers,
                stuck,
            )
        } else {
            Vec::new()
        };
        self
    }

    /// The weight fault of layer `name`, if derived and not zero.
    fn weight_fault(&self, name: &str) -> Option<WeightFault> {
        let w = self.weights.iter().find(|w| w.name == name)?;
        if !w.bit.any() {
            return None;
        }
        // With a shared register file the per-weight part is the SRAM's
        // alone; the register's bits act after it on every weight it holds
        // (same marginals `w.bit`).
        let (own, shared) = match &self.shared {
            Some(sh) => (self.stuck.sram_filter, Some(sh.clone())),
            None => (w.bit, None),
        };
        Some(WeightFault::StuckAt(StuckAt {
            p0: PerBit::Uniform(own.p0),
            p1: PerBit::Uniform(own.p1),
            shared,
        }))
    }

    /// Replace every layer's weight model by its i.i.d. counterpart (same
    /// per-bit marginals, no register sharing) — the paper's kind of model,
    /// e.g. to compare with hardware injection how much the sharing costs.
    pub fn without_register_sharing(mut self) -> NetworkDerivation {
        self.shared = None;
        self
    }

    /// The algorithmic fault model: one `output_hit` feature model per layer
    /// (additive `+-2^b` errors that saturate, one bit per hit), and per
    /// layer a `stuck_at` weight model when stuck cells hold weights (drawn
    /// once per chip: no `[weight]` section means persistent).
    pub fn fault_spec(&self, description: String) -> FaultSpec {
        let feature = |l: &LayerDerivation| {
            let (p_out, multiplicity, bit_weights, up) = l.independent();
            let stream = l.stream.as_ref().map(|s| Box::new(s.runs.clone()));
            if p_out > 0.0 || stream.is_some() {
                FeatureFault::OutputHit(OutputHit {
                    p_out: p_out.min(1.0),
                    bit_weights: bit_weights.to_vec(),
                    sign: HitSign::Random,
                    multiplicity: multiplicity.to_vec(),
                    up: up.to_vec(),
                    stream,
                })
            } else {
                FeatureFault::Off
            }
        };
        // Feature derivation covers every MAC layer when it ran; a
        // weight-only derivation (bit-serial) lists its layers itself.
        let mut layers: Vec<LayerOverride> = if self.layers.is_empty() {
            self.weights
                .iter()
                .map(|w| LayerOverride {
                    name: w.name.clone(),
                    weight: self.weight_fault(&w.name),
                    ..LayerOverride::default()
                })
                .collect()
        } else {
            self.layers
                .iter()
                .map(|l| LayerOverride {
                    name: l.name.clone(),
                    feature: Some(feature(l)),
                    weight: self.weight_fault(&l.name),
                    ..LayerOverride::default()
                })
                .collect()
        };
        for b in &self.buffers {
            let entry = match layers.iter_mut().position(|l| l.name == b.name) {
                Some(i) => &mut layers[i],
                None => {
                    layers.push(LayerOverride {
                        name: b.name.clone(),
                        ..LayerOverride::default()
                    });
                    layers.last_mut().expect("just pushed")
                }
            };
            entry.input_flip = b.input_flip;
            entry.filter_flip = b.filter_flip;
            entry.stored_flip = b.stored_flip;
        }
        FaultSpec {
            description: Some(description),
            feature: None,
            weight: None,
            layers,
            stuck_cells: self.stuck_cells,
            stuck_macs: self.stuck_macs,
        }
    }
}

/// What derivation covers of a hardware spec on a bit-serial `design`
/// (with the buffers and layer timing of `geometry`, at `clock_mhz`):
/// feature faults from the transient rates of the SIP registers
/// ([`super::bitserial`]; `layers` from [`bitserial_layers`]), input/stored
/// code flips from the ifmap/ofmap SRAM transient rates, and the weight
/// faults of stuck filter-SRAM cells and SIP weight registers. Also returns
/// what the spec has that is not derived (by name).
pub fn derive_bitserial_from_spec(
    design: &BitSerial,
    geometry: &BufferGeometry,
    clock_mhz: f64,
    model: &QModel,
    layers: &[GemmLayer],
    spec: &HwFaultSpec,
) -> (NetworkDerivation, Vec<String>) {
    let (rates, mut left_out) = sip_transient_rates(spec, clock_mhz);
    let any = SipSite::ALL.iter().any(|&s| sip_rate(&rates, s) > 0.0);
    let derived = if any {
        derive_bitserial_network(design, model, layers, &rates)
    } else {
        NetworkDerivation::default()
    };
    let holder = WeightHolder::bitserial(design);
    let (stuck, not_weights) = stuck_rates(spec, &holder);
    left_out.extend(not_weights);
    let mut d = NetworkDerivation { rates, ..derived }
        .with_weight_faults(&holder, geometry.filter_words, model, layers, &stuck)
        .with_buffer_flips(model, geometry, spec, clock_mhz);
    d.stuck_macs = super::stuck_macs::stuck_macs_of_bitserial(spec, design);
    (d, left_out)
}

/// The stuck cells of the spec's feature-map buffers: the `sram.ifmap` /
/// `sram.ofmap` stuck-at densities with the buffers' word counts
/// ([`crate::fault::stuck_cells`]: the hardware rule itself).
fn stuck_feature_cells(spec: &HwFaultSpec, geometry: &BufferGeometry) -> StuckBuffers {
    let cells = |b: SramBuffer, words: usize| {
        let r = spec.rates.get(&Site::Sram(b))?;
        (r.stuck_at_0 + r.stuck_at_1 > 0.0 && words > 0).then_some(StuckCells {
            words,
            p0: r.stuck_at_0,
            p1: r.stuck_at_1,
        })
    };
    StuckBuffers {
        ifmap: cells(SramBuffer::Ifmap, geometry.ifmap_words),
        ofmap: cells(SramBuffer::Ofmap, geometry.ofmap_words),
    }
}

/// True for the SRAM sites whose transients [`super::buffers`] derives.
fn buffer_derived(site: Site) -> bool {
    matches!(site, Site::Sram(_))
}

/// The SIP-register transient rates of a hardware spec (per bit per cycle
/// at the design's clock, in the act / weight / psum roles of
/// [`SiteRates`]), and the transient rates and explicit faults the feature
/// derivation does not cover.
pub fn sip_transient_rates(spec: &HwFaultSpec, clock_mhz: f64) -> (SiteRates, Vec<String>) {
    let mut rates = SiteRates::default();
    let mut skipped = Vec::new();
    for (site, r) in &spec.rates {
        match (site, r.transient) {
            (Site::Sip(s), Some(t)) => {
                let p = t.per_bit_cycle(clock_mhz);
                match s {
                    SipSite::ActReg => rates.act_reg = p,
                    SipSite::WeightReg => rates.weight_reg = p,
                    SipSite::PsumReg => rates.psum_reg = p,
                }
            }
            (site, Some(_)) if !buffer_derived(*site) => {
                skipped.push(format!("{} transient", site.name()))
            }
            _ => {}
        }
    }
    if !spec.faults.is_empty() {
        skipped.push(format!("{} explicit [[fault]] entries", spec.faults.len()));
    }
    (rates, skipped)
}

/// The PE transient rates of a hardware spec (per bit per cycle at the
/// accelerator's clock), and the transient rates and explicit faults the
/// feature derivation does not cover (stuck-at densities are
/// [`super::permanent::stuck_rates`]'s).
pub fn pe_transient_rates(spec: &HwFaultSpec, clock_mhz: f64) -> (SiteRates, Vec<String>) {
    let mut rates = SiteRates::default();
    let mut skipped = Vec::new();
    for (site, r) in &spec.rates {
        if let (Site::Pe(pe), Some(t)) = (site, r.transient) {
            let p = t.per_bit_cycle(clock_mhz);
            match pe {
                FaultSite::ActReg => rates.act_reg = p,
                FaultSite::WeightReg => rates.weight_reg = p,
                FaultSite::PsumReg => rates.psum_reg = p,
                FaultSite::MultOut => rates.mult_out = p,
            }
        } else if r.transient.is_some() && !buffer_derived(*site) {
            skipped.push(format!("{} transient", site.name()));
        }
    }
    if !spec.faults.is_empty() {
        skipped.push(format!("{} explicit [[fault]] entries", spec.faults.len()));
    }
    (rates, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::Format;
    use crate::model::Shape;
    use crate::quant::{Activation, MacLayer};

    fn conv(padding: usize, stride: usize) -> MacLayer {
        let o = (4 + 2 * padding - 3) / stride + 1;
        MacLayer {
            node: 1,
            name: "c".into(),
            is_conv: true,
            in_shape: Shape::new(2, 4, 4),
            out_shape: Shape::new(3, o, o),
            kernel: (3, 3),
            stride: (stride, stride),
            padding: (padding, padding),
            dilation: (1, 1),
            groups: 1,
            weights: vec![1; 3 * 2 * 9],
            weight_format: Format { bits: 8, frac: 7 },
            bias: vec![0; 3],
            in_format: Format { bits: 8, frac: 4 },
            acc_frac: 11,
            out_format: Format { bits: 8, frac: 4 },
            activation: Activation::Relu,
        }
    }

    #[test]
    fn im2col_magnitudes_count_every_entry_and_padding() {
        let input: Vec<i32> = (0..32).map(|i| i - 16).collect();
        for (pad, stride) in [(0, 1), (1, 1), (1, 2)] {
            let l = conv(pad, stride);
            let mut m = Magnitudes::default();
            add_im2col_magnitudes(&l, &input, &mut m, &mut Magnitudes::default());
            let e = l.out_shape.h * l.out_shape.w;
            assert_eq!(m.total(), (e * l.macs_per_output()) as u64);
        }
        let l = conv(1, 1);
        let mut m = Magnitudes::default();
        add_im2col_magnitudes(&l, &[5; 32], &mut m, &mut Magnitudes::default());
        assert_eq!(m.counts[5] + m.counts[0], 2 * 16 * 9);
        // Each of the 16 outputs sees 9 taps; interior pixels of a 4x4 map
        // see all 9, edges 6, corners 4: 4*9 + 8*6 + 4*4 = 100 valid.
        assert_eq!(m.counts[5], 2 * 100);
    }
}
