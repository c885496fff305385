//! The `callpulse` binary: parse the command line, set up logging, dispatch to
//! `cli::*`, and map errors to an exit code (0 ok, 1 failure, 2 usage).

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CALLPULSE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if args.verbose { "info" } else { "warn" })
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("callpulse: error: {e:#}");
            std::process::exit(1);
        }
    }
}
