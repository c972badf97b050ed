//! Derived feature-fault parameters against hardware-level injection: for
//! one register site at a time, on each dataflow, random transient flips are
//! injected into the cycle-level model at the raw rate, outputs are
//! requantized as the engine does, and the measured fraction of corrupted
//! output codes and their mean error are compared with the derivation.

use ftnas::accel::Dataflow;
use ftnas::derive::layer::{derive_layer, GemmLayer, Magnitudes, SiteRates};
use ftnas::fixed::{requantize, Datapath, Overflow};
use ftnas::hwsim::{FaultSite, Gemm, HwFault, SystolicArray};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const SHIFT: i32 = 9;

fn poisson(rng: &mut Xoshiro256PlusPlus, mu: f64) -> usize {
    let (limit, mut p, mut n) = ((-mu).exp(), 1.0, 0);
    loop {
        p *= rng.random::<f64>();
        if p < limit {
            return n;
        }
        n += 1;
    }
}

fn requant(acc: &[i64]) -> Vec<i64> {
    acc.iter().map(|&v| requantize(v, SHIFT, 0, 8)).collect()
}

fn site_rates(site: FaultSite, lambda: f64) -> SiteRates {
    let mut r = SiteRates::default();
    match site {
        FaultSite::ActReg => r.act_reg = lambda,
        FaultSite::WeightReg => r.weight_reg = lambda,
        FaultSite::PsumReg => r.psum_reg = lambda,
        FaultSite::MultOut => r.mult_out = lambda,
    }
    r
}

#[test]
fn derived_hit_rates_match_hardware_injection() {
    let (e, k, m) = (20usize, 18usize, 7usize);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    // Post-ReLU-like activations (a third zeros) and symmetric weights.
    let a: Vec<i32> = (0..e * k)
        .map(|_| {
            if rng.random::<f64>() < 0.33 {
                0
            } else {
                rng.random_range(1..100)
            }
        })
        .collect();
    let w: Vec<i32> = (0..k * m).map(|_| rng.random_range(-60..61)).collect();
    let g = Gemm {
        a: &a,
        w: &w,
        e,
        k,
        m,
    };
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 24,
        overflow: Overflow::Wrap,
    };
    let layer = GemmLayer {
        name: "t".into(),
        e,
        k,
        m,
        groups: 1,
        taps: 1,
        shift: SHIFT,
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
    };
    let trials = 300;
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let arr = SystolicArray::new(4, 3, df).unwrap();
        let clean_acc = arr.run(&g, &dp, &[]).unwrap().out;
        let clean = requant(&clean_acc);
        let cycles = arr.mapping(e, k, m).cycles;
        for site in FaultSite::ALL {
            let width = site.width(&dp);
            let bit_cycles = (width as u64 * 12 * cycles) as f64;
            // About three flips per run.
            let lambda = 3.0 / bit_cycles;
            let d = derive_layer(&arr, (8, 8, 24), &layer, &site_rates(site, lambda));
            let (mut hits, mut err_sum) = (0u64, 0f64);
            let mut per_trial = Vec::with_capacity(trials);
            for _ in 0..trials {
                let n = poisson(&mut rng, lambda * bit_cycles);
                let faults: Vec<HwFault> = (0..n)
                    .map(|_| {
                        HwFault::flip(
                            site,
                            rng.random_range(0..4),
                            rng.random_range(0..3),
                            rng.random_range(0..width) as u8,
                            rng.random_range(0..cycles),
                        )
                    })
                    .collect();
                let out = requant(&arr.run(&g, &dp, &faults).unwrap().out);
                let mut h = 0;
                for (x, y) in out.iter().zip(&clean) {
                    if x != y {
                        h += 1;
                        err_sum += ((x - y).abs() as f64).min(128.0);
                    }
                }
                hits += h;
                per_trial.push(h as f64 / (e * m) as f64);
            }
            let measured = hits as f64 / (trials * e * m) as f64;
            let mean = per_trial.iter().sum::<f64>() / trials as f64;
            let var =
                per_trial.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (trials - 1) as f64;
            let sigma = (var / trials as f64).sqrt();
            let tol = 4.0 * sigma + 0.1 * d.p_out;
            assert!(
                (measured - d.p_out).abs() <= tol,
                "{df:?} {site}: measured p_out {measured:.5}, derived {:.5} (tolerance {tol:.5})",
                d.p_out
            );
            // Mean error of a hit, in output steps (saturation caps at 128).
            let derived_err: f64 = d
                .bit_weights
                .iter()
                .enumerate()
                .map(|(b, p)| p * 2f64.powi(b as i32))
                .sum();
            let measured_err = err_sum / hits.max(1) as f64;
            assert!(
                (measured_err / derived_err - 1.0).abs() < 0.35,
                "{df:?} {site}: mean error measured {measured_err:.2}, derived {derived_err:.2}"
            );
            eprintln!(
                "{df:?} {site}: p_out measured {measured:.5} derived {:.5}; error {measured_err:.2} vs {derived_err:.2}",
                d.p_out
            );
        }
    }
}

