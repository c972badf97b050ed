//! Per-layer feature-fault parameters of a **bit-serial** design (Stripes,
//! Loom) from raw transient rates of its SIP registers: the bit-serial
//! counterpart of [`super::layer`], giving the same `output_hit` model.
//!
//! # Formulas
//!
//! The register semantics are [`crate::hwsim::bitserial`]'s. A layer runs
//! at the datapath's precisions `Pa`, `Pw` (as [`crate::hwsim::bsnet`] runs
//! it); a step shifts out `n = ceil(Pa/b)` activation bit groups of `b` bits
//! (`n` cycles on Stripes, `n * Pw` on Loom, weight bit `jw` outer and group
//! `i` inner), and an output's accumulator lives for its block of
//! `N = taps * lane_sets` steps. An output with `K` reduction terms is
//! exposed, per register bit, to these (register, cycle) slots; a flip adds
//! `+-2^j |x|` to its accumulator, `x` drawn as shown:
//!
//! | site | bit `j` | slots per output | `x` |
//! |---|---|---|---|
//! | `sip.psum_reg` | `< psum_bits` | `N * cycles per step` | 1 |
//! | `sip.act_reg`, Stripes | `< Pa`, group `g = j/b` | `K (g+1)` (flips after group `g` was shifted out are masked) | `w` |
//! | `sip.weight_reg`, Stripes | `< weight_bits` | `K n` | `hi_i(a)`, `i` uniform over the step's cycles |
//! | `sip.act_reg`, Loom | `< Pa` | `K n Pw` | `whi_s(w)`: `s = jw` for the `g+1` cycles `(jw, i <= g)`, `jw+1` for the other `n-1-g` |
//! | `sip.weight_reg`, Loom | `< Pw` | `K n Pw` | `a` for `jw < j`, `hi_i(a)` for `jw = j`, masked for `jw > j` |
//!
//! with `hi_i(a) = (a >> ib) << ib` the part of `a` whose groups are not
//! yet shifted out at cycle `i`, and `whi_s(w) = (w >> s) << s` the weight
//! bits not yet consumed (arithmetic shifts: the sign group counts
//! negatively). Register bits above the precision a step reads are never
//! used (masked). One activation-register flip corrupts every live filter
//! of the filter set; a weight-register flip every live window of the
//! window set; a psum flip one output.
//!
//! From there the visibility at the output, the hit probability
//! `p = 1 - exp(-mu)` and the bit distribution are [`super::layer`]'s.
//! Every output of a layer has the same exposure. `tests` checks every
//! slot count and magnitude against the cycle-level model by injecting
//! every single flip: the total accumulator error equals the table's.
//!
//! Run-time precision detection (`precision = "per-group"`, Loom) makes a
//! step's length data-dependent; that is not derived here (the caller
//! reports it).

use super::psum_sign::{count_layer_signs, PsumSigns};
use crate::accel::description::{BitSerial, Precision, Serial};
use crate::fixed::Datapath;
use crate::hwsim::bitserial::{bit_group, SipSite};
use crate::hwsim::spec::Site;
use crate::quant::MacLayer;

use super::layer::{
    assemble, visible_bit, GemmLayer, LayerDerivation, Magnitudes, SiteDerivation, SiteRates,
};

/// Exposure of one register bit: `slots` (register, cycle) pairs per output
/// whose flip of `bit` adds `+-2^bit * |x|` to that output's accumulator,
/// `|x|` drawn from `mags` (zero: masked).
#[derive(Debug, Clone, PartialEq)]
pub struct BitExposure {
    pub bit: u32,
    pub slots: u64,
    pub mags: Magnitudes,
}

/// The rate of SIP site `site` in `rates` (the act / weight / psum register
/// roles of [`SiteRates`]).
pub fn sip_rate(rates: &SiteRates, site: SipSite) -> f64 {
    match site {
        SipSite::ActReg => rates.act_reg,
        SipSite::WeightReg => rates.weight_reg,
        SipSite::PsumReg => rates.psum_reg,
    }
}

