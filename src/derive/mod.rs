//! Derivation of algorithmic fault models from hardware fault rates (issue
//! 5): what a raw per-bit, per-cycle upset rate in the PE registers of an
//! accelerator means for the outputs and weights of each layer.
//!
//! This module owns the bridge from `hwsim` (where faults live in
//! registers and cycles) to `fault` (where they live in tensors): the
//! exposure of each output value to each register site ([`exposure`]), and
//! the per-layer parameters built from it; and from permanent stuck-at
//! cells to weight stuck-at faults ([`permanent`]); and from SRAM-buffer
//! upsets to flips of a layer's input and stored output codes ([`buffers`]);
//! and from stuck PE register bits of an output-stationary array to stuck
//! MAC-unit bits ([`stuck_macs`]).

pub mod bitserial;
pub mod buffers;
pub mod calibrate;
pub mod exposure;
pub mod hardware;
pub mod layer;
pub mod measure;
pub mod network;
pub mod permanent;
pub mod psum_sign;
pub mod stream;
pub mod stuck_macs;
