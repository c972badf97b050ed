//! `ftnas study` end to end on a tiny model and real Fashion-MNIST images:
//! the trained models of a folder are found, the report files are written,
//! its timing is `ftnas sim`'s and its derived fault model `ftnas derive`'s
//! (same inputs, same numbers), the hardware-level and the derived figures
//! coincide where no fault can occur, bit-serial designs get timing with
//! their real per-layer precisions, and bad inputs are clear errors.

mod common;

use std::path::Path;

use common::{failed_naming, init_weights, repo_file, run, s, succeeded};

/// A folder with one trained (random-weight) tiny model and one model file
/// without weights (which the study must skip).
fn models_dir(dir: &Path) {
    let model = dir.join("tiny.toml");
    std::fs::write(&model, "family = \"vgg\"\nchannels = [[4], [8]]\n").unwrap();
    init_weights(&model, "1x28x28", 3, &dir.join("tiny.safetensors"));
    std::fs::write(
        dir.join("untrained.toml"),
        "family = \"resnet\"\ndepth = 20\n",
    )
    .unwrap();
}

fn study(models_dir: &Path, accel: &str, rates: &str, out: &Path) -> std::process::Output {
    study_under(
        models_dir,
        accel,
        "accelerators/faults/pe_registers.toml",
        rates,
        out,
    )
}

fn study_under(
    models_dir: &Path,
    accel: &str,
    faults: &str,
    rates: &str,
    out: &Path,
) -> std::process::Output {
    run([
        "study",
        "--accel",
        s(&repo_file(accel)),
        "--faults",
        s(&repo_file(faults)),
        "--models-dir",
        s(models_dir),
        "--images",
        "40",
        "--hw-images",
        "10",
        "--chips",
        "2",
        "--rates",
        rates,
        "--calib",
        "16",
        "--out",
        s(out),
    ])
}

/// The lines of a fault-model file without its free-text description.
fn without_description(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("description"))
        .map(String::from)
        .collect()
}

