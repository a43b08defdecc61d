//! Receivers compiled as the controller compiles them, without a cluster: for the workstation tools
//! (`hookgate check` on files of `Receiver` objects, `hookgate import --to objects`). The same two steps
//! as the controller's index, [`compile::receiver`] for each receiver alone and [`compile::document`] for
//! them together, so a receiver gets the `Ready` reason and message the controller would give it. What
//! differs is only what a workstation lacks:
//!
//! - a Secret that is not at hand stands for a placeholder under each key of `secretRef.keys` (valid for
//!   the receiver's type), and the Flux-style paths that depend on it are then [`WebhookPath::Unknown`];
//! - the attestation key is a placeholder: it is the controller's, not the receiver's.
//!
//! [`unknown_fields`] reads an object against the CRD generated from the same types, for the fields the
//! API server would refuse (`kubectl apply`) or drop, which the compile cannot see: serde ignores them.

use std::collections::BTreeMap;

use hookgate_filter::providers;
use hookgate_protocol::{Secret, DEFAULT_FORWARD_PATH};
use kube::CustomResourceExt;
use serde_json::Value;

use super::compile::{self, key_of, Key, NotReady, SecretData, SecretState};
use super::crd::Receiver;

/// Stands for the controller's attestation key, which a receiver's compile does not depend on.
const PLACEHOLDER_ATTESTATION_KEY: &str = "hookgate-offline-placeholder-attestation-key";

/// The controller's settings a receiver's compile depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The controller's `--reconcile-path`: no receiver may take it.
    pub forward_path: String,
    /// The controller's `--allow-cross-namespace`.
    pub allow_cross_namespace: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            forward_path: DEFAULT_FORWARD_PATH.to_string(),
            allow_cross_namespace: false,
        }
    }
}

/// A receiver to compile, with the data of the Secret it names when that is at hand (`None`: compiled
/// with a placeholder under each key).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub object: &'a Receiver,
    pub secret: Option<&'a SecretData>,
}

/// A path a receiver answers on, or, when it is derived from a secret that was not at hand, which one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookPath {
    Known(String),
    /// Flux's path from the value of `key` in Secret `secret`.
    Unknown {
        secret: String,
        key: String,
    },
}

/// A receiver the controller would serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// In the order of the controller's `status.webhookPath` (the first) and of `secretRef.keys`.
    pub paths: Vec<WebhookPath>,
    /// Keys of `secretRef.keys` the Secret lacks (skipped), as its `Ready` message says.
    pub missing_keys: Vec<String>,
    pub suspended: bool,
    /// Compiled with a placeholder: its Secret was not at hand.
    pub placeholder: bool,
}

/// What the controller would make of one receiver: served, or not Ready with its reason and message.
pub type Outcome = Result<Served, NotReady>;

/// Compiles `inputs` as the controller compiles the Receivers it watches: each alone, then together in
/// namespace/name order (a path held by an earlier receiver leaves the later one out). Two inputs with
/// the same namespace and name are one object to the API server: the last one counts.
pub fn compile(inputs: &[Input], options: &Options) -> BTreeMap<Key, Outcome> {
    let settings = compile::Settings {
        attestation_key: PLACEHOLDER_ATTESTATION_KEY,
        forward_path: &options.forward_path,
        allow_cross_namespace: options.allow_cross_namespace,
        // Offline, where the controller's flags are not known, any namespace may dispatch.
        dispatch_namespaces: None,
    };
    let mut latest: BTreeMap<Key, Input> = BTreeMap::new();
    for input in inputs {
        latest.insert(key_of(input.object), *input);
    }
    let mut candidates = Vec::with_capacity(latest.len());
    let mut refused = BTreeMap::new();
    let mut placeholders = BTreeMap::new();
    for (key, input) in &latest {
        let placeholder = placeholder_data(input);
        let state = match (&input.object.spec.secret_ref, input.secret, &placeholder) {
            (None, _, _) => SecretState::NotNamed,
            (Some(_), Some(data), _) => SecretState::Present(data),
            (Some(_), None, Some(data)) => SecretState::Present(data),
            (Some(_), None, None) => SecretState::Missing,
        };
        match compile::receiver(input.object, state, &settings) {
            Ok(candidate) => candidates.push(candidate),
            Err(not_ready) => {
                refused.insert(key.clone(), not_ready);
            }
        }
        placeholders.insert(key.clone(), placeholder.is_some());
    }
    let compiled = compile::document(candidates, refused, &settings);
    let mut outcomes: BTreeMap<Key, Outcome> = compiled
        .refused
        .into_iter()
        .map(|(key, not_ready)| (key, Err(not_ready)))
        .collect();
    for (key, included) in compiled.included {
        let placeholder = placeholders.get(&key).copied().unwrap_or(false);
        let paths = match latest.get(&key) {
            Some(input) if placeholder => unknown_paths(input.object, included.paths),
            _ => included.paths.into_iter().map(WebhookPath::Known).collect(),
        };
        let served = Served {
            paths,
            missing_keys: included.missing_keys,
            suspended: included.suspended,
            placeholder,
        };
        outcomes.insert(key, Ok(served));
    }
    outcomes
}

