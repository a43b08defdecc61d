//! GitHub's repository webhooks (REST API, `api.github.com`): `/repos/{owner}/{repo}/hooks`, a ping to
//! test, and the hook's deliveries with the status each got.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{as_list, id_of, ApiRequest, Delivery, Evidence, Forge, Hook, Method, Wanted};

pub struct GitHub {
    repo: String,
}

impl GitHub {
    pub fn new(repo: &str) -> Self {
        GitHub { repo: repo.into() }
    }

    fn hooks_path(&self) -> String {
        format!("/repos/{}/hooks", self.repo)
    }

    /// The body of a create or an update: GitHub replaces `config` whole, so the secret goes in both.
    fn body(&self, wanted: &Wanted) -> Value {
        json!({
            "active": true,
            "events": wanted.events,
            "config": {"url": wanted.url, "content_type": "json", "insecure_ssl": "0",
                       "secret": wanted.secret},
        })
    }
}

impl Forge for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn default_api_url(&self) -> &'static str {
        "https://api.github.com"
    }

    fn authorization(&self, token: &str) -> String {
        format!("Bearer {token}")
    }

    /// GitHub's event names are the receiver's; `ping` is sent to every hook and cannot be chosen.
    fn events(&self, receiver_events: &[String]) -> anyhow::Result<BTreeSet<String>> {
        let events: BTreeSet<String> = receiver_events
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .filter(|e| e != "ping")
            .collect();
        Ok(if events.is_empty() {
            BTreeSet::from(["push".to_string()])
        } else {
            events
        })
    }

    fn list(&self, page: u32) -> ApiRequest {
        let hooks = self.hooks_path();
        ApiRequest::new(Method::Get, format!("{hooks}?per_page=100&page={page}"))
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
        let mut body = self.body(wanted);
        body["name"] = json!("web");
        ApiRequest::new(Method::Post, self.hooks_path()).with_body(body, Some("/config/secret"))
    }

    fn update(&self, id: &str, wanted: &Wanted) -> ApiRequest {
        ApiRequest::new(Method::Patch, format!("{}/{id}", self.hooks_path()))
            .with_body(self.body(wanted), Some("/config/secret"))
    }

    fn delete(&self, id: &str) -> ApiRequest {
        ApiRequest::new(Method::Delete, format!("{}/{id}", self.hooks_path()))
    }

    fn test(&self, id: &str) -> ApiRequest {
        ApiRequest::new(Method::Post, format!("{}/{id}/pings", self.hooks_path()))
    }

    fn updates_secret(&self) -> bool {
        true
    }

    fn evidence(&self) -> Evidence {
        Evidence::Deliveries
    }

    fn deliveries(&self, id: &str) -> Option<ApiRequest> {
        Some(ApiRequest::new(
            Method::Get,
            format!("{}/{id}/deliveries?per_page=30", self.hooks_path()),
        ))
    }

    fn parse_deliveries(&self, listed: &Value) -> Vec<Delivery> {
        let Some(listed) = listed.as_array() else {
            return Vec::new();
        };
        listed
            .iter()
            .filter_map(|d| {
                Some(Delivery {
                    id: id_of(d.get("id")?)?,
                    event: d.get("event")?.as_str()?.to_string(),
                    status: d
                        .get("status_code")
                        .and_then(Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(0),
                })
            })
            .collect()
    }

    fn test_event(&self) -> &'static str {
        "ping"
    }

    fn headers(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
        ]
    }
}

/// The strings of a JSON array, lowercased, as a set.
pub(super) fn string_set(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}
