//! `notarium server`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use server::config::{FileConfig, ServerConfig};

#[derive(Args)]
#[command(
    args_conflicts_with_subcommands = false,
    after_help = "Environment:\n  NOTARIUM_KEY_PASSPHRASE  seals the server's timestamp and snapshot keys (and the token key)\n  NOTARIUM_LOG             log filter: error, warn, info (default; one access line per request), debug,\n                           or per target, e.g. info,notarium::access=off (RUST_LOG is read when it is unset)"
)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    /// TOML configuration file (flags override it).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:4443].
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Where data, keys and generated TLS files live [default: ./notarium-data].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Where metadata lives: sqlite://DIR (default: the data directory) or
    /// postgres://USER@HOST/DATABASE, shared by any number of servers
    /// (also `[storage] database` in the config file).
    #[arg(long, value_name = "URL", global = true)]
    database: Option<String>,
    /// Where blobs live: file://PATH (default: DATA_DIR/registry) or s3://BUCKET/PREFIX,
    /// shared by any number of servers; endpoint, region and credentials from
    /// `[storage.s3]` or AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY (also `[storage] blobs` in the config file).
    #[arg(long, value_name = "URL", global = true)]
    blobs: Option<String>,
    /// Server certificate (PEM); without it notarium makes a CA and a certificate.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra name or IP for the generated certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    tls_san: Vec<String>,
    /// Serve plain HTTP (for use behind a TLS-terminating proxy). On a non-loopback address
    /// it must be given here, not only in the config file.
    #[arg(long)]
    insecure_http: bool,
    /// Serve a non-loopback address without authentication (anyone may change anything).
    #[arg(long)]
    no_auth: bool,
    /// Log lines as `text` (default) or `json`.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Development mode: allow running without NOTARIUM_KEY_PASSPHRASE (empty passphrase).
    #[arg(long)]
    dev: bool,
    /// Algorithm of new server-held keys: ecdsa (default, as notary-signer and Docker Hub
    /// used; admission controllers such as Connaisseur accept only it) or ed25519.
    #[arg(long, value_name = "ALG")]
    key_algorithm: Option<String>,
}

