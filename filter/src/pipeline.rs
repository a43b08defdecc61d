//! The decisions, in the order Envoy gives the filter its information: the request line and headers first
//! ([`Filter::on_headers`]), then the complete body ([`Filter::on_body`]).

use crate::config::Config;
use crate::delivery::{Delivery, Headers};
use crate::outcome::{Forward, Outcome, Rejection};
use hookgate_protocol::attestation::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use hookgate_protocol::{AttestedRequest, ReceiverRef};

pub struct Filter {
    config: Config,
}

impl Filter {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decides what can be decided before any body byte is read: the receiver (404), whether it is
    /// enabled (403), the method (405) and a declared length over the limit (413). Returns the receiver.
    pub fn on_headers(
        &self,
        method: &str,
        path: &str,
        content_length: Option<&str>,
    ) -> Result<usize, Rejection> {
        let index = self
            .config
            .receiver_for_path(path)
            .ok_or(Rejection::UnknownPath)?;
        self.admit(index, method, content_length)?;
        Ok(index)
    }

    /// The header-time checks for a request already matched to receiver `index`.
    pub fn admit(
        &self,
        index: usize,
        method: &str,
        content_length: Option<&str>,
    ) -> Result<(), Rejection> {
        let receiver = self
            .config
            .receivers
            .get(index)
            .ok_or(Rejection::UnknownPath)?;
        if receiver.disabled {
            return Err(Rejection::ReceiverDisabled);
        }
        if !receiver.provider.methods().contains(&method) {
            return Err(Rejection::MethodNotAllowed);
        }
        let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > receiver.body_limit) {
            return Err(Rejection::PayloadTooLarge);
        }
        Ok(())
    }

    /// The body limit of receiver `index`, for checks while the body streams in.
    pub fn body_limit(&self, index: usize) -> u64 {
        self.config
            .receivers
            .get(index)
            .map_or(0, |receiver| receiver.body_limit)
    }

    /// Decides a complete delivery for receiver `index` (from [`Filter::on_headers`]).
    pub fn on_body(&self, index: usize, headers: &Headers, body: &[u8], now: u64) -> Outcome {
        let Some(receiver) = self.config.receivers.get(index) else {
            return Outcome::Reject(Rejection::UnknownPath);
        };
        if body.len() as u64 > receiver.body_limit {
            return Outcome::Reject(Rejection::PayloadTooLarge);
        }
        let delivery = Delivery { headers, body, now };
        let provider = receiver.provider;
        if let Err(rejection) = provider.verify(&delivery, &receiver.secrets, receiver.options) {
            return Outcome::Reject(rejection);
        }
        // After the proof, as every other refusal of a request's content: an unverified sender gets 401.
        // The forwarded request needs a body to replace, and Envoy gives a Wasm filter none to replace in
        // a bodyless request, whatever its method (a GET from Argo CD must carry its template's `body`).
        if body.is_empty() {
            return Outcome::Reject(Rejection::EmptyBody);
        }

        // Everything below runs only for a verified sender.
        let event = provider.event(&delivery);
        if event.as_deref().is_some_and(|e| provider.is_ping(e)) {
            return Outcome::Pong;
        }
        if !receiver.events.is_empty() {
            match &event {
                None => return Outcome::Reject(Rejection::MissingEvent),
                Some(e) if !receiver.events.contains(&e.to_ascii_lowercase()) => {
                    return Outcome::Ignored("event not accepted")
                }
                Some(_) => {}
            }
        }
        let facts = match provider.payload(&delivery) {
            Ok(facts) => facts,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        if let Some(filter) = &receiver.refs {
            match &facts.git_ref {
                None => return Outcome::Ignored("no ref in payload"),
                Some(r) if !filter.accepts(r) => return Outcome::Ignored("ref not accepted"),
                Some(_) => {}
            }
        }

        let dispatch = match &receiver.dispatch {
            None => None,
            Some(config) => match config.request_from(body, &receiver.name) {
                Ok(request) => Some(request),
                Err(refusal) => {
                    log::warn!(
                        "hookgate: receiver {}: refused notification: {refusal}",
                        receiver.label()
                    );
                    return Outcome::Reject(refusal.rejection());
                }
            },
        };
        let request = AttestedRequest {
            receiver: ReceiverRef {
                namespace: receiver.namespace.clone(),
                name: receiver.name.clone(),
            },
            provider: receiver.provider_name.to_string(),
            event,
            delivery_id: provider.delivery_id(&delivery),
            r#ref: facts.git_ref,
            image_tag: facts.image_tag,
            action: receiver.action,
            targets: receiver.targets.clone(),
            dispatch,
            nonce: crate::nonce::fresh(),
        };
        // Serializing plain strings and maps cannot fail; refuse rather than forward if it ever does.
        let Ok(body) = serde_json::to_vec(&request) else {
            return Outcome::Reject(Rejection::MalformedPayload);
        };
        let signature = attestation::sign(self.config.attestation_key.expose(), now, &body);
        Outcome::Forward(Box::new(Forward {
            path: self.config.forward_path.clone(),
            body,
            headers: vec![
                (TIMESTAMP_HEADER, now.to_string()),
                (SIGNATURE_HEADER, signature),
            ],
            request,
        }))
    }

    /// Both steps at once, for tests and the fuzzer.
    pub fn handle(
        &self,
        method: &str,
        path: &str,
        headers: &Headers,
        body: &[u8],
        now: u64,
    ) -> Outcome {
        match self.on_headers(method, path, headers.get("content-length")) {
            Ok(index) => self.on_body(index, headers, body, now),
            Err(rejection) => Outcome::Reject(rejection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_protocol::attestation::{verify, DEFAULT_TOLERANCE_SECS};
    use hookgate_protocol::crypto::{hmac, Algorithm};

    const NOW: u64 = 1_700_000_000;
    const KEY: &str = "attestation-key-0123456789";

    fn filter() -> Filter {
        let json = format!(
            r#"{{"attestationKey":"{KEY}","receivers":[
            {{"name":"webapp","namespace":"flux-system","type":"github","events":["push"],
              "secrets":[{{"inline":"old"}},{{"inline":"new"}}],"refs":{{"branches":["main"]}},"bodyLimit":1000,
              "targets":[{{"kind":"GitRepository","name":"webapp"}}]}},
            {{"name":"off","namespace":"flux-system","type":"gitlab","secrets":[{{"inline":"t"}}],"disabled":true,
              "path":"/hook/off","targets":[{{"kind":"GitRepository","name":"x"}}]}},
            {{"name":"hub","namespace":"apps","type":"dockerhub","secrets":[{{"inline":"s"}}],
              "targets":[{{"kind":"ImageRepository","name":"app"}}]}}]}}"#
        );
        Filter::new(Config::parse(json.as_bytes(), &|_| None).unwrap())
    }

    fn github(filter: &Filter, secret: &str, event: &str, body: &[u8]) -> Outcome {
        let sig = format!(
            "sha256={}",
            hex::encode(hmac(Algorithm::Sha256, secret.as_bytes(), &[body]))
        );
        let headers = Headers::new([
            ("x-github-event", event),
            ("x-hub-signature-256", sig.as_str()),
            ("x-github-delivery", "d-1"),
        ]);
        let path = filter.config().receivers[0].paths[0].clone();
        filter.handle("POST", &path, &headers, body, NOW)
    }

    const PUSH: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    #[test]
    fn verified_push_is_forwarded_attested() {
        let f = filter();
        let Outcome::Forward(forward) = github(&f, "new", "push", PUSH) else {
            panic!("not forwarded")
        };
        assert_eq!(forward.path, "/hook/v1/reconcile");
        let header = |n: &str| {
            forward
                .headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            verify(
                KEY.as_bytes(),
                header(TIMESTAMP_HEADER),
                header(SIGNATURE_HEADER),
                &forward.body,
                NOW,
                DEFAULT_TOLERANCE_SECS
            )
            .map(|v| v.timestamp),
            Ok(NOW)
        );
        let request: AttestedRequest = serde_json::from_slice(&forward.body).unwrap();
        assert_eq!(
            request.receiver,
            ReceiverRef {
                namespace: "flux-system".into(),
                name: "webapp".into()
            }
        );
        assert_eq!(
            (
                request.provider.as_str(),
                request.event.as_deref(),
                request.delivery_id.as_deref()
            ),
            ("github", Some("push"), Some("d-1"))
        );
        assert_eq!(request.r#ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(request.targets[0].namespace.as_deref(), Some("flux-system"));
        let text = String::from_utf8(forward.body.clone()).unwrap();
        assert!(
            !text.contains("old") && !text.contains("\"new\""),
            "no secret in the forwarded body"
        );
    }

    #[test]
    fn rewritten_headers_keep_only_routing_and_tracing() {
        let f = filter();
        let Outcome::Forward(forward) = github(&f, "new", "push", PUSH) else {
            panic!("not forwarded")
        };
        let original = Headers::new([
            (":method", "GET"),
            (":path", "/hook/abc"),
            (":authority", "hooks.example.com"),
            (":scheme", "https"),
            ("x-request-id", "r-1"),
            ("x-hub-signature-256", "sha256=00"),
            ("authorization", "Bearer t"),
            ("content-length", "9999"),
            ("transfer-encoding", "chunked"),
            ("user-agent", "GitHub-Hookshot"),
        ]);
        let headers = forward.request_headers(&original);
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ":authority",
                ":scheme",
                "x-request-id",
                ":method",
                ":path",
                "content-type",
                "content-length",
                TIMESTAMP_HEADER,
                SIGNATURE_HEADER
            ]
        );
        let value = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(value(":method").as_deref(), Some("POST"));
        assert_eq!(value(":path").as_deref(), Some("/hook/v1/reconcile"));
        assert_eq!(
            value("content-length"),
            Some(forward.body.len().to_string())
        );
    }

    #[test]
    fn rotation_accepts_every_configured_secret_only() {
        let f = filter();
        assert!(matches!(
            github(&f, "old", "push", PUSH),
            Outcome::Forward(_)
        ));
        assert_eq!(
            github(&f, "removed", "push", PUSH),
            Outcome::Reject(Rejection::SignatureMismatch)
        );
    }

    #[test]
    fn ping_events_and_refs_after_verification() {
        let f = filter();
        assert_eq!(github(&f, "new", "ping", b"{}"), Outcome::Pong);
        assert_eq!(
            github(&f, "bad", "ping", b"{}"),
            Outcome::Reject(Rejection::SignatureMismatch)
        );
        assert_eq!(
            github(&f, "new", "PUSH", PUSH).metric_suffix(),
            "accepted",
            "events are case-insensitive"
        );
        assert_eq!(
            github(&f, "new", "issues", PUSH),
            Outcome::Ignored("event not accepted")
        );
        assert_eq!(
            github(&f, "bad", "issues", PUSH),
            Outcome::Reject(Rejection::SignatureMismatch)
        );
        assert_eq!(
            github(&f, "new", "push", br#"{"ref":"refs/heads/dev"}"#),
            Outcome::Ignored("ref not accepted")
        );
        assert_eq!(
            github(&f, "new", "push", b"{}"),
            Outcome::Ignored("no ref in payload")
        );
        assert_eq!(
            github(&f, "new", "push", b"[]"),
            Outcome::Reject(Rejection::MalformedPayload)
        );
    }

    #[test]
    fn header_time_decisions() {
        let f = filter();
        let path = f.config().receivers[0].paths[0].clone();
        assert_eq!(
            f.on_headers("POST", "/hook/nope", None),
            Err(Rejection::UnknownPath)
        );
        assert_eq!(
            f.on_headers("POST", "/hook/off", None),
            Err(Rejection::ReceiverDisabled)
        );
        assert_eq!(
            f.on_headers("GET", &path, None),
            Err(Rejection::MethodNotAllowed)
        );
        assert_eq!(
            f.on_headers("POST", &path, Some("1001")),
            Err(Rejection::PayloadTooLarge)
        );
        assert_eq!(
            f.on_headers("POST", &format!("{path}?x=1"), Some("1000")),
            Ok(0)
        );
        assert_eq!(
            f.on_body(0, &Headers::default(), b"", NOW),
            Outcome::Reject(Rejection::MissingSignature),
            "a bodyless request is refused for its proof first"
        );
        let big = vec![b' '; 1001];
        assert_eq!(
            f.on_body(0, &Headers::default(), &big, NOW),
            Outcome::Reject(Rejection::PayloadTooLarge)
        );
    }

    /// Issue 9, item 5: bearer and basic receivers take GET, PUT and POST alike. The token is checked
    /// first, so a request without it gets 401 with or without a body; a verified request needs a body
    /// (the reconcile request replaces it), and its targets come from the configuration.
    #[test]
    fn token_receivers_by_method_and_body() {
        use base64::Engine;
        let json = format!(
            r#"{{"attestationKey":"{KEY}","receivers":[
            {{"name":"argo","namespace":"argocd","type":"bearer","path":"/hook/argo","secrets":[{{"inline":"argo-token"}}],
              "targets":[{{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","name":"guestbook"}}]}},
            {{"name":"argo-basic","namespace":"argocd","type":"basic","path":"/hook/argo-basic",
              "secrets":[{{"inline":"argocd:s3cret"}}],
              "targets":[{{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","name":"guestbook"}}]}}]}}"#
        );
        let f = Filter::new(Config::parse(json.as_bytes(), &|_| None).unwrap());
        let basic = |credentials: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        let receivers = [
            (
                "/hook/argo",
                "Bearer argo-token".to_string(),
                "Bearer guess".to_string(),
            ),
            (
                "/hook/argo-basic",
                basic("argocd:s3cret"),
                basic("argocd:guess"),
            ),
        ];
        for (path, right, wrong) in &receivers {
            for method in ["GET", "PUT", "POST"] {
                for (case, authorization, body, expected) in [
                    ("right token, body", Some(right), &b"{}"[..], None),
                    (
                        "right token, no body",
                        Some(right),
                        b"",
                        Some(Rejection::EmptyBody),
                    ),
                    (
                        "wrong token, body",
                        Some(wrong),
                        b"{}",
                        Some(Rejection::TokenMismatch),
                    ),
                    (
                        "wrong token, no body",
                        Some(wrong),
                        b"",
                        Some(Rejection::TokenMismatch),
                    ),
                    (
                        "no token, no body",
                        None,
                        b"",
                        Some(Rejection::MissingToken),
                    ),
                ] {
                    let headers =
                        Headers::new(authorization.map(|a| ("authorization", a.as_str())));
                    let outcome = f.handle(method, path, &headers, body, NOW);
                    match (expected, outcome) {
                        (None, Outcome::Forward(forward)) => {
                            assert_eq!(forward.request.targets[0].name, "guestbook");
                            assert_eq!(forward.request.event, None);
                            assert_eq!(forward.request.r#ref, None);
                        }
                        (Some(rejection), outcome) => assert_eq!(
                            outcome,
                            Outcome::Reject(rejection),
                            "{path} {method} {case}"
                        ),
                        (None, outcome) => panic!("{path} {method} {case}: {outcome:?}"),
                    }
                }
            }
            assert_eq!(
                f.handle("DELETE", path, &Headers::default(), b"{}", NOW),
                Outcome::Reject(Rejection::MethodNotAllowed)
            );
        }
    }

    #[test]
    fn dispatch_receivers_forward_a_validated_dispatch() {
        let json = format!(
            r#"{{"attestationKey":"{KEY}","receivers":[{{"name":"guestbook","namespace":"argocd","type":"bearer",
            "path":"/hook/argocd","action":"dispatch","dispatch":{{"repository":"example/gitops"}},
            "secrets":[{{"inline":"argo-token"}}]}}]}}"#
        );
        let f = Filter::new(Config::parse(json.as_bytes(), &|_| None).unwrap());
        let headers = Headers::new([("authorization", "Bearer argo-token")]);
        let body = br#"{"event_type":"argo-degraded","client_payload":{"failed_revision":"3f786850e387550fdab836ed7e6dc881de23001b","healthy_revision":"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}}"#;
        let Outcome::Forward(forward) = f.handle("POST", "/hook/argocd", &headers, body, NOW)
        else {
            panic!("not forwarded")
        };
        let request: AttestedRequest = serde_json::from_slice(&forward.body).unwrap();
        assert_eq!(request.action, hookgate_protocol::Action::Dispatch);
        let dispatch = request.dispatch.unwrap();
        assert_eq!(
            (dispatch.repository.as_str(), dispatch.application.as_str()),
            ("example/gitops", "guestbook")
        );
        assert!(request.targets.is_empty());
        let bad = br#"{"client_payload":{"failed_revision":"main; curl evil","healthy_revision":"abc1234"}}"#;
        assert_eq!(
            f.handle("POST", "/hook/argocd", &headers, bad, NOW),
            Outcome::Reject(Rejection::MalformedPayload)
        );
        let unauthenticated = Headers::default();
        assert_eq!(
            f.handle("POST", "/hook/argocd", &unauthenticated, body, NOW),
            Outcome::Reject(Rejection::MissingToken)
        );
    }

    #[test]
    fn replay_against_another_receiver_fails() {
        let f = filter();
        let sig = format!(
            "sha256={}",
            hex::encode(hmac(Algorithm::Sha256, b"new", &[PUSH]))
        );
        let headers = Headers::new([
            ("x-github-event", "push"),
            ("x-hub-signature-256", sig.as_str()),
        ]);
        // The dockerhub receiver's path: a GitHub signature means nothing there, and its payload check fails.
        let hub = f.config().receivers[2].paths[0].clone();
        assert_eq!(
            f.handle("POST", &hub, &headers, PUSH, NOW),
            Outcome::Reject(Rejection::MalformedPayload)
        );
    }
}
