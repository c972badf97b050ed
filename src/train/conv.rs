//! 2-D convolution (stride, zero padding, dilation, groups) forward and
//! backward on N x C x H x W batches: per image and group, im2col into a
//! `K x P` column matrix (`K = C_in/groups * kh * kw`, `P = out_h * out_w`),
//! then one f32 GEMM. Images run in parallel (rayon); weight gradients are
//! summed per fixed chunk of images and the chunks added in order, so the
//! result does not depend on the thread count (bit-identical resumes).
//!
//! Depthwise convolutions (one filter per channel, `groups == C_in ==
//! C_out`) skip im2col: a `1 x K` GEMM per channel spends its time packing
//! and copying, so `depthwise_*` loop over taps and rows directly (same
//! geometry helpers, same chunked gradient sums).

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use crate::model::{Graph, NodeId, Shape};
use crate::quant::build::MacGeometry;

/// Images per weight-gradient partial sum (fixed, for determinism).
pub const GRAD_CHUNK: usize = 8;

/// Shape and geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub input: Shape,
    pub output: Shape,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl ConvGeom {
    /// Geometry of MAC node `id` (conv or linear) when it is a
    /// convolution, `None` for a linear layer. Read from the quantizer's
    /// [`MacGeometry`] so the op's fields are matched in one place.
    pub fn of(graph: &Graph, id: NodeId) -> Option<ConvGeom> {
        let g = MacGeometry::of(graph, id);
        g.is_conv.then_some(ConvGeom {
            input: g.in_shape,
            output: g.out_shape,
            kernel: g.kernel,
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
            groups: g.groups,
        })
    }
    pub fn cin_g(&self) -> usize {
        self.input.c / self.groups
    }
    pub fn cout_g(&self) -> usize {
        self.output.c / self.groups
    }
    /// Rows of the column matrix (reduction length).
    pub fn k(&self) -> usize {
        self.cin_g() * self.kernel.0 * self.kernel.1
    }
    /// Output positions per image.
    pub fn p(&self) -> usize {
        self.output.h * self.output.w
    }
    /// A 1x1, stride 1, unpadded convolution: the input plane is the column
    /// matrix already.
    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == (1, 1) && self.padding == (0, 0)
    }

    /// One filter per channel: direct loops instead of im2col + GEMM.
    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.cin_g() == 1 && self.cout_g() == 1
    }

    /// Call `f(tap, src, dst, len)` for every kernel tap and every output
    /// row whose input row is inside the image: the `len` output elements
    /// from plane offset `dst` on read the input elements `src + k *
    /// stride`, `k < len` (offsets within one plane).
    fn for_each_tap_row(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (ih, iw) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (kh, kw) = self.kernel;
        let sx = self.stride.1 as isize;
        for kx in 0..kw {
            let (lo, hi, off) = self.valid_cols(kx);
            if lo >= hi {
                continue;
            }
            let first = (lo as isize * sx + off) as usize;
            for ky in 0..kh {
                let tap = ky * kw + kx;
                for oy in 0..oh {
                    let iy = self.src(oy, ky, 0);
                    if iy < 0 || iy >= ih as isize {
                        continue;
                    }
                    f(tap, iy as usize * iw + first, oy * ow + lo, hi - lo);
                }
            }
        }
    }

    /// Depthwise forward of one image: `out` (C x P) = taps x input.
    fn depthwise_forward(&self, x: &[f32], w: &[f32], out: &mut [f32]) {
        let (plane_in, p, kk) = (self.input.h * self.input.w, self.p(), self.k());
        let sx = self.stride.1;
        for c in 0..self.output.c {
            let xp = &x[c * plane_in..][..plane_in];
            let op = &mut out[c * p..][..p];
            let wc = &w[c * kk..][..kk];
            op.fill(0.0);
            self.for_each_tap_row(|tap, src, dst, len| {
                let wv = wc[tap];
                let d = &mut op[dst..dst + len];
                if sx == 1 {
                    for (o, &v) in d.iter_mut().zip(&xp[src..src + len]) {
                        *o += wv * v;
                    }
                } else {
                    for (k, o) in d.iter_mut().enumerate() {
                        *o += wv * xp[src + k * sx];
                    }
                }
            });
        }
    }

    /// Depthwise backward of one image: adds the weight gradient into `dw`
    /// and (if given) the input gradient into `dx`.
    fn depthwise_backward(
        &self,
        x: &[f32],
        w: &[f32],
        dout: &[f32],
        mut dx: Option<&mut [f32]>,
        dw: &mut [f32],
    ) {
        let (plane_in, p, kk) = (self.input.h * self.input.w, self.p(), self.k());
        let sx = self.stride.1;
        for c in 0..self.output.c {
            let xp = &x[c * plane_in..][..plane_in];
            let dp = &dout[c * p..][..p];
            let wc = &w[c * kk..][..kk];
            let dwc = &mut dw[c * kk..][..kk];
            let mut dxp = dx
                .as_deref_mut()
                .map(|d| &mut d[c * plane_in..][..plane_in]);
            self.for_each_tap_row(|tap, src, dst, len| {
                let g = &dp[dst..dst + len];
                let wv = wc[tap];
                if sx == 1 {
                    let xs = &xp[src..src + len];
                    dwc[tap] += g.iter().zip(xs).map(|(&a, &b)| a * b).sum::<f32>();
                    if let Some(dxp) = dxp.as_deref_mut() {
                        for (d, &v) in dxp[src..src + len].iter_mut().zip(g) {
                            *d += wv * v;
                        }
                    }
                } else {
                    let mut acc = 0.0f32;
                    for (k, &v) in g.iter().enumerate() {
                        acc += v * xp[src + k * sx];
                    }
                    dwc[tap] += acc;
                    if let Some(dxp) = dxp.as_deref_mut() {
                        for (k, &v) in g.iter().enumerate() {
                            dxp[src + k * sx] += wv * v;
                        }
                    }
                }
            });
        }
    }

    /// Input row/column of output position `o` and kernel tap `k` (may be
    /// outside the image).
    #[inline]
    fn src(&self, o: usize, k: usize, axis: usize) -> isize {
        let (s, d, p) = if axis == 0 {
            (self.stride.0, self.dilation.0, self.padding.0)
        } else {
            (self.stride.1, self.dilation.1, self.padding.1)
        };
        (o * s + k * d) as isize - p as isize
    }

    /// For kernel column `kx`: the output columns `lo..hi` whose input
    /// column `ox * stride + kx * dilation - padding` is inside the image,
    /// and that offset `kx * dilation - padding`.
    fn valid_cols(&self, kx: usize) -> (usize, usize, isize) {
        let off = (kx * self.dilation.1) as isize - self.padding.1 as isize;
        let s = self.stride.1 as isize;
        let iw = self.input.w as isize;
        let ow = self.output.w;
        let lo = (0..ow).find(|&o| o as isize * s + off >= 0).unwrap_or(ow);
        let hi = (lo..ow)
            .take_while(|&o| o as isize * s + off < iw)
            .last()
            .map_or(lo, |o| o + 1);
        (lo, hi, off)
    }

    /// Columns of group `g` of one image into `col` (`K x P`).
    fn im2col(&self, x: &[f32], g: usize, col: &mut [f32]) {
        let (ih, iw) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (kh, kw) = self.kernel;
        let p = oh * ow;
        let sx = self.stride.1;
        let ranges: Vec<(usize, usize, isize)> = (0..kw).map(|kx| self.valid_cols(kx)).collect();
        for ci in 0..self.cin_g() {
            let plane = &x[(g * self.cin_g() + ci) * ih * iw..][..ih * iw];
            for ky in 0..kh {
                for (kx, &(lo, hi, off)) in ranges.iter().enumerate() {
                    let row = &mut col[((ci * kh + ky) * kw + kx) * p..][..p];
                    for oy in 0..oh {
                        let iy = self.src(oy, ky, 0);
                        let dst = &mut row[oy * ow..(oy + 1) * ow];
                        if iy < 0 || iy >= ih as isize || lo >= hi {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * iw..][..iw];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let first = (lo as isize * sx as isize + off) as usize;
                        if sx == 1 {
                            dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                        } else {
                            for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                                *d = src[first + k * sx];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Add the columns `col` of group `g` back into the image gradient `dx`.
    fn col2im(&self, col: &[f32], g: usize, dx: &mut [f32]) {
        let (ih, iw) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (kh, kw) = self.kernel;
        let p = oh * ow;
        let sx = self.stride.1;
        let ranges: Vec<(usize, usize, isize)> = (0..kw).map(|kx| self.valid_cols(kx)).collect();
        for ci in 0..self.cin_g() {
            let plane = &mut dx[(g * self.cin_g() + ci) * ih * iw..][..ih * iw];
            for ky in 0..kh {
                for (kx, &(lo, hi, off)) in ranges.iter().enumerate() {
                    let row = &col[((ci * kh + ky) * kw + kx) * p..][..p];
                    for oy in 0..oh {
                        let iy = self.src(oy, ky, 0);
                        if iy < 0 || iy >= ih as isize || lo >= hi {
                            continue;
                        }
                        let dst = &mut plane[iy as usize * iw..][..iw];
                        let first = (lo as isize * sx as isize + off) as usize;
                        let src = &row[oy * ow + lo..oy * ow + hi];
                        if sx == 1 {
                            for (d, &v) in dst[first..first + hi - lo].iter_mut().zip(src) {
                                *d += v;
                            }
                        } else {
                            for (k, &v) in src.iter().enumerate() {
                                dst[first + k * sx] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `out = conv(x, w) + bias` for a batch (`x`: N x input, `out`: N x output).
pub fn forward(geom: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let (in_n, out_n) = (geom.input.numel(), geom.output.numel());
    let (k, p, cout_g) = (geom.k(), geom.p(), geom.cout_g());
    out.par_chunks_mut(out_n)
        .zip(x.par_chunks(in_n))
        .for_each_init(
            || {
                let direct = geom.is_pointwise() || geom.is_depthwise();
                vec![0.0f32; if direct { 0 } else { k * p }]
            },
            |col, (o, xi)| {
                // depthwise: direct loops; otherwise one GEMM per group
                let groups = if geom.is_depthwise() {
                    geom.depthwise_forward(xi, w, o);
                    0
                } else {
                    geom.groups
                };
                for g in 0..groups {
                    let wg = Mat::rm(&w[g * cout_g * k..][..cout_g * k], cout_g, k);
                    let og = &mut o[g * cout_g * p..][..cout_g * p];
                    if geom.is_pointwise() {
                        gemm(wg, Mat::rm(&xi[g * k * p..][..k * p], k, p), 0.0, og);
                    } else {
                        geom.im2col(xi, g, col);
                        gemm(wg, Mat::rm(col, k, p), 0.0, og);
                    }
                }
                if let Some(b) = bias {
                    for (c, plane) in o.chunks_exact_mut(p).enumerate() {
                        for v in plane {
                            *v += b[c];
                        }
                    }
                }
            },
        );
}

/// Gradients of a convolution: `dw` and `db` are overwritten, `dx` (if
/// given) is overwritten with the input gradient.
pub fn backward(
    geom: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dout: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (in_n, out_n) = (geom.input.numel(), geom.output.numel());
    let (k, p, cout_g) = (geom.k(), geom.p(), geom.cout_g());
    let n = dout.len() / out_n.max(1);
    let pointwise = geom.is_pointwise();
    let depthwise = geom.is_depthwise();
    // one chunk of images: its weight/bias gradient partial sums
    let chunk = |c: usize, mut dx: Option<&mut [f32]>| -> (Vec<f32>, Vec<f32>) {
        let mut pdw = vec![0.0f32; dw.len()];
        let mut pdb = vec![0.0f32; geom.output.c];
        let mut col = vec![0.0f32; if pointwise || depthwise { 0 } else { k * p }];
        let mut dcol = vec![0.0f32; if depthwise { 0 } else { k * p }];
        let first = c * GRAD_CHUNK;
        for i in first..(first + GRAD_CHUNK).min(n) {
            let xi = &x[i * in_n..][..in_n];
            let di = &dout[i * out_n..][..out_n];
            let groups = if depthwise {
                let dxi = dx
                    .as_deref_mut()
                    .map(|d| &mut d[(i - first) * in_n..][..in_n]);
                geom.depthwise_backward(xi, w, di, dxi, &mut pdw);
                0
            } else {
                geom.groups
            };
            for g in 0..groups {
                let dg = Mat::rm(&di[g * cout_g * p..][..cout_g * p], cout_g, p);
                let colm = if pointwise {
                    &xi[g * k * p..][..k * p]
                } else {
                    geom.im2col(xi, g, &mut col);
                    &col[..]
                };
                // dW_g += dOut_g (cout_g x P) * col^T (P x K)
                gemm(
                    dg,
                    Mat::rm_t(colm, p, k),
                    1.0,
                    &mut pdw[g * cout_g * k..][..cout_g * k],
                );
                if let Some(dx) = dx.as_deref_mut() {
                    let dxi = &mut dx[(i - first) * in_n..][..in_n];
                    // dcol = W_g^T (K x cout_g) * dOut_g (cout_g x P)
                    let wt = Mat::rm_t(&w[g * cout_g * k..][..cout_g * k], k, cout_g);
                    if pointwise {
                        gemm(wt, dg, 0.0, &mut dxi[g * k * p..][..k * p]);
                    } else {
                        gemm(wt, dg, 0.0, &mut dcol);
                        geom.col2im(&dcol, g, dxi);
                    }
                }
            }
            for (ch, plane) in di.chunks_exact(p).enumerate() {
                pdb[ch] += plane.iter().sum::<f32>();
            }
        }
        (pdw, pdb)
    };
    let partials: Vec<(Vec<f32>, Vec<f32>)> = match dx {
        Some(dx) => {
            dx.fill(0.0);
            dx.par_chunks_mut(GRAD_CHUNK * in_n)
                .enumerate()
                .map(|(c, d)| chunk(c, Some(d)))
                .collect()
        }
        None => (0..n.div_ceil(GRAD_CHUNK))
            .into_par_iter()
            .map(|c| chunk(c, None))
            .collect(),
    };
    dw.fill(0.0);
    let mut dbias = vec![0.0f32; geom.output.c];
    for (pdw, pdb) in &partials {
        for (a, b) in dw.iter_mut().zip(pdw) {
            *a += b;
        }
        for (a, b) in dbias.iter_mut().zip(pdb) {
            *a += b;
        }
    }
    if let Some(db) = db {
        db.copy_from_slice(&dbias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        // small deterministic pseudo-random values in [-1, 1)
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs())))
    }

    proptest! {
        /// The direct depthwise path equals C single-channel convolutions
        /// through the im2col + GEMM path (forward, dW, dX, db).
        #[test]
        fn depthwise_direct_matches_per_channel_gemm(
            c in 2usize..5, h in 1usize..9, w in 1usize..9, k in 1usize..4,
            stride in 1usize..3, pad in 0usize..3, dil in 1usize..3, n in 1usize..11,
            seed in any::<u64>(),
        ) {
            let span = dil * (k - 1) + 1;
            prop_assume!(h + 2 * pad >= span && w + 2 * pad >= span);
            let (oh, ow) = ((h + 2 * pad - span) / stride + 1, (w + 2 * pad - span) / stride + 1);
            let geom = ConvGeom {
                input: Shape::new(c, h, w),
                output: Shape::new(c, oh, ow),
                kernel: (k, k),
                stride: (stride, stride),
                padding: (pad, pad),
                dilation: (dil, dil),
                groups: c,
            };
            prop_assert!(geom.is_depthwise());
            let one = ConvGeom { input: Shape::new(1, h, w), output: Shape::new(1, oh, ow), groups: 1, ..geom };
            prop_assert!(!one.is_depthwise());
            let (pin, pout, kk) = (h * w, oh * ow, k * k);
            let x = values(n * c * pin, seed);
            let wt = values(c * kk, seed ^ 1);
            let bias = values(c, seed ^ 2);
            let dout = values(n * c * pout, seed ^ 3);
            let mut out = vec![0.0; n * c * pout];
            forward(&geom, &x, &wt, Some(&bias), &mut out);
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; c]);
            backward(&geom, &x, &wt, &dout, Some(&mut dx), &mut dw, Some(&mut db));
            for ch in 0..c {
                let pick = |v: &[f32], per: usize| -> Vec<f32> {
                    (0..n).flat_map(|i| v[(i * c + ch) * per..][..per].to_vec()).collect()
                };
                let (xc, dc) = (pick(&x, pin), pick(&dout, pout));
                let wc = &wt[ch * kk..][..kk];
                let mut oc = vec![0.0; n * pout];
                forward(&one, &xc, wc, Some(&bias[ch..ch + 1]), &mut oc);
                prop_assert!(close(&pick(&out, pout), &oc), "forward, channel {ch}");
                let (mut dxc, mut dwc, mut dbc) = (vec![0.0; xc.len()], vec![0.0; kk], vec![0.0; 1]);
                backward(&one, &xc, wc, &dc, Some(&mut dxc), &mut dwc, Some(&mut dbc));
                prop_assert!(close(&pick(&dx, pin), &dxc), "dx, channel {ch}");
                prop_assert!(close(&dw[ch * kk..][..kk], &dwc), "dw, channel {ch}");
                prop_assert!(close(&db[ch..ch + 1], &dbc), "db, channel {ch}");
            }
            // without dx the weight gradient is the same
            let mut dw2 = vec![0.0; wt.len()];
            backward(&geom, &x, &wt, &dout, None, &mut dw2, None);
            prop_assert_eq!(dw, dw2);
        }
    }
}
