//! `hookgate import`: Flux `Receiver`s and their `Secret`s in, the hookgate configuration and the Kustomize
//! components that install it out, so that every webhook URL already registered with a provider keeps
//! working. Secrets are referenced by name and key only; their values are read to check the configuration
//! and compute the paths, and never written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use hookgate_controller::receivers::compile::{self, SecretData};
use hookgate_controller::receivers::crd::ReceiverSpec;
use hookgate_controller::receivers::flux::{self, Note, Untranslatable, TOKEN_KEY};
use hookgate_controller::receivers::offline::{self, Input, WebhookPath};
use hookgate_controller::receivers::Receiver;
use hookgate_filter::config::Config;
use kube::api::ObjectMeta;
use serde_json::{json, Value};

use crate::objects::{is_kind, secret_data, API_VERSION};

/// The variable the base manifests give the attestation key.
const ATTESTATION_KEY_ENV: &str = "HOOKGATE_ATTESTATION_KEY";
/// The API group of Flux's `Receiver`.
pub const FLUX_GROUP: &str = flux::GROUP;
/// The objects the base manifests name, which the generated patches target.
const EXTENSION_POLICY: &str = "hookgate";
const ENVOY_PROXY: &str = "hookgate-proxy";
/// Where the generated files go, under the output directory.
pub const CONFIG_FILE: &str = "hookgate-config.json";
pub const APP_COMPONENT: &str = "app/kustomization.yaml";
pub const PROXY_COMPONENT: &str = "proxy/kustomization.yaml";
/// What `--to objects` writes, under the output directory.
pub const OBJECTS_FILE: &str = "receivers.yaml";

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

/// A translation note as each output words it: the controller's wording ([`Note`]'s), but for what the
/// user must do about a cross-namespace target and how a suspended receiver is written.
fn worded(note: &Note, output: Output) -> String {
    match note {
        Note::CrossNamespace { index, namespace } => {
            // Flux allows these unless run with --no-cross-namespace-refs; hookgate's controller refuses
            // them unless told otherwise, which stays the cluster admin's choice.
            let otherwise = match output {
                Output::Policy => "or it answers 403",
                Output::Objects => "or the Receiver is not Ready (CrossNamespaceTarget)",
            };
            format!(
                "spec.resources[{index}] is in namespace {namespace}: run the controller with \
                 --allow-cross-namespace and bind its ClusterRole in {namespace}, {otherwise}"
            )
        }
        // Flux answers a suspended receiver with 503; hookgate's disabled receiver answers 403.
        Note::Suspended => match output {
            Output::Policy => "suspended, imported as disabled".to_string(),
            Output::Objects => "suspended, imported with `suspend: true`: hookgate refuses its \
                                deliveries with 403 where Flux answers 503"
                .to_string(),
        },
        note => note.to_string(),
    }
}

/// Which output `import` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The filter configuration and the Kustomize components that put it in the EnvoyExtensionPolicy
    /// and the EnvoyProxy's environment.
    Policy,
    /// hookgate `Receiver` objects (hookgate.io/v1alpha1) reading the Secrets the Flux Receivers read.
    Objects,
}

/// A Flux Receiver as hookgate carries it, whichever the output.
struct Carried {
    name: String,
    namespace: String,
    label: String,
    /// The hookgate spec that serves it ([`flux::translate`]): `secretRef` {its Secret, [`TOKEN_KEY`]}.
    spec: ReceiverSpec,
    /// What differs from Flux, worded for the output.
    notes: Vec<String>,
}

impl Carried {
    /// The name of the Flux Receiver's Secret, in its namespace.
    fn secret_name(&self) -> &str {
        self.spec
            .secret_ref
            .as_ref()
            .map_or("", |secret| secret.name.as_str())
    }

    /// The notes as the summary prints them: each naming the receiver.
    fn labelled_notes(&self) -> impl Iterator<Item = String> + '_ {
        self.notes
            .iter()
            .map(move |note| format!("{}: {note}", self.label))
    }
}

/// A Flux Receiver skipped: `(namespace/name, why)`.
type Skipped = (String, String);

/// A Flux Receiver carried over, or why it is skipped.
type Carry = Result<Carried, Skipped>;

