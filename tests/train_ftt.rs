//! Fault-tolerant training: the faulty forward injects with the engine's
//! injectors on the exact codes of the fake-quantized forward, its hit
//! statistics follow the fault model, the faulty loss differs from the
//! clean one; and the QAT evaluation forward reproduces the engine's codes
//! on the shipped architectures (cells: standalone BN, concat, avg pool,
//! crop, zero; MobileNet-V2: depthwise, ReLU6) with random weights.

use ftnas::data::{self, Split};
use ftnas::engine::{Engine, FastEngine, FeatureFaults};
use ftnas::fault::{FaultModel, Mibb};
use ftnas::fixed::Datapath;
use ftnas::model::{self, Graph, ModelSpec, Op, Weights};
use ftnas::quant;
use ftnas::train::{
    cross_entropy, trainer::activation_ranges, Faults, Ftt, Grid, Mode, Network, Params, Qat,
    TrainConfig, Trainer,
};

fn setup(n: usize) -> (Graph, Vec<f32>, Vec<u8>) {
    let train = data::load(None, Split::Train).unwrap().take(n);
    let graph = ModelSpec::Vgg {
        channels: vec![vec![8], vec![16]],
        num_classes: 10,
    }
    .build(train.shape)
    .unwrap();
    (graph, train.images, train.labels)
}

fn formats(net: &Network, images: &[f32]) -> Vec<ftnas::fixed::Format> {
    net.plan.formats(&activation_ranges(net, images), 8)
}

/// Run `body` on `n` training images, the tiny VGG with random weights
/// `seed`, and its 8-bit QAT formats calibrated on those images.
fn with_qat_net<R>(
    n: usize,
    seed: u64,
    body: impl FnOnce(&Graph, &[f32], &[u8], &Network, Qat) -> R,
) -> R {
    let (graph, images, labels) = setup(n);
    let net = Network::new(&graph, Params::init(&graph, seed));
    let f = formats(&net, &images);
    let qat = Qat {
        formats: &f,
        datapath: Datapath::INT8,
    };
    body(&graph, &images, &labels, &net, qat)
}

#[test]
fn feature_faults_hit_codes_at_the_mibb_rate() {
    let n = 64;
    with_qat_net(n, 5, |graph, images, labels, net, qat| {
        let p = 1e-3;
        let fm = FaultModel::parse_feature_flag(&format!("mibb:{p}")).unwrap();
        let clean = net.forward(images, n, Mode::Train, Some(qat), None);
        let faults = Faults {
            feature: fm.feature(),
            weight: None,
            seed: 11,
            trial: 0,
            first_index: 0,
        };
        let faulty = net.forward(images, n, Mode::Frozen(&clean.bn), Some(qat), Some(faults));
        let (mut changed, mut expected, mut var) = (0u64, 0.0f64, 0.0f64);
        for h in &faulty.hits {
            match graph.nodes[h.node].op {
                Op::Conv2d { .. } => {
                    let q = Mibb { p }.p_out(graph.macs_per_output(h.node));
                    changed += h.feature_changed;
                    expected += q * h.feature_total as f64;
                    var += q * (1.0 - q) * h.feature_total as f64;
                }
                // `mibb:P` hits conv layers only (the paper's model)
                _ => assert_eq!(h.feature_changed, 0, "linear layer was hit"),
            }
        }
        assert!(
            expected > 500.0,
            "the test needs many expected hits ({expected})"
        );
        // a hit on a saturated code in the saturating direction changes nothing,
        // so the observed count may fall slightly below the hit count
        let sd = var.sqrt();
        assert!(
            (changed as f64) <= expected + 5.0 * sd
                && (changed as f64) >= 0.97 * expected - 5.0 * sd,
            "changed {changed}, expected {expected} +- {sd}"
        );
        let (lc, _, _) = cross_entropy(clean.logits(), labels, 1.0);
        let (lf, _, _) = cross_entropy(faulty.logits(), labels, 1.0);
        assert_ne!(lc, lf, "the faulty loss equals the clean loss");
        // the same seed and step give the same faults (one stream per image/layer)
        let again = net.forward(images, n, Mode::Frozen(&clean.bn), Some(qat), Some(faults));
        assert_eq!(again.logits(), faulty.logits());
    })
}

