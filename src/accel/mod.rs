//! Accelerators: description files (`accelerators/*.toml`) and their
//! validation, the lowering of layers to GEMM operand shapes and folds, the
//! analytical compute timing per dataflow, the SRAM/DRAM memory model and
//! SCALE-Sim v2 compatibility (cfg/topology in, reports out).

pub mod bitserial;
pub mod description;
pub mod lower;
pub mod memory;
pub mod network;
pub mod output;
pub mod precisions;
pub mod scalesim;
pub mod scalesim_report;
pub mod timing;

pub use description::{Accelerator, DescriptionError};
pub use network::{time_graph, NetworkTiming};

use serde::{Deserialize, Serialize};

/// Systolic-array dataflow (which operand stays in the PEs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataflow {
    /// Output stationary: partial sums stay, ifmap and filter stream.
    Os,
    /// Weight stationary: filter values stay, ifmap streams, psums flow.
    Ws,
    /// Input stationary: ifmap values stay, filter streams, psums flow.
    Is,
}

/// One layer as SCALE-Sim sees it: IFMAP dims are already padded, one stride
/// for both dimensions, no groups (a grouped conv is several such layers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScaleSimLayer {
    pub name: String,
    pub ifmap_h: usize,
    pub ifmap_w: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub channels: usize,
    pub num_filters: usize,
    pub stride: usize,
}
