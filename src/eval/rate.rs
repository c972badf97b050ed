//! What a fault *rate* means: [`RateScaler`] turns one fault model (a
//! shorthand or a file, which fixes the *kind* and *shape* of the faults)
//! into the model at rate `r`.
//!
//! A fault model has up to two parts, feature and weight. Each part is
//! scaled by its own factor `k` (below); every probability of the part — the
//! default section and every per-layer override — is scaled by that same
//! `k`, so per-layer ratios are kept:
//!
//! | kind | parameter at factor `k` |
//! |---|---|
//! | `mibb` | `p -> min(1, k p)` (per-MAC fault probability) |
//! | `bitflip` | `p -> min(1, k p)` (per-bit flip probability) |
//! | `output_hit` | `p_out -> 1 - (1 - p_out)^k` (bit weights, sign and multiplicity kept) |
//! | `stuck_at` | `p0[b] -> k p0[b]`, `p1[b] -> k p1[b]`; where `k (p0[b] + p1[b]) > 1` both are divided by their sum (the stuck-at-0 : stuck-at-1 ratio is kept) |
//! | `adsaf` | `p -> min(1, k p)` (stuck-at-1 share and sign rule kept) |
//! | `input_flip`, `filter_flip`, `stored_flip` | `q -> (1 - (1 - 2q)^k) / 2` (an odd number of upsets at `k` times the per-cycle rate: exact for any residency; transients, so scaled with the feature part) |
//! | `[stuck_cells.*]` `p0`, `p1` | `p -> k p`, divided by their sum where `k (p0 + p1) > 1` (as `stuck_at`; feature faults, so the feature part's `k`) |
//! | `[stuck_macs]` `p0`, `p1` of every register kind | the same rule (feature part's `k`); the grid is kept |
//!
//! `output_hit` scales as the probability of at least one of many small
//! independent events each made `k` times likelier: `1-(1-p_out)^k`, which
//! is `k p_out` for small `p_out` and never leaves [0, 1] (MiBB's
//! `p_out = 1-(1-p)^n` behaves the same way when `p` is scaled).
//!
//! The factor depends on the [`RateMode`]:
//! - **absolute** (default): `r` is the part's *nominal rate*, so
//!   `k = r / r0` with `r0` the nominal rate of the model as given. The
//!   nominal rate is read from the part's default section: `mibb` and
//!   `bitflip` `p`, `adsaf` `p`, `stuck_at` the probability that a weight
//!   bit is stuck, `p0 + p1` averaged over the `weight_bits` bit positions.
//!   So `--weight-fault sa:1e-3 --rates 1e-4,1e-2` runs `p0 = p1 = 5e-5`
//!   and `5e-3`, and with a file the default section gets exactly rate `r`
//!   while its overrides keep their ratio to it. A model with both parts
//!   puts both at rate `r`. A part without a nominal rate (default section
//!   `output_hit` or `none`, or only `[[layer]]` entries) or with `r0 = 0`
//!   cannot be put at an absolute rate: use relative mode.
//! - **relative**: `r` is the factor itself (`k = r`, rate 1 = the model as
//!   given), e.g. to scale a model derived from hardware rates.

use std::fmt;

use serde::Serialize;

use super::EvalError;
use crate::fault::{
    FaultModel, FaultSpec, FeatureFault, LayerOverride, PerBit, SharedStuck, StuckAt, WeightFault,
};

/// How sweep rates map onto a fault model (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateMode {
    /// The rate is the nominal rate of each fault part.
    Absolute,
    /// The rate multiplies the model's probabilities (1 = as given).
    Relative,
}

impl fmt::Display for RateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RateMode::Absolute => "absolute",
            RateMode::Relative => "relative",
        })
    }
}

/// One fault model, ready to be put at any rate.
#[derive(Debug, Clone)]
pub struct RateScaler {
    base: FaultSpec,
    mode: RateMode,
    weight_bits: u8,
    /// Nominal rate of the feature part (absolute mode), if it has faults.
    feature_rate: Option<f64>,
    /// Nominal rate of the weight part (absolute mode), if it has faults.
    weight_rate: Option<f64>,
}

