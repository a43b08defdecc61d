//! The filter configuration: the JSON that Envoy Gateway's `EnvoyExtensionPolicy` `config` carries.
//!
//! Parsing is strict: an unknown field or an invalid value is an error that names the receiver and the
//! field. The caller (the proxy-wasm glue) then fails closed.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::attestation::check_key;
use crate::crypto::sha256_hex;
use crate::dispatch::DispatchConfig;
use crate::glob::glob_matches;
use crate::protocol::{Action, Target, DEFAULT_FORWARD_PATH};
use crate::providers::{self, Proof, Provider, VerifyOptions};

/// Flux's limit, and the default here.
pub const DEFAULT_BODY_LIMIT: u64 = 3 * 1024 * 1024;
/// GitHub sends up to 25 MB; nothing legitimate needs more.
pub const MAX_BODY_LIMIT: u64 = 32 * 1024 * 1024;
pub const DEFAULT_ATTESTATION_KEY_ENV: &str = "HOOKGATE_ATTESTATION_KEY";
/// Every receiver path starts with this, as Flux's do.
pub const PATH_PREFIX: &str = "/hook/";

/// A configuration error, naming where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `namespace/name (receivers[i])`, or `None` for top-level fields.
    pub receiver: Option<String>,
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

/// Where a receiver's secret comes from (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    Inline,
}

/// One validated receiver.
pub struct Receiver {
    pub name: String,
    pub namespace: String,
    pub provider_name: &'static str,
    pub provider: &'static dyn Provider,
    /// Lowercased; empty accepts every event.
    pub events: Vec<String>,
    /// Key bytes, as the provider uses them.
    pub secrets: Vec<Vec<u8>>,
    /// Where each secret came from, in order.
    pub secret_sources: Vec<SecretSource>,
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
}

impl Receiver {
    pub fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for Receiver {
    // Hand-written so that secrets can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("type", &self.provider_name)
            .field("paths", &self.paths)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// A validated configuration.
pub struct Config {
    pub receivers: Vec<Receiver>,
    pub forward_path: String,
    pub attestation_key: Vec<u8>,
    /// Path to receiver index.
    by_path: HashMap<String, usize>,
    /// Things worth a warning log (inline secrets), without secret values.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("receivers", &self.receivers)
            .field("forward_path", &self.forward_path)
            .finish_non_exhaustive()
    }
}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "receivers",
    "attestationKeyEnv",
    "attestationKey",
    "forwardPath",
];
const RECEIVER_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "type",
    "events",
    "secrets",
    "path",
    "refs",
    "bodyLimit",
    "allowSha1",
    "disabled",
    "targets",
    "action",
    "dispatch",
];

