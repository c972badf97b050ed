//! The USER-bandwidth read buffer (SCALE-Sim `read_buffer`): a
//! double-buffered SRAM whose contents are "sets" of the operand's prefetch
//! order, refilled from DRAM in request lines of `words_per_cycle` words.
//!
//! The prefetch order (the fetch matrix, unrolled) is cut into sets of
//! `ceil(sram_words / 100)` valid words. Of the ring of sets, `nal` sets
//! form the active window (`ceil(active_words / set)`) and `npl` the
//! prefetch window. A demanded word hits when any set holding it lies in the
//! active window. On a miss the window slides forward by `npl` sets (wrapping
//! around the ring) and a refill is issued; it takes
//! `ceil(prefetch_words / bw)` request lines plus one cycle of port latency
//! after the previous one, and the demanding line is held until it lands —
//! that wait is the stall. Every prefetch is billed as whole request lines.
//!
//! No word-to-set table is built: the set of a cell of the prefetch matrix is
//! its position in the unrolled order minus the -1 cells before it, divided
//! by the set size, and the -1 cells (padding columns, ifmap words of windows
//! past the edge) are few and kept sorted.

use super::operands::{Operand, Operands, PrefetchGeometry};

/// SRAM geometry and interface of one read buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadGeometry {
    pub active_words: usize,
    pub prefetch_words: usize,
    pub set_size: usize,
    pub bw: usize,
}

impl ReadGeometry {
    pub fn new(sram_words: usize, bw: usize) -> ReadGeometry {
        let active_words = sram_words.div_ceil(2);
        ReadGeometry {
            active_words,
            prefetch_words: sram_words - active_words,
            set_size: sram_words.div_ceil(100).max(1),
            bw: bw.max(1),
        }
    }
}

/// Positions and sets of the cells of one operand's prefetch matrix.
#[derive(Debug, Clone)]
pub(crate) struct SetLayout {
    pub geo: PrefetchGeometry,
    /// Positions of -1 cells in the unrolled order, ascending.
    invalid: Vec<u64>,
    set_size: u64,
    /// Number of sets (SCALE-Sim always appends a last, possibly empty, set).
    pub ring: u64,
}

impl SetLayout {
    pub fn new(ops: &Operands, op: Operand, set_size: usize) -> SetLayout {
        let geo = ops.geometry(op);
        let mut layout = SetLayout {
            geo,
            invalid: Vec::new(),
            set_size: set_size as u64,
            ring: 1,
        };
        // -1 cells: the padding rectangle, walked in prefetch order, merged
        // with the (few) cells of windows past the ifmap edge.
        let mut edge = Vec::new();
        ops.edge_cells(op, |i, j| edge.push(layout.position(i, j)));
        edge.sort_unstable();
        let (r0, r1, c0) = ops.padding_rect(op);
        let mut rect = Vec::with_capacity((r1 - r0) * (geo.n - c0));
        if c0 < geo.n {
            if geo.diag {
                for d in (r0 + c0)..(r1 + geo.n - 1) {
                    let hi = d.min(r1 - 1).min(d - c0);
                    let lo = d.saturating_sub(geo.n - 1).max(r0);
                    for i in (lo..=hi).rev() {
                        rect.push(layout.position(i, d - i));
                    }
                }
            } else {
                for i in r0..r1 {
                    for j in c0..geo.n {
                        rect.push(layout.position(i, j));
                    }
                }
            }
        }
        let mut invalid = Vec::with_capacity(rect.len() + edge.len());
        let (mut x, mut y) = (0, 0);
        while x < rect.len() || y < edge.len() {
            if y == edge.len() || (x < rect.len() && rect[x] <= edge[y]) {
                invalid.push(rect[x]);
                x += 1;
            } else {
                invalid.push(edge[y]);
                y += 1;
            }
        }
        invalid.dedup();
        let valid = (geo.m * geo.n) as u64 - invalid.len() as u64;
        layout.invalid = invalid;
        layout.ring = valid / layout.set_size + 1;
        layout
    }

