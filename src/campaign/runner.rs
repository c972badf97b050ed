//! Running a campaign (or one shard of it) into an output directory,
//! resuming whatever the directory's journal already holds.
//!
//! Steps: fault-free run; check or write the manifest (a directory holding
//! another campaign or shard is an error, never overwritten); read the
//! journal; run the missing chips of the shard in parallel (rayon), each
//! appended to the journal as it finishes, with a progress bar and ETA;
//! then rewrite the journal in chip order and write the results. A run
//! stopped at any point (kill, error, power) loses at most the chips that
//! were still running.

use std::path::Path;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use super::classify::{classify_chip, CleanRun};
use super::config::config_diff;
use super::journal::{
    read_journal, rewrite_journal, CleanSummary, JournalWriter, Manifest, JOURNAL, MANIFEST,
};
use super::{CampaignConfig, CampaignError, CampaignResult, ChipSimulator, Shard};

/// A campaign ready to run: a simulator, its images and labels, and the
/// config that identifies it.
pub struct Campaign<'a, S: ChipSimulator + ?Sized> {
    pub simulator: &'a S,
    pub images: &'a [f32],
    pub labels: &'a [u8],
    pub config: CampaignConfig,
}

impl<'a, S: ChipSimulator + ?Sized> Campaign<'a, S> {
    /// A campaign of `chips` chips of `simulator` on `labels.len()` images;
    /// add the input files and settings that identify it to
    /// `config.inputs` / `config.params` before running.
    pub fn new(
        simulator: &'a S,
        images: &'a [f32],
        labels: &'a [u8],
        dataset: &str,
        chips: u64,
        seed: u64,
    ) -> Self {
        let config = CampaignConfig {
            build: crate::BUILD.to_string(),
            simulator: simulator.name(),
            inputs: Vec::new(),
            dataset: dataset.to_string(),
            images: labels.len(),
            chips,
            seed,
            params: Default::default(),
            site_classes: simulator.site_classes(),
            layers: simulator.layers(),
        };
        Campaign {
            simulator,
            images,
            labels,
            config,
        }
    }
}

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Which chips: shard `i/n` runs chips `c` with `c % n == i`.
    pub shard: Shard,
    /// Draw a progress bar on stderr (only shown on a terminal).
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            shard: Shard::WHOLE,
            progress: false,
        }
    }
}

/// Run (or resume) `campaign`'s shard `opts.shard` into `out`; returns the
/// results, also written to `out`.
pub fn run_campaign<S: ChipSimulator + ?Sized>(
    campaign: &Campaign<'_, S>,
    opts: &RunOptions,
    out: &Path,
) -> Result<CampaignResult, CampaignError> {
    let config = &campaign.config;
    config.validate()?;
    if config.images != campaign.labels.len() {
        return Err(CampaignError::Invalid(format!(
            "the config says {} images but {} labels were given",
            config.images,
            campaign.labels.len()
        )));
    }
    let sim = campaign.simulator;
    let (sites, layers) = (config.site_classes.len(), config.layers.len());
    if sim.site_classes() != config.site_classes || sim.layers() != config.layers {
        return Err(CampaignError::Invalid(
            "the config's site classes or layers are not the simulator's".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| CampaignError::io(out, e))?;

    let clean = CleanRun::new(sim.clean_logits(campaign.images)?, campaign.labels)?;
    let manifest = Manifest {
        config_hash: config.hash(),
        shard: opts.shard,
        clean: CleanSummary {
            images: config.images,
            correct: clean.correct(),
        },
        config: config.clone(),
    };
    adopt_directory(out, &manifest)?;

    let journal = read_journal(out, opts.shard, config.chips)?;
    let mut records: Vec<_> = journal.records.into_values().collect();
    if journal.truncated {
        // drop the cut line before appending after it
        rewrite_journal(out, &records)?;
    }
    let done: std::collections::HashSet<u64> = records.iter().map(|r| r.chip).collect();
    let todo: Vec<u64> = opts
        .shard
        .chips(config.chips)
        .filter(|c| !done.contains(c))
        .collect();

    let bar = progress_bar(todo.len() as u64, opts.progress);
    bar.set_message(format!("shard {}", opts.shard));
    let writer = JournalWriter::open(out)?;
    let finished = Mutex::new(Vec::with_capacity(todo.len()));
    let run = todo.par_iter().with_max_len(1).try_for_each(|&chip| {
        let outcome = sim.run_chip(chip, config.seed, campaign.images)?;
        let record = classify_chip(chip, &clean, &outcome, sites, layers)?;
        writer.append(&record)?;
        finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        bar.inc(1);
        Ok::<(), CampaignError>(())
    });
    bar.finish_and_clear();
    run?;
    drop(writer);
    records.extend(finished.into_inner().unwrap_or_else(|p| p.into_inner()));
    records.sort_by_key(|r| r.chip);
    rewrite_journal(out, &records)?;
    let result = CampaignResult::new(config, opts.shard, manifest.clean, records);
    result.write(out)?;
    Ok(result)
}

/// Make `out` this campaign's directory: write the manifest into a fresh
/// directory, or check that an existing one is the same campaign and shard
/// with the same fault-free result.
fn adopt_directory(out: &Path, manifest: &Manifest) -> Result<(), CampaignError> {
    if !out.join(MANIFEST).exists() {
        if out.join(JOURNAL).exists() {
            return Err(CampaignError::Mismatch {
                dir: out.to_path_buf(),
                message: format!(
                    "holds a {JOURNAL} but no {MANIFEST}; it was not written by this campaign \
                     (remove it or use another --out)"
                ),
            });
        }
        return manifest.write(out);
    }
    let old = Manifest::read(out)?;
    let mismatch = |message: String| CampaignError::Mismatch {
        dir: out.to_path_buf(),
        message,
    };
    if old.config_hash != manifest.config_hash {
        return Err(mismatch(format!(
            "holds campaign {} but this is campaign {} ({}); use another --out",
            old.config_hash,
            manifest.config_hash,
            config_diff(&old.config, &manifest.config).join("; ")
        )));
    }
    if old.shard != manifest.shard {
        return Err(mismatch(format!(
            "holds shard {} of this campaign, not shard {}; use another --out",
            old.shard, manifest.shard
        )));
    }
    if old.clean != manifest.clean {
        return Err(mismatch(format!(
            "the fault-free run recorded {} correct of {} images, now {} of {}: \
             the simulator is not deterministic",
            old.clean.correct, old.clean.images, manifest.clean.correct, manifest.clean.images
        )));
    }
    Ok(())
}

fn progress_bar(len: u64, visible: bool) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} chips, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
