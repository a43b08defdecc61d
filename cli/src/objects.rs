//! hookgate `Receiver` objects (`hookgate.io/v1alpha1`) and the Secrets they name, read from files and
//! compiled offline by the controller's own compiler
//! ([`hookgate_controller::receivers::offline`]): what `hookgate check` says of each one is the `Ready`
//! reason and message the controller would give it. Secret values are read to compile and to compute
//! Flux-style paths, and never printed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use hookgate_controller::receivers::compile::SecretData;
use hookgate_controller::receivers::offline::{self, Input, Options, WebhookPath};
use hookgate_controller::receivers::Receiver;
use hookgate_protocol::Secret;
use serde_json::Value;

/// The apiVersion of hookgate's `Receiver`.
pub const API_VERSION: &str = "hookgate.io/v1alpha1";
const GROUP: &str = "hookgate.io";

fn text_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// Whether `object` is a `kind` of API group `group` (`""`: the core group).
pub fn is_kind(object: &Value, group: &str, kind: &str) -> bool {
    let api_version = text_at(object, "/apiVersion").unwrap_or_default();
    let object_group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    object_group == group && text_at(object, "/kind") == Some(kind)
}

/// The data of a Secret as the API server holds it: `data` (base64) with `stringData` merged over it.
/// Errors name the Secret and the key, never a value.
pub fn secret_data(secret: &Value, label: &str) -> anyhow::Result<SecretData> {
    let mut data = BTreeMap::new();
    for (key, value) in secret
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let encoded = value
            .as_str()
            .ok_or_else(|| anyhow!("Secret {label}: data.{key} is not a string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| anyhow!("Secret {label}: data.{key} is not base64"))?;
        data.insert(key.clone(), Secret::new(bytes));
    }
    for (key, value) in secret
        .get("stringData")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let text = value
            .as_str()
            .ok_or_else(|| anyhow!("Secret {label}: stringData.{key} is not a string"))?;
        data.insert(key.clone(), Secret::from(text));
    }
    Ok(SecretData(data))
}

/// A `Receiver` read from a file.
struct Found {
    /// `FILE: Receiver namespace/name`.
    location: String,
    key: (String, String),
    provider: String,
    /// The namespace given by `--namespace` when the object names none.
    namespace_assumed: bool,
    /// The object, or why the API server would not take it.
    object: Result<Receiver, String>,
}

/// The Receivers and Secrets of every file given, in order.
#[derive(Default)]
pub struct Objects {
    receivers: Vec<Found>,
    secrets: HashMap<(String, String), SecretData>,
}

/// What `check` says of the Receivers: the report and how many would not be Ready.
pub struct Checked {
    pub report: String,
    pub receivers: usize,
    pub invalid: usize,
}

impl Objects {
    /// Takes the hookgate Receivers and the Secrets among `objects` (read from `source`); an object
    /// without `metadata.namespace` is in `namespace`, as `kubectl apply -n` would put it. Returns how
    /// many it took.
    pub fn add(
        &mut self,
        objects: &[Value],
        source: &str,
        namespace: &str,
    ) -> anyhow::Result<usize> {
        let mut taken = 0;
        for (index, object) in objects.iter().enumerate() {
            let is_receiver = is_kind(object, GROUP, "Receiver");
            let is_secret = is_kind(object, "", "Secret");
            if !is_receiver && !is_secret {
                continue;
            }
            let name = text_at(object, "/metadata/name").ok_or_else(|| {
                anyhow!(
                    "{source}: object {index} ({}) has no metadata.name",
                    kind_of(object)
                )
            })?;
            let given = text_at(object, "/metadata/namespace").filter(|n| !n.is_empty());
            let key = (given.unwrap_or(namespace).to_string(), name.to_string());
            let label = format!("{}/{}", key.0, key.1);
            taken += 1;
            if is_secret {
                let data = secret_data(object, &label).map_err(|e| anyhow!("{source}: {e}"))?;
                self.secrets.insert(key, data);
                continue;
            }
            let api_version = text_at(object, "/apiVersion").unwrap_or_default();
            if api_version != API_VERSION {
                bail!("{source}: Receiver {label}: apiVersion {api_version} is not {API_VERSION}");
            }
            self.receivers.push(Found {
                location: format!("{source}: Receiver {label}"),
                provider: text_at(object, "/spec/type")
                    .unwrap_or("no type")
                    .to_string(),
                namespace_assumed: given.is_none(),
                object: read_receiver(object, &key),
                key,
            });
        }
        Ok(taken)
    }

