//! Any bytes as a document the controller delivers, as the plugin configuration (the bootstrap), and as
//! what reaches a VM in live mode (a posted
//! confirmation, a slot's content, a confirmation envelope, an answer): parsing must answer Ok or a named
//! error, never panic.
#![no_main]

use std::cell::RefCell;

use hookgate_filter::channel::{self, Bootstrap, ConfigSource, MAX_RETRY_SECS};
use hookgate_filter::Config;
use hookgate_protocol::enrollment::{read_confirmation_body, VmKey, MAX_CONFIRMATION_BODY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = Config::parse(data) {
        assert!(!error.field.is_empty());
    }
    // The plugin configuration's reader.
    match Bootstrap::parse(data) {
        Err(error) => assert!(!error.field.is_empty()),
        // A bootstrap that reads gives every VM its sessions.
        Ok(bootstrap) => assert!(ConfigSource::new(bootstrap, [5; 32], 0).is_ok()),
    }
    // A confirmation body as anyone may post it.
    if let Some((key, _)) = read_confirmation_body(data) {
        assert!(data.len() <= MAX_CONFIRMATION_BODY);
        assert_eq!(
            channel::posted_confirmation(data),
            Ok(channel::confirmation_slot(&key))
        );
    } else {
        assert!(channel::posted_confirmation(data).is_err());
    }
    live_vm(data);
});

thread_local! {
    /// One VM in live mode and its clock, made once: drawing keys on every input would slow the fuzzer.
    static VM: RefCell<(ConfigSource, u64)> = RefCell::new(live_source());
}

fn live_source() -> (ConfigSource, u64) {
    let controller = VmKey::new([3; 32]).public().hex();
    let bootstrap =
        format!(r#"{{"controller":{{"cluster":"c"}},"controllerKeys":["{controller}"]}}"#);
    let Ok(bootstrap) = Bootstrap::parse(bootstrap.as_bytes()) else {
        panic!("a valid bootstrap is refused");
    };
    let now = 1_800_000_000;
    let Ok(source) = ConfigSource::new(bootstrap, [5; 32], now) else {
        panic!("a valid bootstrap gives no source");
    };
    (source, now)
}

/// `data` as what reaches a VM in live mode: its slot's content, a confirmation envelope, an answer.
fn live_vm(data: &[u8]) {
    VM.with_borrow_mut(|(source, now)| {
        let _ = source.envelope_in_slot(data);
        // Only the controller can seal a confirmation for this VM.
        assert!(!source.confirmation(data));
        // Past any wait, so that a call is due.
        *now += MAX_RETRY_SECS + 1;
        let nonce = "00112233445566778899aabbccddeeff".to_string();
        if source.request(*now, nonce, "envoy").is_some() {
            let _ = source.answer(*now, Some(200), data);
        }
    });
}
