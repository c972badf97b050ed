//! Fault models.
//!
//! Algorithmic models (used by the engine, training and search) live here:
//! feature faults on conv/linear outputs and weight faults on weight codes,
//! plus the `FaultModel` TOML file holding per-layer parameters. The engine
//! calls the two injector traits below at its hook points; one implementation
//! of each model serves every caller.

pub mod adsaf;
pub mod bitflip;
pub mod layered;
pub mod mibb;
pub mod model_file;
pub mod output_hit;
pub mod skip;
pub mod sparse;
pub mod spec;
pub mod stream_hit;
pub mod stuck_at;
pub mod stuck_cells;
pub mod stuck_macs;
pub mod twos;

pub use adsaf::{AdSaf, Sa1Sign};
pub use bitflip::BitFlip;
pub use mibb::Mibb;
pub use model_file::{FaultError, FaultModel};
pub use output_hit::{HitSign, OutputHit};
pub use sparse::{CodeAccess, SparseCodes};
pub use spec::{
    FaultSpec, FeatureFault, FeatureSection, LayerOverride, LayerSelection, WeightFault,
    WeightSection,
};
pub use stuck_at::{PerBit, ShareUnit, SharedStuck, StuckAt};
pub use stuck_cells::{FeatureBuffer, StuckBuffers, StuckCells};
pub use stuck_macs::{MacGrid, MacRegister, StuckDensity, StuckMacs};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::fixed::Format;

/// What the engine tells a fault model about the hook point it is at.
#[derive(Debug, Clone, Copy)]
pub struct LayerSite<'a> {
    /// Node id of the conv/linear layer in the graph.
    pub node: usize,
    /// Node name (for per-layer parameters in fault-model files).
    pub name: &'a str,
    /// True for conv layers, false for linear (classifier) layers.
    pub is_conv: bool,
    /// MACs per output element: `C_in/groups*kh*kw` (the MiBB `n`).
    pub macs_per_output: usize,
    /// Kernel taps `kh*kw` (1 for linear layers): weight `k` of a filter
    /// is tap `k mod taps` of input channel `k / taps`.
    pub taps: usize,
    /// Convolution groups (1 for linear layers).
    pub groups: usize,
    /// Identifies one weight-fault draw (a simulated chip, or one training
    /// forward) and is equal for every layer of it, so that state shared by
    /// all layers — a stuck register that holds weights of every layer — is
    /// drawn once per draw ([`draw_key`], [`shared_stream`]). 0 for feature
    /// sites.
    pub draw: u64,
    /// Format of the codes handed to the injector (output codes for feature
    /// faults, weight codes for weight faults).
    pub format: Format,
}