/// The nominal rate of a feature model (None: it has none).
pub fn feature_nominal_rate(f: &FeatureFault) -> Option<f64> {
    match f {
        FeatureFault::Mibb(m) => Some(m.p),
        FeatureFault::BitFlip(m) => Some(m.p),
        FeatureFault::OutputHit(_) | FeatureFault::Off => None,
    }
}

/// The nominal rate of a weight model on `weight_bits`-bit codes.
pub fn weight_nominal_rate(w: &WeightFault, weight_bits: u8) -> Option<f64> {
    match w {
        WeightFault::StuckAt(s) => {
            let bits = weight_bits.max(1) as usize;
            Some((0..bits).map(|b| s.p0.at(b) + s.p1.at(b)).sum::<f64>() / bits as f64)
        }
        WeightFault::AdSaf(a) => Some(a.p),
        WeightFault::Off => None,
    }
}

impl RateScaler {
    /// Prepare `model` for rates in `mode`; `weight_bits` is the datapath's
    /// (it defines the per-bit average of a stuck-at rate). Errors when the
    /// model has no faults, or when absolute mode has no nominal rate to
    /// scale from.
    pub fn new(
        model: &FaultModel,
        mode: RateMode,
        weight_bits: u8,
    ) -> Result<RateScaler, EvalError> {
        let spec = model.spec().clone();
        let (has_f, has_w) = (spec.has_feature_faults(), spec.has_weight_faults());
        if !has_f && !has_w {
            return Err(EvalError::Invalid(
                "the fault model has no faults: nothing to sweep".into(),
            ));
        }
        let mut scaler = RateScaler {
            base: spec,
            mode,
            weight_bits,
            feature_rate: None,
            weight_rate: None,
        };
        if mode == RateMode::Relative {
            return Ok(scaler);
        }
        let nominal = |part: &str, r: Option<f64>, kinds: &str| match r {
            Some(r) if r > 0.0 => Ok(r),
            Some(_) => Err(EvalError::Invalid(format!(
                "the {part} fault rate of the model is 0, so absolute rates cannot keep its \
                 shape; give it a nonzero rate or use relative rates (--relative)"
            ))),
            None => Err(EvalError::Invalid(format!(
                "absolute rates need a [{part}] section of kind {kinds} (its rate is what \
                 --rates sets); this model's {part} faults have no such rate: use relative \
                 rates (--relative), which scale the model as given"
            ))),
        };
        if has_f {
            let r = scaler
                .base
                .feature
                .as_ref()
                .and_then(|f| feature_nominal_rate(&f.fault));
            scaler.feature_rate = Some(nominal("feature", r, "mibb or bitflip")?);
        }
        if has_w {
            let r = scaler
                .base
                .weight
                .as_ref()
                .and_then(|w| weight_nominal_rate(&w.fault, weight_bits));
            scaler.weight_rate = Some(nominal("weight", r, "stuck_at or adsaf")?);
        }
        Ok(scaler)
    }

    pub fn mode(&self) -> RateMode {
        self.mode
    }

    /// Check that `rate` is usable in this mode.
    pub fn check_rate(&self, rate: f64) -> Result<(), EvalError> {
        if !rate.is_finite() || rate < 0.0 {
            return Err(EvalError::Invalid(format!(
                "rate {rate} is not a finite number >= 0"
            )));
        }
        if self.mode == RateMode::Absolute && rate > 1.0 {
            return Err(EvalError::Invalid(format!(
                "rate {rate} is above 1; absolute rates are probabilities (use --relative \
                 for factors)"
            )));
        }
        Ok(())
    }

    /// The (feature, weight) scale factors at `rate`.
    pub fn factors(&self, rate: f64) -> (f64, f64) {
        match self.mode {
            RateMode::Relative => (rate, rate),
            RateMode::Absolute => (
                self.feature_rate.map_or(1.0, |r0| rate / r0),
                self.weight_rate.map_or(1.0, |r0| rate / r0),
            ),
        }
    }

