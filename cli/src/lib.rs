//! The workstation subcommands of `hookgate`: `token`, `url`, `check`, `send` and `import`.

pub mod cluster;
pub mod import;
pub mod objects;

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hookgate_controller::receivers::offline;
use hookgate_filter::config::{flux_webhook_path, Config, SecretSource};
use hookgate_filter::providers::{self, Outgoing, Provider};
use hookgate_protocol::enrollment::ControllerKey;
use serde_json::Value;

/// A strong random secret: `bytes` random bytes, hex encoded.
pub fn token(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("no randomness available: {e}"))?;
    Ok(hex::encode(buf))
}

/// The public half (hex) of the controller's channel key in `path` (`-`: standard input). A trailing
/// newline is forgiven here, as the controller does not: the message says so.
pub fn public_key(path: &Path) -> anyhow::Result<String> {
    let (text, source) = read_input(path)?;
    let key = ControllerKey::from_hex(text.trim_end().as_bytes())
        .map_err(|e| anyhow!("{source}: the controller's channel key {e}"))?;
    if text.trim_end().len() != text.len() {
        eprintln!(
            "{source}: ends with whitespace, which the controller refuses in its key file: write it with `printf %s`"
        );
    }
    Ok(key.public().hex())
}

/// Flux's webhook path for a receiver.
pub fn url(name: &str, namespace: &str, token: &str) -> String {
    flux_webhook_path(token, name, namespace)
}

/// The text of `path` and how messages name it; `-` reads standard input.
pub fn read_input(path: &Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok((text, "standard input".to_string()));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok((text, path.display().to_string()))
}

/// `text` as a filter configuration: JSON that is not a Kubernetes object (which has a `kind`).
fn as_configuration(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("kind").is_none().then_some(value)
}

/// The `spec.wasm[].config` of each EnvoyExtensionPolicy among `objects`, as `(where, config JSON)`.
fn policy_configurations(objects: &[Value], source: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for doc in objects {
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
                    format!("{source}: EnvoyExtensionPolicy {name} spec.wasm[{i}].config"),
                    config.clone(),
                ));
            }
        }
    }
    found
}

/// Each filter configuration found in `path`: a JSON configuration, or YAML holding EnvoyExtensionPolicies
/// whose `spec.wasm[].config` are configurations. Returns `(where, config JSON)` pairs.
pub fn configurations_in(path: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let (text, source) = read_input(path)?;
    if let Some(config) = as_configuration(&text) {
        return Ok(vec![(source, config)]);
    }
    let found = policy_configurations(&import::objects_in(&text, &source)?, &source);
    if found.is_empty() {
        bail!(
            "{source}: neither a filter configuration (JSON) nor YAML with an EnvoyExtensionPolicy"
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

/// What `check` is told besides its files.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The namespace of objects that name none (`kubectl apply -n`).
    pub namespace: String,
    /// The controller's flags a Receiver's compile depends on.
    pub controller: offline::Options,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            controller: offline::Options::default(),
        }
    }
}

/// What `check` found: its report, and how many Receivers the controller would not serve.
#[derive(Debug)]
pub struct CheckReport {
    pub text: String,
    pub invalid: usize,
}

/// Checks `files`: each filter configuration (JSON, or the `config` of an EnvoyExtensionPolicy) with the
/// filter's own parser, describing each receiver; and the hookgate Receivers of every file together, with
/// the Secrets among them, as the controller would compile them
/// ([`hookgate_controller::receivers::offline`]).
///
/// A configuration's secrets come from this process's environment; an unset variable is replaced by a
/// placeholder so the rest can still be checked, and the paths that depend on it are reported as unknown.
/// A Receiver's Secret not in the files is replaced by a placeholder the same way. A configuration the
/// filter refuses is an error; a Receiver the controller would not serve is reported and counted.
pub fn check(files: &[PathBuf], options: &CheckOptions) -> anyhow::Result<CheckReport> {
    let mut report = String::new();
    let mut receivers = objects::Objects::default();
    let mut configurations = 0;
    let mut flux = false;
    // A file of Flux Receivers: say which command reads them.
    let hint = |flux: bool| {
        if flux {
            " (Flux Receivers are not checked: `hookgate import --to objects` writes hookgate Receivers \
             from them)"
        } else {
            ""
        }
    };
    for file in files {
        let (text, source) = read_input(file)?;
        if let Some(config) = as_configuration(&text) {
            describe_configuration(&mut report, &source, &config)?;
            configurations += 1;
            continue;
        }
        let found = import::objects_in(&text, &source)?;
        let policies = policy_configurations(&found, &source);
        let taken = receivers.add(&found, &source, &options.namespace)?;
        let has_flux = found
            .iter()
            .any(|o| objects::is_kind(o, import::FLUX_GROUP, "Receiver"));
        flux |= has_flux;
        if policies.is_empty() && taken == 0 {
            bail!(
                "{source}: neither a filter configuration (JSON) nor YAML with an EnvoyExtensionPolicy, a \
                 hookgate Receiver ({}) or a Secret{}",
                objects::API_VERSION,
                hint(has_flux)
            );
        }
        for (location, config) in &policies {
            describe_configuration(&mut report, location, config)?;
            configurations += 1;
        }
    }
    if configurations == 0 && !receivers.has_receivers() {
        bail!(
            "nothing to check: the files hold no filter configuration, EnvoyExtensionPolicy or hookgate \
             Receiver{}",
            hint(flux)
        );
    }
    let mut invalid = 0;
    if receivers.has_receivers() {
        let checked = receivers.check(&options.controller);
        report.push_str(&checked.report);
        let _ = writeln!(
            report,
            "{} Receiver(s), {} the controller would not serve",
            checked.receivers, checked.invalid
        );
        invalid = checked.invalid;
    }
    Ok(CheckReport {
        text: report,
        invalid,
    })
}

