//! The `Receiver` custom resource (`hookgate.io/v1alpha1`): the filter's wire receiver of today as a
//! namespaced object, with `secretRef` (keys of one Secret of the receiver's namespace) in place of
//! `secrets` and `suspend` in place of `disabled`. The CRD is generated from these types (`hookgate crd`).
//!
//! The nested blocks mirror the wire format field for field (`targets`, `refs`, `idToken`, `dispatch`),
//! so that a spec serializes to exactly what the filter reads; a test compiles a spec using every field
//! with the filter's own parser, which refuses any field it does not know.

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The Secret key a receiver reads when `secretRef.keys` is not given, as Flux's receivers do.
pub const DEFAULT_SECRET_KEY: &str = "token";

/// What a receiver accepts (its type, secrets, events and refs) and what a delivery does (its targets, or
/// a dispatch).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "hookgate.io",
    version = "v1alpha1",
    kind = "Receiver",
    namespaced,
    doc = "A webhook receiver verified at the edge by hookgate's filter. Its `status.webhookPath` is the \
           path to register with the sender.",
    status = "ReceiverStatus",
    category = "hookgate",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Path", "type": "string", "jsonPath": ".status.webhookPath"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSpec {
    /// The sender's type (`github`, `gitlab`, `generic-hmac`, ...): how a delivery proves itself.
    #[serde(rename = "type")]
    #[schemars(schema_with = "provider_type")]
    pub provider: String,
    /// Events to accept (case-insensitive); empty or absent accepts every event of the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// The receiver's secrets: keys of one Secret in the receiver's namespace, in order (more than one
    /// while a secret is rotated). Absent for the types whose senders prove themselves with an ID token
    /// (`generic-oidc`, `gcr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// What the sender's ID token must say, for `generic-oidc` and `gcr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<IdToken>,
    /// A pinned path (under `/hook/`) instead of Flux's path derived from each secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Branch and tag globs: a delivery for another ref is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Refs>,
    /// The largest body accepted, in bytes (default 3 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<u64>,
    /// Accept legacy HMAC-SHA1 signatures where the type can send them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_sha1: Option<bool>,
    /// Accept only signatures over the body where the type also sends unsigned tokens (GitLab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signature: Option<bool>,
    /// Refuse every delivery while true; the receiver stays configured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// The objects a delivery reconciles (action `reconcile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<Target>>,
    /// `reconcile` (default) or `dispatch` (an Argo CD rollback through GitHub's repository_dispatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Where a `dispatch` receiver dispatches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Dispatch>,
    /// CEL over the verified delivery, evaluated at the edge: false answers `202 ignored`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Flux's `resourceFilter`: CEL every target's objects must satisfy, evaluated by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,
}

/// Keys of one Secret in the receiver's namespace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The keys holding the receiver's secrets, in order. A key the Secret lacks is skipped (so that a
    /// rotation can name the next key before it exists), as long as one is there.
    #[serde(default = "default_keys")]
    #[schemars(length(min = 1))]
    pub keys: Vec<String>,
}

fn default_keys() -> Vec<String> {
    vec![DEFAULT_SECRET_KEY.to_string()]
}

/// An object to reconcile, or with `name: "*"` the objects carrying `matchLabels`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Default: Flux's (or Argo CD's) apiVersion of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    /// An object name, or `*` with `matchLabels`.
    pub name: String,
    /// Default: the receiver's namespace. Another namespace needs the controller's
    /// `--allow-cross-namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// CEL over `res` (the object's metadata) and `req` (the payload): Flux's `resources[].filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Branch and tag globs; a delivery passes when its ref matches either list.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Refs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// The rules for a receiver's ID tokens.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdToken {
    /// The SecurityPolicy `jwt` provider that verifies the tokens on the receiver's route.
    pub jwt_provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The sender's email (`gcr`: required); the token's `email_verified` must be true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// CEL over `claims`, each of which must be true. A validation reading `claims.email` makes the token's
    /// `email_verified` required to be true, as `email` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validations: Option<Vec<String>>,
    /// Accept every token the issuers sign for the audience, whoever it was issued to: without it, a
    /// `generic-oidc` receiver needs a validation (or `email`), and on an issuer that signs for anyone on
    /// its platform (GitHub Actions, GitLab.com, Google) a validation reading a claim that names the
    /// repository, project or account. `hookgate check` warns of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_any_token_from_issuer: Option<bool>,
}

