//! Runs of same-sign errors: the feature faults of an upset in a
//! *stationary* operand register (a weight held by a weight-stationary PE,
//! an activation held by an input-stationary one), part of the derived
//! `output_hit` model ([`super::output_hit::OutputHit::stream`]).
//!
//! Why a separate form: a stationary register feeds one term of every
//! output of its stream (the pixels of one output channel in WS, the
//! channels of one pixel in IS). A flipped bit stays wrong until the fold
//! ends, so one upset adds `delta * x_t` to every output `t` from the cycle
//! it struck to the end of the stream, `delta = +-2^j` fixed by the held
//! value's bit `j` and `x_t` the moving operand of output `t`. The errors
//! share a sign wherever the moving operand does (post-ReLU activations:
//! everywhere) and pile up in pooling and in the next layer's sums, where
//! independent random-sign hits of the same rate would cancel.
//!
//! # The model
//!
//! A layer's outputs are `streams` runs of `length` outputs: along the
//! pixels of each output channel (`axis = pixels`, codes `c*length + t`), or
//! along the channels of each group at each pixel (`axis = channels`, codes
//! `(g*length + t)*pixels + p`). Per image and stream:
//!
//! - the number of upsets is Poisson with mean `events`;
//! - an upset starts its run at output 0 with probability `from_start` (a
//!   flip before the stream or in its fill cycles), else at a uniform
//!   position `1..length`, and lasts to the end of the stream;
//! - it flips register bit `j`, uniform over the `up.len()` bits of the
//!   register, which raises the held value (`+2^j`) with probability
//!   `up[j]` (the share of held values with bit `j` clear; for the sign
//!   bit, the share of negative values) and lowers it otherwise;
//! - each output `t` of the run gets `dir * sign(x) * r(gain 2^(j-shift) |x|)`
//!   steps, `x` drawn for every output from the moving operand's
//!   distribution (`operand[l]`: probability of bit length `l`, `l = 0`
//!   being a zero that masks the term; magnitude uniform within the
//!   length; negative with probability `operand_negative`), `r` rounding
//!   stochastically (the output moves by `floor(d)` or `ceil(d)` steps with
//!   the probabilities that keep the mean `d`, as requantization of an
//!   accumulator whose low bits are uniform does), then saturates.

use rand::Rng;

use super::output_hit::{check_distribution, check_prob, sample_index};
use super::skip::Skipper;

/// The direction of a stream through a layer's output codes (CHW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAxis {
    /// One output channel's pixels in raster order (weight-stationary).
    Pixels,
    /// One pixel's output channels of a group (input-stationary).
    Channels,
}

impl StreamAxis {
    pub fn name(self) -> &'static str {
        match self {
            StreamAxis::Pixels => "pixels",
            StreamAxis::Channels => "channels",
        }
    }
    pub fn parse(s: &str) -> Option<StreamAxis> {
        match s {
            "pixels" => Some(StreamAxis::Pixels),
            "channels" => Some(StreamAxis::Channels),
            _ => None,
        }
    }
}

/// Stationary-register upsets as runs (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHits {
    pub axis: StreamAxis,
    /// Outputs in one stream.
    pub length: usize,
    /// Expected upsets per stream per image.
    pub events: f64,
    /// Probability that a run starts at the stream's first output.
    pub from_start: f64,
    /// Requantization shift of the accumulator into the output code.
    pub shift: i32,
    /// Per register bit, the probability that its flip raises the held value.
    pub up: Vec<f64>,
    /// Distribution of the moving operand's bit length (index 0: zero).
    pub operand: Vec<f64>,
    /// Probability that a non-zero moving operand is negative.
    pub operand_negative: f64,
    /// Per reduction row `(g, k)` (`g*K + k`, `K = gains.len() / groups`),
    /// the mean moving-operand magnitude of that row relative to the
    /// layer's: an upset strikes one held operand, which meets one row, so
    /// each run scales its operand draws by the gain of a row of its
    /// stream's group drawn uniformly. Empty: every row alike.
    pub gains: Vec<f64>,
}

/// Trials per stream of the Bernoulli process that approximates the
/// Poisson number of upsets (`events / TRIALS` per trial).
const TRIALS: u64 = 1 << 20;

