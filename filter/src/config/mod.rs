//! The receivers' configuration: the JSON document the controller compiles from the `Receiver` objects and
//! their Secrets and delivers, sealed, to each proxy VM (docs/live-configuration.md). The controller runs
//! this same code on each receiver first, so that one it would refuse never reaches the proxies.
//!
//! Parsing is strict and has two steps: [`wire`] reads the JSON into one serde struct per object (field
//! names and JSON types: the schema), and [`compile`] checks what the values mean and builds the
//! [`Config`] the filter runs on. An error names the receiver and the full path of the field.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::cel::EdgeFilter;
use crate::dispatch::DispatchConfig;
use crate::glob::glob_matches;
use crate::id_token::TokenRules;
use crate::providers::{Provider, VerifyOptions};
use hookgate_protocol::crypto::sha256_hex;
use hookgate_protocol::{Action, Secret, Target};

mod compile;
pub(crate) mod wire;

/// Flux's limit, and the default here.
pub const DEFAULT_BODY_LIMIT: u64 = 3 * 1024 * 1024;
/// The protocol's largest body (GitHub sends up to 25 MB; nothing legitimate needs more).
pub const MAX_BODY_LIMIT: u64 = hookgate_protocol::MAX_BODY_BYTES as u64;
/// Every receiver path starts with this, as Flux's do.
pub const PATH_PREFIX: &str = "/hook/";

/// A configuration error, naming where it is. It never holds the value of a field that carries secret
/// material (the attestation key, the secrets): `Display` and `Debug` are safe to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `namespace/name` of the receiver, as far as the input tells, or `None` for top-level fields.
    pub receiver: Option<String>,
    /// The full path of the field: `attestationKey`, `receivers[0].secrets[1].inline`,
    /// `receivers[2].dispatch.repository`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.receiver {
            Some(r) => write!(f, "receiver {r}: field `{}`: {}", self.field, self.reason),
            None => write!(f, "field `{}`: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Branch and tag globs; a delivery passes when its ref matches either list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefFilter {
    pub branches: Vec<String>,
    pub tags: Vec<String>,
}

impl RefFilter {
    pub fn accepts(&self, git_ref: &str) -> bool {
        let any = |globs: &[String], name: &str| globs.iter().any(|g| glob_matches(g, name));
        match (
            git_ref.strip_prefix("refs/heads/"),
            git_ref.strip_prefix("refs/tags/"),
        ) {
            (Some(branch), _) => any(&self.branches, branch),
            (_, Some(tag)) => any(&self.tags, tag),
            _ => false,
        }
    }
}

/// One validated receiver. Its secrets are [`Secret`]s, so `{:?}` never shows them.
#[derive(Debug)]
pub struct Receiver {
    pub name: String,
    pub namespace: String,
    pub provider_name: &'static str,
    pub provider: &'static dyn Provider,
    /// Lowercased; empty accepts every event.
    pub events: Vec<String>,
    /// Key bytes, as the provider uses them.
    pub secrets: Vec<Secret>,
    /// Every path this receiver answers on: the pinned one, or one Flux path per secret (same order).
    pub paths: Vec<String>,
    pub pinned_path: bool,
    pub refs: Option<RefFilter>,
    pub body_limit: u64,
    pub options: VerifyOptions,
    pub disabled: bool,
    pub action: Action,
    /// Namespaces filled in; empty for `dispatch` receivers.
    pub targets: Vec<Target>,
    /// Set exactly for `dispatch` receivers.
    pub dispatch: Option<DispatchConfig>,
    /// Set exactly for receivers whose senders prove themselves with an ID token.
    pub token_rules: Option<TokenRules>,
    /// The receiver's `filter`, evaluated at the edge after verification.
    pub filter: Option<EdgeFilter>,
    /// Flux's `resourceFilter`, forwarded for the controller (each target forwards its own `filter`).
    pub resource_filter: Option<String>,
    /// The payload fields the target filters read: the attested request carries these, and no other
    /// part of the payload.
    pub payload_reads: Vec<Vec<String>>,
}

impl Receiver {
    pub fn label(&self) -> String {
        receiver_label(&self.namespace, &self.name)
    }
}

/// How logs and errors name a receiver.
fn receiver_label(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A validated configuration. The attestation key and the receivers' secrets are [`Secret`]s, so `{:?}`
/// never shows them.
#[derive(Debug)]
pub struct Config {
    pub receivers: Vec<Receiver>,
    pub forward_path: String,
    pub attestation_key: Secret,
    /// Path to receiver index.
    by_path: HashMap<String, usize>,
}

impl Config {
    /// Parses and validates a document as the controller delivers it over the configuration channel
    /// ([`crate::channel`]): secrets and the attestation key inline (the channel is sealed).
    pub fn parse(json: &[u8]) -> Result<Self, ConfigError> {
        // serde_json's syntax errors say where, never what: no value of the document is echoed.
        let raw: Value = serde_json::from_slice(json).map_err(|e| ConfigError {
            receiver: None,
            field: wire::DOCUMENT.into(),
            reason: format!("not valid JSON: {e}"),
        })?;
        let document = wire::read(&raw)?;
        compile::config(document, &raw)
    }

    /// The receiver answering on `path` (query string ignored).
    pub fn receiver_for_path(&self, path: &str) -> Option<usize> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.by_path.get(path).copied()
    }
}

