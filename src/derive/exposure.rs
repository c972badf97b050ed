//! Exposure of a GEMM's outputs to transient faults in the PE registers of a
//! systolic array: for each site, how many (PE, cycle) slots exist whose
//! register, if one of its bits flips, corrupts a given output — the
//! "register-bit-cycles per output value" that derivation multiplies by the
//! raw rate.
//!
//! The counts follow from the register-level semantics of `crate::hwsim`
//! (read its module doc); a test checks every count by brute force, one
//! flip at a time, against the cycle-level model. With `(Sr, Sc, T)` the
//! SCALE-Sim mapping, `R x C` the array, `c` the PE column and `i`/`t` the
//! PE row / stream position of an output:
//!
//! | dataflow | `psum_reg` | moving operand | stationary operand | `mult_out` |
//! |---|---|---|---|---|
//! | OS | `K+R+C-2` (the whole fold) | act: `K(c+1)`, weight: `K(i+1)` | — | `K` |
//! | WS | `R * row_folds` | act: `K(c+1)` | weight: `K(R+t+c)` | `K` |
//! | IS | `R * row_folds` | weight: `K(c+1)` | act: `K(R+t+c)` | `K` |
//!
//! - OS keeps an output in one PE for a whole fold: a psum flip in any cycle
//!   of the fold reaches it. A moving operand is corrupted from the PE where
//!   it flips to the array edge: the flip of `A[e][k]` in column `c'` hits
//!   the outputs of columns `c' ..`, so an output in column `c` is reached
//!   from `c + 1` PEs per term.
//! - WS/IS pass an output's partial sum down all `R` rows of every row fold
//!   (padding rows too), one slot per row. A stationary operand flipped in
//!   the stream stays wrong for the rest of the fold, so output `t` is hit by
//!   flips up to its own cycle (`t + r + c + 1` slots) and by preload flips
//!   after the row latched (`R - 1 - r`): `R + t + c` per term.
//!
//! Besides the per-output counts, each site reports how many slots touch at
//! least one output (`events`) and the outputs they touch in all
//! (`touches`); `touches / events` is the mean number of outputs one flip
//! corrupts (1 for psum and multiplier sites, up to a whole row or column of
//! the array for moving operands, a whole fold's stream for stationary ones).

use crate::accel::Dataflow;
use crate::hwsim::{FaultSite, Mapping};

/// Exposure of every output of one GEMM at one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteExposure {
    pub site: FaultSite,
    /// `slots[e*m + mi]`: (PE, cycle) slots whose flip corrupts output `(e, mi)`.
    pub slots: Vec<u64>,
    /// Slots whose flip corrupts at least one output.
    pub events: u64,
    /// Sum over those slots of the outputs each corrupts (= sum of `slots`).
    pub touches: u64,
}

impl SiteExposure {
    /// Mean slots per output.
    pub fn mean_slots(&self) -> f64 {
        self.slots.iter().sum::<u64>() as f64 / self.slots.len().max(1) as f64
    }
    /// Mean outputs corrupted by one live flip.
    pub fn multiplicity(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.touches as f64 / self.events as f64
        }
    }
}

/// Live rows/columns of fold `(fr, fc)`.
fn live(mp: &Mapping, fr: usize, fc: usize) -> (usize, usize) {
    (
        mp.sr.saturating_sub(fr * mp.rows).min(mp.rows),
        mp.sc.saturating_sub(fc * mp.cols).min(mp.cols),
    )
}

