//! `hookgate import`: Flux `Receiver`s and their `Secret`s in, the hookgate configuration and the Kustomize
//! components that install it out, so that every webhook URL already registered with a provider keeps
//! working. Secrets are referenced by name and key only; their values are read to check the configuration
//! and compute the paths, and never written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use hookgate_filter::config::Config;
use hookgate_filter::providers::{self, Proof, Provider};
use serde_json::{json, Map, Value};

/// The variable the base manifests give the attestation key.
const ATTESTATION_KEY_ENV: &str = "HOOKGATE_ATTESTATION_KEY";
/// The key of a Flux Receiver's Secret that holds the token.
const TOKEN_KEY: &str = "token";
/// The Receiver types whose `spec.events` Flux checks (REFERENCE.md §2); it ignores them for the others.
const FLUX_CHECKS_EVENTS: &[&str] = &["github", "gitlab", "bitbucket", "cdevents"];
/// The objects the base manifests name, which the generated patches target.
const EXTENSION_POLICY: &str = "hookgate";
const ENVOY_PROXY: &str = "hookgate-proxy";
/// Where the generated files go, under the output directory.
pub const CONFIG_FILE: &str = "hookgate-config.json";
pub const APP_COMPONENT: &str = "app/kustomization.yaml";
pub const PROXY_COMPONENT: &str = "proxy/kustomization.yaml";

/// One imported receiver: its label and the webhook path Flux gave it.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportedReceiver {
    pub label: String,
    pub provider: String,
    pub path: String,
}

/// What an import produces.
#[derive(Debug)]
pub struct Imported {
    /// The filter configuration.
    pub config: Value,
    /// The Kustomize component for the route side (the EnvoyExtensionPolicy).
    pub app_component: String,
    /// The Kustomize component for the proxy side (the EnvoyProxy's environment).
    pub proxy_component: String,
    pub receivers: Vec<ImportedReceiver>,
    /// Receivers not imported: `(namespace/name, why)`.
    pub skipped: Vec<(String, String)>,
    /// What changed in carrying a receiver over (dropped fields Flux ignored too, ...).
    pub notes: Vec<String>,
    /// The Flux Secrets the Envoy pods read: they must exist, under these names, in the Gateway's namespace.
    pub secrets: Vec<String>,
}

/// Every Kubernetes object in `text` (multi-document YAML), `kind: List` items flattened.
pub fn objects_in(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("{source}: document {index} is not valid YAML"))?;
        flatten(value, &mut objects);
    }
    Ok(objects)
}

fn flatten(value: Value, into: &mut Vec<Value>) {
    if value.get("kind").and_then(Value::as_str) == Some("List") {
        if let Some(Value::Array(items)) = value.get("items").cloned() {
            for item in items {
                flatten(item, into);
            }
        }
    } else if value.is_object() {
        into.push(value);
    }
}

fn text_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn is_kind(object: &Value, group: &str, kind: &str) -> bool {
    let api_version = text_at(object, "/apiVersion").unwrap_or_default();
    let object_group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    object_group == group && text_at(object, "/kind") == Some(kind)
}

/// The token of a Secret: `stringData.token` (which the API server merges over `data`), else the base64
/// `data.token`.
fn secret_token(secret: &Value, label: &str) -> anyhow::Result<String> {
    if let Some(token) = secret.pointer(&format!("/stringData/{TOKEN_KEY}")) {
        return token
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("Secret {label}: stringData.{TOKEN_KEY} is not a string"));
    }
    let encoded = text_at(secret, &format!("/data/{TOKEN_KEY}")).ok_or_else(|| {
        anyhow!("Secret {label} has no key `{TOKEN_KEY}` (Flux reads the token there)")
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| anyhow!("Secret {label}: data.{TOKEN_KEY} is not base64"))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("Secret {label}: data.{TOKEN_KEY} is not UTF-8 text"))
}

