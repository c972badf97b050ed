//! Forward and backward kernels of the non-convolution ops on N x C x H x W
//! batches (f32): batch norm (batch statistics or fixed statistics),
//! max/average pooling, global average pooling and linear layers. The
//! element-wise and data-movement ops (ReLU, add, concat, crop, zero,
//! flatten) are a few lines each and live in the graph walker.

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use crate::model::Shape;

/// Per-channel statistics of a batch norm: mean and 1/sqrt(var + eps).
#[derive(Debug, Clone, PartialEq)]
pub struct BnStats {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// Unbiased batch variance (for the running estimate).
    pub var_unbiased: Vec<f32>,
}

/// Batch statistics of `x` (N x C x HW) per channel, accumulated in f64.
pub fn bn_batch_stats(x: &[f32], n: usize, s: Shape, eps: f32) -> BnStats {
    let hw = s.h * s.w;
    let per: Vec<(f32, f32, f32)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let (mut sum, mut sum2) = (0.0f64, 0.0f64);
            for i in 0..n {
                for &v in &x[(i * s.c + c) * hw..][..hw] {
                    sum += v as f64;
                    sum2 += v as f64 * v as f64;
                }
            }
            let m = (n * hw) as f64;
            let mean = sum / m;
            let var = (sum2 / m - mean * mean).max(0.0);
            let unbiased = if m > 1.0 { var * m / (m - 1.0) } else { var };
            (
                mean as f32,
                (1.0 / (var + eps as f64).sqrt()) as f32,
                unbiased as f32,
            )
        })
        .collect();
    BnStats {
        mean: per.iter().map(|p| p.0).collect(),
        inv_std: per.iter().map(|p| p.1).collect(),
        var_unbiased: per.iter().map(|p| p.2).collect(),
    }
}

/// Statistics from running estimates.
pub fn bn_fixed_stats(mean: &[f32], var: &[f32], eps: f32) -> BnStats {
    BnStats {
        mean: mean.to_vec(),
        inv_std: var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect(),
        var_unbiased: var.to_vec(),
    }
}

/// `y = gamma * (x - mean) * inv_std + beta`.
pub fn bn_forward(x: &[f32], s: Shape, st: &BnStats, gamma: &[f32], beta: &[f32], y: &mut [f32]) {
    let hw = s.h * s.w;
    y.par_chunks_mut(s.numel())
        .zip(x.par_chunks(s.numel()))
        .for_each(|(yi, xi)| {
            for c in 0..s.c {
                let a = gamma[c] * st.inv_std[c];
                let b = beta[c] - st.mean[c] * a;
                for (o, &v) in yi[c * hw..][..hw].iter_mut().zip(&xi[c * hw..][..hw]) {
                    *o = v * a + b;
                }
            }
        });
}

/// Batch-norm gradients. With `batch_stats` the statistics are functions of
/// `x` (training); otherwise they are constants (evaluation, or the faulty
/// forward of FTT, which reuses the clean forward's statistics).
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    x: &[f32],
    dy: &[f32],
    n: usize,
    s: Shape,
    st: &BnStats,
    gamma: &[f32],
    batch_stats: bool,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let hw = s.h * s.w;
    let sums: Vec<(f64, f64)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let (mean, is) = (st.mean[c], st.inv_std[c]);
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for i in 0..n {
                let off = (i * s.c + c) * hw;
                for (&d, &v) in dy[off..off + hw].iter().zip(&x[off..off + hw]) {
                    sdy += d as f64;
                    sdyx += d as f64 * ((v - mean) * is) as f64;
                }
            }
            (sdy, sdyx)
        })
        .collect();
    for c in 0..s.c {
        dbeta[c] = sums[c].0 as f32;
        dgamma[c] = sums[c].1 as f32;
    }
    let m = (n * hw) as f32;
    dx.par_chunks_mut(s.numel())
        .zip(dy.par_chunks(s.numel()))
        .zip(x.par_chunks(s.numel()))
        .for_each(|((dxi, dyi), xi)| {
            for c in 0..s.c {
                let (mean, is) = (st.mean[c], st.inv_std[c]);
                let k = gamma[c] * is;
                let range = c * hw..(c + 1) * hw;
                if batch_stats {
                    let mdy = sums[c].0 as f32 / m;
                    let mdyx = sums[c].1 as f32 / m;
                    for ((o, &d), &v) in dxi[range.clone()]
                        .iter_mut()
                        .zip(&dyi[range.clone()])
                        .zip(&xi[range])
                    {
                        *o = k * (d - mdy - (v - mean) * is * mdyx);
                    }
                } else {
                    for (o, &d) in dxi[range.clone()].iter_mut().zip(&dyi[range]) {
                        *o = k * d;
                    }
                }
            }
        });
}

/// Pooling window geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub input: Shape,
    pub output: Shape,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl PoolGeom {
    /// Valid input rows and columns of output position (oy, ox).
    #[inline]
    fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let y0 = (oy * self.stride.0) as isize - self.padding.0 as isize;
        let x0 = (ox * self.stride.1) as isize - self.padding.1 as isize;
        let ys =
            y0.max(0) as usize..((y0 + self.kernel.0 as isize).min(self.input.h as isize)) as usize;
        let xs =
            x0.max(0) as usize..((x0 + self.kernel.1 as isize).min(self.input.w as isize)) as usize;
        (ys, xs)
    }
}

