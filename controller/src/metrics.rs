//! Prometheus metrics, all prefixed `hookgate_`: reconcile and dispatch requests by outcome, requests in
//! flight, annotations (per request) and patches (per API call, shared by coalesced requests) by kind and
//! outcome, patch latency, dispatches by outcome, and API server error responses by code. With receivers as
//! objects: configuration requests by outcome, the generation served, receivers by kind (hookgate's or
//! Flux's), ready state and reason, proxies seen, the duration of a compile, and proxy VM confirmations
//! refused because the address that asked is not one of hookgate's proxy pods.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::receivers::compile::{Kind, Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcomeLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// `hookgate` (hookgate.io Receivers) or `flux` (Flux's, with `--serve-flux-receivers`).
    pub kind: String,
    pub ready: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    pub in_flight: Gauge,
    pub annotations: Family<KindOutcomeLabels, Counter>,
    pub patches: Family<KindOutcomeLabels, Counter>,
    pub patch_seconds: Histogram,
    pub dispatches: Family<OutcomeLabels, Counter>,
    pub api_errors: Family<CodeLabels, Counter>,
    pub configuration_requests: Family<OutcomeLabels, Counter>,
    pub configuration_generation: Gauge,
    pub configuration_proxies: Gauge,
    pub configuration_compile_seconds: Histogram,
    pub receivers: Family<ReadyLabels, Gauge>,
    pub confirmations_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookgate");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Attested requests (reconcile and dispatch) by outcome",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Attested requests being handled",
            in_flight.clone(),
        );
        let annotations = Family::<KindOutcomeLabels, Counter>::default();
        registry.register(
            "annotations",
            "Objects a request asked to annotate, by kind and outcome",
            annotations.clone(),
        );
        let patches = Family::<KindOutcomeLabels, Counter>::default();
        registry.register(
            "patches",
            "Annotation patches sent to the API server (one may serve several requests), by kind and outcome",
            patches.clone(),
        );
        let patch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "patch_duration_seconds",
            "Latency of one annotation patch, retries included",
            patch_seconds.clone(),
        );
        let dispatches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "dispatches",
            "Rollback dispatches by outcome",
            dispatches.clone(),
        );
        let api_errors = Family::<CodeLabels, Counter>::default();
        registry.register(
            "api_errors",
            "API server responses with status 400 or more, by code (`transport` when none came), retries \
             included; 404 and 409 are also expected answers of the dispatch records",
            api_errors.clone(),
        );
        let live = LiveMetrics::register(&mut registry);
        for family in [&requests, &live.requests] {
            count_from_zero(family, &ALERTED_REFUSALS);
        }
        Self {
            registry,
            requests,
            in_flight,
            annotations,
            patches,
            patch_seconds,
            dispatches,
            api_errors,
            configuration_requests: live.requests,
            configuration_generation: live.generation,
            configuration_proxies: live.proxies,
            configuration_compile_seconds: live.compile_seconds,
            receivers: live.receivers,
            confirmations_refused: live.confirmations_refused,
        }
    }
}

/// Outcomes of Envoy's requests that the alerts watch (`HookgateControllerRefusesEnvoy`): the reasons of
/// `Error::Unauthorized` and `Error::Replayed`, and of the configuration endpoint's refusals.
const ALERTED_REFUSALS: [&str; 2] = ["unauthorized", "replayed"];

/// Creates `outcomes` in `family` at 0: a series that appears at its first increment reads 1 in its first
/// scrape, and `increase()` never sees that increment.
fn count_from_zero(family: &Family<OutcomeLabels, Counter>, outcomes: &[&str]) {
    for outcome in outcomes {
        // Creating is the point; the read guard returned is released at once.
        let _ = family.get_or_create(&OutcomeLabels {
            outcome: (*outcome).into(),
        });
    }
}

/// The metrics of receivers as objects.
struct LiveMetrics {
    requests: Family<OutcomeLabels, Counter>,
    generation: Gauge,
    proxies: Gauge,
    compile_seconds: Histogram,
    receivers: Family<ReadyLabels, Gauge>,
    confirmations_refused: Counter,
}

