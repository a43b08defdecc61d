//! The HTTP surface: the attested reconcile endpoint, health, readiness and metrics, and with receivers as
//! objects the configuration endpoint the proxies long-poll. [`router`] is public so tests drive it without
//! sockets.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hookgate_protocol::attestation::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use hookgate_protocol::channel::CONFIGURATION_PATH;
use hookgate_protocol::{Action, AttestedRequest, MAX_REQUEST_BYTES};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use crate::dispatch::Dispatcher;
use crate::error::Error;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::receivers::{endpoint, Live};
use crate::reconcile::Reconciler;
use crate::replay::{self, Refusal, ReplayCache};

/// A reconcile request is a few hundred bytes plus the payload fields its target filters read, which the
/// filter forwards up to a receiver's largest `bodyLimit`.
const BODY_LIMIT: usize = MAX_REQUEST_BYTES;

pub struct AppState {
    pub reconciler: Reconciler,
    pub dispatcher: Dispatcher,
    pub client: Client,
    /// The attestation keys (current and previous) and the channel keys, as last read.
    pub keys: watch::Receiver<Arc<Keys>>,
    pub tolerance_secs: u64,
    pub metrics: Arc<Metrics>,
    /// Receivers as objects: what the configuration endpoint serves. `None`: no such endpoint.
    pub live: Option<Live>,
    /// Receivers as objects: posts each proxy VM's confirmation to its webhook listener.
    pub confirmer: Option<crate::receivers::confirm::Confirmer>,
}

/// The router of one controller process. It holds the process's replay cache: call it once per process
/// (each clone of the returned router shares the cache).
pub fn router(state: Arc<AppState>, reconcile_path: &str) -> Router {
    let replay = Arc::new(ReplayCache::new(
        state.tolerance_secs,
        replay::DEFAULT_CAPACITY,
    ));
    let mut router = Router::new().route(reconcile_path, post(reconcile).layer(Extension(replay)));
    if state.live.is_some() {
        router = router.route(CONFIGURATION_PATH, get(endpoint::configuration));
    }
    router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A refused request: counted by its reason, answered with its status, reason and message.
fn refuse(metrics: &Metrics, error: Error) -> Response {
    metrics.request(error.metric_label());
    error.into_response()
}

async fn reconcile(
    State(state): State<Arc<AppState>>,
    Extension(replay): Extension<Arc<ReplayCache>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = state.metrics.in_flight();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let keys = state.keys.borrow().clone();
    let verified = attestation::verify_any(
        &keys
            .attestation
            .iter()
            .map(|k| k.expose())
            .collect::<Vec<_>>(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now,
        state.tolerance_secs,
    )
    .map_err(Error::from)
    .and_then(|verified| {
        replay
            .admit(verified.mac, verified.timestamp, now)
            .map_err(|refusal| match refusal {
                Refusal::Replayed => Error::Replayed,
                Refusal::Full => Error::ReplayCacheFull,
            })
    })
    .and_then(|()| {
        serde_json::from_slice::<AttestedRequest>(&body)
            .map_err(|e| Error::MalformedRequest(e.to_string()))
    });
    let request = match verified {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "refused reconcile request");
            return refuse(&state.metrics, error);
        }
    };
    if request.action == Action::Dispatch {
        return dispatch(&state, &request).await;
    }
    match state.reconciler.reconcile(&request).await {
        Ok(summary) => {
            let outcome = summary.outcome();
            let status = outcome.status();
            state.metrics.request(outcome.metric_label());
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
            refuse(&state.metrics, error)
        }
    }
}

async fn dispatch(state: &AppState, request: &AttestedRequest) -> Response {
    let Some(dispatch) = &request.dispatch else {
        let error = Error::MalformedRequest("action dispatch without dispatch".into());
        return refuse(&state.metrics, error);
    };
    let answer = state.dispatcher.dispatch(dispatch).await;
    state.metrics.request(answer.outcome.metric_label());
    state.metrics.dispatch(answer.outcome.code());
    let mut body = answer.body;
    body["receiver"] = json!(format!(
        "{}/{}",
        request.receiver.namespace, request.receiver.name
    ));
    if let Some(id) = &request.delivery_id {
        body["deliveryId"] = json!(id);
    }
    (answer.outcome.status(), Json(body)).into_response()
}

