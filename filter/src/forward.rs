//! The request the filter forwards for a verified delivery: the attested request built from it, its
//! attestation for the controller, and the header map that replaces the provider's.

use crate::config::Receiver;
use crate::delivery::Headers;
use crate::providers::PayloadFacts;
use hookgate_protocol::attestation::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use hookgate_protocol::dispatch::DispatchRequest;
use hookgate_protocol::{AttestedRequest, ReceiverRef, Secret};

/// What a verified delivery told the filter, as the attested request carries it.
pub struct VerifiedDelivery {
    pub event: Option<String>,
    pub delivery_id: Option<String>,
    pub facts: PayloadFacts,
    /// Set exactly for `dispatch` receivers.
    pub dispatch: Option<DispatchRequest>,
    /// The payload, where a target filter reads it: the request carries the fields read, nothing else.
    pub payload: Option<serde_json::Value>,
}

/// The attested request for a delivery to `receiver` that verified, with a fresh nonce.
pub fn attested_request(receiver: &Receiver, delivery: VerifiedDelivery) -> AttestedRequest {
    AttestedRequest {
        receiver: ReceiverRef {
            namespace: receiver.namespace.clone(),
            name: receiver.name.clone(),
        },
        provider: receiver.provider_name.to_string(),
        event: delivery.event,
        delivery_id: delivery.delivery_id,
        r#ref: delivery.facts.git_ref,
        image_tag: delivery.facts.image_tag,
        action: receiver.action,
        targets: receiver.targets.clone(),
        dispatch: delivery.dispatch,
        resource_filter: receiver.resource_filter.clone(),
        payload: delivery
            .payload
            .filter(|_| !receiver.payload_reads.is_empty())
            .map(|payload| hookgate_cel::prune(&payload, &receiver.payload_reads)),
        nonce: crate::nonce::fresh(),
    }
}

/// A verified delivery rewritten for the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub path: String,
    pub body: Vec<u8>,
    /// `(name, value)` attestation headers to add.
    pub headers: Vec<(&'static str, String)>,
    /// The request as sent, for logs and tests.
    pub request: AttestedRequest,
}

/// Request headers that survive the rewrite besides the pseudo-headers: tracing and proxy bookkeeping
/// only. Everything the provider sent (signatures, tokens, event headers) is dropped.
const KEPT_HEADERS: &[&str] = &[
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-envoy-internal",
];

impl Forward {
    /// `request` serialized for the controller at `path` and signed with `key` at `now`. `None` if it
    /// cannot be serialized.
    pub fn signed(request: AttestedRequest, path: &str, key: &Secret, now: u64) -> Option<Self> {
        let body = serde_json::to_vec(&request).ok()?;
        let signature = attestation::sign(key.expose(), now, &body);
        Some(Self {
            path: path.to_string(),
            body,
            headers: vec![
                (TIMESTAMP_HEADER, now.to_string()),
                (SIGNATURE_HEADER, signature),
            ],
            request,
        })
    }

    /// The complete header map of the rewritten request, built from the original one: pseudo-headers other
    /// than `:method` and `:path`, and the headers in `KEPT_HEADERS`, survive; the rest is replaced.
    pub fn request_headers(&self, original: &Headers) -> Vec<(String, Vec<u8>)> {
        self.kept_headers(original)
            .chain(self.attested_headers())
            .collect()
    }

    /// The headers of `original` that the forwarded request keeps: pseudo-headers other than `:method` and
    /// `:path`, and those in `KEPT_HEADERS`.
    pub fn kept_headers<'a>(
        &self,
        original: &'a Headers,
    ) -> impl Iterator<Item = (String, Vec<u8>)> + 'a {
        original
            .iter()
            .filter(|(name, _)| {
                (name.starts_with(':') && *name != ":method" && *name != ":path")
                    || KEPT_HEADERS.contains(name)
            })
            .map(|(name, value)| (name.to_string(), value.to_vec()))
    }

    /// The headers of the attested request itself: method, path, its body's type and length, and the
    /// attestation.
    pub fn attested_headers(&self) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
        [
            (":method".to_string(), b"POST".to_vec()),
            (":path".to_string(), self.path.clone().into_bytes()),
            ("content-type".to_string(), b"application/json".to_vec()),
            (
                "content-length".to_string(),
                self.body.len().to_string().into_bytes(),
            ),
        ]
        .into_iter()
        .chain(
            self.headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone().into_bytes())),
        )
    }
}

#[cfg(test)]
impl Forward {
    /// The timestamp this forward's attestation proves, verified with `key` at `now` as the controller does.
    pub(crate) fn verified_timestamp(
        &self,
        key: &[u8],
        now: u64,
    ) -> Result<u64, hookgate_protocol::attestation::AttestationError> {
        use hookgate_protocol::attestation::{verify, DEFAULT_TOLERANCE_SECS};
        let header = |name: &str| {
            self.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        verify(
            key,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &self.body,
            now,
            DEFAULT_TOLERANCE_SECS,
        )
        .map(|verified| verified.timestamp)
    }
}

/// An attested request of receiver `flux-system/<name>` of type `provider`, with nothing else set.
#[cfg(test)]
pub(crate) fn request(name: &str, provider: &str) -> AttestedRequest {
    AttestedRequest {
        receiver: ReceiverRef {
            namespace: "flux-system".into(),
            name: name.into(),
        },
        provider: provider.into(),
        event: None,
        delivery_id: None,
        r#ref: None,
        image_tag: None,
        action: hookgate_protocol::Action::Reconcile,
        targets: Vec::new(),
        dispatch: None,
        resource_filter: None,
        payload: None,
        nonce: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const KEY: &str = "attestation-key-0123456789";

    fn forward() -> Forward {
        let mut request = request("webapp", "github");
        request.event = Some("push".into());
        Forward::signed(request, "/hook/v1/reconcile", &Secret::new(KEY), NOW).unwrap()
    }

    #[test]
    fn signed_request_verifies_with_the_key() {
        let forward = forward();
        assert_eq!(forward.verified_timestamp(KEY.as_bytes(), NOW), Ok(NOW));
        let request: AttestedRequest = serde_json::from_slice(&forward.body).unwrap();
        assert_eq!(request, forward.request);
    }

    #[test]
    fn rewritten_headers_keep_only_routing_and_tracing() {
        let forward = forward();
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
}