/// The engine's logits of 16 training images under `fm` (built from the
/// quantized model with the tiny VGG's random weights `seed`), and those of
/// the faulty QAT forward with batch norms in evaluation form, in codes.
fn engine_and_eval_forward(
    seed: u64,
    fm: impl Fn(&quant::QModel) -> FaultModel,
) -> (Vec<i32>, Vec<i32>, FaultModel) {
    let n = 16;
    let (graph, images, _) = setup(n);
    let weights = Weights::random(&graph, seed);
    let net = Network::new(&graph, Params::from_weights(&graph, &weights).unwrap());
    let ranges = quant::calibrate(&graph, &weights, &images).unwrap();
    let qm = quant::build::quantize_with_ranges(&graph, &weights, Datapath::INT8, &ranges).unwrap();
    let f = net.plan.formats(&ranges, 8);
    let fm = fm(&qm);
    let injector = fm.feature().unwrap();
    let engine = FastEngine
        .run(
            &qm,
            &images,
            100,
            Some(FeatureFaults {
                injector,
                seed: 9,
                trial: 4,
            }),
        )
        .unwrap();
    let qat = Qat {
        formats: &f,
        datapath: Datapath::INT8,
    };
    let faults = Faults {
        feature: Some(injector),
        weight: None,
        seed: 9,
        trial: 4,
        first_index: 100,
    };
    let tape = net.forward(&images, n, Mode::Eval, Some(qat), Some(faults));
    let step = Grid::new(qm.output_format()).step;
    let ours: Vec<i32> = tape.logits().iter().map(|&v| (v / step) as i32).collect();
    (ours, engine.concat(), fm)
}

#[test]
fn faulty_eval_forward_equals_the_engine() {
    // with batch norms in evaluation form the faulty QAT forward is the
    // engine: same injector, same streams, same codes
    let (ours, engine, _) =
        engine_and_eval_forward(3, |_| FaultModel::parse_feature_flag("mibb:1e-2").unwrap());
    assert_eq!(ours, engine);
}

#[test]
fn faulty_eval_forward_with_buffer_flips_equals_the_engine() {
    // SRAM-buffer flips (input copies, stored codes after the fused ReLU)
    // on top of MiBB: the same streams as the engine, draw for draw
    let flips = |qm: &quant::QModel| {
        let mut text = String::from("[feature]\nkind = \"mibb\"\np = 1e-3\n");
        for (i, l) in qm.mac_layers().enumerate() {
            // both kinds on some layers, one on others
            text += &format!(
                "[[layer]]\nname = \"{}\"\ninput_flip = {}\nstored_flip = {}\n",
                l.name,
                [2e-3, 0.0, 1e-3][i % 3],
                [1e-3, 3e-3, 0.0][i % 3]
            );
        }
        FaultModel::parse_str(&text, "flips.toml").unwrap()
    };
    let (ours, engine, _) = engine_and_eval_forward(4, flips);
    assert_eq!(ours, engine);
    // stuck cells of the feature-map buffers: the same cells per draw
    let stuck = |qm: &quant::QModel| {
        let mut text = String::from(
            "[stuck_cells.ifmap]\nwords = 300\np0 = 2e-3\np1 = 2e-3\n\
             [stuck_cells.ofmap]\nwords = 200\np0 = 1e-3\np1 = 3e-3\n",
        );
        let l = qm.mac_layers().next().unwrap();
        text += &format!("[[layer]]\nname = \"{}\"\nstored_flip = 1e-3\n", l.name);
        FaultModel::parse_str(&text, "stuck.toml").unwrap()
    };
    let (ours, engine, _) = engine_and_eval_forward(4, stuck);
    assert_eq!(ours, engine);
    let flips_only = |qm: &quant::QModel| {
        let l = qm.mac_layers().next().unwrap();
        let text = format!("[[layer]]\nname = \"{}\"\nstored_flip = 1e-3\n", l.name);
        FaultModel::parse_str(&text, "flips.toml").unwrap()
    };
    let (_, without, _) = engine_and_eval_forward(4, flips_only);
    assert_ne!(without, engine, "the stuck cells change some logits");
    // and the flips did something: MiBB alone gives other logits
    let (_, mibb_only, _) =
        engine_and_eval_forward(4, |_| FaultModel::parse_feature_flag("mibb:1e-3").unwrap());
    assert_ne!(mibb_only, engine);
}

