//! The graph walker: forward over [`Graph::nodes`] in order, storing what the
//! backward pass needs on a [`Tape`], then backward in reverse order. Not a
//! general autodiff: every [`Op`] has one forward and one backward rule.
//!
//! Three ways to run a forward ([`Mode`]):
//! - `Train`: batch norms use the batch statistics. With QAT, a conv/linear
//!   followed by a BN uses `W~ = q(w * a) / a` (`a = gamma/sqrt(var+eps)` from
//!   the running statistics), i.e. exactly the weights the engine will use
//!   once the BN is folded, and the BN then normalises with batch
//!   statistics; activations are requantized where the engine requantizes.
//! - `Frozen(stats)`: like `Train` but the batch norms use the given
//!   statistics as constants (the search reward's faulty forward reuses the
//!   clean forward's statistics, as the engine's folded BNs do not adapt to
//!   faults; FTT training does not, see `Trainer::train_step`).
//! - `Eval`: running statistics. With QAT, batch norms are folded into the
//!   conv/linear weights and biases exactly as `quant::build` folds them
//!   (weight codes per tensor, bias codes in the accumulator domain), so the
//!   forward reproduces the fixed-point engine's codes (see
//!   `tests/train_fashion.rs`, `tests/train_ftt.rs`). No backward in this mode.
//!
//! Gradients pass straight through every rounding and fault injection and
//! are blocked where a clamp (saturation, ReLU, ReLU6) was active.

use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::conv::{self, ConvGeom};
use super::fake_quant::{Grid, QuantPlan};
use super::layers::{self, BnStats, PoolGeom};
use super::params::Params;
use crate::fault::{FeatureBuffer, FeatureInjector, LayerSite, SparseCodes, WeightInjector};
use crate::fixed::{saturate, Datapath, Format};
use crate::model::{Graph, NodeId, Op, Shape};
use crate::quant::int_ops::six_code;

/// Batch-norm statistics source of a forward pass.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    Train,
    Frozen(&'a [Option<BnStats>]),
    Eval,
}

/// Fake quantization of a forward pass: node output formats (from
/// [`QuantPlan::formats`]) and the datapath.
#[derive(Clone, Copy)]
pub struct Qat<'a> {
    pub formats: &'a [Format],
    pub datapath: Datapath,
}

/// Faults of one faulty forward: injectors and the stream indices.
/// Feature faults use `fault::stream(seed, trial, first_index + image, node)`
/// per image and layer, weight faults `fault::stream(seed, trial, u64::MAX,
/// node)` per layer, as the engine and `QModel::with_weight_faults` do.
#[derive(Clone, Copy)]
pub struct Faults<'a> {
    pub feature: Option<&'a dyn FeatureInjector>,
    pub weight: Option<&'a dyn WeightInjector>,
    pub seed: u64,
    pub trial: u64,
    pub first_index: u64,
}

/// Codes changed by the injectors in one forward, per conv/linear layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HitCount {
    pub node: NodeId,
    /// Feature codes (pre-activation outputs) changed / examined.
    pub feature_changed: u64,
    pub feature_total: u64,
    /// Weight codes changed / examined.
    pub weight_changed: u64,
    pub weight_total: u64,
}

/// Effective parameters of a conv/linear for one forward.
struct MacParams {
    /// The weights the float convolution uses.
    eff: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// With QAT: the weight codes behind `eff`.
    codes: Option<MacCodes>,
}

/// The weight codes of a fake-quantized conv/linear (after weight faults
/// and filter-buffer flips): `eff = code * 2^-frac / divided_by[oc]`.
struct MacCodes {
    codes: Vec<i32>,
    format: Format,
    /// The folded batch norm's per-channel scale `a` when the forward
    /// applies it afterwards (`W~ = q(w a) / a`, training mode), else None.
    divided_by: Option<Vec<f32>>,
}

/// Flip each bit of each code of `img` (values on `grid`) with probability
/// `p`, reading and writing only the codes hit (draw for draw what
/// [`crate::fault::BitFlip`] does on dense codes).
fn flip_codes(img: &mut [f32], grid: Grid, p: f64, rng: &mut Xoshiro256PlusPlus) {
    let hits = {
        let view: &[f32] = img;
        let clean = |j: usize| grid.code(view[j]);
        let mut codes = SparseCodes::new(view.len(), &clean);
        crate::fault::BitFlip { p }.apply(grid.format.bits, &mut codes, rng);
        codes.into_hits()
    };
    for (j, c) in hits {
        img[j] = grid.value(c);
    }
}

/// Force the stuck cells of `buffer` into one image's values `img` (on
/// `grid`), as [`crate::fault::FeatureInjector::inject_stuck`] does on
/// codes; writes back only the values that changed.
fn stick_codes(
    inj: &dyn FeatureInjector,
    site: &LayerSite,
    buffer: FeatureBuffer,
    image: u64,
    img: &mut [f32],
    grid: Grid,
) {
    let mut codes: Vec<i32> = img.iter().map(|&v| grid.code(v)).collect();
    inj.inject_stuck(site, buffer, image, &mut codes);
    for (v, &c) in img.iter_mut().zip(&codes) {
        if grid.code(*v) != c {
            *v = grid.value(c);
        }
    }
}

