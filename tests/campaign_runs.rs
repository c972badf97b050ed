//! Campaign runner on real Fashion-MNIST images with the fast engine under
//! algorithmic faults: thread-count independence, shards that merge to the
//! unsharded result byte for byte, resume after an interruption, and the
//! meaning of the numbers (chip = infer trial, fault counts).

mod campaign_common;

use std::sync::Mutex;

use campaign_common::*;
use ftnas::campaign::{merge_shards, run_campaign, ChipSimulator, RunOptions, Shard};
use ftnas::engine::{Engine, FastEngine, FeatureFaults, ReferenceEngine};
use ftnas::fault::{FeatureBuffer, FeatureInjector, LayerSite};
use ftnas::quant::argmax;
use rand_xoshiro::Xoshiro256PlusPlus;

const IMAGES: usize = 48;
const CHIPS: u64 = 10;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn thread_count_does_not_change_any_file() {
    let root = tempfile::tempdir().unwrap();
    let sim = engine_chip(mixed_faults());
    let c = campaign(&sim, IMAGES, CHIPS, 11);
    for threads in [1, 3] {
        let out = dir(root.path(), &format!("t{threads}"));
        pool(threads)
            .install(|| run_campaign(&c, &RunOptions::default(), &out))
            .unwrap();
    }
    assert_same_files(&root.path().join("t1"), &root.path().join("t3"));
    // the faults did something, so the comparison is not vacuous
    let summary = std::fs::read_to_string(root.path().join("t1/summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(
        v["mean_faults_per_chip"].as_f64().unwrap() > 1.0,
        "{summary}"
    );
    assert!(v["corrupted_rate"].as_f64().unwrap() > 0.0, "{summary}");
}

#[test]
fn shards_merge_to_the_unsharded_result() {
    let root = tempfile::tempdir().unwrap();
    let sim = engine_chip(mixed_faults());
    let c = campaign(&sim, IMAGES, CHIPS, 3);
    let whole = root.path().join("whole");
    let expected = run_campaign(&c, &RunOptions::default(), &whole).unwrap();
    let mut shard_dirs = Vec::new();
    // shards given out of order; shard 3/4 has fewer chips than the others
    for i in [2, 0, 3, 1] {
        let d = root.path().join(format!("s{i}"));
        let opts = RunOptions {
            shard: Shard::new(i, 4).unwrap(),
            progress: false,
        };
        let part = run_campaign(&c, &opts, &d).unwrap();
        assert_eq!(part.shard.as_deref(), Some(format!("{i}/4").as_str()));
        assert_eq!(part.chips, Shard::new(i, 4).unwrap().len(CHIPS));
        shard_dirs.push(d);
    }
    let merged_dir = root.path().join("merged");
    let merged = merge_shards(&shard_dirs, &merged_dir).unwrap();
    assert_eq!(merged, expected);
    assert_same_files(&whole, &merged_dir);
    // merging again into the same directory is idempotent
    merge_shards(&shard_dirs, &merged_dir).unwrap();
    assert_same_files(&whole, &merged_dir);
}

#[test]
fn resume_computes_only_missing_chips_and_gives_the_same_result() {
    let root = tempfile::tempdir().unwrap();
    let full = Counting::new(engine_chip(mixed_faults()));
    let c = campaign(&full, IMAGES, CHIPS, 5);
    let a = root.path().join("a");
    run_campaign(&c, &RunOptions::default(), &a).unwrap();
    assert_eq!(full.calls(), CHIPS as usize);

    // An interrupted run: the manifest, 4 finished chips in completion
    // order, and a line cut in the middle of being written.
    let b = root.path().join("b");
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(a.join("campaign.json"), b.join("campaign.json")).unwrap();
    let journal = std::fs::read_to_string(a.join("journal.jsonl")).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    let mut partial = String::new();
    for i in [7, 2, 9, 0] {
        partial.push_str(lines[i]);
        partial.push('\n');
    }
    partial.push_str(&lines[4][..lines[4].len() / 2]);
    std::fs::write(b.join("journal.jsonl"), partial).unwrap();

    let resumed = Counting::new(engine_chip(mixed_faults()));
    let c2 = campaign(&resumed, IMAGES, CHIPS, 5);
    run_campaign(&c2, &RunOptions::default(), &b).unwrap();
    assert_eq!(resumed.calls(), CHIPS as usize - 4);
    assert_same_files(&a, &b);
    // a finished directory runs nothing
    run_campaign(&c2, &RunOptions::default(), &b).unwrap();
    assert_eq!(resumed.calls(), CHIPS as usize - 4);
    assert_same_files(&a, &b);
}

#[test]
fn a_directory_of_another_campaign_or_shard_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let sim = engine_chip(mixed_faults());
    let out = root.path().join("c");
    run_campaign(&campaign(&sim, 8, 2, 1), &RunOptions::default(), &out).unwrap();
    let before = std::fs::read(out.join("summary.json")).unwrap();
    let e = run_campaign(&campaign(&sim, 8, 2, 2), &RunOptions::default(), &out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("holds campaign") && e.contains("seed 1 vs 2"),
        "{e}"
    );
    let opts = RunOptions {
        shard: Shard::new(1, 2).unwrap(),
        progress: false,
    };
    let e = run_campaign(&campaign(&sim, 8, 2, 1), &opts, &out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shard 0/1") && e.contains("not shard 1/2"),
        "{e}"
    );
    // nothing already written was touched
    assert_eq!(std::fs::read(out.join("summary.json")).unwrap(), before);
}

