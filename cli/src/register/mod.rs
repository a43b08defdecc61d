//! `hookgate register`: the provider-side webhook of a Receiver, created or updated idempotently through
//! the provider's API (one module per provider behind [`Forge`]), then tested.
//!
//! The pure parts are here and in the provider modules: the requests each API takes, the hooks read back,
//! and what to do with them ([`decide`]). `run` in `session.rs` sends them.

pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod session;
pub mod source;

use std::collections::BTreeSet;
use std::fmt;

use anyhow::bail;
use serde_json::{json, Value};

/// What stands for the secret wherever a request is shown.
pub const REDACTED: &str = "<redacted>";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        })
    }
}

/// One call of a provider's API: `path` (with its query) is relative to the API's base URL.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    /// Where the body holds the secret (a JSON pointer), so that it can be shown without it.
    pub secret_at: Option<&'static str>,
}

impl ApiRequest {
    pub fn new(method: Method, path: String) -> Self {
        ApiRequest {
            method,
            path,
            body: None,
            secret_at: None,
        }
    }

    pub fn with_body(mut self, body: Value, secret_at: Option<&'static str>) -> Self {
        self.body = Some(body);
        self.secret_at = secret_at;
        self
    }

    /// The body as it may be printed: the secret replaced by [`REDACTED`].
    pub fn redacted_body(&self) -> Option<Value> {
        let mut body = self.body.clone()?;
        if let Some(secret) = self.secret_at.and_then(|at| body.pointer_mut(at)) {
            *secret = Value::String(REDACTED.into());
        }
        Some(body)
    }

    /// `{"step", "method", "path", "body"}` as `--dry-run` prints it, without the secret.
    pub fn shown(&self, step: &str) -> Value {
        let mut shown = json!({"step": step, "method": self.method.to_string(), "path": self.path});
        if let Some(body) = self.redacted_body() {
            shown["body"] = body;
        }
        shown
    }
}

/// The hook a receiver needs: where it delivers, the secret it signs with, and the events it sends in
/// the provider's own names.
#[derive(Clone, PartialEq, Eq)]
pub struct Wanted {
    pub url: String,
    pub secret: String,
    pub events: BTreeSet<String>,
}

impl fmt::Debug for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wanted")
            .field("url", &self.url)
            .field("secret", &REDACTED)
            .field("events", &self.events)
            .finish()
    }
}

/// A hook as the provider lists it: its secret is never readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub id: String,
    pub url: String,
    pub events: BTreeSet<String>,
    pub active: bool,
    /// Whether it sends JSON bodies (GitLab's always do).
    pub json: bool,
}

/// A provider's record of one delivery of a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    /// The HTTP status the edge answered (0: no answer).
    pub status: u16,
}

/// How a provider tells whether its test delivery was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// It lists a hook's deliveries with the status each got (GitHub).
    Deliveries,
    /// The reply to the test request says whether the hook's URL answered 2xx (GitLab: 201, else 422).
    TestReply,
    /// Nothing: the API does not record deliveries (Gitea v1.27). The targets' reconcile annotation
    /// shows a test push that reached the controller.
    None,
}

/// One provider's API: the requests it takes and how it lists hooks. `repo` is fixed at construction.
pub trait Forge {
    /// The provider's name, as `--forge` takes it.
    fn name(&self) -> &'static str;
    /// Its public API, the default of `--api-url`.
    fn default_api_url(&self) -> &'static str;
    /// The `Authorization` header's value for an API token.
    fn authorization(&self, token: &str) -> String;
    /// The provider's events for the receiver's (`spec.events`, case-insensitive; empty: push).
    fn events(&self, receiver_events: &[String]) -> anyhow::Result<BTreeSet<String>>;
    /// One page (from 1) of the repository's hooks.
    fn list(&self, page: u32) -> ApiRequest;
    fn hooks(&self, listed: &Value) -> anyhow::Result<Vec<Hook>>;
    fn create(&self, wanted: &Wanted) -> ApiRequest;
    fn update(&self, id: &str, wanted: &Wanted) -> ApiRequest;
    fn delete(&self, id: &str) -> ApiRequest;
    /// The request that makes the provider deliver a test (a ping or a push).
    fn test(&self, id: &str) -> ApiRequest;
    /// Whether an update can change the hook's secret (Gitea's cannot: it ignores `config.secret`).
    fn updates_secret(&self) -> bool;
    fn evidence(&self) -> Evidence;
    /// The request listing a hook's recent deliveries, where the API has one.
    fn deliveries(&self, _id: &str) -> Option<ApiRequest> {
        None
    }
    fn parse_deliveries(&self, _listed: &Value) -> Vec<Delivery> {
        Vec::new()
    }
    /// The event of its test delivery, as its delivery records name it.
    fn test_event(&self) -> &'static str;
    /// Headers the API asks every request to carry.
    fn headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// The provider module for `name` (`github`, `gitlab`, `gitea`; `forgejo` is Gitea's API), for the
/// repository `repo` (`OWNER/REPO`; GitLab: the project's path or numeric id).
pub fn forge(name: &str, repo: &str) -> anyhow::Result<Box<dyn Forge>> {
    let owner_repo = || match repo.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(())
        }
        _ => Err(anyhow::anyhow!("--repo {repo}: give OWNER/REPO")),
    };
    Ok(match name {
        "github" => {
            owner_repo()?;
            Box::new(github::GitHub::new(repo))
        }
        "gitea" | "forgejo" => {
            owner_repo()?;
            Box::new(gitea::Gitea::new(repo))
        }
        "gitlab" => {
            if repo.is_empty() || repo.starts_with('/') || repo.ends_with('/') {
                bail!("--repo {repo}: give the project's path (GROUP/PROJECT) or its id");
            }
            Box::new(gitlab::GitLab::new(repo))
        }
        other => bail!("no provider {other}: github, gitlab, gitea or forgejo"),
    })
}

