//! A whole quantized network on a bit-serial accelerator (Stripes, Loom):
//! image by image, node by node, every conv/linear layer's groups through
//! the bit-serial functional model ([`super::bitserial`]), every other op
//! through the engines' integer code, with SIP-register and SRAM faults
//! addressed per layer. The bit-serial sibling of [`super::HwNetwork`].
//!
//! # Layers, precision and cycles
//!
//! "Layer `L`" is the `L`-th conv/linear node ([`QModel::mac_layers`]
//! order). Its groups run back to back, each one
//! [`BitSerialArray::run`] of the group's GEMM (`E x K` im2col of the input
//! codes by `K x M` weight codes, `k = c*taps + tap`, the engine's order).
//! Every layer runs at the datapath's precisions (`Pa = act_bits`,
//! `Pw = weight_bits`, which every code fits), as `ftnas sim` times a
//! bit-serial design without a precision file. With per-layer precision
//! the cycles a layer steps equal the timing model's compute cycles
//! ([`crate::accel::time_graph`]); with per-group precision (Loom's
//! run-time detection) a step lasts as long as its widest activation needs,
//! so a layer takes at most the timing model's figure. The layer's cycle
//! numbering reserves the timing model's cycles for each group (group `g`
//! starts at `g * group_cycles`); a transient flip addressed past the
//! cycles a group actually took is masked (the SIPs are idle then).
//!
//! # Arithmetic
//!
//! With a wrapping accumulator the bit-serial sums are the exact sums
//! modulo `2^psum_bits`, so fault-free logits are bit-identical to the
//! engines'. With a saturating one the bit-plane partial sums of a
//! bit-serial datapath are different numbers from the engines' in-order
//! ones; they agree whenever no intermediate sum saturates (see
//! [`super::bitserial`]).
//!
//! # Faults and executors
//!
//! Sites `sip.act_reg`, `sip.weight_reg`, `sip.psum_reg` (coordinates of
//! [`super::bitserial::SipSite::grid`]) and the three SRAM buffers, with the SRAM rules of
//! [`super::sram`] (as on a systolic array). Executors: `cycle-level` steps
//! every layer; `exact` computes fault-free groups with the engine's integer
//! GEMM — exact in wrap mode (the sum modulo `2^psum_bits` does not depend
//! on the order), so with a saturating accumulator every group is stepped —
//! and groups whose only SIP faults are stuck activation/weight register
//! bits with the same GEMM on operand copies carrying those bits
//! ([`super::bitserial::stuck_operand_copies`]; per-layer precision at the
//! datapath's widths, where every register bit is shifted out). Groups with
//! SIP flips or accumulator faults are stepped — with flips only, just the
//! blocks (filter set x window set) a flip reaches
//! ([`BitSerialArray::run_with_clean`]).

use serde::Serialize;

use super::bitserial::{stuck_operand_copies, BitSerialArray, LayerPrecision, SipFault};
use super::exact::clean_gemm;
use super::layer::{filter_operand, finish_group, ifmap_operand};
use super::network::{ActingFaults, ChipFault, HwNetError, ImageFaults, LayerBuffers};
use super::spec::{ChipFaults, FaultTarget, Site};
use super::sram::SramBuffer;
use super::{FaultKind, Gemm, HwSimError};
use crate::accel::description::{Kind, Precision, Serial};
use crate::accel::Accelerator;
use crate::engine::{exec_non_mac, finish_mac_output};
use crate::fixed::{Datapath, Overflow};
use crate::quant::{MacLayer, QModel, QOp};