/// The environment variable that carries the token of Secret `name` into the Envoy pods.
fn variable_for(secret_name: &str) -> String {
    let stem: String = secret_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if stem.ends_with("_TOKEN") {
        format!("FLUX_{stem}")
    } else {
        format!("FLUX_{stem}_TOKEN")
    }
}

/// A Secret the Envoy pods read, by its name in the Gateway's namespace.
struct GatewaySecret {
    /// `namespace/name` of the Flux Secret it came from.
    origin: String,
    token: String,
    variable: String,
}

/// The hookgate provider that carries a receiver of `flux_type` with `spec`, or why none can.
fn carrier(spec: &Value, flux_type: &str) -> Result<&'static dyn Provider, String> {
    let Some(provider) = providers::lookup(flux_type) else {
        let known: Vec<&str> = providers::names().collect();
        return Err(format!(
            "hookgate has no receiver type `{flux_type}` (it has {})",
            known.join(", ")
        ));
    };
    if provider.proof() == Proof::VerifiedToken {
        return Err(format!(
            "type `{flux_type}` proves with an ID token that an Envoy Gateway SecurityPolicy jwt provider \
             verifies, which a Flux Receiver does not name: add it by hand (README, Senders with ID tokens)"
        ));
    }
    // Carried over, each must compile as hookgate's controller will run it: one that does not (a function
    // or macro hookgate lacks, `claims`) would leave its targets unfiltered or refuse the configuration.
    let resources = spec.get("resources").and_then(Value::as_array);
    let filters = std::iter::once((
        "spec.resourceFilter".to_string(),
        spec.get("resourceFilter"),
    ))
    .chain(
        resources
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, r)| (format!("spec.resources[{index}].filter"), r.get("filter"))),
    );
    for (field, filter) in filters {
        if let Some(source) = filter.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            hookgate_filter::cel::target_filter_reads(source)
                .map_err(|e| format!("{field} is a CEL expression hookgate cannot run: {e}"))?;
        }
    }
    Ok(provider)
}

/// A Flux `spec.resources[]` entry as a hookgate target of a receiver in `namespace`.
fn target_from(
    resource: &Value,
    namespace: &str,
    label: &str,
    index: usize,
    notes: &mut Vec<String>,
) -> Value {
    let mut target = Map::new();
    for field in ["apiVersion", "kind", "name", "namespace", "filter"] {
        if let Some(value) = resource.get(field).filter(|v| !v.is_null() && *v != "") {
            target.insert(field.into(), value.clone());
        }
    }
    let labels = resource
        .get("matchLabels")
        .and_then(Value::as_object)
        .filter(|labels| !labels.is_empty());
    if let Some(labels) = labels {
        if resource.get("name").and_then(Value::as_str) == Some("*") {
            target.insert("matchLabels".into(), Value::Object(labels.clone()));
        } else {
            // Flux looks a named target up by its name alone.
            notes.push(format!(
                "{label}: spec.resources[{index}].matchLabels dropped: Flux ignores them unless the name is `*`"
            ));
        }
    }
    if let Some(other) =
        text_at(resource, "/namespace").filter(|n| !n.is_empty() && *n != namespace)
    {
        // Flux allows these unless run with --no-cross-namespace-refs; hookgate's controller refuses them
        // unless told otherwise, which stays the cluster admin's choice.
        notes.push(format!(
            "{label}: spec.resources[{index}] is in namespace {other}: run the controller with \
             --allow-cross-namespace and bind its ClusterRole in {other}, or it answers 403"
        ));
    }
    Value::Object(target)
}

