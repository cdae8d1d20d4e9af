//! `notarium push` and `notarium pull`: images between disk and a registry, with
//! content trust when `DOCKER_CONTENT_TRUST=1` or `--trust` (as docker's trusted push and
//! pull), unless `--disable-content-trust`.

use std::path::PathBuf;

use clap::Args;
use trust_client::ops::image::{self, PullRequest, PushRequest};
use trust_client::Context;

#[derive(Args)]
pub struct TrustFlags {
    /// Sign the pushed tag / pull only what the trust data signs (default: on when
    /// DOCKER_CONTENT_TRUST=1).
    #[arg(long, conflicts_with = "disable_content_trust")]
    trust: bool,
    /// No content trust, whatever DOCKER_CONTENT_TRUST says.
    #[arg(long)]
    disable_content_trust: bool,
    /// Registry that may be reached over plain HTTP (repeatable); loopback registries may
    /// always be.
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
}

impl TrustFlags {
    fn enabled(&self) -> bool {
        if self.disable_content_trust {
            return false;
        }
        self.trust
            || std::env::var("DOCKER_CONTENT_TRUST")
                .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "True"))
    }
}

#[derive(Args)]
pub struct PushArgs {
    /// An OCI image layout directory (DIR or DIR:TAG) or a `docker save` tarball.
    source: String,
    /// Where to: REGISTRY/NAME[:TAG].
    reference: String,
    #[command(flatten)]
    flags: TrustFlags,
}

#[derive(Args)]
pub struct PullArgs {
    /// What: REGISTRY/NAME[:TAG] or REGISTRY/NAME@sha256:….
    reference: String,
    /// An OCI image layout directory, or FILE.tar for `docker load`.
    dest: PathBuf,
    /// The image of a multi-platform index to pull, as os/arch (a tarball holds one
    /// image: by default this machine's; a layout gets them all).
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    flags: TrustFlags,
}

fn context(flags: &TrustFlags) -> Context {
    let mut ctx = Context::from_env();
    ctx.insecure_registries = flags.insecure_registry.clone();
    ctx
}

pub fn push(args: PushArgs) -> Result<(), String> {
    let mut ctx = context(&args.flags);
    let req = PushRequest {
        source: args.source,
        reference: args.reference,
        trust: args.flags.enabled(),
    };
    image::push(&mut ctx, &mut std::io::stdout(), &req).map_err(|e| e.to_string())
}

pub fn pull(args: PullArgs) -> Result<(), String> {
    let mut ctx = context(&args.flags);
    let req = PullRequest {
        reference: args.reference,
        dest: args.dest,
        trust: args.flags.enabled(),
        platform: args.platform,
    };
    image::pull(&mut ctx, &mut std::io::stdout(), &req).map_err(|e| e.to_string())
}
