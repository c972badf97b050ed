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

/// [`SPEC`] with SRAM-buffer upsets: the filter buffer the strongest site.
fn sram_spec() -> String {
    format!(
        "{SPEC}[sites.\"sram.filter\"]\ntransient_per_bit_cycle = 2e-7\n\
         [sites.\"sram.ofmap\"]\ntransient_per_bit_cycle = 1e-7\n"
    )
}

fn args(model: &str, weights: &str, spec: &str, path: &str, out: &str) -> Vec<String> {
    args_on(
        s(&repo_file("accelerators/edge_16x16_os.toml")),
        model,
        weights,
        spec,
        path,
        out,
    )
}

fn args_on(
    accel: &str,
    model: &str,
    weights: &str,
    spec: &str,
    path: &str,
    out: &str,
) -> Vec<String> {
    [
        "calibrate",
        "--accel",
        accel,
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
    std::fs::write(&spec, sram_spec()).unwrap();
    let (exact, cycle) = (dir.path().join("exact"), dir.path().join("cycle"));
    let run_exact = run(args(s(&model), s(&weights), s(&spec), "exact", s(&exact)));
    // the SRAM upsets are part of the sweep, not left out
    let stderr = String::from_utf8_lossy(&run_exact.stderr).to_string();
    assert!(!stderr.contains("sram."), "{stderr}");
    let out = succeeded(&run_exact);
    let md = std::fs::read_to_string(exact.join("calibration.md")).unwrap();
    assert!(
        md.contains("SRAM ifmap 0.000, filter 1.000, ofmap 0.500"),
        "{md}"
    );
    // the same run without the SRAM sites: fewer flips per image at each
    // rate (with them the rate is the filter buffer's and the registers
    // run at half of it, but the buffers hold far more bits)
    let regs_only = dir.path().join("regs.toml");
    std::fs::write(&regs_only, SPEC).unwrap();
    let plain = dir.path().join("plain");
    succeeded(&run(args(
        s(&model),
        s(&weights),
        s(&regs_only),
        "exact",
        s(&plain),
    )));
    let flips = |dir: &std::path::Path| -> Vec<f64> {
        let csv = std::fs::read_to_string(dir.join("calibration.csv")).unwrap();
        let col = header_col(&csv, "flips_per_image");
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
            .collect()
    };
    for (with, without) in flips(&exact).into_iter().zip(flips(&plain)) {
        assert!(with > without, "{with} vs {without}");
    }
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
    // the mean error's standard error over the runs, beside it
    let se_col = header.iter().position(|h| *h == "err_se").unwrap();
    assert_eq!(header[se_col - 1], "err_measured");
    assert_eq!(header[se_col - 2], "err_derived");
    for l in lines {
        let cell = |c: usize| -> f64 { l.split(',').nth(c).unwrap().parse().unwrap() };
        let bits = l.split(',').nth(col).unwrap();
        assert_eq!(bits.split(';').count(), 8, "{l}");
        let se = cell(se_col);
        assert!(se.is_finite() && se >= 0.0, "{l}");
        // The derived error per hit is the derived hits' realized error on
        // the same clean codes, comparable with the measured one: within
        // three standard errors and a fifth.
        let (derived, measured) = (cell(se_col - 2), cell(se_col - 1));
        assert!(
            (derived - measured).abs() <= 3.0 * se + 0.2 * measured,
            "{l}"
        );
    }
    let svg = std::fs::read_to_string(exact.join("calibration.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.contains("hardware-level injection"));
    let md = std::fs::read_to_string(exact.join("calibration.md")).unwrap();
    assert!(md.contains("agrees with hardware-level injection"));
}

/// A small Stripes-like design (2 tiles of 4 windows x 4 filters, 4 lanes,
/// one activation bit per cycle, per-layer precision).
const SMALL_STRIPES: &str = r#"
name = "small-stripes"
clock_mhz = 500.0
kind = "bit-serial"
[bitserial]
tiles = 2
windows = 4
filters = 4
lanes = 4
serial = "activations"
bits_per_cycle = 1
precision = "per-layer"
[datapath]
act_bits = 8
weight_bits = 8
psum_bits = 32
[buffers]
ifmap_kib = 64
filter_kib = 64
ofmap_kib = 64
word_bytes = 1
[dram]
bandwidth = "calc"
"#;

const SIP_SPEC: &str = r#"
[sites."sip.act_reg"]
transient_per_bit_cycle = 1e-7
[sites."sip.weight_reg"]
transient_per_bit_cycle = 1e-7
[sites."sip.psum_reg"]
transient_per_bit_cycle = 1e-7
"#;

/// On a bit-serial design: SIP-register flips on both sides, the exact
/// and cycle-level paths identical, the per-layer hit rates measured on
/// the SIPs close to the derived ones, and the derived model agreeing with
/// hardware injection where the flips are few.
#[test]
fn calibrate_on_a_bit_serial_design() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.toml");
    std::fs::write(&model, "family = \"vgg\"\nchannels = [[4], [8]]\n").unwrap();
    let weights = dir.path().join("tiny.safetensors");
    init_weights(&model, "1x28x28", 2, &weights);
    let accel = dir.path().join("small-stripes.toml");
    std::fs::write(&accel, SMALL_STRIPES).unwrap();
    let spec = dir.path().join("sip.toml");
    std::fs::write(&spec, SIP_SPEC).unwrap();
    let (exact, cycle) = (dir.path().join("exact"), dir.path().join("cycle"));
    let mut a = args_on(
        s(&accel),
        s(&model),
        s(&weights),
        s(&spec),
        "exact",
        s(&exact),
    );
    let i = a.iter().position(|x| x == "1e-6,1e-4").unwrap();
    a[i] = "1e-7,1e-5".into();
    let j = a.iter().position(|x| x == "--layer-trials").unwrap();
    a[j + 1] = "40".into();
    succeeded(&run(a.clone()));
    let mut c = a.clone();
    let p = c.iter().position(|x| x == "exact").unwrap();
    c[p] = "cycle-level".into();
    let o = c.iter().position(|x| x == s(&exact)).unwrap();
    c[o] = s(&cycle).into();
    succeeded(&run(c));
    for f in ["calibration.csv", "layers.csv"] {
        let x = std::fs::read_to_string(exact.join(f)).unwrap();
        let y = std::fs::read_to_string(cycle.join(f)).unwrap();
        assert_eq!(x, y, "{f}: exact and cycle-level paths differ");
    }
    let md = std::fs::read_to_string(exact.join("calibration.md")).unwrap();
    assert!(
        md.contains("SIP site ratios") && md.contains("small-stripes"),
        "{md}"
    );
    // Per layer, the measured hit rate is within four standard errors of
    // the derived one (40 trials at about four flips each).
    let layers = std::fs::read_to_string(exact.join("layers.csv")).unwrap();
    let mut lines = layers.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (pd, pm, se) = (col("p_derived"), col("p_measured"), col("se"));
    let mut checked = 0;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let num = |i: usize| f[i].parse::<f64>().unwrap();
        let (d, m, e) = (num(pd), num(pm), num(se));
        assert!(d > 0.0 && m > 0.0, "{l}");
        assert!((d - m).abs() <= 4.0 * e + 0.1 * d, "{l}");
        checked += 1;
    }
    assert!(checked >= 3);
    // The lighter rate: few flips per image, both sides near clean. On 12
    // images of an untrained net one changed prediction moves a mean by
    // 8 pp, so the check is that the two sides do not disagree: the derived
    // model agrees (its mean inside the hardware interval), or the hardware
    // mean lies inside the derived model's interval.
    let csv = std::fs::read_to_string(exact.join("calibration.csv")).unwrap();
    let first = csv.lines().nth(1).unwrap();
    assert!(first.starts_with("1e-7,"), "{first}");
    let f: Vec<&str> = first.split(',').collect();
    let agrees = f[header_col(&csv, "derived_agrees")] == "yes";
    let hw: f64 = f[header_col(&csv, "hw_mean")].parse().unwrap();
    let (lo, hi) = f[header_col(&csv, "derived_ci95")]
        .split_once("..")
        .map(|(a, b)| (a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap()))
        .unwrap();
    assert!(agrees || (lo..=hi).contains(&hw), "{csv}");
}

fn header_col(csv: &str, name: &str) -> usize {
    csv.lines()
        .next()
        .unwrap()
        .split(',')
        .position(|h| h == name)
        .unwrap()
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