#[derive(Subcommand)]
enum ServerAction {
    /// Delete registry blobs that no manifest references, and abandoned uploads. Run it
    /// with the server stopped (it takes the data directory's lock).
    Gc {
        /// Keep unreferenced blobs younger than this: 90s, 30m, 1h, 0s.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy this installation to another database (and blob store): trust data with
    /// every version, the changefeed, sealed server keys, registry metadata, blobs.
    /// Resumable (run it again after an interruption) and verified (row counts and
    /// hashes per table, every blob's digest). Stop the servers first.
    Migrate {
        /// The database to copy [default: the configured one, --database].
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// The database to copy into: postgres://USER@HOST/DATABASE or sqlite://DIR.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The blob store to copy [default: the configured one, --blobs].
        #[arg(long, value_name = "URL", requires = "blobs_to")]
        blobs_from: Option<String>,
        /// The blob store to copy into: s3://BUCKET/PREFIX or file://PATH (settings of
        /// `[storage.s3]` or AWS_*). Without it, blobs are not copied.
        #[arg(long, value_name = "URL")]
        blobs_to: Option<String>,
    },
    /// Manage the users of builtin auth (the `[auth] htpasswd` file, else
    /// `<data-dir>/auth/htpasswd`). A running server picks the change up.
    #[command(subcommand)]
    User(UserAction),
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user, or set a user's password (asked twice on a terminal).
    Add {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    Remove { name: String },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

pub fn run(args: ServerArgs) -> Result<(), String> {
    let mut config = ServerConfig::default();
    let mut log_format = None;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: FileConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        log_format = file.log_format.clone();
        config
            .apply_file(file)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let json = match args.log_format.as_deref().or(log_format.as_deref()) {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => return Err(format!("log_format {other:?}: expected text or json")),
    };
    let _log_guard = init_logging(json);
    if let Some(a) = args.addr {
        config.addr = a;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(url) = &args.database {
        config.database = Some(server::db::Database::parse(url).map_err(|e| e.to_string())?);
    }
    if let Some(url) = &args.blobs {
        config.blobs = Some(server::oci::blobs::BlobLocation::parse(url)?);
    }
    protect_process();
    match args.action {
        Some(ServerAction::Gc { grace, dry_run }) => return gc(&config, grace, dry_run),
        Some(ServerAction::Migrate {
            from,
            to,
            blobs_from,
            blobs_to,
        }) => return migrate(&config, from, to, blobs_from, blobs_to),
        Some(ServerAction::User(action)) => return user(&config, action),
        None => {}
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert;
        config.tls_key = args.tls_key;
    }
    config.tls_san.extend(args.tls_san);
    config.insecure_http |= args.insecure_http;
    config.allow_insecure_http = args.insecure_http;
    config.allow_no_auth = args.no_auth;
    config.dev = args.dev;
    if let Some(a) = args.key_algorithm {
        config.key_algorithm = server::config::parse_algorithm(&a)?;
    }
    if let Ok(p) = std::env::var("NOTARIUM_KEY_PASSPHRASE") {
        config.key_passphrase = Some(p);
    }
    if config.dev && config.key_passphrase.is_none() {
        eprintln!("warning: --dev: server keys are sealed with an empty passphrase");
    }
    for w in config.check_exposure()? {
        eprintln!("{w}");
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let app = server::App::open(config.clone(), Arc::new(tuf::SystemClock))
            .await
            .map_err(|e| e.to_string())?;
        let tls = app.tls().map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ca = match &tls {
            Some((files, _)) => match &files.ca {
                Some(ca) => format!(" (CA certificate: {})", ca.display()),
                None => String::new(),
            },
            None => String::new(),
        };
        // Listen for SIGTERM/SIGINT before saying ready: a signal sent right after the ready
        // line must stop the server cleanly, not kill it.
        let shutdown = shutdown_signal()?;
        println!("notarium server ready at {scheme}://{local}{ca}");
        if let Some(crt) = app.auth.token_cert_file() {
            tracing::info!(
                "builtin auth: tokens at {scheme}://{local}/auth/token, signed by the certificate in {}",
                crt.display()
            );
        }
        if app.auth.mode != server::auth::Mode::None && app.auth.policy().is_empty() {
            tracing::warn!("no [[auth.access]] rules: every request that needs access is refused");
        }
        let _ = std::io::stdout().flush();
        server::serve(listener, app, tls.map(|t| t.1), shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Everything the server creates is private to its user (databases, WAL files, blobs,
/// uploads: 0600, directories 0700) whatever umask it was started with, and the process
/// cannot be dumped or traced by another process of the same user (its memory holds
/// decrypted keys).
fn protect_process() {
    use rustix::fs::Mode;
    rustix::process::umask(Mode::from_raw_mode(0o077));
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!("cannot mark the process not dumpable: {e}");
    }
}

/// Log to stderr, text or JSON lines, written off the request path (a request never
/// waits for the terminal unless the buffer is full).
pub(crate) fn init_logging(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOTARIUM_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

fn gc(config: &ServerConfig, grace: std::time::Duration, dry_run: bool) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let r = rt
        .block_on(server::collect_garbage(config, grace, dry_run))
        .map_err(|e| e.to_string())?;
    let (verb, removed) = if dry_run {
        ("would delete", "would remove")
    } else {
        ("deleted", "removed")
    };
    println!(
        "{verb} {} blobs ({} bytes); kept {} referenced and {} younger than the grace period; {removed} {} abandoned uploads",
        r.deleted, r.bytes_freed, r.kept, r.young, r.uploads_removed
    );
    Ok(())
}

fn migrate(
    config: &ServerConfig,
    from: Option<String>,
    to: String,
    blobs_from: Option<String>,
    blobs_to: Option<String>,
) -> Result<(), String> {
    use server::db::Database;
    use server::oci::blobs::BlobLocation;
    let from = match from {
        Some(u) => Database::parse(&u).map_err(|e| e.to_string())?,
        None => config.database(),
    };
    let to = Database::parse(&to).map_err(|e| e.to_string())?;
    let blobs = match blobs_to {
        Some(dst) => {
            let src = match blobs_from {
                Some(u) => config.with_s3(BlobLocation::parse(&u)?),
                None => config.blobs(),
            };
            Some((src, config.with_s3(BlobLocation::parse(&dst)?)))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let blobs_shown = blobs.as_ref().map(|(a, b)| format!(", blobs {a} to {b}"));
    eprintln!("copying {from} to {to}{}", blobs_shown.unwrap_or_default());
    let report = rt.block_on(server::migrate(config, &from, &to, blobs))?;
    println!("{report}");
    Ok(())
}

fn user(config: &ServerConfig, action: UserAction) -> Result<(), String> {
    use server::auth::htpasswd;
    let path = config.auth.htpasswd_path(&config.data_dir);
    match action {
        UserAction::Add {
            name,
            password_stdin,
        } => {
            htpasswd::check_user_name(&name)?;
            let password = if password_stdin {
                super::prompt::line_from_stdin()?
            } else {
                let p = super::prompt::secret("Password: ")?;
                if super::prompt::is_terminal() {
                    let again = super::prompt::secret("Repeat password: ")?;
                    if *again != *p {
                        return Err("the passwords do not match".into());
                    }
                }
                p
            };
            let new = htpasswd::set_password(&path, &name, &password, config.auth.bcrypt_cost)
                .map_err(|e| e.to_string())?;
            if new {
                println!("added user {name} to {}", path.display());
            } else {
                println!("changed the password of {name} in {}", path.display());
            }
        }
        UserAction::Remove { name } => {
            if !htpasswd::remove_user(&path, &name).map_err(|e| e.to_string())? {
                return Err(format!("no user {name} in {}", path.display()));
            }
            println!("removed user {name} from {}", path.display());
        }
    }
    Ok(())
}

/// A future that resolves on SIGTERM or SIGINT; the handlers are installed when this
/// returns.
pub(crate) fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
