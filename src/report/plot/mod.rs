//! SVG plots: line plots with several series (accuracy vs fault rate, with
//! optional error bars or confidence bands and log axes) and scatter plots
//! (accuracy vs cycles, with optional point labels). A scatter plot is a
//! [`Plot`] whose series use [`Style::Markers`].
//!
//! The SVG is written by hand (see the `report` module doc for why): text
//! needs no font files and the output is byte-identical for the same data.
//! Points that cannot be shown (NaN, infinite, non-positive on a log axis)
//! are skipped and break the line; data outside a fixed axis range is
//! clipped to the plot area.

mod axis;
mod svg;

use std::fmt::Write;
use std::path::Path;

pub use axis::{format_linear, format_log, linear_ticks, log_ticks, Scale, Ticks};
pub use svg::escape;

use super::{write_atomic, ReportError};
use svg::{points, Svg};

/// Colours of successive series (the "tab10" palette, distinguishable and
/// colour-blind friendly enough for up to ten series).
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Approximate advance of one 12 px sans-serif character, for layout.
const CHAR_W: f64 = 7.0;

/// One axis: its label, scale and optionally a fixed range (otherwise the
/// data range widened to whole ticks).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    pub range: Option<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Line,
    Markers,
    LineMarkers,
}

/// A named sequence of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    /// Symmetric error bar half-height of each point.
    pub y_err: Option<Vec<f64>>,
    /// Shaded (low, high) band of each point, e.g. a 95% confidence interval.
    pub band: Option<Vec<(f64, f64)>>,
    /// Text drawn next to each point (e.g. model names on a scatter plot).
    pub point_labels: Option<Vec<String>>,
    /// CSS colour; by default the palette colour of the series' position.
    pub color: Option<String>,
}

impl Series {
    /// A series drawn as a line with markers.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            style: Style::LineMarkers,
            y_err: None,
            band: None,
            point_labels: None,
            color: None,
        }
    }

    /// A series drawn as markers only.
    pub fn scatter(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            style: Style::Markers,
            ..Series::line(name, points)
        }
    }

    pub fn style(mut self, style: Style) -> Series {
        self.style = style;
        self
    }
    /// Error bars of half-height `err[i]` at point i (missing entries: none).
    pub fn error_bars(mut self, err: Vec<f64>) -> Series {
        self.y_err = Some(err);
        self
    }
    /// A shaded band from `lo_hi[i].0` to `lo_hi[i].1` at point i.
    pub fn band(mut self, lo_hi: Vec<(f64, f64)>) -> Series {
        self.band = Some(lo_hi);
        self
    }
    pub fn point_labels(mut self, labels: Vec<String>) -> Series {
        self.point_labels = Some(labels);
        self
    }
    pub fn color(mut self, color: impl Into<String>) -> Series {
        self.color = Some(color.into());
        self
    }

    /// The (y low, y high) extents that must be visible at point i.
    fn y_extent(&self, i: usize) -> [f64; 2] {
        let y = self.points[i].1;
        let mut ext = [y, y];
        if let Some(e) = self.y_err.as_ref().and_then(|e| e.get(i)) {
            if e.is_finite() {
                ext = [y - e.abs(), y + e.abs()];
            }
        }
        if let Some(&(lo, hi)) = self.band.as_ref().and_then(|b| b.get(i)) {
            ext = [ext[0].min(lo).min(hi), ext[1].max(hi).max(lo)];
        }
        ext
    }
}

/// A plot: title, two axes, series, size in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub width: f64,
    pub height: f64,
}

