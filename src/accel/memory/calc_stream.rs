//! Where the CALC-mode read buffers miss and slide, found without feeding
//! them word by word.
//!
//! A CALC read buffer works in epochs (`read_calc`): a demanded word misses
//! exactly when it was not demanded since its epoch began, and an epoch ends
//! with its `quota`-th miss. Number the valid words of an operand's demand
//! stream (fold, line, slot order; -1 slots skipped) by position x, and let
//! prev(x) be the position of the previous demand of the same word: x
//! misses iff prev(x) < e, the first position of its epoch.
//!
//! The stream is one *period* repeated: OS and WS demand the same ifmap
//! words for every column fold, OS the same filter fold for every row fold,
//! IS the same filter words for every column fold (WS filters and IS ifmap
//! loads are never repeated: one period). So prev is known from one period:
//!
//! * Filters: a period demands each of its words once, so in every
//!   repetition after the first prev(x) = x - L (L words per period), the
//!   misses of a repetition are a prefix of it, and everything is
//!   arithmetic on positions.
//! * Ifmap: windows overlap, so one pass over the period records for each
//!   position its previous occurrence (for a word's first occurrence in the
//!   period: its last one, minus L, i.e. in the previous repetition). Each
//!   repetition then counts `prev < e - base` over chunks of that array, a
//!   branch-free (vectorised) count, and walks word by word only inside the
//!   chunk where an epoch ends. Once an epoch has lasted a whole period
//!   nothing misses any more.
//!
//! Only the total and the lines of the first demand and of each slide are
//! kept: the caller turns lines into cycles (the write buffer's stalls shift
//! them) and replays them into a `CalcReadBuffer`.

use super::operands::Operands;
use super::read_calc::{CalcReadBuffer, CalcWordTable};
use super::Dataflow;

/// The misses of one operand's stream and the demand lines (global line
/// index: fold * cycles_per_fold + line) that matter for its DRAM cycles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CalcMisses {
    pub total: u64,
    /// Line of the first demanded word.
    pub first_line: Option<u64>,
    /// Line of the word that ends each epoch.
    pub slide_lines: Vec<u64>,
}

impl CalcMisses {
    /// Put the misses into `buf` (fresh, with epochs of `quota` words),
    /// slides at the cycles `cycle_of` gives for their lines.
    pub fn replay(&self, buf: &mut CalcReadBuffer, cycle_of: impl Fn(u64) -> i64) {
        let quota = buf.epoch_words();
        if let Some(line) = self.first_line {
            buf.note_line(cycle_of(line), true);
        }
        for &line in &self.slide_lines {
            buf.miss_words(quota, cycle_of(line));
        }
        // Fewer than an epoch's worth: no slide, so no cycle is recorded.
        buf.miss_words(self.total - quota * self.slide_lines.len() as u64, 0);
    }
}

/// Epoch bookkeeping over stream positions.
struct Epochs {
    quota: u64,
    /// First position of the current epoch.
    start: u64,
    /// Misses so far in the current epoch.
    misses: u64,
    total: u64,
    /// Positions of the words that ended an epoch.
    slides: Vec<u64>,
}

impl Epochs {
    fn new(quota: u64) -> Epochs {
        debug_assert!(quota > 0, "a buffer with no sets never slides");
        Epochs {
            quota,
            start: 0,
            misses: 0,
            total: 0,
            slides: Vec::new(),
        }
    }

    fn room(&self) -> u64 {
        self.quota - self.misses
    }

    /// The `n` words at positions `x..x + n` all miss.
    fn miss_run(&mut self, mut x: u64, mut n: u64) {
        while n > 0 {
            let room = self.room();
            if n < room {
                self.misses += n;
                self.total += n;
                return;
            }
            self.total += room;
            x += room;
            n -= room;
            self.slides.push(x - 1);
            self.start = x;
            self.misses = 0;
        }
    }
}

