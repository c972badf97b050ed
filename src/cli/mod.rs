//! The command line: one file per subcommand, each exposing an `Args`
//! struct (clap derive) and `run(args) -> anyhow::Result<()>`.

use clap::{Parser, Subcommand};

pub mod accel;
pub mod calibrate;
pub mod derive;
pub mod eval;
pub mod hwrun;
pub mod infer;
pub mod inject;
pub mod merge;
pub mod model;
pub mod search;
pub mod sim;
pub mod study;
pub mod train;

/// ftnas: accelerator timing, fault injection and fault-tolerant NAS.
#[derive(Debug, Parser)]
#[command(name = "ftnas", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: timing, derived fault model and accuracy under faults of the trained models on one accelerator.
    Study(study::Args),
    /// Fixed-point inference on a dataset, clean and under algorithmic faults.
    Infer(infer::Args),
    /// Inspect model files.
    Model(model::Args),
    /// Time a model on an accelerator, or run a SCALE-Sim job.
    Sim(sim::Args),
    /// Check accelerator descriptions.
    Accel(accel::Args),
    /// Derive per-layer algorithmic fault models from hardware fault rates.
    Derive(derive::Args),
    /// Check a derived fault model against hardware-level injection over a sweep of raw rates.
    Calibrate(calibrate::Args),
    /// Quantization-aware and fault-tolerant training.
    Train(train::Args),
    /// Accuracy vs fault rate for one or several models (table, CSV, JSON, SVG).
    Eval(eval::Args),
    /// Fault-injection campaign: accuracy, SDC rate, vulnerability over many faulty chips.
    Inject(inject::Args),
    /// Merge the output directories of a sharded campaign.
    Merge(merge::Args),
    /// Run a model through the cycle-level systolic model, fault-free and under hardware faults.
    Hwrun(hwrun::Args),
    /// FTT-NAS: fault-tolerant (and hardware-aware) architecture search.
    Search(search::Args),
}

/// Let a closed stdout end the process quietly, as other Unix tools do
/// (`ftnas derive ... | head`). Rust ignores SIGPIPE, so a write to a closed
/// pipe is an error that `println!` turns into a panic; with the default
/// disposition the kernel ends the process instead. Results files are
/// written atomically, so nothing half-written is left behind.
pub fn die_quietly_on_closed_stdout() {
    #[cfg(unix)]
    {
        use std::os::raw::c_int;
        const SIGPIPE: c_int = 13;
        const SIG_DFL: usize = 0;
        extern "C" {
            fn signal(signum: c_int, handler: usize) -> usize;
        }
        // SAFETY: restores the default disposition of one signal before any
        // thread is started; no handler code of ours is involved.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

/// The message of a failed command: the error, then each cause in its
/// chain that the text does not already carry. Library errors name their
/// file and reason in one line and also keep the reason as their `source`;
/// printing the whole chain would say the reason twice.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Study(a) => study::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Model(a) => model::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Accel(a) => accel::run(a),
        Command::Derive(a) => derive::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Inject(a) => inject::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Hwrun(a) => hwrun::run(a),
        Command::Search(a) => search::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::error_message;
    use anyhow::Context;

    #[test]
    fn error_message_says_each_reason_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("a.toml: cannot read: {source}")]
        struct ReadError {
            source: std::io::Error,
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(ReadError { source: io });
        assert_eq!(error_message(&e), "a.toml: cannot read: no such file");
        // context above an error whose text is not repeated keeps both
        let e = Err::<(), _>(anyhow::anyhow!("bad value"))
            .context("study")
            .unwrap_err();
        assert_eq!(error_message(&e), "study: bad value");
    }
}
