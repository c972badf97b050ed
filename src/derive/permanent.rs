//! Weight faults from permanent stuck-at cells (issue 5): which stuck bits
//! of an accelerator become stuck bits of weight codes, with what
//! probability per weight bit, and how many weights one stuck cell reaches.
//!
//! The result is the per-layer `stuck_at` weight model (per-bit `p0`/`p1`,
//! sampled once per chip) that `infer`, `eval`, `train --fault-model` and
//! `search` consume — the digital-accelerator counterpart of the paper's
//! hand-set weight stuck-at rates.
//!
//! # Where a weight code lives (the rules of `crate::hwsim`)
//!
//! - `sram.filter`: weight code `i` of layer `L` (layout
//!   `[out, in/groups, kh, kw]`) sits at word `i mod words`, one cell per
//!   bit, and a stuck cell forces that bit of every code read from it
//!   ([`crate::hwsim::sram`]).
//! - `pe.weight_reg` on a **weight-stationary** array: the weight `W[k][m]`
//!   of a group's GEMM is latched in PE `(k mod R, m mod C)` for its whole
//!   fold and used for every output of the fold, so the register's stuck
//!   bits act on that weight for every output, after the SRAM's (the
//!   register latches the code the buffer delivered).
//! - `sip.weight_reg` on a **bit-serial** design (Stripes, Loom): the
//!   weight of input channel `c` (`k = c * taps + tap`) and filter `m` is
//!   held in the register of filter row `m mod (tiles * filters)` and lane
//!   `c mod lanes` for every step that uses it, and every window reads it
//!   there ([`crate::hwsim::bitserial`]; `tests/hwsim_bitserial.rs` proves
//!   a stuck bit there is that bit stuck in every weight it holds).
//!
//! # Formulas
//!
//! With per-bit stuck densities `(s0, s1)` of the filter SRAM and `(r0, r1)`
//! of the weight register that holds the weight (WS PE or SIP; each bit
//! independently stuck at 0 or 1 per
//! chip, as [`crate::hwsim::spec::HwFaultSpec::sample_chip`] draws them),
//! bit `b` of a weight code ends up forced to 0 or 1 with
//!
//! ```text
//! p0 = r0 + (1 - r0 - r1) * s0        p1 = r1 + (1 - r0 - r1) * s1
//! ```
//!
//! (the register wins where both are stuck); without a holding register
//! (OS, IS) `p0 = s0`, `p1 = s1`. These marginals are exact for every weight. A
//! forced bit that already has the stuck value changes nothing; the
//! algorithmic model applies the same rule ([`crate::fault::stuck_at`]).
//! Expected stuck weight bits per chip and layer: `n * w * (p0 + p1)` for
//! `n` codes of `w` bits.
//!
//! # Sharing
//!
//! The hardware's stuck bits are shared. One stuck WS weight register
//! forces the same bit of every weight mapped to its PE, `ceil(K/R) *
//! ceil(M/C)` per group when the layer fills the array; a SIP weight
//! register every tap of every channel and filter that wraps around the
//! lanes and filter rows — weights of the same output channel, so their
//! errors add up there. The derived model carries the register
//! part as [`crate::fault::SharedStuck`] bits (drawn per register once per
//! chip — the same stuck registers in every layer — and forced into every
//! weight a register holds, after the SRAM's independent bits): the same
//! marginals, with the hardware's alignment. Left out: one stuck
//! filter-SRAM cell forces the same bit of `ceil((n - a) / words)` codes of
//! every layer (every tile held at address `a`) — one per layer in
//! practice, and unrelated weights across layers. `sram_share` and `reg_share`
//! report the mean number of weights per stuck cell;
//! `NetworkDerivation::without_register_sharing` gives the i.i.d. model with
//! the same marginals (ResNet-20 on Stripes: 18 points optimistic, README).
//!
//! # Not weight faults
//!
//! On OS and IS arrays the weight register is a *moving* operand register:
//! a stuck bit corrupts a weight only for the outputs computed downstream of
//! that PE (OS: PE rows below it; IS: columns to its right), which is not a
//! property of the weight alone. Stuck `act_reg`/`psum_reg`/`mult_out` bits
//! corrupt features, not weights. On a systolic array all of these become
//! stuck MAC-unit bits ([`super::stuck_macs`]), so [`stuck_rates`] passes
//! over them; on a bit-serial design the SIP activation and partial-sum
//! registers are the stuck SIP model's, and a PE site is listed as not
//! derived (no such site there). Stuck
//! ifmap/ofmap cells corrupt features too; they become the feature model's
//! stuck buffer cells ([`crate::fault::stuck_cells`]), so [`stuck_rates`]
//! passes over them.

