//! `hookgate serve`: the controller's arguments (flags with environment fallbacks) and its start-up: read
//! the attestation key, build the Kubernetes client, the reconciler and the dispatcher, with a channel key
//! start receivers as objects (watch, compile, serve the configuration, write status), serve the router,
//! stop gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use hookgate_protocol::attestation::{check_key, DEFAULT_TOLERANCE_SECS};
use hookgate_protocol::{Secret, DEFAULT_FORWARD_PATH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::keys::{KeySources, Material};
use crate::metrics::Metrics;
use crate::receivers;
use crate::receivers::confirm::{Confirmer, Listener, ProxyPods};
use crate::receivers::proxy_selector::{ProxySelector, OWNING_GATEWAY_NAMESPACE};
use crate::reconcile::{Reconciler, Settings};
use crate::server::{router, AppState};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKGATE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Path of the reconcile endpoint; must equal the filter's `forwardPath`.
    #[arg(long, env = "HOOKGATE_RECONCILE_PATH", default_value = DEFAULT_FORWARD_PATH)]
    pub reconcile_path: String,
    /// File holding the attestation key shared with the filter (e.g. a mounted Secret).
    #[arg(
        long,
        env = "HOOKGATE_ATTESTATION_KEY_FILE",
        conflicts_with = "attestation_key_env"
    )]
    pub attestation_key_file: Option<PathBuf>,
    /// Environment variable holding the attestation key, when no file is given.
    #[arg(long, default_value = "HOOKGATE_ATTESTATION_KEY")]
    pub attestation_key_env: String,
    /// Seconds an attestation timestamp may differ from this clock.
    #[arg(long, env = "HOOKGATE_ATTESTATION_TOLERANCE", default_value_t = DEFAULT_TOLERANCE_SECS)]
    pub attestation_tolerance: u64,
    /// Allow targets outside the receiver's namespace.
    #[arg(long, env = "HOOKGATE_ALLOW_CROSS_NAMESPACE")]
    pub allow_cross_namespace: bool,
    /// Patches in flight at once for one request.
    #[arg(long, env = "HOOKGATE_MAX_CONCURRENCY", default_value_t = 32)]
    pub max_concurrency: usize,
    /// Time budget of one request in milliseconds, retries included (providers wait about 10 s).
    #[arg(long, env = "HOOKGATE_DEADLINE_MS", default_value_t = 8000)]
    pub deadline_ms: u64,
    /// GitHub API base for `dispatch` receivers (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "HOOKGATE_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// File holding the GitHub token for `repository_dispatch` (mount it from a Secret).
    #[arg(long, env = "HOOKGATE_GITHUB_TOKEN_FILE")]
    pub github_token_file: Option<PathBuf>,
    /// Seconds during which the same (repository, event type, application, failed revision) dispatches
    /// only once, across replicas.
    #[arg(long, env = "HOOKGATE_DISPATCH_DEDUP_SECONDS", default_value_t = 600)]
    pub dispatch_dedup_seconds: u64,
    /// Namespace of the Leases that record dispatches (and, with receivers as objects, elect the replica
    /// that writes their status), shared by the replicas: the controller's own (set POD_NAMESPACE from the
    /// downward API). Default: the namespace of the in-cluster ServiceAccount, or of the kubeconfig
    /// context.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "HOOKGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The previous attestation key, accepted as well while the key changes (a missing file: none).
    #[arg(long, env = "HOOKGATE_PREVIOUS_ATTESTATION_KEY_FILE")]
    pub previous_attestation_key_file: Option<PathBuf>,
    /// File holding the controller's channel key: 64 hex characters (`hookgate token`; the Secret
    /// `hookgate-channel`, key `key`), whose public half (`hookgate public-key`) is in the proxies'
    /// bootstrap. Turns on receivers as objects: the controller watches `Receiver` objects and their
    /// Secrets and serves the compiled configuration at /hookgate/v1/configuration, sealed for each
    /// confirmed proxy VM.
    #[arg(long, env = "HOOKGATE_CHANNEL_KEY_FILE")]
    pub channel_key_file: Option<PathBuf>,
    /// The previous channel key, accepted as well while the key changes (a missing file: none).
    #[arg(
        long,
        env = "HOOKGATE_PREVIOUS_CHANNEL_KEY_FILE",
        requires = "channel_key_file"
    )]
    pub previous_channel_key_file: Option<PathBuf>,
    /// A namespace whose Receivers (and their Secrets) are served; repeat for several. Default: all.
    #[arg(
        long = "watch-namespace",
        env = "HOOKGATE_WATCH_NAMESPACES",
        value_delimiter = ',',
        requires = "channel_key_file"
    )]
    pub watch_namespaces: Vec<String>,
    /// A namespace whose Receivers may use `action: dispatch` (with the GitHub token of
    /// --github-token-file); repeat for several. Default: the controller's own namespace only.
    #[arg(
        long = "dispatch-namespace",
        env = "HOOKGATE_DISPATCH_NAMESPACES",
        value_delimiter = ',',
        requires = "channel_key_file"
    )]
    pub dispatch_namespaces: Vec<String>,
    /// The port of the proxies' webhook listener (Envoy's container port: Envoy Gateway adds 10000 to a
    /// listener port under 1024), where each proxy VM's confirmation is posted, to the address it asked
    /// from.
    #[arg(
        long,
        env = "HOOKGATE_PROXY_LISTENER_PORT",
        requires = "channel_key_file"
    )]
    pub proxy_listener_port: Option<u16>,
    /// A label selector picking hookgate's own proxy pods in --proxy-namespace (Envoy Gateway labels them
    /// `gateway.envoyproxy.io/owning-gateway-name=<Gateway>` and
    /// `gateway.envoyproxy.io/owning-gateway-namespace=<its namespace>`: give both): confirmations are
    /// posted only to the addresses of the running pods it picks. An empty one (every pod) is refused.
    /// Without it, to whichever address asked (the network path then decides who is confirmed).
    #[arg(long, env = "HOOKGATE_PROXY_SELECTOR", requires = "channel_key_file")]
    pub proxy_selector: Option<String>,
    /// The namespace of the proxy pods --proxy-selector picks (Envoy Gateway's own, by default).
    #[arg(
        long,
        env = "HOOKGATE_PROXY_NAMESPACE",
        default_value = "envoy-gateway-system",
        requires = "proxy_selector"
    )]
    pub proxy_namespace: String,
    /// The host name of the webhook route (the `Host` of confirmation posts). Default: the host of
    /// --webhook-base-url.
    #[arg(long, env = "HOOKGATE_WEBHOOK_HOST", requires = "channel_key_file")]
    pub webhook_host: Option<String>,
    /// The URL the route answers on (https://hooks.example.com): a receiver's status then carries its full
    /// URL.
    #[arg(long, env = "HOOKGATE_WEBHOOK_BASE_URL", requires = "channel_key_file")]
    pub webhook_base_url: Option<String>,
    /// Serve Flux's own `Receiver` objects (notification.toolkit.fluxcd.io/v1) of the watched namespaces
    /// as well, as they are, on Flux's path. hookgate never writes them: why one cannot be served is in
    /// the log and the `hookgate_receivers{kind="flux"}` gauge.
    #[arg(
        long,
        env = "HOOKGATE_SERVE_FLUX_RECEIVERS",
        requires = "channel_key_file"
    )]
    pub serve_flux_receivers: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Runs the controller until SIGTERM or Ctrl-C, then lets in-flight requests finish.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let key = attestation_key(
        args.attestation_key_file.as_deref(),
        &args.attestation_key_env,
        |var| std::env::var(var).ok(),
    )?;
    let metrics = Arc::new(Metrics::default());
    let config = kube::Config::infer()
        .await
        .context("cannot configure the Kubernetes client")?;
    let client = crate::metrics::instrumented_client(config, metrics.clone())
        .context("cannot configure the Kubernetes client")?;
    let settings = Settings {
        allow_cross_namespace: args.allow_cross_namespace,
        max_concurrency: args.max_concurrency.max(1),
        deadline: Duration::from_millis(args.deadline_ms),
        ..Settings::default()
    };
    let dispatcher = Dispatcher::new(
        client.clone(),
        DispatchSettings {
            api_url: args.github_api_url.clone(),
            token_file: args.github_token_file.clone(),
            dedup_window: Duration::from_secs(args.dispatch_dedup_seconds),
            deadline: settings.deadline,
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            // A pod's host name is its name.
            identity: std::env::var("HOSTNAME").unwrap_or_else(|_| "hookgate-controller".into()),
        },
    )
    .context("cannot build the GitHub client")?;
    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let sources = key_sources(&args, key);
    let (keys, live, mut tasks) = match &args.channel_key_file {
        None => {
            // As before receivers as objects: the keys are read once.
            let keys = sources.load()?;
            (watch::channel(Arc::new(keys)).1, None, Vec::new())
        }
        Some(_) => {
            let (sender, keys) = watch::channel(Arc::new(sources.load()?));
            let mut tasks = vec![sources.spawn_reloader(sender)];
            let (live, started) = receivers::start(
                client.clone(),
                receivers_settings(&args, lease_namespace),
                keys.clone(),
                metrics.clone(),
            );
            tasks.extend(started);
            (keys, Some(live), tasks)
        }
    };
    let (confirmer, proxies_task) = confirmer(&args, &client, &metrics)?;
    tasks.extend(proxies_task);
    let state = Arc::new(AppState {
        reconciler: Reconciler::new(client.clone(), settings, metrics.clone()),
        dispatcher,
        client,
        keys,
        tolerance_secs: args.attestation_tolerance,
        metrics,
        live,
        confirmer,
    });
    serve(state, &args, tasks).await
}

