//! Statistical checks of the algorithmic fault models: measured rates match
//! the model parameters within 4-sigma binomial bounds, bit positions are
//! uniform (chi-square), signs balance, saturation is right at the code
//! extremes, geometric skipping matches per-element Bernoulli sampling, and
//! results are deterministic in the seed whatever the thread count.
//!
//! Every bound is loose enough to hold for a correct model with
//! overwhelming probability at the fixed seeds, and tight enough that an
//! off-by-one bit range, a wrong `p_out`, a biased sign or a skipped gap
//! fails it.

use ftnas::fault::skip::Skipper;
use ftnas::fault::{
    stream, AdSaf, BitFlip, FaultModel, FeatureFault, FeatureInjector, HitSign, LayerSite, Mibb,
    OutputHit, PerBit, Sa1Sign, StuckAt, WeightFault, WeightInjector,
};
use ftnas::fixed::Format;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

fn site(name: &str, is_conv: bool, n: usize, bits: u8) -> LayerSite<'_> {
    LayerSite {
        node: 0,
        name,
        is_conv,
        macs_per_output: n,
        taps: 1,
        groups: 1,
        draw: 0,
        format: Format { bits, frac: 4 },
    }
}

/// |observed - expected| within `k` binomial standard deviations.
fn assert_binomial(hits: u64, trials: u64, p: f64, k: f64, what: &str) {
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    let d = (hits as f64 - mean).abs();
    assert!(
        d <= k * sd,
        "{what}: {hits} hits in {trials} trials, expected {mean:.1} +- {k}x{sd:.1}"
    );
}

