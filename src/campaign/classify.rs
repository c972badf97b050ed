//! One chip's outcome against the fault-free run -> its [`ChipRecord`].
//!
//! Each image is masked (logits bit-identical to the fault-free logits),
//! SDC (top-1 class differs from the fault-free top-1, whatever the label)
//! or other (logits differ, top-1 the same). Each fault-image exposure
//! takes its image's outcome: a fault scoped to image `i` is one exposure
//! with image `i`'s outcome; a chip-wide fault is exposed to every image.
//! An exposure is `shared` when its image had more than one fault.

use std::collections::BTreeMap;

use super::journal::{ChipRecord, VulnCounts, VulnRow};
use super::{CampaignError, ChipOutcome, FaultScope};
use crate::quant::argmax;

/// What happened to one image on one chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOutcome {
    Masked,
    Sdc,
    Other,
}

/// The fault-free run of a campaign's images.
#[derive(Debug, Clone)]
pub struct CleanRun {
    pub logits: Vec<Vec<i32>>,
    pub top1: Vec<usize>,
    pub labels: Vec<u8>,
}

impl CleanRun {
    pub fn new(logits: Vec<Vec<i32>>, labels: &[u8]) -> Result<CleanRun, CampaignError> {
        if logits.len() != labels.len() {
            return Err(CampaignError::Simulator {
                chip: None,
                message: format!(
                    "returned {} results for {} images",
                    logits.len(),
                    labels.len()
                ),
            });
        }
        let top1 = logits.iter().map(|l| argmax(l)).collect();
        Ok(CleanRun {
            logits,
            top1,
            labels: labels.to_vec(),
        })
    }

    /// Images whose fault-free top-1 is the label.
    pub fn correct(&self) -> u64 {
        self.top1
            .iter()
            .zip(&self.labels)
            .filter(|(&t, &y)| t == y as usize)
            .count() as u64
    }

    pub fn outcome(&self, image: usize, logits: &[i32]) -> ImageOutcome {
        if logits == self.logits[image].as_slice() {
            ImageOutcome::Masked
        } else if argmax(logits) != self.top1[image] {
            ImageOutcome::Sdc
        } else {
            ImageOutcome::Other
        }
    }
}

