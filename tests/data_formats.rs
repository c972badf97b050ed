//! IDX (raw and gzip) and CIFAR-10 files written by the tests themselves,
//! format detection, and every kind of bad file: each must give an error
//! naming the file and the problem, never a panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use ftnas::data::{self, encode_idx, DataError, Format, Split, CIFAR10_RECORD_BYTES};
use proptest::prelude::*;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `n` images of `h` x `w`; pixel value encodes (image, position), label i % 10.
fn idx_pair(n: usize, h: usize, w: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * h * w).map(|i| (i * 31 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (encode_idx(&[n, h, w], &pixels), encode_idx(&[n], &labels))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    p
}

fn err_text(e: DataError) -> String {
    e.to_string()
}

#[test]
fn idx_raw_and_gzip_load_identically() {
    let (img, lab) = idx_pair(12, 5, 4);
    let raw = tempfile::tempdir().unwrap();
    write(raw.path(), "t10k-images-idx3-ubyte", &img);
    write(raw.path(), "t10k-labels-idx1-ubyte", &lab);
    let zipped = tempfile::tempdir().unwrap();
    write(zipped.path(), "t10k-images-idx3-ubyte.gz", &gz(&img));
    write(zipped.path(), "t10k-labels-idx1-ubyte.gz", &gz(&lab));
    // Mixed: raw images, gzip labels.
    let mixed = tempfile::tempdir().unwrap();
    write(mixed.path(), "t10k-images-idx3-ubyte", &img);
    write(mixed.path(), "t10k-labels-idx1-ubyte.gz", &gz(&lab));

    let a = data::load(Some(raw.path()), Split::Test).unwrap();
    assert_eq!(a.len(), 12);
    assert_eq!((a.shape.c, a.shape.h, a.shape.w), (1, 5, 4));
    assert_eq!(a.num_classes, 10);
    assert_eq!(
        a.labels,
        (0..12).map(|i| (i % 10) as u8).collect::<Vec<_>>()
    );
    assert_eq!(a.image(3)[2], ((3 * 20 + 2) * 31 % 256) as f32 / 255.0);
    for d in [zipped.path(), mixed.path()] {
        let b = data::load(Some(d), Split::Test).unwrap();
        assert_eq!(a.images, b.images);
        assert_eq!(a.labels, b.labels);
    }
    // No train files in these directories.
    let e = err_text(data::load(Some(raw.path()), Split::Train).unwrap_err());
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
}

#[test]
fn idx_dotted_mirror_names_are_found() {
    let (img, lab) = idx_pair(3, 2, 2);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images.idx3-ubyte", &img);
    write(dir.path(), "train-labels.idx1-ubyte", &lab);
    assert_eq!(data::load(Some(dir.path()), Split::Train).unwrap().len(), 3);
}

/// CIFAR-10 records: label then R, G, B planes.
fn cifar_records(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        out.push(l);
        for c in 0..3u8 {
            for p in 0..1024usize {
                out.push(((p * 3 + c as usize * 80 + seed as usize + i) % 256) as u8);
            }
        }
    }
    out
}

#[test]
fn cifar10_batches_load_in_order_with_channel_planes() {
    let dir = tempfile::tempdir().unwrap();
    for b in 1..=5u8 {
        let labels: Vec<u8> = (0..3).map(|i| (i + b) % 10).collect();
        write(
            dir.path(),
            &format!("data_batch_{b}.bin"),
            &cifar_records(&labels, b * 10),
        );
    }
    write(dir.path(), "test_batch.bin", &cifar_records(&[9, 0], 99));
    let train = data::load(Some(dir.path()), Split::Train).unwrap();
    assert_eq!(train.name, "cifar-10");
    assert_eq!((train.shape.c, train.shape.h, train.shape.w), (3, 32, 32));
    assert_eq!(train.len(), 15);
    assert_eq!(&train.labels[..6], &[1, 2, 3, 2, 3, 4]);
    // Image 4 = batch 2, record 1: seed 20, i = 1. Green plane, pixel (0, 5).
    let px = train.image(4)[1024 + 5];
    assert_eq!(px, f32::from(5u8 * 3 + 80 + 20 + 1) / 255.0);
    let test = data::load(Some(dir.path()), Split::Test).unwrap();
    assert_eq!(test.labels, vec![9, 0]);
    // Blue plane pixel 0 of record 1: (160 + 99 + 1) mod 256.
    assert_eq!(test.image(1)[2048], f32::from(4u8) / 255.0);
}