/// Where the keys are read from: the attestation key's file (read again with receivers as objects) or the
/// value read from the environment at start.
fn key_sources(args: &ServeArgs, key: Vec<u8>) -> KeySources {
    KeySources {
        attestation: match &args.attestation_key_file {
            Some(path) => Material::File(path.clone()),
            None => Material::Fixed(Secret::new(key)),
        },
        previous_attestation: args.previous_attestation_key_file.clone(),
        channel: args.channel_key_file.clone(),
        previous_channel: args.previous_channel_key_file.clone(),
    }
}

/// With receivers as objects, the confirmer of proxy VMs (the listener port and host name are required
/// then), and the watch of hookgate's proxy pods when --proxy-selector picks them.
fn confirmer(
    args: &ServeArgs,
    client: &kube::Client,
    metrics: &Metrics,
) -> anyhow::Result<(Option<Confirmer>, Option<JoinHandle<()>>)> {
    if args.channel_key_file.is_none() {
        return Ok((None, None));
    }
    let port = args.proxy_listener_port.context(
        "--channel-key-file needs --proxy-listener-port (the proxies' webhook listener port)",
    )?;
    let host = match (&args.webhook_host, &args.webhook_base_url) {
        (Some(host), _) => host.clone(),
        (None, Some(url)) => url
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_owned))
            .context("--webhook-base-url has no host name")?,
        (None, None) => anyhow::bail!(
            "--channel-key-file needs --webhook-host or --webhook-base-url (the webhook route's host name)"
        ),
    };
    let (proxies, task) = match proxy_pods(args, client)? {
        Some((pods, task)) => (Some(pods), Some(task)),
        None => {
            tracing::warn!(
                "no --proxy-selector: a proxy VM's confirmation goes to whichever address asked"
            );
            (None, None)
        }
    };
    let refused = metrics.confirmations_refused.clone();
    let confirmer = Confirmer::new(Listener { port, host }, proxies, refused)
        .context("cannot build the HTTP client")?;
    Ok((Some(confirmer), task))
}

