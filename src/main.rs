//! The `kiln` command: parses arguments, sets up logging, runs, and turns the
//! outcome into an exit code and a message a person can act on.

use clap::Parser;
use kiln::commands::{self, Cli};
use kiln::report::{logging, stdout};

fn main() {
    let cli = Cli::parse();
    logging::init(cli.global.verbose, cli.global.quiet);
    let result = commands::run(cli);
    match &result {
        Err(err) if stdout::is_closed_stdout(err) => std::process::exit(0),
        Err(err) => eprintln!("error: {err:#}"),
        Ok(()) => {}
    }
    std::process::exit(commands::exit_code(&result));
}
