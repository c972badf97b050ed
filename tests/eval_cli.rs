//! `ftnas eval` end to end on real Fashion-MNIST test images: sweeps of one
//! and two models under weight and feature faults, the CSV/JSON/SVG files,
//! accuracy falling to chance at huge rates, determinism across thread
//! counts, relative rates on a per-layer fault file, and clear errors.
//!
//! The "trained" model is a nearest-centroid classifier written as a tiny
//! VGG (an identity 3x3 conv, ReLU, 2x2 max pool, a linear layer holding
//! the class means of the pooled training images): about 65% clean
//! accuracy, built in a fraction of a second, so that a drop to chance
//! (10%) under faults is visible.

mod common;

use std::path::{Path, PathBuf};

use common::{failed_naming, init_weights, run, s, succeeded};
use ftnas::data::{self, Split};
use ftnas::model::{self, Tensor, Weights};

const TEST_IMAGES: &str = "300";

/// Write the nearest-centroid model into `dir`: (model file, weights).
fn centroid_model(dir: &Path) -> (PathBuf, PathBuf) {
    let model_path = dir.join("centroid.toml");
    std::fs::write(&model_path, "family = \"vgg\"\nchannels = [[1]]\n").unwrap();
    let train = data::load(None, Split::Train).unwrap();
    let graph = model::load_model(&model_path, train.shape).unwrap();
    let mut w = Weights::random(&graph, 0);
    let mut set = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
        assert!(w.get(name).is_some(), "no tensor {name}");
        w.insert(name, Tensor::new(shape, data));
    };
    let mut tap = vec![0.0; 9];
    tap[4] = 1.0;
    set("stage1.0.conv.weight", vec![1, 1, 3, 3], tap);
    set("stage1.0.bn.weight", vec![1], vec![1.0]);
    set("stage1.0.bn.bias", vec![1], vec![0.0]);
    set("stage1.0.bn.running_mean", vec![1], vec![0.0]);
    set("stage1.0.bn.running_var", vec![1], vec![1.0]);
    // Class means of the 2x2 max-pooled images (14x14 = 196 features).
    let (side, pooled) = (28, 14);
    let mut sums = vec![vec![0f64; pooled * pooled]; 10];
    let mut counts = [0f64; 10];
    for i in 0..3000 {
        let img = train.image(i);
        let y = train.labels[i] as usize;
        counts[y] += 1.0;
        for r in 0..pooled {
            for c in 0..pooled {
                let at = |dr: usize, dc: usize| img[(2 * r + dr) * side + 2 * c + dc];
                let m = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                sums[y][r * pooled + c] += f64::from(m);
            }
        }
    }
    let mut weight = Vec::new();
    let mut bias = Vec::new();
    for (sum, n) in sums.iter().zip(counts) {
        let mean: Vec<f32> = sum.iter().map(|v| (v / n) as f32).collect();
        // nearest centroid: argmax of mu.x - |mu|^2/2
        bias.push(-0.5 * mean.iter().map(|m| m * m).sum::<f32>());
        weight.extend(mean);
    }
    set("classifier.weight", vec![10, pooled * pooled], weight);
    set("classifier.bias", vec![10], bias);
    let weights_path = dir.join("centroid.safetensors");
    model::save_weights(&weights_path, &w).unwrap();
    (model_path, weights_path)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Mean accuracy of model `m` at rate index `r`.
fn mean(v: &serde_json::Value, m: usize, r: usize) -> f64 {
    v["models"][m]["points"][r]["summary"]["mean"]
        .as_f64()
        .unwrap()
}