#[test]
fn merge_rejects_foreign_missing_duplicate_and_unfinished_shards() {
    let root = tempfile::tempdir().unwrap();
    let sim = engine_chip(mixed_faults());
    let run = |seed: u64, shard: &str, name: &str| {
        let d = root.path().join(name);
        let opts = RunOptions {
            shard: shard.parse().unwrap(),
            progress: false,
        };
        run_campaign(&campaign(&sim, 8, 6, seed), &opts, &d).unwrap();
        d
    };
    let s0 = run(1, "0/3", "s0");
    let s1 = run(1, "1/3", "s1");
    let s2 = run(1, "2/3", "s2");
    let other = run(2, "2/3", "other");
    let halves = run(1, "1/2", "half");
    let out = root.path().join("m");
    let err = |dirs: &[&std::path::PathBuf]| {
        let dirs: Vec<_> = dirs.iter().map(|d| d.to_path_buf()).collect();
        merge_shards(&dirs, &out).unwrap_err().to_string()
    };

    let e = err(&[&s0, &s1, &other]);
    assert!(
        e.contains("different campaigns") && e.contains("seed 1 vs 2"),
        "{e}"
    );
    let e = err(&[&s0, &s1]);
    assert!(e.contains("shard 2/3 missing"), "{e}");
    let e = err(&[&s0, &s1, &s1, &s2]);
    assert!(e.contains("shard 1/3 is given twice"), "{e}");
    let e = err(&[&s0, &halves]);
    assert!(e.contains("split the campaign the same way"), "{e}");
    let e = err(&[]);
    assert!(e.contains("no shard directories"), "{e}");

    // a shard whose run was interrupted: one chip missing from its journal
    let j = s2.join("journal.jsonl");
    let text = std::fs::read_to_string(&j).unwrap();
    let first_line_end = text.find('\n').unwrap() + 1;
    std::fs::write(&j, &text[first_line_end..]).unwrap();
    let e = err(&[&s0, &s1, &s2]);
    assert!(e.contains("shard 2/3 is incomplete: 1 of 2 chips"), "{e}");
    std::fs::write(&j, &text).unwrap();

    // merging into a shard's own directory would overwrite it
    let e = merge_shards(&[s0.clone(), s1.clone(), s2.clone()], &s0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("merge into an empty directory"), "{e}");
    assert!(merge_shards(&[s0, s1, s2], &out).is_ok());
    assert!(!out.join("nothing").exists());
}

