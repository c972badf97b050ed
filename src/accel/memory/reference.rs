//! Reference model for tests: an element-by-element replay of SCALE-Sim's
//! memory system (every demanded word checked against an explicit
//! word -> sets index, every ofmap word stored one at a time). It is slow
//! (like SCALE-Sim itself) and exists to check the run-length model in
//! `memory.rs` on many small layers.

use super::operands::{Operands, FILTER_OFFSET};
use super::read_calc::{CalcReadBuffer, CalcWordTable};
use super::{Interface, MemoryInput, MemoryReport};

const WRITE_PORT_LATENCY: i64 = 0;

/// Where each word of an operand lives in the set ring.
#[derive(Debug, Clone)]
struct SetMap {
    base: i64,
    /// CSR: sets holding word `a` are `sets[start[a]..start[a+1]]`, ascending.
    start: Vec<u32>,
    sets: Vec<u32>,
    /// Number of sets in the ring (SCALE-Sim always appends the last,
    /// possibly empty, set).
    pub ring: usize,
    /// Elements of the fetch matrix, -1 included.
    pub fetch_elems: usize,
}

impl SetMap {
    /// Build from a prefetch-order walker over words in `[base, base+words)`.
    fn build(
        base: i64,
        words: usize,
        set_size: usize,
        walk: impl Fn(&mut dyn FnMut(i64)) -> usize,
    ) -> SetMap {
        let mut count = vec![0u32; words + 1];
        let mut valid = 0usize;
        let fetch_elems = walk(&mut |a| {
            if a >= 0 {
                count[(a - base) as usize + 1] += 1;
                valid += 1;
            }
        });
        for i in 1..count.len() {
            count[i] += count[i - 1];
        }
        let start = count;
        let mut fill = start.clone();
        let mut sets = vec![0u32; valid];
        let mut index = 0usize;
        walk(&mut |a| {
            if a >= 0 {
                let slot = &mut fill[(a - base) as usize];
                sets[*slot as usize] = (index / set_size) as u32;
                *slot += 1;
                index += 1;
            }
        });
        SetMap {
            base,
            start,
            sets,
            ring: valid / set_size + 1,
            fetch_elems,
        }
    }

    fn sets_of(&self, addr: i64) -> &[u32] {
        let a = (addr - self.base) as usize;
        if a + 1 >= self.start.len() {
            return &[];
        }
        &self.sets[self.start[a] as usize..self.start[a + 1] as usize]
    }
}

/// SRAM geometry and interface of one read buffer.
#[derive(Debug, Clone, Copy)]
struct ReadGeometry {
    pub active_words: usize,
    pub prefetch_words: usize,
    pub set_size: usize,
    pub bw: usize,
}

impl ReadGeometry {
    fn new(sram_words: usize, bw: usize) -> ReadGeometry {
        let active_words = sram_words.div_ceil(2);
        ReadGeometry {
            active_words,
            prefetch_words: sram_words - active_words,
            set_size: sram_words.div_ceil(100).max(1),
            bw: bw.max(1),
        }
    }
}

/// State of a USER-mode read buffer while demands are serviced.
#[derive(Debug, Clone)]
struct UserReadBuffer {
    map: SetMap,
    /// First set of the active window.
    window_start: usize,
    window_sets: usize,
    prefetch_sets: usize,
    /// Request lines per refill prefetch.
    prefetch_lines: i64,
    /// Cycle at which the latest prefetch's data is available.
    pub last_prefetch_cycle: i64,
    /// Words requested from DRAM (whole request lines).
    pub dram_words: u64,
    /// Cycle of the first DRAM response.
    pub first_dram_cycle: i64,
    pub refills: u64,
    bw: u64,
}

/// Read-port latency of SCALE-Sim's DRAM model, in cycles.
const READ_PORT_LATENCY: i64 = 1;

impl UserReadBuffer {
    /// Set up the buffer and issue the initial (active-window) prefetch so
    /// that it completes just before cycle `start_cycle`.
    fn new(map: SetMap, geo: ReadGeometry, start_cycle: i64) -> UserReadBuffer {
        let max_window = geo.active_words.div_ceil(geo.set_size);
        let max_prefetch = geo.prefetch_words.div_ceil(geo.set_size);
        let window_sets = map.ring.min(max_window);
        let prefetch_sets = (map.ring - window_sets).min(max_prefetch);
        let fetch_lines = map.fetch_elems.div_ceil(geo.bw);
        let initial_lines = geo.active_words.div_ceil(geo.bw).min(fetch_lines);
        UserReadBuffer {
            map,
            window_start: 0,
            window_sets,
            prefetch_sets,
            prefetch_lines: geo.prefetch_words.div_ceil(geo.bw) as i64,
            // The initial lines are issued so that the last lands at start-1.
            last_prefetch_cycle: start_cycle - 1,
            dram_words: (initial_lines * geo.bw) as u64,
            first_dram_cycle: start_cycle - initial_lines as i64,
            refills: 0,
            bw: geo.bw as u64,
        }
    }

