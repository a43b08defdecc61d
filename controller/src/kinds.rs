//! The kinds the controller may reconcile: the allow-list, their default apiVersions (Flux's and Argo
//! CD's), their plural resource names, and the annotation that asks each engine to reconcile.

use hookgate_protocol::kubernetes::is_version;
use kube::api::ApiResource;
use serde_json::{json, Value};

/// Flux: any new value is a reconcile request.
pub const FLUX_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Argo CD: `normal` asks for a refresh of the Application.
pub const ARGO_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// How a kind is asked to reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Flux,
    ArgoCd,
}

/// One reconcilable kind.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub group: &'static str,
    pub default_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub engine: Engine,
}

/// The allow-list. The RBAC in `manifests/base/controller` grants exactly these resources.
pub static KINDS: &[Kind] = &[
    flux(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    ),
    flux(
        "source.toolkit.fluxcd.io",
        "v1",
        "OCIRepository",
        "ocirepositories",
    ),
    flux(
        "source.toolkit.fluxcd.io",
        "v1",
        "HelmRepository",
        "helmrepositories",
    ),
    flux("source.toolkit.fluxcd.io", "v1", "HelmChart", "helmcharts"),
    flux("source.toolkit.fluxcd.io", "v1", "Bucket", "buckets"),
    flux(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    ),
    flux(
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
        "helmreleases",
    ),
    flux(
        "image.toolkit.fluxcd.io",
        "v1",
        "ImageRepository",
        "imagerepositories",
    ),
    flux(
        "image.toolkit.fluxcd.io",
        "v1",
        "ImagePolicy",
        "imagepolicies",
    ),
    flux(
        "image.toolkit.fluxcd.io",
        "v1",
        "ImageUpdateAutomation",
        "imageupdateautomations",
    ),
    Kind {
        group: "argoproj.io",
        default_version: "v1alpha1",
        kind: "Application",
        plural: "applications",
        engine: Engine::ArgoCd,
    },
];

const fn flux(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
) -> Kind {
    Kind {
        group,
        default_version: version,
        kind,
        plural,
        engine: Engine::Flux,
    }
}

/// A target's kind resolved against the allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub kind: &'static Kind,
    pub version: String,
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group && self.kind == other.kind
    }
}
impl Eq for Kind {}

/// Resolves `kind` (and an explicit `apiVersion`, which wins over the default) against the allow-list.
/// `None` when the kind, or the group of the explicit apiVersion, is not allowed, or its version is not a
/// Kubernetes version (the version goes into the request path: `Target::validate` refuses such a target
/// first; this keeps `resolve` safe on its own).
pub fn resolve(api_version: Option<&str>, kind: &str) -> Option<Resolved> {
    match api_version.filter(|v| !v.is_empty()) {
        None => KINDS.iter().find(|k| k.kind == kind).map(|k| Resolved {
            kind: k,
            version: k.default_version.to_string(),
        }),
        Some(api_version) => {
            let (group, version) = api_version.split_once('/')?;
            if !is_version(version) {
                return None;
            }
            KINDS
                .iter()
                .find(|k| k.kind == kind && k.group == group)
                .map(|k| Resolved {
                    kind: k,
                    version: version.to_string(),
                })
        }
    }
}

impl Resolved {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.kind.group.to_string(),
            version: self.version.clone(),
            api_version: format!("{}/{}", self.kind.group, self.version),
            kind: self.kind.kind.to_string(),
            plural: self.kind.plural.to_string(),
        }
    }

    /// The JSON merge patch that asks the engine to reconcile; it touches the metadata only.
    pub fn patch(&self, requested_at: &str) -> Value {
        let (key, value) = match self.kind.engine {
            Engine::Flux => (FLUX_ANNOTATION, requested_at),
            Engine::ArgoCd => (ARGO_ANNOTATION, "normal"),
        };
        json!({ "metadata": { "annotations": { key: value } } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_explicit_versions() {
        let r = resolve(None, "HelmRelease").unwrap();
        assert_eq!(r.api_resource().api_version, "helm.toolkit.fluxcd.io/v2");
        let r = resolve(Some("source.toolkit.fluxcd.io/v1beta2"), "GitRepository").unwrap();
        assert_eq!(
            r.api_resource().api_version,
            "source.toolkit.fluxcd.io/v1beta2"
        );
        assert_eq!(resolve(None, "Application").unwrap().version, "v1alpha1");
        assert!(resolve(None, "Secret").is_none());
        assert!(resolve(Some("v1"), "GitRepository").is_none());
        assert!(resolve(Some("evil.example.com/v1"), "GitRepository").is_none());
        assert!(resolve(
            Some("source.toolkit.fluxcd.io/v1/namespaces/other/gitrepositories/x"),
            "GitRepository"
        )
        .is_none());
    }

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
        let flux = resolve(None, "Kustomization")
            .unwrap()
            .patch("2026-01-01T00:00:00.000000001Z");
        assert_eq!(
            flux,
            json!({"metadata":{"annotations":{FLUX_ANNOTATION:"2026-01-01T00:00:00.000000001Z"}}})
        );
        let argo = resolve(None, "Application").unwrap().patch("ignored");
        assert_eq!(
            argo,
            json!({"metadata":{"annotations":{ARGO_ANNOTATION:"normal"}}})
        );
    }
}
