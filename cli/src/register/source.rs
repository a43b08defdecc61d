//! What a Receiver asks of its provider's hook, read through the Kubernetes API: the URL from its
//! status, the secret from its Secret, the events from its spec; and its targets' reconcile annotations,
//! which show that a test push reached the controller.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use hookgate_controller::kinds::{
    api_resource, resolve, Engine, Resolved, ARGO_ANNOTATION, FLUX_ANNOTATION,
};
use hookgate_controller::receivers::crd::DEFAULT_SECRET_KEY;
use hookgate_controller::receivers::Receiver;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, DynamicObject};
use kube::Client;

use crate::cluster::{from_status, parse_reference};
use crate::objects::API_VERSION;

/// A Receiver as its hook needs it. `secret` is never printed.
pub struct Source {
    pub label: String,
    pub provider_type: String,
    pub url: String,
    pub secret: String,
    /// The Secret and key the secret was read from, to name them.
    pub secret_from: String,
    pub events: Vec<String>,
    pub targets: Vec<TargetRef>,
    pub warnings: Vec<String>,
}

/// A target of one named object (not a `*` target): where to read its reconcile annotation.
pub struct TargetRef {
    pub resolved: Resolved,
    pub namespace: String,
    pub name: String,
}

impl TargetRef {
    pub fn label(&self) -> String {
        format!(
            "{} {}/{}",
            self.resolved.kind.kind, self.namespace, self.name
        )
    }

    fn annotation(&self) -> &'static str {
        match self.resolved.kind.engine {
            Engine::Flux => FLUX_ANNOTATION,
            Engine::ArgoCd => ARGO_ANNOTATION,
        }
    }
}

/// Reads Receiver `reference` and its Secret with `client`; `secret_key` picks one of its keys (default:
/// the first listed that the Secret has, whose path the status shows).
pub async fn read(
    client: Client,
    reference: &str,
    base_url: Option<&str>,
    secret_key: Option<&str>,
) -> anyhow::Result<Source> {
    let (namespace, name) = parse_reference(reference, client.default_namespace())?;
    let receivers: Api<Receiver> = Api::namespaced(client.clone(), &namespace);
    let receiver = receivers
        .get_opt(&name)
        .await
        .with_context(|| format!("cannot read Receiver {namespace}/{name} ({API_VERSION})"))?
        .with_context(|| format!("no Receiver {namespace}/{name} ({API_VERSION})"))?;
    let printed = from_status(&receiver)?;
    let spec = &receiver.spec;
    let Some(secret_ref) = &spec.secret_ref else {
        bail!(
            "Receiver {namespace}/{name} has no secretRef: a {} sender holds no secret to register",
            spec.provider
        );
    };
    let keys = chosen_keys(&secret_ref.keys, secret_key)?;
    let data = secret_data(client, &namespace, &secret_ref.name).await?;
    let (key, secret) = secret_of(&keys, &data)
        .with_context(|| format!("Secret {namespace}/{}", secret_ref.name))?;
    let status = receiver.status.as_ref();
    let status_path = status
        .and_then(|s| s.webhook_path.as_deref())
        .unwrap_or_default();
    // The status shows the first key's path; another key's is Flux's path for its secret, unless pinned.
    let path = match (secret_key, &spec.path) {
        (Some(_), None) => crate::url(&name, &namespace, &secret),
        _ => status_path.to_string(),
    };
    let url = url_of(
        status.and_then(|s| s.url.as_deref()),
        status_path,
        &path,
        base_url,
    )?;
    Ok(Source {
        label: receiver.label(),
        provider_type: spec.provider.clone(),
        url,
        secret,
        secret_from: format!("Secret {namespace}/{} key {key}", secret_ref.name),
        events: spec.events.clone().unwrap_or_default(),
        targets: targets(&receiver, &namespace),
        warnings: printed.warnings,
    })
}

async fn secret_data(
    client: Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<BTreeMap<String, ByteString>> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let object = secrets
        .get_opt(name)
        .await
        .with_context(|| format!("cannot read Secret {namespace}/{name}"))?
        .with_context(|| format!("no Secret {namespace}/{name} (the receiver's secretRef)"))?;
    Ok(object.data.unwrap_or_default())
}

/// The keys to read: `--secret-key`, which must be one the receiver lists, or all it lists.
pub fn chosen_keys(listed: &[String], chosen: Option<&str>) -> anyhow::Result<Vec<String>> {
    match chosen {
        None => Ok(listed.to_vec()),
        Some(key) if listed.iter().any(|k| k == key) => Ok(vec![key.to_string()]),
        Some(key) => bail!(
            "--secret-key {key}: the Receiver's secretRef.keys are {}",
            listed.join(", ")
        ),
    }
}

/// The hook's URL: `path` on `--base-url`, else on the base of the status's URL (the controller's
/// `--webhook-base-url`), which ends with the status's path.
pub fn url_of(
    status_url: Option<&str>,
    status_path: &str,
    path: &str,
    base_url: Option<&str>,
) -> anyhow::Result<String> {
    let base = match (base_url, status_url) {
        (Some(base), _) => base,
        (None, Some(url)) => url.strip_suffix(status_path).with_context(|| {
            format!("the status's URL {url} does not end with its path {status_path}: give --base-url")
        })?,
        (None, None) => bail!(
            "the receiver's status has its path ({status_path}) but no URL (the controller runs without \
             --webhook-base-url): give --base-url, the scheme and host of the webhook route"
        ),
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    reqwest::Url::parse(&url).with_context(|| format!("{base}: not a URL (give --base-url)"))?;
    Ok(url)
}

/// The first of `keys` the Secret has (the one whose path the status shows), as UTF-8 text.
pub fn secret_of(
    keys: &[String],
    data: &BTreeMap<String, ByteString>,
) -> anyhow::Result<(String, String)> {
    let default = [DEFAULT_SECRET_KEY.to_string()];
    let keys = if keys.is_empty() { &default[..] } else { keys };
    let Some((key, value)) = keys.iter().find_map(|k| data.get(k).map(|v| (k, v))) else {
        bail!("has none of the keys {}", keys.join(", "));
    };
    let text = String::from_utf8(value.0.clone())
        .map_err(|_| anyhow::anyhow!("key {key} is not UTF-8 text"))?;
    if text.is_empty() {
        bail!("key {key} is empty");
    }
    Ok((key.clone(), text))
}

/// The receiver's targets that name one object of a kind hookgate reconciles.
fn targets(receiver: &Receiver, namespace: &str) -> Vec<TargetRef> {
    let targets = receiver.spec.targets.as_deref().unwrap_or_default();
    targets
        .iter()
        .filter(|t| t.name != "*")
        .filter_map(|t| {
            Some(TargetRef {
                resolved: resolve(t.api_version.as_deref(), &t.kind)?,
                namespace: t.namespace.clone().unwrap_or_else(|| namespace.to_string()),
                name: t.name.clone(),
            })
        })
        .collect()
}

/// Each target's reconcile annotation now (None: absent, or the object cannot be read).
pub async fn annotations(client: &Client, targets: &[TargetRef]) -> Vec<Option<String>> {
    let mut values = Vec::with_capacity(targets.len());
    for target in targets {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &target.namespace,
            &api_resource(&target.resolved),
        );
        let value = match api.get_opt(&target.name).await {
            Ok(Some(object)) => object
                .metadata
                .annotations
                .and_then(|a| a.get(target.annotation()).cloned()),
            _ => None,
        };
        values.push(value);
    }
    values
}
