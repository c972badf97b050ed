//! Per-layer algorithmic feature-fault parameters from raw transient rates
//! of the PE register sites: the `output_hit` model (hit probability of an
//! output element, distribution of the hit bit at the layer output) that
//! the engine, training and search consume.
//!
//! # Formulas
//!
//! For a layer mapped as GEMMs `E x K x M` (one per group, back to back),
//! site `s` with raw rate `lambda_s` (per bit per cycle), register width
//! `W_s` and exposure `n_s(o)` (slots per output `o`, see [`super::exposure`]):
//!
//! - A flip of bit `b` changes the accumulator by `2^b` (psum, multiplier)
//!   or by `2^b * |x|` (an operand register; `x` is the other operand of the
//!   corrupted term, drawn from the layer's weight codes or input codes).
//! - At the output, after the requantization shift `sh = acc_frac -
//!   out_frac`, that is `d = 2^(b-sh) * |x|` output steps. `d >= 1` is a
//!   visible error at bit `floor(log2 d)` or the bit above (chosen with the
//!   probabilities that keep the mean error `d`: `1-f` and `f` with
//!   `d = 2^floor(log2 d) (1+f)`), capped at the top bit (where the
//!   output saturates); `d < 1` changes the rounded output by one step with
//!   probability `d` (bit 0); `x = 0` is masked.
//! - Visible errors per output: `mu(o) = sum_s lambda_s W_s n_s(o) v_s` with
//!   `v_s` the mean visibility of one flipped bit of site `s` (the average of
//!   `min(d, 1)` over bits and operand values); hit probability
//!   `p(o) = 1 - exp(-mu(o))` (Poisson, exact to first order and for
//!   independent flips); the layer's `p_out` is the mean of `p(o)` over its
//!   outputs, and `bit_weights` the visible errors' bit distribution weighted
//!   by site and exposure.
//!
//! MiBB is the special case of multiplier faults on an output-stationary
//! array when every multiplier bit is visible: `n = K`, so `p(o) = 1 -
//! (1-p)^K` with `p = 1 - (1-lambda)^(W v)` per MAC. Real dataflows differ:
//! psum registers are exposed for the whole fold (`K + R + C - 2` cycles in
//! OS, `R` per row fold in WS/IS), moving operands corrupt several outputs
//! per flip, and in WS/IS a stationary flip persists for the rest of the
//! stream, so later outputs of a fold are more exposed than earlier ones
//! (`n(o)` is not uniform: `p_min`/`p_max` report the spread); low
//! accumulator and product bits fall below the output step.

use crate::hwsim::spec::Site;
use crate::hwsim::{FaultSite, SystolicArray};
use crate::quant::MacLayer;

use super::exposure::site_exposure;
use super::psum_sign::PsumSigns;
use super::stream::{stationary_site, stationary_stream};
use crate::fault::stream_hit::StreamHits;

/// Raw transient upset rates of the four PE register sites, per bit per
/// clock cycle (0 = no faults at that site).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SiteRates {
    pub act_reg: f64,
    pub weight_reg: f64,
    pub psum_reg: f64,
    pub mult_out: f64,
}

impl SiteRates {
    /// The rate of one site.
    pub fn of(&self, site: FaultSite) -> f64 {
        match site {
            FaultSite::ActReg => self.act_reg,
            FaultSite::WeightReg => self.weight_reg,
            FaultSite::PsumReg => self.psum_reg,
            FaultSite::MultOut => self.mult_out,
        }
    }
    /// Every rate multiplied by `k` (a sweep over raw rates).
    pub fn scaled(&self, k: f64) -> SiteRates {
        SiteRates {
            act_reg: self.act_reg * k,
            weight_reg: self.weight_reg * k,
            psum_reg: self.psum_reg * k,
            mult_out: self.mult_out * k,
        }
    }
}

/// Histogram of absolute operand codes: `counts[v]` = how many operand
/// values have `|code| = v`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Magnitudes {
    pub counts: Vec<u64>,
}