#[test]
fn filter_flips_of_a_one_image_forward_equal_the_engine() {
    // the engines draw filter-buffer flips per image, a training forward
    // once per forward (keyed by its first image): with one image per
    // forward the two are the same draws
    let n = 6;
    let (graph, images, _) = setup(n);
    let weights = Weights::random(&graph, 8);
    let net = Network::new(&graph, Params::from_weights(&graph, &weights).unwrap());
    let ranges = quant::calibrate(&graph, &weights, &images).unwrap();
    let qm = quant::build::quantize_with_ranges(&graph, &weights, Datapath::INT8, &ranges).unwrap();
    let f = net.plan.formats(&ranges, 8);
    let mut text = String::new();
    for l in qm.mac_layers() {
        text += &format!("[[layer]]\nname = \"{}\"\nfilter_flip = 2e-3\n", l.name);
    }
    let fm = FaultModel::parse_str(&text, "filter.toml").unwrap();
    let injector = fm.feature().unwrap();
    let ff = FeatureFaults {
        injector,
        seed: 2,
        trial: 1,
    };
    let engine = FastEngine.run(&qm, &images, 50, Some(ff)).unwrap();
    let clean = FastEngine.run(&qm, &images, 50, None).unwrap();
    assert_ne!(engine, clean, "the flips change some logits");
    let qat = Qat {
        formats: &f,
        datapath: Datapath::INT8,
    };
    let per = graph.input_shape().numel();
    let step = Grid::new(qm.output_format()).step;
    let mut changed = 0;
    for (i, img) in images.chunks(per).enumerate() {
        let faults = Faults {
            feature: Some(injector),
            weight: None,
            seed: 2,
            trial: 1,
            first_index: 50 + i as u64,
        };
        let tape = net.forward(img, 1, Mode::Eval, Some(qat), Some(faults));
        let ours: Vec<i32> = tape.logits().iter().map(|&v| (v / step) as i32).collect();
        assert_eq!(ours, engine[i], "image {i}");
        changed += tape.hits.iter().map(|h| h.weight_changed).sum::<u64>();
    }
    assert!(changed > 0);
}

#[test]
fn weight_faults_hit_codes_at_the_stuck_at_rate() {
    let n = 16;
    with_qat_net(n, 6, |_, images, _, net, qat| {
        // sa:P = per-bit stuck-at-0 and stuck-at-1 with P/2 each: each bit of a
        // code changes with probability P/2
        let p = 2e-2;
        let fm = FaultModel::parse_weight_flag(&format!("sa:{p}")).unwrap();
        let clean = net.forward(images, n, Mode::Train, Some(qat), None);
        let (mut changed, mut total) = (0u64, 0u64);
        for trial in 0..4 {
            let faults = Faults {
                feature: None,
                weight: fm.weight(),
                seed: 1,
                trial,
                first_index: 0,
            };
            let faulty = net.forward(images, n, Mode::Frozen(&clean.bn), Some(qat), Some(faults));
            for h in &faulty.hits {
                changed += h.weight_changed;
                total += h.weight_total;
            }
        }
        let q = 1.0 - (1.0 - p / 2.0f64).powi(8);
        let expected = q * total as f64;
        let sd = (q * (1.0 - q) * total as f64).sqrt();
        assert!(total > 10_000);
        assert!(
            (changed as f64 - expected).abs() <= 5.0 * sd,
            "changed {changed} of {total}, expected {expected} +- {sd}"
        );
    })
}