/// Classify chip `chip`'s outcome; `sites`/`layers` are the numbers of
/// site classes and layers its fault records may index.
pub fn classify_chip(
    chip: u64,
    clean: &CleanRun,
    outcome: &ChipOutcome,
    sites: usize,
    layers: usize,
) -> Result<ChipRecord, CampaignError> {
    let bad = |message: String| CampaignError::Simulator {
        chip: Some(chip),
        message,
    };
    let n = clean.labels.len();
    if outcome.logits.len() != n {
        return Err(bad(format!(
            "returned {} results for {n} images",
            outcome.logits.len()
        )));
    }
    let outcomes: Vec<ImageOutcome> = outcome
        .logits
        .iter()
        .enumerate()
        .map(|(i, l)| clean.outcome(i, l))
        .collect();
    let mut chip_faults = 0u64;
    let mut image_faults = vec![0u64; n];
    for f in &outcome.faults {
        if f.site >= sites || f.layer >= layers {
            return Err(bad(format!(
                "fault record names site {} / layer {} but there are {sites} sites and {layers} layers",
                f.site, f.layer
            )));
        }
        match f.scope {
            FaultScope::Chip => chip_faults += f.count,
            FaultScope::Image(i) if i < n => image_faults[i] += f.count,
            FaultScope::Image(i) => {
                return Err(bad(format!("fault record names image {i} of {n}")));
            }
        }
    }
    let total_in = |i: usize| chip_faults + image_faults[i];
    let mut masked = 0u64;
    let mut sdc = 0u64;
    let mut other = 0u64;
    let mut multi = 0u64;
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            ImageOutcome::Masked => masked += 1,
            ImageOutcome::Sdc => sdc += 1,
            ImageOutcome::Other => other += 1,
        }
        multi += u64::from(total_in(i) > 1);
    }
    let mut table: BTreeMap<(usize, usize), VulnCounts> = BTreeMap::new();
    for f in outcome.faults.iter().filter(|f| f.count > 0) {
        let v = table.entry((f.site, f.layer)).or_default();
        v.faults += f.count;
        match f.scope {
            FaultScope::Chip => {
                v.exposures += f.count * n as u64;
                v.masked += f.count * masked;
                v.sdc += f.count * sdc;
                v.other += f.count * other;
                v.shared += f.count * multi;
            }
            FaultScope::Image(i) => {
                v.exposures += f.count;
                match outcomes[i] {
                    ImageOutcome::Masked => v.masked += f.count,
                    ImageOutcome::Sdc => v.sdc += f.count,
                    ImageOutcome::Other => v.other += f.count,
                }
                if total_in(i) > 1 {
                    v.shared += f.count;
                }
            }
        }
    }
    let correct = outcome
        .logits
        .iter()
        .zip(&clean.labels)
        .filter(|(l, &y)| argmax(l) == y as usize)
        .count() as u64;
    Ok(ChipRecord {
        chip,
        correct,
        sdc,
        corrupted: sdc + other,
        faults: chip_faults + image_faults.iter().sum::<u64>(),
        vulnerability: table
            .into_iter()
            .map(|((site, layer), counts)| VulnRow {
                site,
                layer,
                counts,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::FaultRecord;

    fn clean() -> CleanRun {
        // top-1: 0, 1, 1 ; labels 0, 0, 1
        CleanRun::new(vec![vec![5, 1], vec![0, 3], vec![2, 4]], &[0, 0, 1]).unwrap()
    }

    #[test]
    fn outcomes_and_exposures() {
        let c = clean();
        assert_eq!(c.correct(), 2);
        let outcome = ChipOutcome {
            // masked, SDC (now class 0), other (same top-1, changed)
            logits: vec![vec![5, 1], vec![4, 3], vec![2, 5]],
            faults: vec![
                FaultRecord {
                    site: 1,
                    layer: 0,
                    scope: FaultScope::Chip,
                    count: 1,
                },
                FaultRecord {
                    site: 0,
                    layer: 1,
                    scope: FaultScope::Image(1),
                    count: 2,
                },
                FaultRecord {
                    site: 0,
                    layer: 0,
                    scope: FaultScope::Image(0),
                    count: 0,
                },
            ],
        };
        let r = classify_chip(9, &c, &outcome, 2, 2).unwrap();
        assert_eq!(
            (r.chip, r.correct, r.sdc, r.corrupted, r.faults),
            (9, 3, 1, 2, 3)
        );
        assert_eq!(r.vulnerability.len(), 2);
        let feat = r.vulnerability[0];
        assert_eq!((feat.site, feat.layer), (0, 1));
        assert_eq!(
            feat.counts,
            VulnCounts {
                faults: 2,
                exposures: 2,
                masked: 0,
                sdc: 2,
                other: 0,
                shared: 2
            }
        );
        let w = r.vulnerability[1];
        assert_eq!((w.site, w.layer), (1, 0));
        // the chip-wide fault is alone in images 0 and 2, shared in image 1
        assert_eq!(
            w.counts,
            VulnCounts {
                faults: 1,
                exposures: 3,
                masked: 1,
                sdc: 1,
                other: 1,
                shared: 1
            }
        );
    }

    #[test]
    fn bad_records_name_the_chip() {
        let c = clean();
        let mut o = ChipOutcome {
            logits: c.logits.clone(),
            faults: vec![FaultRecord {
                site: 2,
                layer: 0,
                scope: FaultScope::Chip,
                count: 1,
            }],
        };
        let e = classify_chip(4, &c, &o, 2, 1).unwrap_err().to_string();
        assert!(e.starts_with("chip 4:") && e.contains("site 2"), "{e}");
        o.faults[0] = FaultRecord {
            site: 0,
            layer: 0,
            scope: FaultScope::Image(3),
            count: 1,
        };
        assert!(classify_chip(4, &c, &o, 2, 1).is_err());
        o.logits.pop();
        let e = classify_chip(4, &c, &o, 2, 1).unwrap_err().to_string();
        assert!(e.contains("2 results for 3 images"), "{e}");
    }
}
