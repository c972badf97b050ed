//! Hardware fault specification files (`accelerators/faults/*.toml`): the
//! serde types, validation with messages naming the file, the key and the
//! rule, and the sampling of one simulated chip's faults from a seed.
//!
//! # Format
//!
//! ```toml
//! # Random faults, per site (systolic arrays: pe.weight_reg, pe.act_reg,
//! # pe.psum_reg, pe.mult_out; bit-serial designs: sip.weight_reg,
//! # sip.act_reg, sip.psum_reg; both: sram.ifmap, sram.filter, sram.ofmap):
//! [sites."sram.ifmap"]
//! fit_per_mbit = 1000.0          # transient upsets: FIT (failures per 1e9 h) per Mbit (2^20 bits)
//! acceleration = 1.0             # optional, with fit_per_mbit: flux multiplier (beam tests)
//! [sites."pe.psum_reg"]
//! transient_per_bit_cycle = 1e-9 # or the probability per bit per clock cycle directly
//! stuck_at_0 = 1e-6              # permanent: fraction of bits stuck at 0 (per chip)
//! stuck_at_1 = 1e-6              # permanent: fraction of bits stuck at 1
//!
//! # Explicit single faults (any number of [[fault]] tables):
//! [[fault]]
//! site = "pe.act_reg"
//! row = 3                        # PE sites: PE row and column
//! col = 5
//! bit = 7
//! layer = 2                      # conv/linear layer index (model order, from 0)
//! cycle = 1234                   # transient flip at this cycle of the layer ...
//! # image = 0                    # optional: only in this image's inference
//! [[fault]]
//! site = "sram.filter"
//! address = 100                  # SRAM sites: word address
//! bit = 3
//! stuck_at = 1                   # ... or permanent stuck-at 0/1 (with `layer`: during that layer only)
//! ```
//!
//! FIT per Mbit converts to a probability per bit per cycle with the
//! accelerator clock: `p = fit * acceleration / (1e9 * 3600 s) / 2^20 /
//! (clock_mhz * 1e6 Hz)`.
//!
//! # Sampling a chip ([`HwFaultSpec::sample_chip`])
//!
//! Bits of a site: PE sites `rows * cols * width` (width of the register,
//! see [`FaultSite::width`]), SIP sites the register grid of
//! [`SipSite::grid`] times its width, SRAM sites `words * width` (one code
//! per word). A spec is checked against the hardware it is sampled on
//! ([`FaultTarget`]): a rate for a site the accelerator does not have is an
//! error naming the key and the sites it has. All random draws come from [`crate::fault::stream`]:
//! - **Stuck-at** cells are drawn once per chip, from
//!   `stream(seed, chip, u64::MAX - 1, site)`: each bit is stuck with
//!   probability `stuck_at_0 + stuck_at_1` (geometric skipping over the
//!   bits, [`Skipper`]), then at 1 with probability
//!   `stuck_at_1 / (stuck_at_0 + stuck_at_1)`.
//! - **Transient** flips are drawn per image inference and layer
//!   ([`ChipFaults::for_image`]) from `stream(seed, chip, image, layer * 8 +
//!   site)`: a Bernoulli(p) process over the layer's bit-cycles
//!   `cycles * bits`, visited by geometric skipping (one draw per flip, never
//!   one per bit-cycle); bit-cycle `i` is cycle `i / bits`, unit
//!   `(i % bits) / width` (PE `row * cols + col`, or SRAM address), bit
//!   `i % width`.
//!
//! `site` is the index in [`Site::ALL`]; a SIP register takes the index of
//! the PE register of the same role (`sip.weight_reg` 0, `sip.act_reg` 1,
//! `sip.psum_reg` 2), as no accelerator has both. Results depend only on (seed, chip,
//! image), never on threads or batching.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::bitserial::{SipFault, SipSite};
use super::network::{ChipFault, ImageFaults, LayerFault};
use super::sram::{SramBuffer, SramFault};
use super::{FaultKind, FaultSite, HwFault};
use crate::fault::skip::Skipper;

/// Bits in the Mbit of FIT/Mbit.
pub const BITS_PER_MBIT: f64 = 1_048_576.0;
/// Seconds in the 1e9 device-hours of a FIT.
pub const FIT_SECONDS: f64 = 1e9 * 3600.0;

