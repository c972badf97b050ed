//! Stuck bits of the MAC units of a systolic grid: what stuck-at bits in
//! the PE registers (`pe.act_reg`, `pe.weight_reg`, `pe.mult_out`,
//! `pe.psum_reg`) do to a layer's outputs, as an algorithmic model the
//! engines apply.
//!
//! # The model
//!
//! Each group's GEMM of a conv/linear layer (`E` output pixels by `M`
//! filters, reduction `K` in the engines' order `(c, kh, kw)`, padded taps
//! code 0; see [`crate::hwsim::layer`]) is computed on a `rows x cols` grid
//! of MAC units. A unit has four registers — the activation operand
//! (`act_bits` wide), the weight operand (`weight_bits`), the product
//! (`act_bits + weight_bits`) and the accumulator (`psum_bits`) — and every
//! bit of every register is stuck at 0 with `p0`, at 1 with `p1`, once per
//! chip (per [`super::LayerSite::draw`]), the same units in every layer and
//! image. Where a term is computed and which registers its operands pass
//! is the grid's [`MacGrid`]:
//!
//! - **output-stationary**: output `(e, m)` on unit `(i, j) = (e mod rows,
//!   m mod cols)`, which accumulates its `K` products in reduction order;
//!   its activations pass the activation registers of units `(i, 0..=j)`,
//!   its weights the weight registers of units `(0..=i, j)`. Per output,
//!
//!   ```text
//!   acc = A(0);  for k in 0..K:  acc = rule(A(acc) + P(X(a_k) * W(w_k)))
//!   out = requantize(limit(A(acc) + bias))
//!   ```
//!
//! - **weight- / input-stationary**: term `k` of output `(e, m)` on unit
//!   `(r, c) = (k mod rows, m mod cols)` (WS) or `(k mod rows, e mod cols)`
//!   (IS); the streamed operand (WS activations, IS weights) passes the
//!   registers of units `(r, 0..=c)`, the stationary one sits in unit
//!   `(r, c)`'s register, and the partial sum passes every unit row of
//!   column `c` in every row fold of `ceil(K / rows)`, rows past `K` in the
//!   last fold adding the product of their (forced) zero operands:
//!
//!   ```text
//!   acc = 0;  for k in 0..rows*ceil(K/rows):  acc = rule(A_r(acc) + P_r(X_r(a_k) * W_r(w_k)))
//!   out = requantize(limit(acc + bias))          (r = k mod rows; P_r only for k < K)
//!   ```
//!
//! - **bit-serial** (Stripes: activations serial, `b` bits per cycle, at
//!   the datapath's activation precision `Pa`): output `(e, m)` on the SIP
//!   of window `e mod rows` and filter row `m mod filter_rows`, whose
//!   accumulator adds one lane set of one tap per step, bit group by bit
//!   group; lane `l` of window `w` has its own activation register, which
//!   holds input channel `c` (`c mod cols = l`) of every tap:
//!
//!   ```text
//!   acc = 0;  for tap, for lane set, for i in 0..ceil(Pa/b):
//!       acc = rule(A(acc) + (sum over the set's lanes of g_i(X_l(a)) * w) << (i*b))
//!   out = requantize(limit(A(acc) + bias))
//!   ```
//!
//!   (`g_i` bit group `i`, the sign bit counting negatively). With serial
//!   weights (Loom) each bit group is added once per weight bit, weight
//!   bit outer; with run-time precision a step reads its codes at the
//!   precision its fault-free activations need, so a stuck bit above it
//!   is never shifted out and the error depends on the data (exact rule
//!   at `StuckMacs::apply_bitserial`). The weight registers are the
//!   weight model's; a SIP has no product register.
//!
//! `X`, `W`, `P`, `A` are the composed forcing of the unit's activation
//! path, weight path, product and accumulator bits (the last register on a
//! path wins a bit two of them force), `rule` the datapath's accumulator
//! rule (wrap or saturate at `psum_bits`). A stuck accumulator bit forces
//! the running sum before every add, so its error grows with the number of
//! adds that carry into it, not just one `2^b`.
//!
//! # Relation to the hardware
//!
//! These are the systolic arrays' own rules ([`crate::hwsim`]'s OS and
//! stationary fold engines, `crate::hwsim::exact`'s stuck-bit rules) and
//! the bit-serial SIPs' ([`crate::hwsim::bitserial`]).
//! Derived from a spec with the array's dimensions the model reproduces
//! hardware injection bit for bit, except where an OS array's skew bubbles
//! meet: an output whose activation *and* weight paths both force a bit to
//! 1 multiplies two corrupted zeros in the cycles before and after its live
//! terms, which the model leaves out (`tests/derive_stuck_macs.rs`).

use rand::Rng;

use super::output_hit::check_prob;
use super::skip::Skipper;
use crate::fixed::{requantize, Datapath};
use crate::hwsim::bitserial::{bit_group, signed_bits};
use crate::quant::int_ops::{im2col_at, im2col_row};
use crate::quant::MacLayer;

/// The four registers of a MAC unit, in sampling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacRegister {
    /// The activation operand (passed along the unit row).
    Act,
    /// The weight operand (passed down the unit column).
    Weight,
    /// The multiplier's output.
    Product,
    /// The accumulator (partial sum).
    Accumulator,
}

impl MacRegister {
    pub const ALL: [MacRegister; 4] = [
        MacRegister::Act,
        MacRegister::Weight,
        MacRegister::Product,
        MacRegister::Accumulator,
    ];

