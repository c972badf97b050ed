//! SRAM/DRAM memory model (owned by the memory-model work; see its doc).
//! INTERFACE FIXED BY THE SKELETON: `MemoryInput`, `Interface`, `simulate`.

use super::{Dataflow, ScaleSimLayer};

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
    let _ = input;
    MemoryReport::default()
}