/// Why a specification was rejected. Every message names the file, the key
/// and the rule.
#[derive(Debug, thiserror::Error)]
pub enum HwSpecError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown key or a value of the wrong type.
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    /// A well-formed value that breaks a rule.
    #[error("{path}: key `{key}`: {rule}")]
    Invalid {
        path: PathBuf,
        key: String,
        rule: String,
    },
}

/// A fault site: a PE register, a bit-serial SIP register or an SRAM
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    Pe(FaultSite),
    Sram(SramBuffer),
    /// A register of a bit-serial design's serial inner-product units.
    Sip(SipSite),
}

/// What a fault specification is sampled on: a network mapped onto an
/// accelerator (a systolic array, [`super::HwNetwork`], or a bit-serial design,
/// [`super::bsnet::BitSerialNetwork`]).
pub trait FaultTarget {
    /// `(rows, cols, width)` of a site on this hardware: PE or SIP grid
    /// (unit `row * cols + col`), or SRAM words (`cols = 1`); `None` if the
    /// hardware has no such site.
    fn site_grid(&self, site: Site) -> Option<(u64, u64, u32)>;
    /// Clock in MHz (for FIT rates).
    fn clock_mhz(&self) -> f64;
    /// Cycles of each conv/linear layer ("layer `L`"), in model order.
    fn layer_cycles(&self) -> Vec<u64>;
    /// Check one fault against the hardware and the layers (`layer` is
    /// `None` for a permanent fault): the reason it cannot exist.
    fn check_fault(&self, layer: Option<usize>, fault: &ChipFault) -> Result<(), String>;
}

impl Site {
    /// Every site of a systolic accelerator; the index is the site's
    /// random-stream id.
    pub const ALL: [Site; 7] = [
        Site::Pe(FaultSite::WeightReg),
        Site::Pe(FaultSite::ActReg),
        Site::Pe(FaultSite::PsumReg),
        Site::Pe(FaultSite::MultOut),
        Site::Sram(SramBuffer::Ifmap),
        Site::Sram(SramBuffer::Filter),
        Site::Sram(SramBuffer::Ofmap),
    ];

    /// Every site of a bit-serial accelerator (the SIP registers take the
    /// random-stream ids of the PE registers they correspond to).
    pub const BITSERIAL: [Site; 6] = [
        Site::Sip(SipSite::WeightReg),
        Site::Sip(SipSite::ActReg),
        Site::Sip(SipSite::PsumReg),
        Site::Sram(SramBuffer::Ifmap),
        Site::Sram(SramBuffer::Filter),
        Site::Sram(SramBuffer::Ofmap),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Site::Pe(s) => s.name(),
            Site::Sram(b) => b.name(),
            Site::Sip(s) => s.name(),
        }
    }

    pub fn parse(s: &str) -> Option<Site> {
        Site::ALL
            .into_iter()
            .chain(Site::BITSERIAL)
            .find(|site| site.name() == s)
    }

    const SIP_ONLY: [Site; 3] = [
        Site::Sip(SipSite::WeightReg),
        Site::Sip(SipSite::ActReg),
        Site::Sip(SipSite::PsumReg),
    ];

    /// Random-stream id (`0..8`).
    fn index(self) -> u64 {
        let same_role = match self {
            Site::Sip(SipSite::WeightReg) => Site::Pe(FaultSite::WeightReg),
            Site::Sip(SipSite::ActReg) => Site::Pe(FaultSite::ActReg),
            Site::Sip(SipSite::PsumReg) => Site::Pe(FaultSite::PsumReg),
            s => s,
        };
        Site::ALL.iter().position(|&s| s == same_role).unwrap_or(0) as u64
    }

    /// Order of sites in tables and maps: [`Site::ALL`], then the SIP sites.
    fn order(self) -> usize {
        match self {
            Site::Sip(s) => Site::ALL.len() + s as usize,
            s => s.index() as usize,
        }
    }

    /// (units, width): PEs, SIP registers or SRAM words, and bits per unit
    /// (no units if the hardware has no such site).
    pub fn geometry<N: FaultTarget + ?Sized>(self, net: &N) -> (u64, u32) {
        match net.site_grid(self) {
            Some((rows, cols, width)) => (rows * cols, width),
            None => (0, 0),
        }
    }

    /// Bits of the site on the chip.
    pub fn bits<N: FaultTarget + ?Sized>(self, net: &N) -> u64 {
        let (units, width) = self.geometry(net);
        units * u64::from(width)
    }

    /// The fault at `unit` (PE/SIP `row * cols + col` or address), `bit`.
    fn fault<N: FaultTarget + ?Sized>(
        self,
        net: &N,
        unit: u64,
        bit: u8,
        kind: FaultKind,
    ) -> ChipFault {
        let cols = net.site_grid(self).map_or(1, |(_, c, _)| c.max(1));
        let (row, col) = ((unit / cols) as usize, (unit % cols) as usize);
        match self {
            Site::Pe(site) => ChipFault::Pe(HwFault {
                site,
                row,
                col,
                bit,
                kind,
            }),
            Site::Sip(site) => ChipFault::Sip(SipFault {
                site,
                row,
                col,
                bit,
                kind,
            }),
            Site::Sram(buffer) => ChipFault::Sram(SramFault {
                buffer,
                address: unit as usize,
                bit,
                kind,
            }),
        }
    }
}