#[test]
fn study_reports_timing_derivation_and_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    models_dir(&models);
    let out = dir.path().join("out");
    let stdout = succeeded(&study(
        &models,
        "accelerators/edge_16x16_os.toml",
        "0,1e-5",
        &out,
    ));
    assert!(
        stdout.contains("tiny") && !stdout.contains("untrained"),
        "{stdout}"
    );
    for f in [
        "study.md",
        "summary.csv",
        "sweep.csv",
        "accuracy.svg",
        "timing-tiny.csv",
        "tiny.fault-model.toml",
        "tiny.derived.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Timing: exactly `ftnas sim`'s per-layer CSV.
    let sim = dir.path().join("sim");
    succeeded(&run([
        "sim",
        "--accel",
        s(&repo_file("accelerators/edge_16x16_os.toml")),
        "--model",
        s(&models.join("tiny.toml")),
        "--csv",
        s(&sim),
    ]));
    assert_eq!(
        std::fs::read_to_string(sim.join("timing.csv")).unwrap(),
        std::fs::read_to_string(out.join("timing-tiny.csv")).unwrap()
    );
    // Derived model: exactly `ftnas derive`'s for the same inputs.
    let fm = dir.path().join("derived.toml");
    succeeded(&run([
        "derive",
        "--accel",
        s(&repo_file("accelerators/edge_16x16_os.toml")),
        "--model",
        s(&models.join("tiny.toml")),
        "--weights",
        s(&models.join("tiny.safetensors")),
        "--faults",
        s(&repo_file("accelerators/faults/pe_registers.toml")),
        "--calib",
        "16",
        "--out",
        s(&fm),
    ]));
    assert_eq!(
        without_description(&fm),
        without_description(&out.join("tiny.fault-model.toml"))
    );
    // At rate 0 nothing can happen on either side: both equal the clean
    // accuracy of the cross-check images, with zero spread.
    let sweep = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let rows: Vec<Vec<&str>> = sweep
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{sweep}");
    let zero = &rows[0];
    assert_eq!(zero[1], "0e0");
    assert_eq!(zero[3], zero[5], "{sweep}");
    assert_eq!(zero[4], format!("{0}..{0}", zero[3]), "{sweep}");
    assert_eq!(zero[7], "yes");
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(
        md.contains("## tiny") && md.contains("accuracy.svg"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("accuracy.svg")).unwrap();
    assert!(svg.contains("tiny hardware-level") && svg.contains("tiny derived model"));
}

/// Stripes (per-layer precision) and Loom (run-time precision detection)
/// get the whole study under SIP-register upsets; a PE-register spec on a
/// bit-serial design is an error naming the sites.
#[test]
fn study_on_bit_serial_designs() {
    let dir = tempfile::tempdir().unwrap();
    models_dir(dir.path());
    let out = dir.path().join("out");
    let sip = "accelerators/faults/sip_registers.toml";
    let stdout = succeeded(&study_under(
        dir.path(),
        "accelerators/stripes.toml",
        sip,
        "1e-6",
        &out,
    ));
    assert!(stdout.contains("per-layer precisions"), "{stdout}");
    assert!(
        stdout.contains("sweep of the raw register flip rate"),
        "{stdout}"
    );
    assert!(out.join("timing-tiny.csv").is_file());
    let fm = std::fs::read_to_string(out.join("tiny.fault-model.toml")).unwrap();
    assert!(fm.contains("output_hit"), "{fm}");
    let loom = dir.path().join("loom");
    let stdout = succeeded(&study_under(
        dir.path(),
        "accelerators/loom.toml",
        sip,
        "1e-6",
        &loom,
    ));
    assert!(
        stdout.contains("sweep of the raw register flip rate"),
        "{stdout}"
    );
    assert!(loom.join("tiny.fault-model.toml").is_file());
    failed_naming(
        &study(
            dir.path(),
            "accelerators/stripes.toml",
            "1e-6",
            &dir.path().join("pe"),
        ),
        &["pe_registers.toml", "no such site", "sip.psum_reg"],
    );
    // Real precisions are at most the 16-bit datapath, so Stripes is
    // faster than at full precision (`ftnas sim` without --precisions).
    let sim = dir.path().join("sim");
    succeeded(&run([
        "sim",
        "--accel",
        s(&repo_file("accelerators/stripes.toml")),
        "--model",
        s(&dir.path().join("tiny.toml")),
        "--csv",
        s(&sim),
    ]));
    let cycles = |p: &Path| -> u64 {
        let text = std::fs::read_to_string(p).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "total_cycles").unwrap();
        let total = lines.find(|l| l.starts_with("TOTAL")).unwrap();
        total.split(',').nth(col).unwrap().parse::<u64>().unwrap()
    };
    let full = cycles(&sim.join("timing.csv"));
    let real = cycles(&out.join("timing-tiny.csv"));
    assert!(real < full, "real-precision cycles {real} vs full {full}");
}

#[test]
fn study_rejects_bad_inputs_clearly() {
    let dir = tempfile::tempdir().unwrap();
    models_dir(dir.path());
    let out = dir.path().join("out");
    let untrained = dir.path().join("untrained.toml");
    failed_naming(
        &run(["study", "--models", s(&untrained), "--out", s(&out)]),
        &["untrained.safetensors", "ftnas train"],
    );
    failed_naming(
        &study(dir.path(), "accelerators/edge_16x16_os.toml", "2", &out),
        &["--rates", "2"],
    );
    failed_naming(
        &study(
            dir.path(),
            "accelerators/edge_16x16_os.toml",
            "1e-9,x",
            &out,
        ),
        &["--rates", "`x`", "not a number"],
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    failed_naming(
        &run(["study", "--models-dir", s(&empty), "--out", s(&out)]),
        &["no trained model", "empty"],
    );
}

/// An aged chip on the OS array: stuck PE register bits are part of the
/// derived model (`[stuck_macs]`) and named in the report, SRAM stuck
/// cells too; `--rates ''` skips the sweep.
#[test]
fn study_of_an_aged_chip_derives_stuck_pe_bits() {
    let dir = tempfile::tempdir().unwrap();
    models_dir(dir.path());
    let out = dir.path().join("aged");
    let stdout = succeeded(&study_under(
        dir.path(),
        "accelerators/edge_16x16_os.toml",
        "accelerators/faults/aged_chip.toml",
        "",
        &out,
    ));
    assert!(!stdout.contains("sweep of the raw"), "{stdout}");
    let fm = std::fs::read_to_string(out.join("tiny.fault-model.toml")).unwrap();
    assert!(
        fm.contains("[stuck_macs]") && fm.contains("rows = 16"),
        "{fm}"
    );
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(md.contains("Stuck PE register bits of the 16x16"), "{md}");
    assert!(!md.contains("pe.psum_reg stuck-at"), "{md}");
}