/// Max pooling; `arg` receives the input index (within the image) of each
/// output's maximum (first maximum in window order).
pub fn maxpool_forward(g: &PoolGeom, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
    let (is, os) = (g.input, g.output);
    y.par_chunks_mut(os.numel())
        .zip(arg.par_chunks_mut(os.numel()))
        .zip(x.par_chunks(is.numel()))
        .for_each(|((yi, ai), xi)| {
            for c in 0..os.c {
                for oy in 0..os.h {
                    for ox in 0..os.w {
                        let (ys, xs) = g.window(oy, ox);
                        let mut best = f32::NEG_INFINITY;
                        let mut at = 0usize;
                        for iy in ys {
                            for ix in xs.clone() {
                                let j = (c * is.h + iy) * is.w + ix;
                                if xi[j] > best {
                                    best = xi[j];
                                    at = j;
                                }
                            }
                        }
                        let o = (c * os.h + oy) * os.w + ox;
                        yi[o] = best;
                        ai[o] = at as u32;
                    }
                }
            }
        });
}

/// Gradient of max pooling: each output's gradient goes to its argmax.
pub fn maxpool_backward(g: &PoolGeom, dy: &[f32], arg: &[u32], dx: &mut [f32]) {
    let (is, os) = (g.input, g.output);
    dx.par_chunks_mut(is.numel())
        .zip(dy.par_chunks(os.numel()))
        .zip(arg.par_chunks(os.numel()))
        .for_each(|((dxi, dyi), ai)| {
            dxi.fill(0.0);
            for (&d, &a) in dyi.iter().zip(ai) {
                dxi[a as usize] += d;
            }
        });
}

/// Average pooling over the valid positions; `round` (QAT) rounds each
/// mean to the grid of step `round` with ties towards +inf, as the engine's
/// `round_div` on codes does.
pub fn avgpool_forward(g: &PoolGeom, x: &[f32], y: &mut [f32], round: Option<f32>) {
    let (is, os) = (g.input, g.output);
    y.par_chunks_mut(os.numel())
        .zip(x.par_chunks(is.numel()))
        .for_each(|(yi, xi)| {
            for c in 0..os.c {
                for oy in 0..os.h {
                    for ox in 0..os.w {
                        let (ys, xs) = g.window(oy, ox);
                        let cnt = ys.len() * xs.len();
                        let mut sum = 0.0f64;
                        for iy in ys {
                            for ix in xs.clone() {
                                sum += xi[(c * is.h + iy) * is.w + ix] as f64;
                            }
                        }
                        yi[(c * os.h + oy) * os.w + ox] = mean_on_grid(sum, cnt, round);
                    }
                }
            }
        });
}

/// `sum / cnt`, optionally rounded to the grid `step` (ties towards +inf).
#[inline]
pub fn mean_on_grid(sum: f64, cnt: usize, round: Option<f32>) -> f32 {
    let cnt = cnt.max(1) as f64;
    match round {
        None => (sum / cnt) as f32,
        Some(step) => {
            let s = sum / step as f64; // exact: the codes are integers
            ((2.0 * s + cnt) / (2.0 * cnt)).floor() as f32 * step
        }
    }
}

/// Gradient of average pooling (straight through any rounding).
pub fn avgpool_backward(g: &PoolGeom, dy: &[f32], dx: &mut [f32]) {
    let (is, os) = (g.input, g.output);
    dx.par_chunks_mut(is.numel())
        .zip(dy.par_chunks(os.numel()))
        .for_each(|(dxi, dyi)| {
            dxi.fill(0.0);
            for c in 0..os.c {
                for oy in 0..os.h {
                    for ox in 0..os.w {
                        let (ys, xs) = g.window(oy, ox);
                        let d =
                            dyi[(c * os.h + oy) * os.w + ox] / (ys.len() * xs.len()).max(1) as f32;
                        for iy in ys {
                            for ix in xs.clone() {
                                dxi[(c * is.h + iy) * is.w + ix] += d;
                            }
                        }
                    }
                }
            }
        });
}

/// Global average pooling: per image and channel, the mean of the plane.
pub fn gap_forward(x: &[f32], s: Shape, y: &mut [f32], round: Option<f32>) {
    let hw = s.h * s.w;
    for (o, plane) in y.iter_mut().zip(x.chunks_exact(hw)) {
        let sum: f64 = plane.iter().map(|&v| v as f64).sum();
        *o = mean_on_grid(sum, hw, round);
    }
}

/// Gradient of global average pooling.
pub fn gap_backward(dy: &[f32], s: Shape, dx: &mut [f32]) {
    let hw = s.h * s.w;
    for (&d, plane) in dy.iter().zip(dx.chunks_exact_mut(hw)) {
        plane.fill(d / hw as f32);
    }
}

/// Linear layer on a batch: `y[N x out] = x[N x in] * w^T + b`.
pub fn linear_forward(
    x: &[f32],
    n: usize,
    fin: usize,
    fout: usize,
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
) {
    gemm(Mat::rm(x, n, fin), Mat::rm_t(w, fin, fout), 0.0, y);
    if let Some(b) = b {
        for row in y.chunks_exact_mut(fout) {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
}

/// Linear gradients: `dw = dy^T x`, `db = sum dy`, `dx = dy w`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    dy: &[f32],
    n: usize,
    fin: usize,
    fout: usize,
    w: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    gemm(Mat::rm_t(dy, fout, n), Mat::rm(x, n, fin), 0.0, dw);
    if let Some(db) = db {
        db.fill(0.0);
        for row in dy.chunks_exact(fout) {
            for (a, &d) in db.iter_mut().zip(row) {
                *a += d;
            }
        }
    }
    if let Some(dx) = dx {
        gemm(Mat::rm(dy, n, fout), Mat::rm(w, fout, fin), 0.0, dx);
    }
}
