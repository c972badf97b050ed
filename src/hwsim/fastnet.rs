//! The whole-network fast exact path: a network on the systolic array under
//! hardware faults, bit-identical to the cycle-level executor, at close to
//! the fast engine's speed.
//!
//! # How an image runs
//!
//! - An image without any fault is a fault-free inference: its logits are
//!   the fast engine's ([`crate::engine::FastEngine`], images batched), which
//!   equal the cycle-level model's by the one-arithmetic invariant.
//! - An image with faults runs node by node. A conv/linear layer that no PE
//!   fault and no layer-specific filter-buffer fault acts on runs through the
//!   fast engine's layer code (pre-packed weights, the engine's im2col, GEMM
//!   kernels and finishing), on its input as it arrives — corrupted by
//!   earlier layers or by ifmap-buffer faults, or clean. A layer with PE
//!   faults takes the engine's clean accumulators of its groups and applies
//!   the faults' exact effects with [`super::exact::run_exact_from_clean`];
//!   a layer whose filter codes a transient or layer-scoped filter-buffer
//!   fault changes computes its clean accumulators from the corrupted codes.
//!   Buffer faults (ifmap, filter, ofmap) act exactly as in
//!   [`HwNetwork::run_codes`]'s cycle-level path (same helper).
//! - Permanent filter-buffer cells act on every layer's weights, the same
//!   way in every image of a chip: they are applied to a copy of the model
//!   once per chip, whose weights are then packed once ([`ChipKit`]).
//!
//! The cycle counts reported per layer are the mapping's cycles, as the
//! [`super::layer::Exact`] executor reports them.

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use super::exact::engine_stuck::{self, EngineOperands, FilterCache};
use super::exact::{clean::plain_sum_exact, clean_gemm, run_exact_from_clean_trusted};
use super::layer::{filter_operand, finish_group, ifmap_operand, LayerGemm, LayerStats};
use super::network::{ActingFaults, ChipFault, HwImageRun, HwNetError, HwNetwork, ImageFaults};
use super::sram::{SramBuffer, SramFault};
use super::Gemm;
use crate::engine::fast::{KitScratch, LayerKit};
use crate::engine::{finish_mac_output, Engine, FastEngine};
use crate::quant::{QModel, QOp};

/// A model whose weights carry a chip's permanent filter-buffer faults,
/// with its layers prepared for the fast engine.
pub(crate) struct ChipKit {
    /// The permanent filter-buffer faults applied, in chip order.
    baked: Vec<SramFault>,
    /// `None`: the network's own model (nothing baked).
    model: Option<QModel>,
    kit: LayerKit,
    /// Per MAC layer, its filter codes as i8 for [`engine_stuck`], made on
    /// first use (once per chip instead of once per image and layer).
    w8: Vec<OnceLock<Vec<i8>>>,
    /// Per MAC layer and group, what the IS corrections derive from the
    /// group's filter codes, made on first use.
    filter_cache: Vec<Vec<FilterCache>>,
}

/// One [`FilterCache`] per group of every MAC layer of `net`.
fn group_cells(net: &HwNetwork) -> Vec<Vec<FilterCache>> {
    net.layers()
        .iter()
        .map(|l| (0..l.gemm.groups).map(|_| FilterCache::default()).collect())
        .collect()
}

impl ChipKit {
    pub(crate) fn clean(net: &HwNetwork) -> ChipKit {
        ChipKit {
            baked: Vec::new(),
            model: None,
            kit: LayerKit::new(net.model()),
            w8: (0..net.layers().len()).map(|_| OnceLock::new()).collect(),
            filter_cache: group_cells(net),
        }
    }

    /// The permanent filter-buffer faults of a chip's fault list.
    pub(crate) fn filter_faults(permanent: &[ChipFault]) -> Vec<SramFault> {
        permanent
            .iter()
            .filter_map(|f| match f {
                ChipFault::Sram(s) if s.buffer == SramBuffer::Filter => Some(*s),
                _ => None,
            })
            .collect()
    }

