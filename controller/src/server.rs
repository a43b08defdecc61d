//! The HTTP surface: the attested reconcile endpoint, health, readiness and metrics. [`router`] is public
//! so tests drive it without sockets.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hookgate_filter::attestation::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use hookgate_filter::protocol::ReconcileRequest;
use kube::Client;
use serde_json::json;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;

/// Reconcile requests are a few hundred bytes; anything near this is not from the filter.
const BODY_LIMIT: usize = 1024 * 1024;

pub struct AppState {
    pub reconciler: Reconciler,
    pub client: Client,
    pub attestation_key: Vec<u8>,
    pub tolerance_secs: u64,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<AppState>, reconcile_path: &str) -> Router {
    Router::new()
        .route(reconcile_path, post(reconcile))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn error_response(error: &Error) -> Response {
    (error.status(), Json(json!({ "error": error.to_string() }))).into_response()
}

fn outcome_label(error: &Error) -> &'static str {
    match error {
        Error::Unauthorized(_) => "unauthorized",
        Error::MalformedRequest(_) | Error::InvalidTarget(_) => "bad_request",
        Error::KindNotAllowed { .. } => "kind_not_allowed",
        Error::CrossNamespace { .. } => "cross_namespace",
        Error::AttestationKey(_) | Error::Kube(_) => "error",
    }
}

async fn reconcile(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = attestation::verify(
        &state.attestation_key,
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now,
        state.tolerance_secs,
    )
    .map_err(Error::from)
    .and_then(|()| {
        serde_json::from_slice::<ReconcileRequest>(&body)
            .map_err(|e| Error::MalformedRequest(e.to_string()))
    });
    let request = match verified {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "refused reconcile request");
            state.metrics.request(outcome_label(&error));
            return error_response(&error);
        }
    };
    match state.reconciler.reconcile(&request).await {
        Ok(summary) => {
            let status = summary.status();
            let outcome = match status {
                StatusCode::OK => "ok",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                _ => "failed",
            };
            state.metrics.request(outcome);
            tracing::info!(
                receiver = %summary.receiver,
                delivery = summary.delivery_id.as_deref().unwrap_or("-"),
                event = request.event.as_deref().unwrap_or("-"),
                annotated = summary.annotated,
                failed = summary.failed,
                status = status.as_u16(),
                "reconcile request handled"
            );
            (status, Json(summary)).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, receiver = %format!("{}/{}", request.receiver.namespace, request.receiver.name), "refused reconcile request");
            state.metrics.request(outcome_label(&error));
            error_response(&error)
        }
    }
}

/// Ready only while the API server answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.client.apiserver_version()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("API server: {error}"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "API server: timeout").into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
