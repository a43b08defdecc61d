//! Confirming a proxy VM before it is served (protocol `enrollment`): the controller posts the VM's
//! confirmation, sealed for it, to the webhook listener of the proxy that asked (the address the request came
//! from), on hookgate's route, where only hookgate's filter answers. With `--proxy-selector`, only to an
//! address of one of hookgate's own running proxy pods ([`ProxyPods`]): another Gateway's proxies, or any
//! other pod, asking the controller are never confirmed (they are counted, and warned of at most every
//! [`WARN_EVERY`]). At most one post per VM key every [`RESEND_AFTER`], at most [`MAX_PENDING`] VMs
//! remembered and [`MAX_IN_FLIGHT`] posts at once: a flood of made-up keys costs a bounded table and bounded
//! work. Redirects are not followed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hookgate_protocol::enrollment::{ControllerKey, Public, CONFIRMATION_PATH};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::proxy_selector::ProxySelector;

/// How long before the same VM's confirmation is posted again (it may have been lost, or overwritten).
pub const RESEND_AFTER: Duration = Duration::from_secs(2);
/// VMs awaiting confirmation remembered at once; the oldest are forgotten first.
pub const MAX_PENDING: usize = 4096;
/// Posts in flight at once; more are dropped (the VM asks again, and its post is made then).
pub const MAX_IN_FLIGHT: usize = 32;
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning this often of a confirmation refused to an address that is not a proxy pod's: any
/// pod that reaches the controller can ask, as often as it likes.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where the proxies' webhook listener is: its port (the Envoy container's) and the route's host name.
#[derive(Clone, Debug)]
pub struct Listener {
    pub port: u16,
    pub host: String,
}

/// The addresses of hookgate's own proxies: the running pods a label selector picks in one namespace
/// (Envoy Gateway labels each proxy pod with its Gateway's name and namespace: see [`ProxySelector`]).
#[derive(Clone)]
pub struct ProxyPods {
    pods: Store<Pod>,
}

impl ProxyPods {
    /// Watches the pods of `api` that `selector` picks, keeping only their addresses.
    pub fn watch(api: Api<Pod>, selector: &ProxySelector) -> (Self, JoinHandle<()>) {
        let (pods, writer) = reflector::store();
        let config = watcher::Config::default().labels(selector.as_str());
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|pod| {
                pod.spec = None;
                pod.metadata.annotations = None;
                pod.metadata.managed_fields = None;
            })
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "watching hookgate's proxy pods");
                }
            }
        });
        (Self { pods }, task)
    }

    /// Whether `peer` is the address of one of the running pods. An IPv4 peer on a dual-stack socket
    /// arrives IPv4-mapped (`::ffff:10.0.0.1`): both sides are compared in canonical form.
    pub fn includes(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.pods
            .state()
            .iter()
            .any(|pod| pod_ips(pod).any(|ip| ip.to_canonical() == peer))
    }
}

/// A running pod's addresses, as its status gives them; none for a pod not running or being deleted:
/// the address of a finished (Failed, Succeeded) or terminating pod may already be another pod's.
fn pod_ips(pod: &Pod) -> impl Iterator<Item = IpAddr> + '_ {
    let running = pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let status = pod.status.as_ref().filter(|_| running);
    let single = status.and_then(|s| s.pod_ip.as_deref());
    let listed = status
        .and_then(|s| s.pod_ips.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|ip| ip.ip.as_str());
    single
        .into_iter()
        .chain(listed)
        .filter_map(|ip| ip.parse().ok())
}

pub struct Confirmer {
    listener: Listener,
    /// Where confirmations may go; None: to whichever address asked.
    proxies: Option<ProxyPods>,
    http: reqwest::Client,
    /// When each VM's confirmation was last posted.
    sent: Mutex<HashMap<Public, Instant>>,
    in_flight: Arc<Semaphore>,
    /// Confirmations refused because the address that asked is not a proxy pod's (a metric).
    refused: Counter,
    refusal_warnings: Throttle,
}

