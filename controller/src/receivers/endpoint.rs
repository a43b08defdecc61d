//! `GET /hookgate/v1/configuration`: the filter's long poll for its configuration. A request signed with a
//! channel key, fresh and not seen before, gets the configuration sealed for it when the caller does not
//! serve it yet (200), else is held until the configuration changes, at most [`LONG_POLL_SECS`], and
//! answered "unchanged": an empty document, sealed for the request like any answer (a bare 304 could come
//! from anyone on the way). Before the first compile: 503. Anything not signed with a channel key: 401,
//! empty.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hookgate_protocol::channel::{
    self, ChannelError, ChannelKey, ConfigRequest, Known, KEY_ID_HEADER, LONG_POLL_SECS,
};
use hookgate_protocol::enrollment::{ControllerKey, Public, CONFIRMATION_HEADER, VM_KEY_HEADER};

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

pub async fn configuration(
    State(state): State<Arc<AppState>>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    let Some(live) = &state.live else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let keys = state.keys.borrow().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (key, vm, session) = match session(&keys.channel, &headers) {
        Ok(found) => found,
        Err(error) => {
            tracing::debug!(%error, "refused a configuration request");
            return answer(&state.metrics, "unauthorized", StatusCode::UNAUTHORIZED);
        }
    };
    let verified = match ConfigRequest::verify(header, std::slice::from_ref(&session), now) {
        Ok(verified) => verified,
        Err(error) => {
            tracing::debug!(%error, "refused a configuration request");
            return answer(&state.metrics, "unauthorized", StatusCode::UNAUTHORIZED);
        }
    };
    let request = verified.request;
    // A VM is served once it shows it read what was posted to hookgate's own route: another extension
    // on the same proxies signs its requests as well as any VM, but never sees that route. Checked before
    // the replay cache, so unconfirmed callers, whoever they are, take no room in it.
    let confirmed = header(CONFIRMATION_HEADER).is_some_and(|value| key.confirms(&vm, value));
    if !confirmed {
        return awaiting_confirmation(&state, &extensions, key, &vm);
    }
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
    if let Some(confirmer) = &state.confirmer {
        confirmer.confirmed(&vm);
    }
    live.proxies
        .record(&request.proxy, &request.known, Instant::now());
    let key = &session;
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
            tracing::debug!(proxy = %request.proxy, generation = current.generation, "configuration sent");
            return sealed(
                &state.metrics,
                "sent",
                key,
                current.generation,
                &request.nonce,
                &current.document,
            );
        }
        match tokio::time::timeout_at(deadline, configuration.changed()).await {
            Ok(Ok(())) => continue,
            // The deadline, or the index stopped (the controller is shutting down): "unchanged", sealed
            // as any answer is (an empty document), so that no one on the way can answer it instead.
            Ok(Err(_)) | Err(_) => {
                return sealed(
                    &state.metrics,
                    "not_modified",
                    key,
                    current.generation,
                    &request.nonce,
                    b"",
                )
            }
        }
    }
}

/// A 200 with `document` sealed under `key` for the request whose nonce is `nonce`, counted as `outcome`.
fn sealed(
    metrics: &Metrics,
    outcome: &'static str,
    key: &ChannelKey,
    generation: u64,
    nonce: &str,
    document: &[u8],
) -> Response {
    let mut aead_nonce = [0u8; 24];
    if getrandom::fill(&mut aead_nonce).is_err() {
        tracing::error!("no randomness available to seal the configuration");
        return answer(metrics, "failed", StatusCode::INTERNAL_SERVER_ERROR);
    }
    let envelope = channel::seal(key, generation, nonce, document, aead_nonce);
    metrics.configuration_request(outcome);
    let content_type = [(http::header::CONTENT_TYPE, "application/octet-stream")];
    (StatusCode::OK, content_type, envelope).into_response()
}

/// The controller key a request names, the VM's public key and their session key.
fn session<'a>(
    keys: &'a [ControllerKey],
    headers: &HeaderMap,
) -> Result<(&'a ControllerKey, Public, ChannelKey), ChannelError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header(KEY_ID_HEADER).ok_or(ChannelError::MissingHeader(KEY_ID_HEADER))?;
    let key = keys
        .iter()
        .find(|key| key.public().id_hex() == id)
        .ok_or(ChannelError::UnknownKey)?;
    let vm = header(VM_KEY_HEADER).ok_or(ChannelError::MissingHeader(VM_KEY_HEADER))?;
    let vm = Public::from_hex(vm.trim().as_bytes())
        .map_err(|_| ChannelError::MalformedHeader(VM_KEY_HEADER))?;
    let session = key
        .session(&vm)
        .ok_or(ChannelError::MalformedHeader(VM_KEY_HEADER))?;
    Ok((key, vm, session))
}

