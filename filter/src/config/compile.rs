//! The compile step: from the wire format, whose shape is already checked, to the [`Config`] the filter
//! runs on. Each function checks what one part means (secrets, paths, refs, targets, ...) and names the
//! field at fault.

use std::collections::HashMap;

use serde_json::Value;

use super::wire::{self, Object, SecretText};
use super::{
    flux_webhook_path, receiver_label, Config, ConfigError, Receiver, RefFilter,
    DEFAULT_BODY_LIMIT, MAX_BODY_LIMIT, PATH_PREFIX,
};
use crate::cel::{self, ClaimValidations, EdgeFilter};
use crate::dispatch::DispatchConfig;
use crate::id_token::TokenRules;
use crate::providers::{self, generic_oidc, Proof, Provider, VerifyOptions};
use hookgate_protocol::attestation::check_key;
use hookgate_protocol::enrollment::CONFIRMATION_PATH;
use hookgate_protocol::kubernetes;
use hookgate_protocol::{kinds, Action, Secret, Target, DEFAULT_FORWARD_PATH};

/// Compiles `document`, read from `raw`.
pub(super) fn config(document: wire::Document, raw: &Value) -> Result<Config, ConfigError> {
    let forward_path = forward_path(document.forward_path)?;
    let SecretText(attestation_key) = document.attestation_key;
    check_key(attestation_key.expose()).map_err(|e| top_level("attestationKey", e.to_string()))?;
    // Empty while no receiver is ready: every path is then unknown (404).
    let mut receivers = Vec::with_capacity(document.receivers.len());
    let mut by_path = HashMap::new();
    for (index, Object(wire)) in document.receivers.into_iter().enumerate() {
        let at = ReceiverAt::new(index, &wire.namespace, &wire.name);
        let raw_dispatch = &raw["receivers"][index]["dispatch"];
        let receiver = receiver(&at, wire, raw_dispatch, &forward_path)?;
        register(&at, &receiver, &receivers, &mut by_path)?;
        receivers.push(receiver);
    }
    Ok(Config {
        receivers,
        forward_path,
        attestation_key,
        by_path,
    })
}

fn top_level(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        receiver: None,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Receiver `index`, as its errors name it.
struct ReceiverAt {
    index: usize,
    label: String,
}

impl ReceiverAt {
    fn new(index: usize, namespace: &str, name: &str) -> Self {
        Self {
            index,
            label: receiver_label(namespace, name),
        }
    }

    /// The full path of the receiver's `field`: `secrets[1]` is `receivers[0].secrets[1]`.
    fn path(&self, field: &str) -> String {
        format!("receivers[{}].{field}", self.index)
    }

    fn error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            receiver: Some(self.label.clone()),
            field: self.path(field),
            reason: reason.into(),
        }
    }
}

fn forward_path(configured: Option<String>) -> Result<String, ConfigError> {
    let path = configured.unwrap_or_else(|| DEFAULT_FORWARD_PATH.to_string());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(top_level(
            "forwardPath",
            "must be an absolute path without query",
        ));
    }
    Ok(path)
}

/// A receiver's provider and its `type` name, for the errors that say what the type does not support.
#[derive(Clone, Copy)]
struct ProviderType {
    name: &'static str,
    provider: &'static dyn Provider,
}

impl ProviderType {
    /// The error for a `field` that this type cannot honour: "type harbor {why}".
    fn refusal(&self, at: &ReceiverAt, field: &str, why: &str) -> ConfigError {
        at.error(field, format!("type {} {why}", self.name))
    }
}

/// Compiles one receiver; `raw_dispatch` is its `dispatch` block as written, for the errors about it.
fn receiver(
    at: &ReceiverAt,
    receiver: wire::Receiver,
    raw_dispatch: &Value,
    forward_path: &str,
) -> Result<Receiver, ConfigError> {
    let wire::Receiver {
        name,
        namespace,
        provider,
        events,
        secrets,
        id_token,
        path,
        refs,
        body_limit,
        allow_sha1,
        require_signature,
        disabled,
        targets,
        action,
        dispatch,
        filter,
        resource_filter,
    } = receiver;
    check_names(at, &name, &namespace)?;
    let provider_type = provider_type(at, &provider)?;
    let events = events_filter(at, events, provider_type)?;
    let token_rules = token_rules(at, id_token, provider_type)?;
    let secrets = match (token_rules.is_some(), secrets) {
        (true, Some(_)) => {
            return Err(provider_type.refusal(
                at,
                "secrets",
                "proves with an ID token and takes no secret",
            ))
        }
        (true, None) => Secrets::default(),
        (false, secrets) => {
            receiver_secrets(at, secrets.unwrap_or_default(), provider_type.provider)?
        }
    };
    let options = verify_options(
        at,
        allow_sha1,
        require_signature,
        &secrets.texts,
        provider_type,
    )?;
    let pinned_path = path.is_some();
    let paths = receiver_paths(at, path, &secrets.texts, &name, &namespace, provider_type)?;
    if paths.iter().any(|p| p == forward_path) {
        return Err(at.error("path", "is the forward path"));
    }
    // The filter itself answers a POST there.
    if paths.iter().any(|p| p == CONFIRMATION_PATH) {
        return Err(at.error(
            "path",
            "is the path the controller confirms the proxies on, answered by the filter itself",
        ));
    }
    let refs = ref_filter(at, refs, provider_type)?;
    let body_limit = checked_body_limit(at, body_limit)?;
    let (action, dispatch) = action_and_dispatch(at, action, dispatch, raw_dispatch)?;
    let targets = receiver_targets(at, action, targets, &namespace)?;
    let filter = filter
        .map(|source| EdgeFilter::compile(&source).map_err(|e| at.error("filter", e.to_string())))
        .transpose()?;
    let payload_reads = target_filter_reads(at, action, resource_filter.as_deref(), &targets)?;
    Ok(Receiver {
        name,
        namespace,
        provider_name: provider_type.name,
        provider: provider_type.provider,
        events,
        secrets: secrets.keys,
        paths,
        pinned_path,
        refs,
        body_limit,
        options,
        disabled: disabled.unwrap_or(false),
        action,
        targets,
        dispatch,
        token_rules,
        filter,
        resource_filter,
        payload_reads,
    })
}