/// One conv/linear layer as the bit-serial design runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BsLayer {
    /// Index of the node in [`QModel::nodes`].
    pub node: usize,
    pub name: String,
    pub groups: usize,
    /// Output pixels, reduction length and filters of one group's GEMM.
    pub e: usize,
    pub k: usize,
    pub m: usize,
    /// Kernel taps (`kh * kw`); `k = channels * taps`.
    pub taps: usize,
    /// Activation / weight precision the layer runs at.
    pub act_precision: u8,
    pub weight_precision: u8,
    /// Baseline steps of the whole layer (all groups).
    pub steps: u64,
    /// Cycles reserved per group: the timing model's (exact with
    /// per-layer precision, an upper bound with per-group precision).
    pub group_cycles: u64,
    /// `groups * group_cycles`: the timing model's compute cycles.
    pub cycles: u64,
    pub ifmap_len: usize,
    pub filter_len: usize,
    pub ofmap_len: usize,
}

impl BsLayer {
    fn precision(&self) -> LayerPrecision {
        LayerPrecision {
            act: self.act_precision,
            weight: self.weight_precision,
        }
    }
}

/// What one layer measured in one inference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BsLayerStats {
    /// Steps run (all groups).
    pub steps: u64,
    /// Cycles the layer took (all groups).
    pub cycles: u64,
    /// Groups stepped cycle by cycle (the others were computed with the
    /// engine's GEMM by the exact executor).
    pub stepped_groups: usize,
    /// Groups the exact executor computed with the engine's GEMM on
    /// operand copies carrying stuck SIP register bits (not stepped).
    pub stuck_groups: usize,
    /// Whether a saturating accumulator clamped an intermediate sum.
    pub saturated: bool,
}

/// Logits and per-layer measurements of one inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BsImageRun {
    pub logits: Vec<i32>,
    pub layers: Vec<BsLayerStats>,
}

/// How the layers run (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BsExecutor {
    /// Every layer group stepped cycle by cycle.
    #[default]
    CycleLevel,
    /// Only groups with SIP faults (or any group with a saturating
    /// accumulator) stepped; the others through the engine's GEMM.
    Exact,
}

impl BsExecutor {
    pub fn name(self) -> &'static str {
        match self {
            BsExecutor::CycleLevel => "cycle-level",
            BsExecutor::Exact => "exact",
        }
    }
}

/// A quantized model mapped onto a bit-serial accelerator.
#[derive(Debug, Clone)]
pub struct BitSerialNetwork {
    model: QModel,
    accel_name: String,
    array: BitSerialArray,
    sram_words: [usize; 3],
    clock_mhz: f64,
    layers: Vec<BsLayer>,
    executor: BsExecutor,
}

impl BitSerialNetwork {
    /// Map `model` onto `accel` (a valid bit-serial description whose
    /// datapath is the model's), with the cycle-level executor.
    pub fn new(accel: &Accelerator, model: &QModel) -> Result<BitSerialNetwork, HwNetError> {
        let design = match (accel.kind, &accel.bitserial) {
            (Kind::BitSerial, Some(b)) => b.clone(),
            _ => return Err(HwNetError::NotBitSerial(accel.name.clone())),
        };
        if accel.datapath != model.datapath {
            return Err(HwNetError::DatapathMismatch {
                accel: accel.name.clone(),
                accel_dp: accel.datapath,
                model_dp: model.datapath,
            });
        }
        let dp = accel.datapath;
        if design.serial == Serial::Activations && dp.act_bits > 16 {
            return Err(HwNetError::Array(HwSimError::Datapath(format!(
                "Stripes processes at most 16 activation bits, `{}` has {}-bit activations",
                accel.name, dp.act_bits
            ))));
        }
        let array = BitSerialArray::new(design).map_err(HwNetError::Array)?;
        let d = accel.derived();
        let mut layers = Vec::new();
        for (q, node) in model.nodes.iter().enumerate() {
            if let QOp::Mac(l) = &node.op {
                let (e, k, m) = (
                    l.out_shape.h * l.out_shape.w,
                    l.macs_per_output(),
                    l.cout_per_group(),
                );
                let taps = l.kernel.0 * l.kernel.1;
                let group_steps = array.steps(e, m, taps, k / taps);
                let per_step = crate::accel::bitserial::cycles_per_step(
                    &array.design,
                    dp.act_bits,
                    dp.weight_bits,
                );
                layers.push(BsLayer {
                    node: q,
                    name: l.name.clone(),
                    groups: l.groups,
                    e,
                    k,
                    m,
                    taps,
                    act_precision: dp.act_bits,
                    weight_precision: dp.weight_bits,
                    steps: group_steps * l.groups as u64,
                    group_cycles: group_steps * per_step,
                    cycles: group_steps * per_step * l.groups as u64,
                    ifmap_len: l.in_shape.numel(),
                    filter_len: l.weights.len(),
                    ofmap_len: l.out_shape.numel(),
                });
            }
        }
        Ok(BitSerialNetwork {
            model: model.clone(),
            accel_name: accel.name.clone(),
            array,
            sram_words: [d.ifmap_sram_words, d.filter_sram_words, d.ofmap_sram_words],
            clock_mhz: accel.clock_mhz,
            layers,
            executor: BsExecutor::CycleLevel,
        })
    }

