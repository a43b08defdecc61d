use super::*;
use crate::receivers::crd::ReceiverSpec;
use hookgate_filter::config::flux_webhook_path;
use kube::api::ObjectMeta;
use serde_json::json;

const KEY: &str = "attestation-key-0123456789abcdef";
/// Distinctive secret values: none may appear in any message.
const TOKEN: &str = "hunter2-token-value-0001";
const NEXT: &str = "hunter2-next-value-0002";
const SECRETS: [&str; 3] = [TOKEN, NEXT, "hunter2"];

fn settings() -> Settings<'static> {
    Settings {
        attestation_key: KEY,
        forward_path: hookgate_protocol::DEFAULT_FORWARD_PATH,
        allow_cross_namespace: false,
    }
}

fn object(namespace: &str, name: &str, spec: Value) -> Receiver {
    Receiver {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: serde_json::from_value::<ReceiverSpec>(spec).unwrap(),
        status: None,
    }
}

fn github(extra: Value) -> Value {
    let mut spec = json!({"type": "github", "events": ["push"],
        "secretRef": {"name": "webhook-token"},
        "targets": [{"kind": "GitRepository", "name": "app"}]});
    for (field, value) in extra.as_object().unwrap() {
        if value.is_null() {
            spec.as_object_mut().unwrap().remove(field);
        } else {
            spec[field] = value.clone();
        }
    }
    spec
}

fn data(pairs: &[(&str, &[u8])]) -> SecretData {
    SecretData(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v.to_vec())))
            .collect(),
    )
}

fn assert_no_secret(case: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{case}: shows a secret: {text}");
    }
}