impl Magnitudes {
    pub fn from_codes<I: IntoIterator<Item = i32>>(codes: I) -> Magnitudes {
        let mut m = Magnitudes::default();
        for c in codes {
            m.add(c.unsigned_abs() as usize, 1);
        }
        m
    }
    /// Add `n` values of magnitude `v`.
    pub fn add(&mut self, v: usize, n: u64) {
        if self.counts.len() <= v {
            self.counts.resize(v + 1, 0);
        }
        self.counts[v] += n;
    }
    /// Add every value of `other`.
    pub fn merge(&mut self, other: &Magnitudes) {
        for (v, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add(v, n);
            }
        }
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// A point mass at 1 (the delta of a psum or multiplier bit is `2^b`).
    pub fn unit() -> Magnitudes {
        Magnitudes { counts: vec![0, 1] }
    }
}

/// Where the visible errors of one flipped bit land at the output: total
/// visibility and the per-bit distribution (unnormalised, sums to the
/// visibility), averaged over `bits` register bits and the magnitudes.
fn visible_bits(bits: u32, mags: &Magnitudes, shift: i32, out_bits: u8) -> (f64, Vec<f64>) {
    let mut w = vec![0.0; out_bits as usize];
    if bits == 0 {
        return (0.0, w);
    }
    let vis: f64 = (0..bits)
        .map(|b| visible_bit(b, mags, shift, 1.0 / f64::from(bits), &mut w))
        .sum();
    (vis, w)
}

/// Visibility of one flip of register bit `b` whose error is `2^b * |x|`
/// with `|x|` drawn from `mags` (`x = 0` masks it), at an output
/// requantized by `shift` into `w.len()` bits: adds `scale` times its
/// output-bit distribution to `w` and returns `scale` times the
/// visibility (the mean of `min(d, 1)`).
pub(super) fn visible_bit(b: u32, mags: &Magnitudes, shift: i32, scale: f64, w: &mut [f64]) -> f64 {
    let total = mags.total();
    if total == 0 || w.is_empty() {
        return 0.0;
    }
    let top = w.len() - 1;
    let mut vis = 0.0;
    for (v, &n) in mags.counts.iter().enumerate() {
        if n == 0 || v == 0 {
            continue;
        }
        let p = scale * n as f64 / total as f64;
        let d = (v as f64) * 2f64.powi(b as i32 - shift);
        if d < 1.0 {
            w[0] += p * d;
            vis += p * d;
        } else {
            let f = d.log2().floor();
            let frac = d / 2f64.powf(f) - 1.0;
            let lo = (f as usize).min(top);
            let hi = (f as usize + 1).min(top);
            w[lo] += p * (1.0 - frac);
            w[hi] += p * frac;
            vis += p;
        }
    }
    vis
}

/// One site's share of a layer's derived faults.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteDerivation {
    /// A PE site (systolic) or a SIP site (bit-serial).
    pub site: Site,
    /// Mean slots per output (register-cycles exposing one output).
    pub mean_slots: f64,
    /// Mean visibility of one flipped bit at the output (0..1).
    pub visibility: f64,
    /// Mean outputs corrupted by one live flip.
    pub multiplicity: f64,
    /// Expected visible errors per output from this site alone.
    pub mu: f64,
}

/// The derived feature-fault parameters of one MAC layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDerivation {
    pub name: String,
    /// GEMM per group `(E, K, M)` and number of groups.
    pub gemm: (usize, usize, usize),
    pub groups: usize,
    /// Mean hit probability of an output element.
    pub p_out: f64,
    /// Distribution of the number of visible errors in a hit output
    /// (`multiplicity[i]` = P(i+1 | hit)): Poisson with each output's `mu`,
    /// conditioned on at least one, averaged over the hit outputs. At heavy
    /// rates an output takes several upsets, each with its own bit and sign.
    pub multiplicity: Vec<f64>,
    /// Smallest and largest hit probability over the layer's outputs.
    pub p_min: f64,
    pub p_max: f64,
    /// Distribution of the hit bit over the output code's bits (LSB first),
    /// sums to 1 (uniform when nothing is visible).
    pub bit_weights: Vec<f64>,
    /// Per output bit and class of the code, the probability that a hit
    /// adds `+2^b` (psum-register flips go the way their partial sum
    /// points, see [`super::psum_sign`]); empty when the layer's psum
    /// directions were not measured (a fair coin).
    pub up: Vec<Vec<f64>>,
    pub sites: Vec<SiteDerivation>,
    /// On WS/IS arrays: the stationary register's upsets as runs, and the
    /// independent hits of the other sites. The fault model carries these
    /// (`p_out`, `bit_weights` and `up` above count every site, as a
    /// layer's measured hit rate does).
    pub stream: Option<StreamPart>,
}

