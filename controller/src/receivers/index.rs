//! The index: the Receivers of the watched namespaces (reflectors; with `--serve-flux-receivers` Flux's
//! Receivers too), the metadata of their Secrets (a metadata-only reflector: the data of a Secret no
//! receiver names never reaches the controller), and the data of the Secrets receivers name, read again
//! when their resourceVersion changes. Every change is compiled again ([`DEBOUNCE`] after it, so a burst
//! compiles once) and the result published: the configuration the proxies are served, and the outcome of
//! each receiver for its status (hookgate's) or for the log and metrics (Flux's, whose objects hookgate
//! never writes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use hookgate_protocol::Secret;
use k8s_openapi::api::core::v1::Secret as SecretObject;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::compile::{self, key_of, Compiled, Key, Kind, NotReady, SecretData, SecretState};
use super::crd::Receiver;
use super::flux;
use crate::keys::Keys;
use crate::metrics::Metrics;

/// How long after a change the index compiles: the changes of a burst compile once.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How soon a Secret the API server did not give is asked for again.
const RETRY: Duration = Duration::from_secs(2);
/// Secrets read at once.
const FETCH_CONCURRENCY: usize = 16;
/// How long the first compile waits for Flux's Receivers to be listed: past it (their CRD is not
/// installed, or the controller may not list them), the rest is served without them until they are.
const FLUX_LIST_WAIT: Duration = Duration::from_secs(30);

/// What every receiver is compiled with.
#[derive(Clone, Debug)]
pub struct Options {
    /// The namespaces watched; empty: all.
    pub namespaces: Vec<String>,
    /// The filter's `forwardPath`: the controller's reconcile path.
    pub forward_path: String,
    pub allow_cross_namespace: bool,
    /// `--serve-flux-receivers`: Flux's `Receiver` objects are served too.
    pub serve_flux: bool,
    /// `--dispatch-namespace`: the namespaces whose receivers may dispatch.
    pub dispatch_namespaces: Vec<String>,
}

/// The configuration being served. `document` holds secrets: `Debug` shows the generation and digest.
pub struct Configuration {
    pub generation: u64,
    pub digest: String,
    pub document: Vec<u8>,
}

impl fmt::Debug for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Configuration({}.{})", self.generation, self.digest)
    }
}

/// A receiver of the served configuration, as its status needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub paths: Vec<String>,
    /// The generation in which the receiver's current form (its wire receiver, secrets included) first
    /// appeared.
    pub since: u64,
    pub missing_keys: Vec<String>,
    pub suspended: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Included(Served),
    Refused(NotReady),
}

/// What the latest compile made of every receiver.
#[derive(Clone, Debug, Default)]
pub struct Outcomes {
    /// False until the first compile.
    pub compiled: bool,
    pub generation: u64,
    pub digest: String,
    /// hookgate's Receivers.
    pub receivers: BTreeMap<Key, Outcome>,
    /// Flux's Receivers (with `--serve-flux-receivers`).
    pub flux: BTreeMap<Key, Outcome>,
}

/// The numbering of configurations: a generation is the wall-clock milliseconds at which the content
/// (its digest) changed, never less than the previous one plus one; and for each receiver, the generation
/// in which its current form first appeared.
#[derive(Default)]
pub struct Generations {
    current: Option<(u64, String)>,
    forms: HashMap<(Kind, Key), (String, u64)>,
}

impl Generations {
    /// The generation of a document whose digest is `digest`, compiled at `now_ms`, and whether it is a
    /// new one.
    pub fn next(&mut self, digest: &str, now_ms: u64) -> (u64, bool) {
        match &self.current {
            Some((generation, current)) if current == digest => (*generation, false),
            previous => {
                let generation = previous
                    .as_ref()
                    .map_or(now_ms, |(last, _)| now_ms.max(last + 1));
                self.current = Some((generation, digest.to_string()));
                (generation, true)
            }
        }
    }