/// Parses `config` with the filter's own parser and describes each receiver, under `location`.
fn describe_configuration(
    report: &mut String,
    location: &str,
    config: &Value,
) -> anyhow::Result<()> {
    // With receivers as objects the policy holds the bootstrap: how to reach the controller, and the
    // controller's public keys.
    if config.get("controller").is_some() {
        let bootstrap = hookgate_filter::channel::Bootstrap::read(config)
            .map_err(|e| anyhow!("{location}: {e}"))?;
        let _ = writeln!(
            report,
            "{location}: bootstrap: receivers from the controller through cluster {} (authority {}, {} \
             controller key(s))",
            bootstrap.cluster,
            bootstrap.authority,
            bootstrap.keys.len()
        );
        return Ok(());
    }
    let parsed = parse_lenient(location, config)?;
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
    Ok(())
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
    /// The public key printed is the one the key agrees on sessions with; the key is never printed.
    #[test]
    fn public_key_of_a_controller_key() {
        let dir = std::env::temp_dir().join(format!("hookgate-public-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = "4f1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
        let file = dir.join("key");
        std::fs::write(&file, secret).unwrap();
        let expected = hookgate_protocol::enrollment::ControllerKey::from_hex(secret.as_bytes())
            .unwrap()
            .public()
            .hex();
        assert_eq!(super::public_key(&file).unwrap(), expected);
        std::fs::write(&file, "not-a-key").unwrap();
        let error = super::public_key(&file).unwrap_err().to_string();
        assert!(error.contains("is not 64 hex characters"), "{error}");
        assert!(!error.contains("not-a-key"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;
    use hookgate_filter::config::flux_webhook_path;
    use hookgate_filter::providers::Proof;
    use hookgate_filter::{Filter, Headers, Outcome};
    use serde_json::json;

    fn check_file(path: &Path) -> anyhow::Result<String> {
        check(&[path.to_path_buf()], &CheckOptions::default()).map(|report| report.text)
    }

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
        let report = check_file(&json_path).unwrap();
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
        let report = check_file(&yaml_path).unwrap();
        assert!(
            report.contains("EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: 2 receiver(s)"),
            "{report}"
        );

        let broken = policy.replace(
            "\"targets\":[{\"kind\":\"Application\"",
            "\"targetz\":[{\"kind\":\"Application\"",
        );
        std::fs::write(&yaml_path, broken).unwrap();
        let error = check_file(&yaml_path).unwrap_err().to_string();
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
            match check_file(&path) {
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

    /// (case, files, the report's lines and how many Receivers are invalid, or the start of the error)
    type FilesCase = (
        &'static str,
        Vec<&'static str>,
        Result<(Vec<String>, usize), &'static str>,
    );

    /// `check FILE...`: what each file holds, and what the whole says.
    #[test]
    fn check_reads_receivers_secrets_and_policies_across_files() {
        let dir = std::env::temp_dir().join(format!("hookgate-check-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let receiver = "apiVersion: hookgate.io/v1alpha1\nkind: Receiver\nmetadata: {name: app, namespace: tenant}\n\
                        spec:\n  type: github\n  secretRef: {name: webhook-token}\n  targets: [{kind: GitRepository, name: app}]\n";
        let secret =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: webhook-token, namespace: tenant}\n\
                      stringData: {token: hunter2-files}\n";
        let policy = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
                      metadata: {name: hookgate, namespace: gw}\nspec:\n  wasm:\n  - name: hookgate\n    config: \
                      {attestationKeyEnv: HOOKGATE_CHECK_FILES_UNSET, receivers: [{name: r, namespace: ns, type: \
                      github, secrets: [{env: HOOKGATE_CHECK_FILES_UNSET}], targets: [{kind: GitRepository, name: x}]}]}\n";
        let bootstrap = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
                         metadata: {name: hookgate, namespace: gw}\nspec:\n  wasm:\n  - name: hookgate\n    \
                         config: {controller: {cluster: httproute/gw/hookgate-webhooks/rule/0}, controllerKeys: KEYS}\n";
        let flux = "apiVersion: notification.toolkit.fluxcd.io/v1\nkind: Receiver\nmetadata: {name: f, namespace: ns}\n\
                    spec: {type: github, secretRef: {name: t}, resources: [{kind: GitRepository, name: x}]}\n";
        let files = [
            ("receiver.yaml", receiver.to_string()),
            ("secret.yaml", secret.to_string()),
            ("policy.yaml", policy.to_string()),
            ("mixed.yaml", format!("{policy}---\n{receiver}")),
            (
                "bad.yaml",
                receiver.replace("name: app}]", "name: Web App}]"),
            ),
            ("flux.yaml", flux.to_string()),
            (
                "bootstrap.yaml",
                bootstrap.replace("KEYS", &format!("[\"{}\"]", "ab".repeat(32))),
            ),
            ("bootstrap-no-key.yaml", bootstrap.replace("KEYS", "[]")),
            ("flux-and-secret.yaml", format!("{flux}---\n{secret}")),
            (
                "configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".to_string(),
            ),
        ];
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let path = flux_webhook_path("hunter2-files", "app", "tenant");
        let cases: Vec<FilesCase> = vec![
            (
                "a Receiver and its Secret in two files",
                vec!["receiver.yaml", "secret.yaml"],
                Ok((vec![format!("receiver.yaml: Receiver tenant/app (github): OK\n  path: {path}\n"),
                         "1 Receiver(s), 0 the controller would not serve".into()], 0)),
            ),
            (
                "a Receiver alone",
                vec!["receiver.yaml"],
                Ok((vec!["path: /hook/<sha256 of Secret webhook-token key token".into()], 0)),
            ),
            (
                "a policy and a Receiver in one file",
                vec!["mixed.yaml"],
                Ok((vec!["mixed.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: 1 receiver(s)".into(),
                         "mixed.yaml: Receiver tenant/app (github): OK".into()], 0)),
            ),
            (
                "an invalid Receiver beside a policy",
                vec!["policy.yaml", "bad.yaml"],
                Ok((vec!["bad.yaml: Receiver tenant/app (github): InvalidSpec: spec.targets[0].name: ".into()], 1)),
            ),
            (
                "a bootstrap policy (receivers as objects) and the Receivers",
                vec!["bootstrap.yaml", "receiver.yaml"],
                Ok((
                    vec![
                        "bootstrap.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: bootstrap: \
                         receivers from the controller through cluster httproute/gw/hookgate-webhooks/rule/0 \
                         (authority hookgate-controller, 1 controller key(s))"
                            .into(),
                        "receiver.yaml: Receiver tenant/app (github): OK".into(),
                    ],
                    0,
                )),
            ),
            (
                "a bootstrap without a controller key, which the filter refuses",
                vec!["bootstrap-no-key.yaml"],
                Err("bootstrap-no-key.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: "),
            ),
            (
                "Flux Receivers alone",
                vec!["flux.yaml"],
                Err("flux.yaml: neither a filter configuration (JSON) nor YAML with an EnvoyExtensionPolicy, a hookgate \
                     Receiver (hookgate.io/v1alpha1) or a Secret (Flux Receivers are not checked: `hookgate \
                     import --to objects`"),
            ),
            (
                "Flux Receivers and a Secret",
                vec!["flux-and-secret.yaml"],
                Err("nothing to check: the files hold no filter configuration, EnvoyExtensionPolicy or \
                     hookgate Receiver (Flux Receivers are not checked"),
            ),
            (
                "nothing hookgate reads",
                vec!["receiver.yaml", "configmap.yaml"],
                Err("configmap.yaml: neither a filter configuration (JSON) nor YAML"),
            ),
        ];
        for (case, names, expected) in cases {
            let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
            let result = check(&paths, &CheckOptions::default());
            match (expected, result) {
                (Ok((lines, invalid)), Ok(report)) => {
                    let text = report.text.replace(&format!("{}/", dir.display()), "");
                    for line in lines {
                        assert!(text.contains(&line), "{case}: no {line:?} in\n{text}");
                    }
                    assert_eq!(report.invalid, invalid, "{case}:\n{text}");
                    assert!(
                        !text.contains("hunter2") && !text.contains(&"ab".repeat(32)),
                        "{case}: a secret is printed:\n{text}"
                    );
                }
                (Err(start), Err(error)) => {
                    let error = error
                        .to_string()
                        .replace(&format!("{}/", dir.display()), "");
                    assert!(error.starts_with(start), "{case}: {error}");
                }
                (_, result) => panic!("{case}: {result:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (token(32).unwrap(), token(32).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
