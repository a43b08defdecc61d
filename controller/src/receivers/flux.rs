//! Flux's own `Receiver` objects (`notification.toolkit.fluxcd.io/v1`), served as they are with
//! `hookgate serve --serve-flux-receivers`: on Flux's path (`/hook/` + sha256(token + name + namespace),
//! the filter's path when none is pinned), with Flux's semantics as far as the filter has them.
//!
//! [`translate`] is the one mapping from a Flux Receiver's spec to hookgate's [`ReceiverSpec`]: the
//! controller serves Flux's objects through it, and `hookgate import` carries them over with it. What
//! hookgate cannot serve as Flux would (a type whose senders prove with an ID token that an Envoy Gateway
//! SecurityPolicy verifies, a CEL filter hookgate cannot run) is refused with why; where hookgate serves
//! a receiver differently from Flux, a [`Note`] says how.
//!
//! hookgate reads Flux's objects and never writes them: no status, no Events.

use std::fmt;

use hookgate_filter::providers::{self, Proof};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta};
use serde_json::Value;

use super::crd::{Receiver, ReceiverSpec, SecretRef, Target};

pub const GROUP: &str = "notification.toolkit.fluxcd.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "Receiver";
const PLURAL: &str = "receivers";
/// The key of a Flux Receiver's Secret that holds the token.
pub const TOKEN_KEY: &str = "token";
/// The Receiver types whose `spec.events` Flux checks (REFERENCE.md §2); it ignores them for the others.
pub const CHECKS_EVENTS: &[&str] = &["github", "gitlab", "bitbucket", "cdevents"];
/// The Receiver types whose senders Flux lets sign with HMAC-SHA1 and commonly do (`generic-hmac`'s
/// `sha1=`: the first example of Flux's documentation). GitHub also signs with SHA-256, which both check.
const SIGNS_WITH_SHA1: &[&str] = &["generic-hmac"];

/// Flux's `Receiver`, for a dynamic API and watcher.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// A Flux receiver as hookgate serves it, and where that differs from Flux.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// `secretRef: {name, keys: [token]}`; `targets` are `spec.resources`, one for one, in order.
    pub spec: ReceiverSpec,
    pub notes: Vec<Note>,
}

/// Where hookgate serves a Flux receiver differently from Flux, or what it depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// `spec.events` on a type whose events Flux does not check: left out (carried over, they would
    /// refuse deliveries Flux accepts).
    EventsNotChecked { provider: String },
    /// `spec.events` on a type whose events Flux checks and the filter cannot: left out, every event is
    /// accepted.
    EventsNotFiltered { provider: String },
    /// `spec.resources[index].matchLabels` on a named resource, which Flux looks up by name alone.
    MatchLabelsIgnored { index: usize },
    /// `spec.resources[index]` is in another namespace: served only when the controller allows
    /// cross-namespace targets.
    CrossNamespace { index: usize, namespace: String },
    /// A type whose senders sign with HMAC-SHA1 as often as not (Flux's own first `generic-hmac` example is
    /// `sha1=`), which Flux accepts and hookgate refuses unless `allowSha1` is set.
    Sha1Refused { provider: String },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventsNotChecked { provider } => write!(
                f,
                "spec.events dropped: Flux does not check events for type `{provider}`"
            ),
            Self::EventsNotFiltered { provider } => write!(
                f,
                "spec.events dropped: hookgate does not filter events of type `{provider}`, so every \
                 event is accepted"
            ),
            Self::MatchLabelsIgnored { index } => write!(
                f,
                "spec.resources[{index}].matchLabels dropped: Flux ignores them unless the name is `*`"
            ),
            Self::CrossNamespace { index, namespace } => write!(
                f,
                "spec.resources[{index}] is in namespace {namespace}: hookgate's controller reconciles \
                 it only with --allow-cross-namespace (and its ClusterRole bound in {namespace})"
            ),
            Self::Sha1Refused { provider } => write!(
                f,
                "type `{provider}`: a delivery signed with HMAC-SHA1 only, which Flux accepts, gets 401 \
                 (`signature mismatch`): set spec.allowSha1: true if the sender signs only with SHA-1"
            ),
        }
    }
}