use crate::accel::description::{Accelerator, BitSerial};
use crate::accel::Dataflow;
use crate::fault::{ShareUnit, SharedStuck};
use crate::hwsim::bitserial::SipSite;
use crate::hwsim::spec::{HwFaultSpec, Site};
use crate::hwsim::sram::SramBuffer;
use crate::hwsim::FaultSite;

use super::layer::GemmLayer;

/// Per-bit stuck-at-0 / stuck-at-1 densities of one site.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StuckPair {
    pub p0: f64,
    pub p1: f64,
}

impl StuckPair {
    pub fn any(&self) -> bool {
        self.p0 > 0.0 || self.p1 > 0.0
    }
    /// Both densities multiplied by `k` (a sweep over densities).
    pub fn scaled(&self, k: f64) -> StuckPair {
        StuckPair {
            p0: self.p0 * k,
            p1: self.p1 * k,
        }
    }
}

/// What holds a layer's weights on their way from the filter SRAM to the
/// multipliers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightHolder {
    /// A systolic array: on WS the PE weight register holds each weight for
    /// every output; on OS/IS weights move through the registers.
    Systolic {
        rows: usize,
        cols: usize,
        dataflow: Dataflow,
    },
    /// A bit-serial design: SIP weight registers, `filter_rows = tiles *
    /// filters` by `lanes` (its SIP activation and partial-sum register
    /// bits are the stuck SIP model's, [`super::stuck_macs`]).
    BitSerial { filter_rows: usize, lanes: usize },
}

impl WeightHolder {
    /// The SIP weight registers of bit-serial `design`.
    pub fn bitserial(design: &BitSerial) -> WeightHolder {
        WeightHolder::BitSerial {
            filter_rows: design.tiles * design.filters,
            lanes: design.lanes,
        }
    }

    /// What holds the weights on accelerator `acc` (`None` if it has
    /// neither a systolic nor a bit-serial section).
    pub fn of(acc: &Accelerator) -> Option<WeightHolder> {
        match (&acc.systolic, &acc.bitserial) {
            (Some(sys), _) => Some(WeightHolder::Systolic {
                rows: sys.rows,
                cols: sys.cols,
                dataflow: sys.dataflow,
            }),
            (None, Some(bs)) => Some(WeightHolder::bitserial(bs)),
            (None, None) => None,
        }
    }

    /// Whether a stuck bit of the weight register is a stuck bit of every
    /// weight it holds (for every output).
    pub fn register_holds_weights(&self) -> bool {
        match self {
            WeightHolder::Systolic { dataflow, .. } => *dataflow == Dataflow::Ws,
            WeightHolder::BitSerial { .. } => true,
        }
    }

    /// Whether stuck bits of `site` are derived as the stuck MAC-unit /
    /// SIP model ([`super::stuck_macs`]): every PE site of a systolic
    /// array (the WS weight register's are weight faults first), the SIP
    /// activation and partial-sum registers.
    pub fn derives_as_units(&self, site: &Site) -> bool {
        matches!(
            (site, self),
            (Site::Pe(_), WeightHolder::Systolic { .. })
                | (
                    Site::Sip(SipSite::ActReg | SipSite::PsumReg),
                    WeightHolder::BitSerial { .. },
                )
        )
    }

    /// The weight-register site of this hardware.
    pub fn register_site(&self) -> Site {
        match self {
            WeightHolder::Systolic { .. } => Site::Pe(FaultSite::WeightReg),
            WeightHolder::BitSerial { .. } => Site::Sip(SipSite::WeightReg),
        }
    }

    /// The register file as the algorithmic model's shared stuck bits
    /// ([`crate::fault::SharedStuck`]), with per-bit densities `r`; `None`
    /// when the register does not hold weights.
    pub fn shared_stuck(&self, r: StuckPair) -> Option<SharedStuck> {
        if !self.register_holds_weights() || !r.any() {
            return None;
        }
        let (filters, reduction, per) = match *self {
            // W[k][m] in PE (k mod R, m mod C).
            WeightHolder::Systolic { rows, cols, .. } => (cols, rows, ShareUnit::Term),
            // Filter m, channel c (all taps) in SIP (m mod F, c mod lanes).
            WeightHolder::BitSerial {
                filter_rows, lanes, ..
            } => (filter_rows, lanes, ShareUnit::Channel),
        };
        Some(SharedStuck {
            p0: r.p0,
            p1: r.p1,
            filters,
            reduction,
            per,
        })
    }

    /// Distinct weight registers the weights of `l` are held in.
    fn used_registers(&self, l: &GemmLayer) -> usize {
        match *self {
            WeightHolder::Systolic { rows, cols, .. } => l.k.min(rows) * l.m.min(cols),
            WeightHolder::BitSerial {
                filter_rows, lanes, ..
            } => {
                let channels = l.k / l.taps.max(1);
                l.m.min(filter_rows) * channels.min(lanes)
            }
        }
    }
}

