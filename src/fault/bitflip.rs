//! Feature bit flips: every bit of every output code flips independently
//! with probability `p` (XOR, two's complement within the code width, read
//! back sign-extended). Resampled at every call. Sampled by geometric
//! skipping over the (element x bit) grid, element-major.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::skip::Skipper;
use super::sparse::{CodeAccess, SparseCodes};
use super::twos::flip_bit;
use super::twos::supported_width;
use super::{FeatureInjector, LayerSite};

/// Independent per-bit flips with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BitFlip {
    pub p: f64,
}

impl BitFlip {
    /// Flip bits of `codes` (signed `bits`-bit codes).
    pub fn apply<R: Rng + ?Sized, C: CodeAccess + ?Sized>(
        &self,
        bits: u8,
        codes: &mut C,
        rng: &mut R,
    ) {
        if !supported_width(bits) {
            return;
        }
        let nb = bits as usize;
        let cells = codes.len().saturating_mul(nb);
        Skipper::new(self.p).for_each_hit(cells, rng, |k, _| {
            let (i, b) = (k / nb, (k % nb) as u32);
            codes.set(i, flip_bit(codes.get(i), b, bits));
        });
    }
}

impl FeatureInjector for BitFlip {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.apply(site.format.bits, codes, rng);
    }

    fn inject_sparse(
        &self,
        site: &LayerSite,
        codes: &mut SparseCodes,
        rng: &mut Xoshiro256PlusPlus,
    ) {
        self.apply(site.format.bits, codes, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn p_one_inverts_every_bit() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut codes = vec![0, 5, -128, 127];
        BitFlip { p: 1.0 }.apply(8, &mut codes, &mut rng);
        assert_eq!(codes, vec![-1, -6, 127, -128]);
    }
}