/// What a forward pass keeps for its backward pass.
#[derive(Debug, Clone)]
pub struct Tape {
    pub n: usize,
    /// Output of every node (N x shape).
    pub outs: Vec<Vec<f32>>,
    /// Statistics each batch norm normalised with.
    pub bn: Vec<Option<BnStats>>,
    argmax: Vec<Option<Vec<u32>>>,
    /// Effective (fake-quantized, possibly corrupted) conv/linear weights.
    eff_weights: Vec<Option<Vec<f32>>>,
    /// A conv/linear's own copy of its input with input-buffer flips (the
    /// input its weight gradient pairs with).
    flipped_inputs: Vec<Option<Vec<f32>>>,
    pub hits: Vec<HitCount>,
    /// Node formats of a QAT forward.
    formats: Option<Vec<Format>>,
    batch_stats: bool,
    exact_fold: bool,
}

impl Tape {
    /// The logits (N x classes).
    pub fn logits(&self) -> &[f32] {
        self.outs.last().map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The network being trained: graph, quantization plan and parameters.
#[derive(Debug, Clone)]
pub struct Network<'g> {
    pub graph: &'g Graph,
    pub plan: QuantPlan,
    pub params: Params,
}

/// `a = gamma / sqrt(var + eps)` and `shift = beta - mean * a` from running
/// statistics, computed exactly as `quant::build` does (same f32 operations).
pub fn bn_affine(params: &Params, bn: NodeId, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let (g, b, m, v) = (
        params.node(bn, 0),
        params.node(bn, 1),
        params.node(bn, 2),
        params.node(bn, 3),
    );
    let a: Vec<f32> = (0..g.len()).map(|c| g[c] / (v[c] + eps).sqrt()).collect();
    let shift = (0..g.len()).map(|c| b[c] - m[c] * a[c]).collect();
    (a, shift)
}

fn bn_eps(graph: &Graph, id: NodeId) -> f32 {
    match graph.nodes[id].op {
        Op::BatchNorm { eps } => eps,
        _ => 0.0,
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, &x| m.max(x.abs()))
}

impl<'g> Network<'g> {
    pub fn new(graph: &'g Graph, params: Params) -> Network<'g> {
        Network {
            graph,
            plan: QuantPlan::new(graph),
            params,
        }
    }

    fn site(&self, mac: NodeId, format: Format) -> LayerSite<'g> {
        let g = self.graph;
        LayerSite {
            node: mac,
            name: &g.nodes[mac].name,
            is_conv: matches!(g.nodes[mac].op, Op::Conv2d { .. }),
            macs_per_output: g.macs_per_output(mac),
            taps: g.mac_taps(mac),
            groups: g.mac_groups(mac),
            draw: 0,
            format,
        }
    }

    /// Effective weights and bias of conv/linear `id` for this pass.
    fn mac_params(
        &self,
        id: NodeId,
        qat: Option<&Qat>,
        exact_fold: bool,
        faults: Option<&Faults>,
        hit: &mut HitCount,
    ) -> MacParams {
        let w = self.params.node(id, 0);
        let has_bias = self.params.of_node[id].len() > 1;
        let bias = has_bias.then(|| self.params.node(id, 1).to_vec());
        let Some(q) = qat else {
            return MacParams {
                eff: w.to_vec(),
                bias,
                codes: None,
            };
        };
        let out_c = self.graph.nodes[id].shape.c;
        let per_out = w.len() / out_c;
        let fold = self
            .plan
            .folded_bn
            .get(id)
            .copied()
            .flatten()
            .map(|bn| bn_affine(&self.params, bn, bn_eps(self.graph, bn)));
        // w' = w * a (the folded weights the quantizer quantizes)
        let mut wf = w.to_vec();
        if let Some((a, _)) = &fold {
            for oc in 0..out_c {
                for x in &mut wf[oc * per_out..(oc + 1) * per_out] {
                    *x *= a[oc];
                }
            }
        }
        let wfmt = Format::for_max_abs(max_abs(&wf), q.datapath.weight_bits);
        let mut codes: Vec<i32> = wf.iter().map(|&x| wfmt.quantize(x)).collect();
        if let Some(f) = faults {
            if let Some(inj) = f.weight {
                let before = codes.clone();
                let mut rng = crate::fault::stream(f.seed, f.trial, u64::MAX, id as u64);
                let site = LayerSite {
                    draw: crate::fault::draw_key(f.seed, f.trial),
                    ..self.site(id, wfmt)
                };
                inj.corrupt(&site, &mut codes, &mut rng);
                for c in &mut codes {
                    *c = saturate(*c as i64, wfmt.bits) as i32;
                }
                hit.weight_total += codes.len() as u64;
                hit.weight_changed +=
                    codes.iter().zip(&before).filter(|(a, b)| a != b).count() as u64;
            }
        }
        if let Some(f) = faults {
            // SRAM filter-buffer flips: the engines draw them per image;
            // a training forward shares one weight tensor across its batch,
            // so it draws them once per forward (same per-bit marginal)
            let p = f
                .feature
                .map_or(0.0, |inj| inj.filter_flip(&self.site(id, wfmt)));
            if p > 0.0 {
                let mut rng = crate::fault::filter_stream(f.seed, f.trial, f.first_index, id);
                let before = codes.clone();
                crate::fault::BitFlip { p }.apply(wfmt.bits, codes.as_mut_slice(), &mut rng);
                hit.weight_total += codes.len() as u64;
                hit.weight_changed +=
                    codes.iter().zip(&before).filter(|(a, b)| a != b).count() as u64;
            }
        }
        let grid = Grid::new(wfmt);
        let mut eff: Vec<f32> = codes.iter().map(|&c| grid.value(c)).collect();
        if exact_fold {
            // bias' = b * a + shift, quantized in the accumulator domain
            let in_fmt = q.formats[self.graph.nodes[id].inputs[0]];
            let acc = Format {
                bits: q.datapath.psum_bits,
                frac: in_fmt.frac + wfmt.frac,
            };
            let mut b = bias.unwrap_or_else(|| vec![0.0; out_c]);
            if let Some((a, shift)) = &fold {
                for oc in 0..out_c {
                    b[oc] = b[oc] * a[oc] + shift[oc];
                }
            }
            let bq = b
                .iter()
                .map(|&x| acc.quantize(x) as f32 * Grid::new(acc).step)
                .collect();
            return MacParams {
                eff,
                bias: Some(bq),
                codes: Some(MacCodes {
                    codes,
                    format: wfmt,
                    divided_by: None,
                }),
            };
        }
        if let Some((a, _)) = &fold {
            // W~ = q(w a) / a: the BN (batch statistics) applies the scale
            for oc in 0..out_c {
                if a[oc].abs() > 1e-12 {
                    for e in &mut eff[oc * per_out..(oc + 1) * per_out] {
                        *e /= a[oc];
                    }
                } else {
                    eff[oc * per_out..(oc + 1) * per_out]
                        .copy_from_slice(&w[oc * per_out..(oc + 1) * per_out]);
                }
            }
        }
        let divided_by = fold.map(|(a, _)| a);
        MacParams {
            eff,
            bias,
            codes: Some(MacCodes {
                codes,
                format: wfmt,
                divided_by,
            }),
        }
    }

