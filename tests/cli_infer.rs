//! `ftnas infer` end to end on real Fashion-MNIST images with seeded random
//! weights (trained weights arrive with the training work).

mod common;

use std::path::{Path, PathBuf};

use common::{failed_naming, run, s, succeeded};

fn init_weights(dir: &Path) -> PathBuf {
    let w = dir.join("r20.safetensors");
    common::init_weights(Path::new("models/resnet20.toml"), "1x28x28", 3, &w);
    w
}

#[test]
fn infer_clean_and_faulty_writes_json_and_engines_agree() {
    let dir = tempfile::tempdir().unwrap();
    let w = init_weights(dir.path());
    let mut accs = Vec::new();
    for engine in ["fast", "reference"] {
        let json = dir.path().join(format!("{engine}.json"));
        let stdout = succeeded(&run([
            "infer",
            "--model",
            "models/resnet20.toml",
            "--images",
            "24",
            "--calib",
            "16",
            "--trials",
            "2",
            "--feature-fault",
            "mibb:1e-2",
            "--seed",
            "7",
            "--engine",
            engine,
            "--weights",
            s(&w),
            "--json",
            s(&json),
        ]));
        assert!(stdout.contains("clean accuracy"), "{stdout}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["images"], 24);
        assert_eq!(v["fault"]["trials"], 2);
        assert_eq!(v["fault"]["accuracies"].as_array().unwrap().len(), 2);
        accs.push((
            v["clean_accuracy"].clone(),
            v["fault"]["accuracies"].clone(),
        ));
    }
    // One arithmetic, one fault stream: the two engines give the same numbers.
    assert_eq!(accs[0], accs[1]);
}

#[test]
fn infer_bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = init_weights(dir.path());
    let infer = ["infer", "--model", "models/resnet20.toml"];
    let missing = dir.path().join("nope.safetensors");
    failed_naming(
        &run(infer
            .iter()
            .chain(&["--images", "4", "--weights", s(&missing)])),
        &["nope.safetensors"],
    );
    failed_naming(
        &run(infer.iter().chain(&[
            "--images",
            "4",
            "--feature-fault",
            "mibb:2",
            "--weights",
            s(&w),
        ])),
        &["mibb"],
    );
    let empty = dir.path().join("empty");
    failed_naming(
        &run(infer
            .iter()
            .chain(&["--data", s(&empty), "--weights", s(&w)])),
        &[],
    );
}
