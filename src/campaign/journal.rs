//! The files a campaign keeps in its output directory to resume and merge:
//!
//! - `campaign.json`, the [`Manifest`]: the config, its hash, the shard and
//!   the fault-free result. Written atomically before the first chip runs;
//!   a later run into the same directory must match it.
//! - `journal.jsonl`: one [`ChipRecord`] per line, appended as each chip
//!   finishes (one `write` of a whole line, so an interruption can only cut
//!   the last line short). Reading keeps the lines that end in a newline and
//!   drops a cut last line; a broken line anywhere else is an error. When a
//!   run completes, the journal is rewritten atomically in chip order, so a
//!   finished directory's files do not depend on thread timing.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{CampaignConfig, CampaignError, Shard};
use crate::report::{write_atomic, write_json};

/// File name of the manifest in an output directory.
pub const MANIFEST: &str = "campaign.json";
/// File name of the journal in an output directory.
pub const JOURNAL: &str = "journal.jsonl";

/// Vulnerability counts of one (site class, layer) on one chip or summed
/// over chips. An exposure is one fault during one image: a fault scoped to
/// one image is one exposure, a chip-wide fault one per image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnCounts {
    /// Faults injected (a chip-wide fault counts once per chip).
    pub faults: u64,
    /// Fault-image exposures.
    pub exposures: u64,
    /// Exposures in images whose logits equal the fault-free logits.
    pub masked: u64,
    /// Exposures in images whose top-1 class differs from the fault-free one.
    pub sdc: u64,
    /// Exposures in images with changed logits but the fault-free top-1.
    pub other: u64,
    /// Exposures in images that had more than one fault (their outcome is
    /// shared by all of that image's faults, so per-site attribution is
    /// exact only for the rest).
    pub shared: u64,
}

impl VulnCounts {
    pub fn add(&mut self, o: &VulnCounts) {
        self.faults += o.faults;
        self.exposures += o.exposures;
        self.masked += o.masked;
        self.sdc += o.sdc;
        self.other += o.other;
        self.shared += o.shared;
    }
}

/// Counts of one (site class, layer) pair, by index into the config's
/// `site_classes` and `layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnRow {
    pub site: usize,
    pub layer: usize,
    #[serde(flatten)]
    pub counts: VulnCounts,
}

/// What the campaign keeps of one finished chip (one journal line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChipRecord {
    pub chip: u64,
    /// Images classified correctly (top-1 = label).
    pub correct: u64,
    /// Images whose top-1 differs from the fault-free top-1.
    pub sdc: u64,
    /// Images whose logits differ from the fault-free logits (SDC included).
    pub corrupted: u64,
    /// Faults injected on this chip (chip-wide ones once).
    pub faults: u64,
    /// Non-empty (site, layer) counts, sorted by (site, layer).
    pub vulnerability: Vec<VulnRow>,
}

/// The fault-free run every chip is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanSummary {
    pub images: usize,
    pub correct: u64,
}

/// `campaign.json`: which campaign and shard an output directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub config_hash: String,
    pub shard: Shard,
    pub clean: CleanSummary,
    pub config: CampaignConfig,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, CampaignError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| CampaignError::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| CampaignError::File {
            path: path.clone(),
            message: format!("not a campaign manifest: {e}"),
        })?;
        if m.config.hash() != m.config_hash {
            return Err(CampaignError::File {
                path,
                message: format!(
                    "config_hash {} does not match the config it holds ({}): the file was edited",
                    m.config_hash,
                    m.config.hash()
                ),
            });
        }
        Ok(m)
    }

    pub fn write(&self, dir: &Path) -> Result<(), CampaignError> {
        Ok(write_json(&dir.join(MANIFEST), self)?)
    }
}

/// The records of a journal file; `truncated` says a cut last line was
/// dropped.
pub struct JournalContents {
    pub records: BTreeMap<u64, ChipRecord>,
    pub truncated: bool,
}

