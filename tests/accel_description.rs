//! Accelerator descriptions: the shipped files validate and time a model
//! graph; each kind of mistake gives its own clear error naming the file,
//! the key and the rule.

use std::path::{Path, PathBuf};

use ftnas::accel::description::{Accelerator, DescriptionError, Kind};
use ftnas::accel::time_graph;
use ftnas::model::{Graph, GraphBuilder, Op, Shape};

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// A small CNN with every kind of timed layer: padded/strided conv, a
/// depthwise conv, a dilated conv, pooling, global pooling and a classifier.
fn small_cnn() -> Graph {
    let conv = |out, k, s, p, d, g| Op::Conv2d {
        out_channels: out,
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
        dilation: (d, d),
        groups: g,
        bias: false,
    };
    let mut b = GraphBuilder::new("small_cnn", Shape::new(3, 32, 32));
    let c1 = b.add("conv1", conv(16, 3, 1, 1, 1, 1), &[0]).unwrap();
    let r1 = b.add("relu1", Op::Relu, &[c1]).unwrap();
    let dw = b.add("dw", conv(16, 3, 2, 1, 1, 16), &[r1]).unwrap();
    let pw = b.add("pw", conv(32, 1, 1, 0, 1, 1), &[dw]).unwrap();
    let dil = b.add("dil", conv(32, 3, 1, 2, 2, 2), &[pw]).unwrap();
    let mp = b
        .add(
            "pool",
            Op::MaxPool {
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0),
            },
            &[dil],
        )
        .unwrap();
    let gap = b.add("gap", Op::GlobalAvgPool, &[mp]).unwrap();
    let fl = b.add("flat", Op::Flatten, &[gap]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 10,
            bias: true,
        },
        &[fl],
    )
    .unwrap();
    b.finish()
}

#[test]
fn shipped_descriptions_validate_and_time_a_model() {
    let files = shipped();
    assert!(files.len() >= 6, "{files:?}");
    let g = small_cnn();
    let mut kinds = Vec::new();
    for f in &files {
        let acc = Accelerator::load(f).unwrap_or_else(|e| panic!("{e}"));
        kinds.push(acc.kind);
        let t = time_graph(&acc, &g, None).unwrap();
        assert_eq!(t.layers.len(), 7, "{}", f.display());
        assert_eq!(
            t.totals.macs,
            g.total_macs() + pool_ops(&g),
            "{}",
            f.display()
        );
        for l in &t.layers {
            assert!(
                l.total_cycles > 0 && l.time_us > 0.0,
                "{} {}",
                f.display(),
                l.name
            );
            assert!(l.mapping_eff_pct > 0.0 && l.mapping_eff_pct <= 100.0);
            assert_eq!(l.total_cycles, l.compute_cycles + l.stall_cycles);
        }
        assert_eq!(
            t.totals.total_cycles,
            t.layers.iter().map(|l| l.total_cycles).sum::<u64>()
        );
    }
    assert!(kinds.contains(&Kind::Systolic) && kinds.contains(&Kind::BitSerial));
    for name in [
        "tpu_v1.toml",
        "eyeriss.toml",
        "edge_16x16_os.toml",
        "scalesim_32x32.toml",
        "stripes.toml",
        "loom.toml",
    ] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{name} shipped");
    }
}

/// Comparisons/additions of the pooling layers, which the array runs as
/// depthwise reductions.
fn pool_ops(g: &Graph) -> u64 {
    g.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match &n.op {
            Op::MaxPool { kernel, .. } | Op::AvgPool { kernel, .. } => {
                (n.shape.numel() * kernel.0 * kernel.1) as u64
            }
            Op::GlobalAvgPool => g.input_shape_of(i).numel() as u64,
            _ => 0,
        })
        .sum()
}