    /// The key in fault-model files.
    pub fn key(self) -> &'static str {
        match self {
            MacRegister::Act => "act",
            MacRegister::Weight => "weight",
            MacRegister::Product => "product",
            MacRegister::Accumulator => "accumulator",
        }
    }

    /// Register width on datapath `dp`.
    pub fn width(self, dp: &Datapath) -> u32 {
        match self {
            MacRegister::Act => u32::from(dp.act_bits),
            MacRegister::Weight => u32::from(dp.weight_bits),
            MacRegister::Product => u32::from(dp.act_bits) + u32::from(dp.weight_bits),
            MacRegister::Accumulator => u32::from(dp.psum_bits),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Stuck-bit densities of one register kind: every bit stuck at 0 with
/// `p0`, at 1 with `p1`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StuckDensity {
    pub p0: f64,
    pub p1: f64,
}

impl StuckDensity {
    fn total(&self) -> f64 {
        self.p0 + self.p1
    }
}

/// How a grid maps a GEMM onto its MAC units (module doc): the three
/// systolic dataflows and the serial inner-product units of a bit-serial
/// design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacGrid {
    /// Output `(e, m)` on unit `(e mod rows, m mod cols)`; activations
    /// pass along the row, weights down the column.
    OutputStationary,
    /// Weight `(k, m)` on unit `(k mod rows, m mod cols)`; activations
    /// pass along the row, partial sums down the column.
    WeightStationary,
    /// Activation `(e, k)` on unit `(k mod rows, e mod cols)`; weights
    /// pass along the row, partial sums down the column.
    InputStationary,
    /// Serial inner-product units (Stripes, Loom; `bits_per_cycle` bits
    /// per cycle, layers at the datapath's widths): `rows` windows by
    /// `cols` lanes of activation registers, `rows` windows by
    /// `filter_rows` accumulators (module doc). No weight (the weight
    /// model's) or product register.
    BitSerial {
        filter_rows: usize,
        bits_per_cycle: u8,
        /// Weights serial too (Loom): a step runs its activation bit
        /// groups once per weight bit.
        serial_weights: bool,
        /// Run-time precision detection: a step runs only as many bit
        /// groups as its widest (fault-free) activation needs.
        run_time_precision: bool,
    },
}

impl MacGrid {
    /// The key in fault-model files.
    pub fn key(self) -> &'static str {
        match self {
            MacGrid::OutputStationary => "os",
            MacGrid::WeightStationary => "ws",
            MacGrid::InputStationary => "is",
            MacGrid::BitSerial { .. } => "bit-serial",
        }
    }

    /// The systolic grid of key `key` (a bit-serial grid needs its shape
    /// besides the key).
    pub fn from_key(key: &str) -> Option<MacGrid> {
        [
            MacGrid::OutputStationary,
            MacGrid::WeightStationary,
            MacGrid::InputStationary,
        ]
        .into_iter()
        .find(|g| g.key() == key)
    }
}

/// Stuck bits of the MAC units of a grid (module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckMacs {
    pub grid: MacGrid,
    pub rows: usize,
    pub cols: usize,
    /// Densities per register kind, in [`MacRegister::ALL`] order.
    pub density: [StuckDensity; 4],
}

/// One stuck bit of one unit's register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckMacBit {
    pub register: MacRegister,
    pub row: usize,
    pub col: usize,
    pub bit: u32,
    pub one: bool,
}

/// Forcing of stuck bits on a `width`-bit register:
/// `v -> sign_extend((v & and) | or)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitForce {
    and: i64,
    or: i64,
    shift: u32,
}

impl BitForce {
    /// No bit forced, `width` bits (1..=32).
    pub fn identity(width: u32) -> BitForce {
        BitForce {
            and: -1,
            or: 0,
            shift: 64 - width,
        }
    }

    /// True when nothing is forced.
    pub fn is_identity(&self) -> bool {
        self.and == -1 && self.or == 0
    }

    /// Add a stuck bit that acts after the ones already here.
    pub fn then_stuck(mut self, bit: u32, one: bool) -> BitForce {
        if one {
            self.or |= 1 << bit;
        } else {
            self.and &= !(1 << bit);
            self.or &= !(1 << bit);
        }
        self
    }

    /// `self`, then `next` (same width).
    pub fn then(self, next: BitForce) -> BitForce {
        BitForce {
            and: self.and & next.and,
            or: (self.or & next.and) | next.or,
            shift: self.shift,
        }
    }

    #[inline(always)]
    pub fn apply(&self, v: i64) -> i64 {
        (((v & self.and) | self.or) << self.shift) >> self.shift
    }
}

/// The composed forcing each unit applies to its outputs' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UnitForce {
    act: BitForce,
    weight: BitForce,
    product: BitForce,
    acc: BitForce,
}

impl UnitForce {
    fn is_identity(&self) -> bool {
        self.act.is_identity()
            && self.weight.is_identity()
            && self.product.is_identity()
            && self.acc.is_identity()
    }
}

impl StuckMacs {
    /// The `(rows, cols)` of the units holding `register`: the grid's for
    /// every register of a systolic grid; on a bit-serial one windows by
    /// lanes (activations), windows by filter rows (accumulators), none
    /// for the other two.
    pub fn units(&self, register: MacRegister) -> (usize, usize) {
        match (self.grid, register) {
            (MacGrid::BitSerial { filter_rows, .. }, MacRegister::Accumulator) => {
                (self.rows, filter_rows)
            }
            (MacGrid::BitSerial { .. }, MacRegister::Weight | MacRegister::Product) => (0, 0),
            _ => (self.rows, self.cols),
        }
    }

    /// `16x16 OS array`, `bit-serial design's 16 windows x 16 lanes, 256
    /// filter rows (1 bit per cycle)`: the grid for reports.
    pub fn grid_text(&self) -> String {
        match self.grid {
            MacGrid::BitSerial {
                filter_rows,
                bits_per_cycle,
                serial_weights,
                run_time_precision,
            } => format!(
                "bit-serial design's {} windows x {} lanes, {filter_rows} filter rows ({bits_per_cycle} bit{} per cycle{}{})",
                self.rows,
                self.cols,
                if bits_per_cycle == 1 { "" } else { "s" },
                if serial_weights { ", serial weights" } else { "" },
                if run_time_precision {
                    ", run-time precision"
                } else {
                    ""
                }
            ),
            g => format!("{}x{} {} array", self.rows, self.cols, g.key().to_uppercase()),
        }
    }

