//! Hardware campaigns ([`HwChip`]: the cycle-level systolic model under a
//! fault spec) through the same runner: independent of threads, shards
//! merge to the unsharded result, an explicit fault is recorded in its
//! layer.

mod campaign_common;

use campaign_common::*;
use ftnas::accel::Accelerator;
use ftnas::campaign::{merge_shards, run_campaign, ChipSimulator, HwChip, RunOptions, Shard};
use ftnas::hwsim::{HwFaultSpec, HwNetwork};

fn hw_chip(spec: &str) -> HwChip {
    let accel = Accelerator::load(std::path::Path::new("accelerators/edge_16x16_os.toml")).unwrap();
    // quantize for the accelerator's datapath
    let test = fashion_test();
    let graph = ftnas::model::file::parse_model(TINY_VGG)
        .unwrap()
        .build(test.shape)
        .unwrap();
    let weights = ftnas::model::Weights::random(&graph, 5);
    let calib = &test.images[9000 * test.shape.numel()..9032 * test.shape.numel()];
    let q = ftnas::quant::quantize(&graph, &weights, accel.datapath, calib).unwrap();
    let net = HwNetwork::new(&accel, &q).unwrap();
    let spec = HwFaultSpec::parse(spec, std::path::Path::new("test-spec.toml")).unwrap();
    HwChip::new(net, spec).unwrap()
}

const AGED: &str = "[sites.\"sram.filter\"]\nstuck_at_0 = 2e-4\nstuck_at_1 = 2e-4\n\
[sites.\"pe.psum_reg\"]\ntransient_per_bit_cycle = 2e-7\n";

#[test]
fn hardware_campaign_is_thread_and_shard_independent() {
    let root = tempfile::tempdir().unwrap();
    let sim = hw_chip(AGED);
    let c = campaign(&sim, 6, 4, 2);
    let whole = root.path().join("whole");
    let one = root.path().join("one");
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run_campaign(&c, &RunOptions::default(), &one))
        .unwrap();
    let r = run_campaign(&c, &RunOptions::default(), &whole).unwrap();
    assert!(r.mean_faults_per_chip > 0.0);
    assert_same_files(&one, &whole);
    let shards: Vec<_> = (0..3)
        .map(|i| {
            let d = root.path().join(format!("s{i}"));
            let opts = RunOptions {
                shard: Shard::new(i, 3).unwrap(),
                progress: false,
            };
            run_campaign(&c, &opts, &d).unwrap();
            d
        })
        .collect();
    let merged = root.path().join("merged");
    merge_shards(&shards, &merged).unwrap();
    assert_same_files(&whole, &merged);
}

#[test]
fn an_explicit_fault_is_recorded_at_its_site_and_layer() {
    // a stuck psum bit in PE (0,0) during layer 1 only, in every image
    let spec =
        "[[fault]]\nsite = \"pe.psum_reg\"\nrow = 0\ncol = 0\nbit = 20\nlayer = 1\nstuck_at = 1\n";
    let sim = hw_chip(spec);
    let (images, _) = first_images(3);
    let out = sim.run_chip(0, 0, images).unwrap();
    assert_eq!(out.faults.len(), 1, "{:?}", out.faults);
    let f = out.faults[0];
    assert_eq!(sim.site_classes()[f.site], "pe.psum_reg");
    assert_eq!(f.layer, 1);
    assert_eq!(f.scope, ftnas::campaign::FaultScope::Chip);
    assert_eq!(f.count, 1);
}
