//! Depthwise convolution kernels: one input plane, one filter, one output
//! plane, wrapping i32 sums (the raw sums of a `groups == channels` conv
//! before bias and requantization).
//!
//! Layout trick shared by every kernel: the zero-padded input plane is split
//! into `stride_h * stride_w` phase planes (`phase (py, px)` holds padded
//! pixels `(r * sh + py, c * sw + px)`), each stored flat with a common row
//! width `wq`. Tap `(ky, kx)` of output `(oy, ox)` then reads phase
//! `((ky*dh) % sh, (kx*dw) % sw)` at flat index
//! `(oy + ky*dh / sh) * wq + ox + kx*dw / sw`, so for every tap the whole
//! output plane (computed on the `oh x wq` grid, the extra columns thrown
//! away) is ONE contiguous multiply-add over `oh * wq` values. That makes
//! any stride and dilation a long, branch-free vector loop; only the
//! per-tap source offsets differ.
//!
//! The inner loop ([`TapKernel`]) accumulates all taps of a block of outputs
//! in registers: [`Kernel::Portable`] is plain Rust (the reference),
//! [`Kernel::Avx2`] uses `vpmulld`/`vpaddd` on 8 lanes (VNNI CPUs run it
//! too). Wrapping products and sums are exact mod 2^32, so every kernel is
//! bit-identical to the naive loop; `tests/gemm_battery.rs` checks all of
//! them.

use super::gemm::Kernel;

/// Geometry of one depthwise plane (see [`depthwise_plane_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl PlaneGeometry {
    /// The geometry of a conv with these parameters on an `in_h x in_w`
    /// plane; `None` if the kernel does not fit the padded input or a
    /// stride/dilation is zero.
    pub fn new(
        (in_h, in_w): (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
    ) -> Option<PlaneGeometry> {
        let out = |i: usize, k: usize, s: usize, p: usize, d: usize| -> Option<usize> {
            let span = d.checked_mul(k.checked_sub(1)?)? + 1;
            let padded = i + 2 * p;
            if s == 0 || d == 0 || padded < span {
                return None;
            }
            Some((padded - span) / s + 1)
        };
        Some(PlaneGeometry {
            in_h,
            in_w,
            out_h: out(in_h, kernel.0, stride.0, padding.0, dilation.0)?,
            out_w: out(in_w, kernel.1, stride.1, padding.1, dilation.1)?,
            kernel,
            stride,
            padding,
            dilation,
        })
    }

    /// Row width of every phase plane.
    fn phase_w(&self) -> usize {
        (self.in_w + 2 * self.padding.1).div_ceil(self.stride.1)
    }

    /// Rows of every phase plane, including the zero rows that the tap
    /// offsets of the last output rows may run into.
    fn phase_h(&self) -> usize {
        let (kh, _) = self.kernel;
        (self.in_h + 2 * self.padding.0).div_ceil(self.stride.0)
            + (kh.saturating_sub(1) * self.dilation.0) / self.stride.0
            + 1
    }

    /// Values per phase plane (one extra row so the column offsets of the
    /// last row's wide grid stay inside the plane).
    fn phase_len(&self) -> usize {
        (self.phase_h() + 1) * self.phase_w()
    }
}

/// Reusable buffers of [`depthwise_plane_with`] (phase planes and the wide
/// output grid); sized on first use, no allocation afterwards.
#[derive(Default)]
pub struct DepthwiseScratch {
    phases: Vec<i32>,
    /// The geometry `phases` was laid out for: its padding is still zero,
    /// and every plane of that geometry overwrites the same interior.
    phases_geom: Option<PlaneGeometry>,
    wide: Vec<i32>,
    taps: Vec<(usize, i32)>,
}

/// The multiply-accumulate inner loop over all taps.
trait TapKernel {
    /// `out[j] = sum_t w_t * src[off_t + j]` (wrapping) for `j < out.len()`.
    ///
    /// # Safety
    /// The kernel's CPU features are available; `off_t + out.len() <=
    /// src.len()` for every tap (checked by the caller).
    unsafe fn taps(out: &mut [i32], src: &[i32], taps: &[(usize, i32)]);
}

struct Portable;

