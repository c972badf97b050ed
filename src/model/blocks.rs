//! Small op constructors and layer groups shared by the family builders
//! (ResNet, MobileNet-V2, VGG, cell networks), so each builder reads as a
//! list of layers rather than a list of struct literals.

use super::{GraphBuilder, ModelError, NodeId, Op};

/// BatchNorm epsilon used by every builder (PyTorch's default).
pub const BN_EPS: f32 = 1e-5;

/// A bias-free square convolution (every builder follows its convs with BN,
/// which carries the bias).
pub fn conv(out_channels: usize, kernel: usize, stride: usize, padding: usize) -> Op {
    Op::Conv2d {
        out_channels,
        kernel: (kernel, kernel),
        stride: (stride, stride),
        padding: (padding, padding),
        dilation: (1, 1),
        groups: 1,
        bias: false,
    }
}

/// A bias-free depthwise convolution (`groups == channels`).
pub fn depthwise(
    channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Op {
    Op::Conv2d {
        out_channels: channels,
        kernel: (kernel, kernel),
        stride: (stride, stride),
        padding: (padding, padding),
        dilation: (dilation, dilation),
        groups: channels,
        bias: false,
    }
}

/// Inference-form batch normalisation.
pub fn bn() -> Op {
    Op::BatchNorm { eps: BN_EPS }
}

/// The classifier head every family ends with: global average pool,
/// flatten, linear with bias. Nodes `{gap}`, `flatten`, `{fc}`.
pub fn gap_classifier(
    b: &mut GraphBuilder,
    x: NodeId,
    gap_name: &str,
    fc_name: &str,
    num_classes: usize,
) -> Result<NodeId, ModelError> {
    let g = b.add(gap_name, Op::GlobalAvgPool, &[x])?;
    let f = b.add("flatten", Op::Flatten, &[g])?;
    b.add(
        fc_name,
        Op::Linear {
            out_features: num_classes,
            bias: true,
        },
        &[f],
    )
}

/// Reject a zero class count before building anything.
pub fn check_num_classes(num_classes: usize) -> Result<(), ModelError> {
    if num_classes == 0 {
        return Err(ModelError::Graph("num_classes must be >= 1".into()));
    }
    Ok(())
}