#[test]
fn bit_serial_uses_per_layer_precisions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators");
    let g = small_cnn();
    let stripes = Accelerator::load(&dir.join("stripes.toml")).unwrap();
    let full = time_graph(&stripes, &g, None).unwrap();
    let n_mac = g.mac_layers().len();
    let half = vec![(8u8, 8u8); n_mac];
    let reduced = time_graph(&stripes, &g, Some(&half)).unwrap();
    for (a, b) in full.layers.iter().zip(&reduced.layers) {
        if a.kind == "maxpool" || a.kind == "gap" {
            assert_eq!(a.total_cycles, b.total_cycles, "{}", a.name);
        } else {
            // Stripes: cycles scale with the activation precision (16 -> 8).
            assert_eq!(a.total_cycles, 2 * b.total_cycles, "{}", a.name);
        }
    }
    let loom = Accelerator::load(&dir.join("loom.toml")).unwrap();
    let l_full = time_graph(&loom, &g, None).unwrap();
    let l_red = time_graph(&loom, &g, Some(&vec![(8u8, 4u8); n_mac])).unwrap();
    // Loom: ceil(16/2)*16 = 128 vs ceil(8/2)*4 = 16 cycles per step.
    assert_eq!(
        l_full.layers[0].total_cycles,
        8 * l_red.layers[0].total_cycles
    );
    let e = time_graph(&stripes, &g, Some(&half[1..])).unwrap_err();
    assert!(e.to_string().contains("precisions"), "{e}");
}

const GOOD: &str = r#"
name = "t"
clock_mhz = 500.0
kind = "systolic"

[systolic]
rows = 16
cols = 16
dataflow = "os"

[datapath]
act_bits = 8
weight_bits = 8
psum_bits = 32

[buffers]
ifmap_kib = 32
filter_kib = 32
ofmap_kib = 16
word_bytes = 1

[dram]
bandwidth = "user"
words_per_cycle = 8
"#;

const BITSERIAL: &str = r#"
name = "bs"
clock_mhz = 500.0
kind = "bit-serial"

[bitserial]
tiles = 4
windows = 16
filters = 16
lanes = 16
serial = "activations"
bits_per_cycle = 1
precision = "per-layer"

[datapath]
act_bits = 8
weight_bits = 8
psum_bits = 32

[buffers]
ifmap_kib = 32
filter_kib = 32
ofmap_kib = 16
word_bytes = 1

[dram]
bandwidth = "calc"
"#;

fn err(text: &str) -> String {
    let e = Accelerator::parse(text, Path::new("accelerators/bad.toml")).unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with("accelerators/bad.toml"),
        "names the file: {s}"
    );
    if let DescriptionError::Invalid { key, rule, .. } = &e {
        assert!(!key.is_empty() && !rule.is_empty());
    }
    s
}

fn expect(text: &str, needles: &[&str]) {
    let s = err(text);
    for n in needles {
        assert!(s.contains(n), "`{n}` not in: {s}");
    }
}

#[test]
fn good_examples_parse() {
    let a = Accelerator::parse(GOOD, Path::new("g.toml")).unwrap();
    let d = a.derived();
    assert_eq!(
        (d.mac_units, d.ifmap_sram_words, d.ofmap_sram_words),
        (256, 32768, 16384)
    );
    assert_eq!(d.peak_macs_per_s, 256.0 * 500e6);
    Accelerator::parse(BITSERIAL, Path::new("b.toml")).unwrap();
}

#[test]
fn mistake_unknown_key() {
    expect(
        &GOOD.replace("rows = 16", "rows = 16\nrowz = 3"),
        &["rowz", "unknown field"],
    );
    expect(&format!("{GOOD}\nvoltage = 1.0\n"), &["voltage"]);
}

#[test]
fn mistake_missing_key() {
    expect(
        &GOOD.replace("word_bytes = 1\n", ""),
        &["word_bytes", "missing"],
    );
}

#[test]
fn mistake_wrong_type() {
    expect(&GOOD.replace("rows = 16", "rows = \"16\""), &["rows"]);
}

#[test]
fn mistake_bad_enum_value() {
    expect(&GOOD.replace("\"os\"", "\"rs\""), &["rs"]);
    expect(
        &GOOD.replace("kind = \"systolic\"", "kind = \"gpu\""),
        &["gpu"],
    );
}

#[test]
fn mistake_zero_array() {
    expect(
        &GOOD.replace("cols = 16", "cols = 0"),
        &["systolic.cols", "1..=4096", "found 0"],
    );
}

#[test]
fn mistake_absurd_array() {
    expect(
        &GOOD.replace("rows = 16", "rows = 100000"),
        &["systolic.rows", "found 100000"],
    );
}

#[test]
fn mistake_clock() {
    expect(
        &GOOD.replace("clock_mhz = 500.0", "clock_mhz = 0.0"),
        &["clock_mhz"],
    );
    expect(
        &GOOD.replace("clock_mhz = 500.0", "clock_mhz = -5.0"),
        &["clock_mhz"],
    );
    expect(
        &GOOD.replace("clock_mhz = 500.0", "clock_mhz = 1e9"),
        &["clock_mhz"],
    );
}

