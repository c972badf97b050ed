//! The on-chip SRAM buffers as fault sites: `sram.ifmap`, `sram.filter`,
//! `sram.ofmap`, their word layout, and which codes a fault at a word
//! corrupts, when, and for how long.
//!
//! # Layout
//!
//! Each buffer is an array of `words` words (the description's
//! `[buffers]` size in words, [`crate::accel::Derived`]); a word holds one
//! integer code of the operand's width (`act_bits` for ifmap and ofmap,
//! `weight_bits` for filter; bit 0 is the least significant, the top bit
//! the sign). While conv/linear layer `L` runs (the `L`-th MAC layer of the
//! model, see [`super::network`]):
//! - `sram.ifmap` holds `L`'s input feature map codes in CHW order (for a
//!   linear layer, the flattened input);
//! - `sram.filter` holds `L`'s weight codes in the layout
//!   `[out, in/groups, kh, kw]`;
//! - `sram.ofmap` holds `L`'s output codes in CHW order after bias,
//!   requantization and the fused activation: what the following layers read.
//!
//! A tensor larger than its buffer is processed in tiles of `words` codes:
//! code `i` lives at address `i % words` during tile `i / words`, and the
//! tiles are resident one after the other, evenly spread over the layer's
//! cycles (tile `t` of `n` during layer cycles `c` with `c * n / cycles = t`).
//!
//! # Residency rule (what a fault corrupts)
//!
//! - **Stuck-at** cells are permanent: a stuck bit at address `a` corrupts
//!   the code of every tile held there (`i % words == a`) in every layer.
//! - **Transient flips** at `(layer L, address a, bit, cycle c)` hit the
//!   code resident at `a` in cycle `c` (tile `c * n / cycles`; an address
//!   past the end of the tensor holds nothing and the flip is masked). The
//!   flipped word persists until it is overwritten, and every buffer is
//!   rewritten with the next layer's data when layer `L+1` starts, so:
//!   - `sram.ifmap` / `sram.filter`: the flipped code is what layer `L`'s
//!     GEMMs read. The flip-to-read resolution is the GEMM (one group of
//!     the layer): a code is read only by its own group's GEMM (group `gi`
//!     reads input channels `gi*C/g..` and filters `gi*M/g..`), and a flip
//!     in a cycle before that GEMM ends is seen by all of its reads of the
//!     code; a flip after it ends is masked (the code is never read again
//!     before the next layer overwrites the buffer). Reads within the GEMM
//!     that in the hardware happen before the flip cycle are taken to happen
//!     after it: an upper bound on the flip's effect, exact when the code is
//!     read after the flip (e.g. in a later fold).
//!   - `sram.ofmap`: the flipped output code is what every later node reads
//!     (next layers, residual adds, concats); the copy the array wrote is
//!     lost, so the corruption reaches the network output.
//!
//! Faults are applied to the codes before the array reads them (ifmap,
//! filter) or after the layer wrote them (ofmap); a flipped or stuck bit of
//! a `w`-bit code is sign-extended again, so the code stays in range.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::kernel::BitOp;
use super::FaultKind;

/// One of the three SRAM buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SramBuffer {
    #[serde(rename = "sram.ifmap")]
    Ifmap,
    #[serde(rename = "sram.filter")]
    Filter,
    #[serde(rename = "sram.ofmap")]
    Ofmap,
}

impl SramBuffer {
    pub const ALL: [SramBuffer; 3] = [SramBuffer::Ifmap, SramBuffer::Filter, SramBuffer::Ofmap];

    /// The site's name as used in fault files and reports.
    pub fn name(self) -> &'static str {
        match self {
            SramBuffer::Ifmap => "sram.ifmap",
            SramBuffer::Filter => "sram.filter",
            SramBuffer::Ofmap => "sram.ofmap",
        }
    }
}

