//! Finite-difference gradient checks of the training backward pass, for
//! every op of the model IR (float forward, batch-norm batch statistics and
//! fixed statistics), over random small shapes and parameters.

use ftnas::model::{Graph, GraphBuilder, NodeId, Op, Shape};
use ftnas::train::{Mode, Network, Params};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn conv(out: usize, k: usize, s: usize, p: usize, d: usize, g: usize, bias: bool) -> Op {
    Op::Conv2d {
        out_channels: out,
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
        dilation: (d, d),
        groups: g,
        bias,
    }
}

/// Every op in one graph: conv (bias, depthwise, dilated grouped, strided),
/// folded and standalone batch norm, ReLU, ReLU6, max/avg pool, add,
/// concat, crop, zero, global average pool, flatten, linear.
fn all_ops(c: usize, h: usize, w: usize) -> Graph {
    let mut b = GraphBuilder::new("all_ops", Shape::new(c, h, w));
    let add = |b: &mut GraphBuilder, n: &str, op: Op, i: &[NodeId]| b.add(n, op, i).unwrap();
    let c1 = add(&mut b, "c1", conv(4, 3, 1, 1, 1, 1, true), &[0]);
    let bn1 = add(&mut b, "bn1", Op::BatchNorm { eps: 1e-5 }, &[c1]);
    let r1 = add(&mut b, "r1", Op::Relu, &[bn1]);
    let c2 = add(&mut b, "c2", conv(4, 3, 1, 1, 1, 4, false), &[r1]);
    let r6 = add(&mut b, "r6", Op::Relu6, &[c2]);
    let c3 = add(&mut b, "c3", conv(4, 3, 1, 2, 2, 2, false), &[r1]);
    let mp = add(
        &mut b,
        "mp",
        Op::MaxPool {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
        },
        &[c3],
    );
    let sum = add(&mut b, "sum", Op::Add, &[r6, mp]);
    let ap = add(
        &mut b,
        "ap",
        Op::AvgPool {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
        },
        &[sum],
    );
    let cat = add(&mut b, "cat", Op::Concat, &[ap, r1]);
    let bn2 = add(&mut b, "bn2", Op::BatchNorm { eps: 1e-5 }, &[cat]);
    let cr = add(&mut b, "cr", Op::Crop { top: 1, left: 1 }, &[bn2]);
    let c4 = add(&mut b, "c4", conv(5, 3, 2, 1, 1, 1, false), &[cr]);
    let z = add(&mut b, "z", Op::Zero { stride: 1 }, &[c4]);
    let s2 = add(&mut b, "s2", Op::Add, &[c4, z]);
    let gap = add(&mut b, "gap", Op::GlobalAvgPool, &[s2]);
    let fl = add(&mut b, "fl", Op::Flatten, &[gap]);
    add(
        &mut b,
        "fc",
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[fl],
    );
    b.finish()
}

/// Strided conv into max pool with stride, flatten of a spatial map, linear.
fn strided(c: usize, h: usize, w: usize) -> Graph {
    let mut b = GraphBuilder::new("strided", Shape::new(c, h, w));
    let c1 = b.add("c1", conv(3, 2, 2, 1, 1, 1, false), &[0]).unwrap();
    let mp = b
        .add(
            "mp",
            Op::MaxPool {
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0),
            },
            &[c1],
        )
        .unwrap();
    let fl = b.add("fl", Op::Flatten, &[mp]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 4,
            bias: false,
        },
        &[fl],
    )
    .unwrap();
    b.finish()
}

/// `sum(r * logits)` in f64.
fn loss(net: &Network, x: &[f32], n: usize, r: &[f32], batch_stats: bool) -> f64 {
    let mode = if batch_stats { Mode::Train } else { Mode::Eval };
    let tape = net.forward(x, n, mode, None, None);
    tape.logits()
        .iter()
        .zip(r)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Compare analytic and central-difference gradients on `coords` random
/// parameter entries. A coordinate where the two one-sided differences
/// disagree sits on a kink (ReLU, max, clamp) and is skipped; at least
/// half must be checked.
fn check(graph: &Graph, n: usize, seed: u64, batch_stats: bool) -> Result<(), TestCaseError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut params = Params::init(graph, seed);
    // non-trivial BN parameters and running statistics
    for i in 0..params.names.len() {
        if params.shapes[i].len() == 1 {
            for v in &mut params.data[i] {
                *v = if params.names[i].ends_with("running_var")
                    || params.names[i].ends_with(".weight")
                {
                    rng.random_range(0.5..1.5)
                } else {
                    rng.random_range(-0.5..0.5)
                };
            }
        }
    }
    let x: Vec<f32> = (0..n * graph.input_shape().numel())
        .map(|_| rng.random_range(-2.0..4.0))
        .collect();
    let mut net = Network::new(graph, params);
    let r: Vec<f32> = (0..n * graph.output_shape().numel())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mode = if batch_stats { Mode::Train } else { Mode::Eval };
    let tape = net.forward(&x, n, mode, None, None);
    let mut grads = net.params.zeros_like();
    net.backward(&tape, &r, &mut grads);

    let eps = 4e-3f32;
    let (mut checked, mut total) = (0, 0);
    // Draw coordinates until 12 away from kinks are checked (a random
    // network can have many coordinates near a ReLU or max-pool kink, so a
    // fixed number of draws made the test fail at random).
    for _ in 0..96 {
        if checked >= 12 {
            break;
        }
        let t = rng.random_range(0..net.params.names.len());
        if !net.params.trainable[t] {
            continue;
        }
        let j = rng.random_range(0..net.params.data[t].len());
        total += 1;
        let orig = net.params.data[t][j];
        let at = |v: f32, net: &mut Network| {
            net.params.data[t][j] = v;
            loss(net, &x, n, &r, batch_stats)
        };
        let l0 = at(orig, &mut net);
        let lp = at(orig + eps, &mut net);
        let lm = at(orig - eps, &mut net);
        let lp2 = at(orig + eps / 2.0, &mut net);
        let lm2 = at(orig - eps / 2.0, &mut net);
        net.params.data[t][j] = orig;
        let (fwd, bwd) = ((lp - l0) / eps as f64, (l0 - lm) / eps as f64);
        let half = (lp2 - lm2) / eps as f64;
        let scale = 1.0 + fwd.abs().max(bwd.abs());
        let fd = (lp - lm) / (2.0 * eps as f64);
        if (fwd - bwd).abs() > 0.01 * scale || (fd - half).abs() > 0.005 * scale {
            continue; // a kink inside [orig - eps, orig + eps]
        }
        checked += 1;
        let an = grads[t][j] as f64;
        prop_assert!(
            (fd - an).abs() <= 2e-2 * (1.0 + fd.abs()),
            "{}[{j}]: analytic {an}, finite difference {fd}",
            net.params.names[t]
        );
    }
    prop_assert!(
        checked >= 12,
        "only {checked} of {total} coordinates away from kinks"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn every_op_backward_matches_finite_differences(
        c in 1usize..3, h in 4usize..7, w in 4usize..7, n in 2usize..4, seed in 0u64..1000,
        batch_stats in any::<bool>(),
    ) {
        check(&all_ops(c, h, w), n, seed, batch_stats)?;
    }

    #[test]
    fn strided_conv_pool_and_flatten_match_finite_differences(
        c in 1usize..3, h in 4usize..9, w in 4usize..9, n in 1usize..4, seed in 0u64..1000,
    ) {
        check(&strided(c, h, w), n, seed, false)?;
    }
}