/// Sites order as in [`Site::ALL`].
impl Ord for Site {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

impl PartialOrd for Site {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `[sites."<site>"]` as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRatesFile {
    #[serde(default)]
    pub transient_per_bit_cycle: Option<f64>,
    #[serde(default)]
    pub fit_per_mbit: Option<f64>,
    #[serde(default)]
    pub acceleration: Option<f64>,
    #[serde(default)]
    pub stuck_at_0: Option<f64>,
    #[serde(default)]
    pub stuck_at_1: Option<f64>,
}

/// One `[[fault]]` table as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleFaultFile {
    pub site: String,
    #[serde(default)]
    pub row: Option<usize>,
    #[serde(default)]
    pub col: Option<usize>,
    #[serde(default)]
    pub address: Option<usize>,
    pub bit: u8,
    #[serde(default)]
    pub layer: Option<usize>,
    #[serde(default)]
    pub cycle: Option<u64>,
    #[serde(default)]
    pub stuck_at: Option<u8>,
    #[serde(default)]
    pub image: Option<u64>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    #[serde(default)]
    pub sites: BTreeMap<String, SiteRatesFile>,
    #[serde(default)]
    pub fault: Vec<SingleFaultFile>,
}

/// How often a site's bits flip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transient {
    /// Probability per bit per clock cycle.
    PerBitCycle(f64),
    /// FIT per Mbit, times a flux multiplier.
    FitPerMbit { fit: f64, acceleration: f64 },
}

impl Transient {
    /// Probability per bit per cycle at `clock_mhz`.
    pub fn per_bit_cycle(&self, clock_mhz: f64) -> f64 {
        match *self {
            Transient::PerBitCycle(p) => p,
            Transient::FitPerMbit { fit, acceleration } => {
                fit * acceleration / FIT_SECONDS / BITS_PER_MBIT / (clock_mhz * 1e6)
            }
        }
    }
}

/// Validated rates of one site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteRates {
    pub transient: Option<Transient>,
    pub stuck_at_0: f64,
    pub stuck_at_1: f64,
}

/// One validated explicit fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExplicitFault {
    /// `None`: permanent for the whole run; `Some(l)`: during layer `l`.
    pub layer: Option<usize>,
    /// Only in this image's inference (`None`: every image).
    pub image: Option<u64>,
    pub fault: ChipFault,
}

/// A validated hardware fault specification.
#[derive(Debug, Clone, PartialEq)]
pub struct HwFaultSpec {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub rates: BTreeMap<Site, SiteRates>,
    pub faults: Vec<ExplicitFault>,
}

/// `line L, column C: ` for a byte offset of `text`.
fn line_col(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {col}: ")
}

