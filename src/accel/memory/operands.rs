//! SCALE-Sim's operand address matrices and the order in which the systolic
//! array demands them (per fold, per cycle, per PE row/column, with the
//! skew), and the order in which the read buffers prefetch them.
//!
//! Addresses follow SCALE-Sim's `operand_matrix`: ifmap words at offset 0 in
//! HWC order, filter words at 10,000,000 (filter-major, RSC inside), ofmap
//! words at 20,000,000 (pixel-major, filter inside); a convolution window
//! that runs past the (already padded) ifmap edge holds address -1 (the
//! `ceil((H-R+s)/s)` ofmap-size quirk creates such windows).

use crate::accel::Dataflow;

use super::MemoryInput;

/// Base address of the filter operand (SCALE-Sim default offsets).
pub(crate) const FILTER_OFFSET: i64 = 10_000_000;

/// Marker for "no request in this slot".
pub(crate) const NONE: i64 = -1;

/// The layer as GEMM operands plus the fold geometry for one dataflow.
#[derive(Debug, Clone)]
pub(crate) struct Operands {
    pub dataflow: Dataflow,
    pub rows: usize,
    pub cols: usize,
    ifmap_h: usize,
    ifmap_w: usize,
    filter_w: usize,
    channels: usize,
    stride: usize,
    ofmap_w: usize,
    /// Ofmap pixels per filter (Eh*Ew).
    pub pixels: usize,
    /// Convolution window size (R*S*C).
    pub window: usize,
    pub filters: usize,
    /// GEMM dims as the dataflow maps them: Sr along array rows, Sc along
    /// array columns, T along time.
    pub sr: usize,
    pub sc: usize,
    pub t: usize,
    pub row_folds: usize,
    pub col_folds: usize,
    /// Cycles per fold (rows of the per-fold demand matrix).
    pub cycles_per_fold: usize,
}

/// SCALE-Sim's ofmap size: `ceil((H - R + s) / s)`, which is one more than
/// the usual `floor((H - R) / s) + 1` when `(H - R) % s != 0`.
fn ofmap_dim(ifmap: usize, filter: usize, stride: usize) -> usize {
    (ifmap - filter + stride).div_ceil(stride)
}

impl Operands {
    pub fn new(input: &MemoryInput) -> Operands {
        let l = &input.layer;
        let stride = l.stride.max(1);
        let ofmap_h = ofmap_dim(l.ifmap_h, l.filter_h, stride);
        let ofmap_w = ofmap_dim(l.ifmap_w, l.filter_w, stride);
        let pixels = ofmap_h * ofmap_w;
        let window = l.filter_h * l.filter_w * l.channels;
        let filters = l.num_filters;
        let (sr, sc, t) = match input.dataflow {
            Dataflow::Os => (pixels, filters, window),
            Dataflow::Ws => (window, filters, pixels),
            Dataflow::Is => (window, pixels, filters),
        };
        let (rows, cols) = (input.rows, input.cols);
        let cycles_per_fold = match input.dataflow {
            Dataflow::Os => t + rows + cols - 2,
            Dataflow::Ws | Dataflow::Is => 2 * rows + cols + t - 2,
        };
        Operands {
            dataflow: input.dataflow,
            rows,
            cols,
            ifmap_h: l.ifmap_h,
            ifmap_w: l.ifmap_w,
            filter_w: l.filter_w,
            channels: l.channels,
            stride,
            ofmap_w,
            pixels,
            window,
            filters,
            sr,
            sc,
            t,
            row_folds: sr.div_ceil(rows),
            col_folds: sc.div_ceil(cols),
            cycles_per_fold,
        }
    }

    /// Address of ifmap word `k` of the window of ofmap pixel `p`.
    pub fn ifmap_addr(&self, p: usize, k: usize) -> i64 {
        let (oy, ox) = (p / self.ofmap_w, p % self.ofmap_w);
        let (iy, ix) = (oy * self.stride, ox * self.stride);
        let row_words = self.filter_w * self.channels;
        let (wy, rest) = (k / row_words, k % row_words);
        let (wx, ch) = (rest / self.channels, rest % self.channels);
        if iy + wy >= self.ifmap_h || ix + wx >= self.ifmap_w {
            return NONE;
        }
        (((iy + wy) * self.ifmap_w + ix + wx) * self.channels + ch) as i64
    }

    /// Address of filter word `k` of filter `m`.
    pub fn filter_addr(&self, k: usize, m: usize) -> i64 {
        FILTER_OFFSET + (m * self.window + k) as i64
    }

    /// Number of ifmap words addressable (the padded HWC tensor).
    pub fn ifmap_words(&self) -> usize {
        self.ifmap_h * self.ifmap_w * self.channels
    }

