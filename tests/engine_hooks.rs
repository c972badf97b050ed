//! Fault hook points: called per image per conv/linear layer on the
//! requantized pre-activation codes (before ReLU), with the stream
//! `stream(seed, trial, image, node)`, identically in every engine, and
//! results independent of thread count and batching. Weight hooks: once per
//! layer per chip with `stream(seed, trial, u64::MAX, node)`.

mod engine_common;

use engine_common::{images, random_graph, RandomBitFlips, Recorder};
use ftnas::engine::{self, reference, Engine, FeatureFaults};
use ftnas::fixed::{requantize, Datapath};
use ftnas::model::{Graph, GraphBuilder, Op, Shape, Weights};
use ftnas::quant::{self, QModel, QOp};
use rand::Rng;

fn all_engines() -> Vec<Box<dyn Engine>> {
    vec![
        engine::by_name("reference").unwrap(),
        engine::by_name("fast").unwrap(),
    ]
}

fn small_net() -> Graph {
    let mut b = GraphBuilder::new("hooks", Shape::new(1, 4, 4));
    let conv = |out| Op::Conv2d {
        out_channels: out,
        kernel: (3, 3),
        stride: (1, 1),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 1,
        bias: true,
    };
    let c1 = b.add("c1", conv(2), &[0]).unwrap();
    let r1 = b.add("r1", Op::Relu, &[c1]).unwrap();
    let c2 = b.add("c2", conv(2), &[r1]).unwrap();
    let f = b.add("flat", Op::Flatten, &[c2]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[f],
    )
    .unwrap();
    b.finish()
}

fn small_model() -> (Graph, QModel) {
    let g = small_net();
    let w = Weights::random(&g, 5);
    let q = quant::quantize(&g, &w, Datapath::INT8, &images(g.input_shape(), 4, 1)).unwrap();
    (g, q)
}

#[test]
fn feature_hook_sees_pre_activation_codes_in_every_engine() {
    let (g, q) = small_model();
    let img = images(g.input_shape(), 1, 9);
    let clean = reference::run_image_all(&q, &img, 0, None);
    let mut seen = Vec::new();
    for e in all_engines() {
        // Every code set to -3 by the injector: a ReLU after the hook makes
        // them 0, so c2 sees zeros and outputs its requantized bias.
        let rec = Recorder::new(0, Some(-3));
        let faults = FeatureFaults {
            injector: &rec,
            seed: 42,
            trial: 5,
        };
        let logits = e.run(&q, &img, 17, Some(faults)).unwrap();
        let mut calls = rec.calls.into_inner().unwrap();
        calls.sort_by_key(|c| c.node);
        let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["c1", "c2", "fc"], "engine {}", e.name());
        assert_eq!(
            calls.iter().map(|c| c.is_conv).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(
            calls.iter().map(|c| c.macs_per_output).collect::<Vec<_>>(),
            [9, 18, 32]
        );
        assert_eq!(calls.iter().map(|c| c.len).collect::<Vec<_>>(), [32, 32, 3]);
        for c in &calls {
            let want: u64 = ftnas::fault::stream(42, 5, 17, c.node as u64).random();
            assert_eq!(c.first_random, want, "stream of {}", c.name);
        }
        // c1's hook got the clean requantized pre-activation codes
        let QOp::Mac(l1) = &q.nodes[1].op else {
            panic!("node 1 is c1")
        };
        let mut pre = vec![0; 32];
        reference::mac_layer_reference(l1, &clean[0], &q.datapath, &mut pre);
        assert_eq!(calls[0].codes, pre);
        assert!(
            pre.iter().any(|&v| v < 0),
            "test needs negative pre-activations"
        );
        // c2 saw an all-zero input: its outputs are the requantized biases
        let QOp::Mac(l2) = &q.nodes[2].op else {
            panic!("node 2 is c2")
        };
        let want: Vec<i32> = (0..32)
            .map(|i| requantize(l2.bias[i / 16] as i64, l2.acc_frac, l2.out_format.frac, 8) as i32)
            .collect();
        assert_eq!(calls[1].codes, want);
        // the logits are the injector's -3s (no activation on fc)
        assert_eq!(logits, vec![vec![-3, -3, -3]]);
        seen.push(calls);
    }
    assert_eq!(seen[0], seen[1], "engines must call the hooks identically");
}