/// The stuck-at densities that derivation turns into weight faults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StuckRates {
    /// `sram.filter` cells.
    pub sram_filter: StuckPair,
    /// Weight register bits (`pe.weight_reg` or `sip.weight_reg`), used when
    /// the register holds weights ([`WeightHolder::register_holds_weights`]).
    pub weight_reg: StuckPair,
    /// Whether `weight_reg` holds each weight for every output (WS,
    /// bit-serial).
    pub weight_stationary: bool,
}

impl StuckRates {
    /// The per-bit `(p0, p1)` of a weight code bit (module doc formula).
    pub fn weight_bit(&self) -> StuckPair {
        let s = self.sram_filter;
        let r = if self.weight_stationary {
            self.weight_reg
        } else {
            StuckPair::default()
        };
        let free = 1.0 - r.p0 - r.p1;
        StuckPair {
            p0: r.p0 + free * s.p0,
            p1: r.p1 + free * s.p1,
        }
    }

    /// Every density multiplied by `k`.
    pub fn scaled(&self, k: f64) -> StuckRates {
        StuckRates {
            sram_filter: self.sram_filter.scaled(k),
            weight_reg: self.weight_reg.scaled(k),
            ..*self
        }
    }
}

/// The stuck-at densities of `spec` that become weight faults on `holder`,
/// and the stuck-at sites that do not (by name, with the reason).
pub fn stuck_rates(spec: &HwFaultSpec, holder: &WeightHolder) -> (StuckRates, Vec<String>) {
    let mut rates = StuckRates {
        weight_stationary: holder.register_holds_weights(),
        ..StuckRates::default()
    };
    let mut not_derived = Vec::new();
    for (site, r) in &spec.rates {
        let pair = StuckPair {
            p0: r.stuck_at_0,
            p1: r.stuck_at_1,
        };
        if !pair.any() {
            continue;
        }
        match (site, holder) {
            (Site::Sram(SramBuffer::Filter), _) => rates.sram_filter = pair,
            // feature faults, derived with the buffer upsets
            // (`crate::fault::stuck_cells`)
            (Site::Sram(SramBuffer::Ifmap | SramBuffer::Ofmap), _) => {}
            (s, h) if *s == h.register_site() && h.register_holds_weights() => {
                rates.weight_reg = pair
            }
            // feature faults of the MAC units / SIPs (`super::stuck_macs`)
            (s, h) if h.derives_as_units(s) => {}
            (Site::Pe(_), WeightHolder::BitSerial { .. }) => not_derived.push(format!(
                "{} stuck-at (no such site on a bit-serial design)",
                site.name()
            )),
            (other, _) => not_derived.push(format!(
                "{} stuck-at (corrupts features, not weights)",
                other.name()
            )),
        }
    }
    (rates, not_derived)
}

/// The derived weight faults of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightDerivation {
    pub name: String,
    /// Weight codes of the layer (all groups).
    pub weights: usize,
    /// Bits per weight code.
    pub bits: u32,
    /// Per weight bit: probability of being forced to 0 / to 1.
    pub bit: StuckPair,
    /// Expected stuck weight bits per chip in this layer.
    pub expected_stuck_bits: f64,
    /// Mean weights of this layer per filter-SRAM word it uses (how many
    /// codes one stuck cell forces).
    pub sram_share: f64,
    /// Mean weights per weight register that holds them (WS PE, SIP;
    /// `None` for OS/IS).
    pub reg_share: Option<f64>,
}

