use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde_json::json;

use super::source::{chosen_keys, secret_of, url_of};
use super::*;

const SECRET: &str = "the-receivers-secret-0123456789";
const URL: &str = "https://hooks.example.com/hook/app";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn wanted(events: &[&str]) -> Wanted {
    Wanted {
        url: URL.into(),
        secret: SECRET.into(),
        events: set(events),
    }
}

fn hook(id: &str, url: &str, events: &[&str], active: bool, json: bool) -> Hook {
    Hook {
        id: id.into(),
        url: url.into(),
        events: set(events),
        active,
        json,
    }
}

#[test]
fn hooks_are_matched_by_url() {
    let cases = [
        ("the same", URL, true),
        ("host case", "https://HOOKS.example.com/hook/app", true),
        (
            "the default port",
            "https://hooks.example.com:443/hook/app",
            true,
        ),
        (
            "another path",
            "https://hooks.example.com/hook/other",
            false,
        ),
        (
            "a trailing slash is another route",
            "https://hooks.example.com/hook/app/",
            false,
        ),
        ("another scheme", "http://hooks.example.com/hook/app", false),
        (
            "another port",
            "https://hooks.example.com:8443/hook/app",
            false,
        ),
        ("a query", "https://hooks.example.com/hook/app?x=1", false),
        ("path case", "https://hooks.example.com/hook/App", false),
    ];
    for (case, other, same) in cases {
        assert_eq!(same_url(URL, other), same, "{case}");
    }
}

/// (case, hooks listed, replace_secret, updates_secret, plan, duplicates)
type DecisionCase = (&'static str, Vec<Hook>, bool, bool, Plan, Vec<&'static str>);

#[test]
fn the_decision_is_idempotent() {
    let other = "https://hooks.example.com/hook/other";
    let cases: Vec<DecisionCase> = vec![
        ("no hook", vec![], false, true, Plan::Create, vec![]),
        (
            "only hooks at other URLs",
            vec![hook("1", other, &["push"], true, true)],
            false,
            true,
            Plan::Create,
            vec![],
        ),
        (
            "the same hook: nothing written",
            vec![
                hook("1", other, &["push"], true, true),
                hook("2", URL, &["push"], true, true),
            ],
            false,
            true,
            Plan::Unchanged { id: "2".into() },
            vec![],
        ),
        (
            "other events",
            vec![hook("2", URL, &["push", "create"], true, true)],
            false,
            true,
            Plan::Update { id: "2".into() },
            vec![],
        ),
        (
            "inactive",
            vec![hook("2", URL, &["push"], false, true)],
            false,
            true,
            Plan::Update { id: "2".into() },
            vec![],
        ),
        (
            "form-encoded",
            vec![hook("2", URL, &["push"], true, false)],
            false,
            true,
            Plan::Update { id: "2".into() },
            vec![],
        ),
        (
            "--replace-secret where the secret can be updated",
            vec![hook("2", URL, &["push"], true, true)],
            true,
            true,
            Plan::Update { id: "2".into() },
            vec![],
        ),
        (
            "--replace-secret where it cannot (Gitea)",
            vec![hook("2", URL, &["push"], true, true)],
            true,
            false,
            Plan::Replace { old: "2".into() },
            vec![],
        ),
        (
            "--replace-secret with no hook",
            vec![],
            true,
            false,
            Plan::Create,
            vec![],
        ),
        (
            "Gitea, other events: updated in place (the secret stays)",
            vec![hook("2", URL, &["create"], true, true)],
            false,
            false,
            Plan::Update { id: "2".into() },
            vec![],
        ),
        (
            "two at the URL: the first is the receiver's, the other named",
            vec![
                hook("2", URL, &["push"], true, true),
                hook("3", URL, &["push"], true, true),
            ],
            false,
            true,
            Plan::Unchanged { id: "2".into() },
            vec!["3"],
        ),
    ];
    for (case, hooks, replace, updates, plan, duplicates) in cases {
        let decision = decide(&hooks, &wanted(&["push"]), replace, updates);
        assert_eq!(decision.plan, plan, "{case}");
        assert_eq!(decision.duplicates, duplicates, "{case}");
    }
}

/// (provider, step, method, path, body with the secret redacted)
type RequestCase = (
    &'static str,
    &'static str,
    Method,
    &'static str,
    Option<Value>,
);