    /// Forward a batch of `n` images (`images`: N x input shape).
    pub fn forward(
        &self,
        images: &[f32],
        n: usize,
        mode: Mode<'_>,
        qat: Option<Qat<'_>>,
        faults: Option<Faults<'_>>,
    ) -> Tape {
        let g = self.graph;
        let qat = qat.as_ref();
        let exact_fold = qat.is_some() && matches!(mode, Mode::Eval);
        let batch_stats = matches!(mode, Mode::Train);
        let mut tape = Tape {
            n,
            outs: Vec::with_capacity(g.nodes.len()),
            bn: vec![None; g.nodes.len()],
            argmax: vec![None; g.nodes.len()],
            eff_weights: vec![None; g.nodes.len()],
            flipped_inputs: vec![None; g.nodes.len()],
            hits: vec![],
            formats: qat.map(|q| q.formats.to_vec()),
            batch_stats,
            exact_fold,
        };
        // per MAC pre-activation node: each image's fault stream after the
        // feature hook, kept for the output-buffer flips at its stored node
        let mut pending: std::collections::HashMap<NodeId, Vec<Xoshiro256PlusPlus>> =
            std::collections::HashMap::new();
        // per conv/linear with stuck MAC-unit bits: each image's changed
        // outputs, added at the layer's pre-activation node
        let mut stuck_changes: std::collections::HashMap<NodeId, Vec<Vec<(u32, f32)>>> =
            std::collections::HashMap::new();
        for (id, node) in g.nodes.iter().enumerate() {
            let s = node.shape;
            let in_shape = |k: usize| g.nodes[node.inputs[k]].shape;
            let mut out = vec![0.0f32; n * s.numel()];
            let x = |k: usize| tape.outs[node.inputs[k]].as_slice();
            let mut hit = HitCount {
                node: self.plan.fault_site[id].unwrap_or(id),
                ..HitCount::default()
            };
            match &node.op {
                Op::Input => match qat {
                    Some(q) => {
                        let f = q.formats[0];
                        let grid = Grid::new(f);
                        for (o, &v) in out.iter_mut().zip(images) {
                            *o = grid.value(f.quantize(v));
                        }
                    }
                    None => out.copy_from_slice(&images[..n * s.numel()]),
                },
                Op::Conv2d { .. } | Op::Linear { .. } => {
                    let MacParams {
                        eff: w,
                        bias: b,
                        codes,
                    } = self.mac_params(id, qat, exact_fold, faults.as_ref(), &mut hit);
                    let is = in_shape(0);
                    let flipped =
                        self.flipped_input(id, node.inputs[0], x(0), qat, faults.as_ref());
                    let input = flipped.as_deref().unwrap_or(x(0));
                    match ConvGeom::of(g, id) {
                        Some(geom) => conv::forward(&geom, input, &w, b.as_deref(), &mut out),
                        None => layers::linear_forward(
                            input,
                            n,
                            is.numel(),
                            s.c,
                            &w,
                            b.as_deref(),
                            &mut out,
                        ),
                    }
                    if let (Some(q), Some(f), Some(codes)) = (qat, faults.as_ref(), codes) {
                        if let Some(inj) = f.feature.filter(|i| i.has_stuck_macs()) {
                            let changes = self.stuck_mac_changes(
                                id,
                                q,
                                f,
                                inj,
                                input,
                                &out,
                                b.as_deref(),
                                codes,
                            );
                            stuck_changes.insert(id, changes);
                        }
                    }
                    tape.eff_weights[id] = Some(w);
                    tape.flipped_inputs[id] = flipped;
                }
                Op::BatchNorm { eps } => {
                    if exact_fold && self.plan.folded_into[id].is_some() {
                        out.copy_from_slice(x(0));
                    } else if exact_fold {
                        self.affine_exact(id, *eps, x(0), s, qat, &mut out);
                    } else {
                        let stats = match mode {
                            Mode::Train => layers::bn_batch_stats(x(0), n, s, *eps),
                            Mode::Frozen(st) => st[id]
                                .clone()
                                .expect("frozen statistics for every batch norm"),
                            Mode::Eval => layers::bn_fixed_stats(
                                self.params.node(id, 2),
                                self.params.node(id, 3),
                                *eps,
                            ),
                        };
                        layers::bn_forward(
                            x(0),
                            s,
                            &stats,
                            self.params.node(id, 0),
                            self.params.node(id, 1),
                            &mut out,
                        );
                        tape.bn[id] = Some(stats);
                    }
                }
                Op::Relu => {
                    for (o, &v) in out.iter_mut().zip(x(0)) {
                        *o = v.max(0.0);
                    }
                }
                Op::Relu6 => {
                    let six = self.six(id, qat);
                    for (o, &v) in out.iter_mut().zip(x(0)) {
                        *o = v.clamp(0.0, six);
                    }
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let geom = PoolGeom {
                        input: in_shape(0),
                        output: s,
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                    };
                    let mut arg = vec![0u32; out.len()];
                    layers::maxpool_forward(&geom, x(0), &mut out, &mut arg);
                    tape.argmax[id] = Some(arg);
                }
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let geom = PoolGeom {
                        input: in_shape(0),
                        output: s,
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                    };
                    let round = qat.map(|q| Grid::new(q.formats[id]).step);
                    layers::avgpool_forward(&geom, x(0), &mut out, round);
                }
                Op::GlobalAvgPool => {
                    let round = qat.map(|q| Grid::new(q.formats[id]).step);
                    layers::gap_forward(x(0), in_shape(0), &mut out, round);
                }
                Op::Add => {
                    let grid = qat.map(|q| Grid::new(q.formats[id]));
                    for k in 0..node.inputs.len() {
                        for (o, &v) in out.iter_mut().zip(x(k)) {
                            *o += match &grid {
                                Some(gr) => gr.round(v),
                                None => v,
                            };
                        }
                    }
                    if let Some(gr) = &grid {
                        for o in &mut out {
                            *o = gr.saturate(*o);
                        }
                    }
                }
                Op::Concat => {
                    let grid = qat.map(|q| Grid::new(q.formats[id]));
                    let on = s.numel();
                    let mut at = 0;
                    for k in 0..node.inputs.len() {
                        let kn = in_shape(k).numel();
                        for i in 0..n {
                            let dst = &mut out[i * on + at..][..kn];
                            let src = &x(k)[i * kn..][..kn];
                            match &grid {
                                Some(gr) => {
                                    for (d, &v) in dst.iter_mut().zip(src) {
                                        *d = gr.requant(v);
                                    }
                                }
                                None => dst.copy_from_slice(src),
                            }
                        }
                        at += kn;
                    }
                }
                Op::Flatten => out.copy_from_slice(x(0)),
                Op::Crop { top, left } => {
                    let is = in_shape(0);
                    for i in 0..n {
                        for c in 0..s.c {
                            for y in 0..s.h {
                                let src = ((i * is.c + c) * is.h + y + top) * is.w + left;
                                let dst = ((i * s.c + c) * s.h + y) * s.w;
                                out[dst..dst + s.w].copy_from_slice(&x(0)[src..src + s.w]);
                            }
                        }
                    }
                }
                Op::Zero { .. } => {}
            }
            if let Some(changes) = self.plan.fault_site[id].and_then(|m| stuck_changes.remove(&m)) {
                // before requantization, as the engines recompute the
                // requantized pre-activation codes of the outputs reached
                let per = s.numel();
                for (img, ch) in out.chunks_exact_mut(per).zip(&changes) {
                    for &(j, d) in ch {
                        img[j as usize] += d;
                    }
                }
                hit.feature_changed += changes.iter().map(|c| c.len() as u64).sum::<u64>();
            }
            if let Some(q) = qat {
                if self.plan.requantized[id] && id != 0 {
                    let rngs = self.requantize(id, s, q, faults.as_ref(), &mut out, &mut hit);
                    if let Some(r) = rngs {
                        pending.insert(id, r);
                    }
                }
                if let (Some(mac), Some(f)) = (self.plan.stored_of[id], faults.as_ref()) {
                    // the pre-activation node's streams, continued (the engine
                    // draws both from one stream per image and layer)
                    let pre = self.plan.format_of[mac];
                    if let Some(rngs) = pending.remove(&pre) {
                        self.flip_stored(mac, id, s, q, f, rngs, &mut out);
                    }
                }
            }
            if (self.plan.fault_site[id].is_some() && faults.is_some()) || hit.weight_total > 0 {
                tape.hits.push(hit);
            }
            tape.outs.push(out);
        }
        tape
    }

