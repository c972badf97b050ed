//! Shared helpers of the engine integration tests: random small graphs,
//! random datapaths, random images and tiny fault injectors.
#![allow(dead_code)]

use std::sync::Mutex;

use ftnas::fault::{FeatureInjector, LayerSite, WeightInjector};
use ftnas::fixed::{Datapath, Overflow};
use ftnas::model::{Graph, GraphBuilder, NodeId, Op, Shape};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A datapath from raw proptest numbers: act/weight bits 2..=16, psum bits
/// max(act, weight)..=32, either overflow rule.
pub fn datapath(act: u8, weight: u8, psum_extra: u8, saturate: bool) -> Datapath {
    let act = 2 + act % 15;
    let weight = 2 + weight % 15;
    let lo = act.max(weight).max(8);
    let psum = lo + psum_extra % (33 - lo);
    Datapath {
        act_bits: act,
        weight_bits: weight,
        psum_bits: psum,
        overflow: if saturate {
            Overflow::Saturate
        } else {
            Overflow::Wrap
        },
    }
}

/// `n` images of `shape` with pixels uniform in [0, 1).
pub fn images(shape: Shape, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n * shape.numel())
        .map(|_| rng.random::<f32>())
        .collect()
}

fn random_conv(rng: &mut Xoshiro256PlusPlus, cin: usize) -> Op {
    let k = (rng.random_range(1..=3), rng.random_range(1..=3));
    let groups = if rng.random_bool(0.3) {
        cin
    } else if cin.is_multiple_of(2) && rng.random_bool(0.3) {
        2
    } else {
        1
    };
    let out = groups * rng.random_range(1..=3);
    Op::Conv2d {
        out_channels: if groups == cin && rng.random_bool(0.5) {
            cin // depthwise
        } else {
            out
        },
        kernel: k,
        stride: (rng.random_range(1..=2), rng.random_range(1..=2)),
        padding: (
            rng.random_range(0..=k.0 / 2 + 1),
            rng.random_range(0..=k.1 / 2 + 1),
        ),
        dilation: (rng.random_range(1..=2), rng.random_range(1..=2)),
        groups,
        bias: rng.random_bool(0.5),
    }
}

fn same_conv(out: usize) -> Op {
    Op::Conv2d {
        out_channels: out,
        kernel: (3, 3),
        stride: (1, 1),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 1,
        bias: false,
    }
}

