//! A tiny in-process HTTP(S) server for fake peers (a malicious trust server, a registry
//! with token auth): every request goes to one handler; it stops when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

pub type Response = hyper::Response<Full<Bytes>>;
pub type Handler = Arc<dyn Fn(&hyper::http::request::Parts, Bytes) -> Response + Send + Sync>;

pub struct Served {
    pub addr: SocketAddr,
    /// `https://addr` or `http://addr`.
    pub url: String,
    /// The CA certificate that signed the server's certificate (HTTPS only).
    pub ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A response with a status, headers and a body.
pub fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response {
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).unwrap()
}

pub fn serve(tls: bool, handler: Handler) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca) = if tls {
        let t = server::tls::ensure_generated(&dir.path().join("tls"), &[]).unwrap();
        let served = server::tls::Served::load(t.clone(), None).unwrap();
        let cfg = server::tls::server_config(std::sync::Arc::new(served)).unwrap();
        (Some(tokio_rustls::TlsAcceptor::from(cfg)), t.ca)
    } else {
        (None, None)
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ready_tx.send(listener.local_addr().unwrap()).unwrap();
            let mut stop_rx = stop_rx;
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => r.unwrap(),
                    _ = &mut stop_rx => break,
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let handler = handler.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                Ok::<_, std::convert::Infallible>(handler(&parts, body))
                            }
                        },
                    );
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    match acceptor {
                        Some(a) => {
                            let Ok(tls) = a.accept(stream).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
    });
    let addr = ready_rx.recv().unwrap();
    Served {
        addr,
        url: format!("{}://{addr}", if tls { "https" } else { "http" }),
        ca,
        _dir: dir,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Served {
    /// Trust this server's CA as docker does for `host:port`.
    pub fn install_ca_for_docker(&self, docker_config: &std::path::Path) {
        let dir = docker_config.join("tls").join(self.addr.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.ca.as_ref().unwrap(), dir.join("ca.crt")).unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