/// A layer's derived faults split into the stationary register's runs and
/// the other sites' independent hits.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPart {
    pub runs: StreamHits,
    pub p_out: f64,
    pub multiplicity: Vec<f64>,
    pub bit_weights: Vec<f64>,
    pub up: Vec<Vec<f64>>,
}

impl LayerDerivation {
    /// The model's independent hits: `(p_out, multiplicity, bit_weights,
    /// up)` of the sites the runs do not carry.
    pub fn independent(&self) -> (f64, &[f64], &[f64], &[Vec<f64>]) {
        match &self.stream {
            Some(s) => (s.p_out, &s.multiplicity, &s.bit_weights, &s.up),
            None => (self.p_out, &self.multiplicity, &self.bit_weights, &self.up),
        }
    }

    /// The layer with a fitted correction `c` (measured / derived hit
    /// rate) applied: every hit probability `p -> 1 - (1-p)^c`, the runs'
    /// upsets times `c` (the multiplicities are kept).
    pub fn corrected(&self, c: f64) -> LayerDerivation {
        let fit = |p: f64| 1.0 - (1.0 - p.min(1.0)).powf(c);
        let mut l = self.clone();
        l.p_out = fit(l.p_out);
        if let Some(s) = &mut l.stream {
            s.p_out = fit(s.p_out);
            s.runs = s.runs.scaled(c);
        }
        l
    }
}

/// A MAC layer as derivation sees it: its GEMM per group, how its
/// accumulator is requantized, and the magnitudes of its operands.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmLayer {
    pub name: String,
    pub e: usize,
    pub k: usize,
    pub m: usize,
    pub groups: usize,
    /// Kernel taps `kh * kw` (1 for a linear layer): the reduction index is
    /// `k = c * taps + tap`.
    pub taps: usize,
    /// Requantization right shift `acc_frac - out_frac`.
    pub shift: i32,
    pub out_bits: u8,
    pub weights: Magnitudes,
    /// The layer's input codes as the GEMM sees them (padding zeros included).
    pub inputs: Magnitudes,
    /// The negative ones among `weights` and `inputs` (bit-serial designs
    /// consume codes bit group by bit group, and the partial value of a
    /// code's high groups depends on its sign).
    pub negative_weights: Magnitudes,
    pub negative_inputs: Magnitudes,
    /// Per reduction row and along the stream, the im2col inputs
    /// (measured on real images; empty when not measured) and the weights:
    /// what the moving operand of a stationary register's run looks like
    /// ([`OperandRows`]).
    pub input_rows: OperandRows,
    pub weight_rows: OperandRows,
    /// Per output channel (`g*M + m`), its filter's weight codes and the
    /// negative ones among them: what one weight-stationary stream holds.
    pub filters: Vec<(Magnitudes, Magnitudes)>,
    /// How often a psum-register flip moves the output in the direction of
    /// the output code's own bit, measured on real images for the array
    /// being derived for (`None`: unknown, hits keep a random sign).
    pub psum_signs: Option<PsumSigns>,
    /// How the layer's steps split by detected width on a bit-serial
    /// design with run-time precision detection, measured on real images
    /// (`None`: per-layer precision, or not measured).
    pub step_profile: Option<super::bitserial::StepProfile>,
}

impl GemmLayer {
    /// The GEMM view of a quantized layer with input magnitudes `inputs`
    /// (`negative_inputs` of them negative).
    pub fn of(layer: &MacLayer, inputs: Magnitudes, negative_inputs: Magnitudes) -> GemmLayer {
        GemmLayer {
            name: layer.name.clone(),
            e: layer.out_shape.h * layer.out_shape.w,
            k: layer.macs_per_output(),
            m: layer.cout_per_group(),
            groups: layer.groups,
            taps: layer.kernel.0 * layer.kernel.1,
            shift: layer.acc_frac - layer.out_format.frac,
            out_bits: layer.out_format.bits,
            weights: Magnitudes::from_codes(layer.weights.iter().copied()),
            inputs,
            negative_weights: Magnitudes::from_codes(
                layer.weights.iter().copied().filter(|&w| w < 0),
            ),
            negative_inputs,
            input_rows: OperandRows::default(),
            weight_rows: weight_rows(layer),
            filters: layer
                .weights
                .chunks_exact(layer.macs_per_output().max(1))
                .map(|f| {
                    (
                        Magnitudes::from_codes(f.iter().copied()),
                        Magnitudes::from_codes(f.iter().copied().filter(|&w| w < 0)),
                    )
                })
                .collect(),
            psum_signs: None,
            step_profile: None,
        }
    }
}

