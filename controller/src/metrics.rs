//! Prometheus metrics: requests by outcome, annotations by kind and outcome, patch latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnnotationLabels {
    pub kind: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    pub annotations: Family<AnnotationLabels, Counter>,
    pub patch_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookgate");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Reconcile requests by outcome",
            requests.clone(),
        );
        let annotations = Family::<AnnotationLabels, Counter>::default();
        registry.register(
            "annotations",
            "Targets by kind and outcome",
            annotations.clone(),
        );
        let patch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "patch_duration_seconds",
            "Latency of one annotation patch",
            patch_seconds.clone(),
        );
        Self {
            registry,
            requests,
            annotations,
            patch_seconds,
        }
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

    pub fn annotation(&self, kind: &str, outcome: &str) {
        self.annotations
            .get_or_create(&AnnotationLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
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