impl LiveMetrics {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "configuration_requests",
            "Configuration requests from the proxies by outcome (sent, not_modified, not_compiled, \
             unauthorized, replayed, overloaded, failed)",
            requests.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "configuration_generation",
            "Generation of the configuration served (wall-clock milliseconds of its last change)",
            generation.clone(),
        );
        let proxies = Gauge::default();
        registry.register(
            "configuration_proxies",
            "Proxies that asked for their configuration in the last minute",
            proxies.clone(),
        );
        let compile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "configuration_compile_duration_seconds",
            "Time to compile the Receivers into the configuration, Secrets read included",
            compile_seconds.clone(),
        );
        let receivers = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "receivers",
            "Receivers by kind (hookgate, flux), ready state and reason",
            receivers.clone(),
        );
        let confirmations_refused = Counter::default();
        registry.register(
            "confirmations_refused",
            "Proxy VM confirmations not posted because the address that asked is not a running pod that \
             --proxy-selector picks in --proxy-namespace",
            confirmations_refused.clone(),
        );
        Self {
            requests,
            generation,
            proxies,
            compile_seconds,
            receivers,
            confirmations_refused,
        }
    }
}

/// Counts a request in flight until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn request(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn annotation(&self, kind: &str, outcome: &str) {
        self.annotations
            .get_or_create(&KindOutcomeLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn patch(&self, kind: &str, outcome: &str) {
        self.patches
            .get_or_create(&KindOutcomeLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn dispatch(&self, outcome: &str) {
        self.dispatches
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn configuration_request(&self, outcome: &str) {
        self.configuration_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Sets the receivers gauge to `counts`, by (kind, ready, reason); reasons no receiver has any more
    /// read 0.
    pub fn set_receivers(&self, counts: &HashMap<(Kind, bool, Reason), i64>) {
        for kind in Kind::ALL {
            for ready in [true, false] {
                for reason in Reason::ALL {
                    let labels = ReadyLabels {
                        kind: kind.as_str().into(),
                        ready: ready.to_string(),
                        reason: reason.as_str().into(),
                    };
                    match counts.get(&(kind, ready, reason)) {
                        Some(count) => {
                            self.receivers.get_or_create(&labels).set(*count);
                        }
                        None => {
                            if let Some(gauge) = self.receivers.get(&labels) {
                                gauge.set(0);
                            }
                        }
                    }
                }
            }
        }
    }

    fn api_error(&self, code: &str) {
        self.api_errors
            .get_or_create(&CodeLabels { code: code.into() })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A Kubernetes client whose every API server response of 400 or more (or transport failure) is counted in
/// `api_errors`.
pub fn instrumented_client(
    config: kube::Config,
    metrics: Arc<Metrics>,
) -> kube::Result<kube::Client> {
    let count = tower::util::MapResultLayer::new(move |result| {
        count_api_error(&metrics, &result);
        result
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

fn count_api_error<B, E>(metrics: &Metrics, result: &Result<http::Response<B>, E>) {
    match result {
        Ok(response) if response.status().as_u16() >= 400 => {
            metrics.api_error(response.status().as_str())
        }
        Ok(_) => {}
        Err(_) => metrics.api_error("transport"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals of Envoy's requests that the alerts watch read 0 before the first: a series born at 1
    /// would hide that first refusal from `increase()`.
    #[test]
    fn refusals_of_envoys_requests_are_counted_from_zero() {
        let text = Metrics::default().encode();
        for line in [
            r#"hookgate_requests_total{outcome="unauthorized"} 0"#,
            r#"hookgate_requests_total{outcome="replayed"} 0"#,
            r#"hookgate_configuration_requests_total{outcome="unauthorized"} 0"#,
            r#"hookgate_configuration_requests_total{outcome="replayed"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    /// The receivers gauge says the kind of each receiver; a reason no receiver has any more reads 0.
    #[test]
    fn receivers_are_counted_by_kind_ready_and_reason() {
        let metrics = Metrics::default();
        metrics.set_receivers(&HashMap::from([
            ((Kind::Hookgate, true, Reason::Served), 3),
            ((Kind::Flux, false, Reason::UnsupportedType), 1),
        ]));
        metrics.set_receivers(&HashMap::from([
            ((Kind::Hookgate, true, Reason::Served), 2),
            ((Kind::Flux, true, Reason::Served), 1),
        ]));
        let text = metrics.encode();
        for line in [
            r#"hookgate_receivers{kind="hookgate",ready="true",reason="Served"} 2"#,
            r#"hookgate_receivers{kind="flux",ready="true",reason="Served"} 1"#,
            r#"hookgate_receivers{kind="flux",ready="false",reason="UnsupportedType"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