/// The ID-token rules of a receiver whose type proves with one: its `idToken` block completed by the
/// type's defaults. Any other type refuses the block.
fn token_rules(
    at: &ReceiverAt,
    id_token: Option<Object<wire::IdToken>>,
    provider_type: ProviderType,
) -> Result<Option<TokenRules>, ConfigError> {
    let Some(defaults) = provider_type.provider.token_defaults() else {
        return match id_token {
            Some(_) => Err(provider_type.refusal(at, "idToken", "does not prove with an ID token")),
            None => Ok(None),
        };
    };
    let Some(Object(block)) = id_token else {
        return Err(at.error(
            "idToken",
            format!(
                "type {} needs the jwtProvider that verifies its tokens",
                provider_type.name
            ),
        ));
    };
    let not_empty = |field: &str, value: &str| {
        if value.trim().is_empty() {
            Err(at.error(&format!("idToken.{field}"), "is empty"))
        } else {
            Ok(())
        }
    };
    not_empty("jwtProvider", &block.jwt_provider)?;
    let issuers = match block.issuers {
        Some(issuers) => issuers,
        None => defaults.issuers.iter().map(|i| i.to_string()).collect(),
    };
    if issuers.is_empty() {
        return Err(at.error("idToken.issuers", "at least one issuer is required"));
    }
    for issuer in &issuers {
        not_empty("issuers", issuer)?;
    }
    let audience = block
        .audience
        .or_else(|| defaults.audience.map(str::to_string))
        .ok_or_else(|| {
            at.error(
                "idToken.audience",
                format!("is required for type {}", provider_type.name),
            )
        })?;
    not_empty("audience", &audience)?;
    if let Some(email) = &block.email {
        not_empty("email", email)?;
    }
    let validations =
        ClaimValidations::compile(block.validations.as_deref().unwrap_or_default())
            .map_err(|(i, e)| at.error(&format!("idToken.validations[{i}]"), e.to_string()))?;
    let accept_any = block.accept_any_token_from_issuer;
    let email = block.email.is_some();
    token_binding(at, provider_type, accept_any, email, &issuers, &validations)?;
    Ok(Some(TokenRules {
        jwt_provider: block.jwt_provider,
        issuers,
        audience,
        // An email is the sender's only when its issuer says it verified it.
        require_verified_email: defaults.requires_email
            || block.email.is_some()
            || validations.read_claim("email")
            || validations.read_whole(),
        email: block.email,
        validations,
    }))
}

