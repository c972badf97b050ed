//! The ofmap write buffer (SCALE-Sim `write_buffer`): ofmap words are packed
//! into DRAM request lines of `bw` words. When, outside a running drain, the
//! free space drops below the active half, the pending lines (the partly
//! filled current line is forced out too) are drained to DRAM, up to
//! `ceil(drain_words / bw)` lines per drain at one line per cycle. A writing
//! line only waits when the buffer is completely full while a drain is
//! still running. A drain bills whole lines except for the padding of its
//! last line, so partly filled lines in the middle of a drain count as full.
//!
//! Words are handled in runs: between two events (a drain starting, the
//! buffer running full) only counters change.

use std::collections::VecDeque;

/// Write-port latency of SCALE-Sim's DRAM model.
const WRITE_PORT_LATENCY: i64 = 0;

#[derive(Debug, Clone)]
pub(crate) struct WriteBuffer {
    active: i64,
    drain_words: i64,
    bw: i64,
    free: i64,
    /// Words in the line being packed.
    line_fill: i64,
    /// Committed, undrained lines as runs of (words per line, lines).
    pending: VecDeque<(i64, i64)>,
    pending_lines: i64,
    any_written: bool,
    drain_end_cycle: i64,
    pub dram_words: u64,
    pub first_dram_cycle: Option<i64>,
    pub last_dram_cycle: i64,
}

impl WriteBuffer {
    pub fn new(sram_words: usize, bw: usize) -> WriteBuffer {
        let total = sram_words as i64;
        let active = sram_words.div_ceil(2) as i64;
        WriteBuffer {
            active,
            drain_words: total - active,
            bw: bw.max(1) as i64,
            free: total,
            line_fill: 0,
            pending: VecDeque::new(),
            pending_lines: 0,
            any_written: false,
            drain_end_cycle: 0,
            dram_words: 0,
            first_dram_cycle: None,
            last_dram_cycle: 0,
        }
    }

    fn push_lines(&mut self, fill: i64, lines: i64) {
        if lines <= 0 {
            return;
        }
        match self.pending.back_mut() {
            Some((f, n)) if *f == fill => *n += lines,
            _ => self.pending.push_back((fill, lines)),
        }
        self.pending_lines += lines;
    }

    fn commit_partial(&mut self) {
        if self.line_fill > 0 {
            let fill = self.line_fill;
            self.push_lines(fill, 1);
            self.line_fill = 0;
        }
    }

    /// Store `n` words without checking for events.
    fn store(&mut self, n: i64) {
        if n <= 0 {
            return;
        }
        self.any_written = true;
        self.free -= n;
        self.line_fill += n;
        let full = self.line_fill / self.bw;
        self.line_fill %= self.bw;
        let bw = self.bw;
        self.push_lines(bw, full);
    }

    /// Room for words that trigger nothing: `(while_draining, after)` —
    /// words written by lines that arrive before the running drain ends may
    /// use up all but one free word; later words must leave the active half
    /// free. Also returns the cycle the running drain ends.
    pub fn quiet_room(&self) -> (i64, i64, i64) {
        (self.free - 1, self.free - self.active, self.drain_end_cycle)
    }

    /// Store words known to trigger nothing (see `quiet_words`).
    pub fn store_quiet(&mut self, n: u64) {
        self.store(n as i64);
    }

    /// Drain up to one drain-buffer worth of lines starting at `start`;
    /// returns the cycle the last line is written.
    fn drain(&mut self, start: i64) -> i64 {
        let max_lines = (self.drain_words + self.bw - 1) / self.bw;
        let lines = self.pending_lines.min(max_lines);
        if lines == 0 {
            return start;
        }
        let mut left = lines;
        let mut last_fill = 0;
        while left > 0 {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let take = front.1.min(left);
            last_fill = front.0;
            front.1 -= take;
            left -= take;
            if front.1 == 0 {
                self.pending.pop_front();
            }
        }
        self.pending_lines -= lines;
        // Whole lines are billed; only the last line's padding is not.
        let billed = lines * self.bw - (self.bw - last_fill);
        self.dram_words += billed as u64;
        self.free += billed;
        let first = start + WRITE_PORT_LATENCY;
        let last = start + lines - 1 + WRITE_PORT_LATENCY;
        self.first_dram_cycle = Some(self.first_dram_cycle.map_or(first, |f| f.min(first)));
        self.last_dram_cycle = self.last_dram_cycle.max(last);
        last
    }

    /// Write `words` ofmap words arriving at `cycle`; returns the cycle at
    /// which the line is done (>= cycle).
    pub fn service_line(&mut self, cycle: i64, words: u64) -> i64 {
        let mut current = cycle;
        let mut left = words as i64;
        while left > 0 {
            // Words before the next one that triggers an event.
            let quiet = if current < self.drain_end_cycle {
                self.free - 1
            } else {
                self.free - self.active
            };
            let quiet = quiet.clamp(0, left);
            self.store(quiet);
            left -= quiet;
            if left == 0 {
                break;
            }
            self.store(1);
            left -= 1;
            if current < self.drain_end_cycle {
                if self.free <= 0 {
                    current = self.drain_end_cycle;
                }
            } else if self.free < self.active {
                self.commit_partial();
                self.drain_end_cycle = self.drain(current);
            }
        }
        current
    }

    /// Flush everything left after the last demand line (serviced at
    /// `cycle`).
    pub fn finish(&mut self, mut cycle: i64) {
        self.commit_partial();
        if !self.any_written {
            return;
        }
        while self.pending_lines > 0 {
            self.drain_end_cycle = self.drain(cycle);
            cycle = self.drain_end_cycle + 1;
        }
    }
}