/// The watch of the pods --proxy-selector picks, once the selector is checked (an empty or malformed one
/// is an error), warning of each Envoy Gateway label it leaves open.
fn proxy_pods(
    args: &ServeArgs,
    client: &kube::Client,
) -> anyhow::Result<Option<(ProxyPods, JoinHandle<()>)>> {
    let Some(selector) = &args.proxy_selector else {
        return Ok(None);
    };
    let selector = ProxySelector::parse(selector)?;
    for label in selector.unpinned() {
        let trusted = if label == OWNING_GATEWAY_NAMESPACE {
            "the proxy pods of a Gateway of the same name in another namespace (a tenant's) are \
             confirmed as hookgate's proxies too"
        } else {
            "the proxy pods of other Gateways are confirmed as hookgate's proxies too"
        };
        tracing::warn!(
            selector = selector.as_str(),
            label,
            "--proxy-selector does not pin this label of Envoy Gateway's proxy pods to one value: {trusted}"
        );
    }
    let api = kube::Api::namespaced(client.clone(), &args.proxy_namespace);
    Ok(Some(ProxyPods::watch(api, &selector)))
}

fn receivers_settings(args: &ServeArgs, lease_namespace: String) -> receivers::Settings {
    receivers::Settings {
        options: receivers::Options {
            namespaces: args.watch_namespaces.clone(),
            forward_path: args.reconcile_path.clone(),
            allow_cross_namespace: args.allow_cross_namespace,
            serve_flux: args.serve_flux_receivers,
            dispatch_namespaces: if args.dispatch_namespaces.is_empty() {
                vec![lease_namespace.clone()]
            } else {
                args.dispatch_namespaces.clone()
            },
        },
        base_url: args.webhook_base_url.clone(),
        instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "hookgate-controller".into()),
        lease_namespace,
    }
}

/// Serves until SIGTERM or Ctrl-C; then the background tasks stop (held long polls answer at once) and
/// in-flight requests finish.
async fn serve(
    state: Arc<AppState>,
    args: &ServeArgs,
    tasks: Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let live = state.live.is_some();
    let lease = state.live.as_ref().and_then(|live| live.lease.clone());
    let app = router(state, &args.reconcile_path);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %args.listen, path = %args.reconcile_path, receivers_as_objects = live, "hookgate controller serving");
    let shutdown = async move {
        shutdown_signal().await;
        for task in &tasks {
            task.abort();
        }
    };
    // The peer's address: where a proxy VM's confirmation is posted.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("server failed")?;
    if let Some(lease) = lease {
        lease.release().await;
    }
    tracing::info!("hookgate controller stopped");
    Ok(())
}

