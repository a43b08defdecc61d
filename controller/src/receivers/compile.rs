//! From `Receiver` objects and their Secrets to the configuration document the filter is served. Pure:
//! no API calls, no clock.
//!
//! Each receiver is turned into the filter's wire receiver (its secrets inline, in `secretRef.keys`
//! order) and compiled alone by the filter's own compiler; one that does not compile, whose Secret or
//! keys are missing, or that targets another namespace without cross-namespace targets being allowed, is
//! left out with a [`NotReady`] saying why. The rest are compiled together: a receiver whose path an
//! older one holds (by `metadata.creationTimestamp`, then namespace/name) is left out too, so a receiver
//! created later never takes the path of an older one that compiles. No message here holds a secret
//! value: the filter's errors never do, and the ones made here name Secrets and keys, not their values.
//!
//! Flux's Receivers (with `--serve-flux-receivers`) are translated by [`super::flux`] and compiled the
//! same way, beside hookgate's: [`objects`] compiles both kinds together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use hookgate_filter::config::{Config, ConfigError};
use hookgate_filter::providers::{self, Proof};
use hookgate_protocol::{channel, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DynamicObject;
use serde_json::{json, Value};

use super::crd::{Action, Receiver, ReceiverSpec};
use super::flux::{self, Untranslatable};

/// A receiver's `(namespace, name)`.
pub type Key = (String, String);

/// Whose object a receiver is: hookgate's `Receiver` or Flux's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Hookgate,
    Flux,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Self::Hookgate, Self::Flux];

    /// As the metrics' `kind` label says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hookgate => "hookgate",
            Self::Flux => "flux",
        }
    }

    /// How messages name a receiver of this kind.
    fn describe(self, (namespace, name): &Key) -> String {
        match self {
            Self::Hookgate => format!("receiver {namespace}/{name}"),
            Self::Flux => format!("Flux Receiver {namespace}/{name}"),
        }
    }
}

/// The reason of a receiver's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    SecretNotFound,
    SecretKeyNotFound,
    /// The API server did not answer for the Secret (other than "not found").
    SecretUnreadable,
    InvalidSpec,
    CrossNamespaceTarget,
    /// `action: dispatch` in a namespace the controller does not let dispatch (its GitHub token).
    DispatchNotAllowed,
    PathConflict,
    /// A Flux Receiver of a type hookgate does not serve (or serves only with a route's SecurityPolicy).
    UnsupportedType,
    /// A Flux Receiver with a CEL filter hookgate cannot run.
    UnsupportedFilter,
    /// A Flux Receiver with the namespace and name of a hookgate Receiver, which is served instead.
    NameConflict,
    /// Compiled and in the served configuration; no proxy has applied it yet.
    NotServed,
    Served,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Self::SecretNotFound,
        Self::SecretKeyNotFound,
        Self::SecretUnreadable,
        Self::InvalidSpec,
        Self::CrossNamespaceTarget,
        Self::DispatchNotAllowed,
        Self::PathConflict,
        Self::UnsupportedType,
        Self::UnsupportedFilter,
        Self::NameConflict,
        Self::NotServed,
        Self::Served,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretKeyNotFound => "SecretKeyNotFound",
            Self::SecretUnreadable => "SecretUnreadable",
            Self::InvalidSpec => "InvalidSpec",
            Self::CrossNamespaceTarget => "CrossNamespaceTarget",
            Self::DispatchNotAllowed => "DispatchNotAllowed",
            Self::PathConflict => "PathConflict",
            Self::UnsupportedType => "UnsupportedType",
            Self::UnsupportedFilter => "UnsupportedFilter",
            Self::NameConflict => "NameConflict",
            Self::NotServed => "NotServed",
            Self::Served => "Served",
        }
    }
}

/// Why a receiver is left out of the served configuration. The message names fields, Secrets and keys,
/// never a secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub reason: Reason,
    pub message: String,
}

