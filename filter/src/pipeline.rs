//! The decisions, in the order Envoy gives the filter its information: the path ([`Filter::route`]), the
//! request line and headers ([`Filter::admit`]), the body as it streams in ([`Filter::check_body_size`]),
//! then the complete body ([`Filter::on_body`]).

use crate::config::{Config, Receiver};
use crate::delivery::{Delivery, Headers};
use crate::forward::{self, Forward, VerifiedDelivery};
use crate::label::ReceiverLabel;
use crate::outcome::{Outcome, Rejection};
use crate::providers::PayloadFacts;
use hookgate_protocol::MAX_REQUEST_BYTES;

/// A receiver of one [`Filter`], as [`Filter::route`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceiverId(usize);

pub struct Filter {
    config: Config,
    /// One per receiver, in the order of `config.receivers`.
    labels: Vec<ReceiverLabel>,
}

impl Filter {
    pub fn new(config: Config) -> Self {
        let labels = config.receivers.iter().map(ReceiverLabel::new).collect();
        Self { config, labels }
    }

    /// The receiver answering on `path`; `None` is a 404.
    pub fn route(&self, path: &str) -> Option<ReceiverId> {
        self.config.receiver_for_path(path).map(ReceiverId)
    }

    /// The SecurityPolicy `jwt` provider whose verified claims receiver `id` needs, if its senders prove
    /// themselves with an ID token: the glue reads them from Envoy for [`Filter::on_body`].
    pub fn jwt_provider(&self, id: ReceiverId) -> Option<&str> {
        let rules = self.receiver(id).ok()?.token_rules.as_ref()?;
        Some(&rules.jwt_provider)
    }

    /// How logs and metrics name receiver `id`.
    pub fn label(&self, id: ReceiverId) -> Option<&ReceiverLabel> {
        self.labels.get(id.0)
    }