    /// The same network with another executor.
    pub fn with_executor(mut self, executor: BsExecutor) -> BitSerialNetwork {
        self.executor = executor;
        self
    }

    pub fn executor(&self) -> BsExecutor {
        self.executor
    }
    pub fn model(&self) -> &QModel {
        &self.model
    }
    pub fn accel_name(&self) -> &str {
        &self.accel_name
    }
    pub fn array(&self) -> &BitSerialArray {
        &self.array
    }
    pub fn datapath(&self) -> &Datapath {
        &self.model.datapath
    }
    /// The conv/linear layers, in order ("layer `L`" is `layers()[L]`).
    pub fn layers(&self) -> &[BsLayer] {
        &self.layers
    }
    /// Cycles of one inference (the timing model's; with per-group
    /// precision an upper bound).
    pub fn cycles(&self) -> u64 {
        self.layers.iter().map(|l| l.cycles).sum()
    }
    pub fn sram_words(&self, buffer: SramBuffer) -> usize {
        self.sram_words[buffer as usize]
    }
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

    fn layer_buffers(&self, li: usize) -> LayerBuffers {
        let l = &self.layers[li];
        LayerBuffers {
            cycles: l.cycles,
            group_cycles: l.group_cycles,
            words: self.sram_words,
            widths: SramBuffer::ALL.map(|b| self.sram_width(b)),
        }
    }

    /// Check one fault against the design, the buffers and the layers
    /// (`layer` is `None` for a permanent fault).
    pub fn check_fault(&self, layer: Option<usize>, fault: &ChipFault) -> Result<(), String> {
        if let Some(l) = layer {
            let Some(bl) = self.layers.get(l) else {
                return Err(format!(
                    "layer {l} does not exist (the model has {} conv/linear layers)",
                    self.layers.len()
                ));
            };
            if let FaultKind::Flip { cycle } = fault.kind() {
                if cycle >= bl.cycles {
                    return Err(format!(
                        "cycle {cycle} is past the end of the layer ({} cycles)",
                        bl.cycles
                    ));
                }
            }
        } else if matches!(fault.kind(), FaultKind::Flip { .. }) {
            return Err("a transient flip needs a layer".into());
        }
        match fault {
            ChipFault::Pe(f) => Err(format!(
                "{} is a systolic-array site; this accelerator is bit-serial (sites sip.*, sram.*)",
                f.site
            )),
            ChipFault::Sip(f) => {
                let (rows, cols) = f.site.grid(&self.array.design);
                if f.row >= rows || f.col >= cols {
                    return Err(format!(
                        "({}, {}) is outside the {rows}x{cols} grid of {}",
                        f.row, f.col, f.site
                    ));
                }
                let width = f.site.width(self.datapath());
                if u32::from(f.bit) >= width {
                    return Err(format!(
                        "bit {} does not exist in {} ({width} bits wide)",
                        f.bit, f.site
                    ));
                }
                Ok(())
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
                Ok(())
            }
        }
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

    /// Run `images` (whole images of `c*h*w` floats; image `i` has dataset
    /// index `first_index + i`) on `chip`, images in parallel: the logit
    /// codes of each.
    pub fn run_images(
        &self,
        images: &[f32],
        first_index: u64,
        chip: &ChipFaults,
    ) -> Result<Vec<Vec<i32>>, HwNetError> {
        let n = self.model.input_shape().numel();
        let count = images.len() / n.max(1);
        let faults: Vec<ImageFaults> = (0..count)
            .map(|i| chip.for_image(first_index + i as u64, self))
            .collect();
        self.run_images_indexed(images, &faults).map_err(|(_, e)| e)
    }

    /// Run `images`, image `i` under `faults[i]`; an error names its image.
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
        images
            .par_chunks(n)
            .zip(faults)
            .enumerate()
            .with_max_len(1)
            .map(|(i, (img, f))| {
                let mut codes = vec![0i32; n];
                self.model.quantize_input(img, &mut codes);
                self.run_codes(&codes, f)
                    .map(|r| r.logits)
                    .map_err(|e| (i, e))
            })
            .collect()
    }

