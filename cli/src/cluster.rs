//! `hookgate url --receiver`: a `Receiver`'s webhook URL as the controller wrote it in its status, read
//! through the Kubernetes API (the kubeconfig, or the pod's service account, as `kube::Client::try_default`
//! finds them).

use anyhow::{bail, Context};
use hookgate_controller::receivers::Receiver;
use kube::api::Api;
use kube::Client;

use crate::objects::API_VERSION;

/// What the status of a Receiver gives: the line to print, and warnings for standard error.
#[derive(Debug, PartialEq, Eq)]
pub struct Printed {
    pub line: String,
    pub warnings: Vec<String>,
}

/// `NAMESPACE/NAME`, or `NAME` in `default_namespace` (the kubeconfig context's, as kubectl's).
pub fn parse_reference(
    reference: &str,
    default_namespace: &str,
) -> anyhow::Result<(String, String)> {
    let (namespace, name) = match reference.split_once('/') {
        Some((namespace, name)) => (namespace, name),
        None => (default_namespace, reference),
    };
    if namespace.is_empty() || name.is_empty() || name.contains('/') {
        bail!("--receiver {reference}: give NAMESPACE/NAME or NAME");
    }
    Ok((namespace.to_string(), name.to_string()))
}

/// Reads Receiver `reference` with `client` and says what its status gives.
pub async fn receiver_url(client: Client, reference: &str) -> anyhow::Result<Printed> {
    let (namespace, name) = parse_reference(reference, client.default_namespace())?;
    let api: Api<Receiver> = Api::namespaced(client, &namespace);
    let object = api
        .get_opt(&name)
        .await
        .with_context(|| format!("cannot read Receiver {namespace}/{name} ({API_VERSION})"))?;
    match object {
        Some(object) => from_status(&object),
        None => bail!("no Receiver {namespace}/{name} ({API_VERSION})"),
    }
}