#[test]
fn ftt_step_reports_a_faulty_loss() {
    let n = 64;
    let (graph, images, labels) = setup(n);
    let mut cfg = TrainConfig::new(1, 32);
    cfg.qat_warmup_steps = 0;
    cfg.ftt = Some(Ftt {
        model: FaultModel::parse_feature_flag("mibb:1e-2").unwrap(),
        alpha: 0.5,
    });
    let mut t = Trainer::new(&graph, cfg, Params::init(&graph, 2)).unwrap();
    t.calibrate(&images);
    let st = t.train_step(&images[..32 * 784], &labels[..32]);
    assert!(st.faulty_loss > 0.0 && st.faulty_loss != st.loss, "{st:?}");
}

/// `[stuck_macs]` on a grid of `dataflow` with every register kind the
/// grid has, dense enough that most layers of the tiny VGG are reached.
fn stuck_macs_model(dataflow: &str) -> FaultModel {
    let sites = if dataflow == "bit-serial" {
        "filter_rows = 6\nbits_per_cycle = 2\nact = { p0 = 2e-3, p1 = 2e-3 }\n\
         accumulator = { p0 = 1e-3, p1 = 1e-3 }\n"
    } else {
        "act = { p0 = 1e-3, p1 = 1e-3 }\nweight = { p0 = 1e-3, p1 = 2e-3 }\n\
         product = { p1 = 1e-3 }\naccumulator = { p0 = 1e-3, p1 = 1e-3 }\n"
    };
    let text = format!("[stuck_macs]\ndataflow = \"{dataflow}\"\nrows = 5\ncols = 3\n{sites}");
    FaultModel::parse_str(&text, "stuck_macs.toml").unwrap()
}

#[test]
fn faulty_eval_forward_with_stuck_macs_equals_the_engine() {
    // the float forward asks the fault model for the accumulators its
    // stuck bits change: with batch norms in evaluation form that is the
    // engine's recomputation, code for code, on every grid
    let (_, clean, _) =
        engine_and_eval_forward(6, |_| FaultModel::parse_feature_flag("mibb:0").unwrap());
    for dataflow in ["os", "ws", "is", "bit-serial"] {
        let (ours, engine, _) = engine_and_eval_forward(6, |_| stuck_macs_model(dataflow));
        assert_eq!(ours, engine, "{dataflow}");
        assert_ne!(
            clean, engine,
            "{dataflow}: the stuck bits change some logits"
        );
    }
}

#[test]
fn ftt_trains_against_stuck_mac_units() {
    // the training forward (batch statistics) applies them too: the faulty
    // half of the step sees other logits than the clean one, and the
    // changed outputs are counted at the layers' fault sites
    let n = 32;
    with_qat_net(n, 5, |graph, images, labels, net, qat| {
        let fm = stuck_macs_model("os");
        let faults = Faults {
            feature: fm.feature(),
            weight: None,
            seed: 3,
            trial: 1,
            first_index: 0,
        };
        let clean = net.forward(images, n, Mode::Train, Some(qat), None);
        let faulty = net.forward(images, n, Mode::Train, Some(qat), Some(faults));
        let changed: u64 = faulty.hits.iter().map(|h| h.feature_changed).sum();
        assert!(changed > 0, "no output changed");
        let (lc, _, _) = cross_entropy(clean.logits(), labels, 1.0);
        let (lf, _, _) = cross_entropy(faulty.logits(), labels, 1.0);
        assert_ne!(lc, lf);
        // another chip (trial) draws other stuck bits
        let other = net.forward(
            images,
            n,
            Mode::Train,
            Some(qat),
            Some(Faults { trial: 2, ..faults }),
        );
        assert_ne!(other.logits(), faulty.logits());

        let mut cfg = TrainConfig::new(1, n);
        cfg.qat_warmup_steps = 0;
        cfg.ftt = Some(Ftt {
            model: stuck_macs_model("ws"),
            alpha: 0.5,
        });
        let mut t = Trainer::new(graph, cfg, Params::init(graph, 2)).unwrap();
        t.calibrate(images);
        let st = t.train_step(images, labels);
        assert!(
            st.faulty_loss.is_finite() && st.faulty_loss != st.loss,
            "{st:?}"
        );
    })
}