/// Permanent faults as weight faults: on a weight-stationary array, stuck
/// filter-SRAM cells and stuck PE weight registers are drawn per chip as
/// the hardware spec draws them (every bit independently); the array runs
/// the GEMM cycle by cycle with them. Two checks: (1) every chip's output
/// is exactly the GEMM of weights with the forced bits the derivation's
/// rule assigns (SRAM word `i mod words`, then the register of PE
/// `(k mod R, m mod C)`): stuck weight bits are weight faults; (2) over the
/// chips, the fraction of weight bits forced to 0 / 1 matches the derived
/// `p0` / `p1`.
#[test]
fn derived_weight_stuck_rates_match_hardware_injection() {
    use ftnas::derive::permanent::{derive_weight_faults, StuckPair, StuckRates, WeightHolder};
    use ftnas::hwsim::sram::{SramBuffer, SramFault};
    use ftnas::hwsim::FaultKind;

    let (e, k, m, rows, cols, words) = (6usize, 11usize, 5usize, 4usize, 3usize, 17usize);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let a: Vec<i32> = (0..e * k).map(|_| rng.random_range(-90..91)).collect();
    let w: Vec<i32> = (0..k * m).map(|_| rng.random_range(-100..101)).collect();
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 24,
        overflow: Overflow::Wrap,
    };
    let arr = SystolicArray::new(rows, cols, Dataflow::Ws).unwrap();
    let rates = StuckRates {
        sram_filter: StuckPair { p0: 0.02, p1: 0.03 },
        weight_reg: StuckPair { p0: 0.04, p1: 0.01 },
        weight_stationary: true,
    };
    let layer = GemmLayer {
        name: "t".into(),
        e,
        k,
        m,
        groups: 1,
        taps: 1,
        shift: SHIFT,
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
    };
    let holder = WeightHolder::Systolic {
        rows,
        cols,
        dataflow: Dataflow::Ws,
    };
    let d = &derive_weight_faults(&holder, words, 8, &[layer], &rates)[0];
    let draw = |rng: &mut Xoshiro256PlusPlus, p: StuckPair| -> Option<bool> {
        let u = rng.random::<f64>();
        (u < p.p0 + p.p1).then_some(u >= p.p0)
    };
    let chips = 600;
    let (mut forced0, mut forced1, mut total) = (0u64, 0u64, 0u64);
    for _ in 0..chips {
        // stuck cells: (word, bit) and (PE, bit)
        let mut sram = Vec::new();
        for addr in 0..words {
            for bit in 0..8u8 {
                if let Some(one) = draw(&mut rng, rates.sram_filter) {
                    sram.push(SramFault {
                        buffer: SramBuffer::Filter,
                        address: addr,
                        bit,
                        kind: if one {
                            FaultKind::StuckAt1
                        } else {
                            FaultKind::StuckAt0
                        },
                    });
                }
            }
        }
        let mut pe = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                for bit in 0..8u8 {
                    if let Some(one) = draw(&mut rng, rates.weight_reg) {
                        pe.push(HwFault::stuck(FaultSite::WeightReg, r, c, bit, one));
                    }
                }
            }
        }
        // The hardware: SRAM cells force the codes the buffer delivers (the
        // filter buffer holds W in [out, in] order: code `m*K + k`), then
        // the array latches them into its stuck registers.
        let mut buf: Vec<i32> = (0..m * k).map(|i| w[(i % k) * m + i / k]).collect();
        for f in &sram {
            f.apply(&mut buf, 8, words, 1);
        }
        let w_read: Vec<i32> = (0..k * m).map(|i| buf[(i % m) * k + i / m]).collect();
        let g = Gemm {
            a: &a,
            w: &w_read,
            e,
            k,
            m,
        };
        let hw = arr.run(&g, &dp, &pe).unwrap().out;
        // The derivation's rule: each weight's forced bits.
        let mut w_fault = vec![0i32; k * m];
        for kk in 0..k {
            for mm in 0..m {
                let addr = (mm * k + kk) % words;
                let mut mask: [Option<bool>; 8] = [None; 8];
                for f in sram.iter().filter(|f| f.address == addr) {
                    mask[f.bit as usize] = Some(f.kind == FaultKind::StuckAt1);
                }
                for f in pe
                    .iter()
                    .filter(|f| f.row == kk % rows && f.col == mm % cols)
                {
                    mask[f.bit as usize] = Some(f.kind == FaultKind::StuckAt1);
                }
                let mut v = w[kk * m + mm] as u32 & 0xff;
                for (b, s) in mask.iter().enumerate() {
                    total += 1;
                    match s {
                        Some(true) => {
                            forced1 += 1;
                            v |= 1 << b;
                        }
                        Some(false) => {
                            forced0 += 1;
                            v &= !(1 << b);
                        }
                        None => {}
                    }
                }
                w_fault[kk * m + mm] = v as u8 as i8 as i32;
            }
        }
        let g = Gemm {
            a: &a,
            w: &w_fault,
            e,
            k,
            m,
        };
        let want = arr.run(&g, &dp, &[]).unwrap().out;
        assert_eq!(hw, want, "stuck weight bits are not weight faults here");
    }
    // Shared cells: ~chips * (words + rows*cols) * 8 independent draws
    // behind each rate; allow 5 sigma of that.
    let cells = (chips * (words + rows * cols) * 8) as f64;
    for (name, got, want) in [
        ("p0", forced0 as f64 / total as f64, d.bit.p0),
        ("p1", forced1 as f64 / total as f64, d.bit.p1),
    ] {
        let tol = 5.0 * (want * (1.0 - want) / cells).sqrt() * 2.0;
        assert!(
            (got - want).abs() <= tol,
            "{name}: measured {got:.5}, derived {want:.5} (tolerance {tol:.5})"
        );
    }
    assert!((d.expected_stuck_bits - (k * m * 8) as f64 * (d.bit.p0 + d.bit.p1)).abs() < 1e-9);
}

