//! Integer GEMM kernels (owned by the GEMM work).
//! INTERFACE FIXED BY THE SKELETON:
//! `gemm_i8(m, n, k, a, b, c)`: `c[m x n] = a[m x k] * b[k x n]`, all
//! row-major, i8 codes, exact i32 results with wrapping i32 arithmetic.
//! `gemm_i16(...)`: the same for i16 codes (wrapping i32).

/// C = A * B for i8 codes (row-major), wrapping i32 accumulation.
pub fn gemm_i8(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], c: &mut [i32]) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i32;
            for p in 0..k {
                s = s.wrapping_add(a[i * k + p] as i32 * b[p * n + j] as i32);
            }
            c[i * n + j] = s;
        }
    }
}

/// C = A * B for i16 codes (row-major), wrapping i32 accumulation.
pub fn gemm_i16(m: usize, n: usize, k: usize, a: &[i16], b: &[i16], c: &mut [i32]) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i32;
            for p in 0..k {
                s = s.wrapping_add((a[i * k + p] as i32).wrapping_mul(b[p * n + j] as i32));
            }
            c[i * n + j] = s;
        }
    }
}
