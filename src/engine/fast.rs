//! The fast engine: conv/linear as im2col + integer GEMM
//! (i8 operands when `act_bits <= 8` and `weight_bits <= 8`, else i16;
//! weights packed once per run into the kernel's layout, [`PackedA`]),
//! depthwise convs with the plane kernels of [`super::depthwise`], raw sums
//! requantized straight into the output with the i32 loops of
//! [`super::elementwise`]. Images are processed in groups of up to
//! `MAX_GROUP` (2) per GEMM (their im2col columns side by side), groups in
//! parallel with rayon,
//! per-thread buffers reused across groups (no allocation per image once a
//! thread's workspace is sized). Grouping cannot change results: every
//! output column depends only on its own image.
//!
//! Why it is bit-identical to the reference engine:
//! - GEMM sums wrap in i32. In `Wrap` mode the accumulator keeps the low
//!   `psum_bits <= 32` bits, and wrapping is compatible with addition, so
//!   `wrap(sum_i32 + bias, psum_bits)` equals the in-order wrapped sum.
//! - In `Saturate` mode the in-order result equals the plain sum (then one
//!   clamp after the bias) as long as no partial sum can leave the range.
//!   Per image and output channel we check `max|a| * sum|w| <= max_code`;
//!   channels that fail the check are recomputed with the in-order
//!   saturating loop of the reference ([`int_ops::mac_output_in_order`]).

use rayon::prelude::*;

use crate::fixed::{max_code, min_code, round_shift, saturate, Datapath, Overflow};
use crate::quant::{int_ops, Activation, MacLayer, QModel, QOp};

use super::depthwise::{depthwise_plane, DepthwiseScratch, PlaneGeometry};
use super::elementwise::{add2, clamp_into, wrap_requant, AddRescale, WrapRequant};
use super::gemm::{default_kernel, gemm_packed_i16, gemm_packed_i8, PackedA, Parallelism};
use super::{
    exec_non_mac, finish_mac_output, image_count, layer_input, layer_with_filter_flips,
    stuck_mac_outputs, Engine, EngineError, FeatureFaults,
};

/// The im2col + GEMM engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastEngine;

/// How a MAC layer's raw sums are computed.
enum MacPlan {
    /// im2col + GEMM per group, the weights of each group packed once per
    /// run for the default kernel (i8 when `act_bits` and `weight_bits` are
    /// at most 8, else i16).
    Gemm {
        packed: Vec<PackedA>,
        narrow_i8: bool,
    },
    /// One input and one output channel per group: the direct plane kernel.
    Depthwise(PlaneGeometry),
}

/// A MAC layer prepared once per run: how to compute its raw sums and, per
/// output channel, `sum|w|` for the saturation bound (saturating datapaths
/// only).
struct PreparedMac {
    plan: MacPlan,
    abs_sum: Vec<i64>,
}

/// Per-thread buffers: per image slot of a group, one output buffer per
/// node; the im2col matrix and the GEMM output of the whole group.
struct Workspace {
    bufs: Vec<Vec<Vec<i32>>>,
    scratch: KitScratch,
}

impl Workspace {
    fn new(model: &QModel, slots: usize) -> Workspace {
        let per_image = || -> Vec<Vec<i32>> {
            model
                .nodes
                .iter()
                .map(|n| vec![0i32; n.shape.numel()])
                .collect()
        };
        Workspace {
            bufs: (0..slots).map(|_| per_image()).collect(),
            scratch: KitScratch::default(),
        }
    }
}

/// Images per GEMM: enough columns to fill the micro-kernel tiles of the
/// small late layers (7x7 maps), few enough to keep the im2col matrix and
/// packed B in L2. Measured on ResNet-20 1x28x28 int8 with pre-packed
/// weights and the VNNI GEMM, 2 threads, in images per CPU-second: 1 ->
/// 2190, 2 -> 2370, 4 -> 2180.
const MAX_GROUP: usize = 2;