/// One FTT step applies exactly `(1-alpha) dCE(clean) + alpha dCE(faulty)`:
/// the step's two halves (run side by side) give the same parameters, bit
/// for bit, as the clean and the faulty forward/backward run one after the
/// other into one gradient buffer.
#[test]
fn ftt_step_applies_the_clean_and_the_faulty_gradient() {
    let n = 32;
    let (graph, images, labels) = setup(n);
    let mut cfg = TrainConfig::new(1, n);
    cfg.qat_warmup_steps = 0;
    cfg.momentum = 0.0;
    cfg.weight_decay = 0.0;
    cfg.clip = 0.0;
    cfg.ftt = Some(Ftt {
        model: FaultModel::parse_feature_flag("mibb:1e-2").unwrap(),
        alpha: 0.3,
    });
    let mut stepped = Trainer::new(&graph, cfg.clone(), Params::init(&graph, 5)).unwrap();
    stepped.calibrate(&images);
    let mut manual = Trainer::new(&graph, cfg.clone(), Params::init(&graph, 5)).unwrap();
    manual.calibrate(&images);

    let formats = manual.formats.clone().unwrap();
    let qat = Qat {
        formats: &formats,
        datapath: cfg.datapath,
    };
    let net = &manual.net;
    let mut grads = net.params.zeros_like();
    let tape = net.forward(&images, n, Mode::Train, Some(qat), None);
    let (_, d, _) = cross_entropy(tape.logits(), &labels, 0.7);
    net.backward(&tape, &d, &mut grads);
    let faults = manual.step_faults().unwrap();
    let ftape = net.forward(&images, n, Mode::Train, Some(qat), Some(faults));
    let (_, fd, _) = cross_entropy(ftape.logits(), &labels, 0.3);
    assert_ne!(fd, d, "the faulty forward must differ from the clean one");
    net.backward(&ftape, &fd, &mut grads);
    let mut params = manual.net.params.clone();
    manual.sgd.step(&mut params, &grads, cfg.lr as f32);

    stepped.train_step(&images, &labels);
    let mut compared = 0;
    for (id, node) in graph.nodes.iter().enumerate() {
        if matches!(node.op, Op::Conv2d { .. } | Op::Linear { .. }) {
            for &t in &params.of_node[id] {
                assert_eq!(stepped.net.params.data[t], params.data[t], "node {id}");
                compared += 1;
            }
        }
    }
    assert!(compared > 0);
}

/// QAT evaluation forward == engine codes for the shipped architectures.
fn exact_on(path: &str) {
    let imgs = data::load(None, Split::Test).unwrap().take(6);
    let graph = model::load_model(std::path::Path::new(path), imgs.shape).unwrap();
    let weights = Weights::random(&graph, 4);
    let ranges = quant::calibrate(&graph, &weights, &imgs.images).unwrap();
    let qm = quant::build::quantize_with_ranges(&graph, &weights, Datapath::INT8, &ranges).unwrap();
    let engine = FastEngine.run(&qm, &imgs.images, 0, None).unwrap();
    let net = Network::new(&graph, Params::from_weights(&graph, &weights).unwrap());
    let f = net.plan.formats(&ranges, 8);
    let qat = Qat {
        formats: &f,
        datapath: Datapath::INT8,
    };
    let tape = net.forward(&imgs.images, imgs.len(), Mode::Eval, Some(qat), None);
    let step = Grid::new(qm.output_format()).step;
    let ours: Vec<i32> = tape.logits().iter().map(|&v| (v / step) as i32).collect();
    assert_eq!(ours, engine.concat(), "{path}");
}

#[test]
fn qat_forward_is_the_engine_on_cells_and_mobilenet() {
    exact_on("models/w-ftt-net.toml");
    exact_on("models/mobilenetv2.toml");
    exact_on("models/resnet20.toml");
}
