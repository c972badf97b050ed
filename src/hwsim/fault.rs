//! Hardware faults of the processing elements: where they sit, what they do
//! to a bit, and when.
//!
//! A [`HwFault`] names a site in one PE (`pe.act_reg`, `pe.weight_reg`,
//! `pe.psum_reg`, `pe.mult_out`), a bit of that site, and either a transient
//! flip at one clock cycle of the run or a permanent stuck-at for the whole
//! run. This file also splits a list of faults into per-fold schedules so the
//! stepping loops only look for faults in folds that have them, and only at
//! the cycles they are due.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::kernel::BitOp;
use crate::fixed::Datapath;

/// A fault site inside a processing element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultSite {
    /// The weight operand register (`weight_bits` wide): moving in OS and IS,
    /// stationary in WS.
    #[serde(rename = "pe.weight_reg")]
    WeightReg,
    /// The activation operand register (`act_bits` wide): moving in OS and
    /// WS, stationary in IS.
    #[serde(rename = "pe.act_reg")]
    ActReg,
    /// The partial-sum register the PE's adder reads (`psum_bits` wide):
    /// stationary in OS, flowing down the columns in WS and IS.
    #[serde(rename = "pe.psum_reg")]
    PsumReg,
    /// The multiplier output (`act_bits + weight_bits` wide), in the cycles
    /// the PE performs a live multiply-accumulate.
    #[serde(rename = "pe.mult_out")]
    MultOut,
}

impl FaultSite {
    pub const ALL: [FaultSite; 4] = [
        FaultSite::WeightReg,
        FaultSite::ActReg,
        FaultSite::PsumReg,
        FaultSite::MultOut,
    ];

    /// The site's name as used in fault files and reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultSite::WeightReg => "pe.weight_reg",
            FaultSite::ActReg => "pe.act_reg",
            FaultSite::PsumReg => "pe.psum_reg",
            FaultSite::MultOut => "pe.mult_out",
        }
    }

    /// Width in bits of the value held at this site.
    pub fn width(self, dp: &Datapath) -> u32 {
        match self {
            FaultSite::WeightReg => u32::from(dp.weight_bits),
            FaultSite::ActReg => u32::from(dp.act_bits),
            FaultSite::PsumReg => u32::from(dp.psum_bits),
            FaultSite::MultOut => u32::from(dp.act_bits) + u32::from(dp.weight_bits),
        }
    }
}

impl fmt::Display for FaultSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultSite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultSite::ALL
            .into_iter()
            .find(|site| site.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown PE fault site '{s}', expected one of pe.weight_reg, pe.act_reg, pe.psum_reg, pe.mult_out"
                )
            })
    }
}

/// Transient or permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The bit is inverted in the value the site holds during this clock
    /// cycle of the run (0-based over the whole GEMM, folds back to back).
    Flip { cycle: u64 },
    /// The bit reads 0 in every cycle of the run.
    StuckAt0,
    /// The bit reads 1 in every cycle of the run.
    StuckAt1,
}

/// One hardware fault in one PE of the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HwFault {
    pub site: FaultSite,
    /// PE row, `0..rows` (top row 0).
    pub row: usize,
    /// PE column, `0..cols` (left column 0).
    pub col: usize,
    /// Bit of the site's value, `0` = least significant.
    pub bit: u8,
    pub kind: FaultKind,
}

impl HwFault {
    /// A transient flip.
    pub fn flip(site: FaultSite, row: usize, col: usize, bit: u8, cycle: u64) -> HwFault {
        HwFault {
            site,
            row,
            col,
            bit,
            kind: FaultKind::Flip { cycle },
        }
    }

    /// A permanent stuck-at-`value` bit.
    pub fn stuck(site: FaultSite, row: usize, col: usize, bit: u8, value: bool) -> HwFault {
        HwFault {
            site,
            row,
            col,
            bit,
            kind: if value {
                FaultKind::StuckAt1
            } else {
                FaultKind::StuckAt0
            },
        }
    }

    pub(crate) fn op(&self) -> BitOp {
        match self.kind {
            FaultKind::Flip { .. } => BitOp::Flip(self.bit),
            FaultKind::StuckAt0 => BitOp::Stuck0(self.bit),
            FaultKind::StuckAt1 => BitOp::Stuck1(self.bit),
        }
    }

    /// Check the fault fits the array, the datapath and the run length.
    pub(crate) fn check(
        &self,
        rows: usize,
        cols: usize,
        dp: &Datapath,
        cycles: u64,
    ) -> Result<(), String> {
        if self.row >= rows || self.col >= cols {
            return Err(format!(
                "PE ({}, {}) is outside the {rows}x{cols} array",
                self.row, self.col
            ));
        }
        let width = self.site.width(dp);
        if u32::from(self.bit) >= width {
            return Err(format!(
                "bit {} does not exist in {} ({} bits wide)",
                self.bit, self.site, width
            ));
        }
        if let FaultKind::Flip { cycle } = self.kind {
            if cycle >= cycles {
                return Err(format!(
                    "cycle {cycle} is past the end of the run ({cycles} cycles)"
                ));
            }
        }
        Ok(())
    }
}

