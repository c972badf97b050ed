//! Training on real Fashion-MNIST: a tiny VGG learns well above chance in
//! seconds, its QAT forward reproduces the fixed-point engine's logit codes,
//! a run resumed from a checkpoint is bit-identical to an uninterrupted one,
//! and `ftnas train` exports weights that `ftnas infer` loads unchanged.

use std::process::Command;

use ftnas::data::{self, Augment, Dataset, Split};
use ftnas::engine::{Engine, FastEngine};
use ftnas::fault::FaultModel;
use ftnas::fixed::Datapath;
use ftnas::model::{Graph, ModelSpec};
use ftnas::quant;
use ftnas::train::{Ftt, Mode, Network, Params, Qat, TrainConfig, Trainer};

fn tiny_vgg(shape: ftnas::model::Shape) -> Graph {
    ModelSpec::Vgg {
        channels: vec![vec![8], vec![16]],
        num_classes: 10,
    }
    .build(shape)
    .unwrap()
}

fn fashion() -> (Dataset, Dataset) {
    (
        data::load(None, Split::Train).unwrap(),
        data::load(None, Split::Test).unwrap(),
    )
}

fn config(epochs: usize, batch: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(epochs, batch);
    cfg.lr = 0.05;
    cfg.augment = Augment {
        pad: 2,
        flip: false,
    };
    cfg.qat_warmup_steps = 30;
    cfg.recalib_every = 50;
    cfg
}

#[test]
fn tiny_vgg_learns_and_qat_forward_reproduces_engine_codes() {
    let (full, test) = fashion();
    let (train, val) = full.take(3000).split_off_validation(0.1, 1).unwrap();
    let graph = tiny_vgg(full.shape);
    let calib = &full.images[..256 * full.shape.numel()];
    let mut t = Trainer::new(&graph, config(2, 32), Params::init(&graph, 1)).unwrap();
    t.run(&train, &val, calib).unwrap();
    let last = t.log.last().unwrap();
    assert!(last.qat, "fake quantization was active in the last epoch");
    assert!(last.val_acc > 0.6, "validation accuracy {}", last.val_acc);

    // the engine, with its own calibration and quantizer
    let weights = t.net.params.to_weights();
    let test = test.take(1000);
    let ranges = quant::calibrate(&graph, &weights, calib).unwrap();
    let qmodel =
        quant::build::quantize_with_ranges(&graph, &weights, Datapath::INT8, &ranges).unwrap();
    let codes = FastEngine.run(&qmodel, &test.images, 0, None).unwrap();
    let engine_acc = codes
        .iter()
        .zip(&test.labels)
        .filter(|(l, &y)| quant::argmax(l) == y as usize)
        .count() as f64
        / test.len() as f64;
    assert!(engine_acc > 0.6, "engine test accuracy {engine_acc}");
    eprintln!(
        "tiny VGG, 2 epochs on 2700 images: val {:.4}, engine test {engine_acc:.4}",
        last.val_acc
    );

    // the QAT forward (evaluation form) with the same ranges: same codes
    let formats = t.net.plan.formats(&ranges, 8);
    let qat = Qat {
        formats: &formats,
        datapath: Datapath::INT8,
    };
    let tape = t
        .net
        .forward(&test.images, test.len(), Mode::Eval, Some(qat), None);
    let step = ftnas::train::Grid::new(qmodel.output_format()).step;
    let ours: Vec<i32> = tape.logits().iter().map(|&v| (v / step) as i32).collect();
    let theirs: Vec<i32> = codes.concat();
    assert_eq!(
        ours, theirs,
        "QAT forward and FastEngine logit codes differ"
    );

    // and through the trainer's own calibration: accuracy within 0.5 pp
    t.calibrate(calib);
    let (_, qat_acc) = t.evaluate(&test);
    assert!(
        (qat_acc - engine_acc).abs() <= 0.005,
        "QAT {qat_acc} vs engine {engine_acc}"
    );
}

