//! Which way a flipped psum-register bit moves an output: the sign
//! statistics that make the derived `output_hit` model's `up` table (see
//! `crate::fault::output_hit`).
//!
//! A transient flip of bit `B` of a `psum_bits`-wide partial sum `s` adds
//! `+2^B` when that bit is 0 and `-2^B` when it is 1 — except the register's
//! sign bit (`B = psum_bits - 1`), whose two's-complement weight is negative,
//! so there a 0 becomes `-2^(psum_bits-1)`. The error then rides the rest of
//! the reduction to the output. For bits above the partial sum's magnitude
//! the direction is the partial sum's own sign: a negative pre-activation
//! is pushed further down (ReLU masks it), not up to the positive rail. A
//! random-sign model misses this and over-states the damage (measured:
//! ResNet-20 on a 16x16 OS array, psum flips only at 1e-6 per bit-cycle,
//! hardware 65.5% vs random-sign derivation 58.1%).
//!
//! # What is counted
//!
//! The slots that expose an output's partial sum (see [`super::exposure`])
//! hold it after `j` of its `K` terms: in OS, PE `(i, c)` holds 0 terms for
//! the `i + c + 1` cycles up to its first product, `j` terms in one cycle
//! each for `j = 1..K-1`, and all `K` for the `R + C - 2 - i - c` cycles
//! until the fold ends; in WS/IS, row `r` of row fold `f` holds
//! `min(f R + r, K)` terms (one slot per row of every row fold). For each
//! slot and visible register bit `B` (at or above the requantization
//! shift `sh`, reaching output bit `b = min(B - sh, top)`), the count is
//! whether the flip raises the accumulator, per class `c` of the output
//! code `y` (its sign and bit length, [`sign_class`]). The share `u_{b,c}`
//! over slots, outputs and real images makes the model's
//! `up_{b,c} = (1 - s_b) / 2 + s_b u_{b,c}` with `s_b` the psum registers'
//! share of the visible errors at bit `b` (the other sites keep a fair
//! coin). The class matters: a partial sum agrees in sign with a final
//! value far from zero almost always, with one near zero about half the
//! time, and one whose inputs are all zero (the bias alone) never moves
//! off zero, so its flips all go up.
//! Bits below the requantization shift only move the
//! output by rounding and are left random.

use crate::accel::Dataflow;
use crate::fault::output_hit::sign_class;
use crate::fixed::{requantize, wrap, Datapath, Overflow};
use crate::hwsim::layer::{filter_operand, ifmap_operand};
use crate::hwsim::Mapping;
use crate::quant::MacLayer;

/// Slots of output `(e, mi)` that hold the partial sum of 0 terms and of
/// all `K` terms; each partial of `1..K-1` terms is held in exactly one
/// slot. Together: the output's psum exposure (`K + R + C - 2` in OS,
/// `R * row_folds` in WS/IS).
pub fn psum_slot_split(mp: &Mapping, k: usize, e: usize, mi: usize) -> (u64, u64) {
    let (rr, cc) = (mp.rows as u64, mp.cols as u64);
    match mp.dataflow {
        Dataflow::Os => {
            let d = (e % mp.rows + mi % mp.cols) as u64;
            (d + 1, rr + cc - 2 - d)
        }
        Dataflow::Ws | Dataflow::Is => (1, rr * mp.row_folds as u64 - k as u64),
    }
}

/// Per bit `B` of the psum register, over the output's exposing slots:
/// `ones[B]` = slots whose partial sum has bit `B` set. `partials` yields
/// the partial sums after 1..=K terms (the last is the final sum).
fn count_ones(partials: &[i64], full: u64, bits: u32, ones: &mut [u64]) {
    ones.iter_mut().for_each(|o| *o = 0);
    let (last, mid) = partials.split_last().expect("K >= 1");
    for &s in mid {
        let mut x = s as u64;
        for o in ones.iter_mut().take(bits as usize) {
            *o += x & 1;
            x >>= 1;
        }
    }
    // A partial of 0 terms has no bit set: its slots add nothing.
    let mut x = *last as u64;
    for o in ones.iter_mut().take(bits as usize) {
        *o += (x & 1) * full;
        x >>= 1;
    }
}

