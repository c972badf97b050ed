//! `ftnas hwrun` end to end on real Fashion-MNIST images with seeded random
//! weights: the cycle-level path's fault-free accuracy equals the engine's
//! (`ftnas infer` with the accelerator's datapath), faults are reported per
//! chip, and a bad fault file is named in the error.

use std::process::Command;

fn ftnas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ftnas"))
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hwrun_matches_infer_and_reports_chips() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("r20.safetensors");
    ok(ftnas()
        .args(["model", "init", "models/resnet20.toml", "--seed", "5", "-o"])
        .arg(&w)
        .output()
        .unwrap());
    let common = [
        "--model",
        "models/resnet20.toml",
        "--images",
        "6",
        "--calib",
        "16",
    ];
    let json = dir.path().join("hw.json");
    let stdout = ok(ftnas()
        .args(["hwrun", "--accel", "accelerators/edge_16x16_os.toml"])
        .args(common)
        .args([
            "--faults",
            "accelerators/faults/single_fault.toml",
            "--chips",
            "2",
        ])
        .arg("--weights")
        .arg(&w)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap());
    assert!(stdout.contains("cycle-level executor"), "{stdout}");
    assert!(stdout.contains("chip 1:"), "{stdout}");
    let hw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(hw["images"], 6);
    assert_eq!(hw["chips"].as_array().unwrap().len(), 2);
    // The single-fault file has one permanent fault (the stuck filter cell).
    assert_eq!(hw["chips"][0]["permanent_faults"], 1);

    // edge_16x16_os computes with a8 w8 p24 saturate.
    let ijson = dir.path().join("infer.json");
    ok(ftnas()
        .arg("infer")
        .args(common)
        .args(["--psum-bits", "24", "--overflow", "saturate"])
        .arg("--weights")
        .arg(&w)
        .arg("--json")
        .arg(&ijson)
        .output()
        .unwrap());
    let inf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ijson).unwrap()).unwrap();
    assert_eq!(hw["clean_accuracy"], inf["clean_accuracy"]);

    // The exact executor reports the same numbers.
    let ejson = dir.path().join("exact.json");
    ok(ftnas()
        .args(["hwrun", "--accel", "accelerators/edge_16x16_os.toml"])
        .args(common)
        .args([
            "--faults",
            "accelerators/faults/single_fault.toml",
            "--chips",
            "2",
        ])
        .args(["--executor", "exact"])
        .arg("--weights")
        .arg(&w)
        .arg("--json")
        .arg(&ejson)
        .output()
        .unwrap());
    let ex: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ejson).unwrap()).unwrap();
    assert_eq!(ex["executor"], "exact");
    assert_eq!(ex["chips"], hw["chips"]);
    assert_eq!(ex["clean_accuracy"], hw["clean_accuracy"]);
}

#[test]
fn hwrun_names_a_bad_fault_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[sites.\"pe.act_reg\"]\nstuck_at_0 = 2.0\n").unwrap();
    let out = ftnas()
        .args(["hwrun", "--accel", "accelerators/edge_16x16_os.toml"])
        .args(["--model", "models/resnet20.toml", "--random-weights", "1"])
        .arg("--faults")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("sites.\"pe.act_reg\".stuck_at_0"),
        "{err}"
    );
}

/// `hwrun` on the shipped Loom design (bit-serial, 16-bit datapath,
/// per-group precision) with the trained demo CNN: the fault-free accuracy
/// equals `ftnas infer`'s with the same datapath, and both executors
/// report the same chips under the SIP example spec.
#[test]
fn hwrun_runs_bit_serial_designs() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--model",
        "models/demo-cnn.toml",
        "--weights",
        "models/demo-cnn.safetensors",
        "--images",
        "2",
        "--calib",
        "16",
    ];
    let run = |executor: &str| -> serde_json::Value {
        let json = dir.path().join(format!("{executor}.json"));
        let stdout = ok(ftnas()
            .args(["hwrun", "--accel", "accelerators/loom.toml"])
            .args(common)
            .args(["--faults", "accelerators/faults/sip_registers.toml"])
            .args(["--chips", "2", "--executor", executor])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap());
        assert!(stdout.contains("bit-serial"), "{stdout}");
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
    };
    let cycle = run("cycle-level");
    let exact = run("exact");
    assert_eq!(cycle["chips"], exact["chips"]);
    assert_eq!(cycle["clean_accuracy"], exact["clean_accuracy"]);
    let ijson = dir.path().join("infer.json");
    ok(ftnas()
        .arg("infer")
        .args(common)
        .args([
            "--act-bits",
            "16",
            "--weight-bits",
            "16",
            "--psum-bits",
            "32",
        ])
        .arg("--json")
        .arg(&ijson)
        .output()
        .unwrap());
    let inf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ijson).unwrap()).unwrap();
    assert_eq!(cycle["clean_accuracy"], inf["clean_accuracy"]);
}
