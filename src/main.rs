//! The `kefu-edge` binary: install the SIGHUP and SIGUSR1 handlers, parse flags, and hand over to the
//! server (`server`) or to an offline command (`offline`); print what failed and exit 1.

use std::process::ExitCode;

use clap::Parser;

use kefu_edge::cli::{Cli, Failure};
use kefu_edge::signals::{self, HangupPipe};
use kefu_edge::{offline, server};

fn main() -> ExitCode {
    // First: an unhandled SIGHUP would kill the process.
    let hangup = match HangupPipe::install() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kefu-edge: cannot install the SIGHUP handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reopen = match signals::install_reopen_flag() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kefu-edge: cannot install the SIGUSR1 handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    // pingora-load-balancing logs every health change with the peer's options in Debug;
    // `upstream` logs one line per change instead.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,pingora_load_balancing=error"),
    )
    .init();
    let result = if cli.test {
        server::check(&cli.conf)
    } else {
        match cli.command {
            None => server::serve(&cli, hangup, reopen),
            Some(command) => offline::run(&cli.conf, command),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            report(&failure);
            ExitCode::FAILURE
        }
    }
}

/// Print a failure on stderr, each line after `kefu-edge: `.
fn report(failure: &Failure) {
    match failure {
        Failure::Error(e) => eprintln!("kefu-edge: {e:#}"),
        Failure::Config(errors, dir) => {
            for e in &errors.0 {
                eprintln!("kefu-edge: {e}");
            }
            if let Some(dir) = dir {
                eprintln!(
                    "kefu-edge: configuration in {} is invalid ({} errors)",
                    dir.display(),
                    errors.0.len()
                );
            }
        }
        Failure::Silent => {}
    }
}
