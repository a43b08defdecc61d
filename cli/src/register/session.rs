//! The requests of `hookgate register` sent to the provider, in order: list the hooks, create, update or
//! replace the receiver's, then test it and read what the provider (or the cluster) shows of the test.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde_json::Value;

use super::source::{annotations, TargetRef};
use super::{decide, id_of, scrub, ApiRequest, Evidence, Forge, Hook, Plan, Wanted};

/// A provider's API at `base` with a token. The token and the secret are scrubbed from every message.
pub struct Api<'a> {
    pub forge: &'a dyn Forge,
    http: reqwest::Client,
    base: String,
    authorization: String,
    scrubbed: Vec<String>,
}

/// A reply: its status and body (JSON, or the text as a JSON string).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl<'a> Api<'a> {
    pub fn new(
        forge: &'a dyn Forge,
        base: &str,
        token: &str,
        secret: &str,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            forge,
            http,
            base: base.trim_end_matches('/').to_string(),
            authorization: forge.authorization(token),
            scrubbed: vec![token.to_string(), secret.to_string()],
        })
    }

    fn scrub(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.scrubbed.iter().map(String::as_str).collect();
        scrub(text, &secrets)
    }

    pub async fn send(&self, request: &ApiRequest) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, request.path);
        let method = reqwest::Method::from_bytes(request.method.to_string().as_bytes())?;
        let mut builder = self
            .http
            .request(method, &url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json");
        for (name, value) in self.forge.headers() {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| anyhow!("{} {url}: {}", request.method, self.scrub(&e.to_string())))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// The body of a 2xx reply; any other is an error naming the request, the status and the
    /// provider's message.
    pub async fn ok(&self, request: &ApiRequest) -> anyhow::Result<Value> {
        let reply = self.send(request).await?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        Err(self.failure(request, &reply))
    }

    fn failure(&self, request: &ApiRequest, reply: &Reply) -> anyhow::Error {
        let hint = match reply.status {
            401 => ": the provider refused the token (wrong or expired)",
            403 => ": the token may not manage this repository's webhooks",
            404 => ": no such repository or hook for this token (or the token may not see it)",
            _ => "",
        };
        anyhow!(
            "{} API: {} {}{} answered {}{hint}; it said: {}",
            self.forge.name(),
            request.method,
            self.base,
            request.path,
            reply.status,
            self.scrub(&message(&reply.body))
        )
    }
}

