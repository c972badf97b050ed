//! `ftnas search` through the real binary on a few hundred real
//! Fashion-MNIST images: the best genotype is a model file every other
//! command loads, an interrupted and resumed search ends exactly like an
//! uninterrupted one, bad input is an error.

mod common;

use std::path::Path;

use common::{failed_naming, run, s, succeeded};
use ftnas::model::{load_model, Shape};

/// A search small enough for the test suite (seconds); `extra` holds
/// flag/value pairs (or a lone last flag).
fn tiny<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "search",
        "--ftt",
        "feature:mibb:1e-3",
        "--out",
        s(out),
        "--steps",
        "6",
        "--cells",
        "3",
        "--nodes",
        "2",
        "--init-channels",
        "4",
        "--train-subset",
        "300",
        "--reward-images",
        "48",
        "--calib",
        "16",
        "--batch",
        "16",
        "--train-batches",
        "1",
        "--qat-warmup",
        "2",
        "--population",
        "4",
        "--sample",
        "2",
        "--checkpoint-every",
        "2",
        "--seed",
        "3",
        "--quiet",
    ];
    // a flag of `extra` already in `a` gets the new value
    let mut i = 0;
    while i < extra.len() {
        let flag = extra[i];
        let value = extra.get(i + 1).filter(|v| !v.starts_with("--")).copied();
        i += 1 + value.is_some() as usize;
        match (a.iter().position(|x| *x == flag), value) {
            (Some(k), Some(v)) => a[k + 1] = v,
            (_, v) => {
                a.push(flag);
                a.extend(v);
            }
        }
    }
    a
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn short_search_writes_loadable_genotypes_log_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let accel = common::repo_file("accelerators/edge_16x16_os.toml");
    let text = succeeded(&run(tiny(&out, &["--accel", s(&accel)])));
    assert!(text.contains("best-1.toml: reward"), "{text}");
    assert!(text.contains("controller steps/min"), "{text}");
    for f in [
        "best-1.toml",
        "log.csv",
        "reward.svg",
        "accuracy-vs-cost.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let best = out.join("best-1.toml");
    let g = load_model(&best, Shape::new(1, 28, 28)).unwrap();
    assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
    let shown = succeeded(&run(["model", "show", s(&best)]));
    assert!(shown.contains("total:"), "{shown}");
    let log = read(&out.join("log.csv"));
    let mut lines = log.lines();
    assert_eq!(
        lines.next().unwrap(),
        "step,genotype,clean_acc,fault_acc,reward,macs,params,cycles"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 6);
    // every row has cycles (an accelerator was given)
    assert!(rows.iter().all(|r| !r.ends_with(',')), "{log}");
    assert!(read(&out.join("reward.svg")).starts_with("<svg"));
}

#[test]
fn resumed_search_equals_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    succeeded(&run(tiny(&whole, &[])));
    succeeded(&run(tiny(&parts, &["--stop-after", "3"])));
    let partial = read(&parts.join("log.csv"));
    assert_eq!(partial.lines().count(), 1 + 3);
    succeeded(&run(tiny(&parts, &["--resume"])));
    assert_eq!(read(&whole.join("log.csv")), read(&parts.join("log.csv")));
    for f in ["best-1.toml", "best-2.toml", "best-3.toml"] {
        assert_eq!(read(&whole.join(f)), read(&parts.join(f)), "{f}");
    }
    // a resume with other settings is refused, nothing is overwritten
    let before = read(&parts.join("log.csv"));
    failed_naming(
        &run(tiny(&parts, &["--resume", "--beta", "0.9"])),
        &["other settings"],
    );
    assert_eq!(read(&parts.join("log.csv")), before);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    failed_naming(
        &run(["search", "--out", s(&out), "--steps", "1"]),
        &["--ftt"],
    );
    failed_naming(
        &run(["search", "--ftt", "feature:nonsense", "--out", s(&out)]),
        &["nonsense"],
    );
    failed_naming(&run(tiny(&out, &["--init-channels", "3"])), &["even"]);
    failed_naming(&run(tiny(&out, &["--beta", "1.5"])), &["beta"]);
    failed_naming(
        &run(tiny(&out, &["--reward-chips", "0"])),
        &["--reward-chips"],
    );
    failed_naming(&run(tiny(&out, &["--resume"])), &["checkpoint"]);
    let missing = dir.path().join("missing.toml");
    failed_naming(
        &run(tiny(&out, &["--accel", s(&missing)])),
        &["missing.toml"],
    );
}

/// A derived fault model with stuck MAC-unit bits (what `ftnas derive`
/// writes for an aged systolic array) drives the search's FTT and its
/// faulty reward: the candidates' faulty accuracies are not their clean
/// ones.
#[test]
fn search_against_stuck_mac_units() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let fm = dir.path().join("aged.toml");
    std::fs::write(
        &fm,
        "[stuck_macs]\ndataflow = \"os\"\nrows = 4\ncols = 4\n\
         act = { p0 = 5e-3, p1 = 5e-3 }\naccumulator = { p0 = 2e-3, p1 = 2e-3 }\n",
    )
    .unwrap();
    let mut args = tiny(&out, &["--steps", "4"]);
    let k = args.iter().position(|a| *a == "--ftt").unwrap();
    args.drain(k..k + 2);
    args.extend(["--fault-model", s(&fm), "--reward-chips", "2"]);
    let text = succeeded(&run(args));
    assert!(text.contains("best-1.toml: reward"), "{text}");
    let log = read(&out.join("log.csv"));
    let differ = log.lines().skip(1).filter(|r| {
        let f: Vec<&str> = r.rsplitn(7, ',').collect();
        // ... clean_acc, fault_acc, reward, macs, params, cycles (reversed)
        f[5] != f[4]
    });
    assert!(differ.count() > 0, "no candidate lost accuracy:\n{log}");
}
