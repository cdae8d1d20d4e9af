//! `notarium admission`: `/verify` and the Kubernetes webhooks as their own process (no
//! trust server, no registry), with its own TLS: the operator's certificate, or a CA and
//! certificate generated under `--data-dir` (as `notarium server` does).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

#[derive(Args)]
pub struct AdmissionArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: SocketAddr,
    /// TOML file with an `[admission]` table (a `notarium server` config file does).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Generated TLS files (`<dir>/tls/`) and the default trust configuration
    /// (`<dir>/admission/`).
    #[arg(long, value_name = "DIR", default_value = "./notarium-admission")]
    data_dir: PathBuf,
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Another name the generated certificate is valid for (repeatable).
    #[arg(long, value_name = "NAME")]
    tls_san: Vec<String>,
}

#[derive(serde::Deserialize)]
struct File {
    admission: trust_client::admission::policy::AdmissionFile,
}

pub fn run(args: AdmissionArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let settings = server::config::Admission::from_file(&f.admission)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    let _log = super::server::init_logging(false);
    keys::store::create_private_dir(&args.data_dir).map_err(|e| e.to_string())?;
    // Generated files are renewed while running (the CA is here); the operator's are
    // loaded again when they change.
    let (files, generated) = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => (
            server::tls::TlsFiles {
                ca: None,
                cert,
                key,
            },
            None,
        ),
        _ => (
            server::tls::ensure_generated(&args.data_dir.join("tls"), &args.tls_san)
                .map_err(|e| e.to_string())?,
            Some(args.tls_san.clone()),
        ),
    };
    let served =
        Arc::new(server::tls::Served::load(files.clone(), generated).map_err(|e| e.to_string())?);
    let adm = server::admission::Admission::new(&settings, &args.data_dir.join("admission"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let shutdown = super::server::shutdown_signal()?;
        let ca = files
            .ca
            .as_ref()
            .map(|c| format!(" (CA certificate: {})", c.display()))
            .unwrap_or_default();
        println!("notarium admission ready at https://{local}{ca}");
        let _ = std::io::stdout().flush();
        server::admission::serve_alone(
            listener,
            adm,
            Some(served),
            1024,
            std::time::Duration::from_secs(10),
            shutdown,
        )
        .await
        .map_err(|e| e.to_string())
    })
}