    /// Each receiver's outcome in `compiled`, served at `generation`: hookgate's, then Flux's.
    pub fn outcomes(
        &mut self,
        compiled: &Compiled,
        generation: u64,
    ) -> (BTreeMap<Key, Outcome>, BTreeMap<Key, Outcome>) {
        self.forms.retain(|(kind, key), _| match kind {
            Kind::Hookgate => compiled.included.contains_key(key),
            Kind::Flux => compiled.flux_included.contains_key(key),
        });
        let hookgate = self.of_kind(
            Kind::Hookgate,
            &compiled.included,
            &compiled.refused,
            generation,
        );
        let flux = self.of_kind(
            Kind::Flux,
            &compiled.flux_included,
            &compiled.flux_refused,
            generation,
        );
        (hookgate, flux)
    }

    fn of_kind(
        &mut self,
        kind: Kind,
        included: &BTreeMap<Key, compile::Included>,
        refused: &BTreeMap<Key, NotReady>,
        generation: u64,
    ) -> BTreeMap<Key, Outcome> {
        let mut outcomes = BTreeMap::new();
        for (key, included) in included {
            let id = (kind, key.clone());
            let since = match self.forms.get(&id) {
                Some((fingerprint, since)) if *fingerprint == included.fingerprint => *since,
                _ => {
                    self.forms
                        .insert(id, (included.fingerprint.clone(), generation));
                    generation
                }
            };
            let served = Served {
                paths: included.paths.clone(),
                since,
                missing_keys: included.missing_keys.clone(),
                suspended: included.suspended,
            };
            outcomes.insert(key.clone(), Outcome::Included(served));
        }
        for (key, not_ready) in refused {
            outcomes.insert(key.clone(), Outcome::Refused(not_ready.clone()));
        }
        outcomes
    }
}

/// What was last logged of each Flux Receiver, so that each change is logged once: hookgate writes
/// nothing on Flux's objects, and its log is where their owners read why one is not served.
#[derive(Default)]
pub struct FluxLog {
    logged: HashMap<Key, String>,
}

impl FluxLog {
    /// Logs each Flux Receiver of `compiled` whose outcome changed since last logged: at warn one that
    /// hookgate cannot serve, with its reason; at info one served (with where hookgate differs from
    /// Flux). Returns what was logged, as `(namespace/name, line)`, for the tests.
    pub fn log(&mut self, compiled: &Compiled) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        let mut now =
            HashMap::with_capacity(compiled.flux_included.len() + compiled.flux_refused.len());
        for (key, not_ready) in &compiled.flux_refused {
            let line = format!("{}: {}", not_ready.reason.as_str(), not_ready.message);
            if self.logged.get(key) != Some(&line) {
                let receiver = format!("{}/{}", key.0, key.1);
                tracing::warn!(
                    flux_receiver = %receiver,
                    reason = not_ready.reason.as_str(),
                    why = %not_ready.message,
                    "hookgate cannot serve this Flux Receiver"
                );
                lines.push((receiver, line.clone()));
            }
            now.insert(key.clone(), line);
        }
        for (key, included) in &compiled.flux_included {
            // Not its path: a `generic` receiver's path is its only proof.
            let line = format!("served; {}", included.notes.join("; "));
            if self.logged.get(key) != Some(&line) {
                let receiver = format!("{}/{}", key.0, key.1);
                if included.notes.is_empty() {
                    tracing::info!(flux_receiver = %receiver, "serving a Flux Receiver");
                } else {
                    tracing::info!(
                        flux_receiver = %receiver,
                        differences = %included.notes.join("; "),
                        "serving a Flux Receiver, with differences from Flux"
                    );
                }
                lines.push((receiver, line.clone()));
            }
            now.insert(key.clone(), line);
        }
        self.logged = now;
        lines
    }
}

/// What the index has of one Secret a receiver names, and the resourceVersion it was read at.
struct Cached {
    version: Option<String>,
    fetched: Fetched,
}

enum Fetched {
    Present(SecretData),
    Missing,
    Unreadable(String),
}