    /// Run one image given as input codes, under `faults`.
    pub fn run_codes(&self, input: &[i32], faults: &ImageFaults) -> Result<BsImageRun, HwNetError> {
        let model = &self.model;
        let expected = model.input_shape().numel();
        if input.len() != expected {
            return Err(HwNetError::InputSize {
                got: input.len(),
                expected,
            });
        }
        self.check_faults(faults)?;
        let mut outs: Vec<Vec<i32>> = Vec::with_capacity(model.nodes.len());
        let mut stats = Vec::with_capacity(self.layers.len());
        let mut acting_all = ActingFaults::all(faults, self.layers.len());
        let mut li = 0;
        for (q, node) in model.nodes.iter().enumerate() {
            let mut out = vec![0i32; node.shape.numel()];
            match &node.op {
                QOp::Input => out.copy_from_slice(input),
                QOp::Mac(layer) => {
                    let acting = std::mem::take(&mut acting_all[li]);
                    let lb = self.layer_buffers(li);
                    let mut ifmap = outs[node.inputs[0]].clone();
                    acting.corrupt(&lb, layer, SramBuffer::Ifmap, &mut ifmap);
                    let mut weights = layer.weights.clone();
                    acting.corrupt(&lb, layer, SramBuffer::Filter, &mut weights);
                    let st =
                        self.run_mac_groups(li, layer, &ifmap, &weights, &acting.sip, &mut out)?;
                    finish_mac_output(layer, &mut out, 0, None);
                    acting.corrupt(&lb, layer, SramBuffer::Ofmap, &mut out);
                    stats.push(st);
                    li += 1;
                }
                _ => exec_non_mac(model, q, &outs, &mut out),
            }
            outs.push(out);
        }
        Ok(BsImageRun {
            logits: outs.pop().unwrap_or_default(),
            layers: stats,
        })
    }
}