    /// The outputs of conv/linear `id` that the fault model's stuck
    /// MAC-unit bits ([`crate::fault::stuck_macs`]) change, per image:
    /// `(index in the image's output, change of its value)`.
    ///
    /// The float forward has no integer accumulator, so it asks the fault
    /// model for one: the layer as [`MacLayer::accumulators`] (the output
    /// codes are the accumulators), its input and weight codes, and the
    /// clean accumulators read back from the float outputs (`out`, before
    /// the bias and, in training mode, times the folded scale `a` the
    /// weights were divided by). Where the model changes an accumulator,
    /// the change is taken against the exact clean sum of codes, and the
    /// value moves by that many accumulator steps (`2^-acc_frac`), which
    /// is the engine's `requantize(A(acc) + bias)` once the layer's
    /// pre-activation node requantizes. With folded batch norms in
    /// evaluation form this is the engine, code for code
    /// (`tests/train_ftt.rs`); in training mode the batch statistics
    /// normalise the clean sums and the change is added after them, as the
    /// engine's folded BN would not adapt to it either. Gradients pass
    /// straight through.
    ///
    /// [`MacLayer::accumulators`]: crate::quant::MacLayer::accumulators
    #[allow(clippy::too_many_arguments)]
    fn stuck_mac_changes(
        &self,
        id: NodeId,
        q: &Qat,
        f: &Faults,
        inj: &dyn FeatureInjector,
        input: &[f32],
        out: &[f32],
        bias: Option<&[f32]>,
        codes: MacCodes,
    ) -> Vec<Vec<(u32, f32)>> {
        let g = self.graph;
        let in_fmt = q.formats[g.nodes[id].inputs[0]];
        let in_grid = Grid::new(in_fmt);
        let dp = q.datapath;
        let layer =
            crate::quant::MacLayer::accumulators(g, id, codes.codes, codes.format, in_fmt, &dp);
        let site = LayerSite {
            draw: crate::fault::draw_key(f.seed, f.trial),
            ..self.site(id, layer.out_format)
        };
        let step = (2.0f64).powi(-layer.acc_frac);
        let hw = layer.out_shape.h * layer.out_shape.w;
        let (per_in, per_out) = (layer.in_shape.numel(), layer.out_shape.numel());
        let k_len = layer.macs_per_output();
        let m_per_g = layer.cout_per_group();
        let a = codes.divided_by.as_deref();
        // The float sums are the integer sums while every partial sum
        // stays below 2^24 (`K * 2^(A-1) * 2^(W-1)`: 8-bit codes up to
        // K = 1024), so the clean accumulators read back from them are
        // exact up to the division by the folded scale in training mode (a
        // step at most, against a requantization shift of many); otherwise
        // a changed output's clean sum is recomputed from its codes.
        let max_sum =
            k_len as f64 * (2f64).powi(i32::from(dp.act_bits) + i32::from(dp.weight_bits) - 2);
        let exact_sums = max_sum < (1u64 << 24) as f64;
        out.par_chunks(per_out)
            .zip(input.par_chunks(per_in))
            .enumerate()
            .map_init(
                // per-thread scratch: input codes, clean and faulty
                // accumulators, and (only when the sums are not exact) one
                // im2col row
                || {
                    let row = if exact_sums {
                        Vec::new()
                    } else {
                        vec![0i32; k_len]
                    };
                    (Vec::<i32>::new(), Vec::<i32>::new(), Vec::<i32>::new(), row)
                },
                |(xin, clean, acc, row), (i, (o, x))| {
                    xin.clear();
                    xin.extend(x.iter().map(|&v| in_grid.code(v)));
                    clean.clear();
                    clean.extend(o.iter().enumerate().map(|(j, &v)| {
                        let c = j / hw;
                        let mut v = v as f64 - bias.map_or(0.0, |b| b[c] as f64);
                        if let Some(a) = a {
                            v *= a[c] as f64;
                        }
                        (v / step).round() as i32
                    }));
                    acc.clear();
                    acc.extend_from_slice(clean);
                    // the clean sums as the model's starting point only
                    // when they are exact (else its linear corrections
                    // would carry their rounding)
                    let from = exact_sums.then_some(clean.as_slice());
                    inj.inject_macs(&site, &layer, xin, &dp, f.first_index + i as u64, from, acc);
                    let mut changes = Vec::new();
                    for (j, (&new, &old)) in acc.iter().zip(clean.iter()).enumerate() {
                        if new == old {
                            continue;
                        }
                        let oc = j / hw;
                        // a channel whose folded scale vanished trains on the
                        // raw weights (see `mac_params`): not in accumulator steps
                        if a.is_some_and(|a| a[oc].abs() <= 1e-12) {
                            continue;
                        }
                        let d = if exact_sums {
                            i64::from(new) - i64::from(old)
                        } else {
                            let g = oc / m_per_g;
                            crate::quant::int_ops::im2col_row(&layer, xin, g, j % hw, row);
                            let w = &layer.weights[oc * k_len..(oc + 1) * k_len];
                            let sum: i64 =
                                row.iter().zip(w).map(|(&x, &w)| x as i64 * w as i64).sum();
                            i64::from(new) - dp.acc_limit(sum)
                        };
                        if d != 0 {
                            changes.push((j as u32, (d as f64 * step) as f32));
                        }
                    }
                    changes
                },
            )
            .collect()
    }

