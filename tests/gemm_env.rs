//! `FTNAS_GEMM_KERNEL` overrides the default kernel (own process: the
//! choice is made once per process).

use ftnas::engine::gemm::{default_kernel, gemm_i8, Kernel, KERNEL_ENV};

#[test]
fn env_var_selects_the_portable_kernel() {
    // Set before the first GEMM call of this process; this file holds one
    // test so no other thread reads the environment concurrently.
    std::env::set_var(KERNEL_ENV, "portable");
    assert_eq!(default_kernel(), Kernel::Portable);
    let mut c = [0; 1];
    gemm_i8(1, 1, 2, &[3, -4], &[5, 6], &mut c);
    assert_eq!(c, [-9]);
}
