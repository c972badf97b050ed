//! Upsets of the stationary operand register of a WS or IS array, derived
//! as runs ([`crate::fault::stream_hit`]) rather than independent hits.
//!
//! # Formulas
//!
//! On a WS array the weight register of PE `(r, c)` holds `W[k][m]` for a
//! whole fold while the `T = E` pixels of the ifmap stream past; on IS the
//! activation register holds `A[e][k]` while the `T = M` filters stream
//! past. From [`super::exposure`], a flip of that register before output
//! `t`'s term passes corrupts `t` and every later output of the stream: the
//! `R - 1 - r` preload slots after the row latched and the `r + c + 1`
//! stream slots up to the first output's cycle start the run at output 0,
//! each later stream slot starts it one output later. Per stream (one GEMM
//! column, i.e. an output channel in WS, a pixel in IS), summed over the
//! `K` live rows of all row folds and `W_s` register bits:
//!
//! - upsets per image: `events = lambda W_s K (R + c + T - 1)`;
//! - `from_start = (R + c) / (R + c + T - 1)`; else the run starts at a
//!   uniform `1 .. T-1`;
//!
//! with `c` the stream's PE column, averaged over the streams. The implied
//! slots of output `t`, `lambda W_s K (R + c + t)`, are the stationary
//! column of the exposure table (a test checks it).
//!
//! A flipped bit `j` changes the held value by `+2^j` when the bit was 0
//! (`-2^j` when 1; the sign bit the other way round), so `up[j]` is the
//! share of held values (the layer's weight codes in WS, its im2col input
//! codes in IS) with bit `j` clear, or negative for the sign bit. The moving
//! operand (inputs in WS, weights in IS) gives the bit-length distribution
//! of `x`, zeros included: a zero masks the term. A held operand meets one
//! reduction row `k` of the moving one, and rows differ (an input channel
//! that ReLU left mostly dead, a busy one): each row's mean magnitude over
//! the layer's makes its `gain`.
//!
//! Three more correlations make a run's errors what the hardware's are
//! (measured per layer against injection on ResNet-20, MobileNet-V2 and
//! a VGG, see `tests/derive_stream.rs`):
//!
//! - the held value is one stream's: on WS stream `m` holds filter `m`, so
//!   `up_by_stream[m][j]` counts bit `j` over that filter's codes. A
//!   filter of mostly negative weights (mostly dead after ReLU) flips its
//!   high bits downwards, where ReLU hides the error;
//! - on WS the moving inputs of a row keep their sign over the image: a
//!   channel of a linear projection layer is negative almost everywhere,
//!   so `negatives[k]` is row `k`'s share of negative non-zero inputs
//!   (with one shared share, a run's errors cancelled; the expand layers
//!   of MobileNet-V2 carried a fifth to a half of the hardware's summed
//!   error);
//! - positions differ: `profile[t]` is the mean input magnitude at output
//!   pixel `t` over the layer's (the background border of a Fashion-MNIST
//!   image is zero, so a run starting late sums fewer terms), scaling the
//!   draws with the row's gain (`gain_k profile_t`, mean 1).

use crate::accel::Dataflow;
use crate::fault::stream_hit::{StreamAxis, StreamHits};
use crate::hwsim::{FaultSite, Mapping};

use super::layer::{GemmLayer, Magnitudes};

/// The register site that holds the stationary operand (`None` on OS,
/// where both operands move).
pub fn stationary_site(dataflow: Dataflow) -> Option<FaultSite> {
    match dataflow {
        Dataflow::Os => None,
        Dataflow::Ws => Some(FaultSite::WeightReg),
        Dataflow::Is => Some(FaultSite::ActReg),
    }
}