    /// ReLU6's upper clamp: 6, or 6 in the node's format.
    fn six(&self, id: NodeId, qat: Option<&Qat>) -> f32 {
        match qat {
            Some(q) => {
                let f = q.formats[id];
                Grid::new(f).value(six_code(f))
            }
            None => 6.0,
        }
    }

    /// Standalone batch norm in the engine's fixed point (`ChannelAffine`).
    fn affine_exact(
        &self,
        id: NodeId,
        eps: f32,
        x: &[f32],
        s: Shape,
        qat: Option<&Qat>,
        out: &mut [f32],
    ) {
        let q = qat.expect("exact fold implies QAT");
        let (a, shift) = bn_affine(&self.params, id, eps);
        let sf = Format::for_max_abs(max_abs(&a), q.datapath.weight_bits);
        let in_fmt = q.formats[self.graph.nodes[id].inputs[0]];
        let acc = Format {
            bits: q.datapath.psum_bits,
            frac: in_fmt.frac + sf.frac,
        };
        let (sg, ag) = (Grid::new(sf), Grid::new(acc));
        let aq: Vec<f32> = a.iter().map(|&v| sg.value(sf.quantize(v))).collect();
        let sq: Vec<f32> = shift.iter().map(|&v| ag.value(acc.quantize(v))).collect();
        let hw = s.h * s.w;
        for (img_o, img_x) in out
            .chunks_exact_mut(s.numel())
            .zip(x.chunks_exact(s.numel()))
        {
            for c in 0..s.c {
                for (o, &v) in img_o[c * hw..][..hw].iter_mut().zip(&img_x[c * hw..][..hw]) {
                    *o = v * aq[c] + sq[c];
                }
            }
        }
    }

