//! The filter configuration: the JSON that Envoy Gateway's `EnvoyExtensionPolicy` `config` carries.
//!
//! Parsing is strict: an unknown field or an invalid value is an error that names the receiver and the
//! field. The caller (the proxy-wasm glue) then fails closed.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::dispatch::DispatchConfig;
use crate::glob::glob_matches;
use crate::providers::{self, Proof, Provider, VerifyOptions};
use hookgate_protocol::attestation::check_key;
use hookgate_protocol::crypto::sha256_hex;
use hookgate_protocol::kubernetes;
use hookgate_protocol::{Action, Secret, Target, DEFAULT_FORWARD_PATH};

/// Flux's limit, and the default here.
pub const DEFAULT_BODY_LIMIT: u64 = 3 * 1024 * 1024;
/// GitHub sends up to 25 MB; nothing legitimate needs more.
pub const MAX_BODY_LIMIT: u64 = 32 * 1024 * 1024;
pub const DEFAULT_ATTESTATION_KEY_ENV: &str = "HOOKGATE_ATTESTATION_KEY";
/// Every receiver path starts with this, as Flux's do.
pub const PATH_PREFIX: &str = "/hook/";

/// A configuration error, naming where it is. It never holds the value of a field that carries secret
/// material (the attestation key, the secrets and their variables' contents): `Display` and `Debug` are
/// safe to log.
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
    pub secrets: Vec<Secret>,
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
    pub attestation_key: Secret,
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

/// What an environment variable that is not set stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unset {
    /// An error: the filter cannot verify without its secrets.
    Refused,
    /// A placeholder the variable's use accepts (its provider's [`Provider::placeholder_secret`], a key
    /// of the minimum length), so that the rest of a configuration can be checked on a workstation.
    Placeholder,
}

/// Stands for an unset attestation key variable when only checking.
const PLACEHOLDER_ATTESTATION_KEY: &str = "hookgate-check-placeholder-attestation-key";

