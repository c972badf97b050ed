//! `ftnas model show` / `ftnas model init` through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ftnas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ftnas"))
}

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

#[test]
fn show_prints_layers_and_totals() {
    let out = ftnas()
        .args(["model", "show", "--input", "3x32x32"])
        .arg(model("resnet20.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("layer3.0.downsample.0 "))
        .expect("projection row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "layer3.0.downsample.0",
            "conv",
            "1x1/2",
            "64x8x8",
            "131072",
            "2048"
        ]
    );
    assert!(text.contains("total: 40813184 MACs"), "{text}");
    assert!(text.contains("272474 trainable"), "{text}");
}

#[test]
fn show_json_for_mnist_input() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("w.json");
    let out = ftnas()
        .args(["model", "show"])
        .arg(model("w-ftt-net.toml"))
        .args(["--input", "1x28x28", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["model"], "w-ftt-net");
    assert_eq!(v["input"], serde_json::json!([1, 28, 28]));
    let layers = v["layers"].as_array().unwrap();
    let macs: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
    assert_eq!(macs, v["total_macs"].as_u64().unwrap());
    let params: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
    assert_eq!(params, v["total_params"].as_u64().unwrap());
    let last = layers.last().unwrap();
    assert_eq!(last["name"], "classifier");
    assert_eq!(last["shape"], serde_json::json!([10, 1, 1]));
}

#[test]
fn init_writes_weights_that_show_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("vgg.safetensors");
    let out = ftnas()
        .args(["model", "init"])
        .arg(model("vgg-small.toml"))
        .args(["--input", "1x28x28", "--seed", "3", "-o"])
        .arg(&w)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ftnas()
        .args(["model", "show"])
        .arg(model("vgg-small.toml"))
        .args(["--input", "1x28x28", "--weights"])
        .arg(&w)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all 32 tensors present"));
    // the same weights do not fit the 3-channel graph
    let out = ftnas()
        .args(["model", "show"])
        .arg(model("vgg-small.toml"))
        .args(["--input", "3x32x32", "--weights"])
        .arg(&w)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stage1.0.conv.weight") && err.contains("[128, 1, 3, 3]"),
        "{err}"
    );
}

#[test]
fn bad_model_file_and_bad_input_flag_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "family = \"resnet\"\ndepth = 20\nwidth = 2\n").unwrap();
    let out = ftnas().args(["model", "show"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("width"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = ftnas()
        .args(["model", "show"])
        .arg(model("resnet20.toml"))
        .args(["--input", "32x32"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CxHxW"));
}