/// The full URL when the controller knows the route's base URL (`--webhook-base-url`), else the path;
/// or why there is none (the `Ready` reason and message). Warns when the status is older than the object.
pub fn from_status(object: &Receiver) -> anyhow::Result<Printed> {
    let label = object.label();
    let Some(status) = &object.status else {
        bail!(
            "Receiver {label} has no status yet: is the controller serving Receivers (`hookgate serve \
             --channel-key-file`) and watching namespace {}?",
            object.metadata.namespace.as_deref().unwrap_or_default()
        );
    };
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let mut warnings = Vec::new();
    if let (Some(seen), Some(current)) = (status.observed_generation, object.metadata.generation) {
        if seen < current {
            warnings.push(format!(
                "Receiver {label}: the status is of generation {seen}, the object is at {current}: the \
                 controller has not compiled the change yet"
            ));
        }
    }
    let Some(path) = &status.webhook_path else {
        match ready {
            Some(ready) => bail!(
                "Receiver {label} has no webhook path: {}: {}",
                ready.reason,
                ready.message
            ),
            None => bail!("Receiver {label} has no webhook path in its status yet"),
        }
    };
    if let Some(ready) = ready.filter(|r| r.status != "True") {
        warnings.push(format!(
            "Receiver {label} is not Ready: {}: {}",
            ready.reason, ready.message
        ));
    }
    Ok(Printed {
        line: status.url.clone().unwrap_or_else(|| path.clone()),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn object(generation: i64, status: Option<Value>) -> Receiver {
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Receiver",
            "metadata": {"name": "app", "namespace": "tenant", "generation": generation},
            "spec": {"type": "github", "secretRef": {"name": "webhook-token"},
                     "targets": [{"kind": "GitRepository", "name": "app"}]},
            "status": status}))
        .unwrap()
    }

    fn ready(status: &str, reason: &str, message: &str) -> Value {
        json!({"type": "Ready", "status": status, "reason": reason, "message": message,
               "lastTransitionTime": "2030-01-01T00:00:00Z", "observedGeneration": 2})
    }

    /// (case, generation, status, the line printed or the start of the error, the warnings' starts)
    type StatusCase = (
        &'static str,
        i64,
        Option<Value>,
        Result<&'static str, &'static str>,
        Vec<&'static str>,
    );

    #[test]
    fn the_status_gives_the_url_the_path_or_why_not() {
        let cases: Vec<StatusCase> = vec![
            (
                "served, with the base URL",
                2,
                Some(json!({"observedGeneration": 2, "webhookPath": "/hook/abc",
                            "url": "https://hooks.example.com/hook/abc",
                            "conditions": [ready("True", "Served", "served by 2 of the 2 proxies")]})),
                Ok("https://hooks.example.com/hook/abc"),
                vec![],
            ),
            (
                "served, no base URL: the path",
                2,
                Some(json!({"observedGeneration": 2, "webhookPath": "/hook/abc",
                            "conditions": [ready("True", "Served", "served")]})),
                Ok("/hook/abc"),
                vec![],
            ),
            (
                "compiled, not yet at a proxy: the path, with a warning",
                2,
                Some(json!({"observedGeneration": 2, "webhookPath": "/hook/abc",
                            "conditions": [ready("False", "NotServed", "no proxy has applied it yet")]})),
                Ok("/hook/abc"),
                vec!["Receiver tenant/app is not Ready: NotServed: no proxy has applied it yet"],
            ),
            (
                "a status older than the object",
                3,
                Some(json!({"observedGeneration": 2, "webhookPath": "/hook/abc",
                            "conditions": [ready("True", "Served", "served")]})),
                Ok("/hook/abc"),
                vec!["Receiver tenant/app: the status is of generation 2, the object is at 3"],
            ),
            (
                "refused: the reason and message",
                2,
                Some(json!({"observedGeneration": 2,
                            "conditions": [ready("False", "InvalidSpec", "spec.targets[0].name: bad")]})),
                Err("Receiver tenant/app has no webhook path: InvalidSpec: spec.targets[0].name: bad"),
                vec![],
            ),
            (
                "no status",
                1,
                None,
                Err("Receiver tenant/app has no status yet: is the controller serving Receivers"),
                vec![],
            ),
        ];
        for (case, generation, status, expected, warnings) in cases {
            let result = from_status(&object(generation, status));
            match (&expected, result) {
                (Ok(line), Ok(printed)) => {
                    assert_eq!(printed.line, *line, "{case}");
                    assert_eq!(
                        printed.warnings.len(),
                        warnings.len(),
                        "{case}: {printed:?}"
                    );
                    for (warning, start) in printed.warnings.iter().zip(&warnings) {
                        assert!(warning.starts_with(start), "{case}: {warning}");
                    }
                }
                (Err(start), Err(error)) => {
                    let error = error.to_string();
                    assert!(error.starts_with(start), "{case}: {error}");
                }
                (_, result) => panic!("{case}: {result:?}"),
            }
        }
    }

    #[test]
    fn references_name_a_namespace_or_take_the_context_s() {
        let cases = [
            ("tenant/app", Ok(("tenant", "app"))),
            ("app", Ok(("default", "app"))),
            ("/app", Err(())),
            ("tenant/", Err(())),
            ("a/b/c", Err(())),
        ];
        for (reference, expected) in cases {
            let parsed = parse_reference(reference, "default");
            match (expected, parsed) {
                (Ok((namespace, name)), Ok(parsed)) => {
                    assert_eq!(
                        parsed,
                        (namespace.to_string(), name.to_string()),
                        "{reference}"
                    )
                }
                (Err(()), Err(_)) => {}
                (_, parsed) => panic!("{reference}: {parsed:?}"),
            }
        }
    }

    /// The client asks the API server for the Receiver at its path, in the reference's namespace or the
    /// client's default one, and a missing Receiver is named.
    #[tokio::test]
    async fn the_receiver_is_read_from_the_api_server() {
        let served = object(
            2,
            Some(json!({"observedGeneration": 2, "webhookPath": "/hook/abc",
                        "conditions": [ready("True", "Served", "served")]})),
        );
        let body = serde_json::to_vec(&served).unwrap();
        let cases = [
            (
                "namespace/name",
                "tenant/app",
                "/apis/hookgate.io/v1alpha1/namespaces/tenant/receivers/app",
                Ok("/hook/abc"),
            ),
            (
                "the client's namespace",
                "app",
                "/apis/hookgate.io/v1alpha1/namespaces/from-context/receivers/app",
                Ok("/hook/abc"),
            ),
            (
                "not there",
                "tenant/missing",
                "/apis/hookgate.io/v1alpha1/namespaces/tenant/receivers/missing",
                Err("no Receiver tenant/missing (hookgate.io/v1alpha1)"),
            ),
        ];
        for (case, reference, expected_path, expected) in cases {
            let (body, asked) = (
                body.clone(),
                std::sync::Arc::new(std::sync::Mutex::new(None)),
            );
            let seen = asked.clone();
            let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
                let body = body.clone();
                *seen.lock().unwrap() = Some(request.uri().path().to_string());
                async move {
                    let response = if request.uri().path().ends_with("/app") {
                        http::Response::builder()
                            .status(200)
                            .body(kube::client::Body::from(body))
                    } else {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "NotFound", "code": 404, "message": "not found"});
                        http::Response::builder()
                            .status(404)
                            .body(kube::client::Body::from(
                                serde_json::to_vec(&status).unwrap(),
                            ))
                    };
                    Ok::<_, std::convert::Infallible>(response.unwrap())
                }
            });
            let client = Client::new(service, "from-context");
            let result = receiver_url(client, reference).await;
            assert_eq!(
                asked.lock().unwrap().as_deref(),
                Some(expected_path),
                "{case}"
            );
            match (expected, result) {
                (Ok(line), Ok(printed)) => assert_eq!(printed.line, line, "{case}"),
                (Err(message), Err(error)) => assert_eq!(error.to_string(), message, "{case}"),
                (_, result) => panic!("{case}: {result:?}"),
            }
        }
    }
}
