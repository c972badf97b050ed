//! The result of `ftnas eval`: the sweeps of one or several models side by
//! side, with the settings that produced them, rendered as a stdout table
//! (percent), a CSV (one row per model and rate, accuracies as fractions), a
//! JSON document (everything, including every chip's accuracy) and an SVG
//! plot (mean accuracy vs rate with the 95% confidence band, log rate axis
//! when every rate is positive).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::rate::RateMode;
use super::sweep::Curve;
use super::EvalError;
use crate::fixed::Datapath;
use crate::report::{write_json, Csv, Plot, ReportError, Series, Table};

/// One model's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelResult {
    /// Short unique name (legend, table and CSV).
    pub label: String,
    /// Model file.
    pub model: String,
    /// Weights file.
    pub weights: String,
    /// Network name from the model file.
    pub network: String,
    pub calib_images: usize,
    #[serde(flatten)]
    pub curve: Curve,
}

/// A whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub dataset: String,
    /// Test images evaluated (the first ones of the test split).
    pub images: usize,
    pub num_classes: usize,
    pub engine: String,
    pub datapath: Datapath,
    /// The fault model as given (shorthand or file).
    pub fault: String,
    /// The fault model as given, in words.
    pub fault_model: String,
    pub rate_mode: RateMode,
    pub rates: Vec<f64>,
    pub chips: u64,
    pub seed: u64,
    pub models: Vec<ModelResult>,
}

/// Names of the files [`EvalReport::write`] writes in its directory.
pub const CSV_FILE: &str = "eval.csv";
pub const JSON_FILE: &str = "eval.json";
pub const SVG_FILE: &str = "eval.svg";

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

impl EvalReport {
    /// Rates as rows (first row: clean), per model the mean, std and 95%
    /// confidence interval over chips, in percent.
    pub fn table(&self) -> Table {
        let mut header = vec!["rate".to_string()];
        for m in &self.models {
            header.push(format!("{} %", m.label));
            header.push("std".into());
            header.push("95% CI".into());
        }
        let mut t = Table::new(header);
        let mut clean = vec!["clean".to_string()];
        for m in &self.models {
            clean.extend([pct(m.curve.clean), String::new(), String::new()]);
        }
        t.push(clean);
        for (i, rate) in self.rates.iter().enumerate() {
            let mut row = vec![format!("{rate:e}")];
            for m in &self.models {
                let s = &m.curve.points[i].summary;
                row.push(pct(s.mean));
                row.push(pct(s.std));
                row.push(match s.ci95 {
                    Some((lo, hi)) => format!("[{}, {}]", pct(lo), pct(hi)),
                    None => "-".into(),
                });
            }
            t.push(row);
        }
        t
    }

    /// One row per model and rate; accuracies as fractions, empty CI cells
    /// with a single chip.
    pub fn csv(&self) -> Result<Csv, ReportError> {
        let mut c = Csv::new([
            "model",
            "weights",
            "network",
            "rate",
            "chips",
            "clean",
            "mean",
            "std",
            "ci95_low",
            "ci95_high",
            "min",
            "max",
        ]);
        for m in &self.models {
            for p in &m.curve.points {
                let s = &p.summary;
                let (lo, hi) = s.ci95.map_or((String::new(), String::new()), |(a, b)| {
                    (a.to_string(), b.to_string())
                });
                c.push([
                    m.label.clone(),
                    m.weights.clone(),
                    m.network.clone(),
                    p.rate.to_string(),
                    s.n.to_string(),
                    m.curve.clean.to_string(),
                    s.mean.to_string(),
                    s.std.to_string(),
                    lo,
                    hi,
                    s.min.to_string(),
                    s.max.to_string(),
                ])?;
            }
        }
        Ok(c)
    }