/// How one operand of a GEMM varies where a stationary register's run
/// meets it. One held operand meets one reduction row `(g, k)` of the
/// moving operand (index `g*K + k`) along its whole stream, and rows
/// differ: an input channel that ReLU left mostly dead, a busy one, a
/// channel of a linear (projection) layer that is negative almost
/// everywhere. Positions along the stream differ too: the border pixels of
/// a Fashion-MNIST image are background. Empty vectors: not measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperandRows {
    /// Mean magnitude per row.
    pub mean: Vec<f64>,
    /// Share of each row's non-zero entries that are negative.
    pub negative: Vec<f64>,
    /// Mean magnitude per stream position over all rows (output pixel for
    /// the im2col inputs, filter of its group for the weights).
    pub along: Vec<f64>,
}

/// Running sums behind an [`OperandRows`].
#[derive(Debug, Clone, Default)]
pub struct OperandRowSums {
    magnitude: Vec<f64>,
    nonzero: Vec<u64>,
    negative: Vec<u64>,
    along: Vec<f64>,
    /// Entries summed into each position of `along`.
    along_count: Vec<u64>,
}

impl OperandRowSums {
    /// Sums for `rows` rows and `positions` stream positions.
    pub fn new(rows: usize, positions: usize) -> OperandRowSums {
        OperandRowSums {
            magnitude: vec![0.0; rows],
            nonzero: vec![0; rows],
            negative: vec![0; rows],
            along: vec![0.0; positions],
            along_count: vec![0; positions],
        }
    }

    /// Add the entry `v` of row `row` at stream position `pos`.
    #[inline]
    pub fn add(&mut self, row: usize, pos: usize, v: i32) {
        let m = f64::from(v.unsigned_abs());
        self.magnitude[row] += m;
        self.nonzero[row] += u64::from(v != 0);
        self.negative[row] += u64::from(v < 0);
        self.along[pos] += m;
        self.along_count[pos] += 1;
    }

    pub fn merge(&mut self, other: &OperandRowSums) {
        let add_f = |a: &mut Vec<f64>, b: &Vec<f64>| {
            a.resize(a.len().max(b.len()), 0.0);
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        };
        let add_u = |a: &mut Vec<u64>, b: &Vec<u64>| {
            a.resize(a.len().max(b.len()), 0);
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        };
        add_f(&mut self.magnitude, &other.magnitude);
        add_u(&mut self.nonzero, &other.nonzero);
        add_u(&mut self.negative, &other.negative);
        add_f(&mut self.along, &other.along);
        add_u(&mut self.along_count, &other.along_count);
    }

    /// The statistics, each row's mean over `per_row` entries.
    pub fn finish(&self, per_row: u64) -> OperandRows {
        let n = per_row.max(1) as f64;
        OperandRows {
            mean: self.magnitude.iter().map(|m| m / n).collect(),
            negative: self
                .nonzero
                .iter()
                .zip(&self.negative)
                .map(|(&nz, &neg)| if nz == 0 { 0.0 } else { neg as f64 / nz as f64 })
                .collect(),
            along: self
                .along
                .iter()
                .zip(&self.along_count)
                .map(|(&s, &c)| if c == 0 { 0.0 } else { s / c as f64 })
                .collect(),
        }
    }
}

/// The weights of `layer` per reduction row `(g, k)` over the group's
/// filters, and per filter of a group over all rows.
fn weight_rows(layer: &MacLayer) -> OperandRows {
    let (k, m) = (layer.macs_per_output(), layer.cout_per_group());
    let mut sums = OperandRowSums::new(layer.groups * k, m);
    for (f, filter) in layer.weights.chunks_exact(k).enumerate() {
        let g = f / m.max(1);
        for (r, &w) in filter.iter().enumerate() {
            sums.add(g * k + r, f % m.max(1), w);
        }
    }
    sums.finish(m as u64)
}