    /// Position of cell (i, j) in the unrolled prefetch order.
    pub fn position(&self, i: usize, j: usize) -> u64 {
        let (m, n) = (self.geo.m as i64, self.geo.n as i64);
        let (i, j) = (i as i64, j as i64);
        if !self.geo.diag {
            return (i * n + j) as u64;
        }
        let d = i + j;
        let before = super::operands::count_pairs(m, n, d - 1);
        (before + (d.min(m - 1) - i)) as u64
    }

    /// Set of the valid word at `pos` (for a -1 cell: the set the next
    /// valid word goes to).
    pub fn set_at(&self, pos: u64) -> u64 {
        // Padding columns sit at the end of the order: most positions have
        // no -1 cell before them.
        if self.invalid.first().is_none_or(|&f| pos <= f) {
            return pos / self.set_size;
        }
        let invalid_before = self.invalid.partition_point(|&x| x < pos) as u64;
        (pos - invalid_before) / self.set_size
    }

    pub fn fetch_elems(&self) -> usize {
        self.geo.m * self.geo.n
    }
}

/// Read-port latency of SCALE-Sim's DRAM model, in cycles.
const READ_PORT_LATENCY: i64 = 1;

/// State of a USER-mode read buffer while demands are serviced.
#[derive(Debug, Clone)]
pub(crate) struct UserReadBuffer {
    pub op: Operand,
    pub layout: SetLayout,
    /// First set of the active window.
    window_start: u64,
    window_sets: u64,
    prefetch_sets: u64,
    /// Request lines per refill prefetch.
    prefetch_lines: i64,
    /// Cycle at which the latest prefetch's data is available.
    pub last_prefetch_cycle: i64,
    /// Words requested from DRAM (whole request lines).
    pub dram_words: u64,
    /// Cycle of the first DRAM response.
    pub first_dram_cycle: i64,
    bw: u64,
    /// Kernel position (ky, kx) of the ifmap copy that last hit.
    /// Ofmap-pixel shift (rows, cols) from a demanded ifmap word's window
    /// to the window whose copy of it hit last.
    copy_hint: Option<(i64, i64)>,
    /// Scratch: slots of the current line known to hit.
    known_hits: Vec<bool>,
    /// Last quiet run found: (fr, fc, window start, end line), valid from
    /// line `quiet_from`.
    quiet_cache: Option<(usize, usize, u64, usize)>,
    quiet_from: usize,
}

impl UserReadBuffer {
    /// Set up the buffer and issue the initial (active-window) prefetch so
    /// that it completes just before cycle 0.
    pub fn new(ops: &Operands, op: Operand, geo: ReadGeometry) -> UserReadBuffer {
        let layout = SetLayout::new(ops, op, geo.set_size);
        let max_window = geo.active_words.div_ceil(geo.set_size) as u64;
        let max_prefetch = geo.prefetch_words.div_ceil(geo.set_size) as u64;
        let window_sets = layout.ring.min(max_window);
        let prefetch_sets = (layout.ring - window_sets).min(max_prefetch);
        let fetch_lines = layout.fetch_elems().div_ceil(geo.bw);
        let initial_lines = geo.active_words.div_ceil(geo.bw).min(fetch_lines);
        UserReadBuffer {
            op,
            layout,
            window_start: 0,
            window_sets,
            prefetch_sets,
            prefetch_lines: geo.prefetch_words.div_ceil(geo.bw) as i64,
            last_prefetch_cycle: -1,
            dram_words: (initial_lines * geo.bw) as u64,
            first_dram_cycle: -(initial_lines as i64),
            bw: geo.bw as u64,
            copy_hint: None,
            known_hits: Vec::new(),
            quiet_cache: None,
            quiet_from: 0,
        }
    }

    fn holds_everything(&self) -> bool {
        self.window_sets >= self.layout.ring
    }

