//! [`HwChip`]: a chip simulated by the cycle-level systolic model
//! ([`crate::hwsim::HwNetwork`]) under a hardware fault specification
//! ([`crate::hwsim::HwFaultSpec`]).
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

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::{CampaignError, ChipOutcome, ChipSimulator, FaultRecord, FaultScope};
use crate::hwsim::{ChipFault, ChipFaults, HwFaultSpec, HwNetwork, Site};

/// One image's logits and the faults scoped to it.
type ImageRun = (Vec<i32>, Vec<FaultRecord>);

/// Name of the pseudo-layer of faults that act in every layer.
pub const EVERY_LAYER: &str = "(every layer)";

/// The cycle-level model of a systolic accelerator running a network under
/// a hardware fault specification.
pub struct HwChip {
    net: HwNetwork,
    spec: HwFaultSpec,
}

impl HwChip {
    /// Checks the spec against the network (sites, addresses, layers).
    pub fn new(net: HwNetwork, spec: HwFaultSpec) -> Result<HwChip, CampaignError> {
        spec.check(&net)
            .map_err(|e| CampaignError::Invalid(e.to_string()))?;
        Ok(HwChip { net, spec })
    }

    pub fn network(&self) -> &HwNetwork {
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
        images
            .par_chunks(n)
            .enumerate()
            .map(|(i, img)| {
                let mut codes = vec![0i32; n];
                self.net.model().quantize_input(img, &mut codes);
                let image_faults = faults.for_image(i as u64, &self.net);
                let logits = self
                    .net
                    .run_codes(&codes, &image_faults)
                    .map_err(|e| Self::sim_err(chip, format!("image {i}: {e}")))?
                    .logits;
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
                    *per.entry((site_index(&lf.fault), lf.layer)).or_default() += 1;
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
                Ok((logits, records))
            })
            .collect()
    }
}

fn site_index(f: &ChipFault) -> usize {
    let name = f.site_name();
    Site::ALL
        .iter()
        .position(|s| s.name() == name)
        .unwrap_or(Site::ALL.len())
}

impl ChipSimulator for HwChip {
    fn name(&self) -> String {
        format!("hwsim-{}", self.net.executor().name())
    }

    fn site_classes(&self) -> Vec<String> {
        Site::ALL.iter().map(|s| s.name().to_string()).collect()
    }

    fn layers(&self) -> Vec<String> {
        self.net
            .layers()
            .iter()
            .map(|l| l.name.clone())
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
        let every = self.net.layers().len();
        let mut chip_wide: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for f in &faults.permanent {
            *chip_wide.entry((site_index(f), every)).or_default() += 1;
        }
        for (only, lf) in &faults.explicit {
            if only.is_none() {
                *chip_wide
                    .entry((site_index(&lf.fault), lf.layer))
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