impl BitSerialNetwork {
    /// Run conv/linear layer `li` (`layer`, its node) on input codes
    /// `ifmap` with weight codes `weights` under SIP faults `sip` (cycles
    /// numbered over the layer, every group reserving the timing model's
    /// cycles): its requantized pre-activation codes (CHW) into `out`.
    pub fn run_mac_groups(
        &self,
        li: usize,
        layer: &MacLayer,
        ifmap: &[i32],
        weights: &[i32],
        sip: &[SipFault],
        out: &mut [i32],
    ) -> Result<BsLayerStats, HwNetError> {
        let dp = self.model.datapath;
        let bl = &self.layers[li];
        let (mut a, mut w) = (Vec::new(), Vec::new());
        let mut st = BsLayerStats::default();
        let full_width = self.array.design.precision == Precision::PerLayer
            && bl.act_precision == dp.act_bits
            && bl.weight_precision == dp.weight_bits
            && dp.act_bits <= 16;
        let sip_faults = LayerSipFaults::new(sip);
        for gi in 0..bl.groups {
            ifmap_operand(layer, ifmap, gi, &mut a);
            filter_operand(layer, weights, gi, &mut w);
            let gemm = Gemm {
                a: &a,
                w: &w,
                e: bl.e,
                k: bl.k,
                m: bl.m,
            };
            let took = self.array.cycles(&gemm, bl.taps, bl.precision());
            let group_faults = sip_faults.group(gi, bl.group_cycles, took);
            let err = |source| HwNetError::Layer {
                layer: li,
                name: bl.name.clone(),
                source,
            };
            let fast = self.executor == BsExecutor::Exact && dp.overflow == Overflow::Wrap;
            // Stuck operand-register bits are corrupted operands when every
            // register bit is shifted out.
            let stuck_copies = if fast && !group_faults.is_empty() && full_width {
                stuck_operand_copies(&self.array.design, &gemm, bl.taps, &dp, &group_faults)
            } else {
                None
            };
            let acc = if fast && group_faults.is_empty() {
                super::check_gemm_codes(&gemm, dp.act_bits, dp.weight_bits).map_err(err)?;
                clean_gemm(&gemm, &dp)
            } else if let Some((a2, w2)) = &stuck_copies {
                super::check_gemm_codes(&gemm, dp.act_bits, dp.weight_bits).map_err(err)?;
                st.stuck_groups += 1;
                let g2 = Gemm {
                    a: a2,
                    w: w2,
                    ..gemm
                };
                clean_gemm(&g2, &dp)
            } else {
                // Transient flips only (wrap mode): the engine's GEMM gives
                // the blocks no flip reaches, only the others are stepped.
                let flips_only = group_faults
                    .iter()
                    .all(|f| matches!(f.kind, FaultKind::Flip { .. }));
                let run = if fast && flips_only {
                    super::check_gemm_codes(&gemm, dp.act_bits, dp.weight_bits).map_err(err)?;
                    let clean = clean_gemm(&gemm, &dp);
                    self.array.run_with_clean(
                        &gemm,
                        bl.taps,
                        &dp,
                        bl.precision(),
                        &group_faults,
                        &clean,
                    )
                } else {
                    self.array
                        .run(&gemm, bl.taps, &dp, bl.precision(), &group_faults)
                }
                .map_err(err)?;
                st.stepped_groups += 1;
                st.saturated |= run.saturated;
                run.out
            };
            st.steps += bl.steps / bl.groups as u64;
            st.cycles += took;
            finish_group(layer, &dp, bl.e, bl.m, gi, &acc, out);
        }
        Ok(st)
    }

    /// Run one image (`c*h*w` floats, dataset index `image_index`) on
    /// `chip`: its logit codes.
    pub fn run_image(
        &self,
        image: &[f32],
        image_index: u64,
        chip: &ChipFaults,
    ) -> Result<Vec<i32>, HwNetError> {
        let codes = super::network::image_codes(&self.model, image)?;
        let faults = chip.for_image(image_index, self);
        Ok(self.run_codes(&codes, &faults)?.logits)
    }
}

/// A layer's SIP faults, grouped for [`LayerSipFaults::group`]: flips sorted
/// by cycle (stable: same-cycle flips keep their list order), stuck bits in
/// list order.
struct LayerSipFaults {
    flips: Vec<(u64, SipFault)>,
    stuck: Vec<SipFault>,
}

impl LayerSipFaults {
    fn new(faults: &[SipFault]) -> LayerSipFaults {
        let mut flips: Vec<(u64, SipFault)> = faults
            .iter()
            .filter_map(|f| match f.kind {
                FaultKind::Flip { cycle } => Some((cycle, *f)),
                _ => None,
            })
            .collect();
        flips.sort_by_key(|&(c, _)| c);
        let stuck = faults
            .iter()
            .filter(|f| !matches!(f.kind, FaultKind::Flip { .. }))
            .copied()
            .collect();
        LayerSipFaults { flips, stuck }
    }