    /// The kit for a chip whose permanent filter-buffer faults are `baked`.
    pub(crate) fn new(net: &HwNetwork, baked: Vec<SramFault>) -> ChipKit {
        let mut model = net.model().clone();
        let (width, words) = (
            net.sram_width(SramBuffer::Filter),
            net.sram_words(SramBuffer::Filter),
        );
        let mut changed = false;
        let mut li = 0;
        for node in &mut model.nodes {
            if let QOp::Mac(l) = &mut node.op {
                let before = l.weights.clone();
                for f in &baked {
                    f.apply(&mut l.weights, width, words, net.layers()[li].gemm.cycles);
                }
                changed |= before != l.weights;
                li += 1;
            }
        }
        if !changed {
            return ChipKit {
                baked,
                ..ChipKit::clean(net)
            };
        }
        let kit = LayerKit::new(&model);
        ChipKit {
            baked,
            model: Some(model),
            kit,
            w8: (0..net.layers().len()).map(|_| OnceLock::new()).collect(),
            filter_cache: group_cells(net),
        }
    }

    pub(crate) fn bakes(&self, filter_faults: &[SramFault]) -> bool {
        self.baked == filter_faults
    }

    fn model<'a>(&'a self, net: &'a HwNetwork) -> &'a QModel {
        self.model.as_ref().unwrap_or(net.model())
    }
}

/// One thread's buffers.
#[derive(Default)]
pub(crate) struct Scratch {
    kit: KitScratch,
    nodes: Vec<Vec<i32>>,
    a: Vec<i32>,
    w: Vec<i32>,
    /// One group's raw sums (`M x E`) and filter codes (`M x K`) for
    /// [`engine_stuck`].
    acc: Vec<i32>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

/// Run `f` with this thread's [`Scratch`], kept between images: rayon's
/// `map_init` made one per image here (one job per image), and refilling
/// every node buffer and im2col operand from zeroed allocations cost an
/// aged chip's ResNet-20 campaign 54 / 60 / 45-47% of the clean engine's
/// throughput where it now runs at 61-62 / 68-79 / 51-54% (OS / WS / IS,
/// `benches/hwsim_fastnet.rs`). A nested call (a thread that
/// steals another image while it waits inside the GEMM) finds the slot
/// empty and uses a fresh one.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.with(|c| c.take()).unwrap_or_default();
    let r = f(&mut s);
    SCRATCH.with(|c| c.set(Some(s)));
    r
}