impl Engine for FastEngine {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn run(
        &self,
        model: &QModel,
        images: &[f32],
        first_index: u64,
        faults: Option<FeatureFaults<'_>>,
    ) -> Result<Vec<Vec<i32>>, EngineError> {
        image_count(model, images)?;
        let prepared = prepare(model);
        let n = model.input_shape().numel();
        let count = images.len() / n;
        let threads = rayon::current_num_threads();
        let group = count.div_ceil(threads).clamp(1, MAX_GROUP);
        // few enough jobs that each thread sizes its workspace only a few times
        let min_len = count.div_ceil(group).div_ceil(4 * threads).max(1);
        let groups: Vec<Vec<Vec<i32>>> = images
            .par_chunks(group * n)
            .enumerate()
            .with_min_len(min_len)
            .map_init(
                || Workspace::new(model, group),
                |ws, (g, imgs)| {
                    let first = first_index + (g * group) as u64;
                    run_group(model, &prepared, ws, imgs, first, faults)
                },
            )
            .collect();
        Ok(groups.into_iter().flatten().collect())
    }
}

fn narrow_i8(model: &QModel) -> bool {
    model.datapath.act_bits <= 8 && model.datapath.weight_bits <= 8
}

fn prepare(model: &QModel) -> Vec<Option<PreparedMac>> {
    model
        .nodes
        .iter()
        .map(|node| match &node.op {
            QOp::Mac(l) => Some(prepare_mac(model, l)),
            _ => None,
        })
        .collect()
}

/// One MAC layer of `model` prepared for the default kernel (`l` may be a
/// layer of the model with changed weight codes).
fn prepare_mac(model: &QModel, l: &MacLayer) -> PreparedMac {
    let use_i8 = narrow_i8(model);
    let kernel = default_kernel();
    // only the saturating accumulator needs the bound
    let abs_sum = match model.datapath.overflow {
        Overflow::Saturate => l
            .weights
            .chunks(l.macs_per_output())
            .map(|w| w.iter().map(|&x| (x as i64).abs()).sum())
            .collect(),
        Overflow::Wrap => Vec::new(),
    };
    let depthwise = (l.cin_per_group() == 1 && l.cout_per_group() == 1)
        .then(|| {
            PlaneGeometry::new(
                (l.in_shape.h, l.in_shape.w),
                l.kernel,
                l.stride,
                l.padding,
                l.dilation,
            )
        })
        .flatten()
        .filter(|g| (g.out_h, g.out_w) == (l.out_shape.h, l.out_shape.w));
    let plan = match depthwise {
        Some(geom) => MacPlan::Depthwise(geom),
        None => {
            let (m, k) = (l.cout_per_group(), l.macs_per_output());
            let packed = l
                .weights
                .chunks(m * k)
                .map(|w| {
                    if use_i8 {
                        let w: Vec<i8> = w.iter().map(|&x| x as i8).collect();
                        PackedA::new_i8(kernel, m, k, &w)
                    } else {
                        let w: Vec<i16> = w.iter().map(|&x| x as i16).collect();
                        PackedA::new_i16(kernel, m, k, &w)
                    }
                })
                .collect();
            MacPlan::Gemm {
                packed,
                narrow_i8: use_i8,
            }
        }
    };
    PreparedMac { plan, abs_sum }
}

