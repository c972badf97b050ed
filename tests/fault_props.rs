//! Property tests of the fault models: every model keeps codes valid for
//! any width and rate, zero rates change nothing, bit operations are exact,
//! files round-trip, and no input text or flag makes parsing panic.

use ftnas::fault::layered::LayeredFeature;
use ftnas::fault::stream_hit::{StreamAxis, StreamHits};
use ftnas::fault::twos::{flip_bit, force_bit, from_word, to_word};
use ftnas::fault::{
    AdSaf, BitFlip, FaultModel, FaultSpec, FeatureFault, FeatureInjector, FeatureSection, HitSign,
    LayerOverride, LayerSelection, LayerSite, Mibb, OutputHit, PerBit, Sa1Sign, ShareUnit,
    SharedStuck, SparseCodes, StuckAt, WeightFault, WeightSection,
};
use ftnas::fixed::Format;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fn in_range(codes: &[i32], bits: u8) -> bool {
    let lo = -(1i64 << (bits - 1));
    let hi = (1i64 << (bits - 1)) - 1;
    codes.iter().all(|&c| (lo..=hi).contains(&(c as i64)))
}

/// Codes of a `bits`-bit format.
fn codes_strategy() -> impl Strategy<Value = (u8, Vec<i32>)> {
    (2u8..=16).prop_flat_map(|bits| {
        let lo = -(1i32 << (bits - 1));
        let hi = (1i32 << (bits - 1)) - 1;
        (Just(bits), prop::collection::vec(lo..=hi, 0..300))
    })
}

fn prob() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64, 0.0..1e-2f64]
}

fn apply_all(bits: u8, codes: &[i32], p: f64, q: f64, seed: u64) -> Vec<Vec<i32>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut c = codes.to_vec();
    Mibb { p }.apply(9, bits, &mut c, &mut rng);
    out.push(c);
    let mut c = codes.to_vec();
    BitFlip { p }.apply(bits, &mut c, &mut rng);
    out.push(c);
    let mut c = codes.to_vec();
    OutputHit {
        p_out: p,
        bit_weights: vec![1.0 / bits as f64; bits as usize],
        sign: if q < 0.5 {
            HitSign::Random
        } else {
            HitSign::Flip
        },
        multiplicity: vec![0.5, 0.5],
        up: if q < 0.25 {
            vec![vec![q; 2 * bits as usize]; bits as usize]
        } else {
            vec![]
        },
        stream: None,
    }
    .apply(bits, &mut c, &mut rng);
    out.push(c);
    let mut c = codes.to_vec();
    StuckAt {
        p0: PerBit::Uniform(p * (1.0 - q)),
        p1: PerBit::Uniform(p * q),
        shared: None,
    }
    .apply(bits, &mut c, &mut rng);
    out.push(c);
    let mut c = codes.to_vec();
    AdSaf {
        p,
        sa1_fraction: q,
        sa1_sign: Sa1Sign::Random,
    }
    .apply(bits, &mut c, &mut rng);
    out.push(c);
    out
}

/// Every feature model, as the per-layer dispatch applies it.
fn feature_models(bits: u8, p: f64, q: f64) -> Vec<FeatureFault> {
    vec![
        FeatureFault::Mibb(Mibb { p }),
        FeatureFault::BitFlip(BitFlip { p }),
        FeatureFault::OutputHit(OutputHit {
            p_out: p,
            bit_weights: vec![1.0 / bits as f64; bits as usize],
            sign: HitSign::Random,
            multiplicity: vec![0.5, 0.5 * q, 0.5 * (1.0 - q)],
            up: vec![],
            stream: None,
        }),
    ]
}

