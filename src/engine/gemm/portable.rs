//! The portable kernel family: plain Rust, no intrinsics, runs everywhere.
//!
//! Operands are packed as i16 (both i8 and i16 codes fit) so the
//! micro-kernel is a fixed-size `MR x NR` block of widening i16 x i16 -> i32
//! multiply-adds over contiguous slices, which LLVM turns into whatever
//! vector instructions the build target has (narrow lanes vectorise better
//! than i32 x i32 multiplies on baseline x86_64). The product of two i16
//! always fits in i32; only the sums wrap. It is the reference the arch-specific families are checked
//! against (besides the naive triple loop of the tests).

use super::driver::{Code, Family};

/// Marker type of the portable family.
pub(crate) struct Portable;

const MR: usize = 4;
const NR: usize = 16;

impl<T: Code> Family<T> for Portable {
    const MR: usize = MR;
    const NR: usize = NR;
    const KG: usize = 1;
    const KC: usize = 256;
    const MC: usize = 64;
    const NC: usize = 256;
    type Elem = i16;

    unsafe fn pack_a(a: &[T], lda: usize, rows: usize, k0: usize, k1: usize, out: &mut [i16]) {
        for (p, group) in (k0..k1).zip(out.chunks_exact_mut(MR)) {
            for (r, slot) in group.iter_mut().enumerate() {
                *slot = if r < rows { a[r * lda + p].to_i16() } else { 0 };
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
        init.fill(0);
        for (p, group) in (k0..k1).zip(out.chunks_exact_mut(NR)) {
            let row = &b[p * ldb + j0..p * ldb + j0 + cols];
            for (slot, &v) in group.iter_mut().zip(row) {
                *slot = v.to_i16();
            }
            group[cols..].fill(0);
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
        let a = &a[..groups * MR];
        let b = &b[..groups * NR];
        for (a_col, b_row) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for (acc_row, &av) in acc.iter_mut().zip(a_col) {
                for (s, &bv) in acc_row.iter_mut().zip(b_row) {
                    *s = s.wrapping_add(av as i32 * bv as i32);
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
