//! `hookgate`: the reconcile controller (`serve`) and the workstation tools (`token`, `url`, `check`,
//! `send`, `import`, `crd`).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use hookgate_cli as cli;
use hookgate_controller::receivers::offline;
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
    Serve(Box<ServeArgs>),
    /// Print a strong random secret (hex) to register with a provider.
    Token {
        /// Random bytes in the secret.
        #[arg(long, default_value_t = 32)]
        bytes: usize,
    },
    /// Print the public half of the controller's channel key (64 hex characters, as `hookgate token`
    /// makes it; the Secret `hookgate-channel`, key `key`), read from FILE (`-`: standard input): what
    /// the proxies' bootstrap lists in `controllerKeys`. The key itself is never printed.
    PublicKey {
        /// The file holding the controller's channel key.
        file: PathBuf,
    },
    /// Print a receiver's webhook path: Flux's (/hook/ + sha256(token + name + namespace)) from a token,
    /// or the URL the controller wrote in the status of a Receiver object (--receiver).
    Url {
        /// The receiver's name (with --token or --token-env).
        #[arg(long, required_unless_present = "receiver")]
        name: Option<String>,
        /// The receiver's namespace (with --token or --token-env).
        #[arg(long, required_unless_present = "receiver")]
        namespace: Option<String>,
        /// The receiver's token; prefer --token-env so it stays out of shell history.
        #[arg(long, conflicts_with = "token_env")]
        token: Option<String>,
        /// Environment variable holding the token.
        #[arg(long)]
        token_env: Option<String>,
        /// A Receiver object (hookgate.io/v1alpha1) in the cluster, NAMESPACE/NAME or NAME (in the
        /// kubeconfig context's namespace): print its `status.url`, else its `status.webhookPath`, read
        /// through the Kubernetes API (KUBECONFIG, ~/.kube/config, or the pod's service account). Exits
        /// 1 when the status has no path, saying why (its Ready reason and message); warns on standard
        /// error when the receiver is not Ready yet or the status is older than the object.
        #[arg(
            long,
            value_name = "[NAMESPACE/]NAME",
            conflicts_with_all = ["name", "namespace", "token", "token_env"]
        )]
        receiver: Option<String>,
    },
    /// Check files offline: hookgate Receiver objects with the controller's own compiler, and the
    /// bootstrap in an EnvoyExtensionPolicy with the filter's own reader.
    ///
    /// Files are read as YAML (several documents, or a `kind: List`) and may hold hookgate `Receiver`
    /// objects (hookgate.io/v1alpha1) with the Secrets they name, and EnvoyExtensionPolicies, whose
    /// `config` is the bootstrap: how the filter reaches the controller, and the controller's public keys.
    /// A JSON file without `kind` is such a `config` on its own. A bootstrap is read as the filter reads
    /// it and described without its keys. A `config` holding receivers (a filter configuration of before
    /// receivers were objects) is refused: receivers are `Receiver` objects now (`hookgate import` writes
    /// them from Flux Receivers; see docs/live-configuration.md). For each Receiver, compiled with the
    /// Receivers of every file together as the controller compiles them: `OK` and its webhook paths, or
    /// the Ready reason and message the controller would give it (for instance `InvalidSpec:
    /// spec.targets[0].name: ...`, `PathConflict: ...`), or the fields the CRD lacks. A Secret not in the
    /// files is replaced by a placeholder under each key, and the paths derived from it are shown as
    /// unknown. Secret values are never printed. Exits 1 when a configuration is refused or a Receiver
    /// would not be served.
    Check(CheckArgs),
    /// Sign a payload like the provider would and POST it to a hookgate (or Flux) webhook URL.
    Send(SendArgs),
    /// Import Flux Receivers as hookgate Receiver objects that keep every webhook URL Flux gave.
    ///
    /// Reads Flux Receivers (notification.toolkit.fluxcd.io) and, optionally, their Secrets (key `token`,
    /// from `data` or `stringData`) and writes --out/receivers.yaml: one hookgate `Receiver`
    /// (hookgate.io/v1alpha1) per Flux Receiver, with its name and namespace, its type, events, resources
    /// as targets, resourceFilter and suspend, and `secretRef` naming the same Secret (key `token`), so
    /// that it answers on Flux's path; each after a comment saying what differs. No Secret is written or
    /// copied: each Receiver reads its Flux Receiver's Secret where it is. Each is compiled by the
    /// controller's own compiler first, with its Secret's data when the Secret is in the input; without
    /// it the path is Flux's all the same, but not printed. A Receiver the controller would not serve is
    /// skipped with its Ready reason and message.
    ///
    /// On stderr: each imported receiver with its webhook path, each skipped one with why (a type
    /// hookgate lacks, a CEL filter), what changed (events Flux ignores, cross-namespace targets), and the
    /// Flux Receivers the controller can serve as they are with --serve-flux-receivers (the ones imported
    /// with no note). Nothing is written when no Receiver can be imported.
    Import {
        /// YAML files holding the Receivers and their Secrets (several documents, or a `kind: List` as
        /// `kubectl get -o yaml` prints); `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        inputs: Vec<PathBuf>,
        /// Directory to write receivers.yaml to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the CustomResourceDefinition of `Receiver` (hookgate.io/v1alpha1) as YAML, as
    /// manifests/base/crds holds it.
    Crd,
    /// Create or update a Receiver's webhook at its provider (GitHub, GitLab, Gitea/Forgejo), then test it.
    ///
    /// Reads the Receiver (hookgate.io/v1alpha1) through the Kubernetes API (KUBECONFIG, ~/.kube/config or
    /// the pod's service account): the URL is its `status.url`, or --base-url and its `status.webhookPath`;
    /// the secret is the first key of its `secretRef.keys` that its Secret has; the events are its
    /// `spec.events` in the provider's names (none: push; GitLab: pushes and tag pushes); the content type
    /// is JSON. The provider's token comes from --token-env or --token-file. Neither the token nor the
    /// secret is ever printed, in output or in errors.
    ///
    /// Idempotent: the repository's hook with the same URL is updated in place of adding a second; when it
    /// already sends those events as JSON, nothing is written and it says `unchanged`. Providers never show
    /// a hook's secret, so an existing hook's secret is left as it is unless the hook is updated anyway or
    /// --replace-secret is given. To rotate: add the new secret to the Secret as `next` (with `keys: [token,
    /// next]`), then `register --secret-key next --replace-secret`. With a pinned path that moves the hook
    /// to the new secret (GitHub and GitLab in place; Gitea/Forgejo, whose API cannot change a hook's secret,
    /// get a new hook and the old one is deleted); with Flux-style paths the new secret has its own URL, so
    /// a new hook is added and the old one is left for you to delete once the old key is gone.
    ///
    /// Then it triggers the provider's test delivery and says what the edge answered. GitHub: a ping,
    /// then the hook's deliveries show the status the edge gave it. GitLab: a test push, whose reply says
    /// whether the edge answered 2xx (GitLab's message if not). Gitea/Forgejo: a test push of the default
    /// branch's head (nothing on an empty repository); Gitea's API keeps no record of deliveries, so it is
    /// confirmed only when one of the receiver's named targets gets a new reconcile annotation within
    /// --wait, read through the Kubernetes API; otherwise it says plainly that it cannot confirm (look at the
    /// hook's Recent Deliveries). Exits 1 when the edge refused the test delivery, 0 when it accepted it or
    /// it cannot be known.
    Register(RegisterArgs),
}