    /// Number of distinct ifmap words some window covers.
    pub fn distinct_ifmap_words(&self) -> usize {
        let ofmap_h = self.pixels / self.ofmap_w;
        let filter_h = self.window / (self.filter_w * self.channels);
        let covered = |extent: usize, outputs: usize, filter: usize| {
            let mut count = 0;
            let mut next = 0; // first position not yet counted
            for o in 0..outputs {
                let lo = (o * self.stride).max(next);
                let hi = (o * self.stride + filter).min(extent);
                if hi > lo {
                    count += hi - lo;
                    next = hi;
                }
            }
            count
        };
        covered(self.ifmap_h, ofmap_h, filter_h)
            * covered(self.ifmap_w, self.ofmap_w, self.filter_w)
            * self.channels
    }

    /// Number of filter words.
    pub fn filter_words(&self) -> usize {
        self.window * self.filters
    }

    /// Ifmap request of PE slot `slot` at cycle `tau` of fold (fr, fc).
    /// Slots are array rows for OS/WS and array columns for IS.
    pub fn ifmap_demand(&self, fr: usize, fc: usize, tau: usize, slot: usize) -> i64 {
        let (r, c) = (self.rows, self.cols);
        match self.dataflow {
            Dataflow::Os => {
                // Row `slot` streams window words of pixel fr*R+slot, skewed.
                let row = fr * r + slot;
                match tau.checked_sub(slot) {
                    Some(t) if t < self.t && row < self.sr => self.ifmap_addr(row, t),
                    _ => NONE,
                }
            }
            Dataflow::Ws => {
                // After R cycles of weight load, row `slot` streams window
                // word fr*R+slot of every pixel, skewed.
                let k = fr * r + slot;
                match tau.checked_sub(slot + r) {
                    Some(p) if p < self.t && k < self.sr => self.ifmap_addr(p, k),
                    _ => NONE,
                }
            }
            Dataflow::Is => {
                // Stationary load, bottom row first: cycle tau < R fills row
                // R-1-tau of column `slot` with pixel fc*C+slot's word.
                let p = fc * c + slot;
                if tau >= r {
                    return NONE;
                }
                let k = fr * r + r - 1 - tau;
                if k < self.sr && p < self.sc {
                    self.ifmap_addr(p, k)
                } else {
                    NONE
                }
            }
        }
    }

    /// Filter request of PE slot `slot` (array columns for OS/WS, array
    /// rows for IS) at cycle `tau` of fold (fr, fc).
    pub fn filter_demand(&self, fr: usize, fc: usize, tau: usize, slot: usize) -> i64 {
        let (r, c) = (self.rows, self.cols);
        match self.dataflow {
            Dataflow::Os => {
                let m = fc * c + slot;
                match tau.checked_sub(slot) {
                    Some(t) if t < self.t && m < self.sc => self.filter_addr(t, m),
                    _ => NONE,
                }
            }
            Dataflow::Ws => {
                // Stationary load, bottom row first, no skew.
                if tau >= r {
                    return NONE;
                }
                let k = fr * r + r - 1 - tau;
                let m = fc * c + slot;
                if k < self.sr && m < self.sc {
                    self.filter_addr(k, m)
                } else {
                    NONE
                }
            }
            Dataflow::Is => {
                let k = fr * r + slot;
                match tau.checked_sub(slot + r) {
                    Some(m) if m < self.t && k < self.sr => self.filter_addr(k, m),
                    _ => NONE,
                }
            }
        }
    }

    #[cfg(test)]
    /// Whether PE column `slot` writes an ofmap word at cycle `tau` of fold
    /// (fr, fc). The write buffer only counts words, so no address is needed.
    pub fn ofmap_demand(&self, fr: usize, fc: usize, tau: usize, slot: usize) -> bool {
        let (r, c) = (self.rows, self.cols);
        let col = fc * c + slot;
        match self.dataflow {
            Dataflow::Os => {
                // T-1 idle cycles, then R drain rows (bottom row first), skewed.
                let Some(k) = tau.checked_sub(slot + self.t - 1) else {
                    return false;
                };
                k < r && fr * r + (r - 1 - k) < self.sr && col < self.sc
            }
            Dataflow::Ws | Dataflow::Is => {
                // 2R-1 idle cycles, then T rows, skewed.
                let Some(k) = tau.checked_sub(slot + 2 * r - 1) else {
                    return false;
                };
                k < self.t && col < self.sc
            }
        }
    }

    /// Width of the ifmap and filter demand lines.
    pub fn ifmap_slots(&self) -> usize {
        match self.dataflow {
            Dataflow::Os | Dataflow::Ws => self.rows,
            Dataflow::Is => self.cols,
        }
    }

