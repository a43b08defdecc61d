//! The attested request: the only thing the filter sends to the controller, and the only thing the
//! controller accepts. It asks for a reconcile of its targets or, for a `dispatch` receiver, for a
//! rollback dispatch.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dispatch::DispatchRequest;
use crate::kubernetes::{
    is_api_version, is_dns_label, is_dns_subdomain, is_label_key, is_label_value,
};

/// The path a verified delivery is rewritten to. It stays under `/hook/` so that the rewritten request still
/// matches the HTTPRoute rule that leads to the controller (Envoy re-routes on the new path).
pub const DEFAULT_FORWARD_PATH: &str = "/hook/v1/reconcile";

/// The largest delivery body a receiver may accept (its `bodyLimit`): GitHub sends up to 25 MB; nothing
/// legitimate needs more.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The largest attested request the filter forwards and the controller reads: the payload fields the
/// target filters read (at most the body, though re-serialized JSON can be longer: `1e9` becomes
/// `1000000000.0`) and the request around them. The filter refuses to forward a longer one (413).
pub const MAX_REQUEST_BYTES: usize = MAX_BODY_BYTES + 1024 * 1024;

/// A Kubernetes object (or, with `name: "*"`, a label-selected set of objects) to reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Empty: the controller uses Flux's (or Argo CD's) default apiVersion for the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    /// An object name, or `*` together with `match_labels`.
    pub name: String,
    /// Empty in the filter configuration: the receiver's namespace (filled in before forwarding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// A CEL expression over `res` (the object's metadata) and `req` (the payload), Flux's
    /// `resources[].filter`: the object is reconciled only where it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Why a target is malformed. The messages name the field, never its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    MissingKind,
    ApiVersion,
    Name,
    WildcardWithoutLabels,
    LabelsWithoutWildcard,
    Namespace,
    LabelKey,
    LabelValue,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingKind => "kind is required",
            Self::ApiVersion => {
                "apiVersion must be group/version with a Kubernetes version (v1, v1beta2, v2alpha1)"
            }
            Self::Name => "name must be an object name or \"*\" with matchLabels",
            Self::WildcardWithoutLabels => "name \"*\" requires matchLabels",
            Self::LabelsWithoutWildcard => "matchLabels only applies with name \"*\"",
            Self::Namespace => "namespace must be a Kubernetes namespace name",
            Self::LabelKey => "matchLabels keys must be Kubernetes label keys",
            Self::LabelValue => "matchLabels values must be Kubernetes label values",
        })
    }
}

impl TargetError {
    /// The target's field at fault, for error paths such as `receivers[0].targets[1].apiVersion`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::MissingKind => "kind",
            Self::ApiVersion => "apiVersion",
            Self::Name | Self::WildcardWithoutLabels => "name",
            Self::Namespace => "namespace",
            Self::LabelsWithoutWildcard | Self::LabelKey | Self::LabelValue => "matchLabels",
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Checks every field that reaches an API path or a label selector against Kubernetes' rules (see
    /// [`crate::kubernetes`]). The filter calls this on its configuration, the controller on every request,
    /// before any API call. Whether the kind is reconcilable is the controller's allow-list, not this.
    pub fn validate(&self) -> Result<(), TargetError> {
        if self.kind.trim().is_empty() {
            return Err(TargetError::MissingKind);
        }
        if let Some(api_version) = self.api_version.as_deref().filter(|v| !v.is_empty()) {
            if !is_api_version(api_version) {
                return Err(TargetError::ApiVersion);
            }
        }
        if self.name == "*" {
            if self.match_labels.is_empty() {
                return Err(TargetError::WildcardWithoutLabels);
            }
        } else if !is_dns_subdomain(&self.name) {
            return Err(TargetError::Name);
        } else if !self.match_labels.is_empty() {
            return Err(TargetError::LabelsWithoutWildcard);
        }
        if let Some(ns) = self.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            if !is_dns_label(ns) {
                return Err(TargetError::Namespace);
            }
        }
        for (key, value) in &self.match_labels {
            if !is_label_key(key) {
                return Err(TargetError::LabelKey);
            }
            if !is_label_value(value) {
                return Err(TargetError::LabelValue);
            }
        }
        Ok(())
    }
}

/// Which receiver accepted the delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverRef {
    pub namespace: String,
    pub name: String,
}

impl ReceiverRef {
    /// The receiver's namespace is the default namespace of its targets, so it reaches API paths too: a
    /// namespace name (DNS label); the receiver's name is an object name (DNS subdomain), as in the filter's
    /// configuration.
    pub fn is_valid(&self) -> bool {
        is_dns_label(&self.namespace) && is_dns_subdomain(&self.name)
    }
}

