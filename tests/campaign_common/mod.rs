//! Shared helpers of the campaign tests: a tiny VGG quantized on real
//! Fashion-MNIST images, campaigns over it, file comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use ftnas::campaign::{Campaign, CampaignError, ChipOutcome, ChipSimulator, EngineChip, InputFile};
use ftnas::data::{self, Dataset, Split};
use ftnas::fault::FaultModel;
use ftnas::fixed::Datapath;
use ftnas::model::file::parse_model;
use ftnas::model::Weights;
use ftnas::quant::{self, QModel};

/// A 2-stage VGG small enough for fast tests (28x28 -> 14 -> 7).
pub const TINY_VGG: &str = "family = \"vgg\"\nchannels = [[6], [8]]\nnum_classes = 10\n";

pub fn fashion_test() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| data::load(None, Split::Test).expect("Fashion-MNIST test split"))
}

/// The tiny VGG with seeded random weights, calibrated on 32 test images.
pub fn tiny_model() -> QModel {
    let test = fashion_test();
    let graph = parse_model(TINY_VGG).unwrap().build(test.shape).unwrap();
    let weights = Weights::random(&graph, 5);
    let calib = &test.images[9000 * test.shape.numel()..9032 * test.shape.numel()];
    quant::quantize(&graph, &weights, Datapath::default(), calib).unwrap()
}

/// Feature faults (MiBB) plus persistent stuck-at weight faults.
pub fn mixed_faults() -> FaultModel {
    FaultModel::parse_feature_flag("mibb:2e-3")
        .unwrap()
        .merge(FaultModel::parse_weight_flag("sa:2e-3").unwrap())
        .unwrap()
}

pub fn engine_chip(faults: FaultModel) -> EngineChip {
    EngineChip::new(tiny_model(), faults)
}

/// The first `n` test images and labels.
pub fn first_images(n: usize) -> (&'static [f32], &'static [u8]) {
    let d = fashion_test();
    (&d.images[..n * d.shape.numel()], &d.labels[..n])
}

pub fn campaign<'a, S: ChipSimulator + ?Sized>(
    sim: &'a S,
    images: usize,
    chips: u64,
    seed: u64,
) -> Campaign<'a, S> {
    let (px, labels) = first_images(images);
    let mut c = Campaign::new(sim, px, labels, "fashion-mnist", chips, seed);
    c.config.inputs.push(InputFile::from_bytes(
        "model",
        "tiny-vgg.toml",
        TINY_VGG.as_bytes(),
    ));
    c
}

/// The files a campaign directory holds.
pub const FILES: [&str; 5] = [
    "campaign.json",
    "journal.jsonl",
    "summary.json",
    "chips.csv",
    "vulnerability.csv",
];

/// Assert that every campaign file of `a` and `b` is byte-identical.
pub fn assert_same_files(a: &Path, b: &Path) {
    for f in FILES {
        let x = std::fs::read(a.join(f)).unwrap_or_else(|e| panic!("{}: {e}", a.join(f).display()));
        let y = std::fs::read(b.join(f)).unwrap_or_else(|e| panic!("{}: {e}", b.join(f).display()));
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

pub fn dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Counts `run_chip` calls of the simulator it wraps.
pub struct Counting<S> {
    pub inner: S,
    pub calls: AtomicUsize,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Counting {
            inner,
            calls: AtomicUsize::new(0),
        }
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<S: ChipSimulator> ChipSimulator for Counting<S> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn site_classes(&self) -> Vec<String> {
        self.inner.site_classes()
    }
    fn layers(&self) -> Vec<String> {
        self.inner.layers()
    }
    fn clean_logits(&self, images: &[f32]) -> Result<Vec<Vec<i32>>, CampaignError> {
        self.inner.clean_logits(images)
    }
    fn run_chip(&self, chip: u64, seed: u64, images: &[f32]) -> Result<ChipOutcome, CampaignError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.run_chip(chip, seed, images)
    }
}