/// 202: the VM is not confirmed yet; its confirmation is posted to the proxy it asked from.
fn awaiting_confirmation(
    state: &AppState,
    extensions: &Extensions,
    key: &ControllerKey,
    vm: &Public,
) -> Response {
    match (
        &state.confirmer,
        extensions.get::<ConnectInfo<SocketAddr>>(),
    ) {
        (Some(confirmer), Some(ConnectInfo(peer))) => {
            confirmer.confirm(key, vm, peer.ip(), Instant::now())
        }
        _ => tracing::warn!("cannot confirm a proxy: no listener configured or no peer address"),
    }
    answer(
        &state.metrics,
        "awaiting_confirmation",
        StatusCode::ACCEPTED,
    )
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
    use hookgate_protocol::channel::{open, Opened, KNOWN_HEADER};
    use hookgate_protocol::enrollment::VmKey;
    use hookgate_protocol::Secret;
    use tokio::sync::watch;
    use tower::ServiceExt;

    const CURRENT: &[u8] = b"4f1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const PREVIOUS: &[u8] = b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const OTHER: &[u8] = b"ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    const DOCUMENT: &[u8] = br#"{"attestationKey":"hunter2-attestation","receivers":[]}"#;

    fn controller(material: &[u8]) -> ControllerKey {
        ControllerKey::from_hex(material).unwrap()
    }

    /// The proxy VM of these tests.
    fn vm() -> VmKey {
        VmKey::new([5; 32])
    }

    /// The VM's session with the controller key `material`.
    fn key(material: &[u8]) -> ChannelKey {
        vm().session(&controller(material).public()).unwrap()
    }

    /// The request's headers as the VM sends them once confirmed: signed in its session with the
    /// controller key `material`, with its public key and its confirmation.
    fn signed(request: &ConfigRequest, material: &[u8]) -> Vec<(&'static str, String)> {
        let mut headers = request.headers(&key(material));
        headers.push((VM_KEY_HEADER, vm().public().hex()));
        let confirmation = controller(material).confirmation(&vm().public());
        headers.push((CONFIRMATION_HEADER, confirmation));
        headers
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
            channel: vec![controller(CURRENT), controller(PREVIOUS)],
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
            http(&signed(&request(NONCE, Known::default()), CURRENT)),
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
            let headers = signed(&request(&nonce, Known::default()), material);
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

    /// A VM that signs well but shows no confirmation, or another VM's, is not served: 202, nothing in
    /// it. Another extension on the same proxies can draw a key and sign; it never reads the
    /// confirmation posted to hookgate's route.
    #[tokio::test]
    async fn an_unconfirmed_vm_gets_202_and_nothing() {
        let harness = harness();
        publish(&harness, 42, DOCUMENT);
        let probe = VmKey::new([9; 32]);
        let unconfirmed = request(NONCE, Known::default()).headers(&key(CURRENT));
        let mut with_vm_key = unconfirmed.clone();
        with_vm_key.push((VM_KEY_HEADER, vm().public().hex()));
        let mut probe_headers = request("0123456789abcdef0123456789abcdef", Known::default())
            .headers(&probe.session(&controller(CURRENT).public()).unwrap());
        probe_headers.push((VM_KEY_HEADER, probe.public().hex()));
        // The probe presents the confirmation of the genuine VM: it is per VM key.
        let genuine = controller(CURRENT).confirmation(&vm().public());
        probe_headers.push((CONFIRMATION_HEADER, genuine));
        for (case, headers, status) in [
            ("no VM key", unconfirmed, StatusCode::UNAUTHORIZED),
            ("no confirmation", with_vm_key, StatusCode::ACCEPTED),
            (
                "another VM's confirmation",
                probe_headers,
                StatusCode::ACCEPTED,
            ),
        ] {
            let (got, _, body) = call(&harness.app, http(&headers)).await;
            assert_eq!((got, body.len()), (status, 0), "{case}");
        }
    }

    /// Anything not signed with a channel key, stale, or seen before is answered 401 with nothing in it.
    #[tokio::test]
    async fn refusals_are_401_and_empty() {
        let harness = harness();
        publish(&harness, 42, DOCUMENT);
        let first = signed(&request(NONCE, Known::default()), CURRENT);
        let (status, _, _) = call(&harness.app, http(&first)).await;
        assert_eq!(status, StatusCode::OK);
        let mut stale = request("0123456789abcdef0123456789abcdef", Known::default());
        stale.timestamp -= 120;
        let mut wrong_known = first.clone();
        wrong_known[3].1 = "41.-".into();
        let cases = [
            ("no headers", Vec::new()),
            (
                "another key",
                signed(&request(NONCE, Known::default()), OTHER),
            ),
            ("stale", signed(&stale, CURRENT)),
            ("altered", wrong_known),
            ("replayed", first),
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
    /// answered "unchanged" (an empty document, sealed for its request) after the long poll, or the
    /// configuration as soon as it changes.
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
            let headers = signed(&request(nonce, known), CURRENT);
            let (status, _, body) = call(&harness.app, http(&headers)).await;
            assert_eq!(status, StatusCode::OK, "{case}");
            let opened = open(&[key(CURRENT)], nonce, &body).unwrap();
            assert!(opened.document.is_empty(), "{case}: unchanged, sealed");
            assert_eq!(started.elapsed().as_secs(), LONG_POLL_SECS, "{case}");
        }

        let headers = signed(
            &request("0000000000000000000000000000000c", known(42, DOCUMENT)),
            CURRENT,
        );
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
        let headers = signed(&request(NONCE, known(1, DOCUMENT)), CURRENT);
        let held = tokio::spawn(async move { call(&app, http(&headers)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        drop(sender);
        let (status, _, body) = held.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(open(&[key(CURRENT)], NONCE, &body)
            .unwrap()
            .document
            .is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(state);
    }
}
