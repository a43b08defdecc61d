//! Receivers as Kubernetes objects (docs/live-configuration.md): the `Receiver` CRD ([`crd`]), its
//! compilation with the filter's own compiler ([`compile`]), the index of Receivers and their Secrets
//! ([`index`]), the configuration endpoint the proxies long-poll ([`endpoint`]), the proxies it has seen
//! ([`proxies`]) and the receivers' status and Events ([`status`]). On with `hookgate serve
//! --channel-key-file`; without it the controller is what it was. With `--serve-flux-receivers`, Flux's
//! own Receivers are served too ([`flux`]), read and never written.

pub mod compile;
pub mod confirm;
pub mod crd;
pub mod endpoint;
pub mod flux;
pub mod index;
pub mod leader;
pub mod offline;
pub mod proxies;
pub mod proxy_selector;
pub mod status;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use hookgate_protocol::channel::TOLERANCE_SECS;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use crd::{crd_yaml, Receiver, ReceiverSpec, ReceiverStatus};
pub use index::{Configuration, Options};

use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::replay::{self, ReplayCache};
use index::{Index, Outcomes};
use leader::Leadership;
use proxies::ProxyBook;
use status::StatusWriter;

/// What the configuration endpoint serves from: the configuration, the proxies seen, and the request
/// signatures already accepted.
pub struct Live {
    pub configuration: watch::Receiver<Option<Arc<Configuration>>>,
    pub proxies: Arc<ProxyBook>,
    pub replay: ReplayCache,
    /// Lets the status writer's Lease go at shutdown (None in tests that publish by hand).
    pub lease: Option<leader::Release>,
}

impl Live {
    /// A `Live` serving from `configuration` (tests publish to it by hand).
    pub fn new(configuration: watch::Receiver<Option<Arc<Configuration>>>) -> Self {
        Self {
            configuration,
            proxies: Arc::default(),
            replay: ReplayCache::new(TOLERANCE_SECS, replay::DEFAULT_CAPACITY),
            lease: None,
        }
    }
}

/// The settings of receivers as objects.
pub struct Settings {
    pub options: Options,
    /// `--webhook-base-url`: the status then carries the full URL.
    pub base_url: Option<String>,
    /// The Events' reporting instance and the status Lease's holder: the pod's name.
    pub instance: String,
    /// Where the status Lease is: the controller's own namespace.
    pub lease_namespace: String,
}

/// Starts watching Receivers and Secrets, compiling and writing status. Returns what the endpoint serves
/// from and the tasks (to abort at shutdown: held long polls then answer at once).
pub fn start(
    client: Client,
    settings: Settings,
    keys: watch::Receiver<Arc<Keys>>,
    metrics: Arc<Metrics>,
) -> (Live, Vec<JoinHandle<()>>) {
    let changes = Arc::new(Notify::new());
    let referenced = Arc::new(RwLock::new(HashSet::new()));
    let scopes: Vec<Option<String>> = if settings.options.namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .options
            .namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    let mut tasks = Vec::new();
    let (mut receivers, mut flux_receivers, mut secrets) = (Vec::new(), Vec::new(), Vec::new());
    let flux_resource = flux::api_resource();
    for scope in &scopes {
        let (store, task) = index::watch_receivers(api(&client, scope.as_deref()), changes.clone());
        receivers.push(store);
        tasks.push(task);
        if settings.options.serve_flux {
            let flux_api: Api<DynamicObject> = match scope.as_deref() {
                Some(namespace) => Api::namespaced_with(client.clone(), namespace, &flux_resource),
                None => Api::all_with(client.clone(), &flux_resource),
            };
            let (store, task) =
                index::watch_flux_receivers(flux_api, flux_resource.clone(), changes.clone());
            flux_receivers.push(store);
            tasks.push(task);
        }
        let secret_api: Api<PartialObjectMeta<Secret>> = api(&client, scope.as_deref());
        let (store, task) = index::watch_secrets(secret_api, changes.clone(), referenced.clone());
        secrets.push(store);
        tasks.push(task);
    }
    let (configuration, configuration_rx) = watch::channel(None);
    let (outcomes, outcomes_rx) = watch::channel(Arc::new(Outcomes::default()));
    let mut live = Live::new(configuration_rx);
    let index = Index {
        client: client.clone(),
        options: settings.options,
        keys,
        receivers: receivers.clone(),
        flux: flux_receivers,
        secrets,
        changes,
        referenced,
        configuration,
        outcomes,
        metrics: metrics.clone(),
    };
    tasks.push(tokio::spawn(index.run()));
    let reporter = Reporter {
        controller: "hookgate-controller".into(),
        instance: Some(settings.instance.clone()),
    };
    let leadership = Leadership::new(client.clone(), &settings.lease_namespace, settings.instance);
    live.lease = Some(leadership.release());
    let writer = StatusWriter {
        leadership,
        recorder: Recorder::new(client.clone(), reporter),
        client,
        stores: receivers,
        outcomes: outcomes_rx,
        proxies: live.proxies.clone(),
        base_url: settings.base_url,
        metrics,
    };
    tasks.push(tokio::spawn(writer.run()));
    (live, tasks)
}

/// The API of `K` in `namespace`, or in every namespace.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}
