//! What identifies a campaign. Two runs with equal configs compute the same
//! chips the same way, so their journals can be resumed and their shards
//! merged; anything that changes a result belongs here. Input files are
//! identified by their content (FNV-1a 64 hash) and file name, not by their
//! path, so shards run from different directories or machines still merge.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CampaignError;

/// One input file of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// What the file is (`model`, `weights`, `fault_model`, `accel`, ...).
    pub role: String,
    /// The file name (without directories).
    pub name: String,
    /// FNV-1a 64 of the file's bytes, 16 hex digits.
    pub fnv64: String,
}

impl InputFile {
    /// Read `path` and fingerprint it as `role`.
    pub fn read(role: &str, path: &Path) -> Result<InputFile, CampaignError> {
        let bytes = std::fs::read(path).map_err(|e| CampaignError::io(path, e))?;
        Ok(InputFile::from_bytes(
            role,
            &path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            &bytes,
        ))
    }

    pub fn from_bytes(role: &str, name: &str, bytes: &[u8]) -> InputFile {
        InputFile {
            role: role.to_string(),
            name: name.to_string(),
            fnv64: format!("{:016x}", fnv1a64(bytes)),
        }
    }
}

/// Everything that determines a campaign's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignConfig {
    /// The ftnas build that runs it ([`crate::BUILD`]): another build may
    /// compute other results, so directories of different builds are not
    /// resumed or merged together (empty in directories written before
    /// builds were recorded).
    #[serde(default)]
    pub build: String,
    /// The simulator kind ([`super::ChipSimulator::name`]).
    pub simulator: String,
    /// Input files, in the order the caller lists them.
    pub inputs: Vec<InputFile>,
    /// Dataset name.
    pub dataset: String,
    /// Number of images (the first `images` of the test split).
    pub images: usize,
    /// Number of simulated chips (`0..chips`).
    pub chips: u64,
    /// Seed of every fault stream.
    pub seed: u64,
    /// Other settings that change results (calibration images, datapath,
    /// execution path), as text.
    pub params: BTreeMap<String, String>,
    /// Fault site classes (names the journal's site indices refer to).
    pub site_classes: Vec<String>,
    /// Layers (names the journal's layer indices refer to).
    pub layers: Vec<String>,
}

impl CampaignConfig {
    /// FNV-1a 64 of the config's JSON, 16 hex digits: equal configs, equal
    /// hashes (field order is fixed and `params` is sorted).
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("a campaign config is always JSON");
        format!("{:016x}", fnv1a64(json.as_bytes()))
    }

    /// Check the values a runnable campaign needs.
    pub fn validate(&self) -> Result<(), CampaignError> {
        if self.chips == 0 {
            return Err(CampaignError::Invalid(
                "a campaign needs at least one chip (--chips)".into(),
            ));
        }
        if self.images == 0 {
            return Err(CampaignError::Invalid(
                "a campaign needs at least one image (--images)".into(),
            ));
        }
        Ok(())
    }
}

/// What differs between two configs, one phrase per field (empty when
/// equal), for errors about directories that do not belong together.
pub fn config_diff(a: &CampaignConfig, b: &CampaignConfig) -> Vec<String> {
    let mut d = Vec::new();
    if a.build != b.build {
        let show = |s: &str| {
            if s.is_empty() {
                "an older ftnas".to_string()
            } else {
                format!("ftnas {s}")
            }
        };
        d.push(format!(
            "written by {} vs {}",
            show(&a.build),
            show(&b.build)
        ));
    }
    if a.simulator != b.simulator {
        d.push(format!("simulator {} vs {}", a.simulator, b.simulator));
    }
    if a.inputs != b.inputs {
        let show = |c: &CampaignConfig| {
            c.inputs
                .iter()
                .map(|f| format!("{} {} ({})", f.role, f.name, f.fnv64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        d.push(format!("input files [{}] vs [{}]", show(a), show(b)));
    }
    if a.dataset != b.dataset {
        d.push(format!("dataset {} vs {}", a.dataset, b.dataset));
    }
    if a.images != b.images {
        d.push(format!("images {} vs {}", a.images, b.images));
    }
    if a.chips != b.chips {
        d.push(format!("chips {} vs {}", a.chips, b.chips));
    }
    if a.seed != b.seed {
        d.push(format!("seed {} vs {}", a.seed, b.seed));
    }
    if a.params != b.params {
        d.push(format!("settings {:?} vs {:?}", a.params, b.params));
    }
    if a.site_classes != b.site_classes || a.layers != b.layers {
        d.push("fault sites or layers differ".into());
    }
    d
}

/// FNV-1a, 64 bit: a fast content fingerprint to tell campaigns apart
/// (not a defence against deliberate collisions).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CampaignConfig {
        CampaignConfig {
            build: "0.1.0+abc".into(),
            simulator: "engine".into(),
            inputs: vec![InputFile::from_bytes("model", "m.toml", b"abc")],
            dataset: "fashion-mnist".into(),
            images: 10,
            chips: 4,
            seed: 1,
            params: BTreeMap::from([("calib".into(), "16".into())]),
            site_classes: vec!["feature".into()],
            layers: vec!["conv".into()],
        }
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_follows_every_field() {
        let base = config();
        assert_eq!(base.hash(), config().hash());
        let mut c = config();
        c.seed = 2;
        assert_ne!(c.hash(), base.hash());
        let mut c = config();
        c.inputs[0] = InputFile::from_bytes("model", "m.toml", b"abd");
        assert_ne!(c.hash(), base.hash());
        let mut c = config();
        c.params.insert("path".into(), "exact".into());
        assert_ne!(c.hash(), base.hash());
        assert!(config_diff(&base, &base).is_empty());
        c.chips = 9;
        let d = config_diff(&base, &c).join("; ");
        assert!(d.contains("chips 4 vs 9") && d.contains("settings"), "{d}");
        // Another build is another campaign, named as such.
        let mut c = config();
        c.build = "0.1.0+def".into();
        assert_ne!(c.hash(), base.hash());
        let d = config_diff(&c, &base).join("; ");
        assert!(d.contains("ftnas 0.1.0+def vs ftnas 0.1.0+abc"), "{d}");
    }

    #[test]
    fn directories_from_before_builds_were_recorded_read_as_another_build() {
        let mut old = serde_json::to_value(config()).unwrap();
        old.as_object_mut().unwrap().remove("build");
        let old: CampaignConfig = serde_json::from_value(old).unwrap();
        assert_eq!(old.build, "");
        let d = config_diff(&old, &config()).join("; ");
        assert!(d.contains("an older ftnas vs ftnas 0.1.0+abc"), "{d}");
        assert!(crate::BUILD.starts_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn validate_names_the_flag() {
        let mut c = config();
        c.chips = 0;
        assert!(c.validate().unwrap_err().to_string().contains("--chips"));
        let mut c = config();
        c.images = 0;
        assert!(c.validate().unwrap_err().to_string().contains("--images"));
    }
}