    pub fn filter_slots(&self) -> usize {
        match self.dataflow {
            Dataflow::Os | Dataflow::Ws => self.cols,
            Dataflow::Is => self.rows,
        }
    }

    #[cfg(test)]
    /// The ifmap prefetch matrix (rows x cols, before unrolling) and whether
    /// SCALE-Sim unrolls it along anti-diagonals.
    fn ifmap_prefetch_shape(&self) -> (usize, usize, bool) {
        match self.dataflow {
            Dataflow::Os | Dataflow::Ws => (self.row_folds * self.t, self.rows, true),
            Dataflow::Is => (self.col_folds * self.sr, self.cols, false),
        }
    }

    #[cfg(test)]
    fn filter_prefetch_shape(&self) -> (usize, usize, bool) {
        match self.dataflow {
            Dataflow::Os => (self.col_folds * self.t, self.cols, true),
            Dataflow::Ws => (self.col_folds * self.sr, self.cols, false),
            Dataflow::Is => (self.row_folds * self.t, self.rows, true),
        }
    }

    #[cfg(test)]
    fn ifmap_prefetch_elem(&self, i: usize, j: usize) -> i64 {
        match self.dataflow {
            Dataflow::Os => {
                // Row-fold blocks of the transposed ifmap: T x R.
                let (fr, t) = (i / self.t, i % self.t);
                let p = fr * self.rows + j;
                if p < self.sr {
                    self.ifmap_addr(p, t)
                } else {
                    NONE
                }
            }
            Dataflow::Ws => {
                let (fr, p) = (i / self.t, i % self.t);
                let k = fr * self.rows + j;
                if k < self.sr {
                    self.ifmap_addr(p, k)
                } else {
                    NONE
                }
            }
            Dataflow::Is => {
                let (fc, k) = (i / self.sr, i % self.sr);
                let p = fc * self.cols + j;
                if p < self.sc {
                    self.ifmap_addr(p, k)
                } else {
                    NONE
                }
            }
        }
    }

    #[cfg(test)]
    fn filter_prefetch_elem(&self, i: usize, j: usize) -> i64 {
        match self.dataflow {
            Dataflow::Os => {
                let (fc, t) = (i / self.t, i % self.t);
                let m = fc * self.cols + j;
                if m < self.sc {
                    self.filter_addr(t, m)
                } else {
                    NONE
                }
            }
            Dataflow::Ws => {
                let (fc, k) = (i / self.sr, i % self.sr);
                let m = fc * self.cols + j;
                if m < self.sc {
                    self.filter_addr(k, m)
                } else {
                    NONE
                }
            }
            Dataflow::Is => {
                let (fr, m) = (i / self.t, i % self.t);
                let k = fr * self.rows + j;
                if k < self.sr {
                    self.filter_addr(k, m)
                } else {
                    NONE
                }
            }
        }
    }

    #[cfg(test)]
    /// Visit the ifmap prefetch order (SCALE-Sim's fetch matrix flattened,
    /// -1 included). Returns the number of elements visited.
    pub fn visit_ifmap_prefetch(&self, visit: impl FnMut(i64)) -> usize {
        let (m, n, diag) = self.ifmap_prefetch_shape();
        visit_matrix(m, n, diag, |i, j| self.ifmap_prefetch_elem(i, j), visit)
    }

    #[cfg(test)]
    pub fn visit_filter_prefetch(&self, visit: impl FnMut(i64)) -> usize {
        let (m, n, diag) = self.filter_prefetch_shape();
        visit_matrix(m, n, diag, |i, j| self.filter_prefetch_elem(i, j), visit)
    }
}

/// The two operands the read buffers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operand {
    Ifmap,
    Filter,
}

/// How an operand's prefetch matrix is built and how a fold's demand maps
/// onto its cells. The matrix stacks one block per fold index along rows;
/// `used` columns of a block hold data, the rest are -1 padding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrefetchGeometry {
    /// Matrix rows and columns.
    pub m: usize,
    pub n: usize,
    /// Unrolled along anti-diagonals (else row-major).
    pub diag: bool,
    /// Rows per block.
    pub block_rows: usize,
    /// Number of blocks.
    pub blocks: usize,
    /// Data columns of the last block.
    pub last_used: usize,
    /// Demand delay: cell row offset g = tau - lead (diagonal kinds).
    pub lead: usize,
    /// Block index comes from the row fold (else the column fold).
    pub block_from_row_fold: bool,
}

/// Ifmap words of one demand line as affine functions of the slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IfmapLine {
    pub p0: i64,
    pub dp: i64,
    pub k0: i64,
    pub dk: i64,
    pub s_lo: usize,
    pub s_hi: usize,
}