    /// Check the parameter rules; returns the offending key and the rule.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (k, v) in [("rows", self.rows), ("cols", self.cols)] {
            if v == 0 {
                return Err((k.into(), "must be at least 1".into()));
            }
        }
        if let MacGrid::BitSerial {
            filter_rows,
            bits_per_cycle,
            ..
        } = self.grid
        {
            if filter_rows == 0 {
                return Err(("filter_rows".into(), "must be at least 1".into()));
            }
            if !(1..=16).contains(&bits_per_cycle) {
                return Err(("bits_per_cycle".into(), "must be 1 ..= 16".into()));
            }
            for r in [MacRegister::Weight, MacRegister::Product] {
                if self.of(r).total() > 0.0 {
                    return Err((
                        format!("{}.p0", r.key()),
                        "must be 0 on a bit-serial grid (a SIP's weight register is the weight \
                         model's; a SIP has no product register)"
                            .into(),
                    ));
                }
            }
        }
        for r in MacRegister::ALL {
            let d = self.density[r.index()];
            let key = |p: &str| format!("{}.{p}", r.key());
            check_prob("p0", d.p0).map_err(|(_, m)| (key("p0"), m))?;
            check_prob("p1", d.p1).map_err(|(_, m)| (key("p1"), m))?;
            if d.total() > 1.0 {
                return Err((key("p1"), "p0 + p1 must be at most 1".into()));
            }
        }
        Ok(())
    }

    /// Densities of `register`.
    pub fn of(&self, register: MacRegister) -> StuckDensity {
        self.density[register.index()]
    }

    /// The register kinds with stuck bits and their densities, for
    /// reports: `weight 5e-5 / 5e-5, accumulator 0e0 / 2e-5` (p0 / p1).
    pub fn densities_text(&self) -> String {
        MacRegister::ALL
            .iter()
            .filter(|&&r| self.of(r).total() > 0.0)
            .map(|&r| format!("{} {:e} / {:e}", r.key(), self.of(r).p0, self.of(r).p1))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True when no register kind has stuck bits.
    pub fn is_empty(&self) -> bool {
        self.density.iter().all(|d| d.total() <= 0.0)
    }

    /// The same model with every density multiplied by `k` (and clamped
    /// so that `p0 + p1 <= 1`).
    pub fn scaled(&self, k: f64) -> StuckMacs {
        let mut out = *self;
        for d in &mut out.density {
            let (p0, p1) = crate::fault::stuck_at::scale_pair(d.p0, d.p1, k);
            *d = StuckDensity { p0, p1 };
        }
        out
    }

    /// The stuck bits of draw `draw` on datapath `dp`, register kind by
    /// kind, unit-major (`(row * cols + col) * width + bit`). Deterministic
    /// in `draw`; the same for every layer.
    pub fn bits(&self, draw: u64, dp: &Datapath) -> Vec<StuckMacBit> {
        let mut rng = super::stream(draw, 3, u64::MAX - 9, 0);
        let mut out = Vec::new();
        for r in MacRegister::ALL {
            let d = self.of(r);
            let q = d.total();
            let width = r.width(dp) as usize;
            let (rows, cols) = self.units(r);
            if q <= 0.0 || width == 0 || rows * cols == 0 {
                continue;
            }
            let zero_given_hit = d.p0 / q;
            Skipper::new(q).for_each_hit(rows * cols * width, &mut rng, |k, rng| {
                let one = rng.random::<f64>() >= zero_given_hit;
                let unit = k / width;
                out.push(StuckMacBit {
                    register: r,
                    row: unit / cols,
                    col: unit % cols,
                    bit: (k % width) as u32,
                    one,
                });
            });
        }
        out
    }

    /// The composed forcing of every unit (row-major) for `bits`, or
    /// `None` when no unit forces anything.
    fn unit_forces(&self, bits: &[StuckMacBit], dp: &Datapath) -> Option<Vec<UnitForce>> {
        if bits.is_empty() {
            return None;
        }
        let (rows, cols) = (self.rows, self.cols);
        let id = |r: MacRegister| BitForce::identity(r.width(dp));
        let mut own = vec![
            UnitForce {
                act: id(MacRegister::Act),
                weight: id(MacRegister::Weight),
                product: id(MacRegister::Product),
                acc: id(MacRegister::Accumulator),
            };
            rows * cols
        ];
        for b in bits {
            let u = &mut own[b.row * cols + b.col];
            let f = match b.register {
                MacRegister::Act => &mut u.act,
                MacRegister::Weight => &mut u.weight,
                MacRegister::Product => &mut u.product,
                MacRegister::Accumulator => &mut u.acc,
            };
            *f = f.then_stuck(b.bit, b.one);
        }
        // moving operands compose along their paths: left to right (OS
        // and WS activations, IS weights), top to bottom (OS weights)
        let mut out = own.clone();
        for i in 0..rows {
            for j in 1..cols {
                let (prev, this) = (out[i * cols + j - 1], &mut out[i * cols + j]);
                match self.grid {
                    MacGrid::InputStationary => this.weight = prev.weight.then(this.weight),
                    _ => this.act = prev.act.then(this.act),
                }
            }
        }
        if self.grid == MacGrid::OutputStationary {
            for j in 0..cols {
                for i in 1..rows {
                    out[i * cols + j].weight = out[(i - 1) * cols + j]
                        .weight
                        .then(own[i * cols + j].weight);
                }
            }
        }
        Some(out)
    }

    /// Recompute the outputs of `layer` that the stuck bits of draw `draw`
    /// reach, for one image: `input` the codes the layer reads (CHW),
    /// `codes` its requantized pre-activation outputs (CHW), overwritten
    /// where the units' stuck bits change them. `layer.weights` are the
    /// codes the array receives (after any filter-buffer faults).
    ///
    /// `clean_acc`, when the caller has it, are the layer's fault-free
    /// accumulators (CHW, under the accumulator rule, without the bias):
    /// on WS/IS grids a column whose sum stays linear then takes only the
    /// terms of its forcing unit rows (`K/rows` each) instead of all `K`.
    pub fn apply(
        &self,
        draw: u64,
        layer: &MacLayer,
        input: &[i32],
        dp: &Datapath,
        clean_acc: Option<&[i32]>,
        codes: &mut [i32],
    ) {
        let bits = self.bits(draw, dp);
        self.apply_bits(&bits, layer, input, dp, clean_acc, codes);
    }

    /// [`apply`](Self::apply) with the chip's stuck bits given.
    pub fn apply_bits(
        &self,
        bits: &[StuckMacBit],
        layer: &MacLayer,
        input: &[i32],
        dp: &Datapath,
        clean_acc: Option<&[i32]>,
        codes: &mut [i32],
    ) {
        let clean_acc = clean_acc.filter(|c| c.len() == codes.len());
        if let MacGrid::BitSerial { .. } = self.grid {
            self.apply_bitserial(bits, layer, input, dp, codes);
            return;
        }
        let Some(forces) = self.unit_forces(bits, dp) else {
            return;
        };
        if self.grid != MacGrid::OutputStationary {
            self.apply_stationary(&forces, layer, input, dp, clean_acc, codes, true);
            return;
        }
        let (rows, cols) = (self.rows, self.cols);
        let o = layer.out_shape;
        let e_len = o.h * o.w;
        let m_len = layer.cout_per_group();
        let k_len = layer.macs_per_output();
        // Without product and accumulator bits the sum is linear when the
        // accumulator wraps or can never saturate (K terms of at most
        // 2^(A+W-1) each): one plain dot product of the forced operands,
        // the rule applied once. The forced activation row is shared by the
        // filters of a pixel whose units force the same bits.
        let max_term = 1i128 << (MacRegister::Product.width(dp) - 1);
        let linear = dp.overflow == crate::fixed::Overflow::Wrap
            || k_len as i128 * max_term <= crate::fixed::max_code(dp.psum_bits) as i128;
        let mut a = vec![0i32; k_len];
        let mut xa = vec![0i32; k_len];
        let mut wf = vec![0i32; k_len];
        for g in 0..layer.groups {
            for e in 0..e_len {
                let i = e % rows;
                let row = &forces[i * cols..(i + 1) * cols];
                if row.iter().all(|f| f.is_identity()) {
                    continue;
                }
                let mut have_operand = false;
                let mut forced_with: Option<BitForce> = None;
                for m in 0..m_len {
                    let f = &row[m % cols];
                    if f.is_identity() {
                        continue;
                    }
                    if !have_operand {
                        im2col_row(layer, input, g, e, &mut a);
                        have_operand = true;
                    }
                    let oc = g * m_len + m;
                    let w = &layer.weights[oc * k_len..(oc + 1) * k_len];
                    let acc = if linear && f.product.is_identity() && f.acc.is_identity() {
                        if forced_with != Some(f.act) {
                            for (x, &v) in xa.iter_mut().zip(&a) {
                                *x = f.act.apply(v as i64) as i32;
                            }
                            forced_with = Some(f.act);
                        }
                        let w = if f.weight.is_identity() {
                            w
                        } else {
                            for (x, &v) in wf.iter_mut().zip(w) {
                                *x = f.weight.apply(v as i64) as i32;
                            }
                            &wf
                        };
                        dp.acc_limit(dot(&xa, w))
                    } else {
                        let mut acc = f.acc.apply(0);
                        for (&x, &wv) in a.iter().zip(w) {
                            let p = f.act.apply(x as i64) * f.weight.apply(wv as i64);
                            let p = f.product.apply(p);
                            acc = dp.acc_limit(f.acc.apply(acc) + p);
                        }
                        acc
                    };
                    // the read-out sees a stuck accumulator bit too
                    codes[oc * e_len + e] = finish(layer, dp, f.acc.apply(acc), oc);
                }
            }
        }
    }
}

