//! How logs and metrics name a receiver and what became of a request. Tests, dashboards and alerts read
//! the metric names, so they change only deliberately.
//!
//! Proxy-wasm counters have names, not labels: every counter is named
//! `hookgate_deliveries_total;namespace=<ns>;receiver=<name>;outcome=<outcome>;reason=<reason>`, and the
//! tag extractors of the EnvoyProxy's bootstrap (`manifests/base/gateway/proxy/envoyproxy.yaml`) cut each
//! `;<tag>=<value>` out of the name into a label, so `/stats/prometheus` shows
//! `hookgate_deliveries_total{namespace=..,receiver=..,outcome=..,reason=..}`. `;` and `=` cannot occur in
//! Kubernetes names (the configuration admits `[a-z0-9-.]` only), so no two receivers share a counter.
//! A refusal before any receiver matched has empty `namespace` and `receiver`.

use crate::config::Receiver;
use crate::outcome::{Outcome, Rejection};

/// The filter's one metric, as Prometheus names it (`/stats/prometheus` adds no prefix nor suffix to the
/// names of Wasm metrics).
pub const DELIVERIES: &str = "hookgate_deliveries_total";

/// How logs and metrics name one receiver, computed once per configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverLabel {
    /// `<namespace>/<name>`.
    text: String,
    /// `hookgate_deliveries_total;namespace=<namespace>;receiver=<name>`, which an outcome's suffix completes.
    metric_prefix: String,
}

impl ReceiverLabel {
    pub fn new(receiver: &Receiver) -> Self {
        Self {
            text: receiver.label(),
            metric_prefix: metric_prefix(&receiver.namespace, &receiver.name),
        }
    }

    /// The receiver as logs name it, `<namespace>/<name>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The counter of `outcome` for this receiver (see the module's documentation).
    pub fn metric_name(&self, outcome: &Outcome) -> String {
        [self.metric_prefix.as_str(), &outcome.metric_suffix()].concat()
    }
}

fn metric_prefix(namespace: &str, receiver: &str) -> String {
    format!("{DELIVERIES};namespace={namespace};receiver={receiver}")
}

/// The counter of a refusal before any receiver matched: empty `namespace` and `receiver`, `outcome`
/// `rejected`, `reason` `unknown_path` or `not_configured`.
pub fn unmatched_metric_name(rejection: Rejection) -> String {
    let outcome = Outcome::Reject(rejection);
    [metric_prefix("", "").as_str(), &outcome.metric_suffix()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn label(namespace: &str, name: &str) -> ReceiverLabel {
        let json = format!(
            r#"{{"attestationKey":"attestation-key-0123456789","receivers":[
            {{"name":"{name}","namespace":"{namespace}","type":"github","secrets":[{{"inline":"s"}}],
             "targets":[{{"kind":"GitRepository","name":"webapp"}}]}}]}}"#
        );
        let config = Config::parse(json.as_bytes()).unwrap();
        ReceiverLabel::new(&config.receivers[0])
    }

    #[test]
    fn names_for_logs_and_metrics() {
        let label = label("flux-system", "web.app");
        assert_eq!(label.as_str(), "flux-system/web.app");
        let prefix = "hookgate_deliveries_total;namespace=flux-system;receiver=web.app";
        for (outcome, suffix) in [
            (Outcome::Pong, ";outcome=ping;reason="),
            (
                Outcome::Ignored("ref not accepted"),
                ";outcome=ignored;reason=ref_not_accepted",
            ),
            (
                Outcome::Reject(Rejection::SignatureMismatch),
                ";outcome=rejected;reason=signature_mismatch",
            ),
        ] {
            assert_eq!(label.metric_name(&outcome), [prefix, suffix].concat());
        }
        for (rejection, name) in [
            (
                Rejection::UnknownPath,
                "hookgate_deliveries_total;namespace=;receiver=;outcome=rejected;reason=unknown_path",
            ),
            (
                Rejection::NotConfigured,
                "hookgate_deliveries_total;namespace=;receiver=;outcome=rejected;reason=not_configured",
            ),
        ] {
            assert_eq!(unmatched_metric_name(rejection), name);
        }
    }

    /// The old names (`hookgate.receiver.<ns>.<name>.<outcome>`, sanitised to `_` by Envoy) gave
    /// `web-app` and `web.app` one counter.
    #[test]
    fn receivers_differing_in_dash_and_dot_have_their_own_counters() {
        let outcome = Outcome::Reject(Rejection::SignatureMismatch);
        assert_ne!(
            label("flux-system", "web-app").metric_name(&outcome),
            label("flux-system", "web.app").metric_name(&outcome)
        );
    }
}
