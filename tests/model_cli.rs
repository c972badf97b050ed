//! `ftnas model show` / `init` / `convert` through the real binary.

mod common;

use std::path::PathBuf;

use common::{failed_naming, run, s, succeeded};

fn model(name: &str) -> PathBuf {
    common::repo_file(&format!("models/{name}"))
}

#[test]
fn show_prints_layers_and_totals() {
    let m = model("resnet20.toml");
    let text = succeeded(&run(["model", "show", "--input", "3x32x32", s(&m)]));
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
    let m = model("w-ftt-net.toml");
    succeeded(&run([
        "model",
        "show",
        s(&m),
        "--input",
        "1x28x28",
        "--json",
        s(&json),
    ]));
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
    let vgg = model("vgg-small.toml");
    common::init_weights(&vgg, "1x28x28", 3, &w);
    let shown = succeeded(&run([
        "model",
        "show",
        s(&vgg),
        "--input",
        "1x28x28",
        "--weights",
        s(&w),
    ]));
    assert!(shown.contains("all 32 tensors present"));
    // the same weights do not fit the 3-channel graph
    failed_naming(
        &run([
            "model",
            "show",
            s(&vgg),
            "--input",
            "3x32x32",
            "--weights",
            s(&w),
        ]),
        &["stage1.0.conv.weight", "[128, 1, 3, 3]"],
    );
}

#[test]
fn convert_to_f16_halves_the_file_and_show_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (w16, w32) = (
        dir.path().join("h.safetensors"),
        dir.path().join("f.safetensors"),
    );
    let demo = model("demo-cnn.toml");
    let shipped = model("demo-cnn.safetensors");
    let args = |w: &PathBuf, dtype: &'static str| {
        run([
            "model",
            "convert",
            s(&demo),
            "--weights",
            s(&shipped),
            "--dtype",
            dtype,
            "-o",
            s(w),
        ])
    };
    assert!(succeeded(&args(&w16, "f16")).contains("as F16"));
    // f16 back to f32 keeps the f16 values: the same size as the original
    let back = run([
        "model",
        "convert",
        s(&demo),
        "--weights",
        s(&w16),
        "--dtype",
        "f32",
        "-o",
        s(&w32),
    ]);
    succeeded(&back);
    let size = |p: &PathBuf| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&w16) * 10 < size(&shipped) * 6,
        "{} vs {}",
        size(&w16),
        size(&shipped)
    );
    assert!(size(&w32).abs_diff(size(&shipped)) < 256);
    let shown = succeeded(&run(["model", "show", s(&demo), "--weights", s(&w16)]));
    assert!(shown.contains("tensors present"), "{shown}");
    failed_naming(&args(&w16, "f8"), &["f8", "f16"]);
}

#[test]
fn bad_model_file_and_bad_input_flag_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "family = \"resnet\"\ndepth = 20\nwidth = 2\n").unwrap();
    failed_naming(
        &run(["model", "show", s(&bad)]),
        &["bad.toml", "line 3", "width"],
    );
    let m = model("resnet20.toml");
    failed_naming(
        &run(["model", "show", s(&m), "--input", "32x32"]),
        &["CxHxW"],
    );
}
