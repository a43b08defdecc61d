//! Gitea's (and Forgejo's) repository webhooks (`/api/v1/repos/{owner}/{repo}/hooks`). Its API cannot
//! change a hook's secret (an edit ignores `config.secret`, REFERENCE.md §6) and keeps no record of
//! deliveries that it serves (v1.27.3), so its test push is confirmed by the targets' annotation only.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::github::string_set;
use super::{as_list, id_of, ApiRequest, Evidence, Forge, Hook, Method, Wanted};

pub struct Gitea {
    repo: String,
}

impl Gitea {
    pub fn new(repo: &str) -> Self {
        Gitea { repo: repo.into() }
    }

    fn hooks_path(&self) -> String {
        format!("/repos/{}/hooks", self.repo)
    }
}

impl Forge for Gitea {
    fn name(&self) -> &'static str {
        "gitea"
    }

    fn default_api_url(&self) -> &'static str {
        "https://gitea.com/api/v1"
    }

    fn authorization(&self, token: &str) -> String {
        format!("token {token}")
    }

    /// Gitea's event names are the `X-Gitea-Event` values a receiver lists.
    fn events(&self, receiver_events: &[String]) -> anyhow::Result<BTreeSet<String>> {
        let events: BTreeSet<String> = receiver_events
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        Ok(if events.is_empty() {
            BTreeSet::from(["push".to_string()])
        } else {
            events
        })
    }

    /// Gitea serves at most `[api] MAX_RESPONSE_ITEMS` (default 50) a page, whatever `limit` asks.
    fn list(&self, page: u32) -> ApiRequest {
        let hooks = self.hooks_path();
        ApiRequest::new(Method::Get, format!("{hooks}?limit=50&page={page}"))
    }

    fn hooks(&self, listed: &Value) -> anyhow::Result<Vec<Hook>> {
        Ok(as_list(listed, "hooks")?
            .iter()
            .filter_map(|hook| {
                let config = hook.get("config")?;
                Some(Hook {
                    id: id_of(hook.get("id")?)?,
                    url: config.get("url")?.as_str()?.to_string(),
                    events: string_set(hook.get("events")),
                    active: hook.get("active").and_then(Value::as_bool) == Some(true),
                    json: config.get("content_type").and_then(Value::as_str) == Some("json"),
                })
            })
            .collect())
    }

    fn create(&self, wanted: &Wanted) -> ApiRequest {
        let body = json!({
            "type": "gitea", "active": true, "events": wanted.events,
            "config": {"url": wanted.url, "content_type": "json", "secret": wanted.secret},
        });
        ApiRequest::new(Method::Post, self.hooks_path()).with_body(body, Some("/config/secret"))
    }

    /// No secret: Gitea would ignore it, and sending it would suggest otherwise.
    fn update(&self, id: &str, wanted: &Wanted) -> ApiRequest {
        let body = json!({
            "active": true, "events": wanted.events,
            "config": {"url": wanted.url, "content_type": "json"},
        });
        ApiRequest::new(Method::Patch, format!("{}/{id}", self.hooks_path())).with_body(body, None)
    }

    fn delete(&self, id: &str) -> ApiRequest {
        ApiRequest::new(Method::Delete, format!("{}/{id}", self.hooks_path()))
    }

    fn test(&self, id: &str) -> ApiRequest {
        ApiRequest::new(Method::Post, format!("{}/{id}/tests", self.hooks_path()))
    }

    fn updates_secret(&self) -> bool {
        false
    }

    fn evidence(&self) -> Evidence {
        Evidence::None
    }

    fn test_event(&self) -> &'static str {
        "push"
    }
}
