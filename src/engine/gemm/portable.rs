//! The portable kernel family: plain Rust, no intrinsics, runs everywhere.
//!
//! Operands are packed as i16 (both i8 and i16 codes fit) in k-pairs, so
//! the micro-kernel is a fixed-size `MR x NR` block of
//! `a0*b0 + a1*b1` multiply-adds over contiguous slices: the shape of
//! `pmaddwd`, which LLVM partly recognises even on baseline x86_64, and plain
//! widening multiplies elsewhere. The two i16 x i16 products each fit in
//! i32; only their sum and the accumulation wrap. It is the reference the
//! arch-specific families are checked against (besides the naive triple
//! loop of the tests).

use super::driver::{Code, Family};

/// Marker type of the portable family.
pub(crate) struct Portable;

const MR: usize = 4;
const NR: usize = 16;

impl<T: Code> Family<T> for Portable {
    const MR: usize = MR;
    const NR: usize = NR;
    const KG: usize = 2;
    const KC: usize = 256;
    const MC: usize = 64;
    const NC: usize = 256;
    type Elem = i16;

    unsafe fn pack_a(a: &[T], lda: usize, rows: usize, k0: usize, k1: usize, out: &mut [i16]) {
        // Per k-pair: for each row, `a[r][p], a[r][p+1]`.
        for (g, group) in out.chunks_exact_mut(2 * MR).enumerate() {
            let p = k0 + 2 * g;
            for r in 0..MR {
                for q in 0..2 {
                    group[2 * r + q] = if r < rows && p + q < k1 {
                        a[r * lda + p + q].to_i16()
                    } else {
                        0
                    };
                }
            }
        }
    }

    unsafe fn pack_b(
        b: &[T],
        ldb: usize,
        j0: usize,
        cols: usize,
        k0: usize,
        k1: usize,
        out: &mut [i16],
        init: &mut [i32],
    ) {
        // Per k-pair: for each column, `b[p][j], b[p+1][j]`.
        init.fill(0);
        for (g, group) in out.chunks_exact_mut(2 * NR).enumerate() {
            let p = k0 + 2 * g;
            for q in 0..2 {
                if p + q < k1 {
                    let row = &b[(p + q) * ldb + j0..(p + q) * ldb + j0 + cols];
                    for (j, &v) in row.iter().enumerate() {
                        group[2 * j + q] = v.to_i16();
                    }
                    for j in cols..NR {
                        group[2 * j + q] = 0;
                    }
                } else {
                    for j in 0..NR {
                        group[2 * j + q] = 0;
                    }
                }
            }
        }
    }

    unsafe fn kernel(
        groups: usize,
        a: &[i16],
        b: &[i16],
        init: &[i32],
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[0i32; NR]; MR];
        for row in acc.iter_mut() {
            row.copy_from_slice(&init[..NR]);
        }
        let a = &a[..groups * 2 * MR];
        let b = &b[..groups * 2 * NR];
        for (a_pairs, b_pairs) in a.chunks_exact(2 * MR).zip(b.chunks_exact(2 * NR)) {
            for (acc_row, a_pair) in acc.iter_mut().zip(a_pairs.chunks_exact(2)) {
                let (a0, a1) = (a_pair[0] as i32, a_pair[1] as i32);
                for (s, b_pair) in acc_row.iter_mut().zip(b_pairs.chunks_exact(2)) {
                    // Two i16 products each fit in i32; only their sum and
                    // the accumulation can wrap (the shape of `pmaddwd`).
                    let pair = (a0 * b_pair[0] as i32).wrapping_add(a1 * b_pair[1] as i32);
                    *s = s.wrapping_add(pair);
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            // SAFETY: the caller guarantees MR rows of NR values at stride ldc.
            let c_row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) };
            for (cv, &s) in c_row.iter_mut().zip(acc_row) {
                *cv = if accumulate { cv.wrapping_add(s) } else { s };
            }
        }
    }
}