/// Run a group of images (one per workspace slot) through the network,
/// layer by layer; returns their logits.
fn run_group(
    model: &QModel,
    prepared: &[Option<PreparedMac>],
    ws: &mut Workspace,
    images: &[f32],
    first_index: u64,
    faults: Option<FeatureFaults<'_>>,
) -> Vec<Vec<i32>> {
    let n = model.input_shape().numel();
    let count = images.len() / n;
    let Workspace { bufs, scratch } = ws;
    let bufs = &mut bufs[..count];
    for (q, node) in model.nodes.iter().enumerate() {
        match &node.op {
            QOp::Input => {
                for (b, nodes) in bufs.iter_mut().enumerate() {
                    model.quantize_input(&images[b * n..(b + 1) * n], &mut nodes[q]);
                }
            }
            QOp::Mac(layer) => {
                let prep = prepared[q].as_ref().expect("every MAC layer is prepared");
                // SRAM input-buffer flips: this layer reads its own copies
                let mut flipped = vec![Vec::new(); bufs.len()];
                // SRAM filter-buffer flips: an image whose weight codes
                // changed runs the layer alone with its own weights
                let mut own_weights = Vec::new();
                let mut io: Vec<(&[i32], &mut [i32])> = Vec::with_capacity(bufs.len());
                let mut io_index = Vec::with_capacity(bufs.len());
                for (b, (nodes, scratch)) in bufs.iter_mut().zip(flipped.iter_mut()).enumerate() {
                    let (prev, rest) = nodes.split_at_mut(q);
                    let idx = first_index + b as u64;
                    let input = layer_input(layer, &prev[node.inputs[0]], idx, faults, scratch);
                    let out = rest[0].as_mut_slice();
                    match layer_with_filter_flips(layer, idx, faults) {
                        None => {
                            io.push((input, out));
                            io_index.push(idx);
                        }
                        Some(l) => own_weights.push((idx, l, input, out)),
                    }
                }
                // without a hook, the activation merges into requantization
                let fused = faults.is_none();
                // stuck MAC-unit bits start from each image's raw sums
                let stuck_macs = faults.is_some_and(|f| f.injector.has_stuck_macs());
                let mut raw: Vec<Vec<i32>> = Vec::new();
                if stuck_macs {
                    raw.resize(io.len() + own_weights.len(), Vec::new());
                }
                let (raw_io, raw_own) = raw.split_at_mut(if stuck_macs { io.len() } else { 0 });
                run_mac(
                    layer,
                    prep,
                    &model.datapath,
                    fused,
                    &mut io,
                    scratch,
                    stuck_macs.then_some(raw_io),
                );
                for (j, (_, l, input, out)) in own_weights.iter_mut().enumerate() {
                    let r = stuck_macs.then(|| &mut raw_own[j..j + 1]);
                    let prep = prepare_mac(model, l);
                    let mut one = [(*input, &mut **out)];
                    run_mac(l, &prep, &model.datapath, fused, &mut one, scratch, r);
                }
                if !fused {
                    let dp = &model.datapath;
                    let n_io = io.len();
                    for (i, ((input, out), idx)) in io.into_iter().zip(io_index).enumerate() {
                        let r = raw.get_mut(i).map(Vec::as_mut_slice);
                        stuck_mac_outputs(layer, input, dp, idx, faults, r, out);
                        finish_mac_output(layer, out, idx, faults);
                    }
                    for (i, (idx, l, input, out)) in own_weights.into_iter().enumerate() {
                        let r = raw.get_mut(n_io + i).map(Vec::as_mut_slice);
                        stuck_mac_outputs(&l, input, dp, idx, faults, r, out);
                        finish_mac_output(layer, out, idx, faults);
                    }
                }
            }
            QOp::Relu | QOp::Relu6 => {
                let hi = match node.op {
                    QOp::Relu6 => int_ops::six_code(node.format),
                    _ => i32::MAX,
                };
                for nodes in bufs.iter_mut() {
                    let (prev, rest) = nodes.split_at_mut(q);
                    if hi >= 0 {
                        clamp_into(&prev[node.inputs[0]], &mut rest[0], 0, hi);
                    } else {
                        exec_non_mac(model, q, prev, &mut rest[0]);
                    }
                }
            }
            QOp::Add if node.inputs.len() == 2 => {
                for nodes in bufs.iter_mut() {
                    let (prev, rest) = nodes.split_at_mut(q);
                    add_node(model, q, prev, &mut rest[0]);
                }
            }
            _ => {
                for nodes in bufs.iter_mut() {
                    let (prev, rest) = nodes.split_at_mut(q);
                    exec_non_mac(model, q, prev, &mut rest[0]);
                }
            }
        }
    }
    let last = model.nodes.len() - 1;
    bufs.iter().map(|nodes| nodes[last].clone()).collect()
}

/// Conversion from a code (already in range) to the GEMM operand type.
trait Narrow: Copy + Default {
    fn narrow(v: i32) -> Self;
}
impl Narrow for i8 {
    #[inline]
    fn narrow(v: i32) -> i8 {
        v as i8
    }
}
impl Narrow for i16 {
    #[inline]
    fn narrow(v: i32) -> i16 {
        v as i16
    }
}