impl Config {
    /// Parses and validates `json`, reading secrets through `env` (the host environment in Envoy).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse_with(json, env, Unset::Refused)
    }

    /// Parses and validates `json` as [`Config::parse`] does, except that an unset variable stands for a
    /// placeholder valid for its use instead of being an error: for `hookgate check`, which reports the
    /// paths that depend on unset variables as unknown. Variables that are set are checked as usual.
    pub fn parse_with_placeholders(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_with(json, env, Unset::Placeholder)
    }

    fn parse_with(
        json: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
        unset: Unset,
    ) -> Result<Self, ConfigError> {
        let top_err = |field: &str, reason: String| ConfigError {
            receiver: None,
            field: field.into(),
            reason,
        };
        // serde_json's syntax errors say where, never what: no value of the document is echoed.
        let root: Value = serde_json::from_slice(json)
            .map_err(|e| top_err("(document)", format!("not valid JSON: {e}")))?;
        let top = Fields::new(&root, None, String::new(), TOP_LEVEL_FIELDS)?;
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

        let attestation_key = match top.secret_string("attestationKey")? {
            Some(inline) => {
                check_key(inline.as_bytes())
                    .map_err(|e| top_err("attestationKey", e.to_string()))?;
                warnings.push("attestation key is inline in the configuration: use attestationKeyEnv outside development".into());
                Secret::from(inline)
            }
            None => {
                let var: String = top
                    .optional("attestationKeyEnv")?
                    .unwrap_or_else(|| DEFAULT_ATTESTATION_KEY_ENV.to_string());
                let key = match env(&var) {
                    Some(key) => key,
                    None if unset == Unset::Placeholder => PLACEHOLDER_ATTESTATION_KEY.to_string(),
                    None => {
                        return Err(top_err(
                            "attestationKeyEnv",
                            format!("environment variable {var} is not set"),
                        ))
                    }
                };
                check_key(key.as_bytes()).map_err(|e| {
                    top_err(
                        "attestationKeyEnv",
                        format!("environment variable {var}: {e}"),
                    )
                })?;
                Secret::from(key)
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
            let receiver = parse_receiver(raw, index, &forward_path, env, unset, &mut warnings)?;
            let error = |field: &str, reason: String| ConfigError {
                receiver: Some(receiver.label()),
                field: format!("receivers[{index}].{field}"),
                reason,
            };
            if receivers
                .iter()
                .any(|r: &Receiver| r.name == receiver.name && r.namespace == receiver.namespace)
            {
                return Err(error("name", "duplicate receiver".into()));
            }
            for path in &receiver.paths {
                if let Some(other) = by_path.insert(path.clone(), index) {
                    return Err(if other == index {
                        error("secrets", "two of its secrets give the same path".into())
                    } else {
                        error(
                            "path",
                            format!("path already used by receiver {}", receivers[other].label()),
                        )
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

/// `base` and then `field` as one path: `receivers[0]` + `secrets[1]` is `receivers[0].secrets[1]`,
/// `events` + `[2]` is `events[2]`.
fn join_path(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else if field.is_empty() || field == "." {
        base.to_string()
    } else if field.starts_with('[') {
        format!("{base}{field}")
    } else {
        format!("{base}.{field}")
    }
}

/// What kind of JSON value `value` is, for errors that must not show the value itself.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `value` as a `T`; an error names the full path of the offending field (`receivers[0].targets[1].name`,
/// `receivers[2].dispatch.repository`). serde's message may quote the value: never use this for a field
/// that can hold secret material (see [`Fields::secret_string`]).
fn deserialize_at<T: DeserializeOwned>(
    value: &Value,
    receiver: &Option<String>,
    path: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = join_path(path, &e.path().to_string());
        let inner = e.into_inner().to_string();
        let reason = match inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((missing, _)) => {
                field = join_path(&field, missing);
                "is required".to_string()
            }
            None => inner,
        };
        ConfigError {
            receiver: receiver.clone(),
            field,
            reason,
        }
    })
}

/// Accessor over a JSON object that refuses unknown keys and names the full path of the field on every
/// error.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    receiver: Option<String>,
    /// Where the object is: empty for the document, `receivers[0]`, `receivers[0].secrets[1]`, ...
    path: String,
}

impl<'a> Fields<'a> {
    fn new(
        value: &'a Value,
        receiver: Option<String>,
        path: String,
        allowed: &[&str],
    ) -> Result<Self, ConfigError> {
        let Some(object) = value.as_object() else {
            return Err(ConfigError {
                receiver,
                field: if path.is_empty() {
                    "(document)".into()
                } else {
                    path
                },
                reason: format!("must be a JSON object, not {}", json_kind(value)),
            });
        };
        if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            // Quoted when empty, so the log line still shows which field it is.
            let name = if unknown.is_empty() {
                "\"\"".to_string()
            } else {
                unknown.clone()
            };
            return Err(ConfigError {
                receiver,
                field: join_path(&path, &name),
                reason: format!("unknown field (expected one of: {})", allowed.join(", ")),
            });
        }
        Ok(Self {
            object,
            receiver,
            path,
        })
    }

    /// The full path of `field` of this object.
    fn path(&self, field: &str) -> String {
        join_path(&self.path, field)
    }

    fn error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            receiver: self.receiver.clone(),
            field: self.path(field),
            reason: reason.into(),
        }
    }

    /// The object at `field`, refusing keys outside `allowed`.
    fn nested(&self, field: &str, value: &'a Value, allowed: &[&str]) -> Result<Self, ConfigError> {
        Self::new(value, self.receiver.clone(), self.path(field), allowed)
    }

    fn optional<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, ConfigError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => deserialize_at(value, &self.receiver, &self.path(field)).map(Some),
        }
    }

    fn required<T: DeserializeOwned>(&self, field: &str) -> Result<T, ConfigError> {
        self.optional(field)?
            .ok_or_else(|| self.error(field, "is required"))
    }

    /// A string field that holds secret material or says where it is: read without serde, whose messages
    /// quote the value, so that a value of the wrong type is described by its kind only.
    fn secret_string(&self, field: &str) -> Result<Option<String>, ConfigError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => {
                Err(self.error(field, format!("must be a string, not {}", json_kind(other))))
            }
        }
    }
}

