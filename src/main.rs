//! `notarium`: Docker Content Trust without the daemon.
#![forbid(unsafe_code)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Docker Content Trust: a Notary v1 trust server, an OCI registry and a daemonless
/// `docker trust` client, in one binary.
#[derive(Parser)]
#[command(name = "notarium", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the trust server (Notary v1 API) on one port.
    Server(Box<cmd::server::ServerArgs>),
    /// Manage trust on Docker images (what `docker trust` does, without a daemon).
    Trust(cmd::trust::TrustArgs),
    /// Push an image from an OCI layout or a `docker save` tarball to a registry (and
    /// sign it, with content trust).
    Push(cmd::image::PushArgs),
    /// Pull an image to an OCI layout or a tarball for `docker load` (only what is
    /// signed, with content trust).
    Pull(cmd::image::PullArgs),
    /// Serve /verify and the Kubernetes admission webhooks as their own process (the
    /// `[admission]` table of a config file), with their own TLS.
    Admission(cmd::admission::AdmissionArgs),
    /// Log in to a registry (and its trust server): credentials into `config.json`, as
    /// `docker login` stores them.
    Login(cmd::login::LoginArgs),
    /// Log out from a registry.
    Logout(cmd::login::LogoutArgs),
    /// Install this binary as the docker CLI plugin `docker-trust` (a link in
    /// `<config>/cli-plugins`, or the system plugin directory), so `docker trust …` runs
    /// it where docker no longer has the command (docker 29 and later).
    InstallDockerPlugin {
        /// Into /usr/local/lib/docker/cli-plugins, for every user.
        #[arg(long)]
        system: bool,
    },
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match argv.first() {
        Some(argv0) if cmd::plugin::invoked_as_plugin(argv0) => {
            match cmd::plugin::parse(&argv[1..]) {
                Ok(cmd::plugin::Call::Metadata) => {
                    println!("{}", cmd::plugin::metadata());
                    return ExitCode::SUCCESS;
                }
                Ok(cmd::plugin::Call::Trust { args, env }) => {
                    // Before any thread exists.
                    for (k, v) in env {
                        std::env::set_var(k, v);
                    }
                    Cli::parse_from(args)
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => Cli::parse_from(argv),
    };
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(*args),
        Command::Trust(args) => cmd::trust::run(args),
        Command::Push(args) => cmd::image::push(args),
        Command::Pull(args) => cmd::image::pull(args),
        Command::Admission(args) => cmd::admission::run(args),
        Command::Login(args) => cmd::login::login(args),
        Command::Logout(args) => cmd::login::logout(args),
        Command::InstallDockerPlugin { system } => cmd::plugin::install(system).map(|link| {
            println!(
                "Installed {} (docker trust … runs notarium)",
                link.display()
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
