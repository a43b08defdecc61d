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
        dispatch_namespaces: None,
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

/// [`offline`'s GitHub spec](crate::receivers::offline::tests::github) accepting `push` only, `extra`
/// patched over it.
fn github(extra: Value) -> Value {
    use crate::receivers::offline::tests as offline;
    offline::patched(offline::github(json!({"events": ["push"]})), extra)
}

/// A generic-oidc receiver on GitHub Actions' issuer, with `id_token` merged into its `idToken`.
fn oidc(id_token: Value) -> Value {
    let mut block = json!({"jwtProvider": "github-actions",
                           "issuers": ["https://token.actions.githubusercontent.com"]});
    block
        .as_object_mut()
        .unwrap()
        .extend(id_token.as_object().unwrap().clone());
    json!({"type": "generic-oidc", "idToken": block,
           "targets": [{"kind": "GitRepository", "name": "app"}]})
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
            "a kind hookgate does not reconcile",
            github(json!({"targets": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "app"}]})),
            token(),
            false,
            Err((
                Reason::InvalidSpec,
                "spec.targets[0].kind: ConfigMap is not a kind hookgate reconciles",
            )),
        ),
        (
            "an ExternalArtifact, which Flux v1.9.3 reconciles",
            github(json!({"targets": [{"kind": "ExternalArtifact", "name": "app"}]})),
            token(),
            false,
            Ok(flux(TOKEN)),
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
            "generic-oidc on GitHub's issuer bound to a repository",
            oidc(json!({"validations": ["claims.repository == 'example/app'"]})),
            None,
            false,
            Ok(vec![flux_webhook_path("", "app", "tenant")]),
        ),
        (
            "generic-oidc on GitHub's issuer with no validation",
            oidc(json!({})),
            None,
            false,
            Err((
                Reason::InvalidSpec,
                "spec.idToken.validations: at least one validation (or idToken.email) is required",
            )),
        ),
        (
            "generic-oidc on GitHub's issuer bound to no repository",
            oidc(json!({"validations": ["claims.ref == 'refs/heads/main'"]})),
            None,
            false,
            Err((
                Reason::InvalidSpec,
                "spec.idToken.validations: issuer https://token.actions.githubusercontent.com signs \
                 tokens for GitHub Actions, for every repository",
            )),
        ),
        (
            "generic-oidc on GitHub's issuer accepting any token, as it says",
            oidc(json!({"acceptAnyTokenFromIssuer": true})),
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
                   "audience": "hookgate", "email": "ci@example.com", "validations": ["claims.sub != ''"],
                   "acceptAnyTokenFromIssuer": true},
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

/// A receiver that dispatches uses the controller's GitHub token: only in the namespaces the platform
/// lists, whatever else is right with it.
#[test]
fn only_the_listed_namespaces_may_dispatch() {
    let spec = json!({"type": "bearer", "secretRef": {"name": "s"}, "path": "/hook/rollback",
                      "action": "dispatch", "dispatch": {"repository": "example/gitops",
                      "eventType": "argo-degraded", "application": "guestbook", "applications": ["guestbook"]}});
    let secret = data(&[("token", TOKEN.as_bytes())]);
    let platform = ["hookgate-system".to_string()];
    let settings = Settings {
        dispatch_namespaces: Some(&platform),
        ..settings()
    };
    for (case, namespace, allowed) in [
        ("the platform's namespace", "hookgate-system", true),
        ("a tenant's namespace", "tenant", false),
    ] {
        let object = object(namespace, "rollback", spec.clone());
        let result = receiver(&object, SecretState::Present(&secret), &settings);
        match (allowed, result) {
            (true, Ok(_)) => {}
            (false, Err(not_ready)) => {
                assert_eq!(not_ready.reason, Reason::DispatchNotAllowed, "{case}");
                assert!(not_ready.message.contains("--dispatch-namespace"), "{case}");
            }
            (_, other) => panic!("{case}: {:?}", other.map(|c| c.key)),
        }
    }
    // A receiver that reconciles is not concerned.
    let object = object("tenant", "app", github(json!({})));
    let secret = data(&[("token", TOKEN.as_bytes())]);
    assert!(receiver(&object, SecretState::Present(&secret), &settings).is_ok());
}

