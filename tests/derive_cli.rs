//! `ftnas derive` end to end: a derived fault model is written, loads as a
//! fault-model file, and drives `ftnas infer`; bad inputs are clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{failed_naming, init_weights, repo_file, run, s, succeeded};
use ftnas::accel::Accelerator;
use ftnas::fault::spec::FeatureFault;
use ftnas::fault::{FaultModel, ShareUnit, SharedStuck};

const SPEC: &str = r#"
[sites."pe.psum_reg"]
transient_per_bit_cycle = 1e-7
[sites."pe.mult_out"]
transient_per_bit_cycle = 1e-7
[sites."sram.ifmap"]
fit_per_mbit = 1000.0
[sites."sram.filter"]
fit_per_mbit = 1000.0
"#;

/// A tiny VGG (`channels`) with seeded random weights in `dir`.
fn tiny_vgg(dir: &Path, channels: &str, seed: u64) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny.toml");
    std::fs::write(&model, format!("family = \"vgg\"\nchannels = {channels}\n")).unwrap();
    let weights = dir.join("tiny.safetensors");
    init_weights(&model, "1x28x28", seed, &weights);
    (model, weights)
}

/// `ftnas derive` of `model`/`weights` on `accel` under `faults` into
/// `out` (16 calibration images, 2 statistics images), plus `extra` flags.
fn derive(
    accel: &Path,
    model: &Path,
    weights: &Path,
    faults: &Path,
    out: &Path,
    extra: &[&str],
) -> Output {
    let mut args: Vec<&str> = vec![
        "derive",
        "--accel",
        s(accel),
        "--model",
        s(model),
        "--weights",
        s(weights),
        "--faults",
        s(faults),
        "--calib",
        "16",
        "--images",
        "2",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    run(args)
}

#[test]
fn derive_writes_a_fault_model_that_infer_uses() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = tiny_vgg(dir.path(), "[[4], [8]]", 3);
    let spec = dir.path().join("seu.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let fm = dir.path().join("out/derived.toml");
    let out = derive(
        &repo_file("accelerators/edge_16x16_os.toml"),
        &model,
        &weights,
        &spec,
        &fm,
        &[],
    );
    let stdout = succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // ifmap and filter SRAM upsets are derived (nothing left out)
    assert!(!stderr.contains("sram."), "{stderr}");
    assert!(
        stdout.contains("p_out")
            && stdout.contains("mu_psum")
            && stdout.contains("input_flip")
            && stdout.contains("filter_flip"),
        "{stdout}"
    );
    let loaded = FaultModel::load(&fm).unwrap();
    let layers = &loaded.spec().layers;
    assert!(layers.len() >= 3, "one entry per conv/linear layer");
    assert!(layers
        .iter()
        .all(|l| l.input_flip > 0.0 && l.filter_flip > 0.0 && l.stored_flip == 0.0));
    let text = std::fs::read_to_string(&fm).unwrap();
    assert!(text.contains("kind = \"output_hit\""), "{text}");
    let csv = std::fs::read_to_string(fm.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), layers.len() + 1);

    let infer = run([
        "infer",
        "--model",
        s(&model),
        "--weights",
        s(&weights),
        "--fault-model",
        s(&fm),
        "--images",
        "16",
        "--calib",
        "16",
    ]);
    succeeded(&infer);
}