/// Magnitudes of `(v >> s) << s` for the codes of `all` (`negative` of
/// them negative): the part of a code at and above bit `s`.
fn high_part(all: &Magnitudes, negative: &Magnitudes, s: u32, out: &mut Magnitudes, times: u64) {
    if times == 0 {
        return;
    }
    let unit = 1usize << s.min(40);
    for (v, &n) in all.counts.iter().enumerate() {
        let neg = negative.counts.get(v).copied().unwrap_or(0).min(n);
        if n > neg {
            out.add(v / unit * unit, (n - neg) * times);
        }
        if neg > 0 {
            out.add(v.div_ceil(unit) * unit, neg * times);
        }
    }
}

/// Activation bit groups of a step and cycles per step of `design` at
/// precisions `(pa, pw)`.
fn step_shape(design: &BitSerial, pa: u32, pw: u32) -> (u32, u64) {
    let b = u32::from(design.bits_per_cycle);
    match design.serial {
        Serial::Activations => {
            let n = pa.min(16).div_ceil(b);
            (n, u64::from(n))
        }
        Serial::Both => {
            let n = pa.div_ceil(b);
            (n, u64::from(n) * u64::from(pw))
        }
    }
}

/// The exposure of one output of `layer` at SIP site `site` on `design`
/// with datapath `dp` (the layer at precisions `dp.act_bits`,
/// `dp.weight_bits`), per register bit (see the module doc).
pub fn sip_exposure(
    design: &BitSerial,
    dp: &Datapath,
    layer: &GemmLayer,
    site: SipSite,
) -> Vec<BitExposure> {
    let (pa, pw) = (u32::from(dp.act_bits), u32::from(dp.weight_bits));
    let b = u32::from(design.bits_per_cycle);
    let (n, cps) = step_shape(design, pa, pw);
    let k = layer.k as u64;
    let taps = layer.taps.max(1);
    let lane_sets = (layer.k / taps).div_ceil(design.lanes) as u64;
    let (w, nw) = (&layer.weights, &layer.negative_weights);
    let (a, na) = (&layer.inputs, &layer.negative_inputs);
    match (site, design.serial) {
        (SipSite::PsumReg, _) => (0..u32::from(dp.psum_bits))
            .map(|bit| BitExposure {
                bit,
                slots: taps as u64 * lane_sets * cps,
                mags: Magnitudes::unit(),
            })
            .collect(),
        (SipSite::ActReg, Serial::Activations) => (0..pa)
            .map(|bit| BitExposure {
                bit,
                slots: k * u64::from(bit / b + 1),
                mags: w.clone(),
            })
            .collect(),
        (SipSite::WeightReg, Serial::Activations) => {
            let mut hi = Magnitudes::default();
            for i in 0..n {
                high_part(a, na, i * b, &mut hi, 1);
            }
            (0..u32::from(dp.weight_bits))
                .map(|bit| BitExposure {
                    bit,
                    slots: k * u64::from(n),
                    mags: hi.clone(),
                })
                .collect()
        }
        (SipSite::ActReg, Serial::Both) => (0..pa)
            .map(|bit| {
                let g = bit / b;
                let mut mags = Magnitudes::default();
                for jw in 0..pw {
                    high_part(w, nw, jw, &mut mags, u64::from(g + 1));
                    // s = Pw: nothing of the weight is left to read.
                    let later = u64::from(n - 1 - g);
                    if jw + 1 < pw {
                        high_part(w, nw, jw + 1, &mut mags, later);
                    } else {
                        mags.add(0, w.total() * later);
                    }
                }
                BitExposure {
                    bit,
                    slots: k * cps,
                    mags,
                }
            })
            .collect(),
        (SipSite::WeightReg, Serial::Both) => (0..pw)
            .map(|bit| {
                let mut mags = Magnitudes::default();
                // Weight bit `bit` is read in cycles (bit, i): a flip during
                // an earlier weight bit changes all n groups' products, one
                // during it the groups not yet read, one after it nothing.
                high_part(a, na, 0, &mut mags, u64::from(n) * u64::from(bit));
                for i in 0..n {
                    high_part(a, na, i * b, &mut mags, 1);
                }
                mags.add(0, a.total() * u64::from(n) * u64::from(pw - 1 - bit));
                BitExposure {
                    bit,
                    slots: k * cps,
                    mags,
                }
            })
            .collect(),
    }
}

