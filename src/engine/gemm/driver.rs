//! The cache-blocked GEMM driver shared by every kernel family.
//!
//! A kernel family only knows how to pack a small panel of A (MR rows) and of
//! B (NR columns) into its own register-friendly layout and how to multiply
//! one packed A panel by one packed B panel into an MR x NR tile of C (the
//! micro-kernel). This driver does everything else, identically for all
//! families: splitting k into blocks that keep a packed B panel in L1,
//! padding ragged edges with zeros, routing edge tiles through a scratch
//! tile, and spreading packing and tiles over rayon threads. Keeping the
//! blocking in one place means the shared test battery exercises the same
//! edge logic for every kernel.

use rayon::prelude::*;

/// Integer codes a GEMM operand can hold (i8 or i16).
pub(crate) trait Code: Copy + Send + Sync + 'static {
    /// The code as i16 (lossless for every implementor).
    fn to_i16(self) -> i16;
}

impl Code for i8 {
    #[inline(always)]
    fn to_i16(self) -> i16 {
        self as i16
    }
}

impl Code for i16 {
    #[inline(always)]
    fn to_i16(self) -> i16 {
        self
    }
}

/// Element types of packed panels: plain integers, valid for every bit
/// pattern, so they can live in a reused byte workspace.
///
/// # Safety
/// Implementors must be integer types without padding, of alignment <= 64.
pub(crate) unsafe trait PackedElem: Copy + Default + Send + Sync + 'static {}
// SAFETY: plain integers.
unsafe impl PackedElem for u8 {}
// SAFETY: plain integers.
unsafe impl PackedElem for i16 {}

/// One cache line; the workspace is made of these so packed panels start
/// 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Largest workspace (bytes) a thread keeps between calls.
const MAX_KEPT_WORKSPACE: usize = 16 << 20;

thread_local! {
    /// Packing workspace reused across calls on this thread: a fresh
    /// allocation of a 1 MB packed B per call costs page faults and zeroing
    /// worth a sizeable fraction of a 0.5 ms GEMM.
    static WORKSPACE: std::cell::Cell<Vec<Line>> = const { std::cell::Cell::new(Vec::new()) };
    /// The per-column accumulator start values of [`run_blocks`], reused
    /// the same way (taken, so nested calls get their own).
    static INIT: std::cell::Cell<Vec<i32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with two zero-initialised-once, 64-byte-aligned slices of
/// `a_len` and `b_len` elements. The contents are stale data from earlier
/// calls: every packer overwrites the whole panel it owns.
fn with_workspace<E: PackedElem, R>(
    a_len: usize,
    b_len: usize,
    f: impl FnOnce(&mut [E], &mut [E]) -> R,
) -> R {
    let line_elems = 64 / std::mem::size_of::<E>();
    let a_lines = a_len.div_ceil(line_elems);
    let b_lines = b_len.div_ceil(line_elems);
    // `take` leaves an empty Vec behind, so a nested call on this thread
    // (rayon work stealing) allocates its own buffer instead of aliasing.
    let mut lines = WORKSPACE.with(|w| w.take());
    if lines.len() < a_lines + b_lines {
        lines = vec![Line([0; 64]); a_lines + b_lines];
    }
    let (a_part, b_part) = lines.split_at_mut(a_lines);
    // SAFETY: `Line` is 64 initialised bytes, aligned to 64; `E` is a plain
    // integer (PackedElem) of alignment <= 64, valid for any bit pattern,
    // and the lengths stay within the lines reserved for each part.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts_mut(a_part.as_mut_ptr().cast::<E>(), a_len),
            std::slice::from_raw_parts_mut(b_part.as_mut_ptr().cast::<E>(), b_len),
        )
    };
    let result = f(a, b);
    // Keep typical conv-layer buffers; give back rare huge ones.
    if lines.len() * std::mem::size_of::<Line>() <= MAX_KEPT_WORKSPACE {
        WORKSPACE.with(|w| w.set(lines));
    }
    result
}

