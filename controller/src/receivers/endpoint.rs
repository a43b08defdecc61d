//! `GET /hookgate/v1/configuration`: the filter's long poll for its configuration. A request signed with a
//! channel key, fresh and not seen before, gets the configuration sealed for it when the caller does not
//! serve it yet (200), else is held until the configuration changes, at most [`LONG_POLL_SECS`], and
//! answered 304. Before the first compile: 503. Anything not signed with a channel key: 401, empty.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hookgate_protocol::channel::{self, ConfigRequest, Known, LONG_POLL_SECS};

use super::index::Configuration;
use crate::metrics::Metrics;
use crate::replay::Refusal;
use crate::server::AppState;

/// Whether a caller serving `known` is up to date with `current`: it serves the same content, or a
/// configuration of a later generation (from another replica, ahead of this one).
pub fn up_to_date(current: &Configuration, known: &Known) -> bool {
    known.digest.as_deref() == Some(current.digest.as_str())
        || known.generation > current.generation
}

fn answer(metrics: &Metrics, outcome: &str, status: StatusCode) -> Response {
    metrics.configuration_request(outcome);
    status.into_response()
}

pub async fn configuration(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(live) = &state.live else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let keys = state.keys.borrow().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = match ConfigRequest::verify(header, &keys.channel, now) {
        Ok(verified) => verified,
        Err(error) => {
            tracing::info!(%error, "refused a configuration request");
            return answer(&state.metrics, "unauthorized", StatusCode::UNAUTHORIZED);
        }
    };
    let request = verified.request;
    match live.replay.admit(verified.mac, request.timestamp, now) {
        Ok(()) => {}
        Err(Refusal::Replayed) => {
            tracing::warn!(proxy = %request.proxy, "refused a replayed configuration request");
            return answer(&state.metrics, "replayed", StatusCode::UNAUTHORIZED);
        }
        Err(Refusal::Full) => {
            return answer(
                &state.metrics,
                "overloaded",
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    }
    live.proxies
        .record(&request.proxy, &request.known, Instant::now());
    let key = &keys.channel[verified.key_index];
    let mut configuration = live.configuration.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LONG_POLL_SECS);
    loop {
        let Some(current) = configuration.borrow_and_update().clone() else {
            return answer(
                &state.metrics,
                "not_compiled",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        };
        if !up_to_date(&current, &request.known) {
            let mut aead_nonce = [0u8; 24];
            if getrandom::fill(&mut aead_nonce).is_err() {
                tracing::error!("no randomness available to seal the configuration");
                return answer(&state.metrics, "failed", StatusCode::INTERNAL_SERVER_ERROR);
            }
            let envelope = channel::seal(
                key,
                current.generation,
                &request.nonce,
                &current.document,
                aead_nonce,
            );
            tracing::debug!(proxy = %request.proxy, generation = current.generation, "configuration sent");
            state.metrics.configuration_request("sent");
            let content_type = [(http::header::CONTENT_TYPE, "application/octet-stream")];
            return (StatusCode::OK, content_type, envelope).into_response();
        }
        match tokio::time::timeout_at(deadline, configuration.changed()).await {
            Ok(Ok(())) => continue,
            // The deadline, or the index stopped (the controller is shutting down).
            Ok(Err(_)) | Err(_) => {
                return answer(&state.metrics, "not_modified", StatusCode::NOT_MODIFIED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::receivers::Live;
    use crate::server::{router, testing};
    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use hookgate_protocol::channel::{open, ChannelKey, Opened, KNOWN_HEADER};
    use hookgate_protocol::Secret;
    use tokio::sync::watch;
    use tower::ServiceExt;

    const CURRENT: &[u8] = b"endpoint-test-channel-key-0123456789";
    const PREVIOUS: &[u8] = b"endpoint-test-previous-channel-key-0123";
    const DOCUMENT: &[u8] = br#"{"attestationKey":"hunter2-attestation","receivers":[]}"#;

    fn key(material: &[u8]) -> ChannelKey {
        ChannelKey::new(material).unwrap()
    }

    struct Harness {
        app: Router,
        publish: watch::Sender<Option<Arc<Configuration>>>,
        state: Arc<AppState>,
    }

    fn harness() -> Harness {
        let (publish, configuration) = watch::channel(None);
        let keys = Keys {
            attestation: vec![Secret::from("endpoint-test-attestation-key")],
            channel: vec![key(CURRENT), key(PREVIOUS)],
        };
        let state = testing::state("http://127.0.0.1:9", keys, Some(Live::new(configuration)));
        Harness {
            app: router(state.clone(), hookgate_protocol::DEFAULT_FORWARD_PATH),
            publish,
            state,
        }
    }

    fn publish(harness: &Harness, generation: u64, document: &[u8]) {
        harness.publish.send_replace(Some(Arc::new(Configuration {
            generation,
            digest: channel::digest(document),
            document: document.to_vec(),
        })));
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn request(nonce: &str, known: Known) -> ConfigRequest {
        ConfigRequest {
            timestamp: now(),
            nonce: nonce.into(),
            known,
            proxy: "envoy-1/10.0.0.1".into(),
        }
    }

    fn http(signed: &[(&'static str, String)]) -> Request<Body> {
        let mut builder = Request::get(channel::CONFIGURATION_PATH);
        for (name, value) in signed {
            builder = builder.header(*name, value);
        }
        builder.body(Body::empty()).unwrap()
    }

    async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, content_type, body.to_vec())
    }

    fn known(generation: u64, document: &[u8]) -> Known {
        Known {
            generation,
            digest: Some(channel::digest(document)),
        }
    }

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[tokio::test]
    async fn a_signed_request_gets_the_configuration_sealed_for_it() {
        let harness = harness();
        let (status, _, _) = call(
            &harness.app,
            http(&request(NONCE, Known::default()).headers(&key(CURRENT))),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "before the first compile"
        );
        publish(&harness, 42, DOCUMENT);
        let nonce = "ffeeddccbbaa99887766554433221100";
        for (name, material) in [("current", CURRENT), ("previous", PREVIOUS)] {
            let nonce = format!("{}{}", &nonce[..31], name.len() % 10);
            let headers = request(&nonce, Known::default()).headers(&key(material));
            let (status, content_type, body) = call(&harness.app, http(&headers)).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
            // Sealed under the key the request was signed with, for the request's nonce only.
            assert_eq!(
                open(&[key(material)], &nonce, &body),
                Ok(Opened {
                    generation: 42,
                    document: DOCUMENT.to_vec()
                }),
                "{name}"
            );
            assert!(open(&[key(material)], NONCE, &body).is_err(), "{name}");
            assert!(
                !body.windows(7).any(|w| w == b"hunter2"),
                "{name}: encrypted"
            );
        }
        let recent = harness
            .state
            .live
            .as_ref()
            .unwrap()
            .proxies
            .recent(Instant::now());
        assert_eq!(recent, [Known::default()]);
        let metrics = harness.state.metrics.encode();
        for line in [
            r#"hookgate_configuration_requests_total{outcome="sent"} 2"#,
            r#"hookgate_configuration_requests_total{outcome="not_compiled"} 1"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
        }
    }

    /// Anything not signed with a channel key, stale, or seen before is answered 401 with nothing in it.
    #[tokio::test]
    async fn refusals_are_401_and_empty() {
        let harness = harness();
        publish(&harness, 42, DOCUMENT);
        let signed = request(NONCE, Known::default()).headers(&key(CURRENT));
        let (status, _, _) = call(&harness.app, http(&signed)).await;
        assert_eq!(status, StatusCode::OK);
        let mut stale = request("0123456789abcdef0123456789abcdef", Known::default());
        stale.timestamp -= 120;
        let mut wrong_known = signed.clone();
        wrong_known[3].1 = "41.-".into();
        let cases = [
            ("no headers", Vec::new()),
            (
                "another key",
                request(NONCE, Known::default()).headers(&key(b"another-channel-key-0123456789ab")),
            ),
            ("stale", stale.headers(&key(CURRENT))),
            ("altered", wrong_known),
            ("replayed", signed),
        ];
        for (case, headers) in cases {
            let (status, _, body) = call(&harness.app, http(&headers)).await;
            assert_eq!(
                (status, body.len()),
                (StatusCode::UNAUTHORIZED, 0),
                "{case}"
            );
        }
        let metrics = harness.state.metrics.encode();
        for line in [
            r#"hookgate_configuration_requests_total{outcome="unauthorized"} 4"#,
            r#"hookgate_configuration_requests_total{outcome="replayed"} 1"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
        }
        assert_eq!(KNOWN_HEADER, "x-hookgate-known");
    }

    /// A caller up to date (same content, or a later generation from another replica) is held, and
    /// answered 304 after the long poll, or 200 as soon as the configuration changes.
    #[tokio::test(start_paused = true)]
    async fn an_up_to_date_caller_is_held_until_a_change() {
        let harness = harness();
        publish(&harness, 42, DOCUMENT);
        let nonces = [
            "0000000000000000000000000000000a",
            "0000000000000000000000000000000b",
        ];
        for (case, nonce, known) in [
            ("same content", nonces[0], known(42, DOCUMENT)),
            ("ahead", nonces[1], known(43, b"other")),
        ] {
            let started = tokio::time::Instant::now();
            let headers = request(nonce, known).headers(&key(CURRENT));
            let (status, _, body) = call(&harness.app, http(&headers)).await;
            assert_eq!(
                (status, body.len()),
                (StatusCode::NOT_MODIFIED, 0),
                "{case}"
            );
            assert_eq!(started.elapsed().as_secs(), LONG_POLL_SECS, "{case}");
        }

        let headers =
            request("0000000000000000000000000000000c", known(42, DOCUMENT)).headers(&key(CURRENT));
        let app = harness.app.clone();
        let held = tokio::spawn(async move { call(&app, http(&headers)).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let changed: &[u8] = br#"{"receivers":["changed"]}"#;
        publish(&harness, 50, changed);
        let (status, _, body) = held.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let opened = open(&[key(CURRENT)], "0000000000000000000000000000000c", &body).unwrap();
        assert_eq!(
            (opened.generation, opened.document.as_slice()),
            (50, changed)
        );
    }

    /// When the index stops (the controller shuts down), held requests are answered at once.
    #[tokio::test(start_paused = true)]
    async fn held_requests_end_when_the_index_stops() {
        let Harness {
            app,
            publish: sender,
            state,
        } = harness();
        sender.send_replace(Some(Arc::new(Configuration {
            generation: 1,
            digest: channel::digest(DOCUMENT),
            document: DOCUMENT.to_vec(),
        })));
        let headers = request(NONCE, known(1, DOCUMENT)).headers(&key(CURRENT));
        let held = tokio::spawn(async move { call(&app, http(&headers)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        drop(sender);
        let (status, _, _) = held.await.unwrap();
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(state);
    }
}