#[test]
fn resume_is_bit_identical_with_qat_and_ftt() {
    let (full, _) = fashion();
    let (train, val) = full.take(320).split_off_validation(0.2, 2).unwrap();
    let graph = tiny_vgg(full.shape);
    let calib = &full.images[..64 * full.shape.numel()];
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(2, 32);
    cfg.qat_warmup_steps = 4; // QAT (and FTT) start inside epoch 1
    cfg.recalib_every = 3;
    cfg.ftt = Some(Ftt {
        model: FaultModel::parse_feature_flag("mibb:1e-3").unwrap(),
        alpha: 0.5,
    });
    cfg.seed = 7;

    let mut whole = Trainer::new(&graph, cfg.clone(), Params::init(&graph, 7)).unwrap();
    whole.run(&train, &val, calib).unwrap();

    let ckpt = dir.path().join("run.ckpt");
    let mut sliced_cfg = cfg.clone();
    sliced_cfg.checkpoint = Some(ckpt.clone());
    sliced_cfg.log = Some(dir.path().join("log.csv"));
    sliced_cfg.stop_after = Some(1);
    let mut first = Trainer::new(&graph, sliced_cfg.clone(), Params::init(&graph, 7)).unwrap();
    first.run(&train, &val, calib).unwrap();
    assert_eq!(first.epoch, 1);
    drop(first);
    let mut second = Trainer::resume(&graph, sliced_cfg, &ckpt).unwrap();
    assert_eq!(second.epoch, 1);
    second.run(&train, &val, calib).unwrap();
    assert_eq!(second.epoch, 2);

    assert!(whole.log.iter().all(|r| r.qat) || whole.log[1].qat);
    assert!(whole.log[1].faulty_loss > 0.0, "the FTT loss ran");
    for i in 0..whole.net.params.data.len() {
        let a: Vec<u32> = whole.net.params.data[i]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let b: Vec<u32> = second.net.params.data[i]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(
            a, b,
            "tensor {} differs after resume",
            whole.net.params.names[i]
        );
        assert_eq!(whole.sgd.velocity[i], second.sgd.velocity[i]);
    }
    let log = std::fs::read_to_string(dir.path().join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "header + one row per epoch:\n{log}");
    // a checkpoint for another seed is refused with a message
    let mut other = cfg;
    other.seed = 8;
    let err = Trainer::resume(&graph, other, &ckpt).err().unwrap();
    assert!(err.to_string().contains("seed"), "{err}");
}

#[test]
fn cli_train_exports_weights_that_infer_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.toml");
    std::fs::write(&model, "family = \"vgg\"\nchannels = [[8], [16]]\n").unwrap();
    let out = dir.path().join("tiny.safetensors");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ftnas"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // stdout, then stderr (progress)
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    let m = model.to_str().unwrap();
    let w = out.to_str().unwrap();
    let text = run(&[
        "train",
        "--model",
        m,
        "--epochs",
        "1",
        "--batch",
        "32",
        "--train-subset",
        "640",
        "--qat-warmup",
        "5",
        "--lr",
        "0.05",
        "--out",
        w,
        "--ftt",
        "feature:mibb:1e-4",
    ]);
    assert!(text.contains("fixed-point engine"), "{text}");
    // no terminal here: progress comes as lines (every tenth of the epoch)
    let progress = text
        .lines()
        .filter(|l| l.contains(": step ") && l.contains(", eta "))
        .count();
    assert!(
        (5..=11).contains(&progress),
        "{progress} progress lines: {text}"
    );
    assert!(out.exists() && dir.path().join("tiny.csv").exists());
    assert!(dir.path().join("tiny.safetensors.ckpt.json").exists());
    let text = run(&["infer", "--model", m, "--weights", w, "--images", "100"]);
    assert!(text.to_lowercase().contains("accuracy"), "{text}");
    // --init starts from the given weights: with a negligible learning rate
    // the fine-tuned export keeps every learned tensor (BN running
    // statistics still follow the data).
    let tuned = dir.path().join("tuned.safetensors");
    let t = tuned.to_str().unwrap();
    let text = run(&[
        "train",
        "--model",
        m,
        "--init",
        w,
        "--epochs",
        "1",
        "--batch",
        "32",
        "--train-subset",
        "320",
        "--qat-warmup",
        "0",
        "--lr",
        "1e-12",
        "--wd",
        "0",
        "--out",
        t,
    ]);
    assert!(text.contains("fixed-point engine"), "{text}");
    let graph = ftnas::model::load_model(&model, ftnas::model::Shape::new(1, 28, 28)).unwrap();
    let before = ftnas::model::load_weights(&out, &graph).unwrap();
    let after = ftnas::model::load_weights(&tuned, &graph).unwrap();
    assert_eq!(before.tensors.len(), after.tensors.len());
    let mut compared = 0;
    for (name, a) in before
        .tensors
        .iter()
        .filter(|(n, _)| !n.contains("running_"))
    {
        compared += 1;
        let b = after.get(name).unwrap();
        let diff = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-6, "{name} moved by {diff}");
    }
    assert!(compared >= 4, "{compared}");
    // --init with weights of another model is a clear error
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "family = \"vgg\"\nchannels = [[4], [16]]\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ftnas"))
        .args([
            "train",
            "--model",
            other.to_str().unwrap(),
            "--init",
            w,
            "--out",
            t,
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--init") && err.contains("tiny.safetensors"),
        "{err}"
    );
    // bad flag values are errors, not panics
    let o = Command::new(env!("CARGO_BIN_EXE_ftnas"))
        .args([
            "train",
            "--model",
            m,
            "--out",
            w,
            "--ftt",
            "features:mibb:1e-4",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("feature:SPEC"));
}

/// The evaluation forward of an untrained network is deterministic.
#[test]
fn forward_is_deterministic() {
    let (full, _) = fashion();
    let graph = tiny_vgg(full.shape);
    let net = Network::new(&graph, Params::init(&graph, 3));
    let x = &full.images[..16 * full.shape.numel()];
    let a = net.forward(x, 16, Mode::Train, None, None);
    let b = net.forward(x, 16, Mode::Train, None, None);
    assert_eq!(a.logits(), b.logits());
}
