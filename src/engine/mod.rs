//! Fixed-point inference engines (owned by the engine work).

pub mod gemm;
