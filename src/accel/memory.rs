//! SRAM/DRAM memory model of the systolic-array timing: stall cycles and
//! DRAM traffic of SCALE-Sim v2's double-buffered scratchpad
//! (scalesim-project/scale-sim-v2 @ 22f88b17, `memory/` with
//! `compute/systolic_compute_{os,ws,is}.py` for the demand pattern),
//! reproduced number for number but computed over runs of cycles instead of
//! element traces. The compute side (folds, cycles per fold, utilisation,
//! SRAM counts) lives elsewhere in `accel` and adds `stall_cycles` from here:
//! total = folds * cycles_per_fold - 1 + stall_cycles.
//!
//! # What the array demands
//! The layer is a GEMM (`operands`): OS maps (pixels, filters, window) to
//! (rows, columns, time), WS (window, filters, pixels), IS (window, pixels,
//! filters). Folds run column fold outer, row fold inner; each fold is
//! `T+R+C-2` (OS) or `2R+C+T-2` (WS/IS) demand lines (cycles). Every line
//! asks the ifmap and filter SRAMs for one word per PE row/column slot
//! (-1 where idle) with SCALE-Sim's skew, and writes some ofmap words. Words
//! use SCALE-Sim's addresses (ifmap HWC at 0, filters at 10,000,000).
//!
//! # Read SRAMs (ifmap, filter)
//! Each is double buffered: half active, half prefetching. What a buffer
//! holds follows the operand's *prefetch order* — the per-fold operand blocks
//! stacked and unrolled along anti-diagonals (row-major for the stationary
//! operand of WS/IS) — cut into sets.
//!
//! * USER mode (`read_user`): sets of `ceil(words/100)` valid words. The
//!   active window is `ceil(active/set)` sets of the ring of sets. Before
//!   cycle 0 the first `ceil(active/bw)` request lines are fetched. A
//!   demanded word *hits* when any set that holds it (an ifmap word sits in
//!   every window covering it) is in the active window. On a *miss* the
//!   window slides by `ceil(prefetch/set)` sets, wrapping around the ring, and
//!   a refill of `ceil(prefetch/bw)` request lines is issued; refills are
//!   serialised, each landing `lines + 1` cycles after the previous one.
//!   The line waits until the last refill it needed has landed: a *stall* of
//!   `landing - cycle - 1` cycles (the 1-cycle hit latency is free), added to
//!   every later cycle. DRAM reads are whole request lines: initial lines +
//!   refills x lines, x bw, -1 padding included. A window that moves back to
//!   words it evicted (the ifmap re-streamed for the next column fold,
//!   the first lines of a fold behind a window that just jumped) refills
//!   around the whole ring, which is why counts can far exceed the operand.
//! * CALC mode (`read_calc`): never stalls. Missing words are appended to
//!   sets of `floor(words/100)` words; the buffer keeps the last 50 closed
//!   sets and the open one, so a word is re-read once it left those. DRAM
//!   reads = words appended; with a large SRAM = distinct words touched.
//!
//! # Ofmap SRAM (`write_buffer`)
//! Words are packed into lines of `bw` words (USER: the user bandwidth;
//! CALC: the array width). When, outside a running drain, the free space
//! falls below the active half, the pending lines, a partly filled last one
//! included, drain at one line per cycle, at most `ceil(drain_half/bw)`
//! lines per drain; a writing line only stalls when the buffer is completely
//! full while a drain still runs. The rest drains after the last cycle.
//! Drains bill whole lines except the padding of their last line, so partly
//! filled lines in the middle of a drain count as full (DRAM writes can
//! exceed the ofmap size).
//!
//! # Stalls
//! A line's stall is the largest of the ifmap, filter and ofmap waits.
//!
//! # How it is fast
//! No trace and no word-to-set table is built. A cell's set is its position
//! in the prefetch order (closed form along anti-diagonals) minus the -1
//! cells before it (the padding rectangle, walked in order, and the few
//! words of windows past the ifmap edge), divided by the set size. The words
//! a demand line asks for are a contiguous run of that order, so a run of
//! lines whose own sets lie inside both active windows, and whose ofmap
//! words fit the write buffer's quiet room (closed-form word counts), is
//! skipped in one step (binary search over the lines). Ifmap words also hit
//! through copies held by earlier windows (a word is in every window that
//! covers it): a line is also skipped when, run by run of equal kernel
//! position, the copies one fixed ofmap-pixel shift away (the shift that hit
//! last) are all held. Only the remaining lines are serviced word by word,
//! and a chain of refills is priced at once (closed-form number of window
//! slides). In CALC mode a read buffer that can never close 50 sets never
//! evicts, so its count is the number of distinct words (closed form) and
//! only the write buffer runs, in batches; otherwise every demanded word is
//! fed in order. `reference.rs` (tests only) replays SCALE-Sim word by word
//! and property tests check both agree.
//!
//! Measured (`cargo bench --bench memory`): all 54 ResNet-50 layers on a
//! 32x32 array, USER 10 words/cycle, 64 kB SRAMs: OS 75 ms, WS 22 ms, IS
//! 18 ms. Small SRAMs (8-32 kB) refill every few thousand words and cost up
//! to about twice that; CALC mode with SRAMs too small to hold a layer feeds
//! every word and takes about 2 s for the network (with SCALE-Sim's default
//! 6 MB/2 MB SRAMs: 5-30 ms).
//!
//! # Known differences from SCALE-Sim
//! * Reproduced from the read buffer at 22f88b17 (single counting of stall
//!   cycles) and the stored write buffer / scratchpad versions whose drains
//!   do not hold the writing line (those files were not stored at
//!   22f88b17 itself); the vector rows confirm this combination exactly.
//! * DRAM start/stop cycles are computed from the same prefetch/drain
//!   arithmetic but clamped at 0 (SCALE-Sim reports the initial prefetch at
//!   negative cycles); they are not covered by the reference vectors.
//! * Where SCALE-Sim would loop forever (a read SRAM so small that its
//!   window never moves) the word counts as a hit; for inputs it cannot run
//!   (an ofmap SRAM of one word, which leaves no drain half; a filter
//!   larger than the ifmap; empty dimensions) `simulate` returns an empty
//!   report.
//! * Ramulator-driven DRAM latencies and multi-bank SRAM layouts of later
//!   SCALE-Sim versions are not modelled (latency 1 read, 0 write, 1 bank).