    /// Requantize node `id`'s output to its format; at a MAC layer's hook,
    /// inject feature faults on the codes of every image and saturate again.
    /// Returns each image's fault stream after the hook when the layer
    /// has output-buffer flips or stuck output-buffer cells (for
    /// [`Self::flip_stored`]).
    fn requantize(
        &self,
        id: NodeId,
        s: Shape,
        q: &Qat,
        faults: Option<&Faults>,
        out: &mut [f32],
        hit: &mut HitCount,
    ) -> Option<Vec<Xoshiro256PlusPlus>> {
        let grid = Grid::new(q.formats[id]);
        out.par_iter_mut().for_each(|v| *v = grid.requant(*v));
        let (Some(mac), Some(f)) = (self.plan.fault_site[id], faults) else {
            return None;
        };
        let inj = f.feature?;
        let site = self.site(mac, grid.format);
        let keep = inj.stored_flip(&site) > 0.0 || inj.has_stuck_cells(FeatureBuffer::Ofmap);
        let (changed, rngs): (Vec<u64>, Vec<Option<Xoshiro256PlusPlus>>) = out
            .par_chunks_mut(s.numel())
            .enumerate()
            .map(|(i, img)| {
                let mut rng =
                    crate::fault::stream(f.seed, f.trial, f.first_index + i as u64, mac as u64);
                // Codes read on demand: the skip-sampled models (MiBB, bit
                // flips) convert only the values they hit.
                let hits = {
                    let view: &[f32] = img;
                    let clean = |j: usize| grid.code(view[j]);
                    let mut codes = SparseCodes::new(view.len(), &clean);
                    inj.inject_sparse(&site, &mut codes, &mut rng);
                    codes.into_hits()
                };
                // The values are on the grid already: only changed codes
                // are written back.
                let mut changed = 0;
                for (j, c) in hits {
                    let c0 = grid.code(img[j]);
                    let c = saturate(c as i64, grid.format.bits) as i32;
                    if c != c0 {
                        changed += 1;
                        img[j] = grid.value(c);
                    }
                }
                (changed, keep.then_some(rng))
            })
            .unzip();
        hit.feature_changed += changed.iter().sum::<u64>();
        hit.feature_total += out.len() as u64;
        keep.then(|| rngs.into_iter().flatten().collect())
    }