/// Derive `layer`'s output-hit parameters on `array` with datapath widths
/// `(act_bits, weight_bits, psum_bits)` and raw rates `rates`.
pub fn derive_layer(
    array: &SystolicArray,
    widths: (u8, u8, u8),
    layer: &GemmLayer,
    rates: &SiteRates,
) -> LayerDerivation {
    let (act_bits, weight_bits, psum_bits) = widths;
    let (e, k, m) = (layer.e, layer.k, layer.m);
    let mp = array.mapping(e, k, m);
    let (shift, out_bits) = (layer.shift, layer.out_bits);
    let (weights, inputs) = (&layer.weights, &layer.inputs);
    let mut mu = vec![0.0f64; e * m];
    let mut bit_mass = vec![0.0f64; out_bits as usize];
    // The same without the stationary register (carried as runs instead).
    let stationary = stationary_site(array.dataflow);
    let (mut mu_rest, mut bit_mass_rest) = (vec![0.0f64; e * m], vec![0.0f64; out_bits as usize]);
    // Visible errors of psum bits at or above the shift (whole steps), by
    // output bit: the ones whose direction `up` describes.
    let mut psum_whole = vec![0.0f64; out_bits as usize];
    let mut sites = Vec::new();
    for site in FaultSite::ALL {
        let (width, mags) = match site {
            FaultSite::ActReg => (u32::from(act_bits), weights),
            FaultSite::WeightReg => (u32::from(weight_bits), inputs),
            FaultSite::PsumReg => (u32::from(psum_bits), &Magnitudes::unit()),
            FaultSite::MultOut => (
                u32::from(act_bits) + u32::from(weight_bits),
                &Magnitudes::unit(),
            ),
        };
        let ex = site_exposure(&mp, e, k, m, site);
        let lambda = rates.of(site);
        let (vis, bits) = visible_bits(width, mags, shift, out_bits);
        let per_slot = lambda * f64::from(width) * vis;
        let mass = lambda * f64::from(width) * ex.touches as f64;
        let add = |mu: &mut [f64], bit_mass: &mut [f64]| {
            for (acc, &s) in mu.iter_mut().zip(&ex.slots) {
                *acc += per_slot * s as f64;
            }
            for (t, b) in bit_mass.iter_mut().zip(&bits) {
                *t += mass * b;
            }
        };
        add(&mut mu, &mut bit_mass);
        if Some(site) != stationary {
            add(&mut mu_rest, &mut bit_mass_rest);
        }
        if site == FaultSite::PsumReg {
            let top = i32::from(out_bits) - 1;
            for b in shift.max(0)..width as i32 {
                psum_whole[(b - shift).min(top) as usize] += mass / f64::from(width);
            }
        }
        sites.push(SiteDerivation {
            site: Site::Pe(site),
            mean_slots: ex.mean_slots(),
            visibility: vis,
            multiplicity: ex.multiplicity(),
            mu: per_slot * ex.mean_slots(),
        });
    }
    let mut d = assemble(layer, (e, k, m), &mu, &bit_mass, &psum_whole, sites);
    if let Some(site) = stationary {
        let width = match site {
            FaultSite::WeightReg => u32::from(weight_bits),
            _ => u32::from(act_bits),
        };
        if let Some(runs) = stationary_stream(&mp, layer, width, rates.of(site)) {
            let rest = assemble(
                layer,
                (e, k, m),
                &mu_rest,
                &bit_mass_rest,
                &psum_whole,
                Vec::new(),
            );
            d.stream = Some(StreamPart {
                runs,
                p_out: rest.p_out,
                multiplicity: rest.multiplicity,
                bit_weights: rest.bit_weights,
                up: rest.up,
            });
        }
    }
    d
}

