//! SRAM-buffer upsets: the derived `input_flip` / `filter_flip` /
//! `stored_flip` model against hardware-level injection of `sram.ifmap` /
//! `sram.filter` / `sram.ofmap` transients into a real network (a tiny VGG quantized on Fashion-MNIST)
//! on a systolic array whose tensors span several buffer tiles. The exact
//! exposure counting is checked against the hardware rule in
//! `src/derive/buffers.rs`; here the whole chain — rates, derivation, the
//! engine's hooks — must give the same corruption statistics as the
//! hardware model.

mod campaign_common;
mod common;

use std::sync::Arc;

use campaign_common::{first_images, tiny_model};
use ftnas::accel::description::{BitSerial, Precision, Serial};
use ftnas::accel::Dataflow;
use ftnas::derive::network::{derive_bitserial_from_spec, derive_from_spec, gemm_layers};
use ftnas::engine::{Engine, FastEngine, FeatureFaults};
use ftnas::fault::FaultModel;
use ftnas::hwsim::bsnet::BitSerialNetwork;
use ftnas::hwsim::network::HwNetwork;
use ftnas::hwsim::spec::HwFaultSpec;
use ftnas::quant::QModel;

/// Fractions of (image, chip) runs whose logits changed and whose top-1
/// changed against the clean run.
fn changed(clean: &[Vec<i32>], runs: &[Vec<Vec<i32>>]) -> (f64, f64) {
    let argmax = |v: &[i32]| {
        (0..v.len())
            .max_by_key(|&i| (v[i], usize::MAX - i))
            .unwrap()
    };
    let (mut any, mut top, mut n) = (0usize, 0usize, 0usize);
    for chip in runs {
        for (c, r) in clean.iter().zip(chip) {
            n += 1;
            any += usize::from(c != r);
            top += usize::from(argmax(c) != argmax(r));
        }
    }
    (any as f64 / n as f64, top as f64 / n as f64)
}

/// Two proportions of `n` trials each agree within 4.5 standard errors.
fn agree(a: f64, b: f64, n: usize) -> bool {
    let se = ((a * (1.0 - a) + b * (1.0 - b)) / n as f64)
        .sqrt()
        .max(1.0 / n as f64);
    (a - b).abs() <= 4.5 * se
}

/// Filter-buffer upsets per bit per cycle where about half the runs change.
const FILTER_RATE: f64 = 2e-7;

#[test]
fn derived_buffer_flips_match_hardware_injection() {
    let q = tiny_model();
    let (images, chips) = (100usize, 20u64);
    let (px, _) = first_images(images);
    // rates per bit per cycle where about half the runs change (the IS
    // array takes ~4x the cycles)
    for (dataflow, site, rate) in [
        (Dataflow::Ws, "sram.ofmap", 4e-8),
        (Dataflow::Os, "sram.ifmap", 4e-8),
        (Dataflow::Ws, "sram.filter", FILTER_RATE),
        (Dataflow::Os, "sram.filter", FILTER_RATE),
        (Dataflow::Is, "all", 5e-9),
    ] {
        // 1 KiB per buffer: the 6x28x28 feature map takes 5 tiles
        let acc = common::systolic_accelerator(8, 8, dataflow, q.datapath, 1);
        let net = HwNetwork::new(&acc, &q)
            .unwrap()
            .with_executor(Arc::new(ftnas::hwsim::layer::Exact));
        let text = match site {
            "all" => format!(
                "[sites.\"sram.ifmap\"]\ntransient_per_bit_cycle = {rate:e}\n\
                 [sites.\"sram.filter\"]\ntransient_per_bit_cycle = {rate:e}\n\
                 [sites.\"sram.ofmap\"]\ntransient_per_bit_cycle = {rate:e}\n"
            ),
            s => format!("[sites.\"{s}\"]\ntransient_per_bit_cycle = {rate:e}\n"),
        };
        let spec = HwFaultSpec::parse(&text, std::path::Path::new("sram.toml")).unwrap();
        let layers = gemm_layers(&q, &px[..4 * q.input_shape().numel()]);
        let (d, left_out) = derive_from_spec(
            net.array(),
            &net.buffer_geometry(),
            net.clock_mhz(),
            &q,
            &layers,
            &spec,
        );
        assert!(left_out.is_empty(), "{left_out:?}");
        assert_eq!(d.buffers.len(), q.mac_layers().count());
        for b in &d.buffers {
            let filter = matches!(site, "sram.filter" | "all");
            assert_eq!(b.filter_flip > 0.0, filter, "{site} {}", b.name);
            let input = matches!(site, "sram.ifmap" | "all");
            assert_eq!(b.input_flip > 0.0, input, "{site} {}", b.name);
        }
        let fm = FaultModel::from_spec(d.fault_spec("sram transients".into())).unwrap();
        assert!(fm.spec().has_buffer_flips());

        let what = format!("{dataflow:?} {site}");
        compare(&what, &q, px, chips, &fm, |chip| {
            let faults = spec.sample_chip(11, chip, &net).unwrap();
            net.run_images(px, 0, &faults).unwrap()
        });
    }
}