impl NotReady {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The data of one Secret, by key. `Debug` shows the keys only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData(pub BTreeMap<String, Secret>);

/// What the controller has of the Secret a receiver names.
#[derive(Clone, Copy, Debug)]
pub enum SecretState<'a> {
    /// The receiver names no Secret.
    NotNamed,
    Missing,
    /// The API server refused or failed to answer: why, without the Secret's content.
    Unreadable(&'a str),
    Present(&'a SecretData),
}

/// What every receiver is compiled with.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    /// The key the filter signs with, which the served document carries. Text: the document is JSON.
    pub attestation_key: &'a str,
    pub forward_path: &'a str,
    pub allow_cross_namespace: bool,
    /// The namespaces whose receivers may dispatch (with the controller's GitHub token); `None`: any.
    pub dispatch_namespaces: Option<&'a [String]>,
}

/// A receiver that compiled alone. It holds its secrets: its `Debug` shows its key and paths only.
pub struct Candidate {
    pub key: Key,
    pub kind: Kind,
    /// `metadata.creationTimestamp`: of two receivers claiming one path, the older keeps it. `None` (an
    /// object not in the API server yet, read from a file) counts as newer than any.
    pub created: Option<Time>,
    wire: Value,
    /// For each wire secret, the index of its key in `secretRef.keys`.
    secret_fields: Vec<usize>,
    pub paths: Vec<String>,
    /// Keys of `secretRef.keys` the Secret lacks (skipped).
    pub missing_keys: Vec<String>,
    pub suspended: bool,
    /// Where hookgate serves a Flux Receiver differently from Flux.
    notes: Vec<String>,
}

impl Candidate {
    /// The order in which receivers claim paths: the oldest first, then by namespace/name (and hookgate's
    /// before Flux's of the same name, which never both reach here).
    fn seniority(&self) -> (bool, Option<&Time>, &Key, Kind) {
        (
            self.created.is_none(),
            self.created.as_ref(),
            &self.key,
            self.kind,
        )
    }
}

impl fmt::Debug for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidate")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// A receiver of the served document, as its status needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Included {
    pub paths: Vec<String>,
    /// A digest of its wire form, secrets included: changes whenever what the filter enforces for it does.
    pub fingerprint: String,
    pub missing_keys: Vec<String>,
    pub suspended: bool,
    /// Where hookgate serves a Flux Receiver differently from Flux (empty for hookgate's).
    pub notes: Vec<String>,
}

/// The document to serve and what became of each receiver: hookgate's Receivers in `included` and
/// `refused`, Flux's in `flux_included` and `flux_refused`. `document` holds secrets: never log it.
pub struct Compiled {
    pub document: Vec<u8>,
    pub digest: String,
    pub included: BTreeMap<Key, Included>,
    pub refused: BTreeMap<Key, NotReady>,
    pub flux_included: BTreeMap<Key, Included>,
    pub flux_refused: BTreeMap<Key, NotReady>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("digest", &self.digest)
            .field("included", &self.included.keys().collect::<Vec<_>>())
            .field("refused", &self.refused)
            .field(
                "flux_included",
                &self.flux_included.keys().collect::<Vec<_>>(),
            )
            .field("flux_refused", &self.flux_refused)
            .finish_non_exhaustive()
    }
}