/// Mean number of outputs one live flip of `site` corrupts.
fn multiplicity(design: &BitSerial, layer: &GemmLayer, site: SipSite) -> f64 {
    let per_set = |total: usize, width: usize| total as f64 / total.div_ceil(width).max(1) as f64;
    match site {
        SipSite::ActReg => per_set(layer.m, design.tiles * design.filters),
        SipSite::WeightReg => per_set(layer.e, design.windows),
        SipSite::PsumReg => 1.0,
    }
}

/// Whether [`derive_bitserial_layer`] covers `design`: its step lengths
/// must not depend on the data (per-layer precision).
pub fn derivable(design: &BitSerial) -> bool {
    design.precision == Precision::PerLayer
}

/// Derive `layer`'s output-hit parameters on bit-serial `design` with
/// datapath `dp` and raw SIP rates `rates` (act / weight / psum register
/// roles). `design` must be [`derivable`].
pub fn derive_bitserial_layer(
    design: &BitSerial,
    dp: &Datapath,
    layer: &GemmLayer,
    rates: &SiteRates,
) -> LayerDerivation {
    let (shift, out_bits) = (layer.shift, layer.out_bits);
    let top = i32::from(out_bits) - 1;
    let mut mu = 0.0;
    let mut bit_mass = vec![0.0f64; out_bits as usize];
    let mut psum_whole = vec![0.0f64; out_bits as usize];
    let mut sites = Vec::new();
    for site in SipSite::ALL {
        let lambda = sip_rate(rates, site);
        let exposure = sip_exposure(design, dp, layer, site);
        let (mut site_mu, mut slots) = (0.0, 0u64);
        for x in &exposure {
            let vis = visible_bit(
                x.bit,
                &x.mags,
                shift,
                lambda * x.slots as f64,
                &mut bit_mass,
            );
            site_mu += vis;
            slots += x.slots;
            if site == SipSite::PsumReg && x.bit as i32 >= shift {
                psum_whole[(x.bit as i32 - shift).min(top) as usize] += lambda * x.slots as f64;
            }
        }
        mu += site_mu;
        let width = site.width(dp);
        sites.push(SiteDerivation {
            site: Site::Sip(site),
            mean_slots: slots as f64 / f64::from(width),
            visibility: if slots > 0 && lambda > 0.0 {
                site_mu / (lambda * slots as f64)
            } else {
                0.0
            },
            multiplicity: multiplicity(design, layer, site),
            mu: site_mu,
        });
    }
    let outputs = layer.e * layer.m;
    assemble(
        layer,
        (layer.e, layer.k, layer.m),
        &vec![mu; outputs],
        &bit_mass,
        &psum_whole,
        sites,
    )
}