/// Pearson chi-square statistic of `counts` against a uniform distribution.
fn chi_square_uniform(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let e = total as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

/// Chi-square 99.99% quantiles for 7 and 15 degrees of freedom.
const CHI2_7DOF: f64 = 29.88;
const CHI2_15DOF: f64 = 44.26;

#[test]
fn mibb_hit_rate_bits_and_signs() {
    let mibb = Mibb { p: 1e-3 };
    let n = 72; // 8 input channels, 3x3 kernel
    let p_out = 1.0 - (1.0f64 - 1e-3).powi(72);
    let s = site("c", true, n, 8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let len = 4096;
    let calls = 200;
    let mut hits = 0u64;
    let mut bit_counts = [0u64; 8];
    let (mut plus, mut minus) = (0u64, 0u64);
    for _ in 0..calls {
        let mut codes = vec![0i32; len];
        mibb.inject(&s, &mut codes, &mut rng);
        for &c in &codes {
            if c == 0 {
                continue;
            }
            hits += 1;
            // From 0, +-2^b lands on +-2^b, except +128 which saturates to 127.
            let (b, positive) = if c == 127 {
                (7, true)
            } else {
                assert_eq!(c.unsigned_abs().count_ones(), 1, "code {c}");
                (c.unsigned_abs().trailing_zeros() as usize, c > 0)
            };
            bit_counts[b] += 1;
            if positive {
                plus += 1;
            } else {
                minus += 1;
            }
        }
    }
    assert_binomial(hits, (len * calls) as u64, p_out, 4.0, "MiBB p_out");
    let chi = chi_square_uniform(&bit_counts);
    assert!(chi < CHI2_7DOF, "bit histogram {bit_counts:?}, chi2 {chi}");
    assert_binomial(plus, plus + minus, 0.5, 4.0, "MiBB sign balance");
}

#[test]
fn mibb_hits_depend_on_macs_per_output() {
    // Same p, n = 1 vs n = 1000: p_out differs by ~600x; the measured rates
    // must follow 1-(1-p)^n, not p.
    let mibb = Mibb { p: 2e-4 };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    for n in [1usize, 1000] {
        let s = site("c", true, n, 8);
        let p_out = 1.0 - (1.0 - 2e-4f64).powi(n as i32);
        let mut hits = 0u64;
        let (len, calls) = (8192, 200);
        for _ in 0..calls {
            let mut codes = vec![3i32; len];
            mibb.inject(&s, &mut codes, &mut rng);
            hits += codes.iter().filter(|&&c| c != 3).count() as u64;
        }
        assert_binomial(hits, (len * calls) as u64, p_out, 4.0, &format!("n={n}"));
    }
}

#[test]
fn mibb_saturates_at_the_extremes() {
    let mibb = Mibb { p: 0.02 };
    let n = 9;
    let p_out = 1.0 - 0.98f64.powi(9);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    for (start, bits) in [(127i32, 8u8), (-128, 8), (32767, 16), (-32768, 16)] {
        let s = site("c", true, n, bits);
        let (len, calls) = (4096, 50);
        let mut changed = 0u64;
        let mut bit_counts = vec![0u64; bits as usize];
        for _ in 0..calls {
            let mut codes = vec![start; len];
            mibb.inject(&s, &mut codes, &mut rng);
            for &c in &codes {
                if c == start {
                    continue;
                }
                changed += 1;
                // Only the hits moving away from the rail change anything,
                // and they move by exactly 2^b.
                let d = (c - start).unsigned_abs();
                assert_eq!(d.count_ones(), 1, "{start} -> {c}");
                assert!(
                    if start > 0 { c < start } else { c > start },
                    "{start} -> {c}"
                );
                bit_counts[d.trailing_zeros() as usize] += 1;
            }
        }
        // Half the hits push into the rail and saturate back to it.
        assert_binomial(
            changed,
            (len * calls) as u64,
            p_out / 2.0,
            4.0,
            &format!("changed from {start}"),
        );
        let chi = chi_square_uniform(&bit_counts);
        let bound = if bits == 8 { CHI2_7DOF } else { CHI2_15DOF };
        assert!(chi < bound, "{start}: {bit_counts:?} chi2 {chi}");
    }
}

#[test]
fn output_hit_follows_bit_weights_and_multiplicity() {
    let weights = vec![0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.25];
    let model = OutputHit {
        p_out: 0.05,
        bit_weights: weights.clone(),
        sign: HitSign::Flip,
        multiplicity: vec![1.0],
        up: vec![],
        stream: None,
    };
    let s = site("c", true, 1, 8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(14);
    let (len, calls) = (4096, 100);
    let mut hits = 0u64;
    let mut bit_counts = [0u64; 8];
    for _ in 0..calls {
        let mut codes = vec![0i32; len];
        model.inject(&s, &mut codes, &mut rng);
        for &c in &codes {
            if c != 0 {
                hits += 1;
                let w = (c as u32) & 0xff;
                assert_eq!(w.count_ones(), 1);
                bit_counts[w.trailing_zeros() as usize] += 1;
            }
        }
    }
    assert_binomial(hits, (len * calls) as u64, 0.05, 4.0, "output_hit p_out");
    for (b, &w) in weights.iter().enumerate() {
        if w == 0.0 {
            assert_eq!(bit_counts[b], 0, "bit {b} has weight 0");
        } else {
            assert_binomial(bit_counts[b], hits, w, 4.0, &format!("bit {b}"));
        }
    }

    // Multiplicity: with 2 hits on distinct-ish bits of 16, the number of
    // set bits after XOR from 0 is 2 unless both picked the same bit (1/16).
    let model = OutputHit {
        p_out: 1.0,
        bit_weights: vec![1.0 / 16.0; 16],
        sign: HitSign::Flip,
        multiplicity: vec![0.0, 1.0],
        up: vec![],
        stream: None,
    };
    let s = site("c", true, 1, 16);
    let mut codes = vec![0i32; 20_000];
    model.inject(&s, &mut codes, &mut rng);
    let zero = codes.iter().filter(|&&c| c == 0).count() as u64;
    let two = codes
        .iter()
        .filter(|&&c| ((c as u32) & 0xffff).count_ones() == 2)
        .count() as u64;
    assert_eq!(zero + two, codes.len() as u64);
    assert_binomial(zero, codes.len() as u64, 1.0 / 16.0, 4.0, "same-bit pairs");
}

#[test]
fn output_hit_with_mibb_parameters_matches_mibb() {
    // MiBB == output_hit(p_out = 1-(1-p)^n, uniform bits, random sign):
    // compare the two empirical distributions of changes from code 5.
    let (p, n, bits) = (5e-3, 16usize, 8u8);
    let mibb = Mibb { p };
    let general = OutputHit {
        p_out: mibb.p_out(n),
        bit_weights: vec![1.0 / 8.0; 8],
        sign: HitSign::Random,
        multiplicity: vec![1.0],
        up: vec![],
        stream: None,
    };
    let s = site("c", true, n, bits);
    let histogram = |inj: &dyn FeatureInjector, seed: u64| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut h = std::collections::BTreeMap::<i32, u64>::new();
        for _ in 0..100 {
            let mut codes = vec![5i32; 8192];
            inj.inject(&s, &mut codes, &mut rng);
            for c in codes {
                *h.entry(c).or_default() += 1;
            }
        }
        h
    };
    let a = histogram(&mibb, 1);
    let b = histogram(&general, 2);
    let total = 100.0 * 8192.0;
    // 17 possible outcomes (5 +- 2^b, saturated 127 for +128, and 5).
    for key in a.keys().chain(b.keys()) {
        let ca = *a.get(key).unwrap_or(&0) as f64;
        let cb = *b.get(key).unwrap_or(&0) as f64;
        // Two-sample test on each outcome's frequency.
        let pooled = (ca + cb) / (2.0 * total);
        let sd = (2.0 * total * pooled * (1.0 - pooled)).sqrt();
        assert!(
            (ca - cb).abs() <= 4.0 * sd + 1.0,
            "outcome {key}: mibb {ca} vs output_hit {cb}"
        );
    }
    assert!(a.len() >= 16, "outcomes {a:?}");
}

#[test]
fn bitflip_per_bit_rate() {
    let p = 1e-3;
    let model = BitFlip { p };
    let s = site("c", true, 1, 8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(15);
    let (len, calls) = (4096, 100);
    let mut per_bit = [0u64; 8];
    for _ in 0..calls {
        let mut codes = vec![0i32; len];
        model.inject(&s, &mut codes, &mut rng);
        for &c in &codes {
            assert!((-128..=127).contains(&c));
            let w = (c as u32) & 0xff;
            for (b, n) in per_bit.iter_mut().enumerate() {
                *n += ((w >> b) & 1) as u64;
            }
        }
    }
    for (b, &n) in per_bit.iter().enumerate() {
        assert_binomial(n, (len * calls) as u64, p, 4.0, &format!("bitflip bit {b}"));
    }
    let chi = chi_square_uniform(&per_bit);
    assert!(chi < CHI2_7DOF, "{per_bit:?}");
}

#[test]
fn geometric_skipping_matches_per_element_bernoulli() {
    // Reference: one coin flip per element. Compare the mean and variance of
    // the hit count per call, the rate per position block, and the rate of
    // adjacent hit pairs (p^2 only if gaps are truly geometric).
    let p = 0.05;
    let len = 2000;
    let calls = 2000;
    let skipper = Skipper::new(p);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(16);
    let mut run = |skip: bool| {
        let mut counts = Vec::with_capacity(calls);
        let mut blocks = [0u64; 10];
        let mut pairs = 0u64;
        for _ in 0..calls {
            let mut hit = vec![false; len];
            if skip {
                skipper.for_each_hit(len, &mut rng, |i, _| hit[i] = true);
            } else {
                for h in hit.iter_mut() {
                    *h = rng.random_bool(p);
                }
            }
            counts.push(hit.iter().filter(|&&h| h).count() as f64);
            for (i, &h) in hit.iter().enumerate() {
                if h {
                    blocks[i * 10 / len] += 1;
                }
            }
            pairs += hit.windows(2).filter(|w| w[0] && w[1]).count() as u64;
        }
        let mean = counts.iter().sum::<f64>() / calls as f64;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (calls - 1) as f64;
        (mean, var, blocks, pairs)
    };
    let (m_skip, v_skip, b_skip, pairs_skip) = run(true);
    let (m_ref, v_ref, _b_ref, pairs_ref) = run(false);
    let expect_mean = len as f64 * p;
    let expect_var = len as f64 * p * (1.0 - p);
    let sd_mean = (expect_var / calls as f64).sqrt();
    for (m, what) in [(m_skip, "skipping"), (m_ref, "bernoulli")] {
        assert!(
            (m - expect_mean).abs() < 4.0 * sd_mean,
            "{what} mean {m} vs {expect_mean}"
        );
    }
    // Sample variance of a binomial count: sd of s^2 ~ var*sqrt(2/(calls-1)).
    let sd_var = expect_var * (2.0 / (calls - 1) as f64).sqrt();
    for (v, what) in [(v_skip, "skipping"), (v_ref, "bernoulli")] {
        assert!(
            (v - expect_var).abs() < 4.0 * sd_var,
            "{what} variance {v} vs {expect_var}"
        );
    }
    let chi = chi_square_uniform(&b_skip);
    assert!(chi < 33.72, "blocks {b_skip:?} chi2 {chi}"); // 9 dof, 99.99%
    let pair_trials = ((len - 1) * calls) as u64;
    assert_binomial(pairs_skip, pair_trials, p * p, 4.0, "adjacent pairs (skip)");
    assert_binomial(pairs_ref, pair_trials, p * p, 4.0, "adjacent pairs (ref)");
}

#[test]
fn stuck_at_rates_per_bit() {
    let (p0, p1) = (0.01, 0.02);
    let model = StuckAt {
        p0: PerBit::Uniform(p0),
        p1: PerBit::Uniform(p1),
        shared: None,
    };
    let s = site("w", true, 1, 8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(17);
    let mut ones_before = [0u64; 8];
    let mut zeros_before = [0u64; 8];
    let mut to_zero = [0u64; 8];
    let mut to_one = [0u64; 8];
    for _ in 0..50 {
        let clean: Vec<i32> = (0..8192).map(|_| rng.random_range(-128..=127)).collect();
        let mut codes = clean.clone();
        model.corrupt(&s, &mut codes, &mut rng);
        for (&a, &c) in clean.iter().zip(&codes) {
            let (wa, wc) = ((a as u32) & 0xff, (c as u32) & 0xff);
            for b in 0..8 {
                let (ba, bc) = ((wa >> b) & 1, (wc >> b) & 1);
                if ba == 1 {
                    ones_before[b] += 1;
                    to_zero[b] += (bc == 0) as u64;
                } else {
                    zeros_before[b] += 1;
                    to_one[b] += (bc == 1) as u64;
                }
            }
        }
    }
    // A 1 bit changes only when stuck at 0 (prob p0); a stuck-at-1 on it
    // changes nothing. Likewise for 0 bits and p1.
    for b in 0..8 {
        assert_binomial(to_zero[b], ones_before[b], p0, 4.0, &format!("sa0 bit {b}"));
        assert_binomial(to_one[b], zeros_before[b], p1, 4.0, &format!("sa1 bit {b}"));
    }
}

#[test]
fn stuck_at_per_bit_lists() {
    // Only bit 6 can stick at 0 and only bit 1 at 1.
    let mut p0 = vec![0.0; 8];
    let mut p1 = vec![0.0; 8];
    p0[6] = 0.1;
    p1[1] = 0.3;
    let model = StuckAt {
        p0: PerBit::Bits(p0),
        p1: PerBit::Bits(p1),
        shared: None,
    };
    let s = site("w", false, 1, 8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(18);
    // All bits 1 except bit 1: code 0b1111_1101 = -3.
    let mut codes = vec![-3i32; 50_000];
    model.corrupt(&s, &mut codes, &mut rng);
    let mut counts = std::collections::HashMap::<i32, u64>::new();
    for &c in &codes {
        *counts.entry(c).or_default() += 1;
    }
    // Outcomes: unchanged, bit 6 cleared (-67), bit 1 set (-1), both (-65).
    for k in counts.keys() {
        assert!([-3, -67, -1, -65].contains(k), "unexpected code {k}");
    }
    let n = codes.len() as u64;
    let g = |k| *counts.get(&k).unwrap_or(&0);
    assert_binomial(g(-67) + g(-65), n, 0.1, 4.0, "bit 6 stuck at 0");
    assert_binomial(g(-1) + g(-65), n, 0.3, 4.0, "bit 1 stuck at 1");
    assert_binomial(g(-65), n, 0.03, 4.0, "independent bits");
}

#[test]
fn adsaf_fractions_and_signs() {
    let p = 0.08;
    let model = AdSaf {
        p,
        sa1_fraction: 0.163,
        sa1_sign: Sa1Sign::Random,
    };
    let s = site("w", true, 1, 8);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(19);
    // Clean weights in [-60, 60] \ {0}, plus one 100 fixing max|w_q| = 100.
    let clean: Vec<i32> = (0..20_000)
        .map(|i| {
            if i == 0 {
                100
            } else {
                let v = rng.random_range(1..=60);
                if rng.random_bool(0.5) {
                    v
                } else {
                    -v
                }
            }
        })
        .collect();
    let (mut zeros, mut plus, mut minus, mut other) = (0u64, 0u64, 0u64, 0u64);
    let rounds = 20;
    for _ in 0..rounds {
        let mut codes = clean.clone();
        model.corrupt(&s, &mut codes, &mut rng);
        for (&a, &c) in clean.iter().zip(&codes).skip(1) {
            match c {
                _ if c == a => {}
                0 => zeros += 1,
                100 => plus += 1,
                -100 => minus += 1,
                _ => other += 1,
            }
            assert!((-100..=100).contains(&c));
        }
    }
    assert_eq!(other, 0, "adSAF only zeroes or maxes weights");
    let trials = (rounds * (clean.len() - 1)) as u64;
    assert_binomial(zeros, trials, p * (1.0 - 0.163), 4.0, "adSAF zeros");
    assert_binomial(plus + minus, trials, p * 0.163, 4.0, "adSAF maxed");
    assert_binomial(plus, plus + minus, 0.5, 4.0, "adSAF sign balance");

    // `own` sign: maxed weights keep their sign.
    let own = AdSaf {
        sa1_sign: Sa1Sign::Own,
        ..model
    };
    let mut codes = clean.clone();
    own.corrupt(&s, &mut codes, &mut rng);
    let mut maxed = 0;
    for (&a, &c) in clean.iter().zip(&codes) {
        if c.abs() == 100 && a.abs() != 100 {
            assert_eq!(a.signum(), c.signum(), "{a} -> {c}");
            maxed += 1;
        }
    }
    assert!(maxed > 0);
}

/// Apply a model to `items` images, each with its own stream, optionally in
/// parallel; returns the corrupted codes.
fn run_items(model: &FaultModel, seed: u64, items: u64, parallel: bool) -> Vec<Vec<i32>> {
    let inj = model.feature().unwrap();
    let one = |item: u64| {
        let s = site("cells.0.conv", true, 144, 8);
        let mut codes: Vec<i32> = (0..2048).map(|i| (i % 200) - 100).collect();
        let mut rng = stream(seed, 0, item, 3);
        inj.inject(&s, &mut codes, &mut rng);
        codes
    };
    if parallel {
        (0..items).into_par_iter().map(one).collect()
    } else {
        (0..items).map(one).collect()
    }
}

#[test]
fn determinism_same_seed_same_result_any_thread_count() {
    let model = FaultModel::parse_feature_flag("mibb:1e-3").unwrap();
    let a = run_items(&model, 7, 64, false);
    let b = run_items(&model, 7, 64, true);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let c = pool.install(|| run_items(&model, 7, 64, true));
    assert_eq!(a, b);
    assert_eq!(a, c);
    let d = run_items(&model, 8, 64, false);
    assert_ne!(a, d, "a different seed must give different faults");
    // Faults actually happened.
    let clean = run_items(
        &FaultModel::parse_feature_flag("mibb:0").unwrap(),
        7,
        1,
        false,
    );
    assert!(a.iter().any(|codes| codes != &clean[0]));
}

#[test]
fn weight_injection_is_deterministic_per_chip() {
    let model = FaultModel::parse_weight_flag("sa:1e-2").unwrap();
    let inj = model.weight().unwrap();
    let s = site("conv1", true, 27, 8);
    let clean: Vec<i32> = (0..4096).map(|i| (i % 255) - 127).collect();
    let chip = |seed: u64, trial: u64| {
        let mut w = clean.clone();
        inj.corrupt(&s, &mut w, &mut stream(seed, trial, 0, 1));
        w
    };
    assert_eq!(chip(1, 0), chip(1, 0));
    assert_ne!(chip(1, 0), chip(1, 1));
    assert_ne!(chip(1, 0), clean);
}

#[test]
fn layer_selection_and_overrides() {
    let text = r#"
[feature]
kind = "bitflip"
p = 1.0

[weight]
kind = "stuck_at"
p1 = 1.0
layers = ["conv2"]

[[layer]]
name = "conv3"
feature = { kind = "none" }

[[layer]]
name = "fc2"
feature = { kind = "bitflip", p = 1.0 }
"#;
    let m = FaultModel::parse_str(text, "sel.toml").unwrap();
    let f = m.feature().unwrap();
    let w = m.weight().unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(20);
    let apply_f = |name: &str, is_conv: bool, rng: &mut Xoshiro256PlusPlus| {
        let mut c = vec![0i32; 4];
        f.inject(&site(name, is_conv, 9, 8), &mut c, rng);
        c
    };
    // Default `conv`: conv layers flipped (p = 1 -> all ones = -1).
    assert_eq!(apply_f("conv1", true, &mut rng), vec![-1; 4]);
    // Linear layer not selected by default...
    assert_eq!(apply_f("fc1", false, &mut rng), vec![0; 4]);
    // ...unless it has an override; an override can also switch a conv off.
    assert_eq!(apply_f("fc2", false, &mut rng), vec![-1; 4]);
    assert_eq!(apply_f("conv3", true, &mut rng), vec![0; 4]);
    // Weight faults only on the named layer.
    let apply_w = |name: &str, rng: &mut Xoshiro256PlusPlus| {
        let mut c = vec![0i32; 4];
        w.corrupt(&site(name, true, 9, 8), &mut c, rng);
        c
    };
    assert_eq!(apply_w("conv2", &mut rng), vec![-1; 4]);
    assert_eq!(apply_w("conv1", &mut rng), vec![0; 4]);
    // The per-site lookup agrees.
    assert_eq!(m.feature_at(&site("conv3", true, 9, 8)), &FeatureFault::Off);
    assert_eq!(m.feature_at(&site("fc1", false, 9, 8)), &FeatureFault::Off);
    assert_eq!(
        m.feature_at(&site("conv1", true, 9, 8)),
        &FeatureFault::BitFlip(BitFlip { p: 1.0 })
    );
    assert_eq!(m.weight_at(&site("conv1", true, 9, 8)), &WeightFault::Off);
    assert_eq!(m.weight_at(&site("conv2", true, 9, 8)).kind(), "stuck_at");

    // `all` reaches the classifier.
    let all = FaultModel::parse_feature_flag("bitflip:1:all").unwrap();
    let mut c = vec![0i32; 4];
    all.feature()
        .unwrap()
        .inject(&site("fc", false, 9, 8), &mut c, &mut rng);
    assert_eq!(c, vec![-1; 4]);
}