/// Refuses rules under which a token proves nothing about its sender: a type that binds its tokens by
/// email (gcr) without one; otherwise, unless the receiver says
/// `acceptAnyTokenFromIssuer: true` (which `hookgate check` reports): no validation and no email, as Flux
/// refuses a provider without validations; or, on an issuer that signs for anyone on its platform
/// ([`generic_oidc::SHARED_ISSUERS`]), no email and no validation reading a claim that says which
/// repository, project or account the token was issued to.
fn token_binding(
    at: &ReceiverAt,
    provider_type: ProviderType,
    accept_any: Option<bool>,
    email: bool,
    issuers: &[String],
    validations: &ClaimValidations,
) -> Result<(), ConfigError> {
    const OPT_IN: &str = "or set idToken.acceptAnyTokenFromIssuer: true to accept that";
    let requires_email = provider_type
        .provider
        .token_defaults()
        .is_some_and(|d| d.requires_email);
    if requires_email && !email {
        return Err(at.error(
            "idToken.email",
            format!(
                "is required for type {}: any Google account could send otherwise",
                provider_type.name
            ),
        ));
    }
    match accept_any {
        Some(true) if requires_email => {
            return Err(provider_type.refusal(
                at,
                "idToken.acceptAnyTokenFromIssuer",
                "binds its tokens to the sender's email, which it always requires",
            ))
        }
        Some(true) => return Ok(()),
        _ if email => return Ok(()),
        _ => {}
    }
    if validations.is_empty() {
        return Err(at.error(
            "idToken.validations",
            format!(
                "at least one validation (or idToken.email) is required: without one, any token its \
                 issuer signs for the audience is accepted; {OPT_IN}"
            ),
        ));
    }
    for shared in issuers
        .iter()
        .filter_map(|i| generic_oidc::shared_issuer(i))
    {
        if !shared
            .identity_claims
            .iter()
            .any(|c| validations.read_claim(c))
        {
            let claims: Vec<String> = shared
                .identity_claims
                .iter()
                .map(|c| format!("claims.{c}"))
                .collect();
            return Err(at.error(
                "idToken.validations",
                format!(
                    "issuer {} signs tokens for {}: a validation must read one of {} to say whose \
                     tokens are accepted (or name idToken.email); {OPT_IN}",
                    shared.issuer,
                    shared.platform,
                    claims.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn check_names(at: &ReceiverAt, name: &str, namespace: &str) -> Result<(), ConfigError> {
    if !kubernetes::is_dns_subdomain(name) {
        return Err(at.error(
            "name",
            "must be a Kubernetes object name (lowercase letters, digits, '-', '.')",
        ));
    }
    if !kubernetes::is_dns_label(namespace) {
        return Err(at.error("namespace", "must be a Kubernetes namespace name"));
    }
    Ok(())
}

fn provider_type(at: &ReceiverAt, name: &str) -> Result<ProviderType, ConfigError> {
    providers::PROVIDERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(name, provider)| ProviderType { name, provider })
        .ok_or_else(|| {
            let known: Vec<&str> = providers::names().collect();
            at.error(
                "type",
                format!("unknown type {name:?} (known: {})", known.join(", ")),
            )
        })
}

/// The events to accept, lowercased; empty accepts every event.
fn events_filter(
    at: &ReceiverAt,
    events: Option<Vec<String>>,
    provider_type: ProviderType,
) -> Result<Vec<String>, ConfigError> {
    let events = events.unwrap_or_default();
    if !events.is_empty() && !provider_type.provider.supports_events() {
        return Err(provider_type.refusal(at, "events", "has no events to filter on"));
    }
    if events.iter().any(|e| e.trim().is_empty()) {
        return Err(at.error("events", "an event name is empty"));
    }
    Ok(events
        .iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .collect())
}

/// The verification switches; `secret_texts` are the receiver's secrets as written, whose kinds a
/// required signature constrains.
fn verify_options(
    at: &ReceiverAt,
    allow_sha1: Option<bool>,
    require_signature: Option<bool>,
    secret_texts: &[String],
    provider_type: ProviderType,
) -> Result<VerifyOptions, ConfigError> {
    let allow_sha1 = allow_sha1.unwrap_or(false);
    if allow_sha1 && !provider_type.provider.supports_sha1() {
        return Err(provider_type.refusal(at, "allowSha1", "never signs with SHA-1"));
    }
    let require_signature = require_signature.unwrap_or(false);
    if require_signature {
        if !provider_type.provider.signature_can_be_required() {
            return Err(provider_type.refusal(
                at,
                "requireSignature",
                "has no unsigned proof to refuse",
            ));
        }
        // A token would never be checked: saying so beats a receiver that refuses every delivery.
        if let Some(i) = secret_texts
            .iter()
            .position(|t| !providers::is_signing_key(t))
        {
            return Err(at.error(
                &format!("secrets[{i}]"),
                "is a token, but requireSignature accepts only whsec_ signing tokens",
            ));
        }
    }
    Ok(VerifyOptions {
        allow_sha1,
        require_signature,
    })
}

/// A receiver's secrets, in order: the key bytes its provider uses, and the text each was decoded from
/// (Flux derives a path from it). An ID-token receiver has none (`default`).
#[derive(Default)]
struct Secrets {
    keys: Vec<Secret>,
    texts: Vec<String>,
}

fn receiver_secrets(
    at: &ReceiverAt,
    secret_refs: Vec<Object<wire::SecretRef>>,
    provider: &dyn Provider,
) -> Result<Secrets, ConfigError> {
    if secret_refs.is_empty() {
        return Err(at.error("secrets", "at least one secret is required"));
    }
    let mut secrets = Secrets {
        keys: Vec::with_capacity(secret_refs.len()),
        texts: Vec::with_capacity(secret_refs.len()),
    };
    for (i, Object(wire::SecretRef { inline })) in secret_refs.into_iter().enumerate() {
        let error = |reason: String| at.error(&format!("secrets[{i}].inline"), reason);
        // Read from a JSON string, so valid UTF-8: the conversion loses nothing.
        let text = String::from_utf8_lossy(inline.0.expose()).into_owned();
        if text.is_empty() {
            return Err(error("is empty".into()));
        }
        secrets
            .keys
            .push(provider.decode_secret(&text).map_err(error)?);
        secrets.texts.push(text);
    }
    Ok(secrets)
}

/// The pinned path, or one Flux path per secret text.
fn receiver_paths(
    at: &ReceiverAt,
    pinned: Option<String>,
    secret_texts: &[String],
    name: &str,
    namespace: &str,
    provider_type: ProviderType,
) -> Result<Vec<String>, ConfigError> {
    let Some(path) = pinned else {
        // Flux's path for a type without a secret: sha256 of the name and namespace alone.
        if provider_type.provider.proof() == Proof::VerifiedToken {
            return Ok(vec![flux_webhook_path("", name, namespace)]);
        }
        return Ok(secret_texts
            .iter()
            .map(|token| flux_webhook_path(token, name, namespace))
            .collect());
    };
    if provider_type.provider.proof() == Proof::SecretPath {
        return Err(provider_type.refusal(
            at,
            "path",
            "has no proof but its secret path: an explicit path would accept anyone",
        ));
    }
    let valid = path.len() > PATH_PREFIX.len()
        && path.starts_with(PATH_PREFIX)
        && !path.contains(['?', '#'])
        && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(at.error(
            "path",
            format!("must start with {PATH_PREFIX} and have no query"),
        ));
    }
    Ok(vec![path])
}

fn ref_filter(
    at: &ReceiverAt,
    refs: Option<Object<wire::Refs>>,
    provider_type: ProviderType,
) -> Result<Option<RefFilter>, ConfigError> {
    let Some(Object(refs)) = refs else {
        return Ok(None);
    };
    if !provider_type.provider.supports_refs() {
        return Err(provider_type.refusal(at, "refs", "payloads carry no Git ref"));
    }
    let filter = RefFilter {
        branches: refs.branches.unwrap_or_default(),
        tags: refs.tags.unwrap_or_default(),
    };
    if filter.branches.is_empty() && filter.tags.is_empty() {
        return Err(at.error("refs", "needs at least one branch or tag glob"));
    }
    if filter
        .branches
        .iter()
        .chain(&filter.tags)
        .any(String::is_empty)
    {
        return Err(at.error("refs", "a glob is empty"));
    }
    Ok(Some(filter))
}

fn checked_body_limit(at: &ReceiverAt, body_limit: Option<u64>) -> Result<u64, ConfigError> {
    let body_limit = body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
    if body_limit == 0 || body_limit > MAX_BODY_LIMIT {
        return Err(at.error(
            "bodyLimit",
            format!("must be between 1 and {MAX_BODY_LIMIT} bytes"),
        ));
    }
    Ok(body_limit)
}

/// The action, and the dispatch settings, which come exactly with action `dispatch`.
fn action_and_dispatch(
    at: &ReceiverAt,
    action: Option<Action>,
    dispatch: Option<Object<DispatchConfig>>,
    raw_dispatch: &Value,
) -> Result<(Action, Option<DispatchConfig>), ConfigError> {
    let action = action.unwrap_or_default();
    let dispatch = dispatch.map(|Object(settings)| settings);
    match (action, &dispatch) {
        (Action::Dispatch, None) => {
            return Err(at.error("dispatch", "is required with action dispatch"))
        }
        (Action::Reconcile, Some(_)) => {
            return Err(at.error("dispatch", "only applies with action dispatch"))
        }
        (_, Some(settings)) => settings
            .validate()
            .map_err(|reason| at.error(&dispatch_field(reason, raw_dispatch), reason))?,
        (Action::Reconcile, None) => {}
    }
    Ok((action, dispatch))
}

/// The field a [`DispatchConfig::validate`] error is about: `validate` names it first ("repository must
/// be owner/name"), so the error points at `dispatch.repository` when `raw_dispatch` sets it, else at the
/// block.
fn dispatch_field(reason: &str, raw_dispatch: &Value) -> String {
    let first = reason.split_whitespace().next().unwrap_or_default();
    match raw_dispatch.get(first) {
        Some(value) if !value.is_null() => format!("dispatch.{first}"),
        _ => "dispatch".to_string(),
    }
}

/// The targets, each checked by the protocol's rule and its kind against the allow-list the controller
/// reconciles (as Flux's CRD refuses another kind when it is applied), the receiver's namespace filled in
/// where none is given. A reconcile receiver needs one; a dispatch receiver has none.
fn receiver_targets(
    at: &ReceiverAt,
    action: Action,
    targets: Option<Vec<Object<Target>>>,
    namespace: &str,
) -> Result<Vec<Target>, ConfigError> {
    let targets = targets.unwrap_or_default();
    match action {
        Action::Reconcile if targets.is_empty() => {
            return Err(at.error("targets", "at least one target is required"))
        }
        Action::Dispatch if !targets.is_empty() => {
            return Err(at.error("targets", "a dispatch receiver has no targets"))
        }
        _ => {}
    }
    targets
        .into_iter()
        .enumerate()
        .map(|(i, Object(mut target))| {
            target
                .validate()
                .map_err(|e| at.error(&format!("targets[{i}].{}", e.field()), e.to_string()))?;
            let api_version = target.api_version.as_deref();
            if kinds::resolve(api_version, &target.kind).is_none() {
                let why = kinds::refusal(api_version, &target.kind);
                return Err(at.error(&format!("targets[{i}].kind"), why));
            }
            if target.namespace.as_deref().is_none_or(str::is_empty) {
                target.namespace = Some(namespace.to_string());
            }
            Ok(target)
        })
        .collect()
}

/// Compiles the target filters as the controller will (Flux's `resourceFilter`, then each target's
/// `filter`), and returns the payload fields they read.
fn target_filter_reads(
    at: &ReceiverAt,
    action: Action,
    resource_filter: Option<&str>,
    targets: &[Target],
) -> Result<Vec<Vec<String>>, ConfigError> {
    if action == Action::Dispatch && resource_filter.is_some() {
        return Err(at.error("resourceFilter", "a dispatch receiver has no targets"));
    }
    let fields = std::iter::once(("resourceFilter".to_string(), resource_filter)).chain(
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("targets[{i}].filter"), t.filter.as_deref())),
    );
    let mut reads = Vec::new();
    for (field, source) in fields {
        if let Some(source) = source {
            reads.extend(
                cel::target_filter_reads(source).map_err(|e| at.error(&field, e.to_string()))?,
            );
        }
    }
    // A path's prefix sorts just before it, and forwarding the prefix forwards it: each path kept once
    // and no path under another, so pruning copies each payload value at most once.
    reads.sort();
    reads.dedup_by(|later, kept| later.starts_with(kept));
    Ok(reads)
}

/// Adds `receiver`'s paths to `by_path`, refusing a receiver named twice and a path taken twice.
fn register(
    at: &ReceiverAt,
    receiver: &Receiver,
    earlier: &[Receiver],
    by_path: &mut HashMap<String, usize>,
) -> Result<(), ConfigError> {
    if earlier
        .iter()
        .any(|r| r.name == receiver.name && r.namespace == receiver.namespace)
    {
        return Err(at.error("name", "duplicate receiver"));
    }
    for path in &receiver.paths {
        match by_path.insert(path.clone(), at.index) {
            Some(other) if other == at.index => {
                return Err(at.error("secrets", "two of its secrets give the same path"))
            }
            Some(other) => {
                return Err(at.error(
                    "path",
                    format!("path already used by receiver {}", earlier[other].label()),
                ))
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    /// Errors of meaning: values of the right JSON type that the filter cannot use.
    #[test]
    fn value_errors_name_the_full_path_and_never_show_secret_values() {
        let webapp = Some("flux-system/webapp");
        assert_error_cases(vec![
            (
                "forward path with a query",
                |d| d["forwardPath"] = "/x?y".into(),
                "forwardPath",
                None,
                "must be an absolute path without query",
            ),
            (
                "attestation key too short",
                |d| d["attestationKey"] = "hunter2".into(),
                "attestationKey",
                None,
                "the attestation key is shorter than 16 bytes: generate one with `openssl rand -hex 32` (or `hookgate token`)",
            ),
            (
                "invalid name",
                |d| d["receivers"][0]["name"] = "Web_App".into(),
                "receivers[0].name",
                Some("flux-system/Web_App"),
                "must be a Kubernetes object name (lowercase letters, digits, '-', '.')",
            ),
            (
                "invalid namespace",
                |d| d["receivers"][0]["namespace"] = "Flux_System".into(),
                "receivers[0].namespace",
                Some("Flux_System/webapp"),
                "must be a Kubernetes namespace name",
            ),
            (
                "unknown type",
                |d| d["receivers"][0]["type"] = "gitlub".into(),
                "receivers[0].type",
                webapp,
                "unknown type \"gitlub\" (known: github, gitea, gitlab, bitbucket, azure-devops, generic, generic-hmac, generic-oidc, standard-webhooks, harbor, nexus, dockerhub, quay, acr, gcr, cdevents, bearer, basic)",
            ),
            (
                "an empty event",
                |d| d["receivers"][0]["events"] = json!([""]),
                "receivers[0].events",
                webapp,
                "an event name is empty",
            ),
            (
                "no secrets",
                |d| d["receivers"][0]["secrets"] = json!([]),
                "receivers[0].secrets",
                webapp,
                "at least one secret is required",
            ),
            (
                "inline secret empty",
                |d| d["receivers"][0]["secrets"][0] = json!({"inline": ""}),
                "receivers[0].secrets[0].inline",
                webapp,
                "is empty",
            ),
            (
                "basic inline secret without a user",
                |d| {
                    let r = without_github_fields(d, "basic");
                    r["secrets"] = json!([{"inline": SECRET_TEXT}]);
                },
                "receivers[0].secrets[0].inline",
                webapp,
                "a basic secret is user:password",
            ),
            (
                "standard-webhooks secret not base64",
                |d| {
                    let r = without_github_fields(d, "standard-webhooks");
                    r["secrets"] =
                        json!([{"inline": "whsec_aGVsbG8="}, {"inline": "whsec_hunter2-distinctive-secret!"}]);
                },
                "receivers[0].secrets[1].inline",
                webapp,
                "not a whsec_<base64> key",
            ),
            (
                "path outside /hook/",
                |d| d["receivers"][0]["path"] = "/other/x".into(),
                "receivers[0].path",
                webapp,
                "must start with /hook/ and have no query",
            ),
            (
                "path is the forward path",
                |d| d["receivers"][0]["path"] = "/hook/v1/reconcile".into(),
                "receivers[0].path",
                webapp,
                "is the forward path",
            ),
            (
                "body limit zero",
                |d| d["receivers"][0]["bodyLimit"] = 0.into(),
                "receivers[0].bodyLimit",
                webapp,
                "must be between 1 and 33554432 bytes",
            ),
            (
                "body limit over the maximum",
                |d| d["receivers"][0]["bodyLimit"] = (MAX_BODY_LIMIT + 1).into(),
                "receivers[0].bodyLimit",
                webapp,
                "must be between 1 and 33554432 bytes",
            ),
            (
                "refs empty",
                |d| d["receivers"][0]["refs"] = json!({}),
                "receivers[0].refs",
                webapp,
                "needs at least one branch or tag glob",
            ),
            (
                "an empty glob",
                |d| d["receivers"][0]["refs"] = json!({"tags": [""]}),
                "receivers[0].refs",
                webapp,
                "a glob is empty",
            ),
            (
                "no targets",
                |d| d["receivers"][0]["targets"] = json!([]),
                "receivers[0].targets",
                webapp,
                "at least one target is required",
            ),
            (
                "wildcard target without labels",
                |d| d["receivers"][0]["targets"][1]["matchLabels"] = json!({}),
                "receivers[0].targets[1].name",
                webapp,
                "name \"*\" requires matchLabels",
            ),
            (
                "a kind outside the allow-list",
                |d| d["receivers"][0]["targets"][0]["kind"] = "Secret".into(),
                "receivers[0].targets[0].kind",
                webapp,
                "Secret is not a kind hookgate reconciles (one of GitRepository, OCIRepository, HelmRepository, \
                 HelmChart, Bucket, ExternalArtifact, ArtifactGenerator, Kustomization, HelmRelease, \
                 ImageRepository, ImagePolicy, ImageUpdateAutomation, Application)",
            ),
            (
                "an allowed kind in another group",
                |d| {
                    d["receivers"][0]["targets"][0]["apiVersion"] = "evil.example.com/v1".into()
                },
                "receivers[0].targets[0].kind",
                webapp,
                "GitRepository is not served as evil.example.com/v1 (hookgate reconciles it in group \
                 source.toolkit.fluxcd.io)",
            ),
            (
                "dispatch repository not owner/name",
                |d| dispatch(d, json!({"repository": "no-slash"})),
                "receivers[0].dispatch.repository",
                webapp,
                "repository must be owner/name",
            ),
            (
                "dispatch event type invalid",
                |d| dispatch(d, json!({"repository": "a/b", "eventType": "has space"})),
                "receivers[0].dispatch.eventType",
                webapp,
                "eventType must be 1-100 characters of letters, digits, '.', '_' or '-'",
            ),
            (
                "dispatch without action dispatch",
                |d| d["receivers"][0]["dispatch"] = json!({"repository": "a/b"}),
                "receivers[0].dispatch",
                webapp,
                "only applies with action dispatch",
            ),
            (
                "action dispatch without dispatch",
                |d| dispatch(d, Value::Null),
                "receivers[0].dispatch",
                webapp,
                "is required with action dispatch",
            ),
            (
                "a dispatch receiver with targets",
                |d| {
                    dispatch(d, json!({"repository": "a/b"}));
                    d["receivers"][0]["targets"] = json!([{"kind": "GitRepository", "name": "x"}]);
                },
                "receivers[0].targets",
                webapp,
                "a dispatch receiver has no targets",
            ),
            (
                "a receiver filter that does not parse",
                |d| d["receivers"][0]["filter"] = "req.ref ==".into(),
                "receivers[0].filter",
                webapp,
                "invalid CEL: unexpected end of expression",
            ),
            (
                "a receiver filter reading an undeclared variable",
                |d| d["receivers"][0]["filter"] = "res.metadata.name == 'x'".into(),
                "receivers[0].filter",
                webapp,
                "undeclared reference to 'res'",
            ),
            (
                "a receiver filter over its bounds (quadratic)",
                |d| {
                    d["receivers"][0]["filter"] =
                        "req.commits.exists(c, req.commits.exists(d, c.id == d.id))".into()
                }
                ,
                "receivers[0].filter",
                webapp,
                "has a comprehension inside another (quadratic time)",
            ),
            (
                "a resourceFilter that is not a boolean",
                |d| d["receivers"][0]["resourceFilter"] = "'test'".into(),
                "receivers[0].resourceFilter",
                webapp,
                "must return a boolean, not string (cel-go's type check, as Flux runs it)",
            ),
            (
                "a target filter calling an unknown function",
                |d| d["receivers"][0]["targets"][1]["filter"] = "req.tag.matches('v.*')".into(),
                "receivers[0].targets[1].filter",
                webapp,
                "undeclared reference to 'matches'",
            ),
            (
                "a target filter reading the whole payload",
                |d| d["receivers"][0]["targets"][0]["filter"] = "size(req) > 0".into(),
                "receivers[0].targets[0].filter",
                webapp,
                "reads `req` whole or at a computed key: a target filter reads fields of the payload (req.a.b), the only parts forwarded to the controller",
            ),
            (
                "a resourceFilter on a dispatch receiver",
                |d| {
                    dispatch(d, json!({"repository": "a/b"}));
                    d["receivers"][0]["resourceFilter"] = "true".into();
                },
                "receivers[0].resourceFilter",
                webapp,
                "a dispatch receiver has no targets",
            ),
            (
                "second receiver's type",
                |d| second(d)["type"] = "gitlub".into(),
                "receivers[1].type",
                Some("flux-system/other"),
                "unknown type \"gitlub\" (known: github, gitea, gitlab, bitbucket, azure-devops, generic, generic-hmac, generic-oidc, standard-webhooks, harbor, nexus, dockerhub, quay, acr, gcr, cdevents, bearer, basic)",
            ),
            (
                "second receiver's dispatch",
                |d| as_dispatch(second(d), json!({"repository": "a/b/c"})),
                "receivers[1].dispatch.repository",
                Some("flux-system/other"),
                "repository must be owner/name",
            ),
            (
                "duplicate receiver",
                |d| {
                    second(d)["name"] = "webapp".into();
                },
                "receivers[1].name",
                webapp,
                "duplicate receiver",
            ),
            (
                "a path taken by an earlier receiver",
                |d| {
                    d["receivers"][0]["path"] = "/hook/pinned".into();
                    second(d)["path"] = "/hook/pinned".into();
                },
                "receivers[1].path",
                Some("flux-system/other"),
                "path already used by receiver flux-system/webapp",
            ),
            (
                "two secrets giving the same path",
                |d| d["receivers"][0]["secrets"][1] = json!({"inline": "test-token"}),
                "receivers[0].secrets",
                webapp,
                "two of its secrets give the same path",
            ),
        ]);
    }

    #[test]
    fn type_specific_fields_are_refused_where_meaningless() {
        type Mutation = fn(&mut Value);
        // (case, provider type, mutation of its receiver, field at fault)
        let cases: [(&str, &str, Mutation, &str); 9] = [
            (
                "a secret-path type cannot pin its path",
                "generic",
                |r| r["path"] = "/hook/fixed".into(),
                "receivers[0].path",
            ),
            (
                "refs where payloads carry no ref",
                "harbor",
                |r| r["refs"] = json!({"branches": ["main"]}),
                "receivers[0].refs",
            ),
            (
                "events where the type names none",
                "bearer",
                |r| r["events"] = json!(["push"]),
                "receivers[0].events",
            ),
            (
                "allowSha1 where the type never signs with SHA-1",
                "gitlab",
                |r| r["allowSha1"] = true.into(),
                "receivers[0].allowSha1",
            ),
            (
                "a secret the type cannot decode",
                "standard-webhooks",
                |r| r["secrets"] = json!([{"inline": "whsec_%%"}]),
                "receivers[0].secrets[0].inline",
            ),
            (
                "a GitLab signing token that is not base64",
                "gitlab",
                |r| r["secrets"] = json!([{"inline": "whsec_%%"}]),
                "receivers[0].secrets[0].inline",
            ),
            (
                "requireSignature where every proof signs",
                "github",
                |r| r["requireSignature"] = true.into(),
                "receivers[0].requireSignature",
            ),
            (
                "requireSignature where the type has no signature",
                "bearer",
                |r| r["requireSignature"] = true.into(),
                "receivers[0].requireSignature",
            ),
            (
                "requireSignature with a GitLab token besides the signing token",
                "gitlab",
                |r| {
                    r["requireSignature"] = true.into();
                    r["secrets"] = json!([{"inline": "whsec_aGk="}, {"inline": "gitlab-token"}]);
                },
                "receivers[0].secrets[1]",
            ),
        ];
        for (case, provider, mutation, field) in cases {
            let err = error_for(|r| {
                r["type"] = provider.into();
                r.as_object_mut().unwrap().remove("refs");
                r.as_object_mut().unwrap().remove("events");
                mutation(r);
            });
            assert_eq!(err.field, field, "{case}: {err}");
        }
    }

    /// Receiver `r` as one of ID-token type `provider` with `id_token`, without GitHub's fields and secrets.
    fn as_id_token_receiver(r: &mut Value, provider: &str, id_token: Value) {
        let fields = r.as_object_mut().unwrap();
        fields.retain(|k, _| !["events", "refs", "secrets"].contains(&k.as_str()));
        fields.insert("type".into(), provider.into());
        fields.insert("idToken".into(), id_token);
    }

    /// A token must say who sent it: an email is taken only when the issuer says it verified it, and a
    /// receiver with no validation, or on an issuer that signs for anyone on its platform with none
    /// reading a claim that names the repository, project or account, is refused unless it says
    /// `acceptAnyTokenFromIssuer: true`.
    #[test]
    fn id_token_rules_bind_tokens_to_their_sender() {
        const GITHUB: &str = "https://token.actions.githubusercontent.com";
        const OPT_IN: &str = "or set idToken.acceptAnyTokenFromIssuer: true to accept that";
        // Ok: whether `email_verified == true` is required; Err: the field at fault and its reason's start.
        type Expected = Result<bool, (&'static str, &'static str)>;
        let no_validation: Expected = Err((
            "receivers[0].idToken.validations",
            "at least one validation (or idToken.email) is required",
        ));
        let unbound: Expected = Err(("receivers[0].idToken.validations", "issuer https://token.actions.githubusercontent.com signs tokens for GitHub Actions, for every repository: a validation must read one of claims.repository,"));
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, Value, Expected)> = vec![
            ("an email rule requires email_verified",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com"], "email": "ci@example.com"}), Ok(true)),
            ("a validation reading claims.email requires email_verified",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com"], "validations": ["claims.email == 'ci@example.com'"]}), Ok(true)),
            ("has(claims.email) requires email_verified",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com"], "validations": ["claims.sub == 'a'", "has(claims.email)"]}), Ok(true)),
            ("a validation reading claims whole requires email_verified",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com"], "validations": ["claims.exists(k, k == 'x')"]}), Ok(true)),
            ("a validation not reading email does not",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com"], "validations": ["claims.sub == 'a'"]}), Ok(false)),
            ("GitHub's issuer bound to a repository",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": [GITHUB], "validations": ["claims.repository == 'example/app'"]}), Ok(false)),
            ("GitHub's issuer bound to an owner",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": [GITHUB], "validations": ["claims['repository_owner'] == 'example'"]}), Ok(false)),
            ("no validation",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com"]}), no_validation),
            ("no validation on GitHub's issuer",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": [GITHUB]}), no_validation),
            ("GitHub's issuer, validations binding no repository",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": [GITHUB], "validations": ["claims.ref == 'refs/heads/main'"]}), unbound),
            ("GitHub's issuer beside another, bound by neither",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://idp.example.com", GITHUB], "validations": ["claims.event_name == 'push'"]}), unbound),
            ("GitLab.com's issuer, validations binding no project",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://gitlab.com"], "validations": ["claims.ref == 'main'"]}),
             Err(("receivers[0].idToken.validations", "issuer https://gitlab.com signs tokens for GitLab.com CI, for every project"))),
            ("Google's issuer, validations binding no account",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://accounts.google.com"], "validations": ["claims.hd == 'example.com'"]}),
             Err(("receivers[0].idToken.validations", "issuer https://accounts.google.com signs tokens for Google, for every account"))),
            ("Google's issuer bound by a verified email",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": ["https://accounts.google.com"], "validations": ["claims.email == 'ci@example.com'"]}), Ok(true)),
            ("the opt-in, with no validation",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": [GITHUB], "acceptAnyTokenFromIssuer": true}), Ok(false)),
            ("the opt-in set false changes nothing",
             "generic-oidc", json!({"jwtProvider": "p", "issuers": [GITHUB], "acceptAnyTokenFromIssuer": false}), no_validation),
            ("the opt-in on gcr, which binds by email",
             "gcr", json!({"jwtProvider": "p", "audience": "a", "email": "e", "acceptAnyTokenFromIssuer": true}),
             Err(("receivers[0].idToken.acceptAnyTokenFromIssuer", "type gcr binds its tokens to the sender's email"))),
        ];
        for (case, provider, id_token, expected) in cases {
            let mut value: Value = serde_json::from_str(VALID).unwrap();
            as_id_token_receiver(&mut value["receivers"][0], provider, id_token);
            match (parse(&value.to_string()), expected) {
                (Ok(config), Ok(verified)) => {
                    let rules = config.receivers[0].token_rules.as_ref().unwrap();
                    assert_eq!(rules.require_verified_email, verified, "{case}");
                }
                (Err(err), Err((field, reason))) => {
                    assert_eq!(err.field, field, "{case}: {err}");
                    assert!(err.reason.starts_with(reason), "{case}: {err}");
                    assert!(
                        field.ends_with("acceptAnyTokenFromIssuer") || err.reason.ends_with(OPT_IN),
                        "{case}: {err}"
                    );
                }
                (result, expected) => panic!("{case}: {result:?}, expected {expected:?}"),
            }
        }
    }

    /// ID-token types: no secret, a path from the name alone (Flux's), the type's defaults completed
    /// by the receiver's `idToken`, and every missing rule named.
    #[test]
    fn id_token_receivers_take_rules_instead_of_secrets() {
        let mut value: Value = serde_json::from_str(VALID).unwrap();
        as_id_token_receiver(
            &mut value["receivers"][0],
            "generic-oidc",
            json!({"jwtProvider": "ci", "issuers": ["https://token.actions.githubusercontent.com"],
                   "validations": ["claims.repository == 'example/app'"]}),
        );
        let config = parse(&value.to_string()).unwrap();
        let receiver = &config.receivers[0];
        assert_eq!(
            receiver.paths,
            [flux_webhook_path("", "webapp", "flux-system")]
        );
        let rules = receiver.token_rules.as_ref().unwrap();
        assert_eq!(
            (
                rules.jwt_provider.as_str(),
                rules.issuers.as_slice(),
                rules.audience.as_str(),
                &rules.email,
                rules.require_verified_email,
                rules.validations.len(),
            ),
            (
                "ci",
                &["https://token.actions.githubusercontent.com".to_string()][..],
                "notification-controller",
                &None,
                false,
                1,
            )
        );
        value["receivers"][0]["type"] = "gcr".into();
        value["receivers"][0]["idToken"] = json!({"jwtProvider": "google", "audience": "a", "email": "p@x.iam.gserviceaccount.com"});
        let config = parse(&value.to_string()).unwrap();
        let rules = config.receivers[0].token_rules.as_ref().unwrap();
        assert_eq!(
            rules.issuers,
            ["https://accounts.google.com", "accounts.google.com"]
        );
        assert!(rules.require_verified_email);

        type Mutation = fn(&mut Value);
        #[rustfmt::skip]
        let cases: [(&str, Mutation, &str, &str); 9] = [
            ("an idToken where the type has secrets", |r| { r["idToken"] = json!({"jwtProvider": "p"}); },
             "receivers[0].idToken", "type github does not prove with an ID token"),
            ("no idToken", |r| { r["type"] = "generic-oidc".into(); r.as_object_mut().unwrap().retain(|k, _| !["events", "refs", "secrets"].contains(&k.as_str())); },
             "receivers[0].idToken", "type generic-oidc needs the jwtProvider that verifies its tokens"),
            ("secrets as well", |r| { r["type"] = "generic-oidc".into(); r["idToken"] = json!({"jwtProvider": "p", "issuers": ["i"], "validations": ["claims.sub == 'a'"]}); r.as_object_mut().unwrap().retain(|k, _| !["events", "refs"].contains(&k.as_str())); },
             "receivers[0].secrets", "type generic-oidc proves with an ID token and takes no secret"),
            ("generic-oidc without an issuer", |r| { as_id_token_receiver(r, "generic-oidc", json!({"jwtProvider": "p"})); },
             "receivers[0].idToken.issuers", "at least one issuer is required"),
            ("an empty jwtProvider", |r| { as_id_token_receiver(r, "generic-oidc", json!({"jwtProvider": " ", "issuers": ["i"]})); },
             "receivers[0].idToken.jwtProvider", "is empty"),
            ("gcr without an audience", |r| { as_id_token_receiver(r, "gcr", json!({"jwtProvider": "p", "email": "e"})); },
             "receivers[0].idToken.audience", "is required for type gcr"),
            ("gcr without an email", |r| { as_id_token_receiver(r, "gcr", json!({"jwtProvider": "p", "audience": "a"})); },
             "receivers[0].idToken.email", "is required for type gcr: any Google account could send otherwise"),
            ("a validation that does not compile", |r| as_id_token_receiver(r, "generic-oidc", json!({"jwtProvider": "p", "issuers": ["i"], "validations": ["claims.sub == 'a'", "req.x"]})),
             "receivers[0].idToken.validations[1]", "undeclared reference to 'req'"),
            ("an unknown idToken field", |r| { as_id_token_receiver(r, "gcr", json!({"jwtProvider": "p", "audience": "a", "email": "e", "emails": []})); },
             "receivers[0].idToken.emails", "unknown field `emails`, expected one of `jwtProvider`, `issuers`, `audience`, `email`, `validations`, `acceptAnyTokenFromIssuer`"),
        ];
        for (case, mutation, field, reason) in cases {
            let err = error_for(mutation);
            assert_eq!(
                (err.field.as_str(), err.reason.as_str()),
                (field, reason),
                "{case}: {err}"
            );
        }
    }

    #[test]
    fn gitlab_may_require_the_signature_of_its_signing_tokens() {
        for (secrets, require) in [
            (
                json!([{"inline": "gitlab-token"}, {"inline": "whsec_aGk="}]),
                None,
            ),
            (
                json!([{"inline": "whsec_aGk="}, {"inline": "whsec_aGVsbG8="}]),
                Some(true),
            ),
        ] {
            let mut value: Value = serde_json::from_str(VALID).unwrap();
            let receiver = &mut value["receivers"][0];
            receiver["type"] = "gitlab".into();
            receiver["secrets"] = secrets;
            receiver["events"] = json!(["Push Hook"]);
            if let Some(require) = require {
                receiver["requireSignature"] = require.into();
            }
            let config = parse(&value.to_string()).unwrap();
            assert_eq!(
                config.receivers[0].options.require_signature,
                require.unwrap_or(false)
            );
        }
    }

    /// Pruning copies the payload once per path: a path under another one read is not kept (30 nested
    /// paths copied the same value 30 times).
    #[test]
    fn payload_reads_keep_no_path_under_another() {
        let cases = [
            ("one path", "has(req.a.b)", vec![vec!["a", "b"]]),
            (
                "a path and its prefix",
                "has(req.a.b) && has(req.a)",
                vec![vec!["a"]],
            ),
            (
                "nested paths",
                "has(req.a.a.a) && has(req.a.a) && req.a == 1 && has(req.b.c)",
                vec![vec!["a"], vec!["b", "c"]],
            ),
            (
                "siblings",
                "has(req.a.b) && has(req.a.c)",
                vec![vec!["a", "b"], vec!["a", "c"]],
            ),
            (
                "a longer name is no prefix",
                "has(req.ab) && has(req.a)",
                vec![vec!["a"], vec!["ab"]],
            ),
        ];
        for (case, filter, expected) in cases {
            let mut value: Value = serde_json::from_str(VALID).unwrap();
            value["receivers"][0]["resourceFilter"] = filter.into();
            let config = parse(&value.to_string()).unwrap();
            assert_eq!(config.receivers[0].payload_reads, expected, "{case}");
        }
    }

    #[test]
    fn a_second_copy_of_a_receiver_is_a_duplicate() {
        let mut value: Value = serde_json::from_str(VALID).unwrap();
        let copy = value["receivers"][0].clone();
        value["receivers"].as_array_mut().unwrap().push(copy);
        assert_eq!(
            parse(&value.to_string()).unwrap_err().reason,
            "duplicate receiver"
        );
    }

    #[test]
    fn a_pinned_path_taken_twice_names_the_receiver_that_has_it() {
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
    }

    /// The filter applies the controller's rule to its key: whitespace at either end is refused (the
    /// controller refuses such a key file at start, so it never sends one).
    #[test]
    fn attestation_key_with_surrounding_whitespace_is_refused() {
        let key = "attestation-key-0123456789";
        for (name, padded) in [
            ("trailing newline", format!("{key}\n")),
            ("trailing CRLF", format!("{key}\r\n")),
            ("leading space", format!(" {key}")),
            ("short", "short".to_string()),
        ] {
            let inline = serde_json::to_string(&padded).unwrap();
            let json = VALID.replacen(&format!(r#""{key}""#), &inline, 1);
            let err = parse(&json).unwrap_err();
            assert_eq!(err.field, "attestationKey", "{name}: {err}");
            assert!(
                !format!("{err} {err:?}").contains(key),
                "{name}: the key is never shown"
            );
        }
    }
}
