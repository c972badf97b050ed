//! Weight stuck-at bits: each bit `b` of each weight code (two's
//! complement, `bits` wide) is stuck at 0 with probability `p0[b]` and at 1
//! with probability `p1[b]` (disjoint events, so `p0[b] + p1[b] <= 1`). A
//! stuck bit forces its value into the code; a bit already at the stuck
//! value is unchanged. Whether a sample lasts for a chip (inference) or one
//! forward (training) is the caller's choice
//! ([`super::FaultModel::weight_persistent`]).
//!
//! Sampling: for each bit position, geometric skipping over the weights
//! with `q = p0[b] + p1[b]`; a hit is stuck-at-0 with probability `p0/q`.
//!
//! # Shared stuck bits (`shared`)
//!
//! On hardware one stuck register bit is a stuck bit of *every* weight the
//! register holds: a weight-stationary PE's weight register holds `W[k][m]`
//! for `k = r, r + R, ...` and `m = c, c + C, ...`; a bit-serial SIP weight
//! register holds every tap of channels `l, l + lanes, ...` of filters
//! `f, f + filter_rows, ...`. Drawn independently per weight, the same
//! number of stuck bits spreads over many output channels; held by one
//! register they line up in one, which costs far more accuracy (README,
//! "weight faults from stuck cells"). [`SharedStuck`] describes such a
//! register file: `filters x reduction` registers, weight `(m, k)` of a
//! group held by register `(m mod filters, u mod reduction)` with `u = k`
//! (`per = "term"`) or `u = k / taps` (`per = "channel"`), each register
//! bit stuck at 0 / 1 with `p0` / `p1` once per draw — a chip, or a training
//! forward: the register bits come from [`super::shared_stream`] of
//! [`LayerSite::draw`], not from the layer's stream, so every layer of a
//! chip sees the same stuck registers, as on the hardware. Groups of a grouped
//! convolution run one after another through the same registers, so group
//! `g`'s weight `(m, k)` shares with every other group's. The shared bits
//! act after the independent ones (the register latches what the buffer
//! delivered), so a weight bit ends up forced to 0 with
//! `r0 + (1 - r0 - r1) * p0` — the marginals of a register-free model with
//! those rates, with the hardware's alignment.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::output_hit::check_prob;
use super::skip::Skipper;
use super::twos::force_bit;
use super::twos::supported_width;
use super::{LayerSite, WeightInjector};

/// A probability for every bit position: one value for all bits, or one
/// per bit (index 0 = LSB; positions beyond the list have probability 0).
#[derive(Debug, Clone, PartialEq)]
pub enum PerBit {
    Uniform(f64),
    Bits(Vec<f64>),
}

impl PerBit {
    /// The probability of bit `b`.
    #[inline]
    pub fn at(&self, b: usize) -> f64 {
        match self {
            PerBit::Uniform(p) => *p,
            PerBit::Bits(v) => v.get(b).copied().unwrap_or(0.0),
        }
    }

    /// Number of listed bit positions (`None` for a uniform value).
    pub fn listed_bits(&self) -> Option<usize> {
        match self {
            PerBit::Uniform(_) => None,
            PerBit::Bits(v) => Some(v.len()),
        }
    }

    fn validate(&self, key: &'static str) -> Result<(), (&'static str, String)> {
        match self {
            PerBit::Uniform(p) => check_prob(key, *p),
            PerBit::Bits(v) => {
                if v.is_empty() {
                    return Err((key, "per-bit list must not be empty".into()));
                }
                for (i, p) in v.iter().enumerate() {
                    check_prob(key, *p).map_err(|(k, m)| (k, format!("bit {i}: {m}")))?;
                }
                Ok(())
            }
        }
    }
}

/// Stuck-at-0 / stuck-at-1 probabilities per bit.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckAt {
    /// Each weight bit independently (e.g. its own SRAM cell).
    pub p0: PerBit,
    pub p1: PerBit,
    /// Stuck bits of registers that hold many weights (module doc).
    pub shared: Option<SharedStuck>,
}

/// What indexes the reduction dimension of a register file that holds
/// weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareUnit {
    /// Every term `k = c * taps + tap` on its own (systolic array rows).
    Term,
    /// Every input channel `c = k / taps`, all its taps in one register
    /// (bit-serial lanes).
    Channel,
}

impl ShareUnit {
    /// The name in fault-model files.
    pub fn name(&self) -> &'static str {
        match self {
            ShareUnit::Term => "term",
            ShareUnit::Channel => "channel",
        }
    }
}

