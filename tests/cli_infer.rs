//! `ftnas infer` end to end on real Fashion-MNIST images with seeded random
//! weights (trained weights arrive with the training work).

use std::process::Command;

fn ftnas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ftnas"))
}

fn init_weights(dir: &std::path::Path) -> std::path::PathBuf {
    let w = dir.join("r20.safetensors");
    let out = ftnas()
        .args(["model", "init", "models/resnet20.toml", "--seed", "3", "-o"])
        .arg(&w)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w
}

#[test]
fn infer_clean_and_faulty_writes_json_and_engines_agree() {
    let dir = tempfile::tempdir().unwrap();
    let w = init_weights(dir.path());
    let mut accs = Vec::new();
    for engine in ["fast", "reference"] {
        let json = dir.path().join(format!("{engine}.json"));
        let out = ftnas()
            .args([
                "infer",
                "--model",
                "models/resnet20.toml",
                "--images",
                "24",
                "--calib",
                "16",
            ])
            .args([
                "--trials",
                "2",
                "--feature-fault",
                "mibb:1e-2",
                "--seed",
                "7",
                "--engine",
                engine,
            ])
            .arg("--weights")
            .arg(&w)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
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
    let missing = dir.path().join("nope.safetensors");
    let out = ftnas()
        .args([
            "infer",
            "--model",
            "models/resnet20.toml",
            "--images",
            "4",
            "--weights",
        ])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.safetensors"));

    let out = ftnas()
        .args([
            "infer",
            "--model",
            "models/resnet20.toml",
            "--images",
            "4",
            "--feature-fault",
            "mibb:2",
        ])
        .arg("--weights")
        .arg(&w)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mibb"), "{err}");

    let out = ftnas()
        .args(["infer", "--model", "models/resnet20.toml", "--data"])
        .arg(dir.path().join("empty"))
        .arg("--weights")
        .arg(&w)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