/// Run one image (input codes) under `faults` on the chip prepared as `ck`
/// (whose baked filter faults must be exactly `faults.permanent`'s).
pub(crate) fn run_codes(
    net: &HwNetwork,
    ck: &ChipKit,
    input: &[i32],
    faults: &ImageFaults,
    s: &mut Scratch,
) -> Result<HwImageRun, HwNetError> {
    let model = ck.model(net);
    let dp = *net.datapath();
    let array = net.array();
    // (the scratch may come from another network's run: sizes per node)
    s.nodes.resize_with(model.nodes.len(), Vec::new);
    for (buf, n) in s.nodes.iter_mut().zip(&model.nodes) {
        buf.resize(n.shape.numel(), 0);
    }
    let mut stats = Vec::with_capacity(net.layers().len());
    let mut acting_all = ActingFaults::all(
        faults,
        model
            .nodes
            .iter()
            .filter(|n| matches!(n.op, QOp::Mac(_)))
            .count(),
    );
    let mut li = 0;
    for (q, node) in model.nodes.iter().enumerate() {
        let (prev, rest) = s.nodes.split_at_mut(q);
        let out = &mut rest[0];
        match &node.op {
            QOp::Input => out.copy_from_slice(input),
            QOp::Mac(layer) => {
                let hl = &net.layers()[li];
                let acting = std::mem::take(&mut acting_all[li]);
                let lb = net.layer_buffers(li);
                let src = &prev[node.inputs[0]];
                let mut ifmap;
                let input_codes: &[i32] = if acting.has_sram(SramBuffer::Ifmap) {
                    ifmap = src.clone();
                    acting.corrupt(&lb, layer, SramBuffer::Ifmap, &mut ifmap);
                    &ifmap
                } else {
                    src
                };
                // Filter faults of this layer beyond the chip's baked cells.
                let mut filter = None;
                if acting.has_sram_transient(SramBuffer::Filter) {
                    let mut w = layer.weights.clone();
                    acting.corrupt_transient(&lb, layer, SramBuffer::Filter, &mut w);
                    if w != layer.weights {
                        filter = Some(w);
                    }
                }
                let layer_err = |source| HwNetError::Layer {
                    layer: li,
                    name: hl.name.clone(),
                    source,
                };
                if acting.pe.is_empty() && filter.is_none() {
                    ck.kit.mac(model, q, input_codes, out, &mut s.kit);
                } else {
                    let weights = filter.as_deref().unwrap_or(&layer.weights);
                    let shape = hl.gemm;
                    // Stuck-at PE bits only: corrections in the engine's
                    // layout with its kernels, when that path handles them.
                    let engine_layout =
                        filter.is_none() && engine_stuck::supported(&dp, &acting.pe);
                    let w8 = || {
                        ck.w8[li].get_or_init(|| layer.weights.iter().map(|&v| v as i8).collect())
                    };
                    let mut unfinished = false;
                    for gi in 0..shape.groups {
                        if engine_layout {
                            let group_faults = shape.group_faults(gi, &acting.pe);
                            let (m_len, k_len) = (shape.m, shape.k);
                            let w_group = &w8()[gi * m_len * k_len..(gi + 1) * m_len * k_len];
                            if let Some((raw, col, packed)) =
                                ck.kit.raw_sums_col(model, q, gi, input_codes, &mut s.kit)
                            {
                                s.acc.clear();
                                s.acc.extend_from_slice(raw);
                                let ops = EngineOperands {
                                    col,
                                    w: w_group,
                                    cache: Some(&ck.filter_cache[li][gi]),
                                    packed: Some(packed),
                                    e: shape.e,
                                    k: k_len,
                                    m: m_len,
                                };
                                let done = engine_stuck::apply(
                                    array,
                                    &dp,
                                    &group_faults,
                                    &ops,
                                    &mut s.acc,
                                )
                                .map_err(layer_err)?;
                                if done {
                                    ck.kit.finish_raw(model, q, gi, &s.acc, input_codes, out);
                                    continue;
                                }
                            }
                        }
                        unfinished = true;
                        filter_operand(layer, weights, gi, &mut s.w);
                        // The clean sums from the engine when they are exact
                        // under the accumulator rule; the ifmap operand then
                        // from the engine's im2col too (the scalar
                        // `ifmap_operand` was a third of a transient-flip
                        // campaign's time).
                        let engine_sums = filter.is_none() && plain_sum_exact(&dp, shape.k);
                        let mut clean = None;
                        if engine_sums {
                            if let Some((raw, col, _)) =
                                ck.kit.raw_sums_col(model, q, gi, input_codes, &mut s.kit)
                            {
                                transpose_col(col, shape.e, shape.k, &mut s.a);
                                clean = Some(transpose_clean(raw, &shape, &dp));
                            }
                        }
                        if clean.is_none() {
                            ifmap_operand(layer, input_codes, gi, &mut s.a);
                            if engine_sums {
                                let raw = ck.kit.raw_sums(model, q, gi, input_codes, &mut s.kit);
                                clean = Some(transpose_clean(raw, &shape, &dp));
                            }
                        }
                        let gemm = Gemm {
                            a: &s.a,
                            w: &s.w,
                            e: shape.e,
                            k: shape.k,
                            m: shape.m,
                        };
                        let clean = clean.unwrap_or_else(|| clean_gemm(&gemm, &dp));
                        let run = run_exact_from_clean_trusted(
                            array,
                            &gemm,
                            &dp,
                            &shape.group_faults(gi, &acting.pe),
                            clean,
                        )
                        .map_err(layer_err)?;
                        finish_group(layer, &dp, shape.e, shape.m, gi, &run.out, out);
                    }
                    if unfinished {
                        // (a clamp: groups finished above are left as they are)
                        finish_mac_output(layer, out, 0, None);
                    }
                }
                acting.corrupt(&lb, layer, SramBuffer::Ofmap, out);
                stats.push(LayerStats {
                    stepped_cycles: hl.gemm.cycles,
                    pe_cycle_updates: hl.gemm.cycles * (array.rows * array.cols) as u64,
                });
                li += 1;
            }
            _ => LayerKit::non_mac(model, q, prev, out),
        }
    }
    Ok(HwImageRun {
        logits: s.nodes.last().cloned().unwrap_or_default(),
        layers: stats,
    })
}