impl StuckMacs {
    /// WS and IS: the outputs of every unit column with a forcing unit,
    /// accumulated in hardware order — reduction index `k` in unit row
    /// `k mod rows`, the partial sum passing every row of the column in
    /// every row fold (rows past `K` in the last fold add the product of
    /// the forced zeros), each unit forcing the arriving partial sum
    /// before its add. `allow_linear: false` replays every column position
    /// by position (the tests' reference for the linear columns).
    #[allow(clippy::too_many_arguments)]
    fn apply_stationary(
        &self,
        forces: &[UnitForce],
        layer: &MacLayer,
        input: &[i32],
        dp: &Datapath,
        clean_acc: Option<&[i32]>,
        codes: &mut [i32],
        allow_linear: bool,
    ) {
        let (rows, cols) = (self.rows, self.cols);
        let o = layer.out_shape;
        let e_len = o.h * o.w;
        let m_len = layer.cout_per_group();
        let k_len = layer.macs_per_output();
        let row_folds = k_len.div_ceil(rows);
        let ws = self.grid == MacGrid::WeightStationary;
        // each unit column's forces top to bottom, `None` where none acts
        let columns: Vec<Option<Vec<UnitForce>>> = (0..cols)
            .map(|c| {
                let column: Vec<UnitForce> = (0..rows).map(|r| forces[r * cols + c]).collect();
                (!column.iter().all(UnitForce::is_identity)).then_some(column)
            })
            .collect();
        // output (e, m) runs in column m mod cols (WS) or e mod cols (IS)
        let column_at = |e: usize, m: usize| if ws { m } else { e } % cols;
        // Columns with the same forces (a moving register's bit forces
        // every column right of it alike) share their forced operand rows.
        // Without product and accumulator bits a column's sum is linear
        // when the accumulator wraps or can never saturate (all
        // `row_folds * rows` terms at most 2^(A+W-1)): one dot product of
        // the forced activation and weight rows, plus what the padding rows
        // of the last fold add (their forced zeros' product).
        let mut kinds: Vec<&Vec<UnitForce>> = Vec::new();
        let kind_of: Vec<Option<usize>> = columns
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|col| match kinds.iter().position(|k| *k == col) {
                        Some(i) => i,
                        None => {
                            kinds.push(col);
                            kinds.len() - 1
                        }
                    })
            })
            .collect();
        let max_term = 1i128 << (MacRegister::Product.width(dp) - 1);
        let sums_wrap = dp.overflow == crate::fixed::Overflow::Wrap
            || (row_folds * rows) as i128 * max_term
                <= crate::fixed::max_code(dp.psum_bits) as i128;
        let linear: Vec<bool> = kinds
            .iter()
            .map(|col| {
                allow_linear
                    && sums_wrap
                    && col
                        .iter()
                        .all(|f| f.product.is_identity() && f.acc.is_identity())
            })
            .collect();
        let padding: Vec<i64> = kinds
            .iter()
            .map(|col| {
                (0..rows)
                    .filter(|&r| (row_folds - 1) * rows + r >= k_len)
                    .map(|r| col[r].act.apply(0) * col[r].weight.apply(0))
                    .sum()
            })
            .collect();
        // With the clean accumulators, a linear column changes only by the
        // terms of its forcing unit rows: `k = r, r + rows, ...` for each
        // row `r` whose activation or weight path forces a bit.
        let forcing_ks: Vec<Vec<usize>> = kinds
            .iter()
            .filter(|_| clean_acc.is_some())
            .map(|col| {
                let mut ks: Vec<usize> = (0..rows)
                    .filter(|&r| !col[r].act.is_identity() || !col[r].weight.is_identity())
                    .flat_map(|r| (r..k_len).step_by(rows))
                    .collect();
                ks.sort_unstable();
                ks
            })
            .collect();
        // The other columns, when their sums may be taken in pieces (a
        // wrapping accumulator; or one that can never saturate and has no
        // stuck bit of its own, which could push it near its limit): the
        // positions where a product or accumulator bit acts are the only
        // non-linear steps, and the terms between two of them are a dot
        // product of the forced rows plus the padding rows' constants.
        let pieces: Vec<Option<Vec<usize>>> = kinds
            .iter()
            .zip(&linear)
            .map(|(col, &lin)| {
                let own_acc = col.iter().any(|f| !f.acc.is_identity());
                let ok = allow_linear
                    && !lin
                    && (dp.overflow == crate::fixed::Overflow::Wrap || (sums_wrap && !own_acc));
                ok.then(|| {
                    (0..row_folds * rows)
                        .filter(|&k| {
                            let f = &col[k % rows];
                            !f.acc.is_identity() || (k < k_len && !f.product.is_identity())
                        })
                        .collect()
                })
            })
            .collect();
        // the padding rows' constant terms up to position k (exclusive)
        let pad_before = |col: &[UnitForce], k: usize| -> i64 {
            (k_len..k.max(k_len))
                .map(|k| col[k % rows].act.apply(0) * col[k % rows].weight.apply(0))
                .sum()
        };
        let forced_weights = |col: &[UnitForce], v: &[i32]| -> Vec<i32> {
            v.iter()
                .enumerate()
                .map(|(k, &x)| col[k % rows].weight.apply(i64::from(x)) as i32)
                .collect()
        };
        // per kind: the forced weight rows of every output channel (lazily)
        let channels = layer.groups * m_len;
        let mut forced_w: Vec<Vec<Option<Vec<i32>>>> = vec![vec![None; channels]; kinds.len()];
        // per kind: this pixel's forced activation row (filled once per
        // pixel, in place: a fresh vector per pixel and kind was a tenth of
        // a derived IS campaign)
        let mut forced_a: Vec<Vec<i32>> = vec![vec![0; k_len]; kinds.len()];
        let mut have_a: Vec<bool> = vec![false; kinds.len()];
        // per kind: this pixel's codes at the kind's forcing positions (a
        // linear column from the clean sums reads only those, `K / rows`
        // per forcing row; building the whole im2col row for them was
        // most of a derived IS campaign's time in this function)
        let mut gathered: Vec<Vec<i32>> = forcing_ks.iter().map(|ks| vec![0; ks.len()]).collect();
        let mut have_g: Vec<bool> = vec![false; kinds.len()];
        let mut a = vec![0i32; k_len];
        for g in 0..layer.groups {
            for e in 0..e_len {
                let mut have_operand = false;
                have_a.fill(false);
                have_g.fill(false);
                for m in 0..m_len {
                    let Some(kind) = kind_of[column_at(e, m)] else {
                        continue;
                    };
                    let column = kinds[kind];
                    let oc = g * m_len + m;
                    let w = &layer.weights[oc * k_len..(oc + 1) * k_len];
                    if let (true, Some(clean)) = (linear[kind], clean_acc) {
                        let xs = &mut gathered[kind];
                        if !have_g[kind] {
                            for (x, &k) in xs.iter_mut().zip(&forcing_ks[kind]) {
                                *x = im2col_at(layer, input, g, e, k);
                            }
                            have_g[kind] = true;
                        }
                        let mut d = padding[kind];
                        for (&k, &x) in forcing_ks[kind].iter().zip(xs.iter()) {
                            let f = &column[k % rows];
                            let (x, wv) = (i64::from(x), i64::from(w[k]));
                            d += f.act.apply(x) * f.weight.apply(wv) - x * wv;
                        }
                        let o = oc * e_len + e;
                        codes[o] = finish(layer, dp, dp.acc_limit(i64::from(clean[o]) + d), oc);
                        continue;
                    }
                    if !have_operand {
                        im2col_row(layer, input, g, e, &mut a);
                        have_operand = true;
                    }
                    if linear[kind] || pieces[kind].is_some() {
                        if !have_a[kind] {
                            for (k, (x, &v)) in forced_a[kind].iter_mut().zip(&a).enumerate() {
                                *x = column[k % rows].act.apply(i64::from(v)) as i32;
                            }
                            have_a[kind] = true;
                        }
                        let xa = &forced_a[kind];
                        let wf =
                            forced_w[kind][oc].get_or_insert_with(|| forced_weights(column, w));
                        let acc = match &pieces[kind] {
                            None => dp.acc_limit(dot(xa, wf) + padding[kind]),
                            Some(events) => {
                                let linear_part = |k0: usize, k1: usize| -> i64 {
                                    let (a0, a1) = (k0.min(k_len), k1.min(k_len));
                                    dot(&xa[a0..a1], &wf[a0..a1]) + pad_before(column, k1)
                                        - pad_before(column, k0)
                                };
                                let mut acc = 0i64;
                                let mut k = 0;
                                for &pos in events {
                                    acc = dp.acc_limit(acc + linear_part(k, pos));
                                    let f = &column[pos % rows];
                                    let p = if pos < k_len {
                                        f.product.apply(i64::from(xa[pos]) * i64::from(wf[pos]))
                                    } else {
                                        f.act.apply(0) * f.weight.apply(0)
                                    };
                                    acc = dp.acc_limit(f.acc.apply(acc) + p);
                                    k = pos + 1;
                                }
                                dp.acc_limit(acc + linear_part(k, row_folds * rows))
                            }
                        };
                        codes[oc * e_len + e] = finish(layer, dp, acc, oc);
                        continue;
                    }
                    let mut acc = 0i64;
                    for fr in 0..row_folds {
                        for (r, f) in column.iter().enumerate() {
                            let k = fr * rows + r;
                            let live = k < k_len;
                            let (x, wv) = if live { (a[k], w[k]) } else { (0, 0) };
                            let mut p = f.act.apply(x as i64) * f.weight.apply(wv as i64);
                            if live {
                                p = f.product.apply(p);
                            }
                            acc = dp.acc_limit(f.acc.apply(acc) + p);
                        }
                    }
                    codes[oc * e_len + e] = finish(layer, dp, acc, oc);
                }
            }
        }
    }
}