impl StreamHits {
    /// Check the rules; returns the offending key (inside `stream`) and the
    /// rule.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.length == 0 {
            return Err(("stream.length", "must be at least 1".into()));
        }
        if !(self.events.is_finite() && self.events >= 0.0 && self.events <= TRIALS as f64) {
            return Err((
                "stream.events",
                format!(
                    "must be a mean number of upsets in [0, {TRIALS}], found {}",
                    self.events
                ),
            ));
        }
        check_prob("stream.from_start", self.from_start)?;
        check_prob("stream.operand_negative", self.operand_negative)?;
        if !(-64..=64).contains(&self.shift) {
            return Err((
                "stream.shift",
                format!("must be in -64..=64, found {}", self.shift),
            ));
        }
        if self.up.is_empty() || self.up.len() > 32 {
            return Err((
                "stream.up",
                format!(
                    "needs one entry per register bit (1..=32), found {}",
                    self.up.len()
                ),
            ));
        }
        for &u in &self.up {
            check_prob("stream.up", u)?;
        }
        if self.operand.len() > 32 {
            return Err((
                "stream.operand",
                format!(
                    "needs one entry per bit length 0..=31 at most, found {}",
                    self.operand.len()
                ),
            ));
        }
        if let Some((i, g)) = self
            .gains
            .iter()
            .enumerate()
            .find(|(_, g)| !(g.is_finite() && **g >= 0.0))
        {
            return Err((
                "stream.gains",
                format!("entry {i} must be a finite gain >= 0, found {g}"),
            ));
        }
        check_distribution("stream.operand", &self.operand)
    }

    /// The same model with `k` times the upsets (a rate sweep, a fitted
    /// correction).
    pub fn scaled(&self, k: f64) -> StreamHits {
        StreamHits {
            events: (self.events * k).min(TRIALS as f64),
            ..self.clone()
        }
    }

    /// Inject into one image's output codes (`bits`-bit codes, CHW, `groups`
    /// convolution groups).
    pub fn apply<R: Rng + ?Sized>(&self, bits: u8, groups: usize, codes: &mut [i32], rng: &mut R) {
        let len = self.length;
        if !super::twos::supported_width(bits)
            || len == 0
            || codes.is_empty()
            || !codes.len().is_multiple_of(len)
        {
            return;
        }
        let streams = codes.len() / len;
        // Channels: `groups * len` channels of `pixels` codes each.
        let pixels = match self.axis {
            StreamAxis::Pixels => 0,
            StreamAxis::Channels => {
                let g = groups.max(1);
                if !streams.is_multiple_of(g) {
                    return;
                }
                streams / g
            }
        };
        // The rows of stream `s`'s group (all rows when the gains do not
        // split into `groups`).
        let g_count = groups.max(1);
        let rows_of = |s: usize| -> &[f64] {
            if self.gains.is_empty() || !self.gains.len().is_multiple_of(g_count) {
                return &self.gains;
            }
            let k = self.gains.len() / g_count;
            let g = match self.axis {
                StreamAxis::Pixels => s / (streams / g_count).max(1),
                StreamAxis::Channels => s / pixels.max(1),
            };
            &self.gains[(g.min(g_count - 1)) * k..][..k]
        };
        let index = |s: usize, t: usize| match self.axis {
            StreamAxis::Pixels => s * len + t,
            StreamAxis::Channels => {
                let (g, p) = (s / pixels, s % pixels);
                (g * len + t) * pixels + p
            }
        };
        let lo = -(1i64 << (bits - 1));
        let hi = (1i64 << (bits - 1)) - 1;
        let nonzero = 1.0 - self.operand.first().copied().unwrap_or(0.0);
        if nonzero <= 0.0 {
            return;
        }
        let skip = Skipper::new(self.events / TRIALS as f64);
        let total = streams as u64 * TRIALS;
        let mut at = 0u64;
        loop {
            let gap = skip.gap(rng);
            if gap >= total - at {
                break;
            }
            at += gap;
            let s = (at / TRIALS) as usize;
            at += 1;
            let start = if len == 1 || rng.random::<f64>() < self.from_start {
                0
            } else {
                rng.random_range(1..len)
            };
            let j = rng.random_range(0..self.up.len());
            let dir: i64 = if rng.random::<f64>() < self.up[j] {
                1
            } else {
                -1
            };
            let rows = rows_of(s);
            let gain = if rows.is_empty() {
                1.0
            } else {
                rows[rng.random_range(0..rows.len())]
            };
            // The row's gain goes to how often its operand is non-zero
            // first (rows differ mostly in how much ReLU left alive), to the
            // magnitudes only beyond always-live.
            let live = (gain * nonzero).min(1.0);
            if live <= 0.0 {
                continue;
            }
            let scale = gain * nonzero / live * 2f64.powi(j as i32 - self.shift);
            for t in start..len {
                if live < 1.0 && rng.random::<f64>() >= live {
                    continue;
                }
                let l = 1 + sample_index(&self.operand[1..], rng);
                let mag = if l == 1 {
                    1u64
                } else {
                    rng.random_range(1u64 << (l - 1)..1u64 << l)
                };
                let d = scale * mag as f64;
                let mut steps = d.floor();
                if rng.random::<f64>() < d - steps {
                    steps += 1.0;
                }
                if steps == 0.0 {
                    continue;
                }
                let neg =
                    self.operand_negative > 0.0 && rng.random::<f64>() < self.operand_negative;
                let sign = if neg { -dir } else { dir };
                let i = index(s, t);
                // Anything beyond the code range saturates anyway.
                let delta = steps.min(hi as f64 - lo as f64) as i64 * sign;
                codes[i] = (codes[i] as i64 + delta).clamp(lo, hi) as i32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn model(axis: StreamAxis, length: usize, events: f64) -> StreamHits {
        StreamHits {
            axis,
            length,
            events,
            from_start: 0.25,
            shift: 0,
            up: vec![1.0],
            operand: vec![0.0, 1.0],
            operand_negative: 0.0,
            gains: Vec::new(),
        }
    }

    /// Bit 0 with a unit operand adds exactly +1 to every output of a run:
    /// the total error counts run lengths, whose mean is known.
    #[test]
    fn runs_have_the_stated_rate_start_and_length() {
        let (len, streams, events) = (40usize, 50usize, 0.3);
        let m = model(StreamAxis::Pixels, len, events);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let images = 400;
        let mut total = 0i64;
        for _ in 0..images {
            let mut codes = vec![0i32; len * streams];
            m.apply(16, 1, &mut codes, &mut rng);
            // Each stream's codes never decrease along t (runs go to the end).
            for s in 0..streams {
                let run = &codes[s * len..(s + 1) * len];
                assert!(run.windows(2).all(|w| w[0] <= w[1]), "{run:?}");
            }
            total += codes.iter().map(|&c| i64::from(c)).sum::<i64>();
        }
        // Mean run length: from_start * len + (1-from_start) * mean(len - U{1..len-1}).
        let mean_len = 0.25 * len as f64 + 0.75 * (len as f64 / 2.0);
        let want = images as f64 * streams as f64 * events * mean_len;
        let got = total as f64;
        assert!((got - want).abs() < 0.05 * want, "{got} vs {want}");
    }

    #[test]
    fn channel_streams_run_across_channels_at_one_pixel() {
        // 2 groups x 3 channels x 5 pixels, runs along channels.
        let mut m = model(StreamAxis::Channels, 3, 5.0);
        m.from_start = 1.0;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mut codes = vec![0i32; 2 * 3 * 5];
        m.apply(16, 2, &mut codes, &mut rng);
        // From the start: every channel of a (group, pixel) got the same count.
        for g in 0..2 {
            for p in 0..5 {
                let v: Vec<i32> = (0..3).map(|t| codes[(g * 3 + t) * 5 + p]).collect();
                assert!(v.iter().all(|&x| x == v[0]), "{v:?}");
            }
        }
        assert!(codes.iter().any(|&c| c > 0));
    }

    #[test]
    fn direction_follows_up_and_the_operand_sign() {
        let mut m = model(StreamAxis::Pixels, 8, 2.0);
        m.up = vec![0.0];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut codes = vec![0i32; 8 * 20];
        m.apply(16, 1, &mut codes, &mut rng);
        assert!(codes.iter().all(|&c| c <= 0) && codes.iter().any(|&c| c < 0));
        m.operand_negative = 1.0;
        let mut codes = vec![0i32; 8 * 20];
        m.apply(16, 1, &mut codes, &mut rng);
        assert!(codes.iter().all(|&c| c >= 0) && codes.iter().any(|&c| c > 0));
    }

    #[test]
    fn sub_step_errors_round_stochastically_and_saturate() {
        // 2^(0-2) * 1 = 0.25 steps: a quarter of the run's outputs move.
        let mut m = model(StreamAxis::Pixels, 1000, 1.0);
        m.shift = 2;
        m.from_start = 1.0;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let (mut moved, mut runs) = (0usize, 0usize);
        for _ in 0..200 {
            let mut codes = vec![0i32; 1000];
            m.apply(8, 1, &mut codes, &mut rng);
            let n = codes.iter().filter(|&&c| c != 0).count();
            if n > 0 {
                runs += 1;
            }
            moved += n;
        }
        let per_event = moved as f64 / 200.0; // events = 1 per stream
        assert!(
            (per_event - 250.0).abs() < 25.0,
            "{per_event} ({runs} runs)"
        );
        let mut big = model(StreamAxis::Pixels, 4, 3.0);
        big.up = vec![1.0; 20];
        big.operand = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let mut codes = vec![100i32; 4 * 30];
        big.apply(8, 1, &mut codes, &mut rng);
        assert!(codes.iter().all(|&c| (100..=127).contains(&c)));
        assert!(codes.contains(&127));
    }

    #[test]
    fn rules_name_the_key() {
        let ok = model(StreamAxis::Pixels, 4, 0.1);
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.operand = vec![0.5];
        assert_eq!(bad.validate().unwrap_err().0, "stream.operand");
        let mut bad = ok.clone();
        bad.events = -1.0;
        assert_eq!(bad.validate().unwrap_err().0, "stream.events");
        let mut bad = ok;
        bad.up = vec![];
        assert_eq!(bad.validate().unwrap_err().0, "stream.up");
    }
}