/// Counts every code a wrapped injector changes, without knowing images.
struct ChangeCounter<'a> {
    inner: &'a dyn FeatureInjector,
    changed: Mutex<u64>,
}

impl FeatureInjector for ChangeCounter<'_> {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        let before = codes.to_vec();
        self.inner.inject(site, codes, rng);
        let n = before
            .iter()
            .zip(codes.iter())
            .filter(|(a, b)| a != b)
            .count();
        *self.changed.lock().unwrap() += n as u64;
    }
}

#[test]
fn a_chip_is_an_infer_trial_and_counts_every_changed_code() {
    let faults = mixed_faults();
    let sim = engine_chip(faults.clone());
    let (images, labels) = first_images(IMAGES);
    let seed = 21;
    for chip in [0u64, 3] {
        let outcome = sim.run_chip(chip, seed, images).unwrap();
        // what `ftnas infer` does for trial `chip`, on the reference engine
        let model = sim.model();
        let faulty = model.with_weight_faults(faults.weight().unwrap(), seed, chip);
        let counter = ChangeCounter {
            inner: faults.feature().unwrap(),
            changed: Mutex::new(0),
        };
        let logits = ReferenceEngine
            .run(
                &faulty,
                images,
                0,
                Some(FeatureFaults {
                    injector: &counter,
                    seed,
                    trial: chip,
                }),
            )
            .unwrap();
        assert_eq!(outcome.logits, logits);
        let sites = sim.site_classes();
        let count = |site: &str| -> u64 {
            outcome
                .faults
                .iter()
                .filter(|f| sites[f.site] == site)
                .map(|f| f.count)
                .sum()
        };
        assert_eq!(count("feature"), *counter.changed.lock().unwrap());
        assert!(count("feature") > 0);
        let weight_changes: usize = model
            .mac_layers()
            .zip(faulty.mac_layers())
            .map(|(a, b)| {
                a.weights
                    .iter()
                    .zip(&b.weights)
                    .filter(|(x, y)| x != y)
                    .count()
            })
            .sum();
        assert_eq!(count("weight"), weight_changes as u64);
        assert!(weight_changes > 0);
        let correct = logits
            .iter()
            .zip(labels)
            .filter(|(l, &y)| argmax(l) == y as usize)
            .count();
        let record = {
            let clean = ftnas::campaign::CleanRun::new(
                FastEngine.run(model, images, 0, None).unwrap(),
                labels,
            )
            .unwrap();
            ftnas::campaign::classify_chip(chip, &clean, &outcome, 2, sim.layers().len()).unwrap()
        };
        assert_eq!(record.correct, correct as u64);
    }
}

/// Counts the codes a wrapped injector changes at both hook points (MAC
/// output and stored codes), passing the buffer-flip rates through.
struct HookCounter<'a> {
    inner: &'a dyn FeatureInjector,
    changed: Mutex<u64>,
}

impl HookCounter<'_> {
    fn add(&self, before: &[i32], after: &[i32]) {
        let n = before.iter().zip(after).filter(|(a, b)| a != b).count();
        *self.changed.lock().unwrap() += n as u64;
    }
}

impl FeatureInjector for HookCounter<'_> {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        let before = codes.to_vec();
        self.inner.inject(site, codes, rng);
        self.add(&before, codes);
    }

    fn inject_stored(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        let before = codes.to_vec();
        self.inner.inject_stored(site, codes, rng);
        self.add(&before, codes);
    }

    fn stored_flip(&self, site: &LayerSite) -> f64 {
        self.inner.stored_flip(site)
    }

    fn input_flip(&self, site: &LayerSite) -> f64 {
        self.inner.input_flip(site)
    }

    fn filter_flip(&self, site: &LayerSite) -> f64 {
        self.inner.filter_flip(site)
    }

    fn has_stuck_cells(&self, buffer: FeatureBuffer) -> bool {
        self.inner.has_stuck_cells(buffer)
    }

    fn inject_stuck(&self, site: &LayerSite, buffer: FeatureBuffer, image: u64, codes: &mut [i32]) {
        let before = codes.to_vec();
        self.inner.inject_stuck(site, buffer, image, codes);
        self.add(&before, codes);
    }
}

