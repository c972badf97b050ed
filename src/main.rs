use clap::Parser;

fn main() -> std::process::ExitCode {
    ftnas::malloc::keep_freed_memory();
    let cli = ftnas::cli::Cli::parse();
    match ftnas::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