    /// Whether the sets `lo..=hi` (in ring order from `lo`) all lie in the
    /// active window.
    fn window_holds(&self, lo: u64, hi: u64) -> bool {
        if self.holds_everything() {
            return true;
        }
        let ring = self.layout.ring;
        let offset = (lo + ring - self.window_start) % ring;
        offset + (hi - lo) < self.window_sets
    }

    /// Refills needed before a word held in set `s` is in the window. The
    /// window slides by `npl <= nal` sets per refill, so the first window
    /// holding `s` is reached without passing it.
    fn refills_until(&self, s: u64) -> Option<u64> {
        let ring = self.layout.ring;
        let offset = (s + ring - self.window_start) % ring;
        if offset < self.window_sets {
            return Some(0);
        }
        if self.prefetch_sets == 0 {
            return None;
        }
        Some((offset - self.window_sets + 1).div_ceil(self.prefetch_sets))
    }

    /// Refills needed before `addr`, demanded from cell (i, j), is in the
    /// active window: its own cell's set first, then the copy that hit last
    /// time (same kernel shift), then every cell holding it.
    fn refills_for(
        &mut self,
        ops: &Operands,
        addr: i64,
        cell: (usize, usize),
        own_kernel: Option<(usize, usize)>,
    ) -> u64 {
        if self.holds_everything() {
            return 0;
        }
        let own = self.layout.set_at(self.layout.position(cell.0, cell.1));
        if self.window_holds(own, own) {
            return 0;
        }
        let hinted = own_kernel
            .zip(self.copy_hint)
            .and_then(|(own, hint)| ops.shifted_kernel(own, hint));
        if let Some(kernel) = hinted {
            if let Some((i, j)) = ops.ifmap_copy_cell(addr, kernel) {
                let s = self.layout.set_at(self.layout.position(i, j));
                if self.window_holds(s, s) {
                    return 0;
                }
            }
        }
        let mut best: Option<(u64, (usize, usize))> = None;
        ops.cells_of(self.op, addr, |i, j, shift| {
            if matches!(best, Some((0, _))) {
                return;
            }
            let s = self.layout.set_at(self.layout.position(i, j));
            if let Some(k) = self.refills_until(s) {
                if best.is_none_or(|(b, _)| k < b) {
                    best = Some((k, shift));
                }
            }
        });
        match best {
            Some((k, kernel)) => {
                if let Some(own) = own_kernel {
                    self.copy_hint = Some(ops.kernel_shift(own, kernel));
                }
                k
            }
            // A word the window can never reach is treated as a hit
            // (SCALE-Sim would spin forever).
            None => 0,
        }
    }

    /// Slide the window by `k` prefetches and issue the refills.
    fn refill(&mut self, k: u64) {
        let ring = self.layout.ring;
        self.window_start = (self.window_start + (k % ring) * self.prefetch_sets) % ring;
        self.last_prefetch_cycle += k as i64 * (self.prefetch_lines + READ_PORT_LATENCY);
        self.dram_words += k * self.prefetch_lines as u64 * self.bw;
    }

