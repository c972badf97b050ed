//! Plain-text tables for the terminal: columns padded to their widest cell,
//! numeric columns right-aligned (so digits line up), a rule under the
//! header.

use std::fmt;

/// Horizontal alignment of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A text table. Rows may be shorter or longer than the header: missing
/// cells are blank.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    align: Vec<Option<Align>>,
}

/// Whether a cell reads as a number (`12`, `-0.5`, `1e-5`, `93.1%`, `nan`).
fn is_numeric(cell: &str) -> bool {
    let t = cell.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    !t.is_empty() && t.parse::<f64>().is_ok()
}

impl Table {
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            align: Vec::new(),
        }
    }

    /// Append a row of cells (rendered with `Display`).
    pub fn push<I, T>(&mut self, row: I)
    where
        I: IntoIterator<Item = T>,
        T: fmt::Display,
    {
        self.rows
            .push(row.into_iter().map(|v| v.to_string()).collect());
    }

    /// Force the alignment of column `col` (by default a column is
    /// right-aligned when all its non-blank cells are numbers).
    pub fn align(mut self, col: usize, align: Align) -> Table {
        if self.align.len() <= col {
            self.align.resize(col + 1, None);
        }
        self.align[col] = Some(align);
        self
    }

    fn columns(&self) -> usize {
        self.rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0)
    }

    fn column_align(&self, col: usize) -> Align {
        if let Some(Some(a)) = self.align.get(col) {
            return *a;
        }
        let mut cells = self
            .rows
            .iter()
            .filter_map(|r| r.get(col))
            .filter(|c| !c.trim().is_empty())
            .peekable();
        if cells.peek().is_some() && cells.all(|c| is_numeric(c)) {
            Align::Right
        } else {
            Align::Left
        }
    }

    /// The table as text, one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ncol = self.columns();
        if ncol == 0 {
            return Ok(());
        }
        let width = |s: &str| s.chars().count();
        let mut widths = vec![0usize; ncol];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let aligns: Vec<Align> = (0..ncol).map(|c| self.column_align(c)).collect();
        let line = |f: &mut fmt::Formatter<'_>, row: &[String]| -> fmt::Result {
            let mut out = String::new();
            for c in 0..ncol {
                let cell = row.get(c).map(String::as_str).unwrap_or("");
                let pad = widths[c] - width(cell);
                if c > 0 {
                    out.push_str("  ");
                }
                match aligns[c] {
                    Align::Left => {
                        out.push_str(cell);
                        out.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        out.extend(std::iter::repeat_n(' ', pad));
                        out.push_str(cell);
                    }
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &self.header)?;
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        writeln!(f, "{}", rule.join("  "))?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_detection() {
        for s in ["1", "-0.5", "1e-5", " 93.1% ", "NaN", "inf"] {
            assert!(is_numeric(s), "{s}");
        }
        for s in ["", "%", "x1", "1.2.3", "resnet20"] {
            assert!(!is_numeric(s), "{s}");
        }
    }
}
