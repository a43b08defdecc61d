//! GitLab's project webhooks (REST API v4, `/projects/:id/hooks`): one boolean per event, the secret
//! token set in place, and a test push whose reply says whether the hook's URL answered 2xx (201) or
//! not (422, with GitLab's message).

use std::collections::BTreeSet;

use anyhow::bail;
use serde_json::{Map, Value};

use super::{as_list, id_of, ApiRequest, Evidence, Forge, Hook, Method, Wanted};

/// `X-Gitlab-Event` values (lowercased, as a receiver's `events` match them) and the hook's field that
/// sends each.
const EVENTS: &[(&str, &str)] = &[
    ("push hook", "push_events"),
    ("tag push hook", "tag_push_events"),
    ("merge request hook", "merge_requests_events"),
    ("issue hook", "issues_events"),
    ("confidential issue hook", "confidential_issues_events"),
    ("note hook", "note_events"),
    ("confidential note hook", "confidential_note_events"),
    ("job hook", "job_events"),
    ("pipeline hook", "pipeline_events"),
    ("wiki page hook", "wiki_page_events"),
    ("deployment hook", "deployment_events"),
    ("release hook", "releases_events"),
];

pub struct GitLab {
    /// The project's id, or its path URL-encoded as the API takes it in place of the id.
    project: String,
}

impl GitLab {
    pub fn new(project: &str) -> Self {
        GitLab {
            project: project.replace('/', "%2F"),
        }
    }

    fn hooks_path(&self) -> String {
        format!("/projects/{}/hooks", self.project)
    }

    /// Every event field, true or false, so that an update also turns off what is no longer wanted
    /// (`push_events` defaults to true).
    fn body(&self, wanted: &Wanted) -> Value {
        let mut body = Map::new();
        body.insert("url".into(), wanted.url.clone().into());
        body.insert("token".into(), wanted.secret.clone().into());
        body.insert("enable_ssl_verification".into(), true.into());
        for (_, field) in EVENTS {
            body.insert((*field).into(), wanted.events.contains(*field).into());
        }
        Value::Object(body)
    }
}

impl Forge for GitLab {
    fn name(&self) -> &'static str {
        "gitlab"
    }

    fn default_api_url(&self) -> &'static str {
        "https://gitlab.com/api/v4"
    }

    fn authorization(&self, token: &str) -> String {
        format!("Bearer {token}")
    }

    /// The hook's fields for the receiver's `X-Gitlab-Event` names; without events, pushes and tag
    /// pushes.
    fn events(&self, receiver_events: &[String]) -> anyhow::Result<BTreeSet<String>> {
        if receiver_events.is_empty() {
            return Ok(BTreeSet::from([
                "push_events".to_string(),
                "tag_push_events".to_string(),
            ]));
        }
        let mut fields = BTreeSet::new();
        for event in receiver_events {
            let lower = event.to_ascii_lowercase();
            match EVENTS.iter().find(|(name, _)| *name == lower) {
                Some((_, field)) => fields.insert(field.to_string()),
                None => bail!(
                    "spec.events: a GitLab project hook cannot be set to send `{event}` (it sends {})",
                    EVENTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            };
        }
        Ok(fields)
    }

    fn list(&self, page: u32) -> ApiRequest {
        let hooks = self.hooks_path();
        ApiRequest::new(Method::Get, format!("{hooks}?per_page=100&page={page}"))
    }

    fn hooks(&self, listed: &Value) -> anyhow::Result<Vec<Hook>> {
        Ok(as_list(listed, "hooks")?
            .iter()
            .filter_map(|hook| {
                Some(Hook {
                    id: id_of(hook.get("id")?)?,
                    url: hook.get("url")?.as_str()?.to_string(),
                    events: EVENTS
                        .iter()
                        .filter(|(_, field)| {
                            hook.get(*field).and_then(Value::as_bool) == Some(true)
                        })
                        .map(|(_, field)| field.to_string())
                        .collect(),
                    // GitLab has no switch to turn a project hook off.
                    active: true,
                    json: true,
                })
            })
            .collect())
    }

    fn create(&self, wanted: &Wanted) -> ApiRequest {
        ApiRequest::new(Method::Post, self.hooks_path())
            .with_body(self.body(wanted), Some("/token"))
    }

    fn update(&self, id: &str, wanted: &Wanted) -> ApiRequest {
        ApiRequest::new(Method::Put, format!("{}/{id}", self.hooks_path()))
            .with_body(self.body(wanted), Some("/token"))
    }

    fn delete(&self, id: &str) -> ApiRequest {
        ApiRequest::new(Method::Delete, format!("{}/{id}", self.hooks_path()))
    }

    fn test(&self, id: &str) -> ApiRequest {
        ApiRequest::new(
            Method::Post,
            format!("{}/{id}/test/push_events", self.hooks_path()),
        )
    }

    fn updates_secret(&self) -> bool {
        true
    }

    fn evidence(&self) -> Evidence {
        Evidence::TestReply
    }

    fn test_event(&self) -> &'static str {
        "Push Hook"
    }
}