/// Over the accumulator slots of one output on `design` — one per cycle
/// of its block, holding the sum before that cycle's addition — count in
/// `ones[B]` the slots whose register bit `B` is set; return the final
/// accumulator and the number of slots. `a_row` holds the output's `K`
/// operand codes (`k = c * taps + tap`), `w` the `K x m` filter operand,
/// `mi` the output's filter. The additions are the cycle-level model's
/// (bit groups, shifts, the accumulator rule after every cycle).
#[allow(clippy::too_many_arguments)]
pub fn held_psum_bits(
    design: &BitSerial,
    dp: &Datapath,
    taps: usize,
    a_row: &[i32],
    w: &[i32],
    (m, mi): (usize, usize),
    ones: &mut [u64],
) -> (i64, u64) {
    ones.iter_mut().for_each(|o| *o = 0);
    let (pa, pw) = (u32::from(dp.act_bits), u32::from(dp.weight_bits));
    let b = u32::from(design.bits_per_cycle);
    let (n, _) = step_shape(design, pa, pw);
    let bits = usize::from(dp.psum_bits).min(ones.len());
    let channels = a_row.len() / taps.max(1);
    let planes: Vec<Option<u32>> = match design.serial {
        Serial::Activations => vec![None],
        Serial::Both => (0..pw).map(Some).collect(),
    };
    let (mut acc, mut slots) = (0i64, 0u64);
    for tap in 0..taps {
        for ls in 0..channels.div_ceil(design.lanes) {
            let lanes = ls * design.lanes..((ls + 1) * design.lanes).min(channels);
            for &plane in &planes {
                for i in 0..n {
                    let mut x = acc as u64;
                    for o in ones[..bits].iter_mut() {
                        *o += x & 1;
                        x >>= 1;
                    }
                    slots += 1;
                    let mut sum = 0i64;
                    for c in lanes.clone() {
                        let kk = c * taps + tap;
                        let g = bit_group(i64::from(a_row[kk]), i, b, pa);
                        let wv = i64::from(w[kk * m + mi]);
                        sum += match plane {
                            None => g * wv,
                            Some(j) => g * ((wv >> j) & 1),
                        };
                    }
                    let term = match plane {
                        None => sum << (i * b),
                        Some(j) if j == pw - 1 => -(sum << (i * b + j)),
                        Some(j) => sum << (i * b + j),
                    };
                    acc = dp.acc_limit(acc + term);
                }
            }
        }
    }
    (acc, slots)
}