/// A fault as the stepping loop of one fold sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeFault {
    pub site: FaultSite,
    pub row: usize,
    pub col: usize,
    pub op: BitOp,
    pub width: u32,
}

/// The faults that act during one fold: transient flips by local cycle, and
/// the permanent faults (which act in every cycle).
#[derive(Debug, Clone, Default)]
pub(crate) struct FoldFaults {
    /// `(local cycle, fault)`, sorted by cycle.
    pub transient: Vec<(u64, PeFault)>,
    pub permanent: Vec<PeFault>,
}

impl FoldFaults {
    pub(crate) fn is_empty(&self) -> bool {
        self.transient.is_empty() && self.permanent.is_empty()
    }

    /// Fill `active` with the faults acting in local cycle `cycle`; `cursor`
    /// walks `transient` and must start at 0 and see cycles in order.
    pub(crate) fn active_at(&self, cycle: u64, cursor: &mut usize, active: &mut Vec<PeFault>) {
        active.clear();
        while *cursor < self.transient.len() && self.transient[*cursor].0 < cycle {
            *cursor += 1;
        }
        let mut i = *cursor;
        while i < self.transient.len() && self.transient[i].0 == cycle {
            active.push(self.transient[i].1);
            i += 1;
        }
        active.extend_from_slice(&self.permanent);
    }
}

/// Split validated faults into per-fold schedules (`folds` folds of
/// `cycles_per_fold` cycles each, back to back).
pub(crate) fn schedule(
    faults: &[HwFault],
    folds: usize,
    cycles_per_fold: u64,
    dp: &Datapath,
) -> Vec<FoldFaults> {
    let mut per_fold = vec![FoldFaults::default(); folds];
    for f in faults {
        let pe = PeFault {
            site: f.site,
            row: f.row,
            col: f.col,
            op: f.op(),
            width: f.site.width(dp),
        };
        match f.kind {
            FaultKind::Flip { cycle } => {
                let fold = (cycle / cycles_per_fold) as usize;
                per_fold[fold].transient.push((cycle % cycles_per_fold, pe));
            }
            FaultKind::StuckAt0 | FaultKind::StuckAt1 => {
                for ff in per_fold.iter_mut() {
                    ff.permanent.push(pe);
                }
            }
        }
    }
    for ff in per_fold.iter_mut() {
        ff.transient.sort_by_key(|&(c, _)| c);
    }
    per_fold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_round_trip() {
        for site in FaultSite::ALL {
            assert_eq!(site.name().parse::<FaultSite>().unwrap(), site);
        }
        assert!("pe.acc".parse::<FaultSite>().is_err());
    }

    #[test]
    fn schedule_places_flips_in_their_fold() {
        let dp = Datapath::INT8;
        let faults = [
            HwFault::flip(FaultSite::ActReg, 0, 1, 3, 25),
            HwFault::flip(FaultSite::PsumReg, 1, 0, 2, 9),
            HwFault::stuck(FaultSite::WeightReg, 1, 1, 7, true),
        ];
        let s = schedule(&faults, 3, 10, &dp);
        assert_eq!(s[0].transient.len(), 1);
        assert_eq!(s[0].transient[0].0, 9);
        assert_eq!(s[2].transient[0].0, 5);
        assert!(s[1].transient.is_empty());
        assert!(s.iter().all(|f| f.permanent.len() == 1));
        let mut cursor = 0;
        let mut active = Vec::new();
        s[0].active_at(3, &mut cursor, &mut active);
        assert_eq!(active.len(), 1);
        s[0].active_at(9, &mut cursor, &mut active);
        assert_eq!(active.len(), 2);
    }

    #[test]
    fn check_rejects_bad_faults() {
        let dp = Datapath::INT8;
        assert!(HwFault::flip(FaultSite::ActReg, 2, 0, 0, 0)
            .check(2, 2, &dp, 10)
            .is_err());
        assert!(HwFault::flip(FaultSite::ActReg, 0, 0, 8, 0)
            .check(2, 2, &dp, 10)
            .is_err());
        assert!(HwFault::flip(FaultSite::MultOut, 0, 0, 15, 0)
            .check(2, 2, &dp, 10)
            .is_ok());
        assert!(HwFault::flip(FaultSite::PsumReg, 0, 0, 31, 10)
            .check(2, 2, &dp, 10)
            .is_err());
    }
}
