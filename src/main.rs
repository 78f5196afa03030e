//! The `repovault` command line. All logic lives in the library; this file
//! parses arguments, sets up logging and Ctrl-C, and maps errors to exit codes.

mod cli;
mod ui;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