/// The provider's message in an error reply, at most 300 characters.
fn message(body: &Value) -> String {
    let text = match body.get("message").or_else(|| body.get("error")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => match body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    text.chars().take(300).collect()
}

/// Pages of hooks read at most (5,000 on GitHub and GitLab, 2,500 on Gitea).
const MAX_LIST_PAGES: u32 = 50;

/// Every hook of the repository: page after page until one adds no hook not seen. Paging by number serves
/// the three APIs alike (Gitea's repository hooks come with no `Link` header) and any page size the
/// provider caps; a hook missed here would be created a second time.
async fn list_hooks(api: &Api<'_>) -> anyhow::Result<Vec<Hook>> {
    let mut hooks: Vec<Hook> = Vec::new();
    let mut seen = BTreeSet::new();
    for page in 1..=MAX_LIST_PAGES {
        let listed = api.forge.hooks(&api.ok(&api.forge.list(page)).await?)?;
        let before = hooks.len();
        hooks.extend(
            listed
                .into_iter()
                .filter(|hook| seen.insert(hook.id.clone())),
        );
        if hooks.len() == before {
            return Ok(hooks);
        }
    }
    Err(anyhow!(
        "{} API: the repository's hooks go on past {MAX_LIST_PAGES} pages; register cannot tell \
         whether the receiver's is among them",
        api.forge.name()
    ))
}

/// Creates, updates or replaces the hook as [`decide`] says; returns the id of the receiver's hook.
pub async fn apply(api: &Api<'_>, wanted: &Wanted, replace_secret: bool) -> anyhow::Result<String> {
    let forge = api.forge;
    let decision = decide(
        &list_hooks(api).await?,
        wanted,
        replace_secret,
        forge.updates_secret(),
    );
    for duplicate in &decision.duplicates {
        println!(
            "warning: hook {duplicate} also delivers to {}: left as it is",
            wanted.url
        );
    }
    let created = |reply: Value| {
        id_of(&reply["id"])
            .ok_or_else(|| anyhow!("the provider's reply to creating the hook has no id"))
    };
    Ok(match decision.plan {
        Plan::Create => {
            let id = created(api.ok(&forge.create(wanted)).await?)?;
            println!("created hook {id}: {} ({})", wanted.url, events(wanted));
            id
        }
        Plan::Unchanged { id } => {
            println!("unchanged: hook {id} already delivers {} to {} (its secret cannot be read back: --replace-secret sets it)", events(wanted), wanted.url);
            id
        }
        Plan::Update { id } => {
            api.ok(&forge.update(&id, wanted)).await?;
            println!("updated hook {id}: {} ({})", wanted.url, events(wanted));
            id
        }
        Plan::Replace { old } => {
            let id = created(api.ok(&forge.create(wanted)).await?)?;
            api.ok(&forge.delete(&old)).await?;
            println!(
                "replaced hook {old} by hook {id} with the receiver's secret: {} ({})",
                wanted.url,
                events(wanted)
            );
            id
        }
    })
}

fn events(wanted: &Wanted) -> String {
    wanted.events.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// What the test showed.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Verified(String),
    Refused(String),
    Unconfirmed(String),
}

const SECRET_HINT: &str =
    "a 401 means the hook's secret is not the receiver's: run again with --replace-secret";

/// Triggers the provider's test delivery of hook `id` and finds out what the edge answered.
pub async fn test(
    api: &Api<'_>,
    id: &str,
    wait: Duration,
    cluster: Option<(&kube::Client, &[TargetRef])>,
) -> anyhow::Result<Verdict> {
    let forge = api.forge;
    match forge.evidence() {
        Evidence::Deliveries => by_deliveries(api, id, wait).await,
        Evidence::TestReply => {
            let request = forge.test(id);
            let reply = api.send(&request).await?;
            Ok(match reply.status {
                200..=299 => Verdict::Verified(format!(
                    "the edge answered {}'s test {} with 2xx",
                    forge.name(),
                    forge.test_event()
                )),
                422 => Verdict::Refused(format!(
                    "{} says the test delivery failed: {} ({SECRET_HINT})",
                    forge.name(),
                    api.scrub(&message(&reply.body))
                )),
                _ => return Err(api.failure(&request, &reply)),
            })
        }
        Evidence::None => by_annotations(api, id, wait, cluster).await,
    }
}

async fn by_deliveries(api: &Api<'_>, id: &str, wait: Duration) -> anyhow::Result<Verdict> {
    let forge = api.forge;
    let list = forge
        .deliveries(id)
        .expect("a provider with Evidence::Deliveries lists them");
    let seen: Vec<String> = forge
        .parse_deliveries(&api.ok(&list).await?)
        .into_iter()
        .map(|d| d.id)
        .collect();
    api.ok(&forge.test(id)).await?;
    let deadline = Instant::now() + wait;
    loop {
        let deliveries = forge.parse_deliveries(&api.ok(&list).await?);
        if let Some(d) = deliveries
            .iter()
            .find(|d| d.event == forge.test_event() && !seen.contains(&d.id))
        {
            return Ok(match d.status {
                200..=299 => Verdict::Verified(format!(
                    "the edge answered {} to the {} (delivery {})",
                    d.status, d.event, d.id
                )),
                0 => Verdict::Refused(format!(
                    "the {} got no answer from the edge (delivery {}: a timeout or an unreachable URL)",
                    d.event, d.id
                )),
                status => Verdict::Refused(format!(
                    "the edge answered {status} to the {} (delivery {}; {SECRET_HINT})",
                    d.event, d.id
                )),
            });
        }
        if Instant::now() >= deadline {
            return Ok(Verdict::Unconfirmed(format!(
                "no record of the {} among the hook's deliveries within {}s",
                forge.test_event(),
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn by_annotations(
    api: &Api<'_>,
    id: &str,
    wait: Duration,
    cluster: Option<(&kube::Client, &[TargetRef])>,
) -> anyhow::Result<Verdict> {
    let forge = api.forge;
    let no_record = format!("{}'s API keeps no record of deliveries: see the hook's Recent Deliveries in its settings ({SECRET_HINT})", forge.name());
    let Some((client, targets)) = cluster.filter(|(_, t)| !t.is_empty()) else {
        api.ok(&forge.test(id)).await?;
        return Ok(Verdict::Unconfirmed(format!(
            "test push sent; the receiver names no single target to watch, and {no_record}"
        )));
    };
    let before = annotations(client, targets).await;
    api.ok(&forge.test(id)).await?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = annotations(client, targets).await;
        if let Some(i) = (0..targets.len()).find(|&i| now[i].is_some() && now[i] != before[i]) {
            return Ok(Verdict::Verified(format!(
                "the edge accepted {}'s test push and the controller annotated {}",
                forge.name(),
                targets[i].label()
            )));
        }
    }
    Ok(Verdict::Unconfirmed(format!(
        "no target annotated within {}s of the test push (nothing is sent for an empty repository, and a push \
         outside the receiver's refs is ignored); {no_record}",
        wait.as_secs()
    )))
}