fn candidate(namespace: &str, name: &str, path: &str) -> Candidate {
    let object = object(namespace, name, github(json!({"path": path})));
    let secret = data(&[("token", TOKEN.as_bytes())]);
    receiver(&object, SecretState::Present(&secret), &settings()).unwrap()
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.into(), name.into())
}

/// A path taken twice by receivers of the same age (here: none known) leaves out the later one in
/// namespace/name order, whatever order they come in; the document is the same bytes either way.
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
            "path /hook/shared is already used by receiver a/first, first in namespace/name order \
             (created in the same second)"
        )
    );
    let config = Config::parse(&first.document).unwrap();
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

fn created(object: &mut Receiver, at: &str) {
    object.metadata.creation_timestamp = Some(Time(at.parse().unwrap()));
}

/// Every order of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

/// A tenant cannot take another tenant's path by naming its receiver so that it sorts first: the older
/// receiver keeps the path, whatever the input order; the newer one is refused and told by whom.
#[test]
fn a_newer_receiver_cannot_take_an_older_ones_path() {
    let secret = data(&[("token", TOKEN.as_bytes())]);
    let pinned = |namespace: &str, name: &str, path: &str, at: Option<&str>| {
        let mut object = object(namespace, name, github(json!({"path": path})));
        if let Some(at) = at {
            created(&mut object, at);
        }
        object
    };
    // (case, receivers as (namespace, name, created), the one keeping /hook/shared, why)
    let cases = [
        (
            "a newer receiver in aaa pins the path of an older one in zzz",
            [
                ("zzz", "victim", Some("2030-01-01T00:00:00Z")),
                ("aaa", "thief", Some("2030-01-02T00:00:00Z")),
            ],
            ("zzz", "victim"),
            "which is older",
        ),
        (
            "created in the same second: namespace/name decides",
            [
                ("zzz", "second", Some("2030-01-01T00:00:00Z")),
                ("aaa", "first", Some("2030-01-01T00:00:00Z")),
            ],
            ("aaa", "first"),
            "first in namespace/name order (created in the same second)",
        ),
        (
            "one not created yet (a file checked offline) is newer than any",
            [
                ("zzz", "created", Some("2030-01-01T00:00:00Z")),
                ("aaa", "in-a-file", None),
            ],
            ("zzz", "created"),
            "which is older",
        ),
    ];
    for (case, claimants, holder, why) in cases {
        let mut objects: Vec<Receiver> = claimants
            .iter()
            .map(|(ns, name, at)| pinned(ns, name, "/hook/shared", *at))
            .collect();
        objects.push(pinned(
            "mmm",
            "bystander",
            "/hook/other",
            Some("2031-01-01T00:00:00Z"),
        ));
        let holder = key(holder.0, holder.1);
        let loser = claimants
            .iter()
            .map(|(ns, name, _)| key(ns, name))
            .find(|k| *k != holder)
            .unwrap();
        let mut documents = Vec::new();
        for order in permutations(&objects) {
            let candidates = order
                .iter()
                .map(|o| receiver(o, SecretState::Present(&secret), &settings()).unwrap())
                .collect();
            let compiled = document(candidates, BTreeMap::new(), &settings());
            let included: Vec<&Key> = compiled.included.keys().collect();
            assert_eq!(included.len(), 2, "{case}: {compiled:?}");
            assert!(
                compiled.included.contains_key(&holder),
                "{case}: {compiled:?}"
            );
            assert!(
                compiled.included.contains_key(&key("mmm", "bystander")),
                "{case}: {compiled:?}"
            );
            assert_eq!(
                compiled.refused.get(&loser),
                Some(&NotReady::new(
                    Reason::PathConflict,
                    format!(
                        "path /hook/shared is already used by receiver {}/{}, {why}",
                        holder.0, holder.1
                    )
                )),
                "{case}"
            );
            documents.push(compiled.document);
        }
        assert!(
            documents.windows(2).all(|w| w[0] == w[1]),
            "{case}: the same bytes in every order"
        );
    }
}