#[test]
fn cifar10_inside_its_archive_subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cifar-10-batches-bin/test_batch.bin",
        &cifar_records(&[3, 4, 5], 0),
    );
    match data::detect(dir.path(), Split::Test).unwrap() {
        Format::Cifar10 { files } => {
            assert!(files[0].ends_with("cifar-10-batches-bin/test_batch.bin"))
        }
        f => panic!("detected {f:?}"),
    }
    assert_eq!(
        data::load(Some(dir.path()), Split::Test).unwrap().labels,
        vec![3, 4, 5]
    );
}

#[test]
fn missing_data_says_what_was_expected() {
    let empty = tempfile::tempdir().unwrap();
    let e = err_text(data::load(Some(empty.path()), Split::Test).unwrap_err());
    for want in [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "test_batch.bin",
        "cifar-10-batches-bin",
    ] {
        assert!(e.contains(want), "{e}");
    }
    let e = err_text(data::load(Some(&empty.path().join("nope")), Split::Test).unwrap_err());
    assert!(e.contains("nope") && e.contains("directory"), "{e}");

    // Half an IDX pair.
    let (img, _) = idx_pair(2, 2, 2);
    write(empty.path(), "t10k-images-idx3-ubyte.gz", &gz(&img));
    let e = err_text(data::load(Some(empty.path()), Split::Test).unwrap_err());
    assert!(e.contains("t10k-labels-idx1-ubyte"), "{e}");

    // Four of five CIFAR-10 train batches.
    let dir = tempfile::tempdir().unwrap();
    for b in [1, 2, 3, 5] {
        write(
            dir.path(),
            &format!("data_batch_{b}.bin"),
            &cifar_records(&[0], 0),
        );
    }
    let e = err_text(data::load(Some(dir.path()), Split::Train).unwrap_err());
    assert!(e.contains("missing data_batch_4.bin"), "{e}");
}

/// Load a test split whose image and label files are given; returns the
/// error text.
fn load_err(images: &[u8], labels: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t10k-images-idx3-ubyte", images);
    write(dir.path(), "t10k-labels-idx1-ubyte", labels);
    err_text(data::load(Some(dir.path()), Split::Test).unwrap_err())
}

#[test]
fn every_kind_of_bad_idx_file() {
    let (img, lab) = idx_pair(4, 3, 3);
    // (what, image file, label file, file the error must name, message).
    type Case = (&'static str, Vec<u8>, Vec<u8>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            "bad magic",
            b"PK\x03\x04 zip file".to_vec(),
            lab.clone(),
            "images",
            "bad magic",
        ),
        (
            "images with 2 dims",
            encode_idx(&[4, 9], &[0; 36]),
            lab.clone(),
            "images",
            "expected 3",
        ),
        (
            "labels with 3 dims",
            img.clone(),
            encode_idx(&[4, 1, 1], &[0; 4]),
            "labels",
            "expected 1",
        ),
        (
            "count mismatch",
            img.clone(),
            encode_idx(&[3], &[0; 3]),
            "labels",
            "3 labels but",
        ),
        (
            "truncated images",
            img[..img.len() - 5].to_vec(),
            lab.clone(),
            "images",
            "truncated",
        ),
        (
            "truncated header",
            img[..9].to_vec(),
            lab.clone(),
            "images",
            "truncated IDX header",
        ),
        (
            "trailing bytes",
            [img.clone(), vec![0; 3]].concat(),
            lab.clone(),
            "images",
            "3 unexpected bytes",
        ),
        (
            "label out of range",
            img.clone(),
            encode_idx(&[4], &[0, 1, 10, 2]),
            "labels",
            "label 10 of item 2",
        ),
        (
            "bad gzip",
            [&[0x1f, 0x8b, 8, 0][..], &[0xff; 40]].concat(),
            lab.clone(),
            "images",
            "gzip",
        ),
        (
            "truncated gzip",
            gz(&img)[..20].to_vec(),
            lab.clone(),
            "images",
            "",
        ),
        (
            "empty image file",
            encode_idx(&[0, 28, 28], &[]),
            encode_idx(&[0], &[]),
            "images",
            "no pixels",
        ),
        (
            "non-byte elements",
            {
                let mut b = img.clone();
                b[2] = 0x0D;
                b
            },
            lab.clone(),
            "images",
            "0x0d",
        ),
    ];
    for (what, images, labels, file, want) in cases {
        let e = load_err(&images, &labels);
        assert!(
            e.contains(&format!("t10k-{file}-idx")),
            "{what}: error does not name the {file} file: {e}"
        );
        assert!(e.contains(want), "{what}: {e}");
    }
}

