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