/// The Receivers and Secrets watched, and the publication of what they compile to.
pub struct Index {
    pub client: Client,
    pub options: Options,
    pub keys: watch::Receiver<Arc<Keys>>,
    pub receivers: Vec<Store<Receiver>>,
    /// Flux's Receivers; empty without `--serve-flux-receivers`.
    pub flux: Vec<Store<DynamicObject>>,
    pub secrets: Vec<Store<PartialObjectMeta<SecretObject>>>,
    pub changes: Arc<Notify>,
    /// The Secrets receivers name: only their changes wake the index.
    pub referenced: Arc<RwLock<HashSet<Key>>>,
    pub configuration: watch::Sender<Option<Arc<Configuration>>>,
    pub outcomes: watch::Sender<Arc<Outcomes>>,
    pub metrics: Arc<Metrics>,
}

impl Index {
    /// Compiles once every store holds its initial list, then after every change.
    pub async fn run(self) {
        let stores_ready = async {
            for store in &self.receivers {
                store.wait_until_ready().await?;
            }
            for store in &self.secrets {
                store.wait_until_ready().await?;
            }
            Ok::<_, reflector::store::WriterDropped>(())
        };
        if stores_ready.await.is_err() {
            return;
        }
        let flux_ready = async {
            for store in &self.flux {
                store.wait_until_ready().await?;
            }
            Ok::<_, reflector::store::WriterDropped>(())
        };
        match tokio::time::timeout(FLUX_LIST_WAIT, flux_ready).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            // Listed later, they wake the index then.
            Err(_) => tracing::error!(
                "Flux Receivers could not be listed within {} s (is notification-controller's CRD \
                 installed, and may the controller list receivers.notification.toolkit.fluxcd.io?): \
                 serving the other receivers without them until they can",
                FLUX_LIST_WAIT.as_secs()
            ),
        }
        let mut state = State::default();
        let mut keys = self.keys.clone();
        loop {
            let retry = self.compile(&mut state, &mut keys).await;
            let retry_later = async {
                if retry {
                    tokio::time::sleep(RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                () = self.changes.notified() => {}
                changed = keys.changed() => if changed.is_err() { return },
                () = retry_later => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    }

    /// Compiles what the stores hold and publishes it; true when a Secret should be read again soon.
    async fn compile(&self, state: &mut State, keys: &mut watch::Receiver<Arc<Keys>>) -> bool {
        let started = Instant::now();
        let keys = keys.borrow_and_update().clone();
        let Some(attestation_key) = keys
            .current_attestation()
            .and_then(|key| std::str::from_utf8(key.expose()).ok())
        else {
            tracing::error!(
                "the attestation key is not UTF-8 text, which the configuration document cannot carry: \
                 nothing is served"
            );
            return false;
        };
        let objects: Vec<Arc<Receiver>> = self
            .receivers
            .iter()
            .flat_map(Store::state)
            .filter(|object| object.metadata.deletion_timestamp.is_none())
            .collect();
        let flux_objects: Vec<Arc<DynamicObject>> = self
            .flux
            .iter()
            .flat_map(Store::state)
            .filter(|object| object.metadata.deletion_timestamp.is_none())
            .collect();
        let named = named_secrets(&objects, &flux_objects);
        *self.referenced.write().unwrap_or_else(|e| e.into_inner()) = named.clone();
        let retry = self.refresh_secrets(&mut state.secrets, &named).await;
        let settings = compile::Settings {
            attestation_key,
            forward_path: &self.options.forward_path,
            allow_cross_namespace: self.options.allow_cross_namespace,
            dispatch_namespaces: Some(&self.options.dispatch_namespaces),
        };
        let hookgate: Vec<&Receiver> = objects.iter().map(AsRef::as_ref).collect();
        let flux: Vec<&DynamicObject> = flux_objects.iter().map(AsRef::as_ref).collect();
        let secret = |namespace: &str, name: &str| secret_state(&state.secrets, namespace, name);
        let compiled = compile::objects(&hookgate, &flux, secret, &settings);
        state.flux_log.log(&compiled);
        self.publish(&mut state.generations, compiled);
        self.metrics
            .configuration_compile_seconds
            .observe(started.elapsed().as_secs_f64());
        retry
    }

    fn publish(&self, generations: &mut Generations, compiled: Compiled) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (generation, changed) = generations.next(&compiled.digest, now_ms);
        let (receivers, flux) = generations.outcomes(&compiled, generation);
        if changed {
            tracing::info!(
                generation,
                digest = %compiled.digest,
                served = compiled.included.len(),
                refused = compiled.refused.len(),
                flux_served = compiled.flux_included.len(),
                flux_refused = compiled.flux_refused.len(),
                "configuration compiled"
            );
            self.metrics
                .configuration_generation
                .set(i64::try_from(generation).unwrap_or(i64::MAX));
        }
        let outcomes = Outcomes {
            compiled: true,
            generation,
            digest: compiled.digest.clone(),
            receivers,
            flux,
        };
        if changed {
            self.configuration
                .send_replace(Some(Arc::new(Configuration {
                    generation,
                    digest: compiled.digest,
                    document: compiled.document,
                })));
        }
        self.outcomes.send_replace(Arc::new(outcomes));
    }

    /// Reads the named Secrets whose resourceVersion changed since they were read (or that the API server
    /// did not give last time) and forgets the ones no receiver names; true when one could not be read.
    async fn refresh_secrets(
        &self,
        cache: &mut HashMap<Key, Cached>,
        named: &HashSet<Key>,
    ) -> bool {
        cache.retain(|key, _| named.contains(key));
        let mut stale = Vec::new();
        for key in named {
            let Some(version) = self.secret_version(key) else {
                cache.insert(
                    key.clone(),
                    Cached {
                        version: None,
                        fetched: Fetched::Missing,
                    },
                );
                continue;
            };
            let fresh = cache.get(key).is_some_and(|cached| {
                cached.version == version && !matches!(cached.fetched, Fetched::Unreadable(_))
            });
            if !fresh {
                stale.push((key.clone(), version));
            }
        }
        let fetched: Vec<(Key, Option<String>, Fetched)> = stream::iter(stale)
            .map(|(key, version)| {
                let client = self.client.clone();
                async move {
                    let fetched = fetch_secret(client, &key).await;
                    (key, version, fetched)
                }
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut retry = false;
        for (key, version, fetched) in fetched {
            retry |= matches!(fetched, Fetched::Unreadable(_));
            cache.insert(key, Cached { version, fetched });
        }
        retry
    }

    /// The resourceVersion of a Secret in the metadata stores; `None` when there is no such Secret.
    fn secret_version(&self, (namespace, name): &Key) -> Option<Option<String>> {
        let reference = ObjectRef::new(name).within(namespace);
        self.secrets
            .iter()
            .find_map(|store| store.get(&reference))
            .map(|meta| meta.metadata.resource_version.clone())
    }
}

/// What the index keeps between compiles.
#[derive(Default)]
struct State {
    secrets: HashMap<Key, Cached>,
    generations: Generations,
    flux_log: FluxLog,
}

/// The Secrets the receivers name, hookgate's and Flux's, as `(namespace, name)`.
fn named_secrets(objects: &[Arc<Receiver>], flux_objects: &[Arc<DynamicObject>]) -> HashSet<Key> {
    let hookgate = objects.iter().filter_map(|object| {
        let secret = object.spec.secret_ref.as_ref()?;
        Some((key_of(object).0, secret.name.clone()))
    });
    let flux = flux_objects.iter().filter_map(|object| {
        let name = flux::secret_name(object)?;
        Some((meta_key(&object.metadata).0, name.to_string()))
    });
    hookgate.chain(flux).collect()
}

/// The `(namespace, name)` of any object.
fn meta_key(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// What the index has of Secret `namespace/name`.
fn secret_state<'a>(
    cache: &'a HashMap<Key, Cached>,
    namespace: &str,
    name: &str,
) -> SecretState<'a> {
    let key = (namespace.to_string(), name.to_string());
    match cache.get(&key).map(|cached| &cached.fetched) {
        Some(Fetched::Present(data)) => SecretState::Present(data),
        Some(Fetched::Unreadable(why)) => SecretState::Unreadable(why),
        Some(Fetched::Missing) | None => SecretState::Missing,
    }
}

/// One Secret's data. The API server's refusal is logged by its status, never with any data.
async fn fetch_secret(client: Client, (namespace, name): &Key) -> Fetched {
    let api: Api<SecretObject> = Api::namespaced(client, namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, Secret::new(value.0)))
                .collect();
            Fetched::Present(SecretData(data))
        }
        Ok(None) => Fetched::Missing,
        Err(error) => {
            let why = match &error {
                kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
                _ => "the API server could not be reached".to_string(),
            };
            tracing::warn!(secret = %format!("{namespace}/{name}"), %why, "cannot read a Secret a receiver names");
            Fetched::Unreadable(why)
        }
    }
}