/// Imports the Flux Receivers among `objects`, reading their tokens from the Secrets among them.
pub fn import(objects: &[Value]) -> anyhow::Result<Imported> {
    let secrets: BTreeMap<(String, String), &Value> = objects
        .iter()
        .filter(|o| is_kind(o, "", "Secret"))
        .filter_map(|o| {
            Some((
                (
                    text_at(o, "/metadata/namespace")?.to_string(),
                    text_at(o, "/metadata/name")?.to_string(),
                ),
                o,
            ))
        })
        .collect();
    let mut gateway_secrets: BTreeMap<String, GatewaySecret> = BTreeMap::new();
    let mut receivers = Vec::new();
    let mut imported = Vec::new();
    let mut skipped = Vec::new();
    let mut notes = Vec::new();

    for receiver in objects
        .iter()
        .filter(|o| is_kind(o, "notification.toolkit.fluxcd.io", "Receiver"))
    {
        let name = text_at(receiver, "/metadata/name")
            .ok_or_else(|| anyhow!("a Receiver has no metadata.name"))?;
        let namespace = text_at(receiver, "/metadata/namespace").ok_or_else(|| {
            anyhow!("Receiver {name} has no metadata.namespace: its webhook path depends on it")
        })?;
        let label = format!("{namespace}/{name}");
        let spec = receiver.get("spec").cloned().unwrap_or(Value::Null);
        let flux_type =
            text_at(&spec, "/type").ok_or_else(|| anyhow!("Receiver {label} has no spec.type"))?;
        let provider = match carrier(&spec, flux_type) {
            Ok(provider) => provider,
            Err(why) => {
                skipped.push((label, why));
                continue;
            }
        };

        let secret_name = text_at(&spec, "/secretRef/name")
            .ok_or_else(|| anyhow!("Receiver {label} has no spec.secretRef.name"))?;
        let secret_label = format!("{namespace}/{secret_name}");
        let secret = secrets
            .get(&(namespace.to_string(), secret_name.to_string()))
            .ok_or_else(|| {
                anyhow!(
                    "Receiver {label}: its Secret {secret_label} is not in the input (add it: `kubectl -n \
                     {namespace} get secret {secret_name} -o yaml`); its token gives the webhook path"
                )
            })?;
        let token = secret_token(secret, &secret_label)?;
        // The Envoy pods read every Secret from the Gateway's namespace, where one name is one Secret.
        let variable = match gateway_secrets.get(secret_name) {
            Some(known) if known.token != token => bail!(
                "Secrets {} and {secret_label} hold different tokens but would both be Secret \
                 {secret_name} in the Gateway's namespace: rename one (and its Receiver's secretRef)",
                known.origin
            ),
            Some(known) => known.variable.clone(),
            None => {
                let variable = variable_for(secret_name);
                if let Some((other, _)) = gateway_secrets.iter().find(|(_, s)| s.variable == variable) {
                    bail!("Secrets {other} and {secret_name} would share the variable {variable}: rename one");
                }
                gateway_secrets.insert(
                    secret_name.to_string(),
                    GatewaySecret {
                        origin: secret_label.clone(),
                        token: token.clone(),
                        variable: variable.clone(),
                    },
                );
                variable
            }
        };

        let mut carried = Map::new();
        carried.insert("name".into(), json!(name));
        carried.insert("namespace".into(), json!(namespace));
        carried.insert("type".into(), json!(flux_type));
        let events = spec
            .get("events")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty());
        if let Some(events) = events {
            if !FLUX_CHECKS_EVENTS.contains(&flux_type) {
                // Carried over, they would filter deliveries that Flux accepts.
                notes.push(format!(
                    "{label}: spec.events dropped: Flux does not check events for type `{flux_type}`"
                ));
            } else if !provider.supports_events() {
                notes.push(format!(
                    "{label}: spec.events dropped: hookgate does not filter events of type `{flux_type}`, \
                     so every event is accepted"
                ));
            } else {
                carried.insert("events".into(), Value::Array(events.clone()));
            }
        }
        carried.insert("secrets".into(), json!([{ "env": variable }]));
        if spec.get("suspend").and_then(Value::as_bool) == Some(true) {
            // Flux answers a suspended receiver with 503; hookgate's disabled receiver answers 403.
            carried.insert("disabled".into(), json!(true));
            notes.push(format!("{label}: suspended, imported as disabled"));
        }
        let targets: Vec<Value> = spec
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, resource)| target_from(resource, namespace, &label, index, &mut notes))
            .collect();
        carried.insert("targets".into(), Value::Array(targets));
        if let Some(filter) = spec
            .get("resourceFilter")
            .filter(|f| !f.is_null() && *f != "")
        {
            carried.insert("resourceFilter".into(), filter.clone());
        }
        receivers.push(Value::Object(carried));
        imported.push(ImportedReceiver {
            label,
            provider: flux_type.to_string(),
            path: crate::url(name, namespace, &token),
        });
    }

    let config = json!({ "attestationKeyEnv": ATTESTATION_KEY_ENV, "receivers": receivers });
    // With no receiver there is nothing to check: the filter refuses an empty list, and `run` writes nothing.
    if !imported.is_empty() {
        validate(&config, &gateway_secrets, &imported)?;
    }
    let variables: Vec<&GatewaySecret> = gateway_secrets.values().collect();
    let app_component = component(
        "EnvoyExtensionPolicy",
        EXTENSION_POLICY,
        variables
            .iter()
            .map(|s| json!({"op": "add", "path": "/spec/wasm/0/env/hostKeys/-", "value": s.variable}))
            .chain([json!({"op": "replace", "path": "/spec/wasm/0/config", "value": config})])
            .collect(),
        "The route side: the filter configuration and the variables it may read (hostKeys).",
    )?;
    let proxy_component = component(
        "EnvoyProxy",
        ENVOY_PROXY,
        gateway_secrets
            .iter()
            .map(|(secret, s)| {
                json!({"op": "add", "path": "/spec/provider/kubernetes/envoyDeployment/container/env/-",
                       "value": {"name": s.variable,
                                 "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_KEY}}}})
            })
            .collect(),
        "The proxy side: each Flux Receiver's Secret, by name and key, in the Envoy pods' environment. The \
         pods read Secrets in the Gateway's namespace: the Secrets must exist there under these names.",
    )?;
    Ok(Imported {
        config,
        app_component,
        proxy_component,
        receivers: imported,
        skipped,
        notes,
        secrets: gateway_secrets.into_keys().collect(),
    })
}

/// Checks `config` with the filter's own parser, the tokens standing in the variables, and that it gives
/// each receiver the path Flux gave it.
fn validate(
    config: &Value,
    secrets: &BTreeMap<String, GatewaySecret>,
    imported: &[ImportedReceiver],
) -> anyhow::Result<()> {
    let tokens: BTreeMap<&str, &str> = secrets
        .values()
        .map(|s| (s.variable.as_str(), s.token.as_str()))
        .collect();
    // The attestation key is not the import's: any valid key checks the rest.
    let attestation_placeholder = "hookgate-import-check-attestation-key";
    let parsed = Config::parse(config.to_string().as_bytes(), &|variable| {
        if variable == ATTESTATION_KEY_ENV {
            Some(attestation_placeholder.to_string())
        } else {
            tokens.get(variable).map(|t| t.to_string())
        }
    })
    .map_err(|e| anyhow!("the imported configuration is refused by the filter: {e}"))?;
    for (receiver, expected) in parsed.receivers.iter().zip(imported) {
        if receiver.paths.first() != Some(&expected.path) {
            bail!(
                "receiver {}: the filter would answer on {:?}, not Flux's path {}",
                expected.label,
                receiver.paths,
                expected.path
            );
        }
    }
    Ok(())
}

/// A Kustomize `Component` applying the JSON6902 `operations` to the base's `kind`/`name`.
fn component(kind: &str, name: &str, operations: Vec<Value>, why: &str) -> anyhow::Result<String> {
    let patch = serde_yaml::to_string(&operations)?;
    let component = json!({
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "patches": [{"target": {"kind": kind, "name": name}, "patch": patch}],
    });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Generated by `hookgate import` from Flux Receivers."
    );
    for line in wrap(why, 100) {
        let _ = writeln!(text, "# {line}");
    }
    text.push_str(&serde_yaml::to_string(&component)?);
    Ok(text)
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// What `import` tells the user: the receivers imported with their paths, the ones skipped with why, and
/// what to do with the output.
pub fn summary(imported: &Imported, out: &Path) -> String {
    let mut text = String::new();
    for receiver in &imported.receivers {
        let _ = writeln!(
            text,
            "imported {} ({}): {}",
            receiver.label, receiver.provider, receiver.path
        );
    }
    for (label, why) in &imported.skipped {
        let _ = writeln!(text, "skipped {label}: {why}");
    }
    for note in &imported.notes {
        let _ = writeln!(text, "note: {note}");
    }
    if !imported.receivers.is_empty() {
        let _ = writeln!(
            text,
            "wrote {config}, {app} and {proxy}: list {app_dir} in the `components` of the overlay's route side \
             and {proxy_dir} in those of its proxy side (as paths relative to each kustomization). The Envoy \
             pods read Secret(s) {secrets} (key `{TOKEN_KEY}`) in the Gateway's namespace: copy them there if \
             Flux's are elsewhere.",
            config = out.join(CONFIG_FILE).display(),
            app = out.join(APP_COMPONENT).display(),
            proxy = out.join(PROXY_COMPONENT).display(),
            app_dir = out.join("app").display(),
            proxy_dir = out.join("proxy").display(),
            secrets = imported.secrets.join(", "),
        );
    }
    text
}

/// Reads `inputs` (files, `-` for standard input), imports, writes the output under `out` and returns the
/// summary. Nothing is written when no receiver can be imported.
pub fn run(inputs: &[PathBuf], out: &Path) -> anyhow::Result<String> {
    let mut objects = Vec::new();
    for input in inputs {
        let (text, source) = if input.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            (text, "standard input".to_string())
        } else {
            let text = std::fs::read_to_string(input)
                .with_context(|| format!("{}: cannot read", input.display()))?;
            (text, input.display().to_string())
        };
        objects.extend(objects_in(&text, &source)?);
    }
    let imported = import(&objects)?;
    if imported.receivers.is_empty() {
        bail!(
            "no Receiver could be imported; nothing written\n{}",
            summary(&imported, out)
        );
    }
    for (file, content) in [
        (
            CONFIG_FILE,
            serde_json::to_string_pretty(&imported.config)? + "\n",
        ),
        (APP_COMPONENT, imported.app_component.clone()),
        (PROXY_COMPONENT, imported.proxy_component.clone()),
    ] {
        let path = out.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(summary(&imported, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flux's own example (REFERENCE.md §2): token `test-token`, receiver `webapp` in `flux-system`.
    const TOKEN: &str = "test-token";
    const FLUX_PATH: &str =
        "/hook/2846ca2372e0a9b4e884dc382f132cbeb1c7d192b42af377c903dfe16aad867a";

    fn receiver_yaml(name: &str, namespace: &str, flux_type: &str, extra_spec: &str) -> String {
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1\nkind: Receiver\nmetadata:\n  name: {name}\n  \
             namespace: {namespace}\nspec:\n  type: {flux_type}\n  secretRef:\n    name: webhook-token\n  \
             resources:\n    - kind: GitRepository\n      name: webapp\n{extra_spec}"
        )
    }

    fn secret_yaml(namespace: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: webhook-token\n  namespace: {namespace}\n\
             stringData:\n  token: {token}\n"
        )
    }

    fn import_text(text: &str) -> anyhow::Result<Imported> {
        import(&objects_in(text, "test")?)
    }

    fn written(imported: &Imported) -> String {
        format!(
            "{}{}{}",
            imported.config, imported.app_component, imported.proxy_component
        )
    }

    #[test]
    fn each_flux_type_is_imported_or_skipped_with_why() {
        // (Flux type, extra spec, imported?)
        let cases = [
            ("generic", "", true),
            ("generic-hmac", "", true),
            ("github", "  events: [ping, push]\n", true),
            ("gitlab", "  events: [Push Hook, Tag Push Hook]\n", true),
            ("bitbucket", "  events: [\"repo:push\"]\n", true),
            ("harbor", "", true),
            ("dockerhub", "", true),
            ("quay", "", true),
            ("nexus", "", true),
            ("acr", "", true),
            ("cdevents", "", true),
            ("gcr", "", false),
            ("generic-oidc", "", false),
        ];
        let mut failures = Vec::new();
        for (flux_type, extra, expect_imported) in cases {
            let text = format!(
                "{}---\n{}",
                receiver_yaml("webapp", "flux-system", flux_type, extra),
                secret_yaml("flux-system", TOKEN)
            );
            let imported = match import_text(&text) {
                Ok(imported) => imported,
                Err(e) => {
                    failures.push(format!("{flux_type}: {e:#}"));
                    continue;
                }
            };
            let outcome = (imported.receivers.as_slice(), imported.skipped.as_slice());
            match (expect_imported, outcome) {
                (true, ([receiver], [])) if receiver.path == FLUX_PATH => {
                    let config = &imported.config["receivers"][0];
                    if config["type"] != flux_type
                        || config["secrets"][0]["env"] != "FLUX_WEBHOOK_TOKEN"
                    {
                        failures.push(format!("{flux_type}: carried as {config}"));
                    }
                }
                (false, ([], [(label, why)]))
                    if label == "flux-system/webapp"
                        && why.contains(&format!("type `{flux_type}` proves with an ID token")) => {
                }
                _ => failures.push(format!("{flux_type}: {outcome:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn receivers_come_from_documents_and_lists() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}",
            receiver_yaml("webapp", "flux-system", "github", "")
                .replace('\n', "\n  ")
                .trim_end(),
            secret_yaml("flux-system", TOKEN).replace('\n', "\n  ")
        );
        let cases = [
            ("kubectl get -o yaml List", list),
            (
                "documents, Secret first, empty document between",
                format!(
                    "{}---\n---\n{}",
                    secret_yaml("flux-system", TOKEN),
                    receiver_yaml("webapp", "flux-system", "github", "")
                ),
            ),
        ];
        for (case, text) in cases {
            let imported = import_text(&text).unwrap_or_else(|e| panic!("{case}: {e:#}"));
            assert_eq!(
                imported.receivers,
                [ImportedReceiver {
                    label: "flux-system/webapp".into(),
                    provider: "github".into(),
                    path: FLUX_PATH.into()
                }],
                "{case}"
            );
        }
    }

    #[test]
    fn the_token_is_read_from_data_or_string_data() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(TOKEN);
        let other = base64::engine::general_purpose::STANDARD.encode("not-the-token");
        let cases = [
            ("data", format!("data:\n  token: {encoded}\n")),
            ("stringData", format!("stringData:\n  token: {TOKEN}\n")),
            (
                "stringData over data, as the API server merges them",
                format!("data:\n  token: {other}\nstringData:\n  token: {TOKEN}\n"),
            ),
        ];
        for (case, payload) in cases {
            let text = format!(
                "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: webhook-token, namespace: flux-system}}\n{payload}",
                receiver_yaml("webapp", "flux-system", "github", "")
            );
            let imported = import_text(&text).unwrap_or_else(|e| panic!("{case}: {e:#}"));
            assert_eq!(imported.receivers[0].path, FLUX_PATH, "{case}");
            assert!(
                !written(&imported).contains(TOKEN),
                "{case}: the token was written"
            );
        }
    }

    #[test]
    fn a_missing_or_unusable_secret_is_a_clear_error() {
        let receiver = receiver_yaml("webapp", "flux-system", "github", "");
        let cases = [
            (
                "no Secret",
                receiver.clone(),
                "Receiver flux-system/webapp: its Secret flux-system/webhook-token is not in the input",
            ),
            (
                "the Secret in another namespace",
                format!("{receiver}---\n{}", secret_yaml("apps", TOKEN)),
                "its Secret flux-system/webhook-token is not in the input",
            ),
            (
                "no token key",
                format!("{receiver}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: webhook-token, namespace: flux-system}}\nstringData: {{password: x}}\n"),
                "Secret flux-system/webhook-token has no key `token`",
            ),
            (
                "data not base64",
                format!("{receiver}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: webhook-token, namespace: flux-system}}\ndata: {{token: '%%%'}}\n"),
                "data.token is not base64",
            ),
            (
                "one Secret name, two tokens",
                format!(
                    "{receiver}---\n{}---\n{}---\n{}",
                    secret_yaml("flux-system", TOKEN),
                    receiver_yaml("webapp", "apps", "github", ""),
                    secret_yaml("apps", "another-token")
                ),
                "would both be Secret webhook-token in the Gateway's namespace",
            ),
        ];
        for (case, text, expected) in cases {
            let error = format!("{:#}", import_text(&text).unwrap_err());
            assert!(error.contains(expected), "{case}: {error}");
        }
    }

    #[test]
    fn targets_carry_over() {
        let resources = "    - kind: Kustomization\n      name: \"*\"\n      matchLabels:\n        hookgate.io/reconcile-on-push: \"true\"\n    - apiVersion: image.toolkit.fluxcd.io/v1\n      kind: ImageRepository\n      name: app\n      namespace: apps\n    - kind: HelmRelease\n      name: podinfo\n      matchLabels: {ignored: \"yes\"}\n";
        let text = format!(
            "{}{resources}---\n{}",
            receiver_yaml("webapp", "flux-system", "github", ""),
            secret_yaml("flux-system", TOKEN)
        );
        let imported = import_text(&text).unwrap();
        let cases = [
            (
                "named, the receiver's namespace",
                json!({"kind": "GitRepository", "name": "webapp"}),
            ),
            (
                "wildcard with matchLabels",
                json!({"kind": "Kustomization", "name": "*", "matchLabels": {"hookgate.io/reconcile-on-push": "true"}}),
            ),
            (
                "cross-namespace with apiVersion",
                json!({"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "app", "namespace": "apps"}),
            ),
            (
                "named with matchLabels, which Flux ignores",
                json!({"kind": "HelmRelease", "name": "podinfo"}),
            ),
        ];
        let targets = imported.config["receivers"][0]["targets"]
            .as_array()
            .unwrap();
        assert_eq!(targets.len(), cases.len());
        for ((case, expected), target) in cases.iter().zip(targets) {
            assert_eq!(target, expected, "{case}");
        }
        for note in [
            "flux-system/webapp: spec.resources[3].matchLabels dropped",
            "flux-system/webapp: spec.resources[2] is in namespace apps: run the controller with \
             --allow-cross-namespace",
        ] {
            assert!(
                imported.notes.iter().any(|n| n.contains(note)),
                "{note}: {:?}",
                imported.notes
            );
        }
        assert_eq!(imported.notes.len(), 2, "{:?}", imported.notes);
    }

    /// Flux's documented per-resource filtering example (docs/spec/v1/receivers.md), its expressions
    /// verbatim (the type is `generic`: hookgate has no `gcr`): both filters are carried.
    #[test]
    fn flux_resource_filters_are_carried() {
        let receiver = "apiVersion: notification.toolkit.fluxcd.io/v1\nkind: Receiver\nmetadata:\n  \
            name: gar-receiver\n  namespace: apps\nspec:\n  type: generic\n  secretRef:\n    name: webhook-token\n  \
            resourceFilter: req.tag.contains(res.metadata.name)\n  resources:\n    \
            - apiVersion: image.toolkit.fluxcd.io/v1\n      kind: ImageRepository\n      name: \"*\"\n      \
            matchLabels:\n        registry: gar\n      filter: res.metadata.labels['environment'] == 'production'\n";
        let imported =
            import_text(&format!("{receiver}---\n{}", secret_yaml("apps", TOKEN))).unwrap();
        assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
        let carried = &imported.config["receivers"][0];
        assert_eq!(
            carried["resourceFilter"],
            "req.tag.contains(res.metadata.name)"
        );
        assert_eq!(
            carried["targets"][0]["filter"],
            "res.metadata.labels['environment'] == 'production'"
        );
    }

    #[test]
    fn what_hookgate_cannot_do_is_skipped_or_noted() {
        let secret = secret_yaml("flux-system", TOKEN);
        let cases = [
            (
                "a resourceFilter hookgate cannot run",
                receiver_yaml(
                    "webapp",
                    "flux-system",
                    "github",
                    "  resourceFilter: req.tag.matches('v.*')\n",
                ),
                Err("spec.resourceFilter is a CEL expression hookgate cannot run: undeclared reference to 'matches'"),
            ),
            (
                "a per-resource filter reading OIDC claims",
                receiver_yaml("webapp", "flux-system", "github", "").replace(
                    "      name: webapp\n",
                    "      name: webapp\n      filter: claims.sub == 'x'\n",
                ),
                Err("spec.resources[0].filter is a CEL expression hookgate cannot run: undeclared reference to 'claims'"),
            ),
            (
                "events on a type whose events Flux does not check",
                receiver_yaml(
                    "webapp",
                    "flux-system",
                    "harbor",
                    "  events: [PUSH_ARTIFACT]\n",
                ),
                Ok("spec.events dropped: Flux does not check events for type `harbor`"),
            ),
            (
                "suspended",
                receiver_yaml("webapp", "flux-system", "gitlab", "  suspend: true\n"),
                Ok("suspended, imported as disabled"),
            ),
        ];
        for (case, receiver, expected) in cases {
            let imported = import_text(&format!("{receiver}---\n{secret}")).unwrap();
            match expected {
                Err(why) => {
                    assert!(imported.receivers.is_empty(), "{case}");
                    assert!(
                        imported.skipped[0].1.contains(why),
                        "{case}: {:?}",
                        imported.skipped
                    );
                }
                Ok(note) => {
                    assert_eq!(imported.receivers.len(), 1, "{case}");
                    assert!(
                        imported.notes.iter().any(|n| n.contains(note)),
                        "{case}: {:?}",
                        imported.notes
                    );
                }
            }
        }
    }

    #[test]
    fn the_components_patch_the_base_with_the_same_secrets() {
        let text = format!(
            "{}---\n{}---\n{}",
            receiver_yaml("webapp", "flux-system", "github", ""),
            receiver_yaml("registry", "flux-system", "harbor", ""),
            secret_yaml("flux-system", TOKEN)
        );
        let imported = import_text(&text).unwrap();
        // One Secret, one variable, for both receivers.
        assert_eq!(imported.secrets, ["webhook-token"]);
        let app: Value = serde_yaml::from_str(&imported.app_component).unwrap();
        assert_eq!(app["kind"], "Component");
        assert_eq!(
            app["patches"][0]["target"],
            json!({"kind": "EnvoyExtensionPolicy", "name": "hookgate"})
        );
        let operations: Value =
            serde_yaml::from_str(app["patches"][0]["patch"].as_str().unwrap()).unwrap();
        assert_eq!(
            operations,
            json!([
                {"op": "add", "path": "/spec/wasm/0/env/hostKeys/-", "value": "FLUX_WEBHOOK_TOKEN"},
                {"op": "replace", "path": "/spec/wasm/0/config", "value": imported.config},
            ])
        );
        let proxy: Value = serde_yaml::from_str(&imported.proxy_component).unwrap();
        assert_eq!(
            proxy["patches"][0]["target"],
            json!({"kind": "EnvoyProxy", "name": "hookgate-proxy"})
        );
        let operations: Value =
            serde_yaml::from_str(proxy["patches"][0]["patch"].as_str().unwrap()).unwrap();
        assert_eq!(
            operations,
            json!([{"op": "add", "path": "/spec/provider/kubernetes/envoyDeployment/container/env/-",
                    "value": {"name": "FLUX_WEBHOOK_TOKEN",
                              "valueFrom": {"secretKeyRef": {"name": "webhook-token", "key": "token"}}}}])
        );
        assert!(!written(&imported).contains(TOKEN));
    }
}
