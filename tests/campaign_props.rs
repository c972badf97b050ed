//! Properties of the campaign machinery over random campaigns of a cheap
//! synthetic simulator: any sharding merges to the unsharded files byte for
//! byte, any thread count gives the same files, and resuming from any
//! subset of finished chips gives the same files without rerunning them.

mod campaign_common;

use campaign_common::{assert_same_files, Counting};
use ftnas::campaign::{
    merge_shards, run_campaign, Campaign, CampaignError, ChipOutcome, ChipSimulator, FaultRecord,
    FaultScope, RunOptions, Shard,
};
use proptest::prelude::*;
use rand::Rng;

const CLASSES: usize = 4;

/// Logits and faults drawn from the chip's stream; about half the images
/// keep their fault-free logits.
struct Synthetic;

impl ChipSimulator for Synthetic {
    fn name(&self) -> String {
        "synthetic".into()
    }
    fn site_classes(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn layers(&self) -> Vec<String> {
        vec!["l0".into(), "l1".into(), "l2".into()]
    }
    fn clean_logits(&self, images: &[f32]) -> Result<Vec<Vec<i32>>, CampaignError> {
        Ok(images
            .iter()
            .map(|&x| {
                (0..CLASSES)
                    .map(|c| ((x as i32) * 7 + c as i32 * 3) % 5)
                    .collect()
            })
            .collect())
    }
    fn run_chip(&self, chip: u64, seed: u64, images: &[f32]) -> Result<ChipOutcome, CampaignError> {
        let mut rng = ftnas::fault::stream(seed, chip, 0, 0);
        let mut logits = self.clean_logits(images)?;
        let mut faults = Vec::new();
        for (i, l) in logits.iter_mut().enumerate() {
            if rng.random_bool(0.5) {
                l[rng.random_range(0..CLASSES)] += rng.random_range(1..4);
                faults.push(FaultRecord {
                    site: rng.random_range(0..2),
                    layer: rng.random_range(0..3),
                    scope: FaultScope::Image(i),
                    count: rng.random_range(1..3),
                });
            }
        }
        if rng.random_bool(0.5) {
            faults.push(FaultRecord {
                site: 1,
                layer: rng.random_range(0..3),
                scope: FaultScope::Chip,
                count: rng.random_range(1..4),
            });
        }
        Ok(ChipOutcome { logits, faults })
    }
}

fn setup(images: usize) -> (Vec<f32>, Vec<u8>) {
    let px = (0..images).map(|i| i as f32).collect();
    let labels = (0..images).map(|i| (i % CLASSES) as u8).collect();
    (px, labels)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_sharding_and_thread_count_gives_the_same_files(
        chips in 1u64..25, count in 1u64..6, images in 1usize..12, seed in any::<u64>(),
        threads in 1usize..4,
    ) {
        let root = tempfile::tempdir().unwrap();
        let (px, labels) = setup(images);
        let c = Campaign::new(&Synthetic, &px, &labels, "synthetic", chips, seed);
        let whole = root.path().join("whole");
        run_campaign(&c, &RunOptions::default(), &whole).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let dirs: Vec<_> = (0..count).map(|i| {
            let d = root.path().join(format!("s{i}"));
            let opts = RunOptions { shard: Shard::new(i, count).unwrap(), progress: false };
            pool.install(|| run_campaign(&c, &opts, &d)).unwrap();
            d
        }).collect();
        let merged = root.path().join("merged");
        merge_shards(&dirs, &merged).unwrap();
        assert_same_files(&whole, &merged);
    }

    #[test]
    fn resuming_from_any_finished_subset_gives_the_same_files(
        chips in 1u64..20, keep in proptest::collection::vec(any::<bool>(), 20),
        images in 1usize..8, seed in any::<u64>(),
    ) {
        let root = tempfile::tempdir().unwrap();
        let (px, labels) = setup(images);
        let c = Campaign::new(&Synthetic, &px, &labels, "synthetic", chips, seed);
        let full = root.path().join("full");
        run_campaign(&c, &RunOptions::default(), &full).unwrap();
        let part = root.path().join("part");
        std::fs::create_dir(&part).unwrap();
        std::fs::copy(full.join("campaign.json"), part.join("campaign.json")).unwrap();
        let journal = std::fs::read_to_string(full.join("journal.jsonl")).unwrap();
        let kept: String = journal
            .lines()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(l, _)| format!("{l}\n"))
            .collect();
        let n_kept = kept.lines().count();
        std::fs::write(part.join("journal.jsonl"), kept).unwrap();
        let counting = Counting::new(Synthetic);
        let c2 = Campaign::new(&counting, &px, &labels, "synthetic", chips, seed);
        run_campaign(&c2, &RunOptions::default(), &part).unwrap();
        prop_assert_eq!(counting.calls(), chips as usize - n_kept);
        assert_same_files(&full, &part);
    }
}
