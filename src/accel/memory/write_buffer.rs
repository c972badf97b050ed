//! The ofmap write buffer (SCALE-Sim `write_buffer`): ofmap words are packed
//! into DRAM request lines of `bw` words; when the buffer's free space drops
//! below the active half, the pending lines (forced out, a partly filled
//! last line included) are drained to DRAM, up to `ceil(drain_words / bw)`
//! lines per drain at one line per cycle, and the writing line waits for the
//! drain to finish. A drain bills whole lines except for the padding of its
//! last line, so partly filled lines in the middle of a drain count as full.

/// Write-port latency of SCALE-Sim's DRAM model.
const WRITE_PORT_LATENCY: i64 = 0;

#[derive(Debug, Clone)]
pub(crate) struct WriteBuffer {
    total: i64,
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
    pub dram_words: u64,
    pub first_dram_cycle: Option<i64>,
    pub last_dram_cycle: i64,
}

impl WriteBuffer {
    pub fn new(sram_words: usize, bw: usize) -> WriteBuffer {
        let total = sram_words as i64;
        let active = (sram_words.div_ceil(2)) as i64;
        WriteBuffer {
            total,
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
    pub fn service_line(&mut self, cycle: i64, words: usize) -> i64 {
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
    pub fn finish(&mut self, mut cycle: i64) {
        self.commit_line();
        if !self.any_written {
            return;
        }
        while !self.pending.is_empty() {
            self.drain_end_cycle = self.drain(cycle);
            cycle = self.drain_end_cycle + 1;
        }
    }

    #[cfg(test)]
    pub fn free_words(&self) -> i64 {
        self.free
    }

    #[cfg(test)]
    pub fn total_words(&self) -> i64 {
        self.total
    }
}
