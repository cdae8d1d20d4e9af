//! `notarium trust …`: what `docker trust` does, without a daemon.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use trust_client::ops;
use trust_client::Context;

#[derive(Args)]
pub struct TrustArgs {
    /// Registry that may be reached over plain HTTP (repeatable); loopback registries may
    /// always be.
    #[arg(long, value_name = "HOST", global = true)]
    insecure_registry: Vec<String>,
    #[command(subcommand)]
    command: TrustCommand,
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Manage keys for signing Docker images.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage entities who can sign Docker images.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Sign an image (no daemon needed: the registry says what the tag points at).
    Sign {
        /// IMAGE:TAG, or IMAGE@sha256:… with --tag.
        #[arg(required_unless_present_any = ["add_signature", "publish"])]
        image: Option<String>,
        /// The tag to sign a digest reference as.
        #[arg(long)]
        tag: Option<String>,
        /// Threshold signing: write the signed change to FILE instead of uploading it.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["add_signature", "publish"])]
        stage: Option<PathBuf>,
        /// Threshold signing: add this signer's signatures to a staged FILE.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "publish"])]
        add_signature: Option<PathBuf>,
        /// Threshold signing: upload a staged FILE once its threshold is met.
        #[arg(long, value_name = "FILE", conflicts_with = "image")]
        publish: Option<PathBuf>,
    },
    /// Return low-level information about keys and signatures.
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        #[arg(required = true, value_name = "IMAGE[:TAG]")]
        images: Vec<String>,
    },
    /// Remove trust for an image.
    Revoke {
        /// Do not prompt for confirmation.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        #[arg(value_name = "IMAGE[:TAG]")]
        image: String,
    },
    /// Sign again, with fresh expiries, everything of a repository this client holds keys
    /// for (root: a new certificate for the same key); the server renews what it holds.
    Renew {
        #[arg(value_name = "REPOSITORY")]
        repo: String,
    },
    /// Show when each role, key and root certificate of repositories expires (every
    /// repository in the local trust cache when none is named). Exit code: 0 all well,
    /// 1 something expires within --warn-days, 2 something expired or cannot be read.
    Status {
        /// Warn about anything that expires within this many days.
        #[arg(long, default_value_t = 90, value_name = "DAYS")]
        warn_days: i64,
        /// Output format: text or json.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        #[arg(value_name = "REPOSITORY")]
        repos: Vec<String>,
    },
    /// Print the digest the trust data vouches for (as a trusted pull resolves the tag);
    /// fail with the reason otherwise.
    Verify {
        #[arg(value_name = "IMAGE[:TAG]")]
        image: String,
    },
    /// Push an image from the Docker Engine (DOCKER_HOST) and sign the digest the push
    /// reported (docker push with DOCKER_CONTENT_TRUST=1).
    Push {
        #[arg(value_name = "IMAGE[:TAG]")]
        image: String,
    },
    /// Pull into the Docker Engine only what the trust data vouches for: IMAGE@<signed
    /// digest>, tagged IMAGE:TAG (docker pull with DOCKER_CONTENT_TRUST=1).
    Pull {
        #[arg(value_name = "IMAGE[:TAG]")]
        image: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate and load a signing key-pair.
    Generate {
        name: String,
        /// Directory to generate key in, defaults to current directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load a private key file for signing.
    Load {
        #[arg(value_name = "KEYFILE")]
        file: PathBuf,
        /// Name for the loaded key.
        #[arg(long, default_value = "signer")]
        name: String,
    },
    /// Replace the key of a top-level role of a repository.
    Rotate {
        #[arg(value_name = "REPOSITORY")]
        repo: String,
        /// root, targets, snapshot or timestamp.
        role: String,
        /// Let the trust server hold the new key (snapshot; timestamp always is).
        #[arg(long, short = 'r')]
        server: bool,
        /// Root: a new root key (default: a new certificate for the same root key).
        #[arg(long)]
        new_key: bool,
        /// The new server-held key's algorithm: ecdsa (the server's default) or ed25519.
        #[arg(long, value_name = "ALGORITHM")]
        key_algorithm: Option<String>,
    },
}

#[derive(Subcommand)]
enum SignerCommand {
    /// Add a signer.
    Add {
        /// Path to the signer's public key file (repeatable).
        #[arg(long = "key", required = true, value_name = "FILE")]
        keys: Vec<PathBuf>,
        /// How many of the signer's keys must sign (its role and releases); see
        /// `trust sign --stage`.
        #[arg(long, value_name = "N")]
        threshold: Option<u64>,
        name: String,
        #[arg(required = true, value_name = "REPOSITORY")]
        repos: Vec<String>,
    },
    /// Remove a signer.
    Remove {
        /// Do not prompt for confirmation before removing the most recent signer.
        #[arg(short = 'f', long = "force")]
        force: bool,
        name: String,
        #[arg(required = true, value_name = "REPOSITORY")]
        repos: Vec<String>,
    },
}

pub fn run(args: TrustArgs) -> Result<(), String> {
    let mut ctx = Context::from_env();
    ctx.insecure_registries = args.insecure_registry;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let r = match args.command {
        TrustCommand::Key(KeyCommand::Generate { name, dir }) => {
            ops::keys::generate(&mut ctx, &mut out, &name, dir.as_deref()).map(|_| ())
        }
        TrustCommand::Key(KeyCommand::Load { file, name }) => {
            ops::keys::load(&mut ctx, &mut out, &file, &name)
        }
        TrustCommand::Key(KeyCommand::Rotate {
            repo,
            role,
            server,
            new_key,
            key_algorithm,
        }) => ops::rotate::rotate(
            &mut ctx,
            &mut out,
            &repo,
            &role,
            server,
            new_key,
            key_algorithm.as_deref(),
        ),
        TrustCommand::Signer(SignerCommand::Add {
            keys,
            name,
            repos,
            threshold,
        }) => ops::signer::add(
            &mut ctx, &mut out, &mut err, &name, &keys, &repos, threshold,
        ),
        TrustCommand::Signer(SignerCommand::Remove { force, name, repos }) => ops::signer::remove(
            &mut ctx, &mut out, &mut err, &mut input, &name, &repos, force,
        ),
        TrustCommand::Sign {
            add_signature: Some(file),
            ..
        } => ops::staged::add_signature(&mut ctx, &mut out, &file),
        TrustCommand::Sign {
            publish: Some(file),
            ..
        } => ops::staged::publish(&mut ctx, &mut out, &file),
        TrustCommand::Sign {
            image, tag, stage, ..
        } => ops::sign::sign(
            &mut ctx,
            &mut out,
            &ops::sign::SignRequest {
                image: image.unwrap_or_default(),
                tag,
                target: None,
                stage,
            },
        ),
        TrustCommand::Inspect {
            pretty: true,
            images,
        } => ops::inspect::inspect_pretty(&mut ctx, &mut out, &images),
        TrustCommand::Inspect {
            pretty: false,
            images,
        } => ops::inspect::inspect_json(&mut ctx, &mut out, &images),
        TrustCommand::Revoke { yes, image } => {
            ops::sign::revoke(&mut ctx, &mut out, &mut input, &image, yes)
        }
        TrustCommand::Renew { repo } => ops::renew::renew(&mut ctx, &mut out, &repo),
        TrustCommand::Status {
            warn_days,
            format,
            repos,
        } => {
            let opts = ops::status::StatusOptions {
                warn_days,
                json: format == "json",
            };
            match ops::status::status(&ctx, &mut out, &repos, &opts) {
                Ok(level) => {
                    let _ = out.flush();
                    let code = level.exit_code();
                    if code != 0 {
                        std::process::exit(code);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        TrustCommand::Push { image } => ops::engine::push(&mut ctx, &mut out, &image),
        TrustCommand::Pull { image } => ops::engine::pull(&mut ctx, &mut out, &image),
        TrustCommand::Verify { image } => {
            ops::sign::verify(&mut ctx, &image).map(|(digest, _, _)| {
                let _ = writeln!(out, "{digest}");
            })
        }
    };
    let _ = out.flush();
    r.map_err(|e| e.to_string())
}