#[test]
fn each_provider_s_requests_are_in_its_api_s_shape() {
    let cases: Vec<RequestCase> = vec![
        (
            "github",
            "list",
            Method::Get,
            "/repos/o/r/hooks?per_page=100&page=1",
            None,
        ),
        (
            "github",
            "create",
            Method::Post,
            "/repos/o/r/hooks",
            Some(json!({
            "name": "web", "active": true, "events": ["push"],
            "config": {"url": URL, "content_type": "json", "insecure_ssl": "0", "secret": REDACTED}})),
        ),
        (
            "github",
            "update",
            Method::Patch,
            "/repos/o/r/hooks/7",
            Some(json!({
            "active": true, "events": ["push"],
            "config": {"url": URL, "content_type": "json", "insecure_ssl": "0", "secret": REDACTED}})),
        ),
        (
            "github",
            "test",
            Method::Post,
            "/repos/o/r/hooks/7/pings",
            None,
        ),
        (
            "github",
            "deliveries",
            Method::Get,
            "/repos/o/r/hooks/7/deliveries?per_page=30",
            None,
        ),
        (
            "gitlab",
            "list",
            Method::Get,
            "/projects/group%2Fsub%2Fr/hooks?per_page=100&page=1",
            None,
        ),
        (
            "gitlab",
            "create",
            Method::Post,
            "/projects/group%2Fsub%2Fr/hooks",
            Some(gitlab_body()),
        ),
        (
            "gitlab",
            "update",
            Method::Put,
            "/projects/group%2Fsub%2Fr/hooks/7",
            Some(gitlab_body()),
        ),
        (
            "gitlab",
            "test",
            Method::Post,
            "/projects/group%2Fsub%2Fr/hooks/7/test/push_events",
            None,
        ),
        (
            "gitea",
            "list",
            Method::Get,
            "/repos/o/r/hooks?limit=50&page=1",
            None,
        ),
        (
            "gitea",
            "create",
            Method::Post,
            "/repos/o/r/hooks",
            Some(json!({
            "type": "gitea", "active": true, "events": ["push"],
            "config": {"url": URL, "content_type": "json", "secret": REDACTED}})),
        ),
        // Gitea ignores a secret in an edit: none is sent.
        (
            "gitea",
            "update",
            Method::Patch,
            "/repos/o/r/hooks/7",
            Some(json!({
            "active": true, "events": ["push"], "config": {"url": URL, "content_type": "json"}})),
        ),
        (
            "gitea",
            "test",
            Method::Post,
            "/repos/o/r/hooks/7/tests",
            None,
        ),
        (
            "gitea",
            "delete",
            Method::Delete,
            "/repos/o/r/hooks/7",
            None,
        ),
    ];
    for (provider, step, method, path, body) in cases {
        let repo = if provider == "gitlab" {
            "group/sub/r"
        } else {
            "o/r"
        };
        let forge = forge(provider, repo).unwrap();
        let wanted = Wanted {
            events: forge.events(&[]).unwrap(),
            ..wanted(&[])
        };
        let requests = requests(forge.as_ref(), &wanted, "7");
        let (_, request) = requests
            .iter()
            .find(|(s, _)| *s == step)
            .unwrap_or_else(|| panic!("{provider} {step}: no such step"));
        assert_eq!(
            (request.method, request.path.as_str()),
            (method, path),
            "{provider} {step}"
        );
        assert_eq!(request.redacted_body(), body, "{provider} {step}");
        // The secret is sent where the body has one, and never shown.
        let shown = request.shown(step).to_string();
        assert!(!shown.contains(SECRET), "{provider} {step}: {shown}");
        let sent = request
            .body
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        assert_eq!(
            sent.contains(SECRET),
            shown.contains(REDACTED),
            "{provider} {step}"
        );
    }
}

/// GitLab's body for the default events (pushes and tag pushes): every event field, true or false.
fn gitlab_body() -> Value {
    json!({
        "url": URL, "token": REDACTED, "enable_ssl_verification": true,
        "push_events": true, "tag_push_events": true, "merge_requests_events": false,
        "issues_events": false, "confidential_issues_events": false, "note_events": false,
        "confidential_note_events": false, "job_events": false, "pipeline_events": false,
        "wiki_page_events": false, "deployment_events": false, "releases_events": false,
    })
}

/// (provider, spec.events, the provider's events or the start of the error)
type EventsCase = (
    &'static str,
    Vec<&'static str>,
    Result<Vec<&'static str>, &'static str>,
);