/// Smallest t in `lo..hi` with `pred(t)` (pred monotone false..true), or hi.
fn first_true(mut lo: usize, mut hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Folds of a filter stream period: a period is `folds` (fr, fc) in
/// order, repeated `reps` times starting at global fold `first_fold`.
struct FilterGroup {
    first_fold: usize,
    folds: Vec<(usize, usize)>,
    /// Words before each fold of the period (and the period's total last).
    fold_start: Vec<u64>,
    reps: usize,
}

impl FilterGroup {
    fn new(ops: &Operands, first_fold: usize, folds: Vec<(usize, usize)>, reps: usize) -> Self {
        let mut fold_start = Vec::with_capacity(folds.len() + 1);
        let mut words = 0;
        for &(fr, fc) in &folds {
            fold_start.push(words);
            words += ops.filter_words_before(fr, fc, ops.cycles_per_fold);
        }
        fold_start.push(words);
        FilterGroup {
            first_fold,
            folds,
            fold_start,
            reps,
        }
    }

    fn period_words(&self) -> u64 {
        *self.fold_start.last().unwrap_or(&0)
    }

    /// Global line of the word at position `x` of this group.
    fn line_of(&self, ops: &Operands, x: u64) -> u64 {
        let period = self.period_words();
        let (rep, j) = (x / period, x % period);
        let fi = self.fold_start.partition_point(|&s| s <= j) - 1;
        let (fr, fc) = self.folds[fi];
        let within = j - self.fold_start[fi];
        let tau = first_true(0, ops.cycles_per_fold, |t| {
            ops.filter_words_before(fr, fc, t + 1) > within
        });
        let fold = self.first_fold + rep as usize * self.folds.len() + fi;
        (fold * ops.cycles_per_fold + tau) as u64
    }
}

/// The filter stream as groups of repeated periods (see the module doc).
fn filter_groups(ops: &Operands) -> Vec<FilterGroup> {
    let (rf, cf) = (ops.row_folds, ops.col_folds);
    match ops.dataflow {
        Dataflow::Os => (0..cf)
            .map(|fc| FilterGroup::new(ops, fc * rf, vec![(0, fc)], rf))
            .collect(),
        Dataflow::Ws => {
            let folds = (0..cf)
                .flat_map(|fc| (0..rf).map(move |fr| (fr, fc)))
                .collect();
            vec![FilterGroup::new(ops, 0, folds, 1)]
        }
        Dataflow::Is => vec![FilterGroup::new(
            ops,
            0,
            (0..rf).map(|fr| (fr, 0)).collect(),
            cf,
        )],
    }
}

/// Misses and slides of the filter read buffer with epochs of `quota`
/// words.
pub(crate) fn filter_misses(ops: &Operands, quota: u64) -> CalcMisses {
    let groups = filter_groups(ops);
    let mut ep = Epochs::new(quota);
    let mut group_start = Vec::with_capacity(groups.len());
    let mut pos = 0u64;
    for g in &groups {
        group_start.push(pos);
        let len = g.period_words();
        for r in 0..g.reps as u64 {
            let base = pos + r * len;
            if r == 0 {
                // First demand of each of these words.
                ep.miss_run(base, len);
                continue;
            }
            // prev(x) = x - len: words before `start + len - base` were last
            // demanded before the epoch began.
            let mut j = 0;
            loop {
                let limit = (ep.start + len).saturating_sub(base).min(len);
                if limit <= j {
                    break;
                }
                let n = (limit - j).min(ep.room());
                ep.miss_run(base + j, n);
                j += n;
            }
        }
        pos += g.reps as u64 * len;
    }
    let line_of = |x: u64| {
        let gi = group_start.partition_point(|&s| s <= x) - 1;
        groups[gi].line_of(ops, x - group_start[gi])
    };
    CalcMisses {
        total: ep.total,
        first_line: (pos > 0).then(|| line_of(0)),
        slide_lines: ep.slides.iter().map(|&x| line_of(x)).collect(),
    }
}

/// One period of the ifmap stream with each position's previous
/// occurrence (see the module doc).
#[derive(Default)]
struct IfmapPeriod {
    /// Position of the previous demand of the same word: within the period,
    /// or (first occurrence) its last one in the period minus the period
    /// length.
    prev: Vec<i32>,
    /// First position of each line of the period (and the length last).
    line_start: Vec<u32>,
    /// Scratch: last position of each ifmap word in the period.
    last: Vec<u32>,
    reps: usize,
}

/// Positions per chunk of the branch-free miss count.
const CHUNK: usize = 4096;

/// "Not demanded yet" in the last-occurrence table.
const NEVER: u32 = u32::MAX;

thread_local! {
    /// The last period's buffers, reused so that a network's layers do not
    /// each fault in fresh pages (tens of MB per network).
    static SCRATCH: std::cell::Cell<IfmapPeriod> = const {
        std::cell::Cell::new(IfmapPeriod {
            prev: Vec::new(),
            line_start: Vec::new(),
            last: Vec::new(),
            reps: 0,
        })
    };
}

impl IfmapPeriod {
    /// Walk one period; `None` when it has more than `max_words` cells.
    fn build(ops: &Operands, max_words: usize) -> Option<IfmapPeriod> {
        // Every (pixel, window word) cell is demanded once per period.
        let cells = ops.pixels.checked_mul(ops.window)?;
        // Positions and (negated) addresses are held in i32.
        if cells > max_words
            || cells >= (i32::MAX / 2) as usize
            || ops.ifmap_words() >= (i32::MAX / 2) as usize
        {
            return None;
        }
        let (rf, cf) = (ops.row_folds, ops.col_folds);
        let (folds, reps): (Vec<(usize, usize)>, usize) = match ops.dataflow {
            Dataflow::Os | Dataflow::Ws => ((0..rf).map(|fr| (fr, 0)).collect(), cf),
            Dataflow::Is => (
                (0..cf)
                    .flat_map(|fc| (0..rf).map(move |fr| (fr, fc)))
                    .collect(),
                1,
            ),
        };
        let addressing = ops.ifmap_addressing();
        let mut period = SCRATCH.with(|s| s.take());
        period.prev.clear();
        period.prev.reserve(cells);
        period.line_start.clear();
        period
            .line_start
            .reserve(folds.len() * ops.cycles_per_fold + 1);
        // Last position of each word so far; NEVER when not demanded.
        let last = &mut period.last;
        last.clear();
        last.resize(ops.ifmap_words(), NEVER);
        let prev = &mut period.prev;
        for &(fr, fc) in &folds {
            for tau in 0..ops.cycles_per_fold {
                period.line_start.push(prev.len() as u32);
                let Some(line) = ops.ifmap_line(fr, fc, tau) else {
                    continue;
                };
                for s in line.s_lo..=line.s_hi {
                    let p = (line.p0 + line.dp * s as i64) as usize;
                    let k = (line.k0 + line.dk * s as i64) as usize;
                    let Some(a) = addressing.addr(p, k) else {
                        continue;
                    };
                    let q = last[a];
                    // Branch-free: a first occurrence holds -1 - address
                    // until its last occurrence is known.
                    prev.push(if q == NEVER { -1 - a as i32 } else { q as i32 });
                    last[a] = prev.len() as u32 - 1;
                }
            }
        }
        period.line_start.push(prev.len() as u32);
        // A word's first occurrence repeats its last one of the previous
        // period.
        let len = prev.len() as i64;
        for v in prev.iter_mut().filter(|v| **v < 0) {
            let a = (-1 - *v) as usize;
            *v = (last[a] as i64 - len) as i32;
        }
        period.reps = reps;
        Some(period)
    }

    /// Global line of the word at stream position `x`.
    fn line_of(&self, x: u64) -> u64 {
        let len = self.prev.len() as u64;
        let (rep, j) = (x / len, x % len);
        let li = self.line_start.partition_point(|&s| s as u64 <= j) - 1;
        rep * (self.line_start.len() as u64 - 1) + li as u64
    }

    fn misses(&self, quota: u64) -> CalcMisses {
        let mut ep = Epochs::new(quota);
        let len = self.prev.len();
        'reps: for r in 0..self.reps {
            let base = (r * len) as i64;
            let mut j = 0;
            while j < len {
                // x misses iff prev < start - base (relative to this period).
                let threshold = ep.start as i64 - base;
                if threshold <= -(len as i64) {
                    // prev >= -len: the epoch holds every word from now on.
                    break 'reps;
                }
                // |prev| < len < 2^30: clamping keeps every comparison.
                let t = threshold.min(i32::MAX as i64) as i32;
                let end = (j + CHUNK).min(len);
                let chunk = &self.prev[j..end];
                let n = chunk.iter().map(|&p| (p < t) as u32).sum::<u32>() as u64;
                if n < ep.room() {
                    ep.miss_run(base as u64 + j as u64, n);
                    j = end;
                    continue;
                }
                // The epoch ends in this chunk: find the word.
                let mut left = ep.room();
                for (i, &p) in chunk.iter().enumerate() {
                    if p < t {
                        left -= 1;
                        if left == 0 {
                            // The misses before it in the chunk, then it.
                            let before = ep.room() - 1;
                            ep.misses += before;
                            ep.total += before;
                            ep.miss_run(base as u64 + (j + i) as u64, 1);
                            j += i + 1;
                            break;
                        }
                    }
                }
            }
        }
        CalcMisses {
            total: ep.total,
            first_line: (len > 0).then(|| self.line_of(0)),
            slide_lines: ep.slides.iter().map(|&x| self.line_of(x)).collect(),
        }
    }
}

