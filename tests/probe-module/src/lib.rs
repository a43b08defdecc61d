//! TEST-ONLY: a probe extension another tenant could attach to its own route on the Gateway hookgate runs
//! on. For every request it answers with a report of what it could get (tests/test_live_receivers.py):
//! the values of the variables its configuration names (`env.hostKeys` hands them to it), the answers to
//! the calls its configuration names (Envoy's admin interface through Envoy Gateway's `prometheus_stats`
//! cluster), and the status of requests it makes to the controller's cluster: a configuration request
//! with a made-up channel key, an attested reconcile request with a made-up attestation, and an
//! enrollment as hookgate's filter makes one, with a key of its own (confirmed only if it could read the
//! confirmation hookgate's route receives: it looks in its own shared data for it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The probe's plugin configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeConfig {
    /// The variables to read (the same names as its policy's `env.hostKeys`).
    #[serde(default)]
    pub variables: Vec<String>,
    /// The cluster of hookgate's route, which leads to the controller.
    pub cluster: String,
    #[serde(default)]
    pub authority: String,
    /// The controller's public key (hex), as the proxies' bootstrap lists it: the probe enrolls with it.
    #[serde(default)]
    pub controller_key: Option<String>,
    /// More calls: name, cluster, path (GET).
    #[serde(default)]
    pub calls: Vec<(String, String, String)>,
}

/// What the probe learned.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Each variable's value, `None` when unset.
    pub env: BTreeMap<String, Option<String>>,
    /// The status of each forged request by name (`None`: no answer).
    pub calls: BTreeMap<String, Option<u16>>,
    /// The bodies of the forged requests' answers, as text.
    pub bodies: BTreeMap<String, String>,
    /// Whether the probe found a confirmation for its own key in the shared data it can read.
    pub confirmation_found: bool,
}

/// The enrollment request of a VM holding `vm`, towards the controller key `controller` (hex), with the
/// confirmation it has, if any: `None` when the key is not one.
pub fn enrollment(
    vm: &hookgate_protocol::enrollment::VmKey,
    controller: &str,
    confirmation: Option<&str>,
) -> Option<Forged> {
    use hookgate_protocol::channel::{ConfigRequest, Known};
    use hookgate_protocol::enrollment::{Public, CONFIRMATION_HEADER, VM_KEY_HEADER};
    let controller = Public::from_hex(controller.as_bytes()).ok()?;
    let session = vm.session(&controller)?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).ok()?;
    let request = ConfigRequest {
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
        known: Known::default(),
        proxy: "probe".into(),
    };
    let mut headers = request.headers(&session);
    headers.push((VM_KEY_HEADER, vm.public().hex()));
    if let Some(confirmation) = confirmation {
        headers.push((CONFIRMATION_HEADER, confirmation.to_string()));
    }
    Some(Forged {
        name: "enrollment",
        method: "GET",
        path: "/hookgate/v1/configuration",
        headers,
        body: Vec::new(),
    })
}

/// A request the probe forges to the controller's cluster.
pub struct Forged {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A configuration request and an attested reconcile request, each signed with a key the probe made up.
pub fn forged_requests() -> Vec<Forged> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let body = br#"{"receiver":{"namespace":"tenant-red","name":"app"},"type":"github","event":"push","targets":[{"kind":"GitRepository","name":"app"}]}"#;
    vec![
        Forged {
            name: "configuration",
            method: "GET",
            path: "/hookgate/v1/configuration",
            headers: vec![
                ("x-hookgate-channel-key", "0000000000000000".into()),
                ("x-hookgate-timestamp", now.clone()),
                ("x-hookgate-nonce", "00".repeat(16)),
                ("x-hookgate-known", "0.-".into()),
                ("x-hookgate-proxy", "probe".into()),
                ("x-hookgate-signature", format!("v1={}", "00".repeat(32))),
            ],
            body: Vec::new(),
        },
        Forged {
            name: "reconcile",
            method: "POST",
            path: "/hook/v1/reconcile",
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-hookgate-timestamp", now),
                ("x-hookgate-signature", format!("v1={}", "00".repeat(32))),
            ],
            body: body.to_vec(),
        },
    ]
}