/// Slots (of `n`, `ones` of them with bit `b` set) whose flip of bit `b`
/// raises the final accumulator `acc`. A clear bit adds `+2^b`, a set one
/// `-2^b`, and the error rides to the end of the reduction. With a wrapping
/// accumulator the result is `wrap(acc +- 2^b)` — for the sign bit both
/// directions are the same residue, so there the final value's sign
/// decides; a saturating one keeps the direction (its sign bit: a clear
/// bit drops the value to the negative rail, a set one lifts it).
pub(crate) fn ups(dp: &Datapath, acc: i64, ones: u64, n: u64, b: u32) -> u64 {
    let bits = u32::from(dp.psum_bits);
    let (clear_up, set_up) = match dp.overflow {
        Overflow::Wrap => (
            wrap(acc + (1i64 << b), dp.psum_bits) > acc,
            wrap(acc - (1i64 << b), dp.psum_bits) > acc,
        ),
        Overflow::Saturate => (b + 1 < bits, b + 1 == bits),
    };
    (if clear_up { n - ones } else { 0 }) + (if set_up { ones } else { 0 })
}

/// For every output of a GEMM (`a`: `E x K`, `w`: `K x M`, row-major) mapped
/// as `mp`: its psum slots `n` and, per register bit, how many of those
/// slots' flips raise its accumulator. What a brute-force flip campaign on
/// the cycle-level model measures (tested).
pub fn flip_ups(
    mp: &Mapping,
    dp: &Datapath,
    a: &[i32],
    w: &[i32],
    (e, k, m): (usize, usize, usize),
) -> Vec<(u64, Vec<u64>)> {
    let bits = u32::from(dp.psum_bits);
    let mut partials = vec![0i64; k];
    let mut ones = vec![0u64; bits as usize];
    let mut out = Vec::with_capacity(e * m);
    for ei in 0..e {
        for mi in 0..m {
            partial_sums(dp, &a[ei * k..][..k], w, m, mi, &mut partials);
            let (zero, full) = psum_slot_split(mp, k, ei, mi);
            count_ones(&partials, full, bits, &mut ones);
            let n = zero + (k as u64 - 1) + full;
            let acc = partials[k - 1];
            let up = (0..bits)
                .map(|b| ups(dp, acc, ones[b as usize], n, b))
                .collect();
            out.push((n, up));
        }
    }
    out
}

/// Partial sums after `1..=K` terms of output column `mi`, with the
/// accumulator rule after every addition (as the PEs add).
fn partial_sums(dp: &Datapath, a_row: &[i32], w: &[i32], m: usize, mi: usize, out: &mut [i64]) {
    let mut s = 0i64;
    for (j, (&x, o)) in a_row.iter().zip(out.iter_mut()).enumerate() {
        s = dp.acc_limit(s + i64::from(x) * i64::from(w[j * m + mi]));
        *o = s;
    }
}

/// Directions of one layer's psum-register flips, per output bit `b` (LSB
/// first) and class `c` of the output code ([`sign_class`], `2 *
/// out_bits` classes): `up[b][c]` of `count[b][c]` (visible register bit,
/// slot) pairs raise the accumulator, summed over outputs and images.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PsumSigns {
    pub up: Vec<Vec<f64>>,
    pub count: Vec<Vec<f64>>,
}

impl PsumSigns {
    fn zeros(out_bits: u8) -> PsumSigns {
        let table = vec![vec![0.0; 2 * out_bits as usize]; out_bits as usize];
        PsumSigns {
            up: table.clone(),
            count: table,
        }
    }