/// im2col of group `grp` of one image into `col[..k * slots * npix]`: rows
/// `(ci, ky, kx)`, columns `slot * npix + pixel` (the images of a group side
/// by side); padded taps are 0. Every element of the image's columns is
/// written, so the buffer is reused across layers without clearing.
fn im2col<T: Narrow>(
    layer: &MacLayer,
    input: &[T],
    grp: usize,
    (slot, slots): (usize, usize),
    col: &mut Vec<T>,
) -> usize {
    let s = layer.in_shape;
    let o = layer.out_shape;
    let (kh, kw) = layer.kernel;
    let cin_g = layer.cin_per_group();
    let npix = o.h * o.w;
    let len = cin_g * kh * kw * slots * npix;
    if col.len() < len {
        col.resize(len, T::default());
    }
    let zero = T::default();
    let mut rows = col[..len]
        .chunks_exact_mut(slots * npix)
        .map(|r| &mut r[slot * npix..(slot + 1) * npix]);
    for ci in 0..cin_g {
        let plane = &input[(grp * cin_g + ci) * s.h * s.w..][..s.h * s.w];
        for ky in 0..kh {
            for kx in 0..kw {
                let dst = rows.next().expect("k rows");
                let dx = (kx * layer.dilation.1) as isize - layer.padding.1 as isize;
                if layer.stride == (1, 1) && o.w == s.w {
                    same_width_row(layer, plane, ky, dx, dst);
                    continue;
                }
                // valid ox for stride 1: 0 <= ox + dx < s.w, a contiguous run
                let lo = (-dx).clamp(0, o.w as isize) as usize;
                let hi = ((s.w as isize - dx).clamp(0, o.w as isize) as usize).max(lo);
                for (oy, drow) in dst.chunks_exact_mut(o.w).enumerate() {
                    let iy = (oy * layer.stride.0 + ky * layer.dilation.0) as isize
                        - layer.padding.0 as isize;
                    if iy < 0 || iy >= s.h as isize {
                        drow.fill(zero);
                        continue;
                    }
                    let src = &plane[iy as usize * s.w..(iy as usize + 1) * s.w];
                    if layer.stride.1 == 1 {
                        drow[..lo].fill(zero);
                        if hi > lo {
                            let from = (lo as isize + dx) as usize;
                            let run = src[from..from + (hi - lo)].iter();
                            for (d, &v) in drow[lo..hi].iter_mut().zip(run) {
                                *d = v;
                            }
                        }
                        drow[hi..].fill(zero);
                    } else {
                        // valid ox: 0 <= ox*sx + dx < s.w, a contiguous run
                        let sx = layer.stride.1;
                        let lo = ((-dx).max(0) as usize).div_ceil(sx).min(o.w);
                        let hi = ((s.w as isize - dx).max(0) as usize)
                            .div_ceil(sx)
                            .min(o.w)
                            .max(lo);
                        drow[..lo].fill(zero);
                        if hi > lo {
                            let from = ((lo * sx) as isize + dx) as usize;
                            let run = src[from..].iter().step_by(sx);
                            for (d, &v) in drow[lo..hi].iter_mut().zip(run) {
                                *d = v;
                            }
                        }
                        drow[hi..].fill(zero);
                    }
                }
            }
        }
    }
    len
}

/// One im2col row of a stride-1 conv whose output has the input's width:
/// the valid output rows are one contiguous shifted copy of the input plane
/// (long runs vectorize), after which the columns that fell off the left or
/// right edge (and picked up a neighbouring row's pixels) are zeroed.
fn same_width_row<T: Narrow>(layer: &MacLayer, plane: &[T], ky: usize, dx: isize, dst: &mut [T]) {
    let s = layer.in_shape;
    let o = layer.out_shape;
    let zero = T::default();
    let dy = (ky * layer.dilation.0) as isize - layer.padding.0 as isize;
    // valid oy: 0 <= oy + dy < s.h
    let oy_lo = (-dy).clamp(0, o.h as isize) as usize;
    let oy_hi = ((s.h as isize - dy).clamp(0, o.h as isize) as usize).max(oy_lo);
    dst[..oy_lo * o.w].fill(zero);
    dst[oy_hi * o.w..].fill(zero);
    if oy_hi == oy_lo {
        return;
    }
    // dst[j] <- plane[start + j] for the block of valid rows, where in range
    let block = &mut dst[oy_lo * o.w..oy_hi * o.w];
    let start = (oy_lo as isize + dy) * s.w as isize + dx;
    let j_lo = (-start).clamp(0, block.len() as isize) as usize;
    let j_hi = (plane.len() as isize - start).clamp(j_lo as isize, block.len() as isize) as usize;
    if j_hi > j_lo {
        let from = (start + j_lo as isize) as usize;
        let run = plane[from..from + (j_hi - j_lo)].iter();
        for (d, &v) in block[j_lo..j_hi].iter_mut().zip(run) {
            *d = v;
        }
    } else {
        block.fill(zero); // no tap of these rows lands inside the plane
    }
    // columns with ox + dx outside [0, s.w) are padding
    let lo = (-dx).clamp(0, o.w as isize) as usize;
    let hi = ((s.w as isize - dx).clamp(0, o.w as isize) as usize).max(lo);
    // (column by column with strided stores: per-row fills of one or two
    // elements would each become a memset call)
    for col in (0..lo).chain(hi..o.w) {
        for d in block[col..].iter_mut().step_by(o.w) {
            *d = zero;
        }
    }
}

