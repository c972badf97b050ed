//! The USER-bandwidth read buffer (SCALE-Sim `read_buffer`): a
//! double-buffered SRAM whose contents are "sets" of the operand's prefetch
//! order, refilled from DRAM in request lines of `words_per_cycle` words.
//!
//! The prefetch order (the unrolled fetch matrix) is cut into sets of
//! `ceil(sram_words / 100)` valid words. Of the set ring, `nal` sets form
//! the active window (ceil(active_words / set)) and `npl` the prefetch
//! window. A demanded word hits when any set holding it lies in the active
//! window. On a miss the window slides forward by `npl` sets (wrapping
//! around the ring) and a new prefetch is issued; it takes
//! `ceil(prefetch_words / bw)` request lines plus one cycle of port latency
//! after the previous one, and the demanding line is held until it lands —
//! that wait is the stall. Every prefetch is billed as whole request lines.

/// Where each word of an operand lives in the set ring.
#[derive(Debug, Clone)]
pub(crate) struct SetMap {
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
    pub fn build(
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

/// State of a USER-mode read buffer while demands are serviced.
#[derive(Debug, Clone)]
pub(crate) struct UserReadBuffer {
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
    pub fn new(map: SetMap, geo: ReadGeometry, start_cycle: i64) -> UserReadBuffer {
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
    pub fn hit(&self, addr: i64) -> bool {
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
    pub fn refill(&mut self) {
        self.window_start = (self.window_start + self.prefetch_sets) % self.map.ring;
        self.last_prefetch_cycle += self.prefetch_lines + READ_PORT_LATENCY;
        self.dram_words += self.prefetch_lines as u64 * self.bw;
        self.refills += 1;
    }

    /// Whether a refill can ever change the window (SCALE-Sim would spin
    /// forever on a miss otherwise).
    pub fn can_refill(&self) -> bool {
        self.prefetch_sets > 0
    }

    /// Service one demand line arriving at `cycle`: returns the stall the
    /// line suffers (cycles beyond the 1-cycle hit latency).
    pub fn service_line(&mut self, cycle: i64, addrs: impl Iterator<Item = i64>) -> i64 {
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
