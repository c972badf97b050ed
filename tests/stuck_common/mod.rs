//! Shared by the stuck MAC-unit model tests (`derive_stuck_macs.rs`,
//! `derive_stuck_sips.rs`): chips of a derived `[stuck_macs]` model,
//! written to a file and read back, against a hardware model given exactly
//! the stuck bits the model draws.
#![allow(dead_code)]

use ftnas::engine::{Engine, FeatureFaults};
use ftnas::fault::stuck_macs::StuckMacBit;
use ftnas::fault::{FaultModel, StuckMacs};
use ftnas::hwsim::{ChipFault, ChipFaults};
use ftnas::quant::QModel;

/// What [`compare_chips`] ran.
pub struct Compared {
    /// Chips run on both sides (bit-identical logits asserted).
    pub compared: usize,
    /// Of those, chips that drew stuck bits.
    pub faulty: usize,
    /// Logits that differ from the clean run.
    pub changed: usize,
    /// Chips left out by `skip`.
    pub skipped: usize,
}

/// Run `chips` chips of `m` on `engine` and on the hardware
/// (`on_hardware`, given the chip's bits as `as_hardware` faults), except
/// those `skip` names; asserts equal logits per chip.
#[allow(clippy::too_many_arguments)]
pub fn compare_chips(
    q: &QModel,
    m: &StuckMacs,
    imgs: &[f32],
    seed: u64,
    chips: u64,
    engine: &dyn Engine,
    skip: impl Fn(&[StuckMacBit]) -> bool,
    as_hardware: impl Fn(&[StuckMacBit]) -> Vec<ChipFault>,
    on_hardware: impl Fn(&ChipFaults) -> Vec<Vec<i32>>,
) -> Compared {
    let spec = ftnas::fault::FaultSpec {
        stuck_macs: Some(*m),
        ..Default::default()
    };
    let fm = FaultModel::from_spec(spec).unwrap();
    let fm = FaultModel::parse_str(&fm.to_toml_string(), "written.toml").unwrap();
    assert_eq!(fm.spec().stuck_macs, Some(*m));
    let clean = engine.run(q, imgs, 0, None).unwrap();
    let mut out = Compared {
        compared: 0,
        faulty: 0,
        changed: 0,
        skipped: 0,
    };
    for chip in 0..chips {
        let bits = m.bits(ftnas::fault::draw_key(seed, chip), &q.datapath);
        if skip(&bits) {
            out.skipped += 1;
            continue;
        }
        let faults = ChipFaults {
            seed,
            chip,
            permanent: as_hardware(&bits),
            ..ChipFaults::none()
        };
        let on_hw = on_hardware(&faults);
        let f = FeatureFaults {
            injector: fm.feature().unwrap(),
            seed,
            trial: chip,
        };
        let alg = engine.run(q, imgs, 0, Some(f)).unwrap();
        assert_eq!(on_hw, alg, "chip {chip}: {bits:?}");
        out.compared += 1;
        out.faulty += usize::from(!bits.is_empty());
        out.changed += alg.iter().zip(&clean).filter(|(a, b)| a != b).count();
    }
    out
}
