//! Prometheus metrics, all prefixed `hookgate_`: reconcile and dispatch requests by outcome, requests in
//! flight, annotations (per request) and patches (per API call, shared by coalesced requests) by kind and
//! outcome, patch latency, dispatches by outcome, and API server error responses by code.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
        Self {
            registry,
            requests,
            in_flight,
            annotations,
            patches,
            patch_seconds,
            dispatches,
            api_errors,
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