    /// Output-buffer flips and stuck output-buffer cells of conv/linear
    /// `mac` on its stored codes (node `id`'s output, after the fused
    /// activation), one image per stream of `rngs`, as
    /// [`crate::engine::finish_mac_output`] applies them.
    #[allow(clippy::too_many_arguments)]
    fn flip_stored(
        &self,
        mac: NodeId,
        id: NodeId,
        s: Shape,
        q: &Qat,
        f: &Faults,
        rngs: Vec<Xoshiro256PlusPlus>,
        out: &mut [f32],
    ) {
        let Some(inj) = f.feature else { return };
        let grid = Grid::new(q.formats[id]);
        let site = LayerSite {
            draw: crate::fault::draw_key(f.seed, f.trial),
            ..self.site(mac, grid.format)
        };
        let p = inj.stored_flip(&site);
        let stuck = inj.has_stuck_cells(FeatureBuffer::Ofmap);
        out.par_chunks_mut(s.numel())
            .zip(rngs)
            .enumerate()
            .for_each(|(i, (img, mut rng))| {
                flip_codes(img, grid, p, &mut rng);
                if stuck {
                    let image = f.first_index + i as u64;
                    stick_codes(inj, &site, FeatureBuffer::Ofmap, image, img, grid);
                }
            });
    }

    /// Conv/linear `id`'s own copy of its input `x` (node `input`) with the
    /// input-buffer flips of the fault model, as the engines draw them
    /// ([`crate::fault::input_stream`]); `None` without such flips.
    fn flipped_input(
        &self,
        id: NodeId,
        input: NodeId,
        x: &[f32],
        qat: Option<&Qat>,
        faults: Option<&Faults>,
    ) -> Option<Vec<f32>> {
        let (q, f) = (qat?, faults?);
        let inj = f.feature?;
        let grid = Grid::new(q.formats[input]);
        let p = inj.input_flip(&self.site(id, q.formats[self.plan.format_of[id]]));
        let stuck = inj.has_stuck_cells(FeatureBuffer::Ifmap);
        if p <= 0.0 && !stuck {
            return None;
        }
        let site = LayerSite {
            draw: crate::fault::draw_key(f.seed, f.trial),
            ..self.site(id, grid.format)
        };
        let per = self.graph.nodes[input].shape.numel();
        let mut copy = x.to_vec();
        copy.par_chunks_mut(per).enumerate().for_each(|(i, img)| {
            let image = f.first_index + i as u64;
            if p > 0.0 {
                let mut rng = crate::fault::input_stream(f.seed, f.trial, image, id);
                flip_codes(img, grid, p, &mut rng);
            }
            if stuck {
                stick_codes(inj, &site, FeatureBuffer::Ifmap, image, img, grid);
            }
        });
        Some(copy)
    }

