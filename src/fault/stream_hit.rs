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
//!   bit, the share of negative values; per stream when `up_by_stream`
//!   gives it) and lowers it otherwise;
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
    /// The same per stream (`streams x up.len()`, stream-major), where the
    /// held values differ by stream: on WS a stream is an output channel
    /// and holds that filter's weights, and a filter of mostly negative
    /// weights (mostly dead outputs after ReLU) mostly flips its high bits
    /// downwards. Empty: `up` for every stream.
    pub up_by_stream: Vec<f64>,
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
    /// Per reduction row (as `gains`), the probability that a non-zero
    /// operand of that row is negative: the rows of a linear layer's
    /// output are mostly of one sign, so a run's errors are too. Empty:
    /// `operand_negative` for every row.
    pub negatives: Vec<f64>,
    /// Per stream position `t`, the mean moving-operand magnitude there
    /// relative to the layer's (a border pixel of a Fashion-MNIST image is
    /// background in most images): scales the draws like `gains`. Empty:
    /// every position alike.
    pub profile: Vec<f64>,
}

/// Trials per stream of the Bernoulli process that approximates the
/// Poisson number of upsets (`events / TRIALS` per trial).
const TRIALS: u64 = 1 << 20;

/// Every entry of `v` a finite gain `>= 0`.
fn check_gains(key: &'static str, v: &[f64]) -> Result<(), (&'static str, String)> {
    match v
        .iter()
        .enumerate()
        .find(|(_, g)| !(g.is_finite() && **g >= 0.0))
    {
        Some((i, g)) => Err((
            key,
            format!("entry {i} must be a finite gain >= 0, found {g}"),
        )),
        None => Ok(()),
    }
}