/// Run `chips` chips of the hardware (`hw(chip)`: logits of `px`) and of
/// the engine under `fm`, and check that the fractions of runs whose logits
/// and whose top-1 changed agree.
fn compare(
    what: &str,
    q: &QModel,
    px: &[f32],
    chips: u64,
    fm: &FaultModel,
    hw: impl Fn(u64) -> Vec<Vec<i32>>,
) {
    let clean = FastEngine.run(q, px, 0, None).unwrap();
    let (mut hw_runs, mut alg) = (Vec::new(), Vec::new());
    for chip in 0..chips {
        hw_runs.push(hw(chip));
        let f = FeatureFaults {
            injector: fm.feature().unwrap(),
            seed: 11,
            trial: chip,
        };
        alg.push(FastEngine.run(q, px, 0, Some(f)).unwrap());
    }
    let n = clean.len() * chips as usize;
    let (hw_any, hw_top) = changed(&clean, &hw_runs);
    let (alg_any, alg_top) = changed(&clean, &alg);
    eprintln!(
        "{what}: logits changed hw {hw_any:.3} derived {alg_any:.3}; \
         top-1 changed hw {hw_top:.3} derived {alg_top:.3}"
    );
    // the rate must do something visible, short of breaking everything
    assert!((0.15..0.9).contains(&hw_any), "{what}: hw {hw_any}");
    assert!(agree(hw_any, alg_any, n), "{what}: {hw_any} vs {alg_any}");
    assert!(agree(hw_top, alg_top, n), "{what}: {hw_top} vs {alg_top}");
}

/// A small Stripes-like design: 2 tiles of 4 windows x 4 filters, 4 lanes,
/// one activation bit per cycle, per-layer precision.
fn small_stripes() -> BitSerial {
    BitSerial {
        tiles: 2,
        windows: 4,
        filters: 4,
        lanes: 4,
        serial: Serial::Activations,
        bits_per_cycle: 1,
        precision: Precision::PerLayer,
        group_size: None,
    }
}

#[test]
fn derived_buffer_flips_match_hardware_injection_on_a_bit_serial_design() {
    let q = tiny_model();
    let (images, chips) = (100usize, 20u64);
    let (px, _) = first_images(images);
    let design = small_stripes();
    // 1 KiB per buffer: the 6x28x28 feature map takes 5 tiles
    let acc = common::bitserial_accelerator(design.clone(), q.datapath, 1);
    let net = BitSerialNetwork::new(&acc, &q).unwrap();
    let rate = 4e-9;
    let text = format!(
        "[sites.\"sram.ifmap\"]\ntransient_per_bit_cycle = {rate:e}\n\
         [sites.\"sram.filter\"]\ntransient_per_bit_cycle = {:e}\n\
         [sites.\"sram.ofmap\"]\ntransient_per_bit_cycle = {rate:e}\n",
        rate * 10.0
    );
    let spec = HwFaultSpec::parse(&text, std::path::Path::new("sram.toml")).unwrap();
    let layers = gemm_layers(&q, &px[..4 * q.input_shape().numel()]);
    let (d, left_out) =
        derive_bitserial_from_spec(&design, &net.buffer_geometry(), 500.0, &q, &layers, &spec);
    assert!(left_out.is_empty(), "{left_out:?}");
    assert!(d.buffers.iter().all(|b| b.filter_flip > 0.0));
    let fm = FaultModel::from_spec(d.fault_spec("sram transients".into())).unwrap();
    compare(
        "Stripes sram.ifmap + sram.filter + sram.ofmap",
        &q,
        px,
        chips,
        &fm,
        |chip| {
            let faults = spec.sample_chip(11, chip, &net).unwrap();
            net.run_images(px, 0, &faults).unwrap()
        },
    );
}