impl StuckMacs {
    /// Bit-serial SIPs (layers at the datapath's widths: activation
    /// precision `Pa = act_bits`, weight precision `Pw = weight_bits`; `b`
    /// bits per cycle): the SIP of window `w` and filter row `f` computes
    /// output `(e, m)` with `e mod rows = w`, `m mod filter_rows = f`;
    /// lane `l` carries input channel `c` (`c mod cols = l`) of every tap,
    /// `k = c * taps + tap`, so the activation register `(w, l)` forces
    /// every code `A[e][k]` it holds. Step `(tap, lane set)` after step,
    /// the SIP reads the forced codes at the step's precision `p` — `Pa`,
    /// or with run-time precision `min(b * ceil(p_s / b), Pa)`, `p_s` the
    /// most signed bits any fault-free activation of the step's window set
    /// and lane set needs (the detector reads the buffer, not the
    /// register, so a stuck bit at or above `p` is never shifted out and
    /// bit `p-1` is the sign) — in `n = ceil(p / b)` bit groups, and adds
    /// to the accumulator, which its stuck bits force before every add and
    /// at the read-out:
    ///
    /// ```text
    /// Stripes: for tap, for lane set, for i in 0..n:
    ///     acc = rule(A(acc) + (sum_l g_i(X_l(a)) * w) << (i*b))
    /// Loom:    for tap, for lane set, for j in 0..Pw, for i in 0..n:
    ///     acc = rule(A(acc) + s_j (sum_l g_i(X_l(a)) * bit_j(w)) << (i*b + j))
    /// out = requantize(limit(A(acc) + bias))
    /// ```
    ///
    /// (`s_j = -1` for the weight's sign bit `j = Pw-1`, else 1;
    /// `crate::hwsim::bitserial`'s arithmetic). Without accumulator bits
    /// and with a wrapping accumulator this is the dot product of the
    /// forced codes read at each step's precision, on both designs.
    fn apply_bitserial(
        &self,
        bits: &[StuckMacBit],
        layer: &MacLayer,
        input: &[i32],
        dp: &Datapath,
        codes: &mut [i32],
    ) {
        let MacGrid::BitSerial {
            filter_rows,
            bits_per_cycle,
            serial_weights,
            run_time_precision,
        } = self.grid
        else {
            unreachable!("bit-serial grids only");
        };
        let (windows, lanes) = (self.rows, self.cols);
        let (aw, pw) = (
            MacRegister::Act.width(dp),
            MacRegister::Accumulator.width(dp),
        );
        let weight_bits = u32::from(dp.weight_bits);
        let mut act = vec![BitForce::identity(aw); windows * lanes];
        let mut acc = vec![BitForce::identity(pw); windows * filter_rows];
        for b in bits {
            let f = match b.register {
                MacRegister::Act => &mut act[b.row * lanes + b.col],
                MacRegister::Accumulator => &mut acc[b.row * filter_rows + b.col],
                MacRegister::Weight | MacRegister::Product => continue,
            };
            *f = f.then_stuck(b.bit, b.one);
        }
        let forced = |v: &[BitForce]| v.iter().any(|f| !f.is_identity());
        if !forced(&act) && !forced(&acc) {
            return;
        }
        let touched = |w: usize| {
            forced(&act[w * lanes..(w + 1) * lanes])
                || forced(&acc[w * filter_rows..(w + 1) * filter_rows])
        };
        let o = layer.out_shape;
        let e_len = o.h * o.w;
        let m_len = layer.cout_per_group();
        let k_len = layer.macs_per_output();
        let channels = layer.cin_per_group();
        let taps = k_len / channels.max(1);
        let lane_sets = channels.div_ceil(lanes);
        let b = u32::from(bits_per_cycle);
        let wrap = dp.overflow == crate::fixed::Overflow::Wrap;
        // The precision each step `(tap, lane set)` reads its codes at.
        let step = |k: usize| (k % taps) * lane_sets + (k / taps) / lanes;
        let mut prec = vec![aw; taps * lane_sets];
        let mut need = vec![1u32; taps * lane_sets];
        let mut rows = vec![0i32; windows * k_len];
        let mut xa = vec![0i32; k_len];
        for g in 0..layer.groups {
            for ws in 0..e_len.div_ceil(windows) {
                let live = (e_len - ws * windows).min(windows);
                if !(0..live).any(touched) {
                    continue;
                }
                for w in 0..live {
                    if run_time_precision || touched(w) {
                        im2col_row(
                            layer,
                            input,
                            g,
                            ws * windows + w,
                            &mut rows[w * k_len..(w + 1) * k_len],
                        );
                    }
                }
                if run_time_precision {
                    need.fill(1);
                    for row in rows[..live * k_len].chunks_exact(k_len) {
                        for (k, &v) in row.iter().enumerate() {
                            let n = &mut need[step(k)];
                            *n = (*n).max(u32::from(signed_bits(i64::from(v))));
                        }
                    }
                    for (p, &n) in prec.iter_mut().zip(&need) {
                        *p = (n.div_ceil(b) * b).min(aw);
                    }
                }
                for w in (0..live).filter(|&w| touched(w)) {
                    let e = ws * windows + w;
                    let act_row = &act[w * lanes..(w + 1) * lanes];
                    let acc_row = &acc[w * filter_rows..(w + 1) * filter_rows];
                    let act_forced = forced(act_row);
                    let a = &rows[w * k_len..(w + 1) * k_len];
                    for (k, (x, &v)) in xa.iter_mut().zip(a).enumerate() {
                        let forced = act_row[(k / taps) % lanes].apply(i64::from(v));
                        *x = sign_extend(forced, prec[step(k)]) as i32;
                    }
                    for m in 0..m_len {
                        let af = acc_row[m % filter_rows];
                        if af.is_identity() && !act_forced {
                            continue;
                        }
                        let oc = g * m_len + m;
                        let wts = &layer.weights[oc * k_len..(oc + 1) * k_len];
                        let sum = if af.is_identity() && wrap {
                            dp.acc_limit(dot(&xa, wts))
                        } else {
                            let mut s = 0i64;
                            let mut add = |term: i64| s = dp.acc_limit(af.apply(s) + term);
                            for tap in 0..taps {
                                for ls in 0..lane_sets {
                                    let p = prec[tap * lane_sets + ls];
                                    let ks = (ls * lanes..((ls + 1) * lanes).min(channels))
                                        .map(|c| c * taps + tap);
                                    let group =
                                        |i: u32, k: usize| bit_group(i64::from(xa[k]), i, b, p);
                                    if serial_weights {
                                        for j in 0..weight_bits {
                                            for i in 0..p.div_ceil(b) {
                                                let t: i64 = ks
                                                    .clone()
                                                    .map(|k| {
                                                        group(i, k) * i64::from((wts[k] >> j) & 1)
                                                    })
                                                    .sum();
                                                let t = t << (i * b + j);
                                                add(if j == weight_bits - 1 { -t } else { t });
                                            }
                                        }
                                    } else {
                                        for i in 0..p.div_ceil(b) {
                                            let t: i64 = ks
                                                .clone()
                                                .map(|k| group(i, k) * i64::from(wts[k]))
                                                .sum();
                                            add(t << (i * b));
                                        }
                                    }
                                }
                            }
                            af.apply(s)
                        };
                        codes[oc * e_len + e] = finish(layer, dp, sum, oc);
                    }
                }
            }
        }
    }
}