/// The algorithmic model's shared register bits sit where the hardware's
/// do: for every weight register of a bit-serial design (SIP `(f, l)`,
/// cycle-level `BitSerialArray`) and of a WS array (PE `(r, c)`,
/// cycle-level `SystolicArray`), the weights one stuck bit corrupts on the
/// hardware are exactly `SharedStuck::weights_held_by` of the register file
/// `derive` writes for that hardware. Identity activations make the
/// layer's outputs its (corrupted) weights.
#[test]
fn shared_stuck_registers_hold_the_weights_the_hardware_registers_hold() {
    use ftnas::accel::description::{BitSerial, Precision, Serial};
    use ftnas::derive::permanent::{StuckPair, WeightHolder};
    use ftnas::hwsim::bitserial::{BitSerialArray, LayerPrecision, SipFault, SipSite};
    use ftnas::hwsim::FaultKind;
    use std::collections::BTreeSet;

    let (m, channels, taps) = (7usize, 5usize, 3usize);
    let k = channels * taps;
    // a[e][k] = [e == k], every weight 2 (bit 0 clear): an output equal to
    // 3 is a weight whose bit 0 the stuck register forced to 1.
    let a: Vec<i32> = (0..k * k).map(|i| i32::from(i / k == i % k)).collect();
    let w = vec![2i32; k * m];
    let g = Gemm {
        a: &a,
        w: &w,
        e: k,
        k,
        m,
    };
    let dp = Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 32,
        overflow: Overflow::Wrap,
    };
    let hit = |out: &[i64]| -> BTreeSet<usize> {
        // out[e][mm] is W'[e][mm]; the model indexes weights as mm*K + k.
        (0..k * m)
            .filter(|&i| out[i] == 3)
            .map(|i| (i % m) * k + i / m)
            .collect()
    };
    let r = StuckPair { p0: 0.0, p1: 1e-3 };

    let design = BitSerial {
        tiles: 1,
        windows: 2,
        filters: 3,
        lanes: 2,
        serial: Serial::Activations,
        bits_per_cycle: 1,
        precision: Precision::PerLayer,
        group_size: None,
    };
    let holder = WeightHolder::bitserial(&design);
    let shared = holder.shared_stuck(r).expect("SIP registers hold weights");
    let arr = BitSerialArray::new(design).unwrap();
    let mut covered = BTreeSet::new();
    for f in 0..3 {
        for l in 0..2 {
            let fault = SipFault {
                site: SipSite::WeightReg,
                row: f,
                col: l,
                bit: 0,
                kind: FaultKind::StuckAt1,
            };
            let prec = LayerPrecision { act: 8, weight: 8 };
            let out = arr.run(&g, taps, &dp, prec, &[fault]).unwrap().out;
            let hw = hit(&out);
            let model: BTreeSet<usize> = shared
                .weights_held_by(f, l, m, k, taps, 1)
                .into_iter()
                .collect();
            assert!(!hw.is_empty());
            assert_eq!(hw, model, "SIP ({f}, {l})");
            covered.extend(hw);
        }
    }
    assert_eq!(covered.len(), k * m, "every weight sits in some SIP");

    let (rows, cols) = (4usize, 3usize);
    let holder = WeightHolder::Systolic {
        rows,
        cols,
        dataflow: Dataflow::Ws,
    };
    let shared = holder.shared_stuck(r).expect("WS registers hold weights");
    let arr = SystolicArray::new(rows, cols, Dataflow::Ws).unwrap();
    let mut covered = BTreeSet::new();
    for pr in 0..rows {
        for pc in 0..cols {
            let fault = HwFault::stuck(FaultSite::WeightReg, pr, pc, 0, true);
            let out = arr.run(&g, &dp, &[fault]).unwrap().out;
            let hw = hit(&out);
            // The model indexes registers (filter, reduction): PE (r, c)
            // holds W[k][m] with m = c mod C, k = r mod R.
            let model: BTreeSet<usize> = shared
                .weights_held_by(pc, pr, m, k, taps, 1)
                .into_iter()
                .collect();
            assert_eq!(hw, model, "PE ({pr}, {pc})");
            covered.extend(hw);
        }
    }
    assert_eq!(covered.len(), k * m, "every weight sits in some PE");
    // OS: the register moves, nothing is shared.
    let os = WeightHolder::Systolic {
        rows,
        cols,
        dataflow: Dataflow::Os,
    };
    assert!(os.shared_stuck(r).is_none());
}
