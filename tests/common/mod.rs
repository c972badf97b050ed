//! Shared helpers of the CLI integration tests: run the real `ftnas`
//! binary from the crate root (so shipped files such as
//! `models/resnet20.toml` resolve), write seeded random weights with
//! `ftnas model init`, and check outcomes — a success hands back stdout, a
//! failure must be a clean error (non-zero exit, no panic) whose message
//! names what is wrong.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate root (the working directory of every run).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file shipped with the crate, e.g. `repo_file("models/resnet20.toml")`.
pub fn repo_file(rel: &str) -> PathBuf {
    root().join(rel)
}

/// `path` as a `&str` argument.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The `ftnas` binary, run from the crate root.
pub fn ftnas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ftnas"));
    c.current_dir(root());
    c
}

/// Run `ftnas` with `args` and wait for it.
pub fn run<I, A>(args: I) -> Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<OsStr>,
{
    ftnas().args(args).output().expect("run ftnas")
}

/// Assert that the run succeeded (showing its stderr if not); its stdout.
pub fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ftnas failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Assert that the run failed cleanly (non-zero exit, no panic) with a
/// message containing every one of `needles`; its stderr.
pub fn failed_naming(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    err
}

/// Seeded random weights for `model` (a path relative to the crate root or
/// absolute) on `input` (`CxHxW`), written to `out` with `ftnas model init`.
pub fn init_weights(model: &Path, input: &str, seed: u64, out: &Path) {
    let o = ftnas()
        .args(["model", "init"])
        .arg(model)
        .args(["--input", input, "--seed", &seed.to_string(), "-o"])
        .arg(out)
        .output()
        .expect("run ftnas");
    succeeded(&o);
}

/// A systolic accelerator of `rows x cols` with `dataflow`, datapath `dp`
/// and `kib` KiB per SRAM buffer (500 MHz, computed DRAM bandwidth): the
/// array the hardware-model tests run networks on.
pub fn systolic_accelerator(
    rows: usize,
    cols: usize,
    dataflow: ftnas::accel::Dataflow,
    dp: ftnas::fixed::Datapath,
    kib: usize,
) -> ftnas::accel::description::Accelerator {
    use ftnas::accel::description::{Accelerator, BandwidthMode, Buffers, Dram, Kind, Systolic};
    Accelerator {
        name: format!("test-{rows}x{cols}-{dataflow:?}"),
        clock_mhz: 500.0,
        kind: Kind::Systolic,
        systolic: Some(Systolic {
            rows,
            cols,
            dataflow,
        }),
        bitserial: None,
        datapath: dp,
        buffers: Buffers {
            ifmap_kib: kib,
            filter_kib: kib,
            ofmap_kib: kib,
            word_bytes: 1,
            banks: 1,
            double_buffered: true,
        },
        dram: Dram {
            bandwidth: BandwidthMode::Calc,
            words_per_cycle: None,
        },
    }
}

/// A VGG with `channels` (e.g. `"[[8], [12]]"`) and seeded random weights,
/// quantized (8-bit operands, 24-bit accumulator with `overflow`) on 32 real
/// Fashion-MNIST training images, and the reference engine's outputs of
/// every node for the first `images` of them: the small real-input network
/// the derivation tests inject into.
pub fn random_vgg_on_fashion(
    channels: &str,
    seed: u64,
    overflow: ftnas::fixed::Overflow,
    images: usize,
) -> (ftnas::quant::QModel, Vec<Vec<Vec<i32>>>) {
    use ftnas::data::{self, Split};
    let train = data::load(None, Split::Train).unwrap();
    let spec =
        ftnas::model::file::parse_model(&format!("family = \"vgg\"\nchannels = {channels}\n"))
            .unwrap();
    let graph = spec.build(train.shape).unwrap();
    let weights = ftnas::model::Weights::random(&graph, seed);
    let per = train.shape.numel();
    let dp = ftnas::fixed::Datapath {
        act_bits: 8,
        weight_bits: 8,
        psum_bits: 24,
        overflow,
    };
    let q = ftnas::quant::quantize(&graph, &weights, dp, &train.images[..32 * per]).unwrap();
    let outs = (0..images)
        .map(|i| {
            ftnas::engine::reference::run_image_all(
                &q,
                &train.images[i * per..(i + 1) * per],
                i as u64,
                None,
            )
        })
        .collect();
    (q, outs)
}

/// A bit-serial accelerator with `design`, datapath `dp` and `kib` KiB per
/// SRAM buffer (500 MHz, computed DRAM bandwidth).
pub fn bitserial_accelerator(
    design: ftnas::accel::description::BitSerial,
    dp: ftnas::fixed::Datapath,
    kib: usize,
) -> ftnas::accel::description::Accelerator {
    use ftnas::accel::description::Kind;
    let mut acc = systolic_accelerator(1, 1, ftnas::accel::Dataflow::Os, dp, kib);
    acc.name = "test-bitserial".into();
    acc.kind = Kind::BitSerial;
    acc.systolic = None;
    acc.bitserial = Some(design);
    acc
}
