//! Stuck PE register bits of a systolic array as the feature model
//! [`crate::fault::stuck_macs`] (issue 5): which outputs one stuck bit of
//! `pe.act_reg`, `pe.weight_reg`, `pe.mult_out` or `pe.psum_reg` reaches,
//! and how it acts on them.
//!
//! A stuck bit acts the same way in every fold, layer and image of the
//! chip, so it is a property of the PE grid and the mapping alone:
//!
//! - **OS** (`R x C` PEs): output `(e, m)` of a group's GEMM is computed in
//!   PE `(e mod R, m mod C)`, every fold on the same PEs. A stuck
//!   `act_reg` bit of PE `(i, j)` forces that bit of every activation
//!   passing it — every term of the outputs of PEs `(i, j..C)`; a stuck
//!   `weight_reg` bit, every term of the outputs of PEs `(i..R, j)` (this
//!   is why it is not a weight fault on OS: the PEs above see the weight
//!   intact); a stuck `mult_out` bit, every product of the PE's outputs; a
//!   stuck `psum_reg` bit, the PE's running sums before every add and on
//!   the read-out.
//! - **WS / IS**: term `k` of output `(e, m)` is computed in PE row
//!   `k mod R`, column `m mod C` (WS) or `e mod C` (IS); the streamed
//!   operand (WS activations, IS weights) passes the PEs `(r, 0..=c)` of its
//!   row, the stationary one (WS weights, IS activations) sits in its PE,
//!   and the partial sum of an output passes every PE row of its column in
//!   every row fold. A stuck streamed-register bit of PE `(r, c)` reaches
//!   the terms `k = r mod R` of every output of columns `c..C`; a
//!   stationary, multiplier or partial-sum bit those of column `c`. The WS
//!   weight register holds weights: it stays in the weight model
//!   ([`super::permanent`], shared register bits), which the engines apply
//!   before the MAC units see the weights, so it is left out here.
//!
//! So the spec's per-bit densities of the sites *are* the model's per
//! register densities on the array's `R x C` grid — no approximation of the
//! densities, the mapping or the arithmetic. Left out: on OS the skew's
//! zero bubbles (an output whose activation and weight paths both force a
//! bit to 1), on WS the padding rows of a last row fold whose activation
//! path and weight register both force a bit to 1 (the weight model does
//! not reach padding rows); see [`crate::fault::stuck_macs`]. Expected
//! stuck bits per chip: `R * C * sum over sites (p0 + p1) * width`.

use crate::accel::description::{BitSerial, Precision, Serial};
use crate::accel::Dataflow;
use crate::fault::{MacGrid, StuckDensity, StuckMacs};
use crate::hwsim::bitserial::SipSite;
use crate::hwsim::spec::{HwFaultSpec, Site};
use crate::hwsim::{FaultSite, SystolicArray};

/// The stuck MAC-unit model of `spec`'s PE stuck-at densities on `array`
/// (`None` when no PE site it covers has stuck bits; the WS weight
/// register is the weight model's).
pub fn stuck_macs_of_spec(spec: &HwFaultSpec, array: &SystolicArray) -> Option<StuckMacs> {
    let grid = match array.dataflow {
        Dataflow::Os => MacGrid::OutputStationary,
        Dataflow::Ws => MacGrid::WeightStationary,
        Dataflow::Is => MacGrid::InputStationary,
    };
    let density = |s: FaultSite| {
        if s == FaultSite::WeightReg && grid == MacGrid::WeightStationary {
            return StuckDensity::default();
        }
        stuck_density(spec, Site::Pe(s))
    };
    let m = StuckMacs {
        grid,
        rows: array.rows,
        cols: array.cols,
        density: [
            density(FaultSite::ActReg),
            density(FaultSite::WeightReg),
            density(FaultSite::MultOut),
            density(FaultSite::PsumReg),
        ],
    };
    (!m.is_empty()).then_some(m)
}

/// The stuck SIP model of `spec`'s `sip.act_reg` / `sip.psum_reg` stuck-at
/// densities on bit-serial `design` (`None` when neither has stuck bits).
/// Serial weights (Loom) and run-time precision are the grid's: with
/// run-time precision a stuck bit above a step's detected precision is
/// never shifted out, which the model decides from the layer's own
/// fault-free activations, as the detector does. The SIP weight register
/// is the weight model's ([`super::permanent`]).
pub fn stuck_macs_of_bitserial(spec: &HwFaultSpec, design: &BitSerial) -> Option<StuckMacs> {
    let density = |s: SipSite| stuck_density(spec, Site::Sip(s));
    let m = StuckMacs {
        grid: MacGrid::BitSerial {
            filter_rows: design.tiles * design.filters,
            bits_per_cycle: design.bits_per_cycle,
            serial_weights: design.serial == Serial::Both,
            run_time_precision: design.precision == Precision::PerGroup,
        },
        rows: design.windows,
        cols: design.lanes,
        density: [
            density(SipSite::ActReg),
            StuckDensity::default(),
            StuckDensity::default(),
            density(SipSite::PsumReg),
        ],
    };
    (!m.is_empty()).then_some(m)
}