#[test]
fn weight_fault_sweep_of_two_models_writes_table_csv_json_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = centroid_model(dir.path());
    let random = dir.path().join("random.safetensors");
    init_weights(&model, "1x28x28", 5, &random);
    let out_dir = dir.path().join("out");
    let out = run([
        "eval",
        "--model",
        s(&model),
        "--weights",
        s(&weights),
        "--model",
        s(&model),
        "--weights",
        s(&random),
        "--weight-fault",
        "sa:1e-3:all",
        "--rates",
        "0.5,1e-3,1e-2",
        "--chips",
        "3",
        "--images",
        TEST_IMAGES,
        "--calib",
        "64",
        "--out",
        s(&out_dir),
    ]);
    let stdout = succeeded(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("rate")).unwrap();
    assert!(lines[header].contains("centroid %") && lines[header].contains("random %"));
    assert!(lines[header + 2].starts_with("clean"), "{stdout}");
    for (row, rate) in ["1e-3", "1e-2", "5e-1"].iter().enumerate() {
        assert!(lines[header + 3 + row].starts_with(rate), "{stdout}");
    }

    let v = json(&out_dir.join("eval.json"));
    assert_eq!(v["rates"], serde_json::json!([1e-3, 1e-2, 0.5]));
    assert_eq!(v["images"], 300);
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    let clean = v["models"][0]["clean"].as_f64().unwrap();
    assert!(clean > 0.5, "centroid model clean accuracy {clean}");
    for m in 0..2 {
        let points = v["models"][m]["points"].as_array().unwrap();
        assert_eq!(points.len(), 3);
        for p in points {
            assert_eq!(p["accuracies"].as_array().unwrap().len(), 3);
            let s = &p["summary"];
            let (lo, hi) = (
                s["ci95"][0].as_f64().unwrap(),
                s["ci95"][1].as_f64().unwrap(),
            );
            assert!(lo <= s["mean"].as_f64().unwrap() && s["mean"].as_f64().unwrap() <= hi);
        }
    }
    // Half of all weight bits stuck: chance level. A few stuck bits: close to clean.
    assert!(mean(&v, 0, 2) < 0.3, "{}", mean(&v, 0, 2));
    assert!(mean(&v, 0, 0) > clean - 0.15 && mean(&v, 0, 0) > mean(&v, 0, 2));

    let csv = std::fs::read_to_string(out_dir.join("eval.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 1 + 2 * 3);
    assert_eq!(
        rows[0].join(","),
        "model,weights,network,rate,chips,clean,mean,std,ci95_low,ci95_high,min,max"
    );
    assert!(rows.iter().all(|r| r.len() == 12));
    assert_eq!((rows[4][0], rows[4][3]), ("random", "0.001"));
    let m: f64 = rows[3][6].parse().unwrap();
    assert_eq!(m, mean(&v, 0, 2));

    let svg = std::fs::read_to_string(out_dir.join("eval.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("centroid (clean") && svg.contains("random (clean"));
    assert!(svg.contains("sa:1e-3:all"), "x axis names the fault model");
}

#[test]
fn feature_fault_sweep_is_deterministic_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = centroid_model(dir.path());
    let sweep = |threads: &str, seed: &str, out: &Path| {
        let o = common::ftnas()
            .env("RAYON_NUM_THREADS", threads)
            .args([
                "eval",
                "--model",
                s(&model),
                "--weights",
                s(&weights),
                "--feature-fault",
                "mibb:1e-4:all",
                "--rates",
                "1e-4,0.5",
                "--chips",
                "2",
                "--images",
                "200",
                "--calib",
                "64",
                "--seed",
                seed,
                "--out",
                s(out),
            ])
            .output()
            .unwrap();
        succeeded(&o);
        std::fs::read_to_string(out.join("eval.json")).unwrap()
    };
    let one = sweep("1", "7", &dir.path().join("t1"));
    let three = sweep("3", "7", &dir.path().join("t3"));
    assert_eq!(one, three);
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert!(v["models"][0]["clean"].as_f64().unwrap() > 0.5);
    assert!(mean(&v, 0, 1) < 0.3, "MiBB p=0.5 on every layer: chance");
    let other: serde_json::Value =
        serde_json::from_str(&sweep("2", "8", &dir.path().join("s8"))).unwrap();
    assert_ne!(
        v["models"][0]["points"][1]["accuracies"], other["models"][0]["points"][1]["accuracies"],
        "another seed draws other faults"
    );
}

#[test]
fn relative_rates_scale_a_per_layer_fault_file() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = centroid_model(dir.path());
    let fm = dir.path().join("derived.toml");
    std::fs::write(
        &fm,
        "[[layer]]\nname = \"stage1.0.conv\"\n\n[layer.feature]\nkind = \"output_hit\"\n\
         p_out = 0.02\nbit_weights = [0, 0, 0, 0, 0, 0, 0.5, 0.5]\n\n\
         [[layer]]\nname = \"classifier\"\nweight = { kind = \"stuck_at\", p1 = 0.01 }\n",
    )
    .unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--model",
            s(&model),
            "--weights",
            s(&weights),
            "--fault-model",
            s(&fm),
            "--chips",
            "2",
            "--images",
            "150",
            "--calib",
            "64",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out_dir = dir.path().join("out");
    succeeded(&run(args(&[
        "--relative",
        "--rates",
        "0,1,40",
        "--out",
        s(&out_dir),
    ])));
    let v = json(&out_dir.join("eval.json"));
    assert_eq!(v["rate_mode"], "relative");
    let clean = v["models"][0]["clean"].as_f64().unwrap();
    let at_zero = &v["models"][0]["points"][0]["accuracies"];
    assert_eq!(
        at_zero,
        &serde_json::json!([clean, clean]),
        "rate 0 is the clean model"
    );
    assert!(mean(&v, 0, 2) < mean(&v, 0, 1), "{v}");
    assert!(v["models"][0]["points"][2]["fault"]
        .as_str()
        .unwrap()
        .contains("2 layer overrides"));
    // The SVG has a linear rate axis (rate 0 cannot sit on a log axis).
    assert!(std::fs::read_to_string(out_dir.join("eval.svg"))
        .unwrap()
        .contains("rate factor"));

    // Absolute rates need a default section to say what the rate is.
    failed_naming(
        &run(args(&["--rates", "1e-3"])),
        &["derived.toml", "--relative"],
    );
}

/// A fault model derived for a 16-bit accelerator (16 activation bits per
/// layer) is evaluated on that accelerator's datapath with `--accel`.
#[test]
fn accel_flag_takes_the_datapath_from_the_accelerator() {
    let dir = tempfile::tempdir().unwrap();
    let (model, weights) = centroid_model(dir.path());
    let fm = dir.path().join("derived16.toml");
    let mut bits = vec!["0"; 14];
    bits.extend(["0.5", "0.5"]);
    std::fs::write(
        &fm,
        format!(
            "[[layer]]\nname = \"stage1.0.conv\"\n\n[layer.feature]\nkind = \"output_hit\"\n\
             p_out = 0.02\nbit_weights = [{}]\n",
            bits.join(", ")
        ),
    )
    .unwrap();
    let eyeriss = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/eyeriss.toml");
    let out_dir = dir.path().join("out");
    let base = [
        "eval",
        "--model",
        s(&model),
        "--weights",
        s(&weights),
        "--fault-model",
        s(&fm),
        "--relative",
        "--rates",
        "1",
        "--chips",
        "1",
        "--images",
        "60",
        "--calib",
        "32",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run(a)
    };
    succeeded(&with(&["--accel", s(&eyeriss), "--out", s(&out_dir)]));
    let v = json(&out_dir.join("eval.json"));
    assert_eq!(v["datapath"]["act_bits"], 16, "{v}");
    assert_eq!(v["datapath"]["overflow"], "saturate", "{v}");
    // The same as the four flags spelled out.
    let flags_dir = dir.path().join("flags");
    succeeded(&with(&[
        "--act-bits",
        "16",
        "--weight-bits",
        "16",
        "--psum-bits",
        "32",
        "--overflow",
        "saturate",
        "--out",
        s(&flags_dir),
    ]));
    let by_flags = json(&flags_dir.join("eval.json"));
    assert_eq!(v["datapath"], by_flags["datapath"]);
    assert_eq!(v["models"][0]["points"], by_flags["models"][0]["points"]);
    // The default 8-bit datapath does not fit the file.
    failed_naming(&with(&[]), &["bit_weights", "16"]);
    // --accel replaces the datapath flags, it is not combined with them.
    failed_naming(
        &with(&["--accel", s(&eyeriss), "--act-bits", "16"]),
        &["--accel", "--act-bits"],
    );
    let missing = dir.path().join("nope.toml");
    failed_naming(&with(&["--accel", s(&missing)]), &["nope.toml"]);
}

#[test]
fn bad_flags_and_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.toml");
    std::fs::write(&model, "family = \"vgg\"\nchannels = [[2]]\n").unwrap();
    let weights = dir.path().join("tiny.safetensors");
    init_weights(&model, "1x28x28", 1, &weights);
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[feature]\nkind = \"mibb\"\np = 1e-4\nlayers = [\"stage9.0.conv\"]\n",
    )
    .unwrap();
    let bad_model = dir.path().join("bad.toml");
    std::fs::write(&bad_model, "family = \"vgg\"\nchanels = [[4]]\n").unwrap();
    let missing = dir.path().join("nope.safetensors");
    let (sa, mibb) = ("--weight-fault sa:1e-3", "--feature-fault mibb:1e-4");
    // (arguments after `eval --images 8 --calib 8`, what the message names);
    // M, W, MISSING, TYPO and BAD stand for the files above.
    let cases: Vec<(String, &[&str])> = vec![
        // No weights at all: an error, never random weights.
        (format!("--model M {mibb} --rates 1e-3"), &["--weights"]),
        (
            format!("--model M --model M --weights W {mibb} --rates 1e-3"),
            &["--model is given 2", "--weights 1"],
        ),
        (
            "--model M --weights W --rates 1e-3".into(),
            &["--feature-fault"],
        ),
        (format!("--model M --weights W {mibb}"), &["--rates"]),
        (
            format!("--model M --weights W {mibb} --rates 1e-3,x"),
            &["--rates", "x"],
        ),
        (
            format!("--model M --weights W {sa} --rates 1e-3,2"),
            &["--rates", "above 1"],
        ),
        (
            format!("--model M --weights W {sa} --rates 1e-3,1e-3"),
            &["twice"],
        ),
        (
            format!("--model M --weights W {sa} --rates -1e-3"),
            &["-0.001", ">= 0"],
        ),
        (
            format!("--model M --weights W {sa} --rates 1e-3 --chips 0"),
            &["chip"],
        ),
        (
            "--model M --weights W --feature-fault mibb:x --rates 1e-3".into(),
            &["mibb:x"],
        ),
        (
            format!("--model M --weights MISSING {mibb} --rates 1e-3"),
            &["nope.safetensors"],
        ),
        (
            "--model M --weights W --fault-model TYPO --rates 1e-3".into(),
            &["typo.toml", "stage9.0.conv"],
        ),
        (
            format!("--model BAD --weights W {mibb} --rates 1e-3"),
            &["bad.toml", "chanels"],
        ),
    ];
    for (args, needles) in cases {
        let mut argv = vec!["eval", "--images", "8", "--calib", "8"];
        argv.extend(args.split_whitespace().map(|a| match a {
            "M" => s(&model),
            "W" => s(&weights),
            "MISSING" => s(&missing),
            "TYPO" => s(&typo),
            "BAD" => s(&bad_model),
            other => other,
        }));
        failed_naming(&run(&argv), needles);
    }
}