    /// The SIP faults acting in group `gi` (cycles `gi * group_cycles ..`
    /// of the layer), in that group's numbering: flips in the group's
    /// reserved cycles that fall within the `took` cycles it ran, then
    /// every stuck bit (the array orders flips by cycle and applies stuck
    /// bits in list order, so this is the order it would use).
    fn group(&self, gi: usize, group_cycles: u64, took: u64) -> Vec<SipFault> {
        let start = gi as u64 * group_cycles;
        let lo = self.flips.partition_point(|&(c, _)| c < start);
        let hi = self.flips.partition_point(|&(c, _)| c < start + took);
        self.flips[lo..hi]
            .iter()
            .map(|&(c, f)| SipFault {
                kind: FaultKind::Flip { cycle: c - start },
                ..f
            })
            .chain(self.stuck.iter().copied())
            .collect()
    }
}

impl FaultTarget for BitSerialNetwork {
    fn site_grid(&self, site: Site) -> Option<(u64, u64, u32)> {
        match site {
            Site::Sip(s) => {
                let (rows, cols) = s.grid(&self.array.design);
                Some((rows as u64, cols as u64, s.width(self.datapath())))
            }
            Site::Sram(b) => Some((self.sram_words(b) as u64, 1, self.sram_width(b))),
            Site::Pe(_) => None,
        }
    }

    fn clock_mhz(&self) -> f64 {
        self.clock_mhz
    }

    fn layer_cycles(&self) -> Vec<u64> {
        self.layers.iter().map(|l| l.cycles).collect()
    }

    fn check_fault(&self, layer: Option<usize>, fault: &ChipFault) -> Result<(), String> {
        BitSerialNetwork::check_fault(self, layer, fault)
    }
}

/// A network on either kind of accelerator: what the CLI and the campaign
/// simulator ([`crate::campaign::HwChip`]) run.
#[derive(Debug, Clone)]
pub enum AnyHwNetwork {
    Systolic(super::HwNetwork),
    BitSerial(BitSerialNetwork),
}

impl From<super::HwNetwork> for AnyHwNetwork {
    fn from(n: super::HwNetwork) -> Self {
        AnyHwNetwork::Systolic(n)
    }
}

impl From<BitSerialNetwork> for AnyHwNetwork {
    fn from(n: BitSerialNetwork) -> Self {
        AnyHwNetwork::BitSerial(n)
    }
}

impl AnyHwNetwork {
    /// Map `model` onto `accel` (systolic or bit-serial); `exact` selects
    /// the fast exact executor, else every cycle is stepped.
    pub fn new(accel: &Accelerator, model: &QModel, exact: bool) -> Result<Self, HwNetError> {
        Ok(match accel.kind {
            Kind::BitSerial => {
                let executor = if exact {
                    BsExecutor::Exact
                } else {
                    BsExecutor::CycleLevel
                };
                AnyHwNetwork::BitSerial(
                    BitSerialNetwork::new(accel, model)?.with_executor(executor),
                )
            }
            _ => {
                let net = super::HwNetwork::new(accel, model)?;
                AnyHwNetwork::Systolic(if exact {
                    net.with_executor(std::sync::Arc::new(super::layer::Exact))
                } else {
                    net.with_executor(std::sync::Arc::new(super::layer::CycleLevel))
                })
            }
        })
    }

    pub fn model(&self) -> &QModel {
        match self {
            AnyHwNetwork::Systolic(n) => n.model(),
            AnyHwNetwork::BitSerial(n) => n.model(),
        }
    }

    /// The buffers and every layer's timing (derivation of SRAM upsets).
    pub fn buffer_geometry(&self) -> crate::derive::buffers::BufferGeometry {
        match self {
            AnyHwNetwork::Systolic(n) => n.buffer_geometry(),
            AnyHwNetwork::BitSerial(n) => n.buffer_geometry(),
        }
    }

