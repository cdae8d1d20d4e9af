//! Prometheus text metrics: request counts and latency per operation (the reference's
//! operation names), and the process's resident memory.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    UpdateTuf,
    GetRoleByHash,
    GetRoleByVersion,
    GetRole,
    GetKey,
    RotateKey,
    DeleteTuf,
    Changefeed,
    Registry,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::UpdateTuf => "UpdateTUF",
            Operation::GetRoleByHash => "GetRoleByHash",
            Operation::GetRoleByVersion => "GetRoleByVersion",
            Operation::GetRole => "GetRole",
            Operation::GetKey => "GetKey",
            Operation::RotateKey => "RotateKey",
            Operation::DeleteTuf => "DeleteTUF",
            Operation::Changefeed => "Changefeed",
            Operation::Registry => "Registry",
        }
    }
}

const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(Operation, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, op: Operation, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry((op, status)).or_default();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self) -> Response {
        let mut out = String::new();
        out.push_str(
            "# HELP notary_server_http_requests_total Requests handled, by operation and status.\n",
        );
        out.push_str("# TYPE notary_server_http_requests_total counter\n");
        let m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for ((op, code), s) in m.iter() {
            out.push_str(&format!(
                "notary_server_http_requests_total{{operation=\"{}\",code=\"{code}\"}} {}\n",
                op.name(),
                s.count
            ));
        }
        out.push_str(
            "# HELP notary_server_http_request_duration_seconds Request latency, by operation.\n",
        );
        out.push_str("# TYPE notary_server_http_request_duration_seconds histogram\n");
        let mut by_op: BTreeMap<Operation, Series> = BTreeMap::new();
        for ((op, _), s) in m.iter() {
            let t = by_op.entry(*op).or_default();
            t.count += s.count;
            t.sum += s.sum;
            for i in 0..BUCKETS.len() {
                t.buckets[i] += s.buckets[i];
            }
        }
        for (op, s) in by_op {
            let name = op.name();
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "notary_server_http_request_duration_seconds_bucket{{operation=\"{name}\",le=\"{b}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            out.push_str(&format!(
                "notary_server_http_request_duration_seconds_bucket{{operation=\"{name}\",le=\"+Inf\"}} {}\n",
                s.count
            ));
            out.push_str(&format!(
                "notary_server_http_request_duration_seconds_sum{{operation=\"{name}\"}} {}\n",
                s.sum
            ));
            out.push_str(&format!(
                "notary_server_http_request_duration_seconds_count{{operation=\"{name}\"}} {}\n",
                s.count
            ));
        }
        drop(m);
        if let Some(rss) = resident_bytes() {
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
            out.push_str("# TYPE process_resident_memory_bytes gauge\n");
            out.push_str(&format!("process_resident_memory_bytes {rss}\n"));
        }
        let mut r = out.into_response();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }
}

/// Resident set size from /proc (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