/// The input-buffer flips of a model alone (what `engine::layer_input`
/// draws without the stuck cells).
struct InputFlipsOnly<'a>(&'a dyn FeatureInjector);

impl FeatureInjector for InputFlipsOnly<'_> {
    fn inject(&self, _: &LayerSite, _: &mut [i32], _: &mut Xoshiro256PlusPlus) {}

    fn input_flip(&self, site: &LayerSite) -> f64 {
        self.0.input_flip(site)
    }
}

/// With SRAM-buffer flips and stuck feature-buffer cells in the fault
/// model, the chip's feature count is every code changed at the MAC-output
/// hook, among the stored codes and in each layer's own copy of its input
/// (flips counted on the engine's real layer inputs with
/// `engine::layer_input`, stuck cells where they act); its weight count is every weight code a filter-buffer flip changed for
/// an image.
#[test]
fn buffer_flips_are_counted_as_feature_and_weight_faults() {
    let model = tiny_model();
    let names: Vec<String> = model.mac_layers().map(|l| l.name.clone()).collect();
    let text = format!(
        "[feature]\nkind = \"mibb\"\np = 1e-3\n\
         [[layer]]\nname = \"{}\"\nstored_flip = 3e-3\n\
         [[layer]]\nname = \"{}\"\ninput_flip = 4e-3\nfilter_flip = 2e-3\n\
         [stuck_cells.ifmap]\nwords = 500\np0 = 1e-3\np1 = 1e-3\n\
         [stuck_cells.ofmap]\nwords = 700\np1 = 2e-3\n",
        names[0], names[1]
    );
    let faults = ftnas::fault::FaultModel::parse_str(&text, "buffers.toml").unwrap();
    let sim = engine_chip(faults.clone());
    let (images, _) = first_images(IMAGES);
    let (seed, chip) = (5, 2);
    let outcome = sim.run_chip(chip, seed, images).unwrap();
    let counter = HookCounter {
        inner: faults.feature().unwrap(),
        changed: Mutex::new(0),
    };
    let ff = FeatureFaults {
        injector: &counter,
        seed,
        trial: chip,
    };
    let n = model.input_shape().numel();
    let mut input_changes = 0u64;
    let mut weight_changes = 0u64;
    let mut scratch = Vec::new();
    for i in 0..IMAGES {
        let img = &images[i * n..(i + 1) * n];
        let codes = ftnas::engine::reference::run_image_all(&model, img, i as u64, Some(ff));
        assert_eq!(codes.last(), Some(&outcome.logits[i]));
        for node in &model.nodes {
            if let ftnas::quant::QOp::Mac(l) = &node.op {
                let input = &codes[node.inputs[0]];
                let flips = FeatureFaults {
                    injector: &InputFlipsOnly(faults.feature().unwrap()),
                    ..ff
                };
                let seen =
                    ftnas::engine::layer_input(l, input, i as u64, Some(flips), &mut scratch);
                input_changes += input.iter().zip(seen).filter(|(a, b)| a != b).count() as u64;
                let flipped = ftnas::engine::layer_with_filter_flips(l, i as u64, Some(ff));
                if let Some(f) = flipped {
                    let diff = l.weights.iter().zip(&f.weights).filter(|(a, b)| a != b);
                    weight_changes += diff.count() as u64;
                }
            }
        }
    }
    let feature: u64 = outcome
        .faults
        .iter()
        .filter(|f| sim.site_classes()[f.site] == "feature")
        .map(|f| f.count)
        .sum();
    let weight: u64 = outcome
        .faults
        .iter()
        .filter(|f| sim.site_classes()[f.site] == "weight")
        .map(|f| f.count)
        .sum();
    let hooks = *counter.changed.lock().unwrap();
    assert!(input_changes > 0 && hooks > 0, "{input_changes} {hooks}");
    assert_eq!(feature, hooks + input_changes);
    assert!(weight_changes > 0);
    assert_eq!(weight, weight_changes);
}
