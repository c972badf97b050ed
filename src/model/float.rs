//! The f32 reference forward pass of a [`Graph`] with its [`Weights`].
//!
//! This is the "what the network means" oracle: the quantizer calibrates
//! activation formats on it ([`forward_all`] returns every node's output) and
//! tests compare fixed-point logits against it. It favours being obviously
//! correct over being fast: one image at a time, CHW, every sum in the
//! order of a per-output loop. Only the convolution is tiled (im2col and a
//! register-tiled product that keeps each output's reduction sequential,
//! so its floats are the per-output loop's bit for bit): every CLI command
//! calibrates on 256 images, and the plain loops made that 4 s for
//! ResNet-20 and 26 s for W-FTT-Net before any real work.
//!
//! Semantics per op (matching PyTorch inference):
//! - conv: zero padding, stride, dilation, groups; optional bias;
//! - batch norm: `(x - mean) / sqrt(var + eps) * weight + bias` per channel;
//! - max pool: padded positions never win; avg pool: mean over the valid
//!   (non-padded) positions only; global average pool: mean over h x w;
//! - add: element-wise sum; concat: along channels; flatten: CHW order;
//! - linear: `W x + b`; crop: drop `top` rows and `left` columns;
//! - zero: zeros of the input's channels, subsampled by `stride`.

use super::{Graph, ModelError, Op, Shape, Weights};

/// Logits (the last node's output) of one image (`c*h*w` of the input shape).
pub fn forward(graph: &Graph, weights: &Weights, image: &[f32]) -> Result<Vec<f32>, ModelError> {
    let mut all = forward_all(graph, weights, image)?;
    Ok(all.pop().unwrap_or_default())
}

/// Every node's output (CHW, per node in graph order) for one image.
pub fn forward_all(
    graph: &Graph,
    weights: &Weights,
    image: &[f32],
) -> Result<Vec<Vec<f32>>, ModelError> {
    weights.check_against(graph).map_err(ModelError::Graph)?;
    let input = graph.input_shape();
    if image.len() != input.numel() {
        return Err(ModelError::Graph(format!(
            "image has {} values, the graph input {input} needs {}",
            image.len(),
            input.numel()
        )));
    }
    let mut outs: Vec<Vec<f32>> = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let param = |suffix: &str| -> &[f32] {
            // Presence and shapes were checked by `check_against` above.
            &weights.tensors[&format!("{}.{suffix}", node.name)].data
        };
        let ins: Vec<&[f32]> = node.inputs.iter().map(|&i| outs[i].as_slice()).collect();
        let in_shape = node.inputs.first().map(|&i| graph.nodes[i].shape);
        let out = match &node.op {
            Op::Input => image.to_vec(),
            Op::Conv2d {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => conv2d(
                ins[0],
                in_shape.unwrap_or(node.shape),
                node.shape,
                param("weight"),
                if *bias { Some(param("bias")) } else { None },
                ConvGeom {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                    groups: *groups,
                },
            ),
            Op::BatchNorm { eps } => {
                let (g, b, m, v) = (
                    param("weight"),
                    param("bias"),
                    param("running_mean"),
                    param("running_var"),
                );
                let hw = node.shape.h * node.shape.w;
                let mut out = ins[0].to_vec();
                for c in 0..node.shape.c {
                    let inv = 1.0 / (v[c] + eps).sqrt();
                    for x in &mut out[c * hw..(c + 1) * hw] {
                        *x = (*x - m[c]) * inv * g[c] + b[c];
                    }
                }
                out
            }
            Op::Relu => ins[0].iter().map(|&x| x.max(0.0)).collect(),
            Op::Relu6 => ins[0].iter().map(|&x| x.clamp(0.0, 6.0)).collect(),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => pool(
                ins[0],
                in_shape.unwrap_or(node.shape),
                node.shape,
                (*kernel, *stride, *padding),
                true,
            ),
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => pool(
                ins[0],
                in_shape.unwrap_or(node.shape),
                node.shape,
                (*kernel, *stride, *padding),
                false,
            ),
            Op::GlobalAvgPool => {
                let s = in_shape.unwrap_or(node.shape);
                let hw = s.h * s.w;
                (0..s.c)
                    .map(|c| ins[0][c * hw..(c + 1) * hw].iter().sum::<f32>() / hw as f32)
                    .collect()
            }
            Op::Add => {
                let mut out = ins[0].to_vec();
                for other in &ins[1..] {
                    for (o, x) in out.iter_mut().zip(other.iter()) {
                        *o += x;
                    }
                }
                out
            }
            Op::Concat => ins.concat(),
            Op::Flatten => ins[0].to_vec(),
            Op::Linear { out_features, bias } => {
                let w = param("weight");
                let n_in = ins[0].len();
                (0..*out_features)
                    .map(|o| {
                        let dot: f32 = w[o * n_in..(o + 1) * n_in]
                            .iter()
                            .zip(ins[0].iter())
                            .map(|(a, b)| a * b)
                            .sum();
                        dot + if *bias { param("bias")[o] } else { 0.0 }
                    })
                    .collect()
            }
            Op::Crop { top, left } => {
                let s = in_shape.unwrap_or(node.shape);
                let o = node.shape;
                let mut out = Vec::with_capacity(o.numel());
                for c in 0..o.c {
                    for y in 0..o.h {
                        let row = (c * s.h + y + top) * s.w + left;
                        out.extend_from_slice(&ins[0][row..row + o.w]);
                    }
                }
                out
            }
            Op::Zero { .. } => vec![0.0; node.shape.numel()],
        };
        debug_assert_eq!(out.len(), node.shape.numel(), "node {id}");
        outs.push(out);
    }
    Ok(outs)
}