/// A reflector of the Receivers `api` reaches; wakes `changes` when one is added, deleted, or its spec
/// changes (its status, which the controller writes, does not).
pub fn watch_receivers(
    api: Api<Receiver>,
    changes: Arc<Notify>,
) -> (Store<Receiver>, JoinHandle<()>) {
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(wake_on_spec_changes(stream, changes, "watching Receivers"));
    (store, task)
}

/// A reflector of Flux's Receivers `api` reaches (an API of [`flux::api_resource`]), kept without their
/// status, managed fields and annotations, which hookgate does not read; wakes `changes` as
/// [`watch_receivers`] does.
pub fn watch_flux_receivers(
    api: Api<DynamicObject>,
    resource: ApiResource,
    changes: Arc<Notify>,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let writer = reflector::store::Writer::new(resource);
    let store = writer.as_reader();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| {
            object.metadata.annotations = None;
            object.metadata.managed_fields = None;
            if let Some(fields) = object.data.as_object_mut() {
                fields.remove("status");
            }
        })
        .reflect(writer);
    let task = tokio::spawn(wake_on_spec_changes(
        stream,
        changes,
        "watching Flux Receivers",
    ));
    (store, task)
}

/// Drives a reflector's `stream`, waking `changes` on every event that changes what compiles.
async fn wake_on_spec_changes<K: Resource>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    changes: Arc<Notify>,
    what: &'static str,
) {
    let mut seen = HashMap::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if spec_changed(&mut seen, &event) {
                    changes.notify_one();
                }
            }
            Err(error) => tracing::warn!(%error, "{what}"),
        }
    }
}

