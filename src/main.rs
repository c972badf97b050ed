use clap::Parser;

fn main() -> std::process::ExitCode {
    ftnas::malloc::keep_freed_memory();
    ftnas::cli::die_quietly_on_closed_stdout();
    let cli = ftnas::cli::Cli::parse();
    match ftnas::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", ftnas::cli::error_message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