fn flux_object(namespace: &str, name: &str, spec: Value, at: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "creationTimestamp": at},
        "spec": spec}))
    .unwrap()
}

fn flux_github(extra: Value) -> Value {
    let mut spec = json!({"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
        "resources": [{"kind": "GitRepository", "name": "app"}]});
    for (field, value) in extra.as_object().unwrap() {
        spec[field] = value.clone();
    }
    spec
}

const EARLY: &str = "2030-01-01T00:00:00Z";
const LATE: &str = "2030-06-01T00:00:00Z";

/// What became of one receiver of a compile of [`objects`]: its paths and notes, or its reason and the
/// start of its message.
type FluxExpected = Result<(Vec<String>, Vec<&'static str>), (Reason, String)>;

/// Flux's Receivers compiled beside hookgate's: the Flux receiver `tenant/app` of each case, with the
/// Secret `tenant/webhook-token` (`token` → TOKEN unless the case says otherwise) and the hookgate
/// Receivers the case adds.
#[test]
fn flux_receivers_compile_or_say_why_without_secret_values() {
    let flux_path = |name: &str| vec![flux_webhook_path(TOKEN, name, "tenant")];
    let refused = |reason: Reason, start: &str| Err((reason, start.to_string()));
    // (case, Flux spec, Secret data (None: not found), hookgate Receivers (name, spec, created),
    //  cross-namespace allowed, expected of the Flux receiver, expected of the hookgate ones)
    type Case = (
        &'static str,
        Value,
        Option<SecretData>,
        Vec<(&'static str, Value, &'static str)>,
        bool,
        FluxExpected,
        Vec<(&'static str, Result<(), Reason>)>,
    );
    let token = || Some(data(&[("token", TOKEN.as_bytes())]));
    let cases: Vec<Case> = vec![
        (
            "github on Flux's path",
            flux_github(json!({})),
            token(),
            vec![],
            false,
            Ok((flux_path("app"), vec![])),
            vec![],
        ),
        (
            "suspended: served, refusing every delivery",
            flux_github(json!({"suspend": true})),
            token(),
            vec![],
            false,
            // 503 without verifying, as Flux answers: nothing to note.
            Ok((flux_path("app"), vec![])),
            vec![],
        ),
        (
            "events Flux does not check are left out",
            json!({"type": "harbor", "events": ["PUSH_ARTIFACT"], "secretRef": {"name": "webhook-token"},
                   "resources": [{"kind": "GitRepository", "name": "app"}]}),
            token(),
            vec![],
            false,
            Ok((
                flux_path("app"),
                vec!["spec.events dropped: Flux does not check events for type `harbor`"],
            )),
            vec![],
        ),
        (
            "no Secret",
            flux_github(json!({})),
            None,
            vec![],
            false,
            refused(
                Reason::SecretNotFound,
                "Secret webhook-token not found in namespace tenant",
            ),
            vec![],
        ),
        (
            "a Secret without Flux's key",
            flux_github(json!({})),
            Some(data(&[("password", TOKEN.as_bytes())])),
            vec![],
            false,
            refused(
                Reason::SecretKeyNotFound,
                "Secret webhook-token has none of the keys token",
            ),
            vec![],
        ),
        (
            "a token that is not text",
            flux_github(json!({})),
            Some(data(&[("token", &[0xff, 0xfe])])),
            vec![],
            false,
            refused(
                Reason::InvalidSpec,
                "spec.secretRef: Secret webhook-token key token is not UTF-8 text",
            ),
            vec![],
        ),
        (
            "gcr needs a SecurityPolicy a Flux Receiver does not name",
            flux_github(json!({"type": "gcr", "events": []})),
            token(),
            vec![],
            false,
            refused(Reason::UnsupportedType, "type `gcr` proves with an ID token"),
            vec![],
        ),
        (
            "a resourceFilter hookgate cannot run",
            flux_github(json!({"resourceFilter": "req.tag.matches('v.*')"})),
            token(),
            vec![],
            false,
            refused(
                Reason::UnsupportedFilter,
                "spec.resourceFilter is a CEL expression hookgate cannot run",
            ),
            vec![],
        ),
        (
            "a resource in another namespace",
            flux_github(json!({"resources": [{"kind": "GitRepository", "name": "app"},
                                             {"kind": "GitRepository", "name": "app", "namespace": "other"}]})),
            token(),
            vec![],
            false,
            refused(
                Reason::CrossNamespaceTarget,
                "spec.resources[1].namespace: other is not the receiver's namespace",
            ),
            vec![],
        ),
        (
            "a resource in another namespace, allowed",
            flux_github(json!({"resources": [{"kind": "GitRepository", "name": "app", "namespace": "other"}]})),
            token(),
            vec![],
            true,
            Ok((flux_path("app"), vec![])),
            vec![],
        ),
        (
            "a resource hookgate cannot name",
            flux_github(json!({"resources": [{"kind": "GitRepository", "name": "Web App"}]})),
            token(),
            vec![],
            false,
            refused(Reason::InvalidSpec, "spec.resources[0].name: name must be an object name"),
            vec![],
        ),
        (
            "a Flux Receiver's ArtifactGenerator",
            flux_github(json!({"resources": [{"apiVersion": "source.extensions.fluxcd.io/v1beta1",
                                              "kind": "ArtifactGenerator", "name": "app"}]})),
            token(),
            vec![],
            false,
            Ok((flux_path("app"), vec![])),
            vec![],
        ),
        (
            "a hookgate Receiver of the same name takes its place",
            flux_github(json!({})),
            token(),
            vec![("app", github(json!({})), LATE)],
            false,
            refused(
                Reason::NameConflict,
                "the hookgate Receiver tenant/app (hookgate.io) of the same name is served in its place",
            ),
            vec![("app", Ok(()))],
        ),
        (
            "a hookgate Receiver of the same name takes its place, even refused",
            flux_github(json!({})),
            token(),
            vec![("app", github(json!({"secretRef": {"name": "missing"}})), LATE)],
            false,
            refused(
                Reason::NameConflict,
                "the hookgate Receiver tenant/app (hookgate.io) of the same name",
            ),
            vec![("app", Err(Reason::SecretNotFound))],
        ),
        (
            "a newer hookgate Receiver pinning the Flux Receiver's path",
            flux_github(json!({})),
            token(),
            vec![("pinned", github(json!({"path": flux_webhook_path(TOKEN, "app", "tenant")})), LATE)],
            false,
            Ok((flux_path("app"), vec![])),
            vec![("pinned", Err(Reason::PathConflict))],
        ),
        (
            "an older hookgate Receiver holding the Flux Receiver's path",
            flux_github(json!({})),
            token(),
            vec![("pinned", github(json!({"path": flux_webhook_path(TOKEN, "app", "tenant")})), "2029-01-01T00:00:00Z")],
            false,
            refused(
                Reason::PathConflict,
                &format!(
                    "path {} is already used by receiver tenant/pinned, which is older",
                    flux_webhook_path(TOKEN, "app", "tenant")
                ),
            ),
            vec![("pinned", Ok(()))],
        ),
    ];
    let mut failures = Vec::new();
    for (case, spec, secret, hookgate, allow, expected, expected_hookgate) in cases {
        let settings = Settings {
            allow_cross_namespace: allow,
            ..settings()
        };
        let flux = flux_object("tenant", "app", spec, EARLY);
        let hookgate: Vec<Receiver> = hookgate
            .into_iter()
            .map(|(name, spec, at)| {
                let mut object = object("tenant", name, spec);
                created(&mut object, at);
                object
            })
            .collect();
        let hookgate_refs: Vec<&Receiver> = hookgate.iter().collect();
        let lookup = |namespace: &str, name: &str| match &secret {
            Some(data) if namespace == "tenant" && name == "webhook-token" => {
                SecretState::Present(data)
            }
            _ => SecretState::Missing,
        };
        let compiled = objects(&hookgate_refs, &[&flux], lookup, &settings);
        assert_no_secret(case, &format!("{compiled:?}"));
        let app = key("tenant", "app");
        let got = match (
            compiled.flux_included.get(&app),
            compiled.flux_refused.get(&app),
        ) {
            (Some(included), None) => Ok((included.paths.clone(), included.notes.clone())),
            (None, Some(not_ready)) => Err(not_ready.clone()),
            other => panic!("{case}: {other:?}"),
        };
        let matches = match (&got, &expected) {
            (Ok((paths, notes)), Ok((want_paths, want_notes))) => {
                paths == want_paths && notes == want_notes
            }
            (Err(not_ready), Err((reason, start))) => {
                not_ready.reason == *reason && not_ready.message.starts_with(start.as_str())
            }
            _ => false,
        };
        if !matches {
            failures.push(format!("{case}: want {expected:?}, got {got:?}"));
        }
        for (name, want) in expected_hookgate {
            let key = key("tenant", name);
            let got = match (compiled.included.get(&key), compiled.refused.get(&key)) {
                (Some(_), None) => Ok(()),
                (None, Some(not_ready)) => Err(not_ready.reason),
                other => panic!("{case}: {name}: {other:?}"),
            };
            if got != want {
                failures.push(format!(
                    "{case}: hookgate {name}: want {want:?}, got {got:?}"
                ));
            }
        }
        if let Ok(config) = Config::parse(&compiled.document) {
            assert_no_secret(case, &format!("{:?}", config.receivers));
        } else {
            failures.push(format!("{case}: the document does not compile"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A Flux Receiver reaches the filter under its own name and namespace, with its token inline and its
/// resources as targets; the document lists hookgate's and Flux's receivers in namespace/name order.
#[test]
fn a_flux_receiver_is_served_under_its_own_name() {
    let flux = flux_object("tenant", "webapp", flux_github(json!({})), EARLY);
    let mut hookgate = object("tenant", "api", github(json!({})));
    created(&mut hookgate, LATE);
    let secret = data(&[("token", TOKEN.as_bytes())]);
    let compiled = objects(
        &[&hookgate],
        &[&flux],
        |_, _| SecretState::Present(&secret),
        &settings(),
    );
    let document: Value = serde_json::from_slice(&compiled.document).unwrap();
    assert_eq!(
        document["receivers"],
        json!([
            {"name": "api", "namespace": "tenant", "type": "github", "events": ["push"],
             "secrets": [{"inline": TOKEN}], "targets": [{"kind": "GitRepository", "name": "app"}]},
            {"name": "webapp", "namespace": "tenant", "type": "github", "events": ["push"],
             "secrets": [{"inline": TOKEN}], "targets": [{"kind": "GitRepository", "name": "app"}]},
        ])
    );
    assert_eq!(
        compiled.flux_included[&key("tenant", "webapp")].paths,
        [flux_webhook_path(TOKEN, "webapp", "tenant")]
    );
    assert!(compiled.included.contains_key(&key("tenant", "api")));
    assert!(compiled.refused.is_empty() && compiled.flux_refused.is_empty());
}