/// Where the data goes on the canvas.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    xs: Scale,
    ys: Scale,
    xt: Ticks,
    yt: Ticks,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let (a, b) = (self.xs.forward(self.xt.lo), self.xs.forward(self.xt.hi));
        self.x0 + (self.xs.forward(x) - a) / (b - a) * (self.x1 - self.x0)
    }
    fn py(&self, y: f64) -> f64 {
        let (a, b) = (self.ys.forward(self.yt.lo), self.ys.forward(self.yt.hi));
        self.y1 - (self.ys.forward(y) - a) / (b - a) * (self.y1 - self.y0)
    }
    fn shown(&self, (x, y): (f64, f64)) -> bool {
        self.xs.accepts(x) && self.ys.accepts(y)
    }
    /// Within the axis ranges (a hair of tolerance for points on the frame).
    fn inside(&self, (x, y): (f64, f64)) -> bool {
        let within = |v: f64, t: &Ticks| {
            let tol = (t.hi - t.lo).abs() * 1e-9;
            v >= t.lo.min(t.hi) - tol && v <= t.hi.max(t.lo) + tol
        };
        within(x, &self.xt) && within(y, &self.yt)
    }
}

/// Fraction of the data span left free on each side of an automatic axis
/// range, so that markers and error bars at the extremes stay visible.
const MARGIN: f64 = 0.05;

/// Ticks for an axis over the data range `[min, max]` (None: no data).
fn axis_ticks(axis: &Axis, data: Option<(f64, f64)>) -> Ticks {
    let fixed = axis
        .range
        .filter(|&(a, b)| axis.scale.accepts(a) && axis.scale.accepts(b) && a < b);
    if let Some((a, b)) = fixed {
        let t = match axis.scale {
            Scale::Linear => linear_ticks(a, b, 6),
            Scale::Log10 => log_ticks(a, b),
        };
        return restrict(t, a, b);
    }
    let (min, max) = data.unwrap_or(match axis.scale {
        Scale::Linear => (0.0, 1.0),
        Scale::Log10 => (1.0, 10.0),
    });
    match axis.scale {
        Scale::Linear => {
            if max > min {
                let pad = (max - min) * MARGIN;
                let (a, b) = (min - pad, max + pad);
                restrict(linear_ticks(a, b, 6), a, b)
            } else {
                linear_ticks(min, max, 6)
            }
        }
        Scale::Log10 => {
            let widened = log_ticks(min, max);
            if max > min {
                let pad = (max.log10() - min.log10()) * MARGIN;
                // Clamped to where log coordinates stay finite.
                let a = 10f64.powf((min.log10() - pad).max(-300.0));
                let b = 10f64.powf((max.log10() + pad).min(300.0));
                let t = restrict(widened.clone(), a, b);
                // Less than two labelled decades inside the data: show
                // whole decades instead.
                if t.major.len() >= 2 {
                    return t;
                }
            }
            widened
        }
    }
}

/// Limit an axis to `[a, b]`, keeping the ticks inside.
fn restrict(mut t: Ticks, a: f64, b: f64) -> Ticks {
    let tol = (b - a).abs() * 1e-9;
    t.major.retain(|&v| v >= a - tol && v <= b + tol);
    t.minor.retain(|&v| v >= a - tol && v <= b + tol);
    t.lo = a;
    t.hi = b;
    t
}

fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn tick_label(scale: Scale, v: f64, t: &Ticks) -> String {
    match scale {
        Scale::Linear => format_linear(v, t.step),
        Scale::Log10 => format_log(v),
    }
}