mod calc_stream;
mod operands;
mod read_calc;
mod read_user;
#[cfg(test)]
mod reference;
mod write_buffer;

use super::{Dataflow, ScaleSimLayer};
use operands::{Operand, Operands};
use read_calc::CalcReadBuffer;
use read_user::{ReadGeometry, UserReadBuffer};
use write_buffer::WriteBuffer;

/// How the DRAM interface bandwidth is set (SCALE-Sim's InterfaceBandwidth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interface {
    /// SCALE-Sim CALC: bandwidth is computed so that the array never stalls.
    Calc,
    /// SCALE-Sim USER: a fixed number of words per cycle per operand.
    User { words_per_cycle: usize },
}

/// Everything the memory model needs for one layer on one array.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryInput {
    pub dataflow: Dataflow,
    pub rows: usize,
    pub cols: usize,
    pub layer: ScaleSimLayer,
    /// SRAM capacities in words (SCALE-Sim: kB * 1024 with 1-byte words).
    pub ifmap_sram_words: usize,
    pub filter_sram_words: usize,
    pub ofmap_sram_words: usize,
    pub interface: Interface,
}

/// What the memory model reports for one layer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemoryReport {
    pub stall_cycles: u64,
    pub dram_ifmap_reads: u64,
    pub dram_filter_reads: u64,
    pub dram_ofmap_writes: u64,
    /// First and last cycle of DRAM traffic per operand (SCALE-Sim's
    /// DETAILED_ACCESS_REPORT "DRAM ... Start/Stop Cycle").
    pub dram_ifmap_start: u64,
    pub dram_ifmap_stop: u64,
    pub dram_filter_start: u64,
    pub dram_filter_stop: u64,
    pub dram_ofmap_start: u64,
    pub dram_ofmap_stop: u64,
}