/// A random small graph using every op kind: convs of all geometries, BN
/// (foldable or not), ReLU/ReLU6, pools, add, concat, crop, zero, then
/// GAP or flatten and a linear classifier.
pub fn random_graph(seed: u64) -> Graph {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let input = Shape::new(
        rng.random_range(1..=3),
        rng.random_range(3..=7),
        rng.random_range(3..=7),
    );
    let mut b = GraphBuilder::new("random", input);
    let mut cur: NodeId = 0;
    let mut count = 0;
    let steps = rng.random_range(2..=6);
    let mut tries = 0;
    while count < steps && tries < 50 {
        tries += 1;
        let s = b.shape(cur);
        let name = |what: &str| format!("{what}{tries}");
        let added = match rng.random_range(0..12) {
            0 | 1 => b.add(name("conv"), random_conv(&mut rng, s.c), &[cur]),
            2 => b.add(name("bn"), Op::BatchNorm { eps: 1e-5 }, &[cur]),
            3 => b.add(name("relu"), Op::Relu, &[cur]),
            4 => b.add(name("relu6"), Op::Relu6, &[cur]),
            5 => {
                let k = rng.random_range(1..=3);
                let g = (k, k);
                let st = (rng.random_range(1..=2), rng.random_range(1..=2));
                let p = (rng.random_range(0..=k / 2), rng.random_range(0..=k / 2));
                if rng.random_bool(0.5) {
                    b.add(
                        name("maxpool"),
                        Op::MaxPool {
                            kernel: g,
                            stride: st,
                            padding: p,
                        },
                        &[cur],
                    )
                } else {
                    b.add(
                        name("avgpool"),
                        Op::AvgPool {
                            kernel: g,
                            stride: st,
                            padding: p,
                        },
                        &[cur],
                    )
                }
            }
            6 | 7 => {
                // residual: conv(+bn+relu) branch added to the trunk
                let c = b.add(name("rconv"), same_conv(s.c), &[cur]);
                c.and_then(|c| {
                    let c = if rng.random_bool(0.5) {
                        b.add(name("rbn"), Op::BatchNorm { eps: 1e-5 }, &[c])?
                    } else {
                        c
                    };
                    b.add(name("add"), Op::Add, &[cur, c])
                })
            }
            8 => {
                // factorized-reduce-like: concat of two convs, then BN (not foldable)
                let c1 = b.add(name("fa"), same_conv(s.c), &[cur]);
                c1.and_then(|c1| {
                    let cr = b.add(name("crop"), Op::Crop { top: 1, left: 1 }, &[cur])?;
                    let c2 = b.add(name("fb"), same_conv(1), &[cr])?;
                    let c1c = b.add(name("fcrop"), Op::Crop { top: 1, left: 1 }, &[c1])?;
                    let cat = b.add(name("cat"), Op::Concat, &[c1c, c2])?;
                    b.add(name("catbn"), Op::BatchNorm { eps: 1e-5 }, &[cat])
                })
            }
            9 => {
                let z = b.add(name("zero"), Op::Zero { stride: 1 }, &[cur]);
                z.and_then(|z| b.add(name("zadd"), Op::Add, &[cur, z]))
            }
            10 => b.add(name("crop"), Op::Crop { top: 1, left: 0 }, &[cur]),
            _ => b.add(name("zs"), Op::Zero { stride: 2 }, &[cur]),
        };
        if let Ok(id) = added {
            cur = id;
            count += 1;
        }
    }
    let flat = if rng.random_bool(0.5) {
        let g = b.add("gap", Op::GlobalAvgPool, &[cur]).unwrap();
        b.add("flatten", Op::Flatten, &[g]).unwrap()
    } else {
        b.add("flatten", Op::Flatten, &[cur]).unwrap()
    };
    b.add(
        "fc",
        Op::Linear {
            out_features: rng.random_range(2..=5),
            bias: true,
        },
        &[flat],
    )
    .unwrap();
    b.finish()
}

/// Feature injector flipping each code's bit `b` (b uniform in [0, bits))
/// with probability `p`, using only the given rng.
pub struct RandomBitFlips {
    pub p: f64,
}

impl FeatureInjector for RandomBitFlips {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        for c in codes.iter_mut() {
            if rng.random_bool(self.p) {
                let b = rng.random_range(0..site.format.bits as u32);
                *c ^= 1 << b;
            }
        }
    }
}

impl WeightInjector for RandomBitFlips {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        for c in codes.iter_mut() {
            if rng.random_bool(self.p) {
                let b = rng.random_range(0..site.format.bits as u32);
                *c ^= 1 << b;
            }
        }
    }
}

/// What one injector call saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub node: usize,
    pub name: String,
    pub is_conv: bool,
    pub macs_per_output: usize,
    pub len: usize,
    pub codes: Vec<i32>,
    pub first_random: u64,
}

/// Adds `delta` to element 0 (or replaces every code with `set_all`) and
/// records every call.
pub struct Recorder {
    pub delta: i32,
    pub set_all: Option<i32>,
    pub calls: Mutex<Vec<Call>>,
}

impl Recorder {
    pub fn new(delta: i32, set_all: Option<i32>) -> Recorder {
        Recorder {
            delta,
            set_all,
            calls: Mutex::new(Vec::new()),
        }
    }
    fn record(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.calls.lock().unwrap().push(Call {
            node: site.node,
            name: site.name.to_string(),
            is_conv: site.is_conv,
            macs_per_output: site.macs_per_output,
            len: codes.len(),
            codes: codes.to_vec(),
            first_random: rng.random(),
        });
        if let Some(v) = self.set_all {
            codes.fill(v);
        }
        codes[0] += self.delta;
    }
}

impl FeatureInjector for Recorder {
    fn inject(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.record(site, codes, rng)
    }
}

impl WeightInjector for Recorder {
    fn corrupt(&self, site: &LayerSite, codes: &mut [i32], rng: &mut Xoshiro256PlusPlus) {
        self.record(site, codes, rng)
    }
}