/// Number of pairs (x, y), 0 <= x < xs, 0 <= y < ys, with x + y <= limit.
pub(crate) fn count_pairs(xs: i64, ys: i64, limit: i64) -> i64 {
    fn tri(m: i64) -> i64 {
        if m < 0 {
            0
        } else {
            (m + 1) * (m + 2) / 2
        }
    }
    if xs <= 0 || ys <= 0 {
        return 0;
    }
    tri(limit) - tri(limit - xs) - tri(limit - ys) + tri(limit - xs - ys)
}

impl Operands {
    pub fn geometry(&self, op: Operand) -> PrefetchGeometry {
        let (r, c) = (self.rows, self.cols);
        let row_block = |block_rows: usize, lead: usize| PrefetchGeometry {
            m: self.row_folds * block_rows,
            n: r,
            diag: true,
            block_rows,
            blocks: self.row_folds,
            last_used: self.sr - (self.row_folds - 1) * r,
            lead,
            block_from_row_fold: true,
        };
        let col_block = |block_rows: usize, diag: bool| PrefetchGeometry {
            m: self.col_folds * block_rows,
            n: c,
            diag,
            block_rows,
            blocks: self.col_folds,
            last_used: self.sc - (self.col_folds - 1) * c,
            lead: 0,
            block_from_row_fold: false,
        };
        match (self.dataflow, op) {
            (Dataflow::Os, Operand::Ifmap) => row_block(self.t, 0),
            (Dataflow::Os, Operand::Filter) => col_block(self.t, true),
            (Dataflow::Ws, Operand::Ifmap) => row_block(self.t, r),
            (Dataflow::Ws, Operand::Filter) => col_block(self.sr, false),
            (Dataflow::Is, Operand::Ifmap) => col_block(self.sr, false),
            (Dataflow::Is, Operand::Filter) => row_block(self.t, r),
        }
    }

    /// Used columns of block `b`.
    pub fn block_used(&self, g: &PrefetchGeometry, b: usize) -> usize {
        if b + 1 == g.blocks {
            g.last_used
        } else {
            g.n
        }
    }

    /// Cell of the prefetch matrix holding the word demanded by `slot` at
    /// cycle `tau` of fold (fr, fc), if that slot demands anything.
    pub fn demand_cell(
        &self,
        g: &PrefetchGeometry,
        fr: usize,
        fc: usize,
        tau: usize,
        slot: usize,
    ) -> Option<(usize, usize)> {
        let b = if g.block_from_row_fold { fr } else { fc };
        if slot >= self.block_used(g, b) {
            return None;
        }
        if g.diag {
            let t = tau.checked_sub(g.lead + slot)?;
            (t < g.block_rows).then_some((b * g.block_rows + t, slot))
        } else {
            if tau >= self.rows {
                return None;
            }
            let k = fr * self.rows + self.rows - 1 - tau;
            (k < self.sr).then_some((b * g.block_rows + k, slot))
        }
    }

    /// Cell holding word `k` of ifmap pixel `p` in the ifmap prefetch matrix.
    fn ifmap_cell(&self, p: usize, k: usize) -> (usize, usize) {
        match self.dataflow {
            Dataflow::Os => ((p / self.rows) * self.t + k, p % self.rows),
            Dataflow::Ws => ((k / self.rows) * self.t + p, k % self.rows),
            Dataflow::Is => ((p / self.cols) * self.sr + k, p % self.cols),
        }
    }

    /// Cell holding filter word `k` of filter `m`.
    fn filter_cell(&self, k: usize, m: usize) -> (usize, usize) {
        match self.dataflow {
            Dataflow::Os => ((m / self.cols) * self.t + k, m % self.cols),
            Dataflow::Ws => ((m / self.cols) * self.sr + k, m % self.cols),
            Dataflow::Is => ((k / self.rows) * self.t + m, k % self.rows),
        }
    }

    /// Visit every cell of the prefetch matrix holding address `addr`
    /// (an ifmap word sits in every window that covers it), with the kernel
    /// position (ky, kx) it has there ((0, 0) for filter words).
    pub fn cells_of(
        &self,
        op: Operand,
        addr: i64,
        mut visit: impl FnMut(usize, usize, (usize, usize)),
    ) {
        match op {
            Operand::Filter => {
                let a = (addr - FILTER_OFFSET) as usize;
                let (i, j) = self.filter_cell(a % self.window, a / self.window);
                visit(i, j, (0, 0));
            }
            Operand::Ifmap => {
                let filter_h = self.window / (self.filter_w * self.channels);
                for ky in 0..filter_h {
                    for kx in 0..self.filter_w {
                        if let Some((i, j)) = self.ifmap_copy_cell(addr, (ky, kx)) {
                            visit(i, j, (ky, kx));
                        }
                    }
                }
            }
        }
    }