/// The runs of `layer`'s stationary-register upsets at raw rate `lambda`
/// (per bit per cycle) on a register of `width` bits, mapped as `mp`
/// (`None` on OS or at rate 0).
pub fn stationary_stream(
    mp: &Mapping,
    layer: &GemmLayer,
    width: u32,
    lambda: f64,
) -> Option<StreamHits> {
    stationary_site(mp.dataflow)?;
    if lambda <= 0.0 || width == 0 {
        return None;
    }
    let (axis, streams, held, held_neg, moving, moving_neg, rows) = match mp.dataflow {
        Dataflow::Ws => (
            StreamAxis::Pixels,
            layer.m,
            &layer.weights,
            &layer.negative_weights,
            &layer.inputs,
            &layer.negative_inputs,
            &layer.input_rows,
        ),
        _ => (
            StreamAxis::Channels,
            layer.e,
            &layer.inputs,
            &layer.negative_inputs,
            &layer.weights,
            &layer.negative_weights,
            &layer.weight_rows,
        ),
    };
    let gains = relative(&rows.mean);
    // Per-row signs for the image-dependent inputs that stream past a WS
    // weight (a projection layer's channel is mostly of one sign in every
    // image). Not for IS: its moving weights are fixed, so a row's errors
    // are one fixed sequence, and drawing its signs independently with the
    // row's share only adds a spread that the hardware does not have (more
    // coherent error than injection on the VGG test, not less).
    let negatives =
        if mp.dataflow != Dataflow::Ws || gains.is_empty() || rows.negative.len() != gains.len() {
            Vec::new()
        } else {
            rows.negative.clone()
        };
    let profile = if rows.along.len() == mp.t {
        relative(&rows.along)
    } else {
        Vec::new()
    };
    let t = mp.t as f64;
    let rr = mp.rows as f64;
    let mean_c = (0..streams).map(|s| (s % mp.cols) as f64).sum::<f64>() / streams.max(1) as f64;
    let lead = rr + mean_c;
    let per_stream = lead + t - 1.0;
    Some(StreamHits {
        axis,
        length: mp.t,
        events: lambda * f64::from(width) * layer.k as f64 * per_stream,
        from_start: lead / per_stream,
        shift: layer.shift,
        up: held_up(held, held_neg, width),
        up_by_stream: match mp.dataflow {
            // A WS stream (output channel) holds its own filter.
            Dataflow::Ws => layer
                .filters
                .iter()
                .flat_map(|(all, neg)| held_up(all, neg, width))
                .map(significant)
                .collect(),
            // An IS stream holds a pixel's inputs: too many streams to
            // keep; `up` over all held values.
            _ => Vec::new(),
        },
        operand: length_distribution(moving),
        operand_negative: {
            let nonzero = moving.total() - moving.counts.first().copied().unwrap_or(0);
            if nonzero == 0 {
                0.0
            } else {
                moving_neg.total() as f64 / nonzero as f64
            }
        },
        // The per-row, per-stream and per-position lists are estimates
        // from a few images, and long (MobileNet-V2: ~28k streams): four
        // significant digits keep a derived model file a few MB.
        gains: gains.into_iter().map(significant).collect(),
        negatives: negatives.into_iter().map(significant).collect(),
        profile: profile.into_iter().map(significant).collect(),
    })
}

/// `x` to four significant digits (the nearest double to that decimal, so
/// it prints short).
fn significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log10().floor() as i32;
    if e <= 3 {
        let f = 10f64.powi(3 - e);
        (x * f).round() / f
    } else {
        let f = 10f64.powi(e - 3);
        (x / f).round() * f
    }
}

/// `v` over its mean (empty when the mean is 0).
fn relative(v: &[f64]) -> Vec<f64> {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    if mean > 0.0 {
        v.iter().map(|x| x / mean).collect()
    } else {
        Vec::new()
    }
}

