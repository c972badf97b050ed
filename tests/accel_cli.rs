//! The `ftnas sim` and `ftnas accel check` command lines, run as a user
//! would: SCALE-Sim jobs write SCALE-Sim's reports, descriptions time
//! topologies with CSV/JSON output, and bad inputs fail with clear messages.

mod common;

use std::path::Path;
use std::process::Output;

use common::{failed_naming, root, run, s, succeeded};

/// `ftnas sim` on a SCALE-Sim config and topology, reports into `outdir`.
fn scalesim_job(cfg: &Path, topo: &Path, outdir: &Path) -> Output {
    run([
        "sim",
        "--scalesim-cfg",
        s(cfg),
        "--topology",
        s(topo),
        "--outdir",
        s(outdir),
    ])
}

#[test]
fn scalesim_job_writes_scalesim_reports() {
    let d = tempfile::tempdir().unwrap();
    // Vector row c09: 32x32 OS, 64 kB SRAMs, CALC, r20_conv1.
    let topo = d.path().join("topo.csv");
    std::fs::write(
        &topo,
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\nr20_conv1, 34, 34, 3, 3, 3, 16, 1,\n",
    )
    .unwrap();
    let cfg = root().join("accelerators/scalesim/scale.cfg");
    let out = d.path().join("out");
    let o = scalesim_job(&cfg, &topo, &out);
    let stdout = succeeded(&o);
    let run_dir = out.join("scale_32x32_os");
    let compute = std::fs::read_to_string(run_dir.join("COMPUTE_REPORT.csv")).unwrap();
    assert_eq!(
        compute,
        "LayerID, Total Cycles, Stall Cycles, Overall Util %, Mapping Efficiency %, Compute Util %,\n\
         0, 2847, 0, 15.173867228661749, 50.0, 15.168539325842694,\n"
    );
    let detail = std::fs::read_to_string(run_dir.join("DETAILED_ACCESS_REPORT.csv")).unwrap();
    let row: Vec<&str> = detail.lines().nth(1).unwrap().split(", ").collect();
    assert_eq!((row[3], row[6], row[9]), ("27648", "13824", "18432"));
    let bw = std::fs::read_to_string(run_dir.join("BANDWIDTH_REPORT.csv")).unwrap();
    assert!(bw.starts_with("LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, Avg IFMAP DRAM BW, Avg FILTER DRAM BW, Avg OFMAP DRAM BW,\n"));
    // 27648 reads over 2847 cycles.
    let first: f64 = bw
        .lines()
        .nth(1)
        .unwrap()
        .split(", ")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first, 27648.0 / 2847.0);
    assert!(
        stdout.contains("r20_conv1") && stdout.contains("TOTAL"),
        "{stdout}"
    );
}

#[test]
fn gemm_topology_runs() {
    let d = tempfile::tempdir().unwrap();
    let topo = d.path().join("gemm.csv");
    std::fs::write(&topo, "Layer Name, M, N, K,\nmnk, 128, 64, 256,\n").unwrap();
    let cfg = root().join("accelerators/scalesim/google.cfg");
    let o = scalesim_job(&cfg, &topo, d.path());
    succeeded(&o);
    let compute =
        std::fs::read_to_string(d.path().join("google_256x256_ws/COMPUTE_REPORT.csv")).unwrap();
    // WS: Sr = K = 256, Sc = N = 64, T = M = 128 -> one fold of
    // 2*256 + 256 + 128 - 2 = 894 cycles, minus one.
    assert!(compute.contains("\n0, 893, 0, "), "{compute}");
}

#[test]
fn accel_topology_with_csv_and_json() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("t.json");
    let csvdir = d.path().join("csv");
    let o = run([
        "sim",
        "--accel",
        "accelerators/scalesim_32x32.toml",
        "--topology",
        "accelerators/topologies/resnet50.csv",
        "--csv",
        s(&csvdir),
        "--json",
        s(&json),
    ]);
    succeeded(&o);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 54);
    // ResNet-50: ~4.1 GMACs per 224x224 image.
    let macs = v["totals"]["macs"].as_u64().unwrap();
    assert!((4_000_000_000..4_200_000_000).contains(&macs), "{macs}");
    let csv = std::fs::read_to_string(csvdir.join("timing.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 54 + 1);
    assert!(csv.lines().last().unwrap().starts_with("TOTAL,"));
    assert!(csvdir.join("COMPUTE_REPORT.csv").exists());
}

#[test]
fn accel_check_all_shipped_and_a_bad_one() {
    let mut args = vec!["accel".to_string(), "check".to_string()];
    for e in std::fs::read_dir(root().join("accelerators")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            args.push(p.to_string_lossy().into_owned());
        }
    }
    let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let o = run(&refs);
    let out = succeeded(&o);
    assert!(
        out.contains("tpu-v1: valid") && out.contains("GMAC/s"),
        "{out}"
    );
    assert!(
        out.contains("ifmap 25165824"),
        "TPU unified buffer in words: {out}"
    );

    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.toml");
    let text = std::fs::read_to_string(root().join("accelerators/tpu_v1.toml"))
        .unwrap()
        .replace("cols = 256", "cols = 0");
    std::fs::write(&bad, text).unwrap();
    let o = run(["accel", "check", s(&bad)]);
    failed_naming(&o, &["bad.toml", "systolic.cols"]);
}

#[test]
fn bad_invocations_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("bad.cfg");
    std::fs::write(
        &cfg,
        "[architecture_presets]\nArrayHeight: 32\nArrayWidth: 32\nDataflow: os\n",
    )
    .unwrap();
    let topo = root().join("accelerators/topologies/resnet50.csv");
    let o = scalesim_job(&cfg, &topo, d.path());
    failed_naming(&o, &["bad.cfg", "IfmapSramSzkB"]);

    let bad_topo = d.path().join("t.csv");
    std::fs::write(&bad_topo, "h\nc1, 8, 8, 9, 9, 1, 1, 1,\n").unwrap();
    let o = run([
        "sim",
        "--accel",
        "accelerators/edge_16x16_os.toml",
        "--topology",
        s(&bad_topo),
    ]);
    failed_naming(&o, &["t.csv:2", "larger than the ifmap"]);

    let o = run([
        "sim",
        "--accel",
        "accelerators/stripes.toml",
        "--input",
        "3x32",
    ]);
    failed_naming(&o, &[]);
    failed_naming(&run(["sim"]), &["--accel"]);
    // Bit-serial designs cannot run SCALE-Sim topologies.
    let o = run([
        "sim",
        "--accel",
        "accelerators/stripes.toml",
        "--topology",
        s(&topo),
    ]);
    failed_naming(&o, &["systolic"]);
}

/// A missing file is named with its reason, and the reason is said once.
#[test]
fn missing_accelerator_file_names_the_reason_once() {
    let err = failed_naming(
        &run(["accel", "check", "no-such-accelerator.toml"]),
        &["no-such-accelerator.toml", "cannot read"],
    );
    let reason = "No such file or directory";
    assert_eq!(err.matches(reason).count(), 1, "{err}");
}