/// The reused im2col buffers of one operand type: the im2col matrix and
/// one image's narrowed input codes.
enum GemmBuffers<'a> {
    I8(&'a mut Vec<i8>, &'a mut Vec<i8>),
    I16(&'a mut Vec<i16>, &'a mut Vec<i16>),
}

/// One prepared MAC layer for the images of `io` (`(input codes, output
/// buffer)` each): requantized outputs, with the activation when `fused`.
/// `raw_out`, when given, receives each image's raw wrapping sums (CHW,
/// no bias) beside its finished codes: what [`stuck_mac_outputs`] starts
/// from instead of recomputing whole outputs.
fn run_mac(
    layer: &MacLayer,
    prep: &PreparedMac,
    dp: &Datapath,
    fused: bool,
    io: &mut [(&[i32], &mut [i32])],
    s: &mut KitScratch,
    mut raw_out: Option<&mut [Vec<i32>]>,
) {
    if io.is_empty() {
        return;
    }
    if let Some(r) = raw_out.as_deref_mut() {
        for v in r.iter_mut() {
            v.resize(layer.out_shape.numel(), 0);
        }
    }
    let finish = Finish::new(layer, prep, dp, fused);
    match &prep.plan {
        MacPlan::Depthwise(geom) => {
            for (b, (input, out)) in io.iter_mut().enumerate() {
                let scratch = (&mut s.depthwise, &mut s.depthwise_raw);
                let raw = raw_out.as_deref_mut().map(|r| r[b].as_mut_slice());
                depthwise_layer(layer, geom, &finish, input, out, scratch, raw);
            }
        }
        MacPlan::Gemm { packed, narrow_i8 } => {
            let operands = if *narrow_i8 {
                GemmBuffers::I8(&mut s.col8, &mut s.in8)
            } else {
                GemmBuffers::I16(&mut s.col16, &mut s.in16)
            };
            gemm_layer(
                layer,
                packed,
                &finish,
                io,
                operands,
                &mut s.gemm_out,
                raw_out,
            );
        }
    }
}

/// One MAC layer (im2col + GEMM) for every image of a group, requantized
/// straight from the GEMM output into each image's output buffer:
/// `io[b] = (input codes, output buffer)` of image `b`.
fn gemm_layer(
    layer: &MacLayer,
    packed: &[PackedA],
    finish: &Finish,
    io: &mut [(&[i32], &mut [i32])],
    mut buffers: GemmBuffers<'_>,
    gemm_out: &mut Vec<i32>,
    mut raw_out: Option<&mut [Vec<i32>]>,
) {
    let o = layer.out_shape;
    let npix = o.h * o.w;
    let cout_g = layer.cout_per_group();
    let slots = io.len();
    let n = slots * npix;
    if gemm_out.len() < cout_g * n {
        gemm_out.resize(cout_g * n, 0);
    }
    let c = &mut gemm_out[..cout_g * n];
    // the engine parallelises over image groups already
    let par = Parallelism::Auto;
    for (grp, weights) in packed.iter().enumerate() {
        match &mut buffers {
            GemmBuffers::I8(col, narrow) => {
                let mut len = 0;
                for (b, (input, _)) in io.iter().enumerate() {
                    len = im2col(layer, narrowed(input, narrow), grp, (b, slots), col);
                }
                gemm_packed_i8(par, weights, n, &col[..len], c);
            }
            GemmBuffers::I16(col, narrow) => {
                let mut len = 0;
                for (b, (input, _)) in io.iter().enumerate() {
                    len = im2col(layer, narrowed(input, narrow), grp, (b, slots), col);
                }
                gemm_packed_i16(par, weights, n, &col[..len], c);
            }
        }
        for (b, (input, out)) in io.iter_mut().enumerate() {
            let amax = finish.input_bound(input);
            for oc in 0..cout_g {
                let ch = grp * cout_g + oc;
                let dst = &mut out[ch * npix..][..npix];
                let raw = &c[oc * n + b * npix..][..npix];
                if let Some(r) = raw_out.as_deref_mut() {
                    r[b][ch * npix..][..npix].copy_from_slice(raw);
                }
                finish.channel(layer, ch, raw, dst, input, amax);
            }
        }
    }
}