/// When `input` names a Secret that is not at hand: a placeholder under each of its keys, valid for the
/// receiver's type (the filter names an unknown type, whatever the secret).
fn placeholder_data(input: &Input) -> Option<SecretData> {
    let secret_ref = input.object.spec.secret_ref.as_ref()?;
    if input.secret.is_some() {
        return None;
    }
    let provider = providers::lookup(&input.object.spec.provider);
    let data = secret_ref
        .keys
        .iter()
        .map(|key| {
            let seed = format!("{}-{key}", secret_ref.name);
            let value = provider.map_or_else(
                || format!("hookgate-offline-{seed}"),
                |p| p.placeholder_secret(&seed),
            );
            (key.clone(), Secret::from(value))
        })
        .collect();
    Some(SecretData(data))
}

/// The paths of a receiver compiled with placeholders: a pinned path is known, a Flux-style path (one per
/// key, in order, every key being there) is the placeholder's.
fn unknown_paths(object: &Receiver, paths: Vec<String>) -> Vec<WebhookPath> {
    let secret_ref = object.spec.secret_ref.as_ref();
    if object.spec.path.is_some() || secret_ref.is_none() {
        return paths.into_iter().map(WebhookPath::Known).collect();
    }
    let secret = secret_ref.map_or("", |r| r.name.as_str());
    let keys = secret_ref.map(|r| r.keys.as_slice()).unwrap_or_default();
    (0..paths.len())
        .map(|i| WebhookPath::Unknown {
            secret: secret.to_string(),
            key: keys.get(i).cloned().unwrap_or_default(),
        })
        .collect()
}

/// The fields of `object` (a `Receiver` as written in a file) that the CRD does not have, as
/// `spec.targets[0].nmae`: `kubectl apply` refuses them (strict field validation), and an API server
/// not asked to validate drops them, so the controller never sees them. `metadata` and `status` are
/// not the CRD's to say.
pub fn unknown_fields(object: &Value) -> Vec<String> {
    let crd = serde_json::to_value(Receiver::crd()).unwrap_or_default();
    let Some(schema) = crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
    else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    if let Some(spec) = object.get("spec") {
        walk(spec, schema, "spec", &mut unknown);
    }
    unknown
}

