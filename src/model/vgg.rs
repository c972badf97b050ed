//! Small VGG-style networks (Simonyan & Zisserman 2015, CIFAR sizes): stages
//! of 3x3 conv-BN-ReLU layers, each stage ending in a 2x2 stride-2 max pool,
//! then flatten and one linear classifier. `channels` lists the stages, e.g.
//! VGG-small `[[128, 128], [256, 256], [512, 512]]` (the 6-conv net of the
//! quantization literature; 7 weight layers). Flattening (not global
//! pooling) keeps VGG's dense classifier, so its size follows the input:
//! 3x32x32 leaves 4x4 after three pools, 1x28x28 leaves 3x3.
//!
//! Names: `stage1.0.conv`, `stage1.0.bn`, `stage1.0.relu`, `stage1.pool`,
//! `flatten`, `classifier`.

use super::blocks::{bn, check_num_classes, conv};
use super::{Graph, GraphBuilder, ModelError, Op, Shape};

/// VGG-small's stages.
pub const VGG_SMALL: [&[usize]; 3] = [&[128, 128], &[256, 256], &[512, 512]];

/// Build a VGG with the given stages of conv channel counts.
pub fn vgg(channels: &[Vec<usize>], num_classes: usize, input: Shape) -> Result<Graph, ModelError> {
    check_num_classes(num_classes)?;
    if channels.is_empty() {
        return Err(ModelError::Graph("VGG needs at least one stage".into()));
    }
    for (i, stage) in channels.iter().enumerate() {
        if stage.is_empty() {
            return Err(ModelError::Graph(format!(
                "VGG stage {} has no conv layers",
                i + 1
            )));
        }
        if stage.contains(&0) {
            return Err(ModelError::Graph(format!(
                "VGG stage {} has a conv with 0 channels",
                i + 1
            )));
        }
    }
    let depth = channels.iter().map(Vec::len).sum::<usize>() + 1;
    let mut b = GraphBuilder::new(&format!("vgg{depth}"), input);
    let mut x = b.input();
    for (s, stage) in channels.iter().enumerate() {
        let prefix = format!("stage{}", s + 1);
        for (l, &c) in stage.iter().enumerate() {
            x = b.add(format!("{prefix}.{l}.conv"), conv(c, 3, 1, 1), &[x])?;
            x = b.add(format!("{prefix}.{l}.bn"), bn(), &[x])?;
            x = b.add(format!("{prefix}.{l}.relu"), Op::Relu, &[x])?;
        }
        x = b.add(
            format!("{prefix}.pool"),
            Op::MaxPool {
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0),
            },
            &[x],
        )?;
    }
    let x = b.add("flatten", Op::Flatten, &[x])?;
    b.add(
        "classifier",
        Op::Linear {
            out_features: num_classes,
            bias: true,
        },
        &[x],
    )?;
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Vec<Vec<usize>> {
        VGG_SMALL.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn vgg_small_shapes_and_params() {
        let g = vgg(&small(), 10, Shape::new(3, 32, 32)).unwrap();
        assert_eq!(g.name, "vgg7");
        let p3 = g.find("stage3.pool").unwrap();
        assert_eq!(g.nodes[p3].shape, Shape::new(512, 4, 4));
        let conv_params = 3 * 128 * 9
            + 128 * 128 * 9
            + 128 * 256 * 9
            + 256 * 256 * 9
            + 256 * 512 * 9
            + 512 * 512 * 9;
        let bn_params = 4 * 2 * (128 + 256 + 512);
        let fc = 512 * 16 * 10 + 10;
        assert_eq!(g.total_params() as usize, conv_params + bn_params + fc);
        let g28 = vgg(&small(), 10, Shape::new(1, 28, 28)).unwrap();
        let fc = g28.find("classifier").unwrap();
        assert_eq!(g28.input_shape_of(fc), Shape::new(512 * 9, 1, 1));
    }

    #[test]
    fn too_many_pools_for_the_input_is_an_error() {
        let stages = vec![vec![8]; 6];
        let e = vgg(&stages, 10, Shape::new(1, 28, 28))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stage5.pool"), "{e}");
    }

    #[test]
    fn empty_stage_is_an_error() {
        assert!(vgg(&[vec![]], 10, Shape::new(1, 28, 28)).is_err());
        assert!(vgg(&[], 10, Shape::new(1, 28, 28)).is_err());
    }
}