    pub fn has_receivers(&self) -> bool {
        !self.receivers.is_empty()
    }

    /// Compiles the Receivers as the controller would, with `options` as its flags, and says what it
    /// would make of each, in the order read.
    pub fn check(&self, options: &Options) -> Checked {
        let inputs: Vec<Input> = self
            .receivers
            .iter()
            .filter_map(|found| found.object.as_ref().ok())
            .map(|object| Input {
                object,
                secret: object.spec.secret_ref.as_ref().and_then(|secret| {
                    let namespace = object.metadata.namespace.clone().unwrap_or_default();
                    self.secrets.get(&(namespace, secret.name.clone()))
                }),
            })
            .collect();
        let outcomes = offline::compile(&inputs, options);
        let mut report = String::new();
        let mut invalid = 0;
        for (index, found) in self.receivers.iter().enumerate() {
            let header = format!("{} ({})", found.location, found.provider);
            if let Some(later) = self.receivers[index + 1..]
                .iter()
                .find(|other| other.key == found.key)
            {
                let _ = writeln!(
                    report,
                    "{header}: given again later ({}), which the API server keeps instead",
                    later.location
                );
                continue;
            }
            let (verdict, details) = match (&found.object, outcomes.get(&found.key)) {
                (Err(why), _) => (Err(why.clone()), Vec::new()),
                (Ok(object), Some(Ok(served))) => {
                    let suspended = if served.suspended {
                        " (suspended: every delivery is refused)"
                    } else {
                        ""
                    };
                    let mut details: Vec<String> = served
                        .paths
                        .iter()
                        .map(|path| format!("path: {}", describe(path)))
                        .collect();
                    let secret = object
                        .spec
                        .secret_ref
                        .as_ref()
                        .map_or("", |r| r.name.as_str());
                    if !served.missing_keys.is_empty() {
                        details.push(format!(
                            "note: Secret {secret} lacks the keys {} (skipped)",
                            served.missing_keys.join(", ")
                        ));
                    }
                    if accepts_any_token(object) {
                        details.push(ACCEPTS_ANY_TOKEN.to_string());
                    }
                    if served.placeholder {
                        details.push(format!(
                            "note: Secret {secret} is not in the files: compiled with a placeholder \
                             under each key"
                        ));
                    }
                    (Ok(format!("OK{suspended}")), details)
                }
                (Ok(_), Some(Err(not_ready))) => (
                    Err(format!(
                        "{}: {}",
                        not_ready.reason.as_str(),
                        not_ready.message
                    )),
                    Vec::new(),
                ),
                (Ok(_), None) => (Err("not compiled".to_string()), Vec::new()),
            };
            let line = verdict.unwrap_or_else(|why| {
                invalid += 1;
                why
            });
            let _ = writeln!(report, "{header}: {line}");
            for detail in details {
                let _ = writeln!(report, "  {detail}");
            }
            if found.namespace_assumed {
                let _ = writeln!(
                    report,
                    "  note: no metadata.namespace: checked in namespace {} (--namespace)",
                    found.key.0
                );
            }
        }
        Checked {
            report,
            receivers: self.receivers.len(),
            invalid,
        }
    }
}

/// What `check` says of a served Receiver that waives the binding of its tokens to a sender.
const ACCEPTS_ANY_TOKEN: &str =
    "warning: idToken.acceptAnyTokenFromIssuer: any token its issuers sign for \
     its audience is accepted, whoever it was issued to";

fn accepts_any_token(object: &Receiver) -> bool {
    object
        .spec
        .id_token
        .as_ref()
        .is_some_and(|t| t.accept_any_token_from_issuer == Some(true))
}

fn kind_of(object: &Value) -> &str {
    text_at(object, "/kind").unwrap_or("no kind")
}

/// `object` as the controller would read it from the API server, or why the API server would not take
/// it (a field the CRD lacks, a field of the wrong type or missing).
fn read_receiver(object: &Value, key: &(String, String)) -> Result<Receiver, String> {
    let unknown = offline::unknown_fields(object);
    if !unknown.is_empty() {
        return Err(format!(
            "not a valid Receiver: unknown field {} (kubectl apply refuses it; an API server not asked \
             to validate drops it)",
            unknown.join(", ")
        ));
    }
    let mut receiver: Receiver =
        serde_json::from_value(object.clone()).map_err(|e| format!("not a valid Receiver: {e}"))?;
    receiver.metadata.namespace = Some(key.0.clone());
    Ok(receiver)
}

