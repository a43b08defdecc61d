//! The configuration's wire format: one serde struct per JSON object. Reading it checks the shape (field
//! names, JSON types, required fields); what the values mean is checked by `compile`.
//!
//! Every optional field is an `Option`, so `null` stands for an absent field. Every object is an
//! [`Object`], which refuses any other JSON kind (serde's derive would take a list as the fields in order).
//! The fields that hold secret material or name where it is read through types that describe a wrong
//! value by its JSON kind only: serde's own messages quote the value.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::DeserializeOwned;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::{receiver_label, ConfigError};
use crate::dispatch::DispatchConfig;
use hookgate_protocol::{Action, Secret, Target};

/// The field an error names when it is about the whole document.
pub const DOCUMENT: &str = "(document)";

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    pub receivers: Vec<Object<Receiver>>,
    /// The key that signs forwarded requests.
    pub attestation_key: SecretText,
    /// Where verified deliveries go; default the protocol's.
    pub forward_path: Option<String>,
}

/// One receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Receiver {
    pub name: String,
    pub namespace: String,
    /// The provider's name in `providers::PROVIDERS`.
    #[serde(rename = "type")]
    pub provider: String,
    pub events: Option<Vec<String>>,
    /// Absent for types whose senders prove themselves with an ID token.
    #[serde(default, deserialize_with = "secret_refs")]
    pub secrets: Option<Vec<Object<SecretRef>>>,
    /// What an ID token must say, for types whose senders prove themselves with one.
    pub id_token: Option<Object<IdToken>>,
    /// A pinned path instead of one Flux path per secret.
    pub path: Option<String>,
    pub refs: Option<Object<Refs>>,
    pub body_limit: Option<u64>,
    pub allow_sha1: Option<bool>,
    /// Refuse a delivery whose proof does not sign the body, where the type accepts both (GitLab).
    pub require_signature: Option<bool>,
    pub disabled: Option<bool>,
    pub targets: Option<Vec<Object<Target>>>,
    pub action: Option<Action>,
    pub dispatch: Option<Object<DispatchConfig>>,
    /// CEL over the verified delivery: false answers `202 ignored` at the edge.
    pub filter: Option<String>,
    /// Flux's `spec.resourceFilter`: CEL every target's objects must satisfy, evaluated by the controller.
    pub resource_filter: Option<String>,
}

/// One secret: `{"inline": VALUE}` (the controller puts each key of the receiver's Secret there; the
/// document travels sealed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    pub inline: SecretText,
}

/// The rules for a receiver's ID tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdToken {
    /// The SecurityPolicy `jwt` provider that verifies the tokens on the receiver's route.
    pub jwt_provider: String,
    pub issuers: Option<Vec<String>>,
    pub audience: Option<String>,
    pub email: Option<String>,
    /// CEL over `claims`, each of which must be true.
    pub validations: Option<Vec<String>>,
    /// Accept a token whose claims no validation binds to a sender (see `compile::token_binding`).
    pub accept_any_token_from_issuer: Option<bool>,
}

/// Branch and tag globs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Refs {
    pub branches: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// A JSON object read as `T`; a value of any other kind is refused by its kind ("must be a JSON object,
/// not a list"), never quoted.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_kind(deserializer, Kind::Object, "a JSON object").map(Object)
    }
}

/// Secret material given as a JSON string (a secret, the attestation key).
#[derive(Debug)]
pub struct SecretText(pub Secret);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_kind::<_, String>(deserializer, Kind::String, "a string")
            .map(|text| Self(Secret::from(text)))
    }
}

/// A list of key material given as JSON strings (the bootstrap's controller keys: public, but a private
/// key pasted there by mistake is secret), whose wrong value is described by its kind only: a key given
/// alone, not in a list, must not be quoted back.
#[derive(Debug)]
pub struct SecretList(pub Vec<SecretText>);

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_kind(deserializer, Kind::List, "a list of strings").map(Self)
    }
}

/// A receiver's `secrets`, whose wrong value is described by its kind only.
fn secret_refs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Object<SecretRef>>>, D::Error> {
    read_kind(
        deserializer,
        Kind::List,
        r#"a list of {"inline": ...} objects"#,
    )
    .map(Some)
}

/// The JSON kinds [`read_kind`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    List,
    Object,
}

/// Reads a `T` from a JSON value of kind `kind`; a value of another kind is refused as "must be
/// {expected}, not {its kind}", without its content.
fn read_kind<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
    kind: Kind,
    expected: &'static str,
) -> Result<T, D::Error> {
    deserializer.deserialize_any(KindVisitor {
        kind,
        expected,
        value: PhantomData,
    })
}