    /// Backward pass: accumulate `scale * d(loss)/d(param)` into `grads`
    /// (one buffer per parameter tensor, see [`Params::zeros_like`]), given
    /// the gradient of the loss with respect to the logits.
    pub fn backward(&self, tape: &Tape, dlogits: &[f32], grads: &mut [Vec<f32>]) {
        assert!(
            !tape.exact_fold,
            "backward through an Eval-mode QAT forward (folded BN) is not defined"
        );
        let g = self.graph;
        let n = tape.n;
        let mut dout: Vec<Option<Vec<f32>>> = vec![None; g.nodes.len()];
        *dout.last_mut().expect("graph has nodes") = Some(dlogits.to_vec());
        for id in (1..g.nodes.len()).rev() {
            let Some(mut dy) = dout[id].take() else {
                continue;
            };
            let node = &g.nodes[id];
            let s = node.shape;
            let y = &tape.outs[id];
            if let Some(formats) = &tape.formats {
                if self.plan.requantized[id] {
                    // straight through the rounding, blocked where saturated
                    let grid = Grid::new(formats[id]);
                    block_grad(&mut dy, y, |v| grid.at_limit(v));
                }
            }
            let in_shape = |k: usize| g.nodes[node.inputs[k]].shape;
            let needs_dx = |k: usize| node.inputs[k] != 0;
            let push = |k: usize, d: Vec<f32>, dout: &mut Vec<Option<Vec<f32>>>| {
                let i = node.inputs[k];
                match &mut dout[i] {
                    Some(acc) => {
                        for (a, b) in acc.iter_mut().zip(&d) {
                            *a += b;
                        }
                    }
                    slot => *slot = Some(d),
                }
            };
            match &node.op {
                Op::Input => {}
                Op::Conv2d { .. } | Op::Linear { .. } => {
                    let x = tape.flipped_inputs[id]
                        .as_ref()
                        .unwrap_or(&tape.outs[node.inputs[0]]);
                    let w = tape.eff_weights[id]
                        .as_ref()
                        .expect("forward stored weights");
                    let idx = &self.params.of_node[id];
                    let mut dw = vec![0.0f32; w.len()];
                    let mut db = (idx.len() > 1).then(|| vec![0.0f32; s.c]);
                    let mut dx = needs_dx(0).then(|| vec![0.0f32; x.len()]);
                    let is = in_shape(0);
                    match ConvGeom::of(g, id) {
                        Some(geom) => conv::backward(
                            &geom,
                            x,
                            w,
                            &dy,
                            dx.as_deref_mut(),
                            &mut dw,
                            db.as_deref_mut(),
                        ),
                        None => layers::linear_backward(
                            x,
                            &dy,
                            n,
                            is.numel(),
                            s.c,
                            w,
                            dx.as_deref_mut(),
                            &mut dw,
                            db.as_deref_mut(),
                        ),
                    }
                    add_into(&mut grads[idx[0]], &dw);
                    if let Some(db) = db {
                        add_into(&mut grads[idx[1]], &db);
                    }
                    if let Some(dx) = dx {
                        push(0, dx, &mut dout);
                    }
                }
                Op::BatchNorm { .. } => {
                    let x = &tape.outs[node.inputs[0]];
                    let st = tape.bn[id].as_ref().expect("forward stored BN statistics");
                    let idx = &self.params.of_node[id];
                    let mut dx = vec![0.0f32; x.len()];
                    let mut dg = vec![0.0f32; s.c];
                    let mut dbeta = vec![0.0f32; s.c];
                    layers::bn_backward(
                        x,
                        &dy,
                        n,
                        s,
                        st,
                        self.params.node(id, 0),
                        tape.batch_stats,
                        &mut dx,
                        &mut dg,
                        &mut dbeta,
                    );
                    add_into(&mut grads[idx[0]], &dg);
                    add_into(&mut grads[idx[1]], &dbeta);
                    if needs_dx(0) {
                        push(0, dx, &mut dout);
                    }
                }
                Op::Relu | Op::Relu6 => {
                    let top = match node.op {
                        Op::Relu6 => match &tape.formats {
                            Some(f) => Grid::new(f[id]).value(six_code(f[id])),
                            None => 6.0,
                        },
                        _ => f32::INFINITY,
                    };
                    block_grad(&mut dy, y, |v| v <= 0.0 || v >= top);
                    if needs_dx(0) {
                        push(0, dy, &mut dout);
                    }
                }
                Op::MaxPool { .. } | Op::AvgPool { .. } => {
                    let (kernel, stride, padding) = match &node.op {
                        Op::MaxPool {
                            kernel,
                            stride,
                            padding,
                        }
                        | Op::AvgPool {
                            kernel,
                            stride,
                            padding,
                        } => (*kernel, *stride, *padding),
                        _ => unreachable!(),
                    };
                    let geom = PoolGeom {
                        input: in_shape(0),
                        output: s,
                        kernel,
                        stride,
                        padding,
                    };
                    let mut dx = vec![0.0f32; n * in_shape(0).numel()];
                    match &tape.argmax[id] {
                        Some(arg) => layers::maxpool_backward(&geom, &dy, arg, &mut dx),
                        None => layers::avgpool_backward(&geom, &dy, &mut dx),
                    }
                    if needs_dx(0) {
                        push(0, dx, &mut dout);
                    }
                }
                Op::GlobalAvgPool => {
                    let mut dx = vec![0.0f32; n * in_shape(0).numel()];
                    layers::gap_backward(&dy, in_shape(0), &mut dx);
                    if needs_dx(0) {
                        push(0, dx, &mut dout);
                    }
                }
                Op::Add => {
                    for k in 0..node.inputs.len() {
                        if needs_dx(k) {
                            push(k, dy.clone(), &mut dout);
                        }
                    }
                }
                Op::Concat => {
                    let on = s.numel();
                    let mut at = 0;
                    for k in 0..node.inputs.len() {
                        let kn = in_shape(k).numel();
                        if needs_dx(k) {
                            let mut dx = vec![0.0f32; n * kn];
                            for i in 0..n {
                                dx[i * kn..][..kn].copy_from_slice(&dy[i * on + at..][..kn]);
                            }
                            push(k, dx, &mut dout);
                        }
                        at += kn;
                    }
                }
                Op::Flatten => {
                    if needs_dx(0) {
                        push(0, dy, &mut dout);
                    }
                }
                Op::Crop { top, left } => {
                    let is = in_shape(0);
                    let mut dx = vec![0.0f32; n * is.numel()];
                    for i in 0..n {
                        for c in 0..s.c {
                            for yy in 0..s.h {
                                let dst = ((i * is.c + c) * is.h + yy + top) * is.w + left;
                                let src = ((i * s.c + c) * s.h + yy) * s.w;
                                dx[dst..dst + s.w].copy_from_slice(&dy[src..src + s.w]);
                            }
                        }
                    }
                    if needs_dx(0) {
                        push(0, dx, &mut dout);
                    }
                }
                Op::Zero { .. } => {}
            }
        }
    }
}

/// Zero the gradient `d` wherever `blocked(y)` (a clamp was active).
/// Branch-free so it vectorises, and split over the cores: these
/// element-wise passes over whole batch tensors were ~9% of a training
/// step when they ran as scalar loops on one core.
fn block_grad(d: &mut [f32], y: &[f32], blocked: impl Fn(f32) -> bool + Sync) {
    const CHUNK: usize = 1 << 14;
    d.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .for_each(|(d, y)| {
            for (d, &v) in d.iter_mut().zip(y) {
                *d = if blocked(v) { 0.0 } else { *d };
            }
        });
}

fn add_into(acc: &mut [f32], d: &[f32]) {
    for (a, b) in acc.iter_mut().zip(d) {
        *a += b;
    }
}