/// A depthwise layer for one image: per channel, raw sums with the plane
/// kernel, then requantized into `out`.
fn depthwise_layer(
    layer: &MacLayer,
    geom: &PlaneGeometry,
    finish: &Finish,
    input: &[i32],
    out: &mut [i32],
    (scratch, raw): (&mut DepthwiseScratch, &mut Vec<i32>),
    mut raw_out: Option<&mut [i32]>,
) {
    let (ipix, opix) = (geom.in_h * geom.in_w, geom.out_h * geom.out_w);
    let k = layer.macs_per_output();
    let amax = finish.input_bound(input);
    raw.resize(opix, 0);
    for ch in 0..layer.out_shape.c {
        let plane = &input[ch * ipix..(ch + 1) * ipix];
        let w = &layer.weights[ch * k..(ch + 1) * k];
        depthwise_plane(geom, plane, w, raw, scratch);
        if let Some(r) = raw_out.as_deref_mut() {
            r[ch * opix..(ch + 1) * opix].copy_from_slice(raw);
        }
        let dst = &mut out[ch * opix..(ch + 1) * opix];
        finish.channel(layer, ch, raw, dst, input, amax);
    }
}

/// `input` converted to the GEMM operand type, in the reused buffer `buf`.
fn narrowed<'a, T: Narrow>(input: &[i32], buf: &'a mut Vec<T>) -> &'a [T] {
    buf.clear();
    buf.extend(input.iter().map(|&v| T::narrow(v)));
    buf
}

/// A two-input residual add in i32 when that is exact (see
/// [`AddRescale`]), else the shared implementation.
fn add_node(model: &QModel, q: usize, prev: &[Vec<i32>], out: &mut [i32]) {
    let node = &model.nodes[q];
    let f = node.format;
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let (fa, fb) = (model.nodes[a].format, model.nodes[b].format);
    let rescale = (
        AddRescale::new(fa.frac, f.frac, fa.bits),
        AddRescale::new(fb.frac, f.frac, fb.bits),
    );
    match rescale {
        (Some(ra), Some(rb)) if f.bits <= 32 => {
            let range = (min_code(f.bits) as i32, max_code(f.bits) as i32);
            add2(&prev[a], &prev[b], (ra, rb), range, out);
        }
        _ => exec_non_mac(model, q, prev, out),
    }
}

/// `requantize(acc, f_in, f_out, bits)` with the shift hoisted out of the
/// loop, optionally followed by the layer's activation (both are clamps, so
/// they merge into one clamp of the saturated code).
#[derive(Clone, Copy)]
struct Requant {
    shift: i32,
    lo: i64,
    hi: i64,
}

impl Requant {
    fn new(layer: &MacLayer, with_activation: bool) -> Requant {
        let f = layer.out_format;
        let (mut lo, mut hi) = (min_code(f.bits), max_code(f.bits));
        if with_activation {
            match layer.activation {
                Activation::None => {}
                Activation::Relu => lo = 0,
                Activation::Relu6 => {
                    lo = 0;
                    hi = int_ops::six_code(f) as i64;
                }
            }
        }
        Requant {
            shift: layer.acc_frac - f.frac,
            lo,
            hi,
        }
    }
    #[inline(always)]
    fn apply(&self, acc: i64) -> i32 {
        round_shift(acc, self.shift).clamp(self.lo, self.hi) as i32
    }
}

/// Turns raw wrapping sums of one layer into output codes: pre-activation
/// codes, or post-activation when the activation is fused (no
/// feature-fault hook between the two). Channels whose saturating
/// accumulator could have clipped a partial sum are recomputed in order.
struct Finish<'a> {
    prep: &'a PreparedMac,
    dp: Datapath,
    rq: Requant,
}

