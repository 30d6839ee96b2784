//! The `kiln` command: parses arguments, sets up logging, runs, and turns the
//! outcome into an exit code and a message a person can act on.

use clap::Parser;

fn main() {
    let cli = kiln::cli::Cli::parse();
    kiln::logging::init(cli.global.verbose, cli.global.quiet);
    let result = kiln::run(cli);
    match &result {
        Err(err) if kiln::output::is_closed_stdout(err) => std::process::exit(0),
        Err(err) => eprintln!("error: {err:#}"),
        Ok(()) => {}
    }
    std::process::exit(kiln::exit_code(&result));
}