    /// Service demand line `tau` of fold (fr, fc) arriving at `cycle`,
    /// word by word; returns the stall beyond the 1-cycle hit latency.
    pub fn service_line(
        &mut self,
        ops: &Operands,
        fr: usize,
        fc: usize,
        tau: usize,
        cycle: i64,
    ) -> i64 {
        let mut offset = 1i64;
        let geo = self.layout.geo;
        let slots = match self.op {
            Operand::Ifmap => ops.ifmap_slots(),
            Operand::Filter => ops.filter_slots(),
        };
        let line = match self.op {
            Operand::Ifmap => ops.ifmap_line(fr, fc, tau),
            Operand::Filter => None,
        };
        // Slots whose copies in the hinted windows are held: hits for as
        // long as the window has not moved in this line.
        let mut known = std::mem::take(&mut self.known_hits);
        known.clear();
        known.resize(slots, false);
        if let (Some(l), Some(hint)) = (line, self.copy_hint) {
            if !self.holds_everything() {
                let lay = &self.layout;
                ops.visit_line_copies(&l, hint, |(lo, hi), a, b| {
                    let (pa, pb) = (lay.position(a.0, a.1), lay.position(b.0, b.1));
                    if self.window_holds(lay.set_at(pa.min(pb)), lay.set_at(pa.max(pb))) {
                        known[lo..=hi].iter_mut().for_each(|k| *k = true);
                    }
                    true
                });
            }
        }
        let mut window_moved = false;
        for (slot, &known_hit) in known.iter().enumerate() {
            if !window_moved && known_hit {
                continue;
            }
            let Some(cell) = ops.demand_cell(&geo, fr, fc, tau, slot) else {
                continue;
            };
            let own_kernel = line.map(|l| ops.kernel_of(l.k0 + l.dk * slot as i64));
            let addr = match self.op {
                Operand::Ifmap => ops.ifmap_demand(fr, fc, tau, slot),
                Operand::Filter => ops.filter_demand(fr, fc, tau, slot),
            };
            if addr < 0 {
                continue;
            }
            let k = self.refills_for(ops, addr, cell, own_kernel);
            if k > 0 {
                // Each refill holds the line until it lands; the waits of
                // successive refills telescope to the last landing.
                window_moved = true;
                self.refill(k);
                offset = offset.max(self.last_prefetch_cycle - cycle);
            }
        }
        self.known_hits = known;
        offset - 1
    }

    /// Whether every ifmap word of line `tau` hits through its copy at the
    /// kernel position that hit last (see `Operands::visit_line_copies`).
    fn line_hits_via_copy(&self, ops: &Operands, fr: usize, fc: usize, tau: usize) -> bool {
        let Some(hint) = self.copy_hint else {
            return false;
        };
        let Some(line) = ops.ifmap_line(fr, fc, tau) else {
            return true;
        };
        let lay = &self.layout;
        ops.visit_line_copies(&line, hint, |_, a, b| {
            let (pa, pb) = (lay.position(a.0, a.1), lay.position(b.0, b.1));
            self.window_holds(lay.set_at(pa.min(pb)), lay.set_at(pa.max(pb)))
        })
    }

    /// Lines from `tau` on whose ifmap words all hit through their copies.
    fn copy_quiet_lines(&self, ops: &Operands, fr: usize, fc: usize, tau: usize) -> usize {
        if self.op != Operand::Ifmap {
            return 0;
        }
        // Bounded scan: the caller asks again for the lines after.
        let end = ops.cycles_per_fold.min(tau + 256);
        let mut t = tau;
        while t < end && self.line_hits_via_copy(ops, fr, fc, t) {
            t += 1;
        }
        t - tau
    }

    /// Number of lines from `tau` on in fold (fr, fc) that certainly hit in
    /// the current window (0 when line `tau` may miss). Checks the own sets
    /// of the demanded cells, which are contiguous in the prefetch order.
    pub fn quiet_lines(&mut self, ops: &Operands, fr: usize, fc: usize, tau: usize) -> usize {
        // A quiet run stays quiet until the window moves: reuse it.
        if let Some((cfr, cfc, start, end)) = self.quiet_cache {
            if cfr == fr
                && cfc == fc
                && start == self.window_start
                && tau < end
                && tau >= self.quiet_from
            {
                return end - tau;
            }
        }
        let n = self.quiet_lines_uncached(ops, fr, fc, tau);
        if n > 0 {
            self.quiet_cache = Some((fr, fc, self.window_start, tau + n));
            self.quiet_from = tau;
        }
        n
    }

