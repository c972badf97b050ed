//! The CALC-bandwidth read buffer (SCALE-Sim `ReadBufferEstimateBw`): it
//! never stalls; it records which words had to come from DRAM.
//!
//! Demanded words that miss are appended to a "current set"; a set closes
//! after `floor(sram_words / 100)` words. The buffer holds the last 50 sets
//! (the active half) plus the current one; a word hits when the latest set
//! it was put in is still held. Each time 50 sets have closed, the window
//! slides by 50 sets and those sets are prefetched. Every word put in a set
//! is one DRAM read, so the count is the number of misses.

/// Sets per half of the SRAM (active fraction 0.5 of 100 sets).
const SETS_PER_HALF: i64 = 50;
/// Read-port latency of SCALE-Sim's DRAM model.
const READ_PORT_LATENCY: i64 = 1;

#[derive(Debug, Clone)]
pub(crate) struct CalcReadBuffer {
    base: i64,
    /// Latest set each word was put in (-1: never).
    last_set: Vec<i32>,
    set_size: i64,
    elems_in_set: i64,
    current_set: i64,
    window_start: i64,
    window_end: i64,
    default_bw: i64,
    first_request_cycle: Option<i64>,
    active_prefetched: bool,
    prefetch_start_set: i64,
    last_prefetch_start: i64,
    last_prefetch_end: i64,
    /// Words read from DRAM.
    pub dram_words: u64,
    /// First and last DRAM response cycles of the trace.
    pub first_dram_cycle: Option<i64>,
    pub last_dram_cycle: i64,
}

impl CalcReadBuffer {
    pub fn new(base: i64, words: usize, sram_words: usize, default_bw: usize) -> CalcReadBuffer {
        CalcReadBuffer {
            base,
            last_set: vec![-1; words],
            set_size: (sram_words / 100) as i64,
            elems_in_set: 0,
            current_set: 0,
            window_start: 0,
            window_end: SETS_PER_HALF - 1,
            default_bw: default_bw.max(1) as i64,
            first_request_cycle: None,
            active_prefetched: false,
            prefetch_start_set: 0,
            last_prefetch_start: -2,
            last_prefetch_end: -1,
            dram_words: 0,
            first_dram_cycle: None,
            last_dram_cycle: 0,
        }
    }

    /// Record one issued prefetch of `rows` request lines starting at
    /// `start` (responses land one port latency later).
    fn record_prefetch(&mut self, start: i64, rows: i64) {
        if rows <= 0 {
            return;
        }
        if self.first_dram_cycle.is_none() {
            self.first_dram_cycle = Some(start + READ_PORT_LATENCY);
        }
        self.last_dram_cycle = start + rows - 1 + READ_PORT_LATENCY;
    }

    /// Note a demand line arriving at `cycle` (for the first-request cycle).
    pub fn note_line(&mut self, cycle: i64, any_valid: bool) {
        if any_valid && self.first_request_cycle.is_none() {
            self.first_request_cycle = Some(cycle);
        }
    }

    /// Service one demanded word at `cycle`.
    pub fn demand(&mut self, cycle: i64, addr: i64) {
        let slot = &mut self.last_set[(addr - self.base) as usize];
        if *slot >= 0 && *slot as i64 >= self.window_start {
            return;
        }
        *slot = self.current_set as i32;
        self.dram_words += 1;
        self.elems_in_set += 1;
        if self.elems_in_set != self.set_size {
            return;
        }
        self.elems_in_set = 0;
        self.current_set += 1;
        if self.current_set != self.window_end + 1 {
            return;
        }
        let half_words = SETS_PER_HALF * self.set_size;
        if !self.active_prefetched {
            let first = self.first_request_cycle.unwrap_or(0);
            self.last_prefetch_end = first - 1 - READ_PORT_LATENCY;
            let rows = (half_words + self.default_bw - 1) / self.default_bw;
            self.last_prefetch_start = self.last_prefetch_end - rows + 1;
            self.record_prefetch(self.last_prefetch_start, rows);
            self.prefetch_start_set = self.window_end + 1;
            self.active_prefetched = true;
        } else {
            let rows = self.last_prefetch_end - self.last_prefetch_start + 1;
            self.record_prefetch(self.last_prefetch_start, rows);
            self.prefetch_start_set += SETS_PER_HALF;
        }
        self.window_start += SETS_PER_HALF;
        self.window_end += SETS_PER_HALF;
        self.last_prefetch_start = self.last_prefetch_end + 1;
        self.last_prefetch_end = cycle;
    }

    /// If `distinct` demanded words can never close 50 sets, no word is ever
    /// evicted: every distinct word is read exactly once and the window never
    /// slides. Then set the end state directly and return true.
    pub fn settle_if_never_evicts(&mut self, distinct: usize) -> bool {
        let distinct = distinct as i64;
        if self.set_size > 0 && distinct >= SETS_PER_HALF * self.set_size {
            return false;
        }
        self.dram_words = distinct as u64;
        if self.set_size > 0 {
            self.current_set = distinct / self.set_size;
            self.elems_in_set = distinct % self.set_size;
        } else {
            self.elems_in_set = distinct;
        }
        true
    }

    /// Fetch whatever is still pending at the end of the layer.
    pub fn finish(&mut self) {
        let mut last_set = self.current_set;
        if self.elems_in_set == 0 {
            last_set -= 1;
        }
        if !self.active_prefetched {
            let end = -1 - READ_PORT_LATENCY;
            let sets = last_set + 1;
            let rows = (sets * self.set_size + self.default_bw - 1) / self.default_bw;
            self.record_prefetch(end - rows + 1, rows);
        } else {
            let rows = self.last_prefetch_end - self.last_prefetch_start + 1;
            self.record_prefetch(self.last_prefetch_start, rows);
        }
    }
}
