//! Confirming a proxy VM before it is served (protocol `enrollment`): the controller posts the VM's
//! confirmation, sealed for it, to the webhook listener of the proxy that asked (the address the request came
//! from), on hookgate's route, where only hookgate's filter answers. At most one post per VM key every
//! [`RESEND_AFTER`], at most [`MAX_PENDING`] VMs remembered and [`MAX_IN_FLIGHT`] posts at once: a flood
//! of made-up keys costs a bounded table and bounded work. Redirects are not followed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate_protocol::enrollment::{ControllerKey, Public, CONFIRMATION_PATH};
use tokio::sync::Semaphore;

/// How long before the same VM's confirmation is posted again (it may have been lost, or overwritten).
pub const RESEND_AFTER: Duration = Duration::from_secs(2);
/// VMs awaiting confirmation remembered at once; the oldest are forgotten first.
pub const MAX_PENDING: usize = 4096;
/// Posts in flight at once; more are dropped (the VM asks again, and its post is made then).
pub const MAX_IN_FLIGHT: usize = 32;
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the proxies' webhook listener is: its port (the Envoy container's) and the route's host name.
#[derive(Clone, Debug)]
pub struct Listener {
    pub port: u16,
    pub host: String,
}

pub struct Confirmer {
    listener: Listener,
    http: reqwest::Client,
    /// When each VM's confirmation was last posted.
    sent: Mutex<HashMap<Public, Instant>>,
    in_flight: Arc<Semaphore>,
}

impl Confirmer {
    pub fn new(listener: Listener) -> Result<Self, reqwest::Error> {
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
            http,
            sent: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// Posts `vm`'s confirmation to the proxy at `peer`, unless it was posted within [`RESEND_AFTER`].
    /// The post runs in the background; its outcome is logged.
    pub fn confirm(&self, key: &ControllerKey, vm: &Public, peer: IpAddr, now: Instant) {
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
        let url = match peer {
            IpAddr::V4(ip) => format!("http://{ip}:{}{CONFIRMATION_PATH}", self.listener.port),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}{CONFIRMATION_PATH}", self.listener.port),
        };
        let request = self
            .http
            .post(url)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_protocol::enrollment::VmKey;

    fn confirmer() -> Confirmer {
        Confirmer::new(Listener {
            port: 9,
            host: "hooks.example.test".into(),
        })
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
}
