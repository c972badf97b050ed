//! The real Fashion-MNIST from the Debian package `dataset-fashion-mnist`
//! (installed on the development machines and in CI).

use std::path::Path;

use ftnas::data::{self, Split, DEFAULT_DIR};

#[test]
fn default_train_split_is_fashion_mnist() {
    let t0 = std::time::Instant::now();
    let d = data::load(None, Split::Train).expect("apt-get install -y dataset-fashion-mnist");
    eprintln!("loaded Fashion-MNIST train in {:?}", t0.elapsed());
    assert_eq!(d.name, "fashion-mnist");
    assert_eq!(d.len(), 60_000);
    assert_eq!((d.shape.c, d.shape.h, d.shape.w), (1, 28, 28));
    assert_eq!(d.num_classes, 10);
    assert_eq!(d.images.len(), 60_000 * 784);
    assert_eq!(d.class_counts(), vec![6000; 10]);
    let (lo, hi) = d
        .images
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert_eq!((lo, hi), (0.0, 1.0));
    // Pixels are k/255 exactly as stored in the file.
    assert!(d
        .images
        .iter()
        .take(784 * 10)
        .all(|&x| ((x * 255.0).round() / 255.0 - x).abs() < 1e-7));
    // Published mean pixel of Fashion-MNIST train: 0.2860.
    let ms = d.channel_mean_std();
    assert!((ms[0].0 - 0.2860).abs() < 1e-3, "{ms:?}");
    // The first training image is an ankle boot (label 9), the second a
    // T-shirt (label 0).
    assert_eq!(&d.labels[..2], &[9, 0]);
    assert!(d.image(0).iter().any(|&x| x > 0.5));
}

#[test]
fn test_split_is_balanced() {
    let d = data::load(None, Split::Test).unwrap();
    assert_eq!(d.len(), 10_000);
    assert_eq!(d.class_counts(), vec![1000; 10]);
    assert!(d.images.iter().all(|&x| (0.0..=1.0).contains(&x)));
}

#[test]
fn explicit_directory_gives_the_same_data() {
    let a = data::load(Some(Path::new(DEFAULT_DIR)), Split::Test).unwrap();
    let b = data::load(None, Split::Test).unwrap();
    assert_eq!(a.name, "fashion-mnist");
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.images, b.images);
}

#[test]
fn validation_split_of_real_data() {
    let d = data::load(None, Split::Test).unwrap();
    let (train, val) = d.split_off_validation(0.2, 42).unwrap();
    assert_eq!(val.class_counts(), vec![200; 10]);
    assert_eq!(train.len(), 8000);
    let batches: Vec<usize> = val.batches(512).map(|b| b.len()).collect();
    assert_eq!(batches, vec![512, 512, 512, 464]);
}