/// Whether `event` changes what compiles: an object added or deleted, or a new `metadata.generation`
/// (which the API server moves on spec changes only), or the end of a (re)list.
fn spec_changed<K: Resource>(
    seen: &mut HashMap<Key, (Option<String>, Option<i64>)>,
    event: &watcher::Event<K>,
) -> bool {
    let form = |object: &K| (object.meta().uid.clone(), object.meta().generation);
    let key = |object: &K| meta_key(object.meta());
    match event {
        watcher::Event::Init => {
            seen.clear();
            false
        }
        watcher::Event::InitApply(object) => {
            seen.insert(key(object), form(object));
            false
        }
        watcher::Event::InitDone => true,
        watcher::Event::Apply(object) => {
            let form = form(object);
            seen.insert(key(object), form.clone()) != Some(form)
        }
        watcher::Event::Delete(object) => {
            seen.remove(&key(object));
            true
        }
    }
}

/// A metadata-only reflector of the Secrets `api` reaches, kept without labels, annotations (a
/// `kubectl apply`'d Secret carries its data in one) and managed fields; wakes `changes` when a Secret a
/// receiver names changes or goes.
pub fn watch_secrets(
    api: Api<PartialObjectMeta<SecretObject>>,
    changes: Arc<Notify>,
    referenced: Arc<RwLock<HashSet<Key>>>,
) -> (Store<PartialObjectMeta<SecretObject>>, JoinHandle<()>) {
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|secret| {
            secret.metadata.annotations = None;
            secret.metadata.labels = None;
            secret.metadata.managed_fields = None;
        })
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let named = |meta: &PartialObjectMeta<SecretObject>| {
                let key = (
                    meta.metadata.namespace.clone().unwrap_or_default(),
                    meta.metadata.name.clone().unwrap_or_default(),
                );
                referenced
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&key)
            };
            match event {
                Ok(watcher::Event::InitDone) => changes.notify_one(),
                Ok(watcher::Event::Apply(meta) | watcher::Event::Delete(meta)) if named(&meta) => {
                    changes.notify_one()
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "watching Secrets"),
            }
        }
    });
    (store, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::compile::{Included, Reason};

    fn compiled(digest: &str, included: &[(&str, &str)], refused: &[&str]) -> Compiled {
        Compiled {
            document: Vec::new(),
            digest: digest.into(),
            included: included
                .iter()
                .map(|(name, fingerprint)| {
                    let included = Included {
                        paths: vec![format!("/hook/{name}")],
                        fingerprint: fingerprint.to_string(),
                        missing_keys: Vec::new(),
                        suspended: false,
                        notes: Vec::new(),
                    };
                    (("ns".to_string(), name.to_string()), included)
                })
                .collect(),
            refused: refused
                .iter()
                .map(|name| {
                    let not_ready = NotReady {
                        reason: Reason::SecretNotFound,
                        message: "Secret s not found in namespace ns".into(),
                    };
                    (("ns".to_string(), name.to_string()), not_ready)
                })
                .collect(),
            flux_included: BTreeMap::new(),
            flux_refused: BTreeMap::new(),
        }
    }

    fn since(outcomes: &BTreeMap<Key, Outcome>, name: &str) -> u64 {
        match &outcomes[&("ns".to_string(), name.to_string())] {
            Outcome::Included(served) => served.since,
            Outcome::Refused(not_ready) => panic!("{name}: {not_ready:?}"),
        }
    }

    /// A generation is the time its content changed, and only a change makes one; a receiver's form dates
    /// from the generation it first appeared in, whatever changes around it.
    #[test]
    fn generations_follow_the_content_and_receivers_their_form() {
        let mut generations = Generations::default();
        assert_eq!(generations.next("d1", 1_000), (1_000, true));
        let first = generations
            .outcomes(&compiled("d1", &[("a", "fa")], &["x"]), 1_000)
            .0;
        assert_eq!(since(&first, "a"), 1_000);
        assert!(matches!(
            first[&("ns".into(), "x".into())],
            Outcome::Refused(_)
        ));

        assert_eq!(
            generations.next("d1", 5_000),
            (1_000, false),
            "same content"
        );
        assert_eq!(generations.next("d2", 2_000), (2_000, true));
        let second = generations
            .outcomes(&compiled("d2", &[("a", "fa"), ("b", "fb")], &[]), 2_000)
            .0;
        assert_eq!((since(&second, "a"), since(&second, "b")), (1_000, 2_000));

        // A clock that went back still moves the generation on.
        assert_eq!(generations.next("d3", 1_500), (2_001, true));
        let third = generations
            .outcomes(&compiled("d3", &[("a", "fa2"), ("b", "fb")], &[]), 2_001)
            .0;
        assert_eq!((since(&third, "a"), since(&third, "b")), (2_001, 2_000));

        // A receiver that left and came back dates from its return.
        let _ = generations.outcomes(&compiled("d4", &[("b", "fb")], &["a"]), 3_000);
        let back = generations
            .outcomes(&compiled("d5", &[("a", "fa2"), ("b", "fb")], &[]), 4_000)
            .0;
        assert_eq!(since(&back, "a"), 4_000);
    }

    fn flux(refused: &[(&str, Reason)], served: &[(&str, &[&str])]) -> Compiled {
        let mut compiled = compiled("d", &[], &[]);
        for (name, reason) in refused {
            let not_ready = NotReady {
                reason: *reason,
                message: format!("{} of {name}", reason.as_str()),
            };
            compiled
                .flux_refused
                .insert(("ns".into(), name.to_string()), not_ready);
        }
        for (name, notes) in served {
            let included = Included {
                paths: vec![format!("/hook/{name}")],
                fingerprint: "f".into(),
                missing_keys: Vec::new(),
                suspended: false,
                notes: notes.iter().map(|n| n.to_string()).collect(),
            };
            compiled
                .flux_included
                .insert(("ns".into(), name.to_string()), included);
        }
        compiled
    }

    /// hookgate writes nothing on Flux's objects: its log says what became of each, once per change.
    #[test]
    fn each_change_of_a_flux_receiver_is_logged_once() {
        let unsupported = Reason::UnsupportedType;
        let filter = Reason::UnsupportedFilter;
        // (step, what it compiled to, what is logged: (namespace/name, line))
        type Step = (&'static str, Compiled, Vec<(&'static str, &'static str)>);
        let steps: Vec<Step> = vec![
            (
                "first compile",
                flux(&[("a", unsupported)], &[("b", &[])]),
                vec![
                    ("ns/a", "UnsupportedType: UnsupportedType of a"),
                    ("ns/b", "served; "),
                ],
            ),
            (
                "nothing changed",
                flux(&[("a", unsupported)], &[("b", &[])]),
                vec![],
            ),
            (
                "another reason, another difference",
                flux(&[("a", filter)], &[("b", &["suspended"])]),
                vec![
                    ("ns/a", "UnsupportedFilter: UnsupportedFilter of a"),
                    ("ns/b", "served; suspended"),
                ],
            ),
            ("a deleted", flux(&[], &[("b", &["suspended"])]), vec![]),
            (
                "a back as it was",
                flux(&[("a", filter)], &[("b", &["suspended"])]),
                vec![("ns/a", "UnsupportedFilter: UnsupportedFilter of a")],
            ),
            (
                "a served now",
                flux(&[], &[("a", &[]), ("b", &["suspended"])]),
                vec![("ns/a", "served; ")],
            ),
        ];
        let mut log = FluxLog::default();
        for (step, compiled, expected) in steps {
            let logged = log.log(&compiled);
            let logged: Vec<(&str, &str)> = logged
                .iter()
                .map(|(r, l)| (r.as_str(), l.as_str()))
                .collect();
            assert_eq!(logged, expected, "{step}");
        }
    }

    fn receiver(name: &str, generation: i64) -> Receiver {
        let mut object = Receiver::new(
            name,
            serde_json::from_value(serde_json::json!({"type": "github"})).unwrap(),
        );
        object.metadata.namespace = Some("ns".into());
        object.metadata.uid = Some(format!("uid-{name}"));
        object.metadata.generation = Some(generation);
        object
    }

    /// Status writes (no new generation) do not compile again; spec changes, additions and deletions do.
    #[test]
    fn only_spec_changes_wake_the_index() {
        let mut seen = HashMap::new();
        let events = [
            ("list starts", watcher::Event::Init, false),
            ("listed", watcher::Event::InitApply(receiver("a", 1)), false),
            ("list done", watcher::Event::InitDone, true),
            (
                "status written",
                watcher::Event::Apply(receiver("a", 1)),
                false,
            ),
            (
                "spec changed",
                watcher::Event::Apply(receiver("a", 2)),
                true,
            ),
            ("added", watcher::Event::Apply(receiver("b", 1)), true),
            ("deleted", watcher::Event::Delete(receiver("b", 1)), true),
        ];
        for (case, event, wakes) in events {
            assert_eq!(spec_changed(&mut seen, &event), wakes, "{case}");
        }
    }

    #[test]
    fn the_configuration_shows_no_document() {
        let configuration = Configuration {
            generation: 7,
            digest: "0123456789abcdef".into(),
            document: br#"{"attestationKey":"hunter2-attestation-key"}"#.to_vec(),
        };
        assert_eq!(
            format!("{configuration:?}"),
            "Configuration(7.0123456789abcdef)"
        );
    }
}