/// The Flux Receivers among `objects`, in order: those carried over, and those skipped.
fn carry_all(objects: &[Value], output: Output) -> anyhow::Result<(Vec<Carried>, Vec<Skipped>)> {
    let (mut carried, mut skipped) = (Vec::new(), Vec::new());
    for receiver in objects
        .iter()
        .filter(|o| is_kind(o, FLUX_GROUP, "Receiver"))
    {
        match carry(receiver, output)? {
            Ok(one) => carried.push(one),
            Err(skip) => skipped.push(skip),
        }
    }
    Ok((carried, skipped))
}

/// One Flux Receiver as hookgate carries it ([`flux::translate`], as the controller serves it), or why it
/// cannot (a type hookgate lacks, an ID-token type, a CEL filter hookgate cannot run). What Flux itself
/// would refuse (no name, namespace, type, secretRef, or a resource's kind or name) is an error.
fn carry(receiver: &Value, output: Output) -> anyhow::Result<Carry> {
    let name = text_at(receiver, "/metadata/name")
        .ok_or_else(|| anyhow!("a Receiver has no metadata.name"))?;
    let namespace = text_at(receiver, "/metadata/namespace").ok_or_else(|| {
        anyhow!("Receiver {name} has no metadata.namespace: its webhook path depends on it")
    })?;
    let label = format!("{namespace}/{name}");
    let spec = receiver.get("spec").unwrap_or(&Value::Null);
    let translation = match flux::translate(spec, namespace) {
        Ok(translation) => translation,
        Err(Untranslatable::Invalid(why)) => bail!("Receiver {label}: {why}"),
        Err(unsupported) => return Ok(Err((label, unsupported.to_string()))),
    };
    Ok(Ok(Carried {
        name: name.to_string(),
        namespace: namespace.to_string(),
        label,
        spec: translation.spec,
        notes: translation
            .notes
            .iter()
            .map(|note| worded(note, output))
            .collect(),
    }))
}

/// The Secrets among `objects`, by namespace and name.
fn secrets_in(objects: &[Value]) -> BTreeMap<(String, String), &Value> {
    objects
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
        .collect()
}

