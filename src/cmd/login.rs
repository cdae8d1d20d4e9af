//! `notarium login` and `notarium logout`: what `docker login` / `docker logout` do with
//! `<config>/config.json` (or its credential helpers), without a daemon.

use clap::Args;
use registry::client::config::Stored;
use registry::client::{Credentials, DockerConfig};

#[derive(Args)]
pub struct LoginArgs {
    /// Username (asked for when missing).
    #[arg(short, long)]
    username: Option<String>,
    /// Take the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Registry that may be reached over plain HTTP (loopback registries may always be).
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
    /// The registry: `host[:port]`.
    server: String,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The registry: `host[:port]`.
    server: String,
}

/// `https://host:port/…` → `host:port`, as docker keys credentials.
fn registry_host(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    s.split('/').next().unwrap_or(s).to_owned()
}

pub fn login(args: LoginArgs) -> Result<(), String> {
    let host = registry_host(&args.server);
    if args.password_stdin && args.username.is_none() {
        return Err("Must provide --username with --password-stdin".into());
    }
    let username = match args.username {
        Some(u) => u,
        None => super::prompt::line("Username: ")?.to_string(),
    };
    if username.is_empty() {
        return Err("Error: Non-null Username Required".into());
    }
    let password = if args.password_stdin {
        super::prompt::line_from_stdin()?
    } else {
        super::prompt::secret("Password: ")?
    };
    if password.is_empty() {
        return Err("Error: Password Required".into());
    }
    let cfg = DockerConfig::from_env();
    let creds = Credentials::Basic {
        username: username.clone(),
        password: password.to_string(),
    };
    let session =
        registry::client::oci::open_with(&cfg, &host, &args.insecure_registry, Some(creds.clone()))
            .map_err(|e| format!("Error response from {host}: {e}"))?;
    let refresh = session
        .login()
        .map_err(|e| format!("Error response from {host}: login failed: {e}"))?;
    let stored = match refresh {
        Some(token) => Credentials::IdentityToken { username, token },
        None => creds,
    };
    match cfg.store_credentials(&host, &stored)? {
        Stored::File(path) => eprintln!(
            "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
            path.display()
        ),
        Stored::Helper(_) => {}
    }
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(args: LogoutArgs) -> Result<(), String> {
    let host = registry_host(&args.server);
    let cfg = DockerConfig::from_env();
    if cfg.erase_credentials(&host)? {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(())
}
