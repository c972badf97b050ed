//! SRAM-buffer transients: what upsets in the ifmap, filter and ofmap
//! buffers (`sram.ifmap`, `sram.filter`, `sram.ofmap`) mean for each
//! layer's codes.
//!
//! The hardware rule ([`crate::hwsim::sram`]): layer `L`'s tensor of `len`
//! codes sits in a buffer of `words` words in `n = ceil(len / words)` tiles,
//! tile `t` resident in the layer cycles `c` with `floor(c * n / cycles) =
//! t`; every bit of every word flips in every cycle with probability `p`
//! (Bernoulli, [`crate::hwsim::spec`]), and a flipped word keeps its value
//! until the next layer overwrites the buffer. So the bit `b` of code `i`
//! ends up flipped when an odd number of upsets hit it during the `T_i`
//! cycles that count for it:
//!
//! ```text
//! q_i = P(odd number of upsets in T_i cycles) = (1 - (1 - 2p)^T_i) / 2
//! ```
//!
//! independently per bit and per code. What counts:
//! - **ofmap** (`stored_flip`): `T_i` is the code's tile residency; the
//!   flipped code is what every later node reads, after the layer's fused
//!   activation.
//! - **ifmap** (`input_flip`): the residency cycles before the end of the
//!   GEMM of the code's group (group `g` runs in cycles `[g G, (g+1) G)` of
//!   `G = group_cycles`; a later upset is never read); the flipped code is
//!   read by layer `L` alone (other readers of the tensor read the producer's
//!   output buffer).
//! - **filter** (`filter_flip`): the same rule on the weight codes (layout
//!   `[out, in/groups, kh, kw]`, group `g` holds filters `g M/g ..`); the
//!   buffer is rewritten for the next layer, so the flipped weight is what
//!   layer `L` computes with for this one image — a weight fault resampled
//!   per image, unlike the stuck cells of [`super::permanent`].
//!
//! The algorithmic model is a per-bit flip of every code with the layer's
//! mean `q = mean_i q_i` (exact when all codes count the same cycles, e.g.
//! a tensor that fits its buffer and one group; otherwise the expected
//! number of flipped bits is exact and their spread over codes is
//! averaged). Stuck ifmap/ofmap cells are permanent: they carry over to
//! the algorithmic model as they are ([`crate::fault::stuck_cells`], with
//! the buffers' word counts; `super::network` writes them).

use crate::quant::{MacLayer, QModel, QOp};

/// What the buffer rule needs of one layer on its hardware.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerTiming {
    /// Cycles of the whole layer.
    pub cycles: u64,
    /// Cycles of one group's GEMM (`cycles / groups`).
    pub group_cycles: u64,
}

/// The buffers of a design and the timing of every MAC layer of a model
/// on it (graph order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BufferGeometry {
    /// Words of the three buffers.
    pub ifmap_words: usize,
    pub filter_words: usize,
    pub ofmap_words: usize,
    pub layers: Vec<LayerTiming>,
}

/// One layer's derived buffer flips (per-bit probabilities).
#[derive(Debug, Clone, PartialEq)]
pub struct BufferFlips {
    pub name: String,
    pub input_flip: f64,
    pub filter_flip: f64,
    pub stored_flip: f64,
}

/// The transient rate of SRAM `buffer` in `spec` per bit per cycle at
/// `clock_mhz` (0 when the spec has none).
pub fn sram_transient_rate(
    spec: &crate::hwsim::spec::HwFaultSpec,
    buffer: crate::hwsim::sram::SramBuffer,
    clock_mhz: f64,
) -> f64 {
    spec.rates
        .get(&crate::hwsim::spec::Site::Sram(buffer))
        .and_then(|r| r.transient)
        .map_or(0.0, |t| t.per_bit_cycle(clock_mhz))
}

/// `(1 - (1-2p)^t) / 2`: the probability of an odd number of Bernoulli(p)
/// upsets in `t` trials, without cancellation for small `p`.
pub fn odd_upsets(p: f64, t: u64) -> f64 {
    if p <= 0.0 || t == 0 {
        return 0.0;
    }
    if p >= 0.5 {
        return if p == 0.5 {
            0.5
        } else {
            (1.0 - (1.0 - 2.0 * p).powf(t as f64)) / 2.0
        };
    }
    -0.5 * (t as f64 * (-2.0 * p).ln_1p()).exp_m1()
}