/// Imports the Flux Receivers among `objects`, reading their tokens from the Secrets among them.
pub fn import(objects: &[Value]) -> anyhow::Result<Imported> {
    let secrets = secrets_in(objects);
    let mut gateway_secrets: BTreeMap<String, GatewaySecret> = BTreeMap::new();
    let mut receivers = Vec::new();
    let mut imported = Vec::new();
    let mut notes = Vec::new();

    let (all, skipped) = carry_all(objects, Output::Policy)?;
    for carried in all {
        let (label, namespace, secret_name) =
            (&carried.label, &carried.namespace, carried.secret_name());
        let secret_label = format!("{namespace}/{secret_name}");
        let secret = secrets
            .get(&(namespace.clone(), secret_name.to_string()))
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

        receivers.push(compile::wire(
            &(carried.namespace.clone(), carried.name.clone()),
            &carried.spec,
            vec![json!({ "env": variable })],
        ));
        notes.extend(carried.labelled_notes());
        imported.push(ImportedReceiver {
            label: carried.label.clone(),
            provider: carried.spec.provider.clone(),
            path: crate::url(&carried.name, &carried.namespace, &token),
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

/// The summary's lines for the receivers skipped, with why, and for the notes.
fn skipped_and_notes(text: &mut String, skipped: &[(String, String)], notes: &[String]) {
    for (label, why) in skipped {
        let _ = writeln!(text, "skipped {label}: {why}");
    }
    for note in notes {
        let _ = writeln!(text, "note: {note}");
    }
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
    skipped_and_notes(&mut text, &imported.skipped, &imported.notes);
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

/// One hookgate `Receiver` written by `import --to objects`.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportedObject {
    /// The Flux Receiver's namespace/name, which the hookgate Receiver keeps.
    pub label: String,
    pub provider: String,
    /// Flux's path, when the Secret was in the input (without it the path is Flux's all the same, but
    /// cannot be computed here).
    pub path: Option<String>,
    /// The Secret it reads, namespace/name.
    pub secret: String,
    /// Carried with no change (no note): what `--serve-flux-receivers` serves as it is.
    pub as_is: bool,
}

/// What `import --to objects` produces.
#[derive(Debug)]
pub struct ImportedObjects {
    /// The `Receiver` objects, one YAML document each, each after a comment saying what differs.
    pub yaml: String,
    pub receivers: Vec<ImportedObject>,
    /// Receivers not imported: `(namespace/name, why)`.
    pub skipped: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// The hookgate `Receiver` for a carried Flux Receiver: same name and namespace, the same Secret (key
/// `token`), so the same Flux path.
fn receiver_object(carried: &Carried) -> Receiver {
    Receiver {
        metadata: ObjectMeta {
            name: Some(carried.name.clone()),
            namespace: Some(carried.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: carried.spec.clone(),
        status: None,
    }
}

/// Imports the Flux Receivers among `objects` as hookgate `Receiver` objects, each compiled by the
/// controller's own compiler ([`offline::compile`]) with its Secret's data when the Secret is among
/// `objects` (else a placeholder: the Secret stays where it is, and the path is Flux's all the same). A
/// Receiver the controller would not serve is skipped with its `Ready` reason and message; a target in
/// another namespace is noted, not refused (the controller's `--allow-cross-namespace` decides).
pub fn import_objects(objects: &[Value]) -> anyhow::Result<ImportedObjects> {
    let secrets = secrets_in(objects);
    let mut built: Vec<(Carried, Receiver, Option<SecretData>)> = Vec::new();
    let (all, mut skipped) = carry_all(objects, Output::Objects)?;
    for carried in all {
        if built
            .iter()
            .any(|(other, _, _)| other.label == carried.label)
        {
            bail!("Receiver {} is in the input twice", carried.label);
        }
        let object = receiver_object(&carried);
        let secret_label = format!("{}/{}", carried.namespace, carried.secret_name());
        let data = secrets
            .get(&(carried.namespace.clone(), carried.secret_name().to_string()))
            .map(|secret| secret_data(secret, &secret_label))
            .transpose()?;
        built.push((carried, object, data));
    }
    let inputs: Vec<Input> = built
        .iter()
        .map(|(_, object, data)| Input {
            object,
            secret: data.as_ref(),
        })
        .collect();
    let options = offline::Options {
        allow_cross_namespace: true,
        ..offline::Options::default()
    };
    let outcomes = offline::compile(&inputs, &options);

    let mut yaml = String::new();
    for line in wrap(
        "Generated by `hookgate import --to objects` from Flux Receivers: one hookgate Receiver per Flux \
         Receiver, with its name and namespace and reading its Secret (key `token`), so that each answers \
         on the webhook path Flux gave it.",
        100,
    ) {
        let _ = writeln!(yaml, "# {line}");
    }
    let mut receivers = Vec::new();
    let mut notes = Vec::new();
    for (carried, object, data) in &built {
        let key = (carried.namespace.clone(), carried.name.clone());
        let served = match outcomes.get(&key) {
            Some(Ok(served)) => served,
            Some(Err(not_ready)) => {
                skipped.push((
                    carried.label.clone(),
                    format!(
                        "the controller would not serve it: {}: {}",
                        not_ready.reason.as_str(),
                        not_ready.message
                    ),
                ));
                continue;
            }
            None => {
                skipped.push((carried.label.clone(), "not compiled".into()));
                continue;
            }
        };
        let path = match served.paths.first() {
            Some(WebhookPath::Known(path)) => Some(path.clone()),
            _ => None,
        };
        let token = data
            .as_ref()
            .and_then(|data| data.0.get(TOKEN_KEY))
            .and_then(|token| std::str::from_utf8(token.expose()).ok());
        if let (Some(path), Some(token)) = (&path, token) {
            let flux = crate::url(&carried.name, &carried.namespace, token);
            if *path != flux {
                bail!(
                    "receiver {}: the controller would answer on {path}, not Flux's path {flux}",
                    carried.label
                );
            }
        }
        let _ = writeln!(yaml, "---");
        let differs = if carried.notes.is_empty() {
            "nothing else differs.".to_string()
        } else {
            format!("differs: {}.", carried.notes.join("; "))
        };
        let comment = format!(
            "From Flux Receiver {} ({FLUX_GROUP}/v1), on the path Flux gave it; {differs}",
            carried.label
        );
        for line in wrap(&comment, 100) {
            let _ = writeln!(yaml, "# {line}");
        }
        yaml.push_str(&serde_yaml::to_string(object)?);
        notes.extend(carried.labelled_notes());
        receivers.push(ImportedObject {
            label: carried.label.clone(),
            provider: carried.spec.provider.clone(),
            path,
            secret: format!("{}/{}", carried.namespace, carried.secret_name()),
            as_is: carried.notes.is_empty(),
        });
    }
    Ok(ImportedObjects {
        yaml,
        receivers,
        skipped,
        notes,
    })
}

/// What `import --to objects` tells the user: each Receiver written with its path, the ones skipped with
/// why, what differs, what to do with the file, and which Flux Receivers `--serve-flux-receivers` can
/// serve as they are.
pub fn summary_objects(imported: &ImportedObjects, out: &Path) -> String {
    let mut text = String::new();
    for receiver in &imported.receivers {
        let path = match &receiver.path {
            Some(path) => path.clone(),
            None => format!(
                "Flux's path (its Secret {} is not in the input: the Receiver reads it in the cluster)",
                receiver.secret
            ),
        };
        let _ = writeln!(
            text,
            "imported {label} ({provider}) as Receiver {label} ({API_VERSION}): {path}",
            label = receiver.label,
            provider = receiver.provider,
        );
    }
    skipped_and_notes(&mut text, &imported.skipped, &imported.notes);
    if !imported.receivers.is_empty() {
        let _ = writeln!(
            text,
            "wrote {file}: apply it where the controller serves Receivers (`hookgate serve \
             --channel-key-file`, with the CRD of manifests/base/crds); each Receiver reads its Flux \
             Receiver's Secret where it is (key `{TOKEN_KEY}`), so no Secret is copied. Then route the \
             webhook host's /hook/ to hookgate and suspend the Flux Receivers.",
            file = out.join(OBJECTS_FILE).display(),
        );
    }
    let as_is: Vec<&str> = imported
        .receivers
        .iter()
        .filter(|r| r.as_is)
        .map(|r| r.label.as_str())
        .collect();
    let _ = writeln!(
        text,
        "Flux Receivers the controller can serve as they are with --serve-flux-receivers (imported \
         with no note): {}",
        if as_is.is_empty() {
            "none".to_string()
        } else {
            as_is.join(", ")
        }
    );
    text
}

/// Writes `content` to `out/file`, creating the directories.
fn write(out: &Path, file: &str, content: &str) -> anyhow::Result<()> {
    let path = out.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    std::fs::write(&path, content).with_context(|| format!("{}: cannot write", path.display()))
}

/// Reads `inputs` (files, `-` for standard input), imports as `output` says, writes the output under
/// `out` and returns the summary. Nothing is written when no receiver can be imported.
pub fn run(inputs: &[PathBuf], out: &Path, output: Output) -> anyhow::Result<String> {
    let mut objects = Vec::new();
    for input in inputs {
        let (text, source) = crate::read_input(input)?;
        objects.extend(objects_in(&text, &source)?);
    }
    // Whether nothing was imported, the summary, and the files to write.
    let (none, said, files) = match output {
        Output::Policy => {
            let imported = import(&objects)?;
            let config = serde_json::to_string_pretty(&imported.config)? + "\n";
            (
                imported.receivers.is_empty(),
                summary(&imported, out),
                vec![
                    (CONFIG_FILE, config),
                    (APP_COMPONENT, imported.app_component),
                    (PROXY_COMPONENT, imported.proxy_component),
                ],
            )
        }
        Output::Objects => {
            let imported = import_objects(&objects)?;
            (
                imported.receivers.is_empty(),
                summary_objects(&imported, out),
                vec![(OBJECTS_FILE, imported.yaml)],
            )
        }
    };
    if none {
        bail!("no Receiver could be imported; nothing written\n{said}");
    }
    for (file, content) in files {
        write(out, file, &content)?;
    }
    Ok(said)
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

    /// Receivers `webapp` (github) and `registry` (harbor) of `flux-system`, reading one Secret.
    fn github_and_harbor_with_their_secret() -> String {
        format!(
            "{}---\n{}---\n{}",
            receiver_yaml("webapp", "flux-system", "github", ""),
            receiver_yaml("registry", "flux-system", "harbor", ""),
            secret_yaml("flux-system", TOKEN)
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
        let text = github_and_harbor_with_their_secret();
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

    fn import_objects_text(text: &str) -> anyhow::Result<ImportedObjects> {
        import_objects(&objects_in(text, "test")?)
    }

    /// The objects written, parsed back.
    fn written_objects(imported: &ImportedObjects) -> Vec<Value> {
        objects_in(&imported.yaml, "written").unwrap()
    }

    /// What a case of `--to objects` expects of its one Flux Receiver `flux-system/webapp`.
    enum Expect {
        /// Imported: its path (None: not computed), the start of each note, and what the object's spec
        /// must hold (fields compared as given).
        Imported(Option<&'static str>, Vec<&'static str>, Value),
        /// Skipped, with why (its start).
        Skipped(&'static str),
    }

    #[test]
    fn flux_receivers_become_receiver_objects() {
        let secret = secret_yaml("flux-system", TOKEN);
        let github = receiver_yaml(
            "webapp",
            "flux-system",
            "github",
            "  events: [ping, push]\n",
        );
        let cases: Vec<(&str, String, Expect)> = vec![
            (
                "github with its Secret: Flux's path, the same Secret, key token",
                format!("{github}---\n{secret}"),
                Expect::Imported(
                    Some(FLUX_PATH),
                    vec![],
                    json!({"type": "github", "events": ["ping", "push"],
                           "secretRef": {"name": "webhook-token", "keys": ["token"]},
                           "targets": [{"kind": "GitRepository", "name": "webapp"}]}),
                ),
            ),
            (
                "without its Secret: imported, the path not computed",
                github.clone(),
                Expect::Imported(None, vec![], json!({"secretRef": {"name": "webhook-token", "keys": ["token"]}})),
            ),
            (
                "events of a type whose events Flux does not check",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "harbor", "  events: [PUSH_ARTIFACT]\n")
                ),
                Expect::Imported(
                    Some("/hook/"),
                    vec!["flux-system/webapp: spec.events dropped: Flux does not check events for type `harbor`"],
                    json!({"type": "harbor"}),
                ),
            ),
            (
                "suspended",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "gitlab", "  suspend: true\n")
                ),
                Expect::Imported(
                    Some("/hook/"),
                    vec!["flux-system/webapp: suspended, imported with `suspend: true`: hookgate refuses its \
                          deliveries with 403 where Flux answers 503"],
                    json!({"suspend": true}),
                ),
            ),
            (
                "a target in another namespace: noted, not refused",
                format!(
                    "{}---\n{secret}",
                    github.replace("      name: webapp\n", "      name: webapp\n      namespace: apps\n")
                ),
                Expect::Imported(
                    Some(FLUX_PATH),
                    vec!["flux-system/webapp: spec.resources[0] is in namespace apps: run the controller with \
                          --allow-cross-namespace and bind its ClusterRole in apps, or the Receiver is not \
                          Ready (CrossNamespaceTarget)"],
                    json!({"targets": [{"kind": "GitRepository", "name": "webapp", "namespace": "apps"}]}),
                ),
            ),
            (
                "filters carried",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "generic", "  resourceFilter: req.tag.contains(res.metadata.name)\n")
                ),
                Expect::Imported(
                    Some("/hook/"),
                    vec![],
                    json!({"resourceFilter": "req.tag.contains(res.metadata.name)"}),
                ),
            ),
            (
                "an ID-token type",
                format!("{}---\n{secret}", receiver_yaml("webapp", "flux-system", "gcr", "")),
                Expect::Skipped("type `gcr` proves with an ID token"),
            ),
            (
                "a target the controller's compiler refuses",
                format!("{}---\n{secret}", github.replace("      name: webapp\n", "      name: Web App\n")),
                Expect::Skipped("the controller would not serve it: InvalidSpec: spec.targets[0].name: "),
            ),
            (
                "a Secret without the key token",
                format!(
                    "{github}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: webhook-token, namespace: \
                     flux-system}}\nstringData: {{password: x}}\n"
                ),
                Expect::Skipped(
                    "the controller would not serve it: SecretKeyNotFound: Secret webhook-token has none of the \
                     keys token",
                ),
            ),
        ];
        let mut failures = Vec::new();
        for (case, text, expect) in cases {
            let imported = match import_objects_text(&text) {
                Ok(imported) => imported,
                Err(e) => {
                    failures.push(format!("{case}: {e:#}"));
                    continue;
                }
            };
            if imported.yaml.contains(TOKEN)
                || summary_objects(&imported, Path::new("out")).contains(TOKEN)
            {
                failures.push(format!("{case}: the token is written or printed"));
            }
            match expect {
                Expect::Imported(path, notes, spec) => {
                    let [receiver] = imported.receivers.as_slice() else {
                        failures.push(format!("{case}: {imported:?}"));
                        continue;
                    };
                    let path_ok = match (path, &receiver.path) {
                        (None, None) => true,
                        (Some(expected), Some(path)) => path.starts_with(expected),
                        _ => false,
                    };
                    if !path_ok || receiver.secret != "flux-system/webhook-token" {
                        failures.push(format!("{case}: {receiver:?}"));
                    }
                    if receiver.as_is != notes.is_empty() || imported.notes.len() != notes.len() {
                        failures.push(format!("{case}: notes {:?}", imported.notes));
                    }
                    for (note, start) in imported.notes.iter().zip(&notes) {
                        if !note.starts_with(start) {
                            failures.push(format!("{case}: note {note:?}, expected {start:?}"));
                        }
                    }
                    let objects = written_objects(&imported);
                    let [object] = objects.as_slice() else {
                        failures.push(format!("{case}: written {}", imported.yaml));
                        continue;
                    };
                    if object["apiVersion"] != API_VERSION
                        || object["kind"] != "Receiver"
                        || object["metadata"]
                            != json!({"name": "webapp", "namespace": "flux-system"})
                        || object.get("status").is_some()
                    {
                        failures.push(format!("{case}: written {object}"));
                    }
                    for (field, value) in spec.as_object().unwrap() {
                        if object["spec"][field] != *value {
                            failures
                                .push(format!("{case}: spec.{field} is {}", object["spec"][field]));
                        }
                    }
                    let said = if notes.is_empty() {
                        "nothing else differs"
                    } else {
                        "differs: "
                    };
                    if !imported.yaml.replace("\n# ", " ").contains(said) {
                        failures.push(format!("{case}: no {said:?} in\n{}", imported.yaml));
                    }
                }
                Expect::Skipped(why) => match imported.skipped.as_slice() {
                    [(label, reason)]
                        if label == "flux-system/webapp" && reason.starts_with(why) =>
                    {
                        if !imported.receivers.is_empty() {
                            failures.push(format!("{case}: imported as well"));
                        }
                    }
                    skipped => failures.push(format!("{case}: skipped {skipped:?}")),
                },
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// What `import --to objects` writes, checked by `hookgate check` with the Secret: the controller's
    /// compiler serves each Receiver on Flux's path.
    #[test]
    fn the_written_objects_check_on_flux_paths() {
        let text = github_and_harbor_with_their_secret();
        let imported = import_objects_text(&text).unwrap();
        let mut objects = crate::objects::Objects::default();
        objects
            .add(&written_objects(&imported), "receivers.yaml", "default")
            .unwrap();
        objects
            .add(
                &objects_in(&secret_yaml("flux-system", TOKEN), "secret.yaml").unwrap(),
                "secret.yaml",
                "default",
            )
            .unwrap();
        let checked = objects.check(&offline::Options::default());
        assert_eq!(checked.invalid, 0, "{}", checked.report);
        for (name, path) in [
            ("webapp", FLUX_PATH.to_string()),
            ("registry", crate::url("registry", "flux-system", TOKEN)),
        ] {
            let line = format!("Receiver flux-system/{name} ");
            assert!(checked.report.contains(&line), "{}", checked.report);
            assert!(
                checked.report.contains(&format!("  path: {path}\n")),
                "{}",
                checked.report
            );
        }
    }

    #[test]
    fn the_summary_names_the_receivers_served_as_they_are() {
        let secret = secret_yaml("flux-system", TOKEN);
        let cases = [
            (
                "one as it is, one with a note, one skipped",
                format!(
                    "{}---\n{}---\n{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "github", ""),
                    receiver_yaml(
                        "registry",
                        "flux-system",
                        "harbor",
                        "  events: [PUSH_ARTIFACT]\n"
                    ),
                    receiver_yaml("gcr", "flux-system", "gcr", ""),
                ),
                "with --serve-flux-receivers (imported with no note): flux-system/webapp\n",
            ),
            (
                "none as it is",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "gitlab", "  suspend: true\n")
                ),
                "with --serve-flux-receivers (imported with no note): none\n",
            ),
        ];
        for (case, text, line) in cases {
            let imported = import_objects_text(&text).unwrap();
            let summary = summary_objects(&imported, Path::new("out"));
            assert!(summary.contains(line), "{case}: {summary}");
            assert!(
                summary.contains("wrote out/receivers.yaml: apply it"),
                "{case}: {summary}"
            );
        }
    }

    #[test]
    fn a_receiver_given_twice_is_an_error() {
        let receiver = receiver_yaml("webapp", "flux-system", "github", "");
        let error = import_objects_text(&format!("{receiver}---\n{receiver}")).unwrap_err();
        assert!(error
            .to_string()
            .contains("Receiver flux-system/webapp is in the input twice"));
    }
}