impl Confirmer {
    pub fn new(
        listener: Listener,
        proxies: Option<ProxyPods>,
        refused: Counter,
    ) -> Result<Self, reqwest::Error> {
        // reqwest is built without a TLS provider of its own: use ring, as kube does (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            // The listener is the proxy's own: no proxy from the environment in between, and no redirect
            // followed to anywhere else.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            listener,
            proxies,
            http,
            sent: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            refused,
            refusal_warnings: Throttle::new(WARN_EVERY),
        })
    }

    /// Posts `vm`'s confirmation to the proxy at `peer`, unless it was posted within [`RESEND_AFTER`].
    /// The post runs in the background; its outcome is logged.
    pub fn confirm(&self, key: &ControllerKey, vm: &Public, peer: IpAddr, now: Instant) {
        if self
            .proxies
            .as_ref()
            .is_some_and(|pods| !pods.includes(peer))
        {
            self.refuse(peer, now);
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many confirmations in flight: this one waits for the VM's next request");
            return;
        };
        if !self.due(vm, now) {
            return;
        }
        let mut aead_nonce = [0u8; 24];
        if getrandom::fill(&mut aead_nonce).is_err() {
            tracing::error!("no randomness available to seal a confirmation");
            return;
        }
        let Some(body) = key.confirmation_body(vm, aead_nonce) else {
            return;
        };
        let request = self
            .http
            .post(self.confirmation_url(peer))
            .header(http::header::HOST, &self.listener.host)
            .body(body);
        tokio::spawn(async move {
            let _permit = permit;
            match request.send().await {
                Ok(response) if response.status() == http::StatusCode::ACCEPTED => {
                    tracing::debug!(%peer, "confirmation delivered");
                }
                Ok(response) => {
                    tracing::warn!(%peer, status = response.status().as_u16(), "the proxy did not take the confirmation (is the listener port or host name right?)");
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "cannot post a confirmation to the proxy");
                }
            }
        });
    }

    /// Where `peer`'s confirmation is posted: to its IPv4 address when it asked IPv4-mapped, as the pod's
    /// status names it.
    fn confirmation_url(&self, peer: IpAddr) -> String {
        match peer.to_canonical() {
            IpAddr::V4(ip) => format!("http://{ip}:{}{CONFIRMATION_PATH}", self.listener.port),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}{CONFIRMATION_PATH}", self.listener.port),
        }
    }

    /// Counts a confirmation refused to `peer`, not a proxy pod's address, and warns of it unless it warned
    /// within [`WARN_EVERY`].
    fn refuse(&self, peer: IpAddr, now: Instant) {
        self.refused.inc();
        match self.refusal_warnings.due(now) {
            Some(unlogged) => tracing::warn!(
                %peer,
                unlogged,
                "a proxy VM asked from an address that is not a running pod --proxy-selector picks in \
                 --proxy-namespace: not confirmed (another Gateway's proxy, or the selector misses \
                 hookgate's proxy pods); `unlogged` more were refused since the last warning"
            ),
            None => tracing::debug!(%peer, "not one of hookgate's proxy pods: not confirmed"),
        }
    }

    /// Whether `vm`'s confirmation is due, recording it as sent now if so.
    fn due(&self, vm: &Public, now: Instant) -> bool {
        let Ok(mut sent) = self.sent.lock() else {
            return false;
        };
        if sent
            .get(vm)
            .is_some_and(|at| now.duration_since(*at) < RESEND_AFTER)
        {
            return false;
        }
        if sent.len() >= MAX_PENDING && !sent.contains_key(vm) {
            sent.retain(|_, at| now.duration_since(*at) < RESEND_AFTER);
            if sent.len() >= MAX_PENDING {
                if let Some(oldest) = sent.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    sent.remove(&oldest);
                }
            }
        }
        sent.insert(*vm, now);
        true
    }

    /// Forgets a confirmed VM.
    pub fn confirmed(&self, vm: &Public) {
        if let Ok(mut sent) = self.sent.lock() {
            sent.remove(vm);
        }
    }
}

/// Lets through at most one event every `every`, counting those it holds back in between.
struct Throttle {
    every: Duration,
    /// When an event was last let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Some(the number held back since the last let through) if an event at `now` is let through.
    fn due(&self, now: Instant) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let (last, held) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_protocol::enrollment::VmKey;

    fn confirmer() -> Confirmer {
        Confirmer::new(
            Listener {
                port: 9,
                host: "hooks.example.test".into(),
            },
            None,
            Counter::default(),
        )
        .unwrap()
    }

    #[test]
    fn one_post_per_vm_every_two_seconds_and_a_bounded_table() {
        let confirmer = confirmer();
        let start = Instant::now();
        let vm = VmKey::new([7; 32]).public();
        assert!(confirmer.due(&vm, start));
        assert!(!confirmer.due(&vm, start + Duration::from_secs(1)));
        assert!(confirmer.due(&vm, start + RESEND_AFTER));
        for n in 0..MAX_PENDING + 10 {
            let mut random = [0u8; 32];
            random[8..16].copy_from_slice(&(n as u64).to_le_bytes());
            assert!(confirmer.due(&VmKey::new(random).public(), start));
        }
        assert!(confirmer.sent.lock().unwrap().len() <= MAX_PENDING);
        confirmer.confirmed(&vm);
        assert!(confirmer.due(&vm, start + RESEND_AFTER));
    }