/// The first cycle of tile `t` of `n` over `cycles`: the least `c` with
/// `floor(c * n / cycles) >= t`.
fn tile_start(t: u64, n: u64, cycles: u64) -> u64 {
    (u128::from(t) * u128::from(cycles)).div_ceil(u128::from(n)) as u64
}

/// The cycles `[start, end)` in which code `i` of a `len`-code tensor is
/// resident in a `words`-word buffer during a layer of `cycles` cycles.
fn residency(i: usize, len: usize, words: usize, cycles: u64) -> (u64, u64) {
    let n = len.div_ceil(words) as u64;
    let t = (i / words) as u64;
    let end = if t + 1 >= n {
        cycles
    } else {
        tile_start(t + 1, n, cycles)
    };
    (tile_start(t, n, cycles).min(end), end)
}

/// Mean per-bit flip probability of layer `layer`'s stored output codes.
pub fn stored_flip(layer: &MacLayer, words: usize, timing: LayerTiming, p: f64) -> f64 {
    let len = layer.out_shape.numel();
    if p <= 0.0 || len == 0 || words == 0 {
        return 0.0;
    }
    mean_over_codes(len, |i| {
        let (s, e) = residency(i, len, words, timing.cycles);
        odd_upsets(p, e - s)
    })
}

/// Mean per-bit flip probability of layer `layer`'s input codes as the
/// layer reads them.
pub fn input_flip(layer: &MacLayer, words: usize, timing: LayerTiming, p: f64) -> f64 {
    let len = layer.in_shape.numel();
    if p <= 0.0 || len == 0 || words == 0 {
        return 0.0;
    }
    let plane = layer.in_shape.h * layer.in_shape.w;
    let per_group = (plane * layer.cin_per_group()).max(1);
    let gc = timing.group_cycles.max(1);
    mean_over_codes(len, |i| {
        let (s, e) = residency(i, len, words, timing.cycles);
        // a conv code is read only by its group's GEMM; linear layers read
        // every code in their one GEMM
        let last_read = if layer.is_conv {
            ((i / per_group) as u64 + 1).saturating_mul(gc)
        } else {
            u64::MAX
        };
        odd_upsets(p, e.min(last_read).saturating_sub(s))
    })
}

/// Mean per-bit flip probability of layer `layer`'s weight codes as the
/// layer reads them for one image.
pub fn filter_flip(layer: &MacLayer, words: usize, timing: LayerTiming, p: f64) -> f64 {
    let len = layer.weights.len();
    if p <= 0.0 || len == 0 || words == 0 {
        return 0.0;
    }
    // one group's filters: cout/groups rows of macs_per_output codes
    let per_group = (layer.macs_per_output() * layer.cout_per_group()).max(1);
    let gc = timing.group_cycles.max(1);
    mean_over_codes(len, |i| {
        let (s, e) = residency(i, len, words, timing.cycles);
        let last_read = ((i / per_group) as u64 + 1).saturating_mul(gc);
        odd_upsets(p, e.min(last_read).saturating_sub(s))
    })
}

/// `mean_i f(i)` over `len` codes; runs of equal exposure are cheap, so a
/// plain loop does (a few hundred thousand codes per layer at most).
fn mean_over_codes(len: usize, f: impl Fn(usize) -> f64) -> f64 {
    (0..len).map(f).sum::<f64>() / len as f64
}

/// Per-bit per-cycle transient rates of the three buffers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BufferRates {
    pub ifmap: f64,
    pub filter: f64,
    pub ofmap: f64,
}

impl BufferRates {
    /// The transient rates of the SRAM sites of `spec` at `clock_mhz`.
    pub fn of_spec(spec: &crate::hwsim::spec::HwFaultSpec, clock_mhz: f64) -> BufferRates {
        use crate::hwsim::sram::SramBuffer;
        let rate = |b| sram_transient_rate(spec, b, clock_mhz);
        BufferRates {
            ifmap: rate(SramBuffer::Ifmap),
            filter: rate(SramBuffer::Filter),
            ofmap: rate(SramBuffer::Ofmap),
        }
    }

