//! Stuck cells of the feature-map buffers: what stuck-at bits in the ifmap
//! and ofmap SRAM (`sram.ifmap`, `sram.ofmap`) do to feature codes, as an
//! algorithmic model the engines and the FTT forward apply.
//!
//! The hardware rule ([`crate::hwsim::sram`]): a buffer of `words` words
//! holds a layer's tensor in tiles, code `i` at address `i mod words`; a
//! stuck bit at `(a, b)` forces bit `b` of every code held at `a` — one code
//! of every tile, in every layer and every image of the chip. The ifmap
//! buffer holds each conv/linear layer's input as the layer reads it (the
//! layer's own copy; other readers of the tensor see the producer's output
//! buffer), the ofmap buffer each layer's output after the fused activation
//! (what every later node reads).
//!
//! The model draws the chip's stuck cells — every bit of every word stuck
//! at 0 with `p0`, at 1 with `p1` — from a stream keyed by the draw
//! ([`super::LayerSite::draw`]: a simulated chip in inference, one forward
//! in training) alone, so every layer and image of a chip sees the same
//! cells at the same addresses, as on the hardware. With the buffer's word
//! count this is the hardware rule itself, not an approximation: only the
//! random numbers differ from a hardware campaign's.

use rand::Rng;

use super::output_hit::check_prob;
use super::skip::Skipper;
use super::twos::{force_bit, supported_width};

/// One of the two feature-map buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureBuffer {
    /// The input buffer: each conv/linear layer's input as it reads it.
    Ifmap,
    /// The output buffer: each conv/linear layer's output after the fused
    /// activation.
    Ofmap,
}

impl FeatureBuffer {
    /// The key in fault-model files.
    pub fn key(self) -> &'static str {
        match self {
            FeatureBuffer::Ifmap => "ifmap",
            FeatureBuffer::Ofmap => "ofmap",
        }
    }
}

/// Stuck cells of one buffer: `words` words, each bit stuck at 0 with `p0`
/// and at 1 with `p1` per chip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckCells {
    pub words: usize,
    pub p0: f64,
    pub p1: f64,
}

/// One stuck bit: word address, bit, stuck value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckCell {
    pub address: usize,
    pub bit: u32,
    pub one: bool,
}

impl StuckCells {
    /// Check the parameter rules; returns the offending key and the rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.words == 0 {
            return Err(("words", "must be at least 1".into()));
        }
        check_prob("p0", self.p0)?;
        check_prob("p1", self.p1)?;
        if self.p0 + self.p1 > 1.0 {
            return Err(("p1", "p0 + p1 must be at most 1".into()));
        }
        Ok(())
    }

    /// The stuck cells of draw `draw` for `bits`-bit codes, in address
    /// order. Deterministic in `(draw, buffer)`; the same for every layer.
    pub fn cells(&self, draw: u64, buffer: FeatureBuffer, bits: u8) -> Vec<StuckCell> {
        let q = self.p0 + self.p1;
        if q <= 0.0 || !supported_width(bits) {
            return Vec::new();
        }
        let salt = match buffer {
            FeatureBuffer::Ifmap => 1,
            FeatureBuffer::Ofmap => 2,
        };
        let mut rng = super::stream(draw, salt, u64::MAX - 7, 0);
        let nb = bits as usize;
        let zero_given_hit = self.p0 / q;
        let mut cells = Vec::new();
        Skipper::new(q).for_each_hit(self.words.saturating_mul(nb), &mut rng, |k, rng| {
            let one = rng.random::<f64>() >= zero_given_hit;
            cells.push(StuckCell {
                address: k / nb,
                bit: (k % nb) as u32,
                one,
            });
        });
        cells
    }

    /// Force `cells` into `codes` (signed `bits`-bit codes, code `i` held
    /// at address `i mod words`).
    pub fn apply(&self, cells: &[StuckCell], bits: u8, codes: &mut [i32]) {
        for c in cells {
            let mut i = c.address;
            while i < codes.len() {
                codes[i] = force_bit(codes[i], c.bit, c.one, bits);
                i += self.words;
            }
        }
    }
}

/// The stuck cells of both feature-map buffers (either may be absent).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StuckBuffers {
    pub ifmap: Option<StuckCells>,
    pub ofmap: Option<StuckCells>,
}

impl StuckBuffers {
    /// The model of `buffer`, if any.
    pub fn get(&self, buffer: FeatureBuffer) -> Option<&StuckCells> {
        match buffer {
            FeatureBuffer::Ifmap => self.ifmap.as_ref(),
            FeatureBuffer::Ofmap => self.ofmap.as_ref(),
        }
    }

    /// True when neither buffer has stuck cells.
    pub fn is_empty(&self) -> bool {
        self.ifmap.is_none() && self.ofmap.is_none()
    }

    /// Force the stuck cells of `buffer` for draw `draw` into `codes`.
    pub fn apply(&self, buffer: FeatureBuffer, draw: u64, bits: u8, codes: &mut [i32]) {
        if let Some(m) = self.get(buffer) {
            m.apply(&m.cells(draw, buffer, bits), bits, codes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_repeat_every_word_count_and_per_draw() {
        let m = StuckCells {
            words: 5,
            p0: 0.0,
            p1: 1.0,
        };
        // every bit of every word stuck at 1: every code becomes -1
        let mut codes = vec![0, 3, -7, 100, -128, 1, 2, 3, 4, 5, 6, 7];
        let cells = m.cells(9, FeatureBuffer::Ifmap, 8);
        assert_eq!(cells.len(), 5 * 8);
        m.apply(&cells, 8, &mut codes);
        assert!(codes.iter().all(|&c| c == -1));
        // a sparse draw: the same cells for the same draw, others for others
        let m = StuckCells {
            words: 64,
            p0: 0.05,
            p1: 0.05,
        };
        let a = m.cells(1, FeatureBuffer::Ofmap, 8);
        assert_eq!(a, m.cells(1, FeatureBuffer::Ofmap, 8));
        assert_ne!(a, m.cells(2, FeatureBuffer::Ofmap, 8));
        assert_ne!(a, m.cells(1, FeatureBuffer::Ifmap, 8));
        // code i and i + words share a cell
        let mut codes = vec![0i32; 200];
        m.apply(&a, 8, &mut codes);
        for i in 0..136 {
            assert_eq!(codes[i], codes[i + 64], "code {i}");
        }
    }

    #[test]
    fn stuck_bit_densities_are_p0_and_p1() {
        let m = StuckCells {
            words: 4096,
            p0: 0.01,
            p1: 0.03,
        };
        let (mut zeros, mut ones) = (0usize, 0usize);
        for draw in 0..20 {
            for c in m.cells(draw, FeatureBuffer::Ifmap, 8) {
                if c.one {
                    ones += 1;
                } else {
                    zeros += 1;
                }
            }
        }
        let n = (20 * 4096 * 8) as f64;
        let (f0, f1) = (zeros as f64 / n, ones as f64 / n);
        assert!((f0 - 0.01).abs() < 5.0 * (0.01 / n).sqrt(), "{f0}");
        assert!((f1 - 0.03).abs() < 5.0 * (0.03 / n).sqrt(), "{f1}");
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |words, p0, p1| StuckCells { words, p0, p1 }.validate().unwrap_err().0;
        assert_eq!(bad(0, 0.1, 0.1), "words");
        assert_eq!(bad(4, -0.1, 0.1), "p0");
        assert_eq!(bad(4, 0.6, 0.6), "p1");
    }
}