/// The derived parameters of `layer` from its expected visible errors per
/// output `mu`, their mass per output bit `bit_mass`, the part of it that
/// psum-register bits at or above the shift carry (`psum_whole`, whose
/// directions `layer.psum_signs` describes) and the per-site shares.
pub(super) fn assemble(
    layer: &GemmLayer,
    gemm: (usize, usize, usize),
    mu: &[f64],
    bit_mass: &[f64],
    psum_whole: &[f64],
    sites: Vec<SiteDerivation>,
) -> LayerDerivation {
    let out_bits = layer.out_bits;
    let p: Vec<f64> = mu.iter().map(|&x| -(-x).exp_m1()).collect();
    let p_out = p.iter().sum::<f64>() / p.len().max(1) as f64;
    let multiplicity = poisson_multiplicity(mu);
    let total: f64 = bit_mass.iter().sum();
    let bit_weights = if total > 0.0 {
        bit_mass.iter().map(|x| x / total).collect()
    } else {
        vec![1.0 / f64::from(out_bits); out_bits as usize]
    };
    // up_{b,c} = (1 - s_b)/2 + s_b u_{b,c}: psum hits go the measured
    // way, the other sites' hits toss a coin.
    let up = match &layer.psum_signs {
        Some(signs) => (0..out_bits as usize)
            .map(|b| {
                let share = if bit_mass[b] > 0.0 {
                    (psum_whole[b] / bit_mass[b]).min(1.0)
                } else {
                    0.0
                };
                (0..2 * out_bits as usize)
                    .map(|c| 0.5 * (1.0 - share) + share * signs.up_share(b, c))
                    .collect()
            })
            .collect(),
        None => Vec::new(),
    };
    LayerDerivation {
        name: layer.name.clone(),
        gemm,
        groups: layer.groups,
        up,
        p_out,
        multiplicity,
        p_min: p.iter().copied().fold(f64::INFINITY, f64::min),
        p_max: p.iter().copied().fold(0.0, f64::max),
        bit_weights,
        sites,
        stream: None,
    }
}

/// Most visible errors one output is modelled to take in one run.
const MAX_MULTIPLICITY: usize = 64;