/// Stuck cells that hold weights become per-layer `stuck_at` weight
/// faults: on a WS array from the filter SRAM and the PE weight registers
/// (`p0 = r0 + (1 - r0 - r1) s0`), on an OS array from the SRAM only (the
/// moving weight register becomes stuck MAC-unit bits, `[stuck_macs]`).
#[test]
fn derive_turns_stuck_weight_cells_into_weight_faults() {
    use ftnas::fault::stuck_at::PerBit;
    use ftnas::fault::WeightFault;
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = tiny_vgg(dir.path(), "[[4], [8]]", 3);
    let spec = repo_file("accelerators/faults/stuck_weight_cells.toml");
    for (accel, independent) in [
        ("accelerators/eyeriss.toml", false),
        ("accelerators/eyeriss.toml", true),
        ("accelerators/edge_16x16_os.toml", false),
    ] {
        let fm = dir.path().join("stuck.toml");
        let extra: &[&str] = if independent {
            &["--independent-weights"]
        } else {
            &[]
        };
        let out = derive(&repo_file(accel), &model, &weights, &spec, &fm, extra);
        let stdout = succeeded(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("p_stuck0"), "{stdout}");
        let os = accel.contains("_os");
        assert!(!stderr.contains("pe.weight_reg"), "{accel}: {stderr}");
        let sys = Accelerator::load(&repo_file(accel))
            .unwrap()
            .systolic
            .unwrap();
        // WS: the SRAM's bits per weight, the PE registers' shared by the
        // weights each holds (or folded into the per-weight rate with
        // --independent-weights); OS: the SRAM's only.
        let (want, want_shared) = match (os, independent) {
            (true, _) => (5e-4, None),
            (false, true) => (5e-4 + (1.0 - 1e-3) * 5e-4, None),
            (false, false) => (
                5e-4,
                Some(SharedStuck {
                    p0: 5e-4,
                    p1: 5e-4,
                    filters: sys.cols,
                    reduction: sys.rows,
                    per: ShareUnit::Term,
                }),
            ),
        };
        let loaded = FaultModel::load(&fm).unwrap();
        match loaded.spec().stuck_macs {
            Some(m) if os => {
                let w = m.of(ftnas::fault::MacRegister::Weight);
                assert_eq!(
                    (w.p0, w.p1, m.rows, m.cols),
                    (5e-4, 5e-4, sys.rows, sys.cols)
                );
                assert!(
                    stdout.contains("stuck PE register bits (16x16 OS array"),
                    "{stdout}"
                );
            }
            other => assert!(other.is_none() && !os, "{accel}: {other:?}"),
        }
        let layers = &loaded.spec().layers;
        assert!(layers.len() >= 3);
        for l in layers {
            match &l.weight {
                Some(WeightFault::StuckAt(m)) => {
                    for p in [&m.p0, &m.p1] {
                        let PerBit::Uniform(p) = p else {
                            panic!("{}: {p:?}", l.name)
                        };
                        assert!(
                            (p - want).abs() < 1e-12,
                            "{accel} {}: {p} vs {want}",
                            l.name
                        );
                    }
                    assert_eq!(m.shared, want_shared, "{accel} {}", l.name);
                }
                other => panic!("{accel} {}: weight {other:?}", l.name),
            }
        }
        let csv = std::fs::read_to_string(fm.with_extension("weights.csv")).unwrap();
        assert_eq!(csv.lines().count(), layers.len() + 1, "{csv}");
        assert!(csv.starts_with("layer,weights,bits,p_stuck0"), "{csv}");
    }
}

/// On a bit-serial design the SIP weight registers hold weights like a WS
/// array's PEs: stuck filter-SRAM cells and SIP weight-register bits become
/// weight faults; SIP transients become feature faults (with run-time
/// precision detection from the steps' widths on real images).
#[test]
fn derive_on_a_bit_serial_design_gives_weight_and_feature_faults() {
    use ftnas::fault::stuck_at::PerBit;
    use ftnas::fault::WeightFault;
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = tiny_vgg(dir.path(), "[[4], [8]]", 3);
    let spec = dir.path().join("bs.toml");
    std::fs::write(
        &spec,
        "[sites.\"sram.filter\"]\nstuck_at_1 = 1e-3\n[sites.\"sip.weight_reg\"]\nstuck_at_0 = 2e-3\n[sites.\"sip.act_reg\"]\ntransient_per_bit_cycle = 1e-9\n",
    )
    .unwrap();
    let fm = dir.path().join("bs-fm.toml");
    let out = derive(
        &repo_file("accelerators/stripes_a8.toml"),
        &model,
        &weights,
        &spec,
        &fm,
        &[],
    );
    let stdout = succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("sip.act_reg transient"), "{stderr}");
    assert!(
        stdout.contains("weights_per_pe_reg") && stdout.contains("mu_act"),
        "{stdout}"
    );
    let loaded = FaultModel::load(&fm).unwrap();
    let layers = &loaded.spec().layers;
    assert!(layers.len() >= 3);
    for l in layers {
        let Some(FeatureFault::OutputHit(h)) = &l.feature else {
            panic!("{}: {:?}", l.name, l.feature)
        };
        assert!(h.p_out > 0.0 && h.p_out < 1e-3, "{}: {}", l.name, h.p_out);
        let Some(WeightFault::StuckAt(m)) = &l.weight else {
            panic!("{}: {:?}", l.name, l.weight)
        };
        // the SRAM's bits per weight, the SIP registers' shared by every
        // tap of the channels and filters each holds
        assert_eq!(m.p0, PerBit::Uniform(0.0));
        assert_eq!(m.p1, PerBit::Uniform(1e-3));
        assert_eq!(
            m.shared,
            Some(SharedStuck {
                p0: 2e-3,
                p1: 0.0,
                filters: 16 * 16,
                reduction: 16,
                per: ShareUnit::Channel,
            })
        );
    }
    // The i.i.d. form: p0 = r0 + (1 - r0 - r1) s0 = 2e-3, p1 = (1 - 2e-3) * 1e-3.
    let out = derive(
        &repo_file("accelerators/stripes_a8.toml"),
        &model,
        &weights,
        &spec,
        &fm,
        &["--independent-weights"],
    );
    succeeded(&out);
    for l in &FaultModel::load(&fm).unwrap().spec().layers {
        let Some(WeightFault::StuckAt(m)) = &l.weight else {
            panic!("{}: {:?}", l.name, l.weight)
        };
        assert_eq!(m.p0, PerBit::Uniform(2e-3));
        let PerBit::Uniform(p1) = m.p1 else { panic!() };
        assert!((p1 - 0.998e-3).abs() < 1e-15, "{p1}");
        assert_eq!(m.shared, None);
    }
    assert!(fm.with_extension("csv").exists(), "the feature table");
    // Loom detects precision at run time: its steps' widths come from the
    // images, and its transients are derived too.
    let out = derive(
        &repo_file("accelerators/loom.toml"),
        &model,
        &weights,
        &spec,
        &fm,
        &[],
    );
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("sip.act_reg transient"), "{stderr}");
    for l in &FaultModel::load(&fm).unwrap().spec().layers {
        assert!(
            matches!(&l.feature, Some(FeatureFault::OutputHit(h)) if h.p_out > 0.0),
            "{}",
            l.name
        );
    }
}

