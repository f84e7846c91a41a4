//! Command-line interface: `kefu-edge -c conf/` runs the server, `-t` checks the
//! configuration like `nginx -t`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kefu-edge",
    version,
    about = "Edge tier for customer-service bots, on Pingora"
)]
pub struct Cli {
    /// Configuration directory (server.yaml, edge.yaml, limits.yaml, intents.yaml, post.yaml,
    /// upstreams.yaml).
    #[arg(short = 'c', long = "conf", default_value = "conf", global = true)]
    pub conf: PathBuf,

    /// Check the configuration (every file, every referenced file, every stage built) and
    /// exit: 0 and `configuration ok`, or non-zero and one line per error.
    #[arg(short = 't', long = "test")]
    pub test: bool,

    /// Take over the listening sockets of a running instance (after it got SIGQUIT).
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,

    /// Run in the background (systemd users leave this off).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read one message per line on stdin and print `intent<TAB>confidence<TAB>stage`, the
    /// decision the server makes, without a server.
    Classify,
}
