//! `hookgate`: the reconcile controller (`serve`) and the workstation tools (`token`, `url`, `check`,
//! `send`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hookgate_controller::cli::{self, SendType};
use hookgate_controller::dispatch::{DispatchSettings, Dispatcher};
use hookgate_controller::metrics::Metrics;
use hookgate_controller::reconcile::{Reconciler, Settings};
use hookgate_controller::server::{router, AppState};
use hookgate_filter::attestation::{check_key, DEFAULT_TOLERANCE_SECS};
use hookgate_filter::protocol::DEFAULT_FORWARD_PATH;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "hookgate",
    version,
    about = "Webhooks that drive Flux and Argo CD, verified at the edge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconcile controller: accept attested requests from the hookgate filter and set the
    /// reconcile annotation on their targets (in-cluster config, or KUBECONFIG).
    Serve(ServeArgs),
    /// Print a strong random secret (hex) to register with a provider.
    Token {
        /// Random bytes in the secret.
        #[arg(long, default_value_t = 32)]
        bytes: usize,
    },
    /// Print a receiver's webhook path: Flux's (/hook/ + sha256(token + name + namespace)) from a token,
    /// or the paths a filter configuration gives it (--config).
    Url {
        #[arg(long)]
        name: String,
        #[arg(long)]
        namespace: String,
        /// The receiver's token; prefer --token-env so it stays out of shell history.
        #[arg(long, conflicts_with_all = ["token_env", "config"])]
        token: Option<String>,
        /// Environment variable holding the token.
        #[arg(long, conflicts_with = "config")]
        token_env: Option<String>,
        /// A filter configuration (JSON) or a YAML file with an EnvoyExtensionPolicy: print the paths it
        /// gives this receiver (pinned, or derived from its secrets).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a filter configuration (JSON) or the `config` of each EnvoyExtensionPolicy in a YAML file
    /// with the filter's own parser, and print each receiver's paths. Secrets are read from this
    /// environment; unset ones are reported, not required.
    Check { file: PathBuf },
    /// Sign a payload like the provider would and POST it to a hookgate (or Flux) webhook URL.
    Send(SendArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKGATE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Path of the reconcile endpoint; must equal the filter's `forwardPath`.
    #[arg(long, env = "HOOKGATE_RECONCILE_PATH", default_value = DEFAULT_FORWARD_PATH)]
    reconcile_path: String,
    /// File holding the attestation key shared with the filter (e.g. a mounted Secret).
    #[arg(
        long,
        env = "HOOKGATE_ATTESTATION_KEY_FILE",
        conflicts_with = "attestation_key_env"
    )]
    attestation_key_file: Option<PathBuf>,
    /// Environment variable holding the attestation key, when no file is given.
    #[arg(long, default_value = "HOOKGATE_ATTESTATION_KEY")]
    attestation_key_env: String,
    /// Seconds an attestation timestamp may differ from this clock.
    #[arg(long, env = "HOOKGATE_ATTESTATION_TOLERANCE", default_value_t = DEFAULT_TOLERANCE_SECS)]
    attestation_tolerance: u64,
    /// Allow targets outside the receiver's namespace.
    #[arg(long, env = "HOOKGATE_ALLOW_CROSS_NAMESPACE")]
    allow_cross_namespace: bool,
    /// Patches in flight at once for one request.
    #[arg(long, env = "HOOKGATE_MAX_CONCURRENCY", default_value_t = 32)]
    max_concurrency: usize,
    /// Time budget of one request in milliseconds, retries included (providers wait about 10 s).
    #[arg(long, env = "HOOKGATE_DEADLINE_MS", default_value_t = 8000)]
    deadline_ms: u64,
    /// GitHub API base for `dispatch` receivers (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "HOOKGATE_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    github_api_url: String,
    /// File holding the GitHub token for `repository_dispatch` (mount it from a Secret).
    #[arg(long, env = "HOOKGATE_GITHUB_TOKEN_FILE")]
    github_token_file: Option<PathBuf>,
    /// Seconds during which the same (repository, event type, application, failed revision) dispatches
    /// only once, across replicas.
    #[arg(long, env = "HOOKGATE_DISPATCH_DEDUP_SECONDS", default_value_t = 600)]
    dispatch_dedup_seconds: u64,
    /// Namespace of the Leases that record dispatches, shared by the replicas: the controller's own (set
    /// POD_NAMESPACE from the downward API). Default: the namespace of the in-cluster ServiceAccount, or
    /// of the kubeconfig context.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "HOOKGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct SendArgs {
    /// The webhook URL.
    #[arg(long)]
    url: String,
    /// Sign as this provider would.
    #[arg(long = "type", value_enum)]
    kind: SendType,
    /// The secret; prefer --secret-env.
    #[arg(long, conflicts_with = "secret_env")]
    secret: Option<String>,
    /// Environment variable holding the secret.
    #[arg(long)]
    secret_env: Option<String>,
    /// Event name (default: the provider's push event).
    #[arg(long)]
    event: Option<String>,
    /// Payload file; without it, a built-in sample for the type.
    #[arg(long)]
    payload: Option<PathBuf>,
    /// Connect to this IP address for the URL's host name, keeping the URL's port and host name (as
    /// curl's --resolve): to try a route with `hostnames` before DNS points at the gateway.
    #[arg(long, value_name = "IP")]
    resolve: Option<std::net::IpAddr>,
}

fn secret_from(value: Option<String>, env: Option<String>, what: &str) -> anyhow::Result<String> {
    match (value, env) {
        (Some(v), _) => Ok(v),
        (None, Some(var)) => std::env::var(&var)
            .with_context(|| format!("{what}: environment variable {var} is not set")),
        (None, None) => bail!("{what}: give --{what} or --{what}-env"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS provider for kube and reqwest.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Token { bytes } => {
            println!("{}", cli::token(bytes)?);
            Ok(())
        }
        Command::Url {
            name,
            namespace,
            token,
            token_env,
            config,
        } => {
            match config {
                Some(file) => {
                    for path in cli::receiver_paths(&file, &namespace, &name)? {
                        println!("{path}");
                    }
                }
                None => {
                    let token = secret_from(token, token_env, "token")?;
                    println!("{}", cli::url(&name, &namespace, &token));
                }
            }
            Ok(())
        }
        Command::Check { file } => {
            print!("{}", cli::check(&file)?);
            Ok(())
        }
        Command::Send(args) => {
            let secret = match args.kind {
                SendType::Generic
                | SendType::Dockerhub
                | SendType::Quay
                | SendType::Acr
                | SendType::Cdevents => {
                    secret_from(args.secret, args.secret_env, "secret").unwrap_or_default()
                }
                _ => secret_from(args.secret, args.secret_env, "secret")?,
            };
            let body = match &args.payload {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?,
                None => serde_json::to_vec(&cli::sample_payload(args.kind))?,
            };
            let sent = cli::send(
                &args.url,
                args.resolve,
                args.kind,
                &secret,
                args.event.as_deref(),
                body,
            )
            .await?;
            println!("{} {}", sent.status, sent.body);
            if sent.status >= 300 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let metrics = Arc::new(Metrics::default());
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
    let state = Arc::new(AppState {
        reconciler: Reconciler::new(client.clone(), settings, metrics.clone()),
        dispatcher,
        client,
        attestation_key: key,
        tolerance_secs: args.attestation_tolerance,
        metrics,
    });
    let app = router(state, &args.reconcile_path);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %args.listen, path = %args.reconcile_path, "hookgate controller serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
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
}