/// A stuck-at-0 / stuck-at-1 pair of one bit at factor `k`: both times
/// `k`, divided by their sum where it passes 1 (`p0 + p1 <= 1`, the ratio
/// kept).
pub fn scale_pair(p0: f64, p1: f64, k: f64) -> (f64, f64) {
    let (a, b) = (p0 * k, p1 * k);
    if a + b > 1.0 {
        let a = a / (a + b);
        (a, 1.0 - a)
    } else {
        (a, b)
    }
}

/// Stuck bits of a `filters x reduction` register file holding weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedStuck {
    /// Probability that a register bit is stuck at 0 / at 1.
    pub p0: f64,
    pub p1: f64,
    /// Registers along the filters (output channels of one group).
    pub filters: usize,
    /// Registers along the reduction.
    pub reduction: usize,
    pub per: ShareUnit,
}

impl SharedStuck {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        check_prob("shared.p0", self.p0)?;
        check_prob("shared.p1", self.p1)?;
        if self.p0 + self.p1 > 1.0 + 1e-12 {
            return Err((
                "shared.p1",
                format!(
                    "p0 + p1 must be <= 1 (disjoint events), found {}",
                    self.p0 + self.p1
                ),
            ));
        }
        for (k, v) in [
            ("shared.filters", self.filters),
            ("shared.reduction", self.reduction),
        ] {
            if v == 0 {
                return Err((k, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// Weight indices (layout `[out, in/groups, kh, kw]`) held by register
    /// `(row, col)` of a layer with `out` filters, `k` weights per filter,
    /// `taps` taps and `groups` groups.
    fn held_by(
        &self,
        row: usize,
        col: usize,
        shape: LayerShape,
    ) -> impl Iterator<Item = usize> + '_ {
        let LayerShape {
            k,
            taps,
            per_group,
            groups,
        } = shape;
        let span = match self.per {
            ShareUnit::Term => 1,
            ShareUnit::Channel => taps,
        };
        let units = k / span;
        (0..groups).flat_map(move |g| {
            (row..per_group).step_by(self.filters).flat_map(move |m| {
                let base = (g * per_group + m) * k;
                (col..units)
                    .step_by(self.reduction)
                    .flat_map(move |u| base + u * span..base + (u + 1) * span)
            })
        })
    }

    /// Indices of the weights (layout `[out, in/groups, kh, kw]`, `k =
    /// C_in/groups * taps` per filter) that register `(row, col)` holds in
    /// a layer of `out` filters: what one stuck bit of it corrupts.
    pub fn weights_held_by(
        &self,
        row: usize,
        col: usize,
        out: usize,
        k: usize,
        taps: usize,
        groups: usize,
    ) -> Vec<usize> {
        let groups = groups.max(1);
        let shape = LayerShape {
            k,
            taps: taps.max(1),
            per_group: out / groups,
            groups,
        };
        self.held_by(row, col, shape).collect()
    }

    /// Draw the register file's stuck bits from `rng` and force them into
    /// `codes`. The whole file is drawn, in the same order for every layer,
    /// so layers drawing from equal streams see the same stuck registers
    /// (those outside the layer's corner of the file corrupt nothing).
    fn apply<R: Rng + ?Sized>(&self, bits: u8, shape: LayerShape, codes: &mut [i32], rng: &mut R) {
        let units = match self.per {
            ShareUnit::Term => shape.k,
            ShareUnit::Channel => shape.k / shape.taps,
        };
        let (rows, cols) = (self.filters, self.reduction);
        let q = self.p0 + self.p1;
        let zero_given_hit = if q > 0.0 { self.p0 / q } else { 0.0 };
        for b in 0..bits as u32 {
            Skipper::new(q).for_each_hit(rows * cols, rng, |r, rng| {
                let one = rng.random::<f64>() >= zero_given_hit;
                let (row, col) = (r / cols, r % cols);
                if row < shape.per_group && col < units {
                    for i in self.held_by(row, col, shape) {
                        codes[i] = force_bit(codes[i], b, one, bits);
                    }
                }
            });
        }
    }
}

/// The shape of one layer's weight tensor, as [`SharedStuck`] maps it.
#[derive(Debug, Clone, Copy)]
struct LayerShape {
    /// Weights per filter (`C_in/groups * taps`).
    k: usize,
    taps: usize,
    /// Filters per group.
    per_group: usize,
    groups: usize,
}

impl LayerShape {
    fn of(site: &LayerSite, len: usize) -> Option<LayerShape> {
        let (k, taps, groups) = (site.macs_per_output, site.taps.max(1), site.groups.max(1));
        if k == 0
            || !len.is_multiple_of(k)
            || !k.is_multiple_of(taps)
            || !(len / k).is_multiple_of(groups)
        {
            return None;
        }
        Some(LayerShape {
            k,
            taps,
            per_group: len / k / groups,
            groups,
        })
    }
}

impl StuckAt {
    /// Check the rules: probabilities in [0, 1], `p0 + p1 <= 1` per bit,
    /// per-bit lists of equal length.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.p0.validate("p0")?;
        self.p1.validate("p1")?;
        if let (Some(a), Some(b)) = (self.p0.listed_bits(), self.p1.listed_bits()) {
            if a != b {
                return Err((
                    "p1",
                    format!("per-bit p1 has {b} entries but p0 has {a}; they must match"),
                ));
            }
        }
        let n = self.p0.listed_bits().or(self.p1.listed_bits()).unwrap_or(1);
        for b in 0..n {
            let s = self.p0.at(b) + self.p1.at(b);
            if s > 1.0 + 1e-12 {
                return Err((
                    "p1",
                    format!("p0 + p1 must be <= 1 (disjoint events), found {s} at bit {b}"),
                ));
            }
        }
        match &self.shared {
            Some(sh) => sh.validate(),
            None => Ok(()),
        }
    }

    /// Stick bits of one layer's weight codes (layout `[out, in/groups, kh,
    /// kw]`): the independent bits from `rng`, then the shared register
    /// bits, which depend only on `site.draw` (the same stuck registers for
    /// every layer of one chip or training forward).
    pub fn apply_layer<R: Rng + ?Sized>(&self, site: &LayerSite, codes: &mut [i32], rng: &mut R) {
        let bits = site.format.bits;
        self.apply(bits, codes, rng);
        if let Some(sh) = &self.shared {
            if !supported_width(bits) {
                return;
            }
            // A tensor whose length does not fit the site's shape is not a
            // weight tensor of this layer; nothing to map registers onto.
            // One register file serves every layer: its stuck bits come
            // from the draw's shared stream, not the layer's.
            if let Some(shape) = LayerShape::of(site, codes.len()) {
                sh.apply(bits, shape, codes, &mut super::shared_stream(site.draw));
            }
        }
    }

    /// Stick the independent bits of `codes` (signed `bits`-bit codes).
    pub fn apply<R: Rng + ?Sized>(&self, bits: u8, codes: &mut [i32], rng: &mut R) {
        if !supported_width(bits) {
            return;
        }
        for b in 0..bits as usize {
            let p0 = self.p0.at(b);
            let q = p0 + self.p1.at(b);
            let zero_given_hit = if q > 0.0 { p0 / q } else { 0.0 };
            Skipper::new(q).for_each_hit(codes.len(), rng, |i, rng| {
                let one = rng.random::<f64>() >= zero_given_hit;
                codes[i] = force_bit(codes[i], b as u32, one, bits);
            });
        }
    }
}

impl WeightInjector for StuckAt {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.apply_layer(site, codes, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn certain_stuck_bits() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        // Bit 0 always stuck at 1, bit 7 always stuck at 0.
        let m = StuckAt {
            p0: PerBit::Bits(vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            p1: PerBit::Bits(vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            shared: None,
        };
        let mut codes = vec![0, 1, -1, -128, 127];
        m.apply(8, &mut codes, &mut rng);
        assert_eq!(codes, vec![1, 1, 127, 1, 127]);
    }

    fn site(k: usize, taps: usize, groups: usize, draw: u64) -> LayerSite<'static> {
        LayerSite {
            node: 0,
            name: "t",
            is_conv: true,
            macs_per_output: k,
            taps,
            groups,
            draw,
            format: crate::fixed::Format { bits: 8, frac: 4 },
        }
    }

    /// With only shared stuck-at-1 bits on all-zero codes, every weight a
    /// register holds carries exactly that register's stuck bits: the
    /// codes are constant on each register class (module doc mapping,
    /// written out here independently), differ between classes, and each
    /// register bit is stuck with `p1`.
    #[test]
    fn shared_bits_are_constant_on_each_register_class() {
        let (groups, per_group, channels, taps) = (2usize, 5usize, 3usize, 4usize);
        let k = channels * taps;
        let n = groups * per_group * k;
        for per in [ShareUnit::Term, ShareUnit::Channel] {
            let sh = SharedStuck {
                p0: 0.0,
                p1: 0.3,
                filters: 2,
                reduction: 2,
                per,
            };
            let m = StuckAt {
                p0: PerBit::Uniform(0.0),
                p1: PerBit::Uniform(0.0),
                shared: Some(sh),
            };
            let class = |i: usize| {
                let (m_, kk) = ((i / k) % per_group, i % k);
                let u = match per {
                    ShareUnit::Term => kk,
                    ShareUnit::Channel => kk / taps,
                };
                (m_ % 2, u % 2)
            };
            let (mut set, mut total, mut distinct) = (0u64, 0u64, 0usize);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
            for draw in 0..400 {
                let mut codes = vec![0i32; n];
                m.apply_layer(&site(k, taps, groups, draw), &mut codes, &mut rng);
                let mut seen = std::collections::HashMap::new();
                for (i, &c) in codes.iter().enumerate() {
                    let prev = *seen.entry(class(i)).or_insert(c);
                    assert_eq!(prev, c, "{per:?}: weight {i} differs within its class");
                }
                let mut vals: Vec<i32> = seen.values().copied().collect();
                vals.sort_unstable();
                vals.dedup();
                distinct = distinct.max(vals.len());
                for v in seen.values() {
                    set += u64::from((*v as u8).count_ones());
                    total += 8;
                }
            }
            assert!(distinct > 1, "{per:?}: classes never differ");
            let rate = set as f64 / total as f64;
            let se = (0.3f64 * 0.7 / total as f64).sqrt();
            assert!((rate - 0.3).abs() < 4.0 * se, "{per:?}: rate {rate}");
        }
    }

    /// One register file serves every layer of a chip: two layers of one
    /// draw (different shapes, different layer streams) carry the same
    /// stuck bits in the registers both use; another draw differs.
    #[test]
    fn layers_of_one_draw_share_their_stuck_registers() {
        let m = StuckAt {
            p0: PerBit::Uniform(0.0),
            p1: PerBit::Uniform(0.0),
            shared: Some(SharedStuck {
                p0: 0.0,
                p1: 0.2,
                filters: 4,
                reduction: 3,
                per: ShareUnit::Channel,
            }),
        };
        // Layer A: 4 filters, 3 channels x 2 taps; layer B: 6 filters, 5
        // channels x 1 tap. Register (f, l) value: any weight it holds.
        let reg =
            |codes: &[i32], k: usize, taps: usize, f: usize, l: usize| codes[f * k + l * taps];
        let mut same_draw_differs = false;
        for draw in 0..50u64 {
            let mut a = vec![0i32; 4 * 6];
            let mut b = vec![0i32; 6 * 5];
            let mut rng_a = Xoshiro256PlusPlus::seed_from_u64(1);
            let mut rng_b = Xoshiro256PlusPlus::seed_from_u64(2);
            m.apply_layer(&site(6, 2, 1, draw), &mut a, &mut rng_a);
            m.apply_layer(&site(5, 1, 1, draw), &mut b, &mut rng_b);
            for f in 0..4 {
                for l in 0..3 {
                    assert_eq!(
                        reg(&a, 6, 2, f, l),
                        reg(&b, 5, 1, f, l),
                        "draw {draw} ({f}, {l})"
                    );
                }
            }
            let mut c = vec![0i32; 4 * 6];
            m.apply_layer(&site(6, 2, 1, draw + 1000), &mut c, &mut rng_a);
            same_draw_differs |= c != a;
        }
        assert!(same_draw_differs, "other draws give other registers");
    }

    #[test]
    fn validation_rules() {
        let ok = StuckAt {
            p0: PerBit::Uniform(0.4),
            p1: PerBit::Uniform(0.6),
            shared: None,
        };
        assert!(ok.validate().is_ok());
        let over = StuckAt {
            p0: PerBit::Uniform(0.5),
            p1: PerBit::Uniform(0.6),
            shared: None,
        };
        assert!(over.validate().unwrap_err().1.contains("p0 + p1"));
        let lens = StuckAt {
            p0: PerBit::Bits(vec![0.1; 8]),
            p1: PerBit::Bits(vec![0.1; 4]),
            shared: None,
        };
        assert_eq!(lens.validate().unwrap_err().0, "p1");
        let neg = StuckAt {
            p0: PerBit::Uniform(-0.1),
            p1: PerBit::Uniform(0.0),
            shared: None,
        };
        assert_eq!(neg.validate().unwrap_err().0, "p0");
    }
}
