//! The reconcile request: the only thing the filter sends to the controller, and the only thing the
//! controller accepts. Filter and controller both use these types, so the two ends cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dispatch::DispatchRequest;

/// The path a verified delivery is rewritten to. It stays under `/hook/` so that the rewritten request still
/// matches the HTTPRoute rule that leads to the controller (Envoy re-routes on the new path).
pub const DEFAULT_FORWARD_PATH: &str = "/hook/v1/reconcile";

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
}

/// Which receiver accepted the delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverRef {
    pub namespace: String,
    pub name: String,
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

/// The body of the request the filter forwards after verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileRequest {
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
}