fn walk(value: &Value, schema: &Value, at: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                // A map (`matchLabels`) or a free-form object: any key.
                return;
            };
            for (name, field) in fields {
                let at = format!("{at}.{name}");
                match properties.get(name) {
                    Some(field_schema) => walk(field, field_schema, &at, unknown),
                    None => unknown.push(at),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{at}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::receivers::compile::Reason;
    use hookgate_filter::config::flux_webhook_path;
    use kube::api::ObjectMeta;
    use serde_json::json;

    /// Distinctive secret values: none may appear in any outcome.
    const TOKEN: &str = "hunter2-offline-token-0001";
    const NEXT: &str = "hunter2-offline-next-0002";

    fn object(namespace: &str, name: &str, spec: Value) -> Receiver {
        Receiver {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            spec: serde_json::from_value(spec).unwrap(),
            status: None,
        }
    }

    /// `base` with each field of `extra` set over it, or removed where `extra` gives it `null`.
    pub(crate) fn patched(base: Value, extra: Value) -> Value {
        let mut spec = base;
        for (field, value) in extra.as_object().unwrap() {
            if value.is_null() {
                spec.as_object_mut().unwrap().remove(field);
            } else {
                spec[field] = value.clone();
            }
        }
        spec
    }

    /// A GitHub receiver's spec (Secret `webhook-token`, every event, one GitRepository `app`), `extra`
    /// patched over it.
    pub(crate) fn github(extra: Value) -> Value {
        patched(
            json!({"type": "github", "secretRef": {"name": "webhook-token"},
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            extra,
        )
    }

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        SecretData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::from(*v)))
                .collect(),
        )
    }

    fn known(token: &str, name: &str) -> WebhookPath {
        WebhookPath::Known(flux_webhook_path(token, name, "tenant"))
    }

    fn unknown(key: &str) -> WebhookPath {
        WebhookPath::Unknown {
            secret: "webhook-token".into(),
            key: key.into(),
        }
    }

    /// What a case expects of receiver `tenant/app`: its paths and whether a placeholder stood for its
    /// Secret, or its reason and the start of its message.
    type Expected = Result<(Vec<WebhookPath>, bool), (Reason, &'static str)>;

    #[test]
    fn each_receiver_gets_what_the_controller_would_say() {
        // (case, spec, the Secret's data (None: not at hand), options, expected)
        let cases: Vec<(&str, Value, Option<SecretData>, Options, Expected)> = vec![
            (
                "its Secret at hand",
                github(json!({})),
                Some(data(&[("token", TOKEN)])),
                Options::default(),
                Ok((vec![known(TOKEN, "app")], false)),
            ),
            (
                "its Secret not at hand: the path is unknown",
                github(json!({})),
                None,
                Options::default(),
                Ok((vec![unknown("token")], true)),
            ),
            (
                "two keys, the Secret not at hand: one unknown path each",
                github(json!({"secretRef": {"name": "webhook-token", "keys": ["token", "next"]}})),
                None,
                Options::default(),
                Ok((vec![unknown("token"), unknown("next")], true)),
            ),
            (
                "a pinned path, the Secret not at hand: the path is known",
                github(json!({"path": "/hook/tenant-app"})),
                None,
                Options::default(),
                Ok((vec![WebhookPath::Known("/hook/tenant-app".into())], true)),
            ),
            (
                "every type's placeholder compiles: standard-webhooks",
                github(json!({"type": "standard-webhooks"})),
                None,
                Options::default(),
                Ok((vec![unknown("token")], true)),
            ),
            (
                "every type's placeholder compiles: basic",
                github(json!({"type": "basic"})),
                None,
                Options::default(),
                Ok((vec![unknown("token")], true)),
            ),
            (
                "the Secret at hand without the key",
                github(json!({})),
                Some(data(&[("password", TOKEN)])),
                Options::default(),
                Err((
                    Reason::SecretKeyNotFound,
                    "Secret webhook-token has none of the keys token",
                )),
            ),
            (
                "an invalid target name",
                github(json!({"targets": [{"kind": "GitRepository", "name": "Web App"}]})),
                None,
                Options::default(),
                Err((Reason::InvalidSpec, "spec.targets[0].name: ")),
            ),
            (
                "an unknown type",
                github(json!({"type": "githubb"})),
                None,
                Options::default(),
                Err((Reason::InvalidSpec, "spec.type: ")),
            ),
            (
                "a target in another namespace",
                github(
                    json!({"targets": [{"kind": "GitRepository", "name": "app", "namespace": "other"}]}),
                ),
                None,
                Options::default(),
                Err((
                    Reason::CrossNamespaceTarget,
                    "spec.targets[0].namespace: other is not the receiver's namespace",
                )),
            ),
            (
                "a target in another namespace, allowed as the controller's flag allows it",
                github(
                    json!({"targets": [{"kind": "GitRepository", "name": "app", "namespace": "other"}]}),
                ),
                None,
                Options {
                    allow_cross_namespace: true,
                    ..Options::default()
                },
                Ok((vec![unknown("token")], true)),
            ),
            (
                "the controller's reconcile path pinned",
                github(json!({"path": "/hook/forward-here"})),
                None,
                Options {
                    forward_path: "/hook/forward-here".into(),
                    ..Options::default()
                },
                Err((Reason::InvalidSpec, "spec.path: ")),
            ),
        ];
        let mut failures = Vec::new();
        for (case, spec, secret, options, expected) in cases {
            let receiver = object("tenant", "app", spec);
            let outcomes = compile(
                &[Input {
                    object: &receiver,
                    secret: secret.as_ref(),
                }],
                &options,
            );
            let outcome = &outcomes[&("tenant".to_string(), "app".to_string())];
            let text = format!("{outcome:?}");
            if text.contains("hunter2") {
                failures.push(format!("{case}: shows a secret: {text}"));
            }
            match (&expected, outcome) {
                (Ok((paths, placeholder)), Ok(served))
                    if served.paths == *paths && served.placeholder == *placeholder => {}
                (Err((reason, start)), Err(not_ready))
                    if not_ready.reason == *reason && not_ready.message.starts_with(start) => {}
                _ => failures.push(format!("{case}: {text}, expected {expected:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A receiver's name and whether it is served (else its reason).
    type Verdict = (&'static str, Result<(), Reason>);

    #[test]
    fn receivers_are_compiled_together_as_the_controller_does() {
        let pinned = json!({"path": "/hook/shared"});
        let cases: Vec<(&str, Vec<Receiver>, Vec<Verdict>)> = vec![
            (
                "a path held by an earlier receiver, in namespace/name order",
                vec![
                    object("tenant", "b", github(pinned.clone())),
                    object("tenant", "a", github(pinned.clone())),
                ],
                vec![("a", Ok(())), ("b", Err(Reason::PathConflict))],
            ),
            (
                "one invalid receiver leaves the others served",
                vec![
                    object(
                        "tenant",
                        "a",
                        github(json!({"targets": [{"kind": "GitRepository", "name": "Web App"}]})),
                    ),
                    object("tenant", "b", github(json!({}))),
                ],
                vec![("a", Err(Reason::InvalidSpec)), ("b", Ok(()))],
            ),
            (
                "the same object twice: the last one counts",
                vec![
                    object("tenant", "a", github(json!({"targets": []}))),
                    object("tenant", "a", github(json!({}))),
                ],
                vec![("a", Ok(()))],
            ),
        ];
        for (case, objects, expected) in cases {
            let inputs: Vec<Input> = objects
                .iter()
                .map(|object| Input {
                    object,
                    secret: None,
                })
                .collect();
            let outcomes = compile(&inputs, &Options::default());
            assert_eq!(outcomes.len(), expected.len(), "{case}: {outcomes:?}");
            for (name, expected) in expected {
                let outcome = &outcomes[&("tenant".to_string(), name.to_string())];
                match (expected, outcome) {
                    (Ok(()), Ok(_)) => {}
                    (Err(reason), Err(not_ready)) if not_ready.reason == reason => {}
                    _ => panic!("{case}: {name}: {outcome:?}"),
                }
            }
        }
    }

    #[test]
    fn a_secret_with_a_missing_key_is_served_saying_so() {
        let receiver = object(
            "tenant",
            "app",
            github(json!({"secretRef": {"name": "webhook-token", "keys": ["token", "next"]}})),
        );
        let secret = data(&[("next", NEXT)]);
        let outcomes = compile(
            &[Input {
                object: &receiver,
                secret: Some(&secret),
            }],
            &Options::default(),
        );
        let served = outcomes[&("tenant".to_string(), "app".to_string())]
            .clone()
            .unwrap();
        assert_eq!(served.paths, [known(NEXT, "app")]);
        assert_eq!(served.missing_keys, ["token"]);
        assert!(!served.placeholder);
    }

    #[test]
    fn unknown_fields_are_named_by_their_path() {
        let cases = [
            ("every field known", github(json!({})), vec![]),
            (
                "a misspelt top-level field",
                github(json!({"refz": {"branches": ["main"]}})),
                vec!["spec.refz"],
            ),
            (
                "a misspelt field of a target",
                github(json!({"targets": [{"kind": "GitRepository", "nmae": "app"}]})),
                vec!["spec.targets[0].nmae"],
            ),
            (
                "a map's keys are free",
                github(
                    json!({"targets": [{"kind": "Kustomization", "name": "*", "matchLabels": {"any": "x"}}]}),
                ),
                vec![],
            ),
            (
                "nested blocks",
                github(
                    json!({"secretRef": {"name": "x", "key": "token"}, "idToken": {"jwtProvider": "p", "aud": "a"}}),
                ),
                vec!["spec.idToken.aud", "spec.secretRef.key"],
            ),
        ];
        for (case, spec, expected) in cases {
            let document = json!({"apiVersion": "hookgate.io/v1alpha1", "kind": "Receiver",
                "metadata": {"name": "app", "labels": {"x": "y"}}, "spec": spec, "status": {"anything": 1}});
            assert_eq!(unknown_fields(&document), expected, "{case}");
        }
    }
}
