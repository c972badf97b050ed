//! Axis scales and tick placement: "nice" linear ticks (1, 2 or 5 times a
//! power of ten, after Heckbert, Graphics Gems 1990) and decade ticks for
//! log axes (fault rates span many orders of magnitude).

/// Largest magnitude a plot shows.
const MAX_MAGNITUDE: f64 = 1e300;

/// How an axis maps data to position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    #[default]
    Linear,
    /// Base-10 logarithmic; non-positive values cannot be shown.
    Log10,
}

impl Scale {
    /// Whether `v` can be placed on this scale: finite, within +-1e300
    /// (so that spans and tick arithmetic cannot overflow) and, on a log
    /// axis, at least 1e-300.
    pub fn accepts(self, v: f64) -> bool {
        v.is_finite()
            && v.abs() <= MAX_MAGNITUDE
            && (self == Scale::Linear || v >= 1.0 / MAX_MAGNITUDE)
    }

    /// The coordinate in which the axis is linear.
    pub(crate) fn forward(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log10 => v.log10(),
        }
    }
}

/// Ticks of an axis: the axis range (widened to whole ticks) and the
/// labelled tick values.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub lo: f64,
    pub hi: f64,
    /// Labelled ticks, increasing, inside `[lo, hi]`.
    pub major: Vec<f64>,
    /// Unlabelled ticks (2..9 x 10^k on log axes).
    pub minor: Vec<f64>,
    /// Distance between major ticks (in decades on log axes).
    pub step: f64,
}

/// 1, 2, 5 or 10 times a power of ten near `x` (> 0): rounded to the
/// nearest if `round`, else the smallest not below `x`.
fn nice_number(x: f64, round: bool) -> f64 {
    let exp = x.log10().floor();
    let base = 10f64.powf(exp);
    let f = x / base;
    let nf = if round {
        if f < 1.5 {
            1.0
        } else if f < 3.0 {
            2.0
        } else if f < 7.0 {
            5.0
        } else {
            10.0
        }
    } else if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nf * base
}

/// About `target` nice ticks covering `[min, max]` on a linear axis.
pub fn linear_ticks(min: f64, max: f64, target: usize) -> Ticks {
    let ok = |v: f64| Scale::Linear.accepts(v);
    let (mut min, mut max) = if ok(min) && ok(max) && min <= max {
        (min, max)
    } else {
        (0.0, 1.0)
    };
    // A span that is zero, or too small next to the values (or to f64's
    // smallest normal numbers) to place ticks in, is widened around them.
    if max - min <= 1e-12 * max.abs().max(min.abs()) || max - min < 1e-200 {
        let d = if min.abs() < 1e-200 {
            1.0
        } else {
            min.abs() * 0.1
        };
        min -= d;
        max += d;
    }
    let target = target.max(2);
    let range = nice_number(max - min, false);
    let step = nice_number(range / (target - 1) as f64, true);
    let k_lo = (min / step).floor();
    let k_hi = (max / step).ceil();
    // step = mant * 10^exp; tick k is (k * mant) scaled by 10^exp in one
    // correctly rounded operation, so labels and positions are the decimal
    // values (0.6, not 0.6000000000000001).
    let exp = step.log10().floor();
    let mant = (step / 10f64.powf(exp)).round();
    let tick = |k: f64| {
        let v = if exp < 0.0 {
            (k * mant) / 10f64.powf(-exp)
        } else {
            (k * mant) * 10f64.powf(exp)
        };
        if v == 0.0 {
            0.0 // no -0
        } else {
            v
        }
    };
    let (lo, hi) = (tick(k_lo), tick(k_hi));
    let n = (k_hi - k_lo).round();
    if !(step.is_finite() && step > 0.0 && lo.is_finite() && hi.is_finite() && n <= 100.0) {
        // Cannot happen for accepted values; keep the axis usable anyway.
        return Ticks {
            lo: min,
            hi: max,
            major: vec![min, max],
            minor: Vec::new(),
            step: max - min,
        };
    }
    let n = n as usize;
    let major = (0..=n).map(|i| tick(k_lo + i as f64)).collect();
    Ticks {
        lo,
        hi,
        major,
        minor: Vec::new(),
        step,
    }
}