#[test]
fn feature_hook_delta_reaches_the_output() {
    let (g, q) = small_model();
    let img = images(g.input_shape(), 1, 3);
    let clean = engine::ReferenceEngine.run(&q, &img, 0, None).unwrap();
    for e in all_engines() {
        let rec = Recorder::new(1, None);
        let faults = FeatureFaults {
            injector: &rec,
            seed: 0,
            trial: 0,
        };
        // Only the fc hook changes the logits directly; c1/c2 deltas may or
        // may not propagate, so compare against the fc call's input.
        let got = e.run(&q, &img, 0, Some(faults)).unwrap();
        let calls = rec.calls.into_inner().unwrap();
        let fc = calls.iter().find(|c| c.name == "fc").unwrap();
        let mut want = fc.codes.clone();
        want[0] = (want[0] + 1).min(127);
        assert_eq!(got[0], want, "engine {}", e.name());
        assert_eq!(clean[0].len(), 3);
    }
}

#[test]
fn weight_hook_once_per_layer_per_chip() {
    let (_, q) = small_model();
    let rec = Recorder::new(1, None);
    let chip = q.with_weight_faults(&rec, 9, 4);
    let calls = rec.calls.into_inner().unwrap();
    let layers: Vec<_> = q.mac_layers().collect();
    assert_eq!(calls.len(), layers.len());
    for (c, (l, cl)) in calls.iter().zip(layers.iter().zip(chip.mac_layers())) {
        assert_eq!(c.node, l.node);
        assert_eq!(c.codes, l.weights);
        let want: u64 = ftnas::fault::stream(9, 4, u64::MAX, l.node as u64).random();
        assert_eq!(c.first_random, want);
        let max = (1 << (l.weight_format.bits - 1)) - 1;
        assert_eq!(cl.weights[0], (l.weights[0] + 1).min(max));
        assert_eq!(cl.weights[1..], l.weights[1..]);
    }
}

#[test]
fn results_do_not_depend_on_threads_or_batching() {
    let g = random_graph(77);
    let w = Weights::random(&g, 78);
    let q = quant::quantize(&g, &w, Datapath::INT8, &images(g.input_shape(), 4, 79)).unwrap();
    let imgs = images(g.input_shape(), 6, 80);
    let flips = RandomBitFlips { p: 0.1 };
    let faults = FeatureFaults {
        injector: &flips,
        seed: 1,
        trial: 2,
    };
    let n = g.input_shape().numel();
    for e in all_engines() {
        let runs: Vec<Vec<Vec<i32>>> = [1, 2]
            .iter()
            .map(|&t| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap();
                pool.install(|| e.run(&q, &imgs, 100, Some(faults)).unwrap())
            })
            .collect();
        assert_eq!(runs[0], runs[1], "engine {}: 1 vs 2 threads", e.name());
        let mut split = e.run(&q, &imgs[..2 * n], 100, Some(faults)).unwrap();
        split.extend(e.run(&q, &imgs[2 * n..], 102, Some(faults)).unwrap());
        assert_eq!(runs[0], split, "engine {}: batching", e.name());
        let clean = e.run(&q, &imgs, 100, None).unwrap();
        assert_ne!(clean, runs[0], "the faults must change something");
    }
}

/// A fault model with SRAM-buffer flips on one layer (`key` is
/// `input_flip`, `filter_flip` or `stored_flip`).
fn buffer_flips(layer: &str, key: &str, p: f64) -> ftnas::fault::FaultModel {
    let text = format!("[[layer]]\nname = \"{layer}\"\n{key} = {p:?}\n");
    ftnas::fault::FaultModel::parse_str(&text, "buffer-flips.toml").unwrap()
}