/// Per register bit `j` of a `width`-bit register holding values drawn from
/// `all` (of which `negative` are negative): the share whose flip of bit
/// `j` raises the value (bit clear; for the sign bit, set).
fn held_up(all: &Magnitudes, negative: &Magnitudes, width: u32) -> Vec<f64> {
    let total = all.total();
    let mut clear = vec![0u64; width as usize];
    for (v, &n) in all.counts.iter().enumerate() {
        let neg = negative.counts.get(v).copied().unwrap_or(0);
        let pos = n - neg.min(n);
        for (j, c) in clear.iter_mut().enumerate() {
            let bit = |x: i64| (x >> j) & 1;
            if j + 1 == width as usize {
                // Sign bit: set (negative) values rise when it flips.
                *c += neg.min(n);
            } else {
                *c += pos * (1 - bit(v as i64)) as u64 + neg.min(n) * (1 - bit(-(v as i64))) as u64;
            }
        }
    }
    clear
        .iter()
        .map(|&c| {
            if total == 0 {
                0.5
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// Distribution of the bit length of the values in `mags` (index 0: zero).
fn length_distribution(mags: &Magnitudes) -> Vec<f64> {
    let total = mags.total();
    if total == 0 {
        return vec![1.0];
    }
    let mut out = Vec::new();
    for (v, &n) in mags.counts.iter().enumerate() {
        let l = (usize::BITS - v.leading_zeros()) as usize;
        if out.len() <= l {
            out.resize(l + 1, 0.0);
        }
        out[l] += n as f64 / total as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::exposure::site_exposure;
    use crate::derive::layer::OperandRows;
    use crate::hwsim::SystolicArray;
    use proptest::prelude::*;

    fn layer(e: usize, k: usize, m: usize) -> GemmLayer {
        GemmLayer {
            name: "l".into(),
            e,
            k,
            m,
            groups: 1,
            taps: 1,
            shift: 3,
            out_bits: 8,
            weights: Magnitudes::from_codes([5, -9, 17, 0]),
            inputs: Magnitudes::from_codes([0, 0, 3, 40, -2]),
            negative_weights: Magnitudes::from_codes([-9]),
            negative_inputs: Magnitudes::from_codes([-2]),
            input_rows: Default::default(),
            weight_rows: Default::default(),
            filters: Vec::new(),
            psum_signs: None,
            step_profile: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The runs imply exactly the stationary site's exposure: mean
        /// slots per output = sum over outputs of the upsets whose run
        /// covers it, divided by `lambda W`.
        #[test]
        fn runs_imply_the_exposure_table(
            rows in 1usize..9, cols in 1usize..9,
            e in 1usize..40, k in 1usize..30, m in 1usize..20,
            ws in any::<bool>(),
        ) {
            let df = if ws { Dataflow::Ws } else { Dataflow::Is };
            let arr = SystolicArray::new(rows, cols, df).unwrap();
            let mp = arr.mapping(e, k, m);
            let l = layer(e, k, m);
            let s = stationary_stream(&mp, &l, 8, 1.0).unwrap();
            let n = s.events / 8.0;
            let len = s.length as f64;
            // covered(t) = from_start*n + (1-from_start)*n * t/(len-1)
            let covered: f64 = (0..s.length)
                .map(|t| {
                    let later = if s.length > 1 { t as f64 / (len - 1.0) } else { 0.0 };
                    s.from_start * n + (1.0 - s.from_start) * n * later
                })
                .sum();
            let site = stationary_site(df).unwrap();
            let ex = site_exposure(&mp, e, k, m, site);
            let streams = if ws { m } else { e };
            let want = ex.slots.iter().sum::<u64>() as f64;
            let got = covered * streams as f64;
            prop_assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{} vs {}", got, want);
        }
    }

    #[test]
    fn held_bits_give_the_direction() {
        // 8-bit weights 5 (00000101), -9 (11110111), 17 (00010001), 0.
        let l = layer(4, 4, 4);
        let up = held_up(&l.weights, &l.negative_weights, 8);
        // bit 0: clear in 0 only -> 1/4; bit 3: clear in 5, 17, 0 (-9 = ..0111 has bit 3 clear too) -> 4/4
        assert_eq!(up[0], 0.25);
        assert_eq!(up[3], 1.0);
        // bit 4: set in 17 and -9 -> clear in 5, 0
        assert_eq!(up[4], 0.5);
        // sign bit: raised only where set (-9)
        assert_eq!(up[7], 0.25);
        let lens = length_distribution(&l.inputs);
        // 0, 0, 3 (len 2), 40 (len 6), 2 (len 2)
        assert_eq!(lens, vec![0.4, 0.0, 0.4, 0.0, 0.0, 0.0, 0.2]);
    }

    #[test]
    fn ws_streams_hold_their_own_filters_and_rows_keep_their_signs() {
        let mut l = layer(4, 2, 2);
        // Filter 0: 5, 17 (bit 1 clear in both); filter 1: -9, 0.
        l.filters = vec![
            (Magnitudes::from_codes([5, 17]), Magnitudes::default()),
            (
                Magnitudes::from_codes([-9, 0]),
                Magnitudes::from_codes([-9]),
            ),
        ];
        l.input_rows = OperandRows {
            mean: vec![1.0, 3.0],
            negative: vec![0.0, 0.8],
            along: vec![1.0, 2.0, 3.0, 2.0],
        };
        l.weight_rows = l.input_rows.clone();
        let ws = SystolicArray::new(4, 4, Dataflow::Ws).unwrap();
        let s = stationary_stream(&ws.mapping(4, 2, 2), &l, 8, 1e-6).unwrap();
        assert_eq!(s.up_by_stream.len(), 2 * 8);
        assert_eq!(
            &s.up_by_stream[..8],
            &held_up(&l.filters[0].0, &l.filters[0].1, 8)[..]
        );
        assert_eq!(
            s.up_by_stream[8 + 7],
            0.5,
            "one of filter 1's two weights is negative"
        );
        assert_eq!(s.gains, vec![0.5, 1.5]);
        assert_eq!(s.negatives, vec![0.0, 0.8]);
        assert_eq!(s.profile, vec![0.5, 1.0, 1.5, 1.0]);
        assert!(s.validate().is_ok());
        // IS: one held activation per pixel, weights as the moving operand
        // (fixed, so no per-row signs), profile over the filters.
        let is = SystolicArray::new(4, 4, Dataflow::Is).unwrap();
        l.weight_rows.along = vec![2.0, 6.0];
        let s = stationary_stream(&is.mapping(4, 2, 2), &l, 8, 1e-6).unwrap();
        assert!(s.up_by_stream.is_empty() && s.negatives.is_empty());
        assert_eq!(s.profile, vec![0.5, 1.5]);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn long_lists_keep_four_significant_digits() {
        assert_eq!(significant(1.0 / 3.0), 0.3333);
        assert_eq!(significant(0.000123456), 0.0001235);
        assert_eq!(significant(123456.0), 123500.0);
        assert_eq!(significant(-2.0 / 3.0), -0.6667);
        assert_eq!(significant(0.0), 0.0);
        assert_eq!(format!("{}", significant(0.1 + 0.2)), "0.3");
    }

    #[test]
    fn os_has_no_stationary_register() {
        let arr = SystolicArray::new(4, 4, Dataflow::Os).unwrap();
        let mp = arr.mapping(10, 10, 10);
        assert!(stationary_stream(&mp, &layer(10, 10, 10), 8, 1e-6).is_none());
    }
}
