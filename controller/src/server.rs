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
use hookgate_filter::protocol::{Action, ReconcileRequest};
use kube::Client;
use serde_json::json;

use crate::dispatch::Dispatcher;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;

/// Reconcile requests are a few hundred bytes; anything near this is not from the filter.
const BODY_LIMIT: usize = 1024 * 1024;

pub struct AppState {
    pub reconciler: Reconciler,
    pub dispatcher: Dispatcher,
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
    if request.action == Action::Dispatch {
        return dispatch(&state, &request).await;
    }
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

async fn dispatch(state: &AppState, request: &ReconcileRequest) -> Response {
    let Some(dispatch) = &request.dispatch else {
        let error = Error::MalformedRequest("action dispatch without dispatch".into());
        state.metrics.request(outcome_label(&error));
        return error_response(&error);
    };
    let answer = state.dispatcher.dispatch(dispatch).await;
    state
        .metrics
        .request(&format!("dispatch_{}", answer.outcome));
    let mut body = answer.body;
    body["receiver"] = json!(format!(
        "{}/{}",
        request.receiver.namespace, request.receiver.name
    ));
    if let Some(id) = &request.delivery_id {
        body["deliveryId"] = json!(id);
    }
    (answer.status, Json(body)).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Settings;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const KEY: &[u8] = b"router-test-attestation-key-000";

    /// A router whose Kubernetes client points nowhere: every request here is refused before any API call.
    fn app() -> Router {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let metrics = Arc::new(Metrics::default());
        let state = Arc::new(AppState {
            reconciler: Reconciler::new(client.clone(), Settings::default(), metrics.clone()),
            dispatcher: Dispatcher::new(
                client.clone(),
                crate::dispatch::DispatchSettings {
                    api_url: "http://127.0.0.1:9".into(),
                    token_file: None,
                    dedup_window: Duration::from_secs(600),
                    deadline: Duration::from_secs(1),
                    namespace: "hookgate-system".into(),
                    identity: "test".into(),
                },
            )
            .unwrap(),
            client,
            attestation_key: KEY.to_vec(),
            tolerance_secs: 60,
            metrics,
        });
        router(state, "/hook/v1/reconcile")
    }

    async fn call(body: &str, signed: bool) -> (StatusCode, serde_json::Value) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut request = Request::post("/hook/v1/reconcile");
        if signed {
            request = request.header(TIMESTAMP_HEADER, now.to_string()).header(
                SIGNATURE_HEADER,
                attestation::sign(KEY, now, body.as_bytes()),
            );
        }
        let response = app()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn request(targets: &str) -> String {
        format!(
            r#"{{"receiver":{{"namespace":"flux-system","name":"r"}},"type":"github","targets":{targets}}}"#
        )
    }

    #[tokio::test]
    async fn refusals_name_the_reason() {
        let (status, body) =
            call(&request(r#"[{"kind":"GitRepository","name":"x"}]"#), false).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (StatusCode::UNAUTHORIZED, "missing attestation timestamp")
        );
        let (status, body) = call("{}", true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed reconcile request"));
        let (status, _) = call(&request(r#"[{"kind":"ConfigMap","name":"x"}]"#), true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = call(
            &request(r#"[{"kind":"GitRepository","name":"x","namespace":"other"}]"#),
            true,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&request("[]"), true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn unreachable_api_server_is_not_ready() {
        let response = app()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = app()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
