//! CIFAR-style ResNet (He et al. 2016, section 4.2): depth 6n+2, a 3x3 stem
//! of 16 channels, three stages of n basic blocks with 16/32/64 channels
//! (the first block of stages 2 and 3 halves height and width), global
//! average pooling and a linear classifier. ResNet-20 is n = 3.
//!
//! Shortcuts: identity when the shape is unchanged; otherwise a 1x1
//! stride-2 convolution + BN projection (torchvision's "downsample", the
//! paper's option B). The paper's CIFAR models use option A (subsample and
//! zero-pad the channels), which adds no parameters. We use the projection
//! because (1) it is an ordinary conv layer that the accelerator maps and
//! the fault models reach, like every other learned layer, instead of a
//! channel-padding op that no datapath executes, and (2) it is what most
//! PyTorch ResNet code (and its checkpoints) uses. It costs 2,752 parameters
//! and 262,144 MACs on 3x32x32 (ResNet-20: 272,474 trainable parameters
//! instead of 269,722).
//!
//! Node names follow torchvision: `conv1`, `bn1`, `layer2.0.conv1`,
//! `layer2.0.downsample.0` (conv), `layer2.0.downsample.1` (BN), `fc`.

use super::blocks::{bn, check_num_classes, conv, gap_classifier};
use super::{Graph, GraphBuilder, ModelError, NodeId, Op, Shape};

/// Channels of the three stages.
pub const STAGE_CHANNELS: [usize; 3] = [16, 32, 64];

/// Blocks per stage for a CIFAR ResNet of `depth` layers (6n+2).
pub fn blocks_per_stage(depth: usize) -> Result<usize, ModelError> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) {
        return Err(ModelError::Graph(format!(
            "ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}"
        )));
    }
    Ok((depth - 2) / 6)
}

/// Build a CIFAR ResNet of `depth` (6n+2) layers for inputs of `input`.
pub fn resnet(depth: usize, num_classes: usize, input: Shape) -> Result<Graph, ModelError> {
    let n = blocks_per_stage(depth)?;
    check_num_classes(num_classes)?;
    let mut b = GraphBuilder::new(&format!("resnet{depth}"), input);
    let x = b.input();
    let x = b.add("conv1", conv(STAGE_CHANNELS[0], 3, 1, 1), &[x])?;
    let x = b.add("bn1", bn(), &[x])?;
    let mut x = b.add("relu", Op::Relu, &[x])?;
    for (stage, &channels) in STAGE_CHANNELS.iter().enumerate() {
        for block in 0..n {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let prefix = format!("layer{}.{}", stage + 1, block);
            x = basic_block(&mut b, x, &prefix, channels, stride)?;
        }
    }
    gap_classifier(&mut b, x, "avgpool", "fc", num_classes)?;
    Ok(b.finish())
}

/// conv3x3-bn-relu-conv3x3-bn, plus the shortcut, add, relu.
fn basic_block(
    b: &mut GraphBuilder,
    x: NodeId,
    prefix: &str,
    channels: usize,
    stride: usize,
) -> Result<NodeId, ModelError> {
    let in_shape = b.shape(x);
    let y = b.add(
        format!("{prefix}.conv1"),
        conv(channels, 3, stride, 1),
        &[x],
    )?;
    let y = b.add(format!("{prefix}.bn1"), bn(), &[y])?;
    let y = b.add(format!("{prefix}.relu1"), Op::Relu, &[y])?;
    let y = b.add(format!("{prefix}.conv2"), conv(channels, 3, 1, 1), &[y])?;
    let y = b.add(format!("{prefix}.bn2"), bn(), &[y])?;
    let shortcut = if stride != 1 || in_shape.c != channels {
        let s = b.add(
            format!("{prefix}.downsample.0"),
            conv(channels, 1, stride, 0),
            &[x],
        )?;
        b.add(format!("{prefix}.downsample.1"), bn(), &[s])?
    } else {
        x
    };
    let sum = b.add(format!("{prefix}.add"), Op::Add, &[y, shortcut])?;
    b.add(format!("{prefix}.relu2"), Op::Relu, &[sum])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_must_be_6n_plus_2() {
        assert_eq!(blocks_per_stage(20).unwrap(), 3);
        assert_eq!(blocks_per_stage(56).unwrap(), 9);
        for bad in [0, 2, 19, 21] {
            let e = blocks_per_stage(bad).unwrap_err().to_string();
            assert!(e.contains("6n+2"), "{e}");
        }
    }

    #[test]
    fn resnet8_layout() {
        let g = resnet(8, 10, Shape::new(1, 28, 28)).unwrap();
        // stem + 3 blocks (2 convs each) + 2 projections + fc
        assert_eq!(g.mac_layers().len(), 1 + 6 + 2 + 1);
        let ds = g.find("layer3.0.downsample.0").unwrap();
        assert_eq!(g.nodes[ds].shape, Shape::new(64, 7, 7));
        assert!(g.find("layer1.0.downsample.0").is_none());
        assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
    }
}