/// One kernel family for operand type `T`.
///
/// # Safety
/// `pack_a`, `pack_b` and `kernel` may use CPU features the family needs;
/// callers must only use a family after checking its feature detection.
pub(crate) trait Family<T: Code>: Sync {
    /// Rows of the micro-kernel tile.
    const MR: usize;
    /// Columns of the micro-kernel tile.
    const NR: usize;
    /// Consecutive k values combined by one multiply-add instruction; packed
    /// panels hold k rounded up to a multiple of this, padded with zeros.
    const KG: usize;
    /// Largest k block (multiple of `KG`): a packed B panel `NR x KC` should
    /// stay in L1 while all A panels of a tile stream past it.
    const KC: usize;
    /// Rows of C per parallel task (multiple of `MR`).
    const MC: usize;
    /// Columns of C per parallel task (multiple of `NR`).
    const NC: usize;
    /// Element type of the packed panels.
    type Elem: PackedElem;

    /// Packs rows `0..rows` (`rows <= MR`, rest padded) of `a` (row stride
    /// `lda`), k range `k0..k1`, into `out` (`MR * round_up(k1-k0, KG)`).
    ///
    /// # Safety
    /// The family's CPU features must be available.
    unsafe fn pack_a(
        a: &[T],
        lda: usize,
        rows: usize,
        k0: usize,
        k1: usize,
        out: &mut [Self::Elem],
    );

    /// Packs columns `j0..j0+cols` (`cols <= NR`, rest padded) of `b` (row
    /// stride `ldb`), k range `k0..k1`, into `out` (`NR * round_up(k1-k0,
    /// KG)`), and writes the value every accumulator of each column starts
    /// from into `init` (`NR` values; zero unless the family needs a
    /// correction term).
    ///
    /// # Safety
    /// The family's CPU features must be available.
    #[allow(clippy::too_many_arguments)]
    unsafe fn pack_b(
        b: &[T],
        ldb: usize,
        j0: usize,
        cols: usize,
        k0: usize,
        k1: usize,
        out: &mut [Self::Elem],
        init: &mut [i32],
    );

    /// `C[MR x NR] = (accumulate ? C : 0) + init + A_panel * B_panel` over
    /// `groups` k-groups, with wrapping i32 arithmetic.
    ///
    /// # Safety
    /// The family's CPU features must be available; `a` and `b` hold at
    /// least `groups` packed groups; `c` is valid for reads and writes of
    /// `MR` rows of `NR` values at row stride `ldc`, and no other thread
    /// accesses them.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        groups: usize,
        a: &[Self::Elem],
        b: &[Self::Elem],
        init: &[i32],
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    );
}

/// Largest `MR * NR` of any family (size of the edge-tile scratch buffer).
const MAX_TILE: usize = 512;

/// Raw pointer to C shared by tile tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct TilePtr(*mut i32);
// SAFETY: tasks only write disjoint MR x NR tiles of C (see `compute_tile`).
unsafe impl Send for TilePtr {}
unsafe impl Sync for TilePtr {}

#[inline]
fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The A operand of [`run`]: row-major codes, or the panels [`pack_a_all`]
/// made for the same `m` and `k`.
#[derive(Clone, Copy)]
pub(crate) enum AOperand<'a, T, E> {
    Raw(&'a [T]),
    Packed(&'a [E]),
}

/// The k block length [`run`] uses for depth `k`: balanced blocks, so
/// k = 576 gives one block, not 512 + 64.
fn kc_step<T: Code, F: Family<T>>(k: usize) -> usize {
    let k_blocks = k.div_ceil(F::KC).max(1);
    round_up(k.div_ceil(k_blocks), F::KG)
}

/// Packs all of A (`m x k`, row-major) once: for each k block of [`run`],
/// every MR-row panel, blocks one after another. Lets a caller that
/// multiplies the same A by many B (conv weights by images) pack it once.
///
/// # Safety
/// The CPU features family `F` needs must be available.
pub(crate) unsafe fn pack_a_all<T: Code, F: Family<T>>(
    m: usize,
    k: usize,
    a: &[T],
) -> Vec<F::Elem> {
    let m_panels = m.div_ceil(F::MR);
    let step = kc_step::<T, F>(k);
    let mut out = Vec::new();
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + step).min(k);
        let a_len = F::MR * round_up(k1 - k0, F::KG);
        let start = out.len();
        out.resize(start + m_panels * a_len, F::Elem::default());
        for (ip, panel) in out[start..].chunks_mut(a_len).enumerate() {
            let r0 = ip * F::MR;
            // SAFETY: features guaranteed by the caller.
            unsafe { F::pack_a(&a[r0 * k..], k, F::MR.min(m - r0), k0, k1, panel) };
        }
        k0 = k1;
    }
    out
}

