//! Integer GEMM kernels of the fast fixed-point engine.
//!
//! `C (m x n) = A (m x k) * B (k x n)`, all row-major, integer codes in, i32
//! out, with wrapping i32 arithmetic (products summed mod 2^32, which is what
//! a wrapping `psum_bits <= 32` accumulator needs). Every kernel gives
//! bit-identical results to the naive triple loop, for any shape.
//!
//! Structure (in the style of tract's `linalg`): [`driver`] holds the one
//! cache-blocked, multi-threaded loop nest; each kernel family only supplies
//! panel packing and a register-tile micro-kernel:
//! - [`Kernel::Portable`] (`portable.rs`): plain Rust, the reference;
//! - [`Kernel::Avx2`] (`avx2.rs`): `vpmaddwd` on i16-widened operands;
//! - [`Kernel::Avx512Vnni`] (`avx512vnni.rs`): `vpdpbusd` with the `a+128`
//!   trick, i8 only (its i16 path runs the AVX2 family, which every VNNI
//!   CPU has).
//!
//! [`gemm_i8`] / [`gemm_i16`] use the best kernel this CPU supports (detected
//! at run time, overridable with `FTNAS_GEMM_KERNEL=portable|avx2|avx512vnni`)
//! and spread big problems over rayon threads. [`gemm_i8_with`] /
//! [`gemm_i16_with`] pick the kernel and threading explicitly (tests,
//! benches). [`PackedA`] packs an A operand (conv weights) once for a
//! kernel; [`gemm_packed_i8`] / [`gemm_packed_i16`] multiply it by many B
//! operands without repacking (the fast engine packs each layer's weights
//! once per run instead of once per image group).

mod driver;
mod portable;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;

use std::sync::OnceLock;

use driver::AOperand::{Packed, Raw};

/// Environment variable overriding the default kernel.
pub const KERNEL_ENV: &str = "FTNAS_GEMM_KERNEL";

/// Problems with at least this many multiply-adds (`m*n*k`) use several
/// threads under [`Parallelism::Auto`]. Below it (~20 us on one core) the
/// fork/join cost is not worth it, and callers already parallelise over
/// images.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;

/// A GEMM kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust, runs everywhere; the reference.
    Portable,
    /// x86_64 AVX2, `vpmaddwd`.
    Avx2,
    /// x86_64 AVX-512 VNNI, `vpdpbusd` (i8; i16 runs the AVX2 family).
    Avx512Vnni,
}

impl Kernel {
    /// Every kernel, available or not, from slowest to fastest.
    pub const ALL: [Kernel; 3] = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512Vnni];

    /// Short name, as accepted by `FTNAS_GEMM_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a [`Kernel::name`].
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this CPU can run the kernel (run-time feature detection).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::is_available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => avx2::is_available() && avx512vnni::is_available(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => false,
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a GEMM call uses threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// Rayon threads when `m*n*k >= PARALLEL_MIN_MACS`, else one thread.
    Auto,
    /// Always the calling thread only.
    Sequential,
    /// Always spread over the current rayon pool.
    Parallel,
}

/// The kernels this CPU can run, slowest first.
pub fn kernels() -> Vec<Kernel> {
    Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
}

/// The fastest kernel this CPU can run.
pub fn best_kernel() -> Kernel {
    *kernels()
        .last()
        .expect("the portable kernel is always available")
}

/// The kernel [`gemm_i8`] and [`gemm_i16`] use: `FTNAS_GEMM_KERNEL` if set
/// to an available kernel, else [`best_kernel`]. Decided once per process.
pub fn default_kernel() -> Kernel {
    static DEFAULT: OnceLock<Kernel> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        let Ok(requested) = std::env::var(KERNEL_ENV) else {
            return best_kernel();
        };
        match Kernel::from_name(requested.trim()) {
            Some(kernel) if kernel.is_available() => kernel,
            found => {
                // A debugging override must not abort a long run; say why it
                // was ignored instead.
                let reason = if found.is_some() {
                    "is not supported by this CPU"
                } else {
                    "is not a kernel name (expected portable, avx2 or avx512vnni)"
                };
                let best = best_kernel();
                eprintln!("warning: {KERNEL_ENV}={requested:?} {reason}; using {best}");
                best
            }
        }
    })
}

/// C = A * B for i8 codes (row-major), wrapping i32 accumulation, with the
/// default kernel and automatic threading.
pub fn gemm_i8(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], c: &mut [i32]) {
    gemm_i8_with(default_kernel(), Parallelism::Auto, m, n, k, a, b, c);
}

/// C = A * B for i16 codes (row-major), wrapping i32 accumulation, with the
/// default kernel and automatic threading.
pub fn gemm_i16(m: usize, n: usize, k: usize, a: &[i16], b: &[i16], c: &mut [i32]) {
    gemm_i16_with(default_kernel(), Parallelism::Auto, m, n, k, a, b, c);
}

