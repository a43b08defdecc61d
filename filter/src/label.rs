//! How logs and metrics name a receiver and what became of a request. Tests and dashboards scrape the
//! metric names, so they change only deliberately.

use crate::config::Receiver;
use crate::outcome::{Outcome, Rejection};

/// How logs and metrics name one receiver, computed once per configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverLabel {
    /// `<namespace>/<name>`.
    text: String,
    /// `hookgate.receiver.<namespace>.<name>.`, which an outcome's suffix completes.
    metric_prefix: String,
}

impl ReceiverLabel {
    pub fn new(receiver: &Receiver) -> Self {
        Self {
            text: receiver.label(),
            metric_prefix: format!(
                "hookgate.receiver.{}.{}.",
                receiver.namespace, receiver.name
            ),
        }
    }

    /// The receiver as logs name it, `<namespace>/<name>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The counter of `outcome` for this receiver,
    /// `hookgate.receiver.<namespace>.<name>.<`[`Outcome::metric_suffix`]`>`.
    pub fn metric_name(&self, outcome: &Outcome) -> String {
        [self.metric_prefix.as_str(), &outcome.metric_suffix()].concat()
    }
}

/// The counter of a refusal before any receiver matched, `hookgate.unmatched.<reason>`.
pub fn unmatched_metric_name(rejection: Rejection) -> String {
    format!("hookgate.unmatched.{}", rejection.metric_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn names_for_logs_and_metrics() {
        let json = br#"{"attestationKey":"attestation-key-0123456789","receivers":[
            {"name":"webapp","namespace":"flux-system","type":"github","secrets":[{"inline":"s"}],
             "targets":[{"kind":"GitRepository","name":"webapp"}]}]}"#;
        let config = Config::parse(json, &|_| None).unwrap();
        let label = ReceiverLabel::new(&config.receivers[0]);
        assert_eq!(label.as_str(), "flux-system/webapp");
        for (outcome, name) in [
            (Outcome::Pong, "hookgate.receiver.flux-system.webapp.ping"),
            (
                Outcome::Ignored("ref not accepted"),
                "hookgate.receiver.flux-system.webapp.ignored",
            ),
            (
                Outcome::Reject(Rejection::SignatureMismatch),
                "hookgate.receiver.flux-system.webapp.rejected.signature_mismatch",
            ),
        ] {
            assert_eq!(label.metric_name(&outcome), name);
        }
        assert_eq!(
            unmatched_metric_name(Rejection::UnknownPath),
            "hookgate.unmatched.unknown_path"
        );
        assert_eq!(
            unmatched_metric_name(Rejection::NotConfigured),
            "hookgate.unmatched.not_configured"
        );
    }
}
