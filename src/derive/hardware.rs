//! The hardware a calibration measures — a network mapped onto a systolic
//! array ([`HwNetwork`]) or onto a bit-serial design
//! ([`BitSerialNetwork`]) — behind one interface: its transient register
//! sites and their rates, the derivation that belongs to it, one layer run
//! in isolation under sampled flips, and whole-image runs on a chip.
//!
//! The register sites of both kinds play the roles of [`SiteRates`]: the
//! activation, weight and partial-sum registers (PE registers of a
//! systolic array, SIP registers of a bit-serial design) and, on a
//! systolic array only, the multiplier output.

use rand::Rng;

use crate::hwsim::bitserial::{SipFault, SipSite};
use crate::hwsim::bsnet::BitSerialNetwork;
use crate::hwsim::layer::{run_mac_layer_requantized, LayerGemm};
use crate::hwsim::network::{HwNetError, HwNetwork};
use crate::hwsim::spec::{
    for_each_transient, ChipFaults, FaultTarget, HwFaultSpec, HwSpecError, Site,
};
use crate::hwsim::{FaultSite, HwFault};
use crate::quant::{MacLayer, QModel};

use super::bitserial::{derive_bitserial_layer, sip_rate};
use super::buffers::{BufferGeometry, BufferRates};
use super::layer::{derive_layer, GemmLayer, LayerDerivation, SiteRates};
use super::network::{derive_bitserial_network, derive_network, NetworkDerivation};

/// The transient rates of a sweep point: the register sites' and the SRAM
/// buffers' (per bit per cycle).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TransientRates {
    pub regs: SiteRates,
    pub sram: BufferRates,
}

impl TransientRates {
    /// Every rate multiplied by `k`.
    pub fn scaled(&self, k: f64) -> TransientRates {
        TransientRates {
            regs: self.regs.scaled(k),
            sram: self.sram.scaled(k),
        }
    }

    /// The rates divided by the largest of them (register or SRAM site):
    /// the shape a sweep over the raw rate `r` scales (all zero if none is
    /// positive).
    pub fn shape(&self) -> TransientRates {
        let top = FaultSite::ALL
            .iter()
            .map(|&s| self.regs.of(s))
            .fold(self.sram.max(), f64::max);
        if top > 0.0 {
            self.scaled(1.0 / top)
        } else {
            TransientRates::default()
        }
    }
}

/// A network on the hardware being calibrated.
#[derive(Clone, Copy)]
pub enum Hardware<'a> {
    Systolic(&'a HwNetwork),
    BitSerial(&'a BitSerialNetwork),
}

/// The transient flips of one layer run.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerFlips {
    Pe(Vec<HwFault>),
    Sip(Vec<SipFault>),
}