/// `P(k | k >= 1)` for `k = 1..`, `k ~ Poisson(mu_o)`, averaged over
/// outputs weighted by their hit probability; the tail below `1e-12` is
/// dropped (a single error when nothing is hit).
fn poisson_multiplicity(mu: &[f64]) -> Vec<f64> {
    let mut acc = vec![0.0f64; MAX_MULTIPLICITY];
    for &m in mu {
        if m <= 0.0 {
            continue;
        }
        // e^-m m^k / k!, k = 1..
        let mut term = (-m).exp() * m;
        for (k, a) in acc.iter_mut().enumerate() {
            *a += term;
            term *= m / (k + 2) as f64;
            if term < 1e-18 && k + 2 > m as usize {
                break;
            }
        }
    }
    let total: f64 = acc.iter().sum();
    if total <= 0.0 {
        return vec![1.0];
    }
    let mut out: Vec<f64> = acc.iter().map(|a| a / total).collect();
    while out.len() > 1 && out[out.len() - 1] < 1e-12 {
        out.pop();
    }
    let s: f64 = out.iter().sum();
    out.iter_mut().for_each(|x| *x /= s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operand_rows_count_rows_signs_and_positions() {
        // Two rows, three positions, over two "images" merged.
        let mut a = OperandRowSums::new(2, 3);
        for (row, pos, v) in [
            (0, 0, 4),
            (0, 1, 0),
            (0, 2, -2),
            (1, 0, -1),
            (1, 1, -3),
            (1, 2, 0),
        ] {
            a.add(row, pos, v);
        }
        let mut b = OperandRowSums::new(2, 3);
        for (row, pos, v) in [
            (0, 0, 2),
            (0, 1, 0),
            (0, 2, 0),
            (1, 0, -5),
            (1, 1, 1),
            (1, 2, 0),
        ] {
            b.add(row, pos, v);
        }
        a.merge(&b);
        let r = a.finish(6);
        assert_eq!(r.mean, vec![8.0 / 6.0, 10.0 / 6.0]);
        // Row 0: non-zero 4, -2, 2 -> 1 of 3 negative; row 1: -1, -3, -5, 1.
        assert_eq!(r.negative, vec![1.0 / 3.0, 0.75]);
        // Position 0: |4|, |-1|, |2|, |-5| over 4 entries.
        assert_eq!(r.along, vec![3.0, 1.0, 0.5]);
    }

    #[test]
    fn multiplicity_is_the_conditioned_poisson() {
        // One output at mu = 0.5: P(k | k>=1) = e^-.5 .5^k/k! / (1-e^-.5).
        let m = poisson_multiplicity(&[0.5]);
        let z = -(-0.5f64).exp_m1();
        for (k, &p) in m.iter().enumerate().take(5) {
            let k1 = (k + 1) as i32;
            let fact: f64 = (1..=k1).map(f64::from).product();
            let want = (-0.5f64).exp() * 0.5f64.powi(k1) / fact / z;
            assert!((p - want).abs() < 1e-12, "k={k1}: {p} vs {want}");
        }
        assert_eq!(poisson_multiplicity(&[0.0, 0.0]), vec![1.0]);
        // Tiny rates: a single error, up to rounding.
        assert!(poisson_multiplicity(&[1e-9])[0] > 1.0 - 1e-9);
        let s: f64 = poisson_multiplicity(&[3.0, 0.1, 12.0]).iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn visibility_of_psum_bits_follows_the_shift() {
        // 32-bit psum, shift 10, 8-bit output: bits 0..9 are sub-step
        // (visibility 2^(b-10)), bits 10..16 land on output bits 0..6,
        // bits 17..31 (15 of them) saturate into the top bit.
        let (v, w) = visible_bits(32, &Magnitudes::unit(), 10, 8);
        let sub: f64 = (0..10).map(|b| 2f64.powi(b - 10)).sum();
        assert!((v - (sub + 22.0) / 32.0).abs() < 1e-12, "{v}");
        assert!((w[0] - (sub + 1.0) / 32.0).abs() < 1e-12);
        for (b, &wb) in w.iter().enumerate().take(7).skip(1) {
            assert!((wb - 1.0 / 32.0).abs() < 1e-12, "bit {b}");
        }
        assert!((w[7] - 15.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn operand_magnitudes_keep_the_mean_error() {
        // |x| = 3 with shift 0: d = 3 * 2^b: bit b+1 (w.p. 1/2) or b+2 (1/2)
        // — mean 2^(b+1)/2 + 2^(b+2)/2 = 3*2^b.
        let mags = Magnitudes::from_codes([3, -3]);
        let (v, w) = visible_bits(1, &mags, 0, 8);
        assert!((v - 1.0).abs() < 1e-12);
        assert!((w[1] - 0.5).abs() < 1e-12 && (w[2] - 0.5).abs() < 1e-12);
        let zeros = Magnitudes::from_codes([0, 0, 3, 3]);
        let (v, _) = visible_bits(1, &zeros, 0, 8);
        assert!((v - 0.5).abs() < 1e-12, "zero operands mask half the flips");
    }
}

#[cfg(test)]
mod special_cases {
    use super::*;
    use crate::accel::Dataflow;

    fn layer(e: usize, k: usize, m: usize, shift: i32) -> GemmLayer {
        GemmLayer {
            name: "l".into(),
            e,
            k,
            m,
            groups: 1,
            taps: 1,
            shift,
            out_bits: 8,
            weights: Magnitudes::from_codes([5, -9, 17]),
            inputs: Magnitudes::from_codes([0, 3, 40]),
            negative_weights: Magnitudes::from_codes([-9]),
            negative_inputs: Magnitudes::default(),
            input_rows: OperandRows::default(),
            weight_rows: OperandRows::default(),
            filters: Vec::new(),
            psum_signs: None,
            step_profile: None,
        }
    }

    /// Multiplier faults on an OS array are MiBB: every output has the same
    /// exposure `K`, and `p_out = 1 - exp(-lambda K W v)`.
    #[test]
    fn mult_out_on_os_is_mibb() {
        let arr = SystolicArray::new(8, 8, Dataflow::Os).unwrap();
        let l = layer(50, 72, 20, 6);
        let lambda = 1e-6;
        let rates = SiteRates {
            mult_out: lambda,
            ..SiteRates::default()
        };
        let d = derive_layer(&arr, (8, 8, 32), &l, &rates);
        assert_eq!(d.p_min, d.p_max, "uniform exposure");
        let (v, _) = visible_bits(16, &Magnitudes::unit(), 6, 8);
        let want = -(-lambda * 72.0 * 16.0 * v).exp_m1();
        assert!((d.p_out - want).abs() < 1e-15, "{} vs {want}", d.p_out);
    }

    /// Stationary-operand flips in WS expose later outputs of a fold more.
    #[test]
    fn ws_stationary_exposure_is_not_uniform() {
        let arr = SystolicArray::new(8, 8, Dataflow::Ws).unwrap();
        let l = layer(50, 72, 20, 6);
        let rates = SiteRates {
            weight_reg: 1e-6,
            ..SiteRates::default()
        };
        let d = derive_layer(&arr, (8, 8, 32), &l, &rates);
        assert!(d.p_max > 2.0 * d.p_min, "{} {}", d.p_min, d.p_max);
    }
}
