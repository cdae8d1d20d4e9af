//! `POST /verify`, `POST /admission/validate` and `POST /admission/mutate` (`[admission]`;
//! 404 without it). The decisions are `trust_client::admission`'s; here: the bounded
//! body, the first fetch of a repository never seen (bounded by `fetch_timeout_secs`,
//! several at once), and the blocking parts kept off the async workers.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use registry::Reference;
use serde_json::json;
use trust_client::admission::verifier::Verifier;
use trust_client::admission::{review, Verdict};

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&v).unwrap_or_default(),
    )
        .into_response()
}

fn bad(msg: impl Into<String>) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": msg.into()}))
}

/// The body, at most `max` bytes (`[admission] max_body_bytes`): a review or a list of
/// images is small, a Pod with many containers still far below 3 MiB.
async fn body(req: Request, max: usize) -> Result<bytes::Bytes, Response> {
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("at most {max} bytes")}),
        )),
    }
}

/// Make sure every repository of `images` has been fetched once (the ones never seen are
/// fetched together, each waited for at most `timeout`).
async fn prefetch(v: &Arc<Verifier>, images: &[String], timeout: std::time::Duration) {
    let mut pending = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for image in images {
        let Ok(r) = Reference::parse(image) else {
            continue;
        };
        if v.cached(&r).is_some() || !seen.insert(r.name()) {
            continue;
        }
        let (v2, r2) = (v.clone(), r.clone());
        let task = tokio::task::spawn_blocking(move || v2.fetch(&r2));
        pending.push((r, tokio::time::timeout(timeout, task)));
    }
    for (r, wait) in pending {
        if wait.await.is_err() {
            v.note_timeout(&r, timeout);
        }
    }
}

/// The admission of a server: its verifier and how long a first fetch may take.
#[derive(Clone)]
pub struct Admission {
    pub verifier: Arc<Verifier>,
    pub fetch_timeout: std::time::Duration,
    pub max_body_bytes: usize,
    pub max_images: usize,
}

impl Admission {
    pub fn new(a: &crate::config::Admission, default_dir: &std::path::Path) -> Admission {
        let dir = a
            .docker_config
            .clone()
            .unwrap_or_else(|| default_dir.to_path_buf());
        Admission {
            verifier: Arc::new(
                Verifier::new(
                    a.policy.clone(),
                    Arc::new(trust_client::admission::verifier::Remote { config_dir: dir }),
                )
                .with_refresh(a.refresh_every),
            ),
            fetch_timeout: a.fetch_timeout,
            max_body_bytes: a.max_body_bytes,
            max_images: a.max_images,
        }
    }
}

/// `POST /verify`, `/admission/validate`, `/admission/mutate` (404 for anything else).
pub async fn route(adm: &Admission, req: Request) -> Response {
    match (req.method().clone(), req.uri().path()) {
        (http::Method::POST, "/verify") => verify(adm, req).await,
        (http::Method::POST, "/admission/validate") => review(adm, req, false).await,
        (http::Method::POST, "/admission/mutate") => review(adm, req, true).await,
        (http::Method::GET, "/healthz") => json_response(StatusCode::OK, json!({})),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /verify`: `{"images": [...]}` → `{"results": [{image, allowed, digest, reason}]}`.
pub async fn verify(adm: &Admission, req: Request) -> Response {
    let (v, timeout) = (adm.verifier.clone(), adm.fetch_timeout);
    let b = match body(req, adm.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    #[derive(serde::Deserialize)]
    struct Ask {
        images: Vec<String>,
    }
    let ask: Ask = match serde_json::from_slice(&b) {
        Ok(a) => a,
        Err(e) => return bad(format!("expected {{\"images\": [\"repo:tag\", …]}}: {e}")),
    };
    if ask.images.len() > adm.max_images {
        return bad(format!("at most {} images per request", adm.max_images));
    }
    prefetch(&v, &ask.images, timeout).await;
    let results: Vec<Verdict> = ask
        .images
        .iter()
        .map(|i| {
            let entry = Reference::parse(i).ok().and_then(|r| v.cached(&r));
            v.verdict(i, entry, false)
        })
        .collect();
    json_response(StatusCode::OK, json!({ "results": results }))
}

/// `POST /admission/validate` and `/admission/mutate`: an AdmissionReview answered.
pub async fn review(adm: &Admission, req: Request, mutate: bool) -> Response {
    let (v, timeout) = (adm.verifier.clone(), adm.fetch_timeout);
    let b = match body(req, adm.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // The images first, so their repositories are fetched before answering.
    let images: Vec<String> = serde_json::from_slice::<serde_json::Value>(&b)
        .ok()
        .map(|r| {
            let kind = r["request"]["kind"]["kind"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            review::images(&kind, &r["request"]["object"])
                .into_iter()
                .map(|(_, i)| i)
                .collect()
        })
        .unwrap_or_default();
    prefetch(&v, &images, timeout).await;
    // Validating asks the registry what a tag serves now: blocking, off the workers.
    let answered = tokio::task::spawn_blocking(move || {
        review::answer(&b, mutate, |image| {
            let entry = Reference::parse(image).ok().and_then(|r| v.cached(&r));
            v.verdict(image, entry, !mutate)
        })
    })
    .await;
    match answered {
        Ok(Ok(answer)) => json_response(StatusCode::OK, answer),
        Ok(Err(e)) => bad(e.0),
        Err(e) => {
            tracing::error!("admission review: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `notarium admission`: the same routes as their own process, on `listener` (TLS when
/// `tls` is given: its certificate renewed or reloaded hourly, as `notarium server`'s)
/// until `shutdown`; at most `max_connections` at once, a TLS handshake and a request
/// head each bounded by `timeout`.
pub async fn serve_alone(
    listener: tokio::net::TcpListener,
    adm: Admission,
    tls: Option<Arc<crate::tls::Served>>,
    max_connections: usize,
    timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), crate::tls::TlsError> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let acceptor = match &tls {
        Some(served) => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
            served.clone(),
        )?)),
        None => None,
    };
    let refresh = {
        let v = adm.verifier.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(v.refresh_every()).await;
                let v2 = v.clone();
                let _ = tokio::task::spawn_blocking(move || v2.refresh_all()).await;
            }
        })
    };
    let renew = tls.map(|served| {
        tokio::spawn(async move {
            let mut warned = None;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                let s = served.clone();
                warned = tokio::task::spawn_blocking(move || {
                    crate::check_tls(&s, &mut warned);
                    warned
                })
                .await
                .unwrap_or(None);
            }
        })
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // over the bound: the connection is dropped
        };
        let (adm, acceptor) = (adm.clone(), acceptor.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let adm = adm.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            route(&adm, req.map(axum::body::Body::new)).await,
                        )
                    }
                });
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
            let _ = match acceptor {
                Some(acc) => match tokio::time::timeout(timeout, acc.accept(stream)).await {
                    Ok(Ok(s)) => b.serve_connection(TokioIo::new(s), svc).await,
                    _ => return,
                },
                None => b.serve_connection(TokioIo::new(stream), svc).await,
            };
            drop(slot);
        });
    }
    refresh.abort();
    if let Some(r) = renew {
        r.abort();
    }
    Ok(())
}