/// Why hookgate cannot serve a Flux receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Untranslatable {
    /// The spec lacks a field Flux needs too (its CRD requires it).
    Invalid(String),
    /// A type hookgate has not, or whose senders prove with an ID token, which hookgate verifies only
    /// with a SecurityPolicy `jwt` provider on the route that a Flux Receiver does not name.
    UnsupportedType(String),
    /// A `resourceFilter` or `resources[].filter` hookgate's CEL cannot run.
    UnsupportedFilter(String),
}

impl fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) | Self::UnsupportedType(why) | Self::UnsupportedFilter(why) => {
                f.write_str(why)
            }
        }
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The hookgate spec that serves the Flux Receiver `spec` (its JSON, as the API server or a file holds
/// it) of namespace `namespace`, or why none can.
pub fn translate(spec: &Value, namespace: &str) -> Result<Translation, Untranslatable> {
    let flux_type =
        text(spec, "/type").ok_or_else(|| Untranslatable::Invalid("spec.type: required".into()))?;
    let provider = supported(spec, flux_type)?;
    let secret_name = text(spec, "/secretRef/name").ok_or_else(|| {
        Untranslatable::Invalid(format!(
            "spec.secretRef.name: required for type {flux_type}"
        ))
    })?;
    let mut notes = Vec::new();
    let events: Vec<String> = spec
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let events = if events.is_empty() {
        None
    } else if !CHECKS_EVENTS.contains(&flux_type) {
        notes.push(Note::EventsNotChecked {
            provider: flux_type.into(),
        });
        None
    } else if !provider.supports_events() {
        notes.push(Note::EventsNotFiltered {
            provider: flux_type.into(),
        });
        None
    } else {
        Some(events)
    };
    let mut targets = Vec::new();
    for (index, resource) in spec
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        targets.push(target(resource, index, namespace, &mut notes)?);
    }
    if SIGNS_WITH_SHA1.contains(&flux_type) {
        notes.push(Note::Sha1Refused {
            provider: flux_type.into(),
        });
    }
    // Suspended, it answers 503 without verifying, as Flux's does.
    let suspend = spec.get("suspend").and_then(Value::as_bool) == Some(true);
    let spec = ReceiverSpec {
        provider: flux_type.into(),
        events,
        secret_ref: Some(SecretRef {
            name: secret_name.into(),
            keys: vec![TOKEN_KEY.into()],
        }),
        targets: Some(targets),
        resource_filter: text(spec, "/resourceFilter").map(str::to_string),
        suspend,
        ..ReceiverSpec::default()
    };
    Ok(Translation { spec, notes })
}

/// The provider that serves a Flux receiver of `flux_type`, or why none can; and every CEL filter of
/// `spec` compiled as the controller runs it (one hookgate cannot run would leave its targets
/// unfiltered).
fn supported(
    spec: &Value,
    flux_type: &str,
) -> Result<&'static dyn providers::Provider, Untranslatable> {
    let Some(provider) = providers::lookup(flux_type) else {
        let known: Vec<&str> = providers::names().collect();
        return Err(Untranslatable::UnsupportedType(format!(
            "hookgate has no receiver type `{flux_type}` (it has {})",
            known.join(", ")
        )));
    };
    if provider.proof() == Proof::VerifiedToken {
        return Err(Untranslatable::UnsupportedType(format!(
            "type `{flux_type}` proves with an ID token that an Envoy Gateway SecurityPolicy jwt provider \
             verifies, which a Flux Receiver does not name: write a hookgate Receiver with `idToken` for \
             it (docs/receivers.md, Senders with ID tokens)"
        )));
    }
    let resources = spec.get("resources").and_then(Value::as_array);
    let filters = std::iter::once((
        "spec.resourceFilter".to_string(),
        text(spec, "/resourceFilter"),
    ))
    .chain(
        resources
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| (format!("spec.resources[{i}].filter"), text(r, "/filter"))),
    );
    for (field, filter) in filters {
        if let Some(source) = filter {
            hookgate_filter::cel::target_filter_reads(source).map_err(|e| {
                Untranslatable::UnsupportedFilter(format!(
                    "{field} is a CEL expression hookgate cannot run: {e}"
                ))
            })?;
        }
    }
    Ok(provider)
}

