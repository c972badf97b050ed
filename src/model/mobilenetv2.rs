//! MobileNet-V2 (Sandler et al. 2018), CIFAR variant with a width multiplier.
//!
//! Layout: a stride-1 3x3 stem of 32 channels (the ImageNet net uses stride
//! 2; 32x32 inputs cannot afford it), the standard inverted-residual table
//! [`INVERTED_RESIDUAL_TABLE`] with the second row's stride set to 1 as in
//! the common CIFAR implementation (so 32x32 ends at 4x4 instead of 1x1), a
//! 1x1 conv to 1280 channels, global average pooling and a linear
//! classifier. Every conv is followed by BN; ReLU6 after all but the
//! projection (linear bottleneck). A block adds its input back only when it
//! keeps both the stride (1) and the channel count (as torchvision does);
//! blocks with expansion 1 have no expansion conv.
//!
//! Width multiplier: every channel count `c` becomes
//! [`make_divisible`]`(c * width, 8)`, the last conv
//! `make_divisible(1280 * max(1, width), 8)` (narrow nets keep the wide
//! head, as in the paper).
//!
//! Names: `stem.conv`, `blocks.3.expand.conv`, `blocks.3.dw.bn`,
//! `blocks.3.project.conv`, `blocks.3.add`, `head.conv`, `classifier`.

use super::blocks::{bn, check_num_classes, conv, depthwise, gap_classifier};
use super::{Graph, GraphBuilder, ModelError, NodeId, Op, Shape};

/// (expansion t, output channels c, repeats n, stride of the first repeat s).
pub const INVERTED_RESIDUAL_TABLE: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// Round `v` to the nearest multiple of `divisor`, at least `divisor`, and
/// never more than 10% below `v` (then one multiple up). This is the rule of
/// the reference MobileNet code: channel counts that are multiples of 8 fill
/// vector lanes and PE columns evenly, and the 10% guard keeps a small width
/// multiplier from shrinking a layer much more than asked.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let rounded = (((v + d / 2.0) / d).floor() * d).max(d);
    let out = if rounded < 0.9 * v {
        rounded + d
    } else {
        rounded
    };
    out as usize
}

/// Build MobileNet-V2 (CIFAR variant) with width multiplier `width`.
pub fn mobilenetv2(width: f64, num_classes: usize, input: Shape) -> Result<Graph, ModelError> {
    if !(width.is_finite() && width > 0.0 && width <= 16.0) {
        return Err(ModelError::Graph(format!(
            "MobileNet-V2 width multiplier must be in (0, 16], got {width}"
        )));
    }
    check_num_classes(num_classes)?;
    let mut b = GraphBuilder::new(&format!("mobilenetv2_x{width}"), input);
    let stem_c = make_divisible(STEM_CHANNELS as f64 * width, 8);
    let x = b.input();
    let x = b.add("stem.conv", conv(stem_c, 3, 1, 1), &[x])?;
    let x = b.add("stem.bn", bn(), &[x])?;
    let mut x = b.add("stem.relu", Op::Relu6, &[x])?;
    let mut index = 0;
    for &(t, c, n, s) in INVERTED_RESIDUAL_TABLE.iter() {
        let out_c = make_divisible(c as f64 * width, 8);
        for repeat in 0..n {
            let stride = if repeat == 0 { s } else { 1 };
            x = inverted_residual(&mut b, x, &format!("blocks.{index}"), t, out_c, stride)?;
            index += 1;
        }
    }
    let head_c = make_divisible(HEAD_CHANNELS as f64 * width.max(1.0), 8);
    let x = b.add("head.conv", conv(head_c, 1, 1, 0), &[x])?;
    let x = b.add("head.bn", bn(), &[x])?;
    let x = b.add("head.relu", Op::Relu6, &[x])?;
    gap_classifier(&mut b, x, "avgpool", "classifier", num_classes)?;
    Ok(b.finish())
}

/// [expand 1x1-bn-relu6] - dw 3x3-bn-relu6 - project 1x1-bn [+ input].
fn inverted_residual(
    b: &mut GraphBuilder,
    x: NodeId,
    prefix: &str,
    expansion: usize,
    out_c: usize,
    stride: usize,
) -> Result<NodeId, ModelError> {
    let in_c = b.shape(x).c;
    let hidden = in_c * expansion;
    let mut y = x;
    if expansion != 1 {
        y = b.add(format!("{prefix}.expand.conv"), conv(hidden, 1, 1, 0), &[y])?;
        y = b.add(format!("{prefix}.expand.bn"), bn(), &[y])?;
        y = b.add(format!("{prefix}.expand.relu"), Op::Relu6, &[y])?;
    }
    y = b.add(
        format!("{prefix}.dw.conv"),
        depthwise(hidden, 3, stride, 1, 1),
        &[y],
    )?;
    y = b.add(format!("{prefix}.dw.bn"), bn(), &[y])?;
    y = b.add(format!("{prefix}.dw.relu"), Op::Relu6, &[y])?;
    y = b.add(format!("{prefix}.project.conv"), conv(out_c, 1, 1, 0), &[y])?;
    y = b.add(format!("{prefix}.project.bn"), bn(), &[y])?;
    if stride == 1 && in_c == out_c {
        y = b.add(format!("{prefix}.add"), Op::Add, &[y, x])?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_reference_rule() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(16.0 * 0.5, 8), 8);
        assert_eq!(make_divisible(24.0 * 0.75, 8), 24); // 18 -> 16 is < 0.9*18 -> 24
        assert_eq!(make_divisible(32.0 * 0.35, 8), 16); // 11.2 -> 16
        assert_eq!(make_divisible(96.0 * 0.35, 8), 32); // 33.6 -> 32
        assert_eq!(make_divisible(1.0, 8), 8);
    }

    #[test]
    fn cifar_strides_end_at_4x4() {
        let g = mobilenetv2(1.0, 10, Shape::new(3, 32, 32)).unwrap();
        let head = g.find("head.conv").unwrap();
        assert_eq!(g.nodes[head].shape, Shape::new(1280, 4, 4));
        // 17 blocks; block 0 (t=1) has no expansion conv
        assert!(g.find("blocks.16.project.conv").is_some());
        assert!(g.find("blocks.0.expand.conv").is_none());
        assert!(g.find("blocks.1.add").is_none()); // 16 -> 24 channels
        assert!(g.find("blocks.2.add").is_some());
    }

    #[test]
    fn bad_width_is_an_error() {
        for w in [0.0, -1.0, f64::NAN, 100.0] {
            assert!(mobilenetv2(w, 10, Shape::new(3, 32, 32)).is_err());
        }
    }
}