/// Stuck cells of the feature-map buffers: the derived model
/// (`[stuck_cells]`, the buffers' word counts and the spec's densities) is
/// the hardware rule itself, so a chip whose hardware faults are exactly the
/// cells the model draws gives the engine's logits bit for bit — on
/// multi-tile tensors, where one cell hits a code of every tile, on two
/// systolic dataflows and a bit-serial design.
#[test]
fn stuck_feature_cells_are_the_hardware_rule() {
    let q = tiny_model();
    let (px, _) = first_images(12);
    let text = "[sites.\"sram.ifmap\"]\nstuck_at_0 = 1e-3\nstuck_at_1 = 2e-3\n\
                [sites.\"sram.ofmap\"]\nstuck_at_0 = 2e-3\nstuck_at_1 = 1e-3\n";
    let spec = HwFaultSpec::parse(text, std::path::Path::new("stuck.toml")).unwrap();
    let layers = gemm_layers(&q, &px[..4 * q.input_shape().numel()]);
    let mut changed = 0;
    for dataflow in [Dataflow::Os, Dataflow::Ws] {
        let acc = common::systolic_accelerator(8, 8, dataflow, q.datapath, 1);
        let net = HwNetwork::new(&acc, &q).unwrap();
        let geometry = net.buffer_geometry();
        let (d, left_out) =
            derive_from_spec(net.array(), &geometry, net.clock_mhz(), &q, &layers, &spec);
        assert!(left_out.is_empty(), "{left_out:?}");
        changed += check_stuck_cells(&format!("{dataflow:?}"), &q, px, &d, &geometry, |c| {
            net.run_images(px, 0, c).unwrap()
        });
    }
    let design = small_stripes();
    let acc = common::bitserial_accelerator(design.clone(), q.datapath, 1);
    let net = BitSerialNetwork::new(&acc, &q).unwrap();
    let geometry = net.buffer_geometry();
    let (d, left_out) = derive_bitserial_from_spec(&design, &geometry, 500.0, &q, &layers, &spec);
    assert!(left_out.is_empty(), "{left_out:?}");
    changed += check_stuck_cells("Stripes", &q, px, &d, &geometry, |c| {
        net.run_images(px, 0, c).unwrap()
    });
    assert!(changed > 0, "the stuck cells change some logits");
}

/// Derivation `d` carries the spec's stuck feature cells with `geometry`'s
/// word counts; four chips whose hardware faults (`hw`) are the cells the
/// written model draws give the engine's logits. Returns the logits that
/// differ from the clean run.
fn check_stuck_cells(
    what: &str,
    q: &QModel,
    px: &[f32],
    d: &ftnas::derive::network::NetworkDerivation,
    geometry: &ftnas::derive::buffers::BufferGeometry,
    hw: impl Fn(&ftnas::hwsim::spec::ChipFaults) -> Vec<Vec<i32>>,
) -> usize {
    use ftnas::fault::FeatureBuffer;
    use ftnas::hwsim::network::ChipFault;
    use ftnas::hwsim::spec::ChipFaults;
    use ftnas::hwsim::sram::{SramBuffer, SramFault};
    use ftnas::hwsim::FaultKind;

    let ifmap = d.stuck_cells.ifmap.expect("ifmap cells derived");
    let ofmap = d.stuck_cells.ofmap.expect("ofmap cells derived");
    assert_eq!(
        (ifmap.words, ifmap.p0, ifmap.p1),
        (geometry.ifmap_words, 1e-3, 2e-3)
    );
    assert_eq!(
        (ofmap.words, ofmap.p0, ofmap.p1),
        (geometry.ofmap_words, 2e-3, 1e-3)
    );
    let fm = FaultModel::from_spec(d.fault_spec("stuck feature cells".into())).unwrap();
    let fm = FaultModel::parse_str(&fm.to_toml_string(), "written.toml").unwrap();
    let clean = FastEngine.run(q, px, 0, None).unwrap();
    let mut changed = 0;
    for chip in 0..4u64 {
        let draw = ftnas::fault::draw_key(11, chip);
        let mut permanent = Vec::new();
        for (buffer, m, site) in [
            (FeatureBuffer::Ifmap, ifmap, SramBuffer::Ifmap),
            (FeatureBuffer::Ofmap, ofmap, SramBuffer::Ofmap),
        ] {
            for c in m.cells(draw, buffer, q.datapath.act_bits) {
                permanent.push(ChipFault::Sram(SramFault {
                    buffer: site,
                    address: c.address,
                    bit: c.bit as u8,
                    kind: if c.one {
                        FaultKind::StuckAt1
                    } else {
                        FaultKind::StuckAt0
                    },
                }));
            }
        }
        assert!(!permanent.is_empty(), "{what} chip {chip} has stuck cells");
        let chip_faults = ChipFaults {
            seed: 11,
            chip,
            permanent,
            ..ChipFaults::none()
        };
        let on_hw = hw(&chip_faults);
        let f = FeatureFaults {
            injector: fm.feature().unwrap(),
            seed: 11,
            trial: chip,
        };
        let alg = FastEngine.run(q, px, 0, Some(f)).unwrap();
        assert_eq!(on_hw, alg, "{what} chip {chip}");
        changed += on_hw.iter().zip(&clean).filter(|(a, b)| a != b).count();
    }
    changed
}