/// Weight faults of every layer: weights held by `holder`, `filter_words`
/// words in the filter SRAM, `weight_bits`-bit codes.
pub fn derive_weight_faults(
    holder: &WeightHolder,
    filter_words: usize,
    weight_bits: u32,
    layers: &[GemmLayer],
    rates: &StuckRates,
) -> Vec<WeightDerivation> {
    let bit = rates.weight_bit();
    layers
        .iter()
        .map(|l| {
            let n = l.k * l.m * l.groups;
            let used_words = n.min(filter_words.max(1));
            // Distinct registers the layer's weights are held in: the same
            // corner of the array for every group.
            let used_regs = holder.used_registers(l);
            WeightDerivation {
                name: l.name.clone(),
                weights: n,
                bits: weight_bits,
                bit,
                expected_stuck_bits: n as f64 * f64::from(weight_bits) * (bit.p0 + bit.p1),
                sram_share: n as f64 / used_words.max(1) as f64,
                reg_share: rates
                    .weight_stationary
                    .then(|| n as f64 / used_regs.max(1) as f64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::layer::Magnitudes;
    use crate::hwsim::kernel::BitOp;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn formula_matches_brute_force_composition() {
        // Enumerate the four outcomes of each of the two cells of one
        // weight bit (free / stuck0 / stuck1), weight them by their
        // probabilities and push a 0 and a 1 through SRAM then register.
        let rates = StuckRates {
            sram_filter: StuckPair { p0: 0.1, p1: 0.25 },
            weight_reg: StuckPair { p0: 0.05, p1: 0.15 },
            weight_stationary: true,
        };
        let outcomes = |p: StuckPair| {
            [
                (1.0 - p.p0 - p.p1, None),
                (p.p0, Some(BitOp::Stuck0(3))),
                (p.p1, Some(BitOp::Stuck1(3))),
            ]
        };
        let (mut forced0, mut forced1) = (0.0, 0.0);
        for (ps, s) in outcomes(rates.sram_filter) {
            for (pr, r) in outcomes(rates.weight_reg) {
                let read = |v: i32| {
                    let v = s.map_or(v, |op| op.apply(v, 8));
                    r.map_or(v, |op| op.apply(v, 8))
                };
                // forced to 0: a 1 bit reads as 0; forced to 1: a 0 reads 1
                if read(8) & 8 == 0 {
                    forced0 += ps * pr;
                }
                if read(0) & 8 != 0 {
                    forced1 += ps * pr;
                }
            }
        }
        let b = rates.weight_bit();
        assert!((b.p0 - forced0).abs() < 1e-12, "{} {forced0}", b.p0);
        assert!((b.p1 - forced1).abs() < 1e-12, "{} {forced1}", b.p1);
        // OS/IS: the register does not hold weights for all outputs.
        let os = StuckRates {
            weight_stationary: false,
            ..rates
        };
        assert_eq!(os.weight_bit(), rates.sram_filter);
    }

    fn gemm(k: usize, m: usize, groups: usize) -> GemmLayer {
        GemmLayer {
            name: "l".into(),
            e: 5,
            k,
            m,
            groups,
            taps: 1,
            shift: 4,
            out_bits: 8,
            weights: Magnitudes::default(),
            inputs: Magnitudes::default(),
            negative_weights: Magnitudes::default(),
            negative_inputs: Magnitudes::default(),
            input_rows: Default::default(),
            weight_rows: Default::default(),
            filters: Vec::new(),
            psum_signs: None,
            step_profile: None,
        }
    }

    #[test]
    fn sharing_counts_match_enumeration() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for _ in 0..200 {
            let (rows, cols) = (rng.random_range(1..9), rng.random_range(1..9));
            let (k, m, g) = (
                rng.random_range(1..30),
                rng.random_range(1..12),
                rng.random_range(1..4),
            );
            let words = rng.random_range(1..200);
            let rates = StuckRates {
                weight_stationary: true,
                ..StuckRates::default()
            };
            let holder = WeightHolder::Systolic {
                rows,
                cols,
                dataflow: Dataflow::Ws,
            };
            let d = &derive_weight_faults(&holder, words, 8, &[gemm(k, m, g)], &rates)[0];
            let n = k * m * g;
            // brute force: codes per used address, weights per used PE
            let mut per_word = vec![0usize; words];
            for i in 0..n {
                per_word[i % words] += 1;
            }
            let used: Vec<usize> = per_word.into_iter().filter(|&c| c > 0).collect();
            let mean = used.iter().sum::<usize>() as f64 / used.len() as f64;
            assert!((d.sram_share - mean).abs() < 1e-9);
            let mut per_pe = std::collections::HashMap::new();
            for _ in 0..g {
                for kk in 0..k {
                    for mm in 0..m {
                        *per_pe.entry((kk % rows, mm % cols)).or_insert(0usize) += 1;
                    }
                }
            }
            let mean = n as f64 / per_pe.len() as f64;
            assert!((d.reg_share.unwrap() - mean).abs() < 1e-9);
            // bit-serial: register (m mod filter_rows, c mod lanes)
            let taps = rng.random_range(1..4);
            let mut l = gemm(k * taps, m, g);
            l.taps = taps;
            let holder = WeightHolder::BitSerial {
                filter_rows: rows,
                lanes: cols,
            };
            let d = &derive_weight_faults(&holder, words, 8, &[l], &rates)[0];
            let mut regs = std::collections::HashSet::new();
            for c in 0..k {
                for mm in 0..m {
                    regs.insert((mm % rows, c % cols));
                }
            }
            let mean = (n * taps) as f64 / regs.len() as f64;
            assert!((d.reg_share.unwrap() - mean).abs() < 1e-9);
        }
    }
}