    /// The fault model at `rate`.
    pub fn at(&self, rate: f64) -> Result<FaultModel, EvalError> {
        self.check_rate(rate)?;
        let (kf, kw) = self.factors(rate);
        Ok(FaultModel::from_spec(scale_spec(
            &self.base,
            kf,
            kw,
            self.weight_bits,
        ))?)
    }
}

/// `spec` with its feature part scaled by `kf` and its weight part by `kw`
/// (see the module doc); `weight_bits` bounds per-bit stuck-at lists when a
/// uniform value must be spelled out per bit.
pub fn scale_spec(spec: &FaultSpec, kf: f64, kw: f64, weight_bits: u8) -> FaultSpec {
    let mut out = spec.clone();
    if let Some(f) = &mut out.feature {
        f.fault = scale_feature(&f.fault, kf);
    }
    if let Some(w) = &mut out.weight {
        w.fault = scale_weight(&w.fault, kw, weight_bits);
    }
    out.layers = spec
        .layers
        .iter()
        .map(|l| LayerOverride {
            name: l.name.clone(),
            feature: l.feature.as_ref().map(|f| scale_feature(f, kf)),
            weight: l.weight.as_ref().map(|w| scale_weight(w, kw, weight_bits)),
            input_flip: scale_odd_flips(l.input_flip, kf),
            filter_flip: scale_odd_flips(l.filter_flip, kf),
            stored_flip: scale_odd_flips(l.stored_flip, kf),
        })
        .collect();
    for cells in [&mut out.stuck_cells.ifmap, &mut out.stuck_cells.ofmap]
        .into_iter()
        .flatten()
    {
        (cells.p0, cells.p1) = crate::fault::stuck_at::scale_pair(cells.p0, cells.p1, kf);
    }
    out.stuck_macs = spec.stuck_macs.map(|m| m.scaled(kf));
    out
}

/// A per-bit flip probability `q = (1 - (1-2p)^T) / 2` (an odd number of
/// Bernoulli(p) upsets in `T` cycles) at `k` times the raw rate: `(1 -
/// (1-2q)^k) / 2`, exact for any `T`.
fn scale_odd_flips(q: f64, k: f64) -> f64 {
    if q <= 0.0 || k == 0.0 {
        return 0.0;
    }
    if q >= 0.5 {
        return 0.5;
    }
    -0.5 * (k * (-2.0 * q).ln_1p()).exp_m1()
}

fn scale_prob(p: f64, k: f64) -> f64 {
    (p * k).min(1.0)
}

/// `1 - (1 - p)^k`, computed without cancellation for small `p`.
fn scale_at_least_one(p: f64, k: f64) -> f64 {
    if k == 0.0 || p == 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    (-(k * (-p).ln_1p()).exp_m1()).clamp(0.0, 1.0)
}

fn scale_feature(f: &FeatureFault, k: f64) -> FeatureFault {
    let mut f = f.clone();
    match &mut f {
        FeatureFault::Off => {}
        FeatureFault::Mibb(m) => m.p = scale_prob(m.p, k),
        FeatureFault::BitFlip(m) => m.p = scale_prob(m.p, k),
        FeatureFault::OutputHit(m) => {
            m.p_out = scale_at_least_one(m.p_out, k);
            m.stream = m.stream.as_ref().map(|s| Box::new(s.scaled(k)));
        }
    }
    f
}

fn scale_weight(w: &WeightFault, k: f64, weight_bits: u8) -> WeightFault {
    match w {
        WeightFault::Off => WeightFault::Off,
        WeightFault::AdSaf(a) => WeightFault::AdSaf(crate::fault::AdSaf {
            p: scale_prob(a.p, k),
            ..*a
        }),
        WeightFault::StuckAt(s) => WeightFault::StuckAt(scale_stuck_at(s, k, weight_bits)),
    }
}