#[derive(Args)]
struct RegisterArgs {
    /// The Receiver, NAMESPACE/NAME or NAME (in the kubeconfig context's namespace).
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    receiver: String,
    /// The repository: OWNER/REPO (GitLab: the project's path GROUP/.../PROJECT, or its numeric id).
    #[arg(long, value_name = "REPO")]
    repo: String,
    /// The provider's API; default: the receiver's type (github, gitlab, gitea). `forgejo` is Gitea's API,
    /// and a Gitea hook delivers to a `github` receiver too.
    #[arg(long, value_parser = ["github", "gitlab", "gitea", "forgejo"])]
    forge: Option<String>,
    /// The provider's API base URL. Default: https://api.github.com, https://gitlab.com/api/v4,
    /// https://gitea.com/api/v1 (a self-hosted Gitea or GitLab: https://HOST/api/v1, https://HOST/api/v4).
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// Environment variable holding the provider's API token.
    #[arg(long, value_name = "VAR", conflicts_with = "token_file", required_unless_present_any = ["token_file", "dry_run"])]
    token_env: Option<String>,
    /// File holding the provider's API token (a trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The webhook route's scheme and host (https://hooks.example.com): the URL is this and the
    /// receiver's `status.webhookPath`. Needed when the controller runs without --webhook-base-url.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The key of the receiver's Secret to register (one of its `secretRef.keys`), e.g. `next` while
    /// rotating. Default: the first listed that the Secret has. With Flux-style paths each key has its own
    /// path: the URL is that key's.
    #[arg(long, value_name = "KEY")]
    secret_key: Option<String>,
    /// Write the receiver's secret to the hook even when nothing else changed. GitHub and GitLab set it in
    /// place; Gitea/Forgejo cannot change a hook's secret through the API, so a new hook is added with it
    /// and the old one deleted (Gitea delivers to both for that moment).
    #[arg(long)]
    replace_secret: bool,
    /// Do not trigger the provider's test delivery.
    #[arg(long)]
    no_test: bool,
    /// Seconds to wait for the test delivery's outcome.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    wait: u64,
    /// Contact no provider: print, one JSON object a line, each request register may send (list,
    /// create, update, test, and where the provider has them, deliveries and delete) with its method, path
    /// relative to the API base URL (`{hook_id}` for an existing hook's id) and body, the secret shown as
    /// `<redacted>`. The Receiver and its Secret are still read.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Files to check (YAML, or a bootstrap as JSON); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The namespace of objects that name none, as `kubectl apply -n` would put them (a Flux-style path
    /// depends on it).
    #[arg(long, value_name = "NS", default_value = "default")]
    namespace: String,
    /// Check Receivers as a controller run with --allow-cross-namespace serves them (targets in other
    /// namespaces allowed).
    #[arg(long)]
    allow_cross_namespace: bool,
    /// The controller's --reconcile-path, which no Receiver may pin.
    #[arg(long, value_name = "PATH", default_value = hookgate_protocol::DEFAULT_FORWARD_PATH)]
    reconcile_path: String,
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

/// The provider's API token, from an environment variable or a file; never printed.
fn provider_token(env: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let token = match (env, file) {
        (Some(var), _) => std::env::var(&var)
            .with_context(|| format!("--token-env: environment variable {var} is not set"))?,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("--token-file {}: cannot read", path.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => bail!("give --token-env or --token-file"),
    };
    if token.is_empty() {
        bail!("the provider's token is empty");
    }
    Ok(token)
}

/// `register`: the receiver's hook at its provider, then its test.
async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    use cli::register::{self as reg, session};
    // The token first: a missing one fails before anything is read.
    let token = match args.dry_run {
        true => String::new(),
        false => provider_token(args.token_env, args.token_file)?,
    };
    let client = kube::Client::try_default().await.context(
        "cannot reach the Kubernetes API (KUBECONFIG, ~/.kube/config or the pod's service account)",
    )?;
    let source = reg::source::read(
        client.clone(),
        &args.receiver,
        args.base_url.as_deref(),
        args.secret_key.as_deref(),
    )
    .await?;
    for warning in &source.warnings {
        eprintln!("warning: {warning}");
    }
    let name = match args.forge.as_deref() {
        Some(name) => name,
        None => reg::forge_for_type(&source.provider_type).with_context(|| {
            format!(
                "Receiver {} is of type {}: give --forge",
                source.label, source.provider_type
            )
        })?,
    };
    let forge = reg::forge(name, &args.repo)?;
    let wanted = reg::Wanted {
        url: source.url.clone(),
        secret: source.secret.clone(),
        events: forge.events(&source.events)?,
    };
    if args.dry_run {
        reg::dry_run(forge.as_ref(), &wanted);
        return Ok(());
    }
    let base = args.api_url.as_deref().unwrap_or(forge.default_api_url());
    let api = session::Api::new(forge.as_ref(), base, &token, &wanted.secret)?;
    println!(
        "Receiver {}: {} ({})",
        source.label, wanted.url, source.secret_from
    );
    let id = session::apply(&api, &wanted, args.replace_secret).await?;
    if args.no_test {
        return Ok(());
    }
    let wait = std::time::Duration::from_secs(args.wait);
    let cluster = Some((&client, source.targets.as_slice()));
    match session::test(&api, &id, wait, cluster).await? {
        session::Verdict::Verified(how) => println!("verified: {how}"),
        session::Verdict::Unconfirmed(why) => println!("not confirmed: {why}"),
        session::Verdict::Refused(why) => {
            println!("refused: {why}");
            std::io::stdout().flush()?;
            std::process::exit(1);
        }
    }
    Ok(())
}

/// `url --receiver`: the URL in the status of the Receiver `reference`, with warnings on standard error.
async fn print_receiver_url(reference: &str) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context(
        "cannot reach the Kubernetes API (KUBECONFIG, ~/.kube/config or the pod's service account)",
    )?;
    let printed = cli::cluster::receiver_url(client, reference).await?;
    for warning in &printed.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}", printed.line);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS provider for kube and reqwest.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Token { bytes } => {
            println!("{}", cli::token(bytes)?);
            Ok(())
        }
        Command::PublicKey { file } => {
            println!("{}", cli::public_key(&file)?);
            Ok(())
        }
        Command::Url {
            name,
            namespace,
            token,
            token_env,
            receiver,
        } => {
            if let Some(reference) = receiver {
                return print_receiver_url(&reference).await;
            }
            // clap requires both without --receiver.
            let (Some(name), Some(namespace)) = (name, namespace) else {
                bail!("give --name and --namespace, or --receiver");
            };
            let token = secret_from(token, token_env, "token")?;
            println!("{}", cli::url(&name, &namespace, &token));
            Ok(())
        }
        Command::Register(args) => register(args).await,
        Command::Crd => {
            print!("{}", hookgate_controller::receivers::crd_yaml());
            Ok(())
        }
        Command::Check(args) => {
            let options = cli::CheckOptions {
                namespace: args.namespace,
                controller: offline::Options {
                    forward_path: args.reconcile_path,
                    allow_cross_namespace: args.allow_cross_namespace,
                },
            };
            let report = cli::check(&args.files, &options)?;
            print!("{}", report.text);
            if report.invalid > 0 {
                std::io::stdout().flush()?;
                std::process::exit(1);
            }
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