#[test]
fn receiver_events_become_the_provider_s() {
    let cases: Vec<EventsCase> = vec![
        ("github", vec![], Ok(vec!["push"])),
        (
            "github",
            vec!["Push", "ping", "package"],
            Ok(vec!["package", "push"]),
        ),
        ("github", vec!["ping"], Ok(vec!["push"])),
        ("gitea", vec![], Ok(vec!["push"])),
        ("gitea", vec!["push", "Create"], Ok(vec!["create", "push"])),
        ("gitlab", vec![], Ok(vec!["push_events", "tag_push_events"])),
        ("gitlab", vec!["Push Hook"], Ok(vec!["push_events"])),
        (
            "gitlab",
            vec!["merge request hook", "Tag Push Hook"],
            Ok(vec!["merge_requests_events", "tag_push_events"]),
        ),
        (
            "gitlab",
            vec!["push"],
            Err("spec.events: a GitLab project hook cannot be set to send `push`"),
        ),
    ];
    for (provider, events, expected) in cases {
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let result = forge(provider, "o/r").unwrap().events(&events);
        match (expected, result) {
            (Ok(expected), Ok(got)) => assert_eq!(got, set(&expected), "{provider} {events:?}"),
            (Err(start), Err(error)) => assert!(error.to_string().starts_with(start), "{error}"),
            (expected, got) => panic!("{provider} {events:?}: {expected:?} != {got:?}"),
        }
    }
}

#[test]
fn listed_hooks_are_read_from_each_api_s_shape() {
    let github = json!([
        {"id": 12, "name": "web", "active": true, "events": ["push", "Package"],
         "config": {"url": URL, "content_type": "json", "insecure_ssl": "0", "secret": "********"}},
        {"id": 13, "name": "web", "active": false, "events": ["push"],
         "config": {"url": "https://elsewhere.example/x", "content_type": "form"}},
        {"id": 14, "name": "email", "active": true, "events": ["push"], "config": {"address": "a@b"}},
    ]);
    let gitlab = json!([
        {"id": 5, "url": URL, "push_events": true, "tag_push_events": false, "note_events": true,
         "enable_ssl_verification": true},
    ]);
    let gitea = json!([
        {"id": 3, "type": "gitea", "active": true, "events": ["push"],
         "config": {"url": URL, "content_type": "json"}},
    ]);
    let cases = [
        (
            "github",
            github,
            vec![
                hook("12", URL, &["package", "push"], true, true),
                hook("13", "https://elsewhere.example/x", &["push"], false, false),
            ],
        ),
        (
            "gitlab",
            gitlab,
            vec![hook("5", URL, &["note_events", "push_events"], true, true)],
        ),
        ("gitea", gitea, vec![hook("3", URL, &["push"], true, true)]),
    ];
    for (provider, listed, expected) in cases {
        let forge = forge(provider, "o/r").unwrap();
        assert_eq!(forge.hooks(&listed).unwrap(), expected, "{provider}");
        assert!(
            forge.hooks(&json!({"message": "x"})).is_err(),
            "{provider}: not a list"
        );
    }
}

#[test]
fn github_deliveries_give_each_status() {
    let listed = json!([
        {"id": 901, "guid": "g", "event": "ping", "status_code": 200, "status": "OK"},
        {"id": 900, "guid": "h", "event": "push", "status_code": 401, "status": "Unauthorized"},
        {"id": 899, "guid": "i", "event": "push", "status_code": 0, "status": "timed out"},
    ]);
    let deliveries = forge("github", "o/r").unwrap().parse_deliveries(&listed);
    let got: Vec<(&str, &str, u16)> = deliveries
        .iter()
        .map(|d| (d.id.as_str(), d.event.as_str(), d.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("901", "ping", 200),
            ("900", "push", 401),
            ("899", "push", 0)
        ]
    );
}

#[test]
fn repositories_are_checked_per_provider() {
    let cases = [
        ("github", "o/r", true),
        ("github", "o", false),
        ("github", "o/r/x", false),
        ("gitea", "/r", false),
        ("forgejo", "o/r", true),
        ("gitlab", "group/sub/project", true),
        ("gitlab", "42", true),
        ("gitlab", "group/", false),
        ("bitbucket", "o/r", false),
    ];
    for (provider, repo, ok) in cases {
        assert_eq!(forge(provider, repo).is_ok(), ok, "{provider} {repo}");
    }
}

/// (case, status.url, the path registered, --base-url, the URL or the start of the error)
type UrlCase = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    Result<&'static str, &'static str>,
);

