//! A campaign's results, computed from its chip records, and the files and
//! tables that show them.
//!
//! - accuracy under faults: per chip `correct / images`; over chips the
//!   mean, sample std, min/max, quantiles p5/p50/p95 (type 7) and a 95%
//!   confidence interval of the mean, `mean +- 1.96 std / sqrt(chips)`
//!   (normal approximation);
//! - SDC rate: images whose top-1 differs from the fault-free top-1, over
//!   all chip-image pairs; corrupted rate: images with any changed logit;
//! - vulnerability table (FIdelity-style) per site class and per layer:
//!   faults, exposures, and how the exposures ended (masked / SDC / other,
//!   as fractions of exposures), see [`super::classify`].
//!
//! Files (all atomic): `summary.json` (everything), `chips.csv` (one row
//! per chip), `vulnerability.csv` (rows per site class and layer).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::journal::{ChipRecord, CleanSummary, VulnCounts};
use super::stats::{mean_std, quantile};
use super::{CampaignConfig, CampaignError, Shard};
use crate::report::{write_json, Csv, Table};

/// Accuracy under faults over chips (fractions, not percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AccuracyStats {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub p5: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// One row of the vulnerability table; `all` in `site` or `layer` sums
/// over that dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnTableRow {
    pub site: String,
    pub layer: String,
    #[serde(flatten)]
    pub counts: VulnCounts,
    /// `masked / exposures` (absent without exposures).
    pub masked_rate: Option<f64>,
    pub sdc_rate: Option<f64>,
    pub other_rate: Option<f64>,
}

/// The results of a campaign or of one shard of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignResult {
    pub config_hash: String,
    /// Present for one shard of several (`i/n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub config: CampaignConfig,
    /// Images per chip.
    pub images: usize,
    /// Chips in this result.
    pub chips: u64,
    pub clean_accuracy: f64,
    pub accuracy: AccuracyStats,
    /// Fraction of chip-image pairs whose top-1 differs from fault-free.
    pub sdc_rate: f64,
    /// Fraction of chip-image pairs with any logit changed.
    pub corrupted_rate: f64,
    pub mean_faults_per_chip: f64,
    pub vulnerability: Vec<VulnTableRow>,
    /// The chip records, in chip order.
    #[serde(skip)]
    pub records: Vec<ChipRecord>,
}

const ALL: &str = "all";

impl CampaignResult {
    /// Results of `records` (any order; sorted here by chip).
    pub fn new(
        config: &CampaignConfig,
        shard: Shard,
        clean: CleanSummary,
        mut records: Vec<ChipRecord>,
    ) -> CampaignResult {
        records.sort_by_key(|r| r.chip);
        let n = clean.images.max(1) as f64;
        let acc: Vec<f64> = records.iter().map(|r| r.correct as f64 / n).collect();
        let (mean, std) = mean_std(&acc);
        let mut sorted = acc.clone();
        sorted.sort_by(f64::total_cmp);
        let half = 1.96 * std / (acc.len().max(1) as f64).sqrt();
        let pairs = (records.len() as f64 * n).max(1.0);
        let sum = |f: fn(&ChipRecord) -> u64| records.iter().map(f).sum::<u64>();
        CampaignResult {
            config_hash: config.hash(),
            shard: (!shard.is_whole()).then(|| shard.to_string()),
            config: config.clone(),
            images: clean.images,
            chips: records.len() as u64,
            clean_accuracy: clean.correct as f64 / n,
            accuracy: AccuracyStats {
                mean,
                std,
                min: sorted.first().copied().unwrap_or(f64::NAN),
                p5: quantile(&sorted, 0.05),
                p50: quantile(&sorted, 0.5),
                p95: quantile(&sorted, 0.95),
                max: sorted.last().copied().unwrap_or(f64::NAN),
                ci95_low: mean - half,
                ci95_high: mean + half,
            },
            sdc_rate: sum(|r| r.sdc) as f64 / pairs,
            corrupted_rate: sum(|r| r.corrupted) as f64 / pairs,
            mean_faults_per_chip: sum(|r| r.faults) as f64 / records.len().max(1) as f64,
            vulnerability: vulnerability_rows(config, &records),
            records,
        }
    }

    /// The per-chip CSV (`chip,correct,accuracy,sdc,corrupted,faults`).
    pub fn chips_csv(&self) -> Result<Csv, CampaignError> {
        let mut csv = Csv::new(["chip", "correct", "accuracy", "sdc", "corrupted", "faults"]);
        let n = self.images.max(1) as f64;
        for r in &self.records {
            csv.push([
                r.chip.to_string(),
                r.correct.to_string(),
                (r.correct as f64 / n).to_string(),
                r.sdc.to_string(),
                r.corrupted.to_string(),
                r.faults.to_string(),
            ])?;
        }
        Ok(csv)
    }