impl HwFaultSpec {
    /// Read, parse and validate a specification file.
    pub fn load(path: &Path) -> Result<HwFaultSpec, HwSpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| HwSpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        HwFaultSpec::parse(&text, path)
    }

    /// Parse and validate specification text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<HwFaultSpec, HwSpecError> {
        let file: SpecFile = toml::from_str(text).map_err(|e| HwSpecError::Parse {
            path: path.to_path_buf(),
            msg: format!(
                "{}{}",
                e.span()
                    .map(|s| line_col(text, s.start))
                    .unwrap_or_default(),
                e.message().trim_end()
            ),
        })?;
        HwFaultSpec::from_file(&file, path)
    }

    /// Validate the parsed tables.
    pub fn from_file(file: &SpecFile, path: &Path) -> Result<HwFaultSpec, HwSpecError> {
        let bad = |key: String, rule: String| HwSpecError::Invalid {
            path: path.to_path_buf(),
            key,
            rule,
        };
        let sites_list = Site::ALL
            .into_iter()
            .chain(Site::SIP_ONLY)
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ");
        let mut rates = BTreeMap::new();
        for (name, r) in &file.sites {
            let key = |k: &str| format!("sites.\"{name}\".{k}");
            let site = Site::parse(name).ok_or_else(|| {
                bad(
                    format!("sites.\"{name}\""),
                    format!("unknown fault site, expected one of {sites_list}"),
                )
            })?;
            let probability = |k: &str, v: Option<f64>| -> Result<f64, HwSpecError> {
                match v {
                    Some(p) if !(p.is_finite() && (0.0..=1.0).contains(&p)) => Err(bad(
                        key(k),
                        format!("must be a probability in 0..=1, found {p}"),
                    )),
                    v => Ok(v.unwrap_or(0.0)),
                }
            };
            let transient = match (r.transient_per_bit_cycle, r.fit_per_mbit) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        key("fit_per_mbit"),
                        "give either transient_per_bit_cycle or fit_per_mbit, not both".into(),
                    ))
                }
                (Some(p), None) => Some(Transient::PerBitCycle(probability(
                    "transient_per_bit_cycle",
                    Some(p),
                )?)),
                (None, Some(fit)) => {
                    if !(fit.is_finite() && fit >= 0.0) {
                        return Err(bad(
                            key("fit_per_mbit"),
                            format!("must be a finite rate >= 0, found {fit}"),
                        ));
                    }
                    let acceleration = r.acceleration.unwrap_or(1.0);
                    if !(acceleration.is_finite() && acceleration > 0.0) {
                        return Err(bad(
                            key("acceleration"),
                            format!("must be a finite factor > 0, found {acceleration}"),
                        ));
                    }
                    Some(Transient::FitPerMbit { fit, acceleration })
                }
                (None, None) => None,
            };
            if r.acceleration.is_some() && r.fit_per_mbit.is_none() {
                return Err(bad(
                    key("acceleration"),
                    "only applies to fit_per_mbit".into(),
                ));
            }
            let stuck_at_0 = probability("stuck_at_0", r.stuck_at_0)?;
            let stuck_at_1 = probability("stuck_at_1", r.stuck_at_1)?;
            if stuck_at_0 + stuck_at_1 > 1.0 {
                return Err(bad(
                    key("stuck_at_1"),
                    format!(
                        "stuck_at_0 + stuck_at_1 must be at most 1, found {}",
                        stuck_at_0 + stuck_at_1
                    ),
                ));
            }
            if transient.is_none() && r.stuck_at_0.is_none() && r.stuck_at_1.is_none() {
                return Err(bad(
                    format!("sites.\"{name}\""),
                    "sets no rate (transient_per_bit_cycle, fit_per_mbit, stuck_at_0 or stuck_at_1)"
                        .into(),
                ));
            }
            rates.insert(
                site,
                SiteRates {
                    transient,
                    stuck_at_0,
                    stuck_at_1,
                },
            );
        }
        let mut faults = Vec::with_capacity(file.fault.len());
        for (i, f) in file.fault.iter().enumerate() {
            let key = |k: &str| format!("fault[{i}].{k}");
            let site = Site::parse(&f.site).ok_or_else(|| {
                bad(
                    key("site"),
                    format!(
                        "unknown fault site '{}', expected one of {sites_list}",
                        f.site
                    ),
                )
            })?;
            let kind = match (f.cycle, f.stuck_at) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        key("stuck_at"),
                        "give either cycle (transient flip) or stuck_at (permanent), not both"
                            .into(),
                    ))
                }
                (None, None) => {
                    return Err(bad(
                        key("cycle"),
                        "missing: give cycle (transient flip) or stuck_at (permanent)".into(),
                    ))
                }
                (Some(cycle), None) => FaultKind::Flip { cycle },
                (None, Some(0)) => FaultKind::StuckAt0,
                (None, Some(1)) => FaultKind::StuckAt1,
                (None, Some(v)) => {
                    return Err(bad(key("stuck_at"), format!("must be 0 or 1, found {v}")))
                }
            };
            if f.cycle.is_some() && f.layer.is_none() {
                return Err(bad(
                    key("layer"),
                    "missing: a transient flip needs the layer its cycle counts in".into(),
                ));
            }
            if f.image.is_some() && f.layer.is_none() {
                return Err(bad(
                    key("image"),
                    "only applies to faults of one layer (give layer)".into(),
                ));
            }
            let unit = match site {
                Site::Pe(_) | Site::Sip(_) => {
                    let kind = if matches!(site, Site::Pe(_)) {
                        "PE"
                    } else {
                        "SIP"
                    };
                    if f.address.is_some() {
                        return Err(bad(
                            key("address"),
                            format!("{} is a {kind} site: give row and col, not address", f.site),
                        ));
                    }
                    let need = |k: &str, v: Option<usize>| {
                        v.ok_or_else(|| {
                            bad(key(k), format!("missing: {} is a {kind} site", f.site))
                        })
                    };
                    (need("row", f.row)?, need("col", f.col)?)
                }
                Site::Sram(_) => {
                    if let Some(k) = [("row", f.row), ("col", f.col)]
                        .into_iter()
                        .find_map(|(k, v)| v.map(|_| k))
                    {
                        return Err(bad(
                            key(k),
                            format!("{} is an SRAM site: give address, not row/col", f.site),
                        ));
                    }
                    let a = f.address.ok_or_else(|| {
                        bad(
                            key("address"),
                            format!("missing: {} is an SRAM site", f.site),
                        )
                    })?;
                    (a, 0)
                }
            };
            let fault = match site {
                Site::Pe(s) => ChipFault::Pe(HwFault {
                    site: s,
                    row: unit.0,
                    col: unit.1,
                    bit: f.bit,
                    kind,
                }),
                Site::Sip(s) => ChipFault::Sip(SipFault {
                    site: s,
                    row: unit.0,
                    col: unit.1,
                    bit: f.bit,
                    kind,
                }),
                Site::Sram(buffer) => ChipFault::Sram(SramFault {
                    buffer,
                    address: unit.0,
                    bit: f.bit,
                    kind,
                }),
            };
            faults.push(ExplicitFault {
                layer: f.layer,
                image: f.image,
                fault,
            });
        }
        if rates.is_empty() && faults.is_empty() {
            return Err(bad(
                "sites".into(),
                "the file specifies no fault: give [sites.\"<site>\"] rates or [[fault]] tables"
                    .into(),
            ));
        }
        Ok(HwFaultSpec {
            path: path.to_path_buf(),
            rates,
            faults,
        })
    }

    /// Check the rates' sites exist on the hardware and the explicit faults
    /// fit the network (array, buffers, layers, widths, cycles).
    pub fn check<N: FaultTarget + ?Sized>(&self, net: &N) -> Result<(), HwSpecError> {
        for &site in self.rates.keys() {
            if net.site_grid(site).is_none() {
                let mut here: Vec<&str> = Vec::new();
                // Both lists hold the SRAM sites; name each site once.
                for s in Site::ALL.into_iter().chain(Site::BITSERIAL) {
                    if net.site_grid(s).is_some() && !here.contains(&s.name()) {
                        here.push(s.name());
                    }
                }
                return Err(HwSpecError::Invalid {
                    path: self.path.clone(),
                    key: format!("sites.\"{}\"", site.name()),
                    rule: format!(
                        "this accelerator has no such site; its sites are {}",
                        here.join(", ")
                    ),
                });
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            net.check_fault(f.layer, &f.fault)
                .map_err(|rule| HwSpecError::Invalid {
                    path: self.path.clone(),
                    key: format!("fault[{i}]"),
                    rule,
                })?;
        }
        Ok(())
    }

    /// Transient flip probability per bit per cycle of each site with a
    /// transient rate, at the network's clock.
    pub fn transient_rates<N: FaultTarget + ?Sized>(&self, net: &N) -> Vec<(Site, f64)> {
        self.rates
            .iter()
            .filter_map(|(&s, r)| Some((s, r.transient?.per_bit_cycle(net.clock_mhz()))))
            .filter(|&(_, p)| p > 0.0)
            .collect()
    }

    /// Expected number of sampled transient flips in one inference.
    pub fn expected_transients_per_image<N: FaultTarget + ?Sized>(&self, net: &N) -> f64 {
        let cycles: u64 = net.layer_cycles().iter().sum();
        self.transient_rates(net)
            .iter()
            .map(|&(s, p)| p * s.bits(net) as f64 * cycles as f64)
            .fold(0.0, |a, b| a + b)
    }

    /// The faults of simulated chip `chip`: stuck-at cells drawn once, the
    /// explicit faults, and the transient rates for [`ChipFaults::for_image`].
    pub fn sample_chip<N: FaultTarget + ?Sized>(
        &self,
        seed: u64,
        chip: u64,
        net: &N,
    ) -> Result<ChipFaults, HwSpecError> {
        self.check(net)?;
        let mut permanent = Vec::new();
        for (&site, r) in &self.rates {
            let p = r.stuck_at_0 + r.stuck_at_1;
            let (_, width) = site.geometry(net);
            let mut rng = crate::fault::stream(seed, chip, u64::MAX - 1, site.index());
            let bits = site.bits(net);
            Skipper::new(p).for_each_hit(bits as usize, &mut rng, |i, rng| {
                let one = rng.random::<f64>() * p >= r.stuck_at_0;
                let kind = if one {
                    FaultKind::StuckAt1
                } else {
                    FaultKind::StuckAt0
                };
                let (unit, bit) = (i as u64 / u64::from(width), i as u64 % u64::from(width));
                permanent.push(site.fault(net, unit, bit as u8, kind));
            });
        }
        let mut explicit = Vec::new();
        for f in &self.faults {
            match f.layer {
                None => permanent.push(f.fault),
                Some(layer) => explicit.push((
                    f.image,
                    LayerFault {
                        layer,
                        fault: f.fault,
                    },
                )),
            }
        }
        Ok(ChipFaults {
            seed,
            chip,
            permanent,
            explicit,
            transient_rates: self.transient_rates(net),
        })
    }
}

