//! `ftnas calibrate` end to end on a tiny model and real Fashion-MNIST
//! images: the report files are written, the cycle-level and the exact
//! hardware paths give the identical report, and bad inputs are clear
//! errors.

mod common;

use common::{failed_naming, init_weights, repo_file, run, s, succeeded};

const SPEC: &str = r#"
[sites."pe.psum_reg"]
transient_per_bit_cycle = 1e-7
[sites."pe.act_reg"]
transient_per_bit_cycle = 5e-8
[sites."pe.mult_out"]
transient_per_bit_cycle = 1e-7
"#;

fn args(model: &str, weights: &str, spec: &str, path: &str, out: &str) -> Vec<String> {
    [
        "calibrate",
        "--accel",
        s(&repo_file("accelerators/edge_16x16_os.toml")),
        "--model",
        model,
        "--weights",
        weights,
        "--faults",
        spec,
        "--rates",
        "1e-6,1e-4",
        "--images",
        "12",
        "--chips",
        "3",
        "--calib",
        "16",
        "--layer-images",
        "1",
        "--layer-trials",
        "8",
        "--executor",
        path,
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn calibrate_writes_reports_and_both_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.toml");
    std::fs::write(&model, "family = \"vgg\"\nchannels = [[4], [8]]\n").unwrap();
    let weights = dir.path().join("tiny.safetensors");
    init_weights(&model, "1x28x28", 2, &weights);
    let spec = dir.path().join("seu.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let (exact, cycle) = (dir.path().join("exact"), dir.path().join("cycle"));
    let out = succeeded(&run(args(
        s(&model),
        s(&weights),
        s(&spec),
        "exact",
        s(&exact),
    )));
    assert!(
        out.contains("derived_agrees") && out.contains("p_measured"),
        "{out}"
    );
    succeeded(&run(args(
        s(&model),
        s(&weights),
        s(&spec),
        "cycle-level",
        s(&cycle),
    )));
    for f in ["calibration.csv", "layers.csv"] {
        let a = std::fs::read_to_string(exact.join(f)).unwrap();
        let b = std::fs::read_to_string(cycle.join(f)).unwrap();
        assert_eq!(a, b, "{f}: exact and cycle-level paths differ");
    }
    let csv = std::fs::read_to_string(exact.join("calibration.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header + one row per rate");
    // Per layer: post-activation errors on the table, bit histograms (one
    // share per output bit, `;`-separated) in the CSV only.
    assert!(
        out.contains("act_err_measured") && !out.contains("bits_measured"),
        "{out}"
    );
    let layers = std::fs::read_to_string(exact.join("layers.csv")).unwrap();
    let mut lines = layers.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "bits_measured").unwrap();
    for l in lines {
        let bits = l.split(',').nth(col).unwrap();
        assert_eq!(bits.split(';').count(), 8, "{l}");
    }
    let svg = std::fs::read_to_string(exact.join("calibration.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.contains("hardware-level injection"));
    let md = std::fs::read_to_string(exact.join("calibration.md")).unwrap();
    assert!(md.contains("agrees with hardware-level injection"));
}

#[test]
fn calibrate_rejects_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.toml");
    std::fs::write(&model, "family = \"vgg\"\nchannels = [[2]]\n").unwrap();
    let weights = dir.path().join("tiny.safetensors");
    init_weights(&model, "1x28x28", 1, &weights);
    let out = dir.path().join("out");
    let sram_only = dir.path().join("sram.toml");
    std::fs::write(&sram_only, "[sites.\"sram.ifmap\"]\nfit_per_mbit = 100.0\n").unwrap();
    failed_naming(
        &run(args(
            s(&model),
            s(&weights),
            s(&sram_only),
            "exact",
            s(&out),
        )),
        &["sram.toml", "no PE transient rate"],
    );
    let spec = dir.path().join("seu.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let mut bad_rate = args(s(&model), s(&weights), s(&spec), "exact", s(&out));
    let i = bad_rate.iter().position(|a| a == "1e-6,1e-4").unwrap();
    bad_rate[i] = "1e-6,2".into();
    failed_naming(&run(bad_rate), &["--rates"]);
    assert!(!out.exists());
}