/// Feature faults: called once per image per conv/linear layer with that
/// image's requantized pre-activation output codes (c*h*w, CHW order),
/// before the activation. Must only use `rng` for randomness.
pub trait FeatureInjector: Send + Sync {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus);

    /// The same faults as [`inject`](Self::inject) (same random draws, same
    /// changed codes) on codes read on demand, for callers that hold the
    /// output as something else (training's floats). The default reads
    /// every code; the skip-sampled models read only the ones they hit.
    fn inject_sparse(
        &self,
        site: &LayerSite,
        codes: &mut SparseCodes,
        rng: &mut Xoshiro256PlusPlus,
    ) {
        sparse::inject_dense(codes, |v| self.inject(site, v, rng));
    }

    /// Per-bit flip probability of the layer's stored output codes (SRAM
    /// output-buffer flips, after the fused activation; every later node
    /// reads them). 0 = none.
    fn stored_flip(&self, _site: &LayerSite) -> f64 {
        0.0
    }

    /// Apply [`stored_flip`](Self::stored_flip): called after
    /// [`inject`](Self::inject) and the fused activation, with the same
    /// `rng`, on the codes every later node reads.
    fn inject_stored(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        let p = self.stored_flip(site);
        if p > 0.0 {
            BitFlip { p }.apply(site.format.bits, codes, rng);
        }
    }

    /// Per-bit flip probability of the layer's input codes as this layer
    /// reads them (SRAM input-buffer flips; other readers of the tensor see
    /// it clean), drawn by the engine from [`input_stream`]. 0 = none.
    fn input_flip(&self, _site: &LayerSite) -> f64 {
        0.0
    }

    /// Per-bit flip probability of the layer's weight codes as this layer
    /// reads them for one image (SRAM filter-buffer flips: the buffer is
    /// rewritten for the next layer, so a flip lasts one image's layer),
    /// drawn by the engine from [`filter_stream`]. 0 = none.
    fn filter_flip(&self, _site: &LayerSite) -> f64 {
        0.0
    }

    /// True when [`inject_stuck`](Self::inject_stuck) has stuck cells of
    /// `buffer` to force.
    fn has_stuck_cells(&self, _buffer: FeatureBuffer) -> bool {
        false
    }

    /// Force the stuck cells of a feature-map buffer
    /// ([`stuck_cells`]) into one image's codes: a layer's own copy of its
    /// input (`Ifmap`, after its input flips) or its stored output (`Ofmap`,
    /// after the activation and the stored flips). `site.format` is the
    /// codes' format, `site.draw` the chip ([`draw_key`]), `image` the
    /// image (for wrappers that count what changed).
    fn inject_stuck(
        &self,
        _site: &LayerSite,
        _buffer: FeatureBuffer,
        _image: u64,
        _codes: &mut [i32],
    ) {
    }

    /// True when [`inject_macs`](Self::inject_macs) has stuck MAC-unit
    /// bits to apply.
    fn has_stuck_macs(&self) -> bool {
        false
    }

    /// Apply the stuck bits of the MAC units ([`stuck_macs`]) to one
    /// image's pass through a conv/linear layer: recompute the outputs they
    /// reach from the codes the layer reads (`input`, after the input
    /// buffer's faults) and the weight codes of `layer` (after the filter
    /// buffer's), overwriting the requantized pre-activation `codes`.
    /// `site.draw` is the chip ([`draw_key`]), `image` the image.
    /// `clean_acc`, when the caller has it: the layer's fault-free
    /// accumulators (CHW, under the accumulator rule, without the bias;
    /// exact wherever the rule cannot saturate), from which outputs that
    /// stay linear are corrected term by term instead of recomputed.
    #[allow(clippy::too_many_arguments)]
    fn inject_macs(
        &self,
        _site: &LayerSite,
        _layer: &crate::quant::MacLayer,
        _input: &[i32],
        _dp: &crate::fixed::Datapath,
        _image: u64,
        _clean_acc: Option<&[i32]>,
        _codes: &mut [i32],
    ) {
    }
}

/// The random stream of the input-buffer flips of layer `node` for one
/// (seed, trial, image): apart from the stream of the layer's output hooks.
pub fn input_stream(seed: u64, trial: u64, image: u64, node: usize) -> Xoshiro256PlusPlus {
    stream(seed, trial, image, node as u64 | (1 << 40))
}

/// The random stream of the filter-buffer flips of layer `node` for one
/// (seed, trial, image): apart from the layer's other streams.
pub fn filter_stream(seed: u64, trial: u64, image: u64, node: usize) -> Xoshiro256PlusPlus {
    stream(seed, trial, image, node as u64 | (2 << 40))
}

/// Weight faults: called on a layer's weight codes (in the layout of the
/// float weight tensor, `[out, in/groups, kh, kw]` or `[out, in]`) once per
/// simulated chip (persistent) or per forward (training).
pub trait WeightInjector: Send + Sync {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus);
}

/// The random stream for one (seed, trial, item, layer) tuple. Splitting
/// streams by these indices keeps results independent of batching, thread
/// count and sharding.
/// The [`LayerSite::draw`] key of the weight-fault draw `(seed, trial)`.
pub fn draw_key(seed: u64, trial: u64) -> u64 {
    splitmix64(seed ^ splitmix64(trial ^ 0x5EED_D2A3_0000_0001))
}

/// The random stream of state shared by every layer of draw `key`.
pub fn shared_stream(key: u64) -> Xoshiro256PlusPlus {
    stream(key, 0, u64::MAX - 3, 0)
}

pub fn stream(seed: u64, trial: u64, item: u64, layer: u64) -> Xoshiro256PlusPlus {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [trial, item, layer] {
        h = splitmix64(h ^ splitmix64(v.wrapping_add(0xD1B5_4A32_D192_ED03)));
    }
    Xoshiro256PlusPlus::seed_from_u64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_and_repeat() {
        let a: u64 = stream(1, 0, 0, 3).random();
        let b: u64 = stream(1, 0, 0, 3).random();
        let c: u64 = stream(1, 0, 1, 3).random();
        let d: u64 = stream(1, 1, 0, 3).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
