//! `hookgate import`: Flux `Receiver`s (and their `Secret`s, optional) in, hookgate `Receiver` objects
//! (`hookgate.io/v1alpha1`) out, each reading its Flux Receiver's Secret, so that every webhook URL already
//! registered with a provider keeps working. Secrets are referenced by name and key only; their values are
//! read to compile the Receivers and compute the paths, and never written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use hookgate_controller::receivers::compile::SecretData;
use hookgate_controller::receivers::crd::ReceiverSpec;
use hookgate_controller::receivers::flux::{self, Note, Untranslatable, TOKEN_KEY};
use hookgate_controller::receivers::offline::{self, Input, WebhookPath};
use hookgate_controller::receivers::Receiver;
use kube::api::ObjectMeta;
use serde_json::Value;

use crate::objects::{is_kind, secret_data, API_VERSION};

/// The API group of Flux's `Receiver`.
pub const FLUX_GROUP: &str = flux::GROUP;
/// What `import` writes, under the output directory.
pub const OBJECTS_FILE: &str = "receivers.yaml";

/// Every Kubernetes object in `text` (multi-document YAML), `kind: List` items flattened.
pub fn objects_in(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    let budget = crate::yaml::Budget::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = crate::yaml::value(document, &budget)
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

/// A translation note as `import` words it: the controller's wording ([`Note`]'s), but for what the user
/// must do about a cross-namespace target.
fn worded(note: &Note) -> String {
    match note {
        // Flux allows these unless run with --no-cross-namespace-refs; hookgate's controller refuses them
        // unless told otherwise, which stays the cluster admin's choice.
        Note::CrossNamespace { index, namespace } => format!(
            "spec.resources[{index}] is in namespace {namespace}: run the controller with \
             --allow-cross-namespace and bind its ClusterRole in {namespace}, or the Receiver is not Ready \
             (CrossNamespaceTarget)"
        ),
        note => note.to_string(),
    }
}

/// A Flux Receiver as hookgate carries it.
struct Carried {
    name: String,
    namespace: String,
    label: String,
    /// The hookgate spec that serves it ([`flux::translate`]): `secretRef` {its Secret, [`TOKEN_KEY`]}.
    spec: ReceiverSpec,
    /// What differs from Flux, [`worded`].
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
fn carry_all(objects: &[Value]) -> anyhow::Result<(Vec<Carried>, Vec<Skipped>)> {
    let (mut carried, mut skipped) = (Vec::new(), Vec::new());
    for receiver in objects
        .iter()
        .filter(|o| is_kind(o, FLUX_GROUP, "Receiver"))
    {
        match carry(receiver)? {
            Ok(one) => carried.push(one),
            Err(skip) => skipped.push(skip),
        }
    }
    Ok((carried, skipped))
}

/// One Flux Receiver as hookgate carries it ([`flux::translate`], as the controller serves it), or why it
/// cannot (a type hookgate lacks, an ID-token type, a CEL filter hookgate cannot run). What Flux itself
/// would refuse (no name, namespace, type, secretRef, or a resource's kind or name) is an error.
fn carry(receiver: &Value) -> anyhow::Result<Carry> {
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
        notes: translation.notes.iter().map(worded).collect(),
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

/// One hookgate `Receiver` written by `import`.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportedReceiver {
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

/// What `import` produces.
#[derive(Debug)]
pub struct Imported {
    /// The `Receiver` objects, one YAML document each, each after a comment saying what differs.
    pub yaml: String,
    pub receivers: Vec<ImportedReceiver>,
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

/// A Flux Receiver carried over, its hookgate Receiver, and its Secret's data when the Secret is in the
/// input.
type Built = (Carried, Receiver, Option<SecretData>);

/// The Flux Receivers among `objects` as hookgate Receivers, with their Secrets' data when given, and
/// those skipped. A Receiver given twice, or a Secret that cannot be read, is an error.
fn build(objects: &[Value]) -> anyhow::Result<(Vec<Built>, Vec<Skipped>)> {
    let secrets = secrets_in(objects);
    let mut built: Vec<Built> = Vec::new();
    let (all, skipped) = carry_all(objects)?;
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
    Ok((built, skipped))
}

/// The path the controller serves `carried` on, when known here (its Secret is in the input); an error
/// when it is not the path Flux gave it.
fn flux_path(
    carried: &Carried,
    served: &offline::Served,
    data: Option<&SecretData>,
) -> anyhow::Result<Option<String>> {
    let Some(WebhookPath::Known(path)) = served.paths.first() else {
        return Ok(None);
    };
    let token = data
        .and_then(|data| data.0.get(TOKEN_KEY))
        .and_then(|token| std::str::from_utf8(token.expose()).ok());
    if let Some(token) = token {
        let flux = crate::url(&carried.name, &carried.namespace, token);
        if *path != flux {
            bail!(
                "receiver {}: the controller would answer on {path}, not Flux's path {flux}",
                carried.label
            );
        }
    }
    Ok(Some(path.clone()))
}

/// `text` as YAML comment lines.
fn comment(yaml: &mut String, text: &str) {
    for line in wrap(text, 100) {
        let _ = writeln!(yaml, "# {line}");
    }
}

/// Imports the Flux Receivers among `objects` as hookgate `Receiver` objects, each compiled by the
/// controller's own compiler ([`offline::compile`]) with its Secret's data when the Secret is among
/// `objects` (else a placeholder: the Secret stays where it is, and the path is Flux's all the same). A
/// Receiver the controller would not serve is skipped with its `Ready` reason and message; a target in
/// another namespace is noted, not refused (the controller's `--allow-cross-namespace` decides).
pub fn import(objects: &[Value]) -> anyhow::Result<Imported> {
    let (built, mut skipped) = build(objects)?;
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
    comment(
        &mut yaml,
        "Generated by `hookgate import` from Flux Receivers: one hookgate Receiver per Flux Receiver, with \
         its name and namespace and reading its Secret (key `token`), so that each answers on the webhook \
         path Flux gave it.",
    );
    let (mut receivers, mut notes) = (Vec::new(), Vec::new());
    for (carried, object, data) in &built {
        let served = match outcomes.get(&(carried.namespace.clone(), carried.name.clone())) {
            Some(Ok(served)) => served,
            Some(Err(not_ready)) => {
                let why = format!(
                    "the controller would not serve it: {}: {}",
                    not_ready.reason.as_str(),
                    not_ready.message
                );
                skipped.push((carried.label.clone(), why));
                continue;
            }
            None => {
                skipped.push((carried.label.clone(), "not compiled".into()));
                continue;
            }
        };
        let path = flux_path(carried, served, data.as_ref())?;
        let differs = if carried.notes.is_empty() {
            "nothing else differs.".to_string()
        } else {
            format!("differs: {}.", carried.notes.join("; "))
        };
        let _ = writeln!(yaml, "---");
        comment(
            &mut yaml,
            &format!(
                "From Flux Receiver {} ({FLUX_GROUP}/v1), on the path Flux gave it; {differs}",
                carried.label
            ),
        );
        yaml.push_str(&serde_yaml::to_string(object)?);
        notes.extend(carried.labelled_notes());
        receivers.push(ImportedReceiver {
            label: carried.label.clone(),
            provider: carried.spec.provider.clone(),
            path,
            secret: format!("{}/{}", carried.namespace, carried.secret_name()),
            as_is: carried.notes.is_empty(),
        });
    }
    Ok(Imported {
        yaml,
        receivers,
        skipped,
        notes,
    })
}

/// What `import` tells the user: each Receiver written with its path, the ones skipped with
/// why, what differs, what to do with the file, and which Flux Receivers `--serve-flux-receivers` can
/// serve as they are.
pub fn summary(imported: &Imported, out: &Path) -> String {
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

/// Reads `inputs` (files, `-` for standard input), imports them, writes the Receivers to `out` and returns
/// the summary. Nothing is written when no receiver can be imported.
pub fn run(inputs: &[PathBuf], out: &Path) -> anyhow::Result<String> {
    let mut objects = Vec::new();
    for input in inputs {
        let (text, source) = crate::read_input(input)?;
        objects.extend(objects_in(&text, &source)?);
    }
    let imported = import(&objects)?;
    let said = summary(&imported, out);
    if imported.receivers.is_empty() {
        bail!("no Receiver could be imported; nothing written\n{said}");
    }
    write(out, OBJECTS_FILE, &imported.yaml)?;
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

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

    /// The objects written, parsed back.
    fn written_objects(imported: &Imported) -> Vec<Value> {
        objects_in(&imported.yaml, "written").unwrap()
    }

    /// The spec of the one Receiver written.
    fn written_spec(imported: &Imported) -> Value {
        let objects = written_objects(imported);
        let [object] = objects.as_slice() else {
            panic!("not one Receiver written: {}", imported.yaml);
        };
        object["spec"].clone()
    }

    /// What the user sees of an import: the file and the summary.
    fn written_and_said(imported: &Imported) -> String {
        format!("{}{}", imported.yaml, summary(imported, Path::new("out")))
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
                (true, ([receiver], [])) if receiver.path.as_deref() == Some(FLUX_PATH) => {
                    let spec = written_spec(&imported);
                    if spec["type"] != flux_type
                        || spec["secretRef"] != json!({"name": "webhook-token", "keys": ["token"]})
                    {
                        failures.push(format!("{flux_type}: carried as {spec}"));
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
                    path: Some(FLUX_PATH.into()),
                    secret: "flux-system/webhook-token".into(),
                    as_is: true,
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
            assert_eq!(
                imported.receivers[0].path.as_deref(),
                Some(FLUX_PATH),
                "{case}"
            );
            let said = written_and_said(&imported);
            assert!(!said.contains(TOKEN), "{case}: the token was written");
            assert!(!said.contains(&encoded), "{case}: the token was written");
        }
    }

    /// (case, input, the summary's lines, or the error's start)
    type SecretCase<'a> = (&'a str, String, Result<Vec<&'a str>, &'a str>);

    /// The Secrets are optional: a Receiver whose Secret is not in the input is imported (it reads its
    /// Secret in the cluster) without its path; one that cannot be read is an error naming it; each
    /// Receiver reads the Secret of its own namespace.
    #[test]
    fn a_missing_secret_is_read_in_the_cluster_and_an_unusable_one_is_an_error() {
        let receiver = receiver_yaml("webapp", "flux-system", "github", "");
        let unknown = "imported flux-system/webapp (github) as Receiver flux-system/webapp \
                       (hookgate.io/v1alpha1): Flux's path (its Secret flux-system/webhook-token is not in the \
                       input: the Receiver reads it in the cluster)";
        let secret_with = |payload: &str| {
            format!(
                "{receiver}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: webhook-token, namespace: \
                 flux-system}}\n{payload}\n"
            )
        };
        let apps_path = crate::url("webapp", "apps", "another-token");
        let cases: Vec<SecretCase> = vec![
            ("no Secret", receiver.clone(), Ok(vec![unknown])),
            (
                "the Secret in another namespace",
                format!("{receiver}---\n{}", secret_yaml("apps", TOKEN)),
                Ok(vec![unknown]),
            ),
            (
                "one Secret name in two namespaces, two tokens: each Receiver its own",
                format!(
                    "{receiver}---\n{}---\n{}---\n{}",
                    secret_yaml("flux-system", TOKEN),
                    receiver_yaml("webapp", "apps", "github", ""),
                    secret_yaml("apps", "another-token")
                ),
                Ok(vec![FLUX_PATH, apps_path.as_str()]),
            ),
            (
                "data not base64",
                secret_with("data: {token: '%%%'}"),
                Err("Secret flux-system/webhook-token: data.token is not base64"),
            ),
            (
                "stringData not a string",
                secret_with("stringData: {token: [x]}"),
                Err("Secret flux-system/webhook-token: stringData.token is not a string"),
            ),
        ];
        for (case, text, expected) in cases {
            match (expected, import_text(&text)) {
                (Ok(lines), Ok(imported)) => {
                    let said = summary(&imported, Path::new("out"));
                    for line in lines {
                        assert!(said.contains(line), "{case}: no {line:?} in\n{said}");
                    }
                    assert!(!written_and_said(&imported).contains(TOKEN), "{case}");
                }
                (Err(start), Err(error)) => {
                    let error = format!("{error:#}");
                    assert!(error.contains(start), "{case}: {error}");
                    assert!(!error.contains("%%%"), "{case}: {error}");
                }
                (_, result) => panic!("{case}: {result:?}"),
            }
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
        let spec = written_spec(&imported);
        let targets = spec["targets"].as_array().unwrap();
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
        let spec = written_spec(&imported);
        assert_eq!(
            spec["resourceFilter"],
            "req.tag.contains(res.metadata.name)"
        );
        assert_eq!(
            spec["targets"][0]["filter"],
            "res.metadata.labels['environment'] == 'production'"
        );
    }

    /// What a case expects of its one Flux Receiver `flux-system/webapp`.
    enum Expect {
        /// Imported: its path (None: not computed), the start of each note, and what the object's spec
        /// must hold (fields compared as given).
        Imported(Option<&'static str>, Vec<&'static str>, Value),
        /// Skipped, with why (its start).
        Skipped(&'static str),
    }

    /// The cases of [`flux_receivers_become_receiver_objects`]: (case, input, what it expects).
    fn receiver_object_cases() -> Vec<(&'static str, String, Expect)> {
        let secret = secret_yaml("flux-system", TOKEN);
        let github = receiver_yaml(
            "webapp",
            "flux-system",
            "github",
            "  events: [ping, push]\n",
        );
        vec![
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
                    // Answered 503 without verifying, as Flux does: nothing to note.
                    vec![],
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
                "a resourceFilter hookgate cannot run",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "github", "  resourceFilter: req.tag.matches('v.*')\n")
                ),
                Expect::Skipped(
                    "spec.resourceFilter is a CEL expression hookgate cannot run: undeclared reference to 'matches'",
                ),
            ),
            (
                "a per-resource filter reading OIDC claims",
                format!(
                    "{}---\n{secret}",
                    github.replace("      name: webapp\n", "      name: webapp\n      filter: claims.sub == 'x'\n")
                ),
                Expect::Skipped(
                    "spec.resources[0].filter is a CEL expression hookgate cannot run: undeclared reference to 'claims'",
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
        ]
    }

    impl Expect {
        /// What `imported` does not do as expected, each naming `case`.
        fn failures(&self, case: &str, imported: &Imported) -> Vec<String> {
            match self {
                Expect::Imported(path, notes, spec) => {
                    imported_failures(case, imported, *path, notes, spec)
                }
                Expect::Skipped(why) => match imported.skipped.as_slice() {
                    [(label, reason)]
                        if label == "flux-system/webapp" && reason.starts_with(why) =>
                    {
                        if imported.receivers.is_empty() {
                            vec![]
                        } else {
                            vec![format!("{case}: imported as well")]
                        }
                    }
                    skipped => vec![format!("{case}: skipped {skipped:?}")],
                },
            }
        }
    }

    /// What an import of one Flux Receiver `flux-system/webapp` does not do as [`Expect::Imported`] says.
    fn imported_failures(
        case: &str,
        imported: &Imported,
        path: Option<&str>,
        notes: &[&str],
        spec: &Value,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let [receiver] = imported.receivers.as_slice() else {
            return vec![format!("{case}: {imported:?}")];
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
        for (note, start) in imported.notes.iter().zip(notes) {
            if !note.starts_with(start) {
                failures.push(format!("{case}: note {note:?}, expected {start:?}"));
            }
        }
        let objects = written_objects(imported);
        let [object] = objects.as_slice() else {
            return vec![format!("{case}: written {}", imported.yaml)];
        };
        if object["apiVersion"] != API_VERSION
            || object["kind"] != "Receiver"
            || object["metadata"] != json!({"name": "webapp", "namespace": "flux-system"})
            || object.get("status").is_some()
        {
            failures.push(format!("{case}: written {object}"));
        }
        for (field, value) in spec.as_object().unwrap() {
            if object["spec"][field] != *value {
                failures.push(format!("{case}: spec.{field} is {}", object["spec"][field]));
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
        failures
    }

    #[test]
    fn flux_receivers_become_receiver_objects() {
        let mut failures = Vec::new();
        for (case, text, expect) in receiver_object_cases() {
            let imported = match import_text(&text) {
                Ok(imported) => imported,
                Err(e) => {
                    failures.push(format!("{case}: {e:#}"));
                    continue;
                }
            };
            if written_and_said(&imported).contains(TOKEN) {
                failures.push(format!("{case}: the token is written or printed"));
            }
            failures.extend(expect.failures(case, &imported));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// What `import` writes, checked by `hookgate check` with the Secret: the controller's
    /// compiler serves each Receiver on Flux's path.
    #[test]
    fn the_written_objects_check_on_flux_paths() {
        let text = github_and_harbor_with_their_secret();
        let imported = import_text(&text).unwrap();
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
                "suspended, as it is",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml("webapp", "flux-system", "gitlab", "  suspend: true\n")
                ),
                "with --serve-flux-receivers (imported with no note): flux-system/webapp\n",
            ),
            (
                "none as it is",
                format!(
                    "{}---\n{secret}",
                    receiver_yaml(
                        "webapp",
                        "flux-system",
                        "harbor",
                        "  events: [PUSH_ARTIFACT]\n"
                    )
                ),
                "with --serve-flux-receivers (imported with no note): none\n",
            ),
        ];
        for (case, text, line) in cases {
            let imported = import_text(&text).unwrap();
            let summary = summary(&imported, Path::new("out"));
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
        let error = import_text(&format!("{receiver}---\n{receiver}")).unwrap_err();
        assert!(error
            .to_string()
            .contains("Receiver flux-system/webapp is in the input twice"));
    }
}
