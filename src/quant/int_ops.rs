//! Integer kernels of the non-MAC ops and the in-order MAC reduction, as
//! defined in the [`crate::quant`] module doc. Every engine calls these for
//! the ops they cover, so there is one definition of each op's arithmetic.
//! All tensors are one image, CHW, codes as `i32`.

use crate::fixed::{max_code, min_code, requantize, round_shift, saturate, Datapath, Format};
use crate::model::Shape;

use super::{ChannelAffine, MacLayer, PoolGeom};

/// The code of 6.0 in `format` (ReLU6's upper clamp), saturated.
#[inline]
pub fn six_code(format: Format) -> i32 {
    saturate(round_shift(6, -format.frac), format.bits) as i32
}

/// `s / n` rounded to nearest, ties towards +inf (`n > 0`).
#[inline]
pub fn round_div(s: i64, n: i64) -> i64 {
    (2 * s + n).div_euclid(2 * n)
}

/// Row `e` of group `g`'s im2col operand of a conv/linear: the `K = C/g *
/// kh * kw` input codes output pixel `e = oy * out_w + ox` multiplies, in
/// reduction order `(c, kh, kw)`, padded taps code 0 (what a GEMM-based
/// datapath streams). `row` has length `K`.
pub fn im2col_row(layer: &MacLayer, input: &[i32], g: usize, e: usize, row: &mut [i32]) {
    let s = layer.in_shape;
    let o = layer.out_shape;
    let (oy, ox) = (e / o.w, e % o.w);
    let cin_g = layer.cin_per_group();
    let (kh, kw) = layer.kernel;
    row.fill(0);
    for ci in 0..cin_g {
        let c = g * cin_g + ci;
        for ky in 0..kh {
            let iy =
                (oy * layer.stride.0 + ky * layer.dilation.0) as isize - layer.padding.0 as isize;
            if iy < 0 || iy >= s.h as isize {
                continue;
            }
            for kx in 0..kw {
                let ix = (ox * layer.stride.1 + kx * layer.dilation.1) as isize
                    - layer.padding.1 as isize;
                if ix < 0 || ix >= s.w as isize {
                    continue;
                }
                row[(ci * kh + ky) * kw + kx] = input[(c * s.h + iy as usize) * s.w + ix as usize];
            }
        }
    }
}

/// Entry `k` of [`im2col_row`]'s row `e` of group `g` alone (for callers
/// that read a few entries of a row: building the whole row would cost
/// `K` writes for them).
#[inline]
pub fn im2col_at(layer: &MacLayer, input: &[i32], g: usize, e: usize, k: usize) -> i32 {
    let s = layer.in_shape;
    let o = layer.out_shape;
    let (oy, ox) = (e / o.w, e % o.w);
    let (kh, kw) = layer.kernel;
    let (ci, tap) = (k / (kh * kw), k % (kh * kw));
    let (ky, kx) = (tap / kw, tap % kw);
    let iy = (oy * layer.stride.0 + ky * layer.dilation.0) as isize - layer.padding.0 as isize;
    let ix = (ox * layer.stride.1 + kx * layer.dilation.1) as isize - layer.padding.1 as isize;
    if iy < 0 || iy >= s.h as isize || ix < 0 || ix >= s.w as isize {
        return 0;
    }
    let c = g * layer.cin_per_group() + ci;
    input[(c * s.h + iy as usize) * s.w + ix as usize]
}

/// One output of a conv/linear, before requantization: the reduction over
/// `(c, kh, kw)` with the accumulator rule after every addition, then the
/// bias with the same rule. `weights` are the layer's codes (possibly a
/// corrupted copy).
#[inline]
pub fn mac_output_in_order(
    layer: &MacLayer,
    weights: &[i32],
    input: &[i32],
    dp: &Datapath,
    oc: usize,
    oy: usize,
    ox: usize,
) -> i64 {
    let s = layer.in_shape;
    let cin_g = layer.cin_per_group();
    let grp = oc / layer.cout_per_group();
    let (kh, kw) = layer.kernel;
    let mut acc = 0i64;
    for ci in 0..cin_g {
        let c = grp * cin_g + ci;
        for ky in 0..kh {
            let iy =
                (oy * layer.stride.0 + ky * layer.dilation.0) as isize - layer.padding.0 as isize;
            if iy < 0 || iy >= s.h as isize {
                continue;
            }
            for kx in 0..kw {
                let ix = (ox * layer.stride.1 + kx * layer.dilation.1) as isize
                    - layer.padding.1 as isize;
                if ix < 0 || ix >= s.w as isize {
                    continue;
                }
                let x = input[(c * s.h + iy as usize) * s.w + ix as usize] as i64;
                let w = weights[((oc * cin_g + ci) * kh + ky) * kw + kx] as i64;
                acc = dp.acc_limit(acc + x * w);
            }
        }
    }
    dp.acc_limit(acc + layer.bias[oc] as i64)
}