/// An optional list (`v` empty) or one entry per `what` (`want` of them).
fn check_optional_len(
    key: &'static str,
    v: &[f64],
    want: usize,
    what: &str,
) -> Result<(), (&'static str, String)> {
    if v.is_empty() || v.len() == want {
        Ok(())
    } else {
        Err((
            key,
            format!("needs one entry per {what} ({want}), found {}", v.len()),
        ))
    }
}

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
        if !self.up_by_stream.len().is_multiple_of(self.up.len()) {
            return Err((
                "stream.up_by_stream",
                format!(
                    "needs {} entries (one per register bit) per stream, found {} in all",
                    self.up.len(),
                    self.up_by_stream.len()
                ),
            ));
        }
        for &u in &self.up_by_stream {
            check_prob("stream.up_by_stream", u)?;
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
        check_gains("stream.gains", &self.gains)?;
        check_optional_len(
            "stream.negatives",
            &self.negatives,
            self.gains.len(),
            "row of `gains`",
        )?;
        for &n in &self.negatives {
            check_prob("stream.negatives", n)?;
        }
        check_optional_len(
            "stream.profile",
            &self.profile,
            self.length,
            "stream position",
        )?;
        check_gains("stream.profile", &self.profile)?;
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
        // split into `groups`), as a range of `gains` / `negatives`.
        let g_count = groups.max(1);
        let rows_of = |s: usize| -> std::ops::Range<usize> {
            if self.gains.is_empty() || !self.gains.len().is_multiple_of(g_count) {
                return 0..self.gains.len();
            }
            let k = self.gains.len() / g_count;
            let g = match self.axis {
                StreamAxis::Pixels => s / (streams / g_count).max(1),
                StreamAxis::Channels => s / pixels.max(1),
            };
            let g = g.min(g_count - 1);
            g * k..(g + 1) * k
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
        let by_stream = self.up_by_stream.len() == streams * self.up.len();
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
            let up = if by_stream {
                self.up_by_stream[s * self.up.len() + j]
            } else {
                self.up[j]
            };
            let dir: i64 = if rng.random::<f64>() < up { 1 } else { -1 };
            let rows = rows_of(s);
            let (gain, negative) = if rows.is_empty() {
                (1.0, self.operand_negative)
            } else {
                let r = rng.random_range(rows);
                let neg = self.negatives.get(r).copied();
                (self.gains[r], neg.unwrap_or(self.operand_negative))
            };
            let bit = 2f64.powi(j as i32 - self.shift);
            for t in start..len {
                // The row's and the position's gains go to how often the
                // operand is non-zero first (rows and pixels differ mostly
                // in how much ReLU or the background left alive), to the
                // magnitudes only beyond always-live.
                let g = gain * self.profile.get(t).copied().unwrap_or(1.0);
                let live = (g * nonzero).min(1.0);
                if live <= 0.0 || (live < 1.0 && rng.random::<f64>() >= live) {
                    continue;
                }
                let scale = g * nonzero / live * bit;
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
                let neg = negative > 0.0 && rng.random::<f64>() < negative;
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
            up_by_stream: Vec::new(),
            operand: vec![0.0, 1.0],
            operand_negative: 0.0,
            gains: Vec::new(),
            negatives: Vec::new(),
            profile: Vec::new(),
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
    fn rows_keep_their_sign_and_the_profile_places_the_errors() {
        // Two rows, one all-positive and one all-negative operand; only the
        // last two positions carry operands.
        let mut m = model(StreamAxis::Pixels, 6, 3.0);
        m.from_start = 1.0;
        m.operand_negative = 0.5;
        m.gains = vec![1.0, 1.0];
        m.negatives = vec![0.0, 1.0];
        m.profile = vec![0.0, 0.0, 0.0, 0.0, 3.0, 3.0];
        assert!(m.validate().is_ok());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let (mut pos, mut neg) = (0, 0);
        for _ in 0..200 {
            let mut codes = vec![0i32; 6 * 4];
            m.apply(16, 1, &mut codes, &mut rng);
            for run in codes.chunks(6) {
                assert!(run[..4].iter().all(|&c| c == 0), "{run:?}");
                // One event per stream on average: most streams hold one
                // run, whose errors share a sign.
                if run.iter().all(|&c| c >= 0) && run.iter().any(|&c| c > 0) {
                    pos += 1;
                }
                if run.iter().all(|&c| c <= 0) && run.iter().any(|&c| c < 0) {
                    neg += 1;
                }
            }
        }
        assert!(
            pos > 150 && neg > 150,
            "{pos} positive, {neg} negative runs"
        );
    }

    #[test]
    fn each_stream_flips_its_own_held_bits() {
        let mut m = model(StreamAxis::Pixels, 5, 2.0);
        m.up = vec![0.5];
        m.up_by_stream = vec![1.0, 0.0, 1.0];
        assert!(m.validate().is_ok());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
        let mut codes = vec![0i32; 5 * 3];
        for _ in 0..20 {
            m.apply(16, 1, &mut codes, &mut rng);
        }
        assert!(codes[..5].iter().all(|&c| c >= 0) && codes[..5].iter().any(|&c| c > 0));
        assert!(codes[5..10].iter().all(|&c| c <= 0) && codes[5..10].iter().any(|&c| c < 0));
        assert!(codes[10..].iter().all(|&c| c >= 0));
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
        let mut bad = ok.clone();
        bad.up = vec![];
        assert_eq!(bad.validate().unwrap_err().0, "stream.up");
        let mut bad = ok.clone();
        bad.gains = vec![1.0, 1.0];
        bad.negatives = vec![0.5];
        assert_eq!(bad.validate().unwrap_err().0, "stream.negatives");
        bad.negatives = vec![0.5, 1.5];
        assert_eq!(bad.validate().unwrap_err().0, "stream.negatives");
        let mut bad = ok.clone();
        bad.profile = vec![1.0; 3];
        assert_eq!(bad.validate().unwrap_err().0, "stream.profile");
        bad.profile = vec![1.0, 1.0, f64::NAN, 1.0];
        assert_eq!(bad.validate().unwrap_err().0, "stream.profile");
        let mut bad = ok;
        bad.up = vec![0.5, 0.5];
        bad.up_by_stream = vec![0.5, 0.5, 0.5];
        assert_eq!(bad.validate().unwrap_err().0, "stream.up_by_stream");
    }
}