    /// Cell holding ifmap word `addr` at kernel position (ky, kx), if a
    /// window sees it there.
    pub fn ifmap_copy_cell(&self, addr: i64, (ky, kx): (usize, usize)) -> Option<(usize, usize)> {
        let a = addr as usize;
        let ch = a % self.channels;
        let x = (a / self.channels) % self.ifmap_w;
        let y = a / (self.channels * self.ifmap_w);
        let ofmap_h = self.pixels / self.ofmap_w;
        let dy = y.checked_sub(ky)?;
        let dx = x.checked_sub(kx)?;
        if dy % self.stride != 0 || dx % self.stride != 0 {
            return None;
        }
        let (oy, ox) = (dy / self.stride, dx / self.stride);
        if oy >= ofmap_h || ox >= self.ofmap_w {
            return None;
        }
        let p = oy * self.ofmap_w + ox;
        let k = (ky * self.filter_w + kx) * self.channels + ch;
        Some(self.ifmap_cell(p, k))
    }

    /// The ifmap words demanded by line `tau` of fold (fr, fc) as affine
    /// functions of the slot: pixel `p0 + dp*s`, window word `k0 + dk*s`,
    /// for slots `s_lo..=s_hi` (`None`: the line demands no ifmap word).
    pub fn ifmap_line(&self, fr: usize, fc: usize, tau: usize) -> Option<IfmapLine> {
        let g = self.geometry(Operand::Ifmap);
        let b = if g.block_from_row_fold { fr } else { fc };
        let used = self.block_used(&g, b);
        if used == 0 {
            return None;
        }
        let r = self.rows;
        match self.dataflow {
            Dataflow::Os | Dataflow::Ws => {
                let g_t = tau.checked_sub(g.lead)?;
                let s_lo = (g_t + 1).saturating_sub(g.block_rows);
                let s_hi = g_t.min(used - 1);
                if s_lo > s_hi {
                    return None;
                }
                let (g_t, base) = (g_t as i64, (fr * r) as i64);
                Some(if self.dataflow == Dataflow::Os {
                    IfmapLine {
                        p0: base,
                        dp: 1,
                        k0: g_t,
                        dk: -1,
                        s_lo,
                        s_hi,
                    }
                } else {
                    IfmapLine {
                        p0: g_t,
                        dp: -1,
                        k0: base,
                        dk: 1,
                        s_lo,
                        s_hi,
                    }
                })
            }
            Dataflow::Is => {
                if tau >= r {
                    return None;
                }
                let k = fr * r + r - 1 - tau;
                (k < self.sr).then_some(IfmapLine {
                    p0: (fc * self.cols) as i64,
                    dp: 1,
                    k0: k as i64,
                    dk: 0,
                    s_lo: 0,
                    s_hi: used - 1,
                })
            }
        }
    }

    /// Kernel position (ky, kx) of window word `k`.
    pub fn kernel_of(&self, k: i64) -> (usize, usize) {
        let kk = k as usize / self.channels;
        (kk / self.filter_w, kk % self.filter_w)
    }

    /// Ofmap-pixel shift taking a word seen at kernel position `own` to the
    /// window that sees it at `copy` (positions of the same word differ by a
    /// multiple of the stride).
    pub fn kernel_shift(&self, own: (usize, usize), copy: (usize, usize)) -> (i64, i64) {
        let s = self.stride as i64;
        (
            (copy.0 as i64 - own.0 as i64) / s,
            (copy.1 as i64 - own.1 as i64) / s,
        )
    }

    /// Kernel position of the copy `shift` windows away, if inside the kernel.
    pub fn shifted_kernel(&self, own: (usize, usize), shift: (i64, i64)) -> Option<(usize, usize)> {
        let s = self.stride as i64;
        let fh = (self.window / (self.filter_w * self.channels)) as i64;
        let ky = own.0 as i64 + shift.0 * s;
        let kx = own.1 as i64 + shift.1 * s;
        (ky >= 0 && ky < fh && kx >= 0 && kx < self.filter_w as i64)
            .then_some((ky as usize, kx as usize))
    }