/// [`gemm_i8`] with an explicit kernel and threading.
///
/// # Panics
/// If `kernel` is not available on this CPU or a slice is shorter than its
/// shape says (`a: m*k`, `b: k*n`, `c: m*n`).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_with(
    kernel: Kernel,
    parallelism: Parallelism,
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    b: &[i8],
    c: &mut [i32],
) {
    let parallel = prepare(kernel, parallelism, m, n, k, a.len(), b.len(), c.len());
    // SAFETY (every arm): `prepare` checked the kernel is available.
    match kernel {
        Kernel::Portable => unsafe {
            driver::run::<i8, portable::Portable>(parallel, m, n, k, Raw(a), b, c)
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { driver::run::<i8, avx2::Avx2>(parallel, m, n, k, Raw(a), b, c) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => unsafe {
            driver::run::<i8, avx512vnni::Avx512Vnni>(parallel, m, n, k, Raw(a), b, c)
        },
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("checked by prepare"),
    }
}

/// [`gemm_i16`] with an explicit kernel and threading.
///
/// # Panics
/// As [`gemm_i8_with`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_i16_with(
    kernel: Kernel,
    parallelism: Parallelism,
    m: usize,
    n: usize,
    k: usize,
    a: &[i16],
    b: &[i16],
    c: &mut [i32],
) {
    let parallel = prepare(kernel, parallelism, m, n, k, a.len(), b.len(), c.len());
    // SAFETY (every arm): `prepare` checked the kernel is available, and
    // VNNI availability implies AVX2 (see `Kernel::is_available`).
    match kernel {
        Kernel::Portable => unsafe {
            driver::run::<i16, portable::Portable>(parallel, m, n, k, Raw(a), b, c)
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512Vnni => unsafe {
            driver::run::<i16, avx2::Avx2>(parallel, m, n, k, Raw(a), b, c)
        },
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("checked by prepare"),
    }
}

/// An A operand (`m x k`, row-major) packed once for one kernel, to be
/// multiplied by many B operands ([`gemm_packed_i8`], [`gemm_packed_i16`]).
pub struct PackedA {
    kernel: Kernel,
    m: usize,
    k: usize,
    data: PackedData,
}

/// Packed panels: the element type of the kernel family that packed them,
/// and whether the source codes were i8 or i16.
enum PackedData {
    I8AsI16(Vec<i16>),
    I8AsU8(Vec<u8>),
    I16(Vec<i16>),
}

impl PackedA {
    /// Packs i8 codes for `kernel`.
    ///
    /// # Panics
    /// If `kernel` is not available or `a` is shorter than `m*k`.
    pub fn new_i8(kernel: Kernel, m: usize, k: usize, a: &[i8]) -> PackedA {
        prepare(kernel, Parallelism::Sequential, m, 0, k, a.len(), 0, 0);
        // SAFETY (every arm): availability checked by `prepare`.
        let data = match kernel {
            Kernel::Portable => PackedData::I8AsI16(unsafe {
                driver::pack_a_all::<i8, portable::Portable>(m, k, a)
            }),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                PackedData::I8AsI16(unsafe { driver::pack_a_all::<i8, avx2::Avx2>(m, k, a) })
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => PackedData::I8AsU8(unsafe {
                driver::pack_a_all::<i8, avx512vnni::Avx512Vnni>(m, k, a)
            }),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("checked by prepare"),
        };
        PackedA { kernel, m, k, data }
    }

    /// Packs i16 codes for `kernel`.
    ///
    /// # Panics
    /// If `kernel` is not available or `a` is shorter than `m*k`.
    pub fn new_i16(kernel: Kernel, m: usize, k: usize, a: &[i16]) -> PackedA {
        prepare(kernel, Parallelism::Sequential, m, 0, k, a.len(), 0, 0);
        // SAFETY (every arm): availability checked by `prepare` (VNNI
        // implies AVX2).
        let data = PackedData::I16(match kernel {
            Kernel::Portable => unsafe { driver::pack_a_all::<i16, portable::Portable>(m, k, a) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Vnni => unsafe {
                driver::pack_a_all::<i16, avx2::Avx2>(m, k, a)
            },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("checked by prepare"),
        });
        PackedA { kernel, m, k, data }
    }

    /// The kernel the panels are packed for.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Rows of A.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Columns of A (the GEMM depth).
    pub fn k(&self) -> usize {
        self.k
    }
}

/// C (`m x n`) = A * B for a pre-packed i8 A and i8 B (`k x n`, row-major).
///
/// # Panics
/// If `a` was not packed from i8 codes, or `b` / `c` are too short.
pub fn gemm_packed_i8(parallelism: Parallelism, a: &PackedA, n: usize, b: &[i8], c: &mut [i32]) {
    let (m, k) = (a.m, a.k);
    let parallel = prepare(a.kernel, parallelism, m, n, k, m * k, b.len(), c.len());
    // SAFETY (every arm): the kernel was available when `a` was packed,
    // and the panels were packed by that kernel's family for this m, k.
    match &a.data {
        PackedData::I8AsI16(p) => match a.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe {
                driver::run::<i8, avx2::Avx2>(parallel, m, n, k, Packed(p), b, c)
            },
            _ => unsafe {
                driver::run::<i8, portable::Portable>(parallel, m, n, k, Packed(p), b, c)
            },
        },
        #[cfg(target_arch = "x86_64")]
        PackedData::I8AsU8(p) => unsafe {
            driver::run::<i8, avx512vnni::Avx512Vnni>(parallel, m, n, k, Packed(p), b, c)
        },
        #[cfg(not(target_arch = "x86_64"))]
        PackedData::I8AsU8(_) => unreachable!("only the VNNI family packs u8"),
        PackedData::I16(_) => panic!("gemm_packed_i8 needs an A packed from i8 codes"),
    }
}

/// C (`m x n`) = A * B for a pre-packed i16 A and i16 B (`k x n`, row-major).
///
/// # Panics
/// If `a` was not packed from i16 codes, or `b` / `c` are too short.
pub fn gemm_packed_i16(parallelism: Parallelism, a: &PackedA, n: usize, b: &[i16], c: &mut [i32]) {
    let (m, k) = (a.m, a.k);
    let parallel = prepare(a.kernel, parallelism, m, n, k, m * k, b.len(), c.len());
    let PackedData::I16(p) = &a.data else {
        panic!("gemm_packed_i16 needs an A packed from i16 codes");
    };
    // SAFETY (every arm): as in `gemm_packed_i8`.
    match a.kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512Vnni => unsafe {
            driver::run::<i16, avx2::Avx2>(parallel, m, n, k, Packed(p), b, c)
        },
        _ => unsafe { driver::run::<i16, portable::Portable>(parallel, m, n, k, Packed(p), b, c) },
    }
}

/// Checks kernel availability and slice lengths; returns whether to thread.
#[allow(clippy::too_many_arguments)]
fn prepare(
    kernel: Kernel,
    parallelism: Parallelism,
    m: usize,
    n: usize,
    k: usize,
    a_len: usize,
    b_len: usize,
    c_len: usize,
) -> bool {
    assert!(
        kernel.is_available(),
        "GEMM kernel {kernel} is not supported by this CPU"
    );
    assert!(a_len >= m * k, "A has {a_len} values, m*k = {m}*{k} needed");
    assert!(b_len >= k * n, "B has {b_len} values, k*n = {k}*{n} needed");
    assert!(c_len >= m * n, "C has {c_len} values, m*n = {m}*{n} needed");
    match parallelism {
        Parallelism::Sequential => false,
        Parallelism::Parallel => true,
        Parallelism::Auto => {
            m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS
                && rayon::current_num_threads() > 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_portable_is_always_available() {
        for kernel in Kernel::ALL {
            assert_eq!(Kernel::from_name(kernel.name()), Some(kernel));
        }
        assert_eq!(Kernel::from_name("sse9"), None);
        assert!(kernels().contains(&Kernel::Portable));
        assert!(kernels().iter().all(|k| k.is_available()));
        assert!(best_kernel().is_available());
    }

    #[test]
    fn default_gemm_matches_a_hand_computed_product() {
        // [1 2 3; 4 5 6] * [7 8; 9 10; 11 12] = [58 64; 139 154]
        let a = [1i8, 2, 3, 4, 5, 6];
        let b = [7i8, 8, 9, 10, 11, 12];
        let mut c = [0i32; 4];
        gemm_i8(2, 2, 3, &a, &b, &mut c);
        assert_eq!(c, [58, 64, 139, 154]);
        let a16 = a.map(|v| v as i16 * 1000);
        let b16 = b.map(i16::from);
        gemm_i16(2, 2, 3, &a16, &b16, &mut c);
        assert_eq!(c, [58_000, 64_000, 139_000, 154_000]);
    }

    #[test]
    fn zero_k_gives_zero_and_empty_shapes_are_no_ops() {
        for kernel in kernels() {
            let mut c = [7i32; 6];
            gemm_i8_with(kernel, Parallelism::Sequential, 2, 3, 0, &[], &[], &mut c);
            assert_eq!(c, [0; 6]);
            let mut c: [i32; 0] = [];
            gemm_i8_with(
                kernel,
                Parallelism::Sequential,
                0,
                3,
                4,
                &[],
                &[0; 12],
                &mut c,
            );
        }
    }

    #[test]
    #[should_panic(expected = "B has 5 values")]
    fn short_operand_panics_with_a_clear_message() {
        let mut c = [0i32; 4];
        gemm_i8(2, 2, 3, &[0; 6], &[0; 5], &mut c);
    }
}
