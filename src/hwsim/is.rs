//! Input-stationary roles: SCALE-Sim maps IS as `(Sr, Sc, T) = (K, E, M)`.
//!
//! PE `(r, c)` of fold `(fr, fc)` keeps the activation `A[e][k]`
//! (`k = fr*rows + r`, `e = fc*cols + c`) in its `act_reg` for the whole
//! fold; the weights
//! `W[k][m]` stream along PE row `r` through the `weight_reg`s, one filter
//! `m` per cycle; column `c` sums output `(e, m)`. A stuck-at in an
//! `act_reg` corrupts activation `(fc*cols + c, fr*rows + r)` in every fold,
//! and a flip in a moving `weight_reg` corrupts the products of that weight
//! with every activation to its right.

use super::fault::FaultSite;
use super::stationary::StationaryRoles;
use super::Operands;

/// Input stationary.
pub(crate) struct InputStationary;

impl StationaryRoles for InputStationary {
    const STATIONARY_SITE: FaultSite = FaultSite::ActReg;
    const STREAMING_SITE: FaultSite = FaultSite::WeightReg;

    #[inline]
    fn stationary(ops: &Operands, kr: usize, sc: usize) -> i32 {
        ops.a[sc * ops.k + kr]
    }

    #[inline]
    fn streamed(ops: &Operands, t: usize, kr: usize) -> i32 {
        ops.w[kr * ops.m + t]
    }

    #[inline]
    fn out_index(ops: &Operands, t: usize, sc: usize) -> usize {
        sc * ops.m + t
    }
}
