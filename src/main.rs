//! The `callpulse` binary: parse the command line, set up logging, dispatch to
//! `cli::*`, and map errors to an exit code (0 ok, 1 failure, 2 usage).

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if writes_for_a_pipe(&args.cmd) {
        // Rust ignores SIGPIPE, so `println!` into a pipe the reader closed
        // (`callpulse models list | head -1`) panics. These commands print
        // results and write to no other pipe (Rust's sockets send with
        // MSG_NOSIGNAL): they end quietly on a closed pipe, as other Unix
        // tools do.
        // SAFETY: called before any thread starts; restores the default
        // disposition of one signal.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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

/// The commands whose output is read through pipes.
fn writes_for_a_pipe(cmd: &cli::Command) -> bool {
    use cli::Command as C;
    matches!(
        cmd,
        C::Score(_) | C::Models(_) | C::Eval(_) | C::Diarize(_) | C::Report(_) | C::Insights(_)
    )
}
