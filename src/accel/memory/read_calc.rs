//! The CALC-bandwidth read buffer (SCALE-Sim `ReadBufferEstimateBw`): it
//! never stalls; it records which words had to come from DRAM.
//!
//! Demanded words that miss are appended to a "current set"; a set closes
//! after `floor(sram_words / 100)` words. A word hits when the latest set it
//! was put in is at or after the window start. Each time the 50 sets of the
//! window have closed, the window slides by 50 sets (to the set about to be
//! opened) and those sets are prefetched. So the buffer works in *epochs*:
//! an epoch ends with its `50 * set_size`-th miss, and a word hits exactly
//! when it was demanded earlier in the same epoch. Every word put in a set
//! is one DRAM read, so the count is the number of misses.
//!
//! [`CalcReadBuffer`] keeps the set and prefetch bookkeeping and takes
//! misses in bulk (`miss_words`); [`CalcWordTable`] decides hit or miss word
//! by word, as SCALE-Sim does (used by the reference replay and for streams
//! too large for `calc_stream`).

/// Sets per half of the SRAM (active fraction 0.5 of 100 sets).
const SETS_PER_HALF: i64 = 50;
/// Read-port latency of SCALE-Sim's DRAM model.
const READ_PORT_LATENCY: i64 = 1;

#[derive(Debug, Clone)]
pub(crate) struct CalcReadBuffer {
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
    pub fn new(sram_words: usize, default_bw: usize) -> CalcReadBuffer {
        CalcReadBuffer {
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

    /// Misses per epoch: the window slides on this many appended words
    /// (0: sets never close, the window never slides).
    pub fn epoch_words(&self) -> u64 {
        (SETS_PER_HALF * self.set_size) as u64
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

    /// Append `n` missing words; a slide they cause is issued at `cycle`
    /// (only the cycle of a slide is ever recorded, so the words before it
    /// may have arrived earlier).
    pub fn miss_words(&mut self, mut n: u64, cycle: i64) {
        while n > 0 {
            if self.set_size == 0 {
                // Sets never close: nothing is ever evicted.
                self.dram_words += n;
                self.elems_in_set += n as i64;
                return;
            }
            let room = ((self.window_end + 1 - self.current_set) * self.set_size
                - self.elems_in_set) as u64;
            if n < room {
                self.dram_words += n;
                self.elems_in_set += n as i64;
                self.current_set += self.elems_in_set / self.set_size;
                self.elems_in_set %= self.set_size;
                return;
            }
            self.dram_words += room;
            n -= room;
            self.current_set = self.window_end + 1;
            self.elems_in_set = 0;
            self.slide(cycle);
        }
    }

    /// The 50 sets of the window have closed: slide it and prefetch.
    fn slide(&mut self, cycle: i64) {
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

/// SCALE-Sim's word-by-word hit test: the latest set each word was put in.
#[derive(Debug, Clone)]
pub(crate) struct CalcWordTable {
    base: i64,
    /// Latest set each word was put in (-1: never).
    last_set: Vec<i32>,
}

impl CalcWordTable {
    pub fn new(base: i64, words: usize) -> CalcWordTable {
        CalcWordTable {
            base,
            last_set: vec![-1; words],
        }
    }

    /// Service one demanded word at `cycle`.
    pub fn demand(&mut self, buf: &mut CalcReadBuffer, cycle: i64, addr: i64) {
        let slot = &mut self.last_set[(addr - self.base) as usize];
        if *slot >= 0 && *slot as i64 >= buf.window_start {
            return;
        }
        *slot = buf.current_set as i32;
        buf.miss_words(1, cycle);
    }
}
