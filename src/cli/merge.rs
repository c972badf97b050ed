//! `ftnas merge`: combine the output directories of a campaign's shards
//! (`ftnas inject --shard i/n --out DIR_i`) into the directory and results
//! an unsharded run would have written, byte for byte. Refuses shards of
//! different campaigns, a shard given twice, a missing or unfinished shard.

use std::path::PathBuf;

use crate::campaign::merge_shards;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directories of the shards (one per shard, any order).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Directory for the merged campaign (created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let result = merge_shards(&args.shards, &args.out)?;
    print!("{}", result.render());
    println!(
        "merged {} shards into {}",
        args.shards.len(),
        args.out.display()
    );
    Ok(())
}