/// Flux's webhook path: `/hook/` + hex SHA-256 of `token + name + namespace`.
pub fn flux_webhook_path(token: &str, name: &str, namespace: &str) -> String {
    format!(
        "{PATH_PREFIX}{}",
        sha256_hex(&[token.as_bytes(), name.as_bytes(), namespace.as_bytes()])
    )
}

/// What the tests of both steps share: a valid document, and the run of a table of error cases.
#[cfg(test)]
mod test_support {
    use super::*;

    pub fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes())
    }

    pub const VALID: &str = r#"{"attestationKey":"attestation-key-0123456789",
        "receivers":[{"name":"webapp","namespace":"flux-system","type":"github",
        "events":["Push","ping"],"secrets":[{"inline":"test-token"},{"inline":"rotated-token"}],
        "refs":{"branches":["main","release/*"],"tags":["v*"]},
        "targets":[{"kind":"GitRepository","name":"webapp"},
                   {"kind":"Kustomization","name":"*","matchLabels":{"app":"webapp"},"namespace":"apps"}]}]}"#;

    /// Distinctive secret values: none may appear in any error.
    pub const SECRET_TEXT: &str = "hunter2-distinctive-secret";
    pub const SECRET_NUMBER: &str = "12345678901234567890123";

    /// `SECRET_NUMBER` as a JSON number.
    pub fn secret_number() -> Value {
        serde_json::from_str(SECRET_NUMBER).unwrap()
    }

    /// The error for `VALID` with `mutation` applied to its first receiver.
    pub fn error_for(mutation: impl Fn(&mut Value)) -> ConfigError {
        let mut value: Value = serde_json::from_str(VALID).unwrap();
        mutation(&mut value["receivers"][0]);
        parse(&value.to_string()).unwrap_err()
    }

    /// The first receiver as `provider`, without the GitHub-only fields it does not take.
    pub fn without_github_fields<'a>(d: &'a mut Value, provider: &str) -> &'a mut Value {
        let r = &mut d["receivers"][0];
        r["type"] = provider.into();
        if let Some(fields) = r.as_object_mut() {
            fields.retain(|k, _| !["events", "refs"].contains(&k.as_str()));
        }
        r
    }

    /// Makes the first receiver a dispatch receiver with `block` as its `dispatch`.
    pub fn dispatch(document: &mut Value, block: Value) {
        as_dispatch(&mut document["receivers"][0], block);
    }

    /// Makes `receiver` a bearer receiver that dispatches with `block`.
    pub fn as_dispatch(receiver: &mut Value, block: Value) {
        receiver["type"] = "bearer".into();
        if let Some(fields) = receiver.as_object_mut() {
            fields.retain(|k, _| !["events", "refs", "targets"].contains(&k.as_str()));
        }
        receiver["action"] = "dispatch".into();
        receiver["dispatch"] = block;
    }

    /// Adds a second, valid receiver `flux-system/other` (pinned path) and returns it.
    pub fn second(document: &mut Value) -> &mut Value {
        let mut other = document["receivers"][0].clone();
        other["name"] = "other".into();
        other["path"] = "/hook/other".into();
        let receivers = document["receivers"].as_array_mut().unwrap();
        receivers.push(other);
        &mut receivers[1]
    }

    pub type Mutation = fn(&mut Value);

    /// A named error case: a mutation of the whole `VALID` document, the full field path, the receiver
    /// the message names, and the reason.
    pub type ErrorCase = (
        &'static str,
        Mutation,
        &'static str,
        Option<&'static str>,
        &'static str,
    );

    /// Runs `cases`: each error names its field, receiver and reason, and shows no secret value.
    pub fn assert_error_cases(cases: Vec<ErrorCase>) {
        let mut failures = Vec::new();
        for (case, mutate, field, receiver, reason) in cases {
            let mut document: Value = serde_json::from_str(VALID).unwrap();
            mutate(&mut document);
            let err = match parse(&document.to_string()) {
                Ok(_) => {
                    failures.push(format!("{case}: parsed"));
                    continue;
                }
                Err(err) => err,
            };
            let (shown, debug) = (err.to_string(), format!("{err:?}"));
            let expected = match receiver {
                Some(receiver) => format!("receiver {receiver}: field `{field}`: {reason}"),
                None => format!("field `{field}`: {reason}"),
            };
            if (err.field.as_str(), err.receiver.as_deref()) != (field, receiver)
                || shown != expected
            {
                failures.push(format!("{case}: want `{expected}`, got `{shown}`"));
            }
            for secret in [
                SECRET_TEXT,
                "hunter2",
                SECRET_NUMBER,
                "1.2345678901234568",
                "test-token",
                "rotated-token",
            ] {
                if shown.contains(secret) || debug.contains(secret) {
                    failures.push(format!("{case}: shows {secret}: {shown} / {debug}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn flux_path_known_answer() {
        assert_eq!(
            flux_webhook_path("test-token", "webapp", "flux-system"),
            "/hook/2846ca2372e0a9b4e884dc382f132cbeb1c7d192b42af377c903dfe16aad867a"
        );
    }

    #[test]
    fn valid_configuration() {
        let config = parse(VALID).unwrap();
        let r = &config.receivers[0];
        assert_eq!(r.events, ["push", "ping"]);
        assert_eq!(r.paths.len(), 2, "one Flux path per secret");
        assert_eq!(r.secrets[1].expose(), b"rotated-token");
        assert!(!r.pinned_path);
        assert_eq!(
            config.receiver_for_path(
                "/hook/2846ca2372e0a9b4e884dc382f132cbeb1c7d192b42af377c903dfe16aad867a?x=1"
            ),
            Some(0)
        );
        assert_eq!(r.targets[0].namespace.as_deref(), Some("flux-system"));
        assert_eq!(r.targets[1].namespace.as_deref(), Some("apps"));
        assert_eq!(r.body_limit, DEFAULT_BODY_LIMIT);
        assert!(
            !format!("{config:?}").contains("test-token"),
            "Debug must not print secrets"
        );
    }

    /// `Config` and `Receiver` derive `Debug`: the secrets' own type keeps them out of it.
    #[test]
    fn debug_shows_no_secret_and_no_attestation_key() {
        let config = parse(VALID).unwrap();
        assert_eq!(
            config.attestation_key.expose(),
            b"attestation-key-0123456789"
        );
        assert_eq!(config.receivers[0].secrets.len(), 2);
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(shown.contains("webapp"), "{shown}");
            for secret in ["attestation-key-0123456789", "test-token", "rotated-token"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }

    /// Secrets come only inline, in the document the controller seals: an environment variable is
    /// never read (a field naming one is unknown), the attestation key is required, no receiver may
    /// pin the path the filter answers confirmations on, and no receiver at all is fine.
    #[test]
    fn a_document_holds_its_secrets_and_nothing_else() {
        let from_env = VALID.replace(r#"{"inline":"test-token"}"#, r#"{"env":"GITHUB_SECRET"}"#);
        let err = parse(&from_env).unwrap_err();
        assert_eq!(err.field, "receivers[0].secrets[0].env", "{err}");
        let no_key = VALID.replace(r#""attestationKey":"attestation-key-0123456789","#, "");
        let err = parse(&no_key).unwrap_err();
        assert_eq!(err.field, "attestationKey", "{err}");
        let key_from_env = VALID.replace(
            r#""attestationKey":"attestation-key-0123456789","#,
            r#""attestationKeyEnv":"HOOKGATE_ATTESTATION_KEY","#,
        );
        assert_eq!(parse(&key_from_env).unwrap_err().field, "attestationKeyEnv");
        let empty = r#"{"attestationKey":"attestation-key-0123456789","receivers":[]}"#;
        assert!(parse(empty).is_ok(), "no receiver ready yet");
        let pinned = VALID.replacen(
            r#""type":"github","#,
            r#""type":"github","path":"/hook/.well-known/hookgate/confirmation","#,
            1,
        );
        let err = parse(&pinned).unwrap_err();
        assert_eq!(err.field, "receivers[0].path", "{err}");
    }

    #[test]
    fn ref_filter() {
        let f = RefFilter {
            branches: vec!["main".into(), "release/*".into()],
            tags: vec!["v*".into()],
        };
        assert!(f.accepts("refs/heads/main"));
        assert!(f.accepts("refs/heads/release/1.0"));
        assert!(!f.accepts("refs/heads/feature"));
        assert!(f.accepts("refs/tags/v1.0.0"));
        assert!(!f.accepts("refs/tags/main"));
        assert!(!f.accepts("main"));
    }

    /// The shape is checked before the meaning: an unknown field is reported before a missing one.
    #[test]
    fn minimal_documents() {
        assert_eq!(
            parse(r#"{"receivers":[]}"#).unwrap_err().field,
            "attestationKey"
        );
        assert_eq!(
            parse(r#"{"receivers":[], "extra": 1}"#).unwrap_err().field,
            "extra"
        );
    }

    #[test]
    fn a_document_that_is_not_json_is_refused_without_its_content() {
        for (case, json) in [
            ("truncated", "{"),
            ("a bare secret", "hunter2-distinctive-secret"),
        ] {
            let err = parse(json).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.receiver.as_deref()),
                ("(document)", None),
                "{case}"
            );
            assert!(err.reason.starts_with("not valid JSON: "), "{case}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{case}: {err}");
        }
    }
}
