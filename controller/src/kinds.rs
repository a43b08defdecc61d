//! The kinds the controller may reconcile (the allow-list is the protocol's, which the filter checks when
//! it compiles the configuration), as the API server serves them: their resource and the annotation that
//! asks each engine to reconcile.

pub use hookgate_protocol::kinds::{refusal, resolve, Engine, Resolved, KINDS};
use kube::api::ApiResource;
use serde_json::{json, Value};

/// Flux: any new value is a reconcile request.
pub const FLUX_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Argo CD: `normal` asks for a refresh of the Application.
pub const ARGO_ANNOTATION: &str = "argocd.argoproj.io/refresh";

pub fn api_resource(resolved: &Resolved) -> ApiResource {
    ApiResource {
        group: resolved.kind.group.to_string(),
        version: resolved.version.clone(),
        api_version: resolved.api_version(),
        kind: resolved.kind.kind.to_string(),
        plural: resolved.kind.plural.to_string(),
    }
}

/// The JSON merge patch that asks the engine to reconcile; it touches the metadata only.
pub fn patch(resolved: &Resolved, requested_at: &str) -> Value {
    let (key, value) = match resolved.kind.engine {
        Engine::Flux => (FLUX_ANNOTATION, requested_at),
        Engine::ArgoCd => (ARGO_ANNOTATION, "normal"),
    };
    json!({ "metadata": { "annotations": { key: value } } })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RBAC that manifests/ ships grants exactly list and patch on exactly the allow-listed kinds.
    #[test]
    fn manifest_rbac_matches_the_allow_list() {
        let text = include_str!("../../manifests/base/controller/rbac.yaml");
        let role = serde_yaml::Deserializer::from_str(text)
            .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
            .find(|d| d["kind"] == "ClusterRole")
            .unwrap();
        let mut granted = Vec::new();
        for rule in role["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(verbs, ["list", "patch"], "{rule}");
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    granted.push((
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        let mut allowed: Vec<(String, String)> = KINDS
            .iter()
            .map(|k| (k.group.to_string(), k.plural.to_string()))
            .collect();
        granted.sort();
        allowed.sort();
        assert_eq!(granted, allowed);
    }

    #[test]
    fn patches_touch_only_annotations() {
        let flux = patch(
            &resolve(None, "Kustomization").unwrap(),
            "2026-01-01T00:00:00.000000001Z",
        );
        assert_eq!(
            flux,
            json!({"metadata":{"annotations":{FLUX_ANNOTATION:"2026-01-01T00:00:00.000000001Z"}}})
        );
        let argo = patch(&resolve(None, "Application").unwrap(), "ignored");
        assert_eq!(
            argo,
            json!({"metadata":{"annotations":{ARGO_ANNOTATION:"normal"}}})
        );
    }
}
