//! The filter refuses at configure time exactly the targets the protocol's rule refuses, and the kinds
//! outside the allow-list the controller reconciles (the controller refuses both again per target),
//! naming the field at fault.

use hookgate_filter::Config;
use hookgate_protocol::kinds;
use hookgate_protocol::request::testing::target_cases;
use serde_json::json;

#[test]
fn the_filter_refuses_the_protocols_bad_targets_at_configure_time() {
    for (case, target, expected) in target_cases() {
        let config = json!({"attestationKey": "attestation-key-0123456789",
            "receivers": [{"name": "webapp", "namespace": "flux-system", "type": "github",
            "secrets": [{"inline": "test-token"}], "targets": [target]}]});
        let parsed = Config::parse(config.to_string().as_bytes());
        let api_version = target["apiVersion"].as_str();
        let kind = target["kind"].as_str().unwrap_or_default();
        let allowed = kinds::resolve(api_version, kind).is_some();
        match expected {
            Ok(()) if allowed => assert!(parsed.is_ok(), "{case}: {:?}", parsed.err()),
            Ok(()) => assert_eq!(
                parsed.err().map(|e| (e.field, e.reason)),
                Some((
                    "receivers[0].targets[0].kind".to_string(),
                    kinds::refusal(api_version, kind)
                )),
                "{case}"
            ),
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