impl TapKernel for Portable {
    unsafe fn taps(out: &mut [i32], src: &[i32], taps: &[(usize, i32)]) {
        // Blocks of 8 accumulators kept across taps (the shape of the
        // vector kernel), then the tail.
        const B: usize = 8;
        let full = out.len() / B * B;
        for (blk, o) in out[..full].chunks_exact_mut(B).enumerate() {
            let mut acc = [0i32; B];
            for &(off, w) in taps {
                let s = &src[off + blk * B..off + blk * B + B];
                for (a, &x) in acc.iter_mut().zip(s) {
                    *a = a.wrapping_add(x.wrapping_mul(w));
                }
            }
            o.copy_from_slice(&acc);
        }
        for (j, o) in out.iter_mut().enumerate().skip(full) {
            *o = taps.iter().fold(0i32, |a, &(off, w)| {
                a.wrapping_add(src[off + j].wrapping_mul(w))
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl TapKernel for Avx2 {
    unsafe fn taps(out: &mut [i32], src: &[i32], taps: &[(usize, i32)]) {
        // SAFETY: forwarded from the trait contract.
        unsafe { taps_avx2(out, src, taps) }
    }
}

/// 16 outputs (two ymm accumulators) per block across all taps, then 8,
/// then a scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn taps_avx2(out: &mut [i32], src: &[i32], taps: &[(usize, i32)]) {
    use std::arch::x86_64::*;
    let n = out.len();
    let s = src.as_ptr();
    let o = out.as_mut_ptr();
    let mut j = 0;
    // SAFETY (whole loop): every load reads src[off + j .. off + j + 16 or 8]
    // with j + 16 (or 8) <= n and off + n <= src.len() (caller's contract);
    // stores write out[j .. j + 16 or 8] inside out.
    unsafe {
        while j + 16 <= n {
            let mut a0 = _mm256_setzero_si256();
            let mut a1 = _mm256_setzero_si256();
            for &(off, w) in taps {
                let wv = _mm256_set1_epi32(w);
                let p = s.add(off + j);
                a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(wv, _mm256_loadu_si256(p.cast())));
                a1 = _mm256_add_epi32(
                    a1,
                    _mm256_mullo_epi32(wv, _mm256_loadu_si256(p.add(8).cast())),
                );
            }
            _mm256_storeu_si256(o.add(j).cast(), a0);
            _mm256_storeu_si256(o.add(j + 8).cast(), a1);
            j += 16;
        }
        if j + 8 <= n {
            let mut a0 = _mm256_setzero_si256();
            for &(off, w) in taps {
                let v = _mm256_loadu_si256(s.add(off + j).cast());
                a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_set1_epi32(w), v));
            }
            _mm256_storeu_si256(o.add(j).cast(), a0);
            j += 8;
        }
    }
    for (jj, ov) in out.iter_mut().enumerate().skip(j) {
        *ov = taps.iter().fold(0i32, |a, &(off, w)| {
            a.wrapping_add(src[off + jj].wrapping_mul(w))
        });
    }
}

/// Raw wrapping sums of one depthwise plane with the default kernel
/// ([`super::gemm::default_kernel`]).
pub fn depthwise_plane(
    geom: &PlaneGeometry,
    input: &[i32],
    weights: &[i32],
    out: &mut [i32],
    scratch: &mut DepthwiseScratch,
) {
    depthwise_plane_with(
        super::gemm::default_kernel(),
        geom,
        input,
        weights,
        out,
        scratch,
    );
}

/// Raw wrapping sums of one depthwise plane: `out[oy*out_w + ox] = sum over
/// (ky, kx) of weights[ky*kw + kx] * input[iy*in_w + ix]` (zero padding),
/// `iy = oy*sh + ky*dh - ph`, `ix = ox*sw + kx*dw - pw`, wrapping i32.
/// `Kernel::Avx512Vnni` runs the AVX2 kernel.
///
/// # Panics
/// If `kernel` is not available, or a slice is shorter than `geom` says
/// (`input: in_h*in_w`, `weights: kh*kw`, `out: out_h*out_w`).
pub fn depthwise_plane_with(
    kernel: Kernel,
    geom: &PlaneGeometry,
    input: &[i32],
    weights: &[i32],
    out: &mut [i32],
    scratch: &mut DepthwiseScratch,
) {
    assert!(
        kernel.is_available(),
        "kernel {kernel} is not supported by this CPU"
    );
    let g = geom;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (dh, dw) = g.dilation;
    assert!(input.len() >= g.in_h * g.in_w, "depthwise input too short");
    assert!(weights.len() >= kh * kw, "depthwise weights too short");
    assert!(out.len() >= g.out_h * g.out_w, "depthwise output too short");
    let (wq, plane) = (g.phase_w(), g.phase_len());
    if scratch.phases_geom != Some(*g) {
        scratch.phases.clear();
        scratch.phases.resize(g.stride.0 * g.stride.1 * plane, 0);
        scratch.phases_geom = Some(*g);
    }
    fill_phases(g, input, &mut scratch.phases);
    scratch.taps.clear();
    for ky in 0..kh {
        for kx in 0..kw {
            let (ry, rx) = (ky * dh, kx * dw);
            let phase = (ry % sh) * sw + rx % sw;
            let off = phase * plane + (ry / sh) * wq + rx / sw;
            scratch.taps.push((off, weights[ky * kw + kx]));
        }
    }
    let wide_len = g.out_h * wq;
    if scratch.wide.len() < wide_len {
        scratch.wide.resize(wide_len, 0);
    }
    let wide = &mut scratch.wide[..wide_len];
    let src = &scratch.phases[..];
    // every tap's run of wide_len values stays inside its phase plane
    // (phase_h has the rows the offsets reach, plus one spare row)
    let max_off = scratch.taps.iter().map(|t| t.0).max().unwrap_or(0);
    assert!(max_off + wide_len <= src.len());
    // SAFETY: availability asserted above; bounds asserted just above.
    unsafe {
        match kernel {
            Kernel::Portable => Portable::taps(wide, src, &scratch.taps),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Vnni => Avx2::taps(wide, src, &scratch.taps),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("checked above"),
        }
    }
    for (o, w) in out[..g.out_h * g.out_w]
        .chunks_exact_mut(g.out_w.max(1))
        .zip(wide.chunks_exact(wq))
    {
        o.copy_from_slice(&w[..g.out_w]);
    }
}

/// Writes the input into the interior of the `sh * sw` flat phase planes
/// in `phases` (see the module docs); the padding around it is already
/// zero.
fn fill_phases(g: &PlaneGeometry, input: &[i32], phases: &mut [i32]) {
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (wq, plane) = (g.phase_w(), g.phase_len());
    for (iy, row) in input[..g.in_h * g.in_w]
        .chunks_exact(g.in_w.max(1))
        .enumerate()
    {
        let r = iy + ph;
        let (py, qr) = (r % sh, r / sh);
        if sw == 1 {
            let base = py * plane + qr * wq + pw;
            phases[base..base + g.in_w].copy_from_slice(row);
            continue;
        }
        // column phase px takes every sw-th input column, starting at the
        // first ix with (ix + pw) % sw == px, into consecutive columns
        for px in 0..sw {
            let first = (px + sw - pw % sw) % sw;
            if first >= g.in_w {
                continue;
            }
            let base = (py * sw + px) * plane + qr * wq + (first + pw) / sw;
            let dst = &mut phases[base..];
            for (d, &v) in dst.iter_mut().zip(row[first..].iter().step_by(sw)) {
                *d = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_by_three_same_padding_by_hand() {
        // 3x3 input 1..9, all-ones 3x3 filter, padding 1: each output is the
        // sum of its neighbourhood.
        let g = PlaneGeometry::new((3, 3), (3, 3), (1, 1), (1, 1), (1, 1)).unwrap();
        let input: Vec<i32> = (1..=9).collect();
        let mut out = vec![0; 9];
        let mut scratch = DepthwiseScratch::default();
        for kernel in super::super::gemm::kernels() {
            depthwise_plane_with(kernel, &g, &input, &[1; 9], &mut out, &mut scratch);
            assert_eq!(out, [12, 21, 16, 27, 45, 33, 24, 39, 28], "{kernel}");
        }
    }

    #[test]
    fn geometry_rejects_kernels_that_do_not_fit() {
        assert!(PlaneGeometry::new((2, 2), (3, 3), (1, 1), (0, 0), (1, 1)).is_none());
        assert!(PlaneGeometry::new((4, 4), (3, 3), (0, 1), (0, 0), (1, 1)).is_none());
        let g = PlaneGeometry::new((7, 7), (3, 3), (2, 2), (1, 1), (1, 1)).unwrap();
        assert_eq!((g.out_h, g.out_w), (4, 4));
    }
}