/// Standalone batch norm (per-channel affine).
pub fn affine(
    a: &ChannelAffine,
    input: &[i32],
    shape: Shape,
    dp: &Datapath,
    out_format: Format,
    out: &mut [i32],
) {
    let hw = shape.h * shape.w;
    for c in 0..shape.c {
        let (sc, sh) = (a.scale[c] as i64, a.shift[c] as i64);
        for i in c * hw..(c + 1) * hw {
            let acc = dp.acc_limit(input[i] as i64 * sc);
            let acc = dp.acc_limit(acc + sh);
            out[i] = requantize(acc, a.acc_frac, out_format.frac, out_format.bits) as i32;
        }
    }
}

/// Max or average pooling over the valid window positions.
pub fn pool(input: &[i32], s: Shape, o: Shape, g: &PoolGeom, max: bool, out: &mut [i32]) {
    for c in 0..o.c {
        for oy in 0..o.h {
            let y0 = (oy * g.stride.0) as isize - g.padding.0 as isize;
            let ys = y0.max(0) as usize..((y0 + g.kernel.0 as isize).min(s.h as isize)) as usize;
            for ox in 0..o.w {
                let x0 = (ox * g.stride.1) as isize - g.padding.1 as isize;
                let xs =
                    x0.max(0) as usize..((x0 + g.kernel.1 as isize).min(s.w as isize)) as usize;
                let mut best = i32::MIN;
                let mut sum = 0i64;
                for iy in ys.clone() {
                    for ix in xs.clone() {
                        let v = input[(c * s.h + iy) * s.w + ix];
                        best = best.max(v);
                        sum += v as i64;
                    }
                }
                let n = (ys.len() * xs.len()) as i64;
                out[(c * o.h + oy) * o.w + ox] = if max {
                    best
                } else {
                    round_div(sum, n.max(1)) as i32
                };
            }
        }
    }
}

/// Global average pooling: per channel, the rounded mean of its codes.
pub fn global_avg_pool(input: &[i32], s: Shape, out: &mut [i32]) {
    let hw = s.h * s.w;
    for c in 0..s.c {
        let sum: i64 = input[c * hw..(c + 1) * hw].iter().map(|&v| v as i64).sum();
        out[c] = round_div(sum, hw as i64) as i32;
    }
}

/// Element-wise add: rescale every input to `out_format`, sum, saturate.
pub fn add(inputs: &[(&[i32], Format)], out_format: Format, out: &mut [i32]) {
    if let [(a, fa), (b, fb)] = inputs {
        // the common two-input case (residual connections): one branch-free loop
        let ra = Rescale::new(fa.frac - out_format.frac);
        let rb = Rescale::new(fb.frac - out_format.frac);
        let (lo, hi) = (min_code(out_format.bits), max_code(out_format.bits));
        for ((o, &x), &y) in out.iter_mut().zip(a.iter()).zip(b.iter()) {
            *o = (ra.apply(x) + rb.apply(y)).clamp(lo, hi) as i32;
        }
        return;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let s: i64 = inputs
            .iter()
            .map(|(x, f)| round_shift(x[i] as i64, f.frac - out_format.frac))
            .sum();
        *o = saturate(s, out_format.bits) as i32;
    }
}

/// `round_shift(x, shift)` with the sign test hoisted: `((x << l) + half) >> r`
/// where exactly one of `l`, `r` is non-zero (or both zero).
#[derive(Clone, Copy)]
struct Rescale {
    l: u32,
    r: u32,
    half: i64,
}

impl Rescale {
    fn new(shift: i32) -> Rescale {
        let l = (-shift).clamp(0, 62) as u32;
        let r = shift.clamp(0, 62) as u32;
        let half = if r > 0 { 1i64 << (r - 1) } else { 0 };
        Rescale { l, r, half }
    }
    #[inline(always)]
    fn apply(&self, x: i32) -> i64 {
        (((x as i64) << self.l) + self.half) >> self.r
    }
}

/// Channel concatenation, each input requantized to `out_format`.
pub fn concat(inputs: &[(&[i32], Format)], out_format: Format, out: &mut [i32]) {
    let mut at = 0;
    for (x, f) in inputs {
        for (o, &v) in out[at..at + x.len()].iter_mut().zip(x.iter()) {
            *o = requantize(v as i64, f.frac, out_format.frac, out_format.bits) as i32;
        }
        at += x.len();
    }
}