/// The quantized node of the conv/linear layer `name` (a fused node keeps
/// the name of its last graph node, the layer its conv's).
fn mac_node(q: &QModel, name: &str) -> usize {
    q.nodes
        .iter()
        .position(|n| matches!(&n.op, QOp::Mac(l) if l.name == name))
        .unwrap()
}

/// Every node's codes of one image of the small model, clean and with
/// `key` = 1 (all 8 bits flipped) on `layer`; both engines give the faulty
/// run's logits bit for bit.
fn flipped_run(layer: &str, key: &str) -> (QModel, Vec<Vec<i32>>, Vec<Vec<i32>>) {
    let (g, q) = small_model();
    let img = images(g.input_shape(), 1, 9);
    let fm = buffer_flips(layer, key, 1.0);
    let faults = FeatureFaults {
        injector: fm.feature().unwrap(),
        seed: 3,
        trial: 0,
    };
    let clean = reference::run_image_all(&q, &img, 0, None);
    let faulty = reference::run_image_all(&q, &img, 0, Some(faults));
    for e in all_engines() {
        let logits = e.run(&q, &img, 0, Some(faults)).unwrap();
        assert_eq!(&logits[0], faulty.last().unwrap(), "{}", e.name());
    }
    (q, clean, faulty)
}

#[test]
fn stored_flips_act_after_the_activation_and_every_reader_sees_them() {
    let (q, clean, faulty) = flipped_run("c1", "stored_flip");
    let c1 = mac_node(&q, "c1");
    // p = 1 flips all 8 bits of every stored code: !y, after the activation
    // (a ReLU output y >= 0 becomes negative, which no pre-activation
    // fault followed by ReLU can give)
    let want: Vec<i32> = clean[c1].iter().map(|&y| !y).collect();
    assert_eq!(faulty[c1], want);
    if let QOp::Mac(l) = &q.nodes[c1].op {
        if !matches!(l.activation, quant::Activation::None) {
            assert!(faulty[c1].iter().all(|&y| y < 0));
        }
    }
    // every later node reads the flipped codes: the rest of the network is
    // the clean network run on them
    let c2 = mac_node(&q, "c2");
    let QOp::Mac(l2) = &q.nodes[c2].op else {
        panic!("c2 is a MAC layer")
    };
    let reader = q.nodes[c2].inputs[0];
    let mut out = vec![0; q.nodes[c2].shape.numel()];
    reference::mac_layer_reference(l2, &faulty[reader], &q.datapath, &mut out);
    engine::finish_mac_output(l2, &mut out, 0, None);
    assert_eq!(faulty[c2], out);
    assert_ne!(faulty[c2], clean[c2]);
}

#[test]
fn input_flips_are_seen_by_their_layer_only() {
    let (q, clean, faulty) = flipped_run("c2", "input_flip");
    let c2 = mac_node(&q, "c2");
    let reader = q.nodes[c2].inputs[0];
    // the tensor itself stays clean (other readers see it clean) ...
    for k in 0..c2 {
        assert_eq!(faulty[k], clean[k], "node {}", q.nodes[k].name);
    }
    // ... and c2 computes on its own flipped copy
    let QOp::Mac(l2) = &q.nodes[c2].op else {
        panic!("c2 is a MAC layer")
    };
    let flipped: Vec<i32> = clean[reader].iter().map(|&y| !y).collect();
    let mut out = vec![0; q.nodes[c2].shape.numel()];
    reference::mac_layer_reference(l2, &flipped, &q.datapath, &mut out);
    engine::finish_mac_output(l2, &mut out, 0, None);
    assert_eq!(faulty[c2], out);
}