impl Config {
    /// Parses and validates `json`, reading secrets through `env` (the host environment in Envoy).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let top_err = |field: &str, reason: String| ConfigError {
            receiver: None,
            field: field.into(),
            reason,
        };
        let root: Value = serde_json::from_slice(json)
            .map_err(|e| top_err("(document)", format!("not valid JSON: {e}")))?;
        let top = Fields::new(&root, None, TOP_LEVEL_FIELDS)?;
        let mut warnings = Vec::new();

        let forward_path: String = top
            .optional("forwardPath")?
            .unwrap_or_else(|| DEFAULT_FORWARD_PATH.to_string());
        if !forward_path.starts_with('/') || forward_path.contains(['?', '#', ' ']) {
            return Err(top_err(
                "forwardPath",
                "must be an absolute path without query".into(),
            ));
        }

        let attestation_key = match top.optional::<String>("attestationKey")? {
            Some(inline) => {
                check_key(inline.as_bytes())
                    .map_err(|e| top_err("attestationKey", e.to_string()))?;
                warnings.push("attestation key is inline in the configuration: use attestationKeyEnv outside development".into());
                inline.into_bytes()
            }
            None => {
                let var: String = top
                    .optional("attestationKeyEnv")?
                    .unwrap_or_else(|| DEFAULT_ATTESTATION_KEY_ENV.to_string());
                let key = env(&var).ok_or_else(|| {
                    top_err(
                        "attestationKeyEnv",
                        format!("environment variable {var} is not set"),
                    )
                })?;
                check_key(key.as_bytes()).map_err(|e| {
                    top_err(
                        "attestationKeyEnv",
                        format!("environment variable {var}: {e}"),
                    )
                })?;
                key.into_bytes()
            }
        };

        let raw_receivers: Vec<Value> = top.required("receivers")?;
        if raw_receivers.is_empty() {
            return Err(top_err(
                "receivers",
                "at least one receiver is required".into(),
            ));
        }
        let mut receivers = Vec::with_capacity(raw_receivers.len());
        let mut by_path: HashMap<String, usize> = HashMap::new();
        for (index, raw) in raw_receivers.iter().enumerate() {
            let receiver = parse_receiver(raw, index, &forward_path, env, &mut warnings)?;
            let label = format!("{} (receivers[{index}])", receiver.label());
            if receivers
                .iter()
                .any(|r: &Receiver| r.name == receiver.name && r.namespace == receiver.namespace)
            {
                return Err(ConfigError {
                    receiver: Some(label),
                    field: "name".into(),
                    reason: "duplicate receiver".into(),
                });
            }
            for path in &receiver.paths {
                if let Some(other) = by_path.insert(path.clone(), index) {
                    let reason = if other == index {
                        "two of its secrets give the same path".to_string()
                    } else {
                        format!("path already used by receiver {}", receivers[other].label())
                    };
                    return Err(ConfigError {
                        receiver: Some(label),
                        field: "path".into(),
                        reason,
                    });
                }
            }
            receivers.push(receiver);
        }
        Ok(Config {
            receivers,
            forward_path,
            attestation_key,
            by_path,
            warnings,
        })
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

/// Accessor over a JSON object that refuses unknown keys and names the field on every error.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    receiver: Option<String>,
}

impl<'a> Fields<'a> {
    fn new(
        value: &'a Value,
        receiver: Option<String>,
        allowed: &[&str],
    ) -> Result<Self, ConfigError> {
        let object = value.as_object().ok_or_else(|| ConfigError {
            receiver: receiver.clone(),
            field: "(object)".into(),
            reason: "must be a JSON object".into(),
        })?;
        if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ConfigError {
                receiver,
                // Quoted when empty, so the log line still shows which field it is.
                field: if unknown.is_empty() {
                    "\"\"".to_string()
                } else {
                    unknown.clone()
                },
                reason: format!("unknown field (expected one of: {})", allowed.join(", ")),
            });
        }
        Ok(Self { object, receiver })
    }

    fn error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            receiver: self.receiver.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn optional<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, ConfigError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|e| self.error(field, e.to_string())),
        }
    }

    fn required<T: DeserializeOwned>(&self, field: &str) -> Result<T, ConfigError> {
        self.optional(field)?
            .ok_or_else(|| self.error(field, "is required"))
    }
}