/// Drop the first `top` rows and `left` columns.
pub fn crop(input: &[i32], s: Shape, o: Shape, top: usize, left: usize, out: &mut [i32]) {
    for c in 0..o.c {
        for y in 0..o.h {
            let src = (c * s.h + y + top) * s.w + left;
            let dst = (c * o.h + y) * o.w;
            out[dst..dst + o.w].copy_from_slice(&input[src..src + o.w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `im2col_at` is `im2col_row`'s entry, for every pixel and index of
    /// layers with padding, stride, dilation and groups.
    #[test]
    fn im2col_entries_are_the_rows() {
        for (c, h, w, kernel, stride, padding, dilation, groups) in [
            (3, 5, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1),
            (4, 7, 5, (3, 2), (2, 1), (2, 0), (1, 2), 2),
            (6, 4, 4, (1, 1), (1, 1), (0, 0), (1, 1), 3),
            (2, 9, 9, (5, 5), (2, 2), (2, 2), (2, 2), 1),
        ] {
            let in_shape = Shape::new(c, h, w);
            let oh = (h + 2 * padding.0 - dilation.0 * (kernel.0 - 1) - 1) / stride.0 + 1;
            let ow = (w + 2 * padding.1 - dilation.1 * (kernel.1 - 1) - 1) / stride.1 + 1;
            let f = Format { bits: 8, frac: 0 };
            let layer = MacLayer {
                node: 0,
                name: "l".into(),
                is_conv: true,
                in_shape,
                out_shape: Shape::new(groups, oh, ow),
                kernel,
                stride,
                padding,
                dilation,
                groups,
                weights: vec![],
                weight_format: f,
                bias: vec![],
                in_format: f,
                acc_frac: 0,
                out_format: f,
                activation: crate::quant::Activation::None,
            };
            let input: Vec<i32> = (0..in_shape.numel() as i32).map(|i| i + 1).collect();
            let k_len = layer.macs_per_output();
            let mut row = vec![0; k_len];
            for g in 0..groups {
                for e in 0..oh * ow {
                    im2col_row(&layer, &input, g, e, &mut row);
                    for (k, &v) in row.iter().enumerate() {
                        assert_eq!(im2col_at(&layer, &input, g, e, k), v, "g {g} e {e} k {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_division_ties_up() {
        assert_eq!(round_div(3, 2), 2);
        assert_eq!(round_div(-3, 2), -1);
        assert_eq!(round_div(4, 3), 1);
        assert_eq!(round_div(5, 3), 2);
        assert_eq!(round_div(-5, 3), -2);
        assert_eq!(round_div(-4, 3), -1);
        assert_eq!(round_div(7, 1), 7);
    }

    #[test]
    fn rescale_is_round_shift() {
        for shift in -70..70 {
            let r = Rescale::new(shift);
            for x in [-32768, -129, -3, -1, 0, 1, 2, 3, 5, 127, 32767] {
                assert_eq!(r.apply(x), round_shift(x as i64, shift), "{x} >> {shift}");
            }
        }
    }

    #[test]
    fn six_in_formats() {
        assert_eq!(six_code(Format { bits: 8, frac: 4 }), 96);
        assert_eq!(six_code(Format { bits: 8, frac: 5 }), 127);
        assert_eq!(six_code(Format { bits: 8, frac: -1 }), 3);
        assert_eq!(six_code(Format { bits: 8, frac: -2 }), 2); // 1.5 -> 2
    }

    #[test]
    fn add_rescales_then_saturates() {
        let a = [10, -3];
        let b = [1, 100];
        let fa = Format { bits: 8, frac: 2 };
        let fb = Format { bits: 8, frac: 0 };
        let fo = Format { bits: 8, frac: 1 };
        let mut out = [0; 2];
        add(&[(&a, fa), (&b, fb)], fo, &mut out);
        // 10 @2 -> 5 @1; 1 @0 -> 2 @1 => 7.  -3 @2 -> round(-1.5) = -1; 100 -> 200 => 199 -> 127.
        assert_eq!(out, [7, 127]);
        // three inputs take the general path
        let c = [-4, -4];
        add(&[(&a, fa), (&b, fb), (&c, fb)], fo, &mut out);
        assert_eq!(out, [-1, 127]);
    }

    #[test]
    fn avg_pool_counts_valid_positions_only() {
        let s = Shape::new(1, 2, 2);
        let g = PoolGeom {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
        };
        let mut out = [0; 4];
        pool(&[1, 2, 3, 5], s, s, &g, false, &mut out);
        // every window covers all four codes: 11/4 = 2.75 -> 3
        assert_eq!(out, [3; 4]);
        pool(&[-1, -2, -3, -5], s, s, &g, true, &mut out);
        assert_eq!(out, [-1; 4]);
    }
}
