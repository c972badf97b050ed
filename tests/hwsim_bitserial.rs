//! The bit-serial functional model against the accelerator timing model
//! (cycles stepped = compute cycles, on the shipped Stripes and Loom
//! descriptions and the shipped models' layers) and against an operand-level
//! oracle for permanent register faults.

use std::path::Path;

use ftnas::accel::bitserial::time_layer;
use ftnas::accel::description::{Accelerator, BitSerial, Precision, Serial};
use ftnas::accel::lower::lower;
use ftnas::fixed::{Datapath, Overflow};
use ftnas::hwsim::bitserial::{BitSerialArray, LayerPrecision, SipFault, SipSite};
use ftnas::hwsim::{reference_gemm, Gemm};
use ftnas::model::{load_model, Shape};
use proptest::prelude::*;

fn codes(n: usize, bits: u8, seed: u64) -> Vec<i32> {
    let half = 1i64 << (bits - 1);
    (0..n as u64)
        .map(|i| {
            let x =
                (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((x >> 17) as i64 % (2 * half) - half) as i32
        })
        .collect()
}

/// Every MAC layer of the shipped ResNet-20 model whose GEMM is small enough to
/// step here runs for exactly the compute cycles `ftnas sim` reports, on
/// Stripes and on a per-layer Loom variant.
#[test]
fn stepped_cycles_equal_timing_on_shipped_designs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = load_model(&root.join("models/resnet20.toml"), Shape::new(1, 28, 28)).unwrap();
    let mut checked = 0;
    for name in ["stripes", "loom"] {
        let mut acc = Accelerator::load(&root.join(format!("accelerators/{name}.toml"))).unwrap();
        // Per-layer precision: the timing model's cycles are exact, not a bound.
        acc.bitserial.as_mut().unwrap().precision = Precision::PerLayer;
        acc.bitserial.as_mut().unwrap().group_size = None;
        let arr = BitSerialArray::new(acc.bitserial.clone().unwrap()).unwrap();
        let dp = acc.datapath;
        for l in lower(&graph).iter().filter(|l| l.is_mac) {
            let (pa, pw) = (8u8, 6u8);
            let t = time_layer(&acc, l, pa, pw).unwrap();
            let e = l.out_hw.0 * l.out_hw.1;
            let taps = l.layer.filter_h * l.layer.filter_w;
            let k = taps * l.layer.channels;
            let m = l.layer.num_filters;
            if e * k * m > 400_000 {
                continue;
            }
            let a = codes(e * k, pa, 1);
            let w = codes(k * m, pw, 2);
            let g = Gemm {
                a: &a,
                w: &w,
                e,
                k,
                m,
            };
            let prec = LayerPrecision {
                act: pa,
                weight: pw,
            };
            let run = arr.run(&g, taps, &dp, prec, &[]).unwrap();
            assert_eq!(
                run.cycles * l.groups as u64,
                t.compute_cycles,
                "{name} {}",
                l.layer.name
            );
            assert_eq!(run.out, reference_gemm(&g, &dp), "{name} {}", l.layer.name);
            checked += 1;
        }
    }
    eprintln!("checked {checked} layers");
    assert!(checked >= 6, "only {checked} layers checked");
}

fn corrupt(v: i32, bit: u8, one: bool, width: u8) -> i32 {
    let x = if one { v | (1 << bit) } else { v & !(1 << bit) };
    let s = 32 - u32::from(width);
    (x << s) >> s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A stuck bit in an operand register is the same bit stuck in every
    /// operand value that register holds: activation register (window w,
    /// lane l) holds a[e][c*taps+tap] for e = w (mod windows), c = l (mod
    /// lanes); weight register (filter row r, lane l) holds w[c*taps+tap][m]
    /// for m = r (mod tiles*filters), c = l (mod lanes).
    #[test]
    fn stuck_operand_registers_equal_corrupted_operands(
        (e, c, taps, m) in (1usize..8, 1usize..9, 1usize..4, 1usize..7),
        both in any::<bool>(),
        bits in 1u8..4,
        act_site in any::<bool>(),
        pick in 0usize..1000,
        bit in 0u8..8,
        one in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let design = BitSerial {
            tiles: 2, windows: 3, filters: 2, lanes: 3,
            serial: if both { Serial::Both } else { Serial::Activations },
            bits_per_cycle: bits, precision: Precision::PerLayer, group_size: None,
        };
        let arr = BitSerialArray::new(design.clone()).unwrap();
        let dp = Datapath { act_bits: 8, weight_bits: 8, psum_bits: 32, overflow: Overflow::Wrap };
        let k = c * taps;
        let a = codes(e * k, 8, seed);
        let w = codes(k * m, 8, seed ^ 77);
        let g = Gemm { a: &a, w: &w, e, k, m };
        let (site, rows) = if act_site {
            (SipSite::ActReg, design.windows)
        } else {
            (SipSite::WeightReg, design.tiles * design.filters)
        };
        let (row, col) = (pick % rows, (pick / rows) % design.lanes);
        let fault = SipFault::stuck(site, row, col, bit, one);
        let run = arr.run(&g, taps, &dp, LayerPrecision { act: 8, weight: 8 }, &[fault]).unwrap();
        let (mut a2, mut w2) = (a.clone(), w.clone());
        for ci in (0..c).filter(|ci| ci % design.lanes == col) {
            for tap in 0..taps {
                let kk = ci * taps + tap;
                if act_site {
                    for ei in (0..e).filter(|ei| ei % design.windows == row) {
                        a2[ei * k + kk] = corrupt(a2[ei * k + kk], bit, one, 8);
                    }
                } else {
                    for mi in (0..m).filter(|mi| mi % (design.tiles * design.filters) == row) {
                        w2[kk * m + mi] = corrupt(w2[kk * m + mi], bit, one, 8);
                    }
                }
            }
        }
        let g2 = Gemm { a: &a2, w: &w2, e, k, m };
        prop_assert_eq!(run.out, reference_gemm(&g2, &dp));
    }
}