/// (case, spec, Secret data (`None`: not found), cross-namespace allowed, expected: paths of the
/// compiled receiver, or the reason and the start of the message).
type Case = (
    &'static str,
    Value,
    Option<SecretData>,
    bool,
    Result<Vec<String>, (Reason, &'static str)>,
);

fn cases() -> Vec<Case> {
    let token = || Some(data(&[("token", TOKEN.as_bytes())]));
    let flux = |secret: &str| vec![flux_webhook_path(secret, "app", "tenant")];
    vec![
        (
            "github with its Secret",
            github(json!({})),
            token(),
            false,
            Ok(flux(TOKEN)),
        ),
        (
            "a pinned path",
            github(json!({"path": "/hook/tenant-app"})),
            token(),
            false,
            Ok(vec!["/hook/tenant-app".into()]),
        ),
        (
            "two keys, one path each",
            github(json!({"secretRef": {"name": "webhook-token", "keys": ["token", "next"]}})),
            Some(data(&[
                ("token", TOKEN.as_bytes()),
                ("next", NEXT.as_bytes()),
            ])),
            false,
            Ok([flux(TOKEN), flux(NEXT)].concat()),
        ),
        (
            "the next key not there yet",
            github(json!({"secretRef": {"name": "webhook-token", "keys": ["token", "next"]}})),
            token(),
            false,
            Ok(flux(TOKEN)),
        ),
        (
            "the first key removed after a rotation",
            github(json!({"secretRef": {"name": "webhook-token", "keys": ["token", "next"]}})),
            Some(data(&[("next", NEXT.as_bytes())])),
            false,
            Ok(flux(NEXT)),
        ),
        (
            "no Secret",
            github(json!({})),
            None,
            false,
            Err((
                Reason::SecretNotFound,
                "Secret webhook-token not found in namespace tenant",
            )),
        ),
        (
            "none of the keys",
            github(json!({"secretRef": {"name": "webhook-token", "keys": ["a", "b"]}})),
            token(),
            false,
            Err((
                Reason::SecretKeyNotFound,
                "Secret webhook-token has none of the keys a, b",
            )),
        ),
        (
            "no secretRef",
            github(json!({"secretRef": null})),
            None,
            false,
            Err((
                Reason::InvalidSpec,
                "spec.secretRef: is required for type github",
            )),
        ),
        (
            "a secretRef on an ID-token type",
            json!({"type": "gcr", "secretRef": {"name": "x"},
                   "idToken": {"jwtProvider": "google", "audience": "a", "email": "p@x.iam.gserviceaccount.com"},
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            token(),
            false,
            Err((
                Reason::InvalidSpec,
                "spec.secretRef: type gcr proves with an ID token",
            )),
        ),
        (
            "an ID-token type without a Secret",
            json!({"type": "gcr",
                   "idToken": {"jwtProvider": "google", "audience": "a", "email": "p@x.iam.gserviceaccount.com"},
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            None,
            false,
            Ok(vec![flux_webhook_path("", "app", "tenant")]),
        ),
        (
            "a target in another namespace",
            github(json!({"targets": [{"kind": "GitRepository", "name": "app"},
                                      {"kind": "GitRepository", "name": "app", "namespace": "other"}]})),
            token(),
            false,
            Err((
                Reason::CrossNamespaceTarget,
                "spec.targets[1].namespace: other is not the receiver's namespace",
            )),
        ),
        (
            "a target in another namespace, allowed",
            github(
                json!({"targets": [{"kind": "GitRepository", "name": "app", "namespace": "other"}]}),
            ),
            token(),
            true,
            Ok(flux(TOKEN)),
        ),
        (
            "a target in its own namespace, named",
            github(
                json!({"targets": [{"kind": "GitRepository", "name": "app", "namespace": "tenant"}]}),
            ),
            token(),
            false,
            Ok(flux(TOKEN)),
        ),
        (
            "an invalid target name",
            github(json!({"targets": [{"kind": "GitRepository", "name": "Web App"}]})),
            token(),
            false,
            Err((
                Reason::InvalidSpec,
                "spec.targets[0].name: name must be an object name",
            )),
        ),
        (
            "an empty value under the second key",
            github(
                json!({"secretRef": {"name": "webhook-token", "keys": ["missing", "token", "next"]}}),
            ),
            Some(data(&[("token", TOKEN.as_bytes()), ("next", b"")])),
            false,
            Err((Reason::InvalidSpec, "spec.secretRef.keys[2]: is empty")),
        ),
        (
            "a value the type cannot decode",
            json!({"type": "standard-webhooks", "secretRef": {"name": "webhook-token"},
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            Some(data(&[("token", b"whsec_hunter2!!")])),
            false,
            Err((Reason::InvalidSpec, "spec.secretRef.keys[0]: ")),
        ),
        (
            "a value that is not text",
            github(json!({})),
            Some(data(&[("token", &[0xff, 0xfe, 0x68, 0x75])])),
            false,
            Err((
                Reason::InvalidSpec,
                "spec.secretRef.keys[0]: Secret webhook-token key token is not UTF-8 text",
            )),
        ),
        (
            "a pinned path for a type whose proof is its path",
            json!({"type": "generic", "secretRef": {"name": "webhook-token"}, "path": "/hook/x",
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            token(),
            false,
            Err((
                Reason::InvalidSpec,
                "spec.path: type generic has no proof but its secret path",
            )),
        ),
        (
            "the forward path as its path",
            github(json!({"path": hookgate_protocol::DEFAULT_FORWARD_PATH})),
            token(),
            false,
            Err((Reason::InvalidSpec, "spec.path: is the forward path")),
        ),
        (
            "a filter that does not compile",
            github(json!({"filter": "payload.ref =="})),
            token(),
            false,
            Err((Reason::InvalidSpec, "spec.filter: ")),
        ),
        (
            "an unknown type",
            json!({"type": "telepathy", "targets": [{"kind": "GitRepository", "name": "app"}]}),
            None,
            false,
            Err((Reason::InvalidSpec, "spec.type: unknown type \"telepathy\"")),
        ),
    ]
}

#[test]
fn receivers_compile_or_say_why_without_secret_values() {
    let mut failures = Vec::new();
    for (case, spec, secret, allow, expected) in cases() {
        let settings = Settings {
            allow_cross_namespace: allow,
            ..settings()
        };
        let object = object("tenant", "app", spec);
        let state = match (&object.spec.secret_ref, &secret) {
            (None, _) => SecretState::NotNamed,
            (Some(_), None) => SecretState::Missing,
            (Some(_), Some(data)) => SecretState::Present(data),
        };
        let result = receiver(&object, state, &settings);
        match (&result, &expected) {
            (Ok(candidate), Ok(paths)) if candidate.paths == *paths => {
                assert_no_secret(case, &format!("{candidate:?}"));
            }
            (Err(not_ready), Err((reason, start)))
                if not_ready.reason == *reason && not_ready.message.starts_with(start) =>
            {
                assert_no_secret(case, &not_ready.message);
            }
            _ => failures.push(format!(
                "{case}: want {expected:?}, got {:?}",
                result.as_ref().map(|c| &c.paths)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_unreadable_secret_says_why() {
    let object = object("tenant", "app", github(json!({})));
    let not_ready = receiver(
        &object,
        SecretState::Unreadable("403 Forbidden"),
        &settings(),
    )
    .unwrap_err();
    assert_eq!(
        not_ready,
        NotReady::new(
            Reason::SecretUnreadable,
            "Secret webhook-token could not be read: 403 Forbidden"
        )
    );
}

/// The wire receiver is the spec as it is, with the object's name and namespace, the secrets inline in
/// key order and `disabled` for `suspend`.
#[test]
fn the_wire_receiver_is_the_spec_with_its_secrets_inline() {
    let spec = github(
        json!({"suspend": true, "secretRef": {"name": "webhook-token", "keys": ["next", "token"]}}),
    );
    let object = object("tenant", "app", spec);
    let secret = data(&[("token", TOKEN.as_bytes()), ("next", NEXT.as_bytes())]);
    let candidate = receiver(&object, SecretState::Present(&secret), &settings()).unwrap();
    assert!(candidate.suspended);
    assert_eq!(
        candidate.wire,
        json!({"name": "app", "namespace": "tenant", "type": "github", "events": ["push"],
               "secrets": [{"inline": NEXT}, {"inline": TOKEN}], "disabled": true,
               "targets": [{"kind": "GitRepository", "name": "app"}]})
    );
}

/// Every field of the spec reaches the filter under the name it reads (the filter refuses any other):
/// specs that use them all compile.
#[test]
fn every_spec_field_is_a_wire_field() {
    let gitlab_key = providers::lookup("gitlab").unwrap().placeholder_secret("k");
    let cases = [
        (
            "reconcile",
            json!({"type": "github", "events": ["push"], "secretRef": {"name": "s", "keys": ["token"]},
                   "path": "/hook/all-fields", "refs": {"branches": ["main"], "tags": ["v*"]},
                   "bodyLimit": 1024, "allowSha1": true, "suspend": true,
                   "targets": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                                "name": "app", "namespace": "tenant"},
                               {"kind": "Kustomization", "name": "*", "matchLabels": {"app": "x"},
                                "filter": "res.metadata.name != ''"}],
                   "action": "reconcile", "filter": "true", "resourceFilter": "true"}),
            data(&[("token", TOKEN.as_bytes())]),
        ),
        (
            "require a signature",
            json!({"type": "gitlab", "secretRef": {"name": "s", "keys": ["token"]}, "requireSignature": true,
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            data(&[("token", gitlab_key.as_bytes())]),
        ),
        (
            "dispatch",
            json!({"type": "bearer", "secretRef": {"name": "s", "keys": ["token"]}, "path": "/hook/rollback",
                   "action": "dispatch", "dispatch": {"repository": "example/gitops",
                   "eventType": "argo-degraded", "application": "guestbook", "applications": ["guestbook"]}}),
            data(&[("token", TOKEN.as_bytes())]),
        ),
        (
            "ID token",
            json!({"type": "generic-oidc", "idToken": {"jwtProvider": "ci", "issuers": ["https://issuer"],
                   "audience": "hookgate", "email": "ci@example.com", "validations": ["claims.sub != ''"]},
                   "targets": [{"kind": "GitRepository", "name": "app"}]}),
            SecretData::default(),
        ),
    ];
    for (case, spec, secret) in cases {
        let object = object("tenant", "all-fields", spec.clone());
        assert_eq!(
            serde_json::to_value(&object.spec).unwrap(),
            spec,
            "{case}: the spec reads back"
        );
        let state = if object.spec.secret_ref.is_some() {
            SecretState::Present(&secret)
        } else {
            SecretState::NotNamed
        };
        if let Err(not_ready) = receiver(&object, state, &settings()) {
            panic!("{case}: {not_ready:?}");
        }
    }
}

fn candidate(namespace: &str, name: &str, path: &str) -> Candidate {
    let object = object(namespace, name, github(json!({"path": path})));
    let secret = data(&[("token", TOKEN.as_bytes())]);
    receiver(&object, SecretState::Present(&secret), &settings()).unwrap()
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.into(), name.into())
}

/// A path taken twice leaves out the later receiver in namespace/name order, whatever order they come
/// in; the document is the same bytes either way.
#[test]
fn a_path_used_twice_leaves_out_the_later_receiver() {
    let order = |names: [(&str, &str, &str); 3]| {
        let candidates = names
            .iter()
            .map(|(ns, name, path)| candidate(ns, name, path))
            .collect();
        document(candidates, BTreeMap::new(), &settings())
    };
    let first = order([
        ("b", "second", "/hook/shared"),
        ("a", "first", "/hook/shared"),
        ("a", "other", "/hook/other"),
    ]);
    let second = order([
        ("a", "other", "/hook/other"),
        ("a", "first", "/hook/shared"),
        ("b", "second", "/hook/shared"),
    ]);
    assert_eq!(first.document, second.document);
    assert_eq!(first.digest, second.digest);
    assert_eq!(
        first.included.keys().collect::<Vec<_>>(),
        [&key("a", "first"), &key("a", "other")]
    );
    assert_eq!(
        first.refused[&key("b", "second")],
        NotReady::new(
            Reason::PathConflict,
            "path /hook/shared is already used by receiver a/first"
        )
    );
    let config = Config::parse_delivered(&first.document).unwrap();
    let served: Vec<_> = config.receivers.iter().map(|r| r.label()).collect();
    assert_eq!(served, ["a/first", "a/other"]);
    assert_eq!(config.attestation_key.expose(), KEY.as_bytes());
    assert_eq!(config.forward_path, hookgate_protocol::DEFAULT_FORWARD_PATH);
    assert_no_secret("document debug", &format!("{first:?}"));
}

#[test]
fn refusals_carry_over_and_nothing_served_is_an_empty_document() {
    let refused = BTreeMap::from([(
        key("a", "broken"),
        NotReady::new(Reason::SecretNotFound, "Secret x not found in namespace a"),
    )]);
    let compiled = document(Vec::new(), refused.clone(), &settings());
    assert_eq!(compiled.refused, refused);
    assert!(compiled.included.is_empty());
    let document: Value = serde_json::from_slice(&compiled.document).unwrap();
    assert_eq!(
        document,
        json!({"attestationKey": KEY, "forwardPath": hookgate_protocol::DEFAULT_FORWARD_PATH,
               "receivers": []})
    );
    assert_eq!(compiled.digest, channel::digest(&compiled.document));
}

/// A receiver's fingerprint changes with what the filter enforces for it (a rotated secret), and only
/// then.
#[test]
fn the_fingerprint_follows_the_wire_form() {
    let fingerprint = |token: &str, path: &str| {
        let object = object("a", "r", github(json!({"path": path})));
        let secret = data(&[("token", token.as_bytes())]);
        let candidate = receiver(&object, SecretState::Present(&secret), &settings()).unwrap();
        document(vec![candidate], BTreeMap::new(), &settings()).included[&key("a", "r")]
            .fingerprint
            .clone()
    };
    assert_eq!(fingerprint(TOKEN, "/hook/x"), fingerprint(TOKEN, "/hook/x"));
    assert_ne!(fingerprint(TOKEN, "/hook/x"), fingerprint(NEXT, "/hook/x"));
    assert_ne!(fingerprint(TOKEN, "/hook/x"), fingerprint(TOKEN, "/hook/y"));
}

#[test]
fn filter_fields_are_named_as_the_object_names_them() {
    let cases = [
        ("receivers[0].targets[1].name", "spec.targets[1].name"),
        ("receivers[3].secrets[1].inline", "spec.secretRef.keys[2]"),
        ("receivers[0].secrets", "spec.secretRef"),
        ("receivers[0].name", "metadata.name"),
        ("receivers[0].disabled", "spec.suspend"),
        ("receivers[0].idToken.audience", "spec.idToken.audience"),
        ("receivers[0]", "spec"),
        ("attestationKey", "configuration attestationKey"),
    ];
    for (field, expected) in cases {
        assert_eq!(object_field(field, &[0, 2]), expected, "{field}");
    }
}