    fn quiet_lines_uncached(&self, ops: &Operands, fr: usize, fc: usize, tau: usize) -> usize {
        let cpf = ops.cycles_per_fold;
        if self.holds_everything() {
            return cpf - tau;
        }
        let geo = &self.layout.geo;
        let b = if geo.block_from_row_fold { fr } else { fc };
        let used = ops.block_used(geo, b);
        if used == 0 {
            return cpf - tau;
        }
        let lay = &self.layout;
        if geo.diag {
            // Line t demands slots s with 0 <= t - lead - s < block_rows.
            let first = geo.lead;
            let last = geo.lead + geo.block_rows + used - 2;
            if tau < first {
                return first - tau;
            }
            if tau > last {
                return cpf - tau;
            }
            let span = |t: usize| {
                let g = t - geo.lead;
                let s_lo = (g + 1).saturating_sub(geo.block_rows);
                let s_hi = g.min(used - 1);
                let base = b * geo.block_rows + g;
                (
                    lay.position(base - s_lo, s_lo),
                    lay.position(base - s_hi, s_hi),
                )
            };
            let (p_lo, p_hi) = span(tau);
            let s_lo = lay.set_at(p_lo);
            if !self.window_holds(s_lo, lay.set_at(p_hi)) {
                return self.copy_quiet_lines(ops, fr, fc, tau);
            }
            // Sets grow with the line: find the last line still held.
            let (mut ok, mut bad) = (tau, last + 1);
            while bad - ok > 1 {
                let mid = ok + (bad - ok) / 2;
                if self.window_holds(s_lo, lay.set_at(span(mid).1)) {
                    ok = mid;
                } else {
                    bad = mid;
                }
            }
            if ok == last {
                cpf - tau
            } else {
                ok - tau + 1
            }
        } else {
            // Stationary load: line t < R demands one row of the block.
            let r = ops.rows;
            if tau >= r {
                return cpf - tau;
            }
            let base = fr * r;
            let k_hi = base + r - 1 - tau;
            if base >= ops.sr {
                return cpf - tau;
            }
            let k_hi = k_hi.min(ops.sr - 1);
            let row0 = b * geo.block_rows;
            let lo = lay.set_at(lay.position(row0 + base, 0));
            let hi = lay.set_at(lay.position(row0 + k_hi, used - 1));
            if self.window_holds(lo, hi) {
                return cpf - tau;
            }
            if base + r - 1 - tau >= ops.sr {
                return 1;
            }
            let lo = lay.set_at(lay.position(row0 + k_hi, 0));
            if self.window_holds(lo, hi) {
                1
            } else {
                self.copy_quiet_lines(ops, fr, fc, tau)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::memory::{Interface, MemoryInput};
    use crate::accel::{Dataflow, ScaleSimLayer};

    #[test]
    fn positions_follow_the_unrolled_order() {
        for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
            let ops = Operands::new(&MemoryInput {
                dataflow: df,
                rows: 3,
                cols: 4,
                layer: ScaleSimLayer {
                    name: "t".into(),
                    ifmap_h: 5,
                    ifmap_w: 6,
                    filter_h: 2,
                    filter_w: 3,
                    channels: 2,
                    num_filters: 5,
                    stride: 2,
                },
                ifmap_sram_words: 300,
                filter_sram_words: 300,
                ofmap_sram_words: 300,
                interface: Interface::User { words_per_cycle: 3 },
            });
            for op in [Operand::Ifmap, Operand::Filter] {
                let lay = SetLayout::new(&ops, op, 3);
                let g = lay.geo;
                let mut order = Vec::new();
                if g.diag {
                    for d in 0..(g.m + g.n - 1) {
                        for i in (d.saturating_sub(g.n - 1)..=d.min(g.m - 1)).rev() {
                            order.push((i, d - i));
                        }
                    }
                } else {
                    for i in 0..g.m {
                        for j in 0..g.n {
                            order.push((i, j));
                        }
                    }
                }
                for (pos, &(i, j)) in order.iter().enumerate() {
                    assert_eq!(lay.position(i, j), pos as u64, "{df:?} {op:?} ({i},{j})");
                }
            }
        }
    }
}
