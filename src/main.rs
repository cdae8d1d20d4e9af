//! `notarium`: Docker Content Trust without the daemon.
#![forbid(unsafe_code)]

use clap::Parser;

/// Docker Content Trust: a Notary v1 trust server, an OCI registry and a daemonless
/// `docker trust` client, in one binary.
#[derive(Parser)]
#[command(name = "notarium", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