    /// Visit, run by run, the cells holding the copies of the words of
    /// `line` in the windows `shift` = (rows, cols) ofmap pixels up/left:
    /// `visit(first, last)` gets the cells of the first and last slot of
    /// each run of slots that share a kernel position and whose copies share
    /// a prefetch block (such a run is contiguous in the prefetch order).
    /// `visit` also gets the slot range of the run; returning false stops
    /// the walk. Returns false when stopped or when some run has no copy in
    /// those windows (such runs are skipped).
    pub fn visit_line_copies(
        &self,
        line: &IfmapLine,
        shift: (i64, i64),
        mut visit: impl FnMut((usize, usize), (usize, usize), (usize, usize)) -> bool,
    ) -> bool {
        let mut all = true;
        let c = self.channels as i64;
        let (fw, stride) = (self.filter_w as i64, self.stride as i64);
        let fh = self.window as i64 / (fw * c);
        let ew = self.ofmap_w as i64;
        let eh = (self.pixels / self.ofmap_w) as i64;
        let (a, b) = shift;
        let (shift_p, shift_k) = (a * ew + b, (a * fw + b) * stride * c);
        let k_at = |s: usize| line.k0 + line.dk * s as i64;
        let p_at = |s: usize| line.p0 + line.dp * s as i64;
        // The index that picks the prefetch block, and the block size.
        let (block_size, by_pixel) = match self.dataflow {
            Dataflow::Os => (self.rows as i64, true),
            Dataflow::Ws => (self.rows as i64, false),
            Dataflow::Is => (self.cols as i64, true),
        };
        let mut s = line.s_lo;
        while s <= line.s_hi {
            // Run of slots sharing the kernel position of slot s.
            let k = k_at(s);
            let group_run = match line.dk {
                1 => (c - 1 - k % c) as usize,
                -1 => (k % c) as usize,
                _ => line.s_hi - s,
            };
            let run_end = (s + group_run).min(line.s_hi);
            let kk = k / c;
            let (ky, kx) = (kk / fw + a * stride, kk % fw + b * stride);
            if ky < 0 || ky >= fh || kx < 0 || kx >= fw {
                all = false;
                s = run_end + 1;
                continue;
            }
            let (pa, pb) = (p_at(s), p_at(run_end));
            let (pmin, pmax) = (pa.min(pb), pa.max(pb));
            let (oy_lo, oy_hi) = (pmin / ew, pmax / ew);
            let (ox_lo, ox_hi) = if oy_lo == oy_hi {
                (pmin % ew, pmax % ew)
            } else {
                (0, ew - 1)
            };
            if oy_lo - a < 0 || oy_hi - a >= eh || ox_lo - b < 0 || ox_hi - b >= ew {
                all = false;
                s = run_end + 1;
                continue;
            }
            let copy = |t: usize| ((p_at(t) - shift_p) as usize, (k_at(t) + shift_k) as usize);
            let mut t = s;
            while t <= run_end {
                let (p, k) = copy(t);
                let (v, dv) = if by_pixel {
                    (p as i64, line.dp)
                } else {
                    (k as i64, line.dk)
                };
                let run = match dv {
                    1 => (block_size - 1 - v % block_size) as usize,
                    -1 => (v % block_size) as usize,
                    _ => run_end - t,
                };
                let end = (t + run).min(run_end);
                let (pe, ke) = copy(end);
                if !visit((t, end), self.ifmap_cell(p, k), self.ifmap_cell(pe, ke)) {
                    return false;
                }
                t = end + 1;
            }
            s = run_end + 1;
        }
        all
    }

    /// The padding rectangle: rows `r0..r1`, columns `c0..n` of the last
    /// block.
    pub fn padding_rect(&self, op: Operand) -> (usize, usize, usize) {
        let g = self.geometry(op);
        let first = (g.blocks - 1) * g.block_rows;
        (first, first + g.block_rows, g.last_used)
    }

    /// Visit the -1 cells of the ifmap prefetch matrix that hold words of
    /// windows running past the ifmap edge (the padding rectangle aside).
    pub fn edge_cells(&self, op: Operand, mut visit: impl FnMut(usize, usize)) {
        if op == Operand::Filter {
            return;
        }
        let filter_h = self.window / (self.filter_w * self.channels);
        for p in 0..self.pixels {
            let (oy, ox) = (p / self.ofmap_w, p % self.ofmap_w);
            let edge = oy * self.stride + filter_h > self.ifmap_h
                || ox * self.stride + self.filter_w > self.ifmap_w;
            if !edge {
                continue;
            }
            for k in 0..self.window {
                if self.ifmap_addr(p, k) == NONE {
                    let (i, j) = self.ifmap_cell(p, k);
                    visit(i, j);
                }
            }
        }
    }

    /// Ofmap words written in lines `[0, tau)` of fold (fr, fc).
    pub fn ofmap_words_before(&self, fr: usize, fc: usize, tau: usize) -> u64 {
        let (r, c) = (self.rows as i64, self.cols as i64);
        let cu = (self.sc as i64 - fc as i64 * c).min(c);
        let tau = tau as i64;
        let n = match self.dataflow {
            Dataflow::Os => {
                let ru = (self.sr as i64 - fr as i64 * r).min(r);
                count_pairs(cu, ru, tau - 1 - (r - ru) - (self.t as i64 - 1))
            }
            Dataflow::Ws | Dataflow::Is => count_pairs(cu, self.t as i64, tau - 1 - (2 * r - 1)),
        };
        n as u64
    }
}