/// The stuck-at densities of `site` in `spec` (zero when it has none).
fn stuck_density(spec: &HwFaultSpec, site: Site) -> StuckDensity {
    spec.rates
        .get(&site)
        .map_or(StuckDensity::default(), |r| StuckDensity {
            p0: r.stuck_at_0,
            p1: r.stuck_at_1,
        })
}

/// Outputs of a layer one stuck bit reaches, averaged over the units it can
/// sit in: per register kind ([`crate::fault::MacRegister::ALL`] order:
/// activation, weight, product, accumulator), for `groups` GEMMs of `e`
/// pixels by `m` filters with reduction `k` on the `rows x cols` grid.
///
/// OS: an activation bit of unit `(i, j)` reaches the outputs of units
/// `(i, j..cols)`, a weight bit those of `(i..rows, j)`, product and
/// accumulator bits those of `(i, j)`; unit `(i, j)` computes `n(e, i,
/// rows) * n(m, j, cols)` outputs per group, `n(x, i, r)` the indices
/// below `x` that are `i mod r`. WS / IS: column `c` computes `n(S, c,
/// cols) * T` outputs (`S`, `T` = filters, pixels on WS; pixels, filters on
/// IS); a streamed-operand bit of unit `(r, c)` reaches those of columns
/// `c..cols`, a stationary-operand or product bit those of column `c`, all
/// only for a live row `r < k`; an accumulator bit those of column `c`.
///
/// Bit-serial (`rows` windows, `cols` lanes, `filter_rows`): an activation
/// bit of window `w`, lane `l` reaches the `n(e, w, rows) * m` outputs of
/// its pixels when the lane is live (`l < K / taps` input channels), an
/// accumulator bit of window `w`, filter row `f` the `n(e, w, rows) * n(m,
/// f, filter_rows)` outputs of its SIP; weight and product: none (mean
/// over windows x lanes and windows x filter rows). With run-time
/// precision the activation figure is an upper bound: a bit above every
/// step's detected precision reaches nothing.
pub fn mean_reach(
    grid: MacGrid,
    rows: usize,
    cols: usize,
    (e, k, m): (usize, usize, usize),
    taps: usize,
    groups: usize,
) -> [f64; 4] {
    let n = |x: usize, i: usize, r: usize| if i < x { (x - i).div_ceil(r) } else { 0 };
    let units = (rows * cols) as f64;
    let g = groups as f64;
    if let MacGrid::BitSerial { filter_rows, .. } = grid {
        let channels = k / taps.max(1);
        let pix: usize = (0..rows).map(|w| n(e, w, rows)).sum();
        let live_lanes = cols.min(channels);
        let act = (pix * m * live_lanes) as f64 / units;
        let fil: usize = (0..filter_rows).map(|f| n(m, f, filter_rows)).sum();
        let acc = (pix * fil) as f64 / (rows * filter_rows) as f64;
        return [g * act, 0.0, 0.0, g * acc];
    }
    if grid != MacGrid::OutputStationary {
        let ws = grid == MacGrid::WeightStationary;
        let (s_len, t_len) = if ws { (m, e) } else { (e, m) };
        let col: Vec<usize> = (0..cols).map(|c| n(s_len, c, cols) * t_len).collect();
        let live = rows.min(k);
        let (mut streamed, mut own, mut acc) = (0usize, 0usize, 0usize);
        for c in 0..cols {
            streamed += live * col[c..].iter().sum::<usize>();
            own += live * col[c];
            acc += rows * col[c];
        }
        let (act, weight) = if ws { (streamed, own) } else { (own, streamed) };
        return [act, weight, own, acc].map(|x| g * x as f64 / units);
    }
    let pix: Vec<usize> = (0..rows).map(|i| n(e, i, rows)).collect();
    let fil: Vec<usize> = (0..cols).map(|j| n(m, j, cols)).collect();
    let (pix_total, fil_total): (usize, usize) = (pix.iter().sum(), fil.iter().sum());
    let (mut act, mut weight) = (0usize, 0usize);
    for (i, &p) in pix.iter().enumerate() {
        for (j, &f) in fil.iter().enumerate() {
            // suffix sums: the units right of / below (i, j), itself included
            act += p * fil[j..].iter().sum::<usize>();
            weight += f * pix[i..].iter().sum::<usize>();
        }
    }
    let own = (pix_total * fil_total) as f64 / units;
    [
        g * act as f64 / units,
        g * weight as f64 / units,
        g * own,
        g * own,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a stuck bit of `register` (0 act .. 3 accumulator) in unit
    /// `(i, j)` acts on output `(pe, fm)` with reduction `k`.
    fn reaches(
        grid: MacGrid,
        rows: usize,
        cols: usize,
        register: usize,
        (i, j): (usize, usize),
        (pe, fm): (usize, usize),
        k: usize,
    ) -> bool {
        match grid {
            MacGrid::OutputStationary => {
                let (ui, uj) = (pe % rows, fm % cols);
                match register {
                    0 => ui == i && uj >= j,
                    1 => uj == j && ui >= i,
                    _ => ui == i && uj == j,
                }
            }
            _ => {
                let ws = grid == MacGrid::WeightStationary;
                let c = if ws { fm % cols } else { pe % cols };
                // some live term k' of the output sits in unit row i
                let live = (0..k).any(|kk| kk % rows == i);
                let streamed = if ws { 0 } else { 1 };
                match register {
                    3 => c == j,
                    r if r == streamed => live && c >= j,
                    _ => live && c == j,
                }
            }
        }
    }

    #[test]
    fn reach_is_brute_force_counting() {
        let grids = [
            MacGrid::OutputStationary,
            MacGrid::WeightStationary,
            MacGrid::InputStationary,
        ];
        for grid in grids {
            for (rows, cols, e, k, m, groups) in [
                (4, 3, 10, 7, 7, 1),
                (8, 8, 3, 5, 2, 5),
                (1, 5, 9, 3, 11, 2),
                (5, 2, 4, 12, 3, 1),
            ] {
                let mut sum = [0usize; 4];
                for (reg, total) in sum.iter_mut().enumerate() {
                    for i in 0..rows {
                        for j in 0..cols {
                            for pe in 0..e {
                                for fm in 0..m {
                                    *total += usize::from(reaches(
                                        grid,
                                        rows,
                                        cols,
                                        reg,
                                        (i, j),
                                        (pe, fm),
                                        k,
                                    ));
                                }
                            }
                        }
                    }
                }
                let r = mean_reach(grid, rows, cols, (e, k, m), 1, groups);
                for x in 0..4 {
                    let want = (groups * sum[x]) as f64 / (rows * cols) as f64;
                    assert!(
                        (r[x] - want).abs() < 1e-9,
                        "{grid:?} {x}: {} vs {want}",
                        r[x]
                    );
                }
            }
        }
    }

    /// Bit-serial reach against counting: the SIP of window `e mod rows`,
    /// filter row `m mod filter_rows`; lane `l` live when some input
    /// channel `c < K / taps` has `c mod cols = l`.
    #[test]
    fn bitserial_reach_is_brute_force_counting() {
        for (rows, cols, filter_rows, e, taps, channels, m, groups) in [
            (4, 3, 5, 10, 9, 2, 7, 1),
            (2, 8, 3, 7, 1, 20, 4, 3),
            (16, 16, 256, 49, 9, 64, 64, 1),
        ] {
            let grid = MacGrid::BitSerial {
                filter_rows,
                bits_per_cycle: 1,
                serial_weights: false,
                run_time_precision: false,
            };
            let (mut act, mut acc) = (0usize, 0usize);
            for pe in 0..e {
                for fm in 0..m {
                    for w in 0..rows {
                        for l in 0..cols {
                            let live = (0..channels).any(|c| c % cols == l);
                            act += usize::from(pe % rows == w && live);
                        }
                        for f in 0..filter_rows {
                            acc += usize::from(pe % rows == w && fm % filter_rows == f);
                        }
                    }
                }
            }
            let r = mean_reach(grid, rows, cols, (e, channels * taps, m), taps, groups);
            let want_act = (groups * act) as f64 / (rows * cols) as f64;
            let want_acc = (groups * acc) as f64 / (rows * filter_rows) as f64;
            assert!((r[0] - want_act).abs() < 1e-9, "{} vs {want_act}", r[0]);
            assert!((r[3] - want_acc).abs() < 1e-9, "{} vs {want_acc}", r[3]);
            assert_eq!((r[1], r[2]), (0.0, 0.0));
        }
    }
}