    /// Every rate multiplied by `k`.
    pub fn scaled(&self, k: f64) -> BufferRates {
        BufferRates {
            ifmap: self.ifmap * k,
            filter: self.filter * k,
            ofmap: self.ofmap * k,
        }
    }

    /// `(buffer, rate)` of the three buffers.
    pub fn each(&self) -> [(crate::hwsim::sram::SramBuffer, f64); 3] {
        use crate::hwsim::sram::SramBuffer;
        [
            (SramBuffer::Ifmap, self.ifmap),
            (SramBuffer::Filter, self.filter),
            (SramBuffer::Ofmap, self.ofmap),
        ]
    }

    /// The largest of the three.
    pub fn max(&self) -> f64 {
        self.ifmap.max(self.filter).max(self.ofmap)
    }
}

/// The buffer flips of every MAC layer of `model` on `geometry`, for
/// per-bit per-cycle rates `rates` (layers without any are left out).
pub fn derive_buffer_flips(
    model: &QModel,
    geometry: &BufferGeometry,
    rates: BufferRates,
) -> Vec<BufferFlips> {
    let macs = model.nodes.iter().filter_map(|n| match &n.op {
        QOp::Mac(l) => Some(l.as_ref()),
        _ => None,
    });
    macs.zip(&geometry.layers)
        .map(|(l, &t)| BufferFlips {
            name: l.name.clone(),
            input_flip: input_flip(l, geometry.ifmap_words, t, rates.ifmap),
            filter_flip: filter_flip(l, geometry.filter_words, t, rates.filter),
            stored_flip: stored_flip(l, geometry.ofmap_words, t, rates.ofmap),
        })
        .filter(|b| b.input_flip > 0.0 || b.filter_flip > 0.0 || b.stored_flip > 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::description::Accelerator;
    use crate::hwsim::network::{ActingFaults, ChipFault, HwNetwork, ImageFaults, LayerFault};
    use crate::hwsim::sram::{resident_index, SramBuffer, SramFault};
    use crate::hwsim::FaultKind;
    use crate::model::file::parse_model;
    use crate::model::{Shape, Weights};

    /// A small model on a 4x4 array with 128-word buffers (tensors of
    /// several tiles), `model` a model file's text.
    fn small_net(model: &str, dataflow: &str) -> HwNetwork {
        let acc = format!(
            "name = \"t\"\nclock_mhz = 100.0\nkind = \"systolic\"\n[systolic]\nrows = 4\ncols = 4\n\
             dataflow = \"{dataflow}\"\n[datapath]\nact_bits = 8\nweight_bits = 8\npsum_bits = 24\n\
             overflow = \"saturate\"\n[buffers]\nifmap_kib = 1\nfilter_kib = 1\nofmap_kib = 1\n\
             word_bytes = 8\n[dram]\nbandwidth = \"calc\"\n"
        );
        let acc = Accelerator::parse(&acc, std::path::Path::new("t.toml")).unwrap();
        let shape = Shape::new(1, 8, 8);
        let graph = parse_model(model).unwrap().build(shape).unwrap();
        let weights = Weights::random(&graph, 3);
        let calib: Vec<f32> = (0..4 * 64)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let q = crate::quant::quantize(&graph, &weights, acc.datapath, &calib).unwrap();
        HwNetwork::new(&acc, &q).unwrap()
    }

    /// Every (address, cycle) of the buffer during layer `li`, through the
    /// hardware's own rule ([`ActingFaults::corrupt`]): the cycles each code
    /// is hit and read.
    fn brute_force_exposure(net: &HwNetwork, li: usize, buffer: SramBuffer) -> Vec<u64> {
        let layer = net.model().mac_layers().nth(li).unwrap();
        let lb = net.layer_buffers(li);
        let len = match buffer {
            SramBuffer::Ifmap => layer.in_shape.numel(),
            SramBuffer::Filter => layer.weights.len(),
            SramBuffer::Ofmap => layer.out_shape.numel(),
        };
        let mut exposure = vec![0u64; len];
        let mut codes = vec![0i32; len];
        for address in 0..net.sram_words(buffer) {
            for cycle in 0..lb.cycles {
                let fault = ChipFault::Sram(SramFault {
                    buffer,
                    address,
                    bit: 0,
                    kind: FaultKind::Flip { cycle },
                });
                let image = ImageFaults {
                    permanent: vec![],
                    transient: vec![LayerFault { layer: li, fault }],
                };
                let acting = ActingFaults::all(&image, net.layers().len());
                codes.fill(0);
                acting[li].corrupt(&lb, layer, buffer, &mut codes);
                for (e, &c) in exposure.iter_mut().zip(&codes) {
                    *e += u64::from(c != 0);
                }
            }
        }
        exposure
    }

    #[test]
    fn derived_flips_equal_brute_force_counting_on_the_hardware_rule() {
        let vgg = "family = \"vgg\"\nchannels = [[6], [4]]\nnum_classes = 10\n";
        // depthwise (sep_conv) layers: ifmap codes read only by their group
        let cells = "family = \"cells\"\ninit_channels = 4\nlayers = 1\nstem_multiplier = 1\n\
                     normal = [[\"sep_conv_3x3\", 0, 2], [\"skip_connect\", 1, 2]]\n\
                     reduce = [[\"sep_conv_3x3\", 0, 2], [\"max_pool_3x3\", 1, 2]]\n";
        let p = 2e-3;
        let mut grouped = 0;
        for (model, df) in [(vgg, "os"), (vgg, "ws"), (cells, "is")] {
            let net = small_net(model, df);
            let geometry = net.buffer_geometry();
            for (li, layer) in net.model().mac_layers().enumerate() {
                grouped += usize::from(layer.groups > 1);
                let t = geometry.layers[li];
                for buffer in SramBuffer::ALL {
                    let exposure = brute_force_exposure(&net, li, buffer);
                    let want = exposure.iter().map(|&t| odd_upsets(p, t)).sum::<f64>()
                        / exposure.len() as f64;
                    let got = match buffer {
                        SramBuffer::Ifmap => input_flip(layer, geometry.ifmap_words, t, p),
                        SramBuffer::Filter => filter_flip(layer, geometry.filter_words, t, p),
                        SramBuffer::Ofmap => stored_flip(layer, geometry.ofmap_words, t, p),
                    };
                    assert!(
                        (got - want).abs() <= 1e-12 * want,
                        "{df} {} {buffer}: derived {got}, counted {want}",
                        layer.name
                    );
                    assert!(want > 0.0);
                }
            }
        }
        assert!(grouped > 0, "no grouped layer was checked");
    }

    #[test]
    fn odd_upsets_matches_the_recursion() {
        // P(odd after t+1) = P(odd after t) (1-p) + P(even after t) p
        for &p in &[1e-9, 1e-4, 0.3] {
            let mut odd = 0.0;
            for t in 0..50u64 {
                let got = odd_upsets(p, t);
                assert!(
                    (got - odd).abs() <= 1e-12 * odd + 1e-300,
                    "p {p} t {t}: {got} vs {odd}"
                );
                odd = odd * (1.0 - p) + (1.0 - odd) * p;
            }
        }
        assert_eq!(odd_upsets(0.5, 7), 0.5);
    }

    #[test]
    fn residency_counts_the_cycles_resident_index_gives() {
        for &(len, words, cycles) in &[(10, 4, 30), (10, 4, 7), (3, 8, 100), (50, 7, 13), (9, 3, 2)]
        {
            for i in 0..len {
                let (s, e) = residency(i, len, words, cycles);
                let counted = (0..cycles)
                    .filter(|&c| resident_index(i % words, c, len, words, cycles) == Some(i))
                    .count() as u64;
                assert_eq!(
                    e - s,
                    counted,
                    "len {len} words {words} cycles {cycles} code {i}"
                );
                for c in s..e {
                    assert_eq!(resident_index(i % words, c, len, words, cycles), Some(i));
                }
            }
        }
    }
}