/// `c = a * b` with family `F`; spreads work over rayon threads if
/// `parallel`. Shapes must already be checked by the caller (for a packed
/// A: packed by [`pack_a_all`] with this `m`, `k` and family).
///
/// # Safety
/// The CPU features family `F` needs must be available.
pub(crate) unsafe fn run<T: Code, F: Family<T>>(
    parallel: bool,
    m: usize,
    n: usize,
    k: usize,
    a: AOperand<'_, T, F::Elem>,
    b: &[T],
    c: &mut [i32],
) {
    debug_assert!(F::MR * F::NR <= MAX_TILE);
    debug_assert!(F::KC % F::KG == 0 && F::MC % F::MR == 0 && F::NC % F::NR == 0);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0);
        return;
    }
    let m_panels = m.div_ceil(F::MR);
    let n_panels = n.div_ceil(F::NR);
    let step = kc_step::<T, F>(k);
    let a_scratch = match a {
        AOperand::Raw(_) => m_panels * F::MR * step,
        AOperand::Packed(_) => 0,
    };
    with_workspace::<F::Elem, _>(a_scratch, n_panels * F::NR * step, |a_pack, b_pack| {
        // SAFETY: forwarded from this function's contract.
        unsafe { run_blocks::<T, F>(parallel, m, n, k, step, a, b, c, a_pack, b_pack) }
    });
}

/// The k-block loop of [`run`], on packing buffers sized for `kc_step`.
///
/// # Safety
/// As [`run`].
#[allow(clippy::too_many_arguments)]
unsafe fn run_blocks<T: Code, F: Family<T>>(
    parallel: bool,
    m: usize,
    n: usize,
    k: usize,
    kc_step: usize,
    a: AOperand<'_, T, F::Elem>,
    b: &[T],
    c: &mut [i32],
    a_pack: &mut [F::Elem],
    b_pack: &mut [F::Elem],
) {
    let m_panels = m.div_ceil(F::MR);
    let n_panels = n.div_ceil(F::NR);
    let mut init = INIT.with(|w| w.take());
    init.clear();
    init.resize(n_panels * F::NR, 0);
    let c_ptr = TilePtr(c.as_mut_ptr());
    let row_tiles = m.div_ceil(F::MC);
    let col_tiles = n.div_ceil(F::NC);

    let mut k0 = 0;
    // where this k block's panels start in a pre-packed A
    let mut packed_at = 0;
    while k0 < k {
        let k1 = (k0 + kc_step).min(k);
        let kcp = round_up(k1 - k0, F::KG);
        let a_len = F::MR * kcp;
        let b_len = F::NR * kcp;
        let (a_raw, a_packs): (&[T], &mut [F::Elem]) = match a {
            AOperand::Raw(raw) => (raw, &mut a_pack[..m_panels * a_len]),
            AOperand::Packed(_) => (&[], &mut []),
        };
        let b_packs = &mut b_pack[..n_panels * b_len];
        let pack_a_panel = |(ip, out): (usize, &mut [F::Elem])| {
            let r0 = ip * F::MR;
            // SAFETY: features checked by the caller of `run`.
            unsafe { F::pack_a(&a_raw[r0 * k..], k, F::MR.min(m - r0), k0, k1, out) };
        };
        let pack_b_panel = |(jp, (out, init)): (usize, (&mut [F::Elem], &mut [i32]))| {
            let j0 = jp * F::NR;
            // SAFETY: features checked by the caller of `run`.
            unsafe { F::pack_b(b, n, j0, F::NR.min(n - j0), k0, k1, out, init) };
        };
        if parallel {
            // One fork/join for both operands.
            rayon::join(
                || {
                    a_packs
                        .par_chunks_mut(a_len)
                        .enumerate()
                        .for_each(pack_a_panel)
                },
                || {
                    b_packs
                        .par_chunks_mut(b_len)
                        .zip(init.par_chunks_mut(F::NR))
                        .enumerate()
                        .for_each(pack_b_panel)
                },
            );
        } else {
            a_packs.chunks_mut(a_len).enumerate().for_each(pack_a_panel);
            b_packs
                .chunks_mut(b_len)
                .zip(init.chunks_mut(F::NR))
                .enumerate()
                .for_each(pack_b_panel);
        }
        let a_packs: &[F::Elem] = match a {
            AOperand::Raw(_) => a_packs,
            AOperand::Packed(all) => &all[packed_at..packed_at + m_panels * a_len],
        };
        packed_at += m_panels * a_len;
        let b_packs = &*b_packs;
        let init = &init[..];
        let accumulate = k0 > 0;
        let tile = |t: usize| {
            let (ti, tj) = (t / col_tiles, t % col_tiles);
            // SAFETY: tile (ti, tj) covers rows ti*MC.. and columns tj*NC..
            // of C, disjoint from every other tile; features checked above.
            unsafe {
                compute_tile::<T, F>(m, n, kcp, ti, tj, a_packs, b_packs, init, c_ptr, accumulate)
            };
        };
        if parallel {
            (0..row_tiles * col_tiles).into_par_iter().for_each(tile);
        } else {
            (0..row_tiles * col_tiles).for_each(tile);
        }
        k0 = k1;
    }
    INIT.with(|w| w.set(init));
}