    /// The vulnerability table as CSV (rates empty without exposures).
    pub fn vulnerability_csv(&self) -> Result<Csv, CampaignError> {
        let mut csv = Csv::new([
            "site",
            "layer",
            "faults",
            "exposures",
            "masked",
            "sdc",
            "other",
            "shared",
            "masked_rate",
            "sdc_rate",
            "other_rate",
        ]);
        let rate = |r: Option<f64>| r.map_or(String::new(), |x| x.to_string());
        for row in &self.vulnerability {
            let c = &row.counts;
            csv.push([
                row.site.clone(),
                row.layer.clone(),
                c.faults.to_string(),
                c.exposures.to_string(),
                c.masked.to_string(),
                c.sdc.to_string(),
                c.other.to_string(),
                c.shared.to_string(),
                rate(row.masked_rate),
                rate(row.sdc_rate),
                rate(row.other_rate),
            ])?;
        }
        Ok(csv)
    }

    /// Write `summary.json`, `chips.csv` and `vulnerability.csv` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CampaignError> {
        write_json(&dir.join("summary.json"), self)?;
        self.chips_csv()?.write(&dir.join("chips.csv"))?;
        self.vulnerability_csv()?
            .write(&dir.join("vulnerability.csv"))?;
        Ok(())
    }

    /// The text for stdout: headline numbers, then the vulnerability rows
    /// that sum over layers or over sites (the CSV has every pair).
    pub fn render(&self) -> String {
        let pct = |x: f64| format!("{:.2}%", 100.0 * x);
        let a = &self.accuracy;
        let mut s = format!(
            "campaign {}{}: {} chips x {} images, seed {}\n",
            self.config_hash,
            self.shard
                .as_ref()
                .map_or(String::new(), |sh| format!(" (shard {sh})")),
            self.chips,
            self.images,
            self.config.seed
        );
        let mut t = Table::new(["metric", "value"]);
        t.push(["clean accuracy".to_string(), pct(self.clean_accuracy)]);
        t.push(["accuracy mean".to_string(), pct(a.mean)]);
        t.push([
            "accuracy 95% CI".to_string(),
            format!("{} .. {}", pct(a.ci95_low), pct(a.ci95_high)),
        ]);
        t.push(["accuracy std".to_string(), pct(a.std)]);
        t.push([
            "accuracy min / p5 / p50 / p95 / max".to_string(),
            format!(
                "{} / {} / {} / {} / {}",
                pct(a.min),
                pct(a.p5),
                pct(a.p50),
                pct(a.p95),
                pct(a.max)
            ),
        ]);
        t.push(["SDC rate (top-1 changed)".to_string(), pct(self.sdc_rate)]);
        t.push([
            "corrupted rate (any logit)".to_string(),
            pct(self.corrupted_rate),
        ]);
        t.push([
            "faults per chip".to_string(),
            format!("{:.2}", self.mean_faults_per_chip),
        ]);
        s.push_str(&t.render());
        s.push('\n');
        let mut v = Table::new([
            "site",
            "layer",
            "faults",
            "exposures",
            "masked",
            "SDC",
            "other",
            "shared",
        ]);
        let pct_opt = |x: Option<f64>| x.map_or("-".to_string(), pct);
        for row in self
            .vulnerability
            .iter()
            .filter(|r| r.site == ALL || r.layer == ALL)
        {
            let c = &row.counts;
            v.push([
                row.site.clone(),
                row.layer.clone(),
                c.faults.to_string(),
                c.exposures.to_string(),
                pct_opt(row.masked_rate),
                pct_opt(row.sdc_rate),
                pct_opt(row.other_rate),
                c.shared.to_string(),
            ]);
        }
        s.push_str(&v.render());
        s
    }
}

fn table_row(site: &str, layer: &str, counts: VulnCounts) -> VulnTableRow {
    let rate = |k: u64| (counts.exposures > 0).then(|| k as f64 / counts.exposures as f64);
    VulnTableRow {
        site: site.to_string(),
        layer: layer.to_string(),
        counts,
        masked_rate: rate(counts.masked),
        sdc_rate: rate(counts.sdc),
        other_rate: rate(counts.other),
    }
}

/// Rows: per site class its total (`layer = all`, always present) then its
/// layers with faults; then per layer with faults its total over sites
/// (`site = all`); then the grand total.
fn vulnerability_rows(config: &CampaignConfig, records: &[ChipRecord]) -> Vec<VulnTableRow> {
    let mut pairs: BTreeMap<(usize, usize), VulnCounts> = BTreeMap::new();
    for r in records {
        for v in &r.vulnerability {
            pairs.entry((v.site, v.layer)).or_default().add(&v.counts);
        }
    }
    let name = |names: &[String], i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut rows = Vec::new();
    let mut per_layer: BTreeMap<usize, VulnCounts> = BTreeMap::new();
    let mut total = VulnCounts::default();
    for (s, site) in config.site_classes.iter().enumerate() {
        let mut site_total = VulnCounts::default();
        let mut layer_rows = Vec::new();
        for (&(_, layer), c) in pairs.range((s, 0)..=(s, usize::MAX)) {
            site_total.add(c);
            per_layer.entry(layer).or_default().add(c);
            layer_rows.push(table_row(site, &name(&config.layers, layer), *c));
        }
        total.add(&site_total);
        rows.push(table_row(site, ALL, site_total));
        rows.extend(layer_rows);
    }
    for (layer, c) in per_layer {
        rows.push(table_row(ALL, &name(&config.layers, layer), c));
    }
    rows.push(table_row(ALL, ALL, total));
    rows
}