/// Misses and slides of the ifmap read buffer with epochs of `quota`
/// words; `None` when a period has more than `max_period_words` cells
/// (then feed it word by word).
pub(crate) fn ifmap_misses(
    ops: &Operands,
    quota: u64,
    max_period_words: usize,
) -> Option<CalcMisses> {
    let period = IfmapPeriod::build(ops, max_period_words)?;
    let misses = period.misses(quota);
    SCRATCH.with(|s| s.set(period));
    Some(misses)
}

/// SCALE-Sim's way: every demanded ifmap word through the word table, at
/// the cycle of its line.
pub(crate) fn feed_ifmap_word_by_word(
    ops: &Operands,
    buf: &mut CalcReadBuffer,
    cycle_of: impl Fn(u64) -> i64,
) {
    let mut table = CalcWordTable::new(0, ops.ifmap_words());
    let mut line = 0u64;
    for fc in 0..ops.col_folds {
        for fr in 0..ops.row_folds {
            for tau in 0..ops.cycles_per_fold {
                let mut cycle = None;
                for slot in 0..ops.ifmap_slots() {
                    let a = ops.ifmap_demand(fr, fc, tau, slot);
                    if a < 0 {
                        continue;
                    }
                    let c = *cycle.get_or_insert_with(|| cycle_of(line));
                    buf.note_line(c, true);
                    table.demand(buf, c, a);
                }
                line += 1;
            }
        }
    }
}