/// What the controller does with a verified delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set the reconcile annotation on the targets.
    #[default]
    Reconcile,
    /// Send a GitHub `repository_dispatch` (Argo CD rollback).
    Dispatch,
}

impl Action {
    fn is_reconcile(&self) -> bool {
        *self == Self::Reconcile
    }
}

/// The body of the request the filter forwards after verification, signed as [`crate::attestation`] says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestedRequest {
    pub receiver: ReceiverRef,
    /// The provider type of the receiver (`github`, `gitlab`, ...).
    #[serde(rename = "type")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// Full Git ref (`refs/heads/main`, `refs/tags/v1.2.0`) where the payload has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// Container image tag where a registry payload has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Action::is_reconcile")]
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// Present exactly when `action` is `dispatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<DispatchRequest>,
    /// Flux's `spec.resourceFilter`: a CEL expression every target's objects must satisfy too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,
    /// The payload fields the filters read (Flux's `req`), and only those: the filter cuts the payload
    /// down to the paths the expressions reference. Absent when no filter reads the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Random per forwarded request (the filter's `nonce`): identical deliveries are distinct attestations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Targets as the filter's configuration and the controller's requests carry them, with the verdict of
/// [`Target::validate`]: one table both ends are tested against.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::TargetError;
    use serde_json::{json, Value};

    /// The explicit apiVersion that, split on its first `/`, would put `namespaces/other/...` into the
    /// request path and escape the cross-namespace check.
    const PATH_ESCAPE: &str = "source.toolkit.fluxcd.io/v1/namespaces/other/gitrepositories/x";

    /// (case, target, expected) — targets as the filter's configuration and the controller's requests
    /// carry them.
    pub fn target_cases() -> Vec<(&'static str, Value, Result<(), TargetError>)> {
        vec![
            (
                "plain name",
                json!({"kind": "GitRepository", "name": "webapp"}),
                Ok(()),
            ),
            (
                "explicit apiVersion",
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1beta2", "kind": "GitRepository", "name": "webapp"}),
                Ok(()),
            ),
            (
                "core apiVersion (the controller's allow-list decides)",
                json!({"apiVersion": "v1", "kind": "Secret", "name": "x"}),
                Ok(()),
            ),
            (
                "wildcard with labels",
                json!({"kind": "Kustomization", "name": "*", "namespace": "apps",
                       "matchLabels": {"app.kubernetes.io/name": "webapp", "tier": ""}}),
                Ok(()),
            ),
            (
                "apiVersion with a path",
                json!({"apiVersion": PATH_ESCAPE, "kind": "GitRepository", "name": "webapp"}),
                Err(TargetError::ApiVersion),
            ),
            (
                "apiVersion with a query",
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1?dryRun=All", "kind": "GitRepository", "name": "x"}),
                Err(TargetError::ApiVersion),
            ),
            (
                "label value with a selector",
                json!({"kind": "Kustomization", "name": "*", "matchLabels": {"app": "a,env!=prod"}}),
                Err(TargetError::LabelValue),
            ),
            (
                "label key with a selector",
                json!({"kind": "Kustomization", "name": "*", "matchLabels": {"env!": "prod"}}),
                Err(TargetError::LabelKey),
            ),
            (
                "name with a path",
                json!({"kind": "GitRepository", "name": "x/status"}),
                Err(TargetError::Name),
            ),
            (
                "namespace with a path",
                json!({"kind": "GitRepository", "name": "x", "namespace": "apps/gitrepositories"}),
                Err(TargetError::Namespace),
            ),
            (
                "wildcard without labels",
                json!({"kind": "Kustomization", "name": "*"}),
                Err(TargetError::WildcardWithoutLabels),
            ),
            (
                "labels without wildcard",
                json!({"kind": "Kustomization", "name": "x", "matchLabels": {"app": "a"}}),
                Err(TargetError::LabelsWithoutWildcard),
            ),
            (
                "no kind",
                json!({"kind": " ", "name": "x"}),
                Err(TargetError::MissingKind),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::testing::target_cases as cases;
    use super::*;

    #[test]
    fn targets_are_validated_with_kubernetes_rules() {
        for (case, target, expected) in cases() {
            let target: Target = serde_json::from_value(target).unwrap();
            assert_eq!(target.validate(), expected, "{case}");
        }
    }

    #[test]
    fn receiver_refs_are_validated() {
        let r = |namespace: &str, name: &str| ReceiverRef {
            namespace: namespace.into(),
            name: name.into(),
        };
        assert!(r("flux-system", "webapp.v2").is_valid());
        assert!(!r("flux-system/namespaces/other", "webapp").is_valid());
        assert!(!r("", "webapp").is_valid());
        assert!(!r("flux-system", "Web App").is_valid());
    }
}