/// `spec.resources[index]` as a hookgate target of a receiver in `namespace`.
fn target(
    resource: &Value,
    index: usize,
    namespace: &str,
    notes: &mut Vec<Note>,
) -> Result<Target, Untranslatable> {
    let required = |field: &str| {
        text(resource, &format!("/{field}")).ok_or_else(|| {
            Untranslatable::Invalid(format!("spec.resources[{index}].{field}: required"))
        })
    };
    let name = required("name")?;
    let labels = resource
        .get("matchLabels")
        .and_then(Value::as_object)
        .filter(|labels| !labels.is_empty());
    let match_labels = match labels {
        Some(labels) if name == "*" => Some(
            labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        ),
        Some(_) => {
            notes.push(Note::MatchLabelsIgnored { index });
            None
        }
        None => None,
    };
    let target_namespace = text(resource, "/namespace");
    if let Some(other) = target_namespace.filter(|n| *n != namespace) {
        notes.push(Note::CrossNamespace {
            index,
            namespace: other.into(),
        });
    }
    Ok(Target {
        api_version: text(resource, "/apiVersion").map(str::to_string),
        kind: required("kind")?.into(),
        name: name.into(),
        namespace: target_namespace.map(str::to_string),
        match_labels,
        filter: text(resource, "/filter").map(str::to_string),
    })
}

/// The name of the Secret a Flux Receiver object names, if any.
pub fn secret_name(object: &DynamicObject) -> Option<&str> {
    text(&object.data, "/spec/secretRef/name")
}