    /// Decides what can be decided before any body byte is read: whether the receiver is enabled (403),
    /// the method (405) and a declared length over the limit (413).
    pub fn admit(
        &self,
        id: ReceiverId,
        method: &str,
        content_length: Option<&str>,
    ) -> Result<(), Rejection> {
        let receiver = self.receiver(id)?;
        if receiver.disabled {
            return Err(Rejection::ReceiverSuspended);
        }
        if !receiver.provider.methods().allows(method) {
            return Err(Rejection::MethodNotAllowed);
        }
        match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(declared) => self.check_body_size(id, declared),
            None => Ok(()),
        }
    }

    /// Refuses a body (declared, streaming in, or complete) of `size` bytes over the receiver's limit (413).
    pub fn check_body_size(&self, id: ReceiverId, size: u64) -> Result<(), Rejection> {
        if size > self.receiver(id)?.body_limit {
            return Err(Rejection::PayloadTooLarge);
        }
        Ok(())
    }

    /// Decides a complete delivery for receiver `id`, admitted by [`Filter::admit`]. `verified_token` is
    /// what Envoy's JWT filter verified for the receiver's [`Filter::jwt_provider`], if it has one.
    pub fn on_body(
        &self,
        id: ReceiverId,
        headers: &Headers,
        body: &[u8],
        now: u64,
        verified_token: Option<&[u8]>,
    ) -> Outcome {
        let receiver = match self.receiver(id) {
            Ok(receiver) => receiver,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        if let Err(rejection) = self.check_body_size(id, body.len() as u64) {
            return Outcome::Reject(rejection);
        }
        let claims = match &receiver.token_rules {
            None => None,
            Some(rules) => match rules.verified_claims(headers, verified_token, now) {
                Ok(claims) => Some(claims),
                Err(rejection) => return Outcome::Reject(rejection),
            },
        };
        let delivery = Delivery {
            headers,
            body,
            now,
            claims: claims.as_ref(),
        };
        let provider = receiver.provider;
        if let Err(rejection) = provider.verify(&delivery, &receiver.secrets, receiver.options) {
            return Outcome::Reject(rejection);
        }
        // After the proof, as every other refusal of a request's content: an unverified sender gets 401.
        if body.is_empty() && !provider.takes_empty_body(headers) {
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
        // A body there is not has no facts (a type that decodes its body takes no empty one).
        let facts = match body.is_empty() {
            true => Ok(PayloadFacts::default()),
            false => provider.payload(&delivery),
        };
        let facts = match facts {
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

        // The payload as the filters read it, parsed only where one does.
        let payload = match (receiver.filter.is_some() || !receiver.payload_reads.is_empty())
            .then(|| provider.filter_payload(&delivery))
            .transpose()
        {
            Ok(payload) => payload,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        if let (Some(filter), Some(payload)) = (&receiver.filter, &payload) {
            match filter.accepts(event.as_deref(), headers, payload) {
                Ok(true) => {}
                Ok(false) => return Outcome::Ignored("filter"),
                // Fail closed: nothing is forwarded. A 2xx as for any other filter; the log says why.
                Err(error) => {
                    log::warn!(
                        "hookgate: receiver {}: filter failed, delivery ignored: {error}",
                        receiver.label()
                    );
                    return Outcome::Ignored("filter error");
                }
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
        let request = forward::attested_request(
            receiver,
            VerifiedDelivery {
                event,
                delivery_id: provider.delivery_id(&delivery),
                facts,
                dispatch,
                payload,
            },
        );
        let config = &self.config;
        match Forward::signed(request, &config.forward_path, &config.attestation_key, now) {
            Some(forward) if forward.body.len() > MAX_REQUEST_BYTES => {
                log::warn!(
                    "hookgate: receiver {}: the payload fields the target filters read make a request \
                     larger than the controller reads ({MAX_REQUEST_BYTES} bytes): refused",
                    receiver.label()
                );
                Outcome::Reject(Rejection::PayloadTooLarge)
            }
            Some(forward) => Outcome::Forward(Box::new(forward)),
            // Serializing plain strings and maps cannot fail; refuse rather than forward if it ever does.
            None => Outcome::Reject(Rejection::MalformedPayload),
        }
    }

    /// Every step at once, for tests and the fuzzer: [`Filter::route`], [`Filter::admit`] with the
    /// request's `content-length`, then [`Filter::on_body`].
    pub fn handle(
        &self,
        method: &str,
        path: &str,
        headers: &Headers,
        body: &[u8],
        now: u64,
    ) -> Outcome {
        let Some(id) = self.route(path) else {
            return Outcome::Reject(Rejection::UnknownPath);
        };
        match self.admit(id, method, headers.get("content-length")) {
            Ok(()) => self.on_body(id, headers, body, now, None),
            Err(rejection) => Outcome::Reject(rejection),
        }
    }

    /// Receiver `id`; refused as an unknown path for an id of another filter.
    fn receiver(&self, id: ReceiverId) -> Result<&Receiver, Rejection> {
        self.config
            .receivers
            .get(id.0)
            .ok_or(Rejection::UnknownPath)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_protocol::crypto::{hmac, Algorithm};
    use hookgate_protocol::{AttestedRequest, ReceiverRef};

    const NOW: u64 = 1_700_000_000;
    const KEY: &str = "attestation-key-0123456789";

    fn config() -> Config {
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
        Config::parse(json.as_bytes()).unwrap()
    }

    fn filter() -> Filter {
        Filter::new(config())
    }

    /// The path of receiver `index` of [`config`] (derived from its secret where none is configured).
    fn path(index: usize) -> String {
        config().receivers[index].paths[0].clone()
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
        filter.handle("POST", &path(0), &headers, body, NOW)
    }

    const PUSH: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    #[test]
    fn verified_push_is_forwarded_attested() {
        let f = filter();
        let Outcome::Forward(forward) = github(&f, "new", "push", PUSH) else {
            panic!("not forwarded")
        };
        assert_eq!(forward.path, "/hook/v1/reconcile");
        assert_eq!(forward.verified_timestamp(KEY.as_bytes(), NOW), Ok(NOW));
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
            ";outcome=accepted;reason=",
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
        let path = path(0);
        let id = f.route(&path).unwrap();
        assert_eq!(id, ReceiverId(0));
        assert_eq!(f.route("/hook/nope"), None);
        assert_eq!(
            f.route(&format!("{path}?x=1")),
            Some(id),
            "the query string is not part of the route"
        );
        let off = f.route("/hook/off").unwrap();
        assert_eq!(
            f.admit(off, "POST", None),
            Err(Rejection::ReceiverSuspended)
        );
        assert_eq!(
            f.admit(id, "GET", None),
            Ok(()),
            "Flux checks no method (issue 22, item 1)"
        );
        assert_eq!(
            f.admit(id, "POST", Some("1001")),
            Err(Rejection::PayloadTooLarge)
        );
        assert_eq!(f.admit(id, "POST", Some("1000")), Ok(()));
        assert_eq!(
            f.handle("POST", "/hook/off", &Headers::default(), b"{}", NOW),
            Outcome::Reject(Rejection::ReceiverSuspended)
        );
        assert_eq!(
            f.handle("POST", "/hook/nope", &Headers::default(), b"{}", NOW),
            Outcome::Reject(Rejection::UnknownPath)
        );
    }

    /// One limit for a body streaming in and a complete one.
    #[test]
    fn body_limit() {
        let f = filter();
        let id = f.route(&path(0)).unwrap();
        assert_eq!(f.check_body_size(id, 1000), Ok(()));
        assert_eq!(f.check_body_size(id, 1001), Err(Rejection::PayloadTooLarge));
        assert_eq!(
            f.on_body(id, &Headers::default(), b"", NOW, None),
            Outcome::Reject(Rejection::MissingSignature),
            "a bodyless request is refused for its proof first"
        );
        let big = vec![b' '; 1001];
        assert_eq!(
            f.on_body(id, &Headers::default(), &big, NOW, None),
            Outcome::Reject(Rejection::PayloadTooLarge)
        );
    }

    #[test]
    fn receivers_are_labelled_for_logs_and_metrics() {
        let f = filter();
        let id = f.route(&path(0)).unwrap();
        let label = f.label(id).unwrap();
        assert_eq!(label.as_str(), "flux-system/webapp");
        assert_eq!(
            label.metric_name(&github(&f, "new", "push", PUSH)),
            "hookgate_deliveries_total;namespace=flux-system;receiver=webapp;outcome=accepted;reason="
        );
        assert_eq!(f.label(ReceiverId(3)), None);
    }

    /// Issue 9, item 5: bearer and basic receivers take GET, PUT and POST alike. The token is checked
    /// first, so a request without it gets 401 with or without a body; a verified request is forwarded with
    /// or without one (issue 22, item 1), and its targets come from the configuration.
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
        let f = Filter::new(Config::parse(json.as_bytes()).unwrap());
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
                    ("right token, no body", Some(right), b"", None),
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
        let f = Filter::new(Config::parse(json.as_bytes()).unwrap());
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

    /// A receiver with an edge `filter` and Flux's target filters, as `github` deliveries reach it.
    fn filtered() -> Filter {
        let json = format!(
            r#"{{"attestationKey":"{KEY}","receivers":[
            {{"name":"webapp","namespace":"flux-system","type":"github","secrets":[{{"inline":"new"}}],
              "filter":"event == 'push' && req.repository.name == 'webapp' && headers['x-github-delivery'] != 'skip'",
              "resourceFilter":"req.ref.endsWith(res.metadata.name)",
              "targets":[{{"kind":"Kustomization","name":"*","matchLabels":{{"app":"webapp"}},
                           "filter":"has(req.head_commit.id) && res.metadata.labels['tier'] == 'web'"}}]}}]}}"#
        );
        Filter::new(Config::parse(json.as_bytes()).unwrap())
    }

    fn delivered(filter: &Filter, event: &str, delivery: &str, body: &[u8]) -> Outcome {
        let sig = format!(
            "sha256={}",
            hex::encode(hmac(Algorithm::Sha256, b"new", &[body]))
        );
        let headers = Headers::new([
            ("x-github-event", event),
            ("x-hub-signature-256", sig.as_str()),
            ("x-github-delivery", delivery),
        ]);
        let path = filter.config.receivers[0].paths[0].clone();
        filter.handle("POST", &path, &headers, body, NOW)
    }

    #[test]
    fn the_receiver_filter_decides_after_verification() {
        let f = filtered();
        let push = br#"{"ref":"refs/heads/main","repository":{"name":"webapp"}}"#;
        // (case, event, delivery id, body, "accepted" or the ignored reason)
        let cases: [(&str, &str, &str, &[u8], &str); 5] = [
            ("true: forwarded", "push", "d-1", push, "accepted"),
            ("another event", "issues", "d-1", push, "filter"),
            (
                "another repository",
                "push",
                "d-1",
                br#"{"ref":"refs/heads/main","repository":{"name":"other"}}"#,
                "filter",
            ),
            ("a header", "push", "skip", push, "filter"),
            (
                "a missing field: an error, fails closed",
                "push",
                "d-1",
                br#"{"ref":"refs/heads/main"}"#,
                "filter error",
            ),
        ];
        for (case, event, delivery, body, expected) in cases {
            let outcome = delivered(&f, event, delivery, body);
            let got = match &outcome {
                Outcome::Ignored(reason) => reason.to_string(),
                Outcome::Forward(_) => "accepted".to_string(),
                other => format!("{other:?}"),
            };
            assert_eq!(got, expected, "{case}");
        }
        let sig_of_other_key = Headers::new([
            ("x-github-event", "push"),
            ("x-hub-signature-256", "sha256=00"),
        ]);
        let path = f.config.receivers[0].paths[0].clone();
        assert_eq!(
            f.handle("POST", &path, &sig_of_other_key, push, NOW),
            Outcome::Reject(Rejection::SignatureMismatch),
            "an unverified delivery is refused before any filter runs"
        );
    }

    /// The attested request carries the target filters and only the payload fields they read.
    #[test]
    fn target_filters_forward_only_the_fields_they_read() {
        let f = filtered();
        let body = br#"{"ref":"refs/heads/main","repository":{"name":"webapp","private":true},
                        "head_commit":{"id":"abc","message":"hunter2-looking secret"},"sender":{"token":"t0ken"}}"#;
        let Outcome::Forward(forward) = delivered(&f, "push", "d-1", body) else {
            panic!("not forwarded")
        };
        let request: AttestedRequest = serde_json::from_slice(&forward.body).unwrap();
        assert_eq!(
            request.resource_filter.as_deref(),
            Some("req.ref.endsWith(res.metadata.name)")
        );
        assert_eq!(
            request.targets[0].filter.as_deref(),
            Some("has(req.head_commit.id) && res.metadata.labels['tier'] == 'web'")
        );
        assert_eq!(
            request.payload,
            Some(serde_json::json!({"ref": "refs/heads/main", "head_commit": {"id": "abc"}})),
            "the edge filter's fields (repository) are not the targets': not forwarded"
        );
        let text = String::from_utf8(forward.body.clone()).unwrap();
        for unread in ["hunter2", "t0ken", "private"] {
            assert!(!text.contains(unread), "{unread} forwarded: {text}");
        }
    }

    /// A GitHub push replayed at the dockerhub receiver's path: its signature and event mean nothing there.
    /// That path is the type's only proof and Flux decodes any JSON object there, so it goes through as a
    /// dockerhub delivery: nothing of the push (event, ref) reaches the controller, only that receiver's
    /// own targets.
    #[test]
    fn replay_against_another_receiver_carries_nothing_of_the_first() {
        let f = filter();
        let sig = format!(
            "sha256={}",
            hex::encode(hmac(Algorithm::Sha256, b"new", &[PUSH]))
        );
        let headers = Headers::new([
            ("x-github-event", "push"),
            ("x-hub-signature-256", sig.as_str()),
        ]);
        let Outcome::Forward(forward) = f.handle("POST", &path(2), &headers, PUSH, NOW) else {
            panic!("not forwarded")
        };
        let request = &forward.request;
        assert_eq!(
            (request.provider.as_str(), request.receiver.name.as_str()),
            ("dockerhub", "hub")
        );
        assert_eq!(
            (request.event.as_deref(), request.r#ref.as_deref()),
            (None, None)
        );
        assert_eq!(request.targets[0].name, "app");
    }
}

/// Issue 22, item 1: what Flux's receiver (v1.9.3) accepts of a bodyless delivery and of a method other
/// than POST, for each type, through the whole pipeline.
#[cfg(test)]
mod bodyless_tests {
    use super::*;
    use crate::id_token::tests::{bearer, verified};
    use hookgate_protocol::crypto::{hmac, Algorithm};
    use serde_json::json;

    const NOW: u64 = crate::id_token::tests::NOW;
    const KEY: &str = "attestation-key-0123456789";
    const SECRET: &str = "receiver-secret";

    /// One receiver per type, named after it.
    fn filter() -> Filter {
        let with_secret = [
            "generic",
            "generic-hmac",
            "github",
            "gitlab",
            "bitbucket",
            "harbor",
            "dockerhub",
            "quay",
            "acr",
            "nexus",
            "cdevents",
            "gitea",
            "bearer",
            "basic",
        ];
        let mut receivers: Vec<serde_json::Value> = with_secret
            .iter()
            .map(|kind| {
                let secret = if *kind == "basic" { "user:pass" } else { SECRET };
                json!({"name": kind, "namespace": "ns", "type": kind, "secrets": [{"inline": secret}],
                       "targets": [{"kind": "GitRepository", "name": "app"}]})
            })
            .collect();
        receivers.push(
            json!({"name": "generic-oidc", "namespace": "ns", "type": "generic-oidc",
            "idToken": {"jwtProvider": "google", "issuers": ["https://ci.example.com"],
                        "validations": ["claims.sub == 'deployer'"]},
            "targets": [{"kind": "GitRepository", "name": "app"}]}),
        );
        let config = json!({"attestationKey": KEY, "receivers": receivers});
        Filter::new(Config::parse(config.to_string().as_bytes()).unwrap())
    }

    fn path(filter: &Filter, name: &str) -> String {
        let receiver = filter.config.receivers.iter().find(|r| r.name == name);
        receiver.unwrap().paths[0].clone()
    }

    fn mac(label: &str, algorithm: Algorithm, body: &[u8]) -> String {
        format!(
            "{label}{}",
            hex::encode(hmac(algorithm, SECRET.as_bytes(), &[body]))
        )
    }

    /// The headers a genuine sender of `kind` sends with `body`.
    fn proof(kind: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("user:pass");
        match kind {
            "generic-hmac" => vec![("x-signature", mac("sha256=", Algorithm::Sha256, body))],
            "github" => vec![
                (
                    "x-hub-signature-256",
                    mac("sha256=", Algorithm::Sha256, body),
                ),
                ("x-github-event", "push".into()),
            ],
            "bitbucket" => vec![
                ("x-hub-signature", mac("sha256=", Algorithm::Sha256, body)),
                ("x-event-key", "repo:push".into()),
            ],
            "gitlab" => vec![("x-gitlab-token", SECRET.into())],
            "harbor" => vec![("authorization", SECRET.into())],
            "nexus" => vec![("x-nexus-webhook-signature", mac("", Algorithm::Sha1, body))],
            "gitea" => vec![("x-gitea-signature", mac("", Algorithm::Sha256, body))],
            "bearer" => vec![("authorization", format!("Bearer {SECRET}"))],
            "basic" => vec![("authorization", format!("Basic {basic}"))],
            _ => vec![],
        }
    }

    /// `accepted`, `pong`, or the rejection's reason.
    fn verdict(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Forward(_) => "accepted",
            Outcome::Pong => "pong",
            Outcome::Ignored(reason) => reason,
            Outcome::Reject(rejection) => rejection.reason(),
        }
    }

    fn deliver(
        f: &Filter,
        kind: &str,
        method: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Outcome {
        let mut headers = proof(kind, body);
        headers.extend(content_type.map(|c| ("content-type", c.to_string())));
        f.handle(method, &path(f, kind), &Headers::new(headers), body, NOW)
    }

    #[test]
    fn a_bodyless_delivery_is_accepted_where_flux_accepts_one() {
        let f = filter();
        const JSON: Option<&str> = Some("application/json");
        // (type, Content-Type, verdict for a verified POST without a body)
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, &str)] = &[
            // Flux reads nothing of the body: any body, none included.
            ("generic",      None, "accepted"),
            ("gitlab",       None, "accepted"),
            ("harbor",       None, "accepted"),
            // Flux checks the MAC over the body, empty or not.
            ("generic-hmac", None, "accepted"),
            // go-github's ValidatePayload: a JSON or form Content-Type, and the MAC over the (empty) body.
            ("github",       JSON, "accepted"),
            ("github",       Some("application/x-www-form-urlencoded"), "accepted"),
            ("github",       Some("Application/JSON; charset=utf-8"), "accepted"),
            ("github",       None, "empty body"),
            ("github",       Some("text/plain"), "empty body"),
            ("bitbucket",    JSON, "accepted"),
            ("bitbucket",    None, "empty body"),
            // Flux decodes the body as JSON, which an empty one is not.
            ("dockerhub",    JSON, "empty body"),
            ("quay",         JSON, "empty body"),
            ("acr",          JSON, "empty body"),
            ("nexus",        JSON, "empty body"),
            ("cdevents",     JSON, "empty body"),
            // Not Flux's: Gitea always sends its push.
            ("gitea",        JSON, "empty body"),
            // Not Flux's: Argo CD's webhook service sends no body unless its template has one.
            ("bearer",       None, "accepted"),
            ("basic",        None, "accepted"),
        ];
        for (kind, content_type, expected) in cases {
            let outcome = deliver(&f, kind, "POST", *content_type, b"");
            assert_eq!(verdict(&outcome), *expected, "{kind} {content_type:?}");
            if let Outcome::Forward(forward) = outcome {
                let request = &forward.request;
                assert_eq!(
                    (
                        request.provider.as_str(),
                        request.r#ref.as_deref(),
                        request.payload.as_ref()
                    ),
                    (*kind, None, None),
                    "{kind}: nothing read of a body there is not"
                );
            }
        }
        let ping = Headers::new([
            (
                "x-hub-signature-256",
                mac("sha256=", Algorithm::Sha256, b""),
            ),
            ("x-github-event", "ping".into()),
            ("content-type", "application/json".into()),
        ]);
        assert_eq!(
            f.handle("POST", &path(&f, "github"), &ping, b"", NOW),
            Outcome::Pong
        );
        let forged = Headers::new([("x-signature", "sha256=00".to_string())]);
        assert_eq!(
            f.handle("POST", &path(&f, "generic-hmac"), &forged, b"", NOW),
            Outcome::Reject(Rejection::SignatureMismatch),
            "the proof is checked first, over the empty body"
        );
    }

    /// Flux's generic-oidc example: `curl -X POST -H "Authorization: Bearer $TOKEN"`, no body.
    #[test]
    fn a_bodyless_id_token_delivery_is_accepted() {
        let f = filter();
        let id = f.route(&path(&f, "generic-oidc")).unwrap();
        let claims = json!({"iss": "https://ci.example.com", "aud": "notification-controller",
                            "sub": "deployer", "exp": NOW + 300, "iat": NOW});
        let token = verified(&claims);
        for method in ["POST", "PUT", "GET"] {
            assert_eq!(f.admit(id, method, None), Ok(()), "{method}");
            let outcome = f.on_body(id, &bearer(&claims), b"", NOW, Some(&token));
            assert_eq!(verdict(&outcome), "accepted", "{method}");
        }
        assert_eq!(
            f.on_body(id, &bearer(&claims), b"", NOW, None),
            Outcome::Reject(Rejection::TokenNotVerified)
        );
    }

    /// Flux checks no method: every type of its takes any. hookgate's own types keep their senders'.
    #[test]
    fn every_method_is_accepted_where_flux_accepts_it() {
        let f = filter();
        let push = br#"{"ref":"refs/heads/main"}"#;
        // (type, method, verdict for a verified delivery with a body)
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str)] = &[
            ("generic",   "PUT",    "accepted"),
            ("generic",   "GET",    "accepted"),
            ("generic",   "PATCH",  "accepted"),
            ("generic",   "DELETE", "accepted"),
            ("github",    "PUT",    "accepted"),
            ("gitlab",    "GET",    "accepted"),
            ("dockerhub", "PUT",    "accepted"),
            ("bearer",    "PUT",    "accepted"),
            ("bearer",    "DELETE", "method not allowed"),
            ("gitea",     "PUT",    "method not allowed"),
        ];
        for (kind, method, expected) in cases {
            let outcome = deliver(&f, kind, method, Some("application/json"), push);
            assert_eq!(verdict(&outcome), *expected, "{kind} {method}");
        }
    }
}