/// The provider for a receiver's type when `--forge` is not given.
pub fn forge_for_type(receiver_type: &str) -> Option<&'static str> {
    match receiver_type {
        "github" => Some("github"),
        "gitlab" => Some("gitlab"),
        "gitea" => Some("gitea"),
        _ => None,
    }
}

/// Two hook URLs are the same when they parse to the same URL (scheme and host case, a default port
/// and an empty path do not matter); the path and query must be equal.
pub fn same_url(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// What register does with the provider's hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Create,
    /// The hook at the URL already sends the wanted events as JSON: nothing is written.
    Unchanged {
        id: String,
    },
    Update {
        id: String,
    },
    /// Add a hook with the secret, then delete the old one (a provider that cannot change a secret).
    Replace {
        old: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    /// Other hooks at the same URL: left alone, and named in the report.
    pub duplicates: Vec<String>,
}

/// The idempotence decision. A hook's secret cannot be read back, so it is written only when the hook
/// is created or updated anyway, or when `replace_secret` asks for it.
pub fn decide(
    hooks: &[Hook],
    wanted: &Wanted,
    replace_secret: bool,
    updates_secret: bool,
) -> Decision {
    let mut at_url = hooks.iter().filter(|h| same_url(&h.url, &wanted.url));
    let Some(hook) = at_url.next() else {
        return Decision {
            plan: Plan::Create,
            duplicates: Vec::new(),
        };
    };
    let duplicates = at_url.map(|h| h.id.clone()).collect();
    let id = hook.id.clone();
    let plan = if replace_secret && !updates_secret {
        Plan::Replace { old: id }
    } else if replace_secret || hook.events != wanted.events || !hook.active || !hook.json {
        Plan::Update { id }
    } else {
        Plan::Unchanged { id }
    };
    Decision { plan, duplicates }
}

/// `text` with every occurrence of the `secrets` replaced, for messages built from a provider's reply.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |text, s| text.replace(s, REDACTED))
}

/// A hook id as a string, from the number (or string) the API gives.
pub fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The array a list request returned, or why it is not one.
pub fn as_list<'a>(listed: &'a Value, what: &str) -> anyhow::Result<&'a Vec<Value>> {
    listed
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("the provider's list of {what} is not a JSON array"))
}

/// `--dry-run`: every request register may send, one JSON object a line, without the secret.
pub fn dry_run(forge: &dyn Forge, wanted: &Wanted) {
    for (step, request) in requests(forge, wanted, "{hook_id}") {
        println!("{}", request.shown(step));
    }
}

/// The requests of each step, named, with `id` for the existing hook's id.
pub fn requests(forge: &dyn Forge, wanted: &Wanted, id: &str) -> Vec<(&'static str, ApiRequest)> {
    let mut steps = vec![
        ("list", forge.list(1)),
        ("create", forge.create(wanted)),
        ("update", forge.update(id, wanted)),
        ("test", forge.test(id)),
    ];
    steps.extend(forge.deliveries(id).map(|r| ("deliveries", r)));
    if !forge.updates_secret() {
        steps.push(("delete", forge.delete(id)));
    }
    steps
}

#[cfg(test)]
mod tests;