/// Run the memory model for one layer.
pub fn simulate(input: &MemoryInput) -> MemoryReport {
    if !input_is_simulable(input) {
        return MemoryReport::default();
    }
    let ops = Operands::new(input);
    match input.interface {
        Interface::Calc => simulate_calc(input, &ops, MAX_IFMAP_PERIOD_WORDS),
        Interface::User { words_per_cycle } => simulate_user(input, &ops, words_per_cycle),
    }
}

/// Layers and arrays SCALE-Sim could run at all: non-empty array and
/// operands, filter no larger than the (padded) ifmap, non-zero SRAMs and
/// an ofmap SRAM of at least two words.
fn input_is_simulable(input: &MemoryInput) -> bool {
    let l = &input.layer;
    input.rows > 0
        && input.cols > 0
        && l.stride > 0
        && l.channels > 0
        && l.num_filters > 0
        && l.filter_h > 0
        && l.filter_w > 0
        && l.filter_h <= l.ifmap_h
        && l.filter_w <= l.ifmap_w
        && input.ifmap_sram_words > 0
        && input.filter_sram_words > 0
        // One ofmap word leaves no drain half (SCALE-Sim fails on it).
        && input.ofmap_sram_words > 1
}

fn to_cycle(c: i64) -> u64 {
    c.max(0) as u64
}

/// USER mode: runs of lines that hit in both read windows and write no
/// more than the ofmap buffer's quiet room are skipped in one step; the
/// remaining lines are serviced word by word.
fn simulate_user(input: &MemoryInput, ops: &Operands, bw: usize) -> MemoryReport {
    let mut ifmap = UserReadBuffer::new(
        ops,
        Operand::Ifmap,
        ReadGeometry::new(input.ifmap_sram_words, bw),
    );
    let mut filter = UserReadBuffer::new(
        ops,
        Operand::Filter,
        ReadGeometry::new(input.filter_sram_words, bw),
    );
    let mut ofmap = WriteBuffer::new(input.ofmap_sram_words, bw);
    let cpf = ops.cycles_per_fold;
    let mut stall: i64 = 0;
    let mut line: i64 = 0;
    let mut last_out = 0i64;
    for fc in 0..ops.col_folds {
        for fr in 0..ops.row_folds {
            let mut tau = 0;
            while tau < cpf {
                let ifmap_quiet = ifmap.quiet_lines(ops, fr, fc, tau);
                let filter_quiet = filter.quiet_lines(ops, fr, fc, tau);
                let reads_quiet = ifmap_quiet.min(filter_quiet);
                let quiet = if reads_quiet == 0 {
                    0
                } else {
                    let (during, after, drain_end) = ofmap.quiet_room();
                    let before_drain_end = (drain_end - (line + stall)).max(0) as usize;
                    let room = WriteRoom {
                        during,
                        after,
                        before_drain_end,
                    };
                    quiet_write_lines(ops, fr, fc, tau, reads_quiet, room)
                };
                if quiet > 0 {
                    let words = ops.ofmap_words_before(fr, fc, tau + quiet)
                        - ops.ofmap_words_before(fr, fc, tau);
                    ofmap.store_quiet(words);
                    line += quiet as i64;
                    tau += quiet;
                    last_out = line - 1 + stall;
                    continue;
                }
                let cycle = line + stall;
                // A line that certainly hits changes nothing in that buffer.
                let i_stall = if ifmap_quiet > 0 {
                    0
                } else {
                    ifmap.service_line(ops, fr, fc, tau, cycle)
                };
                let f_stall = if filter_quiet > 0 {
                    0
                } else {
                    filter.service_line(ops, fr, fc, tau, cycle)
                };
                let words =
                    ops.ofmap_words_before(fr, fc, tau + 1) - ops.ofmap_words_before(fr, fc, tau);
                let out = ofmap.service_line(cycle, words);
                last_out = out;
                stall += i_stall.max(f_stall).max(out - cycle).max(0);
                line += 1;
                tau += 1;
            }
        }
    }
    ofmap.finish(last_out);
    MemoryReport {
        stall_cycles: to_cycle(stall),
        dram_ifmap_reads: ifmap.dram_words,
        dram_filter_reads: filter.dram_words,
        dram_ofmap_writes: ofmap.dram_words,
        dram_ifmap_start: to_cycle(ifmap.first_dram_cycle),
        dram_ifmap_stop: to_cycle(ifmap.last_prefetch_cycle),
        dram_filter_start: to_cycle(filter.first_dram_cycle),
        dram_filter_stop: to_cycle(filter.last_prefetch_cycle),
        dram_ofmap_start: to_cycle(ofmap.first_dram_cycle.unwrap_or(0)),
        dram_ofmap_stop: to_cycle(ofmap.last_dram_cycle),
    }
}