    /// Whether `addr` is in the active window.
    fn hit(&self, addr: i64) -> bool {
        let sets = self.map.sets_of(addr);
        if sets.is_empty() || self.window_sets >= self.map.ring {
            // Words outside the prefetch order cannot be waited for (SCALE-Sim
            // would loop forever); a window spanning the ring holds all.
            return true;
        }
        let start = self.window_start;
        let end = start + self.window_sets;
        let i = sets.partition_point(|&s| (s as usize) < start);
        if i < sets.len() && (sets[i] as usize) < end {
            return true;
        }
        end > self.map.ring && (sets[0] as usize) < end - self.map.ring
    }

    /// Slide the window by one prefetch and issue the refill.
    fn refill(&mut self) {
        self.window_start = (self.window_start + self.prefetch_sets) % self.map.ring;
        self.last_prefetch_cycle += self.prefetch_lines + READ_PORT_LATENCY;
        self.dram_words += self.prefetch_lines as u64 * self.bw;
        self.refills += 1;
    }

    /// Whether a refill can ever change the window (SCALE-Sim would spin
    /// forever on a miss otherwise).
    fn can_refill(&self) -> bool {
        self.prefetch_sets > 0
    }

    /// Service one demand line arriving at `cycle`: returns the stall the
    /// line suffers (cycles beyond the 1-cycle hit latency).
    fn service_line(&mut self, cycle: i64, addrs: impl Iterator<Item = i64>) -> i64 {
        let mut offset = 1i64;
        for a in addrs {
            if a < 0 {
                continue;
            }
            while !self.hit(a) && self.can_refill() {
                self.refill();
                let wait = self.last_prefetch_cycle - (cycle + offset);
                if wait > 0 {
                    offset += wait;
                }
            }
        }
        offset - 1
    }
}

/// Write-port latency of SCALE-Sim's DRAM model.

#[derive(Debug, Clone)]
struct TraceWriteBuffer {
    active: i64,
    drain_words: i64,
    bw: i64,
    free: i64,
    /// Words in the line being packed.
    line_fill: i64,
    /// Valid words of each committed line not yet drained (FIFO).
    pending: std::collections::VecDeque<i64>,
    any_written: bool,
    drain_end_cycle: i64,
    dram_words: u64,
    first_dram_cycle: Option<i64>,
    last_dram_cycle: i64,
}

impl TraceWriteBuffer {
    fn new(sram_words: usize, bw: usize) -> TraceWriteBuffer {
        let total = sram_words as i64;
        let active = (sram_words.div_ceil(2)) as i64;
        TraceWriteBuffer {
            active,
            drain_words: total - active,
            bw: bw.max(1) as i64,
            free: total,
            line_fill: 0,
            pending: std::collections::VecDeque::new(),
            any_written: false,
            drain_end_cycle: 0,
            dram_words: 0,
            first_dram_cycle: None,
            last_dram_cycle: 0,
        }
    }

    fn commit_line(&mut self) {
        if self.line_fill > 0 {
            self.pending.push_back(self.line_fill);
            self.line_fill = 0;
        }
    }

    /// Drain up to one drain-buffer worth of lines starting at `start`;
    /// returns the cycle the last line is written.
    fn drain(&mut self, start: i64) -> i64 {
        let max_lines = (self.drain_words + self.bw - 1) / self.bw;
        let lines = (self.pending.len() as i64).min(max_lines);
        if lines == 0 {
            return start;
        }
        let mut last_fill = 0;
        for _ in 0..lines {
            last_fill = self.pending.pop_front().unwrap_or(0);
        }
        let words = lines * self.bw - (self.bw - last_fill);
        self.dram_words += words as u64;
        self.free += words;
        let first = start + WRITE_PORT_LATENCY;
        let last = start + lines - 1 + WRITE_PORT_LATENCY;
        self.first_dram_cycle = Some(self.first_dram_cycle.map_or(first, |f| f.min(first)));
        self.last_dram_cycle = self.last_dram_cycle.max(last);
        last
    }

    /// Write `words` ofmap words arriving at `cycle`; returns the cycle at
    /// which the line is done (>= cycle).
    fn service_line(&mut self, cycle: i64, words: usize) -> i64 {
        let mut current = cycle;
        for _ in 0..words {
            self.any_written = true;
            self.line_fill += 1;
            self.free -= 1;
            if self.line_fill == self.bw {
                self.commit_line();
            }
            if current < self.drain_end_cycle {
                if self.free <= 0 {
                    current = self.drain_end_cycle;
                }
            } else if self.free < self.active {
                self.commit_line();
                self.drain_end_cycle = self.drain(current);
            }
        }
        current
    }