/// The engine's im2col operand of one group (`K x E` codes) as the exact
/// path's ifmap operand `A` (`E x K`), in square tiles so that both sides
/// stay in cache.
fn transpose_col(col: &[i8], e_len: usize, k_len: usize, a: &mut Vec<i32>) {
    const TILE: usize = 32;
    // every element is written below: only growth needs filling
    a.truncate(e_len * k_len);
    a.resize(e_len * k_len, 0);
    for e0 in (0..e_len).step_by(TILE) {
        let e1 = (e0 + TILE).min(e_len);
        for k0 in (0..k_len).step_by(TILE) {
            let k1 = (k0 + TILE).min(k_len);
            for e in e0..e1 {
                let dst = &mut a[e * k_len + k0..e * k_len + k1];
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = i32::from(col[(k0 + i) * e_len + e]);
                }
            }
        }
    }
}

/// The engine's raw sums of one group (`M x E`, wrapping i32) as the
/// exact path's clean accumulators (`E x M`, after the accumulator rule).
/// Only for sums that are exact under the rule ([`plain_sum_exact`]).
fn transpose_clean(raw: &[i32], shape: &LayerGemm, dp: &crate::fixed::Datapath) -> Vec<i64> {
    let (e_len, m_len) = (shape.e, shape.m);
    let mut clean = vec![0i64; e_len * m_len];
    for (m, row) in raw.chunks_exact(e_len).enumerate().take(m_len) {
        for (e, &v) in row.iter().enumerate() {
            clean[e * m_len + m] = dp.acc_limit(v as i64);
        }
    }
    clean
}

/// Run `images` (f32, whole images), image `i` under `faults[i]`: the
/// logits of each. Fault-free images go through the fast engine in one
/// batch, the others through [`run_codes`] in parallel. `Err((i, e))`
/// names the image that failed.
pub(crate) fn run_images(
    net: &HwNetwork,
    images: &[f32],
    faults: &[ImageFaults],
) -> Result<Vec<Vec<i32>>, (usize, HwNetError)> {
    let n = net.model().input_shape().numel();
    let count = images.len() / n;
    let mut logits: Vec<Vec<i32>> = vec![Vec::new(); count];
    let clean: Vec<usize> = (0..count).filter(|&i| faults[i].is_empty()).collect();
    if !clean.is_empty() {
        let mut batch = Vec::with_capacity(clean.len() * n);
        for &i in &clean {
            batch.extend_from_slice(&images[i * n..(i + 1) * n]);
        }
        let out = FastEngine
            .run(net.model(), &batch, 0, None)
            .map_err(|e| (clean[0], HwNetError::Engine(e.to_string())))?;
        for (&i, l) in clean.iter().zip(out) {
            logits[i] = l;
        }
    }
    let faulty: Vec<usize> = (0..count).filter(|&i| !faults[i].is_empty()).collect();
    if faulty.is_empty() {
        return Ok(logits);
    }
    // One kit per distinct set of permanent filter-buffer faults (a chip
    // has one).
    let mut kits: Vec<Arc<ChipKit>> = Vec::new();
    let mut kit_of = Vec::with_capacity(faulty.len());
    for &i in &faulty {
        let ff = ChipKit::filter_faults(&faults[i].permanent);
        let k = match kits.iter().position(|k| k.bakes(&ff)) {
            Some(k) => k,
            None => {
                kits.push(net.chip_kit(&ff));
                kits.len() - 1
            }
        };
        kit_of.push(k);
    }
    let runs: Vec<Result<Vec<i32>, (usize, HwNetError)>> = faulty
        .par_iter()
        .zip(kit_of.par_iter())
        .with_max_len(1)
        .map(|(&i, &k)| {
            let mut codes = vec![0i32; n];
            net.model()
                .quantize_input(&images[i * n..(i + 1) * n], &mut codes);
            net.check_image_faults(&faults[i]).map_err(|e| (i, e))?;
            with_scratch(|s| run_codes(net, &kits[k], &codes, &faults[i], s))
                .map(|r| r.logits)
                .map_err(|e| (i, e))
        })
        .collect();
    for (&i, r) in faulty.iter().zip(runs) {
        logits[i] = r?;
    }
    Ok(logits)
}
