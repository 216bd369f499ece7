//! `achat-client`: parse the command line, run the client, turn the way it
//! ended into one line on standard error and an exit status (see
//! `achat::client` for both).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

use achat::client::ClientArgs;

fn main() -> ExitCode {
    let args = ClientArgs::parse();
    match achat::client::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing useful is left to do if standard error is gone too.
            let _ = writeln!(std::io::stderr(), "achat-client: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