    /// Flush everything left after the last demand line (serviced at
    /// `cycle`).
    fn finish(&mut self, mut cycle: i64) {
        self.commit_line();
        if !self.any_written {
            return;
        }
        while !self.pending.is_empty() {
            self.drain_end_cycle = self.drain(cycle);
            cycle = self.drain_end_cycle + 1;
        }
    }
}

enum ReadSide {
    Calc(CalcReadBuffer, CalcWordTable),
    User(UserReadBuffer),
}

/// Element-by-element replay of SCALE-Sim's memory system (reference).
pub(crate) fn simulate_trace(input: &MemoryInput) -> MemoryReport {
    let ops = Operands::new(input);
    let (mut ifmap, mut filter, ofmap_bw) = match input.interface {
        Interface::Calc => (
            ReadSide::Calc(
                CalcReadBuffer::new(input.ifmap_sram_words, 10),
                CalcWordTable::new(0, ops.ifmap_words()),
            ),
            ReadSide::Calc(
                CalcReadBuffer::new(input.filter_sram_words, 10),
                CalcWordTable::new(FILTER_OFFSET, ops.filter_words()),
            ),
            input.cols,
        ),
        Interface::User { words_per_cycle } => {
            let igeo = ReadGeometry::new(input.ifmap_sram_words, words_per_cycle);
            let fgeo = ReadGeometry::new(input.filter_sram_words, words_per_cycle);
            let imap = SetMap::build(0, ops.ifmap_words(), igeo.set_size, |v| {
                ops.visit_ifmap_prefetch(v)
            });
            let fmap = SetMap::build(FILTER_OFFSET, ops.filter_words(), fgeo.set_size, |v| {
                ops.visit_filter_prefetch(v)
            });
            (
                ReadSide::User(UserReadBuffer::new(imap, igeo, 0)),
                ReadSide::User(UserReadBuffer::new(fmap, fgeo, 0)),
                words_per_cycle,
            )
        }
    };
    let mut ofmap = TraceWriteBuffer::new(input.ofmap_sram_words, ofmap_bw);
    let mut stall: i64 = 0;
    let mut line: i64 = 0;
    let mut last_out = 0i64;
    let islots = ops.ifmap_slots();
    let fslots = ops.filter_slots();
    for fc in 0..ops.col_folds {
        for fr in 0..ops.row_folds {
            for tau in 0..ops.cycles_per_fold {
                let cycle = line + stall;
                let i_stall = service(
                    &mut ifmap,
                    cycle,
                    (0..islots).map(|s| ops.ifmap_demand(fr, fc, tau, s)),
                );
                let f_stall = service(
                    &mut filter,
                    cycle,
                    (0..fslots).map(|s| ops.filter_demand(fr, fc, tau, s)),
                );
                let words = (0..ops.cols)
                    .filter(|&s| ops.ofmap_demand(fr, fc, tau, s))
                    .count();
                let out = ofmap.service_line(cycle, words);
                last_out = out;
                let o_stall = out - cycle;
                stall += i_stall.max(f_stall).max(o_stall).max(0);
                line += 1;
            }
        }
    }
    ofmap.finish(last_out);
    let mut report = MemoryReport {
        stall_cycles: stall as u64,
        ..MemoryReport::default()
    };
    let (a, b, c) = finish(ifmap);
    report.dram_ifmap_reads = a;
    report.dram_ifmap_start = b;
    report.dram_ifmap_stop = c;
    let (a, b, c) = finish(filter);
    report.dram_filter_reads = a;
    report.dram_filter_start = b;
    report.dram_filter_stop = c;
    report.dram_ofmap_writes = ofmap.dram_words;
    report.dram_ofmap_start = ofmap.first_dram_cycle.unwrap_or(0).max(0) as u64;
    report.dram_ofmap_stop = ofmap.last_dram_cycle.max(0) as u64;
    report
}

fn service(side: &mut ReadSide, cycle: i64, addrs: impl Iterator<Item = i64>) -> i64 {
    match side {
        ReadSide::User(b) => b.service_line(cycle, addrs),
        ReadSide::Calc(b, table) => {
            let mut any = false;
            for a in addrs {
                if a >= 0 {
                    if !any {
                        b.note_line(cycle, true);
                        any = true;
                    }
                    table.demand(b, cycle, a);
                }
            }
            0
        }
    }
}

fn finish(side: ReadSide) -> (u64, u64, u64) {
    match side {
        ReadSide::User(b) => (
            b.dram_words,
            b.first_dram_cycle.max(0) as u64,
            b.last_prefetch_cycle.max(0) as u64,
        ),
        ReadSide::Calc(mut b, _) => {
            b.finish();
            (
                b.dram_words,
                b.first_dram_cycle.unwrap_or(0).max(0) as u64,
                b.last_dram_cycle.max(0) as u64,
            )
        }
    }
}