/// What the controller does with a verified delivery.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Reconcile,
    Dispatch,
}

/// A `dispatch` receiver's GitHub repository and what it may dispatch.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Dispatch {
    /// owner/name.
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The application when the notification names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The applications this receiver may dispatch for (default: `application`, else the receiver's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications: Option<Vec<String>>,
}

/// What the controller made of the receiver.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// The path to register with the sender (the first, when each secret has its own path).
    #[serde(default)]
    pub webhook_path: Option<String>,
    /// The full URL, when the controller is told the route's base URL (`--webhook-base-url`).
    #[serde(default)]
    pub url: Option<String>,
    /// `Ready`: whether the receiver is served at the edge, and if not why.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The proxies that asked the controller for their configuration in the last minute.
    #[serde(default)]
    pub proxies: Option<Proxies>,
}

/// A condition, as Kubernetes' `metav1.Condition`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[schemars(schema_with = "date_time")]
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// How many proxies serve the receiver as it is now.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Proxies {
    /// Proxies that have applied a configuration holding the receiver's current form.
    pub serving: u32,
    /// Proxies that asked for their configuration in the last minute.
    pub seen: u32,
}

/// The known types, so that the API server refuses any other at once.
fn provider_type(_: &mut SchemaGenerator) -> Schema {
    let types: Vec<&str> = hookgate_filter::providers::names().collect();
    json_schema!({
        "description": "The sender's type: how a delivery proves itself.",
        "type": "string",
        "enum": types,
    })
}

fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time"})
}

/// The CRD as YAML, as `hookgate crd` prints it and `manifests/base/crds` holds it.
pub fn crd_yaml() -> String {
    let crd = Receiver::crd();
    let yaml = serde_yaml::to_string(&crd).unwrap_or_default();
    format!(
        "# Generated by `hookgate crd` from controller/src/receivers/crd.rs: do not edit.\n{yaml}"
    )
}

impl Receiver {
    /// `namespace/name`, as logs and messages name a receiver.
    pub fn label(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The file in manifests/ is what `hookgate crd` prints: regenerate it with
    /// `cargo run -p hookgate-cli -- crd > manifests/base/crds/receivers.hookgate.io.yaml`.
    #[test]
    fn the_manifests_hold_the_generated_crd() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/base/crds/receivers.hookgate.io.yaml"
        );
        let file = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            file == crd_yaml(),
            "{path} differs from `hookgate crd`: run `cargo run -p hookgate-cli -- crd > \
             manifests/base/crds/receivers.hookgate.io.yaml`"
        );
    }

    #[test]
    fn the_crd_names_group_version_columns_and_status() {
        let crd = serde_json::to_value(Receiver::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "receivers.hookgate.io");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], json!({}));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Type", "Ready", "Path", "Age"]);
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], json!(["type"]));
        let types = spec["properties"]["type"]["enum"].as_array().unwrap();
        assert!(types.contains(&json!("github")) && types.contains(&json!("gcr")));
        assert_eq!(
            spec["properties"]["secretRef"]["properties"]["keys"]["default"],
            json!(["token"])
        );
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        for field in [
            "observedGeneration",
            "webhookPath",
            "url",
            "conditions",
            "proxies",
        ] {
            assert!(status.get(field).is_some(), "status.{field}");
        }
    }

    #[test]
    fn secret_ref_keys_default_to_token() {
        let spec: ReceiverSpec = serde_json::from_value(json!({
            "type": "github", "secretRef": {"name": "webhook-token"}}))
        .unwrap();
        assert_eq!(spec.secret_ref.unwrap().keys, ["token"]);
    }
}
