//! `ftnas inject` and `ftnas merge` end to end on a Fashion-MNIST subset:
//! tables on stdout and files in --out, shards merged through the CLI equal
//! the unsharded run, the hardware (cycle-level) campaign, clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ftnas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ftnas"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8(out.stderr).unwrap()
}

/// A tiny VGG file and seeded random weights for it.
fn tiny(dir: &Path) -> (String, String) {
    let m = dir.join("tiny.toml");
    std::fs::write(
        &m,
        "family = \"vgg\"\nchannels = [[6], [8]]\nnum_classes = 10\n",
    )
    .unwrap();
    let w = dir.join("tiny.safetensors");
    ok(ftnas(&["model", "init", s(&m), "--seed", "4", "-o", s(&w)]));
    (s(&m).to_string(), s(&w).to_string())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn engine_args<'a>(m: &'a str, w: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "inject",
        "--model",
        m,
        "--weights",
        w,
        "--fault-model",
        "models/faults/mibb-1e-4.toml",
        "--weight-fault",
        "sa:1e-3",
        "--images",
        "40",
        "--chips",
        "5",
        "--calib",
        "32",
        "--seed",
        "9",
        "--quiet",
        "--out",
        out,
    ]
}

#[test]
fn engine_campaign_writes_tables_and_cli_shards_merge_exactly() {
    let root = tempfile::tempdir().unwrap();
    let (m, w) = tiny(root.path());
    let whole: PathBuf = root.path().join("whole");
    let stdout = ok(ftnas(&engine_args(&m, &w, s(&whole))));
    for needle in [
        "accuracy mean",
        "accuracy min / p5 / p50 / p95 / max",
        "SDC rate",
        "feature ",
        "weight ",
        "summary.json",
    ] {
        assert!(stdout.contains(needle), "{needle} missing in\n{stdout}");
    }
    let chips = std::fs::read_to_string(whole.join("chips.csv")).unwrap();
    assert!(chips.starts_with("chip,correct,accuracy,sdc,corrupted,faults\n"));
    assert_eq!(chips.lines().count(), 6);
    let vuln = std::fs::read_to_string(whole.join("vulnerability.csv")).unwrap();
    assert!(vuln.starts_with("site,layer,faults,exposures,masked,sdc,other,shared,"));
    assert!(vuln.contains("\nweight,all,") && vuln.contains("\nall,all,"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["chips"], 5);
    assert_eq!(summary["images"], 40);

    let mut shard_dirs = Vec::new();
    for i in 0..2 {
        let d = root.path().join(format!("shard{i}"));
        let shard = format!("{i}/2");
        let mut a = engine_args(&m, &w, s(&d));
        a.extend(["--shard", &shard]);
        let out = ok(ftnas(&a));
        assert!(out.contains(&format!("(shard {i}/2)")), "{out}");
        shard_dirs.push(d);
    }
    let merged = root.path().join("merged");
    let out = ok(ftnas(&[
        "merge",
        s(&shard_dirs[1]),
        s(&shard_dirs[0]),
        "--out",
        s(&merged),
    ]));
    assert!(out.contains("merged 2 shards"), "{out}");
    for f in [
        "campaign.json",
        "journal.jsonl",
        "summary.json",
        "chips.csv",
        "vulnerability.csv",
    ] {
        assert_eq!(
            std::fs::read(whole.join(f)).unwrap(),
            std::fs::read(merged.join(f)).unwrap(),
            "{f}"
        );
    }
    let e = fails(ftnas(&["merge", s(&shard_dirs[0]), "--out", s(&merged)]));
    assert!(e.contains("shard 1/2 missing"), "{e}");
}

#[test]
fn hardware_campaign_runs_on_both_executors_with_identical_results() {
    let root = tempfile::tempdir().unwrap();
    let (m, w) = tiny(root.path());
    let run = |executor: &str| {
        let out = root.path().join(executor);
        let stdout = ok(ftnas(&[
            "inject",
            "--accel",
            "accelerators/edge_16x16_os.toml",
            "--model",
            &m,
            "--weights",
            &w,
            "--faults",
            "accelerators/faults/aged_chip.toml",
            "--executor",
            executor,
            "--images",
            "6",
            "--chips",
            "3",
            "--calib",
            "32",
            "--quiet",
            "--out",
            s(&out),
        ]));
        (out, stdout)
    };
    let (cycle, stdout) = run("cycle-level");
    for site in ["pe.weight_reg", "sram.filter", "(every layer)"] {
        assert!(stdout.contains(site), "{site} missing in\n{stdout}");
    }
    let manifest = std::fs::read_to_string(cycle.join("campaign.json")).unwrap();
    assert!(
        manifest.contains("hwsim-cycle-level") && manifest.contains("aged_chip.toml"),
        "{manifest}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cycle.join("summary.json")).unwrap()).unwrap();
    assert!(summary["mean_faults_per_chip"].as_f64().unwrap() > 0.0);
    // The exact path gives the same chips and the same vulnerability table.
    let (exact, _) = run("exact");
    for f in ["chips.csv", "vulnerability.csv"] {
        assert_eq!(
            std::fs::read_to_string(cycle.join(f)).unwrap(),
            std::fs::read_to_string(exact.join(f)).unwrap(),
            "{f} differs between the cycle-level and the exact executor"
        );
    }
}

#[test]
fn bad_flags_and_files_are_named() {
    let root = tempfile::tempdir().unwrap();
    let (m, w) = tiny(root.path());
    let out = root.path().join("o");
    let o = s(&out);
    let base = [
        "inject",
        "--model",
        &m,
        "--weights",
        &w,
        "--out",
        o,
        "--quiet",
    ];
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(extra);
        fails(ftnas(&a))
    };
    let e = run(&["--feature-fault", "mibb:1e-4", "--shard", "2/2"]);
    assert!(e.contains("2/2") && e.contains("below the count"), "{e}");
    let e = run(&[]);
    assert!(e.contains("needs a fault model"), "{e}");
    let e = run(&["--feature-fault", "mibb:1e-4", "--images", "0"]);
    assert!(e.contains("--images 0"), "{e}");
    let e = run(&["--feature-fault", "mibb:1e-4", "--chips", "0"]);
    assert!(e.contains("--chips"), "{e}");
    let e = run(&["--fault-model", "no/such.toml"]);
    assert!(e.contains("no/such.toml"), "{e}");
    let e = run(&["--faults", "accelerators/faults/aged_chip.toml"]);
    assert!(e.contains("--accel"), "{e}");
    let bad = root.path().join("bad.toml");
    std::fs::write(&bad, "[sites.\"pe.nowhere\"]\nstuck_at_0 = 1e-3\n").unwrap();
    let e = run(&[
        "--accel",
        "accelerators/edge_16x16_os.toml",
        "--faults",
        s(&bad),
    ]);
    assert!(e.contains("bad.toml"), "{e}");
    // a directory of another campaign is refused, naming it
    ok(ftnas(
        &[
            &base[..],
            &[
                "--feature-fault",
                "mibb:1e-4",
                "--images",
                "4",
                "--chips",
                "1",
            ],
        ]
        .concat(),
    ));
    let e = run(&[
        "--feature-fault",
        "mibb:1e-4",
        "--images",
        "4",
        "--chips",
        "1",
        "--seed",
        "1",
    ]);
    assert!(e.contains(o) && e.contains("seed 0 vs 1"), "{e}");
}

/// A hardware campaign on the shipped Stripes design with the SIP example
/// spec: the vulnerability table lists the bit-serial sites, both executors
/// give identical files, and a PE spec on a bit-serial design is refused
/// naming the key.
#[test]
fn bit_serial_campaign_lists_sip_sites_on_both_executors() {
    let root = tempfile::tempdir().unwrap();
    let (m, w) = tiny(root.path());
    let run = |executor: &str, faults: &str| {
        let out = root.path().join(format!("bs-{executor}"));
        ftnas(&[
            "inject",
            "--accel",
            "accelerators/stripes.toml",
            "--model",
            &m,
            "--weights",
            &w,
            "--faults",
            faults,
            "--executor",
            executor,
            "--images",
            "4",
            "--chips",
            "2",
            "--calib",
            "16",
            "--quiet",
            "--out",
            s(&out),
        ])
    };
    let spec = "accelerators/faults/sip_registers.toml";
    let stdout = ok(run("cycle-level", spec));
    for site in [
        "sip.act_reg",
        "sip.weight_reg",
        "sip.psum_reg",
        "sram.filter",
    ] {
        assert!(stdout.contains(site), "{site} missing in\n{stdout}");
    }
    assert!(!stdout.contains("pe.act_reg"), "{stdout}");
    ok(run("exact", spec));
    for f in ["chips.csv", "vulnerability.csv"] {
        assert_eq!(
            std::fs::read_to_string(root.path().join("bs-cycle-level").join(f)).unwrap(),
            std::fs::read_to_string(root.path().join("bs-exact").join(f)).unwrap(),
            "{f}"
        );
    }
    let e = fails(run("exact", "accelerators/faults/pe_registers.toml"));
    assert!(
        e.contains("sites.\"pe.") && e.contains("sip.act_reg"),
        "{e}"
    );
}