/// Ticks at powers of ten covering `[min, max]` (both > 0) on a log axis;
/// every k-th decade is labelled when there are more than about 10.
pub fn log_ticks(min: f64, max: f64) -> Ticks {
    let ok = |v: f64| Scale::Log10.accepts(v);
    let (min, max) = if ok(min) && ok(max) && max >= min {
        (min, max)
    } else {
        (1.0, 10.0)
    };
    let mut e_lo = min.log10().floor() as i32;
    let mut e_hi = max.log10().ceil() as i32;
    if e_hi == e_lo {
        e_hi += 1;
    }
    let decades = (e_hi - e_lo) as usize;
    let k = decades.div_ceil(10).max(1) as i32;
    // Align the labelled decades to multiples of k so labels read 1e-6,
    // 1e-4, ... rather than 1e-5, 1e-3, ...
    e_lo = e_lo.div_euclid(k) * k;
    e_hi = -((-e_hi).div_euclid(k) * k);
    // Stay within normal f64 numbers (accepted data lies in 1e-300..1e300).
    let (e_min, e_max) = (e_lo.max(-307), e_hi.min(308));
    let major: Vec<f64> = (e_lo..=e_hi)
        .step_by(k as usize)
        .filter(|e| (e_min..=e_max).contains(e))
        .map(decade)
        .collect();
    let minor = if k == 1 {
        (e_min..e_max)
            .flat_map(|e| (2..10).map(move |m| f64::from(m) * decade(e)))
            .collect()
    } else {
        (e_min..e_max)
            .filter(|e| e.rem_euclid(k) != 0)
            .map(decade)
            .collect()
    };
    Ticks {
        lo: decade(e_min),
        hi: decade(e_max),
        major,
        minor,
        step: f64::from(k),
    }
}

/// 10^e, correctly rounded (1e-5 exactly as the literal; `powi` may be off
/// by an ulp).
fn decade(e: i32) -> f64 {
    format!("1e{e}").parse().unwrap_or_else(|_| 10f64.powi(e))
}

/// Label of a linear tick `v` on an axis with tick distance `step`: plain
/// decimals with as many digits as the step needs, scientific notation for
/// very large or very small magnitudes.
pub fn format_linear(v: f64, step: f64) -> String {
    let mag = v.abs().max(step);
    if mag >= 1e6 || step < 1e-4 {
        if v == 0.0 {
            return "0".into();
        }
        let digits =
            ((v.abs().log10() + 1e-9).floor() - (step.log10() + 1e-9).floor()).max(0.0) as usize;
        return trim_scientific(&format!("{:.*e}", digits, v));
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil() as usize
    };
    format!("{:.*}", decimals, v)
}

/// Label of a decade tick `10^e`: plain for 0.001 ..= 10000, else `1e{e}`.
pub fn format_log(v: f64) -> String {
    let e = v.log10().round() as i32;
    if (-3..=4).contains(&e) {
        format!("{:.*}", e.min(0).unsigned_abs() as usize, v)
    } else {
        format!("1e{e}")
    }
}

/// `2.50e6` -> `2.5e6`, `1.0e-7` -> `1e-7`.
fn trim_scientific(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{e}")
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_linear_ticks() {
        let t = linear_ticks(0.03, 0.97, 6);
        assert_eq!(t.major, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let t = linear_ticks(-3.0, 17.0, 5);
        assert_eq!(t.step, 5.0);
        assert_eq!((t.lo, t.hi), (-5.0, 20.0));
        let t = linear_ticks(5.0, 5.0, 5);
        assert!(t.lo < 5.0 && t.hi > 5.0);
        let t = linear_ticks(f64::NAN, 1.0, 5);
        assert_eq!((t.lo, t.hi), (0.0, 1.0));
    }

    #[test]
    fn decade_ticks() {
        let t = log_ticks(3e-6, 0.02);
        assert_eq!(t.major.len(), 6);
        assert!((t.major[0] - 1e-6).abs() < 1e-20);
        assert!((t.major[5] - 0.1).abs() < 1e-15);
        assert_eq!(t.minor.len(), 5 * 8);
        let wide = log_ticks(1e-15, 1.0);
        assert!(wide.major.len() <= 11);
        assert_eq!(wide.step, 2.0);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(format_linear(0.30000000000000004, 0.1), "0.3");
        assert_eq!(format_linear(20.0, 5.0), "20");
        assert_eq!(format_linear(0.0, 0.2), "0.0");
        assert_eq!(format_linear(0.0, 2e-5), "0");
        assert_eq!(format_linear(2.5e8, 5e7), "2.5e8");
        assert_eq!(format_linear(3e-5, 1e-5), "3e-5");
        assert_eq!(format_log(1e-3), "0.001");
        assert_eq!(format_log(1e-5), "1e-5");
        assert_eq!(format_log(1000.0), "1000");
        assert_eq!(format_log(1e7), "1e7");
    }
}