#[cfg(target_arch = "wasm32")]
mod glue {
    use std::time::Duration;

    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}

    #[derive(Default)]
    struct Root {
        config: std::rc::Rc<ProbeConfig>,
        vm: Option<std::rc::Rc<hookgate_protocol::enrollment::VmKey>>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _: usize) -> bool {
            let raw = self.get_plugin_configuration().unwrap_or_default();
            self.config = std::rc::Rc::new(serde_json::from_slice(&raw).unwrap_or_default());
            let mut random = [0u8; 32];
            if getrandom::fill(&mut random).is_ok() {
                self.vm = Some(std::rc::Rc::new(hookgate_protocol::enrollment::VmKey::new(
                    random,
                )));
            }
            true
        }

        fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Probe {
                config: self.config.clone(),
                vm: self.vm.clone(),
                pending: BTreeMap::new(),
                report: Report::default(),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Probe {
        config: std::rc::Rc<ProbeConfig>,
        vm: Option<std::rc::Rc<hookgate_protocol::enrollment::VmKey>>,
        pending: BTreeMap<u32, &'static str>,
        report: Report,
    }

    impl Context for Probe {
        fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
            let Some(name) = self.pending.remove(&token) else {
                return;
            };
            let status = self
                .get_http_call_response_header(":status")
                .and_then(|s| s.parse().ok());
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            self.report.calls.insert(name.into(), status);
            self.report
                .bodies
                .insert(name.into(), String::from_utf8_lossy(&body).into_owned());
            if self.pending.is_empty() {
                self.answer();
            }
        }
    }

    impl Probe {
        /// Sends one call, reported under `name`.
        fn call(
            &mut self,
            name: &'static str,
            cluster: &str,
            headers: Vec<(&str, &str)>,
            body: Option<&[u8]>,
        ) {
            match self.dispatch_http_call(cluster, headers, body, vec![], Duration::from_secs(30)) {
                Ok(token) => {
                    self.pending.insert(token, name);
                }
                Err(status) => {
                    self.report.calls.insert(name.into(), None);
                    self.report
                        .bodies
                        .insert(name.into(), format!("dispatch failed: {status:?}"));
                }
            }
        }

        fn answer(&mut self) {
            let body = serde_json::to_vec(&self.report).unwrap_or_default();
            self.send_http_response(200, vec![("content-type", "application/json")], Some(&body));
        }
    }

    impl HttpContext for Probe {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            for name in &self.config.variables {
                self.report
                    .env
                    .insert(name.clone(), std::env::var(name).ok());
            }
            let authority = match self.config.authority.as_str() {
                "" => "hookgate-controller".to_string(),
                authority => authority.to_string(),
            };
            let mut requests = forged_requests();
            // What hookgate's filter would find in its shared data: the probe looks in its own.
            let slot = self
                .vm
                .as_ref()
                .map(|vm| format!("hookgate.confirmation.{}", &vm.public().hex()[..2]));
            let found = slot.and_then(|slot| self.get_shared_data(&slot).0);
            self.report.confirmation_found = found.is_some();
            if let (Some(vm), Some(controller)) = (&self.vm, &self.config.controller_key) {
                requests.extend(enrollment(vm, controller, None));
            }
            let config = self.config.clone();
            for (name, cluster, path) in &config.calls {
                let headers = vec![
                    (":method", "GET"),
                    (":path", path.as_str()),
                    (":authority", "probe"),
                ];
                let name: &'static str = Box::leak(name.clone().into_boxed_str());
                self.call(name, cluster, headers, None);
            }
            for forged in requests {
                let mut headers = vec![
                    (":method", forged.method.to_string()),
                    (":path", forged.path.to_string()),
                    (":authority", authority.to_string()),
                ];
                headers.extend(forged.headers);
                let headers = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let body = (!forged.body.is_empty()).then_some(forged.body.as_slice());
                self.call(forged.name, &config.cluster, headers, body);
            }
            if self.pending.is_empty() {
                self.answer();
            }
            Action::Pause
        }
    }
}