#[test]
fn filter_flips_corrupt_their_layers_weights_for_the_image() {
    let (q, clean, faulty) = flipped_run("c2", "filter_flip");
    let c2 = mac_node(&q, "c2");
    // every other layer computes with its own clean weights ...
    for k in 0..c2 {
        assert_eq!(faulty[k], clean[k], "node {}", q.nodes[k].name);
    }
    // ... and c2 with every bit of every weight code flipped (p = 1)
    let QOp::Mac(l2) = &q.nodes[c2].op else {
        panic!("c2 is a MAC layer")
    };
    let mut flipped = l2.clone();
    for w in &mut flipped.weights {
        *w = !*w;
    }
    let mut out = vec![0; q.nodes[c2].shape.numel()];
    reference::mac_layer_reference(
        &flipped,
        &clean[q.nodes[c2].inputs[0]],
        &q.datapath,
        &mut out,
    );
    engine::finish_mac_output(l2, &mut out, 0, None);
    assert_eq!(faulty[c2], out);
    assert_ne!(faulty[c2], clean[c2]);
}

#[test]
fn filter_flips_are_drawn_per_image() {
    // at a rate where about half the images of a layer get a flipped
    // weight bit, the hit images differ from image to image
    let (g, q) = small_model();
    let c2 = mac_node(&q, "c2");
    let QOp::Mac(l2) = &q.nodes[c2].op else {
        panic!("c2 is a MAC layer")
    };
    let bits = l2.weights.len() * q.datapath.weight_bits as usize;
    let p = std::f64::consts::LN_2 / bits as f64;
    let fm = buffer_flips("c2", "filter_flip", p);
    let faults = FeatureFaults {
        injector: fm.feature().unwrap(),
        seed: 5,
        trial: 2,
    };
    let hit: Vec<Vec<(usize, i32)>> = (0..64)
        .map(|i| engine::filter_flips(l2, i, Some(faults)))
        .collect();
    let n_hit = hit.iter().filter(|h| !h.is_empty()).count();
    assert!((16..=48).contains(&n_hit), "{n_hit} of 64 images hit");
    let distinct: std::collections::HashSet<_> = hit.iter().filter(|h| !h.is_empty()).collect();
    assert!(distinct.len() > n_hit / 2, "images share their flips");
    // the engines follow the draws: an image without a hit is the clean run
    let imgs = images(g.input_shape(), 8, 4);
    let clean = engine::by_name("fast")
        .unwrap()
        .run(&q, &imgs, 0, None)
        .unwrap();
    let faulty = engine::by_name("fast")
        .unwrap()
        .run(&q, &imgs, 0, Some(faults))
        .unwrap();
    for i in 0..8 {
        if hit[i].is_empty() {
            assert_eq!(faulty[i], clean[i], "image {i} has no flip");
        }
    }
}

#[test]
fn buffer_flips_are_identical_in_every_engine_and_batching() {
    for seed in 0..12u64 {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed);
        let q = quant::quantize(&g, &w, Datapath::INT8, &images(g.input_shape(), 4, seed)).unwrap();
        let mut text = String::new();
        for (i, l) in q.mac_layers().enumerate() {
            // filter flips at a rate that leaves some images' weights clean
            let (key, p) = [
                ("input_flip", 0.02),
                ("stored_flip", 0.02),
                ("filter_flip", 0.002),
            ][(i + seed as usize) % 3];
            text += &format!("[[layer]]\nname = \"{}\"\n{key} = {p}\n", l.name);
        }
        // stuck cells of the feature-map buffers on every other graph
        if seed % 2 == 0 {
            text += "[stuck_cells.ifmap]\nwords = 37\np0 = 0.01\np1 = 0.01\n";
            text += "[stuck_cells.ofmap]\nwords = 50\np0 = 0.005\np1 = 0.02\n";
        }
        let fm = ftnas::fault::FaultModel::parse_str(&text, "f.toml").unwrap();
        let faults = FeatureFaults {
            injector: fm.feature().unwrap(),
            seed,
            trial: 1,
        };
        let imgs = images(g.input_shape(), 5, seed + 1);
        let want = engine::by_name("reference")
            .unwrap()
            .run(&q, &imgs, 7, Some(faults))
            .unwrap();
        let clean = engine::by_name("reference")
            .unwrap()
            .run(&q, &imgs, 7, None)
            .unwrap();
        let fast = engine::by_name("fast").unwrap();
        assert_eq!(
            fast.run(&q, &imgs, 7, Some(faults)).unwrap(),
            want,
            "seed {seed}"
        );
        // one image at a time: the same draws
        let n = g.input_shape().numel();
        for (i, img) in imgs.chunks(n).enumerate() {
            let one = fast.run(&q, img, 7 + i as u64, Some(faults)).unwrap();
            assert_eq!(one[0], want[i], "seed {seed} image {i}");
        }
        if seed == 0 {
            assert_ne!(want, clean, "flips at 2% per bit change some logits");
        }
    }
}