/// Runs the micro-kernel over the panels of one MC x NC tile of C. The B
/// panel is the outer loop so it stays in L1 while the tile's A panels
/// (kept in L2) stream past it.
///
/// # Safety
/// Features of `F` available; no other thread touches this tile of C.
#[allow(clippy::too_many_arguments)]
unsafe fn compute_tile<T: Code, F: Family<T>>(
    m: usize,
    n: usize,
    kcp: usize,
    ti: usize,
    tj: usize,
    a_packs: &[F::Elem],
    b_packs: &[F::Elem],
    init: &[i32],
    c: TilePtr,
    accumulate: bool,
) {
    let groups = kcp / F::KG;
    let a_len = F::MR * kcp;
    let b_len = F::NR * kcp;
    let rows = ti * F::MC..((ti + 1) * F::MC).min(m);
    let cols = tj * F::NC..((tj + 1) * F::NC).min(n);
    let mut scratch = [0i32; MAX_TILE];
    for j0 in cols.clone().step_by(F::NR) {
        let jp = j0 / F::NR;
        let b_panel = &b_packs[jp * b_len..(jp + 1) * b_len];
        let panel_init = &init[jp * F::NR..(jp + 1) * F::NR];
        let valid_cols = F::NR.min(n - j0);
        for r0 in rows.clone().step_by(F::MR) {
            let ip = r0 / F::MR;
            let a_panel = &a_packs[ip * a_len..(ip + 1) * a_len];
            let valid_rows = F::MR.min(m - r0);
            // SAFETY: r0 < m and j0 < n, so the offset is inside C.
            let c_tile = unsafe { c.0.add(r0 * n + j0) };
            if valid_rows == F::MR && valid_cols == F::NR {
                // SAFETY: the full tile lies inside C (checked just above).
                unsafe { F::kernel(groups, a_panel, b_panel, panel_init, c_tile, n, accumulate) };
            } else {
                // Ragged edge: run the full tile on scratch, copy the valid
                // part; results of padded rows and columns are dropped.
                if accumulate {
                    for r in 0..valid_rows {
                        for j in 0..valid_cols {
                            // SAFETY: (r0 + r, j0 + j) is inside C.
                            scratch[r * F::NR + j] = unsafe { *c_tile.add(r * n + j) };
                        }
                    }
                }
                // SAFETY: scratch holds MR * NR <= MAX_TILE values.
                unsafe {
                    F::kernel(
                        groups,
                        a_panel,
                        b_panel,
                        panel_init,
                        scratch.as_mut_ptr(),
                        F::NR,
                        accumulate,
                    )
                };
                for r in 0..valid_rows {
                    for j in 0..valid_cols {
                        // SAFETY: (r0 + r, j0 + j) is inside C.
                        unsafe { *c_tile.add(r * n + j) = scratch[r * F::NR + j] };
                    }
                }
            }
        }
    }
}