    /// `u_{b,c}`: the share of bit-`b` psum flips on outputs of class `c`
    /// that raise them (0.5 when nothing was counted).
    pub fn up_share(&self, b: usize, c: usize) -> f64 {
        let at = |t: &Vec<Vec<f64>>| t.get(b).and_then(|r| r.get(c)).copied();
        match (at(&self.up), at(&self.count)) {
            (Some(u), Some(n)) if n > 0.0 => u / n,
            _ => 0.5,
        }
    }

    fn add(&mut self, other: &PsumSigns) {
        for (t, o) in [(&mut self.up, &other.up), (&mut self.count, &other.count)] {
            for (r, q) in t.iter_mut().zip(o) {
                for (x, y) in r.iter_mut().zip(q) {
                    *x += y;
                }
            }
        }
    }
}

/// Count [`PsumSigns`] of `layer` mapped as `mp` per group on one image
/// (`input`: the layer's input codes, CHW).
pub fn layer_psum_signs(mp: &Mapping, dp: &Datapath, layer: &MacLayer, input: &[i32]) -> PsumSigns {
    let k = layer.macs_per_output();
    let mut partials = vec![0i64; k];
    count_layer_signs(dp, layer, input, |a_row, w, (ei, mi, m), ones| {
        partial_sums(dp, a_row, w, m, mi, &mut partials);
        let (zero, full) = psum_slot_split(mp, k, ei, mi);
        count_ones(&partials, full, u32::from(dp.psum_bits), ones);
        (partials[k - 1], zero + (k as u64 - 1) + full)
    })
}

/// [`PsumSigns`] of `layer` on one image (`input`: its input codes, CHW)
/// on hardware whose psum slots `slots` describes: for one output (its
/// GEMM row `a_row`, the group's filter operand `w` (`K x m`), pixel `ei`
/// and filter `mi` of `m`) it counts in `ones[B]` the slots exposing the
/// output whose partial sum has register bit `B` set, and returns the final
/// accumulator and the number of slots.
pub(super) fn count_layer_signs(
    dp: &Datapath,
    layer: &MacLayer,
    input: &[i32],
    mut slots: impl FnMut(&[i32], &[i32], (usize, usize, usize), &mut [u64]) -> (i64, u64),
) -> PsumSigns {
    let out_bits = layer.out_format.bits;
    let top = i32::from(out_bits) - 1;
    let sh = layer.acc_frac - layer.out_format.frac;
    let bits = u32::from(dp.psum_bits);
    let mut signs = PsumSigns::zeros(out_bits);
    // Register bits at or above the shift reach the output as whole steps.
    let lo = sh.max(0) as u32;
    if lo >= bits {
        return signs;
    }
    let (k, m) = (layer.macs_per_output(), layer.cout_per_group());
    let e = layer.out_shape.h * layer.out_shape.w;
    let (mut a, mut w) = (Vec::new(), Vec::new());
    let mut ones = vec![0u64; bits as usize];
    for gi in 0..layer.groups {
        ifmap_operand(layer, input, gi, &mut a);
        filter_operand(layer, &layer.weights, gi, &mut w);
        for ei in 0..e {
            for mi in 0..m {
                let (acc, n) = slots(&a[ei * k..][..k], &w, (ei, mi, m), &mut ones);
                let bias = i64::from(layer.bias[gi * m + mi]);
                let y = requantize(
                    dp.acc_limit(acc + bias),
                    layer.acc_frac,
                    layer.out_format.frac,
                    out_bits,
                );
                let class = sign_class(y as i32, out_bits);
                for b in lo..bits {
                    let ob = (b as i32 - sh).min(top) as usize;
                    signs.up[ob][class] += ups(dp, acc, ones[b as usize], n, b) as f64;
                    signs.count[ob][class] += n as f64;
                }
            }
        }
    }
    signs
}