fn scale_stuck_at(s: &StuckAt, k: f64, weight_bits: u8) -> StuckAt {
    let pair = |p0: f64, p1: f64| crate::fault::stuck_at::scale_pair(p0, p1, k);
    // Register bits scale like cell bits: both are densities of stuck cells.
    let shared = s.shared.as_ref().map(|sh| {
        let (p0, p1) = pair(sh.p0, sh.p1);
        SharedStuck {
            p0,
            p1,
            ..sh.clone()
        }
    });
    match (&s.p0, &s.p1) {
        (PerBit::Uniform(p0), PerBit::Uniform(p1)) => {
            let (a, b) = pair(*p0, *p1);
            StuckAt {
                p0: PerBit::Uniform(a),
                p1: PerBit::Uniform(b),
                shared,
            }
        }
        (p0, p1) => {
            let n = p0
                .listed_bits()
                .into_iter()
                .chain(p1.listed_bits())
                .max()
                .unwrap_or(weight_bits as usize);
            let (a, b): (Vec<f64>, Vec<f64>) = (0..n).map(|i| pair(p0.at(i), p1.at(i))).unzip();
            StuckAt {
                p0: PerBit::Bits(a),
                p1: PerBit::Bits(b),
                shared,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{AdSaf, Mibb, OutputHit};
    use proptest::prelude::*;

    fn spec_of(m: &FaultModel) -> &FaultSpec {
        m.spec()
    }

    #[test]
    fn buffer_flips_scale_as_odd_upsets_at_k_times_the_rate() {
        use crate::derive::buffers::odd_upsets;
        // q of T cycles at per-cycle p, scaled by k, is q of T cycles at k p
        // exactly when k is an integer number of exposures: (1-2p)^(kT)
        for &(p, t) in &[(1e-9, 5000u64), (1e-4, 300), (0.01, 40)] {
            let q = odd_upsets(p, t);
            for k in [1u64, 2, 3, 10] {
                let want = odd_upsets(p, k * t);
                let got = scale_odd_flips(q, k as f64);
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "p {p} t {t} k {k}: {got} vs {want}"
                );
            }
            assert_eq!(scale_odd_flips(q, 0.0), 0.0);
        }
        // the rate of a file of layer entries scales them
        let fm = FaultModel::parse_str(
            "[stuck_cells.ofmap]\nwords = 64\np0 = 1e-4\np1 = 0.3\n\
             [[layer]]\nname = \"c\"\ninput_flip = 1e-6\nstored_flip = 2e-6\n",
            "f.toml",
        )
        .unwrap();
        let s = RateScaler::new(&fm, RateMode::Relative, 8).unwrap();
        let at = s.at(10.0).unwrap();
        // stuck cells: times 10, and past p0 + p1 = 1 normalised
        let cells = spec_of(&at).stuck_cells.ofmap.unwrap();
        assert!((cells.p0 - 1e-3 / 3.001).abs() < 1e-12, "{}", cells.p0);
        assert!((cells.p0 + cells.p1 - 1.0).abs() < 1e-12);
        assert_eq!(cells.words, 64);
        let at = s.at(2.0).unwrap();
        let cells = spec_of(&at).stuck_cells.ofmap.unwrap();
        assert!((cells.p0 - 2e-4).abs() < 1e-15 && (cells.p1 - 0.6).abs() < 1e-12);
        let l = &spec_of(&at).layers[0];
        assert!((l.input_flip / 2e-6 - 1.0).abs() < 1e-4, "{}", l.input_flip);
        // stuck MAC-unit bits scale as the stuck cells, the grid kept
        let macs_model = FaultModel::parse_str(
            "[stuck_macs]\ndataflow = \"os\"\nrows = 4\ncols = 3\nweight = { p0 = 1e-4, p1 = 3e-4 }\n",
            "m.toml",
        )
        .unwrap();
        let macs = RateScaler::new(&macs_model, RateMode::Relative, 8).unwrap();
        let m = spec_of(&macs.at(5.0).unwrap()).stuck_macs.unwrap();
        assert_eq!((m.rows, m.cols), (4, 3));
        let w = m.of(crate::fault::MacRegister::Weight);
        assert!((w.p0 - 5e-4).abs() < 1e-15 && (w.p1 - 1.5e-3).abs() < 1e-15);
        assert!(m.of(crate::fault::MacRegister::Act).p0 == 0.0);
        let at = s.at(10.0).unwrap();
        let l = &spec_of(&at).layers[0];
        assert!((l.input_flip / 1e-5 - 1.0).abs() < 1e-4, "{}", l.input_flip);
        assert!(
            (l.stored_flip / 2e-5 - 1.0).abs() < 1e-4,
            "{}",
            l.stored_flip
        );
    }

    #[test]
    fn shorthands_take_the_rate_as_their_probability() {
        let fm = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
        let s = RateScaler::new(&fm, RateMode::Absolute, 8).unwrap();
        let at = s.at(3e-3).unwrap();
        let f = &spec_of(&at).feature.as_ref().unwrap().fault;
        assert!(matches!(f, FeatureFault::Mibb(Mibb { p }) if (p - 3e-3).abs() < 1e-15));

        let fm = FaultModel::parse_weight_flag("sa:1e-3").unwrap();
        let s = RateScaler::new(&fm, RateMode::Absolute, 8).unwrap();
        let at = s.at(1e-2).unwrap();
        let WeightFault::StuckAt(sa) = &spec_of(&at).weight.as_ref().unwrap().fault else {
            panic!("stuck-at expected")
        };
        assert!((sa.p0.at(0) - 5e-3).abs() < 1e-15 && (sa.p1.at(7) - 5e-3).abs() < 1e-15);

        let fm = FaultModel::parse_weight_flag("adsaf:0.08").unwrap();
        let s = RateScaler::new(&fm, RateMode::Absolute, 8).unwrap();
        let at = s.at(0.2).unwrap();
        let WeightFault::AdSaf(a) = &spec_of(&at).weight.as_ref().unwrap().fault else {
            panic!("adsaf expected")
        };
        assert!((a.p - 0.2).abs() < 1e-12 && a.sa1_fraction == AdSaf::PAPER_SA1_FRACTION);
    }

    #[test]
    fn overrides_scale_with_their_part_and_keep_ratios() {
        let text = r#"
[feature]
kind = "mibb"
p = 1e-4
[weight]
kind = "stuck_at"
p0 = 1e-3
p1 = 3e-3
[[layer]]
name = "a"
feature = { kind = "output_hit", p_out = 0.01, bit_weights = [1.0] }
weight = { kind = "stuck_at", p0 = [0.0, 2e-3] }
"#;
        let fm = FaultModel::parse_str(text, "t.toml").unwrap();
        let s = RateScaler::new(&fm, RateMode::Absolute, 2).unwrap();
        // feature nominal 1e-4 -> factor 10; weight nominal 4e-3 -> factor 0.25
        let at = s.at(1e-3).unwrap();
        let spec = spec_of(&at);
        let FeatureFault::Mibb(m) = &spec.feature.as_ref().unwrap().fault else {
            panic!()
        };
        assert!((m.p - 1e-3).abs() < 1e-15);
        let WeightFault::StuckAt(sa) = &spec.weight.as_ref().unwrap().fault else {
            panic!()
        };
        assert!((sa.p0.at(0) - 2.5e-4).abs() < 1e-15 && (sa.p1.at(0) - 7.5e-4).abs() < 1e-15);
        let l = &spec.layers[0];
        let Some(FeatureFault::OutputHit(OutputHit { p_out, .. })) = &l.feature else {
            panic!()
        };
        assert!((p_out - (1.0 - 0.99f64.powi(10))).abs() < 1e-12);
        let Some(WeightFault::StuckAt(w)) = &l.weight else {
            panic!()
        };
        assert!(w.p0.at(0) == 0.0 && (w.p0.at(1) - 5e-4).abs() < 1e-15);
        assert_eq!(w.p1, PerBit::Bits(vec![0.0, 0.0]));
    }

    #[test]
    fn stuck_at_saturates_keeping_the_ratio() {
        let fm = FaultModel::parse_str(
            "[weight]\nkind = \"stuck_at\"\np0 = 0.1\np1 = 0.3\n",
            "t.toml",
        )
        .unwrap();
        let s = RateScaler::new(&fm, RateMode::Relative, 8).unwrap();
        let at = s.at(10.0).unwrap();
        let WeightFault::StuckAt(sa) = &spec_of(&at).weight.as_ref().unwrap().fault else {
            panic!()
        };
        assert!((sa.p0.at(3) - 0.25).abs() < 1e-12 && (sa.p1.at(3) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn models_without_a_nominal_rate_need_relative_mode() {
        let text = "[[layer]]\nname = \"a\"\nfeature = { kind = \"output_hit\", p_out = 0.01, \
                    bit_weights = [1.0] }\n";
        let fm = FaultModel::parse_str(text, "t.toml").unwrap();
        let e = RateScaler::new(&fm, RateMode::Absolute, 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--relative") && e.contains("feature"), "{e}");
        let s = RateScaler::new(&fm, RateMode::Relative, 8).unwrap();
        assert!(s.at(2.0).is_ok());
        assert!(s.at(-1.0).is_err() && s.at(f64::NAN).is_err());

        let e = RateScaler::new(&FaultModel::none(), RateMode::Relative, 8).unwrap_err();
        assert!(e.to_string().contains("no faults"), "{e}");
        let zero = FaultModel::parse_feature_flag("bitflip:0").unwrap();
        let e = RateScaler::new(&zero, RateMode::Absolute, 8).unwrap_err();
        assert!(e.to_string().contains("is 0"), "{e}");

        let fm = FaultModel::parse_feature_flag("bitflip:1e-5").unwrap();
        let s = RateScaler::new(&fm, RateMode::Absolute, 8).unwrap();
        let e = s.at(2.0).unwrap_err().to_string();
        assert!(e.contains("above 1"), "{e}");
    }

    proptest! {
        /// Scaling by k then by j is scaling by k*j (away from saturation),
        /// rate 0 removes every fault and factor 1 changes nothing.
        #[test]
        fn scaling_composes(p in 1e-6f64..1e-2, k in 0.1f64..10.0, j in 0.1f64..10.0, pout in 0.0f64..0.5) {
            let text = format!(
                "[feature]\nkind = \"bitflip\"\np = {p:e}\n[weight]\nkind = \"adsaf\"\np = {p:e}\n\
                 [[layer]]\nname = \"a\"\nfeature = {{ kind = \"output_hit\", p_out = {pout:e}, bit_weights = [1.0] }}\n"
            );
            let fm = FaultModel::parse_str(&text, "t.toml").unwrap();
            let base = fm.spec();
            let twice = scale_spec(&scale_spec(base, k, k, 8), j, j, 8);
            let once = scale_spec(base, k * j, k * j, 8);
            let close = |a: &FaultSpec, b: &FaultSpec| {
                let (FeatureFault::BitFlip(x), FeatureFault::BitFlip(y)) =
                    (&a.feature.as_ref().unwrap().fault, &b.feature.as_ref().unwrap().fault) else { return false };
                let (Some(FeatureFault::OutputHit(u)), Some(FeatureFault::OutputHit(v))) =
                    (&a.layers[0].feature, &b.layers[0].feature) else { return false };
                (x.p - y.p).abs() <= 1e-12 * x.p.max(1e-300) && (u.p_out - v.p_out).abs() < 1e-12
            };
            prop_assert!(close(&twice, &once));
            prop_assert!(close(&scale_spec(base, 1.0, 1.0, 8), base));
            let off = scale_spec(base, 0.0, 0.0, 8);
            let FeatureFault::BitFlip(b) = &off.feature.as_ref().unwrap().fault else { panic!() };
            let Some(FeatureFault::OutputHit(h)) = &off.layers[0].feature else { panic!() };
            let WeightFault::AdSaf(a) = &off.weight.as_ref().unwrap().fault else { panic!() };
            prop_assert!(b.p == 0.0 && h.p_out == 0.0 && a.p == 0.0);
        }
    }
}