/// `v`'s low `p` bits as a signed `p`-bit number (what a SIP reads of a
/// register at precision `p`).
fn sign_extend(v: i64, p: u32) -> i64 {
    let s = 64 - p;
    (v << s) >> s
}

/// The requantized pre-activation code of output channel `oc` from its
/// accumulator `acc`: bias added with the accumulator rule, then
/// requantized (as `hwsim::layer` finishes a GEMM's outputs).
fn finish(layer: &MacLayer, dp: &Datapath, acc: i64, oc: usize) -> i32 {
    let v = dp.acc_limit(acc + layer.bias[oc] as i64);
    requantize(
        v,
        layer.acc_frac,
        layer.out_format.frac,
        layer.out_format.bits,
    ) as i32
}

/// `sum a[k] * b[k]` of two code rows modulo `2^32` (wrapping `i32`, which
/// vectorises): exact modulo `2^psum_bits` for a wrapping accumulator of at
/// most 32 bits, and exact outright when the sum cannot leave a
/// saturating accumulator's range (the only two uses). Dispatched to AVX2
/// where the CPU has it: baseline x86-64 has no 32-bit vector multiply, and
/// its emulation was most of a derived IS campaign's time.
fn dot(a: &[i32], b: &[i32]) -> i64 {
    debug_assert_eq!(a.len(), b.len());
    dot_i32(a, b) as i64
}

