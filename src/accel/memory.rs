//! SRAM/DRAM memory model (owned by the memory-model work; see its doc).
//! INTERFACE FIXED BY THE SKELETON: `MemoryInput`, `Interface`, `simulate`.

mod operands;
mod read_calc;
mod read_user;
mod write_buffer;

use super::{Dataflow, ScaleSimLayer};
use operands::{Operands, FILTER_OFFSET};
use read_calc::CalcReadBuffer;
use read_user::{ReadGeometry, SetMap, UserReadBuffer};
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

enum ReadSide {
    Calc(CalcReadBuffer),
    User(UserReadBuffer),
}

/// Run the memory model for one layer.
pub fn simulate(input: &MemoryInput) -> MemoryReport {
    let ops = Operands::new(input);
    let (mut ifmap, mut filter, ofmap_bw) = match input.interface {
        Interface::Calc => (
            ReadSide::Calc(CalcReadBuffer::new(
                0,
                ops.ifmap_words(),
                input.ifmap_sram_words,
                10,
            )),
            ReadSide::Calc(CalcReadBuffer::new(
                FILTER_OFFSET,
                ops.filter_words(),
                input.filter_sram_words,
                10,
            )),
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
    let mut ofmap = WriteBuffer::new(input.ofmap_sram_words, ofmap_bw);
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
        ReadSide::Calc(b) => {
            let mut any = false;
            for a in addrs {
                if a >= 0 {
                    if !any {
                        b.note_line(cycle, true);
                        any = true;
                    }
                    b.demand(cycle, a);
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
        ReadSide::Calc(mut b) => {
            b.finish();
            (
                b.dram_words,
                b.first_dram_cycle.unwrap_or(0).max(0) as u64,
                b.last_dram_cycle.max(0) as u64,
            )
        }
    }
}
