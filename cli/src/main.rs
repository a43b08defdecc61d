//! `hookgate`: the reconcile controller (`serve`) and the workstation tools (`token`, `url`, `check`,
//! `send`, `import`, `crd`).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use hookgate_cli as cli;
use hookgate_controller::serve::{self, ServeArgs};
use hookgate_filter::providers::{self, Proof, Provider};

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
    /// Import Flux Receivers: write the filter configuration and the Kustomize components that install it,
    /// so that every webhook URL Flux gave keeps working.
    ///
    /// Reads Receivers and their Secrets (key `token`, from `data` or `stringData`) and writes to --out:
    /// hookgate-config.json, the filter configuration (each Receiver's name, namespace, type, events and
    /// resources as targets; its token referenced by an environment variable, never its value);
    /// app/kustomization.yaml, a Kustomize Component for the route side (the configuration in the
    /// EnvoyExtensionPolicy `hookgate`, the variables in its hostKeys); proxy/kustomization.yaml, a
    /// Component for the proxy side (env entries of the EnvoyProxy `hookgate-proxy` reading the same
    /// Secrets by name, which the Envoy pods find in the Gateway's namespace). The configuration is checked
    /// with the filter's own parser first. On stderr: each imported receiver with its webhook path, each
    /// skipped one with why (a type hookgate lacks, a CEL filter), and what changed (events Flux ignores,
    /// cross-namespace targets). A Receiver whose Secret is missing is an error; nothing is written when no
    /// Receiver can be imported.
    Import {
        /// YAML files holding the Receivers and their Secrets (several documents, or a `kind: List` as
        /// `kubectl get -o yaml` prints); `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        inputs: Vec<PathBuf>,
        /// Directory to write hookgate-config.json, app/kustomization.yaml and proxy/kustomization.yaml to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the CustomResourceDefinition of `Receiver` (hookgate.io/v1alpha1) as YAML, as
    /// manifests/base/crds holds it.
    Crd,
}

#[derive(Args)]
struct SendArgs {
    /// The webhook URL.
    #[arg(long)]
    url: String,
    /// Sign as this provider would.
    #[arg(long = "type", value_name = "KIND", value_parser = provider_parser())]
    provider: &'static dyn Provider,
    /// The secret (for generic-oidc and gcr, the ID token to send as a bearer token); prefer
    /// --secret-env.
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

/// A provider of the table, by its `type` name; the names are the possible values `--help` lists.
fn provider_parser() -> impl TypedValueParser<Value = &'static dyn Provider> {
    PossibleValuesParser::new(providers::names())
        .map(|name| providers::lookup(&name).expect("a possible value is the name of a provider"))
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
        Command::Serve(args) => serve::run(args).await,
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
        Command::Crd => {
            print!("{}", hookgate_controller::receivers::crd_yaml());
            Ok(())
        }
        Command::Check { file } => {
            print!("{}", cli::check(&file)?);
            Ok(())
        }
        Command::Import { inputs, out } => {
            eprint!("{}", cli::import::run(&inputs, &out)?);
            Ok(())
        }
        Command::Send(args) => {
            let secret = secret_from(args.secret, args.secret_env, "secret");
            // Only the URL path proves a delivery of a secret-path type: it is sent with no secret.
            let secret = match args.provider.proof() {
                Proof::SecretPath => secret.unwrap_or_default(),
                // The ID token is the secret an ID-token sender holds.
                Proof::InRequest | Proof::VerifiedToken => secret?,
            };
            let body = match &args.payload {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?,
                None => args.provider.sender().sample_payload.as_bytes().to_vec(),
            };
            let sent = cli::send(
                &args.url,
                args.resolve,
                args.provider,
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
