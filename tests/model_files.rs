//! Model files: every shipped file loads for both data shapes, and bad
//! files give errors naming the file, the line/key and what was expected.

use std::path::{Path, PathBuf};

use ftnas::model::genotype::Genotype;
use ftnas::model::{load_model, read_model, ModelSpec, Shape};

const SHAPES: [Shape; 2] = [Shape::new(1, 28, 28), Shape::new(3, 32, 32)];

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

#[test]
fn every_shipped_model_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            for input in SHAPES {
                let g =
                    load_model(&path, input).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(g.input_shape(), input);
                assert_eq!(g.output_shape(), Shape::new(10, 1, 1));
                assert_eq!(g.name, path.file_stem().unwrap().to_str().unwrap());
            }
            count += 1;
        }
    }
    assert!(
        count >= 4,
        "expected the 4 shipped model files, found {count}"
    );
}

#[test]
fn shipped_files_hold_the_expected_networks() {
    assert_eq!(
        read_model(&shipped("resnet20.toml")).unwrap(),
        ModelSpec::Resnet {
            depth: 20,
            num_classes: 10
        }
    );
    assert_eq!(
        read_model(&shipped("mobilenetv2.toml")).unwrap(),
        ModelSpec::MobileNetV2 {
            width: 1.0,
            num_classes: 10
        }
    );
    match read_model(&shipped("w-ftt-net.toml")).unwrap() {
        ModelSpec::Cells(cfg) => {
            assert_eq!(cfg.genotype, Genotype::w_ftt_net());
            assert_eq!(
                (cfg.init_channels, cfg.layers, cfg.stem_multiplier),
                (20, 8, 3)
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Write `text` to a model file and return the load error.
fn load_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-model.toml");
    std::fs::write(&path, text).unwrap();
    let e = load_model(&path, Shape::new(3, 32, 32))
        .expect_err("the model file should be rejected")
        .to_string();
    assert!(
        e.contains("bad-model.toml"),
        "error does not name the file: {e}"
    );
    e
}

fn assert_mentions(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "error `{e}` does not mention `{p}`");
    }
}

fn wftt_with(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(shipped("w-ftt-net.toml")).unwrap();
    assert!(text.contains(from));
    text.replacen(from, to, 1)
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = load_error("family = \"resnet\"\ndepth = 20\ndepht = 3\n");
    assert_mentions(&e, &["line 3", "depht", "unknown field", "depth"]);
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let e = load_error("family = \"resnet\"\n\ndepth = \"twenty\"\n");
    assert_mentions(&e, &["line 3", "`depth`", "invalid type", "expected"]);
    let e = load_error("family = \"mobilenetv2\"\nwidth = \"wide\"\n");
    assert_mentions(&e, &["line 2", "`width`", "expected f64"]);
}

#[test]
fn missing_family_and_unknown_family() {
    let e = load_error("depth = 20\n");
    assert_mentions(&e, &["missing key `family`", "\"resnet\"", "\"cells\""]);
    let e = load_error("# comment\nfamily = \"densenet\"\n");
    assert_mentions(&e, &["line 2", "`family`", "unknown family \"densenet\""]);
}

#[test]
fn missing_required_key() {
    let e = load_error("family = \"resnet\"\n");
    assert_mentions(&e, &["missing key `depth`"]);
}

#[test]
fn bad_values_point_at_their_key() {
    let e = load_error("family = \"resnet\"\ndepth = 21\n");
    assert_mentions(&e, &["line 2", "`depth`", "6n+2", "21"]);
    let e = load_error("family = \"resnet\"\ndepth = 20\nnum_classes = 0\n");
    assert_mentions(&e, &["line 3", "`num_classes`", "1..=100000", "got 0"]);
    let e = load_error("family = \"mobilenetv2\"\nwidth = -0.5\n");
    assert_mentions(&e, &["line 2", "`width`", "(0, 16]"]);
    let e = load_error("family = \"vgg\"\nchannels = [[64], []]\n");
    assert_mentions(&e, &["line 2", "`channels`", "1..=32 stages"]);
    // an extra zero is caught before building a gigantic graph
    let e = load_error("family = \"resnet\"\ndepth = 20000\n");
    assert_mentions(&e, &["line 2", "`depth`", "1..=1202", "got 20000"]);
    let e = load_error(&wftt_with("init_channels = 20", "init_channels = 200000"));
    assert_mentions(&e, &["`init_channels`", "1..=8192"]);
    let e = wftt_with("layers = 8", "layers = 0");
    let e = load_error(&e);
    assert_mentions(&e, &["`layers`", "1..=64", "got 0"]);
}

#[test]
fn unknown_op_in_genotype_names_line_and_expected_ops() {
    let text = wftt_with("[\"conv_1x1\", 1, 3]", "[\"conv_7x7\", 1, 3]");
    let line = text.lines().position(|l| l.contains("conv_7x7")).unwrap() + 1;
    let e = load_error(&text);
    assert_mentions(
        &e,
        &[
            &format!("line {line}"),
            "`normal`",
            "conv_7x7",
            "sep_conv_3x3",
        ],
    );
}

#[test]
fn bad_node_index_in_genotype_names_the_edge_line() {
    let text = wftt_with("[\"conv_1x1\", 3, 4]", "[\"conv_1x1\", 4, 4]");
    let line = text
        .lines()
        .position(|l| l.contains("[\"conv_1x1\", 4, 4]"))
        .unwrap()
        + 1;
    let e = load_error(&text);
    assert_mentions(&e, &[&format!("line {line}"), "`reduce`", "earlier node"]);
    // `to` must be an intermediate node
    let e = load_error(&wftt_with(
        "[\"skip_connect\", 0, 2]",
        "[\"skip_connect\", 0, 1]",
    ));
    assert_mentions(&e, &["`reduce`", "intermediate node"]);
    // a gap in the intermediate nodes
    let e = load_error(&wftt_with(
        "[\"max_pool_3x3\", 2, 5]",
        "[\"max_pool_3x3\", 2, 7]",
    ));
    assert_mentions(&e, &["`normal`", "node 6 has no incoming edge"]);
    // an edge must have three entries
    let e = load_error(&wftt_with(
        "[\"max_pool_3x3\", 2, 5]",
        "[\"max_pool_3x3\", 2]",
    ));
    assert_mentions(&e, &["`normal`", "tuple of size 3"]);
}

#[test]
fn syntax_error_and_unreadable_file() {
    let e = load_error("family = \"resnet\"\ndepth = [20\n");
    assert_mentions(&e, &["line 2"]);
    let missing = Path::new("/nonexistent/dir/model.toml");
    let e = load_model(missing, Shape::new(1, 28, 28))
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["/nonexistent/dir/model.toml", "cannot read"]);
}

#[test]
fn input_too_small_for_the_network_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // (ResNet and MobileNet-V2 pad every conv, so they build even on 2x2)
    for name in ["vgg-small.toml", "w-ftt-net.toml"] {
        let src = shipped(name);
        let path = dir.path().join(name);
        std::fs::copy(&src, &path).unwrap();
        let e = load_model(&path, Shape::new(1, 2, 2))
            .unwrap_err()
            .to_string();
        assert_mentions(&e, &[name, "cannot build the network for input 1x2x2"]);
    }
}

#[test]
fn saved_spec_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("found.toml");
    let spec = read_model(&shipped("w-ftt-net.toml")).unwrap();
    ftnas::model::file::save_model(&path, &spec).unwrap();
    assert_eq!(read_model(&path).unwrap(), spec);
    let a = load_model(&path, Shape::new(3, 32, 32)).unwrap();
    let b = load_model(&shipped("w-ftt-net.toml"), Shape::new(3, 32, 32)).unwrap();
    assert_eq!(a.nodes, b.nodes);
}
