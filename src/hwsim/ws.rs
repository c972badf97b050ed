//! Weight-stationary roles: SCALE-Sim maps WS as `(Sr, Sc, T) = (K, M, E)`.
//!
//! PE `(r, c)` of fold `(fr, fc)` keeps the weight `W[k][m]` (`k = fr*rows +
//! r`, `m = fc*cols + c`) in its `weight_reg` for the whole fold; the
//! activations `A[e][k]` stream along PE row `r` through the `act_reg`s,
//! one output pixel `e` per cycle; column `c` sums output `(e, m)`. A
//! stuck-at in a `weight_reg` therefore corrupts weight `(fr*rows + r,
//! fc*cols + c)` in every fold, and a flip in a moving `act_reg` corrupts
//! the products of that activation with every weight to its right.

use super::fault::FaultSite;
use super::stationary::StationaryRoles;
use super::Operands;

/// Weight stationary.
pub(crate) struct WeightStationary;

impl StationaryRoles for WeightStationary {
    const STATIONARY_SITE: FaultSite = FaultSite::WeightReg;
    const STREAMING_SITE: FaultSite = FaultSite::ActReg;

    #[inline]
    fn stationary(ops: &Operands, kr: usize, sc: usize) -> i32 {
        ops.w[kr * ops.m + sc]
    }

    #[inline]
    fn streamed(ops: &Operands, t: usize, kr: usize) -> i32 {
        ops.a[t * ops.k + kr]
    }

    #[inline]
    fn out_index(ops: &Operands, t: usize, sc: usize) -> usize {
        t * ops.m + sc
    }
}
