//! CSV results: a header row and data rows, comma-separated, `\n` line
//! ends, fields quoted per RFC 4180 when they need it.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use super::{write_atomic, ReportError};

/// A field as it must appear in CSV: quoted (with `"` doubled) if it holds
/// a comma, a quote, a line break, or leading/trailing spaces (which many
/// readers would otherwise trim).
pub fn csv_field(s: &str) -> Cow<'_, str> {
    let needs = s.contains([',', '"', '\n', '\r'])
        || s.starts_with([' ', '\t'])
        || s.ends_with([' ', '\t']);
    if needs {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// A CSV table built in memory and written in one piece.
///
/// Values are rendered with `Display`, so floats use Rust's shortest
/// round-trip form (`0.1`, `1e-7`) and read back exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn new<I, S>(header: I) -> Csv
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Csv {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row; it must have one field per header column.
    pub fn push<I, T>(&mut self, row: I) -> Result<(), ReportError>
    where
        I: IntoIterator<Item = T>,
        T: fmt::Display,
    {
        let row: Vec<String> = row.into_iter().map(|v| v.to_string()).collect();
        if row.len() != self.header.len() {
            return Err(ReportError::CsvWidth {
                row: self.rows.len() + 1,
                got: row.len(),
                expected: self.header.len(),
            });
        }
        self.rows.push(row);
        Ok(())
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }
    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Write the CSV text to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_string().as_bytes())
    }
}

impl fmt::Display for Csv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (i, v) in line.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(&csv_field(v))?;
            }
            f.write_str("\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_mismatch_is_an_error() {
        let mut c = Csv::new(["a", "b"]);
        c.push([1, 2]).unwrap();
        let e = c.push([1]).unwrap_err().to_string();
        assert_eq!(e, "CSV row 2 has 1 fields but the header has 2");
        assert_eq!(c.len(), 1);
    }
}