#[test]
fn mistake_empty_name() {
    expect(
        &GOOD.replace("name = \"t\"", "name = \"  \""),
        &["`name`", "empty"],
    );
}

#[test]
fn mistake_zero_or_absurd_sram() {
    expect(
        &GOOD.replace("ifmap_kib = 32", "ifmap_kib = 0"),
        &["buffers.ifmap_kib", "found 0"],
    );
    expect(
        &GOOD.replace("ofmap_kib = 16", "ofmap_kib = 99999999"),
        &["buffers.ofmap_kib", "found 99999999"],
    );
}

#[test]
fn mistake_word_size() {
    expect(
        &GOOD.replace("word_bytes = 1", "word_bytes = 3"),
        &["buffers.word_bytes", "1, 2, 4 or 8"],
    );
    let wide = GOOD
        .replace("act_bits = 8", "act_bits = 16")
        .replace("weight_bits = 8", "weight_bits = 16");
    expect(&wide, &["buffers.word_bytes", "16-bit"]);
}

#[test]
fn mistake_banks() {
    expect(
        &GOOD.replace("word_bytes = 1", "word_bytes = 1\nbanks = 0"),
        &["buffers.banks"],
    );
}

#[test]
fn mistake_datapath_widths() {
    expect(
        &GOOD.replace("act_bits = 8", "act_bits = 1"),
        &["datapath", "act_bits"],
    );
    expect(
        &GOOD.replace("psum_bits = 32", "psum_bits = 4"),
        &["datapath", "psum_bits"],
    );
    expect(
        &GOOD.replace("psum_bits = 32", "psum_bits = 33"),
        &["datapath", "psum_bits"],
    );
}

#[test]
fn mistake_kind_table_inconsistent() {
    // Systolic kind without its table.
    let no_table = GOOD.replace("[systolic]\nrows = 16\ncols = 16\ndataflow = \"os\"\n", "");
    expect(&no_table, &["`systolic`", "needs a [systolic] table"]);
    // Bit-serial kind with a systolic table.
    let both = BITSERIAL.replace(
        "[datapath]",
        "[systolic]\nrows = 4\ncols = 4\ndataflow = \"ws\"\n\n[datapath]",
    );
    expect(&both, &["`systolic`", "must not have"]);
    // Bit-serial kind without its table.
    let bs_only = GOOD.replace("kind = \"systolic\"", "kind = \"bit-serial\"");
    expect(&bs_only, &["must not have a [systolic]"]);
}

#[test]
fn mistake_dram_mode_inconsistent() {
    expect(
        &GOOD.replace("words_per_cycle = 8\n", ""),
        &["dram.words_per_cycle", "needs"],
    );
    expect(
        &GOOD.replace("bandwidth = \"user\"", "bandwidth = \"calc\""),
        &["dram.words_per_cycle", "calc"],
    );
    expect(
        &GOOD.replace("words_per_cycle = 8", "words_per_cycle = 0"),
        &["dram.words_per_cycle"],
    );
}

#[test]
fn mistake_bit_serial_rules() {
    expect(
        &BITSERIAL.replace("bits_per_cycle = 1", "bits_per_cycle = 9"),
        &["bitserial.bits_per_cycle", "1..=8"],
    );
    expect(
        &BITSERIAL.replace("bits_per_cycle = 1", "bits_per_cycle = 0"),
        &["bitserial.bits_per_cycle"],
    );
    expect(
        &BITSERIAL.replace("\"per-layer\"", "\"per-group\""),
        &["bitserial.group_size", "per-group"],
    );
    expect(
        &BITSERIAL.replace(
            "precision = \"per-layer\"",
            "precision = \"per-layer\"\ngroup_size = 16",
        ),
        &["bitserial.group_size", "only meaningful"],
    );
    expect(
        &BITSERIAL.replace("lanes = 16", "lanes = 0"),
        &["bitserial.lanes"],
    );
}

#[test]
fn mistake_not_double_buffered() {
    expect(
        &GOOD.replace("word_bytes = 1", "word_bytes = 1\ndouble_buffered = false"),
        &["buffers.double_buffered"],
    );
}

#[test]
fn mistake_malformed_toml_and_missing_file() {
    expect("name = \"x\nclock", &["bad.toml"]);
    let e = Accelerator::load(Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
}
