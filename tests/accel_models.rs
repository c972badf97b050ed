//! Every shipped accelerator times the shipped ResNet-20 and MobileNet-V2
//! model files, and the analytical compute cycles of every systolic layer
//! equal the cycles the cycle-level functional model (`hwsim`) steps for the
//! same GEMM (minus SCALE-Sim's final-timestamp convention, see hwsim docs).

use std::path::Path;

use ftnas::accel::{time_graph, Accelerator};
use ftnas::hwsim::SystolicArray;
use ftnas::model::{load_model, Shape};

fn shipped_accelerators() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/accelerators"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(v.len() >= 6, "{v:?}");
    v
}

#[test]
fn shipped_accelerators_time_shipped_models() {
    for acc_path in shipped_accelerators() {
        let acc = Accelerator::load(&acc_path).unwrap();
        for model in ["resnet20", "mobilenetv2"] {
            for shape in [Shape::new(1, 28, 28), Shape::new(3, 32, 32)] {
                let path = format!("{}/models/{model}.toml", env!("CARGO_MANIFEST_DIR"));
                let g = load_model(Path::new(&path), shape).unwrap();
                let t = time_graph(&acc, &g, None)
                    .unwrap_or_else(|e| panic!("{} / {model}: {e}", acc_path.display()));
                let mac_layer_macs: u64 = t
                    .layers
                    .iter()
                    .filter(|l| matches!(l.kind.as_str(), "conv" | "dwconv" | "linear"))
                    .map(|l| l.macs)
                    .sum();
                assert_eq!(mac_layer_macs, g.total_macs(), "{} / {model}", acc.name);
                assert!(t.totals.total_cycles > 0);
                assert_eq!(
                    t.totals.total_cycles,
                    t.totals.compute_cycles + t.totals.stall_cycles,
                    "{} / {model}",
                    acc.name
                );
                // No design beats its peak: cycles >= MACs / MAC units.
                assert!(
                    t.totals.total_cycles as f64 >= t.totals.macs as f64 / t.mac_units as f64,
                    "{} / {model}",
                    acc.name
                );
            }
        }
    }
}

#[test]
fn analytical_compute_cycles_equal_cycle_level_steps() {
    let g = load_model(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/mobilenetv2.toml"
        )),
        Shape::new(1, 28, 28),
    )
    .unwrap();
    let mut checked = 0;
    for acc_path in shipped_accelerators() {
        let acc = Accelerator::load(&acc_path).unwrap();
        let Some(s) = acc.systolic.clone() else {
            continue;
        };
        let array = SystolicArray::new(s.rows, s.cols, s.dataflow).unwrap();
        let t = time_graph(&acc, &g, None).unwrap();
        for l in &t.layers {
            let m = array.mapping(l.gemm.pixels, l.gemm.window, l.gemm.filters);
            // One GEMM per repeat (group), run back to back; SCALE-Sim
            // reports the last cycle's 0-based index, one less than the
            // cycles stepped.
            assert_eq!(
                l.compute_cycles,
                l.repeats as u64 * m.cycles - 1,
                "{} {}",
                acc.name,
                l.name
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}