    /// Mean accuracy (%) vs rate per model, with the 95% confidence band.
    pub fn plot(&self) -> Plot {
        let x_label = match self.rate_mode {
            RateMode::Absolute => format!("fault rate ({} put at each rate)", self.fault),
            RateMode::Relative => format!("rate factor (x the rates of {})", self.fault),
        };
        let mut plot = Plot::new(
            format!(
                "Accuracy under faults: {}, {} images, {} chips per rate",
                self.dataset, self.images, self.chips
            ),
            x_label,
            "accuracy (%)",
        )
        .y_range(0.0, 100.0);
        if self.rates.iter().all(|&r| r > 0.0) {
            plot = plot.log_x();
        }
        for m in &self.models {
            let points = m
                .curve
                .points
                .iter()
                .map(|p| (p.rate, 100.0 * p.summary.mean))
                .collect();
            let band = m
                .curve
                .points
                .iter()
                .map(|p| {
                    let (lo, hi) = p.summary.ci95.unwrap_or((p.summary.mean, p.summary.mean));
                    (100.0 * lo, 100.0 * hi)
                })
                .collect();
            let name = format!("{} (clean {}%)", m.label, pct(m.curve.clean));
            plot.push(Series::line(name, points).band(band));
        }
        plot
    }

    /// Write `eval.csv`, `eval.json` and `eval.svg` into `dir` (created if
    /// missing), each atomically; returns the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
        let paths = [CSV_FILE, JSON_FILE, SVG_FILE].map(|f| dir.join(f));
        self.csv()?.write(&paths[0])?;
        write_json(&paths[1], self)?;
        self.plot().write(&paths[2])?;
        Ok(paths.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::stats::Summary;
    use crate::eval::sweep::RatePoint;

    fn report(chips: usize) -> EvalReport {
        let model = |label: &str, accs: [f64; 2]| ModelResult {
            label: label.into(),
            model: "m.toml".into(),
            weights: format!("{label}.safetensors"),
            network: "vgg2".into(),
            calib_images: 16,
            curve: Curve {
                clean: 0.9,
                points: [1e-3, 1e-1]
                    .iter()
                    .zip(accs)
                    .map(|(&rate, a)| {
                        let v: Vec<f64> = (0..chips).map(|c| a + 0.01 * c as f64).collect();
                        RatePoint {
                            rate,
                            fault: "feature mibb".into(),
                            summary: Summary::of(&v),
                            accuracies: v,
                        }
                    })
                    .collect(),
            },
        };
        EvalReport {
            dataset: "fashion-mnist".into(),
            images: 100,
            num_classes: 10,
            engine: "fast".into(),
            datapath: Datapath::default(),
            fault: "mibb:1e-4".into(),
            fault_model: "feature mibb p=0.0001 on conv layers".into(),
            rate_mode: RateMode::Absolute,
            rates: vec![1e-3, 1e-1],
            chips: chips as u64,
            seed: 1,
            models: vec![model("plain", [0.8, 0.1]), model("ftt", [0.85, 0.3])],
        }
    }

    #[test]
    fn table_has_a_clean_row_and_one_row_per_rate() {
        let text = report(3).table().render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 1 + 2, "{text}");
        assert!(lines[0].contains("plain %") && lines[0].contains("ftt %"));
        assert!(lines[2].starts_with("clean") && lines[2].contains("90.00"));
        assert!(
            lines[4].starts_with("1e-1") && lines[4].contains("31.00"),
            "{text}"
        );
    }

    #[test]
    fn csv_rows_and_empty_interval_for_one_chip() {
        let c = report(3).csv().unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c.header()[6], "mean");
        assert_eq!(c.rows()[1][3], "0.1");
        let one = report(1).csv().unwrap();
        assert_eq!(
            (one.rows()[0][8].as_str(), one.rows()[0][9].as_str()),
            ("", "")
        );
    }

    #[test]
    fn plot_is_log_x_with_bands_and_linear_with_rate_zero() {
        let r = report(3);
        let p = r.plot();
        assert_eq!(p.x.scale, crate::report::Scale::Log10);
        assert_eq!(p.series.len(), 2);
        assert!(p.series[1].name.contains("ftt (clean 90.00%)"));
        assert!(p.series[0].band.as_ref().unwrap()[0].0 < 80.0 + 1.0);
        let mut r0 = r.clone();
        r0.rates[0] = 0.0;
        assert_eq!(r0.plot().x.scale, crate::report::Scale::Linear);
    }

    #[test]
    fn writes_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/sub");
        let paths = report(2).write(&out).unwrap();
        assert_eq!(paths.len(), 3);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&paths[1]).unwrap()).unwrap();
        assert_eq!(
            v["models"][1]["points"][0]["accuracies"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(v["rate_mode"], "absolute");
        assert!(std::fs::read_to_string(&paths[2])
            .unwrap()
            .starts_with("<svg"));
    }
}
