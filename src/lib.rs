//! ftnas: fault-tolerant neural-network accelerator studies.
//!
//! Folders map to concepts: `fixed` (number formats), `model` (network IR and
//! files), `quant` (float -> fixed point), `engine` (fixed-point inference),
//! `data` (datasets), `accel` (accelerator descriptions, mapping, timing,
//! SCALE-Sim compatibility), `fault` (fault models), `report` (CSV/JSON/SVG
//! output), `cli` (one file per subcommand), `malloc` (allocator tuning for
//! big per-step buffers).

pub mod accel;
pub mod campaign;
pub mod cli;
pub mod data;
pub mod derive;
pub mod engine;
pub mod eval;
pub mod fault;
pub mod fixed;
pub mod hwsim;
pub mod malloc;
pub mod model;
pub mod quant;
pub mod report;
pub mod search;
pub mod study;
pub mod train;

/// The build: crate version and the git commit it was built from
/// (`unknown` outside a clone). Campaign directories record it.
pub const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("FTNAS_GIT_COMMIT"));
