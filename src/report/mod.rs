//! The shared output layer: everything ftnas writes for people or for other
//! programs goes through here, so that every result file is written the same
//! way (atomically) and looks the same.
//!
//! - `atomic`: [`write_atomic`], temp file in the target's directory + rename,
//!   so a crash or a full disk never leaves a half-written result and never
//!   destroys the previous one.
//! - `csv`: [`Csv`], a header plus rows, quoted per RFC 4180.
//! - `json`: [`write_json`], serde_json, pretty-printed, atomic.
//! - `table`: [`Table`], plain-text tables for stdout (numbers right-aligned).
//! - `plot`: [`Plot`], SVG line plots (several series, log axes, error bars,
//!   confidence bands) and scatter plots.
//!
//! Why hand-written SVG rather than the `plotters` crate: plotters without
//! its default features cannot draw text unless a font file is registered
//! at run time, and axis labels, ticks and legends are most of a plot. SVG
//! `<text>` elements need no font at all (the viewer picks one), the
//! output is small, diffable and deterministic (byte-identical for the same
//! data, which tests and result archives rely on), and the few primitives a
//! scientific plot needs (lines, circles, polygons, text) are easy to emit.

mod atomic;
mod csv;
mod json;
pub mod plot;
mod table;

use std::path::PathBuf;

pub use atomic::write_atomic;
pub use csv::{csv_field, Csv};
pub use json::{to_json_string, write_json};
pub use plot::{linear_ticks, log_ticks, Axis, Plot, Scale, Series, Style, Ticks};
pub use table::{Align, Table};

/// Errors writing results.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file (or its temp file or directory) could not be written.
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The value could not be represented as JSON.
    #[error("{path}: cannot serialize as JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A CSV row does not have as many fields as the header.
    #[error("CSV row {row} has {got} fields but the header has {expected}")]
    CsvWidth {
        row: usize,
        got: usize,
        expected: usize,
    },
}