/// [`layer_psum_signs`] summed over several images' inputs.
pub fn sum_signs<'a>(parts: impl IntoIterator<Item = &'a PsumSigns>) -> Option<PsumSigns> {
    let mut it = parts.into_iter();
    let mut total = it.next()?.clone();
    for p in it {
        total.add(p);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::exposure::site_exposure;
    use crate::hwsim::{FaultSite, Gemm, HwFault, SystolicArray};
    use proptest::prelude::*;

    /// Brute force: flip bit `b` of the psum register of every PE in every
    /// cycle, one run each, and count per output the flips that raise its
    /// accumulator and those that change it.
    fn brute(
        arr: &SystolicArray,
        dp: &Datapath,
        a: &[i32],
        w: &[i32],
        (e, k, m): (usize, usize, usize),
    ) -> Vec<(u64, Vec<u64>)> {
        let g = Gemm { a, w, e, k, m };
        let clean = arr.run(&g, dp, &[]).unwrap().out;
        let mp = arr.mapping(e, k, m);
        let bits = u32::from(dp.psum_bits);
        let mut res = vec![(0u64, vec![0u64; bits as usize]); e * m];
        for b in 0..bits {
            let mut changed = vec![0u64; e * m];
            for row in 0..arr.rows {
                for col in 0..arr.cols {
                    for cycle in 0..mp.cycles {
                        let f = HwFault::flip(FaultSite::PsumReg, row, col, b as u8, cycle);
                        let out = arr.run(&g, dp, &[f]).unwrap().out;
                        for (i, (x, y)) in out.iter().zip(&clean).enumerate() {
                            if x != y {
                                changed[i] += 1;
                                if x > y {
                                    res[i].1[b as usize] += 1;
                                }
                            }
                        }
                    }
                }
            }
            for (r, c) in res.iter_mut().zip(&changed) {
                r.0 = r.0.max(*c);
            }
        }
        res
    }

    /// A small conv layer: input `2 x 3 x 3`, 2x2 kernel, 4 output
    /// channels in `groups` groups, 4-bit codes, requantization shift 3.
    fn small_layer(groups: usize, seed: u64) -> (MacLayer, Vec<i32>) {
        use crate::fixed::Format;
        use crate::model::Shape;
        use crate::quant::Activation;
        let val = |i: usize, lo: i32| {
            lo + ((i as u64 * 2654435761 + seed * 97) % (8 - lo as i64) as u64) as i32
        };
        let cin_g = 2 / groups;
        let layer = MacLayer {
            node: 0,
            name: "c".into(),
            is_conv: true,
            in_shape: Shape::new(2, 3, 3),
            out_shape: Shape::new(4, 2, 2),
            kernel: (2, 2),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups,
            weights: (0..4 * cin_g * 4).map(|i| val(i + 500, -7)).collect(),
            weight_format: Format { bits: 4, frac: 0 },
            bias: (0..4).map(|i| val(i + 900, -7) * 3).collect(),
            in_format: Format { bits: 4, frac: 0 },
            acc_frac: 0,
            out_format: Format { bits: 4, frac: -3 },
            activation: Activation::Relu,
        };
        let input = (0..18).map(|i| val(i, -3)).collect();
        (layer, input)
    }

    /// [`layer_psum_signs`] by brute force: flip every visible psum bit of
    /// every PE in every cycle on the cycle-level model, one run each, and
    /// count which way the changed output moved, by its code's class.
    fn brute_layer(
        arr: &SystolicArray,
        dp: &Datapath,
        layer: &MacLayer,
        input: &[i32],
    ) -> PsumSigns {
        let (k, m) = (layer.macs_per_output(), layer.cout_per_group());
        let e = layer.out_shape.h * layer.out_shape.w;
        let sh = layer.acc_frac - layer.out_format.frac;
        let top = i32::from(layer.out_format.bits) - 1;
        let mut signs = PsumSigns::zeros(layer.out_format.bits);
        let mp = arr.mapping(e, k, m);
        let (mut a, mut w) = (Vec::new(), Vec::new());
        for gi in 0..layer.groups {
            ifmap_operand(layer, input, gi, &mut a);
            filter_operand(layer, &layer.weights, gi, &mut w);
            let g = Gemm {
                a: &a,
                w: &w,
                e,
                k,
                m,
            };
            let clean = arr.run(&g, dp, &[]).unwrap().out;
            for b in sh as u32..u32::from(dp.psum_bits) {
                for row in 0..arr.rows {
                    for col in 0..arr.cols {
                        for cycle in 0..mp.cycles {
                            let f = HwFault::flip(FaultSite::PsumReg, row, col, b as u8, cycle);
                            let out = arr.run(&g, dp, &[f]).unwrap().out;
                            for (i, (x, y)) in out.iter().zip(&clean).enumerate() {
                                if x == y {
                                    continue;
                                }
                                let bias = i64::from(layer.bias[gi * m + i % m]);
                                let code = requantize(
                                    dp.acc_limit(y + bias),
                                    layer.acc_frac,
                                    layer.out_format.frac,
                                    layer.out_format.bits,
                                );
                                let ob = (b as i32 - sh).min(top) as usize;
                                let class = sign_class(code as i32, layer.out_format.bits);
                                if x > y {
                                    signs.up[ob][class] += 1.0;
                                }
                                signs.count[ob][class] += 1.0;
                            }
                        }
                    }
                }
            }
        }
        signs
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// The layer's direction table equals single flips on the
        /// cycle-level model: every visible bit, PE and cycle, every
        /// dataflow, grouped or not, wrapping or saturating.
        #[test]
        fn layer_directions_equal_brute_force(
            rows in 1usize..4, cols in 1usize..4,
            df in prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)],
            groups in prop_oneof![Just(1usize), Just(2usize)],
            seed in 0u64..1000,
            saturate in any::<bool>(),
        ) {
            let arr = SystolicArray::new(rows, cols, df).unwrap();
            let overflow = if saturate { Overflow::Saturate } else { Overflow::Wrap };
            let dp = Datapath { act_bits: 4, weight_bits: 4, psum_bits: 12, overflow };
            let (layer, input) = small_layer(groups, seed);
            let (k, m) = (layer.macs_per_output(), layer.cout_per_group());
            let mp = arr.mapping(4, k, m);
            let got = layer_psum_signs(&mp, &dp, &layer, &input);
            let want = brute_layer(&arr, &dp, &layer, &input);
            prop_assert_eq!(got, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// The counted flip directions equal single flips on the
        /// cycle-level model, every dataflow, bit, PE and cycle; and the
        /// slots are the psum exposure.
        #[test]
        fn flip_directions_equal_brute_force(
            rows in 1usize..4, cols in 1usize..4,
            e in 1usize..4, k in 1usize..5, m in 1usize..4,
            df in prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)],
            seed in 0u64..1000,
            saturate in any::<bool>(),
        ) {
            let arr = SystolicArray::new(rows, cols, df).unwrap();
            // Small operands of both signs: no flip of bits below the
            // register's sign bit can overflow the 12-bit register.
            let val = |i: usize, s: u64| ((i as u64 * 2654435761 + s * 97) % 15) as i32 - 7;
            let a: Vec<i32> = (0..e * k).map(|i| val(i, seed)).collect();
            let w: Vec<i32> = (0..k * m).map(|i| val(i + 1000, seed)).collect();
            let overflow = if saturate { Overflow::Saturate } else { Overflow::Wrap };
            let dp = Datapath { act_bits: 4, weight_bits: 4, psum_bits: 12, overflow };
            let mp = arr.mapping(e, k, m);
            let got = flip_ups(&mp, &dp, &a, &w, (e, k, m));
            let want = brute(&arr, &dp, &a, &w, (e, k, m));
            prop_assert_eq!(&got, &want, "{:?} {}x{} E{} K{} M{}", df, rows, cols, e, k, m);
            let ex = site_exposure(&mp, e, k, m, FaultSite::PsumReg);
            let slots: Vec<u64> = got.iter().map(|g| g.0).collect();
            prop_assert_eq!(slots, ex.slots);
        }
    }
}
