//! Kubernetes' syntax rules for the fields of a reconcile target that reach API paths and label selectors.
//! One implementation: the filter checks its configuration with it and the controller checks every request
//! with it before any API call, so a value one side accepts the other side accepts too.
//!
//! The rules are those of `k8s.io/apimachinery/pkg/util/validation` (`IsDNS1123Label`,
//! `IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`) and of Kubernetes API versions
//! (`v1`, `v1beta2`, `v2alpha1`). None of them admits `/`, `,`, `=`, `!`, whitespace or `%`, so a valid value
//! cannot change the shape of a request path or of a label selector.

/// Longest RFC 1123 label (namespace names, label name parts, label values).
const LABEL_MAX: usize = 63;
/// Longest RFC 1123 subdomain (object names, label key prefixes, API groups).
const SUBDOMAIN_MAX: usize = 253;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without the length bound.
fn is_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// RFC 1123 label: what Kubernetes requires of namespace names.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= LABEL_MAX && is_label_shape(s)
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names (Flux's and Argo CD's kinds included)
/// and of API groups. As in Kubernetes, only the whole is bounded (253), not each dot-separated part.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= SUBDOMAIN_MAX && s.split('.').all(is_label_shape)
}

/// A Kubernetes API version: `v` and a major version, optionally `alpha` or `beta` and a minor version
/// (`v1`, `v1beta2`, `v2alpha1`). Numbers have no leading zero; versions are DNS labels, so at most 63 bytes.
pub fn is_version(s: &str) -> bool {
    fn number(s: &str) -> bool {
        !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
    }
    let Some(rest) = s.strip_prefix('v').filter(|_| s.len() <= LABEL_MAX) else {
        return false;
    };
    let split = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, qualifier) = rest.split_at(split);
    number(major)
        && (qualifier.is_empty()
            || ["alpha", "beta"]
                .iter()
                .any(|stage| qualifier.strip_prefix(stage).is_some_and(number)))
}

/// An `apiVersion`: `version` (the core group) or `group/version`, the group a DNS subdomain.
pub fn is_api_version(s: &str) -> bool {
    match s.split_once('/') {
        None => is_version(s),
        Some((group, version)) => is_dns_subdomain(group) && is_version(version),
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` of at most 63 bytes: the name part of a label key, and a
/// non-empty label value.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= LABEL_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 bytes
/// (`app`, `app.kubernetes.io/name`).
pub fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        None => is_qualified_name_part(s),
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_name_part(name),
    }
}

/// A label value: empty, or a name of at most 63 bytes in the label key's alphabet.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (rule, value, accepted) — each value is a case the rule must decide as stated.
    fn cases() -> Vec<(&'static str, String, bool)> {
        let s = |v: &str| v.to_string();
        let repeat = |c: &str, n: usize| c.repeat(n);
        vec![
            // Namespaces: RFC 1123 labels.
            ("namespace", s("flux-system"), true),
            ("namespace", s("a"), true),
            ("namespace", s("0ns"), true),
            ("namespace", repeat("a", 63), true),
            ("namespace", repeat("a", 64), false),
            ("namespace", s(""), false),
            ("namespace", s("Flux"), false),
            ("namespace", s("-ns"), false),
            ("namespace", s("ns-"), false),
            ("namespace", s("a.b"), false),
            ("namespace", s("a_b"), false),
            ("namespace", s("other/gitrepositories"), false),
            ("namespace", s("ns%2F"), false),
            // Object names: RFC 1123 subdomains.
            ("name", s("webapp"), true),
            ("name", s("webapp.v2"), true),
            ("name", s("a-b.c-d"), true),
            ("name", format!("{}.b", repeat("a", 100)), true),
            ("name", repeat("a", 253), true),
            ("name", repeat("a", 254), false),
            ("name", s(""), false),
            ("name", s("*"), false),
            ("name", s("a..b"), false),
            ("name", s(".a"), false),
            ("name", s("a."), false),
            ("name", s("a.-b"), false),
            ("name", s("Webapp"), false),
            ("name", s("x/namespaces/other"), false),
            ("name", s("x?dryRun=All"), false),
            ("name", s("x y"), false),
            ("name", s("é"), false),
            // Versions.
            ("version", s("v1"), true),
            ("version", s("v2"), true),
            ("version", s("v1beta2"), true),
            ("version", s("v2alpha1"), true),
            ("version", s("v10beta11"), true),
            ("version", s(""), false),
            ("version", s("v"), false),
            ("version", s("1"), false),
            ("version", s("V1"), false),
            ("version", s("v0"), false),
            ("version", s("v01"), false),
            ("version", s("v1beta"), false),
            ("version", s("v1beta0"), false),
            ("version", s("v1gamma1"), false),
            ("version", s("v1-beta1"), false),
            ("version", s("v1/namespaces/other/gitrepositories/x"), false),
            ("version", format!("v{}", repeat("1", 63)), false),
            // apiVersions: version or group/version.
            ("apiVersion", s("source.toolkit.fluxcd.io/v1"), true),
            ("apiVersion", s("argoproj.io/v1alpha1"), true),
            ("apiVersion", s("v1"), true),
            (
                "apiVersion",
                s("source.toolkit.fluxcd.io/v1/namespaces/other/gitrepositories/x"),
                false,
            ),
            ("apiVersion", s("source.toolkit.fluxcd.io/"), false),
            ("apiVersion", s("/v1"), false),
            ("apiVersion", s("Source.io/v1"), false),
            ("apiVersion", s("source.toolkit.fluxcd.io/v1?x=y"), false),
            // Label keys.
            ("label key", s("app"), true),
            ("label key", s("App_Name.v-2"), true),
            ("label key", s("app.kubernetes.io/name"), true),
            (
                "label key",
                format!("{}/{}", repeat("a", 253), repeat("b", 63)),
                true,
            ),
            ("label key", repeat("a", 63), true),
            ("label key", repeat("a", 64), false),
            ("label key", s(""), false),
            ("label key", s("/app"), false),
            ("label key", s("example.com/"), false),
            ("label key", s("a/b/c"), false),
            ("label key", s("Example.com/app"), false),
            ("label key", s("_app"), false),
            ("label key", s("app-"), false),
            ("label key", s("app,env"), false),
            ("label key", s("app!"), false),
            ("label key", s("app=x"), false),
            ("label key", s("a b"), false),
            // Label values.
            ("label value", s(""), true),
            ("label value", s("a"), true),
            ("label value", s("Web_App.v-1"), true),
            ("label value", repeat("a", 63), true),
            ("label value", repeat("a", 64), false),
            ("label value", s("a,env!=prod"), false),
            ("label value", s("a,b"), false),
            ("label value", s("a=b"), false),
            ("label value", s("a b"), false),
            ("label value", s("-a"), false),
            ("label value", s("a."), false),
            ("label value", s("a/b"), false),
            ("label value", s("(a)"), false),
        ]
    }

    #[test]
    fn kubernetes_syntax_table() {
        let mut wrong = Vec::new();
        for (rule, value, accepted) in cases() {
            let got = match rule {
                "namespace" => is_dns_label(&value),
                "name" => is_dns_subdomain(&value),
                "version" => is_version(&value),
                "apiVersion" => is_api_version(&value),
                "label key" => is_label_key(&value),
                "label value" => is_label_value(&value),
                other => panic!("no rule {other}"),
            };
            if got != accepted {
                wrong.push(format!("{rule} {value:?}: expected {accepted}, got {got}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
