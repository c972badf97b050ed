//! Safetensors weights: round trip, and errors for missing, mis-shaped,
//! non-f32 tensors and corrupt files.

use std::collections::HashMap;
use std::path::Path;

use ftnas::model::resnet::resnet;
use ftnas::model::safetensors_io::load_weights_with_extras;
use ftnas::model::{load_model, load_weights, save_weights, Graph, Shape, Tensor, Weights};
use safetensors::tensor::{Dtype, TensorView};

fn small_graph() -> Graph {
    resnet(8, 10, Shape::new(1, 28, 28)).unwrap()
}

#[test]
fn round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let g = small_graph();
    let w = Weights::random(&g, 7);
    save_weights(&path, &w).unwrap();
    let back = load_weights(&path, &g).unwrap();
    assert_eq!(back, w);
    // no temp file left behind
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("w.safetensors")]);
}

#[test]
fn round_trip_of_every_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["w-ftt-net.toml", "mobilenetv2.toml"] {
        let model = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name);
        let g = load_model(&model, Shape::new(1, 28, 28)).unwrap();
        let w = Weights::random(&g, 1);
        let path = dir.path().join("m.safetensors");
        save_weights(&path, &w).unwrap();
        let back = load_weights(&path, &g).unwrap();
        assert_eq!(back, w, "{name}");
        assert!(back.check_against(&g).is_ok());
    }
}

#[test]
fn extra_tensors_are_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let g = small_graph();
    let mut w = Weights::random(&g, 3);
    w.insert("aux.fc.weight", Tensor::zeros(vec![2, 2]));
    save_weights(&path, &w).unwrap();
    let (back, extras) = load_weights_with_extras(&path, &g).unwrap();
    assert_eq!(extras, vec!["aux.fc.weight".to_string()]);
    assert!(back.get("aux.fc.weight").is_none());
    assert_eq!(back.tensors.len(), g.all_params().len());
}

#[test]
fn missing_tensor_is_named_with_expected_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let g = small_graph();
    let mut w = Weights::random(&g, 3);
    w.tensors.remove("layer2.0.conv1.weight");
    save_weights(&path, &w).unwrap();
    let e = load_weights(&path, &g).unwrap_err().to_string();
    for part in [
        "w.safetensors",
        "missing tensor `layer2.0.conv1.weight`",
        "[32, 16, 3, 3]",
    ] {
        assert!(e.contains(part), "`{e}` lacks `{part}`");
    }
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let g = small_graph();
    let mut w = Weights::random(&g, 3);
    w.insert("fc.weight", Tensor::zeros(vec![10, 32]));
    save_weights(&path, &w).unwrap();
    let e = load_weights(&path, &g).unwrap_err().to_string();
    for part in [
        "w.safetensors",
        "`fc.weight`",
        "[10, 32]",
        "expected [10, 64]",
    ] {
        assert!(e.contains(part), "`{e}` lacks `{part}`");
    }
}

#[test]
fn integer_dtype_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int16.safetensors");
    let g = small_graph();
    // every tensor stored as i16 (2 bytes per value); F16/BF16/F64 load
    // (widened to f32), integer tensors are not weights
    let bytes: HashMap<String, (Vec<usize>, Vec<u8>)> = g
        .all_params()
        .into_iter()
        .map(|(n, s)| {
            let len = s.iter().product::<usize>() * 2;
            (n, (s, vec![0u8; len]))
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, (s, b))| {
            (
                n.clone(),
                TensorView::new(Dtype::I16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let e = load_weights(&path, &g).unwrap_err().to_string();
    for part in [
        "int16.safetensors",
        "dtype I16",
        "expected F32, F16, BF16 or F64",
    ] {
        assert!(e.contains(part), "`{e}` lacks `{part}`");
    }
}

#[test]
fn corrupt_and_missing_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let g = small_graph();
    let path = dir.path().join("corrupt.safetensors");
    std::fs::write(&path, b"\x08\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let e = load_weights(&path, &g).unwrap_err().to_string();
    assert!(
        e.contains("corrupt.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    // a valid file cut short
    let good = dir.path().join("good.safetensors");
    save_weights(&good, &Weights::random(&g, 0)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_weights(&cut, &g).unwrap_err().to_string();
    assert!(e.contains("truncated.safetensors"), "{e}");

    let e = load_weights(&dir.path().join("absent.safetensors"), &g)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("absent.safetensors") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn saving_where_a_file_blocks_the_directory_is_an_error() {
    let g = small_graph();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("w.safetensors");
    let e = save_weights(&path, &Weights::random(&g, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocker"), "{e}");
}