impl Operands {
    /// Filter words demanded in lines `[0, tau)` of fold (fr, fc) (filter
    /// words are never -1, so this counts slots that demand something).
    pub fn filter_words_before(&self, fr: usize, fc: usize, tau: usize) -> u64 {
        let (r, c) = (self.rows as i64, self.cols as i64);
        let cu = (self.sc as i64 - fc as i64 * c).min(c);
        let ru = (self.sr as i64 - fr as i64 * r).min(r);
        let (tau, t) = (tau as i64, self.t as i64);
        let n = match self.dataflow {
            // Slot s demands word tau - s of its filter.
            Dataflow::Os => count_pairs(cu, t, tau - 1),
            // Stationary load: line tau < R loads row R-1-tau when used.
            Dataflow::Ws => cu * (tau - (r - ru)).clamp(0, ru),
            // Slot s demands filter tau - s - R after R cycles of load.
            Dataflow::Is => count_pairs(ru, t, tau - 1 - r),
        };
        n as u64
    }

    /// Division-free ifmap addressing (see [`IfmapAddressing`]).
    pub fn ifmap_addressing(&self) -> IfmapAddressing {
        let filter_h = self.window / (self.filter_w * self.channels);
        let c = self.channels;
        let pixel = (0..self.pixels)
            .map(|p| {
                let (iy, ix) = (
                    (p / self.ofmap_w) * self.stride,
                    (p % self.ofmap_w) * self.stride,
                );
                (iy, ix, (iy * self.ifmap_w + ix) * c)
            })
            .collect();
        let mut word = Vec::with_capacity(self.window);
        for wy in 0..filter_h {
            for wx in 0..self.filter_w {
                for ch in 0..c {
                    word.push((wy, wx, (wy * self.ifmap_w + wx) * c + ch));
                }
            }
        }
        IfmapAddressing {
            pixel,
            word,
            ifmap_h: self.ifmap_h,
            ifmap_w: self.ifmap_w,
        }
    }
}

/// Ifmap address of (pixel, window word) as the sum of a per-pixel and a
/// per-word part, with the window-past-the-edge test on their coordinates.
#[derive(Debug, Clone)]
pub(crate) struct IfmapAddressing {
    /// (top row, left column, address offset) of each pixel's window.
    pixel: Vec<(usize, usize, usize)>,
    /// (row, column, address offset) of each window word in the window.
    word: Vec<(usize, usize, usize)>,
    ifmap_h: usize,
    ifmap_w: usize,
}

impl IfmapAddressing {
    /// Address of window word `k` of pixel `p`, `None` past the ifmap edge
    /// (SCALE-Sim's -1).
    pub fn addr(&self, p: usize, k: usize) -> Option<usize> {
        let (iy, ix, pa) = self.pixel[p];
        let (wy, wx, ka) = self.word[k];
        (iy + wy < self.ifmap_h && ix + wx < self.ifmap_w).then_some(pa + ka)
    }
}

