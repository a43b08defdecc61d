//! The workstation subcommands of `hookgate`: `token`, `public-key`, `url`, `check`, `send` and `import`.

pub mod cluster;
pub mod import;
pub mod objects;
pub mod register;
pub mod yaml;

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hookgate_controller::receivers::offline;
use hookgate_filter::config::flux_webhook_path;
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

/// `text` as a plugin configuration on its own: JSON that is not a Kubernetes object (which has a `kind`).
fn as_configuration(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("kind").is_none().then_some(value)
}

/// The `spec.wasm[].config` of each EnvoyExtensionPolicy among `objects`, as `(where, config JSON)`.
fn plugin_configurations(objects: &[Value], source: &str) -> Vec<(String, Value)> {
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

/// Checks `files`: each plugin configuration (the `config` of an EnvoyExtensionPolicy, or JSON on its own)
/// as the bootstrap the filter reads, and the hookgate Receivers of every file together, with the Secrets
/// among them, as the controller would compile them ([`hookgate_controller::receivers::offline`]).
///
/// A Receiver's Secret not in the files is replaced by a placeholder, and the paths that depend on it are
/// reported as unknown. A plugin configuration the filter refuses, or one holding receivers, is an error;
/// a Receiver the controller would not serve is reported and counted.
pub fn check(files: &[PathBuf], options: &CheckOptions) -> anyhow::Result<CheckReport> {
    let mut report = String::new();
    let mut receivers = objects::Objects::default();
    let mut bootstraps = 0;
    let mut flux = false;
    // A file of Flux Receivers: say which command reads them.
    let hint = |flux: bool| {
        if flux {
            " (Flux Receivers are not checked: `hookgate import` writes hookgate Receivers from them)"
        } else {
            ""
        }
    };
    for file in files {
        let (text, source) = read_input(file)?;
        if let Some(config) = as_configuration(&text) {
            describe_bootstrap(&mut report, &source, &config)?;
            bootstraps += 1;
            continue;
        }
        let found = import::objects_in(&text, &source)?;
        let policies = plugin_configurations(&found, &source);
        let taken = receivers.add(&found, &source, &options.namespace)?;
        let has_flux = found
            .iter()
            .any(|o| objects::is_kind(o, import::FLUX_GROUP, "Receiver"));
        flux |= has_flux;
        if policies.is_empty() && taken == 0 {
            bail!(
                "{source}: neither YAML with a hookgate Receiver ({}), a Secret or an EnvoyExtensionPolicy, \
                 nor a plugin configuration (JSON){}",
                objects::API_VERSION,
                hint(has_flux)
            );
        }
        for (location, config) in &policies {
            describe_bootstrap(&mut report, location, config)?;
            bootstraps += 1;
        }
    }
    if bootstraps == 0 && !receivers.has_receivers() {
        bail!(
            "nothing to check: the files hold no hookgate Receiver or EnvoyExtensionPolicy{}",
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

/// Reads `config` as the filter reads its plugin configuration, the bootstrap (how to reach the controller,
/// and the controller's public keys), and describes it under `location` without its keys. A configuration
/// holding receivers is refused, saying where receivers went.
fn describe_bootstrap(report: &mut String, location: &str, config: &Value) -> anyhow::Result<()> {
    if config.get("receivers").is_some() {
        // The filter's own reason, and what writes Receivers from the Flux Receivers of before.
        bail!(
            "{location}: {}; `hookgate import` writes Receivers from Flux Receivers",
            hookgate_filter::channel::RECEIVERS_ARE_OBJECTS
        );
    }
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
    use hookgate_filter::config::{flux_webhook_path, Config};
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
            let filter = Filter::new(Config::parse(config.to_string().as_bytes()).unwrap());
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

    /// A Receiver's Secret not in the files is replaced by a placeholder, whatever the type: a Receiver of
    /// every type in the provider table, its Secret absent, is served, and its paths are reported as
    /// depending on that Secret's keys.
    #[test]
    fn check_compiles_every_provider_type_without_its_secret() {
        let dir = std::env::temp_dir().join(format!("hookgate-check-types-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut failures = Vec::new();
        for (name, provider) in hookgate_filter::providers::PROVIDERS {
            if provider.proof() == Proof::VerifiedToken {
                continue; // no secret to stand in for
            }
            let receiver = format!(
                "apiVersion: hookgate.io/v1alpha1\nkind: Receiver\nmetadata: {{name: r, namespace: ns}}\n\
                 spec:\n  type: {name}\n  secretRef: {{name: s, keys: [a, b]}}\n  \
                 targets: [{{kind: GitRepository, name: x}}]\n"
            );
            let path = dir.join(format!("{name}.yaml"));
            std::fs::write(&path, receiver).unwrap();
            match check_file(&path) {
                Ok(report) => {
                    for key in ["a", "b"] {
                        if !report.contains(&format!("/hook/<sha256 of Secret s key {key} + name"))
                        {
                            failures.push(format!("{name}: key {key} not reported: {report}"));
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

    /// The files [`check_reads_receivers_secrets_and_policies_across_files`] checks: (name, text).
    fn check_files() -> Vec<(&'static str, String)> {
        let receiver = "apiVersion: hookgate.io/v1alpha1\nkind: Receiver\nmetadata: {name: app, namespace: tenant}\n\
                        spec:\n  type: github\n  secretRef: {name: webhook-token}\n  targets: [{kind: GitRepository, name: app}]\n";
        let secret =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: webhook-token, namespace: tenant}\n\
                      stringData: {token: hunter2-files}\n";
        let legacy = "{attestationKeyEnv: HOOKGATE_ATTESTATION_KEY, receivers: [{name: r, namespace: ns, type: \
                      github, secrets: [{env: GITHUB_SECRET}], targets: [{kind: GitRepository, name: x}]}]}";
        let policy = |config: &str| {
            format!(
                "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata: {{name: \
                 hookgate, namespace: gw}}\nspec:\n  wasm:\n  - name: hookgate\n    config: {config}\n"
            )
        };
        let bootstrap = |keys: &str| {
            format!("{{controller: {{cluster: httproute/gw/hookgate-webhooks/rule/0}}, controllerKeys: {keys}}}")
        };
        let key = format!("[\"{}\"]", "ab".repeat(32));
        let oidc = |rule: &str| {
            format!(
                "apiVersion: hookgate.io/v1alpha1\nkind: Receiver\nmetadata: {{name: ci, namespace: tenant}}\n\
                 spec:\n  type: generic-oidc\n  idToken: {{jwtProvider: github-actions, issuers: \
                 [\"https://token.actions.githubusercontent.com\"], {rule}}}\n  \
                 targets: [{{kind: GitRepository, name: app}}]\n"
            )
        };
        let flux = "apiVersion: notification.toolkit.fluxcd.io/v1\nkind: Receiver\nmetadata: {name: f, namespace: ns}\n\
                    spec: {type: github, secretRef: {name: t}, resources: [{kind: GitRepository, name: x}]}\n";
        vec![
            ("receiver.yaml", receiver.to_string()),
            ("secret.yaml", secret.to_string()),
            ("bootstrap.yaml", policy(&bootstrap(&key))),
            ("bootstrap-no-key.yaml", policy(&bootstrap("[]"))),
            (
                "bootstrap.json",
                serde_json::to_string(&serde_yaml::from_str::<Value>(&bootstrap(&key)).unwrap())
                    .unwrap(),
            ),
            (
                "mixed.yaml",
                format!("{}---\n{receiver}", policy(&bootstrap(&key))),
            ),
            (
                "bad.yaml",
                receiver.replace("name: app}]", "name: Web App}]"),
            ),
            (
                "legacy.json",
                serde_json::to_string(&serde_yaml::from_str::<Value>(legacy).unwrap()).unwrap(),
            ),
            ("legacy-policy.yaml", policy(legacy)),
            ("flux.yaml", flux.to_string()),
            ("oidc-any.yaml", oidc("acceptAnyTokenFromIssuer: true")),
            (
                "oidc-unbound.yaml",
                oidc("validations: [\"claims.ref == 'refs/heads/main'\"]"),
            ),
            ("flux-and-secret.yaml", format!("{flux}---\n{secret}")),
            (
                "configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".to_string(),
            ),
        ]
    }

    /// The cases of [`check_reads_receivers_secrets_and_policies_across_files`].
    fn check_cases() -> Vec<FilesCase> {
        let path = flux_webhook_path("hunter2-files", "app", "tenant");
        let described = "bootstrap: receivers from the controller through cluster \
                         httproute/gw/hookgate-webhooks/rule/0 (authority hookgate-controller, 1 controller key(s))";
        vec![
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
                "a bootstrap policy (receivers as objects) and the Receivers",
                vec!["bootstrap.yaml", "receiver.yaml"],
                Ok((
                    vec![
                        format!("bootstrap.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: {described}"),
                        "receiver.yaml: Receiver tenant/app (github): OK".into(),
                    ],
                    0,
                )),
            ),
            (
                "a bootstrap policy and a Receiver in one file",
                vec!["mixed.yaml"],
                Ok((vec![format!("mixed.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: {described}"),
                         "mixed.yaml: Receiver tenant/app (github): OK".into()], 0)),
            ),
            (
                "a bootstrap on its own (JSON)",
                vec!["bootstrap.json"],
                Ok((vec![format!("bootstrap.json: {described}\n")], 0)),
            ),
            (
                "an invalid Receiver beside a bootstrap policy",
                vec!["bootstrap.yaml", "bad.yaml"],
                Ok((vec!["bad.yaml: Receiver tenant/app (github): InvalidSpec: spec.targets[0].name: ".into()], 1)),
            ),
            (
                "a bootstrap without a controller key, which the filter refuses",
                vec!["bootstrap-no-key.yaml"],
                Err("bootstrap-no-key.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: "),
            ),
            (
                "a filter configuration (JSON) with receivers: refused, saying where receivers went",
                vec!["legacy.json"],
                Err("legacy.json: receivers are not read from the plugin configuration: they \
                     are `Receiver` objects (hookgate.io/v1alpha1) with their Secrets, which the controller \
                     serves to the filter; the plugin configuration is the bootstrap (`controller`, \
                     `controllerKeys`), see docs/live-configuration.md; `hookgate import` writes Receivers \
                     from Flux Receivers"),
            ),
            (
                "an EnvoyExtensionPolicy with receivers, beside Receivers: refused",
                vec!["receiver.yaml", "legacy-policy.yaml"],
                Err("legacy-policy.yaml: EnvoyExtensionPolicy gw/hookgate spec.wasm[0].config: \
                     receivers are not read from the plugin configuration: they are `Receiver` objects"),
            ),
            (
                "Flux Receivers alone",
                vec!["flux.yaml"],
                Err("flux.yaml: neither YAML with a hookgate Receiver (hookgate.io/v1alpha1), a Secret or an \
                     EnvoyExtensionPolicy, nor a plugin configuration (JSON) (Flux Receivers are not checked: \
                     `hookgate import` writes hookgate Receivers from them)"),
            ),
            (
                "Flux Receivers and a Secret",
                vec!["flux-and-secret.yaml"],
                Err("nothing to check: the files hold no hookgate Receiver or EnvoyExtensionPolicy (Flux \
                     Receivers are not checked"),
            ),
            (
                "a generic-oidc Receiver accepting any token of a shared issuer: served, with a warning",
                vec!["oidc-any.yaml"],
                Ok((vec!["oidc-any.yaml: Receiver tenant/ci (generic-oidc): OK\n".into(),
                         "  warning: idToken.acceptAnyTokenFromIssuer: any token its issuers sign for its audience \
                          is accepted, whoever it was issued to\n".into()], 0)),
            ),
            (
                "a generic-oidc Receiver on a shared issuer, bound to no repository: refused",
                vec!["oidc-unbound.yaml"],
                Ok((vec!["oidc-unbound.yaml: Receiver tenant/ci (generic-oidc): InvalidSpec: spec.idToken.validations: \
                          issuer https://token.actions.githubusercontent.com signs tokens for GitHub Actions".into()], 1)),
            ),
            (
                "nothing hookgate reads",
                vec!["receiver.yaml", "configmap.yaml"],
                Err("configmap.yaml: neither YAML with a hookgate Receiver"),
            ),
        ]
    }

    /// `check FILE...`: what each file holds, and what the whole says.
    #[test]
    fn check_reads_receivers_secrets_and_policies_across_files() {
        let dir = std::env::temp_dir().join(format!("hookgate-check-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in check_files() {
            std::fs::write(dir.join(name), text).unwrap();
        }
        for (case, names, expected) in check_cases() {
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