impl Plot {
    /// An empty plot with linear axes, 720 x 440 px.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Plot {
        Plot {
            title: title.into(),
            x: Axis {
                label: x_label.into(),
                ..Axis::default()
            },
            y: Axis {
                label: y_label.into(),
                ..Axis::default()
            },
            series: Vec::new(),
            width: 720.0,
            height: 440.0,
        }
    }

    pub fn log_x(mut self) -> Plot {
        self.x.scale = Scale::Log10;
        self
    }
    pub fn log_y(mut self) -> Plot {
        self.y.scale = Scale::Log10;
        self
    }
    pub fn x_range(mut self, lo: f64, hi: f64) -> Plot {
        self.x.range = Some((lo, hi));
        self
    }
    pub fn y_range(mut self, lo: f64, hi: f64) -> Plot {
        self.y.range = Some((lo, hi));
        self
    }
    pub fn size(mut self, width: f64, height: f64) -> Plot {
        self.width = width.max(200.0);
        self.height = height.max(150.0);
        self
    }
    pub fn series(mut self, s: Series) -> Plot {
        self.series.push(s);
        self
    }
    pub fn push(&mut self, s: Series) {
        self.series.push(s);
    }

    /// Write the SVG to `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_svg().as_bytes())
    }

    fn frame(&self) -> Frame {
        let (xs, ys) = (self.x.scale, self.y.scale);
        let xdata = extent(
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|&&(x, y)| xs.accepts(x) && ys.accepts(y))
                .map(|p| p.0),
        );
        let ydata = extent(self.series.iter().flat_map(|s| {
            (0..s.points.len())
                .filter(|&i| xs.accepts(s.points[i].0) && ys.accepts(s.points[i].1))
                .flat_map(|i| s.y_extent(i))
                .filter(|&v| ys.accepts(v))
        }));
        let xt = axis_ticks(&self.x, xdata);
        let yt = axis_ticks(&self.y, ydata);
        let ylabel_chars = yt
            .major
            .iter()
            .map(|&v| tick_label(ys, v, &yt).chars().count())
            .max()
            .unwrap_or(1);
        let legend_chars = self
            .series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        let legend_w = if self.series.is_empty() {
            0.0
        } else {
            36.0 + CHAR_W * legend_chars as f64
        };
        let left = 30.0 + CHAR_W * ylabel_chars as f64 + 8.0;
        let right = 20.0 + legend_w;
        // Keep at least a third of the width for the data.
        let x1 = (self.width - right).max(left + self.width / 3.0);
        Frame {
            x0: left,
            x1,
            y0: 40.0,
            y1: self.height - 50.0,
            xs,
            ys,
            xt,
            yt,
        }
    }

    /// The plot as an SVG document.
    pub fn to_svg(&self) -> String {
        let f = self.frame();
        let (w, h) = (self.width, self.height);
        let mut s = Svg::new(w, h);
        s.raw(&format!(
            r#"<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>"#
        ));
        s.raw(&format!(
            r#"<defs><clipPath id="plot-area"><rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}"/></clipPath></defs>"#,
            f.x0,
            f.y0,
            f.x1 - f.x0,
            f.y1 - f.y0
        ));
        if !self.title.is_empty() {
            s.text(
                (f.x0 + f.x1) / 2.0,
                24.0,
                "middle",
                r#"font-size="15" font-weight="bold""#,
                &self.title,
            );
        }
        self.draw_axes(&mut s, &f);
        for (i, series) in self.series.iter().enumerate() {
            self.draw_series(&mut s, &f, i, series);
        }
        self.draw_legend(&mut s, &f);
        s.finish()
    }

    fn draw_axes(&self, s: &mut Svg, f: &Frame) {
        let grid = r##"stroke="#e6e6e6" stroke-width="1""##;
        let minor_grid = r##"stroke="#f3f3f3" stroke-width="1""##;
        let tick = r##"stroke="#333" stroke-width="1""##;
        s.raw(r#"<g class="grid">"#);
        for &v in &f.xt.minor {
            let x = f.px(v);
            s.line(x, f.y0, x, f.y1, minor_grid);
        }
        for &v in &f.yt.minor {
            let y = f.py(v);
            s.line(f.x0, y, f.x1, y, minor_grid);
        }
        for &v in &f.xt.major {
            let x = f.px(v);
            s.line(x, f.y0, x, f.y1, grid);
        }
        for &v in &f.yt.major {
            let y = f.py(v);
            s.line(f.x0, y, f.x1, y, grid);
        }
        s.raw("</g>");
        s.raw(&format!(
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="none" stroke="#333" stroke-width="1"/>"##,
            f.x0,
            f.y0,
            f.x1 - f.x0,
            f.y1 - f.y0
        ));
        s.raw(r#"<g class="x-axis">"#);
        for &v in &f.xt.minor {
            let x = f.px(v);
            s.line(x, f.y1, x, f.y1 + 3.0, tick);
        }
        for &v in &f.xt.major {
            let x = f.px(v);
            s.line(x, f.y1, x, f.y1 + 5.0, tick);
            s.text(x, f.y1 + 18.0, "middle", "", &tick_label(f.xs, v, &f.xt));
        }
        s.text(
            (f.x0 + f.x1) / 2.0,
            self.height - 12.0,
            "middle",
            r#"class="axis-label""#,
            &self.x.label,
        );
        s.raw("</g>");
        s.raw(r#"<g class="y-axis">"#);
        for &v in &f.yt.minor {
            let y = f.py(v);
            s.line(f.x0 - 3.0, y, f.x0, y, tick);
        }
        for &v in &f.yt.major {
            let y = f.py(v);
            s.line(f.x0 - 5.0, y, f.x0, y, tick);
            s.text(f.x0 - 8.0, y + 4.0, "end", "", &tick_label(f.ys, v, &f.yt));
        }
        let cy = (f.y0 + f.y1) / 2.0;
        s.text(
            16.0,
            cy,
            "middle",
            &format!(r#"class="axis-label" transform="rotate(-90 16 {cy:.2})""#),
            &self.y.label,
        );
        s.raw("</g>");
    }

    fn color(&self, i: usize) -> String {
        self.series[i]
            .color
            .clone()
            .unwrap_or_else(|| PALETTE[i % PALETTE.len()].to_string())
    }

    fn draw_series(&self, s: &mut Svg, f: &Frame, i: usize, series: &Series) {
        let color = escape(&self.color(i));
        s.raw(&format!(
            r#"<g class="series" data-name="{}">"#,
            escape(&series.name)
        ));
        let shown: Vec<usize> = (0..series.points.len())
            .filter(|&k| f.shown(series.points[k]))
            .collect();
        // Lines, bands and error bars may run past a fixed axis range and
        // are clipped to the plot area; markers and labels are drawn only
        // for points inside it, unclipped so that a point on the frame
        // stays a whole circle.
        s.raw(r#"<g clip-path="url(#plot-area)">"#);
        if let Some(band) = &series.band {
            let pts: Vec<(f64, f64, f64)> = shown
                .iter()
                .filter_map(|&k| {
                    let (lo, hi) = *band.get(k)?;
                    (f.ys.accepts(lo) && f.ys.accepts(hi)).then(|| (series.points[k].0, lo, hi))
                })
                .collect();
            if pts.len() >= 2 {
                let mut poly: Vec<(f64, f64)> =
                    pts.iter().map(|&(x, _, hi)| (f.px(x), f.py(hi))).collect();
                poly.extend(pts.iter().rev().map(|&(x, lo, _)| (f.px(x), f.py(lo))));
                s.raw(&format!(
                    r#"<polygon class="band" points="{}" fill="{color}" fill-opacity="0.18" stroke="none"/>"#,
                    points(&poly)
                ));
            }
        }
        if matches!(series.style, Style::Line | Style::LineMarkers) {
            // Consecutive shown points form one polyline; a hidden point
            // breaks it.
            let mut run: Vec<(f64, f64)> = Vec::new();
            let flush = |run: &mut Vec<(f64, f64)>, s: &mut Svg| {
                if run.len() >= 2 {
                    s.raw(&format!(
                        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>"#,
                        points(run)
                    ));
                }
                run.clear();
            };
            for (k, &p) in series.points.iter().enumerate() {
                if f.shown(p) {
                    run.push((f.px(p.0), f.py(p.1)));
                } else {
                    flush(&mut run, s);
                }
                if k + 1 == series.points.len() {
                    flush(&mut run, s);
                }
            }
        }
        if let Some(err) = &series.y_err {
            let style = format!(r#"stroke="{color}" stroke-width="1.2""#);
            for &k in &shown {
                let Some(e) = err.get(k).filter(|e| e.is_finite()).map(|e| e.abs()) else {
                    continue;
                };
                let (x, y) = series.points[k];
                let lo = if f.ys.accepts(y - e) { y - e } else { f.yt.lo };
                let (px, plo, phi) = (f.px(x), f.py(lo), f.py(y + e));
                s.line(px, plo, px, phi, &style);
                s.line(px - 4.0, plo, px + 4.0, plo, &style);
                s.line(px - 4.0, phi, px + 4.0, phi, &style);
            }
        }
        s.raw("</g>");
        let inside: Vec<usize> = shown
            .iter()
            .copied()
            .filter(|&k| f.inside(series.points[k]))
            .collect();
        let markers = series.style != Style::Line || shown.len() == 1;
        if markers {
            for &k in &inside {
                let (x, y) = series.points[k];
                s.raw(&format!(
                    r#"<circle cx="{:.2}" cy="{:.2}" r="3.5" fill="{color}"/>"#,
                    f.px(x),
                    f.py(y)
                ));
            }
        }
        if let Some(labels) = &series.point_labels {
            for &k in &inside {
                if let Some(text) = labels.get(k) {
                    let (x, y) = series.points[k];
                    let (px, py) = (f.px(x), f.py(y));
                    // Labels of points near the right edge go to their left
                    // so they do not run into the legend.
                    let (dx, anchor) = if px > f.x0 + 0.75 * (f.x1 - f.x0) {
                        (-6.0, "end")
                    } else {
                        (6.0, "start")
                    };
                    s.text(
                        px + dx,
                        py - 6.0,
                        anchor,
                        r#"font-size="10" class="point-label""#,
                        text,
                    );
                }
            }
        }
        s.raw("</g>");
    }

    fn draw_legend(&self, s: &mut Svg, f: &Frame) {
        if self.series.is_empty() {
            return;
        }
        s.raw(r#"<g class="legend">"#);
        let x = f.x1 + 14.0;
        for (i, series) in self.series.iter().enumerate() {
            let y = f.y0 + 10.0 + 20.0 * i as f64;
            let color = escape(&self.color(i));
            if series.style != Style::Markers {
                s.line(
                    x,
                    y,
                    x + 20.0,
                    y,
                    &format!(r#"stroke="{color}" stroke-width="2""#),
                );
            }
            if series.style != Style::Line {
                let mut c = String::new();
                let _ = write!(
                    c,
                    r#"<circle cx="{:.2}" cy="{y:.2}" r="3.5" fill="{color}"/>"#,
                    x + 10.0
                );
                s.raw(&c);
            }
            s.text(x + 26.0, y + 4.0, "start", "", &series.name);
        }
        s.raw("</g>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_points_break_lines_and_do_not_stretch_axes() {
        let p = Plot::new("t", "x", "y").log_x().series(Series::line(
            "s",
            vec![
                (1e-3, 1.0),
                (0.0, 100.0),
                (1e-2, 2.0),
                (f64::NAN, 3.0),
                (1e-1, 3.0),
            ],
        ));
        let f = p.frame();
        assert!(f.yt.hi > 3.0 && f.yt.hi < 3.5, "{}", f.yt.hi);
        let svg = p.to_svg();
        // Three shown points, separated by hidden ones: no polyline of >= 2.
        assert_eq!(svg.matches("<polyline").count(), 0);
        assert_eq!(svg.matches("<circle").count(), 3 + 1);
    }

    #[test]
    fn fixed_range_keeps_ticks_inside() {
        let p = Plot::new("", "x", "y")
            .y_range(0.0, 1.0)
            .series(Series::line("a", vec![(0.0, 0.5), (1.0, 2.0)]));
        let f = p.frame();
        assert_eq!((f.yt.lo, f.yt.hi), (0.0, 1.0));
        assert!(f.yt.major.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
}