impl fmt::Display for SramBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SramBuffer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SramBuffer::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown SRAM fault site '{s}', expected one of sram.ifmap, sram.filter, sram.ofmap"
                )
            })
    }
}

/// One fault in one SRAM word. A `Flip`'s cycle is in the numbering of the
/// layer it is addressed to (see [`super::network`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SramFault {
    pub buffer: SramBuffer,
    /// Word address, `0..words` of the buffer.
    pub address: usize,
    /// Bit of the code, `0` = least significant.
    pub bit: u8,
    pub kind: FaultKind,
}

impl SramFault {
    fn op(&self) -> BitOp {
        match self.kind {
            FaultKind::Flip { .. } => BitOp::Flip(self.bit),
            FaultKind::StuckAt0 => BitOp::Stuck0(self.bit),
            FaultKind::StuckAt1 => BitOp::Stuck1(self.bit),
        }
    }

    /// Apply to the `codes` (`width`-bit) a layer keeps in a buffer of
    /// `words` words, for a layer of `cycles` cycles (see the module doc).
    pub fn apply(&self, codes: &mut [i32], width: u32, words: usize, cycles: u64) {
        let op = self.op();
        match self.kind {
            FaultKind::Flip { cycle } => {
                if let Some(i) = resident_index(self.address, cycle, codes.len(), words, cycles) {
                    codes[i] = op.apply(codes[i], width);
                }
            }
            FaultKind::StuckAt0 | FaultKind::StuckAt1 => {
                let mut i = self.address;
                while i < codes.len() {
                    codes[i] = op.apply(codes[i], width);
                    i += words;
                }
            }
        }
    }
}

/// The index of the code held at `address` during layer cycle `cycle`, for a
/// tensor of `len` codes in a buffer of `words` words and a layer of
/// `cycles` cycles; `None` when the address holds nothing then.
pub fn resident_index(
    address: usize,
    cycle: u64,
    len: usize,
    words: usize,
    cycles: u64,
) -> Option<usize> {
    if words == 0 || len == 0 || cycles == 0 {
        return None;
    }
    let tiles = len.div_ceil(words) as u128;
    let tile = (cycle as u128 * tiles / cycles as u128).min(tiles - 1) as usize;
    let i = tile * words + address;
    (address < words && i < len).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in SramBuffer::ALL {
            assert_eq!(b.name().parse::<SramBuffer>().unwrap(), b);
        }
        assert!("sram.psum".parse::<SramBuffer>().is_err());
    }

    #[test]
    fn tiles_follow_the_cycles() {
        // 10 codes in 4 words: 3 tiles over 30 cycles.
        assert_eq!(resident_index(1, 0, 10, 4, 30), Some(1));
        assert_eq!(resident_index(1, 9, 10, 4, 30), Some(1));
        assert_eq!(resident_index(1, 10, 10, 4, 30), Some(5));
        assert_eq!(resident_index(1, 29, 10, 4, 30), Some(9));
        assert_eq!(resident_index(3, 29, 10, 4, 30), None);
        assert_eq!(resident_index(4, 0, 10, 4, 30), None);
        // A tensor that fits: the tile is always 0.
        assert_eq!(resident_index(2, 99, 3, 8, 100), Some(2));
    }

    #[test]
    fn stuck_cells_hit_every_tile_and_flips_one_code() {
        let mut codes = vec![0i32; 10];
        let stuck = SramFault {
            buffer: SramBuffer::Ifmap,
            address: 1,
            bit: 0,
            kind: FaultKind::StuckAt1,
        };
        stuck.apply(&mut codes, 8, 4, 30);
        assert_eq!(codes, [0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        let flip = SramFault {
            bit: 7,
            kind: FaultKind::Flip { cycle: 12 },
            ..stuck
        };
        flip.apply(&mut codes, 8, 4, 30);
        assert_eq!(codes[5], 1 - 128);
        assert_eq!(codes.iter().filter(|&&c| c < 0).count(), 1);
    }
}