/// A path as `check` prints it: the path, or from which secret it would be derived.
fn describe(path: &WebhookPath) -> String {
    match path {
        WebhookPath::Known(path) => path.clone(),
        WebhookPath::Unknown { secret, key } => format!(
            "/hook/<sha256 of Secret {secret} key {key} + name + namespace> (add the Secret to the files \
             to print it)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::objects_in;
    use hookgate_filter::config::flux_webhook_path;

    const TOKEN: &str = "hunter2-check-token-0001";

    fn receiver(name: &str, extra: &str) -> String {
        format!(
            "apiVersion: hookgate.io/v1alpha1\nkind: Receiver\nmetadata:\n  name: {name}\n  namespace: tenant\n\
             spec:\n  type: github\n  secretRef:\n    name: webhook-token\n  targets:\n    - kind: GitRepository\n      \
             name: app\n{extra}"
        )
    }

    fn secret(payload: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: webhook-token\n  namespace: tenant\n{payload}"
        )
    }

    fn check_text(text: &str, options: &Options) -> Checked {
        let mut objects = Objects::default();
        objects
            .add(&objects_in(text, "r.yaml").unwrap(), "r.yaml", "default")
            .unwrap();
        objects.check(options)
    }

    #[test]
    fn each_receiver_is_reported_as_the_controller_would() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(TOKEN);
        let path = flux_webhook_path(TOKEN, "app", "tenant");
        // (case, the files' text, controller flags, the report's lines that must be there, invalid)
        let cases: Vec<(&str, String, Options, Vec<String>, usize)> = vec![
            (
                "with its Secret (stringData)",
                format!("{}---\n{}", receiver("app", ""), secret(&format!("stringData:\n  token: {TOKEN}\n"))),
                Options::default(),
                vec![
                    "r.yaml: Receiver tenant/app (github): OK".into(),
                    format!("  path: {path}"),
                ],
                0,
            ),
            (
                "with its Secret (data), given before the Receiver",
                format!("{}---\n{}", secret(&format!("data:\n  token: {encoded}\n")), receiver("app", "")),
                Options::default(),
                vec![format!("  path: {path}")],
                0,
            ),
            (
                "without its Secret: a placeholder, the path unknown",
                receiver("app", ""),
                Options::default(),
                vec![
                    "r.yaml: Receiver tenant/app (github): OK".into(),
                    "  path: /hook/<sha256 of Secret webhook-token key token + name + namespace> (add the \
                     Secret to the files to print it)".into(),
                    "  note: Secret webhook-token is not in the files: compiled with a placeholder under \
                     each key".into(),
                ],
                0,
            ),
            (
                "a pinned path is known without the Secret",
                receiver("app", "  path: /hook/tenant-app\n"),
                Options::default(),
                vec!["  path: /hook/tenant-app".into()],
                0,
            ),
            (
                "an invalid target name",
                receiver("app", "").replace("      name: app\n", "      name: Web App\n"),
                Options::default(),
                vec!["r.yaml: Receiver tenant/app (github): InvalidSpec: spec.targets[0].name: ".into()],
                1,
            ),
            (
                "the Secret without the key",
                format!("{}---\n{}", receiver("app", ""), secret("stringData:\n  password: x\n")),
                Options::default(),
                vec!["r.yaml: Receiver tenant/app (github): SecretKeyNotFound: Secret webhook-token has none \
                      of the keys token".into()],
                1,
            ),
            (
                "a rotation's next key not there yet",
                format!(
                    "{}---\n{}",
                    receiver("app", "").replace("name: webhook-token\n", "name: webhook-token\n    keys: [token, next]\n"),
                    secret(&format!("stringData:\n  token: {TOKEN}\n"))
                ),
                Options::default(),
                vec![format!("  path: {path}"), "  note: Secret webhook-token lacks the keys next (skipped)".into()],
                0,
            ),
            (
                "a target in another namespace",
                receiver("app", "").replace("      name: app\n", "      name: app\n      namespace: other\n"),
                Options::default(),
                vec!["(github): CrossNamespaceTarget: spec.targets[0].namespace: other is not the receiver's \
                      namespace".into()],
                1,
            ),
            (
                "a target in another namespace, --allow-cross-namespace",
                receiver("app", "").replace("      name: app\n", "      name: app\n      namespace: other\n"),
                Options { allow_cross_namespace: true, ..Options::default() },
                vec!["r.yaml: Receiver tenant/app (github): OK".into()],
                0,
            ),
            (
                "two receivers on one pinned path",
                format!("{}---\n{}", receiver("b", "  path: /hook/x\n"), receiver("a", "  path: /hook/x\n")),
                Options::default(),
                vec![
                    "r.yaml: Receiver tenant/b (github): PathConflict: path /hook/x is already used by receiver \
                     tenant/a".into(),
                    "r.yaml: Receiver tenant/a (github): OK".into(),
                ],
                1,
            ),
            (
                "a field the CRD lacks",
                receiver("app", "  refz: {branches: [main]}\n"),
                Options::default(),
                vec!["r.yaml: Receiver tenant/app (github): not a valid Receiver: unknown field spec.refz".into()],
                1,
            ),
            (
                "a field of the wrong type",
                receiver("app", "  suspend: maybe\n"),
                Options::default(),
                vec!["r.yaml: Receiver tenant/app (github): not a valid Receiver: ".into()],
                1,
            ),
            (
                "suspended",
                receiver("app", "  suspend: true\n"),
                Options::default(),
                vec!["r.yaml: Receiver tenant/app (github): OK (suspended: every delivery is refused)".into()],
                0,
            ),
            (
                "no namespace: --namespace's",
                receiver("app", "").replace("  namespace: tenant\n", ""),
                Options::default(),
                vec![
                    "r.yaml: Receiver default/app (github): OK".into(),
                    "  note: no metadata.namespace: checked in namespace default (--namespace)".into(),
                ],
                0,
            ),
            (
                "the same object twice",
                format!("{}---\n{}", receiver("app", "  suspend: true\n"), receiver("app", "")),
                Options::default(),
                vec![
                    "r.yaml: Receiver tenant/app (github): given again later (r.yaml: Receiver tenant/app), \
                     which the API server keeps instead".into(),
                    "r.yaml: Receiver tenant/app (github): OK\n".into(),
                ],
                0,
            ),
        ];
        let mut failures = Vec::new();
        for (case, text, options, lines, invalid) in cases {
            let checked = check_text(&text, &options);
            let report = &checked.report;
            for line in &lines {
                if !report.contains(line.as_str()) {
                    failures.push(format!("{case}: no {line:?} in:\n{report}"));
                }
            }
            if checked.invalid != invalid {
                failures.push(format!(
                    "{case}: {} invalid, expected {invalid}:\n{report}",
                    checked.invalid
                ));
            }
            if report.contains("hunter2") {
                failures.push(format!("{case}: a secret is printed:\n{report}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn unusable_objects_are_errors_naming_them() {
        let cases = [
            (
                "a Receiver of another version",
                receiver("app", "").replace("hookgate.io/v1alpha1", "hookgate.io/v2"),
                "r.yaml: Receiver tenant/app: apiVersion hookgate.io/v2 is not hookgate.io/v1alpha1",
            ),
            (
                "no name",
                receiver("app", "").replace("  name: app\n  namespace", "  namespace"),
                "r.yaml: object 0 (Receiver) has no metadata.name",
            ),
            (
                "a Secret's data not base64",
                secret("data:\n  token: '%%%'\n"),
                "r.yaml: Secret tenant/webhook-token: data.token is not base64",
            ),
        ];
        for (case, text, expected) in cases {
            let mut objects = Objects::default();
            let error = objects
                .add(&objects_in(&text, "r.yaml").unwrap(), "r.yaml", "default")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{case}: {error}");
        }
    }

    #[test]
    fn other_objects_are_not_taken() {
        let text = "apiVersion: notification.toolkit.fluxcd.io/v1\nkind: Receiver\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let mut objects = Objects::default();
        let taken = objects
            .add(&objects_in(text, "r.yaml").unwrap(), "r.yaml", "default")
            .unwrap();
        assert_eq!(taken, 0);
        assert!(!objects.has_receivers());
    }
}