impl<'a> Finish<'a> {
    fn new(layer: &MacLayer, prep: &'a PreparedMac, dp: &Datapath, fused: bool) -> Finish<'a> {
        Finish {
            prep,
            dp: *dp,
            rq: Requant::new(layer, fused),
        }
    }

    /// `max |a|` over an image's layer input (saturating datapaths only).
    fn input_bound(&self, input: &[i32]) -> i64 {
        match self.dp.overflow {
            Overflow::Saturate => input.iter().map(|&x| (x as i64).abs()).max().unwrap_or(0),
            Overflow::Wrap => 0,
        }
    }

    /// Output codes of channel `oc` of one image from its raw sums `raw`;
    /// `input` is that image's layer input, `amax` its [`Self::input_bound`].
    fn channel(
        &self,
        layer: &MacLayer,
        oc: usize,
        raw: &[i32],
        dst: &mut [i32],
        input: &[i32],
        amax: i64,
    ) {
        let rq = self.rq;
        let bias = layer.bias[oc] as i64;
        let psum = self.dp.psum_bits;
        match self.dp.overflow {
            Overflow::Wrap => {
                let p = WrapRequant {
                    bias: bias as i32,
                    psum_bits: psum,
                    shift: rq.shift,
                    lo: rq.lo as i32,
                    hi: rq.hi as i32,
                };
                wrap_requant(raw, dst, p);
            }
            Overflow::Saturate if amax * self.prep.abs_sum[oc] <= max_code(psum) => {
                for (v, &r) in dst.iter_mut().zip(raw) {
                    *v = rq.apply(saturate(r as i64 + bias, psum));
                }
            }
            Overflow::Saturate => {
                // a partial sum could saturate: redo this channel in order
                let o = layer.out_shape;
                for (p, v) in dst.iter_mut().enumerate() {
                    let acc = int_ops::mac_output_in_order(
                        layer,
                        &layer.weights,
                        input,
                        &self.dp,
                        oc,
                        p / o.w,
                        p % o.w,
                    );
                    *v = rq.apply(acc);
                }
            }
        }
    }
}

/// The fast engine one layer at a time, for executors that put their own
/// work between layers (the hardware model's fast exact path,
/// `crate::hwsim::fastnet`): the MAC layers of one model prepared once
/// (weights packed), then per-image calls with the arithmetic of
/// [`FastEngine`] (same kernels, same finishing, so the same codes).
pub(crate) struct LayerKit {
    prepared: Vec<Option<PreparedMac>>,
}

/// One thread's buffers for a MAC layer (the engine's workspace and
/// [`LayerKit`]'s).
#[derive(Default)]
pub(crate) struct KitScratch {
    col8: Vec<i8>,
    col16: Vec<i16>,
    in8: Vec<i8>,
    in16: Vec<i16>,
    gemm_out: Vec<i32>,
    depthwise: DepthwiseScratch,
    depthwise_raw: Vec<i32>,
}

impl LayerKit {
    /// Prepare `model`'s MAC layers (the model every later call passes).
    pub(crate) fn new(model: &QModel) -> LayerKit {
        LayerKit {
            prepared: prepare(model),
        }
    }

    fn layer<'m>(&self, model: &'m QModel, q: usize) -> (&'m MacLayer, &PreparedMac) {
        let QOp::Mac(layer) = &model.nodes[q].op else {
            panic!("LayerKit: node {q} is not a conv/linear layer");
        };
        let prep = self.prepared[q]
            .as_ref()
            .expect("every MAC layer is prepared");
        (layer, prep)
    }

    /// MAC node `q` on one image: finished output codes (bias,
    /// requantization, saturation, fused activation), as [`FastEngine`].
    pub(crate) fn mac(
        &self,
        model: &QModel,
        q: usize,
        input: &[i32],
        out: &mut [i32],
        s: &mut KitScratch,
    ) {
        let (layer, prep) = self.layer(model, q);
        run_mac(
            layer,
            prep,
            &model.datapath,
            true,
            &mut [(input, out)],
            s,
            None,
        );
    }

