//! [`HwChip`]: a chip simulated by the hardware model — a systolic array
//! ([`crate::hwsim::HwNetwork`]) or a bit-serial design
//! ([`crate::hwsim::BitSerialNetwork`]) — under a hardware fault
//! specification ([`crate::hwsim::HwFaultSpec`]).
//!
//! Chip `c` of seed `s` is `spec.sample_chip(s, c)`: stuck-at cells drawn
//! once per chip, transient flips drawn per image and layer
//! ([`crate::hwsim::ChipFaults::for_image`] with the campaign image index).
//! Fault records: every sampled or listed fault, by site class (the seven
//! hardware sites) and layer. Stuck-at faults act in every layer and are
//! recorded under the layer `(every layer)`, scoped to the chip; explicit
//! faults of one layer without an image are scoped to the chip, those of
//! one image and every transient flip to their image. Whether a fault
//! changed anything shows only in the image outcome (masked = logits as
//! fault-free), as for every simulator.
//!
//! Site classes: the seven systolic sites, or on a bit-serial design the
//! three `sip.*` registers and the three buffers.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::{CampaignError, ChipOutcome, ChipSimulator, FaultRecord, FaultScope};
use crate::hwsim::{AnyHwNetwork, ChipFault, ChipFaults, HwFaultSpec, Site};

/// One image's logits and the faults scoped to it.
type ImageRun = (Vec<i32>, Vec<FaultRecord>);

/// Name of the pseudo-layer of faults that act in every layer.
pub const EVERY_LAYER: &str = "(every layer)";

/// The cycle-level model of a systolic accelerator running a network under
/// a hardware fault specification.
pub struct HwChip {
    net: AnyHwNetwork,
    spec: HwFaultSpec,
    sites: Vec<Site>,
}

impl HwChip {
    /// Checks the spec against the network (sites, addresses, layers).
    /// A systolic ([`crate::hwsim::HwNetwork`]) or bit-serial
    /// ([`crate::hwsim::BitSerialNetwork`]) network.
    pub fn new(net: impl Into<AnyHwNetwork>, spec: HwFaultSpec) -> Result<HwChip, CampaignError> {
        let net = net.into();
        spec.check(&net)
            .map_err(|e| CampaignError::Invalid(e.to_string()))?;
        let sites = net.sites();
        Ok(HwChip { net, spec, sites })
    }

    pub fn network(&self) -> &AnyHwNetwork {
        &self.net
    }

    fn sim_err(chip: Option<u64>, e: impl std::fmt::Display) -> CampaignError {
        CampaignError::Simulator {
            chip,
            message: e.to_string(),
        }
    }

    fn run(
        &self,
        images: &[f32],
        chip: Option<u64>,
        faults: &ChipFaults,
    ) -> Result<Vec<ImageRun>, CampaignError> {
        let n = self.net.model().input_shape().numel();
        if !images.len().is_multiple_of(n) {
            return Err(Self::sim_err(
                chip,
                format!("{} values is not a whole number of images", images.len()),
            ));
        }
        let count = images.len() / n;
        let image_faults: Vec<_> = (0..count)
            .into_par_iter()
            .map(|i| faults.for_image(i as u64, &self.net))
            .collect();
        let logits = self
            .net
            .run_images_indexed(images, &image_faults)
            .map_err(|(i, e)| Self::sim_err(chip, format!("image {i}: {e}")))?;
        Ok(logits
            .into_iter()
            .zip(&image_faults)
            .enumerate()
            .map(|(i, (logits, image_faults))| {
                // for_image lists the explicit layer faults acting in this
                // image first, in order; those meant for every image are
                // recorded once per chip instead
                let explicit: Vec<bool> = faults
                    .explicit
                    .iter()
                    .filter(|(o, _)| o.is_none_or(|x| x == i as u64))
                    .map(|(o, _)| o.is_none())
                    .collect();
                let mut per: BTreeMap<(usize, usize), u64> = BTreeMap::new();
                for (k, lf) in image_faults.transient.iter().enumerate() {
                    if explicit.get(k).copied().unwrap_or(false) {
                        continue;
                    }
                    *per.entry((self.site_index(&lf.fault), lf.layer))
                        .or_default() += 1;
                }
                let records = per
                    .into_iter()
                    .map(|((site, layer), count)| FaultRecord {
                        site,
                        layer,
                        scope: FaultScope::Image(i),
                        count,
                    })
                    .collect();
                (logits, records)
            })
            .collect())
    }
}

impl HwChip {
    fn site_index(&self, f: &ChipFault) -> usize {
        let name = f.site_name();
        self.sites
            .iter()
            .position(|s| s.name() == name)
            .unwrap_or(self.sites.len())
    }
}

impl ChipSimulator for HwChip {
    fn name(&self) -> String {
        format!("hwsim-{}", self.net.executor_name())
    }

    fn site_classes(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.name().to_string()).collect()
    }

    fn layers(&self) -> Vec<String> {
        self.net
            .layer_names()
            .into_iter()
            .chain([EVERY_LAYER.to_string()])
            .collect()
    }

    fn clean_logits(&self, images: &[f32]) -> Result<Vec<Vec<i32>>, CampaignError> {
        Ok(self
            .run(images, None, &ChipFaults::none())?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }

    fn run_chip(&self, chip: u64, seed: u64, images: &[f32]) -> Result<ChipOutcome, CampaignError> {
        let faults = self
            .spec
            .sample_chip(seed, chip, &self.net)
            .map_err(|e| Self::sim_err(Some(chip), e))?;
        let every = self.net.layer_names().len();
        let mut chip_wide: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for f in &faults.permanent {
            *chip_wide.entry((self.site_index(f), every)).or_default() += 1;
        }
        for (only, lf) in &faults.explicit {
            if only.is_none() {
                *chip_wide
                    .entry((self.site_index(&lf.fault), lf.layer))
                    .or_default() += 1;
            }
        }
        let mut records: Vec<FaultRecord> = chip_wide
            .into_iter()
            .map(|((site, layer), count)| FaultRecord {
                site,
                layer,
                scope: FaultScope::Chip,
                count,
            })
            .collect();
        let mut logits = Vec::new();
        for (l, r) in self.run(images, Some(chip), &faults)? {
            logits.push(l);
            records.extend(r);
        }
        Ok(ChipOutcome {
            logits,
            faults: records,
        })
    }
}
