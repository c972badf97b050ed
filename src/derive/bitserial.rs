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
//! step as long as its widest activation needs: `n` and the precision the
//! groups read vary by step. [`step_profile`] measures on real images how
//! each layer's terms split by `n` (with the operands of each class), and
//! the table is applied per class, the psum slots being the mean block
//! length; the single-flip test covers this case too.

use super::psum_sign::{count_layer_signs, PsumSigns};
use crate::accel::description::{BitSerial, Precision, Serial};
use crate::fixed::Datapath;
use crate::hwsim::bitserial::{bit_group, signed_bits, SipSite};
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
    pub slots: f64,
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

/// Activation bit groups of a step whose activations need `pa` bits, and
/// its cycles, on `design` with weight precision `pw`.
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

/// How the steps of one layer split by the number of activation bit
/// groups they shift out, on a design with run-time precision detection
/// (every step as long as its widest activation needs), measured on real
/// images by [`step_profile`]. Index `n` of each table: steps of `n` groups.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepProfile {
    /// Sum over outputs of the terms they receive in `n`-group steps.
    pub terms: Vec<u64>,
    /// Magnitudes of the activations and weights those terms multiply (an
    /// activation once per filter reading it, a weight once per window),
    /// and the negative ones among them.
    pub inputs: Vec<Magnitudes>,
    pub negative_inputs: Vec<Magnitudes>,
    pub weights: Vec<Magnitudes>,
    pub negative_weights: Vec<Magnitudes>,
    /// Sum over outputs of the cycles of their block (psum slots).
    pub block_cycles: u64,
    /// Outputs counted.
    pub outputs: u64,
}

impl StepProfile {
    fn class(&mut self, n: usize) {
        if self.terms.len() <= n {
            self.terms.resize(n + 1, 0);
            for t in [
                &mut self.inputs,
                &mut self.negative_inputs,
                &mut self.weights,
                &mut self.negative_weights,
            ] {
                t.resize(n + 1, Magnitudes::default());
            }
        }
    }

    /// Add every count of `other`.
    pub fn merge(&mut self, other: &StepProfile) {
        for n in 0..other.terms.len() {
            self.class(n);
            self.terms[n] += other.terms[n];
            self.inputs[n].merge(&other.inputs[n]);
            self.negative_inputs[n].merge(&other.negative_inputs[n]);
            self.weights[n].merge(&other.weights[n]);
            self.negative_weights[n].merge(&other.negative_weights[n]);
        }
        self.block_cycles += other.block_cycles;
        self.outputs += other.outputs;
    }
}

/// The [`StepProfile`] of one layer group's GEMM (`a`: `E x K`, `w`:
/// `K x M`, `k = c * taps + tap`) on `design` at the datapath's
/// precisions, stepped as [`crate::hwsim::bitserial`] steps it.
pub fn step_profile(
    design: &BitSerial,
    dp: &Datapath,
    taps: usize,
    a: &[i32],
    w: &[i32],
    (e, k, m): (usize, usize, usize),
    profile: &mut StepProfile,
) {
    let (pa, pw) = (dp.act_bits, u32::from(dp.weight_bits));
    let channels = k / taps.max(1);
    let (windows, lanes) = (design.windows, design.lanes);
    for ws in 0..e.div_ceil(windows) {
        let live_w = (e - ws * windows).min(windows);
        let mut block = 0u64;
        for tap in 0..taps {
            for ls in 0..channels.div_ceil(lanes) {
                let cs = ls * lanes..((ls + 1) * lanes).min(channels);
                let es = ws * windows..ws * windows + live_w;
                let need = es
                    .clone()
                    .flat_map(|ei| cs.clone().map(move |c| a[ei * k + c * taps + tap]))
                    .map(|v| signed_bits(i64::from(v)))
                    .max()
                    .unwrap_or(1)
                    .min(pa);
                let (n, cycles) = step_shape(design, u32::from(need), pw);
                block += cycles;
                let n = n as usize;
                profile.class(n);
                profile.terms[n] += (live_w * m * cs.len()) as u64;
                for ei in es.clone() {
                    for c in cs.clone() {
                        let v = a[ei * k + c * taps + tap];
                        profile.inputs[n].add(v.unsigned_abs() as usize, m as u64);
                        if v < 0 {
                            profile.negative_inputs[n].add(v.unsigned_abs() as usize, m as u64);
                        }
                    }
                }
                for c in cs.clone() {
                    for &v in &w[(c * taps + tap) * m..][..m] {
                        profile.weights[n].add(v.unsigned_abs() as usize, live_w as u64);
                        if v < 0 {
                            profile.negative_weights[n]
                                .add(v.unsigned_abs() as usize, live_w as u64);
                        }
                    }
                }
            }
        }
        profile.block_cycles += block * (live_w * m) as u64;
    }
    profile.outputs += (e * m) as u64;
}