/// The `(namespace, name)` of an object.
pub fn key_of(object: &Receiver) -> Key {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// Compiles one receiver alone, with what the controller has of the Secret it names.
pub fn receiver(
    object: &Receiver,
    secret: SecretState,
    settings: &Settings,
) -> Result<Candidate, NotReady> {
    let key = key_of(object);
    let spec = &object.spec;
    cross_namespace(spec, &key.0, settings.allow_cross_namespace)?;
    dispatch_allowed(spec, &key.0, settings.dispatch_namespaces)?;
    let secrets = secrets(spec, &key.0, secret)?;
    let wire = wire_receiver(&key, spec, &secrets.values);
    let config = parse(std::slice::from_ref(&wire), settings)
        .map_err(|error| invalid(&error, &secrets.fields))?;
    let paths = config
        .receivers
        .first()
        .map(|r| r.paths.clone())
        .unwrap_or_default();
    Ok(Candidate {
        key,
        kind: Kind::Hookgate,
        created: object.metadata.creation_timestamp.clone(),
        wire,
        secret_fields: secrets.fields,
        paths,
        missing_keys: secrets.missing,
        suspended: spec.suspend,
        notes: Vec::new(),
    })
}

/// Compiles one Flux Receiver alone ([`flux::as_receiver`], then as a hookgate receiver), with what the
/// controller has of the Secret it names. Messages name the Flux object's fields (`spec.resources[1]`).
pub fn flux_receiver(
    object: &DynamicObject,
    secret: SecretState,
    settings: &Settings,
) -> Result<Candidate, NotReady> {
    let (translated, notes) = flux::as_receiver(object).map_err(|refusal| {
        let reason = match &refusal {
            Untranslatable::Invalid(_) => Reason::InvalidSpec,
            Untranslatable::UnsupportedType(_) => Reason::UnsupportedType,
            Untranslatable::UnsupportedFilter(_) => Reason::UnsupportedFilter,
        };
        NotReady::new(reason, refusal.to_string())
    })?;
    let mut candidate = receiver(&translated, secret, settings).map_err(|not_ready| NotReady {
        message: flux_fields(&not_ready.message),
        ..not_ready
    })?;
    candidate.kind = Kind::Flux;
    candidate.notes = notes
        .iter()
        // Served at all only when allowed: then nothing differs from Flux.
        .filter(|note| !matches!(note, flux::Note::CrossNamespace { .. }))
        .map(ToString::to_string)
        .collect();
    Ok(candidate)
}

/// A message about a translated Flux receiver, naming the Flux object's fields: its targets are its
/// `spec.resources` (one for one), its one secret key is `spec.secretRef`'s `token`.
fn flux_fields(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("spec.targets") {
        return format!("spec.resources{rest}");
    }
    if let Some(rest) = message.strip_prefix("spec.secretRef.keys[0]") {
        return format!("spec.secretRef{rest}");
    }
    message.to_string()
}

/// Compiles every receiver the controller watches: hookgate's and Flux's objects, each with the Secret
/// `secret(namespace, name)` gives. A Flux Receiver with the namespace and name of a hookgate Receiver
/// is left out (`NameConflict`): the filter serves one receiver under a name, and a hookgate Receiver is
/// the explicit choice (`hookgate import` writes them under their Flux Receivers' names).
pub fn objects<'a>(
    hookgate: &[&Receiver],
    flux: &[&DynamicObject],
    secret: impl Fn(&str, &str) -> SecretState<'a>,
    settings: &Settings,
) -> Compiled {
    let mut candidates = Vec::with_capacity(hookgate.len() + flux.len());
    let mut refused = BTreeMap::new();
    let mut names = HashSet::with_capacity(hookgate.len());
    for object in hookgate {
        let key = key_of(object);
        let state = match &object.spec.secret_ref {
            None => SecretState::NotNamed,
            Some(secret_ref) => secret(&key.0, &secret_ref.name),
        };
        match receiver(object, state, settings) {
            Ok(candidate) => candidates.push(candidate),
            Err(not_ready) => {
                refused.insert((Kind::Hookgate, key.clone()), not_ready);
            }
        }
        names.insert(key);
    }
    for object in flux {
        let key = (
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        if names.contains(&key) {
            let message = format!(
                "the hookgate Receiver {}/{} (hookgate.io) of the same name is served in its place: \
                 hookgate serves one receiver per namespace and name",
                key.0, key.1
            );
            refused.insert(
                (Kind::Flux, key),
                NotReady::new(Reason::NameConflict, message),
            );
            continue;
        }
        let state = match flux::secret_name(object) {
            None => SecretState::NotNamed,
            Some(name) => secret(&key.0, name),
        };
        match flux_receiver(object, state, settings) {
            Ok(candidate) => candidates.push(candidate),
            Err(not_ready) => {
                refused.insert((Kind::Flux, key), not_ready);
            }
        }
    }
    together(candidates, refused, settings)
}

/// Compiles the candidates together; `refused` (the receivers that did not compile alone) is completed
/// with the ones left out here. For callers of hookgate Receivers only (offline checks).
pub fn document(
    candidates: Vec<Candidate>,
    refused: BTreeMap<Key, NotReady>,
    settings: &Settings,
) -> Compiled {
    let refused = refused
        .into_iter()
        .map(|(key, not_ready)| ((Kind::Hookgate, key), not_ready))
        .collect();
    together(candidates, refused, settings)
}

/// Compiles the candidates together. Paths go to the oldest receiver that claims them
/// ([`Candidate::seniority`]): a later one is left out (`PathConflict`), whatever order they come in.
/// The document lists the receivers in namespace/name order, so its bytes depend on the objects only.
fn together(
    mut candidates: Vec<Candidate>,
    mut refused: BTreeMap<(Kind, Key), NotReady>,
    settings: &Settings,
) -> Compiled {
    candidates.sort_by(|a, b| a.seniority().cmp(&b.seniority()));
    // Each path taken, by the index in `kept` of the receiver holding it.
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let conflict = candidate
            .paths
            .iter()
            .find_map(|path| taken.get(path).map(|holder| (path, &kept[*holder])));
        if let Some((path, holder)) = conflict {
            let message = format!(
                "path {path} is already used by {}, {}",
                holder.kind.describe(&holder.key),
                if holder.created == candidate.created {
                    "first in namespace/name order (created in the same second)"
                } else {
                    "which is older"
                }
            );
            refused.insert(
                (candidate.kind, candidate.key),
                NotReady::new(Reason::PathConflict, message),
            );
            continue;
        }
        for path in &candidate.paths {
            taken.insert(path.clone(), kept.len());
        }
        kept.push(candidate);
    }
    kept.sort_by(|a, b| (&a.key, a.kind).cmp(&(&b.key, b.kind)));
    // What the filter refuses of the whole (nothing, once each compiled alone and the paths are apart)
    // leaves out the receiver it names, and the rest is compiled again.
    while !kept.is_empty() {
        let wires: Vec<Value> = kept.iter().map(|c| c.wire.clone()).collect();
        let Err(error) = parse(&wires, settings) else {
            break;
        };
        let Some(index) = receiver_index(&error.field).filter(|i| *i < kept.len()) else {
            break;
        };
        let candidate = kept.remove(index);
        let mut not_ready = invalid(&error, &candidate.secret_fields);
        if error.reason.contains("already used") {
            not_ready.reason = Reason::PathConflict;
        }
        if candidate.kind == Kind::Flux {
            not_ready.message = flux_fields(&not_ready.message);
        }
        refused.insert((candidate.kind, candidate.key), not_ready);
    }
    let wires: Vec<Value> = kept.iter().map(|c| c.wire.clone()).collect();
    let document = document_bytes(&wires, settings);
    let (mut included, mut flux_included) = (BTreeMap::new(), BTreeMap::new());
    for candidate in kept {
        let fingerprint = channel::digest(&serde_json::to_vec(&candidate.wire).unwrap_or_default());
        let entry = Included {
            paths: candidate.paths,
            fingerprint,
            missing_keys: candidate.missing_keys,
            suspended: candidate.suspended,
            notes: candidate.notes,
        };
        match candidate.kind {
            Kind::Hookgate => included.insert(candidate.key, entry),
            Kind::Flux => flux_included.insert(candidate.key, entry),
        };
    }
    let (mut hookgate_refused, mut flux_refused) = (BTreeMap::new(), BTreeMap::new());
    for ((kind, key), not_ready) in refused {
        match kind {
            Kind::Hookgate => hookgate_refused.insert(key, not_ready),
            Kind::Flux => flux_refused.insert(key, not_ready),
        };
    }
    Compiled {
        digest: channel::digest(&document),
        document,
        included,
        refused: hookgate_refused,
        flux_included,
        flux_refused,
    }
}