/// Spatial parameters of a convolution.
#[derive(Debug, Clone, Copy)]
struct ConvGeom {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
}

/// Convolution as im2col and a matrix product per group. Every output adds
/// its bias, then its terms in `(ci, ky, kx)` order, one after the other —
/// the product keeps the reduction sequential per output and runs across
/// a tile of outputs instead (register tiles of [`TILE_M`] filters x
/// [`TILE_N`] pixels the compiler vectorizes), so each output sees the same
/// additions in the same order as a per-output loop: the quantizer's
/// calibration ranges depend on these exact floats, and
/// `tests::conv_matches_the_per_output_loop` checks bit equality. Padded
/// taps are zeros in the im2col buffer: adding `w * 0.0` leaves every sum
/// unchanged, including a `+0.0` one (only a `-0.0` bias could differ, in
/// the sign of a zero).
fn conv2d(x: &[f32], s: Shape, o: Shape, w: &[f32], bias: Option<&[f32]>, g: ConvGeom) -> Vec<f32> {
    let cin_g = s.c / g.groups;
    let cout_g = o.c / g.groups;
    let (kh, kw) = g.kernel;
    let k = cin_g * kh * kw;
    let plane = o.h * o.w;
    let mut out = vec![0.0f32; o.numel()];
    if plane == 0 || cout_g == 0 {
        return out;
    }
    // Pixels padded to whole tiles: the extra columns are zeros and their
    // outputs are dropped.
    let width = plane.div_ceil(TILE_N) * TILE_N;
    let mut col = vec![0.0f32; k * width];
    for grp in 0..g.groups {
        im2col(x, s, o, &g, grp * cin_g, cin_g, width, &mut col);
        let wg = &w[grp * cout_g * k..(grp + 1) * cout_g * k];
        let og = &mut out[grp * cout_g * plane..(grp + 1) * cout_g * plane];
        let bg = bias.map(|b| &b[grp * cout_g..(grp + 1) * cout_g]);
        ordered_gemm(wg, &col, bg, cout_g, k, plane, width, og);
    }
    out
}

/// Filters and pixels of one register tile of [`ordered_gemm`].
const TILE_M: usize = 4;
const TILE_N: usize = 8;