fn parse_receiver(
    raw: &Value,
    index: usize,
    forward_path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    unset: Unset,
    warnings: &mut Vec<String>,
) -> Result<Receiver, ConfigError> {
    // Name the receiver in errors as precisely as the input allows, even before it is validated.
    let guess = |key: &str| {
        raw.get(key)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let label = format!("{}/{}", guess("namespace"), guess("name"));
    let fields = Fields::new(
        raw,
        raw.is_object().then(|| label.clone()),
        format!("receivers[{index}]"),
        RECEIVER_FIELDS,
    )?;

    let name: String = fields.required("name")?;
    if !kubernetes::is_dns_subdomain(&name) {
        return Err(fields.error(
            "name",
            "must be a Kubernetes object name (lowercase letters, digits, '-', '.')",
        ));
    }
    let namespace: String = fields.required("namespace")?;
    if !kubernetes::is_dns_label(&namespace) {
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

    // Secret-bearing from here on: errors describe values by their kind, never show them.
    let raw_secrets = match fields.object.get("secrets") {
        None | Some(Value::Null) => return Err(fields.error("secrets", "is required")),
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(fields.error("secrets", "at least one secret is required"))
        }
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(fields.error(
                "secrets",
                format!(
                    "must be a list of {{\"env\": ...}} or {{\"inline\": ...}} objects, not {}",
                    json_kind(other)
                ),
            ))
        }
    };
    let mut secret_texts = Vec::with_capacity(raw_secrets.len());
    let mut secrets = Vec::with_capacity(raw_secrets.len());
    let mut secret_sources: Vec<SecretSource> = Vec::with_capacity(raw_secrets.len());
    for (i, raw_secret) in raw_secrets.iter().enumerate() {
        let secret = fields.nested(&format!("secrets[{i}]"), raw_secret, &["env", "inline"])?;
        let (text, field, source) = match (
            secret.secret_string("env")?,
            secret.secret_string("inline")?,
        ) {
            (Some(var), None) => {
                let value = match env(&var) {
                    Some(value) => value,
                    None if unset == Unset::Placeholder => provider.placeholder_secret(&var),
                    None => {
                        return Err(
                            secret.error("env", format!("environment variable {var} is not set"))
                        )
                    }
                };
                (value, "env", SecretSource::Env(var))
            }
            (None, Some(inline)) => {
                warnings.push(format!(
                    "receiver {label}: {} is inline in the configuration: use env outside development",
                    secret.path
                ));
                (inline, "inline", SecretSource::Inline)
            }
            _ => {
                return Err(fields.error(
                    &format!("secrets[{i}]"),
                    "needs exactly one of `env` or `inline`",
                ))
            }
        };
        // Where the value came from, for the errors about it: its variable, or the inline field.
        let origin = match &source {
            SecretSource::Env(var) => format!("environment variable {var}: "),
            SecretSource::Inline => String::new(),
        };
        if text.is_empty() {
            return Err(secret.error(field, format!("{origin}is empty")));
        }
        let key = provider
            .decode_secret(&text)
            .map_err(|reason| secret.error(field, format!("{origin}{reason}")))?;
        secrets.push(key);
        secret_texts.push(text);
        secret_sources.push(source);
    }

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

    let refs = match fields.object.get("refs") {
        None | Some(Value::Null) => None,
        Some(raw_refs) => {
            if !provider.supports_refs() {
                return Err(fields.error(
                    "refs",
                    format!("type {provider_name} payloads carry no Git ref"),
                ));
            }
            let refs_fields = fields.nested("refs", raw_refs, &["branches", "tags"])?;
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
        (_, Some(d)) => d.validate().map_err(|reason| {
            // `validate` names the offending field first ("repository must be owner/name"): point at
            // that field when the block has it.
            let first = reason.split_whitespace().next().unwrap_or_default();
            let has_field = raw
                .pointer(&format!("/dispatch/{first}"))
                .is_some_and(|v| !v.is_null());
            let field = if has_field {
                format!("dispatch.{first}")
            } else {
                "dispatch".to_string()
            };
            fields.error(&field, reason)
        })?,
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
        let mut target: Target =
            deserialize_at(raw_target, &fields.receiver, &fields.path(&field))?;
        target
            .validate()
            .map_err(|e| fields.error(&format!("{field}.{}", e.field()), e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOOKGATE_ATTESTATION_KEY" => Some("attestation-key-0123456789".into()),
            "GITHUB_SECRET" => Some("test-token".into()),
            "NEW_SECRET" => Some("rotated-token".into()),
            "BAD_WHSEC" => Some(format!("whsec_{SECRET_TEXT}!")),
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

    /// Distinctive secret values: none may appear in any error.
    const SECRET_TEXT: &str = "hunter2-distinctive-secret";
    const SECRET_NUMBER: &str = "12345678901234567890123";

    #[test]
    fn errors_name_the_full_path_and_never_show_secret_values() {
        use serde_json::json;
        /// The first receiver as `provider`, without the GitHub-only fields it does not take.
        fn without_github_fields<'a>(d: &'a mut Value, provider: &str) -> &'a mut Value {
            let r = &mut d["receivers"][0];
            r["type"] = provider.into();
            if let Some(fields) = r.as_object_mut() {
                fields.retain(|k, _| !["events", "refs"].contains(&k.as_str()));
            }
            r
        }
        type Mutation = fn(&mut Value);
        // (case, mutation of the whole document, full field path, receiver named in the message)
        let cases: Vec<(&str, Mutation, &str, Option<&str>)> = vec![
            (
                "unknown top-level field",
                |d| d["extra"] = 1.into(),
                "extra",
                None,
            ),
            (
                "forward path with a query",
                |d| d["forwardPath"] = "/x?y".into(),
                "forwardPath",
                None,
            ),
            (
                "no receivers",
                |d| d["receivers"] = json!([]),
                "receivers",
                None,
            ),
            (
                "receivers not a list",
                |d| d["receivers"] = "none".into(),
                "receivers",
                None,
            ),
            (
                "a receiver not an object",
                |d| d["receivers"] = json!(["x"]),
                "receivers[0]",
                None,
            ),
            (
                "attestation key a number",
                |d| d["attestationKey"] = serde_json::from_str(SECRET_NUMBER).unwrap(),
                "attestationKey",
                None,
            ),
            (
                "attestation key a list",
                |d| d["attestationKey"] = json!([SECRET_TEXT]),
                "attestationKey",
                None,
            ),
            (
                "attestation key too short",
                |d| d["attestationKey"] = "hunter2".into(),
                "attestationKey",
                None,
            ),
            (
                "attestation key variable a number",
                |d| d["attestationKeyEnv"] = 5.into(),
                "attestationKeyEnv",
                None,
            ),
            (
                "unknown receiver field",
                |d| d["receivers"][0]["sekrets"] = SECRET_TEXT.into(),
                "receivers[0].sekrets",
                Some("flux-system/webapp"),
            ),
            (
                "unknown type",
                |d| d["receivers"][0]["type"] = "gitlub".into(),
                "receivers[0].type",
                Some("flux-system/webapp"),
            ),
            (
                "invalid namespace",
                |d| d["receivers"][0]["namespace"] = "Flux_System".into(),
                "receivers[0].namespace",
                Some("Flux_System/webapp"),
            ),
            (
                "an event not a string",
                |d| d["receivers"][0]["events"] = json!(["push", 5]),
                "receivers[0].events[1]",
                Some("flux-system/webapp"),
            ),
            (
                "an empty event",
                |d| d["receivers"][0]["events"] = json!([""]),
                "receivers[0].events",
                Some("flux-system/webapp"),
            ),
            (
                "secrets a string",
                |d| d["receivers"][0]["secrets"] = SECRET_TEXT.into(),
                "receivers[0].secrets",
                Some("flux-system/webapp"),
            ),
            (
                "secrets an object",
                |d| d["receivers"][0]["secrets"] = json!({"inline": SECRET_TEXT}),
                "receivers[0].secrets",
                Some("flux-system/webapp"),
            ),
            (
                "no secrets",
                |d| d["receivers"][0]["secrets"] = json!([]),
                "receivers[0].secrets",
                Some("flux-system/webapp"),
            ),
            (
                "a secret a string",
                |d| d["receivers"][0]["secrets"] = json!([SECRET_TEXT]),
                "receivers[0].secrets[0]",
                Some("flux-system/webapp"),
            ),
            (
                "inline secret a number",
                |d| {
                    d["receivers"][0]["secrets"][1] =
                        json!({"inline": serde_json::from_str::<Value>(SECRET_NUMBER).unwrap()})
                },
                "receivers[0].secrets[1].inline",
                Some("flux-system/webapp"),
            ),
            (
                "inline secret a list",
                |d| d["receivers"][0]["secrets"][0] = json!({"inline": [SECRET_TEXT]}),
                "receivers[0].secrets[0].inline",
                Some("flux-system/webapp"),
            ),
            (
                "inline secret empty",
                |d| d["receivers"][0]["secrets"][0] = json!({"inline": ""}),
                "receivers[0].secrets[0].inline",
                Some("flux-system/webapp"),
            ),
            (
                "secret variable a number",
                |d| d["receivers"][0]["secrets"][0] = json!({"env": 5}),
                "receivers[0].secrets[0].env",
                Some("flux-system/webapp"),
            ),
            (
                "secret variable unset",
                |d| d["receivers"][0]["secrets"][0] = json!({"env": "MISSING"}),
                "receivers[0].secrets[0].env",
                Some("flux-system/webapp"),
            ),
            (
                "env and inline",
                |d| {
                    d["receivers"][0]["secrets"][0] =
                        json!({"env": "GITHUB_SECRET", "inline": SECRET_TEXT})
                },
                "receivers[0].secrets[0]",
                Some("flux-system/webapp"),
            ),
            (
                "unknown secret field",
                |d| d["receivers"][0]["secrets"][0] = json!({"inlin": SECRET_TEXT}),
                "receivers[0].secrets[0].inlin",
                Some("flux-system/webapp"),
            ),
            (
                "basic inline secret without a user",
                |d| {
                    let r = without_github_fields(d, "basic");
                    r["secrets"] = json!([{"inline": SECRET_TEXT}]);
                },
                "receivers[0].secrets[0].inline",
                Some("flux-system/webapp"),
            ),
            (
                "standard-webhooks secret from env not base64",
                |d| {
                    let r = without_github_fields(d, "standard-webhooks");
                    r["secrets"] = json!([{"inline": "whsec_aGVsbG8="}, {"env": "BAD_WHSEC"}]);
                },
                "receivers[0].secrets[1].env",
                Some("flux-system/webapp"),
            ),
            (
                "path outside /hook/",
                |d| d["receivers"][0]["path"] = "/other/x".into(),
                "receivers[0].path",
                Some("flux-system/webapp"),
            ),
            (
                "path is the forward path",
                |d| d["receivers"][0]["path"] = "/hook/v1/reconcile".into(),
                "receivers[0].path",
                Some("flux-system/webapp"),
            ),
            (
                "body limit a string",
                |d| d["receivers"][0]["bodyLimit"] = "big".into(),
                "receivers[0].bodyLimit",
                Some("flux-system/webapp"),
            ),
            (
                "body limit zero",
                |d| d["receivers"][0]["bodyLimit"] = 0.into(),
                "receivers[0].bodyLimit",
                Some("flux-system/webapp"),
            ),
            (
                "unknown refs field",
                |d| d["receivers"][0]["refs"] = json!({"branch": ["main"]}),
                "receivers[0].refs.branch",
                Some("flux-system/webapp"),
            ),
            (
                "refs branches not a list",
                |d| d["receivers"][0]["refs"] = json!({"branches": "main"}),
                "receivers[0].refs.branches",
                Some("flux-system/webapp"),
            ),
            (
                "refs empty",
                |d| d["receivers"][0]["refs"] = json!({}),
                "receivers[0].refs",
                Some("flux-system/webapp"),
            ),
            (
                "no targets",
                |d| d["receivers"][0]["targets"] = json!([]),
                "receivers[0].targets",
                Some("flux-system/webapp"),
            ),
            (
                "wildcard target without labels",
                |d| d["receivers"][0]["targets"][1]["matchLabels"] = json!({}),
                "receivers[0].targets[1].name",
                Some("flux-system/webapp"),
            ),
            (
                "unknown target field",
                |d| d["receivers"][0]["targets"][0] = json!({"kind": "Kustomization", "nmae": "x"}),
                "receivers[0].targets[0].nmae",
                Some("flux-system/webapp"),
            ),
            (
                "a label value a number",
                |d| d["receivers"][0]["targets"][1]["matchLabels"]["app"] = 5.into(),
                "receivers[0].targets[1].matchLabels.app",
                Some("flux-system/webapp"),
            ),
            (
                "unknown action",
                |d| d["receivers"][0]["action"] = "rollback".into(),
                "receivers[0].action",
                Some("flux-system/webapp"),
            ),
            (
                "dispatch repository not owner/name",
                |d| dispatch(d, json!({"repository": "no-slash"})),
                "receivers[0].dispatch.repository",
                Some("flux-system/webapp"),
            ),
            (
                "dispatch repository a number",
                |d| dispatch(d, json!({"repository": 5})),
                "receivers[0].dispatch.repository",
                Some("flux-system/webapp"),
            ),
            (
                "dispatch repository missing",
                |d| dispatch(d, json!({"eventType": "x"})),
                "receivers[0].dispatch.repository",
                Some("flux-system/webapp"),
            ),
            (
                "dispatch unknown field",
                |d| dispatch(d, json!({"repository": "a/b", "repo": "a/b"})),
                "receivers[0].dispatch.repo",
                Some("flux-system/webapp"),
            ),
            (
                "dispatch event type invalid",
                |d| dispatch(d, json!({"repository": "a/b", "eventType": "has space"})),
                "receivers[0].dispatch.eventType",
                Some("flux-system/webapp"),
            ),
            (
                "dispatch not an object",
                |d| dispatch(d, json!("a/b")),
                "receivers[0].dispatch",
                Some("flux-system/webapp"),
            ),
            (
                "second receiver's type",
                |d| second(d)["type"] = "gitlub".into(),
                "receivers[1].type",
                Some("flux-system/other"),
            ),
            (
                "second receiver's inline secret",
                |d| {
                    second(d)["secrets"] =
                        json!([{"inline": serde_json::from_str::<Value>(SECRET_NUMBER).unwrap()}])
                },
                "receivers[1].secrets[0].inline",
                Some("flux-system/other"),
            ),
            (
                "second receiver's dispatch",
                |d| {
                    let r = second(d);
                    r["type"] = "bearer".into();
                    r.as_object_mut()
                        .unwrap()
                        .retain(|k, _| !["events", "refs", "targets"].contains(&k.as_str()));
                    r["action"] = "dispatch".into();
                    r["dispatch"] = json!({"repository": "a/b/c"});
                },
                "receivers[1].dispatch.repository",
                Some("flux-system/other"),
            ),
            (
                "duplicate receiver",
                |d| {
                    second(d)["name"] = "webapp".into();
                },
                "receivers[1].name",
                Some("flux-system/webapp"),
            ),
        ];
        let mut failures = Vec::new();
        for (case, mutate, field, receiver) in cases {
            let mut document: Value = serde_json::from_str(VALID).unwrap();
            mutate(&mut document);
            let err = parse(&document.to_string()).unwrap_err();
            let (shown, debug) = (err.to_string(), format!("{err:?}"));
            let expected = match receiver {
                Some(receiver) => format!("receiver {receiver}: field `{field}`: "),
                None => format!("field `{field}`: "),
            };
            if (err.field.as_str(), err.receiver.as_deref()) != (field, receiver)
                || !shown.starts_with(&expected)
            {
                failures.push(format!("{case}: want `{expected}...`, got `{shown}`"));
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

    /// Makes the first receiver a dispatch receiver with `block` as its `dispatch`.
    fn dispatch(document: &mut Value, block: Value) {
        let r = &mut document["receivers"][0];
        r["type"] = "bearer".into();
        r.as_object_mut()
            .unwrap()
            .retain(|k, _| !["events", "refs", "targets"].contains(&k.as_str()));
        r["action"] = "dispatch".into();
        r["dispatch"] = block;
    }

    /// Adds a second, valid receiver `flux-system/other` (pinned path) and returns it.
    fn second(document: &mut Value) -> &mut Value {
        let mut other = document["receivers"][0].clone();
        other["name"] = "other".into();
        other["path"] = "/hook/other".into();
        let receivers = document["receivers"].as_array_mut().unwrap();
        receivers.push(other);
        &mut receivers[1]
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
        assert_eq!(
            err.field, "receivers[0].path",
            "a secret-path type cannot pin its path"
        );
        let err = error_for(|r| {
            base(r, "harbor");
            r["refs"] = serde_json::json!({"branches": ["main"]});
        });
        assert_eq!(err.field, "receivers[0].refs");
        let err = error_for(|r| {
            base(r, "bearer");
            r["events"] = serde_json::json!(["push"]);
        });
        assert_eq!(err.field, "receivers[0].events");
        let err = error_for(|r| {
            base(r, "gitlab");
            r["allowSha1"] = true.into();
        });
        assert_eq!(err.field, "receivers[0].allowSha1");
        let err = error_for(|r| {
            base(r, "standard-webhooks");
            r["secrets"] = serde_json::json!([{"inline": "whsec_%%"}]);
        });
        assert_eq!(err.field, "receivers[0].secrets[0].inline");
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
            (
                "receivers[2].path",
                "path already used by receiver flux-system/other"
            )
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

    /// `hookgate check`'s mode: an unset variable stands for a placeholder its use accepts; a set one is
    /// checked as usual.
    #[test]
    fn placeholders_stand_only_for_unset_variables() {
        let unset = |_: &str| None;
        assert_eq!(
            Config::parse(VALID.as_bytes(), &unset).unwrap_err().field,
            "attestationKeyEnv"
        );
        let checked = Config::parse_with_placeholders(VALID.as_bytes(), &unset).unwrap();
        let paths = &checked.receivers[0].paths;
        assert_eq!(paths.len(), 2);
        assert_ne!(paths[0], paths[1], "two unset variables, two paths");

        let mut document: Value = serde_json::from_str(VALID).unwrap();
        let r = &mut document["receivers"][0];
        r["type"] = "standard-webhooks".into();
        r.as_object_mut().unwrap().remove("refs");
        r["secrets"] = serde_json::json!([{"env": "UNSET_ANYWHERE"}, {"env": "BAD_WHSEC"}]);
        let err =
            Config::parse_with_placeholders(document.to_string().as_bytes(), &env).unwrap_err();
        assert_eq!(err.field, "receivers[0].secrets[1].env", "{err}");
    }

    #[test]
    fn inline_secrets_warn() {
        let json = VALID.replace(r#"{"env":"GITHUB_SECRET"}"#, r#"{"inline":"dev-only"}"#);
        let config = parse(&json).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(!config.warnings[0].contains("dev-only"));
    }
}