/// A receiver that dispatches uses the controller's GitHub token on the repository it names: only in the
/// namespaces the platform lets do so (`--dispatch-namespace`).
fn dispatch_allowed(
    spec: &ReceiverSpec,
    namespace: &str,
    allowed: Option<&[String]>,
) -> Result<(), NotReady> {
    match allowed {
        Some(namespaces)
            if spec.action == Some(Action::Dispatch) && !namespaces.iter().any(|n| n == namespace) =>
        {
            Err(NotReady::new(
                Reason::DispatchNotAllowed,
                format!(
                    "spec.action: dispatch uses the controller's GitHub token, and receivers in namespace \
                     {namespace} may not dispatch (see --dispatch-namespace)"
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn cross_namespace(spec: &ReceiverSpec, namespace: &str, allowed: bool) -> Result<(), NotReady> {
    if allowed {
        return Ok(());
    }
    for (i, target) in spec.targets.iter().flatten().enumerate() {
        if let Some(other) = target
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty() && *ns != namespace)
        {
            return Err(NotReady::new(
                Reason::CrossNamespaceTarget,
                format!(
                    "spec.targets[{i}].namespace: {other} is not the receiver's namespace, and the \
                     controller refuses targets in other namespaces (see --allow-cross-namespace)"
                ),
            ));
        }
    }
    Ok(())
}

/// A receiver's secret values, in `secretRef.keys` order, with the index of each one's key.
#[derive(Default)]
struct Secrets {
    values: Vec<String>,
    fields: Vec<usize>,
    missing: Vec<String>,
}

fn secrets(spec: &ReceiverSpec, namespace: &str, state: SecretState) -> Result<Secrets, NotReady> {
    let provider = providers::lookup(&spec.provider);
    let id_token = provider.is_some_and(|p| p.proof() == Proof::VerifiedToken);
    let Some(secret_ref) = &spec.secret_ref else {
        return match provider {
            // The filter names the unknown type.
            Some(_) if !id_token => Err(NotReady::new(
                Reason::InvalidSpec,
                format!("spec.secretRef: is required for type {}", spec.provider),
            )),
            _ => Ok(Secrets::default()),
        };
    };
    if id_token {
        return Err(NotReady::new(
            Reason::InvalidSpec,
            format!(
                "spec.secretRef: type {} proves with an ID token and takes no secret",
                spec.provider
            ),
        ));
    }
    let name = &secret_ref.name;
    let data = match state {
        SecretState::Present(data) => data,
        SecretState::NotNamed | SecretState::Missing => {
            return Err(NotReady::new(
                Reason::SecretNotFound,
                format!("Secret {name} not found in namespace {namespace}"),
            ))
        }
        SecretState::Unreadable(why) => {
            return Err(NotReady::new(
                Reason::SecretUnreadable,
                format!("Secret {name} could not be read: {why}"),
            ))
        }
    };
    let mut secrets = Secrets::default();
    for (index, key) in secret_ref.keys.iter().enumerate() {
        let Some(value) = data.0.get(key) else {
            secrets.missing.push(key.clone());
            continue;
        };
        let text = std::str::from_utf8(value.expose()).map_err(|_| {
            NotReady::new(
                Reason::InvalidSpec,
                format!("spec.secretRef.keys[{index}]: Secret {name} key {key} is not UTF-8 text"),
            )
        })?;
        secrets.values.push(text.to_string());
        secrets.fields.push(index);
    }
    if secrets.values.is_empty() {
        return Err(NotReady::new(
            Reason::SecretKeyNotFound,
            format!(
                "Secret {name} has none of the keys {}",
                secret_ref.keys.join(", ")
            ),
        ));
    }
    Ok(secrets)
}

/// The filter's wire receiver for `spec`: its fields as they are (the spec mirrors the wire format),
/// name and namespace from the object, `secrets` inline, `disabled` from `suspend`.
fn wire_receiver(key: &Key, spec: &ReceiverSpec, secrets: &[String]) -> Value {
    let inline = secrets.iter().map(|s| json!({ "inline": s })).collect();
    wire(key, spec, inline)
}

/// The filter's wire receiver `key` for `spec`, with `secrets` as its wire `secrets` entries (`{"inline":
/// ...}` for the controller, `{"env": ...}` for `hookgate import`'s configuration): the spec's fields as
/// they are, `secretRef` left out, `disabled` for `suspend`.
pub fn wire(key: &Key, spec: &ReceiverSpec, secrets: Vec<Value>) -> Value {
    let mut wire = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    if let Some(fields) = wire.as_object_mut() {
        fields.remove("secretRef");
        fields.remove("suspend");
        fields.insert("namespace".into(), key.0.clone().into());
        fields.insert("name".into(), key.1.clone().into());
        if spec.suspend {
            fields.insert("disabled".into(), true.into());
        }
        if !secrets.is_empty() {
            fields.insert("secrets".into(), secrets.into());
        }
    }
    wire
}

/// The served document: the attestation key, the forward path and `receivers`.
fn document_bytes(receivers: &[Value], settings: &Settings) -> Vec<u8> {
    let document = json!({
        "attestationKey": settings.attestation_key,
        "forwardPath": settings.forward_path,
        "receivers": receivers,
    });
    serde_json::to_vec(&document).unwrap_or_default()
}

/// The filter's compile of a document holding `receivers`, as the filter compiles what it is delivered.
fn parse(receivers: &[Value], settings: &Settings) -> Result<Config, ConfigError> {
    Config::parse(&document_bytes(receivers, settings))
}

/// The index of the receiver a field path `receivers[3].path` names.
fn receiver_index(field: &str) -> Option<usize> {
    field
        .strip_prefix("receivers[")?
        .split_once(']')?
        .0
        .parse()
        .ok()
}

/// A filter error as the receiver's status says it: the field of the object (`spec.targets[0].name`,
/// `spec.secretRef.keys[1]`) and the reason.
fn invalid(error: &ConfigError, secret_fields: &[usize]) -> NotReady {
    NotReady::new(
        Reason::InvalidSpec,
        format!(
            "{}: {}",
            object_field(&error.field, secret_fields),
            error.reason
        ),
    )
}

/// `receivers[0].targets[1].name` → `spec.targets[1].name`; `receivers[0].secrets[1].inline` →
/// `spec.secretRef.keys[k]` (the key the secret came from); `name` → `metadata.name`; `disabled` →
/// `spec.suspend`. A top-level field is the controller's configuration, named as it is.
fn object_field(field: &str, secret_fields: &[usize]) -> String {
    let Some(rest) = field
        .strip_prefix("receivers[")
        .and_then(|r| r.split_once(']'))
        .map(|(_, rest)| rest.strip_prefix('.').unwrap_or(rest))
    else {
        return format!("configuration {field}");
    };
    if rest.is_empty() {
        return "spec".into();
    }
    if let Some(secret) = rest.strip_prefix("secrets") {
        let index = secret
            .strip_prefix('[')
            .and_then(|s| s.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok());
        return match index {
            Some(i) => format!(
                "spec.secretRef.keys[{}]",
                secret_fields.get(i).copied().unwrap_or(i)
            ),
            None => "spec.secretRef".into(),
        };
    }
    let head = rest.split(['.', '[']).next().unwrap_or(rest);
    match head {
        "name" | "namespace" => format!("metadata.{rest}"),
        "disabled" => "spec.suspend".into(),
        _ => format!("spec.{rest}"),
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
