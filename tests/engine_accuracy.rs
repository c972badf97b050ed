//! Fixed point agrees with f32 within quantization error: on a small
//! random-weight residual network, 16-bit logits are close to the float
//! logits and the top-1 class nearly always matches; 8-bit stays reasonable.

mod engine_common;

use engine_common::images;
use ftnas::engine::{Engine, FastEngine};
use ftnas::fixed::{Datapath, Overflow};
use ftnas::model::{float, Graph, GraphBuilder, Op, Shape, Weights};
use ftnas::quant;

fn conv(out: usize, stride: usize) -> Op {
    Op::Conv2d {
        out_channels: out,
        kernel: (3, 3),
        stride: (stride, stride),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 1,
        bias: false,
    }
}

fn small_resnet() -> Graph {
    let mut b = GraphBuilder::new("mini-resnet", Shape::new(1, 10, 10));
    let c = b.add("stem", conv(8, 1), &[0]).unwrap();
    let bn = b.add("stem_bn", Op::BatchNorm { eps: 1e-5 }, &[c]).unwrap();
    let x = b.add("stem_relu", Op::Relu, &[bn]).unwrap();
    let c1 = b.add("b1c1", conv(8, 1), &[x]).unwrap();
    let bn1 = b.add("b1bn1", Op::BatchNorm { eps: 1e-5 }, &[c1]).unwrap();
    let r1 = b.add("b1r1", Op::Relu, &[bn1]).unwrap();
    let c2 = b.add("b1c2", conv(8, 1), &[r1]).unwrap();
    let bn2 = b.add("b1bn2", Op::BatchNorm { eps: 1e-5 }, &[c2]).unwrap();
    let a = b.add("b1add", Op::Add, &[x, bn2]).unwrap();
    let r = b.add("b1relu", Op::Relu, &[a]).unwrap();
    let d = b.add("down", conv(16, 2), &[r]).unwrap();
    let dbn = b.add("down_bn", Op::BatchNorm { eps: 1e-5 }, &[d]).unwrap();
    let dr = b.add("down_relu", Op::Relu6, &[dbn]).unwrap();
    let g = b.add("gap", Op::GlobalAvgPool, &[dr]).unwrap();
    let f = b.add("flat", Op::Flatten, &[g]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 10,
            bias: true,
        },
        &[f],
    )
    .unwrap();
    b.finish()
}

fn argmax_f(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// (max |fixed - float| / max |float| over all logits, top-1 agreement).
fn agreement(bits: u8) -> (f32, f64) {
    let g = small_resnet();
    let w = Weights::random(&g, 2024);
    let dp = Datapath {
        act_bits: bits,
        weight_bits: bits,
        psum_bits: 32,
        overflow: Overflow::Wrap,
    };
    let q = quant::quantize(&g, &w, dp, &images(g.input_shape(), 32, 1)).unwrap();
    let n = 60;
    let imgs = images(g.input_shape(), n, 2);
    let fixed = FastEngine.run(&q, &imgs, 0, None).unwrap();
    let fmt = q.output_format();
    let (mut err, mut scale, mut same) = (0.0f32, 0.0f32, 0);
    for (i, codes) in fixed.iter().enumerate() {
        let want = float::forward(&g, &w, &imgs[i * 100..(i + 1) * 100]).unwrap();
        let got: Vec<f32> = codes.iter().map(|&c| fmt.dequantize(c)).collect();
        for (a, b) in got.iter().zip(&want) {
            err = err.max((a - b).abs());
            scale = scale.max(b.abs());
        }
        same += usize::from(quant::argmax(codes) == argmax_f(&want));
    }
    (err / scale, same as f64 / n as f64)
}

#[test]
fn sixteen_bit_matches_float_closely() {
    let (rel, top1) = agreement(16);
    eprintln!("16-bit: rel {rel} top1 {top1}");
    assert!(rel < 0.002, "16-bit relative logit error {rel}");
    assert!(top1 >= 0.95, "16-bit top-1 agreement {top1}");
}

#[test]
fn eight_bit_is_reasonable() {
    let (rel, top1) = agreement(8);
    eprintln!("8-bit: rel {rel} top1 {top1}");
    assert!(rel < 0.1, "8-bit relative logit error {rel}");
    assert!(top1 >= 0.8, "8-bit top-1 agreement {top1}");
}