/// Stuck MAC-unit bits (`[stuck_macs]`) on every grid, with filter and
/// input flips beside them, on random networks and datapaths (wrapping
/// and saturating, 2-16-bit operands): the fast engine hands the model
/// each image's raw sums, which it corrects term by term where the sum
/// stays linear; the reference engine hands none and the model recomputes
/// every output it reaches. Same codes, image by image.
#[test]
fn stuck_macs_from_the_raw_sums_equal_the_recomputation() {
    use engine_common::datapath;
    let mut changed = 0;
    for seed in 0..16u64 {
        let g = random_graph(seed);
        let w = Weights::random(&g, seed);
        let dp = datapath(
            seed as u8,
            (seed * 7) as u8,
            (seed % 5) as u8,
            seed % 4 == 3,
        );
        let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 4, seed)).unwrap();
        let grid = ["os", "ws", "is", "bit-serial"][seed as usize % 4];
        let mut text = format!("[stuck_macs]\ndataflow = \"{grid}\"\nrows = 3\ncols = 2\n");
        text += if grid == "bit-serial" {
            "filter_rows = 2\nbits_per_cycle = 1\nact = { p0 = 0.02, p1 = 0.02 }\n\
             accumulator = { p1 = 0.005 }\n"
        } else if seed % 3 == 0 {
            // operand bits only: every reached column stays linear
            "act = { p0 = 0.03, p1 = 0.03 }\nweight = { p0 = 0.02, p1 = 0.04 }\n"
        } else {
            "act = { p0 = 0.02, p1 = 0.02 }\nweight = { p0 = 0.02, p1 = 0.03 }\n\
             product = { p1 = 0.005 }\naccumulator = { p0 = 0.003, p1 = 0.003 }\n"
        };
        for (i, l) in q.mac_layers().enumerate() {
            let (key, p) = [("filter_flip", 0.003), ("input_flip", 0.01)][i % 2];
            text += &format!("[[layer]]\nname = \"{}\"\n{key} = {p}\n", l.name);
        }
        let fm = ftnas::fault::FaultModel::parse_str(&text, "f.toml").unwrap();
        let faults = FeatureFaults {
            injector: fm.feature().unwrap(),
            seed,
            trial: 2,
        };
        let imgs = images(g.input_shape(), 4, seed + 3);
        let reference = engine::by_name("reference").unwrap();
        let want = reference.run(&q, &imgs, 0, Some(faults)).unwrap();
        let fast = engine::by_name("fast").unwrap();
        assert_eq!(
            fast.run(&q, &imgs, 0, Some(faults)).unwrap(),
            want,
            "seed {seed} ({grid}, {dp:?})"
        );
        let without = ftnas::fault::FaultModel::parse_str(
            &text[text.find("[[layer]]").unwrap_or(text.len())..],
            "f.toml",
        )
        .unwrap();
        let clean_run = reference
            .run(
                &q,
                &imgs,
                0,
                without.feature().map(|injector| FeatureFaults {
                    injector,
                    seed,
                    trial: 2,
                }),
            )
            .unwrap();
        if clean_run != want {
            changed += 1;
        }
    }
    assert!(
        changed >= 8,
        "the stuck bits changed the logits of only {changed} of 16 networks"
    );
}