/// Ready only while the API server answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.client.apiserver_version()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: API server unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "API server unavailable").into_response()
        }
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

/// What the router's tests (here and in the receivers' endpoint) build it from.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::reconcile::Settings;

    /// The state of a controller whose Kubernetes client (and GitHub) point at `api_server`.
    pub fn state(api_server: &str, keys: Keys, live: Option<Live>) -> Arc<AppState> {
        let config = kube::Config::new(api_server.parse().unwrap());
        let metrics = Arc::new(Metrics::default());
        let client = crate::metrics::instrumented_client(config, metrics.clone()).unwrap();
        Arc::new(AppState {
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
            keys: watch::channel(Arc::new(keys)).1,
            tolerance_secs: 60,
            metrics,
            live,
            confirmer: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const KEY: &[u8] = b"router-test-attestation-key-000";

    /// A router whose Kubernetes client points nowhere: every request here is refused before any API call.
    fn app() -> Router {
        app_at("http://127.0.0.1:9")
    }

    fn app_at(api_server: &str) -> Router {
        let keys = Keys {
            attestation: vec![hookgate_protocol::Secret::new(KEY)],
            channel: Vec::new(),
        };
        router(testing::state(api_server, keys, None), "/hook/v1/reconcile")
    }

    /// During a change of attestation key, requests signed with the previous key are accepted too.
    #[tokio::test]
    async fn the_previous_attestation_key_is_accepted_too() {
        const PREVIOUS: &[u8] = b"router-test-previous-attestation-key";
        let (api_server, seen) = recording_api_server().await;
        let keys = Keys {
            attestation: vec![
                hookgate_protocol::Secret::new(KEY),
                hookgate_protocol::Secret::new(PREVIOUS),
            ],
            channel: Vec::new(),
        };
        let app = router(
            testing::state(&api_server, keys, None),
            "/hook/v1/reconcile",
        );
        let body = request(r#"[{"kind":"GitRepository","name":"webapp"}]"#);
        for (name, key, expected) in [
            ("current", KEY, StatusCode::NOT_FOUND),
            ("previous", PREVIOUS, StatusCode::NOT_FOUND),
            (
                "another",
                b"router-test-another-attestation-key".as_slice(),
                StatusCode::UNAUTHORIZED,
            ),
        ] {
            let ts = now();
            let signed = Request::post("/hook/v1/reconcile")
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(
                    SIGNATURE_HEADER,
                    attestation::sign(key, ts, body.as_bytes()),
                )
                .body(Body::from(body.clone()))
                .unwrap();
            let (status, reply) = send(&app, signed).await;
            assert_eq!(status, expected, "{name}: {reply}");
        }
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    type Seen = Arc<std::sync::Mutex<Vec<String>>>;

    /// A stand-in API server that records every request it gets (method and path with query) and answers
    /// each with Kubernetes' 404 Status.
    async fn recording_api_server() -> (String, Seen) {
        api_server(|_| api_status(404, "not found")).await
    }

    fn api_status(code: u16, message: &str) -> (StatusCode, serde_json::Value) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": code, "message": message});
        (StatusCode::from_u16(code).unwrap(), status)
    }

    /// A stand-in API server answering `respond(method and path with query)`, recording every request.
    async fn api_server(respond: fn(&str) -> (StatusCode, serde_json::Value)) -> (String, Seen) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let api = Router::new().fallback(move |request: Request<Body>| {
            let record = record.clone();
            async move {
                let line = format!("{} {}", request.method(), request.uri());
                record.lock().unwrap().push(line.clone());
                let (status, body) = respond(&line);
                (status, Json(body))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
        (url, seen)
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn signed(body: &str, timestamp: u64) -> Request<Body> {
        Request::post("/hook/v1/reconcile")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                attestation::sign(KEY, timestamp, body.as_bytes()),
            )
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn call(body: &str, signed: bool) -> (StatusCode, serde_json::Value) {
        let request = if signed {
            self::signed(body, now())
        } else {
            Request::post("/hook/v1/reconcile")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        send(&app(), request).await
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
        let (status, _) = call(&request("[]"), true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    /// Fields that reach API paths and label selectors are checked with Kubernetes' rules, kinds against the
    /// allow-list and namespaces against the receiver's: a target refused there gets its own status in the
    /// reply and no API call, and the other targets are applied, as Flux goes on past a failing resource
    /// (the answer is then 500, as Flux's).
    #[tokio::test]
    async fn a_refused_target_is_reported_alone_and_the_others_are_applied() {
        let cases = [
            (
                "apiVersion with a path",
                r#"{"apiVersion":"source.toolkit.fluxcd.io/v1/namespaces/other/gitrepositories/x","kind":"GitRepository","name":"webapp"}"#,
                "invalid",
            ),
            (
                "matchLabels value with a selector",
                r#"{"kind":"Kustomization","name":"*","matchLabels":{"app":"a,env!=prod"}}"#,
                "invalid",
            ),
            (
                "matchLabels key with a selector",
                r#"{"kind":"Kustomization","name":"*","matchLabels":{"app!":"a"}}"#,
                "invalid",
            ),
            (
                "a wildcard without labels",
                r#"{"kind":"Kustomization","name":"*"}"#,
                "invalid",
            ),
            (
                "name with a path",
                r#"{"kind":"GitRepository","name":"webapp/status"}"#,
                "invalid",
            ),
            (
                "name with a query",
                r#"{"kind":"GitRepository","name":"webapp?dryRun=All"}"#,
                "invalid",
            ),
            (
                "namespace with a path",
                r#"{"kind":"GitRepository","name":"webapp","namespace":"flux-system/gitrepositories"}"#,
                "invalid",
            ),
            (
                "a kind outside the allow-list",
                r#"{"apiVersion":"v1","kind":"Secret","name":"x"}"#,
                "kind_not_allowed",
            ),
            (
                "an allowed kind of another group",
                r#"{"apiVersion":"evil.example.com/v1","kind":"GitRepository","name":"x"}"#,
                "kind_not_allowed",
            ),
            (
                "another namespace",
                r#"{"kind":"GitRepository","name":"x","namespace":"other"}"#,
                "cross_namespace",
            ),
        ];
        for (case, refused, code) in cases {
            let (api_server, seen) = recording_api_server().await;
            let app = app_at(&api_server);
            let targets = format!(r#"[{refused},{{"kind":"GitRepository","name":"webapp"}}]"#);
            let (status, body) = send(&app, signed(&request(&targets), now())).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{case}: {body}");
            let statuses: Vec<&str> = body["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["status"].as_str().unwrap())
                .collect();
            assert_eq!(statuses, [code, "not_found"], "{case}: {body}");
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 1, "{case}: only the valid target: {seen:?}");
            assert!(
                seen[0].starts_with(
                    "PATCH /apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/webapp?"
                ),
                "{case}: {seen:?}"
            );
        }
        let (api_server, seen) = recording_api_server().await;
        let app = app_at(&api_server);
        let malformed_receiver = r#"{"receiver":{"namespace":"flux-system/gitrepositories","name":"r"},"type":"github","targets":[{"kind":"GitRepository","name":"x"}]}"#;
        let (status, body) = send(&app, signed(malformed_receiver, now())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(seen.lock().unwrap().len(), 0, "receiver: no API call");
    }

    /// The filter forwards the payload fields the target filters read, up to a receiver's largest
    /// `bodyLimit`: the controller reads a request that large (a 1 MiB limit answered 413 to a verified
    /// delivery whose filters read a 2 MiB field).
    #[tokio::test]
    async fn a_request_carrying_a_large_payload_is_read() {
        let (api_server, seen) = recording_api_server().await;
        let app = app_at(&api_server);
        let notes = "x".repeat(2 * 1024 * 1024);
        let body = format!(
            r#"{{"receiver":{{"namespace":"flux-system","name":"r"}},"type":"github","targets":[{{"kind":"GitRepository","name":"webapp","filter":"size(req.notes) > 0"}}],"payload":{{"notes":"{notes}"}}}}"#
        );
        let (status, reply) = send(&app, signed(&body, now())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
        assert_eq!(seen.lock().unwrap().len(), 1, "the target was listed");
    }

    /// An attested request is accepted once: the same signature again within the window is refused with
    /// 401 before any API call; another signature (a later timestamp) takes the accepted path.
    #[tokio::test]
    async fn a_replayed_attestation_is_refused() {
        let (api_server, seen) = recording_api_server().await;
        let app = app_at(&api_server);
        let body = request(r#"[{"kind":"GitRepository","name":"webapp"}]"#);
        let ts = now();
        let (status, reply) = send(&app, signed(&body, ts)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "accepted: {reply}");
        assert_eq!(seen.lock().unwrap().len(), 1);

        let (status, reply) = send(&app, signed(&body, ts)).await;
        assert_eq!(
            (status, &reply),
            (
                StatusCode::UNAUTHORIZED,
                &json!({"error": "attestation already used", "reason": "replayed"})
            )
        );
        // The same MAC written in upper-case hex is the same signature.
        let mut upper = signed(&body, ts);
        let value = upper.headers()[SIGNATURE_HEADER]
            .to_str()
            .unwrap()
            .replacen("v1=", "", 1)
            .to_uppercase();
        upper
            .headers_mut()
            .insert(SIGNATURE_HEADER, format!("v1={value}").parse().unwrap());
        let (status, reply) = send(&app, upper).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
        assert_eq!(seen.lock().unwrap().len(), 1, "a replay reaches nothing");

        let (status, reply) = send(&app, signed(&body, ts - 1)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another signature: {reply}");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    const DENIED: &str =
        "kustomizations.kustomize.toolkit.fluxcd.io \"matched-object-2\" is forbidden: \
        User \"system:serviceaccount:hookgate-system:hookgate-controller\" cannot patch resource \
        \"kustomizations\" (groups [\"system:serviceaccounts\" \"system:authenticated\"])";

    /// Targets: a wildcard and a named GitRepository.
    const WILDCARD_AND_NAMED: &str = r#"[{"kind":"Kustomization","name":"*","matchLabels":{"app":"webapp"}},{"kind":"GitRepository","name":"webapp"}]"#;

    /// An API server where the wildcard matches two objects and only the first may be patched: every other
    /// patch is refused with `DENIED`.
    fn two_matches_one_patchable(line: &str) -> (StatusCode, serde_json::Value) {
        let meta = |name: &str| {
            json!({"apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata", "metadata": {"name": name}})
        };
        if line.starts_with("GET ") {
            let items = [meta("matched-object-1"), meta("matched-object-2")];
            (
                StatusCode::OK,
                json!({"apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
            )
        } else if line.contains("/matched-object-1?") {
            (StatusCode::OK, meta("matched-object-1"))
        } else {
            api_status(403, DENIED)
        }
    }

    /// A target filter may spend its whole step budget (`req.a.exists(x, 1 in req.a)` on 20,000 zeros). It
    /// runs on the blocking pool, so the async worker keeps serving: on this single-threaded runtime a task
    /// ticking every millisecond never waits as long as one evaluation takes (it waited for both of the
    /// wildcard's evaluations when they ran on the worker).
    #[tokio::test]
    async fn a_filter_spending_its_budget_leaves_the_async_worker_free() {
        use hookgate_cel::{from_json, Expression, TARGET_VARIABLES};
        let filter = "req.a.exists(x, 1 in req.a)";
        let payload = json!({"a": vec![0; 20_000]});
        let expression = Expression::compile(filter, TARGET_VARIABLES).unwrap();
        let started = std::time::Instant::now();
        let variables = vec![("res", from_json(&json!({}))), ("req", from_json(&payload))];
        assert!(
            expression.evaluate(variables).is_err(),
            "the budget ends it"
        );
        let one_evaluation = started.elapsed();

        let (api_server, _) = api_server(two_matches_one_patchable).await;
        let app = app_at(&api_server);
        let body = json!({"receiver": {"namespace": "flux-system", "name": "r"}, "type": "github",
            "targets": [{"kind": "Kustomization", "name": "*", "matchLabels": {"app": "webapp"},
                         "filter": filter}],
            "payload": payload})
        .to_string();
        let ticks = Arc::new(std::sync::Mutex::new(vec![std::time::Instant::now()]));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    ticks.lock().unwrap().push(std::time::Instant::now());
                }
            }
        });
        let (status, reply) = send(&app, signed(&body, now())).await;
        ticker.abort();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reply}");
        assert_eq!(reply["targets"][0]["counts"], json!({"filter_error": 2}));
        let ticks = ticks.lock().unwrap();
        let longest_wait = ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            longest_wait < one_evaluation,
            "the worker waited {longest_wait:?}; one evaluation takes {one_evaluation:?}"
        );
    }

    /// The metrics of one request whose wildcard matched two objects (one patch refused) and whose named
    /// target was refused: every API call, patch, annotation and the request are counted by their labels.
    #[tokio::test]
    async fn metrics_count_requests_patches_annotations_and_api_errors() {
        let (api_server, _) = api_server(two_matches_one_patchable).await;
        let app = app_at(&api_server);
        let body = request(WILDCARD_AND_NAMED);
        let (status, _) = send(&app, signed(&body, now())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let response = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let text = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        for line in [
            r#"hookgate_requests_total{outcome="failed"} 1"#,
            "hookgate_requests_in_flight 0",
            r#"hookgate_api_errors_total{code="403"} 2"#,
            r#"hookgate_patches_total{kind="Kustomization",outcome="annotated"} 1"#,
            r#"hookgate_patches_total{kind="Kustomization",outcome="forbidden"} 1"#,
            r#"hookgate_patches_total{kind="GitRepository",outcome="forbidden"} 1"#,
            r#"hookgate_annotations_total{kind="Kustomization",outcome="forbidden"} 1"#,
            r#"hookgate_annotations_total{kind="GitRepository",outcome="forbidden"} 1"#,
            "hookgate_patch_duration_seconds_count 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    /// The API server's message names the ServiceAccount and its groups; a wildcard's matches are object
    /// names the provider never configured. The reply carries the configured target, a status code and
    /// counts, and neither of those.
    #[tokio::test]
    async fn replies_carry_codes_not_api_messages_or_matched_names() {
        let (api_server, seen) = api_server(two_matches_one_patchable).await;
        let app = app_at(&api_server);
        let body = request(WILDCARD_AND_NAMED);
        let sent_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let (status, mut reply) = send(&app, signed(&body, now())).await;
        assert_eq!(seen.lock().unwrap().len(), 4, "{:?}", seen.lock().unwrap());
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        // The one annotated object's patch started after the request was sent.
        let written = reply["targets"][0]
            .as_object_mut()
            .unwrap()
            .remove("requestedAt")
            .unwrap();
        assert!(written.as_str().unwrap() > sent_at.as_str(), "{written}");
        assert_eq!(
            reply,
            json!({"receiver": "flux-system/r", "annotated": 1, "failed": 2, "targets": [
                {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                 "namespace": "flux-system", "name": "*", "matchLabels": {"app": "webapp"},
                 "status": "forbidden", "matched": 2, "counts": {"annotated": 1, "forbidden": 1}},
                {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                 "namespace": "flux-system", "name": "webapp", "status": "forbidden"},
            ]})
        );
        let text = reply.to_string();
        for internal in [
            "matched-object",
            "system:",
            "hookgate-controller",
            "cannot patch",
        ] {
            assert!(!text.contains(internal), "{internal} in {text}");
        }
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