/// The faults of one simulated chip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChipFaults {
    pub seed: u64,
    pub chip: u64,
    /// Stuck-at faults for the whole run.
    pub permanent: Vec<ChipFault>,
    /// Faults of one layer, in every image (`None`) or in one.
    pub explicit: Vec<(Option<u64>, LayerFault)>,
    /// Flip probability per bit per cycle, per site.
    pub transient_rates: Vec<(Site, f64)>,
}

impl ChipFaults {
    /// A fault-free chip.
    pub fn none() -> ChipFaults {
        ChipFaults::default()
    }

    /// The faults acting in the inference of image `image` (dataset index):
    /// the chip's permanent and explicit faults, plus transient flips
    /// sampled for this image (see the module doc).
    pub fn for_image<N: FaultTarget + ?Sized>(&self, image: u64, net: &N) -> ImageFaults {
        let mut transient: Vec<LayerFault> = self
            .explicit
            .iter()
            .filter(|(only, _)| only.is_none_or(|i| i == image))
            .map(|&(_, f)| f)
            .collect();
        if self.transient_rates.is_empty() {
            return ImageFaults {
                permanent: self.permanent.clone(),
                transient,
            };
        }
        for (layer, cycles) in net.layer_cycles().into_iter().enumerate() {
            for &(site, p) in &self.transient_rates {
                let (units, width) = site.geometry(net);
                let mut rng = crate::fault::stream(
                    self.seed,
                    self.chip,
                    image,
                    ((layer as u64) << 3) | site.index(),
                );
                for_each_transient(p, units, width, cycles, &mut rng, |cycle, unit, bit| {
                    transient.push(LayerFault {
                        layer,
                        fault: site.fault(net, unit, bit, FaultKind::Flip { cycle }),
                    });
                });
            }
        }
        ImageFaults {
            permanent: self.permanent.clone(),
            transient,
        }
    }
}

/// The transient flips of one site during `cycles` cycles: each of the
/// `units * width` bits flips in each cycle with probability `p`, visited
/// by geometric skipping over the bit-cycles (one draw per flip). Bit-cycle
/// `i` is cycle `i / (units*width)`, unit `(i % (units*width)) / width`,
/// bit `i % width`; `hit(cycle, unit, bit)` is called in that order.
pub fn for_each_transient<R: Rng>(
    p: f64,
    units: u64,
    width: u32,
    cycles: u64,
    rng: &mut R,
    mut hit: impl FnMut(u64, u64, u8),
) {
    let bits = units * u64::from(width);
    let len = bits.saturating_mul(cycles);
    Skipper::new(p).for_each_hit(len as usize, rng, |i, _| {
        let i = i as u64;
        let (cycle, within) = (i / bits, i % bits);
        hit(
            cycle,
            within / u64::from(width),
            (within % u64::from(width)) as u8,
        );
    });
}
