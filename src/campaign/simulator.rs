//! What a campaign needs from whatever simulates a chip.

use super::CampaignError;

/// How long an injected fault lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultScope {
    /// For the whole chip: every image sees it (stuck-at bits, weight
    /// faults sampled once per chip).
    Chip,
    /// During one image only (index into the campaign's images): transient
    /// flips, feature faults drawn per forward.
    Image(usize),
}

/// `count` faults of one kind: at site class `site` (index into
/// [`ChipSimulator::site_classes`]) in layer `layer` (index into
/// [`ChipSimulator::layers`]), living for `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FaultRecord {
    pub site: usize,
    pub layer: usize,
    pub scope: FaultScope,
    pub count: u64,
}

/// What one simulated chip did with the campaign's images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipOutcome {
    /// Output codes of each image, in image order (the campaign compares
    /// them with the fault-free run: identical -> masked, other top-1 ->
    /// SDC, else other corruption).
    pub logits: Vec<Vec<i32>>,
    /// The faults injected on this chip. A simulator counts a fault where
    /// it can observe it; [`super::EngineChip`] documents its rule.
    pub faults: Vec<FaultRecord>,
}

/// A faulty chip that classifies images.
///
/// `images` are the campaign's images as f32 pixels, row-major, one after
/// another in the simulator's input shape; image `i` of the slice is
/// campaign image `i`. Implementations must be deterministic: the outcome
/// of chip `chip` may depend only on `(chip, seed, images)`, never on
/// threads or on which other chips ran, and all randomness must come from
/// `crate::fault::stream(seed, chip, ..)`.
pub trait ChipSimulator: Sync {
    /// Short name of the simulator kind (goes into the campaign config).
    fn name(&self) -> String;
    /// Names of the fault site classes [`FaultRecord::site`] indexes, e.g.
    /// `feature`, `weight`, or `pe.psum_reg`, `sram.ifmap`.
    fn site_classes(&self) -> Vec<String>;
    /// Names of the layers [`FaultRecord::layer`] indexes.
    fn layers(&self) -> Vec<String>;
    /// Logits of every image without faults.
    fn clean_logits(&self, images: &[f32]) -> Result<Vec<Vec<i32>>, CampaignError>;
    /// Logits of every image on faulty chip `chip`, and its faults.
    fn run_chip(&self, chip: u64, seed: u64, images: &[f32]) -> Result<ChipOutcome, CampaignError>;
}