#[test]
fn the_url_is_the_status_s_or_the_base_url_and_path() {
    let cases: Vec<UrlCase> = vec![
        (
            "status URL",
            Some("https://a.example/hook/x"),
            "/hook/x",
            None,
            Ok("https://a.example/hook/x"),
        ),
        (
            "another key's path on the status URL's base",
            Some("https://a.example/hook/x"),
            "/hook/y",
            None,
            Ok("https://a.example/hook/y"),
        ),
        (
            "--base-url wins",
            Some("https://a.example/hook/x"),
            "/hook/x",
            Some("http://127.0.0.1:8080/"),
            Ok("http://127.0.0.1:8080/hook/x"),
        ),
        (
            "path and --base-url",
            None,
            "/hook/x",
            Some("https://hooks.example.com"),
            Ok("https://hooks.example.com/hook/x"),
        ),
        (
            "path alone",
            None,
            "/hook/x",
            None,
            Err("the receiver's status has its path (/hook/x) but no URL"),
        ),
        (
            "not a URL",
            None,
            "/hook/x",
            Some("hooks.example.com"),
            Err("hooks.example.com: not a URL"),
        ),
        (
            "a status URL not ending with the path",
            Some("https://a.example/other"),
            "/hook/x",
            None,
            Err("the status's URL https://a.example/other does not end with its path /hook/x"),
        ),
    ];
    for (case, status_url, path, base, expected) in cases {
        let got = url_of(status_url, "/hook/x", path, base).map_err(|e| e.to_string());
        match (expected, got) {
            (Ok(url), Ok(got)) => assert_eq!(got, url, "{case}"),
            (Err(start), Err(error)) => assert!(error.starts_with(start), "{case}: {error}"),
            (expected, got) => panic!("{case}: {expected:?} != {got:?}"),
        }
    }
}

#[test]
fn secret_key_must_be_one_the_receiver_lists() {
    let listed = vec!["token".to_string(), "next".to_string()];
    assert_eq!(chosen_keys(&listed, None).unwrap(), listed);
    assert_eq!(chosen_keys(&listed, Some("next")).unwrap(), vec!["next"]);
    assert_eq!(
        chosen_keys(&listed, Some("other")).unwrap_err().to_string(),
        "--secret-key other: the Receiver's secretRef.keys are token, next"
    );
}

/// (secretRef.keys, the key and secret read, or the error)
type SecretCase = (
    Vec<&'static str>,
    Result<(&'static str, &'static str), &'static str>,
);

#[test]
fn the_secret_is_the_first_listed_key_the_secret_has() {
    let data: BTreeMap<String, ByteString> = [
        ("token", &b"old"[..]),
        ("next", b"new"),
        ("empty", b""),
        ("binary", &[0xff, 0xfe]),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
    .collect();
    let cases: Vec<SecretCase> = vec![
        (vec![], Ok(("token", "old"))),
        (vec!["token", "next"], Ok(("token", "old"))),
        (vec!["later", "next"], Ok(("next", "new"))),
        (vec!["missing"], Err("has none of the keys missing")),
        (vec!["empty"], Err("key empty is empty")),
        (vec!["binary"], Err("key binary is not UTF-8 text")),
    ];
    for (keys, expected) in cases {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let got = secret_of(&keys, &data).map_err(|e| e.to_string());
        match (expected, got) {
            (Ok((key, value)), Ok(got)) => {
                assert_eq!(got, (key.to_string(), value.to_string()), "{keys:?}")
            }
            (Err(message), Err(error)) => {
                assert_eq!(error, message, "{keys:?}");
                assert!(!error.contains("old") && !error.contains("new"), "{error}");
            }
            (expected, got) => panic!("{keys:?}: {expected:?} != {got:?}"),
        }
    }
}

#[test]
fn secrets_are_scrubbed_from_messages() {
    let cases = [
        (
            "token tok-123456 refused",
            vec!["tok-123456"],
            "token <redacted> refused",
        ),
        ("a and b", vec!["a"], "a and b"), // too short to be a secret; not scrubbed
        (
            "s3cret-value twice s3cret-value",
            vec!["s3cret-value", "other-1"],
            "<redacted> twice <redacted>",
        ),
    ];
    for (text, secrets, expected) in cases {
        assert_eq!(scrub(text, &secrets), expected, "{text}");
    }
    assert!(!format!("{:?}", wanted(&["push"])).contains(SECRET));
}
