//! Arbitrary deliveries to every provider type: the filter must decide each one (never panic), a forward
//! must only ever follow a valid proof, and the MACs computed before the proof verifies are at most one per
//! configured secret, whatever the headers hold. A valid proof can be asked for (and then extended with
//! arbitrary bytes), so the fuzzer also reaches the payload parsers that run only after verification and
//! the parsing of several signatures next to a genuine one.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use hookgate_filter::providers::{self, Outgoing, Proof, Provider, PROVIDERS};
use hookgate_filter::{Config, Filter, Headers, Outcome};
use hookgate_protocol::crypto::macs_computed;
use libfuzzer_sys::fuzz_target;

/// Every receiver has a second secret besides the one valid proofs use: the MAC bound is per secret.
const SECRETS_PER_RECEIVER: u64 = 2;
const HEADER_NAMES: &[&str] = &[
    "x-hub-signature-256", "x-hub-signature", "x-github-event", "x-gitea-signature", "x-gitlab-token",
    "x-gitlab-event", "x-event-key", "x-signature", "webhook-id", "webhook-timestamp", "webhook-signature",
    "svix-signature", "authorization", "x-nexus-webhook-signature", "ce-type", "content-type", "content-length",
];
const METHODS: &[&str] = &["POST", "GET", "PUT", "DELETE", ""];

/// The secret valid proofs use, one the type accepts.
fn secret(provider: &dyn Provider) -> String {
    provider.placeholder_secret("fuzz-secret-0123456789")
}

/// One receiver of every type in the table, in the table's order, filtering on its sender's default event
/// and, where payloads carry refs, on refs.
/// Returns the filter and each receiver's first path (where deliveries are sent).
fn filter() -> &'static (Filter, Vec<String>) {
    static FILTER: OnceLock<(Filter, Vec<String>)> = OnceLock::new();
    FILTER.get_or_init(|| {
        let receivers: Vec<String> = PROVIDERS
            .iter()
            .map(|(t, provider)| {
                let (secret, second) = (secret(*provider), provider.placeholder_secret("fuzz-second-secret"));
                let events = match provider.sender().event {
                    Some((_, default)) if provider.supports_events() => format!(r#","events":["{default}"]"#),
                    _ => String::new(),
                };
                let refs = if provider.supports_refs() { r#","refs":{"branches":["main","rel*"],"tags":["v*"]}"# } else { "" };
                // An ID-token type holds no secret: its proof is Envoy's JWT filter, absent here, so every
                // delivery to it must be refused without a panic.
                let proof = if provider.proof() == Proof::VerifiedToken {
                    r#""idToken":{"jwtProvider":"p","issuers":["i"],"audience":"a","email":"e"}"#.to_string()
                } else {
                    format!(r#""secrets":[{{"inline":"{secret}"}},{{"inline":"{second}"}}]"#)
                };
                format!(r#"{{"name":"{t}","namespace":"fuzz","type":"{t}",{proof}{events}{refs},"bodyLimit":65536,"targets":[{{"kind":"Kustomization","name":"*","matchLabels":{{"a":"b"}}}}]}}"#)
            })
            .collect();
        let json = format!(r#"{{"attestationKey":"fuzz-attestation-key-0123","receivers":[{}]}}"#, receivers.join(","));
        let config = Config::parse(json.as_bytes()).expect("fuzz configuration is valid");
        let paths = config.receivers.iter().map(|r| r.paths[0].clone()).collect();
        (Filter::new(config), paths)
    })
}

#[derive(Arbitrary, Debug)]
enum Extra {
    /// The genuine value again, space separated.
    Repeat,
    /// An empty Standard Webhooks entry, ` v1,`.
    EmptyEntry,
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    receiver: u8,
    method: u8,
    path_suffix: Option<String>,
    headers: Vec<(u8, Vec<u8>)>,
    valid_proof: bool,
    /// Appended to the last header of a valid proof: more signatures after the genuine one.
    proof_extension: Vec<Extra>,
    body: Vec<u8>,
    now: u64,
}

/// The headers a genuine sender of `provider` would send, its proof last.
fn valid_proof(provider: &dyn Provider, body: &[u8], now: u64) -> Vec<(String, Vec<u8>)> {
    let outgoing = Outgoing { event: None, delivery_id: "1", now, body };
    providers::sign(provider, &secret(provider), &outgoing)
        .expect("the fuzz secret suits its type")
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect()
}

fuzz_target!(|input: Input| {
    let (filter, paths) = filter();
    let index = input.receiver as usize % PROVIDERS.len();
    let (kind, provider) = PROVIDERS[index];
    let mut path = paths[index].clone();
    if let Some(suffix) = &input.path_suffix {
        path.push_str(suffix);
    }
    let mut pairs: Vec<(String, Vec<u8>)> = input
        .headers
        .iter()
        .map(|(n, v)| (HEADER_NAMES[*n as usize % HEADER_NAMES.len()].to_string(), v.clone()))
        .collect();
    if input.valid_proof {
        // Genuine proof first, so it wins over fuzzed duplicates.
        let mut proof = valid_proof(provider, &input.body, input.now);
        if let Some((_, value)) = proof.last_mut() {
            let genuine = value.clone();
            for extra in &input.proof_extension {
                match extra {
                    Extra::Repeat => {
                        value.push(b' ');
                        value.extend_from_slice(&genuine);
                    }
                    Extra::EmptyEntry => value.extend_from_slice(b" v1,"),
                    Extra::Bytes(bytes) => value.extend_from_slice(bytes),
                }
            }
        }
        proof.append(&mut pairs);
        pairs = proof;
    }
    let headers = Headers::new(pairs);
    let method = METHODS[input.method as usize % METHODS.len()];
    let before = macs_computed();
    let outcome = filter.handle(method, &path, &headers, &input.body, input.now);
    // A forwarded request is signed for the controller (one MAC, after its proof verified).
    let attestation = u64::from(matches!(outcome, Outcome::Forward(_)));
    let macs = macs_computed() - before - attestation;
    assert!(macs <= SECRETS_PER_RECEIVER, "{kind}: {macs} MACs before the proof verified");
    if let Outcome::Forward(forward) = &outcome {
        assert!(!forward.body.is_empty());
        // Fuzzed headers could only forge a proof by finding the secret or an HMAC collision; an ID token
        // is never verified without Envoy's JWT filter, so it never forwards here.
        assert!(
            (input.valid_proof && provider.proof() == Proof::InRequest) || provider.proof() == Proof::SecretPath,
            "forwarded without a valid proof: {kind}"
        );
    }
    if let Some(reply) = outcome.reply() {
        assert!((200..600).contains(&reply.status));
    }
});
