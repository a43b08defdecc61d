//! The workstation subcommands of `hookgate`: `token`, `url`, `check`, `send` and `import`.

pub mod import;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hookgate_filter::config::{flux_webhook_path, Config, SecretSource};
use hookgate_filter::providers::{self, Outgoing, Provider};
use serde_json::Value;

/// A strong random secret: `bytes` random bytes, hex encoded.
pub fn token(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("no randomness available: {e}"))?;
    Ok(hex::encode(buf))
}

/// Flux's webhook path for a receiver.
pub fn url(name: &str, namespace: &str, token: &str) -> String {
    flux_webhook_path(token, name, namespace)
}

/// Each filter configuration found in `path`: a JSON configuration, or YAML holding EnvoyExtensionPolicies
/// whose `spec.wasm[].config` are configurations. Returns `(where, config JSON)` pairs.
pub fn configurations_in(path: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return Ok(vec![(path.display().to_string(), value)]);
    }
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let doc: Value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("{}: document {index} is not valid YAML", path.display()))?;
        if doc.get("kind").and_then(Value::as_str) != Some("EnvoyExtensionPolicy") {
            continue;
        }
        let name = format!(
            "{}/{}",
            doc.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("-"),
            doc.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("-")
        );
        for (i, wasm) in doc
            .pointer("/spec/wasm")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(config) = wasm.get("config") {
                found.push((
                    format!(
                        "{}: EnvoyExtensionPolicy {name} spec.wasm[{i}].config",
                        path.display()
                    ),
                    config.clone(),
                ));
            }
        }
    }
    if found.is_empty() {
        bail!(
            "{}: neither a filter configuration (JSON) nor YAML with an EnvoyExtensionPolicy",
            path.display()
        );
    }
    Ok(found)
}

/// Parses `config` with the filter's parser, each unset variable standing for a placeholder its use accepts
/// (the provider's own, for a secret).
fn parse_lenient(location: &str, config: &Value) -> anyhow::Result<Config> {
    Config::parse_with_placeholders(&serde_json::to_vec(config)?, &|name| {
        std::env::var(name).ok()
    })
    .map_err(|e| anyhow!("{location}: {e}"))
}

/// A receiver's path at `index`, or why it cannot be known here (its secret's variable is unset).
fn describe_path(receiver: &hookgate_filter::config::Receiver, index: usize) -> String {
    match receiver.secret_sources.get(index) {
        Some(SecretSource::Env(var)) if !receiver.pinned_path && std::env::var(var).is_err() => {
            format!(
                "/hook/<sha256 of the token in ${var} + name + namespace> (set {var} to print it)"
            )
        }
        _ => receiver.paths[index].clone(),
    }
}

/// The paths of receiver `namespace/name` in the configuration(s) of `path`.
pub fn receiver_paths(path: &Path, namespace: &str, name: &str) -> anyhow::Result<Vec<String>> {
    for (location, config) in configurations_in(path)? {
        let parsed = parse_lenient(&location, &config)?;
        if let Some(receiver) = parsed
            .receivers
            .iter()
            .find(|r| r.name == name && r.namespace == namespace)
        {
            return Ok((0..receiver.paths.len())
                .map(|i| describe_path(receiver, i))
                .collect());
        }
    }
    bail!("{}: no receiver {namespace}/{name}", path.display())
}

/// Validates every configuration in `path` with the filter's own parser and describes each receiver.
/// Secrets come from this process's environment; an unset variable is replaced by a placeholder so the
/// rest can still be checked, and the paths that depend on it are reported as unknown.
pub fn check(path: &Path) -> anyhow::Result<String> {
    let mut report = String::new();
    for (location, config) in configurations_in(path)? {
        let parsed = parse_lenient(&location, &config)?;
        let _ = writeln!(
            report,
            "{location}: {} receiver(s), forward path {}",
            parsed.receivers.len(),
            parsed.forward_path
        );
        for receiver in &parsed.receivers {
            let _ = writeln!(
                report,
                "  {} ({}){}",
                receiver.label(),
                receiver.provider_name,
                if receiver.disabled { " [disabled]" } else { "" }
            );
            for i in 0..receiver.paths.len() {
                let _ = writeln!(report, "    path: {}", describe_path(receiver, i));
            }
        }
        for warning in &parsed.warnings {
            let _ = writeln!(report, "  warning: {warning}");
        }
    }
    Ok(report)
}