#[cfg(test)]
/// Walk an m x n matrix row-major, or along anti-diagonals (bottom-left to
/// top-right inside each diagonal) as SCALE-Sim's prefetch unrolling does.
fn visit_matrix(
    m: usize,
    n: usize,
    diag: bool,
    elem: impl Fn(usize, usize) -> i64,
    mut visit: impl FnMut(i64),
) -> usize {
    if m == 0 || n == 0 {
        return 0;
    }
    if diag {
        for d in 0..(m + n - 1) {
            let hi = d.min(m - 1);
            let lo = d.saturating_sub(n - 1);
            for i in (lo..=hi).rev() {
                visit(elem(i, d - i));
            }
        }
    } else {
        for i in 0..m {
            for j in 0..n {
                visit(elem(i, j));
            }
        }
    }
    m * n
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::accel::memory::{Interface, MemoryInput};
    use crate::accel::ScaleSimLayer;
    use proptest::prelude::*;

    #[allow(clippy::too_many_arguments)]
    fn ops(
        df: Dataflow,
        rows: usize,
        cols: usize,
        hw: (usize, usize),
        f: (usize, usize),
        c: usize,
        m: usize,
        s: usize,
    ) -> Operands {
        Operands::new(&MemoryInput {
            dataflow: df,
            rows,
            cols,
            layer: ScaleSimLayer {
                name: "t".into(),
                ifmap_h: hw.0,
                ifmap_w: hw.1,
                filter_h: f.0,
                filter_w: f.1,
                channels: c,
                num_filters: m,
                stride: s,
            },
            ifmap_sram_words: 100,
            filter_sram_words: 100,
            ofmap_sram_words: 100,
            interface: Interface::Calc,
        })
    }

    proptest! {
        #[test]
        fn count_pairs_matches_enumeration(xs in 0i64..9, ys in 0i64..9, limit in -3i64..20) {
            let mut n = 0;
            for x in 0..xs {
                for y in 0..ys {
                    if x + y <= limit {
                        n += 1;
                    }
                }
            }
            prop_assert_eq!(count_pairs(xs, ys, limit), n);
        }

        #[test]
        fn distinct_ifmap_words_matches_enumeration(
            h in 1usize..9, w in 1usize..9, fh in 1usize..4, fw in 1usize..4, c in 1usize..3, s in 1usize..4,
        ) {
            prop_assume!(fh <= h && fw <= w);
            let o = ops(Dataflow::Os, 2, 2, (h, w), (fh, fw), c, 1, s);
            let mut seen = std::collections::HashSet::new();
            for p in 0..o.pixels {
                for k in 0..o.window {
                    let a = o.ifmap_addr(p, k);
                    if a >= 0 {
                        seen.insert(a);
                    }
                }
            }
            prop_assert_eq!(o.distinct_ifmap_words(), seen.len());
        }

        /// Every demanded word sits in the cell `demand_cell` names, and the
        /// copies `cells_of` lists all hold the same word.
        #[test]
        fn demand_cells_and_copies_hold_the_demanded_word(
            df in prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)],
            rows in 1usize..5, cols in 1usize..5, extra in 0usize..3, f in 1usize..4, c in 1usize..3,
            m in 1usize..6, s in 1usize..3,
        ) {
            let o = ops(df, rows, cols, (f + extra, f + extra + 1), (f, f), c, m, s);
            for op in [Operand::Ifmap, Operand::Filter] {
                let g = o.geometry(op);
                let mut cells = std::collections::HashMap::new();
                for i in 0..g.m {
                    for j in 0..g.n {
                        let v = match op {
                            Operand::Ifmap => o.ifmap_prefetch_elem(i, j),
                            Operand::Filter => o.filter_prefetch_elem(i, j),
                        };
                        cells.insert((i, j), v);
                    }
                }
                for fc in 0..o.col_folds {
                    for fr in 0..o.row_folds {
                        for tau in 0..o.cycles_per_fold {
                            let slots = match op {
                                Operand::Ifmap => o.ifmap_slots(),
                                Operand::Filter => o.filter_slots(),
                            };
                            for slot in 0..slots {
                                let a = match op {
                                    Operand::Ifmap => o.ifmap_demand(fr, fc, tau, slot),
                                    Operand::Filter => o.filter_demand(fr, fc, tau, slot),
                                };
                                match o.demand_cell(&g, fr, fc, tau, slot) {
                                    Some(cell) => prop_assert_eq!(cells[&cell], a),
                                    None => prop_assert_eq!(a, NONE),
                                }
                                if a >= 0 {
                                    let mut copies = 0;
                                    o.cells_of(op, a, |i, j, _| {
                                        assert_eq!(cells[&(i, j)], a);
                                        copies += 1;
                                    });
                                    let held = cells.values().filter(|&&v| v == a).count();
                                    prop_assert_eq!(copies, held);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    proptest! {
        /// The closed-form counts equal the demand matrices slot by slot.
        #[test]
        fn word_counts_and_addressing_match_the_demands(
            df in prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)],
            rows in 1usize..5, cols in 1usize..5, extra in 0usize..4, f in 1usize..4, c in 1usize..3,
            m in 1usize..7, s in 1usize..3,
        ) {
            let o = ops(df, rows, cols, (f + extra, f + extra + 2), (f, f), c, m, s);
            let addressing = o.ifmap_addressing();
            for p in 0..o.pixels {
                for k in 0..o.window {
                    let want = o.ifmap_addr(p, k);
                    let got = addressing.addr(p, k).map_or(NONE, |a| a as i64);
                    prop_assert_eq!(got, want);
                }
            }
            for fc in 0..o.col_folds {
                for fr in 0..o.row_folds {
                    let mut before = 0u64;
                    for tau in 0..=o.cycles_per_fold {
                        prop_assert_eq!(o.filter_words_before(fr, fc, tau), before);
                        if tau < o.cycles_per_fold {
                            before += (0..o.filter_slots())
                                .filter(|&sl| o.filter_demand(fr, fc, tau, sl) >= 0)
                                .count() as u64;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn diagonal_walk_order() {
        let mut seen = Vec::new();
        visit_matrix(3, 2, true, |i, j| (i * 10 + j) as i64, |a| seen.push(a));
        // Diagonals: (0,0); (1,0),(0,1); (2,0),(1,1); (2,1)
        assert_eq!(seen, vec![0, 10, 1, 20, 11, 21]);
    }
}