/// `col[(ci * kh + ky) * kw + kx][pixel]` (row stride `width`) of input
/// channels `c0..c0 + cin`, zeros where the tap falls in the padding.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    s: Shape,
    o: Shape,
    g: &ConvGeom,
    c0: usize,
    cin: usize,
    width: usize,
    col: &mut [f32],
) {
    let (kh, kw) = g.kernel;
    for ci in 0..cin {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((ci * kh + ky) * kw + kx) * width..][..width];
                for oy in 0..o.h {
                    let dst = &mut row[oy * o.w..(oy + 1) * o.w];
                    let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - g.padding.0 as isize;
                    if iy < 0 || iy >= s.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &x[((c0 + ci) * s.h + iy as usize) * s.w..][..s.w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix =
                            (ox * g.stride.1 + kx * g.dilation.1) as isize - g.padding.1 as isize;
                        *d = if ix < 0 || ix >= s.w as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

/// `out[m][p] = bias[m] + sum_k w[m][k] * col[k][p]` for `m < rows`, `p <
/// plane`, the sum taken in `k` order for every output (`w`: `rows x k`;
/// `col`: `k x width`, `width` a multiple of [`TILE_N`]; `out`: `rows x
/// plane`).
#[allow(clippy::too_many_arguments)]
fn ordered_gemm(
    w: &[f32],
    col: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    plane: usize,
    width: usize,
    out: &mut [f32],
) {
    let mut m = 0;
    while m < rows {
        let tm = TILE_M.min(rows - m);
        for p in (0..width).step_by(TILE_N) {
            let mut acc = [[0.0f32; TILE_N]; TILE_M];
            for (i, a) in acc.iter_mut().enumerate().take(tm) {
                *a = [bias.map_or(0.0, |b| b[m + i]); TILE_N];
            }
            if tm == TILE_M {
                let [a0, a1, a2, a3] = &mut acc;
                let (w0, w1, w2, w3) = (
                    &w[m * k..][..k],
                    &w[(m + 1) * k..][..k],
                    &w[(m + 2) * k..][..k],
                    &w[(m + 3) * k..][..k],
                );
                for kk in 0..k {
                    let c: &[f32; TILE_N] = col[kk * width + p..][..TILE_N].try_into().unwrap();
                    let (v0, v1, v2, v3) = (w0[kk], w1[kk], w2[kk], w3[kk]);
                    for j in 0..TILE_N {
                        a0[j] += v0 * c[j];
                        a1[j] += v1 * c[j];
                        a2[j] += v2 * c[j];
                        a3[j] += v3 * c[j];
                    }
                }
            } else {
                for (i, a) in acc.iter_mut().enumerate().take(tm) {
                    let r = &w[(m + i) * k..][..k];
                    for (kk, &wv) in r.iter().enumerate() {
                        let c: &[f32; TILE_N] = col[kk * width + p..][..TILE_N].try_into().unwrap();
                        for j in 0..TILE_N {
                            a[j] += wv * c[j];
                        }
                    }
                }
            }
            let n = TILE_N.min(plane.saturating_sub(p));
            for (i, a) in acc.iter().enumerate().take(tm) {
                out[(m + i) * plane + p..][..n].copy_from_slice(&a[..n]);
            }
        }
        m += tm;
    }
}

type PoolGeom = ((usize, usize), (usize, usize), (usize, usize));

fn pool(x: &[f32], s: Shape, o: Shape, (k, st, p): PoolGeom, max: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; o.numel()];
    for c in 0..o.c {
        for oy in 0..o.h {
            for ox in 0..o.w {
                let mut best = f32::NEG_INFINITY;
                let mut sum = 0.0f32;
                let mut count = 0usize;
                for ky in 0..k.0 {
                    let iy = (oy * st.0 + ky) as isize - p.0 as isize;
                    if iy < 0 || iy >= s.h as isize {
                        continue;
                    }
                    for kx in 0..k.1 {
                        let ix = (ox * st.1 + kx) as isize - p.1 as isize;
                        if ix < 0 || ix >= s.w as isize {
                            continue;
                        }
                        let v = x[(c * s.h + iy as usize) * s.w + ix as usize];
                        best = best.max(v);
                        sum += v;
                        count += 1;
                    }
                }
                // Shape inference guarantees every window holds a valid
                // position (padding <= kernel/2), so count >= 1.
                out[(c * o.h + oy) * o.w + ox] = if max { best } else { sum / count.max(1) as f32 };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-output loop the vectorized conv must equal bit for bit.
    fn conv_per_output(
        x: &[f32],
        s: Shape,
        o: Shape,
        w: &[f32],
        bias: Option<&[f32]>,
        g: &ConvGeom,
    ) -> Vec<f32> {
        let cin_g = s.c / g.groups;
        let cout_g = o.c / g.groups;
        let (kh, kw) = g.kernel;
        let mut out = vec![0.0f32; o.numel()];
        for oc in 0..o.c {
            let grp = oc / cout_g;
            for oy in 0..o.h {
                for ox in 0..o.w {
                    let mut acc = bias.map_or(0.0, |b| b[oc]);
                    for ci in 0..cin_g {
                        let c = grp * cin_g + ci;
                        for ky in 0..kh {
                            let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize
                                - g.padding.0 as isize;
                            if iy < 0 || iy >= s.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if ix < 0 || ix >= s.w as isize {
                                    continue;
                                }
                                acc += x[(c * s.h + iy as usize) * s.w + ix as usize]
                                    * w[((oc * cin_g + ci) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    out[(oc * o.h + oy) * o.w + ox] = acc;
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn conv_matches_the_per_output_loop(
            (cg, og, groups) in (1usize..4, 1usize..10, 1usize..3),
            (h, wd) in (1usize..9, 1usize..9),
            (kh, kw) in (1usize..4, 1usize..4),
            (sy, sx) in (1usize..3, 1usize..4),
            (py, px) in (0usize..3, 0usize..3),
            (dy, dx) in (1usize..3, 1usize..3),
            with_bias in proptest::prelude::any::<bool>(),
            seed in proptest::prelude::any::<u32>(),
        ) {
            let eh = (kh - 1) * dy + 1;
            let ew = (kw - 1) * dx + 1;
            proptest::prop_assume!(h + 2 * py >= eh && wd + 2 * px >= ew);
            let s = Shape::new(cg * groups, h, wd);
            let o = Shape::new(og * groups, (h + 2 * py - eh) / sy + 1, (wd + 2 * px - ew) / sx + 1);
            let mut r = seed as u64 | 1;
            let mut next = || { r ^= r << 13; r ^= r >> 7; r ^= r << 17; (r % 2001) as f32 / 997.0 - 1.0 };
            let x: Vec<f32> = (0..s.numel()).map(|_| next()).collect();
            let w: Vec<f32> = (0..o.c * cg * kh * kw).map(|_| next()).collect();
            let b: Vec<f32> = (0..o.c).map(|_| next()).collect();
            let bias = with_bias.then_some(b.as_slice());
            let g = ConvGeom { kernel: (kh, kw), stride: (sy, sx), padding: (py, px), dilation: (dy, dx), groups };
            let want = conv_per_output(&x, s, o, &w, bias, &g);
            let got = conv2d(&x, s, o, &w, bias, g);
            let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
            proptest::prop_assert!(same, "{:?} vs {:?}", want, got);
        }
    }
    use crate::model::{GraphBuilder, Tensor};

    #[test]
    fn conv_pool_linear_by_hand() {
        let mut b = GraphBuilder::new("t", Shape::new(1, 3, 3));
        let c = b
            .add(
                "c",
                Op::Conv2d {
                    out_channels: 1,
                    kernel: (2, 2),
                    stride: (1, 1),
                    padding: (0, 0),
                    dilation: (1, 1),
                    groups: 1,
                    bias: true,
                },
                &[0],
            )
            .unwrap();
        let p = b
            .add(
                "p",
                Op::AvgPool {
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: (1, 1),
                },
                &[c],
            )
            .unwrap();
        let m = b
            .add(
                "m",
                Op::MaxPool {
                    kernel: (3, 3),
                    stride: (2, 2),
                    padding: (1, 1),
                },
                &[p],
            )
            .unwrap();
        let f = b.add("f", Op::Flatten, &[m]).unwrap();
        b.add(
            "fc",
            Op::Linear {
                out_features: 1,
                bias: false,
            },
            &[f],
        )
        .unwrap();
        let g = b.finish();
        let mut w = Weights::default();
        w.insert(
            "c.weight",
            Tensor::new(vec![1, 1, 2, 2], vec![1.0, 0.0, 0.0, -1.0]),
        );
        w.insert("c.bias", Tensor::new(vec![1], vec![0.5]));
        w.insert("fc.weight", Tensor::new(vec![1, 1], vec![2.0]));
        let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let all = forward_all(&g, &w, &img).unwrap();
        // conv: x[y][x] - x[y+1][x+1] + 0.5 = -4 + 0.5 everywhere.
        assert_eq!(all[c], vec![-3.5; 4]);
        // avg over valid positions only: still -3.5 everywhere.
        assert_eq!(all[p], vec![-3.5; 4]);
        assert_eq!(all[m], vec![-3.5]);
        assert_eq!(all.last().unwrap(), &vec![-7.0]);
    }

    #[test]
    fn maxpool_padding_never_wins_and_bn() {
        let mut b = GraphBuilder::new("t", Shape::new(1, 2, 2));
        let bn = b.add("bn", Op::BatchNorm { eps: 0.0 }, &[0]).unwrap();
        b.add(
            "m",
            Op::MaxPool {
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
            },
            &[bn],
        )
        .unwrap();
        let g = b.finish();
        let mut w = Weights::default();
        w.insert("bn.weight", Tensor::new(vec![1], vec![2.0]));
        w.insert("bn.bias", Tensor::new(vec![1], vec![-10.0]));
        w.insert("bn.running_mean", Tensor::new(vec![1], vec![1.0]));
        w.insert("bn.running_var", Tensor::new(vec![1], vec![4.0]));
        let out = forward(&g, &w, &[1.0, 3.0, 5.0, 7.0]).unwrap();
        // (x-1)/2*2-10 = x-11: all negative, padding (0) must not win.
        assert_eq!(out, vec![-4.0; 4]);
    }

    #[test]
    fn missing_weights_is_an_error() {
        let mut b = GraphBuilder::new("t", Shape::new(1, 2, 2));
        b.add("bn", Op::BatchNorm { eps: 1e-5 }, &[0]).unwrap();
        let g = b.finish();
        let e = forward(&g, &Weights::default(), &[0.0; 4]).unwrap_err();
        assert!(e.to_string().contains("bn.weight"), "{e}");
    }
}
