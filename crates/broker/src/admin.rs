//! The admin HTTP server: `/metrics` (Prometheus text), `/health` (the
//! process answers) and `/ready` (the broker serves clients: the listener
//! accepts, the data directory takes appends and the group coordinator has
//! loaded; 503 with the reason otherwise).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use rill_log::DirState;

use crate::metrics::{DirLabels, PartitionLabels};
use crate::server::Shared;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let max_connections = shared.config.admin_max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let header_timeout = Duration::from_millis(shared.config.admin_request_timeout_ms);
    let lifetime = Duration::from_millis(shared.config.admin_connection_max_ms);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // A full house closes the newcomer at once: its file descriptor and
        // task cost nothing more, and the connections being served go on.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "refusing admin connection: too many open");
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| answer(shared.clone(), request));
            // The request head must arrive within `header_timeout` of hyper
            // starting to wait for it (a slowloris client trickling header
            // bytes is cut off); the connection as a whole, idle or stalled
            // reading or writing, ends after `lifetime`.
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = tokio::time::sleep(lifetime) => {}
                _ = stop.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            update_log_sizes(&shared);
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                shared.metrics.encode(),
            )
        }
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        (&Method::GET, "/ready") => match not_ready(&shared) {
            None => (StatusCode::OK, "text/plain", "ready\n".to_string()),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", reason),
        },
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is served\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    Ok(response)
}

/// Why the broker cannot serve every client request now, if it cannot.
fn not_ready(shared: &Shared) -> Option<String> {
    let logs = shared.cluster.logs();
    match logs.dir_state() {
        DirState::Online => {}
        DirState::Full => {
            return Some(format!(
                "log directory {} is full: appends are refused until space is freed\n",
                logs.data_dir().display()
            ));
        }
        DirState::Offline => {
            return Some(format!(
                "log directory {} is offline after an IO error: restart the broker\n",
                logs.data_dir().display()
            ));
        }
    }
    if !shared.groups.is_loaded() {
        return Some("the group coordinator is still loading\n".to_string());
    }
    None
}

fn update_log_sizes(shared: &Shared) {
    let logs = shared.cluster.logs();
    let state = logs.dir_state();
    for (name, value) in [
        ("online", DirState::Online),
        ("full", DirState::Full),
        ("offline", DirState::Offline),
    ] {
        let labels = DirLabels {
            dir: logs.data_dir().display().to_string(),
            state: name,
        };
        shared
            .metrics
            .log_dir_state
            .get_or_create(&labels)
            .set(i64::from(state == value));
    }
    let (rounds, waits) = logs.sync_counts();
    let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    shared.metrics.log_sync_rounds.set(clamp(rounds));
    shared.metrics.log_sync_waits.set(clamp(waits));
    let corrupt = i64::try_from(rill_log::corrupt_batches_total()).unwrap_or(i64::MAX);
    shared.metrics.log_corrupt_batches.set(corrupt);
    let cleaner = shared.cluster.logs().cleaner_metrics();
    let metrics = &shared.metrics;
    metrics.cleaner_read_bytes.set(clamp(cleaner.bytes_read));
    metrics
        .cleaner_written_bytes
        .set(clamp(cleaner.bytes_written));
    metrics.cleaner_cleans.set(clamp(cleaner.cleans));
    metrics
        .cleaner_last_clean_seconds
        .set(cleaner.last_clean_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    metrics.quorum.update(&shared.cluster.local_quorum());
    let now = crate::clock::now_ms();
    metrics.forget_topics(|name| shared.cluster.topic(name).is_some());
    let mut current = HashSet::new();
    for topic in shared.cluster.topics() {
        for partition in &topic.partitions {
            let labels = PartitionLabels {
                topic: topic.name.clone(),
                partition: partition.index.to_string(),
            };
            current.insert(labels.clone());
            if let Ok(Some(cleanable)) = partition.log.cleanable(now) {
                metrics
                    .log_dirty_ratio
                    .get_or_create(&labels)
                    .set(cleanable.dirty_ratio);
            }
            let size = i64::try_from(partition.log.size_bytes()).unwrap_or(i64::MAX);
            shared
                .metrics
                .log_size_bytes
                .get_or_create(&labels)
                .set(size);
        }
    }
    metrics.forget_partitions_except(current);
}