/// Exposure at `site` of the `e x m` outputs of a GEMM with reduction `k`,
/// mapped as `mp` (from [`crate::hwsim::SystolicArray::mapping`]).
pub fn site_exposure(mp: &Mapping, e: usize, k: usize, m: usize, site: FaultSite) -> SiteExposure {
    let mut slots = vec![0u64; e * m];
    let (mut events, mut touches) = (0u64, 0u64);
    let rr = mp.rows as u64;
    let k64 = k as u64;
    match mp.dataflow {
        Dataflow::Os => {
            let cpf = mp.cycles_per_fold;
            for fr in 0..mp.row_folds {
                for fc in 0..mp.col_folds {
                    let (lr, lc) = live(mp, fr, fc);
                    for i in 0..lr {
                        for j in 0..lc {
                            let out = (fr * mp.rows + i) * m + fc * mp.cols + j;
                            let (s, ev, to) = match site {
                                FaultSite::PsumReg => (cpf, cpf, cpf),
                                FaultSite::MultOut => (k64, k64, k64),
                                // Flips at (i, j) reach columns j.. (act) or rows i.. (weight).
                                FaultSite::ActReg => {
                                    (k64 * (j as u64 + 1), k64, k64 * (lc - j) as u64)
                                }
                                FaultSite::WeightReg => {
                                    (k64 * (i as u64 + 1), k64, k64 * (lr - i) as u64)
                                }
                            };
                            slots[out] = s;
                            events += ev;
                            touches += to;
                        }
                    }
                }
            }
        }
        Dataflow::Ws | Dataflow::Is => {
            let t = mp.t as u64;
            // Output index of stream position `ti` in operand column `sc`.
            let out_index = |ti: usize, sc: usize| match mp.dataflow {
                Dataflow::Ws => ti * m + sc,
                _ => sc * m + ti,
            };
            let (stationary, moving) = match mp.dataflow {
                Dataflow::Ws => (FaultSite::WeightReg, FaultSite::ActReg),
                _ => (FaultSite::ActReg, FaultSite::WeightReg),
            };
            for fc in 0..mp.col_folds {
                for fr in 0..mp.row_folds {
                    let (lr, lc) = live(mp, fr, fc);
                    for c in 0..lc {
                        let sc = fc * mp.cols + c;
                        let c64 = c as u64;
                        if site == FaultSite::PsumReg {
                            // Every row of the fold, live or padding.
                            for ti in 0..mp.t {
                                slots[out_index(ti, sc)] += rr;
                            }
                            events += rr * t;
                            touches += rr * t;
                            continue;
                        }
                        for r in 0..lr as u64 {
                            if site == FaultSite::MultOut {
                                for ti in 0..mp.t {
                                    slots[out_index(ti, sc)] += 1;
                                }
                                events += t;
                                touches += t;
                            } else if site == moving {
                                for ti in 0..mp.t {
                                    slots[out_index(ti, sc)] += c64 + 1;
                                }
                                events += t;
                                touches += t * (lc as u64 - c64);
                            } else if site == stationary {
                                for ti in 0..mp.t {
                                    slots[out_index(ti, sc)] += rr + ti as u64 + c64;
                                }
                                // Preload flips after the latch, stream flips
                                // up to the last output's cycle.
                                events += (rr - 1 - r) + (r + c64 + t);
                                touches += (rr - 1 - r) * t + (r + c64 + 1) * t + t * (t - 1) / 2;
                            }
                        }
                    }
                }
            }
        }
    }
    SiteExposure {
        site,
        slots,
        events,
        touches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::{Datapath, Overflow};
    use crate::hwsim::{Gemm, HwFault, SystolicArray};
    use proptest::prelude::*;

    /// Brute force: flip bit 0 of `site` in every PE at every cycle, one run
    /// each, and count which outputs change. Operands are non-zero so that a
    /// corrupted term always changes its output (wrap mode, wide psum).
    fn brute(arr: &SystolicArray, e: usize, k: usize, m: usize, site: FaultSite) -> SiteExposure {
        let a: Vec<i32> = (0..e * k).map(|i| 1 + (i as i32 * 7) % 50).collect();
        let w: Vec<i32> = (0..k * m).map(|i| -1 - (i as i32 * 11) % 60).collect();
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
            psum_bits: 32,
            overflow: Overflow::Wrap,
        };
        let clean = arr.run(&g, &dp, &[]).unwrap().out;
        let mp = arr.mapping(e, k, m);
        let mut slots = vec![0u64; e * m];
        let (mut events, mut touches) = (0, 0);
        for row in 0..arr.rows {
            for col in 0..arr.cols {
                for cycle in 0..mp.cycles {
                    let f = HwFault::flip(site, row, col, 0, cycle);
                    let out = arr.run(&g, &dp, &[f]).unwrap().out;
                    let mut n = 0;
                    for (i, (x, y)) in out.iter().zip(&clean).enumerate() {
                        if x != y {
                            slots[i] += 1;
                            n += 1;
                        }
                    }
                    if n > 0 {
                        events += 1;
                        touches += n;
                    }
                }
            }
        }
        SiteExposure {
            site,
            slots,
            events,
            touches,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn closed_forms_equal_brute_force_flips(
            rows in 1usize..4, cols in 1usize..4,
            e in 1usize..6, k in 1usize..6, m in 1usize..5,
            df in prop_oneof![Just(Dataflow::Os), Just(Dataflow::Ws), Just(Dataflow::Is)],
        ) {
            let arr = SystolicArray::new(rows, cols, df).unwrap();
            let mp = arr.mapping(e, k, m);
            for site in FaultSite::ALL {
                let want = brute(&arr, e, k, m, site);
                let got = site_exposure(&mp, e, k, m, site);
                prop_assert_eq!(&got, &want, "{:?} {} {}x{} E{} K{} M{}", df, site, rows, cols, e, k, m);
                prop_assert_eq!(got.touches, got.slots.iter().sum::<u64>());
            }
        }
    }
}