    /// A pod of the selector's, in `phase`, with its addresses as the kubelet reports them.
    fn pod(name: &str, phase: &str, ip: Option<&str>, ips: &[&str]) -> Pod {
        use k8s_openapi::api::core::v1::{PodIP, PodStatus};
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("envoy-gateway-system".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(str::to_string),
                pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn proxy_pods(pods: Vec<Pod>) -> ProxyPods {
        let (store, mut writer) = reflector::store();
        for pod in pods {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod));
        }
        ProxyPods { pods: store }
    }

    #[test]
    fn only_the_selected_pods_addresses_are_proxies() {
        let mut terminating = pod("terminating", "Running", Some("10.0.0.5"), &["10.0.0.5"]);
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let mut no_phase = pod("no-phase", "Running", Some("10.0.0.6"), &["10.0.0.6"]);
        no_phase.status.as_mut().unwrap().phase = None;
        let proxies = proxy_pods(vec![
            pod("one", "Running", Some("10.0.0.1"), &["10.0.0.1", "fd00::1"]),
            pod("pending", "Pending", None, &[]),
            pod("garbled", "Running", Some("not an address"), &[]),
            // Their addresses may already be another pod's.
            pod("failed", "Failed", Some("10.0.0.3"), &["10.0.0.3"]),
            pod("succeeded", "Succeeded", Some("10.0.0.4"), &["10.0.0.4"]),
            terminating,
            no_phase,
        ]);
        let wrong: Vec<_> = [
            ("the pod's address", "10.0.0.1", true),
            ("its second address (IPv6)", "fd00::1", true),
            ("its address, IPv4-mapped IPv6", "::ffff:10.0.0.1", true),
            ("another pod's", "10.0.0.2", false),
            ("loopback", "127.0.0.1", false),
            ("a Failed pod's", "10.0.0.3", false),
            ("a Succeeded pod's", "10.0.0.4", false),
            ("a terminating pod's", "10.0.0.5", false),
            ("a pod with no phase's", "10.0.0.6", false),
        ]
        .into_iter()
        .filter(|(_, peer, expected)| proxies.includes(peer.parse().unwrap()) != *expected)
        .map(|(case, ..)| case)
        .collect();
        assert!(wrong.is_empty(), "wrong for: {wrong:?}");
    }

    /// A confirmation asked from an address that is no running proxy pod's is counted; one asked from a
    /// proxy pod's is not.
    #[tokio::test]
    async fn confirmations_refused_to_other_addresses_are_counted() {
        let refused = Counter::default();
        let proxies = proxy_pods(vec![pod(
            "one",
            "Running",
            Some("127.0.0.1"),
            &["127.0.0.1"],
        )]);
        let listener = Listener {
            port: 9,
            host: "hooks.example.test".into(),
        };
        let confirmer = Confirmer::new(listener, Some(proxies), refused.clone()).unwrap();
        let key = ControllerKey::from_hex(&[b'4'; 64]).unwrap();
        let now = Instant::now();
        for (n, (case, peer, counted)) in [
            ("another address", "10.0.0.2", 1),
            ("again, within a second", "10.0.0.2", 2),
            ("the proxy pod's address", "127.0.0.1", 2),
            ("another pod's, IPv6", "fd00::2", 3),
        ]
        .into_iter()
        .enumerate()
        {
            let vm = VmKey::new([n as u8 + 1; 32]).public();
            confirmer.confirm(&key, &vm, peer.parse().unwrap(), now);
            assert_eq!(refused.get(), counted, "{case}");
        }
    }

    #[test]
    fn confirmations_are_posted_to_the_address_the_pod_has() {
        let confirmer = confirmer();
        for (case, peer, url) in [
            ("IPv4", "10.0.0.1", "http://10.0.0.1:9"),
            ("IPv4-mapped IPv6", "::ffff:10.0.0.1", "http://10.0.0.1:9"),
            ("IPv6", "fd00::1", "http://[fd00::1]:9"),
        ] {
            let expected = format!("{url}{CONFIRMATION_PATH}");
            let peer = peer.parse().unwrap();
            assert_eq!(confirmer.confirmation_url(peer), expected, "{case}");
        }
    }

    #[test]
    fn refusal_warnings_at_most_one_a_minute_saying_how_many_were_not() {
        let throttle = Throttle::new(WARN_EVERY);
        let start = Instant::now();
        for (case, after, expected) in [
            ("the first", 0, Some(0)),
            ("a second later", 1, None),
            ("just under a minute later", 59, None),
            ("a minute later", 60, Some(2)),
            ("right after that", 61, None),
            ("two minutes later", 120, Some(1)),
        ] {
            let at = start + Duration::from_secs(after);
            assert_eq!(throttle.due(at), expected, "{case}");
        }
    }
}