proptest! {
    /// Injection on codes read on demand (training's path) gives the same
    /// codes as injection on a code slice (the engine's), draw for draw.
    #[test]
    fn sparse_injection_equals_dense((bits, codes) in codes_strategy(), p in prob(), q in 0.0..=1.0f64, seed in any::<u64>()) {
        for fault in feature_models(bits, p, q) {
            let spec = FaultSpec {
                feature: Some(FeatureSection { fault: fault.clone(), layers: LayerSelection::All }),
                ..FaultSpec::default()
            };
            let injector = LayeredFeature::from_spec(&spec);
            let site = LayerSite {
                node: 1,
                name: "conv",
                is_conv: true,
                macs_per_output: 9,
                taps: 9,
                groups: 1,
                draw: 0,
                format: Format { bits, frac: 2 },
            };
            let mut dense = codes.clone();
            injector.inject(&site, &mut dense, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
            let clean = |i: usize| codes[i];
            let mut sparse = SparseCodes::new(codes.len(), &clean);
            injector.inject_sparse(&site, &mut sparse, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
            let mut merged = codes.clone();
            for w in sparse.hits().windows(2) {
                prop_assert!(w[0].0 < w[1].0, "hits in increasing order");
            }
            for &(i, c) in sparse.hits() {
                merged[i] = c;
            }
            prop_assert_eq!(&merged, &dense, "{:?}", fault);
        }
    }
}

proptest! {
    #[test]
    fn models_keep_codes_valid((bits, codes) in codes_strategy(), p in prob(), q in 0.0..=1.0f64, seed in any::<u64>()) {
        for out in apply_all(bits, &codes, p, q, seed) {
            prop_assert_eq!(out.len(), codes.len());
            prop_assert!(in_range(&out, bits));
        }
    }

    #[test]
    fn zero_rate_changes_nothing((bits, codes) in codes_strategy(), q in 0.0..=1.0f64, seed in any::<u64>()) {
        for out in apply_all(bits, &codes, 0.0, q, seed) {
            prop_assert_eq!(&out, &codes);
        }
    }

    #[test]
    fn same_seed_same_faults((bits, codes) in codes_strategy(), p in prob(), q in 0.0..=1.0f64, seed in any::<u64>()) {
        prop_assert_eq!(apply_all(bits, &codes, p, q, seed), apply_all(bits, &codes, p, q, seed));
    }

    #[test]
    fn adsaf_stays_within_layer_max((bits, codes) in codes_strategy(), p in prob(), q in 0.0..=1.0f64, seed in any::<u64>()) {
        let m = codes.iter().map(|c| c.abs()).max().unwrap_or(0);
        let mut c = codes.clone();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        AdSaf { p, sa1_fraction: q, sa1_sign: Sa1Sign::Own }.apply(bits, &mut c, &mut rng);
        for (&a, &b) in codes.iter().zip(&c) {
            prop_assert!(b == a || b == 0 || b.abs() == m || b == (1 << (bits - 1)) - 1);
            prop_assert!(b.abs() <= m);
        }
    }

    #[test]
    fn full_rate_bitflip_is_bitwise_not((bits, codes) in codes_strategy(), seed in any::<u64>()) {
        let mut c = codes.clone();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        BitFlip { p: 1.0 }.apply(bits, &mut c, &mut rng);
        for (&a, &b) in codes.iter().zip(&c) {
            prop_assert_eq!(b, !a);
        }
    }

    #[test]
    fn bit_operations_are_exact(bits in 2u8..=16, raw in any::<i32>(), bit in 0u32..16, v in any::<bool>()) {
        let bit = bit % bits as u32;
        let code = from_word(raw as u32 as u64, bits);
        prop_assert!(in_range(&[code], bits));
        prop_assert_eq!(from_word(to_word(code, bits), bits), code);
        prop_assert_eq!(flip_bit(flip_bit(code, bit, bits), bit, bits), code);
        let forced = force_bit(code, bit, v, bits);
        prop_assert_eq!((to_word(forced, bits) >> bit) & 1 == 1, v);
        prop_assert_eq!(force_bit(forced, bit, v, bits), forced);
        // Only that bit may change.
        prop_assert_eq!((to_word(forced, bits) ^ to_word(code, bits)) & !(1u64 << bit), 0);
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        let _ = FaultModel::parse_str(&text, "fuzz.toml");
        let _ = FaultModel::parse_feature_flag(&text);
        let _ = FaultModel::parse_weight_flag(&text);
    }

    #[test]
    fn structured_garbage_never_panics(
        kind in prop::sample::select(vec!["mibb", "bitflip", "output_hit", "none", "stuck_at", "adsaf", "x"]),
        key in prop::sample::select(vec!["p", "p_out", "bit_weights", "sign", "p0", "p1", "sa1_fraction", "layers", "persistent", "multiplicity"]),
        value in prop::sample::select(vec!["0.5", "-1", "2", "[0.5, 0.5]", "[]", "\"all\"", "\"own\"", "true", "nan", "inf", "[1, \"a\"]", "{a = 1}"]),
        section in prop::sample::select(vec!["feature", "weight"]),
    ) {
        let text = format!("[{section}]\nkind = \"{kind}\"\n{key} = {value}\n");
        let _ = FaultModel::parse_str(&text, "fuzz.toml");
        let text = format!("[[layer]]\nname = \"l\"\n[layer.{section}]\nkind = \"{kind}\"\n{key} = {value}\n");
        let _ = FaultModel::parse_str(&text, "fuzz.toml");
    }

    #[test]
    fn save_format_round_trips(
        p in prob(), q in 0.0..=1.0f64, bits in 1usize..=16, persistent in any::<bool>(),
        names in prop::collection::btree_set("[a-z][a-z0-9_.]{0,8}", 0..4),
        share in prop::option::of((1usize..300, 1usize..300, any::<bool>())),
        run_shape in prop::option::of((1usize..5000, any::<bool>(), -20i32..20)),
    ) {
        let shared = share.map(|(filters, reduction, channel)| SharedStuck {
            p0: p * q,
            p1: p * (1.0 - q),
            filters,
            reduction,
            per: if channel { ShareUnit::Channel } else { ShareUnit::Term },
        });
        let per_bit: Vec<f64> = (0..bits).map(|i| p * (i as f64 + 1.0) / (bits as f64 + 1.0)).collect();
        let weights: Vec<f64> = vec![1.0 / bits as f64; bits];
        let run = run_shape.map(|(length, channels, shift)| StreamHits {
            axis: if channels { StreamAxis::Channels } else { StreamAxis::Pixels },
            length,
            events: p * 1e3,
            from_start: q,
            shift,
            up: per_bit.clone(),
            up_by_stream: if channels { Vec::new() } else { per_bit.iter().chain(&per_bit).map(|x| x * q).collect() },
            operand: weights.clone(),
            operand_negative: 1.0 - q,
            gains: if shift > 0 { vec![q, 1.0 + q] } else { Vec::new() },
            negatives: if shift > 1 { vec![q, 1.0 - q] } else { Vec::new() },
            profile: if shift % 3 == 0 { (0..length).map(|t| q + t as f64).collect() } else { Vec::new() },
        });
        let layers: Vec<LayerOverride> = names.iter().enumerate().map(|(i, n)| LayerOverride {
            name: n.clone(),
            feature: match i % 4 {
                0 => Some(FeatureFault::OutputHit(OutputHit { p_out: p, bit_weights: weights.clone(), sign: HitSign::Flip, multiplicity: vec![q, 1.0 - q], up: vec![], stream: None })),
                3 => Some(FeatureFault::OutputHit(OutputHit { p_out: p, bit_weights: weights.clone(), sign: HitSign::Random, multiplicity: vec![1.0], up: per_bit.iter().map(|x| vec![x * q; 2 * bits]).collect(), stream: run.clone().map(Box::new) })),
                1 => Some(FeatureFault::Off),
                _ => None,
            },
            weight: match i % 2 {
                0 => Some(WeightFault::StuckAt(StuckAt { p0: PerBit::Bits(per_bit.iter().map(|x| x * (1.0 - q)).collect()), p1: PerBit::Bits(per_bit.iter().map(|x| x * q).collect()), shared: shared.clone() })),
                _ => Some(WeightFault::AdSaf(AdSaf { p, sa1_fraction: q, sa1_sign: Sa1Sign::Own })),
            },
            input_flip: if i % 3 == 0 { p * q } else { 0.0 },
            filter_flip: if i % 7 < 3 { p * q * q } else { 0.0 },
            stored_flip: if i % 5 < 2 { p * (1.0 - q) } else { 0.0 },
        }).filter(|l| l.feature.is_some() || l.weight.is_some()).collect();
        let spec = FaultSpec {
            description: Some(format!("p={p}")),
            feature: Some(FeatureSection { fault: FeatureFault::BitFlip(BitFlip { p }), layers: LayerSelection::All }),
            weight: Some(WeightSection { fault: WeightFault::StuckAt(StuckAt { p0: PerBit::Uniform(p * q), p1: PerBit::Uniform(p * (1.0 - q)), shared: None }), layers: LayerSelection::Names(vec!["x".into()]), persistent }),
            layers,
            stuck_cells: ftnas::fault::StuckBuffers {
                ifmap: persistent.then_some(ftnas::fault::StuckCells { words: 1 + (q * 1e4) as usize, p0: p * q, p1: p * (1.0 - q) }),
                ofmap: (q > 0.5).then_some(ftnas::fault::StuckCells { words: 7, p0: p * (1.0 - q), p1: p * q }),
            },
            stuck_macs: (q < 0.7).then_some(ftnas::fault::StuckMacs {
                grid: [ftnas::fault::MacGrid::OutputStationary, ftnas::fault::MacGrid::WeightStationary, ftnas::fault::MacGrid::InputStationary][names.len() % 3],
                rows: 1 + (q * 40.0) as usize,
                cols: 1 + bits,
                density: [
                    ftnas::fault::StuckDensity { p0: p * q, p1: 0.0 },
                    ftnas::fault::StuckDensity { p0: 0.0, p1: p },
                    ftnas::fault::StuckDensity::default(),
                    ftnas::fault::StuckDensity { p0: p * (1.0 - q), p1: p * q },
                ],
            }),
        };
        let m = FaultModel::from_spec(spec).unwrap();
        let back = FaultModel::parse_str(&m.to_toml_string(), "rt.toml").unwrap();
        prop_assert_eq!(back.spec(), m.spec());
    }
}