/// Read `dir/journal.jsonl` (missing file: empty). Records must belong to
/// `shard` of a campaign of `chips` chips; a chip listed twice must have
/// the same record both times.
pub fn read_journal(
    dir: &Path,
    shard: Shard,
    chips: u64,
) -> Result<JournalContents, CampaignError> {
    let path = dir.join(JOURNAL);
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(JournalContents {
                records: BTreeMap::new(),
                truncated: false,
            })
        }
        Err(e) => return Err(CampaignError::io(&path, e)),
    };
    let mut records = BTreeMap::new();
    let complete_len = text.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let truncated = complete_len < text.len();
    for (i, line) in text[..complete_len].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let err = |message: String| CampaignError::Journal {
            path: path.clone(),
            line: i + 1,
            message,
        };
        let r: ChipRecord =
            serde_json::from_slice(line).map_err(|e| err(format!("not a chip record: {e}")))?;
        if r.chip >= chips || !shard.owns(r.chip) {
            return Err(err(format!(
                "chip {} is not one of the chips of shard {shard} of a {chips}-chip campaign",
                r.chip
            )));
        }
        if let Some(old) = records.get(&r.chip) {
            if *old != r {
                return Err(err(format!(
                    "chip {} is listed twice with different results",
                    r.chip
                )));
            }
        }
        records.insert(r.chip, r);
    }
    Ok(JournalContents { records, truncated })
}

/// Rewrite the journal atomically with `records` in chip order.
pub fn rewrite_journal<'a>(
    dir: &Path,
    records: impl IntoIterator<Item = &'a ChipRecord>,
) -> Result<(), CampaignError> {
    let mut text = String::new();
    for r in records {
        text.push_str(&record_line(r));
    }
    Ok(write_atomic(&dir.join(JOURNAL), text.as_bytes())?)
}

fn record_line(r: &ChipRecord) -> String {
    let mut s = serde_json::to_string(r).expect("a chip record is always JSON");
    s.push('\n');
    s
}

/// Appends records to a journal from many threads, one whole line per write.
pub struct JournalWriter {
    path: PathBuf,
    file: Mutex<File>,
}

impl JournalWriter {
    pub fn open(dir: &Path) -> Result<JournalWriter, CampaignError> {
        let path = dir.join(JOURNAL);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| CampaignError::io(&path, e))?;
        Ok(JournalWriter {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn append(&self, r: &ChipRecord) -> Result<(), CampaignError> {
        let line = record_line(r);
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
            .map_err(|e| CampaignError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(chip: u64) -> ChipRecord {
        ChipRecord {
            chip,
            correct: 3,
            sdc: 1,
            corrupted: 2,
            faults: 5,
            vulnerability: vec![VulnRow {
                site: 0,
                layer: 1,
                counts: VulnCounts {
                    faults: 5,
                    exposures: 9,
                    masked: 4,
                    sdc: 2,
                    other: 3,
                    shared: 6,
                },
            }],
        }
    }

    #[test]
    fn append_read_and_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let w = JournalWriter::open(dir.path()).unwrap();
        for c in [4, 0, 2] {
            w.append(&rec(c)).unwrap();
        }
        drop(w);
        let j = read_journal(dir.path(), Shard::new(0, 2).unwrap(), 6).unwrap();
        assert_eq!(j.records.keys().copied().collect::<Vec<_>>(), vec![0, 2, 4]);
        assert!(!j.truncated);
        // An interrupted write leaves part of a line: dropped, flagged.
        let path = dir.path().join(JOURNAL);
        let mut text = std::fs::read(&path).unwrap();
        let line = record_line(&rec(2));
        text.extend_from_slice(&line.as_bytes()[..line.len() / 2]);
        std::fs::write(&path, &text).unwrap();
        let j = read_journal(dir.path(), Shard::new(0, 2).unwrap(), 6).unwrap();
        assert_eq!(j.records.len(), 3);
        assert!(j.truncated);
    }

    #[test]
    fn foreign_and_conflicting_lines_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let w = JournalWriter::open(dir.path()).unwrap();
        w.append(&rec(1)).unwrap();
        let e = read_journal(dir.path(), Shard::new(0, 2).unwrap(), 6)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("journal.jsonl:1") && e.contains("shard 0/2"),
            "{e}"
        );
        let mut other = rec(1);
        other.correct = 0;
        w.append(&other).unwrap();
        let e = read_journal(dir.path(), Shard::WHOLE, 6)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(":2:") && e.contains("twice"), "{e}");
        std::fs::write(dir.path().join(JOURNAL), "{\"chip\": 1}\n").unwrap();
        let e = read_journal(dir.path(), Shard::WHOLE, 6)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(":1:") && e.contains("not a chip record"), "{e}");
    }
}