    /// Name of the executor (`cycle-level` or `exact`).
    pub fn executor_name(&self) -> &'static str {
        match self {
            AnyHwNetwork::Systolic(n) => n.executor().name(),
            AnyHwNetwork::BitSerial(n) => n.executor().name(),
        }
    }

    /// The fault sites of this hardware, in report order.
    pub fn sites(&self) -> Vec<Site> {
        match self {
            AnyHwNetwork::Systolic(_) => Site::ALL.to_vec(),
            AnyHwNetwork::BitSerial(_) => Site::BITSERIAL.to_vec(),
        }
    }

    /// Names of the conv/linear layers ("layer `L`").
    pub fn layer_names(&self) -> Vec<String> {
        match self {
            AnyHwNetwork::Systolic(n) => n.layers().iter().map(|l| l.name.clone()).collect(),
            AnyHwNetwork::BitSerial(n) => n.layers().iter().map(|l| l.name.clone()).collect(),
        }
    }

    /// Cycles of one inference.
    pub fn cycles(&self) -> u64 {
        match self {
            AnyHwNetwork::Systolic(n) => n.cycles(),
            AnyHwNetwork::BitSerial(n) => n.cycles(),
        }
    }

    /// Processing units updated per cycle (PEs of the array, or SIP lanes
    /// `tiles * windows * filters * lanes`).
    pub fn units(&self) -> u64 {
        match self {
            AnyHwNetwork::Systolic(n) => (n.array().rows * n.array().cols) as u64,
            AnyHwNetwork::BitSerial(n) => {
                let b = &n.array().design;
                (b.tiles * b.windows * b.filters * b.lanes) as u64
            }
        }
    }

    /// One line naming the hardware (`32x32 Os`, `bit-serial 16x16x16x16 activations`).
    pub fn describe_fabric(&self) -> String {
        match self {
            AnyHwNetwork::Systolic(n) => {
                format!(
                    "{}x{} {:?}",
                    n.array().rows,
                    n.array().cols,
                    n.array().dataflow
                )
            }
            AnyHwNetwork::BitSerial(n) => {
                let b = &n.array().design;
                format!(
                    "bit-serial {} tiles x {} windows x {} filters x {} lanes, {:?} serial, {} bit/cycle",
                    b.tiles, b.windows, b.filters, b.lanes, b.serial, b.bits_per_cycle
                )
            }
        }
    }

    pub fn run_images(
        &self,
        images: &[f32],
        first_index: u64,
        chip: &ChipFaults,
    ) -> Result<Vec<Vec<i32>>, HwNetError> {
        match self {
            AnyHwNetwork::Systolic(n) => n.run_images(images, first_index, chip),
            AnyHwNetwork::BitSerial(n) => n.run_images(images, first_index, chip),
        }
    }

    pub fn run_images_indexed(
        &self,
        images: &[f32],
        faults: &[ImageFaults],
    ) -> Result<Vec<Vec<i32>>, (usize, HwNetError)> {
        match self {
            AnyHwNetwork::Systolic(n) => n.run_images_indexed(images, faults),
            AnyHwNetwork::BitSerial(n) => n.run_images_indexed(images, faults),
        }
    }
}

impl FaultTarget for AnyHwNetwork {
    fn site_grid(&self, site: Site) -> Option<(u64, u64, u32)> {
        match self {
            AnyHwNetwork::Systolic(n) => n.site_grid(site),
            AnyHwNetwork::BitSerial(n) => n.site_grid(site),
        }
    }

    fn clock_mhz(&self) -> f64 {
        match self {
            AnyHwNetwork::Systolic(n) => FaultTarget::clock_mhz(n),
            AnyHwNetwork::BitSerial(n) => FaultTarget::clock_mhz(n),
        }
    }

    fn layer_cycles(&self) -> Vec<u64> {
        match self {
            AnyHwNetwork::Systolic(n) => n.layer_cycles(),
            AnyHwNetwork::BitSerial(n) => n.layer_cycles(),
        }
    }

    fn check_fault(&self, layer: Option<usize>, fault: &ChipFault) -> Result<(), String> {
        match self {
            AnyHwNetwork::Systolic(n) => n.check_fault(layer, fault),
            AnyHwNetwork::BitSerial(n) => n.check_fault(layer, fault),
        }
    }
}