/// The psum flip directions ([`PsumSigns`]) of `layer` on bit-serial
/// `design` on one image (`input`: the layer's input codes, CHW).
pub fn bitserial_psum_signs(
    design: &BitSerial,
    dp: &Datapath,
    layer: &MacLayer,
    input: &[i32],
) -> PsumSigns {
    let taps = layer.kernel.0 * layer.kernel.1;
    count_layer_signs(dp, layer, input, |a_row, w, (_, mi, m), ones| {
        held_psum_bits(design, dp, taps, a_row, w, (m, mi), ones)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::Overflow;
    use crate::hwsim::bitserial::{BitSerialArray, LayerPrecision, SipFault};
    use crate::hwsim::Gemm;
    use proptest::prelude::*;

    fn design(serial: Serial, bits: u8, lanes: usize) -> BitSerial {
        BitSerial {
            tiles: 2,
            windows: 3,
            filters: 2,
            lanes,
            serial,
            bits_per_cycle: bits,
            precision: Precision::PerLayer,
            group_size: None,
        }
    }

    /// Sum over every single flip of `site` (every register, bit and
    /// cycle) of the absolute accumulator error it causes over all outputs,
    /// on the cycle-level model.
    fn brute_force(
        arr: &BitSerialArray,
        gemm: &Gemm,
        taps: usize,
        dp: &Datapath,
        site: SipSite,
    ) -> f64 {
        let prec = LayerPrecision {
            act: dp.act_bits,
            weight: dp.weight_bits,
        };
        let clean = arr.run(gemm, taps, dp, prec, &[]).unwrap();
        let (rows, cols) = site.grid(&arr.design);
        let mut total = 0.0;
        for cycle in 0..clean.cycles {
            for row in 0..rows {
                for col in 0..cols {
                    for bit in 0..site.width(dp) as u8 {
                        let f = SipFault::flip(site, row, col, bit, cycle);
                        let run = arr.run(gemm, taps, dp, prec, &[f]).unwrap();
                        total += run
                            .out
                            .iter()
                            .zip(&clean.out)
                            .map(|(x, y)| (x - y).unsigned_abs() as f64)
                            .sum::<f64>();
                    }
                }
            }
        }
        total
    }

    /// What the exposure table predicts for the same sum.
    fn predicted(design: &BitSerial, dp: &Datapath, layer: &GemmLayer, site: SipSite) -> f64 {
        let outputs = (layer.e * layer.m) as f64;
        sip_exposure(design, dp, layer, site)
            .iter()
            .map(|x| {
                let mean = x
                    .mags
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(v, &n)| v as f64 * n as f64)
                    .sum::<f64>()
                    / x.mags.total().max(1) as f64;
                outputs * x.slots as f64 * 2f64.powi(x.bit as i32) * mean
            })
            .sum()
    }

    fn layer_of(a: &[i32], w: &[i32], (e, k, m): (usize, usize, usize), taps: usize) -> GemmLayer {
        GemmLayer {
            name: "l".into(),
            e,
            k,
            m,
            groups: 1,
            taps,
            shift: 4,
            out_bits: 8,
            weights: Magnitudes::from_codes(w.iter().copied()),
            inputs: Magnitudes::from_codes(a.iter().copied()),
            negative_weights: Magnitudes::from_codes(w.iter().copied().filter(|&c| c < 0)),
            negative_inputs: Magnitudes::from_codes(a.iter().copied().filter(|&c| c < 0)),
            psum_signs: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]
        /// Every single flip of every SIP site, injected into the
        /// cycle-level model, adds up to the accumulator error the exposure
        /// table predicts — exactly (a wrapping accumulator keeps every
        /// error `+-2^j |x|` modulo its width, and the sums here stay far
        /// below its range).
        #[test]
        fn exposure_matches_every_single_flip(
            serial in prop_oneof![Just(Serial::Activations), Just(Serial::Both)],
            bits in 1u8..=2,
            lanes in 1usize..=3,
            (e, channels, m, taps) in (1usize..=4, 1usize..=3, 1usize..=4, 1usize..=2),
            seed in any::<u64>(),
        ) {
            let dp = Datapath { act_bits: 4, weight_bits: 3, psum_bits: 12, overflow: Overflow::Wrap };
            let k = channels * taps;
            let mut s = seed | 1;
            let mut next = |lo: i32, hi: i32| {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                lo + (s % (hi - lo + 1) as u64) as i32
            };
            let a: Vec<i32> = (0..e * k).map(|_| next(-8, 7)).collect();
            let w: Vec<i32> = (0..k * m).map(|_| next(-4, 3)).collect();
            let d = design(serial, bits, lanes);
            let arr = BitSerialArray::new(d.clone()).unwrap();
            let gemm = Gemm { a: &a, w: &w, e, k, m };
            let layer = layer_of(&a, &w, (e, k, m), taps);
            for site in SipSite::ALL {
                let want = brute_force(&arr, &gemm, taps, &dp, site);
                let got = predicted(&d, &dp, &layer, site);
                prop_assert!((want - got).abs() <= 1e-9 * want.max(1.0), "{site}: flips {want} vs table {got}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]
        /// Which way every single psum flip moves its output on the
        /// cycle-level model is what the held partial sums predict
        /// (`psum_sign::ups` on [`held_psum_bits`]'s counts), both
        /// accumulator rules.
        #[test]
        fn psum_flip_directions_match_every_single_flip(
            serial in prop_oneof![Just(Serial::Activations), Just(Serial::Both)],
            overflow in prop_oneof![Just(Overflow::Wrap), Just(Overflow::Saturate)],
            bits in 1u8..=2,
            lanes in 1usize..=3,
            (e, channels, m, taps) in (1usize..=4, 1usize..=3, 1usize..=4, 1usize..=2),
            seed in any::<u64>(),
        ) {
            let dp = Datapath { act_bits: 4, weight_bits: 3, psum_bits: 12, overflow };
            let k = channels * taps;
            let mut s = seed | 1;
            let mut next = |lo: i32, hi: i32| {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                lo + (s % (hi - lo + 1) as u64) as i32
            };
            let a: Vec<i32> = (0..e * k).map(|_| next(-8, 7)).collect();
            let w: Vec<i32> = (0..k * m).map(|_| next(-4, 3)).collect();
            let d = design(serial, bits, lanes);
            let arr = BitSerialArray::new(d.clone()).unwrap();
            let gemm = Gemm { a: &a, w: &w, e, k, m };
            let prec = LayerPrecision { act: dp.act_bits, weight: dp.weight_bits };
            let clean = arr.run(&gemm, taps, &dp, prec, &[]).unwrap();
            let nf = d.tiles * d.filters;
            let pb = usize::from(dp.psum_bits);
            // up[o][B], hits[o][B] from every flip of every SIP.
            let mut up = vec![vec![0u64; pb]; e * m];
            let mut hits = vec![vec![0u64; pb]; e * m];
            for cycle in 0..clean.cycles {
                for row in 0..d.windows {
                    for col in 0..nf {
                        for bit in 0..dp.psum_bits {
                            let f = SipFault::flip(SipSite::PsumReg, row, col, bit, cycle);
                            let run = arr.run(&gemm, taps, &dp, prec, &[f]).unwrap();
                            for (o, (x, y)) in run.out.iter().zip(&clean.out).enumerate() {
                                if x != y {
                                    hits[o][bit as usize] += 1;
                                    up[o][bit as usize] += u64::from(x > y);
                                }
                            }
                        }
                    }
                }
            }
            let mut ones = vec![0u64; pb];
            for ei in 0..e {
                for mi in 0..m {
                    let o = ei * m + mi;
                    let (acc, n) = held_psum_bits(&d, &dp, taps, &a[ei * k..][..k], &w, (m, mi), &mut ones);
                    prop_assert_eq!(acc, clean.out[o]);
                    for bit in 0..pb {
                        prop_assert_eq!(hits[o][bit], n, "output {} bit {}: every slot's flip shows", o, bit);
                        let want = crate::derive::psum_sign::ups(&dp, acc, ones[bit], n, bit as u32);
                        prop_assert_eq!(up[o][bit], want, "output {} bit {}", o, bit);
                    }
                }
            }
        }
    }

    #[test]
    fn activation_bits_are_exposed_until_their_group_is_shifted_out() {
        let d = design(Serial::Activations, 1, 2);
        let dp = Datapath {
            act_bits: 4,
            weight_bits: 8,
            psum_bits: 20,
            overflow: Overflow::Wrap,
        };
        let l = layer_of(&[1, -2, 3, 0], &[5, -7], (2, 2, 1), 1);
        let act = sip_exposure(&d, &dp, &l, SipSite::ActReg);
        assert_eq!(act.len(), 4);
        // Bit j of a 1-bit-per-cycle register is read in cycle j: exposed
        // in cycles 0..=j of each of the K = 2 terms' steps.
        assert_eq!(
            act.iter().map(|x| x.slots).collect::<Vec<_>>(),
            vec![2, 4, 6, 8]
        );
        let weight = sip_exposure(&d, &dp, &l, SipSite::WeightReg);
        assert_eq!(weight.len(), 8, "Stripes reads the whole weight register");
    }

    #[test]
    fn high_part_rounds_toward_minus_infinity() {
        // codes 5, -5, -8 at s = 2: 5 -> 4, -5 -> -8, -8 -> -8.
        let all = Magnitudes::from_codes([5, -5, -8]);
        let neg = Magnitudes::from_codes([-5, -8]);
        let mut out = Magnitudes::default();
        high_part(&all, &neg, 2, &mut out, 1);
        assert_eq!(out.counts[4], 1);
        assert_eq!(out.counts[8], 2);
    }

    #[test]
    fn derived_hit_rate_grows_with_the_exposure() {
        let d = design(Serial::Activations, 1, 2);
        let dp = Datapath {
            act_bits: 8,
            weight_bits: 8,
            psum_bits: 24,
            overflow: Overflow::Wrap,
        };
        let small = layer_of(&[3, -2, 9, 0], &[5, -7], (2, 2, 1), 1);
        let mut big = small.clone();
        big.k = 8;
        let rates = SiteRates {
            act_reg: 1e-6,
            weight_reg: 1e-6,
            psum_reg: 1e-6,
            mult_out: 0.0,
        };
        let ps = derive_bitserial_layer(&d, &dp, &small, &rates);
        let pb = derive_bitserial_layer(&d, &dp, &big, &rates);
        assert!(
            ps.p_out > 0.0 && pb.p_out > 2.0 * ps.p_out,
            "{} {}",
            ps.p_out,
            pb.p_out
        );
        assert_eq!(ps.p_min, ps.p_max, "uniform exposure");
        assert!((ps.bit_weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
