//! `ftnas accel check X.toml...`: validate accelerator descriptions and
//! print the figures derived from each.

use std::path::PathBuf;

use crate::accel::description::{Accelerator, Kind};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate descriptions and print their derived figures.
    Check {
        /// Accelerator description files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Human-readable summary of a valid description.
pub fn summary(acc: &Accelerator) -> String {
    let d = acc.derived();
    let mut s = format!("{}: valid\n", acc.name);
    match (acc.kind, &acc.systolic, &acc.bitserial) {
        (Kind::Systolic, Some(sy), _) => {
            s += &format!(
                "  systolic {}x{} {} dataflow, {} PEs\n",
                sy.rows,
                sy.cols,
                format!("{:?}", sy.dataflow).to_uppercase(),
                d.mac_units
            )
        }
        (Kind::BitSerial, _, Some(b)) => {
            s += &format!(
                "  bit-serial {} tiles x {} windows x {} filters x {} lanes ({} MAC lanes), serial {:?}, {} bit(s)/cycle, precision {:?}{}\n",
                b.tiles,
                b.windows,
                b.filters,
                b.lanes,
                d.mac_units,
                b.serial,
                b.bits_per_cycle,
                b.precision,
                b.group_size.map(|g| format!(" (groups of {g})")).unwrap_or_default()
            )
        }
        _ => {}
    }
    let dp = acc.datapath;
    s += &format!(
        "  datapath: act {} b, weight {} b, psum {} b ({:?} on overflow)\n",
        dp.act_bits, dp.weight_bits, dp.psum_bits, dp.overflow
    );
    s += &format!(
        "  clock {} MHz, peak {:.3} GMAC/s{}\n",
        acc.clock_mhz,
        d.peak_macs_per_s / 1e9,
        if acc.kind == Kind::BitSerial {
            " at full datapath precision"
        } else {
            ""
        }
    );
    s += &format!(
        "  SRAM words ({}-byte): ifmap {}, filter {}, ofmap {}; {} bank(s), double-buffered\n",
        acc.buffers.word_bytes,
        d.ifmap_sram_words,
        d.filter_sram_words,
        d.ofmap_sram_words,
        acc.buffers.banks
    );
    s += &match d.dram_words_per_cycle {
        Some(w) => format!(
            "  DRAM: {w} words/cycle per operand ({:.2} GB/s)\n",
            w as f64 * acc.buffers.word_bytes as f64 * acc.clock_mhz * 1e6 / 1e9
        ),
        None => "  DRAM: bandwidth computed so the array never stalls (calc)\n".to_string(),
    };
    s
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Check { files } => {
            let mut failed = 0;
            for f in &files {
                match Accelerator::load(f) {
                    Ok(acc) => print!("{}", summary(&acc)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} description(s) invalid", files.len());
            }
            Ok(())
        }
    }
}
