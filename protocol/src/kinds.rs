//! The kinds hookgate may reconcile: the allow-list both ends read. The filter refuses a receiver whose
//! target names another kind when it compiles the configuration (so `hookgate check` and the Receiver's
//! status say so before a delivery does); the controller resolves each target of a request against it.

use crate::kubernetes::is_version;

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

/// The allow-list: the kinds Flux's Receiver accepts (notification-controller v1.9.3's enum, whose
/// `ArtifactGenerator` is source-watcher's and `ExternalArtifact` source-controller's) and Argo CD's
/// Application. A kind Flux resolves without an apiVersion has Flux's default here; hookgate also gives
/// the others the version their controllers serve. The RBAC in `manifests/base/controller` grants exactly
/// these resources.
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
        "source.toolkit.fluxcd.io",
        "v1",
        "ExternalArtifact",
        "externalartifacts",
    ),
    flux(
        "source.extensions.fluxcd.io",
        "v1beta1",
        "ArtifactGenerator",
        "artifactgenerators",
    ),
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

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group && self.kind == other.kind
    }
}
impl Eq for Kind {}

/// A target's kind resolved against the allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub kind: &'static Kind,
    pub version: String,
}

impl Resolved {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.kind.group, self.version)
    }
}

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

/// Why a target's kind is refused, for the configuration's error and the controller's log: names the
/// kind (from the configuration, not from a delivery) and what is allowed.
pub fn refusal(api_version: Option<&str>, kind: &str) -> String {
    let allowed: Vec<&str> = KINDS.iter().map(|k| k.kind).collect();
    match api_version.filter(|v| !v.is_empty()) {
        Some(api_version) if KINDS.iter().any(|k| k.kind == kind) => format!(
            "{kind} is not served as {api_version} (hookgate reconciles it in group {})",
            KINDS
                .iter()
                .find(|k| k.kind == kind)
                .map_or("", |k| k.group)
        ),
        _ => format!(
            "{kind} is not a kind hookgate reconciles (one of {})",
            allowed.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_explicit_versions() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            (
                "a default",
                None,
                "HelmRelease",
                Some("helm.toolkit.fluxcd.io/v2"),
            ),
            (
                "an explicit version wins",
                Some("source.toolkit.fluxcd.io/v1beta2"),
                "GitRepository",
                Some("source.toolkit.fluxcd.io/v1beta2"),
            ),
            ("Argo CD", None, "Application", Some("argoproj.io/v1alpha1")),
            (
                "Flux's ArtifactGenerator",
                None,
                "ArtifactGenerator",
                Some("source.extensions.fluxcd.io/v1beta1"),
            ),
            (
                "Flux's ExternalArtifact",
                Some("source.toolkit.fluxcd.io/v1"),
                "ExternalArtifact",
                Some("source.toolkit.fluxcd.io/v1"),
            ),
            ("a kind outside the list", None, "Secret", None),
            ("a core apiVersion", Some("v1"), "GitRepository", None),
            (
                "another group",
                Some("evil.example.com/v1"),
                "GitRepository",
                None,
            ),
            (
                "a path for a version",
                Some("source.toolkit.fluxcd.io/v1/namespaces/other/gitrepositories/x"),
                "GitRepository",
                None,
            ),
        ];
        for (name, api_version, kind, expected) in cases {
            let got = resolve(*api_version, kind).map(|r| r.api_version());
            assert_eq!(got.as_deref(), *expected, "{name}");
        }
    }

    #[test]
    fn refusals_name_the_kind_and_what_is_allowed() {
        assert!(refusal(None, "Secret")
            .starts_with("Secret is not a kind hookgate reconciles (one of GitRepository, "));
        assert_eq!(
            refusal(Some("evil.example.com/v1"), "GitRepository"),
            "GitRepository is not served as evil.example.com/v1 (hookgate reconciles it in group source.toolkit.fluxcd.io)"
        );
    }
}