struct KindVisitor<T> {
    kind: Kind,
    expected: &'static str,
    value: PhantomData<T>,
}

impl<T> KindVisitor<T> {
    fn refuse<E: de::Error>(&self, found: &str) -> E {
        E::custom(format_args!("must be {}, not {found}", self.expected))
    }
}

// Every kind of JSON value has its method here, so that none reaches serde's defaults, which quote it.
impl<'de, T: Deserialize<'de>> Visitor<'de> for KindVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(self.expected)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(self.refuse("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Err(self.refuse("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Err(self.refuse("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Err(self.refuse("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Err(self.refuse("a number"))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<T, E> {
        Err(self.refuse("a number"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<T, E> {
        Err(self.refuse("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Err(self.refuse("a number"))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        match self.kind {
            Kind::String => T::deserialize(text.into_deserializer()),
            _ => Err(self.refuse("a string")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, list: A) -> Result<T, A::Error> {
        match self.kind {
            Kind::List => T::deserialize(SeqAccessDeserializer::new(list)),
            _ => Err(self.refuse("a list")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, object: A) -> Result<T, A::Error> {
        match self.kind {
            Kind::Object => T::deserialize(MapAccessDeserializer::new(object)),
            _ => Err(self.refuse("an object")),
        }
    }
}

/// Reads `raw` (already valid JSON) as a [`Document`]. An error names the full path of the field and, for
/// a field of a receiver, the receiver as far as `raw` tells.
pub fn read(raw: &Value) -> Result<Document, ConfigError> {
    read_object(raw)
}

/// Reads `raw` (already valid JSON) as the object `T`, with errors named as [`read`] names them.
pub fn read_object<T: DeserializeOwned>(raw: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(raw)
        .map(|Object(object)| object)
        .map_err(|error| located(raw, error))
}

/// `error` as a [`ConfigError`]. serde reports a missing field at the object holding it: the field is
/// named here, with the reason "is required".
fn located(raw: &Value, error: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let mut segments = error.path().iter();
    let receiver = match (segments.next(), segments.next()) {
        (Some(Segment::Map { key }), Some(Segment::Seq { index })) if key == "receivers" => {
            receiver_at(raw, *index)
        }
        _ => None,
    };
    let mut field = field_path(error.path());
    let message = error.into_inner().to_string();
    let reason = match message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
    {
        Some((missing, _)) => {
            push_key(&mut field, missing);
            "is required".to_string()
        }
        None => message,
    };
    ConfigError {
        receiver,
        field: if field.is_empty() {
            DOCUMENT.into()
        } else {
            field
        },
        reason,
    }
}

/// The label of receiver `index` of `raw`, `?` standing for a name or namespace that is not a string;
/// `None` when that receiver is not an object.
fn receiver_at(raw: &Value, index: usize) -> Option<String> {
    let receiver = raw.get("receivers")?.get(index)?;
    let part = |key: &str| receiver.get(key).and_then(Value::as_str).unwrap_or("?");
    receiver
        .is_object()
        .then(|| receiver_label(part("namespace"), part("name")))
}

/// `receivers[0].secrets[1].inline`, `receivers[0].targets[1].matchLabels.app`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let mut field = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(field, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut field, key),
            Segment::Unknown => push_key(&mut field, "?"),
        }
    }
    field
}

/// Appends `.key` to `field` (`key` alone at the start); an empty key is shown quoted, so that the log
/// line still shows which field it is.
fn push_key(field: &mut String, key: &str) {
    if !field.is_empty() {
        field.push('.');
    }
    field.push_str(if key.is_empty() { "\"\"" } else { key });
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    /// Errors of shape: the field names, JSON types and required fields the wire types declare.
    #[test]
    fn shape_errors_name_the_full_path_and_never_show_secret_values() {
        let webapp = Some("flux-system/webapp");
        assert_error_cases(vec![
            (
                "unknown top-level field",
                |d| d["extra"] = 1.into(),
                "extra",
                None,
                "unknown field `extra`, expected one of `receivers`, `attestationKey`, `forwardPath`",
            ),
            (
                "an empty top-level field name (a fuzzer's find)",
                |d| d[""] = 1.into(),
                r#""""#,
                None,
                "unknown field ``, expected one of `receivers`, `attestationKey`, `forwardPath`",
            ),
            (
                "the document a list",
                |d| *d = json!([d["receivers"].take()]),
                "(document)",
                None,
                "must be a JSON object, not a list",
            ),
            (
                "receivers missing",
                |d| *d = json!({}),
                "receivers",
                None,
                "is required",
            ),
            (
                "receivers not a list",
                |d| d["receivers"] = "none".into(),
                "receivers",
                None,
                r#"invalid type: string "none", expected a sequence"#,
            ),
            (
                "a receiver not an object",
                |d| d["receivers"] = json!(["x"]),
                "receivers[0]",
                None,
                "must be a JSON object, not a string",
            ),
            (
                "a receiver as the list of its fields",
                |d| d["receivers"] = json!([["webapp", "flux-system", "github"]]),
                "receivers[0]",
                None,
                "must be a JSON object, not a list",
            ),
            (
                "attestation key a number",
                |d| d["attestationKey"] = secret_number(),
                "attestationKey",
                None,
                "must be a string, not a number",
            ),
            (
                "attestation key a list",
                |d| d["attestationKey"] = json!([SECRET_TEXT]),
                "attestationKey",
                None,
                "must be a string, not a list",
            ),
            (
                "attestation key from a variable (none is ever read)",
                |d| d["attestationKeyEnv"] = "HOOKGATE_ATTESTATION_KEY".into(),
                "attestationKeyEnv",
                None,
                "unknown field `attestationKeyEnv`, expected one of `receivers`, `attestationKey`, `forwardPath`",
            ),
            (
                "unknown receiver field",
                |d| d["receivers"][0]["sekrets"] = SECRET_TEXT.into(),
                "receivers[0].sekrets",
                webapp,
                "unknown field `sekrets`, expected one of `name`, `namespace`, `type`, `events`, `secrets`, `idToken`, `path`, `refs`, `bodyLimit`, `allowSha1`, `requireSignature`, `disabled`, `targets`, `action`, `dispatch`, `filter`, `resourceFilter`",
            ),
            (
                "an empty field name",
                |d| d["receivers"][0][""] = 1.into(),
                r#"receivers[0]."""#,
                webapp,
                "unknown field ``, expected one of `name`, `namespace`, `type`, `events`, `secrets`, `idToken`, `path`, `refs`, `bodyLimit`, `allowSha1`, `requireSignature`, `disabled`, `targets`, `action`, `dispatch`, `filter`, `resourceFilter`",
            ),
            (
                "a name not a string, so unknown in the label",
                |d| d["receivers"][0]["name"] = 5.into(),
                "receivers[0].name",
                Some("flux-system/?"),
                "invalid type: integer `5`, expected a string",
            ),
            (
                "type missing",
                |d| {
                    d["receivers"][0].as_object_mut().unwrap().remove("type");
                },
                "receivers[0].type",
                webapp,
                "is required",
            ),
            (
                "an event not a string",
                |d| d["receivers"][0]["events"] = json!(["push", 5]),
                "receivers[0].events[1]",
                webapp,
                "invalid type: integer `5`, expected a string",
            ),
            (
                "secrets missing",
                |d| {
                    d["receivers"][0].as_object_mut().unwrap().remove("secrets");
                },
                "receivers[0].secrets",
                webapp,
                // Optional in the shape (ID-token types have none), required by meaning.
                "at least one secret is required",
            ),
            (
                "secrets a string",
                |d| d["receivers"][0]["secrets"] = SECRET_TEXT.into(),
                "receivers[0].secrets",
                webapp,
                r#"must be a list of {"inline": ...} objects, not a string"#,
            ),
            (
                "secrets an object",
                |d| d["receivers"][0]["secrets"] = json!({"inline": SECRET_TEXT}),
                "receivers[0].secrets",
                webapp,
                r#"must be a list of {"inline": ...} objects, not an object"#,
            ),
            (
                "a secret a string",
                |d| d["receivers"][0]["secrets"] = json!([SECRET_TEXT]),
                "receivers[0].secrets[0]",
                webapp,
                "must be a JSON object, not a string",
            ),
            (
                "inline secret a number",
                |d| d["receivers"][0]["secrets"][1] = json!({"inline": secret_number()}),
                "receivers[0].secrets[1].inline",
                webapp,
                "must be a string, not a number",
            ),
            (
                "inline secret a list",
                |d| d["receivers"][0]["secrets"][0] = json!({"inline": [SECRET_TEXT]}),
                "receivers[0].secrets[0].inline",
                webapp,
                "must be a string, not a list",
            ),
            (
                "inline secret an object",
                |d| d["receivers"][0]["secrets"][0] = json!({"inline": {SECRET_TEXT: true}}),
                "receivers[0].secrets[0].inline",
                webapp,
                "must be a string, not an object",
            ),
            (
                "inline secret a boolean",
                |d| d["receivers"][0]["secrets"][0] = json!({"inline": true}),
                "receivers[0].secrets[0].inline",
                webapp,
                "must be a string, not a boolean",
            ),
            (
                "a secret from a variable (none is ever read)",
                |d| d["receivers"][0]["secrets"][0] = json!({"env": "GITHUB_SECRET"}),
                "receivers[0].secrets[0].env",
                webapp,
                "unknown field `env`, expected `inline`",
            ),
            (
                "unknown secret field",
                |d| d["receivers"][0]["secrets"][0] = json!({"inlin": SECRET_TEXT}),
                "receivers[0].secrets[0].inlin",
                webapp,
                "unknown field `inlin`, expected `inline`",
            ),
            (
                "body limit a string",
                |d| d["receivers"][0]["bodyLimit"] = "big".into(),
                "receivers[0].bodyLimit",
                webapp,
                r#"invalid type: string "big", expected u64"#,
            ),
            (
                "unknown refs field",
                |d| d["receivers"][0]["refs"] = json!({"branch": ["main"]}),
                "receivers[0].refs.branch",
                webapp,
                "unknown field `branch`, expected `branches` or `tags`",
            ),
            (
                "refs branches not a list",
                |d| d["receivers"][0]["refs"] = json!({"branches": "main"}),
                "receivers[0].refs.branches",
                webapp,
                r#"invalid type: string "main", expected a sequence"#,
            ),
            (
                "unknown target field",
                |d| d["receivers"][0]["targets"][0] = json!({"kind": "Kustomization", "nmae": "x"}),
                "receivers[0].targets[0].nmae",
                webapp,
                "unknown field `nmae`, expected one of `apiVersion`, `kind`, `name`, `namespace`, `matchLabels`, `filter`",
            ),
            (
                "a target not an object",
                |d| d["receivers"][0]["targets"][0] = "GitRepository/webapp".into(),
                "receivers[0].targets[0]",
                webapp,
                "must be a JSON object, not a string",
            ),
            (
                "a label value a number",
                |d| d["receivers"][0]["targets"][1]["matchLabels"]["app"] = 5.into(),
                "receivers[0].targets[1].matchLabels.app",
                webapp,
                "invalid type: integer `5`, expected a string",
            ),
            (
                "unknown action",
                |d| d["receivers"][0]["action"] = "rollback".into(),
                "receivers[0].action",
                webapp,
                "unknown variant `rollback`, expected `reconcile` or `dispatch`",
            ),
            (
                "dispatch repository a number",
                |d| dispatch(d, json!({"repository": 5})),
                "receivers[0].dispatch.repository",
                webapp,
                "invalid type: integer `5`, expected a string",
            ),
            (
                "dispatch repository missing",
                |d| dispatch(d, json!({"eventType": "x"})),
                "receivers[0].dispatch.repository",
                webapp,
                "is required",
            ),
            (
                "dispatch unknown field",
                |d| dispatch(d, json!({"repository": "a/b", "repo": "a/b"})),
                "receivers[0].dispatch.repo",
                webapp,
                "unknown field `repo`, expected one of `repository`, `eventType`, `application`, `applications`",
            ),
            (
                "dispatch not an object",
                |d| dispatch(d, json!("a/b")),
                "receivers[0].dispatch",
                webapp,
                "must be a JSON object, not a string",
            ),
            (
                "second receiver's inline secret",
                |d| second(d)["secrets"] = json!([{"inline": secret_number()}]),
                "receivers[1].secrets[0].inline",
                Some("flux-system/other"),
                "must be a string, not a number",
            ),
        ]);
    }

    /// `null` stands for an absent optional field, at every level.
    #[test]
    fn null_optional_fields_are_absent() {
        let mut document: Value = serde_json::from_str(VALID).unwrap();
        document["forwardPath"] = Value::Null;
        let receiver = &mut document["receivers"][0];
        for field in [
            "events",
            "path",
            "bodyLimit",
            "allowSha1",
            "requireSignature",
            "disabled",
            "action",
            "dispatch",
        ] {
            receiver[field] = Value::Null;
        }
        receiver["refs"]["tags"] = Value::Null;
        receiver["targets"][1]["apiVersion"] = Value::Null;
        let config = parse(&document.to_string()).unwrap();
        let receiver = &config.receivers[0];
        assert!(receiver.events.is_empty() && !receiver.pinned_path && !receiver.disabled);
        assert_eq!(receiver.refs.as_ref().map(|r| r.tags.len()), Some(0));
    }

    /// An object's Debug is its fields', and a secret's field shows no material.
    #[test]
    fn debug_of_the_wire_document_shows_no_secret() {
        let raw = json!({"attestationKey": SECRET_TEXT,
            "receivers": [{"name": "a", "namespace": "b", "type": "github",
                           "secrets": [{"inline": SECRET_TEXT}, {"inline": "hunter2-second"}]}]});
        let shown = format!("{:?}", read(&raw).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("github"), "{shown}");
    }
}
