//! Arbitrary deliveries to every provider type: the filter must decide each one (never panic), a forward
//! must only ever follow a valid proof, and the MACs computed before the proof verifies are at most one per
//! configured secret, whatever the headers hold. A valid proof can be asked for (and then extended with
//! arbitrary bytes), so the fuzzer also reaches the payload parsers that run only after verification and
//! the parsing of several signatures next to a genuine one.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine;
use hookgate_protocol::crypto::{hmac, macs_computed, Algorithm};
use hookgate_filter::{Config, Filter, Headers, Outcome};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret-0123456789";
const SW_KEY: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TYPES: &[&str] = &[
    "github", "gitea", "gitlab", "bitbucket", "generic", "generic-hmac", "standard-webhooks", "harbor",
    "nexus", "dockerhub", "quay", "acr", "cdevents", "bearer", "basic",
];
const BASIC_SECRET: &str = "fuzz:fuzz-secret-0123456789";
/// Every receiver has a second secret besides the one valid proofs use: the MAC bound is per secret.
const SECOND_SECRETS: [&str; 3] = ["fuzz-second-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "other:fuzz-second"];
const SECRETS_PER_RECEIVER: u64 = 2;
const HEADER_NAMES: &[&str] = &[
    "x-hub-signature-256", "x-hub-signature", "x-github-event", "x-gitea-signature", "x-gitlab-token",
    "x-gitlab-event", "x-event-key", "x-signature", "webhook-id", "webhook-timestamp", "webhook-signature",
    "svix-signature", "authorization", "x-nexus-webhook-signature", "ce-type", "content-type", "content-length",
];
const METHODS: &[&str] = &["POST", "GET", "PUT", "DELETE", ""];

fn filter() -> &'static Filter {
    static FILTER: OnceLock<Filter> = OnceLock::new();
    FILTER.get_or_init(|| {
        let receivers: Vec<String> = TYPES
            .iter()
            .map(|t| {
                let (secret, second) = match *t {
                    "standard-webhooks" => (SW_KEY, SECOND_SECRETS[1]),
                    "basic" => (BASIC_SECRET, SECOND_SECRETS[2]),
                    _ => (SECRET, SECOND_SECRETS[0]),
                };
                let events = if ["github", "gitlab", "bitbucket"].contains(t) { r#","events":["push","Push Hook","repo:push"]"# } else { "" };
                let refs = if *t == "github" { r#","refs":{"branches":["main","rel*"],"tags":["v*"]}"# } else { "" };
                format!(r#"{{"name":"{t}","namespace":"fuzz","type":"{t}","secrets":[{{"inline":"{secret}"}},{{"inline":"{second}"}}]{events}{refs},"bodyLimit":65536,"targets":[{{"kind":"Kustomization","name":"*","matchLabels":{{"a":"b"}}}}]}}"#)
            })
            .collect();
        let json = format!(r#"{{"attestationKey":"fuzz-attestation-key-0123","receivers":[{}]}}"#, receivers.join(","));
        Filter::new(Config::parse(json.as_bytes(), &|_| None).expect("fuzz configuration is valid"))
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

fn hex_mac(algorithm: Algorithm, body: &[u8]) -> String {
    hex::encode(hmac(algorithm, SECRET.as_bytes(), &[body]))
}

/// The proof headers a genuine sender of `kind` would add.
fn valid_proof(kind: &str, body: &[u8], now: u64) -> Vec<(String, Vec<u8>)> {
    let h = |n: &str, v: String| (n.to_string(), v.into_bytes());
    match kind {
        "github" => vec![h("x-hub-signature-256", format!("sha256={}", hex_mac(Algorithm::Sha256, body)))],
        "gitea" => vec![h("x-gitea-signature", hex_mac(Algorithm::Sha256, body))],
        "bitbucket" => vec![h("x-hub-signature", format!("sha256={}", hex_mac(Algorithm::Sha256, body)))],
        "generic-hmac" => vec![h("x-signature", format!("sha512={}", hex_mac(Algorithm::Sha512, body)))],
        "nexus" => vec![h("x-nexus-webhook-signature", hex_mac(Algorithm::Sha1, body))],
        "gitlab" => vec![h("x-gitlab-token", SECRET.into())],
        "harbor" => vec![h("authorization", SECRET.into())],
        "bearer" => vec![h("authorization", format!("Bearer {SECRET}"))],
        "basic" => vec![h("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(BASIC_SECRET)))],
        "standard-webhooks" => {
            let engine = base64::engine::general_purpose::STANDARD;
            let key = engine.decode(&SW_KEY[6..]).unwrap_or_default();
            let ts = now.to_string();
            let mac = hmac(Algorithm::Sha256, &key, &[b"msg_1.", ts.as_bytes(), b".", body]);
            vec![h("webhook-id", "msg_1".into()), h("webhook-timestamp", ts), h("webhook-signature", format!("v1,{}", engine.encode(mac)))]
        }
        _ => vec![],
    }
}

fuzz_target!(|input: Input| {
    let filter = filter();
    let index = input.receiver as usize % TYPES.len();
    let kind = TYPES[index];
    let receiver = &filter.config().receivers[index];
    let mut path = receiver.paths[0].clone();
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
        let mut proof = valid_proof(kind, &input.body, input.now);
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
        let secret_path_type = ["generic", "dockerhub", "quay", "acr", "cdevents"].contains(&kind);
        // Fuzzed headers could only forge a proof by finding the secret or an HMAC collision.
        assert!(input.valid_proof || secret_path_type, "forwarded without a valid proof: {kind}");
    }
    if let Some(reply) = outcome.reply() {
        assert!((200..600).contains(&reply.status));
    }
});