fn parse_receiver(
    raw: &Value,
    index: usize,
    forward_path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Receiver, ConfigError> {
    // Name the receiver in errors as precisely as the input allows, even before it is validated.
    let guess = |key: &str| {
        raw.get(key)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let label = format!(
        "{}/{} (receivers[{index}])",
        guess("namespace"),
        guess("name")
    );
    let fields = Fields::new(raw, Some(label.clone()), RECEIVER_FIELDS)?;

    let name: String = fields.required("name")?;
    if !is_dns_subdomain(&name) {
        return Err(fields.error(
            "name",
            "must be a Kubernetes object name (lowercase letters, digits, '-', '.')",
        ));
    }
    let namespace: String = fields.required("namespace")?;
    if !is_dns_label(&namespace) {
        return Err(fields.error("namespace", "must be a Kubernetes namespace name"));
    }

    let provider_name: String = fields.required("type")?;
    let (provider_name, provider) = providers::PROVIDERS
        .iter()
        .find(|(n, _)| *n == provider_name)
        .map(|(n, p)| (*n, *p))
        .ok_or_else(|| {
            let known: Vec<&str> = providers::names().collect();
            fields.error(
                "type",
                format!(
                    "unknown type {provider_name:?} (known: {})",
                    known.join(", ")
                ),
            )
        })?;

    let events: Vec<String> = fields.optional("events")?.unwrap_or_default();
    if !events.is_empty() && !provider.supports_events() {
        return Err(fields.error(
            "events",
            format!("type {provider_name} has no events to filter on"),
        ));
    }
    if events.iter().any(|e| e.trim().is_empty()) {
        return Err(fields.error("events", "an event name is empty"));
    }
    let events = events
        .iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .collect();

    let allow_sha1: bool = fields.optional("allowSha1")?.unwrap_or(false);
    if allow_sha1 && !provider.supports_sha1() {
        return Err(fields.error(
            "allowSha1",
            format!("type {provider_name} never signs with SHA-1"),
        ));
    }

    let raw_secrets: Vec<Value> = fields.required("secrets")?;
    if raw_secrets.is_empty() {
        return Err(fields.error("secrets", "at least one secret is required"));
    }
    let mut secret_texts = Vec::with_capacity(raw_secrets.len());
    let mut secret_sources: Vec<SecretSource> = Vec::with_capacity(raw_secrets.len());
    for (i, raw_secret) in raw_secrets.iter().enumerate() {
        let field = format!("secrets[{i}]");
        let secret = Fields::new(raw_secret, Some(label.clone()), &["env", "inline"])
            .map_err(|e| fields.error(&field, e.reason))?;
        let text = match (
            secret.optional::<String>("env")?,
            secret.optional::<String>("inline")?,
        ) {
            (Some(var), None) => {
                let value = env(&var).ok_or_else(|| {
                    fields.error(
                        &format!("{field}.env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                secret_sources.push(SecretSource::Env(var));
                value
            }
            (None, Some(inline)) => {
                warnings.push(format!("receiver {label}: {field} is inline in the configuration: use env outside development"));
                secret_sources.push(SecretSource::Inline);
                inline
            }
            _ => return Err(fields.error(&field, "needs exactly one of `env` or `inline`")),
        };
        if text.is_empty() {
            return Err(fields.error(&field, "is empty"));
        }
        secret_texts.push(text);
    }
    let secrets = secret_texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            provider
                .decode_secret(text)
                .map_err(|reason| fields.error(&format!("secrets[{i}]"), reason))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let explicit_path: Option<String> = fields.optional("path")?;
    let pinned_path = explicit_path.is_some();
    let paths = match explicit_path {
        Some(_) if provider.proof() == Proof::SecretPath => {
            return Err(fields.error(
                "path",
                format!("type {provider_name} has no proof but its secret path: an explicit path would accept anyone"),
            ))
        }
        Some(path) => {
            let valid = path.len() > PATH_PREFIX.len()
                && path.starts_with(PATH_PREFIX)
                && !path.contains(['?', '#'])
                && !path.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return Err(fields.error("path", format!("must start with {PATH_PREFIX} and have no query")));
            }
            vec![path]
        }
        None => secret_texts
            .iter()
            .map(|token| flux_webhook_path(token, &name, &namespace))
            .collect(),
    };
    if paths.iter().any(|p| p == forward_path) {
        return Err(fields.error("path", "is the forward path"));
    }

    let refs = match fields.optional::<Value>("refs")? {
        None => None,
        Some(raw_refs) => {
            if !provider.supports_refs() {
                return Err(fields.error(
                    "refs",
                    format!("type {provider_name} payloads carry no Git ref"),
                ));
            }
            let refs_fields = Fields::new(&raw_refs, Some(label.clone()), &["branches", "tags"])
                .map_err(|e| fields.error(&format!("refs.{}", e.field), e.reason))?;
            let filter = RefFilter {
                branches: refs_fields.optional("branches")?.unwrap_or_default(),
                tags: refs_fields.optional("tags")?.unwrap_or_default(),
            };
            if filter.branches.is_empty() && filter.tags.is_empty() {
                return Err(fields.error("refs", "needs at least one branch or tag glob"));
            }
            if filter
                .branches
                .iter()
                .chain(&filter.tags)
                .any(String::is_empty)
            {
                return Err(fields.error("refs", "a glob is empty"));
            }
            Some(filter)
        }
    };

    let body_limit: u64 = fields.optional("bodyLimit")?.unwrap_or(DEFAULT_BODY_LIMIT);
    if body_limit == 0 || body_limit > MAX_BODY_LIMIT {
        return Err(fields.error(
            "bodyLimit",
            format!("must be between 1 and {MAX_BODY_LIMIT} bytes"),
        ));
    }
    let disabled: bool = fields.optional("disabled")?.unwrap_or(false);

    let action: Action = fields.optional("action")?.unwrap_or_default();
    let dispatch: Option<DispatchConfig> = fields.optional("dispatch")?;
    match (action, &dispatch) {
        (Action::Dispatch, None) => {
            return Err(fields.error("dispatch", "is required with action dispatch"))
        }
        (Action::Reconcile, Some(_)) => {
            return Err(fields.error("dispatch", "only applies with action dispatch"))
        }
        (_, Some(d)) => d
            .validate()
            .map_err(|reason| fields.error("dispatch", reason))?,
        (Action::Reconcile, None) => {}
    }
    let raw_targets: Vec<Value> = fields.optional("targets")?.unwrap_or_default();
    match action {
        Action::Reconcile if raw_targets.is_empty() => {
            return Err(fields.error("targets", "at least one target is required"))
        }
        Action::Dispatch if !raw_targets.is_empty() => {
            return Err(fields.error("targets", "a dispatch receiver has no targets"))
        }
        _ => {}
    }
    let mut targets = Vec::with_capacity(raw_targets.len());
    for (i, raw_target) in raw_targets.iter().enumerate() {
        let field = format!("targets[{i}]");
        let mut target =
            Target::deserialize_from(raw_target).map_err(|e| fields.error(&field, e))?;
        validate_target(&target).map_err(|reason| fields.error(&field, reason))?;
        if target.namespace.as_deref().is_none_or(str::is_empty) {
            target.namespace = Some(namespace.clone());
        }
        targets.push(target);
    }

    Ok(Receiver {
        name,
        namespace,
        provider_name,
        provider,
        events,
        secrets,
        secret_sources,
        paths,
        pinned_path,
        refs,
        body_limit,
        options: VerifyOptions { allow_sha1 },
        disabled,
        action,
        targets,
        dispatch,
    })
}

impl Target {
    fn deserialize_from(value: &Value) -> Result<Self, String> {
        <Self as serde::Deserialize>::deserialize(value).map_err(|e| e.to_string())
    }
}

fn validate_target(target: &Target) -> Result<(), String> {
    if target.kind.trim().is_empty() {
        return Err("kind is required".into());
    }
    if target.name == "*" {
        if target.match_labels.is_empty() {
            return Err("name \"*\" requires matchLabels".into());
        }
    } else if !is_dns_subdomain(&target.name) {
        return Err("name must be an object name or \"*\" with matchLabels".into());
    } else if !target.match_labels.is_empty() {
        return Err("matchLabels only applies with name \"*\"".into());
    }
    if let Some(ns) = target.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        if !is_dns_label(ns) {
            return Err("namespace must be a Kubernetes namespace name".into());
        }
    }
    Ok(())
}

/// RFC 1123 label: what Kubernetes requires of namespace names.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOOKGATE_ATTESTATION_KEY" => Some("attestation-key-0123456789".into()),
            "GITHUB_SECRET" => Some("test-token".into()),
            "NEW_SECRET" => Some("rotated-token".into()),
            _ => None,
        }
    }

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes(), &env)
    }

    const VALID: &str = r#"{"receivers":[{"name":"webapp","namespace":"flux-system","type":"github",
        "events":["Push","ping"],"secrets":[{"env":"GITHUB_SECRET"},{"env":"NEW_SECRET"}],
        "refs":{"branches":["main","release/*"],"tags":["v*"]},
        "targets":[{"kind":"GitRepository","name":"webapp"},
                   {"kind":"Kustomization","name":"*","matchLabels":{"app":"webapp"},"namespace":"apps"}]}]}"#;

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
        assert_eq!(
            r.secret_sources,
            [
                SecretSource::Env("GITHUB_SECRET".into()),
                SecretSource::Env("NEW_SECRET".into())
            ]
        );
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
        assert!(config.warnings.is_empty());
        assert!(
            !format!("{config:?}").contains("test-token"),
            "Debug must not print secrets"
        );
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

    fn error_for(mutation: impl Fn(&mut Value)) -> ConfigError {
        let mut value: Value = serde_json::from_str(VALID).unwrap();
        mutation(&mut value["receivers"][0]);
        parse(&value.to_string()).unwrap_err()
    }

    #[test]
    fn errors_name_receiver_and_field() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|r| r["sekrets"] = Value::Null), "sekrets"),
            (Box::new(|r| r["type"] = "gitlub".into()), "type"),
            (
                Box::new(|r| r["secrets"] = serde_json::json!([{"env": "MISSING"}])),
                "secrets[0].env",
            ),
            (
                Box::new(|r| r["secrets"] = serde_json::json!([{"env": "A", "inline": "b"}])),
                "secrets[0]",
            ),
            (
                Box::new(|r| r["secrets"] = serde_json::json!([])),
                "secrets",
            ),
            (Box::new(|r| r["path"] = "/other/x".into()), "path"),
            (
                Box::new(|r| r["path"] = "/hook/v1/reconcile".into()),
                "path",
            ),
            (Box::new(|r| r["bodyLimit"] = "big".into()), "bodyLimit"),
            (Box::new(|r| r["bodyLimit"] = 0.into()), "bodyLimit"),
            (
                Box::new(|r| {
                    r["targets"] = serde_json::json!([{"kind": "Kustomization", "name": "*"}])
                }),
                "targets[0]",
            ),
            (
                Box::new(|r| {
                    r["targets"] = serde_json::json!([{"kind": "Kustomization", "nmae": "x"}])
                }),
                "targets[0]",
            ),
            (
                Box::new(|r| r["targets"] = serde_json::json!([])),
                "targets",
            ),
            (
                Box::new(|r| r["refs"] = serde_json::json!({"branch": ["main"]})),
                "refs.branch",
            ),
            (Box::new(|r| r["refs"] = serde_json::json!({})), "refs"),
            (
                Box::new(|r| r["namespace"] = "Flux_System".into()),
                "namespace",
            ),
            (
                Box::new(|r| r["events"] = serde_json::json!([""])),
                "events",
            ),
        ];
        for (mutate, field) in cases {
            let err = error_for(mutate);
            assert_eq!(err.field, field, "{err}");
            assert!(
                err.receiver.as_deref().unwrap().contains("(receivers[0])"),
                "{err}"
            );
            assert!(!err.to_string().contains("test-token"), "{err}");
        }
    }

    #[test]
    fn type_specific_fields_are_refused_where_meaningless() {
        let base = |r: &mut Value, t: &str| {
            r["type"] = t.into();
            r.as_object_mut().unwrap().remove("refs");
            r.as_object_mut().unwrap().remove("events");
        };
        let err = error_for(|r| {
            base(r, "generic");
            r["path"] = "/hook/fixed".into();
        });
        assert_eq!(err.field, "path", "a secret-path type cannot pin its path");
        let err = error_for(|r| {
            base(r, "harbor");
            r["refs"] = serde_json::json!({"branches": ["main"]});
        });
        assert_eq!(err.field, "refs");
        let err = error_for(|r| {
            base(r, "bearer");
            r["events"] = serde_json::json!(["push"]);
        });
        assert_eq!(err.field, "events");
        let err = error_for(|r| {
            base(r, "gitlab");
            r["allowSha1"] = true.into();
        });
        assert_eq!(err.field, "allowSha1");
        let err = error_for(|r| {
            base(r, "standard-webhooks");
            r["secrets"] = serde_json::json!([{"inline": "whsec_%%"}]);
        });
        assert_eq!(err.field, "secrets[0]");
    }

    #[test]
    fn duplicates_and_top_level_errors() {
        let mut value: Value = serde_json::from_str(VALID).unwrap();
        let copy = value["receivers"][0].clone();
        value["receivers"].as_array_mut().unwrap().push(copy);
        assert_eq!(
            parse(&value.to_string()).unwrap_err().reason,
            "duplicate receiver"
        );

        let mut value: Value = serde_json::from_str(VALID).unwrap();
        let mut copy = value["receivers"][0].clone();
        copy["name"] = "other".into();
        copy["path"] = "/hook/pinned".into();
        let mut third = copy.clone();
        third["name"] = "third".into();
        value["receivers"]
            .as_array_mut()
            .unwrap()
            .extend([copy, third]);
        let err = parse(&value.to_string()).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("path", "path already used by receiver flux-system/other")
        );

        assert_eq!(parse("{").unwrap_err().field, "(document)");
        assert_eq!(parse(r#"{"receivers":[]}"#).unwrap_err().field, "receivers");
        assert_eq!(
            parse(r#"{"receivers":[], "extra": 1}"#).unwrap_err().field,
            "extra"
        );
        let no_key = Config::parse(VALID.as_bytes(), &|n| {
            (n != "HOOKGATE_ATTESTATION_KEY").then(|| env(n)).flatten()
        });
        assert_eq!(no_key.unwrap_err().field, "attestationKeyEnv");
        let short = VALID.replacen('{', r#"{"attestationKey":"short","#, 1);
        assert_eq!(parse(&short).unwrap_err().field, "attestationKey");
    }

    /// The filter applies the controller's rule to its key: whitespace at either end is refused at start-up
    /// (Envoy reads the Secret byte for byte; the controller would read the same bytes).
    #[test]
    fn attestation_key_with_surrounding_whitespace_is_refused() {
        let key = "attestation-key-0123456789";
        let with_env = |value: String| {
            move |name: &str| {
                if name == "HOOKGATE_ATTESTATION_KEY" {
                    Some(value.clone())
                } else {
                    env(name)
                }
            }
        };
        for (name, padded) in [
            ("trailing newline", format!("{key}\n")),
            ("trailing CRLF", format!("{key}\r\n")),
            ("leading space", format!(" {key}")),
        ] {
            let err = Config::parse(VALID.as_bytes(), &with_env(padded.clone())).unwrap_err();
            assert_eq!(err.field, "attestationKeyEnv", "{name}: {err}");
            assert!(
                err.reason.contains("begins or ends with whitespace"),
                "{name}: {err}"
            );
            assert!(
                !format!("{err} {err:?}").contains(key),
                "{name}: the key is never shown"
            );

            let inline = serde_json::to_string(&padded).unwrap();
            let json = VALID.replacen('{', &format!(r#"{{"attestationKey":{inline},"#), 1);
            let err = parse(&json).unwrap_err();
            assert_eq!(err.field, "attestationKey", "{name}: {err}");
            assert!(
                err.reason.contains("begins or ends with whitespace"),
                "{name}: {err}"
            );
            assert!(
                !format!("{err} {err:?}").contains(key),
                "{name}: the key is never shown"
            );
        }
        assert!(Config::parse(VALID.as_bytes(), &with_env(key.into())).is_ok());
    }

    #[test]
    fn inline_secrets_warn() {
        let json = VALID.replace(r#"{"env":"GITHUB_SECRET"}"#, r#"{"inline":"dev-only"}"#);
        let config = parse(&json).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(!config.warnings[0].contains("dev-only"));
    }
}
