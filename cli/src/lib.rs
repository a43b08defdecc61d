//! The workstation subcommands of `hookgate`: `token`, `url`, `check` and `send`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use hookgate_filter::config::{flux_webhook_path, Config, SecretSource};
use hookgate_protocol::crypto::{hmac, Algorithm};
use serde_json::{json, Value};

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

/// How `send` signs a delivery, like the provider would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SendType {
    Github,
    Gitea,
    Gitlab,
    Bitbucket,
    Generic,
    GenericHmac,
    StandardWebhooks,
    Harbor,
    Nexus,
    Dockerhub,
    Quay,
    Acr,
    Cdevents,
    Bearer,
    Basic,
}

/// The built-in sample payload for a type.
pub fn sample_payload(kind: SendType) -> Value {
    let push = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": "3f786850e387550fdab836ed7e6dc881de23001b",
                      "repository": {"full_name": "example/webapp"}, "commits": []});
    match kind {
        SendType::Github | SendType::Gitea => push,
        SendType::Gitlab => {
            json!({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": "3f786850e387550fdab836ed7e6dc881de23001b"})
        }
        SendType::Bitbucket => {
            json!({"push": {"changes": [{"new": {"type": "branch", "name": "main"}}]}})
        }
        SendType::Harbor => {
            json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"tag": "1.0.0"}]}})
        }
        SendType::Dockerhub => {
            json!({"push_data": {"tag": "1.0.0"}, "repository": {"repo_url": "https://hub.docker.com/r/example/webapp"}})
        }
        SendType::Quay => {
            json!({"docker_url": "quay.io/example/webapp", "updated_tags": ["1.0.0"]})
        }
        SendType::Acr => {
            json!({"id": "sample", "action": "push", "target": {"repository": "webapp", "tag": "1.0.0"}})
        }
        SendType::Cdevents => {
            json!({"context": {"id": "sample", "type": "dev.cdevents.artifact.published.0.1.1"}, "subject": {"id": "webapp"}})
        }
        SendType::StandardWebhooks => json!({"type": "image.pushed", "data": {"tag": "1.0.0"}}),
        // The notification Argo CD sends for a degraded application (see the README).
        SendType::Bearer | SendType::Basic => {
            json!({"event_type": "argo-degraded", "client_payload": {
            "application": "guestbook",
            "failed_revision": "3f786850e387550fdab836ed7e6dc881de23001b",
            "healthy_revision": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}})
        }
        SendType::Generic | SendType::GenericHmac | SendType::Nexus => json!({"event": "sample"}),
    }
}

/// The headers a provider of `kind` would send with `body`.
pub fn sign(
    kind: SendType,
    secret: &str,
    event: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Vec<(String, String)>> {
    let hex_mac = |alg| hex::encode(hmac(alg, secret.as_bytes(), &[body]));
    let delivery = token(16)?;
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value));
    match kind {
        SendType::Github => {
            add("x-github-event", event.unwrap_or("push").into());
            add("x-github-delivery", delivery);
            add(
                "x-hub-signature-256",
                format!("sha256={}", hex_mac(Algorithm::Sha256)),
            );
        }
        SendType::Gitea => {
            add("x-gitea-event", event.unwrap_or("push").into());
            add("x-gitea-delivery", delivery);
            add("x-gitea-signature", hex_mac(Algorithm::Sha256));
        }
        SendType::Gitlab => {
            add("x-gitlab-event", event.unwrap_or("Push Hook").into());
            add("x-gitlab-event-uuid", delivery);
            add("x-gitlab-token", secret.into());
        }
        SendType::Bitbucket => {
            add("x-event-key", event.unwrap_or("repo:push").into());
            add("x-request-uuid", delivery);
            add(
                "x-hub-signature",
                format!("sha256={}", hex_mac(Algorithm::Sha256)),
            );
        }
        SendType::GenericHmac => add(
            "x-signature",
            format!("sha256={}", hex_mac(Algorithm::Sha256)),
        ),
        SendType::StandardWebhooks => {
            let engine = base64::engine::general_purpose::STANDARD;
            let key = engine
                .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                .context("a Standard Webhooks secret is whsec_<base64>")?;
            let id = format!("msg_{delivery}");
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)?
                .as_secs()
                .to_string();
            let mac = hmac(
                Algorithm::Sha256,
                &key,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            );
            add("webhook-id", id);
            add("webhook-timestamp", ts);
            add("webhook-signature", format!("v1,{}", engine.encode(mac)));
        }
        SendType::Harbor => add("authorization", secret.into()),
        SendType::Nexus => {
            add(
                "x-nexus-webhook-id",
                event.unwrap_or("rm:repository:component").into(),
            );
            add("x-nexus-webhook-signature", hex_mac(Algorithm::Sha1));
        }
        SendType::Cdevents => {
            add(
                "ce-type",
                event
                    .unwrap_or("dev.cdevents.artifact.published.0.1.1")
                    .into(),
            );
            add("ce-id", delivery);
            add("ce-specversion", "1.0".into());
            add("ce-source", "hookgate-send".into());
        }
        SendType::Bearer => add("authorization", format!("Bearer {secret}")),
        SendType::Basic => add(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(secret)
            ),
        ),
        SendType::Generic | SendType::Dockerhub | SendType::Quay | SendType::Acr => {}
    }
    Ok(headers)
}

/// The answer to a `send`.
pub struct Sent {
    pub status: u16,
    pub body: String,
}

/// Signs `body` as `kind` would and POSTs it to `url`, connecting to `resolve` instead of the address
/// the URL's host name resolves to, when given.
pub async fn send(
    url: &str,
    resolve: Option<std::net::IpAddr>,
    kind: SendType,
    secret: &str,
    event: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<Sent> {
    let headers = sign(kind, secret, event, &body)?;
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
    use hookgate_filter::{Filter, Headers, Outcome};

    /// `send` signs exactly as the filter verifies, for every type.
    #[test]
    fn signatures_verify_with_the_filter() {
        use clap::ValueEnum;
        for kind in SendType::value_variants() {
            // One secret every type accepts: a whsec_ key that is also user:password.
            let secret = if *kind == SendType::Basic {
                "argocd:whsec_C2FV"
            } else {
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
            };
            let name = kind.to_possible_value().unwrap().get_name().to_string();
            let config = format!(
                r#"{{"attestationKey":"0123456789abcdef0123","receivers":[{{"name":"r","namespace":"ns","type":"{name}",
                "secrets":[{{"inline":"{secret}"}}],"targets":[{{"kind":"GitRepository","name":"x"}}]}}]}}"#
            );
            let filter = Filter::new(Config::parse(config.as_bytes(), &|_| None).unwrap());
            let body = serde_json::to_vec(&sample_payload(*kind)).unwrap();
            let headers = Headers::new(sign(*kind, secret, None, &body).unwrap());
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let outcome = filter.handle("POST", &url("r", "ns", secret), &headers, &body, now);
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
        for (name, _) in hookgate_filter::providers::PROVIDERS {
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