/// A Flux Receiver object as the hookgate `Receiver` that serves it: its metadata (name, namespace,
/// generation, creation time), the translated spec, no status.
pub fn as_receiver(object: &DynamicObject) -> Result<(Receiver, Vec<Note>), Untranslatable> {
    let meta = &object.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let spec = object.data.get("spec").unwrap_or(&Value::Null);
    let translation = translate(spec, namespace)?;
    let receiver = Receiver {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            generation: meta.generation,
            creation_timestamp: meta.creation_timestamp.clone(),
            ..ObjectMeta::default()
        },
        spec: translation.spec,
        status: None,
    };
    Ok((receiver, translation.notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::offline::tests::patched as with;
    use serde_json::json;

    fn flux_spec(flux_type: &str, extra: Value) -> Value {
        with(
            json!({"type": flux_type, "secretRef": {"name": "webhook-token"},
                   "resources": [{"kind": "GitRepository", "name": "webapp"}]}),
            extra,
        )
    }

    /// What a case expects: the hookgate spec's fields that differ from the plain translation (type,
    /// secretRef {webhook-token, [token]}, the one GitRepository target) and the notes, or the refusal.
    type Expected = Result<(Value, Vec<Note>), Untranslatable>;

    fn plain(flux_type: &str) -> Value {
        json!({"type": flux_type, "secretRef": {"name": "webhook-token", "keys": ["token"]},
               "targets": [{"kind": "GitRepository", "name": "webapp"}]})
    }

    #[test]
    fn flux_receivers_translate_or_say_why() {
        let id_token = |t: &str| {
            Err(Untranslatable::UnsupportedType(format!(
                "type `{t}` proves with an ID token that an Envoy Gateway SecurityPolicy jwt provider \
                 verifies, which a Flux Receiver does not name: write a hookgate Receiver with `idToken` \
                 for it (docs/receivers.md, Senders with ID tokens)"
            )))
        };
        let mut cases: Vec<(String, Value, Expected)> = Vec::new();
        for flux_type in [
            "generic",
            "harbor",
            "dockerhub",
            "quay",
            "nexus",
            "acr",
            "cdevents",
        ] {
            cases.push((
                format!("type {flux_type}"),
                flux_spec(flux_type, json!({})),
                Ok((plain(flux_type), vec![])),
            ));
        }
        cases.extend([
            (
                "generic-hmac, which Flux lets sign with sha1=".to_string(),
                flux_spec("generic-hmac", json!({})),
                Ok((
                    plain("generic-hmac"),
                    vec![Note::Sha1Refused {
                        provider: "generic-hmac".into(),
                    }],
                )),
            ),
            (
                "github with its events".to_string(),
                flux_spec("github", json!({"events": ["ping", "push"]})),
                Ok((with(plain("github"), json!({"events": ["ping", "push"]})), vec![])),
            ),
            (
                "gitlab with its events".into(),
                flux_spec("gitlab", json!({"events": ["Push Hook"]})),
                Ok((with(plain("gitlab"), json!({"events": ["Push Hook"]})), vec![])),
            ),
            (
                "bitbucket with its events".into(),
                flux_spec("bitbucket", json!({"events": ["repo:push"]})),
                Ok((with(plain("bitbucket"), json!({"events": ["repo:push"]})), vec![])),
            ),
            (
                "events Flux does not check".into(),
                flux_spec("harbor", json!({"events": ["PUSH_ARTIFACT"]})),
                Ok((
                    plain("harbor"),
                    vec![Note::EventsNotChecked {
                        provider: "harbor".into(),
                    }],
                )),
            ),
            (
                "an empty events list".into(),
                flux_spec("github", json!({"events": []})),
                Ok((plain("github"), vec![])),
            ),
            (
                "suspended".into(),
                flux_spec("github", json!({"suspend": true})),
                Ok((with(plain("github"), json!({"suspend": true})), vec![])),
            ),
            (
                "not suspended".into(),
                flux_spec("github", json!({"suspend": false})),
                Ok((plain("github"), vec![])),
            ),
            (
                "resources: wildcard, apiVersion, other namespace, named with labels, filters".into(),
                flux_spec(
                    "github",
                    json!({"resourceFilter": "req.ref.endsWith(res.metadata.name)",
                           "resources": [
                        {"kind": "Kustomization", "name": "*", "matchLabels": {"team": "red"},
                         "filter": "res.metadata.labels['env'] == 'prod'"},
                        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
                         "name": "app", "namespace": "apps"},
                        {"kind": "HelmRelease", "name": "podinfo", "matchLabels": {"ignored": "yes"}},
                        {"kind": "GitRepository", "name": "webapp", "namespace": "flux-system"}]}),
                ),
                Ok((
                    with(
                        plain("github"),
                        json!({"resourceFilter": "req.ref.endsWith(res.metadata.name)", "targets": [
                            {"kind": "Kustomization", "name": "*", "matchLabels": {"team": "red"},
                             "filter": "res.metadata.labels['env'] == 'prod'"},
                            {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
                             "name": "app", "namespace": "apps"},
                            {"kind": "HelmRelease", "name": "podinfo"},
                            {"kind": "GitRepository", "name": "webapp", "namespace": "flux-system"}]}),
                    ),
                    vec![
                        Note::CrossNamespace {
                            index: 1,
                            namespace: "apps".into(),
                        },
                        Note::MatchLabelsIgnored { index: 2 },
                    ],
                )),
            ),
            ("gcr".into(), flux_spec("gcr", json!({})), id_token("gcr")),
            (
                "generic-oidc".into(),
                json!({"type": "generic-oidc", "oidcProviders": [{"issuer": "https://x"}],
                       "resources": [{"kind": "GitRepository", "name": "webapp"}]}),
                id_token("generic-oidc"),
            ),
            (
                "a type hookgate has not".into(),
                flux_spec("telepathy", json!({})),
                Err(Untranslatable::UnsupportedType(format!(
                    "hookgate has no receiver type `telepathy` (it has {})",
                    providers::names().collect::<Vec<_>>().join(", ")
                ))),
            ),
            (
                "a resourceFilter hookgate cannot run".into(),
                flux_spec("github", json!({"resourceFilter": "req.tag.matches('v.*')"})),
                Err(Untranslatable::UnsupportedFilter(
                    "spec.resourceFilter is a CEL expression hookgate cannot run: undeclared \
                     reference to 'matches'"
                        .into(),
                )),
            ),
            (
                "a resource filter reading OIDC claims".into(),
                flux_spec(
                    "github",
                    json!({"resources": [{"kind": "GitRepository", "name": "webapp",
                                          "filter": "claims.sub == 'x'"}]}),
                ),
                Err(Untranslatable::UnsupportedFilter(
                    "spec.resources[0].filter is a CEL expression hookgate cannot run: undeclared \
                     reference to 'claims'"
                        .into(),
                )),
            ),
            (
                "no type".into(),
                json!({"secretRef": {"name": "webhook-token"}, "resources": []}),
                Err(Untranslatable::Invalid("spec.type: required".into())),
            ),
            (
                "no secretRef".into(),
                json!({"type": "github", "resources": []}),
                Err(Untranslatable::Invalid(
                    "spec.secretRef.name: required for type github".into(),
                )),
            ),
            (
                "a resource without a kind".into(),
                flux_spec("github", json!({"resources": [{"name": "webapp"}]})),
                Err(Untranslatable::Invalid(
                    "spec.resources[0].kind: required".into(),
                )),
            ),
        ]);
        let mut failures = Vec::new();
        for (case, spec, expected) in cases {
            let got = translate(&spec, "flux-system").map(|t| {
                let spec = serde_json::to_value(&t.spec).unwrap();
                (spec, t.notes)
            });
            let matches = match (&got, &expected) {
                // The refusal's start: the filter's compile errors go on after it.
                (Err(g), Err(e)) => {
                    g.to_string().starts_with(&e.to_string()) && {
                        std::mem::discriminant(g) == std::mem::discriminant(e)
                    }
                }
                (g, e) => g == e,
            };
            if !matches {
                failures.push(format!("{case}:\n  want {expected:?}\n  got  {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_notes_say_what_differs_from_flux() {
        let cases = [
            (
                Note::EventsNotChecked {
                    provider: "harbor".into(),
                },
                "spec.events dropped: Flux does not check events for type `harbor`",
            ),
            (
                Note::MatchLabelsIgnored { index: 3 },
                "spec.resources[3].matchLabels dropped: Flux ignores them unless the name is `*`",
            ),
        ];
        for (note, text) in cases {
            assert_eq!(note.to_string(), text);
        }
    }

    /// An object as the API server gives it: the metadata the compile needs is kept, the status is not.
    #[test]
    fn an_object_becomes_the_hookgate_receiver_that_serves_it() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
            "metadata": {"name": "webapp", "namespace": "flux-system", "uid": "u-1", "generation": 4,
                         "creationTimestamp": "2030-01-01T00:00:00Z", "resourceVersion": "99",
                         "labels": {"a": "b"}},
            "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
                     "resources": [{"kind": "GitRepository", "name": "webapp"}]},
            "status": {"webhookPath": "/hook/abc", "conditions": []}}))
        .unwrap();
        assert_eq!(secret_name(&object), Some("webhook-token"));
        let (receiver, notes) = as_receiver(&object).unwrap();
        assert!(notes.is_empty());
        assert_eq!(receiver.label(), "flux-system/webapp");
        assert_eq!(receiver.metadata.generation, Some(4));
        assert_eq!(receiver.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(
            receiver.metadata.creation_timestamp,
            object.metadata.creation_timestamp
        );
        assert_eq!(receiver.status, None);
        assert_eq!(receiver.spec.provider, "github");
        assert_eq!(
            api_resource().api_version,
            "notification.toolkit.fluxcd.io/v1"
        );
        assert_eq!(api_resource().plural, "receivers");
    }
}
