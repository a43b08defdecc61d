//! The filter refuses at configure time exactly the targets the protocol's rule refuses (the controller
//! refuses them again per request), naming the field at fault.

use hookgate_filter::Config;
use hookgate_protocol::request::testing::target_cases;
use serde_json::json;

#[test]
fn the_filter_refuses_the_protocols_bad_targets_at_configure_time() {
    for (case, target, expected) in target_cases() {
        let config = json!({"attestationKey": "attestation-key-0123456789",
            "receivers": [{"name": "webapp", "namespace": "flux-system", "type": "github",
            "secrets": [{"inline": "test-token"}], "targets": [target]}]});
        let parsed = Config::parse(config.to_string().as_bytes());
        match expected {
            Ok(()) => assert!(parsed.is_ok(), "{case}: {:?}", parsed.err()),
            Err(error) => assert_eq!(
                parsed.err().map(|e| (e.field, e.reason)),
                Some((
                    format!("receivers[0].targets[0].{}", error.field()),
                    error.to_string()
                )),
                "{case}"
            ),
        }
    }
}