impl LayerFlips {
    pub fn len(&self) -> usize {
        match self {
            LayerFlips::Pe(f) => f.len(),
            LayerFlips::Sip(f) => f.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Hardware<'_> {
    pub fn model(&self) -> &QModel {
        match self {
            Hardware::Systolic(n) => n.model(),
            Hardware::BitSerial(n) => n.model(),
        }
    }

    /// Compute cycles of one inference.
    pub fn cycles(&self) -> u64 {
        match self {
            Hardware::Systolic(n) => n.cycles(),
            Hardware::BitSerial(n) => n.cycles(),
        }
    }

    /// The transient register sites with their rate at `rates`.
    pub fn site_rates(&self, rates: &SiteRates) -> Vec<(Site, f64)> {
        match self {
            Hardware::Systolic(_) => FaultSite::ALL
                .iter()
                .map(|&s| (Site::Pe(s), rates.of(s)))
                .collect(),
            Hardware::BitSerial(_) => SipSite::ALL
                .iter()
                .map(|&s| (Site::Sip(s), sip_rate(rates, s)))
                .collect(),
        }
    }

    fn bits(&self, site: Site) -> u64 {
        match self {
            Hardware::Systolic(n) => site.bits(*n),
            Hardware::BitSerial(n) => site.bits(*n),
        }
    }

    /// Expected transient flips per cycle over every register bit at
    /// `rates`.
    pub fn flips_per_cycle(&self, rates: &SiteRates) -> f64 {
        self.site_rates(rates)
            .iter()
            .map(|&(s, r)| r * self.bits(s) as f64)
            .sum()
    }

    /// Expected transient flips per cycle over every register bit and
    /// every SRAM-buffer bit at `rates`.
    pub fn transient_flips_per_cycle(&self, rates: &TransientRates) -> f64 {
        self.flips_per_cycle(&rates.regs)
            + rates
                .sram
                .each()
                .iter()
                .map(|&(b, r)| r * self.bits(Site::Sram(b)) as f64)
                .sum::<f64>()
    }

    /// A fault-free chip whose registers and SRAM buffers flip at `rates`.
    pub fn chip_at(&self, rates: &TransientRates, seed: u64, chip: u64) -> ChipFaults {
        let sram = rates.sram.each().map(|(b, r)| (Site::Sram(b), r));
        ChipFaults {
            seed,
            chip,
            transient_rates: self
                .site_rates(&rates.regs)
                .into_iter()
                .chain(sram)
                .filter(|&(_, r)| r > 0.0)
                .collect(),
            ..ChipFaults::default()
        }
    }

    /// The clock of the design (MHz).
    pub fn clock_mhz(&self) -> f64 {
        match self {
            Hardware::Systolic(n) => n.clock_mhz(),
            Hardware::BitSerial(n) => FaultTarget::clock_mhz(*n),
        }
    }

    /// The buffers' words and every layer's timing.
    pub fn buffer_geometry(&self) -> BufferGeometry {
        match self {
            Hardware::Systolic(n) => n.buffer_geometry(),
            Hardware::BitSerial(n) => n.buffer_geometry(),
        }
    }

    /// Cycles of conv/linear layer `li` (`layer`, all groups).
    pub fn layer_cycles(&self, li: usize, layer: &MacLayer) -> u64 {
        match self {
            Hardware::Systolic(n) => LayerGemm::new(n.array(), layer).cycles,
            Hardware::BitSerial(n) => n.layers()[li].cycles,
        }
    }

    /// The derived parameters of one layer at raw rates `rates`.
    pub fn derive_layer(&self, layer: &GemmLayer, rates: &SiteRates) -> LayerDerivation {
        let dp = self.model().datapath;
        match self {
            Hardware::Systolic(n) => derive_layer(
                n.array(),
                (dp.act_bits, dp.weight_bits, dp.psum_bits),
                layer,
                rates,
            ),
            Hardware::BitSerial(n) => derive_bitserial_layer(&n.array().design, &dp, layer, rates),
        }
    }

    /// The derived feature faults of every layer at raw register rates
    /// `rates`.
    pub fn derive_network(&self, layers: &[GemmLayer], rates: &SiteRates) -> NetworkDerivation {
        match self {
            Hardware::Systolic(n) => derive_network(n.array(), n.model(), layers, rates),
            Hardware::BitSerial(n) => {
                derive_bitserial_network(&n.array().design, n.model(), layers, rates)
            }
        }
    }

    /// [`Self::derive_network`] with the code flips of the SRAM-buffer
    /// rates of `rates` too.
    pub fn derive_transients(
        &self,
        layers: &[GemmLayer],
        rates: &TransientRates,
    ) -> NetworkDerivation {
        self.derive_network(layers, &rates.regs).with_buffer_rates(
            self.model(),
            &self.buffer_geometry(),
            rates.sram,
        )
    }

    /// Sample the transient flips of one run of layer `li`: every bit of
    /// every register site in every cycle of the layer flips with its
    /// site's rate (the sampling of hardware fault specs,
    /// [`for_each_transient`]).
    pub fn sample_layer_flips<R: Rng>(
        &self,
        li: usize,
        layer: &MacLayer,
        rates: &SiteRates,
        rng: &mut R,
    ) -> LayerFlips {
        let dp = self.model().datapath;
        let cycles = self.layer_cycles(li, layer);
        match self {
            Hardware::Systolic(n) => {
                let (rows, cols) = (n.array().rows, n.array().cols);
                let mut faults = Vec::new();
                for site in FaultSite::ALL {
                    let p = rates.of(site);
                    if p > 0.0 {
                        let units = (rows * cols) as u64;
                        for_each_transient(p, units, site.width(&dp), cycles, rng, |c, u, bit| {
                            let u = u as usize;
                            faults.push(HwFault::flip(site, u / cols, u % cols, bit, c));
                        });
                    }
                }
                LayerFlips::Pe(faults)
            }
            Hardware::BitSerial(n) => {
                let mut faults = Vec::new();
                for site in SipSite::ALL {
                    let p = sip_rate(rates, site);
                    let Some((rows, cols, width)) = n.site_grid(Site::Sip(site)) else {
                        continue;
                    };
                    if p > 0.0 {
                        for_each_transient(p, rows * cols, width, cycles, rng, |c, u, bit| {
                            let (r, col) = ((u / cols) as usize, (u % cols) as usize);
                            faults.push(SipFault::flip(site, r, col, bit, c));
                        });
                    }
                }
                LayerFlips::Sip(faults)
            }
        }
    }

    /// Requantized pre-activation output codes (CHW) of conv/linear layer
    /// `li` (`layer`) for one image's input codes, under `flips`.
    pub fn layer_outputs(
        &self,
        li: usize,
        layer: &MacLayer,
        input: &[i32],
        flips: &LayerFlips,
    ) -> Result<Vec<i32>, HwNetError> {
        let dp = self.model().datapath;
        let mut out = vec![0i32; layer.out_shape.numel()];
        let err = |source| HwNetError::Layer {
            layer: li,
            name: layer.name.clone(),
            source,
        };
        match (self, flips) {
            (Hardware::Systolic(n), LayerFlips::Pe(f)) => {
                run_mac_layer_requantized(
                    n.executor(),
                    n.array(),
                    layer,
                    &dp,
                    input,
                    &layer.weights,
                    f,
                    &mut out,
                )
                .map_err(err)?;
            }
            (Hardware::BitSerial(n), LayerFlips::Sip(f)) => {
                n.run_mac_groups(li, layer, input, &layer.weights, f, &mut out)?;
            }
            _ => {
                return Err(HwNetError::Fault {
                    what: layer.name.clone(),
                    reason: "flips of one kind of hardware on the other".into(),
                })
            }
        }
        Ok(out)
    }

    /// No flips, for this hardware.
    pub fn no_flips(&self) -> LayerFlips {
        match self {
            Hardware::Systolic(_) => LayerFlips::Pe(Vec::new()),
            Hardware::BitSerial(_) => LayerFlips::Sip(Vec::new()),
        }
    }

    /// Sample chip `chip` of fault specification `spec`.
    pub fn sample_chip(
        &self,
        spec: &HwFaultSpec,
        seed: u64,
        chip: u64,
    ) -> Result<ChipFaults, HwSpecError> {
        match self {
            Hardware::Systolic(n) => spec.sample_chip(seed, chip, *n),
            Hardware::BitSerial(n) => spec.sample_chip(seed, chip, *n),
        }
    }

    /// Expected transient flips of `spec` per inference.
    pub fn expected_transients_per_image(&self, spec: &HwFaultSpec) -> f64 {
        match self {
            Hardware::Systolic(n) => spec.expected_transients_per_image(*n),
            Hardware::BitSerial(n) => spec.expected_transients_per_image(*n),
        }
    }

    /// The logit codes of one image (dataset index `index`) on `chip`.
    pub fn run_image(
        &self,
        image: &[f32],
        index: u64,
        chip: &ChipFaults,
    ) -> Result<Vec<i32>, HwNetError> {
        match self {
            Hardware::Systolic(n) => n.run_image(image, index, chip),
            Hardware::BitSerial(n) => n.run_image(image, index, chip),
        }
    }
}
