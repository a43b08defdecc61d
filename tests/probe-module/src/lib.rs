//! TEST-ONLY: a probe extension another tenant could attach to its own route on the Gateway hookgate runs
//! on. For every request it answers with a report of what it could get (tests/test_live_receivers.py):
//! the values of the variables its configuration names (`env.hostKeys` hands them to it), and the status
//! of requests it forges to the controller's cluster: a configuration request and an attested
//! reconcile request, neither with a key it could know.

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
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _: usize) -> bool {
            let raw = self.get_plugin_configuration().unwrap_or_default();
            self.config = std::rc::Rc::new(serde_json::from_slice(&raw).unwrap_or_default());
            true
        }

        fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Probe {
                config: self.config.clone(),
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
            let authority = if self.config.authority.is_empty() {
                "hookgate-controller"
            } else {
                &self.config.authority
            };
            for forged in forged_requests() {
                let (name, body) = (forged.name, forged.body);
                let mut headers = vec![
                    (":method", forged.method.to_string()),
                    (":path", forged.path.to_string()),
                    (":authority", authority.to_string()),
                ];
                headers.extend(forged.headers);
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let body = (!body.is_empty()).then_some(body.as_slice());
                match self.dispatch_http_call(
                    &self.config.cluster,
                    headers,
                    body,
                    vec![],
                    Duration::from_secs(30),
                ) {
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
            if self.pending.is_empty() {
                self.answer();
            }
            Action::Pause
        }
    }
}
