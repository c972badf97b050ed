//! Safe wrapper over `matrixmultiply::sgemm` (f32, runtime AVX2/FMA
//! dispatch). Matrices are described by a slice plus row and column strides,
//! so transposed operands cost nothing: `At` of a row-major `k x m` matrix is
//! `rs = 1, cs = m`.

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `rows x cols`.
    pub fn rm(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major `cols x rows` matrix, seen as `rows x cols`.
    pub fn rm_t(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }
    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "gemm operand {what}: {}x{} view needs {} values, slice has {}",
                self.rows,
                self.cols,
                last + 1,
                self.data.len()
            );
        }
    }
}

/// `C = beta * C + A * B` with `C` row-major `m x n` (row stride `n`).
pub fn gemm(a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(c.len() >= m * n, "gemm: output too small");
    a.check("A");
    b.check("B");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for v in &mut c[..m * n] {
            *v *= beta;
        }
        return;
    }
    // SAFETY: the views were bounds-checked above; C has m*n values.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_views_multiply() {
        // A = [[1,2,3],[4,5,6]] (2x3), B = A^T (3x2) from the same storage
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut c = [1.0f32; 4];
        gemm(Mat::rm(&a, 2, 3), Mat::rm_t(&a, 3, 2), 0.0, &mut c);
        assert_eq!(c, [14.0, 32.0, 32.0, 77.0]);
        gemm(Mat::rm(&a, 2, 3), Mat::rm_t(&a, 3, 2), 1.0, &mut c);
        assert_eq!(c, [28.0, 64.0, 64.0, 154.0]);
    }
}