#[inline(always)]
fn dot_i32_inner(a: &[i32], b: &[i32]) -> i32 {
    // eight independent partial sums: the vectoriser keeps them in lanes
    let mut acc = [0i32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = acc[l].wrapping_add(x[l].wrapping_mul(y[l]));
        }
    }
    let tail = ra
        .iter()
        .zip(rb)
        .fold(0i32, |s, (&x, &y)| s.wrapping_add(x.wrapping_mul(y)));
    acc.iter().fold(tail, |s, &v| s.wrapping_add(v))
}

crate::hwsim::kernel::simd_dispatch!(fn dot_i32 => dot_i32_inner(a: &[i32], b: &[i32]) -> i32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_wraps_like_the_scalar_sum() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        for len in 0..70 {
            // large codes so the sums wrap, as a 32-bit accumulator does
            let a: Vec<i32> = (0..len)
                .map(|_| rng.random_range(-(1 << 20)..1 << 20))
                .collect();
            let b: Vec<i32> = (0..len)
                .map(|_| rng.random_range(-(1 << 15)..1 << 15))
                .collect();
            let want = a
                .iter()
                .zip(&b)
                .fold(0i32, |s, (&x, &y)| s.wrapping_add(x.wrapping_mul(y)));
            assert_eq!(dot(&a, &b), i64::from(want), "len {len}");
            assert_eq!(dot_i32_inner(&a, &b), want, "len {len}");
        }
    }

    fn dp() -> Datapath {
        Datapath {
            act_bits: 8,
            weight_bits: 8,
            psum_bits: 32,
            overflow: crate::fixed::Overflow::Wrap,
        }
    }

    #[test]
    fn forcing_composes_with_the_last_register_winning() {
        let a = BitForce::identity(8)
            .then_stuck(0, true)
            .then_stuck(7, false);
        assert_eq!(a.apply(-128), 1);
        assert_eq!(a.apply(2), 3);
        let b = BitForce::identity(8).then_stuck(0, false);
        // a then b: bit 0 ends at 0; b then a: at 1
        assert_eq!(a.then(b).apply(5), 4);
        assert_eq!(b.then(a).apply(4), 5);
        // sign extension at the register width
        let s = BitForce::identity(8).then_stuck(7, true);
        assert_eq!(s.apply(1), -127);
        assert!(BitForce::identity(32).is_identity());
    }

    #[test]
    fn densities_and_positions_of_the_draw() {
        let m = StuckMacs {
            grid: MacGrid::OutputStationary,
            rows: 16,
            cols: 16,
            density: [StuckDensity { p0: 0.01, p1: 0.03 }; 4],
        };
        let dp = dp();
        assert_eq!(m.bits(4, &dp), m.bits(4, &dp));
        assert_ne!(m.bits(4, &dp), m.bits(5, &dp));
        let (mut zeros, mut ones) = ([0usize; 4], [0usize; 4]);
        let draws = 30;
        for d in 0..draws {
            for b in m.bits(d, &dp) {
                assert!(b.row < 16 && b.col < 16 && b.bit < b.register.width(&dp));
                let i = b.register.index();
                if b.one {
                    ones[i] += 1
                } else {
                    zeros[i] += 1
                }
            }
        }
        for r in MacRegister::ALL {
            let n = (draws as usize * 256 * r.width(&dp) as usize) as f64;
            let (f0, f1) = (zeros[r.index()] as f64 / n, ones[r.index()] as f64 / n);
            assert!((f0 - 0.01).abs() < 5.0 * (0.01 / n).sqrt(), "{r:?} {f0}");
            assert!((f1 - 0.03).abs() < 5.0 * (0.03 / n).sqrt(), "{r:?} {f1}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut m = StuckMacs {
            grid: MacGrid::InputStationary,
            rows: 4,
            cols: 4,
            density: [StuckDensity::default(); 4],
        };
        assert!(m.validate().is_ok());
        assert!(m.is_empty());
        m.density[2] = StuckDensity { p0: 0.7, p1: 0.7 };
        assert_eq!(m.validate().unwrap_err().0, "product.p1");
        m.density[2] = StuckDensity { p0: -1.0, p1: 0.0 };
        assert_eq!(m.validate().unwrap_err().0, "product.p0");
        m.rows = 0;
        assert_eq!(m.validate().unwrap_err().0, "rows");
    }

    /// WS/IS columns without product or accumulator bits, summed as one
    /// dot product of forced rows plus the padding rows' constant, equal
    /// the position-by-position replay — wrap and saturate, with padding
    /// rows whose activation and weight paths both force ones.
    #[test]
    fn stationary_fast_paths_equal_the_replay() {
        use crate::fixed::{Format, Overflow};
        use crate::model::Shape;
        use crate::quant::Activation;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(21);
        for case in 0..400 {
            let cin = rng.random_range(1..4);
            let cout = rng.random_range(1..6);
            let layer = MacLayer {
                node: 1,
                name: "c".into(),
                is_conv: true,
                in_shape: Shape::new(cin, 5, 5),
                out_shape: Shape::new(cout, 5, 5),
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
                dilation: (1, 1),
                groups: 1,
                weights: (0..cout * cin * 9)
                    .map(|_| rng.random_range(-128..128))
                    .collect(),
                weight_format: Format { bits: 8, frac: 7 },
                bias: (0..cout).map(|_| rng.random_range(-500..500)).collect(),
                in_format: Format { bits: 8, frac: 4 },
                acc_frac: 11,
                out_format: Format { bits: 8, frac: 4 },
                activation: Activation::None,
            };
            let input: Vec<i32> = (0..cin * 25).map(|_| rng.random_range(-128..128)).collect();
            let dp = Datapath {
                act_bits: 8,
                weight_bits: 8,
                psum_bits: if case % 3 == 0 { 20 } else { 32 },
                overflow: if case % 2 == 0 {
                    Overflow::Wrap
                } else {
                    Overflow::Saturate
                },
            };
            let (rows, cols) = (rng.random_range(2..7), rng.random_range(1..5));
            let grid = if case % 4 < 2 {
                MacGrid::InputStationary
            } else {
                MacGrid::WeightStationary
            };
            let m = StuckMacs {
                grid,
                rows,
                cols,
                density: [StuckDensity::default(); 4],
            };
            // operand bits, often stuck at one on both paths of a row (the
            // linear columns); in half the cases product and accumulator
            // bits too (the columns summed in pieces between them)
            let mut bits = Vec::new();
            for _ in 0..rng.random_range(1..5) {
                let (row, col) = (rng.random_range(0..rows), rng.random_range(0..cols));
                let (bit, one) = (rng.random_range(0..8), rng.random::<f64>() < 0.7);
                for register in [MacRegister::Act, MacRegister::Weight] {
                    if rng.random::<f64>() < 0.7 {
                        bits.push(StuckMacBit {
                            register,
                            row,
                            col,
                            bit,
                            one,
                        });
                    }
                }
                if case % 8 >= 4 {
                    for register in [MacRegister::Product, MacRegister::Accumulator] {
                        if rng.random::<f64>() < 0.5 {
                            bits.push(StuckMacBit {
                                register,
                                row: rng.random_range(0..rows),
                                col: rng.random_range(0..cols),
                                bit: rng.random_range(0..register.width(&dp)),
                                one: rng.random::<bool>(),
                            });
                        }
                    }
                }
            }
            let Some(forces) = m.unit_forces(&bits, &dp) else {
                continue;
            };
            let e_len = 25;
            let clean = vec![7i32; cout * e_len];
            let (mut fast, mut slow) = (clean.clone(), clean);
            m.apply_stationary(&forces, &layer, &input, &dp, None, &mut fast, true);
            m.apply_stationary(&forces, &layer, &input, &dp, None, &mut slow, false);
            assert_eq!(fast, slow, "case {case}: {grid:?} {rows}x{cols} {bits:?}");
            // from the clean accumulators (the raw sums under the rule;
            // used only where the sums cannot saturate)
            let acc: Vec<i32> = (0..cout * e_len)
                .map(|o| {
                    let (oc, e) = (o / e_len, o % e_len);
                    let mut row = vec![0i32; layer.macs_per_output()];
                    im2col_row(&layer, &input, 0, e, &mut row);
                    let w = &layer.weights[oc * row.len()..(oc + 1) * row.len()];
                    dot(&row, w) as i32
                })
                .map(|v| dp.acc_limit(i64::from(v)) as i32)
                .collect();
            let mut from_clean = vec![7i32; cout * e_len];
            m.apply_stationary(
                &forces,
                &layer,
                &input,
                &dp,
                Some(&acc),
                &mut from_clean,
                true,
            );
            assert_eq!(
                from_clean, slow,
                "case {case}, from the clean sums: {grid:?} {rows}x{cols} {bits:?}"
            );
        }
    }
}