/// One class of steps an output's terms go through: `n` bit groups read at
/// precision `p`, `terms` of them per output, with the operand magnitudes
/// of those terms.
struct StepClass<'a> {
    n: u32,
    p: u32,
    terms: f64,
    inputs: &'a Magnitudes,
    negative_inputs: &'a Magnitudes,
    weights: &'a Magnitudes,
    negative_weights: &'a Magnitudes,
}

/// The exposure of one output of `layer` at SIP site `site` on `design`
/// with datapath `dp` (the layer at precisions `dp.act_bits`,
/// `dp.weight_bits`), per register bit (see the module doc). With run-time
/// precision detection it comes from `layer.step_profile` (one entry per
/// bit and step class); without a profile every step is taken at the
/// layer's precision (the upper bound, as the timing model does).
pub fn sip_exposure(
    design: &BitSerial,
    dp: &Datapath,
    layer: &GemmLayer,
    site: SipSite,
) -> Vec<BitExposure> {
    let (pa, pw) = (u32::from(dp.act_bits), u32::from(dp.weight_bits));
    let b = u32::from(design.bits_per_cycle);
    let taps = layer.taps.max(1);
    let profile = layer
        .step_profile
        .as_ref()
        .filter(|_| design.precision == Precision::PerGroup);
    let (classes, psum_slots): (Vec<StepClass<'_>>, f64) = if let Some(pr) = profile {
        let outputs = pr.outputs.max(1) as f64;
        let classes = (0..pr.terms.len())
            .filter(|&n| pr.terms[n] > 0)
            .map(|n| StepClass {
                n: n as u32,
                p: (n as u32 * b).min(pa),
                terms: pr.terms[n] as f64 / outputs,
                inputs: &pr.inputs[n],
                negative_inputs: &pr.negative_inputs[n],
                weights: &pr.weights[n],
                negative_weights: &pr.negative_weights[n],
            })
            .collect();
        (classes, pr.block_cycles as f64 / outputs)
    } else {
        let (n, cps) = step_shape(design, pa, pw);
        let lane_sets = (layer.k / taps).div_ceil(design.lanes) as u64;
        let class = StepClass {
            n,
            p: pa,
            terms: layer.k as f64,
            inputs: &layer.inputs,
            negative_inputs: &layer.negative_inputs,
            weights: &layer.weights,
            negative_weights: &layer.negative_weights,
        };
        (vec![class], (taps as u64 * lane_sets * cps) as f64)
    };
    if site == SipSite::PsumReg {
        return (0..u32::from(dp.psum_bits))
            .map(|bit| BitExposure {
                bit,
                slots: psum_slots,
                mags: Magnitudes::unit(),
            })
            .collect();
    }
    let mut out = Vec::new();
    for cl in &classes {
        let (n, k) = (cl.n, cl.terms);
        let cps = match design.serial {
            Serial::Activations => f64::from(n),
            Serial::Both => f64::from(n * pw),
        };
        let (a, na) = (cl.inputs, cl.negative_inputs);
        let (w, nw) = (cl.weights, cl.negative_weights);
        match (site, design.serial) {
            (SipSite::ActReg, Serial::Activations) => {
                out.extend((0..cl.p).map(|bit| BitExposure {
                    bit,
                    slots: k * f64::from(bit / b + 1),
                    mags: w.clone(),
                }));
            }
            (SipSite::WeightReg, Serial::Activations) => {
                let mut hi = Magnitudes::default();
                for i in 0..n {
                    high_part(a, na, i * b, &mut hi, 1);
                }
                out.extend((0..u32::from(dp.weight_bits)).map(|bit| BitExposure {
                    bit,
                    slots: k * f64::from(n),
                    mags: hi.clone(),
                }));
            }
            (SipSite::ActReg, Serial::Both) => {
                out.extend((0..cl.p).map(|bit| {
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
                }));
            }
            (SipSite::WeightReg, Serial::Both) => {
                out.extend((0..pw).map(|bit| {
                    let mut mags = Magnitudes::default();
                    // Weight bit `bit` is read in cycles (bit, i): a flip
                    // during an earlier weight bit changes all n groups'
                    // products, one during it the groups not yet read, one
                    // after it nothing.
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
                }));
            }
            (SipSite::PsumReg, _) => unreachable!("handled above"),
        }
    }
    out
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

/// Whether the steps of `design` have data-dependent lengths (run-time
/// precision detection), so that derivation needs each layer's
/// [`StepProfile`].
pub fn needs_step_profiles(design: &BitSerial) -> bool {
    design.precision == Precision::PerGroup
}

/// Derive `layer`'s output-hit parameters on bit-serial `design` with
/// datapath `dp` and raw SIP rates `rates` (act / weight / psum register
/// roles).
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
        let (mut site_mu, mut slots) = (0.0, 0.0f64);
        for x in &exposure {
            let vis = visible_bit(x.bit, &x.mags, shift, lambda * x.slots, &mut bit_mass);
            site_mu += vis;
            slots += x.slots;
            if site == SipSite::PsumReg && x.bit as i32 >= shift {
                psum_whole[(x.bit as i32 - shift).min(top) as usize] += lambda * x.slots;
            }
        }
        mu += site_mu;
        let width = site.width(dp);
        sites.push(SiteDerivation {
            site: Site::Sip(site),
            mean_slots: slots / f64::from(width),
            visibility: if slots > 0.0 && lambda > 0.0 {
                site_mu / (lambda * slots)
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
            // The step's width: the layer's, or with run-time detection
            // this output's own activations' (the other windows of the
            // set may widen the step; a approximation there).
            let p = if needs_step_profiles(design) {
                lanes
                    .clone()
                    .map(|c| u32::from(signed_bits(i64::from(a_row[c * taps + tap]))))
                    .max()
                    .unwrap_or(1)
                    .min(pa)
            } else {
                pa
            };
            let (n, _) = step_shape(design, p, pw);
            let p = (n * b).min(pa);
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
                        let g = bit_group(i64::from(a_row[kk]), i, b, p);
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
                outputs * x.slots * 2f64.powi(x.bit as i32) * mean
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
            input_rows: Default::default(),
            weight_rows: Default::default(),
            filters: Vec::new(),
            psum_signs: None,
            step_profile: None,
        }
    }

    /// Random 4-bit activations (`E x K`) and 3-bit weights (`K x M`) from
    /// `seed`; with `varied_rows` row `e` is shifted right by `e mod 4`
    /// bits, so rows have different widths.
    fn operands(
        seed: u64,
        (e, k, m): (usize, usize, usize),
        varied_rows: bool,
    ) -> (Vec<i32>, Vec<i32>) {
        let mut s = seed | 1;
        let mut next = |lo: i32, hi: i32| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (s % (hi - lo + 1) as u64) as i32
        };
        let a = (0..e * k)
            .map(|i| next(-8, 7) >> if varied_rows { (i / k) % 4 } else { 0 })
            .collect();
        let w = (0..k * m).map(|_| next(-4, 3)).collect();
        (a, w)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
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
            per_group in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let dp = Datapath { act_bits: 4, weight_bits: 3, psum_bits: 12, overflow: Overflow::Wrap };
            let k = channels * taps;
            // Rows of different widths, so that detected step widths vary.
            let (a, w) = operands(seed, (e, k, m), true);
            let mut d = design(serial, bits, lanes);
            let mut layer = layer_of(&a, &w, (e, k, m), taps);
            if per_group {
                // Run-time precision detection: the steps' widths from
                // the same operands.
                d.precision = Precision::PerGroup;
                d.group_size = Some(lanes);
                let mut profile = StepProfile::default();
                step_profile(&d, &dp, taps, &a, &w, (e, k, m), &mut profile);
                layer.step_profile = Some(profile);
            }
            let arr = BitSerialArray::new(d.clone()).unwrap();
            let gemm = Gemm { a: &a, w: &w, e, k, m };
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
            let (a, w) = operands(seed, (e, k, m), false);
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
            vec![2.0, 4.0, 6.0, 8.0]
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