/// The attestation key from `file`, or else from the environment variable `var`, byte for byte as Envoy
/// reads it, refused (never shown) when the filter would refuse it: one rule for both sides,
/// [`check_key`].
fn attestation_key(
    file: Option<&Path>,
    var: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<u8>> {
    let (key, source) = match file {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("attestation key file {}", path.display()))?,
            format!("attestation key file {}", path.display()),
        ),
        None => (
            env(var)
                .with_context(|| format!("attestation key: environment variable {var} is not set"))?
                .into_bytes(),
            format!("attestation key: environment variable {var}"),
        ),
    };
    check_key(&key).map_err(|e| anyhow!("{source}: {e}"))?;
    Ok(key)
}

/// SIGTERM (Kubernetes) or Ctrl-C: stop accepting, let in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "controller-test-attestation-key-0123456789";

    /// The controller takes its key byte for byte, as Envoy does, and refuses at start-up what the filter
    /// refuses, saying how to fix it and never showing the key.
    #[test]
    fn key_file_is_read_byte_for_byte_and_checked() {
        let dir = std::env::temp_dir().join(format!("hookgate-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        let cases: &[(&str, String, Option<&str>)] = &[
            ("as written by --from-literal", KEY.into(), None),
            (
                "trailing newline",
                format!("{KEY}\n"),
                Some("begins or ends with whitespace"),
            ),
            (
                "trailing CRLF",
                format!("{KEY}\r\n"),
                Some("begins or ends with whitespace"),
            ),
            (
                "leading space",
                format!(" {KEY}"),
                Some("begins or ends with whitespace"),
            ),
            (
                "too short",
                "short-key".into(),
                Some("shorter than 16 bytes"),
            ),
        ];
        for (name, content, refusal) in cases {
            std::fs::write(&file, content).unwrap();
            let from_file = attestation_key(Some(&file), "UNUSED", |_| None);
            let from_env = attestation_key(None, "KEY_VAR", |v| {
                (v == "KEY_VAR").then(|| content.clone())
            });
            for (source, result) in [("file", from_file), ("env", from_env)] {
                match (refusal, result) {
                    (None, Ok(key)) => assert_eq!(key, content.as_bytes(), "{name} ({source})"),
                    (Some(reason), Err(e)) => {
                        let message = format!("{e:#}");
                        assert!(message.contains(reason), "{name} ({source}): {message}");
                        assert!(
                            message.contains("openssl rand -hex 32"),
                            "{name} ({source}): {message}"
                        );
                        assert!(
                            !message.contains(content.trim()),
                            "{name} ({source}): shows the key"
                        );
                    }
                    (_, other) => panic!("{name} ({source}): {other:?}"),
                }
            }
        }
        assert!(attestation_key(None, "KEY_VAR", |_| None)
            .unwrap_err()
            .to_string()
            .contains("environment variable KEY_VAR is not set"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `--proxy-selector` is checked before the controller starts: an empty one (every pod of the namespace)
    /// or one the API server would refuse stops it, saying why.
    #[tokio::test]
    async fn an_empty_or_malformed_proxy_selector_stops_the_start() {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let api_server = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(api_server).unwrap();
        let manifests = "gateway.envoyproxy.io/owning-gateway-name=eg,\
                         gateway.envoyproxy.io/owning-gateway-namespace=envoy-gateway-system";
        for (case, selector, refusal) in [
            ("empty", "", Some("--proxy-selector is empty")),
            ("blank", " ", Some("--proxy-selector is empty")),
            ("malformed", "a b", Some("is not a label selector")),
            ("the manifests'", manifests, None),
        ] {
            let args = [
                "serve",
                "--channel-key-file=/nonexistent",
                "--proxy-listener-port=10080",
                "--webhook-host=hooks.example.test",
                "--proxy-selector",
                selector,
            ];
            let args = <Command as clap::Parser>::try_parse_from(args)
                .unwrap()
                .serve;
            match (confirmer(&args, &client, &Metrics::default()), refusal) {
                (Ok((Some(_), Some(task))), None) => task.abort(),
                (Err(error), Some(says)) => {
                    assert!(error.to_string().contains(says), "{case}: {error}")
                }
                (Ok(_), _) => panic!("{case}: started"),
                (Err(error), None) => panic!("{case}: {error}"),
            }
        }
    }
}