#[test]
fn every_kind_of_bad_cifar_file() {
    let dir = tempfile::tempdir().unwrap();
    let recs = cifar_records(&[1, 2], 0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty"),
        (
            "truncated",
            recs[..recs.len() - 100].to_vec(),
            "not a multiple of the 3073-byte",
        ),
        (
            "bad label",
            {
                let mut r = recs.clone();
                r[CIFAR10_RECORD_BYTES] = 200;
                r
            },
            "record 1 (byte offset 3073) has label 200",
        ),
        ("bad gzip", vec![0x1f, 0x8b, 0, 0, 0], "gzip"),
    ];
    for (what, bytes, want) in cases {
        let p = write(dir.path(), "test_batch.bin", &bytes);
        let e = err_text(data::load(Some(dir.path()), Split::Test).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "{what}: {e}");
        assert!(e.contains(want), "{what}: {e}");
    }
}

#[test]
fn directory_in_place_of_a_file_counts_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    // Detection wants regular files, so this reads as a missing batch.
    fs::create_dir_all(dir.path().join("test_batch.bin")).unwrap();
    let e = err_text(data::load(Some(dir.path()), Split::Test).unwrap_err());
    assert!(e.contains("test_batch.bin"), "{e}");
}

fn valid_idx_images() -> Vec<u8> {
    idx_pair(6, 4, 5).0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random bytes, truncations and byte edits of valid files never panic;
    /// anything accepted is internally consistent.
    #[test]
    fn idx_parsing_never_panics(
        cut in 0usize..200,
        edits in prop::collection::vec((0usize..200, any::<u8>()), 0..4),
        junk in prop::collection::vec(any::<u8>(), 0..64),
        mode in 0u8..3,
    ) {
        let (_, lab) = idx_pair(6, 4, 5);
        let mut img = match mode {
            0 => valid_idx_images(),
            1 => gz(&valid_idx_images()),
            _ => junk.clone(),
        };
        for (pos, val) in edits {
            if !img.is_empty() {
                let k = pos % img.len();
                img[k] = val;
            }
        }
        img.truncate(cut);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t10k-images-idx3-ubyte", &img);
        write(dir.path(), "t10k-labels-idx1-ubyte", &lab);
        if let Ok(d) = data::load(Some(dir.path()), Split::Test) {
            prop_assert_eq!(d.images.len(), d.len() * d.shape.numel());
            prop_assert!(d.labels.iter().all(|&l| (l as usize) < d.num_classes));
        }
        // The parser alone, on the raw bytes.
        let _ = data::parse_idx(Path::new("x"), &img);
    }

    #[test]
    fn cifar_parsing_never_panics(
        cut in 0usize..(3 * CIFAR10_RECORD_BYTES + 10),
        edits in prop::collection::vec((0usize..3 * CIFAR10_RECORD_BYTES, any::<u8>()), 0..4),
    ) {
        let mut bytes = cifar_records(&[1, 2, 3], 7);
        for (pos, val) in edits {
            bytes[pos] = val;
        }
        bytes.truncate(cut);
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        match data::parse_cifar10(Path::new("b"), &bytes, &mut im, &mut lb) {
            Ok(()) => {
                prop_assert_eq!(bytes.len() % CIFAR10_RECORD_BYTES, 0);
                prop_assert_eq!(im.len(), lb.len() * 3072);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("b: ")),
        }
    }
}
