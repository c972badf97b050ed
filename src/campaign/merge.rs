//! Merging shard directories into the result of the whole campaign.
//!
//! Every directory must hold a shard of the same campaign (same config
//! hash, same fault-free result) and the same shard count `n`; shards
//! `0..n` must each appear exactly once and be complete. The union of their
//! journals is then exactly the journal of an unsharded run, so the merged
//! directory (manifest, journal, results) is byte-identical to what an
//! unsharded run writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::config_diff;
use super::journal::{read_journal, rewrite_journal, Manifest, MANIFEST};
use super::{CampaignError, CampaignResult, Shard};

/// Merge the shards in `dirs` into `out` (created if needed); returns the
/// whole campaign's results, also written to `out`.
pub fn merge_shards(dirs: &[PathBuf], out: &Path) -> Result<CampaignResult, CampaignError> {
    let err = |m: String| CampaignError::Merge(m);
    let first_dir = dirs
        .first()
        .ok_or_else(|| err("no shard directories given".into()))?;
    let manifests: Vec<Manifest> = dirs
        .iter()
        .map(|d| Manifest::read(d))
        .collect::<Result<_, _>>()?;
    let first = &manifests[0];
    for (dir, m) in dirs.iter().zip(&manifests).skip(1) {
        if m.config_hash != first.config_hash {
            return Err(err(format!(
                "{} holds campaign {} but {} holds campaign {} ({}): shards of different \
                 campaigns cannot be merged",
                dir.display(),
                m.config_hash,
                first_dir.display(),
                first.config_hash,
                config_diff(&first.config, &m.config).join("; ")
            )));
        }
        if m.shard.count != first.shard.count {
            return Err(err(format!(
                "{} holds shard {} but {} holds shard {}: all shards must split the campaign \
                 the same way",
                dir.display(),
                m.shard,
                first_dir.display(),
                first.shard
            )));
        }
        if m.clean != first.clean {
            return Err(err(format!(
                "{} and {} recorded different fault-free results for the same campaign",
                dir.display(),
                first_dir.display()
            )));
        }
    }
    let count = first.shard.count;
    let mut by_index: BTreeMap<u64, &PathBuf> = BTreeMap::new();
    for (dir, m) in dirs.iter().zip(&manifests) {
        if let Some(other) = by_index.insert(m.shard.index, dir) {
            return Err(err(format!(
                "shard {} is given twice: {} and {}",
                m.shard,
                other.display(),
                dir.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "shard{} {} missing (got {} of {count})",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            by_index.len()
        )));
    }

    let chips = first.config.chips;
    let mut records = Vec::new();
    for (dir, m) in dirs.iter().zip(&manifests) {
        let j = read_journal(dir, m.shard, chips)?;
        let need = m.shard.len(chips);
        if j.records.len() as u64 != need || j.truncated {
            return Err(err(format!(
                "{}: shard {} is incomplete: {} of {need} chips finished; rerun its \
                 `ftnas inject ... --shard {}` command to finish it",
                dir.display(),
                m.shard,
                j.records.len(),
                m.shard
            )));
        }
        records.extend(j.records.into_values());
    }

    std::fs::create_dir_all(out).map_err(|e| CampaignError::io(out, e))?;
    let whole = Manifest {
        shard: Shard::WHOLE,
        ..first.clone()
    };
    if out.join(MANIFEST).exists() {
        let old = Manifest::read(out)?;
        if old != whole {
            return Err(CampaignError::Mismatch {
                dir: out.to_path_buf(),
                message: format!(
                    "already holds campaign {} shard {}; merge into an empty directory",
                    old.config_hash, old.shard
                ),
            });
        }
    }
    whole.write(out)?;
    records.sort_by_key(|r| r.chip);
    rewrite_journal(out, &records)?;
    let result = CampaignResult::new(&whole.config, Shard::WHOLE, whole.clean, records);
    result.write(out)?;
    Ok(result)
}