/// The headers a sender of `provider` would send with `body`, with a fresh delivery id and the current time.
pub fn sign(
    provider: &dyn Provider,
    secret: &str,
    event: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Vec<(String, String)>> {
    let delivery_id = token(16)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let outgoing = Outgoing {
        event,
        delivery_id: &delivery_id,
        now,
        body,
    };
    providers::sign(provider, secret, &outgoing).map_err(|e| anyhow!("the secret: {e}"))
}

/// The answer to a `send`.
pub struct Sent {
    pub status: u16,
    pub body: String,
}

/// Signs `body` as a sender of `provider` would and POSTs it to `url`, connecting to `resolve` instead of the address
/// the URL's host name resolves to, when given.
pub async fn send(
    url: &str,
    resolve: Option<std::net::IpAddr>,
    provider: &dyn Provider,
    secret: &str,
    event: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<Sent> {
    let headers = sign(provider, secret, event, &body)?;
    let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15));
    if let Some(ip) = resolve {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
        let host = parsed
            .host_str()
            .with_context(|| format!("URL {url} has no host name"))?;
        // The port of an override is ignored: the connection uses the URL's.
        client = client.resolve(host, std::net::SocketAddr::new(ip, 0));
    }
    let client = client.build().context("cannot build the HTTP client")?;
    let mut request = client.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(Sent { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_filter::providers::Proof;
    use hookgate_filter::{Filter, Headers, Outcome};
    use serde_json::json;

    /// `send` signs exactly as the filter verifies, for every type of the provider table.
    #[test]
    fn signatures_verify_with_the_filter() {
        for (name, provider) in providers::PROVIDERS {
            // An ID token is verified by Envoy's JWT filter, not here (`test_id_tokens.py`).
            if provider.proof() == Proof::VerifiedToken {
                continue;
            }
            let secret = provider.placeholder_secret("send");
            let config = json!({"attestationKey": "0123456789abcdef0123", "receivers": [{
                "name": "r", "namespace": "ns", "type": name, "secrets": [{"inline": secret}],
                "targets": [{"kind": "GitRepository", "name": "x"}]}]});
            let filter =
                Filter::new(Config::parse(config.to_string().as_bytes(), &|_| None).unwrap());
            let body = provider.sender().sample_payload.as_bytes();
            let headers = Headers::new(sign(*provider, &secret, None, body).unwrap());
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let outcome = filter.handle("POST", &url("r", "ns", &secret), &headers, body, now);
            assert!(
                matches!(outcome, Outcome::Forward(_)),
                "{name}: {outcome:?}"
            );
        }
    }

    #[test]
    fn check_reads_json_and_envoy_extension_policies() {
        let dir = std::env::temp_dir().join(format!("hookgate-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = r#"{"attestationKeyEnv":"HOOKGATE_CHECK_TEST_KEY_UNSET","receivers":[
            {"name":"webapp","namespace":"flux-system","type":"github","secrets":[{"env":"HOOKGATE_CHECK_TEST_UNSET"}],
             "targets":[{"kind":"GitRepository","name":"webapp"}]},
            {"name":"argo","namespace":"argocd","type":"bearer","path":"/hook/argo","secrets":[{"env":"HOOKGATE_CHECK_TEST_UNSET"}],
             "targets":[{"kind":"Application","name":"guestbook"}]}]}"#;
        let json_path = dir.join("config.json");
        std::fs::write(&json_path, config).unwrap();
        let report = check(&json_path).unwrap();
        assert!(report.contains("flux-system/webapp (github)"), "{report}");
        assert!(
            report.contains("set HOOKGATE_CHECK_TEST_UNSET to print it"),
            "{report}"
        );
        assert!(report.contains("path: /hook/argo"), "{report}");

        let policy = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata: {{name: hookgate, namespace: gw}}\nspec:\n  wasm:\n  - name: hookgate\n    config: {config}\n"
        );
        let yaml_path = dir.join("policy.yaml");
        std::fs::write(&yaml_path, &policy).unwrap();
        let report = check(&yaml_path).unwrap();
        assert!(
            report.contains("EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: 2 receiver(s)"),
            "{report}"
        );

        let broken = policy.replace(
            "\"targets\":[{\"kind\":\"Application\"",
            "\"targetz\":[{\"kind\":\"Application\"",
        );
        std::fs::write(&yaml_path, broken).unwrap();
        let error = check(&yaml_path).unwrap_err().to_string();
        assert!(error.contains("policy.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: receiver argocd/argo: field `receivers[1].targetz`"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// "Unset ones are reported, not required", whatever the type: a receiver of every type in the provider
    /// table, every secret unset, checks, and its paths are reported as depending on those variables.
    #[test]
    fn check_reports_unset_secrets_for_every_provider_type() {
        let dir = std::env::temp_dir().join(format!("hookgate-check-types-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (first, second) = (
            "HOOKGATE_CHECK_EVERY_TYPE_UNSET_A",
            "HOOKGATE_CHECK_EVERY_TYPE_UNSET_B",
        );
        let mut failures = Vec::new();
        for (name, provider) in hookgate_filter::providers::PROVIDERS {
            if provider.proof() == Proof::VerifiedToken {
                continue; // no secrets to report
            }
            let config = json!({
                "attestationKeyEnv": "HOOKGATE_CHECK_EVERY_TYPE_KEY_UNSET",
                "receivers": [{"name": "r", "namespace": "ns", "type": name,
                               "secrets": [{"env": first}, {"env": second}],
                               "targets": [{"kind": "GitRepository", "name": "x"}]}]});
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, config.to_string()).unwrap();
            match check(&path) {
                Ok(report) => {
                    for var in [first, second] {
                        if !report.contains(&format!("(set {var} to print it)")) {
                            failures.push(format!("{name}: {var} not reported: {report}"));
                        }
                    }
                }
                Err(e) => failures.push(format!("{name}: {e:#}")),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (token(32).unwrap(), token(32).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