/// The shipped aged bit-serial chip on Stripes: the SIP activation and
/// accumulator stuck bits become `[stuck_macs]` (`dataflow =
/// "bit-serial"`, the design's windows, lanes and filter rows), nothing is
/// left out, the reach table is printed; on Loom too, with serial weights
/// and run-time precision in the grid.
#[test]
fn derive_turns_stuck_sip_registers_into_stuck_macs() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = tiny_vgg(dir.path(), "[[4], [8]]", 5);
    let spec = repo_file("accelerators/faults/aged_bitserial_chip.toml");
    let fm = dir.path().join("aged-bs.toml");
    let out = derive(
        &repo_file("accelerators/stripes_a8.toml"),
        &model,
        &weights,
        &spec,
        &fm,
        &[],
    );
    let stdout = succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not part of the derived"), "{stderr}");
    assert!(
        stdout.contains("stuck SIP register bits (bit-serial design's 16 windows x 16 lanes, 256 filter rows (1 bit per cycle)"),
        "{stdout}"
    );
    let loaded = FaultModel::load(&fm).unwrap();
    let m = loaded.spec().stuck_macs.expect("[stuck_macs]");
    assert_eq!(
        m.grid,
        ftnas::fault::MacGrid::BitSerial {
            filter_rows: 256,
            bits_per_cycle: 1,
            serial_weights: false,
            run_time_precision: false,
        }
    );
    assert_eq!((m.rows, m.cols), (16, 16));
    let act = m.of(ftnas::fault::MacRegister::Act);
    let acc = m.of(ftnas::fault::MacRegister::Accumulator);
    assert_eq!((act.p0, act.p1, acc.p0, acc.p1), (5e-5, 5e-5, 0.0, 2e-5));
    let out = derive(
        &repo_file("accelerators/loom.toml"),
        &model,
        &weights,
        &spec,
        &fm,
        &[],
    );
    let stdout = succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not part of the derived"), "{stderr}");
    assert!(
        stdout.contains("(bit-serial design's 16 windows x 16 lanes, 64 filter rows (2 bits per cycle, serial weights, run-time precision)"),
        "{stdout}"
    );
    let m = FaultModel::load(&fm).unwrap().spec().stuck_macs.unwrap();
    assert_eq!(
        m.grid,
        ftnas::fault::MacGrid::BitSerial {
            filter_rows: 64,
            bits_per_cycle: 2,
            serial_weights: true,
            run_time_precision: true,
        }
    );
}

#[test]
fn derive_rejects_bad_inputs_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = tiny_vgg(dir.path(), "[[2]]", 1);
    let spec = dir.path().join("seu.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out_fm = dir.path().join("fm.toml");
    let edge = repo_file("accelerators/edge_16x16_os.toml");
    failed_naming(
        &derive(
            &repo_file("accelerators/stripes.toml"),
            &model,
            &weights,
            &spec,
            &out_fm,
            &[],
        ),
        &[
            "stripes.toml",
            "pe.psum_reg",
            "bit-serial",
            "sip.weight_reg",
        ],
    );
    failed_naming(
        &derive(
            &edge,
            &model,
            &weights,
            &dir.path().join("missing.toml"),
            &out_fm,
            &[],
        ),
        &["missing.toml"],
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[sites.\"pe.psum_reg\"]\ntransient_per_bit_cyle = 1e-9\n",
    )
    .unwrap();
    failed_naming(
        &derive(&edge, &model, &weights, &typo, &out_fm, &[]),
        &["typo.toml", "transient_per_bit_cyle"],
    );
    assert!(!out_fm.exists(), "nothing written on failure");
}