/// Quiet room of the write buffer for the lines about to come.
struct WriteRoom {
    /// Words the lines arriving before the running drain ends may write.
    during: i64,
    /// Words all lines together may write once the drain has ended.
    after: i64,
    /// Lines that arrive before the running drain ends.
    before_drain_end: usize,
}

/// Largest number of lines (at most `limit`) from `tau` whose ofmap words
/// trigger nothing in the write buffer.
fn quiet_write_lines(
    ops: &Operands,
    fr: usize,
    fc: usize,
    tau: usize,
    limit: usize,
    room: WriteRoom,
) -> usize {
    let base = ops.ofmap_words_before(fr, fc, tau);
    let words = |q: usize| (ops.ofmap_words_before(fr, fc, tau + q) - base) as i64;
    let fits = |q: usize| {
        let early = q.min(room.before_drain_end);
        words(early) <= room.during.max(0)
            && (q <= room.before_drain_end
                || words(q) == words(early)
                || words(q) <= room.after.max(0))
    };
    if fits(limit) {
        return limit;
    }
    let (mut ok, mut bad) = (0, limit);
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        if fits(mid) {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    ok
}

/// CALC mode: the read buffers never stall, so the write buffer alone sets
/// the cycles (it runs as in USER mode with a bandwidth of one array width,
/// in quiet runs); the read buffers' misses and slides come from
/// `calc_stream` and are replayed at the cycles of their lines.
fn simulate_calc(input: &MemoryInput, ops: &Operands, max_period_words: usize) -> MemoryReport {
    let mut ifmap = CalcReadBuffer::new(input.ifmap_sram_words, CALC_READ_BW);
    let mut filter = CalcReadBuffer::new(input.filter_sram_words, CALC_READ_BW);
    // A buffer that never closes 50 sets never evicts: each distinct word
    // is read once, in demand order, and nothing else changes.
    let ifmap_evicts = !ifmap.settle_if_never_evicts(ops.distinct_ifmap_words());
    let filter_evicts = !filter.settle_if_never_evicts(ops.filter_words());
    let mut ofmap = WriteBuffer::new(input.ofmap_sram_words, input.cols);
    let mut stalls = StallSteps::default();
    let cpf = ops.cycles_per_fold;
    let mut stall: i64 = 0;
    let mut line: i64 = 0;
    let mut last_out = 0i64;
    for fc in 0..ops.col_folds {
        for fr in 0..ops.row_folds {
            let mut tau = 0;
            while tau < cpf {
                let (during, after, drain_end) = ofmap.quiet_room();
                let before_drain_end = (drain_end - (line + stall)).max(0) as usize;
                let room = WriteRoom {
                    during,
                    after,
                    before_drain_end,
                };
                let quiet = quiet_write_lines(ops, fr, fc, tau, cpf - tau, room);
                if quiet > 0 {
                    let words = ops.ofmap_words_before(fr, fc, tau + quiet)
                        - ops.ofmap_words_before(fr, fc, tau);
                    ofmap.store_quiet(words);
                    line += quiet as i64;
                    tau += quiet;
                    last_out = line - 1 + stall;
                    continue;
                }
                let cycle = line + stall;
                let words =
                    ops.ofmap_words_before(fr, fc, tau + 1) - ops.ofmap_words_before(fr, fc, tau);
                let out = ofmap.service_line(cycle, words);
                last_out = out;
                if out > cycle {
                    stall += out - cycle;
                    stalls.add(line as u64 + 1, stall);
                }
                line += 1;
                tau += 1;
            }
        }
    }
    ofmap.finish(last_out);
    let cycle_of = |line: u64| stalls.cycle(line);
    if ifmap_evicts {
        match calc_stream::ifmap_misses(ops, ifmap.epoch_words(), max_period_words) {
            Some(misses) => misses.replay(&mut ifmap, cycle_of),
            None => calc_stream::feed_ifmap_word_by_word(ops, &mut ifmap, cycle_of),
        }
    }
    if filter_evicts {
        calc_stream::filter_misses(ops, filter.epoch_words()).replay(&mut filter, cycle_of);
    }
    ifmap.finish();
    filter.finish();
    MemoryReport {
        stall_cycles: to_cycle(stall),
        dram_ifmap_reads: ifmap.dram_words,
        dram_filter_reads: filter.dram_words,
        dram_ofmap_writes: ofmap.dram_words,
        dram_ifmap_start: to_cycle(ifmap.first_dram_cycle.unwrap_or(0)),
        dram_ifmap_stop: to_cycle(ifmap.last_dram_cycle),
        dram_filter_start: to_cycle(filter.first_dram_cycle.unwrap_or(0)),
        dram_filter_stop: to_cycle(filter.last_dram_cycle),
        dram_ofmap_start: to_cycle(ofmap.first_dram_cycle.unwrap_or(0)),
        dram_ofmap_stop: to_cycle(ofmap.last_dram_cycle),
    }
}

/// SCALE-Sim's fixed DRAM read bandwidth guess in CALC mode (words/cycle).
const CALC_READ_BW: usize = 10;

/// Ifmap periods (pixels x window cells) above this are fed word by word
/// instead of through a previous-occurrence array (4 bytes per cell).
const MAX_IFMAP_PERIOD_WORDS: usize = 1 << 28;

/// The stall accumulated before each line, as steps: the cycle of global
/// demand line `l` is `l` plus the stall of the last step at or before it.
#[derive(Debug, Default)]
struct StallSteps {
    /// (first line, stall from that line on), lines ascending.
    steps: Vec<(u64, i64)>,
}

impl StallSteps {
    fn add(&mut self, from_line: u64, stall: i64) {
        self.steps.push((from_line, stall));
    }

    fn cycle(&self, line: u64) -> i64 {
        let i = self.steps.partition_point(|&(l, _)| l <= line);
        let stall = if i == 0 { 0 } else { self.steps[i - 1].1 };
        line as i64 + stall
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layer(
        h: usize,
        w: usize,
        fh: usize,
        fw: usize,
        c: usize,
        m: usize,
        s: usize,
    ) -> ScaleSimLayer {
        ScaleSimLayer {
            name: "t".into(),
            ifmap_h: h,
            ifmap_w: w,
            filter_h: fh,
            filter_w: fw,
            channels: c,
            num_filters: m,
            stride: s,
        }
    }

    fn input(
        dataflow: Dataflow,
        rows: usize,
        cols: usize,
        l: ScaleSimLayer,
        sram: [usize; 3],
        interface: Interface,
    ) -> MemoryInput {
        MemoryInput {
            dataflow,
            rows,
            cols,
            layer: l,
            ifmap_sram_words: sram[0],
            filter_sram_words: sram[1],
            ofmap_sram_words: sram[2],
            interface,
        }
    }

    /// Cases per property: `PROPTEST_CASES` when set (`with_cases` would
    /// otherwise ignore it), else `default`.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn dataflow() -> impl Strategy<Value = Dataflow> {
        prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(300)))]
        /// The run-length model gives exactly what the element-by-element
        /// replay of SCALE-Sim gives, on small random layers and SRAMs small
        /// enough to make windows slide, wrap and stall.
        #[test]
        fn run_length_model_equals_element_replay(
            df in dataflow(),
            rows in 1usize..7,
            cols in 1usize..7,
            fh in 1usize..4,
            fw in 1usize..4,
            extra_h in 0usize..5,
            extra_w in 0usize..5,
            c in 1usize..5,
            m in 1usize..9,
            s in 1usize..3,
            isram in 1usize..600,
            fsram in 1usize..600,
            osram in 2usize..300,
            bw in 1usize..12,
            user in any::<bool>(),
        ) {
            let l = layer(fh + extra_h, fw + extra_w, fh, fw, c, m, s);
            let interface = if user { Interface::User { words_per_cycle: bw } } else { Interface::Calc };
            let inp = input(df, rows, cols, l, [isram, fsram, osram], interface);
            prop_assert_eq!(simulate(&inp), reference::simulate_trace(&inp));
        }
    }

    /// SRAM words whose CALC epoch (50 sets of floor(words/100)) holds about
    /// `percent`% of `distinct` words.
    fn sram_for_epoch(distinct: usize, percent: usize) -> usize {
        100 * (distinct * percent).div_ceil(100 * 50).max(1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(300)))]
        /// CALC mode's epoch counting (`calc_stream`) gives exactly what
        /// feeding every word through SCALE-Sim's buffer gives: operands that
        /// do not fit (epochs of 2-99% of the distinct words, so windows
        /// slide, several times per fold for small epochs), partial fits (one
        /// operand fits, the other does not), ofmap SRAMs small enough to
        /// stall (slides land at shifted cycles), and the word-by-word
        /// fallback for ifmap periods over the size limit.
        #[test]
        fn calc_epochs_equal_word_by_word_feeding(
            df in dataflow(),
            rows in 1usize..7,
            cols in 1usize..7,
            fh in 1usize..4,
            fw in 1usize..4,
            extra_h in 0usize..6,
            extra_w in 0usize..6,
            c in 1usize..5,
            m in 1usize..10,
            s in 1usize..3,
            ifmap_pct in prop_oneof![2usize..100, 100usize..200],
            filter_pct in prop_oneof![2usize..100, 100usize..200],
            osram in 2usize..400,
            word_by_word in any::<bool>(),
        ) {
            let l = layer(fh + extra_h, fw + extra_w, fh, fw, c, m, s);
            let probe = input(df, rows, cols, l.clone(), [100, 100, 100], Interface::Calc);
            let ops = Operands::new(&probe);
            let (id, fd) = (ops.distinct_ifmap_words(), ops.filter_words());
            let sram = [sram_for_epoch(id, ifmap_pct), sram_for_epoch(fd, filter_pct), osram];
            let inp = input(df, rows, cols, l, sram, Interface::Calc);
            let limit = if word_by_word { 0 } else { MAX_IFMAP_PERIOD_WORDS };
            let fast = simulate_calc(&inp, &Operands::new(&inp), limit);
            prop_assert_eq!(&fast, &reference::simulate_trace(&inp));
            // Every distinct word misses once, so an epoch smaller than the
            // operand must end at least once: the slides are exercised.
            let epoch = (50 * (sram[0] / 100)) as u64;
            if (id as u64) >= epoch && !word_by_word {
                let misses = calc_stream::ifmap_misses(&ops, epoch, limit).unwrap();
                prop_assert!(!misses.slide_lines.is_empty());
                prop_assert_eq!(misses.total, fast.dram_ifmap_reads);
            }
        }
    }

    #[test]
    fn everything_fits_means_one_initial_fetch_and_no_stall() {
        // 4x4 ifmap x 2 channels = 32 words, 8 filter words: a 1000-word SRAM
        // holds all, so USER mode reads each operand once, in whole lines of
        // 10 words: ceil(active 500 / 10) = 50 lines capped at the fetch
        // matrix (OS ifmap prefetch: 9 pixels x 2 words = 18 cells padded to
        // 4 rows -> 3 blocks x 2 x 4 = 24 cells = 3 lines).
        let inp = input(
            Dataflow::Os,
            4,
            4,
            layer(4, 4, 1, 1, 2, 4, 1),
            [1000, 1000, 1000],
            Interface::User {
                words_per_cycle: 10,
            },
        );
        let r = simulate(&inp);
        assert_eq!(r.stall_cycles, 0);
        // 16 pixels -> 4 row folds x T=2 x R=4 = 32 cells -> 4 lines of 10.
        assert_eq!(r.dram_ifmap_reads, 40);
        // Filter: 1 col fold x T=2 x C=4 = 8 cells -> 1 line of 10.
        assert_eq!(r.dram_filter_reads, 10);
        // 64 ofmap words leave in lines of 10: 6 full lines and one of 4,
        // never draining before the end (64 < active half 500).
        assert_eq!(r.dram_ofmap_writes, 64);
    }

    #[test]
    fn calc_mode_counts_distinct_words_when_sram_is_large() {
        // With sets of floor(100000/100) = 1000 words, nothing is evicted:
        // DRAM reads are the distinct words touched.
        let l = layer(6, 6, 3, 3, 2, 5, 1);
        let inp = input(
            Dataflow::Ws,
            4,
            4,
            l,
            [100_000, 100_000, 100_000],
            Interface::Calc,
        );
        let r = simulate(&inp);
        assert_eq!(r.stall_cycles, 0);
        assert_eq!(r.dram_ifmap_reads, 6 * 6 * 2);
        assert_eq!(r.dram_filter_reads, 3 * 3 * 2 * 5);
        // WS rewrites the ofmap once per row fold: ceil(18/4) = 5 folds x
        // 16 pixels x 5 filters, drained in lines of 4 (array width).
        assert_eq!(r.dram_ofmap_writes, 5 * 16 * 5);
    }

    #[test]
    fn tiny_user_sram_stalls_on_every_refill() {
        // FC layer, 1 pixel x 64 channels x 8 filters on a 2x2 OS array. The
        // filter SRAM holds 16 words (sets of 1 word, 8 active + 8
        // prefetch), the bandwidth is 1 word/cycle: every 8 words the window
        // slides and the line waits for 8 request lines + 1 cycle latency.
        let l = layer(1, 1, 1, 1, 64, 8, 1);
        let inp = input(
            Dataflow::Os,
            2,
            2,
            l,
            [4096, 16, 4096],
            Interface::User { words_per_cycle: 1 },
        );
        let r = simulate(&inp);
        assert!(r.stall_cycles > 0);
        // Initial fetch 8 lines + 8 words per refill; 512 filter words in
        // sets of 1 -> ring of 513 sets; every word is fetched at least once.
        assert!(r.dram_filter_reads >= 512);
        assert_eq!((r.dram_filter_reads - 8) % 8, 0);
        assert_eq!(r, reference::simulate_trace(&inp));
    }

    #[test]
    fn degenerate_inputs_give_an_empty_report() {
        let mut inp = input(
            Dataflow::Os,
            4,
            4,
            layer(2, 2, 3, 3, 1, 1, 1),
            [100, 100, 100],
            Interface::Calc,
        );
        assert_eq!(simulate(&inp), MemoryReport::default());
        inp.layer = layer(4, 4, 3, 3, 1, 1, 1);
        inp.rows = 0;
        assert_eq!(simulate(&inp), MemoryReport::default());
    }
}