    /// The raw wrapping i32 sums (no bias) of group `grp` of MAC node `q`
    /// on one image: `cout/groups` rows of `out_h*out_w` pixels.
    pub(crate) fn raw_sums<'s>(
        &self,
        model: &QModel,
        q: usize,
        grp: usize,
        input: &[i32],
        s: &'s mut KitScratch,
    ) -> &'s [i32] {
        let (layer, prep) = self.layer(model, q);
        let npix = layer.out_shape.h * layer.out_shape.w;
        let len = layer.cout_per_group() * npix;
        if s.gemm_out.len() < len {
            s.gemm_out.resize(len, 0);
        }
        match &prep.plan {
            MacPlan::Depthwise(geom) => {
                let ipix = geom.in_h * geom.in_w;
                let k = layer.macs_per_output();
                let plane = &input[grp * ipix..(grp + 1) * ipix];
                let w = &layer.weights[grp * k..(grp + 1) * k];
                s.depthwise_raw.resize(npix, 0);
                depthwise_plane(geom, plane, w, &mut s.depthwise_raw, &mut s.depthwise);
                s.gemm_out[..npix].copy_from_slice(&s.depthwise_raw);
            }
            MacPlan::Gemm { packed, narrow_i8 } => {
                let c = &mut s.gemm_out[..len];
                if *narrow_i8 {
                    let n = im2col(layer, narrowed(input, &mut s.in8), grp, (0, 1), &mut s.col8);
                    gemm_packed_i8(Parallelism::Auto, &packed[grp], npix, &s.col8[..n], c);
                } else {
                    let n = im2col(
                        layer,
                        narrowed(input, &mut s.in16),
                        grp,
                        (0, 1),
                        &mut s.col16,
                    );
                    gemm_packed_i16(Parallelism::Auto, &packed[grp], npix, &s.col16[..n], c);
                }
            }
        }
        &s.gemm_out[..len]
    }

    /// [`Self::raw_sums`] of a conv/linear layer the engine runs as an
    /// i8 GEMM, together with the engine's own im2col operand of the group
    /// (`K x out_h*out_w`, row-major; `K = macs_per_output`) and the
    /// group's packed weights; `None` for other layers (depthwise plans,
    /// i16 operands).
    pub(crate) fn raw_sums_col<'k, 's>(
        &'k self,
        model: &QModel,
        q: usize,
        grp: usize,
        input: &[i32],
        s: &'s mut KitScratch,
    ) -> Option<(&'s [i32], &'s [i8], &'k PackedA)> {
        let (layer, prep) = self.layer(model, q);
        let MacPlan::Gemm {
            packed,
            narrow_i8: true,
        } = &prep.plan
        else {
            return None;
        };
        let npix = layer.out_shape.h * layer.out_shape.w;
        let len = layer.cout_per_group() * npix;
        if s.gemm_out.len() < len {
            s.gemm_out.resize(len, 0);
        }
        let c = &mut s.gemm_out[..len];
        let n = im2col(layer, narrowed(input, &mut s.in8), grp, (0, 1), &mut s.col8);
        gemm_packed_i8(Parallelism::Auto, &packed[grp], npix, &s.col8[..n], c);
        Some((&s.gemm_out[..len], &s.col8[..n], &packed[grp]))
    }

    /// Finished output codes of group `grp` of MAC node `q` (bias,
    /// requantization, saturation, fused activation, as [`Self::mac`])
    /// from raw wrapping sums `raw` (`cout/groups x out_h*out_w`, as
    /// [`Self::raw_sums`] returns them) into the layer's whole output
    /// `out`. `input` is the image's layer input (saturating datapaths
    /// recompute channels from it).
    pub(crate) fn finish_raw(
        &self,
        model: &QModel,
        q: usize,
        grp: usize,
        raw: &[i32],
        input: &[i32],
        out: &mut [i32],
    ) {
        let (layer, prep) = self.layer(model, q);
        let finish = Finish::new(layer, prep, &model.datapath, true);
        let npix = layer.out_shape.h * layer.out_shape.w;
        let amax = finish.input_bound(input);
        let cout_g = layer.cout_per_group();
        for oc in 0..cout_g {
            let ch = grp * cout_g + oc;
            let dst = &mut out[ch * npix..][..npix];
            finish.channel(layer, ch, &raw[oc * npix..][..npix], dst, input, amax);
        }
    }

    /// A non-MAC node `q` on one image with the engine's fast ops.
    pub(crate) fn non_mac(model: &QModel, q: usize, prev: &[Vec<i32>], out: &mut [i32]) {
        let node = &model.nodes[q];
        match node.op {
            QOp::Relu | QOp::Relu6 => {
                let hi = match node.op {
                    QOp::Relu6 => int_ops::six_code(node.format),
                    _ => i32::MAX,
                };
                if hi >= 0 {
                    clamp_into(&prev[node.inputs[0]], out, 0, hi);
                } else {
                    exec_non_mac(model, q, prev, out);
                }
            }
            QOp::Add if node.inputs.len() == 2 => add_node(model, q, prev, out),
            _ => exec_non_mac(model, q, prev, out),
        }
    }
}
